// Log: cloister's durable, tamper-evident, append-only event log in LMDB.
//
// Layout (docs/log_format.md): an LMDB environment in a data directory with two databases.
// "events" maps a big-endian u64 seq (1, 2, ...) to the bytes of one Event FlatBuffer;
// "meta" holds the format version, the head seq and the head hash. hash(n) = SHA-256(hash(n-1)
// || bytes of event n) with hash(0) = 32 zero bytes, and event n stores hash(n-1) as prev_hash.
//
// Writing: one process at a time may open a data directory for writing (a second gets kBusy).
// Any number of threads call Append/AppendAsync; a single writer thread takes every batch that
// is waiting, assigns consecutive seqs, links the hashes, and commits them all in one LMDB
// transaction (one fsync): group commit. A batch is acknowledged (its callback gets the seqs)
// only after that commit returned success, so an acknowledged event is durable.
//
// Failures while committing:
//  * MDB_MAP_FULL: the map is grown and the commit retried, up to Options::map_bytes_max.
//  * ENOSPC / EDQUOT (disk full) writing data pages or syncing them: the batches in that commit
//    fail with kNoSpace, nothing is acknowledged, and the writer keeps running; appends succeed
//    again once space is freed. LMDB is copy-on-write, so pages of a failed commit are never
//    referenced by a durable meta page. If instead the write of LMDB's meta page failed, LMDB has
//    marked its environment unusable (MDB_PANIC from then on), and that is fatal as below.
//  * Anything else (EIO from write or fsync, MDB_PANIC, ...): fatal. No acknowledgement; every
//    pending and later append fails with kClosed; Options::on_fatal runs, which by default
//    prints one line to stderr and _exit(kExitFatalIo)s. A fsync is never retried (fsyncgate):
//    a restart reopens the last durable state.
//
// Reading: Scan() runs a callback over events in seq order inside one read transaction,
// zero-copy. Every event is verified before the callback sees it: FlatBuffers Verifier, key ==
// seq, no gaps, and prev_hash == hash of the event before it (the event just before seq_from is
// read to anchor the chain). The first failure stops the scan with kCorruption naming the seq.
// Reads work from other threads and from other processes (Options::read_only).
//
// Thread-safety: all public methods are thread-safe. A Scan callback must not call Append and
// wait for it (the map may need to grow while a scan holds its read transaction).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "log/draft.h"
#include "log/events_generated.h"
#include "log/hash.h"
#include "log/status.h"

namespace cloister::log {

// The on-disk format this build reads and writes. See docs/log_format.md for when it changes.
inline constexpr uint32_t kFormatVersion = 1;

// Exit code of the default fatal handler (EX_TEMPFAIL: restart and reopen).
inline constexpr int kExitFatalIo = 75;

// Limits.
inline constexpr size_t kAppendEventsMax = 10'000;  // Events in one Append call.

struct Options {
  std::string dir;                           // Data directory; created if missing (writer only).
  bool read_only = false;                    // Open for reading; no writer lock, no writer thread.
  uint64_t map_bytes_initial = 1ull << 30;   // Virtual address space reserved at open.
  uint64_t map_bytes_max = 1ull << 40;       // Growth stops here; then appends fail kNoSpace.
  size_t commit_events_max = 8192;           // Events per group commit (a single Append may exceed it).
  size_t queue_events_max = 65536;           // Producers block while more than this are waiting.
  uint64_t tail_verify_events = 64;          // Events whose links are checked at open.
  // Called once, on the writer thread, after a fatal commit error. Default: stderr + _exit.
  std::function<void(const Status&)> on_fatal;
};

struct Head {
  uint64_t seq = 0;  // 0: empty log.
  Hash hash{};       // hash(seq).
};

// Seqs given to one Append: seq_first..seq_last inclusive.
struct AppendResult {
  uint64_t seq_first = 0;
  uint64_t seq_last = 0;
};

using AppendCallback = std::function<void(Result<AppendResult>)>;

// One verified event, valid only during the Scan callback that receives it.
struct EventView {
  uint64_t seq = 0;
  std::span<const uint8_t> bytes;  // Points into LMDB's map: zero-copy.
  const fb::Event* event = nullptr;
  Hash hash{};                     // hash(seq), computed while verifying.
};

// Return false to stop the scan early (Scan then returns OK).
using ScanCallback = std::function<bool(const EventView&)>;

class Log {
 public:
  // Opens (creating if needed, unless read_only) the log in options.dir and verifies its tail.
  // Errors: kBusy (another process writes), kUnsupported (network filesystem), kFormatMismatch,
  // kCorruption (names the first bad seq), kNotFound (read_only and no log), kIoError.
  static Result<std::unique_ptr<Log>> Open(Options options);

  // Stops the writer after committing everything already queued, then closes the store.
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // Queues drafts to be appended as one atomic batch with consecutive seqs. done runs exactly
  // once, on the writer thread (or inline for an immediate rejection), after the batch is durable
  // or has failed. Blocks while the queue is full. Invalid drafts: kInvalidArgument, nothing
  // appended. Read-only logs: kUnsupported.
  // done must be short and must not block: it runs on the writer thread, so calling Append or
  // AppendAsync from it can deadlock (the writer would wait for itself). Hand the result to
  // another thread (e.g. a libuv async handle) instead.
  void AppendAsync(std::vector<Draft> drafts, AppendCallback done);

  // AppendAsync, waiting for the result.
  Result<AppendResult> Append(std::vector<Draft> drafts);

  // The durable head: for a writer, the last committed batch; for a reader, the store's head now.
  Head head() const;

  // Visits verified events with seq_from <= seq <= min(seq_to, head). seq_from 0 means 1.
  Status Scan(uint64_t seq_from, uint64_t seq_to, const ScanCallback& callback) const;

  // Verifies the whole chain and that it ends at the stored head. Returns the head.
  Result<Head> VerifyAll() const;

  // Current LMDB map size in bytes (grows on MDB_MAP_FULL).
  uint64_t MapBytesForTest() const;

  class Impl;

 private:
  explicit Log(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cloister::log
