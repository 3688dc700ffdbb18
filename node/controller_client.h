// ControllerClient: the agent's blocking HTTP(S) client for the controller (libcurl).
//
// Call sends one request and parses the Anka envelope. A transport failure (refused, reset,
// timed out, TLS) is an error Status; any HTTP answer with an envelope is a ControllerReply, OK
// or FAIL, for the caller to judge. Authentication is pluggable: auth_headers adds the
// credentials' headers to every request (the authentication issues bring certificates and
// UAKs).
//
// Not thread-safe: one client per thread (each holds one connection, reused between calls).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "log/status.h"

namespace cloister::node {

struct ControllerReply {
  int http_status = 0;
  bool ok = false;       // "status":"OK".
  std::string message;   // The envelope's message (the reason, for FAIL).
  nlohmann::json body;   // The envelope's body (null if none).
};

struct ControllerClientOptions {
  std::string url;           // "http://host:8090" or "https://...", no trailing slash needed.
  std::string ca_file;       // HTTPS: the CA to verify the controller with (empty: system CAs).
  bool insecure = false;     // HTTPS: do not verify the controller's certificate.
  long connect_timeout_ms = 5000;
  std::function<std::vector<std::string>()> auth_headers;  // "Name: value" lines; may be empty.
};

class ControllerClient {
 public:
  explicit ControllerClient(ControllerClientOptions options);
  ~ControllerClient();
  ControllerClient(const ControllerClient&) = delete;
  ControllerClient& operator=(const ControllerClient&) = delete;

  // method and path_and_query ("/node/v1/instances?node_id=..."); body is sent as JSON when not
  // empty. timeout_ms bounds the whole exchange.
  Result<ControllerReply> Call(const std::string& method, const std::string& path_and_query,
                               const std::string& body, long timeout_ms);

  const std::string& url() const { return options_.url; }

 private:
  ControllerClientOptions options_;
  void* curl_ = nullptr;  // CURL*.
};

// curl_global_init; call once from main before any thread starts.
void InitHttpClients();

}  // namespace cloister::node
