#include "tests/wire/conformance.h"

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "tests/testutil.h"

namespace cloister::testing {
namespace {

std::unique_ptr<WireConnection> Open(const ConformanceTarget& target) {
  auto connection = WireConnection::Connect(target.wire);
  INFO("connect " << target.wire.BaseUrl() << ": " << connection.status().ToString());
  REQUIRE(connection.ok());
  return std::move(*connection);
}

void SendAll(WireConnection& connection, std::string_view bytes) {
  Status status = connection.Send(bytes);
  INFO(status.ToString());
  REQUIRE(status.ok());
}

WireResponse Read(WireConnection& connection, bool head_request = false, int timeout_ms = 5000) {
  auto response = connection.ReadResponse(timeout_ms, head_request);
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  return std::move(*response);
}

// Requires the server to close the connection (within timeout_ms) without sending more.
void RequireClosed(WireConnection& connection, int timeout_ms = 5000) {
  auto rest = connection.ReadUntilClose(timeout_ms);
  INFO(rest.status().ToString());
  REQUIRE(rest.ok());
  INFO("bytes after the last response: " << *rest);
  REQUIRE(rest->empty());
}

std::string Echo(const ConformanceTarget& target, std::string_view method,
                 std::string_view payload, std::string_view extra_headers = "") {
  return MakeRequest(method, target.echo_path, target.echo_body(payload), extra_headers);
}

void RequireEcho(const ConformanceTarget& target, const WireResponse& response,
                 std::string_view payload) {
  INFO("status " << response.status << " body " << response.body.substr(0, 300));
  REQUIRE(response.status == 200);
  REQUIRE(target.echo_shows(payload, response.body));
}

// body as chunks of 5 bytes, 1 byte (with a chunk extension) and the rest, then the last chunk.
std::string Chunked(std::string_view body) {
  std::string out;
  auto chunk = [&](std::string_view part, std::string_view extension) {
    char size[32];
    std::snprintf(size, sizeof(size), "%zx", part.size());
    out += std::string(size) + std::string(extension) + "\r\n" + std::string(part) + "\r\n";
  };
  const size_t first = std::min<size_t>(5, body.size());
  chunk(body.substr(0, first), "");
  if (body.size() > first) {
    chunk(body.substr(first, 1), ";ext=1");
  }
  if (body.size() > first + 1) {
    chunk(body.substr(first + 1), "");
  }
  return out + "0\r\n\r\n";
}

// Sends request on a fresh connection; requires status with the envelope, then a close.
void RequireRejected(const ConformanceTarget& target, std::string_view request, int status) {
  auto connection = Open(target);
  // The server may reject before reading everything and close; a failed send is fine as long as
  // the response arrives.
  (void)connection->Send(request);
  WireResponse response = Read(*connection);
  RequireFailEnvelope(response, status);
  REQUIRE(response.Header("Connection") == "close");
  RequireClosed(*connection);
}

}  // namespace

void RequireFailEnvelope(const WireResponse& response, int status) {
  INFO("status " << response.status << " body " << response.body);
  REQUIRE(response.status == status);
  REQUIRE(response.Header("Content-Type").rfind("application/json", 0) == 0);
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
  REQUIRE(!body.is_discarded());
  REQUIRE(body.is_object());
  REQUIRE(body.value("status", "") == "FAIL");
  REQUIRE(body.contains("message"));
  REQUIRE(body["message"].is_string());
}

const TestPki& SharedTestPki() {
  static TempDir* dir = new TempDir();  // Left for Bazel to clean: outlives static teardown.
  static TestPki pki = [] {
    auto made = MakeTestPki(dir->path());
    INFO(made.status().ToString());
    REQUIRE(made.ok());
    return *made;
  }();
  return pki;
}

void CheckLivez(const ConformanceTarget& target) {
  auto connection = Open(target);
  SendAll(*connection, MakeRequest("GET", "/livez"));
  WireResponse response = Read(*connection);
  REQUIRE(response.status == 200);
  REQUIRE(response.HasHeader("Content-Length"));
  REQUIRE(!response.HasHeader("Transfer-Encoding"));
  // RFC 9110 IMF-fixdate, e.g. "Tue, 24 Nov 2026 17:40:37 GMT".
  const std::string date = response.Header("Date");
  INFO("Date: " << date);
  REQUIRE(date.size() == 29);
  REQUIRE(date.substr(25) == " GMT");
}

void CheckNotFoundEnvelope(const ConformanceTarget& target) {
  auto connection = Open(target);
  SendAll(*connection, MakeRequest("GET", "/cloister-no-such-path?x=1"));
  RequireFailEnvelope(Read(*connection), 404);
  SendAll(*connection, MakeRequest("GET", "/livez"));
  REQUIRE(Read(*connection).status == 200);  // A 404 keeps the connection.
}

void CheckKeepAlive(const ConformanceTarget& target) {
  auto connection = Open(target);
  for (int i = 0; i < 5; i++) {
    SendAll(*connection, MakeRequest("GET", "/livez"));
    WireResponse live = Read(*connection);
    REQUIRE(live.status == 200);
    REQUIRE(live.Header("Connection") != "close");
    std::string body = "keep-alive " + std::to_string(i);
    SendAll(*connection, Echo(target, "POST", body));
    RequireEcho(target, Read(*connection), body);
  }
}

void CheckPipelining(const ConformanceTarget& target) {
  auto connection = Open(target);
  SendAll(*connection, MakeRequest("GET", "/livez") + Echo(target, "POST", "one") +
                           MakeRequest("GET", "/cloister-no-such-path") +
                           Echo(target, "PUT", "two-two") + MakeRequest("GET", "/livez"));
  REQUIRE(Read(*connection).status == 200);
  RequireEcho(target, Read(*connection), "one");
  RequireFailEnvelope(Read(*connection), 404);
  RequireEcho(target, Read(*connection), "two-two");
  REQUIRE(Read(*connection).status == 200);
}

void CheckChunkedBody(const ConformanceTarget& target) {
  auto connection = Open(target);
  // In one write, then split over several writes (the parser must carry state across reads).
  const std::string head = "POST " + target.echo_path +
                           " HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string chunks = Chunked(target.echo_body("hello world"));
  SendAll(*connection, head + chunks);
  RequireEcho(target, Read(*connection), "hello world");
  SendAll(*connection, head);
  for (size_t i = 0; i < chunks.size(); i += 7) {
    SendAll(*connection, chunks.substr(i, 7));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  RequireEcho(target, Read(*connection), "hello world");
}

void CheckExpectContinue(const ConformanceTarget& target) {
  auto connection = Open(target);
  const std::string body = target.echo_body("hello");
  SendAll(*connection, "POST " + target.echo_path +
                           " HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
                           "Content-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n");
  WireResponse interim = Read(*connection);
  REQUIRE(interim.status == 100);
  SendAll(*connection, body);
  RequireEcho(target, Read(*connection), "hello");
  // The connection carries on.
  SendAll(*connection, MakeRequest("GET", "/livez"));
  REQUIRE(Read(*connection).status == 200);
}

void CheckExpectContinueRefused(const ConformanceTarget& target) {
  const uint64_t too_big = target.limits.body_bytes_max + 1;
  RequireRejected(target,
                  "POST " + target.echo_path +
                      " HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: " +
                      std::to_string(too_big) + "\r\n\r\n",
                  413);
}

void CheckHead(const ConformanceTarget& target) {
  auto connection = Open(target);
  SendAll(*connection, MakeRequest("GET", "/livez"));
  WireResponse get = Read(*connection);
  REQUIRE(get.status == 200);
  SendAll(*connection, MakeRequest("HEAD", "/livez"));
  WireResponse head = Read(*connection, /*head_request=*/true);
  REQUIRE(head.status == 200);
  REQUIRE(head.Header("Content-Length") == std::to_string(get.body.size()));
  // No body bytes followed the HEAD response: the next response parses cleanly.
  SendAll(*connection, MakeRequest("GET", "/livez"));
  WireResponse again = Read(*connection);
  REQUIRE(again.status == 200);
  REQUIRE(again.body == get.body);
}

void CheckHttp10(const ConformanceTarget& target) {
  {
    auto connection = Open(target);
    SendAll(*connection, "GET /livez HTTP/1.0\r\n\r\n");
    REQUIRE(Read(*connection).status == 200);
    RequireClosed(*connection);
  }
  auto connection = Open(target);
  for (int i = 0; i < 2; i++) {
    SendAll(*connection, "GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    WireResponse response = Read(*connection);
    REQUIRE(response.status == 200);
    REQUIRE(response.Header("Connection") == "keep-alive");
  }
}

void CheckConnectionClose(const ConformanceTarget& target) {
  auto connection = Open(target);
  // The second request comes after "Connection: close" and must be ignored.
  SendAll(*connection, MakeRequest("GET", "/livez", "", "Connection: close\r\n") +
                           MakeRequest("GET", "/livez"));
  WireResponse response = Read(*connection);
  REQUIRE(response.status == 200);
  REQUIRE(response.Header("Connection") == "close");
  RequireClosed(*connection);
}

void CheckNoProtocolUpgrade(const ConformanceTarget& target) {
  const std::string smuggled = MakeRequest("GET", "/livez");
  {
    auto connection = Open(target);
    SendAll(*connection, MakeRequest("GET", "/livez", "",
                                     "Connection: Upgrade\r\nUpgrade: websocket\r\n") +
                             smuggled);
    WireResponse response = Read(*connection);
    REQUIRE(response.status == 200);
    REQUIRE(response.Header("Connection") == "close");
    RequireClosed(*connection);
  }
  auto connection = Open(target);
  SendAll(*connection, "CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n" +
                           smuggled);
  WireResponse response = Read(*connection);
  REQUIRE(response.status >= 400);
  REQUIRE(response.Header("Connection") == "close");
  RequireClosed(*connection);
}

void CheckMalformedRequest(const ConformanceTarget& target) {
  const std::string follow_up = MakeRequest("GET", "/livez");
  const std::vector<std::string> malformed = {
      "GET /livez HTTP/1.1\r\nHost: test\r\nBad Header Line\r\n\r\n",
      "BREW /livez HTTP/1.1\r\nHost: test\r\n\r\n",
      "GET /livez HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n",
      "GET /livez HTTP/1.1\r\nHost: te\x01st\r\n\r\n",
      "GET /li vez HTTP/1.1\r\nHost: test\r\n\r\n",
      std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11),  // A TLS ClientHello.
  };
  for (const std::string& request : malformed) {
    INFO("request: " << request);
    RequireRejected(target, request + follow_up, 400);
  }
}

void CheckHeaderTooLarge(const ConformanceTarget& target) {
  const std::string big(target.limits.header_bytes_max, 'a');
  RequireRejected(target, MakeRequest("GET", "/livez", "", "X-Big: " + big + "\r\n"), 431);
  // Just under the limit is fine.
  auto connection = Open(target);
  const size_t fits = target.limits.header_bytes_max - 200;
  SendAll(*connection,
          MakeRequest("GET", "/livez", "", "X-Big: " + std::string(fits, 'a') + "\r\n"));
  REQUIRE(Read(*connection).status == 200);
}

void CheckTooManyHeaders(const ConformanceTarget& target) {
  // MakeRequest adds Host, so header_count_max - 1 more fields reach the limit exactly.
  std::string at_limit;
  for (uint32_t i = 0; i + 1 < target.limits.header_count_max; i++) {
    at_limit += "X-H" + std::to_string(i) + ": v\r\n";
  }
  auto connection = Open(target);
  SendAll(*connection, MakeRequest("GET", "/livez", "", at_limit));
  REQUIRE(Read(*connection).status == 200);
  RequireRejected(target, MakeRequest("GET", "/livez", "", at_limit + "X-One-More: v\r\n"), 431);
}

void CheckBodyTooLarge(const ConformanceTarget& target) {
  const uint64_t max = target.limits.body_bytes_max;
  // Declared too large: refused from the head alone, before any body byte is sent.
  RequireRejected(target,
                  "POST " + target.echo_path + " HTTP/1.1\r\nHost: test\r\nContent-Length: " +
                      std::to_string(max + 1) + "\r\n\r\n",
                  413);
  // A body of exactly max bytes is accepted.
  const size_t overhead = target.echo_body("").size();
  if (max <= 16 * 1024 * 1024 && max > overhead) {
    auto connection = Open(target);
    const std::string payload(max - overhead, 'b');
    REQUIRE(target.echo_body(payload).size() == max);
    SendAll(*connection, Echo(target, "POST", payload));
    RequireEcho(target, Read(*connection, false, 20000), payload);
  }
}

void CheckChunkedBodyTooLarge(const ConformanceTarget& target) {
  auto connection = Open(target);
  SendAll(*connection, "POST " + target.echo_path +
                           " HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
  const std::string chunk = "4000\r\n" + std::string(0x4000, 'c') + "\r\n";
  for (uint64_t sent = 0; sent <= target.limits.body_bytes_max; sent += 0x4000) {
    if (!connection->Send(chunk).ok()) {
      break;  // The server answered and closed early: the response is still readable.
    }
  }
  WireResponse response = Read(*connection);
  RequireFailEnvelope(response, 413);
  RequireClosed(*connection);
}

void CheckSmugglingRejected(const ConformanceTarget& target) {
  const std::string post = "POST " + target.echo_path + " HTTP/1.1\r\nHost: test\r\n";
  const std::vector<std::string> requests = {
      post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      post + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
      post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      "GET /livez HTTP/1.1\nHost: test\n\n",
      "GET /livez HTTP/1.1\r\nHost: test\r\nX-A: a\r\n folded\r\n\r\n",
  };
  for (const std::string& request : requests) {
    INFO("request: " << request);
    RequireRejected(target, request + MakeRequest("GET", "/livez"), 400);
  }
}

void CheckGarbageInputs(const ConformanceTarget& target, uint32_t seed, int rounds) {
  INFO("seed " << seed);
  std::mt19937 random(seed);
  const std::vector<std::string> prefixes = {"", "GET / HTTP/1.1\r\n", "POST /echo HTTP/1.1\r\n",
                                             "GET /livez HTTP/1.1\r\nHost: x\r\n"};
  for (int round = 0; round < rounds; round++) {
    INFO("round " << round);
    std::string input = prefixes[random() % prefixes.size()];
    const size_t size = 1 + random() % 300;
    for (size_t i = 0; i < size; i++) {
      // Half the rounds use bytes from HTTP's own alphabet, to get deeper into the parser.
      const char* alphabet = "GETPOST /:\r\n0123456789abcdef;-Content-Length,chunked";
      input += (round % 2 == 0) ? static_cast<char>(random() % 256)
                                : alphabet[random() % std::strlen(alphabet)];
    }
    auto connection = Open(target);
    (void)connection->Send(input);
    connection->ShutdownWrite();
    auto rest = connection->ReadUntilClose(5000);
    REQUIRE(rest.ok());
    REQUIRE((rest->empty() || rest->rfind("HTTP/1.1 ", 0) == 0));
  }
  CheckLivez(target);
}

void CheckSlowHeaders(const ConformanceTarget& target, int drip_interval_ms) {
  const int timeout_ms = static_cast<int>(target.limits.header_timeout_ms);
  REQUIRE(drip_interval_ms < timeout_ms);  // Otherwise a per-read timeout would also pass.
  auto connection = Open(target);
  const std::string request = MakeRequest("GET", "/livez");
  const int64_t start = MonotonicMs();
  Result<WireResponse> response = Status::NotFound("no response yet");
  for (size_t i = 0; i < request.size() - 1 && !response.ok(); i++) {
    if (!connection->Send(request.substr(i, 1)).ok()) {
      break;
    }
    response = connection->ReadResponse(drip_interval_ms);
    if (!response.ok() && response.status().message().rfind("timed out", 0) != 0) {
      break;  // Closed: the response, if any, is in what was read.
    }
  }
  if (!response.ok()) {
    response = connection->ReadResponse(1000);
  }
  const int64_t elapsed = MonotonicMs() - start;
  INFO("elapsed " << elapsed << " ms, header_timeout_ms " << timeout_ms);
  REQUIRE(response.ok());
  RequireFailEnvelope(*response, 408);
  REQUIRE(elapsed >= timeout_ms - 100);
  REQUIRE(elapsed <= timeout_ms + target.slack_ms);
  RequireClosed(*connection);
}

void CheckBodyTimeout(const ConformanceTarget& target) {
  const int timeout_ms = static_cast<int>(target.limits.body_timeout_ms);
  auto connection = Open(target);
  SendAll(*connection, "POST " + target.echo_path +
                           " HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc");
  const int64_t start = MonotonicMs();
  WireResponse response = Read(*connection, false, timeout_ms + target.slack_ms + 1000);
  const int64_t elapsed = MonotonicMs() - start;
  INFO("elapsed " << elapsed << " ms, body_timeout_ms " << timeout_ms);
  RequireFailEnvelope(response, 408);
  REQUIRE(elapsed >= timeout_ms - 100);
  REQUIRE(elapsed <= timeout_ms + target.slack_ms);
  RequireClosed(*connection);
}

void CheckIdleTimeout(const ConformanceTarget& target) {
  const int timeout_ms = static_cast<int>(target.limits.idle_timeout_ms);
  auto connection = Open(target);
  SendAll(*connection, MakeRequest("GET", "/livez"));
  REQUIRE(Read(*connection).status == 200);
  const int64_t start = MonotonicMs();
  // Still open halfway through.
  REQUIRE(!connection->ReadUntilClose(timeout_ms / 2).ok());
  REQUIRE(connection->ClosedSilently(timeout_ms + target.slack_ms));
  const int64_t elapsed = MonotonicMs() - start;
  INFO("elapsed " << elapsed << " ms, idle_timeout_ms " << timeout_ms);
  REQUIRE(elapsed >= timeout_ms - 100);
  REQUIRE(elapsed <= timeout_ms + target.slack_ms);
}

void CheckConnectionLimit(const ConformanceTarget& target) {
  const uint32_t max = target.limits.connections_max;
  REQUIRE(max <= 256);  // This check opens max connections; keep it for small limits.
  std::vector<std::unique_ptr<WireConnection>> open;
  for (uint32_t i = 0; i < max; i++) {
    open.push_back(Open(target));
    SendAll(*open.back(), MakeRequest("GET", "/livez"));
    REQUIRE(Read(*open.back()).status == 200);
  }
  RequireRejected(target, MakeRequest("GET", "/livez"), 503);
  // Free one slot; the server notices the close, and new connections are served again.
  open.pop_back();
  const int64_t deadline = MonotonicMs() + 3000;
  int status = 0;
  while (status != 200 && MonotonicMs() < deadline) {
    {
      auto connection = Open(target);
      (void)connection->Send(MakeRequest("GET", "/livez"));
      auto response = connection->ReadResponse(2000);
      status = response.ok() ? response->status : 0;
    }
    // Closed before the next attempt, and given time to be noticed: a close and a new connection
    // seen in the same loop iteration may be handled in either order.
    if (status != 200) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  REQUIRE(status == 200);
}

void CheckManyIdleConnections(const ConformanceTarget& target, int count, int answer_ms) {
  std::vector<std::unique_ptr<WireConnection>> idle;
  for (int i = 0; i < count; i++) {
    idle.push_back(Open(target));
    SendAll(*idle.back(), MakeRequest("GET", "/livez"));
    REQUIRE(Read(*idle.back()).status == 200);  // Now an idle keep-alive connection.
  }
  for (int round = 0; round < 3; round++) {
    const int64_t start = MonotonicMs();
    auto fresh = Open(target);
    SendAll(*fresh, MakeRequest("GET", "/livez"));
    REQUIRE(Read(*fresh).status == 200);
    SendAll(*idle[static_cast<size_t>(round * count / 3)], MakeRequest("GET", "/livez"));
    REQUIRE(Read(*idle[static_cast<size_t>(round * count / 3)]).status == 200);
    const int64_t elapsed = MonotonicMs() - start;
    INFO("answered in " << elapsed << " ms with " << count << " idle connections");
    REQUIRE(elapsed <= answer_ms);
  }
}

void CheckCurl(const ConformanceTarget& target) {
  std::vector<std::string> args = {"-s", "-S", "--max-time", "10", "-w", "\n%{http_code}"};
  if (target.wire.tls) {
    if (target.wire.ca_file.empty()) {
      args.push_back("--insecure");
    } else {
      args.insert(args.end(), {"--cacert", target.wire.ca_file});
    }
  }
  args.push_back(target.wire.BaseUrl() + "/livez");
  ProgramResult result = RunProgram("curl", args);
  INFO(result.Describe());
  REQUIRE(result.Succeeded());
  REQUIRE(result.out.size() > 4);
  REQUIRE(result.out.substr(result.out.size() - 4) == "\n200");
}

}  // namespace cloister::testing
