// AgentStore: the node agent's own durable state, in a small LMDB environment of its own.
//
// It holds what the agent must remember across a crash and cannot ask the hypervisor for:
//  * the cursor: the last command (from the controller's stream for this node) that was
//    recorded, so that polling resumes after it and a replayed command is recognised;
//  * one InstanceRecord per instance: what the controller asked for (desired state), what the
//    agent last saw and reported, and the driver call in progress (the intent);
//  * the reports not yet acknowledged by the controller, in seq order.
//
// Layout: an LMDB environment in the caller's directory with three databases. "meta" holds
// format_version (u32), cursor and report_seq_last (u64, big-endian); "instances" maps an
// instance id to an encoded InstanceRecord; "reports" maps a big-endian u64 seq to an encoded
// Report. Records carry a format byte; an unknown one is kFormatMismatch, a short or malformed
// one kCorruption.
//
// Durability: each Write is one LMDB transaction committed with default sync flags (fsync), so
// it is on disk when Write returns and a crash leaves all of it or none of it. That atomicity
// is what the reconciler builds on: a state change and the report announcing it are one Write.
//
// One process at a time: Open takes an exclusive flock on DIR/agent.lock; a second opener (in
// this process or another) gets kBusy. The lock dies with the process, so a killed agent's
// successor opens at once.
//
// Thread-safety: all methods are thread-safe (one mutex; every call is a short transaction).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "log/status.h"
#include "node/driver.h"

namespace cloister::node {

inline constexpr uint32_t kAgentStoreFormatVersion = 1;
// Instance ids: the VM name "cloister-<id>" must fit every driver's name limit.
inline constexpr size_t kInstanceIdBytesMax = 100;
// The map is address space only; the file grows as used. Past it, writes fail kNoSpace.
inline constexpr uint64_t kAgentStoreMapBytes = 1ull << 30;

// What the controller last asked for an instance.
enum class DesiredState : uint8_t {
  kStarted = 1,
  kStopped = 2,
  kSuspended = 3,
  kTerminated = 4,
};

// A driver call the reconciler is about to make (written before the call, cleared after its
// outcome is recorded). After a crash, a pending intent says which call may or may not have
// happened; the driver's actual state settles which.
enum class Step : uint8_t {
  kNone = 0,
  kClone,
  kStart,
  kStop,
  kSuspend,
  kDelete,
  kRunScript,
};

// The Anka instance states, numbered as log/events.fbs VmState (the controller's own enum; node/
// does not depend on it, the wire protocol maps by name).
enum class InstanceState : uint8_t {
  kScheduling = 0,
  kPulling,
  kStarted,
  kStopping,
  kStopped,
  kTerminating,
  kTerminated,
  kError,
  kPushing,
};

const char* DesiredStateName(DesiredState state);  // "started", "stopped", ...
const char* StepName(Step step);                   // "none", "clone", ...
const char* InstanceStateName(InstanceState state);  // "Scheduling", "Started", ... (Anka's).

// What a start command asks for.
struct InstanceSpec {
  std::string template_id;
  std::string tag;
  uint32_t cpu_cores = 0;  // 0: the template's.
  uint32_t ram_mb = 0;     // 0: the template's.
  std::string startup_script;  // Empty: none. Run once, after the VM's first start.

  bool operator==(const InstanceSpec&) const = default;
};

// How the startup script ended (its output truncated to what a report may carry).
struct ScriptResult {
  int32_t exit_code = 0;
  std::string output;

