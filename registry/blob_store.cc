#include "registry/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace cloister::registry {
namespace {

constexpr char kPrefix[] = "sha256:";
constexpr size_t kHexDigits = 64;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

bool IsLowerHex(std::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; i++) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 15]);
  }
  return out;
}

Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::IoError(Errno("mkdir " + path));
  }
  return Status::Ok();
}

Status SyncDir(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IoError(Errno("open " + path));
  const int rc = fsync(fd);
  close(fd);
  return rc == 0 ? Status::Ok() : Status::IoError(Errno("fsync " + path));
}

}  // namespace

std::optional<std::string> ParseDigest(std::string_view digest, std::string* error) {
  if (!digest.starts_with(kPrefix)) {
    *error = "digest must start with sha256: (the only algorithm this registry stores)";
    return std::nullopt;
  }
  const std::string_view hex = digest.substr(sizeof(kPrefix) - 1);
  if (hex.size() != kHexDigits || !IsLowerHex(hex)) {
    *error = "digest must be sha256: and 64 lowercase hex digits";
    return std::nullopt;
  }
  return std::string(hex);
}

// One upload in progress: its file and the running SHA-256 of what it holds.
struct BlobStore::Upload {
  int fd = -1;
  std::string path;
  uint64_t size = 0;
  EVP_MD_CTX* sha = nullptr;

  ~Upload() {
    if (fd >= 0) close(fd);
    EVP_MD_CTX_free(sha);
  }
};

BlobStore::BlobStore(std::string root) : root_(std::move(root)) {}
BlobStore::~BlobStore() {
  for (const auto& [id, upload] : uploads_) unlink(upload->path.c_str());
}

Result<std::unique_ptr<BlobStore>> BlobStore::Open(const std::string& root) {
  for (const std::string& dir : {root, root + "/blobs", root + "/blobs/sha256", root + "/uploads"}) {
    if (Status s = MakeDir(dir); !s.ok()) return s;
  }
  // A previous process's uploads cannot be resumed (their hash state was in its memory).
  const std::string uploads = root + "/uploads";
  DIR* dir = opendir(uploads.c_str());
  if (dir == nullptr) return Status::IoError(Errno("opendir " + uploads));
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") unlink((uploads + "/" + name).c_str());
  }
  closedir(dir);
  return std::unique_ptr<BlobStore>(new BlobStore(root));
}

std::string BlobStore::BlobPath(const std::string& hex) const {
  return root_ + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex;
}

Result<std::string> BlobStore::StartUpload() {
  unsigned char random[16];
  if (RAND_bytes(random, sizeof(random)) != 1) return Status::IoError("no randomness");
  const std::string id = Hex(random, sizeof(random));
  auto upload = std::make_unique<Upload>();
  upload->path = root_ + "/uploads/" + id;
  upload->fd = open(upload->path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (upload->fd < 0) return Status::IoError(Errno("create " + upload->path));
  upload->sha = EVP_MD_CTX_new();
  if (upload->sha == nullptr || EVP_DigestInit_ex(upload->sha, EVP_sha256(), nullptr) != 1) {
    unlink(upload->path.c_str());
    return Status::IoError("SHA-256 is not available");
  }
  uploads_.emplace(id, std::move(upload));
  return id;
}

Result<uint64_t> BlobStore::Append(const std::string& upload_id, uint64_t offset,
                                   std::string_view bytes) {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  Upload& upload = *it->second;
  if (offset != upload.size) {
    return Status::InvalidArgument("chunk starts at " + std::to_string(offset) +
                                   ", the upload holds " + std::to_string(upload.size) + " bytes");
  }
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = write(upload.fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      // The file may now hold part of the chunk: the upload cannot continue consistently.
      const Status failed = errno == ENOSPC ? Status::NoSpace(Errno("write " + upload.path))
                                            : Status::IoError(Errno("write " + upload.path));
      unlink(upload.path.c_str());
      uploads_.erase(it);
      return failed;
    }
    written += static_cast<size_t>(n);
  }
  EVP_DigestUpdate(upload.sha, bytes.data(), bytes.size());
  upload.size += bytes.size();
  return upload.size;
}

Result<uint64_t> BlobStore::UploadSize(const std::string& upload_id) const {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  return it->second->size;
}

Status BlobStore::Finish(const std::string& upload_id, std::string_view digest) {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  std::unique_ptr<Upload> upload = std::move(it->second);
  uploads_.erase(it);
  std::string error;
  const std::optional<std::string> claimed = ParseDigest(digest, &error);
  unsigned char sum[EVP_MAX_MD_SIZE];
  unsigned int sum_size = 0;
  EVP_DigestFinal_ex(upload->sha, sum, &sum_size);
  const std::string actual = Hex(sum, sum_size);
  if (!claimed || *claimed != actual) {
    unlink(upload->path.c_str());
    return Status::InvalidArgument(claimed ? "digest mismatch: the bytes are sha256:" + actual
                                           : error);
  }
  const std::string target = BlobPath(actual);
  if (Size(digest).has_value()) {
    unlink(upload->path.c_str());  // Same bytes already stored.
    return Status::Ok();
  }
  if (fsync(upload->fd) != 0) {
    const Status failed = Status::IoError(Errno("fsync " + upload->path));
    unlink(upload->path.c_str());
    return failed;
  }
  const std::string shard = root_ + "/blobs/sha256/" + actual.substr(0, 2);
  Status s = MakeDir(shard);
  if (s.ok() && rename(upload->path.c_str(), target.c_str()) != 0) {
    s = Status::IoError(Errno("rename " + upload->path + " to " + target));
  }
  if (!s.ok()) {
    unlink(upload->path.c_str());
    return s;
  }
  if (Status synced = SyncDir(shard); !synced.ok()) return synced;
  return SyncDir(root_ + "/blobs/sha256");
}

Status BlobStore::Cancel(const std::string& upload_id) {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  unlink(it->second->path.c_str());
  uploads_.erase(it);
  return Status::Ok();
}

std::optional<uint64_t> BlobStore::Size(std::string_view digest) const {
  std::string error;
  const std::optional<std::string> hex = ParseDigest(digest, &error);
  struct stat st {};
  if (!hex || stat(BlobPath(*hex).c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_size);
}

Result<std::string> BlobStore::Path(std::string_view digest) const {
  std::string error;
  const std::optional<std::string> hex = ParseDigest(digest, &error);
  if (!hex) return Status::InvalidArgument(error);
  if (!Size(digest)) return Status::NotFound("blob " + std::string(digest) + " not found");
  return BlobPath(*hex);
}

Status BlobStore::Delete(std::string_view digest) {
  Result<std::string> path = Path(digest);
  if (!path.ok()) return path.status();
  if (unlink(path->c_str()) != 0) return Status::IoError(Errno("unlink " + *path));
  return Status::Ok();
}

}  // namespace cloister::registry
