// AgentStore: round trips of records and reports, atomic writes, durability across reopen,
// acknowledgement, and the busy second opener.
#include "node/agent_store.h"

#include <string>

#include <catch2/catch.hpp>

#include "log/status.h"
#include "node/driver.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

std::unique_ptr<AgentStore> OpenStore(const std::string& dir) {
  Result<std::unique_ptr<AgentStore>> store = AgentStore::Open(dir);
  REQUIRE(store.ok());
  return std::move(store).value();
}

VmInfo SomeVm() {
  VmInfo vm;
  vm.uuid = "5d5b5a8e-0000-8000-8000-000000000001";
  vm.name = "cloister-i1";
  vm.status = VmStatus::kRunning;
  vm.template_id = "tmpl";
  vm.tag = "v2";
  vm.cpu_cores = 4;
  vm.ram_mb = 8192;
  vm.ip = "10.1.2.3";
  vm.vnc_port = 5901;
  vm.port_forwards.push_back(PortForward{"ssh", "tcp", 22, 10022});
  vm.port_forwards.push_back(PortForward{"web", "tcp", 80, 10080});
  return vm;
}

// A record with every field away from its default.
InstanceRecord FullRecord(const std::string& id) {
  InstanceRecord r;
  r.instance_id = id;
  r.vm_name = "cloister-" + id;
  r.spec = InstanceSpec{"tmpl", "v2", 4, 8192, "echo hello"};
  r.desired = DesiredState::kSuspended;
  r.cursor = 17;
  r.settled_cursor = 16;
  r.restart_pending = true;
  r.vm_created = true;
  r.script_started = true;
  r.intent = Step::kRunScript;
  r.state = InstanceState::kStopping;
  r.message = "a message";
  r.vm = SomeVm();
  r.last_report_seq = 3;
  r.script_result = ScriptResult{-2, "out\nerr"};
  return r;
}

Report SomeReport(uint64_t seq, const std::string& id, InstanceState state) {
  Report report;
  report.seq = seq;
  report.instance_id = id;
  report.state = state;
  report.cursor = seq * 10;
  if (state == InstanceState::kStarted) {
    report.vm = SomeVm();
    report.script_result = ScriptResult{0, "ok"};
  }
  if (state == InstanceState::kError) {
    report.message = "clone cloister-" + id + ": template is corrupt";
  }
  return report;
}

TEST_CASE("a new store is empty") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  CHECK(store->cursor() == 0);
  CHECK(store->last_report_seq() == 0);
  CHECK(store->List()->empty());
  CHECK(store->PendingReports(10)->empty());
  Result<std::optional<InstanceRecord>> none = store->Get("nobody");
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
}

TEST_CASE("records, reports and the cursor round-trip and survive reopen") {
  testing::TempDir dir;
  const InstanceRecord full = FullRecord("i1");
  InstanceRecord minimal;
  minimal.instance_id = "i0";
  {
    auto store = OpenStore(dir.path());
    StoreWrite write;
    write.cursor = 17;
    write.instances = {full, minimal};
    write.reports = {SomeReport(1, "i1", InstanceState::kPulling),
                     SomeReport(2, "i1", InstanceState::kStarted),
                     SomeReport(3, "i0", InstanceState::kError)};
    REQUIRE(store->Write(write).ok());
    CHECK(store->cursor() == 17);
    CHECK(store->last_report_seq() == 3);
  }
  auto store = OpenStore(dir.path());
  CHECK(store->cursor() == 17);
  CHECK(store->last_report_seq() == 3);
  Result<std::optional<InstanceRecord>> got = store->Get("i1");
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK(**got == full);
  Result<std::vector<InstanceRecord>> all = store->List();
  REQUIRE(all.ok());
  REQUIRE(all->size() == 2);
  CHECK((*all)[0] == minimal);  // By instance id.
  CHECK((*all)[1] == full);
  Result<std::vector<Report>> reports = store->PendingReports(10);
  REQUIRE(reports.ok());
  REQUIRE(reports->size() == 3);
  CHECK((*reports)[0] == SomeReport(1, "i1", InstanceState::kPulling));
  CHECK((*reports)[1] == SomeReport(2, "i1", InstanceState::kStarted));
  CHECK((*reports)[2] == SomeReport(3, "i0", InstanceState::kError));
  CHECK(store->PendingReports(2)->size() == 2);
}

