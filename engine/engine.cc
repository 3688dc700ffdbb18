#include "engine/engine.h"

#include <algorithm>
#include <utility>

#include "engine/config_keys.h"
#include "engine/limits.h"
#include "log/assert.h"
#include "log/draft.h"
#include "reducers/snapshot.h"

namespace cloister::engine {

namespace {

// The entities a command reads or writes. Two commands sharing a key are serialised.
std::vector<std::string> ConflictKeys(const Command& command) {
  struct Visitor {
    std::vector<std::string> operator()(const SetConfig&) const {
      // Validation reads no state (a blind write), and the log's order is the order of
      // arrival, so concurrent sets of one key need no serialising: the last to arrive wins.
      return {};
    }
    std::vector<std::string> operator()(const CreateNodeGroup& c) const {
      return {"group-name/" + c.name, "group/" + c.fallback_group_id};
    }
    std::vector<std::string> operator()(const UpdateNodeGroup& c) const {
      // A fallback change can close a cycle through any group: serialise all of them.
      return {"group/" + c.group_id, "group-name/" + c.name.value_or(""), "group-fallbacks"};
    }
    std::vector<std::string> operator()(const DeleteNodeGroup& c) const {
      return {"group/" + c.group_id, "group-fallbacks"};
    }
    std::vector<std::string> operator()(const JoinNode& c) const {
      std::vector<std::string> keys = {"node/" + c.node_id, "node-name/" + c.node_name};
      for (const std::string& group : c.groups) {
        keys.push_back("group/" + group);
      }
      return keys;
    }
    std::vector<std::string> operator()(const RemoveNode& c) const { return {"node/" + c.node_id}; }
    std::vector<std::string> operator()(const RequestVm& c) const {
      return {"group/" + c.group_id, "node/" + c.node_id};
    }
    std::vector<std::string> operator()(const ChangeVmState& c) const {
      return {"vm/" + c.instance_id};
    }
    std::vector<std::string> operator()(const TerminateVm& c) const {
      return {"vm/" + c.instance_id};
    }
    std::vector<std::string> operator()(const UpdateNodeStatus& c) const {
      return {"node/" + c.node_id};
    }
    std::vector<std::string> operator()(const ChangeGroupMembership& c) const {
      std::vector<std::string> keys;
      for (const std::string& group : c.group_ids) {
        keys.push_back("group/" + group);
      }
      for (const std::string& node : c.node_ids) {
        keys.push_back("node/" + node);
      }
      return keys;
    }
    std::vector<std::string> operator()(const UpdateVm& c) const {
      return {"vm/" + c.instance_id};
    }
    std::vector<std::string> operator()(const RestartVm& c) const {
      return {"vm/" + c.instance_id};
    }
    std::vector<std::string> operator()(const ConfigureNode& c) const {
      return {"node/" + c.node_id};
    }
    std::vector<std::string> operator()(const RequestNodeUpdate&) const { return {}; }
    // Template writes are rare: one key serialises them all (names, tags and versions are
    // checked against each other). Templates only grow, so VM requests need not wait for them.
    std::vector<std::string> operator()(const RequestSaveImage& c) const {
      return {"vm/" + c.instance_id, "templates"};
    }
    std::vector<std::string> operator()(const FinishSaveImage&) const { return {"templates"}; }
    std::vector<std::string> operator()(const RecordAuthFailure&) const { return {}; }
    std::vector<std::string> operator()(const CreateApiKey& c) const {
      return {"apikey/" + c.key_id};
    }
    std::vector<std::string> operator()(const UpdateApiKey& c) const {
      return {"apikey/" + c.key_id};
    }
    std::vector<std::string> operator()(const DeleteApiKey& c) const {
      return {"apikey/" + c.key_id};
    }
    std::vector<std::string> operator()(const RevokeKey& c) const {
      return {"apikey/" + c.key_id};
    }
    // Sessions of one key open concurrently (a fleet shares a key; each login must not wait for
    // the one before it). A delete or revocation racing one is safe in either order: the reducer
    // ignores a session of a key it no longer holds, and ending a key ends its sessions.
    std::vector<std::string> operator()(const OpenSession&) const { return {}; }
    std::vector<std::string> operator()(const RevokeSession&) const { return {}; }
    std::vector<std::string> operator()(const RevokeCertificate&) const { return {}; }
    std::vector<std::string> operator()(const RecordCrlLoaded&) const { return {}; }
    // A group's deletion drops the grants naming it: it waits for (and is waited for by) grants
    // to that principal, so a grant set concurrently is never half-dropped.
    std::vector<std::string> operator()(const CreatePermissionGroup& c) const {
      return {"permission-group/" + c.component + "/" + c.name};
    }
    std::vector<std::string> operator()(const UpdatePermissionGroup& c) const {
      return {"permission-group/" + c.component + "/" + c.name};
    }
    std::vector<std::string> operator()(const DeletePermissionGroup& c) const {
      return {"permission-group/" + c.component + "/" + c.name, "grant-principal/" + c.name};
    }
    std::vector<std::string> operator()(const SetResourcePermissions& c) const {
      std::vector<std::string> keys = {"grant-principal/" + c.principal};
      keys.push_back(c.resource_type == "node" ? "node/" + c.resource_id : "templates");
      return keys;
    }
    std::vector<std::string> operator()(const RecordAccessDenied&) const { return {}; }
    std::vector<std::string> operator()(const PutPolicy& c) const {
      return {"policy/" + c.policy_id};
    }
    std::vector<std::string> operator()(const ChangePolicyAttachment& c) const {
      return {"policy/" + c.policy_id,
              c.target_type == "template" ? std::string("templates") : "vm/" + c.target_id};
    }
    std::vector<std::string> operator()(const PushManifest&) const { return {"templates"}; }
    std::vector<std::string> operator()(const RemoveTemplateContent&) const {
      return {"templates"};
    }
    std::vector<std::string> operator()(const RequestDistribution&) const {
      return {"distributions"};
    }
    std::vector<std::string> operator()(const ReportDistribution& c) const {
      return {"distribution/" + c.request_id};
    }
    std::vector<std::string> operator()(const ClearDistributions&) const {
      return {"distributions"};
    }
    std::vector<std::string> operator()(const MirrorRegistryTemplates&) const {
      return {"templates"};
    }
    // One key for all files: kFilesMax is counted across them.
    std::vector<std::string> operator()(const StoreFile&) const { return {"files"}; }
    std::vector<std::string> operator()(const DeleteFile&) const { return {"files"}; }
    std::vector<std::string> operator()(const ScheduleVms&) const {
      // One pass at a time: a pass counts capacity from the views, so a second pass in flight
      // would count without the first one's placements.
      return {"scheduler"};
    }
  };
  std::vector<std::string> keys = std::visit(Visitor{}, command);
  // An empty id ("group/" for no fallback) names nothing and must not serialise anything.
  std::erase_if(keys, [](const std::string& key) { return key.ends_with('/'); });
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

}  // namespace

bool VmTransitionAllowed(fb::VmState from, fb::VmState to) {
  using S = fb::VmState;
  if (from == S::Terminated) {
    return false;
  }
  if (from == to) {
    return true;  // Progress and message updates.
  }
  switch (from) {
    case S::Scheduling:
      return to == S::Pulling || to == S::Started || to == S::Error || to == S::Terminating;
    case S::Pulling:
      return to == S::Started || to == S::Error || to == S::Terminating;
    case S::Started:
      return to == S::Stopping || to == S::Pushing || to == S::Error || to == S::Terminating;
    case S::Stopping:
      return to == S::Stopped || to == S::Error || to == S::Terminating;
    case S::Stopped:
      return to == S::Started || to == S::Pushing || to == S::Error || to == S::Terminating;
    case S::Pushing:
      return to == S::Started || to == S::Stopped || to == S::Error || to == S::Terminating;
    case S::Terminating:
      return to == S::Terminated || to == S::Error;
    case S::Error:
      return to == S::Terminating || to == S::Terminated;
    case S::Terminated:
      return false;
  }
  return false;
}

const char* RejectionName(Rejection rejection) {
  switch (rejection) {
    case Rejection::kNone: return "none";
    case Rejection::kInvalidArgument: return "invalid_argument";
    case Rejection::kUnknownConfigKey: return "unknown_config_key";
    case Rejection::kInvalidConfigValue: return "invalid_config_value";
    case Rejection::kNotFound: return "not_found";
    case Rejection::kNameTaken: return "name_taken";
    case Rejection::kInvalidFallback: return "invalid_fallback";
    case Rejection::kIllegalTransition: return "illegal_transition";
    case Rejection::kAlreadyTerminated: return "already_terminated";
    case Rejection::kForbidden: return "forbidden";
    case Rejection::kOverloaded: return "overloaded";
  }
  return "unknown";
}

const char* CommandName(const Command& command) {
  static constexpr const char* kNames[] = {
      "set_config",  "create_node_group", "update_node_group", "delete_node_group", "join_node",
      "remove_node", "request_vm",        "change_vm_state",   "terminate_vm",      "update_node_status",
      "schedule_vms", "change_group_membership", "update_vm", "restart_vm", "configure_node",
      "request_node_update", "request_save_image", "finish_save_image",
      "record_auth_failure", "create_api_key", "update_api_key", "delete_api_key", "open_session",
      "revoke_session", "revoke_key", "revoke_certificate", "record_crl_loaded",
      "create_permission_group", "update_permission_group", "delete_permission_group",
      "set_resource_permissions", "record_access_denied", "put_policy",
      "change_policy_attachment", "push_manifest", "remove_template_content",
      "request_distribution", "report_distribution", "clear_distributions",
      "mirror_registry_templates", "store_file", "delete_file"};
  static_assert(std::size(kNames) == std::variant_size_v<Command>);
  return kNames[command.index()];
}

std::optional<fb::VmState> VmStateFromName(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(fb::VmState::MAX); ++i) {
    if (name == fb::EnumNameVmState(static_cast<fb::VmState>(i))) {
      return static_cast<fb::VmState>(i);
    }
  }
  return std::nullopt;
}

std::optional<fb::NodeState> NodeStateFromName(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(fb::NodeState::MAX); ++i) {
    if (name == fb::EnumNameNodeState(static_cast<fb::NodeState>(i))) {
      return static_cast<fb::NodeState>(i);
    }
  }
  return std::nullopt;
}

