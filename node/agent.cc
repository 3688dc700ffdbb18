#include "node/agent.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "log/atomic_file.h"
#include "log/base64.h"

namespace cloister::node {
namespace {

using Json = nlohmann::json;

constexpr long kCallTimeoutMs = 10'000;
constexpr uint64_t kPollWaitMs = 5'000;  // Short enough that Stop is honoured quickly.
constexpr uint64_t kRetryPauseMs = 1'000;
constexpr size_t kReportsPerCall = 200;

std::string ConfigPath(const std::string& dir) { return dir + "/node.json"; }

std::optional<DesiredState> ParseDesired(const std::string& text) {
  if (text == "Started") return DesiredState::kStarted;
  if (text == "Stopped") return DesiredState::kStopped;
  if (text == "Terminated") return DesiredState::kTerminated;
  return std::nullopt;
}

Json ReportJson(const Report& report) {
  Json j;
  j["seq"] = report.seq;  // The controller records each seq once (resends are harmless).
  j["instance_id"] = report.instance_id;
  j["state"] = InstanceStateName(report.state);
  if (!report.message.empty()) j["message"] = report.message;
  if (report.state == InstanceState::kStarted) j["progress"] = 1;
  if (report.vm) {
    j["vm_uuid"] = report.vm->uuid;
    if (!report.vm->ip.empty()) j["ip"] = report.vm->ip;
    if (report.vm->vnc_port != 0) j["vnc_port"] = report.vm->vnc_port;
  }
  if (report.script_result) {
    j["script"] = {{"exit_code", report.script_result->exit_code},
                   {"output", report.script_result->output}};
  }
  return j;
}

}  // namespace

Result<AgentConfig> LoadAgentConfig(const std::string& dir) {
  std::ifstream in(ConfigPath(dir));
  if (!in) {
    return Status::NotFound(ConfigPath(dir) + ": not found (run cloister-node join first)");
  }
  std::stringstream text;
  text << in.rdbuf();
  Json j = Json::parse(text.str(), nullptr, false);
  if (!j.is_object()) {
    return Status::Corruption(ConfigPath(dir) + ": not a JSON object");
  }
  AgentConfig c;
  try {
    c.controller_url = j.value("controller_url", "");
    c.ca_file = j.value("ca_file", "");
    c.insecure = j.value("insecure", false);
    c.node_id = j.value("node_id", "");
    c.name = j.value("name", "");
    c.groups = j.value("groups", std::vector<std::string>{});
    c.max_vm_count = j.value("max_vm_count", 2u);
    c.capacity_mode = j.value("capacity_mode", "number");
    c.drain_mode = j.value("drain_mode", false);
    c.heartbeat_ms = j.value("heartbeat_ms", uint64_t{5000});
    c.reserve_space_mb = j.value("reserve_space_mb", uint64_t{0});
    c.ip_address = j.value("ip_address", "");
    c.sim_delay_ms = j.value("sim_delay_ms", uint64_t{0});
    c.update_seq = j.value("update_seq", uint64_t{0});
    c.cert_file = j.value("cert_file", "");
    c.cert_key_file = j.value("cert_key_file", "");
    c.root_token = j.value("root_token", "");
    c.api_key_id = j.value("api_key_id", "");
    c.api_key_string = j.value("api_key_string", "");
    c.api_key_file = j.value("api_key_file", "");
    c.api_key_session_max_age_ms = j.value("api_key_session_max_age_ms", uint64_t{240'000});
  } catch (const std::exception& e) {
    return Status::Corruption(ConfigPath(dir) + ": " + e.what());
  }
  return c;
}

Status SaveAgentConfig(const std::string& dir, const AgentConfig& c) {
  Json j;
  j["controller_url"] = c.controller_url;
  j["ca_file"] = c.ca_file;
  j["insecure"] = c.insecure;
  j["node_id"] = c.node_id;
  j["name"] = c.name;
  j["groups"] = c.groups;
  j["max_vm_count"] = c.max_vm_count;
  j["capacity_mode"] = c.capacity_mode;
  j["drain_mode"] = c.drain_mode;
  j["heartbeat_ms"] = c.heartbeat_ms;
  j["reserve_space_mb"] = c.reserve_space_mb;
  j["ip_address"] = c.ip_address;
  j["sim_delay_ms"] = c.sim_delay_ms;
  j["update_seq"] = c.update_seq;
  // Credentials only when set: a node.json without them is the same as before they existed.
  const std::pair<const char*, const std::string*> credentials[] = {
      {"cert_file", &c.cert_file},           {"cert_key_file", &c.cert_key_file},
      {"root_token", &c.root_token},         {"api_key_id", &c.api_key_id},
      {"api_key_string", &c.api_key_string}, {"api_key_file", &c.api_key_file}};
  for (const auto& [name, value] : credentials) {
    if (!value->empty()) j[name] = *value;
  }
  j["api_key_session_max_age_ms"] = c.api_key_session_max_age_ms;
  return log::WriteFileAtomic(ConfigPath(dir), j.dump(2) + "\n", 0600);
}

Result<std::unique_ptr<Agent>> Agent::Open(const std::string& dir, AgentConfig config) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return Status::IoError("create " + dir + ": " + error.message());
  }
  auto client_options = ClientOptionsFor(config);
  if (!client_options.ok()) {
    return client_options.status();
  }
  std::unique_ptr<Agent> agent(new Agent(dir, std::move(config)));
  agent->client_options_ = std::move(*client_options);
  auto store = AgentStore::Open(dir + "/agent");
  if (!store.ok()) {
    return store.status();
  }
  agent->store_ = std::move(*store);
  SimOptions sim;
  const auto half = std::chrono::microseconds(agent->config_.sim_delay_ms * 500);
  for (SimOp op : {SimOp::kClone, SimOp::kStart}) {
    sim.delays[static_cast<size_t>(op)] = SimDelay{half, half};
  }
  auto driver = SimDriver::Open(dir + "/sim", sim);
  if (!driver.ok()) {
    return driver.status();
  }
  agent->driver_ = std::move(*driver);
  ReconcilerOptions reconciler_options;
  Agent* self = agent.get();
  reconciler_options.on_reports = [self] {
    std::lock_guard<std::mutex> lock(self->reports_mu_);
    self->reports_new_ = true;
    self->reports_cv_.notify_one();
  };
  agent->reconciler_ = std::make_unique<Reconciler>(agent->driver_.get(), agent->store_.get(),
                                                    reconciler_options);
  return agent;
}

Credentials CredentialsOf(const AgentConfig& config) {
  Credentials credentials;
  credentials.root_token = config.root_token;
  credentials.api_key_id = config.api_key_id;
  credentials.api_key_string = config.api_key_string;
  credentials.api_key_file = config.api_key_file;
  credentials.cert_file = config.cert_file;
  credentials.cert_key_file = config.cert_key_file;
  return credentials;
}

Result<ControllerClientOptions> ClientOptionsFor(const AgentConfig& config) {
  ClientAuthOptions auth_options;
  auth_options.max_session_age = std::chrono::milliseconds(config.api_key_session_max_age_ms);
  auto auth = ClientAuth::Create(CredentialsOf(config), auth_options);
  if (!auth.ok()) {
    return auth.status();
  }
  ControllerClientOptions options;
  options.url = config.controller_url;
  options.ca_file = config.ca_file;
  options.insecure = config.insecure;
  options.cert_file = config.cert_file;
  options.key_file = config.cert_key_file;
  if ((*auth)->kind() != CredentialKind::kNone) {
    options.auth = std::move(*auth);
  }
  return options;
}

ControllerClientOptions Agent::ClientOptions() const {
  std::lock_guard<std::mutex> lock(config_mu_);
  return client_options_;
}

Status Agent::Join() {
  ControllerClient client(ClientOptions());
  Json body;
  if (!config_.node_id.empty()) {
    body["node_id"] = config_.node_id;
  }
  body["node_name"] = config_.name;
  body["ip_address"] = config_.ip_address;
  body["cpu_count"] = std::max(1u, std::thread::hardware_concurrency());
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  body["ram_mb"] = pages > 0 && page_size > 0
                       ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) >> 20
                       : 0;
  body["max_vm_count"] = config_.max_vm_count;
  body["capacity_mode"] = config_.capacity_mode;
  utsname host{};
  if (uname(&host) == 0) {
    body["arch"] = host.machine;
  }
  body["hypervisor"] = "sim";
  body["groups"] = config_.groups;
  body["drain_mode"] = config_.drain_mode;
  body["agent_version"] = kAgentVersion;
  // The space left for VMs: what the data directory's filesystem has free, less the reserve.
  struct statvfs fs {};
  if (statvfs(dir_.c_str(), &fs) == 0) {
    const uint64_t free_mb = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize >> 20;
    body["free_disk_space_mb"] = free_mb > config_.reserve_space_mb
                                     ? free_mb - config_.reserve_space_mb
                                     : 0;
  }
  auto reply = client.Call("POST", "/node/v1/join", body.dump(), kCallTimeoutMs);
  if (!reply.ok()) {
    return reply.status();
  }
  if (!reply->ok || !reply->body.is_object() || !reply->body["node_id"].is_string()) {
    return Status::InvalidArgument("the controller refused the join: " + reply->message);
  }
  std::lock_guard<std::mutex> lock(config_mu_);
  config_.node_id = reply->body["node_id"];
  return SaveAgentConfig(dir_, config_);
}

