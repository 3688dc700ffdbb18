#include "client/fake_controller.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "log/base64.h"

namespace cloister::client::testing {
namespace {

using Json = nlohmann::json;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    ERR_print_errors_fp(stderr);
    throw std::runtime_error("fake_controller: " + what);
  }
}

Pkey Own(EVP_PKEY* key) {
  Check(key != nullptr, "key generation");
  return Pkey(key, &EVP_PKEY_free);
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<size_t>(size));
  BIO_free(bio);
  return text;
}

std::string Envelope(const std::string& status, const std::string& message, const Json& body) {
  Json j{{"status", status}, {"message", message}};
  if (!body.is_null()) j["body"] = body;
  return j.dump();
}

const FakeResponse kUnauthorized{401, Envelope("FAIL", "Authentication Required", nullptr)};

// ---- Certificates ----

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  Check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for key, signed by issuer_key (self-signed when issuer is null).
X509Ptr MakeCert(const Pkey& key, const std::string& cn, X509* issuer, const Pkey& issuer_key,
                 bool ca, const char* san, long serial) {
  X509Ptr cert(X509_new(), &X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (ca) {
    AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
  }
  if (san != nullptr) {
    AddExtension(cert.get(), signer, NID_subject_alt_name, san);
  }
  Check(X509_sign(cert.get(), issuer_key.get(), EVP_sha256()) > 0, "sign");
  return cert;
}

void WriteCert(const std::string& path, X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  WriteTextFile(path, BioText(bio));
}

bool ReadFull(SSL* ssl, int fd, char* buffer, size_t size, size_t* got) {
  const long n =
      ssl != nullptr ? SSL_read(ssl, buffer, static_cast<int>(size)) : read(fd, buffer, size);
  if (n <= 0) return false;
  *got = static_cast<size_t>(n);
  return true;
}

void WriteAll(SSL* ssl, int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const long n = ssl != nullptr
                       ? SSL_write(ssl, data.data() + sent, static_cast<int>(data.size() - sent))
                       : write(fd, data.data() + sent, data.size() - sent);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    default:
      return "Other";
  }
}

}  // namespace

// ---- OpenSSL helpers ----

Pkey GenerateRsaKey(int bits) { return Own(EVP_RSA_gen(static_cast<unsigned>(bits))); }

Pkey GenerateEcKey() { return Own(EVP_EC_gen("P-256")); }

std::string PemPkcs1(const Pkey& key) {
  BIO* bio = BIO_new(BIO_s_mem());
  Check(PEM_write_bio_PrivateKey_traditional(bio, key.get(), nullptr, nullptr, 0, nullptr,
                                             nullptr) > 0,
        "PEM PKCS#1");
  return BioText(bio);
}

std::string PemPkcs8(const Pkey& key) {
  BIO* bio = BIO_new(BIO_s_mem());
  Check(PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr) > 0,
        "PEM PKCS#8");
  return BioText(bio);
}

std::string Base64DerPkcs1(const Pkey& key) {
  unsigned char* der = nullptr;
  const int size = i2d_PrivateKey(key.get(), &der);  // RSA: the PKCS#1 RSAPrivateKey.
  Check(size > 0, "DER");
  std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(size));
  OPENSSL_free(der);
  return log::Base64Encode(bytes);
}

std::string EncryptOaepSha256(const Pkey& key, const std::string& plain) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key.get(), nullptr);
  const auto* in = reinterpret_cast<const unsigned char*>(plain.data());
  size_t size = 0;
  Check(ctx != nullptr && EVP_PKEY_encrypt_init(ctx) > 0 &&
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0 &&
            EVP_PKEY_encrypt(ctx, nullptr, &size, in, plain.size()) > 0,
        "encrypt init");
  std::string out(size, '\0');
  Check(EVP_PKEY_encrypt(ctx, reinterpret_cast<unsigned char*>(out.data()), &size, in,
                         plain.size()) > 0,
        "encrypt");
  out.resize(size);
  EVP_PKEY_CTX_free(ctx);
  return out;
}

std::string RandomText(size_t bytes) {
  std::string raw(bytes, '\0');
  Check(RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) > 0,
        "random");
  std::string text = log::Base64Encode(raw);
  for (char& c : text) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  text.erase(std::remove(text.begin(), text.end(), '='), text.end());
  return text;
}

void WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  Check(static_cast<bool>(out), "write " + path);
}

