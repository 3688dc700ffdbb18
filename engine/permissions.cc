#include "engine/permissions.h"

#include <algorithm>
#include <iterator>

namespace cloister::engine {
namespace {

constexpr PermissionInfo kController[] = {
    {"list_vms", "Instances", "list vms"},
    {"start_vm", "Instances", "start vm"},
    {"terminate_vm", "Instances", "terminate vm"},
    {"update_vm", "Instances", "update vm"},
    {"get_registry_files", "Registry", "get registry files (logs)"},
    {"view_logs", "Registry", "view log files in dashboard"},
    {"get_registry_disk_info", "Registry", "get registry disk info"},
    {"registry_list", "Registry", "list vms on registry"},
    {"registry_delete", "Registry", "registry delete"},
    {"list_nodes", "Nodes", "list nodes"},
    {"delete_node", "Nodes", "delete node"},
    {"change_node_config", "Nodes", "change node configuration"},
    {"create_group", "Node Groups", "create node groups"},
    {"get_groups", "Node Groups", "view node groups"},
    {"delete_group", "Node Groups", "delete node groups"},
    {"update_group", "Node Groups", "update node groups"},
    {"add_node_to_group", "Node Groups", "add a node to a node group"},
    {"remove_group_from_node", "Node Groups", "remove a node from node group"},
    {"registry_distribute", "Distribute VMs", "distribute vms from registry"},
    {"registry_distribute_status", "Distribute VMs", "view distribution statuses"},
    {"change_config", "Config", "change global configuration"},
    {"get_config", "Config", "view global configuration"},
    {"list_images", "Images", "list save-image requests"},
    {"save_image", "Images", "save an instance as a template tag"},
    {"view_permissions", "Permissions and groups", "view the list of available permissions"},
    {"view_prmission_groups", "Permissions and groups", "view permission groups"},
    {"update_permission_groups", "Permissions and groups", "update permission groups"},
    {"delete_permission_groups", "Permissions and groups", "delete permission groups"},
};

constexpr PermissionInfo kRegistry[] = {
    {"index", "Information about Registry", "view the registry index"},
    {"get_disk_info", "Information about Registry", "get disk info"},
    {"list_vms", "List VMs", "list vms"},
    {"head_push_vm", "Push VMs", "negotiate a push"},
    {"push_vm", "Push VMs", "push vm and create new vms or tags"},
    {"pull_vm", "Pull VMs", "get a pull vm request"},
    {"download_vm", "Pull VMs", "download vm files"},
    {"delete_vm", "Delete VMs", "delete a vm"},
    {"revert", "Delete VMs", "revert vm versions"},
    {"upload_file", "File Server", "upload a file"},
    {"download_file", "File Server", "download a file"},
    {"get_streamer", "Log Server", "get an html streamer page"},
    {"stream_log", "Log Server", "stream a log file"},
    {"get_log_archive", "Log Server", "download a log archive"},
    {"send_log_event", "Log Server", "send log events"},
    {"send_log", "Log Server", "send a log file row"},
    {"view_permissions", "Permissions and groups", "view the list of available permissions"},
    {"view_prmission_groups", "Permissions and groups", "view permission groups"},
    {"update_permission_groups", "Permissions and groups", "update permission groups"},
    {"delete_permission_groups", "Permissions and groups", "delete permission groups"},
};

constexpr const char* kNodeResource[] = {"change_config", "create_instance", "delete_template",
                                         "distribute",    "force_upgrade",   "list",
                                         "remove"};
constexpr const char* kTemplateResource[] = {"delete_revert", "get_config", "list",    "pull",
                                             "push_tag",      "save_image", "set_arch"};

}  // namespace

std::optional<Component> ComponentFromName(std::string_view name) {
  if (name == "controller") return Component::kController;
  if (name == "registry") return Component::kRegistry;
  return std::nullopt;
}

const char* ComponentName(Component component) {
  return component == Component::kController ? "controller" : "registry";
}

std::span<const PermissionInfo> GroupPermissions(Component component) {
  if (component == Component::kController) {
    return kController;
  }
  return kRegistry;
}

std::optional<std::string> CanonicalGroupPermission(Component component, std::string_view name) {
  if (name == "view_permission_groups") {
    name = "view_prmission_groups";
  }
  for (const PermissionInfo& permission : GroupPermissions(component)) {
    if (name == permission.name) {
      return std::string(permission.name);
    }
  }
  return std::nullopt;
}

std::span<const char* const> ResourcePermissions(std::string_view resource_type) {
  if (resource_type == "node") return kNodeResource;
  if (resource_type == "template") return kTemplateResource;
  return {};
}

bool IsResourceType(std::string_view resource_type) {
  return resource_type == "node" || resource_type == "template";
}

bool IsResourcePermission(std::string_view resource_type, std::string_view name) {
  std::span<const char* const> names = ResourcePermissions(resource_type);
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; });
}

}  // namespace cloister::engine
