#include "node/agent_store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <utility>

#include "log/assert.h"

namespace cloister::node {
namespace {

constexpr char kLockFile[] = "agent.lock";
constexpr char kMetaDb[] = "meta";
constexpr char kInstancesDb[] = "instances";
constexpr char kReportsDb[] = "reports";
constexpr char kMetaFormatVersion[] = "format_version";
constexpr char kMetaCursor[] = "cursor";
constexpr char kMetaReportSeqLast[] = "report_seq_last";
// The first byte of every encoded record and report.
constexpr uint8_t kRecordFormat = 2;  // 2: script results.
// Invariant: report keys are exactly 8 bytes, big-endian, so LMDB's order is seq order.
constexpr size_t kSeqKeyBytes = 8;
static_assert(kSeqKeyBytes == sizeof(uint64_t));

std::string Errno(int err) { return std::strerror(err); }
std::string Lmdb(const std::string& what, int rc) { return what + ": " + mdb_strerror(rc); }

MDB_val Val(const void* data, size_t size) { return MDB_val{size, const_cast<void*>(data)}; }
MDB_val Val(const std::string& s) { return Val(s.data(), s.size()); }

std::array<uint8_t, 8> Be64(uint64_t value) {
  std::array<uint8_t, 8> out;
  for (int i = 7; i >= 0; i--) {
    out[i] = static_cast<uint8_t>(value & 0xff);
    value >>= 8;
  }
  return out;
}

uint64_t FromBe(const uint8_t* in, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; i++) {
    value = (value << 8) | in[i];
  }
  return value;
}

// ---- encoding: fixed field order, big-endian integers, u32-length-prefixed strings ----------

class Encoder {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Int(v, 2); }
  void U32(uint32_t v) { Int(v, 4); }
  void U64(uint64_t v) { Int(v, 8); }
  void Str(const std::string& s) {
    CL_ASSERT(s.size() <= UINT32_MAX);
    U32(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  std::string Take() { return std::move(out_); }

 private:
  void Int(uint64_t v, size_t bytes) {
    for (size_t i = bytes; i-- > 0;) {
      out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
  }
  std::string out_;
};

// Reads what Encoder wrote; any read past the end sets failed() and yields zeros.
class Decoder {
 public:
  Decoder(const void* data, size_t size) : in_(static_cast<const uint8_t*>(data)), size_(size) {}
  uint8_t U8() { return static_cast<uint8_t>(Int(1)); }
  uint16_t U16() { return static_cast<uint16_t>(Int(2)); }
  uint32_t U32() { return static_cast<uint32_t>(Int(4)); }
  uint64_t U64() { return Int(8); }
  std::string Str() {
    const uint32_t n = U32();
    if (failed_ || size_ - at_ < n) {
      failed_ = true;
      return "";
    }
    std::string s(reinterpret_cast<const char*>(in_ + at_), n);
    at_ += n;
    return s;
  }
  bool failed() const { return failed_; }
  bool at_end() const { return at_ == size_; }

 private:
  uint64_t Int(size_t bytes) {
    if (failed_ || size_ - at_ < bytes) {
      failed_ = true;
      return 0;
    }
    const uint64_t v = FromBe(in_ + at_, bytes);
    at_ += bytes;
    return v;
  }
  const uint8_t* in_;
  size_t size_;
  size_t at_ = 0;
  bool failed_ = false;
};

void EncodeVm(const std::optional<VmInfo>& vm, Encoder* e) {
  e->U8(vm.has_value() ? 1 : 0);
  if (!vm.has_value()) {
    return;
  }
  e->Str(vm->uuid);
  e->Str(vm->name);
  e->U8(static_cast<uint8_t>(vm->status));
  e->Str(vm->template_id);
  e->Str(vm->tag);
  e->U32(vm->cpu_cores);
  e->U32(vm->ram_mb);
  e->Str(vm->ip);
  e->U16(vm->vnc_port);
  e->U32(static_cast<uint32_t>(vm->port_forwards.size()));
  for (const PortForward& forward : vm->port_forwards) {
    e->Str(forward.name);
    e->Str(forward.protocol);
    e->U16(forward.guest_port);
    e->U16(forward.host_port);
  }
}

// Bounded by the value's size: each port forward takes at least 12 bytes.
void EncodeScript(const std::optional<ScriptResult>& script, Encoder* e) {
  e->U8(script ? 1 : 0);
  if (script) {
    e->U32(static_cast<uint32_t>(script->exit_code));
    e->Str(script->output);
  }
}

bool DecodeScript(Decoder* d, std::optional<ScriptResult>* out) {
  const uint8_t present = d->U8();
  if (present == 1) {
    ScriptResult script;
    script.exit_code = static_cast<int32_t>(d->U32());
    script.output = d->Str();
    *out = std::move(script);
  }
  return present <= 1 && !d->failed();
}

bool DecodeVm(Decoder* d, std::optional<VmInfo>* out) {
  const uint8_t present = d->U8();
  if (present == 0) {
    out->reset();
    return !d->failed();
  }
  VmInfo vm;
  vm.uuid = d->Str();
  vm.name = d->Str();
  const uint8_t status = d->U8();
  vm.template_id = d->Str();
  vm.tag = d->Str();
  vm.cpu_cores = d->U32();
  vm.ram_mb = d->U32();
  vm.ip = d->Str();
  vm.vnc_port = d->U16();
  const uint32_t forwards = d->U32();
  for (uint32_t i = 0; i < forwards && !d->failed(); i++) {
    PortForward forward;
    forward.name = d->Str();
    forward.protocol = d->Str();
    forward.guest_port = d->U16();
    forward.host_port = d->U16();
    vm.port_forwards.push_back(std::move(forward));
  }
  if (present != 1 || status > static_cast<uint8_t>(VmStatus::kSuspended)) {
    return false;
  }
  vm.status = static_cast<VmStatus>(status);
  *out = std::move(vm);
  return !d->failed();
}

std::string EncodeRecord(const InstanceRecord& r) {
  Encoder e;
  e.U8(kRecordFormat);
  e.Str(r.instance_id);
  e.Str(r.vm_name);
  e.Str(r.spec.template_id);
  e.Str(r.spec.tag);
  e.U32(r.spec.cpu_cores);
  e.U32(r.spec.ram_mb);
  e.Str(r.spec.startup_script);
  e.U8(static_cast<uint8_t>(r.desired));
  e.U64(r.cursor);
  e.U64(r.settled_cursor);
  e.U8(r.restart_pending ? 1 : 0);
  e.U8(r.vm_created ? 1 : 0);
  e.U8(r.script_started ? 1 : 0);
  e.U8(static_cast<uint8_t>(r.intent));
  e.U8(static_cast<uint8_t>(r.state));
  e.Str(r.message);
  EncodeVm(r.vm, &e);
  e.U64(r.last_report_seq);
  EncodeScript(r.script_result, &e);
  return e.Take();
}

bool Bool(uint8_t v, bool* out) {
  *out = v == 1;
  return v <= 1;
}

Result<InstanceRecord> DecodeRecord(const std::string& key, const MDB_val& value) {
  const std::string what = "instance record " + key;
  Decoder d(value.mv_data, value.mv_size);
  const uint8_t format = d.U8();
  if (!d.failed() && format != kRecordFormat) {
    return Status::FormatMismatch(what + " has format " + std::to_string(format) +
                                  ", this build reads " + std::to_string(kRecordFormat));
  }
  InstanceRecord r;
  r.instance_id = d.Str();
  r.vm_name = d.Str();
  r.spec.template_id = d.Str();
  r.spec.tag = d.Str();
  r.spec.cpu_cores = d.U32();
  r.spec.ram_mb = d.U32();
  r.spec.startup_script = d.Str();
  const uint8_t desired = d.U8();
  r.cursor = d.U64();
  r.settled_cursor = d.U64();
  bool ok = Bool(d.U8(), &r.restart_pending);
  ok = Bool(d.U8(), &r.vm_created) && ok;
  ok = Bool(d.U8(), &r.script_started) && ok;
  const uint8_t intent = d.U8();
  const uint8_t state = d.U8();
  r.message = d.Str();
  ok = DecodeVm(&d, &r.vm) && ok;
  r.last_report_seq = d.U64();
  ok = DecodeScript(&d, &r.script_result) && ok;
  ok = ok && !d.failed() && d.at_end() && r.instance_id == key;
  ok = ok && desired >= static_cast<uint8_t>(DesiredState::kStarted) &&
       desired <= static_cast<uint8_t>(DesiredState::kTerminated);
  ok = ok && intent <= static_cast<uint8_t>(Step::kRunScript);
  ok = ok && state <= static_cast<uint8_t>(InstanceState::kPushing);
  if (!ok) {
    return Status::Corruption(what + " is malformed");
  }
  r.desired = static_cast<DesiredState>(desired);
  r.intent = static_cast<Step>(intent);
  r.state = static_cast<InstanceState>(state);
  return r;
}

std::string EncodeReport(const Report& r) {
  Encoder e;
  e.U8(kRecordFormat);
  e.U64(r.seq);
  e.Str(r.instance_id);
  e.U8(static_cast<uint8_t>(r.state));
  e.U64(r.cursor);
  e.Str(r.message);
  EncodeVm(r.vm, &e);
  EncodeScript(r.script_result, &e);
  return e.Take();
}

Result<Report> DecodeReport(uint64_t seq, const MDB_val& value) {
  const std::string what = "report " + std::to_string(seq);
  Decoder d(value.mv_data, value.mv_size);
  const uint8_t format = d.U8();
  if (!d.failed() && format != kRecordFormat) {
    return Status::FormatMismatch(what + " has format " + std::to_string(format) +
                                  ", this build reads " + std::to_string(kRecordFormat));
  }
  Report r;
  r.seq = d.U64();
  r.instance_id = d.Str();
  const uint8_t state = d.U8();
  r.cursor = d.U64();
  r.message = d.Str();
  const bool vm_ok = DecodeVm(&d, &r.vm) && DecodeScript(&d, &r.script_result);
  if (!vm_ok || d.failed() || !d.at_end() || r.seq != seq ||
      state > static_cast<uint8_t>(InstanceState::kPushing)) {
    return Status::Corruption(what + " is malformed");
  }
  r.state = static_cast<InstanceState>(state);
  return r;
}

Status LmdbWriteError(const std::string& what, int rc) {
  if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT) {
    return Status::NoSpace(Lmdb(what, rc));
  }
  return Status::IoError(Lmdb(what, rc));
}

}  // namespace

const char* DesiredStateName(DesiredState state) {
  switch (state) {
    case DesiredState::kStarted: return "started";
    case DesiredState::kStopped: return "stopped";
    case DesiredState::kSuspended: return "suspended";
    case DesiredState::kTerminated: return "terminated";
  }
  return "unknown";
}

const char* StepName(Step step) {
  switch (step) {
    case Step::kNone: return "none";
    case Step::kClone: return "clone";
    case Step::kStart: return "start";
    case Step::kStop: return "stop";
    case Step::kSuspend: return "suspend";
    case Step::kDelete: return "delete";
    case Step::kRunScript: return "run-script";
  }
  return "unknown";
}

const char* InstanceStateName(InstanceState state) {
  switch (state) {
    case InstanceState::kScheduling: return "Scheduling";
    case InstanceState::kPulling: return "Pulling";
    case InstanceState::kStarted: return "Started";
    case InstanceState::kStopping: return "Stopping";
    case InstanceState::kStopped: return "Stopped";
    case InstanceState::kTerminating: return "Terminating";
    case InstanceState::kTerminated: return "Terminated";
    case InstanceState::kError: return "Error";
    case InstanceState::kPushing: return "Pushing";
  }
  return "Unknown";
}

// The lock file, the LMDB environment and its three databases. Used under AgentStore::mu_.
class AgentStore::Env {
 public:
  ~Env() {
    if (env_ != nullptr) {
      mdb_env_close(env_);
    }
    if (lock_fd_ >= 0) {
      close(lock_fd_);  // Releases the lock, after LMDB is closed.
    }
  }

