#include "tools/registry_gc.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "log/log.h"
#include "log/snapshot_store.h"
#include "reducers/rebuild.h"

namespace cloister::tools {
namespace {

constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerS = 1'000'000'000;
constexpr int64_t kNsPerM = 60 * kNsPerS;
constexpr int64_t kNsPerH = 60 * kNsPerM;
constexpr int64_t kNsPerD = 24 * kNsPerH;

bool IsLowerHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string ErrnoText(const std::string& what, int error) {
  return what + ": " + std::strerror(error);
}

int64_t WallNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerS + ts.tv_nsec;
}

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * kNsPerS + st.st_mtim.tv_nsec;
}

// A directory descriptor, closed on destruction.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  int get() const { return fd_; }

 private:
  int fd_;
};

// The names in the directory open at dir_fd (the descriptor stays open), "." and ".." left out.
Result<std::vector<std::string>> ListDirectory(int dir_fd, const std::string& path) {
  const int copy = dup(dir_fd);
  if (copy < 0) {
    return Status::IoError(ErrnoText("dup " + path, errno));
  }
  DIR* dir = fdopendir(copy);
  if (dir == nullptr) {
    const int error = errno;
    close(copy);
    return Status::IoError(ErrnoText("read " + path, error));
  }
  rewinddir(dir);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
    errno = 0;
  }
  const int error = errno;
  closedir(dir);
  if (error != 0) {
    return Status::IoError(ErrnoText("read " + path, error));
  }
  std::sort(names.begin(), names.end());
  return names;
}

struct FoundBlob {
  std::string shard;  // "ab".
  std::string hex;    // 64 hex digits.
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  ino_t inode = 0;
};

struct Walk {
  std::vector<FoundBlob> blobs;
  std::vector<std::string> skipped;
};

// Every blob-shaped regular file under the sha256 directory open at root_fd.
Result<Walk> WalkBlobs(int root_fd, const std::string& root_path) {
  Walk walk;
  Result<std::vector<std::string>> shards = ListDirectory(root_fd, root_path);
  if (!shards.ok()) {
    return shards.status();
  }
  for (const std::string& shard : *shards) {
    const std::string shard_path = root_path + "/" + shard;
    struct stat st {};
    if (fstatat(root_fd, shard.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        continue;  // Removed meanwhile.
      }
      return Status::IoError(ErrnoText("stat " + shard_path, errno));
    }
    if (!S_ISDIR(st.st_mode) || shard.size() != 2 || !IsLowerHex(shard)) {
      walk.skipped.push_back(shard_path);
      continue;
    }
    Fd shard_fd(openat(root_fd, shard.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (shard_fd.get() < 0) {
      if (errno == ENOENT) {
        continue;
      }
      return Status::IoError(ErrnoText("open " + shard_path, errno));
    }
    Result<std::vector<std::string>> names = ListDirectory(shard_fd.get(), shard_path);
    if (!names.ok()) {
      return names.status();
    }
    for (const std::string& name : *names) {
      const std::string path = shard_path + "/" + name;
      struct stat file {};
      if (fstatat(shard_fd.get(), name.c_str(), &file, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
          continue;
        }
        return Status::IoError(ErrnoText("stat " + path, errno));
      }
      if (!S_ISREG(file.st_mode) || name.size() != 64 || !IsLowerHex(name) ||
          name.compare(0, 2, shard) != 0) {
        walk.skipped.push_back(path);
        continue;
      }
      walk.blobs.push_back(
          {shard, name, static_cast<uint64_t>(file.st_size), MtimeNs(file), file.st_ino});
    }
  }
  return walk;
}

// The live set, kept up to date with the log while blobs are deleted.
class LiveSet {
 public:
  LiveSet(const log::Log* log, reducers::Views views) : log_(log), views_(std::move(views)) {
    Recompute();
  }

  // Applies the events appended since the last look, if any.
  Status Refresh() {
    const log::Head head = log_->head();
    if (head.seq == views_.seq) {
      return Status::Ok();
    }
    Status applied = reducers::ApplyTail(*log_, head.seq, &views_);
    if (!applied.ok()) {
      return applied;
    }
    Recompute();
    return Status::Ok();
  }

  bool Contains(const std::string& digest) const { return live_.count(digest) != 0; }
  size_t size() const { return live_.size(); }
  uint64_t seq() const { return views_.seq; }

 private:
  void Recompute() {
    const std::vector<std::string> live = LiveDigests(views_);
    live_ = std::set<std::string>(live.begin(), live.end());
  }

  const log::Log* log_;
  reducers::Views views_;
  std::set<std::string> live_;
};

}  // namespace

Result<int64_t> ParseDuration(std::string_view text) {
  const std::string shown(text.substr(0, 64));
  if (text == "0") {
    return int64_t{0};
  }
  if (text.empty()) {
    return Status::InvalidArgument("empty duration (e.g. 1h, 30m, 90s, 2h30m)");
  }
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    const size_t digits_start = i;
    int64_t value = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (value > (std::numeric_limits<int64_t>::max() - 9) / 10) {
        return Status::InvalidArgument("duration " + shown + " is too long");
      }
      value = value * 10 + (text[i] - '0');
      i++;
    }
    if (i == digits_start) {
      return Status::InvalidArgument("bad duration " + shown +
                                     ": expected <number><unit> with units d, h, m, s, ms "
                                     "(e.g. 1h, 30m, 2h30m)");
    }
    int64_t unit = 0;
    if (text.substr(i, 2) == "ms") {
      unit = kNsPerMs;
      i += 2;
    } else if (i < text.size() && text[i] == 'd') {
      unit = kNsPerD;
      i++;
    } else if (i < text.size() && text[i] == 'h') {
      unit = kNsPerH;
      i++;
    } else if (i < text.size() && text[i] == 'm') {
      unit = kNsPerM;
      i++;
    } else if (i < text.size() && text[i] == 's') {
      unit = kNsPerS;
      i++;
    } else {
      return Status::InvalidArgument("bad duration " + shown +
                                     ": each number needs a unit: d, h, m, s or ms "
                                     "(e.g. 1h, 30m, 2h30m)");
    }
    if (value > std::numeric_limits<int64_t>::max() / unit ||
        total > std::numeric_limits<int64_t>::max() - value * unit) {
      return Status::InvalidArgument("duration " + shown + " is too long");
    }
    total += value * unit;
  }
  return total;
}

