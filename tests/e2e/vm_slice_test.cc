// The first vertical slice end to end: cloisterd and two cloister-node agents (sim driver) as
// real processes on loopback. A client asks for 20 VMs across two node groups (with priorities
// and a pinned node); the scheduler places them, the agents clone and start them, and every
// instance reaches Started. One agent is SIGKILLed mid-way: its node goes Offline; restarted,
// it converges without cloning or starting anything twice (the sim driver counts every call).
// Then everything is terminated.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "node/sim_driver.h"
#include "tests/crash/child_process.h"
#include "tests/testutil.h"
#include "tests/wire/cloisterd_process.h"
#include "tests/wire/envelope_checks.h"
#include "tests/wire/wire_client.h"

namespace cloister::testing {
namespace {

using Json = nlohmann::json;

std::string NodePath() { return RunfilePath("node/cloister-node"); }

std::map<std::string, Json> Instances(const WireTarget& api) {
  std::map<std::string, Json> by_id;
  for (const Json& item : RequireOk(Call(api, "GET", "/api/v1/vm"))) {
    by_id[item["instance_id"]] = item["vm"];
  }
  return by_id;
}

std::map<std::string, Json> Nodes(const WireTarget& api) {
  std::map<std::string, Json> by_name;
  for (const Json& node : RequireOk(Call(api, "GET", "/api/v1/node"))) {
    by_name[node["node_name"]] = node;
  }
  return by_name;
}

size_t CountInState(const std::map<std::string, Json>& instances, const std::string& state) {
  size_t n = 0;
  for (const auto& [id, vm] : instances) {
    n += vm["instance_state"] == state;
  }
  return n;
}

std::unique_ptr<ChildProcess> StartAgent(const std::vector<std::string>& args,
                                         const std::string& log) {
  std::vector<std::string> argv = {NodePath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<ChildProcess>(argv, std::vector<std::string>{}, log);
}

TEST_CASE("20 VMs over two agents reach Started, survive an agent crash, and terminate") {
  TempDir dir;
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {"--access-log=false"});
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  std::unique_ptr<CloisterdProcess> controller = std::move(*started);
  const WireTarget api = controller->controller();
  const std::string url = api.BaseUrl();
  RequireOk(Call(api, "PUT", "/api/v1/config", R"({"node_heartbeat_timeout":"5s"})"));
  const std::string tmpl = PushTemplate(controller->registry(), "macos-15", "v1");
  const std::string group_a = RequireOk(Call(api, "POST", "/api/v1/group", R"({"name":"a"})"))["id"];
  const std::string group_b = RequireOk(Call(api, "POST", "/api/v1/group", R"({"name":"b"})"))["id"];

  auto join_args = [&](const std::string& name, const std::string& group) {
    return std::vector<std::string>{"join", url, "--name", name, "--groups", group,
                                    "--max-vm-count", "12", "--heartbeat", "500ms",
                                    "--sim-delay", "150", "--data", dir.Sub(name)};
  };
  auto agent1 = StartAgent(join_args("n1", "a"), dir.Sub("n1.log"));
  auto agent2 = StartAgent(join_args("n2", "b"), dir.Sub("n2.log"));
  INFO("agent logs: " << ReadFileOrEmpty(dir.Sub("n1.log")) << ReadFileOrEmpty(dir.Sub("n2.log")));
  REQUIRE(WaitFor(15000, [&] {
    auto nodes = Nodes(api);
    return nodes.size() == 2 && nodes["n1"]["state"] == "Active" &&
           nodes["n2"]["state"] == "Active";
  }));
  const std::string n1 = Nodes(api)["n1"]["node_id"];
  const std::string n2 = Nodes(api)["n2"]["node_id"];
  CHECK(ReadFileOrEmpty(dir.Sub("n1.log")).find("Testing connection to the controller...: Ok\n"
                                                "Cluster join success\n") == 0);

  // 8 urgent in group a, 8 in group b, 4 pinned to n2.
  auto request = [&](const std::string& fields) {
    return RequireOk(Call(api, "POST", "/api/v1/vm",
                          R"({"vmid":")" + tmpl + R"(",)" + fields + "}"));
  };
  const Json in_a = request(R"("count":8,"priority":100,"group_id":")" + group_a + R"(")");
  const Json in_b = request(R"("count":8,"priority":2000,"group_id":")" + group_b + R"(")");
  const Json pinned = request(R"("count":4,"priority":500,"node_id":")" + n2 + R"(")");
  REQUIRE(in_a.size() + in_b.size() + pinned.size() == 20);

  // Mid-way through n1's work, kill its agent: the node goes Offline.
  size_t started_on_n1 = 0;
  REQUIRE(WaitFor(20000, [&] {
    started_on_n1 = 0;
    for (const auto& [id, vm] : Instances(api)) {
      started_on_n1 += vm.value("node_id", "") == n1 && vm["instance_state"] == "Started";
    }
    return started_on_n1 >= 1;
  }));
  agent1->Kill(SIGKILL);
  agent1->Wait();
  CHECK(started_on_n1 < in_a.size());  // Really mid-way (each clone and start takes 150 ms).
  CHECK(WaitFor(12000, [&] { return Nodes(api)["n1"]["state"] == "Offline"; }));
  auto again = StartAgent({"run", "--data", dir.Sub("n1")}, dir.Sub("n1.run.log"));
  INFO("restarted agent: " << ReadFileOrEmpty(dir.Sub("n1.run.log")));

  REQUIRE(WaitFor(45000, [&] { return CountInState(Instances(api), "Started") == 20; }));
  CHECK(WaitFor(5000, [&] { return Nodes(api)["n1"]["state"] == "Active"; }));
  const auto instances = Instances(api);
  for (const Json& id : in_a) CHECK(instances.at(id)["node_id"] == n1);
  for (const Json& id : in_b) CHECK(instances.at(id)["node_id"] == n2);
  for (const Json& id : pinned) CHECK(instances.at(id)["node_id"] == n2);
  for (const auto& [id, vm] : instances) {
    CHECK(vm["vminfo"]["status"] == "running");
    CHECK(!vm["vminfo"]["ip"].get<std::string>().empty());
  }

  for (const auto& [id, vm] : instances) {
    RequireOk(Call(api, "DELETE", "/api/v1/vm", R"({"id":")" + id + R"("})"));
  }
  REQUIRE(WaitFor(30000, [&] { return CountInState(Instances(api), "Terminated") == 20; }));

  again->Kill(SIGTERM);
  agent2->Kill(SIGTERM);
  CHECK(WIFEXITED(again->Wait()));
  CHECK(WIFEXITED(agent2->Wait()));
  // The sim drivers' books: one clone, one start and one delete per VM, crash or not.
  for (const auto& [name, ids] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"n1", in_a.get<std::vector<std::string>>()},
           {"n2", [&] {
              auto all = in_b.get<std::vector<std::string>>();
              for (const Json& id : pinned) all.push_back(id);
              return all;
            }()}}) {
    auto sim = node::SimDriver::Open(dir.Sub(name) + "/sim");
    INFO(name << ": " << sim.status().ToString());
    REQUIRE(sim.ok());
    for (const std::string& id : ids) {
      INFO(name << " VM cloister-" << id);
      CHECK((*sim)->Calls(node::SimOp::kClone, "cloister-" + id) == 1);
      CHECK((*sim)->Calls(node::SimOp::kStart, "cloister-" + id) == 1);
      CHECK((*sim)->Calls(node::SimOp::kDelete, "cloister-" + id) == 1);
    }
  }
  auto stopped = controller->Stop(SIGTERM);
  REQUIRE(stopped.ok());
  CHECK(WIFEXITED(*stopped));
}