  Status Lock(const std::string& dir) {
    const std::string path = LockPath(dir);
    lock_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) {
      return Status::IoError("open " + path + ": " + Errno(errno));
    }
    if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      close(lock_fd_);
      lock_fd_ = -1;
      if (err == EWOULDBLOCK) {
        return Status::Busy("agent store " + dir + " is already open (another cloister-node?)");
      }
      return Status::IoError("flock " + path + ": " + Errno(err));
    }
    return Status::Ok();
  }

  Status Open(const std::string& dir) {
    dir_ = dir;
    int rc = mdb_env_create(&env_);
    if (rc != 0) {
      env_ = nullptr;
      return Status::IoError(Lmdb("mdb_env_create", rc));
    }
    CL_ASSERT(mdb_env_set_maxdbs(env_, 3) == 0);
    rc = mdb_env_set_mapsize(env_, kAgentStoreMapBytes);
    if (rc != 0) {
      return Status::IoError(Lmdb("agent store map size", rc));
    }
    // Default sync flags only: a committed write is on disk. MDB_NOTLS: any thread may read.
    rc = mdb_env_open(env_, dir.c_str(), MDB_NOTLS, 0600);
    if (rc != 0) {
      return Status::IoError(Lmdb("open agent store in " + dir, rc));
    }
    int dead_readers = 0;
    mdb_reader_check(env_, &dead_readers);  // Slots of a killed predecessor.
    MDB_txn* txn = nullptr;
    rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) {
      return Status::IoError(Lmdb("begin transaction in " + dir, rc));
    }
    rc = mdb_dbi_open(txn, kMetaDb, MDB_CREATE, &meta_);
    if (rc == 0) {
      rc = mdb_dbi_open(txn, kInstancesDb, MDB_CREATE, &instances_);
    }
    if (rc == 0) {
      rc = mdb_dbi_open(txn, kReportsDb, MDB_CREATE, &reports_);
    }
    if (rc != 0) {
      mdb_txn_abort(txn);
      return LmdbWriteError("open agent store databases in " + dir, rc);
    }
    Status status = CheckFormat(txn);
    if (!status.ok()) {
      mdb_txn_abort(txn);
      return status;
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? Status::Ok() : LmdbWriteError("initialise agent store in " + dir, rc);
  }

  // Writes the format version into a new store, or checks an existing one's.
  Status CheckFormat(MDB_txn* txn) {
    MDB_val key = Val(kMetaFormatVersion, std::strlen(kMetaFormatVersion));
    MDB_val value;
    int rc = mdb_get(txn, meta_, &key, &value);
    if (rc == MDB_NOTFOUND) {
      const auto bytes = Be64(kAgentStoreFormatVersion);
      MDB_val version = Val(bytes.data() + 4, 4);
      rc = mdb_put(txn, meta_, &key, &version, 0);
      return rc == 0 ? Status::Ok() : LmdbWriteError("write format version", rc);
    }
    if (rc != 0) {
      return Status::IoError(Lmdb("read format version", rc));
    }
    if (value.mv_size != 4) {
      return Status::Corruption("agent store format version of " +
                                std::to_string(value.mv_size) + " bytes");
    }
    const uint64_t version = FromBe(static_cast<const uint8_t*>(value.mv_data), 4);
    if (version != kAgentStoreFormatVersion) {
      return Status::FormatMismatch("agent store in " + dir_ + " has format version " +
                                    std::to_string(version) + ", this build reads " +
                                    std::to_string(kAgentStoreFormatVersion));
    }
    return Status::Ok();
  }

  // Reads a u64 meta value; 0 if absent.
  Result<uint64_t> ReadMeta(MDB_txn* txn, const char* name) const {
    MDB_val key = Val(name, std::strlen(name));
    MDB_val value;
    const int rc = mdb_get(txn, meta_, &key, &value);
    if (rc == MDB_NOTFOUND) {
      return uint64_t{0};
    }
    if (rc != 0) {
      return Status::IoError(Lmdb(std::string("read ") + name, rc));
    }
    if (value.mv_size != 8) {
      return Status::Corruption(std::string("agent store ") + name + " of " +
                                std::to_string(value.mv_size) + " bytes");
    }
    return FromBe(static_cast<const uint8_t*>(value.mv_data), 8);
  }

  int WriteMeta(MDB_txn* txn, const char* name, uint64_t v) {
    MDB_val key = Val(name, std::strlen(name));
    const auto bytes = Be64(v);
    MDB_val value = Val(bytes.data(), bytes.size());
    return mdb_put(txn, meta_, &key, &value, 0);
  }

  // Runs read(txn) in a read transaction.
  template <typename Fn>
  Status Read(const Fn& read) const {
    MDB_txn* txn = nullptr;
    const int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc != 0) {
      return Status::IoError(Lmdb("begin read transaction in " + dir_, rc));
    }
    Status status = read(txn);
    mdb_txn_abort(txn);
    return status;
  }

  // Runs write(txn) in a write transaction and commits it unless write fails. write returns an
  // LMDB code (0: commit).
  template <typename Fn>
  Status WriteTxn(const std::string& what, const Fn& write) {
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) {
      return LmdbWriteError("begin " + what, rc);
    }
    rc = write(txn);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return LmdbWriteError(what, rc);
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? Status::Ok() : LmdbWriteError("commit " + what, rc);
  }

  MDB_dbi instances() const { return instances_; }
  MDB_dbi reports() const { return reports_; }

 private:
  std::string dir_;
  int lock_fd_ = -1;
  MDB_env* env_ = nullptr;
  MDB_dbi meta_ = 0;
  MDB_dbi instances_ = 0;
  MDB_dbi reports_ = 0;
};

