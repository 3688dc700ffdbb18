// Running the real `cloister` binary from a test (testonly): found in the test's runfiles, its
// stdout and stderr captured in files, so no pipe can fill up and stall it.
#pragma once

#include <string>
#include <vector>

namespace cloister::tools {

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// $TEST_SRCDIR/cloister/tools/cloister; REQUIREs that the test runs under bazel test.
std::string CloisterPath();

// Runs cloister with args to its exit; REQUIREs a normal exit (a crash fails the test).
RunResult RunCloister(const std::vector<std::string>& args);

// A whole file ("" if it cannot be read).
std::string ReadFile(const std::string& path);

// text split at newlines (no empty last line for a trailing newline).
std::vector<std::string> Lines(const std::string& text);

}  // namespace cloister::tools
