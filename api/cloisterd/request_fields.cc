#include "api/cloisterd/request_fields.h"

namespace cloister::cloisterd {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> QueryParam(const std::string& query, std::string_view name) {
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) {
      end = query.size();
    }
    const std::string_view pair(query.data() + start, end - start);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      std::string value;
      const std::string_view raw = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
      for (size_t i = 0; i < raw.size(); i++) {
        if (raw[i] == '%' && i + 2 < raw.size() && HexValue(raw[i + 1]) >= 0 &&
            HexValue(raw[i + 2]) >= 0) {
          value += static_cast<char>(HexValue(raw[i + 1]) * 16 + HexValue(raw[i + 2]));
          i += 2;
        } else {
          value += raw[i] == '+' ? ' ' : raw[i];
        }
      }
      return value;
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<nlohmann::json> BodyObject(const api::Request& request) {
  if (request.body.empty()) {
    return nlohmann::json::object();
  }
  nlohmann::json parsed = nlohmann::json::parse(request.body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return std::nullopt;
  }
  return parsed;
}

std::optional<nlohmann::json> BodyOr400(const api::Request& request,
                                        const std::function<void(api::Response)>& respond) {
  std::optional<nlohmann::json> body = BodyObject(request);
  if (!body) {
    respond(api::FailResponse(400, "the body must be a JSON object"));
  }
  return body;
}

bool Fields::String(const char* key, std::string* out) {
  if (!Has(key)) return true;
  if (!json_[key].is_string()) return Fail(key, "must be a string");
  *out = json_[key].get<std::string>();
  return true;
}

bool Fields::Bool(const char* key, bool* out) {
  if (!Has(key)) return true;
  if (!json_[key].is_boolean()) return Fail(key, "must be true or false");
  *out = json_[key].get<bool>();
  return true;
}

bool Fields::Strings(const char* key, std::vector<std::string>* out) {
  if (!Has(key)) return true;
  if (!json_[key].is_array()) return Fail(key, "must be an array of strings");
  for (const auto& item : json_[key]) {
    if (!item.is_string()) return Fail(key, "must be an array of strings");
    out->push_back(item.get<std::string>());
  }
  return true;
}

}  // namespace cloister::cloisterd
