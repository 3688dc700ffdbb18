// Tests of audit export and verify against real logs in temporary directories. Exported JSON is
// parsed back with nlohmann-json (in the tests only) and compared field by field with what was
// appended. Each TEST_CASE names one edge case.
#include "tools/audit.h"


#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/minireflect.h"
#include "log/draft.h"
#include "log/events_generated.h"
#include "log/hash.h"
#include "log/log.h"
#include "log/status.h"
#include "log/store_testing.h"
#include "tests/testutil.h"
#include "tools/event_format.h"
#include "tools/text_format.h"

namespace cloister::tools {
namespace {

using cloister::testing::TempDir;
using nlohmann::json;

constexpr int64_t kTime0 = 1'795'003'200'000'000'000;  // 2026-11-18T12:00:00Z.
constexpr int64_t kSecond = 1'000'000'000;

// ---- Helpers ------------------------------------------------------------------------------------

json ParseJson(const std::string& text) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  INFO(text);
  REQUIRE(!parsed.is_discarded());
  return parsed;
}

std::vector<json> JsonLines(const std::string& text) {
  std::vector<json> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    REQUIRE(end != std::string::npos);  // Every line, the last included, ends in '\n'.
    lines.push_back(ParseJson(text.substr(start, end - start)));
    start = end + 1;
  }
  return lines;
}

// An RFC 4180 reader: quoted cells may hold commas, doubled quotes and line breaks.
std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string cell;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); i++) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        cell.push_back('"');
        i++;
      } else if (c == '"') {
        quoted = false;
      } else {
        cell.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(cell));
      cell.clear();
    } else if (c == '\n') {
      row.push_back(std::move(cell));
      cell.clear();
      rows.push_back(std::move(row));
      row.clear();
    } else {
      cell.push_back(c);
    }
  }
  REQUIRE(!quoted);
  REQUIRE(cell.empty());
  REQUIRE(row.empty());
  return rows;
}

struct DraftSpec {
  int64_t time_ns = kTime0;
  fb::ActorKind actor_kind = fb::ActorKind::ApiKey;
  std::string actor_id = "ci-runner";
  std::vector<std::string> actor_groups = {"ci", "admins"};
  std::string request_id = "req-1";
};

log::Envelope EnvelopeOf(const DraftSpec& spec) {
  log::Envelope envelope;
  envelope.time_ns = spec.time_ns;
  envelope.actor_kind = spec.actor_kind;
  envelope.actor_id = spec.actor_id;
  envelope.actor_groups = spec.actor_groups;
  envelope.request_id = spec.request_id;
  return envelope;
}

log::Draft NodeRemovedDraft(const DraftSpec& spec, const std::string& node_id = "node-1") {
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  auto node = fbb.CreateString(node_id);  // The std::string overload keeps embedded NULs.
  auto payload = fb::CreateNodeRemoved(fbb, node, fbb.CreateString("decommissioned"));
  return builder.Finish(EnvelopeOf(spec), payload);
}

log::Draft ConfigChangedDraft(const DraftSpec& spec, const std::string& key = "k") {
  log::DraftBuilder builder;
  auto payload = fb::CreateConfigChangedDirect(builder.fbb(), key.c_str(), "v");
  return builder.Finish(EnvelopeOf(spec), payload);
}

// A log in a temporary directory, open for writing.
class TestLog {
 public:
  TestLog() {
    log::Options options;
    options.dir = dir_.Sub("data");
    auto log = log::Log::Open(options);
    INFO((log.ok() ? std::string() : log.status().ToString()));
    REQUIRE(log.ok());
    log_ = std::move(log).value();
  }

  void Append(std::vector<log::Draft> drafts) {
    auto result = log_->Append(std::move(drafts));
    INFO((result.ok() ? std::string() : result.status().ToString()));
    REQUIRE(result.ok());
  }

  // Closes the writer so that raw LMDB may edit the store.
  void Close() { log_.reset(); }

  std::unique_ptr<log::Log> OpenReadOnly() const {
    log::Options options;
    options.dir = dir_.Sub("data");
    options.read_only = true;
    auto log = log::Log::Open(options);
    INFO((log.ok() ? std::string() : log.status().ToString()));
    REQUIRE(log.ok());
    return std::move(log).value();
  }

