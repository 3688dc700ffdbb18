#include "reducers/snapshot.h"

#include <bit>
#include <cstring>
#include <limits>
#include <utility>

namespace cloister::reducers {
namespace {

constexpr char kMagic[4] = {'C', 'L', 'V', 'W'};
constexpr size_t kHeaderBytes = sizeof(kMagic) + 1;
constexpr size_t kChecksumBytes = 8;
constexpr size_t kVarintBytesMax = 10;

// ---- Checksum -------------------------------------------------------------------------------

// One lane of XXH64's round over 8-byte little-endian words, then its avalanche: fast, and good
// enough that a flipped or lost byte changes the result with probability 1 - 2^-64.
constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

uint64_t LoadLe64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; i--) {
    value = (value << 8) | p[i];
  }
  return value;
}

uint64_t Checksum(const uint8_t* data, size_t size) {
  uint64_t h = kPrime5 ^ (static_cast<uint64_t>(size) * kPrime1);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    h ^= std::rotl(LoadLe64(data + i) * kPrime2, 31) * kPrime1;
    h = std::rotl(h, 27) * kPrime1 + kPrime3;
  }
  for (; i < size; i++) {
    h ^= data[i] * kPrime5;
    h = std::rotl(h, 11) * kPrime1;
  }
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

// ---- Writing --------------------------------------------------------------------------------

class Writer {
 public:
  explicit Writer(std::string* out) : out_(*out) {}

