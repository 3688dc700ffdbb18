#include "api/cloisterd/controller_api.h"

#include "api/cloisterd/request_fields.h"
#include "engine/scheduler.h"
#include "reducers/view_json.h"
#include "registry/manifest.h"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::ordered_json;

constexpr uint64_t kBytesPerGb = 1024;  // Views hold MB; Anka shows ram and vram in GB.
// Node configuration bounds: beyond any real Mac, small enough that nothing overflows.
constexpr uint64_t kNodeVmCountMax = 10'000;
constexpr uint64_t kNodeVcpuMax = 100'000;
constexpr uint64_t kNodeRamGbMax = 1'000'000;

api::Response NotFound() { return api::FailResponse(200, "Not found"); }
api::Response MethodNotAllowed() { return api::FailResponse(405, "method not allowed"); }
std::string NullBody(const engine::Reply&) { return "null"; }

// The id of the entity a request names: ?id= first, then the body's key.
std::optional<std::string> TargetId(const api::Request& request, const nlohmann::json& body,
                                    const char* body_key, std::string* error) {
  if (auto id = QueryParam(request.query, "id")) {
    return id;
  }
  if (body.contains(body_key) && !body[body_key].is_null()) {
    if (!body[body_key].is_string()) {
      *error = std::string(body_key) + ": must be a string";
      return std::nullopt;
    }
    return body[body_key].get<std::string>();
  }
  *error = std::string(body_key) + " is required";
  return std::nullopt;
}

// For a DELETE: the target's id from ?id= or the body's key; answers (and returns nullopt) when
// the body is malformed or the id is missing.
std::optional<std::string> DeleteTarget(const api::Request& request, const char* body_key,
                                        const std::function<void(api::Response)>& respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return std::nullopt;
  std::string error;
  std::optional<std::string> id = TargetId(request, *body, body_key, &error);
  if (!id) {
    respond(api::FailResponse(400, error));
  }
  return id;
}

// GET of a collection: ?id= answers one(entity) (unknown: "Not found"), no id the array of
// each(entity) for every entity in id order.
// visible, when given, hides the entities it refuses (resource management): they read as absent.
template <typename T, typename One, typename Each>
void AnswerGet(const api::Request& request, const std::map<std::string, T>& entities, One one,
               Each each, const std::function<void(api::Response)>& respond,
               const std::function<bool(const std::string&)>& visible = nullptr) {
  if (auto id = QueryParam(request.query, "id")) {
    auto found = entities.find(*id);
    const bool shown = found != entities.end() && (!visible || visible(found->first));
    respond(shown ? OkResponse(one(found->second).dump()) : NotFound());
    return;
  }
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const auto& [id, entity] : entities) {
    if (!visible || visible(id)) {
      list.push_back(each(entity));
    }
  }
  respond(OkResponse(list.dump()));
}

// The JSON-object body of a write; answers (and returns nullopt) when the method is not method
// or the body is malformed.
std::optional<nlohmann::json> WriteBody(const api::Request& request, const char* method,
                                        const std::function<void(api::Response)>& respond) {
  if (request.method != method) {
    respond(MethodNotAllowed());
    return std::nullopt;
  }
  return BodyOr400(request, respond);
}

// WriteBody of a write that names its target (?id= or body_key); also answers a missing id.
std::optional<std::pair<nlohmann::json, std::string>> TargetedBody(
    const api::Request& request, const char* method, const char* body_key,
    const std::function<void(api::Response)>& respond) {
  std::optional<nlohmann::json> body = WriteBody(request, method, respond);
  if (!body) {
    return std::nullopt;
  }
  std::string error;
  std::optional<std::string> id = TargetId(request, *body, body_key, &error);
  if (!id) {
    respond(api::FailResponse(400, error));
    return std::nullopt;
  }
  return std::make_pair(std::move(*body), std::move(*id));
}

// ---- output ------------------------------------------------------------------------------------

