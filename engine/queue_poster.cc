#include "engine/queue_poster.h"

#include <utility>

namespace cloister::engine {

void QueuePoster::Post(std::function<void()> fn) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(fn));
  }
  posted_.notify_one();
}

void QueuePoster::RunPending() {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(queue_);
  }
  for (auto& fn : batch) {
    fn();
  }
}

bool QueuePoster::RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    {
      std::unique_lock lock(mutex_);
      if (!posted_.wait_until(lock, deadline, [this] { return !queue_.empty(); })) {
        return done();
      }
    }
    RunPending();
  }
  return true;
}

}  // namespace cloister::engine