void Agent::Pause(uint64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!stop_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Agent::RefreshClient(std::unique_ptr<ControllerClient>* client,
                          uint64_t* generation) const {
  const uint64_t now = credentials_generation_.load();
  if (*client == nullptr || *generation != now) {
    *client = std::make_unique<ControllerClient>(ClientOptions());
    *generation = now;
  }
}

std::vector<std::string> Agent::Templates() const {
  std::vector<std::string> templates;
  auto records = store_->List();
  if (!records.ok()) {
    return templates;
  }
  for (const InstanceRecord& record : *records) {
    if (record.vm_created && !record.spec.template_id.empty()) {
      templates.push_back(record.spec.template_id);
    }
  }
  std::sort(templates.begin(), templates.end());
  templates.erase(std::unique(templates.begin(), templates.end()), templates.end());
  return templates;
}

void Agent::ReloadCredentials(uint64_t update_seq) {
  auto saved = LoadAgentConfig(dir_);
  std::lock_guard<std::mutex> lock(config_mu_);
  std::string problem;
  // Only the credential fields change: the loops read the others without the lock.
  const auto copy_credentials = [](const AgentConfig& from, AgentConfig* to) {
    to->ca_file = from.ca_file;
    to->insecure = from.insecure;
    to->cert_file = from.cert_file;
    to->cert_key_file = from.cert_key_file;
    to->root_token = from.root_token;
    to->api_key_id = from.api_key_id;
    to->api_key_string = from.api_key_string;
    to->api_key_file = from.api_key_file;
    to->api_key_session_max_age_ms = from.api_key_session_max_age_ms;
  };
  if (saved.ok()) {
    AgentConfig reloaded = config_;
    copy_credentials(*saved, &reloaded);
    auto options = ClientOptionsFor(reloaded);
    if (options.ok()) {
      copy_credentials(reloaded, &config_);
      client_options_ = std::move(*options);
    } else {
      problem = ": " + options.status().message() + "; kept the current ones";
    }
  } else {
    problem = ": node.json unreadable, kept the current ones";
  }
  config_.update_seq = update_seq;
  // Best effort: a failed save means the next start reloads once more, which is harmless.
  (void)SaveAgentConfig(dir_, config_);
  credentials_generation_++;
  std::fprintf(stderr, "cloister-node: credentials reloaded (controller update %llu)%s\n",
               static_cast<unsigned long long>(update_seq), problem.c_str());
}

void Agent::HeartbeatLoop() {
  std::unique_ptr<ControllerClient> client;
  uint64_t generation = 0;
  while (!stop_) {
    RefreshClient(&client, &generation);
    Json body;
    body["node_id"] = config_.node_id;
    body["vm_count"] = vm_count_.load();
    body["templates"] = Templates();
    auto reply = client->Call("POST", "/node/v1/heartbeat", body.dump(), kCallTimeoutMs);
    if (reply.ok() && !reply->ok && reply->message == "Not found") {
      rejoin_ = true;  // Removed from the controller: the main loop joins again.
    }
    if (reply.ok() && reply->ok && reply->body.is_object()) {
      const uint64_t wanted = reply->body.value("update_seq", uint64_t{0});
      uint64_t applied = 0;
      {
        std::lock_guard<std::mutex> lock(config_mu_);
        applied = config_.update_seq;
      }
      if (wanted > applied) {
        ReloadCredentials(wanted);
      }
    }
    Pause(config_.heartbeat_ms);
  }
}

void Agent::ReportLoop() {
  std::unique_ptr<ControllerClient> client;
  uint64_t generation = 0;
  while (!stop_) {
    RefreshClient(&client, &generation);
    SendReports(*client);
    std::unique_lock<std::mutex> lock(reports_mu_);
    reports_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return reports_new_ || stop_; });
    reports_new_ = false;
  }
  SendReports(*client);  // What the last commands produced.
}

