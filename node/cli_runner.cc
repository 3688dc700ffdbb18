#include "node/cli_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace cloister::node {
namespace {

using Clock = std::chrono::steady_clock;

bool Executable(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string Resolve(const std::string& program, const std::string& path) {
  if (program.empty()) {
    return "";
  }
  if (program.find('/') != std::string::npos) {
    // Only absolute paths: a relative one would depend on the agent's working directory.
    return program[0] == '/' && Executable(program) ? program : "";
  }
  std::string dirs = path;
  if (dirs.empty()) {
    const char* env = std::getenv("PATH");
    dirs = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  }
  std::stringstream list(dirs);
  for (std::string dir; std::getline(list, dir, ':');) {
    if (!dir.empty() && dir[0] == '/' && Executable(dir + "/" + program)) {
      return dir + "/" + program;
    }
  }
  return "";
}

// argv for execv: pointers into args (which outlive the child's exec) plus a null.
std::vector<char*> Argv(const std::string& program, const std::vector<CliArg>& args) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 2);
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const CliArg& arg : args) {
    argv.push_back(const_cast<char*>(arg.value.c_str()));
  }
  argv.push_back(nullptr);
  return argv;
}

// Kills the process group of pid and reaps pid.
void KillAndReap(pid_t pid) {
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

int ExitStatusOf(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return 255;
}

// Writes n in decimal into buf (async-signal-safe); returns the length.
size_t FormatPid(pid_t n, char* buf) {
  char digits[24];
  size_t len = 0;
  do {
    digits[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n > 0 && len < sizeof(digits));
  for (size_t i = 0; i < len; ++i) {
    buf[i] = digits[len - 1 - i];
  }
  buf[len] = '\n';
  return len + 1;
}

}  // namespace

CliRunner::CliRunner(CliRunnerOptions options)
    : options_(std::move(options)), program_path_(Resolve(options_.program, options_.path)) {}

std::string CliRunner::CommandText(const std::vector<CliArg>& args) const {
  std::string text = options_.program;
  for (const CliArg& arg : args) {
    text += " ";
    text += arg.secret ? "***" : arg.value;
  }
  return text;
}

Status CliRunner::CheckProgram(const std::vector<CliArg>& args) const {
  if (program_path_.empty()) {
    return Status::IoError(CommandText(args) + ": " + options_.program +
                           (options_.program.find('/') != std::string::npos
                                ? " is not an executable file"
                                : " not found on PATH"));
  }
  return Status::Ok();
}

Result<CliResult> CliRunner::Run(const std::vector<CliArg>& args, uint64_t timeout_ms) const {
  if (Status ok = CheckProgram(args); !ok.ok()) {
    return ok;
  }
  const std::string text = CommandText(args);
  const auto fail = [&](const std::string& what) {
    return Status::IoError(text + ": " + what + ": " + std::strerror(errno));
  };
  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    return fail("pipe");
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    Status status = fail("pipe");
    close(out_pipe[0]);
    close(out_pipe[1]);
    return status;
  }
  std::vector<char*> argv = Argv(program_path_, args);
  const pid_t pid = fork();
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    setpgid(0, 0);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_pipe[1], 1) < 0 ||
        dup2(err_pipe[1], 2) < 0) {
      _exit(126);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    Status status = fail("fork");
    close(out_pipe[0]);
    close(err_pipe[0]);
    return status;
  }
  setpgid(pid, pid);  // Also here: the group exists before a kill, whoever runs first.

  const uint64_t limit_ms = timeout_ms != 0 ? timeout_ms : options_.timeout_ms;
  const auto deadline = Clock::now() + std::chrono::milliseconds(limit_ms);
  CliResult result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  std::string error;
  char buf[16384];
  while (open_count > 0 && error.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                            Clock::now());
    if (left.count() <= 0) {
      error = "timed out after " + std::to_string(limit_ms) + " ms";
      break;
    }
    const int ready = poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) {
      error = std::string("poll: ") + std::strerror(errno);
    }
    for (int i = 0; i < 2 && ready > 0; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) {
        continue;
      }
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
        if (sinks[i]->size() > options_.output_bytes_max) {
          error = std::string(i == 0 ? "standard output" : "standard error") +
                  " exceeds " + std::to_string(options_.output_bytes_max) + " bytes";
        }
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  for (pollfd& fd : fds) {
    if (fd.fd >= 0) {
      close(fd.fd);
    }
  }
  // Both streams are closed: the command has exited or is about to; wait for it, bounded.
  int status = 0;
  while (error.empty()) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      result.exit_status = ExitStatusOf(status);
      return result;
    }
    if (done < 0 && errno != EINTR) {
      return fail("waitpid");
    }
    if (Clock::now() >= deadline) {
      error = "timed out after " + std::to_string(limit_ms) + " ms";
      break;
    }
    usleep(5000);
  }
  KillAndReap(pid);
  return Status::IoError(text + ": " + error);
}

