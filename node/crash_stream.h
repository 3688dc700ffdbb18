// The command stream that reconciler_crash_child applies and crash_convergence_test checks, with
// the outcome a crash-free run has (written out by hand, so the test states what it expects).
//
// 20 instances, 48 commands: start all; stop 0-9; terminate 5-14; restart 15-17; suspend 18;
// start 0-2 again; restart 3 (stopped, so it starts).
#pragma once

#include <string>
#include <vector>

#include "node/agent_store.h"
#include "node/reconciler.h"

namespace cloister::node::crash {

inline constexpr int kInstances = 20;

// "inst-00" .. "inst-19".
inline std::string InstanceId(int i) {
  return std::string(i < 10 ? "inst-0" : "inst-") + std::to_string(i);
}

inline std::vector<NodeCommand> Stream() {
  std::vector<NodeCommand> stream;
  auto add = [&](CommandKind kind, int first, int last) {
    for (int i = first; i <= last; i++) {
      NodeCommand command;
      command.cursor = stream.size() + 1;
      command.instance_id = InstanceId(i);
      command.kind = kind;
      if (kind == CommandKind::kStart) {
        command.spec = InstanceSpec{"tmpl-crash", "v1", 2, 2048, ""};
      }
      stream.push_back(command);
    }
  };
  add(CommandKind::kStart, 0, 19);
  add(CommandKind::kStop, 0, 9);
  add(CommandKind::kTerminate, 5, 14);
  add(CommandKind::kRestart, 15, 17);
  add(CommandKind::kSuspend, 18, 18);
  add(CommandKind::kStart, 0, 2);
  add(CommandKind::kRestart, 3, 3);
  return stream;
}

// Where one instance ends, how often each driver call happened to its VM, and its reports.
struct Expected {
  bool exists = true;                  // The VM is still there.
  VmStatus status = VmStatus::kRunning;
  InstanceState state = InstanceState::kStarted;
  uint64_t clones = 1;
  uint64_t starts = 1;
  uint64_t stops = 0;
  uint64_t suspends = 0;
  uint64_t deletes = 0;
  std::vector<InstanceState> reports;  // In order, exactly.
};

inline Expected ExpectedFor(int i) {
  using S = InstanceState;
  Expected e;
  if (i <= 3) {  // start, stop, start (0-2) or restart (3).
    e.starts = 2;
    e.stops = 1;
    e.reports = {S::kPulling, S::kStarted, S::kStopping, S::kStopped, S::kStarted};
  } else if (i == 4) {  // start, stop.
    e.status = VmStatus::kStopped;
    e.state = S::kStopped;
    e.stops = 1;
    e.reports = {S::kPulling, S::kStarted, S::kStopping, S::kStopped};
  } else if (i <= 9) {  // start, stop, terminate.
    e.exists = false;
    e.state = S::kTerminated;
    e.stops = 1;
    e.deletes = 1;
    e.reports = {S::kPulling,  S::kStarted,     S::kStopping,
                 S::kStopped, S::kTerminating, S::kTerminated};
  } else if (i <= 14) {  // start, terminate.
    e.exists = false;
    e.state = S::kTerminated;
    e.deletes = 1;
    e.reports = {S::kPulling, S::kStarted, S::kTerminating, S::kTerminated};
  } else if (i <= 17) {  // start, restart: the outcome of the restart is reported Started again.
    e.starts = 2;
    e.stops = 1;
    e.reports = {S::kPulling, S::kStarted, S::kStarted};
  } else if (i == 18) {  // start, suspend.
    e.status = VmStatus::kSuspended;
    e.state = S::kStopped;
    e.suspends = 1;
    e.reports = {S::kPulling, S::kStarted, S::kStopping, S::kStopped};
  } else {  // start.
    e.reports = {S::kPulling, S::kStarted};
  }
  return e;
}

}  // namespace cloister::node::crash
