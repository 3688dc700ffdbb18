#include "api/cloisterd/service.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/cloisterd/certificates.h"
#include "api/cloisterd/logging.h"
#include "api/cloisterd/registry_probe.h"
#include "registry/blob_store.h"
#include "registry/log_store.h"
#include "api/cloisterd/routes.h"
#include "api/cloisterd/version.h"
#include "api/http_server.h"
#include "api/listen_address.h"
#include "api/loop_poster.h"
#include "api/tls.h"
#include "engine/config_keys.h"
#include "engine/engine.h"
#include "log/log.h"
#include "log/snapshot_store.h"

namespace cloister::cloisterd {
namespace {

// engine::Poster over the loop's async handle.
class EnginePoster final : public engine::Poster {
 public:
  explicit EnginePoster(api::LoopPoster* poster) : poster_(poster) {}
  void Post(std::function<void()> fn) override {
    // Invariant: the loop poster is closed only after the engine is idle, so no
    // acknowledgement can arrive after Close and be dropped.
    CL_ASSERT(poster_->Post(std::move(fn)));
  }

 private:
  api::LoopPoster* poster_;
};

// Runs work on the loop's thread pool and then after on the loop (inline if it cannot queue).
struct OffloadJob {
  uv_work_t request{};
  std::function<void()> work;
  std::function<void()> after;
};

void RunOffLoop(uv_loop_t* loop, std::function<void()> work, std::function<void()> after) {
  auto* job = new OffloadJob{{}, std::move(work), std::move(after)};
  job->request.data = job;
  const int rc = uv_queue_work(
      loop, &job->request,
      [](uv_work_t* request) { static_cast<OffloadJob*>(request->data)->work(); },
      [](uv_work_t* request, int) {
        std::unique_ptr<OffloadJob> done(static_cast<OffloadJob*>(request->data));
        done->after();
      });
  if (rc != 0) {
    std::unique_ptr<OffloadJob> done(job);
    done->work();
    done->after();
  }
}

// Hands a listener's requests to the routes; the writer is shared so the reply callback (a
// copyable std::function) can carry it until the engine answers.
class ListenerHandler final : public api::Handler {
 public:
  ListenerHandler(Routes* routes, Listener listener) : routes_(routes), listener_(listener) {}
  void Handle(api::Request request, api::ResponseWriter writer) override {
    auto shared = std::make_shared<api::ResponseWriter>(std::move(writer));
    routes_->Handle(listener_, std::move(request),
                    [shared](api::Response response) { shared->Send(std::move(response)); });
  }
  std::shared_ptr<api::BodySink> StreamBody(const api::Request& head,
                                            std::optional<api::Response>* reject) override {
    return routes_->StreamBody(listener_, head, reject);
  }

 private:
  Routes* routes_;
  Listener listener_;
};

void AccessLog(const api::AccessLogEntry& e) {
  LogInfo("access", {Field("server", std::string(e.server)), Field("method", std::string(e.method)),
                     Field("path", std::string(e.path)), Field("status", uint64_t(e.status)),
                     Field("bytes", e.response_bytes), Field("us", e.duration_us),
                     Field("peer", std::string(e.peer)),
                     Field("request_id", std::string(e.request_id))});
}

// Raises the open-file soft limit to the hard limit, since every connection is a descriptor
// (default soft limit 1024, --http-connections-max 10000 per listener), and warns if even the
// hard limit is short. Past the limit, accept fails and libuv pauses accepting; nothing crashes.
void RaiseOpenFileLimit(uint64_t connections_wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    }
  }
  constexpr uint64_t kReservedFiles = 64;  // LMDB, logs, the loop's own descriptors.
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < connections_wanted + kReservedFiles) {
    LogWarn("open-file limit is below what --http-connections-max allows",
            {Field("limit", uint64_t(limit.rlim_cur)), Field("connections", connections_wanted)});
  }
}

// How others reach a listener bound to host: a wildcard address by this machine's name.
std::string ReachableHost(const std::string& host) {
  if (host == "0.0.0.0" || host == "::") {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') {
      return name;
    }
    return "127.0.0.1";
  }
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

constexpr uint64_t kSchedulerTickMs = 1000;

// What tells a changed file apart: inode, size and modification time ("" when unreadable). An
// editor's rename-over and an in-place rewrite both change it.
std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return "";
  }
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

struct Listeners {
  std::optional<api::ListenAddress> controller;
  std::optional<api::ListenAddress> registry;
};

