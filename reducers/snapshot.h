// The snapshot encoding of Views: a deterministic, versioned, self-checking byte string.
//
//   snapshot := magic "CLVW" | version u8 (= kViewsEncodingVersion) | body | checksum u64 LE
//   body     := seq | hash[32] | config | nodes | node_groups | vm_instances | templates
//               | save_images | api_keys | sessions | revocations | permission_groups
//               | resource_permissions | policies | policy_attachments | distributions
//               (kViewNames order)
//               | authz_seq
//   view     := count | count × (key string | entity fields in declaration order)
// Unsigned integers are LEB128 varints (shortest form only), signed ones zig-zag varints, strings
// a varint length then bytes, bools and enums one byte, floats their IEEE-754 bits (4 bytes LE),
// hashes 32 raw bytes, stamps {seq varint, time_ns zig-zag}. Map and set entries are written in
// the container's (sorted) order, so equal Views always encode to identical bytes and a decoder
// can insist on strictly ascending keys. The checksum (a 64-bit hash of every byte before it)
// catches truncated or damaged input; it is not a defence against deliberate tampering, which
// the snapshot store's SHA-256 and the match against the log's hash(seq) address.
//
// Changing any field of a view changes this encoding: bump kViewsEncodingVersion, and a build
// then refuses older snapshots (kFormatMismatch) and rebuilds from the log, which is always safe.
//
// Pure and thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "log/status.h"
#include "reducers/views.h"

namespace cloister::reducers {

inline constexpr uint8_t kViewsEncodingVersion = 10;  // 9: mirrored templates; 10: files.

// Encodes views. Byte-identical output for equal Views.
std::string EncodeViews(const Views& views);

// Decodes what EncodeViews wrote; EncodeViews(*DecodeViews(b)) == b. Never reads outside bytes.
// Errors: kFormatMismatch (another encoding version), kCorruption (anything else: too short,
// wrong magic, checksum mismatch, a field that does not parse, keys out of order, trailing bytes).
Result<Views> DecodeViews(std::span<const uint8_t> bytes);

// The checksum EncodeViews appends, over bytes (everything before the checksum). Exposed so that
// tests can reseal a deliberately damaged body and reach the parser behind the checksum.
uint64_t ViewsChecksum(std::span<const uint8_t> bytes);

}  // namespace cloister::reducers
