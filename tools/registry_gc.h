// Registry garbage collection: `cloister registry gc --data DIR [--delete] [--grace DURATION]`.
//
// The registry keeps blob bytes in DIR/registry/blobs/sha256/<aa>/<64 hex> (registry/blob_store.h)
// and records what they are in the event log (ManifestPushed, TemplateContentRemoved). Deleting
// a manifest or reverting a tag only records an event; the bytes stay until this collects them.
//
// What is live: the views are rebuilt from the log (opened read-only, with its snapshots), and
// every digest that is a manifest stored in any template, or that such a manifest refers to (a
// config, a layer, an index's child), or that a tag names, or that a file of the file server
// names (FileStored, until FileDeleted), is live. A blob is a candidate when it
// is not live AND its file's mtime is at least `grace` old: a push uploads its blobs before its
// manifest, so blobs that arrived within the grace period are never collected, whatever the log
// says yet.
//
// Dry run (the default) lists the candidates and changes nothing. With delete, just before each
// blob is unlinked the log's head is read again and, if it moved, the new events are applied and
// the blob re-checked, so a manifest recorded meanwhile keeps its blobs. A shard directory that
// held a deleted blob and is now empty is removed.
//
// Safety, beside a running cloisterd: the log and its snapshots are opened read-only (LMDB
// readers do not block the writer). Only regular files named <64 lowercase hex> inside a shard
// named by its first two digits are ever considered; anything else under blobs/sha256 (other
// names, symbolic links, nested directories) is reported as skipped and left alone, and nothing
// outside blobs/sha256 is touched. Shards and blobs are opened and unlinked relative to their
// directory's descriptor without following symbolic links.
//
// Residual races, both in the registry's hands: (1) a push that finds an old, unreferenced blob
// already present (HEAD, a mount, or the same bytes uploaded again, which keeps the old file and
// its mtime) and records its manifest between the re-check and the unlink names a deleted blob;
// the window is the registry's time between checking the blob and recording the manifest, which
// the grace period does not cover because the registry does not refresh a reused blob's mtime
// (if it did, the re-stat before each unlink would keep it). (2) A shard removed just after the
// registry made it for a new blob (BlobStore::Finish: mkdir, then rename) fails that upload
// (a retried push succeeds).
//
// Thread-safety: none needed; one call does one collection.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "log/status.h"
#include "reducers/views.h"

namespace cloister::tools {

inline constexpr int64_t kGcGraceDefaultNs = 3600LL * 1'000'000'000;  // 1h.

// "1h", "30m", "90s", "500ms", "2h30m", "1d", "0": a sequence of <digits><unit> with units d, h,
// m, s, ms; a bare "0" is zero. kInvalidArgument for anything else (negative, no unit, overflow).
Result<int64_t> ParseDuration(std::string_view text);
// The inverse for messages: "1h", "2h30m", "45s", "0s", "1500ms".
std::string FormatDuration(int64_t ns);

// Every digest the registry's views keep: stored manifests, their references, tags' digests.
std::vector<std::string> LiveDigests(const reducers::Views& views);

struct GcOptions {
  std::string data_dir;
  bool delete_blobs = false;
  int64_t grace_ns = kGcGraceDefaultNs;
  int64_t now_ns = 0;  // Wall-clock time (CLOCK_REALTIME ns) to age mtimes from; 0: now.
};

struct GcBlob {
  std::string digest;  // "sha256:<hex>".
  std::string path;    // DIR/registry/blobs/sha256/<aa>/<hex>.
  uint64_t size = 0;
  int64_t age_ns = 0;  // now - mtime (negative for an mtime in the future).
  bool deleted = false;
  std::string error;  // Why a delete failed (the blob is kept); empty otherwise.
};

struct GcReport {
  uint64_t seq = 0;  // The log seq the live set was taken at (the last re-check).
  size_t live_digests = 0;
  size_t blobs_seen = 0;  // Blob files found.
  uint64_t bytes_seen = 0;
  // Unreferenced and older than grace, in digest order; with delete_blobs, those the re-check
  // still found so (deleted, or kept with an error).
  std::vector<GcBlob> candidates;
  size_t young = 0;  // Unreferenced but within the grace period: kept.
  uint64_t young_bytes = 0;
  size_t deleted = 0;
  uint64_t bytes_deleted = 0;
  size_t rescued = 0;  // Candidates the re-check found referenced, replaced or touched: kept.
  size_t delete_errors = 0;
  size_t shards_removed = 0;
  std::vector<std::string> skipped;  // Paths under blobs/sha256 that are not blobs: left alone.
};

// Runs one collection. on_blob (may be empty) is called for each candidate as it is decided
// (after its delete, with delete_blobs). Errors: kNotFound / kInvalidArgument when DIR holds no
// log (bad arguments), the log's errors (kCorruption, kIoError), kIoError when blobs/sha256
// cannot be read. A failed delete of one blob is not an error of the call: it is recorded in
// GcBlob::error and GcReport::delete_errors and the others proceed.
Result<GcReport> CollectRegistryGarbage(const GcOptions& options,
                                        const std::function<void(const GcBlob&)>& on_blob = {});

// A candidate's line: "sha256:<hex> <size> bytes, <age> old" (dry run), "deleted sha256:<hex>
// <size> bytes", or "kept sha256:<hex> <size> bytes: <error>" when its delete failed.
std::string GcBlobLine(const GcBlob& blob, bool delete_blobs);

// The summary line: "N blobs, M bytes unreferenced; deleted K" or, for a dry run,
// "N blobs, M bytes unreferenced; dry run: nothing deleted".
std::string GcSummaryLine(const GcReport& report, bool delete_blobs);

}  // namespace cloister::tools
