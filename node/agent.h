// Agent: cloister-node's loop. It joins the controller, sends heartbeats, long-polls the
// instances placed on its node (docs/node_protocol.md), turns each change of an instance's
// desired state into a command for the Reconciler, and sends the Reconciler's reports until
// the controller has taken them.
//
// State in the data directory: node.json (the configuration `join` saved, with the node id the
// controller gave), agent/ (the AgentStore), sim/ (the sim driver's VMs), images/ (the
// ImageCache: template tags pulled from the registry), saves/ (scratch space for images being
// saved; emptied at Open). A restarted agent rejoins with its node id, Recovers, and carries on:
// the level-triggered protocol and the reconciler's crash-safety rule mean nothing is cloned or
// started twice.
//
// The registry (docs/node_protocol.md). Each long-poll answer names the registry and, besides
// the instances, the node's pending save-image requests and distribution requests; one pass of
// the poll loop handles them in that order, on the poll thread (so a long pull or push delays
// the next poll; none of them runs concurrently with another or with the reconciler):
//  * Pull before clone. A start of an instance that has no VM yet, whose item names a manifest,
//    first makes sure the template tag is in the image cache (no network when it is), reporting
//    the instance Pulling with its progress (0..1, every 10%) directly to the controller (these
//    reports carry no seq: they are not kept in the store, and a lost one costs nothing). Only
//    then is the Start command handed to the reconciler, so the reconciler's clone always finds
//    the image. A transport failure is retried twice in place (1 s, then 2 s later; a pull
//    resumes where it stopped); a pull that still fails, or fails otherwise (no such manifest,
//    a digest other than the controller's), puts the instance in Error with "pull
//    <vmid>:<tag> failed: <reason>", and the reconciler never sees it. If that report is lost,
//    the next poll lists the instance again and the pull is tried again.
//  * Distributions: "distribute" pulls into the cache (in_progress with a percentage, every
//    10%, then done or error); "remove" deletes that tag (every tag when none is named), then
//    done. An item the controller lists again is answered again (cached: done at once).
//  * Save image: the instance's VM is suspended ("suspend") or stopped through the driver, its
//    image built (sim: node/sim_image.h, deterministic), pushed to the request's repository and
//    tag, and the manifest digest sent (POST /node/v1/save_image); a failure is sent as ok:false
//    with the reason. To the reconciler the stopped VM is drift: the converge pass that ends
//    the same loop iteration starts (resumes) it again when the instance should be Started. A
//    request the controller took an answer for is not redone; one whose answer was lost is
//    redone when listed again, and pushes the same digest.
//
// Threading: Run blocks; it runs the heartbeat and the report sender on threads of their own
// (reports go out as soon as the reconciler stores them, even while a long clone runs) and the
// poll-and-apply loop on the calling thread. Stop may be called from any thread (a signal
// handler's thread included). Every request carries the credentials node.json names
// (client_auth.h); the loops share one ClientAuth, so an API key holds one TAP session.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "client/controller_client.h"
#include "client/registry_client.h"
#include "log/status.h"
#include "node/agent_store.h"
#include "node/driver.h"
#include "node/image_cache.h"
#include "node/reconciler.h"
#include "node/sim_driver.h"

