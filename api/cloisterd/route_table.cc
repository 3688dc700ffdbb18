#include "api/cloisterd/route_table.h"

#include <string>
#include <unordered_map>
#include <vector>

#include "registry/manifest.h"

namespace cloister::cloisterd {
namespace {

using engine::Component;
constexpr Listener kC = Listener::kController;
constexpr Listener kR = Listener::kRegistry;
constexpr Component kCtl = Component::kController;
constexpr Component kReg = Component::kRegistry;

constexpr RouteEntry Open(Listener l, const char* method, const char* path) {
  return {l, method, path, Access::kOpen, kCtl, ""};
}
constexpr RouteEntry Authenticated(Listener l, const char* method, const char* path) {
  return {l, method, path, Access::kAuthenticated, kCtl, ""};
}
constexpr RouteEntry Root(Listener l, const char* method, const char* path) {
  return {l, method, path, Access::kRoot, kCtl, ""};
}
constexpr RouteEntry Needs(Listener l, const char* method, const char* path, Component c,
                           const char* permission) {
  return {l, method, path, Access::kPermission, c, permission};
}
constexpr RouteEntry NeedsEither(Listener l, const char* method, const char* path, Component c,
                                 const char* permission, const char* also) {
  return {l, method, path, Access::kPermission, c, permission, also};
}

// Node agents need (the seed's "node" group): change_node_config (join, heartbeat), list_vms
// (their instances), update_vm (state reports) and save_image (save-image outcomes).
constexpr RouteEntry kTable[] = {
    Open(kC, "GET", "/livez"),
    Open(kC, "GET", "/readyz"),
    Open(kC, "POST", "/tap/v1/hand"),
    Open(kC, "POST", "/tap/v1/shake"),
    Authenticated(kC, "GET", "/api/v1/status"),
    Needs(kC, "GET", "/api/v1/config", kCtl, "get_config"),
    Needs(kC, "PUT", "/api/v1/config", kCtl, "change_config"),
    Needs(kC, "POST", "/api/v1/config", kCtl, "change_config"),
    Needs(kC, "GET", "/api/v1/group", kCtl, "get_groups"),
    Needs(kC, "POST", "/api/v1/group", kCtl, "create_group"),
    Needs(kC, "PUT", "/api/v1/group", kCtl, "update_group"),
    Needs(kC, "DELETE", "/api/v1/group", kCtl, "delete_group"),
    Needs(kC, "POST", "/api/v1/node/group", kCtl, "add_node_to_group"),
    Needs(kC, "DELETE", "/api/v1/node/group", kCtl, "remove_group_from_node"),
    Needs(kC, "GET", "/api/v1/node", kCtl, "list_nodes"),
    Needs(kC, "DELETE", "/api/v1/node", kCtl, "delete_node"),
    Needs(kC, "POST", "/api/v1/node/config", kCtl, "change_node_config"),
    Needs(kC, "PUT", "/api/v1/node/update", kCtl, "change_node_config"),
    Needs(kC, "GET", "/api/v1/vm", kCtl, "list_vms"),
    Needs(kC, "POST", "/api/v1/vm", kCtl, "start_vm"),
    Needs(kC, "PUT", "/api/v1/vm", kCtl, "update_vm"),
    Needs(kC, "DELETE", "/api/v1/vm", kCtl, "terminate_vm"),
    Needs(kC, "POST", "/api/v1/rpc/vm/restart", kCtl, "start_vm"),
    Needs(kC, "GET", "/api/v1/image", kCtl, "list_images"),
    Needs(kC, "POST", "/api/v1/image", kCtl, "save_image"),
    Needs(kC, "GET", "/api/v1/registry/vm", kCtl, "registry_list"),
    Needs(kC, "DELETE", "/api/v1/registry/vm", kCtl, "registry_delete"),
    Needs(kC, "DELETE", "/api/v1/registry/revert", kCtl, "registry_delete"),
    Needs(kC, "GET", "/api/v1/registry/disk", kCtl, "get_registry_disk_info"),
    Needs(kC, "POST", "/api/v1/registry/vm/distribute", kCtl, "registry_distribute"),
    Needs(kC, "GET", "/api/v1/registry/vm/distribute", kCtl, "registry_distribute_status"),
    Needs(kC, "DELETE", "/api/v1/registry/vm/distribute", kCtl, "registry_distribute"),
    Needs(kC, "DELETE", "/api/v1/registry/vm/remove", kCtl, "registry_distribute"),
    Root(kC, "GET", "/api/v1/apikey"),
    Root(kC, "POST", "/api/v1/apikey"),
    Root(kC, "PUT", "/api/v1/apikey"),
    Root(kC, "DELETE", "/api/v1/apikey"),
    Root(kC, "POST", "/api/v1/revoke"),
    Needs(kC, "POST", "/node/v1/join", kCtl, "change_node_config"),
    Needs(kC, "POST", "/node/v1/heartbeat", kCtl, "change_node_config"),
    Needs(kC, "GET", "/node/v1/instances", kCtl, "list_vms"),
    Needs(kC, "POST", "/node/v1/report", kCtl, "update_vm"),
    Needs(kC, "POST", "/node/v1/save_image", kCtl, "save_image"),
    Needs(kC, "POST", "/node/v1/distribution", kCtl, "change_node_config"),
    // Permission administration (docs/api.md), under both prefixes Anka's examples use.
#define CLOISTER_PERMISSION_ADMIN(l, c, prefix)                                           \
  Needs(l, "GET", prefix "/permissions", c, "view_permissions"),                           \
      Needs(l, "GET", prefix "/resources/permissions", c, "view_permissions"),             \
      Needs(l, "GET", prefix "/groups", c, "view_prmission_groups"),                       \
      Needs(l, "POST", prefix "/groups", c, "update_permission_groups"),                   \
      Needs(l, "PUT", prefix "/groups", c, "update_permission_groups"),                    \
      Needs(l, "DELETE", prefix "/groups", c, "delete_permission_groups"),                 \
      Needs(l, "GET", prefix "/group/{name}/resources", c, "view_prmission_groups"),       \
      Needs(l, "POST", prefix "/group/{name}/resources", c, "update_permission_groups")
    CLOISTER_PERMISSION_ADMIN(kC, kCtl, "/admin/api/v1/permission"),
    CLOISTER_PERMISSION_ADMIN(kC, kCtl, "/admin/v1/api/permission"),
    Needs(kC, "GET", "/api/v1/permissions/explain", kCtl, "view_permissions"),
    // VM policies (docs/api.md): anyone signed in reads them (a policy is public by design);
    // recording and attaching are the root's, and only a policy's administrators can sign.
    Authenticated(kC, "GET", "/api/v1/policy"),
    Root(kC, "POST", "/api/v1/policy"),
    Root(kC, "POST", "/api/v1/policy/attach"),
    Root(kC, "DELETE", "/api/v1/policy/attach"),
    Authenticated(kC, "GET", "/api/v1/policy/decide"),
    Open(kR, "GET", "/livez"),
    Open(kR, "GET", "/readyz"),
    Open(kR, "POST", "/tap/v1/hand"),
    Open(kR, "POST", "/tap/v1/shake"),
    Needs(kR, "GET", "/registry/status", kReg, "index"),
    Needs(kR, "GET", "/registry/vm", kReg, "list_vms"),
    Needs(kR, "DELETE", "/registry/vm", kReg, "delete_vm"),
    Needs(kR, "GET", "/registry/v2/vm", kReg, "list_vms"),
    Needs(kR, "DELETE", "/registry/revert", kReg, "revert"),
    Needs(kR, "GET", "/registry/vm/info", kReg, "list_vms"),
    Needs(kR, "GET", "/registry/disk", kReg, "get_disk_info"),
    Root(kR, "GET", "/api/v1/apikey"),
    Root(kR, "POST", "/api/v1/apikey"),
    Root(kR, "PUT", "/api/v1/apikey"),
    Root(kR, "DELETE", "/api/v1/apikey"),
    Root(kR, "POST", "/api/v1/revoke"),
    // The OCI Distribution data plane (api/cloisterd/oci_api.h) with the seed's registry
    // permissions: push = head_push_vm (negotiate) + push_vm, pull = pull_vm (manifests) +
    // download_vm (blobs), delete = delete_vm.
    Authenticated(kR, "GET", "/v2/"),
    Needs(kR, "GET", "/v2/_catalog", kReg, "list_vms"),
    Needs(kR, "GET", "/v2/{name}/tags/list", kReg, "list_vms"),
    Needs(kR, "GET", "/v2/{name}/manifests/{reference}", kReg, "pull_vm"),
    NeedsEither(kR, "HEAD", "/v2/{name}/manifests/{reference}", kReg, "pull_vm",
                "head_push_vm"),
    Needs(kR, "PUT", "/v2/{name}/manifests/{reference}", kReg, "push_vm"),
    Needs(kR, "DELETE", "/v2/{name}/manifests/{reference}", kReg, "delete_vm"),
    Needs(kR, "GET", "/v2/{name}/blobs/{digest}", kReg, "download_vm"),
    NeedsEither(kR, "HEAD", "/v2/{name}/blobs/{digest}", kReg, "download_vm", "head_push_vm"),
    Needs(kR, "POST", "/v2/{name}/blobs/uploads/", kReg, "push_vm"),
    Needs(kR, "GET", "/v2/{name}/blobs/uploads/{uuid}", kReg, "push_vm"),
    Needs(kR, "PATCH", "/v2/{name}/blobs/uploads/{uuid}", kReg, "push_vm"),
    Needs(kR, "PUT", "/v2/{name}/blobs/uploads/{uuid}", kReg, "push_vm"),
    Needs(kR, "DELETE", "/v2/{name}/blobs/uploads/{uuid}", kReg, "push_vm"),
    // The central file and log servers (api/cloisterd/file_api.h, log_api.h; the paths are
    // cloister's): the seed's File Server and Log Server permissions.
    Needs(kR, "PUT", "/file", kReg, "upload_file"),
    Needs(kR, "GET", "/file", kReg, "download_file"),
    Needs(kR, "DELETE", "/file", kReg, "upload_file"),
    Needs(kR, "POST", "/log", kReg, "send_log"),
    Needs(kR, "POST", "/log/event", kReg, "send_log_event"),
    Needs(kR, "GET", "/log/files", kReg, "get_streamer"),
    Needs(kR, "GET", "/log/streamer", kReg, "get_streamer"),
    Needs(kR, "GET", "/log/stream", kReg, "stream_log"),
    Needs(kR, "GET", "/log/archive", kReg, "get_log_archive"),
    // The registry's own copy of the permission administration, for registry groups only.
    CLOISTER_PERMISSION_ADMIN(kR, kReg, "/admin/api/v1/permission"),
    CLOISTER_PERMISSION_ADMIN(kR, kReg, "/admin/v1/api/permission"),
#undef CLOISTER_PERMISSION_ADMIN
};

}  // namespace

bool PathMatches(std::string_view pattern, std::string_view path) {
  // Segment by segment; "{x}" matches one non-empty segment.
  while (!pattern.empty() && !path.empty()) {
    const size_t p_end = pattern.find('/', 1);
    const size_t q_end = path.find('/', 1);
    const std::string_view p = pattern.substr(0, p_end);
    const std::string_view q = path.substr(0, q_end);
    const bool wildcard = p.size() > 3 && p[1] == '{' && p.back() == '}';
    if (wildcard ? q.size() <= 1 : p != q) {
      return false;
    }
    pattern = p_end == std::string_view::npos ? "" : pattern.substr(p_end);
    path = q_end == std::string_view::npos ? "" : path.substr(q_end);
  }
  return pattern.empty() && path.empty();
}

std::span<const RouteEntry> RouteTable() { return kTable; }

namespace {

// The table indexed once: exact paths by (listener, path) in a hash map, so that the lookup every
// request makes is one hash and a few compares; the few "{name}" patterns are scanned after.
struct RouteIndex {
  std::unordered_map<std::string, std::vector<const RouteEntry*>> exact;
  std::vector<const RouteEntry*> patterns;

