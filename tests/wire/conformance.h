// HTTP/1.1 conformance checks for a cloister server, over real sockets (testonly).
//
// Each function opens its own connections to target and REQUIREs (Catch2) one behaviour the
// front door promises: keep-alive, pipelining, chunked bodies, 100-continue, HEAD, HTTP/1.0,
// the limits of api/limits.h with their status codes and the Anka error envelope, timeouts, and
// that a flood of idle connections does not starve others. The same checks run against the
// in-process TestServer (tests/wire/conformance_test.cc) and, later, against the real
// cloisterd binary.
//
// What the server under test must provide: GET /livez answers 200; an unknown path answers
// 404 with the envelope; POST and PUT on target.echo_path accept a body carrying a payload
// (target.echo_body) and answer 200 showing it (target.echo_shows). target.limits must be the
// limits the server enforces.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "api/limits.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {

struct ConformanceTarget {
  WireTarget wire;
  std::string echo_path = "/echo";
  // The request body that carries a payload to echo_path, and whether a 200 response body shows
  // that payload. The defaults suit a plain echo server; cloisterd wraps the payload in a config
  // change and finds it in the config it answers with. echo_body must add the same number of
  // bytes to every payload of plain letters, digits and spaces.
  std::function<std::string(std::string_view payload)> echo_body = [](std::string_view payload) {
    return std::string(payload);
  };
  std::function<bool(std::string_view payload, const std::string& response_body)> echo_shows =
      [](std::string_view payload, const std::string& response_body) {
        return response_body == payload;
      };
  api::HttpLimits limits;
  // How late a timeout may fire and still pass (scheduling on a loaded 2-core machine).
  int slack_ms = 1500;
};

// Requires status and the Anka envelope {"status":"FAIL","message":...} as application/json.
void RequireFailEnvelope(const WireResponse& response, int status);

void CheckLivez(const ConformanceTarget& target);
void CheckNotFoundEnvelope(const ConformanceTarget& target);
// Several requests, one connection.
void CheckKeepAlive(const ConformanceTarget& target);
// 4 requests in one write; 4 responses in order.
void CheckPipelining(const ConformanceTarget& target);
void CheckChunkedBody(const ConformanceTarget& target);
// "Expect: 100-continue" gets "100 Continue" before the body is sent, then the answer.
void CheckExpectContinue(const ConformanceTarget& target);
// "Expect: 100-continue" with a Content-Length over the limit gets 413 at once, then a close.
void CheckExpectContinueRefused(const ConformanceTarget& target);
void CheckHead(const ConformanceTarget& target);
// HTTP/1.0 closes after the response; with "Connection: keep-alive" it stays open.
void CheckHttp10(const ConformanceTarget& target);
void CheckConnectionClose(const ConformanceTarget& target);
// Upgrade (websocket) and CONNECT requests are answered, then the connection closes: cloister
// switches no protocols, and bytes after such a request are never parsed as HTTP.
void CheckNoProtocolUpgrade(const ConformanceTarget& target);
// 400 + close, and a request pipelined after the bad one is never answered.
void CheckMalformedRequest(const ConformanceTarget& target);
void CheckHeaderTooLarge(const ConformanceTarget& target);
void CheckTooManyHeaders(const ConformanceTarget& target);
void CheckBodyTooLarge(const ConformanceTarget& target);
void CheckChunkedBodyTooLarge(const ConformanceTarget& target);
// Smuggling shapes (CL+TE, two Content-Lengths, bad chunk sizes, bare LF): 400 + close.
void CheckSmugglingRejected(const ConformanceTarget& target);
// Random bytes on many connections: every one gets at most one 400 and a close, and the server
// still answers /livez afterwards. The seed is printed on failure.
void CheckGarbageInputs(const ConformanceTarget& target, uint32_t seed, int rounds);

// A client sending one byte every drip_interval_ms (< header_timeout_ms) gets 408 within
// header_timeout_ms + slack of its first byte, and is closed.
void CheckSlowHeaders(const ConformanceTarget& target, int drip_interval_ms);
// A body that stops arriving gets 408 within body_timeout_ms + slack.
void CheckBodyTimeout(const ConformanceTarget& target);
// A keep-alive connection left idle is closed silently after idle_timeout_ms (+ slack), and not
// much before.
void CheckIdleTimeout(const ConformanceTarget& target);
// With limits.connections_max connections open, one more is answered 503 and closed; once one
// closes, new connections are served again.
void CheckConnectionLimit(const ConformanceTarget& target);
// count idle connections open while /livez on another connection still answers within
// answer_ms. Needs RLIMIT_NOFILE above count (see RaiseOpenFilesLimit).
void CheckManyIdleConnections(const ConformanceTarget& target, int count, int answer_ms);
// One MakeTestPki per test binary, made on first use (REQUIREs that openssl succeeded).
const TestPki& SharedTestPki();

// curl -s <base>/livez prints the body and exits 0 (--insecure for TLS without a CA file).
void CheckCurl(const ConformanceTarget& target);

}  // namespace cloister::testing
