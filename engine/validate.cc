// Validate + Stamp: one function per command kind, each checking the command against the durable
// views and, if it is valid, encoding its events. Nothing here changes a view or appends.
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <utility>

#include "engine/config_keys.h"
#include "engine/engine.h"
#include "engine/limits.h"
#include "engine/permissions.h"
#include "engine/policy_chain.h"
#include "engine/scheduler.h"
#include "log/base64.h"
#include "log/hash.h"
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
  bool ValidateCommand(const UpdateVm& c);
  bool ValidateCommand(const RestartVm& c);
  bool ValidateCommand(const ConfigureNode& c);
  bool ValidateCommand(const RequestNodeUpdate& c);
  bool ValidateCommand(const RequestSaveImage& c);
  bool ValidateCommand(const FinishSaveImage& c);
  bool ValidateCommand(const RecordAuthFailure& c);
  bool ValidateCommand(const CreateApiKey& c);
  bool ValidateCommand(const UpdateApiKey& c);
  bool ValidateCommand(const DeleteApiKey& c);
  bool ValidateCommand(const OpenSession& c);
  bool ValidateCommand(const RevokeSession& c);
  bool ValidateCommand(const RevokeKey& c);
  bool ValidateCommand(const RevokeCertificate& c);
  bool ValidateCommand(const RecordCrlLoaded& c);
  bool ValidateCommand(const CreatePermissionGroup& c);
  bool ValidateCommand(const UpdatePermissionGroup& c);
  bool ValidateCommand(const DeletePermissionGroup& c);
  bool ValidateCommand(const SetResourcePermissions& c);
  bool ValidateCommand(const RecordAccessDenied& c);
  bool ValidateCommand(const PutPolicy& c);
  bool ValidateCommand(const ChangePolicyAttachment& c);
  bool ValidateCommand(const PushManifest& c);
  bool ValidateCommand(const RemoveTemplateContent& c);
  bool ValidateCommand(const RequestDistribution& c);
  bool ValidateCommand(const ReportDistribution& c);
  bool ValidateCommand(const ClearDistributions& c);
  bool ValidateCommand(const MirrorRegistryTemplates& c);
  bool ValidateCommand(const StoreFile& c);
  bool ValidateCommand(const DeleteFile& c);

 private:
  bool GroupNameTaken(const std::string& name, const std::string& except_id) const;
  bool CheckFallback(const std::string& group_id, const std::string& fallback_id);
  bool CheckTemplate(const std::string& vmid, const std::string& tag, int32_t version);
  // The instance, or nullptr after a kNotFound rejection.
  const reducers::VmInstance* FindInstance(const std::string& instance_id);
  // Also rejects (kIllegalTransition) an instance that is not Started or Stopped.
  const reducers::VmInstance* FindSettledInstance(const std::string& instance_id,
                                                  const char* verb);
  const reducers::Template* TemplateNamed(const std::string& name) const;
  // The template named by id or else by name; nullptr after a kNotFound rejection.
  const reducers::Template* FindTemplate(const std::string& ref);
  bool CheckKeyId(const std::string& key_id);
  bool CheckGroups(const std::vector<std::string>& groups);
  bool CheckTtl(int64_t ttl_s, int64_t* expires_ns);
  // The key, or nullptr after a kNotFound rejection.
  const reducers::ApiKey* FindKey(const std::string& key_id);
  bool CheckAuthzName(const char* field, const std::string& name);
  // The group's component from its name, or nullopt after a kInvalidArgument rejection.
  std::optional<Component> CheckComponent(const std::string& component);
  // The canonical set of permissions, or false after a kInvalidArgument rejection.
  bool CanonicalPermissions(Component component, const std::vector<std::string>& names,
                            std::set<std::string>* out);
  // The group, or nullptr after a kNotFound rejection.
  const reducers::PermissionGroup* FindPermissionGroup(const std::string& component,
                                                       const std::string& name);

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
      !CheckText("hypervisor", c.hypervisor, kNameBytesMax, false) ||
      !CheckText("agent_version", c.agent_version, kNameBytesMax, false)) {
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
                                  &groups, c.drain_mode, c.agent_version.c_str(),
                                  c.free_disk_space_mb),
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
  if (!log::Base64Decode(c.startup_script).has_value()) {
    return Reject(Rejection::kInvalidArgument, "startup_script: must be base64");
  }
  if (c.startup_script.size() > kStartupScriptBytesMax ||
      c.metadata_json.size() > kMetadataBytesMax) {
    return Reject(Rejection::kInvalidArgument, "startup_script or metadata is too large");
  }
  if (!c.group_id.empty() && !views_.node_groups.groups.contains(c.group_id)) {
    return Reject(Rejection::kNotFound, "node group " + c.group_id.substr(0, 64) + " not found");
  }
  if (!c.permission_group.empty()) {
    if (!c.group_id.empty()) {
      return Reject(Rejection::kInvalidArgument,
                    "a node group and a permission group cannot both be given");
    }
    if (!CheckAuthzName("group_id", c.permission_group)) {
      return false;
    }
  }
  if (!c.node_id.empty() && !views_.nodes.nodes.contains(c.node_id)) {
    return Reject(Rejection::kNotFound, "node " + c.node_id.substr(0, 64) + " not found");
  }
  if (!CheckTemplate(c.vmid, c.tag, c.version)) {
    return false;
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
        c.port_forwarding_override.empty() ? nullptr : &forwards, c.vnc_password_set,
        c.permission_group.empty() ? nullptr : c.permission_group.c_str());
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
  if (c.report_seq != 0) {
    auto node = views_.nodes.nodes.find(c.node_id);
    if (node != views_.nodes.nodes.end() && c.report_seq <= node->second.last_report_seq) {
      return true;  // A report the agent sent again (its ack was lost): recorded already.
    }
  }
  log::DraftBuilder builder;
  if (c.script_output.size() > kScriptOutputBytesMax) {
    return Reject(Rejection::kInvalidArgument, "script output is longer than " +
                                                   std::to_string(kScriptOutputBytesMax) +
                                                   " bytes");
  }
  Emit(fb::CreateVmInstanceStateChangedDirect(
           builder.fbb(), c.instance_id.c_str(), c.state, c.message.c_str(), c.progress,
           c.node_id.c_str(), c.vm_uuid.c_str(), c.ip.c_str(), c.vnc_port, c.report_seq,
           c.script_done, c.script_exit_code, c.script_done ? c.script_output.c_str() : nullptr),
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
  for (const Placement& placement :
       PlanPlacements(views_, c.max_placements, c.resource_management)) {
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

const reducers::VmInstance* Validation::FindInstance(const std::string& instance_id) {
  auto it = views_.vm_instances.instances.find(instance_id);
  if (it == views_.vm_instances.instances.end()) {
    Reject(Rejection::kNotFound, "instance " + instance_id.substr(0, 64) + " not found");
    return nullptr;
  }
  return &it->second;
}

const reducers::VmInstance* Validation::FindSettledInstance(const std::string& instance_id,
                                                            const char* verb) {
  const reducers::VmInstance* vm = FindInstance(instance_id);
  if (vm != nullptr && vm->state != fb::VmState::Started && vm->state != fb::VmState::Stopped) {
    Reject(Rejection::kIllegalTransition,
           std::string("instance is ") + fb::EnumNameVmState(vm->state) +
               ": only a Started or Stopped instance can be " + verb);
    return nullptr;
  }
  return vm;
}

const reducers::Template* Validation::TemplateNamed(const std::string& name) const {
  for (const auto& [id, t] : views_.templates.templates) {
    if (t.name == name) {
      return &t;
    }
  }
  return nullptr;
}

const reducers::Template* Validation::FindTemplate(const std::string& ref) {
  const reducers::Template* t = reducers::FindTemplate(views_, ref);
  if (t == nullptr) {
    Reject(Rejection::kNotFound, "VM not in the registry");
  }
  return t;
}

// The Anka answers clients match on: "VM not in the registry", "No such tag <tag>".
bool Validation::CheckTemplate(const std::string& vmid, const std::string& tag,
                               int32_t version) {
  auto it = views_.templates.templates.find(vmid);
  if (it == views_.templates.templates.end()) {
    return Reject(Rejection::kNotFound, "VM not in the registry");
  }
  const std::vector<reducers::TemplateTag>& tags = it->second.tags;
  if (!tag.empty() && std::none_of(tags.begin(), tags.end(), [&](const auto& t) {
        return t.tag == tag;
      })) {
    return Reject(Rejection::kNotFound, "No such tag " + tag);
  }
  if (tag.empty() && version >= 0 && std::none_of(tags.begin(), tags.end(), [&](const auto& t) {
        return t.version == version;
      })) {
    return Reject(Rejection::kNotFound, "No such version " + std::to_string(version));
  }
  return true;
}

bool Validation::ValidateCommand(const UpdateVm& c) {
  const reducers::VmInstance* vm = FindInstance(c.instance_id);
  if (vm == nullptr) {
    return false;
  }
  if (vm->state == fb::VmState::Terminated) {
    return Reject(Rejection::kAlreadyTerminated, "instance " + c.instance_id + " is terminated");
  }
  if ((c.name && !CheckText("name", *c.name, kNameBytesMax, false)) ||
      (c.external_id && !CheckText("external_id", *c.external_id, kNameBytesMax, false))) {
    return false;
  }
  if (c.metadata_json && c.metadata_json->size() > kMetadataBytesMax) {
    return Reject(Rejection::kInvalidArgument, "metadata is too large");
  }
  const bool same = c.name.value_or(vm->name) == vm->name &&
                    c.external_id.value_or(vm->external_id) == vm->external_id &&
                    c.metadata_json.value_or(vm->metadata_json) == vm->metadata_json;
  if (same) {
    return true;  // Nothing changes: no event.
  }
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  auto id = fbb.CreateString(c.instance_id);
  auto name = c.name ? fbb.CreateString(*c.name) : flatbuffers::Offset<flatbuffers::String>();
  auto external = c.external_id ? fbb.CreateString(*c.external_id)
                                : flatbuffers::Offset<flatbuffers::String>();
  auto metadata = c.metadata_json ? fbb.CreateString(*c.metadata_json)
                                  : flatbuffers::Offset<flatbuffers::String>();
  Emit(fb::CreateVmInstanceUpdated(fbb, id, name, external, metadata), &builder);
  return true;
}

bool Validation::ValidateCommand(const RestartVm& c) {
  if (FindSettledInstance(c.instance_id, "restarted") == nullptr) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateVmInstanceRestartRequestedDirect(builder.fbb(), c.instance_id.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const ConfigureNode& c) {
  auto it = views_.nodes.nodes.find(c.node_id);
  if (it == views_.nodes.nodes.end()) {
    return Reject(Rejection::kNotFound, "node " + c.node_id.substr(0, 64) + " not found");
  }
  const reducers::Node& node = it->second;
  reducers::Node next = node;
  next.node_name = c.node_name.value_or(node.node_name);
  next.capacity = c.capacity.value_or(node.capacity);
  next.capacity_mode = c.capacity_mode.value_or(node.capacity_mode);
  next.vcpu_override = c.vcpu_override.value_or(node.vcpu_override);
  next.ram_override_mb = c.ram_override_mb.value_or(node.ram_override_mb);
  next.drain_mode = c.drain_mode.value_or(node.drain_mode);
  if (!CheckText("name", next.node_name, kNameBytesMax, true)) {
    return false;
  }
  if (next.capacity_mode != "number" && next.capacity_mode != "resource" &&
      !next.capacity_mode.empty()) {
    return Reject(Rejection::kInvalidArgument, "capacity_mode must be number or resource");
  }
  if (next == node) {
    return true;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateNodeConfiguredDirect(builder.fbb(), c.node_id.c_str(), next.node_name.c_str(),
                                      next.capacity, next.capacity_mode.c_str(),
                                      next.vcpu_override, next.ram_override_mb, next.drain_mode),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const RequestNodeUpdate& c) {
  if (!CheckText("reason", c.reason, kDescriptionBytesMax, false)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateNodeAgentsUpdateRequestedDirect(builder.fbb(), c.reason.c_str()), &builder);
  return true;
}

bool Validation::ValidateCommand(const RequestSaveImage& c) {
  if (FindSettledInstance(c.instance_id, "saved") == nullptr) {
    return false;
  }
  if (!CheckText("tag", c.tag, kNameBytesMax, true) ||
      !CheckText("target_vm_id", c.target_vm_id, kIdBytesMax, false) ||
      !CheckText("new_template_name", c.new_template_name, kNameBytesMax, false) ||
      !CheckText("description", c.description, kDescriptionBytesMax, false) ||
      !CheckText("revert_tag", c.revert_tag, kNameBytesMax, false)) {
    return false;
  }
  if (c.script.size() > kStartupScriptBytesMax) {
    return Reject(Rejection::kInvalidArgument, "script is too large");
  }
  if (c.target_vm_id.empty() == c.new_template_name.empty()) {
    return Reject(Rejection::kInvalidArgument,
                  "exactly one of target_vm_id and new_template_name is required");
  }
  if (!c.target_vm_id.empty()) {
    auto it = views_.templates.templates.find(c.target_vm_id);
    if (it == views_.templates.templates.end()) {
      return Reject(Rejection::kNotFound, "VM not in the registry");
    }
    for (const reducers::TemplateTag& tag : it->second.tags) {
      if (tag.tag == c.tag) {
        return Reject(Rejection::kNameTaken, "tag " + c.tag + " exists");
      }
    }
  } else if (TemplateNamed(c.new_template_name) != nullptr) {
    return Reject(Rejection::kNameTaken, "a template named " + c.new_template_name + " exists");
  }
  std::string approved_by;
  const reducers::StoredPolicy* policy =
      reducers::EffectivePolicy(views_, views_.vm_instances.instances.at(c.instance_id));
  if (c.copy && policy != nullptr) {
    // Only the policy's administrators may strip it (seed 000: "clone --copy ... can be
    // performed only by the VM administrator"); root cannot, as it cannot sign.
    Result<PolicyChain> chain = PolicyChain::FromEvents(policy->events);
    if (!chain.ok()) {
      return Reject(Rejection::kForbidden, "the instance's policy no longer validates");
    }
    const DocumentCheck check = chain->CheckDocument(c.approval);
    const std::string wanted = "copy: " + c.instance_id;
    const bool names_instance = check.body == wanted + "\n" ||
                                check.body.starts_with(wanted + "\n") ||
                                check.body.find("\n" + wanted + "\n") != std::string::npos;
    if (!check.valid() || !names_instance) {
      return Reject(Rejection::kForbidden,
                    "a copy without the policy needs an approval signed by an administrator of "
                    "policy " + policy->policy_id + " (policy sign) holding the line \"" +
                        wanted + "\"");
    }
    approved_by = check.signer;
  }
  const std::string id = rng_->NewUuid();
  log::DraftBuilder builder;
  Emit(fb::CreateSaveImageRequestedDirect(
           builder.fbb(), c.instance_id.c_str(), c.target_vm_id.c_str(), c.tag.c_str(),
           c.description.c_str(), c.suspend, c.revert_tag.c_str(), id.c_str(),
           c.new_template_name.c_str(), c.script.c_str(), c.copy, approved_by.c_str()),
       &builder);
  ids_.push_back(id);
  return true;
}

namespace {
const std::vector<reducers::TemplateTag> kNoTags;
}  // namespace

// A save finishes on what its node pushed: the agent pushes the image as the request's tag (the
// push records ManifestPushed) and reports the manifest's digest; the request is done only if
// the registry holds that tag with that digest. A report of success without a digest saved
// nothing and finishes the request as error. (Before the registry such a report recorded a tag
// without content, TemplateTagRegistered; that event and its reducer stay so old logs replay.)
bool Validation::ValidateCommand(const FinishSaveImage& c) {
  auto it = views_.save_images.requests.find(c.request_id);
  if (it == views_.save_images.requests.end()) {
    return Reject(Rejection::kNotFound, "save-image request " + c.request_id.substr(0, 64) +
                                            " not found");
  }
  const reducers::SaveImage& request = it->second;
  if (request.status != reducers::SaveImageStatus::kPending) {
    return true;  // Finished already (a resent report): nothing more to record.
  }
  auto vm = views_.vm_instances.instances.find(request.instance_id);
  const std::string holder = vm == views_.vm_instances.instances.end() ? "" : vm->second.node_id;
  if (!c.node_id.empty() && c.node_id != holder) {
    return Reject(Rejection::kInvalidArgument, "the instance is not placed on this node");
  }
  if (!CheckText("message", c.message, kDescriptionBytesMax, false)) {
    return false;
  }
  bool ok = c.ok;
  std::string message = c.message;
  std::string vmid;
  if (ok && c.digest.empty()) {
    ok = false;
    message = "the node reported no pushed manifest: nothing was saved";
  } else if (ok) {
    const reducers::Template* target = nullptr;
    if (request.target_vm_id.empty()) {
      target = TemplateNamed(request.new_template_name);  // Its first push made it.
    } else {
      auto t = views_.templates.templates.find(request.target_vm_id);
      target = t == views_.templates.templates.end() ? nullptr : &t->second;
    }
    bool pushed = false;
    for (const reducers::TemplateTag& one : target == nullptr ? kNoTags : target->tags) {
      pushed = pushed || (one.tag == request.tag && one.digest == c.digest);
    }
    if (pushed) {
      vmid = target->template_id;
    } else {
      ok = false;  // The node says it pushed, but the registry holds no such tag.
      message = "the registry holds no tag " + request.tag + " with manifest " +
                c.digest.substr(0, 80);
    }
  }
  log::DraftBuilder builder;
  Emit(fb::CreateSaveImageFinishedDirect(builder.fbb(), request.instance_id.c_str(), ok,
                                         message.c_str(), vmid.c_str(), request.tag.c_str(),
                                         c.request_id.c_str()),
       &builder);
  if (ok) {
    // Clone keeps the policy: the saved template gets the instance's, unless it is a copy.
    const reducers::StoredPolicy* policy =
        vm == views_.vm_instances.instances.end() ? nullptr
                                                  : reducers::EffectivePolicy(views_, vm->second);
    auto attached = views_.policy_attachments.attachments.find("template/" + vmid);
    const bool already = attached != views_.policy_attachments.attachments.end() &&
                         policy != nullptr && attached->second.policy_id == policy->policy_id;
    if (!request.copy && policy != nullptr && !already) {
      log::DraftBuilder attach_builder;
      Emit(fb::CreatePolicyAttachmentChangedDirect(attach_builder.fbb(), "template", vmid.c_str(),
                                                   policy->policy_id.c_str()),
           &attach_builder);
    }
  }
  return true;
}

bool Validation::ValidateCommand(const RecordAuthFailure& c) {
  if (!CheckText("claimed_id", c.claimed_id, kNameBytesMax, false) ||
      !CheckText("reason", c.reason, kDescriptionBytesMax, false) ||
      !CheckText("source_ip", c.source_ip, kNameBytesMax, false)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateAuthenticationFailedDirect(builder.fbb(), c.method, c.claimed_id.c_str(),
                                            c.reason.c_str(), c.source_ip.c_str()),
       &builder);
  return true;
}

// ---- API keys, sessions, revocation ----------------------------------------------------------

namespace {

fb::Digest ToDigest(const log::Hash& hash) {
  return fb::Digest(flatbuffers::span<const uint8_t, 32>(hash.data(), hash.size()));
}

// A DER public key as PEM text (the form ApiKeyCreated records: readable in an audit export).
std::string PublicKeyPem(std::string_view der) {
  const std::string base64 = log::Base64Encode(der);
  std::string pem = "-----BEGIN PUBLIC KEY-----\n";
  for (size_t i = 0; i < base64.size(); i += 64) {
    pem += base64.substr(i, 64) + "\n";
  }
  return pem + "-----END PUBLIC KEY-----\n";
}

bool KeyIdChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.' ||
         c == '@';
}

}  // namespace

bool Validation::CheckKeyId(const std::string& key_id) {
  if (!CheckText("id", key_id, kIdBytesMax, true)) {
    return false;
  }
  if (!std::all_of(key_id.begin(), key_id.end(), KeyIdChar)) {
    return Reject(Rejection::kInvalidArgument,
                  "id may only hold letters, digits and the characters - _ . @");
  }
  return true;
}

bool Validation::CheckGroups(const std::vector<std::string>& groups) {
  if (groups.size() > kKeyGroupsMax) {
    return Reject(Rejection::kInvalidArgument,
                  "more than " + std::to_string(kKeyGroupsMax) + " groups");
  }
  for (const std::string& group : groups) {
    if (!CheckText("groups", group, kNameBytesMax, true)) {
      return false;
    }
  }
  return true;
}

bool Validation::CheckTtl(int64_t ttl_s, int64_t* expires_ns) {
  if (ttl_s <= 0 || ttl_s > kKeyTtlMaxSeconds) {
    return Reject(Rejection::kInvalidArgument,
                  "ttl must be a number of seconds from 1 to " + std::to_string(kKeyTtlMaxSeconds));
  }
  *expires_ns = envelope_.time_ns + ttl_s * 1'000'000'000;
  return true;
}

const reducers::ApiKey* Validation::FindKey(const std::string& key_id) {
  auto it = views_.api_keys.keys.find(key_id);
  if (it == views_.api_keys.keys.end()) {
    Reject(Rejection::kNotFound, "no API key " + key_id.substr(0, kIdBytesMax));
    return nullptr;
  }
  return &it->second;
}

bool Validation::ValidateCommand(const CreateApiKey& c) {
  int64_t expires_ns = 0;
  if (!CheckKeyId(c.key_id) || !CheckGroups(c.groups) || !CheckTtl(c.ttl_s, &expires_ns) ||
      !CheckText("description", c.description, kDescriptionBytesMax, false)) {
    return false;
  }
  if (c.public_key_der.empty() || c.public_key_der.size() > kPublicKeyBytesMax) {
    return Reject(Rejection::kInvalidArgument, "publicKey is empty or too long");
  }
  if (views_.api_keys.keys.contains(c.key_id)) {
    return Reject(Rejection::kNameTaken, "an API key " + c.key_id + " exists");
  }
  log::Hash fingerprint{};
  SHA256(reinterpret_cast<const unsigned char*>(c.public_key_der.data()), c.public_key_der.size(),
         fingerprint.data());
  const fb::Digest digest = ToDigest(fingerprint);
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  Emit(fb::CreateApiKeyCreated(fbb, fbb.CreateString(c.key_id), fbb.CreateString(c.description),
                               fbb.CreateString(PublicKeyPem(c.public_key_der)), &digest,
                               fbb.CreateVectorOfStrings(c.groups), expires_ns),
       &builder);
  ids_.push_back(c.key_id);
  return true;
}

bool Validation::ValidateCommand(const UpdateApiKey& c) {
  const reducers::ApiKey* key = FindKey(c.key_id);
  if (key == nullptr) {
    return false;
  }
  int64_t expires_ns = key->expires_ns;
  if ((c.groups && !CheckGroups(*c.groups)) || (c.ttl_s && !CheckTtl(*c.ttl_s, &expires_ns))) {
    return false;
  }
  const std::vector<std::string>& groups = c.groups ? *c.groups : key->groups;
  if (groups == key->groups && expires_ns == key->expires_ns) {
    return true;  // Nothing changes: no event.
  }
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  Emit(fb::CreateApiKeyUpdated(fbb, fbb.CreateString(c.key_id), 0,
                               fbb.CreateVectorOfStrings(groups), expires_ns, key->enabled),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const DeleteApiKey& c) {
  if (FindKey(c.key_id) == nullptr) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateApiKeyDeletedDirect(builder.fbb(), c.key_id.c_str()), &builder);
  return true;
}

bool Validation::ValidateCommand(const OpenSession& c) {
  const reducers::ApiKey* key = FindKey(c.key_id);
  if (key == nullptr) {
    return false;
  }
  if (!key->enabled || (key->expires_ns != 0 && key->expires_ns <= envelope_.time_ns)) {
    return Reject(Rejection::kForbidden, "API key " + c.key_id + " is revoked or expired");
  }
  if (c.ttl_ns <= 0) {
    return Reject(Rejection::kInvalidArgument, "session ttl must be positive");
  }
  const fb::Digest session = ToDigest(c.session_digest);
  const fb::Digest token = ToDigest(c.token_digest);
  log::DraftBuilder builder;
  Emit(fb::CreateSessionOpenedDirect(builder.fbb(), &session, c.key_id.c_str(),
                                     envelope_.time_ns + c.ttl_ns, &token),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const RevokeSession& c) {
  auto it = views_.sessions.sessions.find(log::HashHex(c.session_digest));
  if (it == views_.sessions.sessions.end() || it->second.expires_ns <= envelope_.time_ns) {
    return Reject(Rejection::kNotFound, "no such session");
  }
  if (!CheckText("reason", c.reason, kDescriptionBytesMax, false)) {
    return false;
  }
  const fb::Digest session = ToDigest(c.session_digest);
  log::DraftBuilder builder;
  Emit(fb::CreateSessionRevokedDirect(builder.fbb(), &session, it->second.key_id.c_str(),
                                      c.reason.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const RevokeKey& c) {
  if (FindKey(c.key_id) == nullptr ||
      !CheckText("reason", c.reason, kDescriptionBytesMax, false)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateKeyRevokedDirect(builder.fbb(), c.key_id.c_str(), c.reason.c_str()), &builder);
  return true;
}

bool Validation::ValidateCommand(const RevokeCertificate& c) {
  const bool hex = !c.serial_hex.empty() &&
                   std::all_of(c.serial_hex.begin(), c.serial_hex.end(), [](char ch) {
                     return std::isdigit(static_cast<unsigned char>(ch)) != 0 ||
                            (ch >= 'A' && ch <= 'F');
                   });
  if (!hex || c.serial_hex.size() > 64) {
    return Reject(Rejection::kInvalidArgument,
                  "serial must be the certificate's serial number in hexadecimal");
  }
  if (!CheckText("issuer", c.issuer, kDescriptionBytesMax, false) ||
      !CheckText("reason", c.reason, kDescriptionBytesMax, false)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateCertificateRevokedDirect(builder.fbb(), c.serial_hex.c_str(), c.issuer.c_str(),
                                          c.reason.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const RecordCrlLoaded& c) {
  if (!CheckText("issuer", c.issuer, kDescriptionBytesMax, false) ||
      !CheckText("source", c.source, kDescriptionBytesMax, false)) {
    return false;
  }
  const fb::Digest digest = ToDigest(c.crl_sha256);
  log::DraftBuilder builder;
  Emit(fb::CreateCrlLoadedDirect(builder.fbb(), &digest, c.issuer.c_str(), c.this_update_ns,
                                 c.next_update_ns, c.revoked_count, c.source.c_str()),
       &builder);
  return true;
}

// ---- Authorization ----------------------------------------------------------------------------

namespace {

bool AuthzNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' || c == '.' ||
         c == '@' || c == ' ';
}

}  // namespace

bool Validation::CheckAuthzName(const char* field, const std::string& name) {
  if (name.empty() || name.size() > kIdBytesMax) {
    return Reject(Rejection::kInvalidArgument, std::string(field) + " must be 1 to " +
                                                   std::to_string(kIdBytesMax) + " bytes");
  }
  if (!std::all_of(name.begin(), name.end(), AuthzNameChar)) {
    return Reject(Rejection::kInvalidArgument,
                  std::string(field) +
                      " may only hold letters, digits, spaces and the characters - _ . @");
  }
  return true;
}

std::optional<Component> Validation::CheckComponent(const std::string& component) {
  std::optional<Component> found = ComponentFromName(component);
  if (!found) {
    Reject(Rejection::kInvalidArgument, "component must be controller or registry, not '" +
                                            component.substr(0, 32) + "'");
  }
  return found;
}

bool Validation::CanonicalPermissions(Component component, const std::vector<std::string>& names,
                                      std::set<std::string>* out) {
  if (names.size() > kPermissionsMax) {
    return Reject(Rejection::kInvalidArgument,
                  "more than " + std::to_string(kPermissionsMax) + " permissions");
  }
  for (const std::string& name : names) {
    std::optional<std::string> canonical = CanonicalGroupPermission(component, name);
    if (!canonical) {
      return Reject(Rejection::kInvalidArgument,
                    std::string("unknown ") + ComponentName(component) + " permission '" +
                        name.substr(0, 64) + "'");
    }
    out->insert(std::move(*canonical));
  }
  return true;
}

const reducers::PermissionGroup* Validation::FindPermissionGroup(const std::string& component,
                                                                 const std::string& name) {
  auto it = views_.permission_groups.groups.find(component + "/" + name);
  if (it == views_.permission_groups.groups.end()) {
    Reject(Rejection::kNotFound, "no " + component + " permission group " + name);
    return nullptr;
  }
  return &it->second;
}

bool Validation::ValidateCommand(const CreatePermissionGroup& c) {
  std::optional<Component> component = CheckComponent(c.component);
  std::set<std::string> permissions;
  if (!component || !CheckAuthzName("name", c.name) ||
      !CheckText("description", c.description, kDescriptionBytesMax, false) ||
      !CanonicalPermissions(*component, c.permissions, &permissions)) {
    return false;
  }
  const std::string id = c.component + "/" + c.name;
  if (views_.permission_groups.groups.contains(id)) {
    return Reject(Rejection::kNameTaken,
                  "a " + c.component + " permission group " + c.name + " exists");
  }
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  const std::vector<std::string> names(permissions.begin(), permissions.end());
  Emit(fb::CreatePermissionGroupCreated(fbb, fbb.CreateString(id), fbb.CreateString(c.name),
                                        fbb.CreateString(c.description),
                                        fbb.CreateVectorOfStrings(names),
                                        fbb.CreateString(c.component)),
       &builder);
  ids_.push_back(c.name);
  return true;
}

bool Validation::ValidateCommand(const UpdatePermissionGroup& c) {
  std::optional<Component> component = CheckComponent(c.component);
  if (!component) {
    return false;
  }
  const reducers::PermissionGroup* group = FindPermissionGroup(c.component, c.name);
  if (group == nullptr) {
    return false;
  }
  std::set<std::string> permissions = group->permissions;
  if (c.permissions) {
    permissions.clear();
    if (!CanonicalPermissions(*component, *c.permissions, &permissions)) {
      return false;
    }
  }
  if (c.description && !CheckText("description", *c.description, kDescriptionBytesMax, false)) {
    return false;
  }
  const std::string& description = c.description ? *c.description : group->description;
  if (permissions == group->permissions && description == group->description) {
    return true;  // Nothing changes: no event.
  }
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  const std::vector<std::string> names(permissions.begin(), permissions.end());
  Emit(fb::CreatePermissionGroupUpdated(fbb, fbb.CreateString(c.component + "/" + c.name),
                                        fbb.CreateString(c.name), fbb.CreateString(description),
                                        fbb.CreateVectorOfStrings(names),
                                        fbb.CreateString(c.component)),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const DeletePermissionGroup& c) {
  if (!CheckComponent(c.component) || FindPermissionGroup(c.component, c.name) == nullptr) {
    return false;
  }
  log::DraftBuilder builder;
  const std::string id = c.component + "/" + c.name;
  Emit(fb::CreatePermissionGroupDeletedDirect(builder.fbb(), id.c_str()), &builder);
  return true;
}

bool Validation::ValidateCommand(const SetResourcePermissions& c) {
  if (!IsResourceType(c.resource_type)) {
    return Reject(Rejection::kInvalidArgument, "resource type must be node or template, not '" +
                                                   c.resource_type.substr(0, 32) + "'");
  }
  if (!CheckAuthzName("principal", c.principal) ||
      !CheckText("resource id", c.resource_id, kIdBytesMax, true)) {
    return false;
  }
  if (c.permissions.size() > kPermissionsMax) {
    return Reject(Rejection::kInvalidArgument,
                  "more than " + std::to_string(kPermissionsMax) + " permissions");
  }
  std::set<std::string> permissions;
  for (const std::string& name : c.permissions) {
    if (!IsResourcePermission(c.resource_type, name)) {
      return Reject(Rejection::kInvalidArgument, "unknown " + c.resource_type +
                                                     " resource permission '" +
                                                     name.substr(0, 64) + "'");
    }
    permissions.insert(name);
  }
  // The resource: a node by id; a template by id, else by name (recorded as its id).
  std::string resource_id = c.resource_id;
  bool exists = false;
  if (c.resource_type == "node") {
    exists = views_.nodes.nodes.contains(resource_id);
  } else if (views_.templates.templates.contains(resource_id)) {
    exists = true;
  } else if (const reducers::Template* t = TemplateNamed(resource_id)) {
    resource_id = t->template_id;
    exists = true;
  }
  const std::string key = c.resource_type + "/" + resource_id + "/" + c.principal;
  auto old = views_.resource_permissions.grants.find(key);
  if (!permissions.empty() && !exists) {
    return Reject(Rejection::kNotFound, "no " + c.resource_type + " " + c.resource_id);
  }
  if (permissions.empty() && old == views_.resource_permissions.grants.end()) {
    return true;  // No grant, none wanted: no event.
  }
  if (old != views_.resource_permissions.grants.end() && old->second.permissions == permissions) {
    return true;
  }
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  const std::vector<std::string> names(permissions.begin(), permissions.end());
  Emit(fb::CreateResourcePermissionsSet(fbb, fbb.CreateString(c.resource_type),
                                        fbb.CreateString(resource_id),
                                        fbb.CreateString(c.principal),
                                        fbb.CreateVectorOfStrings(names)),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const RecordAccessDenied& c) {
  if (!CheckText("permission", c.permission, kNameBytesMax, true) ||
      !CheckText("resource_type", c.resource_type, kNameBytesMax, false) ||
      !CheckText("resource_id", c.resource_id, kIdBytesMax, false) ||
      !CheckText("method", c.method, kNameBytesMax, false) ||
      !CheckText("path", c.path, kDescriptionBytesMax, false) ||
      !CheckText("source_ip", c.source_ip, kNameBytesMax, false)) {
    return false;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateAccessDeniedDirect(builder.fbb(), c.permission.c_str(), c.resource_type.c_str(),
                                    c.resource_id.c_str(), c.method.c_str(), c.path.c_str(),
                                    c.source_ip.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const PutPolicy& c) {
  if (!CheckAuthzName("policy_id", c.policy_id)) {
    return false;
  }
  size_t bytes = 0;
  for (const std::string& event : c.signed_events) bytes += event.size();
  if (c.signed_events.empty() || c.signed_events.size() > kPolicyEventsMax ||
      bytes > kPolicyBytesMax) {
    return Reject(Rejection::kInvalidArgument,
                  "a policy holds 1 to " + std::to_string(kPolicyEventsMax) + " events and at most " +
                      std::to_string(kPolicyBytesMax) + " bytes");
  }
  size_t known = 0;
  auto stored = views_.policies.policies.find(c.policy_id);
  if (stored != views_.policies.policies.end()) {
    const std::vector<std::string>& events = stored->second.events;
    if (c.signed_events.size() < events.size() ||
        !std::equal(events.begin(), events.end(), c.signed_events.begin())) {
      return Reject(Rejection::kInvalidArgument,
                    "policy " + c.policy_id + " does not extend the stored one: its first " +
                        std::to_string(events.size()) +
                        " events must be the stored events, unchanged");
    }
    known = events.size();
    if (known == c.signed_events.size()) {
      return true;  // Nothing new: records nothing.
    }
  }
  // The whole chain, replayed and every signature checked against the administrators in force.
  Result<PolicyChain> chain = PolicyChain::FromEvents(c.signed_events);
  if (!chain.ok()) {
    return Reject(Rejection::kInvalidArgument, "policy " + c.policy_id + ": " +
                                                   std::string(chain.status().message()));
  }
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  std::vector<flatbuffers::Offset<fb::PolicySignedEvent>> events;
  for (size_t i = known; i < c.signed_events.size(); i++) {
    const std::string& event = c.signed_events[i];
    events.push_back(fb::CreatePolicySignedEvent(
        fbb, fbb.CreateVector(reinterpret_cast<const uint8_t*>(event.data()), event.size())));
  }
  Emit(fb::CreatePolicyEventsAppendedDirect(fbb, c.policy_id.c_str(), &events,
                                            chain->HeadHash().c_str()),
       &builder);
  ids_.push_back(c.policy_id);
  return true;
}

bool Validation::ValidateCommand(const ChangePolicyAttachment& c) {
  if (c.target_type == "template") {
    if (!views_.templates.templates.contains(c.target_id)) {
      return Reject(Rejection::kNotFound, "template " + c.target_id.substr(0, 64) + " not found");
    }
  } else if (c.target_type == "instance") {
    if (!views_.vm_instances.instances.contains(c.target_id)) {
      return Reject(Rejection::kNotFound, "instance " + c.target_id.substr(0, 64) + " not found");
    }
  } else {
    return Reject(Rejection::kInvalidArgument, "target_type must be template or instance");
  }
  const std::string key = c.target_type + "/" + c.target_id;
  auto attached = views_.policy_attachments.attachments.find(key);
  if (c.policy_id.empty()) {
    if (attached == views_.policy_attachments.attachments.end() ||
        attached->second.policy_id.empty()) {
      return Reject(Rejection::kNotFound, "no policy is attached to " + key.substr(0, 80));
    }
  } else if (!views_.policies.policies.contains(c.policy_id)) {
    return Reject(Rejection::kNotFound, "policy " + c.policy_id.substr(0, 64) + " not found");
  } else if (attached != views_.policy_attachments.attachments.end() &&
             attached->second.policy_id == c.policy_id) {
    return true;  // Already attached: records nothing.
  }
  log::DraftBuilder builder;
  Emit(fb::CreatePolicyAttachmentChangedDirect(builder.fbb(), c.target_type.c_str(),
                                               c.target_id.c_str(), c.policy_id.c_str()),
       &builder);
  return true;
}

namespace {

bool IsDigest(const std::string& digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.size() != kPrefix.size() + 64 || !digest.starts_with(kPrefix)) {
    return false;
  }
  return std::all_of(digest.begin() + kPrefix.size(), digest.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

bool Validation::ValidateCommand(const PushManifest& c) {
  if (!CheckText("repository", c.repository, kNameBytesMax, true) ||
      !CheckText("tag", c.tag, kNameBytesMax, false) ||
      !CheckText("media_type", c.media_type, kNameBytesMax, true) ||
      !CheckText("description", c.description, kDescriptionBytesMax, false)) {
    return false;
  }
  if (!IsDigest(c.digest)) {
    return Reject(Rejection::kInvalidArgument, "digest must be sha256:<64 lowercase hex>");
  }
  if (c.references.size() > kManifestReferencesMax) {
    return Reject(Rejection::kInvalidArgument, "a manifest may refer to at most " +
                                                   std::to_string(kManifestReferencesMax) +
                                                   " blobs");
  }
  const reducers::Template* existing = reducers::FindTemplate(views_, c.repository);
  for (const ManifestReference& ref : c.references) {
    if (!IsDigest(ref.digest)) {
      return Reject(Rejection::kInvalidArgument, "reference " + ref.digest.substr(0, 80) +
                                                     " is not a sha256 digest");
    }
    const bool manifest = ref.media_type.find("manifest") != std::string::npos ||
                          ref.media_type.find("image.index") != std::string::npos;
    if (manifest && (existing == nullptr || !existing->manifests.contains(ref.digest))) {
      return Reject(Rejection::kNotFound, "manifest " + ref.digest + " is not in " +
                                              c.repository.substr(0, 80));
    }
  }
  int32_t version = 0;
  if (existing != nullptr) {
    for (const reducers::TemplateTag& tag : existing->tags) {
      if (!c.tag.empty() && tag.tag == c.tag) {
        if (tag.digest == c.digest) {
          ids_.push_back(existing->template_id);
          return true;  // The same push again: nothing to record.
        }
        return Reject(Rejection::kNameTaken,
                      "tag " + c.tag + " of " + existing->name.substr(0, 80) +
                          " exists with another manifest (tags are immutable: revert it first)");
      }
      version = std::max(version, tag.version + 1);
    }
    if (c.tag.empty() && existing->manifests.contains(c.digest)) {
      ids_.push_back(existing->template_id);
      return true;
    }
  }
  const std::string id = existing != nullptr ? existing->template_id : rng_->NewUuid();
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  std::vector<flatbuffers::Offset<fb::RegistryReference>> refs;
  for (const ManifestReference& ref : c.references) {
    refs.push_back(fb::CreateRegistryReferenceDirect(fbb, ref.digest.c_str(), ref.size,
                                                     ref.media_type.c_str()));
  }
  Emit(fb::CreateManifestPushedDirect(fbb, id.c_str(),
                                      existing == nullptr ? c.repository.c_str() : "",
                                      c.digest.c_str(), c.media_type.c_str(), c.size, &refs,
                                      c.tag.c_str(), c.tag.empty() ? 0 : version,
                                      c.description.c_str()),
       &builder);
  ids_.push_back(id);
  return true;
}

namespace {

// Does the view's template already say what the registry's does?
bool SameAsMirrored(const reducers::Template& have, const MirroredTemplate& want) {
  if (!have.mirrored || have.name != want.name || have.tags.size() != want.tags.size()) {
    return false;
  }
  for (size_t i = 0; i < want.tags.size(); i++) {
    const reducers::TemplateTag& a = have.tags[i];
    const MirroredTemplateTag& b = want.tags[i];
    if (a.tag != b.tag || a.version != b.version || a.description != b.description ||
        a.digest != b.digest || a.registered.time_ns != b.created_ns) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool Validation::ValidateCommand(const MirrorRegistryTemplates& c) {
  if (c.templates.size() > kMirroredTemplatesMax) {
    return Reject(Rejection::kInvalidArgument,
                  "a registry catalogue may hold at most " +
                      std::to_string(kMirroredTemplatesMax) + " templates");
  }
  // Everything is checked before anything is emitted: a bad catalogue records nothing.
  std::set<std::string> listed;
  for (const MirroredTemplate& t : c.templates) {
    if (!CheckText("template id", t.template_id, kIdBytesMax, true) ||
        !CheckText("template name", t.name, kNameBytesMax, false)) {
      return false;
    }
    if (!listed.insert(t.template_id).second) {
      return Reject(Rejection::kInvalidArgument,
                    "template " + t.template_id + " is listed twice");
    }
    if (t.tags.size() > kMirroredTagsMax) {
      return Reject(Rejection::kInvalidArgument, "template " + t.template_id + " has more than " +
                                                     std::to_string(kMirroredTagsMax) + " tags");
    }
    std::set<std::string> tags;
    for (const MirroredTemplateTag& tag : t.tags) {
      if (!CheckText("tag", tag.tag, kNameBytesMax, true) ||
          !CheckText("description", tag.description, kDescriptionBytesMax, false)) {
        return false;
      }
      if (!tags.insert(tag.tag).second || tag.version < 0) {
        return Reject(Rejection::kInvalidArgument, "template " + t.template_id +
                                                       " lists tag " + tag.tag.substr(0, 80) +
                                                       " twice or with a negative number");
      }
      if (!tag.digest.empty() && !IsDigest(tag.digest)) {
        return Reject(Rejection::kInvalidArgument,
                      "digest of tag " + tag.tag.substr(0, 80) + " is not a sha256 digest");
      }
    }
  }
  const auto& have = views_.templates.templates;
  for (const MirroredTemplate& t : c.templates) {
    auto it = have.find(t.template_id);
    if (it != have.end() && SameAsMirrored(it->second, t)) {
      continue;
    }
    log::DraftBuilder builder;
    auto& fbb = builder.fbb();
    std::vector<flatbuffers::Offset<fb::MirroredTag>> tags;
    for (const MirroredTemplateTag& tag : t.tags) {
      tags.push_back(fb::CreateMirroredTagDirect(fbb, tag.tag.c_str(), tag.version,
                                                 tag.description.c_str(), tag.digest.c_str(),
                                                 tag.created_ns));
    }
    Emit(fb::CreateTemplateMirroredDirect(fbb, t.template_id.c_str(), t.name.c_str(), &tags,
                                          false),
         &builder);
    ids_.push_back(t.template_id);
  }
  for (const auto& [id, t] : have) {
    if (t.mirrored && !listed.contains(id)) {
      log::DraftBuilder builder;
      Emit(fb::CreateTemplateMirroredDirect(builder.fbb(), id.c_str(), "", nullptr, true),
           &builder);
      ids_.push_back(id);
    }
  }
  return true;
}

bool Validation::ValidateCommand(const RemoveTemplateContent& c) {
  using Mode = RemoveTemplateContent::Mode;
  const reducers::Template* t = FindTemplate(c.template_ref);
  if (t == nullptr) {
    return false;
  }
  std::vector<std::string> tags;
  std::set<std::string> digests;
  const char* reason = "delete_template";
  if (c.mode == Mode::kDeleteTemplate) {
    for (const reducers::TemplateTag& tag : t->tags) {
      tags.push_back(tag.tag);
    }
    for (const auto& [digest, m] : t->manifests) {
      digests.insert(digest);
    }
  } else if (c.mode == Mode::kRevert) {
    reason = "revert";
    if (t->tags.empty()) {
      return Reject(Rejection::kNotFound, "template " + t->name.substr(0, 80) + " has no tags");
    }
    size_t from = t->tags.size() - 1;  // Default: the newest.
    if (!c.tag.empty() || c.version.has_value()) {
      auto found = std::find_if(t->tags.begin(), t->tags.end(), [&](const auto& tag) {
        return c.tag.empty() ? tag.version == *c.version : tag.tag == c.tag;
      });
      if (found == t->tags.end()) {
        return Reject(Rejection::kNotFound,
                      c.tag.empty() ? "No such version " + std::to_string(*c.version)
                                    : "No such tag " + c.tag.substr(0, 80));
      }
      from = static_cast<size_t>(found - t->tags.begin());
    }
    std::set<std::string> kept;
    for (size_t i = 0; i < t->tags.size(); i++) {
      (i >= from ? tags.push_back(t->tags[i].tag) : void(kept.insert(t->tags[i].digest)));
    }
    for (size_t i = from; i < t->tags.size(); i++) {
      const std::string& digest = t->tags[i].digest;
      if (!digest.empty() && !kept.contains(digest)) {
        digests.insert(digest);
      }
    }
  } else {
    reason = "delete_manifest";
    if (!t->manifests.contains(c.digest)) {
      return Reject(Rejection::kNotFound, "manifest " + c.digest.substr(0, 80) + " is not in " +
                                              t->name.substr(0, 80));
    }
    for (const auto& [digest, m] : t->manifests) {
      for (const reducers::RegistryReference& ref : m.references) {
        if (ref.digest == c.digest && digest != c.digest) {
          return Reject(Rejection::kInvalidArgument,
                        "manifest " + c.digest + " is referred to by index " + digest);
        }
      }
    }
    digests.insert(c.digest);
    for (const reducers::TemplateTag& tag : t->tags) {
      if (tag.digest == c.digest) {
        tags.push_back(tag.tag);
      }
    }
  }
  if (c.mode != Mode::kDeleteTemplate) {
    // An index's children (pushed by digest, with no tag of their own) go with it, unless a
    // manifest or tag that stays still names them: otherwise they would be kept, and their
    // blobs with them, for ever.
    std::set<std::string> kept_tags;
    for (const reducers::TemplateTag& tag : t->tags) {
      if (std::find(tags.begin(), tags.end(), tag.tag) == tags.end()) {
        kept_tags.insert(tag.digest);
      }
    }
    for (bool grew = true; grew;) {
      grew = false;
      std::set<std::string> named_by_kept;
      for (const auto& [digest, m] : t->manifests) {
        if (!digests.contains(digest)) {
          for (const reducers::RegistryReference& ref : m.references) {
            named_by_kept.insert(ref.digest);
          }
        }
      }
      for (const std::string& removed : std::set<std::string>(digests)) {
        auto manifest = t->manifests.find(removed);
        if (manifest == t->manifests.end()) {
          continue;
        }
        for (const reducers::RegistryReference& ref : manifest->second.references) {
          if (t->manifests.contains(ref.digest) && !digests.contains(ref.digest) &&
              !named_by_kept.contains(ref.digest) && !kept_tags.contains(ref.digest)) {
            digests.insert(ref.digest);
            grew = true;
          }
        }
      }
    }
  }
  const std::vector<std::string> digest_list(digests.begin(), digests.end());
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  Emit(fb::CreateTemplateContentRemoved(
           fbb, fbb.CreateString(t->template_id), fbb.CreateVectorOfStrings(tags),
           fbb.CreateVectorOfStrings(digest_list), c.mode == Mode::kDeleteTemplate,
           fbb.CreateString(reason)),
       &builder);
  ids_.push_back(t->template_id);
  ids_.insert(ids_.end(), tags.begin(), tags.end());
  return true;
}

bool Validation::ValidateCommand(const RequestDistribution& c) {
  if (c.action != "distribute" && c.action != "remove") {
    return Reject(Rejection::kInvalidArgument, "action must be distribute or remove");
  }
  const reducers::Template* t = FindTemplate(c.template_id);
  if (t == nullptr) {
    return false;
  }
  std::string tag = c.tag;
  if (c.action == "distribute" && tag.empty()) {
    if (t->tags.empty()) {
      return Reject(Rejection::kNotFound, "template " + t->name.substr(0, 80) + " has no tags");
    }
    tag = t->tags.back().tag;
  }
  if (!tag.empty() && std::none_of(t->tags.begin(), t->tags.end(),
                                   [&](const auto& one) { return one.tag == tag; })) {
    return Reject(Rejection::kNotFound, "No such tag " + tag.substr(0, 80));
  }
  std::vector<std::string> nodes = c.node_ids;
  if (nodes.empty()) {
    // Every node that can act on it: an Offline one would hold the request pending forever.
    for (const auto& [id, node] : views_.nodes.nodes) {
      if (node.state != fb::NodeState::Offline) {
        nodes.push_back(id);
      }
    }
  }
  if (nodes.empty()) {
    return Reject(Rejection::kNotFound, c.node_ids.empty() && !views_.nodes.nodes.empty()
                                            ? "no node to distribute to: every node is Offline"
                                            : "no node to distribute to");
  }
  for (const std::string& node : nodes) {
    if (!views_.nodes.nodes.contains(node)) {
      return Reject(Rejection::kNotFound, "node " + node.substr(0, 64) + " not found");
    }
  }
  const std::string id = rng_->NewUuid();
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  Emit(fb::CreateDistributionRequested(fbb, fbb.CreateString(id), fbb.CreateString(c.action),
                                       fbb.CreateString(t->template_id), fbb.CreateString(tag),
                                       fbb.CreateVectorOfStrings(nodes)),
       &builder);
  ids_.push_back(id);
  return true;
}

bool Validation::ValidateCommand(const ReportDistribution& c) {
  auto it = views_.distributions.requests.find(c.request_id);
  if (it == views_.distributions.requests.end()) {
    return Reject(Rejection::kNotFound, "distribution " + c.request_id.substr(0, 64) +
                                            " not found");
  }
  auto node = it->second.nodes.find(c.node_id);
  if (node == it->second.nodes.end()) {
    return Reject(Rejection::kInvalidArgument, "the distribution does not name this node");
  }
  if (c.status != "in_progress" && c.status != "done" && c.status != "error") {
    return Reject(Rejection::kInvalidArgument, "status must be in_progress, done or error");
  }
  if (c.progress > 100 || !CheckText("message", c.message, kDescriptionBytesMax, false)) {
    return c.progress > 100 ? Reject(Rejection::kInvalidArgument, "progress is a percentage")
                            : false;
  }
  const reducers::DistributionNode& now = node->second;
  if (now.status == c.status && now.progress == c.progress && now.message == c.message) {
    return true;  // A resent report: nothing new.
  }
  // Reports can arrive out of order (a progress report retried after the final one): a node's
  // status never moves back from done or error, and its progress never goes down.
  if (now.status == "done" || now.status == "error") {
    return true;
  }
  if (c.status == "in_progress" && now.status == "in_progress" && c.progress < now.progress) {
    return true;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateDistributionProgressedDirect(builder.fbb(), c.request_id.c_str(),
                                              c.node_id.c_str(), c.status.c_str(), c.progress,
                                              c.message.c_str()),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const ClearDistributions& c) {
  std::vector<std::string> ids;
  const auto& requests = views_.distributions.requests;
  if (c.request_ids.empty()) {
    for (const auto& [id, d] : requests) {
      const bool finished = std::all_of(d.nodes.begin(), d.nodes.end(), [](const auto& n) {
        return n.second.status == "done" || n.second.status == "error";
      });
      if (finished) {
        ids.push_back(id);
      }
    }
  } else {
    for (const std::string& id : c.request_ids) {
      if (!requests.contains(id)) {
        return Reject(Rejection::kNotFound, "distribution " + id.substr(0, 64) + " not found");
      }
      ids.push_back(id);
    }
  }
  if (ids.empty()) {
    return true;
  }
  log::DraftBuilder builder;
  Emit(fb::CreateDistributionsCleared(builder.fbb(), builder.fbb().CreateVectorOfStrings(ids)),
       &builder);
  ids_ = ids;
  return true;
}

std::string FilePathProblem(std::string_view path) {
  if (path.empty()) {
    return "the path is required";
  }
  if (path.size() > kFilePathBytesMax) {
    return "the path is longer than " + std::to_string(kFilePathBytesMax) + " bytes";
  }
  if (path.front() == '/') {
    return "the path must be relative (no leading /)";
  }
  const bool bad_byte = std::any_of(path.begin(), path.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\';
  });
  if (bad_byte) {
    return "the path must not contain control characters or backslashes";
  }
  size_t segments = 0;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return "the path must not have empty, \".\" or \"..\" segments";
    }
    if (++segments > kFilePathSegmentsMax) {
      return "the path has more than " + std::to_string(kFilePathSegmentsMax) + " segments";
    }
    start = end + 1;
  }
  return "";
}

bool Validation::ValidateCommand(const StoreFile& c) {
  const std::string problem = FilePathProblem(c.path);
  if (!problem.empty()) {
    return Reject(Rejection::kInvalidArgument, problem);
  }
  if (!IsDigest(c.digest)) {
    return Reject(Rejection::kInvalidArgument, "digest must be sha256:<64 lowercase hex>");
  }
  if (!views_.files.files.contains(c.path) && views_.files.files.size() >= kFilesMax) {
    return Reject(Rejection::kOverloaded, "the file server holds " +
                                              std::to_string(kFilesMax) +
                                              " files; delete some first");
  }
  log::DraftBuilder builder;
  Emit(fb::CreateFileStoredDirect(builder.fbb(), c.path.c_str(), c.digest.c_str(), c.size),
       &builder);
  return true;
}

bool Validation::ValidateCommand(const DeleteFile& c) {
  const std::string problem = FilePathProblem(c.path);
  if (!problem.empty()) {
    return Reject(Rejection::kInvalidArgument, problem);
  }
  if (!views_.files.files.contains(c.path)) {
    return Reject(Rejection::kNotFound, "no such file");
  }
  log::DraftBuilder builder;
  Emit(fb::CreateFileDeletedDirect(builder.fbb(), c.path.c_str()), &builder);
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
