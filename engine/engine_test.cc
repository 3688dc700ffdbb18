// Engine tests: the command path against a real Log in a temporary directory, a simulated clock
// and a seeded RNG. The scenario scripts in tests/scenarios cover the domain rules; these cover
// the machinery: durability before visibility, conflict ordering, failures, limits, restart.
#include "engine/engine.h"

#include <catch2/catch.hpp>

#include "engine/limits.h"
#include "engine/queue_poster.h"
#include "log/log.h"
#include "log/snapshot_store.h"
#include "reducers/snapshot.h"
#include "tests/testutil.h"

namespace cloister::engine {
namespace {

constexpr int64_t kStartNs = 1'790'000'000'000'000'000;
constexpr std::chrono::seconds kWait(20);

struct Harness {
  explicit Harness(const std::string& dir, log::Options log_options = {}) {
    log_options.dir = dir;
    auto opened = log::Log::Open(log_options);
    REQUIRE(opened.ok());
    log = std::move(opened.value());
    auto store = log::SnapshotStore::Open(dir, false);
    REQUIRE(store.ok());
    snapshots = std::move(store.value());
    OpenEngine();
  }

  void OpenEngine(Authorizer* authorizer = nullptr) {
    EngineOptions options;
    options.log = log.get();
    options.snapshots = snapshots.get();
    options.clock = &clock;
    options.rng = &rng;
    options.poster = &poster;
    options.authorizer = authorizer;
    options.snapshot_interval_events = 0;
    auto opened = Engine::Open(options);
    REQUIRE(opened.ok());
    engine = std::move(opened.value());
  }

  // Submits and waits for the reply.
  Reply Run(Command command) {
    std::optional<Reply> reply;
    engine->Submit(Principal::System(), std::move(command), "req", [&](Reply r) { reply = r; });
    REQUIRE(poster.RunUntil([&] { return reply.has_value(); }, kWait));
    return *reply;
  }

  void Drain() { REQUIRE(poster.RunUntil([&] { return engine->Idle(); }, kWait)); }

