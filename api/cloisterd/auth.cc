#include "api/cloisterd/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "api/cloisterd/certificates.h"
#include "api/cloisterd/tap.h"
#include "api/peer_certificate.h"
#include "log/atomic_file.h"
#include "log/base64.h"
#include "log/hash.h"

namespace cloister::cloisterd {
namespace {

// The credentials after a case-insensitive scheme name and its space ("Basic ", "Bearer "), with
// surrounding spaces removed; nullopt for another scheme.
std::optional<std::string_view> SchemeCredentials(std::string_view value, std::string_view scheme) {
  if (value.size() <= scheme.size() || value[scheme.size()] != ' ') {
    return std::nullopt;
  }
  for (size_t i = 0; i < scheme.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(value[i])) != scheme[i]) {
      return std::nullopt;
    }
  }
  value.remove_prefix(scheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  return value;
}

AuthOutcome Refused(std::string claimed, std::string reason,
                    fb::AuthMethod method = fb::AuthMethod::RootToken) {
  AuthOutcome outcome;
  outcome.kind = AuthOutcome::Kind::kRefused;
  outcome.method = method;
  outcome.claimed = std::move(claimed);
  outcome.reason = std::move(reason);
  return outcome;
}

}  // namespace

TokenDigest DigestToken(std::string_view token) {
  TokenDigest digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

std::string NewRootToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return "";
  }
  std::string text = log::Base64Encode(std::string_view(reinterpret_cast<char*>(bytes), 32));
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  text.erase(std::remove(text.begin(), text.end(), '='), text.end());
  OPENSSL_cleanse(bytes, sizeof(bytes));
  return "rta_" + text;
}

bool Authenticator::IsOpenPath(std::string_view path) {
  return path == "/livez" || path == "/readyz" || path.starts_with("/tap/v1/");
}

AuthOutcome Authenticator::Authenticate(const api::Request& request, int64_t now_ns) {
  if (!enabled() || IsOpenPath(request.path)) {
    return AuthOutcome{};
  }
  const std::string* header = request.headers.Find("Authorization");
  if (header == nullptr) {
    // No Authorization: a client certificate, forwarded by an ingress or from the handshake.
    if (ca_ != nullptr) {
      if (std::optional<AuthOutcome> forwarded = Ingress(request, now_ns)) {
        return *forwarded;
      }
      if (request.client_cert != nullptr) {
        return Certificate(*request.client_cert, fb::AuthMethod::Certificate, now_ns);
      }
    }
    return Refused("", "no credentials", fb::AuthMethod::Unknown);
  }
  if (request.headers.Count("Authorization") > 1) {
    return Refused("", "more than one Authorization header", fb::AuthMethod::Unknown);
  }
  if (std::optional<std::string_view> basic = SchemeCredentials(*header, "basic")) {
    // The header that last proved the root token is remembered (in memory only; cloisterd
    // makes no core dumps): the same header again needs no decoding or hashing.
    if (!root_header_.empty() && header->size() == root_header_.size() &&
        CRYPTO_memcmp(header->data(), root_header_.data(), header->size()) == 0) {
      return RootOutcome();
    }
    AuthOutcome outcome = Root(*basic);
    if (outcome.kind == AuthOutcome::Kind::kAuthenticated) {
      root_header_ = *header;
    }
    return outcome;
  }
  if (std::optional<std::string_view> bearer = SchemeCredentials(*header, "bearer")) {
    if (tap_ == nullptr) {
      return Refused("", "API keys are not enabled", fb::AuthMethod::SessionToken);
    }
    return tap_->Bearer(*bearer, now_ns);
  }
  return Refused("", "unsupported authorization scheme", fb::AuthMethod::Unknown);
}

std::optional<AuthOutcome> Authenticator::Ingress(const api::Request& request,
                                                  int64_t now_ns) const {
  const size_t verify_count = request.headers.Count("Ssl-Client-Verify");
  const size_t cert_count = request.headers.Count("Ssl-Client-Cert");
  if (ingress_ == nullptr || (verify_count == 0 && cert_count == 0)) {
    return std::nullopt;  // Without ANKA_ENABLE_INGRESS_NGINX the headers mean nothing.
  }
  constexpr fb::AuthMethod kMethod = fb::AuthMethod::IngressCertificate;
  if (!ingress_->Contains(PeerAddress(request.peer))) {
    // Anyone can send these headers; only a trusted proxy's are believed, and a forgery is
    // refused outright (and recorded) rather than passed on to other credentials.
    return Refused("", "ingress certificate headers from an untrusted peer", kMethod);
  }
  if (verify_count != 1 || cert_count != 1) {
    return Refused("", "Ssl-Client-Verify and Ssl-Client-Cert must each appear once", kMethod);
  }
  if (*request.headers.Find("Ssl-Client-Verify") != "SUCCESS") {
    return Refused("", "the ingress did not verify the client certificate", kMethod);
  }
  auto cert = ParseIngressCertificate(*request.headers.Find("Ssl-Client-Cert"));
  if (!cert.ok()) {
    return Refused("", "unreadable Ssl-Client-Cert", kMethod);
  }
  return Certificate(*cert.value(), kMethod, now_ns);
}

