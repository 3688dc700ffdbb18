// Helpers shared by cloister's tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace cloister::testing {

// A fresh directory under $TEST_TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that nothing listens on right now (bound, read back, released), for a
// server a test starts with an explicit port; 0 if none could be had. Another process may take
// it before the server binds: callers that can retry do.
uint16_t FreeLoopbackPort();

// Polls pred every 100 ms until it holds or timeout_ms have passed; returns its last value.
// For conditions reached by other processes (an agent's report, a scheduler pass).
template <typename Pred>
bool WaitFor(int timeout_ms, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

}  // namespace cloister::testing
