// Views: the state cloister derives from its event log, and the pure reducer that builds them.
//
// A view is a value: plain structs in ordered containers (std::map / std::set / std::vector),
// never unordered ones, so that iteration order and therefore every encoding of a view is a
// function of the events alone. Apply() is the only code that changes a view.
//
// Apply is pure and deterministic: it reads nothing but the view and the event (time comes from
// the event envelope), it never logs, allocates ids, reads a clock or does I/O. It is total: an
// event that names something the view does not hold (an update for an unknown node, a state
// change for an unknown instance) changes nothing but views.seq; it never crashes on the content
// of a verified event. Validation of commands is the engine's job, not the reducer's.
//
// Thread-safety: a Views value is not synchronised; one thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "log/events_generated.h"
#include "log/hash.h"

namespace cloister::reducers {

// When and by whom an entity was last touched: copied from the event envelope.
struct Stamp {
  uint64_t seq = 0;
  int64_t time_ns = 0;

  bool operator==(const Stamp&) const = default;
};

// ---- config ---------------------------------------------------------------------------------

struct ConfigEntry {
  std::string value;        // Empty for a secret setting.
  bool secret = false;      // The event carried value_digest instead of value.
  log::Hash value_digest{};
  Stamp changed;

  bool operator==(const ConfigEntry&) const = default;
};

struct ConfigView {
  std::map<std::string, ConfigEntry> entries;  // By key.

  bool operator==(const ConfigView&) const = default;
};

// ---- nodes ----------------------------------------------------------------------------------

// Who acted: the Actor of an event, as a view keeps it.
struct Credential {
  fb::ActorKind kind = fb::ActorKind::Unknown;
  std::string id;                   // "root", a key id, a certificate CN.
  std::vector<std::string> groups;  // As the actor held them when it acted.

  bool operator==(const Credential&) const = default;
};

struct Node {
  std::string node_id;
  std::string node_name;
  std::string ip_address;
  uint32_t cpu_count = 0;
  uint64_t ram_mb = 0;
  uint32_t vcpu_count = 0;
  uint64_t vram_mb = 0;
  uint32_t capacity = 0;
  std::string capacity_mode;
  std::string arch;
  std::string hypervisor;
  std::string agent_version;
  uint64_t free_disk_space_mb = 0;  // As the node reported at its last join.
  fb::NodeState state = fb::NodeState::Offline;
  uint32_t vm_count = 0;
  std::vector<std::string> templates;
  std::string message;
  std::set<std::string> groups;  // Node group ids.
  // Operator's configuration (NodeJoined, NodeConfigured): overrides 0 mean the node's own.
  bool drain_mode = false;
  uint32_t vcpu_override = 0;
  uint64_t ram_override_mb = 0;
  uint64_t update_seq = 0;       // The last NodeAgentsUpdateRequested (agents reload credentials).
  uint64_t last_report_seq = 0;  // The highest agent report number recorded (dedups resends).
  Credential credential;  // Who joined it (its last NodeJoined's actor): resource management
                          // places instances by the node's credential (engine/scheduler.h).
  Stamp joined;
  Stamp updated;

  bool operator==(const Node&) const = default;
};

struct NodesView {
  std::map<std::string, Node> nodes;  // By node_id.

  bool operator==(const NodesView&) const = default;
};

// ---- node groups ----------------------------------------------------------------------------

struct NodeGroup {
  std::string group_id;
  std::string name;
  std::string description;
  std::string fallback_group_id;
  std::set<std::string> node_ids;
  Stamp created;
  Stamp updated;

  bool operator==(const NodeGroup&) const = default;
};

struct NodeGroupsView {
  std::map<std::string, NodeGroup> groups;  // By group_id.

  bool operator==(const NodeGroupsView&) const = default;
};

// ---- VM instances ---------------------------------------------------------------------------

struct PortForward {
  uint16_t guest_port = 0;
  uint16_t host_port = 0;
  std::string protocol;
  std::string name;

