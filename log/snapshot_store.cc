#include "log/snapshot_store.h"

#include <errno.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "log/assert.h"
#include "log/filesystem.h"

namespace cloister::log {
namespace {

constexpr char kMagic[4] = {'C', 'L', 'S', 'N'};
constexpr char kDataFile[] = "data.mdb";
constexpr size_t kKeyBytes = 8;
constexpr uint64_t kMapBytesInitial = 1ull << 30;  // Address space only; the file grows as used.
constexpr uint64_t kMapBytesMax = 4 * kSnapshotBytesMax;

// Header layout (docs in snapshot_store.h).
constexpr size_t kVersionAt = sizeof(kMagic);
constexpr size_t kSeqAt = kVersionAt + 4;
constexpr size_t kLogHashAt = kSeqAt + 8;
constexpr size_t kPayloadBytesAt = kLogHashAt + 32;
constexpr size_t kSha256At = kPayloadBytesAt + 8;
constexpr size_t kHeaderBytes = kSha256At + 32;
static_assert(kHeaderBytes == 88);

void PutBe(uint64_t value, size_t bytes, uint8_t* out) {
  for (size_t i = bytes; i-- > 0;) {
    out[i] = static_cast<uint8_t>(value & 0xff);
    value >>= 8;
  }
}

uint64_t GetBe(const uint8_t* in, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; i++) {
    value = (value << 8) | in[i];
  }
  return value;
}

std::array<uint8_t, kKeyBytes> Key(uint64_t seq) {
  std::array<uint8_t, kKeyBytes> key;
  PutBe(seq, kKeyBytes, key.data());
  return key;
}

MDB_val Val(const void* data, size_t size) { return MDB_val{size, const_cast<void*>(data)}; }

Hash Sha256(std::span<const uint8_t> bytes) {
  Hash out{};
  unsigned int size = 0;
  // A failure here means OpenSSL itself is broken (no memory for a digest context).
  CL_ASSERT(EVP_Digest(bytes.data(), bytes.size(), out.data(), &size, EVP_sha256(), nullptr) == 1);
  CL_ASSERT(size == out.size());
  return out;
}

std::string Lmdb(const std::string& what, int rc) { return what + ": " + mdb_strerror(rc); }

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

// The LMDB environment and its one database. Every method runs under SnapshotStore::mu_.
class SnapshotStore::Env {
 public:
  ~Env() {
    if (env_ != nullptr) {
      mdb_env_close(env_);
    }
  }

  Status Open(const std::string& path, bool read_only) {
    path_ = path;
    int rc = mdb_env_create(&env_);
    if (rc != 0) {
      env_ = nullptr;
      return Status::IoError(Lmdb("mdb_env_create", rc));
    }
    rc = mdb_env_set_mapsize(env_, kMapBytesInitial);
    if (rc != 0) {
      return Status::IoError(Lmdb("snapshot map size", rc));
    }
    // Default sync flags only, as for the log: a committed snapshot is on disk.
    const unsigned int flags = MDB_NOTLS | (read_only ? MDB_RDONLY : 0);
    rc = mdb_env_open(env_, path.c_str(), flags, 0600);
    if (rc != 0) {
      return Status::IoError(Lmdb("open snapshot store in " + path, rc));
    }
    int dead_readers = 0;
    mdb_reader_check(env_, &dead_readers);
    MDB_txn* txn = nullptr;
    rc = BeginTxn(read_only ? MDB_RDONLY : 0, &txn);
    if (rc != 0) {
      return Status::IoError(Lmdb("begin transaction in " + path, rc));
    }
    rc = mdb_dbi_open(txn, nullptr, 0, &dbi_);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return Status::IoError(Lmdb("open snapshot database in " + path, rc));
    }
    // Commit (even read-only) so the database handle outlives this transaction.
    rc = mdb_txn_commit(txn);
    return rc == 0 ? Status::Ok() : Status::IoError(Lmdb("commit open transaction", rc));
  }

