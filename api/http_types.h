// The values that cross the HttpServer <-> Handler boundary: Request, Response, the access-log
// entry and the server's counters. Plain data; no sockets, no libuv.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cloister::api {

class PeerCertificate;  // api/peer_certificate.h (//api:peer_certificate).

struct Header {
  std::string name;
  std::string value;
};

// Header fields in the order received. Names compare ASCII case-insensitively (RFC 9110 5.1).
class Headers {
 public:
  void Add(std::string name, std::string value);

  // The value of the first field named name, or nullptr.
  const std::string* Find(std::string_view name) const;
  // How many fields are named name (a request smuggler repeats fields; callers that need exactly
  // one can check).
  size_t Count(std::string_view name) const;

  const std::vector<Header>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<Header> entries_;
};

// ASCII case-insensitive equality, for header names and tokens.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// A request body consumed as it arrives instead of being buffered (Handler::StreamBody), so an
// upload of any size costs bounded memory. Loop thread only.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // The next decoded body bytes (chunked framing removed), in order. Returning false refuses
  // the rest: the server stops reading the body, calls Handler::Handle at once with the request
  // (its body_sink is this sink, which knows why), sends that response as the connection's last
  // and discards what the client still sends, as after any rejection.
  virtual bool Write(std::string_view bytes) = 0;
};

// A response body produced on demand (a file, a range of one), read as the client drains the
// connection: bounded memory for any size, and a slow reader slows the reads. Loop thread only.
//
// A source may also be of unknown length (size() == kSizeUnknown: a log file followed as it
// grows). Its response is sent with Transfer-Encoding: chunked (HTTP/1.1 requests only; a
// handler must not give one to an HTTP/1.0 request, which gets a 500 instead). Its Read returns
// 0 at the end of the body, or kPending when it has nothing yet: the server then stops reading
// it until the source calls the function SetWake gave it (on the loop thread, while the
// connection still holds the source), and the connection has no idle deadline meanwhile: the
// source bounds its own waiting. The client closing its side ends such a response at once.
class BodySource {
 public:
  static constexpr uint64_t kSizeUnknown = UINT64_MAX;
  static constexpr int64_t kPending = -2;

  virtual ~BodySource() = default;
  // The body's length in bytes: the Content-Length sent.
  virtual uint64_t size() const = 0;
  // Copies the next at most max bytes to buffer and returns how many (more than 0 until size()
  // bytes were read), or -1 on an error. After an error the connection is closed: the response
  // is already framed by its Content-Length and cannot be completed.
  virtual int64_t Read(char* buffer, size_t max) = 0;
  // A source that is a range of a file may name it: its descriptor, with *offset set to the
  // file offset of the next byte; -1 (the default) for none. A plain-TCP connection then sends
  // the bytes with sendfile(2), from the page cache to the socket without copying them through
  // the process, and calls Advance with how many went; Read is used only when the socket is
  // full (one small chunk, whose completion says when to carry on) or over TLS.
  virtual int File(uint64_t* offset) const {
    (void)offset;
    return -1;
  }
  virtual void Advance(uint64_t bytes) { (void)bytes; }
  // For a source of unknown length: how to tell the server that Read has more (see above).
  virtual void SetWake(std::function<void()> wake) { (void)wake; }
};

// One complete request, with its body read in full (bounded by HttpLimits::body_bytes_max), or
// streamed to the handler's BodySink (body_sink set, body empty).
struct Request {
  std::string method;       // "GET", as sent (llhttp accepts only known methods).
  std::string target;       // Request target as sent: "/api/v1/vm?id=1".
  std::string path;         // target up to '?': "/api/v1/vm". Not percent-decoded.
  std::string query;        // target after '?', without it: "id=1". Empty if none.
  int version_minor = 1;    // HTTP/1.<version_minor>: 0 or 1.
  Headers headers;
  std::string body;
  std::string peer;         // "127.0.0.1:51234" or "[::1]:51234".
  bool tls = false;         // Arrived over TLS.
  std::string id;           // Unique in this process: "<server instance>-<counter>" in hex.
  // The certificate the client presented in the TLS handshake (TlsSettings::request_client_cert),
  // shared by every request of the connection; nullptr when none. Not verified: see
  // cloisterd::CertificateAuthority::Check.
  std::shared_ptr<const PeerCertificate> client_cert = nullptr;
  // Set when Handler::StreamBody took the body: it went to this sink and body is empty.
  std::shared_ptr<BodySink> body_sink = nullptr;
};

// What a handler answers. The server adds Content-Length (except for 204 and 304, where HTTP
// forbids it) and Connection (when it closes, or for an HTTP/1.0 keep-alive). A response with
// invalid header bytes, with Content-Length, Transfer-Encoding or Connection among its headers,
// with a status outside 200..599, or with a body_source as well as a body or with a status
// that has no body (204, 304) is replaced by a 500: a handler bug must not become broken
// framing or response splitting.
struct Response {
  int status = 200;
  std::string content_type;  // Sent as Content-Type unless empty.
  Headers headers;           // Extra fields; names and values must not contain CR, LF or NUL.
  std::string body;          // Not sent for HEAD requests, 1xx, 204 and 304.
  // When set, the body comes from here instead (body must then be empty); Content-Length is
  // body_source->size(). Not read for HEAD requests. The server releases it once the last byte
  // is queued, or when the connection closes; the access log counts its bytes, and is called
  // once the last one is written.
  std::shared_ptr<BodySource> body_source = nullptr;
};

// The Anka error envelope: {"status":"FAIL","message":"<message>"}, application/json.
Response FailResponse(int status, std::string_view message);

// JSON string contents for message (quotes and control characters escaped).
std::string JsonEscape(std::string_view text);

// "Not Found" for 404; "Unknown" for codes the table does not name.
const char* ReasonPhrase(int status);

// One line of access log, given to HttpServerOptions::access_log after a response is written.
// Deliberately carries neither header values nor bodies nor the query string, any of which can
// hold a secret (tokens, keys, signatures).
struct AccessLogEntry {
  std::string_view server;      // HttpServerOptions::name, e.g. "controller".
  std::string_view method;      // "-" when the request line was unreadable.
  std::string_view path;        // Without the query string; "-" when unknown.
  int status = 0;
  uint64_t response_bytes = 0;  // Status line, headers and body as written.
  uint64_t duration_us = 0;     // From the request's first byte to the response written.
  std::string_view peer;
  std::string_view request_id;  // Empty for a response to an unparsable request.
};

// Counters, read on the loop thread. Totals only grow.
struct HttpStats {
  uint64_t connections_open = 0;
  uint64_t connections_accepted_total = 0;
  uint64_t connections_rejected_total = 0;      // Over connections_max (503 or closed).
  uint64_t connections_idle_closed_total = 0;   // Idle timeout or an unwanted silent client.
  // Complete requests given to the handler, and requests it refused on their head
  // (Handler::StreamBody's reject).
  uint64_t requests_total = 0;
  uint64_t responses_total = 0;                 // Responses written.
  std::array<uint64_t, 6> responses_by_class{}; // Index status / 100: [2] counts 2xx.
  uint64_t rejected_malformed_total = 0;        // 400 from the parser.
  uint64_t rejected_timeout_total = 0;          // 408.
  uint64_t rejected_body_too_large_total = 0;   // 413.
  uint64_t rejected_header_too_large_total = 0; // 431.
  uint64_t send_timeouts_total = 0;             // Closed because the client did not read.
  uint64_t tls_handshakes_total = 0;            // Completed handshakes.
  uint64_t tls_handshake_failures_total = 0;    // Failed or timed-out handshakes.
};

}  // namespace cloister::api
