// Rebuild: the views as of a seq, from the newest usable snapshot plus the log's tail.
//
// This is the one place in reducers/ that does I/O: it reads the log and the snapshot store, and
// times itself. The views it returns are exactly what applying events 1..seq_to in order gives
// (a test proves it byte for byte), whichever snapshot it started from.
//
// A snapshot is used only if all of these hold, checked newest first among those with
// seq <= seq_to; the first that fails is recorded in RebuildStats::snapshots_rejected with the
// reason, and the next older one is tried, ending with a replay from seq 1:
//  * the store returns it (its SHA-256 and header check out);
//  * the log's hash(seq) equals the hash stored with it (so a snapshot of another log, or of a
//    log since rewritten, is refused);
//  * it decodes (reducers/snapshot.h) to views whose seq and hash are the ones stored.
// Then the events seq+1..seq_to are read (each verified by the log) and applied.
//
// Thread-safety: as for Log::Scan and SnapshotStore; Rebuild holds no state of its own.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "log/log.h"
#include "log/snapshot_store.h"
#include "log/status.h"
#include "reducers/views.h"

namespace cloister::reducers {

inline constexpr uint64_t kSeqHead = std::numeric_limits<uint64_t>::max();

struct SnapshotRejection {
  uint64_t seq = 0;    // The snapshot refused (0: the store could not even list them).
  std::string reason;  // E.g. "Corruption: snapshot 4000: SHA-256 mismatch".
};

struct RebuildStats {
  uint64_t snapshot_seq = 0;  // The snapshot the views started from; 0: replayed from seq 1.
  std::vector<SnapshotRejection> snapshots_rejected;  // Newest first.
  uint64_t events_applied = 0;  // Events read from the log and applied after the snapshot.
  uint64_t seq = 0;             // The seq the views are at (seq_to, or the head for kSeqHead).
  int64_t elapsed_ns = 0;       // Wall time of the whole rebuild (monotonic clock).
};

// The views as of seq_to (kSeqHead: the log's head when Rebuild starts). snapshots may be null
// (replay from seq 1). stats may be null; when given it is filled even on error.
// Errors: kInvalidArgument (seq_to beyond the head, naming both), the log's errors (kCorruption
// naming the seq, kIoError). Problems with snapshots are never errors: they only fall back.
Result<Views> Rebuild(const log::Log& log, const log::SnapshotStore* snapshots,
                      uint64_t seq_to = kSeqHead, RebuildStats* stats = nullptr);

// Applies events views->seq+1..seq_to from the log to *views (verified, in order), adding to
// stats->events_applied if stats is given. Precondition: views holds a prefix of this log.
// Errors: the log's, or kInvalidArgument when seq_to is beyond the head.
Status ApplyTail(const log::Log& log, uint64_t seq_to, Views* views, RebuildStats* stats = nullptr);

}  // namespace cloister::reducers
