#include "engine/authorization.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <span>
#include <utility>

namespace cloister::engine {
namespace {

constexpr const char* kResourceTypes[] = {"node", "template"};
constexpr size_t kTypes = 2;
constexpr uint16_t kNoSubject = 0xFFFF;
constexpr size_t kGroupsMax = 0xFFFE;  // Groups of one principal looked at; more are ignored.

// Heterogeneous lookup (std::string_view into std::string keys) without a temporary string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

std::optional<uint8_t> TypeIndex(std::string_view type) {
  for (uint8_t i = 0; i < kTypes; i++) {
    if (type == kResourceTypes[i]) {
      return i;
    }
  }
  return std::nullopt;
}

// name -> bit, per component, from the catalogue (plus the seed's other spelling).
const std::unordered_map<std::string_view, uint8_t>& GroupBits(Component component) {
  static const auto* tables = [] {
    auto* t = new std::array<std::unordered_map<std::string_view, uint8_t>, 2>();
    for (Component c : {Component::kController, Component::kRegistry}) {
      auto& table = (*t)[static_cast<size_t>(c)];
      std::span<const PermissionInfo> all = GroupPermissions(c);
      for (size_t i = 0; i < all.size(); i++) {
        table.emplace(all[i].name, static_cast<uint8_t>(i));
      }
      if (auto it = table.find("view_prmission_groups"); it != table.end()) {
        table.emplace("view_permission_groups", it->second);
      }
    }
    return t;
  }();
  return (*tables)[static_cast<size_t>(component)];
}

std::optional<uint8_t> ResourceBit(uint8_t type, std::string_view name) {
  std::span<const char* const> names = ResourcePermissions(kResourceTypes[type]);
  for (size_t i = 0; i < names.size(); i++) {
    if (name == names[i]) {
      return static_cast<uint8_t>(i);
    }
  }
  return std::nullopt;
}

// Up to 8 bytes of s from offset at, little-endian, zero-padded.
uint64_t Load(const char* s, size_t n) {
  uint64_t v = 0;
  if (n >= 8) {
    std::memcpy(&v, s, 8);
    return v;
  }
  for (size_t i = 0; i < n; i++) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
  }
  return v;
}

// A fast hash word for string s at position i: its length and its first and last 8 bytes (all of
// a string up to 16 bytes). Strings that differ only in the middle collide; the cache compares
// in full. Words of different positions are independent (no serial multiply chain), and the
// position makes their sum order-sensitive.
uint64_t Word(const std::string& s, uint64_t i) {
  const size_t n = s.size();
  const uint64_t head = Load(s.data(), n);
  const uint64_t tail = n > 8 ? Load(s.data() + n - 8, 8) : 0;
  uint64_t v = (head ^ (i * 0xC2B2AE3D27D4EB4FULL + n)) * 0x9E3779B97F4A7C15ULL +
               tail * 0x165667B19E3779F9ULL;
  return v ^ (v >> 31);
}

uint64_t PrincipalHash(const Principal& p) {
  uint64_t h = Word(p.name, static_cast<uint64_t>(p.kind) + 0x100);
  for (size_t i = 0; i < p.groups.size(); i++) {
    h += Word(p.groups[i], i);
  }
  h ^= p.groups.size() * 0x27D4EB2F165667C5ULL;
  h *= 0x9E3779B97F4A7C15ULL;
  return h ^ (h >> 32);
}

// a == b, inlined for the short strings group names usually are.
bool SameString(const std::string& a, const std::string& b) {
  const size_t n = a.size();
  if (n != b.size()) {
    return false;
  }
  if (n <= 16) {
    if (Load(a.data(), n) != Load(b.data(), n)) {
      return false;
    }
    return n <= 8 || Load(a.data() + n - 8, 8) == Load(b.data() + n - 8, 8);
  }
  return std::memcmp(a.data(), b.data(), n) == 0;
}

Decision Allow(DecisionRule rule) {
  Decision d;
  d.allowed = true;
  d.rule = rule;
  return d;
}

}  // namespace

// ---- The index and the cache --------------------------------------------------------------

struct Authorization::Index {
  uint64_t authz_seq = 0;
  std::array<StringMap<uint64_t>, 2> group_bits;  // Per component: group name -> bits.
  struct Type {
    StringMap<uint32_t> number;    // Resource id -> dense number.
    std::vector<std::string> ids;  // Dense number -> resource id.
    StringMap<std::vector<std::pair<uint32_t, uint8_t>>> grants;  // Principal -> (number, bits).
  };
  std::array<Type, kTypes> types;
};

