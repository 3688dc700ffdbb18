// VM policy decision latency (issue 7: <= 200 ns p50 per decision for the compiled policy with
// 1,000 rules over 100 groups), against the reference evaluator in the same run.
//
// The policy (seeded): 100 groups in three levels (10 under standard, 30 under those, 60 under
// those; a quarter of the lower groups have a second parent, so the tree is a DAG), 10 rules on
// each group (1,000), 5 on standard, 2 on each user; users in 2 to 4 groups at any level, one
// in ten an administrator. Rule names are the seed's: shared folders, port forwards, disks, USB,
// view, run, start, and configuration parameters of both namespaces.
// Queries: a third held names of the user's chain extended by 0 to 3 segments (hits at every
// depth), a third names from the same vocabulary that the user's chain may not hold, a third
// names nothing covers (runtime and configuration defaults).
// Each decision is timed alone (steady_clock around the call; the clock's own cost, printed, is
// included). The subjects alternate in rounds; the summary is the median over rounds.
// Usage: bazel run -c opt //bench:policy_bench -- [--decisions N] [--rounds N] [--users N]
//        [--seed N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bench/latency.h"
#include "bench/flags.h"
#include "engine/policy_decide.h"
#include "reducers/policy_model.h"

namespace cloister {
namespace {

using Clock = std::chrono::steady_clock;

constexpr bench::Program kProgram = {
    "policy_bench",
    "usage: policy_bench [--decisions N (200000)] [--rounds N (5)] [--users N (1000)]\n"
    "                    [--seed N (7)]\n"};
constexpr double kTargetNs = 200;
constexpr int kTopGroups = 10;
constexpr int kMidGroups = 30;
constexpr int kLeafGroups = 60;
constexpr int kRulesPerGroup = 10;

using bench::Figures;
using bench::Percentiles;
using bench::Time;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

class Vocabulary {
 public:
  explicit Vocabulary(std::mt19937_64* rng) : rng_(rng) {}

  size_t Below(size_t n) { return (*rng_)() % n; }

  // A rule name as an administrator would write it.
  std::string Rule() {
    const std::string hv = "com.veertu.ankahv.";
    switch (Below(10)) {
      case 0:
        return hv + "fs./Users/u" + std::to_string(Below(40)) +
               (Below(2) ? "/ws" + std::to_string(Below(5)) : "");
      case 1:
        return hv + "net.fwd." + std::to_string(20000 + Below(60)) +
               (Below(3) == 0 ? ".0.0.0.0." + std::to_string(Below(3) * 1000 + 22) : "");
      case 2:
        return hv + "disk.disk" + std::to_string(Below(30)) + "s1";
      case 3:
        return hv + "run./usr/bin/" + Command();
      case 4:
        return "com.veertu.anka.cfg." + Parameter();
      case 5:
        return hv + "cfg." + Parameter();
      case 6:
        return hv + Feature();
      case 7:
        return hv + "fs";
      case 8:
        return hv + "net.fwd";
      default:
        return hv + "disk";
    }
  }

  // A name below `held`: the same, or 1 to 3 more segments.
  std::string Extend(const std::string& held) {
    std::string q = held;
    const size_t n = Below(4);
    for (size_t i = 0; i < n; i++) {
      q += Below(2) ? "/sub" + std::to_string(Below(9)) : "." + std::to_string(Below(90));
    }
    return q;
  }

  // A name no rule of the policy covers.
  std::string Miss() {
    const std::string hv = "com.veertu.ankahv.";
    switch (Below(4)) {
      case 0:
        return hv + "fsx./Users/u" + std::to_string(Below(40)) + "/ws1";
      case 1:
        return "com.veertu.anka.cfg.unheld." + Parameter();
      case 2:
        return hv + "cfg.unheld/" + Parameter();
      default:
        return hv + "netx.fwd." + std::to_string(20000 + Below(60)) + ".0.0.0.0.22";
    }
  }