TEST_CASE("a write replaces the record of the same id") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  InstanceRecord r = FullRecord("i1");
  REQUIRE(store->Write(StoreWrite{std::nullopt, {r}, {}}).ok());
  r.intent = Step::kNone;
  r.state = InstanceState::kStopped;
  r.vm.reset();
  REQUIRE(store->Write(StoreWrite{std::nullopt, {r}, {}}).ok());
  CHECK(**store->Get("i1") == r);
  CHECK(store->List()->size() == 1);
  CHECK(store->cursor() == 0);  // No cursor in either write.
}

TEST_CASE("acknowledged reports are deleted; seqs are never reused") {
  testing::TempDir dir;
  {
    auto store = OpenStore(dir.path());
    StoreWrite write;
    for (uint64_t seq = 1; seq <= 5; seq++) {
      write.reports.push_back(SomeReport(seq, "i", InstanceState::kStarted));
    }
    REQUIRE(store->Write(write).ok());
    REQUIRE(store->AckReports(3).ok());
    Result<std::vector<Report>> left = store->PendingReports(10);
    REQUIRE(left->size() == 2);
    CHECK((*left)[0].seq == 4);
    REQUIRE(store->AckReports(3).ok());  // Again: harmless.
    REQUIRE(store->AckReports(99).ok());  // Beyond the newest: harmless.
    CHECK(store->PendingReports(10)->empty());
  }
  auto store = OpenStore(dir.path());
  CHECK(store->last_report_seq() == 5);  // Acknowledgement does not rewind the seqs.
  REQUIRE(store->Write(StoreWrite{std::nullopt, {}, {SomeReport(6, "i", InstanceState::kStopped)}})
              .ok());
  CHECK(store->PendingReports(10)->at(0).seq == 6);
}

TEST_CASE("a bad instance id writes nothing") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  InstanceRecord bad;
  bad.instance_id = std::string(kInstanceIdBytesMax + 1, 'x');
  StoreWrite write;
  write.cursor = 5;
  write.instances = {FullRecord("fine"), bad};
  Status status = store->Write(write);
  CHECK(status.code() == StatusCode::kInvalidArgument);
  CHECK(store->cursor() == 0);
  CHECK(store->List()->empty());
  bad.instance_id = "";
  CHECK(store->Write(StoreWrite{std::nullopt, {bad}, {}}).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("a second opener is busy, in this process too; the lock dies with the store") {
  testing::TempDir dir;
  auto store = OpenStore(dir.path());
  Result<std::unique_ptr<AgentStore>> second = AgentStore::Open(dir.path());
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kBusy);
  CHECK(second.status().message().find("already open") != std::string::npos);
  REQUIRE(store->Write(StoreWrite{1, {}, {}}).ok());  // The failed opener disturbed nothing.
  store.reset();
  auto reopened = OpenStore(dir.path());
  CHECK(reopened->cursor() == 1);
}

TEST_CASE("names of the enums") {
  CHECK(std::string(InstanceStateName(InstanceState::kScheduling)) == "Scheduling");
  CHECK(std::string(InstanceStateName(InstanceState::kTerminated)) == "Terminated");
  CHECK(std::string(InstanceStateName(InstanceState::kPushing)) == "Pushing");
  CHECK(std::string(DesiredStateName(DesiredState::kSuspended)) == "suspended");
  CHECK(std::string(StepName(Step::kRunScript)) == "run-script");
}

}  // namespace
}  // namespace cloister::node
