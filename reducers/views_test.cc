// The reducer, payload by payload: what each event does to the views, what an event about an
// unknown entity does (nothing but seq and hash), and the pre-images ApplyRecording keeps. Each
// TEST_CASE names one rule of the contract in views.h.
#include "reducers/views.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "log/draft.h"
#include "log/events_generated.h"
#include "log/hash.h"
#include "reducers/snapshot.h"

namespace cloister::reducers {
namespace {

constexpr int64_t kTime0Ns = 1'795'003'200'000'000'000;  // 2026-11-18T08:00:00Z.

using StringOffsets = std::vector<flatbuffers::Offset<flatbuffers::String>>;

log::Hash FakeHash(uint64_t seq) {
  log::Hash hash{};
  for (size_t i = 0; i < 8; i++) {
    hash[i] = static_cast<uint8_t>(seq >> (8 * i));
  }
  hash[31] = 0xC1;
  return hash;
}

int64_t TimeOf(uint64_t seq) { return kTime0Ns + static_cast<int64_t>(seq) * 1'000'000; }

// Finishes the payload built in b as the next event and applies it to views (recording
// pre-images into before, if given). The event's time is TimeOf(its seq).
void ApplyNext(Views* views, log::DraftBuilder& b, fb::Payload type, flatbuffers::Offset<void> p,
               PreImages* before = nullptr) {
  const uint64_t seq = views->seq + 1;
  log::Envelope envelope;
  envelope.time_ns = TimeOf(seq);
  envelope.actor_kind = fb::ActorKind::System;
  envelope.actor_id = "test";
  envelope.request_id = "req-1";
  const log::Draft draft = b.FinishUnion(envelope, type, p);
  const fb::Event* event = log::VerifyEvent(draft.bytes());
  REQUIRE(event != nullptr);
  ApplyRecording(views, seq, FakeHash(seq), *event, before);
}

template <typename T>
void ApplyNext(Views* views, log::DraftBuilder& b, flatbuffers::Offset<T> payload,
               PreImages* before = nullptr) {
  ApplyNext(views, b, fb::PayloadTraits<T>::enum_value, payload.Union(), before);
}

void CreateGroup(Views* views, const char* id, const char* name = "build") {
  log::DraftBuilder b;
  ApplyNext(views, b, fb::CreateNodeGroupCreatedDirect(b.fbb(), id, name, "desc", nullptr));
}

void JoinNode(Views* views, const char* id, const std::vector<std::string>& groups = {}) {
  log::DraftBuilder b;
  StringOffsets offsets;
  for (const std::string& g : groups) {
    offsets.push_back(b.fbb().CreateString(g));
  }
  ApplyNext(views, b,
            fb::CreateNodeJoinedDirect(b.fbb(), id, "mac-mini", "10.0.0.1", 8, 16384, 16, 32768, 2,
                                       "number", "arm64", "anka", &offsets));
}

void RequestVm(Views* views, const char* id) {
  log::DraftBuilder b;
  ApplyNext(views, b,
            fb::CreateVmInstanceRequestedDirect(b.fbb(), id, "tmpl-1", "v1", -1, "ci-1", nullptr,
                                                "ext-1", "node-wanted", "g1", 900));
}

// The views as they are, with only seq and hash advanced by one event.
Views OnlySeqAdvanced(Views views) {
  views.seq++;
  views.hash = FakeHash(views.seq);
  return views;
}

// ---- Config ---------------------------------------------------------------------------------

TEST_CASE("ConfigChanged sets an entry, overwrites it, and stamps it from the envelope") {
  Views v;
  log::DraftBuilder b1;
  ApplyNext(&v, b1, fb::CreateConfigChangedDirect(b1.fbb(), "ANKA_ENABLE_API_KEYS", "true"));
  log::DraftBuilder b2;
  ApplyNext(&v, b2, fb::CreateConfigChangedDirect(b2.fbb(), "ANKA_ENABLE_API_KEYS", "false"));
  REQUIRE(v.config.entries.size() == 1);
  const ConfigEntry& e = v.config.entries.at("ANKA_ENABLE_API_KEYS");
  CHECK(e.value == "false");
  CHECK_FALSE(e.secret);
  CHECK(e.changed == Stamp{2, TimeOf(2)});
  CHECK(v.seq == 2);
  CHECK(v.hash == FakeHash(2));
}

TEST_CASE("ConfigChanged with a non-zero value_digest is secret; an all-zero digest is not") {
  Views v;
  log::Hash digest_bytes{};
  digest_bytes[5] = 0x77;
  const fb::Digest digest(flatbuffers::span<const uint8_t, 32>(digest_bytes.data(), 32));
  const fb::Digest zero;
  log::DraftBuilder b1;
  ApplyNext(&v, b1, fb::CreateConfigChangedDirect(b1.fbb(), "ANKA_ROOT_TOKEN", nullptr, &digest));
  log::DraftBuilder b2;
  ApplyNext(&v, b2, fb::CreateConfigChangedDirect(b2.fbb(), "PLAIN", "v", &zero));
  const ConfigEntry& secret = v.config.entries.at("ANKA_ROOT_TOKEN");
  CHECK(secret.secret);
  CHECK(secret.value.empty());
  CHECK(secret.value_digest == digest_bytes);
  const ConfigEntry& plain = v.config.entries.at("PLAIN");
  CHECK_FALSE(plain.secret);
  CHECK(plain.value == "v");
}

TEST_CASE("a secret entry that becomes plain again loses its digest") {
  Views v;
  log::Hash digest_bytes{};
  digest_bytes[0] = 1;
  const fb::Digest digest(flatbuffers::span<const uint8_t, 32>(digest_bytes.data(), 32));
  log::DraftBuilder b1;
  ApplyNext(&v, b1, fb::CreateConfigChangedDirect(b1.fbb(), "K", nullptr, &digest));
  log::DraftBuilder b2;
  ApplyNext(&v, b2, fb::CreateConfigChangedDirect(b2.fbb(), "K", "visible"));
  const ConfigEntry& e = v.config.entries.at("K");
  CHECK_FALSE(e.secret);
  CHECK(e.value_digest == log::Hash{});
  CHECK(e.value == "visible");
}

// ---- Node groups ----------------------------------------------------------------------------

TEST_CASE("NodeGroupCreated creates a group; a repeated id replaces its fields, keeps members") {
  Views v;
  CreateGroup(&v, "g1", "build");
  JoinNode(&v, "n1", {"g1"});
  CreateGroup(&v, "g1", "renamed");
  const NodeGroup& g = v.node_groups.groups.at("g1");
  CHECK(g.group_id == "g1");
  CHECK(g.name == "renamed");
  CHECK(g.description == "desc");
  CHECK(g.node_ids == std::set<std::string>{"n1"});
  CHECK(g.created == Stamp{3, TimeOf(3)});
  CHECK(v.nodes.nodes.at("n1").groups == std::set<std::string>{"g1"});
}

TEST_CASE("NodeGroupUpdated sets the fields present; an empty string clears one") {
  Views v;
  CreateGroup(&v, "g1");
  CreateGroup(&v, "g2");
  log::DraftBuilder b1;
  ApplyNext(&v, b1, fb::CreateNodeGroupUpdatedDirect(b1.fbb(), "g1", nullptr, nullptr, "g2"));
  CHECK(v.node_groups.groups.at("g1").name == "build");
  CHECK(v.node_groups.groups.at("g1").fallback_group_id == "g2");
  log::DraftBuilder b2;
  ApplyNext(&v, b2, fb::CreateNodeGroupUpdatedDirect(b2.fbb(), "g1", "new", "", ""));
  const NodeGroup& g = v.node_groups.groups.at("g1");
  CHECK(g.name == "new");
  CHECK(g.description.empty());
  CHECK(g.fallback_group_id.empty());
  CHECK(g.created == Stamp{1, TimeOf(1)});
  CHECK(g.updated == Stamp{4, TimeOf(4)});
}

TEST_CASE("NodeGroupDeleted erases the group and removes it from its nodes' groups") {
  Views v;
  CreateGroup(&v, "g1");
  CreateGroup(&v, "g2");
  JoinNode(&v, "n1", {"g1", "g2"});
  JoinNode(&v, "n2", {"g1"});
  log::DraftBuilder b;
  ApplyNext(&v, b, fb::CreateNodeGroupDeletedDirect(b.fbb(), "g1"));
  CHECK_FALSE(v.node_groups.groups.contains("g1"));
  CHECK(v.nodes.nodes.at("n1").groups == std::set<std::string>{"g2"});
  CHECK(v.nodes.nodes.at("n2").groups.empty());
  CHECK(v.nodes.nodes.at("n2").updated == Stamp{5, TimeOf(5)});
  CHECK(v.node_groups.groups.at("g2").node_ids == std::set<std::string>{"n1"});
}

TEST_CASE("NodeGroupMembershipChanged adds and removes both sides") {
  Views v;
  CreateGroup(&v, "g1");
  JoinNode(&v, "n1");
  log::DraftBuilder b1;
  ApplyNext(&v, b1, fb::CreateNodeGroupMembershipChangedDirect(b1.fbb(), "g1", "n1", true));
  CHECK(v.node_groups.groups.at("g1").node_ids == std::set<std::string>{"n1"});
  CHECK(v.nodes.nodes.at("n1").groups == std::set<std::string>{"g1"});
  log::DraftBuilder b2;
  ApplyNext(&v, b2, fb::CreateNodeGroupMembershipChangedDirect(b2.fbb(), "g1", "n1", false));
  CHECK(v.node_groups.groups.at("g1").node_ids.empty());
  CHECK(v.nodes.nodes.at("n1").groups.empty());
}

// ---- Nodes ----------------------------------------------------------------------------------

TEST_CASE("NodeJoined creates the node in the named groups that exist, and only those") {
  Views v;
  CreateGroup(&v, "g1");
  JoinNode(&v, "n1", {"g1", "g-missing"});
  const Node& n = v.nodes.nodes.at("n1");
  CHECK(n.node_id == "n1");
  CHECK(n.node_name == "mac-mini");
  CHECK(n.ip_address == "10.0.0.1");
  CHECK(n.cpu_count == 8);
  CHECK(n.ram_mb == 16384);
  CHECK(n.vcpu_count == 16);
  CHECK(n.vram_mb == 32768);
  CHECK(n.capacity == 2);
  CHECK(n.capacity_mode == "number");
  CHECK(n.arch == "arm64");
  CHECK(n.hypervisor == "anka");
  CHECK(n.state == fb::NodeState::Offline);
  CHECK(n.groups == std::set<std::string>{"g1"});
  // Who joined it: the event's actor (resource management places by it).
  CHECK(n.credential == Credential{fb::ActorKind::System, "test", {}});
  CHECK(n.joined == Stamp{2, TimeOf(2)});
  CHECK(n.updated == Stamp{2, TimeOf(2)});
  CHECK(v.node_groups.groups.at("g1").node_ids == std::set<std::string>{"n1"});
}

TEST_CASE("a rejoin replaces the node, status and memberships included") {
  Views v;
  CreateGroup(&v, "g1");
  CreateGroup(&v, "g2");
  JoinNode(&v, "n1", {"g1"});
  log::DraftBuilder b;
  ApplyNext(&v, b, fb::CreateNodeUpdatedDirect(b.fbb(), "n1", nullptr, fb::NodeState::Active, 2));
  JoinNode(&v, "n1", {"g2"});
  const Node& n = v.nodes.nodes.at("n1");
  CHECK(n.state == fb::NodeState::Offline);
  CHECK(n.vm_count == 0);
  CHECK(n.groups == std::set<std::string>{"g2"});
  CHECK(v.node_groups.groups.at("g1").node_ids.empty());
  CHECK(v.node_groups.groups.at("g2").node_ids == std::set<std::string>{"n1"});
}

TEST_CASE("NodeUpdated: state and vm_count always; other fields only when given") {
  struct Case {
    const char* name;
    std::function<flatbuffers::Offset<fb::NodeUpdated>(flatbuffers::FlatBufferBuilder&)> build;
    std::function<void(const Node&)> check;
  };
  const std::vector<Case> cases = {
      {"a bare report sets state and vm_count, keeps the rest",
       [](auto& fbb) {
         return fb::CreateNodeUpdatedDirect(fbb, "n1", nullptr, fb::NodeState::Active, 3);
       },
       [](const Node& n) {
         CHECK(n.state == fb::NodeState::Active);
         CHECK(n.vm_count == 3);
         CHECK(n.node_name == "mac-mini");
         CHECK(n.capacity == 2);
         CHECK(n.capacity_mode == "number");
         CHECK(n.templates == std::vector<std::string>{"t-old"});
         CHECK(n.message == "old message");
       }},
      {"absent state and vm_count read as Offline and 0",
       [](auto& fbb) { return fb::CreateNodeUpdatedDirect(fbb, "n1"); },
       [](const Node& n) {
         CHECK(n.state == fb::NodeState::Offline);
         CHECK(n.vm_count == 0);
       }},
      {"every field given",
       [](auto& fbb) {
         StringOffsets templates = {fbb.CreateString("t1"), fbb.CreateString("t2")};
         return fb::CreateNodeUpdatedDirect(fbb, "n1", "renamed", fb::NodeState::DrainMode, 1, 7,
                                            "resource", &templates, "draining");
       },
       [](const Node& n) {
         CHECK(n.node_name == "renamed");
         CHECK(n.state == fb::NodeState::DrainMode);
         CHECK(n.vm_count == 1);
         CHECK(n.capacity == 7);
         CHECK(n.capacity_mode == "resource");
         CHECK(n.templates == std::vector<std::string>{"t1", "t2"});
         CHECK(n.message == "draining");
       }},
      {"empty strings and a zero capacity are not given",
       [](auto& fbb) {
         return fb::CreateNodeUpdatedDirect(fbb, "n1", "", fb::NodeState::Active, 0, 0, "", nullptr,
                                            "");
       },
       [](const Node& n) {
         CHECK(n.node_name == "mac-mini");
         CHECK(n.capacity == 2);
         CHECK(n.capacity_mode == "number");
         CHECK(n.message == "old message");
       }},
      {"an empty templates vector says the node holds none",
       [](auto& fbb) {
         StringOffsets none;
         return fb::CreateNodeUpdatedDirect(fbb, "n1", nullptr, fb::NodeState::Active, 0, 0,
                                            nullptr, &none);
       },
       [](const Node& n) { CHECK(n.templates.empty()); }},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      Views v;
      JoinNode(&v, "n1");
      log::DraftBuilder setup;
      StringOffsets old_templates = {setup.fbb().CreateString("t-old")};
      ApplyNext(&v, setup,
                fb::CreateNodeUpdatedDirect(setup.fbb(), "n1", nullptr, fb::NodeState::Active, 1, 0,
                                            nullptr, &old_templates, "old message"));
      log::DraftBuilder b;
      ApplyNext(&v, b, c.build(b.fbb()));
      const Node& n = v.nodes.nodes.at("n1");
      c.check(n);
      CHECK(n.updated == Stamp{3, TimeOf(3)});
      CHECK(n.joined == Stamp{1, TimeOf(1)});
    }
  }
}

TEST_CASE("NodeRemoved erases the node and removes it from its groups") {
  Views v;
  CreateGroup(&v, "g1");
  JoinNode(&v, "n1", {"g1"});
  JoinNode(&v, "n2", {"g1"});
  log::DraftBuilder b;
  ApplyNext(&v, b, fb::CreateNodeRemovedDirect(b.fbb(), "n1", "disjoined"));
  CHECK_FALSE(v.nodes.nodes.contains("n1"));
  CHECK(v.node_groups.groups.at("g1").node_ids == std::set<std::string>{"n2"});
  CHECK(v.node_groups.groups.at("g1").updated == Stamp{4, TimeOf(4)});
}

// ---- VM instances ---------------------------------------------------------------------------

TEST_CASE("VmInstanceRequested creates the instance in Scheduling with every requested field") {
  Views v;
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  std::vector<flatbuffers::Offset<fb::PortForward>> forwards = {
      fb::CreatePortForwardDirect(fbb, 22, 2222, "tcp", "ssh")};
  ApplyNext(&v, b,
            fb::CreateVmInstanceRequestedDirect(fbb, "i1", "tmpl", "tag", 3, "name", "name-{{n}}",
                                                "ext", "node-9", "g1", 500, "c2NyaXB0", 1, true, 60,
                                                2, R"({"k":"v"})", 4, 8192, &forwards, true));
  const VmInstance& i = v.vm_instances.instances.at("i1");
  CHECK(i.instance_id == "i1");
  CHECK(i.vmid == "tmpl");
  CHECK(i.tag == "tag");
  CHECK(i.version == 3);
  CHECK(i.name == "name");
  CHECK(i.name_template == "name-{{n}}");
  CHECK(i.external_id == "ext");
  CHECK(i.requested_node_id == "node-9");
  CHECK(i.node_id.empty());
  CHECK(i.group_id == "g1");
  CHECK(i.priority == 500);
  CHECK(i.startup_script == "c2NyaXB0");
  CHECK(i.startup_script_condition == 1);
  CHECK(i.script_monitoring);
  CHECK(i.script_timeout == 60);
  CHECK(i.script_fail_handler == 2);
  CHECK(i.metadata_json == R"({"k":"v"})");
  CHECK(i.vcpu == 4);
  CHECK(i.vram_mb == 8192);
  CHECK(i.port_forwarding_override == std::vector<PortForward>{{22, 2222, "tcp", "ssh"}});
  CHECK(i.vnc_password_set);
  CHECK(i.state == fb::VmState::Scheduling);
  CHECK(i.created == Stamp{1, TimeOf(1)});
}

TEST_CASE("VmInstanceRequested with absent fields takes the schema defaults") {
  Views v;
  log::DraftBuilder b;
  ApplyNext(&v, b, fb::CreateVmInstanceRequestedDirect(b.fbb(), "i1"));
  const VmInstance& i = v.vm_instances.instances.at("i1");
  CHECK(i.version == -1);
  CHECK(i.priority == 1000);
  CHECK(i.vmid.empty());
  CHECK(i.port_forwarding_override.empty());
}

TEST_CASE("VmInstanceScheduled sets the node") {
  Views v;
  RequestVm(&v, "i1");
  log::DraftBuilder b;
  ApplyNext(&v, b, fb::CreateVmInstanceScheduledDirect(b.fbb(), "i1", "node-7"));
  const VmInstance& i = v.vm_instances.instances.at("i1");
  CHECK(i.node_id == "node-7");
  CHECK(i.state == fb::VmState::Scheduling);
  CHECK(i.updated == Stamp{2, TimeOf(2)});
}

TEST_CASE("VmInstanceStateChanged sets the state always and other fields when given") {
  Views v;
  RequestVm(&v, "i1");
  log::DraftBuilder b1;
  ApplyNext(&v, b1,
            fb::CreateVmInstanceStateChangedDirect(b1.fbb(), "i1", fb::VmState::Started, "up", 1.0f,
                                                   "node-7", "uuid-1", "192.168.64.5", 5901));
  VmInstance i = v.vm_instances.instances.at("i1");
  CHECK(i.state == fb::VmState::Started);
  CHECK(i.message == "up");
  CHECK(i.progress == 1.0f);
  CHECK(i.node_id == "node-7");
  CHECK(i.vm_uuid == "uuid-1");
  CHECK(i.ip == "192.168.64.5");
  CHECK(i.vnc_port == 5901);
  // A report that knows only the state keeps where the VM runs.
  log::DraftBuilder b2;
  ApplyNext(&v, b2,
            fb::CreateVmInstanceStateChangedDirect(b2.fbb(), "i1", fb::VmState::Stopping, "", 0, "",
                                                   "", ""));
  i = v.vm_instances.instances.at("i1");
  CHECK(i.state == fb::VmState::Stopping);
  CHECK(i.message == "up");
  CHECK(i.progress == 1.0f);
  CHECK(i.node_id == "node-7");
  CHECK(i.vm_uuid == "uuid-1");
  CHECK(i.ip == "192.168.64.5");
  CHECK(i.vnc_port == 5901);
  CHECK(i.updated == Stamp{3, TimeOf(3)});
}

TEST_CASE("VmInstanceTerminated sets Terminated and the reason") {
  Views v;
  RequestVm(&v, "i1");
  log::DraftBuilder b;
  ApplyNext(&v, b, fb::CreateVmInstanceTerminatedDirect(b.fbb(), "i1", "done"));
  const VmInstance& i = v.vm_instances.instances.at("i1");
  CHECK(i.state == fb::VmState::Terminated);
  CHECK(i.terminated_reason == "done");
}

// ---- Totality -------------------------------------------------------------------------------

TEST_CASE("an event naming an entity the views do not hold changes only seq and hash") {
  using Build = std::function<void(Views*, log::DraftBuilder&)>;
  const std::vector<std::pair<const char*, Build>> cases = {
      {"NodeUpdated",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeUpdatedDirect(b.fbb(), "ghost", "x", fb::NodeState::Active));
       }},
      {"NodeRemoved",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeRemovedDirect(b.fbb(), "ghost"));
       }},
      {"NodeGroupUpdated",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeGroupUpdatedDirect(b.fbb(), "ghost", "x"));
       }},
      {"NodeGroupDeleted",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeGroupDeletedDirect(b.fbb(), "ghost"));
       }},
      {"NodeGroupMembershipChanged, unknown group",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeGroupMembershipChangedDirect(b.fbb(), "ghost", "n1", true));
       }},
      {"NodeGroupMembershipChanged, unknown node",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeGroupMembershipChangedDirect(b.fbb(), "g1", "ghost", true));
       }},
      {"VmInstanceScheduled",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateVmInstanceScheduledDirect(b.fbb(), "ghost", "n1"));
       }},
      {"VmInstanceStateChanged",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b,
                   fb::CreateVmInstanceStateChangedDirect(b.fbb(), "ghost", fb::VmState::Started));
       }},
      {"VmInstanceTerminated",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateVmInstanceTerminatedDirect(b.fbb(), "ghost", "x"));
       }},
      {"ConfigChanged without a key",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateConfigChangedDirect(b.fbb(), nullptr, "v"));
       }},
      {"NodeJoined with an empty id",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeJoinedDirect(b.fbb(), ""));
       }},
      {"NodeGroupCreated without an id",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateNodeGroupCreatedDirect(b.fbb(), nullptr, "x"));
       }},
      {"VmInstanceRequested without an id",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateVmInstanceRequestedDirect(b.fbb(), nullptr, "tmpl"));
       }},
      {"a payload no view uses (TapChallengeIssued)",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateTapChallengeIssuedDirect(b.fbb(), "key-1"));
       }},
      {"ApiKeyCreated without an id",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateApiKeyCreatedDirect(b.fbb(), nullptr, "ci"));
       }},
      {"SessionOpened for a key the views do not hold",
       [](Views* v, log::DraftBuilder& b) {
         const fb::Digest digest(flatbuffers::span<const uint8_t, 32>(log::Hash{1}.data(), 32));
         ApplyNext(v, b, fb::CreateSessionOpenedDirect(b.fbb(), &digest, "nobody", INT64_MAX));
       }},
      {"a payload no view uses (AccessDenied)",
       [](Views* v, log::DraftBuilder& b) {
         ApplyNext(v, b, fb::CreateAccessDeniedDirect(b.fbb(), "delete_vm", "vm", "i1"));
       }},
      {"a payload type a newer build wrote",
       [](Views* v, log::DraftBuilder& b) {
         auto table = fb::CreateNodeRemovedDirect(b.fbb(), "n1");
         ApplyNext(v, b, static_cast<fb::Payload>(200), table.Union());
       }},
  };
  for (const auto& [name, build] : cases) {
    SECTION(name) {
      Views v;
      CreateGroup(&v, "g1");
      JoinNode(&v, "n1", {"g1"});
      RequestVm(&v, "i1");
      const Views before = v;
      log::DraftBuilder b;
      build(&v, b);
      CHECK(v == OnlySeqAdvanced(before));
    }
  }
}

