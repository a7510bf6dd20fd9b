// Tests for actors/replay: record formats, the group life cycle, durability across a killed writer,
// corruption quarantine, the secondary (read-only) view of a live writer, and a randomized history
// checked against the store's invariants. Damage checks and audit: replay_check_test.cc.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <rocksdb/db.h>

#include "actors/replay/replay_store.h"
#include "base/file.h"
#include "base/rng.h"
#include "tests/actors/replay_test_util.h"

using namespace m1;
using namespace m1::test;
using msg::GroupStatus;

namespace {

std::vector<uint64_t> ids_of(const std::vector<ReplayGroup>& gs) {
  std::vector<uint64_t> ids;
  for (const auto& g : gs) ids.push_back(g.meta.group_id);
  return ids;
}

std::vector<ReplayGroup> take(ReplayStore& s, size_t n, uint64_t version) {
  auto r = s.take_batch(n, version);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  return std::move(r).value();
}

GroupMeta meta(const ReplayStore& s, uint64_t id) {
  auto g = s.get(id);
  REQUIRE_MESSAGE(g.is_ok(), g.status().message());
  return g->meta;
}

void check_consistent(const ReplayStore& s) {
  const Status st = s.check_consistency();
  CHECK_MESSAGE(st.is_ok(), st.message());
}

// Opens DIR raw (every column family, store closed) and runs FN on column family CF.
void raw_edit(const std::string& dir, const std::string& cf,
              const std::function<void(rocksdb::DB*, rocksdb::ColumnFamilyHandle*)>& fn) {
  with_raw_db(dir, false, [&](rocksdb::DB* db, const auto& hs, const auto& names) {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == cf) fn(db, hs[i]);
  });
}

}  // namespace

TEST_CASE("replay format: crc32c, group records and metadata round-trip; corruption is named") {
  CHECK(replay::crc32c("123456789", 9) == 0xE3069283u);
  CHECK(replay::crc32c("", 0) == 0u);
  const std::string payload = "some payload bytes, longer than eight";
  const std::string rec = replay::encode_group_record(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  REQUIRE(rec.size() == replay::kGroupHeaderBytes + payload.size());
  auto back = replay::decode_group_record(rec);
  REQUIRE(back.is_ok());
  CHECK(std::string(*back) == payload);
  std::string bad = rec;
  bad[0] = 'X';
  CHECK(replay::decode_group_record(bad).status().message().find("bad magic") == 0);
  bad = rec;
  bad[4] = 9;
  CHECK(replay::decode_group_record(bad).status().message().find("unsupported record version") == 0);
  bad = rec;
  bad[replay::kGroupHeaderBytes + 3] ^= 1;
  CHECK(replay::decode_group_record(bad).status().message().find("checksum mismatch") == 0);
  CHECK(replay::decode_group_record(rec.substr(0, rec.size() - 1)).status().message().find("length mismatch") == 0);
  CHECK(!replay::decode_group_record(rec.substr(0, 5)).is_ok());

  GroupMeta m;
  m.group_id = 77;
  m.status = GroupStatus::Dropped;
  m.reason = "stale: x";
  m.task = "sort";
  m.min_version = 3;
  m.max_version = 5;
  m.reward_mean = 0.25f;
  m.size = 8;
  m.response_tokens = 512;
  m.max_response_len = 64;
  m.steps = {4, 9};
  const std::string enc = replay::encode_meta(m);
  auto dm = replay::decode_meta(12, enc);
  REQUIRE(dm.is_ok());
  CHECK(dm->seq == 12);
  CHECK(dm->group_id == 77);
  CHECK(dm->status == GroupStatus::Dropped);
  CHECK(dm->reason == "stale: x");
  CHECK(dm->task == "sort");
  CHECK(dm->steps == std::vector<uint64_t>{4, 9});
  CHECK(dm->uses() == 2);
  CHECK(dm->reward_mean == 0.25f);
  // Every truncation and every single-bit flip is rejected with a reason, never a crash.
  for (size_t n = 0; n < enc.size(); ++n) CHECK(!replay::decode_meta(1, enc.substr(0, n)).is_ok());
  for (size_t i = 0; i < enc.size(); ++i) {
    std::string e = enc;
    e[i] ^= 0x10;
    CHECK(!replay::decode_meta(1, e).is_ok());
  }
  CHECK(replay::reason_class("stale: 3 behind") == "stale");
  CHECK(replay::reason_class("missing payload") == "missing payload");
  CHECK(replay::decode_u64_key(replay::u64_key(0x0102030405060708ull)).value() == 0x0102030405060708ull);
  CHECK(replay::u64_key(1) < replay::u64_key(256));
}

TEST_CASE("replay: a killed writer loses nothing it acknowledged") {
  TempDir d("crash");
  constexpr int kTotal = 400, kKillAfter = 25;
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the writer: acknowledges each group on the pipe once append returned
    close(fds[0]);
    ReplayOptions o;
    auto s = ReplayStore::open(d.path, o);
    if (!s) _exit(2);
    for (uint64_t id = 1; id <= kTotal; ++id) {
      if (!(*s)->append({group(id, 1)}).is_ok()) _exit(3);
      if (write(fds[1], &id, sizeof id) != sizeof id) _exit(4);
    }
    _exit(0);  // no destructor, no close, no flush
  }
  close(fds[1]);
  std::vector<uint64_t> acked;
  uint64_t id;
  bool killed = false;
  while (true) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 60000) <= 0) break;  // a hung child fails the checks below
    const ssize_t n = read(fds[0], &id, sizeof id);
    if (n != sizeof id) break;
    acked.push_back(id);
    if (acked.size() == kKillAfter && !killed) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  close(fds[0]);
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  CHECK(killed);
  REQUIRE(acked.size() >= size_t(kKillAfter));
  INFO("acknowledged before the kill landed: " << acked.size());

  const Status v = verify_replay_db(d.path);  // a killed writer is not damage
  CHECK_MESSAGE(v.is_ok(), v.message());
  auto s = open_store(d.path);
  for (uint64_t a : acked) {
    auto g = s->get(a);
    REQUIRE_MESSAGE(g.is_ok(), g.status().message());
    CHECK(g->meta.status == GroupStatus::Pending);
    CHECK(g->integrity.empty());
  }
  check_consistent(*s);
  // The sampler's retry of everything: only what never became durable is new.
  std::vector<msg::Bytes> all;
  for (uint64_t i = 1; i <= kTotal; ++i) all.push_back(group(i, 1));
  auto r = s->append(all);
  REQUIRE(r.is_ok());
  CHECK(r->appended + r->duplicates == size_t(kTotal));
  CHECK(r->duplicates >= acked.size());
  CHECK(s->counters().by_status[0] == uint64_t(kTotal));
  check_consistent(*s);
}

