// Tests of the real `cloister` binary, run as a subprocess (it is a data dependency, found in the
// runfiles): stdout, stderr and the exit status of the demo, export and verify commands, their
// --help, every bad-argument case (exit 2), and corruption (exit 1, naming the seq). Corruption
// is made with raw LMDB, as a bad disk or a tamperer would. Each TEST_CASE names one edge case.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "log/draft.h"
#include "log/events_generated.h"
#include "log/hash.h"
#include "log/log.h"
#include "log/status.h"
#include "log/store_testing.h"
#include "tests/testutil.h"
#include "tools/cli_test_support.h"

namespace cloister::tools {
namespace {

using cloister::testing::TempDir;
using nlohmann::json;

// Fails unless r is a usage error: exit 2, nothing on stdout, one line on stderr.
void CheckUsageError(const RunResult& r, const std::string& message_part) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(Lines(r.err).size() == 1);
  CHECK_THAT(r.err, Catch::StartsWith("cloister: "));
  CHECK_THAT(r.err, Catch::Contains(message_part));
}

// Replaces the stored bytes of event seq (log/store_testing.h) while no process has it open.
// garble: the root offset points outside the buffer. Otherwise: still a valid FlatBuffer whose
// hash changes.
void EditStoredEvent(const std::string& dir, uint64_t seq, bool garble) {
  Status s = log::testing::RewriteStoredEvent(dir, seq, [&](std::string* bytes) {
    if (garble) {
      std::memset(bytes->data(), 0xEE, 16);
      return;
    }
    const size_t at = bytes->find("req-");
    REQUIRE(at != std::string::npos);
    (*bytes)[at] = 'X';
  });
  INFO(s.ToString());
  REQUIRE(s.ok());
}

// A data directory with `events` demo events, made by the binary itself.
std::string DemoDir(const TempDir& tmp, int events) {
  const std::string dir = tmp.Sub("data");
  const RunResult r = RunCloister({"demo", "--data", dir, "--events", std::to_string(events)});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return dir;
}

// ---- The newcomer's path: demo, export, verify --------------------------------------------------

TEST_CASE("demo, then export and verify, as the README shows") {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  const RunResult demo = RunCloister({"demo", "--data", dir});
  INFO(demo.err);
  REQUIRE(demo.exit_code == 0);
  CHECK_THAT(demo.out,
             Catch::StartsWith("appended 12 events (seq 1..12) to " + dir + "; head seq 12 hash "));
  CHECK(demo.err.empty());

  const RunResult exported = RunCloister({"audit", "export", "--data", dir});
  REQUIRE(exported.exit_code == 0);
  CHECK(exported.err.empty());
  const std::vector<std::string> lines = Lines(exported.out);
  REQUIRE(lines.size() == 12);
  std::vector<std::string> types;
  for (const std::string& line : lines) {
    const json parsed = json::parse(line, nullptr, false);
    REQUIRE(!parsed.is_discarded());
    types.push_back(parsed["type"]);
  }
  CHECK(types == std::vector<std::string>{
                     "ConfigChanged", "NodeGroupCreated", "NodeJoined",
                     "NodeGroupMembershipChanged", "ApiKeyCreated", "TapChallengeIssued",
                     "SessionOpened", "VmInstanceRequested", "VmInstanceScheduled",
                     "VmInstanceStateChanged", "AuthenticationFailed", "AccessDenied"});
  const std::string last_hash = json::parse(lines.back())["hash"];

  const RunResult verify = RunCloister({"audit", "verify", "--data", dir});
  CHECK(verify.exit_code == 0);
  CHECK(verify.out == "ok: head seq 12 hash " + last_hash + "\n");
  CHECK(verify.err.empty());
  CHECK_THAT(demo.out, Catch::EndsWith(last_hash + "\n"));
}

TEST_CASE("demo appends past the story with VM lifecycles, and appends again to an existing log") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 40);
  const RunResult again = RunCloister({"demo", "--data", dir, "--events", "5"});
  REQUIRE(again.exit_code == 0);
  CHECK_THAT(again.out, Catch::StartsWith("appended 5 events (seq 41..45)"));
  const RunResult verify = RunCloister({"audit", "verify", "--data", dir});
  CHECK(verify.exit_code == 0);
  CHECK_THAT(verify.out, Catch::StartsWith("ok: head seq 45 hash "));
}

