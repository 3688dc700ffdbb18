// The anka and tart CLI drivers against recorded-output fakes on PATH (node/cli_fake.h) that
// check every invocation's argv: the atomic clone, the strict state checks, list and show
// parsing, guest commands, a CLI that prints garbage or hangs, and the VM policy mapped to each
// CLI's commands and flags, with each rule a CLI cannot enforce refused by name.
#include <signal.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "engine/vm_enforcement.h"
#include "log/status.h"
#include "node/agent.h"
#include "node/anka_driver.h"
#include "node/cli_fake.h"
#include "node/driver.h"
#include "node/tart_driver.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

using fake::FakeCli;

constexpr char kNotFound[] =
    R"({"status":"ERROR","message":"VM not found","code":3,"exception_type":"VMNotFound"})";

std::string Ok(const std::string& body) {
  return "some progress text\n{\"status\":\"OK\",\"body\":" + body + ",\"message\":\"\"}\n";
}
std::string AnkaShow(const std::string& name, const std::string& status) {
  return Ok(R"({"uuid":"u-)" + name + R"(","name":")" + name + R"(","status":")" + status +
            R"(","cpu_cores":2,"ram_size":"4G","ip":"192.168.64.9"})");
}

// Every expectation consumed and nothing unexpected: the driver ran exactly the script.
void CheckAllConsumed(const FakeCli& cli) {
  CHECK(cli.Unexpected() == "");
  CHECK(cli.Pending() == std::vector<std::string>{});
}

engine::PolicyRefusal Refusal(const std::string& rule) {
  engine::PolicyRefusal refusal;
  refusal.rule = engine::kRuntimeRulePrefix + rule;
  refusal.feature = rule;
  return refusal;
}

struct AnkaFixture {
  testing::TempDir dir;
  FakeCli cli{dir.path(), "anka"};
  AnkaDriver driver{AnkaDriverOptions{"anka", cli.bin(), 5000, 5000}};

  CloneSpec Spec() const {
    CloneSpec spec;
    spec.name = "cloister-1";
    spec.template_id = "tmpl";
    spec.tag = "v1";
    return spec;
  }
};

TEST_CASE("anka: clone makes a scratch VM, shapes it, then renames it") {
  AnkaFixture f;
  CloneSpec spec = f.Spec();
  spec.cpu_cores = 4;
  spec.ram_mb = 4096;
  spec.copy = true;
  f.cli.Expect({"-j", "show", "cloister-1"}, 1, std::string(kNotFound) + "\n");
  f.cli.Expect({"-j", "show", "cloister-1.cloister-clone"}, 1, kNotFound);
  f.cli.Expect({"-j", "clone", "--copy", "--tag", "v1", "tmpl", "cloister-1.cloister-clone"}, 0,
               Ok("{}"));
  f.cli.Expect({"-j", "modify", "cloister-1.cloister-clone", "cpu", "4"}, 0, Ok("null"));
  f.cli.Expect({"-j", "modify", "cloister-1.cloister-clone", "ram", "4096M"}, 0, Ok("null"));
  f.cli.Expect({"-j", "modify", "cloister-1.cloister-clone", "name", "cloister-1"}, 0,
               Ok("null"));
  Status cloned = f.driver.Clone(spec);
  CHECK(cloned.message() == "");
  CHECK(cloned.ok());
  CheckAllConsumed(f.cli);
}

TEST_CASE("anka: a taken name is kInvalidArgument and nothing is cloned") {
  AnkaFixture f;
  f.cli.Expect({"-j", "show", "cloister-1"}, 0, AnkaShow("cloister-1", "stopped"));
  Status taken = f.driver.Clone(f.Spec());
  CHECK(taken.code() == StatusCode::kInvalidArgument);
  CHECK(taken.message() == "clone cloister-1: a VM of that name already exists");
  CheckAllConsumed(f.cli);
}