std::string AgentStore::LockPath(const std::string& dir) { return dir + "/" + kLockFile; }

AgentStore::AgentStore(std::unique_ptr<Env> env) : env_(std::move(env)) {}

AgentStore::~AgentStore() = default;

Result<std::unique_ptr<AgentStore>> AgentStore::Open(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError("create " + dir + ": " + Errno(errno));
  }
  auto env = std::make_unique<Env>();
  // The lock first: a second opener must not touch LMDB's files at all.
  Status status = env->Lock(dir);
  if (status.ok()) {
    status = env->Open(dir);
  }
  if (!status.ok()) {
    return status;
  }
  uint64_t cursor = 0;
  uint64_t report_seq_last = 0;
  status = env->Read([&](MDB_txn* txn) {
    Result<uint64_t> c = env->ReadMeta(txn, kMetaCursor);
    Result<uint64_t> r = env->ReadMeta(txn, kMetaReportSeqLast);
    if (!c.ok()) {
      return c.status();
    }
    if (!r.ok()) {
      return r.status();
    }
    cursor = *c;
    report_seq_last = *r;
    return Status::Ok();
  });
  if (!status.ok()) {
    return status;
  }
  std::unique_ptr<AgentStore> store(new AgentStore(std::move(env)));
  store->cursor_ = cursor;
  store->report_seq_last_ = report_seq_last;
  return store;
}

