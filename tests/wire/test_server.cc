#include "tests/wire/test_server.h"

#include <chrono>
#include <cstdlib>
#include <future>
#include <utility>

namespace cloister::testing {
namespace {

// "ms=250" -> 250 from a query string; 0 if absent.
uint64_t QueryNumber(const std::string& query, const std::string& name) {
  size_t at = query.find(name + "=");
  if (at == std::string::npos) {
    return 0;
  }
  return std::strtoull(query.c_str() + at + name.size() + 1, nullptr, 10);
}

std::string QueryValue(const std::string& query, const std::string& name) {
  size_t at = query.find(name + "=");
  if (at == std::string::npos) {
    return "";
  }
  size_t start = at + name.size() + 1;
  return query.substr(start, query.find('&', start) - start);
}

api::Response Text(int status, std::string body) {
  api::Response response;
  response.status = status;
  response.content_type = "text/plain";
  response.body = std::move(body);
  return response;
}

// A one-shot timer that answers a request; it deletes itself in its close callback.
struct LaterTimer {
  uv_timer_t timer;
  api::ResponseWriter writer;
  std::string body;
};

}  // namespace

class TestServer::Handler : public api::Handler {
 public:
  Handler(uv_loop_t* loop, api::LoopPoster* poster) : loop_(loop), poster_(poster) {}

  ~Handler() override {
    for (std::thread& thread : threads_) {
      thread.join();
    }
  }

  void Handle(api::Request request, api::ResponseWriter writer) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(request);
    }
    const std::string& path = request.path;
    const bool get = request.method == "GET" || request.method == "HEAD";
    if (get && path == "/livez") {
      api::Response response;
      response.content_type = "application/json";
      response.body = "{\"status\":\"OK\",\"message\":\"live\"}";
      writer.Send(std::move(response));
    } else if ((request.method == "POST" || request.method == "PUT") && path == "/echo") {
      api::Response response;
      response.content_type = "application/octet-stream";
      response.body = std::move(request.body);
      writer.Send(std::move(response));
    } else if (get && path == "/later") {
      AnswerLater(QueryNumber(request.query, "ms"), std::move(writer));
    } else if (get && path == "/thread") {
      AnswerFromThread(QueryNumber(request.query, "ms"), std::move(writer));
    } else if (get && path == "/header") {
      const std::string* value = request.headers.Find(QueryValue(request.query, "name"));
      writer.Send(value != nullptr ? Text(200, *value) : api::FailResponse(404, "no such header"));
    } else if (get && path == "/big") {
      writer.Send(Text(200, std::string(QueryNumber(request.query, "bytes"), 'x')));
    } else if (get && path == "/hold") {
      std::lock_guard<std::mutex> lock(mutex_);
      held_.push_back(std::move(writer));
    } else if (get && path == "/drop") {
      // The writer goes out of scope unanswered.
    } else if (get && path == "/bad-header") {
      api::Response response = Text(200, "bad");
      response.headers.Add("X-Split", "a\r\nInjected: yes");
      writer.Send(std::move(response));
    } else {
      writer.Send(api::FailResponse(404, "not found"));
    }
  }

  std::vector<api::Request> Requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

  // Loop thread.
  std::vector<api::ResponseWriter> TakeHeld() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::move(held_);
  }
  size_t HeldCount() {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_.size();
  }

 private:
  void AnswerLater(uint64_t ms, api::ResponseWriter writer) {
    auto* later = new LaterTimer();
    later->writer = std::move(writer);
    later->body = "later " + std::to_string(ms);
    later->timer.data = later;
    const int rc = uv_timer_init(loop_, &later->timer);
    CL_ASSERT(rc == 0);
    uv_timer_start(&later->timer, [](uv_timer_t* timer) {
      auto* self = static_cast<LaterTimer*>(timer->data);
      self->writer.Send(Text(200, self->body));
      uv_close(reinterpret_cast<uv_handle_t*>(timer), [](uv_handle_t* handle) {
        delete static_cast<LaterTimer*>(handle->data);
      });
    }, ms, 0);
  }

  void AnswerFromThread(uint64_t ms, api::ResponseWriter writer) {
    // std::function needs a copyable callable: the move-only writer travels in a shared_ptr.
    auto shared = std::make_shared<api::ResponseWriter>(std::move(writer));
    api::LoopPoster* poster = poster_;
    threads_.emplace_back([poster, shared, ms]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      poster->Post([shared, ms]() { shared->Send(Text(200, "thread " + std::to_string(ms))); });
      shared.reset();
    });
  }

  uv_loop_t* loop_;
  api::LoopPoster* poster_;
  std::vector<std::thread> threads_;  // Loop thread only.
  std::mutex mutex_;
  std::vector<api::Request> requests_;     // Guarded by mutex_.
  std::vector<api::ResponseWriter> held_;  // Guarded by mutex_.
};

