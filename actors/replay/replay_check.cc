// Checks of a replay store (contracts in replay_store.h and replay_check.h): its invariants
// (ReplayStore::check_consistency), reading past storage damage (ReplayStore::scan_meta, which steps
// over corrupt blocks, and ReplayStore::audit), and RocksDB's own check (check_replay_db).
#include "actors/replay/replay_check.h"

#include <algorithm>
#include <optional>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>

#include "actors/replay/replay_internal.h"
#include "actors/replay/replay_store.h"
#include "base/file.h"

namespace m1 {

// ---- invariants ----

Status ReplayStore::check_consistency() const {
  ReplayCounters want;
  Status err;
  uint64_t metas = 0, steps = 0, pending = 0;
  auto fail = [&](std::string msg) {
    if (err.is_ok()) err = Status::errorf("replay {}: inconsistent: {}", dir_, msg);
    return false;
  };
  M1_RETURN_IF_ERROR(scan_meta(0, [&](Result<GroupMeta>&& r, std::string_view key) {
    if (!r) return fail(r.status().message());
    const GroupMeta& m = *r;
    metas++;
    steps += m.uses();
    want.by_status[idx(m.status)]++;
    const bool dropped = m.status == GroupStatus::Dropped || m.status == GroupStatus::Quarantined;
    if (dropped) {
      if (m.reason.empty()) return fail(fmt::format("group {} is {} without a reason", m.group_id, replay::status_name(m.status)));
      want.reasons[replay::reason_class(m.reason)]++;
    } else if (!m.reason.empty()) {
      return fail(fmt::format("group {} is {} with reason '{}'", m.group_id, replay::status_name(m.status), m.reason));
    }
    if (m.uses() > opts_.max_uses) return fail(fmt::format("group {} has {} uses > max_uses {}", m.group_id, m.uses(), opts_.max_uses));
    if (m.status == GroupStatus::Consumed && m.uses() < opts_.max_uses)
      return fail(fmt::format("group {} is Consumed with {} < max_uses uses", m.group_id, m.uses()));
    if (m.status == GroupStatus::Pending && m.uses() >= opts_.max_uses)
      return fail(fmt::format("group {} is Pending with {} uses", m.group_id, m.uses()));
    std::string v;
    const bool in_pending = h_->db->Get(rocksdb::ReadOptions(), h_->pending, key, &v).ok();
    if (in_pending != (m.status == GroupStatus::Pending))
      return fail(fmt::format("group {} ({}) {} the pending index", m.group_id, replay::status_name(m.status),
                              in_pending ? "is in" : "is missing from"));
    pending += in_pending;
    auto seq = seq_of(m.group_id);
    if (!seq || !*seq || **seq != m.seq) return fail(fmt::format("ids index does not map group {} to seq {}", m.group_id, m.seq));
    if (!h_->db->Get(rocksdb::ReadOptions(), h_->groups, key, &v).ok())
      return fail(fmt::format("group {} (seq {}) has no record", m.group_id, m.seq));
    for (uint64_t st : m.steps)
      if (!h_->db->Get(rocksdb::ReadOptions(), h_->consumed, replay::step_seq_key(st, m.seq), &v).ok())
        return fail(fmt::format("group {} lacks the consumed index entry for step {}", m.group_id, st));
    return true;
  }));
  M1_RETURN_IF_ERROR(err);
  auto count = [&](rocksdb::ColumnFamilyHandle* cf) {
    uint64_t n = 0;
    std::unique_ptr<rocksdb::Iterator> it(h_->db->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->SeekToFirst(); it->Valid(); it->Next()) n++;
    return n;
  };
  if (count(h_->pending) != pending) fail("the pending index holds entries without a Pending group");
  if (count(h_->consumed) != steps) fail(fmt::format("the consumed index does not hold exactly {} entries", steps));
  if (count(h_->ids) != metas) fail(fmt::format("the ids index does not hold exactly {} entries", metas));
  if (count(h_->groups) != metas) fail(fmt::format("the groups column does not hold exactly {} records", metas));
  for (int st = 0; st < 4; ++st)
    if (want.by_status[st] != counters_.by_status[st])
      fail(fmt::format("counter {} = {}, metadata has {}", replay::status_name(GroupStatus(st)), counters_.by_status[st],
                       want.by_status[st]));
  for (const auto& [k, v] : counters_.reasons)
    if (v != 0 && !want.reasons.count(k)) want.reasons[k] = 0;
  for (const auto& [k, v] : want.reasons) {
    auto it = counters_.reasons.find(k);
    const uint64_t have = it == counters_.reasons.end() ? 0 : it->second;
    if (have != v) fail(fmt::format("reason counter '{}' = {}, metadata has {}", k, have, v));
  }
  return err;
}

// ---- reading past damage ----

Status ReplayStore::scan_meta(uint64_t after_seq,
                              const std::function<bool(Result<GroupMeta>&&, std::string_view)>& fn,
                              const std::function<bool(uint64_t, uint64_t, const std::string&)>& damaged) const {
  if (after_seq == UINT64_MAX) return Status::ok();
  auto deliver = [&](std::string_view k, std::string_view v) {
    auto seq = decode_u64_key(k);
    Result<GroupMeta> m = seq ? replay::decode_meta(*seq, v) : Result<GroupMeta>(seq.status());
    if (!m) m = Status::errorf("meta key {}: {}", hex(k), m.status().message());
    return fn(std::move(m), k);
  };
  auto report = [&](uint64_t first, uint64_t last, const std::string& why) {
    if (damaged) return damaged(first, last, why);
    return fn(Status::errorf("meta seqs {}..{} ({} keys): unreadable: {}", first, last, last - first + 1, why), "");
  };
  std::unique_ptr<rocksdb::Iterator> it(h_->db->NewIterator(rocksdb::ReadOptions(), h_->meta));
  uint64_t next = after_seq + 1;  // every seq below it went to FN or REPORT
  it->Seek(u64_key(next));
  for (;;) {
    for (; it->Valid(); it->Next()) {
      const std::string_view k = it->key().ToStringView();
      if (!deliver(k, it->value().ToStringView())) return Status::ok();
      if (auto seq = decode_u64_key(k)) next = *seq + 1;
    }
    if (it->status().ok()) return Status::ok();
    if (!it->status().IsCorruption()) return rocks_error(dir_, "scanning metadata", it->status());
    // A corrupt block: read its stretch one seq at a time (a Get finds a key's newest version even
    // when an older one sits in the bad block) until a seek lands past it. Seqs are dense, and past
    // the largest key of every table file a seek reads no table block, so this ends.
    const uint64_t last = max_sst_key(h_->meta);
    std::optional<std::pair<uint64_t, uint64_t>> bad;  // the current stretch of unreadable seqs
    std::string why = it->status().ToString();
    bool resumed = false;
    for (uint64_t p = next; p <= last; ++p) {
      it->Seek(u64_key(p));
      if (it->status().ok()) {
        resumed = true;
        break;
      }
      std::string v;
      const rocksdb::Status g = h_->db->Get(rocksdb::ReadOptions(), h_->meta, u64_key(p), &v);
      if (g.IsCorruption()) {
        bad = std::make_pair(bad ? bad->first : p, p);
        why = g.ToString();
        continue;
      }
      if (!g.ok() && !g.IsNotFound()) return rocks_error(dir_, "reading metadata", g);
      if (bad && !report(bad->first, bad->second, why)) return Status::ok();
      bad.reset();
      if (g.ok() && !deliver(u64_key(p), v)) return Status::ok();
      next = p + 1;
    }
    if (bad && !report(bad->first, bad->second, why)) return Status::ok();
    if (!resumed) {
      it->Seek(u64_key(std::max(next, last + 1)));
      if (!it->status().ok()) return rocks_error(dir_, "scanning metadata past a damaged block", it->status());
    }
  }
}

uint64_t ReplayStore::max_sst_key(rocksdb::ColumnFamilyHandle* cf) const {
  rocksdb::ColumnFamilyMetaData md;
  h_->db->GetColumnFamilyMetaData(cf, &md);
  uint64_t hi = 0;
  for (const auto& level : md.levels)
    for (const auto& f : level.files)
      if (auto k = decode_u64_key(f.largestkey)) hi = std::max(hi, *k);
  return hi;
}

Result<ReplayAudit> ReplayStore::audit(const std::function<bool(const ReplayGroup&)>& fn) const {
  ReplayAudit a;
  uint64_t next = 1;  // the next seq to account for
  Status err;
  // Damaged seqs one after another with the same cause make one line of a.errors.
  struct Stretch {
    uint64_t first = 0, last = 0;
    std::vector<uint64_t> ids;  // group ids known (from the metadata, else from the record)
    std::string cause;
  };
  std::optional<Stretch> run;
  auto flush = [&] {
    if (!run) return;
    const Stretch& r = *run;
    std::string ids;
    for (size_t i = 0; i < r.ids.size() && i < 8; ++i) ids += fmt::format("{}{}", i ? ", " : "", r.ids[i]);
    if (r.ids.size() > 8) ids += ", …";
    if (r.first == r.last)
      a.errors.push_back(r.ids.empty() ? fmt::format("seq {}: {}", r.first, r.cause)
                                       : fmt::format("group {} (seq {}): {}", ids, r.first, r.cause));
    else
      a.errors.push_back(fmt::format("seqs {}..{} ({} groups{}): {}", r.first, r.last, r.last - r.first + 1,
                                     ids.empty() ? "" : "; group ids " + ids, r.cause));
    run.reset();
  };
  auto damaged = [&](uint64_t first, uint64_t last, std::vector<uint64_t> ids, std::string cause) {
    if (run && run->last + 1 == first && run->cause == cause) {
      run->last = last;
      run->ids.insert(run->ids.end(), ids.begin(), ids.end());
      return;
    }
    flush();
    run = Stretch{first, last, std::move(ids), std::move(cause)};
  };
  // Seqs FIRST..LAST whose metadata is lost: counted, named with the ids their records hold.
  auto lost = [&](uint64_t first, uint64_t last, const std::string& cause) {
    a.records += last - first + 1;
    a.unreadable += last - first + 1;
    std::vector<uint64_t> ids;
    for (uint64_t q = first; q <= last && ids.size() < 9; ++q)
      if (auto id = id_from_payload(q)) ids.push_back(*id);
    damaged(first, last, std::move(ids), cause);
  };
  auto upto = [&](uint64_t seq) {  // seqs below SEQ that the scan did not see have no metadata
    if (seq > next) lost(next, seq - 1, "no metadata (lost)");
    next = std::max(next, seq + 1);
  };
  M1_RETURN_IF_ERROR(scan_meta(
      0,
      [&](Result<GroupMeta>&& m, std::string_view key) {
        auto seq = decode_u64_key(key);
        if (!seq) {
          flush();
          a.errors.push_back(m.status().message());  // a malformed key: no seq to count
          return true;
        }
        upto(*seq);
        if (!m) {
          lost(*seq, *seq, "metadata does not decode: " + m.status().message());
          return true;
        }
        a.records++;
        rocksdb::PinnableSlice rec;
        const rocksdb::Status st = h_->db->Get(rocksdb::ReadOptions(), h_->groups, key, &rec);
        if (st.IsNotFound() || st.IsCorruption()) {
          a.unreadable++;
          damaged(*seq, *seq, {m->group_id}, st.IsNotFound() ? "record missing" : "record unreadable: " + st.ToString());
          return true;
        }
        if (!st.ok()) {
          err = rocks_error(dir_, "reading a group record", st);
          return false;
        }
        ReplayGroup g;
        g.meta = std::move(*m);
        fill_group(g, rec.ToStringView());
        if (g.integrity.empty()) {
          a.intact++;
        } else {
          a.bad_payload++;
          damaged(*seq, *seq, {g.meta.group_id},
                  fmt::format("record fails verification ({}): {}", replay::status_name(g.meta.status), g.integrity));
        }
        return !fn || fn(g);
      },
      [&](uint64_t first, uint64_t last, const std::string& why) {
        upto(first);
        lost(first, last, "metadata unreadable: " + why);
        next = last + 1;
        return true;
      }));
  M1_RETURN_IF_ERROR(err);
  flush();
  return a;
}

// ---- RocksDB's own check ----

namespace {

// A database opened read-only for check_replay_db; closed on destruction.
struct ReadOnlyDb {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status open(const std::string& dir, const std::vector<std::string>& cfs, rocksdb::WALRecoveryMode mode) {
    rocksdb::DBOptions o;
    o.paranoid_checks = true;
    o.max_open_files = -1;  // every table opened (footer, index) at open
    o.wal_recovery_mode = mode;
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (const auto& n : cfs) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    return rocksdb::DB::OpenForReadOnly(o, dir, descs, &handles, &db);
  }
  ~ReadOnlyDb() {
    if (!db) return;
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
};

// "" when every block checksum of the table file PATH holds, else RocksDB's message (with the offset).
std::string verify_table(const std::string& path) {
  rocksdb::Options o;
  rocksdb::SstFileReader r(o);
  rocksdb::Status st = r.Open(path);
  if (st.ok()) st = r.VerifyChecksum();
  return st.ok() ? std::string() : st.ToString();
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

ReplayDbCheck check_replay_db(const std::string& dir, bool verify_tables) {
  ReplayDbCheck r;
  std::vector<std::string> tables, wals, strays;
  for (const std::string& n : list_dir(dir)) {
    if (ends_with(n, ".sst")) tables.push_back(n);
    if (ends_with(n, ".log")) wals.push_back(n);
    if (ends_with(n, ".sst") || ends_with(n, ".log") || n.rfind("MANIFEST-", 0) == 0) strays.push_back(n);
  }
  r.wal_files = wals.size();
  if (!path_exists(path_join(dir, "CURRENT"))) {
    if (!strays.empty())
      r.damage.push_back(fmt::format("{}: holds {}{} but no CURRENT file: the database's file list is lost", dir,
                                     strays[0], strays.size() > 1 ? fmt::format(" and {} more", strays.size() - 1) : ""));
    return r;
  }
  r.exists = true;
  std::vector<std::string> cfs;
  rocksdb::Status st = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &cfs);
  ReadOnlyDb strict, lax;
  ReadOnlyDb* db = nullptr;
  if (st.ok()) st = strict.open(dir, cfs, rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords);
  if (st.ok()) {
    db = &strict;
  } else if (st.IsCorruption() && !cfs.empty() &&
             lax.open(dir, cfs, rocksdb::WALRecoveryMode::kSkipAnyCorruptedRecords).ok()) {
    // Only the WAL replay differs between the two opens: the WAL is damaged. Say where.
    db = &lax;
    r.wal_ok = false;
    size_t named = 0;
    for (const std::string& w : wals) {
      auto bytes = read_file(path_join(dir, w));
      const std::string where = bytes ? replay::find_wal_damage(*bytes) : bytes.status().message();
      if (where.empty()) continue;
      named++;
      r.damage.push_back(fmt::format("WAL {}: {} (RocksDB refuses it: {})", w, where, st.ToString()));
    }
    if (named == 0)
      r.damage.push_back(fmt::format("WAL (one of {}): RocksDB refuses it: {}", fmt::join(wals, ", "), st.ToString()));
  }
  if (!db) {
    r.damage.push_back(fmt::format("{}: RocksDB cannot open the database: {}", dir, st.ToString()));
    if (!verify_tables) return r;
    for (const std::string& t : tables) {  // which table files are live is unknown: all of them
      r.sst_files++;
      if (std::string e = verify_table(path_join(dir, t)); !e.empty()) r.damage.push_back(fmt::format("SST {}: {}", t, e));
    }
    return r;
  }
  if (!verify_tables) return r;
  std::vector<rocksdb::LiveFileMetaData> live;
  db->db->GetLiveFilesMetaData(&live);
  std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& f : live) {
    const std::string path = f.db_path + (!f.name.empty() && f.name[0] == '/' ? "" : "/") + f.name;
    const std::string e = verify_table(path);
    if (!e.empty() && !path_exists(path)) continue;  // compacted away by a live writer since the open
    r.sst_files++;
    if (e.empty()) continue;
    std::string keys;
    auto lo = decode_u64_key(f.smallestkey), hi = decode_u64_key(f.largestkey);
    if (lo && hi && (f.column_family_name == replay::kCfGroups || f.column_family_name == replay::kCfMeta))
      keys = fmt::format(", seqs {}..{}", *lo, *hi);
    std::string name = f.name;
    if (!name.empty() && name[0] == '/') name.erase(0, 1);
    r.damage.push_back(fmt::format("SST {} (column family {}, level {}{}): {}", name, f.column_family_name, f.level,
                                   keys, e));
  }
  return r;
}

Status verify_replay_db(const std::string& dir) {
  const ReplayDbCheck c = check_replay_db(dir, true);
  if (c.ok()) return Status::ok();
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const std::string run = ends_with(d, "/replay") ? parent_dir(d) : d;
  std::string lines;
  for (const auto& e : c.damage) lines += "\n  " + e;
  return Status::errorf(
      "replay {}: the replay database fails RocksDB's own check, so the run does not resume on it (the "
      "writer would drop or stop at the damaged records):{}\n"
      "  name every damaged record:  m1rl replay check {}\n"
      "  export the intact groups:   m1rl replay export {} --skip-damaged --out FILE",
      dir, lines, run, run);
}

}  // namespace m1
