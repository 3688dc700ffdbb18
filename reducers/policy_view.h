// The reduction of a VM policy chain (log/policy.fbs, engine/policy_chain.h): the user database
// (PolicyModel) and, per user, the public crypto records the chain carries (salt, Argon2id
// parameters, password verifier, sealed data key, and for administrators the public key and the
// sealed private key). Nothing here is a secret: all of it is in the policy file.
//
// Pure and deterministic like every reducer (reducers/README.md): ApplyPolicyEvent reads only
// the view and the event; no clock, randomness, I/O or globals; ordered containers only.
// Total: any verified body is accepted, and one that names an unknown user or group, or
// repeats a change already made, changes only `seq`. Validation (signatures, the hash chain and
// the model's rules) is engine/policy_chain.cc's job and runs before Apply.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "log/policy_generated.h"
#include "reducers/policy_model.h"

namespace cloister::reducers {

// AES-256-GCM output, bytes as stored in the event.
struct PolicySealed {
  std::string nonce;       // 12 bytes.
  std::string ciphertext;  // As long as the plaintext.
  std::string tag;         // 16 bytes.

  bool empty() const { return nonce.empty() && ciphertext.empty() && tag.empty(); }
  bool operator==(const PolicySealed&) const = default;
};

struct PolicyUserKeys {
  std::string salt;  // Argon2id salt (16 bytes).
  uint32_t argon2_memory_kib = 0;
  uint32_t argon2_iterations = 0;
  uint32_t argon2_parallelism = 0;
  std::string verifier;      // SHA-256 of the first 32 bytes of the Argon2id output.
  PolicySealed data_key;     // The policy's data key under the user's key-encryption key.
  std::string public_key;    // Administrators: RSA-2048, DER SubjectPublicKeyInfo; else empty.
  PolicySealed private_key;  // Administrators: DER PKCS#8 under the KEK; else empty.

  bool operator==(const PolicyUserKeys&) const = default;
};

struct PolicyView {
  PolicyModel model;                           // Always holds "standard" and "administrators".
  std::map<std::string, PolicyUserKeys> keys;  // By user name; exactly the model's users.
  uint64_t seq = 0;                            // Events applied.

  bool operator==(const PolicyView&) const = default;
};

// The view before any event: no users; the groups "standard" and "administrators".
PolicyView EmptyPolicyView();

// Applies one verified body (the chain checked it first).
void ApplyPolicyEvent(PolicyView* view, const policy_fb::PolicyEventBody& body);

// The record's crypto fields as the view keeps them (absent fields give empty strings).
PolicyUserKeys PolicyUserKeysOf(const policy_fb::UserRecord& record);
PolicySealed PolicySealedOf(const policy_fb::Sealed* sealed);

// Bytes of a [ubyte] field, empty when absent.
std::string PolicyBytes(const flatbuffers::Vector<uint8_t>* bytes);

}  // namespace cloister::reducers