  bool operator==(const ScriptResult&) const = default;
};

struct InstanceRecord {
  std::string instance_id;
  std::string vm_name;  // The VM's name in the driver.
  InstanceSpec spec;
  DesiredState desired = DesiredState::kStarted;
  uint64_t cursor = 0;           // The command that last changed this record's wishes.
  uint64_t settled_cursor = 0;   // The command whose outcome (final state or error) was reported.
  bool restart_pending = false;  // A restart was asked for and the VM has not been stopped yet.
  bool vm_created = false;       // The VM was made (or seen): never clone it again.
  bool script_started = false;   // The startup script was handed to the driver (at most once).
  Step intent = Step::kNone;     // The driver call in progress.
  InstanceState state = InstanceState::kScheduling;  // As last reported.
  std::string message;           // As last reported: the error for kError, else empty.
  std::optional<VmInfo> vm;      // As last reported (absent: no VM, or never observed).
  std::optional<ScriptResult> script_result;  // Once the startup script has run.
  uint64_t last_report_seq = 0;  // The newest report about this instance (0: none).

  bool operator==(const InstanceRecord&) const = default;
};

// One state change to tell the controller. Resending one is harmless: the controller dedups by
// seq, which is assigned once, when the report is stored.
struct Report {
  uint64_t seq = 0;  // 1, 2, ... over the store's life, never reused.
  std::string instance_id;
  InstanceState state = InstanceState::kScheduling;
  uint64_t cursor = 0;        // The instance's command cursor when the change happened.
  std::string message;        // The error (the driver's words) for kError; otherwise empty.
  std::optional<VmInfo> vm;   // For Started and Stopped: the VM as the driver showed it.
  std::optional<ScriptResult> script_result;  // Once the startup script has run.

  bool operator==(const Report&) const = default;
};

// One atomic, synced change.
struct StoreWrite {
  std::optional<uint64_t> cursor;        // New cursor; must be greater than the stored one.
  std::vector<InstanceRecord> instances;  // Stored in place of any record with the same id.
  std::vector<Report> reports;           // Appended; seqs must be last_report_seq()+1, +2, ...
};

class AgentStore {
 public:
  // Opens the store in dir (created if missing) and takes dir/agent.lock. Errors: kBusy (already
  // open), kFormatMismatch (another format version), kCorruption, kIoError. The directory must
  // be on a local filesystem (LMDB's locks and mmap do not work over NFS or SMB).
  static Result<std::unique_ptr<AgentStore>> Open(const std::string& dir);

  ~AgentStore();
  AgentStore(const AgentStore&) = delete;
  AgentStore& operator=(const AgentStore&) = delete;

  // The stored cursor (0: no command yet) and the seq of the newest report ever stored
  // (acknowledged or not; 0: none). Cached; no I/O.
  uint64_t cursor() const;
  uint64_t last_report_seq() const;

  // One record, or nullopt. Errors: kCorruption, kFormatMismatch, kIoError.
  Result<std::optional<InstanceRecord>> Get(const std::string& instance_id) const;

  // Every record, by instance id. Errors as Get.
  Result<std::vector<InstanceRecord>> List() const;

  // Commits write in one transaction; durable on return. Errors: kInvalidArgument (an instance
  // id that is empty or longer than kInstanceIdBytesMax; nothing written), kNoSpace (disk or map
  // full; nothing written), kIoError. A cursor that does not grow, or report seqs that do not
  // follow last_report_seq(), are bugs in the caller (CL_ASSERT).
  Status Write(const StoreWrite& write);

  // Up to max unacknowledged reports, oldest first. Errors as Get.
  Result<std::vector<Report>> PendingReports(size_t max) const;

  // Deletes every report with seq <= seq_up_to (acknowledged by the controller). Acknowledging
  // seqs already gone, or beyond last_report_seq(), is harmless. Durable on return.
  Status AckReports(uint64_t seq_up_to);

  // dir/agent.lock.
  static std::string LockPath(const std::string& dir);

  class Env;

 private:
  explicit AgentStore(std::unique_ptr<Env> env);

  mutable std::mutex mu_;
  std::unique_ptr<Env> env_;   // Guarded by mu_.
  uint64_t cursor_ = 0;        // Guarded by mu_; equal to the stored value.
  uint64_t report_seq_last_ = 0;  // Guarded by mu_; equal to the stored value.
};

}  // namespace cloister::node