class Service {
 public:
  explicit Service(const Options& options) : options_(options) {}
  int Run();

 private:
  Status Prepare(Listeners* listeners);
  Status OpenState();
  Status StartServers(const Listeners& listeners);
  void WriteReadyFile();
  // Every second: routes' timers, and ANKA_CRL reloaded if the file changed.
  void Tick();
  void CheckCrl();
  // On the loop: records the differences between a followed registry's catalogue and the
  // template view. One mirror command at a time; a catalogue that arrives meanwhile waits, and
  // a newer one replaces it.
  void Mirror(engine::MirrorRegistryTemplates catalogue);
  void RecordCrlLoaded(const CrlInfo& info);
  void BeginShutdown(int signal);
  void OnServerStopped();
  void FinishWhenIdle();
  void Finish();

  const Options& options_;
  std::optional<api::TlsSettings> tls_;
  uv_loop_t loop_{};
  std::unique_ptr<api::LoopPoster> loop_poster_;
  std::unique_ptr<EnginePoster> engine_poster_;
  std::unique_ptr<log::Log> log_;
  std::unique_ptr<log::SnapshotStore> snapshots_;
  engine::SystemClock clock_;
  engine::SystemRng rng_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<Tap> tap_;  // API keys on: TAP and sessions.
  std::unique_ptr<CertificateAuthority> ca_;  // ANKA_CA_CERT: client certificates.
  std::unique_ptr<TrustedProxies> proxies_;   // ANKA_ENABLE_INGRESS_NGINX.
  std::unique_ptr<RegistryProbe> registry_probe_;  // --role controller with a registry URL.
  std::string crl_stamp_;                     // ANKA_CRL's identity when last read.
  bool mirror_in_flight_ = false;
  std::optional<engine::MirrorRegistryTemplates> mirror_waiting_;
  std::string mirror_failure_;  // The last mirror rejection logged (logged once each).
  bool crl_expired_logged_ = false;
  std::unique_ptr<registry::BlobStore> blobs_;  // The registry listener's storage.
  std::unique_ptr<registry::LogStore> logs_;    // Its central log server's files.
  std::unique_ptr<Routes> routes_;
  std::optional<TokenDigest> root_digest_;  // Authentication on: the root token's SHA-256.
  std::vector<std::unique_ptr<ListenerHandler>> handlers_;
  std::vector<std::unique_ptr<api::HttpServer>> servers_;
  uv_signal_t sigterm_{};
  uv_signal_t sigint_{};
  uv_timer_t shutdown_timer_{};
  uv_timer_t idle_timer_{};
  uv_timer_t scheduler_timer_{};
  bool shutting_down_ = false;
  size_t servers_running_ = 0;
  Status close_status_;
};

