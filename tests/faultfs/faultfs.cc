// libfaultfs.so: an LD_PRELOAD shim that makes chosen file-system calls on the event log's data
// file fail, to test the log's failure policy (RELIABILITY.md T19, T20, M3).
//
// It interposes fdatasync, fsync, msync, pwrite, pwrite64, pwritev, write and writev and passes
// every call through to libc (found with dlsym(RTLD_NEXT, ...)) except the ones chosen to fail,
// which return -1 with errno set and do nothing. A call is a candidate when it belongs to the
// class FAULTFS_OP names and its file descriptor's path (readlink of /proc/self/fd/N) ends with
// FAULTFS_FILE. Candidates are numbered 1, 2, ... from the moment the shim is armed; numbers
// FAULTFS_FAIL_AT .. FAULTFS_FAIL_AT + FAULTFS_FAIL_COUNT - 1 fail, and later ones succeed again
// (the disk was repaired, or space was freed).
//
// Environment:
//   FAULTFS_OP          fdatasync | fsync | msync | write | write_data | write_meta
//                       "write" (alias "pwrite") is any write-family call; "write_meta" only
//                       writes that start in the first two pages of the file (LMDB's two meta
//                       pages); "write_data" only writes past them (B-tree pages). msync has no
//                       fd: every call is a candidate. Unset: the shim only passes calls through.
//   FAULTFS_FAIL_AT     k >= 1, the first candidate to fail. 0 or unset: none fails.
//   FAULTFS_FAIL_COUNT  How many consecutive candidates fail (default 1).
//   FAULTFS_ERRNO       EIO | ENOSPC | EDQUOT, or a number (default EIO).
//   FAULTFS_FILE        Path suffix of the file to fail (default "data.mdb").
//   FAULTFS_ARMED       "1": count from process start. Otherwise counting starts when the program
//                       calls faultfs_arm() (found with dlsym(RTLD_DEFAULT, "faultfs_arm")), so
//                       that the calls LMDB makes while opening and initialising the log are not
//                       counted.
//   FAULTFS_REPORT      A file to which each injected failure appends one line:
//                       "<op> <candidate number> <errno> <CLOCK_MONOTONIC ns>".
//
// How LMDB 0.9.24 writes (strace -f of fault_child, no MDB_WRITEMAP): each commit writes its dirty
// B-tree pages to data.mdb with pwrite (one page) or lseek + writev (a run of pages), then calls
// fdatasync(data.mdb) once, then writes the new meta page with pwrite through a second descriptor
// of data.mdb opened with O_DSYNC. msync and fsync are not called (msync only with
// MDB_WRITEMAP); they are interposed so that a configuration that uses them can be tested too.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>

namespace {

enum class Op { kNone, kFdatasync, kFsync, kMsync, kWrite, kWriteData, kWriteMeta };

// The class of an intercepted call.
enum class Call { kFdatasync, kFsync, kMsync, kWrite };

struct Config {
  Op op = Op::kNone;
  uint64_t fail_at = 0;
  uint64_t fail_count = 1;
  int error = EIO;
  char file[256] = "data.mdb";
  char report[1024] = "";
};

std::atomic<bool> g_armed{false};
std::atomic<uint64_t> g_candidates{0};

template <typename Fn>
Fn Next(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) {
    static const char kMessage[] = "faultfs: dlsym(RTLD_NEXT) failed\n";
    (void)!::syscall(SYS_write, 2, kMessage, sizeof(kMessage) - 1);
    abort();
  }
  return reinterpret_cast<Fn>(fn);
}

using WriteFn = ssize_t (*)(int, const void*, size_t);

ssize_t RealWrite(int fd, const void* buf, size_t n) {
  static WriteFn real = Next<WriteFn>("write");
  return real(fd, buf, n);
}

Op ParseOp(const char* value) {
  if (value == nullptr) return Op::kNone;
  if (strcmp(value, "fdatasync") == 0) return Op::kFdatasync;
  if (strcmp(value, "fsync") == 0) return Op::kFsync;
  if (strcmp(value, "msync") == 0) return Op::kMsync;
  if (strcmp(value, "write") == 0 || strcmp(value, "pwrite") == 0) return Op::kWrite;
  if (strcmp(value, "write_data") == 0) return Op::kWriteData;
  if (strcmp(value, "write_meta") == 0) return Op::kWriteMeta;
  static const char kMessage[] = "faultfs: unknown FAULTFS_OP\n";
  (void)!RealWrite(2, kMessage, sizeof(kMessage) - 1);
  abort();
}

int ParseErrno(const char* value) {
  if (value == nullptr || strcmp(value, "EIO") == 0) return EIO;
  if (strcmp(value, "ENOSPC") == 0) return ENOSPC;
  if (strcmp(value, "EDQUOT") == 0) return EDQUOT;
  return atoi(value);
}

Config LoadConfig() {
  Config config;
  config.op = ParseOp(getenv("FAULTFS_OP"));
  if (const char* v = getenv("FAULTFS_FAIL_AT")) config.fail_at = strtoull(v, nullptr, 10);
  if (const char* v = getenv("FAULTFS_FAIL_COUNT")) config.fail_count = strtoull(v, nullptr, 10);
  config.error = ParseErrno(getenv("FAULTFS_ERRNO"));
  if (const char* v = getenv("FAULTFS_FILE")) snprintf(config.file, sizeof(config.file), "%s", v);
  if (const char* v = getenv("FAULTFS_REPORT")) {
    snprintf(config.report, sizeof(config.report), "%s", v);
  }
  const char* armed = getenv("FAULTFS_ARMED");
  if (armed != nullptr && strcmp(armed, "1") == 0) {
    g_armed.store(true);
  }
  return config;
}