TestServer::TestServer(TestServerOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<TestServer>> TestServer::Start(TestServerOptions options) {
  std::unique_ptr<TestServer> server(new TestServer(std::move(options)));
  std::promise<Status> started;
  std::future<Status> ready = started.get_future();
  TestServer* raw = server.get();
  server->loop_thread_ = std::thread([raw, &started]() { raw->LoopMain(&started); });
  Status status = ready.get();
  if (!status.ok()) {
    server->loop_thread_.join();
    server->loop_thread_ = std::thread();
    return status;
  }
  return server;
}

void TestServer::LoopMain(std::promise<Status>* started) {
  const int init_rc = uv_loop_init(&loop_);
  CL_ASSERT(init_rc == 0);
  auto poster = api::LoopPoster::Create(&loop_);
  CL_ASSERT(poster.ok());
  poster_ = std::move(*poster);
  handler_ = std::make_unique<Handler>(&loop_, poster_.get());
  auto listen = api::ParseListenAddress(options_.listen);
  CL_ASSERT(listen.ok());
  api::HttpServerOptions server_options;
  server_options.name = options_.name;
  server_options.listen = *listen;
  server_options.limits = options_.limits;
  server_options.tls = options_.tls;
  server_options.handler = handler_.get();
  server_options.access_log = [this](const api::AccessLogEntry& entry) {
    std::lock_guard<std::mutex> lock(mutex_);
    access_log_.push_back(AccessRecord{std::string(entry.server), std::string(entry.method),
                                       std::string(entry.path), entry.status,
                                       entry.response_bytes, entry.duration_us,
                                       std::string(entry.peer), std::string(entry.request_id)});
  };
  server_ = std::make_unique<api::HttpServer>(&loop_, std::move(server_options));
  Status status = server_->Listen();
  if (status.ok()) {
    port_ = server_->port();
    started->set_value(Status::Ok());
    uv_run(&loop_, UV_RUN_DEFAULT);  // Until Stop closes the poster and the server is shut.
  }
  server_.reset();
  poster_->Close();
  uv_run(&loop_, UV_RUN_DEFAULT);    // Close callbacks, held timers.
  handler_.reset();                  // Joins the /thread workers.
  const int close_rc = uv_loop_close(&loop_);
  CL_ASSERT(close_rc == 0);  // Every handle was closed: nothing leaked.
  poster_.reset();
  if (!status.ok()) {
    started->set_value(status);
  }
}

TestServer::~TestServer() { Stop(); }

void TestServer::Stop() {
  if (!loop_thread_.joinable()) {
    return;
  }
  if (!shutdown_started_ && !Shutdown(5000)) {
    RunOnLoop([this]() { server_->CloseAll(); });
  }
  // Held writers answer nothing more; closing the poster lets uv_run return.
  RunOnLoop([this]() {
    std::vector<api::ResponseWriter> held = handler_->TakeHeld();
    held.clear();
    server_->CloseAll();
  });
  poster_->Post([this]() { poster_->Close(); });
  loop_thread_.join();
}

WireTarget TestServer::target() const {
  WireTarget target;
  target.port = port_;
  target.tls = options_.tls.has_value();
  return target;
}

bool TestServer::RunOnLoop(std::function<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  if (!poster_->Post([fn = std::move(fn), done]() {
        fn();
        done->set_value();
      })) {
    return false;
  }
  return finished.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
}

api::HttpStats TestServer::Stats() {
  api::HttpStats stats;
  const bool ran = RunOnLoop([this, &stats]() { stats = server_->stats(); });
  CL_ASSERT(ran);
  return stats;
}

std::vector<AccessRecord> TestServer::AccessLog() {
  std::lock_guard<std::mutex> lock(mutex_);
  return access_log_;
}

std::vector<api::Request> TestServer::Requests() { return handler_->Requests(); }

size_t TestServer::HeldCount() { return handler_->HeldCount(); }

void TestServer::ReleaseHeld() {
  const bool ran = RunOnLoop([this]() {
    for (api::ResponseWriter& writer : handler_->TakeHeld()) {
      writer.Send(Text(200, "released"));
    }
  });
  CL_ASSERT(ran);
}

bool TestServer::Shutdown(int timeout_ms) {
  shutdown_started_ = true;
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  const bool ran =
      RunOnLoop([this, done]() { server_->Shutdown([done]() { done->set_value(); }); });
  CL_ASSERT(ran);
  return finished.wait_for(std::chrono::milliseconds(timeout_ms)) == std::future_status::ready;
}

}  // namespace cloister::testing