TEST_CASE("anka: an unknown template is kNotFound; a stale scratch VM is removed first") {
  AnkaFixture f;
  f.cli.Expect({"-j", "show", "cloister-1"}, 1, kNotFound);
  f.cli.Expect({"-j", "show", "cloister-1.cloister-clone"}, 0,
               AnkaShow("cloister-1.cloister-clone", "stopped"));
  f.cli.Expect({"-j", "delete", "--yes", "cloister-1.cloister-clone"}, 0, Ok("null"));
  f.cli.Expect({"-j", "clone", "--tag", "v1", "tmpl", "cloister-1.cloister-clone"}, 1,
               R"({"status":"ERROR","message":"tmpl: no such VM","code":3})");
  Status missing = f.driver.Clone(f.Spec());
  CHECK(missing.code() == StatusCode::kNotFound);
  CHECK(missing.message() == "clone cloister-1: no template tmpl tag v1: tmpl: no such VM");
  CheckAllConsumed(f.cli);
}

TEST_CASE("anka: a failed rename deletes the scratch VM: the name never appears half-made") {
  AnkaFixture f;
  f.cli.Expect({"-j", "show", "cloister-1"}, 1, kNotFound);
  f.cli.Expect({"-j", "show", "cloister-1.cloister-clone"}, 1, kNotFound);
  f.cli.Expect({"-j", "clone", "--tag", "v1", "tmpl", "cloister-1.cloister-clone"}, 0, Ok("{}"));
  f.cli.Expect({"-j", "modify", "cloister-1.cloister-clone", "name", "cloister-1"}, 1,
               R"({"status":"ERROR","message":"name already exists","code":18})");
  f.cli.Expect({"-j", "delete", "--yes", "cloister-1.cloister-clone"}, 0, Ok("null"));
  Status raced = f.driver.Clone(f.Spec());
  CHECK(raced.code() == StatusCode::kInvalidArgument);
  CHECK(raced.message() == "clone cloister-1: name already exists");
  CheckAllConsumed(f.cli);
}

TEST_CASE("anka: start, stop, suspend and delete check the state first and are strict") {
  AnkaFixture f;
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "stopped"));
  f.cli.Expect({"-j", "start", "vm"}, 0, Ok("{}"));
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "running"));  // Start again: refused.
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "running"));
  f.cli.Expect({"-j", "suspend", "vm"}, 0, Ok("{}"));
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "suspended"));  // Suspend again.
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "suspended"));
  f.cli.Expect({"-j", "stop", "vm"}, 0, Ok("{}"));
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "stopped"));  // Stop again.
  f.cli.Expect({"-j", "delete", "--yes", "vm"}, 0, Ok("null"));
  f.cli.Expect({"-j", "delete", "--yes", "vm"}, 1, kNotFound);
  CHECK(f.driver.Start("vm").ok());
  Status twice = f.driver.Start("vm");
  CHECK(twice.code() == StatusCode::kInvalidArgument);
  CHECK(twice.message() == "start vm: VM is already running");
  CHECK(f.driver.Suspend("vm").ok());
  CHECK(f.driver.Suspend("vm").code() == StatusCode::kInvalidArgument);
  CHECK(f.driver.Stop("vm").ok());
  CHECK(f.driver.Stop("vm").code() == StatusCode::kInvalidArgument);
  CHECK(f.driver.Delete("vm").ok());
  Status gone = f.driver.Delete("vm");
  CHECK(gone.code() == StatusCode::kNotFound);
  CHECK(gone.message() == "delete vm: VM not found");
  CheckAllConsumed(f.cli);
}

