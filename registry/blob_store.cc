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

// Writeback of an upload is started every this many bytes (see Append).
constexpr uint64_t kWritebackBytes = 8 * 1024 * 1024;

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
  uint64_t flushed = 0;  // Bytes whose writeback was started (sync_file_range).
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
  // Start writing back what arrived so far without waiting for it, so that the fsync when the
  // upload finishes finds most of a large blob on disk already (disk and network overlap).
  if (upload.size - upload.flushed >= kWritebackBytes) {
    sync_file_range(upload.fd, static_cast<off_t>(upload.flushed),
                    static_cast<off_t>(upload.size - upload.flushed), SYNC_FILE_RANGE_WRITE);
    upload.flushed = upload.size;
  }
  return upload.size;
}

Result<uint64_t> BlobStore::UploadSize(const std::string& upload_id) const {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  return it->second->size;
}

BlobStore::Sealed::Sealed(Sealed&& other) noexcept
    : fd(other.fd),
      temp_path(std::move(other.temp_path)),
      target(std::move(other.target)),
      shard_dir(std::move(other.shard_dir)),
      blobs_dir(std::move(other.blobs_dir)),
      present(other.present),
      committed(other.committed) {
  other.fd = -1;
  other.temp_path.clear();
}

BlobStore::Sealed::~Sealed() {
  if (fd >= 0) close(fd);
  if (!committed && !temp_path.empty()) unlink(temp_path.c_str());
}

Result<std::string> BlobStore::UploadDigest(const std::string& upload_id) const {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char sum[EVP_MAX_MD_SIZE];
  unsigned int sum_size = 0;
  const bool ok = copy != nullptr && EVP_MD_CTX_copy_ex(copy, it->second->sha) == 1 &&
                  EVP_DigestFinal_ex(copy, sum, &sum_size) == 1;
  EVP_MD_CTX_free(copy);
  if (!ok) return Status::IoError("sha256 of upload " + upload_id + " failed");
  return "sha256:" + Hex(sum, sum_size);
}

Result<BlobStore::Sealed> BlobStore::Seal(const std::string& upload_id,
                                          std::string_view digest) {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  std::unique_ptr<Upload> upload = std::move(it->second);
  uploads_.erase(it);
  Sealed sealed;
  sealed.fd = upload->fd;
  sealed.temp_path = upload->path;
  upload->fd = -1;  // The sealed blob owns the file now (and removes it unless committed).
  std::string error;
  const std::optional<std::string> claimed = ParseDigest(digest, &error);
  unsigned char sum[EVP_MAX_MD_SIZE];
  unsigned int sum_size = 0;
  EVP_DigestFinal_ex(upload->sha, sum, &sum_size);
  const std::string actual = Hex(sum, sum_size);
  if (!claimed || *claimed != actual) {
    return Status::InvalidArgument(claimed ? "digest mismatch: the bytes are sha256:" + actual
                                           : error);
  }
  sealed.target = BlobPath(actual);
  sealed.blobs_dir = root_ + "/blobs/sha256";
  sealed.shard_dir = sealed.blobs_dir + "/" + actual.substr(0, 2);
  sealed.present = Size(digest).has_value();  // Same bytes already stored.
  return sealed;
}

Status BlobStore::Commit(Sealed* blob) {
  if (blob->present) {
    utimensat(AT_FDCWD, blob->target.c_str(), nullptr, 0);  // Reused: young again (Touch).
    return Status::Ok();  // The destructor removes the duplicate upload.
  }
  if (fdatasync(blob->fd) != 0) {
    return Status::IoError(Errno("fsync " + blob->temp_path));
  }
  // Garbage collection removes shard directories it emptied: one may vanish between the mkdir
  // and the rename, so a rename that finds no directory makes it again, once.
  Status s;
  for (int attempt = 0; attempt < 2; attempt++) {
    s = MakeDir(blob->shard_dir);
    if (s.ok() && rename(blob->temp_path.c_str(), blob->target.c_str()) != 0) {
      s = Status::IoError(Errno("rename " + blob->temp_path + " to " + blob->target));
      if (errno == ENOENT) {
        continue;
      }
    }
    break;
  }
  if (!s.ok()) {
    return s;
  }
  blob->committed = true;
  if (Status synced = SyncDir(blob->shard_dir); !synced.ok()) return synced;
  return SyncDir(blob->blobs_dir);
}

Status BlobStore::Finish(const std::string& upload_id, std::string_view digest) {
  Result<Sealed> sealed = Seal(upload_id, digest);
  if (!sealed.ok()) {
    return sealed.status();
  }
  return Commit(&sealed.value());
}

Status BlobStore::Cancel(const std::string& upload_id) {
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return Status::NotFound("upload " + upload_id + " not found");
  unlink(it->second->path.c_str());
  uploads_.erase(it);
  return Status::Ok();
}

void BlobStore::Touch(std::string_view digest) const {
  std::string error;
  if (const std::optional<std::string> hex = ParseDigest(digest, &error)) {
    utimensat(AT_FDCWD, BlobPath(*hex).c_str(), nullptr, 0);
  }
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
