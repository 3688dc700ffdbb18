#include "engine/policy_chain.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <deque>
#include <functional>
#include <set>

#include <flatbuffers/flatbuffers.h>
#include <nlohmann/json.hpp>

#include "engine/policy_crypto.h"
#include "log/base64.h"
#include "log/policy_generated.h"
#include "reducers/policy_view.h"

namespace cloister::engine {
namespace {

namespace pc = policy_crypto;
namespace fb = policy_fb;
using reducers::kPolicyAdminGroup;
using reducers::kPolicyRootGroup;
using reducers::PolicyModel;
using reducers::PolicyView;
using Hash = std::array<uint8_t, 32>;

constexpr char kFileFormat[] = "cloister-policy";
constexpr int kFileVersion = 1;
constexpr char kBodyIdentifier[] = "CLPB";
// Signatures cover a context string, a zero byte and the bytes, so an event signature can never
// pass for a document signature (Sign) or the other way round.
constexpr char kEventContext[] = "cloister-policy-event-v1";
constexpr char kDocumentContext[] = "cloister-policy-document-v1";
// AES-GCM associated data: what a sealed value is, and whose.
constexpr char kDataKeyAad[] = "cloister-policy data key";
constexpr char kPrivateKeyAad[] = "cloister-policy private key";
constexpr size_t kEventBytesMax = 1 << 20;
constexpr size_t kNameBytesMax = 256;
constexpr size_t kRuleNameBytesMax = 1024;

std::string Str(const flatbuffers::String* text) {
  return text == nullptr ? std::string() : text->str();
}

// Text from an event, made safe for a one-line message: at most `max` bytes, control
// characters as '?'.
std::string Printable(const std::string& name, size_t max = 64) {
  std::string out = name.substr(0, max);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < ' ' || c == 0x7f) c = '?';
  }
  return name.size() > out.size() ? out + "..." : out;
}

std::string WithContext(const char* context, std::string_view bytes) {
  std::string message(context);
  message.push_back('\0');
  message.append(bytes);
  return message;
}

std::string Aad(const char* what, const std::string& user) { return WithContext(what, user); }

// The hash that names a signed event: SHA-256 of the body's length (4 bytes, little-endian),
// the body and the signature. Over the parts, not the wrapper's bytes, so re-encoding the
// wrapper cannot make a second name for the same event.
Hash EventHash(std::string_view body, std::string_view signature) {
  std::string input;
  input.reserve(4 + body.size() + signature.size());
  for (int shift = 0; shift < 32; shift += 8) {
    input.push_back(static_cast<char>((body.size() >> shift) & 0xff));
  }
  input.append(body);
  input.append(signature);
  std::string digest = pc::Sha256(input);
  Hash hash;
  std::copy(digest.begin(), digest.end(), hash.begin());
  return hash;
}

std::string Hex(const Hash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t byte : hash) {
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xf]);
  }
  return out;
}

const char* KindName(fb::PolicyPayload kind) {
  switch (kind) {
    case fb::PolicyPayload::Created:
      return "create";
    case fb::PolicyPayload::UserAdded:
      return "adduser";
    case fb::PolicyPayload::GroupAdded:
      return "addgroup";
    case fb::PolicyPayload::Deleted:
      return "delete";
    case fb::PolicyPayload::Joined:
      return "join";
    case fb::PolicyPayload::Left:
      return "leave";
    case fb::PolicyPayload::RulesAssigned:
      return "assign";
    case fb::PolicyPayload::RulesRetracted:
      return "retract";
    case fb::PolicyPayload::NONE:
      break;
  }
  return nullptr;
}

// ---- Parsing --------------------------------------------------------------------------------

// A signed event's two parts, each in its own (suitably aligned) buffer.
struct Parsed {
  std::string body;
  std::string signature;
  const fb::PolicyEventBody* root() const {
    return flatbuffers::GetRoot<fb::PolicyEventBody>(body.data());
  }
};

bool VerifyBody(const std::string& body) {
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(body.data()), body.size(),
                                 /*max_depth=*/32, /*max_tables=*/100000);
  return verifier.VerifyBuffer<fb::PolicyEventBody>(kBodyIdentifier);
}

std::optional<Parsed> Parse(std::string_view bytes) {
  if (bytes.size() < 8 || bytes.size() > kEventBytesMax) return std::nullopt;
  std::string copy(bytes);  // Heap storage: aligned for every scalar the tables hold.
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(copy.data()), copy.size(),
                                 /*max_depth=*/32, /*max_tables=*/100000);
  if (!fb::VerifySignedPolicyEventBuffer(verifier)) return std::nullopt;
  const fb::SignedPolicyEvent* event = fb::GetSignedPolicyEvent(copy.data());
  if (event->body() == nullptr || event->signature() == nullptr) return std::nullopt;
  Parsed parsed{reducers::PolicyBytes(event->body()), reducers::PolicyBytes(event->signature())};
  if (!VerifyBody(parsed.body)) return std::nullopt;
  return parsed;
}

// ---- The model's rules ----------------------------------------------------------------------

