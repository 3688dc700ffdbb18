// A real full disk (RELIABILITY.md T20 / M4), not a simulated one: the log lives on a 4 MiB tmpfs
// mounted in a private mount namespace (so nothing leaks to the host, even if the test dies).
// The disk is filled by appending until the kernel returns ENOSPC; then a ballast file is deleted
// to free space. Expected: appends fail with kNoSpace and acknowledge nothing, reads keep working,
// appends resume without reopening the log, and every acknowledged event survives a reopen.
// Needs root (CAP_SYS_ADMIN) for unshare + mount; as another user it is skipped with a warning.
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "log/draft.h"
#include "log/events_generated.h"
#include "log/log.h"
#include "log/status.h"
#include "tests/testutil.h"

namespace cloister {
namespace {

log::Draft StateChanged(uint64_t i) {
  log::DraftBuilder builder;
  std::string instance = "inst-" + std::to_string(i);
  std::string message(600, static_cast<char>('a' + i % 26));  // Fills 4 MiB in a few thousand.
  auto payload = fb::CreateVmInstanceStateChangedDirect(builder.fbb(), instance.c_str(),
                                                        fb::VmState::Started, message.c_str());
  std::string request_id = "req-" + std::to_string(i);
  log::Envelope envelope;
  envelope.time_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(i);
  envelope.actor_kind = fb::ActorKind::Node;
  envelope.actor_id = "node-1";
  envelope.request_id = request_id;
  return builder.Finish(envelope, payload);
}

std::vector<log::Draft> Batch(uint64_t first, size_t count) {
  std::vector<log::Draft> drafts;
  for (size_t i = 0; i < count; i++) {
    drafts.push_back(StateChanged(first + i));
  }
  return drafts;
}

// Enters a private mount namespace and mounts a tmpfs of size_bytes at dir.
bool MountSmallDisk(const std::string& dir, size_t size_bytes, std::string* why) {
  if (unshare(CLONE_NEWNS) != 0) {
    *why = "unshare(CLONE_NEWNS) failed";
    return false;
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    *why = "making / private failed";
    return false;
  }
  std::string options = "size=" + std::to_string(size_bytes);
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    *why = "mount tmpfs failed";
    return false;
  }
  return true;
}

TEST_CASE("a really full disk fails appends with NoSpace and writes resume once space is freed",
          "[faultfs][T20]") {
  if (geteuid() != 0) {
    WARN("skipped: needs root to mount a small tmpfs");
    return;
  }
  testing::TempDir tmp;
  const std::string disk = tmp.Sub("disk");
  REQUIRE(mkdir(disk.c_str(), 0700) == 0);
  std::string why;
  INFO("mounting a 4 MiB tmpfs at " << disk);
  REQUIRE(MountSmallDisk(disk, 4 << 20, &why));
  {
    std::ofstream ballast(disk + "/ballast");
    ballast << std::string(1 << 20, 'b');
    REQUIRE(ballast.good());
  }
  log::Options options;
  options.dir = disk + "/data";
  options.map_bytes_initial = 64 << 20;
  auto opened = log::Log::Open(options);
  REQUIRE(opened.ok());
  std::unique_ptr<log::Log> log = std::move(opened).value();

  uint64_t acked = 0;
  uint64_t next = 1;
  Status failure;
  for (int i = 0; i < 10'000 && failure.ok(); i++) {
    auto r = log->Append(Batch(next, 8));
    next += 8;
    if (r.ok()) {
      CHECK(r->seq_first == acked + 1);
      acked = r->seq_last;
    } else {
      failure = r.status();
    }
  }
  INFO("acked before the disk filled: " << acked << "; failure: " << failure.ToString());
  REQUIRE_FALSE(failure.ok());
  CHECK(failure.code() == StatusCode::kNoSpace);
  CHECK(acked > 100);
  CHECK(log->head().seq == acked);

  // Still full: another append fails the same way and acknowledges nothing; reads still work.
  auto again = log->Append(Batch(next, 8));
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == StatusCode::kNoSpace);
  auto verified = log->VerifyAll();
  REQUIRE(verified.ok());
  CHECK(verified->seq == acked);

  // Free space; the same Log object appends again, no restart.
  REQUIRE(std::remove((disk + "/ballast").c_str()) == 0);
  auto resumed = log->Append(Batch(next, 8));
  INFO((resumed.ok() ? std::string() : resumed.status().ToString()));
  REQUIRE(resumed.ok());
  CHECK(resumed->seq_first == acked + 1);
  acked = resumed->seq_last;

  log.reset();
  auto reopened = log::Log::Open(options);
  REQUIRE(reopened.ok());
  auto final_head = (*reopened)->VerifyAll();
  REQUIRE(final_head.ok());
  CHECK(final_head->seq == acked);
}

}  // namespace
}  // namespace cloister
