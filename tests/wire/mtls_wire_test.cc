// Client-certificate authentication (mTLS, seed 001) through the real cloisterd over HTTPS: the
// negative matrix of the authentication issue. Certificates, keys and CRLs come from
// //tests:cert_factory (the server's too, with SAN IP:127.0.0.1); requests are made with
// `curl --insecure --cert X --key Y`, and with a keep-alive WireConnection presenting a client
// certificate for the revocation that must bite on the next request of an open connection.
//
// Every refusal is checked twice: the exact 401 on the wire, and its AuthenticationFailed event
// (method, claimed CN, reason, source address) in the audit export, compared in order with the
// list of refusals the test made. No daemon sees more than 20 failures from one source (past
// that the failure limiter answers 429 and records nothing), so the matrix is spread over
// several daemons. Waits poll with deadlines; nothing sleeps for long.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/cert_factory.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

constexpr char kToken[] = "canary-root-token-mtls-4f2a9c";
constexpr char kAuthRequired[] = R"({"status":"FAIL","message":"Authentication Required"})";
constexpr int kPollMs = 5000;

int64_t WallNow() { return static_cast<int64_t>(std::time(nullptr)); }

// ---- HTTP through curl ----

struct HttpResult {
  int status = 0;
  std::string body;
};

// curl -s [--insecure] URL with args; the status from -w.
HttpResult Curl(const std::string& url, const std::vector<std::string>& args) {
  std::vector<std::string> all = {"-s", "-S", "--max-time", "10", "-w", "\\n%{http_code}"};
  if (url.rfind("https://", 0) == 0) {
    all.push_back("--insecure");  // The server's certificate is not the point here.
  }
  all.insert(all.end(), args.begin(), args.end());
  all.push_back(url);
  const ProgramResult run = RunProgram("curl", all, 15000);
  INFO("curl " << url << ": " << run.Describe());
  REQUIRE(run.Succeeded());
  const size_t newline = run.out.rfind('\n');
  REQUIRE(newline != std::string::npos);
  HttpResult result;
  result.status = std::stoi(run.out.substr(newline + 1));
  result.body = run.out.substr(0, newline);
  return result;
}

std::vector<std::string> RootArgs() { return {"-u", std::string("root:") + kToken}; }

std::vector<std::string> CertArgs(const CertFiles& files) {
  return {"--cert", files.cert, "--key", files.key};
}

std::vector<std::string> PostArgs(const std::string& body, std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"-X", "POST", "-H", "Content-Type: application/json",
                                   "--data-binary", body};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// The exact 401 Anka answers.
void RequireAuthenticationRequired(const HttpResult& result) {
  INFO(result.body);
  CHECK(result.status == 401);
  CHECK(result.body == kAuthRequired);
}

void RequireOkStatus(const HttpResult& result) {
  INFO(result.body);
  REQUIRE(result.status == 200);
  const Json body = Json::parse(result.body, nullptr, false);
  REQUIRE(body.is_object());
  REQUIRE(body["status"] == "OK");
}

// ---- A keep-alive TLS connection with a client certificate ----

// Connects to the daemon presenting files' certificate; the server's certificate is not
// verified, as with curl --insecure.
std::unique_ptr<WireConnection> ConnectWithCert(uint16_t port, const CertFiles& files) {
  WireTarget target;
  target.port = port;
  target.tls = true;
  target.client_cert_file = files.cert;
  target.client_key_file = files.key;
  auto connection = WireConnection::Connect(target);
  INFO(connection.status().ToString());
  REQUIRE(connection.ok());
  return std::move(*connection);
}

// One GET on the connection (kept alive); REQUIREs a complete HTTP/1.1 response with a
// Content-Length.
HttpResult Get(WireConnection& connection, const std::string& path) {
  REQUIRE(connection.Send(MakeRequest("GET", path)).ok());
  auto response = connection.ReadResponse();
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  REQUIRE(response->version_minor == 1);
  REQUIRE(response->HasHeader("Content-Length"));
  return HttpResult{response->status, response->body};
}

// ---- PKI, daemons, events ----

