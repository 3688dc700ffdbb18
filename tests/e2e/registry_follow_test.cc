// A controller with a separate registry (split deployment): `cloisterd --role registry` and
// `cloisterd --role controller` with ANKA_ANKA_REGISTRY pointing at it and a UAK of its own
// there, plus one cloister-node (sim driver) joined to the controller. Authentication is on in
// both; the test and the agent use the root token, which both processes share.
//
//  * A template pushed to the registry (client/registry_client.h) appears in the controller's
//    GET /api/v1/registry/vm under the registry's id; a VM started by that id via the controller
//    is pulled by the agent from the registry (the long-poll gives the registry URL and the
//    manifest digest) and reaches Started.
//  * A second tag follows; DELETE /api/v1/registry/revert and DELETE /api/v1/registry/vm on the
//    controller reach the registry, and the controller's view follows within a second.
//  * Idle (a 100 ms re-read interval, for 3 s): the controller records no event.
//  * Restarted with a one-minute interval: the same view from its log, nothing recorded by the
//    read at start, and a revert through it is followed within a second (an immediate re-read).
//  * The registry gone: a delete through the controller fails with 502, registry_status turns
//    Unreachable, the view is unchanged and no event is recorded.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "client/client_auth.h"
#include "client/registry_client.h"
#include "log/base64.h"
#include "node/sim_image.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/tap_client.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr char kToken[] = "canary-root-token-follow-7301";
constexpr char kLayerType[] = "application/vnd.oci.image.layer.v1.tar";

std::string Root() {
  return "Authorization: Basic " + log::Base64Encode(std::string("root:") + kToken) + "\r\n";
}

Json Get(const WireTarget& target, const std::string& path) {
  return RequireOk(Call(target, "GET", path, "", Root()));
}

// The controller's templates as {id: [tags]}.
std::map<std::string, std::vector<std::string>> ControllerTemplates(const WireTarget& api) {
  std::map<std::string, std::vector<std::string>> out;
  for (const Json& t : Get(api, "/api/v1/registry/vm")) {
    std::vector<std::string> tags;
    // The view can follow a deletion between the list and this read: then it is gone.
    const WireResponse detail =
        Call(api, "GET", "/api/v1/registry/vm?id=" + t["id"].get<std::string>(), "", Root());
    const Json one = Json::parse(detail.body, nullptr, false);
    if (detail.status == 200 && one.is_object() && one.value("status", "") == "FAIL" &&
        one.value("message", "") == "Not found") {
      continue;
    }
    const Json body = RequireOk(detail);
    for (const Json& v : body["versions"]) {
      tags.push_back(v["tag"]);
    }
    out[t["id"]] = tags;
  }
  return out;
}

size_t EventCount(const std::string& data_dir, const std::string& type = "") {
  size_t n = 0;
  for (const std::string& line : AuditExportLines(data_dir)) {
    n += type.empty() || Json::parse(line)["type"] == type;
  }
  return n;
}