 private:
  std::string Command() {
    static const char* const kCommands[] = {"make", "xcodebuild", "git", "ls", "ssh", "swift"};
    return kCommands[Below(std::size(kCommands))];
  }
  std::string Parameter() {
    static const char* const kParameters[] = {"ram", "cpu", "vnc.password", "display.width",
                                              "display.height", "network", "hard-drive", "usb"};
    return kParameters[Below(std::size(kParameters))];
  }
  std::string Feature() {
    static const char* const kFeatures[] = {"start", "local", "usb.host", "view.pb", "view.hid",
                                            "net.tcp", "net.udp", "net.protocols.6"};
    return kFeatures[Below(std::size(kFeatures))];
  }

  std::mt19937_64* rng_;
};

reducers::PolicyModel Policy(std::mt19937_64* rng, size_t users) {
  Vocabulary words(rng);
  reducers::PolicyModel m;
  m.groups["standard"] = {"standard", {}, {}};
  m.groups["administrators"] = {"administrators", {}, {}};
  std::vector<std::string> names;
  for (int i = 0; i < kTopGroups + kMidGroups + kLeafGroups; i++) {
    names.push_back("group-" + std::to_string(i));
  }
  for (int i = 0; i < static_cast<int>(names.size()); i++) {
    reducers::PolicySubject g{names[i], {}, {}};
    // Parents one level up (the mid groups under the top ones, the leaves under the mid ones).
    const int level_start = i < kTopGroups ? -1 : i < kTopGroups + kMidGroups ? 0 : kTopGroups;
    const int level_size = i < kTopGroups + kMidGroups ? kTopGroups : kMidGroups;
    if (level_start >= 0) {
      g.groups.insert(names[level_start + words.Below(level_size)]);
      if (words.Below(4) == 0) g.groups.insert(names[words.Below(kTopGroups + kMidGroups)]);
      g.groups.erase(names[i]);
    }
    while (g.rules.size() < kRulesPerGroup) g.rules[words.Rule()] = words.Below(2) == 0;
    m.groups[names[i]] = g;
  }
  while (m.groups["standard"].rules.size() < 5) {
    m.groups["standard"].rules[words.Rule()] = words.Below(3) != 0;
  }
  for (size_t i = 0; i < users; i++) {
    reducers::PolicySubject u{"user-" + std::to_string(i), {}, {}};
    const size_t groups = 2 + words.Below(3);
    while (u.groups.size() < groups) u.groups.insert(names[words.Below(names.size())]);
    if (i % 10 == 0) u.groups.insert("administrators");
    while (u.rules.size() < 2) u.rules[words.Rule()] = words.Below(2) == 0;
    m.users[u.name] = u;
  }
  return m;
}

int Main(int argc, char** argv) {
  size_t decisions = 200'000;
  size_t rounds = 5;
  size_t user_count = 1000;
  uint64_t seed = 7;
  kProgram.ParseFlags(argc, argv, [&](const std::string& flag, const char* value) {
    if (flag == "--decisions") {
      decisions = kProgram.PositiveNumber(flag, value, 100'000'000);
    } else if (flag == "--rounds") {
      rounds = kProgram.PositiveNumber(flag, value, 1000);
    } else if (flag == "--users") {
      user_count = kProgram.PositiveNumber(flag, value, 10'000'000);
    } else if (flag == "--seed") {
      seed = kProgram.PositiveNumber(flag, value);
    } else {
      return false;
    }
    return true;
  });

  std::mt19937_64 rng(seed);
  const reducers::PolicyModel model = Policy(&rng, user_count);
  size_t group_rules = 0;
  for (const auto& [name, g] : model.groups) {
    if (name != "standard") group_rules += g.rules.size();
  }

  const auto compile_start = Clock::now();
  const std::unique_ptr<engine::CompiledPolicy> compiled = engine::CompiledPolicy::Compile(model);
  const double compile_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - compile_start).count();

  // Queries: the held names of each user's chain come from EffectiveRules.
  Vocabulary words(&rng);
  std::vector<std::string> user_names;
  std::vector<std::vector<std::string>> held;
  size_t held_total = 0;
  for (const auto& [name, u] : model.users) {
    user_names.push_back(name);
    held.emplace_back();
    for (const engine::PolicyDecision& d : engine::EffectiveRules(model, name)) {
      held.back().push_back(d.rule);
    }
    held_total += held.back().size();
  }
  std::vector<const std::string*> users;
  std::vector<std::string> queries;
  for (size_t i = 0; i < decisions; i++) {
    const size_t u = words.Below(user_names.size());
    users.push_back(&user_names[u]);
    switch (words.Below(3)) {
      case 0:
        queries.push_back(words.Extend(held[u][words.Below(held[u].size())]));
        break;
      case 1:
        queries.push_back(words.Extend(words.Rule()));
        break;
      default:
        queries.push_back(words.Miss());
    }
  }

