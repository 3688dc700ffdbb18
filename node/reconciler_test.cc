// Reconciler: commands to driver calls and reports, failures, replays, out-of-order and unknown
// instances, and recovery from every pending intent (the crashes are made by writing the store
// and the sim as a killed agent would have left them; crash_convergence_test kills for real).
#include "node/reconciler.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "log/status.h"
#include "node/agent_store.h"
#include "node/driver.h"
#include "node/sim_driver.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

// A sim driver, a store and a reconciler on one temporary directory; Restart() is a crash and a
// restart of the agent (the sim's VMs survive, as a hypervisor's would).
class Agent {
 public:
  Agent() { Open(); }

  void Restart() {
    reconciler.reset();
    store.reset();
    sim.reset();
    Open();
  }

  // Applies a command at the next cursor and requires OK.
  void Apply(CommandKind kind, const std::string& id, InstanceSpec spec = {}) {
    Status status = ApplyStatus(kind, id, std::move(spec));
    INFO(status.ToString());
    REQUIRE(status.ok());
  }

  Status ApplyStatus(CommandKind kind, const std::string& id, InstanceSpec spec = {}) {
    NodeCommand command;
    command.cursor = ++next_cursor;
    command.instance_id = id;
    command.kind = kind;
    command.spec = std::move(spec);
    return reconciler->Apply(command);
  }

  // The reports not seen yet, as "id State" (plus ": message" for errors), then acknowledged.
  std::vector<std::string> TakeReports() {
    Result<std::vector<Report>> reports = reconciler->PendingReports(1000);
    REQUIRE(reports.ok());
    std::vector<std::string> out;
    for (const Report& report : *reports) {
      std::string line = report.instance_id + " " + InstanceStateName(report.state);
      if (!report.message.empty()) {
        line += ": " + report.message;
      }
      out.push_back(line);
      last_reports.push_back(report);
    }
    if (!reports->empty()) {
      REQUIRE(reconciler->AckReports(reports->back().seq).ok());
    }
    return out;
  }

  InstanceRecord Record(const std::string& id) {
    Result<std::optional<InstanceRecord>> record = reconciler->Instance(id);
    REQUIRE(record.ok());
    REQUIRE(record->has_value());
    return **record;
  }

  uint64_t Calls(SimOp op, const std::string& id) {
    return sim->Calls(op, Reconciler::VmNameFor(id));
  }

  testing::TempDir dir;
  std::unique_ptr<SimDriver> sim;
  std::unique_ptr<AgentStore> store;
  std::unique_ptr<Reconciler> reconciler;
  uint64_t next_cursor = 0;
  int reports_ready = 0;
  std::vector<Report> last_reports;  // Every report taken, in order.

 private:
  void Open() {
    Result<std::unique_ptr<SimDriver>> s = SimDriver::Open(dir.Sub("sim"));
    REQUIRE(s.ok());
    sim = std::move(s).value();
    Result<std::unique_ptr<AgentStore>> a = AgentStore::Open(dir.Sub("agent"));
    REQUIRE(a.ok());
    store = std::move(a).value();
    ReconcilerOptions options;
    options.on_reports = [this] { reports_ready++; };
    reconciler = std::make_unique<Reconciler>(sim.get(), store.get(), options);
    REQUIRE(reconciler->Recover().ok());
    next_cursor = reconciler->cursor();
  }
};

InstanceSpec Spec(std::string script = "") {
  return InstanceSpec{"tmpl", "v1", 4, 8192, std::move(script)};
}

using Lines = std::vector<std::string>;

TEST_CASE("start: clone and start once, report Pulling then Started with the VM") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  CHECK(agent.TakeReports() == Lines{"i1 Pulling", "i1 Started"});
  const Report& started = agent.last_reports.back();
  REQUIRE(started.vm.has_value());
  CHECK(started.vm->name == "cloister-i1");
  CHECK(started.vm->status == VmStatus::kRunning);
  CHECK(started.vm->cpu_cores == 4);
  CHECK(started.vm->ram_mb == 8192);
  CHECK_FALSE(started.vm->ip.empty());
  CHECK(started.vm->uuid == agent.sim->Show("cloister-i1")->uuid);
  CHECK(started.cursor == 1);
  CHECK(agent.reports_ready >= 1);
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);
  CHECK(agent.Calls(SimOp::kStart, "i1") == 1);

  const InstanceRecord r = agent.Record("i1");
  CHECK(r.state == InstanceState::kStarted);
  CHECK(r.intent == Step::kNone);
  CHECK(r.vm_created);
  CHECK(r.settled_cursor == 1);
  CHECK(r.last_report_seq == started.seq);
  CHECK(agent.reconciler->cursor() == 1);
}

