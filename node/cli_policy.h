// The VM policy for the real drivers (anka, tart; qemu uses the start, configuration, forward
// and network filter checks): what they map the same way, and the one shape of a refusal. Each
// driver's own mapping is next to it (AnkaModifyArgs in anka_driver.h, TartRunFlags in
// tart_driver.h, qemu_driver.h); docs/cli_drivers.md and docs/qemu.md have the tables.
//
// A CloneSpec's enforcement is EnforceVmPolicy's answer for the VM's user
// (engine/vm_enforcement.h). The drivers read it so:
//  * start denied, or a configuration change (cpu, ram) denied: Clone fails with
//    kInvalidArgument and the refusal's own message (the rule and who decided), nothing made;
//  * a port forward asked in spec.port_forwards is made only if the policy lets it through (no
//    refusal names its rule com.veertu.ankahv.net.fwd.{host}.0.0.0.0.{guest}, and the VM has
//    an interface); the shared folders are enforcement.shared_folders (the allowed subset);
//  * whatever the driver's CLI cannot enforce fails Clone with kUnsupported and a message naming
//    the rule: "tart cannot enforce com.veertu.ankahv.net.udp=deny". Never a silent start.
//
// Pure and thread-safe.
#pragma once

#include <string>

#include "log/status.h"
#include "node/driver.h"

namespace cloister::node {

// com.veertu.ankahv.net.fwd.{host}.0.0.0.0.{guest}: the rule EnforceVmPolicy asks for forward.
std::string ForwardRule(const PortForward& forward);

// Whether forward may be made under enforcement.
bool ForwardAllowed(const engine::VmEnforcement& enforcement, const PortForward& forward);

// kUnsupported "<driver> cannot enforce com.veertu.ankahv.<rule>=deny" (<what>).
Status CannotEnforce(const std::string& driver, const std::string& rule, const std::string& what);

// Start denied, or a configuration change (cpu, ram) denied: kInvalidArgument with the refusal's
// message. Messages start with "clone <name>: ".
Status CheckStartAndConfig(const CloneSpec& spec);

// The IP protocol filters and outgoing address denials (no driver can drop TCP, UDP, other
// protocols or chosen addresses per VM yet): kUnsupported naming the first such rule; OK when
// the VM has no interface. Messages start with "clone <name>: ".
Status CheckNetworkFilters(const std::string& driver, const CloneSpec& spec);

// The checks both CLI drivers share, in this order: start, configuration changes, extra drives and
// USB modules (neither CLI driver attaches any: an allowed one asked is kUnsupported), the IP
// protocol filters and outgoing address denials (neither CLI can drop TCP, UDP, other protocols
// or chosen addresses per VM; tart's softnet only keeps private ranges out, which is `local`).
// Messages start with "clone <name>: ".
Status CheckCommonPolicy(const std::string& driver, const CloneSpec& spec);

}  // namespace cloister::node
