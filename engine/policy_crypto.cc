#include "engine/policy_crypto.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <utility>

#include "log/assert.h"

namespace cloister::engine::policy_crypto {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
struct P8Free {
  void operator()(PKCS8_PRIV_KEY_INFO* p8) const { PKCS8_PRIV_KEY_INFO_free(p8); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using P8 = std::unique_ptr<PKCS8_PRIV_KEY_INFO, P8Free>;

const unsigned char* U(std::string_view bytes) {
  return reinterpret_cast<const unsigned char*>(bytes.data());
}

Pkey ParsePublicKey(std::string_view der) {
  const unsigned char* p = U(der);
  Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key != nullptr && p != U(der) + der.size()) return nullptr;  // Trailing bytes.
  return key;
}

Pkey ParsePrivateKey(const SecretBytes& der) {
  const unsigned char* p = der.data();
  P8 p8(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size())));
  if (p8 == nullptr) return nullptr;
  return Pkey(EVP_PKCS82PKEY(p8.get()));
}

// The PSS parameters, the same for signing and verifying.
bool SetPss(EVP_PKEY_CTX* pctx) {
  return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
}

}  // namespace

SecretBytes::SecretBytes(size_t size) : bytes_(size, 0) {}

SecretBytes::SecretBytes(std::string_view bytes) : bytes_(U(bytes), U(bytes) + bytes.size()) {}

SecretBytes::~SecretBytes() { Wipe(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.bytes_.clear();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

void SecretBytes::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

bool Argon2ParamsAcceptable(const Argon2Params& params) {
  return params.memory_kib >= kArgon2MemoryKib && params.memory_kib <= (1u << 20) &&
         params.iterations >= kArgon2Iterations && params.iterations <= 16 &&
         params.parallelism >= 1 && params.parallelism <= 16 &&
         params.memory_kib >= 8 * params.parallelism;
}

Result<PasswordKeys> DerivePasswordKeys(std::string_view password, std::string_view salt,
                                        const Argon2Params& params) {
  SecretBytes output(kArgon2OutputBytes);
  int rc =
      argon2id_hash_raw(params.iterations, params.memory_kib, params.parallelism, password.data(),
                        password.size(), salt.data(), salt.size(), output.data(), output.size());
  if (rc != ARGON2_OK) {
    return Status::InvalidArgument(std::string("Argon2id failed: ") + argon2_error_message(rc));
  }
  PasswordKeys keys;
  keys.verifier = Sha256(output.view().substr(0, kKeyBytes));
  keys.kek = SecretBytes(output.view().substr(kKeyBytes, kKeyBytes));
  return keys;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Sha256(std::string_view bytes) {
  std::string out(kKeyBytes, '\0');
  unsigned int size = 0;
  CL_ASSERT(EVP_Digest(bytes.data(), bytes.size(), reinterpret_cast<unsigned char*>(out.data()),
                       &size, EVP_sha256(), nullptr) == 1);
  CL_ASSERT(size == kKeyBytes);
  return out;
}

std::string RandomBytes(size_t size) {
  std::string out(size, '\0');
  // RAND_bytes fails only when the CSPRNG cannot be seeded: nothing safe can be made then.
  CL_ASSERT(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(size)) == 1);
  return out;
}

SecretBytes RandomSecret(size_t size) {
  SecretBytes out(size);
  CL_ASSERT(RAND_bytes(out.data(), static_cast<int>(size)) == 1);
  return out;
}

Sealed Seal(const SecretBytes& key, std::string_view plaintext, std::string_view aad) {
  CL_ASSERT(key.size() == kKeyBytes);
  Sealed sealed;
  sealed.nonce = RandomBytes(kGcmNonceBytes);
  sealed.ciphertext.assign(plaintext.size(), '\0');
  sealed.tag.assign(kGcmTagBytes, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  CL_ASSERT(ctx != nullptr);
  int len = 0;
  auto* out = reinterpret_cast<unsigned char*>(sealed.ciphertext.data());
  // Failures here are allocation failures or misuse: bugs, not input.
  CL_ASSERT(
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), U(sealed.nonce)) == 1);
  CL_ASSERT(EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) == 1);
  CL_ASSERT(EVP_EncryptUpdate(ctx.get(), out, &len, U(plaintext),
                              static_cast<int>(plaintext.size())) == 1);
  CL_ASSERT(static_cast<size_t>(len) == plaintext.size());
  CL_ASSERT(EVP_EncryptFinal_ex(ctx.get(), out + len, &len) == 1);
  CL_ASSERT(EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagBytes, sealed.tag.data()) ==
            1);
  return sealed;
}

