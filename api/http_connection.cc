#include "api/http_connection.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <utility>

#include "api/limits.h"
#include "api/listen_address.h"

namespace cloister::api::internal {
namespace {

Connection* FromParser(llhttp_t* parser) { return static_cast<Connection*>(parser->data); }

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool ValidFieldName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), IsTokenChar);
}

bool ValidFieldValue(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// Fields the server itself manages; a handler setting them could desynchronise the framing.
bool ReservedField(std::string_view name) {
  return EqualsIgnoreCase(name, "Content-Length") || EqualsIgnoreCase(name, "Transfer-Encoding") ||
         EqualsIgnoreCase(name, "Connection") || EqualsIgnoreCase(name, "Date");
}

bool StatusHasNoBody(int status) { return status < 200 || status == 204 || status == 304; }

// "Date: Tue, 24 Nov 2026 17:40:37 GMT\r\n" (RFC 9110 IMF-fixdate), formatted once a second per
// thread: every response carries it, as an origin server with a clock must send.
const std::string& DateField() {
  thread_local time_t formatted_for = -1;
  thread_local std::string field;
  const time_t now = time(nullptr);
  if (now != formatted_for) {
    tm utc{};
    gmtime_r(&now, &utc);
    char text[64];
    const size_t n = strftime(text, sizeof(text), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &utc);
    field.assign(text, n);
    formatted_for = now;
  }
  return field;
}

std::string Serialize(const Response& response, bool head_request, int version_minor,
                      bool close) {
  // Appends only: no temporaries (this runs once per response).
  std::string out;
  out.reserve(128 + response.content_type.size() + response.body.size());
  out.append("HTTP/1.1 ");
  out.append(std::to_string(response.status));
  out.push_back(' ');
  out.append(ReasonPhrase(response.status));
  out.append("\r\n");
  out.append(DateField());
  if (!response.content_type.empty()) {
    out.append("Content-Type: ").append(response.content_type).append("\r\n");
  }
  for (const Header& header : response.headers.entries()) {
    out.append(header.name).append(": ").append(header.value).append("\r\n");
  }
  bool no_body = StatusHasNoBody(response.status);
  if (!no_body) {
    const uint64_t length = response.body_source != nullptr ? response.body_source->size()
                                                            : response.body.size();
    if (length == BodySource::kSizeUnknown) {
      out.append("Transfer-Encoding: chunked\r\n");
    } else {
      out.append("Content-Length: ").append(std::to_string(length)).append("\r\n");
    }
  }
  if (close) {
    out.append("Connection: close\r\n");
  } else if (version_minor == 0) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
  if (!head_request && !no_body) {
    out.append(response.body);  // Empty when the body comes from a BodySource.
  }
  return out;
}

}  // namespace

// One uv_write in flight; freed in OnWrite (which libuv calls even when the write is cancelled
// by uv_close, before the close callback).
struct Connection::WriteRequest {
  uv_write_t request;
  Connection* connection = nullptr;
  std::string bytes;
  // Set when this write ends a response: what the access log needs.
  bool ends_response = false;
  std::string method;
  std::string path;
  std::string request_id;
  int status = 0;
  uint64_t response_bytes = 0;
  uint64_t start_ns = 0;
};

Connection::Connection(HttpServer* server) : server_(server) {}

Connection::~Connection() = default;

uint64_t Connection::NowMs() const { return uv_now(tcp_.loop); }

const HttpLimits& Connection::limits() const {
  CL_ASSERT(server_ != nullptr);
  return server_->options_.limits;
}

// ---- Accepting and closing. ----

void Connection::Accept(HttpServer* server, uv_stream_t* listener) {
  auto* connection = new Connection(server);
  // Both only fill in structs on Linux; failure would be a libuv bug.
  const int tcp_rc = uv_tcp_init(server->loop_, &connection->tcp_);
  const int timer_rc = uv_timer_init(server->loop_, &connection->timer_);
  CL_ASSERT(tcp_rc == 0 && timer_rc == 0);
  connection->handles_open_ = 2;
  connection->tcp_.data = connection;
  connection->timer_.data = connection;
  connection->shutdown_request_.data = connection;
  server->connections_.push_front(connection);
  connection->list_position = server->connections_.begin();
  server->stats_.connections_open = server->connections_.size();
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&connection->tcp_)) != 0) {
    connection->Close();
    return;
  }
  server->stats_.connections_accepted_total++;
  const uint64_t open = server->connections_.size();
  const uint64_t open_max = server->options_.limits.connections_max;
  if (open > open_max + kRejectingConnectionsMax) {
    // Far over the limit: even a 503 would cost more than the system can spare.
    server->stats_.connections_rejected_total++;
    connection->Close();
    return;
  }
  connection->Start(open > open_max);
}

void Connection::Start(bool reject) {
  sockaddr_storage peer;
  int peer_size = sizeof(peer);
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &peer_size) == 0) {
    peer_ = FormatSocketAddress(reinterpret_cast<const sockaddr*>(&peer));
  }
  uv_tcp_nodelay(&tcp_, 1);
  ready_ms_ = NowMs();
  InitParser();
  if (server_->tls_ != nullptr) {
    tls_ = std::make_unique<TlsStream>(*server_->tls_);
  }
  if (reject) {
    server_->stats_.connections_rejected_total++;
    reject_when_ready_ = true;
    if (tls_ == nullptr) {
      Reject(503, "too many connections; try again later");
    }
  }
  Settle();
}