  // Begins a transaction, adopting a map size another process grew to.
  int BeginTxn(unsigned int flags, MDB_txn** txn) {
    int rc = mdb_txn_begin(env_, nullptr, flags, txn);
    for (int attempt = 0; rc == MDB_MAP_RESIZED && attempt < 3; attempt++) {
      mdb_env_set_mapsize(env_, 0);  // No transaction is open in this process (mu_ is held).
      rc = mdb_txn_begin(env_, nullptr, flags, txn);
    }
    return rc;
  }

  // One attempt at Put's transaction: returns an LMDB or errno code, 0 on success.
  int TryPut(uint64_t seq, const Hash& log_hash, std::span<const uint8_t> bytes, const Hash& sha256,
             size_t keep) {
    MDB_txn* txn = nullptr;
    int rc = BeginTxn(0, &txn);
    if (rc != 0) {
      return rc;
    }
    const auto key_bytes = Key(seq);
    MDB_val key = Val(key_bytes.data(), key_bytes.size());
    MDB_val value = Val(nullptr, kHeaderBytes + bytes.size());
    rc = mdb_put(txn, dbi_, &key, &value, MDB_RESERVE);
    if (rc == 0) {
      uint8_t* out = static_cast<uint8_t*>(value.mv_data);
      std::memcpy(out, kMagic, sizeof(kMagic));
      PutBe(kSnapshotFormatVersion, 4, out + kVersionAt);
      PutBe(seq, 8, out + kSeqAt);
      std::memcpy(out + kLogHashAt, log_hash.data(), log_hash.size());
      PutBe(bytes.size(), 8, out + kPayloadBytesAt);
      std::memcpy(out + kSha256At, sha256.data(), sha256.size());
      if (!bytes.empty()) {
        std::memcpy(out + kHeaderBytes, bytes.data(), bytes.size());
      }
      rc = TrimToNewest(txn, keep);
    }
    if (rc != 0) {
      mdb_txn_abort(txn);
      return rc;
    }
    return mdb_txn_commit(txn);
  }

  Status Grow() {
    MDB_envinfo info;
    CL_ASSERT(mdb_env_info(env_, &info) == 0);
    if (info.me_mapsize >= kMapBytesMax) {
      return Status::NoSpace("snapshot store map is full at its maximum of " +
                             std::to_string(kMapBytesMax) + " bytes");
    }
    const uint64_t grown = std::min<uint64_t>(info.me_mapsize * 2, kMapBytesMax);
    const int rc = mdb_env_set_mapsize(env_, grown);
    return rc == 0 ? Status::Ok() : Status::IoError(Lmdb("grow snapshot map", rc));
  }

  // Runs read(txn) in a read transaction.
  template <typename Fn>
  Status Read(const Fn& read) {
    MDB_txn* txn = nullptr;
    int rc = BeginTxn(MDB_RDONLY, &txn);
    if (rc != 0) {
      return Status::IoError(Lmdb("begin read transaction in " + path_, rc));
    }
    Status status = read(txn);
    mdb_txn_abort(txn);
    return status;
  }

  MDB_env* env() const { return env_; }
  MDB_dbi dbi() const { return dbi_; }

 private:
  // Deletes every snapshot but the keep newest: collects their keys first, then deletes by key,
  // which keeps clear of LMDB's cursor positioning rules after a delete.
  int TrimToNewest(MDB_txn* txn, size_t keep) {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, dbi_, &cursor);
    if (rc != 0) {
      return rc;
    }
    std::vector<std::string> doomed;
    MDB_val key;
    MDB_val value;
    size_t seen = 0;
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_PREV)) {
      if (++seen > keep) {
        doomed.emplace_back(static_cast<const char*>(key.mv_data), key.mv_size);
      }
    }
    mdb_cursor_close(cursor);
    if (rc != MDB_NOTFOUND) {
      return rc;
    }
    for (const std::string& doomed_key : doomed) {
      MDB_val k = Val(doomed_key.data(), doomed_key.size());
      rc = mdb_del(txn, dbi_, &k, nullptr);
      if (rc != 0) {
        return rc;
      }
    }
    return 0;
  }

  std::string path_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

