// Authorization (issue 6) through the real cloisterd with UAK sessions: permission groups gate
// every route of the route table (a principal with exactly the route's permission passes, one
// without gets 403 and an AccessDenied event), a user name can hold permissions itself, the
// admin API under both prefixes, explain, and the "Enterprise" mode with authorization off.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/cloisterd/route_table.h"
#include "log/base64.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/oci_checks.h"
#include "tests/wire/tap_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;
using cloisterd::Access;
using cloisterd::Listener;
using cloisterd::RouteEntry;

constexpr char kToken[] = "authz-root-token-9931";

std::string Root() {
  return "Authorization: Basic " + log::Base64Encode(std::string("root:") + kToken) + "\r\n";
}

std::unique_ptr<CloisterdProcess> Start(TempDir& dir, bool authorization,
                                        bool resources = false) {
  std::vector<std::string> env = {"ANKA_ENABLE_AUTH=true", std::string("ANKA_ROOT_TOKEN=") + kToken,
                                  "ANKA_ENABLE_API_KEYS=true"};
  if (authorization) {
    env.push_back("ANKA_ENABLE_CONTROLLER_AUTHORIZATION=true");
    env.push_back("ANKA_ENABLE_REGISTRY_AUTHORIZATION=true");
  }
  if (resources) {
    env.push_back("ANKA_ENABLE_RESOURCE_MANAGEMENT=true");
  }
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {}, env);
  REQUIRE(started.ok());
  return std::move(*started);
}

void CreateGroup(const WireTarget& api, const std::string& component, const std::string& name,
                 const std::vector<std::string>& permissions) {
  Json body = {{"component", component}, {"name", name}, {"permissions", permissions}};
  RequireOk(Call(api, "POST", "/admin/api/v1/permission/groups", body.dump(), Root()));
}

// A key with these groups, logged in: its Bearer header.
std::string KeyWithGroups(const WireTarget& api, const std::string& id,
                          const std::vector<std::string>& groups) {
  Pkey key = NewRsaKey();
  CreateApiKey(api, Root(), id, key.get(), Json(groups).dump());
  return Bearer(Login(api, id, key.get()));
}

WireResponse CallRoute(CloisterdProcess& daemon, const RouteEntry& entry,
                       const std::string& headers) {
  const WireTarget target =
      entry.listener == Listener::kController ? daemon.controller() : daemon.registry();
  const std::string method = entry.method;
  return Call(target, method, entry.path, method == "GET" ? "" : "{}", headers);
}

// HEAD answers carry no body to read the reason from.
bool method_has_body(const RouteEntry& entry) { return std::string(entry.method) != "HEAD"; }

TEST_CASE("authorization: every route needs exactly its permission (from the route table)") {
  TempDir dir;
  auto daemon = Start(dir, true);
  const WireTarget api = daemon->controller();
  const std::string nobody = KeyWithGroups(api, "nobody", {});
  std::map<std::string, std::string> holder;  // "component/permission" -> Bearer.
  int denials = 0;
  std::vector<std::string> denied_routes;
  std::vector<std::string> event_routes;
  for (const RouteEntry& entry : cloisterd::RouteTable()) {
    const WireResponse denied = CallRoute(*daemon, entry, nobody);
    INFO(entry.method << " " << entry.path << " -> " << denied.status << " " << denied.body);
    if (entry.access == Access::kOpen || entry.access == Access::kAuthenticated) {
      CHECK(denied.status != 403);
      continue;
    }
    CHECK(denied.status == 403);
    denials++;
    denied_routes.push_back(std::string(entry.method) + " " + entry.path);
    if (entry.access == Access::kRoot) {
      CHECK_THAT(denied.body, Catch::Contains("needs the root token"));
      continue;
    }
    if (method_has_body(entry)) {
      CHECK_THAT(denied.body, Catch::Contains(std::string(entry.permission) + " is needed"));
    }
    const std::string component = engine::ComponentName(entry.component);
    const std::string slot = component + "/" + entry.permission;
    if (!holder.contains(slot)) {
      const std::string group = "g-" + component + "-" + entry.permission;
      CreateGroup(api, component, group, {entry.permission});
      holder[slot] = KeyWithGroups(api, "k-" + std::to_string(holder.size()), {group});
    }
    const WireResponse allowed = CallRoute(*daemon, entry, holder[slot]);
    INFO("with " << slot << ": " << allowed.status << " " << allowed.body);
    CHECK(allowed.status != 403);
    CHECK(allowed.status != 401);
    if (entry.also_permission != nullptr) {
      // The other permission that lets it through (HEAD: a push's negotiation or a pull's probe).
      const std::string also = component + "/" + entry.also_permission;
      if (!holder.contains(also)) {
        const std::string group = "g-" + component + "-" + entry.also_permission;
        CreateGroup(api, component, group, {entry.also_permission});
        holder[also] = KeyWithGroups(api, "k-" + std::to_string(holder.size()), {group});
      }
      const WireResponse also_allowed = CallRoute(*daemon, entry, holder[also]);
      INFO("with " << also << ": " << also_allowed.status);
      CHECK(also_allowed.status != 403);
      CHECK(also_allowed.status != 401);
    }
  }
  // Every denial is an AccessDenied event with the principal and the permission. A 403 is sent
  // at once, before its event is durable: wait (bounded) for the last ones to land.
  std::vector<std::string> lines;
  WaitFor(15000, [&] {
    lines = AuditExportLines(dir.Sub("data"));
    return std::count_if(lines.begin(), lines.end(), [](const std::string& line) {
             return line.find("\"type\":\"AccessDenied\"") != std::string::npos;
           }) >= denials;
  });
  int events = 0;
  for (const std::string& line : lines) {
    const Json event = Json::parse(line);
    if (event["type"] == "AccessDenied") {
      events++;
      event_routes.push_back(event["payload"]["method"].get<std::string>() + " " +
                             event["payload"]["path"].get<std::string>());
      CHECK(event["actor"]["id"] == "nobody");
      CHECK(event["payload"]["source_ip"] == "127.0.0.1");
      CHECK_FALSE(event["payload"]["permission"].get<std::string>().empty());
    }
  }
  CHECK(events == denials);
  std::sort(denied_routes.begin(), denied_routes.end());
  std::sort(event_routes.begin(), event_routes.end());
  CHECK(denied_routes == event_routes);
}

