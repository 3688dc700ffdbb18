// User API keys and TAP (seed 002) through the real cloisterd: key management, hand + shake +
// Bearer on the controller and the registry, single-use and expiring secrets, expiring and
// revoked sessions, tampered bearers, no user enumeration, atomic secret consumption, and
// every failure an event with no secret in it.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "log/base64.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/auth_checks.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/tap_client.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

constexpr char kToken[] = "canary-root-token-tap-5521";

std::string Root() {
  return "Authorization: Basic " + log::Base64Encode(std::string("root:") + kToken) + "\r\n";
}

std::vector<std::string> TapEnv(std::vector<std::string> more = {}) {
  std::vector<std::string> env = {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken,
                                  "ANKA_ENABLE_API_KEYS=true"};
  env.insert(env.end(), more.begin(), more.end());
  return env;
}

void CreateKey(const WireTarget& api, const std::string& id, EVP_PKEY* key,
               const std::string& groups = R"(["ci"])") {
  CreateApiKey(api, Root(), id, key, groups);
}

// A cloisterd with authentication and API keys on, and a fresh RSA key for the test to
// register: the start of most tests here, as a Catch2 fixture (its members are in scope).
struct TapDaemon {
  TempDir dir;
  std::unique_ptr<CloisterdProcess> daemon = StartDaemon(dir, TapEnv());
  const WireTarget api = daemon->controller();
  Pkey key = NewRsaKey();
};

TEST_CASE_METHOD(TapDaemon,
                 "TAP: the seed's hand, shake and Bearer work on the controller and the registry") {
  CreateKey(api, "nathan", key.get());

  const std::string secret = Hand(api, "nathan", key.get());
  // Printable: base64url of 32 bytes.
  CHECK(secret.size() == 43);
  CHECK(std::all_of(secret.begin(), secret.end(),
                    [](char c) { return std::isalnum(static_cast<unsigned char>(c)) ||
                                        c == '-' || c == '_'; }));
  const WireResponse shake = Shake(api, "nathan", secret);
  REQUIRE(shake.status == 200);
  const Json data = Json::parse(shake.body)["data"];
  CHECK(data["sessionId"].get<std::string>().size() == 36);
  CHECK(RequireOk(Call(api, "GET", "/api/v1/status", "", Bearer(data)))["status"] == "Running");
  CHECK(RequireOk(Call(daemon->registry(), "GET", "/registry/status", "", Bearer(data)))
            ["status"] == "Running");
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status"));

  // Any key order and whitespace in the JSON; URL-safe base64 without padding too.
  const std::string reordered = "{ \"token\" : \"" + data["token"].get<std::string>() +
                                "\",\n \"sessionId\":\"" +
                                data["sessionId"].get<std::string>() + "\", \"userName\": \"" +
                                data["userName"].get<std::string>() + "\" }\n";
  std::string url_safe = log::Base64Encode(reordered);
  std::replace(url_safe.begin(), url_safe.end(), '+', '-');
  std::replace(url_safe.begin(), url_safe.end(), '/', '_');
  url_safe.erase(std::remove(url_safe.begin(), url_safe.end(), '='), url_safe.end());
  RequireOk(Call(api, "GET", "/api/v1/status", "", "Authorization: bearer " + url_safe + "\r\n"));

  // The secret is single-use.
  RequireUnauthenticated(Shake(api, "nathan", secret));
  // A tampered token, a session of another user name, and junk are refused.
  Json tampered = data;
  std::string token = tampered["token"];
  token[0] = token[0] == 'A' ? 'B' : 'A';
  tampered["token"] = token;
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Bearer(tampered)));
  Json renamed = data;
  renamed["userName"] = "someone-else";
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Bearer(renamed)));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", "Authorization: Bearer !!!\r\n"));
  // The actor of the session's event is the key, with its groups.
  bool opened = false;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    const Json event = Json::parse(line);
    if (event["type"] == "SessionOpened") {
      opened = true;
      CHECK(event["actor"]["kind"] == "ApiKey");
      CHECK(event["actor"]["id"] == "nathan");
      CHECK(event["actor"]["groups"] == Json::array({"ci"}));
    }
  }
  CHECK(opened);
}

