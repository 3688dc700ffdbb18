// RegistryProbe: the controller's calls to a separate registry (seeds 001 and 003).
//
// With --role controller and ANKA_ANKA_REGISTRY set, a worker thread asks the registry for
// GET /registry/status at start and every interval, with the controller's own credentials:
// ANKA_CLIENT_CERT + ANKA_CLIENT_CERT_KEY (mTLS), or ANKA_API_KEY_ID + ANKA_API_KEY_STRING /
// ANKA_API_KEY_FILE (UAK + TAP), and ANKA_SKIP_TLS_VERIFICATION for a self-signed registry.
// /api/v1/status then reports registry_status "Running" (the registry answered OK), "Unauthorized"
// (401 or 403: the credentials are wrong) or "Unreachable".
//
// Threading: the probe runs on its own thread; state() may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "client/client_auth.h"
#include "log/status.h"

namespace cloister::cloisterd {

struct RegistryProbeOptions {
  std::string url;  // ANKA_ANKA_REGISTRY.
  client::Credentials credentials;
  bool skip_tls_verification = false;
  std::chrono::milliseconds interval{5000};
};

class RegistryProbe {
 public:
  enum class State { kUnknown, kRunning, kUnauthorized, kUnreachable };

  // Checks the credentials (a bad key fails here, naming the setting, never its text) and starts
  // the worker.
  static Result<std::unique_ptr<RegistryProbe>> Start(RegistryProbeOptions options);
  ~RegistryProbe();  // Stops and joins the worker.
  RegistryProbe(const RegistryProbe&) = delete;
  RegistryProbe& operator=(const RegistryProbe&) = delete;

  State state() const { return state_.load(); }
  static const char* StateName(State state);

 private:
  RegistryProbe(RegistryProbeOptions options, std::shared_ptr<client::ClientAuth> auth)
      : options_(std::move(options)), auth_(std::move(auth)) {}
  void Run();

  const RegistryProbeOptions options_;
  std::shared_ptr<client::ClientAuth> auth_;
  std::atomic<State> state_{State::kUnknown};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace cloister::cloisterd
