// SnapshotStore: put/get/list, keeping the newest, corruption, read-only use. Each TEST_CASE
// names one edge case.
#include "log/snapshot_store.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "log/hash.h"
#include "log/status.h"
#include "tests/testutil.h"

namespace cloister::log {
namespace {

using cloister::testing::TempDir;

std::vector<uint8_t> Bytes(const std::string& text) { return {text.begin(), text.end()}; }

Hash HashOf(uint8_t fill) {
  Hash hash;
  hash.fill(fill);
  return hash;
}

std::unique_ptr<SnapshotStore> OpenWriter(const TempDir& tmp, size_t keep = kSnapshotsKeepDefault) {
  auto store = SnapshotStore::Open(tmp.path(), /*read_only=*/false, keep);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store.value());
}

std::vector<uint64_t> Seqs(const SnapshotStore& store) {
  auto list = store.List();
  REQUIRE(list.ok());
  std::vector<uint64_t> seqs;
  for (const SnapshotInfo& info : *list) {
    seqs.push_back(info.seq);
  }
  return seqs;
}

TEST_CASE("put then get returns the payload and the log hash, in DIR/snapshots") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  const std::vector<uint8_t> payload = Bytes("views at seq 7");
  REQUIRE(store->Put(7, HashOf(0xAB), payload).ok());
  auto got = store->Get(7);
  REQUIRE(got.ok());
  CHECK(got->seq == 7);
  CHECK(got->log_hash == HashOf(0xAB));
  CHECK(got->bytes == payload);
  struct stat st;
  CHECK(stat((tmp.path() + "/snapshots/data.mdb").c_str(), &st) == 0);
  auto list = store->List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].payload_bytes == payload.size());
  CHECK((*list)[0].stored_bytes == payload.size() + 88);
}

TEST_CASE("an empty payload is a valid snapshot") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  REQUIRE(store->Put(1, HashOf(1), {}).ok());
  auto got = store->Get(1);
  REQUIRE(got.ok());
  CHECK(got->bytes.empty());
}

TEST_CASE("list is newest first and only the keep newest survive a put") {
  TempDir tmp;
  auto store = OpenWriter(tmp, /*keep=*/2);
  REQUIRE(store->Put(100, HashOf(1), Bytes("a")).ok());
  CHECK(Seqs(*store) == std::vector<uint64_t>{100});
  REQUIRE(store->Put(200, HashOf(2), Bytes("b")).ok());
  REQUIRE(store->Put(300, HashOf(3), Bytes("c")).ok());
  CHECK(Seqs(*store) == std::vector<uint64_t>{300, 200});
  CHECK(store->Get(100).status().code() == StatusCode::kNotFound);
  REQUIRE(store->Put(400, HashOf(4), Bytes("d")).ok());
  CHECK(Seqs(*store) == std::vector<uint64_t>{400, 300});
}

TEST_CASE("keep 1 keeps only the newest; an older put is dropped at once") {
  TempDir tmp;
  auto store = OpenWriter(tmp, /*keep=*/1);
  REQUIRE(store->Put(50, HashOf(1), Bytes("new")).ok());
  REQUIRE(store->Put(10, HashOf(2), Bytes("old")).ok());
  CHECK(Seqs(*store) == std::vector<uint64_t>{50});
}

TEST_CASE("a put at an existing seq replaces it") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  REQUIRE(store->Put(5, HashOf(1), Bytes("first")).ok());
  REQUIRE(store->Put(5, HashOf(2), Bytes("second")).ok());
  auto got = store->Get(5);
  REQUIRE(got.ok());
  CHECK(got->bytes == Bytes("second"));
  CHECK(got->log_hash == HashOf(2));
  CHECK(Seqs(*store) == std::vector<uint64_t>{5});
}

TEST_CASE("snapshots survive closing and reopening the store") {
  TempDir tmp;
  REQUIRE(OpenWriter(tmp)->Put(9, HashOf(9), Bytes("durable")).ok());
  auto store = OpenWriter(tmp);
  auto got = store->Get(9);
  REQUIRE(got.ok());
  CHECK(got->bytes == Bytes("durable"));
}

TEST_CASE("a put at seq 0 is kInvalidArgument and stores nothing") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  CHECK(store->Put(0, HashOf(0), Bytes("x")).code() == StatusCode::kInvalidArgument);
  CHECK(Seqs(*store).empty());
}

TEST_CASE("get of a seq that was never stored is kNotFound") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  CHECK(store->Get(3).status().code() == StatusCode::kNotFound);
}