TEST_CASE("authorization: groups and user names grant; changes apply at once; explain") {
  TempDir dir;
  auto daemon = Start(dir, true);
  const WireTarget api = daemon->controller();
  CreateGroup(api, "controller", "ci", {"list_vms", "get_groups"});
  const std::string alice = KeyWithGroups(api, "alice", {"ci"});
  const std::string bob = KeyWithGroups(api, "bob", {});
  RequireOk(Call(api, "GET", "/api/v1/vm", "", alice));
  CHECK(RequireFail(Call(api, "POST", "/api/v1/vm", R"({"vmid":"x"})", alice), 403)
            .find("start_vm") != std::string::npos);
  RequireFail(Call(api, "GET", "/api/v1/vm", "", bob), 403);
  // A permission group named after a user grants that user (the key id is the user name).
  CreateGroup(api, "controller", "bob", {"list_vms"});
  RequireOk(Call(api, "GET", "/api/v1/vm", "", bob));
  // Updating and deleting a group takes effect on the next request; the alias prefix works.
  RequireOk(Call(api, "PUT", "/admin/v1/api/permission/groups",
                 R"({"component":"controller","name":"ci","permissions":["start_vm"]})",
                 Root()));
  RequireFail(Call(api, "GET", "/api/v1/vm", "", alice), 403);
  CHECK(RequireFail(Call(api, "POST", "/api/v1/vm", R"({"vmid":"x"})", alice), 200) ==
        "VM not in the registry");  // Past authorization: the engine's answer.
  const Json groups = RequireOk(Call(api, "GET", "/admin/api/v1/permission/groups", "", Root()));
  REQUIRE(groups.size() == 2);
  // explain: the decision and its rule.
  const Json yes = RequireOk(
      Call(api, "GET", "/api/v1/permissions/explain?principal=alice&groups=ci&permission=start_vm",
           "", Root()));
  CHECK(yes["allowed"] == true);
  CHECK_THAT(yes["rule"].get<std::string>(), Catch::Contains("ci"));
  const Json no = RequireOk(Call(
      api, "GET", "/api/v1/permissions/explain?principal=eve&permission=delete_node", "", Root()));
  CHECK(no["allowed"] == false);
  RequireOk(Call(api, "DELETE", "/admin/api/v1/permission/groups",
                 R"({"component":"controller","name":"ci"})", Root()));
  RequireFail(Call(api, "POST", "/api/v1/vm", R"({"vmid":"x"})", alice), 403);
  // Bad input changes nothing: an unknown permission, a duplicate group.
  RequireFail(Call(api, "POST", "/admin/api/v1/permission/groups",
                   R"({"component":"controller","name":"x","permissions":["fly"]})", Root()),
              200);
  RequireFail(Call(api, "POST", "/admin/api/v1/permission/groups",
                   R"({"component":"controller","name":"bob","permissions":[]})", Root()),
              200);
  // The catalogue.
  const Json catalogue =
      RequireOk(Call(api, "GET", "/admin/api/v1/permission/permissions", "", Root()));
  CHECK(catalogue.size() == 28);
  const Json resources =
      RequireOk(Call(api, "GET", "/admin/api/v1/permission/resources/permissions", "", Root()));
  CHECK(resources["node"].size() == 7);
  CHECK(resources["template"].size() == 7);
}