// ---- Pre-images -----------------------------------------------------------------------------

TEST_CASE("ApplyRecording records the pre-image of exactly the entities an event touched") {
  Views v;
  CreateGroup(&v, "g1");
  CreateGroup(&v, "g2");
  JoinNode(&v, "n1", {"g1"});
  const Views before = v;
  PreImages pre;
  StringOffsets groups;
  log::DraftBuilder b;
  groups.push_back(b.fbb().CreateString("g2"));
  ApplyNext(&v, b,
            fb::CreateNodeJoinedDirect(b.fbb(), "n1", "again", "", 0, 0, 0, 0, 0, nullptr, nullptr,
                                       nullptr, &groups),
            &pre);
  // The rejoin left g1, joined g2, and replaced n1; nothing else was touched.
  REQUIRE(pre.nodes.size() == 1);
  CHECK(pre.nodes.at("n1") == before.nodes.nodes.at("n1"));
  REQUIRE(pre.node_groups.size() == 2);
  CHECK(pre.node_groups.at("g1") == before.node_groups.groups.at("g1"));
  CHECK(pre.node_groups.at("g2") == before.node_groups.groups.at("g2"));
  CHECK(pre.config.empty());
  CHECK(pre.vm_instances.empty());

  PreImages created;
  RequestVm(&v, "i9");  // Without recording.
  log::DraftBuilder b2;
  ApplyNext(&v, b2, fb::CreateVmInstanceRequestedDirect(b2.fbb(), "i-new"), &created);
  REQUIRE(created.vm_instances.size() == 1);
  CHECK_FALSE(created.vm_instances.at("i-new").has_value());

  PreImages untouched;
  log::DraftBuilder b3;
  ApplyNext(&v, b3, fb::CreateVmInstanceTerminatedDirect(b3.fbb(), "ghost"), &untouched);
  CHECK(untouched.empty());
}

}  // namespace

