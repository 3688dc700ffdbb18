// Authorization: the decision over hand-built views (rules, explanations, caching), and the
// permission-group and resource-grant commands through the engine (validation, events, views).
#include "engine/authorization.h"

#include <catch2/catch.hpp>

#include "engine/engine.h"
#include "engine/queue_poster.h"
#include "log/log.h"
#include "log/snapshot_store.h"
#include "tests/testutil.h"

namespace cloister::engine {
namespace {

// ---- The decision -------------------------------------------------------------------------

constexpr AuthzSwitches kOn{true, true};

void AddGroup(reducers::Views* v, const std::string& component, const std::string& name,
              std::set<std::string> permissions) {
  reducers::PermissionGroup g;
  g.component = component;
  g.name = name;
  g.permissions = std::move(permissions);
  v->permission_groups.groups[component + "/" + name] = g;
  v->authz_seq++;
}

void Grant(reducers::Views* v, const std::string& type, const std::string& id,
           const std::string& principal, std::set<std::string> permissions) {
  reducers::ResourceGrant g;
  g.resource_type = type;
  g.resource_id = id;
  g.principal = principal;
  g.permissions = std::move(permissions);
  v->resource_permissions.grants[type + "/" + id + "/" + principal] = g;
  v->authz_seq++;
}

Principal User(std::string name, std::vector<std::string> groups) {
  return Principal{fb::ActorKind::ApiKey, std::move(name), std::move(groups)};
}

TEST_CASE("root and system are always allowed; authorization off allows everyone") {
  reducers::Views v;
  Authorization authz(&v);
  const Principal root{fb::ActorKind::Root, "root", {}};
  Decision d = authz.HasPermission(root, Component::kController, "start_vm", kOn);
  CHECK(d.allowed);
  CHECK(d.Explain() == "root");
  CHECK(authz.HasPermission(Principal::System(), Component::kController, "start_vm", kOn).allowed);
  d = authz.HasPermission(User("jenkins", {}), Component::kController, "start_vm", {});
  CHECK(d.allowed);
  CHECK(d.Explain() == "authorization off");
  d = authz.HasPermission(User("jenkins", {}), Component::kController, "start_vm", kOn);
  CHECK_FALSE(d.allowed);
  CHECK(d.Explain() == "no group of jenkins grants start_vm");
  ResourceSet all = authz.AllowedResources(root, "node", "create_instance", kOn);
  CHECK(all.all);
  CHECK(authz.AllowedResources(User("x", {}), "node", "list", {true, false}).all);
  CHECK(authz.MayUseResource(User("x", {}), "node", "n1", "list", {true, false}).Explain() ==
        "resource management off");
}

TEST_CASE("group permissions: a group, or the principal's own name, grants; per component") {
  reducers::Views v;
  AddGroup(&v, "controller", "ios", {"start_vm", "list_vms"});
  AddGroup(&v, "controller", "jenkins", {"terminate_vm"});
  AddGroup(&v, "registry", "ios", {"pull_vm", "view_prmission_groups"});
  Authorization authz(&v);
  const Principal p = User("jenkins", {"android", "ios"});
  Decision d = authz.HasPermission(p, Component::kController, "start_vm", kOn);
  CHECK(d.allowed);
  CHECK(d.rule == DecisionRule::kGroupGrants);
  CHECK(d.Explain() == "group ios grants start_vm");
  d = authz.HasPermission(p, Component::kController, "terminate_vm", kOn);
  CHECK(d.allowed);
  CHECK(d.Explain() == "jenkins holds terminate_vm directly");
  CHECK_FALSE(authz.HasPermission(p, Component::kController, "pull_vm", kOn).allowed);
  CHECK(authz.HasPermission(p, Component::kRegistry, "pull_vm", kOn).allowed);
  CHECK_FALSE(authz.HasPermission(p, Component::kRegistry, "push_vm", kOn).allowed);
  // Both spellings of the seed's permission.
  CHECK(authz.HasPermission(p, Component::kRegistry, "view_permission_groups", kOn).allowed);
  d = authz.HasPermission(p, Component::kRegistry, "view_prmission_groups", kOn);
  CHECK(d.allowed);
  CHECK(std::string(d.permission) == "view_prmission_groups");
  d = authz.HasPermission(p, Component::kController, "fly", kOn);
  CHECK_FALSE(d.allowed);
  CHECK(d.Explain() == "unknown permission fly");
  CHECK(authz.HasPermission(Principal::Anonymous(), Component::kController, "list_vms", kOn)
            .Explain() == "no group of (anonymous) grants list_vms");
}

TEST_CASE("resource permissions filter nodes and templates by the principal's subjects") {
  reducers::Views v;
  Grant(&v, "node", "n1", "ios", {"create_instance", "list"});
  Grant(&v, "node", "n2", "android", {"create_instance"});
  Grant(&v, "node", "n3", "jenkins", {"list"});
  Grant(&v, "template", "t1", "ios", {"pull"});
  Authorization authz(&v);
  const Principal p = User("jenkins", {"ios"});
  ResourceSet nodes = authz.AllowedResources(p, "node", "create_instance", kOn);
  CHECK_FALSE(nodes.all);
  CHECK(nodes.ids == std::vector<std::string>{"n1"});
  CHECK(authz.AllowedResources(p, "node", "list", kOn).ids ==
        std::vector<std::string>{"n1", "n3"});
  Decision d = authz.MayUseResource(p, "node", "n1", "create_instance", kOn);
  CHECK(d.allowed);
  CHECK(d.Explain() == "group ios grants node permission create_instance");
  d = authz.MayUseResource(p, "node", "n2", "create_instance", kOn);
  CHECK_FALSE(d.allowed);
  CHECK(d.Explain() == "no group of jenkins grants node permission create_instance");
  CHECK(authz.MayUseResource(p, "node", "n3", "list", kOn).rule ==
        DecisionRule::kPrincipalGrants);
  CHECK(authz.MayUseResource(p, "template", "t1", "pull", kOn).allowed);
  CHECK_FALSE(authz.MayUseResource(p, "template", "t1", "push_tag", kOn).allowed);
  CHECK_FALSE(authz.MayUseResource(p, "template", "t9", "pull", kOn).allowed);
  CHECK(authz.MayUseResource(p, "vm", "x", "pull", kOn).rule == DecisionRule::kUnknownPermission);
  CHECK(authz.AllowedResources(User("nobody", {}), "node", "list", kOn).ids.empty());
}

TEST_CASE("the cache is keyed by the whole identity and dropped when authz_seq moves") {
  reducers::Views v;
  AddGroup(&v, "controller", "ios", {"start_vm"});
  Authorization authz(&v);
  const Principal a = User("jenkins", {"ios"});
  const Principal b = User("jenkins", {"android"});
  CHECK(authz.HasPermission(a, Component::kController, "start_vm", kOn).allowed);
  CHECK_FALSE(authz.HasPermission(b, Component::kController, "start_vm", kOn).allowed);
  CHECK(authz.HasPermission(a, Component::kController, "start_vm", kOn).allowed);
  CHECK(authz.stats().cache_hits == 1);
  CHECK(authz.stats().cache_misses == 2);
  AddGroup(&v, "controller", "android", {"start_vm"});  // Bumps authz_seq.
  CHECK(authz.HasPermission(b, Component::kController, "start_vm", kOn).allowed);
  CHECK(authz.stats().reindexes == 2);
  v.permission_groups.groups.clear();
  v.authz_seq++;
  CHECK_FALSE(authz.HasPermission(b, Component::kController, "start_vm", kOn).allowed);
}

TEST_CASE("a bounded cache is emptied when full and keeps deciding correctly") {
  reducers::Views v;
  AddGroup(&v, "controller", "ios", {"start_vm"});
  Authorization authz(&v, 4);
  for (int i = 0; i < 20; i++) {
    const Principal p = User("u" + std::to_string(i), {i % 2 == 0 ? "ios" : "android"});
    CHECK(authz.HasPermission(p, Component::kController, "start_vm", kOn).allowed == (i % 2 == 0));
  }
  CHECK(authz.stats().cache_misses == 20);
}

// ---- The commands -------------------------------------------------------------------------

constexpr int64_t kStartNs = 1'790'000'000'000'000'000;
constexpr std::chrono::seconds kWait(20);

struct Harness {
  explicit Harness(const std::string& dir) {
    log::Options log_options;
    log_options.dir = dir;
    auto opened = log::Log::Open(log_options);
    REQUIRE(opened.ok());
    log = std::move(opened.value());
    EngineOptions options;
    options.log = log.get();
    options.clock = &clock;
    options.rng = &rng;
    options.poster = &poster;
    options.snapshot_interval_events = 0;
    auto engine_opened = Engine::Open(options);
    REQUIRE(engine_opened.ok());
    engine = std::move(engine_opened.value());
  }

