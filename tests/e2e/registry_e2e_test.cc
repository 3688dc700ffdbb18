// The registry's vertical slice end to end: the real cloisterd (registry listener: the OCI
// Distribution API and Anka's /registry endpoints; controller listener: /api/v1/registry),
// driven by skopeo, the client CI pipelines use, and by raw HTTP on WireConnection.
//
//  * A generated OCI image layout (a JSON config, two random gzip layers of 1 and 5 MiB, an OCI
//    manifest) is pushed with `skopeo copy`, inspected, listed and pulled back into another
//    layout; every blob comes back byte for byte, and the Anka endpoints show the template.
//    Run with authentication off and with the root token (skopeo without creds then fails).
//  * A second tag sharing a layer uploads only the new blobs.
//  * SIGKILL in the middle of a 64 MiB blob upload, and between the blob uploads and the
//    manifest PUT: after a restart nothing half-written is visible, the log verifies, and a
//    retry succeeds.
//  * Revert and delete through the Anka endpoints, each recorded in the audit export.
//
// skopeo is /usr/bin/skopeo (scripts/setup installs it); if it is missing the tests fail. Layer
// contents come from a seeded generator: the seed is printed, CLOISTER_SEED reproduces it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "log/base64.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/oci_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr const char* kToken = "registry-e2e-root-token-0123456789";
constexpr const char* kSkopeo = "/usr/bin/skopeo";
constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr const char* kOciLayer = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr size_t kMiB = size_t{1} << 20;
// One skopeo run (a push or pull of a few MiB over loopback takes well under a second).
constexpr int kSkopeoTimeoutMs = 120000;
// A request carrying or answering a 64 MiB body (the upload is fsynced before the answer).
constexpr int kLargeRequestTimeoutMs = 60000;

// ---------------------------------------------------------------------------------------------
// Bytes: seeded random contents, gzip framing, digests.

uint64_t Seed() {
  static const uint64_t seed = []() -> uint64_t {
    const char* text = std::getenv("CLOISTER_SEED");
    uint64_t chosen = 0;
    if (text != nullptr && *text != '\0') {
      chosen = std::strtoull(text, nullptr, 10);
    } else {
      std::random_device device;
      chosen = (uint64_t{device()} << 32) ^ device();
    }
    std::cout << "registry_e2e_test: CLOISTER_SEED=" << chosen << "\n";
    return chosen;
  }();
  return seed;
}

// A generator for one test case: the seed, salted so that each case has its own bytes.
std::mt19937_64 Rng(uint64_t salt) {
  return std::mt19937_64(Seed() ^ (salt * 0x9e3779b97f4a7c15u));
}

std::string RandomBytes(size_t size, std::mt19937_64& rng) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    const uint64_t word = rng();
    for (size_t j = 0; j < 8 && i + j < size; j++) {
      bytes[i + j] = static_cast<char>(word >> (8 * j));
    }
  }
  return bytes;
}

uint32_t Crc32(std::string_view bytes) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; n++) {
      uint32_t c = n;
      for (int k = 0; k < 8; k++) {
        c = (c & 1) != 0 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      }
      t[n] = c;
    }
    return t;
  }();
  uint32_t crc = 0xffffffffu;
  for (const char c : bytes) {
    crc = table[(crc ^ static_cast<uint8_t>(c)) & 0xff] ^ (crc >> 8);
  }
  return crc ^ 0xffffffffu;
}

void AppendLe32(std::string* out, uint32_t value) {
  for (int i = 0; i < 4; i++) {
    out->push_back(static_cast<char>(value >> (8 * i)));
  }
}

// A valid gzip member (RFC 1952) holding raw in stored deflate blocks. Layers must really be
// gzip: skopeo compresses a layer it finds uncompressed on its way to a registry, which would
// change its digest; a gzip layer passes through untouched.
std::string Gzip(std::string_view raw) {
  std::string out = {'\x1f', '\x8b', '\x08', '\0', '\0', '\0', '\0', '\0', '\0', '\xff'};
  size_t at = 0;
  do {
    const size_t n = std::min<size_t>(raw.size() - at, 65535);
    const bool last = at + n == raw.size();
    out.push_back(last ? '\x01' : '\x00');
    out.push_back(static_cast<char>(n & 0xff));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(~n & 0xff));
    out.push_back(static_cast<char>((~n >> 8) & 0xff));
    out.append(raw.substr(at, n));
    at += n;
  } while (at < raw.size());
  AppendLe32(&out, Crc32(raw));
  AppendLe32(&out, static_cast<uint32_t>(raw.size()));
  return out;
}

// The 64 hex digits of a "sha256:<hex>" digest.
std::string Hex(const std::string& digest) { return digest.substr(std::string("sha256:").size()); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  REQUIRE(out.good());
}

// ---------------------------------------------------------------------------------------------
// An OCI image and its layout directory.

struct Image {
  std::string config;
  std::string config_digest;
  std::vector<std::string> layers;  // Gzip bytes.
  std::vector<std::string> layer_digests;
  std::string manifest;
  std::string manifest_digest;
};

