// Clock: the engine's only source of time, injected so that tests and replay are deterministic.
//
// Production uses SystemClock. Tests and simulations use SimClock, which moves only when told.
// Thread-safety: SystemClock is thread-safe; SimClock is not (one test thread drives it).
#pragma once

#include <cstdint>

namespace cloister::engine {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in nanoseconds since the Unix epoch: what events are stamped with.
  virtual int64_t NowNs() = 0;
  // A monotonic time in nanoseconds, for measuring durations; unrelated to NowNs().
  virtual int64_t MonotonicNs() = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowNs() override;
  int64_t MonotonicNs() override;
};

class SimClock final : public Clock {
 public:
  explicit SimClock(int64_t now_ns) : now_ns_(now_ns) {}

  int64_t NowNs() override { return now_ns_; }
  int64_t MonotonicNs() override { return now_ns_; }
  void Advance(int64_t delta_ns) { now_ns_ += delta_ns; }

 private:
  int64_t now_ns_;
};

}  // namespace cloister::engine
