// Reading Anka request bodies and query strings: typed JSON fields with errors that name the
// field, query parameters, and the JSON-object body every write endpoint takes.
#pragma once

#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/http_types.h"

namespace cloister::cloisterd {

// The value of name in a query string ("id=a&x=1"), percent-decoded ('+' is a space); nullopt
// if absent.
std::optional<std::string> QueryParam(const std::string& query, std::string_view name);

// The body as a JSON object; an empty body is an empty object. nullopt: not a JSON object.
std::optional<nlohmann::json> BodyObject(const api::Request& request);

// BodyObject for a write endpoint: on nullopt it has answered 400 "the body must be a JSON
// object" through respond.
std::optional<nlohmann::json> BodyOr400(const api::Request& request,
                                        const std::function<void(api::Response)>& respond);

// Typed reads from a request's JSON object. Each returns false (and sets error, naming the
// field) when the field is present with the wrong JSON type; an absent (or null) field leaves
// the output as it was.
class Fields {
 public:
  explicit Fields(const nlohmann::json& json) : json_(json) {}

  bool Has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }
  bool String(const char* key, std::string* out);
  bool Bool(const char* key, bool* out);
  bool Strings(const char* key, std::vector<std::string>* out);

  // Any integer; values beyond T's range are clamped to it (the engine's range checks then
  // name the field and its range, as a domain failure).
  template <typename T>
  bool Int(const char* key, T* out) {
    if (!Has(key)) return true;
    if (!json_[key].is_number_integer()) return Fail(key, "must be a whole number");
    const auto& value = json_[key];
    if (value.is_number_unsigned()) {
      const uint64_t v = value.template get<uint64_t>();
      *out = v > static_cast<uint64_t>(std::numeric_limits<T>::max())
                 ? std::numeric_limits<T>::max()
                 : static_cast<T>(v);
      return true;
    }
    const int64_t v = value.template get<int64_t>();
    if (v < static_cast<int64_t>(std::numeric_limits<T>::min())) {
      *out = std::numeric_limits<T>::min();
    } else if (v > 0 &&
               static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      *out = std::numeric_limits<T>::max();
    } else {
      *out = static_cast<T>(v);
    }
    return true;
  }

  const std::string& error() const { return error_; }

 private:
  bool Fail(const char* key, const char* what) {
    error_ = std::string(key) + ": " + what;
    return false;
  }

  const nlohmann::json& json_;
  std::string error_;
};

}  // namespace cloister::cloisterd
