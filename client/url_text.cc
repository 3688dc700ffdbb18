#include "client/url_text.h"

namespace cloister::client {
namespace {

std::string ToLower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return text;
}

}  // namespace

std::string OriginOf(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    return "";
  }
  size_t authority_end = url.find_first_of("/?#", scheme_end + 3);
  if (authority_end == std::string::npos) {
    authority_end = url.size();
  }
  std::string authority = url.substr(scheme_end + 3, authority_end - scheme_end - 3);
  const size_t at = authority.rfind('@');
  if (at != std::string::npos) {
    authority = authority.substr(at + 1);
  }
  return ToLower(url.substr(0, scheme_end)) + "://" + ToLower(authority);
}

std::string PathForMessage(const std::string& url) {
  std::string path = url;
  const size_t scheme_end = path.find("://");
  if (scheme_end != std::string::npos) {
    const size_t slash = path.find('/', scheme_end + 3);
    path = slash == std::string::npos ? "/" : path.substr(slash);
  }
  path = path.substr(0, path.find_first_of("?#"));
  if (path.size() > 160) {
    path = path.substr(0, 157) + "...";
  }
  return path;
}

std::string UrlForMessage(const std::string& url) {
  const std::string origin = OriginOf(url);
  return origin.empty() ? PathForMessage(url) : origin + PathForMessage(url);
}

}  // namespace cloister::client