TEST_CASE("a flipped payload byte is kCorruption naming the seq") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  REQUIRE(store->Put(12, HashOf(1), Bytes("some payload bytes")).ok());
  REQUIRE(store->EditStoredForTest(12, [](std::string* v) { v->back() ^= 0x01; }).ok());
  auto got = store->Get(12);
  CHECK(got.status().code() == StatusCode::kCorruption);
  CHECK(got.status().message() == "snapshot 12: SHA-256 mismatch");
}

TEST_CASE("a truncated value is kCorruption, however much is cut") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  const std::string payload(1000, 'p');
  for (size_t keep_bytes : {size_t{0}, size_t{3}, size_t{87}, size_t{88}, size_t{500}}) {
    REQUIRE(store->Put(12, HashOf(1), Bytes(payload)).ok());
    REQUIRE(store->EditStoredForTest(12, [&](std::string* v) { v->resize(keep_bytes); }).ok());
    INFO("kept " << keep_bytes << " bytes");
    CHECK(store->Get(12).status().code() == StatusCode::kCorruption);
  }
}

TEST_CASE("a header naming another seq is kCorruption") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  REQUIRE(store->Put(12, HashOf(1), Bytes("x")).ok());
  REQUIRE(store->EditStoredForTest(12, [](std::string* v) { (*v)[15] ^= 0x40; }).ok());
  auto got = store->Get(12);
  CHECK(got.status().code() == StatusCode::kCorruption);
  CHECK_THAT(got.status().message(), Catch::Contains("header names seq"));
}

TEST_CASE("another snapshot format version is kFormatMismatch") {
  TempDir tmp;
  auto store = OpenWriter(tmp);
  REQUIRE(store->Put(12, HashOf(1), Bytes("x")).ok());
  REQUIRE(store->EditStoredForTest(12, [](std::string* v) { (*v)[7] = 2; }).ok());
  CHECK(store->Get(12).status().code() == StatusCode::kFormatMismatch);
}

TEST_CASE("read-only open of a data directory without snapshots is an empty store") {
  TempDir tmp;
  auto store = SnapshotStore::Open(tmp.path(), /*read_only=*/true);
  REQUIRE(store.ok());
  auto list = (*store)->List();
  REQUIRE(list.ok());
  CHECK(list->empty());
  CHECK((*store)->Get(1).status().code() == StatusCode::kNotFound);
  CHECK((*store)->Put(1, HashOf(1), Bytes("x")).code() == StatusCode::kUnsupported);
  struct stat st;
  CHECK(stat((tmp.path() + "/snapshots").c_str(), &st) != 0);  // Nothing was created.
}

TEST_CASE("a writer open of a missing data directory is kIoError") {
  TempDir tmp;
  auto store = SnapshotStore::Open(tmp.Sub("missing"), /*read_only=*/false);
  CHECK(store.status().code() == StatusCode::kIoError);
}

TEST_CASE("read-only open works while another process holds the store open for writing") {
  TempDir tmp;
  int to_parent[2];
  int to_child[2];
  REQUIRE(pipe(to_parent) == 0);
  REQUIRE(pipe(to_child) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child is the writer: it stores two snapshots, says so, and keeps the store open until
    // the parent has read them. No Catch2 here: a child reports through its exit status.
    auto store = SnapshotStore::Open(tmp.path(), /*read_only=*/false);
    bool ok = store.ok() && (*store)->Put(10, HashOf(1), Bytes("ten")).ok() &&
              (*store)->Put(20, HashOf(2), Bytes("twenty")).ok();
    char byte = ok ? 'y' : 'n';
    ok = write(to_parent[1], &byte, 1) == 1 && ok;
    ok = read(to_child[0], &byte, 1) == 1 && ok;
    _exit(ok ? 0 : 1);
  }
  char byte = 0;
  REQUIRE(read(to_parent[0], &byte, 1) == 1);
  REQUIRE(byte == 'y');
  {
    auto store = SnapshotStore::Open(tmp.path(), /*read_only=*/true);
    INFO(store.status().ToString());
    REQUIRE(store.ok());
    CHECK(Seqs(**store) == std::vector<uint64_t>{20, 10});
    auto got = (*store)->Get(20);
    REQUIRE(got.ok());
    CHECK(got->bytes == Bytes("twenty"));
  }
  REQUIRE(write(to_child[1], "x", 1) == 1);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) {
    close(fd);
  }
}

}  // namespace
}  // namespace cloister::log
