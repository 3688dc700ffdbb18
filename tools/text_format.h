// Text output for the audit tools: a large reusable output buffer that drains into a Sink in big
// chunks, and fast writers for JSON strings, CSV cells, hex, integers and RFC 3339 times.
//
// The writers are plain functions over a char* cursor: the caller first makes room with
// OutBuffer::Ensure(p, n), where n is the writer's documented maximum (for example
// JsonStringBytesMax(len)), then calls the writer, which returns the advanced cursor. This keeps
// the per-field cost to a capacity compare and the bytes themselves, which is what lets export
// run at millions of events per second.
//
// Thread-safety: none of these types are thread-safe; use one OutBuffer per thread. The free
// functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "log/status.h"

namespace cloister::tools {

// Where an OutBuffer drains. Write is called with chunks of about OutBuffer::kFlushBytes.
class Sink {
 public:
  virtual ~Sink() = default;
  // Writes all of bytes or returns an error (kIoError naming the cause).
  virtual Status Write(std::string_view bytes) = 0;
};

// Writes to a file descriptor with write(2), retrying on EINTR and short writes. Does not own fd.
class FdSink final : public Sink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  Status Write(std::string_view bytes) override;

 private:
  int fd_;
};

// Appends to a std::string the caller owns and keeps alive while the sink is used.
class StringSink final : public Sink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  Status Write(std::string_view bytes) override {
    out_->append(bytes);
    return Status::Ok();
  }

 private:
  std::string* out_;
};

// A growable byte buffer with a write cursor. With a sink it drains into the sink whenever a
// writer needs more room than is left (and on Flush); without one it only grows, and view()
// holds everything written. A sink error is sticky: later output is dropped, status() reports
// the first error, and Flush() returns it.
class OutBuffer {
 public:
  static constexpr size_t kFlushBytes = 1 << 20;

  explicit OutBuffer(Sink* sink, size_t capacity_bytes = kFlushBytes);
  OutBuffer(const OutBuffer&) = delete;
  OutBuffer& operator=(const OutBuffer&) = delete;

  // The write cursor. Writers advance a copy of it; set_cursor stores it back.
  char* cursor() const { return cursor_; }
  void set_cursor(char* cursor) { cursor_ = cursor; }

  // Returns a cursor, equal to p or after a drain, with room for at least n bytes. p must be a
  // cursor of this buffer (cursor() advanced by writers by at most the room last ensured).
  char* Ensure(char* p, size_t n) {
    if (static_cast<size_t>(end_ - p) >= n) [[likely]] {
      return p;
    }
    return Spill(p, n);
  }

  // Drains everything written so far into the sink (no-op without a sink).
  Status Flush();

  // Bytes written and not yet drained.
  std::string_view view() const {
    return {data_.get(), static_cast<size_t>(cursor_ - data_.get())};
  }
  void Clear() { cursor_ = data_.get(); }

  const Status& status() const { return status_; }
  // Total bytes drained into the sink so far.
  uint64_t bytes_flushed() const { return bytes_flushed_; }

 private:
  char* Spill(char* p, size_t n);
  void Grow(size_t used, size_t need);

  Sink* sink_;
  std::unique_ptr<char[]> data_;
  char* cursor_;
  char* end_;
  Status status_;
  uint64_t bytes_flushed_ = 0;
};

// ---- Writers: each needs the room its *BytesMax function states, and returns the new cursor. ----

// A JSON string literal with its quotes. Escapes '"', '\\' and every control character;
// replaces each byte that is not part of well-formed UTF-8 with U+FFFD, so the output is valid
// JSON and valid UTF-8 whatever the input bytes are.
constexpr size_t JsonStringBytesMax(size_t length) { return 6 * length + 2; }
char* WriteJsonString(char* p, const char* bytes, size_t length);

// One RFC 4180 CSV cell. Quoted (with '"' doubled) when it holds ',', '"', CR or LF, or starts or
// ends with a space; ill-formed UTF-8 and NUL bytes become U+FFFD.
constexpr size_t CsvCellBytesMax(size_t length) { return 3 * length + 2; }
char* WriteCsvCell(char* p, const char* bytes, size_t length);

// A CSV cell that is always quoted, for bytes known to be well-formed UTF-8 without NUL (such as
// JSON this code wrote): only '"' needs doubling, so the copy runs at memchr speed.
constexpr size_t CsvQuotedBytesMax(size_t length) { return 2 * length + 2; }
char* WriteCsvQuoted(char* p, const char* bytes, size_t length);

// Lower-case hex, two characters per byte.
constexpr size_t HexBytesMax(size_t length) { return 2 * length; }
char* WriteHex(char* p, const uint8_t* bytes, size_t length);

// Decimal integers.
inline constexpr size_t kIntBytesMax = 20;
char* WriteU64(char* p, uint64_t value);
char* WriteI64(char* p, int64_t value);

// A float or double as the shortest decimal that reads back as the same value. NaN and the
// infinities, which JSON numbers cannot express, are written as the JSON strings "NaN",
// "Infinity" and "-Infinity".
inline constexpr size_t kRealBytesMax = 32;
char* WriteF32(char* p, float value);
char* WriteF64(char* p, double value);

// RFC 3339 UTC time with nanoseconds, e.g. 2026-11-24T12:00:00.123456789Z, without quotes.
// Remembers the last whole second it formatted, so a run of events in the same second costs a
// 19-byte copy plus nine digits.
inline constexpr size_t kRfc3339BytesMax = 30;
class Rfc3339Writer {
 public:
  char* Write(char* p, int64_t time_ns);

 private:
  int64_t cached_second_ = INT64_MIN;
  char cached_[19] = {};
};

// ---- Parsing command-line values ----------------------------------------------------------------

// A decimal u64 with no sign, spaces or other characters. Errors: kInvalidArgument.
Result<uint64_t> ParseU64(std::string_view text);

// An RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), 'T' or a space between
// date and time, case-insensitive 'T' and 'Z', up to nine fraction digits kept (more are
// truncated), second 60 accepted as a leap second. Returns Unix time in nanoseconds.
// Errors: kInvalidArgument naming what is wrong, also for times outside int64 nanoseconds
// (before 1677-09-21 or after 2262-04-11).
Result<int64_t> ParseRfc3339(std::string_view text);

// Convenience for tests and messages: the JSON string literal of bytes.
std::string JsonString(std::string_view bytes);

}  // namespace cloister::tools
