// AnkaDriver ("anka"): the Driver interface over the Anka 3.x command line on a macOS host, with
// machine-readable output (`anka -j ...`: the last line of output is a JSON object
// {"status":"OK"|"ERROR","body":...,"message":"...","code":N,"exception_type":"..."}).
//
// Calls and what they run (docs/cli_drivers.md has the whole table):
//   Clone    anka -j show NAME (must be code 3, not found), then on a scratch VM
//            "NAME.cloister-clone": clone [--copy] [--tag TAG] TEMPLATE SCRATCH, the modify
//            commands of AnkaModifyArgs, and last modify SCRATCH name NAME. Any failure deletes
//            the scratch VM: NAME appears whole or not at all. A scratch VM left by a crash is
//            deleted by the next clone of NAME.
//   Start    show (strict: not running), start NAME
//   Stop     show (strict: running or suspended), stop NAME (anka's own graceful stop, then
//            stop --force if that fails)
//   Suspend  show (strict: running), suspend NAME
//   Delete   delete --yes NAME
//   Run      show (strict: running; `anka run` would start a stopped VM), then
//            anka run NAME /bin/sh -c SCRIPT (not -j: its exit status is the script's)
//   List     list;  Show  show NAME and describe NAME (forwards, VNC port)
// Anka's error code 3 is kNotFound, 18 (name exists) kInvalidArgument; any other error, a
// non-zero exit without JSON, output that is not the JSON above, or a timeout is kIoError with
// anka's own words.
//
// The VM policy (cli_policy.h): no interface -> network --mode disconnected; local denied ->
// network --no-local; allowed forwards -> add port (TCP only: a UDP forward is kUnsupported);
// allowed shared folders -> mount PATH; denied clipboard or keyboard, IP address filters and
// the protocol filters are kUnsupported (the CLI has no flag for them).
//
// Thread-safety: calls are serialised by one mutex (anka itself serialises changes to a VM).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "log/status.h"
#include "node/cli_driver.h"
#include "node/cli_runner.h"
#include "node/driver.h"

namespace cloister::node {

struct AnkaDriverOptions {
  std::string program = "anka";  // A name on PATH or an absolute path.
  std::string path;              // PATH for the lookup; empty: the process's.
  uint64_t timeout_ms = 900'000;       // Per command (a clone with --copy copies a disk).
  uint64_t run_timeout_ms = 3'600'000;  // A script run in the guest.
};

// The arguments (after "-j") of the `anka modify` commands that give vm what spec and its
// policy ask, in order. kInvalidArgument: the policy denies start or the configuration change;
// kUnsupported: something anka cannot enforce, named by its rule.
Result<std::vector<std::vector<std::string>>> AnkaModifyArgs(const std::string& vm,
                                                             const CloneSpec& spec);

class AnkaDriver : public CliDriver {
 public:
  explicit AnkaDriver(AnkaDriverOptions options);

  const char* name() const override { return "anka"; }
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
  struct Reply;
  // Runs `anka -j args...` and parses its last line. An ERROR reply is an error Status with
  // "<what>: <anka's message>".
  Result<Reply> Call(const std::string& what, const std::vector<std::string>& args);
  Result<VmInfo> ShowLocked(const std::string& name);
  Status CloneLocked(const CloneSpec& spec);

  AnkaDriverOptions options_;
};

}  // namespace cloister::node
