#include "node/sim_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>
#include <utility>

#include "log/assert.h"

namespace cloister::node {
namespace {

constexpr char kStateFile[] = "sim-state";
constexpr char kLockFile[] = "sim.lock";
constexpr char kStateHeader[] = "cloister-sim-state";
constexpr int kStateVersion = 1;
constexpr char kEndLine[] = "end";

std::string Errno(int err) { return std::strerror(err); }

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > kSimNameBytesMax) {
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

// FNV-1a, 64 bits: the source of every "random-looking" value the sim shows.
uint64_t Fnv1a(const std::string& salt, const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const std::string* part : {&salt, &text}) {
    for (unsigned char c : *part) {
      hash ^= c;
      hash *= 0x100000001b3ull;
    }
  }
  return hash;
}

// A UUID (version 8, "custom", RFC 9562) made from the name.
std::string UuidFor(const std::string& name) {
  uint64_t high = Fnv1a("uuid-high:", name);
  uint64_t low = Fnv1a("uuid-low:", name);
  high = (high & ~0xf000ull) | 0x8000ull;                  // Version 8.
  low = (low & ~(3ull << 62)) | (2ull << 62);              // Variant 10.
  char text[37];
  std::snprintf(text, sizeof(text), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(high >> 32), static_cast<unsigned>((high >> 16) & 0xffff),
                static_cast<unsigned>(high & 0xffff), static_cast<unsigned>(low >> 48),
                static_cast<unsigned long long>(low & 0xffffffffffffull));
  return text;
}

std::string IpFor(const std::string& name) {
  const uint64_t h = Fnv1a("ip:", name);
  return "10." + std::to_string((h >> 16) & 0xff) + "." + std::to_string((h >> 8) & 0xff) + "." +
         std::to_string(2 + (h & 0xff) % 250);
}

uint16_t VncPortFor(const std::string& name) {
  return static_cast<uint16_t>(5900 + Fnv1a("vnc:", name) % 1000);
}

uint16_t SshPortFor(const std::string& name) {
  return static_cast<uint16_t>(10000 + Fnv1a("ssh:", name) % 50000);
}

// State-file tokens: bytes outside '!'..'~' and '%' become %XX; the empty string is "%".
std::string Escape(const std::string& text) {
  if (text.empty()) {
    return "%";
  }
  std::string out;
  for (unsigned char c : text) {
    if (c <= ' ' || c > '~' || c == '%') {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

bool Unescape(const std::string& token, std::string* out) {
  out->clear();
  if (token == "%") {
    return true;
  }
  for (size_t i = 0; i < token.size(); i++) {
    if (token[i] != '%') {
      *out += token[i];
      continue;
    }
    if (i + 2 >= token.size()) {
      return false;  // A '%' needs two hex digits after it.
    }
    unsigned value = 0;
    if (std::sscanf(token.substr(i + 1, 2).c_str(), "%2X", &value) != 1) {
      return false;
    }
    *out += static_cast<char>(value);
    i += 2;
  }
  return true;
}

bool ParseOp(const std::string& name, SimOp* op) {
  for (size_t i = 0; i < kSimOpCount; i++) {
    if (name == SimOpName(static_cast<SimOp>(i))) {
      *op = static_cast<SimOp>(i);
      return true;
    }
  }
  return false;
}

bool ParseStatus(const std::string& name, VmStatus* status) {
  for (VmStatus s : {VmStatus::kStopped, VmStatus::kRunning, VmStatus::kSuspended}) {
    if (name == VmStatusName(s)) {
      *status = s;
      return true;
    }
  }
  return false;
}

std::string Encode(const SimDriver::State& state) {
  std::ostringstream out;
  out << kStateHeader << ' ' << kStateVersion << '\n';
  for (size_t i = 0; i < kSimOpCount; i++) {
    if (state.calls[i] != 0) {
      out << "calls " << SimOpName(static_cast<SimOp>(i)) << ' ' << state.calls[i] << '\n';
    }
  }
  for (const auto& [name, calls] : state.vm_calls) {
    for (size_t i = 0; i < kSimOpCount; i++) {
      if (calls[i] != 0) {
        out << "vm-calls " << name << ' ' << SimOpName(static_cast<SimOp>(i)) << ' ' << calls[i]
            << '\n';
      }
    }
  }
  for (const auto& [name, vm] : state.vms) {
    out << "vm " << name << ' ' << VmStatusName(vm.status) << ' ' << Escape(vm.template_id) << ' '
        << Escape(vm.tag) << ' ' << vm.cpu_cores << ' ' << vm.ram_mb << '\n';
  }
  out << kEndLine << '\n';
  return out.str();
}

// Parses one line of the state file into *state; false if it is malformed.
bool DecodeLine(const std::string& line, SimDriver::State* state) {
  std::istringstream fields(line);
  std::string kind;
  fields >> kind;
  if (kind == "calls") {
    std::string op_name;
    uint64_t count = 0;
    SimOp op;
    if (!(fields >> op_name >> count) || !ParseOp(op_name, &op)) {
      return false;
    }
    state->calls[static_cast<size_t>(op)] = count;
  } else if (kind == "vm-calls") {
    std::string name;
    std::string op_name;
    uint64_t count = 0;
    SimOp op;
    if (!(fields >> name >> op_name >> count) || !ValidName(name) || !ParseOp(op_name, &op)) {
      return false;
    }
    state->vm_calls[name][static_cast<size_t>(op)] = count;
  } else if (kind == "vm") {
    SimDriver::Vm vm;
    std::string status;
    std::string template_id;
    std::string tag;
    if (!(fields >> vm.name >> status >> template_id >> tag >> vm.cpu_cores >> vm.ram_mb) ||
        !ValidName(vm.name) || !ParseStatus(status, &vm.status) ||
        !Unescape(template_id, &vm.template_id) || !Unescape(tag, &vm.tag)) {
      return false;
    }
    state->vms[vm.name] = vm;
  } else {
    return false;
  }
  std::string extra;
  return !(fields >> extra);
}

Result<SimDriver::State> ReadState(const std::string& path) {
  SimDriver::State state;
  FILE* file = std::fopen(path.c_str(), "re");
  if (file == nullptr) {
    if (errno == ENOENT) {
      return state;  // A new simulation.
    }
    return Status::IoError("open " + path + ": " + Errno(errno));
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), file)) > 0) {
    text.append(buf, n);
  }
  const bool read_failed = std::ferror(file) != 0;
  std::fclose(file);
  if (read_failed) {
    return Status::IoError("read " + path);
  }
  std::istringstream lines(text);
  std::string line;
  std::string header = std::string(kStateHeader) + " " + std::to_string(kStateVersion);
  if (!std::getline(lines, line) || line != header) {
    return Status::Corruption(path + ": first line is not \"" + header + "\"");
  }
  int line_number = 1;
  bool ended = false;
  while (std::getline(lines, line)) {
    line_number++;
    if (line == kEndLine) {
      ended = true;
      break;
    }
    if (!DecodeLine(line, &state)) {
      return Status::Corruption(path + ":" + std::to_string(line_number) + ": malformed line");
    }
  }
  if (!ended) {
    return Status::Corruption(path + ": no \"end\" line (truncated)");
  }
  return state;
}

Status WriteAll(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::IoError("write " + path + ": " + Errno(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status Fsync(int fd, const std::string& path) {
  if (fsync(fd) != 0) {
    return Status::IoError("fsync " + path + ": " + Errno(errno));
  }
  return Status::Ok();
}

// Replaces dir/sim-state with state: temporary file, fsync, rename, fsync of the directory.
Status WriteState(const std::string& dir, const SimDriver::State& state) {
  const std::string path = SimDriver::StatePath(dir);
  const std::string temp = path + ".tmp";
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::IoError("create " + temp + ": " + Errno(errno));
  }
  Status status = WriteAll(fd, Encode(state), temp);
  if (status.ok()) {
    status = Fsync(fd, temp);
  }
  close(fd);
  if (!status.ok()) {
    return status;
  }
  if (rename(temp.c_str(), path.c_str()) != 0) {
    return Status::IoError("rename " + temp + ": " + Errno(errno));
  }
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return Status::IoError("open " + dir + ": " + Errno(errno));
  }
  status = Fsync(dir_fd, dir);
  close(dir_fd);
  return status;
}

Result<int> Lock(const std::string& dir) {
  const std::string path = SimDriver::LockPath(dir);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::IoError("open " + path + ": " + Errno(errno));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return Status::Busy("sim driver directory " + dir + " is already open");
    }
    return Status::IoError("flock " + path + ": " + Errno(err));
  }
  return fd;
}