bool Agent::SendReports(ControllerClient& client) {
  for (;;) {
    auto pending = reconciler_->PendingReports(kReportsPerCall);
    if (!pending.ok() || pending->empty()) {
      return pending.ok();
    }
    Json reports = Json::array();
    for (const Report& report : *pending) {
      reports.push_back(ReportJson(report));
    }
    Json body;
    body["node_id"] = config_.node_id;
    body["reports"] = reports;
    auto reply = client.Call("POST", "/node/v1/report", body.dump(), kCallTimeoutMs);
    if (!reply.ok() || !reply->ok) {
      return false;  // Kept; sent again later.
    }
    // Each report was taken, or refused for good (a state the controller will not accept
    // again, such as anything about a terminated instance): either way it is done.
    if (!reconciler_->AckReports(pending->back().seq).ok()) {
      return false;
    }
  }
}

Status Agent::ApplyInstances(const Json& instances) {
  std::vector<const Json*> order;
  for (const Json& item : instances) {
    order.push_back(&item);
  }
  std::sort(order.begin(), order.end(), [](const Json* a, const Json* b) {
    return a->value("changed_seq", uint64_t{0}) < b->value("changed_seq", uint64_t{0});
  });
  uint32_t live = 0;
  for (const Json* item : order) {
    const std::string id = item->value("instance_id", "");
    std::optional<DesiredState> desired = ParseDesired(item->value("desired", ""));
    if (id.empty() || !desired) {
      continue;
    }
    live += *desired != DesiredState::kTerminated;
    auto record = reconciler_->Instance(id);
    if (!record.ok()) {
      return record.status();
    }
    // A restart asked for after the command that last changed the record: once, by seq.
    const uint64_t restart_seq = item->value("restart_seq", uint64_t{0});
    const bool restart = record->has_value() && *desired != DesiredState::kTerminated &&
                         restart_seq > (*record)->cursor;
    if (record->has_value() && (*record)->desired == *desired && !restart) {
      continue;  // Already what the controller wants (a report of ours woke the poll).
    }
    NodeCommand command;
    command.cursor = std::max(item->value("changed_seq", uint64_t{0}), reconciler_->cursor() + 1);
    command.instance_id = id;
    command.kind = restart                              ? CommandKind::kRestart
                   : *desired == DesiredState::kStarted ? CommandKind::kStart
                   : *desired == DesiredState::kStopped ? CommandKind::kStop
                                                        : CommandKind::kTerminate;
    command.spec.template_id = item->value("vmid", "");
    command.spec.tag = item->value("tag", "");
    command.spec.cpu_cores = item->value("vcpu", 0u);
    command.spec.ram_mb = static_cast<uint32_t>(item->value("vram_mb", uint64_t{0}));
    // Anka sends the script base64-encoded; the driver runs the text.
    // (The controller accepts only valid base64, so a failed decode means no script.)
    command.spec.startup_script =
        log::Base64Decode(item->value("startup_script", "")).value_or("");
    Status applied = reconciler_->Apply(command);
    if (!applied.ok()) {
      return applied;
    }
  }
  vm_count_ = live;
  return Status::Ok();
}

