#include "node/cli_driver.h"

#include <algorithm>
#include <utility>

namespace cloister::node {

std::string CliWords(const std::string& text) {
  std::string words = text;
  while (!words.empty() && (words.back() == '\n' || words.back() == '\r')) {
    words.pop_back();
  }
  if (words.size() > kCliWordsMax) {
    words = words.substr(0, kCliWordsMax) + "...";
  }
  return words.empty() ? "(no output)" : words;
}

std::string CliScratchName(const std::string& name) { return name + ".cloister-clone"; }

CliDriver::CliDriver(CliRunnerOptions runner_options, uint64_t run_timeout_ms)
    : runner_(std::move(runner_options)), run_timeout_ms_(run_timeout_ms) {}

Result<VmStatus> CliDriver::CheckedStatus(const std::string& op, const std::string& name,
                                          std::initializer_list<VmStatus> allowed,
                                          const char* refusal) {
  Result<VmStatus> status = StatusOf(op, name);
  if (status.ok() && std::find(allowed.begin(), allowed.end(), *status) == allowed.end()) {
    return Status::InvalidArgument(op + " " + name + ": " + refusal);
  }
  return status;
}

Result<GuestResult> CliDriver::Run(const std::string& name, const std::string& script) {
  std::lock_guard<std::mutex> lock(mu_);
  Result<VmStatus> status = CheckedStatus("run", name, {VmStatus::kRunning}, "VM is not running");
  if (!status.ok()) {
    return status.status();
  }
  Result<CliResult> ran = runner_.Run(GuestCommand(name, script), run_timeout_ms_);
  if (!ran.ok()) {
    return Status::IoError("run " + name + ": " + ran.status().message());
  }
  return GuestResult{ran->exit_status, ran->out + ran->err};
}

}  // namespace cloister::node
