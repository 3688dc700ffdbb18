// Agent crash convergence: SIGKILL the agent at random moments while it applies a command stream,
// restart it each time, and prove that it converges without doing anything twice.
//
// Method: each round starts with an empty directory and runs reconciler_crash_child (a sim
// driver whose mutating calls sleep a random 0..kJitterUs before and after taking effect, an
// agent store, a reconciler, node/crash_stream.h's 48 commands for 20 instances). The child is
// killed after a uniform random 0..kKillAfterMsMax ms, restarted, killed again, up to
// kKillsPerRoundMax times, then left to finish. The round then checks, from the sim's persisted
// state and counters and from the agent store:
//  * every VM is where a crash-free run leaves it (running, stopped, suspended or gone);
//  * each VM was cloned exactly once, and started, stopped, suspended and deleted exactly as
//    often as the stream needs (crash_stream.h's Expected): no call was ever repeated;
//  * every instance record is settled (no intent, its last command's outcome reported);
//  * the reports are dense seqs 1..N (none lost, none made twice) and each instance's reports
//    are exactly the crash-free sequence.
// The child prints the intents its killed predecessor left and how many of them had already
// taken effect in the driver ("done-unrecorded"): the totals show that the kills do land in the
// windows between a driver call and the store write that records it.
//
// Rounds: 30; CLOISTER_LONG=1 runs 1000. The seed is printed first; CLOISTER_SEED=<seed>
// replays the same kill schedule and jitter (timing is the OS's, so a replay is close, not exact).
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "log/status.h"
#include "node/agent_store.h"
#include "node/crash_stream.h"
#include "node/driver.h"
#include "node/reconciler.h"
#include "node/sim_driver.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRoundsDefault = 30;
constexpr int kRoundsLong = 1000;
constexpr int kKillsPerRoundMax = 12;
constexpr int kKillAfterMsMax = 150;
constexpr int kJitterUs = 3000;
constexpr auto kFinishTimeout = std::chrono::seconds(60);

struct Totals {
  int rounds = 0;
  int kills = 0;
  std::map<std::string, uint64_t> pending;  // Summed over the children's "pending" lines.
  double run_s = 0;
};

uint64_t SeedFromEnv() {
  const char* env = std::getenv("CLOISTER_SEED");
  if (env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 10);
  }
  return std::random_device{}();
}

int RoundsFromEnv() {
  const char* env = std::getenv("CLOISTER_LONG");
  return env != nullptr && std::string(env) == "1" ? kRoundsLong : kRoundsDefault;
}

// Adds the child's "pending k=v ..." line (complete lines only) to the totals.
void CountPending(const std::string& out, Totals* totals) {
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (lines.eof() || line.rfind("pending ", 0) != 0) {
      continue;
    }
    std::istringstream fields(line.substr(8));
    std::string field;
    while (fields >> field) {
      const size_t eq = field.find('=');
      REQUIRE(eq != std::string::npos);
      totals->pending[field.substr(0, eq)] += std::stoull(field.substr(eq + 1));
    }
  }
}

// Runs the child on dir, killing it at random until it finishes the stream.
void RunRound(const std::string& dir, std::mt19937_64* rng, Totals* totals) {
  const std::string child_path = testing::RunfilePath("node/reconciler_crash_child");
  std::uniform_int_distribution<int> kill_after_ms(0, kKillAfterMsMax);
  for (int attempt = 0;; attempt++) {
    const std::vector<std::string> argv = {child_path, "--dir", dir, "--seed",
                                           std::to_string((*rng)()), "--jitter-us",
                                           std::to_string(kJitterUs)};
    testing::ChildProcess child(argv, {});
    if (attempt < kKillsPerRoundMax) {
      child.ReadUntil(Clock::now() + std::chrono::milliseconds(kill_after_ms(*rng)));
      if (child.Running()) {
        child.Kill(SIGKILL);
        const int status = child.Wait();
        CountPending(child.out(), totals);
        if (WIFSIGNALED(status)) {
          totals->kills++;
          continue;
        }
        // The kill came as the child was exiting (its pipes were closed, it was not reaped
        // yet): it must have finished the stream.
        INFO("child: " << testing::DescribeWaitStatus(status) << "\nstderr:\n" << child.err());
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        REQUIRE(child.out().find("done\n") != std::string::npos);
        return;
      }
    }
    child.ReadUntil(Clock::now() + kFinishTimeout);
    const int status = child.Wait();
    CountPending(child.out(), totals);
    INFO("child: " << testing::DescribeWaitStatus(status) << "\nstdout:\n"
                   << child.out() << "stderr:\n"
                   << child.err());
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    REQUIRE(child.out().find("done\n") != std::string::npos);
    return;
  }
}