  SimClock clock{kStartNs};
  SeededRng rng{42};
  QueuePoster poster;
  std::unique_ptr<log::Log> log;
  std::unique_ptr<log::SnapshotStore> snapshots;
  std::unique_ptr<Engine> engine;
};

SetConfig Config(std::string key, std::string value) {
  return SetConfig{{{std::move(key), std::move(value)}}};
}

TEST_CASE("an accepted command is visible only once durable") {
  testing::TempDir dir;
  Harness h(dir.path());
  std::optional<Reply> reply;
  h.engine->Submit(Principal::System(), Config("default_vm_priority", "50"), "r1",
                   [&](Reply r) { reply = r; });
  // Not yet acknowledged by the log: the view must not show it.
  CHECK(!reply.has_value());
  CHECK(h.engine->views().config.entries.empty());
  REQUIRE(h.poster.RunUntil([&] { return reply.has_value(); }, kWait));
  REQUIRE(reply->ok());
  CHECK(reply->seq_first == 1);
  CHECK(reply->seq_last == 1);
  CHECK(h.log->head().seq == 1);
  CHECK(h.engine->views().config.entries.at("default_vm_priority").value == "50");
  CHECK(h.engine->views().config.entries.at("default_vm_priority").changed.time_ns == kStartNs);
}

TEST_CASE("a rejected command appends nothing") {
  testing::TempDir dir;
  Harness h(dir.path());
  Reply unknown = h.Run(Config("no_such_key", "1"));
  CHECK(unknown.rejection == Rejection::kUnknownConfigKey);
  Reply bad = h.Run(Config("default_vm_priority", "abc"));
  CHECK(bad.rejection == Rejection::kInvalidConfigValue);
  CHECK(bad.message.find("default_vm_priority") != std::string::npos);
  // All or nothing: one bad key rejects the valid one beside it.
  Reply mixed = h.Run(SetConfig{{{"description", "x"}, {"default_vm_priority", "0"}}});
  CHECK(mixed.rejection == Rejection::kInvalidConfigValue);
  CHECK(h.log->head().seq == 0);
  CHECK(h.engine->views().config.entries.empty());
}

TEST_CASE("setting a key to its current value is recorded again") {
  testing::TempDir dir;
  Harness h(dir.path());
  REQUIRE(h.Run(Config("description", "lab")).ok());
  Reply again = h.Run(Config("description", "lab"));
  CHECK(again.ok());
  CHECK(again.seq_first == 2);
  CHECK(h.log->head().seq == 2);
}

TEST_CASE("concurrent sets of one key are in flight together and the last to arrive wins") {
  testing::TempDir dir;
  Harness h(dir.path());
  int ok = 0;
  for (int i = 0; i < 20; ++i) {
    h.engine->Submit(Principal::System(), Config("description", "v" + std::to_string(i)), "r",
                     [&](Reply r) { ok += r.ok(); });
  }
  CHECK(h.engine->stats().commands_queued == 0);
  h.Drain();
  CHECK(ok == 20);
  CHECK(h.log->head().seq == 20);
  CHECK(h.engine->views().config.entries.at("description").value == "v19");
}

TEST_CASE("conflicting commands in flight are serialised and validated in order") {
  testing::TempDir dir;
  Harness h(dir.path());
  std::vector<Reply> replies;
  for (int i = 0; i < 2; ++i) {
    h.engine->Submit(Principal::System(), CreateNodeGroup{"ios", "", ""}, "r",
                     [&](Reply r) { replies.push_back(r); });
  }
  CHECK(h.engine->stats().commands_inflight == 1);
  CHECK(h.engine->stats().commands_queued == 1);
  h.Drain();
  REQUIRE(replies.size() == 2);
  CHECK(replies[0].ok());
  CHECK(replies[1].rejection == Rejection::kNameTaken);
  CHECK(h.engine->views().node_groups.groups.size() == 1);
  CHECK(h.log->head().seq == 1);
}

TEST_CASE("independent commands are in flight together") {
  testing::TempDir dir;
  Harness h(dir.path());
  int ok = 0;
  for (int i = 0; i < 50; ++i) {
    h.engine->Submit(Principal::System(), CreateNodeGroup{"g" + std::to_string(i), "", ""}, "r",
                     [&](Reply r) { ok += r.ok(); });
  }
  CHECK(h.engine->stats().commands_inflight + ok == 50);
  CHECK(h.engine->stats().commands_queued == 0);
  h.Drain();
  CHECK(ok == 50);
  CHECK(h.engine->views().node_groups.groups.size() == 50);
  CHECK(h.engine->views().seq == 50);
}

TEST_CASE("a failed append answers with its status and leaves the views as the log") {
  testing::TempDir dir;
  log::Options small;
  small.map_bytes_initial = 256 * 1024;
  small.map_bytes_max = 256 * 1024;
  Harness h(dir.path(), small);
  const std::string description(kDescriptionBytesMax, 'd');
  Reply failed;
  for (int i = 0; i < 10'000; ++i) {
    failed = h.Run(CreateNodeGroup{"g" + std::to_string(i), description, ""});
    if (!failed.status.ok()) {
      break;
    }
  }
  REQUIRE(!failed.status.ok());
  CHECK(failed.status.code() == StatusCode::kNoSpace);
  CHECK(failed.ids.empty());
  CHECK(h.engine->views().seq == h.log->head().seq);
  CHECK(h.engine->views().node_groups.groups.size() == h.log->head().seq);
  CHECK(h.engine->stats().commands_failed == 1);
}

std::string Digest(char c) { return "sha256:" + std::string(64, c); }

PushManifest Push(std::string repository, char digest, std::string tag,
                  std::vector<ManifestReference> refs = {}) {
  PushManifest push;
  push.repository = std::move(repository);
  push.digest = Digest(digest);
  push.media_type = "application/vnd.oci.image.manifest.v1+json";
  push.size = 100;
  push.references = std::move(refs);
  push.tag = std::move(tag);
  return push;
}

TEST_CASE("restart rebuilds the same views, from a snapshot or from the log alone") {
  testing::TempDir dir;
  std::string before;
  {
    Harness h(dir.path());
    REQUIRE(h.Run(Config("registry_address", "http://registry:8089")).ok());
    Reply group = h.Run(CreateNodeGroup{"ios", "phones", ""});
    REQUIRE(group.ok());
    REQUIRE(h.Run(JoinNode{"", "mac-1", "10.0.0.2", 8, 16384, 8, 8192, 2, "", "arm64", "sim",
                           {group.ids[0]}})
                .ok());
    Reply pushed = h.Run(Push("macos-15", 'a', "v1"));
    REQUIRE(pushed.ok());
    RequestVm request;
    request.vmid = pushed.ids.at(0);
    request.group_id = group.ids[0];
    request.count = 2;
    Reply vm = h.Run(request);
    REQUIRE(vm.ok());
    REQUIRE(vm.ids.size() == 2);
    ChangeVmState pulling;
    pulling.instance_id = vm.ids[0];
    pulling.state = fb::VmState::Pulling;
    REQUIRE(h.Run(pulling).ok());
    before = reducers::EncodeViews(h.engine->views());
    REQUIRE(h.engine->Close().ok());
    CHECK(h.engine->stats().snapshots_written == 1);
  }
  {
    Harness h(dir.path());
    CHECK(h.engine->recovery().snapshot_seq == 7);
    CHECK(reducers::EncodeViews(h.engine->views()) == before);
  }
  {
    // Without snapshots: the same views from the log alone.
    log::Options options;
    options.dir = dir.path();
    auto log = log::Log::Open(options);
    REQUIRE(log.ok());
    reducers::RebuildStats stats;
    auto views = reducers::Rebuild(*log.value(), nullptr, UINT64_MAX, &stats);
    REQUIRE(views.ok());
    CHECK(stats.snapshot_seq == 0);
    CHECK(reducers::EncodeViews(views.value()) == before);
  }
}

TEST_CASE("event times never go backwards when the wall clock does") {
  testing::TempDir dir;
  Harness h(dir.path());
  REQUIRE(h.Run(Config("description", "a")).ok());
  h.clock.Advance(-5'000'000'000);
  REQUIRE(h.Run(Config("description", "b")).ok());
  CHECK(h.engine->views().config.entries.at("description").changed.time_ns == kStartNs);
}

TEST_CASE("an authorizer that refuses rejects with forbidden and appends nothing") {
  struct DenyAll : Authorizer {
    bool Allow(const Principal&, const Command&) override { return false; }
  } deny;
  testing::TempDir dir;
  Harness h(dir.path());
  h.engine.reset();
  h.OpenEngine(&deny);
  Reply reply = h.Run(Config("description", "x"));
  CHECK(reply.rejection == Rejection::kForbidden);
  CHECK(h.log->head().seq == 0);
}

TEST_CASE("the command queue holds kQueuedCommandsMax and refuses one more") {
  testing::TempDir dir;
  Harness h(dir.path());
  size_t answered = 0;
  size_t overloaded = 0;
  auto count = [&](Reply r) {
    answered++;
    overloaded += r.rejection == Rejection::kOverloaded;
  };
  // One in flight, then the queue filled with commands on the same key (they must wait).
  const CreateNodeGroup create{"ios", "", ""};
  h.engine->Submit(Principal::System(), create, "r", count);
  for (size_t i = 0; i < kQueuedCommandsMax + 1; ++i) {
    h.engine->Submit(Principal::System(), create, "r", count);
  }
  CHECK(h.engine->stats().commands_queued == kQueuedCommandsMax);
  CHECK(overloaded == 1);
  h.Drain();
  CHECK(answered == kQueuedCommandsMax + 2);
  CHECK(h.log->head().seq == 1);  // The queued ones found the name taken.
}

TEST_CASE("VM state machine allows exactly the Anka transitions") {
  using S = fb::VmState;
  CHECK(VmTransitionAllowed(S::Scheduling, S::Pulling));
  CHECK(VmTransitionAllowed(S::Pulling, S::Started));
  CHECK(VmTransitionAllowed(S::Started, S::Stopping));
  CHECK(VmTransitionAllowed(S::Stopping, S::Stopped));
  CHECK(VmTransitionAllowed(S::Stopped, S::Started));
  CHECK(VmTransitionAllowed(S::Started, S::Pushing));
  CHECK(VmTransitionAllowed(S::Terminating, S::Terminated));
  CHECK(VmTransitionAllowed(S::Error, S::Terminated));
  CHECK(!VmTransitionAllowed(S::Terminated, S::Started));
  CHECK(!VmTransitionAllowed(S::Terminated, S::Terminated));
  CHECK(!VmTransitionAllowed(S::Scheduling, S::Stopped));
  CHECK(!VmTransitionAllowed(S::Terminating, S::Started));
  CHECK(!VmTransitionAllowed(S::Stopped, S::Stopping));
}

TEST_CASE("registry: pushes number tags, tags are immutable, reverts cut the tail") {
  testing::TempDir dir;
  Harness h(dir.path());
  Reply first = h.Run(Push("macos", 'a', "v1"));
  REQUIRE(first.ok());
  const std::string id = first.ids.at(0);
  REQUIRE(h.Run(Push(id, 'b', "v2")).ok());      // By id.
  REQUIRE(h.Run(Push("macos", 'c', "v3")).ok());  // By name.
  const auto& t = h.engine->views().templates.templates.at(id);
  REQUIRE(t.tags.size() == 3);
  CHECK(t.tags[2].version == 2);
  CHECK(t.name == "macos");

  // The same push again records nothing; another manifest under a tag is refused.
  const uint64_t seq = h.engine->views().seq;
  CHECK(h.Run(Push("macos", 'a', "v1")).ok());
  CHECK(h.engine->views().seq == seq);
  Reply clash = h.Run(Push("macos", 'd', "v1"));
  CHECK(clash.rejection == Rejection::kNameTaken);
  CHECK(clash.message.find("immutable") != std::string::npos);
  // Malformed digests and an index naming a manifest the template lacks.
  PushManifest bad = Push("macos", 'e', "v9");
  bad.digest = "sha256:ABC";
  CHECK(h.Run(bad).rejection == Rejection::kInvalidArgument);
  Reply index = h.Run(Push("macos", 'f', "idx",
                           {{Digest('9'), 10, "application/vnd.oci.image.manifest.v1+json"}}));
  CHECK(index.rejection == Rejection::kNotFound);
  CHECK(h.Run(Push("macos", 'f', "idx",
                   {{Digest('a'), 10, "application/vnd.oci.image.manifest.v1+json"}}))
            .ok());

  // Revert v2: v2 and everything after it go; v1 stays. Versions continue from the survivors.
  RemoveTemplateContent revert;
  revert.template_ref = "macos";
  revert.tag = "v2";
  Reply reverted = h.Run(revert);
  REQUIRE(reverted.ok());
  CHECK(reverted.ids == std::vector<std::string>{id, "v2", "v3", "idx"});
  const auto& after = h.engine->views().templates.templates.at(id);
  REQUIRE(after.tags.size() == 1);
  CHECK(after.manifests.contains(Digest('a')));
  CHECK_FALSE(after.manifests.contains(Digest('c')));
  REQUIRE(h.Run(Push("macos", '7', "v4")).ok());
  CHECK(h.engine->views().templates.templates.at(id).tags.back().version == 1);
  revert.tag = "nope";
  CHECK(h.Run(revert).message == "No such tag nope");

  // A manifest an index refers to cannot be deleted under it.
  REQUIRE(h.Run(Push("macos", '8', "",
                     {{Digest('a'), 10, "application/vnd.oci.image.index.v1+json"}}))
              .ok());
  RemoveTemplateContent del;
  del.mode = RemoveTemplateContent::Mode::kDeleteManifest;
  del.template_ref = id;
  del.digest = Digest('a');
  CHECK(h.Run(del).rejection == Rejection::kInvalidArgument);
  del.digest = Digest('8');
  CHECK(h.Run(del).ok());
  del.digest = Digest('a');
  CHECK(h.Run(del).ok());
  CHECK(h.engine->views().templates.templates.at(id).tags.size() == 1);  // v4 only.

  // Reverting a tag that names an index takes the index's untagged children with it.
  REQUIRE(h.Run(Push("macos", '5', "")).ok());
  REQUIRE(h.Run(Push("macos", '6', "multi",
                     {{Digest('5'), 10, "application/vnd.oci.image.manifest.v1+json"}}))
              .ok());
  RemoveTemplateContent drop_index;
  drop_index.template_ref = "macos";
  drop_index.tag = "multi";
  REQUIRE(h.Run(drop_index).ok());
  CHECK_FALSE(h.engine->views().templates.templates.at(id).manifests.contains(Digest('5')));
  CHECK_FALSE(h.engine->views().templates.templates.at(id).manifests.contains(Digest('6')));

  RemoveTemplateContent all;
  all.mode = RemoveTemplateContent::Mode::kDeleteTemplate;
  all.template_ref = "macos";
  CHECK(h.Run(all).ok());
  CHECK(h.engine->views().templates.templates.empty());
  CHECK(h.Run(all).message == "VM not in the registry");
}

MirroredTemplate Mirrored(std::string id, std::string name,
                          std::vector<std::pair<std::string, char>> tags) {
  MirroredTemplate t{std::move(id), std::move(name), {}};
  int32_t version = 0;
  for (auto& [tag, digest] : tags) {
    t.tags.push_back({tag, version, "", Digest(digest), kStartNs + version});
    version++;
  }
  return t;
}

TEST_CASE("mirror: a followed registry's catalogue records only its differences") {
  testing::TempDir dir;
  Harness h(dir.path());
  // A template pushed here (not mirrored) is never touched by the mirror.
  Reply pushed = h.Run(Push("local-only", 'f', "v1"));
  REQUIRE(pushed.ok());
  const std::string local = pushed.ids.at(0);
  MirrorRegistryTemplates catalogue{{Mirrored("reg-1", "macos", {{"v1", 'a'}, {"v2", 'b'}}),
                                     Mirrored("reg-2", "linux", {{"base", 'c'}})}};
  Reply first = h.Run(catalogue);
  REQUIRE(first.ok());
  CHECK(first.ids == std::vector<std::string>{"reg-1", "reg-2"});
  const auto& templates = h.engine->views().templates.templates;
  REQUIRE(templates.size() == 3);
  const reducers::Template& macos = templates.at("reg-1");
  CHECK(macos.mirrored);
  CHECK(macos.name == "macos");
  REQUIRE(macos.tags.size() == 2);
  CHECK(macos.tags[1].tag == "v2");
  CHECK(macos.tags[1].version == 1);
  CHECK(macos.tags[1].digest == Digest('b'));
  CHECK(macos.tags[1].registered.time_ns == kStartNs + 1);
  CHECK_FALSE(templates.at(local).mirrored);

  // The same catalogue again: no event, however often.
  const uint64_t seq = h.engine->views().seq;
  for (int i = 0; i < 3; i++) {
    Reply again = h.Run(catalogue);
    CHECK(again.ok());
    CHECK(again.ids.empty());
  }
  CHECK(h.engine->views().seq == seq);

  // A revert on the registry (v2 gone) and a removed template: one event each.
  catalogue.templates = {Mirrored("reg-1", "macos", {{"v1", 'a'}})};
  Reply changed = h.Run(catalogue);
  REQUIRE(changed.ok());
  CHECK(changed.ids == std::vector<std::string>{"reg-1", "reg-2"});
  CHECK(h.engine->views().seq == seq + 2);
  CHECK(templates.at("reg-1").tags.size() == 1);
  CHECK_FALSE(templates.contains("reg-2"));
  CHECK(templates.contains(local));

  // A changed description or digest of a tag is a difference too.
  catalogue.templates[0].tags[0].description = "golden";
  REQUIRE(h.Run(catalogue).ids == std::vector<std::string>{"reg-1"});
  CHECK(templates.at("reg-1").tags[0].description == "golden");

  // A malformed catalogue records nothing, not even its good part.
  const uint64_t before_bad = h.engine->views().seq;
  MirrorRegistryTemplates bad{{Mirrored("reg-3", "new", {{"v1", 'd'}}),
                               Mirrored("reg-4", "x", {{"v1", 'e'}})}};
  bad.templates[1].tags[0].digest = "sha256:XYZ";
  CHECK(h.Run(bad).rejection == Rejection::kInvalidArgument);
  MirrorRegistryTemplates twice{{Mirrored("reg-3", "a", {}), Mirrored("reg-3", "b", {})}};
  CHECK(h.Run(twice).rejection == Rejection::kInvalidArgument);
  MirrorRegistryTemplates no_id{{Mirrored("", "a", {})}};
  CHECK(h.Run(no_id).rejection == Rejection::kInvalidArgument);
  CHECK(h.engine->views().seq == before_bad);

  // An empty catalogue removes every mirrored template and keeps the local one.
  REQUIRE(h.Run(MirrorRegistryTemplates{}).ok());
  CHECK(templates.size() == 1);
  CHECK(templates.contains(local));

  // Replay: the log alone gives the same views, byte for byte.
  const std::string views = reducers::EncodeViews(h.engine->views());
  auto rebuilt = reducers::Rebuild(*h.log, nullptr, UINT64_MAX, nullptr);
  REQUIRE(rebuilt.ok());
  CHECK(reducers::EncodeViews(rebuilt.value()) == views);
}

TEST_CASE("distributions: name existing nodes and tags; reports move per-node status") {
  testing::TempDir dir;
  Harness h(dir.path());
  REQUIRE(h.Run(Push("macos", 'a', "v1")).ok());
  RequestDistribution none;
  none.action = "distribute";
  none.template_id = "macos";
  CHECK(h.Run(none).message == "no node to distribute to");
  Reply node = h.Run(JoinNode{"", "mac-1", "10.0.0.2", 8, 16384, 8, 8192, 2, "", "arm64", "sim",
                              {}});
  REQUIRE(node.ok());
  // A joined node is Offline until its agent reports: then it can be asked.
  CHECK(h.Run(none).message == "no node to distribute to: every node is Offline");
  UpdateNodeStatus active;
  active.node_id = node.ids.at(0);
  REQUIRE(h.Run(active).ok());
  Reply asked = h.Run(none);
  REQUIRE(asked.ok());
  const auto& d = h.engine->views().distributions.requests.at(asked.ids.at(0));
  CHECK(d.tag == "v1");  // The newest when none is named.
  CHECK(d.nodes.at(node.ids.at(0)).status == "pending");
  none.tag = "v7";
  CHECK(h.Run(none).message == "No such tag v7");

  // Progress never goes back, and a settled node stays settled, whatever order reports come in.
  const auto node_status = [&] {
    return h.engine->views().distributions.requests.at(asked.ids.at(0)).nodes.begin()->second;
  };
  REQUIRE(h.Run(ReportDistribution{asked.ids.at(0), node.ids.at(0), "in_progress", 60, ""})
              .ok());
  const uint64_t before_late = h.log->head().seq;
  REQUIRE(h.Run(ReportDistribution{asked.ids.at(0), node.ids.at(0), "in_progress", 30, ""})
              .ok());
  CHECK(node_status().progress == 60);
  CHECK(h.log->head().seq == before_late);  // Nothing recorded.
  ReportDistribution report{asked.ids.at(0), node.ids.at(0), "done", 100, ""};
  REQUIRE(h.Run(report).ok());
  CHECK(node_status().status == "done");
  REQUIRE(h.Run(ReportDistribution{asked.ids.at(0), node.ids.at(0), "in_progress", 90, ""})
              .ok());
  REQUIRE(h.Run(ReportDistribution{asked.ids.at(0), node.ids.at(0), "error", 0, "late"}).ok());
  CHECK(node_status().status == "done");
  CHECK(node_status().progress == 100);

  report.node_id = "other";
  CHECK(h.Run(report).rejection == Rejection::kInvalidArgument);
  report.node_id = node.ids.at(0);
  report.status = "bogus";
  CHECK(h.Run(report).rejection == Rejection::kInvalidArgument);
  Reply cleared = h.Run(ClearDistributions{});
  REQUIRE(cleared.ok());
  CHECK(cleared.ids == std::vector<std::string>{asked.ids.at(0)});
  CHECK(h.engine->views().distributions.requests.empty());

  // With no node named, only nodes that can act are asked: an Offline one is left out.
  Reply second = h.Run(JoinNode{"", "mac-2", "10.0.0.3", 8, 16384, 8, 8192, 2, "", "arm64",
                                "sim", {}});
  REQUIRE(second.ok());
  active.node_id = second.ids.at(0);
  REQUIRE(h.Run(active).ok());
  UpdateNodeStatus offline;
  offline.node_id = second.ids.at(0);
  offline.state = fb::NodeState::Offline;
  REQUIRE(h.Run(offline).ok());
  none.tag = "v1";
  Reply active_only = h.Run(none);
  REQUIRE(active_only.ok());
  const auto& asked_nodes = h.engine->views().distributions.requests.at(active_only.ids.at(0))
                                .nodes;
  CHECK(asked_nodes.size() == 1);
  CHECK(asked_nodes.contains(node.ids.at(0)));
  UpdateNodeStatus first_offline = offline;
  first_offline.node_id = node.ids.at(0);
  REQUIRE(h.Run(first_offline).ok());
  CHECK(h.Run(none).message == "no node to distribute to: every node is Offline");
  none.node_ids = {second.ids.at(0)};  // Named explicitly: the operator's call.
  CHECK(h.Run(none).ok());
  none.node_ids.clear();
}

}  // namespace
}  // namespace cloister::engine
