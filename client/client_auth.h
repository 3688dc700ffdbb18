// Client authentication for the agent's requests to the controller: which credential the node
// uses (Credentials), and the object that turns it into request headers (ClientAuth).
//
// Kinds (docs/auth.md; the seeds' `ankacluster join` flags):
//   - none: no headers (a controller without ANKA_ENABLE_AUTH);
//   - root token: "Authorization: Basic base64(root:TOKEN)";
//   - API key (UAK) + TAP: the key id and an RSA private key. ClientAuth runs the handshake
//     lazily, on the first request: POST /tap/v1/hand {"id"} answers the base64 of the secret
//     encrypted with RSA-OAEP (SHA-256, MGF1-SHA-256); POST /tap/v1/shake {"id","secret"}
//     answers {"id","data":{"userName","token","sessionId"}}; every later request carries
//     "Authorization: Bearer base64(JSON of data)". The session is kept until the controller
//     answers 401 (expired or revoked; ControllerClient then calls Invalidate and retries the
//     request once with a fresh session) or until it is older than max_session_age;
//   - client certificate (mTLS): no headers; ControllerClientOptions carries the PEM paths to
//     libcurl.
//
// Secrets: the root token, the private key, the TAP secret, the session and the Authorization
// header never appear in an error message or a log line. Key errors name the flag and the file
// ("--api-key-file /x: not an RSA private key"), never the key's text.
//
// Thread-safety: ClientAuth may be shared by clients on several threads (the agent's loops share
// one, so the node holds one TAP session). A handshake holds its lock while it runs (bounded by
// tap_timeout_ms per request), so threads that need a session meanwhile wait for that one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "log/status.h"

namespace cloister::client {

enum class CredentialKind { kNone, kRootToken, kApiKey, kClientCertificate };

// The credential settings as the join flags give them (and node.json keeps them). Fields of one
// kind only may be set.
struct Credentials {
  std::string root_token;      // --root-token.
  std::string api_key_id;      // --api-key-id.
  std::string api_key_string;  // --api-key-string: the private key itself (RsaPrivateKey::Parse).
  std::string api_key_file;    // --api-key-file: a file holding it.
  std::string cert_file;       // --cert: the client certificate, PEM.
  std::string cert_key_file;   // --cert-key: its private key, PEM (empty: inside cert_file).
};

// The kind the fields describe. kInvalidArgument, naming the flags, when they mix kinds ("give
// one credential only: --root-token, --api-key-id with ...") or one is incomplete (an API key
// without its id, an id without a key, both a key string and a key file, a --cert-key without
// --cert).
Result<CredentialKind> CredentialKindOf(const Credentials& credentials);

// An RSA private key, parsed once. Immutable; any thread may use it.
class RsaPrivateKey {
 public:
  // text: PEM PKCS#1 ("BEGIN RSA PRIVATE KEY"), PEM PKCS#8 ("BEGIN PRIVATE KEY"), or the bare
  // base64 of the PKCS#1 (or PKCS#8) DER, as POST /api/v1/apikey returns it; surrounding and
  // embedded whitespace is ignored. source names it in errors ("--api-key-string"). Errors
  // (kInvalidArgument): "<source>: not an RSA private key" and the like; encrypted keys are
  // refused (there is no one to ask for a passphrase).
  static Result<std::shared_ptr<const RsaPrivateKey>> Parse(const std::string& text,
                                                            const std::string& source);
  // Reads path and Parses it with source "--api-key-file <path>"; kNotFound/kIoError if the file
  // cannot be read.
  static Result<std::shared_ptr<const RsaPrivateKey>> Load(const std::string& path);

  ~RsaPrivateKey();
  RsaPrivateKey(const RsaPrivateKey&) = delete;
  RsaPrivateKey& operator=(const RsaPrivateKey&) = delete;

  // RSA-OAEP decryption with SHA-256 and MGF1-SHA-256. kInvalidArgument if ciphertext was not
  // made with this key's public half.
  Result<std::string> DecryptOaepSha256(const std::string& ciphertext) const;

 private:
  explicit RsaPrivateKey(void* pkey) : pkey_(pkey) {}
  void* pkey_ = nullptr;  // EVP_PKEY*, owned.
};

// One raw HTTP exchange, without credentials and without envelope parsing (TAP's answers are
// not Anka envelopes).
struct RawReply {
  int http_status = 0;
  std::string body;
};
// Sends a POST of json_body to path ("/tap/v1/hand") on the controller. A transport failure is
// an error Status.
using RawPost =
    std::function<Result<RawReply>(const std::string& path, const std::string& json_body)>;

struct ClientAuthOptions {
  // A TAP session older than this is renewed before the next request (the controller's TTL is
  // unknown here; its default is 5 minutes). 0: only on 401.
  std::chrono::milliseconds max_session_age{std::chrono::minutes(4)};
  // Bounds each of hand and shake (ControllerClient uses it for its RawPost).
  long tap_timeout_ms = 10'000;
  // The clock for max_session_age (tests inject one); default steady_clock::now.
  std::function<std::chrono::steady_clock::time_point()> now;
};

class ClientAuth {
 public:
  // Checks the credentials (CredentialKindOf) and parses an API key now, once, so that a bad
  // key fails here rather than on the first request. Does no network I/O.
  static Result<std::shared_ptr<ClientAuth>> Create(const Credentials& credentials,
                                                    ClientAuthOptions options = {});

  ClientAuth(const ClientAuth&) = delete;
  ClientAuth& operator=(const ClientAuth&) = delete;

  CredentialKind kind() const { return kind_; }
  long tap_timeout_ms() const { return options_.tap_timeout_ms; }

  // "Name: value" lines to add to a request: none for kNone and kClientCertificate. For an API
  // key without a current session, first runs hand + shake through post. Errors: the transport's
  // (kIoError), a refusal by the controller (kInvalidArgument, with its message, e.g. "TAP hand
  // for API key id node-1: HTTP 404: Not found"), a challenge the key cannot decrypt
  // (kInvalidArgument: "... wrong private key for this id?").
  Result<std::vector<std::string>> Headers(const RawPost& post);

  // A request sent with headers (as Headers returned them) was answered 401. Drops that TAP
  // session (unless another thread has already replaced it) and returns true: a retry with a
  // fresh session may succeed. False for the other kinds, whose credentials cannot change.
  bool Invalidate(const std::vector<std::string>& headers);

  // Handshakes run so far (for tests and diagnostics).
  uint64_t handshakes() const;

 private:
  ClientAuth(CredentialKind kind, Credentials credentials, ClientAuthOptions options)
      : kind_(kind), credentials_(std::move(credentials)), options_(std::move(options)) {}
  std::chrono::steady_clock::time_point Now() const;
  // Runs hand + shake; on success sets bearer_header_ and session_start_. Requires mu_.
  Status Handshake(const RawPost& post);

  const CredentialKind kind_;
  const Credentials credentials_;
  const ClientAuthOptions options_;
  std::shared_ptr<const RsaPrivateKey> key_;  // kApiKey only.
  std::string basic_header_;                  // kRootToken only.
  mutable std::mutex mu_;
  std::string bearer_header_;                              // Guarded by mu_; empty: no session.
  std::chrono::steady_clock::time_point session_start_{};  // Guarded by mu_.
  uint64_t handshakes_ = 0;                                // Guarded by mu_.
};

}  // namespace cloister::client
