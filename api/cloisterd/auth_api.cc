#include "api/cloisterd/auth_api.h"

#include <openssl/crypto.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "api/cloisterd/certificates.h"
#include "api/cloisterd/envelope.h"
#include "api/cloisterd/request_fields.h"
#include "log/base64.h"
#include "reducers/view_json.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

Json KeyJson(const reducers::ApiKey& key) {
  Json j;
  j["id"] = key.key_id;
  j["groups"] = key.groups;
  j["expiration"] = key.expires_ns == 0 ? Json() : Json(reducers::TimeRfc3339(key.expires_ns));
  j["created"] = reducers::TimeRfc3339(key.created.time_ns);
  if (!key.enabled) {
    j["revoked"] = true;
  }
  return j;
}

// The id from the body or, failing that, the query (DELETE clients send either).
std::optional<std::string> IdOf(const api::Request& request, const nlohmann::json& body) {
  if (body.contains("id") && body["id"].is_string()) {
    return body["id"].get<std::string>();
  }
  return QueryParam(request.query, "id");
}

}  // namespace

bool AuthApi::Handle(const api::Request& request, Respond& respond) {
  if (request.path != "/api/v1/apikey" && request.path != "/api/v1/revoke") {
    return false;
  }
  // Root only: the route table (route_table.cc) says so, and Routes enforces it before here.
  request.path == "/api/v1/apikey" ? ApiKeys(request, std::move(respond))
                                   : Revoke(request, std::move(respond));
  return true;
}

void AuthApi::ApiKeys(const api::Request& request, Respond respond) {
  if (tap_ == nullptr || !tap_->enabled()) {
    respond(api::FailResponse(404, "API keys are not enabled (ANKA_ENABLE_API_KEYS)"));
    return;
  }
  const std::string& method = request.method;
  if (method == "GET" || method == "HEAD") {
    ListKeys(request, std::move(respond));
  } else if (method == "POST") {
    CreateKey(request, std::move(respond));
  } else if (method == "PUT") {
    UpdateKey(request, std::move(respond));
  } else if (method == "DELETE") {
    DeleteKey(request, std::move(respond));
  } else {
    respond(api::FailResponse(405, "method not allowed"));
  }
}

void AuthApi::ListKeys(const api::Request& request, Respond respond) {
  const auto& keys = engine_->views().api_keys.keys;
  if (std::optional<std::string> id = QueryParam(request.query, "id")) {
    auto it = keys.find(*id);
    if (it == keys.end()) {
      respond(api::FailResponse(200, "Not found"));
      return;
    }
    respond(OkResponse(Json::array({KeyJson(it->second)}).dump()));
    return;
  }
  Json list = Json::array();
  for (const auto& [id, key] : keys) {
    list.push_back(KeyJson(key));
  }
  respond(OkResponse(list.dump()));
}

