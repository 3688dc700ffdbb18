// A test client for UAK + TAP against the real cloisterd: RSA keys, key creation through the
// API, and the seed's hand / decrypt / shake flow, giving the Bearer header of a session.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/wire/wire_client.h"

namespace cloister::testing {

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey NewRsaKey();  // RSA-2048; REQUIREs success.
std::string PublicDerBase64(EVP_PKEY* key);  // What POST /api/v1/apikey takes as publicKey.
std::string PrivatePem(EVP_PKEY* key);       // PEM PKCS#1 ("BEGIN RSA PRIVATE KEY").
std::string OaepDecrypt(EVP_PKEY* key, const std::string& sealed);

// POST /api/v1/apikey {id, ttl 3600, groups (a JSON array), publicKey} with root_header; REQUIREs
// OK.
void CreateApiKey(const WireTarget& api, const std::string& root_header, const std::string& id,
                  EVP_PKEY* key, const std::string& groups = R"(["ci"])");

// POST /tap/v1/hand, decrypted: the secret.
std::string Hand(const WireTarget& api, const std::string& id, EVP_PKEY* key);
WireResponse Shake(const WireTarget& api, const std::string& id, const std::string& secret);
// The seed's flow: hand, decrypt, shake; the data object of the answer (REQUIREs success).
nlohmann::json Login(const WireTarget& api, const std::string& id, EVP_PKEY* key);
// "Authorization: Bearer base64(JSON(data))\r\n".
std::string Bearer(const nlohmann::json& data);

}  // namespace cloister::testing
