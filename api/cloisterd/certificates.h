// Client-certificate authentication (mTLS, seed 001): the building blocks the auth layer uses.
//
// CertificateAuthority holds the CA certificates of ANKA_CA_CERT (or ANKA_ROOT_CERT), the CRL in
// force (ANKA_CRL) and the serials revoked through the API, and checks a PeerCertificate against
// them per request: chain to a loaded CA, validity dates, revocation, and Anka's subject rules
// (a CN= for the user, at least one O= for its groups). Refusals carry a short human reason
// without secrets ("certificate expired"), for the 401 and its audit event.
//
// Trust. Every certificate of the CA file is a trust anchor, intermediates included (as Go's
// root pool, which the Anka controller uses: X509_V_FLAG_PARTIAL_CHAIN). The client's own
// certificate must be valid for client authentication (no extendedKeyUsage, or one naming
// clientAuth).
//
// CRLs. LoadCrl accepts a CRL only if it is issued by a loaded CA and its signature verifies with
// that CA's key; otherwise it is refused and the previous CRL stays in force. While a CRL is
// loaded every certificate is checked against it (X509_V_FLAG_CRL_CHECK, the leaf only), so with
// several CAs in the file a certificate from a CA that did not issue the CRL is refused ("no CRL
// for the certificate's CA"). Once the CRL's nextUpdate has passed, every certificate login fails
// closed ("CRL expired") until a newer CRL is loaded (the seed: "If the crl.pem expires, the
// controller and registry will fail").
//
// Serials are compared in one canonical form: upper-case hex as OpenSSL's BN_bn2hex writes it
// (whole bytes, so "0A", "01F4"; zero is "0"; negative serials keep their "-"). NormalizeSerial
// turns "0x0a", "a", "000A" or "0a:1b" into that form.
//
// Cost per request. The auth layer calls Check on every request, and a keep-alive connection
// sends many with the same certificate. The expensive part, chain building and signature
// verification (X509_verify_cert), is cached: the key is PeerCertificate::fingerprint() (a
// SHA-256 of the leaf and the chain as sent, computed once per connection), so the cache is
// shared by every connection presenting the same certificates and cannot be fooled by a freed
// address being reused. An entry holds the outcome of a successful verification, the CRL
// generation it was made under and the time window in which every certificate of the verified
// chain is valid. A later Check with the same generation and a time inside that window only
// looks the serial up in the revocation sets (CRL and API) and re-applies the subject rules; a
// new CRL (a new generation) or a time outside the window makes it verify the chain again.
// Failed verifications are not cached (the auth layer's FailureLimiter bounds their rate). The
// cache is bounded (kCacheEntriesMax) and emptied when full.
//
// Thread-safety: none; one loop thread uses an authority (as the rest of the auth layer).
#pragma once

#include <openssl/x509.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/peer_certificate.h"
#include "log/status.h"

namespace cloister::cloisterd {

// What was loaded from a CRL file, for the audit event of the load and for operators.
struct CrlInfo {
  std::array<uint8_t, 32> sha256{};  // SHA-256 of the CRL's DER encoding.
  std::string issuer;                // One line: "/O=MyGroup/CN=Anka CA".
  int64_t this_update = 0;           // Unix seconds.
  int64_t next_update = 0;           // Unix seconds; 0 if the CRL has none.
  uint64_t revoked_count = 0;        // Entries in the CRL.
  uint64_t generation = 0;           // 1 for the first CRL loaded, +1 for each one accepted.
  bool expired = false;              // next_update was already past when it was loaded.
};

// The verdict on one client certificate. user and groups are what the certificate claims (UTF-8,
// no control characters; empty attributes skipped), filled also on a refusal for its audit
// event: they are an identity only when ok.
struct CertCheck {
  bool ok = false;
  std::string user;                 // CN= (the last one if several, as Go reads it).
  std::vector<std::string> groups;  // Every O=, in order, spaces kept.
  std::string serial_hex;           // Canonical form (see above); set whenever a leaf was given.
  std::string subject;              // One line, for the audit event: "/O=DevOps/CN=Jenkins".
  // On refusal: "certificate signed by an unknown CA", "certificate expired", "certificate not
  // yet valid", "certificate revoked", "certificate has no CN", "certificate has no O", "CRL
  // expired", ... Never a secret; empty when ok.
  std::string reason;
};

class CertificateAuthority {
 public:
  static constexpr size_t kCacheEntriesMax = 4096;