TEST_CASE_METHOD(TapDaemon,
                 "TAP: an unknown id gets a hand of the same shape and size; its shake fails") {
  CreateKey(api, "known", key.get());
  const WireResponse known = Call(api, "POST", "/tap/v1/hand", R"({"id":"known"})");
  const WireResponse unknown = Call(api, "POST", "/tap/v1/hand", R"({"id":"unknown"})");
  REQUIRE(known.status == 200);
  REQUIRE(unknown.status == 200);
  CHECK(known.body.size() == unknown.body.size());
  CHECK(known.Header("Content-Type") == unknown.Header("Content-Type"));
  CHECK(log::Base64Decode(unknown.body).value_or("").size() == 256);
  RequireUnauthenticated(Shake(api, "unknown", "anything"));
  // Hands are not failures: many of them never reach the failure limit.
  for (int i = 0; i < 30; i++) {
    REQUIRE(Call(api, "POST", "/tap/v1/hand", R"({"id":"unknown"})").status == 200);
  }
}

TEST_CASE_METHOD(TapDaemon,
                 "TAP: failures count per key id too, across sources; 429 with Retry-After") {
  CreateKey(api, "victim", key.get());
  // 21 wrong shakes for one key id, each from its own loopback address (so no source reaches
  // its own limit): the 21st is over the key's limit.
  std::vector<int> codes;
  std::string last_headers;
  for (int i = 0; i < 21; i++) {
    const std::string source = "127.0.1." + std::to_string(10 + i);
    const ProgramResult r = RunProgram(
        "curl", {"-s", "-D", "-", "-o", "/dev/null", "--interface", source,
                 api.BaseUrl() + "/tap/v1/shake", "-d", R"({"id":"victim","secret":"guess"})"});
    REQUIRE(r.Succeeded());
    codes.push_back(std::stoi(r.out.substr(r.out.find(' ') + 1, 3)));
    last_headers = r.out;
  }
  CHECK(std::count(codes.begin(), codes.begin() + 20, 401) == 20);
  CHECK(codes[20] == 429);
  CHECK_THAT(last_headers, Catch::Contains("Retry-After:"));
  // Another key logs in as usual: the limit is the key id's, not everyone's.
  Pkey other = NewRsaKey();
  CreateKey(api, "bystander", other.get());
  Login(api, "bystander", other.get());
  int failures = 0;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    const Json event = Json::parse(line);
    failures += event["type"] == "AuthenticationFailed" &&
                event["payload"]["claimed_id"] == "victim";
  }
  CHECK(failures == 20);  // Past the limit nothing more is recorded.
}