  std::string data_dir() const { return dir_.Sub("data"); }
  const log::Log& log() const { return *log_; }

 private:
  TempDir dir_;
  std::unique_ptr<log::Log> log_;
};

std::string ExportText(const log::Log& log, const ExportOptions& options = {},
                       ExportStats* stats = nullptr) {
  std::string text;
  StringSink sink(&text);
  Status s = Export(log, options, &sink, stats);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return text;
}

std::vector<uint64_t> Seqs(const std::vector<json>& lines) {
  std::vector<uint64_t> seqs;
  for (const json& line : lines) {
    seqs.push_back(line["seq"].get<uint64_t>());
  }
  return seqs;
}

ExportOptions Parsed(const ExportArgs& args) {
  Result<ExportOptions> options = ParseExportArgs(args);
  INFO((options.ok() ? std::string() : options.status().ToString()));
  REQUIRE(options.ok());
  return *options;
}

// ---- A generic payload builder: every field of every payload type, from the type tables ---------

// Adds field i of table to the table being built: scalars and structs with a distinctive value
// (a negative number for signed fields, one past int64 for u64, the last name for enums), strings,
// vectors and tables by the offset built for them. Sets *expected to what export must write.
void AddField(flatbuffers::FlatBufferBuilder& fbb, const flatbuffers::TypeTable* table, size_t i,
              flatbuffers::uoffset_t offset, json* expected) {
  const flatbuffers::TypeCode code = table->type_codes[i];
  const auto field = flatbuffers::FieldIndexToOffset(static_cast<flatbuffers::voffset_t>(i));
  const flatbuffers::TypeTable* ref =
      code.sequence_ref >= 0 ? table->type_refs[code.sequence_ref]() : nullptr;
  const auto n = static_cast<int64_t>(i);
  json& out = *expected;
  if (code.is_repeating) {  // A vector of scalars: built first, like strings.
    fbb.AddOffset(field, flatbuffers::Offset<void>(offset));
    return;
  }
  // AddElement skips a value equal to its default argument; each default here differs.
  switch (code.base_type) {
    case flatbuffers::ET_BOOL:
      fbb.AddElement<uint8_t>(field, 1, 0);
      out = true;
      break;
    case flatbuffers::ET_CHAR:
      fbb.AddElement<int8_t>(field, -100 + n, 1);
      out = -100 + n;
      break;
    case flatbuffers::ET_UCHAR:
      if (ref != nullptr) {
        CHECK(ref->values == nullptr);  // Enums numbered 0..n-1: the value is the index.
        const auto last = static_cast<uint8_t>(ref->num_elems - 1);
        fbb.AddElement<uint8_t>(field, last, last + 1);
        out = ref->names[last];
      } else {
        fbb.AddElement<uint8_t>(field, 100 + n, 0);
        out = 100 + n;
      }
      break;
    case flatbuffers::ET_SHORT:
      fbb.AddElement<int16_t>(field, -30000 + n, 0);
      out = -30000 + n;
      break;
    case flatbuffers::ET_USHORT:
      fbb.AddElement<uint16_t>(field, 60000 + n, 0);
      out = 60000 + n;
      break;
    case flatbuffers::ET_INT:
      fbb.AddElement<int32_t>(field, -100000 - n, 0);
      out = -100000 - n;
      break;
    case flatbuffers::ET_UINT:
      fbb.AddElement<uint32_t>(field, 3'000'000'000u + i, 0);
      out = 3'000'000'000u + i;
      break;
    case flatbuffers::ET_LONG:
      fbb.AddElement<int64_t>(field, -(int64_t{1} << 40) - n, 0);
      out = -(int64_t{1} << 40) - n;
      break;
    case flatbuffers::ET_ULONG:
      fbb.AddElement<uint64_t>(field, (uint64_t{1} << 63) + i, 0);
      out = (uint64_t{1} << 63) + i;
      break;
    case flatbuffers::ET_FLOAT:
      fbb.AddElement<float>(field, 0.25f + static_cast<float>(n), 0);
      out = 0.25 + static_cast<double>(n);
      break;
    case flatbuffers::ET_DOUBLE:
      fbb.AddElement<double>(field, 0.125 + static_cast<double>(n), 0);
      out = 0.125 + static_cast<double>(n);
      break;
    case flatbuffers::ET_SEQUENCE:
      if (ref->st == flatbuffers::ST_STRUCT) {
        REQUIRE(ref == fb::DigestTypeTable());  // Extend for other structs.
        log::Hash bytes;
        for (size_t b = 0; b < bytes.size(); b++) {
          bytes[b] = static_cast<uint8_t>(i * 31 + b * 7);
        }
        const fb::Digest digest(flatbuffers::span<const uint8_t, 32>(bytes.data(), bytes.size()));
        fbb.AddStruct(field, &digest);
        out = log::HashHex(bytes);
      } else {
        fbb.AddOffset(field, flatbuffers::Offset<void>(offset));
      }
      break;
    default:  // Strings and vectors.
      fbb.AddOffset(field, flatbuffers::Offset<void>(offset));
      break;
  }
}

// Builds a table of the given type in fbb with every field set to a distinctive value (a
// negative number for signed fields, one past int64 for u64, the last name for enums, a string
// naming the field), and sets *expected to the JSON object export must write for it. Fails the
// test for a field kind this builder does not know yet, so that a schema change that needs
// new export behaviour also extends this test.
flatbuffers::uoffset_t BuildFullTable(flatbuffers::FlatBufferBuilder& fbb,
                                      const flatbuffers::TypeTable* table, const std::string& label,
                                      json* expected) {
  std::vector<flatbuffers::uoffset_t> offsets(table->num_elems, 0);
  *expected = json::object();
  // First everything a table field refers to: FlatBuffers builds children before parents.
  for (size_t i = 0; i < table->num_elems; i++) {
    const flatbuffers::TypeCode code = table->type_codes[i];
    const std::string name = table->names[i];
    const flatbuffers::TypeTable* ref =
        code.sequence_ref >= 0 ? table->type_refs[code.sequence_ref]() : nullptr;
    const std::string text = label + "." + name + " \"caf\xC3\xA9\"\n";
    if (code.base_type == flatbuffers::ET_STRING && !code.is_repeating) {
      offsets[i] = fbb.CreateString(text).o;
      (*expected)[name] = text;
    } else if (code.base_type == flatbuffers::ET_STRING) {
      const std::vector<std::string> strings = {text + "0", text + "1"};
      offsets[i] = fbb.CreateVectorOfStrings(strings).o;
      (*expected)[name] = strings;
    } else if (code.base_type == flatbuffers::ET_SEQUENCE && ref->st == flatbuffers::ST_TABLE) {
      if (code.is_repeating) {
        std::vector<flatbuffers::Offset<void>> elements;
        json array = json::array();
        for (int e = 0; e < 2; e++) {
          json element;
          elements.push_back(flatbuffers::Offset<void>(
              BuildFullTable(fbb, ref, label + "." + name + std::to_string(e), &element)));
          array.push_back(element);
        }
        offsets[i] = fbb.CreateVector(elements).o;
        (*expected)[name] = array;
      } else {
        json element;
        offsets[i] = BuildFullTable(fbb, ref, label + "." + name, &element);
        (*expected)[name] = element;
      }
    } else if (code.is_repeating && code.base_type == flatbuffers::ET_UCHAR && ref == nullptr) {
      // Bytes (a signed policy event): every value from 0 to 255 must come out as written.
      std::vector<uint8_t> bytes(256);
      json values = json::array();
      for (size_t b = 0; b < bytes.size(); b++) {
        bytes[b] = static_cast<uint8_t>(b + i);
        values.push_back(bytes[b]);
      }
      offsets[i] = fbb.CreateVector(bytes).o;
      (*expected)[name] = values;
    } else if (code.is_repeating || code.base_type == flatbuffers::ET_UTYPE ||
               (code.base_type == flatbuffers::ET_SEQUENCE && ref->st == flatbuffers::ST_UNION)) {
      FAIL("extend BuildFullTable for field " << label << "." << name);
    }
  }
  const flatbuffers::uoffset_t start = fbb.StartTable();
  for (size_t i = 0; i < table->num_elems; i++) {
    AddField(fbb, table, i, offsets[i], &(*expected)[table->names[i]]);
  }
  return fbb.EndTable(start);
}

// One draft per payload type, every field set; expected[type] is the payload JSON.
std::vector<log::Draft> EveryPayloadType(std::vector<json>* expected) {
  const flatbuffers::TypeTable* payload = fb::PayloadTypeTable();
  std::vector<log::Draft> drafts;
  expected->assign(payload->num_elems, json());
  for (size_t type = 1; type < payload->num_elems; type++) {
    const flatbuffers::TypeTable* table =
        payload->type_refs[payload->type_codes[type].sequence_ref]();
    log::DraftBuilder builder;
    const flatbuffers::uoffset_t offset =
        BuildFullTable(builder.fbb(), table, payload->names[type], &(*expected)[type]);
    DraftSpec spec;
    spec.time_ns = kTime0 + static_cast<int64_t>(type) * kSecond;
    spec.request_id = "req-" + std::to_string(type);
    drafts.push_back(builder.FinishUnion(EnvelopeOf(spec), static_cast<fb::Payload>(type),
                                         flatbuffers::Offset<void>(offset)));
  }
  return drafts;
}

// ---- Export: every field ------------------------------------------------------------------------

TEST_CASE("export of every payload type round-trips every field as JSON lines") {
  TestLog t;
  std::vector<json> expected;
  t.Append(EveryPayloadType(&expected));
  const std::vector<json> lines = JsonLines(ExportText(t.log()));
  const flatbuffers::TypeTable* payload = fb::PayloadTypeTable();
  REQUIRE(lines.size() == payload->num_elems - 1);
  for (size_t type = 1; type < payload->num_elems; type++) {
    const json& line = lines[type - 1];
    INFO(line.dump());
    CHECK(line["type"] == payload->names[type]);
    CHECK(line["payload"] == expected[type]);
  }
}

TEST_CASE("export of every payload type round-trips every field as CSV") {
  TestLog t;
  std::vector<json> expected;
  t.Append(EveryPayloadType(&expected));
  ExportOptions options;
  options.format = ExportFormat::kCsv;
  const auto rows = ParseCsv(ExportText(t.log(), options));
  const flatbuffers::TypeTable* payload = fb::PayloadTypeTable();
  REQUIRE(rows.size() == payload->num_elems);  // Header plus one row per type.
  CHECK(rows[0] == std::vector<std::string>{"seq", "time", "actor_kind", "actor_id", "request_id",
                                            "type", "payload", "hash"});
  for (size_t type = 1; type < payload->num_elems; type++) {
    const std::vector<std::string>& row = rows[type];
    REQUIRE(row.size() == 8);
    CHECK(row[0] == std::to_string(type));
    CHECK(row[2] == "ApiKey");
    CHECK(row[3] == "ci-runner");
    CHECK(row[4] == "req-" + std::to_string(type));
    CHECK(row[5] == payload->names[type]);
    CHECK(ParseJson(row[6]) == expected[type]);
    CHECK(row[7].size() == 64);
  }
}

TEST_CASE("absent fields export their schema defaults, or null when they have none") {
  TestLog t;
  std::vector<log::Draft> drafts;
  {
    log::DraftBuilder builder;
    auto payload = fb::CreateVmInstanceRequestedDirect(builder.fbb(), "inst-1");
    drafts.push_back(builder.Finish(EnvelopeOf({}), payload));
  }
  {
    log::DraftBuilder builder;
    auto payload = fb::CreateApiKeyUpdatedDirect(builder.fbb(), "key-1");
    drafts.push_back(builder.Finish(EnvelopeOf({}), payload));
  }
  t.Append(std::move(drafts));
  const std::vector<json> lines = JsonLines(ExportText(t.log()));
  REQUIRE(lines.size() == 2);
  const json& vm = lines[0]["payload"];
  CHECK(vm["instance_id"] == "inst-1");
  CHECK(vm["version"] == -1);     // Schema default -1, not 0.
  CHECK(vm["priority"] == 1000);  // Schema default 1000.
  CHECK(vm["vcpu"] == 0);
  CHECK(vm["script_monitoring"] == false);
  CHECK(vm["name"].is_null());
  CHECK(vm["port_forwarding_override"].is_null());
  CHECK(vm.size() == fb::VmInstanceRequestedTypeTable()->num_elems);  // Every field is present.
  const json& key = lines[1]["payload"];
  CHECK(key["enabled"] == true);  // Schema default true.
  CHECK(key["groups"].is_null());
}

TEST_CASE(
    "nested tables, vectors of tables, enums and digests export as objects, arrays, names and "
    "hex") {
  TestLog t;
  log::DraftBuilder builder;
  auto& fbb = builder.fbb();
  std::vector<flatbuffers::Offset<fb::PortForward>> ports = {
      fb::CreatePortForwardDirect(fbb, 22, 10022, "tcp", "ssh"),
      fb::CreatePortForwardDirect(fbb, 5900, 15900, "tcp", "vnc")};
  auto vm = fb::CreateVmInstanceRequestedDirect(fbb, "inst-2", "vmid", "tag", 3, nullptr, nullptr,
                                                nullptr, nullptr, nullptr, 1000, nullptr, 0, false,
                                                0, 0, nullptr, 2, 4096, &ports);
  std::vector<log::Draft> drafts;
  drafts.push_back(builder.Finish(EnvelopeOf({}), vm));
  {
    log::DraftBuilder b;
    auto payload = fb::CreateVmInstanceStateChangedDirect(b.fbb(), "inst-2", fb::VmState::Pushing,
                                                          "pushing", 0.5f);
    drafts.push_back(b.Finish(EnvelopeOf({}), payload));
  }
  {
    log::DraftBuilder b;
    log::Hash bytes;
    for (size_t i = 0; i < bytes.size(); i++) {
      bytes[i] = static_cast<uint8_t>(0xF0 + i);
    }
    const fb::Digest digest(flatbuffers::span<const uint8_t, 32>(bytes.data(), 32));
    auto payload = fb::CreateSessionClosedDirect(b.fbb(), &digest, "logout");
    drafts.push_back(b.Finish(EnvelopeOf({}), payload));
  }
  t.Append(std::move(drafts));
  const std::vector<json> lines = JsonLines(ExportText(t.log()));
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["payload"]["port_forwarding_override"] ==
        json::parse(R"([{"guest_port":22,"host_port":10022,"protocol":"tcp","name":"ssh"},
                        {"guest_port":5900,"host_port":15900,"protocol":"tcp","name":"vnc"}])"));
  CHECK(lines[1]["payload"]["state"] == "Pushing");
  CHECK(lines[1]["payload"]["progress"] == 0.5);
  const std::string hex = lines[2]["payload"]["session_digest"];
  CHECK(hex == "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f");
}

