// Writes a small event log with the frozen v0 schema and prints it as text: one line per event,
// "<seq> <hex bytes>", then "head <seq> <hex hash>". The output is checked in as v0_log.hex; a
// test loads it into LMDB byte for byte and reads it with the current schema. The hash chain is
// computed here exactly as the writer does, so the fixture is a log an older build could write.
#include <cstdio>
#include <string>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "log/hash.h"
#include "log/testdata/events_v0_generated.h"

namespace v0 = cloister::fb_v0;

namespace {

std::vector<uint8_t> Build(uint64_t seq, const cloister::log::Hash& prev,
                           v0::Payload type, int which) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<void> payload;
  if (which == 0) {
    payload = v0::CreateConfigChangedDirect(fbb, "ANKA_ENABLE_AUTH", "true").Union();
  } else if (which == 1) {
    payload = v0::CreateNodeJoinedDirect(fbb, "node-a", "mac-mini-1", "192.0.2.10", 8, 16384)
                  .Union();
  } else {
    payload = v0::CreateNodeUpdatedDirect(fbb, "node-a", "mac-mini-one").Union();
  }
  auto actor = v0::CreateActorDirect(fbb, v0::ActorKind::Root, "root");
  auto request_id = fbb.CreateString("v0-req-" + std::to_string(seq));
  v0::Digest digest;
  for (size_t i = 0; i < prev.size(); i++) {
    digest.mutable_bytes()->Mutate(i, prev[i]);
  }
  fbb.ForceDefaults(true);
  v0::EventBuilder event(fbb);
  event.add_seq(seq);
  event.add_time_ns(1'600'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000);
  event.add_actor(actor);
  event.add_request_id(request_id);
  event.add_prev_hash(&digest);
  event.add_payload_type(type);
  event.add_payload(payload);
  v0::FinishEventBuffer(fbb, event.Finish());
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

}  // namespace

int main() {
  const v0::Payload types[] = {v0::Payload::ConfigChanged, v0::Payload::NodeJoined,
                               v0::Payload::NodeUpdated};
  cloister::log::ChainHasher hasher;
  cloister::log::Hash hash{};
  uint64_t seq = 0;
  for (int i = 0; i < 6; i++) {
    seq++;
    std::vector<uint8_t> bytes = Build(seq, hash, types[i % 3], i % 3);
    hash = hasher.Next(hash, bytes);
    std::printf("%llu ", static_cast<unsigned long long>(seq));
    for (uint8_t b : bytes) {
      std::printf("%02x", b);
    }
    std::printf("\n");
  }
  std::printf("head %llu %s\n", static_cast<unsigned long long>(seq),
              cloister::log::HashHex(hash).c_str());
  return 0;
}
