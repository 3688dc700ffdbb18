// The settings `PUT /api/v1/config` may change at run time, with their types and defaults.
//
// A setting's value is always held as canonical text (an integer in decimal, a bool as
// "true"/"false", a duration as Go-style text such as "5m"); Validate turns a client's text into
// that form or explains, naming the key, why it cannot.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "log/status.h"

namespace cloister::engine {

enum class ConfigType { kString, kUrl, kInteger, kBool, kDuration };

struct ConfigKey {
  const char* name;
  ConfigType type;
  const char* default_value;
  int64_t min = 0;  // kInteger: inclusive bounds; kDuration: bounds in seconds.
  int64_t max = 0;
  const char* help;
};

// Every known key, sorted by name.
std::span<const ConfigKey> ConfigKeys();

// The key's description, or nullptr when unknown.
const ConfigKey* FindConfigKey(std::string_view name);

// The canonical text for value, or kInvalidArgument with a message naming the key.
Result<std::string> CanonicalConfigValue(const ConfigKey& key, std::string_view value);

// Seconds in a Go-style duration ("300", "90s", "5m", "1h30m"), or -1 when malformed.
int64_t ParseDurationSeconds(std::string_view text);

}  // namespace cloister::engine
