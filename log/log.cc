#include "log/log.h"

#include "log/filesystem.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <utility>

namespace cloister::log {
namespace {

constexpr char kEventsDb[] = "events";
constexpr char kMetaDb[] = "meta";
constexpr char kMetaFormatVersion[] = "format_version";
constexpr char kMetaHeadSeq[] = "head_seq";
constexpr char kMetaHeadHash[] = "head_hash";
constexpr char kWriterLockFile[] = "writer.lock";
constexpr char kDataFile[] = "data.mdb";

// Invariant: keys are exactly 8 bytes, big-endian, so LMDB's byte order is seq order and
// MDB_APPEND can check that every new key is the largest.
constexpr size_t kKeyBytes = 8;
static_assert(kKeyBytes == sizeof(uint64_t));
static_assert(sizeof(Hash) == 32);

void PutBe64(uint64_t value, uint8_t* out) {
  for (int i = 7; i >= 0; i--) {
    out[i] = static_cast<uint8_t>(value & 0xff);
    value >>= 8;
  }
}

uint64_t GetBe64(const uint8_t* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; i++) {
    value = (value << 8) | in[i];
  }
  return value;
}

MDB_val Val(const void* data, size_t size) { return MDB_val{size, const_cast<void*>(data)}; }

std::string Errno(int err) { return std::strerror(err); }

std::string Range(uint64_t first, uint64_t last) {
  return first == last ? std::to_string(first) : std::to_string(first) + ".." + std::to_string(last);
}

// One writer process per data directory. LMDB serialises writers across processes itself, but
// two cloister writers would each believe they own the head, so the second is refused.
Result<int> AcquireWriterLock(const std::string& dir) {
  std::string path = dir + "/" + kWriterLockFile;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::IoError("open " + path + ": " + Errno(errno));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char holder[32] = {0};
    ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
    close(fd);
    if (err == EWOULDBLOCK) {
      std::string pid = n > 0 ? std::string(holder, strnlen(holder, sizeof(holder))) : "?";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) {
        pid.pop_back();
      }
      return Status::Busy("data directory " + dir +
                          " is already open for writing by another process (pid " + pid + ")");
    }
    return Status::IoError("flock " + path + ": " + Errno(err));
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the error message of a second writer; the lock itself is held.
  }
  return fd;
}

void DefaultOnFatal(const Status& status) {
  std::fprintf(stderr,
               "cloister: fatal: %s; exiting so that a restart reopens the last durable state\n",
               status.ToString().c_str());
  std::fflush(stderr);
  _exit(kExitFatalIo);
}

struct Request {
  std::vector<Draft> drafts;
  AppendCallback done;
  uint64_t seq_first = 0;
};

// A read transaction that is aborted when it goes out of scope.
class ReadTxn {
 public:
  ReadTxn() = default;
  ~ReadTxn() {
    if (txn_ != nullptr) {
      mdb_txn_abort(txn_);
    }
  }
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  MDB_txn** out() { return &txn_; }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
};

class Cursor {
 public:
  explicit Cursor(MDB_cursor* cursor) : cursor_(cursor) {}
  ~Cursor() {
    if (cursor_ != nullptr) {
      mdb_cursor_close(cursor_);
    }
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  MDB_cursor* get() const { return cursor_; }

 private:
  MDB_cursor* cursor_;
};

}  // namespace

class Log::Impl {
 public:
  ~Impl();

  Status OpenEnv();
  Status OpenDatabases();
  Status VerifyTail();
  void StartWriter() { writer_ = std::thread([this] { WriterLoop(); }); }
  void StopWriter();

  void AppendAsync(std::vector<Draft> drafts, AppendCallback done);
  Head head() const;
  Status Scan(uint64_t seq_from, uint64_t seq_to, const ScanCallback& callback) const;
  Result<Head> VerifyAll() const;
  uint64_t map_bytes() const {
    std::shared_lock lock(resize_mu_);
    return map_bytes_;
  }

  Options options_;
  int lock_fd_ = -1;  // The flock'd writer lock file; -1 for readers.