TEST_CASE("envelope: seq, RFC 3339 time, actor with groups, request id and the chain hash") {
  TestLog t;
  DraftSpec spec;
  spec.time_ns = kTime0 + 123'456'789;
  std::vector<log::Draft> drafts;
  drafts.push_back(NodeRemovedDraft(spec));
  spec.actor_kind = fb::ActorKind::Root;
  spec.actor_id = "root";
  spec.actor_groups = {};
  drafts.push_back(NodeRemovedDraft(spec));
  t.Append(std::move(drafts));
  const std::vector<json> lines = JsonLines(ExportText(t.log()));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["seq"] == 1);
  CHECK(lines[0]["time"] == "2026-11-18T12:00:00.123456789Z");
  CHECK(lines[0]["actor"] ==
        json::parse(R"({"kind":"ApiKey","id":"ci-runner","groups":["ci","admins"]})"));
  CHECK(lines[0]["request_id"] == "req-1");
  CHECK(lines[0]["type"] == "NodeRemoved");
  CHECK(lines[1]["actor"]["kind"] == "Root");
  CHECK(lines[1]["actor"]["groups"].is_null());
  // The hash of the last line is the head hash: the chain hash at that seq.
  CHECK(lines[1]["hash"] == log::HashHex(t.log().head().hash));
  // Keys come in the documented order.
  std::vector<std::string> keys;
  for (const auto& item : lines[0].items()) {
    keys.push_back(item.key());
  }
  std::sort(keys.begin(), keys.end());
  CHECK(keys ==
        std::vector<std::string>{"actor", "hash", "payload", "request_id", "seq", "time", "type"});
}

