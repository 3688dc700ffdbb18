// What of a URL may be shown: the HTTP clients put URLs in their error messages, and a URL can
// carry user info ("https://user:password@host") or a secret in its query (an OCI upload's state
// token). Pure string functions.
#pragma once

#include <string>

namespace cloister::client {

// "scheme://host[:port]" of url, lowercased, user info dropped; "" if it has no scheme.
std::string OriginOf(const std::string& url);

// Its path, without the origin or the query and fragment, at most 160 bytes ("/" if none).
std::string PathForMessage(const std::string& url);

// OriginOf + PathForMessage: the URL without user info, query or fragment.
std::string UrlForMessage(const std::string& url);

}  // namespace cloister::client
