// The crypto of VM policies (engine/policy_chain.h, docs/policy.md): Argon2id password
// stretching, AES-256-GCM sealing, RSA-2048 keys with RSA-PSS (SHA-256) signatures, SHA-256.
// Thin wrappers over libargon2 and OpenSSL 3 with the parameters fixed here, so the chain code
// reads as the scheme and not as library calls.
//
// Randomness (salts, nonces, the data key, RSA keys) comes from OpenSSL's CSPRNG (RAND_bytes),
// not from engine/rng.h: the policy's keys must be unpredictable, and a seeded Rng is for tests.
// Secrets (the Argon2id output, key-encryption keys, the data key, plaintext private keys) live
// only in SecretBytes, which wipes them with OPENSSL_cleanse when destroyed.
// Thread-safe: no state beyond OpenSSL's own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "log/status.h"

namespace cloister::engine::policy_crypto {

// OWASP's Argon2id recommendation (19 MiB, 2 passes, 1 lane), 16-byte salt, 64-byte output.
inline constexpr uint32_t kArgon2MemoryKib = 19456;
inline constexpr uint32_t kArgon2Iterations = 2;
inline constexpr uint32_t kArgon2Parallelism = 1;
inline constexpr size_t kSaltBytes = 16;
inline constexpr size_t kArgon2OutputBytes = 64;
inline constexpr size_t kKeyBytes = 32;  // AES-256 keys, the data key, SHA-256 values.
inline constexpr size_t kGcmNonceBytes = 12;
inline constexpr size_t kGcmTagBytes = 16;
inline constexpr int kRsaBits = 2048;
inline constexpr size_t kSignatureBytes = kRsaBits / 8;

// Bytes wiped when destroyed or overwritten. Move-only; never resized, so no copy is left
// behind in freed memory.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);
  explicit SecretBytes(std::string_view bytes);
  ~SecretBytes();
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }

 private:
  void Wipe();
  std::vector<uint8_t> bytes_;
};

struct Argon2Params {
  uint32_t memory_kib = kArgon2MemoryKib;
  uint32_t iterations = kArgon2Iterations;
  uint32_t parallelism = kArgon2Parallelism;
};

// Whether a policy file's parameters are worth running: at least the OWASP figures, at most
// 1 GiB, 16 passes and 16 lanes (a hostile file must not make Authenticate run for hours).
bool Argon2ParamsAcceptable(const Argon2Params& params);

// What a password gives: the verifier (SHA-256 of the first 32 output bytes; safe to store) and
// the key-encryption key (the last 32 bytes; secret).
struct PasswordKeys {
  std::string verifier;
  SecretBytes kek;
};

// Argon2id(password, salt, params) -> 64 bytes, split as above. Fails only on parameters
// libargon2 refuses or on memory exhaustion.
Result<PasswordKeys> DerivePasswordKeys(std::string_view password, std::string_view salt,
                                        const Argon2Params& params);

// Constant-time equality (CRYPTO_memcmp); false when the lengths differ.
bool ConstantTimeEqual(std::string_view a, std::string_view b);

std::string Sha256(std::string_view bytes);
std::string RandomBytes(size_t size);
SecretBytes RandomSecret(size_t size);

// AES-256-GCM with a random 12-byte nonce. aad is authenticated, not stored: Open needs the same.
struct Sealed {
  std::string nonce;
  std::string ciphertext;
  std::string tag;
};
Sealed Seal(const SecretBytes& key, std::string_view plaintext, std::string_view aad);
// Fails ("sealed value does not open") on a wrong key, a wrong aad or edited bytes.
Result<SecretBytes> Open(const SecretBytes& key, const Sealed& sealed, std::string_view aad);

// A new RSA-2048 key pair: the public key as DER SubjectPublicKeyInfo, the private key as DER
// PKCS#8 (PrivateKeyInfo).
struct RsaKeyPair {
  std::string public_key;
  SecretBytes private_key;
};
RsaKeyPair GenerateRsaKeyPair();

// OK iff public_key is a DER SubjectPublicKeyInfo of an RSA key of exactly 2048 bits.
Status CheckPublicKey(std::string_view public_key);

// RSA-PSS over message: SHA-256, MGF1-SHA-256, 32-byte salt. 256-byte signatures.
Result<std::string> SignPss(const SecretBytes& private_key, std::string_view message);
// OK iff signature is such a signature of message by public_key's owner.
Status VerifyPss(std::string_view public_key, std::string_view message, std::string_view signature);

}  // namespace cloister::engine::policy_crypto
