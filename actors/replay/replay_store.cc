// ReplayStore over RocksDB: open, the group life cycle and inspection (contracts in replay_store.h,
// formats in replay_format.h). The consistency and damage checks are in replay_check.cc.
#include "actors/replay/replay_store.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <filesystem>
#include <set>
#include <unordered_set>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "actors/replay/replay_internal.h"
#include "base/file.h"
#include "base/log.h"

namespace m1 {

namespace {

// A read-only reader keeps RocksDB's secondary-instance files in TMP/m1rl-replay-ro-PID-XXXXXX and
// removes them when closed. A reader that was killed cannot: the next reader removes every such
// directory whose PID is no longer alive (kill(pid, 0) fails with ESRCH).
void sweep_dead_secondary_dirs(const std::string& parent) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::string prefix = "m1rl-replay-ro-";
    if (name.rfind(prefix, 0) != 0) continue;
    char* rest = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &rest, 10);
    if (pid <= 0 || !rest || *rest != '-') continue;  // not ours (or the old unnumbered form)
    if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code rm;
    std::filesystem::remove_all(it->path(), rm);
  }
}


constexpr const char* kCountPrefix = "count/";
constexpr const char* kReasonPrefix = "reason/";

bool stale(const GroupMeta& m, uint64_t learner_version, uint64_t max_staleness) {
  return learner_version > m.min_version && learner_version - m.min_version > max_staleness;
}

// The metadata of a freshly verified JudgedGroup.
GroupMeta meta_of(const msg::JudgedGroup& g, uint64_t seq, size_t payload_bytes) {
  GroupMeta m;
  m.seq = seq;
  m.group_id = g.group_id();
  m.task = g.task() ? g.task()->str() : std::string();
  m.reward_mean = g.reward_mean();
  m.reward_std = g.reward_std();
  m.created_unix_ms = g.created_unix_ms();
  m.payload_bytes = payload_bytes;
  bool any = false;
  if (const auto* rs = g.rollouts()) {
    m.size = rs->size();
    for (const auto* r : *rs) {
      const uint32_t len = r->tokens() ? r->tokens()->size() : 0;
      m.response_tokens += len;
      m.max_response_len = std::max(m.max_response_len, len);
      if (const auto* vs = r->versions()) {
        for (uint64_t v : *vs) {
          m.min_version = any ? std::min(m.min_version, v) : v;
          m.max_version = any ? std::max(m.max_version, v) : v;
          any = true;
        }
      }
    }
  }
  return m;
}

}  // namespace

ReplayStore::ReplayStore(std::string dir, ReplayOptions o) : dir_(std::move(dir)), opts_(std::move(o)) {}

ReplayStore::~ReplayStore() {
  h_.reset();
  if (owns_secondary_dir_) remove_all(opts_.secondary_dir);
}