// ---- Filters ------------------------------------------------------------------------------------

// Ten events: seq i has time kTime0 + (i % 2 ? i : 20 - i) seconds (not monotonic), actor
// "user-<i % 3>", and type NodeRemoved for odd seqs, ConfigChanged for even ones.
TestLog* TenEvents(TestLog* t) {
  std::vector<log::Draft> drafts;
  for (int i = 1; i <= 10; i++) {
    DraftSpec spec;
    spec.time_ns = kTime0 + (i % 2 == 1 ? i : 20 - i) * kSecond;
    spec.actor_id = "user-" + std::to_string(i % 3);
    drafts.push_back(i % 2 == 1 ? NodeRemovedDraft(spec) : ConfigChangedDraft(spec));
  }
  t->Append(std::move(drafts));
  return t;
}

TEST_CASE("filter by seq: --from and --to are inclusive and --to is capped at the head") {
  TestLog t;
  TenEvents(&t);
  ExportArgs args;
  args.from = "3";
  args.to = "5";
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) == std::vector<uint64_t>{3, 4, 5});
  args.from = "9";
  args.to = "1000";
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) == std::vector<uint64_t>{9, 10});
  args.from = "0";  // The same as 1.
  args.to = "1";
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) == std::vector<uint64_t>{1});
  args.from = "11";
  args.to.reset();
  CHECK(ExportText(t.log(), Parsed(args)).empty());
  args.from.reset();
  args.to = "0";  // Alone, an empty range rather than an error.
  CHECK(ExportText(t.log(), Parsed(args)).empty());
}

