// Tap: user API keys (UAK) and the Token Authentication Protocol (seed 002, docs/auth.md).
//
//   POST /tap/v1/hand  {"id"}            -> raw body: standard base64 of RSA-OAEP(SHA-256,
//                                           MGF1-SHA-256) of a fresh secret under the key's
//                                           public key
//   POST /tap/v1/shake {"id","secret"}   -> raw {"id","data":{"userName","token","sessionId"}}
//   Authorization: Bearer base64(JSON(data)) on every later request.
//
// The secret is base64url of 32 random bytes (printable: clients turn the decrypted bytes
// straight into a string). It is single-use and lives secret_ttl; consuming it is one erase on
// the loop thread, so of any number of concurrent shakes with one secret exactly one wins.
// A hand for an unknown, revoked or expired id encrypts a random secret under a dummy RSA-2048
// key made at start and stores nothing: the answer has the shape, size and cost of a real one,
// so a caller cannot tell which ids exist. Hands are never counted as failures (the same
// enumeration rule); failed shakes and bearers are, per source and per key id.
//
// Nothing secret is kept or recorded: challenges, session ids and tokens are held as
// HMAC-SHA256 under the server key (KeyedHash, DATA/server.key) and compared in constant time.
// Sessions are engine state (SessionOpened; views().sessions), so they survive a restart and a
// key's deletion or a revocation ends them at once.
//
// Threading: the event-loop thread (with the engine).
#pragma once

#include <openssl/evp.h>

#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "api/cloisterd/auth.h"
#include "api/http_types.h"
#include "engine/clock.h"
#include "engine/engine.h"
#include "log/hash.h"
#include "log/status.h"

namespace cloister::cloisterd {

// HMAC-SHA256 under the server's key. The key is 32 random bytes in DATA/server.key (0600),
// made on first start and kept, so digests in the log stay comparable across restarts.
class KeyedHash {
 public:
  static Result<KeyedHash> LoadOrCreate(const std::string& data_dir);
  explicit KeyedHash(const std::array<uint8_t, 32>& key) : key_(key) {}

  // HMAC(key, purpose || 0 || value): one key, separate domains ("secret", "session", "token").
  log::Hash Of(std::string_view purpose, std::string_view value) const;

 private:
  std::array<uint8_t, 32> key_;
};

// RSA keys parsed once (parsing costs several times the encryption) and freed with the cache.
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// DER (PKIX SubjectPublicKeyInfo) or PEM "PUBLIC KEY" text -> an RSA public key; errors say why.
Result<Pkey> ParseRsaPublicKey(std::string_view der_or_pem);
// A new RSA-2048 key pair.
Result<Pkey> GenerateRsaKey();
// The public half as PKIX DER; the private half as PKCS#1 DER (what POST /api/v1/apikey returns,
// base64-encoded, when it generates the pair).
std::string PublicKeyDer(EVP_PKEY* key);
std::string PrivateKeyPkcs1Der(EVP_PKEY* key);
// RSA-OAEP with SHA-256 and MGF1-SHA-256.
Result<std::string> OaepEncrypt(EVP_PKEY* key, std::string_view plain);

// Pre-made RSA-2048 key pairs for POST /api/v1/apikey without a publicKey: making one takes
// 100-300 ms, which must not stall the event loop. The first Take makes its pair inline and
// starts a worker that keeps kReady pairs waiting; the pairs never leave memory unless taken.
class KeyPairPool {
 public:
  static constexpr size_t kReady = 2;
  KeyPairPool() = default;
  ~KeyPairPool();
  KeyPairPool(const KeyPairPool&) = delete;
  KeyPairPool& operator=(const KeyPairPool&) = delete;

  Result<Pkey> Take();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pkey> ready_;
  bool stop_ = false;
  std::thread worker_;  // Started by the first Take.
};

struct TapOptions {
  bool enabled = false;             // ANKA_ENABLE_API_KEYS.
  int64_t session_ttl_ns = 300'000'000'000;  // ANKA_API_KEYS_SESSION_TTL (or the setting).
  int64_t secret_ttl_ns = 180'000'000'000;   // CLOISTER_TAP_SECRET_TTL.
};

class Tap {
 public:
  using Respond = std::function<void(api::Response)>;
  // Called for every failed shake, before it is answered; returns false when the caller is over
  // its failure limit (the answer is then the 429 already sent through respond).
  using OnFailure = std::function<bool(const std::string& claimed_id, const std::string& reason,
                                       fb::AuthMethod method, Respond& respond)>;

  // clock: wall time for secret expiry (the engine's clock, so tests can move it).
  static Result<std::unique_ptr<Tap>> Create(TapOptions options, engine::Engine* engine,
                                             engine::Clock* clock, KeyedHash hash);

  bool enabled() const { return options_.enabled; }

  // POST /tap/v1/hand and /tap/v1/shake (routes for /tap/v1/*).
  void Handle(const api::Request& request, Respond respond, const OnFailure& on_failure);

  // Authorization: Bearer <credentials>. kAuthenticated with the key's principal, or kRefused
  // with the key id claimed (when readable) and why.
  AuthOutcome Bearer(std::string_view credentials, int64_t now_ns);

  // Drops expired challenges (called every second).
  void Tick(int64_t now_ns);

  // A new key pair for a key the server generates (see KeyPairPool).
  Result<Pkey> NewKeyPair() { return key_pairs_.Take(); }

  // Outstanding challenges (for tests).
  size_t challenges() const { return challenges_.size(); }

  // The session's digest for a session id given to POST /api/v1/revoke.
  log::Hash SessionDigest(std::string_view session_id) const {
    return hash_.Of("session", session_id);
  }

  // The effective session lifetime: the api_keys_session_ttl setting when set, else the option.
  int64_t SessionTtlNs() const;

 private:
  Tap(TapOptions options, engine::Engine* engine, engine::Clock* clock, KeyedHash hash,
      Pkey dummy)
      : options_(options), engine_(engine), clock_(clock), hash_(hash), dummy_(std::move(dummy)) {}

  void Hand(const api::Request& request, Respond respond);
  void Shake(const api::Request& request, Respond respond, const OnFailure& on_failure);
  // The usable key (parsed, cached) or nullptr for unknown, disabled or expired ids.
  EVP_PKEY* UsableKey(const std::string& key_id, int64_t now_ns);

  struct Challenge {
    std::string key_id;
    int64_t expires_ns = 0;
  };
  struct CachedKey {
    log::Hash fingerprint{};
    Pkey key;
  };
  struct CachedBearer {
    std::string session_key;  // Hex digest: the sessions view's key.
    std::string key_id;
  };

  TapOptions options_;
  engine::Engine* engine_;
  engine::Clock* clock_;
  KeyedHash hash_;
  Pkey dummy_;
  std::unordered_map<std::string, Challenge> challenges_;  // By HMAC("secret", secret) bytes.
  std::deque<std::string> issued_;  // Keys of challenges_ (and consumed ones), oldest first.
  std::map<std::string, CachedKey> keys_;                  // By key id.
  // A Bearer's credentials -> the session they named, once verified: later requests with the
  // same header skip decoding and two HMACs, and still check the session in the views. (Held in
  // memory only, as the request itself is; cloisterd makes no core dumps.)
  std::unordered_map<std::string, CachedBearer> bearers_;
  KeyPairPool key_pairs_;
};

}  // namespace cloister::cloisterd
