// The route table (api/cloisterd/route_table.h) against the real cloisterd: every entry reaches
// a handler (never 404/405), every permission it names is in the catalogue, and nothing outside
// it is reachable. Issue 6 adds the per-permission checks on top of this table.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <tuple>

#include "api/cloisterd/route_table.h"
#include "engine/permissions.h"
#include "log/base64.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"

namespace cloister::testing {
namespace {

using cloisterd::Access;
using cloisterd::Listener;
using cloisterd::RouteEntry;
using cloisterd::RouteTable;

constexpr char kToken[] = "route-table-root-token";

TEST_CASE("route table: one entry per route, permissions from the catalogue") {
  std::set<std::tuple<Listener, std::string, std::string>> seen;
  for (const RouteEntry& entry : RouteTable()) {
    INFO(entry.method << " " << entry.path);
    CHECK(seen.emplace(entry.listener, entry.method, entry.path).second);
    if (entry.access == Access::kPermission) {
      CHECK(engine::CanonicalGroupPermission(entry.component, entry.permission) ==
            std::string(entry.permission));
    }
  }
}

TEST_CASE("route table: every entry reaches its handler, and nothing else is reachable") {
  TempDir dir;
  auto started = CloisterdProcess::Start(
      dir.Sub("data"), dir.path(), {},
      {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken,
       "ANKA_ENABLE_API_KEYS=true"});
  REQUIRE(started.ok());
  auto& daemon = *started;
  const std::string root =
      "Authorization: Basic " + log::Base64Encode(std::string("root:") + kToken) + "\r\n";
  for (const RouteEntry& entry : RouteTable()) {
    const WireTarget target =
        entry.listener == Listener::kController ? daemon->controller() : daemon->registry();
    const std::string method = entry.method;
    const bool write = method != "GET";
    const WireResponse r = Call(target, method, entry.path, write ? "{}" : "",
                                entry.access == Access::kOpen ? "" : root);
    INFO(method << " " << entry.path << " -> " << r.status << " " << r.body);
    // The router's own 404 says "not found"; a handler may answer 404 about what it looked up
    // (an OCI upload or blob that does not exist), which shows the route reached it.
    const bool router_404 = r.status == 404 && r.body.find("\"message\":\"not found\"") !=
                                                   std::string::npos;
    CHECK_FALSE(router_404);
    CHECK(r.status != 405);
    CHECK(r.status != 401);
    CHECK(r.status != 403);
  }
  // Paths and methods outside the table: 404 and 405, after authentication.
  CHECK(Call(daemon->controller(), "GET", "/api/v1/nope", "", root).status == 404);
  CHECK(Call(daemon->controller(), "PATCH", "/api/v1/vm", "", root).status == 405);
  CHECK(Call(daemon->controller(), "POST", "/api/v1/status", "", root).status == 405);
  CHECK(Call(daemon->registry(), "GET", "/api/v1/vm", "", root).status == 404);
  CHECK(Call(daemon->controller(), "GET", "/api/v1/nope").status == 401);
}

}  // namespace
}  // namespace cloister::testing
