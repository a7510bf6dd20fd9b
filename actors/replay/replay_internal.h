// Internals of the replay store shared by its two implementation files: replay_store.cc (open, the
// group life cycle, inspection) and replay_check.cc (consistency, damage, RocksDB's own check).
// Not a public header: only actors/replay/*.cc include it; everyone else includes replay_store.h.
// Ownership: ReplayStore::Handles owns the RocksDB database and its column family handles and
// closes them when destroyed. Thread safety: as ReplayStore (none; one owner).
#pragma once

#include <string>
#include <vector>

#include <rocksdb/db.h>

#include "actors/replay/replay_store.h"

namespace m1 {

struct ReplayStore::Handles {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> all;
  rocksdb::ColumnFamilyHandle* def = nullptr;
  rocksdb::ColumnFamilyHandle* groups = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* ids = nullptr;
  rocksdb::ColumnFamilyHandle* pending = nullptr;
  rocksdb::ColumnFamilyHandle* consumed = nullptr;
  uint64_t pending_floor = 0;  // no Pending group has a smaller seq (skips queue tombstones)

  ~Handles() {
    if (!db) return;
    for (auto* h : all) db->DestroyColumnFamilyHandle(h);
    db->Close();
    delete db;
  }
};

namespace replay {

// Index of status S into ReplayCounters::by_status and ReplayStats::by_status.
inline size_t idx(msg::GroupStatus s) { return size_t(s); }

// "replay DIR: WHAT: RocksDB's message".
inline Status rocks_error(const std::string& dir, const char* what, const rocksdb::Status& s) {
  return Status::errorf("replay {}: {}: {}", dir, what, s.ToString());
}

}  // namespace replay

// The short names both implementation files use.
using msg::GroupStatus;
using replay::decode_u64_key;
using replay::hex;
using replay::idx;
using replay::rocks_error;
using replay::u64_key;

}  // namespace m1
