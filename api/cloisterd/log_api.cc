#include "api/cloisterd/log_api.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <utility>

#include "api/cloisterd/blob_io.h"
#include "api/cloisterd/envelope.h"
#include "api/cloisterd/request_fields.h"
#include "reducers/view_json.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

// The page GET /log/streamer serves: no external assets; FILE is replaced by the file's name
// as a JSON string (names hold only [A-Za-z0-9._@/-], so nothing in it can close the script).
constexpr const char* kStreamerPage = R"html(<!doctype html>
<html><head><meta charset="utf-8"><title>cloister log</title>
<style>body{margin:0;font:13px monospace;background:#111;color:#ddd}
#head{padding:6px 8px;background:#222}pre{margin:0;padding:8px;white-space:pre-wrap}</style>
</head><body><div id="head"></div><pre id="log"></pre><script>
const file = FILE;
const out = document.getElementById('log');
document.getElementById('head').textContent = 'log ' + file;
let offset = 0;
async function follow() {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const r = await fetch('/log/stream?follow=1&file=' + encodeURIComponent(file) +
                            '&offset=' + offset, {credentials: 'same-origin'});
      if (!r.ok) { out.append('\n[' + r.status + ' ' + (await r.text()) + ']\n'); return; }
      const reader = r.body.getReader();
      const text = new TextDecoder();
      for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        offset += value.length;
        out.append(text.decode(value, {stream: true}));
        window.scrollTo(0, document.body.scrollHeight);
      }
    } catch (e) {}
    await new Promise(resume => setTimeout(resume, 2000));
  }
}
follow();
</script></body></html>
)html";

// host and service query parameters, each absent or a valid name; false once *error is set.
bool NameParam(const api::Request& request, const char* key, bool required, std::string* out,
               std::string* error) {
  *out = QueryParam(request.query, key).value_or("");
  if (out->empty() && !required) {
    return true;
  }
  const std::string problem = registry::LogStore::NameProblem(*out);
  if (!problem.empty()) {
    *error = std::string(key) + ": " + problem;
    return false;
  }
  return true;
}

// The optional host and service filters; false once it answered 400.
bool FilterParams(const api::Request& request, std::string* host, std::string* service,
                  const LogApi::Respond& respond) {
  std::string error;
  if (!NameParam(request, "host", false, host, &error) ||
      !NameParam(request, "service", false, service, &error)) {
    respond(api::FailResponse(400, error));
    return false;
  }
  return true;
}

}  // namespace

// A log file followed as it grows: a chunked response body (http_types.h, kSizeUnknown) that
// reads what is there, then waits (kPending) until Poll finds the file longer.
class LogApi::Follower final : public api::BodySource {
 public:
  Follower(int fd, uint64_t offset, int64_t now_ns)
      : fd_(fd), offset_(offset), started_ns_(now_ns), data_ns_(now_ns) {}
  ~Follower() override { ::close(fd_); }
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  uint64_t size() const override { return kSizeUnknown; }
  void SetWake(std::function<void()> wake) override { wake_ = std::move(wake); }

  int64_t Read(char* buffer, size_t max) override {
    if (ended_) {
      return 0;
    }
    ssize_t got;
    do {
      got = ::pread(fd_, buffer, max, static_cast<off_t>(offset_));
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      return -1;
    }
    if (got == 0) {
      waiting_ = true;
      return kPending;
    }
    offset_ += static_cast<uint64_t>(got);
    return got;
  }

  // Wakes the connection when the file grew while it waited, or when a limit ends the stream.
  void Poll(int64_t now_ns) {
    if (!waiting_ || !wake_) {
      return;
    }
    struct stat st {};
    const bool grew = ::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) > offset_;
    if (grew) {
      data_ns_ = now_ns;
    } else if (now_ns - data_ns_ < kFollowIdleNs && now_ns - started_ns_ < kFollowTotalNs) {
      return;
    } else {
      ended_ = true;
    }
    waiting_ = false;
    wake_();  // May read, end and release this (the caller holds a reference).
  }

 private:
  int fd_;
  uint64_t offset_;
  int64_t started_ns_;
  int64_t data_ns_;  // When a byte last arrived (or the stream began).
  bool waiting_ = false;
  bool ended_ = false;
  std::function<void()> wake_;
};

LogApi::LogApi(registry::LogStore* store, engine::Clock* clock, Offload offload)
    : store_(store), clock_(clock), offload_(std::move(offload)) {}

LogApi::~LogApi() { *alive_ = false; }

