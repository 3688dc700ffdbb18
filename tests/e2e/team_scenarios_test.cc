// Seed 002's three team scenarios end to end: a real cloisterd with UAK authentication,
// controller authorization and resource management, and real cloister-node agents (sim driver)
// joined with their own API keys (`join --api-key-id --api-key-file`, as the seed writes it).
// Service users log in with TAP and start instances for their team's permission group; each
// case asserts where the instances land and what every credential may and may not do.
//
//   1. Team-specific nodes: each team's node is joined with a key in the team's group.
//   2. Shared nodes limited by templates: one node key in every team; teams may use only their
//      templates; a node credential that cannot pull a template gets no instance from it.
//   3. Team nodes plus a dynamic node whose key's groups an operator changes at run time: the
//      waiting instances of the team it is given land on it, and only that team's.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "log/base64.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/tap_client.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

constexpr char kToken[] = "team-scenarios-root-7310";

// The seed's "Recommended Node permissions" (what an agent calls) and the service user's
// "Instances, Nodes, and Distribute".
const std::vector<std::string> kNodePermissions = {"change_node_config", "list_vms", "update_vm",
                                                   "save_image"};
const std::vector<std::string> kServiceUserPermissions = {
    "list_vms",   "start_vm",          "terminate_vm",        "update_vm",     "list_nodes",
    "get_groups", "registry_list",     "registry_distribute", "registry_distribute_status",
    "save_image", "list_images"};

std::string Root() {
  return "Authorization: Basic " + log::Base64Encode(std::string("root:") + kToken) + "\r\n";
}

// One cloisterd with every switch of seed 002 on, its agents and its keys.
class Fleet {
 public:
  Fleet() {
    auto started = CloisterdProcess::Start(
        dir_.Sub("data"), dir_.path(), {"--access-log=false"},
        {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken,
         "ANKA_ENABLE_API_KEYS=true", "ANKA_ENABLE_CONTROLLER_AUTHORIZATION=true",
         "ANKA_ENABLE_RESOURCE_MANAGEMENT=true"});
    INFO(started.status().ToString());
    REQUIRE(started.ok());
    daemon_ = std::move(*started);
    api_ = daemon_->controller();
    RequireOk(Call(api_, "PUT", "/api/v1/config", R"({"node_heartbeat_timeout":"5s"})", Root()));
    Group("node", kNodePermissions);
    Group("service-user", kServiceUserPermissions);
  }

  const WireTarget& api() const { return api_; }

  // A template pushed to the registry by root as name:v1; its id.
  std::string Template(const std::string& name) {
    return PushTemplate(daemon_->registry(), name, "v1", Root());
  }

  // A controller permission group with these permissions (none for a team group).
  void Group(const std::string& name, const std::vector<std::string>& permissions) {
    const Json body = {{"component", "controller"}, {"name", name}, {"permissions", permissions}};
    RequireOk(Call(api_, "POST", "/admin/api/v1/permission/groups", body.dump(), Root()));
  }

  // The seed's Resources tab: what `group` may do to one node or template.
  void Grant(const std::string& group, const std::string& type, const std::string& id,
             const std::vector<std::string>& permissions) {
    const Json body = {{"resource_type", type}, {"resource_id", id}, {"permissions", permissions}};
    RequireOk(Call(api_, "POST", "/admin/api/v1/permission/group/" + group + "/resources",
                   body.dump(), Root()));
  }

  // A UAK with these groups (made by root), its private key kept for logins and joins.
  void Key(const std::string& id, const std::vector<std::string>& groups) {
    Pkey key = NewRsaKey();
    CreateApiKey(api_, Root(), id, key.get(), Json(groups).dump());
    keys_[id] = std::move(key);
  }

  void SetKeyGroups(const std::string& id, const std::vector<std::string>& groups) {
    const Json body = {{"id", id}, {"groups", groups}};
    RequireOk(Call(api_, "PUT", "/api/v1/apikey", body.dump(), Root()));
  }

  // The Bearer header of a fresh TAP session of key id.
  std::string Session(const std::string& id) { return Bearer(Login(api_, id, keys_.at(id).get())); }

