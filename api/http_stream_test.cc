// Streamed bodies over real sockets: Handler::StreamBody and BodySink for requests (exact bytes
// for Content-Length and chunked bodies, a refusal on the head, a sink that refuses mid-body,
// the body deadline counted from the last byte), BodySource for responses (exact bytes over TCP
// and TLS, HEAD, order in a pipeline, a failing source, a reader that stops), and what a 256 MiB
// upload or download costs in memory.
//
// The server runs on its own loop thread with a handler made for these tests; Catch2 assertions
// stay on the test thread (the handler only records what it saw, under a mutex).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstring>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/http_server.h"
#include "api/http_types.h"
#include "api/limits.h"
#include "api/listen_address.h"
#include "api/loop_poster.h"
#include "api/tls.h"
#include "tests/testutil.h"
#include "tests/wire/test_server.h"
#include "tests/wire/wire_client.h"

#if defined(__SANITIZE_ADDRESS__)
// ASan keeps freed blocks in a quarantine of up to 256 MiB before reusing them, which the RSS
// figures below would count as growth: keep it small so that they measure the server.
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=4"; }
#endif

namespace cloister::api {
namespace {

using cloister::testing::AccessRecord;
using cloister::testing::MakeRequest;
using cloister::testing::MonotonicMs;
using cloister::testing::WireConnection;
using cloister::testing::WireResponse;
using cloister::testing::WireTarget;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

// ---- Generated bodies. ----

// Byte offset of every generated body: a multiplicative hash of the offset, so that a byte
// lost, repeated or moved shows up.
char PatternByte(uint64_t offset) {
  return static_cast<char>((offset * 0x9E3779B97F4A7C15ULL) >> 56);
}

void FillPattern(uint64_t offset, char* out, size_t size) {
  for (size_t i = 0; i < size; i++) {
    out[i] = PatternByte(offset + i);
  }
}

std::string Pattern(uint64_t offset, size_t size) {
  std::string bytes(size, '\0');
  FillPattern(offset, bytes.data(), size);
  return bytes;
}

// How many of bytes differ from the pattern, bytes being the pattern from offset on.
uint64_t PatternMismatches(uint64_t offset, std::string_view bytes) {
  uint64_t bad = 0;
  for (size_t i = 0; i < bytes.size(); i++) {
    bad += bytes[i] != PatternByte(offset + i) ? 1 : 0;
  }
  return bad;
}

uint64_t QueryNumber(const std::string& query, const std::string& name, uint64_t absent) {
  const std::string key = name + "=";
  size_t at = query.rfind(key, 0) == 0 ? 0 : query.find("&" + key);
  if (at == std::string::npos) {
    return absent;
  }
  at += query[at] == '&' ? 1 : 0;
  return std::strtoull(query.c_str() + at + key.size(), nullptr, 10);
}

// A field of /proc/self/status in bytes ("VmRSS:" now, "VmHWM:" the peak), for this process:
// server and client both.
uint64_t StatusBytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) {
      return std::strtoull(line.c_str() + field.size(), nullptr, 10) * 1024;
    }
  }
  return 0;
}

// Resets VmHWM to the current RSS (Linux 4.0+), so that the peak of what follows is measured;
// returns the RSS at that point.
uint64_t StartPeakRss() {
  std::ofstream("/proc/self/clear_refs") << "5";
  return StatusBytes("VmRSS:");
}

// The peak RSS since StartPeakRss, or the current RSS where the peak cannot be reset.
uint64_t PeakRss(uint64_t start) {
  const uint64_t peak = StatusBytes("VmHWM:");
  const uint64_t now = StatusBytes("VmRSS:");
  return peak >= start ? std::max(peak, now) : now;
}

std::string LocalAddress(int fd) {
  sockaddr_storage local;
  socklen_t size = sizeof(local);
  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size);
  return FormatSocketAddress(reinterpret_cast<const sockaddr*>(&local));
}

// ---- The handler (loop thread). ----

// Totals the test thread reads while the loop runs.
struct Counters {
  std::atomic<int> sinks_alive{0};
  std::atomic<int> sources_alive{0};
  std::atomic<uint64_t> source_reads{0};
  std::atomic<uint64_t> source_bytes{0};
  std::atomic<uint64_t> writes_after_refusal{0};
  std::atomic<uint64_t> file_sent{0};  // Bytes a FileRangeSource let go by sendfile (Advance).
  std::atomic<uint64_t> file_read{0};  // ... and through Read.
};

// What StreamBody saw.
struct HeadSeen {
  std::string method;
  std::string path;
  std::string peer;
  std::string id;
  bool tls = false;
  bool body_empty = false;
};

// What Handle saw.
struct HandledSeen {
  std::string path;
  std::string id;
  size_t body_size = 0;
  bool sink_set = false;
  uint64_t sink_bytes = 0;       // Given to the sink.
  uint64_t sink_mismatches = 0;  // Of those, bytes that were not the pattern at their offset.
  bool sink_refused = false;
  std::string sink_kept;         // The first bytes (up to the request's keep=N).
};

// Checks every byte against the pattern, keeps the first keep_max, and refuses once more than
// refuse_after bytes arrived.
class PatternSink : public BodySink {
 public:
  PatternSink(Counters* counters, uint64_t refuse_after, size_t keep_max)
      : counters_(counters), refuse_after_(refuse_after), keep_max_(keep_max) {
    counters_->sinks_alive++;
  }
  ~PatternSink() override { counters_->sinks_alive--; }

  bool Write(std::string_view bytes) override {
    if (refused_) {
      counters_->writes_after_refusal++;
      return false;
    }
    mismatches_ += PatternMismatches(received_, bytes);
    if (kept_.size() < keep_max_) {
      kept_.append(bytes.substr(0, keep_max_ - kept_.size()));
    }
    received_ += bytes.size();
    refused_ = received_ > refuse_after_;
    return !refused_;
  }

  uint64_t received_ = 0;
  uint64_t mismatches_ = 0;
  bool refused_ = false;
  std::string kept_;

 private:
  Counters* counters_;
  uint64_t refuse_after_;
  size_t keep_max_;
};