SnapshotStore::SnapshotStore(std::unique_ptr<Env> env, bool read_only, size_t keep)
    : env_(std::move(env)), read_only_(read_only), keep_(keep) {}

SnapshotStore::~SnapshotStore() = default;

std::string SnapshotStore::PathFor(const std::string& data_dir) {
  return data_dir + "/" + kSnapshotsDirName;
}

Result<std::unique_ptr<SnapshotStore>> SnapshotStore::Open(const std::string& data_dir,
                                                           bool read_only, size_t keep) {
  CL_ASSERT(keep >= 1);
  const std::string path = PathFor(data_dir);
  if (read_only && !FileExists(path + "/" + kDataFile)) {
    // Nothing was ever stored: an empty store, so that readers need no special case.
    return std::unique_ptr<SnapshotStore>(new SnapshotStore(nullptr, read_only, keep));
  }
  if (!read_only && mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError("create " + path + ": " + std::strerror(errno));
  }
  Status local = CheckLocalFilesystem(path);
  if (!local.ok()) {
    return local;
  }
  auto env = std::make_unique<Env>();
  Status status = env->Open(path, read_only);
  if (!status.ok()) {
    return status;
  }
  return std::unique_ptr<SnapshotStore>(new SnapshotStore(std::move(env), read_only, keep));
}

Status SnapshotStore::Put(uint64_t seq, const Hash& log_hash, std::span<const uint8_t> bytes) {
  if (seq == 0) {
    return Status::InvalidArgument("snapshot at seq 0: there is nothing to snapshot");
  }
  if (bytes.size() > kSnapshotBytesMax) {
    return Status::InvalidArgument("snapshot of " + std::to_string(bytes.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(kSnapshotBytesMax));
  }
  if (read_only_) {
    return Status::Unsupported("snapshot store was opened read-only");
  }
  const Hash sha256 = Sha256(bytes);  // Outside the lock and the write transaction.
  std::lock_guard lock(mu_);
  CL_ASSERT(env_ != nullptr);  // A writable store always has its environment.
  for (;;) {
    const int rc = env_->TryPut(seq, log_hash, bytes, sha256, keep_);
    if (rc == 0) {
      return Status::Ok();
    }
    const std::string what = "write snapshot at seq " + std::to_string(seq);
    if (rc == MDB_MAP_FULL) {
      Status grown = env_->Grow();
      if (!grown.ok()) {
        return Status::NoSpace(what + ": " + grown.message());
      }
      continue;
    }
    if (rc == ENOSPC || rc == EDQUOT) {
      return Status::NoSpace(Lmdb(what, rc));
    }
    return Status::IoError(Lmdb(what, rc));
  }
}

Result<std::vector<SnapshotInfo>> SnapshotStore::List() const {
  std::lock_guard lock(mu_);
  std::vector<SnapshotInfo> infos;
  if (env_ == nullptr) {
    return infos;
  }
  Status status = env_->Read([&](MDB_txn* txn) {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, env_->dbi(), &cursor);
    if (rc != 0) {
      return Status::IoError(Lmdb("open snapshot cursor", rc));
    }
    MDB_val key;
    MDB_val value;
    Status result;
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_LAST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_PREV)) {
      if (key.mv_size != kKeyBytes) {
        result =
            Status::Corruption("snapshot store key of " + std::to_string(key.mv_size) + " bytes");
        break;
      }
      SnapshotInfo info;
      info.seq = GetBe(static_cast<const uint8_t*>(key.mv_data), kKeyBytes);
      info.stored_bytes = value.mv_size;
      if (value.mv_size >= kHeaderBytes) {
        info.payload_bytes = GetBe(static_cast<const uint8_t*>(value.mv_data) + kPayloadBytesAt, 8);
      }
      infos.push_back(info);
    }
    mdb_cursor_close(cursor);
    if (result.ok() && rc != MDB_NOTFOUND) {
      result = Status::IoError(Lmdb("list snapshots", rc));
    }
    return result;
  });
  if (!status.ok()) {
    return status;
  }
  return infos;
}

