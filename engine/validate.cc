// Validate + Stamp: one function per command kind, each checking the command against the durable
// views and, if it is valid, encoding its events. Nothing here changes a view or appends.
#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "engine/config_keys.h"
#include "engine/engine.h"
#include "engine/limits.h"
#include "engine/scheduler.h"
#include "log/draft.h"

namespace cloister::engine {

// Everything one validator needs: the views, the envelope to stamp with, and the plan to fill.
class Validation {
 public:
  Validation(const reducers::Views& views, const Principal& principal,
             const std::string& request_id, int64_t time_ns, Rng* rng)
      : views_(views), rng_(rng) {
    envelope_.time_ns = time_ns;
    envelope_.actor_kind = principal.kind;
    envelope_.actor_id = principal.name;
    envelope_.actor_groups = principal.groups;
    envelope_.request_id = request_id;
  }

  // Records a rejection; returns false so validators can `return Reject(...)`.
  bool Reject(Rejection rejection, std::string message) {
    plan_rejection_ = rejection;
    plan_message_ = std::move(message);
    return false;
  }

  // Checks a client-supplied text field: presence and length, no control characters.
  bool CheckText(const char* field, const std::string& value, size_t bytes_max, bool required) {
    if (required && value.empty()) {
      return Reject(Rejection::kInvalidArgument, std::string(field) + " is required");
    }
    if (value.size() > bytes_max) {
      return Reject(Rejection::kInvalidArgument, std::string(field) + " is longer than " +
                                                     std::to_string(bytes_max) + " bytes");
    }
    const bool control = std::any_of(value.begin(), value.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 && c != '\t';
    });
    if (control) {
      return Reject(Rejection::kInvalidArgument,
                    std::string(field) + " must not contain control characters");
    }
    return true;
  }

  template <typename T>
  void Emit(flatbuffers::Offset<T> payload, log::DraftBuilder* builder) {
    drafts_.push_back(builder->Finish(envelope_, payload));
  }

  const reducers::Views& views() const { return views_; }
  Rng* rng() { return rng_; }
  std::vector<std::string>& ids() { return ids_; }
  std::vector<log::Draft>& drafts() { return drafts_; }
  Rejection rejection() const { return plan_rejection_; }
  std::string& message() { return plan_message_; }

  bool ValidateCommand(const SetConfig& c);
  bool ValidateCommand(const CreateNodeGroup& c);
  bool ValidateCommand(const UpdateNodeGroup& c);
  bool ValidateCommand(const DeleteNodeGroup& c);
  bool ValidateCommand(const JoinNode& c);
  bool ValidateCommand(const RemoveNode& c);
  bool ValidateCommand(const RequestVm& c);
  bool ValidateCommand(const ChangeVmState& c);
  bool ValidateCommand(const TerminateVm& c);
  bool ValidateCommand(const UpdateNodeStatus& c);
  bool ValidateCommand(const ScheduleVms& c);
  bool ValidateCommand(const ChangeGroupMembership& c);

 private:
  bool GroupNameTaken(const std::string& name, const std::string& except_id) const;
  bool CheckFallback(const std::string& group_id, const std::string& fallback_id);

  const reducers::Views& views_;
  Rng* rng_;
  log::Envelope envelope_;
  std::vector<log::Draft> drafts_;
  std::vector<std::string> ids_;
  Rejection plan_rejection_ = Rejection::kNone;
  std::string plan_message_;
};

bool Validation::ValidateCommand(const SetConfig& c) {
  if (c.changes.empty()) {
    return Reject(Rejection::kInvalidArgument, "no settings given");
  }
  if (c.changes.size() > kConfigChangesMax) {
    return Reject(Rejection::kInvalidArgument,
                  "more than " + std::to_string(kConfigChangesMax) + " settings in one change");
  }
  std::vector<std::pair<std::string, std::string>> canonical;
  for (const auto& [name, value] : c.changes) {
    const ConfigKey* key = FindConfigKey(name);
    if (key == nullptr) {
      return Reject(Rejection::kUnknownConfigKey, "unknown setting " + name.substr(0, 64));
    }
    Result<std::string> text = CanonicalConfigValue(*key, value);
    if (!text.ok()) {
      return Reject(Rejection::kInvalidConfigValue, text.status().message());
    }
    const bool duplicate = std::any_of(canonical.begin(), canonical.end(),
                                       [&](const auto& kv) { return kv.first == name; });
    if (duplicate) {
      return Reject(Rejection::kInvalidArgument, "setting " + name + " given twice");
    }
    canonical.emplace_back(name, std::move(text.value()));
  }
  // A blind write: every accepted set is recorded, even of the current value (the audit shows
  // who set it), so validation reads no state and concurrent sets need no serialising.
  for (const auto& [name, value] : canonical) {
    log::DraftBuilder builder;
    auto& fbb = builder.fbb();
    Emit(fb::CreateConfigChangedDirect(fbb, name.c_str(), value.c_str()), &builder);
  }
  return true;
}

