// LoopPoster: runs functions on a libuv loop's thread, posted from any thread.
//
// The engine answers a request only after its events are durable, and that happens on the log's
// writer thread; the answer must be written on the loop thread that owns the connection. The
// writer thread Posts a function; one uv_async_t wakes the loop, which runs every function
// waiting, in the order they were posted (uv_async_send coalesces wake-ups, so one wake-up
// drains the whole queue).
//
// Thread-safety: Post may be called from any thread, concurrently. Create, Close and the
// destructor run on the loop thread.
//
// std::function must be copyable; to move a move-only value (such as a ResponseWriter) into a
// posted function, hold it in a std::shared_ptr.
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "log/status.h"

namespace cloister::api {

class LoopPoster {
 public:
  // Registers an async handle on loop (loop thread). The handle keeps uv_run from returning
  // until Close.
  static Result<std::unique_ptr<LoopPoster>> Create(uv_loop_t* loop);

  // Closes if still open.
  ~LoopPoster();
  LoopPoster(const LoopPoster&) = delete;
  LoopPoster& operator=(const LoopPoster&) = delete;

  // Queues fn to run on the loop thread. Returns false, and drops fn on the calling thread, once
  // Close has begun: callers that must not lose work post before the loop shuts down.
  bool Post(std::function<void()> fn);

  // Runs what is already queued, then refuses further posts and closes the async handle (its
  // memory is freed in the close callback, so the loop must run once more).
  void Close();

 private:
  struct Shared;
  explicit LoopPoster(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  static void OnAsync(uv_async_t* async);
  static void RunQueued(Shared* shared);

  std::shared_ptr<Shared> shared_;
};

}  // namespace cloister::api