  bool operator==(const PortForward&) const = default;
};

struct VmInstance {
  // From VmInstanceRequested.
  std::string instance_id;
  std::string vmid;
  std::string tag;
  int32_t version = -1;
  std::string name;
  std::string name_template;
  std::string external_id;
  std::string requested_node_id;
  std::string group_id;
  std::string permission_group;  // Resource management: the group it was started for.
  uint32_t priority = 1000;
  std::string startup_script;
  int32_t startup_script_condition = 0;
  bool script_monitoring = false;
  int32_t script_timeout = 0;
  int32_t script_fail_handler = 0;
  std::string metadata_json;
  uint32_t vcpu = 0;
  uint64_t vram_mb = 0;
  std::vector<PortForward> port_forwarding_override;
  bool vnc_password_set = false;
  // From VmInstanceScheduled / VmInstanceStateChanged / VmInstanceTerminated.
  fb::VmState state = fb::VmState::Scheduling;
  std::string message;
  float progress = 0;
  std::string node_id;
  std::string vm_uuid;
  std::string ip;
  uint16_t vnc_port = 0;
  std::string terminated_reason;
  uint64_t restart_seq = 0;  // The last VmInstanceRestartRequested (0: never).
  bool script_done = false;  // The startup script's outcome, once reported.
  int32_t script_exit_code = 0;
  std::string script_output;
  Stamp created;
  Stamp updated;

  bool operator==(const VmInstance&) const = default;
};

struct VmInstancesView {
  std::map<std::string, VmInstance> instances;  // By instance_id.

  bool operator==(const VmInstancesView&) const = default;
};

// ---- templates ------------------------------------------------------------------------------

struct TemplateTag {
  std::string tag;
  // Numbered in push order from 0: one more than the newest tag before it, so a number is never
  // given to two tags that exist at once (a revert frees the numbers it removed).
  int32_t version = 0;
  std::string description;
  Stamp registered;
  // The tag's manifest; empty for a tag without content (an older log's TemplateTagRegistered,
  // or a mirror of such a tag).
  std::string digest;

  bool operator==(const TemplateTag&) const = default;
};

// A blob or manifest a manifest refers to.
struct RegistryReference {
  std::string digest;
  uint64_t size = 0;
  std::string media_type;

  bool operator==(const RegistryReference&) const = default;
};

// A manifest stored in a template's repository (its bytes are a blob on disk).
struct StoredManifest {
  std::string digest;
  std::string media_type;
  uint64_t size = 0;
  std::vector<RegistryReference> references;
  Stamp pushed;

  bool operator==(const StoredManifest&) const = default;
};

struct Template {
  std::string template_id;
  std::string name;
  std::vector<TemplateTag> tags;  // In version (push) order.
  std::map<std::string, StoredManifest> manifests;  // By digest.
  Stamp created;
  Stamp updated;
  // Learnt from a separate registry's catalogue (TemplateMirrored): the follower removes it when
  // that registry no longer lists it, and leaves every other template alone.
  bool mirrored = false;

  bool operator==(const Template&) const = default;
};

struct TemplatesView {
  std::map<std::string, Template> templates;  // By template_id.

  bool operator==(const TemplatesView&) const = default;
};

// ---- distributions ------------------------------------------------------------------------

// One node's part in a distribution request.
struct DistributionNode {
  std::string node_id;
  std::string status = "pending";  // "pending", "in_progress", "done" or "error".
  uint8_t progress = 0;            // Percent.
  std::string message;
  Stamp updated;

  bool operator==(const DistributionNode&) const = default;
};

// Nodes asked to pull a template's tag ahead of use ("distribute") or to delete their copy
// ("remove").
struct Distribution {
  std::string request_id;
  std::string action;
  std::string template_id;
  std::string tag;
  std::map<std::string, DistributionNode> nodes;  // By node_id.
  Stamp created;
  Stamp updated;

