#include "reducers/rebuild.h"

#include <chrono>
#include <optional>
#include <utility>

#include "log/assert.h"
#include "log/hash.h"
#include "reducers/snapshot.h"

namespace cloister::reducers {
namespace {

// hash(seq) as the log computes it while verifying (Scan anchors on event seq - 1).
Result<log::Hash> LogHashAt(const log::Log& log, uint64_t seq) {
  std::optional<log::Hash> hash;
  Status status = log.Scan(seq, seq, [&](const log::EventView& view) {
    hash = view.hash;
    return false;
  });
  if (!status.ok()) {
    return status;
  }
  if (!hash) {
    return Status::NotFound("the log has no event " + std::to_string(seq));
  }
  return *hash;
}

// The snapshot at seq as views, or why it cannot be used.
Result<Views> LoadSnapshot(const log::Log& log, const log::SnapshotStore& snapshots, uint64_t seq) {
  Result<log::Snapshot> snapshot = snapshots.Get(seq);
  if (!snapshot.ok()) {
    return snapshot.status();
  }
  Result<log::Hash> log_hash = LogHashAt(log, seq);
  if (!log_hash.ok()) {
    return Status(log_hash.status());
  }
  if (*log_hash != snapshot->log_hash) {
    return Status::Corruption("snapshot " + std::to_string(seq) + " was taken of another log: " +
                              "its hash " + log::HashHex(snapshot->log_hash) + " is not the " +
                              "log's hash(" + std::to_string(seq) + ") " + log::HashHex(*log_hash));
  }
  Result<Views> views = DecodeViews(snapshot->bytes);
  if (!views.ok()) {
    const std::string why = "snapshot " + std::to_string(seq) + ": " + views.status().message();
    return views.status().code() == StatusCode::kFormatMismatch ? Status::FormatMismatch(why)
                                                                : Status::Corruption(why);
  }
  // Pair check: the encoding names the same point of the log as the store's header.
  if (views->seq != seq || views->hash != snapshot->log_hash) {
    return Status::Corruption("snapshot " + std::to_string(seq) + " decodes to views at seq " +
                              std::to_string(views->seq));
  }
  return views;
}

// The newest usable snapshot with seq <= seq_to, or empty views; records every refusal.
Views StartingPoint(const log::Log& log, const log::SnapshotStore* snapshots, uint64_t seq_to,
                    RebuildStats* stats) {
  if (snapshots == nullptr) {
    return Views();
  }
  Result<std::vector<log::SnapshotInfo>> infos = snapshots->List();
  if (!infos.ok()) {
    stats->snapshots_rejected.push_back({0, infos.status().ToString()});
    return Views();
  }
  for (const log::SnapshotInfo& info : *infos) {
    if (info.seq > seq_to) {
      continue;  // Newer than asked for: not wrong, just not useful.
    }
    Result<Views> views = LoadSnapshot(log, *snapshots, info.seq);
    if (views.ok()) {
      stats->snapshot_seq = info.seq;
      return std::move(views.value());
    }
    stats->snapshots_rejected.push_back({info.seq, views.status().ToString()});
  }
  return Views();
}

}  // namespace

Status ApplyTail(const log::Log& log, uint64_t seq_to, Views* views, RebuildStats* stats) {
  const uint64_t head = log.head().seq;
  if (seq_to > head) {
    return Status::InvalidArgument("seq " + std::to_string(seq_to) +
                                   " is beyond the head of the log (seq " + std::to_string(head) +
                                   ")");
  }
  if (seq_to <= views->seq) {
    return Status::Ok();
  }
  uint64_t applied = 0;
  Status status = log.Scan(views->seq + 1, seq_to, [&](const log::EventView& view) {
    Apply(views, view.seq, view.hash, *view.event);
    applied++;
    return true;
  });
  if (stats != nullptr) {
    stats->events_applied += applied;
  }
  if (!status.ok()) {
    return status;
  }
  // The head only grows, so every event up to seq_to was there to read.
  CL_ASSERT(views->seq == seq_to);
  return Status::Ok();
}

Result<Views> Rebuild(const log::Log& log, const log::SnapshotStore* snapshots, uint64_t seq_to,
                      RebuildStats* stats) {
  const auto start = std::chrono::steady_clock::now();
  RebuildStats local;
  RebuildStats* s = stats != nullptr ? stats : &local;
  *s = RebuildStats();
  const uint64_t head = log.head().seq;
  if (seq_to == kSeqHead) {
    seq_to = head;
  }
  Result<Views> result =
      Status::InvalidArgument("seq " + std::to_string(seq_to) +
                              " is beyond the head of the log (seq " + std::to_string(head) + ")");
  if (seq_to <= head) {
    Views views = StartingPoint(log, snapshots, seq_to, s);
    Status status = ApplyTail(log, seq_to, &views, s);
    if (status.ok()) {
      s->seq = views.seq;
      result = std::move(views);
    } else {
      result = status;
    }
  }
  s->elapsed_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count();
  return result;
}

}  // namespace cloister::reducers
