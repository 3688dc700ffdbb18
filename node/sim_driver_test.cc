// SimDriver: the driver.h semantics (strict, no silent no-ops), deterministic identities,
// persistence of VMs and counters across reopen, the busy lock, and fault injection.
#include "node/sim_driver.h"

#include <chrono>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "log/status.h"
#include "node/driver.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::unique_ptr<SimDriver> OpenSim(const std::string& dir, SimOptions options = {}) {
  Result<std::unique_ptr<SimDriver>> sim = SimDriver::Open(dir, std::move(options));
  REQUIRE(sim.ok());
  return std::move(sim).value();
}

CloneSpec Spec(const std::string& name, const std::string& template_id = "tmpl-1") {
  CloneSpec spec;
  spec.name = name;
  spec.template_id = template_id;
  spec.tag = "v1";
  return spec;
}

TEST_CASE("clone, start, stop, suspend, delete follow the strict semantics") {
  testing::TempDir dir;
  auto sim = OpenSim(dir.path());
  REQUIRE(sim->Clone(Spec("vm-a")).ok());

  Result<VmInfo> info = sim->Show("vm-a");
  REQUIRE(info.ok());
  CHECK(info->status == VmStatus::kStopped);
  CHECK(info->cpu_cores == kSimDefaultCpuCores);
  CHECK(info->ram_mb == kSimDefaultRamMb);
  CHECK(info->template_id == "tmpl-1");
  CHECK(info->tag == "v1");
  CHECK(info->ip.empty());  // Only while running.
  CHECK(info->vnc_port == 0);

  Status again = sim->Clone(Spec("vm-a"));
  CHECK(again.code() == StatusCode::kInvalidArgument);
  CHECK(again.message() == "clone vm-a: a VM of that name already exists");

  CHECK(sim->Stop("vm-a").code() == StatusCode::kInvalidArgument);     // Already stopped.
  CHECK(sim->Suspend("vm-a").code() == StatusCode::kInvalidArgument);  // Not running.
  REQUIRE(sim->Start("vm-a").ok());
  Status twice = sim->Start("vm-a");
  CHECK(twice.code() == StatusCode::kInvalidArgument);
  CHECK(twice.message() == "start vm-a: VM is already running");

  info = sim->Show("vm-a");
  REQUIRE(info.ok());
  CHECK(info->status == VmStatus::kRunning);
  CHECK_FALSE(info->ip.empty());
  CHECK(info->vnc_port >= 5900);

  REQUIRE(sim->Suspend("vm-a").ok());
  CHECK(sim->Show("vm-a")->status == VmStatus::kSuspended);
  REQUIRE(sim->Start("vm-a").ok());  // Resumes.
  REQUIRE(sim->Suspend("vm-a").ok());
  REQUIRE(sim->Stop("vm-a").ok());  // Stop works on a suspended VM.
  CHECK(sim->Show("vm-a")->status == VmStatus::kStopped);

  REQUIRE(sim->Start("vm-a").ok());
  REQUIRE(sim->Delete("vm-a").ok());  // In any state.
  CHECK(sim->Show("vm-a").status().code() == StatusCode::kNotFound);
  CHECK(sim->Delete("vm-a").code() == StatusCode::kNotFound);
  CHECK(sim->Start("nothing").code() == StatusCode::kNotFound);
}

TEST_CASE("clone validates the name and the template and honours cpu and ram") {
  testing::TempDir dir;
  auto sim = OpenSim(dir.path());
  CHECK(sim->Clone(Spec("")).code() == StatusCode::kInvalidArgument);
  CHECK(sim->Clone(Spec("has space")).code() == StatusCode::kInvalidArgument);
  CHECK(sim->Clone(Spec(std::string(kSimNameBytesMax + 1, 'x'))).code() ==
        StatusCode::kInvalidArgument);
  CHECK(sim->Clone(Spec("ok", "")).code() == StatusCode::kInvalidArgument);
  CloneSpec spec = Spec("sized");
  spec.cpu_cores = 8;
  spec.ram_mb = 16384;
  REQUIRE(sim->Clone(spec).ok());
  CHECK(sim->Show("sized")->cpu_cores == 8);
  CHECK(sim->Show("sized")->ram_mb == 16384);
}

