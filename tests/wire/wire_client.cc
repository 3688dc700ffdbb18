#include "tests/wire/wire_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "tests/crash/child_process.h"

namespace cloister::testing {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

std::string SslErrors() {
  std::string out;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out;
}

// Parses "HTTP/1.1 200 OK\r\nName: value\r\n..." (without the final blank line).
Status ParseHead(std::string_view head, WireResponse* response) {
  size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1.") {
    return Status::Corruption("bad status line: " + std::string(status_line));
  }
  response->version_minor = status_line[7] - '0';
  response->status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  response->reason = std::string(status_line.size() > 13 ? status_line.substr(13) : "");
  while (line_end != std::string_view::npos) {
    size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    std::string_view line = head.substr(start, line_end - start);
    if (line.empty()) {
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return Status::Corruption("bad header line: " + std::string(line));
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') {
      value.remove_prefix(1);
    }
    response->headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return Status::Ok();
}

Result<int> ConnectSocket(const WireTarget& target, int64_t deadline_ms) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(target.port);
  if (getaddrinfo(target.host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return Status::NotFound("cannot resolve " + target.host);
  }
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(found);
    return Status::IoError(Errno("socket"));
  }
  int rc = connect(fd, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (rc != 0 && errno != EINPROGRESS) {
    close(fd);
    return Status::IoError(Errno("connect"));
  }
  pollfd p{fd, POLLOUT, 0};
  int left = static_cast<int>(std::max<int64_t>(0, deadline_ms - MonotonicMs()));
  if (rc != 0 && (poll(&p, 1, left) != 1)) {
    close(fd);
    return Status::IoError("connect: timed out");
  }
  int error = 0;
  socklen_t size = sizeof(error);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size);
  if (error != 0) {
    close(fd);
    return Status::IoError(std::string("connect: ") + std::strerror(error));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string WireTarget::BaseUrl() const {
  return std::string(tls ? "https://" : "http://") + host + ":" + std::to_string(port);
}

std::string WireResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) {
      return value;
    }
  }
  return "";
}

bool WireResponse::HasHeader(std::string_view name) const {
  for (const auto& header : headers) {
    if (EqualsIgnoreCase(header.first, name)) {
      return true;
    }
  }
  return false;
}

Result<std::unique_ptr<WireConnection>> WireConnection::Connect(const WireTarget& target,
                                                                int timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  auto fd = ConnectSocket(target, deadline);
  if (!fd.ok()) {
    return fd.status();
  }
  std::unique_ptr<WireConnection> connection(new WireConnection());
  connection->fd_ = *fd;
  if (!target.tls) {
    return connection;
  }
  connection->ctx_ = SSL_CTX_new(TLS_client_method());
  if (!target.ca_file.empty()) {
    SSL_CTX_load_verify_locations(connection->ctx_, target.ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(connection->ctx_, SSL_VERIFY_PEER, nullptr);
  }
  if (!target.client_cert_file.empty()) {
    if (SSL_CTX_use_certificate_file(connection->ctx_, target.client_cert_file.c_str(),
                                     SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(connection->ctx_, target.client_key_file.c_str(),
                                    SSL_FILETYPE_PEM) != 1) {
      return Status::InvalidArgument("client certificate " + target.client_cert_file + ": " +
                                     SslErrors());
    }
  }
  connection->ssl_ = SSL_new(connection->ctx_);
  SSL_set_fd(connection->ssl_, connection->fd_);
  SSL_set_tlsext_host_name(connection->ssl_, target.host.c_str());
  Status status = connection->Handshake(deadline);
  if (!status.ok()) {
    return status;
  }
  return connection;
}

WireConnection::~WireConnection() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
  }
  if (ctx_ != nullptr) {
    SSL_CTX_free(ctx_);
  }
  if (fd_ >= 0) {
    close(fd_);
  }
}

bool WireConnection::WaitFd(short events, int64_t deadline_ms) {
  for (;;) {
    int left = static_cast<int>(std::max<int64_t>(0, deadline_ms - MonotonicMs()));
    pollfd p{fd_, events, 0};
    int rc = poll(&p, 1, left);
    if (rc > 0) {
      return true;
    }
    if (rc == 0 || errno != EINTR) {
      return false;
    }
  }
}

