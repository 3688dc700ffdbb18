// BlobStore on a real directory: uploads in one piece and in chunks, digest checks that keep
// nothing on a mismatch, an upload killed mid-way (SIGKILL in a child) that leaves no blob, a
// delete while a reader holds the blob open, and memory that does not grow with the blob.
#include "registry/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testutil.h"

namespace cloister::registry {
namespace {

using testing::TempDir;

std::string DigestOf(const std::string& bytes) {
  unsigned char sum[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), sum);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned char b : sum) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t FilesIn(const std::string& dir) {
  size_t n = 0;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (const dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

std::unique_ptr<BlobStore> OpenStore(const std::string& root) {
  auto store = BlobStore::Open(root);
  REQUIRE(store.ok());
  return std::move(*store);
}

TEST_CASE("a blob uploaded in one piece or in chunks is stored under its digest") {
  TempDir dir;
  auto store = OpenStore(dir.Sub("registry"));
  const std::string layer = std::string(100000, 'x') + "tail";
  auto id = store->StartUpload();
  REQUIRE(id.ok());
  REQUIRE(store->Append(*id, 0, layer).ok());
  REQUIRE(store->Finish(*id, DigestOf(layer)).ok());
  CHECK(store->Size(DigestOf(layer)) == layer.size());
  CHECK(ReadAll(*store->Path(DigestOf(layer))) == layer);
  CHECK(FilesIn(dir.Sub("registry/uploads")) == 0);

  // Chunked: each chunk must start where the last one ended.
  const std::string config = R"({"ram":"4G","cpu":2})";
  id = store->StartUpload();
  REQUIRE(id.ok());
  CHECK(*store->Append(*id, 0, config.substr(0, 5)) == 5);
  const auto gap = store->Append(*id, 7, config.substr(7));
  CHECK(gap.status().code() == StatusCode::kInvalidArgument);
  CHECK(gap.status().message() == "chunk starts at 7, the upload holds 5 bytes");
  CHECK(*store->UploadSize(*id) == 5);
  CHECK(*store->Append(*id, 5, config.substr(5)) == config.size());
  REQUIRE(store->Finish(*id, DigestOf(config)).ok());
  CHECK(ReadAll(*store->Path(DigestOf(config))) == config);

  // The same bytes again: one blob, the upload discarded.
  id = store->StartUpload();
  REQUIRE(store->Append(*id, 0, config).ok());
  REQUIRE(store->Finish(*id, DigestOf(config)).ok());
  CHECK(FilesIn(dir.Sub("registry/uploads")) == 0);
  CHECK(store->uploads_in_progress() == 0);
}

TEST_CASE("UploadDigest is the digest of the bytes so far, and the upload carries on") {
  TempDir dir;
  auto store = OpenStore(dir.Sub("registry"));
  auto id = store->StartUpload();
  REQUIRE(id.ok());
  CHECK(*store->UploadDigest(*id) == DigestOf(""));
  REQUIRE(store->Append(*id, 0, "abc").ok());
  CHECK(*store->UploadDigest(*id) == DigestOf("abc"));
  REQUIRE(store->Append(*id, 3, "def").ok());
  CHECK(*store->UploadDigest(*id) == DigestOf("abcdef"));
  REQUIRE(store->Finish(*id, DigestOf("abcdef")).ok());
  CHECK(store->UploadDigest(*id).status().code() == StatusCode::kNotFound);
}

TEST_CASE("a digest mismatch or a bad digest keeps nothing") {
  TempDir dir;
  auto store = OpenStore(dir.Sub("registry"));
  const std::string bytes = "layer bytes";
  const std::string wrong = DigestOf("other bytes");
  auto id = store->StartUpload();
  REQUIRE(store->Append(*id, 0, bytes).ok());
  const Status mismatch = store->Finish(*id, wrong);
  CHECK(mismatch.code() == StatusCode::kInvalidArgument);
  CHECK(mismatch.message() == "digest mismatch: the bytes are " + DigestOf(bytes));
  CHECK_FALSE(store->Size(wrong).has_value());
  CHECK_FALSE(store->Size(DigestOf(bytes)).has_value());
  CHECK(FilesIn(dir.Sub("registry/uploads")) == 0);
  CHECK(store->Finish(*id, DigestOf(bytes)).code() == StatusCode::kNotFound);  // Gone.

  for (const char* bad : {"sha512:abcd", "sha256:ABCDEF", "sha256:12", "", "md5:00"}) {
    INFO(bad);
    id = store->StartUpload();
    REQUIRE(store->Append(*id, 0, bytes).ok());
    CHECK(store->Finish(*id, bad).code() == StatusCode::kInvalidArgument);
    CHECK(store->Path(bad).status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(FilesIn(dir.Sub("registry/uploads")) == 0);
  CHECK(store->Cancel("nope").code() == StatusCode::kNotFound);
  CHECK(store->Append("nope", 0, "x").status().code() == StatusCode::kNotFound);
}

TEST_CASE("an upload killed mid-way leaves no blob, and the next open clears it") {
  TempDir dir;
  const std::string root = dir.Sub("registry");
  const std::string bytes(1 << 20, 'k');
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto store = BlobStore::Open(root);
    if (!store.ok()) _exit(3);
    auto id = (*store)->StartUpload();
    if (!id.ok() || !(*store)->Append(*id, 0, bytes).ok()) _exit(4);
    raise(SIGKILL);  // Before Finish: as a crash in the middle of a push.
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  CHECK(FilesIn(root + "/uploads") == 1);  // The partial upload, invisible as a blob.
  auto store = OpenStore(root);
  CHECK_FALSE(store->Size(DigestOf(bytes)).has_value());
  CHECK(FilesIn(root + "/uploads") == 0);
  // The retry succeeds.
  auto id = store->StartUpload();
  REQUIRE(store->Append(*id, 0, bytes).ok());
  REQUIRE(store->Finish(*id, DigestOf(bytes)).ok());
  CHECK(store->Size(DigestOf(bytes)) == bytes.size());
}

TEST_CASE("a delete does not cut off a reader that already opened the blob") {
  TempDir dir;
  auto store = OpenStore(dir.Sub("registry"));
  const std::string bytes(300000, 'r');
  auto id = store->StartUpload();
  REQUIRE(store->Append(*id, 0, bytes).ok());
  REQUIRE(store->Finish(*id, DigestOf(bytes)).ok());
  const int fd = open(store->Path(DigestOf(bytes))->c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(store->Delete(DigestOf(bytes)).ok());
  CHECK_FALSE(store->Size(DigestOf(bytes)).has_value());
  CHECK(store->Delete(DigestOf(bytes)).code() == StatusCode::kNotFound);
  std::string read(bytes.size(), '\0');
  size_t got = 0;
  while (got < read.size()) {
    const ssize_t n = ::read(fd, read.data() + got, read.size() - got);
    REQUIRE(n > 0);
    got += static_cast<size_t>(n);
  }
  close(fd);
  CHECK(read == bytes);
}

// Resident memory in KiB (page cache is not counted).
long RssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

TEST_CASE("a large blob streams through with memory that does not grow with it") {
  TempDir dir;
  auto store = OpenStore(dir.Sub("registry"));
  const std::string chunk(1 << 20, 'm');
  constexpr int kChunks = 128;  // 128 MiB.
  auto id = store->StartUpload();
  REQUIRE(id.ok());
  REQUIRE(store->Append(*id, 0, chunk).ok());
  const long before = RssKib();
  uint64_t offset = chunk.size();
  for (int i = 1; i < kChunks; i++) {
    auto size = store->Append(*id, offset, chunk);
    REQUIRE(size.ok());
    offset = *size;
  }
  const long after = RssKib();
  INFO("RSS before " << before << " KiB, after " << after << " KiB");
  CHECK(after - before < 8 * 1024);
  // The expected digest, computed in pieces as well.
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  REQUIRE(EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1);
  for (int i = 0; i < kChunks; i++) EVP_DigestUpdate(ctx, chunk.data(), chunk.size());
  unsigned char sum[EVP_MAX_MD_SIZE];
  unsigned int sum_size = 0;
  EVP_DigestFinal_ex(ctx, sum, &sum_size);
  EVP_MD_CTX_free(ctx);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string digest = "sha256:";
  for (unsigned int i = 0; i < sum_size; i++) {
    digest.push_back(kDigits[sum[i] >> 4]);
    digest.push_back(kDigits[sum[i] & 15]);
  }
  REQUIRE(store->Finish(*id, digest).ok());
  CHECK(store->Size(digest) == uint64_t{kChunks} << 20);
}

}  // namespace
}  // namespace cloister::registry
