#include "api/cloisterd/policy_api.h"

#include <string_view>
#include <utility>
#include <vector>

#include "api/cloisterd/envelope.h"
#include "api/cloisterd/request_fields.h"
#include "engine/policy_chain.h"
#include "engine/policy_decide.h"
#include "log/base64.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

// Reduced models kept at most (one per policy version asked about); past it, all are dropped.
constexpr size_t kModelsMax = 256;

constexpr const char* kTargets[] = {"template", "instance"};

api::Response NotFound() { return api::FailResponse(200, "Not found"); }

}  // namespace

nlohmann::json PolicyFileJson(const reducers::StoredPolicy& policy) {
  nlohmann::json events = nlohmann::json::array();
  for (const std::string& event : policy.events) events.push_back(log::Base64Encode(event));
  return {{"format", "cloister-policy"}, {"version", 1}, {"events", std::move(events)}};
}

PolicyApi::PolicyApi(engine::Engine* engine) : engine_(engine) {}
PolicyApi::~PolicyApi() = default;

bool PolicyApi::Handle(const api::Request& request, Respond& respond) {
  if (request.path == "/api/v1/policy") {
    Policies(request, std::move(respond));
  } else if (request.path == "/api/v1/policy/attach") {
    Attach(request, std::move(respond));
  } else if (request.path == "/api/v1/policy/decide") {
    Decide(request, std::move(respond));
  } else {
    return false;
  }
  return true;
}

const reducers::PolicyModel* PolicyApi::Model(const reducers::StoredPolicy& policy) {
  auto cached = models_.find(policy.head_hash);
  if (cached != models_.end()) {
    return &cached->second;
  }
  // The events were validated before they were recorded; replaying them again is the one way
  // to reduce them, and it re-checks them.
  Result<engine::PolicyChain> chain = engine::PolicyChain::FromEvents(policy.events);
  if (!chain.ok()) {
    return nullptr;
  }
  if (models_.size() >= kModelsMax) {
    models_.clear();
  }
  return &models_.emplace(policy.head_hash, chain->model()).first->second;
}

