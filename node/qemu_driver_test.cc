// QemuDriver against real QEMU (TCG) and the test guest that scripts/guest/build-image makes
// (built once, cached between runs). Each case boots at most a few guests; timings are
// generous because the machine is shared.
#include "node/qemu_driver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "log/status.h"
#include "node/qemu_test_util.h"
#include "node/qmp.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

TEST_CASE("qemu: clone, start, run, suspend and resume keep guest memory, stop, delete",
          "[qemu]") {
  Fixture f;
  REQUIRE_OK(f.driver->Clone(Spec("vm1")));
  auto info = f.driver->Show("vm1");
  REQUIRE(info.ok());
  CHECK(info->status == VmStatus::kStopped);
  CHECK(info->tag == "v1");
  CHECK(info->cpu_cores == 1);
  CHECK(info->ram_mb == 256);
  CHECK(info->vnc_port == 0);
  CHECK(info->uuid.size() == 36);

  REQUIRE_OK(f.driver->Start("vm1"));
  const int pid = f.driver->QemuPid("vm1");
  CHECK(pid > 0);
  info = f.driver->Show("vm1");
  REQUIRE(info.ok());
  CHECK(info->status == VmStatus::kRunning);
  CHECK(info->vnc_port >= 5900);
  CHECK(info->ip.empty());  // No networking asked for: no NIC.

  GuestResult hello = f.Run("vm1", "echo hi; cat hello.txt");
  CHECK(hello.exit_code == 0);
  CHECK(hello.output == "hi\nhello from the cloister test template\n");
  GuestResult failed = f.Run("vm1", "echo oops >&2; exit 7");
  CHECK(failed.exit_code == 7);
  CHECK(failed.output == "oops\n");
  CHECK(f.Run("vm1", "ls /sys/class/net").output == "lo\n");

  // Guest memory survives a suspend: the marker lives in the initramfs (RAM), not on the disk.
  const std::string marker = "marker-" + std::to_string(getpid());
  CHECK(f.Run("vm1", "echo " + marker + " > /tmp/marker").exit_code == 0);
  REQUIRE_OK(f.driver->Suspend("vm1"));
  CHECK(f.StatusOf("vm1") == VmStatus::kSuspended);
  CHECK(f.driver->QemuPid("vm1") == 0);
  CHECK_FALSE(ProcessExists(pid));
  CHECK(std::filesystem::exists(f.options.vm_dir + "/vm1/vm.state"));
  CHECK(f.driver->Run("vm1", "true").status().code() == StatusCode::kInvalidArgument);
  CHECK(f.driver->Suspend("vm1").code() == StatusCode::kInvalidArgument);

  REQUIRE_OK(f.driver->Start("vm1"));
  CHECK(f.StatusOf("vm1") == VmStatus::kRunning);
  CHECK_FALSE(std::filesystem::exists(f.options.vm_dir + "/vm1/vm.state"));
  CHECK(f.Run("vm1", "cat /tmp/marker").output == marker + "\n");

  const int resumed_pid = f.driver->QemuPid("vm1");
  REQUIRE_OK(f.driver->Stop("vm1"));
  CHECK(f.StatusOf("vm1") == VmStatus::kStopped);
  CHECK_FALSE(ProcessExists(resumed_pid));
  CHECK(f.driver->Stop("vm1").code() == StatusCode::kInvalidArgument);

  REQUIRE_OK(f.driver->Delete("vm1"));
  CHECK(f.driver->Show("vm1").status().code() == StatusCode::kNotFound);
  CHECK(f.driver->Delete("vm1").code() == StatusCode::kNotFound);
  CHECK_FALSE(std::filesystem::exists(f.options.vm_dir + "/vm1"));
}