TEST_CASE("replay: append, take, commit; reopen keeps everything; duplicates are ignored") {
  TempDir d("cycle");
  {
    auto s = open_store(d.path);
    append_ok(*s, {group(1, 1), group(2, 1), group(3, 2)}, 3);
    append_ok(*s, {group(2, 1), group(4, 2), group(4, 2)}, 1);  // 2 stored, 4 repeated in the call
    CHECK(s->counters().last_seq == 4);
    auto b = take(*s, 2, 2);
    CHECK(ids_of(b) == std::vector<uint64_t>{1, 2});
    for (const auto& g : b) {
      auto jg = msg::decode<msg::JudgedGroup>(g.bytes);
      REQUIRE(jg.is_ok());
      CHECK((*jg)->group_id() == g.meta.group_id);
    }
    CHECK(ids_of(take(*s, 10, 2)) == std::vector<uint64_t>{3, 4});  // leased ones are skipped
    CHECK(take(*s, 10, 2).empty());
    CHECK(s->counters().leased == 4);
    REQUIRE(s->commit_consumed({1, 2}, 1).is_ok());
    CHECK(s->commit_consumed({1, 2}, 1).is_ok());  // a retried commit is a no-op
    CHECK(meta(*s, 1).status == GroupStatus::Consumed);
    CHECK(meta(*s, 1).steps == std::vector<uint64_t>{1});
    CHECK(meta(*s, 3).status == GroupStatus::Pending);
    auto again = s->commit_consumed({1}, 2);
    CHECK(!again.is_ok());
    CHECK(again.message().find("group 1 is Consumed") != std::string::npos);
    auto unknown = s->commit_consumed({3, 99}, 2);
    CHECK(unknown.message().find("group 99 is unknown") != std::string::npos);
    CHECK(meta(*s, 3).uses() == 0);  // all or nothing
    s->release({3});
    CHECK(ids_of(take(*s, 10, 2)) == std::vector<uint64_t>{3});
    check_consistent(*s);
  }  // closed without any flush
  auto s = open_store(d.path);
  CHECK(s->counters().by_status[size_t(GroupStatus::Pending)] == 2);
  CHECK(s->counters().by_status[size_t(GroupStatus::Consumed)] == 2);
  CHECK(s->counters().leased == 0);
  CHECK(ids_of(take(*s, 10, 2)) == std::vector<uint64_t>{3, 4});  // reopening released the leases
  append_ok(*s, {group(1, 1), group(5, 3)}, 1);                    // 1 is still known after reopen
  CHECK(s->counters().last_seq == 5);
  check_consistent(*s);
}

