#include "client/client_auth.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <utility>

#include "log/base64.h"

namespace cloister::client {
namespace {

using Json = nlohmann::json;

constexpr char kCredentialFlags[] =
    "--root-token, --api-key-id with --api-key-string or --api-key-file, --cert (and --cert-key)";

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string Trim(const std::string& text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && IsSpace(text[begin])) begin++;
  while (end > begin && IsSpace(text[end - 1])) end--;
  return text.substr(begin, end - begin);
}

// Refuses to prompt for a passphrase: the agent runs unattended.
int NoPassphrase(char*, int, int, void*) { return -1; }

// Wipes a string holding a secret before it is freed.
void Wipe(std::string* text) {
  if (!text->empty()) {
    OPENSSL_cleanse(text->data(), text->size());
  }
  text->clear();
}

// "HTTP 404: Not found" from a non-2xx answer (the Anka envelope's message when there is one).
std::string Refusal(const RawReply& reply) {
  std::string text = "HTTP " + std::to_string(reply.http_status);
  Json envelope = Json::parse(reply.body, nullptr, false);
  if (envelope.is_object() && envelope["message"].is_string()) {
    const std::string message = envelope["message"];
    if (!message.empty()) text += ": " + message.substr(0, 200);
  }
  return text;
}

bool Success(const RawReply& reply) { return reply.http_status >= 200 && reply.http_status < 300; }

}  // namespace

Result<CredentialKind> CredentialKindOf(const Credentials& c) {
  const bool root = !c.root_token.empty();
  const bool api_key =
      !c.api_key_id.empty() || !c.api_key_string.empty() || !c.api_key_file.empty();
  const bool cert = !c.cert_file.empty() || !c.cert_key_file.empty();
  if (int{root} + int{api_key} + int{cert} > 1) {
    return Status::InvalidArgument(std::string("give one credential only: ") + kCredentialFlags);
  }
  if (api_key) {
    if (c.api_key_id.empty()) {
      return Status::InvalidArgument("an API key needs its id: --api-key-id");
    }
    if (c.api_key_string.empty() == c.api_key_file.empty()) {
      return Status::InvalidArgument(
          "--api-key-id needs the private key: either --api-key-string or --api-key-file");
    }
    return CredentialKind::kApiKey;
  }
  if (cert) {
    if (c.cert_file.empty()) {
      return Status::InvalidArgument("--cert-key needs its certificate: --cert");
    }
    return CredentialKind::kClientCertificate;
  }
  return root ? CredentialKind::kRootToken : CredentialKind::kNone;
}

// ---- RsaPrivateKey ----

Result<std::shared_ptr<const RsaPrivateKey>> RsaPrivateKey::Parse(const std::string& text,
                                                                  const std::string& source) {
  const std::string trimmed = Trim(text);
  if (trimmed.empty()) {
    return Status::InvalidArgument(source + ": empty, expected an RSA private key");
  }
  EVP_PKEY* pkey = nullptr;
  if (trimmed.find("-----BEGIN") != std::string::npos) {
    if (trimmed.find("ENCRYPTED") != std::string::npos) {
      return Status::InvalidArgument(source + ": an encrypted private key; give it unencrypted");
    }
    BIO* bio = BIO_new_mem_buf(trimmed.data(), static_cast<int>(trimmed.size()));
    if (bio != nullptr) {
      pkey = PEM_read_bio_PrivateKey(bio, nullptr, &NoPassphrase, nullptr);
      BIO_free(bio);
    }
  } else {
    // The bare base64 of the DER, possibly wrapped over several lines.
    std::string compact;
    for (char c : trimmed) {
      if (!IsSpace(c)) compact.push_back(c);
    }
    std::optional<std::string> der = log::Base64Decode(compact, log::Base64Alphabet::kEither);
    Wipe(&compact);
    if (der && !der->empty()) {
      const unsigned char* p = reinterpret_cast<const unsigned char*>(der->data());
      pkey = d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der->size()));
      Wipe(&*der);
    }
  }
  ERR_clear_error();
  if (pkey == nullptr) {
    return Status::InvalidArgument(source +
                                   ": not an RSA private key (expected PEM PKCS#1, "
                                   "PEM PKCS#8, or the base64 of the DER)");
  }
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
    EVP_PKEY_free(pkey);
    return Status::InvalidArgument(source + ": not an RSA private key (another key type)");
  }
  return std::shared_ptr<const RsaPrivateKey>(new RsaPrivateKey(pkey));
}

Result<std::shared_ptr<const RsaPrivateKey>> RsaPrivateKey::Load(const std::string& path) {
  const std::string source = "--api-key-file " + path;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    const std::string reason = std::strerror(error);
    if (error == ENOENT) return Status::NotFound(source + ": " + reason);
    return Status::IoError(source + ": " + reason);
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string key_text = text.str();
  auto key = Parse(key_text, source);
  Wipe(&key_text);
  return key;
}

RsaPrivateKey::~RsaPrivateKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