void Connection::Close() {
  if (closing_) {
    return;
  }
  closing_ = true;
  reading_ = false;
  // Writers of unanswered requests now find their exchange expired.
  exchanges_.clear();
  // A body being streamed either way is abandoned: its source or sink is released now.
  body_source_.reset();
  body_chunked_ = false;
  body_record_.reset();
  current_.body_sink.reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Connection::OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &Connection::OnClosed);
  if (writable_fd_ >= 0) {
    awaiting_writable_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&writable_), &Connection::OnClosed);
  }
}

void Connection::OnClosed(uv_handle_t* handle) {
  auto* connection = static_cast<Connection*>(handle->data);
  CL_ASSERT(connection->handles_open_ > 0);
  if (handle == reinterpret_cast<uv_handle_t*>(&connection->writable_)) {
    ::close(connection->writable_fd_);  // Only now: libuv no longer watches it.
    connection->writable_fd_ = -1;
  }
  if (--connection->handles_open_ > 0) {
    return;
  }
  if (connection->server_ != nullptr) {
    connection->server_->OnConnectionClosed(connection);
  }
  delete connection;
}

void Connection::BeginShutdown() {
  if (closing_ || finishing_) {
    return;
  }
  if (tls_ != nullptr && !tls_->handshake_done()) {
    Close();
    return;
  }
  // A request still arriving is dropped (its sink, if any, released); requests already
  // received are answered.
  if (body_chunked_) {
    Close();  // A response of unknown length (a followed log) is for this client only.
    return;
  }
  input_open_ = false;
  expect_continue_wait_ = false;
  current_.body_sink.reset();
  if (exchanges_.empty() && writes_pending_ == 0 && body_source_ == nullptr) {
    Close();
    return;
  }
  close_when_drained_ = true;
  Flush();
  Settle();
}

// Called at the end of every entry point (read, write, timer, response): resumes parsing if it
// can, then brings reading and the timer in line with the new state.
void Connection::Settle() {
  if (closing_) {
    return;
  }
  DriveParser();
  if (closing_) {
    return;
  }
  UpdateReading();
  ArmTimer();
}

// ---- Reading. ----

void Connection::OnAlloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  auto* connection = static_cast<Connection*>(handle->data);
  CL_ASSERT(connection->server_ != nullptr);
  std::vector<char>& buffer = connection->server_->read_buffer_;
  *buf = uv_buf_init(buffer.data(), static_cast<unsigned>(buffer.size()));
}

void Connection::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* connection = static_cast<Connection*>(stream->data);
  if (connection->closing_ || nread == 0) {
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF) {
      connection->HandleEof();
    } else {
      connection->Close();
    }
    return;
  }
  const size_t size = static_cast<size_t>(nread);
  if (connection->lingering_ || connection->discarding_) {
    connection->discarded_bytes_ += size;
  } else if (connection->tls_ != nullptr) {
    connection->HandleTlsBytes(buf->base, size);
  } else {
    connection->HandleBytes(buf->base, size);
  }
  connection->Settle();
}

void Connection::HandleBytes(const char* data, size_t size) {
  if (!input_open_) {
    return;  // After "Connection: close" or during shutdown, further requests are ignored.
  }
  input_.append(data, size);
  DriveParser();
}

void Connection::HandleTlsBytes(const char* data, size_t size) {
  tls_->Feed(data, size);
  if (!tls_->handshake_done()) {
    TlsStream::Outcome outcome = tls_->Handshake();
    FlushTls();
    if (outcome == TlsStream::Outcome::kFailed) {
      // The alert OpenSSL queued goes out before the FIN, so the client learns why.
      server_->stats_.tls_handshake_failures_total++;
      input_open_ = false;
      discarding_ = true;
      FinishAndClose();
      return;
    }
    if (!tls_->handshake_done()) {
      return;
    }
    OnHandshakeDone();
  }
  std::string plaintext;
  TlsStream::Outcome outcome = tls_->Read(&plaintext);
  FlushTls();  // Alerts, key updates.
  if (!plaintext.empty()) {
    HandleBytes(plaintext.data(), plaintext.size());
  }
  if (closing_) {
    return;
  }
  if (outcome == TlsStream::Outcome::kClosed) {
    HandleEof();
  } else if (outcome == TlsStream::Outcome::kFailed) {
    Close();
  }
}

void Connection::OnHandshakeDone() {
  server_->stats_.tls_handshakes_total++;
  ready_ms_ = NowMs();
  // Once per connection: every request parsed on it shares what the client presented.
  client_cert_ = tls_->CapturePeerCertificate();
  if (reject_when_ready_) {
    Reject(503, "too many connections; try again later");
  }
}

void Connection::HandleEof() {
  eof_seen_ = true;
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    reading_ = false;
  }
  if (lingering_) {
    Close();
    return;
  }
  // The client may have only half-closed: answer what it sent, then close. A request still
  // incomplete is dropped (its sink, if any, released).
  input_open_ = false;
  expect_continue_wait_ = false;
  current_.body_sink.reset();
  if (!finishing_ && exchanges_.empty() && writes_pending_ == 0 && body_source_ == nullptr) {
    Close();
    return;
  }
  close_when_drained_ = true;
  Flush();
  Settle();
}

bool Connection::WantsInput() const {
  if (lingering_) {
    return true;
  }
  if (discarding_) {
    return discarded_bytes_ < kDiscardBytesMax;
  }
  if (finishing_) {
    return false;
  }
  if (tls_ != nullptr && !tls_->handshake_done()) {
    return true;
  }
  return CanParse();
}