TEST_CASE("resource management: node and template lists show only what a group may list") {
  TempDir dir;
  auto daemon = Start(dir, true, true);
  const WireTarget api = daemon->controller();
  std::vector<std::string> nodes;
  for (const char* name : {"mac-1", "mac-2"}) {
    nodes.push_back(RequireOk(Call(api, "POST", "/node/v1/join",
                                   std::string(R"({"node_name":")") + name +
                                       R"(","cpu_count":4,"ram_mb":8192})",
                                   Root()))["node_id"]);
  }
  const std::string xcode15 = PushTemplate(daemon->registry(), "xcode-15", "v1", Root());
  const std::string xcode16 = PushTemplate(daemon->registry(), "xcode-16", "v1", Root());
  const Json templates = RequireOk(Call(api, "GET", "/api/v1/registry/vm", "", Root()));
  REQUIRE(templates.size() == 2);
  CHECK(templates[0]["id"] != templates[1]["id"]);
  for (const Json& t : templates) {
    CHECK(t["id"] == (t["name"] == "xcode-15" ? xcode15 : xcode16));
  }
  CreateGroup(api, "controller", "team1", {"list_nodes", "registry_list"});
  RequireOk(Call(api, "POST", "/admin/api/v1/permission/group/team1/resources",
                 Json({{"resource_type", "node"}, {"resource_id", nodes[0]},
                       {"permissions", {"list", "create_instance"}}})
                     .dump(),
                 Root()));
  RequireOk(Call(api, "POST", "/admin/v1/api/permission/group/team1/resources",
                 Json({{"resource_type", "template"}, {"resource_id", xcode15},
                       {"permissions", {"list", "pull"}}})
                     .dump(),
                 Root()));
  const Json grants =
      RequireOk(Call(api, "GET", "/admin/api/v1/permission/group/team1/resources", "", Root()));
  CHECK(grants.size() == 2);
  const std::string team1 = KeyWithGroups(api, "team1-su", {"team1"});
  const Json seen = RequireOk(Call(api, "GET", "/api/v1/node", "", team1));
  REQUIRE(seen.size() == 1);
  CHECK(seen[0]["node_id"] == nodes[0]);
  CHECK(RequireFail(Call(api, "GET", "/api/v1/node?id=" + nodes[1], "", team1), 200) ==
        "Not found");
  const Json listed = RequireOk(Call(api, "GET", "/api/v1/registry/vm", "", team1));
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["id"] == xcode15);
  // Root sees everything; explain names the grant.
  CHECK(RequireOk(Call(api, "GET", "/api/v1/node", "", Root())).size() == 2);
  const Json why = RequireOk(Call(
      api, "GET",
      "/api/v1/permissions/explain?principal=team1-su&groups=team1&permission=create_instance"
      "&resource_type=node&resource_id=" + nodes[0],
      "", Root()));
  CHECK(why["allowed"] == true);
}