// size bytes of the pattern; Read fails (-1) at fail_at and ends early (0) at short_at.
class PatternSource : public BodySource {
 public:
  PatternSource(Counters* counters, uint64_t size, uint64_t fail_at, uint64_t short_at)
      : counters_(counters), size_(size), fail_at_(fail_at), short_at_(short_at) {
    counters_->sources_alive++;
  }
  ~PatternSource() override { counters_->sources_alive--; }

  uint64_t size() const override { return size_; }

  int64_t Read(char* buffer, size_t max) override {
    counters_->source_reads++;
    if (offset_ >= fail_at_) {
      return -1;
    }
    if (offset_ >= short_at_) {
      return 0;
    }
    const uint64_t n = std::min<uint64_t>(
        {max, size_ - offset_, fail_at_ - offset_, short_at_ - offset_});
    FillPattern(offset_, buffer, n);
    offset_ += n;
    counters_->source_bytes += n;
    return static_cast<int64_t>(n);
  }

 private:
  Counters* counters_;
  uint64_t size_;
  uint64_t fail_at_;
  uint64_t short_at_;
  uint64_t offset_ = 0;
};

// The pattern's bytes [0, kFileBytes) in a file, written once per test binary.
constexpr uint64_t kFileBytes = 24 * 1024 * 1024 + 5;

const std::string& PatternFile() {
  static const std::string* path = [] {
    static cloister::testing::TempDir* dir = new cloister::testing::TempDir();
    auto* p = new std::string(dir->Sub("pattern.bin"));
    std::ofstream out(*p, std::ios::binary);
    const std::string bytes = Pattern(0, kFileBytes);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }();
  return *path;
}

// Bytes [from, from + size) of PatternFile, naming the file so that plain TCP uses sendfile.
class FileRangeSource : public BodySource {
 public:
  FileRangeSource(Counters* counters, uint64_t from, uint64_t size)
      : counters_(counters), fd_(open(PatternFile().c_str(), O_RDONLY | O_CLOEXEC)), from_(from),
        size_(size) {
    counters_->sources_alive++;
  }
  ~FileRangeSource() override {
    close(fd_);
    counters_->sources_alive--;
  }
  uint64_t size() const override { return size_; }
  int64_t Read(char* buffer, size_t max) override {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(max, size_ - done_));
    const ssize_t got = pread(fd_, buffer, n, static_cast<off_t>(from_ + done_));
    if (got <= 0) {
      return -1;
    }
    done_ += static_cast<uint64_t>(got);
    counters_->file_read += static_cast<uint64_t>(got);
    return got;
  }
  int File(uint64_t* offset) const override {
    *offset = from_ + done_;
    return fd_;
  }
  void Advance(uint64_t bytes) override {
    done_ += bytes;
    counters_->file_sent += bytes;
  }

 private:
  Counters* counters_;
  int fd_;
  uint64_t from_;
  uint64_t size_;
  uint64_t done_ = 0;
};

Response Text(int status, std::string body) {
  Response response;
  response.status = status;
  response.content_type = "text/plain";
  response.body = std::move(body);
  return response;
}

// A one-shot timer that answers a request; it deletes itself in its close callback.
struct DelayTimer {
  uv_timer_t timer;
  ResponseWriter writer;
};

// A body of unknown length: "piece <i>\n" for i in [0, pieces), each ms after the one before;
// kPending between them, woken by a timer on the loop. Its timer goes with it.
class ChunkedSource : public BodySource {
 public:
  ChunkedSource(Counters* counters, uv_loop_t* loop, uint64_t pieces, uint64_t ms)
      : counters_(counters), pieces_(pieces), ms_(ms) {
    counters_->sources_alive++;
    timer_ = new uv_timer_t;
    timer_->data = this;
    CL_ASSERT(uv_timer_init(loop, timer_) == 0);
  }
  ~ChunkedSource() override {
    counters_->sources_alive--;
    timer_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_timer_t*>(handle); });
  }

  uint64_t size() const override { return kSizeUnknown; }
  void SetWake(std::function<void()> wake) override { wake_ = std::move(wake); }

  int64_t Read(char* buffer, size_t max) override {
    counters_->source_reads++;
    if (next_ == pieces_) {
      return 0;
    }
    if (!ready_) {
      uv_timer_start(timer_, [](uv_timer_t* timer) {
        auto* self = static_cast<ChunkedSource*>(timer->data);
        if (self != nullptr) {
          self->ready_ = true;
          self->wake_();  // May release self: nothing after this.
        }
      }, ms_, 0);
      return kPending;
    }
    ready_ = false;
    const std::string piece = "piece " + std::to_string(next_++) + "\n";
    CL_ASSERT(piece.size() <= max);
    std::memcpy(buffer, piece.data(), piece.size());
    counters_->source_bytes += piece.size();
    return static_cast<int64_t>(piece.size());
  }

 private:
  Counters* counters_;
  uint64_t pieces_;
  uint64_t ms_;
  uint64_t next_ = 0;
  bool ready_ = false;
  uv_timer_t* timer_;
  std::function<void()> wake_;
};

// Routes:
//   GET /chunked?pieces=N&ms=M        a ChunkedSource (Transfer-Encoding: chunked)
//   POST /sink?refuse_after=N&keep=N  body streamed to a PatternSink; 200 "bytes=N bad=M", or
//                                     507 "refused at N" when the sink refused
//   POST /reject                      refused on its head: 401 (the sink it returns is unused)
//   POST /buffer                      body buffered (StreamBody returns nullptr); 200 "buffered N"
//   GET|HEAD /source?bytes=N&fail_at=N&short_at=N  body from a PatternSource
//   GET /both                         a body and a source (500 expected)
//   GET /empty-source                 204 with a source (500 expected)
//   GET /delay?ms=N                   200 "delayed" N ms later
//   GET /small                        200 "small"
class StreamHandler : public Handler {
 public:
  explicit StreamHandler(uv_loop_t* loop) : loop_(loop) {}

