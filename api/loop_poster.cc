#include "api/loop_poster.h"

#include <string>
#include <utility>

namespace cloister::api {

// State shared by the poster and its async handle. The handle lives in a separate heap block
// that the close callback frees, as libuv requires; posters on other threads only ever touch
// this struct, under mutex.
struct LoopPoster::Shared {
  std::mutex mutex;
  std::deque<std::function<void()>> queue;  // Guarded by mutex.
  bool closed = false;                      // Guarded by mutex. Once set, async is not sent.
  uv_async_t* async = nullptr;              // Set once at creation.
};

namespace {

// The one owner of the uv_async_t: created by Create, deleted by the close callback.
struct AsyncHolder {
  uv_async_t handle;
  std::shared_ptr<void> keep_alive;  // Keeps Shared alive until the handle is closed.
};

}  // namespace

Result<std::unique_ptr<LoopPoster>> LoopPoster::Create(uv_loop_t* loop) {
  auto shared = std::make_shared<Shared>();
  auto* holder = new AsyncHolder();
  holder->keep_alive = shared;
  int rc = uv_async_init(loop, &holder->handle, &LoopPoster::OnAsync);
  if (rc != 0) {
    delete holder;  // Never initialised, so libuv does not know it.
    return Status::IoError(std::string("uv_async_init: ") + uv_strerror(rc));
  }
  holder->handle.data = holder;
  shared->async = &holder->handle;
  return std::unique_ptr<LoopPoster>(new LoopPoster(std::move(shared)));
}

LoopPoster::~LoopPoster() { Close(); }

bool LoopPoster::Post(std::function<void()> fn) {
  CL_ASSERT(fn != nullptr);
  std::lock_guard<std::mutex> lock(shared_->mutex);
  if (shared_->closed) {
    return false;
  }
  shared_->queue.push_back(std::move(fn));
  // Under the mutex: Close cannot start closing the handle between our check and this send.
  uv_async_send(shared_->async);
  return true;
}

void LoopPoster::RunQueued(Shared* shared) {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(shared->mutex);
    batch.swap(shared->queue);
  }
  for (std::function<void()>& fn : batch) {
    fn();
  }
}

void LoopPoster::OnAsync(uv_async_t* async) {
  auto* holder = static_cast<AsyncHolder*>(async->data);
  RunQueued(static_cast<Shared*>(holder->keep_alive.get()));
}

void LoopPoster::Close() {
  {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    if (shared_->closed) {
      return;
    }
  }
  // Functions posted before Close still run: they may be the answers to requests in flight.
  // One may post again while we drain, so drain until closed is set with an empty queue.
  for (;;) {
    RunQueued(shared_.get());
    std::lock_guard<std::mutex> lock(shared_->mutex);
    if (shared_->queue.empty()) {
      shared_->closed = true;
      break;
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(shared_->async), [](uv_handle_t* handle) {
    delete static_cast<AsyncHolder*>(handle->data);
  });
}

}  // namespace cloister::api