Result<SecretBytes> Open(const SecretBytes& key, const Sealed& sealed, std::string_view aad) {
  CL_ASSERT(key.size() == kKeyBytes);
  Status bad = Status::InvalidArgument("sealed value does not open");
  if (sealed.nonce.size() != kGcmNonceBytes || sealed.tag.size() != kGcmTagBytes) return bad;
  SecretBytes plain(sealed.ciphertext.size());
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  CL_ASSERT(ctx != nullptr);
  int len = 0;
  std::string tag = sealed.tag;  // EVP_CTRL_GCM_SET_TAG takes a non-const pointer.
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), U(sealed.nonce)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plain.data(), &len, U(sealed.ciphertext),
                        static_cast<int>(sealed.ciphertext.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagBytes, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), plain.data() + len, &len) != 1) {
    ERR_clear_error();  // Leave no stale errors for the next OpenSSL user on this thread.
    return bad;         // plain is wiped on return.
  }
  return plain;
}

RsaKeyPair GenerateRsaKeyPair() {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(kRsaBits)));
  CL_ASSERT(key != nullptr);
  RsaKeyPair pair;
  unsigned char* der = nullptr;
  int size = i2d_PUBKEY(key.get(), &der);
  CL_ASSERT(size > 0);
  pair.public_key.assign(reinterpret_cast<const char*>(der), static_cast<size_t>(size));
  OPENSSL_free(der);
  P8 p8(EVP_PKEY2PKCS8(key.get()));
  CL_ASSERT(p8 != nullptr);
  der = nullptr;
  size = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &der);
  CL_ASSERT(size > 0);
  pair.private_key =
      SecretBytes(std::string_view(reinterpret_cast<const char*>(der), static_cast<size_t>(size)));
  OPENSSL_clear_free(der, static_cast<size_t>(size));
  return pair;
}

Status CheckPublicKey(std::string_view public_key) {
  Pkey key = ParsePublicKey(public_key);
  if (key == nullptr || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA ||
      EVP_PKEY_get_bits(key.get()) != kRsaBits) {
    ERR_clear_error();
    return Status::InvalidArgument("not an RSA-2048 public key");
  }
  return Status::Ok();
}

Result<std::string> SignPss(const SecretBytes& private_key, std::string_view message) {
  Pkey key = ParsePrivateKey(private_key);
  if (key == nullptr || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) {
    ERR_clear_error();
    return Status::InvalidArgument("not an RSA private key");
  }
  MdCtx ctx(EVP_MD_CTX_new());
  CL_ASSERT(ctx != nullptr);
  EVP_PKEY_CTX* pctx = nullptr;
  size_t size = 0;
  if (EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key.get()) != 1 ||
      !SetPss(pctx) || EVP_DigestSign(ctx.get(), nullptr, &size, U(message), message.size()) != 1) {
    return Status::InvalidArgument("RSA-PSS signing failed");
  }
  std::string signature(size, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                     U(message), message.size()) != 1) {
    return Status::InvalidArgument("RSA-PSS signing failed");
  }
  signature.resize(size);
  return signature;
}

Status VerifyPss(std::string_view public_key, std::string_view message,
                 std::string_view signature) {
  Status bad = Status::InvalidArgument("bad signature");
  Pkey key = ParsePublicKey(public_key);
  if (key == nullptr || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) {
    ERR_clear_error();
    return bad;
  }
  MdCtx ctx(EVP_MD_CTX_new());
  CL_ASSERT(ctx != nullptr);
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key.get()) != 1 ||
      !SetPss(pctx) ||
      EVP_DigestVerify(ctx.get(), U(signature), signature.size(), U(message), message.size()) !=
          1) {
    ERR_clear_error();
    return bad;
  }
  return Status::Ok();
}

}  // namespace cloister::engine::policy_crypto
