// TLS for the HTTP server: settings from the Anka configuration, the OpenSSL context built from
// them, and one server-side session per connection over memory BIOs.
//
// OpenSSL never sees a file descriptor: the connection feeds it the ciphertext libuv read and
// writes out the ciphertext it produces, so every byte still goes through the one event loop
// and its timers. Session resumption (tickets and the session cache) is off, so every new
// connection makes a full handshake and presents its client certificate again: a revocation (CRL
// or API) therefore reaches every new connection, never skipped by a resumed session.
// Renegotiation and compression are off (shared/RELIABILITY.md, Mozilla "Intermediate").
//
// Client certificates (mTLS, seed 001): with request_client_cert the server asks for one but the
// handshake never fails over it: no certificate, an expired, revoked or foreign one all complete
// the handshake (OpenSSL still makes the client prove it holds the key). The connection keeps
// what was presented (TlsStream::CapturePeerCertificate -> Request::client_cert) and the auth
// layer decides per request, so that a refusal is a 401 with the Anka envelope and an audit
// event rather than a TLS alert the client cannot explain.
//
// Thread-safety: TlsContext may be shared by connections on one loop (and, being immutable after
// Create, read from any thread). A TlsStream belongs to one connection on the loop thread.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "api/peer_certificate.h"
#include "log/status.h"

namespace cloister::api {

enum class TlsVersion { k1_0, k1_1, k1_2, k1_3 };

// "tls_1.2" for TlsVersion::k1_2.
const char* TlsVersionName(TlsVersion version);

// The configuration values as an operator writes them (ANKA_* variables or flags), unparsed.
struct TlsConfig {
  std::string cert_path;      // ANKA_SERVER_CERT: PEM certificate, optionally then its chain.
  std::string key_path;       // ANKA_SERVER_KEY: unencrypted PEM private key.
  std::string min_version;    // "tls_1.0" .. "tls_1.3", any case; empty: tls_1.2.
  std::string max_version;    // Same; empty: tls_1.3.
  std::string cipher_suites;  // Go crypto/tls names, comma-separated, any case; empty: defaults.
  // Ask clients for a certificate (ANKA_ENABLE_AUTH with ANKA_CA_CERT): see the top of the file.
  bool request_client_cert = false;
  // ANKA_CA_CERT: with request_client_cert, the PEM CA certificates whose names the server sends
  // in its CertificateRequest, so that curl and openssl pick the matching client certificate.
  // Empty: no names are sent (clients then offer whatever they have). Ignored without
  // request_client_cert.
  std::string client_ca_path{};
  std::string client_ca_setting = "ANKA_CA_CERT";  // Its name in errors (or ANKA_ROOT_CERT).
};

// Parsed settings, in OpenSSL's terms.
struct TlsSettings {
  std::string cert_path;
  std::string key_path;
  TlsVersion min_version = TlsVersion::k1_2;
  TlsVersion max_version = TlsVersion::k1_3;
  // For TLS 1.2 and below (SSL_CTX_set_cipher_list), ':'-separated OpenSSL names.
  std::string cipher_list;
  // For TLS 1.3 (SSL_CTX_set_ciphersuites), ':'-separated.
  std::string ciphersuites;
  // As in TlsConfig.
  bool request_client_cert = false;
  std::string client_ca_path{};
  std::string client_ca_setting = "ANKA_CA_CERT";
};

// Defaults: ECDHE key exchange with AEAD ciphers only for TLS 1.2; the three standard TLS 1.3
// suites.
inline constexpr const char* kDefaultCipherList =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* kDefaultCipherSuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

// "tls_1.2" (any case) -> k1_2. The error names the value and lists the accepted ones.
Result<TlsVersion> ParseTlsVersion(std::string_view text);

// The OpenSSL name of one Go cipher suite name ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" ->
// "ECDHE-RSA-AES128-GCM-SHA256"), any case; *tls13 tells which list it belongs to. Errors name
// the suite (unknown, or known but refused: RC4).
Result<std::string> OpenSslCipherName(std::string_view go_name, bool* tls13);

// Pure: checks and converts config; touches no file. A cipher list naming only TLS 1.2 suites
// leaves the TLS 1.3 defaults in place, and the other way round (as Go, whose CipherSuites
// setting does not restrict TLS 1.3).
Result<TlsSettings> ParseTlsSettings(const TlsConfig& config);

// An OpenSSL server context built from TlsSettings.
class TlsContext {
 public:
  // Loads the certificate chain and the key, and applies versions and ciphers; with
  // request_client_cert, asks for client certificates (and loads the CA names of
  // client_ca_path). Errors (kInvalidArgument or kNotFound) name the setting and path and carry
  // OpenSSL's reason, e.g. "ANKA_SERVER_KEY /k.pem: the private key is encrypted; cloisterd
  // needs an unencrypted PEM key". OpenSSL never prompts for a passphrase.
  static Result<std::shared_ptr<TlsContext>> Create(const TlsSettings& settings);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// One server-side TLS session over memory BIOs. Ciphertext goes in with Feed and comes out with
// TakeCiphertext; plaintext goes in with Write and comes out with Read.
class TlsStream {
 public:
  enum class Outcome { kOk, kClosed, kFailed };

  explicit TlsStream(const TlsContext& context);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Ciphertext received from the peer.
  void Feed(const char* data, size_t size);
  // Advances the handshake with what was fed. kOk: finished (handshake_done() is true) or
  // waiting for more; kFailed: give up (error() says why; TakeCiphertext may hold an alert).
  Outcome Handshake();
  bool handshake_done() const { return handshake_done_; }
  // Appends all plaintext decryptable from what was fed. kClosed: the peer sent close_notify.
  Outcome Read(std::string* plaintext);
  // Encrypts plaintext (after the handshake). Always consumes it all: the output BIO is memory.
  Outcome Write(std::string_view plaintext);
  // Queues a close_notify alert.
  void Close();
  // Moves the ciphertext waiting to be sent into *out (appending). False if there was none.
  bool TakeCiphertext(std::string* out);

  // The reason of the last kFailed, from OpenSSL's error queue.
  const std::string& error() const { return error_; }
  // After the handshake: what the client presented (its certificate, up-referenced, and the
  // chain it sent), or nullptr when it sent none. Each call makes a new PeerCertificate: the
  // connection calls it once and shares the result among its requests.
  std::shared_ptr<const PeerCertificate> CapturePeerCertificate() const;
  // The session, valid while the stream lives.
  SSL* ssl() const { return ssl_; }

 private:
  Outcome Fail(int ssl_error);

  SSL* ssl_ = nullptr;
  BIO* input_ = nullptr;   // Owned by ssl_.
  BIO* output_ = nullptr;  // Owned by ssl_.
  bool handshake_done_ = false;
  std::string error_;
};

// Everything on OpenSSL's error queue of this thread, "; "-separated, and clears it.
std::string DrainOpenSslErrors();

// Reads a whole (small) file: a certificate, a key, a CRL. The error names the setting and the
// path: "ANKA_CRL /x.pem: cannot read: No such file or directory".
Result<std::string> ReadSmallFile(std::string_view setting, const std::string& path);

}  // namespace cloister::api
