// Unit tests for the text writers and parsers behind `cloister audit export`: JSON escaping of
// every kind of nasty byte, CSV quoting, RFC 3339 in both directions, number and type-name
// parsing, and the output buffer's draining. Each TEST_CASE names one edge case.
#include "tools/text_format.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "log/events_generated.h"
#include "log/status.h"
#include "tools/event_format.h"

namespace cloister::tools {
namespace {

using nlohmann::json;

// Parses text as JSON without exceptions; fails the test if it is not valid JSON.
json ParseJson(const std::string& text) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  INFO(text);
  REQUIRE(!parsed.is_discarded());
  return parsed;
}

std::string CsvCell(std::string_view bytes) {
  std::string out(CsvCellBytesMax(bytes.size()), '\0');
  out.resize(
      static_cast<size_t>(WriteCsvCell(out.data(), bytes.data(), bytes.size()) - out.data()));
  return out;
}

std::string Rfc3339(int64_t time_ns) {
  char text[kRfc3339BytesMax];
  Rfc3339Writer writer;
  return std::string(text, writer.Write(text, time_ns));
}

const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8.

TEST_CASE("JSON string escapes quotes, backslashes and every control character") {
  std::string all_controls;
  for (int c = 0; c < 0x20; c++) {
    all_controls.push_back(static_cast<char>(c));
  }
  const std::vector<std::string> inputs = {"",
                                           "plain",
                                           "say \"hi\"",
                                           "C:\\path\\",
                                           "tab\there",
                                           "line\nbreak\r\n",
                                           all_controls,
                                           std::string("nul\0inside", 10),
                                           "\x7f del is allowed raw",
                                           "</script>"};
  for (const std::string& input : inputs) {
    const std::string literal = JsonString(input);
    const json parsed = ParseJson(literal);
    CHECK(parsed.get<std::string>() == input);
    for (char c : literal) {
      CHECK(static_cast<unsigned char>(c) >= 0x20);  // No raw control byte survives.
    }
  }
  CHECK(JsonString("a\"b\\c\n") == R"("a\"b\\c\n")");
  CHECK(JsonString(std::string("\0\x1f", 2)) == R"("\u0000\u001f")");
}

TEST_CASE("JSON string keeps well-formed UTF-8 and replaces each ill-formed byte with U+FFFD") {
  struct Case {
    std::string input;
    std::string decoded;
  };
  const std::vector<Case> cases = {
      {"caf\xC3\xA9", "caf\xC3\xA9"},             // 2-byte.
      {"\xE2\x82\xAC", "\xE2\x82\xAC"},           // 3-byte euro sign.
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},   // 4-byte emoji.
      {"\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF"},   // U+10FFFF, the last code point.
      {"\x80", kReplacement},                     // Lone continuation byte.
      {"\xC0\xAF", kReplacement + kReplacement},  // Overlong '/'.
      {"\xE0\x80\xAF", kReplacement + kReplacement + kReplacement},  // Overlong, 3 bytes.
      {"\xED\xA0\x80", kReplacement + kReplacement + kReplacement},  // UTF-16 surrogate.
      {"\xF4\x90\x80\x80", kReplacement + kReplacement + kReplacement + kReplacement},  // >10FFFF.
      {"\xE2\x82", kReplacement + kReplacement},         // Truncated at the end.
      {"\xE2\x82x", kReplacement + kReplacement + "x"},  // Truncated in the middle.
      {"\xFF\xFE", kReplacement + kReplacement},         // Never valid.
      {"ok\xC3", "ok" + kReplacement},
  };
  for (const Case& c : cases) {
    INFO(c.input);
    CHECK(ParseJson(JsonString(c.input)).get<std::string>() == c.decoded);
  }
}

TEST_CASE("JSON string fast path handles a special byte at every offset of every length") {
  // The writer moves 8 bytes at a time; a special byte may sit anywhere in or after a chunk.
  const std::string specials[] = {"\"", "\\", "\n", std::string("\0", 1), "\xC3\xA9", "\xFF"};
  for (const std::string& special : specials) {
    for (size_t length = 0; length < 40; length++) {
      for (size_t at = 0; at <= length; at++) {
        std::string input(length, 'a');
        input.insert(at, special);
        const json parsed = ParseJson(JsonString(input));
        if (special != "\xFF") {
          CHECK(parsed.get<std::string>() == input);
        } else {
          std::string expected = input;
          expected.replace(at, 1, kReplacement);
          CHECK(parsed.get<std::string>() == expected);
        }
      }
    }
  }
}

