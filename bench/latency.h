// Per-call latency for the decision benchmarks (authz_bench, policy_bench): each call timed on
// its own with steady_clock (so the clock's ~16-20 ns is included), reduced to p50 and p99.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <vector>

namespace cloister::bench {

struct Figures {
  double p50 = 0;
  double p99 = 0;
};

inline Figures Percentiles(std::vector<double>* ns) {
  std::sort(ns->begin(), ns->end());
  return {(*ns)[ns->size() / 2], (*ns)[ns->size() * 99 / 100]};
}

// Times fn(i) for i in [0, n), one call at a time; adds the calls that returned true to
// *allowed.
inline Figures Time(size_t n, const std::function<bool(size_t)>& fn, size_t* allowed) {
  using Clock = std::chrono::steady_clock;
  std::vector<double> ns;
  ns.reserve(n);
  for (size_t i = 0; i < n; i++) {
    const auto start = Clock::now();
    const bool ok = fn(i);
    const auto end = Clock::now();
    *allowed += ok ? 1 : 0;
    ns.push_back(std::chrono::duration<double, std::nano>(end - start).count());
  }
  return Percentiles(&ns);
}

}  // namespace cloister::bench
