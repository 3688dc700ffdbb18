// Driver: the one interface between the node agent and a hypervisor (sim, QEMU/KVM, the anka
// CLI, the tart CLI).
//
// Every call is synchronous and may block for a long time (a clone copies a disk image, a start
// boots a guest); the agent calls a driver from its worker thread, never from a network thread.
// The caller chooses VM names (the reconciler uses "cloister-<instance id>"); a driver never
// renames or invents VMs, and it reports every VM it knows through List, not only the agent's.
//
// Contract every driver keeps, because the reconciler's crash safety rests on it:
//  * Each mutating call (Clone, Start, Stop, Suspend, Delete) is atomic as seen by List/Show:
//    after a crash of the agent, or of the driver's own process, a VM is either in its old state
//    or its new one. Clone in particular never leaves a half-made VM under the requested name (a
//    CLI driver clones to a scratch name and renames).
//  * Calls are strict: no call is silently a no-op. Clone of an existing name, Start of a running
//    VM, Stop of a stopped one and Suspend of a VM that is not running all fail with
//    kInvalidArgument and change nothing. Callers decide from List/Show, never from an error.
//  * Show and List report the hypervisor's actual state, not a cache of what was asked for.
//
// Errors (Status codes):
//  * kNotFound: no VM of that name (or, for Clone, no such template or tag).
//  * kInvalidArgument: a malformed name or spec, a name already taken, or an operation the VM's
//    current state does not allow (see above). Nothing was changed.
//  * kIoError: the hypervisor failed; the message is the hypervisor's own words where it has
//    some, and the agent reports it to the controller unchanged.
//  * kUnsupported: this driver cannot do that operation.
// Messages name the VM and the operation ("start cloister-42: ..."). A driver never throws.
//
// Thread-safety: a driver must accept calls from any thread; whether calls run concurrently is
// the driver's business (sim serialises them). The reconciler makes one call at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/vm_enforcement.h"
#include "log/status.h"

namespace cloister::node {

// The VM states the agent distinguishes. A driver maps everything else onto these: a VM that
// crashed or was powered off from outside is kStopped; a paused one is kSuspended.
enum class VmStatus : uint8_t {
  kStopped = 0,
  kRunning = 1,
  kSuspended = 2,
};

// "stopped", "running", "suspended" (the Anka CLI's words).
inline const char* VmStatusName(VmStatus status) {
  switch (status) {
    case VmStatus::kStopped: return "stopped";
    case VmStatus::kRunning: return "running";
    case VmStatus::kSuspended: return "suspended";
  }
  return "unknown";
}

struct PortForward {
  std::string name;
  std::string protocol;  // "tcp" or "udp".
  uint16_t guest_port = 0;
  uint16_t host_port = 0;

  bool operator==(const PortForward&) const = default;
};

// What Clone makes: a new VM called `name` from template `template_id` at `tag`.
struct CloneSpec {
  std::string name;
  std::string template_id;
  std::string tag;         // Empty: the template's latest tag.
  uint32_t cpu_cores = 0;  // 0: the template's own setting.
  uint32_t ram_mb = 0;     // 0: the template's own setting.
  // Drivers that run real guests (qemu, anka, tart) use these; sim ignores them.
  bool copy = false;     // An independent copy of the template's disk, not a CoW overlay.
  bool network = false;  // The VM asks for a NIC; off: none unless forwards need one (qemu).
  // Asked; only those the policy allows are made. host_port 0: a free port chosen at each start.
  std::vector<PortForward> port_forwards{};
  // What the VM policy lets this VM have (engine/vm_enforcement.h; default: everything). A
  // driver obeys it or refuses: what it cannot enforce fails Clone (or Start) with
  // kUnsupported naming the rule, never a VM with less protection than the policy asks.
  engine::VmEnforcement enforcement{};
};

// One entry of List.
struct VmSummary {
  std::string name;
  std::string uuid;
  VmStatus status = VmStatus::kStopped;

  bool operator==(const VmSummary&) const = default;
};

// Show: everything the controller's vminfo carries about one VM.
struct VmInfo {
  std::string uuid;
  std::string name;
  VmStatus status = VmStatus::kStopped;
  std::string template_id;
  std::string tag;
  uint32_t cpu_cores = 0;
  uint32_t ram_mb = 0;
  std::string ip;         // Empty unless running and the guest has an address.
  uint16_t vnc_port = 0;  // 0 unless running with VNC.
  std::vector<PortForward> port_forwards;

  bool operator==(const VmInfo&) const = default;
};

// What a command run in the guest returned.
struct GuestResult {
  int exit_code = 0;
  std::string output;  // Standard output and error, interleaved as the guest wrote them.
};

class Driver {
 public:
  virtual ~Driver() = default;

  // "sim", "qemu", "anka", "tart": for logs and the node's status report.
  virtual const char* name() const = 0;

  // Makes VM spec.name from the template. kInvalidArgument if the name is taken; kNotFound if
  // the template or tag does not exist. The new VM is kStopped.
  virtual Status Clone(const CloneSpec& spec) = 0;

  // kStopped or kSuspended -> kRunning (a suspended VM resumes). Returns once the hypervisor
  // reports the VM running; the guest may still be booting.
  virtual Status Start(const std::string& name) = 0;

  // kRunning or kSuspended -> kStopped. A driver may stop gracefully first, bounded by its own
  // timeout, then force.
  virtual Status Stop(const std::string& name) = 0;

  // kRunning -> kSuspended.
  virtual Status Suspend(const std::string& name) = 0;

  // Removes the VM and its disks, in any state (a driver stops it first if it must).
  virtual Status Delete(const std::string& name) = 0;

  // Runs script with the guest's shell in a running VM and returns its exit code and output.
  // A script that exits non-zero is a result, not an error; errors are for when it could not be
  // run (kInvalidArgument: the VM is not running). Real drivers bound the time a script may take.
  virtual Result<GuestResult> Run(const std::string& name, const std::string& script) = 0;

  // Every VM the hypervisor knows, sorted by name.
  virtual Result<std::vector<VmSummary>> List() = 0;

  // One VM. kNotFound if there is none of that name (the reconciler relies on this code).
  virtual Result<VmInfo> Show(const std::string& name) = 0;
};

}  // namespace cloister::node
