#include "api/cloisterd/certificates.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "api/tls.h"

namespace cloister::cloisterd {
namespace {

// Serials in the canonical form are at most 20 octets (RFC 5280 4.1.2.2); a little slack for
// non-conforming CAs, and a bound for text from the API.
constexpr size_t kSerialHexMax = 128;

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct CrlFree {
  void operator()(X509_CRL* crl) const { X509_CRL_free(crl); }
};
struct StoreFree {
  void operator()(X509_STORE* store) const { X509_STORE_free(store); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* ctx) const { X509_STORE_CTX_free(ctx); }
};
struct ChainFree {
  void operator()(STACK_OF(X509)* chain) const { sk_X509_pop_free(chain, X509_free); }
};

// A password callback that supplies none: nothing here is encrypted, and OpenSSL must never
// prompt on a daemon's terminal.
int NoPassword(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return 0; }

std::unique_ptr<BIO, BioFree> MemoryBio(std::string_view bytes) {
  CL_ASSERT(bytes.size() <= static_cast<size_t>(std::numeric_limits<int>::max()));
  BIO* bio = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
  CL_ASSERT(bio != nullptr);  // Only out of memory.
  return std::unique_ptr<BIO, BioFree>(bio);
}


// True if the last error of a PEM_read loop only says that no further PEM block follows.
bool OnlyNoStartLine() {
  unsigned long last = ERR_peek_last_error();
  bool clean = last == 0 || (ERR_GET_LIB(last) == ERR_LIB_PEM &&
                             ERR_GET_REASON(last) == PEM_R_NO_START_LINE);
  return clean;
}

// Everything on this thread's OpenSSL error queue, "; "-separated; clears it.
std::string DrainErrors() {
  std::string text;
  while (unsigned long error = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(error, buf, sizeof(buf));
    text += (text.empty() ? "" : "; ") + std::string(buf);
  }
  return text;
}

std::string WithReason(std::string message, const std::string& reason) {
  return reason.empty() ? message : message + " (" + reason + ")";
}

int64_t ToUnix(const ASN1_TIME* time) {
  struct tm tm {};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1) {
    return 0;
  }
  return static_cast<int64_t>(timegm(&tm));
}

std::string OneLine(const X509_NAME* name) {
  char* text = X509_NAME_oneline(name, nullptr, 0);
  if (text == nullptr) {
    return "";
  }
  std::string out(text);
  OPENSSL_free(text);
  return out;
}

// bn in upper-case hex ("-" first when negative), the form serials are compared in; frees bn.
std::string HexAndFree(BIGNUM* bn) {
  char* hex = BN_bn2hex(bn);
  BN_free(bn);
  CL_ASSERT(hex != nullptr);  // Only out of memory.
  std::string out(hex);
  OPENSSL_free(hex);
  return out;
}

std::string CanonicalSerial(const ASN1_INTEGER* serial) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn == nullptr) {
    ERR_clear_error();
    return "";
  }
  return HexAndFree(bn);
}

// The short reason for a failed X509_verify_cert. depth: where in the chain (0: the leaf).
std::string VerifyReason(int error, int depth) {
  const bool leaf = depth <= 0;
  switch (error) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
    // A certificate naming a loaded CA as issuer but signed by another key: its signer is
    // unknown just the same.
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
      return "certificate signed by an unknown CA";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return leaf ? "certificate expired" : "CA certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return leaf ? "certificate not yet valid" : "CA certificate not yet valid";
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
      return "certificate has invalid validity dates";
    case X509_V_ERR_CERT_REVOKED:
      return "certificate revoked";
    case X509_V_ERR_CRL_HAS_EXPIRED:
      return "CRL expired";
    case X509_V_ERR_CRL_NOT_YET_VALID:
      return "CRL not yet valid";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return "no CRL for the certificate's CA";
    case X509_V_ERR_INVALID_PURPOSE:
      return "certificate not valid for client authentication";
    case X509_V_ERR_INVALID_CA:
      return "certificate issuer is not a CA";
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
      return "certificate chain too long";
    default:
      // OpenSSL's fixed text for the code: no certificate contents, so nothing secret.
      return std::string("certificate not accepted: ") + X509_verify_cert_error_string(error);
  }
}