  static std::string Key(Listener listener, std::string_view path) {
    std::string key(1, listener == Listener::kController ? 'c' : 'r');
    key.append(path);
    return key;
  }

  RouteIndex() {
    for (const RouteEntry& entry : kTable) {
      if (std::string_view(entry.path).find('{') != std::string_view::npos) {
        patterns.push_back(&entry);
      } else {
        exact[Key(entry.listener, entry.path)].push_back(&entry);
      }
    }
  }
};

const RouteIndex& Index() {
  static const RouteIndex index;
  return index;
}

}  // namespace

namespace {

const RouteEntry* FindMethod(Listener listener, std::string_view method, std::string_view path,
                             bool* path_known) {
  const RouteIndex& index = Index();
  auto exact = index.exact.find(RouteIndex::Key(listener, path));
  if (exact != index.exact.end()) {
    *path_known = true;
    for (const RouteEntry* entry : exact->second) {
      if (method == entry->method) {
        return entry;
      }
    }
    return nullptr;
  }
  for (const RouteEntry* entry : index.patterns) {
    if (entry->listener != listener || !PathMatches(entry->path, path)) {
      continue;
    }
    *path_known = true;
    if (method == entry->method) {
      return entry;
    }
  }
  return nullptr;
}

}  // namespace

const RouteEntry* FindRoute(Listener listener, std::string_view method, std::string_view path,
                            bool* path_known) {
  *path_known = false;
  if (listener == Listener::kRegistry && path.starts_with("/v2/")) {
    path = registry::ParseOciPath(path).pattern;
    if (path.empty()) {
      return nullptr;
    }
  }
  const RouteEntry* entry = FindMethod(listener, method, path, path_known);
  if (entry == nullptr && method == "HEAD") {
    entry = FindMethod(listener, "GET", path, path_known);
  }
  return entry;
}

}  // namespace cloister::cloisterd
