// The OCI conformance checks (tests/wire/oci_checks.h) against a reference peer: Debian's
// docker-registry (CNCF distribution 2.8, /usr/bin/docker-registry). It keeps the checks honest
// until cloisterd serves the registry API: every check must pass here.
//
// Two registries are started once per test binary, on ephemeral loopback ports with their
// storage in a temporary directory (deletes enabled): one answering with absolute Locations and
// no authentication, one with relative Locations and htpasswd Basic authentication, so that
// both Location forms and the Authorization header on every request are exercised. Every check
// runs against both, in a SECTION each. distribution 2.8's departures from the spec are
// accepted (allow_legacy); its tags are mutable (immutable_tags false).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/oci_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";
// The htpasswd line of user "ocitest", password "cloister-test": bcrypt at cost 4, the lowest,
// because the registry verifies it on every request.
constexpr const char* kHtpasswd =
    "ocitest:$2b$04$EdJgI7cta05h2hzM3cxeBO3Se9s5CpBBpaFk3B8LndFh4cWhZ/kvC\n";
constexpr const char* kAuthorization = "Basic b2NpdGVzdDpjbG9pc3Rlci10ZXN0";  // ocitest:...
constexpr int kStartMs = 20000;

// A loopback port free now; fails the test if there is none.
uint16_t FreePort() {
  const uint16_t port = testing::FreeLoopbackPort();
  REQUIRE(port != 0);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  REQUIRE(out.good());
}

// True once GET /v2/ is answered at all (200, or 401 when authentication is on).
bool Answers(const WireTarget& target) {
  auto connection = WireConnection::Connect(target, 1000);
  if (!connection.ok() || !(*connection)->Send(MakeRequest("GET", "/v2/")).ok()) {
    return false;
  }
  auto response = (*connection)->ReadResponse(1000);
  return response.ok() && (response->status == 200 || response->status == 401);
}

// One docker-registry process, killed (and its storage removed) on destruction.
class RegistryPeer {
 public:
  RegistryPeer(bool relative_urls, bool basic_auth) {
    if (access(kRegistryBinary, X_OK) != 0) {
      FAIL(kRegistryBinary << " is missing: install Debian's docker-registry package "
                              "(scripts/setup does), the reference peer of these checks");
    }
    target_.wire.host = "127.0.0.1";
    target_.authorization = basic_auth ? kAuthorization : "";
    target_.repo_prefix = "ocichk";
    target_.immutable_tags = false;
    target_.allow_legacy = true;
    if (basic_auth) {
      WriteFile(dir_.Sub("htpasswd"), kHtpasswd);
    }
    // A port taken between FreePort and the registry's bind makes it exit: try another.
    for (int attempt = 0; attempt < 3 && child_ == nullptr; attempt++) {
      Launch(relative_urls, basic_auth, FreePort());
    }
    INFO("docker-registry output:\n" << ReadFile(dir_.Sub("registry.log")));
    REQUIRE(child_ != nullptr);
  }

  const OciTarget& target() const { return target_; }

 private:
  // Starts the registry on port; keeps it in child_ if it answers within kStartMs.
  void Launch(bool relative_urls, bool basic_auth, uint16_t port) {
    std::string config = "version: 0.1\n"
                         "log:\n"
                         "  level: warn\n"
                         "  accesslog:\n"
                         "    disabled: true\n"
                         "storage:\n"
                         "  filesystem:\n"
                         "    rootdirectory: " + dir_.Sub("data") + "\n"
                         "  delete:\n"
                         "    enabled: true\n"
                         "  maintenance:\n"
                         "    uploadpurging:\n"
                         "      enabled: false\n"
                         "http:\n"
                         "  addr: 127.0.0.1:" + std::to_string(port) + "\n"
                         "  secret: cloister-oci-check\n"
                         "  relativeurls: " + (relative_urls ? "true" : "false") + "\n";
    if (basic_auth) {
      config += "auth:\n"
                "  htpasswd:\n"
                "    realm: cloister-oci-check\n"
                "    path: " + dir_.Sub("htpasswd") + "\n";
    }
    WriteFile(dir_.Sub("config.yml"), config);
    auto child = std::make_unique<ChildProcess>(
        std::vector<std::string>{kRegistryBinary, "serve", dir_.Sub("config.yml")},
        std::vector<std::string>{}, dir_.Sub("registry.log"));
    target_.wire.port = port;
    if (WaitFor(kStartMs, [&] { return !child->Running() || Answers(target_.wire); }) &&
        child->Running()) {
      child_ = std::move(child);
    }
  }