const Config& GetConfig() {
  static const Config config = LoadConfig();
  return config;
}

bool PathMatches(int fd, const Config& config) {
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  char path[4096];
  ssize_t n = readlink(link, path, sizeof(path) - 1);
  if (n <= 0) {
    return false;
  }
  path[n] = '\0';
  size_t suffix = strlen(config.file);
  return static_cast<size_t>(n) >= suffix && strcmp(path + n - suffix, config.file) == 0;
}

bool OpMatches(Call call, int fd, off_t offset, const Config& config) {
  switch (config.op) {
    case Op::kNone: return false;
    case Op::kFdatasync: return call == Call::kFdatasync;
    case Op::kFsync: return call == Call::kFsync;
    case Op::kMsync: return call == Call::kMsync;
    case Op::kWrite: return call == Call::kWrite;
    case Op::kWriteData:
    case Op::kWriteMeta: {
      if (call != Call::kWrite) return false;
      if (offset < 0) offset = lseek(fd, 0, SEEK_CUR);  // write/writev: the file position.
      bool meta = offset >= 0 && offset < 2 * sysconf(_SC_PAGESIZE);
      return config.op == Op::kWriteMeta ? meta : !meta;
    }
  }
  return false;
}

void Report(const Config& config, const char* name, uint64_t number) {
  if (config.report[0] == '\0') {
    return;
  }
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  char line[128];
  int len = snprintf(line, sizeof(line), "%s %llu %d %lld\n", name,
                     static_cast<unsigned long long>(number), config.error,
                     static_cast<long long>(now.tv_sec) * 1000000000LL + now.tv_nsec);
  int fd = open(config.report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    (void)!RealWrite(fd, line, static_cast<size_t>(len));
    close(fd);
  }
}

// Decides whether this call fails. On true, errno is set and the caller returns -1; on false,
// errno is as the caller left it.
bool ShouldFail(Call call, const char* name, int fd, off_t offset) {
  const Config& config = GetConfig();
  if (config.op == Op::kNone || config.fail_at == 0 || !g_armed.load()) {
    return false;
  }
  const int saved_errno = errno;
  bool candidate = (call == Call::kMsync || PathMatches(fd, config)) &&
                   OpMatches(call, fd, offset, config);
  errno = saved_errno;
  if (!candidate) {
    return false;
  }
  uint64_t number = g_candidates.fetch_add(1) + 1;
  if (number < config.fail_at || number - config.fail_at >= config.fail_count) {
    return false;
  }
  Report(config, name, number);
  errno = config.error;
  return true;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void faultfs_arm() {
  (void)GetConfig();
  g_armed.store(true);
}

__attribute__((visibility("default"))) int fdatasync(int fd) {
  static auto real = Next<int (*)(int)>("fdatasync");
  if (ShouldFail(Call::kFdatasync, "fdatasync", fd, 0)) return -1;
  return real(fd);
}

__attribute__((visibility("default"))) int fsync(int fd) {
  static auto real = Next<int (*)(int)>("fsync");
  if (ShouldFail(Call::kFsync, "fsync", fd, 0)) return -1;
  return real(fd);
}

__attribute__((visibility("default"))) int msync(void* addr, size_t length, int flags) {
  static auto real = Next<int (*)(void*, size_t, int)>("msync");
  if (ShouldFail(Call::kMsync, "msync", -1, 0)) return -1;
  return real(addr, length, flags);
}

__attribute__((visibility("default"))) ssize_t pwrite(int fd, const void* buf, size_t n,
                                                      off_t offset) {
  static auto real = Next<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite");
  if (ShouldFail(Call::kWrite, "pwrite", fd, offset)) return -1;
  return real(fd, buf, n, offset);
}

__attribute__((visibility("default"))) ssize_t pwrite64(int fd, const void* buf, size_t n,
                                                        off64_t offset) {
  static auto real = Next<ssize_t (*)(int, const void*, size_t, off64_t)>("pwrite64");
  if (ShouldFail(Call::kWrite, "pwrite64", fd, offset)) return -1;
  return real(fd, buf, n, offset);
}

__attribute__((visibility("default"))) ssize_t pwritev(int fd, const struct iovec* iov, int count,
                                                       off_t offset) {
  static auto real = Next<ssize_t (*)(int, const struct iovec*, int, off_t)>("pwritev");
  if (ShouldFail(Call::kWrite, "pwritev", fd, offset)) return -1;
  return real(fd, iov, count, offset);
}

__attribute__((visibility("default"))) ssize_t write(int fd, const void* buf, size_t n) {
  if (ShouldFail(Call::kWrite, "write", fd, -1)) return -1;
  return RealWrite(fd, buf, n);
}

__attribute__((visibility("default"))) ssize_t writev(int fd, const struct iovec* iov, int count) {
  static auto real = Next<ssize_t (*)(int, const struct iovec*, int)>("writev");
  if (ShouldFail(Call::kWrite, "writev", fd, -1)) return -1;
  return real(fd, iov, count);
}

}  // extern "C"
