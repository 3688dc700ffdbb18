#include "registry/log_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace cloister::registry {
namespace {

constexpr size_t kTarBlockBytes = 512;
constexpr size_t kArchiveChunkBytes = 64 * 1024;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0750) != 0 && errno != EEXIST) {
    return Status::IoError(Errno("mkdir " + path));
  }
  return Status::Ok();
}

Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return errno == ENOSPC ? Status::NoSpace(Errno("write")) : Status::IoError(Errno("write"));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::string ArchiveName(const std::string& file) {
  return file == kEventLogName ? std::string(kEventLogName) + ".jsonl" : file + ".log";
}

// A gzip stream written to a descriptor as it is produced: one input chunk and one output
// chunk of memory whatever the archive's size.
class GzipWriter {
 public:
  explicit GzipWriter(int fd) : fd_(fd) {
    std::memset(&z_, 0, sizeof(z_));
    ok_ = deflateInit2(&z_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                       Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~GzipWriter() {
    if (ok_) deflateEnd(&z_);
  }
  GzipWriter(const GzipWriter&) = delete;
  GzipWriter& operator=(const GzipWriter&) = delete;

  Status Write(const char* data, size_t size) { return Deflate(data, size, Z_NO_FLUSH); }
  Status Finish() { return Deflate(nullptr, 0, Z_FINISH); }

 private:
  Status Deflate(const char* data, size_t size, int flush) {
    if (!ok_) {
      return Status::IoError("zlib: deflateInit2 failed");
    }
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    z_.avail_in = static_cast<uInt>(size);
    // Bounded: each round either consumes input or produces output, and ends at Z_STREAM_END.
    for (;;) {
      z_.next_out = reinterpret_cast<Bytef*>(out_.data());
      z_.avail_out = static_cast<uInt>(out_.size());
      const int rc = deflate(&z_, flush);
      if (rc == Z_STREAM_ERROR) {
        return Status::IoError("zlib: deflate failed");
      }
      const size_t produced = out_.size() - z_.avail_out;
      if (Status s = WriteAll(fd_, out_.data(), produced); !s.ok()) {
        return s;
      }
      if (flush == Z_FINISH ? rc == Z_STREAM_END : z_.avail_out != 0) {
        return Status::Ok();
      }
    }
  }

  int fd_;
  z_stream z_;
  bool ok_ = false;
  std::array<char, kArchiveChunkBytes> out_;
};

void Octal(char* field, size_t width, uint64_t value) {
  // width - 1 digits and a NUL, as ustar wants.
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  field[width - 1] = '\0';
}

// One ustar header. name "<host>/<service>.log" is split at its '/' into prefix and name.
std::array<char, kTarBlockBytes> TarHeader(const std::string& path, uint64_t size,
                                           int64_t mtime_s) {
  std::array<char, kTarBlockBytes> h{};
  const size_t slash = path.find('/');
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::string prefix = slash == std::string::npos ? "" : path.substr(0, slash);
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  Octal(h.data() + 100, 8, 0640);
  Octal(h.data() + 108, 8, 0);
  Octal(h.data() + 116, 8, 0);
  if (size < (uint64_t{1} << 33)) {
    Octal(h.data() + 124, 12, size);
  } else {
    // GNU base-256: a size past ustar's 8 GiB.
    h[124] = static_cast<char>(0x80);
    for (int i = 11; i >= 1; i--, size >>= 8) {
      h[124 + i] = static_cast<char>(size & 0xff);
    }
  }
  Octal(h.data() + 136, 12, static_cast<uint64_t>(std::max<int64_t>(mtime_s, 0)));
  std::memset(h.data() + 148, ' ', 8);
  h[156] = '0';
  std::memcpy(h.data() + 257, "ustar", 6);
  std::memcpy(h.data() + 263, "00", 2);
  std::memcpy(h.data() + 345, prefix.data(), std::min<size_t>(prefix.size(), 155));
  unsigned sum = 0;
  for (char c : h) {
    sum += static_cast<unsigned char>(c);
  }
  Octal(h.data() + 148, 7, sum);
  h[155] = ' ';
  return h;
}

// One file into the archive: header, exactly size bytes of it (the size it had when listed:
// the file only grows), padding to the block.
Status ArchiveFile(GzipWriter* gz, const std::string& root, const LogStore::FileInfo& info,
                   std::vector<char>* buffer) {
  const std::string path = info.file == kEventLogName
                               ? root + "/" + std::string(kEventLogName) + ".jsonl"
                               : root + "/hosts/" + info.file + ".log";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IoError(Errno("open " + path));
  }
  struct stat st {};
  ::fstat(fd, &st);
  const auto header = TarHeader(ArchiveName(info.file), info.size, st.st_mtim.tv_sec);
  Status s = gz->Write(header.data(), header.size());
  uint64_t done = 0;
  while (s.ok() && done < info.size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer->size(), info.size - done));
    const ssize_t n = ::pread(fd, buffer->data(), want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      s = Status::IoError(Errno("read " + path));
      break;
    }
    s = gz->Write(buffer->data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
  }
  ::close(fd);
  const size_t pad = static_cast<size_t>((kTarBlockBytes - info.size % kTarBlockBytes) %
                                         kTarBlockBytes);
  if (s.ok() && pad > 0) {
    const std::array<char, kTarBlockBytes> zeros{};
    s = gz->Write(zeros.data(), pad);
  }
  return s;
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// Names of the entries of dir (no "." or ".."), sorted; at most kArchiveFilesMax.
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return names;
  }
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name != "." && name != ".." && names.size() < kArchiveFilesMax) {
      names.push_back(name);
    }
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

