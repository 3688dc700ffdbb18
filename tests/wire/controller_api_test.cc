// The controller endpoints of the real cloisterd (api/cloisterd/controller_api.h) over real
// sockets: node groups, nodes and VM instances in the shapes Anka's clients read, and bad input
// on every endpoint answered with a clear FAIL while nothing is appended to the log.
//
// Nodes join through the node protocol, which comes with the node agent; until then these tests
// see an empty node list, and VM instances wait in Scheduling.
#include <catch2/catch.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

// What the VM requests below name: a VM request for an unknown template is refused.
struct Daemon : TestDaemon {
  Daemon()
      : TestDaemon({{"macos-t", "v1"}, {"macos-15", "v1"}, {"macos-14", "base"}}),
        t(TemplateId("macos-t")),
        tmpl1(TemplateId("macos-15")),
        tmpl2(TemplateId("macos-14")) {}

  // The templates' ids (fresh UUIDs, given by the registry at their first push).
  const std::string t;
  const std::string tmpl1;
  const std::string tmpl2;

  // The events in the log, as JSON lines from the real audit tool (read-only, beside the
  // running daemon).
  std::vector<std::string> Events() const { return AuditExportLines(dir.Sub("data")); }
};

bool IsRfc3339Nano(const std::string& text) {
  static const std::regex pattern(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)");
  return std::regex_match(text, pattern);
}

TEST_CASE("node groups: create, list, show, update, delete") {
  Daemon d;
  Json created = RequireOk(Call(d.api, "POST", "/api/v1/group",
                                R"({"name":"ios","description":"iOS builds"})"));
  const std::string id = created["id"];
  CHECK(!id.empty());
  CHECK(created["name"] == "ios");
  CHECK(created["description"] == "iOS builds");
  CHECK(created["fallback_group_id"] == "");
  Json fallback = RequireOk(Call(d.api, "POST", "/api/v1/group", R"({"name":"any"})"));

  Json list = RequireOk(Call(d.api, "GET", "/api/v1/group"));
  REQUIRE(list.is_array());
  CHECK(list.size() == 2);
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/group?id=" + id)) == created);

  Json updated = RequireOk(Call(d.api, "PUT", "/api/v1/group?id=" + id,
                                R"({"name":"ios-16","fallback_group_id":")" +
                                    fallback["id"].get<std::string>() + R"("})"));
  CHECK(updated["name"] == "ios-16");
  CHECK(updated["description"] == "iOS builds");  // Absent fields stay.
  CHECK(updated["fallback_group_id"] == fallback["id"]);
  // Domain failures: 200 FAIL with the reason.
  CHECK(RequireFail(Call(d.api, "POST", "/api/v1/group", R"({"name":"ios-16"})"), 200)
            .find("ios-16") != std::string::npos);
  RequireFail(Call(d.api, "PUT", "/api/v1/group",
                   R"({"id":")" + id + R"(","fallback_group_id":")" + id + R"("})"),
              200);
  // The fallback is in use: it cannot go first.
  RequireFail(Call(d.api, "DELETE", "/api/v1/group?id=" + fallback["id"].get<std::string>()),
              200);
  RequireOk(Call(d.api, "DELETE", "/api/v1/group", R"({"id":")" + id + R"("})"));
  CHECK(RequireFail(Call(d.api, "GET", "/api/v1/group?id=" + id), 200) == "Not found");
  RequireOk(Call(d.api, "DELETE", "/api/v1/group?id=" + fallback["id"].get<std::string>()));
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/group")) == Json::array());
}

