#include "tools/text_format.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "log/assert.h"

namespace cloister::tools {
namespace {

constexpr int64_t kNanosPerSecond = 1'000'000'000;
constexpr int64_t kSecondsPerDay = 86'400;

// "00" .. "99", for writing two decimal digits with one copy.
struct DigitPairs {
  char chars[200];
  constexpr DigitPairs() : chars() {
    for (int i = 0; i < 100; i++) {
      chars[2 * i] = static_cast<char>('0' + i / 10);
      chars[2 * i + 1] = static_cast<char>('0' + i % 10);
    }
  }
};
constexpr DigitPairs kDigitPairs;

// "00" .. "ff", for writing one byte as two hex digits with one copy.
struct HexPairs {
  char chars[512];
  constexpr HexPairs() : chars() {
    constexpr char kDigits[] = "0123456789abcdef";
    for (int i = 0; i < 256; i++) {
      chars[2 * i] = kDigits[i >> 4];
      chars[2 * i + 1] = kDigits[i & 0xf];
    }
  }
};
constexpr HexPairs kHexPairs;

inline char* Write2(char* p, uint32_t value) {
  CL_DASSERT(value < 100);
  std::memcpy(p, &kDigitPairs.chars[2 * value], 2);
  return p + 2;
}

// True when any of the 8 bytes in x is below 0x20, is '"' or '\\', or is not ASCII: those bytes
// need the careful path. Each term is the exact "some byte is zero / less than n" bit trick.
inline bool AnyJsonSpecial(uint64_t x) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  const uint64_t quote = x ^ (kOnes * '"');
  const uint64_t backslash = x ^ (kOnes * '\\');
  const uint64_t control = (x - kOnes * 0x20) & ~x;
  const uint64_t is_quote = (quote - kOnes) & ~quote;
  const uint64_t is_backslash = (backslash - kOnes) & ~backslash;
  return ((control | is_quote | is_backslash | x) & kHighs) != 0;
}

// The length (1 to 4) of the well-formed UTF-8 sequence at s (Unicode table 3-7), or 0 when the
// bytes at s do not start one. Rejects overlong forms, surrogates and code points past U+10FFFF.
inline size_t Utf8SequenceLength(const uint8_t* s, const uint8_t* end) {
  const uint8_t c = s[0];
  const size_t available = static_cast<size_t>(end - s);
  if (c < 0x80) {
    return 1;
  }
  if (c < 0xC2) {
    return 0;
  }
  if (c < 0xE0) {
    return available >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  }
  if (c < 0xF0) {
    const uint8_t low = c == 0xE0 ? 0xA0 : 0x80;
    const uint8_t high = c == 0xED ? 0x9F : 0xBF;
    if (available < 3 || s[1] < low || s[1] > high || (s[2] & 0xC0) != 0x80) {
      return 0;
    }
    return 3;
  }
  if (c < 0xF5) {
    const uint8_t low = c == 0xF0 ? 0x90 : 0x80;
    const uint8_t high = c == 0xF4 ? 0x8F : 0xBF;
    if (available < 4 || s[1] < low || s[1] > high || (s[2] & 0xC0) != 0x80 ||
        (s[3] & 0xC0) != 0x80) {
      return 0;
    }
    return 4;
  }
  return 0;
}

// U+FFFD REPLACEMENT CHARACTER in UTF-8.
inline char* WriteReplacement(char* p) {
  p[0] = static_cast<char>(0xEF);
  p[1] = static_cast<char>(0xBF);
  p[2] = static_cast<char>(0xBD);
  return p + 3;
}

// Copies the well-formed UTF-8 sequence at *s, or writes U+FFFD for one ill-formed byte, and
// advances *s past what it consumed.
char* CopyUtf8Sequence(char* p, const uint8_t** s, const uint8_t* end) {
  const size_t n = Utf8SequenceLength(*s, end);
  if (n == 0) {
    (*s)++;
    return WriteReplacement(p);
  }
  std::memcpy(p, *s, n);
  *s += n;
  return p + n;
}

// Writes the escape for an ASCII byte that JSON does not allow raw: '"', '\\' or a control byte.
inline char* WriteJsonEscape(char* p, uint8_t c) {
  *p++ = '\\';
  switch (c) {
    case '"':
      *p++ = '"';
      return p;
    case '\\':
      *p++ = '\\';
      return p;
    case '\b':
      *p++ = 'b';
      return p;
    case '\f':
      *p++ = 'f';
      return p;
    case '\n':
      *p++ = 'n';
      return p;
    case '\r':
      *p++ = 'r';
      return p;
    case '\t':
      *p++ = 't';
      return p;
    default:
      CL_DASSERT(c < 0x20);
      std::memcpy(p, "u00", 3);
      std::memcpy(p + 3, &kHexPairs.chars[2 * c], 2);
      return p + 5;
  }
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant, "chrono-Compatible Low-Level
// Date Algorithms"), and its inverse.
constexpr int64_t DaysFromCivil(int64_t year, uint32_t month, uint32_t day) {
  year -= month <= 2;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t year_of_era = year - era * 400;
  const int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

struct Civil {
  int64_t year;
  uint32_t month;
  uint32_t day;
};

constexpr Civil CivilFromDays(int64_t days) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t day_of_era = days - era * 146097;
  const int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t mp = (5 * day_of_year + 2) / 153;
  const uint32_t day = static_cast<uint32_t>(day_of_year - (153 * mp + 2) / 5 + 1);
  const uint32_t month = static_cast<uint32_t>(mp < 10 ? mp + 3 : mp - 9);
  return Civil{year_of_era + era * 400 + (month <= 2), month, day};
}

static_assert(DaysFromCivil(1970, 1, 1) == 0);
static_assert(DaysFromCivil(2000, 3, 1) == 11017);
static_assert(CivilFromDays(11017).year == 2000 && CivilFromDays(11017).month == 3);

constexpr bool IsLeapYear(int64_t year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

constexpr uint32_t DaysInMonth(int64_t year, uint32_t month) {
  constexpr uint32_t kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[month - 1];
}

// Reads exactly `digits` decimal digits at text[*pos]; false if any is missing.
bool ReadDigits(std::string_view text, size_t* pos, int digits, uint32_t* value) {
  if (text.size() - *pos < static_cast<size_t>(digits)) {
    return false;
  }
  uint32_t result = 0;
  for (int i = 0; i < digits; i++) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') {
      return false;
    }
    result = result * 10 + static_cast<uint32_t>(c - '0');
  }
  *pos += digits;
  *value = result;
  return true;
}

bool ReadChar(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) {
    return false;
  }
  (*pos)++;
  return true;
}