Result<std::unique_ptr<Engine>> Engine::Open(EngineOptions options) {
  CL_ASSERT(options.log != nullptr);
  CL_ASSERT(options.clock != nullptr);
  CL_ASSERT(options.rng != nullptr);
  CL_ASSERT(options.poster != nullptr);
  reducers::RebuildStats recovery;
  Result<reducers::Views> views =
      reducers::Rebuild(*options.log, options.snapshots, UINT64_MAX, &recovery);
  if (!views.ok()) {
    return views.status();
  }
  return std::unique_ptr<Engine>(
      new Engine(std::move(options), std::move(views.value()), std::move(recovery)));
}

Engine::Engine(EngineOptions options, reducers::Views views, reducers::RebuildStats recovery)
    : options_(std::move(options)), views_(std::move(views)), recovery_(std::move(recovery)) {
  snapshot_seq_ = recovery_.snapshot_seq;
}

Engine::~Engine() {
  // Invariant: the owner drained every command (a pending callback would outlive the engine).
  CL_ASSERT(Idle());
  WaitSnapshot();
}

EngineStats Engine::stats() const {
  EngineStats stats = stats_;
  stats.commands_inflight = inflight_.size();
  stats.commands_queued = queue_.size();
  return stats;
}

void Engine::Submit(const Principal& principal, Command command, std::string request_id,
                    ReplyCallback done) {
  CL_ASSERT(done != nullptr);
  if (options_.authorizer != nullptr && !options_.authorizer->Allow(principal, command)) {
    stats_.commands_rejected++;
    Reply reply;
    reply.rejection = Rejection::kForbidden;
    reply.message = "the principal may not " + std::string(CommandName(command));
    done(std::move(reply));
    return;
  }
  auto pending = std::make_unique<Pending>();
  pending->principal = principal;
  pending->keys = ConflictKeys(command);
  pending->command = std::move(command);
  pending->request_id = std::move(request_id);
  pending->done = std::move(done);
  // FIFO: a command never overtakes a queued one (a queued command may share its keys).
  if (queue_.empty() && CanStart(*pending)) {
    Start(std::move(pending));
    return;
  }
  if (queue_.size() >= kQueuedCommandsMax) {
    stats_.commands_rejected++;
    Reply reply;
    reply.rejection = Rejection::kOverloaded;
    reply.message = "too many commands waiting; retry later";
    pending->done(std::move(reply));
    return;
  }
  queue_.push_back(std::move(pending));
}

