// export_bench: how fast `cloister audit export` turns a verified log into JSON lines and CSV.
//
// Builds a fresh log of --events events (default 1,000,000) whose payloads are about 200 bytes
// (VmInstanceStateChanged with realistic strings), then times, best of --rounds rounds each:
//  * scan verified: Log::Scan with an empty callback (FlatBuffers verify + SHA-256 chain), the
//    floor under any export;
//  * export jsonl: tools::Export to /dev/null as JSON lines;
//  * export csv: the same as CSV.
// and prints plain lines such as `export jsonl: 1234567 events/s (345.6 MB/s, 280 bytes/event)`.
//
// Usage: export_bench [--events N] [--rounds R] [--dir DIR] [--keep]
// The log is written under a fresh DIR/cloister-export-bench-XXXXXX (DIR defaults to $TMPDIR or
// /tmp), removed at exit unless --keep. This prints figures; it is never a timed test.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "log/draft.h"
#include "log/events_generated.h"
#include "log/log.h"
#include "log/status.h"
#include "tools/audit.h"
#include "tools/text_format.h"

namespace cloister::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kAppendBatch = 10'000;  // Events per Append (log::kAppendEventsMax).
static_assert(kAppendBatch <= log::kAppendEventsMax);
constexpr int64_t kTimeStartNs = 1'795'000'000'000'000'000;  // 2026-11-18, a plain start time.

struct Flags {
  uint64_t events = 1'000'000;
  int rounds = 3;
  std::string dir;
  bool keep = false;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "export_bench: %s\n", message.c_str());
  std::exit(1);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  const char* tmp = std::getenv("TMPDIR");
  flags.dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--events" && has_value) {
      Result<uint64_t> n = tools::ParseU64(argv[++i]);
      if (!n.ok() || *n == 0) {
        Die("--events: expected a positive integer");
      }
      flags.events = *n;
    } else if (arg == "--rounds" && has_value) {
      Result<uint64_t> n = tools::ParseU64(argv[++i]);
      if (!n.ok() || *n == 0 || *n > 100) {
        Die("--rounds: expected 1..100");
      }
      flags.rounds = static_cast<int>(*n);
    } else if (arg == "--dir" && has_value) {
      flags.dir = argv[++i];
    } else if (arg == "--keep") {
      flags.keep = true;
    } else {
      Die("usage: export_bench [--events N] [--rounds R] [--dir DIR] [--keep]");
    }
  }
  return flags;
}

// One event with a payload of about 200 bytes: a VM state change as a node agent reports it.
// With empty_payload the same envelope carries an empty payload table, to measure the payload.
log::Draft StateChangedDraft(uint64_t i, bool empty_payload = false) {
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  char instance[32];
  char uuid[48];
  char ip[24];
  std::snprintf(instance, sizeof(instance), "inst-%010llu", static_cast<unsigned long long>(i));
  std::snprintf(uuid, sizeof(uuid), "6f1d2c9e-5b7a-4f0e-9c3d-%012llx",
                static_cast<unsigned long long>(i));
  std::snprintf(ip, sizeof(ip), "10.%llu.%llu.%llu", static_cast<unsigned long long>(i >> 16 & 255),
                static_cast<unsigned long long>(i >> 8 & 255),
                static_cast<unsigned long long>(i & 255));
  auto payload =
      fb::CreateVmInstanceStateChangedDirect(fbb, instance, static_cast<fb::VmState>(i % 9),
                                             "VM started on node after pulling image "
                                             "xcode-15.4 (layers cached)",
                                             static_cast<float>(i % 100) / 100.0f, "node-7f3a",
                                             uuid, ip, static_cast<uint16_t>(5900 + i % 100));
  if (empty_payload) {
    fbb.Clear();
    payload = fb::CreateVmInstanceStateChanged(fbb);
  }
  char request_id[32];
  std::snprintf(request_id, sizeof(request_id), "req-%012llx", static_cast<unsigned long long>(i));
  log::Envelope envelope;
  envelope.time_ns = kTimeStartNs + static_cast<int64_t>(i) * 1'000'000;
  envelope.actor_kind = fb::ActorKind::Node;
  envelope.actor_id = "node-7f3a";
  envelope.request_id = request_id;
  return builder.Finish(envelope, payload);
}

std::unique_ptr<log::Log> OpenLog(const std::string& dir, bool read_only) {
  log::Options options;
  options.dir = dir;
  options.read_only = read_only;
  options.map_bytes_initial = 4ull << 30;
  auto log = log::Log::Open(options);
  if (!log.ok()) {
    Die("open " + dir + ": " + log.status().ToString());
  }
  return std::move(log).value();
}

