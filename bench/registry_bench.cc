// OCI registry throughput against any OCI Distribution registry (cloisterd's registry listener,
// docker-registry), through client/registry_client.h: what `cloister` and the node agent use.
//
//   registry_bench --url http://127.0.0.1:PORT [--root-token T] [--large-mb 1024]
//                  [--small-count 10000] [--small-bytes 4096] [--concurrency 4]
//                  [--workdir DIR] [--repo NAME] [--mode monolithic|chunked|single]
//                  [--chunk-mb 16] [--pid PID]
//
// Prints figures; not a test. Four phases, in order, each timed on its own:
//   push_large  one blob of --large-mb MiB, streamed from a file generated first (random bytes,
//               fsynced; not counted), one connection, in --mode;
//   pull_large  the same blob back into a file, its SHA-256 checked as it streams;
//   push_small  --small-count blobs of --small-bytes (random, made in memory first; not
//               counted) over --concurrency threads, each with its own client (connection);
//   pull_small  the same blobs back into memory on as many threads, each one's SHA-256 checked.
// Every run uses a fresh repository (--repo, default bench/run-<random>) and fresh random
// bytes, so nothing is already on the registry. One line per phase (MB = 10^6 bytes):
//   REGISTRY phase=push_large blobs=1 bytes=... seconds=... mb_per_s=... blobs_per_s=...
//            p50_ms=... p99_ms=... ok=1 errors=0 connections=1 client_cpu_s=...
//            server_cpu_s=...
// (one line each; server_cpu_s is -1 without --pid). A pull is ok only if its bytes hash to the
// digest. Exit status: 0 every operation ok, 1 some failed (the first errors go to stderr),
// 2 bad arguments.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/flags.h"
#include "bench/latency.h"
#include "client/client_auth.h"
#include "client/controller_client.h"
#include "client/registry_client.h"
#include "log/status.h"