Status Invalid(std::string message) { return Status::InvalidArgument(std::move(message)); }

Status CheckName(const std::string& name, const char* what) {
  if (name.empty()) return Invalid(std::string("empty ") + what + " name");
  if (name.size() > kNameBytesMax) {
    return Invalid(std::string(what) + " name longer than " + std::to_string(kNameBytesMax) +
                   " bytes");
  }
  for (unsigned char c : name) {
    if (c <= ' ' || c == 0x7f) {
      return Invalid("bad " + std::string(what) + " name '" + name +
                     "': no spaces or control characters");
    }
  }
  return Status::Ok();
}

Status CheckRuleName(const std::string& name) {
  if (name.empty()) return Invalid("empty rule name");
  if (name.size() > kRuleNameBytesMax) {
    return Invalid("rule name longer than " + std::to_string(kRuleNameBytesMax) + " bytes");
  }
  for (unsigned char c : name) {
    if (c <= ' ' || c == 0x7f || c == '=') {
      return Invalid("bad rule name '" + name + "': no spaces, control characters or '='");
    }
  }
  return Status::Ok();
}

// A name a new user or group may take.
Status CheckNewName(const PolicyModel& model, const std::string& name, const char* what) {
  if (Status s = CheckName(name, what); !s.ok()) return s;
  if (name == kPolicyRootGroup || name == kPolicyAdminGroup) {
    return Invalid(name + " is a predefined group");
  }
  if (model.users.contains(name)) return Invalid("user " + name + " already exists");
  if (model.groups.contains(name)) return Invalid("group " + name + " already exists");
  return Status::Ok();
}

bool Exists(const PolicyModel& model, const std::string& name) {
  return model.users.contains(name) || model.groups.contains(name);
}

const reducers::PolicySubject* Subject(const PolicyModel& model, const std::string& name) {
  if (auto it = model.users.find(name); it != model.users.end()) return &it->second;
  if (auto it = model.groups.find(name); it != model.groups.end()) return &it->second;
  return nullptr;
}

size_t AdministratorCount(const PolicyModel& model) {
  size_t count = 0;
  for (const auto& [name, _] : model.users) count += model.IsAdministrator(name) ? 1 : 0;
  return count;
}

// Whether `ancestor` is `group` or a group `group` is in, directly or not.
bool IsSelfOrAncestor(const PolicyModel& model, const std::string& group,
                      const std::string& ancestor) {
  std::set<std::string> seen;
  std::deque<std::string> queue{group};
  while (!queue.empty()) {
    std::string name = queue.front();
    queue.pop_front();
    if (name == ancestor) return true;
    if (!seen.insert(name).second) continue;
    if (auto it = model.groups.find(name); it != model.groups.end()) {
      queue.insert(queue.end(), it->second.groups.begin(), it->second.groups.end());
    }
  }
  return false;
}

Status CheckSealed(const fb::Sealed* sealed, size_t plaintext_bytes, const char* what) {
  if (sealed == nullptr || sealed->nonce() == nullptr || sealed->ciphertext() == nullptr ||
      sealed->tag() == nullptr || sealed->nonce()->size() != pc::kGcmNonceBytes ||
      sealed->tag()->size() != pc::kGcmTagBytes ||
      (plaintext_bytes != 0 && sealed->ciphertext()->size() != plaintext_bytes) ||
      sealed->ciphertext()->size() == 0) {
    return Invalid(std::string("malformed sealed ") + what);
  }
  return Status::Ok();
}

Status CheckAdminKeys(const fb::AdminKeys* keys, const std::string& user) {
  if (keys == nullptr) return Invalid("administrator " + user + " has no key pair");
  if (!pc::CheckPublicKey(reducers::PolicyBytes(keys->public_key())).ok()) {
    return Invalid("the public key of " + user + " is not an RSA-2048 key");
  }
  return CheckSealed(keys->private_key(), 0, "private key");
}

Status CheckRecord(const PolicyModel& model, const fb::UserRecord* record, bool administrator) {
  if (record == nullptr) return Invalid("no user record");
  std::string name = Str(record->name());
  if (Status s = CheckNewName(model, name, "user"); !s.ok()) return s;
  const fb::Argon2Params* params = record->argon2();
  if (record->salt() == nullptr || record->salt()->size() != pc::kSaltBytes || params == nullptr ||
      !pc::Argon2ParamsAcceptable(
          {params->memory_kib(), params->iterations(), params->parallelism()}) ||
      record->password_verifier() == nullptr ||
      record->password_verifier()->size() != pc::kKeyBytes) {
    return Invalid("malformed password record for " + name);
  }
  if (Status s = CheckSealed(record->data_key(), pc::kKeyBytes, "data key"); !s.ok()) return s;
  if (administrator) return CheckAdminKeys(record->admin_keys(), name);
  if (record->admin_keys() != nullptr) return Invalid("user " + name + " has a key pair");
  return Status::Ok();
}

