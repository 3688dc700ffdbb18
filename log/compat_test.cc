// Schema evolution: logs written by an older build keep reading with the current schema.
// log/testdata/events_v0.fbs is a frozen older schema; log/testdata/v0_log.hex holds a log an
// older build wrote with it, byte for byte. See docs/log_format.md, "Evolution rules".
#include <lmdb.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "log/draft.h"
#include "log/events_generated.h"
#include "log/log.h"
#include "log/testdata/events_v0_generated.h"
#include "tests/testutil.h"

namespace cloister::log {
namespace {

using cloister::testing::TempDir;

std::vector<uint8_t> FromHex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

void PutBe(uint64_t v, uint8_t* out, int n) {
  for (int i = n - 1; i >= 0; i--) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}

// Loads the fixture into a new LMDB environment exactly as the v0 writer laid it out.
void LoadFixture(const std::string& dir) {
  std::ifstream in("log/testdata/v0_log.hex");
  REQUIRE(in.good());
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == 0);
  REQUIRE(mdb_env_set_maxdbs(env, 4) == 0);
  REQUIRE(mdb_env_open(env, dir.c_str(), 0, 0600) == 0);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
  MDB_dbi events = 0;
  MDB_dbi meta = 0;
  REQUIRE(mdb_dbi_open(txn, "events", MDB_CREATE, &events) == 0);
  REQUIRE(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta) == 0);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string first;
    fields >> first;
    if (first == "head") {
      uint64_t seq = 0;
      std::string hash_hex;
      fields >> seq >> hash_hex;
      uint8_t seq_bytes[8];
      PutBe(seq, seq_bytes, 8);
      uint8_t version[4];
      PutBe(1, version, 4);
      std::vector<uint8_t> hash = FromHex(hash_hex);
      REQUIRE(hash.size() == 32);
      MDB_val k1{14, const_cast<char*>("format_version")}, v1{4, version};
      MDB_val k2{8, const_cast<char*>("head_seq")}, v2{8, seq_bytes};
      MDB_val k3{9, const_cast<char*>("head_hash")}, v3{32, hash.data()};
      REQUIRE(mdb_put(txn, meta, &k1, &v1, 0) == 0);
      REQUIRE(mdb_put(txn, meta, &k2, &v2, 0) == 0);
      REQUIRE(mdb_put(txn, meta, &k3, &v3, 0) == 0);
      continue;
    }
    std::string hex;
    fields >> hex;
    std::vector<uint8_t> bytes = FromHex(hex);
    uint8_t key_bytes[8];
    PutBe(std::stoull(first), key_bytes, 8);
    MDB_val key{8, key_bytes};
    MDB_val value{bytes.size(), bytes.data()};
    REQUIRE(mdb_put(txn, events, &key, &value, MDB_APPEND) == 0);
  }
  REQUIRE(mdb_txn_commit(txn) == 0);
  mdb_env_close(env);
}

TEST_CASE("a log written with the frozen v0 schema verifies and decodes with the current one") {
  TempDir tmp;
  LoadFixture(tmp.path());
  Options options;
  options.dir = tmp.path();
  options.read_only = true;
  auto log = Log::Open(options);
  INFO((log.ok() ? std::string() : log.status().ToString()));
  REQUIRE(log.ok());
  auto head = (*log)->VerifyAll();
  REQUIRE(head.ok());
  CHECK(head->seq == 6);
  int config = 0;
  int joined = 0;
  int updated = 0;
  Status s = (*log)->Scan(1, UINT64_MAX, [&](const EventView& view) {
    const fb::Event* e = view.event;
    CHECK(e->actor()->kind() == fb::ActorKind::Root);
    CHECK(e->actor()->groups() == nullptr);  // Added after v0: absent, not garbage.
    CHECK(e->request_id()->str() == "v0-req-" + std::to_string(view.seq));
    switch (e->payload_type()) {
      case fb::Payload::ConfigChanged:
        config++;
        CHECK(e->payload_as_ConfigChanged()->key()->str() == "ANKA_ENABLE_AUTH");
        CHECK(e->payload_as_ConfigChanged()->value()->str() == "true");
        CHECK(e->payload_as_ConfigChanged()->value_digest() == nullptr);
        break;
      case fb::Payload::NodeJoined: {
        joined++;
        const fb::NodeJoined* n = e->payload_as_NodeJoined();
        CHECK(n->node_id()->str() == "node-a");
        CHECK(n->ram_mb() == 16384);
        CHECK(n->cpu_count() == 8);
        CHECK(n->vcpu_count() == 0);    // Default of a field v0 did not have.
        CHECK(n->arch() == nullptr);
        CHECK(n->groups() == nullptr);
        break;
      }
      case fb::Payload::NodeUpdated:
        updated++;
        CHECK(e->payload_as_NodeUpdated()->node_name()->str() == "mac-mini-one");
        CHECK(e->payload_as_NodeUpdated()->state() == fb::NodeState::Offline);
        break;
      default:
        FAIL("unexpected payload type");
    }
    return true;
  });
  REQUIRE(s.ok());
  CHECK(config == 2);
  CHECK(joined == 2);
  CHECK(updated == 2);
}