TEST_CASE_METHOD(TapDaemon, "TAP: 64 parallel shakes with one secret give exactly one session") {
  CreateKey(api, "fleet", key.get());
  const std::string secret = Hand(api, "fleet", key.get());
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};
  std::atomic<int> broken{0};
  std::vector<std::thread> threads;
  const std::string request = MakeRequest(
      "POST", "/tap/v1/shake", R"({"id":"fleet","secret":")" + secret + R"("})", "");
  for (int i = 0; i < 64; i++) {
    // No Catch2 macro here: its assertion machinery is not thread-safe (hence the bare socket
    // calls rather than Shake/Call, which REQUIRE).
    threads.emplace_back([&] {
      auto connection = WireConnection::Connect(api);
      if (!connection.ok() || !(*connection)->Send(request).ok()) {
        broken++;
        return;
      }
      auto response = (*connection)->ReadResponse(10000, false);
      if (!response.ok()) {
        broken++;
        return;
      }
      (response->status == 200 ? ok : refused)++;
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(broken == 0);
  CHECK(ok == 1);
  CHECK(refused == 63);  // 401, or 429 once the source passed the failure limit.
  int sessions = 0;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    sessions += Json::parse(line)["type"] == "SessionOpened";
  }
  CHECK(sessions == 1);
}

TEST_CASE("TAP: secrets and sessions expire; revocation and deletion end sessions at once") {
  TempDir dir;
  auto daemon =
      StartDaemon(dir, TapEnv({"CLOISTER_TAP_SECRET_TTL=1s", "ANKA_API_KEYS_SESSION_TTL=2s"}));
  const WireTarget api = daemon->controller();
  Pkey key = NewRsaKey();
  CreateKey(api, "short", key.get());

  const std::string late = Hand(api, "short", key.get());
  const Json data = Login(api, "short", key.get());
  RequireOk(Call(api, "GET", "/api/v1/status", "", Bearer(data)));
  std::this_thread::sleep_for(std::chrono::milliseconds(2300));
  RequireUnauthenticated(Shake(api, "short", late));                         // Secret: 1 s.
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Bearer(data)));  // Session: 2 s.

  // A request already being answered when its session ends is not cut off: a node's long-poll
  // made with a 2 s session waits its 3 s and is answered 200.
  const Json poller = Login(api, "short", key.get());
  const Json joined = RequireOk(Call(api, "POST", "/node/v1/join",
                                     R"({"node_name":"n1","cpu_count":4,"ram_mb":8192})",
                                     Bearer(poller)));
  const std::string node_id = joined["node_id"];
  const uint64_t after =
      RequireOk(Call(api, "GET", "/node/v1/instances?node_id=" + node_id, "", Bearer(poller)))
          ["seq"].get<uint64_t>();
  const auto poll_start = std::chrono::steady_clock::now();
  RequireOk(Call(api, "GET",
                 "/node/v1/instances?node_id=" + node_id + "&after=" + std::to_string(after) +
                     "&wait_ms=3000",
                 "", Bearer(poller)));
  CHECK(std::chrono::steady_clock::now() - poll_start >= std::chrono::milliseconds(2500));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Bearer(poller)));

  // Revoking one session by its id ends it and only it.
  const Json a = Login(api, "short", key.get());
  const Json b = Login(api, "short", key.get());
  RequireOk(Call(api, "POST", "/api/v1/revoke",
                 R"({"session_id":")" + a["sessionId"].get<std::string>() + R"("})", Root()));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Bearer(a)));
  RequireOk(Call(api, "GET", "/api/v1/status", "", Bearer(b)));
  // Revoking the key ends b, and no new hand works for it (its shake fails).
  RequireOk(Call(api, "POST", "/api/v1/revoke", R"({"key_id":"short","reason":"leaked"})", Root()));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Bearer(b)));
  RequireUnauthenticated(Shake(api, "short", "whatever"));

  // Deleting a key ends its sessions too.
  Pkey other = NewRsaKey();
  CreateKey(api, "gone", other.get());
  const Json c = Login(api, "gone", other.get());
  RequireOk(Call(api, "GET", "/api/v1/status", "", Bearer(c)));
  RequireOk(Call(api, "DELETE", "/api/v1/apikey", R"({"id":"gone"})", Root()));
  RequireUnauthenticated(Call(api, "GET", "/api/v1/status", "", Bearer(c)));

  // Every failure is an event with method, source and reason; none holds a secret or token.
  std::vector<std::string> reasons;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    CHECK(line.find(late) == std::string::npos);
    for (const Json* d : {&data, &a, &b, &c}) {
      CHECK(line.find((*d)["token"].get<std::string>()) == std::string::npos);
      CHECK(line.find((*d)["sessionId"].get<std::string>()) == std::string::npos);
    }
    const Json event = Json::parse(line);
    if (event["type"] == "AuthenticationFailed") {
      CHECK(event["payload"]["source_ip"] == "127.0.0.1");
      reasons.push_back(event["payload"]["method"].get<std::string>() + ": " +
                        event["payload"]["reason"].get<std::string>());
    }
  }
  // The late secret was refused (collected once expired, it reads as unknown).
  CHECK(std::count(reasons.begin(), reasons.end(), "ApiKeyTap: expired secret") +
            std::count(reasons.begin(), reasons.end(),
                       "ApiKeyTap: unknown or already used secret") >= 2);
  CHECK(std::count(reasons.begin(), reasons.end(),
                   "SessionToken: unknown, expired or revoked session") >= 3);
  CHECK(std::count(reasons.begin(), reasons.end(), "ApiKeyTap: API key revoked or expired") +
            std::count(reasons.begin(), reasons.end(),
                       "ApiKeyTap: unknown or already used secret") >= 1);
  const std::string output = daemon->Output();
  for (const Json* d : {&data, &a, &b, &c}) {
    CHECK(output.find((*d)["token"].get<std::string>()) == std::string::npos);
  }
}