// An attribute value as UTF-8 without control characters; false if it is not that.
bool ReadNameValue(X509_NAME_ENTRY* entry, std::string* out) {
  unsigned char* utf8 = nullptr;
  int size = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
  if (size < 0) {
    ERR_clear_error();
    return false;
  }
  out->assign(reinterpret_cast<const char*>(utf8), static_cast<size_t>(size));
  OPENSSL_free(utf8);
  return std::none_of(out->begin(), out->end(), [](char c) {
    unsigned char u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

// Anka's subject rules: a CN= (the user; the last one if several, as Go reads it) and at least
// one O= (the groups, in order). Returns "" or the refusal reason.
std::string ReadSubject(X509* leaf, CertCheck* check) {
  const X509_NAME* name = X509_get_subject_name(leaf);
  bool has_cn = false;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
    const int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
    if (nid != NID_commonName && nid != NID_organizationName) {
      continue;
    }
    std::string value;
    if (!ReadNameValue(entry, &value)) {
      return nid == NID_commonName ? "certificate has an unreadable CN"
                                   : "certificate has an unreadable O";
    }
    if (value.empty()) {
      continue;  // "CN=" or "O=" names nobody.
    }
    if (nid == NID_commonName) {
      check->user = std::move(value);
      has_cn = true;
    } else {
      check->groups.push_back(std::move(value));
    }
  }
  if (!has_cn) {
    return "certificate has no CN";
  }
  if (check->groups.empty()) {
    return "certificate has no O";
  }
  return "";
}

bool IsHexDigit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// The value of a hex digit (IsHexDigit(c)).
int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  return (c | 0x20) - 'a' + 10;
}

std::string_view TrimSpaces(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) {
    return {};
  }
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

}  // namespace

// ---- CertificateAuthority ----

CertificateAuthority::CertificateAuthority(std::vector<X509*> cas) : cas_(std::move(cas)) {}

CertificateAuthority::~CertificateAuthority() {
  X509_STORE_free(store_);
  X509_CRL_free(crl_);
  for (X509* ca : cas_) {
    X509_free(ca);
  }
}

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::Create(
    const std::string& ca_path, std::string_view setting) {
  auto pem = api::ReadSmallFile(setting, ca_path);
  if (!pem.ok()) {
    return pem.status();
  }
  const std::string where = std::string(setting) + " " + ca_path;
  auto bio = MemoryBio(*pem);
  std::vector<X509*> cas;
  ERR_clear_error();
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, &NoPassword, nullptr)) {
    cas.push_back(cert);
  }
  // From here the authority owns the certificates, also on the error paths below.
  std::unique_ptr<CertificateAuthority> authority(new CertificateAuthority(std::move(cas)));
  if (!OnlyNoStartLine()) {
    return Status::InvalidArgument(WithReason(
        where + ": cannot parse PEM certificate " +
            std::to_string(authority->cas_.size() + 1),
        DrainErrors()));
  }
  ERR_clear_error();
  if (authority->cas_.empty()) {
    return Status::InvalidArgument(where + ": no PEM certificate");
  }
  authority->store_ = authority->NewStore(nullptr);
  CL_ASSERT(authority->store_ != nullptr);  // Only out of memory.
  return authority;
}

