// log_bench: durable append and verified scan throughput of cloister::log::Log, printed side by
// side with raw LMDB peers measured in the same run, on the same disk, with events of ~200 bytes.
//
// Figures (all events/s):
//  * append log producers=P (P = 1, 16, 256): P threads each loop DraftBuilder -> Log::Append
//    (blocking, one draft per call) for --seconds or a fixed count, whichever comes first.
//  * append raw batched: MDB_APPEND puts of 200-byte values with big-endian u64 keys, 1,000 per
//    write transaction, default sync flags. The ceiling a group-committing log can approach.
//  * append raw 1-per-txn: the same with one put per transaction: one commit (fsync) per event.
//  * scan log: Log::Scan over --scan-events events (every event verified and hash-linked), next
//    to a raw LMDB cursor walk over the very same stored events that touches each value.
// Targets: log@256 / raw batched >= 0.50, log@1 / raw 1-per-txn >= 0.80, scan / raw >= 0.30.
//
// For the analysis, also (information, no targets): raw puts of 16 and 256 per transaction (the
// most a commit holding one event from each of 16 or 256 producers can do); log async (one thread
// calling AppendAsync without waiting: the writer without producer wake-ups); single-thread costs
// of building, hashing and verifying one event; and the hand-off ceiling (256 threads blocking on
// a std::promise once per event, no I/O at all).
//
// The machine may be shared, so append configurations run in --rounds slices that alternate, each
// log configuration right after its raw peer; the summary gives per-round ratios and their median.
//
// Usage: log_bench [--dir DIR] [--seconds S] [--rounds R] [--scan-events N] [--quick] [--keep]
//                  [--only NAME]
// Everything is written under a fresh DIR/cloister-log-bench-XXXXXX, removed at exit unless
// --keep. DIR must be on the disk you mean to measure (not tmpfs: fsync would be free there).
// This is a program that prints figures, never a timed test: the figures depend on the machine.
#include <lmdb.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "log/draft.h"
#include "log/events_generated.h"
#include "log/hash.h"
#include "log/log.h"
#include "log/status.h"

namespace cloister::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Shape of the benchmark.
inline constexpr size_t kEventBytesTarget = 200;       // Encoded event and raw value size.
inline constexpr size_t kRawBatchEvents = 1000;        // Puts per transaction, raw batched peer.
inline constexpr uint64_t kRawMapBytes = 16ull << 30;  // Sparse; raw peers never grow it.
inline constexpr int kScanRounds = 3;                  // Scans are short: report the best round.
inline constexpr int kProducerCounts[] = {1, 16, 256};

// Targets the log must meet (ratios of events/s).
inline constexpr double kTargetLog256VsRawBatched = 0.50;
inline constexpr double kTargetLog1VsRawSingle = 0.80;
inline constexpr double kTargetScanVsRawCursor = 0.30;

struct Flags {
  std::string dir = "/tmp";
  double seconds = 3.0;  // Per append configuration, over all rounds.
  int rounds = 3;        // Append configurations alternate this often.
  uint64_t scan_events = 1'000'000;
  uint64_t config_events_max = 20'000'000;  // Count bound per append configuration.
  double component_seconds = 0.5;           // Per single-thread component measurement.
  std::string only;                         // One measurement (for profiling); empty: all.
  bool quick = false;
  bool keep = false;
};

// Whether a measurement runs: all of them, unless --only names one.
bool Selected(const Flags& flags, std::string_view name) {
  return flags.only.empty() || flags.only == name;
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "log_bench: %s\n", message.c_str());
  std::exit(1);
}