TEST_CASE("replay: the published version is a durable high-water mark, committed with the consumption") {
  TempDir d("published");
  ReplayOptions o;
  o.max_uses = 2;  // group 3 stays Pending after one use: a retry must not count a second one
  {
    auto s = open_store(d.path, o);
    CHECK(s->counters().published_version == 0);  // a fresh store: nothing published
    append_ok(*s, {group(1, 1), group(2, 1), group(3, 1)}, 3);
    CHECK(take(*s, 3, 1).size() == 3);
    REQUIRE(s->commit_consumed({1, 3}, 1, 5).is_ok());
    CHECK(s->counters().published_version == 5);
    // A retried commit (its reply was lost) changes nothing: same uses, same steps, same mark.
    REQUIRE(s->commit_consumed({1, 3}, 1, 5).is_ok());
    CHECK(meta(*s, 1).steps == std::vector<uint64_t>{1});
    CHECK(meta(*s, 3).steps == std::vector<uint64_t>{1});
    CHECK(meta(*s, 3).status == GroupStatus::Pending);
    CHECK(s->counters().published_version == 5);
    // max semantics: a lower version never lowers the mark
    REQUIRE(s->commit_consumed({2}, 2, 3).is_ok());
    CHECK(s->counters().published_version == 5);
    // all or nothing: a refused commit does not raise it
    CHECK(!s->commit_consumed({3, 99}, 3, 9).is_ok());
    CHECK(s->counters().published_version == 5);
    CHECK(meta(*s, 3).uses() == 1);
    REQUIRE(s->commit_consumed({3}, 3, 7).is_ok());
    CHECK(s->counters().published_version == 7);
    // a rollback undoes consumptions, never what was published
    auto undone = s->rollback_after(2);
    REQUIRE(undone.is_ok());
    CHECK(*undone == 1);
    CHECK(s->counters().published_version == 7);
    check_consistent(*s);
  }  // closed without any flush: the mark came back from the WAL
  {
    auto s = open_store(d.path, o);
    CHECK(s->counters().published_version == 7);
    ReplayOptions ro;
    ro.read_only = true;
    auto r = open_store(d.path, ro);
    CHECK(r->counters().published_version == 7);
  }
  // A store written before the key existed has none: it reads as 0, and the first commit sets it.
  raw_edit(d.path, "default", [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), cf, replay::kPublishedVersionKey, &v).ok());
    REQUIRE(db->Delete(rocksdb::WriteOptions(), cf, replay::kPublishedVersionKey).ok());
  });
  auto s = open_store(d.path, o);
  CHECK(s->counters().published_version == 0);
  check_consistent(*s);
  append_ok(*s, {group(4, 8)}, 1);
  CHECK(take(*s, 1, 8).size() == 1);
  REQUIRE(s->commit_consumed({4}, 3, 2).is_ok());
  CHECK(s->counters().published_version == 2);
  check_consistent(*s);
}

TEST_CASE("replay: invalid buffers fail the whole append and name the index") {
  TempDir d("invalid");
  auto s = open_store(d.path);
  msg::Bytes junk(std::vector<uint8_t>(64, 0xab));
  auto r = s->append({group(1, 1), junk});
  REQUIRE(!r.is_ok());
  CHECK(r.status().message().find("group 1 of 2") != std::string::npos);
  CHECK(s->counters().last_seq == 0);
  CHECK(!s->get(1).is_ok());
  CHECK(s->get(1).status().message().find("group 1 not found") != std::string::npos);
  check_consistent(*s);
}

TEST_CASE("replay: foreign databases and bad options are refused with the directory named") {
  TempDir d("foreign");
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(o, d.path, &db).ok());
    REQUIRE(db->Put(rocksdb::WriteOptions(), "k", "v").ok());
    delete db;
  }
  auto w = ReplayStore::open(d.path, {});
  REQUIRE(!w.is_ok());
  CHECK(w.status().message().find("not a replay store") != std::string::npos);
  CHECK(w.status().message().find(d.path) != std::string::npos);
  ReplayOptions ro;
  ro.read_only = true;
  CHECK(!ReplayStore::open(d.path, ro).is_ok());
  ReplayOptions bad;
  bad.max_uses = 0;
  CHECK(!ReplayStore::open(d.path + "-x", bad).is_ok());
  CHECK(!path_exists(d.path + "-x"));
}

