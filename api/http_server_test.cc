// HttpServer behaviour that needs the server's own API or the test handler's special routes:
// what a handler receives, asynchronous and out-of-order answers, writers that outlive their
// connection, the pipeline bound, the access log, counters, Listen errors, graceful shutdown and
// destruction with connections open. Generic HTTP behaviour is in tests/wire/conformance_test.
#include "api/http_server.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "api/http_types.h"
#include "api/limits.h"
#include "api/loop_poster.h"
#include "tests/wire/test_server.h"
#include "tests/wire/wire_client.h"

namespace cloister::api {
namespace {

using cloister::testing::MakeRequest;
using cloister::testing::MonotonicMs;
using cloister::testing::TestServer;
using cloister::testing::TestServerOptions;
using cloister::testing::WireConnection;
using cloister::testing::WireResponse;

std::unique_ptr<TestServer> StartServer(HttpLimits limits = HttpLimits()) {
  TestServerOptions options;
  options.limits = limits;
  auto server = TestServer::Start(options);
  INFO(server.status().ToString());
  REQUIRE(server.ok());
  return std::move(*server);
}

std::unique_ptr<WireConnection> Connect(TestServer& server) {
  auto connection = WireConnection::Connect(server.target());
  INFO(connection.status().ToString());
  REQUIRE(connection.ok());
  return std::move(*connection);
}

WireResponse Exchange(WireConnection& connection, const std::string& request,
                      bool head_request = false) {
  REQUIRE(connection.Send(request).ok());
  auto response = connection.ReadResponse(5000, head_request);
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  return std::move(*response);
}

WireResponse Read(WireConnection& connection, int timeout_ms = 5000) {
  auto response = connection.ReadResponse(timeout_ms);
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  return std::move(*response);
}

// Polls predicate until true or timeout_ms; returns its last value.
bool Eventually(const std::function<bool()>& predicate, int timeout_ms = 3000) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (!predicate()) {
    if (MonotonicMs() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string LocalAddress(int fd) {
  sockaddr_storage local;
  socklen_t size = sizeof(local);
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size);
  return FormatSocketAddress(reinterpret_cast<const sockaddr*>(&local));
}

TEST_CASE("the handler sees method, target, path, query, headers, body, peer and an id") {
  auto server = StartServer();
  auto connection = Connect(*server);
  WireResponse echo = Exchange(*connection,
                               "POST /echo?a=1&b=2 HTTP/1.1\r\nHost: test\r\n"
                               "X-Custom: Value  \r\nx-other: 1\r\nContent-Length: 3\r\n\r\nabc");
  REQUIRE(echo.body == "abc");
  WireResponse header =
      Exchange(*connection, MakeRequest("GET", "/header?name=X-CUSTOM", "", "x-custom: hi\r\n"));
  REQUIRE(header.body == "hi");
  std::vector<Request> requests = server->Requests();
  REQUIRE(requests.size() == 2);
  const Request& post = requests[0];
  REQUIRE(post.method == "POST");
  REQUIRE(post.target == "/echo?a=1&b=2");
  REQUIRE(post.path == "/echo");
  REQUIRE(post.query == "a=1&b=2");
  REQUIRE(post.version_minor == 1);
  REQUIRE(*post.headers.Find("x-custom") == "Value");  // Trailing whitespace is not the value.
  REQUIRE(*post.headers.Find("X-OTHER") == "1");
  REQUIRE(post.body == "abc");
  REQUIRE(post.peer == LocalAddress(connection->fd()));
  REQUIRE(!post.tls);
  REQUIRE(!post.id.empty());
  REQUIRE(post.id != requests[1].id);
}

TEST_CASE("responses go out in request order when handlers answer out of order") {
  auto server = StartServer();
  auto connection = Connect(*server);
  const int64_t start = MonotonicMs();
  REQUIRE(connection->Send(MakeRequest("GET", "/later?ms=300") +
                           MakeRequest("GET", "/later?ms=10") + MakeRequest("GET", "/livez") +
                           MakeRequest("GET", "/thread?ms=50"))
              .ok());
  REQUIRE(Read(*connection).body == "later 300");
  REQUIRE(Read(*connection).body == "later 10");
  REQUIRE(Read(*connection).status == 200);
  REQUIRE(Read(*connection).body == "thread 50");
  // The three waits overlapped: not 360 ms in sequence.
  REQUIRE(MonotonicMs() - start < 2000);
}

TEST_CASE("a dropped writer answers 500, and an invalid response becomes 500") {
  auto server = StartServer();
  auto connection = Connect(*server);
  WireResponse dropped = Exchange(*connection, MakeRequest("GET", "/drop"));
  REQUIRE(dropped.status == 500);
  REQUIRE(dropped.body.find("\"status\":\"FAIL\"") != std::string::npos);
  WireResponse bad = Exchange(*connection, MakeRequest("GET", "/bad-header"));
  REQUIRE(bad.status == 500);
  REQUIRE(!bad.HasHeader("Injected"));
  REQUIRE(Exchange(*connection, MakeRequest("GET", "/livez")).status == 200);
}

TEST_CASE("answering after the client has gone is harmless") {
  auto server = StartServer();
  {
    auto connection = Connect(*server);
    REQUIRE(connection->Send(MakeRequest("GET", "/hold")).ok());
    REQUIRE(Eventually([&] { return server->HeldCount() == 1; }));
    connection->Reset();
  }
  REQUIRE(Eventually([&] { return server->Stats().connections_open == 0; }));
  const uint64_t responses = server->Stats().responses_total;
  server->ReleaseHeld();  // The writer's connection is gone: nothing is written, nothing breaks.
  REQUIRE(server->Stats().responses_total == responses);
  auto connection = Connect(*server);
  REQUIRE(Exchange(*connection, MakeRequest("GET", "/livez")).status == 200);
}

TEST_CASE("a client that half-closes still gets its answers, then the connection closes") {
  auto server = StartServer();
  auto connection = Connect(*server);
  REQUIRE(connection->Send(MakeRequest("GET", "/later?ms=200") + MakeRequest("GET", "/livez"))
              .ok());
  connection->ShutdownWrite();
  REQUIRE(Read(*connection).body == "later 200");
  WireResponse last = Read(*connection);
  REQUIRE(last.status == 200);
  REQUIRE(last.Header("Connection") == "close");
  REQUIRE(connection->ClosedSilently(2000));
}

TEST_CASE("parsing stops at pipeline_requests_max unanswered requests") {
  HttpLimits limits;
  limits.pipeline_requests_max = 4;
  auto server = StartServer(limits);
  auto connection = Connect(*server);
  std::string burst;
  for (int i = 0; i < 10; i++) {
    burst += MakeRequest("GET", "/hold");
  }
  REQUIRE(connection->Send(burst).ok());
  int answered = 0;
  while (answered < 10) {
    REQUIRE(Eventually([&] { return server->HeldCount() > 0; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // Let it parse all it may.
    const size_t held = server->HeldCount();
    REQUIRE(held <= 4);
    REQUIRE(held == std::min<size_t>(4, 10 - answered));
    server->ReleaseHeld();
    for (size_t i = 0; i < held; i++) {
      REQUIRE(Read(*connection).body == "released");
      answered++;
    }
  }
}

TEST_CASE("100 Continue waits for the responses before it") {
  auto server = StartServer();
  auto connection = Connect(*server);
  REQUIRE(connection->Send(MakeRequest("GET", "/later?ms=300") +
                           "POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
                           "Content-Length: 5\r\n\r\n")
              .ok());
  REQUIRE(Read(*connection).body == "later 300");
  REQUIRE(Read(*connection).status == 100);
  REQUIRE(connection->Send("hello").ok());
  REQUIRE(Read(*connection).body == "hello");
}

TEST_CASE("HEAD of a large body sends the head only") {
  auto server = StartServer();
  auto connection = Connect(*server);
  WireResponse head = Exchange(*connection, MakeRequest("HEAD", "/big?bytes=100000"), true);
  REQUIRE(head.Header("Content-Length") == "100000");
  REQUIRE(Exchange(*connection, MakeRequest("GET", "/big?bytes=3")).body == "xxx");
}

TEST_CASE("the access log: method, path without query, status, bytes, time, peer, id") {
  auto server = StartServer();
  auto connection = Connect(*server);
  REQUIRE(connection->Send(
                        MakeRequest("GET", "/livez?token=secret", "", "Connection: close\r\n"))
              .ok());
  auto raw = connection->ReadUntilClose();
  REQUIRE(raw.ok());
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 1; }));
  auto malformed = Connect(*server);
  REQUIRE(malformed->Send("NOT HTTP\r\n\r\n").ok());
  REQUIRE(malformed->ReadUntilClose().ok());
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 2; }));