void CheckMdb(int rc, const char* what) {
  if (rc != MDB_SUCCESS) {
    Die(std::string(what) + ": " + mdb_strerror(rc));
  }
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- Flags and header ---------------------------------------------------------------------------

void PrintUsage() {
  std::fprintf(
      stderr,
      "usage: log_bench [--dir DIR] [--seconds S] [--rounds R] [--scan-events N] [--quick]\n"
      "                 [--keep] [--only "
      "raw1|log1|raw1000|log256|logasync|raw256|log16|raw16|scan|components]\n"
      "  --dir DIR          parent of the scratch directory (default /tmp)\n"
      "  --seconds S        duration of each append configuration (default 3)\n"
      "  --rounds R         split it in R slices, alternating with the raw peers (3)\n"
      "  --scan-events N    events in the scan comparison (default 1000000)\n"
      "  --quick            small counts and durations, for a smoke run\n"
      "  --keep             keep the scratch directory\n"
      "  --only NAME        run one measurement, e.g. under a profiler; no summary\n");
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  // --quick sets defaults first, so that explicit flags override it wherever they appear.
  if (std::find(args.begin(), args.end(), "--quick") != args.end()) {
    flags.quick = true;
    flags.seconds = 0.3;
    flags.rounds = 2;
    flags.scan_events = 20'000;
    flags.config_events_max = 20'000;
    flags.component_seconds = 0.05;
  }
  for (size_t i = 0; i < args.size(); i++) {
    const std::string_view arg = args[i];
    const bool has_value = i + 1 < args.size();
    if (arg == "--quick") {
      continue;
    }
    if (arg == "--keep") {
      flags.keep = true;
    } else if (arg == "--dir" && has_value) {
      flags.dir = std::string(args[++i]);
    } else if (arg == "--seconds" && has_value) {
      flags.seconds = std::atof(std::string(args[++i]).c_str());
    } else if (arg == "--rounds" && has_value) {
      flags.rounds = std::atoi(std::string(args[++i]).c_str());
    } else if (arg == "--only" && has_value) {
      flags.only = std::string(args[++i]);
    } else if (arg == "--scan-events" && has_value) {
      flags.scan_events = std::strtoull(std::string(args[++i]).c_str(), nullptr, 10);
    } else {
      PrintUsage();
      std::exit(arg == "--help" || arg == "-h" ? 0 : 2);
    }
  }
  if (flags.seconds <= 0 || flags.scan_events == 0 || flags.rounds < 1) {
    PrintUsage();
    std::exit(2);
  }
  return flags;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown";
}

// The mount holding path (longest mount point that prefixes it): "ext4 /dev/vda on / (rw,...)".
std::string FilesystemOf(const std::string& path) {
  std::error_code error;
  const std::string real = std::filesystem::canonical(path, error).string();
  std::ifstream in("/proc/self/mounts");
  std::string device, mount_point, type, options, best;
  size_t best_length = 0;
  while (in >> device >> mount_point >> type >> options) {
    std::string rest;
    std::getline(in, rest);
    const bool prefixes =
        real.rfind(mount_point, 0) == 0 && (real.size() == mount_point.size() ||
                                            mount_point == "/" || real[mount_point.size()] == '/');
    if (prefixes && mount_point.size() >= best_length) {
      best_length = mount_point.size();
      best = type + " " + device + " on " + mount_point + " (" + options + ")";
    }
  }
  return best.empty() ? "unknown" : best;
}

std::string NowUtc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[64];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return text;
}

std::string CommandLine(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; i++) {
    line += (i == 0 ? "" : " ");
    line += argv[i];
  }
  return line;
}

void PrintHeader(int argc, char** argv, const Flags& flags, const std::string& scratch) {
  std::printf("# cloister log_bench\n");
  std::printf("command: %s\n", CommandLine(argc, argv).c_str());
  std::printf("date: %s\n", NowUtc().c_str());
  std::printf("machine: nproc=%ld cpu=\"%s\"\n", sysconf(_SC_NPROCESSORS_ONLN), CpuModel().c_str());
  std::printf("dir: %s  filesystem: %s\n", scratch.c_str(), FilesystemOf(scratch).c_str());
  std::printf("libraries: %s, %s\n", mdb_version(nullptr, nullptr, nullptr),
              OpenSSL_version(OPENSSL_VERSION));
  std::printf("mode: %s%s%s  seconds/config=%.2f in %d rounds  events/config<=%" PRIu64
              "  scan events=%" PRIu64 "\n",
              flags.quick ? "quick" : "full", flags.only.empty() ? "" : ", only ",
              flags.only.c_str(), flags.seconds, flags.rounds, flags.config_events_max,
              flags.scan_events);
}

// ---- Events -------------------------------------------------------------------------------------

// Builds event n: a VmInstanceStateChanged whose fixed-width strings keep every event the same
// size. message (absent, or a string of some length) tunes that size; at the smallest realistic
// shape (16-hex-digit ids, no node, no message) the envelope alone is most of the 200 bytes.
log::Draft BuildEvent(log::DraftBuilder& builder, uint64_t n,
                      const std::optional<std::string>& message) {
  char instance_id[24];
  std::snprintf(instance_id, sizeof(instance_id), "%016" PRIx64,
                static_cast<uint64_t>(n * 0x9e3779b97f4a7c15ull));
  char request_id[24];
  std::snprintf(request_id, sizeof(request_id), "r-%08" PRIx64, n & 0xffffffffu);

  flatbuffers::FlatBufferBuilder& fbb = builder.fbb();
  const auto instance = fbb.CreateString(instance_id, std::strlen(instance_id));
  flatbuffers::Offset<flatbuffers::String> text = 0;
  if (message.has_value()) {
    text = fbb.CreateString(message->data(), message->size());
  }
  const auto payload = fb::CreateVmInstanceStateChanged(fbb, instance, fb::VmState::Started, text,
                                                        /*progress=*/1.0f);

  const auto now = std::chrono::system_clock::now().time_since_epoch();
  log::Envelope envelope;
  envelope.time_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  envelope.actor_kind = fb::ActorKind::System;
  envelope.actor_id = "system";
  envelope.request_id = request_id;
  return builder.Finish(envelope, payload);
}

