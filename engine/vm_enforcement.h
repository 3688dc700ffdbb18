// The Anka Secure policy at the hypervisor (seed 000; issue 9): the one place that turns the
// effective policy, for the user a VM runs as, into what the hypervisor may give that VM.
//
// A driver (node/) asks EnforceVmPolicy with what the VM's configuration asks for (VmFeatures) and
// gets back what it may create (VmEnforcement): start or not, the network it may have, the port
// forwards, shared folders, extra drives and USB modules that are allowed, whether the console may
// share the clipboard or pass the keyboard through, and every refusal with the rule that decided
// it. Commands run in the guest are decided one at a time by DecideRun. Nothing here knows QEMU,
// anka or tart: docs/policy.md "At the hypervisor" says what each driver maps each field to.
//
// The rule names asked (all under com.veertu.ankahv., runtime rules: allowed when no rule covers
// them; configuration rules com.veertu.anka.cfg.*: allowed only to administrators by default):
//   start                                the VM may start at all
//   net                                  the VM gets a network interface
//   local                                host, other VMs and the host's zero-configuration
//                                        services (DHCP, DNS, ARP answers) are reachable
//   net.tcp, net.udp, net.other          outgoing TCP / UDP / other IP protocols
//   net.other.{protocol number}          one other IP protocol (1: ICMP), decimal
//   net.ip / net.ip.{address}            outgoing traffic to any address / to this one; an
//                                        address rule covers the addresses it is a prefix of at
//                                        a '.' boundary ("net.ip.10" covers 10.0.0.1)
//   net.fwd.{hostport}.{addr}.{guestport}  one port forward (shorter names are wildcards)
//   fs.{/abs/path}                       sharing this host folder (and covering subfolders);
//                                        a path with an empty, "." or ".." segment is refused
//   disk.{id}                            attaching this unencrypted drive
//   usb.{module}                         loading this USB module ("host": pass-through)
//   view.pb, view.hid                    console clipboard / keyboard pass-through
//   run.{/abs/path}                      running this command in the guest (DecideRun)
// and com.veertu.anka.cfg.{parameter} for each configuration parameter the VM changes.
//
// Pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/policy_decide.h"
#include "reducers/policy_model.h"

namespace cloister::engine {

inline constexpr char kRuntimeRulePrefix[] = "com.veertu.ankahv.";
inline constexpr char kConfigRulePrefix[] = "com.veertu.anka.cfg.";

struct VmForward {
  uint16_t host_port = 0;
  std::string address = "0.0.0.0";  // Where the host listens.
  uint16_t guest_port = 0;
  std::string protocol = "tcp";      // "tcp" or "udp" (the rule name does not say).

  bool operator==(const VmForward&) const = default;
};

// What a VM's configuration asks of the hypervisor.
struct VmFeatures {
  bool network = true;                      // A network interface.
  std::vector<VmForward> forwards;
  std::vector<std::string> shared_folders;  // Absolute host paths.
  std::vector<std::string> extra_disks;     // Unencrypted extra drives, by id.
  std::vector<std::string> usb_modules;     // USB modules to load ("host").
  std::vector<std::string> config_changes;  // Configuration parameters changed ("cpu", "ram").
};

// One thing the policy denies, with what decided it.
struct PolicyRefusal {
  std::string feature;  // "start", "port forward 20000 -> 22/tcp on 0.0.0.0", "shared folder /x"
  std::string rule;     // The rule name asked.
  PolicyDecision decision;

  // "the VM policy denies shared folder /x (com.veertu.ankahv.fs./x): deny: ..."
  std::string Message() const;
};

// A rule under a prefix and its verdict for the user (net.ip.*, net.other.*).
struct RuleException {
  std::string name;  // After the prefix: "10.0.0.1", "1".
  bool allow = true;

  bool operator==(const RuleException&) const = default;
};

struct NetworkEnforcement {
  bool interface = true;  // false: no NIC at all; the fields below then do not matter.
  bool local = true;      // false: nothing on the host or other VMs is reachable.
  bool tcp = true;
  bool udp = true;
  bool other = true;      // Other IP protocols, unless other_exceptions says otherwise.
  std::vector<RuleException> other_exceptions;  // By protocol number.
  bool ip_default = true;  // Outgoing traffic to addresses no exception covers.
  std::vector<RuleException> ip_exceptions;     // Most specific last: the last covering wins.

  // Whether the policy lets outgoing traffic reach address (dotted IPv4 or IPv6 text).
  bool AllowsAddress(const std::string& address) const;
  // Whether an IP protocol (6 TCP, 17 UDP, others by number) may leave the VM.
  bool AllowsProtocol(uint32_t protocol) const;
  // Whether anything beyond "no interface" or "everything" is asked: a driver that cannot
  // filter must refuse a VM for which this is true.
  bool Filtered() const;
};

struct VmEnforcement {
  bool start = true;
  NetworkEnforcement network;
  std::vector<VmForward> forwards;          // The allowed subset, in the order asked.
  std::vector<std::string> shared_folders;  // The allowed subset.
  std::vector<std::string> extra_disks;     // The allowed subset.
  std::vector<std::string> usb_modules;     // The allowed subset (empty: no USB controller).
  bool clipboard = true;
  bool keyboard = true;
  bool config_allowed = true;               // Every configuration change asked is allowed.
  // Everything denied of what was asked, start first; also the configuration changes.
  std::vector<PolicyRefusal> refusals;
};

// The policy for `user` applied to what `features` asks.
VmEnforcement EnforceVmPolicy(const reducers::PolicyModel& model, const std::string& user,
                              const VmFeatures& features);

// May `user` run `command` (an absolute path, the program of `anka run`) in the guest?
// Refusals carry the rule com.veertu.ankahv.run.{command}. A command that is not an absolute
// path, or has an empty, "." or ".." segment, is refused (PolicySource::kUnmatchable): a rule
// names one spelling of a file, and another spelling must not slip past it.
PolicyDecision DecideRun(const reducers::PolicyModel& model, const std::string& user,
                         const std::string& command, std::string* rule = nullptr);

}  // namespace cloister::engine