// ---- API keys, sessions, revocations --------------------------------------------------------

namespace {

fb::Digest DigestFilled(uint8_t byte) {
  log::Hash bytes;
  bytes.fill(byte);
  return fb::Digest(flatbuffers::span<const uint8_t, 32>(bytes.data(), bytes.size()));
}

void CreateKey(Views* v, const char* id) {
  log::DraftBuilder b;
  const fb::Digest fingerprint = DigestFilled(9);
  std::vector<flatbuffers::Offset<flatbuffers::String>> groups = {b.fbb().CreateString("ci")};
  ApplyNext(v, b, fb::CreateApiKeyCreatedDirect(b.fbb(), id, "", "PEM", &fingerprint, &groups, 0));
}

// A session of key_id that lasts until the event `lasts_events` events later.
void OpenSession(Views* v, uint8_t digest, const char* key_id, uint64_t lasts_events) {
  log::DraftBuilder b;
  const fb::Digest session = DigestFilled(digest);
  const fb::Digest token = DigestFilled(static_cast<uint8_t>(digest + 100));
  ApplyNext(v, b, fb::CreateSessionOpenedDirect(b.fbb(), &session, key_id,
                                                TimeOf(v->seq + 1 + lasts_events), &token));
}

std::string DigestKey(uint8_t byte) {
  log::Hash bytes;
  bytes.fill(byte);
  return log::HashHex(bytes);
}

}  // namespace