// The message whose event encodes closest to kEventBytesTarget (ties: the smaller event).
struct EventShape {
  std::optional<std::string> message;
  size_t event_bytes = 0;
};

size_t EncodedBytes(const std::optional<std::string>& message) {
  log::DraftBuilder builder;
  return BuildEvent(builder, 1, message).bytes().size();
}

EventShape ChooseEventShape() {
  EventShape best{std::nullopt, EncodedBytes(std::nullopt)};
  auto distance = [](size_t bytes) {
    return bytes > kEventBytesTarget ? bytes - kEventBytesTarget : kEventBytesTarget - bytes;
  };
  for (size_t length = 0; length <= kEventBytesTarget; length++) {
    const std::string message(length, 'm');
    const size_t bytes = EncodedBytes(message);
    if (distance(bytes) < distance(best.event_bytes)) {
      best = EventShape{message, bytes};
    }
  }
  log::DraftBuilder builder;
  const Status check = log::CheckDraft(BuildEvent(builder, 1, best.message).bytes());
  if (!check.ok()) {
    Die("benchmark event is not a valid draft: " + check.ToString());
  }
  return best;
}

// ---- Log appends --------------------------------------------------------------------------------

// One append configuration, accumulated over rounds.
struct AppendFigures {
  uint64_t events = 0;
  double seconds = 0;
  std::vector<double> latencies_ms;  // Per Append call; empty for the raw peers.
  std::vector<double> round_rates;   // events/s of each round.

  double EventsPerSecond() const { return seconds > 0 ? static_cast<double>(events) / seconds : 0; }
  void AddRound(uint64_t round_events, double round_seconds) {
    events += round_events;
    seconds += round_seconds;
    round_rates.push_back(static_cast<double>(round_events) / round_seconds);
  }
};

// How long and how many events one round of one configuration may run.
struct Slice {
  double seconds = 0;
  uint64_t events_max = 0;
};

std::unique_ptr<log::Log> OpenLog(const std::string& dir) {
  log::Options options;
  options.dir = dir;
  Result<std::unique_ptr<log::Log>> opened = log::Log::Open(std::move(options));
  if (!opened.ok()) {
    Die("Log::Open(" + dir + "): " + opened.status().ToString());
  }
  return std::move(opened).value();
}

double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) {
    return 0;
  }
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(fraction * values.size()));
  std::nth_element(values.begin(), values.begin() + index, values.end());
  return values[index];
}

// One producer: claims a ticket per event so the total never exceeds events_max.
void ProduceUntilStopped(log::Log& log, const std::optional<std::string>& message,
                         std::atomic<bool>& go, std::atomic<bool>& stop,
                         std::atomic<uint64_t>& tickets, uint64_t events_max,
                         std::vector<double>& latencies_ms) {
  while (!go.load(std::memory_order_acquire)) {
    std::this_thread::yield();
  }
  while (!stop.load(std::memory_order_relaxed)) {
    const uint64_t ticket = tickets.fetch_add(1, std::memory_order_relaxed);
    if (ticket >= events_max) {
      break;
    }
    log::DraftBuilder builder;
    std::vector<log::Draft> drafts;
    drafts.push_back(BuildEvent(builder, ticket, message));
    const Clock::time_point start = Clock::now();
    const Result<log::AppendResult> appended = log.Append(std::move(drafts));
    latencies_ms.push_back(SecondsSince(start) * 1e3);
    if (!appended.ok()) {
      Die("Log::Append: " + appended.status().ToString());
    }
  }
}

// Runs producers threads against a fresh log for one slice and adds the round to figures.
void RunLogAppend(const std::string& dir, int producers, const Slice& slice,
                  const std::optional<std::string>& message, AppendFigures& figures) {
  std::unique_ptr<log::Log> log = OpenLog(dir);
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> tickets{0};
  std::vector<std::vector<double>> latencies(producers);
  std::vector<std::thread> threads;
  for (int i = 0; i < producers; i++) {
    latencies[i].reserve(1024);
    threads.emplace_back(ProduceUntilStopped, std::ref(*log), std::cref(message), std::ref(go),
                         std::ref(stop), std::ref(tickets), slice.events_max,
                         std::ref(latencies[i]));
  }
  const Clock::time_point start = Clock::now();
  go.store(true, std::memory_order_release);
  while (SecondsSince(start) < slice.seconds &&
         tickets.load(std::memory_order_relaxed) < slice.events_max) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop.store(true);
  for (std::thread& thread : threads) {
    thread.join();
  }
  const double seconds = SecondsSince(start);
  uint64_t events = 0;
  for (const std::vector<double>& one : latencies) {
    events += one.size();
    figures.latencies_ms.insert(figures.latencies_ms.end(), one.begin(), one.end());
  }
  if (log->head().seq != events) {
    Die("log head " + std::to_string(log->head().seq) + " != events appended " +
        std::to_string(events));
  }
  figures.AddRound(events, seconds);
}

