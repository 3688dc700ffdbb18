// The registry's central file server and log server (api/cloisterd/file_api.h, log_api.h)
// through the real cloisterd on loopback: files uploaded and downloaded byte for byte (64 MiB
// with curl, streamed), digest mismatches and bad paths refused with nothing kept, replace,
// delete, files surviving a restart with a log that verifies; log rows appended and streamed
// from an offset, a followed stream seeing a row sent after it began, eventLog rows as JSON
// lines, 413 past the bound, and an archive that the system tar unpacks to the same content.
// Permissions are checked route by route by authz_wire_test (the route table).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/oci_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

std::unique_ptr<CloisterdProcess> Start(TempDir& dir) {
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {"--access-log=false"});
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  return std::move(*started);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  REQUIRE(out.good());
}

// Regular files under dir (recursively), as paths relative to it.
std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> files;
  if (!std::filesystem::exists(dir)) {
    return files;
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      files.push_back(std::filesystem::relative(entry.path(), dir).string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Reads from fd into *got until it holds needle; false after timeout_ms or on close.
bool ReadUntil(int fd, std::string* got, const std::string& needle, int timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (got->find(needle) == std::string::npos) {
    const int64_t left = deadline - MonotonicMs();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
      return false;
    }
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      return false;
    }
    got->append(buffer, static_cast<size_t>(n));
  }
  return true;
}

TEST_CASE("file server: upload, download, list, replace, delete; refusals keep nothing") {
  TempDir dir;
  auto daemon = Start(dir);
  const WireTarget reg = daemon->registry();
  const std::string blobs = dir.Sub("data") + "/registry/blobs";

  const Json stored = RequireOk(Call(reg, "PUT", "/file?path=docs/readme.txt", "hello\n"));
  CHECK(stored["path"] == "docs/readme.txt");
  CHECK(stored["size"] == 6);
  CHECK(stored["digest"] == Sha256Digest("hello\n"));
  const WireResponse got = Call(reg, "GET", "/file?path=docs/readme.txt");
  CHECK(got.status == 200);
  CHECK(got.body == "hello\n");
  CHECK(got.Header("Content-Type") == "application/octet-stream");
  // An empty file, and a digest the client states.
  const std::string empty_digest = Sha256Digest("");
  RequireOk(Call(reg, "PUT", "/file?path=empty&digest=" + empty_digest, ""));
  CHECK(Call(reg, "GET", "/file?path=empty").body.empty());

  const std::vector<std::string> blobs_before = FilesUnder(blobs);
  SECTION("a digest that does not match is 400 and nothing is kept") {
    const std::string message =
        RequireFail(Call(reg, "PUT", "/file?path=x.bin&digest=" + Sha256Digest("other"),
                         "these bytes"),
                    400);
    CHECK_THAT(message, Catch::Contains("digest mismatch"));
    RequireFail(Call(reg, "GET", "/file?path=x.bin"), 404);
    CHECK(FilesUnder(blobs) == blobs_before);
    CHECK(FilesUnder(dir.Sub("data") + "/registry/uploads").empty());
    RequireFail(Call(reg, "PUT", "/file?path=x.bin&digest=sha256:nothex", "b"), 400);
  }
  SECTION("bad paths are 400 with a clear message, nothing changed") {
    const std::vector<std::string> paths = {"",   "/abs",  "a/../b", "..",    "a//b",
                                            "a/./b", "a/", "%00x", "a%0Ab", "a%5Cb",
                                            std::string(1025, 'p')};
    for (const std::string& path : paths) {
      INFO("path " << path.substr(0, 40));
      const std::string message = RequireFail(Call(reg, "PUT", "/file?path=" + path, "b"), 400);
      CHECK_THAT(message, Catch::StartsWith("path: "));
      RequireFail(Call(reg, "GET", "/file?path=" + path), 400);
      RequireFail(Call(reg, "DELETE", "/file?path=" + path), 400);
    }
    CHECK(FilesUnder(blobs) == blobs_before);
    CHECK(RequireOk(Call(reg, "GET", "/file")).size() == 2);
  }
  SECTION("list, replace, delete") {
    const Json list = RequireOk(Call(reg, "GET", "/file"));
    REQUIRE(list.size() == 2);
    CHECK(list[0]["path"] == "docs/readme.txt");
    CHECK(list[0]["stored_by"] == "");  // Authentication is off: the anonymous actor.
    CHECK(list[1]["path"] == "empty");
    RequireOk(Call(reg, "PUT", "/file?path=docs/readme.txt", "second version"));
    CHECK(Call(reg, "GET", "/file?path=docs/readme.txt").body == "second version");
    const Json replaced = RequireOk(Call(reg, "GET", "/file"));
    REQUIRE(replaced.size() == 2);
    CHECK(replaced[0]["size"] == 14);
    CHECK(RequireOk(Call(reg, "DELETE", "/file?path=docs/readme.txt"))["path"] ==
          "docs/readme.txt");
    RequireFail(Call(reg, "GET", "/file?path=docs/readme.txt"), 404);
    RequireFail(Call(reg, "DELETE", "/file?path=docs/readme.txt"), 404);
    CHECK(RequireOk(Call(reg, "GET", "/file")).size() == 1);
  }
}