  // Loads every PEM certificate of ca_path (one or more CAs). Errors name setting and path:
  // "ANKA_CA_CERT /x.pem: cannot read: No such file or directory", "... no PEM certificate".
  static Result<std::unique_ptr<CertificateAuthority>> Create(
      const std::string& ca_path, std::string_view setting = "ANKA_CA_CERT");

  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  // Reads the first PEM CRL of pem_path and puts it in force if it is issued by a loaded CA and
  // its signature verifies; otherwise returns the error (naming ANKA_CRL and the path) and keeps
  // the previous CRL. A CRL whose nextUpdate is already past at now_unix is accepted all the same
  // (it is authentic; refusing it could leave no CRL at all, which would fail open) with
  // CrlInfo::expired set, and certificate logins then fail closed. Cached verifications made
  // under the previous CRL are redone.
  Result<CrlInfo> LoadCrl(const std::string& pem_path, int64_t now_unix);
  bool HasCrl() const { return crl_ != nullptr; }
  // The CRL in force has a nextUpdate and now_unix is past it. False without a CRL.
  bool CrlExpired(int64_t now_unix) const;
  // The CRL in force (generation 0 and empty fields without one).
  const CrlInfo& crl_info() const { return crl_info_; }

  // Revokes a serial at once (the API's certificate revocation), in addition to the CRL. Takes
  // any form NormalizeSerial accepts; false (and nothing revoked) if serial_hex is not hex.
  bool RevokeSerial(std::string serial_hex);
  // In the CRL in force or revoked through the API. Any form NormalizeSerial accepts.
  bool IsRevoked(std::string_view serial_hex) const;
  // "0x0a", "a", "000A", "0a:1b" -> "0A", "0A", "0A", "0A1B"; "" for text that is not hex.
  static std::string NormalizeSerial(std::string_view serial_hex);

  // The verdict on cert at now_unix (see the top of the file for the order of checks and the
  // cache).
  CertCheck Check(const api::PeerCertificate& cert, int64_t now_unix) const;

  // How many times Check ran the full chain verification (for tests and metrics).
  uint64_t chain_verifications() const { return chain_verifications_; }

 private:
  struct CacheEntry {
    uint64_t generation = 0;
    int64_t valid_from = 0;   // Latest notBefore of the verified chain.
    int64_t valid_until = 0;  // Earliest notAfter of the verified chain.
  };

  explicit CertificateAuthority(std::vector<X509*> cas);
  // Builds a store with the CAs and crl (may be null); nullptr on allocation failure.
  X509_STORE* NewStore(X509_CRL* crl) const;
  // X509_verify_cert at now_unix; on success fills *entry. Returns "" or the refusal reason.
  std::string VerifyChain(const api::PeerCertificate& cert, int64_t now_unix,
                          CacheEntry* entry) const;

  std::vector<X509*> cas_;          // Owned.
  X509_STORE* store_ = nullptr;     // Owned: cas_ and crl_.
  X509_CRL* crl_ = nullptr;         // Owned; the CRL in force or null.
  CrlInfo crl_info_;
  std::set<std::string> crl_revoked_;  // Canonical serials listed by crl_.
  std::set<std::string> api_revoked_;  // Canonical serials revoked through RevokeSerial.
  mutable std::map<api::PeerCertificate::Fingerprint, CacheEntry> cache_;
  mutable uint64_t chain_verifications_ = 0;
};

// Ssl-Client-Cert as NGINX ingress sends it ($ssl_client_escaped_cert; ANKA_ENABLE_INGRESS_NGINX,
// seed 001): a percent-encoded PEM certificate, optionally followed by its chain. Only %XX is
// decoded ('+' stays '+': it is a base64 character). Errors (kInvalidArgument, without the
// header's content) for a bad escape, no PEM certificate, or bytes after the PEM blocks that
// are not whitespace.
Result<std::shared_ptr<const api::PeerCertificate>> ParseIngressCertificate(
    std::string_view url_encoded_pem);

// The proxies whose Ssl-Client-Cert / Ssl-Client-Verify headers are believed
// (CLOISTER_TRUSTED_PROXIES): IPv4 and IPv6 addresses and CIDR blocks.
class TrustedProxies {
 public:
  static constexpr const char* kDefault = "127.0.0.0/8,::1/128";

  // Comma-separated entries: "10.0.0.0/8", "192.168.1.7" (a /32), "fd00::/8", "::1". Spaces
  // around entries and empty entries are ignored; an empty list trusts nobody. Host bits below
  // the prefix are ignored ("10.1.2.3/8" is 10.0.0.0/8). The error names the bad entry:
  // CLOISTER_TRUSTED_PROXIES: "10.0.0.0/33" is not an IPv4 or IPv6 address or CIDR block.
  static Result<TrustedProxies> Parse(std::string_view list);

  // ip: "10.1.2.3", "::1", "[::1]", or a peer as Request::peer writes it ("10.1.2.3:5000",
  // "[::1]:5000"). An IPv4-mapped IPv6 address (::ffff:10.1.2.3) matches IPv4 blocks. False for
  // anything unparsable.
  bool Contains(std::string_view ip) const;

  size_t size() const { return blocks_.size(); }

 private:
  struct Block {
    bool v6 = false;
    std::array<uint8_t, 16> address{};  // Network bytes; the first 4 for IPv4.
    int prefix = 0;
  };
  std::vector<Block> blocks_;
};

}  // namespace cloister::cloisterd
