#include "tools/replay.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "log/assert.h"
#include "reducers/view_json.h"
#include "reducers/views.h"
#include "tools/event_format.h"

namespace cloister::tools {
namespace {

using reducers::Json;

constexpr size_t kFlushBytes = 1 << 20;
constexpr size_t kBriefValueBytesMax = 64;  // Longer payload values are cut in step text.

// Output collected in a string and drained into the sink in large chunks.
class Output {
 public:
  explicit Output(Sink* sink) : sink_(sink) {}

  void Append(std::string_view text) {
    buffer_.append(text);
    if (buffer_.size() >= kFlushBytes) {
      Drain();
    }
  }
  // Drains the buffer; a sink error is kept (and later output dropped) for Flush to return.
  void Drain() {
    if (status_.ok() && !buffer_.empty()) {
      status_ = sink_->Write(buffer_);
    }
    buffer_.clear();
  }
  Status Flush() {
    Drain();
    return status_;
  }
  const Status& status() const { return status_; }

 private:
  Sink* sink_;
  std::string buffer_;
  Status status_;
};

// ---- Text rendering -------------------------------------------------------------------------

bool NeedsQuotes(const std::string& text) {
  if (text.empty()) {
    return true;
  }
  return std::any_of(text.begin(), text.end(), [](char c) {
    return static_cast<unsigned char>(c) <= ' ' || c == '"' || c == '=' || c == '\\' || c == ',' ||
           c == 0x7F;
  });
}

bool IsStamp(const Json& value) {
  return value.is_object() && value.size() == 2 && value.contains("seq") && value.contains("time");
}

// One value in text output: plain words bare, other strings quoted, stamps as seq@time, anything
// else as compact JSON.
std::string TextValue(const Json& value) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    return NeedsQuotes(text) ? reducers::DumpJson(value) : text;
  }
  if (IsStamp(value)) {
    return reducers::DumpJson(value["seq"]) + "@" + value["time"].get<std::string>();
  }
  return reducers::DumpJson(value);
}

bool Omitted(const Json& value) {
  return value.is_null() || (value.is_string() && value.get_ref<const std::string&>().empty()) ||
         (value.is_array() && value.empty());
}

// "field=value field=value", leaving out empty values and the id field that repeats the key.
std::string FieldsText(const Json& entity, const std::string& id) {
  std::string text;
  for (const auto& [field, value] : entity.items()) {
    if (Omitted(value) ||
        (field.ends_with("_id") && value.is_string() && value == id && text.empty())) {
      continue;
    }
    text += (text.empty() ? "" : " ") + field + "=" + TextValue(value);
  }
  return text;
}

std::string Cut(std::string text) {
  if (text.size() > kBriefValueBytesMax) {
    text.resize(kBriefValueBytesMax);
    text += "...";
  }
  return text;
}

void ViewsText(const Json& views, Output* out) {
  out->Append("seq " + reducers::DumpJson(views["seq"]) + " hash " +
              views["hash"].get<std::string>() + "\n");
  for (const char* name : reducers::kViewNames) {
    if (!views.contains(name)) {
      continue;
    }
    for (const auto& [id, entity] : views[name].items()) {
      out->Append(std::string(name) + " " + id + ": " + FieldsText(entity, id) + "\n");
    }
  }
}

// The change lines of a DiffJson, each starting with indent. Returns how many were written.
size_t DiffText(const Json& diff, const std::string& indent, Output* out) {
  size_t lines = 0;
  for (const char* name : reducers::kViewNames) {
    if (!diff.contains(name)) {
      continue;
    }
    const Json& view = diff[name];
    const std::string prefix = std::string(name) + " ";
    if (view.contains("added")) {
      for (const auto& [id, entity] : view["added"].items()) {
        out->Append(indent + "+ " + prefix + id + ": " + FieldsText(entity, id) + "\n");
        lines++;
      }
    }
    if (view.contains("removed")) {
      for (const auto& [id, entity] : view["removed"].items()) {
        out->Append(indent + "- " + prefix + id + ": " + FieldsText(entity, id) + "\n");
        lines++;
      }
    }
    if (view.contains("changed")) {
      for (const auto& [id, change] : view["changed"].items()) {
        std::string fields;
        for (const auto& [field, after] : change["after"].items()) {
          fields += (fields.empty() ? "" : ", ") + field + " " +
                    TextValue(change["before"][field]) + " -> " + TextValue(after);
        }
        out->Append(indent + "~ " + prefix + id + ": " + fields + "\n");
        lines++;
      }
    }
  }
  return lines;
}

// j[key] as text: strings bare, other values as JSON, "" when j is not an object or lacks key.
// (The event's JSON comes from the audit formatter, where the actor, say, may be null.)
std::string Member(const Json& j, const char* key) {
  if (!j.is_object()) {
    return "";
  }
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return "";
  }
  return it->is_string() ? it->get<std::string>() : reducers::DumpJson(*it);
}

