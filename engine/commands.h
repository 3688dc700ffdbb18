// Commands: what a client asks the engine to change. Each becomes zero or more events, or a
// Rejection. Commands carry plain values (already parsed from JSON by api/); the engine validates
// every field itself, since api/ is not trusted to have done so.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "log/events_generated.h"
#include "log/hash.h"

namespace cloister::engine {

// PUT /api/v1/config: set one or more settings, all or nothing. A key set to its current value
// records no event.
struct SetConfig {
  std::vector<std::pair<std::string, std::string>> changes;  // key, value (canonical text).
};

struct CreateNodeGroup {
  std::string name;
  std::string description;
  std::string fallback_group_id;  // Empty: none.
};

struct UpdateNodeGroup {
  std::string group_id;
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::optional<std::string> fallback_group_id;
};

struct DeleteNodeGroup {
  std::string group_id;
};

struct JoinNode {
  std::string node_id;  // Empty: the engine assigns one.
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
  std::vector<std::string> groups;  // Node group ids; each must exist.
  bool drain_mode = false;
  std::string agent_version = {};
  uint64_t free_disk_space_mb = 0;
};

struct RemoveNode {
  std::string node_id;
  std::string reason;
};

struct VmPortForward {
  uint16_t guest_port = 0;
  uint16_t host_port = 0;  // 0: the node picks one.
  std::string protocol;    // "tcp" or "udp".
  std::string name;
};

struct RequestVm {
  std::string vmid;  // Template id.
  std::string tag;
  int32_t version = -1;  // -1: the tag (or the latest).
  std::string name;
  std::string name_template;
  std::string group_id;  // Node group id. Empty: any node.
  std::string node_id;   // Empty: any node.
  // Resource management on: the permission group the instance runs for (node groups are then
  // off: group_id must be empty). api/ checks the requester may act for it.
  std::string permission_group = {};
  std::string external_id;
  uint32_t priority = 1000;  // 1..10000, lower is more urgent.
  uint32_t count = 1;
  std::string startup_script;  // Base64, as the client sent it.
  int32_t startup_script_condition = 0;
  bool script_monitoring = false;
  int32_t script_timeout = 0;
  int32_t script_fail_handler = 0;
  std::string metadata_json;
  uint32_t vcpu = 0;
  uint64_t vram_mb = 0;
  std::vector<VmPortForward> port_forwarding_override;
  bool vnc_password_set = false;  // The password itself never reaches the engine.
};

struct ChangeVmState {
  std::string instance_id;
  fb::VmState state = fb::VmState::Scheduling;
  std::string message;
  float progress = 0;
  std::string node_id;
  std::string vm_uuid;
  std::string ip;
  uint16_t vnc_port = 0;
  uint64_t report_seq = 0;  // The agent's report number; one at or below the node's last is a
                            // resend and records nothing. 0: not from an agent report.
  bool script_done = false;  // The startup script ran: its exit code and output.
  int32_t script_exit_code = 0;
  std::string script_output = {};
};

struct TerminateVm {
  std::string instance_id;
  std::string reason;
};

// A node's status report (from its agent) or an operator's state change (drain mode), and the
// controller's own Offline mark when heartbeats stop. Recorded as NodeUpdated.
struct UpdateNodeStatus {
  std::string node_id;
  fb::NodeState state = fb::NodeState::Active;
  uint32_t vm_count = 0;
  std::optional<std::vector<std::string>> templates;  // Absent: unchanged.
  std::string message;
};

// Adds (member) or removes every node in node_ids to or from every group in group_ids
// (POST/DELETE /api/v1/node/group). All named groups and nodes must exist; pairs already in the
// wanted state record nothing.
struct ChangeGroupMembership {
  std::vector<std::string> group_ids;
  std::vector<std::string> node_ids;
  bool member = true;
};

// One scheduler pass (engine/scheduler.h): places up to max_placements waiting instances.
// Placements are VmInstanceScheduled events; a pass with nothing to place appends nothing.
struct ScheduleVms {
  uint32_t max_placements = 1000;
  bool resource_management = false;  // Place by resource permissions (engine/scheduler.h).
};

// PUT /api/v1/vm?id=: absent fields are unchanged, present empty ones clear the field.
struct UpdateVm {
  std::string instance_id;
  std::optional<std::string> name;
  std::optional<std::string> external_id;
  std::optional<std::string> metadata_json;
};

// POST /api/v1/rpc/vm/restart: the node stops and starts the VM once. Started or Stopped only.
struct RestartVm {
  std::string instance_id;
};

// POST /api/v1/node/config: absent fields keep their value.
struct ConfigureNode {
  std::string node_id;
  std::optional<std::string> node_name;
  std::optional<uint32_t> capacity;  // max_vm_count.
  std::optional<std::string> capacity_mode;
  std::optional<uint32_t> vcpu_override;
  std::optional<uint64_t> ram_override_mb;
  std::optional<bool> drain_mode;
};

// PUT /api/v1/node/update: every agent reloads its credentials.
struct RequestNodeUpdate {
  std::string reason;
};

// A blob or manifest a pushed manifest refers to.
struct ManifestReference {
  std::string digest;
  uint64_t size = 0;
  std::string media_type;
};

// PUT /v2/<repository>/manifests/<reference>: a manifest whose bytes the registry has made
// durable (registry/blob_store.h) joins a template. repository names the template by id or name;
// an unknown one creates a template of that name. Every reference must be a blob the registry
// holds (the registry checks the disk) or, for an index, a manifest of this template (checked
// here). A tag the template has is refused unless it names this very manifest (tags are
// immutable: revert first); then nothing is recorded.
struct PushManifest {
  std::string repository;
  std::string digest;
  std::string media_type;
  uint64_t size = 0;
  std::vector<ManifestReference> references;
  std::string tag;  // Empty: pushed by digest.
  std::string description;
};

// Content leaves a template (template names it by id or name):
//  - kRevert: the tag named by tag, or by version number, or (neither) the newest, and every tag
//    pushed after it; their manifests go too unless another remaining tag names them.
//  - kDeleteManifest: the manifest digest and every tag naming it; refused while an index of
//    the template refers to it.
//  - kDeleteTemplate: all of it.
struct RemoveTemplateContent {
  enum class Mode : uint8_t { kRevert, kDeleteManifest, kDeleteTemplate };
  Mode mode = Mode::kRevert;
  std::string template_ref;
  std::string tag;
  std::optional<int32_t> version;
  std::string digest;
};

// A separate registry's whole catalogue, as the controller that follows it read it
// (api/cloisterd/registry_probe.h). Events only for differences from the view: a template new or
// changed (name, or any tag's name, number, description, digest or time) becomes one
// TemplateMirrored; a mirrored template the catalogue lacks is removed. Templates not learnt by
// mirroring are left alone. The same catalogue again records nothing.
struct MirroredTemplateTag {
  std::string tag;
  int32_t version = 0;
  std::string description;
  std::string digest;  // "sha256:..." or empty.
  int64_t created_ns = 0;
};

struct MirroredTemplate {
  std::string template_id;  // The registry's id.
  std::string name;
  std::vector<MirroredTemplateTag> tags;  // In the registry's order.
};

struct MirrorRegistryTemplates {
  std::vector<MirroredTemplate> templates;
};

// POST /api/v1/registry/vm/distribute (action "distribute": the nodes pull the template's tag;
// an empty tag means the newest) or DELETE /api/v1/registry/vm/remove ("remove": the nodes
// delete their copy; an empty tag means every tag). node_ids empty: every node.
struct RequestDistribution {
  std::string action;
  std::string template_id;
  std::string tag;
  std::vector<std::string> node_ids;
};

// A node's agent reports progress on a distribution request naming it.
struct ReportDistribution {
  std::string request_id;
  std::string node_id;
  std::string status;  // "in_progress", "done" or "error".
  uint8_t progress = 0;
  std::string message;
};

// DELETE /api/v1/registry/vm/distribute: forget the named requests, or (none named) every request
// whose nodes all finished.
struct ClearDistributions {
  std::vector<std::string> request_ids;
};

// PUT /file?path=: the registry made the bytes durable as blob digest (registry/blob_store.h);
// path now names them (replacing what it named). path must pass FilePathProblem.
struct StoreFile {
  std::string path;
  std::string digest;
  uint64_t size = 0;
};

// DELETE /file?path=: path names nothing any more. kNotFound if it names nothing now.
struct DeleteFile {
  std::string path;
};

// Why path is not a file server path, or "" when it is one: relative ("a/b.txt"), at most
// kFilePathBytesMax bytes and kFilePathSegmentsMax segments, no empty, "." or ".." segment, no
// backslash, no NUL or other control character. The message never repeats the path.
std::string FilePathProblem(std::string_view path);

// POST /api/v1/image: save a running instance's VM as a new tag of target_vm_id, or as a new
// template named new_template_name (exactly one of the two). Pending until the node finishes.
struct RequestSaveImage {
  std::string instance_id;
  std::string target_vm_id;
  std::string new_template_name;
  std::string tag;
  std::string description;
  bool suspend = false;
  std::string revert_tag;
  std::string script;  // Base64.
  // A pure copy (`clone --copy`): the saved template does not keep the instance's policy. If
  // the instance has one, approval must be a document signed with `policy sign` by one of its
  // administrators, holding the line "copy: <instance_id>".
  bool copy = false;
  std::string approval = {};
};

// The node's outcome for a save-image request. The node pushed the image first (the push
// recorded the tag, ManifestPushed); the request is done only if the target template (or the
// one named new_template_name) holds the request's tag with this digest, else error.
struct FinishSaveImage {
  std::string request_id;
  std::string node_id;  // The reporting node: must be the one holding the instance.
  bool ok = false;
  std::string message;
  // The manifest the node pushed to the registry as the request's tag. ok without a digest
  // saved nothing: the request finishes as error and no tag is recorded (the content-less
  // TemplateTagRegistered of the pre-registry stand-in is no longer made).
  std::string digest = {};
};

// A request that failed authentication (AuthenticationFailed). Never holds the credential.
struct RecordAuthFailure {
  fb::AuthMethod method = fb::AuthMethod::Unknown;
  std::string claimed_id;
  std::string reason;
  std::string source_ip;
};

// POST /api/v1/apikey: a user API key (UAK). api/ has parsed or generated the key pair; only the
// public half reaches the engine (and the log).
struct CreateApiKey {
  std::string key_id;
  std::string public_key_der;  // PKIX (SubjectPublicKeyInfo) DER of an RSA public key.
  std::vector<std::string> groups;
  int64_t ttl_s = 0;           // Seconds from now until the key expires; > 0.
  std::string description = {};
};

// PUT /api/v1/apikey: groups and/or a new ttl (from now). The public key cannot change.
struct UpdateApiKey {
  std::string key_id;
  std::optional<std::vector<std::string>> groups;
  std::optional<int64_t> ttl_s;
};

// DELETE /api/v1/apikey: the key and every session of it end.
struct DeleteApiKey {
  std::string key_id;
};

// A completed TAP handshake. Digests are HMAC-SHA256 under the server key: neither the session id
// nor the token reaches the engine.
struct OpenSession {
  std::string key_id;
  log::Hash session_digest{};
  log::Hash token_digest{};
  int64_t ttl_ns = 0;
};

// POST /api/v1/revoke: a session (by its digest), a key, or a certificate serial, at once.
struct RevokeSession {
  log::Hash session_digest{};
  std::string reason;
};
struct RevokeKey {
  std::string key_id;
  std::string reason;
};
struct RevokeCertificate {
  std::string serial_hex;  // CertificateAuthority::NormalizeSerial form: upper-case hex bytes.
  std::string issuer;
  std::string reason;
};

// ANKA_CRL was (re)loaded and verified.
struct RecordCrlLoaded {
  log::Hash crl_sha256{};
  std::string issuer;
  int64_t this_update_ns = 0;
  int64_t next_update_ns = 0;
  uint32_t revoked_count = 0;
  std::string source;
};

// ---- Authorization (issue 6) ------------------------------------------------------------------
// Permission groups are identified by (component, name). Names (groups, principals) hold letters,
// digits, the characters - _ . @ and spaces, 1..kIdBytesMax bytes. Permission names are checked
// against engine/permissions.h and recorded in canonical form.

struct CreatePermissionGroup {
  std::string component;  // "controller" or "registry".
  std::string name;
  std::string description = {};
  std::vector<std::string> permissions = {};  // Group permissions of component.
};

// Absent fields are unchanged; permissions, when present, is the whole new set.
struct UpdatePermissionGroup {
  std::string component;
  std::string name;
  std::optional<std::string> description = {};
  std::optional<std::vector<std::string>> permissions = {};
};

// Also removes the group's grants on its component's resources (reducers/views.h).
struct DeletePermissionGroup {
  std::string component;
  std::string name;
};

// What principal (a permission group or a user name) may do to one node or template: the whole
// set; an empty one removes the grant. A node is named by its id; a template by its id or its
// name (recorded as its id). Removing a grant does not need the resource to still exist.
struct SetResourcePermissions {
  std::string resource_type;  // "node" or "template".
  std::string resource_id;
  std::string principal;
  std::vector<std::string> permissions = {};
};

// A request that authorization refused (AccessDenied). The actor is the principal denied.
struct RecordAccessDenied {
  std::string permission;
  std::string resource_type = {};
  std::string resource_id = {};
  std::string method = {};
  std::string path = {};
  std::string source_ip = {};
};

// POST /api/v1/policy: a VM policy's whole chain of signed events as the policy tool wrote it
// (engine/policy_chain.h). A new policy_id records them all; a known one records the events past
// the stored ones, which must be a prefix of signed_events (a policy only grows, and only by
// events its administrators signed: nobody, root included, can forge or rewrite one).
struct PutPolicy {
  std::string policy_id;
  std::vector<std::string> signed_events;
};

// Attaches policy_id to a template or an instance, or detaches (policy_id empty) what is
// attached.
struct ChangePolicyAttachment {
  std::string target_type;  // "template" or "instance".
  std::string target_id;
  std::string policy_id;
};

using Command = std::variant<SetConfig, CreateNodeGroup, UpdateNodeGroup, DeleteNodeGroup, JoinNode,
                             RemoveNode, RequestVm, ChangeVmState, TerminateVm, UpdateNodeStatus,
                             ScheduleVms, ChangeGroupMembership, UpdateVm, RestartVm,
                             ConfigureNode, RequestNodeUpdate, RequestSaveImage,
                             FinishSaveImage, RecordAuthFailure, CreateApiKey,
                             UpdateApiKey, DeleteApiKey, OpenSession, RevokeSession, RevokeKey,
                             RevokeCertificate, RecordCrlLoaded, CreatePermissionGroup,
                             UpdatePermissionGroup, DeletePermissionGroup, SetResourcePermissions,
                             RecordAccessDenied, PutPolicy, ChangePolicyAttachment, PushManifest,
                             RemoveTemplateContent, RequestDistribution, ReportDistribution,
                             ClearDistributions, MirrorRegistryTemplates, StoreFile,
                             DeleteFile>;

// The Anka instance state machine: may an instance in `from` move to `to`? Staying in the same
// state (a progress or message update) is allowed, except once Terminated.
bool VmTransitionAllowed(fb::VmState from, fb::VmState to);

// The state whose flatbuffers name is name ("Started", "DrainMode"); nullopt for none.
std::optional<fb::VmState> VmStateFromName(std::string_view name);
std::optional<fb::NodeState> NodeStateFromName(std::string_view name);

// "set_config", "create_node_group", ...
const char* CommandName(const Command& command);

}  // namespace cloister::engine
