// LogStore: the registry's central log server storage (issue 8): append-only text files under
// <data dir>/logs/, outside the event log.
//
// Layout under root (docs/registry.md "Central logs"):
//   hosts/<host>/<service>.log   rows sent with POST /log?service=&host=, as sent
//   eventLog.jsonl               POST /log/event: one JSON object per line, with "server_time"
//
// Log rows are data, not changes of state: they are not events, and the event log does not grow
// with them. What the store promises instead: an acknowledged append is durable (written and
// fdatasync'd before Append returns), and files only grow, so a reader that knows an offset
// never sees bytes change under it. A file is named by "<host>/<service>" or "eventLog"
// (kEventLogName); host and service are single name segments (NameProblem).
//
// Thread-safety: Append, AppendEvents and WriteArchive may run on any thread at once (they are
// meant for the thread pool: fdatasync and compression must not stall the event loop); appends
// to one store are serialised by a mutex around the write, the fdatasync is outside it. The
// other methods only read the file system and may run anywhere.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "log/status.h"

namespace cloister::registry {

inline constexpr std::string_view kEventLogName = "eventLog";
// host and service: bytes in one name.
inline constexpr size_t kLogNameBytesMax = 64;  // A ustar name holds "<service>.log".
// Files one archive may hold (bounds the work of one request).
inline constexpr size_t kArchiveFilesMax = 10'000;

class LogStore {
 public:
  // Creates root and root/hosts if needed.
  static Result<std::unique_ptr<LogStore>> Open(const std::string& root);
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // Why name is not a host or service name, or "" when it is one: 1..kLogNameBytesMax bytes of
  // letters, digits, '.', '_', '-' and '@', not starting with '.'. Never repeats the name.
  static std::string NameProblem(std::string_view name);

  // Appends rows (text; a final newline is added when missing) to hosts/<host>/<service>.log,
  // durably. host and service must pass NameProblem (kInvalidArgument otherwise).
  Status Append(const std::string& host, const std::string& service, std::string_view rows);
  // Appends lines (each one JSON object, no newline inside) to the eventLog, durably.
  Status AppendEvents(const std::vector<std::string>& lines);

  // The path of a file named "<host>/<service>" or "eventLog"; kInvalidArgument for a bad name,
  // kNotFound for a file that was never written.
  Result<std::string> PathOf(std::string_view file) const;

  struct FileInfo {
    std::string file;  // "<host>/<service>" or "eventLog".
    uint64_t size = 0;
  };
  // Every file, sorted by name; with host / service set, only the matching ones (the eventLog
  // matches only when neither is set, or service is "eventLog").
  std::vector<FileInfo> List(const std::string& host = "",
                             const std::string& service = "") const;

  // Writes a gzip-compressed ustar archive of files to fd (each file as "<host>/<service>.log"
  // or "eventLog.jsonl", its size as it was when it was reached), with bounded memory.
  static Status WriteArchive(const std::string& root, const std::vector<FileInfo>& files,
                             int fd);

  const std::string& root() const { return root_; }

 private:
  explicit LogStore(std::string root) : root_(std::move(root)) {}
  Status AppendTo(const std::string& path, std::string_view bytes);

  std::string root_;
  std::mutex append_mutex_;
};

}  // namespace cloister::registry
