// BlobStore: the registry's content-addressed blobs on disk (issue 8, OCI Distribution data
// plane), outside the event log.
//
// Layout under root:
//   blobs/sha256/<first two hex>/<64 hex>   one file per blob, named by the SHA-256 of its bytes
//   uploads/<upload id>                     uploads in progress (invisible as blobs)
//
// An upload is started, appended to in order (OCI's chunked PATCH: each chunk must start where
// the last ended), and finished with the digest the client claims. Finish hashes nothing again:
// the SHA-256 is computed as the bytes arrive. A digest that does not match is refused and the
// upload is removed, so nothing is kept. A match is fsynced, renamed into place and the
// directory fsynced, so a blob that is visible is complete and durable; a crash at any point
// before leaves at most a file under uploads/, which Open removes. Bytes go straight to the
// file: memory does not grow with the blob's size (the caller streams chunks).
//
// Thread-safety: none; the registry uses one store from its loop thread. Blob files are never
// rewritten, so readers holding one open (a pull streaming while the blob is deleted) finish.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "log/status.h"

namespace cloister::registry {

// "sha256:<64 lowercase hex>", or nullopt with why in *error.
std::optional<std::string> ParseDigest(std::string_view digest, std::string* error);

class BlobStore {
 public:
  // Creates the directories if needed and removes uploads a previous process left behind.
  static Result<std::unique_ptr<BlobStore>> Open(const std::string& root);
  ~BlobStore();
  BlobStore(const BlobStore&) = delete;
  BlobStore& operator=(const BlobStore&) = delete;

  // A new upload; its id (random, URL-safe).
  Result<std::string> StartUpload();
  // Appends bytes at offset, which must be the upload's current size (kInvalidArgument naming
  // both otherwise: OCI answers 416). Returns the new size.
  Result<uint64_t> Append(const std::string& upload_id, uint64_t offset, std::string_view bytes);
  // "sha256:<hex>" of the bytes received so far (the upload carries on); kNotFound for an
  // unknown upload. For a client that names no digest: Seal with this one.
  Result<std::string> UploadDigest(const std::string& upload_id) const;
  // The bytes received so far; kNotFound for an unknown upload.
  Result<uint64_t> UploadSize(const std::string& upload_id) const;
  // Completes the upload as blob `digest` ("sha256:..."). A mismatch is kInvalidArgument
  // ("digest mismatch: ...") and the upload is gone. A blob already present is kept as it is.
  // Finish is Seal then Commit.
  Status Finish(const std::string& upload_id, std::string_view digest);

  // An upload whose bytes matched their digest, detached from the store, not yet durable nor
  // visible. Commit it (on any thread), or drop it: its destructor removes the file.
  struct Sealed {
    Sealed() = default;
    Sealed(Sealed&& other) noexcept;
    Sealed& operator=(Sealed&&) = delete;
    Sealed(const Sealed&) = delete;
    ~Sealed();

    int fd = -1;
    std::string temp_path;  // Under uploads/; removed unless committed.
    std::string target;     // blobs/sha256/<aa>/<hex>
    std::string shard_dir;
    std::string blobs_dir;
    bool present = false;   // The store held these bytes already: nothing to commit.
    bool committed = false;
  };
  // The first half of Finish, on the store's thread: checks the digest (kInvalidArgument and the
  // upload is gone on a mismatch) and detaches the upload.
  Result<Sealed> Seal(const std::string& upload_id, std::string_view digest);
  // The second half, on any thread (it touches only the blob's files): fsync, rename into place,
  // fsync the directories. Concurrent commits overlap their fsyncs, which the file system's
  // journal groups: many small blobs commit together rather than one after another.
  static Status Commit(Sealed* blob);
  // Abandons an upload (OCI DELETE of an upload session).
  Status Cancel(const std::string& upload_id);

  // The blob's size, or nullopt if the store does not hold it.
  std::optional<uint64_t> Size(std::string_view digest) const;
  // The blob's path, for streaming it out (open it, then read at will).
  Result<std::string> Path(std::string_view digest) const;
  // Marks a held blob as just used (its file's times set to now): garbage collection spares
  // blobs younger than its grace period, so a push that reuses an old unreferenced blob (the
  // same bytes uploaded again, a mount, a manifest naming it) keeps it until the manifest lands.
  void Touch(std::string_view digest) const;

  // Removes a blob (garbage collection); kNotFound if absent.
  Status Delete(std::string_view digest);

  size_t uploads_in_progress() const { return uploads_.size(); }

 private:
  struct Upload;
  explicit BlobStore(std::string root);
  std::string BlobPath(const std::string& hex) const;

  std::string root_;
  std::map<std::string, std::unique_ptr<Upload>> uploads_;
};

}  // namespace cloister::registry
