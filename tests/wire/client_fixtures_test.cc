// The request and response shapes Anka's real clients depend on (tests/wire/fixtures/, one file
// per client), replayed against a real cloisterd: field names, arrays where clients index and
// objects where they read fields, the exact FAIL strings clients match, and HTTP 200 for every
// domain failure. Each file gets a fresh daemon with a template, a node group, an Active node
// (through the node protocol) and a Started instance with VM info and a port forward.
#include <dirent.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
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

std::string TypeName(const Json& value) {
  if (value.is_object()) return "object";
  if (value.is_array()) return "array";
  if (value.is_string()) return "string";
  if (value.is_number()) return "number";
  if (value.is_boolean()) return "boolean";
  return "null";
}

// Checks value against shape (tests/wire/fixtures/README.md); appends every mismatch, named by
// its JSON path, to errors.
void CheckShape(const Json& value, const Json& shape, const std::string& path,
                std::vector<std::string>* errors) {
  const std::string want = shape.value("type", "");
  if (TypeName(value) != want) {
    errors->push_back(path + ": expected " + want + ", got " + TypeName(value) + " " +
                      value.dump().substr(0, 80));
    return;
  }
  if (shape.contains("equals") && value != shape["equals"]) {
    errors->push_back(path + ": expected " + shape["equals"].dump() + ", got " + value.dump());
  }
  if (want == "object") {
    const Json required = shape.value("required", Json::array());
    const Json properties = shape.value("properties", Json::object());
    for (const Json& key : required) {
      if (!value.contains(key.get<std::string>())) {
        errors->push_back(path + ": missing " + key.get<std::string>());
      }
    }
    for (const auto& [key, sub] : properties.items()) {
      if (value.contains(key)) {
        CheckShape(value[key], sub, path + "." + key, errors);
      }
    }
  }
  if (want == "array") {
    if (value.size() < shape.value("min_items", size_t{0})) {
      errors->push_back(path + ": expected at least " + shape["min_items"].dump() + " items");
    }
    if (shape.contains("items")) {
      for (size_t i = 0; i < value.size(); i++) {
        CheckShape(value[i], shape["items"], path + "[" + std::to_string(i) + "]", errors);
      }
    }
  }
}

std::string Fill(std::string text, const std::vector<std::pair<std::string, std::string>>& vars) {
  for (const auto& [name, value] : vars) {
    for (size_t at = text.find(name); at != std::string::npos; at = text.find(name, at)) {
      text.replace(at, name.size(), value);
      at += value.size();
    }
  }
  return text;
}

std::vector<std::string> FixturePaths() {
  const std::string dir = RunfilePath("tests/wire/fixtures");
  std::vector<std::string> paths;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name.ends_with(".json")) {
      paths.push_back(dir + "/" + name);
    }
  }
  closedir(d);
  std::sort(paths.begin(), paths.end());
  return paths;
}

// A daemon with what the fixtures name: {template_id}, {group_id}, {node_id}, {instance_id}.
struct Setup : TestDaemon {
  std::vector<std::pair<std::string, std::string>> vars;

