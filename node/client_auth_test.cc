// Client authentication against a fake controller on a real socket (fake_controller.h): TAP's
// hand + shake and the Bearer it gives, the retry after a 401, proactive renewal, one session
// shared by threads, the key formats and their errors, the root token, client certificates over
// real TLS, node.json, and an agent that joins and runs with an API key.
#include "client/client_auth.h"

#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "log/base64.h"
#include "log/status.h"
#include "node/agent.h"
#include "client/controller_client.h"
#include "client/fake_controller.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

using client::RawPost;
using client::RawReply;
using client::RsaPrivateKey;

using ::cloister::testing::TempDir;
using client::testing::FakeController;
using client::testing::Pkey;
using Json = nlohmann::json;

constexpr long kTimeoutMs = 10'000;

// One RSA key for most tests (generating one takes a while).
const Pkey& SharedKey() {
  static const Pkey key = client::testing::GenerateRsaKey();
  return key;
}

Credentials ApiKey(const std::string& id, const std::string& key_text) {
  Credentials c;
  c.api_key_id = id;
  c.api_key_string = key_text;
  return c;
}

std::shared_ptr<ClientAuth> MakeAuth(const Credentials& credentials,
                                     ClientAuthOptions options = {}) {
  auto auth = ClientAuth::Create(credentials, std::move(options));
  INFO(auth.status().ToString());
  REQUIRE(auth.ok());
  return *auth;
}

ControllerClientOptions Options(const std::string& url, std::shared_ptr<ClientAuth> auth) {
  InitHttpClients();
  ControllerClientOptions options;
  options.url = url;
  options.auth = std::move(auth);
  return options;
}

ControllerReply CallOk(ControllerClient& client, const std::string& path = "/api/v1/status") {
  auto reply = client.Call("GET", path, "", kTimeoutMs);
  INFO(reply.status().ToString());
  REQUIRE(reply.ok());
  INFO(reply->http_status << " " << reply->message);
  REQUIRE(reply->ok);
  return *reply;
}