namespace cloister::node {

// The agent talks to the controller through the shared client (client/).
using client::ClientAuth;
using client::ClientAuthOptions;
using client::ControllerClient;
using client::ControllerClientOptions;
using client::ControllerReply;
using client::CredentialKind;
using client::CredentialKindOf;
using client::Credentials;
using client::InitHttpClients;

inline constexpr const char kAgentVersion[] = "0.3.0-cloister";

struct AgentConfig {
  std::string controller_url;
  std::string ca_file;
  bool insecure = false;
  std::string node_id;  // Given by the controller at the first join.
  std::string name;
  std::vector<std::string> groups;  // Node group names or ids.
  uint32_t max_vm_count = 2;
  std::string capacity_mode = "number";
  bool drain_mode = false;
  uint64_t heartbeat_ms = 5000;
  uint64_t reserve_space_mb = 0;  // Subtracted from the free disk space reported at join.
  std::string ip_address;         // Empty: the address the controller sees is not guessed here.
  uint64_t sim_delay_ms = 0;      // The sim driver's clone and start take this long (tests).
  // The hypervisor: "sim" (default), "qemu" (node/qemu_driver.h), "anka" or "tart" (the macOS
  // CLIs, node/anka_driver.h, node/tart_driver.h). For qemu: its VMs in qemu_vm_dir (default
  // DATA/qemu), its templates in qemu_templates_dir (default DATA/qemu-templates:
  // <template id>/<tag>/template.json), accelerator auto|tcg|kvm.
  std::string driver = "sim";
  std::string qemu_vm_dir;
  std::string qemu_templates_dir;
  std::string qemu_accel = "auto";
  std::string driver_program;     // anka/tart: the CLI's path; empty: its name on PATH.
  uint64_t update_seq = 0;        // The controller's last "reload credentials" request applied.
  // Client TLS certificate (mTLS; PEM files, absolute paths).
  std::string cert_file;
  std::string cert_key_file;
  // Credentials (client_auth.h; at most one kind; kept in node.json, mode 0600, never logged):
  // the controller's root token, sent as HTTP Basic (root:TOKEN) when the controller has
  // ANKA_ENABLE_AUTH=true; or an API key (UAK) for TAP: its id and its RSA private key, given
  // as the key itself (api_key_string) or as a file (api_key_file, absolute; read again on each
  // credential reload).
  std::string root_token;
  std::string api_key_id;
  std::string api_key_string;
  std::string api_key_file;
  // A TAP session is renewed once it is this old (the controller's TTL defaults to 5 minutes);
  // 0: only when the controller answers 401.
  uint64_t api_key_session_max_age_ms = 240'000;
};

// config's credential fields.
Credentials CredentialsOf(const AgentConfig& config);

// How to reach the controller with config's address, TLS settings and credentials (an API key is
// read and parsed here). Errors: CredentialKindOf's, and the key's (client_auth.h).
Result<ControllerClientOptions> ClientOptionsFor(const AgentConfig& config);

// DIR/node.json. Errors: kNotFound (never joined), kCorruption (unreadable).
Result<AgentConfig> LoadAgentConfig(const std::string& dir);
// Written atomically (temporary file, fsync, rename).
Status SaveAgentConfig(const std::string& dir, const AgentConfig& config);

// The driver config names, opened over DIR (sim: DIR/sim; qemu: see AgentConfig; tart keeps its
// state in DIR/tart). Errors: the driver's Open errors; kInvalidArgument for an unknown driver or
// accelerator.
Result<std::unique_ptr<Driver>> OpenDriver(const std::string& dir, const AgentConfig& config);

// A pull that fails with a transport error (kIoError) is tried this many times in all.
inline constexpr int kPullAttempts = 3;

class Agent {
 public:
  // Opens the store and the driver config.driver names (OpenDriver) in dir (kBusy if another
  // agent runs there); checks the credentials (ClientOptionsFor's errors).
  static Result<std::unique_ptr<Agent>> Open(const std::string& dir, AgentConfig config);

  // Registers the node (again, with its id, if it has one) and saves the configuration.
  Status Join();

  // Until Stop: recover, heartbeat, poll, apply, report. Transport errors are retried (with a
  // pause); returns the first store or driver error the agent cannot get past.
  Status Run();
  void Stop() { stop_ = true; }

  // Not synchronised with a running agent's credential reloads: read it before Run or after.
  const AgentConfig& config() const { return config_; }
  Reconciler& reconciler() { return *reconciler_; }
  ImageCache& image_cache() { return *cache_; }

