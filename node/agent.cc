#include "node/agent.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "log/atomic_file.h"
#include "log/base64.h"
#include "node/anka_driver.h"
#include "node/qemu_driver.h"
#include "node/sim_image.h"
#include "node/tart_driver.h"

namespace cloister::node {
namespace {

using Json = nlohmann::json;

constexpr long kCallTimeoutMs = 10'000;
constexpr uint64_t kPollWaitMs = 5'000;  // Short enough that Stop is honoured quickly.
constexpr uint64_t kRetryPauseMs = 1'000;
constexpr size_t kReportsPerCall = 200;
// Progress reports (a pull's) are sent from inside the transfer: short, and a lost one is fine.
constexpr long kProgressTimeoutMs = 2'000;
constexpr int kProgressStep = 10;  // Percent between two progress reports.

// Says when a progress report is due: at the first call, every kProgressStep percent, at 100.
class ProgressSteps {
 public:
  bool Due(int percent) {
    if (percent == 100 ? last_ == 100 : percent < last_ + kProgressStep) {
      return false;
    }
    last_ = percent;
    return true;
  }

 private:
  int last_ = -kProgressStep;
};

// A message the controller accepts (engine/limits.h kDescriptionBytesMax, no control
// characters): one line, at most kMessageBytesMax bytes, cut at a UTF-8 character boundary.
constexpr size_t kMessageBytesMax = 1000;
std::string Message(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = ' ';
    }
  }
  if (text.size() > kMessageBytesMax) {
    size_t cut = kMessageBytesMax - 3;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
      cut--;
    }
    text = text.substr(0, cut) + "...";
  }
  return text;
}

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
    c.driver = j.value("driver", std::string("sim"));
    c.qemu_vm_dir = j.value("qemu_vm_dir", "");
    c.qemu_templates_dir = j.value("qemu_templates_dir", "");
    c.qemu_accel = j.value("qemu_accel", "auto");
    c.driver_program = j.value("driver_program", std::string());
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
  j["driver"] = c.driver;
  if (c.driver == "qemu") {
    j["qemu_vm_dir"] = c.qemu_vm_dir;
    j["qemu_templates_dir"] = c.qemu_templates_dir;
    j["qemu_accel"] = c.qemu_accel;
  }
  j["driver_program"] = c.driver_program;
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

