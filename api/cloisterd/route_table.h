// The route table: every (listener, method, path) cloisterd answers, and what a principal needs
// to be let through (issue 6). Routes::Handle looks a request up here before anything else: a
// request that matches no entry is answered 404 (unknown path) or 405 (known path, other
// method) and reaches no handler, so a route added to a handler but not to this table cannot be
// reached at all, let alone reached without its permission. route_table_test walks the table
// against the real handlers in both directions.
//
// Access kinds:
//   kOpen          no credentials at all (probes, the TAP handshake)
//   kAuthenticated any authenticated principal (the status endpoints)
//   kPermission    a group permission of `component` (engine/permissions.h)
//   kRoot          the root token only (credential management, the admin template command)
#pragma once

#include <span>
#include <string_view>

#include "engine/permissions.h"

namespace cloister::cloisterd {

// Which listener a request arrived on: the two serve different paths.
enum class Listener { kController, kRegistry };

enum class Access : uint8_t { kOpen, kAuthenticated, kPermission, kRoot };

struct RouteEntry {
  Listener listener;
  const char* method;  // "GET" also matches HEAD.
  const char* path;    // Without the query; a "{name}" segment matches any one segment.
  Access access;
  engine::Component component;  // For kPermission.
  const char* permission;       // For kPermission: a GroupPermissions(component) name.
  // For kPermission: another permission that lets the request through as well (HEAD of a blob
  // is both a push's negotiation and a pull's probe); nullptr for none.
  const char* also_permission = nullptr;
};

std::span<const RouteEntry> RouteTable();

// "/a/{name}/b" matches "/a/x/b"; otherwise the paths must be equal.
bool PathMatches(std::string_view pattern, std::string_view path);

// The entry for a request; nullptr if none. *path_known tells a 405 from a 404. HEAD uses the
// path's HEAD entry if it has one, else its GET entry. On the registry listener a path under
// /v2/ is looked up by the pattern of its OCI shape (registry::ParseOciPath), since repository
// names hold slashes.
const RouteEntry* FindRoute(Listener listener, std::string_view method, std::string_view path,
                            bool* path_known);

}  // namespace cloister::cloisterd