TEST_CASE("replay: stale groups are dropped durably, counted, and never served") {
  TempDir d("stale");
  ReplayOptions o;
  o.max_staleness = 2;
  {
    auto s = open_store(d.path, o);
    append_ok(*s, {group(1, 1), group(2, 3), group(3, 5), group(4, 2)}, 4);
    // learner version 5: 5 − 1 = 4 > 2 and 5 − 2 = 3 > 2 are stale; 5 − 3 = 2 is not.
    auto b = take(*s, 10, 5);
    CHECK(ids_of(b) == std::vector<uint64_t>{2, 3});
    for (const auto& g : b) CHECK(5 - g.meta.min_version <= o.max_staleness);
    CHECK(meta(*s, 1).status == GroupStatus::Dropped);
    CHECK(meta(*s, 1).reason.find("stale: oldest token version 1 is 4 behind learner version 5") == 0);
    CHECK(s->counters().reasons["stale"] == 2);
    CHECK(s->counters().by_status[size_t(GroupStatus::Dropped)] == 2);
    check_consistent(*s);
  }
  auto s = open_store(d.path, o);
  CHECK(s->counters().reasons["stale"] == 2);
  auto st = s->stats();
  REQUIRE(st.is_ok());
  CHECK(st->by_status[size_t(GroupStatus::Dropped)] == 2);
  CHECK(st->reasons["stale"] == 2);
  CHECK(st->errors.empty());
  // Nothing stale is served after a reopen either; a new version drops the rest.
  CHECK(ids_of(take(*s, 10, 8)).empty());
  CHECK(s->counters().reasons["stale"] == 4);
  check_consistent(*s);
}

TEST_CASE("replay: max_uses lets a group be consumed by that many steps") {
  TempDir d("uses");
  ReplayOptions o;
  o.max_uses = 2;
  o.max_staleness = 4;  // the last take is at version 3 of groups made at version 1
  auto s = open_store(d.path, o);
  append_ok(*s, {group(1, 1), group(2, 1)}, 2);
  CHECK(ids_of(take(*s, 1, 1)) == std::vector<uint64_t>{1});
  REQUIRE(s->commit_consumed({1}, 1).is_ok());
  CHECK(meta(*s, 1).status == GroupStatus::Pending);
  CHECK(meta(*s, 1).uses() == 1);
  CHECK(ids_of(take(*s, 2, 2)) == std::vector<uint64_t>{1, 2});  // oldest first, again
  REQUIRE(s->commit_consumed({1, 2}, 2).is_ok());
  CHECK(meta(*s, 1).status == GroupStatus::Consumed);
  CHECK(meta(*s, 1).steps == std::vector<uint64_t>{1, 2});
  CHECK(meta(*s, 2).status == GroupStatus::Pending);
  CHECK(ids_of(take(*s, 5, 3)) == std::vector<uint64_t>{2});
  check_consistent(*s);
  s.reset();
  o.max_uses = 1;  // a lower limit on reopen retires group 2 (1 use) instead of serving it again
  s = open_store(d.path, o);
  CHECK(take(*s, 5, 3).empty());
  CHECK(meta(*s, 2).status == GroupStatus::Consumed);
  CHECK(meta(*s, 2).uses() == 1);
}

TEST_CASE("replay: rollback_after redelivers exactly what no checkpoint committed") {
  TempDir d("rollback");
  ReplayOptions o;
  o.max_staleness = 100;
  std::set<uint64_t> step1, step2, leased;
  {
    auto s = open_store(d.path, o);
    std::vector<msg::Bytes> gs;
    for (uint64_t i = 1; i <= 12; ++i) gs.push_back(group(i, 1));
    append_ok(*s, gs, 12);
    for (auto id : ids_of(take(*s, 4, 1))) step1.insert(id);
    REQUIRE(s->commit_consumed({step1.begin(), step1.end()}, 1).is_ok());  // then checkpoint 1 lands
    for (auto id : ids_of(take(*s, 4, 2))) step2.insert(id);
    REQUIRE(s->commit_consumed({step2.begin(), step2.end()}, 2).is_ok());  // checkpoint 2 never lands
    for (auto id : ids_of(take(*s, 3, 3))) leased.insert(id);               // taken, never committed
    CHECK(leased.size() == 3);
  }  // crash
  auto s = open_store(d.path, o);
  auto undone = s->rollback_after(1);
  REQUIRE(undone.is_ok());
  CHECK(*undone == 4);
  std::set<uint64_t> redelivered;
  for (auto id : ids_of(take(*s, 100, 2))) redelivered.insert(id);
  std::set<uint64_t> want;
  for (uint64_t i = 1; i <= 12; ++i)
    if (!step1.count(i)) want.insert(i);
  CHECK(redelivered == want);  // step 2's groups, the leased ones, and the never-taken ones
  for (uint64_t id : step1) CHECK(meta(*s, id).status == GroupStatus::Consumed);
  for (uint64_t id : step2) CHECK(meta(*s, id).uses() == 0);
  CHECK(take(*s, 100, 2).empty());  // all leased now
  check_consistent(*s);
  // A second resume undoes nothing more, and releases the leases of the learner that died.
  CHECK(*s->rollback_after(1) == 0);
  CHECK(take(*s, 100, 2).size() == want.size());
  check_consistent(*s);
}

