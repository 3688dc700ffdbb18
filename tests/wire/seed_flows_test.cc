// The seeds' command lines as written (tests/wire/seed_flows.sh), one section per test case,
// against the real cloisterd with curl, openssl and jq.
#include <catch2/catch.hpp>
#include <string>

#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

void RunSection(const std::string& section) {
  TempDir dir;
  const ProgramResult r =
      RunProgram("/bin/bash", {RunfilePath("tests/wire/seed_flows.sh"), section, CloisterdPath(),
                               RunfilePath("node/cloister-node"), dir.Sub("work")},
                 120'000);
  INFO(r.Describe());
  CHECK(r.Succeeded());
  CHECK_THAT(r.out, Catch::Contains("seed flows: " + section + " passed"));
}

TEST_CASE("seed 003: curl with the Basic root token") { RunSection("root"); }

TEST_CASE("seed 002: a key made by openssl, the openssl pkeyutl hand/shake flow, Bearer") {
  RunSection("tap");
}

TEST_CASE("seed 001: the openssl CA, curl with and without client certificates, join, revoke") {
  RunSection("mtls");
}

}  // namespace
}  // namespace cloister::testing