 private:
  // Begins a read transaction; the caller holds resize_mu_ shared.
  Status BeginRead(ReadTxn* txn, std::shared_lock<std::shared_mutex>* resize_lock) const;
  Status ReadHead(MDB_txn* txn, Head* head) const;
  // BeginRead, then ReadHead in that transaction.
  Status BeginReadAtHead(ReadTxn* txn, std::shared_lock<std::shared_mutex>* resize_lock,
                         Head* head) const {
    Status s = BeginRead(txn, resize_lock);
    return s.ok() ? ReadHead(txn->get(), head) : s;
  }
  // Verifies events seq_from..seq_last (which the caller bounds by the stored head) and passes
  // them to callback. *hash_out gets hash(last event visited).
  Status ScanInTxn(MDB_txn* txn, uint64_t seq_from, uint64_t seq_last,
                   const ScanCallback& callback, Hash* hash_out) const;
  Status CheckNothingBeyond(MDB_txn* txn, uint64_t head_seq) const;

  void WriterLoop();
  void CommitBatch(std::vector<Request>* batch);
  int WriteTxn(const std::vector<Request>& batch, const Head& next);
  // True when LMDB has put the environment in its fatal state (a failed meta page write).
  bool EnvFailed();
  Status GrowMap();
  void Complete(std::vector<Request>* batch, const Status& status);
  void Fatal(std::vector<Request>* batch, const Status& status);

  MDB_env* env_ = nullptr;
  MDB_dbi events_dbi_ = 0;
  MDB_dbi meta_dbi_ = 0;

  // Held shared by every read transaction in this process and exclusively while the map is
  // resized: LMDB allows mdb_env_set_mapsize only with no transaction open in the process.
  mutable std::shared_mutex resize_mu_;
  mutable uint64_t map_bytes_ = 0;  // Guarded by resize_mu_; readers adopt another process's growth.

  // Writer state.
  std::mutex mu_;
  std::condition_variable queue_nonempty_;
  std::condition_variable queue_space_;
  std::deque<Request> queue_;        // Guarded by mu_.
  size_t queued_events_ = 0;         // Guarded by mu_.
  bool stopping_ = false;            // Guarded by mu_.
  bool failed_ = false;              // Guarded by mu_.
  Status failure_;                   // Guarded by mu_.
  std::thread writer_;

  mutable std::mutex head_mu_;
  Head head_;                        // Guarded by head_mu_; written only by the writer thread.
  ChainHasher writer_hasher_;        // Used only by the writer thread.
};

Log::Impl::~Impl() {
  StopWriter();
  if (env_ != nullptr) {
    mdb_env_close(env_);
  }
  if (lock_fd_ >= 0) {
    close(lock_fd_);  // Releases the writer lock.
  }
}

Status Log::Impl::OpenEnv() {
  int rc = mdb_env_create(&env_);
  if (rc != 0) {
    env_ = nullptr;
    return Status::IoError("mdb_env_create: " + std::string(mdb_strerror(rc)));
  }
  CL_ASSERT(mdb_env_set_maxdbs(env_, 4) == 0);
  rc = mdb_env_set_mapsize(env_, options_.map_bytes_initial);
  if (rc != 0) {
    return Status::InvalidArgument("map size " + std::to_string(options_.map_bytes_initial) +
                                   ": " + mdb_strerror(rc));
  }
  // Default sync flags only: no MDB_NOSYNC, MDB_NOMETASYNC, MDB_WRITEMAP or MDB_MAPASYNC.
  // MDB_NOTLS lets a read transaction be used by whichever thread runs a scan.
  unsigned int flags = MDB_NOTLS | (options_.read_only ? MDB_RDONLY : 0);
  rc = mdb_env_open(env_, options_.dir.c_str(), flags, 0600);
  if (rc != 0) {
    return Status::IoError("open LMDB environment in " + options_.dir + ": " + mdb_strerror(rc));
  }
  int dead_readers = 0;
  mdb_reader_check(env_, &dead_readers);  // Frees slots of crashed readers so the map can't bloat.
  MDB_envinfo info;
  CL_ASSERT(mdb_env_info(env_, &info) == 0);
  map_bytes_ = info.me_mapsize;
  return Status::Ok();
}

