// `cloister push|pull|list|revert`: the pieces (image references, URLs, tables, the progress
// display with a fake clock and terminal), then the real binary against a real cloisterd with
// authentication on, using the root token and a UAK (TAP on the registry listener): a generated
// OCI layout pushed, listed, pulled back byte for byte, reverted; progress on a pty and off it;
// and every bad argument (exit 2) and wrong credential (exit 1, the secret never shown).
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/testutil.h"
#include "tools/cli_test_support.h"
#include "tools/registry_cli.h"
#include "tools/registry_test_support.h"

namespace cloister::tools {
namespace {

using cloister::testing::TempDir;
using Json = nlohmann::json;

constexpr char kToken[] = "canary-root-token-cli-7731";
constexpr char kWrongToken[] = "wrong-secret-token-5150";
constexpr int64_t kMs = 1'000'000;

// A CliIo that records what it is given, on a clock the test moves.
struct FakeIo {
  std::string out;
  std::string err;
  int64_t now = 0;
  CliIo io;
  explicit FakeIo(bool tty) {
    io.out = [this](std::string_view text) { out += text; };
    io.err = [this](std::string_view text) { err += text; };
    io.err_is_tty = tty;
    io.now_ns = [this] { return now; };
  }
};

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    n++;
  }
  return n;
}

std::vector<std::string> Args(std::vector<std::string> head, const std::vector<std::string>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

struct PtyResult {
  int exit_code = -1;
  std::string output;
};

// Runs cloister with stdin, stdout and stderr on a pseudo-terminal.
PtyResult RunCloisterOnPty(const std::vector<std::string>& args) {
  const std::string binary = CloisterPath();
  std::vector<char*> argv = {const_cast<char*>(binary.c_str())};
  for (const std::string& arg : args) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  PtyResult result;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    struct pollfd p = {master, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) {
      continue;
    }
    char buffer[4096];
    const ssize_t n = read(master, buffer, sizeof(buffer));
    if (n <= 0) {
      break;  // EIO: the tool closed the terminal.
    }
    result.output.append(buffer, static_cast<size_t>(n));
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  close(master);
  REQUIRE(WIFEXITED(status));
  result.exit_code = WEXITSTATUS(status);
  return result;
}

// The layout's blobs are in into's, byte for byte, and its index.json names tag -> digest.
void RequireSameImage(const std::string& source, const std::string& into, const std::string& tag,
                      const std::string& manifest_digest) {
  const std::map<std::string, std::string> want = ReadBlobs(source);
  const std::map<std::string, std::string> got = ReadBlobs(into);
  REQUIRE(want.size() >= 3);
  for (const auto& [digest, bytes] : want) {
    INFO(digest);
    REQUIRE(got.count(digest) == 1);
    CHECK(got.at(digest) == bytes);
  }
  const Json index = Json::parse(ReadFile(into + "/index.json"), nullptr, false);
  REQUIRE(index.is_object());
  bool named = false;
  for (const Json& entry : index["manifests"]) {
    named = named || (entry["annotations"]["org.opencontainers.image.ref.name"] == tag &&
                      entry["digest"] == manifest_digest);
  }
  CHECK(named);
}

}  // namespace

