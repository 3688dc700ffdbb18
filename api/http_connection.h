// Internal to //api:http_server: one accepted connection. Not for use outside api/.
//
// A Connection owns its uv_tcp_t and uv_timer_t and deletes itself in the last of their close
// callbacks. The server keeps a list of live connections; if the server goes away first it
// detaches them (server_ becomes null) and closes them.
//
// Request flow on one connection:
//   bytes -> (TLS) -> llhttp -> Request -> Handler  ... writer.Send -> exchanges_ (in order)
//   -> serialised response -> (TLS) -> uv_write
// llhttp is paused after every request head and every complete request, so the connection
// knows the exact size of each head, can ask the handler what to do with the body
// (Handler::StreamBody) before reading it, can stop parsing when pipeline_requests_max requests
// wait, and can send "100 Continue" only when earlier responses are out.
//
// Streamed bodies. A request body given to a BodySink is written to it from OnBody as llhttp
// decodes it: nothing of it is kept, and input_ holds at most one read. A response body from a
// BodySource is read in kBodyChunkBytes chunks while the write backlog is under
// kBodyBacklogBytesMax, and again from each write completion (Flush -> PumpBody); meanwhile
// nothing else is written on the connection (no later response, no "100 Continue").
#pragma once

#include <llhttp.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "api/http_server.h"
#include "api/http_types.h"
#include "api/peer_certificate.h"
#include "api/tls.h"

namespace cloister::api::internal {

// One request in the connection's pipeline, from parse to response written. The connection
// holds the only strong reference; a ResponseWriter holds a weak one, so a writer outliving its
// connection finds it expired.
struct Exchange {
  Connection* connection = nullptr;  // Valid while the exchange is alive.
  std::string method = "-";          // For the access log.
  std::string path = "-";
  std::string request_id;
  uint64_t start_ns = 0;             // uv_hrtime() at the request's first byte.
  bool head_request = false;         // HEAD: no body in the response.
  int version_minor = 1;
  bool close_after = false;          // Last response on the connection.
  std::optional<Response> response;  // Set by Send (or at creation for a rejection).
};

class Connection {
 public:
  // Accepts one pending connection from the server's listener. On failure nothing is leaked:
  // the handle is closed and the object deletes itself.
  static void Accept(HttpServer* server, uv_stream_t* listener);

  // Graceful stop (HttpServer::Shutdown).
  void BeginShutdown();
  // Closes now; unanswered requests are dropped. Idempotent.
  void Close();
  // The server is going away: never touch it again.
  void Detach() { server_ = nullptr; }

  // From ResponseWriter::Send.
  void OnResponse(Exchange* exchange, Response response);
  bool closing() const { return closing_; }

  std::list<Connection*>::iterator list_position;  // In HttpServer::connections_.

 private:
  enum class ParseState { kHead, kBody };
  enum class PauseEvent { kNone, kHeadersComplete, kMessageComplete, kBodyRefused };
  enum class DeadlineKind { kNone, kHandshake, kFirstRequest, kHead, kBody, kIdle, kSend, kLinger };
  struct Deadline {
    DeadlineKind kind = DeadlineKind::kNone;
    uint64_t at_ms = 0;
  };
  struct WriteRequest;

  explicit Connection(HttpServer* server);
  ~Connection();  // In the .cc: WriteRequest is complete there.

  void Start(bool reject);
  uint64_t NowMs() const;
  const HttpLimits& limits() const;

  // Reading.
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  void HandleBytes(const char* data, size_t size);
  void HandleTlsBytes(const char* data, size_t size);
  void OnHandshakeDone();
  void HandleEof();
  void UpdateReading();
  bool WantsInput() const;

  // Parsing.
  void InitParser();
  void DriveParser();
  bool CanParse() const;
  void HandlePause();
  void HandleParseError(llhttp_errno_t error);
  void SendContinue();
  // At the end of a head: fills in what the handler may need to authenticate, and lets it
  // stream or refuse the body (Handler::StreamBody).
  void StartBody();
  void DispatchRequest();
  void FinishHead();
  Response CheckedResponse(Response response) const;
  static int OnMessageBegin(llhttp_t* parser);
  static int OnUrl(llhttp_t* parser, const char* at, size_t length);
  static int OnHeaderField(llhttp_t* parser, const char* at, size_t length);
  static int OnHeaderValue(llhttp_t* parser, const char* at, size_t length);
  static int OnHeaderValueComplete(llhttp_t* parser);
  static int OnHeadersComplete(llhttp_t* parser);
  static int OnBody(llhttp_t* parser, const char* at, size_t length);
  static int OnMessageComplete(llhttp_t* parser);
  int FailParse(int status, const char* message);
  bool CountHeadBytes(size_t length);
  // Scans head bytes for a line starting with whitespace (obs-fold), across reads.
  bool HasObsFold(const char* data, size_t size);

