// Tests of `cloister replay` through the real binary (a data dependency, found in the runfiles):
// views at a seq, --diff, --step, text output, snapshots used and skipped, read-only use beside a
// writer in this process, corruption (exit 1 naming the seq) and bad arguments (exit 2). Each
// TEST_CASE names one behaviour.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "log/log.h"
#include "log/snapshot_store.h"
#include "log/status.h"
#include "log/store_testing.h"
#include "reducers/mixed_log.h"
#include "reducers/rebuild.h"
#include "reducers/snapshot.h"
#include "tests/testutil.h"
#include "tools/cli_test_support.h"

namespace cloister::tools {
namespace {

using cloister::testing::TempDir;
using nlohmann::json;

constexpr int64_t kTime0Ns = 1'795'003'200'000'000'000;

// Runs a command that must succeed quietly, and parses its stdout as one JSON value.
json RunJson(const std::vector<std::string>& args) {
  const RunResult r = RunCloister(args);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  const json parsed = json::parse(r.out, nullptr, false);
  REQUIRE(!parsed.is_discarded());
  return parsed;
}

// Fails unless r is a usage error: exit 2, nothing on stdout, one line on stderr.
void CheckUsageError(const RunResult& r, const std::string& message_part) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(Lines(r.err).size() == 1);
  CHECK_THAT(r.err, Catch::StartsWith("cloister: "));
  CHECK_THAT(r.err, Catch::Contains(message_part));
}

// A data directory with `events` demo events, made by the binary itself.
std::string DemoDir(const TempDir& tmp, int events) {
  const std::string dir = tmp.Sub("data");
  const RunResult r = RunCloister({"demo", "--data", dir, "--events", std::to_string(events)});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return dir;
}

std::unique_ptr<log::Log> OpenWriter(const std::string& dir) {
  log::Options options;
  options.dir = dir;
  auto log = log::Log::Open(options);
  INFO(log.status().ToString());
  REQUIRE(log.ok());
  return std::move(log.value());
}

std::span<const uint8_t> Span(const std::string& bytes) {
  return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

// ---- Views at a seq -------------------------------------------------------------------------

TEST_CASE("replay shows the views at the head, and as they were at an earlier seq") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 20);
  const json head = RunJson({"replay", "--data", dir});
  CHECK(head["seq"] == 20);
  CHECK(head["config"]["ANKA_ENABLE_API_KEYS"]["value"] == "true");
  CHECK(head["nodes"]["node-7f3a"]["state"] == "Active");
  CHECK(head["node_groups"]["grp-build"]["node_ids"] == json::array({"node-7f3a"}));
  CHECK(head["vm_instances"]["inst-0001"]["state"] == "Started");
  CHECK(head["vm_instances"]["inst-0002"]["state"] == "Terminated");

  const json at4 = RunJson({"replay", "--data", dir, "--to", "4", "--view", "nodes"});
  CHECK(at4["seq"] == 4);
  CHECK_FALSE(at4.contains("config"));
  CHECK_FALSE(at4.contains("vm_instances"));
  CHECK(at4["nodes"]["node-7f3a"]["state"] == "Offline");
  CHECK(at4["nodes"]["node-7f3a"]["groups"] == json::array({"grp-build"}));

  const json at0 = RunJson({"replay", "--data", dir, "--to", "0"});
  CHECK(at0["seq"] == 0);
  CHECK(at0["nodes"].empty());
}

TEST_CASE("replay agrees with the audit export's hash at the same seq") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 30);
  const RunResult exported = RunCloister({"audit", "export", "--data", dir, "--from", "17", "--to", "17"});
  REQUIRE(exported.exit_code == 0);
  const json event = json::parse(exported.out);
  CHECK(RunJson({"replay", "--data", dir, "--to", "17"})["hash"] == event["hash"]);
}

TEST_CASE("replay --format text prints one entity per line") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 12);
  const RunResult r = RunCloister({"replay", "--data", dir, "--format", "text"});
  REQUIRE(r.exit_code == 0);
  const std::vector<std::string> lines = Lines(r.out);
  REQUIRE(lines.size() == 7);
  CHECK_THAT(lines[0], Catch::StartsWith("seq 12 hash "));
  CHECK_THAT(lines[1], Catch::StartsWith("config ANKA_ENABLE_API_KEYS: value=true "));
  CHECK_THAT(lines[2], Catch::StartsWith("nodes node-7f3a: node_name=mac-mini-01 "));
  CHECK_THAT(lines[3], Catch::StartsWith("node_groups grp-build: name=build "));
  CHECK_THAT(lines[4], Catch::StartsWith("vm_instances inst-0001: "));
  CHECK_THAT(lines[4], Catch::Contains(" state=Started "));
  CHECK_THAT(lines[5], Catch::StartsWith("api_keys ci-runner: "));
  CHECK_THAT(lines[5], Catch::Contains(" groups=[\"ci\"] "));
  CHECK_THAT(lines[6], Catch::StartsWith("sessions "));
  CHECK_THAT(lines[6], Catch::Contains(" key_id=ci-runner "));
}

