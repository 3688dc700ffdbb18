#include "tools/demo.h"

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "log/draft.h"
#include "log/events_generated.h"
#include "log/hash.h"

namespace cloister::tools {
namespace {

constexpr int64_t kMillis = 1'000'000;
constexpr int64_t kSecondsNs = 1'000'000'000;
constexpr int64_t kHourNs = 3600 * kSecondsNs;
constexpr int64_t kDayNs = 24 * kHourNs;
constexpr uint64_t kStoryEvents = 12;  // Events in the scripted part before the repeating cycle.
constexpr uint64_t kCycleEvents = 6;   // Events per repeated VM lifecycle.

// Principals of the story.
constexpr char kNodeId[] = "node-7f3a";
constexpr char kGroupId[] = "grp-build";
constexpr char kKeyId[] = "ci-runner";

// A stand-in for HMAC-SHA256(server key, value): the demo has no server key, and the point is
// only that events carry digests, never the secret itself.
fb::Digest DemoDigest(std::string_view label) {
  log::ChainHasher hasher;
  const log::Hash zero{};
  const log::Hash hash =
      hasher.Next(zero, {reinterpret_cast<const uint8_t*>(label.data()), label.size()});
  return fb::Digest(flatbuffers::span<const uint8_t, 32>(hash.data(), hash.size()));
}

// SplitMix64: request ids that look random but repeat for the same start time.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Produces the story one command (the events of one Append) at a time.
class Story {
 public:
  explicit Story(int64_t time_ns_start) : time_ns_(time_ns_start) {}

  // Appends the drafts of the next command to *drafts.
  void NextCommand(std::vector<log::Draft>* drafts) {
    const std::string request_id = NextRequestId();
    switch (step_++) {
      case 0:
        ConfigChanged(request_id, drafts);
        return;
      case 1:
        NodeGroupCreated(request_id, drafts);
        return;
      case 2:
        NodeJoined(request_id, drafts);
        return;  // Two events.
      case 3:
        ApiKeyCreated(request_id, drafts);
        return;
      case 4:
        TapChallengeIssued(request_id, drafts);
        return;
      case 5:
        SessionOpened(request_id, drafts);
        return;
      case 6:
        VmRequested(1, request_id, drafts);
        return;
      case 7:
        VmScheduled(1, request_id, drafts);
        return;
      case 8:
        VmStateChanged(1, fb::VmState::Started, "VM started", request_id, drafts);
        return;
      case 9:
        AuthenticationFailed(request_id, drafts);
        return;
      case 10:
        AccessDenied(request_id, drafts);
        return;
      default:
        Cycle(step_ - 12, request_id, drafts);
        return;
    }
  }

 private:
  std::string NextRequestId() {
    char text[32];
    std::snprintf(text, sizeof(text), "req-%012llx",
                  static_cast<unsigned long long>(Mix(static_cast<uint64_t>(time_ns_) + step_) &
                                                  0xFFFFFFFFFFFFULL));
    return text;
  }

  log::Envelope Envelope(fb::ActorKind kind, std::string_view id,
                         std::span<const std::string> groups, std::string_view request_id) {
    time_ns_ += 3 * kMillis + static_cast<int64_t>(Mix(++ticks_) % (40 * kMillis));
    log::Envelope envelope;
    envelope.time_ns = time_ns_;
    envelope.actor_kind = kind;
    envelope.actor_id = id;
    envelope.actor_groups = groups;
    envelope.request_id = request_id;
    return envelope;
  }

  log::Envelope Root(std::string_view request_id) {
    return Envelope(fb::ActorKind::Root, "root", {}, request_id);
  }
  log::Envelope System(std::string_view id, std::string_view request_id) {
    return Envelope(fb::ActorKind::System, id, {}, request_id);
  }
  log::Envelope Node(std::string_view request_id) {
    return Envelope(fb::ActorKind::Node, kNodeId, {}, request_id);
  }
  log::Envelope CiRunner(std::string_view request_id) {
    return Envelope(fb::ActorKind::ApiKey, kKeyId, ci_groups_, request_id);
  }

  void ConfigChanged(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    auto& fbb = b.fbb();
    auto payload = fb::CreateConfigChangedDirect(fbb, "ANKA_ENABLE_API_KEYS", "true");
    drafts->push_back(b.Finish(Root(request_id), payload));
  }

  void NodeGroupCreated(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    auto payload = fb::CreateNodeGroupCreatedDirect(b.fbb(), kGroupId, "build",
                                                    "Apple silicon build hosts for CI", nullptr);
    drafts->push_back(b.Finish(Root(request_id), payload));
  }