  std::vector<cloister::testing::AccessRecord> log = server->AccessLog();
  const cloister::testing::AccessRecord& entry = log[0];
  REQUIRE(entry.server == "test");
  REQUIRE(entry.method == "GET");
  REQUIRE(entry.path == "/livez");
  REQUIRE(entry.status == 200);
  REQUIRE(entry.response_bytes == raw->size());
  REQUIRE(entry.duration_us > 0);
  REQUIRE(entry.duration_us < 5'000'000);
  REQUIRE(entry.peer == LocalAddress(connection->fd()));
  REQUIRE(entry.request_id == server->Requests().at(0).id);
  REQUIRE(log[1].method == "-");
  REQUIRE(log[1].path == "-");
  REQUIRE(log[1].status == 400);
  for (const auto& record : log) {
    REQUIRE(record.path.find("secret") == std::string::npos);
  }
}

TEST_CASE("counters: connections, requests, responses by class, rejections") {
  auto server = StartServer();
  {
    auto connection = Connect(*server);
    REQUIRE(Exchange(*connection, MakeRequest("GET", "/livez")).status == 200);
    REQUIRE(Exchange(*connection, MakeRequest("GET", "/nope")).status == 404);
    REQUIRE(Exchange(*connection, "GET /livez HTTP/1.1\r\nBad\r\n\r\n").status == 400);
    REQUIRE(connection->ReadUntilClose().ok());
  }
  REQUIRE(Eventually([&] { return server->Stats().connections_open == 0; }));
  HttpStats stats = server->Stats();
  REQUIRE(stats.connections_accepted_total == 1);
  REQUIRE(stats.requests_total == 2);
  REQUIRE(stats.responses_total == 3);
  REQUIRE(stats.responses_by_class[2] == 1);
  REQUIRE(stats.responses_by_class[4] == 2);
  REQUIRE(stats.rejected_malformed_total == 1);
}

