#include "api/cloisterd/node_api.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "api/cloisterd/policy_api.h"
#include "api/cloisterd/request_fields.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

constexpr uint64_t kLongPollMaxMs = 25'000;

api::Response BadRequest(const std::string& message) { return api::FailResponse(400, message); }
api::Response NodeNotFound() { return api::FailResponse(200, "Not found"); }

// The tag an instance or distribution means: tag when named, else version when >= 0, else the
// newest; nullptr when the template or tag is not known.
const reducers::TemplateTag* ResolveTag(const reducers::Views& views, const std::string& vmid,
                                        const std::string& tag, int32_t version) {
  auto t = views.templates.templates.find(vmid);
  if (t == views.templates.templates.end() || t->second.tags.empty()) {
    return nullptr;
  }
  for (const reducers::TemplateTag& one : t->second.tags) {
    if (tag.empty() ? one.version == version : one.tag == tag) {
      return &one;
    }
  }
  return tag.empty() && version < 0 ? &t->second.tags.back() : nullptr;
}

// Calls work(node_id, seq) for what else a node must act on: pending save-image requests of its
// instances and distribution requests naming it. Their changes wake its long-poll.
template <typename Work>
void ForEachNodeWork(const reducers::Views& views, Work work) {
  for (const auto& [id, save] : views.save_images.requests) {
    auto vm = views.vm_instances.instances.find(save.instance_id);
    if (vm != views.vm_instances.instances.end()) {
      work(vm->second.node_id, save.updated.seq);
    }
  }
  for (const auto& [id, d] : views.distributions.requests) {
    for (const auto& [node_id, n] : d.nodes) {
      work(node_id, n.updated.seq);
    }
  }
}

// What the agent should make of an instance placed on its node; nullopt: nothing (the instance
// is over: Terminated, or in Error, which the agent itself reported).
std::optional<const char*> DesiredState(fb::VmState state) {
  switch (state) {
    case fb::VmState::Terminated:
    case fb::VmState::Error:
      return std::nullopt;
    case fb::VmState::Terminating:
      return "Terminated";
    case fb::VmState::Stopping:
    case fb::VmState::Stopped:
      return "Stopped";
    default:
      return "Started";
  }
}

// Group names or ids → ids; nullopt (and error) for one that names no group.
std::optional<std::vector<std::string>> ResolveGroups(const reducers::Views& views,
                                                      const std::vector<std::string>& names,
                                                      std::string* error) {
  std::vector<std::string> ids;
  for (const std::string& name : names) {
    if (views.node_groups.groups.contains(name)) {
      ids.push_back(name);
      continue;
    }
    auto byname = std::find_if(views.node_groups.groups.begin(), views.node_groups.groups.end(),
                               [&](const auto& entry) { return entry.second.name == name; });
    if (byname == views.node_groups.groups.end()) {
      *error = "node group " + name.substr(0, 64) + " not found";
      return std::nullopt;
    }
    ids.push_back(byname->first);
  }
  return ids;
}

// A non-negative decimal query parameter; absent leaves *out. False if malformed.
bool ParseCount(const std::string& query, const char* name, uint64_t* out) {
  std::optional<std::string> text = QueryParam(query, name);
  if (!text) {
    return true;
  }
  if (text->empty() || text->size() > 19 ||
      !std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  *out = std::stoull(*text);
  return true;
}

}  // namespace

bool NodeApi::Handle(const api::Request& request, Respond& respond) {
  struct Route {
    const char* path;
    bool get;  // GET (and HEAD); otherwise POST.
    void (NodeApi::*handle)(const api::Request&, Respond);
  };
  static constexpr Route kRoutes[] = {
      {"/node/v1/join", false, &NodeApi::Join},
      {"/node/v1/heartbeat", false, &NodeApi::Heartbeat},
      {"/node/v1/instances", true, &NodeApi::Instances},
      {"/node/v1/report", false, &NodeApi::Report},
      {"/node/v1/save_image", false, &NodeApi::SaveImageDone},
      {"/node/v1/distribution", false, &NodeApi::DistributionProgress},
  };
  for (const Route& route : kRoutes) {
    if (request.path != route.path) {
      continue;
    }
    const bool allowed = route.get ? request.method == "GET" || request.method == "HEAD"
                                   : request.method == "POST";
    if (allowed) {
      (this->*route.handle)(request, std::move(respond));
    } else {
      respond(api::FailResponse(405, "method not allowed"));
    }
    return true;
  }
  return false;
}