TEST_CASE("anka: list and show parse running, stopped and suspended VMs") {
  AnkaFixture f;
  f.cli.Expect({"-j", "list"}, 0,
               Ok(R"([{"name":"b","uuid":"u2","status":"suspended"},)"
                  R"({"name":"a","uuid":"u1","status":"running","version":1},)"
                  R"({"name":"c","uuid":"u3","status":"stopped"}])"));
  f.cli.Expect({"-j", "show", "a"}, 0, AnkaShow("a", "running"));
  f.cli.Expect({"-j", "describe", "a"}, 0,
               Ok(R"({"name":"a","network_cards":[{"index":0,"mode":"shared",)"
                  R"("port_forwarding_rules":[{"guest_port":22,"host_port":10022,)"
                  R"("host_ip":"0.0.0.0","protocol":"tcp","rule_name":"ssh"}]}],)"
                  R"("display":{"frame_buffer":{"vnc_port":5901,"password":"p"}}})"));
  f.cli.Expect({"-j", "show", "nope"}, 1, kNotFound);
  Result<std::vector<VmSummary>> vms = f.driver.List();
  REQUIRE(vms.ok());
  CHECK(*vms == std::vector<VmSummary>{{"a", "u1", VmStatus::kRunning},
                                       {"b", "u2", VmStatus::kSuspended},
                                       {"c", "u3", VmStatus::kStopped}});
  Result<VmInfo> a = f.driver.Show("a");
  REQUIRE(a.ok());
  CHECK(a->uuid == "u-a");
  CHECK(a->status == VmStatus::kRunning);
  CHECK(a->cpu_cores == 2);
  CHECK(a->ram_mb == 4096);
  CHECK(a->ip == "192.168.64.9");
  CHECK(a->vnc_port == 5901);
  CHECK(a->port_forwards == std::vector<PortForward>{{"ssh", "tcp", 22, 10022}});
  CHECK(f.driver.Show("nope").status().code() == StatusCode::kNotFound);
  CheckAllConsumed(f.cli);
}

TEST_CASE("anka: run returns the script's exit code and output; a stopped VM is refused") {
  AnkaFixture f;
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "running"));
  f.cli.Expect({"run", "vm", "/bin/sh", "-c", "echo hi; exit 3"}, 3, "hi\n", "warn\n");
  f.cli.Expect({"-j", "show", "vm"}, 0, AnkaShow("vm", "stopped"));
  Result<GuestResult> ran = f.driver.Run("vm", "echo hi; exit 3");
  REQUIRE(ran.ok());
  CHECK(ran->exit_code == 3);
  CHECK(ran->output == "hi\nwarn\n");
  // `anka run` would start a stopped VM: the driver refuses before it gets the chance.
  CHECK(f.driver.Run("vm", "true").status().code() == StatusCode::kInvalidArgument);
  CheckAllConsumed(f.cli);
}

TEST_CASE("anka: garbage output and a hang are kIoError in the CLI's own words") {
  testing::TempDir dir;
  FakeCli cli(dir.path(), "anka");
  AnkaDriver driver(AnkaDriverOptions{cli.program_path(), "", 500, 500});
  cli.Expect({"-j", "list"}, 2, "", "anka: license expired\n");
  cli.Expect({"-j", "show", "vm"}, 0, "<html>not json</html>\n");
  cli.Expect({"-j", "show", "vm"}, 0, Ok("{}"), "", 10);
  Status expired = driver.List().status();
  CHECK(expired.code() == StatusCode::kIoError);
  CHECK(expired.message() == "list: anka exited 2 without a machine-readable reply: anka: "
                             "license expired");
  Status garbage = driver.Show("vm").status();
  CHECK(garbage.code() == StatusCode::kIoError);
  CHECK(garbage.message() == "show vm: anka exited 0 without a machine-readable reply: "
                             "<html>not json</html>");
  Status hung = driver.Show("vm").status();
  CHECK(hung.code() == StatusCode::kIoError);
  CHECK(hung.message() == "show vm: " + cli.program_path() + " -j show vm: timed out after "
                          "500 ms");
  CheckAllConsumed(cli);
}