struct Authorization::Rights {
  // The key: the principal's identity.
  fb::ActorKind kind = fb::ActorKind::Unknown;
  std::string name;
  std::vector<std::string> groups;
  // Per component: the effective bits, and for each bit the first subject that granted it
  // (an index into groups; groups.size() is the principal's own name).
  std::array<uint64_t, 2> bits{};
  std::array<std::array<uint16_t, 64>, 2> granted_by{};
  // Per resource type, built on first use: resource number -> bits and granting subjects, in an
  // open-addressing table (one probe, usually one cache line, per lookup).
  struct Access {
    uint32_t key = 0;  // Resource number + 1; 0: an empty slot.
    uint8_t bits = 0;
    std::array<uint16_t, 8> granted_by{};
  };
  struct AccessTable {
    std::vector<Access> slots;  // Size a power of two, at least twice the entries.
    size_t Slot(uint32_t number) const {
      return static_cast<size_t>((number * 0x9E3779B97F4A7C15ULL) >> 20) & (slots.size() - 1);
    }
    const Access* Find(uint32_t number) const {
      for (size_t i = Slot(number);; i = (i + 1) & (slots.size() - 1)) {
        if (slots[i].key == number + 1) return &slots[i];
        if (slots[i].key == 0) return nullptr;
      }
    }
    Access* Insert(uint32_t number) {
      for (size_t i = Slot(number);; i = (i + 1) & (slots.size() - 1)) {
        if (slots[i].key == number + 1) return &slots[i];
        if (slots[i].key == 0) {
          slots[i].key = number + 1;
          return &slots[i];
        }
      }
    }
  };
  std::array<bool, kTypes> resources_built{};
  std::array<AccessTable, kTypes> resources;

  bool Is(const Principal& p) const {
    if (kind != p.kind || groups.size() != p.groups.size() || !SameString(name, p.name)) {
      return false;
    }
    for (size_t i = 0; i < groups.size(); i++) {
      if (!SameString(groups[i], p.groups[i])) {
        return false;
      }
    }
    return true;
  }
  // The principal's own name as a subject.
  uint16_t NameIndex() const { return static_cast<uint16_t>(std::min(groups.size(), kGroupsMax)); }
  // The name of subject i.
  const std::string& Subject(uint16_t i) const { return i == NameIndex() ? name : groups[i]; }
  DecisionRule GrantRule(uint16_t i) const {
    return i == NameIndex() ? DecisionRule::kPrincipalGrants : DecisionRule::kGroupGrants;
  }
  // Calls fn(subject name, subject index) for the principal's subjects: its groups, its name.
  template <typename Fn>
  void ForEachSubject(Fn fn) const {
    for (size_t i = 0; i < groups.size() && i < kGroupsMax; i++) {
      fn(groups[i], static_cast<uint16_t>(i));
    }
    if (!name.empty()) {
      fn(name, NameIndex());
    }
  }
};

Authorization::Authorization(const reducers::Views* views, size_t principals_max)
    : views_(*views), principals_max_(principals_max) {}

Authorization::~Authorization() = default;

void Authorization::Invalidate() {
  index_.reset();
  cache_.clear();
}

void Authorization::Reindex() {
  auto index = std::make_unique<Index>();
  index->authz_seq = views_.authz_seq;
  for (const auto& [key, group] : views_.permission_groups.groups) {
    std::optional<Component> component = ComponentFromName(group.component);
    if (!component) {
      continue;
    }
    uint64_t bits = 0;
    const auto& table = GroupBits(*component);
    for (const std::string& permission : group.permissions) {
      if (auto it = table.find(permission); it != table.end()) {
        bits |= uint64_t{1} << it->second;
      }
    }
    index->group_bits[static_cast<size_t>(*component)][group.name] = bits;
  }
  for (const auto& [key, grant] : views_.resource_permissions.grants) {
    std::optional<uint8_t> type = TypeIndex(grant.resource_type);
    if (!type) {
      continue;
    }
    uint8_t bits = 0;
    for (const std::string& permission : grant.permissions) {
      if (std::optional<uint8_t> bit = ResourceBit(*type, permission)) {
        bits = static_cast<uint8_t>(bits | (1u << *bit));
      }
    }
    Index::Type& t = index->types[*type];
    auto [it, added] = t.number.try_emplace(grant.resource_id, static_cast<uint32_t>(t.ids.size()));
    if (added) {
      t.ids.push_back(grant.resource_id);
    }
    t.grants[grant.principal].emplace_back(it->second, bits);
  }
  index_ = std::move(index);
  cache_.clear();
  stats_.reindexes++;
}