TEST_CASE("API keys and their sessions: created, collected when expired, ended with the key") {
  Views v;
  CreateKey(&v, "nathan");
  CreateKey(&v, "other");
  REQUIRE(v.api_keys.keys.size() == 2);
  CHECK(v.api_keys.keys.at("nathan").groups == std::vector<std::string>{"ci"});
  CHECK(v.api_keys.keys.at("nathan").enabled);

  OpenSession(&v, 1, "nathan", 3);  // Ends at the first event after these three.
  OpenSession(&v, 2, "nathan", 100);
  OpenSession(&v, 3, "other", 100);
  REQUIRE(v.sessions.sessions.size() == 3);
  CHECK(v.sessions.sessions.at(DigestKey(1)).key_id == "nathan");
  CHECK(v.sessions.by_expiry.size() == 3);

  SECTION("a session past its end is collected by the next event, with no event of its own") {
    CreateGroup(&v, "g1");  // The first event at or after session 1's end.
    CHECK_FALSE(v.sessions.sessions.contains(DigestKey(1)));
    CHECK(v.sessions.sessions.size() == 2);
    CHECK(v.sessions.by_expiry.size() == 2);
  }
  SECTION("deleting a key erases it and ends exactly its sessions") {
    log::DraftBuilder b;
    PreImages pre;
    ApplyNext(&v, b, fb::CreateApiKeyDeletedDirect(b.fbb(), "nathan"), &pre);
    CHECK_FALSE(v.api_keys.keys.contains("nathan"));
    CHECK(v.sessions.sessions.size() == 1);
    CHECK(v.sessions.sessions.contains(DigestKey(3)));
    CHECK(pre.api_keys.size() == 1);
    CHECK(pre.sessions.size() == 2);  // Both of nathan's sessions were touched.
  }
  SECTION("revoking a key keeps it, disabled, and ends its sessions") {
    log::DraftBuilder b;
    ApplyNext(&v, b, fb::CreateKeyRevokedDirect(b.fbb(), "nathan", "leaked"));
    CHECK_FALSE(v.api_keys.keys.at("nathan").enabled);
    CHECK(v.sessions.sessions.size() == 1);
  }
  SECTION("revoking one session ends only it") {
    log::DraftBuilder b;
    const fb::Digest digest = DigestFilled(2);
    ApplyNext(&v, b, fb::CreateSessionRevokedDirect(b.fbb(), &digest, "nathan", "stolen"));
    CHECK_FALSE(v.sessions.sessions.contains(DigestKey(2)));
    // Session 1 ended at this event's time as well; only session 3 is left.
    CHECK(v.sessions.sessions.size() == 1);
    CHECK(v.sessions.sessions.contains(DigestKey(3)));
    CHECK(v.sessions.by_expiry.size() == 1);
  }
  SECTION("a session opened already expired, or for a deleted key, is not created") {
    OpenSession(&v, 4, "nathan", 0);
    OpenSession(&v, 5, "ghost", 100);
    CHECK_FALSE(v.sessions.sessions.contains(DigestKey(4)));
    CHECK_FALSE(v.sessions.sessions.contains(DigestKey(5)));
  }
  SECTION("an update sets groups and expiry; the public key stays") {
    log::DraftBuilder b;
    std::vector<flatbuffers::Offset<flatbuffers::String>> groups = {b.fbb().CreateString("a"),
                                                                    b.fbb().CreateString("b")};
    ApplyNext(&v, b, fb::CreateApiKeyUpdatedDirect(b.fbb(), "nathan", nullptr, &groups, 77));
    const ApiKey& key = v.api_keys.keys.at("nathan");
    CHECK(key.groups == std::vector<std::string>{"a", "b"});
    CHECK(key.expires_ns == 77);
    CHECK(key.public_key_pem == "PEM");
  }
}