void Connection::UpdateReading() {
  const bool want = !closing_ && !eof_seen_ && WantsInput();
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (want && !reading_) {
    if (uv_read_start(stream, &Connection::OnAlloc, &Connection::OnRead) != 0) {
      Close();
      return;
    }
    reading_ = true;
  } else if (!want && reading_) {
    uv_read_stop(stream);
    reading_ = false;
  }
}

// ---- Parsing. ----

void Connection::InitParser() {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &Connection::OnMessageBegin;
  settings_.on_url = &Connection::OnUrl;
  settings_.on_header_field = &Connection::OnHeaderField;
  settings_.on_header_value = &Connection::OnHeaderValue;
  settings_.on_header_value_complete = &Connection::OnHeaderValueComplete;
  settings_.on_headers_complete = &Connection::OnHeadersComplete;
  settings_.on_body = &Connection::OnBody;
  settings_.on_message_complete = &Connection::OnMessageComplete;
  // Strict parsing: none of llhttp's lenient-mode setters is ever called (request smuggling).
  llhttp_init(&parser_, HTTP_REQUEST, &settings_);
  parser_.data = this;
}

bool Connection::CanParse() const {
  if (closing_ || finishing_ || !input_open_ || server_ == nullptr) {
    return false;
  }
  if (expect_continue_wait_ && (!exchanges_.empty() || body_source_ != nullptr)) {
    return false;  // "100 Continue" must follow the responses before it, bodies included.
  }
  return exchanges_.size() < limits().pipeline_requests_max &&
         write_bytes_pending_ < kWriteBacklogBytesMax;
}

void Connection::DriveParser() {
  if (in_drive_) {
    return;  // A handler answered synchronously; the outer loop carries on.
  }
  in_drive_ = true;
  while (CanParse()) {
    if (expect_continue_wait_) {
      SendContinue();
    }
    const size_t size = input_.size() - input_offset_;
    if (size == 0 && !parser_paused_) {
      break;
    }
    if (parser_paused_) {
      llhttp_resume(&parser_);
      parser_paused_ = false;
    }
    const bool in_head = parse_state_ == ParseState::kHead;
    if (in_head && size > 0 && head_bytes_ == 0) {
      head_start_ms_ = NowMs();
      head_start_ns_ = uv_hrtime();
    }
    const char* data = input_.data() + input_offset_;
    pause_event_ = PauseEvent::kNone;
    const llhttp_errno_t error = llhttp_execute(&parser_, data, size);
    const size_t consumed =
        error == HPE_OK ? size : static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
    CL_ASSERT(consumed <= size);
    input_offset_ += consumed;
    head_bytes_ += in_head ? consumed : 0;
    if (in_head && HasObsFold(data, consumed)) {
      // llhttp joins a folded line to the field value. RFC 9112 allows that, but a proxy in
      // front may read the fold differently, which is a smuggling vector: refuse it.
      Reject(400, "malformed HTTP request: obsolete line folding");
      break;
    }
    if (error == HPE_OK) {
      if (parse_state_ == ParseState::kHead && head_bytes_ > limits().header_bytes_max) {
        Reject(431, "request header fields too large");
      }
      break;
    }
    if (error == HPE_PAUSED) {
      parser_paused_ = true;
      HandlePause();
      continue;
    }
    if (error == HPE_PAUSED_UPGRADE) {
      // No protocol upgrades: answer the request, then close.
      input_open_ = false;
      close_when_drained_ = true;
      Flush();
      break;
    }
    HandleParseError(error);
    break;
  }
  if (input_offset_ == input_.size()) {
    input_.clear();
  } else {
    input_.erase(0, input_offset_);
  }
  input_offset_ = 0;
  in_drive_ = false;
}

void Connection::HandlePause() {
  switch (pause_event_) {
    case PauseEvent::kHeadersComplete:
      // head_bytes_ now counts the exact head, CRLFs included.
      if (head_bytes_ > limits().header_bytes_max) {
        Reject(431, "request header fields too large");
        return;
      }
      StartBody();
      return;
    case PauseEvent::kMessageComplete:
      DispatchRequest();
      return;
    case PauseEvent::kBodyRefused:
      // The sink wants no more: the request goes to the handler now, its answer is the last,
      // and the rest of the body is read and thrown away as after a rejection.
      keep_alive_ = false;
      discarding_ = true;
      expect_continue_wait_ = false;
      DispatchRequest();
      return;
    case PauseEvent::kNone:
      break;
  }
  CL_ASSERT(false && "llhttp paused without a callback asking for it");
}

void Connection::HandleParseError(llhttp_errno_t error) {
  if (reject_status_ != 0) {
    Reject(reject_status_, reject_message_);
    return;
  }
  const char* reason = llhttp_get_error_reason(&parser_);
  Reject(400, std::string("malformed HTTP request: ") +
                  (reason != nullptr ? reason : llhttp_errno_name(error)));
}

void Connection::SendContinue() {
  CL_ASSERT(expect_continue_wait_ && exchanges_.empty());
  expect_continue_wait_ = false;
  body_start_ms_ = NowMs();
  SendPlain("HTTP/1.1 100 Continue\r\n\r\n", nullptr);
}

int Connection::FailParse(int status, const char* message) {
  reject_status_ = status;
  reject_message_ = message;
  return HPE_USER;
}

bool Connection::HasObsFold(const char* data, size_t size) {
  bool found = false;
  for (size_t i = 0; i < size && !found; i++) {
    found = head_last_byte_ == '\n' && (data[i] == ' ' || data[i] == '\t');
    head_last_byte_ = data[i];
  }
  return found;
}