TEST_CASE("stop, start again, terminate") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.TakeReports();
  agent.Apply(CommandKind::kStop, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Stopping", "i1 Stopped"});
  CHECK(agent.last_reports.back().vm->status == VmStatus::kStopped);
  CHECK(agent.last_reports.back().vm->ip.empty());
  agent.Apply(CommandKind::kStart, "i1", Spec());
  CHECK(agent.TakeReports() == Lines{"i1 Started"});  // Stopped -> Started directly.
  agent.Apply(CommandKind::kTerminate, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Terminating", "i1 Terminated"});
  CHECK_FALSE(agent.last_reports.back().vm.has_value());
  CHECK(agent.sim->Show("cloister-i1").status().code() == StatusCode::kNotFound);
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);
  CHECK(agent.Calls(SimOp::kStart, "i1") == 2);
  CHECK(agent.Calls(SimOp::kStop, "i1") == 1);
  CHECK(agent.Calls(SimOp::kDelete, "i1") == 1);
}

TEST_CASE("suspend is reported Stopped with a suspended VM; stop then stops it") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.TakeReports();
  agent.Apply(CommandKind::kSuspend, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Stopping", "i1 Stopped"});
  CHECK(agent.last_reports.back().vm->status == VmStatus::kSuspended);
  agent.Apply(CommandKind::kStop, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Stopped"});  // No Stopping: Stopped -> Stopping is illegal.
  CHECK(agent.last_reports.back().vm->status == VmStatus::kStopped);
  agent.Apply(CommandKind::kSuspend, "i1");  // Not running: nothing to suspend.
  CHECK(agent.TakeReports() == Lines{"i1 Stopped"});
  CHECK(agent.Calls(SimOp::kSuspend, "i1") == 1);
  CHECK(agent.Calls(SimOp::kStop, "i1") == 1);
}

TEST_CASE("restart stops and starts the VM once; restart of a stopped instance starts it") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.TakeReports();
  agent.Apply(CommandKind::kRestart, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Started"});
  CHECK(agent.Calls(SimOp::kStop, "i1") == 1);
  CHECK(agent.Calls(SimOp::kStart, "i1") == 2);
  CHECK_FALSE(agent.Record("i1").restart_pending);
  agent.Apply(CommandKind::kStop, "i1");
  agent.Apply(CommandKind::kRestart, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Stopping", "i1 Stopped", "i1 Started"});
  CHECK(agent.Calls(SimOp::kStop, "i1") == 2);
  CHECK(agent.Calls(SimOp::kStart, "i1") == 3);
}

TEST_CASE("a failed clone is an Error report with the driver's message; only terminate helps") {
  Agent agent;
  agent.sim->AddFailure(SimFailure{SimOp::kClone, 0, "", "tmpl", "template tmpl is corrupt"});
  agent.Apply(CommandKind::kStart, "i1", Spec());
  CHECK(agent.TakeReports() ==
        Lines{"i1 Pulling", "i1 Error: clone cloister-i1: template tmpl is corrupt"});
  agent.sim->ClearFailures();
  agent.Apply(CommandKind::kStart, "i1", Spec());  // Error -> Started is not allowed: ignored.
  agent.Apply(CommandKind::kStop, "i1");
  CHECK(agent.TakeReports().empty());
  REQUIRE(agent.reconciler->Converge().ok());  // Error is settled: no retry.
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);
  agent.Apply(CommandKind::kTerminate, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Terminating", "i1 Terminated"});
}

TEST_CASE("a failed start leaves the VM; terminate deletes it; a failed delete can be retried") {
  Agent agent;
  agent.sim->AddFailure(SimFailure{SimOp::kStart, 1, "", "", "no memory"});
  agent.Apply(CommandKind::kStart, "i1", Spec());
  CHECK(agent.TakeReports() == Lines{"i1 Pulling", "i1 Error: start cloister-i1: no memory"});
  CHECK(agent.Record("i1").message == "start cloister-i1: no memory");
  agent.sim->AddFailure(SimFailure{SimOp::kDelete, 1, "", "", "busy"});
  agent.Apply(CommandKind::kTerminate, "i1");
  CHECK(agent.TakeReports() == Lines{"i1 Terminating", "i1 Error: delete cloister-i1: busy"});
  agent.Apply(CommandKind::kTerminate, "i1");  // Retry.
  CHECK(agent.TakeReports() == Lines{"i1 Terminating", "i1 Terminated"});
  CHECK(agent.Calls(SimOp::kDelete, "i1") == 2);
  CHECK(agent.sim->List()->empty());
}

TEST_CASE("replayed commands are no-ops; a new command that changes nothing reports again") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.Apply(CommandKind::kStop, "i1");
  agent.TakeReports();
  const uint64_t seq = agent.store->last_report_seq();
  for (uint64_t cursor = 1; cursor <= 2; cursor++) {  // The same commands again (a replay).
    NodeCommand command;
    command.cursor = cursor;
    command.instance_id = "i1";
    command.kind = cursor == 1 ? CommandKind::kStart : CommandKind::kStop;
    command.spec = Spec();
    REQUIRE(agent.reconciler->Apply(command).ok());
  }
  CHECK(agent.TakeReports().empty());
  CHECK(agent.store->last_report_seq() == seq);
  CHECK(agent.Calls(SimOp::kStart, "i1") == 1);
  CHECK(agent.Record("i1").desired == DesiredState::kStopped);  // Not started by the replay.
  CHECK(agent.reconciler->cursor() == 2);

  agent.Apply(CommandKind::kStop, "i1");  // A new stop of a stopped instance.
  CHECK(agent.TakeReports() == Lines{"i1 Stopped"});
  CHECK(agent.last_reports.back().cursor == 3);
  CHECK(agent.Calls(SimOp::kStop, "i1") == 1);
}

TEST_CASE("unknown instances: stop is an Error report; terminate is Terminated") {
  Agent agent;
  agent.Apply(CommandKind::kStop, "ghost");
  agent.Apply(CommandKind::kRestart, "ghost");
  CHECK(agent.TakeReports() ==
        Lines{"ghost Error: stop of instance ghost, which is not on this node",
              "ghost Error: restart of instance ghost, which is not on this node"});
  CHECK_FALSE(agent.reconciler->Instance("ghost")->has_value());
  agent.Apply(CommandKind::kTerminate, "ghost");
  CHECK(agent.TakeReports() == Lines{"ghost Terminating", "ghost Terminated"});
  CHECK(agent.sim->Calls(SimOp::kDelete) == 0);
  CHECK(agent.reconciler->cursor() == 3);
}

TEST_CASE("terminate of an unknown instance deletes a VM left over from a lost store") {
  Agent agent;
  CloneSpec leftover;
  leftover.name = "cloister-old";
  leftover.template_id = "tmpl";
  REQUIRE(agent.sim->Clone(leftover).ok());
  REQUIRE(agent.sim->Start("cloister-old").ok());
  agent.Apply(CommandKind::kTerminate, "old");
  CHECK(agent.TakeReports() == Lines{"old Terminating", "old Terminated"});
  CHECK(agent.sim->List()->empty());
}

TEST_CASE("start of an existing VM adopts it instead of cloning again") {
  Agent agent;
  CloneSpec leftover;
  leftover.name = "cloister-i1";
  leftover.template_id = "tmpl";
  REQUIRE(agent.sim->Clone(leftover).ok());
  agent.Apply(CommandKind::kStart, "i1", Spec());
  CHECK(agent.TakeReports() == Lines{"i1 Started"});
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);  // The leftover's clone only.
}

