// The VM policy chain: changes, the file round trip, authentication, the model's rules, the data
// key, detached signatures, and every kind of tampering the chain must catch (naming the event).
//
// Argon2id costs ~50-100 ms per password, so one base policy is made once and every test starts
// from a Load of its file (Load derives nothing). Each test's comment counts its derivations.
#include "engine/policy_chain.h"

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "engine/policy_crypto.h"
#include "log/base64.h"
#include "log/policy_generated.h"
#include "reducers/policy_view.h"

namespace cloister::engine {
namespace {

namespace pc = policy_crypto;
namespace fb = policy_fb;

const PolicyLogin kAlice{"alice", "alice-secret-pw"};  // Creates the policy.
const PolicyLogin kBob{"bob", "bob-secret-pw"};        // A regular user, in dev.
const PolicyLogin kCarol{"carol", "carol-secret-pw"};  // A second administrator.

// The base policy's file: 7 events, 9 derivations, made once.
//   1 create alice; 2 addgroup dev; 3 adduser bob; 4 adduser carol (administrator);
//   5 join bob dev; 6 assign dev; 7 assign bob.
const std::string& BaseFile() {
  static const std::string file = [] {
    Result<PolicyChain> chain = PolicyChain::Create(kAlice);
    REQUIRE(chain.ok());
    REQUIRE(chain->AddGroup(kAlice, "dev").ok());
    REQUIRE(chain->AddUser(kAlice, kBob.user, kBob.password, false).ok());
    REQUIRE(chain->AddUser(kAlice, kCarol.user, kCarol.password, true).ok());
    REQUIRE(chain->Join(kAlice, "bob", "dev").ok());
    REQUIRE(chain->Assign(kAlice, "dev", {"com.veertu.ankahv.fs=deny", "com.veertu.ankahv.net=1"})
                .ok());
    REQUIRE(
        chain->Assign(kAlice, "bob", {"com.veertu.ankahv.fs./Users/test/workspace1=allow"}).ok());
    return chain->Serialize();
  }();
  return file;
}

PolicyChain Base() {
  Result<PolicyChain> chain = PolicyChain::Load(BaseFile());
  REQUIRE(chain.ok());
  return std::move(chain).value();
}

// What Load says of these signed events.
std::string LoadError(const std::vector<std::string>& events) {
  Result<PolicyChain> chain = PolicyChain::FromEvents(events);
  REQUIRE_FALSE(chain.ok());
  return chain.status().message();
}

std::string Body(const std::string& signed_event) {
  const auto* event = fb::GetSignedPolicyEvent(signed_event.data());
  return reducers::PolicyBytes(event->body());
}

std::string SignatureOf(const std::string& signed_event) {
  const auto* event = fb::GetSignedPolicyEvent(signed_event.data());
  return reducers::PolicyBytes(event->signature());
}

std::string Wrap(std::string_view body, std::string_view signature) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceVectorAlignment(body.size(), 1, 8);
  auto b = fbb.CreateVector(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  auto s = fbb.CreateVector(reinterpret_cast<const uint8_t*>(signature.data()), signature.size());
  fb::FinishSignedPolicyEventBuffer(fbb, fb::CreateSignedPolicyEvent(fbb, b, s));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::array<uint8_t, 32> FromHex(const std::string& hex) {
  REQUIRE(hex.size() == 64);
  std::array<uint8_t, 32> out;
  for (size_t i = 0; i < out.size(); i++) out[i] = std::stoi(hex.substr(2 * i, 2), nullptr, 16);
  return out;
}

// A hand-made "addgroup" event that follows chain, signed by `signer` with `key`.
std::string ForgedAddGroup(const PolicyChain& chain, const std::string& signer,
                           const pc::SecretBytes& key) {
  flatbuffers::FlatBufferBuilder fbb;
  auto group = fb::CreateGroupAddedDirect(fbb, "intruders");
  auto signer_offset = fbb.CreateString(signer);
  std::array<uint8_t, 32> head = FromHex(chain.HeadHash());
  fb::Sha256 prev(flatbuffers::span<const uint8_t, 32>(head.data(), head.size()));
  auto body =
      fb::CreatePolicyEventBody(fbb, chain.signed_events().size() + 1, &prev, 0, signer_offset,
                                fb::PolicyPayload::GroupAdded, group.Union());
  fbb.Finish(body, "CLPB");
  std::string bytes(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  std::string message = std::string("cloister-policy-event-v1") + '\0' + bytes;
  Result<std::string> signature = pc::SignPss(key, message);
  REQUIRE(signature.ok());
  return Wrap(bytes, *signature);
}

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

TEST_CASE("a policy is created, changed, saved and loaded back unchanged") {
  // 9 derivations (BaseFile), then none: Load checks signatures, not passwords.
  PolicyChain chain = Base();
  const reducers::PolicyModel& model = chain.model();
  CHECK(model.users.size() == 3);
  CHECK(model.IsAdministrator("alice"));
  CHECK(model.IsAdministrator("carol"));
  CHECK_FALSE(model.IsAdministrator("bob"));
  CHECK(model.users.at("bob").groups == std::set<std::string>{"dev"});
  CHECK(model.groups.size() == 3);  // standard, administrators, dev.
  CHECK(model.groups.at("dev").rules ==
        std::map<std::string, bool>{{"com.veertu.ankahv.fs", false},
                                    {"com.veertu.ankahv.net", true}});
  CHECK(model.users.at("bob").rules.at("com.veertu.ankahv.fs./Users/test/workspace1"));
  CHECK(chain.signed_events().size() == 7);

  CHECK(chain.Serialize() == BaseFile());
  CHECK(BaseFile().rfind("{\n  \"format\": \"cloister-policy\",\n  \"version\": 1,", 0) == 0);
  CHECK(BaseFile().back() == '\n');
  Result<PolicyChain> again = PolicyChain::FromEvents(chain.signed_events());
  REQUIRE(again.ok());
  CHECK(again->model() == model);
  CHECK(again->HeadHash() == chain.HeadHash());
  CHECK(chain.HeadHash().size() == 64);

  // The reducer alone, over the same bodies, gives the same model (and is deterministic).
  reducers::PolicyView view = reducers::EmptyPolicyView();
  for (const std::string& event : chain.signed_events()) {
    std::string body = Body(event);
    reducers::ApplyPolicyEvent(&view, *flatbuffers::GetRoot<fb::PolicyEventBody>(body.data()));
  }
  CHECK(view.model == model);
  CHECK(view.seq == 7);
  CHECK(view.keys.size() == 3);
  CHECK_FALSE(view.keys.at("alice").public_key.empty());
  CHECK_FALSE(view.keys.at("carol").public_key.empty());
  CHECK(view.keys.at("bob").public_key.empty());
  CHECK(view.keys.at("bob").private_key.empty());
}

TEST_CASE("deletes, leaves and retracts round trip through the file") {
  // 5 derivations: one per change.
  PolicyChain chain = Base();
  REQUIRE(chain.AddGroup(kAlice, "qa").ok());
  REQUIRE(chain.Join(kCarol, "dev", "qa").ok());
  REQUIRE(chain.Retract(kCarol, "dev", {"com.veertu.ankahv.net"}).ok());
  REQUIRE(chain.Leave(kAlice, "bob", {}).ok());
  REQUIRE(chain.Delete(kAlice, "qa").ok());
  CHECK(chain.model().users.at("bob").groups.empty());
  CHECK(chain.model().groups.at("dev").groups.empty());  // qa went, and dev left it.
  CHECK(chain.model().groups.at("dev").rules.size() == 1);
  CHECK_FALSE(chain.model().groups.contains("qa"));

  Result<PolicyChain> loaded = PolicyChain::Load(chain.Serialize());
  REQUIRE(loaded.ok());
  CHECK(loaded->model() == chain.model());
  CHECK(loaded->HeadHash() == chain.HeadHash());
  CHECK(loaded->signed_events().size() == 12);
}

TEST_CASE("authentication tells a wrong password and an unknown user apart") {
  // 4 derivations.
  PolicyChain chain = Base();
  CHECK(chain.Authenticate(kBob).ok());
  Status wrong = chain.Authenticate({"bob", "nope"});
  CHECK(wrong.message() == "wrong password for bob");
  CHECK(chain.Authenticate({"mallory", "x"}).message() == "unknown user mallory");
  CHECK(chain.Authenticate({"dev", ""}).message() == "unknown user dev");  // Groups cannot log in.
  std::string head = chain.HeadHash();
  CHECK(chain.AddGroup({"alice", "wrong"}, "qa").message() == "wrong password for alice");
  CHECK(chain.HeadHash() == head);
  CHECK(chain.signed_events().size() == 7);
}

TEST_CASE("only an administrator changes a policy") {
  // 0 derivations: the role is checked first.
  PolicyChain chain = Base();
  CHECK(chain.AddGroup(kBob, "qa").message() == "bob is not an administrator of this policy");
  CHECK(chain.Assign(kBob, "bob", {"com.veertu.anka.cfg=allow"}).message() ==
        "bob is not an administrator of this policy");
  CHECK(chain.Sign(kBob, "x").status().message() == "bob is not an administrator of this policy");
  CHECK(chain.signed_events().size() == 7);
}

TEST_CASE("the last administrator can neither go nor leave") {
  // 5 derivations.
  PolicyChain chain = Base();
  REQUIRE(chain.Delete(kAlice, "carol").ok());
  CHECK(chain.Delete(kAlice, "alice").message() == "administrators must keep at least one user");
  CHECK(chain.Leave(kAlice, "alice", {"administrators"}).message() ==
        "administrators must keep at least one user");
  CHECK(chain.Leave(kAlice, "alice", {}).message() == "administrators must keep at least one user");
  CHECK(chain.model().IsAdministrator("alice"));

  // With two, one may leave; the one who left no longer signs.
  PolicyChain two = Base();
  REQUIRE(two.Leave(kAlice, "carol", {"administrators"}).ok());
  CHECK(two.AddGroup(kCarol, "qa").message() == "carol is not an administrator of this policy");
  Result<PolicyChain> loaded = PolicyChain::Load(two.Serialize());
  REQUIRE(loaded.ok());
  CHECK_FALSE(loaded->model().IsAdministrator("carol"));
}

TEST_CASE("changes that break the model's rules are refused and append nothing") {
  // 1 derivation per call that passes authentication: 17.
  PolicyChain chain = Base();
  CHECK(chain.AddUser(kAlice, "bob", "x", false).message() == "user bob already exists");
  CHECK(chain.AddUser(kAlice, "dev", "x", false).message() == "group dev already exists");
  CHECK(chain.AddGroup(kAlice, "bob").message() == "user bob already exists");
  CHECK(chain.AddGroup(kAlice, "standard").message() == "standard is a predefined group");
  CHECK(chain.AddGroup(kAlice, "a b").message() ==
        "bad group name 'a b': no spaces or control characters");
  CHECK(chain.Delete(kAlice, "nobody").message() == "no user or group named nobody");
  CHECK(chain.Delete(kAlice, "standard").message() == "the group standard cannot be deleted");
  CHECK(chain.Delete(kAlice, "administrators").message() ==
        "the group administrators cannot be deleted");
  CHECK(chain.Join(kAlice, "dev", "dev").message() ==
        "a group may not join itself or its own member");
  CHECK(chain.Join(kAlice, "dev", "administrators").message() ==
        "only users may join administrators");
  CHECK(chain.Join(kAlice, "bob", "administrators").message() ==
        "joining administrators needs the password of bob");
  CHECK(chain.Join(kAlice, "bob", "dev").message() == "bob is in dev already");
  CHECK(chain.Join(kAlice, "bob", "carol").message() == "carol is a user, not a group");
  CHECK(chain.Assign(kAlice, "bob", {"r=maybe"}).message() == "bad verdict 'maybe' for rule r");
  CHECK(chain.Assign(kAlice, "bob", {"no verdict"}).message() ==
        "bad rule 'no verdict': expected name=verdict");
  CHECK(chain.Assign(kAlice, "ghost", {"r=1"}).message() == "no user or group named ghost");
  CHECK(chain.Retract(kAlice, "bob", {"never.assigned"}).message() ==
        "bob has no rule never.assigned");
  CHECK(chain.signed_events().size() == 7);

  // A cycle through two groups: 3 more.
  REQUIRE(chain.AddGroup(kAlice, "qa").ok());
  REQUIRE(chain.Join(kAlice, "qa", "dev").ok());
  CHECK(chain.Join(kAlice, "dev", "qa").message() ==
        "a group may not join itself or its own member");
}

TEST_CASE("a user who joins administrators gets a key pair and can sign") {
  // 4 derivations for the join (alice, bob's wrong then right password), 1 for bob's change.
  PolicyChain chain = Base();
  CHECK(chain.Join(kAlice, "bob", "administrators", "wrong").message() == "wrong password for bob");
  REQUIRE(chain.Join(kAlice, "bob", "administrators", kBob.password).ok());
  CHECK(chain.model().IsAdministrator("bob"));
  REQUIRE(chain.AddGroup(kBob, "bobs").ok());
  Result<PolicyChain> loaded = PolicyChain::Load(chain.Serialize());
  REQUIRE(loaded.ok());
  CHECK(loaded->model().groups.contains("bobs"));
}

TEST_CASE("every user unwraps the same data key with their password, and nobody else") {
  // 5 derivations.
  PolicyChain chain = Base();
  Result<std::array<uint8_t, 32>> alice = chain.UnwrapDataKey(kAlice);
  Result<std::array<uint8_t, 32>> bob = chain.UnwrapDataKey(kBob);
  Result<std::array<uint8_t, 32>> carol = chain.UnwrapDataKey(kCarol);
  REQUIRE(alice.ok());
  REQUIRE(bob.ok());
  REQUIRE(carol.ok());
  CHECK(*alice == *bob);
  CHECK(*alice == *carol);
  CHECK(*alice != std::array<uint8_t, 32>{});
  CHECK(chain.UnwrapDataKey({"bob", "alice-secret-pw"}).status().message() ==
        "wrong password for bob");
  CHECK(chain.UnwrapDataKey({"dev", ""}).status().message() == "unknown user dev");
}

TEST_CASE("detached signatures verify against the administrators in force") {
  // 1 derivation.
  PolicyChain chain = Base();
  const std::string doc = "cpu: 4\nram: 8G\n";
  Result<std::string> signature = chain.Sign(kAlice, doc);
  REQUIRE(signature.ok());
  CHECK(chain.Verify(doc, "alice", *signature).ok());
  CHECK(chain.Verify(doc, "alice", *signature + "\n").ok());
  CHECK_FALSE(chain.Verify("cpu: 8\nram: 8G\n", "alice", *signature).ok());
  CHECK_FALSE(chain.Verify(doc, "carol", *signature).ok());
  CHECK(chain.Verify(doc, "bob", *signature).message() ==
        "bob is not an administrator of this policy");
  CHECK(chain.Verify(doc, "alice", "!!").message() == "the signature is not base64");

  // An event's signature never passes for a document's, nor the other way round.
  const std::string& event = chain.signed_events()[1];
  CHECK_FALSE(chain.Verify(Body(event), "alice", log::Base64Encode(SignatureOf(event))).ok());
}

TEST_CASE("a byte changed in an event's body fails validation at that event") {
  PolicyChain chain = Base();
  std::vector<std::string> events = chain.signed_events();
  // Event 6 assigns dev's rules: change a letter of a rule name, keeping the flatbuffer valid.
  std::string& event = events[5];
  size_t at = event.find("com.veertu.ankahv.fs");
  REQUIRE(at != std::string::npos);
  event[at + 18] = 'x';
  CHECK(LoadError(events) == "event 6 (assign): bad signature by alice (edited or forged)");

  // A byte anywhere: some make the event unreadable, all name event 4.
  std::vector<std::string> damaged = chain.signed_events();
  for (size_t i = 0; i < damaged[3].size(); i += 97) {
    std::vector<std::string> copy = damaged;
    copy[3][i] = static_cast<char>(copy[3][i] ^ 0x41);
    CHECK(LoadError(copy).rfind("event 4", 0) == 0);
  }
}

TEST_CASE("a removed or reordered event fails validation at the first misplaced one") {
  PolicyChain chain = Base();
  std::vector<std::string> removed = chain.signed_events();
  removed.erase(removed.begin() + 2);
  CHECK(LoadError(removed) ==
        "event 3: hash of the previous event does not match (removed or reordered)");

  std::vector<std::string> swapped = chain.signed_events();
  std::swap(swapped[3], swapped[4]);
  CHECK(LoadError(swapped) ==
        "event 4: hash of the previous event does not match (removed or reordered)");

  std::vector<std::string> genesis_dropped(chain.signed_events().begin() + 1,
                                           chain.signed_events().end());
  CHECK(LoadError(genesis_dropped) ==
        "event 1: hash of the previous event does not match (removed or reordered)");
}

TEST_CASE("an event signed by anyone but an administrator in force is refused") {
  PolicyChain chain = Base();
  pc::RsaKeyPair stranger = pc::GenerateRsaKeyPair();

  // bob is a user, not an administrator: his name on the event does not help.
  std::vector<std::string> events = chain.signed_events();
  events.push_back(ForgedAddGroup(chain, "bob", stranger.private_key));
  CHECK(LoadError(events) == "event 8 (addgroup): signature by bob, who is not an administrator");

  // alice's name with another key.
  events.back() = ForgedAddGroup(chain, "alice", stranger.private_key);
  CHECK(LoadError(events) == "event 8 (addgroup): bad signature by alice (edited or forged)");

  // A name the policy does not know.
  events.back() = ForgedAddGroup(chain, "mallory", stranger.private_key);
  CHECK(LoadError(events) == "event 8 (addgroup): signature by mallory, who is not a user");

  // AppendSigned checks the same way and leaves the chain as it was.
  std::string head = chain.HeadHash();
  CHECK(chain.AppendSigned(events.back()).message() ==
        "event 8 (addgroup): signature by mallory, who is not a user");
  CHECK(chain.HeadHash() == head);
}

TEST_CASE("a signature copied from another event does not validate") {
  PolicyChain chain = Base();
  std::vector<std::string> events = chain.signed_events();
  events[4] = Wrap(Body(events[4]), SignatureOf(events[3]));  // Both by alice.
  CHECK(LoadError(events) == "event 5 (join): bad signature by alice (edited or forged)");
}

TEST_CASE("AppendSigned takes the next event made by another copy") {
  // 1 derivation.
  PolicyChain source = Base();
  PolicyChain mirror = Base();
  REQUIRE(source.AddGroup(kCarol, "ops").ok());
  REQUIRE(mirror.AppendSigned(source.signed_events().back()).ok());
  CHECK(mirror.HeadHash() == source.HeadHash());
  CHECK(mirror.model() == source.model());
  // Twice is a misplaced event.
  CHECK(mirror.AppendSigned(source.signed_events().back()).message() ==
        "event 9: hash of the previous event does not match (removed or reordered)");
}

TEST_CASE("files that are not policies are refused with a reason") {
  CHECK(PolicyChain::Load("").status().message() == "not a policy file: not JSON");
  CHECK(PolicyChain::Load(BaseFile().substr(0, BaseFile().size() / 2)).status().message() ==
        "not a policy file: not JSON");
  CHECK(PolicyChain::Load("{\"format\":\"x\"}").status().message() ==
        "not a policy file: no \"format\": \"cloister-policy\"");
  Result<PolicyChain> newer =
      PolicyChain::Load("{\"format\":\"cloister-policy\",\"version\":2,\"events\":[]}");
  CHECK(newer.status().code() == StatusCode::kFormatMismatch);
  CHECK(PolicyChain::Load("{\"format\":\"cloister-policy\",\"version\":1,\"events\":[]}")
            .status()
            .message() == "not a policy file: no events");
  CHECK(PolicyChain::Load("{\"format\":\"cloister-policy\",\"version\":1,\"events\":[\"%\"]}")
            .status()
            .message() == "event 1: not base64");
  CHECK(PolicyChain::Load(
            "{\"format\":\"cloister-policy\",\"version\":1,\"events\":[\"AAAAAAAAAAAA\"]}")
            .status()
            .message() == "event 1: not a signed policy event (corrupt)");
}

TEST_CASE("no password, key-encryption key, private key or data key is in the file") {
  // 3 derivations: alice's KEK (to find her private key), her data key, bob's password check.
  PolicyChain chain = Base();
  std::string file = chain.Serialize();
  std::string raw;
  for (const std::string& event : chain.signed_events()) raw += event;
  for (const PolicyLogin& login : {kAlice, kBob, kCarol}) {
    CHECK_FALSE(Contains(file, login.password));
    CHECK_FALSE(Contains(raw, login.password));
  }

  // alice's plaintext private key and KEK, recovered the way the chain does.
  reducers::PolicyView view = reducers::EmptyPolicyView();
  std::string body = Body(chain.signed_events()[0]);
  reducers::ApplyPolicyEvent(&view, *flatbuffers::GetRoot<fb::PolicyEventBody>(body.data()));
  const reducers::PolicyUserKeys& keys = view.keys.at("alice");
  Result<pc::PasswordKeys> derived = pc::DerivePasswordKeys(
      kAlice.password, keys.salt,
      {keys.argon2_memory_kib, keys.argon2_iterations, keys.argon2_parallelism});
  REQUIRE(derived.ok());
  CHECK(derived->verifier == keys.verifier);
  Result<pc::SecretBytes> private_key = pc::Open(
      derived->kek, {keys.private_key.nonce, keys.private_key.ciphertext, keys.private_key.tag},
      std::string("cloister-policy private key") + '\0' + "alice");
  REQUIRE(private_key.ok());
  CHECK(private_key->size() > 1000);
  for (std::string_view secret : {private_key->view(), derived->kek.view()}) {
    CHECK_FALSE(Contains(raw, secret));
    CHECK_FALSE(Contains(raw, secret.substr(0, 16)));
    CHECK_FALSE(Contains(file, log::Base64Encode(secret.substr(0, 48))));
  }
  Result<std::array<uint8_t, 32>> data_key = chain.UnwrapDataKey(kAlice);
  REQUIRE(data_key.ok());
  std::string data_key_bytes(data_key->begin(), data_key->end());
  CHECK_FALSE(Contains(raw, data_key_bytes));
  CHECK_FALSE(Contains(raw, data_key_bytes.substr(0, 16)));
  CHECK_FALSE(Contains(file, log::Base64Encode(data_key_bytes)));
}

TEST_CASE("policy crypto: sealing, verifiers and key checks") {
  // 2 derivations.
  pc::SecretBytes key = pc::RandomSecret(pc::kKeyBytes);
  pc::Sealed sealed = pc::Seal(key, "plain", "aad");
  Result<pc::SecretBytes> opened = pc::Open(key, sealed, "aad");
  REQUIRE(opened.ok());
  CHECK(opened->view() == "plain");
  CHECK_FALSE(pc::Open(key, sealed, "other aad").ok());
  sealed.ciphertext[0] ^= 1;
  CHECK_FALSE(pc::Open(key, sealed, "aad").ok());

  std::string salt = pc::RandomBytes(pc::kSaltBytes);
  Result<pc::PasswordKeys> a = pc::DerivePasswordKeys("pw", salt, {});
  Result<pc::PasswordKeys> b = pc::DerivePasswordKeys("pw", salt, {});
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(pc::ConstantTimeEqual(a->verifier, b->verifier));
  CHECK(a->kek.view() == b->kek.view());
  CHECK(a->verifier != pc::Sha256(a->kek.view()));
  CHECK_FALSE(pc::ConstantTimeEqual(a->verifier, a->verifier.substr(1)));

  pc::RsaKeyPair pair = pc::GenerateRsaKeyPair();
  CHECK(pc::CheckPublicKey(pair.public_key).ok());
  CHECK_FALSE(pc::CheckPublicKey(pair.public_key.substr(1)).ok());
  Result<std::string> signature = pc::SignPss(pair.private_key, "message");
  REQUIRE(signature.ok());
  CHECK(signature->size() == pc::kSignatureBytes);
  CHECK(pc::VerifyPss(pair.public_key, "message", *signature).ok());
  CHECK_FALSE(pc::VerifyPss(pair.public_key, "messagE", *signature).ok());
  CHECK_FALSE(pc::Argon2ParamsAcceptable({1024, 2, 1}));
  CHECK_FALSE(pc::Argon2ParamsAcceptable({1u << 22, 2, 1}));
  CHECK(pc::Argon2ParamsAcceptable({}));
}

}  // namespace
}  // namespace cloister::engine
