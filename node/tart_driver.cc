#include "node/tart_driver.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "log/atomic_file.h"
#include "node/cli_policy.h"

namespace cloister::node {
namespace {

using nlohmann::json;

constexpr size_t kLogTailBytes = 400;  // Of a dead `tart run`'s log quoted in an error.


VmStatus TartStatus(const std::string& state, bool running) {
  if (running || state == "running") {
    return VmStatus::kRunning;
  }
  return state == "suspended" ? VmStatus::kSuspended : VmStatus::kStopped;
}

// "10" -> "10.0.0.0/8", "10.1.2.3" -> "10.1.2.3/32"; empty if name is not a dotted IPv4 prefix.
std::string Cidr(const std::string& name) {
  std::vector<std::string> parts;
  std::stringstream in(name);
  for (std::string part; std::getline(in, part, '.');) {
    if (part.empty() || part.size() > 3 ||
        part.find_first_not_of("0123456789") != std::string::npos || std::stoi(part) > 255) {
      return "";
    }
    parts.push_back(part);
  }
  if (parts.empty() || parts.size() > 4 || name.back() == '.') {
    return "";
  }
  const size_t bits = parts.size() * 8;
  while (parts.size() < 4) {
    parts.push_back("0");
  }
  return parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[3] + "/" +
         std::to_string(bits);
}

// The --dir name of a folder: its last component, made safe, unique among names.
std::string DirName(const std::string& path, size_t index) {
  std::string base = path.substr(path.find_last_of('/') + 1);
  for (char& c : base) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      c = '-';
    }
  }
  return (base.empty() ? "share" : base) + "-" + std::to_string(index);
}

std::string TailOf(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > kLogTailBytes) {
    text = "..." + text.substr(text.size() - kLogTailBytes);
  }
  return CliWords(text);
}

}  // namespace

Result<std::vector<std::string>> TartRunFlags(const CloneSpec& spec, bool suspendable) {
  if (Status common = CheckCommonPolicy("tart", spec); !common.ok()) {
    return common;
  }
  const engine::VmEnforcement& enforcement = spec.enforcement;
  const engine::NetworkEnforcement& net = enforcement.network;
  const std::string prefix = "clone " + spec.name + ": tart";
  if (!net.interface) {
    return CannotEnforce(prefix, "net", "tart run has no way to start a VM without its NIC");
  }
  for (const PortForward& forward : spec.port_forwards) {
    if (ForwardAllowed(enforcement, forward)) {
      return Status::Unsupported("clone " + spec.name + ": tart cannot forward host port " +
                                 std::to_string(forward.host_port) + " to guest port " +
                                 std::to_string(forward.guest_port) + " (no port forwarding)");
    }
  }
  std::vector<std::string> flags = {"--no-graphics"};
  if (!net.local) {
    // Softnet keeps the VM off the host and private networks; allowed addresses go through.
    flags.push_back("--net-softnet");
    std::string allow;
    for (const engine::RuleException& exception : net.ip_exceptions) {
      const std::string cidr = Cidr(exception.name);
      if (exception.allow && !cidr.empty()) {
        allow += (allow.empty() ? "" : ",") + cidr;
      }
    }
    if (!allow.empty()) {
      flags.insert(flags.end(), {"--net-softnet-allow", allow});
    }
  }
  size_t index = 0;
  for (const std::string& folder : enforcement.shared_folders) {
    if (folder.empty() || folder[0] != '/' || folder.find_first_of(":,") != std::string::npos) {
      return Status::InvalidArgument("clone " + spec.name + ": shared folder " + folder +
                                     " cannot be given to tart run --dir");
    }
    flags.insert(flags.end(), {"--dir", DirName(folder, index++) + ":" + folder});
  }
  if (!enforcement.clipboard) {
    flags.push_back("--no-clipboard");
  }
  if (suspendable && enforcement.shared_folders.empty()) {
    flags.push_back("--suspendable");  // tart cannot suspend a VM with shared folders.
  }
  return flags;
}