bool Validation::GroupNameTaken(const std::string& name, const std::string& except_id) const {
  return std::any_of(views_.node_groups.groups.begin(), views_.node_groups.groups.end(),
                     [&](const auto& entry) {
                       return entry.first != except_id && entry.second.name == name;
                     });
}

bool Validation::CheckFallback(const std::string& group_id, const std::string& fallback_id) {
  if (fallback_id.empty()) {
    return true;
  }
  if (fallback_id == group_id) {
    return Reject(Rejection::kInvalidFallback, "a group cannot fall back to itself");
  }
  // Follow the chain from the new fallback; reaching group_id would close a cycle. The chain is
  // at most as long as there are groups, which bounds the loop.
  std::string at = fallback_id;
  for (size_t hops = 0; hops <= views_.node_groups.groups.size(); ++hops) {
    auto it = views_.node_groups.groups.find(at);
    if (it == views_.node_groups.groups.end()) {
      if (at == fallback_id) {
        return Reject(Rejection::kInvalidFallback, "fallback group " + fallback_id.substr(0, 64) +
                                                       " does not exist");
      }
      return true;
    }
    if (it->second.fallback_group_id.empty()) {
      return true;
    }
    at = it->second.fallback_group_id;
    if (at == group_id) {
      return Reject(Rejection::kInvalidFallback, "fallback group would make a cycle");
    }
  }
  return Reject(Rejection::kInvalidFallback, "fallback group would make a cycle");
}

bool Validation::ValidateCommand(const CreateNodeGroup& c) {
  if (!CheckText("name", c.name, kNameBytesMax, true) ||
      !CheckText("description", c.description, kDescriptionBytesMax, false)) {
    return false;
  }
  if (GroupNameTaken(c.name, "")) {
    return Reject(Rejection::kNameTaken, "a node group named " + c.name + " exists");
  }
  const std::string id = rng_->NewUuid();
  if (!CheckFallback(id, c.fallback_group_id)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateNodeGroupCreatedDirect(builder.fbb(), id.c_str(), c.name.c_str(),
                                        c.description.c_str(), c.fallback_group_id.c_str()),
       &builder);
  ids_.push_back(id);
  return true;
}