std::string Describe(SimOp op, const std::string& vm_name) {
  return std::string(SimOpName(op)) + (vm_name.empty() ? "" : " " + vm_name);
}

}  // namespace

const char* SimOpName(SimOp op) {
  switch (op) {
    case SimOp::kClone: return "clone";
    case SimOp::kStart: return "start";
    case SimOp::kStop: return "stop";
    case SimOp::kSuspend: return "suspend";
    case SimOp::kDelete: return "delete";
    case SimOp::kRun: return "run";
    case SimOp::kList: return "list";
    case SimOp::kShow: return "show";
  }
  return "unknown";
}

std::string SimDriver::StatePath(const std::string& dir) { return dir + "/" + kStateFile; }
std::string SimDriver::LockPath(const std::string& dir) { return dir + "/" + kLockFile; }

Result<std::unique_ptr<SimDriver>> SimDriver::Open(const std::string& dir, SimOptions options) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError("create " + dir + ": " + Errno(errno));
  }
  Result<int> lock_fd = Lock(dir);
  if (!lock_fd.ok()) {
    return lock_fd.status();
  }
  Result<State> state = ReadState(StatePath(dir));
  if (!state.ok()) {
    close(*lock_fd);
    return state.status();
  }
  return std::unique_ptr<SimDriver>(
      new SimDriver(dir, *lock_fd, std::move(state).value(), std::move(options)));
}