  // The node agent joins with its group; the controller records the membership in the same
  // command.
  void NodeJoined(const std::string& request_id, std::vector<log::Draft>* drafts) {
    {
      log::DraftBuilder b;
      auto& fbb = b.fbb();
      std::vector<flatbuffers::Offset<flatbuffers::String>> groups = {fbb.CreateString(kGroupId)};
      auto payload = fb::CreateNodeJoinedDirect(fbb, kNodeId, "mac-mini-01", "10.0.4.21", 8, 16384,
                                                16, 32768, 2, "number", "arm64", "anka", &groups);
      drafts->push_back(b.Finish(Node(request_id), payload));
    }
    log::DraftBuilder b;
    auto payload = fb::CreateNodeGroupMembershipChangedDirect(b.fbb(), kGroupId, kNodeId, true);
    drafts->push_back(b.Finish(System("cloisterd", request_id), payload));
  }

  void ApiKeyCreated(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    auto& fbb = b.fbb();
    const fb::Digest fingerprint = DemoDigest("demo public key ci-runner");
    std::vector<flatbuffers::Offset<flatbuffers::String>> groups = {fbb.CreateString("ci")};
    auto payload = fb::CreateApiKeyCreatedDirect(
        fbb, kKeyId, "CI runner for the build pipeline",
        "-----BEGIN PUBLIC KEY-----\n"
        "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
        "-----END PUBLIC KEY-----\n",
        &fingerprint, &groups, time_ns_ + 90 * kDayNs);
    drafts->push_back(b.Finish(Root(request_id), payload));
  }

  // The shake request is not authenticated yet: the actor is anonymous.
  void TapChallengeIssued(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    const fb::Digest challenge = DemoDigest("demo TAP challenge 1");
    auto payload =
        fb::CreateTapChallengeIssuedDirect(b.fbb(), kKeyId, &challenge, time_ns_ + 30 * kSecondsNs);
    drafts->push_back(b.Finish(Envelope(fb::ActorKind::Anonymous, "", {}, request_id), payload));
  }

  void SessionOpened(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    const fb::Digest session = DemoDigest("demo session 1");
    auto payload = fb::CreateSessionOpenedDirect(b.fbb(), &session, kKeyId, time_ns_ + kHourNs);
    drafts->push_back(b.Finish(CiRunner(request_id), payload));
  }

  static std::string InstanceId(uint64_t n) {
    char text[32];
    std::snprintf(text, sizeof(text), "inst-%04llu", static_cast<unsigned long long>(n));
    return text;
  }

  void VmRequested(uint64_t n, const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    const std::string instance = InstanceId(n);
    const std::string name = "ci-build-" + std::to_string(n);
    auto payload = fb::CreateVmInstanceRequestedDirect(
        b.fbb(), instance.c_str(), "c12ccfa5-8757-411e-9505-128190e9854e", "xcode-15.4",
        /*version=*/-1, name.c_str(), /*name_template=*/nullptr, /*external_id=*/"pipeline-8812",
        /*node_id=*/nullptr, kGroupId, /*priority=*/1000, /*startup_script=*/nullptr,
        /*startup_script_condition=*/0, /*script_monitoring=*/false, /*script_timeout=*/0,
        /*script_fail_handler=*/0, R"({"branch":"main","commit":"3f9c2e1"})", /*vcpu=*/4,
        /*vram_mb=*/8192);
    drafts->push_back(b.Finish(CiRunner(request_id), payload));
  }

  void VmScheduled(uint64_t n, const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    const std::string instance = InstanceId(n);
    auto payload = fb::CreateVmInstanceScheduledDirect(b.fbb(), instance.c_str(), kNodeId);
    drafts->push_back(b.Finish(System("scheduler", request_id), payload));
  }

  void VmStateChanged(uint64_t n, fb::VmState state, const char* message,
                      const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    const std::string instance = InstanceId(n);
    const bool started = state == fb::VmState::Started;
    char ip[32];
    std::snprintf(ip, sizeof(ip), "192.168.64.%llu", static_cast<unsigned long long>(2 + n % 250));
    auto payload = fb::CreateVmInstanceStateChangedDirect(
        b.fbb(), instance.c_str(), state, message, started ? 1.0f : 0.35f, kNodeId,
        started ? "6f1d2c9e-5b7a-4f0e-9c3d-2a8b7e4f1a60" : nullptr, started ? ip : nullptr,
        started ? static_cast<uint16_t>(5900 + n % 100) : 0);
    drafts->push_back(b.Finish(Node(request_id), payload));
  }

  void AuthenticationFailed(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    auto payload =
        fb::CreateAuthenticationFailedDirect(b.fbb(), fb::AuthMethod::ApiKeyTap, kKeyId,
                                             "TAP signature does not verify", "203.0.113.50");
    drafts->push_back(b.Finish(Envelope(fb::ActorKind::Anonymous, "", {}, request_id), payload));
  }