// Appends the events and returns the mean encoded event size.
double Fill(log::Log* log, uint64_t events) {
  uint64_t bytes = 0;
  for (uint64_t first = 0; first < events; first += kAppendBatch) {
    std::vector<log::Draft> drafts;
    for (uint64_t i = first; i < std::min(events, first + kAppendBatch); i++) {
      drafts.push_back(StateChangedDraft(i));
      bytes += drafts.back().buffer.size();
    }
    auto result = log->Append(std::move(drafts));
    if (!result.ok()) {
      Die("append: " + result.status().ToString());
    }
  }
  return static_cast<double>(bytes) / static_cast<double>(events);
}

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double BestScanSeconds(const log::Log& log, int rounds) {
  double best = 1e30;
  for (int round = 0; round < rounds; round++) {
    uint64_t seen = 0;
    const Clock::time_point start = Clock::now();
    Status s = log.Scan(1, UINT64_MAX, [&seen](const log::EventView&) {
      seen++;
      return true;
    });
    best = std::min(best, Seconds(start));
    if (!s.ok()) {
      Die("scan: " + s.ToString());
    }
  }
  return best;
}

// Returns the best time and sets *bytes to the output size of one export.
double BestExportSeconds(const log::Log& log, tools::ExportFormat format, int rounds,
                         uint64_t* bytes) {
  const int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    Die(std::string("open /dev/null: ") + std::strerror(errno));
  }
  tools::FdSink sink(fd);
  tools::ExportOptions options;
  options.format = format;
  double best = 1e30;
  for (int round = 0; round < rounds; round++) {
    tools::ExportStats stats;
    const Clock::time_point start = Clock::now();
    Status s = tools::Export(log, options, &sink, &stats);
    best = std::min(best, Seconds(start));
    if (!s.ok()) {
      Die("export: " + s.ToString());
    }
    *bytes = stats.bytes_written;
  }
  close(fd);
  return best;
}

void Report(const char* what, uint64_t events, double seconds, uint64_t bytes) {
  const double rate = static_cast<double>(events) / seconds;
  std::printf("%s: %.0f events/s (%.1f MB/s, %.0f bytes/event, %.3f s for %llu events)\n", what,
              rate, static_cast<double>(bytes) / seconds / 1e6,
              static_cast<double>(bytes) / static_cast<double>(events), seconds,
              static_cast<unsigned long long>(events));
}

int Run(const Flags& flags) {
  std::string tmpl = flags.dir + "/cloister-export-bench-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    Die("mkdtemp " + tmpl + ": " + std::strerror(errno));
  }
  const std::string dir = tmpl;
  double event_bytes = 0;
  {
    const Clock::time_point start = Clock::now();
    std::unique_ptr<log::Log> writer = OpenLog(dir, /*read_only=*/false);
    event_bytes = Fill(writer.get(), flags.events);
    const size_t payload_bytes = StateChangedDraft(0).buffer.size() -
                                 StateChangedDraft(0, /*empty_payload=*/true).buffer.size();
    std::printf(
        "fill: %llu events of %.0f bytes (VmInstanceStateChanged payload ~%zu bytes) in %.2f s, "
        "in %s\n",
        static_cast<unsigned long long>(flags.events), event_bytes, payload_bytes, Seconds(start),
        dir.c_str());
  }
  std::unique_ptr<log::Log> log = OpenLog(dir, /*read_only=*/true);
  const double scan = BestScanSeconds(*log, flags.rounds);
  Report("scan verified", flags.events, scan,
         static_cast<uint64_t>(event_bytes * static_cast<double>(flags.events)));
  uint64_t bytes = 0;
  const double jsonl =
      BestExportSeconds(*log, tools::ExportFormat::kJsonLines, flags.rounds, &bytes);
  Report("export jsonl", flags.events, jsonl, bytes);
  const double csv = BestExportSeconds(*log, tools::ExportFormat::kCsv, flags.rounds, &bytes);
  Report("export csv", flags.events, csv, bytes);
  std::printf("target: export jsonl >= 1000000 events/s: %s\n",
              static_cast<double>(flags.events) / jsonl >= 1e6 ? "met" : "NOT met");
  log.reset();
  if (!flags.keep) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return 0;
}

}  // namespace
}  // namespace cloister::bench

int main(int argc, char** argv) {
  return cloister::bench::Run(cloister::bench::ParseFlags(argc, argv));
}