// The JSON a "Bearer <base64>" header carries.
Json BearerData(const std::string& header) {
  REQUIRE(header.rfind("Bearer ", 0) == 0);
  auto decoded = log::Base64Decode(header.substr(7));
  REQUIRE(decoded.has_value());
  Json data = Json::parse(*decoded, nullptr, false);
  REQUIRE(data.is_object());
  return data;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("a transport error names the controller without the URL's user info or query") {
  // Port 1 on loopback: nothing listens, so the call fails in the transport.
  ControllerClient client(Options("http://operator:s3cr3t-pw@127.0.0.1:1", nullptr));
  auto reply = client.Call("GET", "/api/v1/status?token=t0k3n", "", kTimeoutMs);
  REQUIRE(!reply.ok());
  const std::string message = reply.status().message();
  INFO(message);
  CHECK(message.find("GET http://127.0.0.1:1/api/v1/status: ") == 0);
  CHECK(message.find("s3cr3t") == std::string::npos);
  CHECK(message.find("operator") == std::string::npos);
  CHECK(message.find("t0k3n") == std::string::npos);
}

TEST_CASE("CredentialKindOf: at most one kind, and each one complete") {
  Credentials none;
  CHECK(*CredentialKindOf(none) == CredentialKind::kNone);
  Credentials root;
  root.root_token = "t";
  CHECK(*CredentialKindOf(root) == CredentialKind::kRootToken);
  CHECK(*CredentialKindOf(ApiKey("id", "k")) == CredentialKind::kApiKey);
  Credentials from_file;
  from_file.api_key_id = "id";
  from_file.api_key_file = "/k.pem";
  CHECK(*CredentialKindOf(from_file) == CredentialKind::kApiKey);
  Credentials cert;
  cert.cert_file = "/c.pem";
  CHECK(*CredentialKindOf(cert) == CredentialKind::kClientCertificate);
  cert.cert_key_file = "/k.pem";
  CHECK(*CredentialKindOf(cert) == CredentialKind::kClientCertificate);

  const auto refused = [](const Credentials& c, const std::string& why) {
    auto kind = CredentialKindOf(c);
    REQUIRE_FALSE(kind.ok());
    CHECK(kind.status().code() == StatusCode::kInvalidArgument);
    INFO(kind.status().message());
    CHECK(Contains(kind.status().message(), why));
  };
  Credentials two = ApiKey("id", "k");
  two.root_token = "t";
  refused(two, "give one credential only");
  Credentials cert_and_key = cert;
  cert_and_key.api_key_id = "id";
  cert_and_key.api_key_file = "/k";
  refused(cert_and_key, "give one credential only");
  Credentials cert_and_root = cert;
  cert_and_root.root_token = "t";
  refused(cert_and_root, "give one credential only");
  refused(ApiKey("", "k"), "--api-key-id");
  Credentials id_only;
  id_only.api_key_id = "id";
  refused(id_only, "--api-key-string or --api-key-file");
  Credentials both = ApiKey("id", "k");
  both.api_key_file = "/k";
  refused(both, "--api-key-string or --api-key-file");
  Credentials key_without_cert;
  key_without_cert.cert_key_file = "/k.pem";
  refused(key_without_cert, "--cert");
}

TEST_CASE("RsaPrivateKey: PEM PKCS#1, PEM PKCS#8 and the bare base64 DER all load") {
  TempDir dir;
  const Pkey& key = SharedKey();
  const std::string pkcs1 = client::testing::PemPkcs1(key);
  const std::string pkcs8 = client::testing::PemPkcs8(key);
  const std::string der64 = client::testing::Base64DerPkcs1(key);
  REQUIRE(Contains(pkcs1, "-----BEGIN RSA PRIVATE KEY-----"));
  REQUIRE(Contains(pkcs8, "-----BEGIN PRIVATE KEY-----"));
  REQUIRE_FALSE(Contains(der64, "-----"));
  std::string wrapped;  // The base64 over 64-column lines, as a file would hold it.
  for (size_t at = 0; at < der64.size(); at += 64) wrapped += der64.substr(at, 64) + "\n";

  const std::vector<std::pair<std::string, std::string>> forms = {
      {"PEM PKCS#1", pkcs1},
      {"PEM PKCS#8", pkcs8},
      {"base64 DER", der64},
      {"wrapped base64 DER", wrapped},
      {"PEM with blank lines around", "\n\n" + pkcs1 + "\n  \n"},
  };
  const std::string secret = client::testing::RandomText(21);
  const std::string ciphertext = client::testing::EncryptOaepSha256(key, secret);
  for (const auto& [name, text] : forms) {
    INFO(name);
    auto parsed = RsaPrivateKey::Parse(text, "--api-key-string");
    INFO(parsed.status().ToString());
    REQUIRE(parsed.ok());
    auto plain = (*parsed)->DecryptOaepSha256(ciphertext);
    REQUIRE(plain.ok());
    CHECK(*plain == secret);
    const std::string path = dir.Sub("key.pem");
    client::testing::WriteTextFile(path, text);
    auto loaded = RsaPrivateKey::Load(path);
    REQUIRE(loaded.ok());
    CHECK(*(*loaded)->DecryptOaepSha256(ciphertext) == secret);
  }
  // Ciphertext for another key does not decrypt.
  auto parsed = RsaPrivateKey::Parse(pkcs1, "--api-key-string");
  REQUIRE(parsed.ok());
  const Pkey other = client::testing::GenerateRsaKey();
  CHECK_FALSE((*parsed)->DecryptOaepSha256(client::testing::EncryptOaepSha256(other, secret)).ok());
}

TEST_CASE("RsaPrivateKey: errors name the flag and the file, never the key") {
  TempDir dir;
  const std::string ec_pem = client::testing::PemPkcs8(client::testing::GenerateEcKey());
  const std::string pkcs1 = client::testing::PemPkcs1(SharedKey());
  const std::string truncated =
      pkcs1.substr(0, pkcs1.size() / 2) + "\n-----END RSA PRIVATE KEY-----\n";
  const std::string garbage = "c2VjcmV0LWJ1dC1ub3QtYS1rZXk=";  // base64, not DER.
  const std::string encrypted =
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq\n"
      "-----END ENCRYPTED PRIVATE KEY-----\n";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {ec_pem, "--api-key-string: not an RSA private key"},
      {truncated, "--api-key-string: not an RSA private key"},
      {garbage, "--api-key-string: not an RSA private key"},
      {"not base64 at all!", "--api-key-string: not an RSA private key"},
      {"   \n", "--api-key-string: empty"},
      {encrypted, "--api-key-string: an encrypted private key"},
  };
  for (const auto& [text, expected] : bad) {
    auto parsed = RsaPrivateKey::Parse(text, "--api-key-string");
    REQUIRE_FALSE(parsed.ok());
    const std::string& message = parsed.status().message();
    INFO(message);
    CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
    CHECK(Contains(message, expected));
    CHECK_FALSE(Contains(message, "MII"));  // No key material.
    CHECK_FALSE(Contains(message, garbage));
  }
  const std::string ec_path = dir.Sub("ec.pem");
  client::testing::WriteTextFile(ec_path, ec_pem);
  auto from_file = RsaPrivateKey::Load(ec_path);
  REQUIRE_FALSE(from_file.ok());
  CHECK(Contains(from_file.status().message(),
                 "--api-key-file " + ec_path + ": not an RSA private key"));
  auto missing = RsaPrivateKey::Load(dir.Sub("missing.pem"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK(Contains(missing.status().message(), "--api-key-file " + dir.Sub("missing.pem") + ": "));
  // ClientAuth::Create reports the same, before any request.
  auto created = ClientAuth::Create(ApiKey("node", ec_pem));
  REQUIRE_FALSE(created.ok());
  CHECK(Contains(created.status().message(), "--api-key-string: not an RSA private key"));
}

TEST_CASE("API key: hand + shake on the first request, then the same Bearer") {
  FakeController controller;
  controller.AddApiKey("node-uak", SharedKey());
  auto auth = MakeAuth(ApiKey("node-uak", client::testing::PemPkcs1(SharedKey())));
  ControllerClient client(Options(controller.url(), auth));
  CHECK(controller.hands() == 0);  // Lazily: nothing before the first request.

  CallOk(client);
  CHECK(controller.hands() == 1);
  CHECK(controller.shakes() == 1);
  CHECK(auth->handshakes() == 1);
  auto requests = controller.requests();
  REQUIRE(requests.size() == 1);
  const std::string header = requests[0].headers["authorization"];
  const Json data = BearerData(header);
  CHECK(data["userName"] == "node-uak");
  CHECK(data["token"].is_string());
  CHECK(data["sessionId"].is_string());

  CallOk(client, "/api/v1/node");
  auto reply = client.Call("POST", "/node/v1/heartbeat", R"({"node_id":"n"})", kTimeoutMs);
  REQUIRE(reply.ok());
  CHECK(reply->ok);
  CHECK(controller.hands() == 1);  // The session is reused.
  requests = controller.requests();
  REQUIRE(requests.size() == 3);
  CHECK(requests[1].headers["authorization"] == header);
  CHECK(requests[2].headers["authorization"] == header);
  CHECK(requests[2].body == R"({"node_id":"n"})");
}

TEST_CASE("API key: a 401 (expired session) re-does TAP and the call succeeds") {
  FakeController controller;
  controller.AddApiKey("node-uak", SharedKey());
  auto auth = MakeAuth(ApiKey("node-uak", client::testing::PemPkcs8(SharedKey())));
  ControllerClient client(Options(controller.url(), auth));
  CallOk(client);
  const std::string first = controller.requests().back().headers["authorization"];

  controller.ExpireSessions();
  const ControllerReply reply =
      CallOk(client, "/api/v1/vm?id=abc");  // 401, new session, the same request again.
  CHECK(reply.body["path"] == "/api/v1/vm");
  CHECK(controller.unauthorized() == 1);
  CHECK(controller.hands() == 2);
  CHECK(controller.shakes() == 2);
  auto requests = controller.requests();
  REQUIRE(requests.size() == 3);
  CHECK(requests[1].headers["authorization"] == first);
  CHECK(requests[2].headers["authorization"] != first);
  CHECK(requests[2].path == "/api/v1/vm?id=abc");

  CallOk(client);  // And the new session stays.
  CHECK(controller.hands() == 2);
}

TEST_CASE("API key: a controller that keeps answering 401 gets one retry, not a loop") {
  FakeController controller;
  controller.AddApiKey("node-uak", SharedKey());
  controller.RejectNewSessions(true);
  ControllerClient client(
      Options(controller.url(), MakeAuth(ApiKey("node-uak", client::testing::PemPkcs1(SharedKey())))));
  auto reply = client.Call("GET", "/api/v1/status", "", kTimeoutMs);
  REQUIRE(reply.ok());  // An answer: the caller judges it.
  CHECK(reply->http_status == 401);
  CHECK_FALSE(reply->ok);
  CHECK(reply->message == "Authentication Required");
  CHECK(controller.hands() == 2);
  CHECK(controller.unauthorized() == 2);
}

TEST_CASE("API key: a wrong key or an unknown id fails with a clear error") {
  FakeController controller;
  controller.AddApiKey("node-uak", SharedKey());
  const std::string wrong_pem = client::testing::PemPkcs1(client::testing::GenerateRsaKey());
  ControllerClient wrong(Options(controller.url(), MakeAuth(ApiKey("node-uak", wrong_pem))));
  auto reply = wrong.Call("GET", "/api/v1/status", "", kTimeoutMs);
  REQUIRE_FALSE(reply.ok());
  INFO(reply.status().message());
  CHECK(Contains(reply.status().message(), "TAP hand for API key id node-uak"));
  CHECK(Contains(reply.status().message(), "wrong private key for this id?"));
  CHECK(controller.shakes() == 0);
  CHECK(controller.requests().empty());  // Nothing is sent without a session.

  ControllerClient unknown(
      Options(controller.url(), MakeAuth(ApiKey("nobody", client::testing::PemPkcs1(SharedKey())))));
  reply = unknown.Call("GET", "/api/v1/status", "", kTimeoutMs);
  REQUIRE_FALSE(reply.ok());
  INFO(reply.status().message());
  CHECK(Contains(reply.status().message(), "TAP hand for API key id nobody: HTTP 404: Not found"));

  // The controller away: a transport error (the agent's loops retry those).
  ControllerClient away(
      Options("http://127.0.0.1:1", MakeAuth(ApiKey("node-uak", client::testing::PemPkcs1(SharedKey())))));
  reply = away.Call("GET", "/api/v1/status", "", 2000);
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.status().code() == StatusCode::kIoError);
}

TEST_CASE("API key: every key format works end to end, from a string and from a file") {
  TempDir dir;
  FakeController controller;
  controller.AddApiKey("k", SharedKey());
  const std::vector<std::string> texts = {client::testing::PemPkcs1(SharedKey()),
                                          client::testing::PemPkcs8(SharedKey()),
                                          client::testing::Base64DerPkcs1(SharedKey())};
  int handshakes = 0;
  for (const std::string& text : texts) {
    ControllerClient from_string(Options(controller.url(), MakeAuth(ApiKey("k", text))));
    CallOk(from_string);
    const std::string path = dir.Sub("key-" + std::to_string(handshakes));
    client::testing::WriteTextFile(path, text);
    Credentials file;
    file.api_key_id = "k";
    file.api_key_file = path;
    ControllerClient from_file(Options(controller.url(), MakeAuth(file)));
    CallOk(from_file);
    handshakes += 2;
    CHECK(controller.shakes() == handshakes);
  }
}

TEST_CASE("API key: a session older than max_session_age is renewed before the request") {
  FakeController controller;
  controller.AddApiKey("k", SharedKey());
  auto now = std::make_shared<std::chrono::steady_clock::time_point>(
      std::chrono::steady_clock::time_point{} + std::chrono::hours(1));
  ClientAuthOptions options;
  options.max_session_age = std::chrono::minutes(4);
  options.now = [now] { return *now; };
  ControllerClient client(
      Options(controller.url(), MakeAuth(ApiKey("k", client::testing::PemPkcs1(SharedKey())), options)));
  CallOk(client);
  *now += std::chrono::minutes(3);
  CallOk(client);
  CHECK(controller.hands() == 1);
  *now += std::chrono::minutes(1);
  CallOk(client);
  CHECK(controller.hands() == 2);
  CHECK(controller.unauthorized() == 0);  // Renewed before the controller had to refuse.
}

TEST_CASE("API key: clients on several threads share one ClientAuth and one session") {
  FakeController controller;
  controller.AddApiKey("k", SharedKey());
  auto auth = MakeAuth(ApiKey("k", client::testing::PemPkcs1(SharedKey())));
  InitHttpClients();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&] {
      ControllerClient client(Options(controller.url(), auth));
      for (int i = 0; i < 5; i++) {
        auto reply = client.Call("GET", "/api/v1/status", "", kTimeoutMs);
        ok += reply.ok() && reply->ok;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(ok == 20);
  CHECK(controller.hands() == 1);
  CHECK(auth->handshakes() == 1);
}

TEST_CASE("root token: HTTP Basic, and a 401 is not retried") {
  FakeController controller;
  controller.SetRootToken("s3cret-root");
  Credentials root;
  root.root_token = "s3cret-root";
  ControllerClient client(Options(controller.url(), MakeAuth(root)));
  CallOk(client);
  CHECK(controller.requests().back().headers["authorization"] ==
        "Basic " + log::Base64Encode("root:s3cret-root"));

  root.root_token = "wrong";
  ControllerClient wrong(Options(controller.url(), MakeAuth(root)));
  auto reply = wrong.Call("GET", "/api/v1/status", "", kTimeoutMs);
  REQUIRE(reply.ok());
  CHECK(reply->http_status == 401);
  CHECK(reply->message == "Authentication Required");
  CHECK(controller.unauthorized() == 1);
  CHECK(controller.hands() == 0);

  ControllerClient none(Options(controller.url(), nullptr));
  reply = none.Call("GET", "/api/v1/status", "", kTimeoutMs);
  REQUIRE(reply.ok());
  CHECK(reply->http_status == 401);
  CHECK(controller.requests().back().headers.count("authorization") == 0);
}

TEST_CASE("client certificate: the PEM files reach curl and the controller verifies them") {
  TempDir dir;
  const client::testing::TestPki pki = client::testing::MakeTestPki(dir.path(), "node-7");
  FakeController controller(client::testing::FakeTls{pki.server_cert, pki.server_key, pki.ca_cert});
  REQUIRE(controller.url().rfind("https://", 0) == 0);

  AgentConfig config;
  config.controller_url = controller.url();
  config.ca_file = pki.ca_cert;
  config.cert_file = pki.client_cert;
  config.cert_key_file = pki.client_key;
  auto options = ClientOptionsFor(config);
  REQUIRE(options.ok());
  CHECK(options->cert_file == pki.client_cert);
  CHECK(options->key_file == pki.client_key);
  CHECK(options->auth != nullptr);
  InitHttpClients();
  {
    ControllerClient client(*options);
    CallOk(client);
    CallOk(client);
    CHECK(controller.requests().back().client_cn == "node-7");
    CHECK(controller.requests().back().headers.count("authorization") == 0);
  }
  SECTION("--skip-tls-verification without --cacert") {
    options->ca_file.clear();
    options->insecure = true;
    ControllerClient client(*options);
    CallOk(client);
    CHECK(controller.requests().back().client_cn == "node-7");
  }
  SECTION("the certificate and its key in one file") {
    const std::string both = dir.Sub("both.pem");
    std::string text;
    for (const std::string* part : {&pki.client_cert, &pki.client_key}) {
      std::ifstream in(*part);
      text += std::string(std::istreambuf_iterator<char>(in), {});
    }
    client::testing::WriteTextFile(both, text);
    options->cert_file = both;
    options->key_file.clear();
    ControllerClient client(*options);
    CallOk(client);
  }
  SECTION("without a client certificate the handshake fails") {
    options->cert_file.clear();
    options->key_file.clear();
    ControllerClient client(*options);
    auto reply = client.Call("GET", "/api/v1/status", "", kTimeoutMs);
    CHECK_FALSE(reply.ok());
    CHECK(reply.status().code() == StatusCode::kIoError);
  }
  SECTION("a --cacert that did not sign the controller's certificate") {
    options->ca_file = pki.other_ca_cert;
    ControllerClient client(*options);
    auto reply = client.Call("GET", "/api/v1/status", "", kTimeoutMs);
    REQUIRE_FALSE(reply.ok());
    INFO(reply.status().message());
    CHECK(Contains(reply.status().message(), "certificate"));
  }
}

TEST_CASE("node.json keeps the credential settings, mode 0600") {
  TempDir dir;
  AgentConfig config;
  config.controller_url = "https://controller:8090";
  config.ca_file = "/etc/ca.pem";
  config.insecure = true;
  config.api_key_id = "node-uak";
  config.api_key_string = client::testing::Base64DerPkcs1(SharedKey());
  config.api_key_session_max_age_ms = 60'000;
  REQUIRE(SaveAgentConfig(dir.path(), config).ok());
  struct stat info {};
  REQUIRE(stat(dir.Sub("node.json").c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  auto loaded = LoadAgentConfig(dir.path());
  REQUIRE(loaded.ok());
  CHECK(loaded->api_key_id == "node-uak");
  CHECK(loaded->api_key_string == config.api_key_string);
  CHECK(loaded->api_key_file.empty());
  CHECK(loaded->api_key_session_max_age_ms == 60'000);
  CHECK(loaded->insecure);
  CHECK(loaded->ca_file == "/etc/ca.pem");
  auto options = ClientOptionsFor(*loaded);
  REQUIRE(options.ok());
  REQUIRE(options->auth != nullptr);
  CHECK(options->auth->kind() == CredentialKind::kApiKey);

  AgentConfig certs;
  certs.cert_file = "/c.pem";
  certs.cert_key_file = "/k.pem";
  REQUIRE(SaveAgentConfig(dir.path(), certs).ok());
  loaded = LoadAgentConfig(dir.path());
  REQUIRE(loaded.ok());
  CHECK(loaded->cert_file == "/c.pem");
  CHECK(loaded->cert_key_file == "/k.pem");
  CHECK(loaded->api_key_id.empty());
  CHECK(loaded->api_key_session_max_age_ms == 240'000);

  // Two kinds in node.json (edited by hand): refused with the reason.
  loaded->root_token = "t";
  auto mixed = ClientOptionsFor(*loaded);
  REQUIRE_FALSE(mixed.ok());
  CHECK(Contains(mixed.status().message(), "give one credential only"));
  CHECK_FALSE(Agent::Open(dir.Sub("agent"), *loaded).ok());
}

TEST_CASE("an agent joins and runs with an API key: every request carries the session") {
  TempDir dir;
  FakeController controller;
  controller.AddApiKey("node-uak", SharedKey());
  const std::string key_path = dir.Sub("uak.pem");
  client::testing::WriteTextFile(key_path, client::testing::PemPkcs1(SharedKey()));
  AgentConfig config;
  config.controller_url = controller.url();
  config.name = "n1";
  config.heartbeat_ms = 50;
  config.api_key_id = "node-uak";
  config.api_key_file = key_path;
  InitHttpClients();
  auto agent = Agent::Open(dir.Sub("data"), config);
  INFO(agent.status().ToString());
  REQUIRE(agent.ok());
  REQUIRE((*agent)->Join().ok());
  CHECK((*agent)->config().node_id == "node-1");

  std::thread run([&] { (void)(*agent)->Run(); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const auto seen = [&](const std::string& prefix) {
    for (const auto& request : controller.requests()) {
      if (request.path.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  while ((!seen("/node/v1/heartbeat") || !seen("/node/v1/instances")) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  controller.ExpireSessions();  // The loops renew the one shared session.
  const size_t before = controller.requests().size();
  while (controller.requests().size() < before + 6 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  (*agent)->Stop();
  run.join();
  CHECK(seen("/node/v1/heartbeat"));
  CHECK(seen("/node/v1/instances"));
  const auto requests = controller.requests();
  for (const auto& request : requests) {
    INFO(request.method << " " << request.path);
    CHECK(BearerData(request.headers.at("authorization"))["userName"] == "node-uak");
  }
  // One session for the join and the three loops, and one more after the expiry: a loop whose
  // 401 came with the old session finds the new one (Invalidate drops only the session used).
  CHECK(controller.hands() == 2);
  CHECK(controller.unauthorized() >= 1);
  CHECK(controller.unauthorized() <= 3);  // At most the one request in flight per loop.
  auto saved = LoadAgentConfig(dir.Sub("data"));
  REQUIRE(saved.ok());
  CHECK(saved->api_key_id == "node-uak");
  CHECK(saved->api_key_file == key_path);
  CHECK(saved->api_key_string.empty());
}

}  // namespace
}  // namespace cloister::node