TEST_CASE_METHOD(TapDaemon, "API keys: create, generate, list, update and delete; root only") {
  CreateKey(api, "uploaded", key.get(), R"(["team a","ci"])");

  // Without publicKey the server makes the pair and answers the private key once (PKCS#1 DER),
  // which then works for TAP.
  const Json made =
      RequireOk(Call(api, "POST", "/api/v1/apikey", R"({"id":"made","ttl":60})", Root()));
  REQUIRE(made["id"] == "made");
  std::optional<std::string> der = log::Base64Decode(made["key"].get<std::string>());
  REQUIRE(der);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der->data());
  Pkey private_key(d2i_PrivateKey(EVP_PKEY_RSA, nullptr, &p, static_cast<long>(der->size())));
  REQUIRE(private_key);
  const Json data = Login(api, "made", private_key.get());

  // The list never shows key material.
  const Json list = RequireOk(Call(api, "GET", "/api/v1/apikey", "", Root()));
  REQUIRE(list.size() == 2);
  for (const Json& entry : list) {
    CHECK(entry.contains("id"));
    CHECK(entry.contains("groups"));
    CHECK(entry.contains("expiration"));
    CHECK(entry.contains("created"));
    CHECK_FALSE(entry.contains("key"));
    CHECK_FALSE(entry.contains("publicKey"));
  }
  CHECK(RequireOk(Call(api, "GET", "/api/v1/apikey?id=uploaded", "", Root()))[0]["groups"] ==
        Json::array({"team a", "ci"}));
  // The generated private key is in no event and no log line. (Its start holds the modulus,
  // which is public; its end is the CRT coefficient, which is not.)
  const std::string private_text = made["key"].get<std::string>();
  const std::string private_tail = private_text.substr(private_text.size() - 64, 60);
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    CHECK(line.find(private_tail) == std::string::npos);
  }
  CHECK(daemon->Output().find(private_tail) == std::string::npos);

  // Update groups and ttl; the public key cannot change.
  RequireOk(Call(api, "PUT", "/api/v1/apikey", R"({"id":"uploaded","groups":["ops"],"ttl":10})",
                 Root()));
  CHECK(RequireOk(Call(api, "GET", "/api/v1/apikey?id=uploaded", "", Root()))[0]["groups"] ==
        Json::array({"ops"}));
  RequireFail(Call(api, "PUT", "/api/v1/apikey", R"({"id":"uploaded","publicKey":"x"})", Root()),
              400);

  // Bad input changes nothing: a duplicate id, a missing ttl, a bad key, a bad id.
  const size_t events = AuditExportLines(dir.Sub("data")).size();
  RequireFail(Call(api, "POST", "/api/v1/apikey", R"({"id":"made","ttl":60})", Root()), 200);
  RequireFail(Call(api, "POST", "/api/v1/apikey", R"({"id":"x"})", Root()), 400);
  RequireFail(Call(api, "POST", "/api/v1/apikey", R"({"id":"x","ttl":60,"publicKey":"AAAA"})",
                   Root()),
              400);
  RequireFail(Call(api, "POST", "/api/v1/apikey", R"({"id":"a b","ttl":60})", Root()), 200);
  RequireFail(Call(api, "POST", "/api/v1/apikey", R"({"id":"x","ttl":-5})", Root()), 200);
  CHECK(AuditExportLines(dir.Sub("data")).size() == events);

  // A key's session may not manage keys (root only until authorization grants it).
  RequireFail(Call(api, "GET", "/api/v1/apikey", "", Bearer(data)), 403);
  RequireFail(Call(api, "POST", "/api/v1/revoke", R"({"key_id":"uploaded"})", Bearer(data)), 403);

  RequireOk(Call(api, "DELETE", "/api/v1/apikey", R"({"id":"uploaded"})", Root()));
  RequireFail(Call(api, "GET", "/api/v1/apikey?id=uploaded", "", Root()), 200);
  RequireFail(Call(api, "DELETE", "/api/v1/apikey", R"({"id":"uploaded"})", Root()), 200);
}

TEST_CASE("API keys: sessions and keys survive a restart; they need ANKA_ENABLE_AUTH") {
  TempDir dir;
  Pkey key = NewRsaKey();
  Json data;
  {
    auto daemon = StartDaemon(dir, TapEnv());
    CreateKey(daemon->controller(), "kept", key.get());
    data = Login(daemon->controller(), "kept", key.get());
    REQUIRE(daemon->Stop(SIGTERM).ok());
  }
  auto daemon = StartDaemon(dir, TapEnv());
  RequireOk(Call(daemon->controller(), "GET", "/api/v1/status", "", Bearer(data)));
  REQUIRE(daemon->Stop(SIGTERM).ok());

  auto refused = RunCloisterdToExit({"--data", dir.Sub("other")}, {"ANKA_ENABLE_API_KEYS=true"});
  REQUIRE(refused.ok());
  CHECK(refused->ExitCode() == 2);
  CHECK_THAT(refused->output, Catch::Contains("ANKA_ENABLE_API_KEYS=true needs ANKA_ENABLE_AUTH"));
}


