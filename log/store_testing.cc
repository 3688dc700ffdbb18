#include "log/store_testing.h"

namespace cloister::log::testing {

std::array<uint8_t, 8> SeqKey(uint64_t seq) {
  std::array<uint8_t, 8> key;
  for (int i = 7; i >= 0; i--) {
    key[static_cast<size_t>(i)] = static_cast<uint8_t>(seq & 0xff);
    seq >>= 8;
  }
  return key;
}

Status EditStore(const std::string& dir,
                 const std::function<bool(MDB_txn* txn, MDB_dbi events, MDB_dbi meta)>& edit) {
  MDB_env* env = nullptr;
  if (mdb_env_create(&env) != 0) {
    return Status::IoError("mdb_env_create");
  }
  MDB_txn* txn = nullptr;
  MDB_dbi events = 0;
  MDB_dbi meta = 0;
  int rc = mdb_env_set_maxdbs(env, 4);
  if (rc == 0) rc = mdb_env_open(env, dir.c_str(), 0, 0600);
  if (rc == 0) rc = mdb_txn_begin(env, nullptr, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, "events", 0, &events);
  if (rc == 0) rc = mdb_dbi_open(txn, "meta", 0, &meta);
  if (rc != 0) {
    if (txn != nullptr) mdb_txn_abort(txn);
    mdb_env_close(env);
    return Status::IoError("open store in " + dir + ": " + mdb_strerror(rc));
  }
  if (!edit(txn, events, meta)) {
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return Status::InvalidArgument("edit of " + dir + " aborted");
  }
  rc = mdb_txn_commit(txn);
  mdb_env_close(env);
  return rc == 0 ? Status::Ok() : Status::IoError(std::string("commit: ") + mdb_strerror(rc));
}

Status RewriteStoredEvent(const std::string& dir, uint64_t seq,
                          const std::function<void(std::string* bytes)>& edit) {
  return EditStore(dir, [&](MDB_txn* txn, MDB_dbi events, MDB_dbi) {
    std::array<uint8_t, 8> key_bytes = SeqKey(seq);
    MDB_val key{key_bytes.size(), key_bytes.data()};
    MDB_val value;
    if (mdb_get(txn, events, &key, &value) != 0) {
      return false;
    }
    std::string bytes(static_cast<const char*>(value.mv_data), value.mv_size);
    edit(&bytes);
    MDB_val edited{bytes.size(), bytes.data()};
    return mdb_put(txn, events, &key, &edited, 0) == 0;
  });
}

}  // namespace cloister::log::testing
