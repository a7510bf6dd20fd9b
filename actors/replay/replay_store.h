// ReplayStore: the replay buffer, the system of record of the RL pipeline (docs/architecture.md "Durability
// and consistency"), over one RocksDB database (RUN/replay/). On-disk formats: replay_format.h.
//
// Life of a group:  append → Pending ─take_batch→ leased ─commit_consumed→ Pending (uses < max_uses)
//                                                                        └→ Consumed (uses = max_uses)
//                   Pending ─take_batch→ Dropped("stale: …")   when learner_version − min_version > max_staleness
//                   Pending ─take_batch→ Quarantined("…")      when its record fails magic/version/checksum/decode
//                   Consumed/Pending ─rollback_after(S)→ Pending with the uses of steps > S undone
// Contracts:
//  - append returns only after the groups, their metadata and the counters are in ONE RocksDB
//    WriteBatch written with sync (unless ReplayOptions::sync is false): acknowledge after it.
//    Re-appending an acknowledged group id is a no-op (a sampler retry after a crash).
//  - Nothing acknowledged is lost or silently skipped: every group id ever acknowledged has a meta
//    entry whose status is Pending, Consumed, Dropped (with reason) or Quarantined (with reason),
//    and uses ≤ max_uses. check_consistency() verifies this and the indexes/counters.
//  - take_batch never returns a group beyond max_staleness (docs/rl.md), a corrupt one, or one that is
//    leased. Leases live in memory only: reopening the store (or rollback_after) releases them, so
//    a crash redelivers everything not committed.
//  - Consumption protocol for exactly-once-per-checkpoint (a learner at step S):
//      batch = take_batch(n, version); train; commit_consumed(ids, S); write checkpoint S (DONE).
//    On resume from checkpoint S0: rollback_after(S0) undoes the consumptions of steps > S0 (their
//    checkpoints never completed), so those groups are delivered again and nothing else is.
//    Every learner start calls it (a start without a checkpoint: rollback_after(0); steps are ≥ 1).
//    commit_consumed must be durable BEFORE checkpoint S is published: committing after it would
//    let a crash between the two reuse the groups of a completed step.
//  - Corrupt metadata never crashes the store: take_batch quarantines it; inspection calls report
//    an error naming the key.
//  - Damage (a corrupt SST block, a corrupt WAL record) is never skipped silently: the writer's WAL
//    recovery refuses any corrupt record but an incomplete last one (a write cut by a crash, never
//    acknowledged), and check_replay_db() (replay_check.h) runs RocksDB's own checks before a resume.
// Modes: read-write (one per directory; RocksDB's LOCK enforces it) or read_only, which opens a
// RocksDB secondary instance: it works on a finished run and next to a live writer, and sees what
// the writer acknowledged up to the last refresh(). Mutating calls fail in read_only mode.
// read_only + salvage opens RocksDB's plain read-only mode instead, replaying the WAL past corrupt
// records: a snapshot of what is still readable, for check and export of a damaged store.
// Thread safety: none; one owner (the replay actor, or the `m1rl replay` command) calls it.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/replay/replay_check.h"
#include "actors/replay/replay_format.h"
#include "actors/staleness.h"
#include "base/status.h"
#include "messages/codec.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace m1 {

using replay::GroupMeta;

struct ReplayOptions {
  bool read_only = false;        // open as a RocksDB secondary (inspection; live or finished run)
  std::string secondary_dir;     // read_only: the secondary's own files; "" = a temp dir, removed on close
  uint64_t max_staleness = kDefaultMaxStaleness;  // versions; docs/rl.md's rule (actors/staleness.h)
  uint32_t max_uses = 1;         // learner steps that may consume one group; ≥ 1. A property of
                                 // the run: reopening with less retires groups that reached it
  bool sync = true;              // fsync the WAL on every write (false only for benchmarks/tests)
  bool salvage = false;          // read_only: plain read-only open skipping corrupt WAL records
                                 // (kSkipAnyCorruptedRecords); a snapshot, refresh() does nothing
};

