// The snapshot encoding of views: round trips, byte-identical output for equal views, and
// rejection (never a crash) of truncated, flipped, resealed-garbage and out-of-order input. Meant
// to run under ASan too (scripts/test does), where a read past the input would fail loudly.
#include "reducers/snapshot.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "log/draft.h"
#include "log/hash.h"
#include "reducers/mixed_log.h"
#include "reducers/views.h"

namespace cloister::reducers {
namespace {

constexpr int64_t kTime0Ns = 1'795'003'200'000'000'000;

log::Hash FakeHash(uint64_t seq) {
  log::Hash hash{};
  for (size_t i = 0; i < 8; i++) {
    hash[i] = static_cast<uint8_t>(seq >> (8 * i));
  }
  return hash;
}

// The views after `events` events of MixedEvents(seed), applied in memory (no log needed).
Views MixedViews(uint64_t events, uint64_t seed) {
  MixedEvents stream(seed, kTime0Ns);
  Views views;
  for (uint64_t i = 0; i < events; i++) {
    const log::Draft draft = stream.Next();
    const fb::Event* event = log::VerifyEvent(draft.bytes());
    REQUIRE(event != nullptr);
    Apply(&views, views.seq + 1, FakeHash(views.seq + 1), *event);
  }
  return views;
}

std::span<const uint8_t> Span(const std::string& bytes) {
  return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

// Replaces the trailing checksum so that damage to the body reaches the parser.
void Reseal(std::string* bytes) {
  REQUIRE(bytes->size() >= 8);
  const size_t body = bytes->size() - 8;
  const uint64_t checksum = ViewsChecksum(Span(*bytes).first(body));
  for (int i = 0; i < 8; i++) {
    (*bytes)[body + i] = static_cast<char>(checksum >> (8 * i));
  }
}

uint64_t NextRandom(uint64_t* state) {
  uint64_t x = (*state += 0x9E3779B97F4A7C15ULL);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

TEST_CASE("empty views round-trip") {
  const std::string bytes = EncodeViews(Views());
  auto decoded = DecodeViews(Span(bytes));
  REQUIRE(decoded.ok());
  CHECK(*decoded == Views());
  CHECK(EncodeViews(*decoded) == bytes);
}

TEST_CASE("views of every kind round-trip: Decode(Encode(x)) == x and Encode(Decode(b)) == b") {
  const Views views = MixedViews(3000, 7);
  REQUIRE(!views.config.entries.empty());
  REQUIRE(!views.nodes.nodes.empty());
  REQUIRE(!views.node_groups.groups.empty());
  REQUIRE(!views.vm_instances.instances.empty());
  const std::string bytes = EncodeViews(views);
  auto decoded = DecodeViews(Span(bytes));
  INFO(decoded.status().ToString());
  REQUIRE(decoded.ok());
  CHECK(*decoded == views);
  CHECK(EncodeViews(*decoded) == bytes);
}

TEST_CASE("extreme field values round-trip") {
  Views views;
  views.seq = UINT64_MAX;
  views.hash.fill(0xFF);
  VmInstance& vm = views.vm_instances.instances["i"];
  vm.instance_id = std::string("\0\xff\x80 binary", 10);
  vm.version = INT32_MIN;
  vm.script_timeout = INT32_MAX;
  vm.vram_mb = UINT64_MAX;
  vm.vnc_port = UINT16_MAX;
  vm.progress = -0.0f;
  vm.state = static_cast<fb::VmState>(250);  // A value from a newer build.
  vm.created = Stamp{UINT64_MAX, INT64_MIN};
  vm.updated = Stamp{0, INT64_MAX};
  vm.port_forwarding_override.push_back({UINT16_MAX, 0, "", std::string(300, 'x')});
  Node& node = views.nodes.nodes["n"];
  node.state = static_cast<fb::NodeState>(99);
  node.templates = {"", "", "a"};
  node.groups = {"", "z"};
  const std::string bytes = EncodeViews(views);
  auto decoded = DecodeViews(Span(bytes));
  REQUIRE(decoded.ok());
  CHECK(EncodeViews(*decoded) == bytes);
  CHECK(decoded->vm_instances.instances.at("i").created == vm.created);
  CHECK(decoded->nodes.nodes.at("n").state == node.state);
}

TEST_CASE("equal views encode to identical bytes, built independently") {
  CHECK(EncodeViews(MixedViews(2000, 11)) == EncodeViews(MixedViews(2000, 11)));
  CHECK(EncodeViews(MixedViews(2000, 11)) != EncodeViews(MixedViews(2000, 12)));
}

TEST_CASE("every truncation is kCorruption") {
  const std::string bytes = EncodeViews(MixedViews(150, 3));
  for (size_t size = 0; size < bytes.size(); size++) {
    auto decoded = DecodeViews(Span(bytes).first(size));
    INFO("size " << size);
    CHECK(decoded.status().code() == StatusCode::kCorruption);
  }
}

TEST_CASE("every flipped bit is rejected: version as kFormatMismatch, the rest as kCorruption") {
  const std::string bytes = EncodeViews(MixedViews(150, 4));
  for (size_t at = 0; at < bytes.size(); at++) {
    std::string damaged = bytes;
    damaged[at] ^= static_cast<char>(1 << (at % 8));
    auto decoded = DecodeViews(Span(damaged));
    INFO("byte " << at);
    CHECK(decoded.status().code() ==
          (at == 4 ? StatusCode::kFormatMismatch : StatusCode::kCorruption));
  }
}

TEST_CASE("trailing bytes are kCorruption even with a valid checksum") {
  std::string bytes = EncodeViews(MixedViews(50, 5));
  bytes.insert(bytes.size() - 8, "x");
  Reseal(&bytes);
  auto decoded = DecodeViews(Span(bytes));
  CHECK(decoded.status().code() == StatusCode::kCorruption);
  CHECK_THAT(decoded.status().message(), Catch::Contains("trailing bytes"));
}

TEST_CASE("map keys out of order are kCorruption even with a valid checksum") {
  Views views;
  views.config.entries["a"].value = "1";
  views.config.entries["b"].value = "2";
  std::string bytes = EncodeViews(views);
  // Each key is written as a length byte 1 and the key: swap the two keys' letters.
  const size_t a =
      bytes.find(std::string("\x01"
                             "a",
                             2));
  const size_t b =
      bytes.find(std::string("\x01"
                             "b",
                             2));
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  std::swap(bytes[a + 1], bytes[b + 1]);
  Reseal(&bytes);
  CHECK(DecodeViews(Span(bytes)).status().code() == StatusCode::kCorruption);
}

TEST_CASE("resealed random damage to the body never crashes and never round-trips wrongly") {
  const std::string bytes = EncodeViews(MixedViews(400, 6));
  uint64_t rng = 42;
  int rejected = 0;
  for (int round = 0; round < 3000; round++) {
    std::string damaged = bytes;
    const int edits = 1 + static_cast<int>(NextRandom(&rng) % 4);
    for (int e = 0; e < edits; e++) {
      const size_t at = 5 + NextRandom(&rng) % (damaged.size() - 13);
      switch (NextRandom(&rng) % 3) {
        case 0:
          damaged[at] = static_cast<char>(NextRandom(&rng));
          break;
        case 1:
          damaged.erase(at, 1 + NextRandom(&rng) % 16);
          break;
        default:
          damaged.insert(
              at, std::string(1 + NextRandom(&rng) % 16, static_cast<char>(NextRandom(&rng))));
          break;
      }
    }
    Reseal(&damaged);
    auto decoded = DecodeViews(Span(damaged));
    if (!decoded.ok()) {
      CHECK(decoded.status().code() == StatusCode::kCorruption);
      rejected++;
      continue;
    }
    // Damage that happens to parse (a changed letter in a string) must still be canonical.
    CHECK(EncodeViews(*decoded) == damaged);
  }
  CHECK(rejected > 0);
}

TEST_CASE("random bytes with a valid header and checksum never crash") {
  uint64_t rng = 7;
  for (int round = 0; round < 3000; round++) {
    std::string bytes = std::string("CLVW") + static_cast<char>(kViewsEncodingVersion);
    const size_t size = NextRandom(&rng) % 64;
    for (size_t i = 0; i < size; i++) {
      // Small values make plausible counts and lengths, so the parser gets some way in.
      bytes.push_back(
          static_cast<char>(NextRandom(&rng) % 4 == 0 ? NextRandom(&rng) : NextRandom(&rng) % 3));
    }
    bytes.append(8, '\0');
    Reseal(&bytes);
    auto decoded = DecodeViews(Span(bytes));
    if (decoded.ok()) {
      CHECK(EncodeViews(*decoded) == bytes);
    } else {
      CHECK(decoded.status().code() == StatusCode::kCorruption);
    }
  }
}

}  // namespace
}  // namespace cloister::reducers
