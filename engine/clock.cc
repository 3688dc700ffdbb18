#include "engine/clock.h"

#include <time.h>

namespace cloister::engine {
namespace {

int64_t ReadClock(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

int64_t SystemClock::NowNs() { return ReadClock(CLOCK_REALTIME); }
int64_t SystemClock::MonotonicNs() { return ReadClock(CLOCK_MONOTONIC); }

}  // namespace cloister::engine