TEST_CASE("anka: the policy becomes modify commands: allowed forwards, folders, network") {
  CloneSpec spec;
  spec.name = "vm";
  spec.port_forwards = {{"ssh", "tcp", 22, 10022}, {"web", "tcp", 80, 8080}, {"", "tcp", 5000, 0}};
  spec.enforcement.refusals.push_back(Refusal("net.fwd.8080.0.0.0.0.80"));
  spec.enforcement.shared_folders = {"/Users/ci/cache"};
  spec.enforcement.network.local = false;
  Result<std::vector<std::vector<std::string>>> args = AnkaModifyArgs("s", spec);
  REQUIRE(args.ok());
  CHECK(*args == std::vector<std::vector<std::string>>{
                     {"modify", "s", "network", "--no-local"},
                     {"modify", "s", "add", "port", "--guest-port", "22", "--host-port", "10022",
                      "ssh"},
                     {"modify", "s", "add", "port", "--guest-port", "5000", "fwd-5000"},
                     {"modify", "s", "mount", "/Users/ci/cache"}});
  spec.enforcement.network.interface = false;  // No NIC: no forward either.
  args = AnkaModifyArgs("s", spec);
  REQUIRE(args.ok());
  CHECK(*args == std::vector<std::vector<std::string>>{
                     {"modify", "s", "network", "--mode", "disconnected"},
                     {"modify", "s", "mount", "/Users/ci/cache"}});
}

TEST_CASE("anka: each rule it cannot enforce is refused by name, before any command runs") {
  AnkaFixture f;  // No expectation: any invocation fails the test.
  const auto refused = [&](const std::function<void(CloneSpec&)>& deny) {
    CloneSpec spec = f.Spec();
    deny(spec);
    Status status = f.driver.Clone(spec);
    CHECK(status.code() == StatusCode::kUnsupported);
    return status.message();
  };
  CHECK(refused([](CloneSpec& s) { s.enforcement.network.udp = false; }) ==
        "clone cloister-1: anka cannot enforce com.veertu.ankahv.net.udp=deny (no per-VM UDP "
        "filter)");
  CHECK(refused([](CloneSpec& s) { s.enforcement.network.tcp = false; }).find(
            "anka cannot enforce com.veertu.ankahv.net.tcp=deny") != std::string::npos);
  CHECK(refused([](CloneSpec& s) {
          s.enforcement.network.other_exceptions = {{"1", false}};
        }).find("anka cannot enforce com.veertu.ankahv.net.other.1=deny") != std::string::npos);
  CHECK(refused([](CloneSpec& s) { s.enforcement.network.ip_default = false; }).find(
            "anka cannot enforce com.veertu.ankahv.net.ip=deny") != std::string::npos);
  CHECK(refused([](CloneSpec& s) {
          s.enforcement.network.ip_exceptions = {{"10.1", false}};
        }).find("anka cannot enforce com.veertu.ankahv.net.ip.10.1=deny") != std::string::npos);
  CHECK(refused([](CloneSpec& s) { s.enforcement.clipboard = false; }).find(
            "anka cannot enforce com.veertu.ankahv.view.pb=deny") != std::string::npos);
  CHECK(refused([](CloneSpec& s) { s.port_forwards = {{"dns", "udp", 53, 5353}}; }) ==
        "clone cloister-1: anka cannot forward udp port 53 (its port forwarding rules are TCP)");
  CloneSpec no_start = f.Spec();
  no_start.enforcement.start = false;
  CHECK(f.driver.Clone(no_start).code() == StatusCode::kInvalidArgument);
  CheckAllConsumed(f.cli);
}

// ---- tart ----

struct TartFixture {
  testing::TempDir dir;
  FakeCli cli{dir.path(), "tart"};
  std::unique_ptr<TartDriver> driver;

  TartFixture() {
    TartDriverOptions options;
    options.path = cli.bin();
    options.state_dir = dir.Sub("state");
    options.timeout_ms = 5000;
    options.start_timeout_ms = 5000;
    options.poll_ms = 50;
    Result<std::unique_ptr<TartDriver>> opened = TartDriver::Open(options);
    REQUIRE(opened.ok());
    driver = std::move(*opened);
  }
  ~TartFixture() {
    // A fake `tart run` still sleeping: its own process group.
    std::ifstream pid_file(dir.Sub("state") + "/vm.pid");
    long pid = 0;
    if (pid_file >> pid && pid > 0) {
      kill(-static_cast<pid_t>(pid), SIGKILL);
    }
  }
  CloneSpec Spec() const {
    CloneSpec spec;
    spec.name = "vm";
    spec.template_id = "macos";
    spec.tag = "v1";
    return spec;
  }
};