// One thread calls AppendAsync with one draft per call and waits for nothing until the slice
// ends: the writer's own cost (link, put, commit) without waking one blocked producer per event.
void RunLogAppendAsync(const std::string& dir, const Slice& slice,
                       const std::optional<std::string>& message, AppendFigures& figures) {
  std::unique_ptr<log::Log> log = OpenLog(dir);
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> failed{0};
  uint64_t issued = 0;
  const Clock::time_point start = Clock::now();
  while (issued < slice.events_max && (issued % 64 != 0 || SecondsSince(start) < slice.seconds)) {
    log::DraftBuilder builder;
    std::vector<log::Draft> drafts;
    drafts.push_back(BuildEvent(builder, issued, message));
    log->AppendAsync(std::move(drafts), [&](Result<log::AppendResult> result) {
      failed.fetch_add(result.ok() ? 0 : 1, std::memory_order_relaxed);
      completed.fetch_add(1, std::memory_order_release);
    });
    issued++;
  }
  while (completed.load(std::memory_order_acquire) < issued) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  const double seconds = SecondsSince(start);
  if (failed.load() != 0 || log->head().seq != issued) {
    Die("AppendAsync: " + std::to_string(failed.load()) + " failed appends; head " +
        std::to_string(log->head().seq) + " of " + std::to_string(issued));
  }
  figures.AddRound(issued, seconds);
}

// ---- Raw LMDB peers -----------------------------------------------------------------------------

