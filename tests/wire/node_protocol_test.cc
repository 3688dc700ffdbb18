// The node-facing protocol of the real cloisterd (api/cloisterd/node_api.h,
// docs/node_protocol.md), driven by a scripted agent over raw HTTP: join, heartbeat, placement
// by the scheduler, the long-poll, reports, termination, heartbeat timeouts, bad input, and
// long-polls answered at shutdown.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

struct Daemon : TestDaemon {
  Daemon()
      : TestDaemon({{"macos-15", "v1"}, {"macos-t", "v1"}}),
        tmpl1(TemplateId("macos-15")),
        t(TemplateId("macos-t")) {}

  // The templates' ids (fresh UUIDs, given by the registry at their first push).
  const std::string tmpl1;
  const std::string t;
};

std::string Join(const WireTarget& api, const std::string& name, const std::string& groups) {
  Json body = RequireOk(Call(api, "POST", "/node/v1/join",
                             R"({"node_name":")" + name + R"(","ip_address":"10.0.0.5",)"
                             R"("cpu_count":8,"ram_mb":32768,"max_vm_count":2,"arch":"arm64",)"
                             R"("groups":)" + groups + "}"));
  REQUIRE(body["node_id"].is_string());
  return body["node_id"];
}

Json Heartbeat(const WireTarget& api, const std::string& node_id, const std::string& extra = "") {
  return RequireOk(Call(api, "POST", "/node/v1/heartbeat",
                        R"({"node_id":")" + node_id + R"(","vm_count":0)" + extra + "}"));
}

Json Node(const WireTarget& api, const std::string& node_id) {
  Json list = RequireOk(Call(api, "GET", "/api/v1/node?id=" + node_id));
  REQUIRE(list.is_array());
  REQUIRE(list.size() == 1);
  return list[0];
}

Json Report(const WireTarget& api, const std::string& node_id, const std::string& reports) {
  Json body = RequireOk(Call(api, "POST", "/node/v1/report",
                             R"({"node_id":")" + node_id + R"(","reports":)" + reports + "}"));
  REQUIRE(body["results"].is_array());
  return body["results"];
}