// "#9 2026-11-24T12:00:00.1Z System:scheduler VmInstanceScheduled instance_id=i1 node_id=n1".
std::string EventText(const Json& event) {
  auto actor = event.find("actor");
  const Json no_actor;
  const Json& actor_json = actor != event.end() ? *actor : no_actor;
  std::string text = "#" + Member(event, "seq") + " " + Member(event, "time") + " " +
                     Member(actor_json, "kind") + ":" + TextValue(Json(Member(actor_json, "id"))) +
                     " " + Member(event, "type");
  auto payload = event.find("payload");
  if (payload == event.end() || !payload->is_object()) {
    return text;
  }
  for (const auto& [field, value] : payload->items()) {
    if (!Omitted(value)) {
      text += " " + field + "=" + Cut(TextValue(value));
    }
  }
  return text;
}

// ---- Modes ----------------------------------------------------------------------------------

std::string SeqText(uint64_t seq) { return std::to_string(seq); }

Status BeyondHead(const std::string& what, uint64_t seq, uint64_t head) {
  return Status::InvalidArgument(what + " " + SeqText(seq) +
                                 " is beyond the head of the log (seq " + SeqText(head) + ")");
}

// Rebuild, passing refused snapshots on.
Result<reducers::Views> ViewsAt(const log::Log& log, const log::SnapshotStore* snapshots,
                                uint64_t seq, std::vector<reducers::SnapshotRejection>* rejected) {
  reducers::RebuildStats stats;
  Result<reducers::Views> views = reducers::Rebuild(log, snapshots, seq, &stats);
  if (rejected != nullptr) {
    rejected->insert(rejected->end(), stats.snapshots_rejected.begin(),
                     stats.snapshots_rejected.end());
  }
  return views;
}

Status ReplayViews(const log::Log& log, const log::SnapshotStore* snapshots,
                   const ReplayOptions& options, uint64_t head, Output* out,
                   std::vector<reducers::SnapshotRejection>* rejected) {
  const uint64_t seq = options.seq_to == reducers::kSeqHead ? head : options.seq_to;
  if (seq > head) {
    return BeyondHead("--to", seq, head);
  }
  Result<reducers::Views> views = ViewsAt(log, snapshots, seq, rejected);
  if (!views.ok()) {
    return views.status();
  }
  const Json j = reducers::ViewsJson(*views, options.view);
  if (options.format == ReplayFormat::kJson) {
    out->Append(reducers::DumpJson(j, 2) + "\n");
  } else {
    ViewsText(j, out);
  }
  return Status::Ok();
}

Status ReplayDiff(const log::Log& log, const log::SnapshotStore* snapshots,
                  const ReplayOptions& options, uint64_t head, Output* out,
                  std::vector<reducers::SnapshotRejection>* rejected) {
  const uint64_t lo = std::min(options.diff_from, options.diff_to);
  const uint64_t hi = std::max(options.diff_from, options.diff_to);
  if (hi > head) {
    return BeyondHead("--diff: seq", hi, head);
  }
  Result<reducers::Views> lo_views = ViewsAt(log, snapshots, lo, rejected);
  if (!lo_views.ok()) {
    return lo_views.status();
  }
  // The later point continues from the earlier one, so the events between are read once.
  reducers::Views hi_views = *lo_views;
  Status status = reducers::ApplyTail(log, hi, &hi_views);
  if (!status.ok()) {
    return status;
  }
  const bool forward = options.diff_from <= options.diff_to;
  const Json diff = forward ? reducers::DiffJson(*lo_views, hi_views, options.view)
                            : reducers::DiffJson(hi_views, *lo_views, options.view);
  if (options.format == ReplayFormat::kJson) {
    out->Append(reducers::DumpJson(diff, 2) + "\n");
    return Status::Ok();
  }
  out->Append("diff seq " + SeqText(options.diff_from) + " -> " + SeqText(options.diff_to) + "\n");
  if (DiffText(diff, "", out) == 0) {
    out->Append("(no change)\n");
  }
  return Status::Ok();
}

// Writes one event of --step and the change it made.
void StepEvent(const log::EventView& view, const reducers::PreImages& before,
               const reducers::Views& after, const ReplayOptions& options,
               EventFormatter* formatter, OutBuffer* line, Output* out) {
  Json changes = reducers::DiffJson(before, after, options.view);
  changes.erase("seq_from");
  changes.erase("seq_to");
  if (options.view != reducers::kAllViews && changes.empty()) {
    return;  // Only events that changed the view asked for.
  }
  line->Clear();
  formatter->WriteJsonLine(view.seq, *view.event, view.hash, line);
  // The formatter writes valid JSON by contract; a parse failure would be a bug there.
  Json event = Json::parse(line->view(), nullptr, /*allow_exceptions=*/false);
  CL_ASSERT(!event.is_discarded());
  if (options.format == ReplayFormat::kJson) {
    event["changes"] = std::move(changes);
    out->Append(reducers::DumpJson(event) + "\n");
    return;
  }
  out->Append(EventText(event) + "\n");
  if (DiffText(changes, "  ", out) == 0) {
    out->Append("  (no change to the views)\n");
  }
}