std::string TartGet(const std::string& state) {
  return R"({"CPU":4,"Memory":8192,"Disk":50,"Display":"1024x768","Running":)" +
         std::string(state == "running" ? "true" : "false") + R"(,"State":")" + state + "\"}\n";
}

TEST_CASE("tart: clone makes a scratch VM, sets it, records its run flags, then renames it") {
  TartFixture f;
  CloneSpec spec = f.Spec();
  spec.cpu_cores = 2;
  spec.ram_mb = 2048;
  spec.enforcement.clipboard = false;
  f.cli.Expect({"list", "--source", "local", "--format", "json"}, 0,
               R"([{"Source":"local","Name":"other","Disk":50,"Size":20,"Running":false,)"
               R"("State":"stopped"}])");
  f.cli.Expect({"clone", "macos:v1", "vm.cloister-clone"}, 0, "");
  f.cli.Expect({"set", "vm.cloister-clone", "--cpu", "2", "--memory", "2048"}, 0, "");
  f.cli.Expect({"rename", "vm.cloister-clone", "vm"}, 0, "");
  REQUIRE(f.driver->Clone(spec).ok());
  CheckAllConsumed(f.cli);
  std::ifstream state(f.dir.Sub("state") + "/vm.json");
  std::string text((std::istreambuf_iterator<char>(state)), std::istreambuf_iterator<char>());
  CHECK(text == R"({"run_flags":["--no-graphics","--no-clipboard","--suspendable"],)"
                R"("tag":"v1","template_id":"macos"})" "\n");
}

TEST_CASE("tart: a taken name, an unknown template, a failed rename") {
  TartFixture f;
  const std::string list_with_vm =
      R"([{"Source":"local","Name":"vm","Running":false,"State":"stopped"}])";
  f.cli.Expect({"list", "--source", "local", "--format", "json"}, 0, list_with_vm);
  Status taken = f.driver->Clone(f.Spec());
  CHECK(taken.code() == StatusCode::kInvalidArgument);
  CHECK(taken.message() == "clone vm: a VM of that name already exists");

  f.cli.Expect({"list", "--source", "local", "--format", "json"}, 0, "[]");
  f.cli.Expect({"clone", "macos:v1", "vm.cloister-clone"}, 1, "",
               "Error: the specified VM \"macos:v1\" does not exist\n");
  Status missing = f.driver->Clone(f.Spec());
  CHECK(missing.code() == StatusCode::kNotFound);
  CHECK(missing.message() == "clone vm: no template macos:v1: Error: the specified VM "
                             "\"macos:v1\" does not exist");

  f.cli.Expect({"list", "--source", "local", "--format", "json"}, 0, "[]");
  f.cli.Expect({"clone", "macos:v1", "vm.cloister-clone"}, 0, "");
  f.cli.Expect({"rename", "vm.cloister-clone", "vm"}, 1, "",
               "Error: failed to rename VM vm.cloister-clone, target VM vm already exists\n");
  f.cli.Expect({"delete", "vm.cloister-clone"}, 0, "");
  Status raced = f.driver->Clone(f.Spec());
  CHECK(raced.code() == StatusCode::kIoError);
  CHECK(raced.message().find("target VM vm already exists") != std::string::npos);
  std::ifstream state(f.dir.Sub("state") + "/vm.json");
  CHECK(!state);  // No run flags left for a VM that was not made.
  CheckAllConsumed(f.cli);
}