void AuthApi::CreateKey(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  engine::CreateApiKey command;
  std::string public_key;
  Fields fields(*body);
  if (!fields.String("id", &command.key_id) || !fields.Strings("groups", &command.groups) ||
      !fields.Int("ttl", &command.ttl_s) || !fields.String("publicKey", &public_key) ||
      !fields.String("description", &command.description)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (!fields.Has("ttl")) {
    respond(api::FailResponse(400, "ttl: required (seconds until the key expires)"));
    return;
  }
  std::string private_key_base64;
  if (!public_key.empty()) {
    std::optional<std::string> der = log::Base64Decode(public_key, log::Base64Alphabet::kEither);
    Result<Pkey> parsed = der ? ParseRsaPublicKey(*der)
                              : Result<Pkey>(Status::InvalidArgument(
                                    "publicKey must be the base64 of a PKIX DER public key"));
    if (!parsed.ok()) {
      respond(api::FailResponse(400, "publicKey: " + parsed.status().message()));
      return;
    }
    command.public_key_der = *der;
  } else {
    Result<Pkey> pair = tap_->NewKeyPair();
    if (!pair.ok()) {
      respond(api::FailResponse(500, "could not generate a key pair"));
      return;
    }
    command.public_key_der = PublicKeyDer(pair.value().get());
    std::string der = PrivateKeyPkcs1Der(pair.value().get());
    private_key_base64 = log::Base64Encode(der);
    OPENSSL_cleanse(der.data(), der.size());
  }
  Json answer;
  answer["id"] = command.key_id;
  if (!private_key_base64.empty()) {
    answer["key"] = private_key_base64;  // Shown once; never stored, never logged.
    OPENSSL_cleanse(private_key_base64.data(), private_key_base64.size());
  }
  std::string answer_json = answer.dump();
  Submit(request, std::move(command), std::move(answer_json), std::move(respond));
}

void AuthApi::UpdateKey(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  if (body->contains("publicKey")) {
    respond(api::FailResponse(400, "publicKey: cannot be changed; create a new key instead"));
    return;
  }
  engine::UpdateApiKey command;
  command.key_id = IdOf(request, *body).value_or("");
  Fields fields(*body);
  std::vector<std::string> groups;
  int64_t ttl = 0;
  if (!fields.Strings("groups", &groups) || !fields.Int("ttl", &ttl)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (fields.Has("groups")) command.groups = std::move(groups);
  if (fields.Has("ttl")) command.ttl_s = ttl;
  Json answer;
  answer["id"] = command.key_id;
  Submit(request, std::move(command), answer.dump(), std::move(respond));
}

void AuthApi::DeleteKey(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyObject(request);
  engine::DeleteApiKey command;
  command.key_id = IdOf(request, body.value_or(nlohmann::json::object())).value_or("");
  Submit(request, std::move(command), "null", std::move(respond));
}

void AuthApi::Revoke(const api::Request& request, Respond respond) {
  if (request.method != "POST") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  std::string session_id;
  std::string key_id;
  std::string serial;
  std::string reason;
  Fields fields(*body);
  if (!fields.String("session_id", &session_id) || !fields.String("key_id", &key_id) ||
      !fields.String("serial", &serial) || !fields.String("reason", &reason)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  const int given = !session_id.empty() + !key_id.empty() + !serial.empty();
  if (given != 1) {
    respond(api::FailResponse(400, "give exactly one of session_id, key_id or serial"));
    return;
  }
  if (!session_id.empty()) {
    if (tap_ == nullptr) {
      respond(api::FailResponse(404, "API keys are not enabled (ANKA_ENABLE_API_KEYS)"));
      return;
    }
    engine::RevokeSession command{tap_->SessionDigest(session_id), reason};
    OPENSSL_cleanse(session_id.data(), session_id.size());
    Submit(request, std::move(command), "null", std::move(respond));
  } else if (!key_id.empty()) {
    Submit(request, engine::RevokeKey{key_id, reason}, "null", std::move(respond));
  } else {
    // "01:AB", "0x1ab" and "1AB" all name one serial (the form OpenSSL prints).
    const std::string hex = CertificateAuthority::NormalizeSerial(serial);
    if (hex.empty()) {
      respond(api::FailResponse(400, "serial: must be a certificate serial number in hex"));
      return;
    }
    Submit(request, engine::RevokeCertificate{hex, "", reason}, "null", std::move(respond));
  }
}

void AuthApi::Submit(const api::Request& request, engine::Command command,
                     std::string body_json, Respond respond) {
  engine_->Submit(*principal_, std::move(command), request.id,
                  [body_json = std::move(body_json),
                   respond = std::move(respond)](engine::Reply reply) mutable {
                    respond(reply.ok() ? OkResponse(body_json) : FailedReplyResponse(reply));
                    OPENSSL_cleanse(body_json.data(), body_json.size());
                  });
}

}  // namespace cloister::cloisterd
