// QueuePoster: a Poster for tests and tools that run the engine without an event loop. Posted
// functions wait in a queue until the owning thread runs them with RunUntil / RunPending.
// Post is thread-safe; RunUntil and RunPending must be called by the engine's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include "engine/engine.h"

namespace cloister::engine {

class QueuePoster final : public Poster {
 public:
  void Post(std::function<void()> fn) override;

  // Runs posted functions until done() is true or timeout passes. Returns done().
  bool RunUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout);
  // Runs what is queued now, without waiting.
  void RunPending();

 private:
  std::mutex mutex_;
  std::condition_variable posted_;
  std::deque<std::function<void()>> queue_;
};

}  // namespace cloister::engine