TEST_CASE("ParseImageRef and CheckRegistryUrl") {
  Result<ImageRef> ref = ParseImageRef("team/macos-15:v1.2_x");
  REQUIRE(ref.ok());
  CHECK(ref->repository == "team/macos-15");
  CHECK(ref->tag == "v1.2_x");
  CHECK(!ref->by_digest);
  const std::string digest = "sha256:" + std::string(64, 'a');
  CHECK(!ParseImageRef("team/macos@" + digest).ok());  // A push needs a tag.
  ref = ParseImageRef("team/macos@" + digest, /*allow_digest=*/true);
  REQUIRE(ref.ok());
  CHECK(ref->by_digest);
  CHECK(ref->tag == digest);
  CHECK(ref->Text() == "team/macos@" + digest);
  for (const char* bad : {"team/macos@sha256:abc", "team/macos@", "@" "sha256:", "Team@x"}) {
    INFO(bad);
    CHECK(ParseImageRef(bad, true).status().code() == StatusCode::kInvalidArgument);
  }
  for (const char* bad : {"", "macos", "macos:", ":v1", "Macos:v1", "team/macos", "a:b/c",
                          "ma cos:v1", "macos:-v1", "macos:v 1"}) {
    INFO(bad);
    Result<ImageRef> parsed = ParseImageRef(bad);
    REQUIRE(!parsed.ok());
    CHECK(parsed.status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(CheckRegistryUrl("http://127.0.0.1:8089").ok());
  CHECK(CheckRegistryUrl("https://registry.example/").ok());
  for (const char* bad : {"", "127.0.0.1:8089", "ftp://h", "http://", "http://u:p@h:1"}) {
    INFO(bad);
    CHECK(!CheckRegistryUrl(bad).ok());
  }
  CHECK(CheckRegistryUrl("http://u:secret@h").message().find("secret") == std::string::npos);
}

TEST_CASE("FormatBytes and the list tables") {
  CHECK(FormatBytes(0) == "0 B");
  CHECK(FormatBytes(999) == "999 B");
  CHECK(FormatBytes(1500) == "1.5 kB");
  CHECK(FormatBytes(12'345'678) == "12.3 MB");
  CHECK(FormatBytes(999'999'999) == "1.0 GB");
  CHECK(FormatBytes(4'700'000'000) == "4.7 GB");

  const Json list = Json::parse(R"([
    {"id":"5a1","name":"ci/macos","size":3000000,"tags":["v1","v2"],"latest_tag":"v2",
     "last_modified":"2026-01-02T03:04:05Z"},
    {"id":"77","name":"x","size":0,"tags":[],"latest_tag":"","last_modified":"t"}])");
  CHECK(TemplatesTable(list) ==
        "NAME      ID   TAGS   LATEST  SIZE    MODIFIED\n"
        "ci/macos  5a1  v1,v2  v2      3.0 MB  2026-01-02T03:04:05Z\n"
        "x         77                  0 B     t\n");
  CHECK(TemplatesTable(Json::array()) == "no templates\n");
  CHECK(TemplatesTable(Json("garbage")) == "no templates\n");

  const Json one = Json::parse(R"({"id":"5a1","name":"ci/macos","size":3000000,"versions":[
    {"number":0,"tag":"v1","description":"","creation_date":"2026-01-01T00:00:00Z",
     "manifest":"sha256:0123456789abcdef0123","size":1000000},
    {"number":1,"tag":"v2","description":"nightly","creation_date":"2026-01-02T00:00:00Z",
     "manifest":"sha256:fedcba9876543210fedc","size":2000000}]})");
  CHECK(VersionsTable(one) ==
        "ci/macos (id 5a1): 2 tags, 3.0 MB\n"
        "VERSION  TAG  SIZE    CREATED               MANIFEST             DESCRIPTION\n"
        "0        v1   1.0 MB  2026-01-01T00:00:00Z  sha256:0123456789ab\n"
        "1        v2   2.0 MB  2026-01-02T00:00:00Z  sha256:fedcba987654  nightly\n");
  CHECK(VersionsTable(Json::parse(R"({"id":"1","name":"n","versions":[]})")) ==
        "n (id 1): 0 tags\n");
}

TEST_CASE("ProgressDisplay on a terminal: one bar per blob, redrawn at most every 100 ms") {
  FakeIo fake(/*tty=*/true);
  ProgressDisplay display("pushed", fake.io);
  const std::string a = "sha256:" + std::string(64, 'a');
  const std::string b = "sha256:" + std::string(64, 'b');
  // 10 MB in 1000 callbacks a millisecond apart.
  for (int i = 1; i <= 1000; i++) {
    fake.now += kMs;
    display.Update(a, static_cast<uint64_t>(i) * 10'000, 10'000'000);
  }
  const size_t draws = Count(fake.err, "\r\x1b[K");
  CHECK(draws >= 10);
  CHECK(draws <= 12);
  CHECK(Count(fake.err, "\n") == 1);
  CHECK_THAT(fake.err, Catch::EndsWith("\r\x1b[Ksha256:aaaaaaaaaaaa [========================] "
                                       "100%  10.0 MB / 10.0 MB  10.0 MB/s\n"));
  CHECK_THAT(fake.err, Catch::Contains("[============>           ]  50%  5.0 MB / 10.0 MB"));
  // A resend of a finished blob (a retry after a 401) draws nothing more.
  const std::string before = fake.err;
  display.Update(a, 100, 10'000'000);
  CHECK(fake.err == before);
  // A second blob, interrupted: Abort ends the bar's line.
  fake.now += kMs;
  display.Update(b, 1000, 2000);
  CHECK_THAT(fake.err, Catch::EndsWith("  50%  1.0 kB / 2.0 kB  1.0 MB/s"));
  display.Abort();
  CHECK_THAT(fake.err, Catch::EndsWith("\n"));
  CHECK(fake.out.empty());
}

TEST_CASE("ProgressDisplay off a terminal: one line per blob when it is done") {
  FakeIo fake(/*tty=*/false);
  ProgressDisplay display("pulled", fake.io);
  const std::string a = "sha256:" + std::string(64, 'a');
  const std::string b = "sha256:" + std::string(64, 'b');
  const std::string c = "sha256:" + std::string(64, 'c');
  for (int i = 1; i <= 2000; i++) {
    fake.now += kMs;
    display.Update(a, static_cast<uint64_t>(i) * 1000, 2'000'000);
  }
  CHECK(fake.err == "pulled " + a + " 2.0 MB in 2.0s (1.0 MB/s)\n");
  fake.now += 500 * kMs;
  display.Update(b, 4'000'000, 4'000'000);
  CHECK_THAT(fake.err, Catch::EndsWith("pulled " + b + " 4.0 MB in 0.5s (8.0 MB/s)\n"));
  // Unknown total: the line comes when the next blob starts, or at Finish.
  fake.now += 1000 * kMs;
  display.Update(c, 3000, 0);
  CHECK(Count(fake.err, "\n") == 2);
  display.Finish();
  CHECK_THAT(fake.err, Catch::EndsWith("pulled " + c + " 3.0 kB in 1.0s (3.0 kB/s)\n"));
  CHECK(Count(fake.err, "\n") == 3);
  CHECK(fake.err.find('\r') == std::string::npos);
}

TEST_CASE("cloister push, list, pull, revert against cloisterd, with the root token and a UAK") {
  TempDir dir;
  std::unique_ptr<Daemon> daemon =
      Daemon::Start(dir.Sub("data"), dir.path(),
                    {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken,
                     "ANKA_ENABLE_API_KEYS=true"});
  const std::string url = daemon->registry_url();
  const std::vector<std::string> root = {"--registry", url, "--root-token", kToken};
  const TestImage v1 =
      WriteTestImage(dir.Sub("v1"), "v1",
                     {PseudoRandomBytes(3'000'000, 11), PseudoRandomBytes(1'000'000, 12)}, "v1");
  const TestImage v2 =
      WriteTestImage(dir.Sub("v2"), "v2", {PseudoRandomBytes(2'000'000, 13)}, "v2");
  const TestImage v3 =
      WriteTestImage(dir.Sub("v3"), "v3", {PseudoRandomBytes(8'000'000, 14)}, "v3");

  // Root token; off a terminal, one progress line per blob sent (config and layers).
  const RunResult pushed = RunCloister(Args({"push", dir.Sub("v1"), "ci/macos:v1"}, root));
  INFO(pushed.out + pushed.err);
  REQUIRE(pushed.exit_code == 0);
  CHECK(pushed.out == "pushed ci/macos:v1 " + v1.manifest_digest +
                          " (1 manifest, 3 blobs: 3 sent (4.0 MB), 0 already there)\n");
  CHECK(Count(pushed.err, "pushed sha256:") == 3);
  for (const std::string& digest : {v1.config_digest, v1.layer_digests[0], v1.layer_digests[1]}) {
    CHECK_THAT(pushed.err, Catch::Contains("pushed " + digest + " "));
  }
  CHECK(pushed.err.find('\r') == std::string::npos);
  // Again: the same manifest under the same tag is accepted and nothing is sent.
  const RunResult again = RunCloister(Args({"push", dir.Sub("v1"), "ci/macos:v1"}, root));
  INFO(again.out + again.err);
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, Catch::Contains("0 sent (0 B), 3 already there"));
  CHECK(again.err.empty());

  // A UAK made by root on the controller; its key is answered once.
  const RunResult created =
      RunCloister({"call", "POST", "/api/v1/apikey", R"({"id":"cli","ttl":600})", "--url",
                   daemon->controller_url(), "--root-token", kToken});
  INFO(created.out + created.err);
  REQUIRE(created.exit_code == 0);
  const std::string key = Json::parse(created.out)["body"]["key"];
  WriteFile(dir.Sub("cli.key"), key);
  const std::vector<std::string> uak = {
      "--registry", url, "--api-key-id", "cli", "--api-key-file", dir.Sub("cli.key")};

  const RunResult pushed2 = RunCloister(Args({"push", dir.Sub("v2"), "ci/macos:v2"}, uak));
  INFO(pushed2.out + pushed2.err);
  REQUIRE(pushed2.exit_code == 0);
  CHECK_THAT(pushed2.out, Catch::Contains("pushed ci/macos:v2 " + v2.manifest_digest));

  // On a terminal: bars redrawn in place, with rates.
  const PtyResult bar = RunCloisterOnPty(Args({"push", dir.Sub("v3"), "ci/macos:v3"}, root));
  INFO(bar.output);
  REQUIRE(bar.exit_code == 0);
  CHECK_THAT(bar.output, Catch::Contains("\r\x1b[K" + v3.layer_digests[0].substr(0, 19) + " ["));
  CHECK_THAT(bar.output, Catch::Contains("100%  8.0 MB / 8.0 MB"));
  CHECK_THAT(bar.output, Catch::Contains("MB/s"));
  CHECK_THAT(bar.output, Catch::Contains("pushed ci/macos:v3 " + v3.manifest_digest));
  CHECK(bar.output.find("pushed sha256:") == std::string::npos);

  // list: the table and the raw answer, with either credential.
  const RunResult listed = RunCloister(Args({"list"}, uak));
  INFO(listed.out + listed.err);
  REQUIRE(listed.exit_code == 0);
  REQUIRE(Lines(listed.out).size() == 2);
  CHECK_THAT(Lines(listed.out)[0], Catch::StartsWith("NAME"));
  CHECK_THAT(Lines(listed.out)[1], Catch::StartsWith("ci/macos"));
  CHECK_THAT(Lines(listed.out)[1], Catch::Contains("v1,v2,v3  v3"));
  const RunResult listed_json = RunCloister(Args({"list", "--json"}, root));
  REQUIRE(listed_json.exit_code == 0);
  const Json all = Json::parse(listed_json.out);
  REQUIRE(all.size() == 1);
  CHECK(all[0]["name"] == "ci/macos");
  CHECK(all[0]["tags"] == Json::array({"v1", "v2", "v3"}));
  const std::string id = all[0]["id"];
  const RunResult versions = RunCloister(Args({"list", "ci/macos"}, root));
  INFO(versions.out + versions.err);
  REQUIRE(versions.exit_code == 0);
  const std::vector<std::string> rows = Lines(versions.out);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == "ci/macos (id " + id + "): 3 tags, 14.0 MB");
  CHECK_THAT(rows[2], Catch::StartsWith("0        v1   4.0 MB"));
  CHECK_THAT(rows[2], Catch::Contains(v1.manifest_digest.substr(0, 19)));
  CHECK_THAT(rows[3], Catch::StartsWith("1        v2   2.0 MB"));
  CHECK_THAT(rows[4], Catch::StartsWith("2        v3   8.0 MB"));
  const RunResult by_id = RunCloister(Args({"list", id, "--json"}, uak));
  REQUIRE(by_id.exit_code == 0);
  CHECK(Json::parse(by_id.out)["versions"].size() == 3);

  // pull: byte for byte, with either credential.
  const RunResult pulled = RunCloister(Args({"pull", "ci/macos:v1", dir.Sub("p1")}, uak));
  INFO(pulled.out + pulled.err);
  REQUIRE(pulled.exit_code == 0);
  CHECK(pulled.out == "pulled ci/macos:v1 " + v1.manifest_digest + " into " + dir.Sub("p1") +
                          " (1 manifest, 3 blobs: 3 fetched (4.0 MB), 0 already there)\n");
  CHECK(Count(pulled.err, "pulled sha256:") == 3);
  RequireSameImage(dir.Sub("v1"), dir.Sub("p1"), "v1", v1.manifest_digest);
  const RunResult pulled2 = RunCloister(Args({"pull", id + ":v2", dir.Sub("p1")}, root));
  INFO(pulled2.out + pulled2.err);
  REQUIRE(pulled2.exit_code == 0);
  RequireSameImage(dir.Sub("v2"), dir.Sub("p1"), "v2", v2.manifest_digest);
  RequireSameImage(dir.Sub("v1"), dir.Sub("p1"), "v1", v1.manifest_digest);
  // By digest: the same bytes, an unnamed index.json entry, added once however often pulled.
  for (int i = 0; i < 2; i++) {
    const RunResult by_digest =
        RunCloister(Args({"pull", "ci/macos@" + v2.manifest_digest, dir.Sub("pd")}, uak));
    INFO(by_digest.out + by_digest.err);
    REQUIRE(by_digest.exit_code == 0);
    CHECK_THAT(by_digest.out, Catch::StartsWith("pulled ci/macos@" + v2.manifest_digest + " " +
                                                v2.manifest_digest + " into "));
  }
  {
    const Json index = Json::parse(ReadFile(dir.Sub("pd") + "/index.json"), nullptr, false);
    REQUIRE(index["manifests"].size() == 1);
    CHECK(index["manifests"][0]["digest"] == v2.manifest_digest);
    CHECK_FALSE(index["manifests"][0].contains("annotations"));
  }
  const RunResult wrong_digest = RunCloister(
      Args({"pull", "ci/macos@sha256:" + std::string(64, '0'), dir.Sub("pe")}, uak));
  CHECK(wrong_digest.exit_code == 1);

  // revert: a tag and every later one; by version; then nothing is left.
  const RunResult reverted = RunCloister(Args({"revert", "ci/macos", "--tag", "v2"}, uak));
  INFO(reverted.out + reverted.err);
  REQUIRE(reverted.exit_code == 0);
  CHECK(reverted.out == "reverted ci/macos (id " + id + "): removed 2 tags: v2, v3\n");
  const RunResult gone = RunCloister(Args({"pull", "ci/macos:v3", dir.Sub("p2")}, root));
  CHECK(gone.exit_code == 1);
  CHECK_THAT(gone.err, Catch::StartsWith("cloister: pull ci/macos:v3: "));
  CHECK_THAT(gone.err, Catch::Contains("404"));
  const RunResult by_version = RunCloister(Args({"revert", id, "--version", "0"}, root));
  INFO(by_version.out + by_version.err);
  REQUIRE(by_version.exit_code == 0);
  CHECK(by_version.out == "reverted " + id + " (id " + id + "): removed 1 tag: v1\n");
  const RunResult empty = RunCloister(Args({"revert", "ci/macos"}, root));
  CHECK(empty.exit_code == 1);
  CHECK_THAT(empty.err, Catch::Contains("has no tags"));
  const RunResult none = RunCloister(Args({"list", "ci/macos"}, root));
  CHECK(none.exit_code == 0);
  CHECK(none.out == "ci/macos (id " + id + "): 0 tags, 0 B\n");
  const RunResult unknown = RunCloister(Args({"list", "ci/nope"}, root));
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.err == "cloister: list ci/nope: VM not in the registry\n");

  // Wrong credentials: exit 1, a one-line message, never the secret.
  const std::vector<std::string> wrong = {"--registry", url, "--root-token", kWrongToken};
  const std::vector<std::vector<std::string>> commands = {{"push", dir.Sub("v2"), "ci/macos:v2"},
                                                          {"pull", "ci/macos:v1", dir.Sub("p3")},
                                                          {"list"},
                                                          {"list", "ci/macos"},
                                                          {"revert", "ci/macos"}};
  for (const auto& command : commands) {
    const RunResult refused = RunCloister(Args(command, wrong));
    INFO(command[0] + ": " + refused.out + refused.err);
    CHECK(refused.exit_code == 1);
    CHECK(Lines(refused.err).size() == 1);
    CHECK_THAT(refused.err, Catch::Contains("401"));
    CHECK(refused.err.find(kWrongToken) == std::string::npos);
    CHECK(refused.err.find(kToken) == std::string::npos);
    CHECK(refused.out.empty());
  }
  // Without credentials, too.
  const RunResult anonymous = RunCloister({"list", "--registry", url});
  CHECK(anonymous.exit_code == 1);
  CHECK_THAT(anonymous.err, Catch::Contains("401"));
  // Another key's private half for the id "cli": TAP fails; the key never shows.
  const RunResult other =
      RunCloister({"call", "POST", "/api/v1/apikey", R"({"id":"other","ttl":600})", "--url",
                   daemon->controller_url(), "--root-token", kToken});
  REQUIRE(other.exit_code == 0);
  const std::string other_key = Json::parse(other.out)["body"]["key"];
  WriteFile(dir.Sub("other.key"), other_key);
  for (const auto& command : {commands[0], commands[1], commands[2]}) {
    const RunResult refused = RunCloister(Args(command, {"--registry", url, "--api-key-id", "cli",
                                                         "--api-key-file", dir.Sub("other.key")}));
    INFO(command[0] + ": " + refused.out + refused.err);
    CHECK(refused.exit_code == 1);
    CHECK(Lines(refused.err).size() == 1);
    CHECK(refused.err.find(other_key.substr(40, 40)) == std::string::npos);
    CHECK(refused.err.find(key.substr(40, 40)) == std::string::npos);
  }
  const RunResult nobody = RunCloister(
      {"list", "--registry", url, "--api-key-id", "nobody", "--api-key-file", dir.Sub("cli.key")});
  CHECK(nobody.exit_code == 1);
  CHECK_THAT(nobody.err, Catch::Contains("nobody"));
  daemon->Stop();
}