  std::shared_ptr<BodySink> StreamBody(const Request& head,
                                       std::optional<Response>* reject) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      heads_.push_back(HeadSeen{head.method, head.path, head.peer, head.id, head.tls,
                                head.body.empty()});
    }
    if (head.path == "/reject") {
      *reject = FailResponse(401, "no credentials");
      return std::make_shared<PatternSink>(&counters, kNever, 0);  // Ignored: reject wins.
    }
    if (head.path == "/sink") {
      return std::make_shared<PatternSink>(&counters,
                                           QueryNumber(head.query, "refuse_after", kNever),
                                           QueryNumber(head.query, "keep", 0));
    }
    return nullptr;
  }

  void Handle(Request request, ResponseWriter writer) override {
    HandledSeen seen;
    seen.path = request.path;
    seen.id = request.id;
    seen.body_size = request.body.size();
    seen.sink_set = request.body_sink != nullptr;
    auto* sink = dynamic_cast<PatternSink*>(request.body_sink.get());
    if (sink != nullptr) {
      seen.sink_bytes = sink->received_;
      seen.sink_mismatches = sink->mismatches_;
      seen.sink_refused = sink->refused_;
      seen.sink_kept = sink->kept_;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      handled_.push_back(seen);
    }
    const std::string& path = request.path;
    const std::string& query = request.query;
    if (path == "/sink" && sink != nullptr) {
      writer.Send(sink->refused_
                      ? Text(507, "refused at " + std::to_string(sink->received_))
                      : Text(200, "bytes=" + std::to_string(sink->received_) +
                                      " bad=" + std::to_string(sink->mismatches_)));
    } else if (path == "/buffer") {
      writer.Send(Text(200, "buffered " + std::to_string(request.body.size())));
    } else if (path == "/source") {
      Response response;
      response.content_type = "application/octet-stream";
      response.body_source = std::make_shared<PatternSource>(
          &counters, QueryNumber(query, "bytes", 0), QueryNumber(query, "fail_at", kNever),
          QueryNumber(query, "short_at", kNever));
      writer.Send(std::move(response));
    } else if (path == "/file") {
      Response response;
      response.content_type = "application/octet-stream";
      response.body_source = std::make_shared<FileRangeSource>(
          &counters, QueryNumber(query, "from", 0), QueryNumber(query, "bytes", 0));
      writer.Send(std::move(response));
    } else if (path == "/both") {
      Response response = Text(200, "x");
      response.body_source = std::make_shared<PatternSource>(&counters, 10, kNever, kNever);
      writer.Send(std::move(response));
    } else if (path == "/empty-source") {
      Response response;
      response.status = 204;
      response.body_source = std::make_shared<PatternSource>(&counters, 10, kNever, kNever);
      writer.Send(std::move(response));
    } else if (path == "/delay") {
      auto* delay = new DelayTimer();
      delay->writer = std::move(writer);
      delay->timer.data = delay;
      const int rc = uv_timer_init(loop_, &delay->timer);
      CL_ASSERT(rc == 0);
      uv_timer_start(&delay->timer, [](uv_timer_t* timer) {
        auto* self = static_cast<DelayTimer*>(timer->data);
        self->writer.Send(Text(200, "delayed"));
        uv_close(reinterpret_cast<uv_handle_t*>(timer), [](uv_handle_t* handle) {
          delete static_cast<DelayTimer*>(handle->data);
        });
      }, QueryNumber(query, "ms", 0), 0);
    } else if (path == "/small") {
      writer.Send(Text(200, "small"));
    } else if (path == "/chunked") {
      Response response;
      response.content_type = "text/plain";
      response.body_source = std::make_shared<ChunkedSource>(
          &counters, loop_, QueryNumber(query, "pieces", 0), QueryNumber(query, "ms", 0));
      writer.Send(std::move(response));
    } else {
      writer.Send(FailResponse(404, "not found"));
    }
  }

  std::vector<HeadSeen> Heads() {
    std::lock_guard<std::mutex> lock(mutex_);
    return heads_;
  }
  std::vector<HandledSeen> Handled() {
    std::lock_guard<std::mutex> lock(mutex_);
    return handled_;
  }

  Counters counters;

 private:
  uv_loop_t* loop_;
  std::mutex mutex_;
  std::vector<HeadSeen> heads_;        // Guarded by mutex_.
  std::vector<HandledSeen> handled_;   // Guarded by mutex_.
};

// An HttpServer with a StreamHandler on its own loop thread.
class StreamServer {
 public:
  static std::unique_ptr<StreamServer> Start(HttpLimits limits = HttpLimits(),
                                             std::optional<TlsSettings> tls = std::nullopt) {
    std::unique_ptr<StreamServer> server(new StreamServer());
    std::promise<uint16_t> started;
    std::future<uint16_t> port = started.get_future();
    StreamServer* raw = server.get();
    server->tls_ = tls.has_value();
    server->thread_ = std::thread([raw, &started, limits, tls]() {
      raw->LoopMain(&started, limits, tls);
    });
    server->port_ = port.get();
    REQUIRE(server->port_ != 0);
    return server;
  }

  ~StreamServer() {
    if (port_ != 0) {
      poster_->Post([this]() {
        server_.reset();  // Closes every connection and the listener.
        poster_->Close();
      });
    }
    thread_.join();
  }

  WireTarget target() const {
    WireTarget target;
    target.port = port_;
    target.tls = tls_;
    return target;
  }