Authorization::Rights& Authorization::RightsOf(const Principal& principal) {
  if (index_ == nullptr || index_->authz_seq != views_.authz_seq) {
    Reindex();
  }
  const uint64_t hash = PrincipalHash(principal);
  auto it = cache_.find(hash);
  if (it != cache_.end() && it->second->Is(principal)) {
    stats_.cache_hits++;
    return *it->second;
  }
  stats_.cache_misses++;
  if (it == cache_.end() && cache_.size() >= principals_max_) {
    cache_.clear();
  }
  auto rights = std::make_unique<Rights>();
  rights->kind = principal.kind;
  rights->name = principal.name;
  rights->groups = principal.groups;
  for (size_t c = 0; c < 2; c++) {
    rights->granted_by[c].fill(kNoSubject);
    const StringMap<uint64_t>& groups = index_->group_bits[c];
    rights->ForEachSubject([&](const std::string& subject, uint16_t i) {
      auto found = groups.find(subject);
      if (found == groups.end()) {
        return;
      }
      uint64_t fresh = found->second & ~rights->bits[c];
      rights->bits[c] |= fresh;
      while (fresh != 0) {
        rights->granted_by[c][static_cast<size_t>(std::countr_zero(fresh))] = i;
        fresh &= fresh - 1;
      }
    });
  }
  Rights& out = *rights;
  cache_[hash] = std::move(rights);  // Replaces a (vanishingly rare) hash collision's entry.
  return out;
}

void Authorization::BuildResources(Rights* rights, uint8_t type) {
  const Index::Type& t = index_->types[type];
  Rights::AccessTable& access = rights->resources[type];
  // Size the table for every grant of every subject (an upper bound on distinct resources).
  size_t grants = 0;
  rights->ForEachSubject([&](const std::string& subject, uint16_t) {
    if (auto found = t.grants.find(subject); found != t.grants.end()) {
      grants += found->second.size();
    }
  });
  access.slots.assign(std::bit_ceil(std::max<size_t>(2 * grants, 16)), Rights::Access{});
  rights->ForEachSubject([&](const std::string& subject, uint16_t i) {
    auto found = t.grants.find(subject);
    if (found == t.grants.end()) {
      return;
    }
    for (const auto& [number, bits] : found->second) {
      Rights::Access& a = *access.Insert(number);
      unsigned fresh = bits & ~a.bits & 0xFFu;
      a.bits = static_cast<uint8_t>(a.bits | fresh);
      while (fresh != 0) {
        a.granted_by[static_cast<size_t>(std::countr_zero(fresh))] = i;
        fresh &= fresh - 1;
      }
    }
  });
  rights->resources_built[type] = true;
}

// ---- Decisions ----------------------------------------------------------------------------

std::optional<GroupPermissionRef> Authorization::FindGroupPermission(Component component,
                                                                     std::string_view name) {
  const auto& table = GroupBits(component);
  auto it = table.find(name);
  if (it == table.end()) {
    return std::nullopt;
  }
  return GroupPermissionRef{component, it->second};
}

std::optional<ResourcePermissionRef> Authorization::FindResourcePermission(
    std::string_view type, std::string_view name) {
  std::optional<uint8_t> t = TypeIndex(type);
  if (!t) {
    return std::nullopt;
  }
  std::optional<uint8_t> bit = ResourceBit(*t, name);
  if (!bit) {
    return std::nullopt;
  }
  return ResourcePermissionRef{*t, *bit};
}

std::optional<Decision> Authorization::Bypass(const Principal& principal, AuthzSwitches switches,
                                              bool resources) {
  if (principal.kind == fb::ActorKind::Root) {
    return Allow(DecisionRule::kRoot);
  }
  if (principal.kind == fb::ActorKind::System) {
    return Allow(DecisionRule::kSystem);
  }
  if (!switches.authorization) {
    return Allow(DecisionRule::kAuthorizationOff);
  }
  if (resources && !switches.resource_management) {
    return Allow(DecisionRule::kResourceManagementOff);
  }
  return std::nullopt;
}

Decision Authorization::HasPermission(const Principal& principal, Component component,
                                      std::string_view permission, AuthzSwitches switches) {
  std::optional<GroupPermissionRef> ref = FindGroupPermission(component, permission);
  if (!ref) {
    stats_.decisions++;
    Decision d;
    d.rule = DecisionRule::kUnknownPermission;
    d.subject = std::string(permission);
    return d;
  }
  return HasPermission(principal, *ref, switches);
}

Decision Authorization::HasPermission(const Principal& principal, GroupPermissionRef permission,
                                      AuthzSwitches switches) {
  stats_.decisions++;
  const char* name = GroupPermissions(permission.component)[permission.bit].name;
  if (std::optional<Decision> bypass = Bypass(principal, switches, false)) {
    bypass->permission = name;
    return *bypass;
  }
  const Rights& rights = RightsOf(principal);
  const size_t c = static_cast<size_t>(permission.component);
  Decision d;
  d.permission = name;
  if ((rights.bits[c] >> permission.bit) & 1) {
    const uint16_t by = rights.granted_by[c][permission.bit];
    d.allowed = true;
    d.rule = rights.GrantRule(by);
    d.subject = rights.Subject(by);
  } else {
    d.rule = DecisionRule::kNotGranted;
    d.subject = principal.name;
  }
  return d;
}