// A CA, a wrong CA, the server's certificate and the client files of a test.
struct Pki {
  TempDir dir;
  const int64_t now = WallNow();
  TestCa ca = MakeCa("Anka CA", now, 1000);
  TestCa wrong = MakeCa("Wrong CA", now, 2000);
  std::string ca_path = WriteCaCert(ca, dir.Sub("ca.pem"));
  std::string crl_path = dir.Sub("crl.pem");
  std::vector<std::string> key_pems;  // Every private key written, to look for leaks.
  CertFiles server = Write(ca, ServerSpec(1, now), "server");  // After key_pems: Write uses it.

  CertFiles Write(const TestCa& issuer, const CertSpec& spec, const std::string& name) {
    const TestCert cert = IssueCert(issuer, spec);
    key_pems.push_back(KeyPem(cert.key.get()));
    return WriteCertFiles(cert, dir.path(), name);
  }

  // What an HTTPS daemon with client certificates needs, and the canary root token.
  std::vector<std::string> HttpsEnv(const std::string& ca_setting = "ANKA_CA_CERT") const {
    return {"ANKA_USE_HTTPS=true",
            "ANKA_SERVER_CERT=" + server.cert,
            "ANKA_SERVER_KEY=" + server.key,
            "ANKA_ENABLE_AUTH=true",
            std::string("ANKA_ROOT_TOKEN=") + kToken,
            ca_setting + "=" + ca_path};
  }
};

std::unique_ptr<CloisterdProcess> StartDaemon(const std::string& data, const std::string& work,
                                              const std::vector<std::string>& env) {
  auto started = CloisterdProcess::Start(data, work, {}, env);
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  return std::move(*started);
}

std::vector<Json> Events(const std::string& data_dir) {
  std::vector<Json> events;
  for (const std::string& line : AuditExportLines(data_dir)) {
    events.push_back(Json::parse(line));
  }
  return events;
}

std::vector<Json> OfType(const std::vector<Json>& events, const std::string& type) {
  std::vector<Json> out;
  for (const Json& event : events) {
    if (event["type"] == type) {
      out.push_back(event);
    }
  }
  return out;
}

// Polls the audit export until it holds count events of type (up to kPollMs).
std::vector<Json> WaitForEvents(const std::string& data_dir, const std::string& type,
                                size_t count) {
  const int64_t deadline = MonotonicMs() + kPollMs;
  std::vector<Json> found;
  do {
    found = OfType(Events(data_dir), type);
    if (found.size() >= count) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (MonotonicMs() < deadline);
  INFO(type);
  CHECK(found.size() == count);
  return found;
}

size_t Occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    count++;
  }
  return count;
}

// Polls until the daemon's output holds needle count times (up to kPollMs).
void WaitForOutput(const CloisterdProcess& daemon, const std::string& needle, size_t count) {
  const int64_t deadline = MonotonicMs() + kPollMs;
  while (Occurrences(daemon.Output(), needle) < count && MonotonicMs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  INFO(daemon.Output());
  REQUIRE(Occurrences(daemon.Output(), needle) == count);
}

// One expected AuthenticationFailed event.
struct Refusal {
  std::string method;
  std::string claimed;
  std::string reason;
  std::string source_ip = "127.0.0.1";
};

// The AuthenticationFailed events, in order, are exactly the refusals.
void CheckRefusals(const std::vector<Json>& events, const std::vector<Refusal>& expected) {
  const std::vector<Json> failed = OfType(events, "AuthenticationFailed");
  CHECK(failed.size() == expected.size());
  for (size_t i = 0; i < std::min(failed.size(), expected.size()); i++) {
    const Json& payload = failed[i]["payload"];
    INFO("refusal " << i << ": " << failed[i].dump());
    CHECK(payload["method"] == expected[i].method);
    CHECK(payload.value("claimed_id", "") == expected[i].claimed);
    CHECK(payload["reason"] == expected[i].reason);
    CHECK(payload["source_ip"] == expected[i].source_ip);
  }
}

// No event and no log line holds the root token or a private key.
void CheckNoSecrets(const std::vector<Json>& events, const std::string& output, const Pki& pki) {
  std::vector<std::string> secrets = {kToken, "PRIVATE KEY"};
  for (const std::string& pem : pki.key_pems) {
    std::istringstream lines(pem);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("-----") == std::string::npos && line.size() >= 16) {
        secrets.push_back(line);  // The key's base64 body, line by line.
      }
    }
  }
  for (const std::string& secret : secrets) {
    INFO(secret);
    CHECK(output.find(secret) == std::string::npos);
    for (const Json& event : events) {
      CHECK(event.dump().find(secret) == std::string::npos);
    }
  }
}