Status WireConnection::Handshake(int64_t deadline_ms) {
  for (;;) {
    ERR_clear_error();
    int rc = SSL_connect(ssl_);
    if (rc == 1) {
      return Status::Ok();
    }
    int error = SSL_get_error(ssl_, rc);
    short events = error == SSL_ERROR_WANT_READ ? POLLIN : error == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (events == 0) {
      return Status::IoError("TLS handshake failed: " + SslErrors());
    }
    if (!WaitFd(events, deadline_ms)) {
      return Status::IoError("TLS handshake: timed out");
    }
  }
}

Status WireConnection::Send(std::string_view bytes, int timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  while (!bytes.empty()) {
    ssize_t n;
    int error = 0;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
      error = n > 0 ? 0 : SSL_get_error(ssl_, static_cast<int>(n));
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        n = -1;
      } else if (n <= 0) {
        return Status::IoError("SSL_write: " + SslErrors());
      }
    } else {
      n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    }
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno != EAGAIN && errno != EINTR) {
      return Status::IoError(Errno("send"));
    }
    if (!WaitFd(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
      return Status::IoError("send: timed out");
    }
  }
  return Status::Ok();
}

int WireConnection::ReadSome(int64_t deadline_ms) {
  for (;;) {
    char buf[65536];
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) {
        int error = SSL_get_error(ssl_, static_cast<int>(n));
        if (error == SSL_ERROR_ZERO_RETURN) {
          return 0;
        }
        if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
          return errno == ECONNRESET || n == 0 ? 0 : -2;
        }
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
          return -2;
        }
        errno = EAGAIN;
        n = -1;
      }
    } else {
      n = recv(fd_, buf, sizeof(buf), 0);
      if (n < 0 && errno == ECONNRESET) {
        return 0;
      }
    }
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
      return static_cast<int>(n);
    }
    if (n == 0) {
      return 0;
    }
    if (errno != EAGAIN && errno != EINTR) {
      return -2;
    }
    if (!WaitFd(POLLIN, deadline_ms)) {
      return -1;
    }
  }
}

Result<WireResponse> WireConnection::ReadResponse(int timeout_ms, bool head_request) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  size_t head_end;
  while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    int rc = ReadSome(deadline);
    if (rc <= 0) {
      return Status::IoError(std::string(rc == 0 ? "connection closed" : rc == -1 ? "timed out" : "read error") +
                             " before a complete response head; received: " + buffer_);
    }
  }
  WireResponse response;
  Status status = ParseHead(std::string_view(buffer_).substr(0, head_end), &response);
  if (!status.ok()) {
    return status;
  }
  size_t body_start = head_end + 4;
  const bool no_body = head_request || response.status < 200 || response.status == 204 ||
                       response.status == 304;
  size_t length = 0;
  if (!no_body) {
    if (!response.HasHeader("Content-Length")) {
      return Status::Corruption("response without Content-Length");
    }
    length = std::strtoull(response.Header("Content-Length").c_str(), nullptr, 10);
  }
  while (buffer_.size() < body_start + length) {
    int rc = ReadSome(deadline);
    if (rc <= 0) {
      return Status::IoError("incomplete response body");
    }
  }
  response.body = buffer_.substr(body_start, length);
  buffer_.erase(0, body_start + length);
  return response;
}

Result<std::string> WireConnection::ReadUntilClose(int timeout_ms) {
  const int64_t deadline = MonotonicMs() + timeout_ms;
  for (;;) {
    int rc = ReadSome(deadline);
    if (rc == 0 || rc == -2) {
      std::string all = std::move(buffer_);
      buffer_.clear();
      return all;
    }
    if (rc == -1) {
      return Status::IoError("still open after " + std::to_string(timeout_ms) + " ms");
    }
  }
}

bool WireConnection::ClosedSilently(int timeout_ms) {
  size_t before = buffer_.size();
  auto rest = ReadUntilClose(timeout_ms);
  return rest.ok() && rest->size() == before;
}

void WireConnection::ShutdownWrite() {
  if (ssl_ != nullptr) {
    SSL_shutdown(ssl_);
  }
  shutdown(fd_, SHUT_WR);
}