TEST_CASE("a terminated instance ignores every later command") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.Apply(CommandKind::kTerminate, "i1");
  agent.TakeReports();
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.Apply(CommandKind::kRestart, "i1");
  agent.Apply(CommandKind::kTerminate, "i1");
  CHECK(agent.TakeReports().empty());
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);
  CHECK(agent.sim->List()->empty());
  CHECK(agent.reconciler->cursor() == 5);
}

TEST_CASE("an invalid instance id is an Error report") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "bad id", Spec());
  const Lines reports = agent.TakeReports();
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].rfind("bad id Error: start: invalid instance id", 0) == 0);
  CHECK(agent.sim->Calls(SimOp::kClone) == 0);
  CHECK(agent.reconciler->cursor() == 1);
}

TEST_CASE("the startup script runs once after the first start; non-zero exit is Error") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "good", Spec("echo ready"));
  CHECK(agent.TakeReports() == Lines{"good Pulling", "good Started"});
  agent.Apply(CommandKind::kRestart, "good");
  CHECK(agent.Calls(SimOp::kRun, "good") == 1);  // Not again on restart.
  agent.Apply(CommandKind::kStart, "bad", Spec("exit 3"));
  CHECK(agent.TakeReports() ==
        Lines{"good Started", "bad Pulling",
              // One line: the controller refuses control characters in a message.
              "bad Error: startup script in cloister-bad exited with code 3: sim: exit 3 "});
  CHECK(agent.sim->Show("cloister-bad")->status == VmStatus::kRunning);
}

