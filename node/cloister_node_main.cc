// cloister-node: the node agent's command line, shaped like Anka's ankacluster.
//
//   cloister-node join URL [--name N] [--groups a,b] [--max-vm-count N]
//                 [--capacity-mode number|resource] [--reserve-space 10GB] [--drain-mode]
//                 [--heartbeat 5s] [--data DIR]      register, save the config, run the agent
//                 [--cacert CA] [--skip-tls-verification|--insecure]
//                 [--cert PEM [--cert-key PEM]]      a client certificate (mTLS), or
//                 [--root-token T]                   the root token, or
//                 [--api-key-id ID (--api-key-string KEY | --api-key-file PATH)]  a UAK (TAP)
//                 [--driver sim|qemu [--qemu-dir DIR] [--qemu-templates DIR]
//                  [--qemu-accel auto|tcg|kvm]]      the hypervisor (default sim)
//   cloister-node run [--data DIR]                   run the agent with the saved config
//   cloister-node status [--data DIR]                the saved config and the controller's view
//   cloister-node disjoin [--data DIR]               remove the node from the controller
//
// At most one credential kind may be given. Exit status: 0 ok; 1 the controller refused or could
// not be reached, or the agent failed; 2 bad arguments (credentials included: a missing file, a
// key that is not an RSA private key, two kinds at once).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <optional>
#include <string>
#include <utility>

#include "node/agent.h"
#include "client/controller_client.h"

namespace cloister::node {
namespace {

std::atomic<Agent*> g_running_agent{nullptr};

void OnStopSignal(int) {
  if (Agent* agent = g_running_agent.load()) {
    agent->Stop();
  }
}

// "5s", "500ms", "2m" or plain seconds → milliseconds; 0 on a malformed value.
// "10GB" -> 10240, "500MB" -> 500, "1TB", "2G", "300" (MB); units are binary, any case.
std::optional<uint64_t> ParseSizeMb(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) digits++;
  if (digits == 0 || digits > 12) {
    return std::nullopt;
  }
  const uint64_t n = std::stoull(text.substr(0, digits));
  std::string unit = text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.empty() || unit == "M" || unit == "MB") return n;
  if (unit == "G" || unit == "GB") return n * 1024;
  if (unit == "T" || unit == "TB") return n * 1024 * 1024;
  return std::nullopt;
}

uint64_t ParseDurationMs(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    digits++;
  }
  if (digits == 0 || digits > 9) {
    return 0;
  }
  const uint64_t value = std::stoull(text.substr(0, digits));
  const std::string unit = text.substr(digits);
  if (unit.empty() || unit == "s") return value * 1000;
  if (unit == "ms") return value;
  if (unit == "m") return value * 60'000;
  return 0;
}

int RunAgent(const std::string& dir, const AgentConfig& config, bool join) {
  auto agent = Agent::Open(dir, config);
  if (!agent.ok()) {
    std::fprintf(stderr, "cloister-node: %s\n", agent.status().ToString().c_str());
    return 1;
  }
  if (join) {
    Status joined = (*agent)->Join();
    if (!joined.ok()) {
      std::fprintf(stderr, "cloister-node: %s\n", joined.message().c_str());
      return 1;
    }
    std::printf("Cluster join success\n");
    std::printf("Node id: %s\n", (*agent)->config().node_id.c_str());
    std::fflush(stdout);
  }
  g_running_agent = agent->get();
  struct sigaction action {};
  action.sa_handler = &OnStopSignal;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  Status ran = (*agent)->Run();
  g_running_agent = nullptr;
  if (!ran.ok()) {
    std::fprintf(stderr, "cloister-node: %s\n", ran.ToString().c_str());
    return 1;
  }
  return 0;
}

