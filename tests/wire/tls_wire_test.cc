// HTTPS on the in-process TestServer: curl and the conformance checks over TLS, protocol
// versions and cipher suites checked with openssl s_client, refusal of an encrypted key, and
// garbage or silence in place of a ClientHello. Certificates come from MakeTestPki (openssl
// CLI), once per test binary.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "api/limits.h"
#include "api/tls.h"
#include "tests/testutil.h"
#include "tests/wire/conformance.h"
#include "tests/wire/test_server.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

const TestPki& Pki() { return SharedTestPki(); }

api::TlsSettings Settings(api::TlsConfig config) {
  if (config.cert_path.empty()) {
    config.cert_path = Pki().server_cert;
  }
  if (config.key_path.empty()) {
    config.key_path = Pki().server_key;
  }
  auto settings = api::ParseTlsSettings(config);
  INFO(settings.status().ToString());
  REQUIRE(settings.ok());
  return *settings;
}

std::unique_ptr<TestServer> StartTls(api::TlsConfig config = {},
                                     api::HttpLimits limits = api::HttpLimits()) {
  TestServerOptions options;
  options.limits = limits;
  options.tls = Settings(config);
  auto server = TestServer::Start(options);
  INFO(server.status().ToString());
  REQUIRE(server.ok());
  return std::move(*server);
}

ConformanceTarget Target(const TestServer& server, bool verify = true) {
  ConformanceTarget target;
  target.wire = server.target();
  if (verify) {
    target.wire.ca_file = Pki().ca_cert;
  }
  target.limits = server.options().limits;
  return target;
}

// openssl s_client against the server with extra arguments; true if the handshake succeeded.
bool SClient(const TestServer& server, const std::vector<std::string>& extra,
             std::string* output = nullptr) {
  std::vector<std::string> args = {"s_client", "-connect",
                                   "127.0.0.1:" + std::to_string(server.port()), "-CAfile",
                                   Pki().ca_cert, "-verify_return_error"};
  args.insert(args.end(), extra.begin(), extra.end());
  ProgramResult result = RunProgram("openssl", args);
  if (output != nullptr) {
    *output = result.out + result.err;
  }
  return result.Succeeded();
}

TEST_CASE("curl over HTTPS, with --insecure and with the CA") {
  auto server = StartTls();
  CheckCurl(Target(*server, /*verify=*/false));
  CheckCurl(Target(*server, /*verify=*/true));
  REQUIRE(server->Requests().at(0).tls);
}

TEST_CASE("keep-alive, pipelining, chunked bodies and HEAD over TLS") {
  auto server = StartTls();
  ConformanceTarget target = Target(*server);
  target.limits.body_bytes_max = 64 * 1024;
  CheckLivez(target);
  CheckKeepAlive(target);
  CheckPipelining(target);
  CheckChunkedBody(target);
  CheckExpectContinue(target);
  CheckHead(target);
  CheckConnectionClose(target);
}

TEST_CASE("limits and malformed requests over TLS") {
  api::HttpLimits limits;
  limits.body_bytes_max = 64 * 1024;
  auto server = StartTls({}, limits);
  ConformanceTarget target = Target(*server);
  CheckMalformedRequest(target);
  CheckHeaderTooLarge(target);
  CheckBodyTooLarge(target);
  CheckChunkedBodyTooLarge(target);
}

TEST_CASE("a certificate file holding the chain works") {
  api::TlsConfig config;
  config.cert_path = Pki().server_chain;
  auto server = StartTls(config);
  CheckLivez(Target(*server));
  std::string output;
  REQUIRE(SClient(*server, {"-showcerts"}, &output));
  REQUIRE(output.find("cloister test CA") != std::string::npos);
}

TEST_CASE("min tls_1.3 refuses TLS 1.2 clients") {
  api::TlsConfig config;
  config.min_version = "tls_1.3";
  auto server = StartTls(config);
  std::string output;
  REQUIRE(SClient(*server, {"-tls1_3"}, &output));
  INFO(output);
  REQUIRE(output.find("TLSv1.3") != std::string::npos);
  REQUIRE(!SClient(*server, {"-tls1_2"}));
  REQUIRE(server->Stats().tls_handshake_failures_total >= 1);
  CheckLivez(Target(*server));  // Still serving.
}

