// New TLS connections per second with a client certificate (mTLS), against any HTTPS server:
// what wrk cannot measure (it sends no client certificates).
//
//   tls_connect_bench --port PORT --cert client.pem --key client.key [--ca ca.pem]
//                     [--host 127.0.0.1] [--path /api/v1/status] [--threads T]
//                     [--duration S] [--pid PID]... [--header "Name: value"]...
//
// Prints figures; not a test. Each of T threads loops for S seconds: TCP connect, a full TLS
// handshake presenting the client certificate (no session resumption: no cache, no tickets
// kept), "GET PATH HTTP/1.1" with "Connection: close", the whole response read up to the
// server's close, status 200 checked, close. With --ca the server's certificate is verified
// (chain and IP/host name) as a client would. With --pid (repeatable), the server's CPU time
// (user + system, all threads, from /proc) per connection. The last line is machine-readable
// (TLSCONNECT key=value ...). Exit status: 0 no errors, 1 errors, 2 bad arguments.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/flags.h"

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr cloister::bench::Program kProgram{
    "tls_connect_bench",
    "usage: tls_connect_bench --port PORT --cert CLIENT.pem --key CLIENT.key\n"
    "         [--ca CA.pem] [--host 127.0.0.1] [--path /api/v1/status]\n"
    "         [--threads T] [--duration S] [--pid PID]... [--header 'N: v']...\n"};

[[noreturn]] void Die(const std::string& what, int code = 1) { kProgram.Die(what, code); }