 private:
  Agent(std::string dir, AgentConfig config) : dir_(std::move(dir)), config_(std::move(config)) {}
  void HeartbeatLoop();
  // Sends reports whenever the reconciler stores some (and every second, to retry).
  void ReportLoop();
  // Sends the pending reports; true if every one was taken.
  bool SendReports(ControllerClient& client);
  // Everything in a long-poll answer: instances, then distributions, then save images.
  // Returns the first store error (the agent cannot go on); the rest is reported.
  Status ApplyPoll(const nlohmann::json& body, ControllerClient& client);
  // Applies the desired states in a long-poll answer, pulling before each new instance.
  Status ApplyInstances(const nlohmann::json& instances, const std::string& registry_url,
                        ControllerClient& client);
  void ApplyDistributions(const nlohmann::json& items, const std::string& registry_url,
                          ControllerClient& client);
  void ApplySaveImages(const nlohmann::json& items, const std::string& registry_url,
                       ControllerClient& client);
  // Pull before clone for a new instance whose template tag has manifest: true once the image
  // is cached; false if the pull failed (the instance is reported Error) or Stop interrupted it.
  bool PullForStart(const std::string& instance_id, const InstanceSpec& spec,
                    const std::string& manifest, const std::string& registry_url,
                    ControllerClient& client);
  // Saves the VM of a save_images item and pushes it: the manifest digest.
  Result<std::string> SaveImage(const nlohmann::json& item, const std::string& registry_url);
  // ImageCache::Pull through the registry at registry_url, with kPullAttempts tries for a
  // transport failure. progress gets 0..100.
  Result<bool> PullToCache(const std::string& registry_url, const std::string& template_id,
                           const std::string& tag, const std::string& digest,
                           const PullProgress& progress);
  // The poll thread's registry client for url (rebuilt when url or the credentials change);
  // nullptr when url is empty.
  client::RegistryClient* Registry(const std::string& url);
  // Sends one report without a seq (a pull's progress, its failure); true if it was taken.
  bool ReportNow(ControllerClient& client, const std::string& instance_id, const std::string& state,
                 double progress, const std::string& message, long timeout_ms);
  // POST /node/v1/distribution; true if it was taken.
  bool ReportDistribution(ControllerClient& client, const std::string& request_id,
                          const std::string& status, int progress, const std::string& message,
                          long timeout_ms);
  // The template ids of the VMs this node has made and of the images it holds (reported with
  // each heartbeat).
  std::vector<std::string> Templates() const;
  // The controller asked every agent to reload its credentials (PUT /api/v1/node/update): read
  // node.json again for the credential settings (and the key file again), and have every loop
  // build a new client. Settings that do not load keep the current ones (and say so).
  void ReloadCredentials(uint64_t update_seq);
  // Shares one ClientAuth (and so one TAP session) between the loops.
  ControllerClientOptions ClientOptions() const;
  // A client with the current credentials; rebuilt in *client when they were reloaded since.
  void RefreshClient(std::unique_ptr<ControllerClient>* client, uint64_t* generation) const;
  // Sleeps up to ms, waking early on Stop.
  void Pause(uint64_t ms);

  std::string dir_;
  AgentConfig config_;
  std::unique_ptr<Driver> driver_;
  std::unique_ptr<AgentStore> store_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<ImageCache> cache_;
  // The poll thread's own (RegistryClient is one connection, not thread-safe).
  std::unique_ptr<client::RegistryClient> registry_;
  std::string registry_url_;
  uint64_t registry_generation_ = 0;
  std::set<std::string> answered_saves_;  // Save requests the controller took an answer for.
  std::atomic<bool> stop_{false};
  std::atomic<bool> rejoin_{false};
  std::atomic<uint32_t> vm_count_{0};
  mutable std::mutex config_mu_;                // Guards config_'s credential fields and
  std::atomic<uint64_t> credentials_generation_{0};  // update_seq while Run reloads them,
  ControllerClientOptions client_options_;            // and these, built from them.
  std::mutex reports_mu_;
  std::condition_variable reports_cv_;
  bool reports_new_ = false;  // Guarded by reports_mu_.
};

}  // namespace cloister::node
