// Runs the conformance checks (conformance.h) against the in-process TestServer over plain
// HTTP. Each TEST_CASE starts its own server with the limits it needs: small bodies and short
// timeouts keep the suite fast, and the checks read the limits from the target.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "api/limits.h"
#include "tests/wire/conformance.h"
#include "tests/wire/test_server.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

api::HttpLimits SmallLimits() {
  api::HttpLimits limits;
  limits.body_bytes_max = 64 * 1024;
  return limits;
}

struct Fixture {
  std::unique_ptr<TestServer> server;
  ConformanceTarget target;
};

Fixture Start(api::HttpLimits limits = SmallLimits()) {
  TestServerOptions options;
  options.limits = limits;
  auto server = TestServer::Start(options);
  INFO(server.status().ToString());
  REQUIRE(server.ok());
  Fixture fixture;
  fixture.target.wire = (*server)->target();
  fixture.target.limits = limits;
  fixture.server = std::move(*server);
  return fixture;
}

uint32_t Seed() {
  const char* text = std::getenv("CLOISTER_SEED");
  uint32_t seed = (text != nullptr && *text != '\0') ? static_cast<uint32_t>(std::atoll(text))
                                                     : 20261124u;
  std::cout << "conformance_test: CLOISTER_SEED=" << seed << "\n";
  return seed;
}

TEST_CASE("livez answers 200 and an unknown path 404 with the envelope") {
  Fixture f = Start();
  CheckLivez(f.target);
  CheckNotFoundEnvelope(f.target);
}

TEST_CASE("keep-alive serves several requests on one connection") {
  Fixture f = Start();
  CheckKeepAlive(f.target);
}

TEST_CASE("pipelined requests are answered in order") {
  Fixture f = Start();
  CheckPipelining(f.target);
}

TEST_CASE("chunked request bodies, in one write and split") {
  Fixture f = Start();
  CheckChunkedBody(f.target);
}

TEST_CASE("Expect: 100-continue is answered before the body; over the limit it is 413") {
  Fixture f = Start();
  CheckExpectContinue(f.target);
  CheckExpectContinueRefused(f.target);
}

TEST_CASE("HEAD has Content-Length and no body") {
  Fixture f = Start();
  CheckHead(f.target);
}

TEST_CASE("HTTP/1.0 closes unless keep-alive; Connection: close is honoured") {
  Fixture f = Start();
  CheckHttp10(f.target);
  CheckConnectionClose(f.target);
}

TEST_CASE("Upgrade and CONNECT are answered and closed, never tunnelled") {
  Fixture f = Start();
  CheckNoProtocolUpgrade(f.target);
}

TEST_CASE("malformed requests get 400 and a close, and nothing after them is answered") {
  Fixture f = Start();
  CheckMalformedRequest(f.target);
  CheckSmugglingRejected(f.target);
  REQUIRE(f.server->Stats().rejected_malformed_total >= 12);
}

TEST_CASE("header limits: 431 for too large and too many") {
  Fixture f = Start();
  CheckHeaderTooLarge(f.target);
  CheckTooManyHeaders(f.target);
  REQUIRE(f.server->Stats().rejected_header_too_large_total == 2);
}

TEST_CASE("body limit: 413 for a declared and for a chunked body over body_bytes_max") {
  Fixture f = Start();
  CheckBodyTooLarge(f.target);
  CheckChunkedBodyTooLarge(f.target);
  REQUIRE(f.server->Stats().rejected_body_too_large_total == 2);
}

TEST_CASE("random input never crashes the server") {
  Fixture f = Start();
  CheckGarbageInputs(f.target, Seed(), 200);
}

TEST_CASE("a client sending a byte a second gets 408 from the header deadline") {
  api::HttpLimits limits = SmallLimits();
  limits.header_timeout_ms = 2000;
  Fixture f = Start(limits);
  CheckSlowHeaders(f.target, 1000);
  REQUIRE(f.server->Stats().rejected_timeout_total == 1);
}

TEST_CASE("body and idle timeouts") {
  api::HttpLimits limits = SmallLimits();
  limits.body_timeout_ms = 1000;
  limits.idle_timeout_ms = 1000;
  Fixture f = Start(limits);
  CheckBodyTimeout(f.target);
  CheckIdleTimeout(f.target);
  api::HttpStats stats = f.server->Stats();
  REQUIRE(stats.rejected_timeout_total == 1);
  REQUIRE(stats.connections_idle_closed_total == 1);
}

TEST_CASE("connections over connections_max get 503") {
  api::HttpLimits limits = SmallLimits();
  limits.connections_max = 4;
  Fixture f = Start(limits);
  CheckConnectionLimit(f.target);
  REQUIRE(f.server->Stats().connections_rejected_total >= 1);
}

TEST_CASE("1,000 idle connections do not slow other requests") {
  // The test process holds both ends of every connection.
  REQUIRE(RaiseOpenFilesLimit() >= 2 * 1000 + 100);
  Fixture f = Start();
  CheckManyIdleConnections(f.target, 1000, 500);
  REQUIRE(f.server->Stats().connections_accepted_total >= 1000);
}

TEST_CASE("curl gets /livez") {
  Fixture f = Start();
  CheckCurl(f.target);
}

}  // namespace
}  // namespace cloister::testing