// An image of the given uncompressed layer contents; label goes into the config, so images with
// the same layers still differ.
Image MakeImage(const std::vector<std::string>& raw_layers, const std::string& label) {
  Image image;
  OrderedJson diff_ids = OrderedJson::array();
  OrderedJson layers = OrderedJson::array();
  for (const std::string& raw : raw_layers) {
    image.layers.push_back(Gzip(raw));
    image.layer_digests.push_back(Sha256Digest(image.layers.back()));
    diff_ids.push_back(Sha256Digest(raw));
    layers.push_back({{"mediaType", kOciLayer},
                      {"digest", image.layer_digests.back()},
                      {"size", image.layers.back().size()}});
  }
  OrderedJson config = {{"architecture", "arm64"},
                        {"os", "darwin"},
                        {"config", {{"Labels", {{"cloister.test", label}}}}},
                        {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  image.config = config.dump();
  image.config_digest = Sha256Digest(image.config);
  OrderedJson manifest = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"config",
       {{"mediaType", kOciConfig}, {"digest", image.config_digest}, {"size", image.config.size()}}},
      {"layers", layers}};
  image.manifest = manifest.dump();
  image.manifest_digest = Sha256Digest(image.manifest);
  return image;
}

// Writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) holding image as tag.
void WriteLayout(const std::string& dir, const Image& image, const std::string& tag) {
  fs::create_directories(dir + "/blobs/sha256");
  WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  auto blob = [&](const std::string& bytes) {
    WriteFile(dir + "/blobs/sha256/" + Hex(Sha256Digest(bytes)), bytes);
  };
  blob(image.config);
  for (const std::string& layer : image.layers) {
    blob(layer);
  }
  blob(image.manifest);
  const OrderedJson index = {
      {"schemaVersion", 2},
      {"manifests",
       {{{"mediaType", kOciManifest},
         {"digest", image.manifest_digest},
         {"size", image.manifest.size()},
         {"annotations", {{"org.opencontainers.image.ref.name", tag}}}}}}};
  WriteFile(dir + "/index.json", index.dump());
}

// The files of a layout's blobs/sha256, by name.
std::map<std::string, std::string> LayoutBlobs(const std::string& dir) {
  std::map<std::string, std::string> blobs;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir + "/blobs/sha256")) {
    blobs[entry.path().filename().string()] = ReadFile(entry.path().string());
  }
  return blobs;
}

// ---------------------------------------------------------------------------------------------
// The daemon.

// A cloisterd in its own temporary directory, with or without the root token.
class Registry {
 public:
  explicit Registry(bool auth) : auth_(auth) { Start(); }

  void Start() {
    std::vector<std::string> env;
    if (auth_) {
      env = {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken};
    }
    auto started = CloisterdProcess::Start(data(), dir_.path(), {}, env);
    INFO(started.status().ToString());
    REQUIRE(started.ok());
    process_ = std::move(*started);
  }

  // SIGKILL, and the exit reaped: what a power cut leaves of the process (not of the disk).
  void Crash() {
    Result<int> status = process_->Stop(SIGKILL, 10000);
    INFO(status.status().ToString());
    REQUIRE(status.ok());
    REQUIRE(WIFSIGNALED(*status));
    REQUIRE(WTERMSIG(*status) == SIGKILL);
    process_.reset();
  }

  bool auth() const { return auth_; }
  std::string data() const { return dir_.Sub("data"); }
  std::string Sub(const std::string& name) const { return dir_.Sub(name); }
  WireTarget registry() const { return process_->registry(); }
  WireTarget controller() const { return process_->controller(); }
  std::string Host() const { return "127.0.0.1:" + std::to_string(process_->registry_port()); }
  std::string Output() const { return process_->Output(); }

  // The Authorization header line of the root token ("" with authentication off).
  std::string Credentials() const {
    return auth_ ? "Authorization: Basic " + log::Base64Encode(std::string("root:") + kToken) +
                       "\r\n"
                 : "";
  }

  // One request on the registry listener, with the credentials.
  WireResponse Oci(std::string_view method, const std::string& path, std::string_view body = "",
                   const std::string& headers = "") const {
    return Call(registry(), method, path, body, Credentials() + headers);
  }

 private:
  bool auth_;
  TempDir dir_;
  std::unique_ptr<CloisterdProcess> process_;
};

// POST /v2/<repo>/blobs/uploads/?digest= with the bytes (a monolithic upload): 201.
void PushBlob(const Registry& reg, const std::string& repo, const std::string& bytes) {
  const std::string digest = Sha256Digest(bytes);
  const WireResponse response =
      reg.Oci("POST", "/v2/" + repo + "/blobs/uploads/?digest=" + digest, bytes,
              "Content-Type: application/octet-stream\r\n");
  INFO("POST blob " << digest << ": " << response.status << " " << response.body);
  REQUIRE(response.status == 201);
  REQUIRE(response.Header("Docker-Content-Digest") == digest);
}

WireResponse PutManifest(const Registry& reg, const std::string& repo, const std::string& tag,
                         const std::string& manifest) {
  return reg.Oci("PUT", "/v2/" + repo + "/manifests/" + tag, manifest,
                 std::string("Content-Type: ") + kOciManifest + "\r\n");
}