uint64_t AgentStore::cursor() const {
  std::lock_guard lock(mu_);
  return cursor_;
}

uint64_t AgentStore::last_report_seq() const {
  std::lock_guard lock(mu_);
  return report_seq_last_;
}

Result<std::optional<InstanceRecord>> AgentStore::Get(const std::string& instance_id) const {
  std::lock_guard lock(mu_);
  std::optional<InstanceRecord> out;
  if (instance_id.empty() || instance_id.size() > kInstanceIdBytesMax) {
    return out;  // Such an id can never have been stored.
  }
  Status status = env_->Read([&](MDB_txn* txn) {
    MDB_val key = Val(instance_id);
    MDB_val value;
    const int rc = mdb_get(txn, env_->instances(), &key, &value);
    if (rc == MDB_NOTFOUND) {
      return Status::Ok();
    }
    if (rc != 0) {
      return Status::IoError(Lmdb("read instance " + instance_id, rc));
    }
    Result<InstanceRecord> record = DecodeRecord(instance_id, value);
    if (!record.ok()) {
      return record.status();
    }
    out = std::move(record).value();
    return Status::Ok();
  });
  if (!status.ok()) {
    return status;
  }
  return out;
}

Result<std::vector<InstanceRecord>> AgentStore::List() const {
  std::lock_guard lock(mu_);
  std::vector<InstanceRecord> out;
  Status status = env_->Read([&](MDB_txn* txn) {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, env_->instances(), &cursor);
    if (rc != 0) {
      return Status::IoError(Lmdb("open instance cursor", rc));
    }
    MDB_val key;
    MDB_val value;
    Status result;
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
      Result<InstanceRecord> record =
          DecodeRecord(std::string(static_cast<const char*>(key.mv_data), key.mv_size), value);
      if (!record.ok()) {
        result = record.status();
        break;
      }
      out.push_back(std::move(record).value());
    }
    mdb_cursor_close(cursor);
    if (result.ok() && rc != MDB_NOTFOUND) {
      result = Status::IoError(Lmdb("list instances", rc));
    }
    return result;
  });
  if (!status.ok()) {
    return status;
  }
  return out;
}