  Reply Run(Command command, Principal principal = Principal::System()) {
    std::optional<Reply> reply;
    engine->Submit(principal, std::move(command), "req", [&](Reply r) { reply = r; });
    REQUIRE(poster.RunUntil([&] { return reply.has_value(); }, kWait));
    return *reply;
  }

  const reducers::Views& views() const { return engine->views(); }

  SimClock clock{kStartNs};
  SeededRng rng{42};
  QueuePoster poster;
  std::unique_ptr<log::Log> log;
  std::unique_ptr<Engine> engine;
};

TEST_CASE("permission groups: created, updated, deleted; names and permissions validated") {
  testing::TempDir dir;
  Harness h(dir.path());
  Reply created = h.Run(CreatePermissionGroup{"controller", "ios team", "iOS",
                                              {"start_vm", "view_permission_groups"}});
  REQUIRE(created.ok());
  CHECK(created.ids == std::vector<std::string>{"ios team"});
  const reducers::PermissionGroup& g = h.views().permission_groups.groups.at("controller/ios team");
  CHECK(g.permissions == std::set<std::string>{"start_vm", "view_prmission_groups"});
  CHECK(g.description == "iOS");
  // The same name in the other component is another group.
  CHECK(h.Run(CreatePermissionGroup{"registry", "ios team", "", {"pull_vm"}}).ok());
  CHECK(h.Run(CreatePermissionGroup{"controller", "ios team", "", {}}).rejection ==
        Rejection::kNameTaken);

  Reply unknown = h.Run(CreatePermissionGroup{"controller", "x", "", {"start_vm", "pull_vm"}});
  CHECK(unknown.rejection == Rejection::kInvalidArgument);
  CHECK(unknown.message.find("'pull_vm'") != std::string::npos);
  CHECK(h.Run(CreatePermissionGroup{"agent", "x", "", {}}).rejection ==
        Rejection::kInvalidArgument);
  CHECK(h.Run(CreatePermissionGroup{"controller", "a/b", "", {}}).rejection ==
        Rejection::kInvalidArgument);
  CHECK(h.Run(CreatePermissionGroup{"controller", "", "", {}}).rejection ==
        Rejection::kInvalidArgument);
  CHECK(h.Run(CreatePermissionGroup{"controller", std::string(129, 'a'), "", {}}).rejection ==
        Rejection::kInvalidArgument);
  CHECK(h.Run(CreatePermissionGroup{"controller", std::string(128, 'a'), "", {}}).ok());

  const uint64_t head = h.log->head().seq;
  Reply same = h.Run(UpdatePermissionGroup{"controller", "ios team", std::nullopt,
                                           std::vector<std::string>{"view_prmission_groups",
                                                                    "start_vm"}});
  CHECK(same.ok());
  CHECK(h.log->head().seq == head);  // Nothing changed: no event.
  REQUIRE(h.Run(UpdatePermissionGroup{"controller", "ios team", std::nullopt,
                                      std::vector<std::string>{"list_vms"}})
              .ok());
  CHECK(h.views().permission_groups.groups.at("controller/ios team").permissions ==
        std::set<std::string>{"list_vms"});
  CHECK(h.views().permission_groups.groups.at("controller/ios team").description == "iOS");
  CHECK(h.Run(UpdatePermissionGroup{"controller", "ghost", "d", std::nullopt}).rejection ==
        Rejection::kNotFound);
  CHECK(h.Run(DeletePermissionGroup{"controller", "ghost"}).rejection == Rejection::kNotFound);
  REQUIRE(h.Run(DeletePermissionGroup{"controller", "ios team"}).ok());
  CHECK_FALSE(h.views().permission_groups.groups.contains("controller/ios team"));
  CHECK(h.views().permission_groups.groups.contains("registry/ios team"));
}

TEST_CASE("resource permissions: known resources and permissions; empty removes") {
  testing::TempDir dir;
  Harness h(dir.path());
  REQUIRE(h.Run(JoinNode{"node-1", "mac-1", "10.0.0.2", 8, 16384, 8, 8192, 2, "", "arm64", "sim",
                         {}})
              .ok());
  PushManifest push;
  push.repository = "macos-15";
  push.digest = "sha256:" + std::string(64, 'a');
  push.media_type = "application/vnd.oci.image.manifest.v1+json";
  push.tag = "v1";
  Reply pushed = h.Run(push);
  REQUIRE(pushed.ok());
  const std::string tmpl = pushed.ids.at(0);
  REQUIRE(h.Run(CreatePermissionGroup{"controller", "ios", "", {"start_vm"}}).ok());

  REQUIRE(h.Run(SetResourcePermissions{"node", "node-1", "ios", {"create_instance", "list"}}).ok());
  CHECK(h.views().resource_permissions.grants.at("node/node-1/ios").permissions ==
        std::set<std::string>{"create_instance", "list"});
  // A template by name is recorded by id.
  REQUIRE(h.Run(SetResourcePermissions{"template", "macos-15", "ios", {"pull"}}).ok());
  CHECK(h.views().resource_permissions.grants.contains("template/" + tmpl + "/ios"));

  CHECK(h.Run(SetResourcePermissions{"node", "node-9", "ios", {"list"}}).rejection ==
        Rejection::kNotFound);
  CHECK(h.Run(SetResourcePermissions{"template", "nope", "ios", {"pull"}}).rejection ==
        Rejection::kNotFound);
  Reply bad = h.Run(SetResourcePermissions{"node", "node-1", "ios", {"pull"}});
  CHECK(bad.rejection == Rejection::kInvalidArgument);
  CHECK(bad.message.find("'pull'") != std::string::npos);
  CHECK(h.Run(SetResourcePermissions{"vm", "node-1", "ios", {"list"}}).rejection ==
        Rejection::kInvalidArgument);
  CHECK(h.Run(SetResourcePermissions{"node", "node-1", "bad/name", {"list"}}).rejection ==
        Rejection::kInvalidArgument);

  // Removing a grant needs no resource; removing none records nothing.
  REQUIRE(h.Run(SetResourcePermissions{"node", "node-1", "ios", {}}).ok());
  CHECK_FALSE(h.views().resource_permissions.grants.contains("node/node-1/ios"));
  const uint64_t head = h.log->head().seq;
  CHECK(h.Run(SetResourcePermissions{"node", "node-7", "ios", {}}).ok());
  CHECK(h.log->head().seq == head);

  // Deleting the controller group drops its node grants, not its template grants.
  REQUIRE(h.Run(SetResourcePermissions{"node", "node-1", "ios", {"list"}}).ok());
  REQUIRE(h.Run(DeletePermissionGroup{"controller", "ios"}).ok());
  CHECK_FALSE(h.views().resource_permissions.grants.contains("node/node-1/ios"));
  CHECK(h.views().resource_permissions.grants.contains("template/" + tmpl + "/ios"));
}

TEST_CASE("an access denial is recorded with the denied principal as the actor") {
  testing::TempDir dir;
  Harness h(dir.path());
  const Principal jenkins{fb::ActorKind::ApiKey, "jenkins", {"ci"}};
  Reply r = h.Run(RecordAccessDenied{"start_vm", "node", "n1", "POST", "/api/v1/vm", "10.0.0.9"},
                  jenkins);
  REQUIRE(r.ok());
  CHECK(r.seq_first == 1);
  CHECK(h.Run(RecordAccessDenied{""}).rejection == Rejection::kInvalidArgument);
  CHECK(std::string(CommandName(Command(RecordAccessDenied{}))) == "record_access_denied");
}

TEST_CASE("the decision follows the engine's views as commands change them") {
  testing::TempDir dir;
  Harness h(dir.path());
  Authorization authz(&h.views());
  const Principal p{fb::ActorKind::ApiKey, "jenkins", {"ios"}};
  CHECK_FALSE(authz.HasPermission(p, Component::kController, "start_vm", kOn).allowed);
  REQUIRE(h.Run(CreatePermissionGroup{"controller", "ios", "", {"start_vm"}}).ok());
  CHECK(authz.HasPermission(p, Component::kController, "start_vm", kOn).allowed);
  REQUIRE(h.Run(UpdatePermissionGroup{"controller", "ios", std::nullopt,
                                      std::vector<std::string>{}})
              .ok());
  CHECK_FALSE(authz.HasPermission(p, Component::kController, "start_vm", kOn).allowed);
}

}  // namespace
}  // namespace cloister::engine