// A group handed out by take_batch or read by get(): its metadata and the JudgedGroup bytes.
struct ReplayGroup {
  GroupMeta meta;
  msg::Bytes bytes;       // the verified JudgedGroup (take_batch); as stored (get)
  std::string integrity;  // "" when the record passed magic, version, checksum and decode; else why not
};

struct AppendResult {
  size_t appended = 0;    // new groups made durable
  size_t duplicates = 0;  // group ids already stored (or repeated in the call): ignored
  uint64_t last_seq = 0;  // sequence number of the newest group after the call
};

// Cheap running counters (durable, kept in the default column family with every write).
struct ReplayCounters {
  uint64_t by_status[4] = {0, 0, 0, 0};        // indexed by msg::GroupStatus
  std::map<std::string, uint64_t> reasons;     // reason class ("stale", "checksum mismatch") → groups
  uint64_t leased = 0;                         // in memory
  uint64_t last_seq = 0;
  uint64_t published_version = 0;              // durable: the highest weights version any learner
                                               // committed before publishing it (commit_consumed);
                                               // 0 = none (or a store written before the field)
};

// Filters for list(); a group matches when all hold.
struct ReplayFilter {
  std::optional<msg::GroupStatus> status;
  std::string task;                            // "" = any
  uint64_t min_version = 0;                    // the group's [min_version, max_version] overlaps
  uint64_t max_version = std::numeric_limits<uint64_t>::max();  // [min_version, max_version] here
  float min_reward = -std::numeric_limits<float>::infinity();   // on reward_mean, inclusive
  float max_reward = std::numeric_limits<float>::infinity();
  uint64_t group_id = 0;                       // 0 = any
  uint64_t after_seq = 0;                      // only groups appended after this sequence number
  size_t limit = 100;                          // at most this many returned; 0 = no limit
};

struct ReplayList {
  std::vector<GroupMeta> groups;      // in append order
  uint64_t total_matched = 0;         // ≥ groups.size() (counts past the limit)
  std::vector<std::string> errors;    // corrupt entries skipped, each naming its key
};

struct TaskStats {
  uint64_t groups = 0, rollouts = 0, response_tokens = 0;
  double reward_sum = 0;              // Σ reward_mean over groups
  uint32_t max_response_len = 0;
  double mean_reward() const { return groups ? reward_sum / double(groups) : 0; }
  double mean_response_len() const { return rollouts ? double(response_tokens) / double(rollouts) : 0; }
};

// What audit() found. Every seq from 1 to the newest one found is counted once: intact, or damaged
// as one of the two kinds below.
struct ReplayAudit {
  uint64_t records = 0;      // groups (seqs) accounted for
  uint64_t intact = 0;       // metadata and record read, the record verified (magic, checksum, decode, id)
  uint64_t unreadable = 0;   // metadata or record RocksDB cannot read (corrupt block), metadata that does
                             // not decode, or a seq with no metadata (lost): not passed to audit's FN
  uint64_t bad_payload = 0;  // metadata fine, record read but failing verification: passed, flagged
  uint64_t damaged() const { return records - intact; }
  std::vector<std::string> errors;  // one line per damaged seq, or per stretch of consecutive seqs with
                                    // one cause: "group ID (seq S): why" / "seqs A..B (N groups; group
                                    // ids …): why" (ids from the metadata, else the record; first 8)
};

struct ReplayStats {
  uint64_t total = 0;
  uint64_t by_status[4] = {0, 0, 0, 0};             // indexed by msg::GroupStatus
  std::map<std::string, uint64_t> reasons;          // Dropped + Quarantined, by reason class
  uint64_t min_version = 0, max_version = 0;        // over all groups (0, 0 when empty)
  std::map<uint64_t, uint64_t> groups_by_version;   // min token version → groups
  std::map<uint64_t, uint64_t> staleness_at_use;    // consumed at least once: staleness → groups
  std::map<uint64_t, uint64_t> pending_lag;         // Pending: max_version − min_version → groups
  std::map<std::string, TaskStats> by_task;
  uint64_t last_seq = 0;
  std::vector<std::string> errors;                  // corrupt meta entries, each naming its key
};

