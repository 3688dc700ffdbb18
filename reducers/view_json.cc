#include "reducers/view_json.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>

#include "log/assert.h"

namespace cloister::reducers {
namespace {

constexpr const char kSecretShown[] = "<secret>";

std::string Hex(const log::Hash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * hash.size());
  for (uint8_t byte : hash) {
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xF]);
  }
  return out;
}

// An enum's name, or "Unknown(N)" for a value a newer build wrote.
std::string EnumText(const char* name, uint8_t value) {
  if (name != nullptr && name[0] != '\0') {
    return name;
  }
  return "Unknown(" + std::to_string(value) + ")";
}

// The shortest decimal that reads back as the same float, so 0.35f shows as 0.35 and not as
// 0.3499999940395355 (what widening to double would print).
Json FloatJson(float value) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  CL_ASSERT(ec == std::errc());
  *end = '\0';
  return std::strtod(buf, nullptr);
}

Json StampJson(const Stamp& stamp) {
  Json j = Json::object();
  j["seq"] = stamp.seq;
  j["time"] = TimeRfc3339(stamp.time_ns);
  return j;
}

template <typename Container>
Json StringsJson(const Container& values) {
  Json j = Json::array();
  for (const std::string& value : values) {
    j.push_back(value);
  }
  return j;
}

template <typename T>
Json MapJson(const std::map<std::string, T>& map, Json (*entity_json)(const T&)) {
  Json j = Json::object();
  for (const auto& [key, value] : map) {
    j[key] = entity_json(value);
  }
  return j;
}

// The fields of two renderings of one entity that differ, as {"before":{..},"after":{..}}.
Json ChangedFields(const Json& before, const Json& after) {
  Json b = Json::object();
  Json a = Json::object();
  for (const auto& [field, value] : after.items()) {
    auto old = before.find(field);
    if (old == before.end() || *old != value) {
      b[field] = old == before.end() ? Json() : *old;
      a[field] = value;
    }
  }
  for (const auto& [field, value] : before.items()) {
    if (!after.contains(field)) {
      b[field] = value;
      a[field] = Json();
    }
  }
  Json j = Json::object();
  j["before"] = std::move(b);
  j["after"] = std::move(a);
  return j;
}

// Collects added / removed / changed entities of one view.
class ViewDiff {
 public:
  void Add(const std::string& id, const std::optional<Json>& before,
           const std::optional<Json>& after) {
    if (!before && after) {
      added_[id] = *after;
    } else if (before && !after) {
      removed_[id] = *before;
    } else if (before && after && *before != *after) {
      changed_[id] = ChangedFields(*before, *after);
    }
  }

  // Adds this view's diff to out under name, if anything changed.
  void MoveTo(const char* name, Json* out) {
    if (added_.empty() && removed_.empty() && changed_.empty()) {
      return;
    }
    Json j = Json::object();
    if (!added_.empty()) {
      j["added"] = std::move(added_);
    }
    if (!removed_.empty()) {
      j["removed"] = std::move(removed_);
    }
    if (!changed_.empty()) {
      j["changed"] = std::move(changed_);
    }
    (*out)[name] = std::move(j);
  }

 private:
  Json added_ = Json::object();
  Json removed_ = Json::object();
  Json changed_ = Json::object();
};

// Diffs two maps of one view by walking both in key order.
template <typename T>
void DiffMaps(const char* name, const std::map<std::string, T>& a,
              const std::map<std::string, T>& b, Json (*entity_json)(const T&), Json* out) {
  ViewDiff diff;
  auto ia = a.begin();
  auto ib = b.begin();
  while (ia != a.end() || ib != b.end()) {
    if (ib == b.end() || (ia != a.end() && ia->first < ib->first)) {
      diff.Add(ia->first, entity_json(ia->second), std::nullopt);
      ++ia;
    } else if (ia == a.end() || ib->first < ia->first) {
      diff.Add(ib->first, std::nullopt, entity_json(ib->second));
      ++ib;
    } else {
      if (!(ia->second == ib->second)) {
        diff.Add(ia->first, entity_json(ia->second), entity_json(ib->second));
      }
      ++ia;
      ++ib;
    }
  }
  diff.MoveTo(name, out);
}