  // Declared first, destroyed last: the storage outlives the process.
  TempDir dir_;
  OciTarget target_;
  std::unique_ptr<ChildProcess> child_;  // Its destructor kills the registry (SIGKILL).
};

// The two peers, each started on first use and stopped when the test binary exits.
const OciTarget& Peer(bool basic_auth) {
  static std::unique_ptr<RegistryPeer> absolute_open;
  static std::unique_ptr<RegistryPeer> relative_basic;
  std::unique_ptr<RegistryPeer>& peer = basic_auth ? relative_basic : absolute_open;
  if (peer == nullptr) {
    peer = std::make_unique<RegistryPeer>(/*relative_urls=*/basic_auth, basic_auth);
  }
  return peer->target();
}

// Runs check against both peers, a SECTION each.
template <typename Check>
void OnBothPeers(Check check) {
  SECTION("docker-registry: absolute Locations, no authentication") { check(Peer(false)); }
  SECTION("docker-registry: relative Locations, Basic authentication") { check(Peer(true)); }
}

TEST_CASE("oci: GET /v2/ answers 200", "[oci]") { OnBothPeers(CheckApiVersion); }

TEST_CASE("oci: the challenge without credentials", "[oci]") {
  SECTION("docker-registry without authentication: 200") {
    CheckAuthChallenge(Peer(false), /*auth_required=*/false);
  }
  SECTION("docker-registry with Basic authentication: 401") {
    CheckAuthChallenge(Peer(true), /*auth_required=*/true);
  }
}

TEST_CASE("oci: monolithic upload, HEAD, GET, Range", "[oci]") {
  OnBothPeers(CheckMonolithicUpload);
}

TEST_CASE("oci: single POST upload", "[oci]") { OnBothPeers(CheckSinglePostUpload); }

TEST_CASE("oci: unknown blob is 404 BLOB_UNKNOWN", "[oci]") { OnBothPeers(CheckBlobUnknown); }

TEST_CASE("oci: chunked upload", "[oci]") { OnBothPeers(CheckChunkedUpload); }

TEST_CASE("oci: out-of-order chunk", "[oci]") { OnBothPeers(CheckChunkOutOfOrder); }

TEST_CASE("oci: digest mismatch keeps nothing", "[oci]") { OnBothPeers(CheckDigestMismatch); }

TEST_CASE("oci: invalid digest is 400", "[oci]") { OnBothPeers(CheckInvalidDigest); }

TEST_CASE("oci: truncated upload keeps nothing, and a retry succeeds", "[oci]") {
  OnBothPeers(CheckTruncatedUpload);
}

TEST_CASE("oci: cancelled upload", "[oci]") { OnBothPeers(CheckCancelUpload); }

TEST_CASE("oci: cross-repository mount", "[oci]") { OnBothPeers(CheckCrossRepositoryMount); }

TEST_CASE("oci: manifest push and pull", "[oci]") { OnBothPeers(CheckManifestPushPull); }

TEST_CASE("oci: manifest refusals", "[oci]") { OnBothPeers(CheckManifestErrors); }

TEST_CASE("oci: image index", "[oci]") { OnBothPeers(CheckImageIndex); }

TEST_CASE("oci: tags list and pagination", "[oci]") { OnBothPeers(CheckTagsList); }

TEST_CASE("oci: manifest delete", "[oci]") { OnBothPeers(CheckManifestDelete); }

TEST_CASE("oci: delete while a 64 MiB pull streams", "[oci]") {
  OnBothPeers([](const OciTarget& target) { CheckDeleteDuringPull(target); });
}

TEST_CASE("oci: moving a tag (mutable tags)", "[oci]") { OnBothPeers(CheckTagImmutability); }

}  // namespace
}  // namespace cloister::testing
