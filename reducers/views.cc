#include "reducers/views.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "flatbuffers/flatbuffers.h"
#include "log/assert.h"

namespace cloister::reducers {
namespace {

// A FlatBuffers string as a std::string; absent reads as empty.
std::string Str(const flatbuffers::String* s) { return s == nullptr ? std::string() : s->str(); }

bool Given(const flatbuffers::String* s) { return s != nullptr && s->size() > 0; }

// A Digest's 32 bytes; zeros when absent.
log::Hash DigestBytes(const fb::Digest* digest) {
  log::Hash out{};
  if (digest != nullptr) {
    std::copy(digest->bytes()->begin(), digest->bytes()->end(), out.begin());
  }
  return out;
}

// A Digest in lower-case hex (the sessions' key); empty when absent or all zeros.
std::string DigestHex(const fb::Digest* digest) {
  const log::Hash bytes = DigestBytes(digest);
  if (std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; })) {
    return "";
  }
  return log::HashHex(bytes);
}

using StringVector = flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>;

std::vector<std::string> Strings(const StringVector* v) {
  std::vector<std::string> out;
  if (v == nullptr) {
    return out;
  }
  out.reserve(v->size());
  for (const flatbuffers::String* s : *v) {
    out.push_back(Str(s));
  }
  return out;
}

// Records the pre-image of map[key] the first time an event touches it.
template <typename T>
void Remember(const std::map<std::string, T>& map, const std::string& key,
              std::map<std::string, std::optional<T>>* before) {
  if (before == nullptr || before->contains(key)) {
    return;
  }
  auto it = map.find(key);
  before->emplace(key, it == map.end() ? std::nullopt : std::optional<T>(it->second));
}

// Applies one event to the views. Every write to an entity goes through a Mutable*/Create*/Erase*
// helper, which records the pre-image first, so PreImages lists exactly what the event touched.
class Reducer {
 public:
  Reducer(Views* views, Stamp stamp, PreImages* before)
      : views_(*views), stamp_(stamp), before_(before) {}

  // Sessions that ended at or before the event's time are dropped first, whatever the event.
  void CollectExpiredSessions() {
    auto& index = views_.sessions.by_expiry;
    while (!index.empty() && index.begin()->first <= stamp_.time_ns) {
      EraseSession(index.begin()->second);
    }
  }