Status Log::Impl::OpenDatabases() {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, options_.read_only ? MDB_RDONLY : 0, &txn);
  if (rc != 0) {
    return Status::IoError("begin transaction: " + std::string(mdb_strerror(rc)));
  }
  unsigned int create = options_.read_only ? 0 : MDB_CREATE;
  rc = mdb_dbi_open(txn, kEventsDb, create, &events_dbi_);
  if (rc == 0) {
    rc = mdb_dbi_open(txn, kMetaDb, create, &meta_dbi_);
  }
  if (rc == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return Status::NotFound("no cloister event log in " + options_.dir);
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return Status::IoError("open databases in " + options_.dir + ": " + mdb_strerror(rc));
  }
  MDB_val key = Val(kMetaFormatVersion, sizeof(kMetaFormatVersion) - 1);
  MDB_val value;
  rc = mdb_get(txn, meta_dbi_, &key, &value);
  if (rc == MDB_NOTFOUND && !options_.read_only) {
    MDB_stat stat;
    CL_ASSERT(mdb_stat(txn, events_dbi_, &stat) == 0);
    if (stat.ms_entries != 0) {
      mdb_txn_abort(txn);
      return Status::Corruption("meta has no format version but the log holds events");
    }
    // A new log: format version, head seq 0, head hash zero.
    uint8_t version[4] = {0, 0, 0, static_cast<uint8_t>(kFormatVersion)};
    static_assert(kFormatVersion < 256);
    uint8_t seq[8];
    PutBe64(0, seq);
    Hash zero{};
    MDB_val k_seq = Val(kMetaHeadSeq, sizeof(kMetaHeadSeq) - 1);
    MDB_val k_hash = Val(kMetaHeadHash, sizeof(kMetaHeadHash) - 1);
    MDB_val v_version = Val(version, 4);
    MDB_val v_seq = Val(seq, 8);
    MDB_val v_hash = Val(zero.data(), zero.size());
    rc = mdb_put(txn, meta_dbi_, &key, &v_version, 0);
    if (rc == 0) rc = mdb_put(txn, meta_dbi_, &k_seq, &v_seq, 0);
    if (rc == 0) rc = mdb_put(txn, meta_dbi_, &k_hash, &v_hash, 0);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return Status::IoError("initialise meta: " + std::string(mdb_strerror(rc)));
    }
  } else if (rc == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return Status::NotFound("no cloister event log in " + options_.dir);
  } else if (rc != 0) {
    mdb_txn_abort(txn);
    return Status::IoError("read format version: " + std::string(mdb_strerror(rc)));
  } else {
    if (value.mv_size != 4) {
      mdb_txn_abort(txn);
      return Status::Corruption("meta format version has " + std::to_string(value.mv_size) +
                                " bytes, expected 4");
    }
    const auto* v = static_cast<const uint8_t*>(value.mv_data);
    uint32_t version = (uint32_t{v[0]} << 24) | (uint32_t{v[1]} << 16) |
                       (uint32_t{v[2]} << 8) | uint32_t{v[3]};
    if (version != kFormatVersion) {
      mdb_txn_abort(txn);
      return Status::FormatMismatch(options_.dir + " holds event log format version " +
                                    std::to_string(version) + "; this build reads version " +
                                    std::to_string(kFormatVersion));
    }
  }
  // Commit (even read-only) so the database handles outlive this transaction.
  rc = mdb_txn_commit(txn);
  if (rc != 0) {
    return Status::IoError("commit open transaction: " + std::string(mdb_strerror(rc)));
  }
  return Status::Ok();
}

Status Log::Impl::BeginRead(ReadTxn* txn, std::shared_lock<std::shared_mutex>* resize_lock) const {
  for (int attempt = 0; attempt < 3; attempt++) {
    int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, txn->out());
    if (rc == 0) {
      return Status::Ok();
    }
    if (rc != MDB_MAP_RESIZED) {
      return Status::IoError("begin read transaction: " + std::string(mdb_strerror(rc)));
    }
    // Another process grew the map: adopt its size, with no transaction open in this process.
    resize_lock->unlock();
    {
      std::unique_lock exclusive(resize_mu_);
      mdb_env_set_mapsize(env_, 0);
      MDB_envinfo info;
      CL_ASSERT(mdb_env_info(env_, &info) == 0);
      map_bytes_ = info.me_mapsize;
    }
    resize_lock->lock();
  }
  return Status::IoError("begin read transaction: map kept being resized");
}