void WireConnection::Reset() {
  linger abort{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
  close(fd_);
  fd_ = -1;
}

std::string MakeRequest(std::string_view method, std::string_view target, std::string_view body,
                        std::string_view extra_headers) {
  std::string request = std::string(method) + " " + std::string(target) +
                        " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers);
  if (!body.empty() || method == "POST" || method == "PUT") {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return request + "\r\n" + std::string(body);
}

bool ProgramResult::Succeeded() const {
  return !timed_out && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
}

std::string ProgramResult::Describe() const {
  return (timed_out ? std::string("timed out; ") : std::string()) +
         DescribeWaitStatus(wait_status) + "; stderr: " + err + "; stdout: " + out;
}

ProgramResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                         int timeout_ms) {
  // sh finds the program in PATH and gives it /dev/null as stdin (openssl s_client would
  // otherwise wait for input); the arguments pass through "$@" unquoted and unchanged.
  std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" </dev/null", program};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess child(argv, {});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  child.ReadUntil(deadline);
  ProgramResult result;
  if (std::chrono::steady_clock::now() >= deadline) {
    // Its pipes are still open: it is still running (or a grandchild holds them). A kill of a
    // process that has just exited is harmless; the wait status below tells which happened.
    child.Kill(SIGKILL);
    result.timed_out = true;
  }
  result.wait_status = child.Wait();
  if (WIFEXITED(result.wait_status)) {
    result.timed_out = false;
  }
  result.out = child.out();
  result.err = child.err();
  return result;
}

uint64_t RaiseOpenFilesLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

namespace {

Status Openssl(const std::vector<std::string>& args) {
  ProgramResult result = RunProgram("openssl", args, 60000);
  if (!result.Succeeded()) {
    std::string line = "openssl";
    for (const std::string& arg : args) {
      line += " " + arg;
    }
    return Status::IoError(line + ": " + result.Describe());
  }
  return Status::Ok();
}

}  // namespace

Result<TestPki> MakeTestPki(const std::string& dir) {
  TestPki pki;
  pki.ca_cert = dir + "/ca.pem";
  pki.ca_key = dir + "/ca.key";
  pki.server_cert = dir + "/server.pem";
  pki.server_chain = dir + "/server_chain.pem";
  pki.server_key = dir + "/server.key";
  pki.server_key_encrypted = dir + "/server_encrypted.key";
  pki.server_key_legacy_encrypted = dir + "/server_legacy_encrypted.key";
  pki.other_key = dir + "/other.key";
  const std::string csr = dir + "/server.csr";
  const std::string ext = dir + "/server.ext";
  std::ofstream(ext) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                     << "extendedKeyUsage=serverAuth\n";
  const std::string pass = std::string("pass:") + kTestKeyPassphrase;
  const std::vector<std::vector<std::string>> steps = {
      {"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", pki.ca_key, "-out",
       pki.ca_cert, "-days", "2", "-subj", "/O=cloister tests/CN=cloister test CA"},
      {"req", "-newkey", "rsa:2048", "-nodes", "-keyout", pki.server_key, "-out", csr, "-subj",
       "/O=cloister tests/CN=127.0.0.1"},
      {"x509", "-req", "-in", csr, "-CA", pki.ca_cert, "-CAkey", pki.ca_key, "-CAcreateserial",
       "-out", pki.server_cert, "-days", "2", "-sha256", "-extfile", ext},
      {"pkey", "-in", pki.server_key, "-aes256", "-passout", pass, "-out",
       pki.server_key_encrypted},
      {"rsa", "-in", pki.server_key, "-aes256", "-traditional", "-passout", pass, "-out",
       pki.server_key_legacy_encrypted},
      {"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
       pki.other_key},
  };
  for (const auto& step : steps) {
    Status status = Openssl(step);
    if (!status.ok()) {
      return status;
    }
  }
  std::ifstream server(pki.server_cert);
  std::ifstream ca(pki.ca_cert);
  std::ofstream chain(pki.server_chain);
  chain << server.rdbuf() << ca.rdbuf();
  return pki;
}

}  // namespace cloister::testing