TEST_CASE("filter by time: --since and --until are inclusive and work on non-monotonic times") {
  TestLog t;
  TenEvents(&t);
  ExportArgs args;
  args.since = "2026-11-18T12:00:05Z";       // Times: 1,18,3,16,5,14,7,12,9,10 seconds.
  args.until = "2026-11-18T13:00:12+01:00";  // = 12:00:12Z.
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) ==
        std::vector<uint64_t>{5, 7, 8, 9, 10});
  args.since = "2026-11-18T12:00:05.000000001Z";  // Just after seq 5.
  args.until.reset();
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) ==
        std::vector<uint64_t>{2, 4, 6, 7, 8, 9, 10});
}

TEST_CASE("filter by type: one type, several types, any spelling") {
  TestLog t;
  TenEvents(&t);
  ExportArgs args;
  args.types = {"node_removed"};
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) == std::vector<uint64_t>{1, 3, 5, 7, 9});
  args.types = {"ConfigChanged"};
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) ==
        std::vector<uint64_t>{2, 4, 6, 8, 10});
  args.types = {"configchanged", "NODEREMOVED"};
  CHECK(JsonLines(ExportText(t.log(), Parsed(args))).size() == 10);
  args.types = {"AccessDenied"};
  CHECK(ExportText(t.log(), Parsed(args)).empty());
}