  void Dispatch(const fb::Event& event) {
    // One switch over the payload type. Types this build knows but no view uses, and types a
    // newer build wrote, fall through to the default: only seq and hash change.
    switch (event.payload_type()) {
      case fb::Payload::ConfigChanged:
        return OnConfigChanged(*event.payload_as_ConfigChanged());
      case fb::Payload::NodeJoined:
        return OnNodeJoined(*event.payload_as_NodeJoined(), event.actor());
      case fb::Payload::NodeUpdated:
        return OnNodeUpdated(*event.payload_as_NodeUpdated());
      case fb::Payload::NodeRemoved:
        return OnNodeRemoved(*event.payload_as_NodeRemoved());
      case fb::Payload::NodeGroupCreated:
        return OnNodeGroupCreated(*event.payload_as_NodeGroupCreated());
      case fb::Payload::NodeGroupUpdated:
        return OnNodeGroupUpdated(*event.payload_as_NodeGroupUpdated());
      case fb::Payload::NodeGroupDeleted:
        return OnNodeGroupDeleted(*event.payload_as_NodeGroupDeleted());
      case fb::Payload::NodeGroupMembershipChanged:
        return OnMembershipChanged(*event.payload_as_NodeGroupMembershipChanged());
      case fb::Payload::VmInstanceRequested:
        return OnVmRequested(*event.payload_as_VmInstanceRequested());
      case fb::Payload::VmInstanceScheduled:
        return OnVmScheduled(*event.payload_as_VmInstanceScheduled());
      case fb::Payload::VmInstanceStateChanged:
        return OnVmStateChanged(*event.payload_as_VmInstanceStateChanged());
      case fb::Payload::VmInstanceTerminated:
        return OnVmTerminated(*event.payload_as_VmInstanceTerminated());
      case fb::Payload::VmInstanceUpdated:
        return OnVmUpdated(*event.payload_as_VmInstanceUpdated());
      case fb::Payload::VmInstanceRestartRequested:
        return OnVmRestartRequested(*event.payload_as_VmInstanceRestartRequested());
      case fb::Payload::NodeConfigured:
        return OnNodeConfigured(*event.payload_as_NodeConfigured());
      case fb::Payload::NodeAgentsUpdateRequested:
        return OnNodeAgentsUpdateRequested();
      case fb::Payload::TemplateTagRegistered:
        return OnTemplateTagRegistered(*event.payload_as_TemplateTagRegistered());
      case fb::Payload::SaveImageRequested:
        return OnSaveImageRequested(*event.payload_as_SaveImageRequested());
      case fb::Payload::SaveImageFinished:
        return OnSaveImageFinished(*event.payload_as_SaveImageFinished());
      case fb::Payload::ApiKeyCreated:
        return OnApiKeyCreated(*event.payload_as_ApiKeyCreated());
      case fb::Payload::ApiKeyUpdated:
        return OnApiKeyUpdated(*event.payload_as_ApiKeyUpdated());
      case fb::Payload::ApiKeyDeleted:
        return EndKey(Str(event.payload_as_ApiKeyDeleted()->key_id()), /*erase=*/true);
      case fb::Payload::KeyRevoked:
        return EndKey(Str(event.payload_as_KeyRevoked()->key_id()), /*erase=*/false);
      case fb::Payload::SessionOpened:
        return OnSessionOpened(*event.payload_as_SessionOpened());
      case fb::Payload::SessionClosed:
        return EraseSession(DigestHex(event.payload_as_SessionClosed()->session_digest()));
      case fb::Payload::SessionRevoked:
        return EraseSession(DigestHex(event.payload_as_SessionRevoked()->session_digest()));
      case fb::Payload::CertificateRevoked:
        return OnCertificateRevoked(*event.payload_as_CertificateRevoked());
      case fb::Payload::PermissionGroupCreated:
        return OnPermissionGroupCreated(*event.payload_as_PermissionGroupCreated());
      case fb::Payload::PermissionGroupUpdated:
        return OnPermissionGroupUpdated(*event.payload_as_PermissionGroupUpdated());
      case fb::Payload::PermissionGroupDeleted:
        return OnPermissionGroupDeleted(*event.payload_as_PermissionGroupDeleted());
      case fb::Payload::ResourcePermissionsSet:
        return OnResourcePermissionsSet(*event.payload_as_ResourcePermissionsSet());
      case fb::Payload::PolicyEventsAppended:
        return OnPolicyEventsAppended(*event.payload_as_PolicyEventsAppended());
      case fb::Payload::PolicyAttachmentChanged:
        return OnPolicyAttachmentChanged(*event.payload_as_PolicyAttachmentChanged());
      case fb::Payload::ManifestPushed:
        return OnManifestPushed(*event.payload_as_ManifestPushed());
      case fb::Payload::TemplateContentRemoved:
        return OnTemplateContentRemoved(*event.payload_as_TemplateContentRemoved());
      case fb::Payload::DistributionRequested:
        return OnDistributionRequested(*event.payload_as_DistributionRequested());
      case fb::Payload::DistributionProgressed:
        return OnDistributionProgressed(*event.payload_as_DistributionProgressed());
      case fb::Payload::DistributionsCleared:
        return OnDistributionsCleared(*event.payload_as_DistributionsCleared());
      case fb::Payload::TemplateMirrored:
        return OnTemplateMirrored(*event.payload_as_TemplateMirrored());
      case fb::Payload::FileStored:
        return OnFileStored(*event.payload_as_FileStored(), event.actor());
      case fb::Payload::FileDeleted:
        return OnFileDeleted(*event.payload_as_FileDeleted());
      default:
        return;
    }
  }

 private:
  // ---- Touching entities ----------------------------------------------------------------------

  Node* MutableNode(const std::string& id) {
    auto it = views_.nodes.nodes.find(id);
    if (it == views_.nodes.nodes.end()) {
      return nullptr;
    }
    Remember(views_.nodes.nodes, id, before_ ? &before_->nodes : nullptr);
    it->second.updated = stamp_;
    return &it->second;
  }

  NodeGroup* MutableGroup(const std::string& id) {
    auto it = views_.node_groups.groups.find(id);
    if (it == views_.node_groups.groups.end()) {
      return nullptr;
    }
    Remember(views_.node_groups.groups, id, before_ ? &before_->node_groups : nullptr);
    it->second.updated = stamp_;
    return &it->second;
  }

  VmInstance* MutableInstance(const std::string& id) {
    auto it = views_.vm_instances.instances.find(id);
    if (it == views_.vm_instances.instances.end()) {
      return nullptr;
    }
    Remember(views_.vm_instances.instances, id, before_ ? &before_->vm_instances : nullptr);
    it->second.updated = stamp_;
    return &it->second;
  }

  // The entity map[id] for writing, created (with created = stamp) if absent.
  template <typename T>
  T* Upsert(std::map<std::string, T>* map, const std::string& id,
            std::map<std::string, std::optional<T>>* before) {
    Remember(*map, id, before_ ? before : nullptr);
    auto [it, created] = map->try_emplace(id);
    if (created) {
      it->second.created = stamp_;
    }
    it->second.updated = stamp_;
    return &it->second;
  }

  void EraseNode(const std::string& id) {
    Remember(views_.nodes.nodes, id, before_ ? &before_->nodes : nullptr);
    views_.nodes.nodes.erase(id);
  }

  void EraseSession(const std::string& digest_hex) {
    auto it = views_.sessions.sessions.find(digest_hex);
    if (it == views_.sessions.sessions.end()) {
      return;
    }
    Remember(views_.sessions.sessions, digest_hex, before_ ? &before_->sessions : nullptr);
    views_.sessions.by_expiry.erase({it->second.expires_ns, digest_hex});
    views_.sessions.sessions.erase(it);
  }