Result<std::unique_ptr<Driver>> OpenDriver(const std::string& dir, const AgentConfig& config) {
  if (config.driver == "qemu") {
    QemuOptions qemu;
    qemu.vm_dir = config.qemu_vm_dir.empty() ? dir + "/qemu" : config.qemu_vm_dir;
    qemu.templates_dir =
        config.qemu_templates_dir.empty() ? dir + "/qemu-templates" : config.qemu_templates_dir;
    if (!ParseQemuAccel(config.qemu_accel, &qemu.accel)) {
      return Status::InvalidArgument("qemu accelerator " + config.qemu_accel +
                                     ": expected auto, tcg or kvm");
    }
    auto driver = QemuDriver::Open(qemu);
    if (!driver.ok()) return driver.status();
    return std::unique_ptr<Driver>(std::move(*driver));
  }
  if (config.driver == "anka") {
    AnkaDriverOptions anka;
    if (!config.driver_program.empty()) {
      anka.program = config.driver_program;
    }
    return std::unique_ptr<Driver>(new AnkaDriver(anka));
  }
  if (config.driver == "tart") {
    TartDriverOptions tart;
    if (!config.driver_program.empty()) {
      tart.program = config.driver_program;
    }
    tart.state_dir = dir + "/tart";
    auto driver = TartDriver::Open(tart);
    if (!driver.ok()) {
      return driver.status();
    }
    return std::unique_ptr<Driver>(std::move(*driver));
  }
  if (config.driver != "sim") {
    return Status::InvalidArgument("unknown driver \"" + config.driver +
                                   "\" (sim, qemu, anka, tart)");
  }
  SimOptions sim;
  const auto half = std::chrono::microseconds(config.sim_delay_ms * 500);
  for (SimOp op : {SimOp::kClone, SimOp::kStart}) {
    sim.delays[static_cast<size_t>(op)] = SimDelay{half, half};
  }
  auto driver = SimDriver::Open(dir + "/sim", sim);
  if (!driver.ok()) {
    return driver.status();
  }
  return std::unique_ptr<Driver>(std::move(*driver));
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
  auto driver = OpenDriver(dir, agent->config_);
  if (!driver.ok()) {
    return driver.status();
  }
  agent->driver_ = std::move(*driver);
  auto cache = ImageCache::Open(dir + "/images");
  if (!cache.ok()) {
    return cache.status();
  }
  agent->cache_ = std::move(*cache);
  std::filesystem::remove_all(dir + "/saves", error);  // Scratch of saves a crash interrupted.
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
  for (std::string& id : cache_->TemplateIds()) {
    templates.push_back(std::move(id));
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

Status Agent::ApplyPoll(const Json& body, ControllerClient& client) {
  const std::string registry_url = body.value("registry_url", "");
  Status applied = ApplyInstances(body.value("instances", Json::array()), registry_url, client);
  if (!applied.ok()) {
    return applied;
  }
  if (!stop_) {
    ApplyDistributions(body.value("distributions", Json::array()), registry_url, client);
  }
  if (!stop_) {
    ApplySaveImages(body.value("save_images", Json::array()), registry_url, client);
  }
  return Status::Ok();
}

client::RegistryClient* Agent::Registry(const std::string& url) {
  if (url.empty()) {
    return nullptr;
  }
  const uint64_t generation = credentials_generation_.load();
  if (registry_ == nullptr || registry_url_ != url || registry_generation_ != generation) {
    const ControllerClientOptions controller = ClientOptions();
    client::RegistryClientOptions options;
    options.url = url;
    options.ca_file = controller.ca_file;
    options.insecure = controller.insecure;
    options.cert_file = controller.cert_file;
    options.key_file = controller.key_file;
    options.auth = controller.auth;  // The same credentials (and TAP session) as the controller.
    registry_ = std::make_unique<client::RegistryClient>(std::move(options));
    registry_url_ = url;
    registry_generation_ = generation;
  }
  return registry_.get();
}

Result<bool> Agent::PullToCache(const std::string& registry_url, const std::string& template_id,
                                const std::string& tag, const std::string& digest,
                                const PullProgress& progress) {
  for (int attempt = 1;; attempt++) {
    client::RegistryClient* registry = Registry(registry_url);
    if (registry == nullptr) {
      return Status::InvalidArgument("the controller names no registry to pull from");
    }
    Result<bool> pulled = cache_->Pull(registry, template_id, tag, digest, progress);
    if (pulled.ok() || pulled.status().code() != StatusCode::kIoError || attempt == kPullAttempts ||
        stop_) {
      return pulled;
    }
    std::fprintf(stderr, "cloister-node: pull %s:%s (attempt %d): %s; trying again\n",
                 template_id.c_str(), tag.c_str(), attempt, pulled.status().message().c_str());
    Pause(kRetryPauseMs * attempt);
  }
}

bool Agent::ReportNow(ControllerClient& client, const std::string& instance_id,
                      const std::string& state, double progress, const std::string& message,
                      long timeout_ms) {
  Json report{{"instance_id", instance_id}, {"state", state}, {"progress", progress}};
  if (!message.empty()) {
    report["message"] = Message(message);
  }
  Json body{{"node_id", config_.node_id}, {"reports", Json::array({report})}};
  auto reply = client.Call("POST", "/node/v1/report", body.dump(), timeout_ms);
  return reply.ok() && reply->ok;
}

bool Agent::ReportDistribution(ControllerClient& client, const std::string& request_id,
                               const std::string& status, int progress, const std::string& message,
                               long timeout_ms) {
  Json body{{"node_id", config_.node_id},
            {"request_id", request_id},
            {"status", status},
            {"progress", progress},
            {"message", Message(message)}};
  auto reply = client.Call("POST", "/node/v1/distribution", body.dump(), timeout_ms);
  return reply.ok() && reply->ok;
}

void Agent::ApplyDistributions(const Json& items, const std::string& registry_url,
                               ControllerClient& client) {
  for (const Json& item : items) {
    if (stop_) {
      return;
    }
    if (!item.is_object()) {
      continue;
    }
    const std::string request_id = item.value("request_id", "");
    const std::string action = item.value("action", "");
    const std::string template_id = item.value("template_id", "");
    const std::string tag = item.value("tag", "");
    const std::string manifest = item.value("manifest", "");
    if (request_id.empty()) {
      continue;
    }
    if (action == "remove") {
      Status removed = cache_->Remove(template_id, tag);
      ReportDistribution(
          client, request_id, removed.ok() ? "done" : "error", removed.ok() ? 100 : 0,
          removed.ok() ? "" : "remove " + template_id + ": " + removed.message(), kCallTimeoutMs);
      continue;
    }
    if (action != "distribute") {
      ReportDistribution(client, request_id, "error", 0, "unknown action " + action.substr(0, 32),
                         kCallTimeoutMs);
      continue;
    }
    const std::string what = template_id + ":" + tag;
    if (manifest.empty()) {
      ReportDistribution(client, request_id, "error", 0,
                         "pull " + what + " failed: the registry holds no image for it",
                         kCallTimeoutMs);
      continue;
    }
    ProgressSteps steps;
    Result<bool> pulled = PullToCache(registry_url, template_id, tag, manifest, [&](int percent) {
      if (percent < 100 && steps.Due(percent)) {
        ReportDistribution(client, request_id, "in_progress", percent, "", kProgressTimeoutMs);
      }
    });
    if (!pulled.ok() && stop_) {
      return;  // Interrupted: the item is listed again after a restart.
    }
    ReportDistribution(client, request_id, pulled.ok() ? "done" : "error", pulled.ok() ? 100 : 0,
                       pulled.ok() ? "" : "pull " + what + " failed: " + pulled.status().message(),
                       kCallTimeoutMs);
  }
}

Result<std::string> Agent::SaveImage(const Json& item, const std::string& registry_url) {
  const std::string instance_id = item.value("instance_id", "");
  const std::string request_id = item.value("request_id", "");
  const std::string repository = item.value("repository", "");
  const std::string tag = item.value("tag", "");
  const bool suspend = item.value("suspend", false);
  for (const Status& valid : {client::ValidateRepository(repository), client::ValidateTag(tag)}) {
    if (!valid.ok()) {
      return valid;
    }
  }
  if (!ValidCacheName(request_id)) {
    return Status::InvalidArgument("request id " + request_id.substr(0, 64) + " is malformed");
  }
  if (std::string(driver_->name()) != "sim") {
    // The image pushed below is the sim VM's; a real hypervisor's disk is not exported yet.
    return Status::Unsupported(std::string("saving an image is not supported with the ") +
                               driver_->name() + " driver yet");
  }
  auto record = reconciler_->Instance(instance_id);
  if (!record.ok()) {
    return record.status();
  }
  if (!record->has_value() || !(*record)->vm_created) {
    return Status::NotFound("instance " + instance_id + " has no VM on this node");
  }
  const std::string vm_name = (*record)->vm_name;
  Result<VmInfo> vm = driver_->Show(vm_name);
  if (!vm.ok()) {
    return vm.status();
  }
  // The image of a VM at rest: suspended if asked (and running), else stopped.
  Status quiet;
  if (vm->status == VmStatus::kRunning) {
    quiet = suspend ? driver_->Suspend(vm_name) : driver_->Stop(vm_name);
  } else if (vm->status == VmStatus::kSuspended && !suspend) {
    quiet = driver_->Stop(vm_name);
  }
  if (quiet.ok()) {
    vm = driver_->Show(vm_name);
    quiet = vm.status();
  }
  if (!quiet.ok()) {
    return quiet;
  }
  SimImageSpec spec;
  spec.instance_id = instance_id;
  spec.vm_name = vm_name;
  spec.cpu_cores = vm->cpu_cores;
  spec.ram_mb = vm->ram_mb;
  spec.template_id = vm->template_id;
  spec.tag = vm->tag;
  spec.suspended = vm->status == VmStatus::kSuspended;
  spec.description = item.value("description", "");
  const std::string layout = dir_ + "/saves/" + request_id;
  std::error_code error;
  std::filesystem::remove_all(layout, error);
  Result<std::string> digest = WriteSimImage(spec, layout, tag);
  if (!digest.ok()) {
    return digest.status();
  }
  client::RegistryClient* registry = Registry(registry_url);
  if (registry == nullptr) {
    return Status::InvalidArgument("the controller names no registry to push to");
  }
  Result<client::ImageTransfer> pushed = registry->PushImage(repository, tag, layout);
  std::filesystem::remove_all(layout, error);
  if (!pushed.ok()) {
    return pushed.status();
  }
  if (pushed->digest != *digest) {
    return Status::Corruption("pushed " + pushed->digest + ", built " + *digest);
  }
  return digest;
}

void Agent::ApplySaveImages(const Json& items, const std::string& registry_url,
                            ControllerClient& client) {
  for (const Json& item : items) {
    if (stop_) {
      return;
    }
    if (!item.is_object()) {
      continue;
    }
    const std::string request_id = item.value("request_id", "");
    if (request_id.empty() || answered_saves_.count(request_id) != 0) {
      continue;  // Answered: a listing older than the answer.
    }
    Result<std::string> digest = SaveImage(item, registry_url);
    Json body{{"node_id", config_.node_id}, {"request_id", request_id}, {"ok", digest.ok()}};
    if (digest.ok()) {
      body["digest"] = *digest;
      body["message"] = "";
    } else {
      body["message"] = Message("save image " + item.value("repository", "") + ":" +
                                item.value("tag", "") + " failed: " + digest.status().message());
    }
    auto reply = client.Call("POST", "/node/v1/save_image", body.dump(), kCallTimeoutMs);
    if (reply.ok()) {
      // Taken, or refused for good (the request is gone, or another node's): either way done.
      // A transport failure leaves it to the next listing, which redoes it (same digest).
      answered_saves_.insert(request_id);
    }
    if (!digest.ok() || !reply.ok() || !reply->ok) {
      const std::string answer = reply.ok() ? reply->message : reply.status().message();
      const std::string what = digest.ok() ? "pushed " + *digest : digest.status().message();
      std::fprintf(stderr, "cloister-node: save image %s: %s; the controller: %s\n",
                   request_id.c_str(), what.c_str(), answer.empty() ? "OK" : answer.c_str());
    }
  }
}

bool Agent::PullForStart(const std::string& instance_id, const InstanceSpec& spec,
                         const std::string& manifest, const std::string& registry_url,
                         ControllerClient& client) {
  ProgressSteps steps;
  Result<bool> pulled =
      PullToCache(registry_url, spec.template_id, spec.tag, manifest, [&](int percent) {
        if (steps.Due(percent)) {
          ReportNow(client, instance_id, "Pulling", percent / 100.0, "", kProgressTimeoutMs);
        }
      });
  if (pulled.ok() || stop_) {
    return pulled.ok();
  }
  // Error is final for the controller (only termination leaves it): the user sees the reason at
  // once. If this report is lost, the instance is listed again and the pull tried again.
  ReportNow(client, instance_id, "Error", 0,
            "pull " + spec.template_id + ":" + spec.tag + " failed: " + pulled.status().message(),
            kCallTimeoutMs);
  return false;
}

Status Agent::ApplyInstances(const Json& instances, const std::string& registry_url,
                             ControllerClient& client) {
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
    // The tag the controller resolved (the newest when none was asked for), so that the clone
    // uses the image that was pulled even if a newer tag arrives meanwhile.
    command.spec.tag = item->value("resolved_tag", "");
    if (command.spec.tag.empty()) {
      command.spec.tag = item->value("tag", "");
    }
    command.spec.cpu_cores = item->value("vcpu", 0u);
    command.spec.ram_mb = static_cast<uint32_t>(item->value("vram_mb", uint64_t{0}));
    // Anka sends the script base64-encoded; the driver runs the text.
    // (The controller accepts only valid base64, so a failed decode means no script.)
    command.spec.startup_script =
        log::Base64Decode(item->value("startup_script", "")).value_or("");
    // Pull before clone: the image must be in the cache before the reconciler may clone it.
    const bool new_vm = !record->has_value() ||
                        (!(*record)->vm_created && (*record)->state != InstanceState::kError &&
                         (*record)->desired != DesiredState::kTerminated);
    const std::string manifest = item->value("manifest", "");
    if (command.kind == CommandKind::kStart && new_vm && !manifest.empty() &&
        !PullForStart(id, command.spec, manifest, registry_url, client)) {
      if (stop_) {
        break;  // Interrupted: the instance is listed again after a restart.
      }
      continue;  // In Error: the reconciler never hears of the instance.
    }
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
    Status applied = ApplyPoll(reply->body, *client);
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