// The actor of the NodeGroupCreated event of group name.
Json GroupCreator(const std::vector<Json>& events, const std::string& name) {
  for (const Json& event : OfType(events, "NodeGroupCreated")) {
    if (event.dump().find(name) != std::string::npos) {
      return event["actor"];
    }
  }
  FAIL("no NodeGroupCreated event for " << name);
  return Json();
}

// Polls a GET (with the client certificate, if any) until its status is want (up to
// kPollMs); returns the last result and the milliseconds it took.
std::pair<HttpResult, int64_t> PollUntilStatus(const std::string& url, const CertFiles& cert,
                                               int want) {
  const int64_t start = MonotonicMs();
  HttpResult result;
  do {
    result = Curl(url, cert.cert.empty() ? std::vector<std::string>{} : CertArgs(cert));
    if (result.status == want) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (MonotonicMs() < start + kPollMs);
  return {result, MonotonicMs() - start};
}

TEST_CASE("mTLS: good, wrong-CA, dated, unnamed and missing certificates; CRL and API "
          "revocation; refused and expired CRLs") {
  Pki pki;
  const int64_t now = pki.now;
  const CertFiles good = pki.Write(
      pki.ca, ClientSpec(0x10, now, "jenkins", {"DevOps", "iOS Dev"}), "jenkins");
  const CertFiles wrong_ca =
      pki.Write(pki.wrong, ClientSpec(0x11, now, "mallory", {"DevOps"}), "wrong-ca");
  CertSpec expired_spec = ClientSpec(0x12, now, "old-timer");
  expired_spec.not_before = now - 100 * kDaySeconds;
  expired_spec.not_after = now - kDaySeconds;
  const CertFiles expired = pki.Write(pki.ca, expired_spec, "expired");
  CertSpec early_spec = ClientSpec(0x13, now, "early-bird");
  early_spec.not_before = now + kDaySeconds;
  early_spec.not_after = now + 100 * kDaySeconds;
  const CertFiles early = pki.Write(pki.ca, early_spec, "early");
  const CertFiles no_cn = pki.Write(pki.ca, ClientSpec(0x14, now, "", {"DevOps"}), "no-cn");
  const CertFiles no_o = pki.Write(pki.ca, ClientSpec(0x15, now, "orphan", {}), "no-o");
  const TestCert crl_victim_cert = IssueCert(pki.ca, ClientSpec(0x4242, now, "crl-victim"));
  pki.key_pems.push_back(KeyPem(crl_victim_cert.key.get()));
  const CertFiles crl_victim = WriteCertFiles(crl_victim_cert, pki.dir.path(), "crl-victim");
  const TestCert api_victim_cert = IssueCert(pki.ca, ClientSpec(0x4b1d, now, "api-victim"));
  pki.key_pems.push_back(KeyPem(api_victim_cert.key.get()));
  const CertFiles api_victim = WriteCertFiles(api_victim_cert, pki.dir.path(), "api-victim");

  // The CRL at start revokes an unrelated serial.
  WriteCrlFile(pki.crl_path, pki.ca, {0x999}, now - kDaySeconds, now + 30 * kDaySeconds);
  std::vector<std::string> env = pki.HttpsEnv();
  env.push_back("ANKA_CRL=" + pki.crl_path);
  const std::string data = pki.dir.Sub("data");
  auto daemon = StartDaemon(data, pki.dir.path(), env);
  const pid_t pid = daemon->pid();
  const std::string base = daemon->controller().BaseUrl();
  REQUIRE(base.rfind("https://127.0.0.1:", 0) == 0);
  const std::string status = base + "/api/v1/status";
  std::vector<Refusal> refusals;

  // A good certificate: 200, and what it does is recorded with its identity.
  RequireOkStatus(Curl(status, CertArgs(good)));
  RequireOkStatus(Curl(daemon->registry().BaseUrl() + "/registry/status", CertArgs(good)));
  RequireOkStatus(Curl(base + "/api/v1/group", PostArgs(R"({"name":"by-cert"})", CertArgs(good))));
  // The root token works beside certificates.
  RequireOkStatus(Curl(status, RootArgs()));

  // Refusals: a 401 each, with the reason in the event.
  RequireAuthenticationRequired(Curl(status, CertArgs(wrong_ca)));
  refusals.push_back({"Certificate", "mallory", "certificate signed by an unknown CA"});
  RequireAuthenticationRequired(Curl(status, CertArgs(expired)));
  refusals.push_back({"Certificate", "old-timer", "certificate expired"});
  RequireAuthenticationRequired(Curl(status, CertArgs(early)));
  refusals.push_back({"Certificate", "early-bird", "certificate not yet valid"});
  RequireAuthenticationRequired(Curl(status, CertArgs(no_cn)));
  refusals.push_back({"Certificate", "", "certificate has no CN"});
  RequireAuthenticationRequired(Curl(status, CertArgs(no_o)));
  refusals.push_back({"Certificate", "orphan", "certificate has no O"});
  // No certificate at all: no credential was tried, so the method is Unknown.
  RequireAuthenticationRequired(Curl(status, {}));
  refusals.push_back({"Unknown", "", "no credentials"});

  // Revoked through the CRL: the file rewritten while the daemon runs is picked up (no
  // restart) within about two seconds, and the load is an event.
  // A connection opened before the reload is refused on its next request as well (its cached
  // verification belongs to the previous CRL).
  RequireOkStatus(Curl(status, CertArgs(crl_victim)));
  auto crl_connection = ConnectWithCert(daemon->controller_port(), crl_victim);
  RequireOkStatus(Get(*crl_connection, "/api/v1/status"));
  WaitForEvents(data, "CrlLoaded", 1);
  WriteCrlFile(pki.crl_path, pki.ca, {0x999, 0x4242}, now - kDaySeconds, now + 30 * kDaySeconds);
  const auto [revoked, revoked_ms] = PollUntilStatus(status, crl_victim, 401);
  RequireAuthenticationRequired(revoked);
  CHECK(revoked_ms <= 2500);
  refusals.push_back({"Certificate", "crl-victim", "certificate revoked"});
  RequireAuthenticationRequired(Get(*crl_connection, "/api/v1/status"));
  refusals.push_back({"Certificate", "crl-victim", "certificate revoked"});
  CHECK(daemon->Running());
  CHECK(daemon->pid() == pid);
  WaitForEvents(data, "CrlLoaded", 2);
  RequireOkStatus(Curl(status, CertArgs(good)));

  // Revoked through the API: the next request of an open connection is refused, and so is a
  // new connection.
  auto connection = ConnectWithCert(daemon->controller_port(), api_victim);
  RequireOkStatus(Get(*connection, "/api/v1/status"));
  RequireOkStatus(Get(*connection, "/api/v1/status"));
  RequireOkStatus(Curl(base + "/api/v1/revoke",
                       PostArgs(R"({"serial":"4b1d","reason":"laptop lost"})", RootArgs())));
  RequireAuthenticationRequired(Get(*connection, "/api/v1/status"));
  refusals.push_back({"Certificate", "api-victim", "certificate revoked"});
  RequireAuthenticationRequired(Curl(status, CertArgs(api_victim)));
  refusals.push_back({"Certificate", "api-victim", "certificate revoked"});
  RequireOkStatus(Curl(status, CertArgs(good)));

  // A CRL signed by another CA, then one under the right name but signed by another key,
  // written over the file: refused with a log line, the previous CRL stays in force.
  WriteCrlFile(pki.crl_path, pki.wrong, {}, now - kDaySeconds, now + 30 * kDaySeconds);
  WaitForOutput(*daemon, "CRL refused", 1);
  CHECK(daemon->Output().find("which is not a CA of ANKA_CA_CERT") != std::string::npos);
  const TestCa impostor = MakeCa("Anka CA", now, 3000);
  WriteCrlFile(pki.crl_path, impostor, {}, now - kDaySeconds, now + 30 * kDaySeconds);
  WaitForOutput(*daemon, "CRL refused", 2);
  CHECK(daemon->Output().find("its signature does not verify") != std::string::npos);
  RequireAuthenticationRequired(Curl(status, CertArgs(crl_victim)));
  refusals.push_back({"Certificate", "crl-victim", "certificate revoked"});
  RequireOkStatus(Curl(status, CertArgs(good)));
  WaitForEvents(data, "CrlLoaded", 2);  // Nothing new.

  // An expired CRL signed by the right CA: accepted as authentic, but certificate logins fail
  // closed and /readyz says so; the root token keeps working.
  const std::string readyz = base + "/readyz";
  RequireOkStatus(Curl(readyz, {}));
  WriteCrlFile(pki.crl_path, pki.ca, {0x999}, now - 60 * kDaySeconds, now - kDaySeconds);
  {
    const HttpResult unready = PollUntilStatus(readyz, {}, 503).first;
    INFO(unready.body);
    CHECK(unready.status == 503);
    CHECK(unready.body.find("ANKA_CRL has expired") != std::string::npos);
  }
  RequireAuthenticationRequired(Curl(status, CertArgs(good)));
  refusals.push_back({"Certificate", "jenkins", "CRL expired"});
  RequireOkStatus(Curl(status, RootArgs()));
  WaitForOutput(*daemon, "ANKA_CRL has expired", 1);
  WaitForEvents(data, "CrlLoaded", 3);

  // A fresh CRL ends it (polled on /readyz: a refused login would count as a failure).
  WriteCrlFile(pki.crl_path, pki.ca, {0x999}, now - kDaySeconds, now + 30 * kDaySeconds);
  RequireOkStatus(PollUntilStatus(readyz, {}, 200).first);
  RequireOkStatus(Curl(status, CertArgs(good)));
  WaitForEvents(data, "CrlLoaded", 4);
  // The CRL is the whole list: a serial it no longer names is accepted again. A revocation
  // through the API is not the CRL's: it outlives the reload.
  RequireOkStatus(Curl(status, CertArgs(crl_victim)));
  RequireAuthenticationRequired(Curl(status, CertArgs(api_victim)));
  refusals.push_back({"Certificate", "api-victim", "certificate revoked"});

  REQUIRE(daemon->Stop(SIGTERM).ok());
  const std::vector<Json> events = Events(data);
  CheckRefusals(events, refusals);

  const Json actor = GroupCreator(events, "by-cert");
  CHECK(actor["kind"] == "Certificate");
  CHECK(actor["id"] == "jenkins");
  CHECK(actor["groups"] == Json::array({"DevOps", "iOS Dev"}));

  const std::vector<Json> revocations = OfType(events, "CertificateRevoked");
  REQUIRE(revocations.size() == 1);
  CHECK(revocations[0]["payload"]["serial_hex"] == SerialHex(api_victim_cert.cert.get()));
  CHECK(revocations[0]["payload"]["serial_hex"] == "4B1D");
  CHECK(revocations[0]["payload"]["reason"] == "laptop lost");
  CHECK(revocations[0]["actor"]["kind"] == "Root");

  // One CrlLoaded at start and one per accepted reload (the two refused ones are not there).
  const std::vector<Json> loads = OfType(events, "CrlLoaded");
  REQUIRE(loads.size() == 4);
  const std::vector<uint64_t> revoked_counts = {1, 2, 1, 1};
  const std::vector<int64_t> next_updates = {now + 30 * kDaySeconds, now + 30 * kDaySeconds,
                                             now - kDaySeconds, now + 30 * kDaySeconds};
  for (size_t i = 0; i < loads.size(); i++) {
    INFO(loads[i].dump());
    const Json& payload = loads[i]["payload"];
    CHECK(payload["revoked_count"] == revoked_counts[i]);
    CHECK(payload["next_update_ns"] == next_updates[i] * 1'000'000'000);
    CHECK(payload["issuer"] == "/O=Veertu/CN=Anka CA");
    CHECK(payload["source"] == pki.crl_path);
  }

  const std::string output = daemon->Output();
  CHECK(Occurrences(output, "CRL refused") == 2);
  CheckNoSecrets(events, output, pki);
}

TEST_CASE("mTLS: ANKA_ROOT_CERT is an alias of ANKA_CA_CERT") {
  Pki pki;
  const CertFiles good = pki.Write(
      pki.ca, ClientSpec(0x20, pki.now, "jenkins", {"DevOps", "iOS Dev"}), "jenkins");
  const CertFiles wrong_ca = pki.Write(pki.wrong, ClientSpec(0x21, pki.now, "mallory"), "wrong");
  const std::string data = pki.dir.Sub("data");
  auto daemon = StartDaemon(data, pki.dir.path(), pki.HttpsEnv("ANKA_ROOT_CERT"));
  const std::string status = daemon->controller().BaseUrl() + "/api/v1/status";
  RequireOkStatus(Curl(status, CertArgs(good)));
  RequireAuthenticationRequired(Curl(status, CertArgs(wrong_ca)));
  RequireAuthenticationRequired(Curl(status, {}));
  REQUIRE(daemon->Stop(SIGTERM).ok());
  const std::vector<Json> events = Events(data);
  CheckRefusals(events, {{"Certificate", "mallory", "certificate signed by an unknown CA"},
                         {"Unknown", "", "no credentials"}});
  CheckNoSecrets(events, daemon->Output(), pki);
}

TEST_CASE("mTLS: ingress headers are believed only from a trusted proxy, and still checked") {
  Pki pki;
  const std::string good_pem =
      Pem(IssueCert(pki.ca, ClientSpec(0x30, pki.now, "jenkins", {"DevOps", "iOS Dev"}))
              .cert.get());
  const std::string wrong_pem =
      Pem(IssueCert(pki.wrong, ClientSpec(0x31, pki.now, "mallory")).cert.get());
  const std::string data = pki.dir.Sub("data");
  // Plain HTTP behind a proxy that terminates TLS; only 127.0.0.2 is that proxy.
  auto daemon = StartDaemon(data, pki.dir.path(),
                            {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken,
                             "ANKA_CA_CERT=" + pki.ca_path, "ANKA_ENABLE_INGRESS_NGINX=true",
                             "CLOISTER_TRUSTED_PROXIES=127.0.0.2/32"});
  const std::string base = daemon->controller().BaseUrl();
  REQUIRE(base.rfind("http://", 0) == 0);
  const std::string status = base + "/api/v1/status";
  const std::string verified = "Ssl-Client-Verify: SUCCESS";
  const std::string good_header = "Ssl-Client-Cert: " + UrlEncode(good_pem);
  const std::vector<std::string> from_proxy = {"--interface", "127.0.0.2"};
  auto With = [](std::vector<std::string> args, const std::vector<std::string>& headers) {
    for (const std::string& header : headers) {
      args.insert(args.end(), {"-H", header});
    }
    return args;
  };
  std::vector<Refusal> refusals;

  RequireOkStatus(Curl(status, With(from_proxy, {verified, good_header})));
  RequireOkStatus(Curl(base + "/api/v1/group",
                       PostArgs(R"({"name":"by-ingress"})",
                                With(from_proxy, {verified, good_header}))));
  // The same headers from anyone else: forged, refused outright.
  RequireAuthenticationRequired(Curl(status, With({}, {verified, good_header})));
  refusals.push_back({"IngressCertificate", "",
                      "ingress certificate headers from an untrusted peer", "127.0.0.1"});
  // From the proxy: a certificate of another CA, a header twice, a failed verification, junk.
  RequireAuthenticationRequired(
      Curl(status, With(from_proxy, {verified, "Ssl-Client-Cert: " + UrlEncode(wrong_pem)})));
  refusals.push_back(
      {"IngressCertificate", "mallory", "certificate signed by an unknown CA", "127.0.0.2"});
  RequireAuthenticationRequired(Curl(status, With(from_proxy, {verified, good_header,
                                                               good_header})));
  refusals.push_back({"IngressCertificate", "",
                      "Ssl-Client-Verify and Ssl-Client-Cert must each appear once", "127.0.0.2"});
  RequireAuthenticationRequired(
      Curl(status, With(from_proxy, {verified, verified, good_header})));
  refusals.push_back({"IngressCertificate", "",
                      "Ssl-Client-Verify and Ssl-Client-Cert must each appear once", "127.0.0.2"});
  RequireAuthenticationRequired(
      Curl(status, With(from_proxy, {"Ssl-Client-Verify: FAILED", good_header})));
  refusals.push_back({"IngressCertificate", "",
                      "the ingress did not verify the client certificate", "127.0.0.2"});
  RequireAuthenticationRequired(
      Curl(status, With(from_proxy, {verified, "Ssl-Client-Cert: %ZZnot-a-certificate"})));
  refusals.push_back(
      {"IngressCertificate", "", "unreadable Ssl-Client-Cert", "127.0.0.2"});
  // The root token still works, from anywhere.
  RequireOkStatus(Curl(status, RootArgs()));

  REQUIRE(daemon->Stop(SIGTERM).ok());
  const std::vector<Json> events = Events(data);
  CheckRefusals(events, refusals);
  const Json actor = GroupCreator(events, "by-ingress");
  CHECK(actor["kind"] == "IngressCertificate");
  CHECK(actor["id"] == "jenkins");
  CHECK(actor["groups"] == Json::array({"DevOps", "iOS Dev"}));
  CheckNoSecrets(events, daemon->Output(), pki);
}

TEST_CASE("mTLS: startup errors name the setting") {
  Pki pki;
  const std::vector<std::string> args = {"--data", pki.dir.Sub("data"), "--listen-addr",
                                         "127.0.0.1:0", "--registry-listen-address",
                                         "127.0.0.1:0"};
  const std::vector<std::string> auth = {"ANKA_ENABLE_AUTH=true",
                                         std::string("ANKA_ROOT_TOKEN=") + kToken};

  // A CA for client certificates without HTTPS (and without an ingress): nothing would ever
  // present a certificate.
  for (const std::string setting : {"ANKA_CA_CERT", "ANKA_ROOT_CERT"}) {
    INFO(setting);
    std::vector<std::string> env = auth;
    env.push_back(setting + "=" + pki.ca_path);
    auto refused = RunCloisterdToExit(args, env);
    REQUIRE(refused.ok());
    INFO(refused->output);
    CHECK(refused->ExitCode() == 2);
    CHECK(refused->output.find("ANKA_USE_HTTPS") != std::string::npos);
    CHECK(refused->output.find(kToken) == std::string::npos);
  }

  // A CA file that cannot be read, through the alias: exit 2 naming the path.
  {
    std::vector<std::string> env = pki.HttpsEnv("ANKA_ROOT_CERT");
    env.back() = "ANKA_ROOT_CERT=" + pki.dir.Sub("missing.pem");
    auto missing = RunCloisterdToExit(args, env);
    REQUIRE(missing.ok());
    INFO(missing->output);
    CHECK(missing->ExitCode() == 2);
    CHECK(missing->output.find(pki.dir.Sub("missing.pem") + ": cannot read") !=
          std::string::npos);
    // The error names the variable the operator set.
    CHECK(missing->output.find("ANKA_ROOT_CERT " + pki.dir.Sub("missing.pem")) !=
          std::string::npos);
  }

  // A CRL signed by another CA at start: no start (and no CRL-less start that would fail open).
  const std::string foreign = WriteCrlFile(pki.dir.Sub("foreign-crl.pem"), pki.wrong, {},
                                           pki.now - kDaySeconds, pki.now + kDaySeconds);
  std::vector<std::string> env = pki.HttpsEnv();
  env.push_back("ANKA_CRL=" + foreign);
  auto refused = RunCloisterdToExit(args, env);
  REQUIRE(refused.ok());
  INFO(refused->output);
  CHECK(refused->ExitCode() != 0);
  CHECK(refused->output.find("ANKA_CRL " + foreign + ": issued by /O=Veertu/CN=Wrong CA") !=
        std::string::npos);
  CHECK(refused->output.find(kToken) == std::string::npos);
  CHECK(refused->output.find("PRIVATE KEY") == std::string::npos);
}

}  // namespace
}  // namespace cloister::testing
