// Unix-socket plumbing for the qemu driver: a line-oriented connection with deadlines
// (UnixLineConn), the QEMU Machine Protocol client on top of it (QmpClient), and the guest agent's
// command channel (RunInGuest; the protocol is the one scripts/guest/init speaks).
//
// Socket paths longer than sun_path (107 bytes; Bazel's test directories are longer) are reached
// through /proc/self/fd/<dirfd>/<name>, with an O_PATH descriptor of the socket's directory.
//
// Every call takes a deadline and fails with kIoError once it passes; nothing blocks without one.
// QEMU serves one QMP client (and one agent-channel client) at a time: a second connection is
// accepted by the kernel but not answered until the first closes, so callers keep connections
// short and serialise them per VM (QemuDriver does).
//
// Thread-safety: an object is used by one thread at a time; different objects are independent.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <nlohmann/json.hpp>
#include <vector>

#include "log/status.h"

namespace cloister::node {

using Deadline = std::chrono::steady_clock::time_point;

inline Deadline DeadlineIn(std::chrono::milliseconds timeout) {
  return std::chrono::steady_clock::now() + timeout;
}

class UnixLineConn {
 public:
  // Connects to the unix socket at path. kNotFound: no socket there (or nobody listening);
  // kIoError otherwise.
  static Result<std::unique_ptr<UnixLineConn>> Connect(const std::string& path);
  ~UnixLineConn();
  UnixLineConn(const UnixLineConn&) = delete;
  UnixLineConn& operator=(const UnixLineConn&) = delete;

  Status WriteAll(const std::string& data, Deadline deadline);
  // The next line without its '\n'. kIoError on EOF, a line longer than max_bytes, or the
  // deadline; kClosed on EOF.
  Result<std::string> ReadLine(Deadline deadline, size_t max_bytes = 1 << 20);

 private:
  explicit UnixLineConn(int fd) : fd_(fd) {}
  const int fd_;
  std::string buffer_;
};

class QmpClient {
 public:
  // Connects, reads the greeting and negotiates capabilities.
  static Result<std::unique_ptr<QmpClient>> Connect(const std::string& socket_path,
                                                    Deadline deadline);

  // Runs command with arguments (null: none) and returns its "return" value. A QMP error is
  // kIoError with QEMU's description. Events that arrive meanwhile are kept in events().
  Result<nlohmann::json> Execute(const std::string& command, const nlohmann::json& arguments,
                                 Deadline deadline);
  const std::vector<nlohmann::json>& events() const { return events_; }

 private:
  explicit QmpClient(std::unique_ptr<UnixLineConn> conn) : conn_(std::move(conn)) {}
  std::unique_ptr<UnixLineConn> conn_;
  std::vector<nlohmann::json> events_;
  uint64_t next_id_ = 1;
};

// The guest agent's answer to one script.
struct AgentReply {
  int exit_code = 0;
  std::string output;
};

// Runs script in the guest through the agent channel at socket_path: pings ("true", 5 s limit)
// every ping_interval until the agent answers (it may still be booting, or reopening the port
// after a resume), then sends the script with a guest-side limit of timeout_seconds and waits for
// its answer (timeout_seconds plus a margin). All of it by deadline. kIoError with what failed.
Result<AgentReply> RunInGuest(const std::string& socket_path, const std::string& script,
                              uint32_t timeout_seconds, Deadline ready_deadline,
                              std::chrono::milliseconds ping_interval =
                                  std::chrono::milliseconds(500));

}  // namespace cloister::node
