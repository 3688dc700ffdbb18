#include "log/status.h"

#include <cstdio>
#include <cstdlib>

namespace cloister {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "Invalid argument";
    case StatusCode::kNotFound: return "Not found";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kFormatMismatch: return "Format mismatch";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kNoSpace: return "No space";
    case StatusCode::kBusy: return "Busy";
    case StatusCode::kUnsupported: return "Unsupported";
    case StatusCode::kClosed: return "Closed";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) {
    return "OK";
  }
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

namespace internal {
void AssertFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "cloister: assertion failed: %s at %s:%d\n", expr, file, line);
  std::fflush(stderr);
  std::abort();
}
}  // namespace internal

}  // namespace cloister