Result<std::unique_ptr<ReplayStore>> ReplayStore::open(const std::string& dir, const ReplayOptions& o) {
  if (o.max_uses < 1) return Status::errorf("replay {}: max_uses must be ≥ 1, got {}", dir, o.max_uses);
  std::unique_ptr<ReplayStore> s(new ReplayStore(dir, o));
  s->h_ = std::make_unique<Handles>();

  rocksdb::DBOptions dbo;
  dbo.keep_log_file_num = 3;
  dbo.max_log_file_size = 4 << 20;
  dbo.max_open_files = -1;  // required by secondary instances; harmless for the writer
  dbo.paranoid_checks = true;
  // Small column families (ids, pending) would otherwise pin WAL files up to ~3 GB (6 CFs × 2 ×
  // 64 MiB × 4): past this size RocksDB flushes the column families that hold the oldest WAL.
  dbo.max_total_wal_size = 128 << 20;
  // Reopening after a crash replays the WAL into memtables instead of writing L0 files per column
  // family, and table files are opened by few threads (with max_open_files = -1 RocksDB otherwise
  // starts 16 threads at every open and after every flush).
  dbo.avoid_flush_during_recovery = true;
  dbo.max_file_opening_threads = 2;
  // A corrupt WAL record fails the open instead of silently ending the replay there (RocksDB's
  // default, kPointInTimeRecovery, drops it and every acknowledged write after it). An incomplete
  // last record is a write cut by a crash: never acknowledged, tolerated. Salvage skips bad records.
  dbo.wal_recovery_mode = o.salvage ? rocksdb::WALRecoveryMode::kSkipAnyCorruptedRecords
                                    : rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  rocksdb::ColumnFamilyOptions cfo;
  const std::vector<std::string> ours = {rocksdb::kDefaultColumnFamilyName, replay::kCfGroups, replay::kCfMeta,
                                         replay::kCfIds, replay::kCfPending, replay::kCfConsumed};

  std::vector<std::string> names;
  const rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(dbo, dir, &names);
  if (o.read_only) {
    if (!ls.ok())
      return Status::errorf("replay {}: {} ({})", dir, ls.IsCorruption() ? "damaged database" : "not a replay store",
                            ls.ToString());
    for (const auto& n : ours)
      if (std::find(names.begin(), names.end(), n) == names.end())
        return Status::errorf("replay {}: not a replay store (no column family '{}')", dir, n);
  } else {
    if (!ls.ok()) {
      if (path_exists(dir + "/CURRENT")) return rocks_error(dir, "listing column families", ls);
      M1_RETURN_IF_ERROR(make_dirs(dir).with_context("replay"));
      names.clear();
    }
    dbo.create_if_missing = true;
    dbo.create_missing_column_families = true;
    for (const auto& n : ours)
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  // Open every column family the database has (RocksDB refuses to open a subset read-write).
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : names) descs.emplace_back(n, cfo);

  rocksdb::Status st;
  if (o.read_only && o.salvage) {
    st = rocksdb::DB::OpenForReadOnly(dbo, dir, descs, &s->h_->all, &s->h_->db);
  } else if (o.read_only) {
    if (s->opts_.secondary_dir.empty()) {
      std::error_code ec;
      const std::string tmp = std::filesystem::temp_directory_path(ec).string();
      const std::string parent = ec || tmp.empty() ? "/tmp" : tmp;
      sweep_dead_secondary_dirs(parent);
      std::string tmpl = path_join(parent, "m1rl-replay-ro-" + std::to_string(::getpid()) + "-XXXXXX");
      if (!mkdtemp(tmpl.data())) return Status::errorf("replay {}: cannot create the temp dir {}", dir, tmpl);
      s->opts_.secondary_dir = tmpl;
      s->owns_secondary_dir_ = true;
    }
    st = rocksdb::DB::OpenAsSecondary(dbo, dir, s->opts_.secondary_dir, descs, &s->h_->all, &s->h_->db);
  } else {
    st = rocksdb::DB::Open(dbo, dir, descs, &s->h_->all, &s->h_->db);
  }
  if (!st.ok())
    return rocks_error(dir, !o.read_only ? "opening" : o.salvage ? "opening read-only" : "opening as secondary", st);
  for (size_t i = 0; i < names.size(); ++i) {
    auto* h = s->h_->all[i];
    if (names[i] == rocksdb::kDefaultColumnFamilyName) s->h_->def = h;
    if (names[i] == replay::kCfGroups) s->h_->groups = h;
    if (names[i] == replay::kCfMeta) s->h_->meta = h;
    if (names[i] == replay::kCfIds) s->h_->ids = h;
    if (names[i] == replay::kCfPending) s->h_->pending = h;
    if (names[i] == replay::kCfConsumed) s->h_->consumed = h;
  }

  M1_RETURN_IF_ERROR(s->check_format());
  M1_RETURN_IF_ERROR(s->load_state());
  return s;
}

// The store's own magic and format version; a fresh writable store gets them.
Status ReplayStore::check_format() {
  std::string fmtv;
  rocksdb::Status st = h_->db->Get(rocksdb::ReadOptions(), h_->def, replay::kFormatKey, &fmtv);
  if (st.IsNotFound()) {
    if (opts_.read_only) return Status::errorf("replay {}: not a replay store (no format marker)", dir_);
    for (auto* cf : {h_->def, h_->meta}) {  // never stamp someone else's database
      std::unique_ptr<rocksdb::Iterator> it(h_->db->NewIterator(rocksdb::ReadOptions(), cf));
      it->SeekToFirst();
      if (it->Valid()) return Status::errorf("replay {}: not a replay store (data but no format marker)", dir_);
    }
    std::string v(replay::kStoreMagic, 4);
    v.push_back(char(replay::kStoreFormatVersion & 0xff));
    v.push_back(char(replay::kStoreFormatVersion >> 8));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    st = h_->db->Put(wo, h_->def, replay::kFormatKey, v);
    if (!st.ok()) return rocks_error(dir_, "writing the format marker", st);
  } else if (st.IsCorruption() && opts_.read_only) {
    format_error_ = fmt::format("format marker unreadable: {}", st.ToString());
  } else if (!st.ok()) {
    return rocks_error(dir_, "reading the format marker", st);
  } else {
    if (fmtv.size() != 6 || fmtv.compare(0, 4, std::string(replay::kStoreMagic, 4)) != 0)
      return Status::errorf("replay {}: not a replay store (format marker {})", dir_, hex(fmtv));
    const unsigned ver = uint8_t(fmtv[4]) | (unsigned(uint8_t(fmtv[5])) << 8);
    if (ver != replay::kStoreFormatVersion)
      return Status::errorf("replay {}: format version {}, this build reads {}", dir_, ver,
                            replay::kStoreFormatVersion);
  }
  return Status::ok();
}

