#include "api/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "api/http_types.h"

namespace cloister::api {
namespace {

struct CipherName {
  const char* go;       // Go crypto/tls constant name, upper case.
  const char* openssl;  // OpenSSL name; nullptr: known but refused.
  bool tls13;
};

// Every suite Go's crypto/tls names (cipher_suites.go), with the OpenSSL equivalent. The RC4
// suites are broken and absent from OpenSSL 3; they are named so that the error says so rather
// than "unknown".
constexpr CipherName kCipherNames[] = {
    {"TLS_RSA_WITH_RC4_128_SHA", nullptr, false},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA", false},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA", false},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA", false},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256", false},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256", false},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384", false},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", nullptr, false},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA", false},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA", false},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", nullptr, false},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA", false},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA", false},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA", false},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256", false},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256", false},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256", false},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", false},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384", false},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", false},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305", false},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", false},
    // Go's older spellings of the two suites above.
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", false},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305", false},
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", true},
    {"TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", true},
    {"TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", true},
};

constexpr const char* kVersionNames[] = {"tls_1.0", "tls_1.1", "tls_1.2", "tls_1.3"};

// Before an SSL call whose result goes through SSL_get_error, the thread's error queue must be
// empty. It nearly always is already, and ERR_clear_error walks all of its slots while
// ERR_peek_error only checks for an entry: on the per-record path that difference shows.
void ClearErrorQueue() {
  if (ERR_peek_error() != 0) {
    ERR_clear_error();
  }
}

std::string Trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) {
    return "";
  }
  size_t end = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(begin, end - begin + 1));
}

int OpenSslVersion(TlsVersion version) {
  switch (version) {
    case TlsVersion::k1_0: return TLS1_VERSION;
    case TlsVersion::k1_1: return TLS1_1_VERSION;
    case TlsVersion::k1_2: return TLS1_2_VERSION;
    case TlsVersion::k1_3: return TLS1_3_VERSION;
  }
  CL_ASSERT(false);
}

// A password callback that supplies no password: OpenSSL must never prompt on the terminal of a
// daemon (it would hang the start), and an encrypted key is refused with a clear message.
int NoPassword(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return 0; }

// Picks "http/1.1" when the client offers ALPN, so curl and browsers do not wait for h2.
int SelectAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_size,
               const unsigned char* offered, unsigned int offered_size, void* /*arg*/) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* chosen = nullptr;
  int rc = SSL_select_next_proto(&chosen, out_size, kHttp11, sizeof(kHttp11), offered,
                                 offered_size);
  if (rc != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}


bool LooksEncrypted(const std::string& pem) {
  return pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
         pem.find("Proc-Type: 4,ENCRYPTED") != std::string::npos;
}

cloister::Result<EVP_PKEY*> LoadPrivateKey(const std::string& path) {
  auto pem = ReadSmallFile("ANKA_SERVER_KEY", path);
  if (!pem.ok()) {
    return pem.status();
  }
  const std::string kEncrypted = "ANKA_SERVER_KEY " + path +
                                 ": the private key is encrypted; cloisterd needs an "
                                 "unencrypted PEM key";
  if (LooksEncrypted(*pem)) {
    return Status::InvalidArgument(kEncrypted);
  }
  BIO* bio = BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size()));
  CL_ASSERT(bio != nullptr);
  ERR_clear_error();
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, &NoPassword, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    unsigned long first = ERR_peek_error();
    std::string reason = DrainOpenSslErrors();
    if (ERR_GET_REASON(first) == PEM_R_BAD_PASSWORD_READ) {
      return Status::InvalidArgument(kEncrypted);
    }
    return Status::InvalidArgument("ANKA_SERVER_KEY " + path +
                                   ": no usable PEM private key (" + reason + ")");
  }
  return key;
}

Status LoadCertificateAndKey(SSL_CTX* ctx, const TlsSettings& settings) {
  auto cert_pem = ReadSmallFile("ANKA_SERVER_CERT", settings.cert_path);
  if (!cert_pem.ok()) {
    return cert_pem.status();
  }
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, settings.cert_path.c_str()) != 1) {
    return Status::InvalidArgument("ANKA_SERVER_CERT " + settings.cert_path +
                                   ": cannot load the PEM certificate chain (" +
                                   DrainOpenSslErrors() + ")");
  }
  auto key = LoadPrivateKey(settings.key_path);
  if (!key.ok()) {
    return key.status();
  }
  ERR_clear_error();
  bool matches = SSL_CTX_use_PrivateKey(ctx, *key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(*key);
  if (!matches) {
    return Status::InvalidArgument("ANKA_SERVER_KEY " + settings.key_path +
                                   " does not match the certificate in ANKA_SERVER_CERT " +
                                   settings.cert_path + " (" + DrainOpenSslErrors() + ")");
  }
  return Status::Ok();
}