TEST_CASE("identities are derived from the name only") {
  testing::TempDir dir1;
  testing::TempDir dir2;
  auto sim1 = OpenSim(dir1.path());
  auto sim2 = OpenSim(dir2.path());
  for (auto* sim : {sim1.get(), sim2.get()}) {
    REQUIRE(sim->Clone(Spec("same")).ok());
    REQUIRE(sim->Clone(Spec("other")).ok());
    REQUIRE(sim->Start("same").ok());
    REQUIRE(sim->Start("other").ok());
  }
  CHECK(*sim1->Show("same") == *sim2->Show("same"));
  CHECK(sim1->Show("same")->uuid != sim1->Show("other")->uuid);
  CHECK(sim1->Show("same")->ip != sim1->Show("other")->ip);
  const std::string uuid = sim1->Show("same")->uuid;
  REQUIRE(uuid.size() == 36);
  CHECK(uuid[14] == '8');  // Version 8.
  CHECK(uuid[8] == '-');

  Result<std::vector<VmSummary>> list = sim1->List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].name == "other");  // Sorted by name.
  CHECK((*list)[1] == VmSummary{"same", uuid, VmStatus::kRunning});
}

TEST_CASE("run needs a running VM and returns the script's exit code") {
  testing::TempDir dir;
  auto sim = OpenSim(dir.path());
  REQUIRE(sim->Clone(Spec("vm")).ok());
  CHECK(sim->Run("vm", "true").status().code() == StatusCode::kInvalidArgument);
  REQUIRE(sim->Start("vm").ok());
  Result<GuestResult> ok = sim->Run("vm", "echo hi");
  REQUIRE(ok.ok());
  CHECK(ok->exit_code == 0);
  CHECK(ok->output == "sim: echo hi\n");
  Result<GuestResult> failed = sim->Run("vm", "exit 3");
  REQUIRE(failed.ok());
  CHECK(failed->exit_code == 3);
  CHECK(sim->Calls(SimOp::kRun, "vm") == 3);
}

TEST_CASE("VMs and counters persist across reopen; reads are counted per process") {
  testing::TempDir dir;
  {
    auto sim = OpenSim(dir.path());
    CloneSpec spec = Spec("keep");
    spec.tag = "tag with spaces %";  // Escaped in the state file.
    REQUIRE(sim->Clone(spec).ok());
    REQUIRE(sim->Start("keep").ok());
    REQUIRE(sim->Clone(Spec("gone")).ok());
    REQUIRE(sim->Delete("gone").ok());
    CHECK(sim->Start("keep").code() == StatusCode::kInvalidArgument);  // Counted too.
    REQUIRE(sim->Show("keep").ok());
    CHECK(sim->Calls(SimOp::kShow) == 1);
  }
  auto sim = OpenSim(dir.path());
  Result<VmInfo> keep = sim->Show("keep");
  REQUIRE(keep.ok());
  CHECK(keep->status == VmStatus::kRunning);
  CHECK(keep->tag == "tag with spaces %");
  CHECK(sim->Show("gone").status().code() == StatusCode::kNotFound);
  CHECK(sim->Calls(SimOp::kClone) == 2);
  CHECK(sim->Calls(SimOp::kStart) == 2);
  CHECK(sim->Calls(SimOp::kDelete) == 1);
  CHECK(sim->Calls(SimOp::kStart, "keep") == 2);
  CHECK(sim->Calls(SimOp::kClone, "gone") == 1);  // A deleted VM keeps its counts.
  CHECK(sim->Calls(SimOp::kDelete, "gone") == 1);
  CHECK(sim->Calls(SimOp::kShow) == 2);  // This process's two shows only.
}

