// PlanPlacements on hand-built views: the cases the scenario scripts (tests/scenarios/
// scheduler.txt) do not reach through commands.
#include "engine/scheduler.h"

#include <catch2/catch.hpp>

namespace cloister::engine {
namespace {

reducers::Node ActiveNode(const std::string& id, uint32_t capacity) {
  reducers::Node node;
  node.node_id = id;
  node.state = fb::NodeState::Active;
  node.capacity = capacity;
  return node;
}

reducers::VmInstance Waiting(const std::string& id, const std::string& group, uint64_t seq) {
  reducers::VmInstance vm;
  vm.instance_id = id;
  vm.vmid = "tmpl";
  vm.group_id = group;
  vm.created.seq = seq;
  return vm;
}

void AddGroup(reducers::Views* views, const std::string& id, const std::string& fallback,
              std::set<std::string> nodes) {
  reducers::NodeGroup group;
  group.group_id = id;
  group.fallback_group_id = fallback;
  group.node_ids = std::move(nodes);
  views->node_groups.groups[id] = group;
}

TEST_CASE("a fallback chain that loops is followed once round") {
  reducers::Views views;
  views.nodes.nodes["n1"] = ActiveNode("n1", 1);
  views.nodes.nodes["n2"] = ActiveNode("n2", 1);
  AddGroup(&views, "a", "b", {"n1"});
  AddGroup(&views, "b", "a", {"n2"});
  views.vm_instances.instances["v1"] = Waiting("v1", "a", 1);
  views.vm_instances.instances["v2"] = Waiting("v2", "a", 2);
  views.vm_instances.instances["v3"] = Waiting("v3", "a", 3);
  const std::vector<Placement> plan = PlanPlacements(views, 100);
  REQUIRE(plan.size() == 2);
  CHECK(plan[0].instance_id == "v1");
  CHECK(plan[0].node_id == "n1");
  CHECK(plan[0].group_id == "a");
  CHECK(plan[1].instance_id == "v2");
  CHECK(plan[1].node_id == "n2");
  CHECK(plan[1].group_id == "b");  // Placed through the fallback.
}

TEST_CASE("capacity 0 means no limit; max_placements bounds a pass; the plan is deterministic") {
  reducers::Views views;
  views.nodes.nodes["n1"] = ActiveNode("n1", 0);
  for (int i = 0; i < 50; i++) {
    const std::string id = "v" + std::to_string(100 + i);
    views.vm_instances.instances[id] = Waiting(id, "", static_cast<uint64_t>(i));
  }
  CHECK(PlanPlacements(views, 0).empty());
  CHECK(PlanPlacements(views, 10).size() == 10);
  const std::vector<Placement> all = PlanPlacements(views, 1000);
  CHECK(all.size() == 50);
  const std::vector<Placement> again = PlanPlacements(views, 1000);
  REQUIRE(again.size() == all.size());
  for (size_t i = 0; i < all.size(); i++) {
    CHECK(again[i].instance_id == all[i].instance_id);
    CHECK(again[i].node_id == all[i].node_id);
  }
}

TEST_CASE("instances already placed count against capacity until Terminated or Error") {
  reducers::Views views;
  views.nodes.nodes["n1"] = ActiveNode("n1", 2);
  reducers::VmInstance running = Waiting("r", "", 1);
  running.node_id = "n1";
  running.state = fb::VmState::Started;
  reducers::VmInstance failed = Waiting("f", "", 2);
  failed.node_id = "n1";
  failed.state = fb::VmState::Error;
  views.vm_instances.instances["r"] = running;
  views.vm_instances.instances["f"] = failed;
  views.vm_instances.instances["w1"] = Waiting("w1", "", 3);
  views.vm_instances.instances["w2"] = Waiting("w2", "", 4);
  const std::vector<Placement> plan = PlanPlacements(views, 100);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].instance_id == "w1");
  // A group that no longer exists places nothing (the instance keeps waiting).
  views.vm_instances.instances["w1"].group_id = "gone";
  views.vm_instances.instances["w2"].group_id = "gone";
  CHECK(PlanPlacements(views, 100).empty());
}

}  // namespace
// Resource management: the node's credential and the resource grants decide, not node groups.
void Grant(reducers::Views* views, const std::string& type, const std::string& id,
           const std::string& principal, std::set<std::string> permissions) {
  reducers::ResourceGrant grant;
  grant.resource_type = type;
  grant.resource_id = id;
  grant.principal = principal;
  grant.permissions = std::move(permissions);
  views->resource_permissions.grants[type + "/" + id + "/" + principal] = grant;
}

