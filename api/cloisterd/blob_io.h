// Streaming a registry blob to and from a connection, shared by the OCI data plane (oci_api.h)
// and the central file server (file_api.h).
//
//   FileSource  a response body read from a file (or a range of it) with pread, or sent with
//               sendfile(2) over plain TCP: no buffer of its own, so a download of any size costs
//               bounded memory. It owns the descriptor (closed when the response is released).
//   UploadSink  a request body appended to a BlobStore upload as it arrives; the first error is
//               kept for the handler to report (the server stops reading the body on it).
//
// Threading: the event-loop thread (the BlobStore is not synchronised).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "api/http_types.h"
#include "log/status.h"
#include "registry/blob_store.h"

namespace cloister::cloisterd {

// Runs work on another thread, then after on the loop's (the loop's thread pool).
using Offload = std::function<void(std::function<void()> work, std::function<void()> after)>;

// Commits sealed (fsync, rename: BlobStore::Commit) through offload (at once, here, when it is
// empty), then calls done with the outcome on the loop thread.
void CommitOffLoop(const Offload& offload, registry::BlobStore::Sealed sealed,
                   std::function<void(const Status&)> done);

class FileSource final : public api::BodySource {
 public:
  // fd: open for reading, owned from here on. Sends length bytes from offset.
  FileSource(int fd, uint64_t offset, uint64_t length)
      : fd_(fd), offset_(offset), length_(length) {}
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return length_; }
  int64_t Read(char* buffer, size_t max) override;
  int File(uint64_t* offset) const override {
    *offset = offset_ + done_;
    return fd_;
  }
  void Advance(uint64_t bytes) override;

 private:
  int fd_;
  uint64_t offset_;
  uint64_t length_;
  uint64_t done_ = 0;
};

class UploadSink final : public api::BodySink {
 public:
  // Appends to upload_id of blobs, whose size is now offset. blobs must outlive the sink.
  UploadSink(registry::BlobStore* blobs, std::string upload_id, uint64_t offset)
      : blobs_(blobs), upload_id_(std::move(upload_id)), offset_(offset) {}
  bool Write(std::string_view bytes) override;
  const Status& error() const { return error_; }
  const std::string& upload_id() const { return upload_id_; }
  uint64_t size() const { return offset_; }

 private:
  registry::BlobStore* blobs_;
  std::string upload_id_;
  uint64_t offset_;
  Status error_;
};

}  // namespace cloister::cloisterd
