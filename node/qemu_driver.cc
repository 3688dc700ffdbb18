#include "node/qemu_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#include "log/atomic_file.h"
#include "node/cli_policy.h"
#include "node/qmp.h"

namespace cloister::node {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// config.json.
struct QemuDriver::Config {
  std::string name;
  std::string uuid;
  std::string template_id;
  std::string tag;
  uint32_t cpu_cores = 1;
  uint32_t ram_mb = 256;
  std::string kernel;  // Absolute.
  std::string initrd;  // Absolute.
  std::string append;
  bool network = false;        // Asked for and allowed: an unrestricted NIC unless restricted.
  bool restricted = false;     // local denied: restrict=on (slirp reaches nothing).
  std::vector<PortForward> port_forwards;  // The allowed subset of those asked.
  std::vector<std::string> shared_folders;  // Allowed by the policy: -virtfs, read-only.
  bool usb = false;            // The policy allows USB module "host": a qemu-xhci controller.
  bool vnc = true;             // Keyboard pass-through allowed: a VNC console.
  std::string vnc_password;

  // A NIC at all: networking, or forwards (which then get a restricted NIC).
  bool Nic() const { return network || !port_forwards.empty(); }
  bool Restrict() const { return !network || restricted; }
};

// What a look at the VM's directory and its QEMU found.
struct QemuDriver::Observed {
  VmStatus status = VmStatus::kStopped;
  int pid = 0;              // The live QEMU, or 0.
  std::string qmp_status;   // query-status's "status" when live and QMP answered.
};

namespace {

constexpr char kLockFile[] = "qemu.lock";
constexpr char kStaging[] = ".staging";
constexpr char kTrash[] = ".trash";
constexpr char kConfigFormat[] = "cloister-qemu-vm";
constexpr char kTemplateFormat[] = "cloister-qemu-template";
constexpr char kAgentPort[] = "org.cloister.agent.0";
constexpr char kBootMarker[] = "AGENT-BOOT-OK";
constexpr char kSlirpGuestIp[] = "10.0.2.15";

std::string Errno(int err) { return std::strerror(err); }

std::string RandomText(size_t n, const char* alphabet) {
  std::random_device device;
  const size_t size = std::strlen(alphabet);
  std::uniform_int_distribution<size_t> pick(0, size - 1);
  std::string text;
  for (size_t i = 0; i < n; i++) text += alphabet[pick(device)];
  return text;
}

std::string NewUuid() {
  std::string hex = RandomText(32, "0123456789abcdef");
  hex[12] = '4';
  hex[16] = "89ab"[hex[16] % 4];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::NotFound(path + ": " + Errno(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The last lines of a program's output, for an error message (at most 600 bytes).
std::string Tail(const std::string& text) {
  std::string trimmed = text;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == ' ')) {
    trimmed.pop_back();
  }
  if (trimmed.size() > 600) trimmed = "..." + trimmed.substr(trimmed.size() - 600);
  for (char& c : trimmed) {
    if (c == '\n') c = ';';
  }
  return trimmed.empty() ? "no output" : trimmed;
}

Status FsyncPath(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IoError(path + ": " + Errno(errno));
  }
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  return rc == 0 ? Status::Ok() : Status::IoError("fsync " + path + ": " + Errno(err));
}

// Starts argv in cwd with stdin /dev/null and stdout+stderr to out_path; in a new session, with
// no descriptor but those three. Returns the child's pid. detach: the program runs as a
// grandchild (a new session's orphan), so it outlives this process and is not its child to reap.
// (QEMU's own -daemonize is not used: it makes QEMU ignore SIGCHLD, and then every migration to
// an "exec:" command fails.)
Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& cwd,
                    const std::string& out_path, bool detach = false) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    return Status::IoError(out_path + ": " + Errno(errno));
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int pid_pipe[2] = {-1, -1};
  if (detach && pipe2(pid_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    close(out);
    if (null_fd >= 0) close(null_fd);
    return Status::IoError("pipe: " + Errno(err));
  }
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    if (detach) {
      const pid_t grandchild = fork();
      if (grandchild != 0) {
        (void)!write(pid_pipe[1], &grandchild, sizeof(grandchild));
        _exit(grandchild > 0 ? 0 : 1);
      }
    }
    if (chdir(cwd.c_str()) != 0) _exit(126);
    dup2(null_fd, 0);
    dup2(out, 1);
    dup2(out, 2);
    for (int fd = 3; fd < 4096; fd++) close(fd);
    execvp(args[0], args.data());
    _exit(127);
  }
  const int err = errno;
  close(out);
  if (null_fd >= 0) close(null_fd);
  if (pid < 0) {
    if (detach) {
      close(pid_pipe[0]);
      close(pid_pipe[1]);
    }
    return Status::IoError("fork: " + Errno(err));
  }
  if (!detach) {
    return pid;
  }
  close(pid_pipe[1]);
  pid_t grandchild = -1;
  const ssize_t n = read(pid_pipe[0], &grandchild, sizeof(grandchild));
  close(pid_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (n != sizeof(grandchild) || grandchild <= 0) {
    return Status::IoError("fork: the detached child did not start");
  }
  return grandchild;
}

// Waits for child pid to exit, at most timeout (then kills it). Its exit code, or -1.
int WaitChild(pid_t pid, milliseconds timeout) {
  const Deadline deadline = DeadlineIn(timeout);
  for (;;) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    if (done < 0 && errno != EINTR) {
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
}

// Runs argv to completion (bounded by timeout); OK when it exits 0, else kIoError with what the
// program printed. out_path receives its output.
Status RunProgram(const std::vector<std::string>& argv, const std::string& cwd,
                  const std::string& out_path, milliseconds timeout) {
  auto pid = Spawn(argv, cwd, out_path);
  if (!pid.ok()) {
    return pid.status();
  }
  const int code = WaitChild(*pid, timeout);
  if (code == 0) {
    return Status::Ok();
  }
  auto output = ReadFile(out_path);
  std::string words = output.ok() ? Tail(*output) : "no output";
  if (code == 127) words = argv[0] + ": not found or not runnable";
  return Status::IoError(words);
}

// pid exists and is not a zombie.
bool ProcessExists(int pid) {
  if (pid <= 0) return false;
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return false;
  const size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] != 'Z';
}

// pid exists, is not a zombie, and its command line contains must_contain (the VM's uuid: a
// pidfile's number may have been reused by another process since).
bool ProcessAlive(int pid, const std::string& must_contain) {
  if (!ProcessExists(pid)) return false;
  auto cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  return cmdline.ok() && cmdline->find(must_contain) != std::string::npos;
}

// Waits until pid is gone, at most timeout; true if it is.
bool WaitGone(int pid, const std::string& uuid, milliseconds timeout) {
  const Deadline deadline = DeadlineIn(timeout);
  while (ProcessAlive(pid, uuid)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

// A free TCP port on 127.0.0.1 (bound and released: another process may take it first).
Result<uint16_t> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError("socket: " + Errno(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    close(fd);
    return Status::IoError("bind: " + Errno(err));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

nlohmann::json ForwardsJson(const std::vector<PortForward>& forwards) {
  nlohmann::json list = nlohmann::json::array();
  for (const PortForward& f : forwards) {
    list.push_back({{"name", f.name}, {"protocol", f.protocol}, {"guest_port", f.guest_port},
                    {"host_port", f.host_port}});
  }
  return list;
}

std::vector<PortForward> ForwardsFrom(const nlohmann::json& list) {
  std::vector<PortForward> forwards;
  if (!list.is_array()) return forwards;
  for (const nlohmann::json& f : list) {
    forwards.push_back({f.value("name", ""), f.value("protocol", "tcp"),
                        f.value("guest_port", uint16_t{0}), f.value("host_port", uint16_t{0})});
  }
  return forwards;
}

Result<QemuDriver::Config> LoadConfig(const std::string& dir) {
  auto text = ReadFile(dir + "/config.json");
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || j.value("format", "") != kConfigFormat) {
    return Status::Corruption(dir + "/config.json: not a cloister qemu VM config");
  }
  QemuDriver::Config c;
  try {
    c.name = j.at("name").get<std::string>();
    c.uuid = j.at("uuid").get<std::string>();
    c.template_id = j.value("template_id", "");
    c.tag = j.value("tag", "");
    c.cpu_cores = j.at("cpu_cores").get<uint32_t>();
    c.ram_mb = j.at("ram_mb").get<uint32_t>();
    c.kernel = j.at("kernel").get<std::string>();
    c.initrd = j.at("initrd").get<std::string>();
    c.append = j.value("append", "");
    c.network = j.value("network", false);
    c.restricted = j.value("restricted", false);
    c.port_forwards = ForwardsFrom(j.value("port_forwards", nlohmann::json::array()));
    c.shared_folders = j.value("shared_folders", std::vector<std::string>{});
    c.usb = j.value("usb", false);
    c.vnc = j.value("vnc", true);
    c.vnc_password = j.value("vnc_password", "");
  } catch (const nlohmann::json::exception&) {
    return Status::Corruption(dir + "/config.json: a field is missing or of the wrong type");
  }
  return c;
}

std::string ConfigJson(const QemuDriver::Config& c) {
  nlohmann::json j{{"format", kConfigFormat},
                   {"version", 2},
                   {"name", c.name},
                   {"uuid", c.uuid},
                   {"template_id", c.template_id},
                   {"tag", c.tag},
                   {"cpu_cores", c.cpu_cores},
                   {"ram_mb", c.ram_mb},
                   {"kernel", c.kernel},
                   {"initrd", c.initrd},
                   {"append", c.append},
                   {"network", c.network},
                   {"restricted", c.restricted},
                   {"port_forwards", ForwardsJson(c.port_forwards)},
                   {"shared_folders", c.shared_folders},
                   {"usb", c.usb},
                   {"vnc", c.vnc},
                   {"vnc_password", c.vnc_password}};
  return j.dump(1) + "\n";
}

int ReadPid(const std::string& dir) {
  auto text = ReadFile(dir + "/pid");
  if (!text.ok()) return 0;
  try {
    return std::stoi(*text);
  } catch (const std::exception&) {
    return 0;
  }
}

void RemoveRuntimeFiles(const std::string& dir) {
  for (const char* name : {"pid", "qmp.sock", "agent.sock", "run.json", "vm.state.tmp"}) {
    unlink((dir + "/" + name).c_str());
  }
}

// One QMP command on a fresh connection.
Result<nlohmann::json> QmpOnce(const std::string& dir, const std::string& command,
                               const nlohmann::json& args, milliseconds timeout) {
  const Deadline deadline = DeadlineIn(timeout);
  auto qmp = QmpClient::Connect(dir + "/qmp.sock", deadline);
  if (!qmp.ok()) return qmp.status();
  return (*qmp)->Execute(command, args, deadline);
}

// Polls query-status until its status is not `leaving` (or the deadline); the last status.
Result<std::string> WaitStatusLeaves(QmpClient* qmp, const std::string& leaving,
                                     Deadline deadline) {
  for (int i = 0; i < 100'000; i++) {
    auto status = qmp->Execute("query-status", nullptr, deadline);
    if (!status.ok()) return status.status();
    const std::string now = status->value("status", "");
    if (now != leaving || std::chrono::steady_clock::now() >= deadline) return now;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return Status::IoError("query-status: no change");
}

std::string ShellQuote(const std::string& text) { return "'" + text + "'"; }

// status with prefix before its message, same code.
Status Prefixed(const std::string& prefix, const Status& status) {
  const std::string m = prefix + status.message();
  switch (status.code()) {
    case StatusCode::kNotFound: return Status::NotFound(m);
    case StatusCode::kInvalidArgument: return Status::InvalidArgument(m);
    case StatusCode::kCorruption: return Status::Corruption(m);
    case StatusCode::kBusy: return Status::Busy(m);
    case StatusCode::kUnsupported: return Status::Unsupported(m);
    default: return Status::IoError(m);
  }
}

// A VM's config for operation op ("start vm1: "): kNotFound "no such VM" when there is none.
Result<QemuDriver::Config> LoadVm(const std::string& dir, const std::string& op) {
  auto config = LoadConfig(dir);
  if (!config.ok()) {
    return config.status().code() == StatusCode::kNotFound
               ? Status::NotFound(op + "no such VM")
               : Prefixed(op, config.status());
  }
  return config;
}

}  // namespace

const char* QemuAccelName(QemuAccel accel) {
  switch (accel) {
    case QemuAccel::kAuto: return "auto";
    case QemuAccel::kTcg: return "tcg";
    case QemuAccel::kKvm: return "kvm";
  }
  return "unknown";
}

bool ParseQemuAccel(const std::string& text, QemuAccel* accel) {
  for (QemuAccel a : {QemuAccel::kAuto, QemuAccel::kTcg, QemuAccel::kKvm}) {
    if (text == QemuAccelName(a)) {
      *accel = a;
      return true;
    }
  }
  return false;
}

bool ValidQemuVmName(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::unique_ptr<QemuDriver>> QemuDriver::Open(QemuOptions options) {
  if (options.vm_dir.empty() || options.templates_dir.empty()) {
    return Status::InvalidArgument("qemu driver: a VM directory and a templates directory");
  }
  std::error_code error;
  fs::create_directories(options.vm_dir, error);
  if (error) {
    return Status::IoError(options.vm_dir + ": " + error.message());
  }
  options.vm_dir = fs::absolute(options.vm_dir).lexically_normal().string();
  options.templates_dir = fs::absolute(options.templates_dir).lexically_normal().string();
  while (options.vm_dir.size() > 1 && options.vm_dir.back() == '/') options.vm_dir.pop_back();
  if (options.vm_dir.find('\'') != std::string::npos) {
    return Status::InvalidArgument(options.vm_dir + ": a VM directory may not contain a quote");
  }
  const std::string lock_path = options.vm_dir + "/" + kLockFile;
  const int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return Status::IoError(lock_path + ": " + Errno(errno));
  }
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    close(lock_fd);
    return Status::Busy(options.vm_dir + ": another qemu driver has it open");
  }
  for (const char* scratch : {kStaging, kTrash}) {
    fs::remove_all(options.vm_dir + "/" + scratch, error);
    fs::create_directories(options.vm_dir + "/" + scratch, error);
    if (error) {
      close(lock_fd);
      return Status::IoError(options.vm_dir + "/" + scratch + ": " + error.message());
    }
  }
  return std::unique_ptr<QemuDriver>(new QemuDriver(std::move(options), lock_fd));
}

QemuDriver::QemuDriver(QemuOptions options, int lock_fd)
    : options_(std::move(options)), lock_fd_(lock_fd) {}

QemuDriver::~QemuDriver() { close(lock_fd_); }

std::shared_ptr<QemuDriver::VmLocks> QemuDriver::LocksFor(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = locks_[name];
  if (!slot) slot = std::make_shared<VmLocks>();
  return slot;
}

namespace {

// Looks at dir's QEMU: the pidfile's process if alive, then QMP's word on its state.
QemuDriver::Observed Observe(const std::string& dir, const QemuDriver::Config& config) {
  QemuDriver::Observed seen;
  const int pid = ReadPid(dir);
  const bool state_file = access((dir + "/vm.state").c_str(), F_OK) == 0;
  if (ProcessAlive(pid, config.uuid)) {
    seen.pid = pid;
    seen.status = VmStatus::kRunning;
    auto status = QmpOnce(dir, "query-status", nullptr, milliseconds(5000));
    if (status.ok()) {
      seen.qmp_status = status->value("status", "");
      if (seen.qmp_status == "prelaunch" || seen.qmp_status == "inmigrate") {
        // A start that never finished (its caller died): the VM is still in its old state.
        seen.status = state_file ? VmStatus::kSuspended : VmStatus::kStopped;
      } else if (seen.qmp_status != "running") {
        seen.status = VmStatus::kSuspended;  // Paused.
      }
    }
    return seen;
  }
  if (state_file) seen.status = VmStatus::kSuspended;
  return seen;
}

struct TemplateFiles {
  std::string dir;
  std::string tag;
  uint32_t cpu_cores = 1;
  uint32_t ram_mb = 256;
  std::string kernel;
  std::string initrd;
  std::string disk;
  std::string append;
};

Result<TemplateFiles> FindTemplate(const std::string& root, const std::string& id,
                                   const std::string& tag) {
  const std::string base = root + "/" + id;
  std::error_code error;
  if (!fs::is_directory(base, error)) {
    return Status::NotFound("no template " + id);
  }
  TemplateFiles t;
  t.tag = tag;
  if (t.tag.empty()) {
    std::vector<std::string> tags;
    for (const auto& entry : fs::directory_iterator(base, error)) {
      if (entry.is_directory() && entry.path().filename().string()[0] != '.') {
        tags.push_back(entry.path().filename().string());
      }
    }
    if (tags.size() == 1) {
      t.tag = tags[0];
    } else if (fs::is_directory(base + "/latest", error)) {
      t.tag = "latest";
    } else if (tags.empty()) {
      return Status::NotFound("template " + id + " has no tags");
    } else {
      return Status::InvalidArgument("template " + id + " has several tags; name one");
    }
  }
  t.dir = base + "/" + t.tag;
  auto text = ReadFile(t.dir + "/template.json");
  if (!text.ok()) {
    return Status::NotFound("no tag " + t.tag + " of template " + id);
  }
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object() || j.value("format", "") != kTemplateFormat) {
    return Status::IoError(t.dir + "/template.json: not a cloister qemu template");
  }
  try {
    t.cpu_cores = j.value("cpu_cores", 1u);
    t.ram_mb = j.value("ram_mb", 256u);
    t.kernel = t.dir + "/" + j.at("kernel").get<std::string>();
    t.initrd = t.dir + "/" + j.at("initrd").get<std::string>();
    t.disk = t.dir + "/" + j.at("disk").get<std::string>();
    t.append = j.value("append", "console=ttyS0 quiet panic=-1");
  } catch (const nlohmann::json::exception&) {
    return Status::IoError(t.dir + "/template.json: kernel, initrd and disk are required");
  }
  for (const std::string* file : {&t.kernel, &t.initrd, &t.disk}) {
    if (access(file->c_str(), R_OK) != 0) {
      return Status::IoError(*file + ": " + Errno(errno));
    }
  }
  return t;
}

Status CheckForwards(const std::vector<PortForward>& forwards) {
  for (const PortForward& f : forwards) {
    if (f.protocol != "tcp" && f.protocol != "udp") {
      return Status::InvalidArgument("port forward " + f.name + ": protocol must be tcp or udp");
    }
    if (f.guest_port == 0) {
      return Status::InvalidArgument("port forward " + f.name + ": guest port 0");
    }
  }
  return Status::Ok();
}

// What spec.enforcement lets the VM have, into config (network, restricted, port_forwards,
// shared_folders, usb, vnc), or the refusal: start or a configuration change denied
// (kInvalidArgument, the refusal's own message), a rule QEMU's user-mode network cannot enforce,
// an extra drive or a USB module other than "host" (kUnsupported, by name), a shared folder
// that is not an absolute path to a directory (kInvalidArgument). Messages start with
// "clone <name>: ".
Status ApplyPolicy(const CloneSpec& spec, QemuDriver::Config* config) {
  const engine::VmEnforcement& enforcement = spec.enforcement;
  const std::string prefix = "clone " + spec.name + ": ";
  if (Status checked = CheckStartAndConfig(spec); !checked.ok()) return checked;
  for (const std::string& disk : enforcement.extra_disks) {
    return Status::Unsupported(prefix + "qemu cannot attach drive " + disk +
                               " (extra drives are not supported yet)");
  }
  config->usb = false;
  for (const std::string& module : enforcement.usb_modules) {
    if (module != "host") {
      return Status::Unsupported(prefix + "qemu cannot load USB module " + module +
                                 " (only host: a USB controller)");
    }
    config->usb = true;
  }
  if (Status checked = CheckNetworkFilters("qemu", spec); !checked.ok()) return checked;
  for (const std::string& folder : enforcement.shared_folders) {
    std::error_code error;
    if (folder.empty() || folder[0] != '/' || !fs::is_directory(folder, error)) {
      return Status::InvalidArgument(prefix + "shared folder " + folder +
                                     ": not an absolute path to a directory");
    }
  }
  config->shared_folders = enforcement.shared_folders;
  const engine::NetworkEnforcement& net = enforcement.network;
  config->network = spec.network && net.interface;
  config->restricted = !net.local;
  config->port_forwards.clear();
  for (const PortForward& forward : spec.port_forwards) {
    if (ForwardAllowed(enforcement, forward)) config->port_forwards.push_back(forward);
  }
  config->vnc = enforcement.keyboard;  // QEMU's VNC has no view-only mode: no console at all.
  return Status::Ok();
}

// QEMU option text: a comma in a value is written twice.
std::string OptionValue(const std::string& text) {
  std::string escaped;
  for (char c : text) {
    escaped += c;
    if (c == ',') escaped += ',';
  }
  return escaped;
}

}  // namespace

Status QemuDriver::Clone(const CloneSpec& spec) {
  const std::string op = "clone " + spec.name + ": ";
  if (!ValidQemuVmName(spec.name)) {
    return Status::InvalidArgument(op + "a VM name is 1..128 of [A-Za-z0-9._-]");
  }
  if (!ValidQemuVmName(spec.template_id) || (!spec.tag.empty() && !ValidQemuVmName(spec.tag))) {
    return Status::InvalidArgument(op + "malformed template id or tag");
  }
  if (spec.cpu_cores > 64 || (spec.ram_mb != 0 && (spec.ram_mb < 64 || spec.ram_mb > 262144))) {
    return Status::InvalidArgument(op + "cpu 1..64, ram 64..262144 MB");
  }
  if (Status checked = CheckForwards(spec.port_forwards); !checked.ok()) {
    return Status::InvalidArgument(op + checked.message());
  }
  Config config;
  if (Status allowed = ApplyPolicy(spec, &config); !allowed.ok()) return allowed;
  auto locks = LocksFor(spec.name);
  std::lock_guard<std::mutex> lock(locks->op);
  const std::string final_dir = VmPath(spec.name);
  if (access(final_dir.c_str(), F_OK) == 0) {
    return Status::InvalidArgument(op + "a VM of that name exists");
  }
  auto tpl = FindTemplate(options_.templates_dir, spec.template_id, spec.tag);
  if (!tpl.ok()) {
    return Prefixed(op, tpl.status());
  }
  const std::string staging = options_.vm_dir + "/" + kStaging + "/" + spec.name + "." +
                              RandomText(8, "abcdefghijklmnopqrstuvwxyz0123456789");
  if (mkdir(staging.c_str(), 0700) != 0) {
    return Status::IoError(op + staging + ": " + Errno(errno));
  }
  auto fail = [&](Status status) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    return Prefixed(op, status);
  };
  const std::string disk = staging + "/disk.qcow2";
  std::vector<std::string> argv =
      spec.copy ? std::vector<std::string>{options_.qemu_img, "convert", "-q", "-O", "qcow2",
                                           tpl->disk, disk}
                : std::vector<std::string>{options_.qemu_img, "create", "-q", "-f", "qcow2",
                                           "-b", tpl->disk, "-F", "qcow2", disk};
  if (Status made = RunProgram(argv, staging, staging + "/qemu-img.log", milliseconds(600'000));
      !made.ok()) {
    return fail(Status::IoError("qemu-img: " + made.message()));
  }
  unlink((staging + "/qemu-img.log").c_str());
  config.name = spec.name;
  config.uuid = NewUuid();
  config.template_id = spec.template_id;
  config.tag = tpl->tag;
  config.cpu_cores = spec.cpu_cores != 0 ? spec.cpu_cores : tpl->cpu_cores;
  config.ram_mb = spec.ram_mb != 0 ? spec.ram_mb : tpl->ram_mb;
  config.kernel = tpl->kernel;
  config.initrd = tpl->initrd;
  config.append = tpl->append;
  config.vnc_password = RandomText(8, "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789");
  if (Status wrote = log::WriteFileAtomic(staging + "/config.json", ConfigJson(config), 0600);
      !wrote.ok()) {
    return fail(wrote);
  }
  if (Status synced = FsyncPath(disk); !synced.ok()) return fail(synced);
  if (Status synced = FsyncPath(staging); !synced.ok()) return fail(synced);
  if (renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err == EEXIST || err == ENOTEMPTY) {
      return fail(Status::InvalidArgument("a VM of that name exists"));
    }
    return fail(Status::IoError("rename: " + Errno(err)));
  }
  return FsyncPath(options_.vm_dir);
}

Result<QemuAccel> QemuDriver::ResolveAccel(const std::string& name) {
  if (options_.accel != QemuAccel::kAuto) return options_.accel;
  std::lock_guard<std::mutex> lock(mu_);
  if (accel_known_) return accel_;
  auto config = LoadConfig(VmPath(name));
  if (!config.ok()) return config.status();
  accel_ = QemuAccel::kTcg;
  const int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm >= 0) {
    close(kvm);
    // KVM can open yet hang or abort (a nested PVM host): boot the VM's kernel once.
    const std::string dir = options_.vm_dir + "/" + kStaging + "/kvm-probe." +
                            RandomText(8, "abcdefghijklmnopqrstuvwxyz0123456789");
    if (mkdir(dir.c_str(), 0700) == 0) {
      auto pid = Spawn({options_.qemu_binary, "-accel", "kvm", "-cpu", "host", "-machine", "q35",
                        "-m", "128", "-display", "none", "-nodefaults", "-no-user-config",
                        "-no-reboot", "-kernel", config->kernel, "-initrd", config->initrd,
                        "-append", config->append, "-serial", "file:serial.log"},
                       dir, dir + "/qemu.log");
      if (pid.ok()) {
        const Deadline deadline = DeadlineIn(options_.probe_timeout);
        while (std::chrono::steady_clock::now() < deadline) {
          auto serial = ReadFile(dir + "/serial.log");
          if (serial.ok() && serial->find(kBootMarker) != std::string::npos) {
            accel_ = QemuAccel::kKvm;
            break;
          }
          int status = 0;
          if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = 0;
            break;  // QEMU gave up (KVM refused).
          }
          std::this_thread::sleep_for(milliseconds(100));
        }
        if (*pid != 0) {
          kill(*pid, SIGKILL);
          WaitChild(*pid, milliseconds(5000));
        }
      }
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  }
  accel_known_ = true;
  return accel_;
}

Status QemuDriver::KillLocked(const std::string& dir, int pid) {
  auto config = LoadConfig(dir);
  const std::string uuid = config.ok() ? config->uuid : "";
  (void)QmpOnce(dir, "quit", nullptr, milliseconds(3000));
  if (!WaitGone(pid, uuid, milliseconds(5000))) {
    kill(pid, SIGKILL);
    if (!WaitGone(pid, uuid, milliseconds(5000))) {
      return Status::IoError("QEMU process " + std::to_string(pid) + " does not exit");
    }
  }
  return Status::Ok();
}

struct QemuDriver::Entered {
  std::shared_ptr<VmLocks> locks;
  std::unique_lock<std::mutex> lock;
  std::string dir;
  Config config;
  Observed seen;
};

Result<QemuDriver::Entered> QemuDriver::Enter(const std::string& op, const std::string& name) {
  if (!ValidQemuVmName(name)) return Status::InvalidArgument(op + "malformed VM name");
  Entered e;
  e.locks = LocksFor(name);
  e.lock = std::unique_lock<std::mutex>(e.locks->op);
  e.dir = VmPath(name);
  auto config = LoadVm(e.dir, op);
  if (!config.ok()) return config.status();
  e.config = std::move(*config);
  e.seen = Observe(e.dir, e.config);
  return e;
}

namespace {

constexpr int kPciClassEthernet = 0x0200;
constexpr int kPciClassUsb = 0x0c03;
constexpr int kPciVendorVirtio = 0x1af4;

// The devices query-pci lists that the policy governs.
struct PciCount {
  int nics = 0;
  int usb_controllers = 0;
  int shares = 0;  // virtio-9p (legacy 0x1009, modern 0x1049).
};

void CountPci(const nlohmann::json& devices, PciCount* count, int depth) {
  if (!devices.is_array() || depth > 8) return;
  for (const nlohmann::json& device : devices) {
    if (!device.is_object()) continue;
    const nlohmann::json info = device.value("class_info", nlohmann::json::object());
    const nlohmann::json id = device.value("id", nlohmann::json::object());
    const int cls = info.value("class", -1);
    if (cls == kPciClassEthernet) count->nics++;
    if (cls == kPciClassUsb) count->usb_controllers++;
    const int product = id.value("device", -1);
    if (id.value("vendor", -1) == kPciVendorVirtio && (product == 0x1009 || product == 0x1049)) {
      count->shares++;
    }
    if (device.contains("pci_bridge") && device["pci_bridge"].is_object()) {
      CountPci(device["pci_bridge"].value("devices", nlohmann::json::array()), count,
               depth + 1);
    }
  }
}

Result<std::string> Hmp(QmpClient* qmp, const std::string& command, Deadline deadline) {
  auto text = qmp->Execute("human-monitor-command", {{"command-line", command}}, deadline);
  if (!text.ok()) return text.status();
  return text->is_string() ? text->get<std::string>() : std::string();
}

// The running QEMU's devices against what config allows (the policy): a NIC when none is
// allowed, an unrestricted user network when local is denied, a host forward not allowed, a USB
// controller when USB is denied, more 9p shares than allowed folders. OK, or kIoError
// "policy audit: ..." naming the first mismatch.
Status AuditDevices(QmpClient* qmp, const QemuDriver::Config& config,
                    const std::vector<PortForward>& forwards, Deadline deadline) {
  auto pci = qmp->Execute("query-pci", nullptr, deadline);
  if (!pci.ok()) return Status::IoError("policy audit: query-pci: " + pci.status().message());
  PciCount count;
  if (pci->is_array()) {
    for (const nlohmann::json& bus : *pci) {
      if (bus.is_object()) CountPci(bus.value("devices", nlohmann::json::array()), &count, 0);
    }
  }
  const auto mismatch = [](const std::string& what) {
    return Status::IoError("policy audit: " + what);
  };
  if (!config.Nic() && count.nics > 0) {
    return mismatch("a network device is present, the VM policy allows none");
  }
  if (!config.usb && count.usb_controllers > 0) {
    return mismatch("a USB controller is present, the VM policy allows none");
  }
  if (count.shares > static_cast<int>(config.shared_folders.size())) {
    return mismatch(std::to_string(count.shares) + " 9p shared folder device(s) present, the " +
                    "VM policy allows " + std::to_string(config.shared_folders.size()));
  }
  if (count.nics == 0) return Status::Ok();
  auto network = Hmp(qmp, "info network", deadline);
  if (!network.ok()) return mismatch("info network: " + network.status().message());
  std::istringstream lines(*network);
  for (std::string line; std::getline(lines, line);) {
    const bool user = line.find("type=user") != std::string::npos;
    if (user && config.Restrict() && line.find("restrict=on") == std::string::npos) {
      return mismatch("a user network is not restricted, the VM policy denies local");
    }
  }
  auto usernet = Hmp(qmp, "info usernet", deadline);
  if (!usernet.ok()) return mismatch("info usernet: " + usernet.status().message());
  std::istringstream entries(*usernet);
  for (std::string line; std::getline(entries, line);) {
    std::istringstream words(line);
    std::string kind, fd, address, port;
    words >> kind >> fd >> address >> port;
    if (kind.find("[HOST_FORWARD]") == std::string::npos) continue;
    bool allowed = false;
    for (const PortForward& f : forwards) {
      allowed = allowed || std::to_string(f.host_port) == port;
    }
    if (!allowed) {
      return mismatch("a port forward from host port " + port + " the VM policy does not allow");
    }
  }
  return Status::Ok();
}

}  // namespace

Status QemuDriver::Start(const std::string& name) {
  const std::string op = "start " + name + ": ";
  auto entered = Enter(op, name);
  if (!entered.ok()) return entered.status();
  const std::string& dir = entered->dir;
  const Config* config = &entered->config;
  const Observed& seen = entered->seen;
  if (seen.pid != 0) {
    if (seen.status == VmStatus::kRunning) {
      return Status::InvalidArgument(op + "the VM is running");
    }
    if (seen.qmp_status == "paused") {
      auto resumed = QmpOnce(dir, "cont", nullptr, milliseconds(10'000));
      if (!resumed.ok()) return Status::IoError(op + resumed.status().message());
      unlink((dir + "/vm.state").c_str());  // A suspend that stopped short of quitting.
      return Status::Ok();
    }
    // Left over from a start that never finished: replace it.
    if (Status killed = KillLocked(dir, seen.pid); !killed.ok()) {
      return Status::IoError(op + killed.message());
    }
  }
  const bool resume = access((dir + "/vm.state").c_str(), F_OK) == 0;
  auto accel = ResolveAccel(name);
  if (!accel.ok()) return Prefixed(op, accel.status());
  RemoveRuntimeFiles(dir);
  std::vector<PortForward> forwards = config->port_forwards;
  for (PortForward& f : forwards) {
    if (f.host_port == 0) {
      auto port = FreeLoopbackPort();
      if (!port.ok()) return Status::IoError(op + port.status().message());
      f.host_port = *port;
    }
  }
  const bool kvm = *accel == QemuAccel::kKvm;
  std::vector<std::string> argv = {
      options_.qemu_binary, "-name", name, "-uuid", config->uuid,
      "-accel", kvm ? "kvm" : "tcg", "-cpu", kvm ? "host" : "max",
      "-machine", config->usb ? "q35" : "q35,usb=off", "-m", std::to_string(config->ram_mb),
      "-smp", std::to_string(config->cpu_cores),
      "-display", "none", "-nodefaults", "-no-user-config", "-no-reboot", "-S",
      "-pidfile", "pid",
      "-kernel", config->kernel, "-initrd", config->initrd, "-append", config->append,
      "-serial", "file:serial.log",
      "-qmp", "unix:qmp.sock,server=on,wait=off",
      "-device", "virtio-serial-pci,id=vser0",
      "-chardev", "socket,id=agent,path=agent.sock,server=on,wait=off",
      "-device", std::string("virtserialport,bus=vser0.0,chardev=agent,name=") + kAgentPort,
      "-drive", "file=disk.qcow2,if=virtio,format=qcow2"};
  if (config->vnc) argv.insert(argv.end(), {"-vnc", "127.0.0.1:0,to=1000,password=on"});
  if (config->usb) argv.insert(argv.end(), {"-device", "qemu-xhci,id=usb0"});
  for (size_t i = 0; i < config->shared_folders.size(); i++) {
    const std::string tag = "fs" + std::to_string(i);
    argv.insert(argv.end(), {"-virtfs", "local,path=" + OptionValue(config->shared_folders[i]) +
                                            ",mount_tag=" + tag + ",security_model=none," +
                                            "readonly=on,id=" + tag});
  }
  if (!config->Nic()) {
    argv.insert(argv.end(), {"-nic", "none"});
  } else {
    std::string netdev = "user,id=n0";
    if (config->Restrict()) netdev += ",restrict=on";
    for (const PortForward& f : forwards) {
      netdev += ",hostfwd=" + f.protocol + ":127.0.0.1:" + std::to_string(f.host_port) + "-:" +
                std::to_string(f.guest_port);
    }
    argv.insert(argv.end(), {"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"});
  }
  if (resume) argv.insert(argv.end(), {"-incoming", "defer"});
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  auto spawned = Spawn(argv, dir, dir + "/qemu.log", /*detach=*/true);
  if (!spawned.ok()) return Prefixed(op, spawned.status());
  const int pid = *spawned;
  auto fail = [&](const Status& status) {
    if (ProcessExists(pid)) {
      (void)KillLocked(dir, pid);
      if (ProcessExists(pid)) kill(pid, SIGKILL);
    }
    RemoveRuntimeFiles(dir);
    return Status::IoError(op + status.message());
  };
  // QEMU is up when its QMP socket answers (it starts paused, -S); gone if it exited first.
  const Deadline deadline = DeadlineIn(options_.start_timeout);
  std::unique_ptr<QmpClient> qmp;
  for (int i = 0; i < 1'000'000 && !qmp; i++) {
    if (access((dir + "/qmp.sock").c_str(), F_OK) == 0) {
      auto connected = QmpClient::Connect(dir + "/qmp.sock", deadline);
      if (connected.ok()) {
        qmp = std::move(*connected);
        break;
      }
    }
    if (!ProcessExists(pid)) {
      auto words = ReadFile(dir + "/qemu.log");
      return fail(Status::IoError(words.ok() ? Tail(*words) : "QEMU exited"));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(Status::IoError("QEMU did not answer on QMP in time"));
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  if (!qmp) return fail(Status::IoError("QEMU did not answer on QMP"));
  if (config->vnc) {
    auto password =
        qmp->Execute("change-vnc-password", {{"password", config->vnc_password}}, deadline);
    if (!password.ok()) return fail(Status::IoError("setting the VNC password failed"));
  }
  if (resume) {
    const std::string uri = "exec:cat " + ShellQuote(dir + "/vm.state");
    auto incoming = qmp->Execute("migrate-incoming", {{"uri", uri}}, deadline);
    if (!incoming.ok()) return fail(incoming.status());
    auto status = WaitStatusLeaves(qmp.get(), "inmigrate", deadline);
    if (!status.ok()) return fail(Status::IoError("resume: " + status.status().message()));
    if (*status == "inmigrate") return fail(Status::IoError("resume: timed out"));
  }
  // Before the guest runs a single instruction: a device the policy forbids stops the VM.
  if (Status audit = AuditDevices(qmp.get(), *config, forwards, deadline); !audit.ok()) {
    return fail(audit);
  }
  auto cont = qmp->Execute("cont", nullptr, deadline);
  if (!cont.ok()) return fail(cont.status());
  auto status = qmp->Execute("query-status", nullptr, deadline);
  if (!status.ok()) return fail(status.status());
  if (status->value("status", "") != "running") {
    return fail(Status::IoError("QEMU reports " + status->value("status", "?")));
  }
  auto vnc = qmp->Execute("query-vnc", nullptr, deadline);
  uint16_t vnc_port = 0;
  if (config->vnc && vnc.ok() && vnc->contains("service") && (*vnc)["service"].is_string()) {
    vnc_port = static_cast<uint16_t>(std::atoi((*vnc)["service"].get<std::string>().c_str()));
  }
  nlohmann::json run{{"accel", QemuAccelName(*accel)},
                     {"vnc_port", vnc_port},
                     {"port_forwards", ForwardsJson(forwards)}};
  if (Status wrote = log::WriteFileAtomic(dir + "/run.json", run.dump() + "\n", 0600);
      !wrote.ok()) {
    return fail(wrote);
  }
  if (resume) unlink((dir + "/vm.state").c_str());
  return Status::Ok();
}

Status QemuDriver::Stop(const std::string& name) {
  const std::string op = "stop " + name + ": ";
  auto entered = Enter(op, name);
  if (!entered.ok()) return entered.status();
  const std::string& dir = entered->dir;
  const Config* config = &entered->config;
  const Observed& seen = entered->seen;
  if (seen.status == VmStatus::kStopped) {
    // A process left by a start that never finished is not a running VM; it goes quietly.
    if (seen.pid != 0) (void)KillLocked(dir, seen.pid);
    return Status::InvalidArgument(op + "the VM is stopped");
  }
  if (seen.pid != 0) {
    bool gone = false;
    if (seen.qmp_status == "running" &&
        QmpOnce(dir, "system_powerdown", nullptr, milliseconds(5000)).ok()) {
      gone = WaitGone(seen.pid, config->uuid, options_.stop_timeout);
    }
    if (!gone) {
      if (Status killed = KillLocked(dir, seen.pid); !killed.ok()) {
        return Status::IoError(op + killed.message());
      }
    }
  }
  unlink((dir + "/vm.state").c_str());
  RemoveRuntimeFiles(dir);
  return Status::Ok();
}

Status QemuDriver::Suspend(const std::string& name) {
  const std::string op = "suspend " + name + ": ";
  auto entered = Enter(op, name);
  if (!entered.ok()) return entered.status();
  const std::string& dir = entered->dir;
  const Observed& seen = entered->seen;
  if (seen.status != VmStatus::kRunning || seen.pid == 0) {
    return Status::InvalidArgument(op + "the VM is not running");
  }
  const Deadline deadline = DeadlineIn(options_.suspend_timeout);
  auto qmp = QmpClient::Connect(dir + "/qmp.sock", deadline);
  if (!qmp.ok()) return Status::IoError(op + qmp.status().message());
  const std::string tmp = dir + "/vm.state.tmp";
  auto undo = [&](const Status& status) {
    (void)(*qmp)->Execute("cont", nullptr, DeadlineIn(milliseconds(5000)));
    unlink(tmp.c_str());
    return Status::IoError(op + status.message());
  };
  auto stopped = (*qmp)->Execute("stop", nullptr, deadline);
  if (!stopped.ok()) return undo(stopped.status());
  auto migrate = (*qmp)->Execute("migrate", {{"uri", "exec:cat > " + ShellQuote(tmp)}}, deadline);
  if (!migrate.ok()) return undo(migrate.status());
  std::string state;
  for (int i = 0; i < 1'000'000; i++) {
    auto info = (*qmp)->Execute("query-migrate", nullptr, deadline);
    if (!info.ok()) return undo(info.status());
    state = info->value("status", "");
    if (state == "completed") break;
    if (state == "failed" || state == "cancelled") {
      return undo(Status::IoError("migration " + state + ": " + info->value("error-desc", "")));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      (void)(*qmp)->Execute("migrate_cancel", nullptr, DeadlineIn(milliseconds(5000)));
      return undo(Status::IoError("saving the state timed out"));
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  if (state != "completed") return undo(Status::IoError("migration did not complete"));
  if (Status synced = FsyncPath(tmp); !synced.ok()) return undo(synced);
  if (rename(tmp.c_str(), (dir + "/vm.state").c_str()) != 0) {
    return undo(Status::IoError("rename: " + Errno(errno)));
  }
  (void)FsyncPath(dir);
  qmp->reset();
  if (Status killed = KillLocked(dir, seen.pid); !killed.ok()) {
    return Status::IoError(op + killed.message());
  }
  RemoveRuntimeFiles(dir);
  return Status::Ok();
}

Status QemuDriver::Delete(const std::string& name) {
  const std::string op = "delete " + name + ": ";
  if (!ValidQemuVmName(name)) return Status::InvalidArgument(op + "bad VM name");
  auto locks = LocksFor(name);
  std::lock_guard<std::mutex> lock(locks->op);
  const std::string dir = VmPath(name);
  auto config = LoadConfig(dir);
  if (!config.ok() && config.status().code() == StatusCode::kNotFound &&
      access(dir.c_str(), F_OK) != 0) {
    return Status::NotFound(op + "no such VM");
  }
  if (config.ok()) {
    const int pid = ReadPid(dir);
    if (ProcessAlive(pid, config->uuid)) {
      if (Status killed = KillLocked(dir, pid); !killed.ok()) {
        return Status::IoError(op + killed.message());
      }
    }
  }
  uint64_t seq;
  {
    std::lock_guard<std::mutex> guard(mu_);
    seq = ++trash_seq_;
  }
  const std::string trash = options_.vm_dir + "/" + kTrash + "/" + name + "." +
                            std::to_string(seq);
  if (rename(dir.c_str(), trash.c_str()) != 0) {
    return Status::IoError(op + "rename: " + Errno(errno));
  }
  (void)FsyncPath(options_.vm_dir);
  std::error_code ignored;
  fs::remove_all(trash, ignored);
  return Status::Ok();
}

Result<GuestResult> QemuDriver::Run(const std::string& name, const std::string& script) {
  const std::string op = "run " + name + ": ";
  if (!ValidQemuVmName(name)) return Status::InvalidArgument(op + "bad VM name");
  auto locks = LocksFor(name);
  std::lock_guard<std::mutex> run_lock(locks->run);
  {
    std::lock_guard<std::mutex> lock(locks->op);
    auto info = ShowLocked(name);
    if (!info.ok()) {
      return Prefixed(op, info.status());
    }
    if (info->status != VmStatus::kRunning) {
      return Status::InvalidArgument(op + "the VM is not running");
    }
  }
  auto reply = RunInGuest(VmPath(name) + "/agent.sock", script, options_.run_timeout_seconds,
                          DeadlineIn(options_.agent_timeout));
  if (!reply.ok()) return Status::IoError(op + reply.status().message());
  return GuestResult{reply->exit_code, std::move(reply->output)};
}

Result<VmInfo> QemuDriver::ShowLocked(const std::string& name) {
  const std::string dir = VmPath(name);
  auto config = LoadConfig(dir);
  if (!config.ok()) {
    if (config.status().code() == StatusCode::kNotFound) return Status::NotFound("no such VM");
    return config.status();
  }
  const Observed seen = Observe(dir, *config);
  VmInfo info;
  info.uuid = config->uuid;
  info.name = config->name;
  info.status = seen.status;
  info.template_id = config->template_id;
  info.tag = config->tag;
  info.cpu_cores = config->cpu_cores;
  info.ram_mb = config->ram_mb;
  if (seen.pid != 0) {
    auto run = ReadFile(dir + "/run.json");
    const nlohmann::json j =
        run.ok() ? nlohmann::json::parse(*run, nullptr, false) : nlohmann::json();
    if (j.is_object()) {
      info.vnc_port = j.value("vnc_port", uint16_t{0});
      info.port_forwards = ForwardsFrom(j.value("port_forwards", nlohmann::json::array()));
    }
    if (config->network && seen.status == VmStatus::kRunning) info.ip = kSlirpGuestIp;
  } else {
    info.port_forwards = config->port_forwards;
  }
  return info;
}

Result<VmInfo> QemuDriver::Show(const std::string& name) {
  if (!ValidQemuVmName(name)) return Status::NotFound("show " + name + ": no such VM");
  auto locks = LocksFor(name);
  std::lock_guard<std::mutex> lock(locks->op);
  auto info = ShowLocked(name);
  if (!info.ok()) return Prefixed("show " + name + ": ", info.status());
  return info;
}

Result<std::vector<VmSummary>> QemuDriver::List() {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(options_.vm_dir, error)) {
    const std::string n = entry.path().filename().string();
    if (entry.is_directory() && ValidQemuVmName(n)) names.push_back(n);
  }
  if (error) return Status::IoError("list: " + options_.vm_dir + ": " + error.message());
  std::sort(names.begin(), names.end());
  std::vector<VmSummary> vms;
  for (const std::string& n : names) {
    auto locks = LocksFor(n);
    std::lock_guard<std::mutex> lock(locks->op);
    auto info = ShowLocked(n);
    if (info.ok()) vms.push_back({info->name, info->uuid, info->status});
  }
  return vms;
}

int QemuDriver::QemuPid(const std::string& name) {
  const std::string dir = VmPath(name);
  auto config = LoadConfig(dir);
  if (!config.ok()) return 0;
  const int pid = ReadPid(dir);
  return ProcessAlive(pid, config->uuid) ? pid : 0;
}

}  // namespace cloister::node
