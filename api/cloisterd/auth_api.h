// AuthApi: managing credentials through the controller API (docs/auth.md).
//
//   /api/v1/apikey  POST {"id","ttl","groups",["publicKey"]}: a user API key. publicKey is the
//                   base64 of a PKIX DER RSA-2048 public key (no PEM armour); without it the
//                   server makes the pair and answers the private key once, as base64 of PKCS#1
//                   DER ({"id","key"}), keeping and recording only the public half.
//                   GET [?id=] -> [{id, groups, expiration, created}] (never key material)
//                   PUT {"id", "groups"?, "ttl"?} (the public key cannot change)
//                   DELETE {"id"} (or ?id=): the key and its sessions end at once
//   /api/v1/revoke  POST {"session_id"} | {"key_id"} | {"serial"[, "reason"]}: ends a TAP session,
//                   disables a key, or refuses a certificate serial from now on
//
// Root only (the authorization issue adds grants): any other principal gets 403. With
// authentication off everything is anonymous and allowed, as every other endpoint.
//
// Threading: the event-loop thread.
#pragma once

#include <functional>

#include "api/cloisterd/tap.h"
#include "api/http_types.h"
#include "engine/engine.h"

namespace cloister::cloisterd {

class AuthApi {
 public:
  using Respond = std::function<void(api::Response)>;

  // tap: for session ids given to revoke (nullptr: API keys are off).
  AuthApi(engine::Engine* engine, Tap* tap) : engine_(engine), tap_(tap) {}

  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }

  // Answers request if its path is one of the endpoints above; false leaves respond untouched.
  bool Handle(const api::Request& request, Respond& respond);

 private:
  void ApiKeys(const api::Request& request, Respond respond);
  void CreateKey(const api::Request& request, Respond respond);
  void UpdateKey(const api::Request& request, Respond respond);
  void DeleteKey(const api::Request& request, Respond respond);
  void ListKeys(const api::Request& request, Respond respond);
  void Revoke(const api::Request& request, Respond respond);
  // Submits command and answers OK with body_json once applied, or the failure.
  void Submit(const api::Request& request, engine::Command command, std::string body_json,
              Respond respond);

  engine::Engine* engine_;
  Tap* tap_;
  const engine::Principal* principal_ = &engine::kAnonymous;
};

}  // namespace cloister::cloisterd
