// Base64 (RFC 4648): the encoding Anka clients use for scripts, keys, secrets and credentials.
// Pure and thread-safe. Lives in log/ because every layer above needs it and log/ is the bottom.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cloister::log {

enum class Base64Alphabet { kStandard, kUrlSafe, kEither };

// Decodes text. Padding ('=') is required for kStandard, optional otherwise; nullopt for any
// other character, misplaced padding, or a length no encoding has.
std::optional<std::string> Base64Decode(std::string_view text,
                                        Base64Alphabet alphabet = Base64Alphabet::kStandard);

// Padded standard base64 of bytes.
std::string Base64Encode(std::string_view bytes);

}  // namespace cloister::log