void LogApi::Run(std::function<void()> work, std::function<void()> after) {
  auto guarded = [alive = alive_, after = std::move(after)] {
    if (*alive) {
      after();
    }
  };
  if (offload_) {
    offload_(std::move(work), std::move(guarded));
  } else {
    work();
    guarded();
  }
}

bool LogApi::Handle(const api::Request& request, Respond& respond) {
  const std::string& path = request.path;
  if (path == "/log") {
    Append(request, std::move(respond));
  } else if (path == "/log/event") {
    AppendEvents(request, std::move(respond));
  } else if (path == "/log/files") {
    Files(request, std::move(respond));
  } else if (path == "/log/streamer") {
    Streamer(request, std::move(respond));
  } else if (path == "/log/stream") {
    Stream(request, std::move(respond));
  } else if (path == "/log/archive") {
    Archive(request, std::move(respond));
  } else {
    return false;
  }
  return true;
}

void LogApi::Tick() {
  const int64_t now_ns = clock_->MonotonicNs();
  std::erase_if(followers_, [](const std::weak_ptr<Follower>& f) { return f.expired(); });
  // A copy: a wake may end a stream, and nothing here may add one meanwhile, but stay safe.
  const std::vector<std::weak_ptr<Follower>> followers = followers_;
  for (const std::weak_ptr<Follower>& weak : followers) {
    if (std::shared_ptr<Follower> follower = weak.lock()) {
      follower->Poll(now_ns);
    }
  }
}

void LogApi::Append(const api::Request& request, Respond respond) {
  std::string host;
  std::string service;
  std::string error;
  if (!NameParam(request, "host", true, &host, &error) ||
      !NameParam(request, "service", true, &service, &error)) {
    respond(api::FailResponse(400, error));
    return;
  }
  if (request.body.size() > kRowsBytesMax) {
    respond(api::FailResponse(413, "a log body may be at most " +
                                       std::to_string(kRowsBytesMax) + " bytes"));
    return;
  }
  if (request.body.empty()) {
    respond(api::FailResponse(400, "the body must hold at least one row"));
    return;
  }
  if (request.body.find('\0') != std::string::npos) {
    respond(api::FailResponse(400, "log rows are text: the body must not contain NUL bytes"));
    return;
  }
  auto status = std::make_shared<Status>();
  auto work = [this, status, host, service, rows = request.body] {
    *status = store_->Append(host, service, rows);
  };
  auto after = [this, status, file = host + "/" + service, bytes = request.body.size(),
                respond = std::move(respond)] {
    if (!status->ok()) {
      respond(StorageFailure(*status));
      return;
    }
    Tick();  // Followers of this file see the rows now, not at the next tick.
    respond(OkResponse(Json{{"file", file}, {"bytes", bytes}}.dump()));
  };
  Run(std::move(work), std::move(after));
}

void LogApi::AppendEvents(const api::Request& request, Respond respond) {
  const nlohmann::json parsed = nlohmann::json::parse(request.body, nullptr, false);
  const bool objects =
      parsed.is_object() ||
      (parsed.is_array() && !parsed.empty() &&
       std::all_of(parsed.begin(), parsed.end(), [](const auto& e) { return e.is_object(); }));
  if (parsed.is_discarded() || !objects) {
    respond(api::FailResponse(400, "the body must be a JSON object or a non-empty array of "
                                   "JSON objects"));
    return;
  }
  if (parsed.is_array() && parsed.size() > kEventsMax) {
    respond(api::FailResponse(413, "at most " + std::to_string(kEventsMax) +
                                       " events in one request"));
    return;
  }
  const std::string now = reducers::TimeRfc3339(clock_->NowNs());
  std::vector<std::string> lines;
  for (const nlohmann::json& event : parsed.is_array() ? parsed : nlohmann::json::array({parsed})) {
    nlohmann::json line = event;
    line["server_time"] = now;
    lines.push_back(line.dump());  // dump() escapes newlines: one line per event.
  }
  auto status = std::make_shared<Status>();
  const size_t count = lines.size();
  auto work = [this, status, lines = std::move(lines)] { *status = store_->AppendEvents(lines); };
  auto after = [this, status, count, respond = std::move(respond)] {
    if (!status->ok()) {
      respond(StorageFailure(*status));
      return;
    }
    Tick();
    respond(OkResponse(Json{{"events", count}}.dump()));
  };
  Run(std::move(work), std::move(after));
}

void LogApi::Files(const api::Request& request, Respond respond) {
  std::string host;
  std::string service;
  if (!FilterParams(request, &host, &service, respond)) {
    return;
  }
  Json list = Json::array();
  for (const registry::LogStore::FileInfo& info : store_->List(host, service)) {
    list.push_back({{"file", info.file}, {"size", info.size}});
  }
  respond(OkResponse(list.dump()));
}

