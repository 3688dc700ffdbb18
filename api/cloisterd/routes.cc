#include "api/cloisterd/routes.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "api/cloisterd/version.h"
#include "engine/config_keys.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

// The effective value of a setting, typed as its JSON form.
Json ConfigJsonValue(const engine::ConfigKey& key, const std::string& text) {
  switch (key.type) {
    case engine::ConfigType::kInteger:
      return Json(std::stoll(text));
    case engine::ConfigType::kBool:
      return Json(text == "true");
    default:
      return Json(text);
  }
}

// A setting's JSON value as the engine's text, if its JSON type is the setting's type (as GET
// shows it: integers as numbers, booleans as true/false, everything else as strings). An
// unknown key passes as text, for the engine to reject as a domain failure.
bool ConfigTextValue(const std::string& key, const nlohmann::json& value, std::string* text,
                     std::string* error) {
  const engine::ConfigKey* known = engine::FindConfigKey(key);
  const engine::ConfigType type = known == nullptr ? engine::ConfigType::kString : known->type;
  switch (type) {
    case engine::ConfigType::kInteger:
      if (value.is_number_integer()) {
        *text = value.dump();
        return true;
      }
      *error = key + ": must be a whole number";
      return false;
    case engine::ConfigType::kBool:
      if (value.is_boolean()) {
        *text = value.get<bool>() ? "true" : "false";
        return true;
      }
      *error = key + ": must be true or false";
      return false;
    case engine::ConfigType::kString:
    case engine::ConfigType::kUrl:
    case engine::ConfigType::kDuration:
      break;
  }
  if (value.is_string()) {
    *text = value.get<std::string>();
    return true;
  }
  if (known == nullptr && (value.is_boolean() || value.is_number_integer())) {
    *text = value.dump();
    return true;
  }
  *error = key + ": must be a string";
  return false;
}

}  // namespace

std::shared_ptr<api::BodySink> Routes::StreamBody(Listener listener, const api::Request& head,
                                                  std::optional<api::Response>* reject) {
  if (listener == Listener::kRegistry && files_ != nullptr && head.path == "/file" &&
      head.method == "PUT") {
    // Credentials and upload_file before a byte of the file is read.
    Respond refuse = [reject](api::Response response) { *reject = std::move(response); };
    bool path_known = false;
    const RouteEntry* route = FindRoute(listener, head.method, head.path, &path_known);
    if (route == nullptr || !Admit(head, refuse) || !Permit(head, *route, refuse)) {
      return nullptr;
    }
    files_->SetPrincipal(&principal_);
    return files_->StreamBody(head, reject);
  }
  if (listener != Listener::kRegistry || oci_ == nullptr || !head.path.starts_with("/v2/")) {
    return nullptr;
  }
  // Credentials and the route's permission before a byte of a blob is read.
  Respond refuse = [reject](api::Response response) {
    *reject = OciFromEnvelope(std::move(response));
  };
  bool path_known = false;
  const RouteEntry* route = FindRoute(listener, head.method, head.path, &path_known);
  if (route == nullptr || !Admit(head, refuse) || !Permit(head, *route, refuse)) {
    if (!reject->has_value()) {
      *reject = OciError(path_known ? 405 : 404, path_known ? "UNSUPPORTED" : "NAME_UNKNOWN",
                         path_known ? "method not allowed" : "not found");
    }
    return nullptr;
  }
  oci_->SetPrincipal(&principal_);
  return oci_->StreamBody(head, reject);
}

void Routes::SetBlobStore(registry::BlobStore* blobs, registry::LogStore* logs,
                          OciApi::Offload offload) {
  files_ = std::make_unique<FileApi>(engine_, blobs, offload);
  files_->SetPrincipal(&principal_);
  logs_ = std::make_unique<LogApi>(logs, clock_, offload);
  registry_api_ = RegistryApi(engine_, blobs, options_.data_dir);
  registry_api_.SetPrincipal(&principal_);
  oci_ = std::make_unique<OciApi>(engine_, blobs, clock_);
  oci_->SetOffload(std::move(offload));
  oci_->SetPrincipal(&principal_);
  if (Switches(engine::Component::kRegistry).resource_management) {
    oci_->SetResourceCheck([this](const api::Request& request, const std::string& template_id,
                                  const char* permission, Respond& respond) {
      const engine::Decision decision = authz_.MayUseResource(
          principal_, "template", template_id, permission,
          Switches(engine::Component::kRegistry));
      if (decision.allowed) {
        return true;
      }
      Deny(request, {permission, "template", template_id},
           std::string("permission denied: template ") + permission + " on " + template_id +
               " is needed (" + decision.Explain() + ")",
           respond);
      return false;
    });
  }
}

