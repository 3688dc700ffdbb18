// Rng: the engine's only source of randomness (ids), injected so that tests and simulations are
// reproducible from a seed.
//
// SystemRng reads the kernel's CSPRNG (getrandom); SeededRng is xoshiro256** from a 64-bit seed
// and must never be used where unpredictability matters (it is for tests and simulation).
// Thread-safety: none; one thread owns an Rng.
#pragma once

#include <cstdint>
#include <string>

namespace cloister::engine {

class Rng {
 public:
  virtual ~Rng() = default;
  virtual uint64_t Next() = 0;

  // A random (version 4) UUID in its 36-character lower-case text form.
  std::string NewUuid();
};

class SystemRng final : public Rng {
 public:
  uint64_t Next() override;
};

class SeededRng final : public Rng {
 public:
  explicit SeededRng(uint64_t seed);
  uint64_t Next() override;

 private:
  uint64_t state_[4];
};

}  // namespace cloister::engine