  void U64(uint64_t value) {
    char buf[kVarintBytesMax];
    size_t n = 0;
    while (value >= 0x80) {
      buf[n++] = static_cast<char>((value & 0x7F) | 0x80);
      value >>= 7;
    }
    buf[n++] = static_cast<char>(value);
    out_.append(buf, n);
  }
  void I64(int64_t value) {
    U64((static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
  }
  void U8(uint8_t value) { out_.push_back(static_cast<char>(value)); }
  void Bool(bool value) { U8(value ? 1 : 0); }
  void F32(float value) {
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    for (int i = 0; i < 4; i++) {
      U8(static_cast<uint8_t>(bits >> (8 * i)));
    }
  }
  void Str(const std::string& value) {
    U64(value.size());
    out_.append(value);
  }
  void Hash(const log::Hash& value) {
    out_.append(reinterpret_cast<const char*>(value.data()), value.size());
  }
  void Stamp(const reducers::Stamp& value) {
    U64(value.seq);
    I64(value.time_ns);
  }
  template <typename Container>
  void Strings(const Container& values) {
    U64(values.size());
    for (const std::string& value : values) {
      Str(value);
    }
  }

 private:
  std::string& out_;
};

void Write(Writer* w, const ConfigEntry& e) {
  w->Str(e.value);
  w->Bool(e.secret);
  w->Hash(e.value_digest);
  w->Stamp(e.changed);
}

void Write(Writer* w, const Node& n) {
  w->Str(n.node_id);
  w->Str(n.node_name);
  w->Str(n.ip_address);
  w->U64(n.cpu_count);
  w->U64(n.ram_mb);
  w->U64(n.vcpu_count);
  w->U64(n.vram_mb);
  w->U64(n.capacity);
  w->Str(n.capacity_mode);
  w->Str(n.arch);
  w->Str(n.hypervisor);
  w->Str(n.agent_version);
  w->U64(n.free_disk_space_mb);
  w->U8(static_cast<uint8_t>(n.state));
  w->U64(n.vm_count);
  w->Strings(n.templates);
  w->Str(n.message);
  w->Strings(n.groups);
  w->Bool(n.drain_mode);
  w->U64(n.vcpu_override);
  w->U64(n.ram_override_mb);
  w->U64(n.update_seq);
  w->U64(n.last_report_seq);
  w->U8(static_cast<uint8_t>(n.credential.kind));
  w->Str(n.credential.id);
  w->Strings(n.credential.groups);
  w->Stamp(n.joined);
  w->Stamp(n.updated);
}

void Write(Writer* w, const NodeGroup& g) {
  w->Str(g.group_id);
  w->Str(g.name);
  w->Str(g.description);
  w->Str(g.fallback_group_id);
  w->Strings(g.node_ids);
  w->Stamp(g.created);
  w->Stamp(g.updated);
}

void Write(Writer* w, const VmInstance& v) {
  w->Str(v.instance_id);
  w->Str(v.vmid);
  w->Str(v.tag);
  w->I64(v.version);
  w->Str(v.name);
  w->Str(v.name_template);
  w->Str(v.external_id);
  w->Str(v.requested_node_id);
  w->Str(v.group_id);
  w->Str(v.permission_group);
  w->U64(v.priority);
  w->Str(v.startup_script);
  w->I64(v.startup_script_condition);
  w->Bool(v.script_monitoring);
  w->I64(v.script_timeout);
  w->I64(v.script_fail_handler);
  w->Str(v.metadata_json);
  w->U64(v.vcpu);
  w->U64(v.vram_mb);
  w->U64(v.port_forwarding_override.size());
  for (const PortForward& p : v.port_forwarding_override) {
    w->U64(p.guest_port);
    w->U64(p.host_port);
    w->Str(p.protocol);
    w->Str(p.name);
  }
  w->Bool(v.vnc_password_set);
  w->U8(static_cast<uint8_t>(v.state));
  w->Str(v.message);
  w->F32(v.progress);
  w->Str(v.node_id);
  w->Str(v.vm_uuid);
  w->Str(v.ip);
  w->U64(v.vnc_port);
  w->Str(v.terminated_reason);
  w->U64(v.restart_seq);
  w->Bool(v.script_done);
  w->I64(v.script_exit_code);
  w->Str(v.script_output);
  w->Stamp(v.created);
  w->Stamp(v.updated);
}

template <typename T>
void WriteMap(Writer* w, const std::map<std::string, T>& map);

void Write(Writer* w, const StoredManifest& m) {
  w->Str(m.digest);
  w->Str(m.media_type);
  w->U64(m.size);
  w->U64(m.references.size());
  for (const RegistryReference& ref : m.references) {
    w->Str(ref.digest);
    w->U64(ref.size);
    w->Str(ref.media_type);
  }
  w->Stamp(m.pushed);
}

void Write(Writer* w, const DistributionNode& n) {
  w->Str(n.node_id);
  w->Str(n.status);
  w->U8(n.progress);
  w->Str(n.message);
  w->Stamp(n.updated);
}

void Write(Writer* w, const Distribution& d) {
  w->Str(d.request_id);
  w->Str(d.action);
  w->Str(d.template_id);
  w->Str(d.tag);
  WriteMap(w, d.nodes);
  w->Stamp(d.created);
  w->Stamp(d.updated);
}

void Write(Writer* w, const StoredFile& f) {
  w->Str(f.path);
  w->Str(f.digest);
  w->U64(f.size);
  w->Str(f.stored_by);
  w->Stamp(f.stored);
}

void Write(Writer* w, const Template& t) {
  w->Str(t.template_id);
  w->Str(t.name);
  w->U64(t.tags.size());
  for (const TemplateTag& tag : t.tags) {
    w->Str(tag.tag);
    w->I64(tag.version);
    w->Str(tag.description);
    w->Stamp(tag.registered);
    w->Str(tag.digest);
  }
  WriteMap(w, t.manifests);
  w->Stamp(t.created);
  w->Stamp(t.updated);
  w->Bool(t.mirrored);
}

void Write(Writer* w, const SaveImage& s) {
  w->Str(s.request_id);
  w->Str(s.instance_id);
  w->Str(s.target_vm_id);
  w->Str(s.new_template_name);
  w->Str(s.tag);
  w->Str(s.description);
  w->Bool(s.suspend);
  w->Str(s.revert_tag);
  w->Str(s.script);
  w->Bool(s.copy);
  w->Str(s.copy_approved_by);
  w->U8(static_cast<uint8_t>(s.status));
  w->Str(s.message);
  w->Str(s.result_vmid);
  w->Stamp(s.created);
  w->Stamp(s.updated);
}

void Write(Writer* w, const ApiKey& k) {
  w->Str(k.key_id);
  w->Str(k.description);
  w->Str(k.public_key_pem);
  w->Hash(k.public_key_fingerprint);
  w->Strings(k.groups);
  w->I64(k.expires_ns);
  w->Bool(k.enabled);
  w->Stamp(k.created);
  w->Stamp(k.updated);
}

void Write(Writer* w, const Session& s) {
  w->Str(s.session_digest);
  w->Str(s.key_id);
  w->Hash(s.token_digest);
  w->I64(s.expires_ns);
  w->Stamp(s.created);
  w->Stamp(s.updated);
}

void Write(Writer* w, const CertificateRevocation& c) {
  w->Str(c.serial_hex);
  w->Str(c.issuer);
  w->Str(c.reason);
  w->Stamp(c.created);
  w->Stamp(c.updated);
}

void Write(Writer* w, const PermissionGroup& g) {
  w->Str(g.component);
  w->Str(g.name);
  w->Str(g.description);
  w->Strings(g.permissions);
  w->Stamp(g.created);
  w->Stamp(g.updated);
}

void Write(Writer* w, const ResourceGrant& g) {
  w->Str(g.resource_type);
  w->Str(g.resource_id);
  w->Str(g.principal);
  w->Strings(g.permissions);
  w->Stamp(g.created);
  w->Stamp(g.updated);
}

void Write(Writer* w, const StoredPolicy& p) {
  w->Str(p.policy_id);
  w->Strings(p.events);
  w->Str(p.head_hash);
  w->Stamp(p.created);
  w->Stamp(p.updated);
}

void Write(Writer* w, const PolicyAttachment& a) {
  w->Str(a.target_type);
  w->Str(a.target_id);
  w->Str(a.policy_id);
  w->Stamp(a.created);
  w->Stamp(a.updated);
}

template <typename T>
void WriteMap(Writer* w, const std::map<std::string, T>& map) {
  w->U64(map.size());
  for (const auto& [key, value] : map) {
    w->Str(key);
    Write(w, value);
  }
}

// ---- Reading --------------------------------------------------------------------------------

// Bounds-checked reads. The first failure makes every later read fail too, so a decoder can read
// a whole entity and check ok() once; where() names the offset of the first failure.
class Reader {
 public:
  Reader(const uint8_t* begin, const uint8_t* end) : begin_(begin), p_(begin), end_(end) {}

  bool ok() const { return ok_; }
  bool AtEnd() const { return p_ == end_; }
  size_t where() const { return static_cast<size_t>(failed_at_ - begin_); }

  void U64(uint64_t* value) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!Need(1)) {
        return;
      }
      const uint8_t byte = *p_++;
      // The tenth byte may hold only the top bit; a zero final byte would be a longer form of a
      // shorter encoding. Both are rejected, so each value has exactly one encoding.
      if ((shift == 63 && byte > 1) || (byte == 0 && shift > 0)) {
        return Fail();
      }
      result |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) {
        *value = result;
        return;
      }
    }
    Fail();
  }
  template <typename T>
  void Unsigned(T* value) {
    uint64_t wide = 0;
    U64(&wide);
    if (wide > std::numeric_limits<T>::max()) {
      return Fail();
    }
    *value = static_cast<T>(wide);
  }
  template <typename T>
  void Signed(T* value) {
    uint64_t zigzag = 0;
    U64(&zigzag);
    const int64_t wide = static_cast<int64_t>(zigzag >> 1) ^ -static_cast<int64_t>(zigzag & 1);
    if (wide < std::numeric_limits<T>::min() || wide > std::numeric_limits<T>::max()) {
      return Fail();
    }
    *value = static_cast<T>(wide);
  }
  void U8(uint8_t* value) {
    if (Need(1)) {
      *value = *p_++;
    }
  }
  void Bool(bool* value) {
    uint8_t byte = 0;
    U8(&byte);
    if (byte > 1) {
      return Fail();
    }
    *value = byte == 1;
  }
  template <typename Enum>
  void EnumU8(Enum* value) {
    uint8_t byte = 0;
    U8(&byte);
    *value = static_cast<Enum>(byte);  // Any value: a newer build's enum value round-trips.
  }
  void F32(float* value) {
    if (!Need(4)) {
      return;
    }
    uint32_t bits = 0;
    for (int i = 3; i >= 0; i--) {
      bits = (bits << 8) | p_[i];
    }
    p_ += 4;
    *value = std::bit_cast<float>(bits);
  }
  void Str(std::string* value) {
    uint64_t size = 0;
    U64(&size);
    if (!Need(size)) {
      return;
    }
    value->assign(reinterpret_cast<const char*>(p_), size);
    p_ += size;
  }
  void Hash(log::Hash* value) {
    if (Need(value->size())) {
      std::memcpy(value->data(), p_, value->size());
      p_ += value->size();
    }
  }
  void Stamp(reducers::Stamp* value) {
    U64(&value->seq);
    Signed(&value->time_ns);
  }
  // A count of items that each take at least one byte: more than the bytes left is corrupt, which
  // also bounds the loops that read them.
  void Count(uint64_t* count) {
    U64(count);
    if (ok_ && *count > static_cast<uint64_t>(end_ - p_)) {
      Fail();
    }
  }
  void Strings(std::vector<std::string>* values) {
    uint64_t count = 0;
    Count(&count);
    for (uint64_t i = 0; ok_ && i < count; i++) {
      Str(&values->emplace_back());
    }
  }
  void Strings(std::set<std::string>* values) {
    uint64_t count = 0;
    Count(&count);
    for (uint64_t i = 0; ok_ && i < count; i++) {
      std::string value;
      Str(&value);
      // Strictly ascending: the order EncodeViews wrote, with no duplicates.
      if (ok_ && !values->empty() && !(*values->rbegin() < value)) {
        return Fail();
      }
      values->insert(values->end(), std::move(value));
    }
  }
  void Fail() {
    if (ok_) {
      ok_ = false;
      failed_at_ = p_;
    }
  }

 private:
  bool Need(uint64_t n) {
    if (!ok_) {
      return false;
    }
    if (n > static_cast<uint64_t>(end_ - p_)) {
      Fail();
      return false;
    }
    return true;
  }

  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  const uint8_t* failed_at_ = nullptr;
  bool ok_ = true;
};

