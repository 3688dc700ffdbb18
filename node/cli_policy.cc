#include "node/cli_policy.h"

namespace cloister::node {
namespace {

std::string Runtime(const std::string& rule) { return engine::kRuntimeRulePrefix + rule; }

// The refusal of rule, if the engine made one.
const engine::PolicyRefusal* RefusalOf(const engine::VmEnforcement& enforcement,
                                       const std::string& rule) {
  for (const engine::PolicyRefusal& refusal : enforcement.refusals) {
    if (refusal.rule == rule) {
      return &refusal;
    }
  }
  return nullptr;
}

}  // namespace

std::string ForwardRule(const PortForward& forward) {
  return Runtime("net.fwd." + std::to_string(forward.host_port) + ".0.0.0.0." +
                 std::to_string(forward.guest_port));
}

bool ForwardAllowed(const engine::VmEnforcement& enforcement, const PortForward& forward) {
  return enforcement.network.interface && RefusalOf(enforcement, ForwardRule(forward)) == nullptr;
}

Status CannotEnforce(const std::string& driver, const std::string& rule, const std::string& what) {
  return Status::Unsupported(driver + " cannot enforce " + Runtime(rule) + "=deny (" + what + ")");
}

Status CheckStartAndConfig(const CloneSpec& spec) {
  const engine::VmEnforcement& enforcement = spec.enforcement;
  const std::string prefix = "clone " + spec.name + ": ";
  if (!enforcement.start) {
    const engine::PolicyRefusal* refusal = RefusalOf(enforcement, Runtime("start"));
    return Status::InvalidArgument(prefix + (refusal != nullptr
                                                 ? refusal->Message()
                                                 : "the VM policy denies start"));
  }
  if (!enforcement.config_allowed && (spec.cpu_cores != 0 || spec.ram_mb != 0)) {
    for (const engine::PolicyRefusal& refusal : enforcement.refusals) {
      if (refusal.rule.rfind(engine::kConfigRulePrefix, 0) == 0) {
        return Status::InvalidArgument(prefix + refusal.Message());
      }
    }
    return Status::InvalidArgument(prefix + "the VM policy denies changing the configuration");
  }
  return Status::Ok();
}

Status CheckNetworkFilters(const std::string& driver, const CloneSpec& spec) {
  const std::string prefix = "clone " + spec.name + ": ";
  const engine::NetworkEnforcement& net = spec.enforcement.network;
  if (!net.interface) {
    return Status::Ok();  // No interface: the filters have nothing to filter.
  }
  if (!net.tcp) {
    return CannotEnforce(prefix + driver, "net.tcp", "no per-VM TCP filter");
  }
  if (!net.udp) {
    return CannotEnforce(prefix + driver, "net.udp", "no per-VM UDP filter");
  }
  if (!net.other) {
    return CannotEnforce(prefix + driver, "net.other", "no per-VM IP protocol filter");
  }
  for (const engine::RuleException& exception : net.other_exceptions) {
    if (!exception.allow) {
      return CannotEnforce(prefix + driver, "net.other." + exception.name,
                           "no per-VM IP protocol filter");
    }
  }
  if (!net.ip_default) {
    return CannotEnforce(prefix + driver, "net.ip", "no per-VM outgoing address filter");
  }
  for (const engine::RuleException& exception : net.ip_exceptions) {
    if (!exception.allow) {
      return CannotEnforce(prefix + driver, "net.ip." + exception.name,
                           "no per-VM outgoing address filter");
    }
  }
  return Status::Ok();
}

Status CheckCommonPolicy(const std::string& driver, const CloneSpec& spec) {
  if (Status checked = CheckStartAndConfig(spec); !checked.ok()) {
    return checked;
  }
  const std::string prefix = "clone " + spec.name + ": ";
  for (const std::string& disk : spec.enforcement.extra_disks) {
    return Status::Unsupported(prefix + driver + " cannot attach drive " + disk);
  }
  for (const std::string& module : spec.enforcement.usb_modules) {
    return Status::Unsupported(prefix + driver + " cannot load USB module " + module);
  }
  return CheckNetworkFilters(driver, spec);
}

}  // namespace cloister::node