// The join flags' file paths, made absolute (the agent may later run from another directory)
// and checked to be readable. flag names the path in errors.
Status AbsoluteReadablePath(const char* flag, std::string* path) {
  if (path->empty()) {
    return Status::Ok();
  }
  std::error_code error;
  const std::filesystem::path absolute = std::filesystem::absolute(*path, error);
  if (!error) {
    *path = absolute.lexically_normal().string();
  }
  if (access(path->c_str(), R_OK) != 0) {
    return Status::InvalidArgument(std::string(flag) + " " + *path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

int Main(int argc, char** argv) {
  CLI::App app{"cloister-node: the cloister node agent (joins a controller, runs its VMs)"};
  app.require_subcommand(1);
  std::string dir = "./node-data";
  std::string url;
  std::string name;
  std::string groups;
  std::string capacity_mode = "number";
  std::string heartbeat = "5s";
  std::string ca_file;
  uint32_t max_vm_count = 2;
  std::string reserve_space = "0";
  bool drain_mode = false;
  bool insecure = false;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  name = host;

  auto* join = app.add_subcommand("join", "Join a controller, save the config and run the agent");
  join->add_option("url", url, "Controller URL, e.g. http://controller:8090")->required();
  join->add_option("--name", name, "Node name (default: the host name)");
  join->add_option("--groups", groups, "Node groups to join, comma-separated (names or ids)");
  join->add_option("--max-vm-count", max_vm_count, "Most VMs at once (number mode)")
      ->capture_default_str();
  join->add_option("--capacity-mode", capacity_mode, "number or resource")
      ->check(CLI::IsMember({"number", "resource"}))
      ->capture_default_str();
  join->add_option("--reserve-space", reserve_space,
                   "Disk space to keep free: 10GB, 500MB, 1TB (a bare number is MB)");
  join->add_flag("--drain-mode", drain_mode, "Join in drain mode: take no new VMs");
  join->add_option("--heartbeat", heartbeat, "Heartbeat interval (e.g. 5s, 500ms)")
      ->capture_default_str();
  join->add_option("--cacert", ca_file, "CA certificate (PEM) to verify an HTTPS controller");
  join->add_flag("--skip-tls-verification,--insecure", insecure,
                 "Do not verify an HTTPS controller's certificate");
  // Credentials: one kind at most (checked below).
  Credentials credentials;
  join->add_option("--cert", credentials.cert_file,
                   "Client certificate (PEM) to authenticate with (mTLS)");
  join->add_option("--cert-key", credentials.cert_key_file,
                   "The client certificate's private key (PEM), if not inside the --cert file");
  join->add_option("--root-token", credentials.root_token,
                   "The controller's root token (when it runs with ANKA_ENABLE_AUTH=true); kept "
                   "in the data directory's node.json (mode 0600)")
      ->envname("CLOISTER_ROOT_TOKEN");
  join->add_option("--api-key-id", credentials.api_key_id,
                   "UAK (API key) id to authenticate with through TAP");
  join->add_option("--api-key-string", credentials.api_key_string,
                   "The UAK's RSA private key itself (PEM, or the base64 the controller gave); "
                   "kept in node.json (mode 0600)");
  join->add_option("--api-key-file", credentials.api_key_file,
                   "A file holding the UAK's RSA private key (PEM or base64)");
  join->footer(
      "Credentials: at most one of --root-token, --api-key-id with --api-key-string or "
      "--api-key-file, --cert (with --cert-key unless the key is in the same file). They are "
      "kept in DATA/node.json (mode 0600): paths for files, the key itself for "
      "--api-key-string.");
  uint64_t sim_delay_ms = 0;
  join->add_option("--sim-delay", sim_delay_ms,
                   "sim driver: milliseconds each clone and start takes (for tests)");
  std::string driver = "sim";
  std::string qemu_dir;
  std::string qemu_templates;
  std::string qemu_accel = "auto";
  join->add_option("--driver", driver,
                   "Hypervisor driver: sim (simulated VMs), qemu, anka (Anka CLI) or tart")
      ->check(CLI::IsMember({"sim", "qemu", "anka", "tart"}))
      ->capture_default_str();
  join->add_option("--qemu-dir", qemu_dir, "qemu driver: the VMs' directory (default DATA/qemu)");
  join->add_option("--qemu-templates", qemu_templates,
                   "qemu driver: templates, TEMPLATES/<id>/<tag>/template.json (default "
                   "DATA/qemu-templates; scripts/guest/build-image makes one)");
  join->add_option("--qemu-accel", qemu_accel,
                   "qemu driver: tcg, kvm, or auto (kvm only if a probe boot works)")
      ->check(CLI::IsMember({"auto", "tcg", "kvm"}))
      ->capture_default_str();
  std::string driver_program;
  join->add_option("--driver-program", driver_program,
                   "anka/tart: absolute path of the CLI (default: its name on PATH)");
  auto* run = app.add_subcommand("run", "Run the agent with the config join saved");
  auto* status = app.add_subcommand("status", "Show the saved config and the controller's view");
  auto* disjoin = app.add_subcommand("disjoin", "Remove this node from the controller");
  for (CLI::App* command : {join, run, status, disjoin}) {
    command->add_option("--data", dir, "Agent data directory")->capture_default_str();
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  InitHttpClients();

  if (*join) {
    AgentConfig config;
    if (auto saved = LoadAgentConfig(dir); saved.ok()) {
      config.node_id = saved->node_id;  // Rejoin as the same node.
    }
    if (auto kind = CredentialKindOf(credentials); !kind.ok()) {
      std::fprintf(stderr, "cloister-node: join: %s\n", kind.status().message().c_str());
      return 2;
    }
    const std::pair<const char*, std::string*> files[] = {
        {"--cacert", &ca_file},
        {"--cert", &credentials.cert_file},
        {"--cert-key", &credentials.cert_key_file},
        {"--api-key-file", &credentials.api_key_file}};
    for (const auto& [flag, path] : files) {
      if (Status readable = AbsoluteReadablePath(flag, path); !readable.ok()) {
        std::fprintf(stderr, "cloister-node: join: %s\n", readable.message().c_str());
        return 2;
      }
    }
    config.controller_url = url;
    config.ca_file = ca_file;
    config.insecure = insecure;
    config.cert_file = credentials.cert_file;
    config.cert_key_file = credentials.cert_key_file;
    config.root_token = credentials.root_token;
    config.api_key_id = credentials.api_key_id;
    config.api_key_string = credentials.api_key_string;
    config.api_key_file = credentials.api_key_file;
    config.name = name;
    config.max_vm_count = max_vm_count;
    config.capacity_mode = capacity_mode;
    config.drain_mode = drain_mode;
    const std::optional<uint64_t> reserve_space_mb = ParseSizeMb(reserve_space);
    if (!reserve_space_mb) {
      std::fprintf(stderr, "cloister-node: --reserve-space %s: expected e.g. 10GB or 500MB\n",
                   reserve_space.c_str());
      return 2;
    }
    config.reserve_space_mb = *reserve_space_mb;
    config.sim_delay_ms = sim_delay_ms;
    config.driver = driver;
    config.qemu_accel = qemu_accel;
    for (auto [from, to] : {std::pair{&qemu_dir, &config.qemu_vm_dir},
                            std::pair{&qemu_templates, &config.qemu_templates_dir}}) {
      std::error_code error;
      if (!from->empty()) *to = std::filesystem::absolute(*from, error).lexically_normal();
    }
    config.driver_program = driver_program;
    config.heartbeat_ms = ParseDurationMs(heartbeat);
    if (config.heartbeat_ms == 0) {
      std::fprintf(stderr, "cloister-node: --heartbeat %s: expected e.g. 5s or 500ms\n",
                   heartbeat.c_str());
      return 2;
    }
    std::stringstream list(groups);
    for (std::string group; std::getline(list, group, ',');) {
      if (!group.empty()) config.groups.push_back(group);
    }
    auto options = ClientOptionsFor(config);  // Reads and checks an API key.
    if (!options.ok()) {
      std::fprintf(stderr, "cloister-node: join: %s\n", options.status().message().c_str());
      return 2;
    }
    std::printf("Testing connection to the controller...: ");
    std::fflush(stdout);
    ControllerClient client(std::move(*options));
    auto reply = client.Call("GET", "/api/v1/status", "", 10'000);
    if (!reply.ok() || !reply->ok) {
      std::printf("Failed\n");
      std::fprintf(stderr, "cloister-node: %s\n",
                   reply.ok() ? reply->message.c_str() : reply.status().message().c_str());
      return 1;
    }
    std::printf("Ok\n");
    std::fflush(stdout);
    return RunAgent(dir, config, /*join=*/true);
  }
  auto config = LoadAgentConfig(dir);
  if (!config.ok()) {
    std::fprintf(stderr, "cloister-node: %s\n", config.status().message().c_str());
    return 1;
  }
  if (*run) {
    return RunAgent(dir, *config, /*join=*/false);
  }
  auto options = ClientOptionsFor(*config);
  if (!options.ok()) {
    std::fprintf(stderr, "cloister-node: %s: %s\n", (dir + "/node.json").c_str(),
                 options.status().message().c_str());
    return 1;
  }
  ControllerClient client(std::move(*options));
  if (*status) {
    std::printf("Controller: %s\nNode id: %s\nName: %s\n", config->controller_url.c_str(),
                config->node_id.c_str(), config->name.c_str());
    auto reply = client.Call("GET", "/api/v1/node?id=" + config->node_id, "", 10'000);
    if (!reply.ok()) {
      std::printf("State: unknown (%s)\n", reply.status().message().c_str());
      return 1;
    }
    if (!reply->ok || !reply->body.is_array() || reply->body.empty()) {
      std::printf("State: not registered (%s)\n", reply->message.c_str());
      return 1;
    }
    const nlohmann::json& node = reply->body[0];
    std::printf("State: %s\nVMs: %s\n", node.value("state", "").c_str(),
                node.value("vm_count", nlohmann::json(0)).dump().c_str());
    return 0;
  }
  // disjoin
  auto reply = client.Call("DELETE", "/api/v1/node",
                           nlohmann::json{{"node_id", config->node_id}}.dump(), 10'000);
  if (!reply.ok() || !reply->ok) {
    std::fprintf(stderr, "cloister-node: %s\n",
                 reply.ok() ? reply->message.c_str() : reply.status().message().c_str());
    return 1;
  }
  config->node_id.clear();
  if (Status saved = SaveAgentConfig(dir, *config); !saved.ok()) {
    std::fprintf(stderr, "cloister-node: %s\n", saved.message().c_str());
    return 1;
  }
  std::printf("Cluster disjoin success\n");
  return 0;
}

}  // namespace
}  // namespace cloister::node

int main(int argc, char** argv) { return cloister::node::Main(argc, argv); }
