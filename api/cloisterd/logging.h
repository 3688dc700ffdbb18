// Logging for cloisterd: spdlog to stderr, human-readable or JSON lines.
//
// Callers pass a message and named fields; the text format prints `message key=value ...`, the
// JSON format one object per line with "time", "level", "msg" and the fields. Nothing that is a
// secret (tokens, keys, passwords, request bodies, header values) is ever passed here; the
// access log carries the path without its query string for the same reason.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cloister::cloisterd {

enum class LogFormat { kText, kJson };

struct LogField {
  std::string key;
  std::string value;
  bool number = false;  // JSON: emit unquoted.
};

inline LogField Field(std::string key, std::string value) {
  return {std::move(key), std::move(value), false};
}
inline LogField Field(std::string key, uint64_t value) {
  return {std::move(key), std::to_string(value), true};
}

// Installs the default spdlog logger. level: debug | info | warn | error.
void SetUpLogging(LogFormat format, const std::string& level);

void LogInfo(std::string_view message, const std::vector<LogField>& fields = {});
void LogWarn(std::string_view message, const std::vector<LogField>& fields = {});
void LogError(std::string_view message, const std::vector<LogField>& fields = {});

// Appends text to out as the contents of a JSON string (quotes not included).
void AppendJsonEscaped(std::string_view text, std::string* out);

}  // namespace cloister::cloisterd