TEST_CASE("replay: corrupt payloads are quarantined with a reason and never served") {
  TempDir d("corrupt");
  {
    auto s = open_store(d.path);
    append_ok(*s, {group(1, 1), group(2, 1), group(3, 1), group(4, 1), group(5, 1)}, 5);
  }
  // seq i holds group i. 2: one payload byte flipped; 3: bad magic; 4: valid checksum over garbage.
  raw_edit(d.path, replay::kCfGroups, [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), cf, replay::u64_key(2), &v).ok());
    v[replay::kGroupHeaderBytes + v.size() / 2] ^= 0x01;
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf, replay::u64_key(2), v).ok());
    REQUIRE(db->Get(rocksdb::ReadOptions(), cf, replay::u64_key(3), &v).ok());
    v[0] = 'Z';
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf, replay::u64_key(3), v).ok());
    const std::vector<uint8_t> garbage(100, 7);
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf, replay::u64_key(4),
                    replay::encode_group_record(garbage.data(), garbage.size())).ok());
  });
  auto s = open_store(d.path);
  auto shown = s->get(2);
  REQUIRE(shown.is_ok());
  CHECK(shown->integrity.find("checksum mismatch") == 0);
  CHECK(ids_of(take(*s, 10, 1)) == std::vector<uint64_t>{1, 5});
  CHECK(meta(*s, 2).status == GroupStatus::Quarantined);
  CHECK(meta(*s, 2).reason.find("checksum mismatch") == 0);
  CHECK(meta(*s, 3).reason.find("bad magic") == 0);
  CHECK(meta(*s, 4).reason.find("decode: ") == 0);
  CHECK(s->counters().by_status[size_t(GroupStatus::Quarantined)] == 3);
  CHECK(s->counters().reasons["checksum mismatch"] == 1);
  s->release_all();
  CHECK(ids_of(take(*s, 10, 1)) == std::vector<uint64_t>{1, 5});
  check_consistent(*s);
}

TEST_CASE("replay: corrupt metadata is reported by key, quarantined by take_batch, never a crash") {
  TempDir d("badmeta");
  {
    auto s = open_store(d.path);
    append_ok(*s, {group(1, 1), group(2, 1), group(3, 1)}, 3);
  }
  raw_edit(d.path, replay::kCfMeta, [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
    REQUIRE(db->Put(rocksdb::WriteOptions(), cf, replay::u64_key(2), "not a meta record").ok());
  });
  const std::string key = replay::hex(replay::u64_key(2));
  {
    ReplayOptions ro;
    ro.read_only = true;
    auto r = open_store(d.path, ro);
    auto st = r->stats();
    REQUIRE(st.is_ok());
    CHECK(st->total == 2);
    REQUIRE(st->errors.size() == 1);
    CHECK(st->errors[0].find(key) != std::string::npos);
    auto ls = r->list({});
    REQUIRE(ls.is_ok());
    CHECK(ls->groups.size() == 2);
    REQUIRE(ls->errors.size() == 1);
    CHECK(ls->errors[0].find(key) != std::string::npos);
    auto g = r->get(2);
    CHECK(!g.is_ok());
    CHECK(g.status().message().find(key) != std::string::npos);
    CHECK(!r->check_consistency().is_ok());
    CHECK(!r->for_each({}, [](const ReplayGroup&) { return true; }).is_ok());
  }
  auto s = open_store(d.path);
  CHECK(ids_of(take(*s, 10, 1)) == std::vector<uint64_t>{1, 3});
  CHECK(meta(*s, 2).status == GroupStatus::Quarantined);
  CHECK(meta(*s, 2).reason.find("corrupt meta: ") == 0);
  check_consistent(*s);
}

