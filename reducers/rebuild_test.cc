// Rebuild: replays are deterministic, a snapshot plus the tail equals a full replay byte for byte,
// and every kind of bad snapshot (damaged, truncated, of another log, undecodable) is refused and
// recorded, falling back to an older one or to a replay from seq 1 with the same result.
#include "reducers/rebuild.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "log/log.h"
#include "log/snapshot_store.h"
#include "log/status.h"
#include "log/store_testing.h"
#include "reducers/mixed_log.h"
#include "reducers/snapshot.h"
#include "tests/testutil.h"

namespace cloister::reducers {
namespace {

using cloister::testing::TempDir;

constexpr int64_t kTime0Ns = 1'795'003'200'000'000'000;
constexpr uint64_t kEvents = 4000;

std::unique_ptr<log::Log> OpenLog(const std::string& dir) {
  log::Options options;
  options.dir = dir;
  auto log = log::Log::Open(options);
  INFO(log.status().ToString());
  REQUIRE(log.ok());
  return std::move(log.value());
}

std::unique_ptr<log::Log> MixedLog(const std::string& dir, uint64_t seed, uint64_t events) {
  auto log = OpenLog(dir);
  Status s = AppendMixedEvents(log.get(), events, seed, kTime0Ns);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return log;
}

std::unique_ptr<log::SnapshotStore> OpenStore(const std::string& dir) {
  auto store = log::SnapshotStore::Open(dir, /*read_only=*/false);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store.value());
}

Views MustRebuild(const log::Log& log, const log::SnapshotStore* store, uint64_t seq_to,
                  RebuildStats* stats = nullptr) {
  auto views = Rebuild(log, store, seq_to, stats);
  INFO(views.status().ToString());
  REQUIRE(views.ok());
  return std::move(views.value());
}

std::span<const uint8_t> Span(const std::string& bytes) {
  return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

// Stores the views at seq (replayed in full) as the snapshot at seq, as the engine would.
void PutSnapshot(const log::Log& log, log::SnapshotStore* store, uint64_t seq) {
  const Views views = MustRebuild(log, nullptr, seq);
  REQUIRE(store->Put(seq, views.hash, Span(EncodeViews(views))).ok());
}

TEST_CASE("two full replays of the same log give byte-identical views") {
  TempDir tmp;
  auto log = MixedLog(tmp.path(), 1, kEvents);
  RebuildStats stats;
  const Views first = MustRebuild(*log, nullptr, kSeqHead, &stats);
  const Views second = MustRebuild(*log, nullptr, kSeqHead);
  CHECK(EncodeViews(first) == EncodeViews(second));
  CHECK(first.seq == kEvents);
  CHECK(first.hash == log->head().hash);
  CHECK(stats.snapshot_seq == 0);
  CHECK(stats.events_applied == kEvents);
  CHECK(stats.seq == kEvents);
  CHECK(stats.snapshots_rejected.empty());
  // The stream reached every view.
  CHECK(!first.config.entries.empty());
  CHECK(!first.nodes.nodes.empty());
  CHECK(!first.node_groups.groups.empty());
  CHECK(!first.vm_instances.instances.empty());
}

TEST_CASE("the same events in a second log give byte-identical views") {
  TempDir a;
  TempDir b;
  auto log_a = MixedLog(a.path(), 9, 1500);
  auto log_b = MixedLog(b.path(), 9, 1500);
  CHECK(EncodeViews(MustRebuild(*log_a, nullptr, kSeqHead)) ==
        EncodeViews(MustRebuild(*log_b, nullptr, kSeqHead)));
}

TEST_CASE("a snapshot taken mid-way plus the tail equals a full replay, byte for byte") {
  TempDir tmp;
  auto log = MixedLog(tmp.path(), 2, kEvents);
  auto store = OpenStore(tmp.path());
  PutSnapshot(*log, store.get(), 2000);
  RebuildStats stats;
  const Views from_snapshot = MustRebuild(*log, store.get(), kSeqHead, &stats);
  CHECK(stats.snapshot_seq == 2000);
  CHECK(stats.events_applied == kEvents - 2000);
  CHECK(stats.snapshots_rejected.empty());
  CHECK(EncodeViews(from_snapshot) == EncodeViews(MustRebuild(*log, nullptr, kSeqHead)));
}

TEST_CASE("a snapshot at exactly seq_to needs no events; one past seq_to is not used") {
  TempDir tmp;
  auto log = MixedLog(tmp.path(), 3, 1000);
  auto store = OpenStore(tmp.path());
  PutSnapshot(*log, store.get(), 400);
  PutSnapshot(*log, store.get(), 800);
  RebuildStats at;
  const Views at_800 = MustRebuild(*log, store.get(), 800, &at);
  CHECK(at.snapshot_seq == 800);
  CHECK(at.events_applied == 0);
  CHECK(EncodeViews(at_800) == EncodeViews(MustRebuild(*log, nullptr, 800)));
  RebuildStats before;
  const Views at_799 = MustRebuild(*log, store.get(), 799, &before);
  CHECK(before.snapshot_seq == 400);
  CHECK(before.events_applied == 399);
  CHECK(before.snapshots_rejected.empty());
  CHECK(EncodeViews(at_799) == EncodeViews(MustRebuild(*log, nullptr, 799)));
}

// A store holding good snapshots at 1000 and 3000, the newer one then damaged by `damage`.
struct DamagedCase {
  const char* name;
  std::function<void(const log::Log&, log::SnapshotStore*)> damage;
  const char* reason;  // Part of the recorded reason.
};

TEST_CASE("a bad newest snapshot is refused with its reason; the older one is used instead") {
  const std::vector<DamagedCase> cases = {
      {"a flipped payload byte",
       [](const log::Log&, log::SnapshotStore* store) {
         REQUIRE(store->EditStoredForTest(3000, [](std::string* v) { (*v)[500] ^= 0x10; }).ok());
       },
       "SHA-256 mismatch"},
      {"a truncated value",
       [](const log::Log&, log::SnapshotStore* store) {
         REQUIRE(
             store->EditStoredForTest(3000, [](std::string* v) { v->resize(v->size() / 2); }).ok());
       },
       "snapshot 3000"},
      {"a hash that is not the log's",
       [](const log::Log& log, log::SnapshotStore* store) {
         const Views views = MustRebuild(log, nullptr, 3000);
         log::Hash wrong = views.hash;
         wrong[0] ^= 1;
         REQUIRE(store->Put(3000, wrong, Span(EncodeViews(views))).ok());
       },
       "was taken of another log"},
      {"a payload that is not a views encoding",
       [](const log::Log& log, log::SnapshotStore* store) {
         const Views views = MustRebuild(log, nullptr, 3000);
         REQUIRE(store->Put(3000, views.hash, Span("not a views encoding at all")).ok());
       },
       "views encoding: bad magic"},
      {"views of another seq stored under this one",
       [](const log::Log& log, log::SnapshotStore* store) {
         const Views views = MustRebuild(log, nullptr, 2999);
         REQUIRE(
             store->Put(3000, MustRebuild(log, nullptr, 3000).hash, Span(EncodeViews(views))).ok());
       },
       "decodes to views at seq 2999"},
  };
  for (const DamagedCase& c : cases) {
    SECTION(c.name) {
      TempDir tmp;
      auto log = MixedLog(tmp.path(), 4, kEvents);
      auto store = OpenStore(tmp.path());
      PutSnapshot(*log, store.get(), 1000);
      PutSnapshot(*log, store.get(), 3000);
      c.damage(*log, store.get());
      RebuildStats stats;
      const Views views = MustRebuild(*log, store.get(), kSeqHead, &stats);
      CHECK(stats.snapshot_seq == 1000);
      REQUIRE(stats.snapshots_rejected.size() == 1);
      CHECK(stats.snapshots_rejected[0].seq == 3000);
      CHECK_THAT(stats.snapshots_rejected[0].reason, Catch::Contains(c.reason));
      CHECK(stats.events_applied == kEvents - 1000);
      CHECK(EncodeViews(views) == EncodeViews(MustRebuild(*log, nullptr, kSeqHead)));
    }
  }
}

TEST_CASE("a snapshot of another log is refused") {
  TempDir tmp;
  TempDir other;
  auto log = MixedLog(tmp.path(), 5, 2000);
  auto other_log = MixedLog(other.path(), 6, 2000);
  auto store = OpenStore(tmp.path());
  PutSnapshot(*other_log, store.get(), 1500);
  RebuildStats stats;
  const Views views = MustRebuild(*log, store.get(), kSeqHead, &stats);
  CHECK(stats.snapshot_seq == 0);
  REQUIRE(stats.snapshots_rejected.size() == 1);
  CHECK_THAT(stats.snapshots_rejected[0].reason, Catch::Contains("was taken of another log"));
  CHECK(EncodeViews(views) == EncodeViews(MustRebuild(*log, nullptr, kSeqHead)));
}

TEST_CASE("when every snapshot is bad, the views come from a full replay") {
  TempDir tmp;
  auto log = MixedLog(tmp.path(), 7, kEvents);
  auto store = OpenStore(tmp.path());
  PutSnapshot(*log, store.get(), 1000);
  PutSnapshot(*log, store.get(), 3000);
  for (uint64_t seq : {1000, 3000}) {
    REQUIRE(store->EditStoredForTest(seq, [](std::string* v) { v->back() ^= 0x80; }).ok());
  }
  RebuildStats stats;
  const Views views = MustRebuild(*log, store.get(), kSeqHead, &stats);
  CHECK(stats.snapshot_seq == 0);
  REQUIRE(stats.snapshots_rejected.size() == 2);
  CHECK(stats.snapshots_rejected[0].seq == 3000);
  CHECK(stats.snapshots_rejected[1].seq == 1000);
  CHECK(stats.events_applied == kEvents);
  CHECK(EncodeViews(views) == EncodeViews(MustRebuild(*log, nullptr, kSeqHead)));
}

TEST_CASE("a snapshot beyond the head of a shorter log is skipped, never trusted") {
  TempDir tmp;
  TempDir longer;
  auto log = MixedLog(tmp.path(), 8, 500);
  auto longer_log = MixedLog(longer.path(), 8, 900);  // The same events, and 400 more.
  auto store = OpenStore(tmp.path());
  PutSnapshot(*longer_log, store.get(), 800);
  RebuildStats stats;
  // Asking for a seq the log does not have is an error before any snapshot is looked at.
  CHECK(Rebuild(*log, store.get(), 800, &stats).status().code() == StatusCode::kInvalidArgument);
  const Views views = MustRebuild(*log, store.get(), kSeqHead, &stats);
  CHECK(stats.snapshot_seq == 0);
  CHECK(stats.snapshots_rejected.empty());  // Newer than asked for: skipped, not refused.
  CHECK(views.seq == 500);
}

TEST_CASE("seq_to beyond the head is kInvalidArgument naming both; seq_to 0 is empty views") {
  TempDir tmp;
  auto log = MixedLog(tmp.path(), 9, 100);
  auto beyond = Rebuild(*log, nullptr, 101);
  CHECK(beyond.status().code() == StatusCode::kInvalidArgument);
  CHECK(beyond.status().message() == "seq 101 is beyond the head of the log (seq 100)");
  CHECK(MustRebuild(*log, nullptr, 0) == Views());
}

TEST_CASE("an empty log rebuilds to empty views") {
  TempDir tmp;
  auto log = OpenLog(tmp.path());
  auto store = OpenStore(tmp.path());
  CHECK(MustRebuild(*log, store.get(), kSeqHead) == Views());
}

TEST_CASE("a corrupted event in the tail is kCorruption naming its seq") {
  TempDir tmp;
  { auto log = MixedLog(tmp.path(), 10, 300); }
  Status edited = log::testing::RewriteStoredEvent(
      tmp.path(), 150, [](std::string* bytes) { std::memset(bytes->data(), 0xEE, 16); });
  REQUIRE(edited.ok());
  auto log = OpenLog(tmp.path());
  RebuildStats stats;
  auto views = Rebuild(*log, nullptr, kSeqHead, &stats);
  CHECK(views.status().code() == StatusCode::kCorruption);
  CHECK_THAT(views.status().message(), Catch::StartsWith("event 150: "));
  CHECK(stats.events_applied == 149);
}

}  // namespace
}  // namespace cloister::reducers
