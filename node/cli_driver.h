// CliDriver: what the anka and tart drivers share: the runner of their CLI, one mutex that
// serialises their calls, the state check before each strict call, guest commands, and the
// shape of the CLI's own words in an error. Each subclass says how to read a VM's state and how
// its CLI runs a command in the guest.
//
// Thread-safety: every public call takes mu_; subclasses call StatusOf and CheckedStatus with it
// held.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <vector>

#include "log/status.h"
#include "node/cli_runner.h"
#include "node/driver.h"

namespace cloister::node {

inline constexpr size_t kCliWordsMax = 400;  // Bytes of a CLI's output quoted in an error.

// A CLI's output as quoted in an error: trailing newlines dropped, at most kCliWordsMax bytes
// (then "..."), "(no output)" when empty.
std::string CliWords(const std::string& text);

// The name a clone of name is made under before it is renamed to name.
std::string CliScratchName(const std::string& name);

class CliDriver : public Driver {
 public:
  // Checks that name runs (kInvalidArgument if not: a CLI could start it), then runs
  // `/bin/sh -c script` through the CLI, bounded by run_timeout_ms. The exit status is the
  // script's; output is its standard output, then its standard error.
  Result<GuestResult> Run(const std::string& name, const std::string& script) final;

 protected:
  CliDriver(CliRunnerOptions runner_options, uint64_t run_timeout_ms);

  // name's state as the CLI reports it; errors start with "<what> <name>: ".
  virtual Result<VmStatus> StatusOf(const std::string& what, const std::string& name) = 0;
  // The CLI's arguments that run `/bin/sh -c script` in the running VM name.
  virtual std::vector<CliArg> GuestCommand(const std::string& name,
                                           const std::string& script) const = 0;

  // name's state if it is one of allowed; else kInvalidArgument "<op> <name>: <refusal>".
  Result<VmStatus> CheckedStatus(const std::string& op, const std::string& name,
                                 std::initializer_list<VmStatus> allowed, const char* refusal);

  CliRunner runner_;
  std::mutex mu_;

 private:
  uint64_t run_timeout_ms_;
};

}  // namespace cloister::node