TEST_CASE("qemu: strict errors change nothing", "[qemu]") {
  Fixture f;
  REQUIRE_OK(f.driver->Clone(Spec("vm1")));
  const std::string config = f.options.vm_dir + "/vm1/config.json";
  const auto before = std::filesystem::last_write_time(config);

  CHECK(f.driver->Clone(Spec("vm1")).code() == StatusCode::kInvalidArgument);
  CloneSpec unknown = Spec("vm2");
  unknown.template_id = "no-such-template";
  CHECK(f.driver->Clone(unknown).code() == StatusCode::kNotFound);
  CloneSpec bad_tag = Spec("vm2");
  bad_tag.tag = "v9";
  CHECK(f.driver->Clone(bad_tag).code() == StatusCode::kNotFound);
  CHECK(f.driver->Clone(Spec("../x")).code() == StatusCode::kInvalidArgument);
  CHECK(f.driver->Clone(Spec(".hidden")).code() == StatusCode::kInvalidArgument);
  CloneSpec bad_forward = Spec("vm2");
  bad_forward.port_forwards = {{"ssh", "sctp", 22, 0}};
  CHECK(f.driver->Clone(bad_forward).code() == StatusCode::kInvalidArgument);

  CHECK(f.driver->Stop("vm1").code() == StatusCode::kInvalidArgument);
  CHECK(f.driver->Suspend("vm1").code() == StatusCode::kInvalidArgument);
  CHECK(f.driver->Run("vm1", "true").status().code() == StatusCode::kInvalidArgument);
  for (const char* missing : {"vm2", "nope"}) {
    CHECK(f.driver->Start(missing).code() == StatusCode::kNotFound);
    CHECK(f.driver->Stop(missing).code() == StatusCode::kNotFound);
    CHECK(f.driver->Suspend(missing).code() == StatusCode::kNotFound);
    CHECK(f.driver->Delete(missing).code() == StatusCode::kNotFound);
    CHECK(f.driver->Show(missing).status().code() == StatusCode::kNotFound);
  }
  auto vms = f.driver->List();
  REQUIRE(vms.ok());
  REQUIRE(vms->size() == 1);
  CHECK((*vms)[0].name == "vm1");
  CHECK(std::filesystem::last_write_time(config) == before);

  // A QEMU that refuses to start: kIoError with its own words, the VM still stopped, and the
  // VNC password nowhere in the message.
  const std::string fake = f.tmp.Sub("fake-qemu");
  WriteScript(fake, "echo 'qemu-system-x86_64: -drive file=x: no such thing' >&2\nexit 1\n");
  f.options.qemu_binary = fake;
  f.Reopen();
  Status refused = f.driver->Start("vm1");
  CHECK(refused.code() == StatusCode::kIoError);
  CHECK(refused.message().find("start vm1: ") == 0);
  CHECK(refused.message().find("no such thing") != std::string::npos);
  std::ifstream in(config);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = text.find("\"vnc_password\": \"");
  REQUIRE(at != std::string::npos);
  const std::string password = text.substr(at + 17, 8);
  CHECK(refused.message().find(password) == std::string::npos);
  CHECK(f.StatusOf("vm1") == VmStatus::kStopped);

  // The copy variant makes an independent disk (no backing file).
  CloneSpec copy = Spec("vm3");
  copy.copy = true;
  REQUIRE_OK(f.driver->Clone(copy));
  CHECK(f.StatusOf("vm3") == VmStatus::kStopped);
  // And a second driver over the same directory is refused while this one is open.
  CHECK(QemuDriver::Open(f.options).status().code() == StatusCode::kBusy);
}