Status CheckJoin(const PolicyModel& model, const fb::Joined& joined) {
  std::string member = Str(joined.member());
  std::string group = Str(joined.group());
  if (!Exists(model, member)) return Invalid("no user or group named " + member);
  if (group == kPolicyRootGroup) return Invalid("every user and group is in standard already");
  if (!model.groups.contains(group)) {
    if (model.users.contains(group)) return Invalid(group + " is a user, not a group");
    return Invalid("no group named " + group);
  }
  if (Subject(model, member)->groups.contains(group)) {
    return Invalid(member + " is in " + group + " already");
  }
  if (group == kPolicyAdminGroup) {
    if (!model.users.contains(member)) return Invalid("only users may join administrators");
    return CheckAdminKeys(joined.admin_keys(), member);
  }
  if (joined.admin_keys() != nullptr) return Invalid("a key pair only goes with administrators");
  if (model.groups.contains(member) && IsSelfOrAncestor(model, group, member)) {
    return Invalid("a group may not join itself or its own member");
  }
  return Status::Ok();
}

Status CheckLeave(const PolicyModel& model, const fb::Left& left) {
  std::string member = Str(left.member());
  const reducers::PolicySubject* subject = Subject(model, member);
  if (subject == nullptr) return Invalid("no user or group named " + member);
  if (left.groups() == nullptr || left.groups()->size() == 0) {
    return Invalid(member + " leaves no group");
  }
  std::set<std::string> seen;
  for (const flatbuffers::String* text : *left.groups()) {
    std::string group = Str(text);
    if (!seen.insert(group).second) return Invalid("group " + group + " named twice");
    if (!subject->groups.contains(group)) return Invalid(member + " is not in " + group);
    if (group == kPolicyAdminGroup && AdministratorCount(model) == 1) {
      return Invalid("administrators must keep at least one user");
    }
  }
  return Status::Ok();
}

Status CheckDelete(const PolicyModel& model, const std::string& name) {
  if (name == kPolicyRootGroup || name == kPolicyAdminGroup) {
    return Invalid("the group " + name + " cannot be deleted");
  }
  if (!Exists(model, name)) return Invalid("no user or group named " + name);
  if (model.IsAdministrator(name) && AdministratorCount(model) == 1) {
    return Invalid("administrators must keep at least one user");
  }
  return Status::Ok();
}

Status CheckAssign(const PolicyModel& model, const fb::RulesAssigned& assigned) {
  std::string subject = Str(assigned.subject());
  if (!Exists(model, subject)) return Invalid("no user or group named " + subject);
  if (assigned.rules() == nullptr || assigned.rules()->size() == 0) return Invalid("no rules");
  std::set<std::string> seen;
  for (const fb::Rule* rule : *assigned.rules()) {
    std::string name = Str(rule->name());
    if (Status s = CheckRuleName(name); !s.ok()) return s;
    if (!seen.insert(name).second) return Invalid("rule " + name + " given twice");
  }
  return Status::Ok();
}

Status CheckRetract(const PolicyModel& model, const fb::RulesRetracted& retracted) {
  std::string name = Str(retracted.subject());
  const reducers::PolicySubject* subject = Subject(model, name);
  if (subject == nullptr) return Invalid("no user or group named " + name);
  if (retracted.names() == nullptr || retracted.names()->size() == 0) return Invalid("no rules");
  std::set<std::string> seen;
  for (const flatbuffers::String* text : *retracted.names()) {
    std::string rule = Str(text);
    if (!seen.insert(rule).second) return Invalid("rule " + rule + " given twice");
    if (!subject->rules.contains(rule)) return Invalid(name + " has no rule " + rule);
  }
  return Status::Ok();
}

// Whether the change keeps the model's rules, given the view before it. Bare messages ("user bob
// already exists"): the mutators return them as they are, validation prefixes the event.
Status CheckChange(const PolicyView& view, const fb::PolicyEventBody& body) {
  const PolicyModel& model = view.model;
  if (const auto* created = body.payload_as_Created()) {
    if (view.seq != 0) return Invalid("a policy is created only once");
    return CheckRecord(model, created->admin(), /*administrator=*/true);
  }
  if (view.seq == 0) return Invalid("the first event must create the policy");
  if (const auto* added = body.payload_as_UserAdded()) {
    return CheckRecord(model, added->user(), added->administrator());
  }
  if (const auto* group = body.payload_as_GroupAdded()) {
    return CheckNewName(model, Str(group->name()), "group");
  }
  if (const auto* deleted = body.payload_as_Deleted()) {
    return CheckDelete(model, Str(deleted->name()));
  }
  if (const auto* joined = body.payload_as_Joined()) return CheckJoin(model, *joined);
  if (const auto* left = body.payload_as_Left()) return CheckLeave(model, *left);
  if (const auto* assigned = body.payload_as_RulesAssigned()) {
    return CheckAssign(model, *assigned);
  }
  if (const auto* retracted = body.payload_as_RulesRetracted()) {
    return CheckRetract(model, *retracted);
  }
  return Invalid("no change in the event");
}

// ---- Building -------------------------------------------------------------------------------

using Builder = flatbuffers::FlatBufferBuilder;

