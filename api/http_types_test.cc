// Limits defaults, headers, the Anka error envelope and reason phrases.
#include "api/http_types.h"

#include <catch2/catch.hpp>

#include "api/limits.h"

namespace cloister::api {
namespace {

TEST_CASE("limit defaults are the documented figures") {
  HttpLimits limits;
  REQUIRE(limits.header_bytes_max == 16 * 1024);
  REQUIRE(limits.header_count_max == 100);
  REQUIRE(limits.body_bytes_max == 8 * 1024 * 1024);
  REQUIRE(limits.connections_max == 10'000);
  REQUIRE(limits.pipeline_requests_max == 32);
  REQUIRE(limits.header_timeout_ms == 10'000);
  REQUIRE(limits.body_timeout_ms == 60'000);
  REQUIRE(limits.idle_timeout_ms == 60'000);
  REQUIRE(limits.send_timeout_ms == 60'000);
}

TEST_CASE("header lookup ignores ASCII case and keeps order and repeats") {
  Headers headers;
  headers.Add("Content-Type", "application/json");
  headers.Add("X-Token", "one");
  headers.Add("x-token", "two");
  REQUIRE(*headers.Find("content-type") == "application/json");
  REQUIRE(*headers.Find("X-TOKEN") == "one");
  REQUIRE(headers.Count("X-Token") == 2);
  REQUIRE(headers.Find("X-Tok") == nullptr);
  REQUIRE(headers.size() == 3);
  REQUIRE(EqualsIgnoreCase("Expect", "eXPECT"));
  REQUIRE(!EqualsIgnoreCase("Expect", "Expects"));
}

TEST_CASE("FailResponse is the Anka envelope with escaped text") {
  Response response = FailResponse(404, "no \"vm\"\n here");
  REQUIRE(response.status == 404);
  REQUIRE(response.content_type == "application/json");
  REQUIRE(response.body == "{\"status\":\"FAIL\",\"message\":\"no \\\"vm\\\"\\n here\"}");
  REQUIRE(JsonEscape(std::string("a\x01\\", 3)) == "a\\u0001\\\\");
}

TEST_CASE("reason phrases") {
  REQUIRE(std::string(ReasonPhrase(200)) == "OK");
  REQUIRE(std::string(ReasonPhrase(408)) == "Request Timeout");
  REQUIRE(std::string(ReasonPhrase(413)) == "Content Too Large");
  REQUIRE(std::string(ReasonPhrase(431)) == "Request Header Fields Too Large");
  REQUIRE(std::string(ReasonPhrase(599)) == "Unknown");
}

}  // namespace
}  // namespace cloister::api