namespace {

using cloister::Result;
using cloister::Status;
using cloister::bench::ProcessCpuSeconds;
using cloister::client::RegistryClient;
using SteadyClock = std::chrono::steady_clock;

constexpr cloister::bench::Program kProgram{
    "registry_bench",
    "usage: registry_bench --url http://127.0.0.1:PORT [--root-token TOKEN]\n"
    "                      [--large-mb 1024] [--small-count 10000] [--small-bytes 4096]\n"
    "                      [--concurrency 4] [--workdir DIR] [--repo NAME]\n"
    "                      [--mode monolithic|chunked|single] [--chunk-mb 16] [--pid PID]\n"
    "Push and pull of one large blob (from and to a file) and of many small ones (from and to\n"
    "memory, on --concurrency connections); one 'REGISTRY phase=...' line per phase. The\n"
    "large file goes in --workdir (default $TMPDIR, else /var/tmp) and is removed at the end.\n"};

constexpr size_t kErrorsShownMax = 5;

double Seconds(SteadyClock::time_point from, SteadyClock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

double ClientCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// ---- Flags ----

struct Flags {
  std::string url;
  std::string root_token;
  uint64_t large_mb = 1024;
  size_t small_count = 10000;
  size_t small_bytes = 4096;
  int concurrency = 4;
  std::string workdir;
  std::string repo;
  cloister::client::UploadMode mode = cloister::client::UploadMode::kMonolithic;
  uint64_t chunk_mb = 16;
  int pid = 0;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  kProgram.ParseFlags(argc, argv, [&](const std::string& name, const char* value) {
    if (name == "--url") {
      flags.url = value;
    } else if (name == "--root-token") {
      flags.root_token = value;
    } else if (name == "--large-mb") {
      flags.large_mb = static_cast<uint64_t>(kProgram.PositiveNumber(name, value, 1 << 20));
    } else if (name == "--small-count") {
      flags.small_count = static_cast<size_t>(kProgram.PositiveNumber(name, value, 10'000'000));
    } else if (name == "--small-bytes") {
      flags.small_bytes = static_cast<size_t>(kProgram.PositiveNumber(name, value, 64 << 20));
    } else if (name == "--concurrency") {
      flags.concurrency = static_cast<int>(kProgram.PositiveNumber(name, value, 1024));
    } else if (name == "--workdir") {
      flags.workdir = value;
    } else if (name == "--repo") {
      flags.repo = value;
    } else if (name == "--mode") {
      const std::string mode = value;
      if (mode == "monolithic") {
        flags.mode = cloister::client::UploadMode::kMonolithic;
      } else if (mode == "chunked") {
        flags.mode = cloister::client::UploadMode::kChunked;
      } else if (mode == "single") {
        flags.mode = cloister::client::UploadMode::kSingleRequest;
      } else {
        kProgram.BadArguments("--mode: monolithic, chunked or single, not " + mode);
      }
    } else if (name == "--chunk-mb") {
      flags.chunk_mb = static_cast<uint64_t>(kProgram.PositiveNumber(name, value, 4096));
    } else if (name == "--pid") {
      flags.pid = static_cast<int>(kProgram.PositiveNumber(name, value, 1 << 30));
    } else {
      return false;
    }
    return true;
  });
  if (flags.url.empty()) {
    kProgram.BadArguments("--url is required");
  }
  if (flags.workdir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    flags.workdir = tmp != nullptr && *tmp != '\0' ? tmp : "/var/tmp";
  }
  if (flags.repo.empty()) {
    std::random_device device;
    flags.repo = "bench/run-" + std::to_string(device() % 1'000'000'000);
  }
  Status valid = cloister::client::ValidateRepository(flags.repo);
  if (!valid.ok()) {
    kProgram.BadArguments("--repo: " + valid.message());
  }
  return flags;
}

// ---- Data ----

// splitmix64: fast, and random enough that no registry or disk compresses it.
struct Bytes {
  uint64_t state;
  void Fill(char* out, size_t size) {
    for (size_t i = 0; i < size; i += 8) {
      uint64_t z = (state += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      std::memcpy(out + i, &z, std::min<size_t>(8, size - i));
    }
  }
};

// Writes size bytes of random data to path, fsynced: its digest.
Result<std::string> GenerateFile(const std::string& path, uint64_t size, uint64_t seed) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::IoError("create " + path + ": " + std::strerror(errno));
  }
  Bytes bytes{seed};
  std::string buffer(1 << 20, '\0');
  EVP_MD_CTX* sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(sha, EVP_sha256(), nullptr);
  Status status;
  for (uint64_t done = 0; done < size && status.ok();) {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(buffer.size(), size - done));
    bytes.Fill(buffer.data(), piece);
    EVP_DigestUpdate(sha, buffer.data(), piece);
    if (write(fd, buffer.data(), piece) != static_cast<ssize_t>(piece)) {
      status = Status::IoError("write " + path + ": " + std::strerror(errno));
    }
    done += piece;
  }
  if (status.ok() && fsync(fd) != 0) {
    status = Status::IoError("fsync " + path + ": " + std::strerror(errno));
  }
  close(fd);
  unsigned char md[32];
  unsigned int length = 0;
  EVP_DigestFinal_ex(sha, md, &length);
  EVP_MD_CTX_free(sha);
  if (!status.ok()) {
    return status;
  }
  std::string digest = "sha256:";
  for (unsigned char byte : md) {
    static const char kHex[] = "0123456789abcdef";
    digest += kHex[byte >> 4];
    digest += kHex[byte & 15];
  }
  return digest;
}

// ---- Phases ----

struct PhaseResult {
  explicit PhaseResult(std::string phase) : name(std::move(phase)) {}

