#include "tests/wire/cloisterd_process.h"

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace cloister::testing {
namespace {

// "controller=PORT\nregistry=PORT\n" → the ports (missing lines leave 0).
bool ParseReadyFile(const std::string& text, uint16_t* controller, uint16_t* registry) {
  std::istringstream lines(text);
  std::string line;
  bool any = false;
  while (std::getline(lines, line)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) {
      return false;
    }
    const int port = std::atoi(line.c_str() + eq + 1);
    if (port <= 0 || port > 65535) {
      return false;
    }
    const std::string name = line.substr(0, eq);
    if (name == "controller") {
      *controller = static_cast<uint16_t>(port);
    } else if (name == "registry") {
      *registry = static_cast<uint16_t>(port);
    } else {
      return false;
    }
    any = true;
  }
  return any;
}

bool HasFlag(const std::vector<std::string>& flags, const std::string& name) {
  for (const std::string& flag : flags) {
    if (flag == name || flag.rfind(name + "=", 0) == 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string CloisterdPath() { return RunfilePath("api/cloisterd/cloisterd"); }

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Result<std::unique_ptr<CloisterdProcess>> CloisterdProcess::Start(
    const std::string& data_dir, const std::string& work_dir,
    const std::vector<std::string>& flags, const std::vector<std::string>& env, int timeout_ms) {
  static std::atomic<int> starts{0};
  const std::string n = std::to_string(starts++);
  const std::string ready_path = work_dir + "/ready." + n;
  std::unique_ptr<CloisterdProcess> daemon(new CloisterdProcess());
  daemon->output_path_ = work_dir + "/cloisterd." + n + ".log";
  std::vector<std::string> argv = {CloisterdPath(), "--data", data_dir, "--ready-file",
                                   ready_path};
  if (!HasFlag(flags, "--listen-addr")) {
    argv.insert(argv.end(), {"--listen-addr", "127.0.0.1:0"});
  }
  if (!HasFlag(flags, "--registry-listen-address")) {
    argv.insert(argv.end(), {"--registry-listen-address", "127.0.0.1:0"});
  }
  argv.insert(argv.end(), flags.begin(), flags.end());
  daemon->tls_ = HasFlag(flags, "--use-https");
  for (const std::string& assignment : env) {
    daemon->tls_ = daemon->tls_ || assignment == "ANKA_USE_HTTPS=true";
  }
  daemon->process_ = std::make_unique<ChildProcess>(argv, env, daemon->output_path_);

  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (MonotonicMs() < deadline) {
    // The daemon writes the file under a temporary name and renames it: once it exists it is
    // complete.
    const std::string text = ReadFileOrEmpty(ready_path);
    if (!text.empty()) {
      if (!ParseReadyFile(text, &daemon->controller_port_, &daemon->registry_port_)) {
        return Status::Corruption("cloisterd wrote an unreadable ready file: " + text);
      }
      return daemon;
    }
    if (!daemon->process_->Running()) {
      return Status::IoError("cloisterd " +
                             DescribeWaitStatus(daemon->process_->Wait()) +
                             " before it was ready; its output:\n" + daemon->Output());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  daemon->process_->Kill(SIGKILL);
  daemon->process_->Wait();
  return Status::IoError("cloisterd was not ready within " + std::to_string(timeout_ms) +
                         " ms; its output:\n" + daemon->Output());
}

CloisterdProcess::~CloisterdProcess() = default;  // ChildProcess kills and reaps.

WireTarget CloisterdProcess::controller() const {
  WireTarget target;
  target.port = controller_port_;
  target.tls = tls_;
  return target;
}

WireTarget CloisterdProcess::registry() const {
  WireTarget target;
  target.port = registry_port_;
  target.tls = tls_;
  return target;
}

Result<int> CloisterdProcess::Stop(int signal, int timeout_ms) {
  process_->Kill(signal);
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (process_->Running()) {
    if (MonotonicMs() >= deadline) {
      process_->Kill(SIGKILL);
      process_->Wait();
      return Status::IoError("cloisterd did not exit within " + std::to_string(timeout_ms) +
                             " ms of signal " + std::to_string(signal));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return process_->Wait();
}

std::string CloisterdProcess::Output() const { return ReadFileOrEmpty(output_path_); }

int ExitResult::ExitCode() const {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
}

Result<ExitResult> RunCloisterdToExit(const std::vector<std::string>& args,
                                      const std::vector<std::string>& env_extra,
                                      int timeout_ms) {
  std::vector<std::string> argv = {CloisterdPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess process(argv, env_extra);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (process.Running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      process.Kill(SIGKILL);
      process.Wait();
      return Status::IoError("cloisterd did not exit within " + std::to_string(timeout_ms) +
                             " ms; its stderr:\n" + process.err());
    }
    process.ReadUntil(std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
  }
  ExitResult result;
  result.wait_status = process.Wait();
  result.output = process.out() + process.err();
  return result;
}

}  // namespace cloister::testing