TEST_CASE("replay: a read-only (secondary) store follows a live writer") {
  TempDir d("secondary");
  auto w = open_store(d.path);
  append_ok(*w, {group(1, 1, "add", 1.0f), group(2, 2, "sort", 0.0f)}, 2);
  ReplayOptions ro;
  ro.read_only = true;
  auto r = open_store(d.path, ro);
  CHECK(r->counters().last_seq == 2);
  CHECK(!r->append({group(9, 1)}).is_ok());
  CHECK(!r->take_batch(1, 1).is_ok());
  CHECK(!r->commit_consumed({1}, 1).is_ok());
  CHECK(!r->rollback_after(0).is_ok());

  append_ok(*w, {group(3, 3, "add", 0.5f)}, 1);
  REQUIRE(w->commit_consumed({1}, 1).is_ok());
  CHECK(r->since(2)->groups.empty());  // not yet caught up
  REQUIRE(r->refresh().is_ok());
  auto tail = r->since(2);
  REQUIRE(tail.is_ok());
  REQUIRE(tail->groups.size() == 1);
  CHECK(tail->groups[0].group_id == 3);
  CHECK(r->counters().last_seq == 3);
  CHECK(meta(*r, 1).status == GroupStatus::Consumed);
  auto g = r->get(3);
  REQUIRE(g.is_ok());
  CHECK(g->integrity.empty());
  CHECK(msg::decode<msg::JudgedGroup>(g->bytes).is_ok());
  check_consistent(*r);

  // A second writer is refused, naming the directory.
  auto w2 = ReplayStore::open(d.path, {});
  CHECK(!w2.is_ok());
  CHECK(w2.status().message().find(d.path) != std::string::npos);
  // A directory that is not a replay store is refused in read-only mode.
  ReplayOptions ro2;
  ro2.read_only = true;
  auto none = ReplayStore::open(d.path + "-absent", ro2);
  CHECK(!none.is_ok());
  CHECK(none.status().message().find("not a replay store") != std::string::npos);
}

TEST_CASE("replay: a reader removes the secondary dirs of killed readers, not of live ones") {
  TempDir d("sweep");
  auto w = open_store(d.path);
  append_ok(*w, {group(1, 1, "add", 1.0f)}, 1);
  // A reader that was SIGKILLed leaves TMP/m1rl-replay-ro-PID-XXXXXX behind; fake one with the PID
  // of a child that has exited (and was reaped), and one with a live PID (ours).
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(0);
  REQUIRE(waitpid(child, nullptr, 0) == child);
  const std::string tmp = std::filesystem::temp_directory_path().string();
  const std::string dead = tmp + "/m1rl-replay-ro-" + std::to_string(child) + "-test01";
  const std::string live = tmp + "/m1rl-replay-ro-" + std::to_string(getpid()) + "-test02";
  std::filesystem::create_directories(dead + "/sub");
  std::filesystem::create_directories(live);
  {
    ReplayOptions ro;
    ro.read_only = true;
    auto r = open_store(d.path, ro);
    CHECK(r->counters().last_seq == 1);
  }
  CHECK(!std::filesystem::exists(dead));
  CHECK(std::filesystem::exists(live));
  std::filesystem::remove_all(live);
}