void Routes::Handle(Listener listener, api::Request request, Respond respond) {
  if (listener == Listener::kRegistry && request.path.starts_with("/v2/")) {
    // OCI clients read OCI errors, and offer credentials only after a WWW-Authenticate.
    respond = [inner = std::move(respond)](api::Response response) {
      inner(OciFromEnvelope(std::move(response)));
    };
  }
  const std::string& path = request.path;
  bool path_known = false;
  const RouteEntry* route = FindRoute(listener, request.method, path, &path_known);
  // Credentials first, even for a path that does not exist: unknown paths cannot be probed.
  if ((route == nullptr || route->access != Access::kOpen) && !Admit(request, respond)) {
    return;
  }
  if (route == nullptr) {
    respond(path_known ? api::FailResponse(405, "method not allowed")
                       : api::FailResponse(404, "not found"));
    return;
  }
  if (!Permit(request, *route, respond)) {
    return;
  }
  const bool get = request.method == "GET" || request.method == "HEAD";
  if (path == "/livez" || path == "/readyz") {
    if (path == "/readyz" && draining_) {
      respond(api::FailResponse(503, "shutting down"));
    } else if (path == "/readyz" && ca_ != nullptr &&
               ca_->CrlExpired(clock_->NowNs() / 1'000'000'000)) {
      respond(api::FailResponse(503, "ANKA_CRL has expired: certificate logins are refused"));
    } else {
      respond(OkResponse("null"));
    }
    return;
  }
  if (path.starts_with("/tap/v1/")) {
    if (tap_ == nullptr) {
      respond(api::FailResponse(404, "API keys are not enabled (ANKA_ENABLE_API_KEYS)"));
      return;
    }
    tap_->Handle(request, std::move(respond),
                 [this, &request](const std::string& claimed, const std::string& reason,
                                  fb::AuthMethod method, Respond& failed) {
                   return RecordFailure(request, claimed, reason, method, failed);
                 });
    return;
  }
  if (listener == Listener::kRegistry) {
    if (path.starts_with("/v2/")) {
      if (oci_ == nullptr) {
        respond(OciError(404, "UNSUPPORTED", "this process serves no registry storage"));
        return;
      }
      oci_->Handle(request, std::move(respond));
      return;
    }
    if (path == "/file" || path == "/log" || path.starts_with("/log/")) {
      if (files_ == nullptr || logs_ == nullptr) {
        respond(api::FailResponse(404, "this process serves no registry storage"));
      } else if (!files_->Handle(request, respond) && !logs_->Handle(request, respond)) {
        respond(api::FailResponse(404, "not found"));
      }
      return;
    }
    if (path == "/registry/status") {
      RegistryStatus(std::move(respond));
      return;
    }
    // A standalone registry keeps its own keys and revocations (seed 002: keys are made "for the
    // controller and also the registry").
    if (!registry_api_.Handle(request, respond) && !auth_api_.Handle(request, respond) &&
        !permissions_api_.Handle(request, respond, engine::Component::kRegistry)) {
      respond(api::FailResponse(404, "not found"));  // In the table, but no handler: a bug.
    }
    return;
  }
  if (path == "/api/v1/status") {
    Status(std::move(respond));
    return;
  }
  if (path == "/api/v1/config") {
    get ? GetConfig(std::move(respond)) : PutConfig(request, std::move(respond));
    return;
  }
  if (ForwardToRegistry(request, respond) || registry_api_.Handle(request, respond) ||
      controller_.Handle(request, respond) ||
      node_api_.Handle(request, respond) ||
      auth_api_.Handle(request, respond) || permissions_api_.Handle(request, respond) ||
      policy_api_.Handle(request, respond)) {
    return;
  }
  respond(api::FailResponse(404, "not found"));  // In the table, but no handler: a bug.
}

engine::AuthzSwitches Routes::Switches(engine::Component component) const {
  engine::AuthzSwitches switches;
  if (component == engine::Component::kController) {
    switches.authorization = options_.enable_controller_authorization;
  } else {
    switches.authorization = options_.role == Role::kRegistry
                                 ? options_.enable_authorization
                                 : options_.enable_registry_authorization;
  }
  switches.resource_management = switches.authorization && options_.enable_resource_management;
  return switches;
}

engine::AuthzSwitches Routes::ControllerSwitches() const {
  return Switches(engine::Component::kController);
}

bool Routes::Permit(const api::Request& request, const RouteEntry& route, Respond& respond) {
  // With authentication off everyone is Anonymous and allowed everything, as before.
  if (!auth_.enabled() || route.access == Access::kOpen ||
      route.access == Access::kAuthenticated || principal_.kind == fb::ActorKind::Root) {
    return true;
  }
  if (route.access == Access::kRoot) {
    Deny(request, {"root"}, std::string("permission denied: ") + route.method + " " + route.path +
                              " needs the root token",
         respond);
    return false;
  }
  const engine::Decision decision =
      authz_.HasPermission(principal_, route.component, route.permission,
                           Switches(route.component));
  if (decision.allowed ||
      (route.also_permission != nullptr &&
       authz_.HasPermission(principal_, route.component, route.also_permission,
                            Switches(route.component))
           .allowed)) {
    return true;
  }
  Deny(request, {route.permission},
       std::string("permission denied: ") + route.permission + " is needed (" +
           decision.Explain() + ")",
       respond);
  return false;
}

void Routes::Deny(const api::Request& request, engine::RecordAccessDenied denied,
                  std::string message, Respond& respond) {
  denied.method = request.method;
  denied.path = request.path;
  denied.source_ip = PeerAddress(request.peer);
  // Recorded as the principal denied; answered at once (not after the event is durable).
  engine_->Submit(principal_, std::move(denied), request.id, [](engine::Reply) {});
  respond(api::FailResponse(403, message));
}

bool Routes::Admit(const api::Request& request, Respond& respond) {
  AuthOutcome outcome = auth_.Authenticate(request, clock_->NowNs());
  if (outcome.kind != AuthOutcome::Kind::kRefused) {
    principal_ = std::move(outcome.principal);
    return true;
  }
  if (RecordFailure(request, outcome.claimed, outcome.reason, outcome.method, respond)) {
    respond(AuthenticationRequired());
  }
  return false;
}

bool Routes::RecordFailure(const api::Request& request, const std::string& claimed,
                           const std::string& reason, fb::AuthMethod method, Respond& respond) {
  const std::string source = PeerAddress(request.peer);
  const auto now = FailureLimiter::Clock::now();
  uint32_t retry_after_s = 0;
  // Per source, and per key id claimed (a spread of sources guessing one key's sessions).
  const bool allowed = failures_.Allow(source, now, &retry_after_s) &&
                       (claimed.empty() || method == fb::AuthMethod::RootToken ||
                        failures_.Allow("key:" + claimed, now, &retry_after_s));
  if (!allowed) {
    api::Response response = api::FailResponse(429, "too many failed authentications");
    response.headers.Add("Retry-After", std::to_string(retry_after_s));
    respond(std::move(response));
    return false;
  }
  // Recorded (who claimed what, from where, why it failed; never the credential), then refused
  // at once: the answer does not wait for the event to be durable.
  engine::RecordAuthFailure failure;
  failure.method = method;
  failure.claimed_id = claimed;
  failure.reason = reason;
  failure.source_ip = source;
  engine_->Submit(engine::Principal::Anonymous(), std::move(failure), request.id,
                  [](engine::Reply) {});
  return true;
}

std::string Routes::RegistryAddress() const {
  auto configured = engine_->views().config.entries.find("registry_address");
  if (configured != engine_->views().config.entries.end() && !configured->second.value.empty()) {
    return configured->second.value;
  }
  return options_.registry_url.empty() ? own_registry_url_ : options_.registry_url;
}

void Routes::Status(Respond respond) {
  const RegistryProbe::State registry =
      registry_probe_ != nullptr ? registry_probe_->state() : RegistryProbe::State::kUnknown;
  if (status_cache_.seq == engine_->views().seq && status_registry_ == registry) {
    respond(OkResponse(status_cache_.json));
    return;
  }
  const std::string registry_address = RegistryAddress();
  const bool registry_here = options_.role == Role::kAll;
  Json body;
  body["status"] = "Running";
  body["version"] = kVersion;
  body["registry_address"] = registry_address;
  body["registry_status"] = registry_here ? "Running" : RegistryProbe::StateName(registry);
  body["license"] = "open source";
  status_cache_ = {engine_->views().seq, body.dump()};
  status_registry_ = registry;
  respond(OkResponse(status_cache_.json));
}

bool Routes::ForwardToRegistry(const api::Request& request, Respond& respond) {
  if (registry_probe_ == nullptr) {
    return false;
  }
  const std::string& p = request.path;
  const bool remove = request.method == "DELETE" &&
                      (p == "/api/v1/registry/vm" || p == "/api/v1/registry/revert");
  const bool disk =
      (request.method == "GET" || request.method == "HEAD") && p == "/api/v1/registry/disk";
  if (!remove && !disk) {
    return false;
  }
  constexpr long kForwardTimeoutMs = 30'000;
  const std::string method = remove ? "DELETE" : "GET";
  std::string target = p.substr(std::string_view("/api/v1").size());  // "/registry/...".
  if (!request.query.empty()) {
    target += "?" + request.query;
  }
  auto reply = std::make_shared<std::optional<Result<client::ControllerReply>>>();
  RegistryProbe* probe = registry_probe_;
  forward_offload_(
      [probe, method, target, reply] {
        reply->emplace(probe->Forward(method, target, kForwardTimeoutMs));
      },
      [probe, remove, reply, respond = std::move(respond)] {
        const Result<client::ControllerReply>& answer = reply->value();
        if (!answer.ok()) {
          probe->ReadNow();  // registry_status follows at once.
          respond(api::FailResponse(502, "the registry at " + probe->url() +
                                             " did not answer: " + answer.status().message()));
          return;
        }
        if (remove && answer->ok) {
          probe->ReadNow();  // The controller's template view follows at once.
        }
        respond(answer->ok ? OkResponse(answer->body.dump())
                           : api::FailResponse(answer->http_status, answer->message));
      });
  return true;
}

void Routes::RegistryStatus(Respond respond) {
  Json body;
  body["status"] = "Running";
  body["version"] = kVersion;
  respond(OkResponse(body.dump()));
}

void Routes::GetConfig(Respond respond) {
  if (config_cache_.seq == engine_->views().seq) {
    respond(OkResponse(config_cache_.json));
    return;
  }
  Json body = Json::object();
  for (const engine::ConfigKey& key : engine::ConfigKeys()) {
    auto entry = engine_->views().config.entries.find(key.name);
    const std::string text =
        entry == engine_->views().config.entries.end() ? key.default_value : entry->second.value;
    body[key.name] = ConfigJsonValue(key, text);
  }
  config_cache_ = {engine_->views().seq, body.dump()};
  respond(OkResponse(config_cache_.json));
}

void Routes::PutConfig(const api::Request& request, Respond respond) {
  const nlohmann::json parsed = nlohmann::json::parse(request.body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    respond(api::FailResponse(400, "the body must be a JSON object of settings"));
    return;
  }
  engine::SetConfig command;
  for (const auto& [key, value] : parsed.items()) {
    std::string text;
    std::string error;
    if (!ConfigTextValue(key, value, &text, &error)) {
      respond(api::FailResponse(400, error));
      return;
    }
    command.changes.emplace_back(key, std::move(text));
  }
  engine_->Submit(principal_, std::move(command), request.id,
                  [this, respond = std::move(respond)](engine::Reply reply) {
                    if (!reply.ok()) {
                      respond(FailedReplyResponse(reply));
                    } else {
                      GetConfig(respond);
                    }
                  });
}

}  // namespace cloister::cloisterd