void LogApi::Streamer(const api::Request& request, Respond respond) {
  const std::string file = QueryParam(request.query, "file").value_or("");
  Result<std::string> path = store_->PathOf(file);
  if (!path.ok() && path.status().code() == StatusCode::kInvalidArgument) {
    respond(api::FailResponse(400, path.status().message()));
    return;
  }
  std::string page = kStreamerPage;
  page.replace(page.find("FILE"), 4, Json(file).dump());
  api::Response response;
  response.content_type = "text/html; charset=utf-8";
  response.headers.Add("Content-Security-Policy",
                       "default-src 'none'; script-src 'unsafe-inline'; "
                       "style-src 'unsafe-inline'; connect-src 'self'");
  response.body = std::move(page);
  respond(std::move(response));
}

void LogApi::Stream(const api::Request& request, Respond respond) {
  const std::string file = QueryParam(request.query, "file").value_or("");
  Result<std::string> path = store_->PathOf(file);
  if (!path.ok()) {
    const bool bad = path.status().code() == StatusCode::kInvalidArgument;
    respond(api::FailResponse(bad ? 400 : 404, path.status().message()));
    return;
  }
  const std::string offset_text = QueryParam(request.query, "offset").value_or("0");
  char* end = nullptr;
  const unsigned long long offset = std::strtoull(offset_text.c_str(), &end, 10);
  const std::string follow_text = QueryParam(request.query, "follow").value_or("1");
  if (offset_text.empty() || *end != '\0' || offset_text.size() > 19 ||
      (follow_text != "0" && follow_text != "1")) {
    respond(api::FailResponse(400, "offset must be a whole number and follow 0 or 1"));
    return;
  }
  const int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    if (fd >= 0) ::close(fd);
    respond(api::FailResponse(404, "no such log file"));
    return;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset > size) {
    ::close(fd);
    respond(api::FailResponse(416, "offset is past the end of the file (" +
                                       std::to_string(size) + " bytes)"));
    return;
  }
  api::Response response;
  response.content_type = "text/plain; charset=utf-8";
  response.headers.Add("X-Log-Size", std::to_string(size));
  // HTTP/1.0 has no chunked encoding: such a client gets what there is now.
  if (follow_text == "0" || request.version_minor == 0) {
    response.body_source = std::make_shared<FileSource>(fd, offset, size - offset);
    respond(std::move(response));
    return;
  }
  std::erase_if(followers_, [](const std::weak_ptr<Follower>& f) { return f.expired(); });
  if (followers_.size() >= kFollowersMax) {
    ::close(fd);
    respond(api::FailResponse(503, "too many followed log streams; retry later"));
    return;
  }
  auto follower = std::make_shared<Follower>(fd, offset, clock_->MonotonicNs());
  followers_.push_back(follower);
  response.body_source = std::move(follower);
  respond(std::move(response));
}

void LogApi::Archive(const api::Request& request, Respond respond) {
  std::string host;
  std::string service;
  if (!FilterParams(request, &host, &service, respond)) {
    return;
  }
  if (archives_ >= kArchivesMax) {
    respond(api::FailResponse(503, "too many log archives being built; retry later"));
    return;
  }
  archives_++;
  struct Job {
    std::vector<registry::LogStore::FileInfo> files;
    int fd = -1;
    uint64_t size = 0;
    Status status;
  };
  auto job = std::make_shared<Job>();
  job->files = store_->List(host, service);
  auto work = [job, root = store_->root()] {
    // A temporary file unlinked at once: it goes when the response releases its descriptor.
    std::string name = root + "/.archive-XXXXXX";
    job->fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (job->fd < 0) {
      job->status = Status::IoError("cannot create a temporary archive file");
      return;
    }
    ::unlink(name.c_str());
    job->status = registry::LogStore::WriteArchive(root, job->files, job->fd);
    struct stat st {};
    if (job->status.ok() && ::fstat(job->fd, &st) == 0) {
      job->size = static_cast<uint64_t>(st.st_size);
    }
  };
  auto after = [this, job, respond = std::move(respond)] {
    archives_--;
    if (!job->status.ok()) {
      if (job->fd >= 0) ::close(job->fd);
      respond(StorageFailure(job->status));
      return;
    }
    api::Response response;
    response.content_type = "application/gzip";
    response.headers.Add("Content-Disposition", "attachment; filename=\"logs.tar.gz\"");
    response.body_source = std::make_shared<FileSource>(job->fd, 0, job->size);
    respond(std::move(response));
  };
  Run(std::move(work), std::move(after));
}

}  // namespace cloister::cloisterd
