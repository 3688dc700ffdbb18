#include "node/reconciler.h"

#include <utility>

#include "log/assert.h"

namespace cloister::node {
namespace {

// The next thing a converge pass does for one instance.
struct Action {
  enum class Kind : uint8_t {
    kDone,    // Nothing to do or to write.
    kSettle,  // The VM is where it should be: record (and report) `state`.
    kAdopt,   // The VM exists but the record did not know: remember it (never clone it).
    kFail,    // Give up with `message`: the instance goes to Error.
    kCall,    // Write the intent `step` (showing `state` meanwhile), then make the driver call.
  };
  Kind kind = Kind::kDone;
  InstanceState state = InstanceState::kScheduling;
  Step step = Step::kNone;
  std::string message;
};

Action Done() { return Action{}; }
Action Adopt() { return Action{Action::Kind::kAdopt, InstanceState::kScheduling, Step::kNone, ""}; }
Action Settle(InstanceState state) { return Action{Action::Kind::kSettle, state, Step::kNone, ""}; }
Action GiveUp(std::string message) {
  return Action{Action::Kind::kFail, InstanceState::kError, Step::kNone, std::move(message)};
}
Action Call(Step step, InstanceState state) { return Action{Action::Kind::kCall, state, step, ""}; }

// The transitional states, only where the controller's state machine allows the move
// (engine::VmTransitionAllowed): Pulling only from Scheduling, Stopping only from Started.
InstanceState Pulling(InstanceState current) {
  return current == InstanceState::kScheduling ? InstanceState::kPulling : current;
}
InstanceState Stopping(InstanceState current) {
  return current == InstanceState::kStarted ? InstanceState::kStopping : current;
}

Action DecideStarted(const InstanceRecord& r, const VmInfo& vm) {
  switch (vm.status) {
    case VmStatus::kRunning:
      if (r.restart_pending) {
        return Call(Step::kStop, r.state);
      }
      if (!r.spec.startup_script.empty() && !r.script_started) {
        return Call(Step::kRunScript, r.state);
      }
      return Settle(InstanceState::kStarted);
    case VmStatus::kSuspended:
      // A restart of a suspended VM stops it first; otherwise Start resumes it.
      return Call(r.restart_pending ? Step::kStop : Step::kStart, r.state);
    case VmStatus::kStopped:
      return Call(Step::kStart, r.state);
  }
  return GiveUp("VM " + r.vm_name + " has an unknown status");
}

// The pure decision: from the stored record and the VM as the driver shows it (nullopt: no VM of
// that name), what to do next. Never from which calls were made, only from what is.
Action Decide(const InstanceRecord& r, const std::optional<VmInfo>& vm) {
  if (r.state == InstanceState::kError && r.settled_cursor == r.cursor) {
    return Done();  // Failed for this command; only a new terminate moves it.
  }
  if (r.intent == Step::kRunScript && r.desired == DesiredState::kStarted) {
    // At-most-once: the script was handed to the driver and the agent died before recording how
    // it ended. Running it again could do its work twice.
    return GiveUp("startup script in " + r.vm_name +
                " was interrupted by an agent restart; its outcome is unknown and it is not run "
                "again");
  }
  const bool exists = vm.has_value();
  if (exists && !r.vm_created) {
    return Adopt();
  }
  if (!exists && r.vm_created && r.desired != DesiredState::kTerminated) {
    return GiveUp("VM " + r.vm_name + " vanished from the hypervisor");
  }
  switch (r.desired) {
    case DesiredState::kTerminated:
      return exists ? Call(Step::kDelete, InstanceState::kTerminating)
                    : Settle(InstanceState::kTerminated);
    case DesiredState::kStarted:
      return exists ? DecideStarted(r, *vm) : Call(Step::kClone, Pulling(r.state));
    case DesiredState::kStopped:
      if (!exists || vm->status == VmStatus::kStopped) {
        return Settle(InstanceState::kStopped);
      }
      return Call(Step::kStop, Stopping(r.state));
    case DesiredState::kSuspended:
      if (exists && vm->status == VmStatus::kRunning) {
        return Call(Step::kSuspend, Stopping(r.state));
      }
      return Settle(InstanceState::kStopped);  // Not running: nothing to suspend.
  }
  return GiveUp("unknown desired state");
}

bool ValidInstanceId(const std::string& id) {
  if (id.empty() || id.size() > kInstanceIdBytesMax) {
    return false;
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

// Commands a record no longer accepts: nothing leaves Terminated, only terminate leaves Error.
bool Ignored(const InstanceRecord& r, CommandKind kind) {
  const bool retry_terminate = kind == CommandKind::kTerminate && r.state == InstanceState::kError;
  if (r.desired == DesiredState::kTerminated) {
    return !retry_terminate;
  }
  return r.state == InstanceState::kError && kind != CommandKind::kTerminate;
}

uint32_t Bit(Step step) { return 1u << static_cast<uint32_t>(step); }

std::string Truncated(const std::string& text, size_t bytes_max) {
  return text.size() <= bytes_max ? text : text.substr(0, bytes_max) + "...";
}

// text on one line (control characters become spaces): a report's message is one line, and the
// controller refuses control characters in it.
std::string OneLine(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = ' ';
    }
  }
  return text;
}

}  // namespace

const char* CommandKindName(CommandKind kind) {
  switch (kind) {
    case CommandKind::kStart: return "start";
    case CommandKind::kStop: return "stop";
    case CommandKind::kSuspend: return "suspend";
    case CommandKind::kTerminate: return "terminate";
    case CommandKind::kRestart: return "restart";
  }
  return "unknown";
}

Reconciler::Reconciler(Driver* driver, AgentStore* store, ReconcilerOptions options)
    : driver_(driver), store_(store), options_(std::move(options)) {
  CL_ASSERT(driver_ != nullptr);
  CL_ASSERT(store_ != nullptr);
}

std::string Reconciler::VmNameFor(const std::string& instance_id) {
  return kVmNamePrefix + instance_id;
}

uint64_t Reconciler::cursor() const { return store_->cursor(); }

Result<std::vector<Report>> Reconciler::PendingReports(size_t max) const {
  return store_->PendingReports(max);
}

Status Reconciler::AckReports(uint64_t seq_up_to) { return store_->AckReports(seq_up_to); }

Result<std::optional<InstanceRecord>> Reconciler::Instance(const std::string& instance_id) const {
  return store_->Get(instance_id);
}

Status Reconciler::Recover() { return Converge(); }

Status Reconciler::Converge() {
  std::lock_guard lock(work_mu_);
  Result<std::vector<InstanceRecord>> records = store_->List();
  if (!records.ok()) {
    return records.status();
  }
  Status first_error;
  for (InstanceRecord& record : *records) {
    const bool settled = record.intent == Step::kNone && record.settled_cursor == record.cursor;
    const bool final_state = record.state == InstanceState::kTerminated ||
                             record.state == InstanceState::kError;
    if (settled && final_state) {
      continue;  // Nothing to observe: no VM should exist, or the instance waits for terminate.
    }
    Status status = ConvergeLocked(std::move(record));
    if (!status.ok() && first_error.ok()) {
      first_error = status;
    }
  }
  return first_error;
}

Status Reconciler::Apply(const NodeCommand& command) {
  std::lock_guard lock(work_mu_);
  if (command.cursor <= store_->cursor()) {
    return Status::Ok();  // Recorded before: a replay.
  }
  StoreWrite write;
  write.cursor = command.cursor;
  const std::string& id = command.instance_id;
  const std::string kind = CommandKindName(command.kind);
  if (!ValidInstanceId(id)) {
    AddRejection(&write, Truncated(id, kInstanceIdBytesMax), command.cursor,
                 kind + ": invalid instance id (1.." + std::to_string(kInstanceIdBytesMax) +
                     " of [A-Za-z0-9._-])");
    return Commit(write);
  }
  Result<std::optional<InstanceRecord>> found = store_->Get(id);
  if (!found.ok()) {
    return found.status();
  }
  std::optional<InstanceRecord> record = std::move(found).value();
  if (!record.has_value()) {
    if (command.kind != CommandKind::kStart && command.kind != CommandKind::kTerminate) {
      AddRejection(&write, id, command.cursor,
                   kind + " of instance " + id + ", which is not on this node");
      return Commit(write);
    }
    record.emplace();
    record->instance_id = id;
    record->vm_name = VmNameFor(id);
  } else if (Ignored(*record, command.kind)) {
    return Commit(write);  // Only the cursor moves.
  }
  SetDesired(command, &*record, &write);
  write.instances.push_back(*record);
  Status status = Commit(write);
  if (!status.ok()) {
    return status;
  }
  return ConvergeLocked(std::move(record).value());
}

void Reconciler::SetDesired(const NodeCommand& command, InstanceRecord* r, StoreWrite* write) {
  r->cursor = command.cursor;
  r->restart_pending = false;
  switch (command.kind) {
    case CommandKind::kStart:
      r->desired = DesiredState::kStarted;
      if (!r->vm_created) {
        r->spec = command.spec;
      }
      break;
    case CommandKind::kRestart:
      r->desired = DesiredState::kStarted;
      r->restart_pending = true;
      break;
    case CommandKind::kStop:
      r->desired = DesiredState::kStopped;
      break;
    case CommandKind::kSuspend:
      r->desired = DesiredState::kSuspended;
      break;
    case CommandKind::kTerminate:
      r->desired = DesiredState::kTerminated;
      // Every way to Terminated passes Terminating (the controller allows no shortcut).
      if (r->state != InstanceState::kTerminating) {
        r->state = InstanceState::kTerminating;
        r->message.clear();
        AddReport(write, r);
      }
      break;
  }
}

void Reconciler::AddRejection(StoreWrite* write, const std::string& instance_id, uint64_t cursor,
                              const std::string& message) {
  Report report;
  report.seq = store_->last_report_seq() + 1 + write->reports.size();
  report.instance_id = instance_id;
  report.state = InstanceState::kError;
  report.cursor = cursor;
  report.message = message;
  write->reports.push_back(std::move(report));
}

Result<std::optional<VmInfo>> Reconciler::Observe(const std::string& vm_name) {
  Result<VmInfo> shown = driver_->Show(vm_name);
  if (shown.ok()) {
    return std::optional<VmInfo>(std::move(shown).value());
  }
  if (shown.status().code() == StatusCode::kNotFound) {
    return std::optional<VmInfo>();
  }
  return shown.status();
}

Status Reconciler::CallDriver(Step step, const InstanceRecord& r, GuestResult* guest) {
  switch (step) {
    case Step::kClone: {
      CloneSpec spec;
      spec.name = r.vm_name;
      spec.template_id = r.spec.template_id;
      spec.tag = r.spec.tag;
      spec.cpu_cores = r.spec.cpu_cores;
      spec.ram_mb = r.spec.ram_mb;
      return driver_->Clone(spec);
    }
    case Step::kStart: return driver_->Start(r.vm_name);
    case Step::kStop: return driver_->Stop(r.vm_name);
    case Step::kSuspend: return driver_->Suspend(r.vm_name);
    case Step::kDelete: return driver_->Delete(r.vm_name);
    case Step::kRunScript: {
      Result<GuestResult> result = driver_->Run(r.vm_name, r.spec.startup_script);
      if (!result.ok()) {
        return result.status();
      }
      *guest = std::move(result).value();
      return Status::Ok();
    }
    case Step::kNone: break;
  }
  CL_ASSERT(false);  // Decide never asks for kNone.
  return Status::Ok();
}

// One converge pass: observe, decide, act, until settled or failed. `stored` is what the store
// holds; `record` may differ from it only by an intent cleared after its call succeeded (the
// next write records that).
Status Reconciler::ConvergeLocked(InstanceRecord record) {
  InstanceRecord stored = record;
  uint32_t called = 0;  // Steps called in this pass (Bit(step)).
  for (int i = 0; i < kConvergeStepsMax; i++) {
    Result<std::optional<VmInfo>> vm = Observe(record.vm_name);
    if (!vm.ok()) {
      return vm.status();
    }
    const Action action = Decide(record, *vm);
    switch (action.kind) {
      case Action::Kind::kDone:
        return Status::Ok();
      case Action::Kind::kSettle:
        return Settle(&record, stored, action.state, *vm);
      case Action::Kind::kFail:
        return Fail(&record, action.message);
      case Action::Kind::kAdopt: {
        record.vm_created = true;
        StoreWrite write;
        write.instances.push_back(record);
        Status status = Commit(write);
        if (!status.ok()) {
          return status;
        }
        stored = record;
        continue;
      }
      case Action::Kind::kCall:
        break;
    }
    // The driver said an earlier call of this pass succeeded, yet the VM still needs it.
    if ((called & Bit(action.step)) != 0) {
      const std::string now = vm->has_value() ? VmStatusName((*vm)->status) : "absent";
      return Fail(&record, std::string(StepName(action.step)) + " " + record.vm_name +
                               " succeeded but the VM is " + now);
    }
    called |= Bit(action.step);
    // Crash-safety rule 1: the intent is durable before the call.
    Status status = WriteIntent(&record, action.step, action.state);
    if (!status.ok()) {
      return status;
    }
    stored = record;
    GuestResult guest;
    status = CallDriver(action.step, record, &guest);
    if (!status.ok()) {
      return Fail(&record, status.message());
    }
    record.intent = Step::kNone;  // In memory; the next write records it.
    if (action.step == Step::kRunScript) {
      record.script_result = ScriptResult{guest.exit_code,
                                          Truncated(guest.output, kScriptOutputBytesMax)};
      if (guest.exit_code != 0) {
        return Fail(&record, "startup script in " + record.vm_name + " exited with code " +
                                 std::to_string(guest.exit_code) + ": " +
                                 Truncated(guest.output, kScriptOutputBytesMax));
      }
      // Recorded at once: a pending script intent means "outcome unknown" (rule 3), and an
      // observation error before the next write must not turn a success into that.
      StoreWrite write;
      write.instances.push_back(record);
      status = Commit(write);
      if (!status.ok()) {
        return status;
      }
      stored = record;
    }
  }
  return Fail(&record, "instance did not converge in " + std::to_string(kConvergeStepsMax) +
                           " steps");
}

Status Reconciler::WriteIntent(InstanceRecord* record, Step step, InstanceState shown) {
  InstanceRecord next = *record;
  next.intent = step;
  if (step == Step::kStart) {
    next.restart_pending = false;  // Starting a stopped VM completes any restart.
  }
  if (step == Step::kRunScript) {
    next.script_started = true;  // Rule 3: at most once.
  }
  StoreWrite write;
  if (shown != record->state) {
    next.state = shown;
    next.message.clear();
    AddReport(&write, &next);
  }
  write.instances.push_back(next);
  Status status = Commit(write);
  if (status.ok()) {
    *record = std::move(next);
  }
  return status;
}

Status Reconciler::Settle(InstanceRecord* record, const InstanceRecord& stored,
                          InstanceState state, const std::optional<VmInfo>& vm) {
  InstanceRecord next = *record;
  next.intent = Step::kNone;
  next.state = state;
  next.message.clear();
  next.vm = vm;
  next.settled_cursor = record->cursor;
  // Report a change of what the controller sees, and the outcome of every accepted command.
  const bool changed = record->state != state || !record->message.empty() || record->vm != vm;
  const bool report = changed || record->settled_cursor != record->cursor;
  if (!report && next == stored) {
    return Status::Ok();
  }
  StoreWrite write;
  if (report) {
    AddReport(&write, &next);
  }
  write.instances.push_back(next);
  Status status = Commit(write);
  if (status.ok()) {
    *record = std::move(next);
  }
  return status;
}

Status Reconciler::Fail(InstanceRecord* record, const std::string& message) {
  InstanceRecord next = *record;
  next.intent = Step::kNone;
  next.state = InstanceState::kError;
  next.message = OneLine(message);
  next.settled_cursor = record->cursor;
  StoreWrite write;
  AddReport(&write, &next);
  write.instances.push_back(next);
  Status status = Commit(write);
  if (status.ok()) {
    *record = std::move(next);
  }
  return status;
}

void Reconciler::AddReport(StoreWrite* write, InstanceRecord* record) {
  Report report;
  report.seq = store_->last_report_seq() + 1 + write->reports.size();
  report.instance_id = record->instance_id;
  report.state = record->state;
  report.cursor = record->cursor;
  report.message = record->message;
  report.script_result = record->script_result;
  if (record->state == InstanceState::kStarted || record->state == InstanceState::kStopped) {
    report.vm = record->vm;
  }
  record->last_report_seq = report.seq;
  write->reports.push_back(std::move(report));
}

Status Reconciler::Commit(const StoreWrite& write) {
  Status status = store_->Write(write);
  if (status.ok() && !write.reports.empty() && options_.on_reports) {
    options_.on_reports();
  }
  return status;
}

}  // namespace cloister::node
