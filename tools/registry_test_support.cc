#include "tools/registry_test_support.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "client/registry_client.h"
#include "tools/cli_test_support.h"

extern char** environ;

namespace cloister::tools {
namespace {

std::string CloisterdPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  REQUIRE(srcdir != nullptr);
  return std::string(srcdir) + "/cloister/api/cloisterd/cloisterd";
}

// "controller=PORT\nregistry=PORT\n".
bool ParseReady(const std::string& text, uint16_t* controller, uint16_t* registry) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) {
      return false;
    }
    const int port = std::atoi(line.c_str() + eq + 1);
    if (port <= 0 || port > 65535) {
      return false;
    }
    if (line.compare(0, eq, "controller") == 0) {
      *controller = static_cast<uint16_t>(port);
    } else if (line.compare(0, eq, "registry") == 0) {
      *registry = static_cast<uint16_t>(port);
    }
  }
  return *registry != 0;
}

}  // namespace

std::unique_ptr<Daemon> Daemon::Start(const std::string& data_dir, const std::string& work_dir,
                                      const std::vector<std::string>& env) {
  static int starts = 0;
  const std::string n = std::to_string(starts++);
  const std::string ready = work_dir + "/ready." + n;
  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->output_path_ = work_dir + "/cloisterd." + n + ".log";
  const std::vector<std::string> args = {
      CloisterdPath(), "--data",        data_dir,      "--ready-file",
      ready,           "--listen-addr", "127.0.0.1:0", "--registry-listen-address",
      "127.0.0.1:0"};
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; e++) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& extra : env) {
      replaced = replaced || extra.substr(0, extra.find('=')) == name;
    }
    if (!replaced) {
      environment.push_back(entry);
    }
  }
  environment.insert(environment.end(), env.begin(), env.end());
  std::vector<char*> argv;
  for (const std::string& arg : args) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : environment) {
    envp.push_back(const_cast<char*>(entry.c_str()));
  }
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(127);
    }
    const int out = open(daemon->output_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (out < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) {
      _exit(127);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  daemon->pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string text = ReadFile(ready);
    if (!text.empty()) {
      INFO(text);
      REQUIRE(ParseReady(text, &daemon->controller_port_, &daemon->registry_port_));
      return daemon;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      daemon->pid_ = -1;
      FAIL("cloisterd exited before it was ready: " << daemon->Output());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("cloisterd was not ready within 30 s: " << daemon->Output());
  return nullptr;
}

Daemon::~Daemon() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

std::string Daemon::registry_url() const {
  return "http://127.0.0.1:" + std::to_string(registry_port_);
}

std::string Daemon::controller_url() const {
  return "http://127.0.0.1:" + std::to_string(controller_port_);
}

void Daemon::Stop() {
  REQUIRE(pid_ > 0);
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) != pid_) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      FAIL("cloisterd did not exit within 20 s of SIGTERM: " << Output());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
  INFO(Output());
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

std::string Daemon::Output() const { return ReadFile(output_path_); }

std::vector<std::string> TestImage::Digests() const {
  std::vector<std::string> all = {config_digest};
  all.insert(all.end(), layer_digests.begin(), layer_digests.end());
  all.push_back(manifest_digest);
  return all;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  REQUIRE(out.good());
}

TestImage WriteTestImage(const std::string& dir, const std::string& tag,
                         const std::vector<std::string>& layers, const std::string& config_note) {
  using Json = nlohmann::ordered_json;
  std::error_code ec;
  std::filesystem::create_directories(dir + "/blobs/sha256", ec);
  REQUIRE(!ec);
  auto put = [&](const std::string& bytes) {
    const std::string digest = client::Sha256Digest(bytes);
    WriteFile(dir + "/blobs/sha256/" + digest.substr(7), bytes);
    return digest;
  };
  TestImage image;
  const std::string config = Json{{"cpu", 4}, {"ram", "8G"}, {"note", config_note}}.dump();
  image.config_digest = put(config);
  Json manifest = {{"schemaVersion", 2},
                   {"mediaType", client::kOciManifestType},
                   {"config",
                    {{"mediaType", "application/vnd.veertu.anka.config.v1+json"},
                     {"digest", image.config_digest},
                     {"size", config.size()}}},
                   {"layers", Json::array()}};
  for (const std::string& layer : layers) {
    const std::string digest = put(layer);
    image.layer_digests.push_back(digest);
    manifest["layers"].push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                  {"digest", digest},
                                  {"size", layer.size()}});
  }
  const std::string manifest_bytes = manifest.dump();
  image.manifest_digest = put(manifest_bytes);
  WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  const Json index = {{"schemaVersion", 2},
                      {"mediaType", client::kOciIndexType},
                      {"manifests",
                       {{{"mediaType", client::kOciManifestType},
                         {"digest", image.manifest_digest},
                         {"size", manifest_bytes.size()},
                         {"annotations", {{"org.opencontainers.image.ref.name", tag}}}}}}};
  WriteFile(dir + "/index.json", index.dump());
  return image;
}

std::string PseudoRandomBytes(size_t n, uint64_t seed) {
  std::string bytes(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    bytes[i] = static_cast<char>(x >> 32);
  }
  return bytes;
}

std::map<std::string, std::string> ReadBlobs(const std::string& dir) {
  std::map<std::string, std::string> blobs;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir + "/blobs/sha256", ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      blobs["sha256:" + it->path().filename().string()] = ReadFile(it->path().string());
    }
  }
  return blobs;
}

}  // namespace cloister::tools