  void EraseGroup(const std::string& id) {
    Remember(views_.node_groups.groups, id, before_ ? &before_->node_groups : nullptr);
    views_.node_groups.groups.erase(id);
  }

  // Removes node_id from the node_ids of each of its groups (the node itself is left as it is).
  void LeaveGroups(const Node& node) {
    for (const std::string& group_id : node.groups) {
      if (NodeGroup* group = MutableGroup(group_id)) {
        group->node_ids.erase(node.node_id);
      }
    }
  }

  // ---- Config ---------------------------------------------------------------------------------

  void OnConfigChanged(const fb::ConfigChanged& p) {
    if (!Given(p.key())) {
      return;
    }
    const std::string key = p.key()->str();
    Remember(views_.config.entries, key, before_ ? &before_->config : nullptr);
    ConfigEntry entry;
    const fb::Digest* digest = p.value_digest();
    if (digest != nullptr) {
      std::copy(digest->bytes()->begin(), digest->bytes()->end(), entry.value_digest.begin());
    }
    entry.secret = std::any_of(entry.value_digest.begin(), entry.value_digest.end(),
                               [](uint8_t b) { return b != 0; });
    if (!entry.secret) {
      entry.value = Str(p.value());
    }
    entry.changed = stamp_;
    views_.config.entries[key] = std::move(entry);
  }

  // ---- Nodes ----------------------------------------------------------------------------------

  void OnNodeJoined(const fb::NodeJoined& p, const fb::Actor* actor) {
    if (!Given(p.node_id())) {
      return;
    }
    const std::string id = p.node_id()->str();
    Remember(views_.nodes.nodes, id, before_ ? &before_->nodes : nullptr);
    Node node;
    if (auto old = views_.nodes.nodes.find(id); old != views_.nodes.nodes.end()) {
      LeaveGroups(old->second);  // A rejoin replaces the node, memberships included ...
      // ... but not the operator's overrides, the pending agent update or the report dedup.
      node.vcpu_override = old->second.vcpu_override;
      node.ram_override_mb = old->second.ram_override_mb;
      node.update_seq = old->second.update_seq;
      node.last_report_seq = old->second.last_report_seq;
    }
    node.node_id = id;
    node.node_name = Str(p.node_name());
    node.ip_address = Str(p.ip_address());
    node.cpu_count = p.cpu_count();
    node.ram_mb = p.ram_mb();
    node.vcpu_count = p.vcpu_count();
    node.vram_mb = p.vram_mb();
    node.capacity = p.capacity();
    node.capacity_mode = Str(p.capacity_mode());
    node.arch = Str(p.arch());
    node.hypervisor = Str(p.hypervisor());
    node.drain_mode = p.drain_mode();
    node.agent_version = Str(p.agent_version());
    node.free_disk_space_mb = p.free_disk_space_mb();
    if (actor != nullptr) {
      node.credential = {actor->kind(), Str(actor->id()), Strings(actor->groups())};
    }
    node.joined = stamp_;
    node.updated = stamp_;
    for (const std::string& group_id : Strings(p.groups())) {
      // Invariant: membership is two-sided, so only groups that exist are recorded.
      if (NodeGroup* group = MutableGroup(group_id)) {
        group->node_ids.insert(id);
        node.groups.insert(group_id);
      }
    }
    views_.nodes.nodes[id] = std::move(node);
  }

  void OnNodeUpdated(const fb::NodeUpdated& p) {
    Node* node = MutableNode(Str(p.node_id()));
    if (node == nullptr) {
      return;
    }
    node->state = p.state();
    node->vm_count = p.vm_count();
    if (Given(p.node_name())) {
      node->node_name = p.node_name()->str();
    }
    if (Given(p.capacity_mode())) {
      node->capacity_mode = p.capacity_mode()->str();
    }
    if (Given(p.message())) {
      node->message = p.message()->str();
    }
    if (p.capacity() != 0) {
      node->capacity = p.capacity();
    }
    if (p.templates() != nullptr) {
      node->templates = Strings(p.templates());
    }
  }

  void OnNodeConfigured(const fb::NodeConfigured& p) {
    Node* node = MutableNode(Str(p.node_id()));
    if (node == nullptr) {
      return;
    }
    node->node_name = Str(p.node_name());
    node->capacity = p.capacity();
    node->capacity_mode = Str(p.capacity_mode());
    node->vcpu_override = p.vcpu_override();
    node->ram_override_mb = p.ram_override_mb();
    node->drain_mode = p.drain_mode();
  }

  void OnNodeAgentsUpdateRequested() {
    std::vector<std::string> ids;
    for (const auto& [id, node] : views_.nodes.nodes) {
      ids.push_back(id);
    }
    for (const std::string& id : ids) {
      MutableNode(id)->update_seq = stamp_.seq;
    }
  }