TEST_CASE("replay of an empty log shows empty views at seq 0") {
  TempDir tmp;
  { OpenWriter(tmp.Sub("data")); }
  const json views = RunJson({"replay", "--data", tmp.Sub("data")});
  CHECK(views["seq"] == 0);
  CHECK(views["hash"] == std::string(64, '0'));
  for (const char* name : {"config", "nodes", "node_groups", "vm_instances"}) {
    CHECK(views[name].empty());
  }
}

// ---- Diff -----------------------------------------------------------------------------------

TEST_CASE("replay --diff shows what was added, removed and changed between two seqs") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 20);
  const json diff = RunJson({"replay", "--data", dir, "--diff", "8", "10"});
  CHECK(diff["seq_from"] == 8);
  CHECK(diff["seq_to"] == 10);
  const json& change = diff["vm_instances"]["changed"]["inst-0001"];
  CHECK(change["before"]["state"] == "Scheduling");
  CHECK(change["after"]["state"] == "Started");
  CHECK(change["before"]["node_id"] == "");
  CHECK(change["after"]["node_id"] == "node-7f3a");
  CHECK_FALSE(diff.contains("config"));

  const json added = RunJson({"replay", "--data", dir, "--diff", "0", "3"});
  CHECK(added["config"]["added"].contains("ANKA_ENABLE_API_KEYS"));
  CHECK(added["nodes"]["added"].contains("node-7f3a"));
  const json removed = RunJson({"replay", "--data", dir, "--diff", "3", "0"});
  CHECK(removed["nodes"]["removed"].contains("node-7f3a"));

  const json same = RunJson({"replay", "--data", dir, "--diff", "11", "12"});
  CHECK(same == json::parse(R"({"seq_from":11,"seq_to":12})"));
}

TEST_CASE("replay --diff --format text marks added, removed and changed entities") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 20);
  RunResult r = RunCloister({"replay", "--data", dir, "--diff", "8", "10", "--format", "text"});
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> lines = Lines(r.out);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "diff seq 8 -> 10");
  CHECK_THAT(lines[1], Catch::StartsWith("~ vm_instances inst-0001: state Scheduling -> Started, "
                                         "message \"\" -> \"VM started\", progress 0.0 -> 1.0, "
                                         "node_id \"\" -> node-7f3a, "));
  r = RunCloister(
      {"replay", "--data", dir, "--diff", "2", "0", "--format", "text", "--view", "node_groups"});
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::StartsWith("diff seq 2 -> 0\n- node_groups grp-build: name=build "));
  r = RunCloister({"replay", "--data", dir, "--diff", "11", "12", "--format", "text"});
  CHECK(r.out == "diff seq 11 -> 12\n(no change)\n");
}

// ---- Step -----------------------------------------------------------------------------------

