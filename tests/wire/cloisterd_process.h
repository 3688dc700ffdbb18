// CloisterdProcess: the real cloisterd binary, started by a test on ephemeral loopback ports.
//
// Start runs api/cloisterd/cloisterd from the test's runfiles with --data, both listeners on
// 127.0.0.1:0 and --ready-file, plus the caller's flags and environment, and waits until the
// ready file names the bound ports. The daemon's stdout and stderr go to a file (never a pipe
// that could fill and stall it), read with Output(). The child dies with the test
// (PR_SET_PDEATHSIG) and is killed by the destructor if still running.
//
// RunCloisterdToExit is for startup failures: it runs the binary and collects its exit status
// and output, killing it if it does not exit in time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "log/status.h"
#include "tests/crash/child_process.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {

class CloisterdProcess {
 public:
  // data_dir holds the daemon's state; work_dir gets its ready and output files (one pair per
  // start, so a restarted daemon's output is separate). Fails with the daemon's output if it
  // exits or is not ready within timeout_ms.
  static Result<std::unique_ptr<CloisterdProcess>> Start(const std::string& data_dir,
                                                         const std::string& work_dir,
                                                         const std::vector<std::string>& flags,
                                                         const std::vector<std::string>& env = {},
                                                         int timeout_ms = 20000);
  ~CloisterdProcess();
  CloisterdProcess(const CloisterdProcess&) = delete;
  CloisterdProcess& operator=(const CloisterdProcess&) = delete;

  // 0 if that listener is not running (--role).
  uint16_t controller_port() const { return controller_port_; }
  uint16_t registry_port() const { return registry_port_; }
  WireTarget controller() const;
  WireTarget registry() const;

  // Sends signal and waits up to timeout_ms for the exit; returns the wait status, or fails
  // (after a SIGKILL) if the daemon did not exit in time.
  Result<int> Stop(int signal, int timeout_ms = 20000);
  bool Running() { return process_->Running(); }
  // Sends signal without waiting.
  void Kill(int signal) { process_->Kill(signal); }
  pid_t pid() const { return process_->pid(); }

  // Everything the daemon has written to stdout and stderr so far.
  std::string Output() const;

 private:
  CloisterdProcess() = default;

  std::unique_ptr<ChildProcess> process_;
  std::string output_path_;
  bool tls_ = false;
  uint16_t controller_port_ = 0;
  uint16_t registry_port_ = 0;
};

struct ExitResult {
  int wait_status = 0;
  std::string output;  // stdout and stderr together.
  // Exit code, or -1 if the process did not exit normally.
  int ExitCode() const;
};

// Runs cloisterd with exactly args (no defaults added) and env_extra; kills it and fails if it
// has not exited within timeout_ms.
Result<ExitResult> RunCloisterdToExit(const std::vector<std::string>& args,
                                      const std::vector<std::string>& env_extra,
                                      int timeout_ms = 20000);

// Path of the cloisterd binary in the test's runfiles.
std::string CloisterdPath();

// Reads a whole file ("" if it cannot be read).
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace cloister::testing
