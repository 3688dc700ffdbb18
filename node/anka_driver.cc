#include "node/anka_driver.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include <nlohmann/json.hpp>

#include "node/cli_policy.h"

namespace cloister::node {
namespace {

using nlohmann::json;

constexpr int kAnkaNotFound = 3;
constexpr int kAnkaNameExists = 18;

// The last non-empty line of text.
std::string LastLine(const std::string& text) {
  size_t end = text.find_last_not_of("\r\n \t");
  if (end == std::string::npos) {
    return "";
  }
  const size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end + 1 -
                                                                  (start == std::string::npos
                                                                       ? 0
                                                                       : start + 1));
}

VmStatus AnkaStatus(const std::string& status) {
  if (status == "running") {
    return VmStatus::kRunning;
  }
  if (status == "suspended" || status == "paused") {
    return VmStatus::kSuspended;
  }
  return VmStatus::kStopped;  // "stopped", "failed", anything else: not running.
}

// "2G", "2048M", "4096MB", 2048: megabytes.
uint32_t RamMb(const json& value) {
  if (value.is_number_unsigned()) {
    return value.get<uint32_t>();
  }
  if (!value.is_string()) {
    return 0;
  }
  const std::string text = value.get<std::string>();
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  if (digits == 0 || digits > 9) {
    return 0;
  }
  const uint32_t n = static_cast<uint32_t>(std::stoul(text.substr(0, digits)));
  const char unit = digits < text.size() ? static_cast<char>(std::toupper(text[digits])) : 'M';
  return unit == 'G' ? n * 1024 : unit == 'M' ? n : 0;
}

std::string StringOf(const json& body, const char* key) {
  auto it = body.find(key);
  return it != body.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

struct AnkaDriver::Reply {
  json body;
};

Result<std::vector<std::vector<std::string>>> AnkaModifyArgs(const std::string& vm,
                                                             const CloneSpec& spec) {
  if (Status common = CheckCommonPolicy("anka", spec); !common.ok()) {
    return common;
  }
  const engine::VmEnforcement& enforcement = spec.enforcement;
  const engine::NetworkEnforcement& net = enforcement.network;
  const std::string prefix = "clone " + spec.name + ": anka";
  if (!enforcement.clipboard) {
    return CannotEnforce(prefix, "view.pb", "no clipboard setting in the anka CLI");
  }
  if (!enforcement.keyboard) {
    return CannotEnforce(prefix, "view.hid", "no keyboard setting in the anka CLI");
  }
  std::vector<std::vector<std::string>> commands;
  if (spec.cpu_cores != 0) {
    commands.push_back({"modify", vm, "cpu", std::to_string(spec.cpu_cores)});
  }
  if (spec.ram_mb != 0) {
    commands.push_back({"modify", vm, "ram", std::to_string(spec.ram_mb) + "M"});
  }
  if (!net.interface) {
    commands.push_back({"modify", vm, "network", "--mode", "disconnected"});
  } else if (!net.local) {
    commands.push_back({"modify", vm, "network", "--no-local"});
  }
  for (const PortForward& forward : spec.port_forwards) {
    if (!ForwardAllowed(enforcement, forward)) {
      continue;  // Denied: the engine reported it; the VM does not get it.
    }
    if (forward.protocol != "tcp" && !forward.protocol.empty()) {
      return Status::Unsupported("clone " + spec.name + ": anka cannot forward " +
                                 forward.protocol + " port " + std::to_string(forward.guest_port) +
                                 " (its port forwarding rules are TCP)");
    }
    std::vector<std::string> add = {"modify", vm, "add", "port", "--guest-port",
                                    std::to_string(forward.guest_port)};
    if (forward.host_port != 0) {
      add.insert(add.end(), {"--host-port", std::to_string(forward.host_port)});
    }
    add.push_back(forward.name.empty() ? "fwd-" + std::to_string(forward.guest_port)
                                       : forward.name);
    commands.push_back(std::move(add));
  }
  for (const std::string& folder : enforcement.shared_folders) {
    commands.push_back({"modify", vm, "mount", folder});
  }
  return commands;
}

AnkaDriver::AnkaDriver(AnkaDriverOptions options)
    : CliDriver(CliRunnerOptions{options.program, options.path, options.timeout_ms},
                options.run_timeout_ms),
      options_(std::move(options)) {}

std::vector<CliArg> AnkaDriver::GuestCommand(const std::string& name,
                                             const std::string& script) const {
  return {"run", name, "/bin/sh", "-c", script};
}

Result<AnkaDriver::Reply> AnkaDriver::Call(const std::string& what,
                                           const std::vector<std::string>& args) {
  std::vector<CliArg> argv = {"-j"};
  argv.insert(argv.end(), args.begin(), args.end());
  Result<CliResult> ran = runner_.Run(argv);
  if (!ran.ok()) {
    return Status::IoError(what + ": " + ran.status().message());
  }
  const json reply = json::parse(LastLine(ran->out), nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.contains("status") || !reply["status"].is_string()) {
    const std::string words = !ran->err.empty() ? ran->err : ran->out;
    return Status::IoError(what + ": anka exited " + std::to_string(ran->exit_status) +
                           " without a machine-readable reply: " + CliWords(words));
  }
  if (reply["status"] == "OK") {
    return Reply{reply.value("body", json())};
  }
  const int code = reply.value("code", -1);
  const std::string message = CliWords(reply.value("message", std::string()));
  if (code == kAnkaNotFound) {
    return Status::NotFound(what + ": " + message);
  }
  if (code == kAnkaNameExists) {
    return Status::InvalidArgument(what + ": " + message);
  }
  return Status::IoError(what + ": " + message + " (anka error " + std::to_string(code) + ")");
}

Result<VmInfo> AnkaDriver::ShowLocked(const std::string& name) {
  Result<Reply> shown = Call("show " + name, {"show", name});
  if (!shown.ok()) {
    return shown.status();
  }
  const json& body = shown->body;
  if (!body.is_object()) {
    return Status::IoError("show " + name + ": anka's reply has no VM: " + CliWords(body.dump()));
  }
  VmInfo info;
  info.uuid = StringOf(body, "uuid");
  info.name = StringOf(body, "name");
  info.status = AnkaStatus(StringOf(body, "status"));
  info.cpu_cores = body.value("cpu_cores", 0u);
  info.ram_mb = RamMb(body.contains("ram_size") ? body["ram_size"] : body.value("ram", json()));
  if (info.status == VmStatus::kRunning) {
    info.ip = StringOf(body, "ip");
  }
  if (info.name != name) {
    return Status::IoError("show " + name + ": anka answered for \"" + info.name + "\"");
  }
  Result<Reply> described = Call("describe " + name, {"describe", name});
  if (!described.ok()) {
    return described.status();
  }
  const json& config = described->body;
  if (config.is_object() && config.contains("network_cards") &&
      config["network_cards"].is_array()) {
    for (const json& card : config["network_cards"]) {
      if (!card.is_object() || !card.contains("port_forwarding_rules") ||
          !card["port_forwarding_rules"].is_array()) {
        continue;
      }
      for (const json& rule : card["port_forwarding_rules"]) {
        PortForward forward;
        forward.name = StringOf(rule, "rule_name");
        forward.protocol = StringOf(rule, "protocol");
        forward.guest_port = rule.value("guest_port", uint16_t{0});
        forward.host_port = rule.value("host_port", uint16_t{0});
        info.port_forwards.push_back(std::move(forward));
      }
    }
  }
  if (info.status == VmStatus::kRunning && config.is_object() && config.contains("display")) {
    const json& display = config["display"];
    if (display.is_object() && display.contains("frame_buffer") &&
        display["frame_buffer"].is_object()) {
      info.vnc_port = display["frame_buffer"].value("vnc_port", uint16_t{0});
    }
  }
  return info;
}

Result<VmStatus> AnkaDriver::StatusOf(const std::string& what, const std::string& name) {
  Result<Reply> shown = Call(what + " " + name, {"show", name});
  if (!shown.ok()) {
    return shown.status();
  }
  if (!shown->body.is_object() || !shown->body.contains("status")) {
    return Status::IoError(what + " " + name + ": anka's reply has no status: " +
                           CliWords(shown->body.dump()));
  }
  return AnkaStatus(StringOf(shown->body, "status"));
}

Status AnkaDriver::Clone(const CloneSpec& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  return CloneLocked(spec);
}

Status AnkaDriver::CloneLocked(const CloneSpec& spec) {
  const std::string what = "clone " + spec.name;
  if (spec.name.empty() || spec.template_id.empty()) {
    return Status::InvalidArgument(what + ": a name and a template are needed");
  }
  const std::string scratch = CliScratchName(spec.name);
  Result<std::vector<std::vector<std::string>>> modify = AnkaModifyArgs(scratch, spec);
  if (!modify.ok()) {
    return modify.status();  // Refused before anything was made.
  }
  Result<VmStatus> existing = StatusOf("clone", spec.name);
  if (existing.ok()) {
    return Status::InvalidArgument(what + ": a VM of that name already exists");
  }
  if (existing.status().code() != StatusCode::kNotFound) {
    return existing.status();
  }
  // A scratch VM left by a crash mid-clone: remove it, it was never the VM.
  if (Result<VmStatus> stale = StatusOf("clone", scratch); stale.ok()) {
    if (Result<Reply> gone = Call(what + ": delete " + scratch, {"delete", "--yes", scratch});
        !gone.ok()) {
      return gone.status();
    }
  }
  std::vector<std::string> clone = {"clone"};
  if (spec.copy) {
    clone.push_back("--copy");
  }
  if (!spec.tag.empty()) {
    clone.insert(clone.end(), {"--tag", spec.tag});
  }
  clone.insert(clone.end(), {spec.template_id, scratch});
  if (Result<Reply> made = Call(what, clone); !made.ok()) {
    if (made.status().code() == StatusCode::kNotFound) {
      return Status::NotFound(what + ": no template " + spec.template_id +
                              (spec.tag.empty() ? "" : " tag " + spec.tag) + ": " +
                              made.status().message().substr(what.size() + 2));
    }
    return made.status();
  }
  modify->push_back({"modify", scratch, "name", spec.name});
  for (const std::vector<std::string>& args : *modify) {
    Result<Reply> done = Call(what, args);
    if (!done.ok()) {
      (void)Call(what + ": delete " + scratch, {"delete", "--yes", scratch});
      return done.status();
    }
  }
  return Status::Ok();
}

Status AnkaDriver::Start(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Status checked = CheckedStatus("start", name, {VmStatus::kStopped, VmStatus::kSuspended},
                                 "VM is already running")
                       .status();
  return checked.ok() ? Call("start " + name, {"start", name}).status() : checked;
}

Status AnkaDriver::Stop(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Status checked = CheckedStatus("stop", name, {VmStatus::kRunning, VmStatus::kSuspended},
                                 "VM is not running")
                       .status();
  if (!checked.ok()) {
    return checked;
  }
  Status graceful = Call("stop " + name, {"stop", name}).status();
  if (graceful.ok() || graceful.code() == StatusCode::kNotFound) {
    return graceful;
  }
  return Call("stop " + name, {"stop", "--force", name}).status();
}

Status AnkaDriver::Suspend(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Status checked =
      CheckedStatus("suspend", name, {VmStatus::kRunning}, "VM is not running").status();
  return checked.ok() ? Call("suspend " + name, {"suspend", name}).status() : checked;
}

Status AnkaDriver::Delete(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return Call("delete " + name, {"delete", "--yes", name}).status();
}

Result<std::vector<VmSummary>> AnkaDriver::List() {
  std::lock_guard<std::mutex> lock(mu_);
  Result<Reply> listed = Call("list", {"list"});
  if (!listed.ok()) {
    return listed.status();
  }
  const json& body = listed->body;
  std::vector<VmSummary> vms;
  if (body.is_null()) {
    return vms;  // No VMs.
  }
  if (!body.is_array()) {
    return Status::IoError("list: anka's reply is not a list: " + CliWords(body.dump()));
  }
  for (const json& vm : body) {
    if (!vm.is_object() || StringOf(vm, "name").empty()) {
      return Status::IoError("list: an entry without a name: " + CliWords(vm.dump()));
    }
    vms.push_back({StringOf(vm, "name"), StringOf(vm, "uuid"), AnkaStatus(StringOf(vm, "status"))});
  }
  std::sort(vms.begin(), vms.end(),
            [](const VmSummary& a, const VmSummary& b) { return a.name < b.name; });
  return vms;
}

Result<VmInfo> AnkaDriver::Show(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return ShowLocked(name);
}

}  // namespace cloister::node