SimDriver::SimDriver(std::string dir, int lock_fd, State state, SimOptions options)
    : dir_(std::move(dir)),
      lock_fd_(lock_fd),
      state_(std::move(state)),
      options_(std::move(options)),
      jitter_rng_(options_.jitter_seed) {}

SimDriver::~SimDriver() { close(lock_fd_); }

void SimDriver::SetDelay(SimOp op, SimDelay delay) {
  std::lock_guard lock(mu_);
  options_.delays[static_cast<size_t>(op)] = delay;
}

void SimDriver::SetJitter(std::chrono::microseconds jitter_max, uint64_t seed) {
  std::lock_guard lock(mu_);
  options_.jitter_max = jitter_max;
  jitter_rng_.seed(seed);
}

void SimDriver::AddFailure(SimFailure failure) {
  std::lock_guard lock(mu_);
  options_.failures.push_back(std::move(failure));
}

void SimDriver::ClearFailures() {
  std::lock_guard lock(mu_);
  options_.failures.clear();
}

uint64_t SimDriver::Calls(SimOp op) const {
  std::lock_guard lock(mu_);
  const size_t i = static_cast<size_t>(op);
  return SimOpMutates(op) ? state_.calls[i] : read_calls_[i];
}

uint64_t SimDriver::Calls(SimOp op, const std::string& vm_name) const {
  std::lock_guard lock(mu_);
  const auto it = state_.vm_calls.find(vm_name);
  return it == state_.vm_calls.end() ? 0 : it->second[static_cast<size_t>(op)];
}

std::chrono::microseconds SimDriver::JitterLocked() {
  if (options_.jitter_max.count() <= 0) {
    return std::chrono::microseconds(0);
  }
  std::uniform_int_distribution<int64_t> uniform(0, options_.jitter_max.count());
  return std::chrono::microseconds(uniform(jitter_rng_));
}

