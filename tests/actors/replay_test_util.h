// Helpers for the replay store tests (replay_store_test.cc, replay_check_test.cc): a temporary store
// directory, synthetic groups, opening and filling a store with doctest checks, and raw access to a
// closed store's RocksDB database (to corrupt, flush or inspect it behind the store's back).
// Failures are doctest REQUIRE/CHECK failures of the calling test. Thread safety: test thread only.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <rocksdb/db.h>

#include "actors/replay/replay_store.h"
#include "base/file.h"

namespace m1::test {

// A fresh directory per test, removed at the end.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) {
    path = "/tmp/m1-replay-test-" + std::to_string(getpid()) + "-" + name;
    remove_all(path);
  }
  ~TempDir() { remove_all(path); }
};

inline msg::Bytes group(uint64_t id, uint64_t version, const std::string& task = "add", float reward = 0.5f,
                        int rollouts = 4, int tokens = 8) {
  return make_synthetic_group(id, task, version, rollouts, tokens, reward);
}

inline std::unique_ptr<ReplayStore> open_store(const std::string& dir, ReplayOptions o = {}) {
  auto s = ReplayStore::open(dir, o);
  REQUIRE_MESSAGE(s.is_ok(), s.status().message());
  return std::move(s).value();
}

inline void append_ok(ReplayStore& s, std::vector<msg::Bytes> gs, size_t want_new) {
  auto r = s.append(gs);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  CHECK(r->appended == want_new);
  CHECK(r->duplicates == gs.size() - want_new);
}

// Opens the closed store in DIR raw, with every column family (read-write, or RocksDB's read-only
// mode when READ_ONLY), runs FN with the database, the handles and their names (same order), closes it.
inline void with_raw_db(const std::string& dir, bool read_only,
                        const std::function<void(rocksdb::DB*, const std::vector<rocksdb::ColumnFamilyHandle*>&,
                                                 const std::vector<std::string>&)>& fn) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : names) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> hs;
  rocksdb::DB* db = nullptr;
  const rocksdb::Status st = read_only ? rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, descs, &hs, &db)
                                       : rocksdb::DB::Open(rocksdb::DBOptions(), dir, descs, &hs, &db);
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  fn(db, hs, names);
  for (auto* h : hs) db->DestroyColumnFamilyHandle(h);
  delete db;
}

// Flips 16 bytes at the middle of FILE: one data block of a multi-block table, or a WAL record.
inline void corrupt_middle(const std::string& file) {
  auto bytes = read_file(file);
  REQUIRE(bytes.is_ok());
  std::string b = std::move(bytes).value();
  REQUIRE(b.size() > 64);
  for (size_t i = b.size() / 2; i < b.size() / 2 + 16; ++i) b[i] = char(b[i] ^ 0x5A);
  REQUIRE(write_file(file, b).is_ok());
}

// The store's newest WAL file in DIR (full path), the one holding unflushed writes.
inline std::string newest_wal(const std::string& dir) {
  std::string out;
  for (const auto& n : list_dir(dir))
    if (n.size() > 4 && n.substr(n.size() - 4) == ".log") out = path_join(dir, n);
  REQUIRE(!out.empty());
  return out;
}

}  // namespace m1::test