TEST_CASE("VM instances: start, list (wrapped), show (not wrapped), terminate") {
  Daemon d;
  Json group = RequireOk(Call(d.api, "POST", "/api/v1/group", R"({"name":"mac"})"));
  const std::string request = R"({"vmid":")" + d.tmpl1 + R"(","tag":"v1","count":2,"priority":50,)"
                              R"("group_id":")" + group["id"].get<std::string>() +
                              R"(","name":"build","external_id":"job-7","metadata":{"team":"ios"},)"
                              R"("vcpu":4,"vram":8192,"startup_script":"ZWNobyBoaQ==",)"
                              R"("script_monitoring":true,"script_timeout":60,)"
                              R"("port_forwarding_override":[{"guest_port":22,"protocol":"tcp",)"
                              R"("name":"ssh"}]})";
  Json ids = RequireOk(Call(d.api, "POST", "/api/v1/vm", request));
  REQUIRE(ids.is_array());
  REQUIRE(ids.size() == 2);
  const std::string id = ids[0];

  Json list = RequireOk(Call(d.api, "GET", "/api/v1/vm"));
  REQUIRE(list.is_array());
  REQUIRE(list.size() == 2);
  for (const Json& item : list) {
    CHECK(item["instance_id"].is_string());
    CHECK(item["external_id"] == "job-7");
    REQUIRE(item["vm"].is_object());
    CHECK(item["vm"]["instance_id"] == item["instance_id"]);
  }

  Json vm = RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id));
  REQUIRE(vm.is_object());
  CHECK(vm["instance_id"] == id);
  CHECK(vm["instance_state"] == "Scheduling");
  CHECK(vm["vmid"] == d.tmpl1);
  CHECK(vm["tag"] == "v1");
  CHECK(vm["group_id"] == group["id"]);
  CHECK(vm["name"] == "build");
  CHECK(vm["external_id"] == "job-7");
  CHECK(vm["metadata"] == Json{{"team", "ios"}});
  CHECK(vm["priority"] == 50);
  CHECK(vm["progress"] == 0);
  CHECK(IsRfc3339Nano(vm["ts"]));
  CHECK(IsRfc3339Nano(vm["cr_time"]));
  CHECK(!vm.contains("node_id"));  // Empty fields are left out...
  CHECK(!vm.contains("vminfo"));
  for (const char* always : {"vmid", "group_id", "instance_state", "ts", "cr_time", "progress"}) {
    CHECK(vm.contains(always));  // ...except these.
  }
  Json ungrouped = RequireOk(Call(d.api, "POST", "/api/v1/vm", R"({"vmid":")" + d.tmpl2 + R"("})"));
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + ungrouped[0].get<std::string>()))
            ["group_id"] == "");

  // Never placed on a node: terminating ends it at once.
  CHECK(RequireOk(Call(d.api, "DELETE", "/api/v1/vm", R"({"id":")" + id + R"("})")).is_null());
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id))["instance_state"] == "Terminated");
  RequireOk(Call(d.api, "DELETE", "/api/v1/vm?id=" + ids[1].get<std::string>()));
  CHECK(RequireFail(Call(d.api, "GET", "/api/v1/vm?id=nope"), 200) == "Not found");
  CHECK(RequireFail(Call(d.api, "DELETE", "/api/v1/vm", R"({"id":"nope"})"), 200) ==
        "Not found");
}

TEST_CASE("nodes: an array, also for one id; unknown ids are Not found") {
  Daemon d;
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/node")) == Json::array());
  CHECK(RequireFail(Call(d.api, "GET", "/api/v1/node?id=nope"), 200) == "Not found");
  CHECK(RequireFail(Call(d.api, "DELETE", "/api/v1/node", R"({"node_id":"nope"})"), 200)
            .find("nope") != std::string::npos);
}