  void OnNodeRemoved(const fb::NodeRemoved& p) {
    auto it = views_.nodes.nodes.find(Str(p.node_id()));
    if (it == views_.nodes.nodes.end()) {
      return;
    }
    const std::string id = it->first;  // A copy: erasing the node frees its key.
    LeaveGroups(it->second);
    EraseNode(id);
  }

  // ---- Node groups ----------------------------------------------------------------------------

  void OnNodeGroupCreated(const fb::NodeGroupCreated& p) {
    if (!Given(p.group_id())) {
      return;
    }
    const std::string id = p.group_id()->str();
    Remember(views_.node_groups.groups, id, before_ ? &before_->node_groups : nullptr);
    NodeGroup& group = views_.node_groups.groups[id];
    // A repeated id keeps its members: nodes still name it, and membership is two-sided.
    group.group_id = id;
    group.name = Str(p.name());
    group.description = Str(p.description());
    group.fallback_group_id = Str(p.fallback_group_id());
    group.created = stamp_;
    group.updated = stamp_;
  }

  void OnNodeGroupUpdated(const fb::NodeGroupUpdated& p) {
    NodeGroup* group = MutableGroup(Str(p.group_id()));
    if (group == nullptr) {
      return;
    }
    if (p.name() != nullptr) {
      group->name = p.name()->str();
    }
    if (p.description() != nullptr) {
      group->description = p.description()->str();
    }
    if (p.fallback_group_id() != nullptr) {
      group->fallback_group_id = p.fallback_group_id()->str();
    }
  }

  void OnNodeGroupDeleted(const fb::NodeGroupDeleted& p) {
    auto it = views_.node_groups.groups.find(Str(p.group_id()));
    if (it == views_.node_groups.groups.end()) {
      return;
    }
    const std::string id = it->first;
    for (const std::string& node_id : it->second.node_ids) {
      if (Node* node = MutableNode(node_id)) {
        node->groups.erase(id);
      }
    }
    EraseGroup(id);
  }

  void OnMembershipChanged(const fb::NodeGroupMembershipChanged& p) {
    const std::string group_id = Str(p.group_id());
    const std::string node_id = Str(p.node_id());
    if (!views_.node_groups.groups.contains(group_id) || !views_.nodes.nodes.contains(node_id)) {
      return;
    }
    NodeGroup* group = MutableGroup(group_id);
    Node* node = MutableNode(node_id);
    if (p.member()) {
      group->node_ids.insert(node_id);
      node->groups.insert(group_id);
    } else {
      group->node_ids.erase(node_id);
      node->groups.erase(group_id);
    }
  }

  // ---- VM instances ---------------------------------------------------------------------------

  void OnVmRequested(const fb::VmInstanceRequested& p) {
    if (!Given(p.instance_id())) {
      return;
    }
    const std::string id = p.instance_id()->str();
    Remember(views_.vm_instances.instances, id, before_ ? &before_->vm_instances : nullptr);
    VmInstance vm;
    vm.instance_id = id;
    vm.vmid = Str(p.vmid());
    vm.tag = Str(p.tag());
    vm.version = p.version();
    vm.name = Str(p.name());
    vm.name_template = Str(p.name_template());
    vm.external_id = Str(p.external_id());
    vm.requested_node_id = Str(p.node_id());
    vm.group_id = Str(p.group_id());
    vm.permission_group = Str(p.permission_group());
    vm.priority = p.priority();
    vm.startup_script = Str(p.startup_script());
    vm.startup_script_condition = p.startup_script_condition();
    vm.script_monitoring = p.script_monitoring();
    vm.script_timeout = p.script_timeout();
    vm.script_fail_handler = p.script_fail_handler();
    vm.metadata_json = Str(p.metadata_json());
    vm.vcpu = p.vcpu();
    vm.vram_mb = p.vram_mb();
    if (p.port_forwarding_override() != nullptr) {
      for (const fb::PortForward* forward : *p.port_forwarding_override()) {
        vm.port_forwarding_override.push_back(
            PortForward{forward->guest_port(), forward->host_port(), Str(forward->protocol()),
                        Str(forward->name())});
      }
    }
    vm.vnc_password_set = p.vnc_password_set();
    vm.state = fb::VmState::Scheduling;
    vm.created = stamp_;
    vm.updated = stamp_;
    views_.vm_instances.instances[id] = std::move(vm);
  }

  void OnVmScheduled(const fb::VmInstanceScheduled& p) {
    if (VmInstance* vm = MutableInstance(Str(p.instance_id()))) {
      vm->node_id = Str(p.node_id());
    }
  }

