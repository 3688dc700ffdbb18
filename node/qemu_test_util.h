// Test helpers for the qemu driver's tests (qemu_driver_test, qemu_policy_test): the test guest
// template (scripts/guest/build-image, built once per process and cached between runs), a
// driver over a temporary directory, and small host-side probes. Catch2: main thread only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "log/status.h"
#include "node/qemu_driver.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"

namespace cloister::node {

// The built template's directory (runs the build script once per process).
inline const std::string& GuestTemplate() {
  static const std::string dir = [] {
    const std::string script = testing::RunfilePath("scripts/guest/build-image");
    FILE* out = popen(("bash " + script + " 2>&1").c_str(), "r");
    REQUIRE(out != nullptr);
    std::string text;
    char buffer[4096];
    for (size_t n; (n = fread(buffer, 1, sizeof(buffer), out)) > 0;) text.append(buffer, n);
    const int rc = pclose(out);
    INFO(text);
    REQUIRE(rc == 0);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text.substr(text.rfind('\n') + 1);
  }();
  return dir;
}

// A driver over tmp/vms with tmp/templates/test-guest/v1 -> the built template.
struct Fixture {
  testing::TempDir tmp;
  QemuOptions options;
  std::unique_ptr<QemuDriver> driver;

  Fixture() {
    std::filesystem::create_directories(tmp.Sub("templates/test-guest"));
    std::filesystem::create_directory_symlink(GuestTemplate(), tmp.Sub("templates/test-guest/v1"));
    options.vm_dir = tmp.Sub("vms");
    options.templates_dir = tmp.Sub("templates");
    options.accel = QemuAccel::kTcg;
    options.stop_timeout = std::chrono::milliseconds(30'000);
    options.run_timeout_seconds = 60;
    Reopen();
  }
  ~Fixture() {
    // Leave no QEMU behind, whatever the test did.
    if (!driver) Reopen();
    if (auto vms = driver->List(); vms.ok()) {
      for (const VmSummary& vm : *vms) (void)driver->Delete(vm.name);
    }
  }
  void Reopen() {
    driver.reset();
    auto opened = QemuDriver::Open(options);
    REQUIRE(opened.ok());
    driver = std::move(*opened);
  }
  VmStatus StatusOf(const std::string& name) {
    auto info = driver->Show(name);
    REQUIRE(info.ok());
    return info->status;
  }
  GuestResult Run(const std::string& name, const std::string& script) {
    auto result = driver->Run(name, script);
    INFO(result.status().ToString());
    REQUIRE(result.ok());
    return *result;
  }
};

inline CloneSpec Spec(const std::string& name) {
  CloneSpec spec;
  spec.name = name;
  spec.template_id = "test-guest";
  return spec;
}

// Requires an OK Status, showing it otherwise.
#define REQUIRE_OK(expr)                  \
  do {                                    \
    const Status status_ = (expr);        \
    INFO(status_.ToString());             \
    REQUIRE(status_.ok());                \
  } while (0)

// A live process (a detached QEMU that exited may stay a zombie of whichever ancestor is the
// subreaper: that counts as gone).
inline bool ProcessExists(int pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

// Writes an executable shell script.
inline void WriteScript(const std::string& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
}

// GET path from 127.0.0.1:port; the whole answer, or empty.
inline std::string HttpGet(uint16_t port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) answer.append(buffer, n);
    }
  }
  close(fd);
  return answer;
}

}  // namespace cloister::node