TEST_CASE("a script that succeeded stays succeeded when the next observation fails") {
  Agent agent;
  // Shows of this pass: absent (clone), stopped (start), running (script), running (settle).
  agent.sim->AddFailure(SimFailure{SimOp::kShow, 4, "", "", "timeout"});
  CHECK(agent.ApplyStatus(CommandKind::kStart, "i1", Spec("echo ready")).code() ==
        StatusCode::kIoError);
  agent.Restart();
  CHECK(agent.TakeReports() == Lines{"i1 Pulling", "i1 Started"});
  CHECK(agent.Calls(SimOp::kRun, "i1") == 1);
}

TEST_CASE("a VM that vanished is an Error") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.TakeReports();
  REQUIRE(agent.sim->Delete("cloister-i1").ok());  // Behind the agent's back.
  agent.Apply(CommandKind::kStop, "i1");
  CHECK(agent.TakeReports() ==
        Lines{"i1 Error: VM cloister-i1 vanished from the hypervisor"});
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);  // Never cloned again.
}

TEST_CASE("a failed observation is returned; the command is recorded and Converge finishes it") {
  Agent agent;
  agent.sim->AddFailure(SimFailure{SimOp::kShow, 0, "", "", "hypervisor not responding"});
  Status status = agent.ApplyStatus(CommandKind::kStart, "i1", Spec());
  CHECK(status.code() == StatusCode::kIoError);
  CHECK(agent.reconciler->cursor() == 1);
  CHECK(agent.TakeReports().empty());
  CHECK(agent.reconciler->Converge().code() == StatusCode::kIoError);
  agent.sim->ClearFailures();
  REQUIRE(agent.reconciler->Converge().ok());
  CHECK(agent.TakeReports() == Lines{"i1 Pulling", "i1 Started"});
}

// A driver that lies: Start says OK and does nothing.
class LyingDriver final : public Driver {
 public:
  explicit LyingDriver(Driver* real) : real_(real) {}
  const char* name() const override { return "liar"; }
  Status Clone(const CloneSpec& spec) override { return real_->Clone(spec); }
  Status Start(const std::string&) override { return Status::Ok(); }
  Status Stop(const std::string& name) override { return real_->Stop(name); }
  Status Suspend(const std::string& name) override { return real_->Suspend(name); }
  Status Delete(const std::string& name) override { return real_->Delete(name); }
  Result<GuestResult> Run(const std::string& name, const std::string& script) override {
    return real_->Run(name, script);
  }
  Result<std::vector<VmSummary>> List() override { return real_->List(); }
  Result<VmInfo> Show(const std::string& name) override { return real_->Show(name); }

 private:
  Driver* real_;
};