  void OnVmStateChanged(const fb::VmInstanceStateChanged& p) {
    VmInstance* vm = MutableInstance(Str(p.instance_id()));
    if (vm == nullptr) {
      return;
    }
    vm->state = p.state();
    if (Given(p.message())) {
      vm->message = p.message()->str();
    }
    if (Given(p.node_id())) {
      vm->node_id = p.node_id()->str();
    }
    if (Given(p.vm_uuid())) {
      vm->vm_uuid = p.vm_uuid()->str();
    }
    if (Given(p.ip())) {
      vm->ip = p.ip()->str();
    }
    if (p.progress() != 0) {
      vm->progress = p.progress();
    }
    if (p.vnc_port() != 0) {
      vm->vnc_port = p.vnc_port();
    }
    if (p.script_done()) {
      vm->script_done = true;
      vm->script_exit_code = p.script_exit_code();
      vm->script_output = Str(p.script_output());
    }
    if (p.report_seq() != 0 && Given(p.node_id())) {
      Node* node = MutableNode(p.node_id()->str());
      if (node != nullptr) {
        node->last_report_seq = std::max(node->last_report_seq, p.report_seq());
      }
    }
  }

  void OnVmUpdated(const fb::VmInstanceUpdated& p) {
    VmInstance* vm = MutableInstance(Str(p.instance_id()));
    if (vm == nullptr) {
      return;
    }
    if (p.name() != nullptr) {
      vm->name = p.name()->str();
    }
    if (p.external_id() != nullptr) {
      vm->external_id = p.external_id()->str();
    }
    if (p.metadata_json() != nullptr) {
      vm->metadata_json = p.metadata_json()->str();
    }
  }

  void OnVmRestartRequested(const fb::VmInstanceRestartRequested& p) {
    if (VmInstance* vm = MutableInstance(Str(p.instance_id()))) {
      vm->restart_seq = stamp_.seq;
    }
  }

  // ---- Templates and save-image requests ------------------------------------------------------

  void OnTemplateTagRegistered(const fb::TemplateTagRegistered& p) {
    if (!Given(p.template_id()) || !Given(p.tag())) {
      return;
    }
    Template* t = Upsert(&views_.templates.templates, p.template_id()->str(),
                         before_ ? &before_->templates : nullptr);
    t->template_id = p.template_id()->str();
    if (Given(p.name())) {
      t->name = p.name()->str();
    }
    PutTag(t, {p.tag()->str(), p.version(), Str(p.description()), stamp_, ""});
  }

  // A tag appended, or replaced in place (keeping its version) when the template has it.
  static void PutTag(Template* t, TemplateTag tag) {
    auto same = std::find_if(t->tags.begin(), t->tags.end(),
                             [&](const TemplateTag& old) { return old.tag == tag.tag; });
    if (same != t->tags.end()) {
      tag.version = same->version;
      *same = std::move(tag);
    } else {
      t->tags.push_back(std::move(tag));
    }
  }

  void OnManifestPushed(const fb::ManifestPushed& p) {
    if (!Given(p.template_id()) || !Given(p.digest())) {
      return;
    }
    Template* t = Upsert(&views_.templates.templates, p.template_id()->str(),
                         before_ ? &before_->templates : nullptr);
    t->template_id = p.template_id()->str();
    if (Given(p.name())) {
      t->name = p.name()->str();
    }
    StoredManifest& m = t->manifests[p.digest()->str()];
    m.digest = p.digest()->str();
    m.media_type = Str(p.media_type());
    m.size = p.size();
    m.references.clear();
    if (p.references() != nullptr) {
      for (const fb::RegistryReference* ref : *p.references()) {
        m.references.push_back({Str(ref->digest()), ref->size(), Str(ref->media_type())});
      }
    }
    m.pushed = stamp_;
    if (Given(p.tag())) {
      PutTag(t, {p.tag()->str(), p.version(), Str(p.description()), stamp_, m.digest});
    }
  }

  void OnTemplateContentRemoved(const fb::TemplateContentRemoved& p) {
    const std::string id = Str(p.template_id());
    auto& templates = views_.templates.templates;
    if (!templates.contains(id)) {
      return;
    }
    if (p.template_removed()) {
      Remember(templates, id, before_ ? &before_->templates : nullptr);
      templates.erase(id);
      return;
    }
    Template* t = Upsert(&templates, id, before_ ? &before_->templates : nullptr);
    if (p.tags() != nullptr) {
      for (const flatbuffers::String* tag : *p.tags()) {
        std::erase_if(t->tags, [&](const TemplateTag& old) { return old.tag == tag->str(); });
      }
    }
    if (p.digests() != nullptr) {
      for (const flatbuffers::String* digest : *p.digests()) {
        t->manifests.erase(digest->str());
      }
    }
  }

  void OnTemplateMirrored(const fb::TemplateMirrored& p) {
    if (!Given(p.template_id())) {
      return;
    }
    const std::string id = p.template_id()->str();
    auto& templates = views_.templates.templates;
    if (p.removed()) {
      if (templates.contains(id)) {
        Remember(templates, id, before_ ? &before_->templates : nullptr);
        templates.erase(id);
      }
      return;
    }
    Template* t = Upsert(&templates, id, before_ ? &before_->templates : nullptr);
    t->template_id = id;
    t->mirrored = true;
    if (Given(p.name())) {
      t->name = p.name()->str();
    }
    t->tags.clear();
    if (p.tags() != nullptr) {
      for (const fb::MirroredTag* tag : *p.tags()) {
        t->tags.push_back({Str(tag->tag()), tag->version(), Str(tag->description()),
                           Stamp{stamp_.seq, tag->created_ns()}, Str(tag->digest())});
      }
    }
  }