Status Service::Prepare(Listeners* listeners) {
  if (options_.use_https) {
    api::TlsConfig tls_config{options_.server_cert, options_.server_key,
                              options_.min_tls_version, options_.max_tls_version,
                              options_.cipher_suites};
    tls_config.request_client_cert = !options_.ca_cert.empty();
    tls_config.client_ca_path = options_.ca_cert;
    tls_config.client_ca_setting = options_.ca_cert_setting;
    Result<api::TlsSettings> tls = api::ParseTlsSettings(tls_config);
    if (!tls.ok()) {
      return tls.status();
    }
    // Load the certificate and key now, so that a bad key stops startup before any port opens.
    Result<std::shared_ptr<api::TlsContext>> context = api::TlsContext::Create(tls.value());
    if (!context.ok()) {
      return context.status();
    }
    tls_ = tls.value();
  }
  if (options_.role != Role::kRegistry) {
    Result<api::ListenAddress> address = api::ParseListenAddress(options_.listen_addr);
    if (!address.ok()) {
      return Status::InvalidArgument("ANKA_LISTEN_ADDR: " + address.status().message());
    }
    listeners->controller = address.value();
  }
  if (options_.role != Role::kController) {
    Result<api::ListenAddress> address = api::ParseListenAddress(options_.registry_listen_address);
    if (!address.ok()) {
      return Status::InvalidArgument("ANKA_REGISTRY_LISTEN_ADDRESS: " +
                                     address.status().message());
    }
    listeners->registry = address.value();
  }
  if (options_.role == Role::kController && !options_.registry_url.empty()) {
    RegistryProbeOptions probe;
    probe.url = options_.registry_url;
    probe.credentials.cert_file = options_.client_cert;
    probe.credentials.cert_key_file = options_.client_cert_key;
    probe.credentials.api_key_id = options_.api_key_id;
    probe.credentials.api_key_string = options_.api_key_string;
    probe.credentials.api_key_file = options_.api_key_file;
    probe.skip_tls_verification = options_.skip_tls_verification;
    probe.interval = std::chrono::milliseconds(options_.registry_interval_ms);
    Result<std::unique_ptr<RegistryProbe>> started = RegistryProbe::Start(std::move(probe));
    if (!started.ok()) {
      return started.status();
    }
    registry_probe_ = std::move(started.value());
  }
  if (!options_.ca_cert.empty()) {
    Result<std::unique_ptr<CertificateAuthority>> ca =
        CertificateAuthority::Create(options_.ca_cert, options_.ca_cert_setting);
    if (!ca.ok()) {
      return ca.status();
    }
    ca_ = std::move(ca.value());
    if (!options_.crl.empty()) {
      Result<CrlInfo> crl = ca_->LoadCrl(options_.crl, clock_.NowNs() / 1'000'000'000);
      if (!crl.ok()) {
        return crl.status();
      }
      crl_stamp_ = FileStamp(options_.crl);
    }
    if (options_.enable_ingress_nginx) {
      Result<TrustedProxies> proxies = TrustedProxies::Parse(options_.trusted_proxies);
      if (!proxies.ok()) {
        return Status::InvalidArgument("CLOISTER_TRUSTED_PROXIES: " + proxies.status().message());
      }
      proxies_ = std::make_unique<TrustedProxies>(std::move(proxies.value()));
    }
  }
  // Last, so that the warning below is not printed by a start that is refused anyway.
  if (options_.enable_auth) {
    if (!options_.root_token.empty()) {
      root_digest_ = DigestToken(options_.root_token);
    } else if (Result<TokenDigest> saved = ReadRootTokenDigest(options_.data_dir); saved.ok()) {
      root_digest_ = saved.value();
    } else if (ca_ == nullptr) {
      return Status::InvalidArgument(
          "ANKA_ENABLE_AUTH=true needs ANKA_ROOT_TOKEN, or a token made by cloisterd --init (" +
          saved.status().message() + "), or ANKA_CA_CERT for certificates");
    }
    std::string methods = root_digest_ ? "root token" : "";
    for (const auto& [on, name] : {std::pair{options_.enable_api_keys, "API keys"},
                                   std::pair{ca_ != nullptr, "client certificates"},
                                   std::pair{proxies_ != nullptr, "ingress certificates"}}) {
      if (on) methods += std::string(methods.empty() ? "" : ", ") + name;
    }
    LogInfo("authentication on", {Field("methods", methods)});
  } else {
    LogWarn("authentication is OFF: anyone who reaches the API can change everything; set "
            "ANKA_ENABLE_AUTH=true with ANKA_ROOT_TOKEN (or run cloisterd --init)",
            {Field("root_token_set", std::string(options_.root_token.empty() ? "no" : "yes"))});
  }
  return Status::Ok();
}

Status Service::OpenState() {
  log::Options log_options;
  log_options.dir = options_.data_dir;
  Result<std::unique_ptr<log::Log>> log = log::Log::Open(log_options);
  if (!log.ok()) {
    return Status(log.status().code() == StatusCode::kBusy
                      ? Status::Busy("data directory " + options_.data_dir + ": " +
                                     log.status().message())
                      : log.status());
  }
  log_ = std::move(log.value());
  Result<std::unique_ptr<log::SnapshotStore>> snapshots =
      log::SnapshotStore::Open(options_.data_dir, false);
  if (!snapshots.ok()) {
    return snapshots.status();
  }
  snapshots_ = std::move(snapshots.value());
  engine::EngineOptions engine_options;
  engine_options.log = log_.get();
  engine_options.snapshots = snapshots_.get();
  engine_options.clock = &clock_;
  engine_options.rng = &rng_;
  engine_options.poster = engine_poster_.get();
  engine_options.snapshot_interval_events = options_.snapshot_interval_events;
  Result<std::unique_ptr<engine::Engine>> engine = engine::Engine::Open(engine_options);
  if (!engine.ok()) {
    return engine.status();
  }
  engine_ = std::move(engine.value());
  const reducers::RebuildStats& recovery = engine_->recovery();
  LogInfo("views rebuilt",
          {Field("seq", recovery.seq), Field("snapshot_seq", recovery.snapshot_seq),
           Field("snapshots_rejected", uint64_t(recovery.snapshots_rejected.size())),
           Field("events_replayed", recovery.events_applied),
           Field("ms", uint64_t(recovery.elapsed_ns / 1'000'000))});
  for (const auto& rejected : recovery.snapshots_rejected) {
    LogWarn("snapshot skipped", {Field("seq", rejected.seq), Field("reason", rejected.reason)});
  }
  return Status::Ok();
}

Status Service::StartServers(const Listeners& listeners) {
  if (options_.enable_api_keys) {
    Result<KeyedHash> hash = KeyedHash::LoadOrCreate(options_.data_dir);
    if (!hash.ok()) {
      return hash.status();
    }
    TapOptions tap_options;
    tap_options.enabled = true;
    tap_options.session_ttl_ns =
        engine::ParseDurationSeconds(options_.api_keys_session_ttl) * 1'000'000'000;
    tap_options.secret_ttl_ns =
        engine::ParseDurationSeconds(options_.tap_secret_ttl) * 1'000'000'000;
    Result<std::unique_ptr<Tap>> tap =
        Tap::Create(tap_options, engine_.get(), &clock_, hash.value());
    if (!tap.ok()) {
      return tap.status();
    }
    tap_ = std::move(tap.value());
  }
  routes_ = std::make_unique<Routes>(options_, engine_.get(), &clock_, root_digest_, tap_.get());
  if (registry_probe_ != nullptr) {
    routes_->SetRegistryProbe(registry_probe_.get(), [this](std::function<void()> work,
                                                            std::function<void()> after) {
      RunOffLoop(&loop_, std::move(work), std::move(after));
    });
    // No storage here: the template view follows the registry's catalogue.
    registry_probe_->Follow([poster = loop_poster_.get(), this](
                                engine::MirrorRegistryTemplates catalogue) {
      poster->Post([this, catalogue = std::move(catalogue)] { Mirror(catalogue); });
    });
  }
  if (options_.role != Role::kController) {
    Result<std::unique_ptr<registry::BlobStore>> blobs =
        registry::BlobStore::Open(options_.data_dir + "/registry");
    if (!blobs.ok()) {
      return blobs.status();
    }
    blobs_ = std::move(blobs.value());
    Result<std::unique_ptr<registry::LogStore>> logs =
        registry::LogStore::Open(options_.data_dir + "/logs");
    if (!logs.ok()) {
      return logs.status();
    }
    logs_ = std::move(logs.value());
    routes_->SetBlobStore(blobs_.get(), logs_.get(),
                          [this](std::function<void()> work, std::function<void()> after) {
                            RunOffLoop(&loop_, std::move(work), std::move(after));
                          });
  }
  if (ca_ != nullptr) {
    routes_->SetCertificates(ca_.get(), proxies_.get());
    if (ca_->HasCrl()) {
      RecordCrlLoaded(ca_->crl_info());
    }
  }
  engine_->SetOnApplied([routes = routes_.get()] { routes->OnApplied(); });
  api::HttpLimits limits;
  limits.header_bytes_max = static_cast<uint32_t>(options_.header_bytes_max);
  limits.header_count_max = static_cast<uint32_t>(options_.header_count_max);
  limits.body_bytes_max = options_.body_bytes_max;
  limits.connections_max = static_cast<uint32_t>(options_.connections_max);
  limits.header_timeout_ms = static_cast<uint32_t>(options_.header_timeout_ms);
  limits.body_timeout_ms = static_cast<uint32_t>(options_.body_timeout_ms);
  limits.idle_timeout_ms = static_cast<uint32_t>(options_.idle_timeout_ms);
  const std::pair<const std::optional<api::ListenAddress>*, Listener> all[] = {
      {&listeners.controller, Listener::kController}, {&listeners.registry, Listener::kRegistry}};
  for (const auto& [address, listener] : all) {
    if (!address->has_value()) {
      continue;
    }
    handlers_.push_back(std::make_unique<ListenerHandler>(routes_.get(), listener));
    api::HttpServerOptions server_options;
    server_options.name = listener == Listener::kController ? "controller" : "registry";
    server_options.listen = **address;
    server_options.limits = limits;
    server_options.tls = tls_;
    server_options.handler = handlers_.back().get();
    if (options_.access_log) {
      server_options.access_log = AccessLog;
    }
    servers_.push_back(std::make_unique<api::HttpServer>(&loop_, server_options));
    Status status = servers_.back()->Listen();
    if (!status.ok()) {
      return status;
    }
    const std::string scheme = tls_ ? "https" : "http";
    if (listener == Listener::kRegistry) {
      routes_->SetOwnRegistryUrl(scheme + "://" + ReachableHost((*address)->host) + ":" +
                                 std::to_string(servers_.back()->port()));
    }
    LogInfo("listening", {Field("server", server_options.name),
                          Field("address", (*address)->ToString()),
                          Field("url", scheme + "://127.0.0.1:" +
                                           std::to_string(servers_.back()->port()))});
  }
  servers_running_ = servers_.size();
  return Status::Ok();
}

void Service::Tick() {
  routes_->Tick();
  CheckCrl();
}

void Service::CheckCrl() {
  if (ca_ == nullptr || options_.crl.empty()) {
    return;
  }
  const int64_t now_s = clock_.NowNs() / 1'000'000'000;
  const std::string stamp = FileStamp(options_.crl);
  if (stamp != crl_stamp_) {
    crl_stamp_ = stamp;
    Result<CrlInfo> loaded = ca_->LoadCrl(options_.crl, now_s);
    if (loaded.ok()) {
      LogInfo("CRL loaded", {Field("path", options_.crl),
                             Field("revoked", uint64_t(loaded->revoked_count)),
                             Field("generation", loaded->generation)});
      RecordCrlLoaded(loaded.value());
      crl_expired_logged_ = false;
    } else {
      LogWarn("CRL refused; the previous one stays in force",
              {Field("reason", loaded.status().message())});
    }
  }
  if (ca_->CrlExpired(now_s) && !crl_expired_logged_) {
    crl_expired_logged_ = true;
    LogError("ANKA_CRL has expired: certificate logins are refused (root token and API keys "
             "still work) and /readyz fails until a newer CRL is in place",
             {Field("path", options_.crl)});
  }
}

void Service::Mirror(engine::MirrorRegistryTemplates catalogue) {
  if (shutting_down_) {
    return;
  }
  if (mirror_in_flight_) {
    mirror_waiting_ = std::move(catalogue);
    return;
  }
  mirror_in_flight_ = true;
  engine_->Submit(engine::Principal::System(), std::move(catalogue), "registry-mirror",
                  [this](engine::Reply reply) {
                    mirror_in_flight_ = false;
                    if (!reply.ok() && reply.message != mirror_failure_) {
                      mirror_failure_ = reply.message;
                      LogWarn("registry catalogue not recorded", {Field("reason", reply.message)});
                    } else if (reply.ok()) {
                      mirror_failure_.clear();
                    }
                    if (mirror_waiting_.has_value()) {
                      engine::MirrorRegistryTemplates next = std::move(*mirror_waiting_);
                      mirror_waiting_.reset();
                      Mirror(std::move(next));
                    }
                  });
}

void Service::RecordCrlLoaded(const CrlInfo& info) {
  engine::RecordCrlLoaded command;
  std::copy(info.sha256.begin(), info.sha256.end(), command.crl_sha256.begin());
  command.issuer = info.issuer;
  command.this_update_ns = info.this_update * 1'000'000'000;
  command.next_update_ns = info.next_update * 1'000'000'000;
  command.revoked_count = static_cast<uint32_t>(info.revoked_count);
  command.source = options_.crl;
  engine_->Submit(engine::Principal::System(), std::move(command), "crl", [](engine::Reply) {});
}

void Service::WriteReadyFile() {
  if (options_.ready_file.empty()) {
    return;
  }
  const std::string temp = options_.ready_file + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    for (const auto& server : servers_) {
      out << server->options().name << "=" << server->port() << "\n";
    }
  }
  std::rename(temp.c_str(), options_.ready_file.c_str());
}

