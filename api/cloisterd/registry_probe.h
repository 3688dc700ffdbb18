// RegistryProbe: the controller's calls to a separate registry (seeds 001 and 003).
//
// With --role controller and ANKA_ANKA_REGISTRY set, a worker thread asks the registry for
// GET /registry/status at start and every interval (--registry-interval-ms), with the
// controller's own credentials: ANKA_CLIENT_CERT + ANKA_CLIENT_CERT_KEY (mTLS), or
// ANKA_API_KEY_ID + ANKA_API_KEY_STRING / ANKA_API_KEY_FILE (UAK + TAP), and
// ANKA_SKIP_TLS_VERIFICATION for a self-signed registry. /api/v1/status then reports
// registry_status "Running" (the registry answered OK), "Unauthorized" (401 or 403: the
// credentials are wrong) or "Unreachable".
//
// Following (Follow): after a good status the worker also reads the registry's catalogue
// (GET /registry/v2/vm, then GET /registry/vm?id= for each template whose list entry changed
// since the last read; unchanged ones come from its cache) and hands the whole catalogue to the
// sink as a MirrorRegistryTemplates command. A read that fails anywhere hands nothing over, so a
// registry that is down or refuses never empties the controller's view.
//
// Forward: one call to the registry with the same credentials, for the controller endpoints that
// act on the registry (delete, revert, disk).
//
// Threading: the probe runs on its own thread; state(), Follow, ReadNow and Forward may be
// called from any thread. The sink runs on the worker thread: it must hand the command to the
// engine's thread, never submit it itself.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "client/client_auth.h"
#include "client/controller_client.h"
#include "engine/commands.h"
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
  using CatalogueSink = std::function<void(engine::MirrorRegistryTemplates)>;

  // Checks the credentials (a bad key fails here, naming the setting, never its text) and starts
  // the worker.
  static Result<std::unique_ptr<RegistryProbe>> Start(RegistryProbeOptions options);
  ~RegistryProbe();  // Stops and joins the worker.
  RegistryProbe(const RegistryProbe&) = delete;
  RegistryProbe& operator=(const RegistryProbe&) = delete;

  State state() const { return state_.load(); }
  static const char* StateName(State state);

  // Starts (or, with nullptr, stops) handing each good catalogue read to sink; the first read
  // is made at once. After Follow(nullptr) returns, sink is never called again.
  void Follow(CatalogueSink sink);

  // Wakes the worker for a status check and catalogue read now (a change was just forwarded).
  void ReadNow();

  // One call to the registry (method, "/registry/..."), blocking up to timeout_ms. For a
  // worker thread of the loop's pool, never the loop's own thread.
  Result<client::ControllerReply> Forward(const std::string& method,
                                          const std::string& path_and_query,
                                          long timeout_ms) const;

  const std::string& url() const { return options_.url; }

 private:
  // A template as last read: its /registry/v2/vm entry (serialised) and what ?id= answered.
  struct CachedTemplate {
    std::string list_entry;
    engine::MirroredTemplate detail;
  };

  RegistryProbe(RegistryProbeOptions options, std::shared_ptr<client::ClientAuth> auth)
      : options_(std::move(options)), auth_(std::move(auth)) {}
  client::ControllerClientOptions ClientOptions() const;
  void Run();
  // The whole catalogue, or the first failure (nothing is handed over then).
  Result<engine::MirrorRegistryTemplates> ReadCatalogue(client::ControllerClient* registry);

  const RegistryProbeOptions options_;
  std::shared_ptr<client::ClientAuth> auth_;
  std::atomic<State> state_{State::kUnknown};
  std::map<std::string, CachedTemplate> cache_;  // By template id; the worker's only.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool read_now_ = false;  // Guarded by mu_.
  // Held while the sink runs, so Follow(nullptr) waits for a call in progress.
  std::mutex sink_mu_;
  CatalogueSink sink_;  // Guarded by sink_mu_.
  std::thread worker_;
};

}  // namespace cloister::cloisterd