TEST_CASE("file server: a 64 MiB file streams both ways with curl and survives a restart") {
  TempDir dir;
  auto daemon = Start(dir);
  const std::string source = dir.Sub("big.bin");
  {
    std::string bytes(64u << 20, '\0');
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (char& c : bytes) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x);
    }
    WriteAll(source, bytes);
  }
  const std::string url = daemon->registry().BaseUrl() + "/file?path=images/big.bin";
  const ProgramResult put = RunProgram("curl", {"-sS", "--fail", "-T", source, url}, 120000);
  INFO(put.Describe());
  REQUIRE(put.Succeeded());
  CHECK(Json::parse(put.out)["body"]["size"] == (64u << 20));
  const std::string copy = dir.Sub("copy.bin");
  const ProgramResult get = RunProgram("curl", {"-sS", "--fail", "-o", copy, url}, 120000);
  INFO(get.Describe());
  REQUIRE(get.Succeeded());
  CHECK(ReadAll(copy) == ReadAll(source));

  REQUIRE(daemon->Stop(SIGTERM).ok());
  daemon.reset();
  std::filesystem::create_directories(dir.Sub("second"));
  auto again = CloisterdProcess::Start(dir.Sub("data"), dir.Sub("second"),
                                       {"--access-log=false"});
  REQUIRE(again.ok());
  const std::string url2 = (*again)->registry().BaseUrl() + "/file?path=images/big.bin";
  std::filesystem::remove(copy);
  REQUIRE(RunProgram("curl", {"-sS", "--fail", "-o", copy, url2}, 120000).Succeeded());
  CHECK(ReadAll(copy) == ReadAll(source));
  const ProgramResult verify = RunProgram(RunfilePath("tools/cloister"),
                                          {"audit", "verify", "--data", dir.Sub("data")}, 60000);
  INFO(verify.Describe() << verify.out);
  CHECK(verify.Succeeded());
  bool recorded = false;
  for (const std::string& line : AuditExportLines(dir.Sub("data"))) {
    recorded = recorded || (line.find("\"type\":\"FileStored\"") != std::string::npos &&
                            line.find("images/big.bin") != std::string::npos);
  }
  CHECK(recorded);
}