void SimDriver::Sleep(SimOp op, bool before) {
  std::chrono::microseconds sleep{0};
  {
    std::lock_guard lock(mu_);
    const SimDelay& delay = options_.delays[static_cast<size_t>(op)];
    sleep = before ? delay.before : delay.after;
    if (SimOpMutates(op)) {
      sleep += JitterLocked();
    }
  }
  if (sleep.count() > 0) {
    std::this_thread::sleep_for(sleep);
  }
}

std::string SimDriver::InjectedFailure(SimOp op, uint64_t nth, const std::string& vm_name,
                                       const std::string& template_id) const {
  for (const SimFailure& failure : options_.failures) {
    if (failure.op == op && (failure.nth == 0 || failure.nth == nth) &&
        (failure.vm_name.empty() || failure.vm_name == vm_name) &&
        (failure.template_id.empty() || failure.template_id == template_id)) {
      return failure.message;
    }
  }
  return "";
}

template <typename Mutate>
Status SimDriver::Mutating(SimOp op, const std::string& vm_name, const std::string& template_id,
                           const Mutate& mutate) {
  CL_ASSERT(SimOpMutates(op));
  const size_t i = static_cast<size_t>(op);
  Sleep(op, /*before=*/true);
  Status result;
  {
    std::lock_guard lock(mu_);
    State next = state_;
    next.calls[i]++;
    if (ValidName(vm_name)) {
      next.vm_calls[vm_name][i]++;  // Invalid names are counted only in the op's total.
    }
    const std::string failure = InjectedFailure(op, next.calls[i], vm_name, template_id);
    if (!failure.empty()) {
      result = Status::IoError(Describe(op, vm_name) + ": " + failure);
    } else {
      result = mutate(&next);
    }
    if (!result.ok()) {
      next.vms = state_.vms;  // A failed call changes nothing but the counters.
    }
    Status persisted = WriteState(dir_, next);
    if (!persisted.ok()) {
      return persisted;  // Nothing changed, counters included.
    }
    state_ = std::move(next);
  }
  Sleep(op, /*before=*/false);
  return result;
}

Status SimDriver::Clone(const CloneSpec& spec) {
  return Mutating(SimOp::kClone, spec.name, spec.template_id, [&](State* state) {
    const std::string what = "clone " + spec.name;
    if (!ValidName(spec.name)) {
      return Status::InvalidArgument(what + ": invalid VM name");
    }
    if (spec.template_id.empty()) {
      return Status::InvalidArgument(what + ": no template id");
    }
    if (state->vms.count(spec.name) != 0) {
      return Status::InvalidArgument(what + ": a VM of that name already exists");
    }
    Vm vm;
    vm.name = spec.name;
    vm.status = VmStatus::kStopped;
    vm.template_id = spec.template_id;
    vm.tag = spec.tag;
    vm.cpu_cores = spec.cpu_cores != 0 ? spec.cpu_cores : kSimDefaultCpuCores;
    vm.ram_mb = spec.ram_mb != 0 ? spec.ram_mb : kSimDefaultRamMb;
    state->vms[spec.name] = vm;
    return Status::Ok();
  });
}

Status SimDriver::Start(const std::string& name) {
  return Mutating(SimOp::kStart, name, "", [&](State* state) {
    auto it = state->vms.find(name);
    if (it == state->vms.end()) {
      return Status::NotFound("start " + name + ": no such VM");
    }
    if (it->second.status == VmStatus::kRunning) {
      return Status::InvalidArgument("start " + name + ": VM is already running");
    }
    it->second.status = VmStatus::kRunning;
    return Status::Ok();
  });
}

Status SimDriver::Stop(const std::string& name) {
  return Mutating(SimOp::kStop, name, "", [&](State* state) {
    auto it = state->vms.find(name);
    if (it == state->vms.end()) {
      return Status::NotFound("stop " + name + ": no such VM");
    }
    if (it->second.status == VmStatus::kStopped) {
      return Status::InvalidArgument("stop " + name + ": VM is already stopped");
    }
    it->second.status = VmStatus::kStopped;
    return Status::Ok();
  });
}