TEST_CASE("replay --step prints each event and the change it made, as JSON lines") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 20);
  const RunResult r = RunCloister({"replay", "--data", dir, "--step", "--from", "8", "--to", "12"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  const std::vector<std::string> lines = Lines(r.out);
  REQUIRE(lines.size() == 5);
  std::vector<json> events;
  for (const std::string& line : lines) {
    events.push_back(json::parse(line));
  }
  CHECK(events[0]["seq"] == 8);
  CHECK(events[0]["type"] == "VmInstanceRequested");
  CHECK(events[0]["changes"]["vm_instances"]["added"]["inst-0001"]["state"] == "Scheduling");
  CHECK(events[1]["type"] == "VmInstanceScheduled");
  CHECK(events[1]["payload"]["node_id"] == "node-7f3a");
  CHECK(events[1]["changes"]["vm_instances"]["changed"]["inst-0001"]["after"]["node_id"] ==
        "node-7f3a");
  CHECK(events[3]["type"] == "AuthenticationFailed");
  CHECK(events[3]["changes"].empty());
  CHECK(events[4]["seq"] == 12);
}

TEST_CASE("replay --step --format text, and a view filter shows only events that changed it") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 20);
  RunResult r = RunCloister({"replay", "--data", dir, "--step", "--to", "3", "--format", "text"});
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> lines = Lines(r.out);
  REQUIRE(lines.size() >= 6);
  CHECK_THAT(lines[0], Catch::Matches(R"(#1 2\d{3}-\d\d-\d\dT[0-9:.]+Z Root:root ConfigChanged )"
                                      R"(key=ANKA_ENABLE_API_KEYS value=true)"));
  CHECK_THAT(lines[1], Catch::StartsWith("  + config ANKA_ENABLE_API_KEYS: value=true "));
  CHECK_THAT(lines[2], Catch::StartsWith("#2 "));

  r = RunCloister({"replay", "--data", dir, "--step", "--view", "nodes", "--format", "text"});
  REQUIRE(r.exit_code == 0);
  lines = Lines(r.out);
  std::vector<std::string> headers;
  for (const std::string& line : lines) {
    if (line.starts_with("#")) {
      headers.push_back(line.substr(0, line.find(' ')));
    } else {
      CHECK_THAT(line, Catch::StartsWith("  ~ nodes ") || Catch::StartsWith("  + nodes "));
    }
  }
  // The join (3), the membership (4) and the heartbeats (17; every sixth event after that).
  CHECK(headers == std::vector<std::string>{"#3", "#4", "#17"});
}

// ---- Snapshots ------------------------------------------------------------------------------

// A mixed log of `events` events in dir, with good snapshots of it at each of `seqs`.
std::unique_ptr<log::Log> LogWithSnapshots(const std::string& dir, uint64_t events,
                                           const std::vector<uint64_t>& seqs) {
  auto log = OpenWriter(dir);
  REQUIRE(reducers::AppendMixedEvents(log.get(), events, 5, kTime0Ns).ok());
  auto store = log::SnapshotStore::Open(dir, /*read_only=*/false);
  REQUIRE(store.ok());
  for (uint64_t seq : seqs) {
    auto views = reducers::Rebuild(*log, nullptr, seq);
    REQUIRE(views.ok());
    REQUIRE((*store)->Put(seq, views->hash, Span(reducers::EncodeViews(*views))).ok());
  }
  return log;
}

TEST_CASE("replay starts from a snapshot: a doctored but well-sealed one shows through") {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  {
    auto log = LogWithSnapshots(dir, 1000, {});
    auto views = reducers::Rebuild(*log, nullptr, 600);
    REQUIRE(views.ok());
    // Only a replay that starts from this snapshot can show this entry.
    views->config.entries["FROM_SNAPSHOT"].value = "yes";
    auto store = log::SnapshotStore::Open(dir, /*read_only=*/false);
    REQUIRE(store.ok());
    REQUIRE((*store)->Put(600, views->hash, Span(reducers::EncodeViews(*views))).ok());
  }
  CHECK(RunJson({"replay", "--data", dir, "--view", "config"})["config"].contains("FROM_SNAPSHOT"));
  CHECK(RunJson({"replay", "--data", dir, "--to", "700"})["config"].contains("FROM_SNAPSHOT"));
  CHECK_FALSE(
      RunJson({"replay", "--data", dir, "--to", "599"})["config"].contains("FROM_SNAPSHOT"));
  CHECK_FALSE(
      RunJson({"replay", "--data", dir, "--no-snapshots"})["config"].contains("FROM_SNAPSHOT"));
}

TEST_CASE("a damaged snapshot is skipped with a note on stderr, and the views are unchanged") {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  {
    auto log = LogWithSnapshots(dir, 2000, {500, 1500});
    auto store = log::SnapshotStore::Open(dir, /*read_only=*/false);
    REQUIRE(store.ok());
    REQUIRE((*store)->EditStoredForTest(1500, [](std::string* v) { (*v)[200] ^= 1; }).ok());
  }
  const RunResult with = RunCloister({"replay", "--data", dir});
  const RunResult without = RunCloister({"replay", "--data", dir, "--no-snapshots"});
  REQUIRE(with.exit_code == 0);
  REQUIRE(without.exit_code == 0);
  CHECK(with.out == without.out);
  CHECK(with.err ==
        "cloister: note: snapshot 1500 skipped: Corruption: snapshot 1500: SHA-256 mismatch\n");
  CHECK(without.err.empty());
}

// ---- Live and copied data directories -------------------------------------------------------

