// The VM scheduler: which waiting instances go to which nodes, as a pure function of the views.
//
// PlanPlacements reads the views and nothing else (no clock, no RNG, no I/O), so the same views
// always give the same plan; the engine's ScheduleVms command turns the plan into
// VmInstanceScheduled events, and replaying the log replays every decision exactly.
//
// The rules, in order:
//  * Waiting: an instance in Scheduling that has no node yet. Waiting instances are taken by
//    priority (lower is more urgent), then by request order (the seq of their request).
//  * Eligible node: state Active (Offline, Updating, Unhealthy and Drain Mode nodes take no new
//    VMs) and not put in drain mode by its operator (join --drain-mode, node config),
//    matching the instance's pinned node_id if it has one, with capacity left:
//      - capacity_mode "resource": the vcpu and vram_mb of the instances it holds plus this one
//        fit in the node's vcpu_count and vram_mb, or the operator's vcpu_override and
//        ram_override_mb where those are set (an instance that names no vcpu or vram counts
//        as 0 of it);
//      - otherwise (number mode): fewer instances than capacity (0 means no limit).
//    An instance holds its node from placement until it is Terminated or in Error.
//  * Groups: an instance that names a node group goes to a member of that group; if none is
//    eligible, to a member of the group's fallback, and so on down the fallback chain (a chain
//    that loops is followed once round). No group: any node.
//  * Choice among eligible nodes: those that already hold the template (vmid in the node's
//    reported templates) first, then the fewest instances held, then the smallest node_id.
//  * Resource management (resource_management: ANKA_ENABLE_RESOURCE_MANAGEMENT, seed 002): node
//    groups are off (group_id is ignored) and two rules filter the eligible nodes, read from the
//    resource_permissions view:
//      - the node's credential (who joined it) may pull the instance's template: it is root, or
//        one of its subjects holds the template grant "pull" (NodeMayPull);
//      - an instance started for a permission group G goes only to a node that serves G: G is
//        one of the node credential's subjects, or G holds the node grant "create_instance" on
//        it (NodeServesGroup). Seed 002's scenarios: team nodes joined with keys in their team's
//        group, shared nodes whose one key is in every team, and a dynamic node whose key's
//        groups an operator changes at run time.
//    A credential's subjects are its id and its groups; an API key's groups are the key's groups
//    now (api_keys view), so changing them moves capacity between teams at once; a
//    certificate's are those it joined with.
//  * Placements in one plan count against capacity for the rest of the same plan. An instance
//    with no eligible node keeps waiting; a later plan (after a node joins, frees room or comes
//    back) places it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "reducers/views.h"

namespace cloister::engine {

struct Placement {
  std::string instance_id;
  std::string node_id;
  std::string group_id;  // The group it was placed through (a fallback's id), or "".
};

// At most max_placements placements (the rest wait for the next plan).
std::vector<Placement> PlanPlacements(const reducers::Views& views, size_t max_placements,
                                      bool resource_management = false);

// The resource-management rules above, for one node.
bool NodeMayPull(const reducers::Views& views, const reducers::Node& node,
                 const std::string& template_id);
bool NodeServesGroup(const reducers::Views& views, const reducers::Node& node,
                     const std::string& group);

// Whether an instance in this state holds its node's capacity.
bool HoldsNode(fb::VmState state);

}  // namespace cloister::engine
