// reconciler_crash_child --dir DIR --seed N [--jitter-us US]
//
// The agent that crash_convergence_test kills: opens the agent store DIR/agent and a sim driver
// DIR/sim (whose mutating calls sleep a seeded random 0..US microseconds before and after their
// effect, to widen the windows between a driver call and the store write that records it),
// recovers, then applies all of crash::Stream() (the commands a predecessor recorded are
// replays, which the reconciler ignores) and prints "done".
//
// Before recovering it prints what the killed predecessor left, one line:
//   pending clone=A start=B stop=C suspend=D delete=E done-unrecorded=F
// (intents in the store; done-unrecorded counts intents whose call had already taken effect in
// the driver: the window the crash-safety rule exists for). Exit codes: 0 done, 2 an error.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "log/status.h"
#include "node/agent_store.h"
#include "node/crash_stream.h"
#include "node/reconciler.h"
#include "node/sim_driver.h"

namespace cloister::node {
namespace {

// One line to stdout with one write(2), so a kill never leaves half of it.
void Say(const std::string& line) {
  const std::string out = line + "\n";
  if (write(STDOUT_FILENO, out.data(), out.size()) < 0) {
    // Nothing to do: the parent reads what it can.
  }
}

int Die(const std::string& what, const Status& status) {
  std::fprintf(stderr, "reconciler_crash_child: %s: %s\n", what.c_str(),
               status.ToString().c_str());
  return 2;
}

// True when the intent's call has already happened in the driver.
bool TookEffect(Step intent, const Result<VmInfo>& vm) {
  const bool exists = vm.ok();
  switch (intent) {
    case Step::kClone: return exists;
    case Step::kStart: return exists && vm->status == VmStatus::kRunning;
    case Step::kStop: return exists && vm->status == VmStatus::kStopped;
    case Step::kSuspend: return exists && vm->status == VmStatus::kSuspended;
    case Step::kDelete: return !exists;
    case Step::kRunScript:
    case Step::kNone: return false;
  }
  return false;
}

Status ReportPending(AgentStore* store, SimDriver* sim) {
  Result<std::vector<InstanceRecord>> records = store->List();
  if (!records.ok()) {
    return records.status();
  }
  std::map<Step, int> pending;
  int done_unrecorded = 0;
  for (const InstanceRecord& record : *records) {
    if (record.intent == Step::kNone) {
      continue;
    }
    pending[record.intent]++;
    if (TookEffect(record.intent, sim->Show(record.vm_name))) {
      done_unrecorded++;
    }
  }
  Say("pending clone=" + std::to_string(pending[Step::kClone]) +
      " start=" + std::to_string(pending[Step::kStart]) +
      " stop=" + std::to_string(pending[Step::kStop]) +
      " suspend=" + std::to_string(pending[Step::kSuspend]) +
      " delete=" + std::to_string(pending[Step::kDelete]) +
      " done-unrecorded=" + std::to_string(done_unrecorded));
  return Status::Ok();
}

int Main(int argc, char** argv) {
  std::string dir;
  uint64_t seed = 0;
  int64_t jitter_us = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--dir") {
      dir = argv[i + 1];
    } else if (flag == "--seed") {
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (flag == "--jitter-us") {
      jitter_us = std::strtoll(argv[i + 1], nullptr, 10);
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: reconciler_crash_child --dir DIR --seed N [--jitter-us US]\n");
    return 2;
  }
  Result<std::unique_ptr<AgentStore>> store = AgentStore::Open(dir + "/agent");
  if (!store.ok()) {
    return Die("open agent store", store.status());
  }
  SimOptions options;
  options.jitter_max = std::chrono::microseconds(jitter_us);
  options.jitter_seed = seed;
  Result<std::unique_ptr<SimDriver>> sim = SimDriver::Open(dir + "/sim", options);
  if (!sim.ok()) {
    return Die("open sim driver", sim.status());
  }
  Status status = ReportPending(store->get(), sim->get());
  if (!status.ok()) {
    return Die("read pending intents", status);
  }
  Reconciler reconciler(sim->get(), store->get());
  status = reconciler.Recover();
  if (!status.ok()) {
    return Die("recover", status);
  }
  // The whole stream every time: what a predecessor recorded is a replay, which Apply ignores
  // (as after an agent restart that polls from an older cursor).
  for (const NodeCommand& command : crash::Stream()) {
    status = reconciler.Apply(command);
    if (!status.ok()) {
      return Die("apply cursor " + std::to_string(command.cursor), status);
    }
  }
  Say("done");
  return 0;
}

}  // namespace
}  // namespace cloister::node

int main(int argc, char** argv) { return cloister::node::Main(argc, argv); }