TEST_CASE("the registry listener administers registry groups only, with registry permissions") {
  TempDir dir;
  auto daemon = Start(dir, true);
  const WireTarget api = daemon->controller();
  const WireTarget registry = daemon->registry();
  CreateGroup(api, "registry", "registry-admins",
              {"view_permissions", "view_prmission_groups", "update_permission_groups"});
  const std::string admin = KeyWithGroups(api, "reg-admin", {"registry-admins"});

  // The registry's catalogue by default, under both prefixes.
  const Json catalogue =
      RequireOk(Call(registry, "GET", "/admin/api/v1/permission/permissions", "", admin));
  std::vector<std::string> names;
  for (const Json& p : catalogue) names.push_back(p["name"]);
  CHECK(std::find(names.begin(), names.end(), "pull_vm") != names.end());
  CHECK(std::find(names.begin(), names.end(), "start_vm") == names.end());
  // A registry group made through the registry (component defaults to registry) ...
  RequireOk(Call(registry, "POST", "/admin/v1/api/permission/groups",
                 R"({"name":"pullers","permissions":["pull_vm","list_vms"]})", admin));
  bool found = false;
  for (const Json& g : RequireOk(Call(api, "GET", "/admin/api/v1/permission/groups?component="
                                      "registry", "", Root()))) {
    found |= g["name"] == "pullers" && g["permissions"] == Json({"list_vms", "pull_vm"});
  }
  CHECK(found);
  // ... but never a controller group, nor a node grant, and nothing changes.
  CHECK(RequireFail(Call(registry, "POST", "/admin/api/v1/permission/groups",
                         R"({"component":"controller","name":"x","permissions":["start_vm"]})",
                         admin),
                    400)
            .find("component: the registry administers only registry") == 0);
  RequireFail(Call(registry, "POST", "/admin/api/v1/permission/group/pullers/resources",
                   R"({"resource_type":"node","resource_id":"n1","permissions":["list"]})", admin),
              400);
  const std::string t1 = PushTemplate(registry, "macos", "v1", Root());
  RequireOk(Call(registry, "POST", "/admin/api/v1/permission/group/pullers/resources",
                 Json({{"resource_type", "template"}, {"resource_id", t1},
                       {"permissions", {"pull"}}})
                     .dump(),
                 admin));
  const Json grants = RequireOk(
      Call(registry, "GET", "/admin/api/v1/permission/group/pullers/resources", "", admin));
  REQUIRE(grants.size() == 1);
  CHECK(grants[0]["resource_type"] == "template");
  CHECK(grants[0]["resource_id"] == t1);
  for (const Json& g : RequireOk(Call(api, "GET", "/admin/api/v1/permission/groups", "", Root()))) {
    CHECK(g["name"] != "x");
  }
  // Registry permissions are not controller permissions: the controller's admin API refuses.
  RequireFail(Call(api, "GET", "/admin/api/v1/permission/groups", "", admin), 403);
  // And the registry's copy needs the registry permission: a controller admin is refused there.
  CreateGroup(api, "controller", "ctl-admins", {"view_prmission_groups"});
  const std::string ctl = KeyWithGroups(api, "ctl-admin", {"ctl-admins"});
  RequireOk(Call(api, "GET", "/admin/api/v1/permission/groups", "", ctl));
  RequireFail(Call(registry, "GET", "/admin/api/v1/permission/groups", "", ctl), 403);
}

TEST_CASE("a standalone registry obeys ANKA_ENABLE_AUTHORIZATION, not the combined switch") {
  TempDir dir;
  const std::vector<std::string> base = {"ANKA_ENABLE_AUTH=true",
                                         std::string("ANKA_ROOT_TOKEN=") + kToken,
                                         "ANKA_ENABLE_API_KEYS=true"};
  for (const bool standalone_switch : {true, false}) {
    std::vector<std::string> env = base;
    // The combined process's switch is set either way; only the standalone one counts.
    env.push_back("ANKA_ENABLE_REGISTRY_AUTHORIZATION=true");
    if (standalone_switch) env.push_back("ANKA_ENABLE_AUTHORIZATION=true");
    const std::string data = dir.Sub(standalone_switch ? "on" : "off");
    auto started = CloisterdProcess::Start(data, dir.path(), {"--role", "registry"}, env);
    REQUIRE(started.ok());
    const WireTarget registry = (*started)->registry();
    const std::string bob = KeyWithGroups(registry, "bob", {});
    const WireResponse status = Call(registry, "GET", "/registry/status", "", bob);
    INFO("ANKA_ENABLE_AUTHORIZATION " << standalone_switch << ": " << status.body);
    if (!standalone_switch) {
      RequireOk(status);
      continue;
    }
    CHECK(RequireFail(status, 403) ==
          "permission denied: index is needed (no group of bob grants index)");
    // Its own admin API grants it.
    RequireOk(Call(registry, "POST", "/admin/api/v1/permission/groups",
                   R"({"name":"readers","permissions":["index"]})", Root()));
    RequireOk(Call(registry, "PUT", "/api/v1/apikey", R"({"id":"bob","groups":["readers"]})",
                   Root()));
    RequireOk(Call(registry, "GET", "/registry/status", "", bob));
  }
}

TEST_CASE("authorization off (Enterprise): every credential may do everything; root always") {
  TempDir dir;
  auto daemon = Start(dir, false);
  const WireTarget api = daemon->controller();
  const std::string bob = KeyWithGroups(api, "bob", {});
  RequireOk(Call(api, "GET", "/api/v1/vm", "", bob));
  RequireOk(Call(api, "GET", "/api/v1/node", "", bob));
  RequireOk(Call(api, "GET", "/api/v1/config", "", bob));
  RequireOk(Call(api, "POST", "/api/v1/group", R"({"name":"build"})", bob));
  // Credential management stays the root's.
  RequireFail(Call(api, "GET", "/api/v1/apikey", "", bob), 403);
  RequireOk(Call(api, "GET", "/api/v1/apikey", "", Root()));
}

