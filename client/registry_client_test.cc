// RegistryClient against Debian's docker-registry (CNCF distribution 2.8), started here on a
// free loopback port with its storage in a temporary directory, and against a small fake
// registry in this file for what docker-registry cannot show (TAP sessions and the retry after
// a 401 with a body, tag pagination with Link). Blobs in the three upload modes, existence,
// byte-for-byte downloads with progress, bounded memory, resumes, digest mismatches both ways,
// cross-repository mounts, manifests by tag and digest, tags, whole images to and from OCI
// layouts, and skopeo reading what the client pushed and pulled.
//
// docker-registry and skopeo missing is a failure, not a skip: scripts/setup installs both.
#include "client/registry_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/client_auth.h"
#include "client/fake_controller.h"
#include "log/base64.h"
#include "log/status.h"
#include "tests/testutil.h"

namespace cloister::client {
namespace {

using Json = nlohmann::json;
using cloister::testing::TempDir;

constexpr char kDockerRegistry[] = "/usr/bin/docker-registry";
constexpr char kSkopeo[] = "/usr/bin/skopeo";
constexpr char kLayerType[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kConfigType[] = "application/vnd.oci.image.config.v1+json";

// ---- Files ----

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Deterministic bytes that never start like gzip (skopeo sniffs layer compression).
std::string PseudoRandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    const uint64_t word = rng();
    for (size_t j = 0; j < 8 && i + j < size; j++) {
      bytes[i + j] = static_cast<char>(word >> (8 * j));
    }
  }
  const std::string prefix = "blob-" + std::to_string(seed) + "\n";
  bytes.replace(0, std::min(prefix.size(), size), prefix.substr(0, size));
  return bytes;
}

// "sha256:<hex>" of a file, read in 1 MiB pieces.
std::string FileDigest(const std::string& path) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::ifstream in(path, std::ios::binary);
  std::string buffer(1 << 20, '\0');
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    EVP_DigestUpdate(ctx, buffer.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[32];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx, md, &length);
  EVP_MD_CTX_free(ctx);
  std::string hex = "sha256:";
  for (unsigned char byte : md) {
    const char* digits = "0123456789abcdef";
    hex += digits[byte >> 4];
    hex += digits[byte & 15];
  }
  return hex;
}

// VmHWM of this process, bytes, after resetting it (clear_refs 5) when reset is true.
uint64_t PeakRss(bool reset) {
  if (reset) {
    std::ofstream("/proc/self/clear_refs") << "5";
  }
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    }
  }
  return 0;
}

// Runs argv with its output in log_path; the exit status (-1 if it could not run).
int Run(const std::vector<std::string>& argv, const std::string& log_path,
        const std::string& home) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("HOME", home.c_str(), 1);
    std::vector<char*> args;
    for (const std::string& arg : argv) {
      args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
    return -1;
  }
  return WEXITSTATUS(status);
}

// ---- docker-registry ----

uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

// docker-registry serving filesystem storage under dir on a free loopback port, killed on
// destruction (and by the kernel if this process dies first: PR_SET_PDEATHSIG).
class DockerRegistry {
 public:
  explicit DockerRegistry(const std::string& dir) : dir_(dir) {
    if (access(kDockerRegistry, X_OK) != 0) {
      error_ = std::string(kDockerRegistry) +
               " not found: install it with scripts/setup (Debian package docker-registry)";
      return;
    }
    // The port is free when picked, but another process may take it first: retry.
    for (int attempt = 0; attempt < 5 && !ok(); attempt++) {
      Start();
    }
  }
  ~DockerRegistry() { Stop(); }
  DockerRegistry(const DockerRegistry&) = delete;
  DockerRegistry& operator=(const DockerRegistry&) = delete;

  bool ok() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  // Where the bytes of blob digest are stored (distribution's filesystem layout).
  std::string BlobDataPath(const std::string& digest) const {
    const std::string hex = digest.substr(7);
    return dir_ + "/storage/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex +
           "/data";
  }

 private:
  void Start() {
    port_ = FreePort();
    const std::string config = dir_ + "/config.yml";
    WriteFile(config, "version: 0.1\n"
                      "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                      "storage:\n  filesystem:\n    rootdirectory: " + dir_ + "/storage\n"
                      "  delete:\n    enabled: true\n"
                      "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n");
    const std::string log = dir_ + "/registry.log";
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      execl(kDockerRegistry, "docker-registry", "serve", config.c_str(), nullptr);
      _exit(127);
    }
    if (pid < 0) {
      error_ = "fork failed";
      return;
    }
    RegistryClientOptions options;
    options.url = url();
    options.connect_timeout_ms = 500;
    options.request_timeout_ms = 1000;
    RegistryClient client(options);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        error_ = "docker-registry exited at start: " + ReadFile(log).substr(0, 2000);
        return;
      }
      if (client.Ping().ok()) {
        pid_ = pid;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    error_ = "docker-registry did not answer GET /v2/ within 20 s: " +
             ReadFile(log).substr(0, 2000);
  }

  void Stop() {
    if (pid_ <= 0) {
      return;
    }
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; i++) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string dir_;
  std::string error_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// The registry every test case starts, and a client for it.
struct Fixture {
  TempDir tmp;
  DockerRegistry registry{tmp.path()};
  std::unique_ptr<RegistryClient> client;

  Fixture() {
    if (registry.ok()) {
      RegistryClientOptions options;
      options.url = registry.url();
      client = std::make_unique<RegistryClient>(options);
    }
  }
};

#define REQUIRE_REGISTRY(fixture)           \
  do {                                      \
    INFO((fixture).registry.error());       \
    REQUIRE((fixture).registry.ok());       \
  } while (0)

#define REQUIRE_OK(expr)                                           \
  do {                                                             \
    const auto& require_ok_value = (expr);                         \
    INFO(require_ok_value.status().ToString());                    \
    REQUIRE(require_ok_value.ok());                                \
  } while (0)