Status AgentStore::Write(const StoreWrite& write) {
  for (const InstanceRecord& record : write.instances) {
    if (record.instance_id.empty() || record.instance_id.size() > kInstanceIdBytesMax) {
      return Status::InvalidArgument("instance id of " + std::to_string(record.instance_id.size()) +
                                     " bytes (1.." + std::to_string(kInstanceIdBytesMax) + ")");
    }
  }
  std::lock_guard lock(mu_);
  // Invariant: the cursor only grows, and report seqs are dense and never reused.
  if (write.cursor.has_value()) {
    CL_ASSERT(*write.cursor > cursor_);
  }
  for (size_t i = 0; i < write.reports.size(); i++) {
    CL_ASSERT(write.reports[i].seq == report_seq_last_ + 1 + i);
  }
  const uint64_t report_seq_last = report_seq_last_ + write.reports.size();
  Status status = env_->WriteTxn("agent store write", [&](MDB_txn* txn) {
    int rc = 0;
    if (write.cursor.has_value()) {
      rc = env_->WriteMeta(txn, kMetaCursor, *write.cursor);
    }
    for (size_t i = 0; rc == 0 && i < write.instances.size(); i++) {
      const InstanceRecord& record = write.instances[i];
      MDB_val key = Val(record.instance_id);
      const std::string bytes = EncodeRecord(record);
      MDB_val value = Val(bytes);
      rc = mdb_put(txn, env_->instances(), &key, &value, 0);
    }
    for (size_t i = 0; rc == 0 && i < write.reports.size(); i++) {
      const Report& report = write.reports[i];
      const auto key_bytes = Be64(report.seq);
      MDB_val key = Val(key_bytes.data(), key_bytes.size());
      const std::string bytes = EncodeReport(report);
      MDB_val value = Val(bytes);
      rc = mdb_put(txn, env_->reports(), &key, &value, MDB_APPEND);
    }
    if (rc == 0 && !write.reports.empty()) {
      rc = env_->WriteMeta(txn, kMetaReportSeqLast, report_seq_last);
    }
    return rc;
  });
  if (!status.ok()) {
    return status;
  }
  if (write.cursor.has_value()) {
    cursor_ = *write.cursor;
  }
  report_seq_last_ = report_seq_last;
  return Status::Ok();
}