  // `cloister-node join URL --api-key-id ID --api-key-file FILE ...` as its own process; waits
  // until the node is Active and returns its node id.
  std::string Join(const std::string& name, const std::string& key_id, int max_vm_count) {
    const std::string key_file = dir_.Sub(name + ".pem");
    {
      std::ofstream out(key_file);
      out << PrivatePem(keys_.at(key_id).get());
    }
    REQUIRE(chmod(key_file.c_str(), 0600) == 0);
    const std::vector<std::string> argv = {
        RunfilePath("node/cloister-node"), "join",   api_.BaseUrl(),     "--name",
        name,                              "--api-key-id", key_id,       "--api-key-file",
        key_file,                          "--max-vm-count", std::to_string(max_vm_count),
        "--heartbeat",                     "500ms",  "--sim-delay",      "100",
        "--data",                          dir_.Sub(name)};
    const std::string log = dir_.Sub(name + ".log");
    agents_.push_back(std::make_unique<ChildProcess>(argv, std::vector<std::string>{}, log));
    std::string node_id;
    const bool active = WaitFor(20000, [&] {
      for (const Json& node : RequireOk(Call(api_, "GET", "/api/v1/node", "", Root()))) {
        if (node["node_name"] == name && node["state"] == "Active") {
          node_id = node["node_id"];
          return true;
        }
      }
      return false;
    });
    INFO(name << " agent log: " << ReadFileOrEmpty(log));
    REQUIRE(active);
    return node_id;
  }

  // Scenarios 1 and 3: template "macos"; groups team1..3, each may list and pull it; for each
  // team a node key "teamN-nodes" (groups node, teamN) and a service user "teamN-su" (groups
  // service-user, teamN). Returns the template's id.
  std::string TeamsWithOwnNodes() {
    const std::string macos = Template("macos");
    for (int team = 1; team <= 3; team++) {
      const std::string t = "team" + std::to_string(team);
      Group(t, {});
      Grant(t, "template", macos, {"list", "pull"});
      Key(t + "-nodes", {"node", t});
      Key(t + "-su", {"service-user", t});
    }
    return macos;
  }

  // POST /api/v1/vm as a credential: the response.
  WireResponse Start(const std::string& auth, const std::string& vmid, const std::string& group,
                     int count, const std::string& extra = "") {
    Json body = {{"vmid", vmid}, {"count", count}};
    if (!group.empty()) body["group_id"] = group;
    std::string text = body.dump();
    if (!extra.empty()) text.insert(text.size() - 1, "," + extra);
    return Call(api_, "POST", "/api/v1/vm", text, auth);
  }
  std::vector<std::string> StartOk(const std::string& auth, const std::string& vmid,
                                   const std::string& group, int count) {
    return RequireOk(Start(auth, vmid, group, count)).get<std::vector<std::string>>();
  }

  // instance id -> the instance object (as root sees it).
  std::map<std::string, Json> Instances() {
    std::map<std::string, Json> by_id;
    for (const Json& item : RequireOk(Call(api_, "GET", "/api/v1/vm", "", Root()))) {
      by_id[item["instance_id"]] = item["vm"];
    }
    return by_id;
  }

  // Waits until every one of ids is Started; returns instance id -> node id.
  std::map<std::string, std::string> WaitStarted(const std::vector<std::string>& ids) {
    std::map<std::string, std::string> nodes;
    const bool started = WaitFor(20000, [&] {
      nodes.clear();
      auto all = Instances();
      for (const std::string& id : ids) {
        if (all[id].value("instance_state", "") != "Started") {
          return false;
        }
        nodes[id] = all[id]["node_id"];
      }
      return true;
    });
    INFO("instances: " << Json(Instances()).dump());
    REQUIRE(started);
    return nodes;
  }

  // The AccessDenied events of the log: (actor, permission, resource_id).
  std::vector<std::tuple<std::string, std::string, std::string>> Denials() {
    std::vector<std::tuple<std::string, std::string, std::string>> out;
    for (const std::string& line : AuditExportLines(dir_.Sub("data"))) {
      const Json event = Json::parse(line);
      if (event["type"] == "AccessDenied") {
        const Json& p = event["payload"];
        out.emplace_back(event["actor"]["id"], p.value("permission", ""),
                         p.value("resource_id", ""));
      }
    }
    return out;
  }

 private:
  TempDir dir_;
  std::unique_ptr<CloisterdProcess> daemon_;
  WireTarget api_;
  std::map<std::string, Pkey> keys_;
  std::vector<std::unique_ptr<ChildProcess>> agents_;
};

std::set<std::string> NodesOf(const std::map<std::string, std::string>& placed) {
  std::set<std::string> nodes;
  for (const auto& [instance, node] : placed) nodes.insert(node);
  return nodes;
}

// Whether an AccessDenied event names actor, permission and resource. A 403 is answered at once,
// before its event is durable, so the log is read again (bounded: 10 s) until it shows one.
bool Denied(Fleet& fleet, const std::string& actor, const std::string& permission,
            const std::string& resource) {
  return WaitFor(10000, [&] {
    for (const auto& [a, p, r] : fleet.Denials()) {
      if (a == actor && p == permission && r == resource) return true;
    }
    return false;
  });
}

