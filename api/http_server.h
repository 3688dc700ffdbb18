// HttpServer: cloister's HTTP/1.1 (+ TLS) front door on one libuv loop.
//
// What it does: accepts connections, decrypts TLS (tls.h), parses requests with llhttp in strict
// mode (no lenient flag anywhere: request smuggling, shared/RELIABILITY.md T12), and hands each
// complete request to a Handler with a ResponseWriter. Keep-alive and pipelining are supported;
// responses go out strictly in request order even when handlers answer out of order. Every
// response carries Content-Length (none for 204 and 304), a streamed one too when its BodySource
// states its size up front; one of unknown length (a followed log) is sent with
// Transfer-Encoding: chunked (http_types.h). Every limit (limits.h) is
// enforced here, so a Handler only ever sees a complete, bounded request, except that a handler
// that takes a body as a stream (Handler::StreamBody) bounds that body itself, through its
// BodySink; the server still bounds the head, the time between body bytes, and its own memory.
//
// Streaming both ways costs bounded memory: request body bytes go to the sink as they are
// decoded (reading stops whenever the connection cannot parse, as for any request), and a
// BodySource is read kBodyChunkBytes at a time only while fewer than kBodyBacklogBytesMax
// response bytes wait to be sent, so a slow reader slows the reads (and send_timeout_ms still
// closes one that stops).
//
// Threading: one loop thread. The constructor, every method, the Handler and the access-log
// callback run on it. Another thread hands work back with a LoopPoster (loop_poster.h).
//
// Ownership (libuv rules): the server owns the listening handle, each connection owns its TCP
// and timer handles, and memory is freed only in close callbacks. So after Shutdown's done (or
// after destroying the server) the loop must run until those callbacks have run; uv_run returns
// once they have.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/http_types.h"
#include "api/limits.h"
#include "api/listen_address.h"
#include "api/tls.h"
#include "log/status.h"

namespace cloister::api {

namespace internal {
struct Exchange;
class Connection;
}  // namespace internal

// Completes one request. Move-only; obtained from Handler::Handle.
//
// Send may be called later than Handle returns (after the engine made the request's events
// durable), but always on the loop thread: from another thread, post to the loop first. If the
// client has gone, Send does nothing: the writer refers to its request through a weak pointer,
// so it never touches a closed connection. A writer destroyed without Send answers 500, so a
// dropped request cannot stall its connection's pipeline.
class ResponseWriter {
 public:
  ResponseWriter() = default;  // Already complete; Send on it is a bug.
  ResponseWriter(ResponseWriter&& other) noexcept;
  ResponseWriter& operator=(ResponseWriter&& other) noexcept;
  ResponseWriter(const ResponseWriter&) = delete;
  ResponseWriter& operator=(const ResponseWriter&) = delete;
  // Answers 500 if not sent (on the loop thread; on another thread it cannot touch the
  // connection and only drops its reference).
  ~ResponseWriter();

  // Sends response (once; a second Send is a bug). Loop thread only.
  void Send(Response response);

  // True until Send.
  bool pending() const { return pending_; }
  // False once the connection closed: a long-running handler may stop early. Loop thread.
  bool connection_open() const;

 private:
  friend class internal::Connection;
  ResponseWriter(std::weak_ptr<internal::Exchange> exchange, uv_thread_t loop_thread)
      : exchange_(std::move(exchange)), loop_thread_(loop_thread), pending_(true) {}
  void Abandon();

  std::weak_ptr<internal::Exchange> exchange_;
  uv_thread_t loop_thread_{};
  bool pending_ = false;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // Called on the loop thread once per complete request, in arrival order on each connection.
  // Must not block: answer now with writer.Send, or keep the writer and answer later. May call
  // Shutdown or CloseAll, but must not destroy the server.
  virtual void Handle(Request request, ResponseWriter writer) = 0;

