// ApplyPolicyEvent on hand-built bodies: what each change does, and totality (a body naming
// unknown users or groups changes only seq). Signatures and the model's rules are the chain's
// (engine/policy_chain_test.cc).
#include "reducers/policy_view.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

namespace cloister::reducers {
namespace {

namespace fb = policy_fb;
using Builder = flatbuffers::FlatBufferBuilder;
using Payload = std::pair<fb::PolicyPayload, flatbuffers::Offset<void>>;

void Apply(PolicyView* view, const std::function<Payload(Builder&)>& make) {
  Builder fbb;
  auto [kind, payload] = make(fbb);
  auto body = fb::CreatePolicyEventBody(fbb, view->seq + 1, nullptr, 0, 0, kind, payload);
  fbb.Finish(body, "CLPB");
  std::string bytes(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  ApplyPolicyEvent(view, *flatbuffers::GetRoot<fb::PolicyEventBody>(bytes.data()));
}

void AddUser(PolicyView* view, const std::string& name, bool administrator) {
  Apply(view, [&](Builder& fbb) {
    flatbuffers::Offset<fb::AdminKeys> keys;
    if (administrator) {
      std::vector<uint8_t> key = {1, 2, 3};
      keys = fb::CreateAdminKeysDirect(fbb, &key, fb::CreateSealedDirect(fbb));
    }
    std::vector<uint8_t> salt(16, 7);
    auto record = fb::CreateUserRecordDirect(fbb, name.c_str(), &salt, nullptr, nullptr, 0, keys);
    return Payload{fb::PolicyPayload::UserAdded,
                   fb::CreateUserAdded(fbb, record, administrator).Union()};
  });
}

void AddGroup(PolicyView* view, const std::string& name) {
  Apply(view, [&](Builder& fbb) {
    return Payload{fb::PolicyPayload::GroupAdded,
                   fb::CreateGroupAddedDirect(fbb, name.c_str()).Union()};
  });
}

void Join(PolicyView* view, const std::string& member, const std::string& group) {
  Apply(view, [&](Builder& fbb) {
    return Payload{fb::PolicyPayload::Joined,
                   fb::CreateJoinedDirect(fbb, member.c_str(), group.c_str()).Union()};
  });
}

void Delete(PolicyView* view, const std::string& name) {
  Apply(view, [&](Builder& fbb) {
    return Payload{fb::PolicyPayload::Deleted, fb::CreateDeletedDirect(fbb, name.c_str()).Union()};
  });
}

void Leave(PolicyView* view, const std::string& member, const std::string& group) {
  Apply(view, [&](Builder& fbb) {
    auto member_offset = fbb.CreateString(member);
    auto groups = fbb.CreateVectorOfStrings(std::vector<std::string>{group});
    return Payload{fb::PolicyPayload::Left, fb::CreateLeft(fbb, member_offset, groups).Union()};
  });
}

TEST_CASE("an empty policy view has the two predefined groups and nothing else") {
  PolicyView view = EmptyPolicyView();
  CHECK(view.model.groups.size() == 2);
  CHECK(view.model.groups.contains("standard"));
  CHECK(view.model.groups.contains("administrators"));
  CHECK(view.model.users.empty());
  CHECK(view.seq == 0);
}

TEST_CASE("users, groups and membership follow the events") {
  PolicyView view = EmptyPolicyView();
  AddUser(&view, "alice", true);
  AddUser(&view, "bob", false);
  AddGroup(&view, "dev");
  AddGroup(&view, "qa");
  Join(&view, "bob", "dev");
  Join(&view, "dev", "qa");
  CHECK(view.model.IsAdministrator("alice"));
  CHECK(view.keys.at("alice").public_key == std::string("\x01\x02\x03", 3));
  CHECK(view.keys.at("bob").salt == std::string(16, '\x07'));
  CHECK(view.model.users.at("bob").groups == std::set<std::string>{"dev"});
  CHECK(view.model.groups.at("dev").groups == std::set<std::string>{"qa"});

  // A deleted group leaves every subject that was in it.
  Delete(&view, "qa");
  CHECK(view.model.groups.at("dev").groups.empty());
  // Leaving administrators drops the key pair.
  Leave(&view, "alice", "administrators");
  CHECK_FALSE(view.model.IsAdministrator("alice"));
  CHECK(view.keys.at("alice").public_key.empty());
  Delete(&view, "bob");
  CHECK_FALSE(view.keys.contains("bob"));
  CHECK(view.seq == 9);
}

TEST_CASE("a body naming unknown subjects, or reserved groups, changes only seq") {
  PolicyView view = EmptyPolicyView();
  AddUser(&view, "alice", true);
  AddGroup(&view, "dev");
  PolicyView before = view;
  Join(&view, "ghost", "dev");
  Join(&view, "alice", "ghost");
  Join(&view, "dev", "dev");
  Join(&view, "dev", "administrators");  // Only users are administrators.
  Delete(&view, "standard");
  Delete(&view, "ghost");
  Leave(&view, "ghost", "dev");
  AddGroup(&view, "alice");  // A name already taken.
  AddUser(&view, "dev", false);
  Apply(&view, [](Builder&) { return Payload{fb::PolicyPayload::NONE, 0}; });
  CHECK(view.seq == before.seq + 10);
  view.seq = before.seq;
  CHECK(view == before);
}

}  // namespace
}  // namespace cloister::reducers
