// NodeApi: the node-facing endpoints that cloister-node agents use (docs/node_protocol.md).
//
//   POST /node/v1/join       register (or re-register) a node: its name, host facts, capacity and
//                            node groups (names or ids); answers {"node_id"}
//   POST /node/v1/heartbeat  "still here": vm_count, templates. A heartbeat is not an event; a
//                            change of state, vm_count or templates is (NodeUpdated). Answers
//                            the node's drain_mode and update_seq (reload credentials when it
//                            grows).
//   GET  /node/v1/instances  ?node_id=&after=SEQ&wait_ms=N: the instances placed on the node with
//                            the state each should be in (level-triggered), answered at once if
//                            anything about the node changed after SEQ, else when it does or
//                            after wait_ms (at most 25 s, to the second)
//   POST /node/v1/report     state changes of the node's instances; each a ChangeVmState command,
//                            each answered with its own OK or FAIL; a report's seq at or below
//                            the node's last recorded one is a resend and records nothing
//   POST /node/v1/save_image the outcome of a save-image request for one of the node's instances
//                            (FinishSaveImage)
//
// Heartbeat timeout: Tick (every second) marks a node Offline (an event) once it has not sent a
// heartbeat for the node_heartbeat_timeout setting. After a restart every node gets a full
// timeout before it can be marked. Instances on an Offline node keep their node and state (see
// docs/node_protocol.md for why none is moved); the agent reconciles them when it comes back,
// or a user terminates them.
//
// Threading: everything on the event-loop thread that owns the engine.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "api/cloisterd/envelope.h"
#include "api/http_types.h"
#include "engine/engine.h"

namespace cloister::cloisterd {

class NodeApi {
 public:
  using Respond = std::function<void(api::Response)>;
  using Clock = std::chrono::steady_clock;

  explicit NodeApi(engine::Engine* engine) : engine_(engine) {}

  // Answers request if its path is one of the endpoints above and returns true.
  bool Handle(const api::Request& request, Respond& respond);

  // Who the request being handled is (see ControllerApi::SetPrincipal).
  void SetPrincipal(const engine::Principal* principal) { principal_ = principal; }

  // Where agents push saved images and pull templates (the long-poll's registry_url).
  void SetRegistryUrl(std::function<std::string()> url) { registry_url_ = std::move(url); }

  // Heartbeat timeouts and long-poll deadlines (called every second).
  void Tick();
  // The views changed: answer the long-polls that now have news.
  void OnApplied();
  // Shutdown: answer every waiting long-poll now, and mark no more nodes.
  void Stop();

 private:
  struct Poll {
    std::string node_id;
    uint64_t after = 0;
    Clock::time_point deadline;
    Respond respond;
  };

  void Join(const api::Request& request, Respond respond);
  void Heartbeat(const api::Request& request, Respond respond);
  void Instances(const api::Request& request, Respond respond);
  void Report(const api::Request& request, Respond respond);
  void SaveImageDone(const api::Request& request, Respond respond);
  void DistributionProgress(const api::Request& request, Respond respond);
  // The seq of the last change to the node or to an instance placed on it.
  uint64_t NodeChangeSeq(const std::string& node_id) const;
  std::string InstancesBody(const std::string& node_id) const;
  uint64_t HeartbeatTimeoutSeconds() const;

  engine::Engine* engine_;
  const engine::Principal* principal_ = &engine::kAnonymous;
  bool stopped_ = false;
  std::map<std::string, Clock::time_point> last_seen_;  // By node id.
  std::vector<Poll> polls_;
  std::function<std::string()> registry_url_;
};

}  // namespace cloister::cloisterd
