#include "api/cloisterd/tap.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "api/cloisterd/envelope.h"
#include "api/cloisterd/request_fields.h"
#include "engine/config_keys.h"
#include "log/atomic_file.h"
#include "log/base64.h"

namespace cloister::cloisterd {
namespace {

constexpr size_t kChallengesMax = 200'000;  // Outstanding secrets (unconsumed hands).
constexpr size_t kBearerCacheMax = 100'000;
constexpr int kRsaBits = 2048;

std::string RandomBytes(size_t n) {
  std::string bytes(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
    return "";
  }
  return bytes;
}

// base64url without padding: what the secret and the session token look like.
std::string Base64Url(std::string_view bytes) {
  std::string text = log::Base64Encode(bytes);
  for (char& c : text) {
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  while (!text.empty() && text.back() == '=') {
    text.pop_back();
  }
  return text;
}

// A random (version 4) UUID: the session id's shape in the seed.
std::string NewUuid() {
  std::string b = RandomBytes(16);
  b[6] = static_cast<char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3F) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[static_cast<uint8_t>(b[i]) >> 4];
    out += kHex[static_cast<uint8_t>(b[i]) & 0xF];
  }
  return out;
}

std::string ErrorText() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) {
    return "unknown error";
  }
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

api::Response RawJson(const std::string& body) {
  api::Response response;
  response.content_type = "application/json";
  response.body = body;
  return response;
}

}  // namespace

// ---- KeyedHash --------------------------------------------------------------------------------

Result<KeyedHash> KeyedHash::LoadOrCreate(const std::string& data_dir) {
  const std::string path = data_dir + "/server.key";
  std::array<uint8_t, 32> key{};
  std::ifstream in(path);
  if (in) {
    std::string hex;
    in >> hex;
    if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) != 0;
        })) {
      return Status::Corruption(path + ": not 32 bytes in hex (remove it to make a new key; "
                                       "existing sessions then end)");
    }
    for (size_t i = 0; i < key.size(); i++) {
      key[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    }
    OPENSSL_cleanse(hex.data(), hex.size());
    return KeyedHash(key);
  }
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    return Status::IoError("no randomness for the server key");
  }
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  std::string hex = log::HashHex(key);
  Status written = log::WriteFileAtomic(path, hex + "\n", 0600);
  OPENSSL_cleanse(hex.data(), hex.size());
  if (!written.ok()) {
    return written;
  }
  return KeyedHash(key);
}

log::Hash KeyedHash::Of(std::string_view purpose, std::string_view value) const {
  std::string input;
  input.reserve(purpose.size() + 1 + value.size());
  input.append(purpose).push_back('\0');
  input.append(value);
  log::Hash out{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), out.data(), &length);
  OPENSSL_cleanse(input.data(), input.size());
  return out;
}

// ---- RSA --------------------------------------------------------------------------------------

Result<Pkey> ParseRsaPublicKey(std::string_view der_or_pem) {
  Pkey key;
  if (der_or_pem.starts_with("-----BEGIN")) {
    BIO* bio = BIO_new_mem_buf(der_or_pem.data(), static_cast<int>(der_or_pem.size()));
    key.reset(PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
  } else {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der_or_pem.data());
    key.reset(d2i_PUBKEY(nullptr, &p, static_cast<long>(der_or_pem.size())));
    if (key && p != reinterpret_cast<const unsigned char*>(der_or_pem.data()) +
                        der_or_pem.size()) {
      key.reset();
    }
  }
  if (!key) {
    ERR_clear_error();
    return Status::InvalidArgument("publicKey is not a PKIX (SubjectPublicKeyInfo) public key");
  }
  if (!EVP_PKEY_is_a(key.get(), "RSA") || EVP_PKEY_get_bits(key.get()) != kRsaBits) {
    return Status::InvalidArgument("publicKey must be an RSA 2048-bit key");
  }
  return key;
}

Result<Pkey> GenerateRsaKey() {
  Pkey key(EVP_RSA_gen(kRsaBits));
  if (!key) {
    return Status::IoError("RSA key generation failed: " + ErrorText());
  }
  return key;
}

