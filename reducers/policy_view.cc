#include "reducers/policy_view.h"

namespace cloister::reducers {
namespace {

std::string Str(const flatbuffers::String* text) {
  return text == nullptr ? std::string() : text->str();
}

bool IsReserved(const std::string& name) {
  return name == kPolicyRootGroup || name == kPolicyAdminGroup;
}

// A user or a group, nullptr when the name is neither.
PolicySubject* FindSubject(PolicyModel* model, const std::string& name) {
  if (auto it = model->users.find(name); it != model->users.end()) return &it->second;
  if (auto it = model->groups.find(name); it != model->groups.end()) return &it->second;
  return nullptr;
}

void SetAdminKeys(PolicyUserKeys* keys, const policy_fb::AdminKeys* admin) {
  keys->public_key = admin == nullptr ? std::string() : PolicyBytes(admin->public_key());
  keys->private_key = PolicySealedOf(admin == nullptr ? nullptr : admin->private_key());
}

void AddUser(PolicyView* view, const policy_fb::UserRecord* record, bool administrator) {
  if (record == nullptr) return;
  std::string name = Str(record->name());
  if (name.empty() || view->model.users.contains(name) || view->model.groups.contains(name)) {
    return;
  }
  PolicySubject user;
  user.name = name;
  if (administrator) user.groups.insert(kPolicyAdminGroup);
  view->model.users.emplace(name, std::move(user));
  PolicyUserKeys keys = PolicyUserKeysOf(*record);
  if (!administrator) SetAdminKeys(&keys, nullptr);
  view->keys[name] = std::move(keys);
}

void Delete(PolicyView* view, const std::string& name) {
  if (IsReserved(name)) return;
  if (view->model.users.erase(name) > 0) {
    view->keys.erase(name);
    return;
  }
  if (view->model.groups.erase(name) == 0) return;
  for (auto& [_, user] : view->model.users) user.groups.erase(name);
  for (auto& [_, group] : view->model.groups) group.groups.erase(name);
}

void Join(PolicyView* view, const policy_fb::Joined& joined) {
  std::string member = Str(joined.member());
  std::string group = Str(joined.group());
  PolicySubject* subject = FindSubject(&view->model, member);
  if (subject == nullptr || group == member || group == kPolicyRootGroup ||
      !view->model.groups.contains(group)) {
    return;
  }
  if (group == kPolicyAdminGroup) {
    if (!view->model.users.contains(member)) return;  // Only users are administrators.
    SetAdminKeys(&view->keys[member], joined.admin_keys());
  }
  subject->groups.insert(group);
}

void Leave(PolicyView* view, const policy_fb::Left& left) {
  std::string member = Str(left.member());
  PolicySubject* subject = FindSubject(&view->model, member);
  if (subject == nullptr || left.groups() == nullptr) return;
  for (const flatbuffers::String* group : *left.groups()) {
    if (subject->groups.erase(Str(group)) > 0 && Str(group) == kPolicyAdminGroup) {
      if (auto it = view->keys.find(member); it != view->keys.end()) {
        SetAdminKeys(&it->second, nullptr);
      }
    }
  }
}

void Assign(PolicyView* view, const policy_fb::RulesAssigned& assigned) {
  PolicySubject* subject = FindSubject(&view->model, Str(assigned.subject()));
  if (subject == nullptr || assigned.rules() == nullptr) return;
  for (const policy_fb::Rule* rule : *assigned.rules()) {
    std::string name = Str(rule->name());
    if (!name.empty()) subject->rules[name] = rule->allow();
  }
}

void Retract(PolicyView* view, const policy_fb::RulesRetracted& retracted) {
  PolicySubject* subject = FindSubject(&view->model, Str(retracted.subject()));
  if (subject == nullptr || retracted.names() == nullptr) return;
  for (const flatbuffers::String* name : *retracted.names()) subject->rules.erase(Str(name));
}

}  // namespace

std::string PolicyBytes(const flatbuffers::Vector<uint8_t>* bytes) {
  if (bytes == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(bytes->data()), bytes->size());
}

PolicySealed PolicySealedOf(const policy_fb::Sealed* sealed) {
  if (sealed == nullptr) return {};
  return PolicySealed{PolicyBytes(sealed->nonce()), PolicyBytes(sealed->ciphertext()),
                      PolicyBytes(sealed->tag())};
}

PolicyUserKeys PolicyUserKeysOf(const policy_fb::UserRecord& record) {
  PolicyUserKeys keys;
  keys.salt = PolicyBytes(record.salt());
  if (const policy_fb::Argon2Params* params = record.argon2(); params != nullptr) {
    keys.argon2_memory_kib = params->memory_kib();
    keys.argon2_iterations = params->iterations();
    keys.argon2_parallelism = params->parallelism();
  }
  keys.verifier = PolicyBytes(record.password_verifier());
  keys.data_key = PolicySealedOf(record.data_key());
  SetAdminKeys(&keys, record.admin_keys());
  return keys;
}

PolicyView EmptyPolicyView() {
  PolicyView view;
  for (const char* name : {kPolicyRootGroup, kPolicyAdminGroup}) {
    view.model.groups.emplace(name, PolicySubject{name, {}, {}});
  }
  return view;
}

void ApplyPolicyEvent(PolicyView* view, const policy_fb::PolicyEventBody& body) {
  view->seq++;
  // A payload_as_* is nullptr when the type tag names a member the body does not hold, and for
  // a newer build's payload type: either changes only seq.
  if (const auto* created = body.payload_as_Created()) {
    // Only ever the first event (the chain checks it).
    AddUser(view, created->admin(), /*administrator=*/true);
  } else if (const auto* added = body.payload_as_UserAdded()) {
    AddUser(view, added->user(), added->administrator());
  } else if (const auto* group = body.payload_as_GroupAdded()) {
    std::string name = Str(group->name());
    if (!name.empty() && !view->model.users.contains(name) && !view->model.groups.contains(name)) {
      view->model.groups.emplace(name, PolicySubject{name, {}, {}});
    }
  } else if (const auto* deleted = body.payload_as_Deleted()) {
    Delete(view, Str(deleted->name()));
  } else if (const auto* joined = body.payload_as_Joined()) {
    Join(view, *joined);
  } else if (const auto* left = body.payload_as_Left()) {
    Leave(view, *left);
  } else if (const auto* assigned = body.payload_as_RulesAssigned()) {
    Assign(view, *assigned);
  } else if (const auto* retracted = body.payload_as_RulesRetracted()) {
    Retract(view, *retracted);
  }
}

}  // namespace cloister::reducers