Result<std::unique_ptr<TartDriver>> TartDriver::Open(TartDriverOptions options) {
  if (options.state_dir.empty() || options.state_dir[0] != '/') {
    return Status::InvalidArgument("tart driver: the state directory must be an absolute path");
  }
  if (mkdir(options.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError("tart driver: mkdir " + options.state_dir + ": " +
                           std::strerror(errno));
  }
  return std::unique_ptr<TartDriver>(new TartDriver(std::move(options)));
}

TartDriver::TartDriver(TartDriverOptions options)
    : CliDriver(CliRunnerOptions{options.program, options.path, options.timeout_ms},
                options.run_timeout_ms),
      options_(std::move(options)) {}

std::vector<CliArg> TartDriver::GuestCommand(const std::string& name,
                                             const std::string& script) const {
  return {"exec", name, "/bin/sh", "-c", script};
}

std::string TartDriver::StateFile(const std::string& name, const char* suffix) const {
  return options_.state_dir + "/" + name + suffix;
}

Result<CliResult> TartDriver::Call(const std::string& what, const std::vector<std::string>& args,
                                   uint64_t timeout_ms) {
  Result<CliResult> ran = runner_.Run(std::vector<CliArg>(args.begin(), args.end()), timeout_ms);
  if (!ran.ok()) {
    return Status::IoError(what + ": " + ran.status().message());
  }
  if (ran->exit_status != 0) {
    const std::string words = CliWords(!ran->err.empty() ? ran->err : ran->out);
    if (words.find("does not exist") != std::string::npos) {
      return Status::NotFound(what + ": " + words);
    }
    return Status::IoError(what + ": tart exited " + std::to_string(ran->exit_status) + ": " +
                           words);
  }
  return ran;
}

Result<VmStatus> TartDriver::StatusOf(const std::string& what, const std::string& name) {
  Result<CliResult> got = Call(what + " " + name, {"get", name, "--format", "json"});
  if (!got.ok()) {
    return got.status();
  }
  const json body = json::parse(got->out, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("State") || !body["State"].is_string()) {
    return Status::IoError(what + " " + name + ": tart get gave no state: " + CliWords(got->out));
  }
  return TartStatus(body["State"].get<std::string>(), body.value("Running", false));
}

Result<std::vector<VmSummary>> TartDriver::ListLocked() {
  Result<CliResult> listed = Call("list", {"list", "--source", "local", "--format", "json"});
  if (!listed.ok()) {
    return listed.status();
  }
  const json body = json::parse(listed->out, nullptr, /*allow_exceptions=*/false);
  if (!body.is_array()) {
    return Status::IoError("list: tart's output is not a JSON list: " + CliWords(listed->out));
  }
  std::vector<VmSummary> vms;
  for (const json& vm : body) {
    if (!vm.is_object() || !vm.contains("Name") || !vm["Name"].is_string()) {
      return Status::IoError("list: an entry without a name: " + CliWords(vm.dump()));
    }
    const std::string state = vm.contains("State") && vm["State"].is_string()
                                  ? vm["State"].get<std::string>()
                                  : "";
    // tart has no uuid: the name is the VM's identity.
    vms.push_back({vm["Name"].get<std::string>(), vm["Name"].get<std::string>(),
                   TartStatus(state, vm.value("Running", false))});
  }
  std::sort(vms.begin(), vms.end(),
            [](const VmSummary& a, const VmSummary& b) { return a.name < b.name; });
  return vms;
}

Result<std::vector<VmSummary>> TartDriver::List() {
  std::lock_guard<std::mutex> lock(mu_);
  return ListLocked();
}

Status TartDriver::Clone(const CloneSpec& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  return CloneLocked(spec);
}

Status TartDriver::CloneLocked(const CloneSpec& spec) {
  const std::string what = "clone " + spec.name;
  if (spec.name.empty() || spec.template_id.empty() ||
      spec.name.find('/') != std::string::npos) {
    return Status::InvalidArgument(what + ": a local name and a template are needed");
  }
  Result<std::vector<std::string>> flags = TartRunFlags(spec, options_.suspendable);
  if (!flags.ok()) {
    return flags.status();  // Refused before anything was made.
  }
  const std::string scratch = CliScratchName(spec.name);
  Result<std::vector<VmSummary>> vms = ListLocked();
  if (!vms.ok()) {
    return vms.status();
  }
  for (const VmSummary& vm : *vms) {
    if (vm.name == spec.name) {
      return Status::InvalidArgument(what + ": a VM of that name already exists");
    }
    if (vm.name == scratch) {  // Left by a crash mid-clone: it was never the VM.
      if (Result<CliResult> gone = Call(what, {"delete", scratch}); !gone.ok()) {
        return gone.status();
      }
    }
  }
  const std::string source =
      options_.source_prefix + spec.template_id + (spec.tag.empty() ? "" : ":" + spec.tag);
  if (Result<CliResult> made = Call(what, {"clone", source, scratch}); !made.ok()) {
    if (made.status().code() == StatusCode::kNotFound) {
      return Status::NotFound(what + ": no template " + source + ": " +
                              made.status().message().substr(what.size() + 2));
    }
    return made.status();
  }
  std::vector<std::string> set = {"set", scratch};
  if (spec.cpu_cores != 0) {
    set.insert(set.end(), {"--cpu", std::to_string(spec.cpu_cores)});
  }
  if (spec.ram_mb != 0) {
    set.insert(set.end(), {"--memory", std::to_string(spec.ram_mb)});
  }
  json state = {{"template_id", spec.template_id}, {"tag", spec.tag}, {"run_flags", *flags}};
  Status done = set.size() > 2 ? Call(what, set).status() : Status::Ok();
  if (done.ok()) {
    done = log::WriteFileAtomic(StateFile(spec.name, ".json"), state.dump() + "\n");
  }
  if (done.ok()) {
    done = Call(what, {"rename", scratch, spec.name}).status();
  }
  if (!done.ok()) {
    (void)Call(what, {"delete", scratch});
    std::remove(StateFile(spec.name, ".json").c_str());
  }
  return done;
}

Status TartDriver::AwaitState(const std::string& what, const std::string& name, VmStatus want,
                              long run_pid) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.start_timeout_ms);
  for (;;) {
    Result<VmStatus> status = StatusOf(what, name);
    if (status.ok() && *status == want) {
      return Status::Ok();
    }
    if (run_pid > 0 && kill(static_cast<pid_t>(run_pid), 0) != 0 && errno == ESRCH) {
      return Status::IoError(what + " " + name + ": tart run exited: " +
                             TailOf(StateFile(name, ".log")));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::IoError(what + " " + name + ": not " + VmStatusName(want) + " after " +
                             std::to_string(options_.start_timeout_ms) + " ms" +
                             (status.ok() ? "" : ": " + status.status().message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.poll_ms));
  }
}

