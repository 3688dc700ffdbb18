// TestServer: an api::HttpServer on its own loop thread with a handler made for tests
// (testonly). Tests talk to it over real sockets (wire_client.h) from the test thread.
//
// Routes of the test handler:
//   GET  /livez              200 {"status":"OK","message":"live"}
//   POST|PUT /echo           200 application/octet-stream: the request body
//   GET  /later?ms=N         200 "later N", answered N ms later from a libuv timer
//   GET  /thread?ms=N        200 "thread N", answered from another thread via a LoopPoster
//   GET  /header?name=X      200 the value of header X (case-insensitive lookup) or 404
//   GET  /big?bytes=N        200 N bytes of 'x'
//   GET  /hold               kept unanswered until ReleaseHeld (or never)
//   GET  /drop               the writer is destroyed without an answer (500 expected)
//   GET  /bad-header         answers with a CR LF inside a header value (500 expected)
//   anything else            404 {"status":"FAIL","message":"not found"}
//
// Thread-safety: every public method is called from the test thread (one at a time).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/http_server.h"
#include "api/http_types.h"
#include "api/limits.h"
#include "api/loop_poster.h"
#include "api/tls.h"
#include "log/status.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {

struct TestServerOptions {
  std::string name = "test";
  api::HttpLimits limits;
  std::optional<api::TlsSettings> tls;
  std::string listen = "127.0.0.1:0";
};

// An access-log entry copied out of the callback (the callback's views die with it).
struct AccessRecord {
  std::string server;
  std::string method;
  std::string path;
  int status = 0;
  uint64_t response_bytes = 0;
  uint64_t duration_us = 0;
  std::string peer;
  std::string request_id;
};

class TestServer {
 public:
  // Starts the loop thread and listens. Errors are Listen's.
  static Result<std::unique_ptr<TestServer>> Start(TestServerOptions options);

  // Graceful Shutdown (bounded: then CloseAll), stops the loop, joins the threads.
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  uint16_t port() const { return port_; }
  WireTarget target() const;
  const TestServerOptions& options() const { return options_; }

  // Runs fn on the loop thread and waits (at most 10 s) for it to finish. False on timeout.
  bool RunOnLoop(std::function<void()> fn);

  api::HttpStats Stats();
  std::vector<AccessRecord> AccessLog();
  // Copies of the requests the handler received, in order.
  std::vector<api::Request> Requests();

  // Requests of /hold waiting for ReleaseHeld.
  size_t HeldCount();
  // Answers every held request 200 "released" (a no-op for those whose client left).
  void ReleaseHeld();

  // Starts a graceful Shutdown; true if its done ran within timeout_ms.
  bool Shutdown(int timeout_ms);

 private:
  class Handler;
  explicit TestServer(TestServerOptions options);
  void LoopMain(std::promise<Status>* started);
  void Stop();

  TestServerOptions options_;
  uint16_t port_ = 0;
  uv_loop_t loop_;
  std::thread loop_thread_;
  std::unique_ptr<api::LoopPoster> poster_;      // Created and closed on the loop thread.
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<api::HttpServer> server_;      // Loop thread only.
  bool shutdown_started_ = false;
  std::mutex mutex_;
  std::vector<AccessRecord> access_log_;         // Guarded by mutex_.
};

}  // namespace cloister::testing