void NodeApi::Join(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  engine::JoinNode join;
  std::vector<std::string> groups;
  if (!fields.String("node_id", &join.node_id) || !fields.String("node_name", &join.node_name) ||
      !fields.String("ip_address", &join.ip_address) ||
      !fields.Int("cpu_count", &join.cpu_count) || !fields.Int("ram_mb", &join.ram_mb) ||
      !fields.Int("vcpu_count", &join.vcpu_count) || !fields.Int("vram_mb", &join.vram_mb) ||
      !fields.Int("max_vm_count", &join.capacity) ||
      !fields.String("capacity_mode", &join.capacity_mode) || !fields.String("arch", &join.arch) ||
      !fields.String("hypervisor", &join.hypervisor) || !fields.Strings("groups", &groups) ||
      !fields.Bool("drain_mode", &join.drain_mode) ||
      !fields.String("agent_version", &join.agent_version) ||
      !fields.Int("free_disk_space_mb", &join.free_disk_space_mb)) {
    respond(BadRequest(fields.error()));
    return;
  }
  if (!join.capacity_mode.empty() && join.capacity_mode != "number" &&
      join.capacity_mode != "resource") {
    respond(api::FailResponse(200, "capacity_mode must be number or resource"));
    return;
  }
  std::string error;
  std::optional<std::vector<std::string>> group_ids =
      ResolveGroups(engine_->views(), groups, &error);
  if (!group_ids) {
    respond(api::FailResponse(200, error));
    return;
  }
  join.groups = std::move(*group_ids);
  engine_->Submit(*principal_, std::move(join), request.id,
                  [this, respond = std::move(respond)](engine::Reply reply) {
                    if (!reply.ok()) {
                      respond(FailedReplyResponse(reply));
                      return;
                    }
                    const std::string& node_id = reply.ids.at(0);
                    last_seen_[node_id] = Clock::now();
                    respond(OkResponse(Json{{"node_id", node_id}}.dump()));
                  });
}

void NodeApi::Heartbeat(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  std::string node_id;
  uint32_t vm_count = 0;
  std::vector<std::string> templates;
  if (!fields.String("node_id", &node_id) || !fields.Int("vm_count", &vm_count) ||
      !fields.Strings("templates", &templates)) {
    respond(BadRequest(fields.error()));
    return;
  }
  auto node = engine_->views().nodes.nodes.find(node_id);
  if (node == engine_->views().nodes.nodes.end()) {
    respond(NodeNotFound());  // Removed, or never joined: the agent joins again.
    return;
  }
  last_seen_[node_id] = Clock::now();
  // Drain mode is the operator's (join, node config), not the agent's: a heartbeat says Active.
  const fb::NodeState state = fb::NodeState::Active;
  const bool templates_given = fields.Has("templates");
  const bool changed = node->second.state != state || node->second.vm_count != vm_count ||
                       (templates_given && node->second.templates != templates);
  auto answer = [this, respond = std::move(respond), node_id]() {
    auto now = engine_->views().nodes.nodes.find(node_id);
    Json body;
    body["seq"] = engine_->views().seq;
    if (now != engine_->views().nodes.nodes.end()) {
      body["state"] = fb::EnumNameNodeState(now->second.state);
      body["drain_mode"] = now->second.drain_mode;
      body["update_seq"] = now->second.update_seq;  // Above the agent's: reload credentials.
    }
    respond(OkResponse(body.dump()));
  };
  if (!changed) {
    answer();  // A heartbeat alone is not an event.
    return;
  }
  engine::UpdateNodeStatus update;
  update.node_id = node_id;
  update.state = state;
  update.vm_count = vm_count;
  if (templates_given) {
    update.templates = std::move(templates);
  }
  engine_->Submit(*principal_, std::move(update), request.id,
                  [answer = std::move(answer)](engine::Reply reply) mutable {
                    (void)reply;  // A failed update is retried by the next heartbeat.
                    answer();
                  });
}

