#include "tools/audit.h"

#include <string_view>

#include "log/hash.h"
#include "tools/event_format.h"

namespace cloister::tools {
namespace {

Status OptionError(std::string_view option, const Status& status) {
  return Status::InvalidArgument(std::string(option) + ": " + status.message());
}

bool Matches(const ExportFilter& filter, const fb::Event& event) {
  const int64_t time_ns = event.time_ns();
  if (time_ns < filter.time_since_ns || time_ns > filter.time_until_ns) {
    return false;
  }
  if (filter.types.any() && !filter.types.test(static_cast<uint8_t>(event.payload_type()))) {
    return false;
  }
  if (filter.actor_id.has_value()) {
    const fb::Actor* actor = event.actor();
    if (actor == nullptr || actor->id() == nullptr ||
        actor->id()->string_view() != *filter.actor_id) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<ExportOptions> ParseExportArgs(const ExportArgs& args) {
  ExportOptions options;
  ExportFilter& filter = options.filter;
  if (args.from.has_value()) {
    Result<uint64_t> seq = ParseU64(*args.from);
    if (!seq.ok()) {
      return OptionError("--from", seq.status());
    }
    filter.seq_from = *seq;
  }
  if (args.to.has_value()) {
    Result<uint64_t> seq = ParseU64(*args.to);
    if (!seq.ok()) {
      return OptionError("--to", seq.status());
    }
    filter.seq_to = *seq;
  }
  // Checked only when both are given: --to 0 alone is a valid (empty) range, not "1 after 0".
  if (args.from.has_value() && args.to.has_value() && filter.seq_from > filter.seq_to) {
    return Status::InvalidArgument("--from " + std::to_string(filter.seq_from) + " is after --to " +
                                   std::to_string(filter.seq_to));
  }
  if (args.since.has_value()) {
    Result<int64_t> time = ParseRfc3339(*args.since);
    if (!time.ok()) {
      return OptionError("--since", time.status());
    }
    filter.time_since_ns = *time;
  }
  if (args.until.has_value()) {
    Result<int64_t> time = ParseRfc3339(*args.until);
    if (!time.ok()) {
      return OptionError("--until", time.status());
    }
    filter.time_until_ns = *time;
  }
  if (filter.time_since_ns > filter.time_until_ns) {
    return Status::InvalidArgument("--since " + *args.since + " is after --until " + *args.until);
  }
  for (const std::string& name : args.types) {
    Result<uint8_t> type = ParsePayloadType(name);
    if (!type.ok()) {
      return OptionError("--type", type.status());
    }
    filter.types.set(*type);
  }
  filter.actor_id = args.actor;
  if (args.format == "jsonl") {
    options.format = ExportFormat::kJsonLines;
  } else if (args.format == "csv") {
    options.format = ExportFormat::kCsv;
  } else {
    return Status::InvalidArgument("--format: unknown format '" + args.format +
                                   "'; expected jsonl or csv");
  }
  return options;
}

Status Export(const log::Log& log, const ExportOptions& options, Sink* sink, ExportStats* stats) {
  ExportStats local;
  ExportStats& counts = stats != nullptr ? *stats : local;
  counts = ExportStats{};
  OutBuffer out(sink);
  EventFormatter formatter;
  const ExportFilter& filter = options.filter;
  const bool csv = options.format == ExportFormat::kCsv;
  if (csv) {
    char* p = out.Ensure(out.cursor(), kCsvHeader.size());
    kCsvHeader.copy(p, kCsvHeader.size());
    out.set_cursor(p + kCsvHeader.size());
  }
  Status scanned = log.Scan(filter.seq_from, filter.seq_to, [&](const log::EventView& view) {
    counts.events_scanned++;
    if (!Matches(filter, *view.event)) {
      return true;
    }
    if (csv) {
      formatter.WriteCsvRow(view.seq, *view.event, view.hash, &out);
    } else {
      formatter.WriteJsonLine(view.seq, *view.event, view.hash, &out);
    }
    counts.events_exported++;
    return out.status().ok();  // Stop once the sink fails (e.g. a closed pipe).
  });
  // Flush first: on corruption the verified events before the bad one are still exported.
  Status flushed = out.Flush();
  counts.bytes_written = out.bytes_flushed();
  if (!scanned.ok()) {
    return scanned;
  }
  return flushed;
}

Result<log::Head> Verify(const log::Log& log) { return log.VerifyAll(); }

std::string VerifyOkLine(const log::Head& head) {
  return "ok: head seq " + std::to_string(head.seq) + " hash " + log::HashHex(head.hash);
}

}  // namespace cloister::tools