TEST_CASE("a call that succeeds without effect is an Error, not a loop of calls") {
  Agent agent;
  LyingDriver liar(agent.sim.get());
  Reconciler reconciler(&liar, agent.store.get());
  NodeCommand command;
  command.cursor = 1;
  command.instance_id = "i1";
  command.spec = Spec();
  REQUIRE(reconciler.Apply(command).ok());
  CHECK(agent.TakeReports() ==
        Lines{"i1 Pulling", "i1 Error: start cloister-i1 succeeded but the VM is stopped"});
}

// ---- recovery: the store and the VMs as a killed agent leaves them --------------------------

// Writes the record as it is after the intent write of `step`, before its call returned.
void LeaveIntent(Agent* agent, const std::string& id, Step step, bool vm_created) {
  InstanceRecord r;
  r.instance_id = id;
  r.vm_name = Reconciler::VmNameFor(id);
  r.spec = Spec(step == Step::kRunScript ? "echo once" : "");
  r.desired = DesiredState::kStarted;
  r.cursor = agent->store->cursor() + 1;
  r.vm_created = vm_created;
  r.script_started = step == Step::kRunScript;
  r.intent = step;
  r.state = InstanceState::kPulling;  // A first start: Pulling until Started.
  REQUIRE(agent->store->Write(StoreWrite{r.cursor, {r}, {}}).ok());
}

TEST_CASE("recover: the clone happened before the crash, so it is not cloned again") {
  Agent agent;
  LeaveIntent(&agent, "i1", Step::kClone, false);
  CloneSpec spec{"cloister-i1", "tmpl", "v1", 4, 8192, false, false, {}, {}};
  REQUIRE(agent.sim->Clone(spec).ok());  // The call that completed just before the kill.
  agent.Restart();  // Recover().
  CHECK(agent.TakeReports() == Lines{"i1 Started"});
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);
  CHECK(agent.Calls(SimOp::kStart, "i1") == 1);
}

TEST_CASE("recover: the clone did not happen, so it is made now, once") {
  Agent agent;
  LeaveIntent(&agent, "i1", Step::kClone, false);
  agent.Restart();
  CHECK(agent.TakeReports() == Lines{"i1 Started"});
  CHECK(agent.Calls(SimOp::kClone, "i1") == 1);
}

TEST_CASE("recover: the start happened before the crash, so it is not started again") {
  Agent agent;
  LeaveIntent(&agent, "i1", Step::kStart, true);
  CloneSpec spec{"cloister-i1", "tmpl", "v1", 4, 8192, false, false, {}, {}};
  REQUIRE(agent.sim->Clone(spec).ok());
  REQUIRE(agent.sim->Start("cloister-i1").ok());
  agent.Restart();
  CHECK(agent.TakeReports() == Lines{"i1 Started"});
  CHECK(agent.Calls(SimOp::kStart, "i1") == 1);
  CHECK(agent.Record("i1").intent == Step::kNone);
}

TEST_CASE("recover: an interrupted startup script is an Error and is not run again") {
  Agent agent;
  LeaveIntent(&agent, "i1", Step::kRunScript, true);
  CloneSpec spec{"cloister-i1", "tmpl", "v1", 4, 8192, false, false, {}, {}};
  REQUIRE(agent.sim->Clone(spec).ok());
  REQUIRE(agent.sim->Start("cloister-i1").ok());
  agent.Restart();
  const Lines reports = agent.TakeReports();
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].rfind("i1 Error: startup script in cloister-i1 was interrupted", 0) == 0);
  CHECK(agent.Calls(SimOp::kRun, "i1") == 0);
  agent.Restart();  // Settled: nothing more.
  CHECK(agent.TakeReports().empty());
}

TEST_CASE("reports survive a crash until acknowledged") {
  Agent agent;
  agent.Apply(CommandKind::kStart, "i1", Spec());
  agent.Restart();
  Result<std::vector<Report>> reports = agent.reconciler->PendingReports(10);
  REQUIRE(reports.ok());
  REQUIRE(reports->size() == 2);
  CHECK((*reports)[0].seq == 1);
  CHECK((*reports)[1].state == InstanceState::kStarted);
  REQUIRE(agent.reconciler->AckReports(1).ok());
  agent.Restart();
  CHECK(agent.TakeReports() == Lines{"i1 Started"});
}

}  // namespace
}  // namespace cloister::node
