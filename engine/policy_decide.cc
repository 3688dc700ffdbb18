// The VM policy decision: the reference evaluator (Decide, EffectiveRules), the explanation, and
// the compiled fast path (CompiledPolicy). See policy_decide.h for the rules and docs/policy.md
// for worked examples.
//
// The two evaluators are written independently on purpose: the property test in
// policy_decide_test.cc checks one against the other. Only the defaults (a two-line function of
// the query and the administrator bit) are shared.
#include "engine/policy_decide.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

namespace cloister::engine {
namespace {

using reducers::kPolicyRootGroup;
using reducers::PolicyModel;
using Rules = std::map<std::string, bool>;

constexpr std::string_view kConfigRoots[] = {"com.veertu.anka.cfg", "com.veertu.ankahv.cfg"};

bool IsBoundary(char c) { return c == '.' || c == '/'; }

// N covers Q iff Q == N, or Q starts with N and the next character of Q is '.' or '/'.
bool Covers(std::string_view name, std::string_view query) {
  return query.starts_with(name) &&
         (query.size() == name.size() || IsBoundary(query[name.size()]));
}

bool IsConfiguration(std::string_view query) {
  return std::any_of(std::begin(kConfigRoots), std::end(kConfigRoots),
                     [&](std::string_view root) { return Covers(root, query); });
}

// The answer when no rule covers the query.
PolicyDecision DefaultDecision(bool administrator, std::string_view query) {
  PolicyDecision d;
  if (!IsConfiguration(query)) {
    d.allow = true;
    d.source = PolicySource::kDefaultRuntime;
  } else if (administrator) {
    d.allow = true;
    d.source = PolicySource::kDefaultConfigAdmin;
  } else {
    d.allow = false;
    d.source = PolicySource::kDefaultConfigUser;
  }
  return d;
}

// ---- The reference evaluator ---------------------------------------------------------------

// One subject on the user's chain: the user (distance 0), a group reached breadth first, or
// "standard" (farther than every group reached).
struct Holder {
  const std::string* name;
  int distance;
  const Rules* rules;
};

// The user, then its groups breadth first (shortest distance; each group once, so a cycle ends),
// then "standard". A group named but missing from model.groups is reached with no rules.
std::vector<Holder> Chain(const PolicyModel& model, const std::string& user,
                          std::set<std::string>* seen) {
  static const Rules kNoRules;
  static const std::string kRoot = kPolicyRootGroup;
  std::vector<Holder> chain;
  std::deque<Holder> queue;
  seen->insert(kRoot);  // "standard" is never an explicit step: it comes last.
  auto enqueue = [&](const std::set<std::string>& groups, int distance) {
    for (const std::string& g : groups) {
      auto [pos, fresh] = seen->insert(g);
      if (fresh) queue.push_back({&*pos, distance, &kNoRules});
    }
  };
  auto u = model.users.find(user);
  if (u != model.users.end()) {
    chain.push_back({&u->first, 0, &u->second.rules});
    enqueue(u->second.groups, 1);
  }
  int farthest = 0;
  while (!queue.empty()) {
    Holder h = queue.front();
    queue.pop_front();
    farthest = std::max(farthest, h.distance);
    auto g = model.groups.find(*h.name);
    if (g != model.groups.end()) {
      h.rules = &g->second.rules;
      enqueue(g->second.groups, h.distance + 1);
    }
    chain.push_back(h);
  }
  auto root = model.groups.find(kRoot);
  chain.push_back({&kRoot, farthest + 1, root != model.groups.end() ? &root->second.rules
                                                                     : &kNoRules});
  return chain;
}

}  // namespace

PolicyDecision Decide(const PolicyModel& model, const std::string& user, std::string_view rule) {
  std::set<std::string> seen;
  const std::vector<Holder> chain = Chain(model, user, &seen);

  // 1. The most specific rule name that covers the query, whoever holds it.
  const std::string* best = nullptr;
  for (const Holder& h : chain) {
    for (const auto& [name, verdict] : *h.rules) {
      if (Covers(name, rule) && (best == nullptr || name.size() > best->size())) best = &name;
    }
  }
  if (best == nullptr) return DefaultDecision(model.IsAdministrator(user), rule);

  // 2. The nearest holders of that name.
  int nearest = INT_MAX;
  for (const Holder& h : chain) {
    if (h.rules->contains(*best)) nearest = std::min(nearest, h.distance);
  }
  // 3. Among them deny wins; the subject is the first by name holding the winning verdict.
  bool allow = true;
  for (const Holder& h : chain) {
    auto it = h.rules->find(*best);
    if (h.distance == nearest && it != h.rules->end() && !it->second) allow = false;
  }
  const std::string* subject = nullptr;
  for (const Holder& h : chain) {
    auto it = h.rules->find(*best);
    if (h.distance == nearest && it != h.rules->end() && it->second == allow &&
        (subject == nullptr || *h.name < *subject)) {
      subject = h.name;
    }
  }

  PolicyDecision d;
  d.allow = allow;
  d.source = nearest == 0 ? PolicySource::kUser : PolicySource::kGroup;
  d.rule = *best;
  d.subject = *subject;
  d.distance = nearest;
  return d;
}

std::vector<PolicyDecision> EffectiveRules(const PolicyModel& model, const std::string& user) {
  std::set<std::string> seen;
  std::set<std::string> names;
  for (const Holder& h : Chain(model, user, &seen)) {
    for (const auto& [name, verdict] : *h.rules) names.insert(name);
  }
  // A held name covers itself, so its decision is decided by a rule of exactly that name.
  std::vector<PolicyDecision> out;
  out.reserve(names.size());
  for (const std::string& name : names) out.push_back(Decide(model, user, name));
  return out;
}

std::string PolicyDecision::Explain() const {
  const std::string verdict = allow ? "allow" : "deny";
  switch (source) {
    case PolicySource::kUser:
      return verdict + ": " + rule + "=" + verdict + " (user " + subject + ")";
    case PolicySource::kGroup:
      return verdict + ": " + rule + "=" + verdict + " (group " + subject + ", distance " +
             std::to_string(distance) + ")";
    case PolicySource::kDefaultRuntime:
      return verdict + " (default: runtime features are allowed)";
    case PolicySource::kDefaultConfigAdmin:
      return verdict + " (default: administrators may change the configuration)";
    case PolicySource::kDefaultConfigUser:
      return verdict + " (default: configuration changes need an administrator)";
    case PolicySource::kUnmatchable:
      return verdict + " (not an absolute path without '..': no rule can name it)";
  }
  return verdict;
}

// ---- The compiled policy -------------------------------------------------------------------
//
// Per known user (and one profile for every unknown user) an open-addressing hash table from
// rule name to its resolved winner, for every name the user or any group on its chain holds.
//
// The key hash is built so that the hash of every prefix of a query falls out of one pass over
// it, eight bytes at a time: a prefix of length i hashes as Finish(state after the i / 8 whole
// words, the i % 8 bytes left, i). The same pass finds the boundaries ('.' and '/', which differ
// only in their low bit) in each word without a loop over its bytes. At each boundary, and at the
// end, the profile's Bloom filter is asked first and the table only if it may hold a name; the
// last hit is the longest covering name. No allocation on the way.

namespace {

constexpr uint64_t kSeed = 0x243F6A8885A308D3ull;
constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7Full;

// Up to 8 bytes at p as a little-endian word, zero-padded.
inline uint64_t LoadWord(const char* p, size_t n) {
  uint64_t w = 0;
  if (n == 8) {
    std::memcpy(&w, p, 8);
  } else {
    std::memcpy(&w, p, n);
  }
  if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
  return w;
}

// 0x80 in every byte of w that is '.' (0x2E) or '/' (0x2F); zero padding is neither.
inline uint64_t BoundaryBytes(uint64_t w) {
  const uint64_t t = (w | kOnes) ^ (0x2F * kOnes);  // Zero bytes where w was '.' or '/'.
  return ~(((t & kLow7) + kLow7) | t | kLow7);
}

// The first j bytes (j < 8) of a word.
inline uint64_t FirstBytes(uint64_t w, size_t j) { return w & ((uint64_t{1} << (8 * j)) - 1); }

inline uint64_t Absorb(uint64_t state, uint64_t word) {
  const uint64_t x = (state ^ word) * 0x9E3779B97F4A7C15ull;
  return x ^ (x >> 32);
}

inline uint64_t Finish(uint64_t state, uint64_t tail, size_t len) {
  uint64_t h = state ^ tail ^ (static_cast<uint64_t>(len) * 0xC2B2AE3D27D4EB4Full);
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  return h;
}

// The hash of a whole name: what the query walk computes for the prefix of the same length.
uint64_t Hash(std::string_view s) {
  uint64_t state = kSeed;
  size_t b = 0;
  for (; b + 8 <= s.size(); b += 8) state = Absorb(state, LoadWord(s.data() + b, 8));
  return Finish(state, LoadWord(s.data() + b, s.size() - b), s.size());
}

size_t TableSize(size_t entries) {
  size_t n = 4;
  while (n < entries * 2) n *= 2;
  return n;
}

}  // namespace

struct CompiledPolicy::Impl {
  // A resolved rule name for one profile. name == nullptr: an empty slot.
  struct Slot {
    uint64_t hash = 0;
    const char* name = nullptr;  // Into `arena`.
    uint32_t len = 0;
    bool allow = true;
    PolicySource source = PolicySource::kGroup;
    int32_t subject = -1;  // Index into `subjects`.
    int32_t distance = 0;
  };

