// replay_bench: how fast views are rebuilt from the event log, with and without a snapshot.
//
// Builds a fresh log of --events mixed events (default 1,000,000; --quick: 100,000) from
// reducers::MixedEvents (every view: config, nodes, node groups, VM instance lifecycles, plus
// events about unknown entities and payloads no view uses), then measures, over --rounds rounds:
//  * verified scan: Log::Scan with an empty callback, the floor under any replay;
//  * full rebuild: reducers::Rebuild from seq 1 with no snapshots (events/s);
//  * snapshot encode / decode: EncodeViews and DecodeViews of the views at head - --tail;
//  * snapshot put / get: SnapshotStore::Put (durable: one fsync'd LMDB commit) and Get (SHA-256);
//  * rebuild from snapshot: reducers::Rebuild using that snapshot plus the --tail (default 1,000)
//    events after it.
// Each line reports the median round, and the best in brackets. Prints plain text; never a test.
//
// Usage: replay_bench [--events N | --quick] [--tail N] [--rounds R] [--dir DIR] [--keep]
// The log lives under a fresh DIR/cloister-replay-bench-XXXXXX (DIR: $TMPDIR or /tmp), removed at
// exit unless --keep.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "log/log.h"
#include "log/snapshot_store.h"
#include "log/status.h"
#include "reducers/mixed_log.h"
#include "reducers/rebuild.h"
#include "reducers/snapshot.h"
#include "reducers/views.h"

namespace cloister::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kAppendBatch = 10'000;
static_assert(kAppendBatch <= log::kAppendEventsMax);
constexpr int64_t kTimeStartNs = 1'795'000'000'000'000'000;
constexpr uint64_t kSeed = 20261124;

struct Flags {
  uint64_t events = 1'000'000;
  uint64_t tail = 1'000;
  int rounds = 3;
  std::string dir;
  bool keep = false;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "replay_bench: %s\n", message.c_str());
  std::exit(1);
}

void Check(const Status& status, const char* what) {
  if (!status.ok()) {
    Die(std::string(what) + ": " + status.ToString());
  }
}

uint64_t ParseCount(const char* flag, const char* text) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || n == 0) {
    Die(std::string(flag) + ": expected a positive integer");
  }
  return n;
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  const char* tmp = std::getenv("TMPDIR");
  flags.dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--events" && has_value) {
      flags.events = ParseCount("--events", argv[++i]);
    } else if (arg == "--quick") {
      flags.events = 100'000;
    } else if (arg == "--tail" && has_value) {
      flags.tail = ParseCount("--tail", argv[++i]);
    } else if (arg == "--rounds" && has_value) {
      flags.rounds = static_cast<int>(std::min<uint64_t>(ParseCount("--rounds", argv[++i]), 100));
    } else if (arg == "--dir" && has_value) {
      flags.dir = argv[++i];
    } else if (arg == "--keep") {
      flags.keep = true;
    } else {
      Die("usage: replay_bench [--events N | --quick] [--tail N] [--rounds R] [--dir DIR] "
          "[--keep]");
    }
  }
  if (flags.tail >= flags.events) {
    Die("--tail must be smaller than --events");
  }
  return flags;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Runs fn rounds times; returns the round times sorted (median in the middle, best first).