Status TimeError(std::string_view text, const std::string& why) {
  return Status::InvalidArgument(
      "invalid time '" + std::string(text) + "': " + why +
      " (expected RFC 3339, e.g. 2026-11-24T12:00:00Z or 2026-11-24T13:00:00.5+01:00)");
}

}  // namespace

// ---- Sinks and the buffer -----------------------------------------------------------------------

Status FdSink::Write(std::string_view bytes) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Status::IoError(std::string("write: ") + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

OutBuffer::OutBuffer(Sink* sink, size_t capacity_bytes)
    : sink_(sink),
      data_(new char[std::max<size_t>(capacity_bytes, 64)]),
      cursor_(data_.get()),
      end_(data_.get() + std::max<size_t>(capacity_bytes, 64)) {}

char* OutBuffer::Spill(char* p, size_t n) {
  CL_ASSERT(p >= data_.get());
  CL_ASSERT(p <= end_);
  cursor_ = p;
  if (sink_ != nullptr) {
    Status s = Flush();
    (void)s;  // Sticky in status_; the caller checks status() once per event.
  }
  const size_t used = static_cast<size_t>(cursor_ - data_.get());
  if (static_cast<size_t>(end_ - cursor_) < n) {
    Grow(used, n);
  }
  return cursor_;
}

void OutBuffer::Grow(size_t used, size_t need) {
  const size_t capacity = static_cast<size_t>(end_ - data_.get());
  const size_t grown = std::max(2 * capacity, used + need);
  std::unique_ptr<char[]> data(new char[grown]);
  std::memcpy(data.get(), data_.get(), used);
  data_ = std::move(data);
  cursor_ = data_.get() + used;
  end_ = data_.get() + grown;
}

Status OutBuffer::Flush() {
  if (sink_ == nullptr) {
    return Status::Ok();
  }
  const std::string_view bytes = view();
  if (status_.ok() && !bytes.empty()) {
    status_ = sink_->Write(bytes);
    if (status_.ok()) {
      bytes_flushed_ += bytes.size();
    }
  }
  cursor_ = data_.get();
  return status_;
}

// ---- Writers ------------------------------------------------------------------------------------

char* WriteJsonString(char* p, const char* bytes, size_t length) {
  const auto* s = reinterpret_cast<const uint8_t*>(bytes);
  const uint8_t* const end = s + length;
  *p++ = '"';
  while (s < end) {
    // Plain ASCII, the common case, moves eight bytes per step.
    while (end - s >= 8) {
      uint64_t chunk;
      std::memcpy(&chunk, s, 8);
      if (AnyJsonSpecial(chunk)) {
        break;
      }
      std::memcpy(p, s, 8);
      p += 8;
      s += 8;
    }
    // Then up to eight bytes one by one, at least one of which (if eight remain) is special.
    const uint8_t* const stop = std::min(end, s + 8);
    while (s < stop) {
      const uint8_t c = *s;
      if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
        *p++ = static_cast<char>(c);
        s++;
      } else if (c < 0x80) {
        p = WriteJsonEscape(p, c);
        s++;
      } else {
        p = CopyUtf8Sequence(p, &s, end);
      }
    }
  }
  *p++ = '"';
  return p;
}

