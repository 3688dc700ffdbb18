#include "engine/config_keys.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "engine/limits.h"

namespace cloister::engine {
namespace {

constexpr int64_t kDaySeconds = 24 * 3600;

// Sorted by name; config_keys_test checks it.
constexpr ConfigKey kKeys[] = {
    {"api_keys_session_ttl", ConfigType::kDuration, "300s", 10, 30 * kDaySeconds,
     "How long a UAK session token lives after the TAP handshake."},
    {"default_vm_priority", ConfigType::kInteger, "1000", 1, 10000,
     "Priority given to a VM request that names none (lower runs first)."},
    {"description", ConfigType::kString, "", 0, 0, "Free text shown with the status."},
    {"node_heartbeat_timeout", ConfigType::kDuration, "60s", 5, 3600,
     "A node that has not reported for this long is Offline."},
    {"registry_address", ConfigType::kUrl, "", 0, 0,
     "The registry URL reported by /api/v1/status and given to nodes."},
    {"scheduler_enabled", ConfigType::kBool, "true", 0, 0,
     "Whether queued VM requests are placed on nodes."},
};

Status Invalid(const ConfigKey& key, const std::string& why) {
  return Status::InvalidArgument(std::string(key.name) + ": " + why);
}

Result<std::string> CanonicalInteger(const ConfigKey& key, std::string_view value) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
    return Invalid(key, "must be an integer");
  }
  if (n < key.min || n > key.max) {
    return Invalid(key, "must be between " + std::to_string(key.min) + " and " +
                            std::to_string(key.max));
  }
  return std::to_string(n);
}

Result<std::string> CanonicalDuration(const ConfigKey& key, std::string_view value) {
  const int64_t seconds = ParseDurationSeconds(value);
  if (seconds < 0) {
    return Invalid(key, "must be a duration such as 90s, 5m or 1h");
  }
  if (seconds < key.min || seconds > key.max) {
    return Invalid(key, "must be between " + std::to_string(key.min) + "s and " +
                            std::to_string(key.max) + "s");
  }
  return std::to_string(seconds) + "s";
}

Result<std::string> CanonicalUrl(const ConfigKey& key, std::string_view value) {
  if (value.empty()) {
    return std::string();
  }
  const bool scheme = value.starts_with("http://") || value.starts_with("https://");
  const size_t host_at = value.find("://") + 3;
  if (!scheme || host_at >= value.size()) {
    return Invalid(key, "must be an http:// or https:// URL with a host");
  }
  for (char c : value) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
      return Invalid(key, "must not contain spaces or control characters");
    }
  }
  return std::string(value);
}

}  // namespace

std::span<const ConfigKey> ConfigKeys() { return kKeys; }

const ConfigKey* FindConfigKey(std::string_view name) {
  for (const ConfigKey& key : kKeys) {
    if (name == key.name) {
      return &key;
    }
  }
  return nullptr;
}

Result<std::string> CanonicalConfigValue(const ConfigKey& key, std::string_view value) {
  if (value.size() > kConfigValueBytesMax) {
    return Invalid(key, "longer than " + std::to_string(kConfigValueBytesMax) + " bytes");
  }
  switch (key.type) {
    case ConfigType::kString:
      if (value.size() > kDescriptionBytesMax) {
        return Invalid(key, "longer than " + std::to_string(kDescriptionBytesMax) + " bytes");
      }
      return std::string(value);
    case ConfigType::kUrl:
      return CanonicalUrl(key, value);
    case ConfigType::kInteger:
      return CanonicalInteger(key, value);
    case ConfigType::kBool:
      if (value == "true" || value == "false") {
        return std::string(value);
      }
      return Invalid(key, "must be true or false");
    case ConfigType::kDuration:
      return CanonicalDuration(key, value);
  }
  CL_ASSERT(false);  // Every ConfigType is handled above.
}

int64_t ParseDurationSeconds(std::string_view text) {
  if (text.empty() || text.size() > 32) {
    return -1;
  }
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t n = 0;
    std::from_chars(text.data(), text.data() + text.size(), n);
    return n;
  }
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(text.data() + i, text.data() + text.size(), n);
    if (ec != std::errc() || end == text.data() + text.size()) {
      return -1;
    }
    i = static_cast<size_t>(end - text.data());
    int64_t unit = 0;
    switch (text[i]) {
      case 'h': unit = 3600; break;
      case 'm': unit = 60; break;
      case 's': unit = 1; break;
      case 'd': unit = 24 * 3600; break;
      default: return -1;
    }
    ++i;
    if (n > (int64_t{1} << 40) / unit) {
      return -1;
    }
    total += n * unit;
  }
  return total;
}

}  // namespace cloister::engine