TEST_CASE("tart: start runs the VM detached and waits until tart reports it running") {
  TartFixture f;
  f.cli.Expect({"list", "--source", "local", "--format", "json"}, 0, "[]");
  f.cli.Expect({"clone", "macos:v1", "vm.cloister-clone"}, 0, "");
  f.cli.Expect({"rename", "vm.cloister-clone", "vm"}, 0, "");
  CloneSpec spec = f.Spec();
  spec.enforcement.network.local = false;
  spec.enforcement.network.ip_exceptions = {{"10", true}, {"192.168.1.7", true}};
  REQUIRE(f.driver->Clone(spec).ok());
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("stopped"));
  f.cli.ExpectBackground({"run", "vm", "--no-graphics", "--net-softnet", "--net-softnet-allow",
                          "10.0.0.0/8,192.168.1.7/32", "--suspendable"},
                         0, "", 30);
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("running"));
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("running"));  // Start again.
  Status started = f.driver->Start("vm");
  CHECK(started.message() == "");
  CHECK(f.driver->Start("vm").code() == StatusCode::kInvalidArgument);
  CHECK(testing::WaitFor(3000, [&] { return f.cli.Pending().empty(); }));
  CheckAllConsumed(f.cli);
}

TEST_CASE("tart: a run process that dies at once fails the start with its log") {
  TartFixture f;
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("stopped"));
  f.cli.ExpectBackground({"run", "vm", "--no-graphics"}, 1, "Error: VM is locked\n", 0);
  for (int i = 0; i < 3; ++i) {
    f.cli.ExpectBackground({"get", "vm", "--format", "json"}, 0, TartGet("stopped"), 0);
  }
  Status started = f.driver->Start("vm");
  CHECK(started.code() == StatusCode::kIoError);
  CHECK(started.message() == "start vm: tart run exited: Error: VM is locked");
  CHECK(f.cli.Unexpected() == "");
}

TEST_CASE("tart: stop, suspend, delete, list and show") {
  TartFixture f;
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("running"));
  f.cli.Expect({"suspend", "vm"}, 0, "");
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("suspended"));
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("stopped"));  // Stop: refused.
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("running"));
  f.cli.Expect({"stop", "vm"}, 0, "");
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("stopped"));
  f.cli.Expect({"list", "--source", "local", "--format", "json"}, 0,
               R"([{"Name":"z","Running":true,"State":"running"},)"
               R"({"Name":"a","Running":false,"State":"suspended"}])");
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("running"));
  f.cli.Expect({"ip", "vm"}, 0, "192.168.64.3\n");
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("stopped"));
  f.cli.Expect({"delete", "vm"}, 0, "");
  f.cli.Expect({"get", "gone", "--format", "json"}, 1, "",
               "Error: the specified VM \"gone\" does not exist\n");
  CHECK(f.driver->Suspend("vm").ok());
  CHECK(f.driver->Stop("vm").code() == StatusCode::kInvalidArgument);
  CHECK(f.driver->Stop("vm").ok());
  Result<std::vector<VmSummary>> vms = f.driver->List();
  REQUIRE(vms.ok());
  CHECK(*vms == std::vector<VmSummary>{{"a", "a", VmStatus::kSuspended},
                                       {"z", "z", VmStatus::kRunning}});
  Result<VmInfo> info = f.driver->Show("vm");
  REQUIRE(info.ok());
  CHECK(info->status == VmStatus::kRunning);
  CHECK(info->cpu_cores == 4);
  CHECK(info->ram_mb == 8192);
  CHECK(info->ip == "192.168.64.3");
  CHECK(f.driver->Delete("vm").ok());
  CHECK(f.driver->Show("gone").status().code() == StatusCode::kNotFound);
  CheckAllConsumed(f.cli);
}

TEST_CASE("tart: run uses tart exec and returns the script's exit code and output") {
  TartFixture f;
  f.cli.Expect({"get", "vm", "--format", "json"}, 0, TartGet("running"));
  f.cli.Expect({"exec", "vm", "/bin/sh", "-c", "exit 4"}, 4, "out\n", "err\n");
  Result<GuestResult> ran = f.driver->Run("vm", "exit 4");
  REQUIRE(ran.ok());
  CHECK(ran->exit_code == 4);
  CHECK(ran->output == "out\nerr\n");
  CheckAllConsumed(f.cli);
}