TEST_CASE("replay works read-only while this process holds the log and snapshots for writing") {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  auto writer = LogWithSnapshots(dir, 1500, {1000});
  auto store = log::SnapshotStore::Open(dir, /*read_only=*/false);  // Held open, as cloisterd does.
  REQUIRE(store.ok());
  const json views = RunJson({"replay", "--data", dir});
  CHECK(views["seq"] == 1500);
  CHECK(views["hash"] == log::HashHex(writer->head().hash));
  const RunResult step = RunCloister({"replay", "--data", dir, "--step", "--from", "1490"});
  CHECK(step.exit_code == 0);
  CHECK(Lines(step.out).size() == 11);
  // The writer keeps appending; a later replay sees the new head.
  REQUIRE(reducers::AppendMixedEvents(writer.get(), 10, 99, kTime0Ns * 2).ok());
  CHECK(RunJson({"replay", "--data", dir, "--view", "config"})["seq"] == 1510);
}

TEST_CASE("replay of a copied data directory gives the same views") {
  TempDir tmp;
  const std::string dir = tmp.Sub("data");
  { LogWithSnapshots(dir, 800, {400}); }
  std::filesystem::copy(dir, tmp.Sub("copy"), std::filesystem::copy_options::recursive);
  const RunResult original = RunCloister({"replay", "--data", dir});
  const RunResult copy = RunCloister({"replay", "--data", tmp.Sub("copy")});
  REQUIRE(original.exit_code == 0);
  CHECK(copy.exit_code == 0);
  CHECK(copy.out == original.out);
}

// ---- Errors ---------------------------------------------------------------------------------

TEST_CASE("replay of a corrupted log exits 1 naming the seq") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 100);
  Status s = log::testing::RewriteStoredEvent(
      dir, 20, [](std::string* bytes) { std::memset(bytes->data(), 0xEE, 16); });
  REQUIRE(s.ok());
  RunResult r = RunCloister({"replay", "--data", dir, "--to", "50"});
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::StartsWith("corrupt: event 20: fails FlatBuffers verification"));
  // Before the damage the views are still there to see.
  CHECK(RunCloister({"replay", "--data", dir, "--to", "19"}).exit_code == 0);
  // --step prints the events before the bad one, then fails.
  r = RunCloister({"replay", "--data", dir, "--step", "--from", "15", "--to", "30"});
  CHECK(r.exit_code == 1);
  CHECK(Lines(r.out).size() == 5);
  CHECK_THAT(r.err, Catch::StartsWith("corrupt: event 20: "));
}

TEST_CASE("replay bad arguments exit 2 with a one-line message") {
  TempDir tmp;
  const std::string dir = DemoDir(tmp, 12);
  CheckUsageError(RunCloister({"replay"}), "--data is required");
  CheckUsageError(RunCloister({"replay", "--data", tmp.Sub("missing")}), "no cloister event log in");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--view", "bogus"}),
                  "--view: unknown view 'bogus'; valid views: config, nodes, node_groups, "
                  "vm_instances, templates, save_images, api_keys, sessions, revocations, "
                  "permission_groups, resource_permissions, policies, policy_attachments, "
                  "distributions, files, all");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--format", "yaml"}),
                  "--format: unknown format 'yaml'; expected json or text");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--to", "13"}),
                  "--to 13 is beyond the head of the log (seq 12)");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--step", "--to", "99"}),
                  "--to 99 is beyond the head of the log (seq 12)");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--diff", "1", "40"}),
                  "--diff: seq 40 is beyond the head of the log (seq 12)");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--to", "x1"}), "--to: invalid number 'x1'");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--diff", "1", "b"}), "--diff: invalid number");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--diff", "1"}), "--diff");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--diff", "1", "2", "--step"}),
                  "cannot be combined with --step, --from or --to");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--from", "3"}), "--from needs --step");
  CheckUsageError(RunCloister({"replay", "--data", dir, "--step", "--from", "5", "--to", "3"}),
                  "--from 5 is after --to 3");
}

TEST_CASE("replay --help exits 0 and names every option") {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"replay", "--help"}, std::vector<std::string>{"--help"}}) {
    const RunResult r = RunCloister(args);
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK_THAT(r.out, Catch::Contains("replay"));
  }
  const RunResult r = RunCloister({"replay", "--help"});
  for (const char* mention : {"Usage: cloister replay", "--data", "--to", "--from", "--diff",
                              "--step", "--view", "--format", "--no-snapshots", "node_groups",
                              "vm_instances", "json", "text", "Exit status"}) {
    CHECK_THAT(r.out, Catch::Contains(mention));
  }
}

}  // namespace
}  // namespace cloister::tools
