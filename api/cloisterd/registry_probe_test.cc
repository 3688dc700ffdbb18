// RegistryProbe's following against a scripted registry on a loopback socket (no credentials:
// the fake answers everyone). What the sink receives, which calls a read makes (the cache), that
// a failed or malformed read hands nothing over, ReadNow, and Follow(nullptr).
#include "api/cloisterd/registry_probe.h"

#include <catch2/catch.hpp>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/fake_controller.h"
#include "tests/testutil.h"

namespace cloister::cloisterd {
namespace {

using Json = nlohmann::json;
using client::testing::FakeHttpServer;
using client::testing::FakeRequest;
using client::testing::FakeResponse;

std::string Digest(char c) { return "sha256:" + std::string(64, c); }

// A registry whose catalogue the test edits; every request is recorded. Runs on the server's
// thread: guarded by mu.
struct ScriptedRegistry {
  std::mutex mu;
  Json templates = Json::array();  // The /registry/vm?id= answers, in list order.
  bool list_broken = false;        // /registry/v2/vm answers a body that is not a list.
  bool detail_fails = false;       // /registry/vm?id= answers 500.
  std::vector<std::string> calls;  // "GET /registry/..." with the query.

  FakeResponse Handle(const FakeRequest& request) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(request.method + " " + request.path);
    auto ok = [](const Json& body) {
      return FakeResponse{200, Json{{"status", "OK"}, {"message", ""}, {"body", body}}.dump()};
    };
    if (request.path == "/registry/status") {
      return ok(Json{{"status", "Running"}});
    }
    if (request.path == "/registry/v2/vm") {
      if (list_broken) {
        return ok(Json{{"not", "a list"}});
      }
      Json list = Json::array();
      for (const Json& t : templates) {
        Json tags = Json::array();
        for (const Json& v : t["versions"]) tags.push_back(v["tag"]);
        list.push_back({{"id", t["id"]}, {"name", t["name"]}, {"tags", tags}});
      }
      return ok(list);
    }
    if (request.path.starts_with("/registry/vm?id=")) {
      if (detail_fails) {
        return FakeResponse{500, R"({"status":"FAIL","message":"disk on fire"})"};
      }
      const std::string id = request.path.substr(std::string("/registry/vm?id=").size());
      for (const Json& t : templates) {
        if (t["id"] == id) return ok(t);
      }
      return ok(nullptr);
    }
    return FakeResponse{404, R"({"status":"FAIL","message":"not found"})"};
  }

  void Set(Json value) {
    std::lock_guard<std::mutex> lock(mu);
    templates = std::move(value);
  }
  size_t DetailCalls() {
    std::lock_guard<std::mutex> lock(mu);
    size_t n = 0;
    for (const std::string& call : calls) n += call.starts_with("GET /registry/vm?id=");
    return n;
  }
};

Json Version(int number, const std::string& tag, char digest) {
  return {{"number", number}, {"tag", tag}, {"description", "d-" + tag},
          {"manifest", Digest(digest)}, {"created_ns", 1000 + number}};
}

// What the sink received, read from the test thread.
struct Received {
  std::mutex mu;
  std::vector<engine::MirrorRegistryTemplates> catalogues;

  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return catalogues.size();
  }
  engine::MirrorRegistryTemplates last() {
    std::lock_guard<std::mutex> lock(mu);
    return catalogues.back();
  }
  RegistryProbe::CatalogueSink Sink() {
    return [this](engine::MirrorRegistryTemplates c) {
      std::lock_guard<std::mutex> lock(mu);
      catalogues.push_back(std::move(c));
    };
  }
};

std::unique_ptr<RegistryProbe> StartProbe(uint16_t port, std::chrono::milliseconds interval) {
  static const bool curl_ready = (client::InitHttpClients(), true);
  (void)curl_ready;
  RegistryProbeOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(port);
  options.interval = interval;
  auto probe = RegistryProbe::Start(options);
  REQUIRE(probe.ok());
  return std::move(probe.value());
}

