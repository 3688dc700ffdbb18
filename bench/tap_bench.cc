// TAP login throughput against a running cloisterd (auth and API keys on): complete
// /tap/v1/hand + /tap/v1/shake logins per second, the client's RSA decryption excluded.
//
//   tap_bench --url http://127.0.0.1:PORT --root-token T [--logins N] [--connections C]
//             [--pid PID] [--target LOGINS_PER_S] [--decrypt-threads T]
//
// Prints figures; not a test. It makes an RSA-2048 key pair in-process, registers its public
// half with POST /api/v1/apikey (root token, Basic), then:
//   A. N hands over C keep-alive connections (one epoll loop, one request in flight each);
//   B. decrypts the N secrets (RSA-OAEP, SHA-256) on T threads: timed apart, not counted;
//   C. N shakes over C keep-alive connections, each answer checked: 200 with a session.
// logins/s = N / (tA + tC). With --pid, the server's CPU time (user + system, all threads,
// from /proc) per hand, per shake and per login. Finally one of the sessions is used as a
// Bearer on GET /api/v1/status (must be 200). Connections are opened before each phase's clock.
// The last line is machine-readable (TAP key=value ...), for bench/auth/run.sh.
// Exit status: 0 valid (whether or not the target was met), 1 errors, 2 bad arguments.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "bench/flags.h"

namespace {

using cloister::bench::ProcessCpuSeconds;
using SteadyClock = std::chrono::steady_clock;

constexpr cloister::bench::Program kProgram{
    "tap_bench",
    "usage: tap_bench --url http://127.0.0.1:PORT --root-token TOKEN [--logins N]\n"
    "                 [--connections C] [--pid PID] [--target LOGINS_PER_S]\n"
    "                 [--decrypt-threads T]\n"};

[[noreturn]] void Die(const std::string& what, int code = 1) { kProgram.Die(what, code); }

double Seconds(SteadyClock::time_point from, SteadyClock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// ---- Flags ------------------------------------------------------------------------------------

struct Flags {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string root_token;
  size_t logins = 20000;
  int connections = 32;
  int pid = 0;
  double target = 10000;
  int decrypt_threads = 0;  // 0: one per core.
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  kProgram.ParseFlags(argc, argv, [&](const std::string& name, const char* value) {
    if (name == "--url") {
      std::string url = value;
      if (!url.starts_with("http://")) Die("--url must be http://HOST:PORT", 2);
      url = url.substr(7);
      while (!url.empty() && url.back() == '/') url.pop_back();
      const size_t colon = url.rfind(':');
      if (colon == std::string::npos) Die("--url must be http://HOST:PORT", 2);
      flags.host = url.substr(0, colon);
      flags.port = static_cast<int>(kProgram.PositiveNumber("--url port", url.c_str() + colon + 1));
    } else if (name == "--root-token") {
      flags.root_token = value;
    } else if (name == "--logins") {
      flags.logins = static_cast<size_t>(kProgram.PositiveNumber(name, value));
    } else if (name == "--connections") {
      flags.connections = static_cast<int>(kProgram.PositiveNumber(name, value));
    } else if (name == "--pid") {
      flags.pid = static_cast<int>(kProgram.PositiveNumber(name, value));
    } else if (name == "--target") {
      flags.target = static_cast<double>(kProgram.PositiveNumber(name, value));
    } else if (name == "--decrypt-threads") {
      flags.decrypt_threads = static_cast<int>(kProgram.PositiveNumber(name, value));
    } else {
      return false;
    }
    return true;
  });
  if (flags.port == 0 || flags.root_token.empty()) {
    kProgram.BadArguments("--url and --root-token are required");
  }
  // cloisterd keeps at most 200,000 unshaken secrets (api/cloisterd/tap.cc kChallengesMax):
  // past that, shakes would fail, and failures are what the 429 limit counts.
  if (flags.logins > 150'000) Die("--logins: at most 150000", 2);
  return flags;
}

// ---- Base64 (standard alphabet, padded) -------------------------------------------------------

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

bool Unbase64(std::string_view text, std::string* out) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  if (text.empty() || text.size() % 4 != 0) return false;
  out->resize(3 * text.size() / 4);
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out->data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return false;
  size_t padding = 0;
  if (text.back() == '=') padding++;
  if (text.size() >= 2 && text[text.size() - 2] == '=') padding++;
  out->resize(static_cast<size_t>(n) - padding);
  return true;
}

// ---- HTTP/1.1 ---------------------------------------------------------------------------------

struct Response {
  int status = 0;
  std::string body;
};

bool HeaderIs(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':') return false;
  for (size_t i = 0; i < name.size(); i++) {
    if (std::tolower(static_cast<unsigned char>(line[i])) !=
        std::tolower(static_cast<unsigned char>(name[i]))) {
      return false;
    }
  }
  return true;
}

// One response at the front of buf: bytes consumed, 0 when incomplete, -1 when malformed (both
// servers always send Content-Length).
long ParseResponse(std::string_view buf, Response* out) {
  const size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) return buf.size() > 65536 ? -1 : 0;
  const std::string_view head = buf.substr(0, end);
  if (head.size() < 12 || !head.starts_with("HTTP/1.")) return -1;
  const int status = std::atoi(std::string(head.substr(9, 3)).c_str());
  long length = -1;
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos) {
    const size_t next = head.find("\r\n", pos + 2);
    const std::string_view line = head.substr(pos + 2, next == std::string_view::npos
                                                           ? std::string_view::npos
                                                           : next - pos - 2);
    if (HeaderIs(line, "content-length")) {
      length = std::atol(std::string(line.substr(15)).c_str());
    }
    pos = next;
  }
  if (length < 0) return -1;
  const size_t total = end + 4 + static_cast<size_t>(length);
  if (buf.size() < total) return 0;
  out->status = status;
  out->body.assign(buf.substr(end + 4, static_cast<size_t>(length)));
  return static_cast<long>(total);
}