TEST_CASE("certificate revocations are recorded by serial") {
  Views v;
  log::DraftBuilder b;
  ApplyNext(&v, b, fb::CreateCertificateRevokedDirect(b.fbb(), "1001", "CN=ca", "keyCompromise"));
  REQUIRE(v.revocations.certificates.contains("1001"));
  CHECK(v.revocations.certificates.at("1001").reason == "keyCompromise");
}

// ---- Permission groups and resource grants ----------------------------------------------------

namespace {

using Names = std::vector<std::string>;

std::vector<flatbuffers::Offset<flatbuffers::String>> Offsets(log::DraftBuilder& b,
                                                              const Names& names) {
  std::vector<flatbuffers::Offset<flatbuffers::String>> out;
  for (const std::string& name : names) {
    out.push_back(b.fbb().CreateString(name));
  }
  return out;
}

void CreatePermissionGroup(Views* v, const char* component, const char* name,
                           const Names& permissions) {
  log::DraftBuilder b;
  const std::string id = std::string(component) + "/" + name;
  auto names = Offsets(b, permissions);
  ApplyNext(v, b,
            fb::CreatePermissionGroupCreatedDirect(b.fbb(), id.c_str(), name, "team", &names,
                                                   component));
}

void SetGrant(Views* v, const char* type, const char* id, const char* principal,
              const Names& permissions, PreImages* pre = nullptr) {
  log::DraftBuilder b;
  auto names = Offsets(b, permissions);
  ApplyNext(v, b,
            fb::CreateResourcePermissionsSetDirect(b.fbb(), type, id, principal, &names), pre);
}

}  // namespace