std::string PublicKeyDer(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key, &der);
  if (n <= 0) {
    return "";
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

std::string PrivateKeyPkcs1Der(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int n = i2d_PrivateKey(key, &der);  // RSA keys: the traditional form, PKCS#1.
  if (n <= 0) {
    return "";
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_clear_free(der, static_cast<size_t>(n));
  return out;
}

Result<std::string> OaepEncrypt(EVP_PKEY* key, std::string_view plain) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key, nullptr);
  std::string out;
  size_t n = 0;
  const bool ok =
      ctx != nullptr && EVP_PKEY_encrypt_init(ctx) == 1 &&
      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) == 1 &&
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1 &&
      EVP_PKEY_encrypt(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(plain.data()),
                       plain.size()) == 1 &&
      (out.resize(n), true) &&
      EVP_PKEY_encrypt(ctx, reinterpret_cast<unsigned char*>(out.data()), &n,
                       reinterpret_cast<const unsigned char*>(plain.data()), plain.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    return Status::IoError("RSA-OAEP encryption failed: " + ErrorText());
  }
  out.resize(n);
  return out;
}

// ---- KeyPairPool ------------------------------------------------------------------------------

KeyPairPool::~KeyPairPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
}

Result<Pkey> KeyPairPool::Take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!worker_.joinable()) {
      worker_ = std::thread([this] { Run(); });
    }
    if (!ready_.empty()) {
      Pkey key = std::move(ready_.front());
      ready_.pop_front();
      cv_.notify_all();
      return key;
    }
  }
  return GenerateRsaKey();  // None ready yet: the first take, or a burst of them.
}

void KeyPairPool::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || ready_.size() < kReady; });
    if (stop_) {
      return;
    }
    lock.unlock();
    Result<Pkey> key = GenerateRsaKey();
    lock.lock();
    if (key.ok()) {
      ready_.push_back(std::move(key).value());
    }
  }
}

// ---- Tap --------------------------------------------------------------------------------------

Result<std::unique_ptr<Tap>> Tap::Create(TapOptions options, engine::Engine* engine,
                                         engine::Clock* clock, KeyedHash hash) {
  Result<Pkey> dummy = GenerateRsaKey();
  if (!dummy.ok()) {
    return dummy.status();
  }
  return std::unique_ptr<Tap>(new Tap(options, engine, clock, hash, std::move(dummy).value()));
}

int64_t Tap::SessionTtlNs() const {
  const auto& entries = engine_->views().config.entries;
  auto it = entries.find("api_keys_session_ttl");
  if (it != entries.end()) {
    const int64_t seconds = engine::ParseDurationSeconds(it->second.value);
    if (seconds > 0) {
      return seconds * 1'000'000'000;
    }
  }
  return options_.session_ttl_ns;
}

void Tap::Handle(const api::Request& request, Respond respond, const OnFailure& on_failure) {
  if (!options_.enabled) {
    respond(api::FailResponse(404, "API keys are not enabled (ANKA_ENABLE_API_KEYS)"));
    return;
  }
  const bool hand = request.path == "/tap/v1/hand";
  if (!hand && request.path != "/tap/v1/shake") {
    respond(api::FailResponse(404, "not found"));
    return;
  }
  if (request.method != "POST") {
    respond(api::FailResponse(405, "method not allowed"));
    return;
  }
  hand ? Hand(request, std::move(respond)) : Shake(request, std::move(respond), on_failure);
}

EVP_PKEY* Tap::UsableKey(const std::string& key_id, int64_t now_ns) {
  const auto& keys = engine_->views().api_keys.keys;
  auto it = keys.find(key_id);
  if (it == keys.end() || !it->second.enabled ||
      (it->second.expires_ns != 0 && it->second.expires_ns <= now_ns)) {
    return nullptr;
  }
  CachedKey& cached = keys_[key_id];
  if (!cached.key || cached.fingerprint != it->second.public_key_fingerprint) {
    Result<Pkey> parsed = ParseRsaPublicKey(it->second.public_key_pem);
    if (!parsed.ok()) {
      keys_.erase(key_id);
      return nullptr;
    }
    cached.key = std::move(parsed).value();
    cached.fingerprint = it->second.public_key_fingerprint;
  }
  return cached.key.get();
}

