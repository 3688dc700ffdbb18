#include "log/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace cloister::log {

Status WriteFileAtomic(const std::string& path, const std::string& text, unsigned mode) {
  const std::string temp = path + ".tmp";
  const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return Status::IoError("open " + temp + ": " + std::strerror(errno));
  }
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                       fsync(fd) == 0;
  const int saved_errno = errno;
  close(fd);
  if (!written) {
    return Status::IoError("write " + temp + ": " + std::strerror(saved_errno));
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return Status::IoError("rename " + temp + " to " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace cloister::log