// Accepts every client certificate at the handshake: the auth layer checks it per request
// (see tls.h). Returning 1 also for preverify_ok == 0 keeps the handshake going; OpenSSL still
// checks the client's CertificateVerify signature, so a client cannot present a certificate
// whose key it does not hold.
int AcceptAnyClientCertificate(int /*preverify_ok*/, X509_STORE_CTX* /*store*/) { return 1; }

// The session id context: OpenSSL requires one when it asks for client certificates (a resumed
// session would otherwise fail). Resumption is off anyway (ApplyProtocolSettings).
constexpr unsigned char kSessionIdContext[] = {'c', 'l', 'o', 'i', 's', 't', 'e', 'r'};

Status ApplyClientCertificateSettings(SSL_CTX* ctx, const TlsSettings& settings) {
  if (!settings.request_client_cert) {
    return Status::Ok();
  }
  ERR_clear_error();
  if (SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext)) != 1) {
    return Status::InvalidArgument("TLS session id context: " + DrainOpenSslErrors());
  }
  // SSL_VERIFY_PEER without SSL_VERIFY_FAIL_IF_NO_PEER_CERT: a client without a certificate
  // completes the handshake too (and gets a 401 from the auth layer).
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &AcceptAnyClientCertificate);
  if (settings.client_ca_path.empty()) {
    return Status::Ok();
  }
  auto pem = ReadSmallFile(settings.client_ca_setting, settings.client_ca_path);
  if (!pem.ok()) {
    return pem.status();
  }
  ERR_clear_error();
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(settings.client_ca_path.c_str());
  if (names == nullptr || sk_X509_NAME_num(names) == 0) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    std::string reason = DrainOpenSslErrors();
    return Status::InvalidArgument(settings.client_ca_setting + " " + settings.client_ca_path +
                                   ": no PEM CA certificate" +
                                   (reason.empty() ? "" : " (" + reason + ")"));
  }
  SSL_CTX_set_client_CA_list(ctx, names);  // Takes ownership.
  return Status::Ok();
}

Status ApplyProtocolSettings(SSL_CTX* ctx, const TlsSettings& settings) {
  ERR_clear_error();
  if (SSL_CTX_set_min_proto_version(ctx, OpenSslVersion(settings.min_version)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, OpenSslVersion(settings.max_version)) != 1) {
    const std::string range = std::string(TlsVersionName(settings.min_version)) + ".." +
                              TlsVersionName(settings.max_version);
    return Status::InvalidArgument("TLS versions " + range + ": " + DrainOpenSslErrors());
  }
  const std::string& list = settings.cipher_list.empty() ? std::string(kDefaultCipherList)
                                                          : settings.cipher_list;
  if (SSL_CTX_set_cipher_list(ctx, list.c_str()) != 1) {
    return Status::InvalidArgument("TLS 1.2 cipher suites " + list +
                                   ": none is available in this OpenSSL (" +
                                   DrainOpenSslErrors() + ")");
  }
  const std::string& suites = settings.ciphersuites.empty() ? std::string(kDefaultCipherSuites)
                                                            : settings.ciphersuites;
  if (SSL_CTX_set_ciphersuites(ctx, suites.c_str()) != 1) {
    return Status::InvalidArgument("TLS 1.3 cipher suites " + suites + ": " +
                                   DrainOpenSslErrors());
  }
  // No resumption (see tls.h), no renegotiation, no compression; the server's cipher order wins.
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // Idle connections give their read and write buffers back: 10,000 of them add up.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(ctx, &SelectAlpn, nullptr);
  return Status::Ok();
}