TEST_CASE("permission groups are keyed by component and name; updates replace the set") {
  Views v;
  CreatePermissionGroup(&v, "controller", "ios", {"start_vm", "list_vms", "start_vm"});
  CreatePermissionGroup(&v, "registry", "ios", {"pull_vm"});
  REQUIRE(v.permission_groups.groups.size() == 2);
  const PermissionGroup& ios = v.permission_groups.groups.at("controller/ios");
  CHECK(ios.component == "controller");
  CHECK(ios.name == "ios");
  CHECK(ios.permissions == std::set<std::string>{"list_vms", "start_vm"});
  CHECK(v.permission_groups.groups.at("registry/ios").permissions ==
        std::set<std::string>{"pull_vm"});
  CHECK(v.authz_seq == 2);

  SECTION("an update with permissions replaces them; without, keeps them") {
    log::DraftBuilder b;
    auto names = Offsets(b, {"terminate_vm"});
    ApplyNext(&v, b, fb::CreatePermissionGroupUpdatedDirect(b.fbb(), "controller/ios", "ios",
                                                            "new", &names, "controller"));
    CHECK(v.permission_groups.groups.at("controller/ios").permissions ==
          std::set<std::string>{"terminate_vm"});
    CHECK(v.permission_groups.groups.at("controller/ios").description == "new");
    log::DraftBuilder b2;
    ApplyNext(&v, b2, fb::CreatePermissionGroupUpdatedDirect(b2.fbb(), "controller/ios", "ios",
                                                             nullptr, nullptr, "controller"));
    CHECK(v.permission_groups.groups.at("controller/ios").permissions ==
          std::set<std::string>{"terminate_vm"});
    CHECK(v.permission_groups.groups.at("controller/ios").description == "new");
    CHECK(v.authz_seq == 4);
  }
  SECTION("an update of an unknown group changes nothing, authz_seq included") {
    log::DraftBuilder b;
    PreImages pre;
    ApplyNext(&v, b, fb::CreatePermissionGroupUpdatedDirect(b.fbb(), "controller/x", "x"), &pre);
    CHECK(pre.empty());
    CHECK(v.authz_seq == 2);
    CHECK(v.permission_groups.groups.size() == 2);
  }
  SECTION("a created group without a component is a controller group") {
    log::DraftBuilder b;
    ApplyNext(&v, b, fb::CreatePermissionGroupCreatedDirect(b.fbb(), "old", "old"));
    CHECK(v.permission_groups.groups.at("controller/old").component == "controller");
  }
}

TEST_CASE("resource grants: set, replaced, removed by an empty list") {
  Views v;
  SetGrant(&v, "node", "n1", "ios", {"list", "create_instance"});
  REQUIRE(v.resource_permissions.grants.contains("node/n1/ios"));
  const ResourceGrant& grant = v.resource_permissions.grants.at("node/n1/ios");
  CHECK(grant.resource_type == "node");
  CHECK(grant.resource_id == "n1");
  CHECK(grant.principal == "ios");
  CHECK(grant.permissions == std::set<std::string>{"create_instance", "list"});
  CHECK(v.authz_seq == 1);
  SetGrant(&v, "node", "n1", "ios", {"remove"});
  CHECK(v.resource_permissions.grants.at("node/n1/ios").permissions ==
        std::set<std::string>{"remove"});
  CHECK(v.resource_permissions.grants.at("node/n1/ios").created.seq == 1);
  PreImages pre;
  SetGrant(&v, "node", "n1", "ios", {}, &pre);
  CHECK(v.resource_permissions.grants.empty());
  CHECK(pre.resource_permissions.size() == 1);
  CHECK(v.authz_seq == 3);
  PreImages none;
  SetGrant(&v, "node", "n1", "ios", {}, &none);  // Nothing to remove: nothing changes.
  CHECK(none.empty());
  CHECK(v.authz_seq == 3);
}