TEST_CASE("join, heartbeat, placement, long-poll, reports and termination") {
  Daemon d;
  const std::string group =
      RequireOk(Call(d.api, "POST", "/api/v1/group", R"({"name":"mac"})"))["id"];
  const std::string node_id = Join(d.api, "mac-1", R"(["mac"])");  // By name.
  CHECK(Node(d.api, node_id)["state"] == "Offline");  // Until its first heartbeat.
  CHECK(Heartbeat(d.api, node_id, R"(,"templates":[")" + d.tmpl1 + R"("])")["state"] == "Active");
  Json node = Node(d.api, node_id);
  CHECK(node["state"] == "Active");
  CHECK(node["groups"][0]["id"] == group);
  CHECK(node["templates"][0]["id"] == d.tmpl1);
  CHECK(node["ram"] == 32);

  // The agent waits; a VM request (placed on it at once by the scheduler) wakes it.
  const uint64_t after = RequireOk(Call(d.api, "GET", "/node/v1/instances?node_id=" + node_id))
                             ["seq"].get<uint64_t>();
  auto poll = WireConnection::Connect(d.api);
  REQUIRE(poll.ok());
  REQUIRE((*poll)
              ->Send(MakeRequest("GET", "/node/v1/instances?node_id=" + node_id +
                                            "&after=" + std::to_string(after) + "&wait_ms=20000"))
              .ok());
  CHECK(!(*poll)->ReadResponse(300).ok());  // Nothing yet: it waits.
  const int64_t requested = MonotonicMs();
  const std::string instance = RequireOk(Call(
      d.api, "POST", "/api/v1/vm",
      R"({"vmid":")" + d.tmpl1 + R"(","group_id":")" + group + R"(","vcpu":2})"))[0];
  auto woken = (*poll)->ReadResponse(5000);
  INFO(woken.status().ToString());
  REQUIRE(woken.ok());
  CHECK(MonotonicMs() - requested < 3000);
  Json news = RequireOk(*woken);
  REQUIRE(news["instances"].size() == 1);
  CHECK(news["instances"][0]["instance_id"] == instance);
  CHECK(news["instances"][0]["desired"] == "Started");
  CHECK(news["instances"][0]["vmid"] == d.tmpl1);
  CHECK(news["instances"][0]["vcpu"] == 2);
  CHECK(news["seq"].get<uint64_t>() > after);
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + instance))["node_id"] == node_id);

  const std::string id = R"({"instance_id":")" + instance + R"(",)";
  Json results = Report(d.api, node_id,
                        "[" + id + R"("state":"Pulling","progress":0.5},)" + id +
                            R"("state":"Started","progress":1,"vm_uuid":"uuid-1",)"
                            R"("ip":"192.168.64.2","vnc_port":5901}])");
  CHECK(results[0]["status"] == "OK");
  CHECK(results[1]["status"] == "OK");
  Json vm = RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + instance));
  CHECK(vm["instance_state"] == "Started");
  CHECK(vm["vminfo"]["uuid"] == "uuid-1");
  CHECK(vm["vminfo"]["status"] == "running");
  CHECK(vm["vminfo"]["ip"] == "192.168.64.2");
  CHECK(vm["vminfo"]["host_ip"] == "10.0.0.5");
  CHECK(vm["vminfo"]["vnc_connection_string"] == "vnc://10.0.0.5:5901");
  CHECK(vm["arch"] == "arm64");
  // A report the state machine refuses is a FAIL for that report only.
  results = Report(d.api, node_id,
                   R"([{"instance_id":")" + instance + R"(","state":"Scheduling"}])");
  CHECK(results[0]["status"] == "FAIL");

  RequireOk(Call(d.api, "DELETE", "/api/v1/vm", R"({"id":")" + instance + R"("})"));
  news = RequireOk(Call(d.api, "GET", "/node/v1/instances?node_id=" + node_id));
  REQUIRE(news["instances"].size() == 1);
  CHECK(news["instances"][0]["desired"] == "Terminated");
  results = Report(d.api, node_id,
                   R"([{"instance_id":")" + instance + R"(","state":"Terminated"}])");
  CHECK(results[0]["status"] == "OK");
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + instance))["instance_state"] ==
        "Terminated");
  // Over: no longer in the node's list.
  CHECK(RequireOk(Call(d.api, "GET", "/node/v1/instances?node_id=" + node_id))["instances"] ==
        Json::array());
}

TEST_CASE("a node without heartbeats goes Offline, and comes back with the next") {
  Daemon d;
  RequireOk(Call(d.api, "PUT", "/api/v1/config", R"({"node_heartbeat_timeout":"5s"})"));
  const std::string node_id = Join(d.api, "mac-1", "[]");
  Heartbeat(d.api, node_id);
  CHECK(Node(d.api, node_id)["state"] == "Active");
  const int64_t deadline = MonotonicMs() + 9000;
  std::string state = "Active";
  while (state == "Active" && MonotonicMs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    state = Node(d.api, node_id)["state"];
  }
  CHECK(state == "Offline");
  CHECK(Heartbeat(d.api, node_id)["state"] == "Active");
  // Draining is the operator's: a heartbeat cannot end it, and the node config sets it.
  RequireOk(Call(d.api, "POST", "/api/v1/node/config",
                 R"({"node_id":")" + node_id + R"(","drain_mode":true})"));
  Json beat = Heartbeat(d.api, node_id);
  CHECK(beat["state"] == "Active");
  CHECK(beat["drain_mode"] == true);
  CHECK(Node(d.api, node_id)["state"] == "Drain Mode");
  RequireOk(Call(d.api, "POST", "/api/v1/node/config",
                 R"({"node_id":")" + node_id + R"(","drain_mode":false})"));
  CHECK(Node(d.api, node_id)["state"] == "Active");
}

