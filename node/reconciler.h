// Reconciler: the node agent's core. Commands from the controller come in, driver calls go out,
// and reports of what happened are queued for the controller; after a crash it converges again
// without doing anything twice.
//
// Model. Each command (NodeCommand) changes an instance's *desired* state in the AgentStore,
// together with the agent's cursor, in one durable write; then the instance is *converged*: a
// loop that observes the VM through the driver (Show; never from memory), compares it with the
// desired state and takes the next step (clone, start, stop, suspend, delete, run the startup
// script), until the VM is where it should be or a step fails. The VM of instance X is the
// driver's VM named "cloister-X".
//
// Crash-safety rule (the invariant every change must keep):
//  1. Before every mutating driver call, the intent (which call, and the state shown meanwhile)
//     is written to the store; the call's outcome is recorded only by a later write.
//  2. Every decision is taken from the driver's actual state plus the stored record, never from
//     the fact that a call was made: a VM that exists is never cloned again (the record's
//     vm_created is set as soon as the VM is seen), a running VM is never started again, a
//     stopped one never stopped again. So a crash between a call and its record is repaired by
//     observing, and the clone, start, stop, suspend and delete calls each happen once per need.
//  3. The startup script is at-most-once: script_started is written with its intent, and a
//     pending script intent found after a crash means the outcome is unknown: the instance goes
//     to Error ("interrupted"), the script is never run again.
//  4. A state change and the report announcing it are one store write, so a report is never lost
//     and never made twice; reports stay stored until AckReports.
//
// Reports (Anka states): a new instance goes Pulling (while cloning) then Started; stop goes
// Stopping then Stopped (Started -> Stopping only; a suspended VM is reported Stopped with vm
// status "suspended"); terminate goes Terminating then Terminated; a failed step goes Error with
// the driver's message. Besides state changes, every accepted command gets one report of its
// outcome (so a repeated start of a started instance reports Started again, with its cursor), and
// a changed VM (ip, vnc port, status) is reported. Started and Stopped reports carry the VM's Show.
//
// Commands and their order (documented choices, tested in reconciler_test):
//  * A command with cursor <= cursor() was recorded before (a replay after a reconnect or crash):
//    ignored, nothing written, no report. Cursors must grow; gaps are fine.
//  * Start of an unknown instance creates it. Start of a known one sets desired Started; its spec
//    replaces the stored one only while no VM was made.
//  * Terminate of an unknown instance creates a terminated record and deletes "cloister-X" if
//    the driver has it (a VM left over from a lost store), then reports Terminated.
//  * Stop, suspend or restart of an unknown instance: report Error ("not on this node"), no record.
//  * Any command for a terminated (or terminating) instance, and anything but terminate for an
//    instance in Error, is ignored: the cursor advances, nothing else (the controller allows no
//    way out of Terminated, and only termination out of Error). Terminate of an instance in Error
//    retries the delete.
//  * Suspend of a VM that is not running is a no-op (reported Stopped). Restart stops the VM (if
//    running or suspended) and starts it; a restart of a stopped instance starts it.
//  * An instance whose VM disappeared while it should exist goes to Error ("vanished").
//  * Drift: Converge() observes every instance that is not settled in Terminated or Error, so a
//    VM that stopped by itself while desired Started is started again (reported only if its VM
//    info changed).
//  * Stop or suspend of an instance whose VM was never made (its start could not even observe
//    the driver) settles Stopped without a VM; the controller's state machine has no
//    Scheduling -> Stopped, so expect that report to be refused there.
//  * A failed driver call puts the instance in Error with the driver's message; it stays there
//    until terminated. A failed *observation* (Show errors other than kNotFound) changes nothing
//    and is returned: call Converge() again later.
//
// Threading and blocking: Apply, Converge and Recover make driver calls (which may block for
// minutes) and are serialised by an internal mutex; call them from one worker thread.
// PendingReports, AckReports and cursor() only touch the store and may be called from any thread
// at any time, including while Apply runs. Options::on_reports runs on the thread in Apply or
// Converge, after new reports are durable; it must not call Apply or Converge.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "log/status.h"
#include "node/agent_store.h"
#include "node/driver.h"