bool Connection::CountHeadBytes(size_t length) {
  head_text_bytes_ += length;
  return head_text_bytes_ <= limits().header_bytes_max;
}

int Connection::OnMessageBegin(llhttp_t* parser) {
  Connection* c = FromParser(parser);
  c->current_ = Request();
  c->field_.clear();
  c->value_.clear();
  c->header_count_ = 0;
  c->head_text_bytes_ = 0;
  c->keep_alive_ = true;
  return 0;
}

int Connection::OnUrl(llhttp_t* parser, const char* at, size_t length) {
  Connection* c = FromParser(parser);
  if (!c->CountHeadBytes(length)) {
    return c->FailParse(414, "request target too long");
  }
  c->current_.target.append(at, length);
  return 0;
}

int Connection::OnHeaderField(llhttp_t* parser, const char* at, size_t length) {
  Connection* c = FromParser(parser);
  if (!c->CountHeadBytes(length)) {
    return c->FailParse(431, "request header fields too large");
  }
  c->field_.append(at, length);
  return 0;
}

int Connection::OnHeaderValue(llhttp_t* parser, const char* at, size_t length) {
  Connection* c = FromParser(parser);
  if (!c->CountHeadBytes(length)) {
    return c->FailParse(431, "request header fields too large");
  }
  c->value_.append(at, length);
  return 0;
}

int Connection::OnHeaderValueComplete(llhttp_t* parser) {
  Connection* c = FromParser(parser);
  if (++c->header_count_ > c->limits().header_count_max) {
    return c->FailParse(431, "too many request header fields");
  }
  // llhttp drops leading whitespace but keeps trailing whitespace, which is not part of the
  // value (RFC 9110 5.5).
  while (!c->value_.empty() && (c->value_.back() == ' ' || c->value_.back() == '\t')) {
    c->value_.pop_back();
  }
  c->current_.headers.Add(std::move(c->field_), std::move(c->value_));
  c->field_.clear();
  c->value_.clear();
  return 0;
}

void Connection::FinishHead() {
  current_.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  current_.version_minor = parser_.http_minor;
  const size_t question = current_.target.find('?');
  current_.path = current_.target.substr(0, question);
  current_.query = question == std::string::npos ? "" : current_.target.substr(question + 1);
  // llhttp sets upgrade (Upgrade + Connection: upgrade, or CONNECT) before this callback.
  // cloister switches no protocols: answer, then close, and never parse what follows.
  keep_alive_ = llhttp_should_keep_alive(&parser_) != 0 && parser_.upgrade == 0;
}

int Connection::OnHeadersComplete(llhttp_t* parser) {
  Connection* c = FromParser(parser);
  c->FinishHead();
  if (parser->http_major != 1) {
    return c->FailParse(400, "unsupported HTTP version");
  }
  const bool chunked = (parser->flags & F_CHUNKED) != 0;
  const bool has_length = (parser->flags & F_CONTENT_LENGTH) != 0;
  // The declared length is checked against body_bytes_max in StartBody, once the handler said
  // whether it streams the body instead.
  c->body_declared_ = has_length ? parser->content_length : 0;
  c->body_announced_ = chunked || c->body_declared_ > 0;
  const std::string* expect = c->current_.headers.Find("Expect");
  if (expect != nullptr && parser->http_minor == 1) {
    if (!EqualsIgnoreCase(*expect, "100-continue")) {
      return c->FailParse(417, "unsupported Expect header");
    }
    c->expect_continue_wait_ = chunked || (has_length && parser->content_length > 0);
  }
  c->parse_state_ = ParseState::kBody;
  c->body_start_ms_ = c->NowMs();
  c->pause_event_ = PauseEvent::kHeadersComplete;
  return HPE_PAUSED;
}

int Connection::OnBody(llhttp_t* parser, const char* at, size_t length) {
  Connection* c = FromParser(parser);
  if (c->current_.body_sink != nullptr) {
    // Streamed: the deadline is the time since the last body byte, and nothing is kept.
    c->body_start_ms_ = c->NowMs();
    if (!c->current_.body_sink->Write(std::string_view(at, length))) {
      c->pause_event_ = PauseEvent::kBodyRefused;
      return HPE_PAUSED;  // Never resumed: the connection reads no further request.
    }
    return 0;
  }
  if (c->current_.body.size() + length > c->limits().body_bytes_max) {
    return c->FailParse(413, "request body larger than body_bytes_max");
  }
  c->current_.body.append(at, length);
  return 0;
}

int Connection::OnMessageComplete(llhttp_t* parser) {
  Connection* c = FromParser(parser);
  c->pause_event_ = PauseEvent::kMessageComplete;
  return HPE_PAUSED;
}

void Connection::StartBody() {
  // Set now rather than at dispatch: StreamBody may authenticate the request, and its id is the
  // one the exchange (and so the access log) gets.
  current_.peer = peer_;
  current_.tls = tls_ != nullptr;
  current_.client_cert = client_cert_;
  current_.id = server_->NextRequestId();
  if (!body_announced_) {
    return;
  }
  std::optional<Response> reject;
  std::shared_ptr<BodySink> sink = server_->options_.handler->StreamBody(current_, &reject);
  if (closing_ || finishing_ || !input_open_ || server_ == nullptr) {
    return;  // The handler closed the connection or shut the server down meanwhile.
  }
  if (reject.has_value()) {
    // The handler refused the request on its head: it is answered now, never handled.
    server_->stats_.requests_total++;
    requests_seen_++;
    AnswerLast(std::move(*reject));
    return;
  }
  if (sink != nullptr) {
    current_.body_sink = std::move(sink);
    return;
  }
  if (body_declared_ > limits().body_bytes_max) {
    Reject(413, "request body larger than body_bytes_max");
  }
}