TEST_CASE("filter by actor id matches exactly") {
  TestLog t;
  TenEvents(&t);
  ExportArgs args;
  args.actor = "user-1";
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args)))) == std::vector<uint64_t>{1, 4, 7, 10});
  args.actor = "user-";
  CHECK(ExportText(t.log(), Parsed(args)).empty());
}

TEST_CASE("filters combine with AND") {
  TestLog t;
  TenEvents(&t);
  ExportArgs args;
  args.from = "2";
  args.to = "9";
  args.types = {"node_removed"};
  args.actor = "user-1";
  args.since = "2026-11-18T12:00:05Z";
  ExportStats stats;
  CHECK(Seqs(JsonLines(ExportText(t.log(), Parsed(args), &stats))) == std::vector<uint64_t>{7});
  CHECK(stats.events_scanned == 8);  // Seqs 2..9: the seq range narrows the scan itself.
  CHECK(stats.events_exported == 1);
}

TEST_CASE("ParseExportArgs rejects bad values with a message naming the option") {
  struct Case {
    ExportArgs args;
    std::string message;
  };
  std::vector<Case> cases(9);
  cases[0].args.from = "abc";
  cases[0].message = "--from: invalid number 'abc'";
  cases[1].args.to = "-1";
  cases[1].message = "--to: invalid number '-1'";
  cases[2].args.from = "5";
  cases[2].args.to = "3";
  cases[2].message = "--from 5 is after --to 3";
  cases[3].args.since = "yesterday";
  cases[3].message = "--since: invalid time 'yesterday'";
  cases[4].args.until = "2026-11-18T12:00:00";
  cases[4].message = "--until: invalid time";
  cases[5].args.since = "2026-11-18T12:00:01Z";
  cases[5].args.until = "2026-11-18T12:00:00Z";
  cases[5].message = "--since 2026-11-18T12:00:01Z is after --until 2026-11-18T12:00:00Z";
  cases[6].args.types = {"NodeJoined", "bogus"};
  cases[6].message = "--type: unknown event type 'bogus'; valid types: ConfigChanged, NodeJoined";
  cases[7].args.format = "xml";
  cases[7].message = "--format: unknown format 'xml'; expected jsonl or csv";
  cases[8].args.format = "JSONL";
  cases[8].message = "--format: unknown format 'JSONL'";
  for (const Case& c : cases) {
    Result<ExportOptions> options = ParseExportArgs(c.args);
    REQUIRE(!options.ok());
    CHECK(options.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(options.status().message(), Catch::StartsWith(c.message));
  }
}

// ---- Hostile content ----------------------------------------------------------------------------

TEST_CASE("nasty strings in envelope and payload give valid JSON lines and CSV that read back") {
  const std::vector<std::string> nasty = {
      "quote\" backslash\\ slash/",
      std::string("nul\0byte", 8),
      "\x01\x02\x1f\x7f controls",
      "new\nline, comma\r\n",
      "bad utf-8 \xC0\xAF \xED\xA0\x80 \xFF",
      "\xF0\x9F\x98\x80 emoji \xE2\x80\xA8 line separator",
      " leading and trailing spaces ",
      "=HYPERLINK(\"http://x\")",
  };
  TestLog t;
  std::vector<log::Draft> drafts;
  for (const std::string& s : nasty) {
    DraftSpec spec;
    spec.actor_id = s;
    spec.actor_groups = {s};
    spec.request_id = s;
    drafts.push_back(NodeRemovedDraft(spec, s));
  }
  t.Append(std::move(drafts));
  const std::vector<json> lines = JsonLines(ExportText(t.log()));
  REQUIRE(lines.size() == nasty.size());
  ExportOptions csv;
  csv.format = ExportFormat::kCsv;
  const auto rows = ParseCsv(ExportText(t.log(), csv));
  REQUIRE(rows.size() == nasty.size() + 1);
  for (size_t i = 0; i < nasty.size(); i++) {
    // Well-formed UTF-8 comes back byte for byte; ill-formed bytes become U+FFFD.
    const std::string decoded = ParseJson(JsonString(nasty[i])).get<std::string>();
    INFO(decoded);
    CHECK(lines[i]["actor"]["id"] == decoded);
    CHECK(lines[i]["actor"]["groups"][0] == decoded);
    CHECK(lines[i]["request_id"] == decoded);
    CHECK(lines[i]["payload"]["node_id"] == decoded);
    REQUIRE(rows[i + 1].size() == 8);
    CHECK(ParseJson(rows[i + 1][6])["node_id"] == decoded);
    if (nasty[i].find('\0') == std::string::npos) {
      CHECK(rows[i + 1][3] == decoded);  // CSV replaces NUL too; otherwise the same text.
      CHECK(rows[i + 1][4] == decoded);
    }
  }
}

TEST_CASE("a union type number from a newer build exports as Unknown(N) with an empty payload") {
  TestLog t;
  std::vector<log::Draft> drafts;
  drafts.push_back(NodeRemovedDraft({}));
  {
    // A newer build's payload: some table under a type number this build does not know.
    log::DraftBuilder builder;
    auto table = fb::CreateNodeRemovedDirect(builder.fbb(), "from-the-future", "?");
    drafts.push_back(
        builder.FinishUnion(EnvelopeOf({}), static_cast<fb::Payload>(200), table.Union()));
  }
  drafts.push_back(NodeRemovedDraft({}));
  t.Append(std::move(drafts));
  const std::vector<json> lines = JsonLines(ExportText(t.log()));
  REQUIRE(lines.size() == 3);
  CHECK(lines[1]["type"] == "Unknown(200)");
  CHECK(lines[1]["payload"] == json::object());
  CHECK(lines[1]["actor"]["id"] == "ci-runner");
  CHECK(lines[2]["type"] == "NodeRemoved");
  ExportOptions csv;
  csv.format = ExportFormat::kCsv;
  const auto rows = ParseCsv(ExportText(t.log(), csv));
  REQUIRE(rows.size() == 4);
  CHECK(rows[2][5] == "Unknown(200)");
  CHECK(rows[2][6] == "{}");
}

// ---- Edges of the log and the sink --------------------------------------------------------------

TEST_CASE("an empty log exports nothing as JSON lines and only the header as CSV") {
  TestLog t;
  CHECK(ExportText(t.log()).empty());
  ExportOptions csv;
  csv.format = ExportFormat::kCsv;
  CHECK(ExportText(t.log(), csv) == kCsvHeader);
  Result<log::Head> head = Verify(t.log());
  REQUIRE(head.ok());
  CHECK(VerifyOkLine(*head) == "ok: head seq 0 hash " + std::string(64, '0'));
}

class FailingSink final : public Sink {
 public:
  Status Write(std::string_view bytes) override {
    writes++;
    return Status::IoError("write: Broken pipe");
  }
  int writes = 0;
};

TEST_CASE("export stops at the sink's first error and returns it") {
  TestLog t;
  std::vector<log::Draft> drafts;
  for (int i = 0; i < 5000; i++) {
    drafts.push_back(NodeRemovedDraft({}, std::string(300, 'n')));
  }
  t.Append(std::move(drafts));
  FailingSink sink;
  ExportStats stats;
  Status s = Export(t.log(), {}, &sink, &stats);
  CHECK(s.code() == StatusCode::kIoError);
  CHECK(sink.writes == 1);
  CHECK(stats.events_exported < 5000);  // The scan stopped early.
}

// Replaces the stored bytes of event seq (log/store_testing.h) while no process has it open.
// garble: the root offset points outside the buffer. Otherwise: still a valid FlatBuffer whose
// hash changes.
void EditStoredEvent(const std::string& dir, uint64_t seq, bool garble) {
  Status s = log::testing::RewriteStoredEvent(dir, seq, [&](std::string* bytes) {
    if (garble) {
      std::memset(bytes->data(), 0xEE, 16);
      return;
    }
    const size_t at = bytes->find("req-");
    REQUIRE(at != std::string::npos);
    (*bytes)[at] = 'X';
  });
  INFO(s.ToString());
  REQUIRE(s.ok());
}

// Fills t with count events and closes it, so the store can be edited.
void AppendNodeRemovedAndClose(TestLog* t, int count) {
  std::vector<log::Draft> drafts;
  for (int i = 0; i < count; i++) {
    drafts.push_back(NodeRemovedDraft({}));
  }
  t->Append(std::move(drafts));
  t->Close();
}

TEST_CASE("export of a corrupted log writes the events before the bad one, then names its seq") {
  TestLog t;
  AppendNodeRemovedAndClose(&t, 200);
  EditStoredEvent(t.data_dir(), 20, /*garble=*/false);
  std::unique_ptr<log::Log> log = t.OpenReadOnly();  // The tail (last 64) still verifies.
  std::string text;
  StringSink sink(&text);
  Status s = Export(*log, {}, &sink);
  CHECK(s.code() == StatusCode::kCorruption);
  CHECK_THAT(s.message(), Catch::StartsWith("event 21: hash chain broken"));
  // Event 20 itself parses and links to 19; the edit shows in the link from 21.
  CHECK(JsonLines(text).size() == 20);
  Result<log::Head> head = Verify(*log);
  REQUIRE(!head.ok());
  CHECK(head.status().code() == StatusCode::kCorruption);
  CHECK_THAT(head.status().message(), Catch::StartsWith("event 21: "));
}

TEST_CASE("verify names the seq of an event that fails FlatBuffers verification") {
  TestLog t;
  AppendNodeRemovedAndClose(&t, 200);
  EditStoredEvent(t.data_dir(), 33, /*garble=*/true);
  std::unique_ptr<log::Log> log = t.OpenReadOnly();
  Result<log::Head> head = Verify(*log);
  REQUIRE(!head.ok());
  CHECK_THAT(head.status().message(),
             Catch::StartsWith("event 33: fails FlatBuffers verification"));
}

}  // namespace
}  // namespace cloister::tools