void Read(Reader* r, ConfigEntry* e) {
  r->Str(&e->value);
  r->Bool(&e->secret);
  r->Hash(&e->value_digest);
  r->Stamp(&e->changed);
}

void Read(Reader* r, Node* n) {
  r->Str(&n->node_id);
  r->Str(&n->node_name);
  r->Str(&n->ip_address);
  r->Unsigned(&n->cpu_count);
  r->Unsigned(&n->ram_mb);
  r->Unsigned(&n->vcpu_count);
  r->Unsigned(&n->vram_mb);
  r->Unsigned(&n->capacity);
  r->Str(&n->capacity_mode);
  r->Str(&n->arch);
  r->Str(&n->hypervisor);
  r->Str(&n->agent_version);
  r->U64(&n->free_disk_space_mb);
  r->EnumU8(&n->state);
  r->Unsigned(&n->vm_count);
  r->Strings(&n->templates);
  r->Str(&n->message);
  r->Strings(&n->groups);
  r->Bool(&n->drain_mode);
  r->Unsigned(&n->vcpu_override);
  r->Unsigned(&n->ram_override_mb);
  r->U64(&n->update_seq);
  r->U64(&n->last_report_seq);
  r->EnumU8(&n->credential.kind);
  r->Str(&n->credential.id);
  r->Strings(&n->credential.groups);
  r->Stamp(&n->joined);
  r->Stamp(&n->updated);
}