TEST_CASE("the current writer appends to a v0 log and the chain stays whole") {
  TempDir tmp;
  LoadFixture(tmp.path());
  Options options;
  options.dir = tmp.path();
  auto log = Log::Open(options);
  REQUIRE(log.ok());
  DraftBuilder builder;
  auto payload = fb::CreateNodeGroupCreatedDirect(builder.fbb(), "g1", "builders");
  Envelope envelope;
  envelope.time_ns = 1'700'000'000'000'000'000;
  envelope.actor_kind = fb::ActorKind::IngressCertificate;  // A kind v0 did not know.
  envelope.actor_id = "ci-bot";
  std::vector<Draft> drafts;
  drafts.push_back(builder.Finish(envelope, payload));
  auto appended = (*log)->Append(std::move(drafts));
  REQUIRE(appended.ok());
  CHECK(appended->seq_first == 7);
  auto head = (*log)->VerifyAll();
  REQUIRE(head.ok());
  CHECK(head->seq == 7);
}

TEST_CASE("v0 drafts are accepted by the current writer") {
  TempDir tmp;
  Options options;
  options.dir = tmp.path();
  auto log = Log::Open(options);
  REQUIRE(log.ok());
  flatbuffers::FlatBufferBuilder fbb;
  auto payload = fb_v0::CreateNodeJoinedDirect(fbb, "node-z", "old", "192.0.2.1", 4, 8192);
  auto actor = fb_v0::CreateActorDirect(fbb, fb_v0::ActorKind::System, "scheduler");
  fb_v0::Digest zero;
  fbb.ForceDefaults(true);
  fb_v0::EventBuilder event(fbb);
  event.add_seq(0);
  event.add_actor(actor);
  event.add_prev_hash(&zero);
  event.add_payload_type(fb_v0::Payload::NodeJoined);
  event.add_payload(payload.Union());
  fb_v0::FinishEventBuffer(fbb, event.Finish());
  std::vector<Draft> drafts;
  drafts.push_back(Draft{fbb.Release()});
  REQUIRE((*log)->Append(std::move(drafts)).ok());
  bool seen = false;
  REQUIRE((*log)->Scan(1, 1, [&](const EventView& view) {
    seen = view.event->payload_as_NodeJoined()->node_id()->str() == "node-z";
    return true;
  }).ok());
  CHECK(seen);
}

TEST_CASE("an event with a payload type from a newer build is read, not rejected") {
  TempDir tmp;
  Options options;
  options.dir = tmp.path();
  auto log = Log::Open(options);
  REQUIRE(log.ok());
  // A newer build appended union member 200; this build has no table for it. The verifier
  // accepts unknown union members (it cannot check what it does not know), and readers see
  // the type number.
  flatbuffers::FlatBufferBuilder fbb;
  auto future = fb::CreateNodeRemovedDirect(fbb, "from-the-future");
  auto actor = fb::CreateActorDirect(fbb, fb::ActorKind::System, "x");
  fb::Digest zero;
  fbb.ForceDefaults(true);
  fb::EventBuilder event(fbb);
  event.add_seq(0);
  event.add_actor(actor);
  event.add_prev_hash(&zero);
  event.add_payload_type(static_cast<fb::Payload>(200));
  event.add_payload(future.Union());
  fb::FinishEventBuffer(fbb, event.Finish());
  std::vector<Draft> drafts;
  drafts.push_back(Draft{fbb.Release()});
  REQUIRE((*log)->Append(std::move(drafts)).ok());
  int type = -1;
  REQUIRE((*log)->Scan(1, 1, [&](const EventView& view) {
    type = static_cast<int>(view.event->payload_type());
    return true;
  }).ok());
  CHECK(type == 200);
  CHECK((*log)->VerifyAll().ok());
}

}  // namespace
}  // namespace cloister::log