uint64_t NodeApi::NodeChangeSeq(const std::string& node_id) const {
  const reducers::Views& views = engine_->views();
  uint64_t seq = 0;
  auto node = views.nodes.nodes.find(node_id);
  if (node != views.nodes.nodes.end()) {
    seq = node->second.updated.seq;
  }
  for (const auto& [id, vm] : views.vm_instances.instances) {
    if (vm.node_id == node_id) {
      seq = std::max(seq, vm.updated.seq);
      // A policy attached, detached or extended is news for the instance it governs.
      const auto& attachments = views.policy_attachments.attachments;
      if (attachments.empty()) {
        continue;  // No policy was ever attached: no key to build (this runs per long-poll).
      }
      for (const std::string& key : {"instance/" + vm.instance_id, "template/" + vm.vmid}) {
        if (auto a = attachments.find(key); a != attachments.end()) {
          seq = std::max(seq, a->second.updated.seq);
        }
      }
      if (const reducers::StoredPolicy* policy = reducers::EffectivePolicy(views, vm)) {
        seq = std::max(seq, policy->updated.seq);
      }
    }
  }
  ForEachNodeWork(views, [&](const std::string& node, uint64_t changed) {
    if (node == node_id) {
      seq = std::max(seq, changed);
    }
  });
  return seq;
}

std::string NodeApi::InstancesBody(const std::string& node_id) const {
  const reducers::Views& views = engine_->views();
  Json saves = Json::array();
  for (const auto& [id, save] : views.save_images.requests) {
    auto vm = views.vm_instances.instances.find(save.instance_id);
    if (save.status != reducers::SaveImageStatus::kPending ||
        vm == views.vm_instances.instances.end() || vm->second.node_id != node_id) {
      continue;
    }
    saves.push_back({{"request_id", save.request_id},
                     {"instance_id", save.instance_id},
                     {"repository", save.target_vm_id.empty() ? save.new_template_name
                                                              : save.target_vm_id},
                     {"tag", save.tag},
                     {"description", save.description},
                     {"suspend", save.suspend}});
  }
  Json distributions = Json::array();
  for (const auto& [id, d] : views.distributions.requests) {
    auto mine = d.nodes.find(node_id);
    if (mine == d.nodes.end() || mine->second.status == "done" ||
        mine->second.status == "error") {
      continue;
    }
    const reducers::TemplateTag* tag = ResolveTag(views, d.template_id, d.tag, -1);
    distributions.push_back({{"request_id", d.request_id},
                             {"action", d.action},
                             {"template_id", d.template_id},
                             {"tag", d.tag},
                             {"manifest", tag == nullptr ? "" : tag->digest}});
  }
  Json list = Json::array();
  for (const auto& [id, vm] : views.vm_instances.instances) {
    if (vm.node_id != node_id) {
      continue;
    }
    std::optional<const char*> desired = DesiredState(vm.state);
    if (!desired) {
      continue;
    }
    Json item;
    item["instance_id"] = vm.instance_id;
    item["desired"] = *desired;
    item["state"] = fb::EnumNameVmState(vm.state);
    item["vmid"] = vm.vmid;
    item["tag"] = vm.tag;
    item["version"] = vm.version;
    item["name"] = vm.name;
    item["vcpu"] = vm.vcpu;
    item["vram_mb"] = vm.vram_mb;
    item["startup_script"] = vm.startup_script;
    item["script_monitoring"] = vm.script_monitoring;
    item["script_timeout"] = vm.script_timeout;
    item["port_forwarding"] = PortForwardsJson(vm.port_forwarding_override);
    item["changed_seq"] = vm.updated.seq;
    item["restart_seq"] = vm.restart_seq;
    // What to pull before cloning: the tag's manifest in the registry (empty: nothing to pull,
    // e.g. a tag registered without content in an older log, TemplateTagRegistered).
    const reducers::TemplateTag* tag = ResolveTag(views, vm.vmid, vm.tag, vm.version);
    item["resolved_tag"] = tag == nullptr ? "" : tag->tag;
    item["manifest"] = tag == nullptr ? "" : tag->digest;
    // The effective policy travels with the instance (the agent enforces it: issue 9).
    if (const reducers::StoredPolicy* policy = reducers::EffectivePolicy(views, vm)) {
      item["policy"] = {{"id", policy->policy_id},
                        {"head_hash", policy->head_hash},
                        {"file", PolicyFileJson(*policy)}};
    }
    list.push_back(item);
  }
  Json body;
  body["seq"] = NodeChangeSeq(node_id);
  body["instances"] = list;
  body["registry_url"] = registry_url_ ? registry_url_() : "";
  body["save_images"] = saves;
  body["distributions"] = distributions;
  return body.dump();
}

