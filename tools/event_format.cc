#include "tools/event_format.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/minireflect.h"
#include "flatbuffers/reflection_generated.h"
#include "log/assert.h"
#include "tools/events_bfbs.h"

namespace cloister::tools {

// ---- Plans: what to write for each type, computed once from the schema --------------------------

namespace {

// How one value is read and written. Scalars carry their width and signedness.
enum class Kind : uint8_t {
  kBool,
  kInt8,
  kUInt8,
  kInt16,
  kUInt16,
  kInt32,
  kUInt32,
  kInt64,
  kUInt64,
  kFloat,
  kDouble,
  kString,
  kTable,
  kStruct,
  kHexStruct,  // A struct that is one fixed array of bytes (Digest): written as hex.
  kUnionType,  // The "<name>_type" field of a union: written as the member name.
  kUnion,
  kUnknown,  // A type minireflect cannot describe here (e.g. a vector of unions).
};

bool IsScalar(Kind kind) { return kind <= Kind::kDouble; }

// JSON literals of an enum's names ("\"Started\""), looked up by value.
struct EnumPlan {
  std::vector<std::string> dense;                       // Index = value, when values are 0..n-1.
  std::vector<std::pair<int64_t, std::string>> sparse;  // Otherwise.

  const std::string* Find(int64_t value) const {
    if (!sparse.empty()) {
      for (const auto& [v, name] : sparse) {
        if (v == value) {
          return &name;
        }
      }
      return nullptr;
    }
    if (value >= 0 && static_cast<uint64_t>(value) < dense.size()) {
      return &dense[static_cast<size_t>(value)];
    }
    return nullptr;
  }
};

struct TypePlan;

struct FieldPlan {
  std::string key;  // ,"name": (no comma before the first written field).
  Kind kind = Kind::kUnknown;
  bool repeated = false;                // A vector (in a table) or a fixed array (in a struct).
  uint16_t voffset = 0;                 // Tables: the vtable offset of the field.
  uint32_t struct_offset = 0;           // Structs: byte offset of the field in the struct.
  uint32_t array_length = 0;            // Struct arrays: element count.
  uint16_t union_type_voffset = 0;      // kUnion: vtable offset of the "<name>_type" field.
  const EnumPlan* enum_plan = nullptr;  // Enum-typed scalars and kUnionType.
  const TypePlan* ref = nullptr;        // kTable, kStruct, kHexStruct, kUnion.
  int64_t default_integer = 0;          // Absent integer, bool and enum fields.
  double default_real = 0;              // Absent float fields.
  size_t scalar_room = 0;               // Most bytes a scalar value or null takes.
};

struct TypePlan {
  flatbuffers::SequenceType st = flatbuffers::ST_TABLE;
  std::vector<FieldPlan> fields;
  uint32_t struct_bytes = 0;             // Structs: inline size.
  uint32_t hex_bytes = 0;                // kHexStruct: the byte array's length.
  std::vector<const TypePlan*> members;  // Unions: member table plan by type number, or nullptr.
  EnumPlan member_names;                 // Unions: member names by type number.
};

size_t InlineBytes(Kind kind, const TypePlan* ref) {
  switch (kind) {
    case Kind::kBool:
    case Kind::kInt8:
    case Kind::kUInt8:
    case Kind::kUnionType:
      return 1;
    case Kind::kInt16:
    case Kind::kUInt16:
      return 2;
    case Kind::kInt32:
    case Kind::kUInt32:
    case Kind::kFloat:
    case Kind::kString:
    case Kind::kTable:
    case Kind::kUnion:
      return 4;
    case Kind::kInt64:
    case Kind::kUInt64:
    case Kind::kDouble:
      return 8;
    case Kind::kStruct:
    case Kind::kHexStruct:
      return ref->struct_bytes;
    case Kind::kUnknown:
      return 0;
  }
  return 0;
}

Kind ScalarKind(flatbuffers::ElementaryType type) {
  switch (type) {
    case flatbuffers::ET_BOOL:
      return Kind::kBool;
    case flatbuffers::ET_CHAR:
      return Kind::kInt8;
    case flatbuffers::ET_UCHAR:
      return Kind::kUInt8;
    case flatbuffers::ET_SHORT:
      return Kind::kInt16;
    case flatbuffers::ET_USHORT:
      return Kind::kUInt16;
    case flatbuffers::ET_INT:
      return Kind::kInt32;
    case flatbuffers::ET_UINT:
      return Kind::kUInt32;
    case flatbuffers::ET_LONG:
      return Kind::kInt64;
    case flatbuffers::ET_ULONG:
      return Kind::kUInt64;
    case flatbuffers::ET_FLOAT:
      return Kind::kFloat;
    case flatbuffers::ET_DOUBLE:
      return Kind::kDouble;
    case flatbuffers::ET_UTYPE:
      return Kind::kUnionType;
    case flatbuffers::ET_STRING:
      return Kind::kString;
    default:
      return Kind::kUnknown;
  }
}

}  // namespace

// Plans for every type reachable from Event, keyed by minireflect type table.
struct SchemaPlans {
  std::unordered_map<const flatbuffers::TypeTable*, std::unique_ptr<TypePlan>> types;
  std::unordered_map<const flatbuffers::TypeTable*, std::unique_ptr<EnumPlan>> enums;
  const TypePlan* actor = nullptr;
  const TypePlan* payload = nullptr;  // The Payload union.
  const EnumPlan* actor_kind = nullptr;
  // Per payload type number: ,"type":"NodeJoined","payload": (known types only).
  std::vector<std::string> payload_prefix;
  std::vector<const char*> payload_names;  // Type number order, NONE excluded.
};

namespace {

// Builds plans by walking the minireflect tables and the binary schema side by side.
class PlanBuilder {
 public:
  explicit PlanBuilder(SchemaPlans* plans) : plans_(plans) {
    const std::span<const uint8_t> bfbs = EventsBfbs();
    flatbuffers::Verifier verifier(bfbs.data(), bfbs.size());
    // The binary schema is compiled in from our own events.fbs: failing here is a build bug.
    CL_ASSERT(reflection::VerifySchemaBuffer(verifier));
    schema_ = reflection::GetSchema(bfbs.data());
    CL_ASSERT(schema_->root_table() != nullptr);
  }

