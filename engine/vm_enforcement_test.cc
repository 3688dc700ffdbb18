// The policy at the hypervisor (issue 9): what EnforceVmPolicy lets a driver create for each rule
// family of seed 000, with the rule that decided each refusal; DecideRun's commands; and a
// property check that NetworkEnforcement's address and protocol answers (what a driver turns into
// filters) agree with the policy decision itself on random rule sets.
#include "engine/vm_enforcement.h"

#include <catch2/catch.hpp>

#include <random>

#include "reducers/policy_model.h"

namespace cloister::engine {
namespace {

using reducers::PolicyModel;
using reducers::PolicySubject;

constexpr char kNet[] = "com.veertu.ankahv.";

PolicyModel Model(std::map<std::string, bool> user_rules, std::set<std::string> groups = {},
                  std::map<std::string, bool> group_rules = {}) {
  PolicyModel m;
  m.groups["standard"] = PolicySubject{"standard", {}, {}};
  m.groups["administrators"] = PolicySubject{"administrators", {}, {}};
  m.groups["ci"] = PolicySubject{"ci", {}, std::move(group_rules)};
  m.users["dev"] = PolicySubject{"dev", std::move(groups), std::move(user_rules)};
  return m;
}

std::string R(const std::string& name) { return kNet + name; }

VmFeatures Everything() {
  VmFeatures f;
  f.network = true;
  f.forwards = {{20000, "0.0.0.0", 22, "tcp"}, {5900, "127.0.0.1", 5900, "tcp"}};
  f.shared_folders = {"/Users/dev/workspace1", "/Users/dev/secret"};
  f.extra_disks = {"disk2"};
  f.usb_modules = {"host"};
  f.config_changes = {"cpu"};
  return f;
}

TEST_CASE("no rules: every runtime feature is allowed; configuration needs an administrator") {
  const VmEnforcement e = EnforceVmPolicy(Model({}), "dev", Everything());
  CHECK(e.start);
  CHECK(e.network.interface);
  CHECK_FALSE(e.network.Filtered());
  CHECK(e.forwards.size() == 2);
  CHECK(e.shared_folders.size() == 2);
  CHECK(e.extra_disks == std::vector<std::string>{"disk2"});
  CHECK(e.usb_modules == std::vector<std::string>{"host"});
  CHECK(e.clipboard);
  CHECK(e.keyboard);
  CHECK_FALSE(e.config_allowed);
  REQUIRE(e.refusals.size() == 1);
  CHECK(e.refusals[0].rule == "com.veertu.anka.cfg.cpu");
  CHECK(e.refusals[0].Message() ==
        "the VM policy denies changing cpu (com.veertu.anka.cfg.cpu): deny (default: "
        "configuration changes need an administrator)");

  PolicyModel admin = Model({}, {"administrators"});
  CHECK(EnforceVmPolicy(admin, "dev", Everything()).config_allowed);
  CHECK(EnforceVmPolicy(Model({{"com.veertu.anka.cfg.cpu", true}}), "dev", Everything())
            .config_allowed);
}

TEST_CASE("start=0 refuses the start, first among the refusals, naming the rule and holder") {
  const VmEnforcement e =
      EnforceVmPolicy(Model({}, {"ci"}, {{R("start"), false}}), "dev", VmFeatures{});
  CHECK_FALSE(e.start);
  REQUIRE(!e.refusals.empty());
  CHECK(e.refusals[0].feature == "start");
  CHECK(e.refusals[0].Message() ==
        "the VM policy denies start (com.veertu.ankahv.start): deny: com.veertu.ankahv.start="
        "deny (group ci, distance 1)");
  // The user's own rule beats the group's.
  CHECK(EnforceVmPolicy(Model({{R("start"), true}}, {"ci"}, {{R("start"), false}}), "dev", {})
            .start);
}

TEST_CASE("net=0: no interface, so no forward either") {
  const VmEnforcement e = EnforceVmPolicy(Model({{R("net"), false}}), "dev", Everything());
  CHECK_FALSE(e.network.interface);
  CHECK(e.forwards.empty());
  // The interface and both forwards are refused, each naming net.
  int net_refusals = 0;
  for (const PolicyRefusal& refusal : e.refusals) {
    net_refusals += refusal.rule == R("net") ? 1 : 0;
  }
  CHECK(net_refusals == 3);
  // A VM that asks for no network is not refused anything for it.
  VmFeatures quiet;
  quiet.network = false;
  CHECK(EnforceVmPolicy(Model({{R("net"), false}}), "dev", quiet).refusals.empty());
}

TEST_CASE("local, protocols and the outgoing address allow-list") {
  const PolicyModel m = Model({{R("local"), false},
                               {R("net.udp"), false},
                               {R("net.other"), false},
                               {R("net.other.1"), true},
                               {R("net.ip"), false},
                               {R("net.ip.10"), true},
                               {R("net.ip.10.0.0.66"), false},
                               {R("net.ip.192.168.1.5"), true}});
  const NetworkEnforcement n = EnforceVmPolicy(m, "dev", VmFeatures{}).network;
  CHECK(n.interface);
  CHECK(n.Filtered());
  CHECK_FALSE(n.local);
  CHECK(n.tcp);
  CHECK_FALSE(n.udp);
  CHECK(n.AllowsProtocol(6));
  CHECK_FALSE(n.AllowsProtocol(17));
  CHECK(n.AllowsProtocol(1));        // ICMP, its own exception.
  CHECK_FALSE(n.AllowsProtocol(47));  // GRE: other, denied.
  CHECK_FALSE(n.AllowsProtocol(11));  // "1" does not cover "11".
  CHECK_FALSE(n.ip_default);
  CHECK(n.ip_exceptions == std::vector<RuleException>{
                               {"10", true}, {"10.0.0.66", false}, {"192.168.1.5", true}});
  CHECK(n.AllowsAddress("10.1.2.3"));
  CHECK_FALSE(n.AllowsAddress("10.0.0.66"));
  CHECK(n.AllowsAddress("10.0.0.6"));   // "10.0.0.66" does not cover it.
  CHECK_FALSE(n.AllowsAddress("100.0.0.1"));  // "10" covers only at a '.' boundary.
  CHECK(n.AllowsAddress("192.168.1.5"));
  CHECK_FALSE(n.AllowsAddress("192.168.1.50"));
  CHECK_FALSE(n.AllowsAddress("8.8.8.8"));
}

TEST_CASE("forwards: only allowed ones are created; a shorter rule is a wildcard") {
  const PolicyModel m = Model({{R("net.fwd"), false}, {R("net.fwd.20000"), true}});
  VmFeatures f;
  f.forwards = {{20000, "0.0.0.0", 22, "tcp"},
                {20000, "127.0.0.1", 5900, "udp"},
                {2000, "0.0.0.0", 22, "tcp"},
                {200001 % 65536, "0.0.0.0", 22, "tcp"}};
  const VmEnforcement e = EnforceVmPolicy(m, "dev", f);
  CHECK(e.forwards == std::vector<VmForward>{f.forwards[0], f.forwards[1]});
  REQUIRE(e.refusals.size() == 2);
  CHECK(e.refusals[0].feature == "port forward 2000 -> 22/tcp on 0.0.0.0");
  CHECK(e.refusals[0].rule == R("net.fwd.2000.0.0.0.0.22"));
  CHECK(e.refusals[0].decision.rule == R("net.fwd"));
}

TEST_CASE("shared folders: subfolders of an allowed folder, and no other spelling of a path") {
  const PolicyModel m = Model({{R("fs"), false}, {R("fs./Users/dev/workspace1"), true}});
  VmFeatures f;
  f.shared_folders = {"/Users/dev/workspace1", "/Users/dev/workspace1/src",
                      "/Users/dev/workspace10", "/Users/dev/workspace1/../secret",
                      "/Users/dev/./workspace1", "/Users/dev//workspace1", "relative/dir"};
  const VmEnforcement e = EnforceVmPolicy(m, "dev", f);
  CHECK(e.shared_folders ==
        std::vector<std::string>{"/Users/dev/workspace1", "/Users/dev/workspace1/src"});
  REQUIRE(e.refusals.size() == 5);
  CHECK(e.refusals[1].decision.source == PolicySource::kUnmatchable);
  CHECK(e.refusals[1].Message().find("no rule can name it") != std::string::npos);
  // Allowed by default, a deny rule cannot be dodged by another spelling either.
  const PolicyModel deny_one = Model({{R("fs./etc"), false}});
  VmFeatures g;
  g.shared_folders = {"/etc", "/./etc", "/tmp/../etc", "/tmp"};
  CHECK(EnforceVmPolicy(deny_one, "dev", g).shared_folders == std::vector<std::string>{"/tmp"});
}

TEST_CASE("drives, USB and the console") {
  const PolicyModel m = Model({{R("disk"), false},
                               {R("disk.data1"), true},
                               {R("usb.host"), false},
                               {R("view.pb"), false},
                               {R("view.hid"), false}});
  VmFeatures f;
  f.extra_disks = {"data1", "data2"};
  f.usb_modules = {"host"};
  const VmEnforcement e = EnforceVmPolicy(m, "dev", f);
  CHECK(e.extra_disks == std::vector<std::string>{"data1"});
  CHECK(e.usb_modules.empty());
  CHECK_FALSE(e.clipboard);
  CHECK_FALSE(e.keyboard);
  REQUIRE(e.refusals.size() == 2);
  CHECK(e.refusals[0].feature == "drive data2");
  CHECK(e.refusals[1].feature == "USB module host");
}

TEST_CASE("DecideRun: run=0 with one command allowed; only canonical absolute paths") {
  const PolicyModel m = Model({{R("run"), false}, {R("run./usr/bin/make"), true}});
  std::string rule;
  CHECK(DecideRun(m, "dev", "/usr/bin/make", &rule).allow);
  CHECK(rule == R("run./usr/bin/make"));
  CHECK_FALSE(DecideRun(m, "dev", "/bin/sh").allow);
  CHECK_FALSE(DecideRun(m, "dev", "/usr/bin/makeover").allow);
  const PolicyModel open = Model({{R("run./bin/rm"), false}});
  CHECK(DecideRun(open, "dev", "/bin/ls").allow);
  CHECK_FALSE(DecideRun(open, "dev", "/bin/rm").allow);
  for (const char* dodge : {"/bin/./rm", "/usr/../bin/rm", "//bin/rm", "bin/rm", "/bin/rm/"}) {
    INFO(dodge);
    const PolicyDecision d = DecideRun(open, "dev", dodge);
    CHECK_FALSE(d.allow);
    CHECK(d.source == PolicySource::kUnmatchable);
  }
}

TEST_CASE("AllowsAddress and AllowsProtocol agree with the policy decision (random policies)") {
  std::mt19937 rng(20261125);
  const std::vector<std::string> pieces = {"10", "0", "1", "66", "192", "168"};
  const auto random_address = [&](int parts) {
    std::string a;
    for (int i = 0; i < parts; i++) {
      a += (i ? "." : "") + pieces[rng() % pieces.size()];
    }
    return a;
  };
  for (int round = 0; round < 200; round++) {
    std::map<std::string, bool> user_rules;
    std::map<std::string, bool> group_rules;
    for (int i = 0; i < 6; i++) {
      auto& rules = rng() % 2 ? user_rules : group_rules;
      rules[R("net.ip." + random_address(1 + static_cast<int>(rng() % 4)))] = rng() % 2;
      rules[R("net.other." + std::to_string(rng() % 20))] = rng() % 2;
    }
    if (rng() % 2) {
      group_rules[R("net.ip")] = rng() % 2;
    }
    if (rng() % 2) {
      user_rules[R("net.other")] = rng() % 2;
    }
    const PolicyModel m = Model(user_rules, {"ci"}, group_rules);
    const NetworkEnforcement n = EnforceVmPolicy(m, "dev", VmFeatures{}).network;
    for (int q = 0; q < 20; q++) {
      const std::string address = random_address(4);
      INFO("round " << round << " address " << address);
      CHECK(n.AllowsAddress(address) == Decide(m, "dev", R("net.ip." + address)).allow);
      const uint32_t protocol = 1 + rng() % 20;
      if (protocol != 6 && protocol != 17) {
        CHECK(n.AllowsProtocol(protocol) ==
              Decide(m, "dev", R("net.other." + std::to_string(protocol))).allow);
      }
    }
  }
}

}  // namespace
}  // namespace cloister::engine
