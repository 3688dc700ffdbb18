// An Anka Secure VM policy as a chain of signed events (seed 000, issue 7, shared/DESIGN.md "The
// VM policy as an event chain").
//
// Each change (create, adduser, addgroup, delete, join, leave, assign, retract) is one event:
// its payload (log/policy.fbs), the SHA-256 of the previous signed event, the signer's name and
// an RSA-PSS (SHA-256) signature by an administrator's RSA-2048 key over everything else. The
// genesis event (create) carries the initial administrator and is signed by it. The policy is
// the reduction of its chain (reducers/policy_view.h); validating it means replaying the chain
// and checking every signature against the administrators in force at that point. A file edited
// by hand, an event removed or reordered, or a signature by a non-administrator fails
// validation, naming the first bad event.
//
// Crypto (docs/policy.md):
//  * Passwords: Argon2id (OWASP: m = 19 MiB, t = 2, p = 1, 16-byte random salt) gives 64 bytes;
//    the first 32 are the password verifier (stored as their SHA-256), the last 32 the user's
//    key-encryption key. A wrong password is told apart from a right one only by the verifier.
//  * Administrators have an RSA-2048 key pair; the private key is stored in the policy under
//    AES-256-GCM with the administrator's key-encryption key. Regular users have no key that
//    can sign.
//  * A per-policy 32-byte data key (encrypted disks, the VNC password) is made at create and
//    wrapped (AES-256-GCM) for every user and administrator under their key-encryption key;
//    UnwrapDataKey gives it to a user with the right password and to no one else.
//
// Changes are all-or-nothing: on error the chain is unchanged. Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "log/status.h"
#include "reducers/policy_model.h"

namespace cloister::engine {

// Documents signed with `policy sign` (a VM configuration yaml, a controller approval): the last
// line is "# policy-signature: <administrator> <base64 signature>" and the signature covers every
// byte before it.
inline constexpr std::string_view kPolicySignaturePrefix = "# policy-signature: ";

struct DocumentCheck {
  enum class Result : uint8_t {
    kValid = 0,
    kUnsigned,                // No signature line.
    kLinesAfterSignature,     // A signature line, but not the last line.
    kMalformed,               // The signature line is not "<signer> <base64>".
    kNotAdministrator,        // Signed by someone who is not an administrator now.
    kTampered,                // The signature does not match the bytes (message says why).
  };
  Result result = Result::kUnsigned;
  std::string signer;
  std::string body;     // The bytes the signature covers (the document without its line).
  std::string message;  // kTampered: Verify's reason.

  bool valid() const { return result == Result::kValid; }
};

// Who makes a change: a user of the policy and its password.
struct PolicyLogin {
  std::string user;
  std::string password;
};

class PolicyChain {
 public:
  // A new policy whose only user is the administrator `admin` (in "administrators").
  static Result<PolicyChain> Create(const PolicyLogin& admin);
  // Parses and validates a policy file's bytes (Serialize's output). Errors name the first bad
  // event: "event 3 (assign): signature by alice, who is not an administrator", "event 2: hash
  // of the previous event does not match (removed or reordered)", "not a policy file: ...".
  static Result<PolicyChain> Load(std::string_view file_bytes);
  // Validates a chain given as its signed events (how the controller stores one).
  static Result<PolicyChain> FromEvents(const std::vector<std::string>& signed_events);

  PolicyChain(PolicyChain&&) noexcept;
  PolicyChain& operator=(PolicyChain&&) noexcept;
  ~PolicyChain();

  // The policy file (a policy.json, as the seed names it): a JSON object {"format":
  // "cloister-policy", "version": 1, "events": [base64 of each signed event, in order]} and a
  // final newline. The caller writes it to a temporary file and renames it.
  std::string Serialize() const;
  const std::vector<std::string>& signed_events() const;
  // SHA-256 (hex) of the last signed event: identifies this version of the policy.
  std::string HeadHash() const;

  const reducers::PolicyModel& model() const;

  // "unknown user alice" or "wrong password for alice" on failure.
  Status Authenticate(const PolicyLogin& login) const;

  // Each appends one signed event made by login, who must be an administrator with the right
  // password ("alice is not an administrator of this policy"). Errors name the problem: "user bob
  // already exists", "no user or group named x", "administrators must keep at least one user",
  // "a group may not join itself or its own member", "bad verdict 'maybe' for rule r".
  // AddUser: password is the new user's; administrator puts it in "administrators" (and makes
  // its key pair).
  Status AddUser(const PolicyLogin& by, const std::string& name, const std::string& password,
                 bool administrator);
  Status AddGroup(const PolicyLogin& by, const std::string& name);
  // Deletes a user or a group (its members leave it; the last administrator cannot go).
  Status Delete(const PolicyLogin& by, const std::string& name);
  // member (user or group) joins group. Joining "administrators" needs the member's password
  // (member_password) to make its key pair; only users may join it.
  Status Join(const PolicyLogin& by, const std::string& member, const std::string& group,
              const std::optional<std::string>& member_password = std::nullopt);
  // member leaves groups (empty: every group it is in).
  Status Leave(const PolicyLogin& by, const std::string& member,
               const std::vector<std::string>& groups);
  // rules: "name=verdict" as the tool takes them (verdict spellings: reducers/policy_model.h).
  Status Assign(const PolicyLogin& by, const std::string& subject,
                const std::vector<std::string>& rules);
  Status Retract(const PolicyLogin& by, const std::string& subject,
                 const std::vector<std::string>& rule_names);

  // Appends a signed event made elsewhere (the controller receiving a longer chain), after
  // checking it exactly as Load does.
  Status AppendSigned(std::string_view signed_event);

  // The policy's data key, for login with the right password.
  Result<std::array<uint8_t, 32>> UnwrapDataKey(const PolicyLogin& login) const;

  // Detached signatures of other documents (`policy sign` / `validate`): base64 RSA-PSS by an
  // administrator, verified against the administrators the policy has now.
  Result<std::string> Sign(const PolicyLogin& by, std::string_view bytes) const;
  Status Verify(std::string_view bytes, const std::string& signer,
                std::string_view signature) const;
  // A document with its signature line set (replaced if it had one) to one by `by`.
  Result<std::string> SignDocument(const PolicyLogin& by, std::string_view text) const;
  // Whether a signed document is intact and signed by an administrator of this policy.
  DocumentCheck CheckDocument(std::string_view text) const;

 private:
  PolicyChain();
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cloister::engine
