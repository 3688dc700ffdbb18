// QemuDriver ("qemu"): real VMs with QEMU on Linux, one detached QEMU process per VM, driven
// over QMP on a unix socket; commands run through a guest agent on a virtio-serial port.
//
// Templates, in TEMPLATES (QemuOptions::templates_dir): TEMPLATES/<template id>/<tag>/ holding
// template.json ({"format":"cloister-qemu-template","version":1,"cpu_cores","ram_mb","kernel",
// "initrd","disk","append"}, file names relative to the directory), the kernel, the initrd and
// the qcow2 disk. scripts/guest/build-image makes one (the test guest). A clone with an empty
// tag takes the template's only tag, or its tag "latest".
//
// VMs, in DIR (QemuOptions::vm_dir), one directory each, DIR/<name>/:
//   config.json   what Clone decided (uuid, template, cpu, ram, kernel/initrd paths, network,
//                 the allowed port forwards, shared folders, USB and console, VNC password);
//                 mode 0600
//   disk.qcow2    an overlay on the template's disk (absolute backing path), or a copy
//   pid           QEMU's pidfile; qmp.sock, agent.sock: its QMP and guest-agent sockets
//   run.json      what the running QEMU got: accelerator, VNC port, forwards' host ports
//   vm.state      a suspended VM's memory and devices (QMP migrate to a file)
//   serial.log    the guest's console; qemu.log: QEMU's own error output at start
// Clone builds the directory in DIR/.staging/ and renames it into place (RENAME_NOREPLACE);
// Delete renames it into DIR/.trash/ before removing it; Open empties both. DIR/qemu.lock is
// held (flock) while a driver is open: a second opener of DIR gets kBusy.
//
// State is observed, never remembered: a VM runs when its pidfile names a live process whose
// command line carries the VM's uuid; then QMP query-status says running (kRunning) or paused
// (kSuspended). With no live process, vm.state means kSuspended, else kStopped (a QEMU that
// died or was killed is stopped). A QEMU still in prelaunch or inmigrate is a start that never
// finished: the VM is in its old state, and the next Start (or Stop, Delete) kills it. A new
// driver over the same DIR therefore re-attaches to the VMs a previous one started (the agent
// restarted) and never starts them twice.
//
// Start: QEMU as a detached grandchild (its own session; not -daemonize, which ignores SIGCHLD
// and so breaks migrations to "exec:"), paused (-S) until the VNC password is set over QMP,
// then `cont`; for a
// suspended VM with -incoming defer and migrate-incoming from vm.state (guest memory kept), which
// is removed once the VM runs. Returns when QMP reports running (the guest may still boot).
// Accelerator: tcg, kvm, or auto (kvm only if /dev/kvm opens and a probe boot of the VM's kernel
// reaches the guest agent's marker within probe_timeout; the answer is kept for the driver's
// life). No NIC unless the clone asked for networking or port forwards (forwards without
// networking get a restricted slirp NIC: forwards work, the guest reaches nothing). Forwards and
// VNC bind 127.0.0.1 only.
//
// The VM policy (CloneSpec::enforcement; docs/qemu.md has the table): Clone decides, config.json
// keeps the decision, every Start applies it. Start or a configuration change denied: Clone
// fails with kInvalidArgument and the refusal's message, nothing made. No interface: -nic none
// and no forwards; local denied: restrict=on (allowed forwards still work); only allowed
// forwards become hostfwd; only allowed shared folders become -virtfs (read-only, mount tags
// fs0, fs1, ...); USB: none (-machine usb=off) unless module "host" is allowed (qemu-xhci);
// keyboard denied: no VNC console (QEMU's VNC has no view-only mode); the clipboard is never
// shared (no vdagent). What QEMU's user-mode network cannot filter (net.tcp, net.udp,
// net.other*, net.ip* denials), extra drives and other USB modules: Clone fails with
// kUnsupported naming it. Before the guest runs (QEMU paused, -S) Start audits the devices over
// QMP (query-pci, info network, info usernet): a NIC, USB controller, 9p share, unrestricted
// network or host forward the policy does not allow kills QEMU and fails with kIoError
// "policy audit: ..." naming the mismatch.
// Stop: ACPI power button, QMP quit after stop_timeout, SIGKILL after 5 s more. Suspend: stop
// the vCPUs, migrate to vm.state.tmp, fsync, rename to vm.state, quit.
//
// Errors follow driver.h: kNotFound, kInvalidArgument (nothing changed), kIoError with QEMU's
// own words (never the VNC password). A failed Start kills what it started.
//
// Thread-safety: all methods are thread-safe; calls on one VM are serialised (a per-VM mutex;
// Run has its own, so Show answers while a script runs), calls on different VMs run in parallel.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "log/status.h"
#include "node/driver.h"

