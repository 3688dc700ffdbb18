// ListenAddress: where a server listens, parsed from the Anka form "host:port"
// (ANKA_LISTEN_ADDR, ANKA_REGISTRY_LISTEN_ADDRESS and the equivalent flags).
//
// Accepted forms:
//   ":8090"            every IPv4 interface (0.0.0.0). Go would also listen on IPv6 here;
//                      cloister listens on IPv4 only, and "[::]:8090" asks for IPv6.
//   "127.0.0.1:0"      an IPv4 address; port 0 lets the kernel choose (see HttpServer::port()).
//   "0.0.0.0:443"
//   "[::1]:8090"       an IPv6 address, in brackets.
//   "localhost:8090"   "localhost" is 127.0.0.1, whatever /etc/hosts says.
//   "ci-host:8090"     any other name is resolved when the server starts listening (IPv4
//                      preferred), which is the only blocking step of Listen().
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "log/status.h"

namespace cloister::api {

struct ListenAddress {
  std::string host;   // "0.0.0.0", "127.0.0.1", "::1", or a name; never empty.
  uint16_t port = 0;

  // "0.0.0.0:8090", "[::1]:8090".
  std::string ToString() const;
};

// Errors are kInvalidArgument and quote the value: `listen address "8090": expected host:port
// (e.g. ":8090" or "127.0.0.1:8090")`.
Result<ListenAddress> ParseListenAddress(std::string_view text);

// The socket address for address: numeric hosts directly, names through the resolver.
// Errors (kNotFound) name the host.
Result<sockaddr_storage> ResolveListenAddress(const ListenAddress& address);

// "127.0.0.1:51234" or "[::1]:51234" for a connected peer; "unknown" for other families.
std::string FormatSocketAddress(const sockaddr* address);

}  // namespace cloister::api
