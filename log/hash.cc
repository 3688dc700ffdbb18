#include "log/hash.h"

#include <openssl/evp.h>

#include "log/assert.h"

namespace cloister::log {
namespace {

// Fetched once: EVP_sha256() per call would repeat the provider lookup on every link.
const EVP_MD* Sha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  CL_ASSERT(md != nullptr);
  return md;
}

}  // namespace

ChainHasher::ChainHasher() : ctx_(EVP_MD_CTX_new()) { CL_ASSERT(ctx_ != nullptr); }

ChainHasher::~ChainHasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

Hash ChainHasher::Next(const Hash& prev, std::span<const uint8_t> event_bytes) {
  auto* ctx = static_cast<EVP_MD_CTX*>(ctx_);
  Hash out;
  unsigned int len = 0;
  // These fail only on allocation failure or a broken provider: both are bugs here.
  CL_ASSERT(EVP_DigestInit_ex(ctx, Sha256(), nullptr) == 1);
  CL_ASSERT(EVP_DigestUpdate(ctx, prev.data(), prev.size()) == 1);
  CL_ASSERT(EVP_DigestUpdate(ctx, event_bytes.data(), event_bytes.size()) == 1);
  CL_ASSERT(EVP_DigestFinal_ex(ctx, out.data(), &len) == 1);
  CL_ASSERT(len == out.size());
  return out;
}

void HashHexTo(const uint8_t* bytes32, char* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = kDigits[bytes32[i] >> 4];
    out[2 * i + 1] = kDigits[bytes32[i] & 0xf];
  }
}

std::string HashHex(const Hash& hash) {
  std::string out(64, '0');
  HashHexTo(hash.data(), out.data());
  return out;
}

}  // namespace cloister::log
