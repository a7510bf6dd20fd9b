// RocksDB's own check of a replay database (RUN/replay/), made without opening a ReplayStore: does
// the database open with every WAL record intact, does every block of every table file pass its
// checksum. The store's own checks are ReplayStore members (replay_store.h): check_consistency (the
// invariants) and audit (every record, read past damage). replay_check.cc implements all of them.
// Ownership: results are plain values; a check opens its own read-only RocksDB instance and closes it
// before it returns. Thread safety: the functions keep no state between calls.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace m1 {

// RocksDB's own check of the database in DIR, read-only (DIR is not changed, no LOCK is taken).
// Why not just open it: RocksDB's default WAL recovery (kPointInTimeRecovery, which the writer used)
// stops at a corrupt record and drops it and every acknowledged write after it without an error,
// and the secondary instance of the readers refuses a bad checksum but takes a bad length for the
// end of the log; neither reads a table block until asked, so a corrupt block goes unnoticed.
//  1. open read-only, replaying the WAL with kTolerateCorruptedTailRecords: a corrupt record fails
//     (the damaged .log is named with the offset, replay::find_wal_damage), an incomplete last
//     record does not; a damaged MANIFEST or an SST whose footer/index cannot be read fails the open;
//  2. VERIFY_TABLES: every block checksum of every live SST file (SstFileReader::VerifyChecksum per
//     file, so each damaged file is named, with its column family and RocksDB's block offset).
// Cost: one read of the WAL and (VERIFY_TABLES) of every table file. On a live run a file the writer
// removes during the check can fail it (run it again); the answer is definitive on a stopped run.
struct ReplayDbCheck {
  bool exists = false;                // DIR holds a RocksDB database (a CURRENT file)
  bool wal_ok = true;                 // every WAL record replayed (an incomplete last one aside)
  uint64_t sst_files = 0;             // table files verified
  uint64_t wal_files = 0;             // .log files present
  std::vector<std::string> damage;    // one line per damaged file or failed step, naming the file
  bool ok() const { return damage.empty(); }
};
ReplayDbCheck check_replay_db(const std::string& dir, bool verify_tables = true);

// For a resume (`m1rl run`), before ReplayStore::open: ok when DIR holds no database yet or
// check_replay_db(DIR) passes; else an error naming DIR and the damage, with the commands that
// name every damaged record (m1rl replay check RUN) and export the intact ones (m1rl replay export
// RUN --skip-damaged --out FILE), RUN being DIR's parent when DIR is RUN/replay.
Status verify_replay_db(const std::string& dir);

}  // namespace m1