TEST_CASE("bad input on every endpoint: a clear FAIL, and nothing appended") {
  Daemon d;
  const std::string with_t = R"({"vmid":")" + d.t + '"';  // A VM request's start.
  Json group = RequireOk(Call(d.api, "POST", "/api/v1/group", R"({"name":"g"})"));
  const std::string g = group["id"];
  const std::string vm = RequireOk(Call(d.api, "POST", "/api/v1/vm", with_t + "}"))[0];
  RequireOk(Call(d.api, "PUT", "/api/v1/config", R"({"scheduler_enabled":false})"));
  const size_t events_before = d.Events().size();
  const Json vms_before = RequireOk(Call(d.api, "GET", "/api/v1/vm"));
  struct Case {
    const char* method;
    std::string path;
    std::string body;
    int status;        // 400: malformed; 200: a domain FAIL; 405: method.
    const char* says;  // A fragment of the message ("" to skip).
  };
  const std::vector<Case> cases = {
      {"POST", "/api/v1/group", "not json", 400, "JSON object"},
      {"POST", "/api/v1/group", "[1]", 400, "JSON object"},
      {"POST", "/api/v1/group", R"({"name":5})", 400, "name"},
      {"POST", "/api/v1/group", R"({"name":""})", 200, "name"},
      {"POST", "/api/v1/group", R"({"name":"x","fallback_group_id":"nope"})", 200, "nope"},
      {"PUT", "/api/v1/group", R"({"name":"y"})", 400, "id"},
      {"PUT", "/api/v1/group?id=nope", R"({"name":"y"})", 200, "nope"},
      {"PUT", "/api/v1/group?id=" + g, R"({"description":[]})", 400, "description"},
      {"DELETE", "/api/v1/group?id=nope", "", 200, "nope"},
      {"POST", "/api/v1/node/group", R"({"group_ids":"x","node_ids":[]})", 400, "group_ids"},
      {"POST", "/api/v1/node/group", R"({"group_ids":[1],"node_ids":[]})", 400, "group_ids"},
      {"POST", "/api/v1/node/group", R"({"group_ids":[")" + g + R"("],"node_ids":["nope"]})",
       200, "nope"},
      {"DELETE", "/api/v1/node/group", "{}", 200, "empty"},
      {"GET", "/api/v1/node/group", "", 405, ""},
      {"DELETE", "/api/v1/node", "{}", 400, "node_id"},
      {"DELETE", "/api/v1/node", R"({"node_id":7})", 400, "node_id"},
      {"PUT", "/api/v1/node", "{}", 405, ""},
      {"POST", "/api/v1/vm", "{", 400, "JSON object"},
      {"POST", "/api/v1/vm", R"({"vmid":1})", 400, "vmid"},
      {"POST", "/api/v1/vm", "{}", 200, "vmid"},
      {"POST", "/api/v1/vm", with_t + R"(,"count":-5})", 200, "count"},
      {"POST", "/api/v1/vm", with_t + R"(,"count":0})", 200, "count"},
      {"POST", "/api/v1/vm", with_t + R"(,"count":101})", 200, "count"},
      {"POST", "/api/v1/vm", with_t + R"(,"count":4294967296})", 200, "count"},
      // Beyond 64 bits JSON parsers hold a float: not a whole number.
      {"POST", "/api/v1/vm", with_t + R"(,"count":100000000000000000000})", 400, "count"},
      {"POST", "/api/v1/vm", with_t + R"(,"count":1.5})", 400, "count"},
      {"POST", "/api/v1/vm", with_t + R"(,"priority":0})", 200, "priority"},
      {"POST", "/api/v1/vm", with_t + R"(,"priority":10001})", 200, "priority"},
      {"POST", "/api/v1/vm", with_t + R"(,"priority":-1})", 200, "priority"},
      {"POST", "/api/v1/vm", with_t + R"(,"priority":"1"})", 400, "priority"},
      {"POST", "/api/v1/vm", with_t + R"(,"group_id":"nope"})", 200, "nope"},
      {"POST", "/api/v1/vm", with_t + R"(,"node_id":"nope"})", 200, "nope"},
      {"POST", "/api/v1/vm", with_t + R"(,"metadata":"x"})", 400, "metadata"},
      {"POST", "/api/v1/vm", with_t + R"(,"script_monitoring":"yes"})", 400,
       "script_monitoring"},
      {"POST", "/api/v1/vm", with_t + R"(,"port_forwarding_override":{}})", 400,
       "port_forwarding_override"},
      {"POST", "/api/v1/vm", with_t + R"(,"port_forwarding_override":[{"guest_port":"a"}]})",
       400, "guest_port"},
      {"POST", "/api/v1/vm", with_t + R"(,"port_forwarding_override":[{"guest_port":0}]})",
       200, "guest_port"},
      {"POST", "/api/v1/vm",
       with_t + R"(,"port_forwarding_override":[{"guest_port":22,"protocol":"sctp"}]})", 200,
       "protocol"},
      {"POST", "/api/v1/vm", with_t + R"(,"name":"a\u0001b"})", 200, "name"},
      {"POST", "/api/v1/vm", with_t + R"(,"startup_script":"echo hi"})", 200, "base64"},
      {"POST", "/api/v1/vm", R"({"vmid":")" + std::string(300, 'v') + R"("})", 200, "vmid"},
      {"DELETE", "/api/v1/vm", "{}", 400, "id"},
      {"DELETE", "/api/v1/vm", R"({"id":"nope"})", 200, "Not found"},
      {"PATCH", "/api/v1/vm", "{}", 405, ""},
      // Templates and tags: the Anka strings clients match.
      {"POST", "/api/v1/vm", R"({"vmid":"unknown"})", 200, "VM not in the registry"},
      {"POST", "/api/v1/vm", with_t + R"(,"tag":"v9"})", 200, "No such tag v9"},
      {"POST", "/api/v1/vm", with_t + R"(,"version":7})", 200, "No such version 7"},
      // Another template's tag is not this one's.
      {"POST", "/api/v1/vm", with_t + R"(,"tag":"base"})", 200, "No such tag base"},
      {"PUT", "/api/v1/vm", R"({"name":"x"})", 400, "id"},
      {"PUT", "/api/v1/vm?id=nope", R"({"name":"x"})", 200, "Not found"},
      {"PUT", "/api/v1/vm?id=" + vm, "{}", 400, "nothing to change"},
      {"PUT", "/api/v1/vm?id=" + vm, R"({"name":7})", 400, "name"},
      {"PUT", "/api/v1/vm?id=" + vm, R"({"metadata":[1]})", 400, "metadata"},
      {"PUT", "/api/v1/vm?id=" + vm, R"({"external_id":"a\u0002"})", 200, "external_id"},
      {"POST", "/api/v1/rpc/vm/restart", "{}", 400, "id"},
      {"POST", "/api/v1/rpc/vm/restart", R"({"id":"nope"})", 200, "Not found"},
      {"POST", "/api/v1/rpc/vm/restart", R"({"id":")" + vm + R"("})", 200, "Scheduling"},
      {"GET", "/api/v1/rpc/vm/restart", "", 405, ""},
      {"POST", "/api/v1/node/config", "{}", 400, "node_id"},
      {"POST", "/api/v1/node/config", R"({"node_id":"nope","drain_mode":true})", 200,
       "Not found"},
      {"POST", "/api/v1/node/config", R"({"node_id":"n","max_vm_count":-1})", 400,
       "max_vm_count"},
      {"POST", "/api/v1/node/config", R"({"node_id":"n","max_vm_count":99999999999})", 400,
       "max_vm_count"},
      {"POST", "/api/v1/node/config", R"({"node_id":"n","ram_override":"8"})", 400,
       "ram_override"},
      {"POST", "/api/v1/node/config", R"({"node_id":"n","drain_mode":"yes"})", 400,
       "drain_mode"},
      {"GET", "/api/v1/node/config", "", 405, ""},
      {"PUT", "/api/v1/node/update", "not json", 400, "JSON object"},
      {"POST", "/api/v1/node/update", "{}", 405, ""},
      {"POST", "/api/v1/image", "{}", 400, "id"},
      {"POST", "/api/v1/image", R"({"id":"nope","tag":"x","target_vm_id":")" + d.t + R"("})", 200,
       "Not found"},
      {"POST", "/api/v1/image",
       R"({"id":")" + vm + R"(","tag":"x","target_vm_id":")" + d.t + R"("})", 200, "Scheduling"},
      {"POST", "/api/v1/image", R"({"id":")" + vm + R"(","suspend":"no"})", 400, "suspend"},
      {"GET", "/api/v1/image?id=nope", "", 200, "Not found"},
      {"DELETE", "/api/v1/image", "", 405, ""},
      {"GET", "/api/v1/registry/vm?id=nope", "", 200, "Not found"},
      {"POST", "/api/v1/registry/vm", "{}", 405, ""},
      // The root-only stand-in that registered templates before the registry is gone: the
      // router's 404, as for any path outside the table.
      {"POST", "/api/v1/admin/template", R"({"name":"n","tag":"v1"})", 404, "not found"},
  };
  for (const Case& c : cases) {
    INFO(c.method << " " << c.path << " " << c.body);
    const std::string message = RequireFail(Call(d.api, c.method, c.path, c.body), c.status);
    CHECK(message.find(c.says) != std::string::npos);
  }
  CHECK(d.Events().size() == events_before);
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/vm")) == vms_before);
}