// An LMDB environment with default flags (full sync) and one database, closed on destruction.
class RawEnv {
 public:
  RawEnv(const std::string& dir, unsigned int flags, const char* database_name) {
    std::filesystem::create_directories(dir);
    CheckMdb(mdb_env_create(&env_), "mdb_env_create");
    CheckMdb(mdb_env_set_maxdbs(env_, 8), "mdb_env_set_maxdbs");
    if ((flags & MDB_RDONLY) == 0) {
      CheckMdb(mdb_env_set_mapsize(env_, kRawMapBytes), "mdb_env_set_mapsize");
    }
    CheckMdb(mdb_env_open(env_, dir.c_str(), flags, 0644), "mdb_env_open");
    MDB_txn* txn = nullptr;
    CheckMdb(mdb_txn_begin(env_, nullptr, flags & MDB_RDONLY, &txn), "mdb_txn_begin");
    const unsigned int create = (flags & MDB_RDONLY) ? 0 : MDB_CREATE;
    CheckMdb(mdb_dbi_open(txn, database_name, create, &dbi_), "mdb_dbi_open");
    CheckMdb(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  ~RawEnv() { mdb_env_close(env_); }
  RawEnv(const RawEnv&) = delete;
  RawEnv& operator=(const RawEnv&) = delete;

  MDB_env* env() const { return env_; }
  MDB_dbi dbi() const { return dbi_; }

 private:
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

void StoreBigEndian(uint64_t value, uint8_t* out) {
  for (int i = 7; i >= 0; i--) {
    out[i] = static_cast<uint8_t>(value);
    value >>= 8;
  }
}

uint64_t LoadBigEndian(const uint8_t* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; i++) {
    value = (value << 8) | in[i];
  }
  return value;
}

// Appends value_bytes-byte values under keys 1, 2, ... in transactions of events_per_txn puts
// to a fresh environment for one slice, and adds the round to figures.
void RunRawAppend(const std::string& dir, size_t events_per_txn, size_t value_bytes,
                  const Slice& slice, AppendFigures& figures) {
  RawEnv raw(dir, /*flags=*/0, /*database_name=*/nullptr);
  std::vector<uint8_t> value(value_bytes, 'v');
  uint8_t key_bytes[8];
  uint64_t seq = 0;
  const Clock::time_point start = Clock::now();
  while (SecondsSince(start) < slice.seconds && seq < slice.events_max) {
    MDB_txn* txn = nullptr;
    CheckMdb(mdb_txn_begin(raw.env(), nullptr, 0, &txn), "mdb_txn_begin");
    for (size_t i = 0; i < events_per_txn; i++) {
      seq++;
      StoreBigEndian(seq, key_bytes);
      std::memcpy(value.data(), key_bytes, sizeof(key_bytes));  // Distinct contents per value.
      MDB_val key{sizeof(key_bytes), key_bytes};
      MDB_val data{value.size(), value.data()};
      CheckMdb(mdb_put(txn, raw.dbi(), &key, &data, MDB_APPEND), "mdb_put");
    }
    CheckMdb(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  figures.AddRound(seq, SecondsSince(start));
}

// ---- Scans --------------------------------------------------------------------------------------

struct ScanFigures {
  uint64_t events = 0;
  double best_seconds = 0;
  double events_per_second = 0;
};

// Runs scan kScanRounds times; keeps the fastest (the others were disturbed by neighbours).
ScanFigures BestOf(const std::function<uint64_t()>& scan) {
  ScanFigures figures;
  for (int round = 0; round < kScanRounds; round++) {
    const Clock::time_point start = Clock::now();
    const uint64_t events = scan();
    const double seconds = SecondsSince(start);
    if (round == 0 || seconds < figures.best_seconds) {
      figures.best_seconds = seconds;
    }
    figures.events = events;
  }
  figures.events_per_second = static_cast<double>(figures.events) / figures.best_seconds;
  return figures;
}

// Fills a fresh log with events appended in calls of kAppendEventsMax drafts.
void FillLog(log::Log& log, uint64_t events, const std::optional<std::string>& message) {
  const Clock::time_point start = Clock::now();
  uint64_t built = 0;
  log::DraftBuilder builder;
  while (built < events) {
    const uint64_t batch = std::min<uint64_t>(log::kAppendEventsMax, events - built);
    std::vector<log::Draft> drafts;
    drafts.reserve(batch);
    for (uint64_t i = 0; i < batch; i++) {
      drafts.push_back(BuildEvent(builder, ++built, message));
    }
    const Result<log::AppendResult> appended = log.Append(std::move(drafts));
    if (!appended.ok()) {
      Die("Log::Append (fill): " + appended.status().ToString());
    }
  }
  const double seconds = SecondsSince(start);
  std::printf("fill log: %" PRIu64 " events in %.2f s (%.0f events/s, %zu drafts per Append)\n",
              events, seconds, static_cast<double>(events) / seconds, log::kAppendEventsMax);
}

uint64_t ScanLog(const log::Log& log, uint64_t& checksum) {
  uint64_t events = 0;
  const Status status = log.Scan(0, UINT64_MAX, [&](const log::EventView& view) {
    checksum += view.bytes[view.bytes.size() - 1] + view.event->seq();
    events++;
    return true;
  });
  if (!status.ok()) {
    Die("Log::Scan: " + status.ToString());
  }
  return events;
}

uint64_t VerifyLog(const log::Log& log) {
  const Result<log::Head> head = log.VerifyAll();
  if (!head.ok()) {
    Die("Log::VerifyAll: " + head.status().ToString());
  }
  return head.value().seq;
}

// Walks every value of one database in key order, touching one byte of each value.
uint64_t ScanRaw(const RawEnv& raw, uint64_t& checksum) {
  MDB_txn* txn = nullptr;
  CheckMdb(mdb_txn_begin(raw.env(), nullptr, MDB_RDONLY, &txn), "mdb_txn_begin");
  MDB_cursor* cursor = nullptr;
  CheckMdb(mdb_cursor_open(txn, raw.dbi(), &cursor), "mdb_cursor_open");
  MDB_val key;
  MDB_val data;
  uint64_t events = 0;
  int rc = mdb_cursor_get(cursor, &key, &data, MDB_FIRST);
  while (rc == MDB_SUCCESS) {
    const auto* bytes = static_cast<const uint8_t*>(data.mv_data);
    checksum += bytes[data.mv_size - 1] + LoadBigEndian(static_cast<const uint8_t*>(key.mv_data));
    events++;
    rc = mdb_cursor_get(cursor, &key, &data, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) {
    CheckMdb(rc, "mdb_cursor_get");
  }
  mdb_cursor_close(cursor);
  mdb_txn_abort(txn);
  return events;
}

// ---- Single-thread components (for the analysis, not targets) -----------------------------------

// Calls step until seconds have passed; returns calls per second.
double RatePerSecond(double seconds, const std::function<void()>& step) {
  uint64_t calls = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < 256; i++) {
      step();
    }
    calls += 256;
    elapsed = SecondsSince(start);
  }
  return static_cast<double>(calls) / elapsed;
}

// The hand-off alone: producers threads each queue one request and block on a std::promise (as
// Log::Append does) until one dispatcher thread, which takes every waiting request at once,
// fulfils it. No encoding, no LMDB, no fsync: the most that any writer can acknowledge per second
// on this machine when each of producers threads blocks once per event.
double HandOffRate(int producers, double seconds) {
  std::mutex mu;
  std::condition_variable nonempty;
  std::vector<std::promise<void>*> queue;  // Guarded by mu.
  std::atomic<bool> stop{false};
  std::atomic<int> alive{producers};
  std::atomic<uint64_t> served{0};
  std::thread dispatcher([&] {
    std::vector<std::promise<void>*> batch;
    while (alive.load() > 0) {
      {
        std::unique_lock lock(mu);
        nonempty.wait_for(lock, std::chrono::milliseconds(1), [&] { return !queue.empty(); });
        batch.swap(queue);
      }
      for (std::promise<void>* promise : batch) {
        promise->set_value();
      }
      served.fetch_add(batch.size());
      batch.clear();
    }
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < producers; i++) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        std::promise<void> promise;
        std::future<void> future = promise.get_future();
        {
          std::lock_guard lock(mu);
          queue.push_back(&promise);
        }
        nonempty.notify_one();
        future.wait();
      }
      alive.fetch_sub(1);
    });
  }
  const Clock::time_point start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const uint64_t events = served.load();
  const double elapsed = SecondsSince(start);
  stop.store(true);
  for (std::thread& thread : threads) {
    thread.join();
  }
  dispatcher.join();
  return static_cast<double>(events) / elapsed;
}

