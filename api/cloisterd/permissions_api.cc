#include "api/cloisterd/permissions_api.h"

#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "api/cloisterd/envelope.h"
#include "api/cloisterd/request_fields.h"
#include "engine/permissions.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kPrefixes[] = {"/admin/api/v1/permission", "/admin/v1/api/permission"};

// The path after a permission-admin prefix ("/groups"), or nullopt.
std::optional<std::string_view> AdminRest(std::string_view path) {
  for (std::string_view prefix : kPrefixes) {
    if (path.starts_with(prefix) && path.size() > prefix.size() && path[prefix.size()] == '/') {
      return path.substr(prefix.size());
    }
  }
  return std::nullopt;
}

std::vector<std::string> SplitComma(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos
                                                                     : comma - start);
    if (!part.empty()) out.push_back(std::move(part));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

bool PermissionsApi::Handle(const api::Request& request, Respond& respond,
                            engine::Component listener) {
  const bool registry = listener == engine::Component::kRegistry;
  if (request.path == "/api/v1/permissions/explain" && !registry) {
    Explain(request, std::move(respond));
    return true;
  }
  std::optional<std::string_view> rest = AdminRest(request.path);
  if (!rest) {
    return false;
  }
  if (*rest == "/permissions") {
    const std::string component =
        QueryParam(request.query, "component").value_or(engine::ComponentName(listener));
    std::optional<engine::Component> c = engine::ComponentFromName(component);
    if (!c) {
      respond(api::FailResponse(400, "component: controller or registry"));
      return true;
    }
    Json list = Json::array();
    for (const engine::PermissionInfo& p : engine::GroupPermissions(*c)) {
      list.push_back({{"name", p.name}, {"category", p.category}, {"description", p.description}});
    }
    respond(OkResponse(list.dump()));
  } else if (*rest == "/resources/permissions") {
    Json body = Json::object();
    for (const char* type : {"node", "template"}) {
      Json names = Json::array();
      for (const char* name : engine::ResourcePermissions(type)) names.push_back(name);
      body[type] = std::move(names);
    }
    respond(OkResponse(body.dump()));
  } else if (*rest == "/groups") {
    Groups(request, listener, std::move(respond));
  } else if (rest->starts_with("/group/") && rest->ends_with("/resources")) {
    const std::string_view name =
        rest->substr(7, rest->size() - 7 - std::string_view("/resources").size());
    GroupResources(request, std::string(name), listener, std::move(respond));
  } else {
    respond(api::FailResponse(404, "not found"));
  }
  return true;
}

void PermissionsApi::Groups(const api::Request& request, engine::Component listener,
                            Respond respond) {
  if (request.method == "GET" || request.method == "HEAD") {
    const std::optional<std::string> component = QueryParam(request.query, "component");
    Json list = Json::array();
    for (const auto& [key, group] : engine_->views().permission_groups.groups) {
      if (component && group.component != *component) continue;
      list.push_back({{"component", group.component},
                      {"name", group.name},
                      {"description", group.description},
                      {"permissions", group.permissions}});
    }
    respond(OkResponse(list.dump()));
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  std::string component = engine::ComponentName(listener);
  std::string name;
  std::string description;
  std::vector<std::string> permissions;
  if (!fields.String("component", &component) || !fields.String("name", &name) ||
      !fields.String("description", &description) ||
      !fields.Strings("permissions", &permissions)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (listener == engine::Component::kRegistry && component != "registry") {
    respond(api::FailResponse(400, "component: the registry administers only registry "
                                   "permission groups, not '" + component.substr(0, 32) + "'"));
    return;
  }
  if (request.method == "POST") {
    Submit(request, engine::CreatePermissionGroup{component, name, description, permissions},
           std::move(respond));
  } else if (request.method == "PUT") {
    engine::UpdatePermissionGroup update{component, name, {}, {}};
    if (fields.Has("description")) update.description = description;
    if (fields.Has("permissions")) update.permissions = permissions;
    Submit(request, std::move(update), std::move(respond));
  } else {
    Submit(request, engine::DeletePermissionGroup{component, name}, std::move(respond));
  }
}

void PermissionsApi::GroupResources(const api::Request& request, const std::string& name,
                                    engine::Component listener, Respond respond) {
  if (request.method == "GET" || request.method == "HEAD") {
    Json list = Json::array();
    for (const auto& [key, grant] : engine_->views().resource_permissions.grants) {
      if (grant.principal != name) continue;
      if (listener == engine::Component::kRegistry && grant.resource_type != "template") continue;
      list.push_back({{"resource_type", grant.resource_type},
                      {"resource_id", grant.resource_id},
                      {"permissions", grant.permissions}});
    }
    respond(OkResponse(list.dump()));
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  engine::SetResourcePermissions set;
  set.principal = name;
  if (!fields.String("resource_type", &set.resource_type) ||
      !fields.String("resource_id", &set.resource_id) ||
      !fields.Strings("permissions", &set.permissions)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (listener == engine::Component::kRegistry && set.resource_type != "template") {
    respond(api::FailResponse(400, "resource_type: the registry's resources are templates; "
                                   "node permissions are set on the controller"));
    return;
  }
  Submit(request, std::move(set), std::move(respond));
}

void PermissionsApi::Explain(const api::Request& request, Respond respond) {
  engine::Principal who;
  who.name = QueryParam(request.query, "principal").value_or("");
  who.kind = who.name == "root" ? fb::ActorKind::Root : fb::ActorKind::ApiKey;
  who.groups = SplitComma(QueryParam(request.query, "groups").value_or(""));
  const std::string permission = QueryParam(request.query, "permission").value_or("");
  const std::optional<std::string> resource_type = QueryParam(request.query, "resource_type");
  engine::Decision decision;
  if (resource_type) {
    decision = authz_->MayUseResource(who, *resource_type,
                                      QueryParam(request.query, "resource_id").value_or(""),
                                      permission, switches_);
  } else {
    std::optional<engine::Component> component = engine::ComponentFromName(
        QueryParam(request.query, "component").value_or("controller"));
    if (!component) {
      respond(api::FailResponse(400, "component: controller or registry"));
      return;
    }
    decision = authz_->HasPermission(who, *component, permission, switches_);
  }
  Json body;
  body["allowed"] = decision.allowed;
  body["rule"] = decision.Explain();
  respond(OkResponse(body.dump()));
}

void PermissionsApi::Submit(const api::Request& request, engine::Command command,
                            Respond respond) {
  engine_->Submit(*principal_, std::move(command), request.id,
                  [respond = std::move(respond)](engine::Reply reply) {
                    respond(reply.ok() ? OkResponse("null") : FailedReplyResponse(reply));
                  });
}

}  // namespace cloister::cloisterd