Status Log::Impl::ReadHead(MDB_txn* txn, Head* head) const {
  MDB_val k_seq = Val(kMetaHeadSeq, sizeof(kMetaHeadSeq) - 1);
  MDB_val k_hash = Val(kMetaHeadHash, sizeof(kMetaHeadHash) - 1);
  MDB_val v_seq;
  MDB_val v_hash;
  if (mdb_get(txn, meta_dbi_, &k_seq, &v_seq) != 0 ||
      mdb_get(txn, meta_dbi_, &k_hash, &v_hash) != 0) {
    return Status::Corruption("meta has no head seq or head hash");
  }
  if (v_seq.mv_size != 8 || v_hash.mv_size != head->hash.size()) {
    return Status::Corruption("meta head has the wrong size");
  }
  head->seq = GetBe64(static_cast<const uint8_t*>(v_seq.mv_data));
  std::memcpy(head->hash.data(), v_hash.mv_data, head->hash.size());
  return Status::Ok();
}

Status Log::Impl::ScanInTxn(MDB_txn* txn, uint64_t seq_from, uint64_t seq_last,
                            const ScanCallback& callback, Hash* hash_out) const {
  CL_ASSERT(seq_from >= 1);
  MDB_cursor* raw_cursor = nullptr;
  int rc = mdb_cursor_open(txn, events_dbi_, &raw_cursor);
  if (rc != 0) {
    return Status::IoError("open cursor: " + std::string(mdb_strerror(rc)));
  }
  Cursor cursor(raw_cursor);
  ChainHasher hasher;
  uint8_t key_bytes[kKeyBytes];
  MDB_val key;
  MDB_val value;

  // Anchor the chain: hash(seq_from - 1) is computed from that event, so the first event the
  // callback sees is checked against its predecessor too.
  Hash running{};
  if (seq_from > 1) {
    uint64_t anchor = seq_from - 1;
    PutBe64(anchor, key_bytes);
    key = Val(key_bytes, kKeyBytes);
    rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND) {
      return Status::Corruption("event " + std::to_string(anchor) + ": missing");
    }
    if (rc != 0) {
      return Status::IoError("read event " + std::to_string(anchor) + ": " + mdb_strerror(rc));
    }
    std::span<const uint8_t> bytes(static_cast<const uint8_t*>(value.mv_data), value.mv_size);
    const fb::Event* event = VerifyEvent(bytes);
    if (event == nullptr || event->seq() != anchor) {
      return Status::Corruption("event " + std::to_string(anchor) +
                                ": fails FlatBuffers verification");
    }
    Hash prev;
    std::memcpy(prev.data(), event->prev_hash()->bytes()->data(), prev.size());
    running = hasher.Next(prev, bytes);
  }
  if (seq_from > seq_last) {
    *hash_out = running;
    return Status::Ok();
  }

  PutBe64(seq_from, key_bytes);
  key = Val(key_bytes, kKeyBytes);
  rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_SET_KEY);
  EventView view;
  for (uint64_t expected = seq_from; expected <= seq_last; expected++) {
    // Error messages are built only on failure: this loop is the hot path of every scan.
    auto at = [expected] { return "event " + std::to_string(expected) + ": "; };
    if (rc == MDB_NOTFOUND) {
      return Status::Corruption(at() + "missing (head is " + std::to_string(seq_last) + ")");
    }
    if (rc != 0) {
      return Status::IoError(at() + "read failed: " + mdb_strerror(rc));
    }
    if (key.mv_size != kKeyBytes) {
      return Status::Corruption(at() + "key has " + std::to_string(key.mv_size) + " bytes");
    }
    uint64_t stored_key = GetBe64(static_cast<const uint8_t*>(key.mv_data));
    if (stored_key != expected) {
      return Status::Corruption(at() + "missing (next stored key is " + std::to_string(stored_key) +
                                ")");
    }
    std::span<const uint8_t> bytes(static_cast<const uint8_t*>(value.mv_data), value.mv_size);
    const fb::Event* event = VerifyEvent(bytes);
    if (event == nullptr) {
      return Status::Corruption(at() + "fails FlatBuffers verification (" +
                                std::to_string(bytes.size()) + " bytes)");
    }
    if (event->seq() != expected) {
      return Status::Corruption(at() + "stores seq " + std::to_string(event->seq()));
    }
    if (std::memcmp(event->prev_hash()->bytes()->data(), running.data(), running.size()) != 0) {
      return Status::Corruption(at() + "hash chain broken: prev_hash does not match event " +
                                std::to_string(expected - 1));
    }
    running = hasher.Next(running, bytes);
    view.seq = expected;
    view.bytes = bytes;
    view.event = event;
    view.hash = running;
    if (callback && !callback(view)) {
      break;
    }
    rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_NEXT);
  }
  *hash_out = running;
  return Status::Ok();
}

