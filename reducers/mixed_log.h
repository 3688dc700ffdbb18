// MixedEvents: a seeded, deterministic stream of events that exercises every view, for the
// reducer tests, the replay tool's tests and //bench:replay_bench.
//
// The stream is mostly what a busy controller would record (config changes, node groups created,
// updated and deleted, nodes joining, reporting, moving between groups and leaving, VM instances
// requested, scheduled, changing state and terminated), with a sprinkling of what reducers must
// tolerate: events naming entities that never existed or are gone, rejoins, repeated ids, and
// payload types no view uses (security events); plus API keys, sessions, permission groups and
// resource grants. The same seed and start time give the same events byte for byte.
//
// Not thread-safe; one generator per thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "log/draft.h"
#include "log/log.h"
#include "log/status.h"

namespace cloister::reducers {

class MixedEvents {
 public:
  MixedEvents(uint64_t seed, int64_t time_ns_start);

  // The next event, as a draft ready for Log::Append.
  log::Draft Next();

 private:
  uint64_t Random();
  uint64_t Below(uint64_t n) { return Random() % n; }
  bool Chance(uint64_t percent) { return Below(100) < percent; }
  log::Envelope Envelope(fb::ActorKind kind, const std::string& actor_id);
  // An id from ids, or (sometimes, or when ids is empty) one that names nothing.
  std::string Pick(const std::vector<std::string>& ids, const char* prefix);
  void Forget(std::vector<std::string>* ids, const std::string& id);

  log::Draft ConfigChanged();
  log::Draft NodeGroupCreated();
  log::Draft NodeGroupUpdated();
  log::Draft NodeGroupDeleted();
  log::Draft NodeJoined();
  log::Draft NodeUpdated();
  log::Draft NodeRemoved();
  log::Draft MembershipChanged();
  log::Draft VmRequested();
  log::Draft VmScheduled();
  log::Draft VmStateChanged();
  log::Draft VmTerminated();
  log::Draft Unrelated();

  uint64_t state_;
  int64_t time_ns_;
  uint64_t serial_ = 0;                 // For fresh ids and request ids.
  std::string actor_id_;                // Backing store for the envelope's actor id.
  std::string request_id_;              // Backing store for the envelope's request id.
  std::vector<std::string> groups_;     // Group ids believed to exist.
  std::vector<std::string> nodes_;      // Node ids believed to exist.
  std::vector<std::string> instances_;  // Instance ids not yet terminated.
};

// Appends `events` events of MixedEvents(seed, time_ns_start) to log in batches of batch_events.
// Errors: the first failed append's.
Status AppendMixedEvents(log::Log* log, uint64_t events, uint64_t seed, int64_t time_ns_start,
                         size_t batch_events = 1000);

}  // namespace cloister::reducers