  void Build() {
    Table(fb::EventTypeTable(), schema_->root_table());  // Plans every type reachable from it.
    plans_->actor = Find(fb::ActorTypeTable());
    plans_->payload = Find(fb::PayloadTypeTable());
    plans_->actor_kind = Enum(fb::ActorKindTypeTable());
    CL_ASSERT(plans_->actor != nullptr);
    CL_ASSERT(plans_->payload != nullptr);
    const flatbuffers::TypeTable* payload = fb::PayloadTypeTable();
    plans_->payload_prefix.resize(payload->num_elems);
    for (size_t i = 1; i < payload->num_elems; i++) {
      // Invariant: flatc writes no values array for a union numbered 0..n-1, as Payload is.
      CL_ASSERT(payload->values == nullptr);
      plans_->payload_prefix[i] =
          std::string(",\"type\":\"") + payload->names[i] + "\",\"payload\":";
      plans_->payload_names.push_back(payload->names[i]);
    }
  }

 private:
  // A linear search rather than Vector::LookupByKey, whose inlined strcmp trips GCC 12's
  // -Wstringop-overread false positive in sanitizer builds (-O1). Runs once per field.
  static const reflection::Field* FindField(const reflection::Object* object,
                                            std::string_view name) {
    for (const reflection::Field* field : *object->fields()) {
      if (field->name()->string_view() == name) {
        return field;
      }
    }
    return nullptr;
  }

  const TypePlan* Find(const flatbuffers::TypeTable* table) const {
    auto it = plans_->types.find(table);
    return it == plans_->types.end() ? nullptr : it->second.get();
  }

