// ControllerClient: the agent's blocking HTTP(S) client for the controller (libcurl).
//
// Call sends one request and parses the Anka envelope. A transport failure (refused, reset,
// timed out, TLS) is an error Status; any HTTP answer with an envelope is a ControllerReply, OK
// or FAIL, for the caller to judge. Authentication (client_auth.h): a client certificate goes to
// the TLS handshake (cert_file, key_file); the other credentials are headers from auth. The one
// retry lives here: a request answered 401 while an API key's TAP session was used makes auth
// drop the session, and is sent once more with a fresh one (hand + shake on this connection).
// A second 401 is returned as a ControllerReply like any other answer.
//
// Not thread-safe: one client per thread (each holds one connection, reused between calls).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "log/status.h"
#include "client/client_auth.h"

namespace cloister::client {

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
  std::string cert_file;     // HTTPS: a client certificate (PEM) to present (mTLS).
  std::string key_file;      // Its private key (PEM); empty: in cert_file.
  long connect_timeout_ms = 5000;
  // Credentials' headers, TAP included; null: none. May be shared with other clients.
  std::shared_ptr<ClientAuth> auth;
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
  // One exchange on this connection: header_lines added, no envelope parsing.
  Result<RawReply> Exchange(const std::string& method, const std::string& path_and_query,
                            const std::string& body, const std::vector<std::string>& header_lines,
                            long timeout_ms);

  ControllerClientOptions options_;
  void* curl_ = nullptr;  // CURL*.
};

// curl_global_init; call once from main before any thread starts.
void InitHttpClients();

}  // namespace cloister::client