bool Engine::CanStart(const Pending& pending) const {
  if (inflight_events_ >= kInflightEventsMax) {
    return false;
  }
  return std::none_of(pending.keys.begin(), pending.keys.end(),
                      [this](const std::string& key) { return busy_keys_.contains(key); });
}

void Engine::Start(std::unique_ptr<Pending> pending) {
  Plan plan = Validate(*pending);
  if (plan.rejection != Rejection::kNone || plan.drafts.empty()) {
    Reply reply;
    reply.rejection = plan.rejection;
    reply.message = std::move(plan.message);
    reply.ids = std::move(plan.ids);
    (plan.rejection == Rejection::kNone ? stats_.commands_accepted : stats_.commands_rejected)++;
    pending->done(std::move(reply));
    return;
  }
  for (const std::string& key : pending->keys) {
    busy_keys_[key]++;
  }
  pending->events = plan.drafts.size();
  pending->ids = std::move(plan.ids);
  inflight_events_ += pending->events;
  const uint64_t token = next_token_++;
  inflight_.emplace(token, std::move(pending));
  Poster* poster = options_.poster;
  options_.log->AppendAsync(std::move(plan.drafts),
                            [this, poster, token](Result<log::AppendResult> result) {
                              // Writer thread: hand the result to the engine thread at once.
                              poster->Post([this, token, result = std::move(result)]() mutable {
                                OnAppended(token, std::move(result));
                              });
                            });
}