Status Agent::Run() {
  Status recovered = reconciler_->Recover();
  if (!recovered.ok()) {
    return recovered;
  }
  std::thread heartbeat([this] { HeartbeatLoop(); });
  std::thread reporter([this] { ReportLoop(); });
  std::unique_ptr<ControllerClient> client;
  uint64_t generation = 0;
  uint64_t after = 0;
  Status result;
  while (!stop_) {
    if (rejoin_.exchange(false)) {
      Status joined = Join();
      if (!joined.ok()) {
        rejoin_ = true;
        Pause(kRetryPauseMs);
        continue;
      }
      after = 0;
    }
    RefreshClient(&client, &generation);
    const std::string path = "/node/v1/instances?node_id=" + config_.node_id +
                             "&after=" + std::to_string(after) +
                             "&wait_ms=" + std::to_string(kPollWaitMs);
    auto reply = client->Call("GET", path, "", static_cast<long>(kPollWaitMs + kCallTimeoutMs));
    if (!reply.ok()) {
      Pause(kRetryPauseMs);  // The controller is away: try again.
      continue;
    }
    if (!reply->ok) {
      if (reply->message == "Not found") {
        rejoin_ = true;
      } else {
        Pause(kRetryPauseMs);
      }
      continue;
    }
    Status applied = ApplyInstances(reply->body.value("instances", Json::array()));
    if (!applied.ok()) {
      result = applied;
      break;
    }
    after = reply->body.value("seq", after);
    // Instances whose last pass stopped at an observation error get another one.
    Status converged = reconciler_->Converge();
    if (!converged.ok()) {
      Pause(kRetryPauseMs);
    }
  }
  stop_ = true;
  {
    std::lock_guard<std::mutex> lock(reports_mu_);
    reports_cv_.notify_one();
  }
  heartbeat.join();
  reporter.join();
  return result;
}

}  // namespace cloister::node