reducers::Node KeyNode(const std::string& id, const std::string& key_id,
                       std::vector<std::string> groups) {
  reducers::Node node = ActiveNode(id, 10);
  node.credential = {fb::ActorKind::ApiKey, key_id, std::move(groups)};
  return node;
}

TEST_CASE("resource management: a group's instance lands only on a node that serves it") {
  reducers::Views views;
  views.nodes.nodes["n1"] = KeyNode("n1", "team1-nodes", {"node", "team1"});
  views.nodes.nodes["n2"] = KeyNode("n2", "team2-nodes", {"node", "team2"});
  views.nodes.nodes["n3"] = KeyNode("n3", "spare", {"node"});
  for (const char* key : {"team1-nodes", "team2-nodes", "spare"}) {
    Grant(&views, "template", "tmpl", key, {"pull"});
  }
  reducers::VmInstance vm = Waiting("v1", "", 1);
  vm.permission_group = "team2";
  views.vm_instances.instances["v1"] = vm;
  // Without resource management the fewest-instances rule picks n1 (smallest id).
  REQUIRE(PlanPlacements(views, 10).at(0).node_id == "n1");
  std::vector<Placement> plan = PlanPlacements(views, 10, true);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].node_id == "n2");  // Its key is in team2.

  // A node grant create_instance serves the group too, whatever the node's key.
  views.nodes.nodes.erase("n2");
  CHECK(PlanPlacements(views, 10, true).empty());
  Grant(&views, "node", "n3", "team2", {"create_instance"});
  plan = PlanPlacements(views, 10, true);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].node_id == "n3");
  // A grant without create_instance does not.
  Grant(&views, "node", "n3", "team2", {"list"});
  CHECK(PlanPlacements(views, 10, true).empty());
}

TEST_CASE("resource management: a node's credential needs pull on the template") {
  reducers::Views views;
  views.nodes.nodes["n1"] = KeyNode("n1", "nodes", {"node", "team1"});
  reducers::VmInstance vm = Waiting("v1", "", 1);
  vm.permission_group = "team1";
  views.vm_instances.instances["v1"] = vm;
  CHECK(PlanPlacements(views, 10, true).empty());
  Grant(&views, "template", "tmpl", "team1", {"list", "get_config"});
  CHECK(PlanPlacements(views, 10, true).empty());  // Not pull.
  Grant(&views, "template", "tmpl", "team1", {"pull"});  // Through one of the key's groups.
  CHECK(PlanPlacements(views, 10, true).size() == 1);
  // A root-joined node may pull anything, but serves a group only through a node grant.
  views.nodes.nodes["n1"].credential = {fb::ActorKind::Root, "root", {}};
  views.resource_permissions.grants.clear();
  CHECK(PlanPlacements(views, 10, true).empty());
  Grant(&views, "node", "n1", "team1", {"create_instance"});
  CHECK(PlanPlacements(views, 10, true).size() == 1);
}

TEST_CASE("resource management: an API key's groups are read now, not as the node joined") {
  reducers::Views views;
  views.nodes.nodes["n4"] = KeyNode("n4", "dynamic-nodes", {"node"});
  reducers::ApiKey key;
  key.key_id = "dynamic-nodes";
  key.groups = {"node"};
  views.api_keys.keys["dynamic-nodes"] = key;
  Grant(&views, "template", "tmpl", "node", {"pull"});
  reducers::VmInstance vm = Waiting("v1", "", 1);
  vm.permission_group = "team3";
  views.vm_instances.instances["v1"] = vm;
  CHECK(PlanPlacements(views, 10, true).empty());
  views.api_keys.keys["dynamic-nodes"].groups = {"node", "team3"};
  const std::vector<Placement> plan = PlanPlacements(views, 10, true);
  REQUIRE(plan.size() == 1);
  CHECK(plan[0].node_id == "n4");
}

TEST_CASE("resource management ignores node groups") {
  reducers::Views views;
  views.nodes.nodes["n1"] = KeyNode("n1", "k", {});
  views.nodes.nodes["n2"] = KeyNode("n2", "k", {});
  Grant(&views, "template", "tmpl", "k", {"pull"});
  AddGroup(&views, "g", "", {"n2"});
  views.vm_instances.instances["v1"] = Waiting("v1", "g", 1);  // Requested before it was on.
  CHECK(PlanPlacements(views, 10).at(0).node_id == "n2");
  CHECK(PlanPlacements(views, 10, true).at(0).node_id == "n1");
}

}  // namespace cloister::engine