  Setup() : TestDaemon(std::vector<std::array<std::string, 2>>{{"macos-15", "v1"}}) {
    const std::string template_id = TemplateId("macos-15");
    const std::string group =
        RequireOk(Call(api, "POST", "/api/v1/group", R"({"name":"ci"})"))["id"];
    const std::string node =
        RequireOk(Call(api, "POST", "/node/v1/join",
                       R"({"node_name":"mac-1","ip_address":"10.0.0.5","cpu_count":8,)"
                       R"("ram_mb":32768,"vcpu_count":8,"vram_mb":30720,"max_vm_count":2,)"
                       R"("arch":"arm64","groups":[")" + group + R"("]})"))["node_id"];
    RequireOk(Call(api, "POST", "/node/v1/heartbeat",
                   R"({"node_id":")" + node + R"(","vm_count":0,"templates":[")" + template_id +
                       R"("]})"));
    const std::string instance =
        RequireOk(Call(api, "POST", "/api/v1/vm",
                       R"({"vmid":")" + template_id + R"(","tag":"v1","group_id":")" + group +
                           R"(","vcpu":2,"vram":4096,"port_forwarding_override":)"
                           R"([{"guest_port":22,"host_port":10022,"protocol":"tcp",)"
                           R"("name":"ssh"}]})"))[0];
    const int64_t deadline = MonotonicMs() + 10000;
    while (!RequireOk(Call(api, "GET", "/api/v1/vm?id=" + instance)).contains("node_id")) {
      REQUIRE(MonotonicMs() < deadline);  // The scheduler places it within a tick or two.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Json results = RequireOk(Call(
        api, "POST", "/node/v1/report",
        R"({"node_id":")" + node + R"(","reports":[{"seq":1,"instance_id":")" + instance +
            R"(","state":"Started","progress":1,"vm_uuid":"0f1e2d3c","ip":"192.168.64.7",)"
            R"("vnc_port":5901}]})"))["results"];
    REQUIRE(results[0]["status"] == "OK");
    vars = {{"{template_id}", template_id},
            {"{group_id}", group},
            {"{node_id}", node},
            {"{instance_id}", instance}};
  }
};

TEST_CASE("every client fixture's exchanges get the shapes the client reads") {
  const std::vector<std::string> paths = FixturePaths();
  REQUIRE(paths.size() >= 4);
  size_t exchanges = 0;
  for (const std::string& path : paths) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    const Json fixture = Json::parse(text.str(), nullptr, false);
    INFO(path);
    REQUIRE(fixture.is_object());
    REQUIRE(fixture["exchanges"].is_array());
    Setup setup;
    for (const Json& exchange : fixture["exchanges"]) {
      exchanges++;
      const std::string request_path = Fill(exchange["path"], setup.vars);
      const std::string body =
          exchange.contains("body") ? Fill(exchange["body"].dump(), setup.vars) : "";
      INFO(fixture["client"].get<std::string>() << ": " << exchange["name"].get<std::string>()
                                                << "\n" << exchange["method"].get<std::string>()
                                                << " " << request_path << " " << body);
      WireResponse response = Call(setup.api, exchange["method"].get<std::string>(),
                                   request_path, body);
      INFO("answer: " << response.status << " " << response.body);
      CHECK(response.status == exchange["http"].get<int>());
      const Json envelope = Envelope(response);
      CHECK(envelope["status"] == exchange["status"]);
      if (exchange.contains("message")) {
        CHECK(envelope["message"] == exchange["message"]);
      }
      if (exchange.contains("shape")) {
        REQUIRE(envelope.contains("body"));
        std::vector<std::string> errors;
        CheckShape(envelope["body"], exchange["shape"], "body", &errors);
        std::string all;
        for (const std::string& error : errors) {
          all += error + "\n";
        }
        CHECK(all == "");
      }
    }
  }
  CHECK(exchanges >= 20);
}

TEST_CASE("the shape checker finds what it should") {
  std::vector<std::string> errors;
  const Json shape = Json::parse(R"({"type":"object","required":["a","b"],
      "properties":{"a":{"type":"array","min_items":2,"items":{"type":"number"}},
                    "c":{"type":"string","equals":"x"}}})");
  CheckShape(Json::parse(R"({"a":["2"],"c":"y"})"), shape, "body", &errors);
  REQUIRE(errors.size() == 4);
  CHECK(errors[0] == "body: missing b");
  CHECK(errors[1].rfind("body.a: expected at least 2", 0) == 0);
  CHECK(errors[2].rfind("body.a[0]: expected number, got string", 0) == 0);
  CHECK(errors[3] == R"(body.c: expected "x", got "y")");
  errors.clear();
  CheckShape(Json::parse(R"({"a":[1,2],"b":null})"), shape, "body", &errors);
  CHECK(errors.empty());
  CheckShape(Json::array(), shape, "body", &errors);
  CHECK(errors.size() == 1);
}

}  // namespace
}  // namespace cloister::testing