void NodeApi::Instances(const api::Request& request, Respond respond) {
  const std::string node_id = QueryParam(request.query, "node_id").value_or("");
  if (node_id.empty()) {
    respond(BadRequest("node_id is required"));
    return;
  }
  uint64_t after = 0;
  uint64_t wait_ms = 0;
  if (!ParseCount(request.query, "after", &after) ||
      !ParseCount(request.query, "wait_ms", &wait_ms)) {
    respond(BadRequest("after and wait_ms must be whole numbers"));
    return;
  }
  wait_ms = std::min<uint64_t>(wait_ms, kLongPollMaxMs);
  if (!engine_->views().nodes.nodes.contains(node_id)) {
    respond(NodeNotFound());
    return;
  }
  if (NodeChangeSeq(node_id) > after || wait_ms == 0 || stopped_) {
    respond(OkResponse(InstancesBody(node_id)));
    return;
  }
  polls_.push_back({node_id, after, Clock::now() + std::chrono::milliseconds(wait_ms),
                    std::move(respond)});
}

void NodeApi::Report(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  std::string node_id;
  if (!fields.String("node_id", &node_id)) {
    respond(BadRequest(fields.error()));
    return;
  }
  if (!engine_->views().nodes.nodes.contains(node_id)) {
    respond(NodeNotFound());
    return;
  }
  const nlohmann::json& reports = (*body)["reports"];
  if (!reports.is_array() || reports.size() > 1000) {
    respond(BadRequest("reports: must be an array of at most 1000 reports"));
    return;
  }
  std::vector<engine::ChangeVmState> changes;
  for (const nlohmann::json& item : reports) {
    if (!item.is_object()) {
      respond(BadRequest("reports: must be an array of objects"));
      return;
    }
    Fields report(item);
    engine::ChangeVmState change;
    std::string state;
    double progress = 0;
    if (item.contains("progress") && !item["progress"].is_null()) {
      if (!item["progress"].is_number()) {
        respond(BadRequest("reports: progress: must be a number"));
        return;
      }
      progress = item["progress"].get<double>();
    }
    if (!report.String("instance_id", &change.instance_id) || !report.String("state", &state) ||
        !report.String("message", &change.message) || !report.String("vm_uuid", &change.vm_uuid) ||
        !report.String("ip", &change.ip) || !report.Int("vnc_port", &change.vnc_port) ||
        !report.Int("seq", &change.report_seq)) {
      respond(BadRequest("reports: " + report.error()));
      return;
    }
    if (change.instance_id.empty()) {
      respond(BadRequest("reports: instance_id is required"));
      return;
    }
    std::optional<fb::VmState> parsed = engine::VmStateFromName(state);
    if (!parsed) {
      respond(BadRequest("reports: state: not an instance state: " + state.substr(0, 32)));
      return;
    }
    if (item.contains("script") && !item["script"].is_null()) {
      const nlohmann::json& script = item["script"];
      Fields script_fields(script);
      if (!script.is_object() || !script_fields.Int("exit_code", &change.script_exit_code) ||
          !script_fields.String("output", &change.script_output)) {
        respond(BadRequest("reports: script: must be {exit_code, output}"));
        return;
      }
      change.script_done = true;
    }
    change.state = *parsed;
    change.progress = static_cast<float>(progress);
    change.node_id = node_id;
    changes.push_back(std::move(change));
  }
  last_seen_[node_id] = Clock::now();
  // Every report is its own command; the answer lists each outcome in order once all are in.
  struct Gather {
    Json results = Json::array();
    size_t left = 0;
    Respond respond;
  };
  auto gather = std::make_shared<Gather>();
  gather->left = changes.size();
  gather->respond = std::move(respond);
  for (size_t i = 0; i < changes.size(); i++) {
    gather->results.push_back(nullptr);
  }
  if (changes.empty()) {
    gather->respond(OkResponse(Json{{"results", gather->results}}.dump()));
    return;
  }
  for (size_t i = 0; i < changes.size(); i++) {
    const std::string instance_id = changes[i].instance_id;
    const auto vm = engine_->views().vm_instances.instances.find(instance_id);
    if (vm != engine_->views().vm_instances.instances.end() && vm->second.node_id != node_id) {
      gather->results[i] = Json{{"instance_id", instance_id},
                                {"status", "FAIL"},
                                {"message", "the instance is not placed on this node"}};
      if (--gather->left == 0) {
        gather->respond(OkResponse(Json{{"results", gather->results}}.dump()));
      }
      continue;
    }
    engine_->Submit(*principal_, std::move(changes[i]), request.id,
                    [gather, i, instance_id](engine::Reply reply) {
                      gather->results[i] =
                          Json{{"instance_id", instance_id},
                               {"status", reply.ok() ? "OK" : "FAIL"},
                               {"message", reply.ok() ? std::string() : reply.message}};
                      if (!reply.status.ok()) {
                        gather->results[i]["message"] = "not recorded: " + reply.status.message();
                      }
                      if (--gather->left == 0) {
                        gather->respond(OkResponse(Json{{"results", gather->results}}.dump()));
                      }
                    });
  }
}