char* WriteCsvCell(char* p, const char* bytes, size_t length) {
  const auto* s = reinterpret_cast<const uint8_t*>(bytes);
  const uint8_t* const end = s + length;
  bool quote = length > 0 && (s[0] == ' ' || end[-1] == ' ');
  for (const uint8_t* q = s; q < end && !quote; q++) {
    quote = *q == ',' || *q == '"' || *q == '\r' || *q == '\n';
  }
  if (quote) {
    *p++ = '"';
  }
  while (s < end) {
    const uint8_t c = *s;
    if (c == 0) {
      p = WriteReplacement(p);
      s++;
    } else if (c == '"') {
      *p++ = '"';
      *p++ = '"';
      s++;
    } else if (c < 0x80) {
      *p++ = static_cast<char>(c);
      s++;
    } else {
      p = CopyUtf8Sequence(p, &s, end);
    }
  }
  if (quote) {
    *p++ = '"';
  }
  return p;
}

char* WriteCsvQuoted(char* p, const char* bytes, size_t length) {
  const char* const end = bytes + length;
  *p++ = '"';
  while (bytes < end) {
    const char* quote = static_cast<const char*>(std::memchr(bytes, '"', end - bytes));
    const char* stop = quote == nullptr ? end : quote + 1;
    std::memcpy(p, bytes, stop - bytes);
    p += stop - bytes;
    if (quote != nullptr) {
      *p++ = '"';  // The second quote of the doubled pair.
    }
    bytes = stop;
  }
  *p++ = '"';
  return p;
}

char* WriteHex(char* p, const uint8_t* bytes, size_t length) {
  for (size_t i = 0; i < length; i++) {
    std::memcpy(p + 2 * i, &kHexPairs.chars[2 * bytes[i]], 2);
  }
  return p + 2 * length;
}

char* WriteU64(char* p, uint64_t value) { return std::to_chars(p, p + kIntBytesMax, value).ptr; }

char* WriteI64(char* p, int64_t value) { return std::to_chars(p, p + kIntBytesMax, value).ptr; }