struct Flags {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string cert;
  std::string key;
  std::string ca;
  std::string path = "/api/v1/status";
  std::vector<std::string> headers;
  int threads = 2;
  int duration = 5;
  std::vector<int> pids;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  auto number = [](const std::string& name, const char* value) {
    return static_cast<int>(kProgram.PositiveNumber(name, value, 1'000'000'000));
  };
  kProgram.ParseFlags(argc, argv, [&](const std::string& name, const char* value) {
    if (name == "--host") flags.host = value;
    else if (name == "--port") flags.port = number(name, value);
    else if (name == "--cert") flags.cert = value;
    else if (name == "--key") flags.key = value;
    else if (name == "--ca") flags.ca = value;
    else if (name == "--path") flags.path = value;
    else if (name == "--header") flags.headers.emplace_back(value);
    else if (name == "--threads") flags.threads = number(name, value);
    else if (name == "--duration") flags.duration = number(name, value);
    else if (name == "--pid") flags.pids.push_back(number(name, value));
    else return false;
    return true;
  });
  if (flags.port == 0 || flags.cert.empty() || flags.key.empty()) {
    kProgram.BadArguments("--port, --cert and --key are required");
  }
  return flags;
}

std::string OpensslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no OpenSSL error queued";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

// utime + stime of the processes (all threads), seconds; -1 when one is unreadable.
double ProcessesCpu(const std::vector<int>& pids) {
  double total = 0;
  for (int pid : pids) {
    const double seconds = cloister::bench::ProcessCpuSeconds(pid);
    if (seconds < 0) return -1;
    total += seconds;
  }
  return total;
}

struct Counts {
  long ok = 0;
  std::map<std::string, long> errors;  // By kind.
};

class Bench {
 public:
  explicit Bench(const Flags& flags) : flags_(flags) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) Die("SSL_CTX_new: " + OpensslError());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    // Every connection a full handshake: nothing cached, no tickets asked for or kept.
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    // A server's close without close_notify ends the response like one with it.
    SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_use_certificate_chain_file(ctx_, flags.cert.c_str()) != 1) {
      Die("--cert " + flags.cert + ": " + OpensslError(), 2);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx_, flags.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx_) != 1) {
      Die("--key " + flags.key + ": " + OpensslError(), 2);
    }
    if (!flags.ca.empty()) {
      if (SSL_CTX_load_verify_locations(ctx_, flags.ca.c_str(), nullptr) != 1) {
        Die("--ca " + flags.ca + ": " + OpensslError(), 2);
      }
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    }
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(flags.port));
    if (inet_pton(AF_INET, flags.host.c_str(), &addr_.sin_addr) != 1) {
      Die("--host must be an IPv4 address: " + flags.host, 2);
    }
    request_ = "GET " + flags.path + " HTTP/1.1\r\nHost: " + flags.host + "\r\n";
    for (const std::string& header : flags.headers) request_ += header + "\r\n";
    request_ += "Connection: close\r\n\r\n";
  }
  ~Bench() { SSL_CTX_free(ctx_); }

  // One connection; "" when it went right, else the kind of error.
  std::string Once() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::string("socket: ") + std::strerror(errno);
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    timeval timeout{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof(addr_)) != 0) {
      const std::string why = std::string("connect: ") + std::strerror(errno);
      close(fd);
      return why;
    }
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, fd);
    if (!flags_.ca.empty()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      if (X509_VERIFY_PARAM_set1_ip_asc(param, flags_.host.c_str()) != 1) {
        X509_VERIFY_PARAM_set1_host(param, flags_.host.c_str(), 0);
      }
    }
    std::string why;
    if (SSL_connect(ssl) != 1) {
      why = "handshake: " + OpensslError();
    } else if (SSL_write(ssl, request_.data(), static_cast<int>(request_.size())) !=
               static_cast<int>(request_.size())) {
      why = "write: " + OpensslError();
    } else {
      // TLS 1.3 servers check the client certificate after their side of the handshake: a
      // refusal shows up here, as an alert instead of a response.
      std::string in;
      char buf[8192];
      for (;;) {
        const int n = SSL_read(ssl, buf, sizeof(buf));
        if (n > 0) {
          in.append(buf, static_cast<size_t>(n));
          if (in.size() > (1u << 20)) break;
          continue;
        }
        const int error = SSL_get_error(ssl, n);
        if (error != SSL_ERROR_ZERO_RETURN && !(error == SSL_ERROR_SYSCALL && !in.empty())) {
          why = in.empty() ? "read: " + OpensslError() : "";
        }
        break;
      }
      ERR_clear_error();
      if (why.empty()) {
        if (in.size() < 12 || !in.starts_with("HTTP/1.")) {
          why = in.empty() ? "no response" : "not an HTTP response";
        } else if (in.compare(9, 3, "200") != 0) {
          why = "HTTP " + in.substr(9, 3);
        } else if (in.find("\r\n\r\n") == std::string::npos) {
          why = "truncated response";
        }
      }
    }
    SSL_free(ssl);
    close(fd);
    return why;
  }

 private:
  const Flags& flags_;
  SSL_CTX* ctx_ = nullptr;
  sockaddr_in addr_{};
  std::string request_;
};

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // A closed connection is an error to count, not an exit.
  const Flags flags = ParseFlags(argc, argv);
  Bench bench(flags);
  const std::string probe = bench.Once();
  if (!probe.empty()) {
    std::printf("tls_connect_bench: the first connection failed: %s\n", probe.c_str());
    std::printf("TLSCONNECT connections=0 errors=1 seconds=0 rate=0 cpu_us_per_conn=nan\n");
    return 1;
  }
  std::atomic<bool> stop{false};
  std::mutex mutex;
  Counts total;
  const double cpu0 = flags.pids.empty() ? -1 : ProcessesCpu(flags.pids);
  const SteadyClock::time_point start = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < flags.threads; t++) {
    threads.emplace_back([&] {
      Counts counts;
      while (!stop.load(std::memory_order_relaxed)) {
        const std::string why = bench.Once();
        if (why.empty()) {
          counts.ok++;
        } else {
          counts.errors[why]++;
        }
      }
      std::lock_guard<std::mutex> lock(mutex);
      total.ok += counts.ok;
      for (const auto& [why, n] : counts.errors) total.errors[why] += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(flags.duration));
  stop = true;
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const double cpu = cpu0 < 0 ? -1 : ProcessesCpu(flags.pids) - cpu0;
  long errors = 0;
  for (const auto& [why, n] : total.errors) errors += n;
  const double rate = static_cast<double>(total.ok) / seconds;
  char cpu_text[32] = "nan";
  if (cpu >= 0 && total.ok > 0) {
    std::snprintf(cpu_text, sizeof(cpu_text), "%.1f", cpu * 1e6 / static_cast<double>(total.ok));
  }
  std::printf("tls_connect_bench: %s:%d%s, %d thread(s), %.2f s: %ld connections (%.0f/s), "
              "%ld errors, server CPU %s us/connection\n",
              flags.host.c_str(), flags.port, flags.path.c_str(), flags.threads, seconds,
              total.ok, rate, errors, cpu_text);
  for (const auto& [why, n] : total.errors) std::printf("  error x%ld: %s\n", n, why.c_str());
  std::printf("TLSCONNECT connections=%ld errors=%ld seconds=%.3f rate=%.1f cpu_us_per_conn=%s\n",
              total.ok, errors, seconds, rate, cpu_text);
  return errors == 0 ? 0 : 1;
}
