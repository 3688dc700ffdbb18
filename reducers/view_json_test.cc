// Views as JSON: field names and enum names, secrets never shown, single views, diffs (both from
// two Views and from the pre-images of one event, which must agree), times, and invalid UTF-8.
#include "reducers/view_json.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "log/draft.h"
#include "log/hash.h"
#include "reducers/mixed_log.h"
#include "reducers/views.h"

namespace cloister::reducers {
namespace {

constexpr int64_t kTime0Ns = 1'795'003'200'000'000'000;  // 2026-11-18T12:00:00Z.

Views SampleViews() {
  Views v;
  v.seq = 9;
  v.hash.fill(0xAB);
  ConfigEntry plain;
  plain.value = "true";
  plain.changed = {1, kTime0Ns};
  v.config.entries["ANKA_ENABLE_API_KEYS"] = plain;
  ConfigEntry secret;
  secret.secret = true;
  secret.value_digest.fill(0x5E);
  secret.changed = {2, kTime0Ns + 1'500'000};
  v.config.entries["ANKA_ROOT_TOKEN"] = secret;
  Node& n = v.nodes.nodes["n1"];
  n.node_id = "n1";
  n.state = fb::NodeState::Active;
  n.groups = {"g1"};
  NodeGroup& g = v.node_groups.groups["g1"];
  g.group_id = "g1";
  g.node_ids = {"n1"};
  VmInstance& i = v.vm_instances.instances["i1"];
  i.instance_id = "i1";
  i.state = fb::VmState::Started;
  i.progress = 0.35f;
  return v;
}

TEST_CASE("views as JSON: keyed by view and id, enums as names, times as RFC 3339") {
  const Json j = ViewsJson(SampleViews());
  CHECK(j["seq"] == 9);
  std::string hash_hex;
  for (int k = 0; k < 32; k++) {
    hash_hex += "ab";
  }
  CHECK(j["hash"] == hash_hex);
  std::vector<std::string> keys;
  for (const auto& [key, value] : j.items()) {
    keys.push_back(key);
  }
  CHECK(keys == std::vector<std::string>{"seq", "hash", "config", "nodes", "node_groups",
                                         "vm_instances", "templates", "save_images", "api_keys",
                                         "sessions", "revocations", "permission_groups",
                                         "resource_permissions", "policies",
                                         "policy_attachments", "distributions", "files"});
  CHECK(j["config"]["ANKA_ENABLE_API_KEYS"]["value"] == "true");
  CHECK(j["config"]["ANKA_ENABLE_API_KEYS"]["changed"]["time"] == "2026-11-18T12:00:00Z");
  CHECK(j["config"]["ANKA_ROOT_TOKEN"]["changed"]["time"] == "2026-11-18T12:00:00.0015Z");
  CHECK(j["nodes"]["n1"]["state"] == "Active");
  CHECK(j["nodes"]["n1"]["groups"] == Json::array({"g1"}));
  CHECK(j["node_groups"]["g1"]["node_ids"] == Json::array({"n1"}));
  CHECK(j["vm_instances"]["i1"]["state"] == "Started");
  CHECK(DumpJson(j["vm_instances"]["i1"]["progress"]) == "0.35");
}

TEST_CASE("a secret config entry shows <secret>, and its digest appears nowhere") {
  const Views v = SampleViews();
  const std::string text = DumpJson(ViewsJson(v));
  CHECK(ViewsJson(v)["config"]["ANKA_ROOT_TOKEN"]["value"] == "<secret>");
  CHECK(ViewsJson(v)["config"]["ANKA_ROOT_TOKEN"]["secret"] == true);
  CHECK(text.find(std::string(8, '5') + "e") == std::string::npos);
  CHECK(text.find("5e5e5e") == std::string::npos);
  Views changed = v;
  changed.config.entries["ANKA_ROOT_TOKEN"].value_digest.fill(0x6F);
  changed.config.entries["ANKA_ROOT_TOKEN"].changed = {10, kTime0Ns + 5};
  const std::string diff = DumpJson(DiffJson(v, changed));
  CHECK(diff.find("5e5e") == std::string::npos);
  CHECK(diff.find("6f6f") == std::string::npos);
}

TEST_CASE("a single view name gives only that view; every name is valid, others are not") {
  for (const char* name : kViewNames) {
    const Json j = ViewsJson(SampleViews(), name);
    CHECK(j.size() == 3);
    CHECK(j.contains(name));
    CHECK(IsViewName(name));
  }
  CHECK(IsViewName("all"));
  CHECK_FALSE(IsViewName("node"));
  CHECK_FALSE(IsViewName(""));
  CHECK(ViewNameList() ==
        "config, nodes, node_groups, vm_instances, templates, save_images, "
        "api_keys, sessions, revocations, permission_groups, resource_permissions, policies, "
        "policy_attachments, distributions, files, all");
}

TEST_CASE("an enum value this build does not know shows as Unknown(N)") {
  Views v;
  v.nodes.nodes["n"].state = static_cast<fb::NodeState>(77);
  v.vm_instances.instances["i"].state = static_cast<fb::VmState>(200);
  const Json j = ViewsJson(v);
  CHECK(j["nodes"]["n"]["state"] == "Unknown(77)");
  CHECK(j["vm_instances"]["i"]["state"] == "Unknown(200)");
}

TEST_CASE("DiffJson lists added, removed and changed entities with only the changed fields") {
  const Views a = SampleViews();
  Views b = a;
  b.seq = 12;
  b.nodes.nodes.erase("n1");
  b.node_groups.groups["g2"].group_id = "g2";
  b.vm_instances.instances["i1"].state = fb::VmState::Stopped;
  b.vm_instances.instances["i1"].updated = {12, kTime0Ns};
  const Json d = DiffJson(a, b);
  CHECK(d["seq_from"] == 9);
  CHECK(d["seq_to"] == 12);
  CHECK(d["nodes"]["removed"]["n1"]["node_id"] == "n1");
  CHECK_FALSE(d["nodes"].contains("added"));
  CHECK(d["node_groups"]["added"]["g2"]["group_id"] == "g2");
  const Json& changed = d["vm_instances"]["changed"]["i1"];
  CHECK(changed["before"] ==
        Json::parse(R"({"state":"Started","updated":{"seq":0,"time":"1970-01-01T00:00:00Z"}})"));
  CHECK(changed["after"]["state"] == "Stopped");
  CHECK(changed["after"].size() == 2);
  CHECK_FALSE(d.contains("config"));
}

TEST_CASE("DiffJson of equal views names only the seqs; a view filter limits the diff") {
  const Views a = SampleViews();
  CHECK(DiffJson(a, a) == Json::parse(R"({"seq_from":9,"seq_to":9})"));
  Views b = a;
  b.nodes.nodes.clear();
  b.config.entries.clear();
  const Json only_nodes = DiffJson(a, b, "nodes");
  CHECK(only_nodes.contains("nodes"));
  CHECK_FALSE(only_nodes.contains("config"));
}

TEST_CASE("the diff of one event from its pre-images equals the diff of full copies") {
  MixedEvents stream(21, kTime0Ns);
  Views views;
  int events_with_changes = 0;
  for (uint64_t seq = 1; seq <= 3000; seq++) {
    const log::Draft draft = stream.Next();
    const fb::Event* event = log::VerifyEvent(draft.bytes());
    REQUIRE(event != nullptr);
    const Views before = views;
    PreImages pre;
    ApplyRecording(&views, seq, log::Hash{}, *event, &pre);
    const Json full = DiffJson(before, views);
    INFO("seq " << seq);
    REQUIRE(DiffJson(pre, views) == full);
    REQUIRE(DiffJson(pre, views, "nodes") == DiffJson(before, views, "nodes"));
    events_with_changes += full.size() > 2 ? 1 : 0;
  }
  CHECK(events_with_changes > 1000);
}

TEST_CASE("RFC 3339 times: whole seconds, trimmed fractions, before 1970") {
  CHECK(TimeRfc3339(0) == "1970-01-01T00:00:00Z");
  CHECK(TimeRfc3339(kTime0Ns + 123'456'789) == "2026-11-18T12:00:00.123456789Z");
  CHECK(TimeRfc3339(kTime0Ns + 100'000'000) == "2026-11-18T12:00:00.1Z");
  CHECK(TimeRfc3339(-1) == "1969-12-31T23:59:59.999999999Z");
  CHECK(TimeRfc3339(951'782'400'000'000'000) == "2000-02-29T00:00:00Z");
  CHECK(TimeRfc3339(INT64_MAX) == "2262-04-11T23:47:16.854775807Z");
  CHECK(TimeRfc3339(INT64_MIN) == "1677-09-21T00:12:43.145224192Z");
}

TEST_CASE("ill-formed UTF-8 in a view is replaced in the output, never thrown about") {
  Views v;
  v.nodes.nodes["n"].node_name = "bad \xff\xfe bytes";
  const std::string text = DumpJson(ViewsJson(v), 2);
  CHECK(text.find("bad \xEF\xBF\xBD") != std::string::npos);
  CHECK_FALSE(nlohmann::json::parse(text, nullptr, false).is_discarded());
}

}  // namespace
}  // namespace cloister::reducers
