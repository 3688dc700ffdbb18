#include "api/http_server.h"

#include <arpa/inet.h>

#include <random>
#include <utility>

#include "api/http_connection.h"

namespace cloister::api {
namespace {

bool OnThread(uv_thread_t thread) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &thread) != 0;
}

}  // namespace

// ---- ResponseWriter. ----

ResponseWriter::ResponseWriter(ResponseWriter&& other) noexcept
    : exchange_(std::move(other.exchange_)),
      loop_thread_(other.loop_thread_),
      pending_(other.pending_) {
  other.pending_ = false;
}

ResponseWriter& ResponseWriter::operator=(ResponseWriter&& other) noexcept {
  if (this != &other) {
    Abandon();
    exchange_ = std::move(other.exchange_);
    loop_thread_ = other.loop_thread_;
    pending_ = other.pending_;
    other.pending_ = false;
  }
  return *this;
}

ResponseWriter::~ResponseWriter() { Abandon(); }

void ResponseWriter::Abandon() {
  if (!pending_) {
    return;
  }
  if (!OnThread(loop_thread_)) {
    // Off the loop thread the connection must not be touched; dropping the weak reference is
    // safe anywhere. The request stays unanswered until its connection closes.
    pending_ = false;
    exchange_.reset();
    return;
  }
  Send(FailResponse(500, "the server dropped the request without answering"));
}

void ResponseWriter::Send(Response response) {
  CL_ASSERT(pending_);
  CL_ASSERT(OnThread(loop_thread_));
  pending_ = false;
  std::shared_ptr<internal::Exchange> exchange = exchange_.lock();
  exchange_.reset();
  if (exchange == nullptr || exchange->connection->closing()) {
    return;  // The client has gone.
  }
  exchange->connection->OnResponse(exchange.get(), std::move(response));
}

bool ResponseWriter::connection_open() const {
  std::shared_ptr<internal::Exchange> exchange = exchange_.lock();
  return exchange != nullptr && !exchange->connection->closing();
}

// ---- HttpServer. ----

HttpServer::HttpServer(uv_loop_t* loop, HttpServerOptions options)
    : loop_(loop),
      options_(std::move(options)),
      loop_thread_(uv_thread_self()),
      read_buffer_(64 * 1024) {
  CL_ASSERT(loop_ != nullptr);
  CL_ASSERT(options_.handler != nullptr);
  // Request ids only need to be unique within a process's logs; a random prefix also keeps
  // two servers (controller, registry) or two runs apart.
  std::random_device random;
  id_prefix_ = random();
}

HttpServer::~HttpServer() {
  CL_ASSERT(OnThread(loop_thread_));
  for (internal::Connection* connection : connections_) {
    connection->Detach();
    connection->Close();
  }
  connections_.clear();
  stats_.connections_open = 0;
  if (listener_ != nullptr) {
    listener_->data = nullptr;  // Its close callback must not reach this object.
    CloseListener();
  }
}

Status HttpServer::Listen() {
  CL_ASSERT(listener_ == nullptr && port_ == 0 && !shutting_down_);
  if (options_.tls.has_value()) {
    auto context = TlsContext::Create(*options_.tls);
    if (!context.ok()) {
      return context.status();
    }
    tls_ = *context;
  }
  auto address = ResolveListenAddress(options_.listen);
  if (!address.ok()) {
    return address.status();
  }
  const std::string where = "listen " + options_.listen.ToString() + ": ";
  listener_ = new uv_tcp_t;
  int rc = uv_tcp_init(loop_, listener_);
  if (rc != 0) {
    delete listener_;  // Not initialised, so libuv holds no reference.
    listener_ = nullptr;
    return Status::IoError(where + uv_strerror(rc));
  }
  listener_->data = this;
  rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&*address), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), options_.backlog,
                   &HttpServer::OnConnection);
  }
  sockaddr_storage bound;
  int bound_size = sizeof(bound);
  if (rc == 0) {
    rc = uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&bound), &bound_size);
  }
  if (rc != 0) {
    CloseListener();
    return Status::IoError(where + uv_strerror(rc));
  }
  port_ = bound.ss_family == AF_INET6
              ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
              : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  return Status::Ok();
}

void HttpServer::OnConnection(uv_stream_t* listener, int status) {
  auto* server = static_cast<HttpServer*>(listener->data);
  if (server == nullptr || status < 0) {
    return;  // libuv keeps the listener going (EMFILE is handled inside libuv).
  }
  internal::Connection::Accept(server, listener);
}

void HttpServer::StopAccepting() { CloseListener(); }

void HttpServer::CloseListener() {
  if (listener_ == nullptr || listener_closing_) {
    return;
  }
  listener_closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* handle) {
    auto* server = static_cast<HttpServer*>(handle->data);
    delete reinterpret_cast<uv_tcp_t*>(handle);
    if (server != nullptr) {
      server->OnListenerClosed();
    }
  });
}

void HttpServer::OnListenerClosed() {
  listener_ = nullptr;
  MaybeFinishShutdown();
}

void HttpServer::Shutdown(std::function<void()> done) {
  CL_ASSERT(OnThread(loop_thread_));
  CL_ASSERT(!shutting_down_);
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  StopAccepting();
  // BeginShutdown may close a connection, but removal from the list happens only in its close
  // callback, so this iteration is safe.
  for (internal::Connection* connection : connections_) {
    connection->BeginShutdown();
  }
  MaybeFinishShutdown();
}

void HttpServer::CloseAll() {
  CL_ASSERT(OnThread(loop_thread_));
  for (internal::Connection* connection : connections_) {
    connection->Close();
  }
}

void HttpServer::OnConnectionClosed(internal::Connection* connection) {
  connections_.erase(connection->list_position);
  stats_.connections_open = connections_.size();
  MaybeFinishShutdown();
}

void HttpServer::MaybeFinishShutdown() {
  if (!shutting_down_ || !connections_.empty() || listener_ != nullptr || !shutdown_done_) {
    return;
  }
  std::function<void()> done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  done();
}

std::string HttpServer::NextRequestId() {
  // "%08x-%llx" of (id_prefix_, ++requests_numbered_), without snprintf (once per request).
  static constexpr char kHex[] = "0123456789abcdef";
  char id[8 + 1 + 16];
  for (int i = 0; i < 8; i++) {
    id[i] = kHex[(id_prefix_ >> (28 - 4 * i)) & 0xf];
  }
  id[8] = '-';
  uint64_t number = ++requests_numbered_;
  char digits[16];
  int count = 0;
  do {
    digits[count++] = kHex[number & 0xf];
    number >>= 4;
  } while (number != 0);
  for (int i = 0; i < count; i++) {
    id[9 + i] = digits[count - 1 - i];
  }
  return std::string(id, 9 + count);
}

}  // namespace cloister::api