TestPki MakeTestPki(const std::string& dir, const std::string& client_cn) {
  TestPki pki;
  const Pkey ca_key = GenerateEcKey();
  const Pkey other_ca_key = GenerateEcKey();
  const Pkey server_key = GenerateEcKey();
  const Pkey client_key = GenerateEcKey();
  X509Ptr ca = MakeCert(ca_key, "cloister test CA", nullptr, ca_key, true, nullptr, 1);
  X509Ptr other_ca =
      MakeCert(other_ca_key, "another test CA", nullptr, other_ca_key, true, nullptr, 2);
  X509Ptr server =
      MakeCert(server_key, "127.0.0.1", ca.get(), ca_key, false, "IP:127.0.0.1,DNS:localhost", 3);
  X509Ptr client = MakeCert(client_key, client_cn, ca.get(), ca_key, false, nullptr, 4);
  pki.ca_cert = dir + "/ca-crt.pem";
  pki.other_ca_cert = dir + "/other-ca-crt.pem";
  pki.server_cert = dir + "/server-crt.pem";
  pki.server_key = dir + "/server-key.pem";
  pki.client_cert = dir + "/client-crt.pem";
  pki.client_key = dir + "/client-key.pem";
  WriteCert(pki.ca_cert, ca.get());
  WriteCert(pki.other_ca_cert, other_ca.get());
  WriteCert(pki.server_cert, server.get());
  WriteCert(pki.client_cert, client.get());
  WriteTextFile(pki.server_key, PemPkcs8(server_key));
  WriteTextFile(pki.client_key, PemPkcs8(client_key));
  return pki;
}

// ---- FakeHttpServer ----

FakeHttpServer::FakeHttpServer(Handler handler, std::optional<FakeTls> tls)
    : handler_(std::move(handler)) {
  if (tls) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    Check(ctx != nullptr, "SSL_CTX_new");
    ssl_ctx_ = ctx;
    Check(SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file.c_str()) > 0 &&
              SSL_CTX_use_PrivateKey_file(ctx, tls->key_file.c_str(), SSL_FILETYPE_PEM) > 0,
          "server certificate");
    if (!tls->client_ca_file.empty()) {
      Check(SSL_CTX_load_verify_locations(ctx, tls->client_ca_file.c_str(), nullptr) > 0,
            "client CA");
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      // Resumed sessions need an id context when peers are verified; resumption is off anyway,
      // so each connection verifies the client certificate afresh.
      static const unsigned char kContext[] = "cloister-fake";
      SSL_CTX_set_session_id_context(ctx, kContext, sizeof(kContext) - 1);
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
  }
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  Check(listen_fd_ >= 0, "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  Check(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0, "bind");
  Check(listen(listen_fd_, 64) == 0, "listen");
  socklen_t length = sizeof(address);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { Serve(); });
}

FakeHttpServer::~FakeHttpServer() {
  stop_ = true;
  thread_.join();
  close(listen_fd_);
  SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

void FakeHttpServer::Serve() {
  while (!stop_) {
    pollfd waiting{listen_fd_, POLLIN, 0};
    if (poll(&waiting, 1, 50) <= 0) {
      continue;
    }
    const int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      continue;
    }
    timeval timeout{5, 0};  // A stuck client cannot hold the server for long.
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    ServeConnection(fd);
    close(fd);
  }
}

void FakeHttpServer::ServeConnection(int fd) {
  SSL* ssl = nullptr;
  FakeRequest request;
  if (ssl_ctx_ != nullptr) {
    ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) <= 0) {
      failed_handshakes_++;
      ERR_clear_error();
      SSL_free(ssl);
      return;
    }
    if (X509* peer = SSL_get1_peer_certificate(ssl)) {
      char cn[256] = {};
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
      request.client_cn = cn;
      X509_free(peer);
    }
  }
  std::string data;
  char buffer[16384];
  size_t got = 0;
  size_t header_end = std::string::npos;
  while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
    if (!ReadFull(ssl, fd, buffer, sizeof(buffer), &got)) break;
    data.append(buffer, got);
  }
  if (header_end != std::string::npos) {
    // Request line and headers.
    size_t line_end = data.find("\r\n");
    const std::string first = data.substr(0, line_end);
    const size_t space1 = first.find(' ');
    const size_t space2 = first.find(' ', space1 + 1);
    request.method = first.substr(0, space1);
    request.path = first.substr(space1 + 1, space2 - space1 - 1);
    size_t at = line_end + 2;
    while (at < header_end) {
      line_end = data.find("\r\n", at);
      const std::string line = data.substr(at, line_end - at);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        size_t value_at = colon + 1;
        while (value_at < line.size() && line[value_at] == ' ') value_at++;
        request.headers[name] = line.substr(value_at);
      }
      at = line_end + 2;
    }
    const size_t length = request.headers.count("content-length") != 0
                              ? std::stoul(request.headers["content-length"])
                              : 0;
    request.body = data.substr(header_end + 4);
    while (request.body.size() < length && ReadFull(ssl, fd, buffer, sizeof(buffer), &got)) {
      request.body.append(buffer, got);
    }
    const FakeResponse response = handler_(request);
    WriteAll(ssl, fd,
             "HTTP/1.1 " + std::to_string(response.status) + " " + Reason(response.status) +
                 "\r\nContent-Type: application/json\r\nContent-Length: " +
                 std::to_string(response.body.size()) + "\r\nConnection: close\r\n\r\n" +
                 response.body);
  }
  if (ssl != nullptr) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
  }
}