TEST_CASE("deleting a permission group drops its grants on its component's resources") {
  Views v;
  CreatePermissionGroup(&v, "controller", "ios", {"start_vm"});
  CreatePermissionGroup(&v, "registry", "ios", {"pull_vm"});
  SetGrant(&v, "node", "n1", "ios", {"create_instance"});
  SetGrant(&v, "node", "n2", "ios", {"list"});
  SetGrant(&v, "node", "n1", "android", {"list"});
  SetGrant(&v, "template", "t1", "ios", {"pull"});
  log::DraftBuilder b;
  PreImages pre;
  ApplyNext(&v, b, fb::CreatePermissionGroupDeletedDirect(b.fbb(), "controller/ios"), &pre);
  CHECK_FALSE(v.permission_groups.groups.contains("controller/ios"));
  CHECK(v.permission_groups.groups.contains("registry/ios"));
  CHECK(v.resource_permissions.grants.size() == 2);
  CHECK(v.resource_permissions.grants.contains("node/n1/android"));
  CHECK(v.resource_permissions.grants.contains("template/t1/ios"));
  CHECK(pre.permission_groups.size() == 1);
  CHECK(pre.resource_permissions.size() == 2);
  CHECK(v.authz_seq == v.seq);

  log::DraftBuilder b2;
  ApplyNext(&v, b2, fb::CreatePermissionGroupDeletedDirect(b2.fbb(), "registry/ios"));
  CHECK(v.resource_permissions.grants.size() == 1);
  CHECK(v.permission_groups.groups.empty());
}

void AppendPolicy(Views* v, const char* id, const std::vector<std::string>& events,
                  const char* head) {
  log::DraftBuilder b;
  std::vector<flatbuffers::Offset<fb::PolicySignedEvent>> offsets;
  for (const std::string& e : events) {
    offsets.push_back(fb::CreatePolicySignedEvent(
        b.fbb(), b.fbb().CreateVector(reinterpret_cast<const uint8_t*>(e.data()), e.size())));
  }
  ApplyNext(v, b, fb::CreatePolicyEventsAppendedDirect(b.fbb(), id, &offsets, head));
}

void Attach(Views* v, const char* type, const char* id, const char* policy) {
  log::DraftBuilder b;
  ApplyNext(v, b, fb::CreatePolicyAttachmentChangedDirect(b.fbb(), type, id, policy));
}

TEST_CASE("policies: events accumulate in order; attachments set, detach, survive a snapshot") {
  Views v;
  AppendPolicy(&v, "p1", {"e1", std::string("e2\0bin", 6)}, "h2");
  AppendPolicy(&v, "p1", {"e3"}, "h3");
  const StoredPolicy& p = v.policies.policies.at("p1");
  CHECK(p.events == std::vector<std::string>{"e1", std::string("e2\0bin", 6), "e3"});
  CHECK(p.head_hash == "h3");
  CHECK(p.created == Stamp{1, TimeOf(1)});
  CHECK(p.updated == Stamp{2, TimeOf(2)});
  Attach(&v, "template", "t1", "p1");
  Attach(&v, "instance", "i1", "p1");
  CHECK(v.policy_attachments.attachments.at("template/t1").policy_id == "p1");
  Attach(&v, "template", "t1", "");  // Detached: kept, empty, with the detach's stamp.
  CHECK(v.policy_attachments.attachments.at("template/t1").policy_id.empty());
  CHECK(v.policy_attachments.attachments.at("template/t1").updated.seq == 5);
  Attach(&v, "template", "t9", "");  // Detaching what was never attached changes nothing.
  CHECK_FALSE(v.policy_attachments.attachments.contains("template/t9"));
  const std::string encoded = EncodeViews(v);
  Result<Views> decoded = DecodeViews(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size()));
  REQUIRE(decoded.ok());
  CHECK(*decoded == v);
}

// ---- The registry --------------------------------------------------------------------------

std::string Digest(char c) { return "sha256:" + std::string(64, c); }

void PushManifest(Views* v, const char* id, const char* name, const std::string& digest,
                  const char* tag, int version, const std::vector<std::string>& refs = {}) {
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  std::vector<flatbuffers::Offset<fb::RegistryReference>> offsets;
  for (const std::string& ref : refs) {
    offsets.push_back(fb::CreateRegistryReferenceDirect(fbb, ref.c_str(), 10, "layer"));
  }
  ApplyNext(v, b, fb::CreateManifestPushedDirect(fbb, id, name, digest.c_str(), "oci", 100,
                                                 &offsets, tag, version, "d"));
}

void RemoveContent(Views* v, const char* id, const std::vector<std::string>& tags,
                   const std::vector<std::string>& digests, bool all, PreImages* pre = nullptr) {
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  ApplyNext(v, b,
            fb::CreateTemplateContentRemoved(fbb, fbb.CreateString(id),
                                             fbb.CreateVectorOfStrings(tags),
                                             fbb.CreateVectorOfStrings(digests), all,
                                             fbb.CreateString("revert")),
            pre);
}

TEST_CASE("registry: pushes add manifests and versions; removals take tags, manifests, all") {
  Views v;
  PushManifest(&v, "t1", "macos", Digest('a'), "v1", 0, {Digest('1'), Digest('2')});
  PushManifest(&v, "t1", "", Digest('b'), "v2", 1);
  PushManifest(&v, "t1", "", Digest('c'), "", 0);  // By digest: no tag.
  const Template& t = v.templates.templates.at("t1");
  CHECK(t.name == "macos");  // An empty name keeps it.
  REQUIRE(t.tags.size() == 2);
  CHECK(t.tags[0].tag == "v1");
  CHECK(t.tags[0].digest == Digest('a'));
  CHECK(t.tags[1].version == 1);
  REQUIRE(t.manifests.size() == 3);
  CHECK(t.manifests.at(Digest('a')).references.size() == 2);
  CHECK(t.manifests.at(Digest('a')).references[1].digest == Digest('2'));
  CHECK(t.manifests.at(Digest('c')).pushed.seq == 3);

  PreImages pre;
  RemoveContent(&v, "t1", {"v2"}, {Digest('b')}, false, &pre);
  CHECK(v.templates.templates.at("t1").tags.size() == 1);
  CHECK_FALSE(v.templates.templates.at("t1").manifests.contains(Digest('b')));
  REQUIRE(pre.templates.at("t1").has_value());
  CHECK(pre.templates.at("t1")->tags.size() == 2);  // The pre-image is from before.
  RemoveContent(&v, "nope", {"v1"}, {}, true);      // An unknown template: nothing.
  CHECK(v.templates.templates.size() == 1);

  const std::string encoded = EncodeViews(v);
  Result<Views> decoded = DecodeViews(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size()));
  REQUIRE(decoded.ok());
  CHECK(*decoded == v);

  RemoveContent(&v, "t1", {}, {}, true);
  CHECK(v.templates.templates.empty());
}