std::vector<double> Time(int rounds, const std::function<void()>& fn) {
  std::vector<double> seconds;
  for (int r = 0; r < rounds; r++) {
    const auto start = Clock::now();
    fn();
    seconds.push_back(Seconds(Clock::now() - start));
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds;
}

double Median(const std::vector<double>& sorted) { return sorted[sorted.size() / 2]; }

void PrintRate(const char* what, uint64_t events, const std::vector<double>& seconds) {
  std::printf("%-28s %10.0f events/s  (%.3f s; best %.0f events/s)\n", what,
              static_cast<double>(events) / Median(seconds), Median(seconds),
              static_cast<double>(events) / seconds.front());
}

void PrintTime(const char* what, const std::vector<double>& seconds, const std::string& extra) {
  std::printf("%-28s %10.2f ms  (best %.2f ms)%s\n", what, 1e3 * Median(seconds),
              1e3 * seconds.front(), extra.c_str());
}

int Run(const Flags& flags) {
  std::string tmpl = flags.dir + "/cloister-replay-bench-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    Die("mkdtemp " + tmpl + " failed");
  }
  const std::string dir = tmpl;
  std::printf("replay_bench: %llu mixed events, tail %llu, %d rounds, in %s\n",
              static_cast<unsigned long long>(flags.events),
              static_cast<unsigned long long>(flags.tail), flags.rounds, dir.c_str());

  log::Options options;
  options.dir = dir;
  auto opened = log::Log::Open(options);
  Check(opened.status(), "open log");
  std::unique_ptr<log::Log> log = std::move(opened.value());
  const auto build_start = Clock::now();
  Check(reducers::AppendMixedEvents(log.get(), flags.events, kSeed, kTimeStartNs, kAppendBatch),
        "append");
  const double build_s = Seconds(Clock::now() - build_start);
  std::printf("%-28s %10.0f events/s  (%.2f s, context only)\n", "build log (append)",
              static_cast<double>(flags.events) / build_s, build_s);
  const uint64_t head = log->head().seq;

  // Verified scan: the floor.
  PrintRate("verified scan", head, Time(flags.rounds, [&] {
              Check(log->Scan(1, head, [](const log::EventView&) { return true; }), "scan");
            }));

  // Full rebuild from seq 1.
  reducers::Views full;
  const std::vector<double> full_times = Time(flags.rounds, [&] {
    auto views = reducers::Rebuild(*log, nullptr, reducers::kSeqHead);
    Check(views.status(), "rebuild");
    full = std::move(views.value());
  });
  PrintRate("full rebuild (no snapshot)", head, full_times);
  std::printf("%-28s %zu config, %zu nodes, %zu node groups, %zu VM instances\n", "views at head",
              full.config.entries.size(), full.nodes.nodes.size(), full.node_groups.groups.size(),
              full.vm_instances.instances.size());

  // The snapshot at head - tail.
  const uint64_t snapshot_seq = head - flags.tail;
  auto at = reducers::Rebuild(*log, nullptr, snapshot_seq);
  Check(at.status(), "rebuild to the snapshot seq");
  std::string bytes;
  const std::vector<double> encode =
      Time(flags.rounds, [&] { bytes = reducers::EncodeViews(*at); });
  PrintTime("snapshot encode", encode,
            "  size " + std::to_string(bytes.size()) + " bytes (" +
                std::to_string(bytes.size() / std::max<uint64_t>(snapshot_seq, 1)) +
                " bytes/event, " + std::to_string(bytes.size() >> 20) + " MiB)");
  const std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  PrintTime("snapshot decode",
            Time(flags.rounds, [&] { Check(reducers::DecodeViews(span).status(), "decode"); }), "");

  auto store_opened = log::SnapshotStore::Open(dir, /*read_only=*/false);
  Check(store_opened.status(), "open snapshot store");
  std::unique_ptr<log::SnapshotStore> store = std::move(store_opened.value());
  PrintTime("snapshot put (fsync)",
            Time(flags.rounds, [&] { Check(store->Put(snapshot_seq, at->hash, span), "put"); }),
            "");
  PrintTime("snapshot get (SHA-256)",
            Time(flags.rounds, [&] { Check(store->Get(snapshot_seq).status(), "get"); }), "");

  // Rebuild from the snapshot plus the tail.
  reducers::RebuildStats stats;
  reducers::Views from_snapshot;
  const std::vector<double> tail = Time(flags.rounds, [&] {
    auto views = reducers::Rebuild(*log, store.get(), reducers::kSeqHead, &stats);
    Check(views.status(), "rebuild from snapshot");
    from_snapshot = std::move(views.value());
  });
  if (stats.snapshot_seq != snapshot_seq || stats.events_applied != flags.tail) {
    Die("the rebuild did not use the snapshot as expected");
  }
  PrintTime("rebuild from snapshot+tail", tail,
            "  (" + std::to_string(flags.tail) + " events after seq " +
                std::to_string(snapshot_seq) + "; " +
                std::to_string(static_cast<int>(Median(full_times) / Median(tail))) +
                "x faster than the full rebuild)");
  // Pair check: the fast path must give exactly what the full replay gave.
  if (reducers::EncodeViews(from_snapshot) != reducers::EncodeViews(full)) {
    Die("views from the snapshot differ from the full replay");
  }
  std::printf("%-28s identical to the full rebuild (byte for byte)\n", "snapshot+tail views");

  store.reset();
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