Status Log::Impl::CheckNothingBeyond(MDB_txn* txn, uint64_t head_seq) const {
  MDB_cursor* raw_cursor = nullptr;
  if (mdb_cursor_open(txn, events_dbi_, &raw_cursor) != 0) {
    return Status::IoError("open cursor");
  }
  Cursor cursor(raw_cursor);
  MDB_val key;
  MDB_val value;
  int rc = mdb_cursor_get(cursor.get(), &key, &value, MDB_LAST);
  if (rc == MDB_NOTFOUND) {
    if (head_seq != 0) {
      return Status::Corruption("event 1: missing (head is " + std::to_string(head_seq) + ")");
    }
    return Status::Ok();
  }
  if (rc != 0) {
    return Status::IoError("read last event: " + std::string(mdb_strerror(rc)));
  }
  if (key.mv_size != kKeyBytes) {
    return Status::Corruption("last key has " + std::to_string(key.mv_size) + " bytes");
  }
  uint64_t last = GetBe64(static_cast<const uint8_t*>(key.mv_data));
  if (last > head_seq) {
    return Status::Corruption("event " + std::to_string(head_seq + 1) +
                              ": stored beyond the head (" + std::to_string(head_seq) + ")");
  }
  if (last < head_seq) {
    return Status::Corruption("event " + std::to_string(last + 1) + ": missing (head is " +
                              std::to_string(head_seq) + ")");
  }
  return Status::Ok();
}

Status Log::Impl::VerifyTail() {
  std::shared_lock resize_lock(resize_mu_);
  ReadTxn txn;
  Head stored;
  Status s = BeginReadAtHead(&txn, &resize_lock, &stored);
  if (s.ok()) s = CheckNothingBeyond(txn.get(), stored.seq);
  if (!s.ok()) {
    return s;
  }
  uint64_t tail = std::max<uint64_t>(options_.tail_verify_events, 1);
  uint64_t from = stored.seq > tail ? stored.seq - tail + 1 : 1;
  Hash last{};
  s = ScanInTxn(txn.get(), from, stored.seq, nullptr, &last);
  if (!s.ok()) {
    return s;
  }
  if (stored.seq > 0 && last != stored.hash) {
    return Status::Corruption("event " + std::to_string(stored.seq) +
                              ": hash does not match the stored head hash");
  }
  std::lock_guard lock(head_mu_);
  head_ = stored;
  return Status::Ok();
}

Head Log::Impl::head() const {
  if (!options_.read_only) {
    std::lock_guard lock(head_mu_);
    return head_;
  }
  std::shared_lock resize_lock(resize_mu_);
  ReadTxn txn;
  Head head;
  if (BeginRead(&txn, &resize_lock).ok() && ReadHead(txn.get(), &head).ok()) {
    return head;
  }
  std::lock_guard lock(head_mu_);
  return head_;
}