// Counters, next sequence number and the pending floor from the database.
Status ReplayStore::load_state() {
  load_errors_.clear();
  ReplayCounters c;
  std::unique_ptr<rocksdb::Iterator> it(h_->db->NewIterator(rocksdb::ReadOptions(), h_->def));
  for (it->Seek(kCountPrefix); it->Valid() && it->key().starts_with(kCountPrefix); it->Next()) {
    const std::string name = it->key().ToString().substr(6);
    auto v = replay::decode_u64_value(it->value().ToString());
    if (!v) return Status::errorf("replay {}: counter key '{}': {}", dir_, it->key().ToString(), v.status().message());
    bool known = false;
    for (int st = 0; st < 4; ++st)
      if (name == replay::status_name(GroupStatus(st))) c.by_status[st] = *v, known = true;
    if (!known) return Status::errorf("replay {}: unknown counter key '{}'", dir_, it->key().ToString());
  }
  for (it->Seek(kReasonPrefix); it->Valid() && it->key().starts_with(kReasonPrefix); it->Next()) {
    auto v = replay::decode_u64_value(it->value().ToString());
    if (!v) return Status::errorf("replay {}: counter key '{}': {}", dir_, it->key().ToString(), v.status().message());
    c.reasons[it->key().ToString().substr(7)] = *v;
  }
  // A reader opens past damage (audit() and check_replay_db() name it); a writer must not.
  auto tolerate = [&](const rocksdb::Status& st, const char* what) {
    if (!opts_.read_only || !st.IsCorruption()) return false;
    load_errors_.push_back(fmt::format("{}: {}", what, st.ToString()));
    return true;
  };
  if (!it->status().ok() && !tolerate(it->status(), "counters unreadable"))
    return rocks_error(dir_, "reading counters", it->status());
  {  // absent (a store written before the key existed) = 0
    std::string pv;
    const rocksdb::Status gs = h_->db->Get(rocksdb::ReadOptions(), h_->def, replay::kPublishedVersionKey, &pv);
    if (gs.ok()) {
      auto v = replay::decode_u64_value(pv);
      if (!v)
        return Status::errorf("replay {}: counter key '{}': {}", dir_, replay::kPublishedVersionKey,
                              v.status().message());
      c.published_version = *v;
    } else if (!gs.IsNotFound() && !tolerate(gs, "published version unreadable")) {
      return rocks_error(dir_, "reading the published version", gs);
    }
  }

  std::unique_ptr<rocksdb::Iterator> mi(h_->db->NewIterator(rocksdb::ReadOptions(), h_->meta));
  mi->SeekToLast();
  if (!mi->status().ok()) {
    if (!tolerate(mi->status(), "newest metadata entry unreadable"))
      return rocks_error(dir_, "reading the last sequence number", mi->status());
    c.last_seq = max_sst_key(h_->meta);
  } else if (mi->Valid()) {
    auto seq = decode_u64_key(mi->key().ToStringView());
    if (!seq) return Status::errorf("replay {}: meta {}", dir_, seq.status().message());
    c.last_seq = *seq;
  }
  next_seq_ = c.last_seq + 1;
  c.leased = leases_.size();
  counters_ = std::move(c);

  std::unique_ptr<rocksdb::Iterator> pi(h_->db->NewIterator(rocksdb::ReadOptions(), h_->pending));
  pi->SeekToFirst();
  h_->pending_floor = 0;
  if (pi->Valid() && pi->key().size() == 8) h_->pending_floor = *decode_u64_key(pi->key().ToStringView());
  return Status::ok();
}

