// The Anka Secure VM policy's user database as plain values (seed 000): users, groups and the
// rules assigned to each. What the policy chain reduces to (reducers/policy_view.h) and what the
// decision engine reads (engine/policy_decide.h). No logic but the verdict spellings.
//
// The tree: every user and group is implicitly in "standard" (the root); "administrators" is a
// predefined group inside standard. A user's `groups` are the groups it joined directly; a
// group's `groups` are the groups it is a member of (its parents). Neither ever lists
// "standard" (implied). Only users join "administrators", and a user is an administrator iff
// "administrators" is one of its direct groups. The reducer keeps the graph acyclic.
#pragma once

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace cloister::reducers {

inline constexpr char kPolicyRootGroup[] = "standard";
inline constexpr char kPolicyAdminGroup[] = "administrators";

struct PolicySubject {
  std::string name;
  std::set<std::string> groups;      // Direct groups (parents), never "standard".
  std::map<std::string, bool> rules;  // Rule name -> verdict (true: allow).

  bool operator==(const PolicySubject&) const = default;
};

struct PolicyModel {
  std::map<std::string, PolicySubject> users;   // By name.
  std::map<std::string, PolicySubject> groups;  // By name; always holds "standard" and
                                                // "administrators".

  bool IsAdministrator(const std::string& user) const {
    auto it = users.find(user);
    return it != users.end() && it->second.groups.contains(kPolicyAdminGroup);
  }

  bool operator==(const PolicyModel&) const = default;
};

// A verdict as the seed spells it, case-insensitively: true for allow, enable, 1, yes, on, pass,
// true; false for deny, disable, 0, no, off, block, false; nullopt for anything else (the caller
// names the value in its error).
inline std::optional<bool> ParseVerdict(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* yes : {"allow", "enable", "1", "yes", "on", "pass", "true"}) {
    if (lower == yes) return true;
  }
  for (const char* no : {"deny", "disable", "0", "no", "off", "block", "false"}) {
    if (lower == no) return false;
  }
  return std::nullopt;
}

}  // namespace cloister::reducers