// Diffs the pre-images of one view against the entities as they are now.
template <typename T>
void DiffPreImages(const char* name, const std::map<std::string, std::optional<T>>& before,
                   const std::map<std::string, T>& after, Json (*entity_json)(const T&),
                   Json* out) {
  ViewDiff diff;
  for (const auto& [id, old] : before) {
    auto now = after.find(id);
    std::optional<Json> b = old ? std::optional<Json>(entity_json(*old)) : std::nullopt;
    std::optional<Json> a =
        now != after.end() ? std::optional<Json>(entity_json(now->second)) : std::nullopt;
    diff.Add(id, b, a);
  }
  diff.MoveTo(name, out);
}

bool Wants(std::string_view view, std::string_view name) {
  return view == kAllViews || view == name;
}

}  // namespace

bool IsViewName(std::string_view name) {
  if (name == kAllViews) {
    return true;
  }
  for (const char* known : kViewNames) {
    if (name == known) {
      return true;
    }
  }
  return false;
}

std::string ViewNameList() {
  std::string list;
  for (const char* name : kViewNames) {
    list += name;
    list += ", ";
  }
  return list + std::string(kAllViews);
}

Json ConfigEntryJson(const ConfigEntry& entry) {
  Json j = Json::object();
  j["value"] = entry.secret ? std::string(kSecretShown) : entry.value;
  j["secret"] = entry.secret;
  j["changed"] = StampJson(entry.changed);
  return j;
}

Json NodeJson(const Node& n) {
  Json j = Json::object();
  j["node_id"] = n.node_id;
  j["node_name"] = n.node_name;
  j["ip_address"] = n.ip_address;
  j["cpu_count"] = n.cpu_count;
  j["ram_mb"] = n.ram_mb;
  j["vcpu_count"] = n.vcpu_count;
  j["vram_mb"] = n.vram_mb;
  j["capacity"] = n.capacity;
  j["capacity_mode"] = n.capacity_mode;
  j["arch"] = n.arch;
  j["hypervisor"] = n.hypervisor;
  j["agent_version"] = n.agent_version;
  j["free_disk_space_mb"] = n.free_disk_space_mb;
  j["state"] = EnumText(fb::EnumNameNodeState(n.state), static_cast<uint8_t>(n.state));
  j["vm_count"] = n.vm_count;
  j["templates"] = StringsJson(n.templates);
  j["message"] = n.message;
  j["groups"] = StringsJson(n.groups);
  j["drain_mode"] = n.drain_mode;
  j["vcpu_override"] = n.vcpu_override;
  j["ram_override_mb"] = n.ram_override_mb;
  j["update_seq"] = n.update_seq;
  j["last_report_seq"] = n.last_report_seq;
  j["credential"] = {
      {"kind", EnumText(fb::EnumNameActorKind(n.credential.kind),
                        static_cast<uint8_t>(n.credential.kind))},
      {"id", n.credential.id},
      {"groups", StringsJson(n.credential.groups)}};
  j["joined"] = StampJson(n.joined);
  j["updated"] = StampJson(n.updated);
  return j;
}

Json NodeGroupJson(const NodeGroup& g) {
  Json j = Json::object();
  j["group_id"] = g.group_id;
  j["name"] = g.name;
  j["description"] = g.description;
  j["fallback_group_id"] = g.fallback_group_id;
  j["node_ids"] = StringsJson(g.node_ids);
  j["created"] = StampJson(g.created);
  j["updated"] = StampJson(g.updated);
  return j;
}