  // The two evaluators agree on every query before anything is timed.
  const size_t reference_n = std::min<size_t>(decisions, 20'000);
  size_t by_rule = 0;
  for (size_t i = 0; i < decisions; i++) {
    const engine::PolicyDecision fast = compiled->Decide(*users[i], queries[i]);
    by_rule += fast.rule.empty() ? 0 : 1;
    if (compiled->Allows(*users[i], queries[i]) != fast.allow) {
      kProgram.Die("Allows and Decide disagree on " + queries[i]);
    }
    if (i < reference_n) {
      const engine::PolicyDecision slow = engine::Decide(model, *users[i], queries[i]);
      if (slow.Explain() != fast.Explain()) {
        kProgram.Die("mismatch for " + *users[i] + " " + queries[i] + ": " + slow.Explain() +
                     " vs " + fast.Explain());
      }
    }
  }

  std::printf("policy_bench: %zu groups (%zu rules), %zu users, %.1f held names per user; "
              "compile %.1f ms; %zu queries (%.0f%% decided by a rule); target Allows p50 <= "
              "%.0f ns\n",
              model.groups.size() - 2, group_rules, model.users.size(),
              static_cast<double>(held_total) / static_cast<double>(model.users.size()),
              compile_ms, decisions,
              100.0 * static_cast<double>(by_rule) / static_cast<double>(decisions), kTargetNs);

  std::vector<double> allows_p50, allows_p99, decide_p50, decide_p99, ref_p50, ref_p99, clock;
  for (size_t r = 0; r < rounds; r++) {
    size_t allowed = 0;
    size_t decide_allowed = 0;
    size_t ref_allowed = 0;
    size_t none = 0;
    const Figures empty = Time(decisions, [&](size_t i) { return i == 0; }, &none);
    const Figures a = Time(decisions, [&](size_t i) {
      return compiled->Allows(*users[i], queries[i]);
    }, &allowed);
    const Figures d = Time(decisions, [&](size_t i) {
      return compiled->Decide(*users[i], queries[i]).allow;
    }, &decide_allowed);
    const Figures ref = Time(reference_n, [&](size_t i) {
      return engine::Decide(model, *users[i], queries[i]).allow;
    }, &ref_allowed);
    std::printf("round %zu: Allows p50 %6.0f p99 %6.0f | Decide p50 %6.0f p99 %6.0f | reference "
                "p50 %7.0f p99 %7.0f ns | clock %3.0f ns | %zu/%zu allowed\n",
                r + 1, a.p50, a.p99, d.p50, d.p99, ref.p50, ref.p99, empty.p50, allowed,
                decisions);
    allows_p50.push_back(a.p50);
    allows_p99.push_back(a.p99);
    decide_p50.push_back(d.p50);
    decide_p99.push_back(d.p99);
    ref_p50.push_back(ref.p50);
    ref_p99.push_back(ref.p99);
    clock.push_back(empty.p50);
  }
  const double a50 = Median(allows_p50);
  std::printf("median of %zu rounds (ns per decision, clock ~%.0f ns included):\n", rounds,
              Median(clock));
  std::printf("  CompiledPolicy::Allows  p50 %7.0f  p99 %7.0f  %s\n", a50, Median(allows_p99),
              a50 <= kTargetNs ? "ok" : "SLOW");
  std::printf("  CompiledPolicy::Decide  p50 %7.0f  p99 %7.0f\n", Median(decide_p50),
              Median(decide_p99));
  std::printf("  reference Decide        p50 %7.0f  p99 %7.0f  (reference/Allows p50 %.0fx, "
              "reference/Decide p50 %.0fx)\n",
              Median(ref_p50), Median(ref_p99), Median(ref_p50) / a50,
              Median(ref_p50) / Median(decide_p50));
  return 0;
}

}  // namespace
}  // namespace cloister

int main(int argc, char** argv) { return cloister::Main(argc, argv); }