  struct Profile {
    uint64_t bloom[8] = {};  // One bit per held name, by the hash's top 9 bits.
    uint64_t mask = 0;
    bool administrator = false;
    std::vector<Slot> slots;

    void Insert(const Slot& s) {
      bloom[s.hash >> 61] |= uint64_t{1} << ((s.hash >> 55) & 63);
      uint64_t i = s.hash & mask;
      while (slots[i].name != nullptr) i = (i + 1) & mask;
      slots[i] = s;
    }

    const Slot* Find(uint64_t hash, const char* name, size_t len) const {
      if ((bloom[hash >> 61] >> ((hash >> 55) & 63) & 1) == 0) return nullptr;
      for (uint64_t i = hash & mask;; i = (i + 1) & mask) {
        const Slot& s = slots[i];
        if (s.name == nullptr) return nullptr;
        if (s.hash == hash && s.len == len && std::memcmp(s.name, name, len) == 0) return &s;
      }
    }

    // The slot of the longest name that covers `query`, or nullptr.
    const Slot* Longest(std::string_view query) const {
      const char* q = query.data();
      const size_t n = query.size();
      const Slot* best = nullptr;
      uint64_t state = kSeed;
      size_t b = 0;
      auto boundaries = [&](uint64_t word) {
        for (uint64_t m = BoundaryBytes(word); m != 0; m &= m - 1) {
          const size_t j = static_cast<size_t>(std::countr_zero(m)) / 8;
          const Slot* s = Find(Finish(state, FirstBytes(word, j), b + j), q, b + j);
          if (s != nullptr) best = s;
        }
      };
      for (; b + 8 <= n; b += 8) {
        const uint64_t word = LoadWord(q + b, 8);
        boundaries(word);
        state = Absorb(state, word);
      }
      const uint64_t tail = LoadWord(q + b, n - b);
      boundaries(tail);
      if (const Slot* s = Find(Finish(state, tail, n), q, n)) best = s;
      return best;
    }
  };

