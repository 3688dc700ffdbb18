// Audit: export events from a cloister event log, and verify its hash chain.
//
// Export streams the events that pass a filter, in seq order, to a Sink as JSON lines or CSV (the
// formats are described in tools/event_format.h). It reads inside one Log::Scan, so it sees one
// consistent snapshot even while a writer process appends, and every event it writes has been
// verified (FlatBuffers verifier and hash chain) first. On corruption the events before the bad
// one are written and flushed, then the scan's kCorruption Status (naming the seq) is returned.
//
// Verify checks the whole chain with Log::VerifyAll and returns the head.
//
// Used by the `cloister audit` subcommands (tools/cloister_main.cc), the tests, and
// //bench:export_bench. Thread-safety: the functions are thread-safe; one export per Sink.
#pragma once

#include <bitset>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "log/log.h"
#include "log/status.h"
#include "tools/text_format.h"

namespace cloister::tools {

enum class ExportFormat : uint8_t {
  kJsonLines,
  kCsv,
};

// Which events to export. An event is exported when it passes every condition; all bounds are
// inclusive.
struct ExportFilter {
  uint64_t seq_from = 1;                                        // 0 is the same as 1.
  uint64_t seq_to = std::numeric_limits<uint64_t>::max();       // Capped at the head.
  int64_t time_since_ns = std::numeric_limits<int64_t>::min();  // Event time_ns >= this.
  int64_t time_until_ns = std::numeric_limits<int64_t>::max();  // Event time_ns <= this.
  std::bitset<256> types;                                       // Payload type numbers; none: any.
  std::optional<std::string> actor_id;                          // Exact match of actor.id.
};

struct ExportOptions {
  ExportFilter filter;
  ExportFormat format = ExportFormat::kJsonLines;
};

struct ExportStats {
  uint64_t events_scanned = 0;   // Verified events the filter looked at.
  uint64_t events_exported = 0;  // Events written.
  uint64_t bytes_written = 0;    // Bytes drained into the sink, header included.
};

// Export's filter and format as typed on the command line, before parsing.
struct ExportArgs {
  std::optional<std::string> from;   // Seq, decimal.
  std::optional<std::string> to;     // Seq, decimal.
  std::optional<std::string> since;  // RFC 3339.
  std::optional<std::string> until;  // RFC 3339.
  std::vector<std::string> types;    // Payload type names (any of them); see ParsePayloadType.
  std::optional<std::string> actor;  // Actor id.
  std::string format = "jsonl";      // "jsonl" or "csv".
};

// Parses and checks export arguments. Errors: kInvalidArgument with a one-line message naming
// the option and the problem (unparseable seq or time, --from after --to, --since after --until,
// unknown type or format).
Result<ExportOptions> ParseExportArgs(const ExportArgs& args);

// Writes the events log holds that pass options.filter to sink, then flushes it. stats, if not
// null, is filled in even on error. Errors: the scan's (kCorruption naming the first bad seq,
// kIoError) or the sink's.
Status Export(const log::Log& log, const ExportOptions& options, Sink* sink,
              ExportStats* stats = nullptr);

// Verifies the whole hash chain and that it ends at the stored head; returns the head.
// Errors: kCorruption naming the first bad seq, kIoError.
Result<log::Head> Verify(const log::Log& log);

// "ok: head seq 1234 hash <64 hex>", the line `cloister audit verify` prints on success.
std::string VerifyOkLine(const log::Head& head);

}  // namespace cloister::tools