TEST_CASE("PUT /api/v1/vm changes name, external_id and metadata; absent fields stay") {
  Daemon d;
  const std::string id =
      RequireOk(Call(d.api, "POST", "/api/v1/vm",
                     R"({"vmid":")" + d.t +
                         R"(","name":"a","external_id":"e1","metadata":{"k":1}})"))[0];
  CHECK(RequireOk(Call(d.api, "PUT", "/api/v1/vm?id=" + id, R"({"name":"b"})")).is_null());
  Json vm = RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id));
  CHECK(vm["name"] == "b");
  CHECK(vm["external_id"] == "e1");
  CHECK(vm["metadata"] == Json{{"k", 1}});
  RequireOk(Call(d.api, "PUT", "/api/v1/vm", R"({"id":")" + id +
                                                 R"(","external_id":"","metadata":{"k":2}})"));
  vm = RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id));
  CHECK(!vm.contains("external_id"));  // Cleared, so left out.
  CHECK(vm["metadata"] == Json{{"k", 2}});
  CHECK(vm["name"] == "b");
}

TEST_CASE("templates: pushed, listed and shown with their versions as Anka does") {
  Daemon d;
  const std::string id = PushTemplate(d.registry, "sonoma", "base", "", "clean");
  CHECK(id != d.t);
  CHECK(PushTemplate(d.registry, "sonoma", "xcode") == id);  // The name's template, a new tag.
  Json list = RequireOk(Call(d.api, "GET", "/api/v1/registry/vm"));
  REQUIRE(list.is_array());
  CHECK(list.size() == 4);  // With the three the fixture pushed.
  Json shown = RequireOk(Call(d.api, "GET", "/api/v1/registry/vm?id=" + id));
  CHECK(shown["id"] == id);
  CHECK(shown["name"] == "sonoma");
  REQUIRE(shown["versions"].size() == 2);
  CHECK(shown["versions"][0]["number"] == 0);
  CHECK(shown["versions"][0]["tag"] == "base");
  CHECK(shown["versions"][0]["description"] == "clean");
  CHECK(shown["versions"][1]["number"] == 1);
  CHECK(shown["versions"][1]["tag"] == "xcode");
  CHECK(IsRfc3339Nano(shown["versions"][1]["creation_date"]));
  // A request by tag or by version number; the latest when neither is given.
  RequireOk(Call(d.api, "POST", "/api/v1/vm", R"({"vmid":")" + id + R"(","tag":"xcode"})"));
  RequireOk(Call(d.api, "POST", "/api/v1/vm", R"({"vmid":")" + id + R"(","version":0})"));
  RequireOk(Call(d.api, "POST", "/api/v1/vm", R"({"vmid":")" + id + R"("})"));
}