// GET /api/v1/status until registry_status is want (the probe runs every 5 s, first at start).
std::string WaitRegistryStatus(const WireTarget& api, const std::string& headers,
                               const std::string& want) {
  std::string seen;
  for (int i = 0; i < 100 && seen != want; i++) {
    seen = RequireOk(Call(api, "GET", "/api/v1/status", "", headers))["registry_status"];
    if (seen != want) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return seen;
}

TEST_CASE("cloister call: the CLI authenticates with the root token or a UAK (TAP)") {
  TempDir dir;
  auto daemon = StartDaemon(dir, TapEnv());
  const std::string url = daemon->controller().BaseUrl();
  const std::string cloister = RunfilePath("tools/cloister");
  Pkey key = NewRsaKey();
  const ProgramResult created = RunProgram(
      cloister, {"call", "POST", "/api/v1/apikey",
                 R"({"id":"cli","ttl":600,"publicKey":")" + PublicDerBase64(key.get()) + R"("})",
                 "--url", url, "--root-token", kToken});
  INFO(created.Describe());
  REQUIRE(created.Succeeded());
  CHECK(Json::parse(created.out)["body"]["id"] == "cli");
  std::ofstream(dir.Sub("cli-key.pem")) << PrivatePem(key.get());
  const ProgramResult status =
      RunProgram(cloister, {"call", "GET", "/api/v1/status", "--url", url, "--api-key-id", "cli",
                            "--api-key-file", dir.Sub("cli-key.pem")});
  INFO(status.Describe());
  REQUIRE(status.Succeeded());
  CHECK(Json::parse(status.out)["body"]["status"] == "Running");
  // Without credentials: the 401 envelope and exit 1; two kinds at once: exit 2.
  const ProgramResult refused =
      RunProgram(cloister, {"call", "GET", "/api/v1/status", "--url", url});
  CHECK(refused.wait_status != 0);
  CHECK_THAT(refused.out, Catch::Contains("Authentication Required"));
  const ProgramResult both = RunProgram(
      cloister, {"call", "GET", "/api/v1/status", "--url", url, "--root-token", kToken,
                 "--api-key-id", "cli", "--api-key-file", dir.Sub("cli-key.pem")});
  CHECK(WEXITSTATUS(both.wait_status) == 2);
}

TEST_CASE("a controller calls a separate registry with ANKA_API_KEY_ID and _FILE or _STRING") {
  TempDir dir;
  auto registry = CloisterdProcess::Start(dir.Sub("registry"), dir.path(), {"--role", "registry"},
                                          TapEnv());
  REQUIRE(registry.ok());
  const WireTarget reg = (*registry)->registry();
  Pkey key = NewRsaKey();
  // A standalone registry manages its own keys on its listener.
  CreateKey(reg, "controller", key.get());
  const std::string pem = PrivatePem(key.get());
  std::ofstream(dir.Sub("controller-key.pem")) << pem;
  const std::string url = "ANKA_ANKA_REGISTRY=" + reg.BaseUrl();
  const std::vector<std::string> base = {"ANKA_ENABLE_AUTH=true",
                                         std::string("ANKA_ROOT_TOKEN=") + kToken};

  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> env = base;
    env.push_back(url);
    env.insert(env.end(), extra.begin(), extra.end());
    static int n = 0;
    auto started = CloisterdProcess::Start(dir.Sub("controller" + std::to_string(n++)),
                                           dir.path(), {"--role", "controller"}, env);
    REQUIRE(started.ok());
    return std::move(*started);
  };
  {
    auto controller = with({"ANKA_API_KEY_ID=controller",
                            "ANKA_API_KEY_FILE=" + dir.Sub("controller-key.pem")});
    CHECK(WaitRegistryStatus(controller->controller(), Root(), "Running") == "Running");
  }
  {
    auto controller = with({"ANKA_API_KEY_ID=controller", "ANKA_API_KEY_STRING=" + pem});
    CHECK(WaitRegistryStatus(controller->controller(), Root(), "Running") == "Running");
    // The key never reaches the controller's log.
    CHECK(controller->Output().find(pem.substr(100, 60)) == std::string::npos);
  }
  {
    Pkey wrong = NewRsaKey();
    auto controller = with({"ANKA_API_KEY_ID=controller", "ANKA_API_KEY_STRING=" +
                                                              PrivatePem(wrong.get())});
    CHECK(WaitRegistryStatus(controller->controller(), Root(), "Unauthorized") == "Unauthorized");
  }
  {
    auto controller = with({});
    CHECK(WaitRegistryStatus(controller->controller(), Root(), "Unauthorized") == "Unauthorized");
  }
  // A key that is not a key stops the start, naming the setting but not the text.
  auto refused = RunCloisterdToExit(
      {"--data", dir.Sub("bad"), "--role", "controller", "--listen-addr", "127.0.0.1:0"},
      {url, "ANKA_API_KEY_ID=controller", "ANKA_API_KEY_STRING=not-a-key-canary"});
  REQUIRE(refused.ok());
  CHECK(refused->ExitCode() != 0);
  CHECK_THAT(refused->output, Catch::Contains("ANKA_API_KEY"));
  CHECK(refused->output.find("not-a-key-canary") == std::string::npos);
}

}  // namespace
}  // namespace cloister::testing
