#include "engine/vm_enforcement.h"

#include <algorithm>

namespace cloister::engine {
namespace {

std::string Runtime(const std::string& name) { return kRuntimeRulePrefix + name; }

// The rule names the policy matching treats as covering `query` from `name` (policy_decide.h):
// equal, or a prefix followed by '.' or '/'.
bool Covers(const std::string& name, const std::string& query) {
  if (query.size() < name.size() || query.compare(0, name.size(), name) != 0) {
    return false;
  }
  return query.size() == name.size() || query[name.size()] == '.' || query[name.size()] == '/';
}

// The user's winning rules strictly below prefix + "." (prefix without the dot), shortest first.
std::vector<RuleException> Exceptions(const std::vector<PolicyDecision>& effective,
                                      const std::string& prefix) {
  const std::string below = prefix + ".";
  std::vector<RuleException> out;
  for (const PolicyDecision& decision : effective) {
    if (decision.rule.size() > below.size() && decision.rule.starts_with(below)) {
      out.push_back({decision.rule.substr(below.size()), decision.allow});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const RuleException& a, const RuleException& b) {
    return a.name.size() < b.name.size();
  });
  return out;
}

// The verdict for `value` under exceptions (shortest first) and a default.
bool Resolve(const std::vector<RuleException>& exceptions, bool fallback,
             const std::string& value) {
  bool verdict = fallback;
  for (const RuleException& exception : exceptions) {
    if (Covers(exception.name, value)) {
      verdict = exception.allow;  // Later entries are longer: more specific.
    }
  }
  return verdict;
}

// An absolute path with no empty, "." or ".." segment and no NUL: the only spelling of its file
// a rule can name. "/usr/./bin/x" would slip past a rule denying "/usr/bin/x".
bool CanonicalPath(const std::string& path) {
  if (!path.starts_with("/") || path.find('\0') != std::string::npos) {
    return false;
  }
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) {
      end = path.size();
    }
    const std::string_view segment(path.data() + start, end - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return false;
    }
    start = end + 1;
  }
  return true;
}

PolicyDecision Unmatchable(const std::string& rule) {
  PolicyDecision refused;
  refused.allow = false;
  refused.source = PolicySource::kUnmatchable;
  refused.rule = rule;
  return refused;
}

std::string ForwardText(const VmForward& forward) {
  return "port forward " + std::to_string(forward.host_port) + " -> " +
         std::to_string(forward.guest_port) + "/" + forward.protocol + " on " + forward.address;
}

}  // namespace

std::string PolicyRefusal::Message() const {
  return "the VM policy denies " + feature + " (" + rule + "): " + decision.Explain();
}

bool NetworkEnforcement::AllowsAddress(const std::string& address) const {
  return Resolve(ip_exceptions, ip_default, address);
}

bool NetworkEnforcement::AllowsProtocol(uint32_t protocol) const {
  if (protocol == 6) {
    return tcp;
  }
  if (protocol == 17) {
    return udp;
  }
  return Resolve(other_exceptions, other, std::to_string(protocol));
}

bool NetworkEnforcement::Filtered() const {
  if (!interface) {
    return false;
  }
  return !local || !tcp || !udp || !other || !ip_default || !other_exceptions.empty() ||
         !ip_exceptions.empty();
}

VmEnforcement EnforceVmPolicy(const reducers::PolicyModel& model, const std::string& user,
                              const VmFeatures& features) {
  VmEnforcement out;
  const auto decide = [&](const std::string& rule) { return Decide(model, user, rule); };
  const auto refuse = [&](std::string feature, std::string rule, PolicyDecision decision) {
    out.refusals.push_back({std::move(feature), std::move(rule), std::move(decision)});
  };

  const std::string start_rule = Runtime("start");
  PolicyDecision start = decide(start_rule);
  out.start = start.allow;
  if (!start.allow) {
    refuse("start", start_rule, start);
  }

  const std::vector<PolicyDecision> effective = EffectiveRules(model, user);
  NetworkEnforcement& net = out.network;
  const std::string net_rule = Runtime("net");
  PolicyDecision interface = decide(net_rule);
  net.interface = features.network && interface.allow;
  if (features.network && !interface.allow) {
    refuse("a network interface", net_rule, interface);
  }
  net.local = decide(Runtime("local")).allow;
  net.tcp = decide(Runtime("net.tcp")).allow;
  net.udp = decide(Runtime("net.udp")).allow;
  net.other = decide(Runtime("net.other")).allow;
  net.other_exceptions = Exceptions(effective, Runtime("net.other"));
  net.ip_default = decide(Runtime("net.ip")).allow;
  net.ip_exceptions = Exceptions(effective, Runtime("net.ip"));

  for (const VmForward& forward : features.forwards) {
    const std::string rule = Runtime("net.fwd." + std::to_string(forward.host_port) + "." +
                                     forward.address + "." + std::to_string(forward.guest_port));
    if (!net.interface) {
      // A forward reaches the guest through its interface: none, no forward.
      refuse(ForwardText(forward), net_rule, interface);
      continue;
    }
    PolicyDecision decision = decide(rule);
    if (decision.allow) {
      out.forwards.push_back(forward);
    } else {
      refuse(ForwardText(forward), rule, decision);
    }
  }
  const auto subset = [&](const std::vector<std::string>& asked, const std::string& family,
                          const std::string& what, std::vector<std::string>* allowed) {
    for (const std::string& item : asked) {
      const std::string rule = Runtime(family + "." + item);
      PolicyDecision decision =
          family == "fs" && !CanonicalPath(item) ? Unmatchable(rule) : decide(rule);
      if (decision.allow) {
        allowed->push_back(item);
      } else {
        refuse(what + " " + item, rule, decision);
      }
    }
  };
  // Folder rules are written com.veertu.ankahv.fs./abs/path: the path brings its own '/'.
  subset(features.shared_folders, "fs", "shared folder", &out.shared_folders);
  subset(features.extra_disks, "disk", "drive", &out.extra_disks);
  subset(features.usb_modules, "usb", "USB module", &out.usb_modules);
  out.clipboard = decide(Runtime("view.pb")).allow;
  out.keyboard = decide(Runtime("view.hid")).allow;
  for (const std::string& parameter : features.config_changes) {
    const std::string rule = kConfigRulePrefix + parameter;
    PolicyDecision decision = decide(rule);
    if (!decision.allow) {
      out.config_allowed = false;
      refuse("changing " + parameter, rule, decision);
    }
  }
  return out;
}

PolicyDecision DecideRun(const reducers::PolicyModel& model, const std::string& user,
                         const std::string& command, std::string* rule) {
  const std::string name = Runtime("run." + command);
  if (rule != nullptr) {
    *rule = name;
  }
  return CanonicalPath(command) ? Decide(model, user, name) : Unmatchable(name);
}

}  // namespace cloister::engine
