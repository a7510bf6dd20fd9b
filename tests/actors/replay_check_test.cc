// Tests for actors/replay/replay_check.cc: RocksDB's own check of a replay database (check_replay_db,
// verify_replay_db), the WAL damage locator (replay::find_wal_damage), and ReplayStore::audit and the
// inspection calls reading past a corrupt table block, a corrupt metadata block and a corrupt WAL record.
#include <doctest/doctest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/metadata.h>

#include "actors/replay/replay_store.h"
#include "base/file.h"
#include "tests/actors/replay_test_util.h"

using namespace m1;
using namespace m1::test;

namespace {

// Flushes every column family of the (closed) store in DIR into table files.
void flush_all(const std::string& dir) {
  with_raw_db(dir, false, [](rocksdb::DB* db, const auto& hs, const auto&) {
    CHECK(db->Flush(rocksdb::FlushOptions(), hs).ok());
  });
}

// The one live table file of column family CF in the store in DIR (after flush_all), full path.
std::string table_of(const std::string& dir, const std::string& cf) {
  std::vector<rocksdb::LiveFileMetaData> md;
  with_raw_db(dir, true, [&](rocksdb::DB* db, const auto&, const auto&) { db->GetLiveFilesMetaData(&md); });
  std::string out;
  for (const auto& f : md)
    if (f.column_family_name == cf) out = dir + "/" + (f.name[0] == '/' ? f.name.substr(1) : f.name);
  REQUIRE_MESSAGE(!out.empty(), "no table file for column family " << cf);
  return out;
}

// A store of N groups (ids 1..N, seq = id) in DIR, unsynced for speed; FLUSHED: into table files,
// else only in the WAL.
void make_store(const std::string& dir, int n, bool flushed) {
  {
    ReplayOptions o;
    o.sync = false;
    auto s = open_store(dir, o);
    for (int i = 1; i <= n; i += 50) {
      std::vector<msg::Bytes> batch;
      for (int j = i; j < i + 50 && j <= n; ++j) batch.push_back(group(uint64_t(j), 1));
      append_ok(*s, batch, batch.size());
    }
  }
  if (flushed) flush_all(dir);
}

}  // namespace

TEST_CASE("replay format: find_wal_damage names the bad record of a RocksDB WAL, not a cut-off tail") {
  // Two records in RocksDB's log format: masked CRC-32C of type‖payload, u16 length, type 1 (full).
  auto record = [](const std::string& payload) {
    std::string t = "\x01" + payload;
    const uint32_t c = replay::crc32c(t.data(), t.size());
    const uint32_t masked = ((c >> 15) | (c << 17)) + 0xa282ead8u;
    std::string r;
    for (int i = 0; i < 4; ++i) r.push_back(char((masked >> (8 * i)) & 0xff));
    r.push_back(char(payload.size() & 0xff));
    r.push_back(char(payload.size() >> 8));
    r.push_back('\x01');
    return r + payload;
  };
  const std::string a = record(std::string(100, 'a')), b = record(std::string(50, 'b'));
  const std::string log = a + b;
  CHECK(replay::find_wal_damage(log) == "");
  CHECK(replay::find_wal_damage("") == "");
  CHECK(replay::find_wal_damage(log.substr(0, log.size() - 10)) == "");  // a write cut by a crash
  std::string bad = log;
  bad[a.size() + 20] ^= 1;
  CHECK(replay::find_wal_damage(bad).find(fmt::format("offset {}: checksum mismatch", a.size())) == 0);
  bad = log;
  bad[4] = bad[5] = '\xff';  // a length running past its 32 KiB block, with more of the file after it
  bad += std::string(40000, '\0');
  CHECK(replay::find_wal_damage(bad).find("offset 0: bad record length") == 0);
}

