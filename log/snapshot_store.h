// SnapshotStore: durable snapshots of derived state, kept beside the event log so that a restart
// (or the replay tool) can start from a recent point instead of replaying every event.
//
// Layout: its own LMDB environment in DIR/snapshots/ (DIR = the log's data directory), so that
// writing a snapshot never waits for, or holds up, the log's writer transaction. One unnamed
// database maps a big-endian u64 seq to
//
//   magic "CLSN" | format version u32 BE | seq u64 BE | log hash(seq) [32] |
//   payload bytes u64 BE | SHA-256(payload) [32] | payload
//
// The store knows nothing about what a payload means (reducers/snapshot.h encodes views); it
// guarantees that what Get returns is what Put stored (SHA-256), for the seq it was stored under,
// and it keeps the log hash so that the caller can refuse a snapshot of a different or rewritten
// log. A snapshot is a cache: losing or refusing one only costs a longer replay.
//
// Durability: Put returns after its LMDB transaction committed with LMDB's default sync flags
// (fsync). Put keeps only the `keep` newest snapshots (by seq), deleting older ones in the same
// transaction, so a crash leaves either the old set or the new one.
//
// Readers: a store opened read_only works while another process has it open for writing (LMDB
// readers need no lock), and opening read_only a directory without DIR/snapshots/ (a log that
// never had a snapshot) gives an empty store: List() is empty and Get() is kNotFound.
// As with the log, one process must not open the same store twice at once (an LMDB rule).
//
// Thread-safety: all methods are thread-safe (they are serialised by one mutex; snapshots are
// rare and large, so there is nothing to gain from concurrency).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "log/hash.h"
#include "log/status.h"

namespace cloister::log {

inline constexpr uint32_t kSnapshotFormatVersion = 1;
inline constexpr size_t kSnapshotsKeepDefault = 2;
// The largest payload Put accepts; LMDB's map grows up to a multiple of this.
inline constexpr uint64_t kSnapshotBytesMax = 1ull << 36;
inline constexpr char kSnapshotsDirName[] = "snapshots";

struct SnapshotInfo {
  uint64_t seq = 0;
  uint64_t stored_bytes = 0;   // Header and payload as stored.
  uint64_t payload_bytes = 0;  // As the header says; 0 when the header is unreadable.
};

struct Snapshot {
  uint64_t seq = 0;
  Hash log_hash{};             // hash(seq) of the log the payload was derived from.
  std::vector<uint8_t> bytes;  // The payload, checked against its SHA-256.
};

class SnapshotStore {
 public:
  // Opens the store in data_dir/snapshots/, creating it unless read_only; keep >= 1.
  // Errors: kIoError (LMDB or the filesystem), kUnsupported (a network filesystem).
  static Result<std::unique_ptr<SnapshotStore>> Open(const std::string& data_dir, bool read_only,
                                                     size_t keep = kSnapshotsKeepDefault);

  ~SnapshotStore();
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  // Stores bytes as the snapshot at seq (>= 1), replacing one at the same seq, then deletes all
  // but the `keep` newest. Durable on return. A seq older than the `keep` newest is stored and
  // deleted again at once (harmless). Errors: kInvalidArgument (seq 0, more than
  // kSnapshotBytesMax bytes), kUnsupported (read-only store), kNoSpace (disk or map full),
  // kIoError.
  Status Put(uint64_t seq, const Hash& log_hash, std::span<const uint8_t> bytes);

  // The stored snapshots, newest (highest seq) first. Errors: kIoError, kCorruption (a key that
  // is not 8 bytes).
  Result<std::vector<SnapshotInfo>> List() const;

  // The snapshot at seq, verified. Errors: kNotFound, kCorruption (header or SHA-256 mismatch,
  // naming the seq), kFormatMismatch (written by another snapshot format version), kIoError.
  Result<Snapshot> Get(uint64_t seq) const;

  // DIR/snapshots.
  static std::string PathFor(const std::string& data_dir);

  // Replaces the stored value at seq (header included) with edit(value), as a bad disk or a
  // tamperer would; kNotFound if there is none. Tests only.
  Status EditStoredForTest(uint64_t seq, const std::function<void(std::string*)>& edit);

  class Env;

 private:
  SnapshotStore(std::unique_ptr<Env> env, bool read_only, size_t keep);

  mutable std::mutex mu_;
  std::unique_ptr<Env> env_;  // Null: read-only and nothing stored yet.
  const bool read_only_;
  const size_t keep_;
};

}  // namespace cloister::log