  HttpStats Stats() {
    HttpStats stats;
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    poster_->Post([this, &stats, done]() {
      stats = server_->stats();
      done->set_value();
    });
    REQUIRE(finished.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    return stats;
  }

  std::vector<AccessRecord> AccessLog() {
    std::lock_guard<std::mutex> lock(mutex_);
    return access_log_;
  }

  // Starts a graceful Shutdown; the returned future is ready once its done ran.
  std::future<void> Shutdown() {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    poster_->Post([this, done]() { server_->Shutdown([done]() { done->set_value(); }); });
    return finished;
  }

  StreamHandler& handler() { return *handler_; }
  Counters& counters() { return handler_->counters; }

 private:
  StreamServer() = default;

  void LoopMain(std::promise<uint16_t>* started, HttpLimits limits,
                std::optional<TlsSettings> tls) {
    const int init_rc = uv_loop_init(&loop_);
    CL_ASSERT(init_rc == 0);
    auto poster = LoopPoster::Create(&loop_);
    CL_ASSERT(poster.ok());
    poster_ = std::move(*poster);
    handler_ = std::make_unique<StreamHandler>(&loop_);
    HttpServerOptions options;
    options.name = "stream";
    options.listen = ListenAddress{"127.0.0.1", 0};
    options.limits = limits;
    options.tls = tls;
    options.handler = handler_.get();
    options.access_log = [this](const AccessLogEntry& entry) {
      std::lock_guard<std::mutex> lock(mutex_);
      access_log_.push_back(AccessRecord{std::string(entry.server), std::string(entry.method),
                                         std::string(entry.path), entry.status,
                                         entry.response_bytes, entry.duration_us,
                                         std::string(entry.peer),
                                         std::string(entry.request_id)});
    };
    server_ = std::make_unique<HttpServer>(&loop_, std::move(options));
    const bool listening = server_->Listen().ok();
    started->set_value(listening ? server_->port() : 0);
    if (listening) {
      uv_run(&loop_, UV_RUN_DEFAULT);  // Until the destructor's posted function closes all.
    }
    server_.reset();
    poster_->Close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    const int close_rc = uv_loop_close(&loop_);
    CL_ASSERT(close_rc == 0);
  }

  uv_loop_t loop_;
  std::thread thread_;
  uint16_t port_ = 0;
  bool tls_ = false;
  std::unique_ptr<LoopPoster> poster_;
  std::unique_ptr<StreamHandler> handler_;
  std::unique_ptr<HttpServer> server_;  // Loop thread only.
  std::mutex mutex_;
  std::vector<AccessRecord> access_log_;  // Guarded by mutex_.
};

// ---- Client helpers (test thread). ----

std::unique_ptr<WireConnection> Connect(const StreamServer& server) {
  auto connection = WireConnection::Connect(server.target());
  INFO(connection.status().ToString());
  REQUIRE(connection.ok());
  return std::move(*connection);
}

WireResponse Read(WireConnection& connection, int timeout_ms = 5000, bool head = false) {
  auto response = connection.ReadResponse(timeout_ms, head);
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  return std::move(*response);
}

void Send(WireConnection& connection, std::string_view bytes) {
  Status status = connection.Send(bytes);
  INFO(status.ToString());
  REQUIRE(status.ok());
}

bool Eventually(const std::function<bool()>& predicate, int timeout_ms = 5000) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (!predicate()) {
    if (MonotonicMs() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string PostHead(std::string_view target, uint64_t length, std::string_view extra = "") {
  return "POST " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra) +
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

// Sends size pattern bytes in pieces of at most piece bytes, generated as they go.
void SendPattern(WireConnection& connection, uint64_t size, size_t piece = kMiB) {
  std::string buffer;
  for (uint64_t offset = 0; offset < size; offset += buffer.size()) {
    buffer.resize(static_cast<size_t>(std::min<uint64_t>(piece, size - offset)));
    FillPattern(offset, buffer.data(), buffer.size());
    Status status = connection.Send(buffer, 20000);
    INFO(status.ToString());
    REQUIRE(status.ok());
  }
}

// One response read straight from a plain TCP socket without keeping its body: the body is
// checked against the pattern as it arrives.
struct StreamedResponse {
  std::string head;             // Up to and including the blank line.
  uint64_t content_length = 0;
  uint64_t body_bytes = 0;      // Received.
  uint64_t mismatches = 0;
  bool complete = false;        // body_bytes == content_length before close or timeout.
};

StreamedResponse ReadStreamed(int fd, int timeout_ms) {
  StreamedResponse out;
  const int64_t deadline = MonotonicMs() + timeout_ms;
  std::vector<char> buffer(256 * 1024);
  std::string pending;
  bool in_body = false;
  while (!in_body || out.body_bytes < out.content_length) {
    const int64_t left = deadline - MonotonicMs();
    pollfd poll_fd{fd, POLLIN, 0};
    if (left <= 0 || poll(&poll_fd, 1, static_cast<int>(left)) <= 0) {
      return out;
    }
    const ssize_t n = recv(fd, buffer.data(), buffer.size(), 0);
    if (n <= 0) {
      return out;  // Closed (or reset) before the end.
    }
    std::string_view got(buffer.data(), static_cast<size_t>(n));
    if (!in_body) {
      pending.append(got);
      const size_t end = pending.find("\r\n\r\n");
      if (end == std::string::npos) {
        continue;
      }
      out.head = pending.substr(0, end + 4);
      const size_t length = out.head.find("Content-Length: ");
      if (length == std::string::npos) {
        return out;
      }
      out.content_length = std::strtoull(out.head.c_str() + length + 16, nullptr, 10);
      got = std::string_view(pending).substr(end + 4);
      in_body = true;
    }
    got = got.substr(0, std::min<uint64_t>(got.size(), out.content_length - out.body_bytes));
    out.mismatches += PatternMismatches(out.body_bytes, got);
    out.body_bytes += got.size();
  }
  out.complete = true;
  return out;
}

// ---- Request bodies into a sink. ----

TEST_CASE("a sink receives exactly the body, Content-Length or chunked, past body_bytes_max") {
  HttpLimits limits;
  limits.body_bytes_max = 1024;  // Applies to buffered bodies only.
  auto server = StreamServer::Start(limits);
  auto connection = Connect(*server);

  const uint64_t size = 300'001;
  Send(*connection, PostHead("/sink?keep=1048576", size));
  SendPattern(*connection, size, 4096);
  WireResponse whole = Read(*connection);
  REQUIRE(whole.status == 200);
  REQUIRE(whole.body == "bytes=300001 bad=0");

  // Chunked, with chunk sizes that straddle reads; the sink sees the decoded bytes only.
  const std::vector<size_t> chunks = {1, 7, 4096, 65536 + 3, 100'000, 2};
  std::string chunked = "POST /sink?keep=1048576 HTTP/1.1\r\nHost: test\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n";
  uint64_t offset = 0;
  for (size_t chunk : chunks) {
    char line[32];
    snprintf(line, sizeof(line), "%zx\r\n", chunk);
    chunked += line + Pattern(offset, chunk) + "\r\n";
    offset += chunk;
  }
  chunked += "0\r\n\r\n";
  Send(*connection, chunked);
  WireResponse decoded = Read(*connection);
  REQUIRE(decoded.status == 200);
  REQUIRE(decoded.body == "bytes=" + std::to_string(offset) + " bad=0");

  // "Expect: 100-continue" works as for a buffered body.
  Send(*connection, PostHead("/sink?keep=100", 10, "Expect: 100-continue\r\n"));
  REQUIRE(Read(*connection).status == 100);
  Send(*connection, Pattern(0, 10));
  REQUIRE(Read(*connection).body == "bytes=10 bad=0");

  // A buffered body is still held to body_bytes_max by its declared length.
  Send(*connection, PostHead("/buffer", 2000));
  WireResponse too_large = Read(*connection);
  REQUIRE(too_large.status == 413);
  REQUIRE(connection->ReadUntilClose().ok());

  std::vector<HandledSeen> handled = server->handler().Handled();
  REQUIRE(handled.size() == 3);
  REQUIRE(handled[0].sink_set);
  REQUIRE(handled[0].body_size == 0);
  REQUIRE(handled[0].sink_kept == Pattern(0, size));  // Byte for byte.
  REQUIRE(handled[1].sink_set);
  REQUIRE(handled[1].body_size == 0);
  REQUIRE(handled[1].sink_kept == Pattern(0, offset));
  REQUIRE(handled[2].sink_kept == Pattern(0, 10));

  // StreamBody saw the whole head, and the same id Handle got.
  std::vector<HeadSeen> heads = server->handler().Heads();
  REQUIRE(heads.size() == 4);
  for (size_t i = 0; i < 3; i++) {
    REQUIRE(heads[i].method == "POST");
    REQUIRE(heads[i].path == "/sink");
    REQUIRE(heads[i].peer == LocalAddress(connection->fd()));
    REQUIRE(!heads[i].tls);
    REQUIRE(heads[i].body_empty);
    REQUIRE(!heads[i].id.empty());
    REQUIRE(heads[i].id == handled[i].id);
  }
  REQUIRE(heads[3].path == "/buffer");
  REQUIRE(server->counters().sinks_alive == 0);
  // The 100 Continue is not a response of its own.
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 4; }));
  std::vector<AccessRecord> log = server->AccessLog();
  REQUIRE(log[0].request_id == heads[0].id);
  REQUIRE(log[3].status == 413);
  REQUIRE(log[3].request_id == heads[3].id);  // The 413 carries the id the head was given.
}

TEST_CASE("a streamed request after unanswered ones is answered in order") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  std::string burst = MakeRequest("GET", "/delay?ms=300") + MakeRequest("GET", "/delay?ms=10");
  burst += PostHead("/sink", 100'000) + Pattern(0, 100'000) + MakeRequest("GET", "/small");
  Send(*connection, burst);
  REQUIRE(Read(*connection).body == "delayed");
  REQUIRE(Read(*connection).body == "delayed");
  REQUIRE(Read(*connection).body == "bytes=100000 bad=0");
  REQUIRE(Read(*connection).body == "small");
}