TEST_CASE("through a real agent: restart once, credentials reload, templates, drain mode") {
  TempDir dir;
  auto started = CloisterdProcess::Start(dir.Sub("data"), dir.path(), {"--access-log=false"});
  INFO(started.status().ToString());
  REQUIRE(started.ok());
  std::unique_ptr<CloisterdProcess> controller = std::move(*started);
  const WireTarget api = controller->controller();
  const std::string tmpl = PushTemplate(controller->registry(), "macos-15", "v1");
  auto agent = StartAgent({"join", api.BaseUrl(), "--name", "n1", "--max-vm-count", "4",
                           "--heartbeat", "300ms", "--data", dir.Sub("n1")},
                          dir.Sub("n1.log"));
  auto drained = StartAgent({"join", api.BaseUrl(), "--name", "n2", "--drain-mode",
                             "--heartbeat", "300ms", "--data", dir.Sub("n2")},
                            dir.Sub("n2.log"));
  INFO("agent logs: " << ReadFileOrEmpty(dir.Sub("n1.log")) << ReadFileOrEmpty(dir.Sub("n2.log")));
  REQUIRE(WaitFor(15000, [&] {
    auto nodes = Nodes(api);
    return nodes.size() == 2 && nodes["n1"]["state"] == "Active" &&
           nodes["n2"]["state"] == "Drain Mode";
  }));
  const Json ids = RequireOk(Call(api, "POST", "/api/v1/vm",
                                  R"({"vmid":")" + tmpl + R"(","count":2})"));
  REQUIRE(WaitFor(15000, [&] { return CountInState(Instances(api), "Started") == 2; }));
  const std::string n1 = Nodes(api)["n1"]["node_id"];
  CHECK(Nodes(api)["n1"]["agent_version"] == "0.3.0-cloister");
  CHECK(Nodes(api)["n1"]["free_disk_space"].is_number());
  for (const auto& [id, vm] : Instances(api)) {
    CHECK(vm["node_id"] == n1);  // Never the draining node.
  }
  // The agent reports the templates it holds with its heartbeat.
  CHECK(WaitFor(5000, [&] {
    return Nodes(api)["n1"]["templates"] == Json::array({Json{{"id", tmpl}}});
  }));

  // A monitored startup script's result is shown on the instance; a failing one is an Error.
  // The scripts are base64 as Anka sends them: "echo hi" and "exit 3".
  const std::string scripted = RequireOk(Call(
      api, "POST", "/api/v1/vm",
      R"({"vmid":")" + tmpl +
          R"(","startup_script":"ZWNobyBoaQ==","script_monitoring":true})"))[0];
  const std::string failing = RequireOk(Call(
      api, "POST", "/api/v1/vm",
      R"({"vmid":")" + tmpl +
          R"(","startup_script":"ZXhpdCAz","script_monitoring":true})"))[0];
  REQUIRE(WaitFor(15000, [&] {
    auto all = Instances(api);
    return all[scripted]["instance_state"] == "Started" &&
           all[failing]["instance_state"] == "Error";
  }));
  Json script = Instances(api)[scripted]["startup_script"];
  CHECK(script["return_code"] == 0);
  CHECK(script["stdout"] == "sim: echo hi\n");
  Json failed = Instances(api)[failing];
  CHECK(failed["startup_script"]["return_code"] == 3);
  CHECK(failed["message"].get<std::string>().find("exited with code 3") != std::string::npos);
  RequireOk(Call(api, "DELETE", "/api/v1/vm", R"({"id":")" + scripted + R"("})"));
  RequireOk(Call(api, "DELETE", "/api/v1/vm", R"({"id":")" + failing + R"("})"));

  // A restart is one stop and one start of that VM, and the instance ends Started.
  const std::string id = ids[0];
  const std::string ts = Instances(api)[id]["ts"];
  RequireOk(Call(api, "POST", "/api/v1/rpc/vm/restart", R"({"id":")" + id + R"("})"));
  REQUIRE(WaitFor(10000, [&] {
    Json vm = Instances(api)[id];
    return vm["ts"] != ts && vm["instance_state"] == "Started" &&
           vm["vminfo"]["status"] == "running";
  }));

  // PUT /api/v1/node/update: every agent reloads its credentials, once.
  RequireOk(Call(api, "PUT", "/api/v1/node/update"));
  CHECK(WaitFor(5000, [&] {
    return ReadFileOrEmpty(dir.Sub("n1.log")).find("credentials reloaded") != std::string::npos &&
           ReadFileOrEmpty(dir.Sub("n2.log")).find("credentials reloaded") != std::string::npos;
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // Several more heartbeats.
  const std::string log = ReadFileOrEmpty(dir.Sub("n1.log"));
  const size_t first = log.find("credentials reloaded");
  CHECK(log.find("credentials reloaded", first + 1) == std::string::npos);
  CHECK(Json::parse(ReadFileOrEmpty(dir.Sub("n1") + "/node.json"))["update_seq"] > 0);

  agent->Kill(SIGTERM);
  drained->Kill(SIGTERM);
  CHECK(WIFEXITED(agent->Wait()));
  CHECK(WIFEXITED(drained->Wait()));
  auto sim = node::SimDriver::Open(dir.Sub("n1") + "/sim");
  REQUIRE(sim.ok());
  CHECK((*sim)->Calls(node::SimOp::kClone, "cloister-" + id) == 1);
  CHECK((*sim)->Calls(node::SimOp::kStop, "cloister-" + id) == 1);
  CHECK((*sim)->Calls(node::SimOp::kStart, "cloister-" + id) == 2);
  const std::string other = ids[1];
  CHECK((*sim)->Calls(node::SimOp::kStart, "cloister-" + other) == 1);
  CHECK((*sim)->Calls(node::SimOp::kStop, "cloister-" + other) == 0);
  auto stopped = controller->Stop(SIGTERM);
  REQUIRE(stopped.ok());
}

}  // namespace
}  // namespace cloister::testing
