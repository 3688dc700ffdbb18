// Assertions for programmer errors: an invariant that does not hold is a bug, and the process
// stops at once with file and line. Never assert on what the outside world controls (input,
// disk contents, the network); those are Statuses.
#pragma once

namespace cloister::internal {
[[noreturn]] void AssertFailed(const char* expr, const char* file, int line);
}  // namespace cloister::internal

// Always on, in every build.
#define CL_ASSERT(cond)                                             \
  do {                                                              \
    if (!(cond)) [[unlikely]] {                                     \
      ::cloister::internal::AssertFailed(#cond, __FILE__, __LINE__); \
    }                                                               \
  } while (0)

// Debug-only, for checks too expensive for release builds.
#ifdef NDEBUG
#define CL_DASSERT(cond) \
  do {                   \
  } while (0)
#else
#define CL_DASSERT(cond) CL_ASSERT(cond)
#endif