AuthOutcome Authenticator::Certificate(const api::PeerCertificate& cert, fb::AuthMethod method,
                                       int64_t now_ns) const {
  CertCheck check = ca_->Check(cert, now_ns / 1'000'000'000);
  if (check.ok && views_ != nullptr && views_->revocations.certificates.contains(check.serial_hex)) {
    check.ok = false;
    check.reason = "certificate revoked";
  }
  if (!check.ok) {
    return Refused(check.user.substr(0, 64), check.reason, method);
  }
  AuthOutcome outcome;
  outcome.kind = AuthOutcome::Kind::kAuthenticated;
  outcome.method = method;
  outcome.principal = engine::Principal{method == fb::AuthMethod::IngressCertificate
                                            ? fb::ActorKind::IngressCertificate
                                            : fb::ActorKind::Certificate,
                                        check.user, check.groups};
  return outcome;
}

AuthOutcome Authenticator::Root(std::string_view credentials) const {
  if (!root_) {
    return Refused("", "no root token is configured");
  }
  std::optional<std::string> decoded = log::Base64Decode(credentials);
  const size_t colon = decoded ? decoded->find(':') : std::string::npos;
  if (colon == std::string::npos) {
    return Refused("", "malformed basic credentials");
  }
  const std::string user = decoded->substr(0, colon);
  const TokenDigest given = DigestToken(std::string_view(*decoded).substr(colon + 1));
  OPENSSL_cleanse(decoded->data(), decoded->size());
  // Only the digests are compared, in constant time, and the user name after, so the time
  // taken says nothing about how much of the token matched.
  const bool token_ok = CRYPTO_memcmp(given.data(), root_->data(), given.size()) == 0;
  if (user != "root" && !user.empty()) {
    return Refused(user.substr(0, 64), "unknown user");
  }
  if (!token_ok) {
    return Refused("root", "wrong root token");
  }
  return RootOutcome();
}

AuthOutcome Authenticator::RootOutcome() {
  AuthOutcome outcome;
  outcome.kind = AuthOutcome::Kind::kAuthenticated;
  outcome.method = fb::AuthMethod::RootToken;
  outcome.principal = engine::Principal{fb::ActorKind::Root, "root", {}};
  return outcome;
}

bool FailureLimiter::Allow(const std::string& source, Clock::time_point now,
                           uint32_t* retry_after_s) {
  constexpr auto kWindow = std::chrono::minutes(1);
  if (windows_.size() > 100'000) {
    // Bounded memory under a spray of sources: forget windows that are over.
    std::erase_if(windows_, [&](const auto& entry) { return now - entry.second.start >= kWindow; });
  }
  Window& window = windows_[source];
  if (window.failures == 0 || now - window.start >= kWindow) {
    window = Window{now, 0};
  }
  window.failures++;
  if (window.failures <= kFailuresPerMinute) {
    return true;
  }
  const auto left =
      std::chrono::duration_cast<std::chrono::seconds>(kWindow - (now - window.start));
  *retry_after_s = static_cast<uint32_t>(std::max<int64_t>(1, left.count() + 1));
  return false;
}

std::string RootTokenDigestPath(const std::string& data_dir) {
  return data_dir + "/root_token.sha256";
}

Status WriteRootTokenDigest(const std::string& data_dir, const TokenDigest& digest) {
  const std::string path = RootTokenDigestPath(data_dir);
  if (access(path.c_str(), F_OK) == 0) {
    return Status::Busy(path + " exists: remove it first to make a new root token");
  }
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  return log::WriteFileAtomic(path, log::HashHex(digest) + "\n", 0600);
}

Result<TokenDigest> ReadRootTokenDigest(const std::string& data_dir) {
  const std::string path = RootTokenDigestPath(data_dir);
  std::ifstream in(path);
  if (!in) {
    return Status::NotFound(path + " not found");
  }
  std::string hex;
  in >> hex;
  TokenDigest digest{};
  if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    return Status::Corruption(path + ": not a SHA-256 in hex");
  }
  for (size_t i = 0; i < digest.size(); i++) {
    digest[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
  return digest;
}

std::string PeerAddress(std::string_view peer) {
  if (peer.starts_with("[")) {
    const size_t close = peer.find(']');
    return std::string(peer.substr(1, close == std::string_view::npos ? peer.size() : close - 1));
  }
  const size_t colon = peer.rfind(':');
  return std::string(colon == std::string_view::npos ? peer : peer.substr(0, colon));
}

api::Response AuthenticationRequired() {
  api::Response response = api::FailResponse(401, "Authentication Required");
  response.headers.Add("WWW-Authenticate", "Basic realm=\"cloister\"");
  return response;
}

}  // namespace cloister::cloisterd