#define REQUIRE_STATUS_OK(expr)         \
  do {                                  \
    const Status require_status = (expr); \
    INFO(require_status.ToString());    \
    REQUIRE(require_status.ok());       \
  } while (0)

// ---- OCI layouts ----

struct Blob {
  std::string digest;
  std::string bytes;
  std::string media_type;
};

Json DescriptorOf(const Blob& blob) {
  return {{"mediaType", blob.media_type}, {"digest", blob.digest}, {"size", blob.bytes.size()}};
}

// An OCI image layout being written: blobs, then index.json.
class LayoutWriter {
 public:
  explicit LayoutWriter(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_ + "/blobs/sha256");
    WriteFile(dir_ + "/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
  }

  Blob Add(const std::string& bytes, const std::string& media_type) {
    Blob blob{Sha256Digest(bytes), bytes, media_type};
    WriteFile(dir_ + "/blobs/sha256/" + blob.digest.substr(7), bytes);
    return blob;
  }

  // A config and an image manifest over layers.
  Blob Image(const std::vector<Blob>& layers, const std::string& architecture) {
    Json diff_ids = Json::array();
    Json layer_descriptors = Json::array();
    for (const Blob& layer : layers) {
      diff_ids.push_back(layer.digest);
      layer_descriptors.push_back(DescriptorOf(layer));
    }
    const Json config = {{"architecture", architecture},
                         {"os", "linux"},
                         {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    const Blob config_blob = Add(config.dump(), kConfigType);
    const Json manifest = {{"schemaVersion", 2},
                           {"mediaType", kOciManifestType},
                           {"config", DescriptorOf(config_blob)},
                           {"layers", layer_descriptors}};
    return Add(manifest.dump(), kOciManifestType);
  }

  Blob Index(const std::vector<std::pair<Blob, std::string>>& images) {
    Json manifests = Json::array();
    for (const auto& [image, architecture] : images) {
      Json descriptor = DescriptorOf(image);
      descriptor["platform"] = {{"architecture", architecture}, {"os", "linux"}};
      manifests.push_back(descriptor);
    }
    const Json index = {
        {"schemaVersion", 2}, {"mediaType", kOciIndexType}, {"manifests", manifests}};
    return Add(index.dump(), kOciIndexType);
  }

  void Tag(const Blob& manifest, const std::string& tag) {
    Json entry = DescriptorOf(manifest);
    entry["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
    entries_.push_back(entry);
    const Json index = {{"schemaVersion", 2}, {"manifests", entries_}};
    WriteFile(dir_ + "/index.json", index.dump());
  }

 private:
  std::string dir_;
  Json entries_ = Json::array();
};

// The blob files of a layout: digest hex -> bytes.
std::map<std::string, std::string> BlobsOf(const std::string& layout_dir) {
  std::map<std::string, std::string> blobs;
  for (const auto& entry :
       std::filesystem::directory_iterator(layout_dir + "/blobs/sha256")) {
    blobs[entry.path().filename().string()] = ReadFile(entry.path().string());
  }
  return blobs;
}

// The digest index.json names for tag in a layout, or "".
std::string TaggedDigest(const std::string& layout_dir, const std::string& tag) {
  const Json index = Json::parse(ReadFile(layout_dir + "/index.json"), nullptr, false);
  if (!index.is_object() || !index.contains("manifests")) {
    return "";
  }
  for (const Json& entry : index["manifests"]) {
    if (entry.contains("annotations") &&
        entry["annotations"].value("org.opencontainers.image.ref.name", "") == tag) {
      return entry.value("digest", "");
    }
  }
  return "";
}

// A test image: an image manifest over two layers (one of 3 MiB) tagged "v1", and an index of
// two platforms sharing a layer tagged "multi".
struct TestImages {
  Blob image;
  Blob index;
  std::set<std::string> image_blobs;  // Hex names of the blobs "v1" is made of.
};

TestImages WriteTestImages(const std::string& dir) {
  LayoutWriter layout(dir);
  TestImages images;
  const Blob small = layout.Add(PseudoRandomBytes(1000, 11), kLayerType);
  const Blob large = layout.Add(PseudoRandomBytes(3 << 20, 12), kLayerType);
  images.image = layout.Image({small, large}, "amd64");
  const Blob shared = layout.Add(PseudoRandomBytes(200'000, 13), kLayerType);
  const Blob amd = layout.Image({shared, layout.Add(PseudoRandomBytes(5000, 14), kLayerType)},
                                "amd64");
  const Blob arm = layout.Image({shared, layout.Add(PseudoRandomBytes(6000, 15), kLayerType)},
                                "arm64");
  images.index = layout.Index({{amd, "amd64"}, {arm, "arm64"}});
  layout.Tag(images.image, "v1");
  layout.Tag(images.index, "multi");
  const Json manifest = Json::parse(images.image.bytes);
  images.image_blobs = {images.image.digest.substr(7),
                        manifest["config"]["digest"].get<std::string>().substr(7),
                        small.digest.substr(7), large.digest.substr(7)};
  return images;
}

// ---- A fake registry: TAP, an upload that counts bodies, paginated tags ----

struct FakeAnswer {
  int status = 200;
  std::vector<std::string> headers;  // "Name: value".
  std::string body;
};

// Serves one connection at a time on 127.0.0.1 and closes each after one answer. A request
// with "Expect: 100-continue" gets the answer before its body when the handler refuses it from
// its headers alone (a 401), as a real server would; otherwise "100 Continue", then the body.
class FakeRegistry {
 public:
  FakeRegistry() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    listen(listen_fd_, 16);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    key_ = cloister::client::testing::GenerateRsaKey(2048);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeRegistry() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string private_key_pem() const { return cloister::client::testing::PemPkcs8(key_); }
  void SetRootToken(const std::string& token) { root_token_ = token; }
  void ExpireSessions() { valid_session_ = -1; }
  void RejectNewSessions() { reject_new_ = true; }
  int shakes() const { return shakes_; }
  int unauthorized() const { return unauthorized_; }
  int body_less_refusals() const { return body_less_refusals_; }
  // Bodies of the uploads that were accepted.
  std::vector<std::string> uploads() {
    std::lock_guard<std::mutex> lock(mu_);
    return uploads_;
  }
  std::vector<std::string> seen_authorizations() {
    std::lock_guard<std::mutex> lock(mu_);
    return authorizations_;
  }

 private:
  struct Incoming {
    std::string method;
    std::string target;
    std::map<std::string, std::string> headers;
    std::string body;
  };

  bool Authorized(const Incoming& in) {
    auto it = in.headers.find("authorization");
    const std::string given = it == in.headers.end() ? "" : it->second;
    {
      std::lock_guard<std::mutex> lock(mu_);
      authorizations_.push_back(given);
    }
    if (!root_token_.empty()) {
      return given == "Basic " + log::Base64Encode("root:" + root_token_);
    }
    const Json data = {{"token", "session-" + std::to_string(valid_session_.load())}};
    return valid_session_ >= 0 && given == "Bearer " + log::Base64Encode(data.dump());
  }

  FakeAnswer Unauthorized() {
    unauthorized_++;
    return {401, {}, R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})"};
  }

  FakeAnswer Tap(const Incoming& in) {
    const Json request = Json::parse(in.body, nullptr, false);
    if (in.target == "/tap/v1/hand") {
      secret_ = cloister::client::testing::RandomText(24);
      return {200, {}, log::Base64Encode(cloister::client::testing::EncryptOaepSha256(key_, secret_))};
    }
    if (!request.is_object() || request.value("secret", "") != secret_) {
      return {401, {}, R"({"status":"FAIL","message":"bad secret"})"};
    }
    shakes_++;
    if (!reject_new_) {
      valid_session_ = shakes_.load();
    }
    const Json data = {{"token", "session-" + std::to_string(shakes_.load())}};
    return {200, {}, Json{{"id", request.value("id", "")}, {"data", data}}.dump()};
  }

  // Tags t01..t25, n per page after last, with a Link to the next page.
  FakeAnswer Tags(const std::string& target) {
    std::map<std::string, std::string> query;
    const size_t mark = target.find('?');
    std::string rest = mark == std::string::npos ? "" : target.substr(mark + 1);
    while (!rest.empty()) {
      const size_t amp = rest.find('&');
      const std::string pair = rest.substr(0, amp);
      const size_t eq = pair.find('=');
      query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
      rest = amp == std::string::npos ? "" : rest.substr(amp + 1);
    }
    const int n = query.count("n") ? std::atoi(query["n"].c_str()) : 1000;
    Json tags = Json::array();
    std::string last;
    for (int i = 1; i <= 25 && static_cast<int>(tags.size()) < n; i++) {
      char tag[16];
      std::snprintf(tag, sizeof(tag), "t%02d", i);
      if (!query.count("last") || tag > query["last"]) {
        tags.push_back(tag);
        last = tag;
      }
    }
    FakeAnswer answer{200, {}, Json{{"name", "r"}, {"tags", tags}}.dump()};
    if (static_cast<int>(tags.size()) == n && last != "t25") {
      answer.headers.push_back("Link: </v2/r/tags/list?n=" + std::to_string(n) + "&last=" +
                               last + ">; rel=\"next\"");
    }
    return answer;
  }

  // From the request line and headers alone: a refusal, or nullopt to read the body first.
  std::optional<FakeAnswer> Early(const Incoming& in) {
    if (in.target.rfind("/tap/", 0) == 0 || Authorized(in)) {
      return std::nullopt;
    }
    return Unauthorized();
  }

  FakeAnswer Handle(const Incoming& in) {
    if (in.target.rfind("/tap/", 0) == 0) {
      return Tap(in);
    }
    if (in.target == "/v2/") {
      return {200, {}, "{}"};
    }
    if (in.target.rfind("/v2/r/tags/list", 0) == 0) {
      return Tags(in.target);
    }
    const std::string upload = "/v2/r/blobs/uploads/?digest=sha256%3A";
    if (in.method == "POST" && in.target.rfind(upload, 0) == 0) {
      const std::string digest = "sha256:" + in.target.substr(upload.size());
      if (Sha256Digest(in.body) != digest) {
        return {400, {}, R"({"errors":[{"code":"DIGEST_INVALID","message":"mismatch"}]})"};
      }
      std::lock_guard<std::mutex> lock(mu_);
      uploads_.push_back(in.body);
      return {201, {"Docker-Content-Digest: " + digest, "Location: /v2/r/blobs/" + digest}, ""};
    }
    return {404, {}, R"({"errors":[{"code":"NOT_FOUND","message":"no such path"}]})"};
  }

  void Serve() {
    while (!stop_) {
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) {
        continue;
      }
      ServeConnection(fd);
      close(fd);
    }
  }

  static bool ReadMore(int fd, std::string* buffer) {
    char chunk[64 << 10];
    const ssize_t got = recv(fd, chunk, sizeof(chunk), 0);
    if (got <= 0) {
      return false;
    }
    buffer->append(chunk, static_cast<size_t>(got));
    return true;
  }

  static void SendAll(int fd, const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t wrote = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (wrote <= 0) {
        return;
      }
      sent += static_cast<size_t>(wrote);
    }
  }

  static void Answer(int fd, const FakeAnswer& answer) {
    std::string text = "HTTP/1.1 " + std::to_string(answer.status) + " X\r\n";
    for (const std::string& header : answer.headers) {
      text += header + "\r\n";
    }
    text += "Content-Length: " + std::to_string(answer.body.size()) +
            "\r\nConnection: close\r\n\r\n" + answer.body;
    SendAll(fd, text);
  }

  void ServeConnection(int fd) {
    std::string buffer;
    size_t end = std::string::npos;
    while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadMore(fd, &buffer)) {
        return;
      }
    }
    Incoming in;
    std::istringstream head(buffer.substr(0, end));
    std::string line;
    std::getline(head, line);
    std::istringstream request_line(line);
    request_line >> in.method >> in.target;
    while (std::getline(head, line)) {
      const size_t colon = line.find(':');
      if (colon == std::string::npos) {
        continue;
      }
      std::string name = line.substr(0, colon);
      for (char& c : name) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      value.erase(value.find_last_not_of("\r ") + 1);
      in.headers[name] = value;
    }
    buffer.erase(0, end + 4);
    const bool expect = in.headers.count("expect") != 0;
    const size_t length = in.headers.count("content-length")
                              ? std::strtoull(in.headers["content-length"].c_str(), nullptr, 10)
                              : 0;
    std::optional<FakeAnswer> early = Early(in);
    if (early && expect) {
      body_less_refusals_++;
      Answer(fd, *early);
      return;
    }
    if (expect) {
      SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    while (buffer.size() < length) {
      if (!ReadMore(fd, &buffer)) {
        return;
      }
    }
    in.body = buffer.substr(0, length);
    Answer(fd, early ? *early : Handle(in));
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  cloister::client::testing::Pkey key_;
  std::string root_token_;
  std::string secret_;
  std::atomic<int> valid_session_{-1};
  std::atomic<bool> reject_new_{false};
  std::atomic<int> shakes_{0};
  std::atomic<int> unauthorized_{0};
  std::atomic<int> body_less_refusals_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> uploads_;
  std::vector<std::string> authorizations_;
  std::thread thread_;
};

std::unique_ptr<RegistryClient> ClientWith(const std::string& url, const Credentials& creds) {
  Result<std::shared_ptr<ClientAuth>> auth = ClientAuth::Create(creds);
  CL_ASSERT(auth.ok());
  RegistryClientOptions options;
  options.url = url;
  options.auth = *auth;
  return std::make_unique<RegistryClient>(options);
}

// ---- Tests ----

TEST_CASE("digests, repository names and references are checked before any I/O") {
  RegistryClientOptions options;
  options.url = "http://127.0.0.1:1";  // Nothing listens: any I/O would be kIoError.
  RegistryClient client(options);
  const std::string good = Sha256Digest("x");
  for (const std::string& bad :
       {std::string("sha256:") + std::string(64, 'A'), std::string("sha256:abc"),
        std::string("sha512:") + std::string(128, 'a'), good + "0", std::string("")}) {
    INFO(bad);
    CHECK(ValidateDigest(bad).code() == StatusCode::kInvalidArgument);
    CHECK(client.BlobExists("a/b", bad).status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(ValidateDigest(good).ok());
  for (const char* repository : {"a", "a/b", "a-b", "a--b", "a.b", "a_b", "a__b",
                                       "ci/macos-15/xcode_16.2", "0/1"}) {
    INFO(repository);
    CHECK(ValidateRepository(repository).ok());
  }
  for (const std::string& repository : std::vector<std::string>{"", "A", "a//b", "/a", "a/", "-a", "a-", "a___b", "a..b", "a._b", "a b", "a:b",
        std::string(256, 'a')}) {
    INFO(repository);
    CHECK(ValidateRepository(repository).code() == StatusCode::kInvalidArgument);
    CHECK(client.GetManifest(repository, "v1").status().code() ==
          StatusCode::kInvalidArgument);
  }
  CHECK(ValidateTag("v1.0-rc_1").ok());
  CHECK(ValidateTag("_x").ok());
  CHECK(ValidateTag(std::string(128, 'a')).ok());
  for (const std::string& tag :
       std::vector<std::string>{"", ".x", "-x", "a/b", "a:b", std::string(129, 'a')}) {
    INFO(tag);
    CHECK(ValidateTag(tag).code() == StatusCode::kInvalidArgument);
  }
  CHECK(ValidateReference(good).ok());
  CHECK(ValidateReference("sha256:nothex").code() == StatusCode::kInvalidArgument);
  CHECK(client.last_http_status() == 0);
  // And a real call fails as I/O, for contrast.
  CHECK(client.Ping().code() == StatusCode::kIoError);
}

TEST_CASE("blobs: three upload modes, exists, download byte for byte, progress", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  RegistryClient& client = *f.client;
  REQUIRE_STATUS_OK(client.Ping());
  const std::vector<std::pair<UploadMode, std::string>> modes = {
      {UploadMode::kMonolithic, "monolithic"},
      {UploadMode::kChunked, "chunked"},
      {UploadMode::kSingleRequest, "single"}};
  uint64_t seed = 100;
  for (const auto& [mode, name] : modes) {
    for (const size_t size : {size_t{0}, size_t{1}, size_t{(5 << 20) + 123}}) {
      INFO(name << ", " << size << " bytes");
      const std::string repository = "test/" + name;
      const std::string bytes = PseudoRandomBytes(size, seed++);
      const std::string path = f.tmp.Sub("up-" + name + std::to_string(size));
      WriteFile(path, bytes);
      const std::string digest = Sha256Digest(bytes);
      if (size > 0) {  // The empty blob is stored once, by the first mode.
        Result<std::optional<uint64_t>> before = client.BlobExists(repository, digest);
        REQUIRE_OK(before);
        CHECK_FALSE(before->has_value());
      }
      UploadOptions upload;
      upload.mode = mode;
      upload.chunk_bytes = 1 << 20;
      uint64_t last_done = 0;
      uint64_t calls = 0;
      bool monotonic = true;
      upload.progress = [&](uint64_t done, uint64_t total) {
        monotonic = monotonic && done >= last_done && total == size;
        last_done = done;
        calls++;
      };
      REQUIRE_STATUS_OK(client.UploadBlob(repository, path, digest, size, upload));
      CHECK(monotonic);
      CHECK(last_done == size);
      CHECK((size == 0 || calls > 0));
      Result<std::optional<uint64_t>> exists = client.BlobExists(repository, digest);
      REQUIRE_OK(exists);
      REQUIRE(exists->has_value());
      CHECK(**exists == size);

      const std::string down = path + ".down";
      DownloadOptions download;
      uint64_t down_done = 0;
      uint64_t down_total = 0;
      download.progress = [&](uint64_t done, uint64_t total) {
        down_done = done;
        down_total = total;
      };
      REQUIRE_STATUS_OK(client.DownloadBlob(repository, digest, down, download));
      CHECK(ReadFile(down) == bytes);
      CHECK(down_done == size);
      CHECK(down_total == size);
    }
  }
  // One kept-alive connection, but for the single-request POST of the large blob: it asked for
  // 100 Continue, docker-registry answered 202 at once without reading the body (which then
  // went in the PUT, once), and such a connection cannot be reused.
  CHECK(client.connections_opened() == 2);
  // Small blobs from memory, and back into memory.
  Result<std::string> digest = client.UploadBlobBytes("test/bytes", "{\"a\":1}");
  REQUIRE_OK(digest);
  CHECK(*digest == Sha256Digest("{\"a\":1}"));
  Result<std::string> fetched = client.FetchBlob("test/bytes", *digest);
  REQUIRE_OK(fetched);
  CHECK(*fetched == "{\"a\":1}");
  CHECK(client.FetchBlob("test/bytes", *digest, 3).status().code() ==
        StatusCode::kInvalidArgument);
  // Absent blobs.
  const std::string absent = Sha256Digest("absent");
  Result<std::optional<uint64_t>> none = client.BlobExists("test/bytes", absent);
  REQUIRE_OK(none);
  CHECK_FALSE(none->has_value());
  Status missing = client.DownloadBlob("test/bytes", absent, f.tmp.Sub("absent"));
  CHECK(missing.code() == StatusCode::kNotFound);
  CHECK(missing.message().find("BLOB_UNKNOWN") != std::string::npos);
  CHECK_FALSE(Exists(f.tmp.Sub("absent")));
}

TEST_CASE("a 64 MiB blob goes up and down in bounded memory", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  const std::string path = f.tmp.Sub("big");
  {
    std::ofstream out(path, std::ios::binary);
    for (uint64_t i = 0; i < 64; i++) {
      const std::string mib = PseudoRandomBytes(1 << 20, 1000 + i);
      out.write(mib.data(), static_cast<std::streamsize>(mib.size()));
    }
  }
  const std::string digest = FileDigest(path);
  const uint64_t size = 64ull << 20;
  const uint64_t before = PeakRss(true);
  REQUIRE_STATUS_OK(f.client->UploadBlob("test/big", path, digest, size));
  REQUIRE_STATUS_OK(f.client->DownloadBlob("test/big", digest, path + ".down"));
  const uint64_t after = PeakRss(false);
  INFO("peak RSS " << before << " -> " << after);
  CHECK(after < before + (16ull << 20));
  CHECK(std::filesystem::file_size(path + ".down") == size);
}

TEST_CASE("digest mismatches are refused both ways", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  RegistryClient& client = *f.client;
  const std::string bytes = PseudoRandomBytes(100'000, 7);
  const std::string path = f.tmp.Sub("blob");
  WriteFile(path, bytes);
  const std::string wrong = Sha256Digest("something else");
  for (const UploadMode mode :
       {UploadMode::kMonolithic, UploadMode::kChunked, UploadMode::kSingleRequest}) {
    UploadOptions upload;
    upload.mode = mode;
    upload.chunk_bytes = 30'000;
    Status refused = client.UploadBlob("test/mismatch", path, wrong, bytes.size(), upload);
    INFO(refused.ToString());
    CHECK(refused.code() == StatusCode::kInvalidArgument);
    CHECK(refused.message().find("DIGEST_INVALID") != std::string::npos);
    CHECK(refused.message().find("the file's bytes hash to " + Sha256Digest(bytes)) !=
          std::string::npos);
    Result<std::optional<uint64_t>> exists = client.BlobExists("test/mismatch", wrong);
    REQUIRE_OK(exists);
    CHECK_FALSE(exists->has_value());
  }
  // A size that is not the file's is refused before anything is sent.
  Status short_size = client.UploadBlob("test/mismatch", path, Sha256Digest(bytes), 99);
  CHECK(short_size.code() == StatusCode::kInvalidArgument);

  // The registry serves bytes that are not the blob's (its storage was altered): the download
  // is refused and the file removed; so is the in-memory fetch.
  const std::string digest = Sha256Digest(bytes);
  REQUIRE_STATUS_OK(client.UploadBlob("test/mismatch", path, digest, bytes.size()));
  std::string altered = bytes;
  altered[50'000] ^= 1;
  WriteFile(f.registry.BlobDataPath(digest), altered);
  const std::string down = f.tmp.Sub("down");
  Status corrupt = client.DownloadBlob("test/mismatch", digest, down);
  INFO(corrupt.ToString());
  CHECK(corrupt.code() == StatusCode::kCorruption);
  CHECK(corrupt.message().find("hash to " + Sha256Digest(altered)) != std::string::npos);
  CHECK_FALSE(Exists(down));
  CHECK(client.FetchBlob("test/mismatch", digest).status().code() == StatusCode::kCorruption);
}

TEST_CASE("downloads resume from a partial file with Range", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  RegistryClient& client = *f.client;
  const std::string bytes = PseudoRandomBytes(3'000'000, 8);
  const std::string digest = Sha256Digest(bytes);
  Result<std::string> uploaded = client.UploadBlobBytes("test/resume", bytes);
  REQUIRE_OK(uploaded);
  DownloadOptions resume;
  resume.resume = true;
  uint64_t first_done = 0;
  resume.progress = [&](uint64_t done, uint64_t) {
    if (first_done == 0) {
      first_done = done;
    }
  };
  const std::string down = f.tmp.Sub("down");
  WriteFile(down, bytes.substr(0, 1'000'000));
  REQUIRE_STATUS_OK(client.DownloadBlob("test/resume", digest, down, resume));
  CHECK(client.last_http_status() == 206);
  CHECK(first_done > 1'000'000);  // The resumed bytes were not fetched again.
  CHECK(ReadFile(down) == bytes);
  // A whole file is verified and kept, without a request.
  const int status_before = client.last_http_status();
  REQUIRE_STATUS_OK(client.DownloadBlob("test/resume", digest, down, resume));
  CHECK(client.last_http_status() == status_before);
  CHECK(ReadFile(down) == bytes);
  // A file longer than the blob: the registry answers 416 to the range after its end, and the
  // blob is fetched again from zero.
  WriteFile(down, bytes + "trailing");
  REQUIRE_STATUS_OK(client.DownloadBlob("test/resume", digest, down, resume));
  CHECK(client.last_http_status() == 200);
  CHECK(ReadFile(down) == bytes);
  // A partial file that is not the blob's first bytes: the whole is refused and removed.
  std::string wrong_prefix = bytes.substr(0, 1000);
  wrong_prefix[10] ^= 1;
  WriteFile(down, wrong_prefix);
  CHECK(client.DownloadBlob("test/resume", digest, down, resume).code() ==
        StatusCode::kCorruption);
  CHECK_FALSE(Exists(down));
  // Without resume, an existing file is replaced.
  WriteFile(down, "junk");
  REQUIRE_STATUS_OK(client.DownloadBlob("test/resume", digest, down));
  CHECK(ReadFile(down) == bytes);
}

TEST_CASE("blobs mount across repositories", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  RegistryClient& client = *f.client;
  Result<std::string> digest = client.UploadBlobBytes("team-a/source", "shared layer");
  REQUIRE_OK(digest);
  Result<std::optional<uint64_t>> before = client.BlobExists("team-b/target", *digest);
  REQUIRE_OK(before);
  CHECK_FALSE(before->has_value());
  Result<bool> mounted = client.MountBlob("team-b/target", *digest, "team-a/source");
  REQUIRE_OK(mounted);
  CHECK(*mounted);
  CHECK(client.last_http_status() == 201);
  Result<std::optional<uint64_t>> after = client.BlobExists("team-b/target", *digest);
  REQUIRE_OK(after);
  CHECK(after->value_or(0) == std::string("shared layer").size());
  // A digest the source does not hold: not mounted (the session opened instead is cancelled).
  Result<bool> not_mounted =
      client.MountBlob("team-b/target", Sha256Digest("nowhere"), "team-a/source");
  REQUIRE_OK(not_mounted);
  CHECK_FALSE(*not_mounted);
}

TEST_CASE("manifests by tag and by digest: put, get, delete", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  RegistryClient& client = *f.client;
  const std::string repository = "test/manifests";
  Result<std::string> config = client.UploadBlobBytes(repository, "{\"os\":\"linux\"}");
  Result<std::string> layer = client.UploadBlobBytes(repository, "layer bytes");
  REQUIRE_OK(config);
  REQUIRE_OK(layer);
  const Json manifest_json = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifestType},
      {"config", {{"mediaType", kConfigType}, {"digest", *config}, {"size", 15}}},
      {"layers", {{{"mediaType", kLayerType}, {"digest", *layer}, {"size", 11}}}}};
  const std::string bytes = manifest_json.dump();
  Result<std::string> digest = client.PutManifest(repository, "v1", kOciManifestType, bytes);
  REQUIRE_OK(digest);
  CHECK(*digest == Sha256Digest(bytes));
  for (const std::string& reference : {std::string("v1"), *digest}) {
    INFO(reference);
    Result<Manifest> got = client.GetManifest(repository, reference);
    REQUIRE_OK(got);
    CHECK(got->bytes == bytes);
    CHECK(got->media_type == kOciManifestType);
    CHECK(got->digest == *digest);
  }
  // Pushed again by digest, and under a second tag: the same digest.
  Result<std::string> by_digest = client.PutManifest(repository, *digest, kOciManifestType, bytes);
  REQUIRE_OK(by_digest);
  CHECK(*by_digest == *digest);
  REQUIRE_OK(client.PutManifest(repository, "v2", kOciManifestType, bytes));
  // A digest reference that is not the bytes' is refused here.
  CHECK(client.PutManifest(repository, Sha256Digest("x"), kOciManifestType, bytes)
            .status()
            .code() == StatusCode::kInvalidArgument);
  // A manifest naming a blob the registry lacks is refused by it.
  Json dangling = manifest_json;
  dangling["layers"][0]["digest"] = Sha256Digest("missing layer");
  Result<std::string> refused =
      client.PutManifest(repository, "dangling", kOciManifestType, dangling.dump());
  CHECK(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK(refused.status().message().find("MANIFEST_BLOB_UNKNOWN") != std::string::npos);
  CHECK(client.GetManifest(repository, "nope").status().code() == StatusCode::kNotFound);

  // OCI 1.1 deletes a tag with DELETE .../manifests/<tag>; docker-registry 2.8 refuses it
  // (400 DIGEST_INVALID): only digests are deleted there.
  Status tag_delete = client.DeleteManifest(repository, "v2");
  INFO(tag_delete.ToString());
  CHECK(tag_delete.code() == StatusCode::kInvalidArgument);
  CHECK(tag_delete.message().find("DIGEST_INVALID") != std::string::npos);
  REQUIRE_STATUS_OK(client.DeleteManifest(repository, *digest));
  CHECK(client.GetManifest(repository, *digest).status().code() == StatusCode::kNotFound);
  CHECK(client.GetManifest(repository, "v1").status().code() == StatusCode::kNotFound);
  CHECK(client.DeleteManifest(repository, *digest).code() == StatusCode::kNotFound);
}

TEST_CASE("tags: docker-registry lists them all in one page", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  RegistryClient& client = *f.client;
  const std::string repository = "test/tags";
  Result<std::string> config = client.UploadBlobBytes(repository, "{}");
  REQUIRE_OK(config);
  const std::string bytes = Json{{"schemaVersion", 2},
                                 {"mediaType", kOciManifestType},
                                 {"config", {{"mediaType", kConfigType},
                                             {"digest", *config},
                                             {"size", 2}}},
                                 {"layers", Json::array()}}
                                .dump();
  std::set<std::string> expected;
  for (int i = 0; i < 12; i++) {
    const std::string tag = "tag-" + std::to_string(i);
    REQUIRE_OK(client.PutManifest(repository, tag, kOciManifestType, bytes));
    expected.insert(tag);
  }
  Result<std::vector<std::string>> all = client.ListTags(repository);
  REQUIRE_OK(all);
  CHECK(std::set<std::string>(all->begin(), all->end()) == expected);
  CHECK(all->size() == expected.size());
  // docker-registry 2.8 ignores n (no Link, every tag at once): the client takes what it gets.
  Result<std::vector<std::string>> paged = client.ListTags(repository, 5);
  REQUIRE_OK(paged);
  CHECK(paged->size() == expected.size());
  CHECK(client.ListTags("test/none").status().code() == StatusCode::kNotFound);
}

TEST_CASE("tags: pages are followed through Link rel=next") {
  FakeRegistry fake;
  fake.SetRootToken("root-token-123");
  Credentials creds;
  creds.root_token = "root-token-123";
  std::unique_ptr<RegistryClient> client = ClientWith(fake.url(), creds);
  Result<std::vector<std::string>> tags = client->ListTags("r", 7);
  REQUIRE_OK(tags);
  REQUIRE(tags->size() == 25);
  CHECK(tags->front() == "t01");
  CHECK(tags->back() == "t25");
  CHECK(std::is_sorted(tags->begin(), tags->end()));
  CHECK(fake.seen_authorizations().size() == 4);  // Four pages, each with the credentials.
  Result<std::vector<std::string>> after = client->ListTags("r", 10, "t20");
  REQUIRE_OK(after);
  CHECK(*after == std::vector<std::string>{"t21", "t22", "t23", "t24", "t25"});
}

TEST_CASE("TAP: an expired session is renewed once and the body is sent again whole") {
  FakeRegistry fake;
  Credentials creds;
  creds.api_key_id = "key-1";
  creds.api_key_string = fake.private_key_pem();
  std::unique_ptr<RegistryClient> client = ClientWith(fake.url(), creds);
  REQUIRE_STATUS_OK(client->Ping());
  CHECK(fake.shakes() == 1);
  TempDir tmp;
  UploadOptions single;
  single.mode = UploadMode::kSingleRequest;
  // Small bodies go at once: the 401 comes after the body, which is then sent again. Large ones
  // ask for 100 Continue: the 401 comes before the body, which is sent once.
  for (const size_t size : {size_t{100'000}, size_t{3 << 20}}) {
    INFO(size << " bytes");
    fake.ExpireSessions();
    const int shakes = fake.shakes();
    const int refused = fake.unauthorized();
    const int body_less = fake.body_less_refusals();
    const std::string bytes = PseudoRandomBytes(size, size);
    const std::string path = tmp.Sub("blob" + std::to_string(size));
    WriteFile(path, bytes);
    REQUIRE_STATUS_OK(client->UploadBlob("r", path, Sha256Digest(bytes), size, single));
    CHECK(fake.shakes() == shakes + 1);
    CHECK(fake.unauthorized() == refused + 1);
    CHECK(fake.body_less_refusals() == body_less + (size >= (1 << 20) ? 1 : 0));
    REQUIRE_FALSE(fake.uploads().empty());
    CHECK(fake.uploads().back() == bytes);
  }
  // Sessions that are refused at once: one retry, then the 401 is the answer; the message
  // holds no credential.
  fake.RejectNewSessions();
  fake.ExpireSessions();
  const int shakes = fake.shakes();
  Status refused = client->Ping();
  CHECK(refused.code() == StatusCode::kInvalidArgument);
  CHECK(refused.message().find("HTTP 401") != std::string::npos);
  CHECK(fake.shakes() == shakes + 1);
  for (const std::string& seen : fake.seen_authorizations()) {
    if (!seen.empty()) {
      CHECK(refused.message().find(seen.substr(7)) == std::string::npos);
    }
  }
  CHECK(refused.message().find("Bearer") == std::string::npos);
}

TEST_CASE("root token: Basic on every request, a 401 is not retried, never in a message") {
  FakeRegistry fake;
  fake.SetRootToken("the-right-token");
  Credentials creds;
  creds.root_token = "the-wrong-token";
  std::unique_ptr<RegistryClient> client = ClientWith(fake.url(), creds);
  Status refused = client->Ping();
  CHECK(refused.code() == StatusCode::kInvalidArgument);
  CHECK(refused.message().find("401") != std::string::npos);
  CHECK(refused.message().find("the-wrong-token") == std::string::npos);
  CHECK(refused.message().find(log::Base64Encode("root:the-wrong-token")) == std::string::npos);
  CHECK(fake.unauthorized() == 1);
  creds.root_token = "the-right-token";
  client = ClientWith(fake.url(), creds);
  REQUIRE_STATUS_OK(client->Ping());
  REQUIRE_OK(client->UploadBlobBytes("r", "abc", {UploadMode::kSingleRequest, 1, nullptr}));
}

TEST_CASE("images: push and pull OCI layouts byte for byte", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  RegistryClient& client = *f.client;
  const std::string source = f.tmp.Sub("source");
  const TestImages images = WriteTestImages(source);

  Result<ImageTransfer> pushed = client.PushImage("test/image", "v1", source);
  REQUIRE_OK(pushed);
  CHECK(pushed->digest == images.image.digest);
  CHECK(pushed->media_type == kOciManifestType);
  CHECK(pushed->manifests == 1);
  CHECK(pushed->blobs == 3);
  CHECK(pushed->blobs_transferred == 3);
  Result<ImageTransfer> index = client.PushImage("test/image", "multi", source);
  REQUIRE_OK(index);
  CHECK(index->digest == images.index.digest);
  CHECK(index->media_type == kOciIndexType);
  CHECK(index->manifests == 3);
  CHECK(index->blobs == 5);  // Two configs, the shared layer, one layer each.
  CHECK(index->blobs_transferred == 5);
  // Pushed again: every blob is found with HEAD, none is sent.
  Result<ImageTransfer> again = client.PushImage("test/image", "v1", source);
  REQUIRE_OK(again);
  CHECK(again->blobs_transferred == 0);
  CHECK(client.PushImage("test/image", "absent", source).status().code() ==
        StatusCode::kNotFound);

  const std::string pulled = f.tmp.Sub("pulled");
  std::map<std::string, uint64_t> progress;
  ImageOptions options;
  options.progress = [&](const std::string& digest, uint64_t done, uint64_t) {
    progress[digest] = done;
  };
  Result<ImageTransfer> got = client.PullImage("test/image", "v1", pulled, options);
  REQUIRE_OK(got);
  CHECK(got->digest == images.image.digest);
  CHECK(got->blobs_transferred == 3);
  CHECK(progress.size() == 3);
  Result<ImageTransfer> got_index = client.PullImage("test/image", "multi", pulled);
  REQUIRE_OK(got_index);
  CHECK(got_index->manifests == 3);
  CHECK(TaggedDigest(pulled, "v1") == images.image.digest);
  CHECK(TaggedDigest(pulled, "multi") == images.index.digest);
  CHECK(BlobsOf(pulled) == BlobsOf(source));  // Every file, and nothing else.
  // Pulled again: the blobs in the layout are verified and kept, none is fetched.
  Result<ImageTransfer> twice = client.PullImage("test/image", "v1", pulled);
  REQUIRE_OK(twice);
  CHECK(twice->blobs_transferred == 0);
  CHECK(Json::parse(ReadFile(pulled + "/index.json"))["manifests"].size() == 2);
}

TEST_CASE("skopeo reads what the client pushed and what it pulled", "[registry]") {
  Fixture f;
  REQUIRE_REGISTRY(f);
  INFO(std::string(kSkopeo) + " not found: install it with scripts/setup");
  REQUIRE(access(kSkopeo, X_OK) == 0);
  RegistryClient& client = *f.client;
  const std::string source = f.tmp.Sub("source");
  const TestImages images = WriteTestImages(source);
  REQUIRE_OK(client.PushImage("test/skopeo", "v1", source));
  REQUIRE_OK(client.PushImage("test/skopeo", "multi", source));
  const std::string remote = "docker://127.0.0.1:" + std::to_string(f.registry.port()) +
                             "/test/skopeo";
  const auto skopeo_copy = [&](const std::string& from, const std::string& to, bool all) {
    std::vector<std::string> argv = {kSkopeo, "--insecure-policy", "copy", "--quiet",
                                     "--src-tls-verify=false", "--dest-tls-verify=false",
                                     "--preserve-digests"};
    if (all) {
      argv.push_back("--all");
    }
    argv.push_back(from);
    argv.push_back(to);
    const std::string log = f.tmp.Sub("skopeo.log");
    const int rc = Run(argv, log, f.tmp.path());
    INFO("skopeo " << from << " -> " << to << ": exit " << rc << ": " << ReadFile(log));
    return rc == 0;
  };
  // Registry -> oci: directory, as pushed: the same files.
  const std::string copied = f.tmp.Sub("copied");
  REQUIRE(skopeo_copy(remote + ":v1", "oci:" + copied + ":v1", false));
  CHECK(TaggedDigest(copied, "v1") == images.image.digest);
  std::map<std::string, std::string> expected;
  const std::map<std::string, std::string> all_source = BlobsOf(source);
  for (const std::string& hex : images.image_blobs) {
    expected[hex] = all_source.at(hex);
  }
  CHECK(BlobsOf(copied) == expected);
  const std::string copied_index = f.tmp.Sub("copied-index");
  REQUIRE(skopeo_copy(remote + ":multi", "oci:" + copied_index + ":multi", true));
  CHECK(TaggedDigest(copied_index, "multi") == images.index.digest);

  // What PullImage wrote, read by skopeo and pushed to another repository, which the client
  // pulls again: the same bytes.
  const std::string pulled = f.tmp.Sub("pulled");
  REQUIRE_OK(client.PullImage("test/skopeo", "multi", pulled));
  REQUIRE(skopeo_copy("oci:" + pulled + ":multi", remote + "-again:multi", true));
  const std::string round_trip = f.tmp.Sub("round-trip");
  Result<ImageTransfer> again = client.PullImage("test/skopeo-again", "multi", round_trip);
  REQUIRE_OK(again);
  CHECK(again->digest == images.index.digest);
  CHECK(BlobsOf(round_trip) == BlobsOf(pulled));
}

}  // namespace
}  // namespace cloister::client
