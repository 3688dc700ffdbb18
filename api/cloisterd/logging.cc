#include "api/cloisterd/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

namespace cloister::cloisterd {
namespace {

LogFormat g_format = LogFormat::kText;

std::string Format(std::string_view message, const std::vector<LogField>& fields) {
  std::string line;
  if (g_format == LogFormat::kText) {
    line.append(message);
    for (const LogField& field : fields) {
      line += ' ';
      line += field.key;
      line += '=';
      line += field.value;
    }
    return line;
  }
  line = "\"msg\":\"";
  AppendJsonEscaped(message, &line);
  line += '"';
  for (const LogField& field : fields) {
    line += ",\"";
    AppendJsonEscaped(field.key, &line);
    line += field.number ? "\":" : "\":\"";
    AppendJsonEscaped(field.value, &line);
    if (!field.number) {
      line += '"';
    }
  }
  return line;
}

}  // namespace

void AppendJsonEscaped(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      *out += '\\';
      *out += c;
    } else if (u < 0x20) {
      *out += "\\u00";
      *out += kHex[u >> 4];
      *out += kHex[u & 0xF];
    } else {
      *out += c;
    }
  }
}

void SetUpLogging(LogFormat format, const std::string& level) {
  g_format = format;
  auto logger = std::make_shared<spdlog::logger>(
      "cloisterd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (format == LogFormat::kJson) {
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})",
                        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void LogInfo(std::string_view message, const std::vector<LogField>& fields) {
  spdlog::info("{}", Format(message, fields));
}

void LogWarn(std::string_view message, const std::vector<LogField>& fields) {
  spdlog::warn("{}", Format(message, fields));
}

void LogError(std::string_view message, const std::vector<LogField>& fields) {
  spdlog::error("{}", Format(message, fields));
}

}  // namespace cloister::cloisterd