TEST_CASE("cloister push, pull, list, revert: bad arguments exit 2 before any I/O; --help") {
  TempDir dir;
  const TestImage image = WriteTestImage(dir.Sub("layout"), "v1", {"layer"}, "x");
  std::filesystem::create_directories(dir.Sub("empty"));
  WriteFile(dir.Sub("file"), "x");
  // A registry nobody listens on: none of these may get as far as trying it.
  const std::vector<std::string> off = {"--registry", "http://127.0.0.1:1"};
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"push"}, "required"},
      {{"push", dir.Sub("layout")}, "image is required"},
      {{"push", dir.Sub("layout"), "ci/macos"}, "expected <repository>:<tag>"},
      {{"push", dir.Sub("layout"), "CI/Macos:v1"}, "repository 'CI/Macos'"},
      {{"push", dir.Sub("layout"), "ci/macos:-v1"}, "tag '-v1'"},
      {{"push", dir.Sub("nope"), "ci/macos:v1"}, dir.Sub("nope") + " is not a directory"},
      {{"push", dir.Sub("empty"), "ci/macos:v1"}, "not an OCI image layout (no index.json)"},
      {{"push", dir.Sub("layout"), "ci/macos:v9"}, "has no image tagged v9 (it has: v1)"},
      {{"pull", "ci/macos:v1", dir.Sub("file")}, "is not a directory"},
      {{"pull", "ci/macos", dir.Sub("p")}, "expected <repository>:<tag>"},
      {{"pull", "a:b", "c", "extra"}, "extra"},
      {{"list", "--registry", "ftp://h"}, "--registry: expected http://"},
      {{"list", "--registry", "http://root:hunter2@127.0.0.1:1"}, "user info"},
      {{"list", "--bogus"}, "--bogus"},
      {{"revert"}, "required"},
      {{"revert", "ci/macos", "--tag", "a", "--version", "1"}, "excludes"},
      {{"revert", "ci/macos", "--version", "x1"}, "--version: expected a whole number"},
      {{"revert", "ci/macos", "--version", "99999999999"}, "--version: expected a whole number"},
      {{"list", "--root-token", "t", "--api-key-id", "k", "--api-key-file", dir.Sub("f")},
       "one credential"},
      {{"list", "--api-key-id", "k", "--api-key-file", dir.Sub("missing")}, "missing"},
      {{"list", "--api-key-id", "k", "--api-key-file", dir.Sub("file")}, "not an RSA private key"},
  };
  for (const auto& [args, message] : cases) {
    const bool has_url = std::find(args.begin(), args.end(), "--registry") != args.end();
    const RunResult r = RunCloister(has_url ? args : Args(args, off));
    INFO(args[0] + " ...: " + r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(message));
    CHECK(Lines(r.err).size() == 1);
    CHECK(r.err.find("hunter2") == std::string::npos);
    CHECK(r.out.empty());
  }
  // Nobody listening: a failure (1), named.
  const RunResult refused = RunCloister(Args({"list"}, off));
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::StartsWith("cloister: list: "));
  const RunResult refused_push = RunCloister(Args({"push", dir.Sub("layout"), "ci/macos:v1"}, off));
  CHECK(refused_push.exit_code == 1);
  CHECK_THAT(refused_push.err, Catch::StartsWith("cloister: push ci/macos:v1: "));

  const RunResult top = RunCloister({"--help"});
  CHECK(top.exit_code == 0);
  for (const char* word : {"push", "pull", "list", "revert", "registry"}) {
    CHECK_THAT(top.out, Catch::Contains(word));
  }
  for (const char* command : {"push", "pull", "list", "revert"}) {
    const RunResult help = RunCloister({command, "--help"});
    INFO(command);
    CHECK(help.exit_code == 0);
    for (const char* word :
         {"--registry", "CLOISTER_REGISTRY", "--root-token", "--api-key-id", "--api-key-file",
          "--api-key-string", "--cert", "--cacert", "--skip-tls-verification", "Exit status"}) {
      CHECK_THAT(help.out, Catch::Contains(word));
    }
  }
  CHECK_THAT(RunCloister({"revert", "--help"}).out, Catch::Contains("--version"));
  CHECK_THAT(RunCloister({"list", "--help"}).out, Catch::Contains("--json"));
  (void)image;
}

}  // namespace cloister::tools
