// Unit tests for the event log: one TEST_CASE per edge of the format and the writer, against real
// LMDB in temporary directories. Corruption is made by editing the store with raw LMDB after the
// Log is closed, the way a bad disk or a tamperer would.
#include "log/log.h"

#include <lmdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "log/draft.h"
#include "log/events_generated.h"
#include "log/filesystem.h"
#include "log/hash.h"
#include "log/status.h"
#include "log/store_testing.h"
#include "tests/testutil.h"

namespace cloister::log {
namespace {

using cloister::testing::TempDir;

Draft NodeJoinedDraft(uint64_t i, size_t name_bytes = 16) {
  DraftBuilder builder;
  auto& fbb = builder.fbb();
  std::string node_id = "node-" + std::to_string(i);
  std::string name(name_bytes, static_cast<char>('a' + i % 26));
  auto payload = fb::CreateNodeJoinedDirect(fbb, node_id.c_str(), name.c_str(), "127.0.0.1", 8,
                                            16384, 16, 32768, 2, "count", "amd64", "sim");
  std::string request_id = "req-" + std::to_string(i);  // Outlives the envelope's view of it.
  Envelope envelope;
  envelope.time_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(i);
  envelope.actor_kind = fb::ActorKind::Node;
  envelope.actor_id = node_id;
  envelope.request_id = request_id;
  return builder.Finish(envelope, payload);
}

std::vector<Draft> Drafts(uint64_t first, size_t count) {
  std::vector<Draft> drafts;
  for (size_t i = 0; i < count; i++) {
    drafts.push_back(NodeJoinedDraft(first + i));
  }
  return drafts;
}

std::unique_ptr<Log> OpenOrFail(const std::string& dir, bool read_only = false) {
  Options options;
  options.dir = dir;
  options.read_only = read_only;
  auto log = Log::Open(options);
  INFO((log.ok() ? std::string() : log.status().ToString()));
  REQUIRE(log.ok());
  return std::move(log).value();
}

std::vector<uint64_t> ScanSeqs(const Log& log, uint64_t from = 1, uint64_t to = UINT64_MAX) {
  std::vector<uint64_t> seqs;
  Status s = log.Scan(from, to, [&](const EventView& view) {
    seqs.push_back(view.seq);
    return true;
  });
  INFO(s.ToString());
  REQUIRE(s.ok());
  return seqs;
}

// Store edits go through log/store_testing.h; each must succeed for the test to mean anything.
template <typename Fn>
void EditStore(const std::string& dir, Fn fn) {
  Status s = testing::EditStore(dir, [&](MDB_txn* txn, MDB_dbi events, MDB_dbi meta) {
    fn(txn, events, meta);
    return true;
  });
  INFO(s.ToString());
  REQUIRE(s.ok());
}

template <typename Edit>
void RewriteEvent(const std::string& dir, uint64_t seq, Edit edit) {
  Status s = testing::RewriteStoredEvent(dir, seq, edit);
  INFO(s.ToString());
  REQUIRE(s.ok());
}

MDB_val SeqKey(uint64_t seq, std::array<uint8_t, 8>* buf) {
  *buf = testing::SeqKey(seq);
  return MDB_val{buf->size(), buf->data()};
}

bool Mentions(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

TEST_CASE("empty log has head zero and verifies") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  CHECK(log->head().seq == 0);
  CHECK(log->head().hash == Hash{});
  CHECK(ScanSeqs(*log).empty());
  auto head = log->VerifyAll();
  REQUIRE(head.ok());
  CHECK(head->seq == 0);
}

TEST_CASE("append and read back") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  auto result = log->Append(Drafts(1, 1));
  REQUIRE(result.ok());
  CHECK(result->seq_first == 1);
  CHECK(result->seq_last == 1);
  int seen = 0;
  Status s = log->Scan(1, UINT64_MAX, [&](const EventView& view) {
    seen++;
    CHECK(view.seq == 1);
    CHECK(view.event->seq() == 1);
    CHECK(view.event->time_ns() == 1'700'000'000'000'000'001);
    CHECK(view.event->actor()->kind() == fb::ActorKind::Node);
    CHECK(view.event->actor()->id()->str() == "node-1");
    CHECK(view.event->request_id()->str() == "req-1");
    REQUIRE(view.event->payload_type() == fb::Payload::NodeJoined);
    CHECK(view.event->payload_as_NodeJoined()->node_id()->str() == "node-1");
    CHECK(view.event->payload_as_NodeJoined()->ram_mb() == 16384);
    // Seq 1 links to the zero hash, and the view's hash is SHA-256(zero || bytes).
    Hash prev;
    std::memcpy(prev.data(), view.event->prev_hash()->bytes()->data(), 32);
    CHECK(prev == Hash{});
    ChainHasher hasher;
    CHECK(view.hash == hasher.Next(Hash{}, view.bytes));
    CHECK(view.hash == log->head().hash);
    return true;
  });
  REQUIRE(s.ok());
  CHECK(seen == 1);
}

TEST_CASE("a batch gets consecutive seqs and commits atomically") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  auto first = log->Append(Drafts(1, 5));
  auto second = log->Append(Drafts(6, 3));
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(first->seq_first == 1);
  CHECK(first->seq_last == 5);
  CHECK(second->seq_first == 6);
  CHECK(second->seq_last == 8);
  CHECK(ScanSeqs(*log) == std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(ScanSeqs(*log, 3, 6) == std::vector<uint64_t>{3, 4, 5, 6});
}

TEST_CASE("a batch larger than the commit limit is still one atomic batch") {
  TempDir tmp;
  Options options;
  options.dir = tmp.path();
  options.commit_events_max = 4;
  auto log = Log::Open(options);
  REQUIRE(log.ok());
  auto result = (*log)->Append(Drafts(1, 10));
  REQUIRE(result.ok());
  CHECK(result->seq_first == 1);
  CHECK(result->seq_last == 10);
}

TEST_CASE("invalid drafts are rejected and nothing is appended") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  REQUIRE(log->Append(Drafts(1, 1)).ok());