TEST_CASE("a request refused on its head is answered at once, and its body is never read") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  // An earlier request still unanswered: the refusal waits for its answer, then goes out
  // without the client sending a byte of the 10 GB it announces, and without 100 Continue.
  Send(*connection, MakeRequest("GET", "/delay?ms=200") +
                        PostHead("/reject", 10'000'000'000ULL, "Expect: 100-continue\r\n"));
  REQUIRE(Read(*connection).body == "delayed");
  WireResponse refused = Read(*connection);
  REQUIRE(refused.status == 401);
  REQUIRE(refused.body.find("no credentials") != std::string::npos);
  REQUIRE(refused.Header("Connection") == "close");
  REQUIRE(connection->ClosedSilently(3000));
  const std::string local = LocalAddress(connection->fd());
  connection.reset();  // Ends the server's linger at once.

  std::vector<HeadSeen> heads = server->handler().Heads();
  REQUIRE(heads.size() == 1);
  REQUIRE(heads[0].peer == local);
  REQUIRE(!heads[0].id.empty());
  std::vector<HandledSeen> handled = server->handler().Handled();
  REQUIRE(handled.size() == 1);  // Only /delay: Handle never saw /reject.
  REQUIRE(handled[0].path == "/delay");
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 2; }));
  AccessRecord entry = server->AccessLog()[1];
  REQUIRE(entry.status == 401);
  REQUIRE(entry.method == "POST");
  REQUIRE(entry.path == "/reject");
  REQUIRE(entry.request_id == heads[0].id);
  REQUIRE(Eventually([&] { return server->Stats().connections_open == 0; }));
  HttpStats stats = server->Stats();
  REQUIRE(stats.requests_total == 2);
  REQUIRE(stats.responses_by_class[4] == 1);
  REQUIRE(stats.rejected_malformed_total == 0);
  REQUIRE(stats.rejected_body_too_large_total == 0);
  REQUIRE(server->counters().sinks_alive == 0);
}

TEST_CASE("a sink that refuses mid-body gets its request handled at once, then the close") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  Send(*connection, PostHead("/sink?refuse_after=100000", 10 * kMiB));
  SendPattern(*connection, kMiB, 64 * 1024);  // A tenth of it: the answer comes before the end.
  WireResponse response = Read(*connection);
  REQUIRE(response.status == 507);
  REQUIRE(response.body.rfind("refused at ", 0) == 0);
  const uint64_t refused_at = std::strtoull(response.body.c_str() + 11, nullptr, 10);
  REQUIRE(refused_at > 100'000);
  REQUIRE(refused_at <= kMiB);
  REQUIRE(response.Header("Connection") == "close");
  auto rest = connection->ReadUntilClose(5000);
  REQUIRE(rest.ok());
  REQUIRE(rest->empty());

  std::vector<HandledSeen> handled = server->handler().Handled();
  REQUIRE(handled.size() == 1);
  REQUIRE(handled[0].sink_set);
  REQUIRE(handled[0].sink_refused);
  REQUIRE(handled[0].body_size == 0);
  REQUIRE(handled[0].sink_mismatches == 0);
  REQUIRE(server->counters().writes_after_refusal == 0);
  REQUIRE(server->counters().sinks_alive == 0);
}