Status ReplayStore::require_writable(const char* op) const {
  if (opts_.read_only) return Status::errorf("replay {}: {} on a read-only store", dir_, op);
  return Status::ok();
}

Status ReplayStore::refresh() {
  if (!opts_.read_only || opts_.salvage) return Status::ok();
  const rocksdb::Status st = h_->db->TryCatchUpWithPrimary();
  if (!st.ok()) return rocks_error(dir_, "catching up with the writer", st);
  return load_state();
}

Result<std::optional<uint64_t>> ReplayStore::seq_of(uint64_t group_id) const {
  std::string v;
  const rocksdb::Status st = h_->db->Get(rocksdb::ReadOptions(), h_->ids, u64_key(group_id), &v);
  if (st.IsNotFound()) return std::optional<uint64_t>();
  if (!st.ok()) return rocks_error(dir_, "reading the id index", st);
  auto seq = decode_u64_key(v);
  if (!seq) return Status::errorf("replay {}: ids key {}: value {}", dir_, hex(u64_key(group_id)), seq.status().message());
  return std::optional<uint64_t>(*seq);
}

Result<GroupMeta> ReplayStore::read_meta(uint64_t seq) const {
  std::string v;
  const rocksdb::Status st = h_->db->Get(rocksdb::ReadOptions(), h_->meta, u64_key(seq), &v);
  if (st.IsNotFound()) return Status::errorf("replay {}: meta key {} (seq {}) is missing", dir_, hex(u64_key(seq)), seq);
  if (!st.ok()) return rocks_error(dir_, "reading meta", st);
  auto m = replay::decode_meta(seq, v);
  if (!m) return Status::errorf("replay {}: meta key {} (seq {}): {}", dir_, hex(u64_key(seq)), seq, m.status().message());
  return m;
}

// "" when RECORD holds a valid JudgedGroup for M (then *OUT holds a copy of its payload), else why not.
std::string ReplayStore::verify_payload(const GroupMeta& m, std::string_view record, msg::Bytes* out) const {
  auto payload = replay::decode_group_record(record);
  if (!payload) return payload.status().message();
  msg::Bytes b(std::vector<uint8_t>(payload->begin(), payload->end()));
  auto g = msg::decode<msg::JudgedGroup>(b);
  if (!g) return "decode: " + g.status().message();
  if ((*g)->group_id() != m.group_id)
    return fmt::format("group_id mismatch: record holds {}, meta says {}", (*g)->group_id(), m.group_id);
  *out = std::move(b);
  return "";
}

Result<ReplayGroup> ReplayStore::read_group(const GroupMeta& m) const {
  ReplayGroup g;
  g.meta = m;
  rocksdb::PinnableSlice rec;
  const rocksdb::Status st = h_->db->Get(rocksdb::ReadOptions(), h_->groups, u64_key(m.seq), &rec);
  if (st.IsNotFound()) {
    g.integrity = "missing payload";
    return g;
  }
  if (!st.ok()) return rocks_error(dir_, "reading a group record", st);
  fill_group(g, rec.ToStringView());
  return g;
}

void ReplayStore::fill_group(ReplayGroup& g, std::string_view record) const {
  g.integrity = verify_payload(g.meta, record, &g.bytes);
  if (!g.integrity.empty()) {  // hand back what is stored, for `show`
    if (record.size() >= replay::kGroupHeaderBytes) record.remove_prefix(replay::kGroupHeaderBytes);
    g.bytes = msg::Bytes(std::vector<uint8_t>(record.begin(), record.end()));
  }
}

namespace {

// Puts the durable counters that differ between OLD and NEW into B.
void put_counters(rocksdb::WriteBatch& b, rocksdb::ColumnFamilyHandle* cf, const ReplayCounters& old_c,
                  const ReplayCounters& new_c) {
  for (int st = 0; st < 4; ++st)
    if (old_c.by_status[st] != new_c.by_status[st])
      b.Put(cf, std::string(kCountPrefix) + replay::status_name(GroupStatus(st)),
            replay::u64_value(new_c.by_status[st]));
  for (const auto& [k, v] : new_c.reasons) {
    auto it = old_c.reasons.find(k);
    if (it == old_c.reasons.end() || it->second != v) b.Put(cf, kReasonPrefix + k, replay::u64_value(v));
  }
  if (old_c.published_version != new_c.published_version)
    b.Put(cf, replay::kPublishedVersionKey, replay::u64_value(new_c.published_version));
}

}  // namespace

