// PermissionsApi: administering authorization (issue 6; docs/api.md "Permissions").
//
// Under /admin/api/v1/permission and, identically, /admin/v1/api/permission (the vendor's
// examples use both):
//   GET    /permissions[?component=controller|registry]  the catalogue: [{name, category,
//                                                          description}]
//   GET    /resources/permissions                        {"node":[...], "template":[...]}
//   GET    /groups[?component=]                           [{component, name, description,
//                                                          permissions}]
//   POST   /groups {component, name, description, permissions}
//   PUT    /groups {component, name, description?, permissions?}  (permissions: the whole set)
//   DELETE /groups {component, name}
//   GET    /group/{name}/resources                        [{resource_type, resource_id,
//                                                          permissions}] granted to name
//   POST   /group/{name}/resources {resource_type, resource_id, permissions}  (empty: remove)
// and
//   GET /api/v1/permissions/explain?principal=&groups=a,b&permission=&component=
//       [&resource_type=&resource_id=] -> {allowed, rule}: the decision and the rule that made it.
//
// component defaults to "controller". Which permission each route needs is in route_table.cc.
//
// The registry listener serves the same admin endpoints (not explain) for the registry
// component only: component defaults to "registry" there, a write naming another component is
// 400, and resource grants are on templates (the registry's resources), never nodes. The
// routes need the registry catalogue's permissions, so a registry administrator cannot change
// the controller's groups through it.
//
// Threading: the event-loop thread.
#pragma once

#include <functional>

#include "api/http_types.h"
#include "engine/authorization.h"
#include "engine/engine.h"

namespace cloister::cloisterd {

class PermissionsApi {
 public:
  using Respond = std::function<void(api::Response)>;

  PermissionsApi(engine::Engine* engine, engine::Authorization* authz)
      : engine_(engine), authz_(authz) {}

  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }
  // The controller's switches, for explain.
  void SetSwitches(engine::AuthzSwitches switches) { switches_ = switches; }

  // Answers request if its path is one of the endpoints above; false leaves respond untouched.
  // listener: which listener it came to (kRegistry: the registry's copy above).
  bool Handle(const api::Request& request, Respond& respond,
              engine::Component listener = engine::Component::kController);

 private:
  void Groups(const api::Request& request, engine::Component listener, Respond respond);
  void GroupResources(const api::Request& request, const std::string& name,
                      engine::Component listener, Respond respond);
  void Explain(const api::Request& request, Respond respond);
  void Submit(const api::Request& request, engine::Command command, Respond respond);

  engine::Engine* engine_;
  engine::Authorization* authz_;
  engine::AuthzSwitches switches_;
  const engine::Principal* principal_ = &engine::kAnonymous;
};

}  // namespace cloister::cloisterd
