// ReplayStore: the replay buffer, the system of record of the RL pipeline (DESIGN.md "Durability
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
//  - take_batch never returns a group beyond max_staleness (RL.md), a corrupt one, or one that is
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
// Modes: read-write (one per directory; RocksDB's LOCK enforces it) or read_only, which opens a
// RocksDB secondary instance: it works on a finished run and next to a live writer, and sees what
// the writer acknowledged up to the last refresh(). Mutating calls fail in read_only mode.
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

#include "actors/replay/replay_format.h"
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
  uint64_t max_staleness = 4;    // versions; RL.md's rule (0 = synchronous RL)
  uint32_t max_uses = 1;         // learner steps that may consume one group; ≥ 1. A property of
                                 // the run: reopening with less retires groups that reached it
  bool sync = true;              // fsync the WAL on every write (false only for benchmarks/tests)
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
  // Pending again), releases their leases. One synced batch; all or nothing. Idempotent per
  // (group, step). Errors: an unknown id, or a group that is not Pending (named with its status).
  Status commit_consumed(const std::vector<uint64_t>& group_ids, uint64_t learner_step);

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

  const std::string& dir() const { return dir_; }
  const ReplayOptions& options() const { return opts_; }

 private:
  struct Handles;  // RocksDB handles (replay_store.cc)
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
  Status scan_meta(uint64_t after_seq, const std::function<bool(Result<GroupMeta>&&, std::string_view)>& fn) const;

  std::string dir_;
  ReplayOptions opts_;
  std::unique_ptr<Handles> h_;
  bool owns_secondary_dir_ = false;
  uint64_t next_seq_ = 1;
  ReplayCounters counters_;
  std::unordered_map<uint64_t, Lease> leases_;  // seq → lease (memory only)
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