TEST_CASE("replay: a corrupt table block is named by check_replay_db, refused by verify, read past by audit") {
  TempDir d("badsst");
  make_store(d.path, 200, true);
  {
    const ReplayDbCheck c = check_replay_db(d.path);
    CHECK(c.exists);
    CHECK(c.ok());
    CHECK(c.sst_files >= 5);
    CHECK(verify_replay_db(d.path).is_ok());
    ReplayOptions ro;
    ro.read_only = true;
    auto a = open_store(d.path, ro)->audit();
    REQUIRE(a.is_ok());
    CHECK(a->records == 200);
    CHECK(a->intact == 200);
    CHECK(a->errors.empty());
  }
  CHECK(verify_replay_db(d.path + "/none").is_ok());  // no database yet: a fresh run
  const std::string sst = table_of(d.path, replay::kCfGroups);
  corrupt_middle(sst);
  const std::string file = std::filesystem::path(sst).filename().string();

  const ReplayDbCheck c = check_replay_db(d.path);
  CHECK(c.wal_ok);
  REQUIRE(c.damage.size() == 1);
  CHECK(c.damage[0].find("SST " + file + " (column family groups") == 0);
  CHECK(c.damage[0].find("Corruption") != std::string::npos);
  const Status v = verify_replay_db(d.path);
  REQUIRE(!v.is_ok());
  CHECK(v.message().find(d.path) != std::string::npos);
  CHECK(v.message().find(file) != std::string::npos);
  CHECK(v.message().find("m1rl replay check") != std::string::npos);
  CHECK(v.message().find("--skip-damaged --out FILE") != std::string::npos);

  // Record by record: the groups of the bad block are named; every other one is read and passed.
  ReplayOptions ro;
  ro.read_only = true;
  auto r = open_store(d.path, ro);
  std::set<uint64_t> seen;
  auto a = r->audit([&](const ReplayGroup& g) {
    CHECK(g.integrity.empty());
    seen.insert(g.meta.group_id);
    return true;
  });
  REQUIRE(a.is_ok());
  INFO("damaged: " << a->damaged());
  CHECK(a->records == 200);
  CHECK(a->unreadable > 0);
  CHECK(a->unreadable < 50);
  CHECK(a->bad_payload == 0);
  CHECK(a->intact + a->unreadable == 200);
  CHECK(seen.size() == a->intact);
  // One bad block: one line naming its seqs (= ids here), its group ids and RocksDB's message.
  REQUIRE(a->errors.size() == 1);
  INFO(a->errors[0]);
  std::vector<uint64_t> lost;
  for (uint64_t id = 1; id <= 200; ++id)
    if (!seen.count(id)) lost.push_back(id);
  REQUIRE(lost.size() == a->unreadable);
  REQUIRE(lost.back() - lost.front() + 1 == lost.size());  // one contiguous stretch
  if (lost.size() == 1) {
    CHECK(a->errors[0].find(fmt::format("group {} (seq {}): record unreadable: Corruption", lost[0], lost[0])) == 0);
  } else {
    CHECK(a->errors[0].find(fmt::format("seqs {}..{} ({} groups; group ids {}, {}", lost.front(), lost.back(),
                                        lost.size(), lost[0], lost[1])) == 0);
    CHECK(a->errors[0].find("): record unreadable: Corruption: block checksum mismatch") != std::string::npos);
  }
  CHECK(!r->for_each({}, [](const ReplayGroup&) { return true; }).is_ok());  // the strict reader stops
}

TEST_CASE("replay: a corrupt metadata block: stats and list go on past it, audit names the seqs") {
  TempDir d("badmetasst");
  make_store(d.path, 1000, true);
  corrupt_middle(table_of(d.path, replay::kCfMeta));
  CHECK(!verify_replay_db(d.path).is_ok());
  ReplayOptions ro;
  ro.read_only = true;
  auto r = open_store(d.path, ro);
  auto a = r->audit();
  REQUIRE(a.is_ok());
  CHECK(a->records == 1000);
  CHECK(a->unreadable > 0);
  CHECK(a->unreadable < 200);
  CHECK(a->intact + a->unreadable == 1000);
  REQUIRE(a->errors.size() == 1);  // one stretch of seqs
  CHECK(a->errors[0].find("metadata unreadable: Corruption") != std::string::npos);
  CHECK(a->errors[0].find(" groups; group ids ") != std::string::npos);  // read from their records
  auto st = r->stats();
  REQUIRE_MESSAGE(st.is_ok(), st.status().message());
  CHECK(st->total == a->intact);
  REQUIRE(st->errors.size() == 1);
  CHECK(st->errors[0].find("unreadable") != std::string::npos);
  ReplayFilter all;
  all.limit = 0;
  auto ls = r->list(all);
  REQUIRE(ls.is_ok());
  CHECK(ls->groups.size() == a->intact);
  CHECK(ls->groups.back().group_id == 1000);  // read past the damage to the end
}

TEST_CASE("replay: a corrupt WAL record is refused by verify and by the writer; salvage reads around it") {
  TempDir d("badwal");
  make_store(d.path, 200, true);
  {  // 50 more acknowledged groups only in the WAL (synced, never flushed)
    auto s = open_store(d.path);
    for (uint64_t id = 201; id <= 250; ++id) append_ok(*s, {group(id, 1)}, 1);
  }
  CHECK(verify_replay_db(d.path).is_ok());
  const std::string wal = newest_wal(d.path);
  corrupt_middle(wal);

  const ReplayDbCheck c = check_replay_db(d.path);
  CHECK(!c.wal_ok);
  REQUIRE(!c.damage.empty());
  const std::string file = std::filesystem::path(wal).filename().string();
  CHECK(c.damage[0].find("WAL " + file + ": offset ") == 0);
  const Status v = verify_replay_db(d.path);
  REQUIRE(!v.is_ok());
  CHECK(v.message().find(file) != std::string::npos);
  CHECK(v.message().find("--skip-damaged") != std::string::npos);
  // The writer no longer replays up to the bad record and drops the rest silently.
  CHECK(!ReplayStore::open(d.path, ReplayOptions()).is_ok());

  ReplayOptions ro;
  ro.read_only = true;
  ro.salvage = true;
  auto r = open_store(d.path, ro);
  auto a = r->audit();
  REQUIRE(a.is_ok());
  CHECK(a->intact >= 200);  // the table files, and the WAL records on both sides of the bad one
  CHECK(a->intact < 250);
  CHECK(a->intact + a->unreadable == a->records);
  // Records after the bad one were read back, so the seqs it held show up as a gap.
  CHECK(a->unreadable > 0);
  bool gap = false;
  for (const auto& e : a->errors) gap |= e.find("no metadata (lost)") != std::string::npos;
  CHECK(gap);
}
