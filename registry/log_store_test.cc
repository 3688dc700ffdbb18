// LogStore: names, durable appends, listing, and archives read back by the system tar.
#include "registry/log_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testutil.h"

namespace cloister::registry {
namespace {

using testing::TempDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::unique_ptr<LogStore> OpenStore(const std::string& root) {
  auto store = LogStore::Open(root);
  REQUIRE(store.ok());
  return std::move(*store);
}

TEST_CASE("host and service names are one safe segment") {
  for (const char* good : {"n1", "build.step-2", "user@host", "A_b"}) {
    CHECK(LogStore::NameProblem(good).empty());
  }
  for (const std::string& bad : std::vector<std::string>{std::string(""), std::string("."), std::string(".."),
                                std::string(".hidden"), std::string("a/b"), std::string("a b"),
                                std::string("a\\b"), std::string("a\nb"), std::string("a\0b", 3),
                                std::string(kLogNameBytesMax + 1, 'x')}) {
    CHECK_FALSE(LogStore::NameProblem(bad).empty());
  }
  CHECK(LogStore::NameProblem(std::string(kLogNameBytesMax, 'x')).empty());
}

TEST_CASE("appends add a missing newline, list sorts, PathOf refuses bad names") {
  TempDir dir;
  auto store = OpenStore(dir.Sub("logs"));
  REQUIRE(store->Append("n1", "build", "a\nb").ok());
  REQUIRE(store->Append("n1", "build", "c\n").ok());
  REQUIRE(store->Append("n0", "agent", "x\n").ok());
  REQUIRE(store->AppendEvents({R"({"a":1})", R"({"b":2})"}).ok());
  CHECK(store->Append("..", "build", "r").code() == StatusCode::kInvalidArgument);
  CHECK(ReadAll(dir.Sub("logs/hosts/n1/build.log")) == "a\nb\nc\n");
  CHECK(ReadAll(dir.Sub("logs/eventLog.jsonl")) == "{\"a\":1}\n{\"b\":2}\n");
  const auto all = store->List();
  REQUIRE(all.size() == 3);
  CHECK(all[0].file == "eventLog");
  CHECK(all[1].file == "n0/agent");
  CHECK(all[2].file == "n1/build");
  CHECK(all[2].size == 6);
  CHECK(store->List("n1").size() == 1);
  CHECK(store->List("", "eventLog").size() == 1);
  CHECK(store->PathOf("n1/build").ok());
  CHECK(store->PathOf("n1/none").status().code() == StatusCode::kNotFound);
  CHECK(store->PathOf("../x").status().code() == StatusCode::kInvalidArgument);
  CHECK(store->PathOf("n1").status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("an archive of files larger than a block untars to the same bytes") {
  TempDir dir;
  auto store = OpenStore(dir.Sub("logs"));
  std::string rows;
  for (int i = 0; i < 20000; i++) {
    rows += "row " + std::to_string(i) + " of a long build log\n";
  }
  REQUIRE(store->Append("host-1", "service_a", rows).ok());
  REQUIRE(store->Append("host-2", "b", "one row\n").ok());
  REQUIRE(store->AppendEvents({R"({"e":1})"}).ok());
  const std::string archive = dir.Sub("a.tar.gz");
  const int fd = ::open(archive.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(LogStore::WriteArchive(store->root(), store->List(), fd).ok());
  ::close(fd);
  const std::string out = dir.Sub("out");
  const std::string command = "mkdir -p " + out + " && tar -xzf " + archive + " -C " + out;
  REQUIRE(std::system(command.c_str()) == 0);
  CHECK(ReadAll(out + "/host-1/service_a.log") == rows);
  CHECK(ReadAll(out + "/host-2/b.log") == "one row\n");
  CHECK(ReadAll(out + "/eventLog.jsonl") == "{\"e\":1}\n");
}

}  // namespace
}  // namespace cloister::registry