// The group id inside the record stored under SEQ, when the record is intact.
std::optional<uint64_t> ReplayStore::id_from_payload(uint64_t seq) const {
  std::string rec;
  if (!h_->db->Get(rocksdb::ReadOptions(), h_->groups, u64_key(seq), &rec).ok()) return std::nullopt;
  auto p = replay::decode_group_record(rec);
  if (!p) return std::nullopt;
  const msg::Bytes b(std::vector<uint8_t>(p->begin(), p->end()));  // an aligned copy
  auto g = msg::decode<msg::JudgedGroup>(b);
  if (!g) return std::nullopt;
  return (*g)->group_id();
}

// Adds the counters that changed to B, writes it (synced per options) and adopts NEXT.
Status ReplayStore::write(rocksdb::WriteBatch& b, ReplayCounters next, const char* what) {
  put_counters(b, h_->def, counters_, next);
  if (b.Count() == 0) return Status::ok();
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync;
  const rocksdb::Status st = h_->db->Write(wo, &b);
  if (!st.ok()) return rocks_error(dir_, what, st);
  next.leased = counters_.leased;
  counters_ = std::move(next);
  return Status::ok();
}

Result<AppendResult> ReplayStore::append(const std::vector<msg::Bytes>& groups) {
  M1_RETURN_IF_ERROR(require_writable("append"));
  AppendResult res;
  rocksdb::WriteBatch batch;
  ReplayCounters next = counters_;
  std::unordered_set<uint64_t> in_call;
  uint64_t seq = next_seq_;
  for (size_t i = 0; i < groups.size(); ++i) {
    auto g = msg::decode<msg::JudgedGroup>(groups[i]);
    if (!g) return Status::errorf("replay append: group {} of {}: {}", i, groups.size(), g.status().message());
    const uint64_t id = (*g)->group_id();
    M1_ASSIGN_OR_RETURN(auto existing, seq_of(id));
    if (existing || !in_call.insert(id).second) {
      res.duplicates++;
      continue;
    }
    const GroupMeta m = meta_of(**g, seq, groups[i].size());
    const std::string key = u64_key(seq);
    batch.Put(h_->groups, key, replay::encode_group_record(groups[i].data(), groups[i].size()));
    batch.Put(h_->meta, key, replay::encode_meta(m));
    batch.Put(h_->ids, u64_key(id), key);
    batch.Put(h_->pending, key, rocksdb::Slice());
    next.by_status[idx(GroupStatus::Pending)]++;
    res.appended++;
    seq++;
  }
  if (res.appended > 0) {
    next.last_seq = seq - 1;
    M1_RETURN_IF_ERROR(write(batch, std::move(next), "appending groups"));
    next_seq_ = seq;
  }
  res.last_seq = next_seq_ - 1;
  return res;
}