TEST_CASE("max tls_1.2 refuses TLS 1.3 clients") {
  api::TlsConfig config;
  config.max_version = "TLS_1.2";
  auto server = StartTls(config);
  REQUIRE(!SClient(*server, {"-tls1_3"}));
  std::string output;
  REQUIRE(SClient(*server, {"-tls1_2"}, &output));
  INFO(output);
  REQUIRE(output.find("TLSv1.2") != std::string::npos);
}

TEST_CASE("a cipher list restricted to one TLS 1.2 suite") {
  api::TlsConfig config;
  config.max_version = "tls_1.2";
  config.cipher_suites = "tls_ecdhe_rsa_with_aes_128_gcm_sha256";
  auto server = StartTls(config);
  REQUIRE(!SClient(*server, {"-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"}));
  std::string output;
  REQUIRE(SClient(*server, {"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"}, &output));
  INFO(output);
  REQUIRE(output.find("ECDHE-RSA-AES128-GCM-SHA256") != std::string::npos);
}

TEST_CASE("a TLS 1.3 suite restriction") {
  api::TlsConfig config;
  config.min_version = "tls_1.3";
  config.cipher_suites = "TLS_AES_256_GCM_SHA384";
  auto server = StartTls(config);
  REQUIRE(!SClient(*server, {"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"}));
  std::string output;
  REQUIRE(SClient(*server, {"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"}, &output));
  INFO(output);
  REQUIRE(output.find("TLS_AES_256_GCM_SHA384") != std::string::npos);
}

TEST_CASE("an encrypted key is refused at Listen with a clear message") {
  for (const std::string& key : {Pki().server_key_encrypted, Pki().server_key_legacy_encrypted}) {
    api::TlsConfig config;
    config.key_path = key;
    TestServerOptions options;
    options.tls = Settings(config);
    auto server = TestServer::Start(options);
    REQUIRE(!server.ok());
    REQUIRE(server.status().message() ==
            "ANKA_SERVER_KEY " + key +
                ": the private key is encrypted; cloisterd needs an unencrypted PEM key");
  }
}

TEST_CASE("plain HTTP to the TLS port closes without a crash") {
  auto server = StartTls();
  for (int i = 0; i < 3; i++) {
    WireTarget plain = server->target();
    plain.tls = false;
    auto connection = WireConnection::Connect(plain);
    REQUIRE(connection.ok());
    REQUIRE((*connection)->Send(MakeRequest("GET", "/livez")).ok());
    auto rest = (*connection)->ReadUntilClose(3000);
    REQUIRE(rest.ok());
    REQUIRE(rest->find("HTTP/1.1") == std::string::npos);  // At most a TLS alert.
  }
  REQUIRE(server->Stats().tls_handshake_failures_total == 3);
  CheckLivez(Target(*server));
}

TEST_CASE("a silent or stalled handshake is closed after header_timeout_ms") {
  api::HttpLimits limits;
  limits.header_timeout_ms = 1000;
  auto server = StartTls({}, limits);
  WireTarget plain = server->target();
  plain.tls = false;
  auto silent = WireConnection::Connect(plain);
  auto stalled = WireConnection::Connect(plain);
  REQUIRE(silent.ok());
  REQUIRE(stalled.ok());
  // The first bytes of a ClientHello record, and then nothing.
  REQUIRE((*stalled)->Send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)).ok());
  const int64_t start = MonotonicMs();
  REQUIRE((*silent)->ClosedSilently(3000));
  REQUIRE((*stalled)->ReadUntilClose(3000).ok());
  const int64_t elapsed = MonotonicMs() - start;
  INFO("closed after " << elapsed << " ms");
  REQUIRE(elapsed >= 900);
  REQUIRE(elapsed <= 2500);
  REQUIRE(server->Stats().tls_handshake_failures_total == 2);
}

}  // namespace
}  // namespace cloister::testing