void Tap::Hand(const api::Request& request, Respond respond) {
  const std::optional<nlohmann::json> body = BodyObject(request);
  const nlohmann::json object = body.value_or(nlohmann::json::object());
  std::string id;
  Fields fields(object);
  if (!body || !fields.String("id", &id) || id.empty()) {
    respond(api::FailResponse(400, body ? (fields.error().empty() ? "id is required"
                                                                  : fields.error())
                                        : "the body must be a JSON object"));
    return;
  }
  const int64_t now_ns = clock_->NowNs();
  std::string secret = Base64Url(RandomBytes(32));
  EVP_PKEY* key = UsableKey(id, now_ns);
  const log::Hash digest = hash_.Of("secret", secret);  // Also for unknown ids: the same work.
  if (key != nullptr) {
    std::string slot(digest.begin(), digest.end());
    challenges_[slot] = Challenge{id, now_ns + options_.secret_ttl_ns};
    issued_.push_back(std::move(slot));
    // Bounded memory under a flood of hands: the oldest go first. A real client shakes within
    // milliseconds of its hand, so a flood must issue kChallengesMax hands in that time to push
    // its secret out; consumed ones are dropped from issued_ as they reach its front.
    while (challenges_.size() > kChallengesMax || issued_.size() > 2 * kChallengesMax) {
      challenges_.erase(issued_.front());
      issued_.pop_front();
    }
  }
  // Unknown ids get the same work and the same shape: a secret nobody can use, under the dummy.
  Result<std::string> sealed = OaepEncrypt(key != nullptr ? key : dummy_.get(), secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  if (!sealed.ok()) {
    respond(api::FailResponse(500, "internal error"));
    return;
  }
  api::Response response;
  response.content_type = "text/plain; charset=utf-8";
  response.body = log::Base64Encode(sealed.value());
  respond(std::move(response));
}

void Tap::Shake(const api::Request& request, Respond respond, const OnFailure& on_failure) {
  const std::optional<nlohmann::json> body = BodyObject(request);
  const nlohmann::json object = body.value_or(nlohmann::json::object());
  std::string id;
  std::string secret;
  Fields fields(object);
  if (!body || !fields.String("id", &id) || !fields.String("secret", &secret) || id.empty() ||
      secret.empty()) {
    respond(api::FailResponse(400, "id and secret are required"));
    return;
  }
  const int64_t now_ns = clock_->NowNs();
  const log::Hash digest = hash_.Of("secret", secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  auto it = challenges_.find(std::string(digest.begin(), digest.end()));
  std::string reason;
  if (it == challenges_.end() || it->second.key_id != id) {
    reason = "unknown or already used secret";
  } else {
    const bool expired = it->second.expires_ns <= now_ns;
    challenges_.erase(it);  // Single use: consumed whatever happens next.
    if (expired) {
      reason = "expired secret";
    } else if (UsableKey(id, now_ns) == nullptr) {
      reason = "API key revoked or expired";
    }
  }
  const std::string claimed = id.substr(0, 128);
  if (!reason.empty()) {
    if (on_failure(claimed, reason, fb::AuthMethod::ApiKeyTap, respond)) {
      respond(AuthenticationRequired());
    }
    return;
  }
  const reducers::ApiKey& key = engine_->views().api_keys.keys.at(id);
  const std::string session_id = NewUuid();
  std::string token = Base64Url(RandomBytes(40));
  engine::OpenSession open;
  open.key_id = id;
  open.session_digest = hash_.Of("session", session_id);
  open.token_digest = hash_.Of("token", token);
  open.ttl_ns = SessionTtlNs();
  const engine::Principal principal{fb::ActorKind::ApiKey, id, key.groups};
  engine_->Submit(
      principal, std::move(open), request.id,
      [id, session_id, token, respond = std::move(respond)](engine::Reply reply) mutable {
        if (!reply.status.ok()) {
          respond(FailedReplyResponse(reply));
        } else if (!reply.ok()) {
          respond(AuthenticationRequired());  // The key ended while the shake was in flight.
        } else {
          nlohmann::ordered_json answer;
          answer["id"] = id;
          answer["data"] = {{"userName", id}, {"token", token}, {"sessionId", session_id}};
          respond(RawJson(answer.dump()));
        }
        OPENSSL_cleanse(token.data(), token.size());
      });
}

AuthOutcome Tap::Bearer(std::string_view credentials, int64_t now_ns) {
  auto refused = [](std::string claimed, std::string reason) {
    AuthOutcome outcome;
    outcome.kind = AuthOutcome::Kind::kRefused;
    outcome.method = fb::AuthMethod::SessionToken;
    outcome.claimed = std::move(claimed);
    outcome.reason = std::move(reason);
    return outcome;
  };
  if (!options_.enabled) {
    return refused("", "API keys are not enabled");
  }
  const std::string cache_key(credentials);
  auto cached = bearers_.find(cache_key);
  CachedBearer bearer;
  if (cached != bearers_.end()) {
    bearer = cached->second;
  } else {
    std::string compact;
    for (char c : credentials) {
      if (c != ' ' && c != '\t') compact += c;
    }
    std::optional<std::string> decoded = log::Base64Decode(compact, log::Base64Alphabet::kEither);
    nlohmann::json data =
        decoded ? nlohmann::json::parse(*decoded, nullptr, false) : nlohmann::json();
    if (decoded) {
      OPENSSL_cleanse(decoded->data(), decoded->size());
    }
    if (!data.is_object() || !data.contains("userName") || !data["userName"].is_string() ||
        !data.contains("sessionId") || !data["sessionId"].is_string() ||
        !data.contains("token") || !data["token"].is_string()) {
      return refused("", "malformed bearer token");
    }
    const std::string user = data["userName"].get<std::string>().substr(0, 128);
    const log::Hash session = hash_.Of("session", data["sessionId"].get<std::string>());
    const log::Hash token = hash_.Of("token", data["token"].get<std::string>());
    data.clear();
    const std::string session_key = log::HashHex(session);
    auto found = engine_->views().sessions.sessions.find(session_key);
    if (found == engine_->views().sessions.sessions.end()) {
      return refused(user, "unknown, expired or revoked session");
    }
    if (CRYPTO_memcmp(token.data(), found->second.token_digest.data(), token.size()) != 0 ||
        found->second.key_id != user) {
      return refused(user, "session token does not match");
    }
    if (bearers_.size() >= kBearerCacheMax) {
      bearers_.clear();
    }
    bearer = CachedBearer{session_key, user};
    bearers_.emplace(cache_key, bearer);
  }
  // Whether decoded now or remembered: the session and its key must still be live.
  auto session = engine_->views().sessions.sessions.find(bearer.session_key);
  if (session == engine_->views().sessions.sessions.end() || session->second.expires_ns <= now_ns) {
    bearers_.erase(cache_key);
    return refused(bearer.key_id, "unknown, expired or revoked session");
  }
  auto key = engine_->views().api_keys.keys.find(bearer.key_id);
  if (key == engine_->views().api_keys.keys.end() || !key->second.enabled ||
      (key->second.expires_ns != 0 && key->second.expires_ns <= now_ns)) {
    bearers_.erase(cache_key);
    return refused(bearer.key_id, "API key revoked or expired");
  }
  AuthOutcome outcome;
  outcome.kind = AuthOutcome::Kind::kAuthenticated;
  outcome.principal = engine::Principal{fb::ActorKind::ApiKey, bearer.key_id, key->second.groups};
  return outcome;
}

void Tap::Tick(int64_t now_ns) {
  // issued_ is in issue order, which is expiry order (one ttl for all): drop from the front
  // what has expired or was consumed.
  while (!issued_.empty()) {
    auto it = challenges_.find(issued_.front());
    if (it != challenges_.end() && it->second.expires_ns > now_ns) {
      break;
    }
    if (it != challenges_.end()) {
      challenges_.erase(it);
    }
    issued_.pop_front();
  }
}

}  // namespace cloister::cloisterd