TEST_CASE("a controller follows a separate registry's templates") {
  TempDir dir;
  const std::vector<std::string> auth = {"ANKA_ENABLE_AUTH=true",
                                         std::string("ANKA_ROOT_TOKEN=") + kToken,
                                         "ANKA_ENABLE_API_KEYS=true"};
  auto started_registry = CloisterdProcess::Start(dir.Sub("registry"), dir.path(),
                                                  {"--role", "registry", "--access-log=false"},
                                                  auth);
  INFO(started_registry.status().ToString());
  REQUIRE(started_registry.ok());
  std::unique_ptr<CloisterdProcess> registry_process = std::move(*started_registry);
  const WireTarget registry = registry_process->registry();

  // The controller's own key, made on the registry (which keeps its own keys).
  Pkey key = NewRsaKey();
  CreateApiKey(registry, Root(), "controller", key.get());
  std::ofstream(dir.Sub("controller-key.pem")) << PrivatePem(key.get());
  std::vector<std::string> controller_env = auth;
  controller_env.push_back("ANKA_ANKA_REGISTRY=" + registry.BaseUrl());
  controller_env.push_back("ANKA_API_KEY_ID=controller");
  controller_env.push_back("ANKA_API_KEY_FILE=" + dir.Sub("controller-key.pem"));
  controller_env.push_back("CLOISTER_REGISTRY_INTERVAL_MS=100");
  const std::string controller_data = dir.Sub("controller");
  auto started_controller = CloisterdProcess::Start(
      controller_data, dir.path(), {"--role", "controller", "--access-log=false"},
      controller_env);
  INFO(started_controller.status().ToString());
  REQUIRE(started_controller.ok());
  std::unique_ptr<CloisterdProcess> controller = std::move(*started_controller);
  const WireTarget api = controller->controller();
  INFO("controller: " << controller->Output());
  REQUIRE(WaitFor(10000, [&] {
    return Get(api, "/api/v1/status")["registry_status"] == "Running";
  }));
  CHECK(ControllerTemplates(api).empty());

  // ---- A push to the registry appears on the controller, under the registry's id. ----
  client::Credentials root;
  root.root_token = kToken;
  auto client_auth = client::ClientAuth::Create(root);
  REQUIRE(client_auth.ok());
  client::RegistryClientOptions options;
  options.url = registry.BaseUrl();
  options.auth = client_auth.value();
  client::RegistryClient oci(options);
  auto push = [&](const std::string& repository, const std::string& tag, const std::string& seed) {
    const std::string layout = dir.Sub("layout-" + seed);
    auto digest = node::WriteImageLayout(
        layout, tag, {node::kSimConfigMediaType, R"({"name":"macos","cpu_cores":2})"},
        {{kLayerType, node::SeededBytes(seed, 256 << 10)}});
    REQUIRE(digest.ok());
    auto pushed = oci.PushImage(repository, tag, layout);
    INFO(pushed.status().ToString());
    REQUIRE(pushed.ok());
    return *digest;
  };
  const std::string v1 = push("ci/macos", "v1", "disk-1");
  std::string template_id;
  for (const Json& t : Get(registry, "/registry/v2/vm")) {
    if (t["name"] == "ci/macos") template_id = t["id"];
  }
  REQUIRE(!template_id.empty());
  REQUIRE(WaitFor(5000, [&] { return ControllerTemplates(api).contains(template_id); }));
  CHECK(ControllerTemplates(api).at(template_id) == std::vector<std::string>{"v1"});
  const Json version = Get(api, "/api/v1/registry/vm?id=" + template_id)["versions"][0];
  const Json registry_version = Get(registry, "/registry/vm?id=" + template_id)["versions"][0];
  CHECK(version["number"] == 0);
  // The same instant on both sides (the controller renders it with its own precision).
  CHECK(version["creation_date"].get<std::string>().substr(0, 19) ==
        registry_version["creation_date"].get<std::string>().substr(0, 19));

  // ---- A VM by that id: the agent pulls from the registry the controller names. ----
  const std::string node_dir = dir.Sub("n1");
  const std::string agent_log = dir.Sub("n1.log");
  ChildProcess agent({RunfilePath("node/cloister-node"), "join", api.BaseUrl(), "--name", "n1",
                      "--heartbeat", "300ms", "--max-vm-count", "4", "--data", node_dir,
                      "--root-token", kToken},
                     {}, agent_log);
  INFO("agent log: " << ReadFileOrEmpty(agent_log));
  REQUIRE(WaitFor(15000, [&] {
    const Json nodes = Get(api, "/api/v1/node");
    return nodes.size() == 1 && nodes[0]["state"] == "Active";
  }));
  const std::string vm =
      RequireOk(Call(api, "POST", "/api/v1/vm", R"({"vmid":")" + template_id + R"("})",
                     Root()))[0];
  REQUIRE(WaitFor(20000, [&] {
    return Get(api, "/api/v1/vm?id=" + vm).value("instance_state", "") == "Started";
  }));
  CHECK(fs::exists(node_dir + "/images/" + template_id + "/v1"));
  bool pulled = false;
  for (const std::string& line : AuditExportLines(controller_data)) {
    const Json event = Json::parse(line);
    pulled |= event["type"] == "VmInstanceStateChanged" &&
              event["payload"]["instance_id"] == vm && event["payload"]["state"] == "Pulling";
  }
  CHECK(pulled);

  // ---- A second tag follows; a revert through the controller reaches the registry. ----
  push("ci/macos", "v2", "disk-2");
  REQUIRE(WaitFor(5000, [&] {
    return ControllerTemplates(api).at(template_id) == std::vector<std::string>{"v1", "v2"};
  }));
  const Json reverted = RequireOk(Call(
      api, "DELETE", "/api/v1/registry/revert?id=" + template_id + "&tag=v2", "", Root()));
  CHECK(reverted["removed_tags"] == Json::array({"v2"}));
  CHECK(Get(registry, "/registry/vm?id=" + template_id)["versions"].size() == 1);
  CHECK(WaitFor(1000, [&] {
    return ControllerTemplates(api).at(template_id) == std::vector<std::string>{"v1"};
  }));
  // A refusal of the registry's comes back as it is, and nothing changes.
  const std::string refused = RequireFail(
      Call(api, "DELETE", "/api/v1/registry/revert?id=" + template_id + "&tag=nope", "", Root()),
      200);
  CHECK(refused == "No such tag nope");
  // Without credentials the controller refuses before asking the registry.
  CHECK(Call(api, "DELETE", "/api/v1/registry/vm?id=" + template_id).status == 401);

  // ---- A template deleted through the controller leaves both. ----
  push("ci/other", "base", "disk-3");
  std::string other_id;
  REQUIRE(WaitFor(5000, [&] {
    for (const auto& [id, tags] : ControllerTemplates(api)) {
      if (id != template_id) other_id = id;
    }
    return !other_id.empty();
  }));
  RequireOk(Call(api, "DELETE", "/api/v1/registry/vm?id=" + other_id, "", Root()));
  CHECK(WaitFor(1000, [&] { return !ControllerTemplates(api).contains(other_id); }));
  CHECK(RequireFail(Call(registry, "GET", "/registry/vm?id=" + other_id, "", Root()), 200) ==
        "VM not in the registry");
  const Json disk = Get(api, "/api/v1/registry/disk");
  CHECK(disk["total"].get<uint64_t>() >= disk["free"].get<uint64_t>());

  // ---- Idle: 30 re-reads of an unchanged registry record nothing. ----
  const size_t mirrored = EventCount(controller_data, "TemplateMirrored");
  CHECK(mirrored == 5);  // v1, v2, the revert, ci/other, its removal.
  const size_t events = EventCount(controller_data);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  CHECK(EventCount(controller_data) == events);

  // ---- Restarted with a one-minute interval: the view comes back from the log, the read at
  // start records nothing, and a revert through it is followed at once (not at the interval).
  const auto before_restart = ControllerTemplates(api);
  REQUIRE(controller->Stop(SIGTERM).ok());
  controller.reset();
  controller_env.back() = "CLOISTER_REGISTRY_INTERVAL_MS=60000";
  auto restarted = CloisterdProcess::Start(
      controller_data, dir.path(), {"--role", "controller", "--access-log=false"},
      controller_env);
  REQUIRE(restarted.ok());
  controller = std::move(*restarted);
  const WireTarget api2 = controller->controller();
  CHECK(ControllerTemplates(api2) == before_restart);
  REQUIRE(WaitFor(5000, [&] {
    return Get(api2, "/api/v1/status")["registry_status"] == "Running";
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(EventCount(controller_data) == events);
  RequireOk(Call(api2, "DELETE", "/api/v1/registry/revert?id=" + template_id, "", Root()));
  CHECK(WaitFor(1000, [&] { return ControllerTemplates(api2).at(template_id).empty(); }));
  CHECK(EventCount(controller_data, "TemplateMirrored") == mirrored + 1);

  // ---- The registry gone: deletes fail, the view stays, nothing is recorded. ----
  const auto before = ControllerTemplates(api2);
  const size_t events_before = EventCount(controller_data);
  REQUIRE(registry_process->Stop(SIGTERM).ok());
  const std::string unreachable = RequireFail(
      Call(api2, "DELETE", "/api/v1/registry/vm?id=" + template_id, "", Root()), 502);
  CHECK(unreachable.find("did not answer") != std::string::npos);
  // The failed call makes the probe look again at once: the status follows too.
  CHECK(WaitFor(5000, [&] {
    return Get(api2, "/api/v1/status")["registry_status"] == "Unreachable";
  }));
  CHECK(ControllerTemplates(api2) == before);
  CHECK(EventCount(controller_data) == events_before);
  // Neither the key nor the root token reaches the controller's log.
  CHECK(controller->Output().find(kToken) == std::string::npos);
  CHECK(controller->Output().find("PRIVATE KEY") == std::string::npos);
}

}  // namespace
}  // namespace cloister::testing