Json VmInstanceJson(const VmInstance& v) {
  Json j = Json::object();
  j["instance_id"] = v.instance_id;
  j["vmid"] = v.vmid;
  j["tag"] = v.tag;
  j["version"] = v.version;
  j["name"] = v.name;
  j["name_template"] = v.name_template;
  j["external_id"] = v.external_id;
  j["requested_node_id"] = v.requested_node_id;
  j["group_id"] = v.group_id;
  j["permission_group"] = v.permission_group;
  j["priority"] = v.priority;
  j["startup_script"] = v.startup_script;
  j["startup_script_condition"] = v.startup_script_condition;
  j["script_monitoring"] = v.script_monitoring;
  j["script_timeout"] = v.script_timeout;
  j["script_fail_handler"] = v.script_fail_handler;
  j["metadata_json"] = v.metadata_json;
  j["vcpu"] = v.vcpu;
  j["vram_mb"] = v.vram_mb;
  Json forwards = Json::array();
  for (const PortForward& p : v.port_forwarding_override) {
    Json f = Json::object();
    f["guest_port"] = p.guest_port;
    f["host_port"] = p.host_port;
    f["protocol"] = p.protocol;
    f["name"] = p.name;
    forwards.push_back(std::move(f));
  }
  j["port_forwarding_override"] = std::move(forwards);
  j["vnc_password_set"] = v.vnc_password_set;
  j["state"] = EnumText(fb::EnumNameVmState(v.state), static_cast<uint8_t>(v.state));
  j["message"] = v.message;
  j["progress"] = FloatJson(v.progress);
  j["node_id"] = v.node_id;
  j["vm_uuid"] = v.vm_uuid;
  j["ip"] = v.ip;
  j["vnc_port"] = v.vnc_port;
  j["terminated_reason"] = v.terminated_reason;
  j["restart_seq"] = v.restart_seq;
  j["script_done"] = v.script_done;
  j["script_exit_code"] = v.script_exit_code;
  j["script_output"] = v.script_output;
  j["created"] = StampJson(v.created);
  j["updated"] = StampJson(v.updated);
  return j;
}

Json TemplateJson(const Template& t) {
  Json j = Json::object();
  j["template_id"] = t.template_id;
  j["name"] = t.name;
  Json tags = Json::array();
  for (const TemplateTag& tag : t.tags) {
    Json one = Json::object();
    one["tag"] = tag.tag;
    one["version"] = tag.version;
    one["description"] = tag.description;
    one["registered"] = StampJson(tag.registered);
    one["digest"] = tag.digest;
    tags.push_back(std::move(one));
  }
  j["tags"] = std::move(tags);
  Json manifests = Json::object();
  for (const auto& [digest, m] : t.manifests) {
    Json one = Json::object();
    one["media_type"] = m.media_type;
    one["size"] = m.size;
    Json references = Json::array();
    for (const RegistryReference& ref : m.references) {
      references.push_back({{"digest", ref.digest}, {"size", ref.size},
                            {"media_type", ref.media_type}});
    }
    one["references"] = std::move(references);
    one["pushed"] = StampJson(m.pushed);
    manifests[digest] = std::move(one);
  }
  j["manifests"] = std::move(manifests);
  j["created"] = StampJson(t.created);
  j["updated"] = StampJson(t.updated);
  j["mirrored"] = t.mirrored;
  return j;
}

const char* SaveImageStatusName(SaveImageStatus status) {
  switch (status) {
    case SaveImageStatus::kPending:
      return "pending";
    case SaveImageStatus::kDone:
      return "done";
    case SaveImageStatus::kError:
      return "error";
  }
  return "unknown";
}

Json SaveImageJson(const SaveImage& r) {
  Json j = Json::object();
  j["request_id"] = r.request_id;
  j["instance_id"] = r.instance_id;
  j["target_vm_id"] = r.target_vm_id;
  j["new_template_name"] = r.new_template_name;
  j["tag"] = r.tag;
  j["description"] = r.description;
  j["suspend"] = r.suspend;
  j["revert_tag"] = r.revert_tag;
  j["script"] = r.script;
  j["copy"] = r.copy;
  j["copy_approved_by"] = r.copy_approved_by;
  j["status"] = SaveImageStatusName(r.status);
  j["message"] = r.message;
  j["result_vmid"] = r.result_vmid;
  j["created"] = StampJson(r.created);
  j["updated"] = StampJson(r.updated);
  return j;
}