TEST_CASE("an agent joining in drain mode takes nothing until the operator ends it") {
  Daemon d;
  Json body = RequireOk(Call(d.api, "POST", "/node/v1/join",
                             R"({"node_name":"mac-d","max_vm_count":2,"drain_mode":true})"));
  const std::string node_id = body["node_id"];
  Heartbeat(d.api, node_id);
  CHECK(Node(d.api, node_id)["state"] == "Drain Mode");
  const std::string id = RequireOk(
      Call(d.api, "POST", "/api/v1/vm", R"({"vmid":")" + d.t + R"("})"))[0];
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // A scheduler tick or more.
  CHECK(!RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id)).contains("node_id"));
  RequireOk(Call(d.api, "POST", "/api/v1/node/config",
                 R"({"node_id":")" + node_id + R"(","drain_mode":false})"));
  const int64_t deadline = MonotonicMs() + 5000;
  Json vm;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    vm = RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id));
  } while (!vm.contains("node_id") && MonotonicMs() < deadline);
  CHECK(vm["node_id"] == node_id);
}

TEST_CASE("restart, agent update, report resends and save-image outcomes over the protocol") {
  Daemon d;
  const std::string node_id = Join(d.api, "mac-1", "[]");
  Heartbeat(d.api, node_id);
  const std::string id = RequireOk(
      Call(d.api, "POST", "/api/v1/vm", R"({"vmid":")" + d.t + R"("})"))[0];
  Json news;
  const int64_t deadline = MonotonicMs() + 5000;
  do {
    news = RequireOk(Call(d.api, "GET", "/node/v1/instances?node_id=" + node_id));
  } while (news["instances"].empty() && MonotonicMs() < deadline);
  REQUIRE(news["instances"].size() == 1);
  CHECK(news["instances"][0]["restart_seq"] == 0);
  // A report and its resend: one event.
  const std::string started = R"([{"seq":1,"instance_id":")" + id + R"(","state":"Started"}])";
  CHECK(Report(d.api, node_id, started)[0]["status"] == "OK");
  Json vm = RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id));
  CHECK(vm["instance_state"] == "Started");
  const std::string ts = vm["ts"];
  CHECK(Report(d.api, node_id, started)[0]["status"] == "OK");
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + id))["ts"] == ts);  // Unchanged.

  // Restart: the long-poll shows the request's seq.
  const uint64_t after = RequireOk(Call(d.api, "GET", "/node/v1/instances?node_id=" + node_id))
                             ["seq"];
  CHECK(RequireOk(Call(d.api, "POST", "/api/v1/rpc/vm/restart", R"({"id":")" + id + R"("})"))
            .is_null());
  news = RequireOk(Call(d.api, "GET", "/node/v1/instances?node_id=" + node_id + "&after=" +
                                          std::to_string(after) + "&wait_ms=5000"));
  CHECK(news["instances"][0]["restart_seq"].get<uint64_t>() > after);
  CHECK(RequireFail(Call(d.api, "POST", "/api/v1/rpc/vm/restart", R"({"id":"nope"})"), 200) ==
        "Not found");

  // PUT /api/v1/node/update: the next heartbeat answers a higher update_seq.
  const uint64_t update_before = Heartbeat(d.api, node_id)["update_seq"];
  CHECK(RequireOk(Call(d.api, "PUT", "/api/v1/node/update")).is_null());
  CHECK(Heartbeat(d.api, node_id)["update_seq"].get<uint64_t>() > update_before);

  // Save image: pending until the node reports; only the node holding the instance may. The
  // node pushes the image as the request's tag, then reports the manifest's digest.
  auto save = [&](const std::string& tag) {
    return RequireOk(Call(d.api, "POST", "/api/v1/image",
                          R"({"id":")" + id + R"(","tag":")" + tag + R"(",)"
                          R"("target_vm_id":")" + d.t + R"(","description":"d"})"))
        .get<std::string>();
  };
  auto finish = [&](const std::string& request, const std::string& extra) {
    return Call(d.api, "POST", "/node/v1/save_image",
                R"({"node_id":")" + node_id + R"(","request_id":")" + request + R"(")" + extra +
                    "}");
  };
  auto versions = [&] {
    return RequireOk(Call(d.api, "GET", "/api/v1/registry/vm?id=" + d.t))["versions"];
  };
  const std::string request = save("saved");
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/image?id=" + request))["status"] == "pending");
  const std::string digest = PushImage(d.registry, "macos-t", "saved", "", "d");
  const std::string other = Join(d.api, "mac-2", "[]");
  RequireFail(Call(d.api, "POST", "/node/v1/save_image",
                   R"({"node_id":")" + other + R"(","request_id":")" + request +
                       R"(","ok":true,"digest":")" + digest + R"("})"),
              200);
  RequireFail(finish(request, ""), 400);  // No ok.
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/image?id=" + request))["status"] == "pending");
  RequireOk(finish(request, R"(,"ok":true,"digest":")" + digest + R"(")"));
  Json done = RequireOk(Call(d.api, "GET", "/api/v1/image?id=" + request));
  CHECK(done["status"] == "done");
  CHECK(done["vmid"] == d.t);
  Json saved = versions();
  REQUIRE(saved.size() == 2);
  CHECK(saved[1]["tag"] == "saved");
  CHECK(saved[1]["number"] == 1);
  CHECK(saved[1]["description"] == "d");

  // Success without a digest saved nothing: the request is an error, no tag appears, and the
  // log gains only the request's finish.
  const std::string empty = save("unpushed");
  const size_t events = AuditExportLines(d.dir.Sub("data")).size();
  RequireOk(finish(empty, R"(,"ok":true)"));
  Json refused = RequireOk(Call(d.api, "GET", "/api/v1/image?id=" + empty));
  CHECK(refused["status"] == "error");
  CHECK(refused["message"] == "the node reported no pushed manifest: nothing was saved");
  CHECK_FALSE(refused.contains("vmid"));
  CHECK(versions() == saved);
  const std::vector<std::string> lines = AuditExportLines(d.dir.Sub("data"));
  REQUIRE(lines.size() == events + 1);
  CHECK(Json::parse(lines.back())["type"] == "SaveImageFinished");
  RequireOk(finish(empty, R"(,"ok":true,"digest":")" + digest + R"(")"));  // Finished: a resend.
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/image?id=" + empty))["status"] == "error");
  CHECK(AuditExportLines(d.dir.Sub("data")).size() == events + 1);
  // A digest the registry does not hold under the request's tag: an error too.
  const std::string wrong = save("wrong");
  RequireOk(finish(wrong, R"(,"ok":true,"digest":")" + digest + R"(")"));
  Json mismatch = RequireOk(Call(d.api, "GET", "/api/v1/image?id=" + wrong));
  CHECK(mismatch["status"] == "error");
  CHECK(mismatch["message"] == "the registry holds no tag wrong with manifest " + digest);
  CHECK(versions() == saved);
}

