// EventFormatter: one verified event as a JSON line or a CSV row, generically from the schema.
//
// JSON line (one per event, '\n'-terminated, keys in this order):
//   {"seq":7,"time":"2026-11-24T12:00:00.123456789Z",
//    "actor":{"kind":"ApiKey","id":"ci-runner","groups":["ci"]},"request_id":"req-0001",
//    "type":"VmInstanceRequested","payload":{...every field of the payload table...},
//    "hash":"<64 hex: hash(seq)>"}
// CSV row: seq,time,actor_kind,actor_id,request_id,type,payload,hash with payload as the same
// JSON object in one quoted cell (RFC 4180; rows end in '\n'; header: kCsvHeader).
//
// Payloads are not formatted by hand-written code. The formatter walks each payload table with the
// minireflect type tables generated into log/events_generated.h (field names, types, nesting),
// and takes scalar defaults from the binary schema compiled from the same log/events.fbs. So a
// new payload type or field appears in the export with no change here. Value mapping:
//  * integers and floats as JSON numbers (NaN and infinities as the strings "NaN", "Infinity",
//    "-Infinity"); bools as true/false; enums as their names (an unknown value as its number);
//  * strings as JSON strings (ill-formed UTF-8 becomes U+FFFD; control characters are escaped);
//  * a struct holding only a byte array (Digest) as lower-case hex; other structs and tables as
//    objects; vectors and fixed arrays as arrays; a nested union as its member's object, after
//    its "<name>_type" field, which holds the member name;
//  * an absent scalar field as its schema default, an absent string, table, struct or vector as
//    null, and a deprecated field not at all.
// A payload type number this build does not know (written by a newer build) is exported as
// "type":"Unknown(N)" with "payload":{}; an absent payload likewise has "payload":{}.
//
// Thread-safety: an EventFormatter is used by one thread at a time; the schema plans it reads are
// built once per process and shared read-only.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "log/events_generated.h"
#include "log/hash.h"
#include "log/status.h"
#include "tools/text_format.h"

namespace cloister::tools {

inline constexpr std::string_view kCsvHeader =
    "seq,time,actor_kind,actor_id,request_id,type,payload,hash\n";

struct SchemaPlans;  // Per-type output plans; defined in event_format.cc.

class EventFormatter {
 public:
  EventFormatter();
  EventFormatter(const EventFormatter&) = delete;
  EventFormatter& operator=(const EventFormatter&) = delete;

  // Appends the JSON line of an event that passed log::VerifyEvent (as every event a Log::Scan
  // callback sees has). hash is hash(seq).
  void WriteJsonLine(uint64_t seq, const fb::Event& event, const log::Hash& hash, OutBuffer* out);

  // Appends the CSV row of such an event.
  void WriteCsvRow(uint64_t seq, const fb::Event& event, const log::Hash& hash, OutBuffer* out);

  // Appends just the payload object, e.g. {"node_id":"n1",...}, or {} for an unknown type.
  void WritePayloadJson(const fb::Event& event, OutBuffer* out);

 private:
  const SchemaPlans& plans_;
  Rfc3339Writer time_writer_;
  OutBuffer scratch_;  // The payload JSON of a CSV row, before it is quoted into its cell.
};

// The payload type name of a union type number: "NodeJoined", or "Unknown(N)".
std::string PayloadTypeName(uint8_t type);

// The names of every payload type this build knows, in type-number order (NONE excluded).
std::span<const char* const> PayloadTypeNames();

// The type number of a payload type name, matched case-insensitively and ignoring '_' and '-', so
// NodeJoined, nodejoined and node_joined all match. Errors: kInvalidArgument listing the names.
Result<uint8_t> ParsePayloadType(std::string_view name);

}  // namespace cloister::tools