TEST_CASE("POST /api/v1/admin/template, the stand-in before the registry, is an unknown path") {
  Daemon d;
  const size_t events_before = d.Events().size();
  const WireResponse gone = Call(d.api, "POST", "/api/v1/admin/template",
                                 R"({"id":"tmpl-9","name":"macos-9","tag":"v1"})");
  CHECK(RequireFail(gone, 404) == "not found");
  const WireResponse unknown = Call(d.api, "POST", "/api/v1/admin/nope", R"({"tag":"v1"})");
  CHECK(gone.body == unknown.body);
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/registry/vm")).size() == 3);
  CHECK(d.Events().size() == events_before);
}

TEST_CASE("node update and save-image list answer in the Anka envelope") {
  Daemon d;
  CHECK(RequireOk(Call(d.api, "PUT", "/api/v1/node/update")).is_null());
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/image")) == Json::array());
  bool recorded = false;
  for (const std::string& line : d.Events()) {
    recorded = recorded || line.find("NodeAgentsUpdateRequested") != std::string::npos;
  }
  CHECK(recorded);
}

TEST_CASE("a VNC password is accepted but never recorded") {
  Daemon d;
  const std::string canary = "vnc-canary-5e1f0a";
  Json ids = RequireOk(
      Call(d.api, "POST", "/api/v1/vm",
           R"({"vmid":")" + d.t + R"(","vnc_password":")" + canary + R"("})"));
  REQUIRE(ids.size() == 1);
  for (const std::string& line : d.Events()) {
    CHECK(line.find(canary) == std::string::npos);
  }
  bool flagged = false;
  for (const std::string& line : d.Events()) {
    flagged = flagged || line.find(R"("vnc_password_set":true)") != std::string::npos;
  }
  CHECK(flagged);
}

}  // namespace
}  // namespace cloister::testing
