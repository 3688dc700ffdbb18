#include "tests/wire/tap_client.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <catch2/catch.hpp>
#include <optional>

#include "log/base64.h"
#include "tests/wire/envelope_checks.h"

namespace cloister::testing {

using Json = nlohmann::json;


Pkey NewRsaKey() {
  Pkey key(EVP_RSA_gen(2048));
  REQUIRE(key);
  return key;
}

std::string PublicDerBase64(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key, &der);
  REQUIRE(n > 0);
  std::string out = log::Base64Encode(std::string_view(reinterpret_cast<char*>(der), n));
  OPENSSL_free(der);
  return out;
}

std::string PrivatePem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio_PrivateKey_traditional(bio, key, nullptr, nullptr, 0, nullptr, nullptr));
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

std::string OaepDecrypt(EVP_PKEY* key, const std::string& sealed) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key, nullptr);
  size_t n = 512;
  std::string out(n, '\0');
  const bool ok = EVP_PKEY_decrypt_init(ctx) == 1 &&
                  EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
                  EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
                  EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1 &&
                  EVP_PKEY_decrypt(ctx, reinterpret_cast<unsigned char*>(out.data()), &n,
                                   reinterpret_cast<const unsigned char*>(sealed.data()),
                                   sealed.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  REQUIRE(ok);
  out.resize(n);
  return out;
}


// POST /tap/v1/hand, decrypted: the secret.
std::string Hand(const WireTarget& api, const std::string& id, EVP_PKEY* key) {
  const WireResponse hand = Call(api, "POST", "/tap/v1/hand", R"({"id":")" + id + R"("})");
  INFO(hand.body);
  REQUIRE(hand.status == 200);
  std::optional<std::string> sealed = log::Base64Decode(hand.body);
  REQUIRE(sealed);
  return OaepDecrypt(key, *sealed);
}

WireResponse Shake(const WireTarget& api, const std::string& id, const std::string& secret) {
  return Call(api, "POST", "/tap/v1/shake",
              R"({"id": ")" + id + R"(", "secret": ")" + secret + R"(" })");
}

// The seed's flow: hand, decrypt, shake; the data object of the answer.
Json Login(const WireTarget& api, const std::string& id, EVP_PKEY* key) {
  const WireResponse shake = Shake(api, id, Hand(api, id, key));
  INFO(shake.body);
  REQUIRE(shake.status == 200);
  const Json answer = Json::parse(shake.body);
  REQUIRE(answer["id"] == id);
  REQUIRE(answer["data"]["userName"] == id);
  return answer["data"];
}

std::string Bearer(const Json& data) {
  return "Authorization: Bearer " + log::Base64Encode(data.dump()) + "\r\n";
}

void CreateApiKey(const WireTarget& api, const std::string& root_header, const std::string& id,
                  EVP_PKEY* key, const std::string& groups) {
  RequireOk(Call(api, "POST", "/api/v1/apikey",
                 R"({"id":")" + id + R"(","ttl":3600,"groups":)" + groups + R"(,"publicKey":")" +
                     PublicDerBase64(key) + R"("})",
                 root_header));
}

}  // namespace cloister::testing
