// Agent: cloister-node's loop. It joins the controller, sends heartbeats, long-polls the
// instances placed on its node (docs/node_protocol.md), turns each change of an instance's
// desired state into a command for the Reconciler, and sends the Reconciler's reports until
// the controller has taken them.
//
// State in the data directory: node.json (the configuration `join` saved, with the node id the
// controller gave), agent/ (the AgentStore), sim/ (the sim driver's VMs). A restarted agent
// rejoins with its node id, Recovers, and carries on: the level-triggered protocol and the
// reconciler's crash-safety rule mean nothing is cloned or started twice.
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
#include <string>
#include <vector>

#include "log/status.h"
#include "node/agent_store.h"
#include "client/controller_client.h"
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

class Agent {
 public:
  // Opens the store and the sim driver in dir (kBusy if another agent runs there); checks the
  // credentials (ClientOptionsFor's errors).
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

 private:
  Agent(std::string dir, AgentConfig config) : dir_(std::move(dir)), config_(std::move(config)) {}
  void HeartbeatLoop();
  // Sends reports whenever the reconciler stores some (and every second, to retry).
  void ReportLoop();
  // Sends the pending reports; true if every one was taken.
  bool SendReports(ControllerClient& client);
  // Applies the desired states in a long-poll answer.
  Status ApplyInstances(const nlohmann::json& instances);
  // The template ids of the VMs this node has made (reported with each heartbeat).
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
  std::unique_ptr<SimDriver> driver_;
  std::unique_ptr<AgentStore> store_;
  std::unique_ptr<Reconciler> reconciler_;
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