Result<std::vector<ReplayGroup>> ReplayStore::take_batch(size_t n, uint64_t learner_version) {
  M1_RETURN_IF_ERROR(require_writable("take_batch"));
  std::vector<ReplayGroup> out;
  if (n == 0) return out;
  rocksdb::WriteBatch batch;
  ReplayCounters next = counters_;
  auto set_status = [&](GroupMeta& m, GroupStatus to, std::string reason) {
    next.by_status[idx(m.status)]--;
    next.by_status[idx(to)]++;
    next.reasons[replay::reason_class(reason)]++;
    m.status = to;
    m.reason = std::move(reason);
    batch.Put(h_->meta, u64_key(m.seq), replay::encode_meta(m));
    batch.Delete(h_->pending, u64_key(m.seq));
  };
  uint64_t floor = 0;  // the first seq still Pending after this call
  bool floor_set = false;
  uint64_t last_seen = 0;
  std::unique_ptr<rocksdb::Iterator> it(h_->db->NewIterator(rocksdb::ReadOptions(), h_->pending));
  for (it->Seek(u64_key(h_->pending_floor)); it->Valid() && out.size() < n; it->Next()) {
    auto seq = decode_u64_key(it->key().ToStringView());
    if (seq) last_seen = std::max(last_seen, *seq);
    if (!seq) {  // a malformed index key cannot name a group: drop it from the queue
      log_error("replay {}: pending {}; removed from the queue", dir_, seq.status().message());
      batch.Delete(h_->pending, it->key());
      continue;
    }
    if (leases_.count(*seq)) {
      if (!floor_set) floor = *seq, floor_set = true;
      continue;
    }
    auto m = read_meta(*seq);
    if (!m) {
      // Corrupt metadata: quarantine under the id the payload names, if it is readable.
      const std::optional<uint64_t> id = id_from_payload(*seq);
      log_error("{}; not served", m.status().message());
      batch.Delete(h_->pending, it->key());
      if (id) {
        GroupMeta q;
        q.seq = *seq;
        q.group_id = *id;
        q.task = "?";
        q.status = GroupStatus::Pending;
        set_status(q, GroupStatus::Quarantined, "corrupt meta: " + m.status().message());
      } else {
        next.by_status[idx(GroupStatus::Pending)]--;  // leaves the queue; stats() reports the key
      }
      continue;
    }
    if (m->status != GroupStatus::Pending) {  // index out of step with meta: meta wins
      log_error("replay {}: pending index held seq {} whose status is {}; removed", dir_, *seq,
                replay::status_name(m->status));
      batch.Delete(h_->pending, it->key());
      continue;
    }
    if (m->uses() >= opts_.max_uses) {  // reopened with a smaller max_uses: retire, never over-serve
      next.by_status[idx(GroupStatus::Pending)]--;
      next.by_status[idx(GroupStatus::Consumed)]++;
      m->status = GroupStatus::Consumed;
      batch.Put(h_->meta, u64_key(m->seq), replay::encode_meta(*m));
      batch.Delete(h_->pending, it->key());
      continue;
    }
    auto g = read_group(*m);
    if (!g) return g.status();
    if (!g->integrity.empty()) {
      log_error("replay {}: group {} (seq {}) quarantined: {}", dir_, m->group_id, *seq, g->integrity);
      set_status(*m, GroupStatus::Quarantined, g->integrity);
      continue;
    }
    if (stale(*m, learner_version, opts_.max_staleness)) {
      set_status(*m, GroupStatus::Dropped,
                 fmt::format("stale: oldest token version {} is {} behind learner version {} (max_staleness {})",
                             m->min_version, learner_version - m->min_version, learner_version,
                             opts_.max_staleness));
      continue;
    }
    if (!floor_set) floor = *seq, floor_set = true;
    out.push_back(std::move(*g));
  }
  if (!it->status().ok()) return rocks_error(dir_, "scanning the pending queue", it->status());
  it.reset();
  M1_RETURN_IF_ERROR(write(batch, std::move(next), "recording dropped/quarantined groups"));
  // Every Pending seq is ≥ FLOOR: what the scan passed before it left the queue. When nothing is
  // left, the scan reached the end: everything it saw left the queue.
  if (floor_set) h_->pending_floor = floor;
  else if (last_seen > 0) h_->pending_floor = last_seen + 1;
  for (const auto& g : out) leases_[g.meta.seq] = Lease{g.meta.group_id, learner_version};
  counters_.leased = leases_.size();
  return out;
}

Status ReplayStore::commit_consumed(const std::vector<uint64_t>& group_ids, uint64_t learner_step,
                                    uint64_t published_version) {
  M1_RETURN_IF_ERROR(require_writable("commit_consumed"));
  rocksdb::WriteBatch batch;
  ReplayCounters next = counters_;
  next.published_version = std::max(next.published_version, published_version);
  std::set<uint64_t> seen;
  std::vector<uint64_t> seqs;
  uint64_t lowest_repending = UINT64_MAX;
  for (uint64_t id : group_ids) {
    M1_ASSIGN_OR_RETURN(auto seq, seq_of(id));
    if (!seq) return Status::errorf("replay {}: commit_consumed: group {} is unknown", dir_, id);
    seqs.push_back(*seq);
    if (!seen.insert(*seq).second) continue;
    M1_ASSIGN_OR_RETURN(GroupMeta m, read_meta(*seq));
    if (std::find(m.steps.begin(), m.steps.end(), learner_step) != m.steps.end()) continue;  // retry
    if (m.status != GroupStatus::Pending)
      return Status::errorf("replay {}: commit_consumed(step {}): group {} is {}, not Pending", dir_, learner_step, id,
                            replay::status_name(m.status));
    auto lease = leases_.find(*seq);
    const uint64_t version = lease != leases_.end() ? lease->second.learner_version : learner_step;
    m.staleness_at_use = version > m.min_version ? version - m.min_version : 0;
    m.steps.push_back(learner_step);
    if (m.uses() >= opts_.max_uses) {
      m.status = GroupStatus::Consumed;
      next.by_status[idx(GroupStatus::Pending)]--;
      next.by_status[idx(GroupStatus::Consumed)]++;
      batch.Delete(h_->pending, u64_key(*seq));
    } else {
      lowest_repending = std::min(lowest_repending, *seq);
    }
    batch.Put(h_->meta, u64_key(*seq), replay::encode_meta(m));
    batch.Put(h_->consumed, replay::step_seq_key(learner_step, *seq), rocksdb::Slice());
  }
  M1_RETURN_IF_ERROR(write(batch, std::move(next), "recording consumption"));
  for (uint64_t s : seqs) leases_.erase(s);
  if (lowest_repending < h_->pending_floor) h_->pending_floor = lowest_repending;
  counters_.leased = leases_.size();
  return Status::ok();
}