  SECTION("empty batch") {
    auto r = log->Append({});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
  }
  SECTION("a buffer that is not an event in the middle of a batch") {
    std::vector<Draft> drafts = Drafts(2, 3);
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(fb::CreateActorDirect(fbb, fb::ActorKind::Root, "root"));
    drafts[1] = Draft{fbb.Release()};
    auto r = log->Append(std::move(drafts));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
    CHECK(Mentions(r.status(), "event 1 of the batch"));
  }
  SECTION("an event without a payload") {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.ForceDefaults(true);
    fb::Digest zero;
    fb::EventBuilder event(fbb);
    event.add_seq(0);
    event.add_prev_hash(&zero);
    fb::FinishEventBuffer(fbb, event.Finish());
    std::vector<Draft> drafts;
    drafts.push_back(Draft{fbb.Release()});
    auto r = log->Append(std::move(drafts));
    REQUIRE_FALSE(r.ok());
    CHECK(Mentions(r.status(), "no payload"));
  }
  SECTION("more events than one append may carry") {
    auto r = log->Append(Drafts(2, kAppendEventsMax + 1));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(log->head().seq == 1);
  CHECK(ScanSeqs(*log) == std::vector<uint64_t>{1});
  REQUIRE(log->Append(Drafts(2, 1)).ok());
  CHECK(log->head().seq == 2);
}

TEST_CASE("reopen keeps events, head and hash") {
  TempDir tmp;
  Head before;
  {
    auto log = OpenOrFail(tmp.path());
    REQUIRE(log->Append(Drafts(1, 7)).ok());
    before = log->head();
  }
  auto log = OpenOrFail(tmp.path());
  CHECK(log->head().seq == before.seq);
  CHECK(log->head().hash == before.hash);
  auto next = log->Append(Drafts(8, 1));
  REQUIRE(next.ok());
  CHECK(next->seq_first == 8);
  auto verified = log->VerifyAll();
  REQUIRE(verified.ok());
  CHECK(verified->seq == 8);
}

TEST_CASE("tail and full verification agree with the stored head") {
  TempDir tmp;
  Options options;
  options.dir = tmp.path();
  options.tail_verify_events = 8;
  {
    auto log = Log::Open(options);
    REQUIRE(log.ok());
    for (int i = 0; i < 10; i++) {
      REQUIRE((*log)->Append(Drafts(static_cast<uint64_t>(i) * 20 + 1, 20)).ok());
    }
    auto verified = (*log)->VerifyAll();
    REQUIRE(verified.ok());
    CHECK(verified->seq == 200);
    CHECK(verified->hash == (*log)->head().hash);
  }
  // A flipped byte early in the log is outside the tail window: open succeeds, full
  // verification finds it.
  RewriteEvent(tmp.path(), 5, [](std::string* bytes) { (*bytes)[bytes->size() - 3] ^= 0x01; });
  auto log = Log::Open(options);
  REQUIRE(log.ok());
  auto verified = (*log)->VerifyAll();
  REQUIRE_FALSE(verified.ok());
  CHECK(verified.status().code() == StatusCode::kCorruption);
  INFO(verified.status().ToString());
  // The flip breaks either the event's own structure (event 5) or its successor's link (6).
  bool names_seq = Mentions(verified.status(), "event 5:") || Mentions(verified.status(), "event 6:");
  CHECK(names_seq);
}

TEST_CASE("a flipped byte in any event of the tail is detected at open") {
  TempDir tmp;
  {
    auto log = OpenOrFail(tmp.path());
    REQUIRE(log->Append(Drafts(1, 30)).ok());
  }
  size_t event_bytes = NodeJoinedDraft(1).bytes().size();
  for (uint64_t seq : {1, 15, 30}) {
    for (size_t offset = 0; offset < event_bytes; offset += 7) {
      RewriteEvent(tmp.path(), seq, [&](std::string* bytes) { (*bytes)[offset] ^= 0x40; });
      Options options;
      options.dir = tmp.path();
      auto log = Log::Open(options);
      INFO("seq " << seq << " offset " << offset);
      REQUIRE_FALSE(log.ok());
      CHECK(log.status().code() == StatusCode::kCorruption);
      // Names the flipped event or, when the flip hit the hashed bytes only, its successor.
      bool named = Mentions(log.status(), "event " + std::to_string(seq) + ":") ||
                   Mentions(log.status(), "event " + std::to_string(seq + 1) + ":");
      CHECK(named);
      RewriteEvent(tmp.path(), seq, [&](std::string* bytes) { (*bytes)[offset] ^= 0x40; });
    }
  }
  auto log = OpenOrFail(tmp.path());
  REQUIRE(log->VerifyAll().ok());
}

TEST_CASE("a truncated value is corruption naming its seq") {
  TempDir tmp;
  {
    auto log = OpenOrFail(tmp.path());
    REQUIRE(log->Append(Drafts(1, 10)).ok());
  }
  RewriteEvent(tmp.path(), 10, [](std::string* bytes) { bytes->resize(bytes->size() / 2); });
  Options options;
  options.dir = tmp.path();
  auto log = Log::Open(options);
  REQUIRE_FALSE(log.ok());
  CHECK(log.status().code() == StatusCode::kCorruption);
  CHECK(Mentions(log.status(), "event 10:"));
  options.read_only = true;
  auto reader = Log::Open(options);
  REQUIRE_FALSE(reader.ok());
  CHECK(Mentions(reader.status(), "event 10:"));
}

TEST_CASE("a missing event is corruption naming its seq") {
  TempDir tmp;
  {
    auto log = OpenOrFail(tmp.path());
    REQUIRE(log->Append(Drafts(1, 100)).ok());
  }
  EditStore(tmp.path(), [](MDB_txn* txn, MDB_dbi events, MDB_dbi) {
    std::array<uint8_t, 8> key_bytes;
    MDB_val key = SeqKey(20, &key_bytes);
    REQUIRE(mdb_del(txn, events, &key, nullptr) == 0);
  });
  auto log = OpenOrFail(tmp.path());  // 20 is outside the 64-event tail window.
  auto verified = log->VerifyAll();
  REQUIRE_FALSE(verified.ok());
  CHECK(Mentions(verified.status(), "event 20: missing"));
  // A scan that starts right after the hole cannot anchor its chain either.
  Status s = log->Scan(21, 30, [](const EventView&) { return true; });
  CHECK(Mentions(s, "event 20: missing"));
}

TEST_CASE("an event swapped for a valid one from elsewhere breaks the chain") {
  TempDir tmp;
  {
    auto log = OpenOrFail(tmp.path());
    REQUIRE(log->Append(Drafts(1, 20)).ok());
  }
  // A well-formed event with the right seq but forged contents: the verifier passes, the
  // chain does not.
  std::string forged;
  {
    Draft draft = NodeJoinedDraft(999);
    fb::Event* event = fb::GetMutableEvent(draft.buffer.data());
    REQUIRE(event->mutate_seq(10));
    forged.assign(reinterpret_cast<const char*>(draft.buffer.data()), draft.buffer.size());
  }
  RewriteEvent(tmp.path(), 10, [&](std::string* bytes) { *bytes = forged; });
  Options options;
  options.dir = tmp.path();
  auto log = Log::Open(options);
  REQUIRE_FALSE(log.ok());
  CHECK(Mentions(log.status(), "event 10: hash chain broken"));
}

TEST_CASE("an event stored beyond the head is corruption") {
  TempDir tmp;
  std::string copy;
  {
    auto log = OpenOrFail(tmp.path());
    REQUIRE(log->Append(Drafts(1, 3)).ok());
  }
  EditStore(tmp.path(), [](MDB_txn* txn, MDB_dbi events, MDB_dbi) {
    std::array<uint8_t, 8> key_bytes;
    MDB_val key = SeqKey(3, &key_bytes);
    MDB_val value;
    REQUIRE(mdb_get(txn, events, &key, &value) == 0);
    std::string bytes(static_cast<const char*>(value.mv_data), value.mv_size);
    MDB_val next_key = SeqKey(4, &key_bytes);
    MDB_val v{bytes.size(), bytes.data()};
    REQUIRE(mdb_put(txn, events, &next_key, &v, 0) == 0);
  });
  Options options;
  options.dir = tmp.path();
  auto log = Log::Open(options);
  REQUIRE_FALSE(log.ok());
  CHECK(Mentions(log.status(), "event 4: stored beyond the head"));
}

TEST_CASE("a wrong format version is refused") {
  TempDir tmp;
  {
    auto log = OpenOrFail(tmp.path());
    REQUIRE(log->Append(Drafts(1, 2)).ok());
  }
  EditStore(tmp.path(), [](MDB_txn* txn, MDB_dbi, MDB_dbi meta) {
    MDB_val key{14, const_cast<char*>("format_version")};
    uint8_t v2[4] = {0, 0, 0, 2};
    MDB_val value{4, v2};
    REQUIRE(mdb_put(txn, meta, &key, &value, 0) == 0);
  });
  Options options;
  options.dir = tmp.path();
  auto log = Log::Open(options);
  REQUIRE_FALSE(log.ok());
  CHECK(log.status().code() == StatusCode::kFormatMismatch);
  CHECK(Mentions(log.status(), "format version 2; this build reads version 1"));
}

TEST_CASE("many concurrent producers get gap-free, unique, ordered seqs") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  constexpr int kThreads = 16;
  constexpr int kAppendsPerThread = 50;
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppendsPerThread; i++) {
        size_t count = 1 + static_cast<size_t>((t + i) % 3);
        auto r = log->Append(Drafts(static_cast<uint64_t>(t * 1000 + i), count));
        REQUIRE(r.ok());
        CHECK(r->seq_last - r->seq_first + 1 == count);
        std::lock_guard lock(mu);
        ranges.emplace_back(r->seq_first, r->seq_last);
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t expected = 1;
  for (auto [first, last] : ranges) {
    CHECK(first == expected);  // No gap and no overlap between acknowledged ranges.
    expected = last + 1;
  }
  CHECK(log->head().seq == expected - 1);
  std::vector<uint64_t> seqs = ScanSeqs(*log);
  REQUIRE(seqs.size() == expected - 1);
  for (size_t i = 0; i < seqs.size(); i++) {
    CHECK(seqs[i] == i + 1);
  }
  REQUIRE(log->VerifyAll().ok());
}

