#include "client/url_text.h"

#include <catch2/catch.hpp>

namespace cloister::client {
namespace {

TEST_CASE("URLs in messages lose user info, query and fragment") {
  CHECK(OriginOf("HTTPS://user:secret@Registry.Example:8089/v2/?x=1") ==
        "https://registry.example:8089");
  CHECK(OriginOf("/no/scheme") == "");
  CHECK(PathForMessage("http://h:1/v2/a/blobs/uploads/u?_state=token#f") ==
        "/v2/a/blobs/uploads/u");
  CHECK(PathForMessage("http://h:1") == "/");
  CHECK(PathForMessage("http://h/" + std::string(300, 'p')).size() == 160);
  const std::string shown = UrlForMessage("http://admin:hunter2@127.0.0.1:9/api/v1/node?key=k2");
  CHECK(shown == "http://127.0.0.1:9/api/v1/node");
  CHECK(shown.find("hunter2") == std::string::npos);
  CHECK(UrlForMessage("/api/v1/status?token=t") == "/api/v1/status");
}

}  // namespace
}  // namespace cloister::client