Result<std::string> RsaPrivateKey::DecryptOaepSha256(const std::string& ciphertext) const {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(static_cast<EVP_PKEY*>(pkey_), nullptr);
  if (ctx == nullptr) {
    return Status::IoError("RSA: out of memory");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(ciphertext.data());
  size_t size = 0;
  std::string plain;
  bool ok = EVP_PKEY_decrypt_init(ctx) > 0 &&
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0 &&
            EVP_PKEY_decrypt(ctx, nullptr, &size, in, ciphertext.size()) > 0;
  if (ok) {
    plain.resize(size);
    ok = EVP_PKEY_decrypt(ctx, reinterpret_cast<unsigned char*>(plain.data()), &size, in,
                          ciphertext.size()) > 0;
    plain.resize(ok ? size : 0);
  }
  EVP_PKEY_CTX_free(ctx);
  ERR_clear_error();
  if (!ok) {
    Wipe(&plain);
    return Status::InvalidArgument("RSA-OAEP decryption failed");
  }
  return plain;
}

// ---- ClientAuth ----

Result<std::shared_ptr<ClientAuth>> ClientAuth::Create(const Credentials& credentials,
                                                       ClientAuthOptions options) {
  auto kind = CredentialKindOf(credentials);
  if (!kind.ok()) {
    return kind.status();
  }
  std::shared_ptr<ClientAuth> auth(new ClientAuth(*kind, credentials, std::move(options)));
  if (*kind == CredentialKind::kRootToken) {
    auth->basic_header_ =
        "Authorization: Basic " + log::Base64Encode("root:" + credentials.root_token);
  }
  if (*kind == CredentialKind::kApiKey) {
    auto key = credentials.api_key_file.empty()
                   ? RsaPrivateKey::Parse(credentials.api_key_string, "--api-key-string")
                   : RsaPrivateKey::Load(credentials.api_key_file);
    if (!key.ok()) {
      return key.status();
    }
    auth->key_ = std::move(*key);
  }
  return auth;
}

std::chrono::steady_clock::time_point ClientAuth::Now() const {
  return options_.now ? options_.now() : std::chrono::steady_clock::now();
}

uint64_t ClientAuth::handshakes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handshakes_;
}

Result<std::vector<std::string>> ClientAuth::Headers(const RawPost& post) {
  switch (kind_) {
    case CredentialKind::kNone:
    case CredentialKind::kClientCertificate:
      return std::vector<std::string>{};
    case CredentialKind::kRootToken:
      return std::vector<std::string>{basic_header_};
    case CredentialKind::kApiKey:
      break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  const bool stale =
      options_.max_session_age.count() > 0 && Now() - session_start_ >= options_.max_session_age;
  if (bearer_header_.empty() || stale) {
    Status done = Handshake(post);
    if (!done.ok()) {
      return done;
    }
  }
  return std::vector<std::string>{bearer_header_};
}

bool ClientAuth::Invalidate(const std::vector<std::string>& headers) {
  if (kind_ != CredentialKind::kApiKey) {
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& line : headers) {
    if (!bearer_header_.empty() && line == bearer_header_) {
      Wipe(&bearer_header_);  // Otherwise another thread has already begun a new session.
    }
  }
  return true;
}

Status ClientAuth::Handshake(const RawPost& post) {
  Wipe(&bearer_header_);
  const std::string& id = credentials_.api_key_id;
  const std::string what = "TAP hand for API key id " + id;
  auto hand = post("/tap/v1/hand", Json{{"id", id}}.dump());
  if (!hand.ok()) {
    return Status::IoError(what + ": " + hand.status().message());
  }
  if (!Success(*hand)) {
    return Status::InvalidArgument(what + ": " + Refusal(*hand));
  }
  // The base64 of the ciphertext, raw (a JSON string is accepted too).
  std::string encoded = Trim(hand->body);
  if (!encoded.empty() && encoded.front() == '"') {
    Json quoted = Json::parse(encoded, nullptr, false);
    encoded = quoted.is_string() ? quoted.get<std::string>() : "";
  }
  std::optional<std::string> ciphertext = log::Base64Decode(encoded, log::Base64Alphabet::kEither);
  if (!ciphertext || ciphertext->empty()) {
    return Status::InvalidArgument(what + ": the answer is not the base64 of a challenge");
  }
  auto secret = key_->DecryptOaepSha256(*ciphertext);
  if (!secret.ok()) {
    return Status::InvalidArgument(what +
                                   ": the challenge cannot be decrypted with the "
                                   "private key (wrong private key for this id?)");
  }
  bool printable = !secret->empty();
  for (char c : *secret) {
    printable = printable && c >= 0x20 && c < 0x7f;
  }
  if (!printable) {
    Wipe(&*secret);
    return Status::InvalidArgument(what + ": the decrypted challenge is not a printable secret");
  }
  std::string shake_body = Json{{"id", id}, {"secret", *secret}}.dump();
  Wipe(&*secret);
  auto shake = post("/tap/v1/shake", shake_body);
  Wipe(&shake_body);
  const std::string shook = "TAP shake for API key id " + id;
  if (!shake.ok()) {
    return Status::IoError(shook + ": " + shake.status().message());
  }
  if (!Success(*shake)) {
    return Status::InvalidArgument(shook + ": " + Refusal(*shake));
  }
  // {"id":..., "data":{...}}; the seeds also call it "base64 encoded", so that is accepted too.
  Json answer = Json::parse(shake->body, nullptr, false);
  if (!answer.is_object()) {
    std::optional<std::string> decoded =
        log::Base64Decode(Trim(shake->body), log::Base64Alphabet::kEither);
    answer = decoded ? Json::parse(*decoded, nullptr, false) : Json();
  }
  if (!answer.is_object() || !answer.contains("data") || !answer["data"].is_object()) {
    return Status::InvalidArgument(shook + ": the answer has no \"data\" object");
  }
  bearer_header_ = "Authorization: Bearer " + log::Base64Encode(answer["data"].dump());
  session_start_ = Now();
  handshakes_++;
  return Status::Ok();
}

}  // namespace cloister::client
