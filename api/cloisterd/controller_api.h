// ControllerApi: the Anka controller endpoints for node groups, nodes and VM instances, and the
// scheduler passes that follow their changes.
//
//   /api/v1/group        GET [?id=] · POST {name, description, fallback_group_id}
//                        PUT ?id= (or "id" in the body) · DELETE ?id= (or {"id"})
//   /api/v1/node/group   POST / DELETE {"group_ids":[...],"node_ids":[...]}
//   /api/v1/node         GET [?id=] (always an array) · DELETE {"node_id"} (or ?id=)
//   /api/v1/vm           GET [?id=] · POST (the Anka start request; body: the new instance ids)
//                        PUT ?id= {name, external_id, metadata} · DELETE {"id"} (or ?id=)
//   /api/v1/rpc/vm/restart  POST {"id"} (or ?id=): stop and start a Started or Stopped instance
//   /api/v1/node/config  POST {node_id, max_vm_count, name, capacity_mode, vcpu_override,
//                        ram_override (GB), drain_mode}: absent fields keep their value
//   /api/v1/node/update  PUT: every agent reloads its credentials
//   /api/v1/image        POST {id, tag, target_vm_id | new_template_name, description, suspend,
//                        revert_tag, script, copy, approval}: save image (body: the request id;
//                        the saved template keeps the instance's policy unless copy, which
//                        needs an approval signed by a policy administrator) · GET [?id=]
//                        with status pending, done or error
//   /api/v1/registry/vm  GET [?id=]: the templates the controller knows, and one's versions
//                        (templates are made by pushes to the registry listener, oci_api.h)
//
// Shapes follow what Anka's clients read (docs/api.md): lists are arrays, GET /api/v1/vm?id=
// answers the instance object itself while the list wraps each in {instance_id, vm}, GET
// /api/v1/node?id= answers a one-element array, and a missing id is 200 FAIL "Not found". A body
// that is not a JSON object, or a field of the wrong JSON type, is 400 FAIL naming the field;
// everything the engine rejects is 200 FAIL with its reason, and appends nothing.
//
// Scheduling: after every change that can let a waiting instance go somewhere (a request, a
// termination, a membership or node change) and on Tick (the service calls it every second),
// one ScheduleVms pass runs, unless the scheduler_enabled setting is false. At most one pass is
// in flight; a request for another while one runs is remembered and run after it.
//
// Threading: everything on the event-loop thread that owns the engine.
#pragma once

#include <functional>
#include <string>

#include "api/cloisterd/envelope.h"
#include "api/http_types.h"
#include "engine/authorization.h"
#include "engine/engine.h"

namespace cloister::cloisterd {

class ControllerApi {
 public:
  using Respond = std::function<void(api::Response)>;

  explicit ControllerApi(engine::Engine* engine) : engine_(engine) {}

  // Answers request if its path is one of the endpoints above and returns true; otherwise
  // returns false and leaves respond untouched.
  bool Handle(const api::Request& request, Respond& respond);

  // Where to read who the request being handled is: the actor of the commands Handle submits
  // (commands are submitted within the call). The owner updates *principal before each Handle.
  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }

  // Resource management (ANKA_ENABLE_RESOURCE_MANAGEMENT, seed 002), set once at startup:
  //  * lists of nodes and templates leave out what the principal may not `list`, and ?id= of
  //    one reads as "Not found";
  //  * node groups are off: their writes answer FAIL, and a start request's group_id names the
  //    permission group the instance runs for. It is required; the requester must be in it (or
  //    be root); the group must hold the template grant "pull"; a node_id it pins must serve
  //    the group (engine/scheduler.h);
  //  * save image targets only instances started for a group the requester is in (root: any);
  //  * scheduler passes place by resource permissions.
  // A refusal is answered through deny (403 and an AccessDenied event). Unset: off.
  using Deny = std::function<void(const api::Request& request,
                                  const engine::RecordAccessDenied& denied, std::string message,
                                  Respond& respond)>;
  void SetResourceManagement(engine::Authorization* authz, engine::AuthzSwitches switches,
                             Deny deny) {
    authz_ = authz;
    switches_ = switches;
    deny_ = std::move(deny);
  }

  // A scheduler pass, if there may be work (called by a timer).
  void Tick() { RequestSchedulePass(); }

  // No scheduler pass starts after this (shutdown).
  void Stop() { stopped_ = true; }

  // Passes run, for tests and logs.
  uint64_t schedule_passes() const { return schedule_passes_; }

 private:
  void Groups(const api::Request& request, Respond respond);
  void NodeGroups(const api::Request& request, Respond respond);
  void Nodes(const api::Request& request, Respond respond);
  void Vms(const api::Request& request, Respond respond);
  void StartVms(const api::Request& request, Respond respond);
  void UpdateVm(const api::Request& request, Respond respond);
  void RestartVm(const api::Request& request, Respond respond);
  void NodeConfig(const api::Request& request, Respond respond);
  void NodeUpdate(const api::Request& request, Respond respond);
  void Images(const api::Request& request, Respond respond);
  void Templates(const api::Request& request, Respond respond);

  // Submits command; on success answers OK with body(reply) (evaluated after the events are
  // applied) and, if reschedule, asks for a scheduler pass.
  void Submit(const api::Request& request, engine::Command command, bool reschedule,
              std::function<std::string(const engine::Reply&)> body, Respond respond);
  void RequestSchedulePass();
  // Resource management: whether the principal may see a resource (true when off).
  bool Visible(const char* type, const std::string& id, const char* permission);
  // Resource management's checks of a start request; false once it has answered.
  bool PermitStart(const api::Request& request, engine::RequestVm* start, Respond& respond);
  // Whether the principal may act for permission group `group`: root, or a member.
  bool ActsFor(const std::string& group) const;

  engine::Engine* engine_;
  engine::Authorization* authz_ = nullptr;  // Set: resource management is on.
  engine::AuthzSwitches switches_;
  Deny deny_;
  const engine::Principal* principal_ = &engine::kAnonymous;
  bool stopped_ = false;
  bool pass_in_flight_ = false;
  bool pass_wanted_ = false;
  uint64_t schedule_passes_ = 0;
};

}  // namespace cloister::cloisterd