Result<uint64_t> ReplayStore::rollback_after(uint64_t learner_step) {
  M1_RETURN_IF_ERROR(require_writable("rollback_after"));
  release_all();
  if (learner_step == UINT64_MAX) return uint64_t(0);
  rocksdb::WriteBatch batch;
  ReplayCounters next = counters_;
  std::map<uint64_t, GroupMeta> touched;
  uint64_t undone = 0;
  std::unique_ptr<rocksdb::Iterator> it(h_->db->NewIterator(rocksdb::ReadOptions(), h_->consumed));
  for (it->Seek(replay::step_seq_key(learner_step + 1, 0)); it->Valid(); it->Next()) {
    const std::string_view k = it->key().ToStringView();
    if (k.size() != 16) {
      log_error("replay {}: consumed key {} is {} bytes, expected 16; removed", dir_, hex(k), k.size());
      batch.Delete(h_->consumed, it->key());
      continue;
    }
    const uint64_t step = *decode_u64_key(k.substr(0, 8)), seq = *decode_u64_key(k.substr(8));
    auto t = touched.find(seq);
    if (t == touched.end()) {
      auto m = read_meta(seq);
      if (!m) {  // cannot undo what cannot be read; stats() and check_consistency() report it
        log_error("{}; consumption at step {} not rolled back", m.status().message(), step);
        continue;
      }
      t = touched.emplace(seq, std::move(*m)).first;
    }
    GroupMeta& m = t->second;
    batch.Delete(h_->consumed, it->key());
    auto pos = std::find(m.steps.begin(), m.steps.end(), step);
    if (pos == m.steps.end()) {
      log_error("replay {}: consumed index names step {} for seq {}, which its meta lacks; removed", dir_, step, seq);
      continue;
    }
    m.steps.erase(pos);
    undone++;
    if (m.status == GroupStatus::Consumed) {
      m.status = GroupStatus::Pending;
      next.by_status[idx(GroupStatus::Consumed)]--;
      next.by_status[idx(GroupStatus::Pending)]++;
      batch.Put(h_->pending, u64_key(seq), rocksdb::Slice());
    }
  }
  if (!it->status().ok()) return rocks_error(dir_, "scanning consumption records", it->status());
  it.reset();
  for (const auto& [seq, m] : touched) {
    batch.Put(h_->meta, u64_key(seq), replay::encode_meta(m));
    if (m.status == GroupStatus::Pending && seq < h_->pending_floor) h_->pending_floor = seq;
  }
  if (Status st = write(batch, std::move(next), "rolling back consumption"); !st.is_ok()) {
    h_->pending_floor = 0;  // may have been lowered for writes that did not happen: rescan
    return st;
  }
  return undone;
}