TEST_CASE("a streamed body's deadline counts from its last byte; a buffered one's does not") {
  HttpLimits limits;
  limits.body_timeout_ms = 400;
  auto server = StreamServer::Start(limits);

  // 12 bytes, one every 100 ms: 1.2 s in all, three times the deadline, never 400 ms silent.
  auto slow_send = [&](const std::string& target) {
    auto connection = Connect(*server);
    Send(*connection, PostHead(target, 12));
    const int64_t start = MonotonicMs();
    for (uint64_t i = 0; i < 12; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (!connection->Send(Pattern(i, 1)).ok()) {
        break;  // The buffered request was refused and the connection closed.
      }
    }
    WireResponse response = Read(*connection);
    return std::make_pair(response, MonotonicMs() - start);
  };
  auto [streamed, streamed_ms] = slow_send("/sink");
  REQUIRE(streamed.status == 200);
  REQUIRE(streamed.body == "bytes=12 bad=0");
  REQUIRE(streamed_ms >= 1100);
  // The same sender with a buffered body: the whole body had 400 ms.
  REQUIRE(slow_send("/buffer").first.status == 408);

  // A streamed body that stalls gets 408 once it has been silent for body_timeout_ms.
  auto stalled = Connect(*server);
  Send(*stalled, PostHead("/sink", 12) + Pattern(0, 5));
  const int64_t start = MonotonicMs();
  WireResponse timeout = Read(*stalled, 5000);
  const int64_t elapsed = MonotonicMs() - start;
  REQUIRE(timeout.status == 408);
  INFO("stalled body refused after " << elapsed << " ms");
  REQUIRE(elapsed >= 300);
  REQUIRE(elapsed < 3000);
  REQUIRE(stalled->ReadUntilClose(5000).ok());
  REQUIRE(server->counters().sinks_alive == 0);  // Released with the abandoned request.
  std::vector<HeadSeen> heads = server->handler().Heads();
  REQUIRE(heads.size() == 3);
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 3; }));
  REQUIRE(server->AccessLog()[2].request_id == heads[2].id);  // The id StreamBody saw.
  REQUIRE(server->Stats().rejected_timeout_total == 2);
}

TEST_CASE("a 256 MiB upload into a sink costs a bounded amount of memory") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  Send(*connection, PostHead("/sink", kMiB));  // Warm up the buffers on both sides.
  SendPattern(*connection, kMiB);
  REQUIRE(Read(*connection).body == "bytes=1048576 bad=0");

  const uint64_t size = 256 * kMiB;
  const uint64_t before = StartPeakRss();
  const int64_t start = MonotonicMs();
  Send(*connection, PostHead("/sink", size));
  SendPattern(*connection, size);
  WireResponse response = Read(*connection, 30000);
  const uint64_t after = PeakRss(before);
  REQUIRE(response.body == "bytes=" + std::to_string(size) + " bad=0");
  const int64_t growth = static_cast<int64_t>(after) - static_cast<int64_t>(before);
  WARN("256 MiB upload: RSS " << before / 1024 << " kB, peak " << after / 1024 << " kB (+"
                              << growth / 1024 << " kB), " << MonotonicMs() - start << " ms");
  REQUIRE(growth < static_cast<int64_t>(16 * kMiB));
}

// ---- Response bodies from a source. ----

TEST_CASE("a response from a BodySource arrives byte for byte and is logged in full") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  const uint64_t size = 3 * kMiB + 17;
  Send(*connection, MakeRequest("GET", "/source?bytes=" + std::to_string(size), "",
                                "Connection: close\r\n"));
  auto raw = connection->ReadUntilClose(10000);
  REQUIRE(raw.ok());
  const size_t head_end = raw->find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  const std::string head = raw->substr(0, head_end + 4);
  REQUIRE(head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  REQUIRE(head.find("\r\nContent-Length: " + std::to_string(size) + "\r\n") != std::string::npos);
  REQUIRE(head.find("\r\nConnection: close\r\n") != std::string::npos);
  REQUIRE(head.find("Transfer-Encoding") == std::string::npos);
  REQUIRE(raw->size() - head.size() == size);
  REQUIRE(raw->substr(head.size()) == Pattern(0, size));

  REQUIRE(Eventually([&] { return server->AccessLog().size() == 1; }));
  AccessRecord entry = server->AccessLog()[0];
  REQUIRE(entry.status == 200);
  REQUIRE(entry.path == "/source");
  REQUIRE(entry.response_bytes == raw->size());  // Head and body.
  REQUIRE(server->counters().source_bytes == size);
  REQUIRE(server->counters().sources_alive == 0);  // Released once done.
}