TEST_CASE("registry authorization: push and pull need the seed's registry permissions, and "
          "with resource management each template's grants") {
  TempDir dir;
  auto daemon = Start(dir, true, true);
  const WireTarget api = daemon->controller();
  const WireTarget registry = daemon->registry();
  PushImage(registry, "team/xcode", "v1", Root());
  PushImage(registry, "team/other", "v1", Root());
  const Json templates = RequireOk(Call(registry, "GET", "/registry/vm", "", Root()));
  REQUIRE(templates.size() == 2);
  std::string xcode;
  for (const Json& one : templates) {
    for (const auto& [id, name] : one.items()) {
      xcode = name == "team/xcode" ? id : xcode;
    }
  }
  REQUIRE_FALSE(xcode.empty());

  CreateGroup(api, "registry", "pullers", {"pull_vm", "download_vm", "list_vms"});
  CreateGroup(api, "registry", "pushers", {"head_push_vm", "push_vm", "pull_vm", "download_vm"});
  const std::string puller = KeyWithGroups(api, "puller", {"pullers"});
  const std::string pusher = KeyWithGroups(api, "pusher", {"pushers"});

  // A puller cannot push: the upload is refused from its head, with an OCI error.
  const WireResponse refused =
      Call(registry, "POST", "/v2/team/xcode/blobs/uploads/", "", puller);
  CHECK(refused.status == 403);
  CHECK_THAT(refused.body, Catch::Contains("\"code\":\"DENIED\""));
  CHECK_THAT(refused.body, Catch::Contains("push_vm is needed"));

  // Resource management: the group permission passes, the template grant decides.
  const WireResponse ungranted = Call(registry, "GET", "/v2/team/xcode/manifests/v1", "", puller);
  CHECK(ungranted.status == 403);
  CHECK_THAT(ungranted.body, Catch::Contains("template pull"));
  RequireOk(Call(registry, "POST", "/admin/api/v1/permission/group/pullers/resources",
                 Json({{"resource_type", "template"}, {"resource_id", xcode},
                       {"permissions", {"pull", "list"}}})
                     .dump(),
                 Root()));
  CHECK(Call(registry, "GET", "/v2/team/xcode/manifests/v1", "", puller).status == 200);
  CHECK(Call(registry, "GET", "/v2/team/xcode/tags/list", "", puller).status == 200);
  CHECK(Call(registry, "GET", "/v2/team/other/manifests/v1", "", puller).status == 403);
  // Blobs are shared on disk, but readable only through a template that holds them.
  const std::string own_layer = Sha256Digest("disk bytes of team/xcode:v1");
  const std::string other_layer = Sha256Digest("disk bytes of team/other:v1");
  CHECK(Call(registry, "GET", "/v2/team/xcode/blobs/" + own_layer, "", puller).status == 200);
  CHECK(Call(registry, "GET", "/v2/team/xcode/blobs/" + other_layer, "", puller).status == 404);
  CHECK(Call(registry, "GET", "/v2/mine/blobs/" + other_layer, "", puller).status == 404);

  // A pusher may create a new template, but adding a tag to an existing one needs push_tag.
  PushImage(registry, "team/fresh", "v1", pusher);
  const WireResponse no_tag = Call(
      registry, "PUT", "/v2/team/xcode/manifests/v2", "{}",
      pusher + "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n");
  CHECK(no_tag.status == 403);
  RequireOk(Call(registry, "POST", "/admin/api/v1/permission/group/pushers/resources",
                 Json({{"resource_type", "template"}, {"resource_id", xcode},
                       {"permissions", {"push_tag", "pull"}}})
                     .dump(),
                 Root()));
  PushImage(registry, "team/xcode", "v2", pusher);
  const Json versions =
      RequireOk(Call(registry, "GET", "/registry/vm?id=" + xcode, "", Root()))["versions"];
  CHECK(versions.size() == 2);

  // Every refusal is recorded, naming the template when a grant decided.
  std::vector<std::string> lines;
  WaitFor(15000, [&] {
    lines = AuditExportLines(dir.Sub("data"));
    return std::count_if(lines.begin(), lines.end(), [](const std::string& line) {
             return line.find("\"type\":\"AccessDenied\"") != std::string::npos;
           }) >= 4;
  });
  int template_denials = 0;
  for (const std::string& line : lines) {
    const Json event = Json::parse(line);
    if (event["type"] == "AccessDenied" && event["payload"]["resource_id"] == xcode) {
      template_denials++;
    }
  }
  CHECK(template_denials == 2);
}

}  // namespace
}  // namespace cloister::testing
