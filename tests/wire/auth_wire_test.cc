// Root token authentication (seed 003) through the real cloisterd: the seed's curl line, the exact
// 401, the open probes, the registry and node paths, failures recorded as events (never the
// token), the failure rate limit, `cloisterd --init`, and an agent joining with the token.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "log/base64.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/auth_checks.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

constexpr char kToken[] = "canary-root-token-7d3e91";

std::string Basic(const std::string& user, const std::string& password) {
  return "Authorization: Basic " + log::Base64Encode(user + ":" + password) + "\r\n";
}

std::vector<std::string> AuthEnv() {
  return {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken};
}

TEST_CASE("root token: the seed's Basic header works, anything else is 401") {
  TempDir dir;
  auto daemon = StartDaemon(dir, AuthEnv());
  const WireTarget api = daemon->controller();
  const WireTarget registry = daemon->registry();

  // Probes stay open; the API, the registry and the node protocol do not.
  RequireOk(Call(api, "GET", "/livez"));
  RequireOk(Call(api, "GET", "/readyz"));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status"));
  RequireUnauthenticated(Call(registry, "GET", "/registry/status"));
  RequireUnauthenticated(Call(api, "POST", "/node/v1/join", R"({"node_name":"x"})"));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/nope"));  // Before 404: no probing.

  // curl -H "Authorization: Basic $(echo -ne "root:TOKEN" | base64)" .../registry/status
  CHECK(RequireOk(Call(registry, "GET", "/registry/status", "", Basic("root", kToken)))
            ["status"] == "Running");
  CHECK(RequireOk(Call(api, "GET", "/api/v1/status", "", Basic("root", kToken)))["status"] ==
        "Running");
  // An empty user name with the token as the password: a real client sends that.
  RequireOk(Call(api, "GET", "/api/v1/status", "", Basic("", kToken)));
  // Scheme case does not matter; wrong token, wrong user, other schemes, junk and a second
  // Authorization header all fail.
  RequireOk(Call(api, "GET", "/api/v1/status", "",
                 "authorization: BASIC " + log::Base64Encode(std::string("root:") + kToken) +
                     "\r\n"));
  RequireUnauthenticated(
      Call(api, "GET", "/api/v1/status", "", Basic("root", "wrong-1234")));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Basic("admin", kToken)));
  RequireUnauthenticated(
      Call(api, "GET", "/api/v1/status", "",
           std::string("Authorization: Bearer ") + kToken + "\r\n"));
  RequireUnauthenticated(
      Call(api, "GET", "/api/v1/status", "", "Authorization: Basic %%%not-base64\r\n"));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "",
                                     Basic("root", kToken) + Basic("root", "wrong-1234")));

  // What an authenticated request changes is recorded with root as its actor.
  RequireOk(Call(api, "POST", "/api/v1/group", R"({"name":"by-root"})", Basic("root", kToken)));
  auto stopped = daemon->Stop(SIGTERM);
  REQUIRE(stopped.ok());
  bool root_actor = false;
  size_t failures = 0;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    CHECK(line.find(kToken) == std::string::npos);  // Never the token, not even in a failure.
    const Json event = Json::parse(line);
    if (event["type"] == "NodeGroupCreated") {
      root_actor = event["actor"]["kind"] == "Root" && event["actor"]["id"] == "root";
    }
    if (event["type"] == "AuthenticationFailed") {
      failures++;
      CHECK(event["payload"]["source_ip"] == "127.0.0.1");
    }
  }
  CHECK(root_actor);
  CHECK(failures == 9);  // Each refused request above, from status to the double header.
  const std::string output = daemon->Output();
  CHECK(output.find(kToken) == std::string::npos);
  CHECK(output.find(log::Base64Encode(std::string("root:") + kToken)) == std::string::npos);
}

TEST_CASE("failed authentications are limited per source: 429 with Retry-After") {
  TempDir dir;
  auto daemon = StartDaemon(dir, AuthEnv());
  const WireTarget api = daemon->controller();
  for (int i = 0; i < 20; i++) {
    const std::string guess = "guess-" + std::to_string(i) + "-xxxx";
    RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Basic("root", guess)));
  }
  WireResponse limited = Call(api, "GET", "/api/v1/status", "", Basic("root", "guess-21-xxxx"));
  CHECK(limited.status == 429);
  const int retry_after = std::stoi(limited.Header("Retry-After"));
  CHECK(retry_after >= 1);
  CHECK(retry_after <= 61);
  // The right token still works from the same source: only failures are counted.
  RequireOk(Call(api, "GET", "/api/v1/status", "", Basic("root", kToken)));
  auto stopped = daemon->Stop(SIGTERM);
  REQUIRE(stopped.ok());
  size_t failures = 0;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    failures += line.find("AuthenticationFailed") != std::string::npos;
  }
  CHECK(failures == 20);  // Past the limit nothing more is recorded.
}