Decision Authorization::MayUseResource(const Principal& principal, std::string_view type,
                                       std::string_view resource_id, std::string_view permission,
                                       AuthzSwitches switches) {
  std::optional<ResourcePermissionRef> ref = FindResourcePermission(type, permission);
  if (!ref) {
    stats_.decisions++;
    Decision d;
    d.rule = DecisionRule::kUnknownPermission;
    d.subject = std::string(type) + " permission " + std::string(permission);
    return d;
  }
  return MayUseResource(principal, *ref, resource_id, switches);
}

Decision Authorization::MayUseResource(const Principal& principal, ResourcePermissionRef permission,
                                       std::string_view resource_id, AuthzSwitches switches) {
  stats_.decisions++;
  const char* name = ResourcePermissions(kResourceTypes[permission.type])[permission.bit];
  if (std::optional<Decision> bypass = Bypass(principal, switches, true)) {
    bypass->permission = name;
    bypass->resource_type = kResourceTypes[permission.type];
    return *bypass;
  }
  Rights& rights = RightsOf(principal);
  if (!rights.resources_built[permission.type]) {
    BuildResources(&rights, permission.type);
  }
  Decision d;
  d.permission = name;
  d.resource_type = kResourceTypes[permission.type];
  d.rule = DecisionRule::kNotGranted;
  const Index::Type& t = index_->types[permission.type];
  auto number = t.number.find(resource_id);
  if (number != t.number.end()) {
    const Rights::Access* a = rights.resources[permission.type].Find(number->second);
    if (a != nullptr && ((a->bits >> permission.bit) & 1)) {
      const uint16_t by = a->granted_by[permission.bit];
      d.allowed = true;
      d.rule = rights.GrantRule(by);
      d.subject = rights.Subject(by);
      return d;
    }
  }
  d.subject = principal.name;
  return d;
}

ResourceSet Authorization::AllowedResources(const Principal& principal, std::string_view type,
                                            std::string_view permission,
                                            AuthzSwitches switches) {
  ResourceSet set;
  std::optional<ResourcePermissionRef> ref = FindResourcePermission(type, permission);
  stats_.decisions++;
  if (!ref) {
    set.decision.rule = DecisionRule::kUnknownPermission;
    set.decision.subject = std::string(type) + " permission " + std::string(permission);
    return set;
  }
  const char* name = ResourcePermissions(kResourceTypes[ref->type])[ref->bit];
  if (std::optional<Decision> bypass = Bypass(principal, switches, true)) {
    set.all = true;
    set.decision = *bypass;
    set.decision.permission = name;
    set.decision.resource_type = kResourceTypes[ref->type];
    return set;
  }
  Rights& rights = RightsOf(principal);
  if (!rights.resources_built[ref->type]) {
    BuildResources(&rights, ref->type);
  }
  const Index::Type& t = index_->types[ref->type];
  for (const Rights::Access& access : rights.resources[ref->type].slots) {
    if (access.key != 0 && ((access.bits >> ref->bit) & 1)) {
      set.ids.push_back(t.ids[access.key - 1]);
    }
  }
  std::sort(set.ids.begin(), set.ids.end());
  set.decision.permission = name;
  set.decision.resource_type = kResourceTypes[ref->type];
  set.decision.allowed = !set.ids.empty();
  set.decision.rule = set.ids.empty() ? DecisionRule::kNotGranted : DecisionRule::kGrantsListed;
  set.decision.subject = principal.name;
  return set;
}

// ---- Explanations -------------------------------------------------------------------------

std::string Decision::Explain() const {
  std::string what = permission;
  if (resource_type != nullptr) {
    what = std::string(resource_type) + " permission " + what;
  }
  const std::string who = subject.empty() ? "(anonymous)" : subject;
  switch (rule) {
    case DecisionRule::kRoot:
      return "root";
    case DecisionRule::kSystem:
      return "system";
    case DecisionRule::kAuthorizationOff:
      return "authorization off";
    case DecisionRule::kResourceManagementOff:
      return "resource management off";
    case DecisionRule::kGroupGrants:
      return "group " + subject + " grants " + what;
    case DecisionRule::kPrincipalGrants:
      return who + " holds " + what + " directly";
    case DecisionRule::kGrantsListed:
      return "the grants of " + who + " and its groups list the resources with " + what;
    case DecisionRule::kNotGranted:
      return "no group of " + who + " grants " + what;
    case DecisionRule::kUnknownPermission:
      return "unknown permission " + subject;
  }
  return "unknown rule";
}

}  // namespace cloister::engine
