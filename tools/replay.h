// Replay: the views as they were at any seq, what changed between two seqs, and what each event
// did, rebuilt from the event log (and its snapshots) read-only. Behind `cloister replay`.
//
// Modes and output (view = a name in reducers::kViewNames, or "all"):
//  * views (default): the views at seq_to (default: the head).
//      json: reducers::ViewsJson, pretty-printed: {"seq","hash","<view>":{id:{...}},...}
//      text: "seq N hash <hex>", then one line per entity: "<view> <id>: field=value ...",
//            leaving out empty strings and empty lists; a stamp is "seq@time".
//  * diff A B: what changed from the views at A to those at B (either order).
//      json: reducers::DiffJson, pretty-printed.
//      text: "diff seq A -> B", then per entity "+ <view> <id>: fields" (added),
//            "- <view> <id>: fields" (removed), "~ <view> <id>: field before -> after, ..."
//            (changed), or "(no change)".
//  * step: every event seq_from..seq_to, each followed by the change it made.
//      json: one line per event: the audit export line (tools/event_format.h) plus "changes":
//            the DiffJson of that event without seq_from/seq_to.
//      text: "#seq time actor_kind:actor_id Type field=value ..." then the change lines as for
//            diff, indented, or "  (no change to the views)".
//    With a view other than "all", only events that changed that view are shown.
//
// The views at a seq come from reducers::Rebuild: the newest usable snapshot at or below it, then
// the log's verified events. Refused snapshots are reported to the caller, never fatal.
// Thread-safety: the functions are thread-safe; one Replay per Sink.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "log/log.h"
#include "log/snapshot_store.h"
#include "log/status.h"
#include "reducers/rebuild.h"
#include "tools/text_format.h"

namespace cloister::tools {

enum class ReplayMode : uint8_t {
  kViews,
  kDiff,
  kStep,
};

enum class ReplayFormat : uint8_t {
  kJson,
  kText,
};

// The replay options as typed on the command line, before parsing.
struct ReplayArgs {
  std::optional<std::string> from;  // Seq, decimal; --step only.
  std::optional<std::string> to;    // Seq, decimal.
  std::vector<std::string> diff;    // Two seqs, or none.
  bool step = false;
  std::string view = "all";
  std::string format = "json";
  bool no_snapshots = false;
};

struct ReplayOptions {
  ReplayMode mode = ReplayMode::kViews;
  uint64_t seq_from = 1;                 // kStep: first event shown.
  uint64_t seq_to = reducers::kSeqHead;  // kViews, kStep: last event applied.
  uint64_t diff_from = 0;                // kDiff: the two points compared.
  uint64_t diff_to = 0;
  std::string view = "all";
  ReplayFormat format = ReplayFormat::kJson;
  bool use_snapshots = true;
};

// Parses and checks replay arguments. Errors: kInvalidArgument with a one-line message naming
// the option and the problem (an unparseable seq, an unknown view (listing the valid ones) or
// format, --diff together with --step/--from/--to, --from without --step, --from after --to).
Result<ReplayOptions> ParseReplayArgs(const ReplayArgs& args);

// Writes what options ask for to sink, then flushes it. snapshots may be null. rejected, if not
// null, receives the snapshots that were refused along the way (for a warning).
// Errors: kInvalidArgument (a seq beyond the head, naming the option and the head), the log's
// (kCorruption naming the seq, kIoError), or the sink's.
Status Replay(const log::Log& log, const log::SnapshotStore* snapshots,
              const ReplayOptions& options, Sink* sink,
              std::vector<reducers::SnapshotRejection>* rejected = nullptr);

}  // namespace cloister::tools