// Parses one version setting into *out; an empty (or blank) value keeps the default.
Status ParseVersionSetting(const char* which, const std::string& text, TlsVersion* out) {
  const std::string trimmed = Trim(text);
  if (trimmed.empty()) {
    return Status::Ok();
  }
  auto version = ParseTlsVersion(trimmed);
  if (!version.ok()) {
    return Status::InvalidArgument(std::string(which) + " " + version.status().message());
  }
  *out = *version;
  return Status::Ok();
}

}  // namespace

const char* TlsVersionName(TlsVersion version) {
  return kVersionNames[static_cast<int>(version)];
}

std::string DrainOpenSslErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty()) {
      out += "; ";
    }
    out += buf;
  }
  return out.empty() ? "no OpenSSL error reported" : out;
}

cloister::Result<TlsVersion> ParseTlsVersion(std::string_view text) {
  for (int i = 0; i < 4; i++) {
    if (EqualsIgnoreCase(text, kVersionNames[i])) {
      return static_cast<TlsVersion>(i);
    }
  }
  return Status::InvalidArgument("TLS version \"" + std::string(text) +
                                 "\" is not one of tls_1.0, tls_1.1, tls_1.2, tls_1.3");
}

cloister::Result<std::string> OpenSslCipherName(std::string_view go_name, bool* tls13) {
  for (const CipherName& entry : kCipherNames) {
    if (!EqualsIgnoreCase(go_name, entry.go)) {
      continue;
    }
    if (entry.openssl == nullptr) {
      return Status::InvalidArgument("TLS cipher suite \"" + std::string(go_name) +
                                     "\" is refused: RC4 is broken");
    }
    *tls13 = entry.tls13;
    return std::string(entry.openssl);
  }
  return Status::InvalidArgument(
      "TLS cipher suite \"" + std::string(go_name) +
      "\" is unknown (expected Go crypto/tls names such as "
      "tls_ecdhe_rsa_with_aes_128_gcm_sha256 or tls_aes_128_gcm_sha256)");
}

cloister::Result<TlsSettings> ParseTlsSettings(const TlsConfig& config) {
  TlsSettings settings;
  if (config.cert_path.empty() || config.key_path.empty()) {
    return Status::InvalidArgument(
        "HTTPS needs both ANKA_SERVER_CERT and ANKA_SERVER_KEY (PEM files)");
  }
  settings.cert_path = config.cert_path;
  settings.key_path = config.key_path;
  settings.request_client_cert = config.request_client_cert;
  settings.client_ca_path = Trim(config.client_ca_path);
  settings.client_ca_setting = config.client_ca_setting;
  Status status =
      ParseVersionSetting("ANKA_MIN_TLS_VERSION:", config.min_version, &settings.min_version);
  if (status.ok()) {
    status =
        ParseVersionSetting("ANKA_MAX_TLS_VERSION:", config.max_version, &settings.max_version);
  }
  if (!status.ok()) {
    return status;
  }
  if (settings.min_version > settings.max_version) {
    return Status::InvalidArgument(std::string("ANKA_MIN_TLS_VERSION ") +
                                   TlsVersionName(settings.min_version) +
                                   " is above ANKA_MAX_TLS_VERSION " +
                                   TlsVersionName(settings.max_version));
  }
  std::string_view rest = config.cipher_suites;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string name = Trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (name.empty()) {
      continue;
    }
    bool tls13 = false;
    auto openssl = OpenSslCipherName(name, &tls13);
    if (!openssl.ok()) {
      return openssl.status();
    }
    std::string& list = tls13 ? settings.ciphersuites : settings.cipher_list;
    list += (list.empty() ? "" : ":") + *openssl;
  }
  return settings;
}

cloister::Result<std::shared_ptr<TlsContext>> TlsContext::Create(const TlsSettings& settings) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    return Status::IoError("SSL_CTX_new: " + DrainOpenSslErrors());
  }
  std::shared_ptr<TlsContext> context(new TlsContext(ctx));
  SSL_CTX_set_default_passwd_cb(ctx, &NoPassword);
  Status status = ApplyProtocolSettings(ctx, settings);
  if (status.ok()) {
    status = LoadCertificateAndKey(ctx, settings);
  }
  if (status.ok()) {
    status = ApplyClientCertificateSettings(ctx, settings);
  }
  if (!status.ok()) {
    return status;
  }
  return context;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