namespace {

template <typename Real>
char* WriteReal(char* p, Real value) {
  if (std::isnan(value)) {
    std::memcpy(p, "\"NaN\"", 5);
    return p + 5;
  }
  if (std::isinf(value)) {
    if (value < 0) {
      std::memcpy(p, "\"-Infinity\"", 11);
      return p + 11;
    }
    std::memcpy(p, "\"Infinity\"", 10);
    return p + 10;
  }
  const auto result = std::to_chars(p, p + kRealBytesMax, value);
  CL_ASSERT(result.ec == std::errc());
  return result.ptr;
}

}  // namespace

char* WriteF32(char* p, float value) { return WriteReal(p, value); }

char* WriteF64(char* p, double value) { return WriteReal(p, value); }

char* Rfc3339Writer::Write(char* p, int64_t time_ns) {
  int64_t second = time_ns / kNanosPerSecond;
  int64_t nanos = time_ns % kNanosPerSecond;
  if (nanos < 0) {
    nanos += kNanosPerSecond;
    second -= 1;
  }
  if (second != cached_second_) {
    int64_t days = second / kSecondsPerDay;
    int64_t second_of_day = second % kSecondsPerDay;
    if (second_of_day < 0) {
      second_of_day += kSecondsPerDay;
      days -= 1;
    }
    const Civil civil = CivilFromDays(days);
    // Invariant: int64 nanoseconds span 1677..2262, so the year always has four digits.
    CL_ASSERT(civil.year >= 1000);
    CL_ASSERT(civil.year <= 9999);
    char* c = cached_;
    c = Write2(c, static_cast<uint32_t>(civil.year / 100));
    c = Write2(c, static_cast<uint32_t>(civil.year % 100));
    *c++ = '-';
    c = Write2(c, civil.month);
    *c++ = '-';
    c = Write2(c, civil.day);
    *c++ = 'T';
    c = Write2(c, static_cast<uint32_t>(second_of_day / 3600));
    *c++ = ':';
    c = Write2(c, static_cast<uint32_t>(second_of_day / 60 % 60));
    *c++ = ':';
    c = Write2(c, static_cast<uint32_t>(second_of_day % 60));
    CL_ASSERT(c == cached_ + sizeof(cached_));
    cached_second_ = second;
  }
  std::memcpy(p, cached_, sizeof(cached_));
  p += sizeof(cached_);
  *p++ = '.';
  uint32_t n = static_cast<uint32_t>(nanos);
  *p = static_cast<char>('0' + n / 100'000'000);
  n %= 100'000'000;
  p = Write2(p + 1, n / 1'000'000);
  n %= 1'000'000;
  p = Write2(p, n / 10'000);
  n %= 10'000;
  p = Write2(p, n / 100);
  p = Write2(p, n % 100);
  *p++ = 'Z';
  return p;
}

// ---- Parsing ------------------------------------------------------------------------------------

Result<uint64_t> ParseU64(std::string_view text) {
  uint64_t value = 0;
  const bool digits_only = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
  if (!digits_only) {
    return Status::InvalidArgument("invalid number '" + std::string(text) +
                                   "': expected a decimal integer");
  }
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec != std::errc() || result.ptr != text.data() + text.size()) {
    return Status::InvalidArgument("invalid number '" + std::string(text) +
                                   "': larger than 18446744073709551615");
  }
  return value;
}

