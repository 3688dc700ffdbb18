// The event log's failure policy under injected I/O errors (RELIABILITY.md T19, T20, M3), tested
// against the real log and the real LMDB through the libfaultfs.so LD_PRELOAD shim.
//
// Method: each case runs fault_child in a fresh directory with the shim set to fail chosen calls
// on data.mdb (counting starts after Log::Open, see faultfs.cc), reads the child's "ack"/"fail"
// lines, then reopens the log in the test process and checks that VerifyAll passes and that the
// log holds exactly the acknowledged events, in order: every acknowledged event is present and
// nothing that was not acknowledged became visible.
//
// What one sequential Append does in LMDB 0.9.24 (strace): write the dirty pages of data.mdb
// (pwrite, or lseek + writev; one or more calls), fdatasync(data.mdb) once, then pwrite the meta
// page through an O_DSYNC descriptor. So the k-th fdatasync or meta write is the k-th Append.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "log/log.h"
#include "log/status.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"

namespace cloister {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kExitFatalIo = log::kExitFatalIo;
constexpr double kFatalExitMsMax = 1000.0;  // RELIABILITY.md T19: exit within 1 s.
constexpr auto kChildTimeout = std::chrono::seconds(60);

struct Fault {
  std::string op;           // FAULTFS_OP.
  uint64_t fail_at = 0;     // FAULTFS_FAIL_AT.
  uint64_t fail_count = 1;  // FAULTFS_FAIL_COUNT.
  std::string error;        // FAULTFS_ERRNO.
  bool armed_at_start = false;
};

struct Line {
  bool ack = false;
  int append = 0;
  uint64_t seq_first = 0;
  uint64_t seq_last = 0;
  std::string code;  // For a failure.
};

struct Outcome {
  int status = 0;
  std::vector<Line> lines;
  std::string err;
  int injections = 0;          // Failures the shim injected.
  double exit_after_ms = -1;   // From the first injection to the child's exit.

  bool Exited(int code) const { return WIFEXITED(status) && WEXITSTATUS(status) == code; }
  std::vector<Line> Acks() const {
    std::vector<Line> acks;
    for (const Line& line : lines) {
      if (line.ack) acks.push_back(line);
    }
    return acks;
  }
  std::vector<Line> Fails() const {
    std::vector<Line> fails;
    for (const Line& line : lines) {
      if (!line.ack) fails.push_back(line);
    }
    return fails;
  }
  std::string Describe() const {
    std::ostringstream out;
    out << "child " << testing::DescribeWaitStatus(status) << ", " << injections
        << " injected failure(s), lines:\n";
    for (const Line& line : lines) {
      out << "  " << (line.ack ? "ack " : "fail ") << line.append << " "
          << (line.ack ? std::to_string(line.seq_first) + ".." + std::to_string(line.seq_last)
                       : line.code)
          << "\n";
    }
    out << "stderr:\n" << err;
    return out.str();
  }
};

std::vector<Line> ParseLines(const std::string& out) {
  std::vector<Line> lines;
  std::istringstream in(out);
  std::string text;
  while (std::getline(in, text)) {
    std::istringstream fields(text);
    std::string kind;
    Line line;
    fields >> kind >> line.append;
    if (kind == "ack") {
      line.ack = true;
      fields >> line.seq_first >> line.seq_last;
    } else {
      REQUIRE(kind == "fail");
      fields >> line.code;
    }
    REQUIRE(fields);
    lines.push_back(line);
  }
  return lines;
}

// Runs fault_child under the shim and collects what it reported.
Outcome RunChild(const std::string& dir, const Fault& fault, int appends, int events) {
  testing::TempDir scratch;
  const std::string report = scratch.Sub("faultfs.report");
  std::vector<std::string> env = {
      "LD_PRELOAD=" + testing::RunfilePath("tests/faultfs/libfaultfs.so"),
      "FAULTFS_OP=" + fault.op,
      "FAULTFS_FAIL_AT=" + std::to_string(fault.fail_at),
      "FAULTFS_FAIL_COUNT=" + std::to_string(fault.fail_count),
      "FAULTFS_ERRNO=" + fault.error,
      "FAULTFS_REPORT=" + report,
      "FAULTFS_ARMED=" + std::string(fault.armed_at_start ? "1" : "0"),
      // Under --config=asan the preloaded shim comes before the ASan runtime; allow it.
      "ASAN_OPTIONS=verify_asan_link_order=0",
  };
  testing::ChildProcess child({testing::RunfilePath("tests/faultfs/fault_child"), "--data", dir,
                               "--appends", std::to_string(appends), "--events",
                               std::to_string(events)},
                              env);
  child.ReadUntil(Clock::now() + kChildTimeout);
  const auto exited_at = Clock::now();
  child.Kill(SIGKILL);  // Only if it hung: a child that exited is just reaped.
  Outcome outcome;
  outcome.status = child.Wait();
  outcome.lines = ParseLines(child.out());
  outcome.err = child.err();

  std::ifstream in(report);
  std::string op;
  uint64_t number = 0;
  int error = 0;
  int64_t injected_ns = 0;
  while (in >> op >> number >> error >> injected_ns) {
    if (outcome.injections++ == 0) {
      int64_t exited_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              exited_at.time_since_epoch())
                              .count();
      outcome.exit_after_ms = static_cast<double>(exited_ns - injected_ns) / 1e6;
    }
  }
  return outcome;
}

