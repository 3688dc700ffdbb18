// Authorization decision latency (issue 6: <= 1 us p50 with 1,000 permission groups, 10,000
// resource grants and principals with 100 groups each).
//
// Builds the views in memory (1,000 controller permission groups: one of 4 common permissions
// each, and a quarter of them one of the 24 others; 10,000 node grants spread over 5,000 nodes
// and the 1,000 groups), then times, one call at a time (steady_clock around each call; its own
// cost, ~20 ns, is included):
//   * HasPermission (group permission, string name) and MayUseResource, warm: 256 principals
//     cycled, so every decision finds its principal cached;
//   * the same, cold: the first decision for a principal never seen (the cache fills, so it is
//     emptied every 4,096 principals, as in production);
//   * the naive peer of each, in the same run: scan the principal's subjects with std::map
//     lookups into the views ("component/name" and "type/id/principal" keys), no index or cache.
// Usage: bazel run -c opt //bench:authz_bench [-- decisions]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/latency.h"
#include "engine/authorization.h"
#include "engine/permissions.h"
#include "reducers/views.h"

namespace cloister {
namespace {


constexpr size_t kGroups = 1000;
constexpr size_t kGrants = 10000;
constexpr size_t kNodes = 5000;
constexpr size_t kGroupsPerPrincipal = 100;
constexpr size_t kWarmPrincipals = 256;
constexpr double kTargetNs = 1000;

std::string GroupName(size_t i) { return "group-" + std::to_string(i); }
std::string NodeId(size_t i) { return "node-" + std::to_string(100000 + i); }

using bench::Figures;
using bench::Percentiles;
using bench::Time;

// targeted: the 1 us target applies (warm decisions); first decisions are reported only.
void Print(const char* what, bool targeted, Figures fast, Figures naive, size_t allowed,
           size_t n) {
  const char* verdict = !targeted ? "-" : fast.p50 <= kTargetNs ? "ok" : "SLOW";
  std::printf("%-48s p50 %8.0f ns  p99 %8.0f ns  %-4s | naive p50 %8.0f ns  p99 %8.0f ns"
              "  (naive/indexed p50 %.1fx; %zu/%zu allowed)\n",
              what, fast.p50, fast.p99, verdict, naive.p50,
              naive.p99, naive.p50 / fast.p50, allowed, n);
}

// The naive peer: every subject of the principal through std::map lookups.
bool NaiveHasPermission(const reducers::Views& v, const engine::Principal& p,
                        const std::string& permission) {
  auto holds = [&](const std::string& subject) {
    auto it = v.permission_groups.groups.find("controller/" + subject);
    return it != v.permission_groups.groups.end() && it->second.permissions.contains(permission);
  };
  return std::any_of(p.groups.begin(), p.groups.end(), holds) || holds(p.name);
}

bool NaiveMayUse(const reducers::Views& v, const engine::Principal& p, const std::string& id,
                 const std::string& permission) {
  auto holds = [&](const std::string& subject) {
    auto it = v.resource_permissions.grants.find("node/" + id + "/" + subject);
    return it != v.resource_permissions.grants.end() &&
           it->second.permissions.contains(permission);
  };
  return std::any_of(p.groups.begin(), p.groups.end(), holds) || holds(p.name);
}

int Main(int argc, char** argv) {
  const size_t decisions = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200'000;
  std::mt19937_64 rng(6);

  // The views: permission groups with 3 random controller permissions each, grants over nodes.
  reducers::Views views;
  std::span<const engine::PermissionInfo> catalogue =
      engine::GroupPermissions(engine::Component::kController);
  for (size_t g = 0; g < kGroups; g++) {
    reducers::PermissionGroup group;
    group.component = "controller";
    group.name = GroupName(g);
    // Common permissions in most groups, each other one in about 1% of them: a principal with
    // 100 groups holds some and lacks others, so both answers are timed.
    group.permissions.insert(catalogue[rng() % 4].name);
    if (rng() % 4 == 0) {
      group.permissions.insert(catalogue[4 + rng() % (catalogue.size() - 4)].name);
    }
    views.permission_groups.groups["controller/" + group.name] = group;
  }
  std::span<const char* const> node_permissions = engine::ResourcePermissions("node");
  for (size_t i = 0; views.resource_permissions.grants.size() < kGrants; i++) {
    reducers::ResourceGrant grant;
    grant.resource_type = "node";
    grant.resource_id = NodeId(rng() % kNodes);
    grant.principal = GroupName(rng() % kGroups);
    grant.permissions = {node_permissions[rng() % node_permissions.size()], "list"};
    views.resource_permissions.grants["node/" + grant.resource_id + "/" + grant.principal] = grant;
  }
  views.authz_seq = 1;

  auto principal = [&](size_t i) {
    engine::Principal p{fb::ActorKind::ApiKey, "user-" + std::to_string(i), {}};
    std::mt19937_64 r(i);
    for (size_t k = 0; k < kGroupsPerPrincipal; k++) {
      p.groups.push_back(GroupName(r() % kGroups));
    }
    return p;
  };
  std::vector<engine::Principal> warm;
  for (size_t i = 0; i < kWarmPrincipals; i++) {
    warm.push_back(principal(i));
  }
  std::vector<engine::Principal> cold;
  const size_t cold_n = std::min<size_t>(decisions, 50'000);
  for (size_t i = 0; i < cold_n; i++) {
    cold.push_back(principal(1'000'000 + i));
  }
  std::vector<std::string> permissions;
  std::vector<std::string> nodes;
  std::vector<std::string> resource_permissions;
  for (size_t i = 0; i < decisions; i++) {
    permissions.push_back(catalogue[rng() % catalogue.size()].name);
    nodes.push_back(NodeId(rng() % kNodes));
    resource_permissions.push_back(node_permissions[rng() % node_permissions.size()]);
  }

  const engine::AuthzSwitches on{true, true};
  engine::Authorization authz(&views);
  std::printf("authz_bench: %zu permission groups, %zu node grants over %zu nodes, %zu groups "
              "per principal; target p50 <= %.0f ns\n",
              views.permission_groups.groups.size(), views.resource_permissions.grants.size(),
              kNodes, kGroupsPerPrincipal, kTargetNs);

  // Warm-up: index built, warm principals cached (both kinds of rights).
  for (const engine::Principal& p : warm) {
    authz.HasPermission(p, engine::Component::kController, "start_vm", on);
    authz.MayUseResource(p, "node", NodeId(0), "list", on);
  }

  size_t allowed = 0;
  size_t naive_allowed = 0;
  Figures fast = Time(decisions, [&](size_t i) {
    return authz.HasPermission(warm[i % warm.size()], engine::Component::kController,
                               permissions[i], on).allowed;
  }, &allowed);
  Figures naive = Time(decisions, [&](size_t i) {
    return NaiveHasPermission(views, warm[i % warm.size()], permissions[i]);
  }, &naive_allowed);
  if (allowed != naive_allowed) {
    std::fprintf(stderr, "mismatch: %zu vs %zu allowed\n", allowed, naive_allowed);
    return 1;
  }
  Print("group permission, warm", true, fast, naive, allowed, decisions);

  allowed = naive_allowed = 0;
  fast = Time(decisions, [&](size_t i) {
    return authz.MayUseResource(warm[i % warm.size()], "node", nodes[i], resource_permissions[i],
                                on).allowed;
  }, &allowed);
  naive = Time(decisions, [&](size_t i) {
    return NaiveMayUse(views, warm[i % warm.size()], nodes[i], resource_permissions[i]);
  }, &naive_allowed);
  if (allowed != naive_allowed) {
    std::fprintf(stderr, "mismatch: %zu vs %zu allowed\n", allowed, naive_allowed);
    return 1;
  }
  Print("MayUseResource(node), warm", true, fast, naive, allowed, decisions);

  allowed = naive_allowed = 0;
  fast = Time(cold_n, [&](size_t i) {
    return authz.HasPermission(cold[i], engine::Component::kController, permissions[i], on)
        .allowed;
  }, &allowed);
  naive = Time(cold_n, [&](size_t i) {
    return NaiveHasPermission(views, cold[i], permissions[i]);
  }, &naive_allowed);
  Print("group permission, first for a new principal", false, fast, naive, allowed, cold_n);

  // New principals again (other names), so MayUseResource builds their resource rights.
  for (size_t i = 0; i < cold_n; i++) {
    cold[i].name += "-r";
  }
  allowed = naive_allowed = 0;
  fast = Time(cold_n, [&](size_t i) {
    return authz.MayUseResource(cold[i], "node", nodes[i], resource_permissions[i], on).allowed;
  }, &allowed);
  naive = Time(cold_n, [&](size_t i) {
    return NaiveMayUse(views, cold[i], nodes[i], resource_permissions[i]);
  }, &naive_allowed);
  Print("MayUseResource(node), first for a new principal", false, fast, naive, allowed, cold_n);

  const engine::AuthorizationStats& s = authz.stats();
  std::printf("stats: %llu decisions, %llu cache hits, %llu misses, %llu index builds\n",
              static_cast<unsigned long long>(s.decisions),
              static_cast<unsigned long long>(s.cache_hits),
              static_cast<unsigned long long>(s.cache_misses),
              static_cast<unsigned long long>(s.reindexes));
  return 0;
}

}  // namespace
}  // namespace cloister

int main(int argc, char** argv) { return cloister::Main(argc, argv); }