Result<std::vector<Report>> AgentStore::PendingReports(size_t max) const {
  std::lock_guard lock(mu_);
  std::vector<Report> out;
  Status status = env_->Read([&](MDB_txn* txn) {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, env_->reports(), &cursor);
    if (rc != 0) {
      return Status::IoError(Lmdb("open report cursor", rc));
    }
    MDB_val key;
    MDB_val value;
    Status result;
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0 && out.size() < max;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
      if (key.mv_size != kSeqKeyBytes) {
        result = Status::Corruption("report key of " + std::to_string(key.mv_size) + " bytes");
        break;
      }
      Result<Report> report =
          DecodeReport(FromBe(static_cast<const uint8_t*>(key.mv_data), kSeqKeyBytes), value);
      if (!report.ok()) {
        result = report.status();
        break;
      }
      out.push_back(std::move(report).value());
    }
    mdb_cursor_close(cursor);
    if (result.ok() && rc != 0 && rc != MDB_NOTFOUND) {
      result = Status::IoError(Lmdb("list reports", rc));
    }
    return result;
  });
  if (!status.ok()) {
    return status;
  }
  return out;
}

Status AgentStore::AckReports(uint64_t seq_up_to) {
  std::lock_guard lock(mu_);
  return env_->WriteTxn("acknowledge reports", [&](MDB_txn* txn) {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, env_->reports(), &cursor);
    if (rc != 0) {
      return rc;
    }
    MDB_val key;
    MDB_val value;
    // Re-positions on the first entry after each delete, which keeps clear of LMDB's cursor
    // rules after a delete; acknowledged reports are always the oldest.
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST)) {
      if (key.mv_size != kSeqKeyBytes ||
          FromBe(static_cast<const uint8_t*>(key.mv_data), kSeqKeyBytes) > seq_up_to) {
        break;
      }
      rc = mdb_cursor_del(cursor, 0);
      if (rc != 0) {
        break;
      }
    }
    mdb_cursor_close(cursor);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
  });
}

}  // namespace cloister::node
