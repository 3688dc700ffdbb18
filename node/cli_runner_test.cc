// CliRunner: argv without a shell, separate streams, exit status, the time and output bounds
// (the whole process group is killed), PATH lookup, secrets hidden in messages, and detached
// processes with their pid file.
#include "node/cli_runner.h"

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "log/status.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

CliRunner Sh(uint64_t timeout_ms = 10'000, size_t output_bytes_max = 1u << 20) {
  return CliRunner(CliRunnerOptions{"sh", "/bin:/usr/bin", timeout_ms, output_bytes_max});
}

TEST_CASE("a command's stdout, stderr and exit status come back apart") {
  CliRunner sh = Sh();
  REQUIRE(sh.program_path() == "/bin/sh");
  // No shell between us and the program: the argument reaches sh as one word, quotes and all.
  Result<CliResult> ran = sh.Run({"-c", "echo \"out $1\"; echo err >&2; exit 7", "x", "a b"});
  REQUIRE(ran.ok());
  CHECK(ran->exit_status == 7);
  CHECK(ran->out == "out a b\n");
  CHECK(ran->err == "err\n");
}

TEST_CASE("a missing program is an error naming it, not a crash") {
  CliRunner missing(CliRunnerOptions{"no-such-cli", "/nonexistent:/bin"});
  CHECK(missing.program_path().empty());
  Result<CliResult> ran = missing.Run({"list"});
  REQUIRE(ran.status().code() == StatusCode::kIoError);
  CHECK(ran.status().message() == "no-such-cli list: no-such-cli not found on PATH");
  CliRunner relative(CliRunnerOptions{"bin/sh", ""});
  CHECK(relative.program_path().empty());  // Relative paths depend on the cwd: refused.
}

TEST_CASE("a command that outlives its time is killed with its whole process group") {
  testing::TempDir dir;
  const std::string marker = dir.Sub("child-pid");
  CliRunner sh = Sh(300);
  const auto start = std::chrono::steady_clock::now();
  // The grandchild keeps the pipes open; only killing the group ends it.
  Result<CliResult> ran = sh.Run({"-c", "sleep 30 & echo $! > " + marker + "; wait"});
  const auto took = std::chrono::steady_clock::now() - start;
  REQUIRE(ran.status().code() == StatusCode::kIoError);
  CHECK(ran.status().message() == "sh -c sleep 30 & echo $! > " + marker +
                                      "; wait: timed out after 300 ms");
  CHECK(took < std::chrono::seconds(5));
  std::ifstream in(marker);
  long pid = 0;
  REQUIRE(in >> pid);
  CHECK(testing::WaitFor(2000, [&] { return kill(static_cast<pid_t>(pid), 0) != 0; }));
}

TEST_CASE("output beyond the bound is an error, not memory without end") {
  CliRunner sh = Sh(10'000, 1000);
  Result<CliResult> ran = sh.Run({"-c", "head -c 5000 /dev/zero"});
  REQUIRE(ran.status().code() == StatusCode::kIoError);
  CHECK(ran.status().message() == "sh -c head -c 5000 /dev/zero: standard output exceeds "
                                  "1000 bytes");
}

TEST_CASE("secret arguments are passed as they are and shown as ***") {
  CliRunner sh = Sh(200);
  std::vector<CliArg> args = {"-c", "echo $1; sleep 5", "x", CliArg::Secret("hunter2")};
  CHECK(sh.CommandText(args) == "sh -c echo $1; sleep 5 x ***");
  Result<CliResult> ran = sh.Run(args);
  REQUIRE(!ran.ok());
  CHECK(ran.status().message().find("hunter2") == std::string::npos);
  Result<CliResult> echoed = Sh().Run({"-c", "echo $1", "x", CliArg::Secret("hunter2")});
  REQUIRE(echoed.ok());
  CHECK(echoed->out == "hunter2\n");  // The program itself gets the real value.
}

TEST_CASE("a detached process outlives the call, in its own session, with a pid file") {
  testing::TempDir dir;
  CliRunner sh = Sh();
  Result<pid_t> pid = sh.Spawn({"-c", "echo started; exec sleep 30"}, dir.Sub("log"),
                               dir.Sub("pid"));
  REQUIRE(pid.ok());
  std::ifstream pid_file(dir.Sub("pid"));
  long written = 0;
  REQUIRE(pid_file >> written);
  CHECK(written == *pid);
  CHECK(getsid(*pid) == *pid);  // Its own session and process group.
  CHECK(kill(*pid, 0) == 0);
  CHECK(testing::WaitFor(2000, [&] {
    std::ifstream log(dir.Sub("log"));
    std::string line;
    return std::getline(log, line) && line == "started";
  }));
  REQUIRE(kill(-*pid, SIGKILL) == 0);
  CHECK(testing::WaitFor(2000, [&] { return kill(*pid, 0) != 0; }));  // Not our zombie.
  CliRunner missing(CliRunnerOptions{"/nonexistent/tart", ""});
  Result<pid_t> none = missing.Spawn({"run", "vm"}, dir.Sub("log2"), dir.Sub("pid2"));
  CHECK(none.status().message() == "/nonexistent/tart run vm: /nonexistent/tart is not an "
                                   "executable file");
}

}  // namespace
}  // namespace cloister::node