TEST_CASE("node protocol bad input: clear FAILs") {
  Daemon d;
  const std::string node_id = Join(d.api, "mac-1", "[]");
  const std::string other = Join(d.api, "mac-2", "[]");
  Heartbeat(d.api, other);
  const std::string instance = RequireOk(
      Call(d.api, "POST", "/api/v1/vm",
           R"({"vmid":")" + d.t + R"(","node_id":")" + other + R"("})"))[0];
  struct Case {
    const char* method;
    std::string path;
    std::string body;
    int status;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"POST", "/node/v1/join", "nope", 400, "JSON object"},
      {"POST", "/node/v1/join", R"({"node_name":"x","cpu_count":"8"})", 400, "cpu_count"},
      {"POST", "/node/v1/join", R"({"cpu_count":8})", 200, "node_name"},
      {"POST", "/node/v1/join", R"({"node_name":"x","groups":["nope"]})", 200, "nope"},
      {"POST", "/node/v1/join", R"({"node_name":"x","capacity_mode":"fast"})", 200,
       "capacity_mode"},
      {"GET", "/node/v1/join", "", 405, ""},
      {"POST", "/node/v1/heartbeat", R"({"node_id":"nope"})", 200, "Not found"},
      {"POST", "/node/v1/heartbeat", R"({"node_id":")" + node_id + R"(","templates":"x"})", 400,
       "templates"},
      {"GET", "/node/v1/instances", "", 400, "node_id"},
      {"GET", "/node/v1/instances?node_id=nope", "", 200, "Not found"},
      {"GET", "/node/v1/instances?node_id=" + node_id + "&after=-1", "", 400, "after"},
      {"GET", "/node/v1/instances?node_id=" + node_id + "&wait_ms=soon", "", 400, "wait_ms"},
      {"POST", "/node/v1/report", R"({"node_id":"nope","reports":[]})", 200, "Not found"},
      {"POST", "/node/v1/report", R"({"node_id":")" + node_id + R"("})", 400, "reports"},
      {"POST", "/node/v1/report",
       R"({"node_id":")" + node_id + R"(","reports":[{"instance_id":"x","state":"Flying"}]})",
       400, "Flying"},
      {"POST", "/node/v1/report",
       R"({"node_id":")" + node_id + R"(","reports":[{"state":"Started"}]})", 400,
       "instance_id"},
      {"POST", "/node/v1/report",
       R"({"node_id":")" + node_id + R"(","reports":[{"instance_id":"x","seq":"1"}]})", 400,
       "seq"},
      {"POST", "/node/v1/report",
       R"({"node_id":")" + node_id + R"(","reports":[{"instance_id":"x","state":"Started",)"
       R"("script":{"exit_code":"0"}}]})", 400, "script"},
      {"POST", "/node/v1/save_image", "[]", 400, "JSON object"},
      {"POST", "/node/v1/save_image", R"({"node_id":")" + node_id + R"(","ok":"yes"})", 400,
       "ok"},
      {"POST", "/node/v1/save_image",
       R"({"node_id":")" + node_id + R"(","request_id":"r","ok":true,"digest":7})", 400,
       "digest"},
      {"POST", "/node/v1/save_image",
       R"({"node_id":"nope","request_id":"r","ok":true,"digest":"sha256:00"})", 200,
       "Not found"},
      {"POST", "/node/v1/save_image",
       R"({"node_id":")" + node_id + R"(","request_id":"nope","ok":true,"digest":"sha256:00"})",
       200, "nope"},
      {"GET", "/node/v1/save_image", "", 405, ""},
  };
  for (const Case& c : cases) {
    INFO(c.method << " " << c.path << " " << c.body);
    CHECK(RequireFail(Call(d.api, c.method, c.path, c.body), c.status).find(c.says) !=
          std::string::npos);
  }
  // A node may only report its own instances.
  Json results = Report(d.api, node_id,
                        R"([{"instance_id":")" + instance + R"(","state":"Pulling"}])");
  CHECK(results[0]["status"] == "FAIL");
  CHECK(results[0]["message"].get<std::string>().find("not placed on this node") !=
        std::string::npos);
  CHECK(RequireOk(Call(d.api, "GET", "/api/v1/vm?id=" + instance))["instance_state"] ==
        "Scheduling");
}

TEST_CASE("a waiting long-poll is answered at shutdown, which stays quick") {
  Daemon d;
  const std::string node_id = Join(d.api, "mac-1", "[]");
  auto poll = WireConnection::Connect(d.api);
  REQUIRE(poll.ok());
  REQUIRE((*poll)
              ->Send(MakeRequest("GET", "/node/v1/instances?node_id=" + node_id +
                                            "&after=1000000&wait_ms=20000"))
              .ok());
  CHECK(!(*poll)->ReadResponse(300).ok());
  const int64_t start = MonotonicMs();
  d.process->Kill(SIGTERM);
  auto answer = (*poll)->ReadResponse(5000);
  INFO(answer.status().ToString());
  REQUIRE(answer.ok());
  RequireOk(*answer);
  auto status = d.process->Stop(0, 10000);  // Signal 0: just wait (a second SIGTERM forces).
  REQUIRE(status.ok());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(MonotonicMs() - start < 5000);
}

}  // namespace
}  // namespace cloister::testing
