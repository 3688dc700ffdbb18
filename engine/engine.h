// Engine: turns commands into events and events into views.
//
// Every command takes the same fixed steps (docs/architecture.md, "The command path"):
//
//   Authorize -> Validate (against the durable views) -> Stamp (time and ids from the injected
//   Clock and Rng) -> Append (group commit, asynchronous) -> Apply (reducers, once durable)
//   -> Respond
//
// The views only ever hold durable events: Apply runs when the log acknowledges a batch, and it
// applies what the log read back (verified), not what was sent. A reader of views() therefore
// never sees a change that could still be lost. Commands are validated against those durable
// views, so two commands in flight at once could each be valid alone and conflict together (two
// groups given the same name); each command names the entities it reads or writes (its
// conflict keys) and a command whose keys overlap one in flight waits in a FIFO queue until the
// first is applied. Commands with disjoint keys are appended concurrently and share fsyncs.
//
// A command that fails validation appends nothing and is answered with a typed Rejection. A
// command whose append fails (disk full, log closed) is answered with that Status; nothing of it
// was applied, so the views stay exactly the durable log.
//
// Threading: an Engine belongs to one thread (cloisterd's event-loop thread). Submit, views(),
// Close and every callback run there. Log acknowledgements arrive on the log's writer thread and
// are handed back through the injected Poster. Snapshots are encoded on the engine thread and
// written to disk on a helper thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/commands.h"
#include "engine/principal.h"
#include "engine/rejection.h"
#include "engine/rng.h"
#include "log/log.h"
#include "log/snapshot_store.h"
#include "log/status.h"
#include "reducers/rebuild.h"
#include "reducers/views.h"

namespace cloister::engine {

// Runs functions on the engine's thread. Post is thread-safe and never blocks for long.
class Poster {
 public:
  virtual ~Poster() = default;
  virtual void Post(std::function<void()> fn) = 0;
};

// Decides whether a principal may run a command. The allow-all default stands until the
// authorization issue fills it in.
class Authorizer {
 public:
  virtual ~Authorizer() = default;
  virtual bool Allow(const Principal& principal, const Command& command) = 0;
};

// The answer to one command.
struct Reply {
  Status status;                         // Not OK: storage failed; nothing was applied.
  Rejection rejection = Rejection::kNone;
  std::string message;                   // For a rejection: what was wrong, naming the field.
  uint64_t seq_first = 0;                // The events recorded (0, 0 when none were needed).
  uint64_t seq_last = 0;
  std::vector<std::string> ids;          // Ids the command created (group, node, instances).

  bool ok() const { return status.ok() && rejection == Rejection::kNone; }
};

using ReplyCallback = std::function<void(Reply)>;

struct EngineOptions {
  log::Log* log = nullptr;                  // Required; must outlive the engine.
  log::SnapshotStore* snapshots = nullptr;  // Optional.
  Clock* clock = nullptr;                   // Required.
  Rng* rng = nullptr;                       // Required.
  Poster* poster = nullptr;                 // Required.
  Authorizer* authorizer = nullptr;         // Optional: nullptr allows everything.
  uint64_t snapshot_interval_events = 100'000;  // 0: only at Close.
};

struct EngineStats {
  uint64_t commands_accepted = 0;
  uint64_t commands_rejected = 0;
  uint64_t commands_failed = 0;
  uint64_t events_applied = 0;
  uint64_t snapshots_written = 0;
  uint64_t snapshots_failed = 0;
  size_t commands_inflight = 0;
  size_t commands_queued = 0;
};

class Engine {
 public:
  // Rebuilds the views from the newest valid snapshot and the log's tail.
  static Result<std::unique_ptr<Engine>> Open(EngineOptions options);
  // Precondition: Idle() (the owner waits for in-flight replies first; see Close).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs command for principal. done runs exactly once on the engine thread: at once (before
  // Submit returns) for a rejection or a no-op, or after the events are durable and applied.
  void Submit(const Principal& principal, Command command, std::string request_id,
              ReplyCallback done);

  // The views as of the last durable event.
  const reducers::Views& views() const { return views_; }
  const reducers::RebuildStats& recovery() const { return recovery_; }
  EngineStats stats() const;

  // Called on the engine thread after each command's events are applied (after its own reply):
  // for watchers of the views, such as node long-polls. At most one; replaces the previous.
  void SetOnApplied(std::function<void()> on_applied) { on_applied_ = std::move(on_applied); }

  // No command is in flight or queued.
  bool Idle() const { return inflight_.empty() && queue_.empty(); }

  // Writes a final snapshot (if there is a snapshot store and anything new) and waits for any
  // snapshot being written. Precondition: Idle().
  Status Close();

 private:
  // A submitted command and everything needed to answer it.
  struct Pending {
    Principal principal;
    Command command;
    std::string request_id;
    ReplyCallback done;
    std::vector<std::string> keys;  // Conflict keys, sorted and unique.
    size_t events = 0;              // Events appended (set by Start).
    std::vector<std::string> ids;   // Ids created, for the reply.
  };

  // The outcome of Validate + Stamp: a rejection, or the drafts to append.
  struct Plan {
    Rejection rejection = Rejection::kNone;
    std::string message;
    std::vector<log::Draft> drafts;
    std::vector<std::string> ids;
  };

  Engine(EngineOptions options, reducers::Views views, reducers::RebuildStats recovery);

  bool CanStart(const Pending& pending) const;
  void Start(std::unique_ptr<Pending> pending);
  void OnAppended(uint64_t token, Result<log::AppendResult> result);
  Status ApplyDurable(uint64_t seq_first, uint64_t seq_last, log::Hash* hash_last);
  void Pump();
  void MaybeSnapshot(const log::Hash& hash);
  void WaitSnapshot();
  Plan Validate(const Pending& pending);
  int64_t StampTime();

  EngineOptions options_;
  reducers::Views views_;
  reducers::RebuildStats recovery_;
  EngineStats stats_;
  uint64_t next_token_ = 1;
  std::map<uint64_t, std::unique_ptr<Pending>> inflight_;  // By token.
  std::deque<std::unique_ptr<Pending>> queue_;
  std::map<std::string, int> busy_keys_;  // Conflict keys of in-flight commands, with counts.
  size_t inflight_events_ = 0;
  int64_t last_time_ns_ = 0;
  uint64_t snapshot_seq_ = 0;
  std::future<Status> snapshot_write_;
  std::function<void()> on_applied_;
};

}  // namespace cloister::engine