X509_STORE* CertificateAuthority::NewStore(X509_CRL* crl) const {
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  if (store == nullptr) {
    return nullptr;
  }
  for (X509* ca : cas_) {
    // A CA file listing the same certificate twice is harmless: OpenSSL 3 ignores the copy.
    if (X509_STORE_add_cert(store.get(), ca) != 1) {
      ERR_clear_error();
    }
  }
  if (crl != nullptr && X509_STORE_add_crl(store.get(), crl) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return store.release();
}

Result<CrlInfo> CertificateAuthority::LoadCrl(const std::string& pem_path, int64_t now_unix) {
  auto pem = api::ReadSmallFile("ANKA_CRL", pem_path);
  if (!pem.ok()) {
    return pem.status();
  }
  const std::string where = "ANKA_CRL " + pem_path;
  auto bio = MemoryBio(*pem);
  ERR_clear_error();
  std::unique_ptr<X509_CRL, CrlFree> crl(
      PEM_read_bio_X509_CRL(bio.get(), nullptr, &NoPassword, nullptr));
  if (crl == nullptr) {
    return Status::InvalidArgument(WithReason(where + ": no PEM CRL", DrainErrors()));
  }
  const std::string issuer = OneLine(X509_CRL_get_issuer(crl.get()));
  bool issuer_known = false;
  bool verified = false;
  for (X509* ca : cas_) {
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca)) != 0) {
      continue;
    }
    issuer_known = true;
    EVP_PKEY* key = X509_get0_pubkey(ca);
    if (key != nullptr && X509_CRL_verify(crl.get(), key) == 1) {
      verified = true;
      break;
    }
  }
  ERR_clear_error();
  if (!issuer_known) {
    return Status::InvalidArgument(where + ": issued by " + issuer +
                                   ", which is not a CA of ANKA_CA_CERT; the CRL in force is "
                                   "kept");
  }
  if (!verified) {
    return Status::InvalidArgument(where + ": its signature does not verify with the key of " +
                                   issuer + " in ANKA_CA_CERT; the CRL in force is kept");
  }

  CrlInfo info;
  unsigned char* der = nullptr;
  int der_size = i2d_X509_CRL(crl.get(), &der);
  if (der_size <= 0) {
    return Status::InvalidArgument(WithReason(where + ": cannot encode the CRL", DrainErrors()));
  }
  unsigned int digest_size = 0;
  bool digested = EVP_Digest(der, static_cast<size_t>(der_size), info.sha256.data(),
                             &digest_size, EVP_sha256(), nullptr) == 1;
  OPENSSL_free(der);
  CL_ASSERT(digested && digest_size == info.sha256.size());
  info.issuer = issuer;
  info.this_update = ToUnix(X509_CRL_get0_lastUpdate(crl.get()));
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
  info.next_update = next == nullptr ? 0 : ToUnix(next);
  info.expired = info.next_update != 0 && now_unix > info.next_update;
  std::set<std::string> revoked;
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; entries != nullptr && i < sk_X509_REVOKED_num(entries); ++i) {
    const X509_REVOKED* entry = sk_X509_REVOKED_value(entries, i);
    std::string serial = CanonicalSerial(X509_REVOKED_get0_serialNumber(entry));
    if (!serial.empty()) {
      revoked.insert(std::move(serial));
    }
    info.revoked_count++;
  }

  X509_STORE* store = NewStore(crl.get());
  if (store == nullptr) {
    return Status::InvalidArgument(where + ": cannot add the CRL to the trust store");
  }
  info.generation = crl_info_.generation + 1;
  X509_STORE_free(store_);
  store_ = store;
  X509_CRL_free(crl_);
  crl_ = crl.release();
  crl_info_ = info;
  crl_revoked_ = std::move(revoked);
  cache_.clear();  // Every entry is of an older generation now.
  return info;
}

bool CertificateAuthority::CrlExpired(int64_t now_unix) const {
  return crl_ != nullptr && crl_info_.next_update != 0 && now_unix > crl_info_.next_update;
}

std::string CertificateAuthority::NormalizeSerial(std::string_view serial_hex) {
  std::string_view text = TrimSpaces(serial_hex);
  bool negative = false;
  if (!text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
  }
  std::string digits;
  for (char c : text) {
    if (c == ':') {
      continue;  // "0a:1b", as `openssl x509 -text` prints serials.
    }
    if (!IsHexDigit(c) || digits.size() >= kSerialHexMax) {
      return "";
    }
    digits.push_back(c);
  }
  if (digits.empty()) {
    return "";
  }
  BIGNUM* bn = nullptr;
  if (BN_hex2bn(&bn, digits.c_str()) != static_cast<int>(digits.size())) {
    BN_free(bn);
    ERR_clear_error();
    return "";
  }
  BN_set_negative(bn, negative ? 1 : 0);
  return HexAndFree(bn);
}

bool CertificateAuthority::RevokeSerial(std::string serial_hex) {
  std::string serial = NormalizeSerial(serial_hex);
  if (serial.empty()) {
    return false;
  }
  api_revoked_.insert(std::move(serial));
  return true;
}

bool CertificateAuthority::IsRevoked(std::string_view serial_hex) const {
  std::string serial = NormalizeSerial(serial_hex);
  return !serial.empty() && (crl_revoked_.count(serial) != 0 || api_revoked_.count(serial) != 0);
}

