// Test support for the agent's client authentication: a small blocking HTTP(S) server on a real
// socket, a fake controller on it that speaks TAP (hand, shake, Bearer sessions), root tokens
// and client certificates, and the OpenSSL helpers the tests need (RSA keys in every format,
// a CA with server and client certificates).
//
// The server handles one connection at a time on its own thread and answers every request with
// "Connection: close"; that is enough for libcurl, and keeps the server small. Handlers run on
// that thread; FakeController guards its state with a mutex, so tests may read it at any time.
#pragma once

#include <openssl/evp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace cloister::client::testing {

// ---- OpenSSL helpers ----

using Pkey = std::shared_ptr<EVP_PKEY>;

Pkey GenerateRsaKey(int bits = 2048);
Pkey GenerateEcKey();
std::string PemPkcs1(const Pkey& key);        // "-----BEGIN RSA PRIVATE KEY-----".
std::string PemPkcs8(const Pkey& key);        // "-----BEGIN PRIVATE KEY-----".
std::string Base64DerPkcs1(const Pkey& key);  // One line, as POST /api/v1/apikey returns it.
// RSA-OAEP (SHA-256, MGF1-SHA-256) with key's public half.
std::string EncryptOaepSha256(const Pkey& key, const std::string& plain);
// Random printable text (base64url letters).
std::string RandomText(size_t bytes);
void WriteTextFile(const std::string& path, const std::string& text);

// A CA, a server certificate for 127.0.0.1 and a client certificate (CN client_cn), all
// signed by the CA, as PEM files in dir.
struct TestPki {
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
  std::string other_ca_cert;  // A CA that signed none of them.
};
TestPki MakeTestPki(const std::string& dir, const std::string& client_cn);

// ---- The server ----

struct FakeRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // Names lower-cased.
  std::string body;
  std::string client_cn;  // TLS: the verified client certificate's CN (empty: none).
};

struct FakeResponse {
  int status = 200;
  std::string body;
};

struct FakeTls {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // Set: a client certificate signed by it is required.
};

class FakeHttpServer {
 public:
  using Handler = std::function<FakeResponse(const FakeRequest&)>;
  // Listens on 127.0.0.1 (a kernel-chosen port) and serves until destroyed. Throws
  // std::runtime_error if it cannot listen or load tls.
  FakeHttpServer(Handler handler, std::optional<FakeTls> tls);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  uint16_t port() const { return port_; }
  // TLS handshakes that failed (a client without a valid certificate, for instance).
  int failed_handshakes() const { return failed_handshakes_.load(); }

 private:
  void Serve();
  void ServeConnection(int fd);

  Handler handler_;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*; null: plain HTTP.
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> failed_handshakes_{0};
  std::thread thread_;
};

// ---- The fake controller ----

// Answers like cloisterd with authentication on: /tap/v1/hand and /tap/v1/shake need nothing;
// every other path needs a valid Bearer session, the root token (Basic) or a verified client
// certificate, and otherwise gets 401 {"status":"FAIL","message":"Authentication Required"}.
// Authenticated: POST /node/v1/join answers {"node_id":"node-1"}, GET /node/v1/instances an
// empty list, anything else an OK envelope whose body is {"path": path}.
class FakeController {
 public:
  explicit FakeController(std::optional<FakeTls> tls = std::nullopt);

  std::string url() const;

  void AddApiKey(const std::string& id, Pkey public_key);
  void SetRootToken(const std::string& token);
  // Every session issued so far answers 401 from now on (the TTL passed).
  void ExpireSessions();
  // Sessions issued from now on answer 401 too (a broken controller; the client must not loop).
  void RejectNewSessions(bool reject);

  int hands() const;
  int shakes() const;
  int unauthorized() const;  // 401 answers.
  // The non-TAP requests, in order.
  std::vector<FakeRequest> requests() const;
  int failed_handshakes() const { return server_->failed_handshakes(); }

 private:
  struct Session {
    std::string id;
    bool valid = true;
  };
  FakeResponse Handle(const FakeRequest& request);
  FakeResponse Hand(const FakeRequest& request);
  FakeResponse Shake(const FakeRequest& request);
  bool Authenticated(const FakeRequest& request);

  mutable std::mutex mu_;
  std::map<std::string, Pkey> keys_;
  std::map<std::string, std::string> pending_secrets_;  // Key id -> secret.
  std::map<std::string, Session> sessions_;             // Token -> session.
  std::string root_token_;
  bool reject_new_sessions_ = false;
  int hands_ = 0;
  int shakes_ = 0;
  int unauthorized_ = 0;
  std::vector<FakeRequest> requests_;
  bool tls_ = false;
  std::unique_ptr<FakeHttpServer> server_;  // Last: stops before the state goes.
};

}  // namespace cloister::client::testing