void Connection::DispatchRequest() {
  std::shared_ptr<Exchange> exchange = NewExchange(std::move(current_.id));
  exchange->method = current_.method;
  exchange->path = current_.path;
  exchange->start_ns = head_start_ns_;
  exchange->head_request = current_.method == "HEAD";
  exchange->version_minor = current_.version_minor;
  exchange->close_after = !keep_alive_;
  exchanges_.push_back(exchange);
  server_->stats_.requests_total++;
  requests_seen_++;

  Request request = std::move(current_);
  current_ = Request();
  request.id = exchange->request_id;
  parse_state_ = ParseState::kHead;
  head_bytes_ = 0;
  head_last_byte_ = 0;
  head_text_bytes_ = 0;
  if (!keep_alive_) {
    input_open_ = false;  // "Connection: close" or HTTP/1.0: this is the last request.
  }
  server_->options_.handler->Handle(std::move(request),
                                    ResponseWriter(exchange, server_->loop_thread_));
}

// ---- Answering and writing. ----

std::shared_ptr<Exchange> Connection::NewExchange(std::string id) {
  auto exchange = std::make_shared<Exchange>();
  exchange->connection = this;
  exchange->request_id = id.empty() ? server_->NextRequestId() : std::move(id);
  return exchange;
}

void Connection::Reject(int status, std::string message) {
  HttpStats& stats = server_->stats_;
  switch (status) {
    case 408: stats.rejected_timeout_total++; break;
    case 413: stats.rejected_body_too_large_total++; break;
    case 414:
    case 431: stats.rejected_header_too_large_total++; break;
    case 503: break;  // Counted as connections_rejected_total.
    default: stats.rejected_malformed_total++; break;
  }
  AnswerLast(FailResponse(status, message));
}

void Connection::AnswerLast(Response response) {
  // At most one such answer, and it is the last response: input is closed from here on.
  CL_ASSERT(exchanges_.empty() || !exchanges_.back()->close_after);
  input_open_ = false;
  discarding_ = true;
  expect_continue_wait_ = false;
  current_.body_sink.reset();  // A streamed body that will not complete: the sink is released.
  // A request whose head was parsed already has its id (StreamBody may have seen it).
  const bool in_body = parse_state_ == ParseState::kBody;
  std::shared_ptr<Exchange> exchange = NewExchange(in_body ? current_.id : "");
  if (in_body) {
    exchange->method = current_.method;  // The head was parsed; the path carries no query.
    exchange->path = current_.path;
    exchange->head_request = current_.method == "HEAD";
    exchange->version_minor = current_.version_minor;
  }
  exchange->start_ns = head_bytes_ > 0 || parse_state_ == ParseState::kBody ? head_start_ns_
                                                                             : uv_hrtime();
  exchange->close_after = true;
  exchange->response = std::move(response);
  exchanges_.push_back(std::move(exchange));
  Flush();
}

void Connection::OnResponse(Exchange* exchange, Response response) {
  CL_ASSERT(!closing_);
  CL_ASSERT(!exchange->response.has_value());
  exchange->response = std::move(response);
  Flush();
  Settle();
}

// Writes every answered response at the head of the queue, in request order. A body streamed
// from a BodySource is written as the backlog allows; the responses after it wait, and the
// write completions call Flush again to carry on.
void Connection::Flush() {
  while (!closing_ && !finishing_) {
    if (body_source_ != nullptr) {
      PumpBody();
      if (closing_ || body_source_ != nullptr) {
        return;
      }
      if (body_last_) {
        FinishAndClose();  // The FIN follows the body's queued writes.
        return;
      }
      continue;
    }
    if (exchanges_.empty() || !exchanges_.front()->response.has_value()) {
      break;
    }
    std::shared_ptr<Exchange> exchange = std::move(exchanges_.front());
    exchanges_.pop_front();
    const bool last = exchange->close_after || (close_when_drained_ && exchanges_.empty());
    CL_ASSERT(!exchange->close_after || exchanges_.empty());
    WriteResponse(*exchange, last);
    if (body_source_ != nullptr) {
      continue;  // Its body follows; then, if last, the FIN.
    }
    if (last && !closing_) {
      FinishAndClose();
    }
  }
  if (!closing_ && !finishing_ && body_source_ == nullptr && close_when_drained_ &&
      exchanges_.empty()) {
    FinishAndClose();
  }
}

Response Connection::CheckedResponse(Response response) const {
  bool valid = response.status >= 200 && response.status <= 599 &&
               ValidFieldValue(response.content_type);
  for (const Header& header : response.headers.entries()) {
    valid = valid && ValidFieldName(header.name) && ValidFieldValue(header.value) &&
            !ReservedField(header.name);
  }
  // A body comes from one place, and never with a status that has none.
  if (response.body_source != nullptr) {
    valid = valid && response.body.empty() && !StatusHasNoBody(response.status);
  }
  if (!valid) {
    // A handler bug must not become response splitting or broken framing on the wire.
    return FailResponse(500, "the server produced an invalid response");
  }
  return response;
}