namespace {

// Reads an optional ".digits" fraction at text[*pos] as nanoseconds (digits past nine are
// truncated). False if there is a '.' without digits.
bool ReadFraction(std::string_view text, size_t* pos, int64_t* nanos) {
  *nanos = 0;
  if (*pos >= text.size() || text[*pos] != '.') {
    return true;
  }
  (*pos)++;
  int digits = 0;
  while (*pos < text.size() && text[*pos] >= '0' && text[*pos] <= '9') {
    if (digits < 9) {
      *nanos = *nanos * 10 + (text[*pos] - '0');
    }
    digits++;
    (*pos)++;
  }
  for (int scale = digits; scale < 9; scale++) {
    *nanos *= 10;
  }
  return digits > 0;
}

// Reads the zone at text[*pos]: 'Z' (any case) or +HH:MM / -HH:MM, as seconds east of UTC.
Status ReadZone(std::string_view text, size_t* pos, int64_t* offset_seconds) {
  *offset_seconds = 0;
  if (*pos < text.size() && (text[*pos] == 'Z' || text[*pos] == 'z')) {
    (*pos)++;
    return Status::Ok();
  }
  if (*pos >= text.size() || (text[*pos] != '+' && text[*pos] != '-')) {
    return TimeError(text, "missing 'Z' or a UTC offset such as +01:00");
  }
  const int64_t sign = text[*pos] == '-' ? -1 : 1;
  (*pos)++;
  uint32_t hour = 0;
  uint32_t minute = 0;
  if (!ReadDigits(text, pos, 2, &hour) || !ReadChar(text, pos, ':') ||
      !ReadDigits(text, pos, 2, &minute)) {
    return TimeError(text, "bad UTC offset");
  }
  if (hour > 23 || minute > 59) {
    return TimeError(text, "UTC offset out of range");
  }
  *offset_seconds = sign * (hour * 3600 + minute * 60);
  return Status::Ok();
}

}  // namespace

Result<int64_t> ParseRfc3339(std::string_view text) {
  size_t pos = 0;
  uint32_t year = 0;
  uint32_t month = 0;
  uint32_t day = 0;
  uint32_t hour = 0;
  uint32_t minute = 0;
  uint32_t second = 0;
  if (!ReadDigits(text, &pos, 4, &year) || !ReadChar(text, &pos, '-') ||
      !ReadDigits(text, &pos, 2, &month) || !ReadChar(text, &pos, '-') ||
      !ReadDigits(text, &pos, 2, &day)) {
    return TimeError(text, "bad date");
  }
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')) {
    return TimeError(text, "expected 'T' and a time of day after the date");
  }
  pos++;
  if (!ReadDigits(text, &pos, 2, &hour) || !ReadChar(text, &pos, ':') ||
      !ReadDigits(text, &pos, 2, &minute) || !ReadChar(text, &pos, ':') ||
      !ReadDigits(text, &pos, 2, &second)) {
    return TimeError(text, "bad time of day");
  }
  int64_t nanos = 0;
  if (!ReadFraction(text, &pos, &nanos)) {
    return TimeError(text, "expected digits after '.'");
  }
  int64_t offset_seconds = 0;
  if (Status zone = ReadZone(text, &pos, &offset_seconds); !zone.ok()) {
    return zone;
  }
  if (pos != text.size()) {
    return TimeError(text, "unexpected text after the time");
  }
  if (month < 1 || month > 12) {
    return TimeError(text, "month out of range");
  }
  if (day < 1 || day > DaysInMonth(year, month)) {
    return TimeError(text, "day out of range for the month");
  }
  if (hour > 23 || minute > 59 || second > 60) {
    return TimeError(text, "time of day out of range");
  }
  // Invariant: years 0000..9999 keep seconds far inside int64, so only nanoseconds can overflow.
  const int64_t seconds = DaysFromCivil(year, month, day) * kSecondsPerDay + hour * 3600 +
                          minute * 60 + second - offset_seconds;
  int64_t result = 0;
  if (__builtin_mul_overflow(seconds, kNanosPerSecond, &result) ||
      __builtin_add_overflow(result, nanos, &result)) {
    return TimeError(text, "outside the representable range 1677-09-21 .. 2262-04-11");
  }
  return result;
}

std::string JsonString(std::string_view bytes) {
  std::string out(JsonStringBytesMax(bytes.size()), '\0');
  char* end = WriteJsonString(out.data(), bytes.data(), bytes.size());
  out.resize(static_cast<size_t>(end - out.data()));
  return out;
}

}  // namespace cloister::tools