void Read(Reader* r, NodeGroup* g) {
  r->Str(&g->group_id);
  r->Str(&g->name);
  r->Str(&g->description);
  r->Str(&g->fallback_group_id);
  r->Strings(&g->node_ids);
  r->Stamp(&g->created);
  r->Stamp(&g->updated);
}

void Read(Reader* r, VmInstance* v) {
  r->Str(&v->instance_id);
  r->Str(&v->vmid);
  r->Str(&v->tag);
  r->Signed(&v->version);
  r->Str(&v->name);
  r->Str(&v->name_template);
  r->Str(&v->external_id);
  r->Str(&v->requested_node_id);
  r->Str(&v->group_id);
  r->Str(&v->permission_group);
  r->Unsigned(&v->priority);
  r->Str(&v->startup_script);
  r->Signed(&v->startup_script_condition);
  r->Bool(&v->script_monitoring);
  r->Signed(&v->script_timeout);
  r->Signed(&v->script_fail_handler);
  r->Str(&v->metadata_json);
  r->Unsigned(&v->vcpu);
  r->Unsigned(&v->vram_mb);
  uint64_t forwards = 0;
  r->Count(&forwards);
  for (uint64_t i = 0; r->ok() && i < forwards; i++) {
    PortForward& p = v->port_forwarding_override.emplace_back();
    r->Unsigned(&p.guest_port);
    r->Unsigned(&p.host_port);
    r->Str(&p.protocol);
    r->Str(&p.name);
  }
  r->Bool(&v->vnc_password_set);
  r->EnumU8(&v->state);
  r->Str(&v->message);
  r->F32(&v->progress);
  r->Str(&v->node_id);
  r->Str(&v->vm_uuid);
  r->Str(&v->ip);
  r->Unsigned(&v->vnc_port);
  r->Str(&v->terminated_reason);
  r->U64(&v->restart_seq);
  r->Bool(&v->script_done);
  r->Signed(&v->script_exit_code);
  r->Str(&v->script_output);
  r->Stamp(&v->created);
  r->Stamp(&v->updated);
}