Result<pid_t> CliRunner::Spawn(const std::vector<CliArg>& args, const std::string& log_file,
                               const std::string& pid_file) const {
  if (Status ok = CheckProgram(args); !ok.ok()) {
    return ok;
  }
  const std::string text = CommandText(args);
  const std::string pid_tmp = pid_file + ".tmp";
  // The grandchild reports its pid (or its failure to start) through this pipe.
  int report[2] = {-1, -1};
  if (pipe2(report, O_CLOEXEC) != 0) {
    return Status::IoError(text + ": pipe: " + std::strerror(errno));
  }
  std::vector<char*> argv = Argv(program_path_, args);
  const pid_t child = fork();
  if (child == 0) {
    close(report[0]);
    const pid_t grandchild = fork();
    if (grandchild != 0) {
      _exit(grandchild < 0 ? 1 : 0);  // The grandchild is reparented to init.
    }
    setsid();  // Not a group leader (a fresh fork): it leads its own session and group.
    const int null_fd = open("/dev/null", O_RDONLY);
    const int log_fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    char pid_text[32];
    const size_t pid_len = FormatPid(getpid(), pid_text);
    const int pid_fd = open(pid_tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (null_fd < 0 || log_fd < 0 || pid_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 ||
        dup2(log_fd, 2) < 0 || write(pid_fd, pid_text, pid_len) != static_cast<ssize_t>(pid_len) ||
        fsync(pid_fd) != 0 || close(pid_fd) != 0 ||
        rename(pid_tmp.c_str(), pid_file.c_str()) != 0) {
      const char bad = 'x';
      (void)!write(report[1], &bad, 1);
      _exit(126);
    }
    // The report pipe closes at exec (O_CLOEXEC): EOF with nothing read means it ran.
    execv(argv[0], argv.data());
    const char bad = 'e';
    (void)!write(report[1], &bad, 1);
    _exit(127);
  }
  close(report[1]);
  if (child < 0) {
    close(report[0]);
    return Status::IoError(text + ": fork: " + std::strerror(errno));
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  char got = 0;
  ssize_t n = 0;
  do {
    n = read(report[0], &got, 1);
  } while (n < 0 && errno == EINTR);
  close(report[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::IoError(text + ": could not start a detached process");
  }
  if (n == 1) {
    return Status::IoError(text + (got == 'e' ? ": exec failed" : ": could not set up its log "
                                                                  "or pid file"));
  }
  // The pid file is complete (renamed before exec).
  FILE* file = std::fopen(pid_file.c_str(), "r");
  long pid = 0;
  if (file == nullptr || std::fscanf(file, "%ld", &pid) != 1 || pid <= 0) {
    if (file != nullptr) {
      std::fclose(file);
    }
    return Status::IoError(text + ": no pid in " + pid_file);
  }
  std::fclose(file);
  return static_cast<pid_t>(pid);
}

}  // namespace cloister::node