  // Answering and writing.
  // A limit breach: counted, answered with the envelope as the connection's last response.
  void Reject(int status, std::string message);
  // Queues response as the connection's last, for the request being received (or none), and
  // discards further input.
  void AnswerLast(Response response);
  // A new exchange with id as its request id (a fresh one if empty).
  std::shared_ptr<Exchange> NewExchange(std::string id = "");
  void Flush();
  // Writes the head and (unless it streams from a BodySource) the body.
  void WriteResponse(Exchange& exchange, bool close);
  // PumpBody for a source of unknown length: chunked framing; stops when the source is pending.
  void PumpChunkedBody(const std::shared_ptr<BodySource>& source);
  // Writes body_source_ chunks while the backlog allows; releases the source when done.
  void PumpBody();
  // Plain TCP with nothing queued and a file source: sendfile(2) as much as the socket takes.
  // Returns the bytes sent (0: the socket is full or the source names no file), or -1 after
  // closing the connection on an error.
  int64_t SendFileBody(BodySource* source);
  // After sendfile found the socket full: waits for it to take more (writable_), then Flush.
  // False if no watcher could be made (the caller falls back to a queued chunk).
  bool AwaitWritable();
  static void OnWritable(uv_poll_t* poll, int status, int events);
  // Encrypts if TLS; record (if any) is the access-log record of the response it ends. queue:
  // always through uv_write, so that a completion callback follows (see Write).
  void SendPlain(std::string plaintext, std::unique_ptr<WriteRequest> record,
                 bool queue = false);
  void FlushTls();
  // Writes now if nothing is queued and the socket takes it all (unless queue), else queues.
  void Write(std::string bytes, std::unique_ptr<WriteRequest> record, bool queue = false);
  static void OnWrite(uv_write_t* request, int status);
  void LogResponse(const WriteRequest& write);
  void FinishAndClose();
  static void OnShutdown(uv_shutdown_t* request, int status);
  void Settle();

  // Timers.
  Deadline CurrentDeadline() const;
  void ArmTimer();
  static void OnTimer(uv_timer_t* timer);
  static void OnClosed(uv_handle_t* handle);

  HttpServer* server_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  // Writability of the socket while a file body goes by sendfile, which bypasses uv_write and
  // so its completions. libuv lets one handle watch a descriptor, so this polls a dup(2) of the
  // socket (writable_fd_, closed once writable_ is); made on first use.
  uv_poll_t writable_;
  int writable_fd_ = -1;
  bool awaiting_writable_ = false;
  int handles_open_ = 0;
  uv_shutdown_t shutdown_request_;
  std::string peer_ = "unknown";
  std::unique_ptr<TlsStream> tls_;
  // What the client presented in the handshake; given to every request (Request::client_cert).
  std::shared_ptr<const PeerCertificate> client_cert_;

  // Connection state.
  bool closing_ = false;         // uv_close called: nothing more happens.
  bool finishing_ = false;       // Last response queued; FIN sent (or about to be).
  bool lingering_ = false;       // FIN sent: reading and discarding until EOF or the deadline.
  bool reading_ = false;
  bool input_open_ = true;       // Requests are still parsed.
  bool discarding_ = false;      // After an error: input is read and thrown away.
  bool eof_seen_ = false;
  bool reject_when_ready_ = false;    // Over connections_max: answer 503 after any handshake.
  bool close_when_drained_ = false;   // Close once every queued response is written.
  uint64_t discarded_bytes_ = 0;
  uint64_t requests_seen_ = 0;

  // Times (uv_now, ms).
  uint64_t ready_ms_ = 0;        // Accepted, or TLS handshake done.
  uint64_t head_start_ms_ = 0;
  // End of the head (or the "100 Continue"); for a body going to a sink, its last byte.
  uint64_t body_start_ms_ = 0;
  uint64_t idle_since_ms_ = 0;
  uint64_t write_progress_ms_ = 0;
  uint64_t linger_until_ms_ = 0;
  uint64_t timer_due_ms_ = 0;    // When timer_ fires, if it is active (see ArmTimer).
  uint64_t head_start_ns_ = 0;   // uv_hrtime, for the access log.

  // Parser.
  llhttp_t parser_;
  llhttp_settings_t settings_;
  bool parser_paused_ = false;
  PauseEvent pause_event_ = PauseEvent::kNone;
  ParseState parse_state_ = ParseState::kHead;
  bool in_drive_ = false;
  std::string input_;            // Received plaintext not yet parsed...
  size_t input_offset_ = 0;      // ...from this offset.
  uint64_t head_bytes_ = 0;      // Wire bytes of the current head so far.
  uint64_t head_text_bytes_ = 0; // URL + field + value bytes (a lower bound, checked early).
  uint32_t header_count_ = 0;
  char head_last_byte_ = 0;      // Last head byte scanned by HasObsFold.
  bool in_header_value_ = false;
  bool expect_continue_wait_ = false;
  bool keep_alive_ = true;
  bool body_announced_ = false;  // Chunked, or Content-Length > 0.
  uint64_t body_declared_ = 0;   // Content-Length, 0 when absent.
  int reject_status_ = 0;        // Set by a callback that returned HPE_USER.
  std::string reject_message_;
  Request current_;              // current_.body_sink: the body is streamed to it.
  std::string field_;            // Header name being received.
  std::string value_;            // Header value being received.

  // Responses.
  std::deque<std::shared_ptr<Exchange>> exchanges_;
  int writes_pending_ = 0;
  uint64_t write_bytes_pending_ = 0;
  // The response body being streamed; set from its head until its last byte is queued (or the
  // connection closes). Flush writes nothing else meanwhile.
  std::shared_ptr<BodySource> body_source_;
  uint64_t body_left_ = 0;                     // Bytes still to read from it.
  bool body_last_ = false;                     // Its response is the connection's last.
  bool pumping_ = false;                       // In PumpBody.
  bool body_chunked_ = false;                  // body_source_ is of unknown length.
  std::unique_ptr<WriteRequest> body_record_;  // Access-log record, sent with the last chunk.
};

}  // namespace cloister::api::internal