void ReplayStore::release(const std::vector<uint64_t>& group_ids) {
  const std::unordered_set<uint64_t> ids(group_ids.begin(), group_ids.end());
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (ids.count(it->second.group_id)) {
      if (it->first < h_->pending_floor) h_->pending_floor = it->first;
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  counters_.leased = leases_.size();
}

void ReplayStore::release_all() {
  for (const auto& [seq, l] : leases_)
    if (seq < h_->pending_floor) h_->pending_floor = seq;
  leases_.clear();
  counters_.leased = 0;
}

ReplayCounters ReplayStore::counters() const { return counters_; }

// ---- inspection ----

namespace {

bool matches(const ReplayFilter& f, const GroupMeta& m) {
  if (f.status && m.status != *f.status) return false;
  if (!f.task.empty() && m.task != f.task) return false;
  if (m.max_version < f.min_version || m.min_version > f.max_version) return false;
  if (!(m.reward_mean >= f.min_reward && m.reward_mean <= f.max_reward)) return false;
  if (f.group_id != 0 && m.group_id != f.group_id) return false;
  return m.seq > f.after_seq;
}

}  // namespace

Result<ReplayList> ReplayStore::list(const ReplayFilter& f) const {
  ReplayList out;
  auto take = [&](GroupMeta&& m) {
    if (!matches(f, m)) return;
    out.total_matched++;
    if (f.limit == 0 || out.groups.size() < f.limit) out.groups.push_back(std::move(m));
  };
  if (f.group_id != 0) {  // point lookup
    M1_ASSIGN_OR_RETURN(auto seq, seq_of(f.group_id));
    if (!seq) return out;
    auto m = read_meta(*seq);
    if (!m) out.errors.push_back(m.status().message());
    else take(std::move(*m));
    return out;
  }
  M1_RETURN_IF_ERROR(scan_meta(f.after_seq, [&](Result<GroupMeta>&& m, std::string_view) {
    if (!m) out.errors.push_back(fmt::format("replay {}: {}", dir_, m.status().message()));
    else take(std::move(*m));
    return true;
  }));
  return out;
}

Result<ReplayList> ReplayStore::since(uint64_t seq, size_t limit) const {
  ReplayFilter f;
  f.after_seq = seq;
  f.limit = limit;
  return list(f);
}

Result<ReplayGroup> ReplayStore::get(uint64_t group_id) const {
  M1_ASSIGN_OR_RETURN(auto seq, seq_of(group_id));
  if (!seq) return Status::errorf("replay {}: group {} not found", dir_, group_id);
  M1_ASSIGN_OR_RETURN(GroupMeta m, read_meta(*seq));
  return read_group(m);
}

Status ReplayStore::for_each(const ReplayFilter& f, const std::function<bool(const ReplayGroup&)>& fn) const {
  Status err;
  M1_RETURN_IF_ERROR(scan_meta(f.after_seq, [&](Result<GroupMeta>&& m, std::string_view) {
    if (!m) {
      err = Status::errorf("replay {}: {}", dir_, m.status().message());
      return false;
    }
    if (!matches(f, *m)) return true;
    auto g = read_group(*m);
    if (!g) {
      err = g.status();
      return false;
    }
    return fn(*g);
  }));
  return err;
}

Result<ReplayStats> ReplayStore::stats() const {
  ReplayStats s;
  bool any = false;
  std::vector<uint64_t> pending_min;
  M1_RETURN_IF_ERROR(scan_meta(0, [&](Result<GroupMeta>&& r, std::string_view) {
    if (!r) {
      s.errors.push_back(fmt::format("replay {}: {}", dir_, r.status().message()));
      return true;
    }
    const GroupMeta& m = *r;
    s.total++;
    s.by_status[idx(m.status)]++;
    if (m.status == GroupStatus::Dropped || m.status == GroupStatus::Quarantined) s.reasons[replay::reason_class(m.reason)]++;
    s.min_version = any ? std::min(s.min_version, m.min_version) : m.min_version;
    s.max_version = any ? std::max(s.max_version, m.max_version) : m.max_version;
    any = true;
    s.groups_by_version[m.min_version]++;
    if (m.status == GroupStatus::Pending) pending_min.push_back(m.min_version);
    if (m.uses() > 0) s.staleness_at_use[m.staleness_at_use]++;
    TaskStats& t = s.by_task[m.task];
    t.groups++;
    t.rollouts += m.size;
    t.response_tokens += m.response_tokens;
    t.reward_sum += m.reward_mean;
    t.max_response_len = std::max(t.max_response_len, m.max_response_len);
    s.last_seq = m.seq;
    return true;
  }));
  for (uint64_t v : pending_min) s.pending_lag[s.max_version - v]++;  // needs the newest version
  return s;
}

std::vector<std::string> ReplayStore::open_errors() const {
  std::vector<std::string> out;
  if (!format_error_.empty()) out.push_back(format_error_);
  out.insert(out.end(), load_errors_.begin(), load_errors_.end());
  return out;
}

}  // namespace m1