  struct UserSlot {
    uint64_t hash = 0;
    const std::string* name = nullptr;  // Into `subjects`; nullptr: empty.
    uint32_t profile = 0;
  };

  std::string arena;                  // Every rule name held, back to back (for locality).
  std::vector<std::string> subjects;  // Groups (by id), then users.
  std::vector<Profile> profiles;      // One per known user, then the unknown user's.
  std::vector<UserSlot> users;
  uint64_t user_mask = 0;

  const Profile& ProfileOf(const std::string& user) const {
    const uint64_t h = Hash(user);
    for (uint64_t i = h & user_mask;; i = (i + 1) & user_mask) {
      const UserSlot& s = users[i];
      if (s.name == nullptr) return profiles.back();
      if (s.hash == h && *s.name == user) return profiles[s.profile];
    }
  }
};

namespace {

// The group graph with ids, for resolving every user's chain at compile time.
struct Graph {
  std::unordered_map<std::string, int> ids;  // Every group named anywhere but "standard".
  std::vector<std::string> names;
  std::vector<std::vector<int>> parents;
  std::vector<const Rules*> rules;  // nullptr: named but not defined.

  int Id(const std::string& name) {
    auto [it, fresh] = ids.emplace(name, static_cast<int>(names.size()));
    if (fresh) {
      names.push_back(name);
      parents.emplace_back();
      rules.push_back(nullptr);
    }
    return it->second;
  }
};

struct Winner {
  bool allow = true;
  int32_t subject = -1;
  int32_t distance = 0;
};

}  // namespace

std::unique_ptr<CompiledPolicy> CompiledPolicy::Compile(const PolicyModel& model) {
  std::unique_ptr<CompiledPolicy> out(new CompiledPolicy());
  out->impl_ = std::make_unique<Impl>();
  Impl& impl = *out->impl_;

  Graph graph;
  for (const auto& [name, group] : model.groups) {
    if (name == kPolicyRootGroup) continue;
    const int id = graph.Id(name);
    graph.rules[id] = &group.rules;
  }
  for (const auto& [name, group] : model.groups) {
    if (name == kPolicyRootGroup) continue;
    const int id = graph.Id(name);
    for (const std::string& parent : group.groups) {
      if (parent == kPolicyRootGroup) continue;
      const int parent_id = graph.Id(parent);  // May grow graph.parents: look it up after.
      graph.parents[id].push_back(parent_id);
    }
  }
  for (const auto& [name, user] : model.users) {
    for (const std::string& g : user.groups) {
      if (g != kPolicyRootGroup) graph.Id(g);
    }
  }
  const int groups = static_cast<int>(graph.names.size());
  impl.subjects = graph.names;
  const int32_t root_subject = static_cast<int32_t>(impl.subjects.size());
  impl.subjects.push_back(kPolicyRootGroup);
  auto root = model.groups.find(kPolicyRootGroup);
  const Rules* root_rules = root != model.groups.end() ? &root->second.rules : nullptr;

  std::set<std::string> interned;     // Every rule name held; slots point here until the end.
  std::vector<int> stamp(groups, -1);  // BFS visit marks, by profile number.
  std::vector<int> frontier;
  std::vector<int> next;

  // One profile: the user's own rules (may be null), its direct groups, the administrator bit.
  auto build = [&](int number, int32_t user_subject, const Rules* own,
                   const std::set<std::string>* direct, bool administrator) {
    std::unordered_map<const std::string*, Winner> winners;  // Keyed by the interned name.
    auto intern = [&](const std::string& name) { return &*interned.insert(name).first; };
    // Same distance: deny wins, then the first subject by name among those with the verdict.
    auto offer = [&](const Rules* rules, int32_t subject, int distance) {
      for (const auto& [name, verdict] : *rules) {
        auto [it, fresh] = winners.try_emplace(intern(name), Winner{verdict, subject, distance});
        Winner& w = it->second;
        if (fresh || w.distance < distance) continue;
        if (w.distance > distance || (w.allow && !verdict) ||
            (w.allow == verdict && impl.subjects[subject] < impl.subjects[w.subject])) {
          w = Winner{verdict, subject, distance};
        }
      }
    };
    if (own != nullptr) offer(own, user_subject, 0);
    frontier.clear();
    if (direct != nullptr) {
      for (const std::string& g : *direct) {
        if (g == kPolicyRootGroup) continue;
        const int id = graph.ids.at(g);
        if (stamp[id] != number) {
          stamp[id] = number;
          frontier.push_back(id);
        }
      }
    }
    int farthest = 0;
    for (int distance = 1; !frontier.empty(); distance++) {
      farthest = distance;
      next.clear();
      for (int id : frontier) {
        if (graph.rules[id] != nullptr) offer(graph.rules[id], id, distance);
        for (int parent : graph.parents[id]) {
          if (stamp[parent] != number) {
            stamp[parent] = number;
            next.push_back(parent);
          }
        }
      }
      frontier.swap(next);
    }
    if (root_rules != nullptr) offer(root_rules, root_subject, farthest + 1);

    Impl::Profile p;
    p.administrator = administrator;
    p.slots.resize(TableSize(winners.size()));
    p.mask = p.slots.size() - 1;
    for (const auto& [name, w] : winners) {
      Impl::Slot s;
      s.hash = Hash(*name);
      s.name = name->data();
      s.len = static_cast<uint32_t>(name->size());
      s.allow = w.allow;
      s.source = w.distance == 0 ? PolicySource::kUser : PolicySource::kGroup;
      s.subject = w.subject;
      s.distance = w.distance;
      p.Insert(s);
    }
    impl.profiles.push_back(std::move(p));
  };

  int number = 0;
  for (const auto& [name, user] : model.users) {
    const int32_t subject = static_cast<int32_t>(impl.subjects.size());
    impl.subjects.push_back(name);
    build(number++, subject, &user.rules, &user.groups, model.IsAdministrator(name));
  }
  build(number, -1, nullptr, nullptr, false);  // Unknown users: only "standard".

  // The names move to one block, in order, so that checking a hit touches nearby memory.
  std::unordered_map<const char*, size_t> offsets;
  size_t total = 0;
  for (const std::string& name : interned) total += name.size();
  impl.arena.reserve(total);
  for (const std::string& name : interned) {
    offsets[name.data()] = impl.arena.size();
    impl.arena += name;
  }
  for (Impl::Profile& p : impl.profiles) {
    for (Impl::Slot& s : p.slots) {
      if (s.name != nullptr) s.name = impl.arena.data() + offsets.at(s.name);
    }
  }

  // The users table (after `subjects` stops growing: it points into it).
  impl.users.resize(TableSize(model.users.size()));
  impl.user_mask = impl.users.size() - 1;
  uint32_t profile = 0;
  for (size_t k = groups + 1; k < impl.subjects.size(); k++) {
    Impl::UserSlot s{Hash(impl.subjects[k]), &impl.subjects[k], profile++};
    uint64_t i = s.hash & impl.user_mask;
    while (impl.users[i].name != nullptr) i = (i + 1) & impl.user_mask;
    impl.users[i] = s;
  }
  return out;
}

CompiledPolicy::~CompiledPolicy() = default;

PolicyDecision CompiledPolicy::Decide(const std::string& user, std::string_view rule) const {
  const Impl::Profile& p = impl_->ProfileOf(user);
  const Impl::Slot* s = p.Longest(rule);
  if (s == nullptr) return DefaultDecision(p.administrator, rule);
  PolicyDecision d;
  d.allow = s->allow;
  d.source = s->source;
  d.rule.assign(s->name, s->len);
  d.subject = impl_->subjects[s->subject];
  d.distance = s->distance;
  return d;
}

bool CompiledPolicy::Allows(const std::string& user, std::string_view rule) const {
  const Impl::Profile& p = impl_->ProfileOf(user);
  if (const Impl::Slot* s = p.Longest(rule)) return s->allow;
  return p.administrator || !IsConfiguration(rule);
}

}  // namespace cloister::engine
