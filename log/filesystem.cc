#include "log/filesystem.h"

#include <errno.h>
#include <sys/vfs.h>

#include <cstring>

namespace cloister::log {

const char* NetworkFilesystemName(unsigned long f_type) {
  struct Remote {
    unsigned long magic;
    const char* name;
  };
  static constexpr Remote kRemote[] = {
      {0x6969, "NFS"},        {0x517B, "SMB"},       {0xFF534D42, "CIFS"},
      {0xFE534D42, "SMB2"},   {0x73757245, "Coda"},  {0x5346414F, "AFS"},
      {0x00C36400, "CephFS"}, {0x01021997, "9P"},    {0x47504653, "GPFS"},
      {0x013111A8, "IBRIX"},  {0x0BD00BD0, "Lustre"},
  };
  for (const Remote& remote : kRemote) {
    if (f_type == remote.magic) {
      return remote.name;
    }
  }
  return nullptr;
}

Status CheckLocalFilesystem(const std::string& dir) {
  struct statfs fs;
  if (statfs(dir.c_str(), &fs) != 0) {
    return Status::IoError("statfs " + dir + ": " + std::strerror(errno));
  }
  const char* remote = NetworkFilesystemName(static_cast<unsigned long>(fs.f_type));
  if (remote != nullptr) {
    return Status::Unsupported(dir + " is on a network filesystem (" + remote +
                               "); the event log needs a local filesystem");
  }
  return Status::Ok();
}

}  // namespace cloister::log