// Reopens the log as the writer and checks it holds exactly the acknowledged events, in order.
void CheckLogHoldsExactlyAcked(const std::string& dir, const Outcome& outcome, int events) {
  INFO(outcome.Describe());
  log::Options options;
  options.dir = dir;
  Result<std::unique_ptr<log::Log>> opened = log::Log::Open(options);
  REQUIRE(opened.ok());
  const log::Log& log = *opened.value();
  Result<log::Head> head = log.VerifyAll();
  INFO("VerifyAll: " << (head.ok() ? "ok" : head.status().ToString()));
  REQUIRE(head.ok());

  std::vector<std::string> expected;
  uint64_t seq_next = 1;
  for (const Line& ack : outcome.Acks()) {
    CHECK(ack.seq_first == seq_next);  // Seqs are dense: a failed append consumed none.
    CHECK(ack.seq_last - ack.seq_first + 1 == static_cast<uint64_t>(events));
    for (int j = 0; j < events; j++) {
      expected.push_back("a" + std::to_string(ack.append) + "." + std::to_string(j));
    }
    seq_next = ack.seq_last + 1;
  }
  std::vector<std::string> stored;
  Status s = log.Scan(1, head->seq, [&](const log::EventView& view) {
    stored.push_back(view.event->request_id() != nullptr ? view.event->request_id()->str() : "");
    return true;
  });
  REQUIRE(s.ok());
  CHECK(head->seq == expected.size());  // Nothing unacknowledged became visible.
  CHECK(stored == expected);            // Every acknowledged event is present, and only those.
}

// Acks are exactly appends 1..n-1, in order; returns n (the first append without an ack).
int CheckAckedPrefix(const Outcome& outcome) {
  int next = 1;
  for (const Line& ack : outcome.Acks()) {
    CHECK(ack.append == next);
    next = ack.append + 1;
  }
  return next;
}

void CheckFatal(const Outcome& outcome) {
  INFO(outcome.Describe());
  CHECK(outcome.Exited(kExitFatalIo));
  REQUIRE(outcome.injections == 1);
  CHECK(outcome.exit_after_ms < kFatalExitMsMax);
  // No acknowledgement at or after the failing append; the ones before it form a prefix.
  int first_failed = CheckAckedPrefix(outcome);
  for (const Line& fail : outcome.Fails()) {
    CHECK(fail.code == "kClosed");
    CHECK(fail.append >= first_failed);
  }
}

TEST_CASE("EIO on the k-th fdatasync is fatal", "[faultfs][T19]") {
  const uint64_t k = GENERATE(1, 2, 5, 17);
  const int events = GENERATE(1, 3);
  INFO("k = " << k << ", events per append = " << events);
  testing::TempDir tmp;
  Outcome outcome = RunChild(tmp.Sub("data"), {"fdatasync", k, 1, "EIO"}, k + 5, events);
  INFO(outcome.Describe());
  CheckFatal(outcome);
  // One fdatasync per commit: appends 1..k-1 are acknowledged, append k is not.
  CHECK(outcome.Acks().size() == k - 1);
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), outcome, events);
}

TEST_CASE("ENOSPC on the k-th fdatasync fails that append and the writer resumes",
          "[faultfs][T20]") {
  const uint64_t k = GENERATE(1, 2, 5, 17);
  const std::string error = GENERATE(as<std::string>{}, "ENOSPC", "EDQUOT");
  INFO("k = " << k << ", " << error);
  const int appends = static_cast<int>(k) + 5;
  testing::TempDir tmp;
  Outcome outcome = RunChild(tmp.Sub("data"), {"fdatasync", k, 1, error}, appends, 2);
  INFO(outcome.Describe());
  CHECK(outcome.Exited(0));
  CHECK(outcome.injections == 1);
  REQUIRE(outcome.Fails().size() == 1);
  CHECK(outcome.Fails()[0].append == static_cast<int>(k));
  CHECK(outcome.Fails()[0].code == "kNoSpace");
  CHECK(outcome.Acks().size() == static_cast<size_t>(appends - 1));
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), outcome, 2);
}

