// The hash chain: hash(n) = SHA-256(hash(n-1) || bytes of event n), hash(0) = 32 zero bytes.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace cloister::log {

using Hash = std::array<uint8_t, 32>;

// Computes chain links. Not thread-safe: use one per thread. Holds an OpenSSL digest context.
class ChainHasher {
 public:
  ChainHasher();
  ~ChainHasher();
  ChainHasher(const ChainHasher&) = delete;
  ChainHasher& operator=(const ChainHasher&) = delete;

  // Returns SHA-256(prev || event_bytes).
  Hash Next(const Hash& prev, std::span<const uint8_t> event_bytes);

 private:
  void* ctx_;  // EVP_MD_CTX*, kept opaque so callers need no OpenSSL headers.
};

// Lower-case hexadecimal, 64 characters.
std::string HashHex(const Hash& hash);

// Writes 64 lower-case hex characters to out (which must have room for 64).
void HashHexTo(const uint8_t* bytes32, char* out);

}  // namespace cloister::log