TEST_CASE("cloisterd --init makes a token once, keeps only its digest, and the daemon uses it") {
  TempDir dir;
  auto init = RunCloisterdToExit({"--init", "--data", dir.Sub("data")}, {});
  REQUIRE(init.ok());
  CHECK(init->ExitCode() == 0);
  const size_t at = init->output.find("rta_");
  REQUIRE(at != std::string::npos);
  const std::string token = init->output.substr(at, init->output.find('\n', at) - at);
  CHECK(token.size() > 40);
  const std::string saved = ReadFileOrEmpty(dir.Sub("data") + "/root_token.sha256");
  CHECK(saved.size() == 65);
  CHECK(saved.find(token) == std::string::npos);
  // A second --init refuses to replace it.
  auto again = RunCloisterdToExit({"--init", "--data", dir.Sub("data")}, {});
  REQUIRE(again.ok());
  CHECK(again->ExitCode() == 2);
  CHECK(again->output.find("exists") != std::string::npos);

  auto daemon = StartDaemon(dir, {"ANKA_ENABLE_AUTH=true"});
  const WireTarget api = daemon->controller();
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status"));
  RequireOk(Call(api, "GET", "/api/v1/status", "", Basic("root", token)));
}

TEST_CASE("without ANKA_ENABLE_AUTH the daemon says loudly that it is open") {
  TempDir dir;
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {});
  REQUIRE(started.ok());
  RequireOk(Call((*started)->controller(), "GET", "/api/v1/status"));
  CHECK((*started)->Output().find("authentication is OFF") != std::string::npos);
}

TEST_CASE("a root token under 10 characters stops the start, without echoing it") {
  TempDir dir;
  auto refused = RunCloisterdToExit({"--data", dir.Sub("data")},
                                    {"ANKA_ENABLE_AUTH=true", "ANKA_ROOT_TOKEN=short9xyz"});
  REQUIRE(refused.ok());
  CHECK(refused->ExitCode() == 2);
  CHECK_THAT(refused->output, Catch::Contains("ANKA_ROOT_TOKEN must be at least 10 characters"));
  CHECK(refused->output.find("short9xyz") == std::string::npos);
}

TEST_CASE("cloisterd makes no core dumps: credentials pass through its memory") {
  TempDir dir;
  // The daemon inherits a limit that would allow core dumps; it must lower it itself.
  rlimit allow{};
  REQUIRE(getrlimit(RLIMIT_CORE, &allow) == 0);
  allow.rlim_cur = allow.rlim_max;
  if (allow.rlim_cur == 0) {
    allow.rlim_cur = allow.rlim_max = RLIM_INFINITY;  // Raising the hard limit needs root.
  }
  if (setrlimit(RLIMIT_CORE, &allow) != 0 || allow.rlim_cur == 0) {
    WARN("cannot raise RLIMIT_CORE here: the check below could not tell");
  }
  auto daemon = StartDaemon(dir, AuthEnv());
  const std::string limits =
      ReadFileOrEmpty("/proc/" + std::to_string(daemon->pid()) + "/limits");
  REQUIRE_FALSE(limits.empty());
  const size_t line = limits.find("Max core file size");
  REQUIRE(line != std::string::npos);
  std::istringstream fields(limits.substr(line + std::string("Max core file size").size()));
  std::string soft, hard;
  fields >> soft >> hard;
  CHECK(soft == "0");
  CHECK(hard == "0");
  // (PR_SET_DUMPABLE 0 is not observable from outside when the test runs as root.)
}

TEST_CASE("an agent joins and runs with the root token") {
  TempDir dir;
  auto daemon = StartDaemon(dir, AuthEnv());
  const WireTarget api = daemon->controller();
  // Without the token the join's connection test fails, and says why.
  ProgramResult refused =
      RunProgram(RunfilePath("node/cloister-node"),
                 {"join", api.BaseUrl(), "--name", "n0", "--data", dir.Sub("n0")}, 20000);
  CHECK(WIFEXITED(refused.wait_status));
  CHECK(WEXITSTATUS(refused.wait_status) == 1);
  CHECK(refused.err.find("Authentication Required") != std::string::npos);

  ChildProcess agent({RunfilePath("node/cloister-node"), "join", api.BaseUrl(), "--name", "n1",
                      "--heartbeat", "300ms", "--root-token", kToken, "--data", dir.Sub("n1")},
                     {}, dir.Sub("n1.log"));
  const std::string template_id =
      PushTemplate(daemon->registry(), "macos-15", "v1", Basic("root", kToken));
  const int64_t deadline = MonotonicMs() + 15000;
  bool started = false;
  std::string id;
  while (!started && MonotonicMs() < deadline) {
    Json nodes = RequireOk(Call(api, "GET", "/api/v1/node", "", Basic("root", kToken)));
    if (id.empty() && nodes.size() == 1 && nodes[0]["state"] == "Active") {
      id = RequireOk(Call(api, "POST", "/api/v1/vm", R"({"vmid":")" + template_id + R"("})",
                          Basic("root", kToken)))[0];
    }
    if (!id.empty()) {
      started = RequireOk(Call(api, "GET", "/api/v1/vm?id=" + id, "", Basic("root", kToken)))
                    ["instance_state"] == "Started";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(ReadFileOrEmpty(dir.Sub("n1.log")));
  CHECK(started);
  CHECK(ReadFileOrEmpty(dir.Sub("n1.log")).find(kToken) == std::string::npos);
  agent.Kill(SIGTERM);
  agent.Wait();
}

}  // namespace
}  // namespace cloister::testing
