// The OCI conformance checks (tests/wire/oci_checks.h) against the real cloisterd: its registry
// listener's /v2/ data plane, strictly (no legacy allowances), with immutable tags.
//
// Two daemons are started once per test binary on ephemeral loopback ports: one with
// authentication off, one with the root token, which OCI clients present as Basic root:<token>
// after the 401 challenge. Every check runs against both, in a SECTION each.
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "log/base64.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/oci_checks.h"

namespace cloister::testing {
namespace {

constexpr const char* kToken = "oci-wire-root-token-0123456789";

struct Daemon {
  TempDir dir;
  std::unique_ptr<CloisterdProcess> process;
  OciTarget target;
};

const OciTarget& Cloisterd(bool auth) {
  static std::unique_ptr<Daemon> open;
  static std::unique_ptr<Daemon> secured;
  std::unique_ptr<Daemon>& daemon = auth ? secured : open;
  if (daemon == nullptr) {
    daemon = std::make_unique<Daemon>();
    std::vector<std::string> env;
    if (auth) {
      env = {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken};
    }
    auto started = CloisterdProcess::Start(daemon->dir.Sub("data"), daemon->dir.path(), {}, env);
    REQUIRE(started.ok());
    daemon->process = std::move(started.value());
    daemon->target.wire = daemon->process->registry();
    daemon->target.authorization =
        auth ? "Basic " + log::Base64Encode(std::string("root:") + kToken) : "";
    daemon->target.repo_prefix = "ocichk";
    daemon->target.immutable_tags = true;
    daemon->target.allow_legacy = false;
  }
  return daemon->target;
}

template <typename Check>
void OnBoth(Check check) {
  SECTION("cloisterd: authentication off") { check(Cloisterd(false)); }
  SECTION("cloisterd: root token as Basic") { check(Cloisterd(true)); }
}

TEST_CASE("cloisterd oci: GET /v2/", "[oci]") { OnBoth(CheckApiVersion); }

TEST_CASE("cloisterd oci: the challenge without credentials", "[oci]") {
  SECTION("authentication off: 200") { CheckAuthChallenge(Cloisterd(false), false); }
  SECTION("authentication on: 401 with WWW-Authenticate") {
    CheckAuthChallenge(Cloisterd(true), true);
  }
}

TEST_CASE("cloisterd oci: monolithic upload, HEAD, GET, Range", "[oci]") {
  OnBoth(CheckMonolithicUpload);
}
TEST_CASE("cloisterd oci: single POST upload", "[oci]") { OnBoth(CheckSinglePostUpload); }
TEST_CASE("cloisterd oci: unknown blob", "[oci]") { OnBoth(CheckBlobUnknown); }
TEST_CASE("cloisterd oci: chunked upload", "[oci]") { OnBoth(CheckChunkedUpload); }
TEST_CASE("cloisterd oci: out-of-order chunk is 416", "[oci]") { OnBoth(CheckChunkOutOfOrder); }
TEST_CASE("cloisterd oci: digest mismatch keeps nothing", "[oci]") {
  OnBoth(CheckDigestMismatch);
}
TEST_CASE("cloisterd oci: invalid digest", "[oci]") { OnBoth(CheckInvalidDigest); }
TEST_CASE("cloisterd oci: truncated upload keeps nothing; a retry succeeds", "[oci]") {
  OnBoth(CheckTruncatedUpload);
}
TEST_CASE("cloisterd oci: cancelled upload", "[oci]") { OnBoth(CheckCancelUpload); }
TEST_CASE("cloisterd oci: cross-repository mount", "[oci]") {
  OnBoth(CheckCrossRepositoryMount);
}
TEST_CASE("cloisterd oci: manifest push and pull", "[oci]") { OnBoth(CheckManifestPushPull); }
TEST_CASE("cloisterd oci: manifest refusals", "[oci]") { OnBoth(CheckManifestErrors); }
TEST_CASE("cloisterd oci: image index", "[oci]") { OnBoth(CheckImageIndex); }
TEST_CASE("cloisterd oci: tags list and pagination", "[oci]") { OnBoth(CheckTagsList); }
TEST_CASE("cloisterd oci: manifest delete", "[oci]") { OnBoth(CheckManifestDelete); }
TEST_CASE("cloisterd oci: delete while a 64 MiB pull streams", "[oci]") {
  OnBoth([](const OciTarget& target) { CheckDeleteDuringPull(target); });
}
TEST_CASE("cloisterd oci: tags are immutable", "[oci]") { OnBoth(CheckTagImmutability); }

}  // namespace
}  // namespace cloister::testing