TEST_CASE("a file source goes by sendfile over plain TCP, byte for byte, a slow reader too") {
  auto server = StreamServer::Start();
  const uint64_t from = 1000;
  const uint64_t size = 20 * kMiB + 1;
  {
    auto connection = Connect(*server);
    Send(*connection, MakeRequest("GET", "/file?from=1000&bytes=" + std::to_string(size)) +
                          MakeRequest("GET", "/small"));
    WireResponse streamed = Read(*connection, 20000);
    REQUIRE(streamed.status == 200);
    REQUIRE(streamed.body.size() == size);
    REQUIRE(PatternMismatches(from, streamed.body) == 0);
    REQUIRE(Read(*connection).body == "small");  // The framing held.
  }
  // All of it went by sendfile: when the socket was full the server waited for it to drain
  // instead of copying a chunk through user space.
  REQUIRE(server->counters().file_sent == size);
  REQUIRE(server->counters().file_read == 0);
  // A reader that takes its time: the socket fills again and again, and each time the server
  // waits for it to drain.
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int small = 16 * 1024;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(server->target().port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  const uint64_t slow_size = 4 * kMiB + 7;
  const std::string request = MakeRequest("GET", "/file?from=3&bytes=" +
                                                     std::to_string(slow_size), "",
                                          "Connection: close\r\n");
  REQUIRE(write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  std::string raw;
  char buffer[8192];
  for (int reads = 0;; reads++) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) {
      break;
    }
    raw.append(buffer, static_cast<size_t>(n));
    if (reads % 64 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  close(fd);
  const size_t head_end = raw.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  REQUIRE(raw.size() - head_end - 4 == slow_size);
  REQUIRE(PatternMismatches(3, std::string_view(raw).substr(head_end + 4)) == 0);
  REQUIRE(Eventually([&] { return server->counters().sources_alive == 0; }));
  REQUIRE(server->counters().file_read == 0);
  REQUIRE(server->counters().file_sent == size + slow_size);
}

TEST_CASE("a BodySource over TLS arrives byte for byte") {
  static cloister::testing::TempDir* dir = new cloister::testing::TempDir();
  auto pki = cloister::testing::MakeTestPki(dir->path());
  INFO(pki.status().ToString());
  REQUIRE(pki.ok());
  auto settings = ParseTlsSettings(TlsConfig{pki->server_cert, pki->server_key, "", "", ""});
  REQUIRE(settings.ok());
  auto server = StreamServer::Start(HttpLimits(), *settings);
  auto connection = Connect(*server);
  const uint64_t size = 5 * kMiB + 3;
  Send(*connection, MakeRequest("GET", "/source?bytes=" + std::to_string(size)) +
                        MakeRequest("GET", "/small"));
  WireResponse streamed = Read(*connection, 20000);
  REQUIRE(streamed.status == 200);
  REQUIRE(streamed.Header("Content-Length") == std::to_string(size));
  REQUIRE(streamed.body == Pattern(0, size));
  REQUIRE(Read(*connection).body == "small");  // The framing held: the next response follows.
  std::vector<HandledSeen> handled = server->handler().Handled();
  REQUIRE(handled.size() == 2);
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 2; }));
  REQUIRE(server->AccessLog()[0].response_bytes > size);
  REQUIRE(server->counters().sources_alive == 0);
}

TEST_CASE("HEAD with a BodySource gets its Content-Length and no body; nothing is read") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  Send(*connection, MakeRequest("HEAD", "/source?bytes=1000"));
  WireResponse head = Read(*connection, 5000, true);
  REQUIRE(head.status == 200);
  REQUIRE(head.Header("Content-Length") == "1000");
  REQUIRE(head.body.empty());
  // No body byte followed the head: the next response starts right after it.
  Send(*connection, MakeRequest("GET", "/small"));
  REQUIRE(Read(*connection).body == "small");
  REQUIRE(connection->buffered().empty());
  REQUIRE(server->counters().source_reads == 0);
  REQUIRE(server->counters().sources_alive == 0);
}

TEST_CASE("a source with a body, or on a 204, is a handler bug: 500") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  Send(*connection, MakeRequest("GET", "/both"));
  WireResponse both = Read(*connection);
  REQUIRE(both.status == 500);
  REQUIRE(both.body.find("invalid response") != std::string::npos);
  Send(*connection, MakeRequest("GET", "/empty-source"));
  REQUIRE(Read(*connection).status == 500);
  Send(*connection, MakeRequest("GET", "/small"));
  REQUIRE(Read(*connection).body == "small");
  REQUIRE(server->counters().source_reads == 0);
  REQUIRE(server->counters().sources_alive == 0);
}

TEST_CASE("a source of unknown length is sent chunked, pausing until it wakes the connection") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  Send(*connection, MakeRequest("GET", "/chunked?pieces=3&ms=20", "", "Connection: close\r\n"));
  auto raw = connection->ReadUntilClose(10000);
  REQUIRE(raw.ok());
  const size_t head_end = raw->find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  const std::string head = raw->substr(0, head_end + 4);
  CHECK(head.find("\r\nTransfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(head.find("Content-Length") == std::string::npos);
  CHECK(raw->substr(head.size()) ==
        "8\r\npiece 0\n\r\n8\r\npiece 1\n\r\n8\r\npiece 2\n\r\n0\r\n\r\n");
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 1; }));
  CHECK(server->AccessLog()[0].response_bytes == raw->size());
  CHECK(server->counters().sources_alive == 0);

  // Kept alive: the next request on the connection follows the last chunk.
  auto again = Connect(*server);
  Send(*again, MakeRequest("GET", "/chunked?pieces=1&ms=1") +
                   MakeRequest("GET", "/small", "", "Connection: close\r\n"));
  auto both = again->ReadUntilClose(10000);
  REQUIRE(both.ok());
  CHECK(both->find("8\r\npiece 0\n\r\n0\r\n\r\nHTTP/1.1 200") != std::string::npos);
  CHECK(both->ends_with("small"));
}

TEST_CASE("a chunked source: HTTP/1.0 gets a 500; a client that goes away releases it") {
  auto server = StreamServer::Start();
  auto old = Connect(*server);
  Send(*old, "GET /chunked?pieces=2&ms=1 HTTP/1.0\r\n\r\n");
  CHECK(Read(*old).status == 500);
  auto connection = Connect(*server);
  Send(*connection, MakeRequest("GET", "/chunked?pieces=100000&ms=10"));
  REQUIRE(Eventually([&] { return server->counters().source_bytes >= 16; }));
  CHECK(server->counters().sources_alive == 1);
  connection->Reset();
  REQUIRE(Eventually([&] { return server->counters().sources_alive == 0; }));
}