namespace cloister::node {

inline constexpr char kVmNamePrefix[] = "cloister-";
// A converge pass takes at most this many steps (observe + act); the longest legitimate pass is
// adopt, stop, start, run script, settle.
inline constexpr int kConvergeStepsMax = 8;
// The startup script's output kept in an Error message.
inline constexpr size_t kScriptOutputBytesMax = 1024;

enum class CommandKind : uint8_t {
  kStart = 0,
  kStop,
  kSuspend,
  kTerminate,
  kRestart,
};

const char* CommandKindName(CommandKind kind);  // "start", "stop", ...

// One command addressed to this node, as the wire protocol delivers it.
struct NodeCommand {
  uint64_t cursor = 0;  // Its position in the node's command stream; grows, >= 1.
  std::string instance_id;
  CommandKind kind = CommandKind::kStart;
  InstanceSpec spec;  // kStart only.
};

struct ReconcilerOptions {
  // Runs after a write that stored new reports (e.g. to wake the sender). May be empty.
  std::function<void()> on_reports;
};

class Reconciler {
 public:
  // driver and store must outlive the Reconciler; it never closes them.
  Reconciler(Driver* driver, AgentStore* store, ReconcilerOptions options = {});
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Converges every instance from the driver's actual state and the stored intents. Call once at
  // startup, before polling for commands. Returns the first error (store or driver observation);
  // instances after it are still converged.
  Status Recover();

  // Records command durably (desired state and cursor, one write), then converges its instance.
  // Returns OK for an ignored command. Errors: from the store before recording (the command was
  // not recorded: cursor() is unchanged, apply it again), or from converging after recording
  // (cursor() has advanced; call Converge() later). A driver call that fails is not an error
  // here: the instance goes to Error and that is reported.
  Status Apply(const NodeCommand& command);

  // Converges every instance that is not settled (Recover is this, at startup). For a periodic
  // pass and to retry after an observation error.
  Status Converge();

  // The last recorded command's cursor: poll for commands after it.
  uint64_t cursor() const;

  // Reports not yet acknowledged, oldest first, at most max. Send them in order; resending is
  // fine.
  Result<std::vector<Report>> PendingReports(size_t max) const;

  // The controller has durably taken every report with seq <= seq_up_to.
  Status AckReports(uint64_t seq_up_to);

  // The stored record, for status pages and tests.
  Result<std::optional<InstanceRecord>> Instance(const std::string& instance_id) const;

  // "cloister-" + instance_id.
  static std::string VmNameFor(const std::string& instance_id);

 private:
  Status ConvergeLocked(InstanceRecord record);
  // Records the intent to call step (and the state shown meanwhile, reported if it changes).
  Status WriteIntent(InstanceRecord* record, Step step, InstanceState shown);
  Status Settle(InstanceRecord* record, const InstanceRecord& stored, InstanceState state,
                const std::optional<VmInfo>& vm);
  Status Fail(InstanceRecord* record, const std::string& message);
  Status CallDriver(Step step, const InstanceRecord& record, GuestResult* guest);
  Result<std::optional<VmInfo>> Observe(const std::string& vm_name);
  // Sets record's desired state (and cursor) from command, adding a Terminating report to write
  // when it starts a termination.
  void SetDesired(const NodeCommand& command, InstanceRecord* record, StoreWrite* write);
  // Adds a report of record's current state to write and notes it in record.
  void AddReport(StoreWrite* write, InstanceRecord* record);
  // Adds an Error report about a command that made no record.
  void AddRejection(StoreWrite* write, const std::string& instance_id, uint64_t cursor,
                    const std::string& message);
  Status Commit(const StoreWrite& write);

  Driver* const driver_;
  AgentStore* const store_;
  const ReconcilerOptions options_;
  std::mutex work_mu_;  // Held by Apply, Converge and Recover: one convergence at a time.
};

}  // namespace cloister::node