TEST_CASE("registry probe: follows the catalogue, reads only changed templates") {
  ScriptedRegistry registry;
  registry.Set(Json::array({{{"id", "t1"}, {"name", "macos"},
                             {"versions", {Version(0, "v1", 'a'), Version(1, "v2", 'b')}}}}));
  FakeHttpServer server([&](const FakeRequest& r) { return registry.Handle(r); }, std::nullopt);
  Received received;  // Before the probe: it outlives the worker that calls its sink.
  auto probe = StartProbe(server.port(), std::chrono::milliseconds(50));
  probe->Follow(received.Sink());
  REQUIRE(testing::WaitFor(5000, [&] { return received.count() >= 3; }));
  CHECK(probe->state() == RegistryProbe::State::kRunning);
  engine::MirrorRegistryTemplates c = received.last();
  REQUIRE(c.templates.size() == 1);
  CHECK(c.templates[0].template_id == "t1");
  CHECK(c.templates[0].name == "macos");
  REQUIRE(c.templates[0].tags.size() == 2);
  CHECK(c.templates[0].tags[1].tag == "v2");
  CHECK(c.templates[0].tags[1].version == 1);
  CHECK(c.templates[0].tags[1].description == "d-v2");
  CHECK(c.templates[0].tags[1].digest == Digest('b'));
  CHECK(c.templates[0].tags[1].created_ns == 1001);
  // Three reads, one detail call: the list entry did not change.
  CHECK(registry.DetailCalls() == 1);

  // A new tag changes the list entry: one more detail call, and the sink sees it.
  registry.Set(Json::array({{{"id", "t1"}, {"name", "macos"},
                             {"versions", {Version(0, "v1", 'a'), Version(1, "v2", 'b'),
                                           Version(2, "v3", 'c')}}},
                            {{"id", "t2"}, {"name", "linux"}, {"versions", Json::array()}}}));
  REQUIRE(testing::WaitFor(5000, [&] { return received.last().templates.size() == 2; }));
  CHECK(received.last().templates[0].tags.size() == 3);
  CHECK(registry.DetailCalls() == 3);  // t1 again, t2 once.

  // Stopped following: the sink is never called again, though status checks go on.
  probe->Follow(nullptr);
  const size_t seen = received.count();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(received.count() == seen);
}

TEST_CASE("registry probe: a failed or malformed read hands nothing over") {
  ScriptedRegistry registry;
  registry.Set(Json::array({{{"id", "t1"}, {"name", "macos"},
                             {"versions", {Version(0, "v1", 'a')}}}}));
  registry.list_broken = true;
  FakeHttpServer server([&](const FakeRequest& r) { return registry.Handle(r); }, std::nullopt);
  // A one-minute interval: every read after the first is one ReadNow asked for.
  Received received;
  auto probe = StartProbe(server.port(), std::chrono::minutes(1));
  probe->Follow(received.Sink());
  auto calls = [&] {
    std::lock_guard<std::mutex> lock(registry.mu);
    return registry.calls.size();
  };
  REQUIRE(testing::WaitFor(5000, [&] { return calls() >= 2; }));  // Status, list.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(received.count() == 0);

  {
    std::lock_guard<std::mutex> lock(registry.mu);
    registry.list_broken = false;
    registry.detail_fails = true;
  }
  probe->ReadNow();
  REQUIRE(testing::WaitFor(5000, [&] { return registry.DetailCalls() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(received.count() == 0);

  {
    std::lock_guard<std::mutex> lock(registry.mu);
    registry.detail_fails = false;
  }
  probe->ReadNow();
  REQUIRE(testing::WaitFor(5000, [&] { return received.count() == 1; }));
  CHECK(received.last().templates.at(0).tags.at(0).digest == Digest('a'));

  // Forward: one call with the same client, the registry's answer as it is.
  auto forwarded = probe->Forward("GET", "/registry/nothing-here", 5000);
  REQUIRE(forwarded.ok());
  CHECK(forwarded->http_status == 404);
  CHECK(forwarded->message == "not found");
}

}  // namespace
}  // namespace cloister::cloisterd