Status Log::Impl::Scan(uint64_t seq_from, uint64_t seq_to, const ScanCallback& callback) const {
  std::shared_lock resize_lock(resize_mu_);
  ReadTxn txn;
  Head stored;
  Status s = BeginReadAtHead(&txn, &resize_lock, &stored);
  if (!s.ok()) {
    return s;
  }
  uint64_t from = std::max<uint64_t>(seq_from, 1);
  uint64_t last = std::min(seq_to, stored.seq);
  if (from > last) {
    return Status::Ok();
  }
  Hash ignored;
  return ScanInTxn(txn.get(), from, last, callback, &ignored);
}

Result<Head> Log::Impl::VerifyAll() const {
  std::shared_lock resize_lock(resize_mu_);
  ReadTxn txn;
  Head stored;
  Status s = BeginReadAtHead(&txn, &resize_lock, &stored);
  if (!s.ok()) {
    return s;
  }
  Hash last{};
  s = ScanInTxn(txn.get(), 1, stored.seq, nullptr, &last);
  if (s.ok()) s = CheckNothingBeyond(txn.get(), stored.seq);
  if (!s.ok()) {
    return s;
  }
  if (last != stored.hash) {
    return Status::Corruption("event " + std::to_string(stored.seq) +
                              ": hash does not match the stored head hash");
  }
  return stored;
}

// ---- Writing ------------------------------------------------------------------------------------

void Log::Impl::AppendAsync(std::vector<Draft> drafts, AppendCallback done) {
  CL_ASSERT(done != nullptr);
  if (options_.read_only) {
    done(Status::Unsupported("log was opened read-only"));
    return;
  }
  if (drafts.empty()) {
    done(Status::InvalidArgument("append of no events"));
    return;
  }
  if (drafts.size() > kAppendEventsMax) {
    done(Status::InvalidArgument("append of " + std::to_string(drafts.size()) +
                                 " events exceeds the limit of " +
                                 std::to_string(kAppendEventsMax)));
    return;
  }
  for (size_t i = 0; i < drafts.size(); i++) {
    Status s = CheckDraft(drafts[i].bytes());
    if (!s.ok()) {
      done(Status::InvalidArgument("event " + std::to_string(i) + " of the batch: " + s.message()));
      return;
    }
  }
  std::unique_lock lock(mu_);
  queue_space_.wait(lock, [&] {
    return queued_events_ < options_.queue_events_max || failed_ || stopping_;
  });
  if (failed_ || stopping_) {
    Status s = failed_ ? failure_ : Status::Closed("log is closing");
    lock.unlock();
    done(s);
    return;
  }
  queued_events_ += drafts.size();
  queue_.push_back(Request{std::move(drafts), std::move(done)});
  lock.unlock();
  queue_nonempty_.notify_one();
}

void Log::Impl::StopWriter() {
  if (!writer_.joinable()) {
    return;
  }
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  queue_nonempty_.notify_all();
  queue_space_.notify_all();
  writer_.join();
}

void Log::Impl::WriterLoop() {
  std::vector<Request> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      queue_nonempty_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) {
        return;  // Stopping, and everything queued has been committed.
      }
      // Take every waiting request up to the commit limit; one request is never split, so a
      // batch larger than the limit still commits atomically on its own.
      size_t events = 0;
      while (!queue_.empty() &&
             (batch.empty() || events + queue_.front().drafts.size() <= options_.commit_events_max)) {
        events += queue_.front().drafts.size();
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_events_ -= events;
    }
    queue_space_.notify_all();
    CommitBatch(&batch);
    batch.clear();
  }
}