TEST_CASE("seed 002 scenario 1: team-specific nodes") {
  Fleet fleet;
  const std::string macos = fleet.TeamsWithOwnNodes();
  std::map<int, std::string> node_of;
  for (int team = 1; team <= 3; team++) {
    const std::string t = "team" + std::to_string(team);
    node_of[team] = fleet.Join(t + "-node", t + "-nodes", 4);
    // The team's own node (and other resources) in its group.
    fleet.Grant(t, "node", node_of[team], {"list", "create_instance", "change_config"});
  }
  const std::string su1 = fleet.Session("team1-su");
  const std::string su2 = fleet.Session("team2-su");

  // Each team's instances land on its node only.
  const auto placed1 = fleet.WaitStarted(fleet.StartOk(su1, macos, "team1", 3));
  const auto placed2 = fleet.WaitStarted(fleet.StartOk(su2, macos, "team2", 2));
  CHECK(NodesOf(placed1) == std::set<std::string>{node_of[1]});
  CHECK(NodesOf(placed2) == std::set<std::string>{node_of[2]});
  for (const auto& [id, vm] : fleet.Instances()) {
    CHECK(vm["node_id"] != node_of[3]);  // Nobody started anything for team3.
  }

  // What team1's service user may not do.
  CHECK(RequireFail(fleet.Start(su1, macos, "team2", 1), 403) ==
        "permission denied: team1-su is not in group team2");
  CHECK(RequireFail(fleet.Start(su1, macos, "", 1), 400).find("group_id is required") == 0);
  RequireFail(fleet.Start(su1, macos, "team1", 1, R"("node_id":")" + node_of[2] + "\""), 403);
  RequireFail(Call(fleet.api(), "DELETE", "/api/v1/node", R"({"node_id":")" + node_of[1] + "\"}",
                   su1),
              403);  // service-user has no delete_node.
  // It sees only its team's node.
  const Json nodes = RequireOk(Call(fleet.api(), "GET", "/api/v1/node", "", su1));
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0]["node_id"] == node_of[1]);
  // Node groups are off while resource management is on, even for root.
  const Json off = Envelope(Call(fleet.api(), "POST", "/api/v1/group", R"({"name":"g"})", Root()));
  CHECK(off["status"] == "FAIL");
  CHECK(off["message"].get<std::string>().find("node groups are disabled") == 0);

  // Save image targets only instances of one's own groups.
  const std::string team1_vm = placed1.begin()->first;
  const std::string image =
      R"({"id":")" + team1_vm + R"(","tag":"v2","target_vm_id":")" + macos + R"("})";
  CHECK(RequireFail(Call(fleet.api(), "POST", "/api/v1/image", image, su2), 403) ==
        "permission denied: save image targets only instances of your groups, and " + team1_vm +
            " was started for group team1");
  RequireOk(Call(fleet.api(), "POST", "/api/v1/image", image, su1));

  // A node's credential runs the node, nothing else: it may not start instances.
  const std::string node_key = fleet.Session("team1-nodes");
  CHECK(RequireFail(fleet.Start(node_key, macos, "team1", 1), 403).find("start_vm") !=
        std::string::npos);

  // Every refusal is an AccessDenied event naming who and what.
  CHECK(Denied(fleet, "team1-su", "start_vm", "team2"));
  CHECK(Denied(fleet, "team1-su", "create_instance", node_of[2]));
  CHECK(Denied(fleet, "team1-su", "delete_node", ""));
  CHECK(Denied(fleet, "team1-nodes", "start_vm", ""));
  CHECK(Denied(fleet, "team2-su", "save_image", team1_vm));
}

