#include "reducers/mixed_log.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "flatbuffers/flatbuffers.h"
#include "log/assert.h"
#include "log/events_generated.h"

namespace cloister::reducers {
namespace {

constexpr int64_t kMillisNs = 1'000'000;
constexpr uint64_t kConfigKeys = 40;
constexpr uint64_t kGroupsMax = 30;
constexpr uint64_t kNodesMax = 300;

using StringOffsets = std::vector<flatbuffers::Offset<flatbuffers::String>>;

fb::Digest DigestOf(uint64_t value) {
  std::array<uint8_t, 32> bytes{};
  for (size_t i = 0; i < bytes.size(); i++) {
    bytes[i] = static_cast<uint8_t>((value >> (8 * (i % 8))) + i);
  }
  return fb::Digest(flatbuffers::span<const uint8_t, 32>(bytes.data(), bytes.size()));
}

// The offsets of names, for a [string] field.
StringOffsets NameOffsets(flatbuffers::FlatBufferBuilder* fbb,
                          const std::vector<std::string>& names) {
  StringOffsets out;
  for (const std::string& name : names) {
    out.push_back(fbb->CreateString(name));
  }
  return out;
}

}  // namespace

MixedEvents::MixedEvents(uint64_t seed, int64_t time_ns_start)
    : state_(seed), time_ns_(time_ns_start) {}

// SplitMix64.
uint64_t MixedEvents::Random() {
  uint64_t x = (state_ += 0x9E3779B97F4A7C15ULL);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

log::Envelope MixedEvents::Envelope(fb::ActorKind kind, const std::string& actor_id) {
  time_ns_ += kMillisNs + static_cast<int64_t>(Below(5 * kMillisNs));
  actor_id_ = actor_id;
  char text[32];
  std::snprintf(text, sizeof(text), "req-%08llx", static_cast<unsigned long long>(serial_++));
  request_id_ = text;
  log::Envelope envelope;
  envelope.time_ns = time_ns_;
  envelope.actor_kind = kind;
  envelope.actor_id = actor_id_;
  envelope.request_id = request_id_;
  return envelope;
}

std::string MixedEvents::Pick(const std::vector<std::string>& ids, const char* prefix) {
  if (ids.empty() || Chance(3)) {
    return std::string(prefix) + "-ghost-" + std::to_string(Below(1000));
  }
  return ids[Below(ids.size())];
}

void MixedEvents::Forget(std::vector<std::string>* ids, const std::string& id) {
  auto it = std::find(ids->begin(), ids->end(), id);
  if (it != ids->end()) {
    *it = std::move(ids->back());
    ids->pop_back();
  }
}

log::Draft MixedEvents::Next() {
  // Per-mille weights: VM lifecycle events dominate, as on a busy controller.
  struct Kind {
    uint64_t weight;
    log::Draft (MixedEvents::*make)();
  };
  static constexpr Kind kKinds[] = {
      {50, &MixedEvents::ConfigChanged},    {20, &MixedEvents::NodeGroupCreated},
      {15, &MixedEvents::NodeGroupUpdated}, {7, &MixedEvents::NodeGroupDeleted},
      {28, &MixedEvents::NodeJoined},       {130, &MixedEvents::NodeUpdated},
      {10, &MixedEvents::NodeRemoved},      {40, &MixedEvents::MembershipChanged},
      {150, &MixedEvents::VmRequested},     {120, &MixedEvents::VmScheduled},
      {280, &MixedEvents::VmStateChanged},  {100, &MixedEvents::VmTerminated},
      {50, &MixedEvents::Unrelated},
  };
  uint64_t roll = Below(1000);
  for (const Kind& kind : kKinds) {
    if (roll < kind.weight) {
      return (this->*kind.make)();
    }
    roll -= kind.weight;
  }
  CL_ASSERT(false);  // The weights add up to 1000.
}

log::Draft MixedEvents::ConfigChanged() {
  log::DraftBuilder b;
  const std::string key = "KEY_" + std::to_string(Below(kConfigKeys));
  flatbuffers::Offset<fb::ConfigChanged> payload;
  if (Chance(20)) {
    const fb::Digest digest = DigestOf(Random());
    payload = fb::CreateConfigChangedDirect(b.fbb(), key.c_str(), nullptr, &digest);
  } else {
    const std::string value = "value-" + std::to_string(Below(100));
    payload = fb::CreateConfigChangedDirect(b.fbb(), key.c_str(), value.c_str());
  }
  return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
}

log::Draft MixedEvents::NodeGroupCreated() {
  log::DraftBuilder b;
  std::string id = "grp-" + std::to_string(serial_);
  if (!groups_.empty() && (Chance(5) || groups_.size() >= kGroupsMax)) {
    id = groups_[Below(groups_.size())];  // A repeated id replaces the group's fields.
  } else {
    groups_.push_back(id);
  }
  const std::string name = "group " + std::to_string(Below(500));
  const std::string fallback = groups_.size() > 1 && Chance(30) ? Pick(groups_, "grp") : "";
  auto payload = fb::CreateNodeGroupCreatedDirect(b.fbb(), id.c_str(), name.c_str(),
                                                  "created by the mixed stream", fallback.c_str());
  return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
}

log::Draft MixedEvents::NodeGroupUpdated() {
  log::DraftBuilder b;
  const std::string id = Pick(groups_, "grp");
  const std::string name = "renamed " + std::to_string(Below(500));
  const std::string description = Chance(50) ? "" : "updated " + std::to_string(Below(50));
  auto payload = fb::CreateNodeGroupUpdatedDirect(b.fbb(), id.c_str(), name.c_str(),
                                                  description.c_str(), Chance(50) ? nullptr : "");
  return b.Finish(Envelope(fb::ActorKind::ApiKey, "admin-key"), payload);
}

log::Draft MixedEvents::NodeGroupDeleted() {
  log::DraftBuilder b;
  const std::string id = Pick(groups_, "grp");
  Forget(&groups_, id);
  auto payload = fb::CreateNodeGroupDeletedDirect(b.fbb(), id.c_str());
  return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
}

log::Draft MixedEvents::NodeJoined() {
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  std::string id = "node-" + std::to_string(serial_);
  if (!nodes_.empty() && (Chance(10) || nodes_.size() >= kNodesMax)) {
    id = nodes_[Below(nodes_.size())];  // A rejoin.
  } else {
    nodes_.push_back(id);
  }
  StringOffsets groups;
  for (uint64_t i = Below(3); i > 0; i--) {
    groups.push_back(fbb.CreateString(Pick(groups_, "grp")));
  }
  const std::string name = "mac-" + std::to_string(Below(1000));
  const std::string ip = "10.0." + std::to_string(Below(256)) + "." + std::to_string(Below(256));
  auto payload = fb::CreateNodeJoinedDirect(
      fbb, id.c_str(), name.c_str(), ip.c_str(), 8 + 4 * static_cast<uint32_t>(Below(3)),
      16384 * (1 + Below(4)), 16, 32768, 2 + static_cast<uint32_t>(Below(3)), "number", "arm64",
      Chance(50) ? "anka" : "tart", &groups);
  // The joining credential's groups (resource management places by them); from the name
  // already drawn, so the stream's other draws stay as they were.
  log::Envelope envelope = Envelope(fb::ActorKind::Node, id);
  const std::vector<std::string> credential_groups = {"node", std::string("team") + name.back()};
  if (name.back() % 2 == 0) {
    envelope.actor_groups = credential_groups;
  }
  return b.Finish(envelope, payload);
}

log::Draft MixedEvents::NodeUpdated() {
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  const std::string id = Pick(nodes_, "node");
  StringOffsets templates;
  for (uint64_t i = Below(3); i > 0; i--) {
    templates.push_back(fbb.CreateString("tmpl-" + std::to_string(Below(20))));
  }
  const auto state = static_cast<fb::NodeState>(Below(5));
  const std::string name = Chance(10) ? "renamed-" + std::to_string(Below(100)) : "";
  auto payload = fb::CreateNodeUpdatedDirect(
      fbb, id.c_str(), name.empty() ? nullptr : name.c_str(), state,
      static_cast<uint32_t>(Below(3)), Chance(20) ? 1 + static_cast<uint32_t>(Below(4)) : 0,
      nullptr, Chance(70) ? &templates : nullptr, Chance(50) ? "heartbeat" : nullptr);
  return b.Finish(Envelope(fb::ActorKind::Node, id), payload);
}

log::Draft MixedEvents::NodeRemoved() {
  log::DraftBuilder b;
  const std::string id = Pick(nodes_, "node");
  Forget(&nodes_, id);
  auto payload = fb::CreateNodeRemovedDirect(b.fbb(), id.c_str(), "disjoined");
  return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
}

log::Draft MixedEvents::MembershipChanged() {
  log::DraftBuilder b;
  const std::string group = Pick(groups_, "grp");
  const std::string node = Pick(nodes_, "node");
  auto payload =
      fb::CreateNodeGroupMembershipChangedDirect(b.fbb(), group.c_str(), node.c_str(), Chance(70));
  return b.Finish(Envelope(fb::ActorKind::System, "cloisterd"), payload);
}

log::Draft MixedEvents::VmRequested() {
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  std::string id = "inst-" + std::to_string(serial_);
  if (!instances_.empty() && Chance(2)) {
    id = instances_[Below(instances_.size())];  // A repeated id replaces the instance.
  } else {
    instances_.push_back(id);
  }
  std::vector<flatbuffers::Offset<fb::PortForward>> forwards;
  if (Chance(30)) {
    forwards.push_back(fb::CreatePortForwardDirect(fbb, 22, 0, "tcp", "ssh"));
  }
  const std::string name = "ci-build-" + std::to_string(Below(100000));
  const std::string group = Chance(50) ? Pick(groups_, "grp") : "";
  auto payload = fb::CreateVmInstanceRequestedDirect(
      fbb, id.c_str(), "c12ccfa5-8757-411e-9505-128190e9854e", "xcode-15.4",
      Chance(50) ? -1 : static_cast<int32_t>(Below(10)), name.c_str(), nullptr, "pipeline-8812",
      nullptr, group.c_str(), 100 * static_cast<uint32_t>(1 + Below(20)),
      Chance(10) ? "ZWNobyBoaQ==" : nullptr, 0, Chance(10), 0, 0,
      R"({"branch":"main","commit":"3f9c2e1"})", 4, 8192, &forwards, Chance(5),
      group.empty() && name.back() % 2 == 1 ? "team1" : nullptr);
  return b.Finish(Envelope(fb::ActorKind::ApiKey, "ci-runner"), payload);
}

log::Draft MixedEvents::VmScheduled() {
  log::DraftBuilder b;
  const std::string id = Pick(instances_, "inst");
  const std::string node = Pick(nodes_, "node");
  auto payload = fb::CreateVmInstanceScheduledDirect(b.fbb(), id.c_str(), node.c_str());
  return b.Finish(Envelope(fb::ActorKind::System, "scheduler"), payload);
}

log::Draft MixedEvents::VmStateChanged() {
  log::DraftBuilder b;
  const std::string id = Pick(instances_, "inst");
  const auto state = static_cast<fb::VmState>(Below(9));
  const bool started = state == fb::VmState::Started;
  const std::string ip = "192.168.64." + std::to_string(2 + Below(250));
  auto payload = fb::CreateVmInstanceStateChangedDirect(
      b.fbb(), id.c_str(), state, Chance(50) ? fb::EnumNameVmState(state) : nullptr,
      started ? 1.0f : 0.25f * static_cast<float>(Below(4)), Chance(30) ? "node-x" : nullptr,
      started ? "6f1d2c9e-5b7a-4f0e-9c3d-2a8b7e4f1a60" : nullptr, started ? ip.c_str() : nullptr,
      started ? static_cast<uint16_t>(5900 + Below(100)) : 0);
  if (state == fb::VmState::Terminated) {
    Forget(&instances_, id);
  }
  return b.Finish(Envelope(fb::ActorKind::Node, "node-agent"), payload);
}

log::Draft MixedEvents::VmTerminated() {
  log::DraftBuilder b;
  const std::string id = Pick(instances_, "inst");
  Forget(&instances_, id);
  auto payload = fb::CreateVmInstanceTerminatedDirect(b.fbb(), id.c_str(), "pipeline finished");
  return b.Finish(Envelope(fb::ActorKind::ApiKey, "ci-runner"), payload);
}

log::Draft MixedEvents::Unrelated() {
  log::DraftBuilder b;
  auto& fbb = b.fbb();
  const std::string key = "key-" + std::to_string(Below(5));
  switch (Below(9)) {
    case 0: {
      const fb::Digest fingerprint = DigestOf(Random());
      std::vector<flatbuffers::Offset<flatbuffers::String>> groups = {fbb.CreateString("ci")};
      auto payload = fb::CreateApiKeyCreatedDirect(
          fbb, key.c_str(), "", "-----BEGIN PUBLIC KEY-----\n", &fingerprint, &groups,
          time_ns_ + static_cast<int64_t>(Below(3600)) * 1'000'000'000);
      return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
    }
    case 1: {
      const fb::Digest session = DigestOf(Random());
      const fb::Digest token = DigestOf(Random());
      auto payload = fb::CreateSessionOpenedDirect(
          fbb, &session, key.c_str(), time_ns_ + static_cast<int64_t>(Below(60'000)) * kMillisNs,
          &token);
      return b.Finish(Envelope(fb::ActorKind::ApiKey, key), payload);
    }
    case 2: {
      auto payload = fb::CreateAuthenticationFailedDirect(
          fbb, fb::AuthMethod::ApiKeyTap, "ci-runner", "bad signature", "203.0.113.7");
      return b.Finish(Envelope(fb::ActorKind::Anonymous, ""), payload);
    }
    case 3: {
      if (Chance(50)) {
        auto payload = fb::CreateKeyRevokedDirect(fbb, key.c_str(), "leaked");
        return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
      }
      auto payload = fb::CreateApiKeyDeletedDirect(fbb, key.c_str());
      return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
    }
    case 4: {
      const std::string serial = std::to_string(1000 + Below(50));
      auto payload = fb::CreateCertificateRevokedDirect(fbb, serial.c_str(), "O=ci, CN=ca",
                                                        "keyCompromise");
      return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
    }
    case 5: {  // Permission groups: created or updated (a ghost update changes nothing).
      const bool registry = Chance(30);
      const std::string name = "team-" + std::to_string(Below(6));
      const std::string id = std::string(registry ? "registry/" : "controller/") + name;
      std::vector<std::string> names = {registry ? "pull_vm" : "start_vm"};
      if (Chance(50)) {
        names.push_back(registry ? "list_vms" : "list_nodes");
      }
      const char* component = registry ? "registry" : "controller";
      const StringOffsets permissions = NameOffsets(&fbb, names);
      if (Chance(60)) {
        auto payload = fb::CreatePermissionGroupCreatedDirect(fbb, id.c_str(), name.c_str(),
                                                              "a team", &permissions, component);
        return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
      }
      auto payload = fb::CreatePermissionGroupUpdatedDirect(fbb, id.c_str(), name.c_str(),
                                                            nullptr, &permissions, component);
      return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
    }
    case 6: {
      const std::string id = std::string(Chance(30) ? "registry/" : "controller/") + "team-" +
                             std::to_string(Below(6));
      auto payload = fb::CreatePermissionGroupDeletedDirect(fbb, id.c_str());
      return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
    }
    case 7: {  // Resource grants: set, replaced or (an empty list) removed.
      const bool node = Chance(60);
      const std::string id = node ? Pick(nodes_, "node") : "tmpl-" + std::to_string(Below(4));
      const std::string principal = "team-" + std::to_string(Below(6));
      std::vector<std::string> names;
      if (!Chance(25)) {
        names.push_back(node ? "create_instance" : "pull");
        if (Chance(50)) {
          names.push_back("list");
        }
      }
      const StringOffsets permissions = NameOffsets(&fbb, names);
      auto payload = fb::CreateResourcePermissionsSetDirect(
          fbb, node ? "node" : "template", id.c_str(), principal.c_str(), &permissions);
      return b.Finish(Envelope(fb::ActorKind::Root, "root"), payload);
    }
    default: {
      auto payload = fb::CreateAccessDeniedDirect(fbb, "delete_vm", "vm", "inst-1", "DELETE",
                                                  "/api/v1/vm", "198.51.100.4");
      return b.Finish(Envelope(fb::ActorKind::ApiKey, "dev"), payload);
    }
  }
}

Status AppendMixedEvents(log::Log* log, uint64_t events, uint64_t seed, int64_t time_ns_start,
                         size_t batch_events) {
  MixedEvents stream(seed, time_ns_start);
  uint64_t left = events;
  while (left > 0) {
    const uint64_t n = std::min<uint64_t>(left, batch_events);
    std::vector<log::Draft> drafts;
    drafts.reserve(n);
    for (uint64_t i = 0; i < n; i++) {
      drafts.push_back(stream.Next());
    }
    Result<log::AppendResult> appended = log->Append(std::move(drafts));
    if (!appended.ok()) {
      return appended.status();
    }
    left -= n;
  }
  return Status::Ok();
}

}  // namespace cloister::reducers
