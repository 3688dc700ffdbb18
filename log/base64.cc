#include "log/base64.h"

#include <cstdint>

namespace cloister::log {
namespace {

constexpr char kStandard[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Value(char c, Base64Alphabet alphabet) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  const bool standard = alphabet != Base64Alphabet::kUrlSafe;
  const bool url = alphabet != Base64Alphabet::kStandard;
  if ((c == '+' && standard) || (c == '-' && url)) return 62;
  if ((c == '/' && standard) || (c == '_' && url)) return 63;
  return -1;
}

}  // namespace

std::optional<std::string> Base64Decode(std::string_view text, Base64Alphabet alphabet) {
  size_t pad = 0;
  while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') {
    pad++;
  }
  std::string_view data = text.substr(0, text.size() - pad);
  if (pad > 0 && text.size() % 4 != 0) {
    return std::nullopt;  // Padding, when present, completes the last quantum.
  }
  if (pad == 0 && alphabet == Base64Alphabet::kStandard && text.size() % 4 != 0) {
    return std::nullopt;
  }
  if (data.size() % 4 == 1) {
    return std::nullopt;  // No encoding leaves a single character over.
  }
  std::string out;
  out.reserve(data.size() / 4 * 3 + 2);
  uint32_t bits = 0;
  int have = 0;
  for (char c : data) {
    const int v = Value(c, alphabet);
    if (v < 0) {
      return std::nullopt;
    }
    bits = (bits << 6) | static_cast<uint32_t>(v);
    have += 6;
    if (have >= 8) {
      have -= 8;
      out.push_back(static_cast<char>((bits >> have) & 0xFF));
    }
  }
  return out;
}

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = static_cast<uint8_t>(bytes[i]) << 16 |
                       static_cast<uint8_t>(bytes[i + 1]) << 8 | static_cast<uint8_t>(bytes[i + 2]);
    out += {kStandard[n >> 18], kStandard[n >> 12 & 63], kStandard[n >> 6 & 63], kStandard[n & 63]};
  }
  const size_t left = bytes.size() - i;
  if (left > 0) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (left == 2) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kStandard[n >> 18];
    out += kStandard[n >> 12 & 63];
    out += left == 2 ? kStandard[n >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace cloister::log