  void OnDistributionRequested(const fb::DistributionRequested& p) {
    if (!Given(p.request_id())) {
      return;
    }
    Distribution* d = Upsert(&views_.distributions.requests, p.request_id()->str(),
                             before_ ? &before_->distributions : nullptr);
    d->request_id = p.request_id()->str();
    d->action = Str(p.action());
    d->template_id = Str(p.template_id());
    d->tag = Str(p.tag());
    d->nodes.clear();
    if (p.node_ids() != nullptr) {
      for (const flatbuffers::String* node : *p.node_ids()) {
        DistributionNode& n = d->nodes[node->str()];
        n.node_id = node->str();
        n.updated = stamp_;
      }
    }
  }

  void OnDistributionProgressed(const fb::DistributionProgressed& p) {
    auto& requests = views_.distributions.requests;
    auto it = requests.find(Str(p.request_id()));
    if (it == requests.end() || !it->second.nodes.contains(Str(p.node_id()))) {
      return;
    }
    Distribution* d = Upsert(&requests, it->first, before_ ? &before_->distributions : nullptr);
    DistributionNode& n = d->nodes.at(Str(p.node_id()));
    n.status = Str(p.status());
    n.progress = p.progress();
    n.message = Str(p.message());
    n.updated = stamp_;
  }

  void OnDistributionsCleared(const fb::DistributionsCleared& p) {
    if (p.request_ids() == nullptr) {
      return;
    }
    auto& requests = views_.distributions.requests;
    for (const flatbuffers::String* id : *p.request_ids()) {
      if (requests.contains(id->str())) {
        Remember(requests, id->str(), before_ ? &before_->distributions : nullptr);
        requests.erase(id->str());
      }
    }
  }

  void OnFileStored(const fb::FileStored& p, const fb::Actor* actor) {
    if (!Given(p.path())) {
      return;
    }
    Remember(views_.files.files, p.path()->str(), before_ ? &before_->files : nullptr);
    StoredFile* f = &views_.files.files[p.path()->str()];  // A new upload replaces it whole.
    f->path = p.path()->str();
    f->digest = Str(p.digest());
    f->size = p.size();
    f->stored_by = actor != nullptr ? Str(actor->id()) : "";
    f->stored = stamp_;
  }

  void OnFileDeleted(const fb::FileDeleted& p) {
    auto& files = views_.files.files;
    const std::string path = Str(p.path());
    if (!files.contains(path)) {
      return;
    }
    Remember(files, path, before_ ? &before_->files : nullptr);
    files.erase(path);
  }

  void OnSaveImageRequested(const fb::SaveImageRequested& p) {
    if (!Given(p.request_id())) {
      return;
    }
    SaveImage* r = Upsert(&views_.save_images.requests, p.request_id()->str(),
                          before_ ? &before_->save_images : nullptr);
    r->request_id = p.request_id()->str();
    r->instance_id = Str(p.instance_id());
    r->target_vm_id = Str(p.target_vmid());
    r->new_template_name = Str(p.new_template_name());
    r->tag = Str(p.tag());
    r->description = Str(p.description());
    r->suspend = p.suspend();
    r->revert_tag = Str(p.revert_tag());
    r->script = Str(p.script());
    r->copy = p.copy();
    r->copy_approved_by = Str(p.copy_approved_by());
    r->status = SaveImageStatus::kPending;
  }

  void OnSaveImageFinished(const fb::SaveImageFinished& p) {
    auto it = views_.save_images.requests.find(Str(p.request_id()));
    if (it == views_.save_images.requests.end()) {
      return;
    }
    SaveImage* r = Upsert(&views_.save_images.requests, it->first,
                          before_ ? &before_->save_images : nullptr);
    r->status = p.ok() ? SaveImageStatus::kDone : SaveImageStatus::kError;
    r->message = Str(p.message());
    r->result_vmid = Str(p.vmid());
  }

  void OnApiKeyCreated(const fb::ApiKeyCreated& p) {
    if (!Given(p.key_id())) {
      return;
    }
    ApiKey* key =
        Upsert(&views_.api_keys.keys, p.key_id()->str(), before_ ? &before_->api_keys : nullptr);
    key->key_id = p.key_id()->str();
    key->description = Str(p.description());
    key->public_key_pem = Str(p.public_key_pem());
    key->public_key_fingerprint = DigestBytes(p.public_key_fingerprint());
    key->groups = Strings(p.groups());
    key->expires_ns = p.expires_ns();
    key->enabled = true;
  }