Result<Snapshot> SnapshotStore::Get(uint64_t seq) const {
  std::lock_guard lock(mu_);
  const std::string name = "snapshot " + std::to_string(seq);
  if (env_ == nullptr) {
    return Status::NotFound("no " + name);
  }
  Snapshot snapshot;
  Status status = env_->Read([&](MDB_txn* txn) {
    const auto key_bytes = Key(seq);
    MDB_val key = Val(key_bytes.data(), key_bytes.size());
    MDB_val value;
    const int rc = mdb_get(txn, env_->dbi(), &key, &value);
    if (rc == MDB_NOTFOUND) {
      return Status::NotFound("no " + name);
    }
    if (rc != 0) {
      return Status::IoError(Lmdb("read " + name, rc));
    }
    const uint8_t* in = static_cast<const uint8_t*>(value.mv_data);
    if (value.mv_size < kHeaderBytes || std::memcmp(in, kMagic, sizeof(kMagic)) != 0) {
      return Status::Corruption(name + ": no snapshot header");
    }
    const uint64_t version = GetBe(in + kVersionAt, 4);
    if (version != kSnapshotFormatVersion) {
      return Status::FormatMismatch(name + " has snapshot format version " +
                                    std::to_string(version) + ", this build reads " +
                                    std::to_string(kSnapshotFormatVersion));
    }
    if (GetBe(in + kSeqAt, 8) != seq) {
      return Status::Corruption(name + ": header names seq " +
                                std::to_string(GetBe(in + kSeqAt, 8)));
    }
    const uint64_t payload_bytes = GetBe(in + kPayloadBytesAt, 8);
    if (payload_bytes != value.mv_size - kHeaderBytes) {
      return Status::Corruption(name + ": header says " + std::to_string(payload_bytes) +
                                " bytes, " + std::to_string(value.mv_size - kHeaderBytes) +
                                " stored");
    }
    const std::span<const uint8_t> payload(in + kHeaderBytes, payload_bytes);
    if (std::memcmp(Sha256(payload).data(), in + kSha256At, 32) != 0) {
      return Status::Corruption(name + ": SHA-256 mismatch");
    }
    snapshot.seq = seq;
    std::memcpy(snapshot.log_hash.data(), in + kLogHashAt, 32);
    snapshot.bytes.assign(payload.begin(), payload.end());
    return Status::Ok();
  });
  if (!status.ok()) {
    return status;
  }
  return snapshot;
}

Status SnapshotStore::EditStoredForTest(uint64_t seq,
                                        const std::function<void(std::string*)>& edit) {
  std::lock_guard lock(mu_);
  CL_ASSERT(env_ != nullptr && !read_only_);
  MDB_txn* txn = nullptr;
  int rc = env_->BeginTxn(0, &txn);
  if (rc != 0) {
    return Status::IoError(Lmdb("begin", rc));
  }
  const auto key_bytes = Key(seq);
  MDB_val key = Val(key_bytes.data(), key_bytes.size());
  MDB_val value;
  rc = mdb_get(txn, env_->dbi(), &key, &value);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return rc == MDB_NOTFOUND ? Status::NotFound("no snapshot " + std::to_string(seq))
                              : Status::IoError(Lmdb("read", rc));
  }
  std::string stored(static_cast<const char*>(value.mv_data), value.mv_size);
  edit(&stored);
  MDB_val edited = Val(stored.data(), stored.size());
  rc = mdb_put(txn, env_->dbi(), &key, &edited, 0);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return Status::IoError(Lmdb("write", rc));
  }
  rc = mdb_txn_commit(txn);
  return rc == 0 ? Status::Ok() : Status::IoError(Lmdb("commit", rc));
}

}  // namespace cloister::log