Status ReplayStep(const log::Log& log, const log::SnapshotStore* snapshots,
                  const ReplayOptions& options, uint64_t head, Output* out,
                  std::vector<reducers::SnapshotRejection>* rejected) {
  const uint64_t seq_to = options.seq_to == reducers::kSeqHead ? head : options.seq_to;
  if (seq_to > head) {
    return BeyondHead("--to", seq_to, head);
  }
  const uint64_t seq_from = std::max<uint64_t>(options.seq_from, 1);
  if (seq_from > seq_to) {
    // Only possible with --from past the head and no --to (ParseReplayArgs checks the rest).
    return seq_to == 0 ? Status::Ok() : BeyondHead("--from", seq_from, head);
  }
  Result<reducers::Views> views = ViewsAt(log, snapshots, seq_from - 1, rejected);
  if (!views.ok()) {
    return views.status();
  }
  EventFormatter formatter;
  OutBuffer line(nullptr);
  reducers::PreImages before;
  return log.Scan(seq_from, seq_to, [&](const log::EventView& view) {
    before = reducers::PreImages();
    reducers::ApplyRecording(&*views, view.seq, view.hash, *view.event, &before);
    StepEvent(view, before, *views, options, &formatter, &line, out);
    return out->status().ok();
  });
}

Result<uint64_t> ParseSeq(const std::string& option, const std::string& text) {
  Result<uint64_t> seq = ParseU64(text);
  if (!seq.ok()) {
    return Status::InvalidArgument(option + ": " + seq.status().message());
  }
  return seq;
}

}  // namespace

Result<ReplayOptions> ParseReplayArgs(const ReplayArgs& args) {
  ReplayOptions options;
  if (!reducers::IsViewName(args.view)) {
    return Status::InvalidArgument("--view: unknown view '" + args.view +
                                   "'; valid views: " + reducers::ViewNameList());
  }
  options.view = args.view;
  if (args.format == "json" || args.format == "text") {
    options.format = args.format == "json" ? ReplayFormat::kJson : ReplayFormat::kText;
  } else {
    return Status::InvalidArgument("--format: unknown format '" + args.format +
                                   "'; expected json or text");
  }
  options.use_snapshots = !args.no_snapshots;
  if (!args.diff.empty()) {
    if (args.step || args.from || args.to) {
      return Status::InvalidArgument(
          "--diff takes its own two seqs; it cannot be combined with "
          "--step, --from or --to");
    }
    if (args.diff.size() != 2) {
      return Status::InvalidArgument("--diff takes two seqs, SEQ_A and SEQ_B");
    }
    Result<uint64_t> a = ParseSeq("--diff", args.diff[0]);
    Result<uint64_t> b = ParseSeq("--diff", args.diff[1]);
    if (!a.ok() || !b.ok()) {
      return a.ok() ? b.status() : a.status();
    }
    options.mode = ReplayMode::kDiff;
    options.diff_from = *a;
    options.diff_to = *b;
    return options;
  }
  options.mode = args.step ? ReplayMode::kStep : ReplayMode::kViews;
  if (args.from && !args.step) {
    return Status::InvalidArgument("--from needs --step (the views are shown at one seq: --to)");
  }
  if (args.from) {
    Result<uint64_t> from = ParseSeq("--from", *args.from);
    if (!from.ok()) {
      return from.status();
    }
    options.seq_from = *from;
  }
  if (args.to) {
    Result<uint64_t> to = ParseSeq("--to", *args.to);
    if (!to.ok()) {
      return to.status();
    }
    options.seq_to = *to;
  }
  if (args.from && args.to && options.seq_from > options.seq_to) {
    return Status::InvalidArgument("--from " + *args.from + " is after --to " + *args.to);
  }
  return options;
}

Status Replay(const log::Log& log, const log::SnapshotStore* snapshots,
              const ReplayOptions& options, Sink* sink,
              std::vector<reducers::SnapshotRejection>* rejected) {
  CL_ASSERT(reducers::IsViewName(options.view));
  const log::SnapshotStore* store = options.use_snapshots ? snapshots : nullptr;
  // One head for the whole command, so that a live writer's appends do not move the target.
  const uint64_t head = log.head().seq;
  Output out(sink);
  Status status;
  switch (options.mode) {
    case ReplayMode::kViews:
      status = ReplayViews(log, store, options, head, &out, rejected);
      break;
    case ReplayMode::kDiff:
      status = ReplayDiff(log, store, options, head, &out, rejected);
      break;
    case ReplayMode::kStep:
      status = ReplayStep(log, store, options, head, &out, rejected);
      break;
  }
  // What was written before an error (e.g. steps before a corrupt event) still goes out.
  Status flushed = out.Flush();
  return status.ok() ? flushed : status;
}

}  // namespace cloister::tools