  bool operator==(const Distribution&) const = default;
};

struct DistributionsView {
  std::map<std::string, Distribution> requests;  // By request_id.

  bool operator==(const DistributionsView&) const = default;
};

// ---- central files ------------------------------------------------------------------------

// A file of the registry's file server (PUT /file): its bytes are the blob digest in the blob
// store, outside the log.
struct StoredFile {
  std::string path;
  std::string digest;
  uint64_t size = 0;
  std::string stored_by;  // The actor id of the upload ("root", a key id, a certificate's CN).
  Stamp stored;

  bool operator==(const StoredFile&) const = default;
};

struct FilesView {
  std::map<std::string, StoredFile> files;  // By path.

  bool operator==(const FilesView&) const = default;
};

// ---- save-image requests --------------------------------------------------------------------

enum class SaveImageStatus : uint8_t { kPending = 0, kDone = 1, kError = 2 };

struct SaveImage {
  std::string request_id;
  std::string instance_id;
  std::string target_vm_id;       // A new tag of this template ...
  std::string new_template_name;  // ... or a new template with this name.
  std::string tag;
  std::string description;
  bool suspend = false;
  std::string revert_tag;
  std::string script;
  bool copy = false;                // A pure copy: the result keeps no policy.
  std::string copy_approved_by;     // The policy administrator who signed the approval.
  SaveImageStatus status = SaveImageStatus::kPending;
  std::string message;      // From SaveImageFinished.
  std::string result_vmid;  // The template the image landed in, once done.
  Stamp created;
  Stamp updated;

  bool operator==(const SaveImage&) const = default;
};

struct SaveImagesView {
  std::map<std::string, SaveImage> requests;  // By request_id.

  bool operator==(const SaveImagesView&) const = default;
};

// ---- API keys (UAK) ------------------------------------------------------------------------

struct ApiKey {
  std::string key_id;
  std::string description;
  std::string public_key_pem;        // Public only: the private key is never recorded.
  log::Hash public_key_fingerprint{};
  std::vector<std::string> groups;
  int64_t expires_ns = 0;            // 0: never.
  bool enabled = true;               // False once revoked (KeyRevoked): TAP refuses it.
  Stamp created;
  Stamp updated;
  bool operator==(const ApiKey&) const = default;
};

struct ApiKeysView {
  std::map<std::string, ApiKey> keys;  // By key_id.
  bool operator==(const ApiKeysView&) const = default;
};

// ---- TAP sessions ---------------------------------------------------------------------------

struct Session {
  std::string session_digest;  // Hex of HMAC(server key, session id): never the id itself.
  std::string key_id;
  log::Hash token_digest{};    // HMAC(server key, session token).
  int64_t expires_ns = 0;
  Stamp created;
  Stamp updated;
  bool operator==(const Session&) const = default;
};

struct SessionsView {
  std::map<std::string, Session> sessions;  // By session_digest (hex).
  // (expires_ns, session_digest) of every session: derived from sessions, kept so that collecting
  // the expired ones costs nothing while there are none.
  std::set<std::pair<int64_t, std::string>> by_expiry;
  bool operator==(const SessionsView&) const = default;
};

// ---- certificate revocations ----------------------------------------------------------------

struct CertificateRevocation {
  std::string serial_hex;  // Upper-case hex, as `openssl x509 -serial` prints it.
  std::string issuer;
  std::string reason;
  Stamp created;
  Stamp updated;
  bool operator==(const CertificateRevocation&) const = default;
};

struct RevocationsView {
  std::map<std::string, CertificateRevocation> certificates;  // By serial_hex.
  bool operator==(const RevocationsView&) const = default;
};

// ---- authorization (issue 6) ----------------------------------------------------------------

// A permission group of one component. Groups are identified by (component, name): the view's
// key, and the events' group_id, is "component/name".
struct PermissionGroup {
  std::string component;  // "controller" or "registry".
  std::string name;
  std::string description;
  std::set<std::string> permissions;  // Canonical group permission names (engine/permissions.h).
  Stamp created;
  Stamp updated;
  bool operator==(const PermissionGroup&) const = default;
};

struct PermissionGroupsView {
  std::map<std::string, PermissionGroup> groups;  // By "component/name".
  bool operator==(const PermissionGroupsView&) const = default;
};

// What one principal (a permission group name or a user name) may do to one node or template.
struct ResourceGrant {
  std::string resource_type;  // "node" or "template".
  std::string resource_id;    // A node id or a template id.
  std::string principal;
  std::set<std::string> permissions;  // Resource permission names; never empty in the view.
  Stamp created;
  Stamp updated;
  bool operator==(const ResourceGrant&) const = default;
};

struct ResourcePermissionsView {
  std::map<std::string, ResourceGrant> grants;  // By "type/id/principal".
  bool operator==(const ResourcePermissionsView&) const = default;
};

// ---- VM policies ------------------------------------------------------------------------------

// A policy as the controller holds it: its signed events (engine/policy_chain.h validated them
// before they were recorded). The user database is derived on demand (reducers/policy_view.h).
struct StoredPolicy {
  std::string policy_id;
  std::vector<std::string> events;  // Signed policy events, in chain order.
  std::string head_hash;            // Of the last event (PolicyChain::HeadHash).
  Stamp created;
  Stamp updated;