void PolicyApi::Policies(const api::Request& request, Respond respond) {
  const reducers::Views& views = engine_->views();
  if (request.method == "GET" || request.method == "HEAD") {
    auto describe = [&](const reducers::StoredPolicy& policy) {
      Json j;
      j["id"] = policy.policy_id;
      j["head_hash"] = policy.head_hash;
      j["events"] = policy.events.size();
      Json users = Json::array();
      Json groups = Json::array();
      if (const reducers::PolicyModel* model = Model(policy)) {
        for (const auto& [name, user] : model->users) {
          users.push_back({{"name", name},
                           {"administrator", model->IsAdministrator(name)},
                           {"groups", user.groups}});
        }
        for (const auto& [name, group] : model->groups) {
          groups.push_back({{"name", name}, {"groups", group.groups}});
        }
      }
      j["users"] = std::move(users);
      j["groups"] = std::move(groups);
      Json attached = Json::array();
      for (const auto& [key, a] : views.policy_attachments.attachments) {
        if (a.policy_id == policy.policy_id) attached.push_back(key);
      }
      j["attached_to"] = std::move(attached);
      return j;
    };
    const std::optional<std::string> id = QueryParam(request.query, "id");
    if (id) {
      auto policy = views.policies.policies.find(*id);
      if (policy == views.policies.policies.end()) {
        respond(NotFound());
        return;
      }
      Json j = describe(policy->second);
      j["policy"] = PolicyFileJson(policy->second);
      respond(OkResponse(j.dump()));
      return;
    }
    Json list = Json::array();
    for (const auto& [policy_id, policy] : views.policies.policies) list.push_back(describe(policy));
    respond(OkResponse(list.dump()));
    return;
  }
  if (request.method != "POST") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  engine::PutPolicy put;
  Fields fields(*body);
  if (!fields.String("id", &put.policy_id)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  // "policy": the file the tool wrote, as an object or as its text.
  nlohmann::json file = body->value("policy", nlohmann::json());
  if (file.is_string()) {
    file = nlohmann::json::parse(file.get<std::string>(), nullptr, false);
  }
  if (!file.is_object() || file.value("format", "") != "cloister-policy" ||
      !file.contains("events") || !file["events"].is_array()) {
    respond(api::FailResponse(400, "policy: must be a policy file made by the policy tool "
                                   "({\"format\":\"cloister-policy\",\"events\":[...]})"));
    return;
  }
  for (const nlohmann::json& event : file["events"]) {
    std::optional<std::string> bytes =
        event.is_string() ? log::Base64Decode(event.get<std::string>()) : std::nullopt;
    if (!bytes) {
      respond(api::FailResponse(400, "policy: events must be base64 strings"));
      return;
    }
    put.signed_events.push_back(std::move(*bytes));
  }
  const std::string policy_id = put.policy_id;
  engine_->Submit(*principal_, std::move(put), request.id,
                  [this, policy_id, respond = std::move(respond)](engine::Reply reply) {
                    if (!reply.ok()) {
                      respond(FailedReplyResponse(reply));
                      return;
                    }
                    const auto& policies = engine_->views().policies.policies;
                    auto policy = policies.find(policy_id);
                    Json j;
                    j["id"] = policy_id;
                    j["head_hash"] = policy == policies.end() ? "" : policy->second.head_hash;
                    respond(OkResponse(j.dump()));
                  });
}

void PolicyApi::Attach(const api::Request& request, Respond respond) {
  if (request.method != "POST" && request.method != "DELETE") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  engine::ChangePolicyAttachment change;
  std::string ids[2];
  if (!fields.String("policy_id", &change.policy_id) ||
      !fields.String("template_id", &ids[0]) || !fields.String("instance_id", &ids[1])) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (ids[0].empty() == ids[1].empty()) {
    respond(api::FailResponse(400, "give one of template_id and instance_id"));
    return;
  }
  const int target = ids[0].empty() ? 1 : 0;
  change.target_type = kTargets[target];
  change.target_id = ids[target];
  if (request.method == "DELETE") {
    change.policy_id.clear();
  } else if (change.policy_id.empty()) {
    respond(api::FailResponse(400, "policy_id is required"));
    return;
  }
  engine_->Submit(*principal_, std::move(change), request.id,
                  [respond = std::move(respond)](engine::Reply reply) {
                    respond(reply.ok() ? OkResponse("null") : FailedReplyResponse(reply));
                  });
}

void PolicyApi::Decide(const api::Request& request, Respond respond) {
  if (request.method != "GET" && request.method != "HEAD") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  const std::string id = QueryParam(request.query, "id").value_or("");
  const std::string user = QueryParam(request.query, "user").value_or("");
  const std::string rule = QueryParam(request.query, "rule").value_or("");
  if (id.empty() || user.empty() || rule.empty()) {
    respond(api::FailResponse(400, "id, user and rule are required"));
    return;
  }
  const auto& policies = engine_->views().policies.policies;
  auto policy = policies.find(id);
  if (policy == policies.end()) {
    respond(NotFound());
    return;
  }
  const reducers::PolicyModel* model = Model(policy->second);
  if (model == nullptr) {
    respond(api::FailResponse(500, "policy " + id + " no longer validates"));
    return;
  }
  if (!model->users.contains(user)) {
    respond(api::FailResponse(200, "unknown user " + user.substr(0, 64) + " in policy " + id));
    return;
  }
  const engine::PolicyDecision decision = engine::Decide(*model, user, rule);
  Json j;
  j["allow"] = decision.allow;
  j["rule"] = decision.rule;
  j["subject"] = decision.subject;
  j["explain"] = decision.Explain();
  respond(OkResponse(j.dump()));
}

}  // namespace cloister::cloisterd