class ReplayStore {
 public:
  // Opens (read-write: creating it if missing) the store in DIR. Errors name DIR and the cause
  // (locked by another writer, not a replay store, newer format, corrupt counters).
  static Result<std::unique_ptr<ReplayStore>> open(const std::string& dir, const ReplayOptions& o);
  ~ReplayStore();  // closes; nothing needs flushing (every acknowledged write is already durable)
  ReplayStore(const ReplayStore&) = delete;
  ReplayStore& operator=(const ReplayStore&) = delete;

  // Verifies each buffer as a JudgedGroup (messages/codec.h) and stores the new ones in one synced
  // WriteBatch. All or nothing: any invalid buffer fails the call (naming its index) and stores none.
  Result<AppendResult> append(const std::vector<msg::Bytes>& groups);

  // Up to N groups, oldest Pending first, each leased until commit_consumed/release/reopen.
  // Stale groups (learner_version − min_version > max_staleness) become Dropped("stale: …") and
  // corrupt ones Quarantined(reason), durably (one synced batch), on the way. Fewer than N (maybe
  // none) when the buffer runs out.
  Result<std::vector<ReplayGroup>> take_batch(size_t n, uint64_t learner_version);

  // Records that learner step LEARNER_STEP consumed GROUP_IDS: uses + 1 (Consumed at max_uses, else
  // Pending again), releases their leases, and raises counters().published_version to
  // PUBLISHED_VERSION (the weights version the learner publishes once this commit is durable; the
  // mark only grows: max of old and new). One synced batch; all or nothing. Idempotent per
  // (group, step): repeating a call that succeeded changes nothing (a retry after a lost reply).
  // Errors: an unknown id, or a group that is not Pending (named with its status).
  Status commit_consumed(const std::vector<uint64_t>& group_ids, uint64_t learner_step,
                         uint64_t published_version = 0);

  // Resume from the checkpoint of step LEARNER_STEP: undoes every consumption recorded for a step
  // > LEARNER_STEP (uses − 1; a Consumed group becomes Pending; Dropped/Quarantined stay so) and
  // releases every lease. One synced batch. Returns the number of consumptions undone.
  Result<uint64_t> rollback_after(uint64_t learner_step);

  // Returns leased groups to the queue without consuming them (unknown ids are ignored).
  void release(const std::vector<uint64_t>& group_ids);
  void release_all();

  // ---- inspection: every mode ----
  // read_only: catches up with the live writer (RocksDB TryCatchUpWithPrimary). No-op otherwise.
  Status refresh();
  ReplayCounters counters() const;
  Result<ReplayStats> stats() const;                 // scans all metadata
  Result<ReplayList> list(const ReplayFilter& f) const;
  // Groups appended after sequence number SEQ (tail -f: remember the last seq seen).
  Result<ReplayList> since(uint64_t seq, size_t limit = 0) const;
  // Full record of one group. Error when the id is unknown or its metadata is corrupt; a corrupt
  // payload is returned with `integrity` saying why.
  Result<ReplayGroup> get(uint64_t group_id) const;
  // Export: calls FN for every matching group (limit ignored) in append order, with its bytes;
  // stops early when FN returns false. Corrupt metadata is an error naming the key.
  Status for_each(const ReplayFilter& f, const std::function<bool(const ReplayGroup&)>& fn) const;
  // Full audit: every meta entry decodes; status/uses invariants hold; the pending and consumed
  // indexes and the durable counters agree with the metadata; ids map to their seqs.
  Status check_consistency() const;
  // Reads every group past storage damage: calls FN (when set) in append order with each group whose
  // metadata and record are readable, verified (integrity "") or not (integrity says why, as get());
  // counts and names the rest. The metadata scan is the only iteration: a RocksDB iterator stops at
  // the first corrupt block (status Corruption), so the scan steps over that stretch one seq at a
  // time with point reads (which also find a newer intact version of a key kept in another file)
  // and seeks on after it; records are point reads. FN returning false stops the scan.
  // Limits (what cannot be salvaged): every record in a corrupt data block (~4 KiB: a few groups, or
  // dozens of metadata entries); a group whose metadata is lost is named by seq and, when its record
  // is readable, by the group id in it, but is not passed to FN (its status and uses are unknown);
  // every record of a table file whose footer or index is damaged (RocksDB cannot open the file);
  // everything when the MANIFEST is damaged (no open works; RocksDB's RepairDB, not run here, can
  // rebuild one from the table files, on a copy). Groups lost with damaged WAL records are counted
  // only when a later record survived (a gap in the seqs); a lost WAL tail cannot be counted.
  // Errors: only failures that are not damage (I/O).
  Result<ReplayAudit> audit(const std::function<bool(const ReplayGroup&)>& fn = nullptr) const;
  // read_only: what open could not read but opened past (corrupt counters, an unreadable newest
  // metadata entry); empty when everything loaded. A writer fails to open instead.
  std::vector<std::string> open_errors() const;