bool Validation::ValidateCommand(const UpdateNodeGroup& c) {
  auto it = views_.node_groups.groups.find(c.group_id);
  if (it == views_.node_groups.groups.end()) {
    return Reject(Rejection::kNotFound, "node group " + c.group_id.substr(0, 64) + " not found");
  }
  const reducers::NodeGroup& group = it->second;
  const std::string name = c.name.value_or(group.name);
  const std::string description = c.description.value_or(group.description);
  const std::string fallback = c.fallback_group_id.value_or(group.fallback_group_id);
  if (!CheckText("name", name, kNameBytesMax, true) ||
      !CheckText("description", description, kDescriptionBytesMax, false)) {
    return false;
  }
  if (GroupNameTaken(name, c.group_id)) {
    return Reject(Rejection::kNameTaken, "a node group named " + name + " exists");
  }
  if (!CheckFallback(c.group_id, fallback)) {
    return false;
  }
  if (name == group.name && description == group.description &&
      fallback == group.fallback_group_id) {
    return true;  // Nothing changes: no event.
  }
  log::DraftBuilder builder;
  Emit(fb::CreateNodeGroupUpdatedDirect(builder.fbb(), c.group_id.c_str(), name.c_str(),
                                        description.c_str(), fallback.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const DeleteNodeGroup& c) {
  if (!views_.node_groups.groups.contains(c.group_id)) {
    return Reject(Rejection::kNotFound, "node group " + c.group_id.substr(0, 64) + " not found");
  }
  for (const auto& [id, group] : views_.node_groups.groups) {
    if (group.fallback_group_id == c.group_id) {
      return Reject(Rejection::kInvalidFallback, "node group " + id + " falls back to it");
    }
  }
  log::DraftBuilder builder;
  Emit(fb::CreateNodeGroupDeletedDirect(builder.fbb(), c.group_id.c_str()), &builder);
  return true;
}

bool Validation::ValidateCommand(const JoinNode& c) {
  if (!CheckText("node_id", c.node_id, kIdBytesMax, false) ||
      !CheckText("node_name", c.node_name, kNameBytesMax, true) ||
      !CheckText("ip_address", c.ip_address, kNameBytesMax, false) ||
      !CheckText("capacity_mode", c.capacity_mode, kNameBytesMax, false) ||
      !CheckText("arch", c.arch, kNameBytesMax, false) ||
      !CheckText("hypervisor", c.hypervisor, kNameBytesMax, false)) {
    return false;
  }
  if (c.groups.size() > kGroupsPerNodeMax) {
    return Reject(Rejection::kInvalidArgument,
                  "more than " + std::to_string(kGroupsPerNodeMax) + " groups");
  }
  for (const std::string& group : c.groups) {
    if (!views_.node_groups.groups.contains(group)) {
      return Reject(Rejection::kNotFound, "node group " + group.substr(0, 64) + " not found");
    }
  }
  const std::string id = c.node_id.empty() ? rng_->NewUuid() : c.node_id;
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  std::vector<flatbuffers::Offset<flatbuffers::String>> groups;
  for (const std::string& group : c.groups) {
    groups.push_back(fbb.CreateString(group));
  }
  Emit(fb::CreateNodeJoinedDirect(fbb, id.c_str(), c.node_name.c_str(), c.ip_address.c_str(),
                                  c.cpu_count, c.ram_mb, c.vcpu_count, c.vram_mb, c.capacity,
                                  c.capacity_mode.c_str(), c.arch.c_str(), c.hypervisor.c_str(),
                                  &groups),
       &builder);
  ids_.push_back(id);
  return true;
}

bool Validation::ValidateCommand(const RemoveNode& c) {
  if (!views_.nodes.nodes.contains(c.node_id)) {
    return Reject(Rejection::kNotFound, "node " + c.node_id.substr(0, 64) + " not found");
  }
  if (!CheckText("reason", c.reason, kDescriptionBytesMax, false)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateNodeRemovedDirect(builder.fbb(), c.node_id.c_str(), c.reason.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const RequestVm& c) {
  if (!CheckText("vmid", c.vmid, kIdBytesMax, true) ||
      !CheckText("tag", c.tag, kNameBytesMax, false) ||
      !CheckText("name", c.name, kNameBytesMax, false) ||
      !CheckText("external_id", c.external_id, kNameBytesMax, false)) {
    return false;
  }
  if (c.priority < kVmPriorityMin || c.priority > kVmPriorityMax) {
    return Reject(Rejection::kInvalidArgument, "priority must be between " +
                                                   std::to_string(kVmPriorityMin) + " and " +
                                                   std::to_string(kVmPriorityMax));
  }
  if (!CheckText("name_template", c.name_template, kNameBytesMax, false)) {
    return false;
  }
  if (c.port_forwarding_override.size() > kPortForwardsMax) {
    return Reject(Rejection::kInvalidArgument,
                  "more than " + std::to_string(kPortForwardsMax) + " port forwards");
  }
  for (const VmPortForward& forward : c.port_forwarding_override) {
    if (forward.guest_port == 0) {
      return Reject(Rejection::kInvalidArgument,
                    "port_forwarding_override: guest_port is required");
    }
    if (!forward.protocol.empty() && forward.protocol != "tcp" && forward.protocol != "udp") {
      return Reject(Rejection::kInvalidArgument,
                    "port_forwarding_override: protocol must be tcp or udp");
    }
    if (!CheckText("port_forwarding_override name", forward.name, kNameBytesMax, false)) {
      return false;
    }
  }
  if (c.count < 1 || c.count > kVmsPerRequestMax) {
    return Reject(Rejection::kInvalidArgument,
                  "count must be between 1 and " + std::to_string(kVmsPerRequestMax));
  }
  if (c.startup_script.size() > kStartupScriptBytesMax ||
      c.metadata_json.size() > kMetadataBytesMax) {
    return Reject(Rejection::kInvalidArgument, "startup_script or metadata is too large");
  }
  if (!c.group_id.empty() && !views_.node_groups.groups.contains(c.group_id)) {
    return Reject(Rejection::kNotFound, "node group " + c.group_id.substr(0, 64) + " not found");
  }
  if (!c.node_id.empty() && !views_.nodes.nodes.contains(c.node_id)) {
    return Reject(Rejection::kNotFound, "node " + c.node_id.substr(0, 64) + " not found");
  }
  for (uint32_t i = 0; i < c.count; ++i) {
    const std::string id = rng_->NewUuid();
    log::DraftBuilder builder;
    auto& fbb = builder.fbb();
    std::vector<flatbuffers::Offset<fb::PortForward>> forwards;
    for (const VmPortForward& forward : c.port_forwarding_override) {
      forwards.push_back(fb::CreatePortForwardDirect(fbb, forward.guest_port, forward.host_port,
                                                     forward.protocol.c_str(),
                                                     forward.name.c_str()));
    }
    auto payload = fb::CreateVmInstanceRequestedDirect(
        fbb, id.c_str(), c.vmid.c_str(), c.tag.c_str(), c.version, c.name.c_str(),
        c.name_template.c_str(), c.external_id.c_str(), c.node_id.c_str(), c.group_id.c_str(),
        c.priority, c.startup_script.c_str(), c.startup_script_condition, c.script_monitoring,
        c.script_timeout, c.script_fail_handler, c.metadata_json.c_str(), c.vcpu, c.vram_mb,
        c.port_forwarding_override.empty() ? nullptr : &forwards, c.vnc_password_set);
    Emit(payload, &builder);
    ids_.push_back(id);
  }
  return true;
}

bool Validation::ValidateCommand(const ChangeVmState& c) {
  auto it = views_.vm_instances.instances.find(c.instance_id);
  if (it == views_.vm_instances.instances.end()) {
    return Reject(Rejection::kNotFound, "instance " + c.instance_id.substr(0, 64) + " not found");
  }
  if (it->second.state == fb::VmState::Terminated) {
    return Reject(Rejection::kAlreadyTerminated, "instance " + c.instance_id + " is terminated");
  }
  if (!VmTransitionAllowed(it->second.state, c.state)) {
    return Reject(Rejection::kIllegalTransition,
                  std::string("instance cannot go from ") + fb::EnumNameVmState(it->second.state) +
                      " to " + fb::EnumNameVmState(c.state));
  }
  if (!CheckText("message", c.message, kDescriptionBytesMax, false)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateVmInstanceStateChangedDirect(builder.fbb(), c.instance_id.c_str(), c.state,
                                              c.message.c_str(), c.progress, c.node_id.c_str(),
                                              c.vm_uuid.c_str(), c.ip.c_str(), c.vnc_port),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const TerminateVm& c) {
  auto it = views_.vm_instances.instances.find(c.instance_id);
  if (it == views_.vm_instances.instances.end()) {
    return Reject(Rejection::kNotFound, "instance " + c.instance_id.substr(0, 64) + " not found");
  }
  if (!CheckText("reason", c.reason, kDescriptionBytesMax, false)) {
    return false;
  }
  const fb::VmState state = it->second.state;
  if (state == fb::VmState::Terminated) {
    return Reject(Rejection::kAlreadyTerminated, "instance " + c.instance_id + " is terminated");
  }
  if (state == fb::VmState::Terminating) {
    return true;  // Already on its way: no event.
  }
  log::DraftBuilder builder;
  if (state == fb::VmState::Scheduling && it->second.node_id.empty()) {
    // No node has it yet: nothing to stop, so it ends here.
    Emit(fb::CreateVmInstanceTerminatedDirect(builder.fbb(), c.instance_id.c_str(),
                                              c.reason.c_str()),
         &builder);
    return true;
  }
  Emit(fb::CreateVmInstanceStateChangedDirect(builder.fbb(), c.instance_id.c_str(),
                                              fb::VmState::Terminating, c.reason.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const UpdateNodeStatus& c) {
  if (!views_.nodes.nodes.contains(c.node_id)) {
    return Reject(Rejection::kNotFound, "node " + c.node_id.substr(0, 64) + " not found");
  }
  if (c.state > fb::NodeState::MAX) {
    return Reject(Rejection::kInvalidArgument, "unknown node state");
  }
  if (!CheckText("message", c.message, kDescriptionBytesMax, false)) {
    return false;
  }
  if (c.templates.has_value()) {
    if (c.templates->size() > kNodeTemplatesMax) {
      return Reject(Rejection::kInvalidArgument,
                    "more than " + std::to_string(kNodeTemplatesMax) + " templates");
    }
    for (const std::string& id : *c.templates) {
      if (!CheckText("templates", id, kIdBytesMax, true)) {
        return false;
      }
    }
  }
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  auto templates = c.templates.has_value() ? fbb.CreateVectorOfStrings(*c.templates)
                                           : flatbuffers::Offset<flatbuffers::Vector<
                                                 flatbuffers::Offset<flatbuffers::String>>>();
  auto node_id = fbb.CreateString(c.node_id);
  auto message = fbb.CreateString(c.message);
  fb::NodeUpdatedBuilder updated(fbb);
  updated.add_node_id(node_id);
  updated.add_state(c.state);
  updated.add_vm_count(c.vm_count);
  if (c.templates.has_value()) {
    updated.add_templates(templates);
  }
  updated.add_message(message);
  Emit(updated.Finish(), &builder);
  return true;
}

bool Validation::ValidateCommand(const ScheduleVms& c) {
  for (const Placement& placement : PlanPlacements(views_, c.max_placements)) {
    log::DraftBuilder builder;
    Emit(fb::CreateVmInstanceScheduledDirect(builder.fbb(), placement.instance_id.c_str(),
                                             placement.node_id.c_str()),
         &builder);
    ids_.push_back(placement.instance_id);
  }
  return true;
}

bool Validation::ValidateCommand(const ChangeGroupMembership& c) {
  if (c.group_ids.empty() || c.node_ids.empty()) {
    return Reject(Rejection::kInvalidArgument, "group_ids and node_ids must not be empty");
  }
  if (c.group_ids.size() > kMembershipIdsMax || c.node_ids.size() > kMembershipIdsMax) {
    return Reject(Rejection::kInvalidArgument,
                  "at most " + std::to_string(kMembershipIdsMax) + " group_ids and node_ids");
  }
  for (const std::string& group_id : c.group_ids) {
    if (!views_.node_groups.groups.contains(group_id)) {
      return Reject(Rejection::kNotFound, "node group " + group_id.substr(0, 64) + " not found");
    }
  }
  for (const std::string& node_id : c.node_ids) {
    if (!views_.nodes.nodes.contains(node_id)) {
      return Reject(Rejection::kNotFound, "node " + node_id.substr(0, 64) + " not found");
    }
  }
  std::set<std::pair<std::string, std::string>> done;
  for (const std::string& group_id : c.group_ids) {
    for (const std::string& node_id : c.node_ids) {
      const bool is_member = views_.nodes.nodes.at(node_id).groups.contains(group_id);
      if (is_member == c.member || !done.emplace(group_id, node_id).second) {
        continue;
      }
      log::DraftBuilder builder;
      Emit(fb::CreateNodeGroupMembershipChangedDirect(builder.fbb(), group_id.c_str(),
                                                      node_id.c_str(), c.member),
           &builder);
    }
  }
  return true;
}

Engine::Plan Engine::Validate(const Pending& pending) {
  Validation validation(views_, pending.principal, pending.request_id, StampTime(), options_.rng);
  // One dispatch over the command kind; std::visit makes a missing case a compile error.
  std::visit([&](const auto& command) { validation.ValidateCommand(command); }, pending.command);
  Plan plan;
  plan.rejection = validation.rejection();
  plan.message = std::move(validation.message());
  if (plan.rejection == Rejection::kNone) {
    plan.drafts = std::move(validation.drafts());
    plan.ids = std::move(validation.ids());
  }
  return plan;
}

}  // namespace cloister::engine