namespace cloister::node {

enum class QemuAccel : uint8_t { kAuto = 0, kTcg, kKvm };

// "auto", "tcg", "kvm".
const char* QemuAccelName(QemuAccel accel);
bool ParseQemuAccel(const std::string& text, QemuAccel* accel);

struct QemuOptions {
  std::string vm_dir;         // DIR: the VMs (created if missing).
  std::string templates_dir;  // TEMPLATES: <template id>/<tag>/template.json.
  std::string qemu_binary = "qemu-system-x86_64";
  std::string qemu_img = "qemu-img";
  QemuAccel accel = QemuAccel::kAuto;
  std::chrono::milliseconds start_timeout{120'000};  // QEMU up and running (and resumed).
  std::chrono::milliseconds stop_timeout{20'000};    // ACPI power-down grace period.
  std::chrono::milliseconds suspend_timeout{120'000};
  std::chrono::milliseconds probe_timeout{8'000};    // The KVM probe boot.
  std::chrono::milliseconds agent_timeout{120'000};  // Guest agent first answer (boot).
  uint32_t run_timeout_seconds = 3600;               // One script, in the guest.
  // Appended to every QEMU command line. For tests only: a device the policy forbids, to prove
  // the device audit stops the VM.
  std::vector<std::string> extra_args;
};

// VM names: 1..128 of [A-Za-z0-9._-], not starting with '.'.
bool ValidQemuVmName(const std::string& name);

class QemuDriver final : public Driver {
 public:
  // Opens DIR (creating it), takes DIR/qemu.lock, empties DIR/.staging and DIR/.trash. Errors:
  // kInvalidArgument (options), kBusy (another driver has DIR open), kIoError.
  static Result<std::unique_ptr<QemuDriver>> Open(QemuOptions options);

  ~QemuDriver() override;  // Leaves the VMs running.
  QemuDriver(const QemuDriver&) = delete;
  QemuDriver& operator=(const QemuDriver&) = delete;

  const char* name() const override { return "qemu"; }
  Status Clone(const CloneSpec& spec) override;
  Status Start(const std::string& name) override;
  Status Stop(const std::string& name) override;
  Status Suspend(const std::string& name) override;
  Status Delete(const std::string& name) override;
  Result<GuestResult> Run(const std::string& name, const std::string& script) override;
  Result<std::vector<VmSummary>> List() override;
  Result<VmInfo> Show(const std::string& name) override;

  // The live QEMU process of a VM, or 0 (for tests and the benchmark).
  int QemuPid(const std::string& name);
  // The accelerator Start uses (runs the probe in auto mode; needs a VM for its kernel).
  Result<QemuAccel> ResolveAccel(const std::string& name);
  const QemuOptions& options() const { return options_; }

  struct Config;  // config.json (qemu_driver.cc).
  struct Observed;
  struct Entered;

 private:
  QemuDriver(QemuOptions options, int lock_fd);
  struct VmLocks {
    std::mutex op;   // Clone, Start, Stop, Suspend, Delete, Show.
    std::mutex run;  // The guest agent channel.
  };
  std::shared_ptr<VmLocks> LocksFor(const std::string& name);
  std::string VmPath(const std::string& name) const { return options_.vm_dir + "/" + name; }
  Result<VmInfo> ShowLocked(const std::string& name);
  // The start of every call on an existing VM: checks the name, takes the VM's op lock (held by
  // the returned value), loads its config and observes its QEMU. Errors are prefixed with op.
  Result<Entered> Enter(const std::string& op, const std::string& name);
  Status KillLocked(const std::string& dir, int pid);

  const QemuOptions options_;
  const int lock_fd_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<VmLocks>> locks_;  // Guarded by mu_.
  bool accel_known_ = false;                               // Guarded by mu_.
  QemuAccel accel_ = QemuAccel::kTcg;                      // Guarded by mu_.
  uint64_t trash_seq_ = 0;                                 // Guarded by mu_.
};

}  // namespace cloister::node
