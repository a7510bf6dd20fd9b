// ReplayStore over RocksDB (contracts in replay_store.h, formats in replay_format.h).
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
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_reader.h>
#include <rocksdb/write_batch.h>

#include "base/file.h"
#include "base/log.h"

namespace m1 {

using msg::GroupStatus;
using replay::decode_u64_key;
using replay::hex;
using replay::u64_key;

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

size_t idx(GroupStatus s) { return size_t(s); }

Status rocks_error(const std::string& dir, const char* what, const rocksdb::Status& s) {
  return Status::errorf("replay {}: {}: {}", dir, what, s.ToString());
}

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
  if (b.Count() == 0) return Status::ok();
  put_counters(b, h_->def, counters_, next);
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

Status ReplayStore::commit_consumed(const std::vector<uint64_t>& group_ids, uint64_t learner_step) {
  M1_RETURN_IF_ERROR(require_writable("commit_consumed"));
  rocksdb::WriteBatch batch;
  ReplayCounters next = counters_;
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
