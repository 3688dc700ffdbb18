// PolicyApi: Anka Secure VM policies on the controller (issue 7; docs/policy.md, docs/api.md).
//
//   GET    /api/v1/policy [?id=]       every policy: [{id, head_hash, events, users, groups,
//                                      attached_to}]; with ?id= that object plus "policy", the
//                                      policy file itself ({"format":"cloister-policy",...})
//   POST   /api/v1/policy {id, policy} records a policy file made by the `policy` tool: a new id
//                                      takes the whole chain, a known one only the events past
//                                      the stored ones (which the file must hold unchanged).
//                                      Answers {id, head_hash}.
//   POST   /api/v1/policy/attach {policy_id, template_id | instance_id}
//   DELETE /api/v1/policy/attach {template_id | instance_id}
//   GET    /api/v1/policy/decide?id=&user=&rule=   {allow, rule, subject, explain}
//
// Every change is validated by the engine against the policy's own administrators: the chain is
// replayed and each signature checked, so the root token can record or detach a policy but never
// forge or rewrite one. An instance's effective policy is the one attached to it, else the one
// attached to its template (reducers::EffectivePolicy); the node protocol carries it with each instance.
//
// Threading: the event-loop thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "api/http_types.h"
#include "engine/engine.h"
#include "reducers/policy_model.h"
#include "reducers/views.h"

namespace cloister::cloisterd {

// The policy file of a stored policy: {"format":"cloister-policy","version":1,"events":[...]}.
nlohmann::json PolicyFileJson(const reducers::StoredPolicy& policy);

class PolicyApi {
 public:
  using Respond = std::function<void(api::Response)>;

  explicit PolicyApi(engine::Engine* engine);
  ~PolicyApi();

  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }

  // Answers request if its path is one of the endpoints above; false leaves respond untouched.
  bool Handle(const api::Request& request, Respond& respond);

 private:
  void Policies(const api::Request& request, Respond respond);
  void Attach(const api::Request& request, Respond respond);
  void Decide(const api::Request& request, Respond respond);
  // The user database of a stored policy, reduced once per head hash.
  const reducers::PolicyModel* Model(const reducers::StoredPolicy& policy);

  engine::Engine* engine_;
  const engine::Principal* principal_ = &engine::kAnonymous;
  std::map<std::string, reducers::PolicyModel> models_;  // By head hash.
};

}  // namespace cloister::cloisterd