void Log::Impl::CommitBatch(std::vector<Request>* batch) {
  {
    std::lock_guard lock(mu_);
    if (failed_) {
      Status s = failure_;
      Complete(batch, s);
      return;
    }
  }
  // Link: give each event its seq and prev_hash and extend the chain. This runs before the LMDB
  // write transaction begins, so the write lock is held only for the puts and the commit.
  Head next;
  {
    std::lock_guard lock(head_mu_);
    next = head_;
  }
  const uint64_t seq_first = next.seq + 1;
  for (Request& request : *batch) {
    request.seq_first = next.seq + 1;
    for (Draft& draft : request.drafts) {
      next.seq++;
      fb::Event* event = fb::GetMutableEvent(draft.buffer.data());
      CL_ASSERT(event->mutate_seq(next.seq));  // CheckDraft proved the field is stored.
      auto* prev = event->mutable_prev_hash()->mutable_bytes();
      for (size_t i = 0; i < next.hash.size(); i++) {
        prev->Mutate(i, next.hash[i]);
      }
      next.hash = writer_hasher_.Next(next.hash, draft.bytes());
      // Pair assertion: what goes to disk is what readers will verify.
      CL_DASSERT(VerifyEvent(draft.bytes()) != nullptr);
    }
  }
  const uint64_t seq_last = next.seq;
  auto range = [seq_first, seq_last] { return Range(seq_first, seq_last); };  // Errors only.

  for (;;) {
    int rc = WriteTxn(*batch, next);
    if (rc == 0) {
      break;
    }
    if (rc == MDB_MAP_FULL) {
      Status grown = GrowMap();
      if (grown.ok()) {
        continue;
      }
      Complete(batch, Status::NoSpace("events " + range() + " not appended: " + grown.message()));
      return;
    }
    if ((rc == ENOSPC || rc == EDQUOT) && EnvFailed()) {
      // The failed write was LMDB's meta page: LMDB has marked the environment unusable
      // (every later transaction gets MDB_PANIC), so only a restart can continue.
      Fatal(batch, Status::IoError("LMDB could not write its meta page while committing events " +
                                   range() + " in " + options_.dir + " (" + mdb_strerror(rc) +
                                   ") and is in its fatal state"));
      return;
    }
    if (rc == ENOSPC || rc == EDQUOT) {
      Complete(batch, Status::NoSpace("disk full while committing events " + range() + " in " +
                                      options_.dir + " (" + mdb_strerror(rc) +
                                      "); nothing was acknowledged; appends resume once space "
                                      "is freed"));
      return;
    }
    Fatal(batch, Status::IoError("commit of events " + range() + " in " + options_.dir +
                                 " failed: " + mdb_strerror(rc)));
    return;
  }
  {
    std::lock_guard lock(head_mu_);
    head_ = next;
  }
  for (Request& request : *batch) {
    AppendResult result{request.seq_first, request.seq_first + request.drafts.size() - 1};
    request.done(result);
  }
}

bool Log::Impl::EnvFailed() {
  MDB_txn* probe = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &probe);
  if (rc == 0) {
    mdb_txn_abort(probe);
  }
  return rc == MDB_PANIC;
}

int Log::Impl::WriteTxn(const std::vector<Request>& batch, const Head& next) {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) {
    return rc;
  }
  uint8_t key_bytes[kKeyBytes];
  for (const Request& request : batch) {
    uint64_t seq = request.seq_first;
    for (const Draft& draft : request.drafts) {
      PutBe64(seq++, key_bytes);
      MDB_val key = Val(key_bytes, kKeyBytes);
      MDB_val value = Val(draft.buffer.data(), draft.buffer.size());
      rc = mdb_put(txn, events_dbi_, &key, &value, MDB_APPEND);
      if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
      }
    }
  }
  uint8_t seq_bytes[8];
  PutBe64(next.seq, seq_bytes);
  MDB_val k_seq = Val(kMetaHeadSeq, sizeof(kMetaHeadSeq) - 1);
  MDB_val k_hash = Val(kMetaHeadHash, sizeof(kMetaHeadHash) - 1);
  MDB_val v_seq = Val(seq_bytes, 8);
  MDB_val v_hash = Val(next.hash.data(), next.hash.size());
  rc = mdb_put(txn, meta_dbi_, &k_seq, &v_seq, 0);
  if (rc == 0) rc = mdb_put(txn, meta_dbi_, &k_hash, &v_hash, 0);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  // The one fsync of the group commit happens here; nothing is acknowledged before it returns 0.
  return mdb_txn_commit(txn);
}