  bool operator==(const StoredPolicy&) const = default;
};

struct PoliciesView {
  std::map<std::string, StoredPolicy> policies;  // By policy_id.

  bool operator==(const PoliciesView&) const = default;
};

// A policy attached to a template or an instance (an instance's own wins over its template's).
struct PolicyAttachment {
  std::string target_type;  // "template" or "instance".
  std::string target_id;
  std::string policy_id;  // Empty: detached.
  Stamp created;
  Stamp updated;

  bool operator==(const PolicyAttachment&) const = default;
};

struct PolicyAttachmentsView {
  std::map<std::string, PolicyAttachment> attachments;  // By "type/id".

  bool operator==(const PolicyAttachmentsView&) const = default;
};

struct Views;
// The template id_or_name names: the one with that id, else the one with that name (the
// registry's repositories are named either way); nullptr for none.
const Template* FindTemplate(const Views& views, const std::string& id_or_name);

// The policy that governs an instance: the one attached to it, else its template's (an empty
// attachment is a detach); nullptr for none.
const StoredPolicy* EffectivePolicy(const Views& views, const VmInstance& vm);

// ---- all views ------------------------------------------------------------------------------

struct Views {
  uint64_t seq = 0;    // The last event applied; 0 for the empty log.
  log::Hash hash{};    // hash(seq) of the log the views were built from (zero for seq 0).
  ConfigView config;
  NodesView nodes;
  NodeGroupsView node_groups;
  VmInstancesView vm_instances;
  TemplatesView templates;
  SaveImagesView save_images;
  ApiKeysView api_keys;
  SessionsView sessions;
  RevocationsView revocations;
  PermissionGroupsView permission_groups;
  ResourcePermissionsView resource_permissions;
  PoliciesView policies;
  PolicyAttachmentsView policy_attachments;
  DistributionsView distributions;
  FilesView files;
  // The seq of the last event that changed permission_groups or resource_permissions (0: none):
  // a generation number that caches of authorization decisions compare (engine/authorization.h).
  uint64_t authz_seq = 0;