TEST_CASE("replay: list filters, since, export and stats") {
  TempDir d("list");
  ReplayOptions o;
  o.max_staleness = 1;
  auto s = open_store(d.path, o);
  append_ok(*s,
            {group(10, 1, "add", 1.0f, 4, 8), group(11, 2, "sort", 0.0f, 2, 16), group(12, 3, "add", 0.25f, 4, 8),
             group(13, 4, "math", 0.75f, 8, 4), group(14, 4, "add", 0.5f, 4, 8)},
            5);
  auto b = take(*s, 1, 4);  // drops 10 (v1) and 11 (v2) as stale, serves 12
  CHECK(ids_of(b) == std::vector<uint64_t>{12});
  REQUIRE(s->commit_consumed({12}, 4).is_ok());

  auto q = [&](ReplayFilter f) {
    auto r = s->list(f);
    REQUIRE(r.is_ok());
    std::vector<uint64_t> ids;
    for (const auto& m : r->groups) ids.push_back(m.group_id);
    return ids;
  };
  ReplayFilter f;
  CHECK(q(f) == std::vector<uint64_t>{10, 11, 12, 13, 14});
  f.task = "add";
  CHECK(q(f) == std::vector<uint64_t>{10, 12, 14});
  f = {};
  f.status = GroupStatus::Dropped;
  CHECK(q(f) == std::vector<uint64_t>{10, 11});
  f = {};
  f.min_version = 2;
  f.max_version = 3;
  CHECK(q(f) == std::vector<uint64_t>{11, 12});
  f = {};
  f.min_reward = 0.3f;
  f.max_reward = 0.8f;
  CHECK(q(f) == std::vector<uint64_t>{13, 14});
  f = {};
  f.limit = 2;
  CHECK(q(f) == std::vector<uint64_t>{10, 11});
  CHECK(s->list(f)->total_matched == 5);
  f = {};
  f.group_id = 13;
  CHECK(q(f) == std::vector<uint64_t>{13});
  f.group_id = 99;
  CHECK(q(f).empty());
  f = {};
  f.after_seq = 3;
  CHECK(q(f) == std::vector<uint64_t>{13, 14});
  CHECK(s->since(4)->groups.size() == 1);

  std::vector<uint64_t> exported;
  ReplayFilter ef;
  ef.task = "add";
  REQUIRE(s->for_each(ef, [&](const ReplayGroup& g) {
              CHECK(g.integrity.empty());
              CHECK(msg::decode<msg::JudgedGroup>(g.bytes).is_ok());
              exported.push_back(g.meta.group_id);
              return exported.size() < 2;
            }).is_ok());
  CHECK(exported == std::vector<uint64_t>{10, 12});

  auto st = s->stats();
  REQUIRE(st.is_ok());
  CHECK(st->total == 5);
  CHECK(st->by_status[size_t(GroupStatus::Pending)] == 2);
  CHECK(st->by_status[size_t(GroupStatus::Consumed)] == 1);
  CHECK(st->by_status[size_t(GroupStatus::Dropped)] == 2);
  CHECK(st->reasons["stale"] == 2);
  CHECK(st->min_version == 1);
  CHECK(st->max_version == 4);
  CHECK(st->groups_by_version.size() == 4);
  CHECK(st->groups_by_version[4] == 2);
  CHECK(st->staleness_at_use == std::map<uint64_t, uint64_t>{{1, 1}});  // 12 (v3) taken at learner v4
  CHECK(st->pending_lag == std::map<uint64_t, uint64_t>{{0, 2}});
  CHECK(st->by_task["add"].groups == 3);
  CHECK(st->by_task["add"].rollouts == 12);
  CHECK(st->by_task["add"].mean_response_len() == doctest::Approx(8));
  CHECK(st->by_task["add"].mean_reward() == doctest::Approx((1.0 + 0.25 + 0.5) / 3));
  CHECK(st->by_task["sort"].max_response_len == 16);
  CHECK(st->by_task["math"].rollouts == 8);
  CHECK(st->last_seq == 5);
  for (int i = 0; i < 4; ++i) CHECK(st->by_status[i] == s->counters().by_status[i]);
  check_consistent(*s);
}

