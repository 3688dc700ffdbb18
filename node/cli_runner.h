// CliRunner: runs a hypervisor's command-line tool (anka, tart) the way the CLI drivers need it:
// an argv and no shell, standard output and standard error captured separately, the exit status,
// a bound on the output kept and on the time taken (the whole process group is killed when the
// time runs out), and a text of the command for messages in which secret arguments show "***".
//
// The program is an absolute path or a bare name looked up on PATH (the runner's own `path`, or
// the process's PATH when that is empty) when the runner is made: a missing program is an error
// of every call, not a crash. A command's non-zero exit status is a result, not an error.
//
// Errors (Status codes): kIoError for everything that kept the command from finishing (not found,
// not executable, fork or pipe failure, timed out, more output than the bound); the message
// starts with the command's text ("anka -j start vm-1: timed out after 2000 ms").
//
// Thread-safety: Run and Spawn may be called from any thread at once; each call has its own
// pipes and child. The runner itself is immutable after construction.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "log/status.h"

namespace cloister::node {

// One argument. A secret one (a password, a token) is passed as is but shown as "***".
struct CliArg {
  std::string value;
  bool secret = false;

  CliArg(std::string v) : value(std::move(v)) {}  // NOLINT: implicit, so argv reads as text.
  CliArg(const char* v) : value(v) {}              // NOLINT
  static CliArg Secret(std::string v) {
    CliArg arg(std::move(v));
    arg.secret = true;
    return arg;
  }
};

struct CliResult {
  int exit_status = 0;  // The exit code; 128 + N when killed by signal N.
  std::string out;      // Standard output, whole (within the bound).
  std::string err;      // Standard error, whole (within the bound).
};

struct CliRunnerOptions {
  std::string program;          // "anka", "tart", or an absolute path.
  std::string path;             // Where to look for a bare name; empty: $PATH.
  uint64_t timeout_ms = 300'000;               // Per call, unless the call gives its own.
  size_t output_bytes_max = 8u << 20;          // Per stream.
};

class CliRunner {
 public:
  explicit CliRunner(CliRunnerOptions options);

  // The program resolved to an absolute path, or empty if it was not found.
  const std::string& program_path() const { return program_path_; }
  // "anka" (the name as configured), for messages.
  const std::string& program() const { return options_.program; }

  // Runs the program with args, standard input /dev/null, in its own process group.
  // timeout_ms 0: the runner's default.
  Result<CliResult> Run(const std::vector<CliArg>& args, uint64_t timeout_ms = 0) const;

  // Starts the program detached from this process (a new session, so its own process group,
  // reparented to init: it outlives the agent and is never this process's zombie), standard
  // input /dev/null, standard output and error appended to log_file, and writes its pid to
  // pid_file (replaced atomically) before it runs. Returns the pid.
  Result<pid_t> Spawn(const std::vector<CliArg>& args, const std::string& log_file,
                      const std::string& pid_file) const;

  // "anka -j start vm-1", secrets as "***".
  std::string CommandText(const std::vector<CliArg>& args) const;

 private:
  Status CheckProgram(const std::vector<CliArg>& args) const;

  CliRunnerOptions options_;
  std::string program_path_;
};

}  // namespace cloister::node
