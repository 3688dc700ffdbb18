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
}  // namespace cloister::engine
