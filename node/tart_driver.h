// TartDriver ("tart"): the Driver interface over the tart command line (cirruslabs/tart) on a
// macOS host.
//
// Calls and what they run (docs/cli_drivers.md has the whole table):
//   Clone    tart list --source local --format json (NAME must not exist: `tart clone` would
//            replace it), then on a scratch VM "NAME.cloister-clone": clone SOURCE SCRATCH
//            (SOURCE = source_prefix + template [+ ":" + tag]), set SCRATCH --cpu N --memory MB,
//            the run flags written to STATE/NAME.json, and last rename SCRATCH NAME. Any failure
//            deletes the scratch VM. A scratch VM left by a crash is deleted by the next clone.
//   Start    get (strict), then `tart run NAME <flags>` detached (its own session, reparented to
//            init, output in STATE/NAME.log, pid in STATE/NAME.pid), then get until it reports
//            running (bounded by start_timeout_ms; if the run process dies first: kIoError with
//            the tail of its log). A suspended VM resumes the same way.
//   Stop     get (strict); a running VM: tart stop NAME (SIGINT, then SIGKILL after its 30 s);
//            a suspended one is resumed first (tart has no other way to drop its saved state).
//   Suspend  get (strict: running), tart suspend NAME, then get until suspended.
//   Delete   tart stop if it runs, tart delete NAME, and its files in STATE.
//   Run      get (strict: running), tart exec NAME /bin/sh -c SCRIPT (needs the tart guest
//            agent); the exit status is the script's, output is stdout then stderr.
//   List     tart list --source local --format json;  Show  get NAME --format json, and
//            tart ip NAME while it runs.
// tart's "does not exist" is kNotFound; any other failure, output that is not the JSON expected,
// or a timeout is kIoError with tart's own words.
//
// The VM policy (TartRunFlags, cli_policy.h): --no-graphics always (no console: no keyboard
// pass-through); local denied -> --net-softnet (+ --net-softnet-allow with the allowed
// addresses as CIDRs); allowed shared folders -> --dir NAME:PATH (none when fs is denied);
// clipboard denied -> --no-clipboard; no interface, outgoing address filters beyond softnet's,
// protocol filters and port forwards (tart has none) are kUnsupported, named by their rule.
//
// Thread-safety: calls are serialised by one mutex.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "log/status.h"
#include "node/cli_driver.h"
#include "node/cli_runner.h"
#include "node/driver.h"

namespace cloister::node {

struct TartDriverOptions {
  std::string program = "tart";  // A name on PATH or an absolute path.
  std::string path;              // PATH for the lookup; empty: the process's.
  std::string state_dir;         // Run flags, pid and log files (made if missing).
  std::string source_prefix;     // Put before a template id: "ghcr.io/org/" or empty (local).
  bool suspendable = true;       // --suspendable when no folder is shared (macOS guests only).
  uint64_t timeout_ms = 900'000;         // Per command (a clone may pull).
  uint64_t run_timeout_ms = 3'600'000;   // A script run in the guest.
  uint64_t start_timeout_ms = 120'000;   // Until a started VM shows as running.
  uint64_t poll_ms = 500;                // Between looks at a starting or suspending VM.
};

// The `tart run` flags (after the VM name) that give a VM what spec and its policy ask.
// kInvalidArgument: the policy denies start or the configuration change, or a folder cannot
// be written as a --dir value; kUnsupported: something tart cannot enforce, named by its rule.
Result<std::vector<std::string>> TartRunFlags(const CloneSpec& spec, bool suspendable);

class TartDriver : public CliDriver {
 public:
  // Makes options.state_dir. kIoError if it cannot.
  static Result<std::unique_ptr<TartDriver>> Open(TartDriverOptions options);

  const char* name() const override { return "tart"; }
  Status Clone(const CloneSpec& spec) override;
  Status Start(const std::string& name) override;
  Status Stop(const std::string& name) override;
  Status Suspend(const std::string& name) override;
  Status Delete(const std::string& name) override;
  Result<std::vector<VmSummary>> List() override;
  Result<VmInfo> Show(const std::string& name) override;

 protected:
  Result<VmStatus> StatusOf(const std::string& what, const std::string& name) override;
  std::vector<CliArg> GuestCommand(const std::string& name,
                                   const std::string& script) const override;

 private:
  explicit TartDriver(TartDriverOptions options);
  // Runs `tart args...`: kIoError unless it exits 0 (kNotFound for "does not exist").
  Result<CliResult> Call(const std::string& what, const std::vector<std::string>& args,
                         uint64_t timeout_ms = 0);
  Result<std::vector<VmSummary>> ListLocked();
  Status CloneLocked(const CloneSpec& spec);
  Status StartLocked(const std::string& name);
  Status StopRunning(const std::string& name);
  // Polls get until name is in state want, bounded by start_timeout_ms; run_pid > 0: fail
  // early (with its log) if that process has gone.
  Status AwaitState(const std::string& what, const std::string& name, VmStatus want,
                    long run_pid);
  std::string StateFile(const std::string& name, const char* suffix) const;

  TartDriverOptions options_;
};

}  // namespace cloister::node