TEST_CASE("async appends complete in seq order on the writer thread") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  std::mutex mu;
  std::vector<uint64_t> completions;
  std::atomic<int> done{0};
  for (uint64_t i = 1; i <= 100; i++) {
    log->AppendAsync(Drafts(i, 1), [&](Result<AppendResult> r) {
      REQUIRE(r.ok());
      std::lock_guard lock(mu);
      completions.push_back(r->seq_first);
      done++;
    });
  }
  while (done.load() < 100) {
    std::this_thread::yield();
  }
  CHECK(std::is_sorted(completions.begin(), completions.end()));
}

TEST_CASE("a second writer process is refused with a clear error") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    Options options;
    options.dir = tmp.path();
    auto second = Log::Open(options);
    bool refused = !second.ok() && second.status().code() == StatusCode::kBusy &&
                   Mentions(second.status(), "already open for writing by another process");
    _exit(refused ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // A second writer in the same process is refused too.
  Options options;
  options.dir = tmp.path();
  auto second = Log::Open(options);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kBusy);
}

TEST_CASE("a reader in another process sees the writer's durable events") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  REQUIRE(log->Append(Drafts(1, 10)).ok());
  int to_child[2];
  REQUIRE(pipe(to_child) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(to_child[1]);
    char go;
    if (read(to_child[0], &go, 1) != 1) _exit(3);
    Options options;
    options.dir = tmp.path();
    options.read_only = true;
    auto reader = Log::Open(options);
    if (!reader.ok()) _exit(2);
    uint64_t count = 0;
    Status s = (*reader)->Scan(1, UINT64_MAX, [&](const EventView&) {
      count++;
      return true;
    });
    auto verified = (*reader)->VerifyAll();
    bool appended_fails = false;
    (*reader)->AppendAsync(Drafts(99, 1), [&](Result<AppendResult> r) {
      appended_fails = !r.ok() && r.status().code() == StatusCode::kUnsupported;
    });
    _exit(s.ok() && verified.ok() && count == 15 && (*reader)->head().seq == 15 && appended_fails
              ? 0
              : 1);
  }
  close(to_child[0]);
  REQUIRE(log->Append(Drafts(11, 5)).ok());
  REQUIRE(write(to_child[1], "g", 1) == 1);
  close(to_child[1]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("network filesystems are refused and local ones accepted") {
  CHECK(std::string(NetworkFilesystemName(0x6969)) == "NFS");
  CHECK(std::string(NetworkFilesystemName(0xFF534D42)) == "CIFS");
  CHECK(std::string(NetworkFilesystemName(0xFE534D42)) == "SMB2");
  CHECK(std::string(NetworkFilesystemName(0x01021997)) == "9P");
  CHECK(NetworkFilesystemName(0xEF53) == nullptr);      // ext4
  CHECK(NetworkFilesystemName(0x58465342) == nullptr);  // XFS
  CHECK(NetworkFilesystemName(0x01021994) == nullptr);  // tmpfs
  CHECK(NetworkFilesystemName(0x65735546) == nullptr);  // FUSE (test filesystems)
  TempDir tmp;
  CHECK(CheckLocalFilesystem(tmp.path()).ok());
  Status missing = CheckLocalFilesystem(tmp.Sub("does-not-exist"));
  CHECK(missing.code() == StatusCode::kIoError);
}

TEST_CASE("a read-only open of a directory without a log is NotFound") {
  TempDir tmp;
  Options options;
  options.dir = tmp.Sub("nothing-here");
  options.read_only = true;
  auto log = Log::Open(options);
  REQUIRE_FALSE(log.ok());
  CHECK(log.status().code() == StatusCode::kNotFound);
}

TEST_CASE("a full map grows and no event is lost") {
  TempDir tmp;
  Options options;
  options.dir = tmp.path();
  options.map_bytes_initial = 256 * 1024;  // A few dozen pages: fills within the first batches.
  auto log = Log::Open(options);
  REQUIRE(log.ok());
  uint64_t initial = (*log)->MapBytesForTest();
  for (uint64_t i = 0; i < 40; i++) {
    auto r = (*log)->Append(Drafts(i * 100 + 1, 100));
    INFO((r.ok() ? std::string() : r.status().ToString()));
    REQUIRE(r.ok());
  }
  CHECK((*log)->MapBytesForTest() > initial);
  auto verified = (*log)->VerifyAll();
  REQUIRE(verified.ok());
  CHECK(verified->seq == 4000);
}

TEST_CASE("a map at its maximum fails appends with NoSpace and keeps earlier events") {
  TempDir tmp;
  Options options;
  options.dir = tmp.path();
  options.map_bytes_initial = 128 * 1024;
  options.map_bytes_max = 256 * 1024;
  auto log = Log::Open(options);
  REQUIRE(log.ok());
  uint64_t acked = 0;
  Status failure;
  for (uint64_t i = 0; i < 200 && failure.ok(); i++) {
    auto r = (*log)->Append(Drafts(i * 10 + 1, 10));
    if (r.ok()) {
      acked = r->seq_last;
    } else {
      failure = r.status();
    }
  }
  REQUIRE_FALSE(failure.ok());
  CHECK(failure.code() == StatusCode::kNoSpace);
  CHECK(acked > 0);
  CHECK((*log)->head().seq == acked);
  auto verified = (*log)->VerifyAll();
  REQUIRE(verified.ok());
  CHECK(verified->seq == acked);
}

TEST_CASE("scan stops early when the callback returns false") {
  TempDir tmp;
  auto log = OpenOrFail(tmp.path());
  REQUIRE(log->Append(Drafts(1, 10)).ok());
  int seen = 0;
  Status s = log->Scan(4, UINT64_MAX, [&](const EventView& view) {
    seen++;
    return view.seq < 6;
  });
  REQUIRE(s.ok());
  CHECK(seen == 3);
  CHECK(ScanSeqs(*log, 11, 20).empty());
  CHECK(ScanSeqs(*log, 0, 2) == std::vector<uint64_t>{1, 2});
}

TEST_CASE("closing the log commits everything already queued") {
  TempDir tmp;
  std::atomic<int> acked{0};
  {
    auto log = OpenOrFail(tmp.path());
    for (uint64_t i = 1; i <= 50; i++) {
      log->AppendAsync(Drafts(i, 2), [&](Result<AppendResult> r) {
        if (r.ok()) acked++;
      });
    }
  }
  CHECK(acked.load() == 50);
  auto log = OpenOrFail(tmp.path());
  CHECK(log->head().seq == 100);
}

}  // namespace
}  // namespace cloister::log
