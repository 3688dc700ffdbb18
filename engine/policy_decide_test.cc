// The VM policy decision (seed 000, issue 7): every example of the seed as a table, run through
// both evaluators (the reference Decide, and CompiledPolicy's Decide and Allows); the group tree's
// precedence; EffectiveRules and Explain; and a property test that the two evaluators agree on
// random policies and queries (POLICY_PROPERTY_ITERATIONS policies, 300 by default, for a long
// run by hand: bazel test --test_env=POLICY_PROPERTY_ITERATIONS=100000 ...).
#include "engine/policy_decide.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <sstream>

#include "reducers/policy_model.h"

namespace cloister::engine {
namespace {

using reducers::PolicyModel;
using reducers::PolicySubject;

constexpr PolicySource kUser = PolicySource::kUser;
constexpr PolicySource kGroup = PolicySource::kGroup;
constexpr PolicySource kRuntime = PolicySource::kDefaultRuntime;
constexpr PolicySource kConfigAdmin = PolicySource::kDefaultConfigAdmin;
constexpr PolicySource kConfigUser = PolicySource::kDefaultConfigUser;

// A model as the reducer leaves a new policy: "standard" and "administrators", no users.
PolicyModel NewModel() {
  PolicyModel m;
  m.groups["standard"] = PolicySubject{"standard", {}, {}};
  m.groups["administrators"] = PolicySubject{"administrators", {}, {}};
  return m;
}

// Rules as the tool takes them: "name=verdict" in any of the seed's spellings.
std::map<std::string, bool> Rules(std::initializer_list<std::string> assignments) {
  std::map<std::string, bool> rules;
  for (const std::string& a : assignments) {
    const size_t eq = a.rfind('=');
    std::optional<bool> verdict = reducers::ParseVerdict(a.substr(eq + 1));
    REQUIRE(verdict.has_value());
    rules[a.substr(0, eq)] = *verdict;
  }
  return rules;
}

void AddUser(PolicyModel* m, const std::string& name, std::set<std::string> groups,
             std::initializer_list<std::string> rules) {
  m->users[name] = PolicySubject{name, std::move(groups), Rules(rules)};
}

void AddGroup(PolicyModel* m, const std::string& name, std::set<std::string> parents,
              std::initializer_list<std::string> rules) {
  m->groups[name] = PolicySubject{name, std::move(parents), Rules(rules)};
}

void SetRules(PolicyModel* m, const std::string& group, std::initializer_list<std::string> rules) {
  m->groups.at(group).rules = Rules(rules);
}

// One row: who asks for what, and the whole expected decision.
struct Case {
  std::string user;
  std::string query;
  bool allow;
  PolicySource source;
  std::string rule = "";
  std::string subject = "";
  int distance = 0;
};

// Every row through the reference and the compiled policy (Decide and Allows).
void Check(const PolicyModel& model, const std::vector<Case>& cases) {
  const std::unique_ptr<CompiledPolicy> compiled = CompiledPolicy::Compile(model);
  for (const Case& c : cases) {
    INFO("user " << c.user << ", query " << c.query);
    for (bool fast : {false, true}) {
      INFO((fast ? "CompiledPolicy::Decide" : "Decide"));
      const PolicyDecision d = fast ? compiled->Decide(c.user, c.query)
                                    : Decide(model, c.user, c.query);
      INFO(d.Explain());
      CHECK(d.allow == c.allow);
      CHECK(d.source == c.source);
      CHECK(d.rule == c.rule);
      CHECK(d.subject == c.subject);
      CHECK(d.distance == c.distance);
    }
    CHECK(compiled->Allows(c.user, c.query) == c.allow);
  }
}

// ---- The seed's examples ---------------------------------------------------------------------

TEST_CASE("shared folders: fs=deny with a workspace allowed, and its subfolders") {
  PolicyModel m = NewModel();
  AddUser(&m, "test", {},
          {"com.veertu.anka.fs=deny", "com.veertu.anka.fs./Users/test/workspace1=allow"});
  AddUser(&m, "hv", {},
          {"com.veertu.ankahv.fs=0", "com.veertu.ankahv.fs./Users/test/workspace1=1"});
  const std::string fs = "com.veertu.anka.fs";
  const std::string ws = "com.veertu.anka.fs./Users/test/workspace1";
  const std::string hv_fs = "com.veertu.ankahv.fs";
  const std::string hv_ws = "com.veertu.ankahv.fs./Users/test/workspace1";
  Check(m, {
      {"test", fs, false, kUser, fs, "test"},
      {"test", ws, true, kUser, ws, "test"},
      {"test", ws + "/src", true, kUser, ws, "test"},
      {"test", ws + "/src/deep/er", true, kUser, ws, "test"},
      {"test", ws + ".x", true, kUser, ws, "test"},
      {"test", "com.veertu.anka.fs./Users/test/workspace2", false, kUser, fs, "test"},
      {"test", "com.veertu.anka.fs./Users/test/workspace10", false, kUser, fs, "test"},
      {"test", "com.veertu.anka.fs./Users/test/workspace1x/a", false, kUser, fs, "test"},
      {"test", "com.veertu.anka.fs./Users/test", false, kUser, fs, "test"},
      {"test", "com.veertu.anka.fs./", false, kUser, fs, "test"},
      // "fs" covers only what lies below it at a '.' or '/'.
      {"test", "com.veertu.anka.fsx", true, kRuntime},
      {"test", "com.veertu.anka.fsx./Users/test/workspace1", true, kRuntime},
      {"test", "com.veertu.anka.f", true, kRuntime},
      {"test", "com.veertu.anka", true, kRuntime},
      // The hypervisor's spelling, in the numeric verdicts of the seed's rule list.
      {"hv", hv_fs, false, kUser, hv_fs, "hv"},
      {"hv", hv_ws + "/sub", true, kUser, hv_ws, "hv"},
      {"hv", "com.veertu.ankahv.fs./tmp", false, kUser, hv_fs, "hv"},
      {"hv", fs, true, kRuntime},  // The other namespace: no rule.
      {"test", hv_fs, true, kRuntime},
  });
}

TEST_CASE("matching is literal: a trailing slash is part of the name") {
  PolicyModel m = NewModel();
  const std::string dir = "com.veertu.ankahv.fs./Users/test/dir/";
  AddUser(&m, "u", {}, {"com.veertu.ankahv.fs=deny", dir + "=allow"});
  Check(m, {
      {"u", dir, true, kUser, dir, "u"},
      {"u", dir + "/x", true, kUser, dir, "u"},
      {"u", dir + "x", false, kUser, "com.veertu.ankahv.fs", "u"},
      {"u", "com.veertu.ankahv.fs./Users/test/dir", false, kUser, "com.veertu.ankahv.fs", "u"},
  });
}

TEST_CASE("port forwarding: a host port covers every address and guest port behind it") {
  PolicyModel m = NewModel();
  const std::string fwd = "com.veertu.ankahv.net.fwd";
  AddUser(&m, "dev", {},
          {fwd + "=0", fwd + ".20000=1", fwd + ".8080.127.0.0.1.80=1", fwd + ".2000=yes"});
  Check(m, {
      {"dev", fwd, false, kUser, fwd, "dev"},
      {"dev", fwd + ".22.0.0.0.0.22", false, kUser, fwd, "dev"},
      {"dev", fwd + ".20000", true, kUser, fwd + ".20000", "dev"},
      {"dev", fwd + ".20000.0.0.0.0.22", true, kUser, fwd + ".20000", "dev"},
      {"dev", fwd + ".20000.127.0.0.1.5900", true, kUser, fwd + ".20000", "dev"},
      // 2000 is allowed on its own and does not cover 20000 or 20001; 20000 not 200000.
      {"dev", fwd + ".2000.0.0.0.0.22", true, kUser, fwd + ".2000", "dev"},
      {"dev", fwd + ".20001.0.0.0.0.22", false, kUser, fwd, "dev"},
      {"dev", fwd + ".200000.0.0.0.0.22", false, kUser, fwd, "dev"},
      // A fully specified forward covers that forward only.
      {"dev", fwd + ".8080.127.0.0.1.80", true, kUser, fwd + ".8080.127.0.0.1.80", "dev"},
      {"dev", fwd + ".8080.127.0.0.1.8080", false, kUser, fwd, "dev"},
      {"dev", fwd + ".8080.0.0.0.0.80", false, kUser, fwd, "dev"},
      {"dev", "com.veertu.ankahv.net", true, kRuntime},
      {"dev", "com.veertu.ankahv.net.fwdx.20000", true, kRuntime},
  });
}

TEST_CASE("local=0, usb.host=0, start=0, view.pb=0 and view.hid=0 deny only what they name") {
  PolicyModel m = NewModel();
  AddUser(&m, "locked", {},
          {"com.veertu.ankahv.local=0", "com.veertu.ankahv.usb.host=0",
           "com.veertu.ankahv.start=0", "com.veertu.ankahv.view.pb=0",
           "com.veertu.ankahv.view.hid=off"});
  AddUser(&m, "free", {}, {});
  const std::string hv = "com.veertu.ankahv.";
  Check(m, {
      {"locked", hv + "local", false, kUser, hv + "local", "locked"},
      {"locked", hv + "local.dhcp", false, kUser, hv + "local", "locked"},
      {"locked", hv + "localhost", true, kRuntime},
      {"locked", hv + "net", true, kRuntime},
      {"locked", hv + "usb.host", false, kUser, hv + "usb.host", "locked"},
      {"locked", hv + "usb", true, kRuntime},
      {"locked", hv + "usb.hid", true, kRuntime},
      {"locked", hv + "start", false, kUser, hv + "start", "locked"},
      {"locked", hv + "stop", true, kRuntime},
      {"locked", hv + "view.pb", false, kUser, hv + "view.pb", "locked"},
      {"locked", hv + "view.hid", false, kUser, hv + "view.hid", "locked"},
      {"locked", hv + "view", true, kRuntime},
      {"locked", hv + "view.pbx", true, kRuntime},
      // Runtime features are allowed by default, to every user.
      {"free", hv + "local", true, kRuntime},
      {"free", hv + "usb.host", true, kRuntime},
      {"free", hv + "start", true, kRuntime},
      {"free", hv + "view.pb", true, kRuntime},
      {"free", hv + "view.hid", true, kRuntime},
  });
}

TEST_CASE("disk=0 with one drive allowed by disk.%s=1") {
  PolicyModel m = NewModel();
  AddUser(&m, "u", {}, {"com.veertu.ankahv.disk=0", "com.veertu.ankahv.disk.disk2s1=1"});
  const std::string disk = "com.veertu.ankahv.disk";
  Check(m, {
      {"u", disk, false, kUser, disk, "u"},
      {"u", disk + ".disk2s1", true, kUser, disk + ".disk2s1", "u"},
      {"u", disk + ".disk2s1/Volumes/x", true, kUser, disk + ".disk2s1", "u"},
      {"u", disk + ".disk2", false, kUser, disk, "u"},
      {"u", disk + ".disk3s1", false, kUser, disk, "u"},
      {"u", disk + "s", true, kRuntime},
  });
}

TEST_CASE("configuration defaults: administrators may, other users may not, unless a rule says") {
  PolicyModel m = NewModel();
  AddUser(&m, "alice", {"administrators"}, {});
  AddUser(&m, "bob", {"devs"}, {"com.veertu.anka.cfg.cpu=allow"});
  AddUser(&m, "carl", {}, {});
  AddGroup(&m, "devs", {}, {"com.veertu.ankahv.cfg.display=yes"});
  SetRules(&m, "administrators", {"com.veertu.anka.cfg.ram=deny"});
  const std::string cfg = "com.veertu.anka.cfg";
  const std::string hv_cfg = "com.veertu.ankahv.cfg";
  Check(m, {
      {"alice", cfg + ".vnc.password", true, kConfigAdmin},
      {"alice", cfg, true, kConfigAdmin},
      {"alice", hv_cfg + ".ram", true, kConfigAdmin},
      {"bob", cfg + ".vnc.password", false, kConfigUser},
      {"bob", cfg, false, kConfigUser},
      {"bob", cfg + "/x", false, kConfigUser},
      {"bob", hv_cfg + ".ram", false, kConfigUser},
      {"carl", cfg + ".cpu", false, kConfigUser},
      // An unknown user is no administrator.
      {"mallory", cfg + ".ram", false, kConfigUser},
      {"mallory", "com.veertu.ankahv.start", true, kRuntime},
      // Only names below cfg are configuration.
      {"bob", cfg + "x", true, kRuntime},
      {"bob", "com.veertu.anka.cf", true, kRuntime},
      {"bob", "com.veertu.anka", true, kRuntime},
      {"bob", "com.veertu.ankahv.start", true, kRuntime},
      // Explicit rules decide before the defaults, both ways.
      {"bob", cfg + ".cpu", true, kUser, cfg + ".cpu", "bob"},
      {"bob", cfg + ".cpu.count", true, kUser, cfg + ".cpu", "bob"},
      {"bob", hv_cfg + ".display.width", true, kGroup, hv_cfg + ".display", "devs", 1},
      {"alice", cfg + ".ram", false, kGroup, cfg + ".ram", "administrators", 1},
      {"alice", cfg + ".ram.size", false, kGroup, cfg + ".ram", "administrators", 1},
  });
}

// ---- The group tree ----------------------------------------------------------------------

// standard <- org <- eng <- ios; org <- qa; carol in ios and qa (so org is at distance 2 by qa,
// 3 by ios and eng); dave in nothing; erin in ios only.
PolicyModel Tree() {
  PolicyModel m = NewModel();
  AddGroup(&m, "org", {}, {});
  AddGroup(&m, "eng", {"org"}, {});
  AddGroup(&m, "ios", {"eng"}, {});
  AddGroup(&m, "qa", {"org"}, {});
  AddUser(&m, "carol", {"ios", "qa"}, {});
  AddUser(&m, "dave", {}, {});
  AddUser(&m, "erin", {"ios"}, {});
  return m;
}

TEST_CASE("tree: the user's own rule beats every group's") {
  PolicyModel m = Tree();
  m.users["carol"].rules = Rules({"com.veertu.ankahv.start=allow"});
  SetRules(&m, "ios", {"com.veertu.ankahv.start=deny"});
  SetRules(&m, "standard", {"com.veertu.ankahv.start=deny"});
  const std::string start = "com.veertu.ankahv.start";
  Check(m, {
      {"carol", start, true, kUser, start, "carol"},
      {"erin", start, false, kGroup, start, "ios", 1},
      {"dave", start, false, kGroup, start, "standard", 1},
  });
}

TEST_CASE("tree: the nearer group beats the farther, by the shortest path") {
  PolicyModel m = Tree();
  SetRules(&m, "ios", {"com.veertu.ankahv.net=allow"});
  SetRules(&m, "eng", {"com.veertu.ankahv.usb.host=deny"});
  SetRules(&m, "org", {"com.veertu.ankahv.net=deny", "com.veertu.ankahv.usb.host=allow",
                       "com.veertu.ankahv.view.pb=deny"});
  const std::string hv = "com.veertu.ankahv.";
  Check(m, {
      {"carol", hv + "net", true, kGroup, hv + "net", "ios", 1},
      {"carol", hv + "net.tcp", true, kGroup, hv + "net", "ios", 1},
      // org is 2 away by qa, eng 2 away by ios: same distance, they disagree, deny wins.
      {"carol", hv + "usb.host", false, kGroup, hv + "usb.host", "eng", 2},
      // For erin, eng (2) is nearer than org (3).
      {"erin", hv + "usb.host", false, kGroup, hv + "usb.host", "eng", 2},
      {"carol", hv + "view.pb", false, kGroup, hv + "view.pb", "org", 2},
      {"erin", hv + "view.pb", false, kGroup, hv + "view.pb", "org", 3},
      {"dave", hv + "view.pb", true, kRuntime},
  });
}

TEST_CASE("tree: sibling groups that disagree deny; agreeing ones name the first") {
  PolicyModel m = Tree();
  SetRules(&m, "ios", {"com.veertu.ankahv.view.pb=allow", "com.veertu.ankahv.view.hid=allow",
                       "com.veertu.ankahv.local=deny"});
  SetRules(&m, "qa", {"com.veertu.ankahv.view.pb=deny", "com.veertu.ankahv.view.hid=allow",
                      "com.veertu.ankahv.local=deny"});
  const std::string hv = "com.veertu.ankahv.";
  Check(m, {
      {"carol", hv + "view.pb", false, kGroup, hv + "view.pb", "qa", 1},
      {"carol", hv + "view.hid", true, kGroup, hv + "view.hid", "ios", 1},
      {"carol", hv + "local", false, kGroup, hv + "local", "ios", 1},
      {"erin", hv + "view.pb", true, kGroup, hv + "view.pb", "ios", 1},
  });
}

TEST_CASE("tree: standard's rules lose to every explicit group and apply to everyone") {
  PolicyModel m = Tree();
  SetRules(&m, "standard", {"com.veertu.ankahv.usb.host=deny", "com.veertu.ankahv.local=0"});
  SetRules(&m, "org", {"com.veertu.ankahv.usb.host=allow"});
  const std::string hv = "com.veertu.ankahv.";
  Check(m, {
      {"carol", hv + "usb.host", true, kGroup, hv + "usb.host", "org", 2},
      {"erin", hv + "usb.host", true, kGroup, hv + "usb.host", "org", 3},
      {"dave", hv + "usb.host", false, kGroup, hv + "usb.host", "standard", 1},
      // standard is one step beyond the farthest group reached.
      {"carol", hv + "local", false, kGroup, hv + "local", "standard", 3},
      {"erin", hv + "local", false, kGroup, hv + "local", "standard", 4},
      {"dave", hv + "local", false, kGroup, hv + "local", "standard", 1},
      {"nobody", hv + "local", false, kGroup, hv + "local", "standard", 1},
      {"nobody", hv + "usb.host", false, kGroup, hv + "usb.host", "standard", 1},
  });
}

TEST_CASE("tree: the more specific name wins, whoever holds it") {
  PolicyModel m = Tree();
  const std::string fs = "com.veertu.ankahv.fs";
  m.users["carol"].rules = Rules({fs + "=deny"});
  SetRules(&m, "standard", {fs + "./Users/carol=allow"});
  SetRules(&m, "ios", {fs + "./Users=deny"});
  SetRules(&m, "org", {fs + "./Users/carol/secret=deny"});
  Check(m, {
      {"carol", fs + "./tmp", false, kUser, fs, "carol"},
      {"carol", fs + "./Users/bob", false, kGroup, fs + "./Users", "ios", 1},
      {"carol", fs + "./Users/carol/src", true, kGroup, fs + "./Users/carol", "standard", 3},
      {"carol", fs + "./Users/carol/secret/x", false, kGroup, fs + "./Users/carol/secret",
       "org", 2},
      {"dave", fs + "./Users/carol", true, kGroup, fs + "./Users/carol", "standard", 1},
      {"dave", fs + "./Users/bob", true, kRuntime},
  });
}

TEST_CASE("tree: a DAG, a missing group, and a cycle are all decided") {
  PolicyModel m = NewModel();
  AddGroup(&m, "a", {"b", "c"}, {"x.y=deny"});
  AddGroup(&m, "b", {"d"}, {"x.z=allow"});
  AddGroup(&m, "c", {"d", "ghost"}, {});
  AddGroup(&m, "d", {"a", "standard"}, {"x=deny", "x.z=deny"});  // A cycle, and "standard".
  AddUser(&m, "u", {"a", "standard"}, {});
  AddUser(&m, "v", {"d"}, {});
  SetRules(&m, "standard", {"x.w=allow"});
  Check(m, {
      {"u", "x.y.1", false, kGroup, "x.y", "a", 1},
      {"u", "x.z", true, kGroup, "x.z", "b", 2},
      {"u", "x.q", false, kGroup, "x", "d", 3},
      {"u", "x.w", true, kGroup, "x.w", "standard", 4},  // a 1, b c 2, d ghost 3.
      {"v", "x.y", false, kGroup, "x.y", "a", 2},
      {"v", "x.z", false, kGroup, "x.z", "d", 1},
      {"v", "x.w", true, kGroup, "x.w", "standard", 5},  // d 1, a 2, b c 3, ghost 4.
  });
}

TEST_CASE("tree: holders at the same distance are named in name order, not discovery order") {
  PolicyModel m = NewModel();
  AddGroup(&m, "a", {"z"}, {});
  AddGroup(&m, "b", {"m"}, {});
  AddGroup(&m, "z", {}, {"x=allow", "y=deny"});
  AddGroup(&m, "m", {}, {"x=allow", "y=deny"});
  AddUser(&m, "u", {"a", "b"}, {});
  Check(m, {
      {"u", "x", true, kGroup, "x", "m", 2},
      {"u", "y.1", false, kGroup, "y", "m", 2},
  });
}

// ---- EffectiveRules and Explain ---------------------------------------------------------

TEST_CASE("EffectiveRules lists the winner of every held name, sorted, with its source") {
  PolicyModel m = Tree();
  const std::string hv = "com.veertu.ankahv.";
  m.users["carol"].rules = Rules({hv + "start=allow"});
  SetRules(&m, "ios", {hv + "start=deny", hv + "view.pb=allow"});
  SetRules(&m, "qa", {hv + "view.pb=deny"});
  SetRules(&m, "standard", {hv + "local=0", "com.veertu.anka.cfg.ram=1"});
  const std::vector<PolicyDecision> rules = EffectiveRules(m, "carol");
  std::vector<std::string> explained;
  for (const PolicyDecision& d : rules) explained.push_back(d.Explain());
  CHECK(explained == std::vector<std::string>{
      "allow: com.veertu.anka.cfg.ram=allow (group standard, distance 3)",
      "deny: com.veertu.ankahv.local=deny (group standard, distance 3)",
      "allow: com.veertu.ankahv.start=allow (user carol)",
      "deny: com.veertu.ankahv.view.pb=deny (group qa, distance 1)",
  });
  CHECK(EffectiveRules(m, "dave").size() == 2);
  CHECK(EffectiveRules(m, "nobody").size() == 2);
  CHECK(EffectiveRules(NewModel(), "nobody").empty());
  const std::unique_ptr<CompiledPolicy> compiled = CompiledPolicy::Compile(m);
  for (const PolicyDecision& d : rules) {
    const PolicyDecision fast = compiled->Decide("carol", d.rule);
    CHECK(fast.Explain() == d.Explain());
  }
}

TEST_CASE("Explain says the verdict, the rule and who holds it, or which default applied") {
  PolicyModel m = NewModel();
  AddUser(&m, "test", {"developers"},
          {"com.veertu.ankahv.fs./Users/test/workspace1=allow"});
  AddUser(&m, "root", {"administrators"}, {});
  AddGroup(&m, "developers", {"staff"}, {});
  AddGroup(&m, "staff", {}, {"com.veertu.ankahv.fs=deny"});
  const std::unique_ptr<CompiledPolicy> compiled = CompiledPolicy::Compile(m);
  const std::vector<std::pair<std::pair<std::string, std::string>, std::string>> rows = {
      {{"test", "com.veertu.ankahv.fs./Users/test/workspace1/a"},
       "allow: com.veertu.ankahv.fs./Users/test/workspace1=allow (user test)"},
      {{"test", "com.veertu.ankahv.fs./Users/other"},
       "deny: com.veertu.ankahv.fs=deny (group staff, distance 2)"},
      {{"test", "com.veertu.anka.cfg.ram"},
       "deny (default: configuration changes need an administrator)"},
      {{"root", "com.veertu.anka.cfg.ram"},
       "allow (default: administrators may change the configuration)"},
      {{"root", "com.veertu.ankahv.net"}, "allow (default: runtime features are allowed)"},
  };
  for (const auto& [query, text] : rows) {
    INFO(query.first << " " << query.second);
    CHECK(Decide(m, query.first, query.second).Explain() == text);
    CHECK(compiled->Decide(query.first, query.second).Explain() == text);
  }
}

TEST_CASE("a compiled policy owns its data: the model may go away") {
  std::unique_ptr<CompiledPolicy> compiled;
  {
    PolicyModel m = NewModel();
    AddUser(&m, "u", {"g"}, {"com.veertu.ankahv.start=0"});
    AddGroup(&m, "g", {}, {"com.veertu.ankahv.net=0"});
    compiled = CompiledPolicy::Compile(m);
  }
  CHECK(compiled->Decide("u", "com.veertu.ankahv.net.tcp").Explain() ==
        "deny: com.veertu.ankahv.net=deny (group g, distance 1)");
  CHECK_FALSE(compiled->Allows("u", "com.veertu.ankahv.start"));
  CHECK(compiled->Allows("v", "com.veertu.ankahv.start"));
}

// ---- Property: the compiled policy agrees with the reference --------------------------------

class RandomPolicies {
 public:
  explicit RandomPolicies(uint64_t seed) : rng_(seed) {}