TEST_CASE("Listen: port 0, IPv6, and a clear error when the address is in use") {
  auto first = StartServer();
  REQUIRE(first->port() != 0);
  TestServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(first->port());
  auto second = TestServer::Start(options);
  REQUIRE(!second.ok());
  REQUIRE(second.status().code() == StatusCode::kIoError);
  REQUIRE(second.status().message() ==
          "listen 127.0.0.1:" + std::to_string(first->port()) + ": address already in use");

  options.listen = "[::1]:0";
  auto v6 = TestServer::Start(options);
  if (!v6.ok()) {
    WARN("no IPv6 loopback here: " << v6.status().ToString());
    return;
  }
  cloister::testing::WireTarget target = (*v6)->target();
  target.host = "::1";
  auto connection = WireConnection::Connect(target);
  REQUIRE(connection.ok());
  REQUIRE(Exchange(**connection, MakeRequest("GET", "/livez")).status == 200);
  REQUIRE((*v6)->Requests().at(0).peer.rfind("[::1]:", 0) == 0);
}

TEST_CASE("graceful Shutdown answers requests in flight and closes the rest") {
  auto server = StartServer();
  auto busy = Connect(*server);
  auto idle = Connect(*server);
  auto partial = Connect(*server);
  REQUIRE(Exchange(*idle, MakeRequest("GET", "/livez")).status == 200);
  REQUIRE(partial->Send("GET /livez HTTP/1.1\r\nHo").ok());
  REQUIRE(busy->Send(MakeRequest("GET", "/later?ms=500")).ok());
  REQUIRE(Eventually([&] { return server->Requests().size() == 2; }));

  std::future<bool> done = std::async(std::launch::async, [&] { return server->Shutdown(5000); });
  REQUIRE(idle->ClosedSilently(1000));
  REQUIRE(partial->ClosedSilently(1000));
  WireResponse response = Read(*busy);
  REQUIRE(response.body == "later 500");
  REQUIRE(response.Header("Connection") == "close");
  REQUIRE(busy->ClosedSilently(2000));
  REQUIRE(done.get());
  REQUIRE(!WireConnection::Connect(server->target(), 1000).ok());  // No longer listening.
}

TEST_CASE("a client that does not read is closed after send_timeout_ms") {
  HttpLimits limits;
  limits.send_timeout_ms = 1000;
  auto server = StartServer(limits);
  auto connection = Connect(*server);
  REQUIRE(connection->Send(MakeRequest("GET", "/big?bytes=67108864")).ok());
  const int64_t start = MonotonicMs();
  REQUIRE(Eventually([&] { return server->Stats().send_timeouts_total == 1; }, 5000));
  const int64_t elapsed = MonotonicMs() - start;
  INFO("closed after " << elapsed << " ms");
  REQUIRE(elapsed >= 900);
  REQUIRE(server->Stats().connections_open == 0);
}

// A handler that keeps every writer, for the destruction test below.
class KeepingHandler : public Handler {
 public:
  void Handle(Request /*request*/, ResponseWriter writer) override {
    kept.push_back(std::move(writer));
  }
  std::vector<ResponseWriter> kept;
};

