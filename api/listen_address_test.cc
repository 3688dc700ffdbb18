// ParseListenAddress accepts the Anka "host:port" forms and names the value in every error.
#include "api/listen_address.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>

namespace cloister::api {
namespace {

ListenAddress Parse(const char* text) {
  auto address = ParseListenAddress(text);
  INFO(text << ": " << address.status().ToString());
  REQUIRE(address.ok());
  return *address;
}

std::string Error(const char* text) {
  auto address = ParseListenAddress(text);
  REQUIRE(!address.ok());
  REQUIRE(address.status().code() == StatusCode::kInvalidArgument);
  return address.status().message();
}

TEST_CASE("a bare :port listens on every IPv4 interface") {
  ListenAddress address = Parse(":8090");
  REQUIRE(address.host == "0.0.0.0");
  REQUIRE(address.port == 8090);
  REQUIRE(address.ToString() == "0.0.0.0:8090");
}

TEST_CASE("IPv4, IPv6 in brackets, names, and port 0") {
  REQUIRE(Parse("127.0.0.1:0").host == "127.0.0.1");
  REQUIRE(Parse("127.0.0.1:0").port == 0);
  REQUIRE(Parse("0.0.0.0:443").port == 443);
  ListenAddress v6 = Parse("[::1]:8090");
  REQUIRE(v6.host == "::1");
  REQUIRE(v6.ToString() == "[::1]:8090");
  REQUIRE(Parse("localhost:8090").host == "localhost");
  REQUIRE(Parse("ci-host.example:65535").port == 65535);
}

TEST_CASE("errors quote the value and say what was expected") {
  REQUIRE(Error("8090") ==
          "listen address \"8090\": expected host:port (e.g. \":8090\" or \"127.0.0.1:8090\")");
  REQUIRE(Error(":65536").find("0 to 65535") != std::string::npos);
  REQUIRE(Error(":").find("\":\"") != std::string::npos);
  REQUIRE(Error("127.0.0.1:http").find("must be a number") != std::string::npos);
  REQUIRE(Error("::1:8090").find("needs brackets") != std::string::npos);
  REQUIRE(Error("[::1]8090").find("[ipv6]:port") != std::string::npos);
  REQUIRE(Error("[zz]:80").find("not an IPv6 address") != std::string::npos);
  REQUIRE(Error("a b:80").find("not a host name") != std::string::npos);
  REQUIRE(Error(":-1").find("\":-1\"") != std::string::npos);
  REQUIRE(Error("").find("\"\"") != std::string::npos);
}

TEST_CASE("resolving: numeric hosts directly, localhost to 127.0.0.1") {
  auto any = ResolveListenAddress(Parse(":8090"));
  REQUIRE(any.ok());
  REQUIRE(any->ss_family == AF_INET);
  auto local = ResolveListenAddress(Parse("localhost:80"));
  REQUIRE(local.ok());
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(&*local);
  REQUIRE(v4->sin_family == AF_INET);
  REQUIRE(ntohl(v4->sin_addr.s_addr) == INADDR_LOOPBACK);
  REQUIRE(ntohs(v4->sin_port) == 80);
  auto v6 = ResolveListenAddress(Parse("[::1]:1"));
  REQUIRE(v6.ok());
  REQUIRE(v6->ss_family == AF_INET6);
  REQUIRE(FormatSocketAddress(reinterpret_cast<const sockaddr*>(&*v6)) == "[::1]:1");
  REQUIRE(FormatSocketAddress(reinterpret_cast<const sockaddr*>(&*local)) == "127.0.0.1:80");
}

TEST_CASE("an unresolvable name is a clear error") {
  auto address = ResolveListenAddress(Parse("no-such-host.invalid:80"));
  REQUIRE(!address.ok());
  REQUIRE(address.status().message().find("no-such-host.invalid") != std::string::npos);
}

}  // namespace
}  // namespace cloister::api
