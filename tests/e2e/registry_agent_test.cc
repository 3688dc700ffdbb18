// The registry through a real agent: cloisterd and one cloister-node (sim driver) as processes
// on loopback, images pushed and pulled with client/registry_client.h.
//
//  * Pull before clone: a template pushed as ci/macos:v1 (a config and two layers) is started;
//    the agent pulls it into its image cache (byte for byte what was pushed) and the event log
//    shows the instance Pulling, with progress, before Started.
//  * Distribution: remove (the tag) empties the cache, distribute pulls it again (in_progress
//    reports, then done at 100), remove (every tag) empties it again.
//  * Save image: the running instance is saved as tag v2 of the template; the request goes done,
//    the registry lists v2 with the digest the sim image's deterministic bytes give, it pulls,
//    the saved VM is running again, and a VM started from v2 reaches Started.
//  * A pull that fails (a layer corrupted in the registry's blob store) puts the instance in
//    Error with "pull <vmid>:<tag> failed: ...", and nothing is cloned.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "client/registry_client.h"
#include "node/sim_driver.h"
#include "node/sim_image.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr char kLayerType[] = "application/vnd.oci.image.layer.v1.tar";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The blobs of an OCI layout (relative path -> bytes).
std::map<std::string, std::string> Blobs(const std::string& layout) {
  std::map<std::string, std::string> blobs;
  if (!fs::is_directory(layout + "/blobs")) {
    return blobs;
  }
  for (const auto& entry : fs::recursive_directory_iterator(layout + "/blobs")) {
    if (entry.is_regular_file()) {
      blobs[fs::relative(entry.path(), layout).string()] = ReadFile(entry.path().string());
    }
  }
  return blobs;
}

// The manifest digest a layout's index.json names for tag ("" if none).
std::string LayoutDigest(const std::string& layout, const std::string& tag) {
  const Json index = Json::parse(ReadFile(layout + "/index.json"), nullptr, false);
  if (!index.is_object()) {
    return "";
  }
  for (const Json& entry : index.value("manifests", Json::array())) {
    if (entry["annotations"].value("org.opencontainers.image.ref.name", "") == tag) {
      return entry.value("digest", "");
    }
  }
  return "";
}

Json Instance(const WireTarget& api, const std::string& id) {
  return RequireOk(Call(api, "GET", "/api/v1/vm?id=" + id));
}

std::string State(const WireTarget& api, const std::string& id) {
  return Instance(api, id).value("instance_state", "");
}

Json NodeStatus(const WireTarget& api, const std::string& request_id) {
  const Json request =
      RequireOk(Call(api, "GET", "/api/v1/registry/vm/distribute?id=" + request_id));
  return request["nodes"].empty() ? Json::object() : request["nodes"][0];
}

// The audit export's events of type, as (payload) in seq order.
std::vector<Json> Events(const std::string& data_dir, const std::string& type) {
  std::vector<Json> events;
  for (const std::string& line : AuditExportLines(data_dir)) {
    const Json event = Json::parse(line);
    if (event["type"] == type) {
      events.push_back(event["payload"]);
    }
  }
  return events;
}