Status Log::Impl::GrowMap() {
  std::unique_lock exclusive(resize_mu_);  // Waits for this process's scans to finish.
  if (map_bytes_ >= options_.map_bytes_max) {
    return Status::NoSpace("event log map is full at its maximum of " +
                           std::to_string(options_.map_bytes_max) + " bytes");
  }
  uint64_t grown = std::min(map_bytes_ * 2, options_.map_bytes_max);
  int rc = mdb_env_set_mapsize(env_, grown);
  if (rc != 0) {
    return Status::IoError("grow map to " + std::to_string(grown) + ": " + mdb_strerror(rc));
  }
  MDB_envinfo info;
  CL_ASSERT(mdb_env_info(env_, &info) == 0);
  map_bytes_ = info.me_mapsize;
  return Status::Ok();
}

void Log::Impl::Complete(std::vector<Request>* batch, const Status& status) {
  CL_ASSERT(!status.ok());
  for (Request& request : *batch) {
    request.done(status);
  }
}

void Log::Impl::Fatal(std::vector<Request>* batch, const Status& status) {
  Status closed = Status::Closed("event log writer stopped after a fatal error: " +
                                 status.message());
  std::deque<Request> pending;
  {
    std::lock_guard lock(mu_);
    failed_ = true;
    failure_ = closed;
    pending.swap(queue_);
    queued_events_ = 0;
  }
  queue_space_.notify_all();
  // No acknowledgement after the failure: every waiting producer learns it failed.
  Complete(batch, closed);
  for (Request& request : pending) {
    request.done(closed);
  }
  if (options_.on_fatal) {
    options_.on_fatal(status);
  } else {
    DefaultOnFatal(status);
  }
}

// ---- Log ----------------------------------------------------------------------------------------

Log::Log(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Log::~Log() = default;

Result<std::unique_ptr<Log>> Log::Open(Options options) {
  if (options.dir.empty()) {
    return Status::InvalidArgument("no data directory given");
  }
  if (options.map_bytes_initial == 0 || options.map_bytes_max < options.map_bytes_initial) {
    return Status::InvalidArgument("map_bytes_initial must be > 0 and <= map_bytes_max");
  }
  if (options.commit_events_max == 0 || options.queue_events_max == 0) {
    return Status::InvalidArgument("commit_events_max and queue_events_max must be > 0");
  }
  auto impl = std::make_unique<Impl>();
  impl->options_ = std::move(options);
  const std::string& dir = impl->options_.dir;
  if (impl->options_.read_only) {
    struct stat st;
    if (stat((dir + "/" + kDataFile).c_str(), &st) != 0) {
      return Status::NotFound("no cloister event log in " + dir);
    }
  } else if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError("create data directory " + dir + ": " + Errno(errno));
  }
  Status s = CheckLocalFilesystem(dir);
  if (!s.ok()) {
    return s;
  }
  if (!impl->options_.read_only) {
    Result<int> fd = AcquireWriterLock(dir);
    if (!fd.ok()) {
      return fd.status();
    }
    impl->lock_fd_ = *fd;
  }
  s = impl->OpenEnv();
  if (s.ok()) s = impl->OpenDatabases();
  if (s.ok()) s = impl->VerifyTail();
  if (!s.ok()) {
    return s;
  }
  if (!impl->options_.read_only) {
    impl->StartWriter();
  }
  return std::unique_ptr<Log>(new Log(std::move(impl)));
}

void Log::AppendAsync(std::vector<Draft> drafts, AppendCallback done) {
  impl_->AppendAsync(std::move(drafts), std::move(done));
}

Result<AppendResult> Log::Append(std::vector<Draft> drafts) {
  std::promise<Result<AppendResult>> promise;
  auto future = promise.get_future();
  impl_->AppendAsync(std::move(drafts),
                     [&promise](Result<AppendResult> result) { promise.set_value(std::move(result)); });
  return future.get();
}

Head Log::head() const { return impl_->head(); }

Status Log::Scan(uint64_t seq_from, uint64_t seq_to, const ScanCallback& callback) const {
  return impl_->Scan(seq_from, seq_to, callback);
}

Result<Head> Log::VerifyAll() const { return impl_->VerifyAll(); }

uint64_t Log::MapBytesForTest() const { return impl_->map_bytes(); }

}  // namespace cloister::log