template <typename T>
void ReadMap(Reader* r, std::map<std::string, T>* map);

void Read(Reader* r, StoredManifest* m) {
  r->Str(&m->digest);
  r->Str(&m->media_type);
  r->U64(&m->size);
  uint64_t references = 0;
  r->Count(&references);
  for (uint64_t i = 0; r->ok() && i < references; i++) {
    RegistryReference& ref = m->references.emplace_back();
    r->Str(&ref.digest);
    r->U64(&ref.size);
    r->Str(&ref.media_type);
  }
  r->Stamp(&m->pushed);
}

void Read(Reader* r, DistributionNode* n) {
  r->Str(&n->node_id);
  r->Str(&n->status);
  r->U8(&n->progress);
  r->Str(&n->message);
  r->Stamp(&n->updated);
}

void Read(Reader* r, Distribution* d) {
  r->Str(&d->request_id);
  r->Str(&d->action);
  r->Str(&d->template_id);
  r->Str(&d->tag);
  ReadMap(r, &d->nodes);
  r->Stamp(&d->created);
  r->Stamp(&d->updated);
}

void Read(Reader* r, StoredFile* f) {
  r->Str(&f->path);
  r->Str(&f->digest);
  r->U64(&f->size);
  r->Str(&f->stored_by);
  r->Stamp(&f->stored);
}

void Read(Reader* r, Template* t) {
  r->Str(&t->template_id);
  r->Str(&t->name);
  uint64_t tags = 0;
  r->Count(&tags);
  for (uint64_t i = 0; r->ok() && i < tags; i++) {
    TemplateTag& tag = t->tags.emplace_back();
    r->Str(&tag.tag);
    r->Signed(&tag.version);
    r->Str(&tag.description);
    r->Stamp(&tag.registered);
    r->Str(&tag.digest);
  }
  ReadMap(r, &t->manifests);
  r->Stamp(&t->created);
  r->Stamp(&t->updated);
  r->Bool(&t->mirrored);
}

void Read(Reader* r, SaveImage* s) {
  r->Str(&s->request_id);
  r->Str(&s->instance_id);
  r->Str(&s->target_vm_id);
  r->Str(&s->new_template_name);
  r->Str(&s->tag);
  r->Str(&s->description);
  r->Bool(&s->suspend);
  r->Str(&s->revert_tag);
  r->Str(&s->script);
  r->Bool(&s->copy);
  r->Str(&s->copy_approved_by);
  r->EnumU8(&s->status);
  r->Str(&s->message);
  r->Str(&s->result_vmid);
  r->Stamp(&s->created);
  r->Stamp(&s->updated);
}

void Read(Reader* r, ApiKey* k) {
  r->Str(&k->key_id);
  r->Str(&k->description);
  r->Str(&k->public_key_pem);
  r->Hash(&k->public_key_fingerprint);
  r->Strings(&k->groups);
  r->Signed(&k->expires_ns);
  r->Bool(&k->enabled);
  r->Stamp(&k->created);
  r->Stamp(&k->updated);
}

void Read(Reader* r, Session* s) {
  r->Str(&s->session_digest);
  r->Str(&s->key_id);
  r->Hash(&s->token_digest);
  r->Signed(&s->expires_ns);
  r->Stamp(&s->created);
  r->Stamp(&s->updated);
}

void Read(Reader* r, CertificateRevocation* c) {
  r->Str(&c->serial_hex);
  r->Str(&c->issuer);
  r->Str(&c->reason);
  r->Stamp(&c->created);
  r->Stamp(&c->updated);
}

void Read(Reader* r, PermissionGroup* g) {
  r->Str(&g->component);
  r->Str(&g->name);
  r->Str(&g->description);
  r->Strings(&g->permissions);
  r->Stamp(&g->created);
  r->Stamp(&g->updated);
}

void Read(Reader* r, ResourceGrant* g) {
  r->Str(&g->resource_type);
  r->Str(&g->resource_id);
  r->Str(&g->principal);
  r->Strings(&g->permissions);
  r->Stamp(&g->created);
  r->Stamp(&g->updated);
}

void Read(Reader* r, StoredPolicy* p) {
  r->Str(&p->policy_id);
  r->Strings(&p->events);
  r->Str(&p->head_hash);
  r->Stamp(&p->created);
  r->Stamp(&p->updated);
}