  void AccessDenied(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    auto payload = fb::CreateAccessDeniedDirect(b.fbb(), "delete_vm", "vm", "inst-0001", "DELETE",
                                                "/api/v1/vm?id=inst-0001", "10.0.9.14");
    drafts->push_back(
        b.Finish(Envelope(fb::ActorKind::ApiKey, "dev-laptop", dev_groups_, request_id), payload));
  }

  // One more VM lifecycle: requested, scheduled, pulling, started, heartbeat, terminated.
  void Cycle(uint64_t step, const std::string& request_id, std::vector<log::Draft>* drafts) {
    const uint64_t n = 2 + step / kCycleEvents;
    switch (step % kCycleEvents) {
      case 0:
        VmRequested(n, request_id, drafts);
        return;
      case 1:
        VmScheduled(n, request_id, drafts);
        return;
      case 2:
        VmStateChanged(n, fb::VmState::Pulling, "pulling xcode-15.4", request_id, drafts);
        return;
      case 3:
        VmStateChanged(n, fb::VmState::Started, "VM started", request_id, drafts);
        return;
      case 4:
        NodeHeartbeat(request_id, drafts);
        return;
      default:
        VmTerminated(n, request_id, drafts);
        return;
    }
  }

  void NodeHeartbeat(const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    auto& fbb = b.fbb();
    std::vector<flatbuffers::Offset<flatbuffers::String>> templates = {
        fbb.CreateString("c12ccfa5-8757-411e-9505-128190e9854e")};
    auto payload = fb::CreateNodeUpdatedDirect(fbb, kNodeId, "mac-mini-01", fb::NodeState::Active,
                                               2, 2, "number", &templates, "heartbeat");
    drafts->push_back(b.Finish(Node(request_id), payload));
  }

  void VmTerminated(uint64_t n, const std::string& request_id, std::vector<log::Draft>* drafts) {
    log::DraftBuilder b;
    const std::string instance = InstanceId(n);
    auto payload = fb::CreateVmInstanceTerminatedDirect(b.fbb(), instance.c_str(),
                                                        "terminated by the pipeline");
    drafts->push_back(b.Finish(CiRunner(request_id), payload));
  }

  int64_t time_ns_;
  uint64_t step_ = 0;
  uint64_t ticks_ = 0;
  const std::vector<std::string> ci_groups_ = {"ci"};
  const std::vector<std::string> dev_groups_ = {"dev"};
};

// Counts outstanding appends and keeps the first failure and the seq range.
class Completion {
 public:
  void Add() {
    std::lock_guard lock(mu_);
    pending_++;
  }
  void Done(const Result<log::AppendResult>& result) {
    std::lock_guard lock(mu_);
    if (result.ok()) {
      seq_first_ = seq_first_ == 0 ? result->seq_first : std::min(seq_first_, result->seq_first);
      seq_last_ = std::max(seq_last_, result->seq_last);
      appended_ += result->seq_last - result->seq_first + 1;
    } else if (status_.ok()) {
      status_ = result.status();
    }
    if (--pending_ == 0) {
      idle_.notify_all();
    }
  }
  Result<DemoResult> Wait() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return pending_ == 0; });
    if (!status_.ok()) {
      return status_;
    }
    return DemoResult{appended_, seq_first_, seq_last_};
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  uint64_t pending_ = 0;    // Guarded by mu_.
  uint64_t appended_ = 0;   // Guarded by mu_.
  uint64_t seq_first_ = 0;  // Guarded by mu_.
  uint64_t seq_last_ = 0;   // Guarded by mu_.
  Status status_;           // Guarded by mu_.
};

}  // namespace

Result<DemoResult> AppendDemoStory(log::Log* log, uint64_t events, int64_t time_ns_start) {
  static_assert(kDemoEventsDefault == kStoryEvents);
  if (events > kDemoEventsMax) {
    return Status::InvalidArgument("--events " + std::to_string(events) + " exceeds the limit of " +
                                   std::to_string(kDemoEventsMax));
  }
  Story story(time_ns_start);
  Completion completion;
  uint64_t queued = 0;
  while (queued < events) {
    std::vector<log::Draft> drafts;
    story.NextCommand(&drafts);
    if (drafts.size() > events - queued) {
      // The last command is cut to the requested count.
      drafts.erase(drafts.begin() + static_cast<std::ptrdiff_t>(events - queued), drafts.end());
    }
    queued += drafts.size();
    // Commands are queued without waiting, as concurrent producers would: the writer's group
    // commit turns them into a few durable transactions. Queue order is seq order.
    completion.Add();
    log->AppendAsync(std::move(drafts),
                     [&completion](Result<log::AppendResult> result) { completion.Done(result); });
  }
  return completion.Wait();
}

}  // namespace cloister::tools
