#include "api/cloisterd/registry_probe.h"

#include <utility>

#include "client/controller_client.h"

namespace cloister::cloisterd {

const char* RegistryProbe::StateName(State state) {
  switch (state) {
    case State::kRunning: return "Running";
    case State::kUnauthorized: return "Unauthorized";
    case State::kUnreachable: return "Unreachable";
    case State::kUnknown: break;
  }
  return "Unknown";
}

Result<std::unique_ptr<RegistryProbe>> RegistryProbe::Start(RegistryProbeOptions options) {
  Result<std::shared_ptr<client::ClientAuth>> auth =
      client::ClientAuth::Create(options.credentials);
  if (!auth.ok()) {
    // The client library names the join flags; here they are the ANKA_* settings.
    return Status::InvalidArgument("controller to registry credentials (ANKA_CLIENT_CERT, "
                                   "ANKA_API_KEY_*): " + auth.status().message());
  }
  std::unique_ptr<RegistryProbe> probe(new RegistryProbe(std::move(options), auth.value()));
  probe->worker_ = std::thread([p = probe.get()] { p->Run(); });
  return probe;
}

RegistryProbe::~RegistryProbe() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
}

void RegistryProbe::Run() {
  client::ControllerClientOptions client_options;
  client_options.url = options_.url;
  client_options.insecure = options_.skip_tls_verification;
  client_options.cert_file = options_.credentials.cert_file;
  client_options.key_file = options_.credentials.cert_key_file;
  client_options.connect_timeout_ms = 3000;
  client_options.auth = auth_;
  client::ControllerClient registry(client_options);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    Result<client::ControllerReply> reply = registry.Call("GET", "/registry/status", "", 5000);
    State state = State::kUnreachable;
    if (reply.ok() && reply->ok) {
      state = State::kRunning;
    } else if (reply.ok() ? (reply->http_status == 401 || reply->http_status == 403)
                          : reply.status().code() == StatusCode::kInvalidArgument) {
      state = State::kUnauthorized;  // Refused, or the TAP handshake was (a wrong key).
    }
    state_.store(state);
    lock.lock();
    cv_.wait_for(lock, options_.interval, [this] { return stop_; });
  }
}

}  // namespace cloister::cloisterd