  const EnumPlan* Enum(const flatbuffers::TypeTable* table) {
    auto& slot = plans_->enums[table];
    if (slot != nullptr) {
      return slot.get();
    }
    slot = std::make_unique<EnumPlan>();
    for (size_t i = 0; i < table->num_elems; i++) {
      std::string literal = JsonString(table->names[i]);
      if (table->values == nullptr) {
        slot->dense.push_back(std::move(literal));
      } else {
        slot->sparse.emplace_back(table->values[i], std::move(literal));
      }
    }
    return slot.get();
  }

  // object: the binary schema's description of the same table (for defaults and deprecation).
  const TypePlan* Table(const flatbuffers::TypeTable* table, const reflection::Object* object) {
    if (const TypePlan* found = Find(table)) {
      return found;
    }
    CL_ASSERT(table->st == flatbuffers::ST_TABLE);
    CL_ASSERT(object != nullptr);
    CL_ASSERT(!object->is_struct());
    auto owned = std::make_unique<TypePlan>();
    TypePlan* plan = owned.get();
    plans_->types.emplace(table, std::move(owned));  // Before the fields: schemas may recurse.
    plan->st = flatbuffers::ST_TABLE;
    for (size_t i = 0; i < table->num_elems; i++) {
      const reflection::Field* field = FindField(object, table->names[i]);
      // Invariant: both descriptions come from the same events.fbs, field for field.
      CL_ASSERT(field != nullptr);
      CL_ASSERT(field->id() == i);
      if (field->deprecated()) {
        continue;
      }
      FieldPlan f = Field(table, i, field->type());
      f.voffset = flatbuffers::FieldIndexToOffset(static_cast<flatbuffers::voffset_t>(i));
      f.default_integer = field->default_integer();
      f.default_real = field->default_real();
      if (f.kind == Kind::kUnion) {
        CL_ASSERT(i > 0);  // flatc puts the "<name>_type" field just before the union.
        f.union_type_voffset =
            flatbuffers::FieldIndexToOffset(static_cast<flatbuffers::voffset_t>(i - 1));
      }
      f.key = (plan->fields.empty() ? "" : ",") + JsonString(table->names[i]) + ":";
      plan->fields.push_back(std::move(f));
    }
    return plan;
  }

  const TypePlan* Struct(const flatbuffers::TypeTable* table) {
    if (const TypePlan* found = Find(table)) {
      return found;
    }
    CL_ASSERT(table->st == flatbuffers::ST_STRUCT);
    auto owned = std::make_unique<TypePlan>();
    TypePlan* plan = owned.get();
    plans_->types.emplace(table, std::move(owned));
    plan->st = flatbuffers::ST_STRUCT;
    plan->struct_bytes = static_cast<uint32_t>(table->values[table->num_elems]);
    size_t array_index = 0;
    for (size_t i = 0; i < table->num_elems; i++) {
      FieldPlan f = Field(table, i, nullptr);
      f.struct_offset = static_cast<uint32_t>(table->values[i]);
      if (f.repeated) {
        f.array_length = static_cast<uint32_t>(table->array_sizes[array_index++]);
      }
      f.key = (i == 0 ? "" : ",") + JsonString(table->names[i]) + ":";
      plan->fields.push_back(std::move(f));
    }
    const bool one_byte_array = plan->fields.size() == 1 && plan->fields[0].repeated &&
                                plan->fields[0].kind == Kind::kUInt8 &&
                                plan->fields[0].enum_plan == nullptr;
    if (one_byte_array) {
      plan->hex_bytes = plan->fields[0].array_length;
    }
    return plan;
  }