// RFC 3339 UTC with nanoseconds: 2026-11-24T18:33:37.123456789Z.
std::string Rfc3339Nano(int64_t time_ns) {
  const time_t seconds = static_cast<time_t>(time_ns / 1'000'000'000);
  const long nanos = static_cast<long>(time_ns % 1'000'000'000);
  tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  const size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof(text) - n, ".%09ldZ", nanos);
  return text;
}

// The Anka state word. An Active node its operator put in drain mode shows "Drain Mode".
const char* NodeStateText(const reducers::Node& node) {
  if (node.state == fb::NodeState::DrainMode ||
      (node.drain_mode && node.state == fb::NodeState::Active)) {
    return "Drain Mode";
  }
  return fb::EnumNameNodeState(node.state);
}

Json GroupJson(const reducers::NodeGroup& group) {
  Json j;
  j["id"] = group.group_id;
  j["name"] = group.name;
  j["description"] = group.description;
  j["fallback_group_id"] = group.fallback_group_id;
  return j;
}

Json NodeJson(const reducers::Views& views, const reducers::Node& node) {
  Json j;
  j["node_id"] = node.node_id;
  j["node_name"] = node.node_name;
  j["cpu_count"] = node.cpu_count;
  j["ram"] = node.ram_mb / kBytesPerGb;
  j["vm_count"] = node.vm_count;
  j["vcpu_count"] = node.vcpu_count;
  j["vram"] = node.vram_mb / kBytesPerGb;
  j["ip_address"] = node.ip_address;
  j["state"] = NodeStateText(node);
  j["capacity"] = node.capacity;
  j["capacity_mode"] = node.capacity_mode.empty() ? "number" : node.capacity_mode;
  if (node.vcpu_override != 0) j["vcpu_override"] = node.vcpu_override;
  if (node.ram_override_mb != 0) j["ram_override"] = node.ram_override_mb / kBytesPerGb;
  Json groups = Json::array();
  for (const std::string& id : node.groups) {
    auto group = views.node_groups.groups.find(id);
    if (group != views.node_groups.groups.end()) {
      groups.push_back(GroupJson(group->second));
    }
  }
  j["groups"] = groups;
  Json templates = Json::array();
  for (const std::string& id : node.templates) {
    templates.push_back(Json{{"id", id}});
  }
  j["templates"] = templates;
  if (!node.agent_version.empty()) j["agent_version"] = node.agent_version;
  j["free_disk_space"] = node.free_disk_space_mb / kBytesPerGb;
  if (!node.arch.empty()) j["arch"] = node.arch;
  if (!node.message.empty()) j["message"] = node.message;
  j["last_updated"] = Rfc3339Nano(node.updated.time_ns);
  return j;
}

// vminfo.status as Anka shows it: the guest's state in lower case ("running" when Started).
std::string VmInfoStatus(fb::VmState state) {
  if (state == fb::VmState::Started) return "running";
  std::string text = fb::EnumNameVmState(state);
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The instance object. Empty fields are left out, except those Anka always sends (vmid,
// group_id, instance_state, ts, cr_time, progress).
Json InstanceJson(const reducers::Views& views, const reducers::VmInstance& vm) {
  Json j;
  j["instance_id"] = vm.instance_id;
  j["instance_state"] = fb::EnumNameVmState(vm.state);
  if (!vm.message.empty()) j["message"] = vm.message;
  j["vmid"] = vm.vmid;
  if (!vm.tag.empty()) j["tag"] = vm.tag;
  if (vm.version >= 0) j["version"] = vm.version;
  if (!vm.node_id.empty()) j["node_id"] = vm.node_id;
  // With resource management the group a client names is a permission group.
  j["group_id"] = vm.permission_group.empty() ? vm.group_id : vm.permission_group;
  if (!vm.name.empty()) j["name"] = vm.name;
  if (!vm.external_id.empty()) j["external_id"] = vm.external_id;
  if (!vm.metadata_json.empty()) {
    Json metadata = Json::parse(vm.metadata_json, nullptr, false);
    if (!metadata.is_discarded()) j["metadata"] = metadata;
  }
  j["priority"] = vm.priority;
  j["ts"] = Rfc3339Nano(vm.updated.time_ns);
  j["cr_time"] = Rfc3339Nano(vm.created.time_ns);
  j["progress"] = vm.progress;
  if (!vm.node_id.empty()) {
    auto node = views.nodes.nodes.find(vm.node_id);
    if (node != views.nodes.nodes.end() && !node->second.arch.empty()) {
      j["arch"] = node->second.arch;
    }
  }
  if (!vm.vm_uuid.empty()) {
    Json info;
    info["uuid"] = vm.vm_uuid;
    info["name"] = vm.name.empty() ? vm.instance_id : vm.name;
    info["status"] = VmInfoStatus(vm.state);
    if (vm.vcpu != 0) info["cpu_cores"] = vm.vcpu;
    if (vm.vram_mb != 0) info["ram"] = std::to_string(vm.vram_mb) + "MB";
    info["node_id"] = vm.node_id;
    auto node = views.nodes.nodes.find(vm.node_id);
    if (node != views.nodes.nodes.end()) info["host_ip"] = node->second.ip_address;
    if (!vm.ip.empty()) info["ip"] = vm.ip;
    if (vm.vnc_port != 0) {
      info["vnc_port"] = vm.vnc_port;
      if (node != views.nodes.nodes.end() && !node->second.ip_address.empty()) {
        info["vnc_connection_string"] =
            "vnc://" + node->second.ip_address + ":" + std::to_string(vm.vnc_port);
      }
    }
    info["port_forwarding"] = PortForwardsJson(vm.port_forwarding_override);
    j["vminfo"] = info;
  }
  if (vm.script_monitoring && vm.script_done) {
    // The monitored startup script's result, as Anka shows it (the agent reports stdout and
    // stderr interleaved, so all of it is stdout).
    j["startup_script"] = Json{{"return_code", vm.script_exit_code},
                               {"did_timeout", false},
                               {"stdout", vm.script_output},
                               {"stderr", ""}};
  }
  return j;
}

Json TemplateListItem(const reducers::Template& t) {
  Json j;
  j["id"] = t.template_id;
  j["name"] = t.name;
  return j;
}

Json TemplateVersionsJson(const reducers::Template& t) {
  Json j = TemplateListItem(t);
  Json versions = Json::array();
  for (const reducers::TemplateTag& tag : t.tags) {
    Json v;
    v["number"] = tag.version;
    v["tag"] = tag.tag;
    if (!tag.description.empty()) v["description"] = tag.description;
    v["creation_date"] = Rfc3339Nano(tag.registered.time_ns);
    versions.push_back(v);
  }
  j["versions"] = versions;
  return j;
}

Json SaveImageJsonOut(const reducers::SaveImage& r) {
  Json j;
  j["id"] = r.request_id;
  j["instance_id"] = r.instance_id;
  j["status"] = reducers::SaveImageStatusName(r.status);
  if (!r.target_vm_id.empty()) j["target_vm_id"] = r.target_vm_id;
  if (!r.new_template_name.empty()) j["new_template_name"] = r.new_template_name;
  j["tag"] = r.tag;
  if (!r.description.empty()) j["description"] = r.description;
  if (!r.message.empty()) j["message"] = r.message;
  if (!r.result_vmid.empty()) j["vmid"] = r.result_vmid;
  j["cr_time"] = Rfc3339Nano(r.created.time_ns);
  j["ts"] = Rfc3339Nano(r.updated.time_ns);
  return j;
}

// An optional whole number in [0, max]; false (error set) when present and out of range or not
// a number. Anka clients send counts as numbers; a negative one is a clear error, not a clamp.
template <typename T>
bool RangedInt(const nlohmann::json& body, const char* key, uint64_t max, std::optional<T>* out,
               std::string* error) {
  if (!body.contains(key) || body[key].is_null()) {
    return true;
  }
  const nlohmann::json& value = body[key];
  if (!value.is_number_integer()) {
    *error = std::string(key) + ": must be a whole number";
    return false;
  }
  const bool negative = !value.is_number_unsigned() && value.get<int64_t>() < 0;
  if (negative || value.get<uint64_t>() > max) {
    *error = std::string(key) + ": must be between 0 and " + std::to_string(max);
    return false;
  }
  *out = static_cast<T>(value.get<uint64_t>());
  return true;
}

Json InstanceListItem(const reducers::Views& views, const reducers::VmInstance& vm) {
  Json j;
  j["instance_id"] = vm.instance_id;
  if (!vm.external_id.empty()) j["external_id"] = vm.external_id;
  if (!vm.name.empty()) j["name"] = vm.name;
  j["vm"] = InstanceJson(views, vm);
  return j;
}

// Seed 002: "Node Groups are disabled while Resource Management is enabled."
api::Response NodeGroupsOff() {
  return api::FailResponse(200, "node groups are disabled while resource management is enabled "
                                "(ANKA_ENABLE_RESOURCE_MANAGEMENT): start instances with a "
                                "permission group instead");
}

}  // namespace

bool ControllerApi::Handle(const api::Request& request, Respond& respond) {
  // Each handler checks its own methods (several serve more than one).
  static constexpr std::pair<const char*, void (ControllerApi::*)(const api::Request&, Respond)>
      kRoutes[] = {
          {"/api/v1/group", &ControllerApi::Groups},
          {"/api/v1/node/group", &ControllerApi::NodeGroups},
          {"/api/v1/node", &ControllerApi::Nodes},
          {"/api/v1/vm", &ControllerApi::Vms},
          {"/api/v1/rpc/vm/restart", &ControllerApi::RestartVm},
          {"/api/v1/node/config", &ControllerApi::NodeConfig},
          {"/api/v1/node/update", &ControllerApi::NodeUpdate},
          {"/api/v1/image", &ControllerApi::Images},
          {"/api/v1/registry/vm", &ControllerApi::Templates},
      };
  for (const auto& [path, handle] : kRoutes) {
    if (request.path == path) {
      (this->*handle)(request, std::move(respond));
      return true;
    }
  }
  return false;
}

void ControllerApi::Submit(const api::Request& request, engine::Command command, bool reschedule,
                           std::function<std::string(const engine::Reply&)> body,
                           Respond respond) {
  engine_->Submit(*principal_, std::move(command), request.id,
                  [this, reschedule, body = std::move(body),
                   respond = std::move(respond)](engine::Reply reply) {
                    if (!reply.ok()) {
                      respond(FailedReplyResponse(reply));
                      return;
                    }
                    respond(OkResponse(body(reply)));
                    if (reschedule && reply.seq_first != 0) {
                      RequestSchedulePass();
                    }
                  });
}

void ControllerApi::RequestSchedulePass() {
  if (stopped_) {
    return;
  }
  if (pass_in_flight_) {
    pass_wanted_ = true;
    return;
  }
  auto enabled = engine_->views().config.entries.find("scheduler_enabled");
  if (enabled != engine_->views().config.entries.end() && enabled->second.value == "false") {
    return;
  }
  pass_in_flight_ = true;
  pass_wanted_ = false;
  schedule_passes_++;
  engine::ScheduleVms pass;
  pass.resource_management = authz_ != nullptr;
  engine_->Submit(engine::Principal::System(), pass, "scheduler",
                  [this](engine::Reply) {
                    pass_in_flight_ = false;
                    if (pass_wanted_) {
                      RequestSchedulePass();
                    }
                  });
}

bool ControllerApi::Visible(const char* type, const std::string& id, const char* permission) {
  return authz_ == nullptr ||
         authz_->MayUseResource(*principal_, type, id, permission, switches_).allowed;
}

bool ControllerApi::ActsFor(const std::string& group) const {
  const engine::Principal& p = *principal_;
  if (p.kind == fb::ActorKind::Root || p.kind == fb::ActorKind::System) {
    return true;
  }
  return !group.empty() &&
         (p.name == group || std::find(p.groups.begin(), p.groups.end(), group) != p.groups.end());
}

bool ControllerApi::PermitStart(const api::Request& request, engine::RequestVm* start,
                                Respond& respond) {
  if (start->group_id.empty()) {
    respond(api::FailResponse(400, "group_id is required: with resource management on, an "
                                   "instance is started for one permission group"));
    return false;
  }
  // Node groups are off: the group is a permission group.
  start->permission_group = std::move(start->group_id);
  start->group_id.clear();
  const std::string& group = start->permission_group;
  if (!ActsFor(group)) {
    deny_(request, {"start_vm", "group", group},
          "permission denied: " + principal_->name + " is not in group " + group, respond);
    return false;
  }
  // The group, not the requester, must be granted the template and the pinned node.
  const engine::Principal as_group{fb::ActorKind::Unknown, group, {}};
  if (!authz_->MayUseResource(as_group, "template", start->vmid, "pull", switches_).allowed) {
    deny_(request, {"pull", "template", start->vmid},
          "permission denied: group " + group + " has no template permission pull on " +
              start->vmid,
          respond);
    return false;
  }
  const reducers::Views& views = engine_->views();
  auto node = views.nodes.nodes.find(start->node_id);
  if (node != views.nodes.nodes.end() && !engine::NodeServesGroup(views, node->second, group)) {
    deny_(request, {"create_instance", "node", start->node_id},
          "permission denied: node " + start->node_id + " does not serve group " + group +
              " (neither a node grant create_instance nor a node credential in the group)",
          respond);
    return false;
  }
  return true;
}

void ControllerApi::Groups(const api::Request& request, Respond respond) {
  const reducers::Views& views = engine_->views();
  if (request.method == "GET" || request.method == "HEAD") {
    AnswerGet(request, views.node_groups.groups, GroupJson, GroupJson, respond);
    return;
  }
  if (authz_ != nullptr) {
    respond(NodeGroupsOff());
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  auto group_body = [this](std::string id) {
    return [this, id = std::move(id)](const engine::Reply& reply) {
      const std::string& group_id = id.empty() ? reply.ids.at(0) : id;
      const auto& groups = engine_->views().node_groups.groups;
      auto group = groups.find(group_id);
      return group == groups.end() ? std::string("null") : GroupJson(group->second).dump();
    };
  };
  if (request.method == "POST") {
    engine::CreateNodeGroup create;
    if (!fields.String("name", &create.name) ||
        !fields.String("description", &create.description) ||
        !fields.String("fallback_group_id", &create.fallback_group_id)) {
      respond(api::FailResponse(400, fields.error()));
      return;
    }
    Submit(request, std::move(create), false, group_body(""), std::move(respond));
    return;
  }
  std::string error;
  std::optional<std::string> id = TargetId(request, *body, "id", &error);
  if (request.method == "PUT") {
    if (!id) {
      respond(api::FailResponse(400, error));
      return;
    }
    engine::UpdateNodeGroup update;
    update.group_id = *id;
    std::string name, description, fallback;
    if (!fields.String("name", &name) || !fields.String("description", &description) ||
        !fields.String("fallback_group_id", &fallback)) {
      respond(api::FailResponse(400, fields.error()));
      return;
    }
    if (fields.Has("name")) update.name = name;
    if (fields.Has("description")) update.description = description;
    if (fields.Has("fallback_group_id")) update.fallback_group_id = fallback;
    Submit(request, std::move(update), true, group_body(*id), std::move(respond));
    return;
  }
  if (request.method == "DELETE") {
    if (!id) {
      respond(api::FailResponse(400, error));
      return;
    }
    Submit(request, engine::DeleteNodeGroup{*id}, false,
           [](const engine::Reply&) { return std::string("null"); }, std::move(respond));
    return;
  }
  respond(MethodNotAllowed());
}

void ControllerApi::NodeGroups(const api::Request& request, Respond respond) {
  if (request.method != "POST" && request.method != "DELETE") {
    respond(MethodNotAllowed());
    return;
  }
  if (authz_ != nullptr) {
    respond(NodeGroupsOff());
    return;
  }
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  engine::ChangeGroupMembership change;
  change.member = request.method == "POST";
  if (!fields.Strings("group_ids", &change.group_ids) ||
      !fields.Strings("node_ids", &change.node_ids)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  Submit(request, std::move(change), true,
         [](const engine::Reply&) { return std::string("null"); }, std::move(respond));
}

void ControllerApi::Nodes(const api::Request& request, Respond respond) {
  const reducers::Views& views = engine_->views();
  if (request.method == "GET" || request.method == "HEAD") {
    Json list = Json::array();
    auto visible = [this](const std::string& id) {
      return Visible("node", id, "list");
    };
    if (auto id = QueryParam(request.query, "id")) {
      auto node = views.nodes.nodes.find(*id);
      if (node == views.nodes.nodes.end() || !visible(node->first)) {
        respond(NotFound());
        return;
      }
      list.push_back(NodeJson(views, node->second));  // Clients read body[0].
    } else {
      for (const auto& [id, node] : views.nodes.nodes) {
        if (visible(id)) {
          list.push_back(NodeJson(views, node));
        }
      }
    }
    respond(OkResponse(list.dump()));
    return;
  }
  if (request.method != "DELETE") {
    respond(MethodNotAllowed());
    return;
  }
  std::optional<std::string> id = DeleteTarget(request, "node_id", respond);
  if (!id) {
    return;
  }
  Submit(request, engine::RemoveNode{*id, "removed through the API"}, false, NullBody,
         std::move(respond));
}

void ControllerApi::Vms(const api::Request& request, Respond respond) {
  const reducers::Views& views = engine_->views();
  if (request.method == "GET" || request.method == "HEAD") {
    AnswerGet(
        request, views.vm_instances.instances,
        [&](const reducers::VmInstance& vm) { return InstanceJson(views, vm); },
        [&](const reducers::VmInstance& vm) { return InstanceListItem(views, vm); }, respond);
    return;
  }
  if (request.method == "POST") {
    StartVms(request, std::move(respond));
    return;
  }
  if (request.method == "PUT") {
    UpdateVm(request, std::move(respond));
    return;
  }
  if (request.method != "DELETE") {
    respond(MethodNotAllowed());
    return;
  }
  std::optional<std::string> id = DeleteTarget(request, "id", respond);
  if (!id) {
    return;
  }
  if (!views.vm_instances.instances.contains(*id)) {
    respond(NotFound());
    return;
  }
  Submit(request, engine::TerminateVm{*id, "terminated through the API"}, true,
         [](const engine::Reply&) { return std::string("null"); }, std::move(respond));
}

void ControllerApi::StartVms(const api::Request& request, Respond respond) {
  std::optional<nlohmann::json> body = BodyOr400(request, respond);
  if (!body) return;
  Fields fields(*body);
  engine::RequestVm start;
  std::string vnc_password;
  bool ok = fields.String("vmid", &start.vmid) && fields.String("tag", &start.tag) &&
            fields.Int("version", &start.version) && fields.String("name", &start.name) &&
            fields.String("name_template", &start.name_template) &&
            fields.String("external_id", &start.external_id) &&
            fields.Int("count", &start.count) && fields.String("node_id", &start.node_id) &&
            fields.String("group_id", &start.group_id) &&
            fields.Int("priority", &start.priority) &&
            fields.String("startup_script", &start.startup_script) &&
            fields.Int("startup_script_condition", &start.startup_script_condition) &&
            fields.Bool("script_monitoring", &start.script_monitoring) &&
            fields.Int("script_timeout", &start.script_timeout) &&
            fields.Int("script_fail_handler", &start.script_fail_handler) &&
            fields.Int("vcpu", &start.vcpu) && fields.Int("vram", &start.vram_mb) &&
            fields.String("vnc_password", &vnc_password);
  if (!ok) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  start.vnc_password_set = !vnc_password.empty();
  if (fields.Has("metadata")) {
    if (!(*body)["metadata"].is_object()) {
      respond(api::FailResponse(400, "metadata: must be an object"));
      return;
    }
    start.metadata_json = (*body)["metadata"].dump();
  }
  if (fields.Has("port_forwarding_override")) {
    const nlohmann::json& list = (*body)["port_forwarding_override"];
    if (!list.is_array()) {
      respond(api::FailResponse(400, "port_forwarding_override: must be an array"));
      return;
    }
    for (const nlohmann::json& item : list) {
      if (!item.is_object()) {
        respond(api::FailResponse(400, "port_forwarding_override: must be an array of objects"));
        return;
      }
      Fields forward_fields(item);
      engine::VmPortForward forward;
      if (!forward_fields.Int("guest_port", &forward.guest_port) ||
          !forward_fields.Int("host_port", &forward.host_port) ||
          !forward_fields.String("protocol", &forward.protocol) ||
          !forward_fields.String("name", &forward.name)) {
        respond(api::FailResponse(400, "port_forwarding_override: " + forward_fields.error()));
        return;
      }
      start.port_forwarding_override.push_back(std::move(forward));
    }
  }
  if (authz_ != nullptr && !PermitStart(request, &start, respond)) {
    return;
  }
  Submit(request, std::move(start), true,
         [](const engine::Reply& reply) { return Json(reply.ids).dump(); }, std::move(respond));
}

void ControllerApi::UpdateVm(const api::Request& request, Respond respond) {
  auto target = TargetedBody(request, "PUT", "id", respond);
  if (!target) {
    return;
  }
  const nlohmann::json& body = target->first;
  const std::string* id = &target->second;
  Fields fields(body);
  engine::UpdateVm update;
  update.instance_id = *id;
  std::string name, external_id;
  if (!fields.String("name", &name) || !fields.String("external_id", &external_id)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (fields.Has("name")) update.name = name;
  if (fields.Has("external_id")) update.external_id = external_id;
  if (fields.Has("metadata")) {
    if (!body["metadata"].is_object()) {
      respond(api::FailResponse(400, "metadata: must be an object"));
      return;
    }
    update.metadata_json = body["metadata"].dump();
  }
  if (!update.name && !update.external_id && !update.metadata_json) {
    respond(api::FailResponse(400, "nothing to change: give name, external_id or metadata"));
    return;
  }
  if (!engine_->views().vm_instances.instances.contains(*id)) {
    respond(NotFound());
    return;
  }
  Submit(request, std::move(update), false, NullBody, std::move(respond));
}

void ControllerApi::RestartVm(const api::Request& request, Respond respond) {
  auto target = TargetedBody(request, "POST", "id", respond);
  if (!target) {
    return;
  }
  const std::string* id = &target->second;
  if (!engine_->views().vm_instances.instances.contains(*id)) {
    respond(NotFound());
    return;
  }
  Submit(request, engine::RestartVm{*id}, false, NullBody, std::move(respond));
}

void ControllerApi::NodeConfig(const api::Request& request, Respond respond) {
  auto target = TargetedBody(request, "POST", "node_id", respond);
  if (!target) {
    return;
  }
  const nlohmann::json* body = &target->first;
  const std::string* id = &target->second;
  std::string error;
  Fields fields(*body);
  engine::ConfigureNode config;
  config.node_id = *id;
  std::string name, mode;
  bool drain = false;
  std::optional<uint64_t> ram_gb;
  if (!fields.String("name", &name) || !fields.String("capacity_mode", &mode) ||
      !fields.Bool("drain_mode", &drain)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (!RangedInt(*body, "max_vm_count", kNodeVmCountMax, &config.capacity, &error) ||
      !RangedInt(*body, "vcpu_override", kNodeVcpuMax, &config.vcpu_override, &error) ||
      !RangedInt(*body, "ram_override", kNodeRamGbMax, &ram_gb, &error)) {
    respond(api::FailResponse(400, error));
    return;
  }
  if (fields.Has("name")) config.node_name = name;
  if (fields.Has("capacity_mode")) config.capacity_mode = mode;
  if (fields.Has("drain_mode")) config.drain_mode = drain;
  if (ram_gb) config.ram_override_mb = *ram_gb * kBytesPerGb;
  if (!engine_->views().nodes.nodes.contains(*id)) {
    respond(NotFound());
    return;
  }
  Submit(request, std::move(config), true, NullBody, std::move(respond));
}

void ControllerApi::NodeUpdate(const api::Request& request, Respond respond) {
  if (!WriteBody(request, "PUT", respond)) {
    return;
  }
  Submit(request, engine::RequestNodeUpdate{"requested through the API"}, false, NullBody,
         std::move(respond));
}

void ControllerApi::Images(const api::Request& request, Respond respond) {
  const reducers::Views& views = engine_->views();
  if (request.method == "GET" || request.method == "HEAD") {
    AnswerGet(request, views.save_images.requests, SaveImageJsonOut, SaveImageJsonOut, respond);
    return;
  }
  std::optional<nlohmann::json> body = WriteBody(request, "POST", respond);
  if (!body) {
    return;
  }
  Fields fields(*body);
  engine::RequestSaveImage save;
  if (!fields.String("id", &save.instance_id) || !fields.String("tag", &save.tag) ||
      !fields.String("target_vm_id", &save.target_vm_id) ||
      !fields.String("new_template_name", &save.new_template_name) ||
      !fields.String("description", &save.description) ||
      !fields.Bool("suspend", &save.suspend) || !fields.String("revert_tag", &save.revert_tag) ||
      !fields.String("script", &save.script) || !fields.Bool("copy", &save.copy) ||
      !fields.String("approval", &save.approval)) {
    respond(api::FailResponse(400, fields.error()));
    return;
  }
  if (save.instance_id.empty()) {
    respond(api::FailResponse(400, "id is required"));
    return;
  }
  // The save ends in an OCI push of <template>:<tag>: names the registry would refuse are
  // refused now, not after the instance was stopped.
  if (!save.new_template_name.empty() && !registry::IsRepositoryName(save.new_template_name)) {
    respond(api::FailResponse(400, "new_template_name must be an OCI repository name: "
                                   "lowercase letters and digits, separated by '.', '_', '-' "
                                   "or '/'"));
    return;
  }
  if (!save.tag.empty() && !registry::IsTag(save.tag)) {
    respond(api::FailResponse(400, "tag must be an OCI tag: letters, digits, '_', '.' and '-', "
                                   "at most 128, not starting with '.' or '-'"));
    return;
  }
  auto instance = views.vm_instances.instances.find(save.instance_id);
  if (instance == views.vm_instances.instances.end()) {
    respond(NotFound());
    return;
  }
  if (authz_ != nullptr && !ActsFor(instance->second.permission_group)) {
    engine::RecordAccessDenied denied{"save_image", "instance", save.instance_id};
    const std::string& group = instance->second.permission_group;
    deny_(request, denied,
          "permission denied: save image targets only instances of your groups, and " +
              save.instance_id + (group.empty() ? " was started for no group"
                                                : " was started for group " + group),
          respond);
    return;
  }
  Submit(request, std::move(save), false,
         [](const engine::Reply& reply) { return Json(reply.ids.at(0)).dump(); },
         std::move(respond));
}

void ControllerApi::Templates(const api::Request& request, Respond respond) {
  if (request.method != "GET" && request.method != "HEAD") {
    respond(MethodNotAllowed());
    return;
  }
  AnswerGet(request, engine_->views().templates.templates, TemplateVersionsJson, TemplateListItem,
            respond, [this](const std::string& id) {
              return Visible("template", id, "list");
            });
}

}  // namespace cloister::cloisterd