TEST_CASE("ENOSPC on data-page writes (disk full) fails appends until space is freed",
          "[faultfs][T20]") {
  const uint64_t k = GENERATE(1, 2, 5, 17);
  const uint64_t m = GENERATE(1, 3);
  INFO("k = " << k << ", m = " << m);
  const int appends = static_cast<int>(k + m) + 5;
  testing::TempDir tmp;
  Outcome outcome = RunChild(tmp.Sub("data"), {"write_data", k, m, "ENOSPC"}, appends, 2);
  INFO(outcome.Describe());
  CHECK(outcome.Exited(0));
  CHECK(outcome.injections == static_cast<int>(m));
  // A commit stops at its first failed write, so each failure fails exactly one append; the k-th
  // write belongs to append k or an earlier one (a commit may write more than once).
  std::vector<Line> fails = outcome.Fails();
  REQUIRE(fails.size() == m);
  CHECK(fails[0].append <= static_cast<int>(k));
  for (size_t i = 0; i < fails.size(); i++) {
    CHECK(fails[i].code == "kNoSpace");
    CHECK(fails[i].append == fails[0].append + static_cast<int>(i));
  }
  // Space was freed: every later append succeeded without a restart.
  CHECK(outcome.Acks().size() == static_cast<size_t>(appends) - m);
  CHECK(outcome.lines.back().ack);
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), outcome, 2);
}

TEST_CASE("EIO on a data-page write is fatal", "[faultfs][T19]") {
  const uint64_t k = GENERATE(1, 2, 5, 17);
  INFO("k = " << k);
  testing::TempDir tmp;
  Outcome outcome = RunChild(tmp.Sub("data"), {"write_data", k, 1, "EIO"}, k + 5, 2);
  INFO(outcome.Describe());
  CheckFatal(outcome);
  CHECK(outcome.Acks().size() < k);
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), outcome, 2);
}

TEST_CASE("EIO on the k-th meta-page write is fatal", "[faultfs][T19]") {
  const uint64_t k = GENERATE(1, 2, 5, 17);
  INFO("k = " << k);
  testing::TempDir tmp;
  Outcome outcome = RunChild(tmp.Sub("data"), {"write_meta", k, 1, "EIO"}, k + 5, 2);
  INFO(outcome.Describe());
  CheckFatal(outcome);
  // One meta write per commit, after its fdatasync.
  CHECK(outcome.Acks().size() == k - 1);
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), outcome, 2);
}

// LMDB marks the environment fatal (MDB_FATAL_ERROR) when its meta-page write fails, whatever the
// errno: mdb_env_write_meta sets the flag and every later transaction gets MDB_PANIC. The log
// detects that right after the failed commit, so an ENOSPC there is fatal on the failing append
// itself (log.h). On ext4 and XFS the meta pages are overwritten in place and should not hit
// ENOSPC; on copy-on-write filesystems (btrfs, ZFS) they can.
TEST_CASE("ENOSPC on the meta-page write is fatal at once and loses no acknowledged event",
          "[faultfs][T20]") {
  const uint64_t k = GENERATE(1, 2, 5);
  INFO("k = " << k);
  testing::TempDir tmp;
  Outcome outcome = RunChild(tmp.Sub("data"), {"write_meta", k, 1, "ENOSPC"}, k + 5, 2);
  INFO(outcome.Describe());
  CheckFatal(outcome);
  CHECK(outcome.Acks().size() == k - 1);  // One meta write per commit: append k is not acked.
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), outcome, 2);
}

TEST_CASE("EIO on the first fdatasync while creating the log fails Open and a restart recovers",
          "[faultfs][T19]") {
  testing::TempDir tmp;
  Fault fault{"fdatasync", 1, 1, "EIO", /*armed_at_start=*/true};
  Outcome outcome = RunChild(tmp.Sub("data"), fault, 3, 1);
  INFO(outcome.Describe());
  CHECK(outcome.injections == 1);
  CHECK(outcome.Exited(3));  // fault_child's exit code for a failed Open.
  CHECK(outcome.lines.empty());
  // Restart without faults: the log opens (and is created) and accepts appends.
  Outcome restarted = RunChild(tmp.Sub("data"), {"fdatasync", 0, 1, "EIO"}, 3, 1);
  CHECK(restarted.Exited(0));
  CHECK(restarted.Acks().size() == 3);
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), restarted, 1);
}

TEST_CASE("without MDB_WRITEMAP LMDB never calls msync or fsync on the data file",
          "[faultfs]") {
  // The shim can fail msync and fsync, but the log's LMDB configuration does not use them: its
  // durability rests on fdatasync and the O_DSYNC meta write, which the cases above cover. If this
  // fails, the log started using msync/fsync and those need fault cases of their own.
  const std::string op = GENERATE(as<std::string>{}, "msync", "fsync");
  INFO("op = " << op);
  testing::TempDir tmp;
  Outcome outcome = RunChild(tmp.Sub("data"), {op, 1, 1000, "EIO"}, 10, 2);
  INFO(outcome.Describe());
  CHECK(outcome.Exited(0));
  CHECK(outcome.injections == 0);
  CHECK(outcome.Acks().size() == 10);
  CheckLogHoldsExactlyAcked(tmp.Sub("data"), outcome, 2);
}

}  // namespace
}  // namespace cloister