Result<std::unique_ptr<LogStore>> LogStore::Open(const std::string& root) {
  if (Status s = MakeDir(root); !s.ok()) {
    return s;
  }
  if (Status s = MakeDir(root + "/hosts"); !s.ok()) {
    return s;
  }
  return std::unique_ptr<LogStore>(new LogStore(root));
}

std::string LogStore::NameProblem(std::string_view name) {
  if (name.empty() || name.size() > kLogNameBytesMax) {
    return "must be 1 to " + std::to_string(kLogNameBytesMax) + " bytes";
  }
  if (name.front() == '.') {
    return "must not start with '.'";
  }
  const bool bad = std::any_of(name.begin(), name.end(), [](char c) {
    return !(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
             c == '@');
  });
  return bad ? "may hold only letters, digits, '.', '_', '-' and '@'" : "";
}

Status LogStore::AppendTo(const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return Status::IoError(Errno("open " + path));
  }
  Status s;
  {
    // One writer at a time: rows of two requests never interleave within a file.
    std::lock_guard<std::mutex> lock(append_mutex_);
    s = WriteAll(fd, bytes.data(), bytes.size());
  }
  if (s.ok() && ::fdatasync(fd) != 0) {
    s = Status::IoError(Errno("fdatasync " + path));
  }
  ::close(fd);
  return s;
}

Status LogStore::Append(const std::string& host, const std::string& service,
                        std::string_view rows) {
  if (!NameProblem(host).empty() || !NameProblem(service).empty()) {
    return Status::InvalidArgument("bad host or service name");
  }
  const std::string dir = root_ + "/hosts/" + host;
  if (Status s = MakeDir(dir); !s.ok()) {
    return s;
  }
  std::string owned;
  if (!rows.empty() && rows.back() != '\n') {
    owned.reserve(rows.size() + 1);
    owned.append(rows).push_back('\n');
    rows = owned;
  }
  return AppendTo(dir + "/" + service + ".log", rows);
}

Status LogStore::AppendEvents(const std::vector<std::string>& lines) {
  std::string bytes;
  for (const std::string& line : lines) {
    bytes.append(line).push_back('\n');
  }
  return AppendTo(root_ + "/" + std::string(kEventLogName) + ".jsonl", bytes);
}

Result<std::string> LogStore::PathOf(std::string_view file) const {
  std::string path;
  if (file == kEventLogName) {
    path = root_ + "/" + std::string(kEventLogName) + ".jsonl";
  } else {
    const size_t slash = file.find('/');
    if (slash == std::string_view::npos || !NameProblem(file.substr(0, slash)).empty() ||
        !NameProblem(file.substr(slash + 1)).empty()) {
      return Status::InvalidArgument("file must be <host>/<service> or eventLog");
    }
    path = root_ + "/hosts/" + std::string(file) + ".log";
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return Status::NotFound("no such log file");
  }
  return path;
}

std::vector<LogStore::FileInfo> LogStore::List(const std::string& host,
                                               const std::string& service) const {
  std::vector<FileInfo> files;
  const std::string events = root_ + "/" + std::string(kEventLogName) + ".jsonl";
  const bool events_match = (host.empty() && service.empty()) || service == kEventLogName;
  if (events_match && ::access(events.c_str(), R_OK) == 0) {
    files.push_back({std::string(kEventLogName), FileSize(events)});
  }
  for (const std::string& h : Entries(root_ + "/hosts")) {
    if ((!host.empty() && h != host) || !NameProblem(h).empty()) {
      continue;
    }
    for (const std::string& entry : Entries(root_ + "/hosts/" + h)) {
      if (!entry.ends_with(".log") || files.size() >= kArchiveFilesMax) {
        continue;
      }
      const std::string s = entry.substr(0, entry.size() - 4);
      if ((service.empty() || s == service) && NameProblem(s).empty()) {
        files.push_back({h + "/" + s, FileSize(root_ + "/hosts/" + h + "/" + entry)});
      }
    }
  }
  return files;
}

Status LogStore::WriteArchive(const std::string& root, const std::vector<FileInfo>& files,
                              int fd) {
  GzipWriter gz(fd);
  std::vector<char> buffer(kArchiveChunkBytes);
  for (const FileInfo& info : files) {
    if (Status s = ArchiveFile(&gz, root, info, &buffer); !s.ok()) {
      return s;
    }
  }
  // The end of a tar archive: two zero blocks.
  const std::array<char, 2 * kTarBlockBytes> end{};
  if (Status s = gz.Write(end.data(), end.size()); !s.ok()) {
    return s;
  }
  return gz.Finish();
}

}  // namespace cloister::registry