void Connection::WriteResponse(Exchange& exchange, bool close) {
  Response response = CheckedResponse(std::move(*exchange.response));
  const bool chunked = response.body_source != nullptr &&
                       response.body_source->size() == BodySource::kSizeUnknown;
  if (chunked && exchange.version_minor == 0) {
    response = FailResponse(500, "the server produced a chunked response for HTTP/1.0");
  }
  auto record = std::make_unique<WriteRequest>();
  record->ends_response = true;
  record->method = std::move(exchange.method);
  record->path = std::move(exchange.path);
  record->request_id = std::move(exchange.request_id);
  record->status = response.status;
  record->start_ns = exchange.start_ns;
  std::string bytes = Serialize(response, exchange.head_request, exchange.version_minor, close);
  record->response_bytes = bytes.size();
  const uint64_t body_size =
      response.body_source != nullptr && !exchange.head_request ? response.body_source->size() : 0;
  if (body_size == 0) {
    // Done: a HEAD response or an empty body reads nothing, and the source (if any) is released
    // with response.
    SendPlain(std::move(bytes), std::move(record));
    return;
  }
  SendPlain(std::move(bytes), nullptr);
  if (closing_) {
    return;
  }
  body_source_ = std::move(response.body_source);
  body_left_ = body_size;
  body_chunked_ = body_size == BodySource::kSizeUnknown;
  if (body_chunked_) {
    // The source holds this only while the connection holds the source (http_types.h).
    body_source_->SetWake([this] {
      // This closure lives in the source: Flush may release the source (its last chunk
      // written), and with it the closure. Copy what is needed first and hold the source.
      Connection* self = this;
      if (self->closing_ || self->body_source_ == nullptr) {
        return;
      }
      std::shared_ptr<BodySource> hold = self->body_source_;
      self->Flush();
      self->Settle();
    });
  }
  body_last_ = close;
  body_record_ = std::move(record);  // Logged once the last body byte is written.
}

void Connection::PumpBody() {
  if (pumping_) {
    // Reached again from inside Read (a handler answering another request): the outer call
    // carries on, so the chunks stay in order.
    return;
  }
  pumping_ = true;
  // Close (from a failed write, or from here) releases body_source_: hold it while reading.
  std::shared_ptr<BodySource> source = body_source_;
  if (body_chunked_) {
    PumpChunkedBody(source);
    pumping_ = false;
    return;
  }
  while (!closing_ && body_source_ != nullptr && write_bytes_pending_ < kBodyBacklogBytesMax) {
    uint64_t file_offset = 0;
    const bool file = tls_ == nullptr && source->File(&file_offset) >= 0;
    if (file && (writes_pending_ > 0 || awaiting_writable_)) {
      break;  // A write in flight or the writability watcher resumes here.
    }
    if (file) {
      const int64_t sent = SendFileBody(source.get());
      if (sent < 0) {
        break;  // Closed.
      }
      if (sent > 0) {
        continue;
      }
      if (AwaitWritable()) {
        break;  // The socket is full; OnWritable resumes here.
      }
      // No watcher: one small chunk the ordinary way; its completion resumes here.
    }
    const size_t want = static_cast<size_t>(
        std::min<uint64_t>(body_left_, file ? kBodyProbeBytes : kBodyChunkBytes));
    std::string chunk(want, '\0');
    const int64_t n = source->Read(chunk.data(), want);
    if (n <= 0 || static_cast<uint64_t>(n) > want) {
      // An error, or the source ended early (or overran): the Content-Length sent cannot be
      // honoured, so the client must see the connection end short of it.
      Close();
      break;
    }
    chunk.resize(static_cast<size_t>(n));
    body_left_ -= static_cast<uint64_t>(n);
    body_record_->response_bytes += static_cast<uint64_t>(n);
    std::unique_ptr<WriteRequest> record;
    if (body_left_ == 0) {
      record = std::move(body_record_);
      body_source_.reset();
    }
    // Queued, never written inline: each chunk's completion (OnWrite) comes back here.
    SendPlain(std::move(chunk), std::move(record), /*queue=*/true);
  }
  pumping_ = false;
}

void Connection::PumpChunkedBody(const std::shared_ptr<BodySource>& source) {
  while (!closing_ && body_source_ != nullptr && write_bytes_pending_ < kBodyBacklogBytesMax) {
    std::string data(kBodyProbeBytes, '\0');
    const int64_t n = source->Read(data.data(), data.size());
    if (n == BodySource::kPending) {
      break;  // The source wakes the connection when it has more.
    }
    if (n < 0 || static_cast<uint64_t>(n) > data.size()) {
      Close();  // The client sees the response end without its last chunk.
      break;
    }
    std::string framed;
    std::unique_ptr<WriteRequest> record;
    if (n == 0) {
      framed = "0\r\n\r\n";
      body_record_->response_bytes += framed.size();
      record = std::move(body_record_);
      body_source_.reset();
      body_chunked_ = false;
    } else {
      char size_line[24];
      const int length = std::snprintf(size_line, sizeof(size_line), "%llx\r\n",
                                       static_cast<unsigned long long>(n));
      framed.reserve(static_cast<size_t>(n) + 32);
      framed.append(size_line, static_cast<size_t>(length));
      framed.append(data.data(), static_cast<size_t>(n)).append("\r\n");
      body_record_->response_bytes += framed.size();
    }
    SendPlain(std::move(framed), std::move(record), /*queue=*/true);
  }
}