  void OnApiKeyUpdated(const fb::ApiKeyUpdated& p) {
    auto it = views_.api_keys.keys.find(Str(p.key_id()));
    if (it == views_.api_keys.keys.end()) {
      return;
    }
    ApiKey* key = Upsert(&views_.api_keys.keys, it->first, before_ ? &before_->api_keys : nullptr);
    if (p.description() != nullptr) {
      key->description = p.description()->str();
    }
    key->groups = Strings(p.groups());
    key->expires_ns = p.expires_ns();
    key->enabled = p.enabled();
  }

  // ApiKeyDeleted (erase) and KeyRevoked (disable): either way the key's sessions end now.
  void EndKey(const std::string& key_id, bool erase) {
    auto it = views_.api_keys.keys.find(key_id);
    if (it == views_.api_keys.keys.end()) {
      return;
    }
    std::vector<std::string> ended;
    for (const auto& [digest, session] : views_.sessions.sessions) {
      if (session.key_id == key_id) {
        ended.push_back(digest);
      }
    }
    for (const std::string& digest : ended) {
      EraseSession(digest);
    }
    if (erase) {
      Remember(views_.api_keys.keys, key_id, before_ ? &before_->api_keys : nullptr);
      views_.api_keys.keys.erase(key_id);
    } else {
      Upsert(&views_.api_keys.keys, key_id, before_ ? &before_->api_keys : nullptr)->enabled =
          false;
    }
  }

  void OnSessionOpened(const fb::SessionOpened& p) {
    const std::string digest = DigestHex(p.session_digest());
    if (digest.empty() || !views_.api_keys.keys.contains(Str(p.key_id())) ||
        p.expires_ns() <= stamp_.time_ns) {
      return;
    }
    EraseSession(digest);  // A repeated digest replaces the session (and its index entry).
    Session* session =
        Upsert(&views_.sessions.sessions, digest, before_ ? &before_->sessions : nullptr);
    session->session_digest = digest;
    session->key_id = Str(p.key_id());
    session->token_digest = DigestBytes(p.token_digest());
    session->expires_ns = p.expires_ns();
    views_.sessions.by_expiry.emplace(session->expires_ns, digest);
  }

  void OnCertificateRevoked(const fb::CertificateRevoked& p) {
    if (!Given(p.serial_hex())) {
      return;
    }
    CertificateRevocation* r = Upsert(&views_.revocations.certificates, p.serial_hex()->str(),
                                      before_ ? &before_->revocations : nullptr);
    r->serial_hex = p.serial_hex()->str();
    r->issuer = Str(p.issuer());
    r->reason = Str(p.reason());
  }

  // ---- Authorization --------------------------------------------------------------------------

  static std::string ComponentOf(const flatbuffers::String* component) {
    return Given(component) ? component->str() : std::string("controller");
  }

  void OnPermissionGroupCreated(const fb::PermissionGroupCreated& p) {
    if (!Given(p.name())) {
      return;
    }
    const std::string component = ComponentOf(p.component());
    const std::string key = component + "/" + p.name()->str();
    auto& groups = views_.permission_groups.groups;
    Remember(groups, key, before_ ? &before_->permission_groups : nullptr);
    PermissionGroup group;
    group.component = component;
    group.name = p.name()->str();
    group.description = Str(p.description());
    for (std::string& permission : Strings(p.permissions())) {
      group.permissions.insert(std::move(permission));
    }
    group.created = stamp_;
    group.updated = stamp_;
    groups[key] = std::move(group);
    views_.authz_seq = stamp_.seq;
  }

  void OnPermissionGroupUpdated(const fb::PermissionGroupUpdated& p) {
    const std::string key = ComponentOf(p.component()) + "/" + Str(p.name());
    auto& groups = views_.permission_groups.groups;
    if (!groups.contains(key)) {
      return;
    }
    PermissionGroup* group =
        Upsert(&groups, key, before_ ? &before_->permission_groups : nullptr);
    if (p.description() != nullptr) {
      group->description = p.description()->str();
    }
    if (p.permissions() != nullptr) {
      group->permissions.clear();
      for (std::string& permission : Strings(p.permissions())) {
        group->permissions.insert(std::move(permission));
      }
    }
    views_.authz_seq = stamp_.seq;
  }

  void OnPermissionGroupDeleted(const fb::PermissionGroupDeleted& p) {
    auto& groups = views_.permission_groups.groups;
    auto it = groups.find(Str(p.group_id()));
    if (it == groups.end()) {
      return;
    }
    // Nodes are controller resources, templates registry ones (views.h).
    const std::string type = it->second.component == "registry" ? "template" : "node";
    const std::string name = it->second.name;
    const std::string key = it->first;
    std::vector<std::string> dropped;
    for (const auto& [grant_key, grant] : views_.resource_permissions.grants) {
      if (grant.resource_type == type && grant.principal == name) {
        dropped.push_back(grant_key);
      }
    }
    auto& grants = views_.resource_permissions.grants;
    for (const std::string& grant_key : dropped) {
      Remember(grants, grant_key, before_ ? &before_->resource_permissions : nullptr);
      grants.erase(grant_key);
    }
    Remember(groups, key, before_ ? &before_->permission_groups : nullptr);
    groups.erase(key);
    views_.authz_seq = stamp_.seq;
  }