Json ApiKeyJson(const ApiKey& k) {
  Json j = Json::object();
  j["key_id"] = k.key_id;
  j["description"] = k.description;
  j["public_key_pem"] = k.public_key_pem;
  j["public_key_fingerprint"] = Hex(k.public_key_fingerprint);
  j["groups"] = k.groups;
  j["expires"] = k.expires_ns == 0 ? Json() : Json(TimeRfc3339(k.expires_ns));
  j["enabled"] = k.enabled;
  j["created"] = StampJson(k.created);
  j["updated"] = StampJson(k.updated);
  return j;
}

Json SessionJson(const Session& s) {
  Json j = Json::object();
  j["session_digest"] = s.session_digest;
  j["key_id"] = s.key_id;
  j["token_digest"] = Hex(s.token_digest);
  j["expires"] = TimeRfc3339(s.expires_ns);
  j["created"] = StampJson(s.created);
  return j;
}

Json RevocationJson(const CertificateRevocation& c) {
  Json j = Json::object();
  j["serial"] = c.serial_hex;
  j["issuer"] = c.issuer;
  j["reason"] = c.reason;
  j["created"] = StampJson(c.created);
  j["updated"] = StampJson(c.updated);
  return j;
}

Json PermissionGroupJson(const PermissionGroup& g) {
  Json j = Json::object();
  j["component"] = g.component;
  j["name"] = g.name;
  j["description"] = g.description;
  j["permissions"] = StringsJson(g.permissions);
  j["created"] = StampJson(g.created);
  j["updated"] = StampJson(g.updated);
  return j;
}

Json ResourceGrantJson(const ResourceGrant& g) {
  Json j = Json::object();
  j["resource_type"] = g.resource_type;
  j["resource_id"] = g.resource_id;
  j["principal"] = g.principal;
  j["permissions"] = StringsJson(g.permissions);
  j["created"] = StampJson(g.created);
  j["updated"] = StampJson(g.updated);
  return j;
}

Json StoredPolicyJson(const StoredPolicy& p) {
  Json j = Json::object();
  j["policy_id"] = p.policy_id;
  j["events"] = p.events.size();  // Signed bytes: `cloister` shows how many, the API the file.
  j["head_hash"] = p.head_hash;
  j["created"] = StampJson(p.created);
  j["updated"] = StampJson(p.updated);
  return j;
}

Json PolicyAttachmentJson(const PolicyAttachment& a) {
  Json j = Json::object();
  j["target_type"] = a.target_type;
  j["target_id"] = a.target_id;
  j["policy_id"] = a.policy_id;
  j["created"] = StampJson(a.created);
  j["updated"] = StampJson(a.updated);
  return j;
}

Json DistributionJson(const Distribution& d) {
  Json j = Json::object();
  j["request_id"] = d.request_id;
  j["action"] = d.action;
  j["template_id"] = d.template_id;
  j["tag"] = d.tag;
  Json nodes = Json::object();
  for (const auto& [id, n] : d.nodes) {
    nodes[id] = {{"status", n.status}, {"progress", n.progress}, {"message", n.message},
                 {"updated", StampJson(n.updated)}};
  }
  j["nodes"] = std::move(nodes);
  j["created"] = StampJson(d.created);
  j["updated"] = StampJson(d.updated);
  return j;
}

Json StoredFileJson(const StoredFile& f) {
  Json j = Json::object();
  j["path"] = f.path;
  j["digest"] = f.digest;
  j["size"] = f.size;
  j["stored_by"] = f.stored_by;
  j["stored"] = StampJson(f.stored);
  return j;
}