  size_t Below(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool OneIn(size_t n) { return Below(n) == 0; }

  // Names from a small vocabulary so that prefixes collide often: roots, then '.'/'/' segments
  // (some empty, some prefixes of others: "fs"/"fsx", "2000"/"20000").
  std::string Name(size_t max_segments) {
    static const char* const kRoots[] = {"com.veertu.ankahv", "com.veertu.anka",
                                         "com.veertu.anka.cfg", "com.veertu.ankahv.cfg",
                                         "com.veertu.anka.cf", "x", ""};
    static const char* const kSegments[] = {"fs", "fsx", "f", "net", "fwd", "20000", "2000",
                                            "0", "cfg", "Users", "test", "workspace1",
                                            "workspace10", "", "a.b", "a/b"};
    std::string name = kRoots[Below(std::size(kRoots))];
    const size_t n = Below(max_segments + 1);
    for (size_t i = 0; i < n; i++) {
      name += OneIn(3) ? '/' : '.';
      name += kSegments[Below(std::size(kSegments))];
    }
    return name;
  }

  PolicyModel Model() {
    PolicyModel m = NewModel();
    // Most rules come from a small pool, so that subjects often hold the same name.
    pool_.clear();
    const size_t pool = 3 + Below(8);
    for (size_t i = 0; i < pool; i++) pool_.push_back(Name(3));
    const size_t groups = Below(10);
    std::vector<std::string> names = {"standard", "administrators"};
    for (size_t i = 0; i < groups; i++) names.push_back("g" + std::to_string(i));
    // Names out of the DAG's order, so that discovery order is not name order.
    std::shuffle(names.begin() + 2, names.end(), rng_);
    for (size_t i = 1; i < names.size(); i++) {  // Not "standard" (it holds rules only).
      PolicySubject& g = m.groups[names[i]];
      g.name = names[i];
      // Parents mostly later in the list (a DAG); now and then anything (a cycle), a group
      // never defined, or "standard".
      const size_t parents = Below(4);
      for (size_t k = 0; k < parents; k++) {
        if (OneIn(10)) {
          g.groups.insert(OneIn(2) ? "ghost" : "standard");
        } else if (OneIn(8)) {
          g.groups.insert(names[1 + Below(names.size() - 1)]);
        } else if (i + 1 < names.size()) {
          g.groups.insert(names[i + 1 + Below(names.size() - i - 1)]);
        }
      }
    }
    for (const std::string& name : names) AddRandomRules(&m.groups[name].rules);
    const size_t users = 1 + Below(5);
    for (size_t i = 0; i < users; i++) {
      PolicySubject& u = m.users["u" + std::to_string(i)];
      u.name = "u" + std::to_string(i);
      const size_t direct = Below(5);
      for (size_t k = 0; k < direct; k++) {
        u.groups.insert(OneIn(12) ? "ghost" : names[1 + Below(names.size() - 1)]);
      }
      AddRandomRules(&u.rules);
    }
    return m;
  }

  // A query: a fresh name, or a held one as is, extended, or cut short.
  std::string Query(const std::vector<std::string>& held) {
    if (held.empty() || OneIn(5)) return Name(5);
    std::string q = held[Below(held.size())];
    switch (Below(4)) {
      case 0:
        return q;
      case 1:
        return q + (OneIn(2) ? "." : "/") + Name(2);
      case 2:
        return q + (OneIn(2) ? "x" : "0");
      default:
        return q.substr(0, Below(q.size() + 1));
    }
  }

 private:
  void AddRandomRules(std::map<std::string, bool>* rules) {
    const size_t n = Below(5);
    for (size_t i = 0; i < n; i++) {
      (*rules)[OneIn(4) ? Name(3) : pool_[Below(pool_.size())]] = OneIn(2);
    }
  }

  std::mt19937_64 rng_;
  std::vector<std::string> pool_;
};

std::string Describe(const PolicyModel& m) {
  std::ostringstream out;
  for (const auto* kind : {&m.users, &m.groups}) {
    for (const auto& [name, s] : *kind) {
      out << (kind == &m.users ? "user " : "group ") << name << " in {";
      for (const std::string& g : s.groups) out << g << ",";
      out << "} rules {";
      for (const auto& [rule, v] : s.rules) out << "'" << rule << "'=" << v << " ";
      out << "}\n";
    }
  }
  return out.str();
}

std::string Differences(const PolicyDecision& a, const PolicyDecision& b, bool allows) {
  std::string out;
  if (a.allow != b.allow) out += " allow";
  if (a.allow != allows) out += " Allows";
  if (a.source != b.source) out += " source";
  if (a.rule != b.rule) out += " rule";
  if (a.subject != b.subject) out += " subject";
  if (a.distance != b.distance) out += " distance";
  return out;
}

TEST_CASE("property: CompiledPolicy agrees with the reference on random policies and queries") {
  size_t policies = 300;
  if (const char* env = std::getenv("POLICY_PROPERTY_ITERATIONS")) {
    policies = std::strtoull(env, nullptr, 10);
  }
  constexpr size_t kQueries = 300;
  size_t decided = 0;
  std::map<PolicySource, size_t> by_source;
  size_t by_standard = 0;
  for (size_t p = 0; p < policies; p++) {
    RandomPolicies random(7000 + p);
    const PolicyModel m = random.Model();
    const std::unique_ptr<CompiledPolicy> compiled = CompiledPolicy::Compile(m);
    const std::vector<std::string> users = {"nobody", "u0", "u1", "u2", "u3", "u4"};
    std::vector<std::string> held;
    for (const auto* kind : {&m.users, &m.groups}) {
      for (const auto& [name, s] : *kind) {
        for (const auto& [rule, v] : s.rules) held.push_back(rule);
      }
    }
    std::string failures;
    for (size_t q = 0; q < kQueries && failures.size() < 2000; q++) {
      const std::string& user = users[random.Below(users.size())];
      const std::string query = random.Query(held);
      const PolicyDecision want = Decide(m, user, query);
      const PolicyDecision got = compiled->Decide(user, query);
      const std::string diff = Differences(want, got, compiled->Allows(user, query));
      if (!diff.empty()) {
        failures += "user " + user + " query '" + query + "':" + diff + "\n  want " +
                    want.Explain() + "\n  got  " + got.Explain() + "\n";
      }
      decided++;
      by_source[want.source]++;
      by_standard += want.subject == "standard" ? 1 : 0;
    }
    // EffectiveRules: each listed winner is what the compiled policy decides for that name.
    for (const std::string& user : users) {
      for (const PolicyDecision& d : EffectiveRules(m, user)) {
        const PolicyDecision got = compiled->Decide(user, d.rule);
        if (got.Explain() != d.Explain()) {
          failures += "EffectiveRules(" + user + ") " + d.Explain() + " vs " + got.Explain() +
                      "\n";
        }
      }
    }
    INFO("policy seed " << 7000 + p << "\n" << Describe(m));
    REQUIRE(failures == "");
  }
  // The generator must exercise every kind of decision.
  if (policies >= 100) {
    INFO(decided << " decisions: " << by_source[kUser] << " user, " << by_source[kGroup]
                 << " group (" << by_standard << " standard), " << by_source[kRuntime]
                 << " runtime, " << by_source[kConfigAdmin] << " config admin, "
                 << by_source[kConfigUser] << " config user");
    CHECK(by_source[kUser] > decided / 20);
    CHECK(by_source[kGroup] - by_standard > decided / 20);
    CHECK(by_standard > decided / 50);
    CHECK(by_source[kRuntime] > decided / 20);
    CHECK(by_source[kConfigAdmin] > decided / 200);
    CHECK(by_source[kConfigUser] > decided / 200);
  }
}

}  // namespace
}  // namespace cloister::engine