TEST_CASE("log server: rows, offsets, follow, eventLog, archive, bounds") {
  TempDir dir;
  auto daemon = Start(dir);
  const WireTarget reg = daemon->registry();
  const size_t events_before = AuditExportLines(dir.Sub("data")).size();

  CHECK(RequireOk(Call(reg, "POST", "/log?service=build&host=n1", "row1\nrow2\n"))["bytes"] ==
        10);
  RequireOk(Call(reg, "POST", "/log?host=n1&service=build", "row3"));  // A newline is added.
  RequireOk(Call(reg, "POST", "/log?host=n2&service=agent", "agent up\n"));
  WireResponse whole = Call(reg, "GET", "/log/stream?file=n1/build&follow=0");
  CHECK(whole.status == 200);
  CHECK(whole.body == "row1\nrow2\nrow3\n");
  CHECK(Call(reg, "GET", "/log/stream?file=n1/build&follow=0&offset=5").body == "row2\nrow3\n");
  CHECK(Call(reg, "GET", "/log/stream?file=n1/build&follow=0&offset=15").body.empty());
  RequireFail(Call(reg, "GET", "/log/stream?file=n1/build&follow=0&offset=16"), 416);
  RequireFail(Call(reg, "GET", "/log/stream?file=n1/none&follow=0"), 404);
  RequireFail(Call(reg, "GET", "/log/stream?file=../etc&follow=0"), 400);
  RequireFail(Call(reg, "GET", "/log/stream?file=n1/build&offset=x"), 400);

  SECTION("bad names, empty bodies and oversize bodies change nothing") {
    RequireFail(Call(reg, "POST", "/log?service=build", "r\n"), 400);
    RequireFail(Call(reg, "POST", "/log?service=..&host=n1", "r\n"), 400);
    RequireFail(Call(reg, "POST", "/log?service=a/b&host=n1", "r\n"), 400);
    RequireFail(Call(reg, "POST", "/log?service=.hidden&host=n1", "r\n"), 400);
    RequireFail(Call(reg, "POST", "/log?service=build&host=n1", ""), 400);
    RequireFail(Call(reg, "POST", "/log?service=build&host=n1", std::string("a\0b", 3)), 400);
    RequireFail(Call(reg, "POST", "/log?service=build&host=n1", std::string((1 << 20) + 1, 'x')),
                413);
    CHECK(Call(reg, "GET", "/log/stream?file=n1/build&follow=0").body == "row1\nrow2\nrow3\n");
    CHECK(FilesUnder(dir.Sub("data") + "/logs/hosts") ==
          std::vector<std::string>{"n1/build.log", "n2/agent.log"});
  }
  SECTION("a followed stream sends what is there, then rows appended after it began") {
    auto connection = WireConnection::Connect(reg);
    REQUIRE(connection.ok());
    REQUIRE((*connection)->Send(MakeRequest("GET", "/log/stream?file=n1/build&offset=5")).ok());
    std::string got;
    REQUIRE(ReadUntil((*connection)->fd(), &got, "row3\n", 5000));
    CHECK_THAT(got, Catch::Contains("Transfer-Encoding: chunked"));
    CHECK_THAT(got, !Catch::Contains("row1"));
    RequireOk(Call(reg, "POST", "/log?service=build&host=n1", "row4 after the stream began\n"));
    CHECK(ReadUntil((*connection)->fd(), &got, "row4 after the stream began\n", 5000));
    // Other files do not show up in it.
    CHECK_THAT(got, !Catch::Contains("agent up"));
    (*connection)->Reset();
    // The server is fine after the client went away.
    CHECK(Call(reg, "GET", "/log/stream?file=n1/build&follow=0").body ==
          "row1\nrow2\nrow3\nrow4 after the stream began\n");
  }
  SECTION("HTTP/1.0 gets what there is, with a Content-Length") {
    auto connection = WireConnection::Connect(reg);
    REQUIRE(connection.ok());
    REQUIRE((*connection)->Send("GET /log/stream?file=n1/build HTTP/1.0\r\n\r\n").ok());
    auto response = (*connection)->ReadResponse();
    REQUIRE(response.ok());
    CHECK(response->body == "row1\nrow2\nrow3\n");
  }
  SECTION("eventLog rows are JSON lines with a server time; invalid JSON writes nothing") {
    CHECK(RequireOk(Call(reg, "POST", "/log/event", R"({"job":"a","ok":true})"))["events"] == 1);
    RequireOk(Call(reg, "POST", "/log/event", R"([{"job":"b"},{"job":"c","text":"x\ny"}])"));
    for (const char* bad : {"{", "[1]", "[]", "\"text\"", "[{\"a\":1}, 2]"}) {
      INFO(bad);
      RequireFail(Call(reg, "POST", "/log/event", bad), 400);
    }
    const std::string text = Call(reg, "GET", "/log/stream?file=eventLog&follow=0").body;
    std::istringstream in(text);
    std::vector<Json> events;
    for (std::string line; std::getline(in, line);) {
      events.push_back(Json::parse(line));
    }
    REQUIRE(events.size() == 3);
    CHECK(events[0]["job"] == "a");
    CHECK(events[2]["text"] == "x\ny");
    for (const Json& event : events) {
      CHECK(event["server_time"].get<std::string>().ends_with("Z"));
    }
  }
  SECTION("the archive untars with the system tar to the same content") {
    RequireOk(Call(reg, "POST", "/log/event", R"({"job":"archived"})"));
    const WireResponse archive = Call(reg, "GET", "/log/archive");
    REQUIRE(archive.status == 200);
    CHECK(archive.Header("Content-Type") == "application/gzip");
    WriteAll(dir.Sub("logs.tar.gz"), archive.body);
    std::filesystem::create_directories(dir.Sub("out"));
    const ProgramResult untar =
        RunProgram("tar", {"-xzf", dir.Sub("logs.tar.gz"), "-C", dir.Sub("out")});
    INFO(untar.Describe());
    REQUIRE(untar.Succeeded());
    CHECK(FilesUnder(dir.Sub("out")) ==
          std::vector<std::string>{"eventLog.jsonl", "n1/build.log", "n2/agent.log"});
    CHECK(ReadAll(dir.Sub("out") + "/n1/build.log") == "row1\nrow2\nrow3\n");
    CHECK(ReadAll(dir.Sub("out") + "/n2/agent.log") == "agent up\n");
    CHECK(ReadAll(dir.Sub("out") + "/eventLog.jsonl") ==
          ReadAll(dir.Sub("data") + "/logs/eventLog.jsonl"));
    // One host only: its files, no eventLog.
    const WireResponse one = Call(reg, "GET", "/log/archive?host=n2");
    WriteAll(dir.Sub("n2.tar.gz"), one.body);
    const ProgramResult list = RunProgram("tar", {"-tzf", dir.Sub("n2.tar.gz")});
    REQUIRE(list.Succeeded());
    CHECK(list.out == "n2/agent.log\n");
    RequireFail(Call(reg, "GET", "/log/archive?host=../x"), 400);
  }
  SECTION("files, streamer page") {
    const Json files = RequireOk(Call(reg, "GET", "/log/files"));
    REQUIRE(files.size() == 2);
    CHECK(files[0] == Json{{"file", "n1/build"}, {"size", 15}});
    CHECK(RequireOk(Call(reg, "GET", "/log/files?host=n2")).size() == 1);
    const WireResponse page = Call(reg, "GET", "/log/streamer?file=n1/build");
    CHECK(page.status == 200);
    CHECK_THAT(page.Header("Content-Type"), Catch::StartsWith("text/html"));
    CHECK_THAT(page.body, Catch::Contains("/log/stream?follow=1"));
    CHECK_THAT(page.body, Catch::Contains("\"n1/build\""));
    CHECK_THAT(page.body, !Catch::Contains("src="));  // No external assets.
    RequireFail(Call(reg, "GET", "/log/streamer?file=<script>"), 400);
  }
  // Log rows are data: no event was recorded for any of them.
  CHECK(AuditExportLines(dir.Sub("data")).size() == events_before);
}

}  // namespace
}  // namespace cloister::testing