  // Called once a request's head is complete, when it announces a body (Content-Length > 0 or
  // chunked) and before any body byte is read or "100 Continue" sent. The default buffers the
  // body (bounded by HttpLimits::body_bytes_max) as for every request. A handler may instead:
  //  - return a sink: the body goes to it as it arrives, without body_bytes_max (the sink bounds
  //    it), and with body_timeout_ms counted from the last body byte received rather than for
  //    the whole body; Handle then gets the request with body_sink set once the body is complete;
  //  - set *reject: that response is sent at once as the connection's last (no 100 Continue),
  //    Handle is not called for this request and the body is discarded (e.g. 401 before a
  //    10 GB upload is read). It is written after the responses to earlier requests, counts
  //    in HttpStats::requests_total, and a sink returned with it is ignored.
  // head has everything but the body: peer, tls, client_cert and id are set, and id is the one
  // the request has in Handle and in the access log. Not called for a request without a body.
  // With pipelining it may run while earlier requests of the connection are still unanswered.
  virtual std::shared_ptr<BodySink> StreamBody(const Request& head,
                                               std::optional<Response>* reject) {
    (void)head;
    (void)reject;
    return nullptr;
  }
};

using AccessLogCallback = std::function<void(const AccessLogEntry& entry)>;

struct HttpServerOptions {
  std::string name = "controller";  // In access-log entries and messages.
  ListenAddress listen{"127.0.0.1", 0};
  HttpLimits limits;
  std::optional<TlsSettings> tls;   // Set: HTTPS only on this listener.
  Handler* handler = nullptr;       // Required; must outlive the server.
  AccessLogCallback access_log;     // Optional; called after each response is written.
  int backlog = 511;                // listen(2) backlog.
};

class HttpServer {
 public:
  // Loop thread. Does no I/O: see Listen.
  HttpServer(uv_loop_t* loop, HttpServerOptions options);
  // If connections are still open, closes them at once without answers (Shutdown is the
  // graceful way). Their memory is freed by close callbacks when the loop runs next.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Builds the TLS context (if any), binds and listens. Errors: kInvalidArgument/kNotFound for
  // TLS files (tls.h), kNotFound for an unresolvable host, kIoError for the socket, e.g.
  // "listen 0.0.0.0:8090: address already in use". Called once.
  Status Listen();

  // The bound port (the kernel's choice when listening on port 0). 0 before Listen.
  uint16_t port() const { return port_; }

  // Closes the listening socket; open connections carry on.
  void StopAccepting();

  // Graceful stop: stops accepting; closes idle connections and connections still in a TLS
  // handshake or in the middle of receiving a request; lets every request already received be
  // answered (the last response on each connection carries "Connection: close"); then calls
  // done once every connection and the listener are closed (a connection that sent its last
  // response lingers up to kLingerCloseMs for the client to close first). If nothing is open,
  // done runs before Shutdown returns. A handler that never answers keeps Shutdown waiting:
  // bound it with a timer that calls CloseAll. Called at most once.
  void Shutdown(std::function<void()> done);

  // Closes every connection now, unanswered requests included. Shutdown's done (if pending)
  // still runs once everything is closed.
  void CloseAll();

  const HttpStats& stats() const { return stats_; }
  const HttpServerOptions& options() const { return options_; }

 private:
  friend class internal::Connection;

  static void OnConnection(uv_stream_t* listener, int status);
  void CloseListener();
  void OnListenerClosed();
  void OnConnectionClosed(internal::Connection* connection);
  void MaybeFinishShutdown();
  std::string NextRequestId();

  uv_loop_t* loop_;
  HttpServerOptions options_;
  uv_thread_t loop_thread_;
  std::shared_ptr<TlsContext> tls_;
  // Owned by the server until handed to uv_close; the close callback frees it.
  uv_tcp_t* listener_ = nullptr;
  bool listener_closing_ = false;
  uint16_t port_ = 0;
  HttpStats stats_;
  std::list<internal::Connection*> connections_;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  uint32_t id_prefix_ = 0;
  uint64_t requests_numbered_ = 0;
  // One read buffer for every connection: reads are handled to completion in the callback, and
  // anything kept is copied out, so a single buffer per loop suffices.
  std::vector<char> read_buffer_;
};

}  // namespace cloister::api