namespace {

// Calls visit(name, map of a, same map of b, its pre-images, to-JSON function) for every view,
// in kViewNames order: the one list the three printers below share.
template <typename Visit>
void VisitViews(const Views& a, const Views& b, const PreImages& pre, Visit visit) {
  visit("config", a.config.entries, b.config.entries, pre.config, &ConfigEntryJson);
  visit("nodes", a.nodes.nodes, b.nodes.nodes, pre.nodes, &NodeJson);
  visit("node_groups", a.node_groups.groups, b.node_groups.groups, pre.node_groups,
        &NodeGroupJson);
  visit("vm_instances", a.vm_instances.instances, b.vm_instances.instances, pre.vm_instances,
        &VmInstanceJson);
  visit("templates", a.templates.templates, b.templates.templates, pre.templates, &TemplateJson);
  visit("save_images", a.save_images.requests, b.save_images.requests, pre.save_images,
        &SaveImageJson);
  visit("api_keys", a.api_keys.keys, b.api_keys.keys, pre.api_keys, &ApiKeyJson);
  visit("sessions", a.sessions.sessions, b.sessions.sessions, pre.sessions, &SessionJson);
  visit("revocations", a.revocations.certificates, b.revocations.certificates, pre.revocations,
        &RevocationJson);
  visit("permission_groups", a.permission_groups.groups, b.permission_groups.groups,
        pre.permission_groups, &PermissionGroupJson);
  visit("resource_permissions", a.resource_permissions.grants, b.resource_permissions.grants,
        pre.resource_permissions, &ResourceGrantJson);
  visit("policies", a.policies.policies, b.policies.policies, pre.policies, &StoredPolicyJson);
  visit("policy_attachments", a.policy_attachments.attachments, b.policy_attachments.attachments,
        pre.policy_attachments, &PolicyAttachmentJson);
  visit("distributions", a.distributions.requests, b.distributions.requests, pre.distributions,
        &DistributionJson);
  visit("files", a.files.files, b.files.files, pre.files, &StoredFileJson);
}

const PreImages kNoPreImages;

}  // namespace

Json ViewsJson(const Views& views, std::string_view view) {
  CL_ASSERT(IsViewName(view));
  Json j = Json::object();
  j["seq"] = views.seq;
  j["hash"] = Hex(views.hash);
  VisitViews(views, views, kNoPreImages,
             [&](const char* name, const auto& map, const auto&, const auto&, auto json) {
               if (Wants(view, name)) {
                 j[name] = MapJson(map, json);
               }
             });
  return j;
}

Json DiffJson(const Views& a, const Views& b, std::string_view view) {
  CL_ASSERT(IsViewName(view));
  Json j = Json::object();
  j["seq_from"] = a.seq;
  j["seq_to"] = b.seq;
  VisitViews(a, b, kNoPreImages,
             [&](const char* name, const auto& from, const auto& to, const auto&, auto json) {
               if (Wants(view, name)) {
                 DiffMaps(name, from, to, json, &j);
               }
             });
  return j;
}

Json DiffJson(const PreImages& before, const Views& after, std::string_view view) {
  CL_ASSERT(IsViewName(view));
  Json j = Json::object();
  j["seq_from"] = after.seq == 0 ? 0 : after.seq - 1;
  j["seq_to"] = after.seq;
  VisitViews(after, after, before,
             [&](const char* name, const auto&, const auto& map, const auto& pre, auto json) {
               if (Wants(view, name)) {
                 DiffPreImages(name, pre, map, json, &j);
               }
             });
  return j;
}

std::string DumpJson(const Json& j, int indent) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

std::string TimeRfc3339(int64_t time_ns) {
  constexpr int64_t kSecondNs = 1'000'000'000;
  int64_t seconds = time_ns / kSecondNs;
  int64_t fraction_ns = time_ns % kSecondNs;
  if (fraction_ns < 0) {  // Floor, so times before 1970 count forward from a whole second.
    fraction_ns += kSecondNs;
    seconds--;
  }
  int64_t days = seconds / 86400;
  int64_t second_of_day = seconds % 86400;
  if (second_of_day < 0) {
    second_of_day += 86400;
    days--;
  }
  // Civil date from days since 1970-01-01 (Howard Hinnant's civil_from_days).
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld",
                        static_cast<long long>(year), static_cast<long long>(month),
                        static_cast<long long>(day), static_cast<long long>(second_of_day / 3600),
                        static_cast<long long>(second_of_day / 60 % 60),
                        static_cast<long long>(second_of_day % 60));
  std::string out(buf, static_cast<size_t>(n));
  if (fraction_ns != 0) {
    char fraction[16];
    std::snprintf(fraction, sizeof(fraction), ".%09lld", static_cast<long long>(fraction_ns));
    std::string digits(fraction);
    while (digits.back() == '0') {
      digits.pop_back();
    }
    out += digits;
  }
  return out + "Z";
}

}  // namespace cloister::reducers
