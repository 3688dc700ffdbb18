#include "tests/crash/child_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace cloister::testing {
namespace {

std::string NameOf(const std::string& assignment) {
  return assignment.substr(0, assignment.find('='));
}

}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv,
                           const std::vector<std::string>& env_extra,
                           const std::string& output_file) {
  if (argv.empty()) {
    throw std::runtime_error("ChildProcess: empty argv");
  }
  // Everything exec needs is built before fork: between fork and exec only async-signal-safe
  // calls are allowed.
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; entry++) {
    std::string assignment(*entry);
    bool replaced = false;
    for (const std::string& extra : env_extra) {
      replaced = replaced || NameOf(extra) == NameOf(assignment);
    }
    if (!replaced) {
      env.push_back(std::move(assignment));
    }
  }
  env.insert(env.end(), env_extra.begin(), env_extra.end());
  std::vector<char*> argv_c;
  for (const std::string& arg : argv) {
    argv_c.push_back(const_cast<char*>(arg.c_str()));
  }
  argv_c.push_back(nullptr);
  std::vector<char*> env_c;
  for (const std::string& assignment : env) {
    env_c.push_back(const_cast<char*>(assignment.c_str()));
  }
  env_c.push_back(nullptr);

  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  if (!output_file.empty()) {
    // Both ends of each "pipe" are the file: the child gets it, the parent reads nothing.
    const int fd = open(output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      throw std::runtime_error("open " + output_file + ": " + std::strerror(errno));
    }
    out_pipe[1] = fd;
    err_pipe[1] = fd;
  } else {
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
      close(out_pipe[0]);
      close(out_pipe[1]);
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
  }
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) {
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid_ == 0) {
    // The child: die with the test, and exec with the pipes as stdout and stderr (dup2 clears
    // O_CLOEXEC on the copies).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(126);
    }
    if (dup2(out_pipe[1], STDOUT_FILENO) < 0 || dup2(err_pipe[1], STDERR_FILENO) < 0) {
      _exit(126);
    }
    execve(argv_c[0], argv_c.data(), env_c.data());
    _exit(127);
  }
  close(out_pipe[1]);
  if (err_pipe[1] != out_pipe[1]) {
    close(err_pipe[1]);
  }
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    Kill(SIGKILL);
    Wait();
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

bool ChildProcess::Pump(int timeout_ms) {
  struct pollfd fds[2];
  int n = 0;
  int* owners[2];
  std::string* sinks[2];
  if (out_fd_ >= 0) {
    fds[n] = {out_fd_, POLLIN, 0};
    owners[n] = &out_fd_;
    sinks[n++] = &out_;
  }
  if (err_fd_ >= 0) {
    fds[n] = {err_fd_, POLLIN, 0};
    owners[n] = &err_fd_;
    sinks[n++] = &err_;
  }
  if (n == 0) {
    return false;
  }
  int ready = poll(fds, n, timeout_ms);
  if (ready < 0 && errno != EINTR) {
    throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
  }
  for (int i = 0; i < n && ready > 0; i++) {
    if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
      continue;
    }
    char buf[65536];
    ssize_t got = read(fds[i].fd, buf, sizeof(buf));
    if (got > 0) {
      sinks[i]->append(buf, static_cast<size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      close(*owners[i]);
      *owners[i] = -1;
    }
  }
  return out_fd_ >= 0 || err_fd_ >= 0;
}

void ChildProcess::ReadUntil(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      Pump(0);
      return;
    }
    if (!Pump(static_cast<int>(left.count()))) {
      return;
    }
  }
}

void ChildProcess::Kill(int signal) {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, signal);
  }
}

bool ChildProcess::Running() {
  if (reaped_) {
    return false;
  }
  pid_t done = waitpid(pid_, &status_, WNOHANG);
  if (done == pid_) {
    reaped_ = true;
    ReadUntil(std::chrono::steady_clock::now() + std::chrono::seconds(1));
    return false;
  }
  return true;
}

int ChildProcess::Wait() {
  if (reaped_) {
    return status_;
  }
  while (Pump(-1)) {
  }
  while (waitpid(pid_, &status_, 0) < 0) {
    if (errno != EINTR) {
      throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    }
  }
  reaped_ = true;
  return status_;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return "exited with code " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

std::string RunfilePath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir == nullptr) {
    throw std::runtime_error("TEST_SRCDIR is not set: run this test with bazel test");
  }
  return std::string(srcdir) + "/cloister/" + workspace_relative;
}

}  // namespace cloister::testing
