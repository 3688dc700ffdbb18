// `cloister-node join`'s credential flags, run as a process: the seeds' spellings, one kind at
// most, readable files, clear key errors that never echo the key, node.json, and a join with an
// API key against a fake controller (fake_controller.h).
#include <sys/stat.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "client/fake_controller.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"

namespace cloister::node {
namespace {

using ::cloister::testing::ChildProcess;
using ::cloister::testing::RunfilePath;
using ::cloister::testing::TempDir;

struct Run {
  int exit_code = -1;
  std::string out;
  std::string err;
};

Run Node(std::vector<std::string> args) {
  args.insert(args.begin(), RunfilePath("node/cloister-node"));
  ChildProcess child(args, {"CLOISTER_ROOT_TOKEN="});
  const int status = child.Wait();
  Run run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = child.out();
  run.err = child.err();
  return run;
}

// Runs `cloister-node join ...` (args after the program) until it prints "Cluster join
// success", exits, or 15 s pass; then stops it. exit_code is not kept: SIGTERM ends a joined
// agent, so only what it printed tells.
Run JoinUntilSuccess(std::vector<std::string> args) {
  args.insert(args.begin(), RunfilePath("node/cloister-node"));
  ChildProcess agent(args, {"CLOISTER_ROOT_TOKEN="});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (agent.out().find("Cluster join success") == std::string::npos && agent.Running() &&
         std::chrono::steady_clock::now() < deadline) {
    agent.ReadUntil(std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
  }
  agent.Kill(SIGTERM);
  agent.Wait();
  Run run;
  run.out = agent.out();
  run.err = agent.err();
  return run;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST_CASE("join --help names every credential flag as the seeds spell them") {
  const Run run = Node({"join", "--help"});
  CHECK(run.exit_code == 0);
  for (const char* flag :
       {"--cacert", "--skip-tls-verification", "--insecure", "--cert ", "--cert-key",
        "--root-token", "--api-key-id", "--api-key-string", "--api-key-file"}) {
    INFO(flag << "\n" << run.out);
    CHECK(Contains(run.out, flag));
  }
}

TEST_CASE("join refuses credentials that mix kinds or are incomplete, before any request") {
  TempDir dir;
  const std::string url = "http://127.0.0.1:1";  // Nothing listens: only exit 2 proves it.
  const std::string key_file = dir.Sub("uak.pem");
  client::testing::WriteTextFile(key_file, client::testing::PemPkcs1(client::testing::GenerateRsaKey()));
  const std::string data = dir.Sub("data");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--root-token", "t", "--api-key-id", "k", "--api-key-file", key_file},
       "give one credential only"},
      {{"--cert", key_file, "--root-token", "t"}, "give one credential only"},
      {{"--cert", key_file, "--api-key-id", "k", "--api-key-file", key_file},
       "give one credential only"},
      {{"--api-key-id", "k"}, "either --api-key-string or --api-key-file"},
      {{"--api-key-file", key_file}, "an API key needs its id: --api-key-id"},
      {{"--api-key-id", "k", "--api-key-file", key_file, "--api-key-string", "x"},
       "either --api-key-string or --api-key-file"},
      {{"--cert-key", key_file}, "--cert-key needs its certificate: --cert"},
      {{"--api-key-id", "k", "--api-key-file", dir.Sub("missing.pem")},
       "--api-key-file " + dir.Sub("missing.pem") + ": No such file"},
      {{"--cert", dir.Sub("nope.pem")}, "--cert " + dir.Sub("nope.pem") + ": No such file"},
      {{"--cacert", dir.Sub("ca.pem")}, "--cacert " + dir.Sub("ca.pem") + ": No such file"},
  };
  for (const auto& [flags, expected] : cases) {
    std::vector<std::string> args = {"join", url, "--data", data};
    args.insert(args.end(), flags.begin(), flags.end());
    const Run run = Node(args);
    INFO(run.err);
    CHECK(run.exit_code == 2);
    CHECK(Contains(run.err, expected));
    CHECK_FALSE(Contains(run.out, "Testing connection"));
  }
}

TEST_CASE("join --driver offers sim, anka and tart; another name is refused before any request") {
  const Run help = Node({"join", "--help"});
  CHECK(help.exit_code == 0);
  CHECK(Contains(help.out, "--driver TEXT:{sim,qemu,anka,tart}=sim"));
  CHECK(Contains(help.out, "--driver-program"));
  TempDir dir;
  const Run run = Node({"join", "http://127.0.0.1:1", "--data", dir.Sub("data"), "--driver",
                        "qemu-typo"});
  CHECK(run.exit_code == 2);
  CHECK(Contains(run.err, "--driver: qemu-typo not in {sim,qemu,anka,tart}"));
  CHECK_FALSE(Contains(run.out, "Testing connection"));
}

TEST_CASE("join: a key that is not an RSA private key is named, never echoed") {
  TempDir dir;
  const std::string canary = "Y2FuYXJ5LWtleS1tYXRlcmlhbC0xMjM0NQ==";
  Run run = Node({"join", "http://127.0.0.1:1", "--data", dir.Sub("data"), "--api-key-id", "k",
                  "--api-key-string", canary});
  INFO(run.err);
  CHECK(run.exit_code == 2);
  CHECK(Contains(run.err, "--api-key-string: not an RSA private key"));
  CHECK_FALSE(Contains(run.err + run.out, canary));

  const std::string ec_file = dir.Sub("ec.pem");
  client::testing::WriteTextFile(ec_file, client::testing::PemPkcs8(client::testing::GenerateEcKey()));
  run = Node({"join", "http://127.0.0.1:1", "--data", dir.Sub("data"), "--api-key-id", "k",
              "--api-key-file", ec_file});
  INFO(run.err);
  CHECK(run.exit_code == 2);
  CHECK(Contains(run.err, "--api-key-file " + ec_file + ": not an RSA private key"));
  CHECK_FALSE(Contains(run.err, "BEGIN"));
}

TEST_CASE("join with an API key file: TAP, join, and node.json keeps the settings") {
  TempDir dir;
  const client::testing::Pkey key = client::testing::GenerateRsaKey();
  client::testing::FakeController controller;
  controller.AddApiKey("node-uak", key);
  const std::string key_file = dir.Sub("uak.pem");
  client::testing::WriteTextFile(key_file, client::testing::Base64DerPkcs1(key));
  const std::string data = dir.Sub("data");
  const Run agent =
      JoinUntilSuccess({"join", controller.url(), "--name", "n1", "--data", data, "--heartbeat",
                        "200ms", "--skip-tls-verification", "--api-key-id", "node-uak",
                        "--api-key-file", key_file});
  INFO(agent.out << agent.err);
  CHECK(Contains(agent.out, "Testing connection to the controller...: Ok"));
  CHECK(Contains(agent.out, "Cluster join success"));
  CHECK(controller.hands() >= 1);
  for (const auto& request : controller.requests()) {
    INFO(request.path);
    CHECK(request.headers.count("authorization") == 1);
    CHECK(request.headers.at("authorization").rfind("Bearer ", 0) == 0);
  }
  CHECK(controller.unauthorized() == 0);

  const nlohmann::json saved = nlohmann::json::parse(ReadFile(data + "/node.json"));
  CHECK(saved["api_key_id"] == "node-uak");
  CHECK(saved["api_key_file"] == key_file);
  CHECK_FALSE(saved.contains("api_key_string"));
  CHECK(saved["insecure"] == true);
  CHECK(saved["node_id"] == "node-1");
  struct stat info {};
  REQUIRE(stat((data + "/node.json").c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
}

TEST_CASE("join with --api-key-string keeps the key itself in node.json") {
  TempDir dir;
  const client::testing::Pkey key = client::testing::GenerateRsaKey();
  client::testing::FakeController controller;
  controller.AddApiKey("node-uak", key);
  const std::string data = dir.Sub("data");
  const std::string pem = client::testing::PemPkcs8(key);
  const Run agent = JoinUntilSuccess({"join", controller.url(), "--data", data, "--api-key-id",
                                      "node-uak", "--api-key-string", pem});
  INFO(agent.out << agent.err);
  CHECK(Contains(agent.out, "Cluster join success"));
  CHECK_FALSE(Contains(agent.out + agent.err, "PRIVATE KEY"));
  const nlohmann::json saved = nlohmann::json::parse(ReadFile(data + "/node.json"));
  CHECK(saved["api_key_string"] == pem);
  CHECK_FALSE(saved.contains("api_key_file"));
  CHECK_FALSE(saved.contains("root_token"));
}

TEST_CASE("join --driver qemu keeps the driver settings and opens its VM directory") {
  TempDir dir;
  const client::testing::Pkey key = client::testing::GenerateRsaKey();
  client::testing::FakeController controller;
  controller.AddApiKey("node-uak", key);
  const std::string data = dir.Sub("data");
  const std::string pem = client::testing::PemPkcs8(key);
  const Run agent = JoinUntilSuccess(
      {"join", controller.url(), "--data", data, "--api-key-id", "node-uak", "--api-key-string",
       pem, "--driver", "qemu", "--qemu-accel", "tcg", "--qemu-templates", dir.Sub("templates")});
  INFO(agent.out << agent.err);
  CHECK(Contains(agent.out, "Cluster join success"));
  const nlohmann::json saved = nlohmann::json::parse(ReadFile(data + "/node.json"));
  CHECK(saved["driver"] == "qemu");
  CHECK(saved["qemu_accel"] == "tcg");
  CHECK(saved["qemu_templates_dir"] == dir.Sub("templates"));
  CHECK(saved["qemu_vm_dir"] == "");  // DATA/qemu.
  struct stat info {};
  CHECK(stat((data + "/qemu/qemu.lock").c_str(), &info) == 0);  // The qemu driver ran there.
  CHECK(stat((data + "/sim").c_str(), &info) != 0);

  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--driver", "vmware"},
        std::vector<std::string>{"--driver", "qemu", "--qemu-accel", "fast"}}) {
    std::vector<std::string> args = {"join", controller.url(), "--data", dir.Sub("bad")};
    args.insert(args.end(), bad.begin(), bad.end());
    const Run run = Node(args);
    INFO(run.err);
    CHECK(run.exit_code == 2);
    CHECK(stat(dir.Sub("bad/node.json").c_str(), &info) != 0);
  }
}

}  // namespace
}  // namespace cloister::node