TlsStream::TlsStream(const TlsContext& context) {
  ssl_ = SSL_new(context.ctx());
  input_ = BIO_new(BIO_s_mem());
  output_ = BIO_new(BIO_s_mem());
  // Allocation failures here are out-of-memory; cloister does not try to survive those.
  CL_ASSERT(ssl_ != nullptr && input_ != nullptr && output_ != nullptr);
  // An empty memory BIO reports "retry" rather than end-of-file, which is what SSL_read needs
  // to say WANT_READ until more ciphertext arrives.
  BIO_set_mem_eof_return(input_, -1);
  SSL_set_bio(ssl_, input_, output_);
  SSL_set_accept_state(ssl_);
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

std::shared_ptr<const PeerCertificate> TlsStream::CapturePeerCertificate() const {
  CL_ASSERT(handshake_done_);
  X509* leaf = SSL_get1_peer_certificate(ssl_);  // Up-referenced: ours to free.
  if (leaf == nullptr) {
    return nullptr;
  }
  // Server side: the chain excludes the leaf. It belongs to the session; X509_chain_up_ref
  // copies the stack and up-references each certificate.
  STACK_OF(X509)* sent = SSL_get_peer_cert_chain(ssl_);
  STACK_OF(X509)* chain = sent == nullptr ? nullptr : X509_chain_up_ref(sent);
  CL_ASSERT(sent == nullptr || chain != nullptr);  // Only out of memory.
  return std::make_shared<const PeerCertificate>(leaf, chain);
}

void TlsStream::Feed(const char* data, size_t size) {
  CL_ASSERT(size <= static_cast<size_t>(INT32_MAX));
  int written = BIO_write(input_, data, static_cast<int>(size));
  CL_ASSERT(size == 0 || written == static_cast<int>(size));
}

TlsStream::Outcome TlsStream::Fail(int ssl_error) {
  error_ = ssl_error == SSL_ERROR_SYSCALL ? std::string("unexpected end of TLS stream")
                                          : DrainOpenSslErrors();
  ERR_clear_error();
  return Outcome::kFailed;
}

TlsStream::Outcome TlsStream::Handshake() {
  CL_ASSERT(!handshake_done_);
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    handshake_done_ = true;
    return Outcome::kOk;
  }
  int error = SSL_get_error(ssl_, rc);
  if (error == SSL_ERROR_WANT_READ) {
    return Outcome::kOk;
  }
  return Fail(error);
}

TlsStream::Outcome TlsStream::Read(std::string* plaintext) {
  CL_ASSERT(handshake_done_);
  for (;;) {
    char buf[16 * 1024];
    ClearErrorQueue();
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (n > 0) {
      plaintext->append(buf, static_cast<size_t>(n));
      if (BIO_ctrl_pending(input_) == 0 && SSL_has_pending(ssl_) == 0) {
        return Outcome::kOk;  // Nothing left to decrypt: another SSL_read would say WANT_READ.
      }
      continue;
    }
    int error = SSL_get_error(ssl_, n);
    if (error == SSL_ERROR_WANT_READ) {
      return Outcome::kOk;
    }
    if (error == SSL_ERROR_ZERO_RETURN) {
      return Outcome::kClosed;
    }
    return Fail(error);
  }
}

TlsStream::Outcome TlsStream::Write(std::string_view plaintext) {
  CL_ASSERT(handshake_done_);
  while (!plaintext.empty()) {
    int chunk = static_cast<int>(std::min<size_t>(plaintext.size(), 1 << 30));
    ClearErrorQueue();
    int n = SSL_write(ssl_, plaintext.data(), chunk);
    if (n <= 0) {
      return Fail(SSL_get_error(ssl_, n));
    }
    plaintext.remove_prefix(static_cast<size_t>(n));
  }
  return Outcome::kOk;
}

void TlsStream::Close() {
  if (!handshake_done_) {
    return;
  }
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

bool TlsStream::TakeCiphertext(std::string* out) {
  size_t pending = BIO_ctrl_pending(output_);
  if (pending == 0) {
    return false;
  }
  size_t old_size = out->size();
  out->resize(old_size + pending);
  int n = BIO_read(output_, out->data() + old_size, static_cast<int>(pending));
  CL_ASSERT(n == static_cast<int>(pending));
  return true;
}

Result<std::string> ReadSmallFile(std::string_view setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::NotFound(std::string(setting) + " " + path + ": cannot read: " +
                            std::strerror(errno));
  }
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace cloister::api