void PrintComponents(const Flags& flags, const std::optional<std::string>& message) {
  log::DraftBuilder builder;
  const log::Draft draft = BuildEvent(builder, 7, message);
  uint64_t n = 0;
  const double build = RatePerSecond(flags.component_seconds, [&] {
    log::DraftBuilder one;
    const log::Draft built = BuildEvent(one, n++, message);
    n += built.bytes().size() & 1;
  });
  log::ChainHasher hasher;
  log::Hash link{};
  const double hash =
      RatePerSecond(flags.component_seconds, [&] { link = hasher.Next(link, draft.bytes()); });
  const double verify = RatePerSecond(flags.component_seconds,
                                      [&] { n += log::VerifyEvent(draft.bytes()) != nullptr; });
  std::printf("component DraftBuilder+BuildEvent: %.0f events/s (1 thread)\n", build);
  std::printf("component ChainHasher::Next (%zu bytes): %.0f events/s (1 thread)\n",
              draft.bytes().size(), hash);
  std::printf("component VerifyEvent: %.0f events/s (1 thread)\n", verify);
  std::printf("component hash+verify ceiling for a verified scan: %.0f events/s (link %02x)\n",
              1.0 / (1.0 / hash + 1.0 / verify), link[0] ^ static_cast<uint8_t>(n));
}

// ---- Report -------------------------------------------------------------------------------------

std::string Verdict(double ratio, double target) {
  char text[64];
  if (ratio >= target) {
    std::snprintf(text, sizeof(text), "met");
  } else {
    std::snprintf(text, sizeof(text), "MISSED by %.0f%%", 100.0 * (target - ratio) / target);
  }
  return text;
}

// One line for the round just run.
void PrintRound(const std::string& name, const AppendFigures& figures, int round, int rounds) {
  std::printf("append %s [round %d/%d]: %.0f events/s\n", name.c_str(), round + 1, rounds,
              figures.round_rates.back());
  std::fflush(stdout);
}

double Median(std::vector<double> values) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// Per-round ratios of a to b and their median: rounds ran side by side, so these pair
// measurements that saw the shared disk in about the same state.
std::string RoundRatios(const AppendFigures& a, const AppendFigures& b) {
  std::string text = "per-round";
  std::vector<double> ratios;
  for (size_t i = 0; i < a.round_rates.size() && i < b.round_rates.size(); i++) {
    ratios.push_back(a.round_rates[i] / b.round_rates[i]);
    char one[32];
    std::snprintf(one, sizeof(one), " %.2f", ratios.back());
    text += one;
  }
  char median[32];
  std::snprintf(median, sizeof(median), ", median %.2f", Median(ratios));
  return text + median;
}

void PrintAppend(const std::string& name, const AppendFigures& figures) {
  std::printf("append %s: %.0f events/s  (%" PRIu64 " events in %.2f s", name.c_str(),
              figures.EventsPerSecond(), figures.events, figures.seconds);
  if (!figures.latencies_ms.empty()) {
    std::printf(", Append latency p50 %.2f ms p99 %.2f ms", Percentile(figures.latencies_ms, 0.5),
                Percentile(figures.latencies_ms, 0.99));
  }
  std::printf(")\n");
}

// raw[i] puts kProducerCounts[i] values per transaction: the most a log commit holding one event
// from each of that many producers could do. raw[0] is the raw 1-per-txn peer.
struct Results {
  AppendFigures raw[std::size(kProducerCounts)];
  AppendFigures raw_batched;
  AppendFigures log[std::size(kProducerCounts)];
  AppendFigures log_async;
  double hand_off = 0;  // HandOffRate(256 producers); 0 when not measured.
  ScanFigures scan_log;
  ScanFigures verify_log;
  ScanFigures scan_raw;
};