  bool operator==(const Views&) const = default;
};

// The view names the replay tool and snapshots use, in this order.
inline constexpr const char* kViewNames[] = {
    "config",      "nodes",       "node_groups",       "vm_instances",        "templates",
    "save_images", "api_keys",    "sessions",          "revocations",         "permission_groups",
    "resource_permissions", "policies", "policy_attachments", "distributions",
    "files"};

// Applies one verified event. Precondition: seq == views->seq + 1. Sets views->seq = seq and
// views->hash = hash. Payload types that no view of this issue uses change only seq and hash.
//
// What each payload does (the stamp is {seq, event.time_ns()}; an event whose identifying id is
// absent or empty, or that names an entity the views do not hold, changes only seq and hash):
//  * ConfigChanged: sets entries[key]. A value_digest that is present and not all zeros makes the
//    entry secret (value empty, digest kept); otherwise value is the event's value.
//  * NodeJoined: creates or replaces the node (a rejoin first leaves its old groups, and keeps
//    vcpu_override, ram_override_mb, update_seq and last_report_seq); its groups are the named
//    groups that exist, and the node is added to their node_ids. The event's actor becomes the
//    node's credential.
//  * NodeUpdated: state and vm_count always (they are the node's status report; absent reads as
//    Offline / 0); node_name, capacity_mode and message when non-empty; capacity when non-zero;
//    templates when the vector is present (an empty one says the node holds none).
//  * NodeRemoved: erases the node and removes it from its groups' node_ids.
//  * NodeGroupCreated: creates the group (a repeated id replaces its fields, keeps its members).
//  * NodeGroupUpdated: sets name, description and fallback_group_id when present (an empty string
//    clears the field).
//  * NodeGroupDeleted: erases the group and removes its id from its nodes' groups.
//  * NodeGroupMembershipChanged: adds (member) or removes both sides, only if both exist.
//  * VmInstanceRequested: creates (or replaces) the instance in state Scheduling.
//  * VmInstanceScheduled: sets node_id.
//  * VmInstanceStateChanged: state always; message, node_id, vm_uuid and ip when non-empty;
//    progress and vnc_port when non-zero (a report that does not know where the VM runs must not
//    erase it).
//  * VmInstanceTerminated: state Terminated and terminated_reason.
//  * VmInstanceStateChanged with a report_seq also raises its node's last_report_seq to it;
//    with script_done it sets script_done, script_exit_code and script_output.
//  * VmInstanceUpdated: name, external_id and metadata_json when present (empty clears).
//  * VmInstanceRestartRequested: restart_seq = seq.
//  * NodeJoined: drain_mode from the event. NodeConfigured: node_name, capacity, capacity_mode,
//    vcpu_override, ram_override_mb and drain_mode, all of them (the event is the whole config).
//  * NodeAgentsUpdateRequested: every node's update_seq = seq.
//  * TemplateTagRegistered (only in older logs: a save image finished without a pushed manifest,
//    and the removed admin stand-in; no longer made, kept so those logs replay): creates the
//    template (name when non-empty) and appends the tag; a tag the template already has is
//    replaced in place (its version kept).
//  * ManifestPushed: creates the template (name when non-empty), stores the manifest under its
//    digest, and with a tag appends it (version from the event; a tag the template has is
//    replaced in place, its version kept).
//  * TemplateContentRemoved: erases the named tags and manifests; with template_removed the
//    template itself (and its attachment stays, naming nothing).
//  * TemplateMirrored: with removed, erases the template; otherwise creates or updates it
//    (mirrored, name when non-empty) and replaces its tags with the event's, each registered at
//    {seq, created_ns}; its manifests are left as they were.
//  * DistributionRequested: creates the request with each named node pending.
//    DistributionProgressed: sets that node's status, progress and message (for a node the
//    request names). DistributionsCleared: erases the named requests.
//  * FileStored: sets files[path] (digest, size, stored_by = the actor's id, stored = stamp).
//    FileDeleted: erases files[path]. An empty path changes nothing.
//  * SaveImageRequested: creates the request (keyed by request_id), status pending.
//  * SaveImageFinished: status done (ok) or error, message, result_vmid = vmid.
//  * ApiKeyCreated: creates (or replaces) the key, enabled. ApiKeyUpdated: groups and expires_ns
//    (the event is the whole new setting) and enabled. ApiKeyDeleted and KeyRevoked: the key is
//    erased (deleted) or disabled (revoked), and every session of it is erased.
//  * SessionOpened: creates the session (for a key the view holds). SessionClosed and
//    SessionRevoked: erase it.
//  * Every event first erases the sessions whose expires_ns is at or before the event's time:
//    expired sessions are collected as the log moves on, with no event of their own (their
//    SessionOpened already says when they end).
//  * CertificateRevoked: records the serial (a later revocation of it replaces the reason).
//  * PermissionGroupCreated: creates (or replaces) permission_groups["component/name"] (component
//    absent or empty reads as "controller"; an empty name changes nothing).
//    PermissionGroupUpdated: description and permissions when present (the event carries the
//    whole new state), for a group the view holds. PermissionGroupDeleted: erases the group named
//    by group_id ("component/name"), and every resource grant whose principal is the group's
//    name and whose resource belongs to the group's component: nodes are controller resources,
//    templates registry resources (seed 002), so deleting the controller group "ios" drops the
//    node grants of "ios" and keeps its template grants, which the registry group "ios" (or a
//    user "ios") may still hold.
//  * ResourcePermissionsSet: sets resource_permissions["type/id/principal"]; an empty (or
//    absent) permissions list erases it. Grants are not removed with their node or template (a
//    node that rejoins under its id keeps them); a grant naming nothing grants nothing.
//  * Every PermissionGroup* and ResourcePermissionsSet event sets authz_seq = seq.
//  * PolicyEventsAppended: appends the events to policies[policy_id] (creating it) and sets its
//    head_hash. PolicyAttachmentChanged: sets policy_attachments["type/id"]; an empty policy_id
//    (a detach) is kept as such, for an attachment the view holds, so its updated seq remains.
// Every entity a payload changes gets updated = stamp (and joined/created on creation).
void Apply(Views* views, uint64_t seq, const log::Hash& hash, const fb::Event& event);

// The entities one event touched, as they were before it: std::nullopt for one that did not exist.
// Keys are exactly the entities Apply wrote to, whether or not their value ended up different.
// Used to show what a single event did (`cloister replay --step`) without copying every view.
struct PreImages {
  std::map<std::string, std::optional<ConfigEntry>> config;
  std::map<std::string, std::optional<Node>> nodes;
  std::map<std::string, std::optional<NodeGroup>> node_groups;
  std::map<std::string, std::optional<VmInstance>> vm_instances;
  std::map<std::string, std::optional<Template>> templates;
  std::map<std::string, std::optional<SaveImage>> save_images;
  std::map<std::string, std::optional<ApiKey>> api_keys;
  std::map<std::string, std::optional<Session>> sessions;
  std::map<std::string, std::optional<CertificateRevocation>> revocations;
  std::map<std::string, std::optional<PermissionGroup>> permission_groups;
  std::map<std::string, std::optional<ResourceGrant>> resource_permissions;
  std::map<std::string, std::optional<StoredPolicy>> policies;
  std::map<std::string, std::optional<PolicyAttachment>> policy_attachments;
  std::map<std::string, std::optional<Distribution>> distributions;
  std::map<std::string, std::optional<StoredFile>> files;

  bool empty() const {
    return config.empty() && nodes.empty() && node_groups.empty() && vm_instances.empty() &&
           templates.empty() && save_images.empty() && api_keys.empty() && sessions.empty() &&
           revocations.empty() && permission_groups.empty() && resource_permissions.empty() &&
           policies.empty() && policy_attachments.empty() && distributions.empty() &&
           files.empty();
  }
};

// Apply, also recording into *before (which the caller clears) the pre-image of every entity the
// event touches. before may be null, which is exactly Apply.
void ApplyRecording(Views* views, uint64_t seq, const log::Hash& hash, const fb::Event& event,
                    PreImages* before);

}  // namespace cloister::reducers
