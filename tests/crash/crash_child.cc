// crash_child: appends to a writer Log from several threads until it is killed.
//
//   crash_child --data DIR [--threads 8] [--round R]
//
// Each thread appends batches of 1 to 4 events built with DraftBuilder. After every acknowledged
// Append it writes one line to stdout with a single write(2), so that a line on the pipe means
// the log acknowledged the batch before the process died:
//
//   <seq_first> <seq_last> <tag>
//
// The events of that batch carry request ids "<tag>.<i>/<n>" (i = 0..n-1, n = batch size), so
// crash_test can check that each acknowledged seq holds exactly the event that was acknowledged,
// and that every batch in the log, acknowledged or not, is complete (atomic).
//
// The tag is "r<round>.t<thread>.<n>". Exit codes: 2 an Append failed, 3 Open failed, 64 usage.
// A fatal log error exits with log::kExitFatalIo (75) through the log's default handler.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "log/draft.h"
#include "log/events_generated.h"
#include "log/log.h"
#include "log/status.h"

namespace cloister {
namespace {

constexpr int kExitAppendFailed = 2;
constexpr int kExitOpenFailed = 3;
constexpr int kExitUsage = 64;
constexpr int kBatchEventsMax = 4;

struct Args {
  std::string dir;
  int threads = 8;
  long round = 0;
};

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// A small, deterministic mixing function so batch sizes and payloads vary without an RNG.
uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// One event shaped like what the engine writes: a VM state change, a node heartbeat or a VM
// request, with ids and text of realistic length.
log::Draft BuildEvent(uint64_t mix, const std::string& request_id) {
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  char instance_id[40];
  std::snprintf(instance_id, sizeof(instance_id), "%08llx-7c1e-4b2a-9f0d-%012llx",
                static_cast<unsigned long long>(mix & 0xffffffff),
                static_cast<unsigned long long>((mix >> 16) & 0xffffffffffff));
  char node_id[40];
  std::snprintf(node_id, sizeof(node_id), "node-%02llu.build-farm.example",
                static_cast<unsigned long long>(mix % 32));
  const std::string groups_storage[] = {"ci-runners", "macos-14"};
  log::Envelope envelope;
  envelope.time_ns = NowNs();
  envelope.actor_kind = fb::ActorKind::ApiKey;
  envelope.actor_id = "uak-crash-child";
  envelope.actor_groups = std::span<const std::string>(groups_storage, 2);
  envelope.request_id = request_id;

  switch (mix % 3) {
    case 0: {
      auto state = static_cast<fb::VmState>(mix % 9);
      auto payload = fb::CreateVmInstanceStateChangedDirect(
          fbb, instance_id, state, "state reported by node agent",
          static_cast<float>(mix % 101) / 100.0f, node_id, instance_id, "10.20.30.40",
          static_cast<uint16_t>(5900 + mix % 100));
      return builder.Finish(envelope, payload);
    }
    case 1: {
      auto payload = fb::CreateNodeUpdatedDirect(fbb, node_id, "mac-mini-m2", fb::NodeState::Active,
                                                 static_cast<uint32_t>(mix % 3), 2, "number",
                                                 nullptr, "heartbeat");
      return builder.Finish(envelope, payload);
    }
    default: {
      auto payload = fb::CreateVmInstanceRequestedDirect(
          fbb, instance_id, "c0847bc9-5d2d-4dbc-ba6a-240f7ff08032", "v1.4.2", -1, "build-vm",
          nullptr, nullptr, nullptr, nullptr, 1000, "IyEvYmluL3NoCmVjaG8gaGVsbG8K");
      return builder.Finish(envelope, payload);
    }
  }
}

// Appends forever; returns only by exiting the process.
void AppendLoop(log::Log* log, long round, int thread) {
  for (uint64_t n = 0;; n++) {
    uint64_t mix = Mix((uint64_t(thread) << 40) ^ n ^ (uint64_t(round) << 52));
    int batch_events = 1 + static_cast<int>(mix % kBatchEventsMax);
    char tag[64];
    std::snprintf(tag, sizeof(tag), "r%ld.t%d.%llu", round, thread,
                  static_cast<unsigned long long>(n));
    std::vector<log::Draft> drafts;
    for (int i = 0; i < batch_events; i++) {
      std::string request_id =
          std::string(tag) + "." + std::to_string(i) + "/" + std::to_string(batch_events);
      drafts.push_back(BuildEvent(Mix(mix + i), request_id));
    }
    Result<log::AppendResult> result = log->Append(std::move(drafts));
    if (!result.ok()) {
      std::fprintf(stderr, "crash_child: append %s failed: %s\n", tag,
                   result.status().ToString().c_str());
      std::fflush(stderr);
      _exit(kExitAppendFailed);
    }
    char line[128];
    int len = std::snprintf(line, sizeof(line), "%llu %llu %s\n",
                            static_cast<unsigned long long>(result->seq_first),
                            static_cast<unsigned long long>(result->seq_last), tag);
    // One write per acknowledgement: a line shorter than PIPE_BUF is written whole or not at all.
    if (write(STDOUT_FILENO, line, static_cast<size_t>(len)) != len) {
      _exit(kExitAppendFailed);
    }
  }
}

bool ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--data") {
      args->dir = value;
    } else if (flag == "--threads") {
      args->threads = std::atoi(value);
    } else if (flag == "--round") {
      args->round = std::atol(value);
    } else {
      return false;
    }
  }
  return argc % 2 == 1 && !args->dir.empty() && args->threads > 0 && args->threads <= 64;
}

int Main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    std::fprintf(stderr, "usage: crash_child --data DIR [--threads N] [--round R]\n");
    return kExitUsage;
  }
  log::Options options;
  options.dir = args.dir;
  Result<std::unique_ptr<log::Log>> opened = log::Log::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "crash_child: open %s: %s\n", args.dir.c_str(),
                 opened.status().ToString().c_str());
    return kExitOpenFailed;
  }
  std::unique_ptr<log::Log> log = std::move(opened).value();
  std::vector<std::thread> threads;
  for (int t = 0; t < args.threads; t++) {
    threads.emplace_back(AppendLoop, log.get(), args.round, t);
  }
  for (std::thread& thread : threads) {
    thread.join();  // Never returns: the threads append until the process is killed.
  }
  return 0;
}

}  // namespace
}  // namespace cloister

int main(int argc, char** argv) { return cloister::Main(argc, argv); }