int64_t Connection::SendFileBody(BodySource* source) {
  uint64_t offset = 0;
  const int file = source->File(&offset);
  uv_os_fd_t socket = -1;
  if (file < 0 || uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &socket) != 0) {
    return 0;
  }
  off_t from = static_cast<off_t>(offset);
  const size_t want = static_cast<size_t>(std::min<uint64_t>(body_left_, kBodyBacklogBytesMax));
  const ssize_t n = sendfile(socket, file, &from, want);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    return 0;
  }
  if (n <= 0) {
    Close();  // An error, or the file ended early: the Content-Length cannot be honoured.
    return -1;
  }
  source->Advance(static_cast<uint64_t>(n));
  body_left_ -= static_cast<uint64_t>(n);
  body_record_->response_bytes += static_cast<uint64_t>(n);
  write_progress_ms_ = NowMs();
  if (body_left_ == 0) {
    // The last byte is in the socket: the response is written (as OnWrite would log it).
    std::unique_ptr<WriteRequest> record = std::move(body_record_);
    body_source_.reset();
    idle_since_ms_ = write_progress_ms_;
    if (record->ends_response && server_ != nullptr) {
      LogResponse(*record);
    }
  }
  return n;
}

bool Connection::AwaitWritable() {
  if (writable_fd_ < 0) {
    uv_os_fd_t socket = -1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &socket) != 0) {
      return false;
    }
    const int fd = fcntl(socket, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      return false;
    }
    if (uv_poll_init_socket(tcp_.loop, &writable_, fd) != 0) {
      ::close(fd);
      return false;
    }
    writable_.data = this;
    writable_fd_ = fd;
    handles_open_++;
  }
  if (uv_poll_start(&writable_, UV_WRITABLE, &Connection::OnWritable) != 0) {
    return false;
  }
  awaiting_writable_ = true;
  return true;
}

void Connection::OnWritable(uv_poll_t* poll, int status, int /*events*/) {
  auto* c = static_cast<Connection*>(poll->data);
  uv_poll_stop(poll);
  c->awaiting_writable_ = false;
  if (c->closing_) {
    return;
  }
  if (status < 0) {
    c->Close();
    return;
  }
  c->Flush();
  c->Settle();
}

void Connection::SendPlain(std::string plaintext, std::unique_ptr<WriteRequest> record,
                           bool queue) {
  if (tls_ == nullptr) {
    Write(std::move(plaintext), std::move(record), queue);
    return;
  }
  CL_ASSERT(tls_->handshake_done());
  if (tls_->Write(plaintext) == TlsStream::Outcome::kFailed) {
    Close();
    return;
  }
  std::string ciphertext;
  tls_->TakeCiphertext(&ciphertext);
  Write(std::move(ciphertext), std::move(record), queue);
}

void Connection::FlushTls() {
  std::string ciphertext;
  if (tls_->TakeCiphertext(&ciphertext)) {
    Write(std::move(ciphertext), nullptr);
  }
}

void Connection::Write(std::string bytes, std::unique_ptr<WriteRequest> record, bool queue) {
  if (closing_ || bytes.empty()) {
    return;
  }
  size_t offset = 0;
  if (writes_pending_ == 0 && !queue) {
    // Nothing queued, so writing now keeps the order. Usually the socket takes it all: then no
    // uv_write_t, no completion callback and no epoll_ctl (libuv re-arms the watcher after every
    // queued write, one syscall per response). The state is the one OnWrite leaves.
    uv_buf_t buf = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    if (n < 0 && n != UV_EAGAIN) {
      Close();
      return;
    }
    offset = n > 0 ? static_cast<size_t>(n) : 0;
    if (offset == bytes.size()) {
      write_progress_ms_ = NowMs();
      idle_since_ms_ = write_progress_ms_;
      if (record != nullptr && record->ends_response && server_ != nullptr) {
        LogResponse(*record);
      }
      return;
    }
  }
  if (record == nullptr) {
    record = std::make_unique<WriteRequest>();
  }
  WriteRequest* write = record.get();
  write->connection = this;
  write->bytes = offset == 0 ? std::move(bytes) : bytes.substr(offset);
  write->request.data = write;
  uv_buf_t buf = uv_buf_init(write->bytes.data(), static_cast<unsigned>(write->bytes.size()));
  int rc = uv_write(&write->request, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1,
                    &Connection::OnWrite);
  if (rc != 0) {
    Close();
    return;  // record is freed here: libuv never took it.
  }
  record.release();  // OnWrite frees it.
  if (writes_pending_ == 0) {
    write_progress_ms_ = NowMs();
  }
  writes_pending_++;
  write_bytes_pending_ += write->bytes.size();
}

void Connection::OnWrite(uv_write_t* request, int status) {
  std::unique_ptr<WriteRequest> write(static_cast<WriteRequest*>(request->data));
  Connection* c = write->connection;
  CL_ASSERT(c->writes_pending_ > 0);
  c->writes_pending_--;
  c->write_bytes_pending_ -= write->bytes.size();
  if (status < 0) {
    c->Close();  // A no-op if the write was cancelled by Close itself.
    return;
  }
  c->write_progress_ms_ = c->NowMs();
  if (c->writes_pending_ == 0) {
    c->idle_since_ms_ = c->write_progress_ms_;
  }
  if (write->ends_response && c->server_ != nullptr) {
    c->LogResponse(*write);
  }
  if (c->body_source_ != nullptr && !c->closing_) {
    c->Flush();  // Room in the backlog: the next chunks of the body being streamed.
  }
  c->Settle();
}