std::string Request(const Flags& flags, std::string_view method, std::string_view path,
                    std::string_view body, std::string_view authorization = {}) {
  std::string out;
  out.reserve(160 + body.size() + authorization.size());
  out.append(method).append(" ").append(path).append(" HTTP/1.1\r\nHost: ");
  out.append(flags.host).append(":").append(std::to_string(flags.port)).append("\r\n");
  if (!authorization.empty()) out.append("Authorization: ").append(authorization).append("\r\n");
  if (!body.empty() || method == "POST") {
    out.append("Content-Type: application/json\r\nContent-Length: ");
    out.append(std::to_string(body.size())).append("\r\n");
  }
  out.append("\r\n").append(body);
  return out;
}

int Connect(const Flags& flags) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(flags.port));
  if (inet_pton(AF_INET, flags.host.c_str(), &addr.sin_addr) != 1) {
    Die("--url: the host must be an IPv4 address: " + flags.host, 2);
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Die("connect " + flags.host + ":" + std::to_string(flags.port) + ": " +
        std::strerror(errno));
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// One blocking request on a new connection (setup and the Bearer check).
Response Exchange(const Flags& flags, const std::string& request) {
  const int fd = Connect(flags);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = write(fd, request.data() + sent, request.size() - sent);
    if (n <= 0) Die(std::string("write: ") + std::strerror(errno));
    sent += static_cast<size_t>(n);
  }
  std::string in;
  Response response;
  char buf[16384];
  for (;;) {
    const long used = ParseResponse(in, &response);
    if (used < 0) Die("malformed response: " + in.substr(0, 200));
    if (used > 0) break;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) Die("connection closed before a whole response");
    in.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

// ---- Load: an epoll loop over keep-alive connections, one request in flight on each ---------

struct Phase {
  double seconds = 0;
  size_t ok = 0;
  size_t failed = 0;
  std::string first_error;
};

using MakeRequest = std::function<std::string(size_t index)>;
// Returns "" when the answer is right, else why not.
using CheckResponse = std::function<std::string(size_t index, Response& response)>;

Phase RunPhase(const Flags& flags, size_t n, const MakeRequest& make,
               const CheckResponse& check) {
  struct Conn {
    int fd = -1;
    std::string out;
    size_t out_sent = 0;
    std::string in;
    long index = -1;  // The request in flight, or -1.
  };
  const int count = static_cast<int>(std::min<size_t>(static_cast<size_t>(flags.connections), n));
  std::vector<Conn> conns(static_cast<size_t>(count));
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) Die(std::string("epoll_create1: ") + std::strerror(errno));
  for (int i = 0; i < count; i++) {
    Conn& c = conns[static_cast<size_t>(i)];
    c.fd = Connect(flags);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
  Phase phase;
  size_t next = 0;
  size_t done = 0;
  int open = count;
  auto fail = [&](const std::string& why) {
    phase.failed++;
    if (phase.first_error.empty()) phase.first_error = why;
  };
  auto drop = [&](Conn& c, const std::string& why) {
    if (c.index >= 0) {
      fail(why);
      done++;
      c.index = -1;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
    open--;
  };
  auto flush = [&](Conn& c, uint32_t slot) {
    while (c.out_sent < c.out.size()) {
      const ssize_t w = write(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent);
      if (w < 0 && errno == EAGAIN) break;
      if (w <= 0) {
        drop(c, std::string("write: ") + std::strerror(errno));
        return;
      }
      c.out_sent += static_cast<size_t>(w);
    }
    epoll_event ev{};
    ev.events = EPOLLIN | (c.out_sent < c.out.size() ? EPOLLOUT : 0u);
    ev.data.u32 = slot;
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
  };
  auto dispatch = [&](Conn& c, uint32_t slot) {
    if (next >= n || c.fd < 0) return;
    c.index = static_cast<long>(next++);
    c.out = make(static_cast<size_t>(c.index));
    c.out_sent = 0;
    flush(c, slot);
  };

  const SteadyClock::time_point start = SteadyClock::now();
  for (int i = 0; i < count; i++) dispatch(conns[static_cast<size_t>(i)], static_cast<uint32_t>(i));
  std::vector<epoll_event> events(static_cast<size_t>(count));
  SteadyClock::time_point last_progress = start;
  char buf[65536];
  while (done < n) {
    if (open == 0) {
      fail("every connection closed");
      done = n;
      break;
    }
    const int ready = epoll_wait(ep, events.data(), count, 1000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) Die(std::string("epoll_wait: ") + std::strerror(errno));
    if (ready == 0 && Seconds(last_progress, SteadyClock::now()) > 30) {
      fail("no answer for 30 s");
      done = n;
      break;
    }
    for (int e = 0; e < ready; e++) {
      const uint32_t slot = events[static_cast<size_t>(e)].data.u32;
      Conn& c = conns[slot];
      if (c.fd < 0) continue;
      if ((events[static_cast<size_t>(e)].events & EPOLLOUT) != 0) flush(c, slot);
      if (c.fd < 0) continue;
      bool closed = false;
      for (;;) {
        const ssize_t r = read(c.fd, buf, sizeof(buf));
        if (r > 0) {
          c.in.append(buf, static_cast<size_t>(r));
          if (static_cast<size_t>(r) < sizeof(buf)) break;
          continue;
        }
        if (r < 0 && errno == EAGAIN) break;
        if (r < 0 && errno == EINTR) continue;
        closed = true;
        break;
      }
      for (;;) {
        Response response;
        const long used = ParseResponse(c.in, &response);
        if (used == 0) break;
        if (used < 0 || c.index < 0) {
          drop(c, used < 0 ? "malformed response" : "an answer to no request");
          closed = false;
          break;
        }
        c.in.erase(0, static_cast<size_t>(used));
        const std::string why = check(static_cast<size_t>(c.index), response);
        if (why.empty()) {
          phase.ok++;
        } else {
          fail(why);
        }
        c.index = -1;
        done++;
        last_progress = SteadyClock::now();
        dispatch(c, slot);
        if (c.fd < 0) break;
      }
      if (closed && c.fd >= 0) drop(c, "the server closed a connection");
    }
  }
  phase.seconds = Seconds(start, SteadyClock::now());
  for (Conn& c : conns) {
    if (c.fd >= 0) close(c.fd);
  }
  close(ep);
  return phase;
}

// ---- Server CPU -------------------------------------------------------------------------------

double ClientCpu() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// ---- RSA --------------------------------------------------------------------------------------

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct CtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};

std::string PublicDer(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key, &der);
  if (n <= 0) Die("i2d_PUBKEY failed");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

// Decrypts ciphertexts[i] into secrets[i] on `threads` threads; returns how many failed.
size_t DecryptAll(EVP_PKEY* key, const std::vector<std::string>& ciphertexts,
                  std::vector<std::string>* secrets, int threads) {
  std::atomic<size_t> next{0};
  std::atomic<size_t> failed{0};
  secrets->assign(ciphertexts.size(), std::string());
  auto work = [&] {
    std::unique_ptr<EVP_PKEY_CTX, CtxFree> ctx(EVP_PKEY_CTX_new(key, nullptr));
    if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) != 1) {
      Die("cannot set up RSA-OAEP decryption");
    }
    unsigned char out[512];
    for (size_t i = next++; i < ciphertexts.size(); i = next++) {
      const std::string& in = ciphertexts[i];
      size_t length = sizeof(out);
      if (in.empty() ||
          EVP_PKEY_decrypt(ctx.get(), out, &length,
                           reinterpret_cast<const unsigned char*>(in.data()), in.size()) != 1) {
        failed++;
        continue;
      }
      (*secrets)[i].assign(reinterpret_cast<char*>(out), length);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; t++) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  return failed.load();
}

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; i++) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0xF];
  }
  return out;
}