std::string FormatDuration(int64_t ns) {
  if (ns < 0) {
    return "-" + FormatDuration(ns == std::numeric_limits<int64_t>::min()
                                    ? std::numeric_limits<int64_t>::max()
                                    : -ns);
  }
  if (ns % kNsPerS != 0 && ns < 60 * kNsPerS) {
    return std::to_string(ns / kNsPerMs) + "ms";
  }
  int64_t s = ns / kNsPerS;
  if (s == 0) {
    return "0s";
  }
  std::string out;
  const std::pair<int64_t, const char*> units[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
  for (const auto& [size, name] : units) {
    if (s >= size) {
      out += std::to_string(s / size) + name;
      s %= size;
    }
  }
  return out;
}

std::vector<std::string> LiveDigests(const reducers::Views& views) {
  std::set<std::string> live;
  for (const auto& [id, t] : views.templates.templates) {
    for (const auto& [digest, manifest] : t.manifests) {
      live.insert(digest);
      for (const reducers::RegistryReference& ref : manifest.references) {
        live.insert(ref.digest);
      }
    }
    for (const reducers::TemplateTag& tag : t.tags) {
      if (!tag.digest.empty()) {
        live.insert(tag.digest);
      }
    }
  }
  // The file server's files are blobs too (PUT /file).
  for (const auto& [path, file] : views.files.files) {
    live.insert(file.digest);
  }
  return {live.begin(), live.end()};
}

Result<GcReport> CollectRegistryGarbage(const GcOptions& options,
                                        const std::function<void(const GcBlob&)>& on_blob) {
  if (options.data_dir.empty()) {
    return Status::InvalidArgument("--data is empty");
  }
  if (options.grace_ns < 0) {
    return Status::InvalidArgument("the grace period is negative");
  }
  log::Options log_options;
  log_options.dir = options.data_dir;
  log_options.read_only = true;
  Result<std::unique_ptr<log::Log>> log = log::Log::Open(log_options);
  if (!log.ok()) {
    return log.status();
  }
  // Snapshots only save time: without a usable store the views are replayed from seq 1.
  std::unique_ptr<log::SnapshotStore> snapshots;
  if (Result<std::unique_ptr<log::SnapshotStore>> store =
          log::SnapshotStore::Open(options.data_dir, /*read_only=*/true);
      store.ok()) {
    snapshots = std::move(store.value());
  }
  // The live set first, then the walk: a blob whose manifest is recorded after this point is
  // either young (kept by the grace period) or caught by the re-check before its delete.
  Result<reducers::Views> views = reducers::Rebuild(**log, snapshots.get());
  if (!views.ok()) {
    return views.status();
  }
  LiveSet live(log->get(), std::move(views.value()));

  GcReport report;
  const std::string root_path = options.data_dir + "/registry/blobs/sha256";
  Fd root_fd(open(root_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root_fd.get() < 0) {
    if (errno == ENOENT) {  // A registry that never stored a blob.
      report.seq = live.seq();
      report.live_digests = live.size();
      return report;
    }
    return Status::IoError(ErrnoText("open " + root_path, errno));
  }
  Result<Walk> walk = WalkBlobs(root_fd.get(), root_path);
  if (!walk.ok()) {
    return walk.status();
  }
  report.skipped = std::move(walk->skipped);
  const int64_t now_ns = options.now_ns != 0 ? options.now_ns : WallNowNs();

  // Candidates by the live set taken before the walk.
  std::vector<std::pair<const FoundBlob*, GcBlob>> pending;
  for (const FoundBlob& found : walk->blobs) {
    report.blobs_seen++;
    report.bytes_seen += found.size;
    GcBlob blob;
    blob.digest = "sha256:" + found.hex;
    blob.path = root_path + "/" + found.shard + "/" + found.hex;
    blob.size = found.size;
    blob.age_ns = now_ns - found.mtime_ns;
    if (live.Contains(blob.digest)) {
      continue;
    }
    if (blob.age_ns < options.grace_ns) {
      report.young++;
      report.young_bytes += blob.size;
      continue;
    }
    pending.emplace_back(&found, std::move(blob));
  }

  std::set<std::string> touched_shards;
  for (auto& [found, blob] : pending) {
    if (options.delete_blobs) {
      // Look again right before the unlink: the log (a manifest recorded since) and the file
      // (gone, replaced, or touched since the walk).
      Status refreshed = live.Refresh();
      if (!refreshed.ok()) {
        return refreshed;
      }
      if (live.Contains(blob.digest)) {
        report.rescued++;
        continue;
      }
      Fd shard_fd(openat(root_fd.get(), found->shard.c_str(),
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      struct stat st {};
      if (shard_fd.get() < 0 ||
          fstatat(shard_fd.get(), found->hex.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
          continue;  // Gone meanwhile (another collection).
        }
        blob.error = ErrnoText("stat " + blob.path, errno);
      } else if (!S_ISREG(st.st_mode) || st.st_ino != found->inode ||
                 now_ns - MtimeNs(st) < options.grace_ns) {
        report.rescued++;  // Replaced or touched since the walk: not ours to judge now.
        continue;
      } else if (unlinkat(shard_fd.get(), found->hex.c_str(), 0) != 0) {
        if (errno == ENOENT) {
          continue;
        }
        blob.error = ErrnoText("unlink " + blob.path, errno);
      } else {
        blob.deleted = true;
        report.deleted++;
        report.bytes_deleted += blob.size;
        touched_shards.insert(found->shard);
      }
      if (!blob.error.empty()) {
        report.delete_errors++;
      }
    }
    if (on_blob) {
      on_blob(blob);
    }
    report.candidates.push_back(std::move(blob));
  }
  // Shards this run emptied. rmdir refuses a directory that is not empty, so a blob the
  // registry renamed in meanwhile keeps its shard.
  for (const std::string& shard : touched_shards) {
    if (unlinkat(root_fd.get(), shard.c_str(), AT_REMOVEDIR) == 0) {
      report.shards_removed++;
    }
  }
  report.seq = live.seq();
  report.live_digests = live.size();
  return report;
}

std::string GcBlobLine(const GcBlob& blob, bool delete_blobs) {
  const std::string sized = blob.digest + " " + std::to_string(blob.size) + " bytes";
  if (!delete_blobs) {
    return sized + ", " + FormatDuration(blob.age_ns - blob.age_ns % 1'000'000'000) + " old";
  }
  if (!blob.deleted) {
    return "kept " + sized + ": " + blob.error;
  }
  return "deleted " + sized;
}

std::string GcSummaryLine(const GcReport& report, bool delete_blobs) {
  uint64_t bytes = 0;
  for (const GcBlob& blob : report.candidates) {
    bytes += blob.size;
  }
  std::string line = std::to_string(report.candidates.size()) + " blobs, " + std::to_string(bytes) +
                     " bytes unreferenced; ";
  if (!delete_blobs) {
    return line + "dry run: nothing deleted";
  }
  line += "deleted " + std::to_string(report.deleted);
  if (report.delete_errors > 0) {
    line += " (" + std::to_string(report.delete_errors) + " could not be deleted)";
  }
  return line;
}

}  // namespace cloister::tools
