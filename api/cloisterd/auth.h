// Authenticator: who a request is, from its credentials (docs/auth.md).
//
// This build knows the root token (RTA, seed 003): with ANKA_ENABLE_AUTH=true every path but
// /livez, /readyz and /tap/v1/* needs `Authorization: Basic base64(root:TOKEN)` (an empty user
// name is accepted too: a real client sends ":TOKEN"). The token is held only as its SHA-256 and
// compared in constant time; it never reaches a log line, an event or an error message. UAK/TAP
// and certificates are later parts of the authentication issue and plug in here.
//
// Failed attempts are limited per source address (FailureLimiter): past the limit the answer
// is 429 with Retry-After and no further event is recorded, so a password-guessing client can
// neither guess quickly nor flood the log.
//
// Thread-safety: none needed; everything runs on the event-loop thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "api/http_types.h"
#include "engine/principal.h"
#include "reducers/views.h"
#include "log/status.h"

namespace cloister::cloisterd {

using TokenDigest = std::array<uint8_t, 32>;

// SHA-256 of a root token: what is kept instead of it.
TokenDigest DigestToken(std::string_view token);

// "rta_" + 32 random bytes in base64url: a new root token for `cloisterd --init`.
std::string NewRootToken();

struct AuthOutcome {
  enum class Kind {
    kOpen,           // Authentication is off, or the path is open: the principal is Anonymous.
    kAuthenticated,  // principal is who it is.
    kRefused,        // No or wrong credentials: answer 401; claimed and reason say what failed.
  };
  Kind kind = Kind::kOpen;
  fb::AuthMethod method = fb::AuthMethod::Unknown;  // The credential tried (for the event).
  engine::Principal principal = engine::Principal::Anonymous();
  std::string claimed;  // The user name claimed (never the credential).
  std::string reason;   // "no credentials", "wrong root token", ...
};

class Tap;
class CertificateAuthority;
class TrustedProxies;

class Authenticator {
 public:
  // enabled: ANKA_ENABLE_AUTH. root_token: the digest Basic credentials must match (nullopt:
  // none, e.g. certificates only).
  Authenticator(bool enabled, std::optional<TokenDigest> root_token)
      : enabled_(enabled), root_(root_token) {}

  bool enabled() const { return enabled_; }

  // Bearer credentials (UAK sessions) are checked by tap; nullptr refuses them.
  void SetTap(Tap* tap) { tap_ = tap; }

  // Client certificates (ANKA_CA_CERT): from the TLS handshake, and (ingress: non-null) from a
  // trusted proxy's Ssl-Client-Verify / Ssl-Client-Cert headers. views: for serials revoked
  // through the API. All must outlive the authenticator.
  void SetCertificates(const CertificateAuthority* ca, const TrustedProxies* ingress,
                       const reducers::Views* views) {
    ca_ = ca;
    ingress_ = ingress;
    views_ = views;
  }

  // Paths that never need credentials: probes, and the TAP handshake that obtains them.
  static bool IsOpenPath(std::string_view path);

  // now_ns: wall time, for session and certificate expiry.
  AuthOutcome Authenticate(const api::Request& request, int64_t now_ns);

 private:
  AuthOutcome Root(std::string_view credentials) const;
  static AuthOutcome RootOutcome();
  // A client certificate (from TLS, or forwarded by a trusted ingress).
  AuthOutcome Certificate(const api::PeerCertificate& cert, fb::AuthMethod method,
                          int64_t now_ns) const;
  // The ingress headers; nullopt when the request has none.
  std::optional<AuthOutcome> Ingress(const api::Request& request, int64_t now_ns) const;

  bool enabled_ = false;
  std::optional<TokenDigest> root_;
  std::string root_header_;  // The Authorization value that last proved the root token.
  Tap* tap_ = nullptr;
  const CertificateAuthority* ca_ = nullptr;
  const TrustedProxies* ingress_ = nullptr;
  const reducers::Views* views_ = nullptr;
};

// Counts failed authentications per source address in fixed one-minute windows.
class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint32_t kFailuresPerMinute = 20;

  // Records a failure from source; false (and *retry_after_s set) once the source is over the
  // limit for the current window.
  bool Allow(const std::string& source, Clock::time_point now, uint32_t* retry_after_s);

 private:
  struct Window {
    Clock::time_point start;
    uint32_t failures = 0;
  };
  std::map<std::string, Window> windows_;
};

// DIR/root_token.sha256: the digest `cloisterd --init` keeps (64 hex digits and a newline).
std::string RootTokenDigestPath(const std::string& data_dir);
// Writes it (mode 0600, atomically); kBusy if there is one already.
Status WriteRootTokenDigest(const std::string& data_dir, const TokenDigest& digest);
// Reads it; kNotFound if there is none, kCorruption if it is not 64 hex digits.
Result<TokenDigest> ReadRootTokenDigest(const std::string& data_dir);

// "127.0.0.1:5123" -> "127.0.0.1", "[::1]:80" -> "::1".
std::string PeerAddress(std::string_view peer);

// The exact 401 Anka answers: {"status":"FAIL","message":"Authentication Required"}.
api::Response AuthenticationRequired();

}  // namespace cloister::cloisterd