  std::string name;
  size_t blobs = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  std::vector<double> latencies_ns;
  size_t ok = 0;
  size_t errors = 0;
  uint64_t connections = 0;
  double client_cpu_s = 0;
  double server_cpu_s = -1;
};

void Print(PhaseResult* r) {
  cloister::bench::Figures figures;
  if (!r->latencies_ns.empty()) {
    figures = cloister::bench::Percentiles(&r->latencies_ns);
  }
  const double seconds = std::max(r->seconds, 1e-9);
  std::printf("REGISTRY phase=%s blobs=%zu bytes=%llu seconds=%.3f mb_per_s=%.1f "
              "blobs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f ok=%zu errors=%zu connections=%llu "
              "client_cpu_s=%.2f server_cpu_s=%.2f\n",
              r->name.c_str(), r->blobs, static_cast<unsigned long long>(r->bytes), r->seconds,
              static_cast<double>(r->bytes) / 1e6 / seconds,
              static_cast<double>(r->blobs) / seconds, figures.p50 / 1e6, figures.p99 / 1e6,
              r->ok, r->errors, static_cast<unsigned long long>(r->connections),
              r->client_cpu_s, r->server_cpu_s);
  std::fflush(stdout);
}

class Bench {
 public:
  explicit Bench(Flags flags) : flags_(std::move(flags)) {
    cloister::client::Credentials credentials;
    credentials.root_token = flags_.root_token;
    Result<std::shared_ptr<cloister::client::ClientAuth>> auth =
        cloister::client::ClientAuth::Create(credentials);
    if (!auth.ok()) {
      kProgram.Die(auth.status().message(), 2);
    }
    auth_ = *auth;
  }

  std::unique_ptr<RegistryClient> NewClient() const {
    cloister::client::RegistryClientOptions options;
    options.url = flags_.url;
    options.auth = auth_;
    return std::make_unique<RegistryClient>(options);
  }

  void Error(const Status& status) {
    std::lock_guard<std::mutex> lock(errors_mu_);
    if (errors_shown_++ < kErrorsShownMax) {
      std::fprintf(stderr, "registry_bench: %s\n", status.ToString().c_str());
    }
  }

  // Runs op(client, i) for i in [0, count) on threads, each with its own client; fills r.
  template <typename Op>
  void RunParallel(size_t count, int threads, Op op, PhaseResult* r) {
    std::vector<std::unique_ptr<RegistryClient>> clients;
    for (int t = 0; t < threads; t++) {
      clients.push_back(NewClient());
      Status ping = clients.back()->Ping();  // Connect before the clock starts.
      if (!ping.ok()) {
        kProgram.Die(ping.ToString());
      }
    }
    std::atomic<size_t> next{0};
    std::vector<std::vector<double>> latencies(static_cast<size_t>(threads));
    std::vector<size_t> oks(static_cast<size_t>(threads), 0);
    const double cpu_before = ClientCpuSeconds();
    const double server_before = ProcessCpuSeconds(flags_.pid);
    const auto start = SteadyClock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; t++) {
      workers.emplace_back([&, t] {
        RegistryClient& client = *clients[static_cast<size_t>(t)];
        for (size_t i = next++; i < count; i = next++) {
          const auto begin = SteadyClock::now();
          const bool ok = op(client, i);
          latencies[static_cast<size_t>(t)].push_back(
              std::chrono::duration<double, std::nano>(SteadyClock::now() - begin).count());
          oks[static_cast<size_t>(t)] += ok ? 1 : 0;
        }
      });
    }
    for (std::thread& worker : workers) {
      worker.join();
    }
    r->seconds = Seconds(start, SteadyClock::now());
    r->client_cpu_s = ClientCpuSeconds() - cpu_before;
    if (flags_.pid > 0) {
      r->server_cpu_s = ProcessCpuSeconds(flags_.pid) - server_before;
    }
    for (int t = 0; t < threads; t++) {
      r->latencies_ns.insert(r->latencies_ns.end(), latencies[static_cast<size_t>(t)].begin(),
                             latencies[static_cast<size_t>(t)].end());
      r->ok += oks[static_cast<size_t>(t)];
      r->connections += clients[static_cast<size_t>(t)]->connections_opened();
    }
    r->blobs = count;
    r->errors = count - r->ok;
  }