  const std::string& dir() const { return dir_; }
  const ReplayOptions& options() const { return opts_; }

 private:
  struct Handles;  // RocksDB handles (replay_internal.h)
  struct Lease {
    uint64_t group_id = 0;
    uint64_t learner_version = 0;  // the version take_batch was called with
  };
  ReplayStore(std::string dir, ReplayOptions o);
  Status check_format();
  Status load_state();
  Status write(rocksdb::WriteBatch& b, ReplayCounters next, const char* what);
  std::optional<uint64_t> id_from_payload(uint64_t seq) const;
  Status require_writable(const char* op) const;
  Result<std::optional<uint64_t>> seq_of(uint64_t group_id) const;
  Result<GroupMeta> read_meta(uint64_t seq) const;
  Result<ReplayGroup> read_group(const GroupMeta& m) const;
  std::string verify_payload(const GroupMeta& m, std::string_view record, msg::Bytes* out) const;
  void fill_group(ReplayGroup& g, std::string_view record) const;  // integrity and bytes from RECORD
  // Calls FN with every meta entry after AFTER_SEQ in key order, stepping over corrupt blocks (see
  // audit()): each stretch of seqs RocksDB cannot read goes to DAMAGED(first, last, why), or, when
  // DAMAGED is not set, to FN as one error naming the stretch (key "").
  Status scan_meta(uint64_t after_seq, const std::function<bool(Result<GroupMeta>&&, std::string_view)>& fn,
                   const std::function<bool(uint64_t, uint64_t, const std::string&)>& damaged = nullptr) const;
  uint64_t max_sst_key(rocksdb::ColumnFamilyHandle* cf) const;

  std::string dir_;
  ReplayOptions opts_;
  std::unique_ptr<Handles> h_;
  bool owns_secondary_dir_ = false;
  uint64_t next_seq_ = 1;
  ReplayCounters counters_;
  std::unordered_map<uint64_t, Lease> leases_;  // seq → lease (memory only)
  std::string format_error_;                    // read_only: see open_errors()
  std::vector<std::string> load_errors_;        // read_only, from the last load_state()
};

// Durable append throughput: GROUPS synthetic groups (8 rollouts × 64 tokens each) appended
// PER_COMMIT at a time (one synced WriteBatch per call) into a fresh store at DIR, which must not
// exist (it is created and removed). Returns groups/s, or a negative value on error (logged).
double bench_append_groups_per_s(const std::string& dir, int groups, int per_commit);

struct ReplayBenchResult {
  double groups_per_s = 0;
  double mb_per_s = 0;       // payload MB (1e6 bytes) per second
  double bytes_per_group = 0;
  int commits = 0;
};
Result<ReplayBenchResult> bench_replay_append(const std::string& dir, int groups, int per_commit,
                                              int rollouts = 8, int tokens = 64);

// A synthetic valid JudgedGroup (for benchmarks and tests): ROLLOUTS responses of TOKENS tokens
// each, every token made by weights version VERSION, rewards alternating 0/1.
msg::Bytes make_synthetic_group(uint64_t group_id, const std::string& task, uint64_t version,
                                int rollouts, int tokens, float reward_mean = 0.5f);

}  // namespace m1