void Mirror(Views* v, const char* id, const char* name,
            const std::vector<std::pair<std::string, char>>& tags, bool removed = false,
            PreImages* pre = nullptr) {
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  std::vector<flatbuffers::Offset<fb::MirroredTag>> offsets;
  int32_t version = 0;
  for (const auto& [tag, digest] : tags) {
    offsets.push_back(fb::CreateMirroredTagDirect(fbb, tag.c_str(), version, "desc",
                                                  Digest(digest).c_str(), kTime0Ns + version));
    version++;
  }
  ApplyNext(v, b, fb::CreateTemplateMirroredDirect(fbb, id, name, &offsets, removed), pre);
}

TEST_CASE("registry mirror: a mirrored template's tags are replaced whole; removed erases it") {
  Views v;
  PushManifest(&v, "t1", "macos", Digest('a'), "v1", 0);  // Its manifest stays through a mirror.
  Mirror(&v, "t1", "macos-15", {{"v1", 'a'}, {"v2", 'b'}});
  const Template& t = v.templates.templates.at("t1");
  CHECK(t.mirrored);
  CHECK(t.name == "macos-15");
  REQUIRE(t.tags.size() == 2);
  CHECK(t.tags[1].tag == "v2");
  CHECK(t.tags[1].version == 1);
  CHECK(t.tags[1].digest == Digest('b'));
  CHECK(t.tags[1].registered == Stamp{2, kTime0Ns + 1});
  CHECK(t.tags[0].description == "desc");
  CHECK(t.manifests.contains(Digest('a')));

  PreImages pre;
  Mirror(&v, "t1", "", {{"v1", 'a'}}, false, &pre);  // A revert on the registry.
  CHECK(v.templates.templates.at("t1").tags.size() == 1);
  CHECK(v.templates.templates.at("t1").name == "macos-15");  // An empty name keeps it.
  REQUIRE(pre.templates.at("t1").has_value());
  CHECK(pre.templates.at("t1")->tags.size() == 2);

  Mirror(&v, "t2", "linux", {});
  const std::string encoded = EncodeViews(v);
  Result<Views> decoded = DecodeViews(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size()));
  REQUIRE(decoded.ok());
  CHECK(*decoded == v);
  CHECK(decoded->templates.templates.at("t2").mirrored);

  Mirror(&v, "nope", "", {}, true);  // Removing one the view lacks: only seq moves.
  CHECK(v.templates.templates.size() == 2);
  Mirror(&v, "t1", "", {}, true);
  CHECK_FALSE(v.templates.templates.contains("t1"));
  CHECK(v.templates.templates.contains("t2"));
  CHECK(v.seq == 6);
}

TEST_CASE("distributions: requested per node, progress only for named nodes, cleared") {
  Views v;
  {
    log::DraftBuilder b;
    auto& fbb = b.fbb();
    ApplyNext(&v, b, fb::CreateDistributionRequested(
                         fbb, fbb.CreateString("r1"), fbb.CreateString("distribute"),
                         fbb.CreateString("t1"), fbb.CreateString("v1"),
                         fbb.CreateVectorOfStrings(std::vector<std::string>{"n1", "n2"})));
  }
  auto progress = [&](const char* node, const char* status, uint8_t percent) {
    log::DraftBuilder b;
    ApplyNext(&v, b,
              fb::CreateDistributionProgressedDirect(b.fbb(), "r1", node, status, percent, "m"));
  };
  progress("n1", "in_progress", 40);
  progress("n9", "done", 100);  // Not named by the request: ignored.
  const Distribution& d = v.distributions.requests.at("r1");
  CHECK(d.nodes.size() == 2);
  CHECK(d.nodes.at("n1").status == "in_progress");
  CHECK(d.nodes.at("n1").progress == 40);
  CHECK(d.nodes.at("n2").status == "pending");
  CHECK(d.updated.seq == 2);
  const std::string encoded = EncodeViews(v);
  Result<Views> decoded = DecodeViews(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size()));
  REQUIRE(decoded.ok());
  CHECK(*decoded == v);
  {
    log::DraftBuilder b;
    auto& fbb = b.fbb();
    ApplyNext(&v, b, fb::CreateDistributionsCleared(
                         fbb, fbb.CreateVectorOfStrings(std::vector<std::string>{"r1"})));
  }
  CHECK(v.distributions.requests.empty());
}

TEST_CASE("files: stored by the actor, replaced by a new upload, deleted; survive encoding") {
  Views v;
  auto store = [&](const char* path, const std::string& digest, uint64_t size) {
    log::DraftBuilder b;
    ApplyNext(&v, b, fb::CreateFileStoredDirect(b.fbb(), path, digest.c_str(), size));
  };
  const std::string d1 = "sha256:" + std::string(64, '1');
  const std::string d2 = "sha256:" + std::string(64, '2');
  store("a/b.txt", d1, 10);
  store("c", d1, 10);
  store("a/b.txt", d2, 20);  // A replacement.
  store("", d2, 20);         // No path: nothing.
  REQUIRE(v.files.files.size() == 2);
  const StoredFile& f = v.files.files.at("a/b.txt");
  CHECK(f.digest == d2);
  CHECK(f.size == 20);
  CHECK(f.stored_by == "test");
  CHECK(f.stored.seq == 3);
  const std::string encoded = EncodeViews(v);
  Result<Views> decoded = DecodeViews(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(encoded.data()), encoded.size()));
  REQUIRE(decoded.ok());
  CHECK(*decoded == v);
  {
    log::DraftBuilder b;
    ApplyNext(&v, b, fb::CreateFileDeletedDirect(b.fbb(), "c"));
  }
  {
    log::DraftBuilder b;
    ApplyNext(&v, b, fb::CreateFileDeletedDirect(b.fbb(), "never"));  // Unknown: nothing.
  }
  CHECK(v.files.files.size() == 1);
  CHECK(v.files.files.contains("a/b.txt"));
  CHECK(v.seq == 6);
}

}  // namespace cloister::reducers