  const TypePlan* Union(const flatbuffers::TypeTable* table, const reflection::Enum* bfbs_enum) {
    if (const TypePlan* found = Find(table)) {
      return found;
    }
    CL_ASSERT(table->st == flatbuffers::ST_UNION);
    CL_ASSERT(bfbs_enum != nullptr);
    auto owned = std::make_unique<TypePlan>();
    TypePlan* plan = owned.get();
    plans_->types.emplace(table, std::move(owned));
    plan->st = flatbuffers::ST_UNION;
    plan->member_names = *Enum(table);
    int64_t max_value = 0;
    for (size_t i = 0; i < table->num_elems; i++) {
      max_value = std::max<int64_t>(max_value, table->values ? table->values[i] : int64_t(i));
    }
    plan->members.assign(static_cast<size_t>(max_value) + 1, nullptr);
    for (size_t i = 0; i < table->num_elems; i++) {
      const flatbuffers::TypeCode code = table->type_codes[i];
      const int64_t value = table->values ? table->values[i] : int64_t(i);
      if (code.base_type != flatbuffers::ET_SEQUENCE || code.sequence_ref < 0) {
        continue;  // NONE, or a string member: written as {} (no such member in our schema).
      }
      const flatbuffers::TypeTable* member = table->type_refs[code.sequence_ref]();
      const reflection::EnumVal* val = bfbs_enum->values()->LookupByKey(value);
      CL_ASSERT(val != nullptr);
      CL_ASSERT(val->union_type() != nullptr);
      const reflection::Object* object = schema_->objects()->Get(val->union_type()->index());
      plan->members[static_cast<size_t>(value)] = Table(member, object);
    }
    return plan;
  }

  // The kind, nesting and references of field i of table. type is the binary schema's type of
  // the field (tables only; structs have no defaults and need none).
  FieldPlan Field(const flatbuffers::TypeTable* table, size_t i, const reflection::Type* type) {
    const flatbuffers::TypeCode code = table->type_codes[i];
    const auto base = static_cast<flatbuffers::ElementaryType>(code.base_type);
    const flatbuffers::TypeTable* ref =
        code.sequence_ref >= 0 ? table->type_refs[code.sequence_ref]() : nullptr;
    FieldPlan f;
    f.repeated = code.is_repeating != 0;
    f.scalar_room = kRealBytesMax;
    if (base != flatbuffers::ET_SEQUENCE) {
      f.kind = ScalarKind(base);
      if (ref != nullptr) {
        f.enum_plan = Enum(ref);  // An enum's values, or a union's member names for _type.
        for (const std::string& name : f.enum_plan->dense) {
          f.scalar_room = std::max(f.scalar_room, name.size());
        }
        for (const auto& [value, name] : f.enum_plan->sparse) {
          f.scalar_room = std::max(f.scalar_room, name.size());
        }
      }
      return f;
    }
    CL_ASSERT(ref != nullptr);
    switch (ref->st) {
      case flatbuffers::ST_TABLE:
        CL_ASSERT(type != nullptr);
        f.kind = Kind::kTable;
        f.ref = Table(ref, schema_->objects()->Get(type->index()));
        break;
      case flatbuffers::ST_STRUCT:
        f.ref = Struct(ref);
        f.kind = f.ref->hex_bytes > 0 ? Kind::kHexStruct : Kind::kStruct;
        break;
      case flatbuffers::ST_UNION:
        CL_ASSERT(type != nullptr);
        // A vector of unions needs its parallel type vector; minireflect's names do not say
        // which field that is reliably, so such a field is written as null.
        f.kind = f.repeated ? Kind::kUnknown : Kind::kUnion;
        f.ref = Union(ref, schema_->enums()->Get(type->index()));
        break;
      case flatbuffers::ST_ENUM:
        CL_ASSERT(false);  // Enums are scalars: handled above.
    }
    return f;
  }

