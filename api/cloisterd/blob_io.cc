#include "api/cloisterd/blob_io.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>

namespace cloister::cloisterd {

void CommitOffLoop(const Offload& offload, registry::BlobStore::Sealed sealed,
                   std::function<void(const Status&)> done) {
  struct Job {
    registry::BlobStore::Sealed blob;
    Status status;
  };
  auto job = std::make_shared<Job>(Job{std::move(sealed), Status::Ok()});
  auto work = [job] { job->status = registry::BlobStore::Commit(&job->blob); };
  auto after = [job, done = std::move(done)] { done(job->status); };
  if (offload) {
    offload(std::move(work), std::move(after));
  } else {
    work();
    after();
  }
}

FileSource::~FileSource() { ::close(fd_); }

int64_t FileSource::Read(char* buffer, size_t max) {
  const uint64_t left = length_ - done_;
  if (left == 0) {
    return 0;
  }
  const size_t want = static_cast<size_t>(std::min<uint64_t>(left, max));
  ssize_t got;
  do {
    got = ::pread(fd_, buffer, want, static_cast<off_t>(offset_ + done_));
  } while (got < 0 && errno == EINTR);
  if (got <= 0) {
    return -1;  // An error, or the file is shorter than it was: the response cannot finish.
  }
  done_ += static_cast<uint64_t>(got);
  return got;
}

void FileSource::Advance(uint64_t bytes) { done_ += std::min(bytes, length_ - done_); }

bool UploadSink::Write(std::string_view bytes) {
  Result<uint64_t> size = blobs_->Append(upload_id_, offset_, bytes);
  if (!size.ok()) {
    error_ = size.status();
    return false;
  }
  offset_ = *size;
  return true;
}

}  // namespace cloister::cloisterd