  int Run() {
    std::random_device device;
    const uint64_t seed = (static_cast<uint64_t>(device()) << 32) | device();
    std::fprintf(stderr, "registry_bench: %s, repository %s, large %llu MiB, small %zu x %zu "
                 "bytes on %d connections\n", flags_.url.c_str(), flags_.repo.c_str(),
                 static_cast<unsigned long long>(flags_.large_mb), flags_.small_count,
                 flags_.small_bytes, flags_.concurrency);
    const std::string large_path =
        flags_.workdir + "/registry-bench-" + std::to_string(getpid()) + ".blob";
    const uint64_t large_bytes = flags_.large_mb << 20;
    Result<std::string> large_digest = GenerateFile(large_path, large_bytes, seed);
    if (!large_digest.ok()) {
      kProgram.Die(large_digest.status().ToString());
    }
    cloister::client::UploadOptions upload;
    upload.mode = flags_.mode;
    upload.chunk_bytes = flags_.chunk_mb << 20;

    PhaseResult push_large("push_large");
    RunParallel(1, 1, [&](RegistryClient& client, size_t) {
      Status sent = client.UploadBlob(flags_.repo, large_path, *large_digest, large_bytes, upload);
      if (!sent.ok()) Error(sent);
      return sent.ok();
    }, &push_large);
    push_large.bytes = large_bytes;
    Print(&push_large);

    const std::string pulled_path = large_path + ".pulled";
    PhaseResult pull_large("pull_large");
    RunParallel(1, 1, [&](RegistryClient& client, size_t) {
      Status got = client.DownloadBlob(flags_.repo, *large_digest, pulled_path);
      if (!got.ok()) Error(got);
      return got.ok();
    }, &pull_large);
    pull_large.bytes = large_bytes;
    Print(&pull_large);
    unlink(pulled_path.c_str());
    unlink(large_path.c_str());

    // The small blobs, made before any clock starts.
    std::vector<std::string> small(flags_.small_count);
    std::vector<std::string> digests(flags_.small_count);
    Bytes bytes{seed ^ 0x5bd1e995ull};
    for (size_t i = 0; i < small.size(); i++) {
      small[i].resize(flags_.small_bytes);
      bytes.Fill(small[i].data(), small[i].size());
      digests[i] = cloister::client::Sha256Digest(small[i]);
    }
    PhaseResult push_small("push_small");
    RunParallel(small.size(), flags_.concurrency, [&](RegistryClient& client, size_t i) {
      Result<std::string> sent = client.UploadBlobBytes(flags_.repo, small[i], upload);
      if (!sent.ok()) Error(sent.status());
      return sent.ok() && *sent == digests[i];
    }, &push_small);
    push_small.bytes = static_cast<uint64_t>(small.size()) * flags_.small_bytes;
    Print(&push_small);

    PhaseResult pull_small("pull_small");
    RunParallel(small.size(), flags_.concurrency, [&](RegistryClient& client, size_t i) {
      Result<std::string> got = client.FetchBlob(flags_.repo, digests[i], flags_.small_bytes);
      if (!got.ok()) Error(got.status());
      return got.ok() && *got == small[i];  // FetchBlob checked the digest; this the bytes.
    }, &pull_small);
    pull_small.bytes = static_cast<uint64_t>(small.size()) * flags_.small_bytes;
    Print(&pull_small);

    const size_t errors =
        push_large.errors + pull_large.errors + push_small.errors + pull_small.errors;
    return errors == 0 ? 0 : 1;
  }

 private:
  Flags flags_;
  std::shared_ptr<cloister::client::ClientAuth> auth_;
  std::mutex errors_mu_;
  size_t errors_shown_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  cloister::client::InitHttpClients();
  Bench bench(ParseFlags(argc, argv));
  return bench.Run();
}