TEST_CASE("through a real agent: pull before clone, distribute, remove, save image") {
  TempDir dir;
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {"--access-log=false"});
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  std::unique_ptr<CloisterdProcess> controller = std::move(*started);
  const WireTarget api = controller->controller();
  const WireTarget registry = controller->registry();

  // A template image: a config and two layers (3 MiB and 1 MiB), pushed as ci/macos:v1.
  const std::string source = dir.Sub("source");
  auto v1 = node::WriteImageLayout(source, "v1",
                                   {node::kSimConfigMediaType, R"({"name":"macos","cpu_cores":2})"},
                                   {{kLayerType, node::SeededBytes("disk-a", 3 << 20)},
                                    {kLayerType, node::SeededBytes("disk-b", 1 << 20)}});
  REQUIRE(v1.ok());
  client::RegistryClientOptions options;
  options.url = registry.BaseUrl();
  client::RegistryClient oci(options);
  auto pushed = oci.PushImage("ci/macos", "v1", source);
  INFO(pushed.status().ToString());
  REQUIRE(pushed.ok());
  REQUIRE(pushed->digest == *v1);
  std::string template_id;
  for (const Json& t : RequireOk(Call(api, "GET", "/api/v1/registry/vm"))) {
    if (t["name"] == "ci/macos") template_id = t["id"];
  }
  REQUIRE(!template_id.empty());

  const std::string node_dir = dir.Sub("n1");
  const std::string log = dir.Sub("n1.log");
  ChildProcess agent({RunfilePath("node/cloister-node"), "join", api.BaseUrl(), "--name", "n1",
                      "--heartbeat", "300ms", "--max-vm-count", "4", "--data", node_dir},
                     {}, log);
  INFO("agent log: " << ReadFileOrEmpty(log));
  REQUIRE(WaitFor(15000, [&] {
    const Json nodes = RequireOk(Call(api, "GET", "/api/v1/node"));
    return nodes.size() == 1 && nodes[0]["state"] == "Active";
  }));
  const std::string cache = node_dir + "/images/" + template_id;

  // ---- Pull before clone. ----
  const std::string first =
      RequireOk(Call(api, "POST", "/api/v1/vm", R"({"vmid":")" + template_id + R"("})"))[0];
  REQUIRE(WaitFor(20000, [&] { return State(api, first) == "Started"; }));
  CHECK(Blobs(cache + "/v1") == Blobs(source));
  CHECK(LayoutDigest(cache + "/v1", "v1") == *v1);
  CHECK(Instance(api, first)["vminfo"]["status"] == "running");
  {
    // The log: Pulling (with the pull's progress, up to 1) before Started.
    std::vector<std::pair<std::string, double>> states;
    for (const Json& p : Events(dir.Sub("data"), "VmInstanceStateChanged")) {
      if (p["instance_id"] == first) states.emplace_back(p["state"], p["progress"]);
    }
    size_t pulled = states.size();
    size_t started_at = states.size();
    size_t pulling = 0;
    for (size_t i = 0; i < states.size(); i++) {
      pulling += states[i].first == "Pulling";
      if (states[i].first == "Pulling" && states[i].second == 1.0 && pulled == states.size()) {
        pulled = i;
      }
      if (states[i].first == "Started" && started_at == states.size()) started_at = i;
    }
    INFO("states: " << Json(states).dump());
    CHECK(pulling >= 3);  // 0, steps between, 1 (and the reconciler's Pulling while cloning).
    CHECK(pulled < started_at);
    CHECK(started_at < states.size());
  }
  // The heartbeat names the template (the scheduler prefers nodes holding it).
  CHECK(WaitFor(5000, [&] {
    const Json nodes = RequireOk(Call(api, "GET", "/api/v1/node"));
    return nodes[0]["templates"] == Json::array({{{"id", template_id}}});
  }));

  // ---- Distribution: remove the tag, distribute it again, remove every tag. ----
  auto remove = [&](const std::string& tag) {
    const Json sent = RequireOk(
        Call(api, "DELETE",
             "/api/v1/registry/vm/remove?id=" + template_id + (tag.empty() ? "" : "&tag=" + tag)));
    CHECK(sent["requests_sent"] == 1);
    const std::string request_id = sent["request_id"];
    CHECK(
        WaitFor(15000, [&] { return NodeStatus(api, request_id).value("status", "") == "done"; }));
    CHECK(NodeStatus(api, request_id)["progress"] == 100);
  };
  remove("v1");
  CHECK(!fs::exists(cache + "/v1"));
  const std::string distribution =
      RequireOk(Call(api, "POST", "/api/v1/registry/vm/distribute",
                     R"({"template_id":")" + template_id + R"(","tag":"v1"})"))["request_id"];
  REQUIRE(
      WaitFor(15000, [&] { return NodeStatus(api, distribution).value("status", "") == "done"; }));
  CHECK(NodeStatus(api, distribution)["progress"] == 100);
  CHECK(NodeStatus(api, distribution)["message"] == "");
  CHECK(Blobs(cache + "/v1") == Blobs(source));
  {
    std::vector<std::string> statuses;
    for (const Json& p : Events(dir.Sub("data"), "DistributionProgressed")) {
      if (p["request_id"] == distribution) statuses.push_back(p["status"]);
    }
    INFO("statuses: " << Json(statuses).dump());
    REQUIRE(statuses.size() >= 2);
    CHECK(statuses.front() == "in_progress");
    CHECK(statuses.back() == "done");
  }
  remove("");
  CHECK(!fs::exists(cache));

  // ---- Save image: the running instance becomes tag v2 of the template. ----
  const std::string save =
      RequireOk(Call(api, "POST", "/api/v1/image",
                     R"({"id":")" + first + R"(","target_vm_id":")" + template_id +
                         R"(","tag":"v2","description":"saved by the test"})"));
  REQUIRE(WaitFor(20000, [&] {
    return RequireOk(Call(api, "GET", "/api/v1/image?id=" + save))["status"] != "pending";
  }));
  const Json saved = RequireOk(Call(api, "GET", "/api/v1/image?id=" + save));
  INFO("save: " << saved.dump());
  REQUIRE(saved["status"] == "done");
  CHECK(saved["vmid"] == template_id);
  bool listed = false;
  const Json versions = RequireOk(Call(registry, "GET", "/registry/vm?id=" + template_id));
  for (const Json& v : versions["versions"]) {
    listed = listed || v["tag"] == "v2";
  }
  INFO("registry: " << versions.dump());
  CHECK(listed);
  // The digest is the sim image's: deterministic bytes from the VM and its instance id.
  node::SimImageSpec spec;
  spec.instance_id = first;
  spec.vm_name = "cloister-" + first;
  spec.cpu_cores = node::kSimDefaultCpuCores;
  spec.ram_mb = node::kSimDefaultRamMb;
  spec.template_id = template_id;
  spec.tag = "v1";
  spec.description = "saved by the test";
  auto expected = node::WriteSimImage(spec, dir.Sub("expected"), "v2");
  REQUIRE(expected.ok());
  auto v2 = oci.GetManifest(template_id, "v2");
  REQUIRE(v2.ok());
  CHECK(v2->digest == *expected);
  auto pulled = oci.PullImage("ci/macos", "v2", dir.Sub("pulled-v2"));
  INFO(pulled.status().ToString());
  REQUIRE(pulled.ok());
  CHECK(pulled->digest == *expected);
  CHECK(Blobs(dir.Sub("pulled-v2")) == Blobs(dir.Sub("expected")));
  // Stopped for the save, the VM runs again (the reconciler repairs the drift).
  CHECK(WaitFor(10000, [&] {
    const Json vm = Instance(api, first);
    return vm["instance_state"] == "Started" && vm["vminfo"]["status"] == "running";
  }));

  // ---- A VM from the saved tag. ----
  const std::string second = RequireOk(
      Call(api, "POST", "/api/v1/vm", R"({"vmid":")" + template_id + R"(","tag":"v2"})"))[0];
  REQUIRE(WaitFor(20000, [&] { return State(api, second) == "Started"; }));
  CHECK(LayoutDigest(cache + "/v2", "v2") == *expected);

  // ---- A pull that fails: a layer of v3 is corrupted in the registry's blob store. ----
  const std::string broken_layer = node::SeededBytes("disk-c", 256 << 10);
  auto v3 = node::WriteImageLayout(dir.Sub("source-v3"), "v3",
                                   {node::kSimConfigMediaType, R"({"name":"macos-v3"})"},
                                   {{kLayerType, broken_layer}});
  REQUIRE(v3.ok());
  REQUIRE(oci.PushImage("ci/macos", "v3", dir.Sub("source-v3")).ok());
  const std::string hex = client::Sha256Digest(broken_layer).substr(7);
  size_t corrupted = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir.Sub("data"))) {
    if (entry.is_regular_file() && entry.path().filename() == hex) {
      std::fstream file(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
      file.seekp(1000);
      file.put('\x5a' ^ broken_layer[1000]);
      corrupted++;
    }
  }
  REQUIRE(corrupted == 1);
  const std::string failing = RequireOk(
      Call(api, "POST", "/api/v1/vm", R"({"vmid":")" + template_id + R"(","tag":"v3"})"))[0];
  const bool failed = WaitFor(20000, [&] { return State(api, failing) == "Error"; });
  INFO("instance: " << Instance(api, failing).dump() << "\nagent log: " << ReadFileOrEmpty(log));
  REQUIRE(failed);
  const std::string message = Instance(api, failing).value("message", "");
  INFO("message: " << message);
  CHECK(message.rfind("pull " + template_id + ":v3 failed: ", 0) == 0);
  CHECK(!fs::exists(cache + "/v3"));

  // Each push of the saved tag was recorded once.
  size_t v2_pushes = 0;
  for (const Json& p : Events(dir.Sub("data"), "ManifestPushed")) {
    v2_pushes += p["tag"] == "v2";
  }
  CHECK(v2_pushes == 1);

  agent.Kill(SIGTERM);
  CHECK(WIFEXITED(agent.Wait()));
  auto sim = node::SimDriver::Open(node_dir + "/sim");
  REQUIRE(sim.ok());
  // The saved VM: cloned once, stopped once for the save, started again after it.
  CHECK((*sim)->Calls(node::SimOp::kClone, "cloister-" + first) == 1);
  CHECK((*sim)->Calls(node::SimOp::kStop, "cloister-" + first) == 1);
  CHECK((*sim)->Calls(node::SimOp::kStart, "cloister-" + first) == 2);
  CHECK((*sim)->Calls(node::SimOp::kClone, "cloister-" + second) == 1);
  CHECK((*sim)->Calls(node::SimOp::kClone, "cloister-" + failing) == 0);
  auto stopped = controller->Stop(SIGTERM);
  REQUIRE(stopped.ok());
  CHECK(WIFEXITED(*stopped));
}

}  // namespace
}  // namespace cloister::testing
