// Authorization: may a principal use a group permission, and which nodes and templates may it use
// with a resource permission? The decision of issue 6 over the permission_groups and
// resource_permissions views; every answer names the rule that made it (for 403 messages and
// GET /api/v1/permissions/explain).
//
// Rules, in order:
//   1. Root (the root token) is always allowed; so is System (cloisterd itself: the scheduler and
//      timers act as System and are not subject to authorization).
//   2. Authorization off (the caller passes the switch: ANKA_ENABLE_CONTROLLER_AUTHORIZATION for
//      the controller, ANKA_ENABLE_REGISTRY_AUTHORIZATION / ANKA_ENABLE_AUTHORIZATION for the
//      registry): every principal is allowed (the seed's "Enterprise" behaviour).
//   3. Group permissions gate: a principal's subjects are its groups plus its own name
//      (permissions may target a user name directly); it holds permission P of component C iff a
//      permission group (C, subject) lists P.
//   4. Resource permissions filter, only with resource management on (which needs authorization
//      on; off, every resource is allowed): a principal may use node or template X with resource
//      permission R iff a grant (X, subject) lists R for one of its subjects. Grants are checked
//      on their own: the caller gates the endpoint with rule 3 first, then filters with rule 4
//      (lists are filtered, not refused). A grant naming a resource the views no longer hold
//      still lists its id: callers intersect with the resources they hold.
//
// Design for speed (issue 6: <= 1 us p50 with 1,000 groups, 10,000 grants and a principal with
// 100 groups; bench/authz_bench.cc measures it):
//   * Permission names are interned to bit positions: a group permission is its index in its
//     component's catalogue (engine/permissions.h; fewer than 64 each), a resource permission its
//     index in its type's list. A group's permissions are one uint64_t.
//   * An index built from the views: per component, group name -> permission bits; per resource
//     type, resource id -> dense number, and principal name -> its grants (number, bits).
//   * A cache of each principal's effective rights, keyed by the principal's identity (kind, name
//     and groups, compared in full on a hit; a 64-bit hash finds the entry): per component the OR
//     of its subjects' bits, with the first subject that granted each bit (for the rule); per
//     resource type (built on first use) resource number -> bits and granting subject.
//     A warm decision is therefore: hash and compare the principal, one bit test (group
//     permission) or two hash lookups (resource permission).
//   * Invalidation: the reducer sets Views::authz_seq to the seq of every event that changes
//     permission groups or grants. Each decision compares it with the seq the index was built
//     at; a change rebuilds the index and empties the cache. The cache holds at most
//     principals_max principals; past it, it is emptied. Only a principal's first 65,534 groups
//     are looked at.
//
// Thread-safety: none. An Authorization reads views owned by one thread (the engine's) and
// mutates its cache on every decision; use it on that thread only.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/permissions.h"
#include "engine/principal.h"
#include "reducers/views.h"

namespace cloister::engine {

// The switches a decision depends on, read by the caller from the configuration.
struct AuthzSwitches {
  bool authorization = false;        // Off: every principal is allowed everything.
  bool resource_management = false;  // Off (or authorization off): every resource is allowed.
};

// Which rule made a decision.
enum class DecisionRule : uint8_t {
  kRoot = 0,                // Allowed: the root token.
  kSystem,                  // Allowed: cloisterd itself.
  kAuthorizationOff,        // Allowed: authorization is off.
  kResourceManagementOff,   // Allowed: resource management is off (resource decisions only).
  kGroupGrants,             // Allowed: a group of the principal grants the permission.
  kPrincipalGrants,         // Allowed: a grant names the principal itself.
  kGrantsListed,            // AllowedResources: the listed ids are those granted (subject: the
                            // principal's name).
  kNotGranted,              // Denied: no group of the principal (nor its name) grants it.
  kUnknownPermission,       // Denied: the permission (or resource type) is not in the catalogue.
};

// The answer to one question, and why.
struct Decision {
  bool allowed = false;
  DecisionRule rule = DecisionRule::kNotGranted;
  const char* permission = "";        // Canonical name (static storage); "" when unknown.
  const char* resource_type = nullptr;  // "node" / "template" for resource decisions.
  std::string subject = {};  // The granting group (kGroupGrants), the principal's name
                             // (kPrincipalGrants, kNotGranted), the unknown name.

