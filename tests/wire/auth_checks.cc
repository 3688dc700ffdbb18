#include "tests/wire/auth_checks.h"

#include <catch2/catch.hpp>
#include <utility>

namespace cloister::testing {

std::unique_ptr<CloisterdProcess> StartDaemon(TempDir& dir, const std::vector<std::string>& env) {
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {}, env);
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  return std::move(*started);
}

void RequireUnauthenticated(const WireResponse& response) {
  INFO(response.body);
  CHECK(response.status == 401);
  CHECK(response.body == R"({"status":"FAIL","message":"Authentication Required"})");
}

}  // namespace cloister::testing