// Config, layers, then the manifest by tag: 201.
void PushImage(const Registry& reg, const std::string& repo, const std::string& tag,
               const Image& image) {
  PushBlob(reg, repo, image.config);
  for (const std::string& layer : image.layers) {
    PushBlob(reg, repo, layer);
  }
  const WireResponse response = PutManifest(reg, repo, tag, image.manifest);
  INFO("PUT manifest " << repo << ":" << tag << ": " << response.status << " " << response.body);
  REQUIRE(response.status == 201);
  REQUIRE(response.Header("Docker-Content-Digest") == image.manifest_digest);
}

WireResponse GetManifest(const Registry& reg, const std::string& repo, const std::string& ref) {
  return reg.Oci("GET", "/v2/" + repo + "/manifests/" + ref, "",
                 std::string("Accept: ") + kOciManifest + "\r\n");
}

// The manifest served for repo:ref is exactly manifest.
void RequireManifest(const Registry& reg, const std::string& repo, const std::string& ref,
                     const Image& image) {
  const WireResponse response = GetManifest(reg, repo, ref);
  INFO("GET manifest " << repo << ":" << ref << ": " << response.status);
  REQUIRE(response.status == 200);
  REQUIRE(response.Header("Content-Type") == kOciManifest);
  REQUIRE(response.Header("Docker-Content-Digest") == image.manifest_digest);
  REQUIRE(response.body == image.manifest);
}

// GET /v2/<repo>/tags/list: 200 and its tags.
std::vector<std::string> Tags(const Registry& reg, const std::string& repo) {
  const WireResponse response = reg.Oci("GET", "/v2/" + repo + "/tags/list");
  INFO(response.status << " " << response.body);
  REQUIRE(response.status == 200);
  const Json list = Json::parse(response.body);
  REQUIRE(list["name"] == repo);
  return list["tags"].get<std::vector<std::string>>();
}

// The id of the template named name, from GET /registry/vm on the registry listener ("" if
// it is not listed).
std::string TemplateId(const Registry& reg, const std::string& name) {
  const Json list = RequireOk(reg.Oci("GET", "/registry/vm"));
  REQUIRE(list.is_array());
  std::string id;
  for (const Json& item : list) {
    REQUIRE(item.is_object());
    REQUIRE(item.size() == 1);
    if (item.begin().value() == name) {
      REQUIRE(id.empty());  // Names are unique.
      id = item.begin().key();
    }
  }
  return id;
}

// The versions of a template as (number, tag), from GET /registry/vm?id=.
std::vector<std::pair<int, std::string>> Versions(const Json& vm) {
  std::vector<std::pair<int, std::string>> versions;
  for (const Json& v : vm.at("versions")) {
    versions.emplace_back(v.at("number").get<int>(), v.at("tag").get<std::string>());
  }
  return versions;
}

using VersionList = std::vector<std::pair<int, std::string>>;

// The audit export's events of one type about one template, as their payloads.
std::vector<Json> AuditPayloads(const Registry& reg, const std::string& type,
                                const std::string& template_id) {
  std::vector<Json> payloads;
  for (const std::string& line : AuditExportLines(reg.data())) {
    const Json event = Json::parse(line);
    if (event.at("type") == type && event.at("payload").at("template_id") == template_id) {
      payloads.push_back(event.at("payload"));
    }
  }
  return payloads;
}

// `cloister audit verify` on the daemon's data directory succeeds.
void RequireLogVerifies(const Registry& reg) {
  const ProgramResult verify = RunProgram(RunfilePath("tools/cloister"),
                                          {"audit", "verify", "--data", reg.data()}, 60000);
  INFO(verify.Describe() << "\n" << verify.out);
  REQUIRE(verify.Succeeded());
  REQUIRE(verify.out.rfind("ok: head seq ", 0) == 0);
}

