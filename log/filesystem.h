// Which filesystems the event log refuses. Internal to log/; exposed for its tests.
#pragma once

#include <string>

#include "log/status.h"

namespace cloister::log {

// The name of the network or shared filesystem with statfs magic number f_type, or nullptr for
// a local one. Network filesystems break LMDB's locking and mmap coherency ("Do not use LMDB
// databases on remote filesystems", lmdb.h). FUSE counts as local: it is how fault-injecting
// test filesystems mount, and its magic number cannot tell them from remote ones.
const char* NetworkFilesystemName(unsigned long f_type);

// OK when dir is on a local filesystem; kUnsupported naming the filesystem otherwise.
Status CheckLocalFilesystem(const std::string& dir);

}  // namespace cloister::log