std::string CertificateAuthority::VerifyChain(const api::PeerCertificate& cert, int64_t now_unix,
                                              CacheEntry* entry) const {
  chain_verifications_++;
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  CL_ASSERT(ctx != nullptr);  // Only out of memory.
  ERR_clear_error();
  if (X509_STORE_CTX_init(ctx.get(), store_, cert.leaf(), cert.chain()) != 1) {
    ERR_clear_error();
    return "certificate not accepted: cannot set up its verification";
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now_unix));
  X509_VERIFY_PARAM_set_depth(param, 8);
  unsigned long flags = X509_V_FLAG_PARTIAL_CHAIN;
  if (crl_ != nullptr) {
    flags |= X509_V_FLAG_CRL_CHECK;
  }
  X509_VERIFY_PARAM_set_flags(param, flags);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  const int rc = X509_verify_cert(ctx.get());
  ERR_clear_error();
  if (rc != 1) {
    return VerifyReason(X509_STORE_CTX_get_error(ctx.get()),
                        X509_STORE_CTX_get_error_depth(ctx.get()));
  }
  // The window in which the verified chain stays valid, so that a cached verdict is used only
  // inside it (and the exact reason comes from a new verification outside it).
  entry->generation = crl_info_.generation;
  entry->valid_from = std::numeric_limits<int64_t>::min();
  entry->valid_until = std::numeric_limits<int64_t>::max();
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    X509* link = sk_X509_value(chain, i);
    entry->valid_from = std::max(entry->valid_from, ToUnix(X509_get0_notBefore(link)));
    entry->valid_until = std::min(entry->valid_until, ToUnix(X509_get0_notAfter(link)));
  }
  if (crl_ != nullptr) {
    entry->valid_from = std::max(entry->valid_from, crl_info_.this_update);
  }
  return "";
}

CertCheck CertificateAuthority::Check(const api::PeerCertificate& cert, int64_t now_unix) const {
  CertCheck check;
  X509* leaf = cert.leaf();
  check.serial_hex = CanonicalSerial(X509_get0_serialNumber(leaf));
  check.subject = OneLine(X509_get_subject_name(leaf));
  // What the certificate claims, for the audit event of a refusal too; applied last.
  const std::string subject_refusal = ReadSubject(leaf, &check);
  // An expired CRL fails every certificate login closed, whatever the certificate.
  if (CrlExpired(now_unix)) {
    check.reason = "CRL expired";
    return check;
  }
  auto cached = cache_.find(cert.fingerprint());
  const bool fresh = cached != cache_.end() &&
                     cached->second.generation == crl_info_.generation &&
                     cached->second.valid_from <= now_unix &&
                     now_unix <= cached->second.valid_until;
  if (!fresh) {
    CacheEntry entry;
    std::string reason = VerifyChain(cert, now_unix, &entry);
    if (!reason.empty()) {
      if (cached != cache_.end()) {
        cache_.erase(cached);
      }
      check.reason = std::move(reason);
      return check;
    }
    if (cached == cache_.end() && cache_.size() >= kCacheEntriesMax) {
      cache_.clear();
    }
    cache_[cert.fingerprint()] = entry;
  }
  if (check.serial_hex.empty()) {
    check.reason = "certificate has an unreadable serial number";
    return check;
  }
  // The revocation sets change without a new generation (RevokeSerial): looked up every time.
  if (crl_revoked_.count(check.serial_hex) != 0 || api_revoked_.count(check.serial_hex) != 0) {
    check.reason = "certificate revoked";
    return check;
  }
  if (!subject_refusal.empty()) {
    check.reason = subject_refusal;
    return check;
  }
  check.ok = true;
  return check;
}

// ---- Ingress ----

Result<std::shared_ptr<const api::PeerCertificate>> ParseIngressCertificate(
    std::string_view url_encoded_pem) {
  std::string pem;
  pem.reserve(url_encoded_pem.size());
  for (size_t i = 0; i < url_encoded_pem.size(); ++i) {
    char c = url_encoded_pem[i];
    if (c != '%') {
      pem.push_back(c);
      continue;
    }
    if (i + 2 >= url_encoded_pem.size() || !IsHexDigit(url_encoded_pem[i + 1]) ||
        !IsHexDigit(url_encoded_pem[i + 2])) {
      return Status::InvalidArgument("Ssl-Client-Cert: bad percent escape at byte " +
                                     std::to_string(i));
    }
    pem.push_back(static_cast<char>(HexValue(url_encoded_pem[i + 1]) * 16 +
                                    HexValue(url_encoded_pem[i + 2])));
    i += 2;
  }
  std::string_view text = TrimSpaces(pem);
  constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  if (text.substr(0, kBegin.size()) != kBegin || text.size() < kEnd.size() ||
      text.substr(text.size() - kEnd.size()) != kEnd) {
    return Status::InvalidArgument("Ssl-Client-Cert: not a URL-encoded PEM certificate");
  }
  auto bio = MemoryBio(text);
  ERR_clear_error();
  std::unique_ptr<X509, X509Free> leaf(PEM_read_bio_X509(bio.get(), nullptr, &NoPassword,
                                                         nullptr));
  if (leaf == nullptr) {
    ERR_clear_error();
    return Status::InvalidArgument("Ssl-Client-Cert: the PEM certificate does not parse");
  }
  std::unique_ptr<STACK_OF(X509), ChainFree> chain(sk_X509_new_null());
  CL_ASSERT(chain != nullptr);  // Only out of memory.
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, &NoPassword, nullptr)) {
    CL_ASSERT(sk_X509_push(chain.get(), cert) > 0);
  }
  const bool clean = OnlyNoStartLine();
  ERR_clear_error();
  if (!clean) {
    return Status::InvalidArgument("Ssl-Client-Cert: a chain certificate does not parse");
  }
  STACK_OF(X509)* owned_chain = sk_X509_num(chain.get()) == 0 ? nullptr : chain.release();
  return std::shared_ptr<const api::PeerCertificate>(
      std::make_shared<const api::PeerCertificate>(leaf.release(), owned_chain));
}