TEST_CASE("responses pipelined after a streamed one follow its last byte, in order") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  const uint64_t size = 4 * kMiB + 1;
  Send(*connection, MakeRequest("GET", "/source?bytes=" + std::to_string(size)) +
                        MakeRequest("GET", "/small") +
                        MakeRequest("GET", "/source?bytes=0") +
                        PostHead("/sink", 1000) + Pattern(0, 1000) +
                        MakeRequest("GET", "/source?bytes=70000"));
  WireResponse first = Read(*connection, 10000);
  REQUIRE(first.body.size() == size);
  REQUIRE(PatternMismatches(0, first.body) == 0);
  REQUIRE(Read(*connection).body == "small");
  WireResponse empty = Read(*connection);
  REQUIRE(empty.status == 200);
  REQUIRE(empty.Header("Content-Length") == "0");
  REQUIRE(Read(*connection).body == "bytes=1000 bad=0");
  REQUIRE(Read(*connection).body == Pattern(0, 70000));
  REQUIRE(Eventually([&] { return server->AccessLog().size() == 5; }));
  std::vector<AccessRecord> log = server->AccessLog();
  REQUIRE(log[0].response_bytes > size);
  REQUIRE(log[0].response_bytes < size + 512);
  REQUIRE(server->counters().sources_alive == 0);
}

TEST_CASE("a source that fails or ends early closes the connection short of Content-Length") {
  auto server = StreamServer::Start();
  for (const char* query : {"fail_at=1048576", "short_at=1048576"}) {
    auto connection = Connect(*server);
    Send(*connection, MakeRequest("GET", std::string("/source?bytes=4194304&") + query) +
                          MakeRequest("GET", "/small"));
    StreamedResponse response = ReadStreamed(connection->fd(), 10000);
    INFO(query << ": " << response.body_bytes << " body bytes");
    REQUIRE(response.head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    REQUIRE(response.content_length == 4 * kMiB);
    REQUIRE(!response.complete);
    REQUIRE(response.body_bytes <= kMiB);
    REQUIRE(response.mismatches == 0);
  }
  REQUIRE(Eventually([&] { return server->Stats().connections_open == 0; }));
  REQUIRE(server->counters().sources_alive == 0);
  REQUIRE(server->AccessLog().empty());  // Neither response was written in full...
  REQUIRE(server->Stats().responses_total == 0);  // ...nor the /small after it.
}

TEST_CASE("a client that stops reading a streamed body is closed after send_timeout_ms") {
  HttpLimits limits;
  limits.send_timeout_ms = 1000;
  auto server = StreamServer::Start(limits);
  auto connection = Connect(*server);
  Send(*connection, MakeRequest("GET", "/source?bytes=" + std::to_string(256 * kMiB)));
  const int64_t start = MonotonicMs();
  REQUIRE(Eventually([&] { return server->Stats().send_timeouts_total == 1; }, 10000));
  const int64_t elapsed = MonotonicMs() - start;
  INFO("closed after " << elapsed << " ms");
  REQUIRE(elapsed >= 900);
  REQUIRE(server->Stats().connections_open == 0);
  REQUIRE(server->counters().sources_alive == 0);  // Released with the connection.
  // The reads followed the client: only what the socket buffers and the backlog could hold.
  const uint64_t read = server->counters().source_bytes;
  WARN("read " << read / 1024 << " kB of the source for a client that read nothing");
  REQUIRE(read < 64 * kMiB);
}

TEST_CASE("a client that stops reading a sendfile body is closed after send_timeout_ms") {
  HttpLimits limits;
  limits.send_timeout_ms = 1000;
  auto server = StreamServer::Start(limits);
  auto connection = Connect(*server);
  const uint64_t size = 64 * kMiB;
  Send(*connection, MakeRequest("GET", "/file?from=0&bytes=" + std::to_string(size)));
  const int64_t start = MonotonicMs();
  REQUIRE(Eventually([&] { return server->Stats().send_timeouts_total == 1; }, 10000));
  REQUIRE(MonotonicMs() - start >= 900);
  REQUIRE(server->Stats().connections_open == 0);
  REQUIRE(server->counters().sources_alive == 0);
  // It stopped at what the socket buffers hold: nothing more went while the socket was full.
  REQUIRE(server->counters().file_sent < size / 4);
}

TEST_CASE("a graceful Shutdown lets a streamed body finish, then closes") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  const uint64_t size = 16 * kMiB;
  Send(*connection, MakeRequest("GET", "/source?bytes=" + std::to_string(size)));
  REQUIRE(Eventually([&] { return server->counters().source_bytes > 0; }));
  std::future<void> done = server->Shutdown();
  StreamedResponse response = ReadStreamed(connection->fd(), 10000);
  REQUIRE(response.complete);
  REQUIRE(response.mismatches == 0);
  REQUIRE(connection->ClosedSilently(3000));  // Nothing after the body but the FIN.
  connection.reset();                         // Ends the server's linger.
  REQUIRE(done.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  REQUIRE(server->counters().sources_alive == 0);
}

TEST_CASE("a 256 MiB download from a source costs a bounded amount of memory") {
  auto server = StreamServer::Start();
  auto connection = Connect(*server);
  Send(*connection, MakeRequest("GET", "/source?bytes=1048576"));  // Warm up.
  REQUIRE(ReadStreamed(connection->fd(), 10000).complete);

  const uint64_t size = 256 * kMiB;
  const uint64_t before = StartPeakRss();
  const int64_t start = MonotonicMs();
  Send(*connection, MakeRequest("GET", "/source?bytes=" + std::to_string(size)));
  StreamedResponse response = ReadStreamed(connection->fd(), 60000);
  const uint64_t after = PeakRss(before);
  REQUIRE(response.complete);
  REQUIRE(response.body_bytes == size);
  REQUIRE(response.mismatches == 0);
  const int64_t growth = static_cast<int64_t>(after) - static_cast<int64_t>(before);
  WARN("256 MiB download: RSS " << before / 1024 << " kB, peak " << after / 1024 << " kB (+"
                                << growth / 1024 << " kB), " << MonotonicMs() - start << " ms");
  REQUIRE(growth < static_cast<int64_t>(16 * kMiB));
  Send(*connection, MakeRequest("GET", "/small"));
  WireResponse small = Read(*connection);
  REQUIRE(small.body == "small");
}

}  // namespace
}  // namespace cloister::api