Status TartDriver::StartLocked(const std::string& name) {
  std::vector<std::string> flags = {"--no-graphics"};
  std::ifstream in(StateFile(name, ".json"));
  if (in) {
    const json state = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!state.is_object() || !state.contains("run_flags") || !state["run_flags"].is_array()) {
      return Status::IoError("start " + name + ": " + StateFile(name, ".json") + " is unreadable");
    }
    flags = state["run_flags"].get<std::vector<std::string>>();
  }
  std::vector<CliArg> args = {"run", name};
  args.insert(args.end(), flags.begin(), flags.end());
  Result<pid_t> pid = runner_.Spawn(args, StateFile(name, ".log"), StateFile(name, ".pid"));
  if (!pid.ok()) {
    return Status::IoError("start " + name + ": " + pid.status().message());
  }
  Status running = AwaitState("start", name, VmStatus::kRunning, *pid);
  if (!running.ok()) {
    kill(-*pid, SIGKILL);  // Its own session: the whole group, nothing left half-started.
  }
  return running;
}

Status TartDriver::Start(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Status checked = CheckedStatus("start", name, {VmStatus::kStopped, VmStatus::kSuspended},
                                 "VM is already running")
                       .status();
  return checked.ok() ? StartLocked(name) : checked;
}

Status TartDriver::StopRunning(const std::string& name) {
  if (Result<CliResult> stopped = Call("stop " + name, {"stop", name}); !stopped.ok()) {
    return stopped.status();
  }
  return AwaitState("stop", name, VmStatus::kStopped, 0);
}

Status TartDriver::Stop(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Result<VmStatus> status = CheckedStatus("stop", name, {VmStatus::kRunning, VmStatus::kSuspended},
                                          "VM is not running");
  if (!status.ok()) {
    return status.status();
  }
  if (*status == VmStatus::kSuspended) {
    if (Status resumed = StartLocked(name); !resumed.ok()) {
      return resumed;
    }
  }
  return StopRunning(name);
}

Status TartDriver::Suspend(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Status checked =
      CheckedStatus("suspend", name, {VmStatus::kRunning}, "VM is not running").status();
  if (!checked.ok()) {
    return checked;
  }
  if (Result<CliResult> done = Call("suspend " + name, {"suspend", name}); !done.ok()) {
    return done.status();
  }
  return AwaitState("suspend", name, VmStatus::kSuspended, 0);
}

Status TartDriver::Delete(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Result<VmStatus> status = StatusOf("delete", name);
  if (!status.ok()) {
    return status.status();
  }
  if (*status == VmStatus::kRunning) {
    if (Status stopped = StopRunning(name); !stopped.ok()) {
      return stopped;
    }
  }
  if (Result<CliResult> gone = Call("delete " + name, {"delete", name}); !gone.ok()) {
    return gone.status();
  }
  for (const char* suffix : {".json", ".pid", ".log"}) {
    std::remove(StateFile(name, suffix).c_str());
  }
  return Status::Ok();
}

Result<VmInfo> TartDriver::Show(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Result<CliResult> got = Call("show " + name, {"get", name, "--format", "json"});
  if (!got.ok()) {
    return got.status();
  }
  const json body = json::parse(got->out, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("State") || !body["State"].is_string()) {
    return Status::IoError("show " + name + ": tart get gave no state: " + CliWords(got->out));
  }
  VmInfo info;
  info.uuid = name;
  info.name = name;
  info.status = TartStatus(body["State"].get<std::string>(), body.value("Running", false));
  info.cpu_cores = body.value("CPU", 0u);
  info.ram_mb = body.value("Memory", 0u);
  std::ifstream in(StateFile(name, ".json"));
  if (in) {
    const json state = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (state.is_object()) {
      info.template_id = state.value("template_id", std::string());
      info.tag = state.value("tag", std::string());
    }
  }
  if (info.status == VmStatus::kRunning) {
    // No address yet (still booting, or softnet) is not an error: ip stays empty.
    if (Result<CliResult> ip = Call("show " + name, {"ip", name}); ip.ok()) {
      info.ip = ip->out.substr(0, ip->out.find_first_of("\r\n"));
    }
  }
  return info;
}

}  // namespace cloister::node