// Checks the driver, the counters, the records and the reports against the crash-free outcome.
void Verify(const std::string& dir) {
  Result<std::unique_ptr<SimDriver>> sim = SimDriver::Open(dir + "/sim");
  REQUIRE(sim.ok());
  Result<std::unique_ptr<AgentStore>> store = AgentStore::Open(dir + "/agent");
  REQUIRE(store.ok());
  const std::vector<NodeCommand> stream = crash::Stream();
  CHECK((*store)->cursor() == stream.back().cursor);

  Result<std::vector<Report>> reports = (*store)->PendingReports(100'000);
  REQUIRE(reports.ok());
  std::map<std::string, std::vector<InstanceState>> by_instance;
  for (size_t i = 0; i < reports->size(); i++) {
    const Report& report = (*reports)[i];
    REQUIRE(report.seq == i + 1);  // Dense: nothing lost, nothing made twice.
    by_instance[report.instance_id].push_back(report.state);
    if (report.state == InstanceState::kStarted) {
      REQUIRE(report.vm.has_value());
      CHECK(report.vm->status == VmStatus::kRunning);
    }
  }
  CHECK((*store)->last_report_seq() == reports->size());

  for (int i = 0; i < crash::kInstances; i++) {
    const std::string id = crash::InstanceId(i);
    const std::string vm = Reconciler::VmNameFor(id);
    const crash::Expected expected = crash::ExpectedFor(i);
    INFO("instance " << id);
    Result<VmInfo> shown = (*sim)->Show(vm);
    CHECK(shown.ok() == expected.exists);
    if (shown.ok() && expected.exists) {
      CHECK(VmStatusName(shown->status) == std::string(VmStatusName(expected.status)));
    }
    CHECK((*sim)->Calls(SimOp::kClone, vm) == expected.clones);
    CHECK((*sim)->Calls(SimOp::kStart, vm) == expected.starts);
    CHECK((*sim)->Calls(SimOp::kStop, vm) == expected.stops);
    CHECK((*sim)->Calls(SimOp::kSuspend, vm) == expected.suspends);
    CHECK((*sim)->Calls(SimOp::kDelete, vm) == expected.deletes);

    Result<std::optional<InstanceRecord>> record = (*store)->Get(id);
    REQUIRE(record.ok());
    REQUIRE(record->has_value());
    const InstanceRecord& r = **record;
    CHECK(r.intent == Step::kNone);
    CHECK(r.settled_cursor == r.cursor);
    CHECK(InstanceStateName(r.state) == std::string(InstanceStateName(expected.state)));
    CHECK(r.message == "");

    std::vector<std::string> got;
    for (InstanceState state : by_instance[id]) {
      got.push_back(InstanceStateName(state));
    }
    std::vector<std::string> want;
    for (InstanceState state : expected.reports) {
      want.push_back(InstanceStateName(state));
    }
    CHECK(got == want);
  }
  CHECK((*sim)->Calls(SimOp::kClone) == crash::kInstances);
  CHECK((*sim)->Calls(SimOp::kRun) == 0);
}

TEST_CASE("the agent converges after SIGKILL at random moments, never calling twice") {
  const uint64_t seed = SeedFromEnv();
  const int rounds = RoundsFromEnv();
  std::printf("crash_convergence_test: seed=%llu rounds=%d (CLOISTER_SEED=%llu reproduces)\n",
              static_cast<unsigned long long>(seed), rounds,
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  Totals totals;
  const auto start = Clock::now();
  for (int round = 1; round <= rounds; round++) {
    INFO("round " << round << " seed " << seed);
    testing::TempDir dir;
    RunRound(dir.path(), &rng, &totals);
    Verify(dir.path());
    totals.rounds++;
  }
  totals.run_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "crash_convergence_test: rounds=%d kills=%d pending-at-restart: clone=%llu start=%llu "
      "stop=%llu suspend=%llu delete=%llu done-unrecorded=%llu; run_s=%.1f seed=%llu\n",
      totals.rounds, totals.kills, static_cast<unsigned long long>(totals.pending["clone"]),
      static_cast<unsigned long long>(totals.pending["start"]),
      static_cast<unsigned long long>(totals.pending["stop"]),
      static_cast<unsigned long long>(totals.pending["suspend"]),
      static_cast<unsigned long long>(totals.pending["delete"]),
      static_cast<unsigned long long>(totals.pending["done-unrecorded"]), totals.run_s,
      static_cast<unsigned long long>(seed));
  std::fflush(stdout);
}

}  // namespace
}  // namespace cloister::node