void Connection::LogResponse(const WriteRequest& write) {
  HttpStats& stats = server_->stats_;
  stats.responses_total++;
  stats.responses_by_class[std::min(write.status / 100, 5)]++;
  if (!server_->options_.access_log) {
    return;
  }
  AccessLogEntry entry;
  entry.server = server_->options_.name;
  entry.method = write.method;
  entry.path = write.path;
  entry.status = write.status;
  entry.response_bytes = write.response_bytes;
  entry.duration_us = (uv_hrtime() - write.start_ns) / 1000;
  entry.peer = peer_;
  entry.request_id = write.request_id;
  server_->options_.access_log(entry);
}

// Sends FIN after the queued writes; then lingers (OnShutdown) so that unread input does not
// turn the close into a RST that could destroy the response in flight.
void Connection::FinishAndClose() {
  CL_ASSERT(!finishing_ && !closing_);
  finishing_ = true;
  input_open_ = false;
  if (tls_ != nullptr) {
    tls_->Close();
    FlushTls();
  }
  int rc = uv_shutdown(&shutdown_request_, reinterpret_cast<uv_stream_t*>(&tcp_),
                       &Connection::OnShutdown);
  if (rc != 0) {
    Close();
  }
}

void Connection::OnShutdown(uv_shutdown_t* request, int status) {
  auto* c = static_cast<Connection*>(request->data);
  if (c->closing_) {
    return;
  }
  if (status < 0 || c->eof_seen_) {
    c->Close();
    return;
  }
  c->lingering_ = true;
  c->linger_until_ms_ = c->NowMs() + kLingerCloseMs;
  c->Settle();
}

// ---- Timers. ----

Connection::Deadline Connection::CurrentDeadline() const {
  Deadline best;
  auto consider = [&best](DeadlineKind kind, uint64_t at_ms) {
    if (best.kind == DeadlineKind::kNone || at_ms < best.at_ms) {
      best = Deadline{kind, at_ms};
    }
  };
  if (closing_ || server_ == nullptr) {
    return best;
  }
  const HttpLimits& limit = limits();
  if (writes_pending_ > 0 || awaiting_writable_) {
    consider(DeadlineKind::kSend, write_progress_ms_ + limit.send_timeout_ms);
  }
  if (lingering_) {
    consider(DeadlineKind::kLinger, linger_until_ms_);
    return best;
  }
  if (tls_ != nullptr && !tls_->handshake_done() && !finishing_) {
    consider(DeadlineKind::kHandshake, ready_ms_ + limit.header_timeout_ms);
    return best;
  }
  if (!input_open_) {
    return best;  // Waiting for handlers or for writes: the server's turn, not the client's.
  }
  if (parse_state_ == ParseState::kBody) {
    if (!expect_continue_wait_) {
      consider(DeadlineKind::kBody, body_start_ms_ + limit.body_timeout_ms);
    }
  } else if (head_bytes_ > 0) {
    consider(DeadlineKind::kHead, head_start_ms_ + limit.header_timeout_ms);
  } else if (exchanges_.empty() && writes_pending_ == 0 && body_source_ == nullptr) {
    if (requests_seen_ == 0) {
      consider(DeadlineKind::kFirstRequest, ready_ms_ + limit.header_timeout_ms);
    } else {
      consider(DeadlineKind::kIdle, idle_since_ms_ + limit.idle_timeout_ms);
    }
  }
  return best;
}

void Connection::ArmTimer() {
  const Deadline deadline = CurrentDeadline();
  // Lazily: a timer already due at or before the deadline is left alone, and when it fires
  // OnTimer finds the deadline not reached yet and re-arms for it. Without this every request
  // stopped and restarted the timer (the idle deadline moves with each one), two timer-heap
  // operations per request. With no deadline, an armed timer fires once and finds nothing due.
  if (deadline.kind == DeadlineKind::kNone) {
    return;
  }
  const bool armed = uv_is_active(reinterpret_cast<const uv_handle_t*>(&timer_)) != 0;
  if (armed && timer_due_ms_ <= deadline.at_ms) {
    return;
  }
  const uint64_t now = NowMs();
  const uint64_t delay = deadline.at_ms > now ? deadline.at_ms - now : 0;
  uv_timer_start(&timer_, &Connection::OnTimer, delay, 0);
  timer_due_ms_ = now + delay;
}

void Connection::OnTimer(uv_timer_t* timer) {
  auto* c = static_cast<Connection*>(timer->data);
  const Deadline deadline = c->CurrentDeadline();
  if (deadline.kind == DeadlineKind::kNone) {
    return;
  }
  if (deadline.at_ms > c->NowMs()) {
    c->ArmTimer();  // The state moved on since the timer was armed.
    return;
  }
  HttpStats& stats = c->server_->stats_;
  switch (deadline.kind) {
    case DeadlineKind::kHandshake:
      stats.tls_handshake_failures_total++;
      c->Close();
      return;
    case DeadlineKind::kFirstRequest:
    case DeadlineKind::kIdle:
      stats.connections_idle_closed_total++;
      c->Close();
      return;
    case DeadlineKind::kSend:
      stats.send_timeouts_total++;
      c->Close();
      return;
    case DeadlineKind::kLinger:
      c->Close();
      return;
    case DeadlineKind::kHead:
      c->Reject(408, "request head not received within header_timeout_ms");
      break;
    case DeadlineKind::kBody:
      c->Reject(408, "request body not received within body_timeout_ms");
      break;
    case DeadlineKind::kNone:
      break;
  }
  c->Settle();
}

}  // namespace cloister::api::internal