void PrintTarget(const char* name, const AppendFigures& figures, const char* peer_name,
                 const AppendFigures& peer, double target) {
  const double ratio = figures.EventsPerSecond() / peer.EventsPerSecond();
  std::printf("%s: %.0f events/s  ratio vs %s %.2f (target >= %.2f) %s  [%s]\n", name,
              figures.EventsPerSecond(), peer_name, ratio, target, Verdict(ratio, target).c_str(),
              RoundRatios(figures, peer).c_str());
}

void PrintAppendSummary(const Results& r) {
  std::printf("\n# summary (events/s over all rounds; ratios of events/s)\n");
  PrintAppend("raw batched (1000/txn)", r.raw_batched);
  for (size_t i = 0; i < std::size(kProducerCounts); i++) {
    const std::string txn = std::to_string(kProducerCounts[i]);
    PrintAppend(i == 0 ? "raw 1-per-txn" : "raw " + txn + "/txn", r.raw[i]);
  }
  for (size_t i = 0; i < std::size(kProducerCounts); i++) {
    PrintAppend("log producers=" + std::to_string(kProducerCounts[i]), r.log[i]);
  }
  PrintAppend("log async (1 thread, AppendAsync of 1 draft, no waiting)", r.log_async);
  std::printf("\n");
  PrintTarget("append log producers=1", r.log[0], "raw 1-per-txn", r.raw[0],
              kTargetLog1VsRawSingle);
  const double log16 = r.log[1].EventsPerSecond();
  std::printf(
      "append log producers=16: %.0f events/s  ratio vs raw batched %.2f, vs raw 1-per-txn %.2f, "
      "vs raw 16/txn %.2f (information)\n",
      log16, log16 / r.raw_batched.EventsPerSecond(), log16 / r.raw[0].EventsPerSecond(),
      log16 / r.raw[1].EventsPerSecond());
  PrintTarget("append log producers=256", r.log[2], "raw batched", r.raw_batched,
              kTargetLog256VsRawBatched);
  std::printf(
      "  information: log producers=256 vs raw 256/txn %.2f [%s] (one event per producer caps a "
      "commit at 256 events)\n",
      r.log[2].EventsPerSecond() / r.raw[2].EventsPerSecond(),
      RoundRatios(r.log[2], r.raw[2]).c_str());
  std::printf(
      "  information: hand-off ceiling (%d blocked producers, no I/O) vs raw batched %.2f; log "
      "producers=256 reaches %.2f of it\n",
      kProducerCounts[2], r.hand_off / r.raw_batched.EventsPerSecond(),
      r.log[2].EventsPerSecond() / r.hand_off);
  std::printf(
      "  information: log async vs raw batched %.2f [%s] (the writer alone: no producer "
      "wake-ups)\n",
      r.log_async.EventsPerSecond() / r.raw_batched.EventsPerSecond(),
      RoundRatios(r.log_async, r.raw_batched).c_str());
}

void PrintScanSummary(const Results& r) {
  const double ratio = r.scan_log.events_per_second / r.scan_raw.events_per_second;
  std::printf("scan raw cursor: %.0f events/s\n", r.scan_raw.events_per_second);
  std::printf(
      "scan log (Scan, verified): %.0f events/s  ratio vs raw cursor %.2f (target >= %.2f) "
      "%s\n",
      r.scan_log.events_per_second, ratio, kTargetScanVsRawCursor,
      Verdict(ratio, kTargetScanVsRawCursor).c_str());
  std::printf("verify log (VerifyAll): %.0f events/s  ratio vs raw cursor %.2f (information)\n",
              r.verify_log.events_per_second,
              r.verify_log.events_per_second / r.scan_raw.events_per_second);
}

// ---- Main ---------------------------------------------------------------------------------------

std::string MakeScratch(const std::string& parent) {
  std::string pattern = parent + "/cloister-log-bench-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    Die("mkdtemp(" + pattern + "): " + std::strerror(errno));
  }
  return pattern;
}

void RunRawStep(const std::string& round_dir, size_t events_per_txn, const Flags& flags,
                const Slice& slice, int round, AppendFigures& figures) {
  const std::string txn = std::to_string(events_per_txn);
  if (!Selected(flags, "raw" + txn)) {
    return;
  }
  RunRawAppend(round_dir + "/raw_" + txn, events_per_txn, kEventBytesTarget, slice, figures);
  PrintRound(events_per_txn == 1 ? "raw 1-per-txn" : "raw " + txn + "/txn", figures, round,
             flags.rounds);
}