void NodeApi::SaveImageDone(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  engine::FinishSaveImage finish;
  if (!fields.String("node_id", &finish.node_id) ||
      !fields.String("request_id", &finish.request_id) || !fields.Bool("ok", &finish.ok) ||
      !fields.String("message", &finish.message) || !fields.String("digest", &finish.digest)) {
    respond(BadRequest(fields.error()));
    return;
  }
  if (finish.node_id.empty() || finish.request_id.empty() || !fields.Has("ok")) {
    respond(BadRequest("node_id, request_id and ok are required"));
    return;
  }
  if (!engine_->views().nodes.nodes.contains(finish.node_id)) {
    respond(NodeNotFound());
    return;
  }
  last_seen_[finish.node_id] = Clock::now();
  engine_->Submit(*principal_, std::move(finish), request.id,
                  [respond = std::move(respond)](engine::Reply reply) {
                    respond(reply.ok() ? OkResponse("{}") : FailedReplyResponse(reply));
                  });
}

void NodeApi::DistributionProgress(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  engine::ReportDistribution report;
  uint64_t progress = 0;
  if (!fields.String("node_id", &report.node_id) ||
      !fields.String("request_id", &report.request_id) ||
      !fields.String("status", &report.status) || !fields.String("message", &report.message) ||
      !fields.Int("progress", &progress)) {
    respond(BadRequest(fields.error()));
    return;
  }
  if (report.node_id.empty() || report.request_id.empty() || report.status.empty()) {
    respond(BadRequest("node_id, request_id and status are required"));
    return;
  }
  report.progress = static_cast<uint8_t>(std::min<uint64_t>(progress, 255));
  if (!engine_->views().nodes.nodes.contains(report.node_id)) {
    respond(NodeNotFound());
    return;
  }
  last_seen_[report.node_id] = Clock::now();
  engine_->Submit(*principal_, std::move(report), request.id,
                  [respond = std::move(respond)](engine::Reply reply) {
                    respond(reply.ok() ? OkResponse("{}") : FailedReplyResponse(reply));
                  });
}