TEST_CASE("seed 002 scenario 2: shared nodes, teams limited by template resources") {
  Fleet fleet;
  const std::string a = fleet.Template("tmpl-a");
  const std::string b = fleet.Template("tmpl-b");
  const std::string c = fleet.Template("tmpl-c");
  const std::string x = fleet.Template("tmpl-x");
  const std::map<std::string, std::string> template_of = {
      {"team1", a}, {"team2", b}, {"team3", c}, {"team4", x}};
  for (const auto& [team, tmpl] : template_of) {
    fleet.Group(team, {});
    fleet.Grant(team, "template", tmpl, {"list", "pull"});
    fleet.Key(team + "-su", {"service-user", team});
  }
  // One node credential for every node, in every team but team4.
  fleet.Key("nodes", {"node", "team1", "team2", "team3"});
  std::set<std::string> all_nodes;
  for (const char* name : {"shared-1", "shared-2", "shared-3"}) {
    all_nodes.insert(fleet.Join(name, "nodes", 4));
  }
  const std::string su1 = fleet.Session("team1-su");
  const std::string su2 = fleet.Session("team2-su");

  // Teams share every node: six instances spread over more than one.
  const auto placed1 = fleet.WaitStarted(fleet.StartOk(su1, a, "team1", 6));
  CHECK(NodesOf(placed1).size() == 3);
  const auto placed2 = fleet.WaitStarted(fleet.StartOk(su2, b, "team2", 2));
  for (const std::string& node : NodesOf(placed2)) CHECK(all_nodes.contains(node));

  // Only their own templates: start and list.
  CHECK(RequireFail(fleet.Start(su1, b, "team1", 1), 403) ==
        "permission denied: group team1 has no template permission pull on " + b);
  const Json templates = RequireOk(Call(fleet.api(), "GET", "/api/v1/registry/vm", "", su1));
  REQUIRE(templates.size() == 1);
  CHECK(templates[0]["id"] == a);
  CHECK(Denied(fleet, "team1-su", "pull", b));

  // team4 may use every node and its template, but the nodes' credential may not pull that
  // template: its instance waits ...
  for (const std::string& node : all_nodes) fleet.Grant("team4", "node", node, {"create_instance"});
  const std::string su4 = fleet.Session("team4-su");
  const std::vector<std::string> waiting = fleet.StartOk(su4, x, "team4", 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // Two scheduler ticks.
  auto vm = fleet.Instances().at(waiting[0]);
  CHECK(vm["instance_state"] == "Scheduling");
  CHECK_FALSE(vm.contains("node_id"));
  // ... until the node group is granted pull on it.
  fleet.Grant("node", "template", x, {"pull"});
  const auto placed4 = fleet.WaitStarted(waiting);
  CHECK(all_nodes.contains(placed4.at(waiting[0])));
}

TEST_CASE("seed 002 scenario 3: team nodes plus a dynamic node whose groups change") {
  Fleet fleet;
  const std::string macos = fleet.TeamsWithOwnNodes();
  std::map<int, std::string> node_of;
  fleet.Key("dynamic-nodes", {"node"});
  for (int team = 1; team <= 3; team++) {
    const std::string t = "team" + std::to_string(team);
    node_of[team] = fleet.Join(t + "-node", t + "-nodes", 2);
    fleet.Grant(t, "node", node_of[team], {"list", "create_instance"});
  }
  const std::string dynamic = fleet.Join("dynamic-node", "dynamic-nodes", 4);
  const std::string su1 = fleet.Session("team1-su");
  const std::string su3 = fleet.Session("team3-su");

  // team3 asks for four: its node takes two, the rest wait (the dynamic node serves nobody).
  const std::vector<std::string> burst = fleet.StartOk(su3, macos, "team3", 4);
  REQUIRE(WaitFor(20000, [&] {
    size_t on_team3 = 0;
    for (const std::string& id : burst) on_team3 += fleet.Instances()[id].value("node_id", "") ==
                                                    node_of[3];
    return on_team3 == 2;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // Two scheduler ticks.
  size_t waiting = 0;
  for (const std::string& id : burst) {
    const Json vm = fleet.Instances()[id];
    if (!vm.contains("node_id")) {
      waiting++;
      CHECK(vm["instance_state"] == "Scheduling");
    } else {
      CHECK(vm["node_id"] == node_of[3]);
    }
  }
  CHECK(waiting == 2);

  // The operator adds team3 to the dynamic node's key: the waiting two land there, at once.
  fleet.SetKeyGroups("dynamic-nodes", {"node", "team3"});
  const auto placed3 = fleet.WaitStarted(burst);
  std::map<std::string, int> per_node;
  for (const auto& [id, node] : placed3) per_node[node]++;
  CHECK(per_node == std::map<std::string, int>{{node_of[3], 2}, {dynamic, 2}});

  // Capacity moves to team1: its four fill its node and the dynamic node's two free places;
  // team3's next one waits.
  fleet.SetKeyGroups("dynamic-nodes", {"node", "team1"});
  const auto placed1 = fleet.WaitStarted(fleet.StartOk(su1, macos, "team1", 4));
  per_node.clear();
  for (const auto& [id, node] : placed1) per_node[node]++;
  CHECK(per_node == std::map<std::string, int>{{node_of[1], 2}, {dynamic, 2}});
  const std::vector<std::string> more3 = fleet.StartOk(su3, macos, "team3", 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  CHECK_FALSE(fleet.Instances()[more3[0]].contains("node_id"));
  // And team1's service user may not act for team3.
  CHECK(RequireFail(fleet.Start(su1, macos, "team3", 1), 403) ==
        "permission denied: team1-su is not in group team3");
}

}  // namespace
}  // namespace cloister::testing