flatbuffers::Offset<flatbuffers::Vector<uint8_t>> Bytes(Builder& fbb, std::string_view bytes) {
  return fbb.CreateVector(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

flatbuffers::Offset<fb::Sealed> BuildSealed(Builder& fbb, const pc::Sealed& sealed) {
  auto nonce = Bytes(fbb, sealed.nonce);
  auto ciphertext = Bytes(fbb, sealed.ciphertext);
  auto tag = Bytes(fbb, sealed.tag);
  return fb::CreateSealed(fbb, nonce, ciphertext, tag);
}

pc::Sealed SealedOf(const reducers::PolicySealed& sealed) {
  return pc::Sealed{sealed.nonce, sealed.ciphertext, sealed.tag};
}

// A new administrator key pair, the private key sealed under the owner's KEK.
struct NewAdminKeys {
  std::string public_key;
  pc::Sealed sealed_private_key;
  pc::SecretBytes private_key;  // Kept only to sign the genesis event.
};

NewAdminKeys MakeAdminKeys(const std::string& user, const pc::SecretBytes& kek) {
  pc::RsaKeyPair pair = pc::GenerateRsaKeyPair();
  NewAdminKeys keys;
  keys.public_key = pair.public_key;
  keys.sealed_private_key = pc::Seal(kek, pair.private_key.view(), Aad(kPrivateKeyAad, user));
  keys.private_key = std::move(pair.private_key);
  return keys;
}

flatbuffers::Offset<fb::AdminKeys> BuildAdminKeys(Builder& fbb, const NewAdminKeys& keys) {
  auto public_key = Bytes(fbb, keys.public_key);
  auto private_key = BuildSealed(fbb, keys.sealed_private_key);
  return fb::CreateAdminKeys(fbb, public_key, private_key);
}

// A new user's record: a fresh salt, the password's verifier, the data key sealed under the
// password's KEK and, for an administrator, a new key pair.
struct NewUser {
  std::string name;
  std::string salt;
  pc::Argon2Params params;
  std::string verifier;
  pc::Sealed data_key;
  std::optional<NewAdminKeys> admin;
};

Result<NewUser> MakeUser(const std::string& name, std::string_view password,
                         const pc::SecretBytes& data_key, bool administrator) {
  NewUser user;
  user.name = name;
  user.salt = pc::RandomBytes(pc::kSaltBytes);
  Result<pc::PasswordKeys> keys = pc::DerivePasswordKeys(password, user.salt, user.params);
  if (!keys.ok()) return keys.status();
  user.verifier = keys->verifier;
  user.data_key = pc::Seal(keys->kek, data_key.view(), Aad(kDataKeyAad, name));
  if (administrator) user.admin = MakeAdminKeys(name, keys->kek);
  return user;
}

flatbuffers::Offset<fb::UserRecord> BuildRecord(Builder& fbb, const NewUser& user) {
  auto name = fbb.CreateString(user.name);
  auto salt = Bytes(fbb, user.salt);
  fb::Argon2Params params(user.params.memory_kib, user.params.iterations, user.params.parallelism);
  auto verifier = Bytes(fbb, user.verifier);
  auto data_key = BuildSealed(fbb, user.data_key);
  flatbuffers::Offset<fb::AdminKeys> admin;
  if (user.admin) admin = BuildAdminKeys(fbb, *user.admin);
  return fb::CreateUserRecord(fbb, name, salt, &params, verifier, data_key, admin);
}

using Payload = std::pair<fb::PolicyPayload, flatbuffers::Offset<void>>;
using PayloadMaker = std::function<Payload(Builder&)>;

std::string BuildBody(uint64_t index, const Hash& prev, const std::string& signer,
                      const PayloadMaker& make) {
  Builder fbb(1024);
  auto [kind, payload] = make(fbb);
  auto signer_offset = fbb.CreateString(signer);
  fb::Sha256 prev_hash(flatbuffers::span<const uint8_t, 32>(prev.data(), prev.size()));
  // Informational only: validation never reads it.
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto body =
      fb::CreatePolicyEventBody(fbb, index, &prev_hash, now_ms, signer_offset, kind, payload);
  fbb.Finish(body, kBodyIdentifier);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

std::string BuildSigned(std::string_view body, std::string_view signature) {
  Builder fbb(body.size() + signature.size() + 64);
  // The nested body keeps the alignment of its widest scalar inside the wrapper.
  fbb.ForceVectorAlignment(body.size(), sizeof(uint8_t), sizeof(uint64_t));
  auto body_offset = Bytes(fbb, body);
  auto signature_offset = Bytes(fbb, signature);
  fb::FinishSignedPolicyEventBuffer(
      fbb, fb::CreateSignedPolicyEvent(fbb, body_offset, signature_offset));
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

}  // namespace

// ---- The chain ------------------------------------------------------------------------------

struct PolicyChain::State {
  std::vector<std::string> events;
  PolicyView view = reducers::EmptyPolicyView();
  Hash head{};  // Zeros before the genesis event.

  // Checks the signed event that would come next exactly as Load does: errors name it ("event
  // 3 (assign): ..."). On success, fills *parsed.
  Status Check(std::string_view bytes, Parsed* parsed) const;
  // Check, then Apply and append. All or nothing.
  Status Admit(std::string_view bytes);

  // The key-encryption key of login's user, if the password is right.
  Result<pc::SecretBytes> Unlock(const PolicyLogin& login) const;
  struct AdminSession {
    pc::SecretBytes kek;
    pc::SecretBytes private_key;  // DER PKCS#8, wiped with the session.
  };
  Result<AdminSession> UnlockAdmin(const PolicyLogin& by) const;
  Result<pc::SecretBytes> OpenDataKey(const std::string& user, const pc::SecretBytes& kek) const;
  // Builds the next event, checks the model's rules (bare messages), signs it and admits it.
  Status Commit(const std::string& signer, const pc::SecretBytes& private_key,
                const PayloadMaker& make);
};

Status PolicyChain::State::Check(std::string_view bytes, Parsed* out) const {
  const uint64_t index = view.seq + 1;
  const std::string event = "event " + std::to_string(index);
  std::optional<Parsed> parsed = Parse(bytes);
  if (!parsed) return Status::Corruption(event + ": not a signed policy event (corrupt)");
  const fb::PolicyEventBody& body = *parsed->root();
  const char* kind = KindName(body.payload_type());
  if (kind == nullptr) {
    return Status::FormatMismatch(event + ": change type " +
                                  std::to_string(static_cast<int>(body.payload_type())) +
                                  " is unknown to this build");
  }
  if (body.prev_hash() == nullptr ||
      !std::equal(head.begin(), head.end(), body.prev_hash()->bytes()->begin())) {
    return Status::Corruption(event +
                              ": hash of the previous event does not match (removed or reordered)");
  }
  if (body.index() != index) {
    return Status::Corruption(event + ": index " + std::to_string(body.index()) + ", expected " +
                              std::to_string(index) + " (removed or reordered)");
  }
  const std::string named = event + " (" + kind + "): ";
  const std::string signer = Str(body.signer());
  const std::string who = Printable(signer);
  std::string public_key;
  if (index == 1) {
    // The genesis event is signed by the administrator it creates.
    const fb::Created* created = body.payload_as_Created();
    if (created == nullptr) {
      return Status::Corruption(named + "the first event must create the policy");
    }
    const fb::UserRecord* admin = created->admin();
    if (admin == nullptr || Str(admin->name()) != signer || admin->admin_keys() == nullptr) {
      return Status::Corruption(named + "not signed by the administrator it creates");
    }
    public_key = reducers::PolicyBytes(admin->admin_keys()->public_key());
  } else {
    if (!view.model.users.contains(signer)) {
      return Status::Corruption(named + "signature by " + who + ", who is not a user");
    }
    if (!view.model.IsAdministrator(signer)) {
      return Status::Corruption(named + "signature by " + who + ", who is not an administrator");
    }
    public_key = view.keys.at(signer).public_key;
  }
  if (!pc::VerifyPss(public_key, WithContext(kEventContext, parsed->body), parsed->signature)
           .ok()) {
    return Status::Corruption(named + "bad signature by " + who + " (edited or forged)");
  }
  if (Status s = CheckChange(view, body); !s.ok()) {
    return Status::Corruption(named + Printable(s.message(), 400));
  }
  *out = std::move(*parsed);
  return Status::Ok();
}

Status PolicyChain::State::Admit(std::string_view bytes) {
  Parsed parsed;
  if (Status s = Check(bytes, &parsed); !s.ok()) return s;
  reducers::ApplyPolicyEvent(&view, *parsed.root());
  head = EventHash(parsed.body, parsed.signature);
  events.emplace_back(bytes);
  return Status::Ok();
}

Result<pc::SecretBytes> PolicyChain::State::Unlock(const PolicyLogin& login) const {
  auto it = view.keys.find(login.user);
  if (it == view.keys.end()) return Status::NotFound("unknown user " + login.user);
  const reducers::PolicyUserKeys& keys = it->second;
  Result<pc::PasswordKeys> derived = pc::DerivePasswordKeys(
      login.password, keys.salt,
      {keys.argon2_memory_kib, keys.argon2_iterations, keys.argon2_parallelism});
  if (!derived.ok()) return derived.status();
  if (!pc::ConstantTimeEqual(derived->verifier, keys.verifier)) {
    return Status::InvalidArgument("wrong password for " + login.user);
  }
  return std::move(derived->kek);
}

Result<PolicyChain::State::AdminSession> PolicyChain::State::UnlockAdmin(
    const PolicyLogin& by) const {
  if (!view.model.users.contains(by.user)) return Status::NotFound("unknown user " + by.user);
  if (!view.model.IsAdministrator(by.user)) {
    return Status::InvalidArgument(by.user + " is not an administrator of this policy");
  }
  Result<pc::SecretBytes> kek = Unlock(by);
  if (!kek.ok()) return kek.status();
  Result<pc::SecretBytes> private_key =
      pc::Open(*kek, SealedOf(view.keys.at(by.user).private_key), Aad(kPrivateKeyAad, by.user));
  if (!private_key.ok()) {
    return Status::Corruption("the private key of " + by.user + " does not open");
  }
  return AdminSession{std::move(*kek), std::move(*private_key)};
}

Result<pc::SecretBytes> PolicyChain::State::OpenDataKey(const std::string& user,
                                                        const pc::SecretBytes& kek) const {
  Result<pc::SecretBytes> data_key =
      pc::Open(kek, SealedOf(view.keys.at(user).data_key), Aad(kDataKeyAad, user));
  if (!data_key.ok() || data_key->size() != pc::kKeyBytes) {
    return Status::Corruption("the data key of " + user + " does not open");
  }
  return data_key;
}

Status PolicyChain::State::Commit(const std::string& signer, const pc::SecretBytes& private_key,
                                  const PayloadMaker& make) {
  std::string body = BuildBody(view.seq + 1, head, signer, make);
  if (Status s = CheckChange(view, *flatbuffers::GetRoot<fb::PolicyEventBody>(body.data()));
      !s.ok()) {
    return s;
  }
  Result<std::string> signature = pc::SignPss(private_key, WithContext(kEventContext, body));
  if (!signature.ok()) return signature.status();
  // The same check Load makes: what is appended here always loads.
  return Admit(BuildSigned(body, *signature));
}

PolicyChain::PolicyChain() : state_(std::make_unique<State>()) {}
PolicyChain::PolicyChain(PolicyChain&&) noexcept = default;
PolicyChain& PolicyChain::operator=(PolicyChain&&) noexcept = default;
PolicyChain::~PolicyChain() = default;

Result<PolicyChain> PolicyChain::Create(const PolicyLogin& admin) {
  if (Status s = CheckNewName(reducers::EmptyPolicyView().model, admin.user, "user"); !s.ok()) {
    return s;
  }
  pc::SecretBytes data_key = pc::RandomSecret(pc::kKeyBytes);
  Result<NewUser> user = MakeUser(admin.user, admin.password, data_key, /*administrator=*/true);
  if (!user.ok()) return user.status();
  PolicyChain chain;
  std::string body = BuildBody(1, chain.state_->head, admin.user, [&](Builder& fbb) {
    auto record = BuildRecord(fbb, *user);
    return Payload{fb::PolicyPayload::Created, fb::CreateCreated(fbb, record).Union()};
  });
  Result<std::string> signature =
      pc::SignPss(user->admin->private_key, WithContext(kEventContext, body));
  if (!signature.ok()) return signature.status();
  if (Status s = chain.state_->Admit(BuildSigned(body, *signature)); !s.ok()) return s;
  return chain;
}

Result<PolicyChain> PolicyChain::Load(std::string_view file_bytes) {
  nlohmann::json file = nlohmann::json::parse(file_bytes, nullptr, /*allow_exceptions=*/false);
  if (file.is_discarded()) return Status::Corruption("not a policy file: not JSON");
  if (!file.is_object() || !file.contains("format") || file["format"] != kFileFormat) {
    return Status::Corruption(std::string("not a policy file: no \"format\": \"") + kFileFormat +
                              "\"");
  }
  if (!file.contains("version") || !file["version"].is_number_integer()) {
    return Status::Corruption("not a policy file: no version");
  }
  if (file["version"] != kFileVersion) {
    return Status::FormatMismatch("policy file version " + file["version"].dump() +
                                  " is not supported (this build reads version " +
                                  std::to_string(kFileVersion) + ")");
  }
  if (!file.contains("events") || !file["events"].is_array()) {
    return Status::Corruption("not a policy file: no events");
  }
  std::vector<std::string> events;
  for (const nlohmann::json& text : file["events"]) {
    std::string name = "event " + std::to_string(events.size() + 1);
    if (!text.is_string()) return Status::Corruption(name + ": not a string");
    std::optional<std::string> bytes = log::Base64Decode(text.get<std::string>());
    if (!bytes) return Status::Corruption(name + ": not base64");
    events.push_back(std::move(*bytes));
  }
  return FromEvents(events);
}

Result<PolicyChain> PolicyChain::FromEvents(const std::vector<std::string>& signed_events) {
  if (signed_events.empty()) return Status::Corruption("not a policy file: no events");
  PolicyChain chain;
  for (const std::string& event : signed_events) {
    if (Status s = chain.state_->Admit(event); !s.ok()) return s;
  }
  return chain;
}

std::string PolicyChain::Serialize() const {
  nlohmann::ordered_json file;
  file["format"] = kFileFormat;
  file["version"] = kFileVersion;
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  for (const std::string& event : state_->events) events.push_back(log::Base64Encode(event));
  file["events"] = std::move(events);
  return file.dump(2) + "\n";
}

const std::vector<std::string>& PolicyChain::signed_events() const { return state_->events; }

std::string PolicyChain::HeadHash() const { return Hex(state_->head); }

const reducers::PolicyModel& PolicyChain::model() const { return state_->view.model; }

Status PolicyChain::Authenticate(const PolicyLogin& login) const {
  Result<pc::SecretBytes> kek = state_->Unlock(login);
  return kek.ok() ? Status::Ok() : kek.status();
}

Status PolicyChain::AddUser(const PolicyLogin& by, const std::string& name,
                            const std::string& password, bool administrator) {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  // Cheap checks before the new user's Argon2id and key generation.
  if (Status s = CheckNewName(state_->view.model, name, "user"); !s.ok()) return s;
  Result<pc::SecretBytes> data_key = state_->OpenDataKey(by.user, admin->kek);
  if (!data_key.ok()) return data_key.status();
  Result<NewUser> user = MakeUser(name, password, *data_key, administrator);
  if (!user.ok()) return user.status();
  return state_->Commit(by.user, admin->private_key, [&](Builder& fbb) {
    auto record = BuildRecord(fbb, *user);
    return Payload{fb::PolicyPayload::UserAdded,
                   fb::CreateUserAdded(fbb, record, administrator).Union()};
  });
}

Status PolicyChain::AddGroup(const PolicyLogin& by, const std::string& name) {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  return state_->Commit(by.user, admin->private_key, [&](Builder& fbb) {
    auto group = fb::CreateGroupAddedDirect(fbb, name.c_str());
    return Payload{fb::PolicyPayload::GroupAdded, group.Union()};
  });
}

Status PolicyChain::Delete(const PolicyLogin& by, const std::string& name) {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  return state_->Commit(by.user, admin->private_key, [&](Builder& fbb) {
    return Payload{fb::PolicyPayload::Deleted, fb::CreateDeletedDirect(fbb, name.c_str()).Union()};
  });
}

Status PolicyChain::Join(const PolicyLogin& by, const std::string& member, const std::string& group,
                         const std::optional<std::string>& member_password) {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  const PolicyModel& model = state_->view.model;
  std::optional<NewAdminKeys> keys;
  if (group == kPolicyAdminGroup) {
    // Checked before the member's Argon2id and key generation; CheckJoin checks them again.
    if (!model.users.contains(member)) {
      if (model.groups.contains(member)) return Invalid("only users may join administrators");
      return Invalid("no user or group named " + member);
    }
    if (model.IsAdministrator(member)) return Invalid(member + " is in administrators already");
    if (!member_password) {
      return Invalid("joining administrators needs the password of " + member);
    }
    Result<pc::SecretBytes> kek = state_->Unlock({member, *member_password});
    if (!kek.ok()) return kek.status();
    keys = MakeAdminKeys(member, *kek);
  }
  return state_->Commit(by.user, admin->private_key, [&](Builder& fbb) {
    auto member_offset = fbb.CreateString(member);
    auto group_offset = fbb.CreateString(group);
    flatbuffers::Offset<fb::AdminKeys> keys_offset;
    if (keys) keys_offset = BuildAdminKeys(fbb, *keys);
    return Payload{fb::PolicyPayload::Joined,
                   fb::CreateJoined(fbb, member_offset, group_offset, keys_offset).Union()};
  });
}

Status PolicyChain::Leave(const PolicyLogin& by, const std::string& member,
                          const std::vector<std::string>& groups) {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  std::vector<std::string> leaving = groups;
  if (leaving.empty()) {
    // Every group it is in, written out: the event says exactly what changed.
    const reducers::PolicySubject* subject = Subject(state_->view.model, member);
    if (subject == nullptr) return Invalid("no user or group named " + member);
    if (subject->groups.empty()) return Invalid(member + " is in no group");
    leaving.assign(subject->groups.begin(), subject->groups.end());
  }
  return state_->Commit(by.user, admin->private_key, [&](Builder& fbb) {
    auto member_offset = fbb.CreateString(member);
    auto groups_offset = fbb.CreateVectorOfStrings(leaving);
    return Payload{fb::PolicyPayload::Left,
                   fb::CreateLeft(fbb, member_offset, groups_offset).Union()};
  });
}

Status PolicyChain::Assign(const PolicyLogin& by, const std::string& subject,
                           const std::vector<std::string>& rules) {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  std::vector<std::pair<std::string, bool>> parsed;
  for (const std::string& rule : rules) {
    size_t equals = rule.find('=');
    if (equals == std::string::npos) {
      return Invalid("bad rule '" + rule + "': expected name=verdict");
    }
    std::string name = rule.substr(0, equals);
    std::string verdict = rule.substr(equals + 1);
    if (Status s = CheckRuleName(name); !s.ok()) return s;
    std::optional<bool> allow = reducers::ParseVerdict(verdict);
    if (!allow) return Invalid("bad verdict '" + verdict + "' for rule " + name);
    parsed.emplace_back(name, *allow);
  }
  return state_->Commit(by.user, admin->private_key, [&](Builder& fbb) {
    std::vector<flatbuffers::Offset<fb::Rule>> offsets;
    for (const auto& [name, allow] : parsed) {
      offsets.push_back(fb::CreateRuleDirect(fbb, name.c_str(), allow));
    }
    auto assigned = fb::CreateRulesAssignedDirect(fbb, subject.c_str(), &offsets);
    return Payload{fb::PolicyPayload::RulesAssigned, assigned.Union()};
  });
}

Status PolicyChain::Retract(const PolicyLogin& by, const std::string& subject,
                            const std::vector<std::string>& rule_names) {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  return state_->Commit(by.user, admin->private_key, [&](Builder& fbb) {
    auto subject_offset = fbb.CreateString(subject);
    auto names_offset = fbb.CreateVectorOfStrings(rule_names);
    return Payload{fb::PolicyPayload::RulesRetracted,
                   fb::CreateRulesRetracted(fbb, subject_offset, names_offset).Union()};
  });
}

namespace {

// A document split at its signature line (its last line, when that starts with the prefix).
struct SplitDocument {
  std::string_view body;
  std::optional<std::string_view> line;  // After the prefix, without its line end.
};

SplitDocument SplitAtSignature(std::string_view bytes) {
  std::string_view content = bytes;
  if (!content.empty() && content.back() == '\n') content.remove_suffix(1);
  const size_t newline = content.rfind('\n');
  const size_t start = newline == std::string_view::npos ? 0 : newline + 1;
  const std::string_view last = content.substr(start);
  if (!last.starts_with(kPolicySignaturePrefix)) return {bytes, std::nullopt};
  std::string_view line = last.substr(kPolicySignaturePrefix.size());
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF.
  return {bytes.substr(0, start), line};
}

}  // namespace

Result<std::string> PolicyChain::SignDocument(const PolicyLogin& by,
                                              std::string_view text) const {
  std::string body(SplitAtSignature(text).body);
  if (!body.empty() && body.back() != '\n') body += '\n';
  Result<std::string> signature = Sign(by, body);
  if (!signature.ok()) return signature.status();
  return body + std::string(kPolicySignaturePrefix) + by.user + " " + *signature + "\n";
}

DocumentCheck PolicyChain::CheckDocument(std::string_view text) const {
  DocumentCheck check;
  const SplitDocument split = SplitAtSignature(text);
  check.body = std::string(split.body);
  if (!split.line.has_value()) {
    const bool moved = text.starts_with(kPolicySignaturePrefix) ||
                       text.find("\n" + std::string(kPolicySignaturePrefix)) != std::string::npos;
    check.result = moved ? DocumentCheck::Result::kLinesAfterSignature
                         : DocumentCheck::Result::kUnsigned;
    return check;
  }
  const std::string_view line = *split.line;
  const size_t space = line.rfind(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 == line.size()) {
    check.result = DocumentCheck::Result::kMalformed;
    return check;
  }
  check.signer = std::string(line.substr(0, space));
  if (!model().IsAdministrator(check.signer)) {
    check.result = DocumentCheck::Result::kNotAdministrator;
    return check;
  }
  if (Status s = Verify(check.body, check.signer, line.substr(space + 1)); !s.ok()) {
    check.result = DocumentCheck::Result::kTampered;
    check.message = s.message();
    return check;
  }
  check.result = DocumentCheck::Result::kValid;
  return check;
}

Status PolicyChain::AppendSigned(std::string_view signed_event) {
  return state_->Admit(signed_event);
}

Result<std::array<uint8_t, 32>> PolicyChain::UnwrapDataKey(const PolicyLogin& login) const {
  Result<pc::SecretBytes> kek = state_->Unlock(login);
  if (!kek.ok()) return kek.status();
  Result<pc::SecretBytes> data_key = state_->OpenDataKey(login.user, *kek);
  if (!data_key.ok()) return data_key.status();
  std::array<uint8_t, 32> out;
  std::copy(data_key->data(), data_key->data() + out.size(), out.begin());
  return out;
}

Result<std::string> PolicyChain::Sign(const PolicyLogin& by, std::string_view bytes) const {
  Result<State::AdminSession> admin = state_->UnlockAdmin(by);
  if (!admin.ok()) return admin.status();
  Result<std::string> signature =
      pc::SignPss(admin->private_key, WithContext(kDocumentContext, bytes));
  if (!signature.ok()) return signature.status();
  return log::Base64Encode(*signature);
}

Status PolicyChain::Verify(std::string_view bytes, const std::string& signer,
                           std::string_view signature) const {
  const PolicyModel& model = state_->view.model;
  if (!model.users.contains(signer)) return Status::NotFound("unknown user " + signer);
  if (!model.IsAdministrator(signer)) {
    return Status::InvalidArgument(signer + " is not an administrator of this policy");
  }
  while (!signature.empty() && std::isspace(static_cast<unsigned char>(signature.back()))) {
    signature.remove_suffix(1);
  }
  std::optional<std::string> decoded = log::Base64Decode(signature);
  if (!decoded) return Status::InvalidArgument("the signature is not base64");
  if (!pc::VerifyPss(state_->view.keys.at(signer).public_key, WithContext(kDocumentContext, bytes),
                     *decoded)
           .ok()) {
    return Status::InvalidArgument("bad signature by " + signer +
                                   " (the document was changed, or " + signer +
                                   " did not sign it)");
  }
  return Status::Ok();
}

}  // namespace cloister::engine