  SchemaPlans* plans_;
  const reflection::Schema* schema_ = nullptr;
};

const SchemaPlans& Plans() {
  static const SchemaPlans* plans = [] {
    auto* built = new SchemaPlans();  // Never freed: shared by every formatter until exit.
    PlanBuilder(built).Build();
    return built;
  }();
  return *plans;
}

// ---- Writing values -----------------------------------------------------------------------------

template <typename T>
T Read(const uint8_t* p) {
  return flatbuffers::ReadScalar<T>(p);
}

// Writes an integer, or its enum name when the field has one for the value.
inline char* WriteInteger(char* p, const FieldPlan& f, int64_t value, bool is_unsigned) {
  if (f.enum_plan != nullptr) {
    if (const std::string* name = f.enum_plan->Find(value)) {
      std::memcpy(p, name->data(), name->size());
      return p + name->size();
    }
  }
  return is_unsigned ? WriteU64(p, static_cast<uint64_t>(value)) : WriteI64(p, value);
}

// Writes the scalar at v; room for f.scalar_room bytes must be ensured.
char* WriteScalar(char* p, const FieldPlan& f, const uint8_t* v) {
  switch (f.kind) {
    case Kind::kBool:
      if (Read<uint8_t>(v) != 0) {
        std::memcpy(p, "true", 4);
        return p + 4;
      }
      std::memcpy(p, "false", 5);
      return p + 5;
    case Kind::kInt8:
      return WriteInteger(p, f, Read<int8_t>(v), false);
    case Kind::kUInt8:
      return WriteInteger(p, f, Read<uint8_t>(v), true);
    case Kind::kUnionType:
      return WriteInteger(p, f, Read<uint8_t>(v), true);
    case Kind::kInt16:
      return WriteInteger(p, f, Read<int16_t>(v), false);
    case Kind::kUInt16:
      return WriteInteger(p, f, Read<uint16_t>(v), true);
    case Kind::kInt32:
      return WriteInteger(p, f, Read<int32_t>(v), false);
    case Kind::kUInt32:
      return WriteInteger(p, f, Read<uint32_t>(v), true);
    case Kind::kInt64:
      return WriteInteger(p, f, Read<int64_t>(v), false);
    case Kind::kUInt64:
      if (f.enum_plan == nullptr) {
        return WriteU64(p, Read<uint64_t>(v));
      }
      return WriteInteger(p, f, static_cast<int64_t>(Read<uint64_t>(v)), true);
    case Kind::kFloat:
      return WriteF32(p, Read<float>(v));
    case Kind::kDouble:
      return WriteF64(p, Read<double>(v));
    default:
      CL_ASSERT(false);
  }
  return p;
}

// Writes an absent field: its default if it is a scalar, else null.
char* WriteAbsent(char* p, const FieldPlan& f) {
  switch (f.kind) {
    case Kind::kBool:
      if (f.default_integer != 0) {
        std::memcpy(p, "true", 4);
        return p + 4;
      }
      std::memcpy(p, "false", 5);
      return p + 5;
    case Kind::kInt8:
    case Kind::kInt16:
    case Kind::kInt32:
    case Kind::kInt64:
      return WriteInteger(p, f, f.default_integer, false);
    case Kind::kUInt8:
    case Kind::kUInt16:
    case Kind::kUInt32:
    case Kind::kUInt64:
    case Kind::kUnionType:
      return WriteInteger(p, f, f.default_integer, true);
    case Kind::kFloat:
      return WriteF32(p, static_cast<float>(f.default_real));
    case Kind::kDouble:
      return WriteF64(p, f.default_real);
    default:
      std::memcpy(p, "null", 4);
      return p + 4;
  }
}

char* WriteTable(OutBuffer* out, char* p, const TypePlan& plan, const uint8_t* table);
char* WriteStruct(OutBuffer* out, char* p, const TypePlan& plan, const uint8_t* data);

char* WriteString(OutBuffer* out, char* p, const flatbuffers::String* s, size_t extra) {
  p = out->Ensure(p, JsonStringBytesMax(s->size()) + extra);
  return WriteJsonString(p, s->c_str(), s->size());
}

char* WriteUnion(OutBuffer* out, char* p, const TypePlan& plan, uint8_t type,
                 const uint8_t* table) {
  const TypePlan* member = type < plan.members.size() ? plan.members[type] : nullptr;
  if (member == nullptr || table == nullptr) {
    p = out->Ensure(p, 2);
    std::memcpy(p, "{}", 2);
    return p + 2;
  }
  return WriteTable(out, p, *member, table);
}

// Writes the non-scalar value whose inline part is at v: for strings and tables v holds an
// offset; for structs v is the struct itself.
char* WriteReference(OutBuffer* out, char* p, const FieldPlan& f, const uint8_t* v) {
  switch (f.kind) {
    case Kind::kString:
      return WriteString(out, p,
                         reinterpret_cast<const flatbuffers::String*>(
                             v + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(v)),
                         2);
    case Kind::kTable:
      return WriteTable(out, p, *f.ref, v + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(v));
    case Kind::kHexStruct:
      p = out->Ensure(p, HexBytesMax(f.ref->hex_bytes) + 4);
      *p++ = '"';
      p = WriteHex(p, v + f.ref->fields[0].struct_offset, f.ref->hex_bytes);
      *p++ = '"';
      return p;
    case Kind::kStruct:
      return WriteStruct(out, p, *f.ref, v);
    default:
      p = out->Ensure(p, 4);
      std::memcpy(p, "null", 4);
      return p + 4;
  }
}

// Writes count values of f's kind laid out from data as a JSON array.
char* WriteArray(OutBuffer* out, char* p, const FieldPlan& f, const uint8_t* data, size_t count) {
  const size_t stride = InlineBytes(f.kind, f.ref);
  const bool scalar = IsScalar(f.kind) || f.kind == Kind::kUnionType;
  const size_t scalar_room = scalar ? f.scalar_room + 2 : 0;
  p = out->Ensure(p, 2);
  *p++ = '[';
  for (size_t i = 0; i < count; i++, data += stride) {
    if (scalar) {
      p = out->Ensure(p, scalar_room);
      if (i > 0) {
        *p++ = ',';
      }
      p = WriteScalar(p, f, data);
      continue;
    }
    if (i > 0) {
      p = out->Ensure(p, 1);
      *p++ = ',';
    }
    p = WriteReference(out, p, f, data);
  }
  p = out->Ensure(p, 2);
  *p++ = ']';
  return p;
}

char* WriteTable(OutBuffer* out, char* p, const TypePlan& plan, const uint8_t* table_bytes) {
  const auto* table = reinterpret_cast<const flatbuffers::Table*>(table_bytes);
  p = out->Ensure(p, 2);
  *p++ = '{';
  for (const FieldPlan& f : plan.fields) {
    const uint8_t* v = table->GetAddressOf(f.voffset);
    p = out->Ensure(p, f.key.size() + f.scalar_room + 2);
    std::memcpy(p, f.key.data(), f.key.size());
    p += f.key.size();
    if (v == nullptr) {
      p = WriteAbsent(p, f);
    } else if (f.repeated) {
      if (f.kind == Kind::kUnknown) {
        p = WriteAbsent(p, f);
        continue;
      }
      const auto* vector = reinterpret_cast<const flatbuffers::Vector<uint8_t>*>(
          v + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(v));
      p = WriteArray(out, p, f, vector->Data(), vector->size());
    } else if (IsScalar(f.kind) || f.kind == Kind::kUnionType) {
      p = WriteScalar(p, f, v);
    } else if (f.kind == Kind::kUnion) {
      const uint8_t* type = table->GetAddressOf(f.union_type_voffset);
      p = WriteUnion(out, p, *f.ref, type == nullptr ? 0 : *type,
                     v + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(v));
    } else {
      p = WriteReference(out, p, f, v);
    }
  }
  p = out->Ensure(p, 2);
  *p++ = '}';
  return p;
}

char* WriteStruct(OutBuffer* out, char* p, const TypePlan& plan, const uint8_t* data) {
  p = out->Ensure(p, 2);
  *p++ = '{';
  for (const FieldPlan& f : plan.fields) {
    const uint8_t* v = data + f.struct_offset;
    p = out->Ensure(p, f.key.size() + f.scalar_room + 2);
    std::memcpy(p, f.key.data(), f.key.size());
    p += f.key.size();
    if (f.repeated) {
      p = WriteArray(out, p, f, v, f.array_length);
    } else if (IsScalar(f.kind)) {
      p = WriteScalar(p, f, v);
    } else {
      p = WriteReference(out, p, f, v);
    }
  }
  p = out->Ensure(p, 2);
  *p++ = '}';
  return p;
}

// ,"type":"Unknown(N)","payload":
std::string UnknownTypePrefix(uint8_t type) {
  return ",\"type\":\"Unknown(" + std::to_string(type) + ")\",\"payload\":";
}

char* WritePayload(OutBuffer* out, char* p, const SchemaPlans& plans, const fb::Event& event) {
  const auto type = static_cast<uint8_t>(event.payload_type());
  const void* payload = event.payload();
  return WriteUnion(out, p, *plans.payload, type, static_cast<const uint8_t*>(payload));
}

}  // namespace

// ---- EventFormatter -----------------------------------------------------------------------------

EventFormatter::EventFormatter() : plans_(Plans()), scratch_(nullptr, 4096) {}

void EventFormatter::WriteJsonLine(uint64_t seq, const fb::Event& event, const log::Hash& hash,
                                   OutBuffer* out) {
  constexpr std::string_view kSeq = "{\"seq\":";
  constexpr std::string_view kTime = ",\"time\":\"";
  constexpr std::string_view kActor = "\",\"actor\":";
  constexpr std::string_view kRequestId = ",\"request_id\":";
  constexpr std::string_view kHash = ",\"hash\":\"";
  char* p = out->Ensure(out->cursor(), 64 + kIntBytesMax + kRfc3339BytesMax);
  std::memcpy(p, kSeq.data(), kSeq.size());
  p = WriteU64(p + kSeq.size(), seq);
  std::memcpy(p, kTime.data(), kTime.size());
  p = time_writer_.Write(p + kTime.size(), event.time_ns());
  std::memcpy(p, kActor.data(), kActor.size());
  p += kActor.size();
  const fb::Actor* actor = event.actor();
  if (actor == nullptr) {
    std::memcpy(p, "null", 4);
    p += 4;
  } else {
    p = WriteTable(out, p, *plans_.actor, reinterpret_cast<const uint8_t*>(actor));
  }
  p = out->Ensure(p, kRequestId.size() + 4);
  std::memcpy(p, kRequestId.data(), kRequestId.size());
  p += kRequestId.size();
  if (const flatbuffers::String* request_id = event.request_id()) {
    p = WriteString(out, p, request_id, 0);
  } else {
    std::memcpy(p, "null", 4);
    p += 4;
  }
  const auto type = static_cast<uint8_t>(event.payload_type());
  if (type < plans_.payload_prefix.size() && type != 0) {
    const std::string& prefix = plans_.payload_prefix[type];
    p = out->Ensure(p, prefix.size());
    std::memcpy(p, prefix.data(), prefix.size());
    p += prefix.size();
  } else {
    const std::string prefix = UnknownTypePrefix(type);  // Rare: not worth caching.
    p = out->Ensure(p, prefix.size());
    std::memcpy(p, prefix.data(), prefix.size());
    p += prefix.size();
  }
  p = WritePayload(out, p, plans_, event);
  p = out->Ensure(p, kHash.size() + HexBytesMax(hash.size()) + 3);
  std::memcpy(p, kHash.data(), kHash.size());
  p = WriteHex(p + kHash.size(), hash.data(), hash.size());
  std::memcpy(p, "\"}\n", 3);
  out->set_cursor(p + 3);
}

void EventFormatter::WritePayloadJson(const fb::Event& event, OutBuffer* out) {
  out->set_cursor(WritePayload(out, out->cursor(), plans_, event));
}

void EventFormatter::WriteCsvRow(uint64_t seq, const fb::Event& event, const log::Hash& hash,
                                 OutBuffer* out) {
  scratch_.Clear();
  WritePayloadJson(event, &scratch_);
  const std::string_view payload = scratch_.view();
  const fb::Actor* actor = event.actor();
  const flatbuffers::String* actor_id = actor != nullptr ? actor->id() : nullptr;
  const flatbuffers::String* request_id = event.request_id();
  const auto type = static_cast<uint8_t>(event.payload_type());
  std::string unknown_type_name;
  std::string_view type_name;
  if (type >= 1 && type <= plans_.payload_names.size()) {
    type_name = plans_.payload_names[type - 1];
  } else {
    unknown_type_name = PayloadTypeName(type);  // Rare: not worth caching.
    type_name = unknown_type_name;
  }
  const std::string* kind_name =
      actor != nullptr ? plans_.actor_kind->Find(static_cast<int64_t>(actor->kind())) : nullptr;

  const size_t room = kIntBytesMax + kRfc3339BytesMax + 64 + CsvQuotedBytesMax(payload.size()) +
                      (actor_id ? CsvCellBytesMax(actor_id->size()) : 0) +
                      (request_id ? CsvCellBytesMax(request_id->size()) : 0) +
                      (kind_name ? kind_name->size() : 0) + type_name.size() + 16;
  char* p = out->Ensure(out->cursor(), room);
  p = WriteU64(p, seq);
  *p++ = ',';
  p = time_writer_.Write(p, event.time_ns());
  *p++ = ',';
  if (kind_name != nullptr) {
    // Enum names are identifiers: the JSON literal minus its quotes is a plain CSV cell.
    std::memcpy(p, kind_name->data() + 1, kind_name->size() - 2);
    p += kind_name->size() - 2;
  } else if (actor != nullptr) {
    p = WriteU64(p, static_cast<uint64_t>(actor->kind()));
  }
  *p++ = ',';
  if (actor_id != nullptr) {
    p = WriteCsvCell(p, actor_id->c_str(), actor_id->size());
  }
  *p++ = ',';
  if (request_id != nullptr) {
    p = WriteCsvCell(p, request_id->c_str(), request_id->size());
  }
  *p++ = ',';
  std::memcpy(p, type_name.data(), type_name.size());
  p += type_name.size();
  *p++ = ',';
  // The payload JSON is ours: well-formed UTF-8 with control bytes (NUL included) escaped.
  p = WriteCsvQuoted(p, payload.data(), payload.size());
  *p++ = ',';
  p = WriteHex(p, hash.data(), hash.size());
  *p++ = '\n';
  out->set_cursor(p);
}

// ---- Payload type names -------------------------------------------------------------------------

std::string PayloadTypeName(uint8_t type) {
  const std::span<const char* const> names = PayloadTypeNames();
  if (type >= 1 && type <= names.size()) {
    return names[type - 1];
  }
  return "Unknown(" + std::to_string(type) + ")";
}

std::span<const char* const> PayloadTypeNames() { return Plans().payload_names; }

namespace {

// Lower case without '_' and '-': NodeJoined, node_joined and NODE-JOINED compare equal.
std::string Fold(std::string_view name) {
  std::string folded;
  for (char c : name) {
    if (c != '_' && c != '-') {
      folded.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  return folded;
}

}  // namespace

Result<uint8_t> ParsePayloadType(std::string_view name) {
  const std::span<const char* const> names = PayloadTypeNames();
  const std::string folded = Fold(name);
  for (size_t i = 0; i < names.size(); i++) {
    if (!folded.empty() && Fold(names[i]) == folded) {
      return static_cast<uint8_t>(i + 1);
    }
  }
  std::string valid;
  for (const char* valid_name : names) {
    valid += valid.empty() ? "" : ", ";
    valid += valid_name;
  }
  return Status::InvalidArgument("unknown event type '" + std::string(name) +
                                 "'; valid types: " + valid);
}

}  // namespace cloister::tools
