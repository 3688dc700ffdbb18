#include "log/base64.h"

#include <catch2/catch.hpp>
#include <string>

namespace cloister::log {
namespace {

TEST_CASE("base64 round-trips every length and rejects what is not base64") {
  std::string bytes;
  for (int n = 0; n < 300; n++) {
    auto decoded = Base64Decode(Base64Encode(bytes));
    REQUIRE(decoded.has_value());
    CHECK(*decoded == bytes);
    bytes.push_back(static_cast<char>(n * 37 + 11));
  }
  CHECK(Base64Encode("root:1111111111") == "cm9vdDoxMTExMTExMTEx");
  CHECK(Base64Decode("ZWNobyBoaQ==") == std::optional<std::string>("echo hi"));
  CHECK(Base64Decode("") == std::optional<std::string>(""));
  for (const char* bad : {"ZWNobyBoaQ", "ZWNobyBoaQ=", "ZW=NobyBoaQ=", "Z", "ab!d", "a===",
                          "echo hi", "ZW-o"}) {
    INFO(bad);
    CHECK_FALSE(Base64Decode(bad).has_value());
  }
  // URL-safe, with or without padding; kEither takes both alphabets.
  CHECK(Base64Decode("-_8", Base64Alphabet::kUrlSafe) == std::optional<std::string>("\xfb\xff"));
  CHECK(Base64Decode("-_8=", Base64Alphabet::kEither) == std::optional<std::string>("\xfb\xff"));
  CHECK(Base64Decode("+/8=", Base64Alphabet::kEither) == std::optional<std::string>("\xfb\xff"));
  CHECK_FALSE(Base64Decode("+/8=", Base64Alphabet::kUrlSafe).has_value());
}

}  // namespace
}  // namespace cloister::log