  void OnResourcePermissionsSet(const fb::ResourcePermissionsSet& p) {
    if (!Given(p.resource_type()) || !Given(p.resource_id()) || !Given(p.principal())) {
      return;
    }
    const std::string key =
        p.resource_type()->str() + "/" + p.resource_id()->str() + "/" + p.principal()->str();
    auto& grants = views_.resource_permissions.grants;
    std::vector<std::string> permissions = Strings(p.permissions());
    if (permissions.empty()) {
      if (grants.contains(key)) {
        Remember(grants, key, before_ ? &before_->resource_permissions : nullptr);
        grants.erase(key);
        views_.authz_seq = stamp_.seq;
      }
      return;
    }
    ResourceGrant* grant = Upsert(&grants, key, before_ ? &before_->resource_permissions : nullptr);
    grant->resource_type = p.resource_type()->str();
    grant->resource_id = p.resource_id()->str();
    grant->principal = p.principal()->str();
    grant->permissions = std::set<std::string>(permissions.begin(), permissions.end());
    views_.authz_seq = stamp_.seq;
  }

  // ---- VM policies ------------------------------------------------------------------------------

  void OnPolicyEventsAppended(const fb::PolicyEventsAppended& p) {
    if (!Given(p.policy_id()) || p.events() == nullptr) {
      return;
    }
    StoredPolicy* policy = Upsert(&views_.policies.policies, p.policy_id()->str(),
                                  before_ ? &before_->policies : nullptr);
    policy->policy_id = p.policy_id()->str();
    for (const fb::PolicySignedEvent* event : *p.events()) {
      const flatbuffers::Vector<uint8_t>* bytes = event->bytes();
      policy->events.emplace_back(bytes == nullptr ? std::string()
                                                   : std::string(bytes->begin(), bytes->end()));
    }
    policy->head_hash = Str(p.head_hash());
  }

  void OnPolicyAttachmentChanged(const fb::PolicyAttachmentChanged& p) {
    if (!Given(p.target_type()) || !Given(p.target_id())) {
      return;
    }
    const std::string key = p.target_type()->str() + "/" + p.target_id()->str();
    auto& attachments = views_.policy_attachments.attachments;
    if (Str(p.policy_id()).empty() && !attachments.contains(key)) {
      return;
    }
    PolicyAttachment* a =
        Upsert(&attachments, key, before_ ? &before_->policy_attachments : nullptr);
    a->target_type = p.target_type()->str();
    a->target_id = p.target_id()->str();
    a->policy_id = Str(p.policy_id());  // Empty: detached (kept, so agents see the change).
  }

  void OnVmTerminated(const fb::VmInstanceTerminated& p) {
    if (VmInstance* vm = MutableInstance(Str(p.instance_id()))) {
      vm->state = fb::VmState::Terminated;
      vm->terminated_reason = Str(p.reason());
    }
  }

  Views& views_;
  const Stamp stamp_;
  PreImages* before_;
};

}  // namespace

void ApplyRecording(Views* views, uint64_t seq, const log::Hash& hash, const fb::Event& event,
                    PreImages* before) {
  CL_ASSERT(views != nullptr);
  // Invariant: views hold a prefix of the log, so events arrive one seq at a time.
  CL_ASSERT(seq == views->seq + 1);
  // A verified event always has a payload table for its type, but a type this build knows
  // whose table is absent would be a null dereference below; the log's verifier rules it out.
  if (event.payload() != nullptr) {
    Reducer reducer(views, Stamp{seq, event.time_ns()}, before);
    reducer.CollectExpiredSessions();
    reducer.Dispatch(event);
  }
  views->seq = seq;
  views->hash = hash;
}

void Apply(Views* views, uint64_t seq, const log::Hash& hash, const fb::Event& event) {
  ApplyRecording(views, seq, hash, event, nullptr);
}

const Template* FindTemplate(const Views& views, const std::string& id_or_name) {
  const auto& templates = views.templates.templates;
  if (auto by_id = templates.find(id_or_name); by_id != templates.end()) {
    return &by_id->second;
  }
  for (const auto& [id, t] : templates) {
    if (t.name == id_or_name) {
      return &t;
    }
  }
  return nullptr;
}

const StoredPolicy* EffectivePolicy(const Views& views, const VmInstance& vm) {
  const auto& attachments = views.policy_attachments.attachments;
  if (attachments.empty()) {
    return nullptr;
  }
  for (const std::string& key : {"instance/" + vm.instance_id, "template/" + vm.vmid}) {
    auto attached = attachments.find(key);
    if (attached != attachments.end() && !attached->second.policy_id.empty()) {
      auto policy = views.policies.policies.find(attached->second.policy_id);
      return policy == views.policies.policies.end() ? nullptr : &policy->second;
    }
  }
  return nullptr;
}

}  // namespace cloister::reducers