void Engine::OnAppended(uint64_t token, Result<log::AppendResult> result) {
  auto it = inflight_.find(token);
  CL_ASSERT(it != inflight_.end());
  std::unique_ptr<Pending> pending = std::move(it->second);
  inflight_.erase(it);
  for (const std::string& key : pending->keys) {
    auto busy = busy_keys_.find(key);
    CL_ASSERT(busy != busy_keys_.end());
    if (--busy->second == 0) {
      busy_keys_.erase(busy);
    }
  }
  CL_ASSERT(inflight_events_ >= pending->events);
  inflight_events_ -= pending->events;

  Reply reply;
  log::Hash hash_last{};
  if (result.ok()) {
    reply.seq_first = result.value().seq_first;
    reply.seq_last = result.value().seq_last;
    // Pair assertion: the log gave this batch exactly as many seqs as events were sent.
    CL_ASSERT(reply.seq_last - reply.seq_first + 1 == pending->events);
    reply.status = ApplyDurable(reply.seq_first, reply.seq_last, &hash_last);
  } else {
    reply.status = result.status();
  }
  if (reply.status.ok()) {
    reply.ids = std::move(pending->ids);
    stats_.commands_accepted++;
  } else {
    stats_.commands_failed++;
  }
  const bool applied = reply.status.ok();
  pending->done(std::move(reply));
  if (result.ok()) {
    MaybeSnapshot(hash_last);
  }
  if (applied && on_applied_) {
    on_applied_();
  }
  Pump();
}

Status Engine::ApplyDurable(uint64_t seq_first, uint64_t seq_last, log::Hash* hash_last) {
  // Invariant: the engine is the log's only writer and acknowledgements arrive in commit order,
  // so every batch starts right after the last applied event.
  CL_ASSERT(seq_first == views_.seq + 1);
  Status status = options_.log->Scan(seq_first, seq_last, [&](const log::EventView& view) {
    reducers::Apply(&views_, view.seq, view.hash, *view.event);
    *hash_last = view.hash;
    stats_.events_applied++;
    return true;
  });
  // A batch the log just acknowledged cannot be read back: the store is broken under us.
  CL_ASSERT(status.ok());
  CL_ASSERT(views_.seq == seq_last);
  return status;
}

void Engine::Pump() {
  while (!queue_.empty() && CanStart(*queue_.front())) {
    std::unique_ptr<Pending> pending = std::move(queue_.front());
    queue_.pop_front();
    Start(std::move(pending));
  }
}

void Engine::MaybeSnapshot(const log::Hash& hash) {
  if (options_.snapshots == nullptr || options_.snapshot_interval_events == 0) {
    return;
  }
  if (views_.seq - snapshot_seq_ < options_.snapshot_interval_events) {
    return;
  }
  if (snapshot_write_.valid() &&
      snapshot_write_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return;  // The previous one is still being written; try again after the next batch.
  }
  WaitSnapshot();
  snapshot_seq_ = views_.seq;
  log::SnapshotStore* store = options_.snapshots;
  const uint64_t seq = views_.seq;
  snapshot_write_ = std::async(std::launch::async,
                               [store, seq, hash, bytes = reducers::EncodeViews(views_)]() {
                                 return store->Put(seq, hash, {reinterpret_cast<const uint8_t*>(
                                                                   bytes.data()),
                                                               bytes.size()});
                               });
}

void Engine::WaitSnapshot() {
  if (!snapshot_write_.valid()) {
    return;
  }
  Status status = snapshot_write_.get();
  if (status.ok()) {
    stats_.snapshots_written++;
  } else {
    stats_.snapshots_failed++;  // Not fatal: startup falls back to an older one or the log.
  }
}

Status Engine::Close() {
  CL_ASSERT(Idle());
  WaitSnapshot();
  if (options_.snapshots == nullptr || views_.seq == snapshot_seq_ || views_.seq == 0) {
    return Status::Ok();
  }
  log::Hash hash{};
  Status status = options_.log->Scan(views_.seq, views_.seq, [&](const log::EventView& view) {
    hash = view.hash;
    return true;
  });
  if (!status.ok()) {
    return status;
  }
  const std::string bytes = reducers::EncodeViews(views_);
  status = options_.snapshots->Put(
      views_.seq, hash, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  if (status.ok()) {
    snapshot_seq_ = views_.seq;
    stats_.snapshots_written++;
  }
  return status;
}

int64_t Engine::StampTime() {
  // The log's times never go backwards, even when the wall clock does.
  last_time_ns_ = std::max(last_time_ns_, options_.clock->NowNs());
  return last_time_ns_;
}

}  // namespace cloister::engine