uint64_t NodeApi::HeartbeatTimeoutSeconds() const {
  auto entry = engine_->views().config.entries.find("node_heartbeat_timeout");
  const std::string text =
      entry == engine_->views().config.entries.end() ? "60s" : entry->second.value;
  return std::strtoull(text.c_str(), nullptr, 10);  // Canonical form: "<seconds>s".
}

void NodeApi::OnApplied() {
  if (polls_.empty()) {
    return;
  }
  // One pass over the views for all waiting nodes (this runs after every applied command,
  // and every connected agent has a poll waiting).
  const reducers::Views& views = engine_->views();
  std::map<std::string, uint64_t> change_seq;
  for (const Poll& poll : polls_) {
    auto node = views.nodes.nodes.find(poll.node_id);
    change_seq[poll.node_id] = node == views.nodes.nodes.end() ? 0 : node->second.updated.seq;
  }
  for (const auto& [id, vm] : views.vm_instances.instances) {
    auto waiting_node = change_seq.find(vm.node_id);
    if (waiting_node != change_seq.end()) {
      waiting_node->second = std::max(waiting_node->second, vm.updated.seq);
    }
  }
  ForEachNodeWork(views, [&](const std::string& node, uint64_t changed) {
    auto waiting_node = change_seq.find(node);
    if (waiting_node != change_seq.end()) {
      waiting_node->second = std::max(waiting_node->second, changed);
    }
  });
  std::vector<Poll> waiting;
  std::vector<Poll> ready;
  for (Poll& poll : polls_) {
    (change_seq[poll.node_id] > poll.after ? ready : waiting).push_back(std::move(poll));
  }
  polls_ = std::move(waiting);
  for (Poll& poll : ready) {
    poll.respond(OkResponse(InstancesBody(poll.node_id)));
  }
}

void NodeApi::Tick() {
  const Clock::time_point now = Clock::now();
  std::vector<Poll> waiting;
  std::vector<Poll> due;
  for (Poll& poll : polls_) {
    (poll.deadline <= now ? due : waiting).push_back(std::move(poll));
  }
  polls_ = std::move(waiting);
  for (Poll& poll : due) {
    poll.respond(OkResponse(InstancesBody(poll.node_id)));
  }
  if (stopped_) {
    return;
  }
  const auto timeout = std::chrono::seconds(HeartbeatTimeoutSeconds());
  for (const auto& [node_id, node] : engine_->views().nodes.nodes) {
    if (node.state == fb::NodeState::Offline) {
      continue;
    }
    auto seen = last_seen_.try_emplace(node_id, now).first;  // After a restart: a full timeout.
    if (now - seen->second < timeout) {
      continue;
    }
    seen->second = now;  // Not again before another timeout, whatever the outcome.
    engine::UpdateNodeStatus offline;
    offline.node_id = node_id;
    offline.state = fb::NodeState::Offline;
    offline.vm_count = node.vm_count;
    offline.message = "no heartbeat for " + std::to_string(timeout.count()) + "s";
    engine_->Submit(engine::Principal::System(), std::move(offline), "heartbeat-timeout",
                    [](engine::Reply) {});
  }
}

void NodeApi::Stop() {
  stopped_ = true;
  std::vector<Poll> polls = std::move(polls_);
  polls_.clear();
  for (Poll& poll : polls) {
    poll.respond(OkResponse(InstancesBody(poll.node_id)));
  }
}

}  // namespace cloister::cloisterd
