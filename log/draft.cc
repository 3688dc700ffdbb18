#include "log/draft.h"

#include <string>

namespace cloister::log {

Draft DraftBuilder::FinishUnion(const Envelope& envelope, fb::Payload type,
                                flatbuffers::Offset<void> payload) {
  CL_ASSERT(type != fb::Payload::NONE);
  std::vector<flatbuffers::Offset<flatbuffers::String>> groups;
  groups.reserve(envelope.actor_groups.size());
  for (const std::string& group : envelope.actor_groups) {
    groups.push_back(fbb_.CreateString(group));
  }
  auto actor_id = fbb_.CreateString(envelope.actor_id.data(), envelope.actor_id.size());
  auto actor_groups = groups.empty() ? 0 : fbb_.CreateVector(groups);
  auto actor = fb::CreateActor(fbb_, envelope.actor_kind, actor_id, actor_groups);
  auto request_id = fbb_.CreateString(envelope.request_id.data(), envelope.request_id.size());
  const fb::Digest zero_hash;

  // seq and prev_hash must be stored even though they are zero now: the writer overwrites them
  // in place, which FlatBuffers can only do for fields that are present.
  fbb_.ForceDefaults(true);
  fb::EventBuilder event(fbb_);
  event.add_seq(0);
  event.add_time_ns(envelope.time_ns);
  event.add_actor(actor);
  event.add_request_id(request_id);
  event.add_prev_hash(&zero_hash);
  event.add_payload_type(type);
  event.add_payload(payload);
  auto root = event.Finish();
  fbb_.ForceDefaults(false);
  fb::FinishEventBuffer(fbb_, root);
  return Draft{fbb_.Release()};
}

const fb::Event* VerifyEvent(std::span<const uint8_t> bytes) {
  if (bytes.size() < 8 || bytes.size() > kEventBytesMax) {
    return nullptr;
  }
  // The verifier bounds every offset by the value's own length, so no read leaves the value.
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), /*max_depth=*/64,
                                 /*max_tables=*/100000);
  if (!fb::VerifyEventBuffer(verifier)) {
    return nullptr;
  }
  const fb::Event* event = fb::GetEvent(bytes.data());
  if (event->prev_hash() == nullptr) {
    return nullptr;
  }
  return event;
}

Status CheckDraft(std::span<const uint8_t> bytes) {
  if (bytes.size() > kEventBytesMax) {
    return Status::InvalidArgument("event of " + std::to_string(bytes.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(kEventBytesMax));
  }
  const fb::Event* event = VerifyEvent(bytes);
  if (event == nullptr) {
    return Status::InvalidArgument("draft is not a valid event buffer");
  }
  if (event->payload_type() == fb::Payload::NONE) {
    return Status::InvalidArgument("draft has no payload");
  }
  // The writer overwrites seq in place, which works only if the field is stored.
  // Generated tables derive privately from flatbuffers::Table; the layout is the same object.
  if (!reinterpret_cast<const flatbuffers::Table*>(event)->CheckField(fb::Event::VT_SEQ)) {
    return Status::InvalidArgument("draft does not store seq (build it with DraftBuilder)");
  }
  return Status::Ok();
}

}  // namespace cloister::log
