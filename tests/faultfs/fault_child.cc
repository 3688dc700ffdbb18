// fault_child: appends to a writer Log one batch at a time and reports each result, for
// fault_test to run under libfaultfs.so.
//
//   fault_child --data DIR --appends N [--events E]
//
// It opens the log, arms the fault shim (if loaded: faultfs_arm, so LMDB's calls while opening
// are not counted), then makes N sequential Appends of E events each (default 1). Append i
// (1-based) carries request ids "a<i>.<j>" for j = 0..E-1. After each Append it writes one line
// to stdout with a single write(2):
//
//   ack <i> <seq_first> <seq_last>
//   fail <i> <code>          code: kNoSpace, kClosed, kIoError, ... (the StatusCode enumerator)
//
// A kClosed failure means the writer stopped after a fatal error; the child stops appending and
// destroys the Log, which waits for the writer thread, whose fatal handler exits the process with
// log::kExitFatalIo (75). Exit codes: 0 all N appends were attempted, 3 Open failed, 64 usage.
#include <dlfcn.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "log/draft.h"
#include "log/events_generated.h"
#include "log/log.h"
#include "log/status.h"

namespace cloister {
namespace {

constexpr int kExitOpenFailed = 3;
constexpr int kExitUsage = 64;

const char* CodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "kOk";
    case StatusCode::kInvalidArgument: return "kInvalidArgument";
    case StatusCode::kNotFound: return "kNotFound";
    case StatusCode::kCorruption: return "kCorruption";
    case StatusCode::kFormatMismatch: return "kFormatMismatch";
    case StatusCode::kIoError: return "kIoError";
    case StatusCode::kNoSpace: return "kNoSpace";
    case StatusCode::kBusy: return "kBusy";
    case StatusCode::kUnsupported: return "kUnsupported";
    case StatusCode::kClosed: return "kClosed";
  }
  return "kUnknown";
}

void WriteLine(const std::string& line) {
  // One write per line, unbuffered: what the parent reads is exactly what happened before exit.
  if (write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    _exit(1);
  }
}

log::Draft BuildEvent(int append, int index) {
  log::DraftBuilder builder;
  std::string instance_id = "5f1c0a7e-0000-4000-8000-" + std::to_string(100000000000 + append);
  auto payload = fb::CreateVmInstanceStateChangedDirect(
      builder.fbb(), instance_id.c_str(), fb::VmState::Started, "started by node agent", 1.0f,
      "node-07", instance_id.c_str(), "10.0.7.21", 5901);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  std::string request_id = "a" + std::to_string(append) + "." + std::to_string(index);
  log::Envelope envelope;
  envelope.time_ns = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  envelope.actor_kind = fb::ActorKind::Node;
  envelope.actor_id = "node-07";
  envelope.request_id = request_id;
  return builder.Finish(envelope, payload);
}

void ArmFaultShim() {
  using ArmFn = void (*)();
  auto arm = reinterpret_cast<ArmFn>(dlsym(RTLD_DEFAULT, "faultfs_arm"));
  if (arm != nullptr) {
    arm();
  }
}

int Main(int argc, char** argv) {
  std::string dir;
  int appends = -1;
  int events = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--data") {
      dir = argv[i + 1];
    } else if (flag == "--appends") {
      appends = std::atoi(argv[i + 1]);
    } else if (flag == "--events") {
      events = std::atoi(argv[i + 1]);
    } else {
      appends = -1;
      break;
    }
  }
  if (argc % 2 == 0 || dir.empty() || appends < 0 || events < 1) {
    std::fprintf(stderr, "usage: fault_child --data DIR --appends N [--events E]\n");
    return kExitUsage;
  }
  log::Options options;
  options.dir = dir;
  Result<std::unique_ptr<log::Log>> opened = log::Log::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "fault_child: open %s: %s\n", dir.c_str(),
                 opened.status().ToString().c_str());
    return kExitOpenFailed;
  }
  std::unique_ptr<log::Log> log = std::move(opened).value();
  ArmFaultShim();
  for (int i = 1; i <= appends; i++) {
    std::vector<log::Draft> drafts;
    for (int j = 0; j < events; j++) {
      drafts.push_back(BuildEvent(i, j));
    }
    Result<log::AppendResult> result = log->Append(std::move(drafts));
    if (result.ok()) {
      WriteLine("ack " + std::to_string(i) + " " + std::to_string(result->seq_first) + " " +
                std::to_string(result->seq_last) + "\n");
      continue;
    }
    WriteLine("fail " + std::to_string(i) + " " + CodeName(result.status().code()) + "\n");
    std::fprintf(stderr, "fault_child: append %d: %s\n", i, result.status().ToString().c_str());
    if (result.status().code() == StatusCode::kClosed) {
      break;
    }
  }
  log.reset();  // Joins the writer; after a fatal error its handler exits the process first.
  return 0;
}

}  // namespace
}  // namespace cloister

int main(int argc, char** argv) { return cloister::Main(argc, argv); }