TEST_CASE("verify of an empty log prints head seq 0 and the zero hash") {
  TempDir tmp;
  {
    log::Options options;
    options.dir = tmp.Sub("data");
    REQUIRE(log::Log::Open(options).ok());
  }
  const RunResult r = RunCloister({"audit", "verify", "--data", tmp.Sub("data")});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "ok: head seq 0 hash " + std::string(64, '0') + "\n");
  const RunResult exported = RunCloister({"audit", "export", "--data", tmp.Sub("data")});
  CHECK(exported.exit_code == 0);
  CHECK(exported.out.empty());
}

TEST_CASE("export filters and CSV through the command line") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 12);
  RunResult r = RunCloister({"audit", "export", "--data", dir, "--type", "node_joined"});
  CHECK(r.exit_code == 0);
  CHECK(Lines(r.out).size() == 1);
  r = RunCloister({"audit", "export", "--data", dir, "--type", "AccessDenied,ConfigChanged", "--type",
           "nodejoined"});
  CHECK(Lines(r.out).size() == 3);
  r = RunCloister({"audit", "export", "--data", dir, "--actor", "root"});
  CHECK(Lines(r.out).size() == 3);  // Config change, node group, API key.
  r = RunCloister({"audit", "export", "--data", dir, "--from", "3", "--to", "4", "--format", "csv"});
  CHECK(r.exit_code == 0);
  const std::vector<std::string> rows = Lines(r.out);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0] == "seq,time,actor_kind,actor_id,request_id,type,payload,hash");
  CHECK_THAT(rows[1], Catch::StartsWith("3,"));
  CHECK_THAT(rows[2], Catch::StartsWith("4,"));
  r = RunCloister({"audit", "export", "--data", dir, "--since", "2000-01-01T00:00:00Z", "--until",
           "2001-01-01T00:00:00+01:00"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
}

TEST_CASE("export and verify work read-only while another process holds the log for writing") {
  TempDir tmp;
  log::Options options;
  options.dir = tmp.Sub("data");
  auto writer = log::Log::Open(options);
  REQUIRE(writer.ok());
  std::vector<log::Draft> drafts;
  for (int i = 0; i < 3; i++) {
    log::DraftBuilder builder;
    auto payload = fb::CreateNodeRemovedDirect(builder.fbb(), "node-1", "gone");
    log::Envelope envelope;
    envelope.time_ns = 1'795'003'200'000'000'000 + i;
    envelope.actor_kind = fb::ActorKind::System;
    envelope.actor_id = "cloisterd";
    envelope.request_id = "req-1";
    drafts.push_back(builder.Finish(envelope, payload));
  }
  REQUIRE((*writer)->Append(std::move(drafts)).ok());
  const RunResult exported = RunCloister({"audit", "export", "--data", tmp.Sub("data")});
  CHECK(exported.exit_code == 0);
  CHECK(Lines(exported.out).size() == 3);
  const RunResult verify = RunCloister({"audit", "verify", "--data", tmp.Sub("data")});
  CHECK(verify.exit_code == 0);
  CHECK(verify.out == "ok: head seq 3 hash " + log::HashHex((*writer)->head().hash) + "\n");
  // The demo needs the writer lock, which this process holds.
  const RunResult demo = RunCloister({"demo", "--data", tmp.Sub("data")});
  CHECK(demo.exit_code == 1);
  CHECK_THAT(demo.err, Catch::Contains("already open for writing by another process"));
}

// ---- Corruption: exit 1, naming the seq ---------------------------------------------------------

TEST_CASE("verify of a log with an edited event exits 1 naming the seq where the chain breaks") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 200);
  EditStoredEvent(dir, 20, /*garble=*/false);
  const RunResult r = RunCloister({"audit", "verify", "--data", dir});
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err == "corrupt: event 21: hash chain broken: prev_hash does not match event 20\n");
}

TEST_CASE("verify of a log with an unparseable event exits 1 naming that seq") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 200);
  EditStoredEvent(dir, 33, /*garble=*/true);
  const RunResult r = RunCloister({"audit", "verify", "--data", dir});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::StartsWith("corrupt: event 33: fails FlatBuffers verification"));
}

