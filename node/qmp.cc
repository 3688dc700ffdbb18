#include "node/qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <utility>

#include "log/base64.h"

namespace cloister::node {
namespace {

int MillisLeft(Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 60'000));
}

// Waits until fd is ready for events; false when the deadline passed.
bool WaitReady(int fd, short events, Deadline deadline) {
  for (;;) {
    const int wait_ms = MillisLeft(deadline);
    if (wait_ms == 0) {
      return false;
    }
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, wait_ms);
    if (n > 0) {
      return true;
    }
    if (n < 0 && errno != EINTR) {
      return false;
    }
  }
}

std::string RandomId() {
  std::random_device device;
  std::uniform_int_distribution<uint64_t> pick;
  char text[20];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(pick(device)));
  return text;
}

}  // namespace

Result<std::unique_ptr<UnixLineConn>> UnixLineConn::Connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string target = path;
  int dir_fd = -1;
  if (path.size() >= sizeof(addr.sun_path)) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) {
      return Status::InvalidArgument("socket name too long: " + path);
    }
    dir_fd = open(path.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
      return Status::NotFound(path + ": " + std::strerror(errno));
    }
    target = "/proc/self/fd/" + std::to_string(dir_fd) + path.substr(slash);
    if (target.size() >= sizeof(addr.sun_path)) {
      close(dir_fd);
      return Status::InvalidArgument("socket name too long: " + path);
    }
  }
  std::memcpy(addr.sun_path, target.c_str(), target.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (dir_fd >= 0) close(dir_fd);
    return Status::IoError(std::string("socket: ") + std::strerror(errno));
  }
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  if (dir_fd >= 0) close(dir_fd);
  if (rc != 0) {
    close(fd);
    const std::string why = path + ": " + std::strerror(err);
    if (err == ENOENT || err == ECONNREFUSED) {
      return Status::NotFound(why);
    }
    return Status::IoError(why);
  }
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  return std::unique_ptr<UnixLineConn>(new UnixLineConn(fd));
}

UnixLineConn::~UnixLineConn() { close(fd_); }

Status UnixLineConn::WriteAll(const std::string& data, Deadline deadline) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Status::IoError(std::string("write: ") + std::strerror(errno));
    }
    if (!WaitReady(fd_, POLLOUT, deadline)) {
      return Status::IoError("write: timed out");
    }
  }
  return Status::Ok();
}

Result<std::string> UnixLineConn::ReadLine(Deadline deadline, size_t max_bytes) {
  for (;;) {
    const size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    if (buffer_.size() > max_bytes) {
      return Status::IoError("read: line longer than " + std::to_string(max_bytes) + " bytes");
    }
    char chunk[65536];
    const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      return Status::Closed("read: connection closed");
    }
    if (errno != EAGAIN && errno != EINTR) {
      return Status::IoError(std::string("read: ") + std::strerror(errno));
    }
    if (!WaitReady(fd_, POLLIN, deadline)) {
      return Status::IoError("read: timed out");
    }
  }
}

Result<std::unique_ptr<QmpClient>> QmpClient::Connect(const std::string& socket_path,
                                                      Deadline deadline) {
  auto conn = UnixLineConn::Connect(socket_path);
  if (!conn.ok()) {
    return conn.status();
  }
  auto greeting = (*conn)->ReadLine(deadline);
  if (!greeting.ok()) {
    return Status::IoError("qmp greeting: " + greeting.status().message());
  }
  const nlohmann::json hello = nlohmann::json::parse(*greeting, nullptr, false);
  if (!hello.is_object() || !hello.contains("QMP")) {
    return Status::IoError("qmp: not a QMP greeting");
  }
  std::unique_ptr<QmpClient> client(new QmpClient(std::move(*conn)));
  auto negotiated = client->Execute("qmp_capabilities", nullptr, deadline);
  if (!negotiated.ok()) {
    return negotiated.status();
  }
  return client;
}

