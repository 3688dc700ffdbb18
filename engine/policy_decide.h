// The Anka Secure policy decision (seed 000; issue 7): may user U do rule R under a policy?
//
// Matching. Rule names are reverse-domain names. A rule named N covers the query Q iff Q == N or
// Q starts with N and the next character of Q is '.' or '/'. So
// "com.veertu.ankahv.fs./Users/test/workspace1" covers "...workspace1/sub" and
// "com.veertu.ankahv.net.fwd.20000" covers every address and guest port behind host port 20000,
// while "com.veertu.ankahv.fs" does not cover "com.veertu.ankahv.fsx".
//
// Precedence. Among the rules that cover Q, the most specific (longest name) wins. Where several
// subjects hold a rule of that same name: the user's own rule first; then the nearest group up
// the tree (breadth first from the user's direct groups, distance 1, through their parents);
// among groups at the same distance that disagree, deny wins. "standard" is farther than every
// explicit group (it is the root every chain ends in).
//
// Precisely: a group's distance is its shortest path from the user (breadth first; each group
// visited once, so a cycle, which the reducer never makes, cannot loop); a group named but not
// defined is reached with no rules; "standard" is at 1 + the largest distance reached (1 for a
// user with no groups), and is never an explicit step even if listed. Where holders at the
// winning distance agree, or deny wins, the decision names the first of them by name holding the
// winning verdict.
//
// Defaults when no rule covers Q: configuration rules ("com.veertu.anka.cfg" and
// "com.veertu.ankahv.cfg" and everything below them) are denied to non-administrators and
// allowed to administrators; every other rule (the runtime features com.veertu.ankahv.* and
// com.veertu.anka.*) is allowed.
//
// Two evaluators with the same answers: Decide (a naive reference: walks the tree per query) and
// CompiledPolicy (built once per policy; the fast path, <= 200 ns p50 with 1,000 rules over 100
// groups; bench/policy_bench.cc). engine/policy_decide_test.cc holds the seed's examples and a
// property test that the two agree on random policies and queries.
//
// Pure and thread-safe (CompiledPolicy is immutable after Compile).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reducers/policy_model.h"

namespace cloister::engine {

enum class PolicySource : uint8_t {
  kUser = 0,           // The user's own rule.
  kGroup,              // A group's rule (subject: the group; at distance `distance`).
  kDefaultRuntime,     // No rule: runtime features are allowed.
  kDefaultConfigAdmin,  // No rule: a configuration change, allowed to an administrator.
  kDefaultConfigUser,   // No rule: a configuration change, denied to a non-administrator.
  kUnmatchable,         // Denied before any rule: the name asked cannot be matched honestly
                        // (a command path that is not absolute, or climbs with "..").
};

struct PolicyDecision {
  bool allow = true;
  PolicySource source = PolicySource::kDefaultRuntime;
  std::string rule;      // The rule name that decided ("" for defaults).
  std::string subject;   // The user or group that holds it ("" for defaults).
  int distance = 0;      // 0: the user; 1: a direct group; ...

  // "allow: com.veertu.ankahv.fs./Users/test/workspace1=allow (user test)",
  // "deny: com.veertu.ankahv.fs=deny (group developers, distance 2)",
  // "deny (default: configuration changes need an administrator)". A default names no rule (the
  // decision does not hold the query); the caller prints the query beside it.
  std::string Explain() const;
};

// The reference evaluator. An unknown user is decided as a user with no rules and no groups but
// "standard" (the caller reports unknown users; the tool refuses them first).
PolicyDecision Decide(const reducers::PolicyModel& model, const std::string& user,
                      std::string_view rule);

// One rule as it applies to a user: the rules listed by `policy rules` (the winner for every rule
// name the user or any of its groups holds, with where it came from), sorted by name.
std::vector<PolicyDecision> EffectiveRules(const reducers::PolicyModel& model,
                                           const std::string& user);

class CompiledPolicy {
 public:
  static std::unique_ptr<CompiledPolicy> Compile(const reducers::PolicyModel& model);
  ~CompiledPolicy();

  // Same answer as Decide(model, user, rule).
  PolicyDecision Decide(const std::string& user, std::string_view rule) const;
  // Just the verdict, without building the explanation (the fast path the benchmark measures).
  bool Allows(const std::string& user, std::string_view rule) const;

 private:
  CompiledPolicy() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cloister::engine