TEST_CASE("tart: the policy becomes run flags; what tart cannot enforce is refused by name") {
  CloneSpec spec;
  spec.name = "vm";
  spec.enforcement.shared_folders = {"/Users/ci/src", "/opt/cache"};
  Result<std::vector<std::string>> flags = TartRunFlags(spec, true);
  REQUIRE(flags.ok());
  // Shared folders: no --suspendable (tart cannot suspend a VM that shares folders).
  CHECK(*flags == std::vector<std::string>{"--no-graphics", "--dir", "src-0:/Users/ci/src",
                                           "--dir", "cache-1:/opt/cache"});
  spec.enforcement.shared_folders = {"/a:b"};
  CHECK(TartRunFlags(spec, true).status().code() == StatusCode::kInvalidArgument);

  TartFixture f;  // No expectation: a refused clone runs nothing.
  const auto refused = [&](const std::function<void(CloneSpec&)>& deny) {
    CloneSpec s = f.Spec();
    deny(s);
    Status status = f.driver->Clone(s);
    CHECK(status.code() == StatusCode::kUnsupported);
    return status.message();
  };
  CHECK(refused([](CloneSpec& s) { s.enforcement.network.interface = false; }) ==
        "clone vm: tart cannot enforce com.veertu.ankahv.net=deny (tart run has no way to start "
        "a VM without its NIC)");
  CHECK(refused([](CloneSpec& s) { s.enforcement.network.udp = false; }) ==
        "clone vm: tart cannot enforce com.veertu.ankahv.net.udp=deny (no per-VM UDP filter)");
  CHECK(refused([](CloneSpec& s) {
          s.enforcement.network.local = false;
          s.enforcement.network.ip_default = false;  // Softnet lets the internet through.
        }).find("tart cannot enforce com.veertu.ankahv.net.ip=deny") != std::string::npos);
  CHECK(refused([](CloneSpec& s) { s.enforcement.extra_disks = {"d1"}; }) ==
        "clone vm: tart cannot attach drive d1");
  CHECK(refused([](CloneSpec& s) { s.enforcement.usb_modules = {"host"}; }) ==
        "clone vm: tart cannot load USB module host");
  CHECK(refused([](CloneSpec& s) { s.port_forwards = {{"ssh", "tcp", 22, 2222}}; }) ==
        "clone vm: tart cannot forward host port 2222 to guest port 22 (no port forwarding)");
  // A denied forward is simply not made, so it needs no support.
  CloneSpec denied = f.Spec();
  denied.port_forwards = {{"ssh", "tcp", 22, 2222}};
  denied.enforcement.refusals.push_back(Refusal("net.fwd.2222.0.0.0.0.22"));
  CHECK(TartRunFlags(denied, false).ok());
  CheckAllConsumed(f.cli);
}

TEST_CASE("the agent opens the driver node.json names; an unknown name is refused") {
  testing::TempDir dir;
  AgentConfig config;
  for (const char* name : {"sim", "anka", "tart"}) {
    config.driver = name;
    Result<std::unique_ptr<Driver>> driver = OpenDriver(dir.path(), config);
    REQUIRE(driver.ok());
    CHECK(std::string((*driver)->name()) == name);
  }
  config.driver = "hyperv";
  Result<std::unique_ptr<Driver>> unknown = OpenDriver(dir.path(), config);
  CHECK(unknown.status().code() == StatusCode::kInvalidArgument);
  CHECK(unknown.status().message() == "unknown driver \"hyperv\" (sim, qemu, anka, tart)");
  // A configured CLI path is used as given: a missing one fails each call, in the CLI's words.
  config.driver = "anka";
  config.driver_program = dir.Sub("no-anka");
  Result<std::unique_ptr<Driver>> anka = OpenDriver(dir.path(), config);
  REQUIRE(anka.ok());
  CHECK((*anka)->List().status().message() ==
        "list: " + dir.Sub("no-anka") + " -j list: " + dir.Sub("no-anka") +
            " is not an executable file");
}

}  // namespace
}  // namespace cloister::node