void RunLogStep(const std::string& round_dir, size_t index, const Flags& flags, const Slice& slice,
                int round, const EventShape& shape, AppendFigures& figures) {
  const std::string producers = std::to_string(kProducerCounts[index]);
  if (!Selected(flags, "log" + producers)) {
    return;
  }
  RunLogAppend(round_dir + "/log_p" + producers, kProducerCounts[index], slice, shape.message,
               figures);
  PrintRound("log producers=" + producers, figures, round, flags.rounds);
}

// Rounds alternate every configuration, and each log configuration runs right after the raw peer
// its target compares it with, so that pairs see the shared disk in about the same state.
void RunAppends(const std::string& scratch, const Flags& flags, const EventShape& shape,
                Results& results) {
  static_assert(std::size(kProducerCounts) == 3);
  const Slice slice{flags.seconds / flags.rounds, flags.config_events_max / flags.rounds};
  for (int round = 0; round < flags.rounds; round++) {
    const std::string dir = scratch + "/round" + std::to_string(round);
    std::filesystem::create_directories(dir);
    RunRawStep(dir, 1, flags, slice, round, results.raw[0]);
    RunLogStep(dir, 0, flags, slice, round, shape, results.log[0]);
    RunRawStep(dir, kRawBatchEvents, flags, slice, round, results.raw_batched);
    RunLogStep(dir, 2, flags, slice, round, shape, results.log[2]);
    if (Selected(flags, "logasync")) {
      RunLogAppendAsync(dir + "/log_async", slice, shape.message, results.log_async);
      PrintRound("log async", results.log_async, round, flags.rounds);
    }
    RunRawStep(dir, kProducerCounts[2], flags, slice, round, results.raw[2]);
    RunLogStep(dir, 1, flags, slice, round, shape, results.log[1]);
    RunRawStep(dir, kProducerCounts[1], flags, slice, round, results.raw[1]);
  }
}

void RunScans(const std::string& scratch, const Flags& flags, const EventShape& shape,
              Results& results) {
  const std::string dir = scratch + "/log_scan";
  uint64_t checksum = 0;
  {
    std::unique_ptr<log::Log> log = OpenLog(dir);
    FillLog(*log, flags.scan_events, shape.message);
    results.scan_log = BestOf([&] { return ScanLog(*log, checksum); });
    results.verify_log = BestOf([&] { return VerifyLog(*log); });
  }
  {
    // The same stored events, read with a bare cursor. LMDB allows one open of an environment
    // per process, so the log is closed first.
    RawEnv raw(dir, MDB_RDONLY, "events");
    results.scan_raw = BestOf([&] { return ScanRaw(raw, checksum); });
  }
  if (results.scan_raw.events != flags.scan_events ||
      results.scan_log.events != flags.scan_events ||
      results.verify_log.events != flags.scan_events) {
    Die("scans saw different event counts");
  }
  std::printf("scan log (Scan, verified): %.0f events/s (best of %d, %.3f s)\n",
              results.scan_log.events_per_second, kScanRounds, results.scan_log.best_seconds);
  std::printf("verify log (VerifyAll): %.0f events/s (best of %d, %.3f s)\n",
              results.verify_log.events_per_second, kScanRounds, results.verify_log.best_seconds);
  std::printf("scan raw cursor: %.0f events/s (best of %d, %.3f s, checksum %" PRIu64 ")\n",
              results.scan_raw.events_per_second, kScanRounds, results.scan_raw.best_seconds,
              checksum);
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  const Clock::time_point start = Clock::now();
  const std::string scratch = MakeScratch(flags.dir);
  PrintHeader(argc, argv, flags, scratch);
  const EventShape shape = ChooseEventShape();
  const std::string message =
      shape.message ? std::to_string(shape.message->size()) + " bytes" : "absent";
  std::printf(
      "event: VmInstanceStateChanged, encoded event %zu bytes (message %s); raw values %zu "
      "bytes; keys 8 bytes big-endian\n\n",
      shape.event_bytes, message.c_str(), kEventBytesTarget);
  std::fflush(stdout);

  Results results;
  RunAppends(scratch, flags, shape, results);
  if (Selected(flags, "scan")) {
    RunScans(scratch, flags, shape, results);
  }
  if (Selected(flags, "components")) {
    PrintComponents(flags, shape.message);
    results.hand_off = HandOffRate(kProducerCounts[2], 4 * flags.component_seconds);
    std::printf(
        "component hand-off, %d producers blocked on std::promise -> 1 thread, no I/O: "
        "%.0f events/s\n",
        kProducerCounts[2], results.hand_off);
  }
  if (flags.only.empty()) {
    PrintAppendSummary(results);
    PrintScanSummary(results);
  }
  std::printf("total time: %.1f s\n", SecondsSince(start));
  if (!flags.keep) {
    std::filesystem::remove_all(scratch);
  } else {
    std::printf("kept: %s\n", scratch.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace cloister::bench

int main(int argc, char** argv) { return cloister::bench::Main(argc, argv); }
