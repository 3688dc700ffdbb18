// TLS settings from Anka configuration values (versions, Go cipher names, errors), and building
// the OpenSSL context from real PEM files made by the openssl CLI.
#include "api/tls.h"

#include <openssl/x509.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "api/http_types.h"
#include "api/peer_certificate.h"
#include "tests/testutil.h"
#include "tests/wire/test_server.h"
#include "tests/wire/wire_client.h"

namespace cloister::api {
namespace {

using cloister::testing::TestPki;

// One PKI per test binary: RSA key generation is the slow part.
const TestPki& Pki() {
  static cloister::testing::TempDir* dir = new cloister::testing::TempDir();
  static TestPki pki = [] {
    auto made = cloister::testing::MakeTestPki(dir->path());
    INFO(made.status().ToString());
    REQUIRE(made.ok());
    return *made;
  }();
  return pki;
}

TlsSettings Parse(TlsConfig config) {
  if (config.cert_path.empty()) {
    config.cert_path = "/c.pem";
    config.key_path = "/k.pem";
  }
  auto settings = ParseTlsSettings(config);
  INFO(settings.status().ToString());
  REQUIRE(settings.ok());
  return *settings;
}

std::string ParseError(TlsConfig config) {
  config.cert_path = "/c.pem";
  config.key_path = "/k.pem";
  auto settings = ParseTlsSettings(config);
  REQUIRE(!settings.ok());
  REQUIRE(settings.status().code() == StatusCode::kInvalidArgument);
  return settings.status().message();
}

TEST_CASE("defaults: TLS 1.2 to 1.3, default cipher lists") {
  TlsSettings settings = Parse({});
  REQUIRE(settings.min_version == TlsVersion::k1_2);
  REQUIRE(settings.max_version == TlsVersion::k1_3);
  REQUIRE(settings.cipher_list.empty());
  REQUIRE(settings.ciphersuites.empty());
  REQUIRE(ParseTlsSettings({}).status().message().find("ANKA_SERVER_CERT") != std::string::npos);
}

TEST_CASE("versions: tls_1.0 .. tls_1.3 in any case") {
  TlsConfig config;
  config.min_version = "TLS_1.0";
  config.max_version = " tls_1.1 ";
  TlsSettings settings = Parse(config);
  REQUIRE(settings.min_version == TlsVersion::k1_0);
  REQUIRE(settings.max_version == TlsVersion::k1_1);
  REQUIRE(ParseTlsVersion("Tls_1.3").ok());
  REQUIRE(std::string(TlsVersionName(TlsVersion::k1_2)) == "tls_1.2");
}

TEST_CASE("version errors name the value and list the accepted ones") {
  TlsConfig config;
  config.min_version = "tls1.2";
  REQUIRE(ParseError(config) ==
          "ANKA_MIN_TLS_VERSION: TLS version \"tls1.2\" is not one of "
          "tls_1.0, tls_1.1, tls_1.2, tls_1.3");
  config = {};
  config.max_version = "ssl_3.0";
  REQUIRE(ParseError(config).find("ANKA_MAX_TLS_VERSION: TLS version \"ssl_3.0\"") == 0);
  config = {};
  config.min_version = "tls_1.3";
  config.max_version = "tls_1.2";
  REQUIRE(ParseError(config) ==
          "ANKA_MIN_TLS_VERSION tls_1.3 is above ANKA_MAX_TLS_VERSION tls_1.2");
}

TEST_CASE("Go cipher suite names map to OpenSSL names, TLS 1.2 and 1.3 apart") {
  TlsConfig config;
  config.cipher_suites =
      "tls_ecdhe_rsa_with_aes_128_gcm_sha256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,"
      "tls_aes_128_gcm_sha256,TLS_CHACHA20_POLY1305_SHA256,";
  TlsSettings settings = Parse(config);
  REQUIRE(settings.cipher_list == "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305");
  REQUIRE(settings.ciphersuites == "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
  bool tls13 = true;
  auto name = OpenSslCipherName("TLS_RSA_WITH_AES_256_CBC_SHA", &tls13);
  REQUIRE(name.ok());
  REQUIRE(*name == "AES256-SHA");
  REQUIRE(!tls13);
}

TEST_CASE("cipher errors name the suite") {
  TlsConfig config;
  config.cipher_suites = "tls_ecdhe_rsa_with_aes_128_gcm_sha256,tls_bogus_suite";
  std::string error = ParseError(config);
  REQUIRE(error.find("\"tls_bogus_suite\" is unknown") != std::string::npos);
  config.cipher_suites = "TLS_RSA_WITH_RC4_128_SHA";
  REQUIRE(ParseError(config).find("RC4") != std::string::npos);
}

TEST_CASE("a context builds from a certificate and its key, and from a chain file") {
  TlsSettings settings = Parse({Pki().server_cert, Pki().server_key, "", "", ""});
  auto context = TlsContext::Create(settings);
  INFO(context.status().ToString());
  REQUIRE(context.ok());
  settings.cert_path = Pki().server_chain;
  REQUIRE(TlsContext::Create(settings).ok());
  // Restricted ciphers and versions apply cleanly too.
  TlsConfig config{Pki().server_cert, Pki().server_key, "tls_1.2", "tls_1.2",
                   "tls_ecdhe_rsa_with_aes_256_gcm_sha384"};
  REQUIRE(TlsContext::Create(Parse(config)).ok());
}

TEST_CASE("an encrypted private key is refused without prompting") {
  for (const std::string& key : {Pki().server_key_encrypted, Pki().server_key_legacy_encrypted}) {
    INFO(key);
    auto context = TlsContext::Create(Parse({Pki().server_cert, key, "", "", ""}));
    REQUIRE(!context.ok());
    REQUIRE(context.status().message() ==
            "ANKA_SERVER_KEY " + key +
                ": the private key is encrypted; cloisterd needs an unencrypted PEM key");
  }
}

TEST_CASE("a key that does not match the certificate is a clear error") {
  auto context = TlsContext::Create(Parse({Pki().server_cert, Pki().other_key, "", "", ""}));
  REQUIRE(!context.ok());
  const std::string& message = context.status().message();
  INFO(message);
  REQUIRE(message.find("ANKA_SERVER_KEY " + Pki().other_key +
                       " does not match the certificate in ANKA_SERVER_CERT " +
                       Pki().server_cert) == 0);
}

TEST_CASE("missing and garbage files are clear errors") {
  auto missing = TlsContext::Create(Parse({"/nonexistent/cert.pem", Pki().server_key, "", "", ""}));
  REQUIRE(!missing.ok());
  REQUIRE(missing.status().message() ==
          "ANKA_SERVER_CERT /nonexistent/cert.pem: cannot read: No such file or directory");
  cloister::testing::TempDir dir;
  std::ofstream(dir.Sub("junk.pem")) << "not a pem file\n";
  auto junk_cert = TlsContext::Create(Parse({dir.Sub("junk.pem"), Pki().server_key, "", "", ""}));
  REQUIRE(!junk_cert.ok());
  REQUIRE(junk_cert.status().message().find("cannot load the PEM certificate chain") !=
          std::string::npos);
  auto junk_key = TlsContext::Create(Parse({Pki().server_cert, dir.Sub("junk.pem"), "", "", ""}));
  REQUIRE(!junk_key.ok());
  REQUIRE(junk_key.status().message().find("no usable PEM private key") != std::string::npos);
  // A certificate given as the key.
  auto swapped = TlsContext::Create(Parse({Pki().server_cert, Pki().server_cert, "", "", ""}));
  REQUIRE(!swapped.ok());
}

TEST_CASE("client certificates: the CA list must be a readable PEM file") {
  TlsConfig config{Pki().server_cert, Pki().server_key, "", "", ""};
  config.request_client_cert = true;
  REQUIRE(TlsContext::Create(Parse(config)).ok());  // No CA names: allowed.
  config.client_ca_path = Pki().ca_cert;
  REQUIRE(TlsContext::Create(Parse(config)).ok());
  config.client_ca_path = "/nonexistent/ca.pem";
  auto missing = TlsContext::Create(Parse(config));
  REQUIRE(!missing.ok());
  REQUIRE(missing.status().message() ==
          "ANKA_CA_CERT /nonexistent/ca.pem: cannot read: No such file or directory");
  cloister::testing::TempDir dir;
  std::ofstream(dir.Sub("junk.pem")) << "not a pem file\n";
  config.client_ca_path = dir.Sub("junk.pem");
  auto junk = TlsContext::Create(Parse(config));
  REQUIRE(!junk.ok());
  REQUIRE(junk.status().message().find("ANKA_CA_CERT " + dir.Sub("junk.pem") +
                                       ": no PEM CA certificate") == 0);
}

void RunOpenSsl(const std::vector<std::string>& args) {
  auto result = cloister::testing::RunProgram("openssl", args, 60000);
  INFO(result.Describe());
  REQUIRE(result.Succeeded());
}

std::string SubjectOf(const PeerCertificate& cert) {
  char* text = X509_NAME_oneline(X509_get_subject_name(cert.leaf()), nullptr, 0);
  std::string out(text);
  OPENSSL_free(text);
  return out;
}

TEST_CASE("client certificates over a real socket: every request carries what was presented") {
  cloister::testing::TempDir dir;
  // A client certificate from the test CA, and a self-signed one no CA knows.
  const std::string key = dir.Sub("client-key.pem");
  const std::string csr = dir.Sub("client.csr");
  const std::string cert = dir.Sub("client-crt.pem");
  RunOpenSsl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", key, "-out", csr, "-subj", "/O=Dev Ops/CN=ci"});
  RunOpenSsl({"x509", "-req", "-in", csr, "-CA", Pki().ca_cert, "-CAkey", Pki().ca_key,
              "-set_serial", "0x4242", "-days", "2", "-out", cert});
  const std::string stranger_key = dir.Sub("stranger-key.pem");
  const std::string stranger = dir.Sub("stranger-crt.pem");
  RunOpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", stranger_key, "-out", stranger, "-days", "1", "-subj",
              "/O=Elsewhere/CN=stranger"});

