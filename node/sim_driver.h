// SimDriver ("sim"): a deterministic, in-process hypervisor for tests, with persistent state.
//
// Semantics are those of driver.h, strictly: Clone of an existing name, Start of a running VM,
// Stop of a stopped VM and Suspend of a VM that is not running fail with kInvalidArgument and
// change nothing. Delete works in any state. Any template id is accepted (templates are not
// modelled); a VM's uuid, IP address, VNC port and ssh port forward are derived from its name
// only (FNV-1a), so two runs give identical answers. An IP and a VNC port are shown only while
// the VM runs. Run(name, script) needs a running VM; a script of the form "exit N" returns exit
// code N, any other script exits 0; the output is "sim: <script>\n".
//
// Persistence: the VM table and the call counters of the mutating operations (clone, start,
// stop, suspend, delete, run) live in DIR/sim-state, a text file replaced atomically (write a
// temporary file, fsync, rename, fsync DIR) once per mutating call, so a SIGKILL at any moment
// leaves either the state before that call or the state after it, counters included. A killed
// call that did not reach its write is as if it never happened, as with a real hypervisor. Reads
// (list, show) are counted per process only, so that they cost no disk write. DIR/sim.lock is
// held (flock) while the driver is open: a second opener gets kBusy.
//
// Counters count every call that returned, successful or not (an injected failure counts too);
// they are what the crash tests read to prove that no VM was cloned or started twice.
//
// Fault injection: per-operation delays (a real sleep before the call's effect and another after
// it, default 0, plus optional seeded jitter on mutating calls) widen the windows between a
// driver call and the agent's next store write; failures (SimFailure) make chosen calls return
// kIoError with a given message and no effect.
//
// Thread-safety: all methods are thread-safe. Calls are serialised by one mutex; the delays are
// slept outside it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "log/status.h"
#include "node/driver.h"

namespace cloister::node {

enum class SimOp : uint8_t {
  kClone = 0,
  kStart,
  kStop,
  kSuspend,
  kDelete,
  kRun,
  kList,
  kShow,
};
inline constexpr size_t kSimOpCount = 8;

// "clone", "start", ... (also the names in DIR/sim-state).
const char* SimOpName(SimOp op);

// True for the operations whose calls change (and persist) state.
constexpr bool SimOpMutates(SimOp op) { return op != SimOp::kList && op != SimOp::kShow; }

// Makes matching calls fail with kIoError("<op> <vm>: <message>") and no effect. A call matches
// when its operation is op, vm_name is empty or names the call's VM, template_id is empty or (for
// clones) names the clone's template, and nth is 0 or equals the call's number: the op's counter
// including this call (counted over the persisted life of DIR for mutating ops, so "fail the 3rd
// start" fires once even across reopens; per process for list and show).
struct SimFailure {
  SimOp op = SimOp::kClone;
  uint64_t nth = 0;
  std::string vm_name;
  std::string template_id;
  std::string message = "injected failure";
};

// Sleeps around each call of one operation: `before` runs before the call takes effect (a kill
// during it loses the call), `after` runs after its effect was persisted but before it returns
// (a kill during it leaves the effect and no answer: the window the agent must survive).
struct SimDelay {
  std::chrono::microseconds before{0};
  std::chrono::microseconds after{0};
};

struct SimOptions {
  std::array<SimDelay, kSimOpCount> delays{};
  // Mutating calls also sleep a uniform random 0..jitter_max before and after, drawn from an
  // RNG seeded with jitter_seed (the schedule of sleeps is deterministic, the timing is not).
  std::chrono::microseconds jitter_max{0};
  uint64_t jitter_seed = 0;
  std::vector<SimFailure> failures;
};

// Template defaults when a CloneSpec leaves cpu_cores or ram_mb at 0.
inline constexpr uint32_t kSimDefaultCpuCores = 2;
inline constexpr uint32_t kSimDefaultRamMb = 4096;
// VM names: 1..kSimNameBytesMax of [A-Za-z0-9._-] (what every real hypervisor accepts).
inline constexpr size_t kSimNameBytesMax = 128;

class SimDriver final : public Driver {
 public:
  // Opens (creating if needed) the simulation in dir and takes DIR/sim.lock. Errors: kBusy
  // (another SimDriver has dir open), kCorruption (sim-state unreadable), kIoError.
  static Result<std::unique_ptr<SimDriver>> Open(const std::string& dir, SimOptions options = {});

  ~SimDriver() override;
  SimDriver(const SimDriver&) = delete;
  SimDriver& operator=(const SimDriver&) = delete;

  // Driver.
  const char* name() const override { return "sim"; }
  Status Clone(const CloneSpec& spec) override;
  Status Start(const std::string& name) override;
  Status Stop(const std::string& name) override;
  Status Suspend(const std::string& name) override;
  Status Delete(const std::string& name) override;
  Result<GuestResult> Run(const std::string& name, const std::string& script) override;
  Result<std::vector<VmSummary>> List() override;
  Result<VmInfo> Show(const std::string& name) override;

  // Fault injection; takes effect from the next call.
  void SetDelay(SimOp op, SimDelay delay);
  void SetJitter(std::chrono::microseconds jitter_max, uint64_t seed);
  void AddFailure(SimFailure failure);
  void ClearFailures();

  // Calls of op that returned (persisted for mutating ops, this process's for list and show).
  uint64_t Calls(SimOp op) const;
  // Calls of a mutating op on one VM name, over the persisted life of DIR (a deleted VM keeps its
  // counts; a VM cloned again under the same name adds to them). 0 for list and show.
  uint64_t Calls(SimOp op, const std::string& vm_name) const;

  // The state file and the lock file inside dir.
  static std::string StatePath(const std::string& dir);
  static std::string LockPath(const std::string& dir);

  struct Vm {
    std::string name;
    VmStatus status = VmStatus::kStopped;
    std::string template_id;
    std::string tag;
    uint32_t cpu_cores = 0;
    uint32_t ram_mb = 0;
  };
  // Everything DIR/sim-state holds.
  struct State {
    std::map<std::string, Vm> vms;                          // By name.
    std::array<uint64_t, kSimOpCount> calls{};              // Mutating ops only.
    std::map<std::string, std::array<uint64_t, kSimOpCount>> vm_calls;  // By VM name.
  };

 private:
  SimDriver(std::string dir, int lock_fd, State state, SimOptions options);

  // The body of every mutating call: sleeps, counts, checks failures, applies mutate to a copy
  // of the state, persists it, and only then makes it current. mutate returns the call's error
  // (which is persisted with the counter) or OK.
  template <typename Mutate>
  Status Mutating(SimOp op, const std::string& vm_name, const std::string& template_id,
                  const Mutate& mutate);
  // The failure message for a call, or empty; caller holds mu_.
  std::string InjectedFailure(SimOp op, uint64_t nth, const std::string& vm_name,
                              const std::string& template_id) const;
  std::chrono::microseconds JitterLocked();
  void Sleep(SimOp op, bool before);
  VmInfo InfoOf(const Vm& vm) const;

  const std::string dir_;
  const int lock_fd_;

  mutable std::mutex mu_;
  State state_;                                    // Guarded by mu_; equal to DIR/sim-state.
  std::array<uint64_t, kSimOpCount> read_calls_{};  // Guarded by mu_; list and show.
  SimOptions options_;                              // Guarded by mu_.
  std::mt19937_64 jitter_rng_;                      // Guarded by mu_.
};

}  // namespace cloister::node