TEST_CASE("destroying a server with open connections frees everything") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  KeepingHandler handler;
  HttpServerOptions options;
  options.handler = &handler;
  auto server = std::make_unique<HttpServer>(&loop, options);
  REQUIRE(server->Listen().ok());
  cloister::testing::WireTarget target;
  target.port = server->port();
  // The kernel completes the TCP handshake from the backlog; the loop accepts when it runs.
  auto client = WireConnection::Connect(target);
  REQUIRE(client.ok());
  REQUIRE((*client)->Send(MakeRequest("GET", "/anything")).ok());
  const int64_t deadline = MonotonicMs() + 3000;
  while (handler.kept.empty() && MonotonicMs() < deadline) {
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  REQUIRE(handler.kept.size() == 1);
  REQUIRE(handler.kept[0].connection_open());

  server.reset();  // Closes the connection and the listener without answering.
  REQUIRE(!handler.kept[0].connection_open());
  handler.kept[0].Send(FailResponse(503, "late"));  // Safe: the connection is gone.
  REQUIRE(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  REQUIRE(uv_loop_close(&loop) == 0);
  auto rest = (*client)->ReadUntilClose(2000);
  REQUIRE(rest.ok());
  REQUIRE(rest->empty());
}

// The shape of a daemon's main (api/README.md): serve until a signal, Shutdown, close the
// poster and the signal handle in done, and uv_run returns with nothing left open.
struct Daemon {
  HttpServer* server = nullptr;
  LoopPoster* poster = nullptr;
  uv_signal_t signal;
  bool done_ran = false;
};

class LivezHandler : public Handler {
 public:
  void Handle(Request /*request*/, ResponseWriter writer) override {
    Response response;
    response.content_type = "application/json";
    response.body = "{\"status\":\"OK\"}";
    writer.Send(std::move(response));
  }
};

void RunDaemon(std::promise<uint16_t>* port, bool* clean_exit, bool* done_ran) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto poster = LoopPoster::Create(&loop);
  LivezHandler handler;
  HttpServerOptions options;
  options.name = "controller";
  options.listen = *ParseListenAddress("127.0.0.1:0");
  options.handler = &handler;
  HttpServer server(&loop, options);
  Status status = server.Listen();
  Daemon daemon;
  daemon.server = &server;
  daemon.poster = poster->get();
  uv_signal_init(&loop, &daemon.signal);
  daemon.signal.data = &daemon;
  uv_signal_start(&daemon.signal, [](uv_signal_t* handle, int /*signum*/) {
    auto* d = static_cast<Daemon*>(handle->data);
    uv_signal_stop(handle);
    d->server->Shutdown([d]() {
      d->done_ran = true;
      d->poster->Close();
      uv_close(reinterpret_cast<uv_handle_t*>(&d->signal), nullptr);
    });
  }, SIGUSR1);
  port->set_value(status.ok() ? server.port() : 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  *done_ran = daemon.done_ran;
  *clean_exit = uv_loop_close(&loop) == 0;
}

TEST_CASE("the daemon pattern: serve, Shutdown on a signal, uv_run returns") {
  std::promise<uint16_t> port;
  std::future<uint16_t> bound = port.get_future();
  bool clean_exit = false;
  bool done_ran = false;
  std::thread daemon(RunDaemon, &port, &clean_exit, &done_ran);
  cloister::testing::WireTarget target;
  target.port = bound.get();
  REQUIRE(target.port != 0);
  {
    auto connection = WireConnection::Connect(target);
    REQUIRE(connection.ok());
    REQUIRE(Exchange(**connection, MakeRequest("GET", "/livez")).status == 200);
    kill(getpid(), SIGUSR1);
    REQUIRE((*connection)->ClosedSilently(3000));  // The idle connection is closed at once.
  }
  daemon.join();
  REQUIRE(done_ran);
  REQUIRE(clean_exit);
}

TEST_CASE("a failed Listen leaves nothing behind") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  KeepingHandler handler;
  HttpServerOptions options;
  options.handler = &handler;
  TlsSettings tls;
  tls.cert_path = "/nonexistent/cert.pem";
  tls.key_path = "/nonexistent/key.pem";
  options.tls = tls;
  {
    HttpServer server(&loop, options);
    Status status = server.Listen();
    REQUIRE(status.message().find("ANKA_SERVER_CERT /nonexistent/cert.pem") == 0);
  }
  options.tls.reset();
  options.listen = ListenAddress{"192.0.2.1", 0};  // TEST-NET-1: not an address of this host.
  {
    HttpServer server(&loop, options);
    Status status = server.Listen();
    REQUIRE(!status.ok());
    REQUIRE(status.message() == "listen 192.0.2.1:0: address not available");
  }
  REQUIRE(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  REQUIRE(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace cloister::api
