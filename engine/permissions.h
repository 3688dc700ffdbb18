// The permission catalogue (seed 003): every named group permission of the controller and the
// registry, and the resource permissions of nodes and templates (seed 002). Routes, the admin
// API and the authorization decision all name permissions from here; an unknown name is an
// error wherever it appears.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace cloister::engine {

enum class Component : uint8_t { kController = 0, kRegistry = 1 };

// "controller" / "registry"; nullopt for anything else.
std::optional<Component> ComponentFromName(std::string_view name);
const char* ComponentName(Component component);

struct PermissionInfo {
  const char* name;         // As the seed spells it: "list_vms", "view_prmission_groups".
  const char* category;     // The seed's heading: "Instances", "Nodes", ...
  const char* description;  // The seed's description.
};

// Every group permission of a component, in the seed's order.
std::span<const PermissionInfo> GroupPermissions(Component component);

// The canonical name of a group permission of component, or nullopt if it has none by that
// name. "view_permission_groups" is accepted for the seed's "view_prmission_groups" (the
// vendor's spelling is canonical, so clients that send it keep working).
std::optional<std::string> CanonicalGroupPermission(Component component, std::string_view name);

// Resource permissions: "node" (change_config, create_instance, delete_template, distribute,
// force_upgrade, list, remove) and "template" (delete_revert, get_config, list, pull, push_tag,
// save_image, set_arch).
std::span<const char* const> ResourcePermissions(std::string_view resource_type);
bool IsResourceType(std::string_view resource_type);
bool IsResourcePermission(std::string_view resource_type, std::string_view name);

}  // namespace cloister::engine
