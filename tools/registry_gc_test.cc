// `cloister registry gc` against the data directory of a real cloisterd: images pushed with
// RegistryClient, a manifest deleted, a template deleted, blobs uploaded without a manifest; mtimes
// set back so that the grace period can be judged. Checks that a dry run deletes nothing and
// lists exactly the unreferenced old blobs, that --delete removes only those (and the shards it
// empties, and nothing that is not a blob), that a fresh unreferenced blob survives the default
// grace, that referenced blobs survive even with --grace 0, that a manifest recorded while the
// collection runs keeps its blobs, and that the registry serves every tagged image afterwards,
// also after a restart.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "client/registry_client.h"
#include "log/status.h"
#include "reducers/views.h"
#include "tests/testutil.h"
#include "tools/cli_test_support.h"
#include "tools/registry_gc.h"
#include "tools/registry_test_support.h"

namespace cloister::tools {
namespace {

using cloister::testing::TempDir;
using Json = nlohmann::json;

constexpr int64_t kHourNs = 3600LL * 1'000'000'000;

std::string BlobPathIn(const std::string& data, const std::string& digest) {
  const std::string hex = digest.substr(7);
  return data + "/registry/blobs/sha256/" + hex.substr(0, 2) + "/" + hex;
}

// Sets a file's (or a symbolic link's own) mtime to seconds_ago before now.
void SetAge(const std::string& path, int64_t seconds_ago) {
  timespec times[2];
  clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= seconds_ago;
  times[1] = times[0];
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

bool Exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

std::set<std::string> Keys(const std::map<std::string, std::string>& blobs) {
  std::set<std::string> keys;
  for (const auto& [digest, bytes] : blobs) {
    keys.insert(digest);
  }
  return keys;
}

// Lines of text that start with prefix, with the prefix and anything after the first space of
// the rest cut: the digests of "sha256:<hex> ..." or "deleted sha256:<hex> ..." lines.
std::set<std::string> DigestsOfLines(const std::string& text, const std::string& prefix) {
  std::set<std::string> digests;
  for (const std::string& line : Lines(text)) {
    if (line.rfind(prefix + "sha256:", 0) == 0) {
      const std::string rest = line.substr(prefix.size());
      digests.insert(rest.substr(0, rest.find(' ')));
    }
  }
  return digests;
}

client::RegistryClientOptions Plain(const std::string& url) {
  client::RegistryClientOptions options;
  options.url = url;
  return options;
}

void Push(client::RegistryClient* registry, const std::string& layout, const std::string& repo,
          const std::string& tag) {
  Result<client::ImageTransfer> pushed = registry->PushImage(repo, tag, layout);
  INFO(repo + ":" + tag + ": " + pushed.status().ToString());
  REQUIRE(pushed.ok());
}

// Pulls repo:tag into a fresh directory and checks its blobs are those of the source layout,
// byte for byte.
void RequirePullsAsPushed(const std::string& url, const std::string& repo, const std::string& tag,
                          const std::string& source_layout, const std::string& into) {
  client::RegistryClient registry(Plain(url));
  Result<client::ImageTransfer> pulled = registry.PullImage(repo, tag, into);
  INFO(repo + ":" + tag + ": " + pulled.status().ToString());
  REQUIRE(pulled.ok());
  const std::map<std::string, std::string> want = ReadBlobs(source_layout);
  const std::map<std::string, std::string> got = ReadBlobs(into);
  REQUIRE(!want.empty());
  for (const auto& [digest, bytes] : want) {
    INFO(digest);
    REQUIRE(got.count(digest) == 1);
    CHECK(got.at(digest) == bytes);
  }
}

// Every entry under the registry's directory (blobs, junk, links, shards): path -> size or -1.
std::map<std::string, int64_t> Tree(const std::string& root) {
  std::map<std::string, int64_t> tree;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    REQUIRE(lstat(it->path().c_str(), &st) == 0);
    tree[it->path().string()] = S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : -1;
  }
  return tree;
}

}  // namespace

TEST_CASE("ParseDuration and FormatDuration") {
  const std::pair<const char*, int64_t> good[] = {
      {"0", 0},
      {"1h", kHourNs},
      {"30m", kHourNs / 2},
      {"90s", 90'000'000'000},
      {"500ms", 500'000'000},
      {"2h30m", 2 * kHourNs + kHourNs / 2},
      {"1d", 24 * kHourNs},
      {"0s", 0},
  };
  for (const auto& [text, ns] : good) {
    INFO(text);
    Result<int64_t> parsed = ParseDuration(text);
    REQUIRE(parsed.ok());
    CHECK(*parsed == ns);
  }
  for (const char* bad : {"", "1", "h", "-1h", "1x", "1h ", " 1h", "1.5h", "1hh",
                          "99999999999999999999s", "9999999999d"}) {
    INFO(bad);
    Result<int64_t> parsed = ParseDuration(bad);
    REQUIRE(!parsed.ok());
    CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(FormatDuration(kHourNs) == "1h");
  CHECK(FormatDuration(2 * kHourNs + kHourNs / 2 + 5'000'000'000) == "2h30m5s");
  CHECK(FormatDuration(0) == "0s");
  CHECK(FormatDuration(1'500'000'000) == "1500ms");
  CHECK(FormatDuration(25 * kHourNs) == "1d1h");
}

TEST_CASE("LiveDigests: stored manifests, their references and tags' digests, in any template") {
  reducers::Views views;
  reducers::Template& a = views.templates.templates["a"];
  a.manifests["sha256:m1"] = {
      "sha256:m1", "x", 1, {{"sha256:c1", 1, ""}, {"sha256:l1", 2, ""}}, {}};
  a.tags.push_back({"v1", 0, "", {}, "sha256:m1"});
  reducers::Template& b = views.templates.templates["b"];
  b.manifests["sha256:i"] = {"sha256:i", "index", 1, {{"sha256:m2", 1, ""}}, {}};
  b.manifests["sha256:m2"] = {"sha256:m2", "x", 1, {{"sha256:l1", 2, ""}}, {}};
  b.tags.push_back({"v1", 0, "", {}, "sha256:t-only"});
  CHECK(LiveDigests(views) == std::vector<std::string>{"sha256:c1", "sha256:i", "sha256:l1",
                                                       "sha256:m1", "sha256:m2", "sha256:t-only"});
  views.files.files["docs/a.txt"].digest = "sha256:f1";
  views.files.files["docs/b.txt"].digest = "sha256:l1";  // Shared with a layer: listed once.
  CHECK(LiveDigests(views) == std::vector<std::string>{"sha256:c1", "sha256:f1", "sha256:i",
                                                       "sha256:l1", "sha256:m1", "sha256:m2",
                                                       "sha256:t-only"});
}

TEST_CASE("registry gc: a blob a file names is kept; once the file is deleted it goes") {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::unique_ptr<Daemon> daemon = Daemon::Start(data, dir.path());
  const RunResult kept = RunCloister(
      {"call", "PUT", "/file?path=keep/me.txt", "kept bytes", "--url", daemon->registry_url()});
  INFO(kept.out + kept.err);
  REQUIRE(kept.exit_code == 0);
  const RunResult gone = RunCloister(
      {"call", "PUT", "/file?path=drop.txt", "dropped bytes", "--url", daemon->registry_url()});
  REQUIRE(gone.exit_code == 0);
  const std::string kept_digest = Json::parse(kept.out)["body"]["digest"];
  const std::string gone_digest = Json::parse(gone.out)["body"]["digest"];
  REQUIRE(RunCloister({"call", "DELETE", "/file?path=drop.txt", "--url",
                       daemon->registry_url()})
              .exit_code == 0);
  SetAge(BlobPathIn(data, kept_digest), 2 * 3600);
  SetAge(BlobPathIn(data, gone_digest), 2 * 3600);
  const RunResult gc = RunCloister({"registry", "gc", "--data", data, "--delete"});
  INFO(gc.out + gc.err);
  REQUIRE(gc.exit_code == 0);
  CHECK(Exists(BlobPathIn(data, kept_digest)));
  CHECK_FALSE(Exists(BlobPathIn(data, gone_digest)));
  CHECK(ReadFile(BlobPathIn(data, kept_digest)) == "kept bytes");
}

TEST_CASE("registry gc: a dry run lists, --delete removes exactly the unreferenced old blobs") {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::unique_ptr<Daemon> daemon = Daemon::Start(data, dir.path());
  const std::string shared = PseudoRandomBytes(300'000, 1);
  const TestImage a1 =
      WriteTestImage(dir.Sub("a1"), "v1", {PseudoRandomBytes(200'000, 2), shared}, "a1");
  const TestImage a2 = WriteTestImage(dir.Sub("a2"), "v2", {PseudoRandomBytes(100'000, 3)}, "a2");
  const TestImage b1 =
      WriteTestImage(dir.Sub("b1"), "v1", {PseudoRandomBytes(150'000, 4), shared}, "b1");
  const TestImage c1 = WriteTestImage(dir.Sub("c1"), "v1", {PseudoRandomBytes(50'000, 5)}, "c1");
  std::string orphan_old;
  std::string orphan_new;
  {
    client::RegistryClient registry(Plain(daemon->registry_url()));
    Push(&registry, dir.Sub("a1"), "ci/a", "v1");
    Push(&registry, dir.Sub("a2"), "ci/a", "v2");
    Push(&registry, dir.Sub("b1"), "ci/b", "v1");
    Push(&registry, dir.Sub("c1"), "ci/c", "v1");
    // Blobs no manifest names: an abandoned push.
    Result<std::string> old_blob = registry.UploadBlobBytes("ci/a", PseudoRandomBytes(70'000, 6));
    Result<std::string> new_blob = registry.UploadBlobBytes("ci/a", PseudoRandomBytes(80'000, 7));
    REQUIRE(old_blob.ok());
    REQUIRE(new_blob.ok());
    orphan_old = *old_blob;
    orphan_new = *new_blob;
    // ci/a:v2's manifest goes (its config and layer are named by nothing else), and so does the
    // whole of ci/c (through Anka's endpoint).
    Status deleted = registry.DeleteManifest("ci/a", a2.manifest_digest);
    INFO(deleted.ToString());
    REQUIRE(deleted.ok());
  }
  const RunResult removed =
      RunCloister({"call", "DELETE", "/registry/vm?id=ci/c", "--url", daemon->registry_url()});
  INFO(removed.out + removed.err);
  REQUIRE(removed.exit_code == 0);

  std::set<std::string> unreferenced;
  for (const TestImage* image : {&a2, &c1}) {
    for (const std::string& digest : image->Digests()) {
      unreferenced.insert(digest);
    }
  }
  std::set<std::string> expected = unreferenced;
  expected.insert(orphan_old);
  unreferenced.insert(orphan_old);
  unreferenced.insert(orphan_new);
  std::set<std::string> referenced;
  for (const TestImage* image : {&a1, &b1}) {
    for (const std::string& digest : image->Digests()) {
      referenced.insert(digest);
    }
  }

  // Every blob two hours old but one: the fresh orphan is a push whose manifest has not come yet.
  const std::string blobs_root = data + "/registry/blobs/sha256";
  const std::map<std::string, std::string> stored = ReadBlobs(data + "/registry");
  std::set<std::string> all = referenced;
  all.insert(unreferenced.begin(), unreferenced.end());
  REQUIRE(Keys(stored) == all);
  for (const std::string& digest : all) {
    SetAge(BlobPathIn(data, digest), digest == orphan_new ? 0 : 2 * 3600);
  }
  uint64_t expected_bytes = 0;
  for (const std::string& digest : expected) {
    expected_bytes += stored.at(digest).size();
  }
  // Things that are not blobs, old too: never touched. A link named like an unreferenced blob
  // points outside the store.
  const std::string outside = dir.Sub("outside");
  WriteFile(outside, "not the registry's");
  SetAge(outside, 2 * 3600);
  const std::string fake_hex = std::string(64, 'e');
  std::filesystem::create_directories(blobs_root + "/ee");
  REQUIRE(symlink(outside.c_str(), (blobs_root + "/ee/" + fake_hex).c_str()) == 0);
  SetAge(blobs_root + "/ee/" + fake_hex, 2 * 3600);
  const std::string a_shard = a1.config_digest.substr(7, 2);
  const std::vector<std::string> junk = {blobs_root + "/" + a_shard + "/notablob.tmp",
                                         blobs_root + "/zz", blobs_root + "/zz/" + fake_hex,
                                         blobs_root + "/" + a_shard + "/" + std::string(64, 'd')};
  WriteFile(junk[0], "x");
  std::filesystem::create_directories(junk[1]);
  WriteFile(junk[2], "y");
  WriteFile(junk[3], "wrong shard");
  for (const std::string& path : junk) {
    SetAge(path, 2 * 3600);
  }
  const std::map<std::string, int64_t> before = Tree(data + "/registry");

  SECTION("dry run, then --delete, beside the running daemon; then a restart serves every tag") {
    const std::string gc_dry_expected_summary = std::to_string(expected.size()) + " blobs, " +
                                                std::to_string(expected_bytes) +
                                                " bytes unreferenced; dry run: nothing deleted";
    const RunResult dry = RunCloister({"registry", "gc", "--data", data});
    INFO(dry.out + dry.err);
    REQUIRE(dry.exit_code == 0);
    CHECK(DigestsOfLines(dry.out, "") == expected);
    CHECK(Lines(dry.out).back() == gc_dry_expected_summary);
    CHECK_THAT(dry.out, Catch::Contains("kept 1 unreferenced blob (80000 bytes) younger than "
                                        "the grace period (1h)"));
    CHECK_THAT(dry.out, Catch::Contains(orphan_old + " 70000 bytes, 2h"));
    for (const std::string& path : {junk[0], junk[1], junk[3], blobs_root + "/ee/" + fake_hex}) {
      CHECK_THAT(dry.err, Catch::Contains("left alone (not a blob): " + path));
    }
    CHECK(Tree(data + "/registry") == before);

    const RunResult deleted = RunCloister({"registry", "gc", "--data", data, "--delete"});
    INFO(deleted.out + deleted.err);
    REQUIRE(deleted.exit_code == 0);
    CHECK(DigestsOfLines(deleted.out, "deleted ") == expected);
    CHECK(Lines(deleted.out).back() ==
          std::to_string(expected.size()) + " blobs, " + std::to_string(expected_bytes) +
              " bytes unreferenced; deleted " + std::to_string(expected.size()));
    // Exactly those files went, and the shards they leave empty.
    std::map<std::string, int64_t> after_expected = before;
    for (const std::string& digest : expected) {
      after_expected.erase(BlobPathIn(data, digest));
    }
    for (const std::string& digest : expected) {
      const std::string shard = blobs_root + "/" + digest.substr(7, 2);
      bool other = false;
      for (const auto& [path, size] : after_expected) {
        other = other || path.rfind(shard + "/", 0) == 0;
      }
      if (!other) {
        after_expected.erase(shard);
      }
    }
    CHECK(Tree(data + "/registry") == after_expected);
    CHECK(Exists(outside));
    CHECK(Exists(BlobPathIn(data, orphan_new)));

    // Nothing is left to collect; with no grace only the fresh orphan goes, never a referenced
    // blob, all of which are old.
    const RunResult again = RunCloister({"registry", "gc", "--data", data, "--delete"});
    INFO(again.out + again.err);
    CHECK(again.exit_code == 0);
    CHECK(Lines(again.out).back() == "0 blobs, 0 bytes unreferenced; deleted 0");
    const RunResult no_grace =
        RunCloister({"registry", "gc", "--data", data, "--delete", "--grace", "0"});
    INFO(no_grace.out + no_grace.err);
    CHECK(no_grace.exit_code == 0);
    CHECK(DigestsOfLines(no_grace.out, "deleted ") == std::set<std::string>{orphan_new});
    for (const std::string& digest : referenced) {
      INFO(digest);
      CHECK(Exists(BlobPathIn(data, digest)));
    }

    // Served while running, and after a restart; ci/a:v2 is gone.
    RequirePullsAsPushed(daemon->registry_url(), "ci/a", "v1", dir.Sub("a1"), dir.Sub("p1"));
    daemon->Stop();
    daemon = Daemon::Start(data, dir.path());
    RequirePullsAsPushed(daemon->registry_url(), "ci/a", "v1", dir.Sub("a1"), dir.Sub("p2"));
    RequirePullsAsPushed(daemon->registry_url(), "ci/b", "v1", dir.Sub("b1"), dir.Sub("p3"));
    client::RegistryClient registry(Plain(daemon->registry_url()));
    Result<client::ImageTransfer> gone = registry.PullImage("ci/a", "v2", dir.Sub("p4"));
    CHECK(gone.status().code() == StatusCode::kNotFound);
    // The store and the log agree again: a full collection finds nothing.
    const RunResult last = RunCloister({"registry", "gc", "--data", data, "--grace", "0"});
    CHECK(Lines(last.out).back() == "0 blobs, 0 bytes unreferenced; dry run: nothing deleted");
    daemon->Stop();
  }

  SECTION("a manifest recorded while the collection runs keeps the blobs it names") {
    // At the first deletion, ci/c:v1 is pushed again as ci/d:v1: its blobs that are still
    // stored are found present and not sent, and the re-check before each later delete sees
    // the new manifest.
    bool pushed = false;
    std::vector<std::string> decided;
    GcOptions options;
    options.data_dir = data;
    options.delete_blobs = true;
    Result<GcReport> report = CollectRegistryGarbage(options, [&](const GcBlob& blob) {
      decided.push_back(blob.digest);
      if (!pushed) {
        pushed = true;
        client::RegistryClient registry(Plain(daemon->registry_url()));
        Result<client::ImageTransfer> again = registry.PushImage("ci/d", "v1", dir.Sub("c1"));
        REQUIRE(again.ok());
      }
    });
    REQUIRE(report.ok());
    REQUIRE(pushed);
    size_t c1_after_first = 0;
    for (const std::string& digest : c1.Digests()) {
      c1_after_first += digest > decided.front() ? 1 : 0;
    }
    CHECK(report->rescued == c1_after_first);
    CHECK(report->deleted == expected.size() - c1_after_first);
    for (const GcBlob& blob : report->candidates) {
      CHECK(blob.deleted);
      CHECK(blob.error.empty());
    }
    RequirePullsAsPushed(daemon->registry_url(), "ci/d", "v1", dir.Sub("c1"), dir.Sub("p5"));
    RequirePullsAsPushed(daemon->registry_url(), "ci/a", "v1", dir.Sub("a1"), dir.Sub("p6"));
    RequirePullsAsPushed(daemon->registry_url(), "ci/b", "v1", dir.Sub("b1"), dir.Sub("p7"));
    daemon->Stop();
  }
}

TEST_CASE("registry gc: bad arguments exit 2; a data directory without a registry is empty") {
  TempDir dir;
  const RunResult no_log = RunCloister({"registry", "gc", "--data", dir.Sub("nothing")});
  CHECK(no_log.exit_code == 2);
  CHECK_THAT(no_log.err, Catch::Contains("no cloister event log"));
  const RunResult bad_grace =
      RunCloister({"registry", "gc", "--data", dir.path(), "--grace", "soon"});
  CHECK(bad_grace.exit_code == 2);
  CHECK_THAT(bad_grace.err, Catch::Contains("--grace"));
  CHECK(RunCloister({"registry", "gc"}).exit_code == 2);
  CHECK(RunCloister({"registry"}).exit_code == 2);
  const RunResult help = RunCloister({"registry", "gc", "--help"});
  CHECK(help.exit_code == 0);
  for (const char* word : {"--data", "--delete", "--grace", "dry run", "Exit status"}) {
    CHECK_THAT(help.out, Catch::Contains(word));
  }
  // A log and no registry directory: nothing to collect.
  REQUIRE(RunCloister({"demo", "--data", dir.Sub("demo")}).exit_code == 0);
  const RunResult empty = RunCloister({"registry", "gc", "--data", dir.Sub("demo"), "--delete"});
  CHECK(empty.exit_code == 0);
  CHECK(empty.out == "0 blobs, 0 bytes unreferenced; deleted 0\n");
}

}  // namespace cloister::tools