Status SimDriver::Suspend(const std::string& name) {
  return Mutating(SimOp::kSuspend, name, "", [&](State* state) {
    auto it = state->vms.find(name);
    if (it == state->vms.end()) {
      return Status::NotFound("suspend " + name + ": no such VM");
    }
    if (it->second.status != VmStatus::kRunning) {
      return Status::InvalidArgument("suspend " + name + ": VM is " +
                                     VmStatusName(it->second.status) + ", not running");
    }
    it->second.status = VmStatus::kSuspended;
    return Status::Ok();
  });
}

Status SimDriver::Delete(const std::string& name) {
  return Mutating(SimOp::kDelete, name, "", [&](State* state) {
    if (state->vms.erase(name) == 0) {
      return Status::NotFound("delete " + name + ": no such VM");
    }
    return Status::Ok();
  });
}

Result<GuestResult> SimDriver::Run(const std::string& name, const std::string& script) {
  GuestResult guest;
  Status status = Mutating(SimOp::kRun, name, "", [&](State* state) {
    auto it = state->vms.find(name);
    if (it == state->vms.end()) {
      return Status::NotFound("run in " + name + ": no such VM");
    }
    if (it->second.status != VmStatus::kRunning) {
      return Status::InvalidArgument("run in " + name + ": VM is " +
                                     VmStatusName(it->second.status) + ", not running");
    }
    int code = 0;
    char trailing = 0;
    if (std::sscanf(script.c_str(), "exit %d%c", &code, &trailing) != 1) {
      code = 0;  // Not exactly "exit N": the script "succeeds".
    }
    guest.exit_code = code;
    guest.output = "sim: " + script + "\n";
    return Status::Ok();
  });
  if (!status.ok()) {
    return status;
  }
  return guest;
}

Result<std::vector<VmSummary>> SimDriver::List() {
  Sleep(SimOp::kList, /*before=*/true);
  std::vector<VmSummary> list;
  {
    std::lock_guard lock(mu_);
    const size_t i = static_cast<size_t>(SimOp::kList);
    read_calls_[i]++;
    const std::string failure = InjectedFailure(SimOp::kList, read_calls_[i], "", "");
    if (!failure.empty()) {
      return Status::IoError("list: " + failure);
    }
    for (const auto& [name, vm] : state_.vms) {
      list.push_back(VmSummary{name, UuidFor(name), vm.status});
    }
  }
  Sleep(SimOp::kList, /*before=*/false);
  return list;
}

VmInfo SimDriver::InfoOf(const Vm& vm) const {
  VmInfo info;
  info.uuid = UuidFor(vm.name);
  info.name = vm.name;
  info.status = vm.status;
  info.template_id = vm.template_id;
  info.tag = vm.tag;
  info.cpu_cores = vm.cpu_cores;
  info.ram_mb = vm.ram_mb;
  if (vm.status == VmStatus::kRunning) {
    info.ip = IpFor(vm.name);
    info.vnc_port = VncPortFor(vm.name);
  }
  info.port_forwards.push_back(PortForward{"ssh", "tcp", 22, SshPortFor(vm.name)});
  return info;
}

Result<VmInfo> SimDriver::Show(const std::string& name) {
  Sleep(SimOp::kShow, /*before=*/true);
  VmInfo info;
  {
    std::lock_guard lock(mu_);
    const size_t i = static_cast<size_t>(SimOp::kShow);
    read_calls_[i]++;
    const std::string failure = InjectedFailure(SimOp::kShow, read_calls_[i], name, "");
    if (!failure.empty()) {
      return Status::IoError("show " + name + ": " + failure);
    }
    auto it = state_.vms.find(name);
    if (it == state_.vms.end()) {
      return Status::NotFound("show " + name + ": no such VM");
    }
    info = InfoOf(it->second);
  }
  Sleep(SimOp::kShow, /*before=*/false);
  return info;
}

}  // namespace cloister::node