void Service::BeginShutdown(int signal) {
  if (shutting_down_) {
    return;
  }
  shutting_down_ = true;
  LogInfo("shutting down", {Field("signal", std::string(strsignal(signal)))});
  routes_->SetDraining();
  if (registry_probe_ != nullptr) {
    registry_probe_->Follow(nullptr);
  }
  uv_timer_stop(&scheduler_timer_);
  uv_signal_stop(&sigterm_);
  uv_signal_stop(&sigint_);
  // Requests that outlast the deadline are cut off; their connections close unanswered.
  uv_timer_start(
      &shutdown_timer_,
      [](uv_timer_t* timer) {
        auto* self = static_cast<Service*>(timer->data);
        LogWarn("shutdown deadline passed; closing connections still open");
        for (auto& server : self->servers_) {
          server->CloseAll();
        }
      },
      options_.shutdown_timeout_ms, 0);
  for (auto& server : servers_) {
    server->Shutdown([this] { OnServerStopped(); });
  }
  if (servers_.empty()) {
    FinishWhenIdle();
  }
}

void Service::OnServerStopped() {
  CL_ASSERT(servers_running_ > 0);
  if (--servers_running_ == 0) {
    FinishWhenIdle();
  }
}

void Service::FinishWhenIdle() {
  // Commands whose connections were cut off are still being committed: wait for their
  // acknowledgements (they are durable once acknowledged, answered or not).
  if (engine_->Idle()) {
    Finish();
    return;
  }
  uv_timer_start(
      &idle_timer_,
      [](uv_timer_t* timer) {
        auto* self = static_cast<Service*>(timer->data);
        if (self->engine_->Idle()) {
          uv_timer_stop(timer);
          self->Finish();
        }
      },
      5, 5);
}