TEST_CASE("qemu: a new driver re-attaches to running VMs; a killed QEMU is stopped", "[qemu]") {
  Fixture f;
  REQUIRE_OK(f.driver->Clone(Spec("vm1")));
  REQUIRE_OK(f.driver->Start("vm1"));
  const int pid = f.driver->QemuPid("vm1");
  REQUIRE(pid > 0);
  CHECK(f.Run("vm1", "echo before > /tmp/m; echo ok").output == "ok\n");

  f.Reopen();  // The agent restarted.
  CHECK(f.StatusOf("vm1") == VmStatus::kRunning);
  CHECK(f.driver->Start("vm1").code() == StatusCode::kInvalidArgument);
  CHECK(f.driver->QemuPid("vm1") == pid);  // Not started twice.
  CHECK(f.Run("vm1", "cat /tmp/m").output == "before\n");
  auto vms = f.driver->List();
  REQUIRE(vms.ok());
  REQUIRE(vms->size() == 1);
  CHECK((*vms)[0].status == VmStatus::kRunning);

  // Paused behind the driver's back (QMP stop): suspended; Start continues the same process.
  {
    auto qmp = QmpClient::Connect(f.options.vm_dir + "/vm1/qmp.sock",
                                  DeadlineIn(std::chrono::seconds(10)));
    REQUIRE(qmp.ok());
    REQUIRE((*qmp)->Execute("stop", nullptr, DeadlineIn(std::chrono::seconds(10))).ok());
  }
  CHECK(f.StatusOf("vm1") == VmStatus::kSuspended);
  CHECK(f.driver->Run("vm1", "true").status().code() == StatusCode::kInvalidArgument);
  REQUIRE_OK(f.driver->Start("vm1"));
  CHECK(f.StatusOf("vm1") == VmStatus::kRunning);
  CHECK(f.driver->QemuPid("vm1") == pid);
  CHECK(f.Run("vm1", "cat /tmp/m").output == "before\n");

  // Suspended, then stopped: the state file goes.
  REQUIRE_OK(f.driver->Suspend("vm1"));
  f.Reopen();
  CHECK(f.StatusOf("vm1") == VmStatus::kSuspended);
  REQUIRE_OK(f.driver->Stop("vm1"));
  CHECK(f.StatusOf("vm1") == VmStatus::kStopped);
  CHECK_FALSE(std::filesystem::exists(f.options.vm_dir + "/vm1/vm.state"));

  // QEMU dies behind the driver's back: the VM shows stopped and can start again.
  REQUIRE_OK(f.driver->Start("vm1"));
  const int second = f.driver->QemuPid("vm1");
  REQUIRE(second > 0);
  REQUIRE(kill(second, SIGKILL) == 0);
  CHECK(testing::WaitFor(10'000, [&] { return f.StatusOf("vm1") == VmStatus::kStopped; }));
  CHECK(f.driver->Stop("vm1").code() == StatusCode::kInvalidArgument);
  REQUIRE_OK(f.driver->Start("vm1"));
  CHECK(f.Run("vm1", "echo again").output == "again\n");
  // Delete in the running state stops QEMU first.
  const int third = f.driver->QemuPid("vm1");
  REQUIRE_OK(f.driver->Delete("vm1"));
  CHECK_FALSE(ProcessExists(third));
  CHECK(f.driver->List()->empty());
}

TEST_CASE("qemu: auto takes kvm only when a probe boot reaches the guest's marker", "[qemu]") {
  Fixture f;
  REQUIRE_OK(f.driver->Clone(Spec("vm1")));
  const int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  const bool have_kvm = kvm >= 0;
  if (kvm >= 0) close(kvm);
  // A "QEMU" whose guest boots (prints the marker on its serial file) and one that refuses KVM.
  WriteScript(f.tmp.Sub("boots"), "echo AGENT-BOOT-OK > serial.log\nexec sleep 60\n");
  WriteScript(f.tmp.Sub("refuses"), "echo 'failed to set MSR' >&2\nexit 1\n");
  for (const char* fake : {"boots", "refuses"}) {
    f.options.accel = QemuAccel::kAuto;
    f.options.qemu_binary = f.tmp.Sub(fake);
    f.Reopen();
    auto accel = f.driver->ResolveAccel("vm1");
    REQUIRE(accel.ok());
    INFO(fake << " /dev/kvm " << have_kvm);
    const bool expect_kvm = have_kvm && std::string(fake) == "boots";
    CHECK(*accel == (expect_kvm ? QemuAccel::kKvm : QemuAccel::kTcg));
    CHECK(std::filesystem::is_empty(f.options.vm_dir + "/.staging"));
  }
  f.options.accel = QemuAccel::kTcg;
  f.Reopen();
  CHECK(*f.driver->ResolveAccel("vm1") == QemuAccel::kTcg);  // An explicit choice: no probe.
}

TEST_CASE("qemu: a port forward reaches a guest service; without it nothing listens", "[qemu]") {
  Fixture f;
  CloneSpec spec = Spec("web");
  spec.port_forwards = {{"http", "tcp", 8080, 0}};
  REQUIRE_OK(f.driver->Clone(spec));
  REQUIRE_OK(f.driver->Start("web"));
  auto info = f.driver->Show("web");
  REQUIRE(info.ok());
  REQUIRE(info->port_forwards.size() == 1);
  const uint16_t port = info->port_forwards[0].host_port;
  CHECK(port != 0);
  CHECK(info->port_forwards[0].guest_port == 8080);
  CHECK(info->ip.empty());  // Forwards alone give a restricted NIC, not networking.
  REQUIRE(f.Run("web", "httpd -p 8080 -h /mnt && echo up").output == "up\n");
  std::string answer;
  CHECK(testing::WaitFor(15'000, [&] {
    answer = HttpGet(port, "/hello.txt");
    return answer.find("hello from the cloister test template") != std::string::npos;
  }));
  INFO(answer);
  CHECK(answer.find("200 OK") != std::string::npos);
  // With networking asked for, Show's IP is the one the guest got by DHCP.
  CloneSpec net = Spec("net");
  net.network = true;
  REQUIRE_OK(f.driver->Clone(net));
  REQUIRE_OK(f.driver->Start("net"));
  auto net_info = f.driver->Show("net");
  REQUIRE(net_info.ok());
  CHECK(net_info->ip == "10.0.2.15");
  CHECK(f.Run("net", "for i in $(seq 100); do ip -4 addr show eth0 | grep -q 'inet " +
                         net_info->ip + "/' && echo has-ip && break; sleep 0.1; done")
            .output == "has-ip\n");
  // The restricted NIC reaches nothing outside (slirp's gateway refuses).
  CHECK(f.Run("web", "nc -w 2 10.0.2.2 " + std::to_string(port) + " </dev/null; echo $?")
            .output.find("0\n") != 0);
}

}  // namespace
}  // namespace cloister::node