// A random history of appends (with duplicates), takes, commits, releases, crashes and resumes.
// After every operation: the store agrees with a model of the recorded consumptions, every
// acknowledged group is accounted for, and check_consistency() holds.
TEST_CASE("replay: invariants over a random history") {
  uint64_t total_undone = 0, total_dropped = 0, total_consumed = 0;  // the history covered them
  for (uint64_t seed : {1ull, 2ull, 3ull, 4ull}) {
    CAPTURE(seed);
    Rng rng(seed);
    TempDir d("random-" + std::to_string(seed));
    ReplayOptions o;
    o.max_uses = 1 + uint32_t(rng.below(3));
    o.max_staleness = rng.below(4);
    o.sync = false;  // durability is the crash test's subject; this one is about the state machine
    CAPTURE(o.max_uses);
    CAPTURE(o.max_staleness);
    auto s = open_store(d.path, o);
    std::map<uint64_t, std::vector<uint64_t>> steps;    // acknowledged group → its committed steps
    std::map<uint64_t, uint64_t> min_version;
    std::vector<std::vector<uint64_t>> outstanding;     // taken, not committed or released
    std::set<uint64_t> leased;
    uint64_t step = 0, next_id = 1;
    for (int op = 0; op < 250; ++op) {
      CAPTURE(op);
      const uint64_t r = rng.below(100);
      if (r < 30) {  // append, sometimes retrying acknowledged ids
        std::vector<msg::Bytes> gs;
        const int k = 1 + int(rng.below(5));
        for (int i = 0; i < k; ++i) {
          const bool dup = !steps.empty() && rng.below(4) == 0;
          const uint64_t id = dup ? 1 + rng.below(next_id - 1) : next_id++;
          const uint64_t v = step >= 3 ? step - rng.below(4) : step;
          if (!dup) min_version[id] = v;
          const char* tasks[] = {"t0", "t1", "t2"};  // (a string concatenation here trips GCC 12's -Wrestrict)
          gs.push_back(group(id, dup ? min_version[id] : v, tasks[id % 3], float(rng.below(3)) / 2, 2, 4));
        }
        REQUIRE(s->append(gs).is_ok());
        for (const auto& [id, v] : min_version) steps[id];  // acknowledged now
      } else if (r < 60) {  // take at the current version
        auto b = take(*s, 1 + rng.below(6), step);
        std::vector<uint64_t> ids;
        for (const auto& g : b) {
          CHECK(g.meta.status == GroupStatus::Pending);
          CHECK(!leased.count(g.meta.group_id));
          CHECK(step - std::min(step, g.meta.min_version) <= o.max_staleness);
          CHECK(g.meta.uses() < o.max_uses);
          CHECK(g.integrity.empty());
          leased.insert(g.meta.group_id);
          ids.push_back(g.meta.group_id);
        }
        if (!ids.empty()) outstanding.push_back(ids);
      } else if (r < 80 && !outstanding.empty()) {  // commit a batch at the next step
        const size_t i = rng.below(outstanding.size());
        step++;
        REQUIRE(s->commit_consumed(outstanding[i], step).is_ok());
        for (uint64_t id : outstanding[i]) steps[id].push_back(step), leased.erase(id);
        outstanding.erase(outstanding.begin() + long(i));
      } else if (r < 88 && !outstanding.empty()) {  // the learner gives a batch back
        const size_t i = rng.below(outstanding.size());
        s->release(outstanding[i]);
        for (uint64_t id : outstanding[i]) leased.erase(id);
        outstanding.erase(outstanding.begin() + long(i));
      } else if (r < 95) {  // inspection agrees with the running counters
        auto st = s->stats();
        REQUIRE(st.is_ok());
        for (int i = 0; i < 4; ++i) CHECK(st->by_status[i] == s->counters().by_status[i]);
        CHECK(st->total == steps.size());
      } else if (r < 98) {  // crash and resume from a random earlier checkpoint
        s.reset();
        s = open_store(d.path, o);
        const uint64_t ckpt = step == 0 ? 0 : rng.below(step + 1);
        auto undone = s->rollback_after(ckpt);
        REQUIRE(undone.is_ok());
        total_undone += *undone;
        for (auto& [id, st] : steps) st.erase(std::remove_if(st.begin(), st.end(), [&](uint64_t x) { return x > ckpt; }), st.end());
        step = ckpt;
        outstanding.clear();
        leased.clear();
      } else {  // a reopen without rollback (replay restarted, learner did not)
        s.reset();
        s = open_store(d.path, o);
        outstanding.clear();
        leased.clear();
      }
      // Every acknowledged group is accounted for and agrees with the model.
      ReplayFilter all;
      all.limit = 0;
      auto ls = s->list(all);
      REQUIRE(ls.is_ok());
      REQUIRE(ls->errors.empty());
      REQUIRE(ls->groups.size() == steps.size());
      std::map<uint64_t, GroupMeta> by_id;
      for (auto& m : ls->groups) by_id[m.group_id] = std::move(m);
      for (const auto& [id, st] : steps) {
        REQUIRE(by_id.count(id));
        const GroupMeta& m = by_id[id];
        CHECK(m.steps == st);
        CHECK(m.uses() <= o.max_uses);
        switch (m.status) {
          case GroupStatus::Pending: CHECK(m.uses() < o.max_uses); break;
          case GroupStatus::Consumed: CHECK(m.uses() == o.max_uses); break;
          case GroupStatus::Dropped: CHECK(m.reason.find("stale: ") == 0); break;
          case GroupStatus::Quarantined: FAIL("nothing was corrupted, yet group " << id << " is quarantined"); break;
        }
      }
      CHECK(s->counters().leased == leased.size());
      const Status cs = s->check_consistency();
      REQUIRE_MESSAGE(cs.is_ok(), cs.message());
    }
    total_dropped += s->counters().by_status[size_t(GroupStatus::Dropped)];
    total_consumed += s->counters().by_status[size_t(GroupStatus::Consumed)];
  }
  CHECK(total_undone > 0);
  CHECK(total_dropped > 0);
  CHECK(total_consumed > 0);
}

TEST_CASE("replay bench: appends run end to end (speed is printed by m1rl bench, not asserted)") {
  const std::string dir = "/tmp/m1-replay-test-" + std::to_string(getpid()) + "-bench";
  remove_all(dir);
  auto r = bench_replay_append(dir, 64, 32);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  CHECK(r->groups_per_s > 0);
  CHECK(r->commits == 2);
  CHECK(!path_exists(dir));
  CHECK(bench_append_groups_per_s(dir, 8, 1) > 0);
  CHECK(!bench_replay_append("/tmp", 1, 1).is_ok());  // an existing directory is refused
}