// ---- FakeController ----

FakeController::FakeController(std::optional<FakeTls> tls) : tls_(tls.has_value()) {
  server_ = std::make_unique<FakeHttpServer>(
      [this](const FakeRequest& request) { return Handle(request); }, std::move(tls));
}

std::string FakeController::url() const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(server_->port());
}

void FakeController::AddApiKey(const std::string& id, Pkey public_key) {
  std::lock_guard<std::mutex> lock(mu_);
  keys_[id] = std::move(public_key);
}

void FakeController::SetRootToken(const std::string& token) {
  std::lock_guard<std::mutex> lock(mu_);
  root_token_ = token;
}

void FakeController::ExpireSessions() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [token, session] : sessions_) {
    session.valid = false;
  }
}

void FakeController::RejectNewSessions(bool reject) {
  std::lock_guard<std::mutex> lock(mu_);
  reject_new_sessions_ = reject;
}

int FakeController::hands() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hands_;
}

int FakeController::shakes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shakes_;
}

int FakeController::unauthorized() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unauthorized_;
}

std::vector<FakeRequest> FakeController::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

FakeResponse FakeController::Handle(const FakeRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (request.path == "/tap/v1/hand" && request.method == "POST") {
    return Hand(request);
  }
  if (request.path == "/tap/v1/shake" && request.method == "POST") {
    return Shake(request);
  }
  requests_.push_back(request);
  if (!Authenticated(request)) {
    unauthorized_++;
    return kUnauthorized;
  }
  const std::string path = request.path.substr(0, request.path.find('?'));
  if (path == "/node/v1/join") {
    return {200, Envelope("OK", "", Json{{"node_id", "node-1"}})};
  }
  if (path == "/node/v1/instances") {
    return {200, Envelope("OK", "", Json{{"instances", Json::array()}, {"seq", 0}})};
  }
  return {200, Envelope("OK", "", Json{{"path", path}})};
}

FakeResponse FakeController::Hand(const FakeRequest& request) {
  hands_++;
  Json body = Json::parse(request.body, nullptr, false);
  const std::string id = body.is_object() ? body.value("id", "") : "";
  auto key = keys_.find(id);
  if (key == keys_.end()) {
    return {404, Envelope("FAIL", "Not found", nullptr)};
  }
  const std::string secret = RandomText(21);
  pending_secrets_[id] = secret;
  return {200, log::Base64Encode(EncryptOaepSha256(key->second, secret))};
}

FakeResponse FakeController::Shake(const FakeRequest& request) {
  shakes_++;
  Json body = Json::parse(request.body, nullptr, false);
  const std::string id = body.is_object() ? body.value("id", "") : "";
  const std::string secret = body.is_object() ? body.value("secret", "") : "";
  auto pending = pending_secrets_.find(id);
  if (pending == pending_secrets_.end() || pending->second != secret) {
    return {401, Envelope("FAIL", "Authentication Required", nullptr)};
  }
  pending_secrets_.erase(pending);  // One shake per secret.
  const std::string token = RandomText(30);
  sessions_[token] = Session{id, !reject_new_sessions_};
  Json data{{"userName", id}, {"token", token}, {"sessionId", RandomText(12)}};
  return {200, Json{{"id", id}, {"data", data}}.dump()};
}

bool FakeController::Authenticated(const FakeRequest& request) {
  if (!request.client_cn.empty()) {
    return true;  // The TLS layer verified it against the client CA.
  }
  auto header = request.headers.find("authorization");
  if (header == request.headers.end()) {
    return false;
  }
  const std::string& value = header->second;
  if (value.rfind("Bearer ", 0) == 0) {
    std::optional<std::string> decoded = log::Base64Decode(value.substr(7));
    Json data = decoded ? Json::parse(*decoded, nullptr, false) : Json();
    if (!data.is_object() || !data["token"].is_string() || !data["userName"].is_string()) {
      return false;
    }
    auto session = sessions_.find(data["token"].get<std::string>());
    return session != sessions_.end() && session->second.valid &&
           session->second.id == data["userName"].get<std::string>();
  }
  if (value.rfind("Basic ", 0) == 0 && !root_token_.empty()) {
    return value.substr(6) == log::Base64Encode("root:" + root_token_);
  }
  return false;
}

}  // namespace cloister::client::testing