void Read(Reader* r, PolicyAttachment* a) {
  r->Str(&a->target_type);
  r->Str(&a->target_id);
  r->Str(&a->policy_id);
  r->Stamp(&a->created);
  r->Stamp(&a->updated);
}

template <typename T>
void ReadMap(Reader* r, std::map<std::string, T>* map) {
  uint64_t count = 0;
  r->Count(&count);
  for (uint64_t i = 0; r->ok() && i < count; i++) {
    std::string key;
    r->Str(&key);
    if (r->ok() && !map->empty() && !(map->rbegin()->first < key)) {
      return r->Fail();  // Keys strictly ascending, as EncodeViews wrote them.
    }
    T value;
    Read(r, &value);
    if (r->ok()) {
      map->emplace_hint(map->end(), std::move(key), std::move(value));
    }
  }
}

}  // namespace

uint64_t ViewsChecksum(std::span<const uint8_t> bytes) {
  return Checksum(bytes.data(), bytes.size());
}

std::string EncodeViews(const Views& views) {
  std::string out;
  out.append(kMagic, sizeof(kMagic));
  out.push_back(static_cast<char>(kViewsEncodingVersion));
  Writer w(&out);
  w.U64(views.seq);
  w.Hash(views.hash);
  WriteMap(&w, views.config.entries);
  WriteMap(&w, views.nodes.nodes);
  WriteMap(&w, views.node_groups.groups);
  WriteMap(&w, views.vm_instances.instances);
  WriteMap(&w, views.templates.templates);
  WriteMap(&w, views.save_images.requests);
  WriteMap(&w, views.api_keys.keys);
  WriteMap(&w, views.sessions.sessions);  // by_expiry is derived: rebuilt on decoding.
  WriteMap(&w, views.revocations.certificates);
  WriteMap(&w, views.permission_groups.groups);
  WriteMap(&w, views.resource_permissions.grants);
  WriteMap(&w, views.policies.policies);
  WriteMap(&w, views.policy_attachments.attachments);
  WriteMap(&w, views.distributions.requests);
  WriteMap(&w, views.files.files);
  w.U64(views.authz_seq);
  const uint64_t checksum = Checksum(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  for (int i = 0; i < 8; i++) {
    out.push_back(static_cast<char>(checksum >> (8 * i)));
  }
  return out;
}

Result<Views> DecodeViews(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderBytes + kChecksumBytes) {
    return Status::Corruption("views encoding: " + std::to_string(bytes.size()) +
                              " bytes is too short");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("views encoding: bad magic");
  }
  if (bytes[sizeof(kMagic)] != kViewsEncodingVersion) {
    return Status::FormatMismatch("views encoding version " +
                                  std::to_string(bytes[sizeof(kMagic)]) + ", this build reads " +
                                  std::to_string(kViewsEncodingVersion));
  }
  const size_t body_end = bytes.size() - kChecksumBytes;
  if (Checksum(bytes.data(), body_end) != LoadLe64(bytes.data() + body_end)) {
    return Status::Corruption("views encoding: checksum mismatch");
  }
  Views views;
  Reader r(bytes.data() + kHeaderBytes, bytes.data() + body_end);
  r.U64(&views.seq);
  r.Hash(&views.hash);
  ReadMap(&r, &views.config.entries);
  ReadMap(&r, &views.nodes.nodes);
  ReadMap(&r, &views.node_groups.groups);
  ReadMap(&r, &views.vm_instances.instances);
  ReadMap(&r, &views.templates.templates);
  ReadMap(&r, &views.save_images.requests);
  ReadMap(&r, &views.api_keys.keys);
  ReadMap(&r, &views.sessions.sessions);
  ReadMap(&r, &views.revocations.certificates);
  ReadMap(&r, &views.permission_groups.groups);
  ReadMap(&r, &views.resource_permissions.grants);
  ReadMap(&r, &views.policies.policies);
  ReadMap(&r, &views.policy_attachments.attachments);
  ReadMap(&r, &views.distributions.requests);
  ReadMap(&r, &views.files.files);
  r.U64(&views.authz_seq);
  for (const auto& [digest, session] : views.sessions.sessions) {
    views.sessions.by_expiry.emplace(session.expires_ns, digest);
  }
  if (!r.ok()) {
    return Status::Corruption("views encoding: malformed at byte " +
                              std::to_string(kHeaderBytes + r.where()));
  }
  if (!r.AtEnd()) {
    return Status::Corruption("views encoding: trailing bytes");
  }
  return views;
}

}  // namespace cloister::reducers