TEST_CASE("corruption in the tail, caught when the log is opened, still exits 1 naming the seq") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 100);
  EditStoredEvent(dir, 100, /*garble=*/false);  // The head: its hash no longer matches meta.
  RunResult r = RunCloister({"audit", "verify", "--data", dir});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::StartsWith("corrupt: event 100: "));
  r = RunCloister({"audit", "export", "--data", dir});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::StartsWith("corrupt: event 100: "));
}

TEST_CASE("export of a corrupted log writes the events before the bad one, then exits 1") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 200);
  EditStoredEvent(dir, 20, /*garble=*/false);
  const RunResult r = RunCloister({"audit", "export", "--data", dir});
  CHECK(r.exit_code == 1);
  CHECK(Lines(r.out).size() == 20);
  CHECK_THAT(r.err, Catch::StartsWith("corrupt: event 21: "));
}

// ---- Bad arguments: exit 2 with one line on stderr ----------------------------------------------

TEST_CASE("bad arguments exit 2 with a one-line message") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 3);
  const std::string empty_dir = tmp.Sub("empty");
  REQUIRE(mkdir(empty_dir.c_str(), 0700) == 0);
  CheckUsageError(RunCloister({}), "A subcommand is required");
  CheckUsageError(RunCloister({"frobnicate"}), "frobnicate");
  CheckUsageError(RunCloister({"audit"}), "A subcommand is required");
  CheckUsageError(RunCloister({"audit", "export"}), "--data is required");
  CheckUsageError(RunCloister({"audit", "verify"}), "--data is required");
  CheckUsageError(RunCloister({"demo"}), "--data is required");
  CheckUsageError(RunCloister({"audit", "export", "--data", empty_dir}), "no cloister event log in");
  CheckUsageError(RunCloister({"audit", "verify", "--data", tmp.Sub("missing")}), "no cloister event log");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--from", "abc"}),
                  "--from: invalid number 'abc'");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--to", "1.5"}), "--to: invalid number");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--from", "5", "--to", "3"}),
                  "--from 5 is after --to 3");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--since", "yesterday"}),
                  "--since: invalid time 'yesterday'");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--until", "2026-02-30T00:00:00Z"}),
                  "--until: invalid time");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--since", "2026-01-02T00:00:00Z",
                       "--until", "2026-01-01T00:00:00Z"}),
                  "is after --until");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--type", "bogus"}),
                  "unknown event type 'bogus'; valid types: ConfigChanged, NodeJoined");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--format", "xml"}),
                  "unknown format 'xml'; expected jsonl or csv");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "--bogus"}), "--bogus");
  CheckUsageError(RunCloister({"audit", "export", "--data", dir, "extra"}), "extra");
  CheckUsageError(RunCloister({"audit", "export", "--data"}), "--data");
  CheckUsageError(RunCloister({"demo", "--data", tmp.Sub("d2"), "--events", "many"}),
                  "--events: invalid number 'many'");
  CheckUsageError(RunCloister({"demo", "--data", tmp.Sub("d2"), "--events", "10000001"}),
                  "exceeds the limit");
}

// ---- Help ---------------------------------------------------------------------------------------

TEST_CASE("--help at every level exits 0 and names every command and option") {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {{"--help"}, {"Usage: cloister", "audit", "demo", "Exit status"}},
      {{"audit", "--help"}, {"Usage: cloister audit", "export", "verify"}},
      {{"audit", "export", "--help"},
       {"Usage: cloister audit export", "--data", "--from", "--to", "--since", "--until", "--type",
        "--actor", "--format", "jsonl", "csv", "NodeJoined", "AccessDenied", "Exit status"}},
      {{"audit", "verify", "--help"}, {"Usage: cloister audit verify", "--data", "ok: head seq"}},
      {{"demo", "--help"}, {"Usage: cloister demo", "--data", "--events", "12"}},
      {{"audit", "export", "-h"}, {"Usage: cloister audit export"}},
  };
  for (const Case& c : cases) {
    const RunResult r = RunCloister(c.args);
    INFO(c.args.front() << " ...: " << r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    for (const std::string& mention : c.mentions) {
      CHECK_THAT(r.out, Catch::Contains(mention));
    }
  }
}

}  // namespace
}  // namespace cloister::tools