void Service::Finish() {
  close_status_ = engine_->Close();
  if (!close_status_.ok()) {
    LogWarn("final snapshot failed; the next start replays the log",
            {Field("error", close_status_.ToString())});
  }
  uv_timer_stop(&shutdown_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&shutdown_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&scheduler_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  loop_poster_->Close();
}

int Service::Run() {
  Listeners listeners;
  Status status = Prepare(&listeners);
  if (!status.ok()) {
    std::fprintf(stderr, "cloisterd: %s\n", status.message().c_str());
    return kExitUsage;
  }
  signal(SIGPIPE, SIG_IGN);
  const uint64_t listener_count = (listeners.controller ? 1 : 0) + (listeners.registry ? 1 : 0);
  RaiseOpenFileLimit(listener_count * options_.connections_max);
  CL_ASSERT(uv_loop_init(&loop_) == 0);
  auto poster = api::LoopPoster::Create(&loop_);
  CL_ASSERT(poster.ok());
  loop_poster_ = std::move(poster.value());
  engine_poster_ = std::make_unique<EnginePoster>(loop_poster_.get());
  status = OpenState();
  if (status.ok()) {
    status = StartServers(listeners);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "cloisterd: %s\n", status.message().c_str());
    _exit(kExitFailure);  // Nothing was acknowledged; the log closes cleanly on its own.
  }
  for (uv_timer_t* timer : {&shutdown_timer_, &idle_timer_, &scheduler_timer_}) {
    uv_timer_init(&loop_, timer);
    timer->data = this;
  }
  // A tick every second catches what no request triggers: a scheduler pass (a node coming
  // back), heartbeat and long-poll deadlines, TAP expiries, abandoned registry uploads.
  uv_timer_start(
      &scheduler_timer_,
      [](uv_timer_t* timer) { static_cast<Service*>(timer->data)->Tick(); },
      kSchedulerTickMs, kSchedulerTickMs);
  for (uv_signal_t* handle : {&sigterm_, &sigint_}) {
    uv_signal_init(&loop_, handle);
    handle->data = this;
  }
  auto on_signal = [](uv_signal_t* handle, int signum) {
    static_cast<Service*>(handle->data)->BeginShutdown(signum);
  };
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  WriteReadyFile();
  LogInfo("cloisterd ready", {Field("version", std::string(kVersion)),
                              Field("role", std::string(RoleName(options_.role))),
                              Field("data", options_.data_dir),
                              Field("seq", engine_->views().seq)});
  uv_run(&loop_, UV_RUN_DEFAULT);
  const uint64_t seq = engine_->views().seq;
  servers_.clear();
  uv_run(&loop_, UV_RUN_NOWAIT);  // Close callbacks of anything the servers still held.
  CL_ASSERT(uv_loop_close(&loop_) == 0);
  engine_.reset();
  snapshots_.reset();
  log_.reset();  // Commits anything still queued, then closes the store.
  LogInfo("stopped", {Field("seq", seq)});
  return kExitOk;
}

}  // namespace

int RunService(const Options& options) {
  Service service(options);
  return service.Run();
}

}  // namespace cloister::cloisterd