// Access-log lines of the daemon for method and exact path (the query is not logged).
size_t CountRequests(const std::string& output, const std::string& method,
                     const std::string& path) {
  const std::string needle = " method=" + method + " path=" + path + " ";
  size_t count = 0;
  for (size_t at = output.find(needle); at != std::string::npos;
       at = output.find(needle, at + 1)) {
    count++;
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// skopeo.

// skopeo, with HOME, XDG_RUNTIME_DIR and TMPDIR in home (no credentials or state of the host's
// user are read) and no signature policy.
std::vector<std::string> SkopeoArgv(const std::string& home, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"HOME=" + home, "XDG_RUNTIME_DIR=" + home, "TMPDIR=" + home,
                                   kSkopeo, "--insecure-policy", "--tmpdir", home};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

ProgramResult Skopeo(const Registry& reg, const std::vector<std::string>& args) {
  INFO("skopeo is required at " << kSkopeo << " (scripts/setup installs the Debian package)");
  REQUIRE(::access(kSkopeo, X_OK) == 0);
  const std::string home = reg.Sub("skopeo-home");
  fs::create_directories(home);
  return RunProgram("env", SkopeoArgv(home, args), kSkopeoTimeoutMs);
}

std::string ShellQuote(const std::string& word) {
  std::string quoted = "'";
  for (const char c : word) {
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return quoted + "'";
}

// skopeo on a pseudo-terminal (util-linux script), 200 columns wide: only then does it print
// its per-blob outcome ("Copying blob <12 hex> skipped: already exists"). Output with '\r'
// turned into '\n'.
ProgramResult SkopeoOnTerminal(const Registry& reg, const std::vector<std::string>& args) {
  INFO("skopeo is required at " << kSkopeo << " (scripts/setup installs the Debian package)");
  REQUIRE(::access(kSkopeo, X_OK) == 0);
  const std::string home = reg.Sub("skopeo-home");
  fs::create_directories(home);
  std::string command = "stty cols 200 rows 50; exec env";
  for (const std::string& word : SkopeoArgv(home, args)) {
    command += " " + ShellQuote(word);
  }
  ProgramResult result = RunProgram("script", {"-qefc", command, "/dev/null"}, kSkopeoTimeoutMs);
  for (char& c : result.out) {
    c = c == '\r' ? '\n' : c;
  }
  return result;
}

std::vector<std::string> DestCreds(const Registry& reg) {
  return reg.auth() ? std::vector<std::string>{"--dest-creds", std::string("root:") + kToken}
                    : std::vector<std::string>{};
}

std::vector<std::string> SrcCreds(const Registry& reg) {
  return reg.auth() ? std::vector<std::string>{"--src-creds", std::string("root:") + kToken}
                    : std::vector<std::string>{};
}

std::vector<std::string> Creds(const Registry& reg) {
  return reg.auth() ? std::vector<std::string>{"--creds", std::string("root:") + kToken}
                    : std::vector<std::string>{};
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// skopeo copy oci:<layout>:<tag> docker://<registry>/<repo>:<tag>.
ProgramResult SkopeoPush(const Registry& reg, const std::string& layout, const std::string& repo,
                         const std::string& tag, bool on_terminal = false) {
  const std::vector<std::string> args =
      Concat(Concat({"copy", "--dest-tls-verify=false"}, DestCreds(reg)),
             {"oci:" + layout + ":" + tag, "docker://" + reg.Host() + "/" + repo + ":" + tag});
  return on_terminal ? SkopeoOnTerminal(reg, args) : Skopeo(reg, args);
}

// The 1 MiB and 5 MiB layers of v1 (and the 2 MiB layer v2 adds) for one test case: each daemon
// gets layers of its own, so skopeo's blob cache never knows them from an earlier push.
struct Layers {
  std::string shared;
  std::string big;
  std::string added;
};

Layers MakeLayers(uint64_t salt) {
  std::mt19937_64 rng = Rng(salt);
  Layers layers;
  layers.shared = RandomBytes(1 * kMiB, rng);
  layers.big = RandomBytes(5 * kMiB, rng);
  layers.added = RandomBytes(2 * kMiB, rng);
  return layers;
}

// ---------------------------------------------------------------------------------------------
// 1. skopeo round trip.

void RoundTrip(const Registry& reg) {
  const Layers raw = MakeLayers(reg.auth() ? 11 : 1);
  const Image v1 = MakeImage({raw.shared, raw.big}, "v1");
  const std::string src = reg.Sub("src");
  WriteLayout(src, v1, "v1");

  if (reg.auth()) {
    // Without credentials skopeo is refused, and nothing appears.
    const ProgramResult refused = Skopeo(
        reg, {"copy", "--dest-tls-verify=false", "--dest-no-creds", "oci:" + src + ":v1",
              "docker://" + reg.Host() + "/team/macos:v1"});
    INFO(refused.Describe());
    REQUIRE_FALSE(refused.timed_out);
    REQUIRE_FALSE(refused.Succeeded());
    REQUIRE(refused.err.find("unauthorized") != std::string::npos);
    RequireOciError(reg.Oci("GET", "/v2/team/macos/tags/list"), 404, {"NAME_UNKNOWN"});
    RequireFail(Call(reg.registry(), "GET", "/registry/vm"), 401);
  }

  const ProgramResult pushed = SkopeoPush(reg, src, "team/macos", "v1");
  INFO(pushed.Describe() << "\n" << pushed.out);
  REQUIRE(pushed.Succeeded());

  // What the registry answers skopeo is what was pushed.
  const ProgramResult raw_manifest =
      Skopeo(reg, Concat(Concat({"inspect", "--raw", "--tls-verify=false"}, Creds(reg)),
                         {"docker://" + reg.Host() + "/team/macos:v1"}));
  INFO(raw_manifest.Describe());
  REQUIRE(raw_manifest.Succeeded());
  REQUIRE(raw_manifest.out == v1.manifest);
  const ProgramResult tags =
      Skopeo(reg, Concat(Concat({"list-tags", "--tls-verify=false"}, Creds(reg)),
                         {"docker://" + reg.Host() + "/team/macos"}));
  INFO(tags.Describe() << "\n" << tags.out);
  REQUIRE(tags.Succeeded());
  const Json tag_list = Json::parse(tags.out);
  REQUIRE(tag_list["Repository"] == reg.Host() + "/team/macos");
  REQUIRE(tag_list["Tags"] == Json::array({"v1"}));

  // Pulled back into a new layout: every source blob, byte for byte.
  const std::string out = reg.Sub("out");
  const ProgramResult pulled =
      Skopeo(reg, Concat(Concat({"copy", "--src-tls-verify=false"}, SrcCreds(reg)),
                         {"docker://" + reg.Host() + "/team/macos:v1", "oci:" + out + ":v1"}));
  INFO(pulled.Describe() << "\n" << pulled.out);
  REQUIRE(pulled.Succeeded());
  const std::map<std::string, std::string> sent = LayoutBlobs(src);
  const std::map<std::string, std::string> back = LayoutBlobs(out);
  REQUIRE(sent.size() == 4);  // Config, two layers, manifest.
  for (const auto& [name, bytes] : sent) {
    INFO("blob " << name);
    REQUIRE(back.contains(name));
    REQUIRE(back.at(name).size() == bytes.size());
    REQUIRE((back.at(name) == bytes));
  }
  const Json index = Json::parse(ReadFile(out + "/index.json"));
  REQUIRE(index["manifests"].size() == 1);
  REQUIRE(index["manifests"][0]["digest"] == v1.manifest_digest);

  // The Anka view of the same push: a template "team/macos" with version 0 "v1".
  const std::string id = TemplateId(reg, "team/macos");
  REQUIRE_FALSE(id.empty());
  const Json vm = RequireOk(reg.Oci("GET", "/registry/vm?id=" + id));
  REQUIRE(vm["id"] == id);
  REQUIRE(vm["name"] == "team/macos");
  REQUIRE(Versions(vm) == VersionList{{0, "v1"}});
  REQUIRE(vm["versions"][0]["manifest"] == v1.manifest_digest);
  REQUIRE(vm["versions"][0]["config_file"] == v1.config_digest);
  REQUIRE(vm["versions"][0]["images"] == Json(v1.layer_digests));

  const std::string credentials = reg.Credentials();
  const Json listed = RequireOk(Call(reg.controller(), "GET", "/api/v1/registry/vm", "",
                                     credentials));
  REQUIRE(listed.is_array());
  REQUIRE(std::count(listed.begin(), listed.end(), Json{{"id", id}, {"name", "team/macos"}}) ==
          1);
  const Json versions = RequireOk(Call(reg.controller(), "GET", "/api/v1/registry/vm?id=" + id,
                                       "", credentials));
  REQUIRE(versions["name"] == "team/macos");
  REQUIRE(Versions(versions) == VersionList{{0, "v1"}});
  if (reg.auth()) {
    RequireFail(Call(reg.controller(), "GET", "/api/v1/registry/vm"), 401);
  }
}

TEST_CASE("registry e2e: skopeo pushes an OCI layout and pulls it back byte for byte",
          "[registry][skopeo]") {
  SECTION("authentication off") {
    Registry reg(false);
    RoundTrip(reg);
  }
  SECTION("root token (skopeo --dest-creds root:<token>)") {
    Registry reg(true);
    RoundTrip(reg);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. A second tag with a shared layer.

void SecondPush(const Registry& reg) {
  const Layers raw = MakeLayers(reg.auth() ? 12 : 2);
  const Image v1 = MakeImage({raw.shared, raw.big}, "v1");
  const Image v2 = MakeImage({raw.shared, raw.added}, "v2");
  REQUIRE(v1.layer_digests[0] == v2.layer_digests[0]);
  WriteLayout(reg.Sub("v1"), v1, "v1");
  WriteLayout(reg.Sub("v2"), v2, "v2");
  const ProgramResult first = SkopeoPush(reg, reg.Sub("v1"), "team/macos", "v1");
  INFO(first.Describe());
  REQUIRE(first.Succeeded());

  const std::string uploads = "/v2/team/macos/blobs/uploads/";
  const size_t posts_before = CountRequests(reg.Output(), "POST", uploads);
  REQUIRE(posts_before == 3);  // v1: config and two layers.
  const ProgramResult second = SkopeoPush(reg, reg.Sub("v2"), "team/macos", "v2", true);
  INFO(second.Describe() << "\n" << second.out);
  REQUIRE(second.Succeeded());
  const std::string shared = Hex(v2.layer_digests[0]).substr(0, 12);
  const std::string added = Hex(v2.layer_digests[1]).substr(0, 12);
  REQUIRE(second.out.find("Copying blob " + shared + " skipped: already exists") !=
          std::string::npos);
  REQUIRE(second.out.find("Copying blob " + added + " skipped") == std::string::npos);
  // The server saw uploads for the new layer and the new config only.
  REQUIRE(CountRequests(reg.Output(), "POST", uploads) - posts_before == 2);

  const std::string id = TemplateId(reg, "team/macos");
  REQUIRE_FALSE(id.empty());
  const Json vm = RequireOk(reg.Oci("GET", "/registry/vm?id=" + id));
  REQUIRE(Versions(vm) == VersionList{{0, "v1"}, {1, "v2"}});
  REQUIRE(Tags(reg, "team/macos") == std::vector<std::string>{"v1", "v2"});
  RequireManifest(reg, "team/macos", "v1", v1);
  RequireManifest(reg, "team/macos", "v2", v2);
}

TEST_CASE("registry e2e: a second tag sharing a layer uploads only the new blobs",
          "[registry][skopeo]") {
  SECTION("authentication off") {
    Registry reg(false);
    SecondPush(reg);
  }
  SECTION("root token") {
    Registry reg(true);
    SecondPush(reg);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. SIGKILL during a push.

// The files under dir (recursively), by name.
std::vector<std::string> FileNames(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) {
    return names;
  }
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) {
      names.push_back(entry.path().filename().string());
    }
  }
  return names;
}

// POST /v2/<repo>/blobs/uploads/: 202; the upload's Location and id.
std::pair<std::string, std::string> StartUpload(const Registry& reg, const std::string& repo) {
  const WireResponse response = reg.Oci("POST", "/v2/" + repo + "/blobs/uploads/");
  INFO(response.status << " " << response.body);
  REQUIRE(response.status == 202);
  REQUIRE_FALSE(response.Header("Location").empty());
  REQUIRE_FALSE(response.Header("Docker-Upload-UUID").empty());
  return {response.Header("Location"), response.Header("Docker-Upload-UUID")};
}

// The head of PUT <location>?digest= with a body of length bytes.
std::string UploadPutHead(const Registry& reg, const std::string& location,
                          const std::string& digest, size_t length) {
  const char* separator = location.find('?') == std::string::npos ? "?" : "&";
  return "PUT " + location + separator + "digest=" + digest +
         " HTTP/1.1\r\nHost: test\r\n" + reg.Credentials() +
         "Content-Type: application/octet-stream\r\nContent-Length: " + std::to_string(length) +
         "\r\n\r\n";
}

// A whole upload of bytes, POST then one PUT: 201.
void UploadLarge(const Registry& reg, const std::string& repo, const std::string& bytes,
                 const std::string& digest) {
  const std::string location = StartUpload(reg, repo).first;
  auto connection = WireConnection::Connect(reg.registry());
  REQUIRE(connection.ok());
  REQUIRE((*connection)->Send(UploadPutHead(reg, location, digest, bytes.size())).ok());
  REQUIRE((*connection)->Send(bytes, kLargeRequestTimeoutMs).ok());
  auto response = (*connection)->ReadResponse(kLargeRequestTimeoutMs);
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  INFO(response->status << " " << response->body);
  REQUIRE(response->status == 201);
  REQUIRE(response->Header("Docker-Content-Digest") == digest);
}

TEST_CASE("registry e2e: SIGKILL during a 64 MiB blob upload leaves nothing; a retry succeeds",
          "[registry][crash]") {
  Registry reg(false);
  std::mt19937_64 rng = Rng(3);
  const std::string big = RandomBytes(64 * kMiB, rng);
  const std::string digest = Sha256Digest(big);
  const std::string registry_dir = reg.data() + "/registry";

  // Half of the body of a monolithic PUT, received and on disk under uploads/, then SIGKILL.
  const auto [location, upload_id] = StartUpload(reg, "team/crash");
  {
    auto connection = WireConnection::Connect(reg.registry());
    REQUIRE(connection.ok());
    const size_t half = big.size() / 2;
    REQUIRE((*connection)
                ->Send(UploadPutHead(reg, location, digest, big.size()) + big.substr(0, half),
                       kLargeRequestTimeoutMs)
                .ok());
    const std::string partial = registry_dir + "/uploads/" + upload_id;
    uintmax_t size = 0;
    const bool received = WaitFor(20000, [&] {
      std::error_code error;
      size = fs::file_size(partial, error);
      return size == half;
    });
    INFO("upload file " << partial << " holds " << size << " bytes, not " << half);
    INFO("cloisterd output:\n" << reg.Output());
    REQUIRE(received);
    reg.Crash();
  }

  reg.Start();
  {
    INFO("the half-uploaded blob must not be visible after the restart");
    const WireResponse head = reg.Oci("HEAD", "/v2/team/crash/blobs/" + digest);
    REQUIRE(head.status == 404);
    RequireOciError(reg.Oci("GET", "/v2/team/crash/blobs/" + digest), 404, {"BLOB_UNKNOWN"});
    RequireOciError(reg.Oci("GET", location), 404, {"BLOB_UPLOAD_UNKNOWN"});
    REQUIRE(FileNames(registry_dir + "/uploads").empty());
    const std::vector<std::string> blobs = FileNames(registry_dir + "/blobs");
    REQUIRE(std::count(blobs.begin(), blobs.end(), Hex(digest)) == 0);
  }
  RequireLogVerifies(reg);

  // A whole retry, then a manifest naming the blob.
  UploadLarge(reg, "team/crash", big, digest);
  const WireResponse head = reg.Oci("HEAD", "/v2/team/crash/blobs/" + digest);
  REQUIRE(head.status == 200);
  REQUIRE(head.Header("Content-Length") == std::to_string(big.size()));
  Image image = MakeImage({}, "crash");
  {
    // The 64 MiB blob is the layer (stored as it is: its media type is not checked).
    OrderedJson manifest = OrderedJson::parse(image.manifest);
    manifest["layers"] = {{{"mediaType", kOciLayer}, {"digest", digest}, {"size", big.size()}}};
    image.manifest = manifest.dump();
    image.manifest_digest = Sha256Digest(image.manifest);
  }
  PushBlob(reg, "team/crash", image.config);
  const WireResponse put = PutManifest(reg, "team/crash", "v1", image.manifest);
  INFO(put.status << " " << put.body);
  REQUIRE(put.status == 201);
  RequireManifest(reg, "team/crash", "v1", image);
  {
    auto connection = WireConnection::Connect(reg.registry());
    REQUIRE(connection.ok());
    REQUIRE((*connection)
                ->Send(MakeRequest("GET", "/v2/team/crash/blobs/" + digest, "",
                                   reg.Credentials()))
                .ok());
    auto pulled = (*connection)->ReadResponse(kLargeRequestTimeoutMs);
    REQUIRE(pulled.ok());
    REQUIRE(pulled->status == 200);
    REQUIRE(pulled->body.size() == big.size());
    REQUIRE(Sha256Digest(pulled->body) == digest);
  }

  // SIGKILL after the blobs of another image, before its manifest: the blobs stay (a 201 means
  // durable), but no template or tag exists until the manifest is pushed again.
  const Image second = MakeImage({RandomBytes(1 * kMiB, rng)}, "crash2");
  PushBlob(reg, "team/crash2", second.config);
  PushBlob(reg, "team/crash2", second.layers[0]);
  reg.Crash();
  reg.Start();
  REQUIRE(reg.Oci("HEAD", "/v2/team/crash2/blobs/" + second.config_digest).status == 200);
  REQUIRE(reg.Oci("HEAD", "/v2/team/crash2/blobs/" + second.layer_digests[0]).status == 200);
  RequireOciError(reg.Oci("GET", "/v2/team/crash2/tags/list"), 404, {"NAME_UNKNOWN"});
  RequireOciError(GetManifest(reg, "team/crash2", "v1"), 404,
                  {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"});
  REQUIRE(TemplateId(reg, "team/crash2").empty());
  REQUIRE(FileNames(registry_dir + "/uploads").empty());
  RequireLogVerifies(reg);
  const WireResponse again = PutManifest(reg, "team/crash2", "v1", second.manifest);
  INFO(again.status << " " << again.body);
  REQUIRE(again.status == 201);
  REQUIRE(Tags(reg, "team/crash2") == std::vector<std::string>{"v1"});
  RequireManifest(reg, "team/crash2", "v1", second);
  // The first image survived the second crash too.
  RequireManifest(reg, "team/crash", "v1", image);

  // One ManifestPushed each, and a chain that verifies.
  RequireLogVerifies(reg);
  const std::string crash_id = TemplateId(reg, "team/crash");
  const std::string crash2_id = TemplateId(reg, "team/crash2");
  REQUIRE_FALSE(crash_id.empty());
  REQUIRE_FALSE(crash2_id.empty());
  const std::vector<Json> first_pushes = AuditPayloads(reg, "ManifestPushed", crash_id);
  REQUIRE(first_pushes.size() == 1);
  REQUIRE(first_pushes[0]["digest"] == image.manifest_digest);
  const std::vector<Json> second_pushes = AuditPayloads(reg, "ManifestPushed", crash2_id);
  REQUIRE(second_pushes.size() == 1);
  REQUIRE(second_pushes[0]["digest"] == second.manifest_digest);
}

// ---------------------------------------------------------------------------------------------
// 4. Revert and delete through the Anka endpoints.

TEST_CASE("registry e2e: revert and delete through the Anka endpoints, in the audit export",
          "[registry][anka]") {
  Registry reg(true);
  std::mt19937_64 rng = Rng(4);
  const std::string layer = RandomBytes(64 * 1024, rng);
  const std::string repo = "team/revert";
  std::map<std::string, Image> images;
  for (const char* tag : {"v1", "v2", "v3"}) {
    images[tag] = MakeImage({layer}, tag);
    PushImage(reg, repo, tag, images[tag]);
  }
  const std::string id = TemplateId(reg, repo);
  REQUIRE_FALSE(id.empty());
  auto versions = [&] { return Versions(RequireOk(reg.Oci("GET", "/registry/vm?id=" + id))); };
  REQUIRE(versions() == VersionList{{0, "v1"}, {1, "v2"}, {2, "v3"}});

  // The VM configuration of a tag is its config blob.
  const Json info = RequireOk(reg.Oci("GET", "/registry/vm/info?id=" + id + "&tag=v1"));
  REQUIRE(info["id"] == id);
  REQUIRE(info["tag"] == "v1");
  REQUIRE(info["number"] == 0);
  REQUIRE(info["config"] == Json::parse(images["v1"].config));

  const Json disk = RequireOk(reg.Oci("GET", "/registry/disk"));
  REQUIRE(disk["total"].is_number_unsigned());
  REQUIRE(disk["free"].is_number_unsigned());
  REQUIRE(disk["total"].get<uint64_t>() > 0);
  REQUIRE(disk["free"].get<uint64_t>() <= disk["total"].get<uint64_t>());

  // Revert to before v2: v2 and v3 go, v1 stays.
  const Json reverted = RequireOk(reg.Oci("DELETE", "/registry/revert?id=" + id + "&tag=v2"));
  REQUIRE(reverted["id"] == id);
  REQUIRE(reverted["removed_tags"] == Json::array({"v2", "v3"}));
  RequireOciError(GetManifest(reg, repo, "v2"), 404, {"MANIFEST_UNKNOWN"});
  RequireOciError(GetManifest(reg, repo, "v3"), 404, {"MANIFEST_UNKNOWN"});
  RequireManifest(reg, repo, "v1", images["v1"]);
  REQUIRE(versions() == VersionList{{0, "v1"}});
  REQUIRE(Tags(reg, repo) == std::vector<std::string>{"v1"});

  // A new tag is the next version; a revert without a tag removes the newest.
  images["v4"] = MakeImage({layer}, "v4");
  PushImage(reg, repo, "v4", images["v4"]);
  REQUIRE(versions() == VersionList{{0, "v1"}, {1, "v4"}});
  const Json newest = RequireOk(reg.Oci("DELETE", "/registry/revert?id=" + id));
  REQUIRE(newest["removed_tags"] == Json::array({"v4"}));
  RequireOciError(GetManifest(reg, repo, "v4"), 404, {"MANIFEST_UNKNOWN"});
  RequireManifest(reg, repo, "v1", images["v1"]);
  REQUIRE(versions() == VersionList{{0, "v1"}});

  // Deleting the template removes everything.
  const Json deleted = RequireOk(reg.Oci("DELETE", "/registry/vm?id=" + id));
  REQUIRE(deleted["id"] == id);
  REQUIRE(deleted["removed_tags"] == Json::array({"v1"}));
  RequireOciError(reg.Oci("GET", "/v2/" + repo + "/tags/list"), 404, {"NAME_UNKNOWN"});
  RequireOciError(GetManifest(reg, repo, "v1"), 404, {"NAME_UNKNOWN", "MANIFEST_UNKNOWN"});
  REQUIRE(TemplateId(reg, repo).empty());
  RequireFail(reg.Oci("GET", "/registry/vm?id=" + id), 200);

  // Each change is an event of the audit export.
  const std::vector<Json> pushes = AuditPayloads(reg, "ManifestPushed", id);
  REQUIRE(pushes.size() == 4);
  const std::vector<std::pair<std::string, int>> expected_pushes = {
      {"v1", 0}, {"v2", 1}, {"v3", 2}, {"v4", 1}};
  for (size_t i = 0; i < pushes.size(); i++) {
    INFO("ManifestPushed " << pushes[i].dump());
    REQUIRE(pushes[i]["tag"] == expected_pushes[i].first);
    REQUIRE(pushes[i]["version"] == expected_pushes[i].second);
    REQUIRE(pushes[i]["digest"] == images[expected_pushes[i].first].manifest_digest);
  }
  REQUIRE(pushes[0]["name"] == repo);  // The first push created the template.
  const std::vector<Json> removals = AuditPayloads(reg, "TemplateContentRemoved", id);
  REQUIRE(removals.size() == 3);
  INFO(removals[0].dump() << "\n" << removals[1].dump() << "\n" << removals[2].dump());
  REQUIRE(removals[0]["reason"] == "revert");
  REQUIRE(removals[0]["tags"] == Json::array({"v2", "v3"}));
  REQUIRE(removals[0]["template_removed"] == false);
  REQUIRE(removals[1]["reason"] == "revert");
  REQUIRE(removals[1]["tags"] == Json::array({"v4"}));
  REQUIRE(removals[1]["template_removed"] == false);
  REQUIRE(removals[2]["reason"] == "delete_template");
  REQUIRE(removals[2]["tags"] == Json::array({"v1"}));
  REQUIRE(removals[2]["template_removed"] == true);
  RequireLogVerifies(reg);
}

// ---------------------------------------------------------------------------------------------
// 5. An upload begun in a daemon's first second outlives the first tick (a regression test:
// uploads were once stamped with the time of the last tick, 0 before the first, and the first
// tick dropped them as idle for 30 minutes).

TEST_CASE("registry e2e: an upload begun in the daemon's first second survives its first tick",
          "[registry]") {
  Registry reg(false);
  const WireResponse started = reg.Oci("POST", "/v2/team/early/blobs/uploads/");
  REQUIRE(started.status == 202);
  const std::string location = started.Header("Location");
  // Past the first tick (cloisterd's kSchedulerTickMs is 1000).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const WireResponse status = reg.Oci("GET", location);
  INFO("GET " << location << " 1.5 s after POST: " << status.status << " " << status.body);
  CHECK(status.status == 204);
  const std::string bytes = "begun before the first tick";
  const WireResponse put =
      reg.Oci("PUT", location + "?digest=" + Sha256Digest(bytes), bytes,
              "Content-Type: application/octet-stream\r\n");
  INFO("PUT " << location << "?digest=...: " << put.status << " " << put.body);
  REQUIRE(put.status == 201);
}

}  // namespace
}  // namespace cloister::testing