TEST_CASE("a second opener of the same directory is busy") {
  testing::TempDir dir;
  auto sim = OpenSim(dir.path());
  Result<std::unique_ptr<SimDriver>> second = SimDriver::Open(dir.path());
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kBusy);
  sim.reset();
  CHECK(SimDriver::Open(dir.path()).ok());
}

TEST_CASE("a damaged state file is corruption, not an empty simulation") {
  testing::TempDir dir;
  {
    auto sim = OpenSim(dir.path());
    REQUIRE(sim->Clone(Spec("vm")).ok());
  }
  std::string text;
  {
    std::ifstream in(SimDriver::StatePath(dir.path()));
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  REQUIRE(text.size() > 4);
  {
    std::ofstream out(SimDriver::StatePath(dir.path()), std::ios::trunc);
    out << text.substr(0, text.size() - 4);  // Drops "end\n".
  }
  Result<std::unique_ptr<SimDriver>> sim = SimDriver::Open(dir.path());
  REQUIRE_FALSE(sim.ok());
  CHECK(sim.status().code() == StatusCode::kCorruption);
}

TEST_CASE("failure injection: the nth call of an op, persisted numbering") {
  testing::TempDir dir;
  SimOptions options;
  options.failures.push_back(SimFailure{SimOp::kStart, 2, "", "", "disk on fire"});
  {
    auto sim = OpenSim(dir.path(), options);
    REQUIRE(sim->Clone(Spec("a")).ok());
    REQUIRE(sim->Clone(Spec("b")).ok());
    REQUIRE(sim->Start("a").ok());
    Status failed = sim->Start("b");
    CHECK(failed.code() == StatusCode::kIoError);
    CHECK(failed.message() == "start b: disk on fire");
    CHECK(sim->Show("b")->status == VmStatus::kStopped);  // No effect.
    CHECK(sim->Calls(SimOp::kStart) == 2);               // But counted.
  }
  auto sim = OpenSim(dir.path(), options);  // Same rule: the 2nd start is in the past.
  CHECK(sim->Start("b").ok());
  CHECK(sim->Calls(SimOp::kStart, "b") == 2);
}

TEST_CASE("failure injection: every clone of a template, a VM, reads, and clearing") {
  testing::TempDir dir;
  auto sim = OpenSim(dir.path());
  sim->AddFailure(SimFailure{SimOp::kClone, 0, "", "bad-template", "template is corrupt"});
  sim->AddFailure(SimFailure{SimOp::kShow, 0, "flaky", "", "timeout"});
  CHECK(sim->Clone(Spec("x", "bad-template")).message() == "clone x: template is corrupt");
  CHECK(sim->Clone(Spec("y", "bad-template")).code() == StatusCode::kIoError);
  REQUIRE(sim->Clone(Spec("flaky", "good")).ok());
  CHECK(sim->Show("x").status().code() == StatusCode::kNotFound);
  CHECK(sim->Show("flaky").status().message() == "show flaky: timeout");
  sim->ClearFailures();
  CHECK(sim->Show("flaky").ok());
  CHECK(sim->Clone(Spec("x", "bad-template")).ok());
}

TEST_CASE("delays sleep before and after the effect") {
  testing::TempDir dir;
  auto sim = OpenSim(dir.path());
  REQUIRE(sim->Clone(Spec("vm")).ok());
  sim->SetDelay(SimOp::kStart, SimDelay{milliseconds(30), milliseconds(20)});
  const auto start = steady_clock::now();
  REQUIRE(sim->Start("vm").ok());
  CHECK(steady_clock::now() - start >= milliseconds(50));
  sim->SetDelay(SimOp::kStart, SimDelay{});
  sim->SetJitter(microseconds(2000), 7);
  REQUIRE(sim->Stop("vm").ok());  // Jitter: at most 2 x 2 ms; just exercised.
  CHECK(sim->Calls(SimOp::kStop) == 1);
}

}  // namespace
}  // namespace cloister::node
