#include "engine/scheduler.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace cloister::engine {

namespace {

struct Load {
  uint32_t instances = 0;
  uint64_t vcpu = 0;
  uint64_t vram_mb = 0;
};

bool HasRoom(const reducers::Node& node, const Load& load, const reducers::VmInstance& vm) {
  if (node.capacity_mode == "resource") {
    // An operator's override (POST /api/v1/node/config) replaces what the node reported.
    const uint64_t vcpu = node.vcpu_override != 0 ? node.vcpu_override : node.vcpu_count;
    const uint64_t vram = node.ram_override_mb != 0 ? node.ram_override_mb : node.vram_mb;
    return load.vcpu + vm.vcpu <= vcpu && load.vram_mb + vm.vram_mb <= vram;
  }
  return node.capacity == 0 || load.instances < node.capacity;
}

bool HoldsTemplate(const reducers::Node& node, const std::string& vmid) {
  return std::find(node.templates.begin(), node.templates.end(), vmid) != node.templates.end();
}

// The groups to try for an instance, in order: its group, then the fallback chain.
std::vector<std::string> GroupChain(const reducers::Views& views, const std::string& group_id) {
  std::vector<std::string> chain;
  std::set<std::string> seen;
  std::string next = group_id;
  while (!next.empty() && seen.insert(next).second) {
    auto group = views.node_groups.groups.find(next);
    if (group == views.node_groups.groups.end()) {
      break;
    }
    chain.push_back(next);
    next = group->second.fallback_group_id;
  }
  return chain;
}

bool Granted(const reducers::Views& views, const char* type, const std::string& id,
             const std::string& subject, const char* permission) {
  auto grant = views.resource_permissions.grants.find(std::string(type) + "/" + id + "/" + subject);
  return grant != views.resource_permissions.grants.end() &&
         grant->second.permissions.contains(permission);
}

// The names a node's credential acts as: its id and its groups (an API key's current ones).
std::vector<std::string> Subjects(const reducers::Views& views, const reducers::Node& node) {
  const reducers::Credential& credential = node.credential;
  std::vector<std::string> subjects;
  if (!credential.id.empty()) {
    subjects.push_back(credential.id);
  }
  const std::vector<std::string>* groups = &credential.groups;
  if (credential.kind == fb::ActorKind::ApiKey) {
    auto key = views.api_keys.keys.find(credential.id);
    if (key != views.api_keys.keys.end()) {
      groups = &key->second.groups;
    }
  }
  subjects.insert(subjects.end(), groups->begin(), groups->end());
  return subjects;
}

}  // namespace

bool NodeMayPull(const reducers::Views& views, const reducers::Node& node,
                 const std::string& template_id) {
  if (node.credential.kind == fb::ActorKind::Root) {
    return true;
  }
  for (const std::string& subject : Subjects(views, node)) {
    if (Granted(views, "template", template_id, subject, "pull")) {
      return true;
    }
  }
  return false;
}

bool NodeServesGroup(const reducers::Views& views, const reducers::Node& node,
                     const std::string& group) {
  if (Granted(views, "node", node.node_id, group, "create_instance")) {
    return true;
  }
  const std::vector<std::string> subjects = Subjects(views, node);
  return std::find(subjects.begin(), subjects.end(), group) != subjects.end();
}

bool HoldsNode(fb::VmState state) {
  return state != fb::VmState::Terminated && state != fb::VmState::Error;
}

std::vector<Placement> PlanPlacements(const reducers::Views& views, size_t max_placements,
                                      bool resource_management) {
  std::vector<Placement> plan;
  if (max_placements == 0) {
    return plan;
  }
  std::map<std::string, Load> loads;
  std::vector<const reducers::VmInstance*> waiting;
  for (const auto& [id, vm] : views.vm_instances.instances) {
    if (vm.node_id.empty()) {
      if (vm.state == fb::VmState::Scheduling) {
        waiting.push_back(&vm);
      }
    } else if (HoldsNode(vm.state)) {
      Load& load = loads[vm.node_id];
      load.instances++;
      load.vcpu += vm.vcpu;
      load.vram_mb += vm.vram_mb;
    }
  }
  std::sort(waiting.begin(), waiting.end(), [](const auto* a, const auto* b) {
    return std::tie(a->priority, a->created.seq, a->instance_id) <
           std::tie(b->priority, b->created.seq, b->instance_id);
  });

  for (const reducers::VmInstance* vm : waiting) {
    if (plan.size() == max_placements) {
      break;
    }
    // The candidate sets, in the order to try them: (group id, node ids).
    std::vector<std::pair<std::string, std::vector<std::string>>> tiers;
    if (vm->group_id.empty() || resource_management) {
      std::vector<std::string> all;
      for (const auto& [node_id, node] : views.nodes.nodes) {
        all.push_back(node_id);
      }
      tiers.emplace_back("", std::move(all));
    } else {
      for (const std::string& group_id : GroupChain(views, vm->group_id)) {
        const auto& members = views.node_groups.groups.at(group_id).node_ids;
        tiers.emplace_back(group_id, std::vector<std::string>(members.begin(), members.end()));
      }
    }
    for (const auto& [group_id, node_ids] : tiers) {
      const reducers::Node* best = nullptr;
      auto rank = [&](const reducers::Node& node) {
        // Smaller is better: holds the template, fewest instances, smallest id.
        return std::make_tuple(!HoldsTemplate(node, vm->vmid), loads[node.node_id].instances,
                               node.node_id);
      };
      for (const std::string& node_id : node_ids) {
        auto found = views.nodes.nodes.find(node_id);
        if (found == views.nodes.nodes.end()) {
          continue;
        }
        const reducers::Node& node = found->second;
        if (node.state != fb::NodeState::Active || node.drain_mode ||
            (!vm->requested_node_id.empty() && vm->requested_node_id != node_id) ||
            !HasRoom(node, loads[node_id], *vm)) {
          continue;
        }
        if (resource_management &&
            (!NodeMayPull(views, node, vm->vmid) ||
             (!vm->permission_group.empty() &&
              !NodeServesGroup(views, node, vm->permission_group)))) {
          continue;
        }
        if (best == nullptr || rank(node) < rank(*best)) {
          best = &node;
        }
      }
      if (best != nullptr) {
        Load& load = loads[best->node_id];
        load.instances++;
        load.vcpu += vm->vcpu;
        load.vram_mb += vm->vram_mb;
        plan.push_back({vm->instance_id, best->node_id, group_id});
        break;
      }
    }
  }
  return plan;
}

}  // namespace cloister::engine