// ---- TrustedProxies ----

namespace {

// "10.1.2.3" or "::1" -> bytes; false otherwise.
bool ParseAddress(std::string_view text, bool* v6, std::array<uint8_t, 16>* bytes) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
    return false;
  }
  std::string copy(text);
  bytes->fill(0);
  if (inet_pton(AF_INET, copy.c_str(), bytes->data()) == 1) {
    *v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, copy.c_str(), bytes->data()) == 1) {
    *v6 = true;
    return true;
  }
  return false;
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b,
                   int prefix) {
  int full = prefix / 8;
  if (std::memcmp(a.data(), b.data(), static_cast<size_t>(full)) != 0) {
    return false;
  }
  int rest = prefix % 8;
  if (rest == 0) {
    return true;
  }
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[static_cast<size_t>(full)] & mask) == (b[static_cast<size_t>(full)] & mask);
}

void MaskHostBits(std::array<uint8_t, 16>* bytes, int prefix) {
  for (int bit = prefix; bit < 128; ++bit) {
    (*bytes)[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
}

}  // namespace

Result<TrustedProxies> TrustedProxies::Parse(std::string_view list) {
  TrustedProxies proxies;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = TrimSpaces(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (item.empty()) {
      continue;
    }
    const std::string bad = "CLOISTER_TRUSTED_PROXIES: \"" + std::string(item) +
                            "\" is not an IPv4 or IPv6 address or CIDR block";
    size_t slash = item.find('/');
    Block block;
    if (!ParseAddress(item.substr(0, slash), &block.v6, &block.address)) {
      return Status::InvalidArgument(bad);
    }
    const int bits = block.v6 ? 128 : 32;
    block.prefix = bits;
    if (slash != std::string_view::npos) {
      std::string_view digits = item.substr(slash + 1);
      if (digits.empty() || digits.size() > 3 ||
          !std::all_of(digits.begin(), digits.end(),
                       [](char c) { return c >= '0' && c <= '9'; })) {
        return Status::InvalidArgument(bad);
      }
      block.prefix = std::stoi(std::string(digits));
      if (block.prefix > bits) {
        return Status::InvalidArgument(bad);
      }
    }
    MaskHostBits(&block.address, block.prefix);
    proxies.blocks_.push_back(block);
  }
  return proxies;
}

bool TrustedProxies::Contains(std::string_view ip) const {
  ip = TrimSpaces(ip);
  if (!ip.empty() && ip.front() == '[') {
    size_t close = ip.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    ip = ip.substr(1, close - 1);
  } else if (std::count(ip.begin(), ip.end(), ':') == 1) {
    ip = ip.substr(0, ip.find(':'));  // "10.1.2.3:5000".
  }
  bool v6 = false;
  std::array<uint8_t, 16> address{};
  if (!ParseAddress(ip, &v6, &address)) {
    return false;
  }
  // ::ffff:a.b.c.d, as a dual-stack socket reports an IPv4 peer, is that IPv4 address.
  std::array<uint8_t, 16> mapped{};
  bool has_mapped = false;
  if (v6) {
    static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(address.data(), kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
      std::memcpy(mapped.data(), address.data() + 12, 4);
      has_mapped = true;
    }
  }
  for (const Block& block : blocks_) {
    if (block.v6 == v6 && PrefixMatches(block.address, address, block.prefix)) {
      return true;
    }
    if (!block.v6 && has_mapped && PrefixMatches(block.address, mapped, block.prefix)) {
      return true;
    }
  }
  return false;
}

}  // namespace cloister::cloisterd
