#include "engine/rng.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>

#include "log/assert.h"

namespace cloister::engine {
namespace {

uint64_t SplitMix64(uint64_t* x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t RotateLeft(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

std::string Rng::NewUuid() {
  uint64_t hi = Next();
  uint64_t lo = Next();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;                    // Version 4.
  lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // RFC 4122 variant.
  char text[37];
  std::snprintf(text, sizeof(text), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32), static_cast<unsigned>((hi >> 16) & 0xFFFF),
                static_cast<unsigned>(hi & 0xFFFF), static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
  return std::string(text, 36);
}

uint64_t SystemRng::Next() {
  uint64_t value = 0;
  ssize_t n;
  do {
    n = getrandom(&value, sizeof(value), 0);
  } while (n < 0 && errno == EINTR);
  // Invariant: getrandom never returns short for 8 bytes once the pool is initialised, and
  // blocking mode waits for that; any other outcome means the kernel is broken.
  CL_ASSERT(n == static_cast<ssize_t>(sizeof(value)));
  return value;
}

SeededRng::SeededRng(uint64_t seed) {
  for (uint64_t& word : state_) {
    word = SplitMix64(&seed);
  }
}

uint64_t SeededRng::Next() {
  const uint64_t result = RotateLeft(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = RotateLeft(state_[3], 45);
  return result;
}

}  // namespace cloister::engine