TEST_CASE("JSON string of random bytes is always valid JSON and valid UTF-8") {
  std::mt19937_64 rng(20261124);  // Fixed seed: the same bytes on every run.
  for (int i = 0; i < 20000; i++) {
    std::string input(rng() % 64, '\0');
    for (char& c : input) {
      // Bias towards the interesting bytes: controls, quotes, UTF-8 leads and continuations.
      const uint64_t r = rng();
      c = static_cast<char>(r % 4 == 0 ? "\"\\\x01\x80\xC3\xE2\xF0\xED"[r / 4 % 8] : r >> 8);
    }
    ParseJson(JsonString(input));  // nlohmann rejects invalid UTF-8 too.
  }
}

TEST_CASE("CSV cell is quoted only when it must be, with quotes doubled") {
  CHECK(CsvCell("") == "");
  CHECK(CsvCell("plain-id") == "plain-id");
  CHECK(CsvCell("a,b") == "\"a,b\"");
  CHECK(CsvCell("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(CsvCell("two\nlines") == "\"two\nlines\"");
  CHECK(CsvCell("cr\r") == "\"cr\r\"");
  CHECK(CsvCell(" padded") == "\" padded\"");
  CHECK(CsvCell("padded ") == "\"padded \"");
  CHECK(CsvCell(std::string("nul\0", 4)) == "nul" + kReplacement);
  CHECK(CsvCell("bad\xFF") == "bad" + kReplacement);
  CHECK(CsvCell("caf\xC3\xA9") == "caf\xC3\xA9");
}

TEST_CASE("CSV quoted cell doubles every quote, including at the ends") {
  const std::string input = R"("{"a":"b"}")";
  std::string out(CsvQuotedBytesMax(input.size()), '\0');
  out.resize(
      static_cast<size_t>(WriteCsvQuoted(out.data(), input.data(), input.size()) - out.data()));
  CHECK(out == R"("""{""a"":""b""}""")");
}

TEST_CASE("RFC 3339 output has nine fraction digits, UTC, for any int64 time") {
  CHECK(Rfc3339(0) == "1970-01-01T00:00:00.000000000Z");
  CHECK(Rfc3339(1) == "1970-01-01T00:00:00.000000001Z");
  CHECK(Rfc3339(-1) == "1969-12-31T23:59:59.999999999Z");
  CHECK(Rfc3339(1'795'003'200'123'456'789) == "2026-11-18T12:00:00.123456789Z");
  CHECK(Rfc3339(951'782'400'000'000'000) == "2000-02-29T00:00:00.000000000Z");  // Leap day.
  CHECK(Rfc3339(INT64_MAX) == "2262-04-11T23:47:16.854775807Z");
  CHECK(Rfc3339(INT64_MIN) == "1677-09-21T00:12:43.145224192Z");
}

TEST_CASE("RFC 3339 writer's cached second is refreshed when the second changes") {
  Rfc3339Writer writer;
  char text[kRfc3339BytesMax];
  const int64_t times[] = {1'000'000'000'500, 1'000'999'999'999, 1'001'000'000'000, -5,
                           1'000'000'000'500};
  for (int64_t t : times) {
    CHECK(std::string(text, writer.Write(text, t)) == Rfc3339(t));
  }
}

TEST_CASE("RFC 3339 parser accepts Z, offsets, lower case, a space and any fraction") {
  CHECK(*ParseRfc3339("1970-01-01T00:00:00Z") == 0);
  CHECK(*ParseRfc3339("1970-01-01t00:00:00z") == 0);
  CHECK(*ParseRfc3339("1970-01-01 00:00:00Z") == 0);
  CHECK(*ParseRfc3339("1970-01-01T01:00:00+01:00") == 0);
  CHECK(*ParseRfc3339("1969-12-31T23:30:00-00:30") == 0);
  CHECK(*ParseRfc3339("1970-01-01T00:00:00.5Z") == 500'000'000);
  CHECK(*ParseRfc3339("1970-01-01T00:00:00.123456789Z") == 123'456'789);
  CHECK(*ParseRfc3339("1970-01-01T00:00:00.1234567891Z") == 123'456'789);  // Truncated.
  CHECK(*ParseRfc3339("2026-11-18T12:00:00.123456789Z") == 1'795'003'200'123'456'789);
  CHECK(*ParseRfc3339("2016-12-31T23:59:60Z") == *ParseRfc3339("2017-01-01T00:00:00Z"));
  CHECK(*ParseRfc3339("2262-04-11T23:47:16.854775807Z") == INT64_MAX);
}

TEST_CASE("RFC 3339 parser round-trips what the writer prints") {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; i++) {
    const auto t = static_cast<int64_t>(rng());
    Result<int64_t> parsed = ParseRfc3339(Rfc3339(t));
    REQUIRE(parsed.ok());
    CHECK(*parsed == t);
  }
}

TEST_CASE("RFC 3339 parser rejects malformed and out-of-range times with a clear message") {
  const char* bad[] = {
      "",
      "yesterday",
      "2026-11-24",                      // Date only.
      "2026-11-24T12:00:00",             // No zone.
      "2026-11-24T12:00Z",               // No seconds.
      "2026-13-01T00:00:00Z",            // Month 13.
      "2026-02-29T00:00:00Z",            // Not a leap year.
      "2026-04-31T00:00:00Z",            // April has 30 days.
      "2026-11-24T24:00:00Z",            // Hour 24.
      "2026-11-24T12:60:00Z",            // Minute 60.
      "2026-11-24T12:00:61Z",            // Second 61.
      "2026-11-24T12:00:00.Z",           // Empty fraction.
      "2026-11-24T12:00:00+0100",        // Offset without colon.
      "2026-11-24T12:00:00+24:00",       // Offset hour 24.
      "2026-11-24T12:00:00Z trailing",   // Trailing text.
      "+2026-11-24T12:00:00Z",           // Sign.
      "2262-04-11T23:47:16.854775808Z",  // One nanosecond past int64.
      "1600-01-01T00:00:00Z",            // Before int64 nanoseconds.
  };
  for (const char* text : bad) {
    INFO(text);
    Result<int64_t> parsed = ParseRfc3339(text);
    REQUIRE(!parsed.ok());
    CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
    CHECK(parsed.status().message().find("invalid time") != std::string::npos);
  }
}

TEST_CASE("ParseU64 takes plain decimal digits only and rejects overflow") {
  CHECK(*ParseU64("0") == 0);
  CHECK(*ParseU64("18446744073709551615") == UINT64_MAX);
  for (const char* text :
       {"", "-1", "+1", " 1", "1 ", "1e3", "0x10", "abc", "18446744073709551616"}) {
    INFO(text);
    CHECK(!ParseU64(text).ok());
  }
}

TEST_CASE("payload type names match CamelCase, lower case and snake_case") {
  Result<uint8_t> camel = ParsePayloadType("NodeJoined");
  REQUIRE(camel.ok());
  CHECK(*camel == static_cast<uint8_t>(fb::Payload::NodeJoined));
  CHECK(*ParsePayloadType("nodejoined") == *camel);
  CHECK(*ParsePayloadType("node_joined") == *camel);
  CHECK(*ParsePayloadType("NODE-JOINED") == *camel);
  CHECK(*ParsePayloadType("vm_instance_state_changed") ==
        static_cast<uint8_t>(fb::Payload::VmInstanceStateChanged));
  CHECK(PayloadTypeName(static_cast<uint8_t>(fb::Payload::AccessDenied)) == "AccessDenied");
  CHECK(PayloadTypeName(200) == "Unknown(200)");
  CHECK(PayloadTypeNames().size() == static_cast<size_t>(fb::Payload::MAX));
}

TEST_CASE("unknown payload type name is an error listing every valid name") {
  for (const char* text : {"", "_", "NONE", "node", "NodeJoinedX"}) {
    INFO(text);
    Result<uint8_t> type = ParsePayloadType(text);
    REQUIRE(!type.ok());
    for (const char* name : PayloadTypeNames()) {
      CHECK(type.status().message().find(name) != std::string::npos);
    }
  }
}

// A sink that records chunk sizes, and can be told to fail.
class RecordingSink final : public Sink {
 public:
  Status Write(std::string_view bytes) override {
    if (fail) {
      return Status::IoError("write: Broken pipe");
    }
    chunks.push_back(bytes.size());
    data.append(bytes);
    return Status::Ok();
  }
  bool fail = false;
  std::vector<size_t> chunks;
  std::string data;
};

TEST_CASE("output buffer drains in large chunks and grows for one oversized value") {
  RecordingSink sink;
  OutBuffer out(&sink, 1024);
  std::string expected;
  for (int i = 0; i < 1000; i++) {
    const std::string text =
        "value-" + std::to_string(i) + (i == 500 ? std::string(5000, 'x') : "");
    char* p = out.Ensure(out.cursor(), JsonStringBytesMax(text.size()));
    out.set_cursor(WriteJsonString(p, text.data(), text.size()));
    expected += JsonString(text);
  }
  REQUIRE(out.Flush().ok());
  CHECK(sink.data == expected);
  CHECK(sink.chunks.size() < expected.size() / 500);  // Big chunks, not one per value.
  CHECK(out.bytes_flushed() == expected.size());
}

TEST_CASE("output buffer keeps the sink's first error and drops later output") {
  RecordingSink sink;
  OutBuffer out(&sink, 64);
  sink.fail = true;
  for (int i = 0; i < 100; i++) {
    char* p = out.Ensure(out.cursor(), 16);
    std::memcpy(p, "0123456789abcdef", 16);
    out.set_cursor(p + 16);
  }
  CHECK(out.status().code() == StatusCode::kIoError);
  CHECK(out.Flush().code() == StatusCode::kIoError);
  CHECK(sink.data.empty());
}

}  // namespace
}  // namespace cloister::tools
