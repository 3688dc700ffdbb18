// Drafts: events as producers build them, before the writer gives them a seq and a prev_hash.
//
// A producer builds the payload in DraftBuilder::fbb(), then calls Finish() with the envelope
// fields it owns (time, actor, request id). The result is a complete, verifiable Event
// FlatBuffer whose seq is 0 and prev_hash is zero; both are stored (not defaulted away) so that
// the writer can fill them in place without re-encoding. Encoding therefore happens on the
// producer's thread, outside the writer's critical section.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "log/events_generated.h"
#include "log/status.h"

namespace cloister::log {

// The largest encoded event the log accepts.
inline constexpr size_t kEventBytesMax = 1 << 20;

// The envelope fields a producer owns. The views must stay valid until Finish() returns.
struct Envelope {
  int64_t time_ns = 0;
  fb::ActorKind actor_kind = fb::ActorKind::Unknown;
  std::string_view actor_id;
  std::span<const std::string> actor_groups;
  std::string_view request_id;
};

// A finished Event buffer owned by the producer until handed to Log::Append.
struct Draft {
  flatbuffers::DetachedBuffer buffer;

  std::span<const uint8_t> bytes() const { return {buffer.data(), buffer.size()}; }
};

// Builds one draft. Not thread-safe; cheap to create per event.
class DraftBuilder {
 public:
  DraftBuilder() : fbb_(256) {}

  flatbuffers::FlatBufferBuilder& fbb() { return fbb_; }

  // Wraps a payload built in fbb() in an envelope and finishes the buffer.
  template <typename T>
  Draft Finish(const Envelope& envelope, flatbuffers::Offset<T> payload) {
    return FinishUnion(envelope, fb::PayloadTraits<T>::enum_value, payload.Union());
  }

  Draft FinishUnion(const Envelope& envelope, fb::Payload type, flatbuffers::Offset<void> payload);

 private:
  flatbuffers::FlatBufferBuilder fbb_;
};

// Checks that bytes form a draft the writer can accept: a verifiable Event with the "CLEV"
// identifier, a payload, seq and prev_hash present, and at most kEventBytesMax bytes.
Status CheckDraft(std::span<const uint8_t> bytes);

// Verifies an Event buffer read back from the store (FlatBuffers Verifier, identifier, payload
// present). Returns a pointer into bytes, or nullptr when the bytes are not a valid Event.
const fb::Event* VerifyEvent(std::span<const uint8_t> bytes);

}  // namespace cloister::log
