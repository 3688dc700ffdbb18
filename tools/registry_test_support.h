// For the registry tools' tests (testonly): the real cloisterd as a child process, and OCI image
// layouts written on disk.
//
// Daemon runs api/cloisterd/cloisterd from the test's runfiles (a data dependency) with --data,
// both listeners on 127.0.0.1:0 and --ready-file, waits until the ready file names the ports, and
// sends its output to a file (never a pipe that could fill). The child dies with the test
// (PR_SET_PDEATHSIG) and is killed by the destructor if still running. It is a small copy of
// tests/wire/cloisterd_process.h, which is visible to //tests only.
//
// Not thread-safe; the helpers REQUIRE on the test's thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cloister::tools {

class Daemon {
 public:
  // env: "NAME=value" entries added to the test's environment.
  static std::unique_ptr<Daemon> Start(const std::string& data_dir, const std::string& work_dir,
                                       const std::vector<std::string>& env = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  std::string registry_url() const;
  std::string controller_url() const;
  // SIGTERM and waits (REQUIREs a clean exit within 20 s).
  void Stop();
  std::string Output() const;

 private:
  Daemon() = default;
  pid_t pid_ = -1;
  uint16_t controller_port_ = 0;
  uint16_t registry_port_ = 0;
  std::string output_path_;
};

// An OCI image layout written to dir: a config, the layers given, an image manifest, index.json
// naming it tag.
struct TestImage {
  std::string manifest_digest;
  std::string config_digest;
  std::vector<std::string> layer_digests;
  // Every blob of the image (config, layers, manifest).
  std::vector<std::string> Digests() const;
};
TestImage WriteTestImage(const std::string& dir, const std::string& tag,
                         const std::vector<std::string>& layers, const std::string& config_note);

// Deterministic pseudo-random bytes (xorshift) of size n from seed.
std::string PseudoRandomBytes(size_t n, uint64_t seed);

// digest -> bytes of every file under dir/blobs/sha256 (a layout's or a registry's, whose files
// sit one level deeper, in shards: both are read).
std::map<std::string, std::string> ReadBlobs(const std::string& dir);

void WriteFile(const std::string& path, const std::string& bytes);

}  // namespace cloister::tools
