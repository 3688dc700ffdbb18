// ChildProcess: runs a test helper binary with its stdout and stderr on pipes.
//
// The crash and fault-injection tests start a child, read what it acknowledges while it runs,
// kill it (or let it exit), and then inspect the data directory it left behind. The child gets
// PR_SET_PDEATHSIG(SIGKILL), so it never outlives a test that is itself killed by a timeout.
//
// Not thread-safe: one test thread drives one ChildProcess.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace cloister::testing {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with argv, and the parent's environment plus env_extra
  // ("NAME=value" entries, which replace variables of the same name). Throws std::runtime_error
  // if the pipes or the fork fail; a failed exec shows up as exit code 127.
  //
  // With output_file, the child's stdout and stderr are appended to that file instead of
  // pipes (out() and err() stay empty): for a long-running child whose output the test reads
  // only now and then, and which must never block on a full pipe.
  ChildProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env_extra,
               const std::string& output_file = "");

  // Kills (SIGKILL) and reaps the child if it is still running.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Collects output until deadline or until both pipes reach end-of-file, whichever is first.
  void ReadUntil(std::chrono::steady_clock::time_point deadline);

  // Sends signal to the child (no-op once it has been reaped).
  void Kill(int signal);

  // True until the child has exited (reaps it, without blocking, when it has).
  bool Running();

  // Collects output to end-of-file, reaps the child and returns its wait status. Once reaped,
  // later calls return the same status.
  int Wait();

  // Everything read so far.
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  // Reads what is available on the open pipes, waiting at most timeout_ms (-1: forever).
  // Returns false when both pipes are closed.
  bool Pump(int timeout_ms);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string out_;
  std::string err_;
};

// "exited with code 75", "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

// Path of a binary in this test's runfiles, e.g. RunfilePath("tests/crash/crash_child").
std::string RunfilePath(const std::string& workspace_relative);

}  // namespace cloister::testing