Result<nlohmann::json> QmpClient::Execute(const std::string& command,
                                          const nlohmann::json& arguments, Deadline deadline) {
  const uint64_t id = next_id_++;
  nlohmann::json request{{"execute", command}, {"id", id}};
  if (!arguments.is_null()) {
    request["arguments"] = arguments;
  }
  if (Status wrote = conn_->WriteAll(request.dump() + "\n", deadline); !wrote.ok()) {
    return Status::IoError("qmp " + command + ": " + wrote.message());
  }
  for (int lines = 0; lines < 10'000; lines++) {
    auto line = conn_->ReadLine(deadline);
    if (!line.ok()) {
      return Status::IoError("qmp " + command + ": " + line.status().message());
    }
    nlohmann::json reply = nlohmann::json::parse(*line, nullptr, false);
    if (!reply.is_object()) {
      return Status::IoError("qmp " + command + ": unparsable reply");
    }
    if (reply.contains("event")) {
      if (events_.size() < 1000) events_.push_back(std::move(reply));
      continue;
    }
    if (!reply.contains("id") || reply["id"] != id) {
      continue;  // An answer to an earlier command that timed out.
    }
    if (reply.contains("error")) {
      const nlohmann::json& error = reply["error"];
      std::string desc = error.is_object() && error.contains("desc") && error["desc"].is_string()
                             ? error["desc"].get<std::string>()
                             : std::string("error");
      return Status::IoError("qmp " + command + ": " + desc);
    }
    return reply.contains("return") ? reply["return"] : nlohmann::json::object();
  }
  return Status::IoError("qmp " + command + ": no answer among 10000 lines");
}

namespace {

// Parses "<id> <rc> <base64>" into reply if its id is want; false for another id.
Result<bool> ParseAgentLine(const std::string& line, const std::string& want, AgentReply* reply) {
  const size_t first = line.find(' ');
  if (first == std::string::npos || line.substr(0, first) != want) {
    return false;
  }
  const size_t second = line.find(' ', first + 1);
  const std::string rc = line.substr(first + 1, second == std::string::npos
                                                    ? std::string::npos
                                                    : second - first - 1);
  if (rc.empty() || rc.size() > 3 || rc.find_first_not_of("0123456789") != std::string::npos) {
    return Status::IoError("guest agent: malformed answer");
  }
  const std::string b64 = second == std::string::npos ? "" : line.substr(second + 1);
  auto output = log::Base64Decode(b64);
  if (!output) {
    return Status::IoError("guest agent: malformed output encoding");
  }
  reply->exit_code = std::stoi(rc);
  reply->output = std::move(*output);
  return true;
}

}  // namespace

Result<AgentReply> RunInGuest(const std::string& socket_path, const std::string& script,
                              uint32_t timeout_seconds, Deadline ready_deadline,
                              std::chrono::milliseconds ping_interval) {
  auto conn = UnixLineConn::Connect(socket_path);
  if (!conn.ok()) {
    return Status::IoError("guest agent channel: " + conn.status().message());
  }
  const std::string ping_id = "p" + RandomId();
  const std::string ping = ping_id + " 5 " + log::Base64Encode("true") + "\n";
  bool ready = false;
  AgentReply scratch;
  for (int attempt = 0; attempt < 100'000 && !ready; attempt++) {
    if (std::chrono::steady_clock::now() >= ready_deadline) {
      return Status::IoError("guest agent did not answer (is the guest booted?)");
    }
    if (Status wrote = (*conn)->WriteAll(ping, ready_deadline); !wrote.ok()) {
      return Status::IoError("guest agent channel: " + wrote.message());
    }
    const Deadline next = std::min(ready_deadline, DeadlineIn(ping_interval));
    for (int lines = 0; lines < 1000; lines++) {
      auto line = (*conn)->ReadLine(next);
      if (!line.ok()) {
        if (line.status().code() == StatusCode::kClosed) {
          return Status::IoError("guest agent channel closed");
        }
        break;  // Timed out: ping again.
      }
      auto mine = ParseAgentLine(*line, ping_id, &scratch);
      if (mine.ok() && *mine) {
        ready = true;
        break;
      }
    }
  }
  const std::string id = "c" + RandomId();
  const std::string request = id + " " + std::to_string(timeout_seconds) + " " +
                              log::Base64Encode(script) + "\n";
  const Deadline deadline = DeadlineIn(std::chrono::seconds(timeout_seconds) +
                                       std::chrono::seconds(15));
  if (Status wrote = (*conn)->WriteAll(request, deadline); !wrote.ok()) {
    return Status::IoError("guest agent channel: " + wrote.message());
  }
  for (int lines = 0; lines < 100'000; lines++) {
    auto line = (*conn)->ReadLine(deadline, 2 << 20);
    if (!line.ok()) {
      return Status::IoError("guest agent: " + line.status().message());
    }
    AgentReply reply;
    auto mine = ParseAgentLine(*line, id, &reply);
    if (!mine.ok()) {
      return mine.status();
    }
    if (*mine) {
      return reply;
    }
  }
  return Status::IoError("guest agent: no answer among 100000 lines");
}

}  // namespace cloister::node
