// Test-only: edits a closed log's LMDB store directly, the way a bad disk or a tamperer would.
// No process may have the data directory open while these run (LMDB forbids opening one
// environment twice in a process, and a writer elsewhere would not see the edit coherently).
#pragma once

#include <lmdb.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "log/status.h"

namespace cloister::log::testing {

// The 8-byte big-endian key of seq, as the log stores it.
std::array<uint8_t, 8> SeqKey(uint64_t seq);

// Runs edit in one write transaction on the "events" and "meta" databases of the store in dir,
// and commits it. edit returns false to abort without committing.
Status EditStore(const std::string& dir,
                 const std::function<bool(MDB_txn* txn, MDB_dbi events, MDB_dbi meta)>& edit);

// Replaces the stored bytes of event seq with edit(bytes).
Status RewriteStoredEvent(const std::string& dir, uint64_t seq,
                          const std::function<void(std::string* bytes)>& edit);

}  // namespace cloister::log::testing
