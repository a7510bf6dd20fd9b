// The replay store's durable formats (RUN/replay/, a RocksDB database). Everything here is a pure
// function over bytes; actors/replay/replay_store.h owns the database and the state machine.
//
// Column families and keys (every integer key is 8 bytes big-endian so byte order = number order):
//   default   "format"          → "M1RP" + u16 format version (kStoreFormatVersion)
//             "count/<status>"  → u64: groups in that status (Pending, Consumed, Dropped, Quarantined)
//             "reason/<class>"  → u64: groups ever dropped/quarantined for that reason class
//             "published_version" → u64: high-water mark of the weights versions learners committed
//                                 before publishing them (ReplayStore::commit_consumed); absent in
//                                 stores written before it existed, read as 0 (no format bump:
//                                 older builds ignore the key)
//   groups    seq               → group record: the JudgedGroup bytes behind a checksummed header
//   meta      seq               → meta record: status, uses, versions, task, reward, ... (GroupMeta)
//   ids       group_id          → seq (8 bytes big-endian); dedupes appends, finds a group by id
//   pending   seq               → "" for every group whose status is Pending (take_batch's queue)
//   consumed  step ‖ seq        → "" one entry per recorded consumption (rollback_after's index)
// seq is the append sequence number: 1, 2, 3, ... in acknowledgement order.
//
// Group record (value in "groups"), all integers little-endian:
//   [0,4) magic "M1RG" · [4,6) u16 format version (kRecordVersion) · [6,8) u16 reserved (0) ·
//   [8,12) u32 CRC-32C (Castagnoli) of the payload · [12,20) u64 payload length · [20,…) payload
//   (a JudgedGroup FlatBuffer, file identifier "GRUP").
// Meta record (value in "meta"): [0,4) magic "M1RM" · [4,6) u16 version (kMetaVersion) ·
//   [6,10) u32 CRC-32C of the body · [10,…) body (field list in replay_format.cc, encode_meta).
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "messages/common_generated.h"

namespace m1::replay {

inline constexpr char kGroupMagic[4] = {'M', '1', 'R', 'G'};
inline constexpr char kMetaMagic[4] = {'M', '1', 'R', 'M'};
inline constexpr char kStoreMagic[4] = {'M', '1', 'R', 'P'};
inline constexpr uint16_t kRecordVersion = 1;
inline constexpr uint16_t kMetaVersion = 1;
inline constexpr uint16_t kStoreFormatVersion = 1;
inline constexpr size_t kGroupHeaderBytes = 20;
inline constexpr size_t kMaxReasonBytes = 1024;  // longer reasons are cut (UTF-8 unaware)

inline constexpr const char* kCfGroups = "groups";
inline constexpr const char* kCfMeta = "meta";
inline constexpr const char* kCfIds = "ids";
inline constexpr const char* kCfPending = "pending";
inline constexpr const char* kCfConsumed = "consumed";
inline constexpr const char* kFormatKey = "format";
inline constexpr const char* kPublishedVersionKey = "published_version";

// CRC-32C (Castagnoli, reflected, init/xorout 0xFFFFFFFF): crc32c("123456789") = 0xE3069283.
// Uses SSE4.2 when compiled for it (x86-64-v3 is).
uint32_t crc32c(const void* data, size_t n);

// 8-byte big-endian key and back. decode_u64_key fails unless KEY is exactly 8 bytes.
std::string u64_key(uint64_t v);
Result<uint64_t> decode_u64_key(std::string_view key);
// "consumed" key: step ‖ seq, 16 bytes.
std::string step_seq_key(uint64_t step, uint64_t seq);
// Hex of arbitrary key bytes, for error messages ("meta key 00000000000000a1").
std::string hex(std::string_view bytes);

// Group record: header + payload; decode checks magic, version, length and checksum, and returns
// the payload view into RECORD. Errors are quarantine reasons ("bad magic", "checksum mismatch: …").
std::string encode_group_record(const uint8_t* payload, size_t n);
Result<std::string_view> decode_group_record(std::string_view record);

// The durable metadata of one group. uses() = steps.size(); one entry per consuming learner step.
struct GroupMeta {
  uint64_t seq = 0;            // append sequence number (the key; not stored in the body)
  uint64_t group_id = 0;
  msg::GroupStatus status = msg::GroupStatus::Pending;
  std::string reason;          // why Dropped/Quarantined ("stale: …", "checksum mismatch: …"); else ""
  std::string task;
  uint64_t min_version = 0;    // oldest weights version among the group's response tokens
  uint64_t max_version = 0;    // newest; ≥ min_version
  float reward_mean = 0, reward_std = 0;
  uint32_t size = 0;           // rollouts
  uint64_t response_tokens = 0;  // summed over rollouts
  uint32_t max_response_len = 0; // longest response, tokens
  uint64_t created_unix_ms = 0;  // from the message
  uint64_t payload_bytes = 0;
  uint64_t staleness_at_use = 0; // learner version − min_version when last consumed (0 if never)
  std::vector<uint64_t> steps;   // learner steps that consumed it, in commit order
  uint32_t uses() const { return uint32_t(steps.size()); }
};

std::string encode_meta(const GroupMeta& m);
// SEQ is the key the value was stored under. Errors describe the corruption (the caller names the key).
Result<GroupMeta> decode_meta(uint64_t seq, std::string_view value);

// The class of a reason: the text before the first ':' ("stale: 3 < 10 − 4" → "stale").
std::string reason_class(std::string_view reason);
const char* status_name(msg::GroupStatus s);

// Little-endian u64 values (counters).
std::string u64_value(uint64_t v);
Result<uint64_t> decode_u64_value(std::string_view v);

// RocksDB's write-ahead log (RocksDB db/log_format.h, the legacy record format, written unless WAL
// recycling or compression is on; the store turns on neither): 32 KiB blocks of records
//   [0,4) masked CRC-32C of type‖payload · [4,6) u16 payload length · [6] type · [7,…) payload,
// a block's last < 7 bytes zero padding, a zero header (type 0, length 0) preallocated space that ends
// the block. Used only to say WHERE a WAL is damaged once RocksDB refused it; RocksDB decides WHETHER.
// Returns "" when every record's length and checksum hold, else the first damage, "offset N: …".
// An incomplete record at the end of LOG (a write cut by a crash, never acknowledged) is not damage.
std::string find_wal_damage(std::string_view log);

}  // namespace m1::replay
