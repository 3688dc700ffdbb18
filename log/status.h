// Status and Result<T>: how cloister reports errors from the environment and from input.
//
// A Status is a code plus a human-readable message. OK carries no message. Status values are
// cheap to move and safe to copy; const methods may be called from many threads at once.
// Programmer errors are not Statuses: they are CL_ASSERTs (see assert.h) and crash.
// Messages never contain secrets: callers build them from names, numbers and paths only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "log/assert.h"

namespace cloister {

enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument,   // The caller's input is malformed; nothing was changed.
  kNotFound,          // The thing asked for does not exist.
  kCorruption,        // Stored bytes fail verification (FlatBuffers verifier or hash chain).
  kFormatMismatch,    // The store was written by an incompatible format version.
  kIoError,           // The operating system or LMDB reported an error.
  kNoSpace,           // The disk is full; nothing was acknowledged; retry once space is freed.
  kBusy,              // Another process holds an exclusive resource (e.g. the writer lock).
  kUnsupported,       // The environment is not supported (e.g. a network filesystem).
  kClosed,            // The object was closed or stopped after a fatal error.
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return Status(StatusCode::kInvalidArgument, m); }
  static Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
  static Status Corruption(std::string m) { return Status(StatusCode::kCorruption, std::move(m)); }
  static Status FormatMismatch(std::string m) { return Status(StatusCode::kFormatMismatch, m); }
  static Status IoError(std::string m) { return Status(StatusCode::kIoError, std::move(m)); }
  static Status NoSpace(std::string m) { return Status(StatusCode::kNoSpace, std::move(m)); }
  static Status Busy(std::string m) { return Status(StatusCode::kBusy, std::move(m)); }
  static Status Unsupported(std::string m) { return Status(StatusCode::kUnsupported, m); }
  static Status Closed(std::string m) { return Status(StatusCode::kClosed, std::move(m)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "Corruption: event 17: hash chain mismatch".
  std::string ToString() const;

 private:
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Result<T> holds either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design.
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design.
    CL_ASSERT(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & {
    CL_ASSERT(ok());
    return *value_;
  }
  const T& value() const& {
    CL_ASSERT(ok());
    return *value_;
  }
  T&& value() && {
    CL_ASSERT(ok());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace cloister