std::string Fmt(double value, int decimals = 0) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*f", decimals, value);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // A closed connection is an error to count, not an exit.
  const Flags flags = ParseFlags(argc, argv);
  const size_t n = flags.logins;
  const int threads = flags.decrypt_threads > 0
                          ? flags.decrypt_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const std::string root = "Basic " + Base64("root:" + flags.root_token);

  // The key: made here, registered under a fresh id (runs against one daemon do not collide).
  const SteadyClock::time_point keygen_start = SteadyClock::now();
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_RSA_gen(2048));
  if (!key) Die("RSA key generation failed");
  unsigned char random[4];
  RAND_bytes(random, sizeof(random));
  const std::string id = "bench-" + Hex(random, sizeof(random));
  nlohmann::json create = {{"id", id},
                           {"ttl", 3600},
                           {"groups", {"ci"}},
                           {"description", "tap_bench"},
                           {"publicKey", Base64(PublicDer(key.get()))}};
  const Response created =
      Exchange(flags, Request(flags, "POST", "/api/v1/apikey", create.dump(), root));
  if (created.status / 100 != 2) {
    Die("POST /api/v1/apikey: HTTP " + std::to_string(created.status) + " " + created.body);
  }
  std::printf("tap_bench: key %s (RSA-2048, made and registered in %.2f s); %zu logins over %d "
              "connections; %d decryption thread(s)\n",
              id.c_str(), Seconds(keygen_start, SteadyClock::now()), n, flags.connections,
              threads);
  if (flags.pid > 0 && ProcessCpuSeconds(flags.pid) < 0) {
    Die("--pid: cannot read /proc/PID/stat", 2);
  }

  // A: hands.
  std::vector<std::string> ciphertexts(n);
  const std::string hand_request =
      Request(flags, "POST", "/tap/v1/hand", nlohmann::json({{"id", id}}).dump());
  double cpu0 = ProcessCpuSeconds(flags.pid);
  double client0 = ClientCpu();
  const Phase hands = RunPhase(
      flags, n, [&](size_t) { return hand_request; },
      [&](size_t i, Response& r) -> std::string {
        if (r.status != 200) return "hand: HTTP " + std::to_string(r.status) + " " + r.body;
        if (!Unbase64(r.body, &ciphertexts[i]) || ciphertexts[i].size() != 256) {
          return "hand: not the base64 of an RSA-2048 ciphertext: " + r.body.substr(0, 80);
        }
        return "";
      });
  const double cpu_hands = flags.pid > 0 ? ProcessCpuSeconds(flags.pid) - cpu0 : -1;
  const double client_hands = ClientCpu() - client0;

  // B: decryption (not counted).
  const SteadyClock::time_point decrypt_start = SteadyClock::now();
  std::vector<std::string> secrets;
  const size_t undecryptable = DecryptAll(key.get(), ciphertexts, &secrets, threads);
  const double decrypt_seconds = Seconds(decrypt_start, SteadyClock::now());
  if (hands.failed != 0 || undecryptable != 0) {
    // Shaking with missing secrets would only make authentication failures (and 429s).
    std::printf("  hands: %zu failed (first: %s); %zu secrets did not decrypt; no shakes made\n",
                hands.failed, hands.first_error.c_str(), undecryptable);
    std::printf("TAP logins=%zu errors=%zu result=INVALID\n", n, hands.failed + undecryptable);
    return 1;
  }

  // C: shakes.
  std::unordered_set<std::string> session_ids;
  nlohmann::json last_data;
  cpu0 = ProcessCpuSeconds(flags.pid);
  client0 = ClientCpu();
  const Phase shakes = RunPhase(
      flags, n,
      [&](size_t i) {
        return Request(flags, "POST", "/tap/v1/shake",
                       nlohmann::json({{"id", id}, {"secret", secrets[i]}}).dump());
      },
      [&](size_t, Response& r) -> std::string {
        if (r.status != 200) return "shake: HTTP " + std::to_string(r.status) + " " + r.body;
        nlohmann::json answer = nlohmann::json::parse(r.body, nullptr, false);
        if (!answer.is_object() || answer.value("id", "") != id || !answer.contains("data") ||
            !answer["data"].is_object()) {
          return "shake: not {id, data}: " + r.body.substr(0, 120);
        }
        nlohmann::json& data = answer["data"];
        for (const char* field : {"userName", "token", "sessionId"}) {
          if (!data.contains(field) || !data[field].is_string() ||
              data[field].get<std::string>().empty()) {
            return std::string("shake: data.") + field + " missing: " + r.body.substr(0, 120);
          }
        }
        if (!session_ids.insert(data["sessionId"].get<std::string>()).second) {
          return "shake: a session id given twice";
        }
        last_data = std::move(data);
        return "";
      });
  const double cpu_shakes = flags.pid > 0 ? ProcessCpuSeconds(flags.pid) - cpu0 : -1;
  const double client_shakes = ClientCpu() - client0;

  // The Bearer check.
  std::string bearer_result = "not tried (no session)";
  bool bearer_ok = false;
  if (last_data.is_object()) {
    const Response status = Exchange(
        flags, Request(flags, "GET", "/api/v1/status", "", "Bearer " + Base64(last_data.dump())));
    bearer_ok = status.status == 200;
    bearer_result = "HTTP " + std::to_string(status.status) +
                    (bearer_ok ? "" : " " + status.body.substr(0, 120));
  }

  const double hands_rate = static_cast<double>(n) / hands.seconds;
  const double shakes_rate = static_cast<double>(n) / shakes.seconds;
  const double logins_rate = static_cast<double>(n) / (hands.seconds + shakes.seconds);
  const size_t errors = hands.failed + shakes.failed + undecryptable + (bearer_ok ? 0 : 1);
  const bool met = errors == 0 && logins_rate >= flags.target;
  auto per_op_us = [&](double cpu) {
    return cpu < 0 ? std::string("n/a") : Fmt(cpu * 1e6 / static_cast<double>(n), 1);
  };

  std::printf("  A hands   %8zu in %6.3f s  %8.0f hands/s   server CPU %s us/hand, client %s "
              "us/hand, %zu failed\n",
              n, hands.seconds, hands_rate, per_op_us(cpu_hands).c_str(),
              Fmt(client_hands * 1e6 / n, 1).c_str(), hands.failed);
  std::printf("  B decrypt %8zu in %6.3f s  %8.0f /s on %d thread(s) (client work, not counted), "
              "%zu failed\n",
              n, decrypt_seconds, static_cast<double>(n) / decrypt_seconds, threads,
              undecryptable);
  std::printf("  C shakes  %8zu in %6.3f s  %8.0f shakes/s  server CPU %s us/shake, client %s "
              "us/shake, %zu failed\n",
              n, shakes.seconds, shakes_rate, per_op_us(cpu_shakes).c_str(),
              Fmt(client_shakes * 1e6 / n, 1).c_str(), shakes.failed);
  const double cpu_login = cpu_hands < 0 ? -1 : cpu_hands + cpu_shakes;
  std::printf("  logins    %8zu in %6.3f s  %8.0f logins/s  server CPU %s us/login "
              "(N / (tA + tC))\n",
              n, hands.seconds + shakes.seconds, logins_rate, per_op_us(cpu_login).c_str());
  std::printf("  distinct sessions %zu; Bearer of the last one on GET /api/v1/status: %s\n",
              session_ids.size(), bearer_result.c_str());
  if (!hands.first_error.empty()) {
    std::printf("  first hand error: %s\n", hands.first_error.c_str());
  }
  if (!shakes.first_error.empty()) {
    std::printf("  first shake error: %s\n", shakes.first_error.c_str());
  }
  std::printf("  target >= %.0f logins/s: %s\n", flags.target,
              errors != 0 ? "INVALID (errors)" : met ? "met" : "missed");
  std::printf("TAP logins=%zu connections=%d hands_per_s=%.0f shakes_per_s=%.0f "
              "logins_per_s=%.0f decrypt_s=%.3f cpu_us_per_login=%s errors=%zu result=%s\n",
              n, flags.connections, hands_rate, shakes_rate, logins_rate, decrypt_seconds,
              per_op_us(cpu_login).c_str(), errors,
              errors != 0 ? "INVALID" : met ? "met" : "missed");
  return errors == 0 ? 0 : 1;
}