  // "root", "authorization off", "group ios grants start_vm", "jenkins holds start_vm directly",
  // "no group of jenkins grants start_vm", "group ios grants node permission create_instance".
  std::string Explain() const;
};

// A group permission resolved once (routes resolve theirs at startup).
struct GroupPermissionRef {
  Component component = Component::kController;
  uint8_t bit = 0;  // Index in GroupPermissions(component).
};

// A resource permission resolved once.
struct ResourcePermissionRef {
  uint8_t type = 0;  // 0: node, 1: template.
  uint8_t bit = 0;   // Index in ResourcePermissions(type).
};

// The resources of one type a principal may use with one resource permission.
struct ResourceSet {
  bool all = false;              // Every resource of the type (rules 1, 2, or 4 off).
  std::vector<std::string> ids;  // Otherwise the granted ids, sorted (possibly none).
  Decision decision;             // allowed iff all or ids is not empty.
};

struct AuthorizationStats {
  uint64_t decisions = 0;
  uint64_t cache_hits = 0;    // Decisions that found the principal cached.
  uint64_t cache_misses = 0;  // ... that computed its rights.
  uint64_t reindexes = 0;     // Index rebuilds (authz_seq changed).
};

class Authorization {
 public:
  // views must outlive this object; it is read on every decision.
  explicit Authorization(const reducers::Views* views, size_t principals_max = 4096);
  ~Authorization();
  Authorization(const Authorization&) = delete;
  Authorization& operator=(const Authorization&) = delete;

  // Name lookups (canonical names and "view_permission_groups"); nullopt for unknown ones.
  static std::optional<GroupPermissionRef> FindGroupPermission(Component component,
                                                               std::string_view name);
  static std::optional<ResourcePermissionRef> FindResourcePermission(std::string_view type,
                                                                     std::string_view name);

  // Rules 1-3: may principal use group permission `permission` of component?
  Decision HasPermission(const Principal& principal, Component component,
                         std::string_view permission, AuthzSwitches switches);
  Decision HasPermission(const Principal& principal, GroupPermissionRef permission,
                         AuthzSwitches switches);

  // Rules 1, 2, 4: may principal use resource (type, id) with resource permission `permission`?
  Decision MayUseResource(const Principal& principal, std::string_view type,
                          std::string_view resource_id, std::string_view permission,
                          AuthzSwitches switches);
  Decision MayUseResource(const Principal& principal, ResourcePermissionRef permission,
                          std::string_view resource_id, AuthzSwitches switches);

  // Rules 1, 2, 4: the resources of type principal may use with `permission`, e.g.
  // AllowedResources(p, "node", "create_instance", s).ids: the nodes it may start VMs on.
  ResourceSet AllowedResources(const Principal& principal, std::string_view type,
                               std::string_view permission, AuthzSwitches switches);

  // Forgets the index and the cache (for views changed without bumping authz_seq: tests).
  void Invalidate();

  const AuthorizationStats& stats() const { return stats_; }

 private:
  struct Index;
  struct Rights;

  // Rules 1 and 2 (and 4's switch when resources): a decision, or nullopt to look further.
  static std::optional<Decision> Bypass(const Principal& principal, AuthzSwitches switches,
                                        bool resources);
  // The principal's rights, cached; the index is rebuilt first if the views moved on.
  Rights& RightsOf(const Principal& principal);
  void BuildResources(Rights* rights, uint8_t type);
  void Reindex();

  const reducers::Views& views_;
  size_t principals_max_;
  std::unique_ptr<Index> index_;
  std::unordered_map<uint64_t, std::unique_ptr<Rights>> cache_;  // By principal hash.
  AuthorizationStats stats_;
};

}  // namespace cloister::engine
