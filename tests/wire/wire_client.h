// Wire-level test clients for cloister's HTTP servers (testonly).
//
// WireConnection is a blocking TCP (optionally TLS) client that sends exact bytes and reads
// exact responses, so tests can send what real clients would never send (malformed requests,
// a byte a second, pipelined bursts). Every read and write has a deadline: a test never hangs
// on a server that misbehaves. RunProgram runs curl or openssl with a timeout. MakeTestPki
// writes a throwaway CA, a server certificate for 127.0.0.1/localhost, and encrypted copies of
// the server key, with the openssl CLI.
//
// Not thread-safe: one test thread drives one WireConnection.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "log/status.h"

namespace cloister::testing {

struct WireTarget {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  bool tls = false;
  // With tls: the CA file to verify the server against; empty: no verification.
  std::string ca_file;
  // With tls: a client certificate and its private key (PEM files) to present, for servers
  // that authenticate clients by certificate; empty: none.
  std::string client_cert_file;
  std::string client_key_file;

  // "http://127.0.0.1:8090" or "https://...".
  std::string BaseUrl() const;
};

struct WireResponse {
  int version_minor = 1;
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // First value of a header (case-insensitive name), or "" if absent.
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
};

class WireConnection {
 public:
  // Connects (and, for TLS, handshakes) within timeout_ms.
  static Result<std::unique_ptr<WireConnection>> Connect(const WireTarget& target,
                                                         int timeout_ms = 5000);
  ~WireConnection();
  WireConnection(const WireConnection&) = delete;
  WireConnection& operator=(const WireConnection&) = delete;

  // Sends every byte within timeout_ms.
  Status Send(std::string_view bytes, int timeout_ms = 5000);

  // Reads one response: status line, headers, then a Content-Length body (none for HEAD
  // requests and 1xx/204/304). A "100 Continue" is returned as a response of its own. Fails on
  // timeout, on close before a complete response, or if the response has neither
  // Content-Length nor a bodiless status (cloister always sends Content-Length).
  Result<WireResponse> ReadResponse(int timeout_ms = 5000, bool head_request = false);

  // Reads until the peer closes (EOF or reset). Returns what arrived (after anything already
  // buffered); fails if the connection is still open after timeout_ms.
  Result<std::string> ReadUntilClose(int timeout_ms = 5000);

  // True if the peer closes within timeout_ms and sent nothing more before closing; false if
  // bytes arrive or it stays open.
  bool ClosedSilently(int timeout_ms);

  // Half-close: no more bytes from us (TCP FIN; for TLS, close_notify then FIN).
  void ShutdownWrite();

  // Abortive close: the peer sees a reset (SO_LINGER 0), as when a client process dies.
  void Reset();

  // Whatever has been received but not yet consumed by ReadResponse.
  const std::string& buffered() const { return buffer_; }
  int fd() const { return fd_; }

 private:
  WireConnection() = default;
  // Reads what is available, waiting at most until deadline_ms (CLOCK_MONOTONIC ms).
  // Returns >0 bytes appended, 0 on EOF, <0 on timeout (-1) or error (-2).
  int ReadSome(int64_t deadline_ms);
  Status Handshake(int64_t deadline_ms);
  bool WaitFd(short events, int64_t deadline_ms);

  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string buffer_;
};

// Milliseconds on CLOCK_MONOTONIC.
int64_t MonotonicMs();

// A simple request: "<method> <target> HTTP/1.1\r\nHost: test\r\n" + extra_headers (each
// "Name: value\r\n") + Content-Length when body is non-empty or method is POST/PUT.
std::string MakeRequest(std::string_view method, std::string_view target,
                        std::string_view body = "", std::string_view extra_headers = "");

struct ProgramResult {
  int wait_status = 0;
  bool timed_out = false;
  std::string out;
  std::string err;
  bool Succeeded() const;  // Exited with code 0 within the time.
  std::string Describe() const;  // For failure messages: status and stderr.
};

// Runs program (looked up in PATH) with args, stdin from /dev/null, killing it after
// timeout_ms.
ProgramResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                         int timeout_ms = 20000);

// Files written by MakeTestPki, all PEM.
struct TestPki {
  std::string ca_cert;
  std::string ca_key;
  std::string server_cert;          // For CN=127.0.0.1, SAN IP:127.0.0.1 and DNS:localhost.
  std::string server_chain;         // server_cert followed by ca_cert.
  std::string server_key;           // Unencrypted PKCS#8.
  std::string server_key_encrypted; // PKCS#8, AES-256, passphrase kTestKeyPassphrase.
  std::string server_key_legacy_encrypted;  // Traditional "Proc-Type: 4,ENCRYPTED".
  std::string other_key;            // An unrelated key (mismatch tests).
};

inline constexpr const char* kTestKeyPassphrase = "cloister-test";

// Generates the files in dir (RSA 2048, valid for two days). Errors carry openssl's stderr.
Result<TestPki> MakeTestPki(const std::string& dir);

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
uint64_t RaiseOpenFilesLimit();

}  // namespace cloister::testing