  TlsConfig config{Pki().server_cert, Pki().server_key, "", "", ""};
  config.request_client_cert = true;
  config.client_ca_path = Pki().ca_cert;
  cloister::testing::TestServerOptions options;
  options.tls = Parse(config);
  auto started = cloister::testing::TestServer::Start(options);
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  auto& server = *started;
  const std::string url = server->target().BaseUrl() + "/livez";

  // Two requests on one keep-alive connection, with the CA's client certificate.
  auto curl = cloister::testing::RunProgram(
      "curl", {"-sS", "-k", "--cert", cert, "--key", key, url, url}, 20000);
  INFO(curl.Describe());
  REQUIRE(curl.Succeeded());
  // No certificate at all, and a certificate of an unknown CA: the handshake succeeds all the
  // same (the auth layer refuses them per request).
  REQUIRE(cloister::testing::RunProgram("curl", {"-sS", "-k", url}, 20000).Succeeded());
  REQUIRE(cloister::testing::RunProgram(
              "curl", {"-sS", "-k", "--cert", stranger, "--key", stranger_key, url}, 20000)
              .Succeeded());

  std::vector<Request> requests = server->Requests();
  REQUIRE(requests.size() == 4);
  REQUIRE(requests[0].tls);
  REQUIRE(requests[0].client_cert != nullptr);
  REQUIRE(requests[0].client_cert == requests[1].client_cert);  // Captured once per connection.
  REQUIRE(SubjectOf(*requests[0].client_cert) == "/O=Dev Ops/CN=ci");
  REQUIRE(ASN1_INTEGER_get(X509_get0_serialNumber(requests[0].client_cert->leaf())) == 0x4242);
  REQUIRE(requests[2].client_cert == nullptr);
  REQUIRE(requests[3].client_cert != nullptr);
  REQUIRE(SubjectOf(*requests[3].client_cert) == "/O=Elsewhere/CN=stranger");

  // The CertificateRequest names the CA, so clients can pick the right certificate.
  auto s_client = cloister::testing::RunProgram(
      "openssl", {"s_client", "-connect", "127.0.0.1:" + std::to_string(server->port()),
                  "-tls1_2"},
      20000);
  INFO(s_client.Describe());
  REQUIRE(s_client.out.find("Acceptable client certificate CA names") != std::string::npos);
  REQUIRE(s_client.out.find("cloister test CA") != std::string::npos);
}

}  // namespace
}  // namespace cloister::api
