// Replay store record codecs (formats in replay_format.h).
#include "actors/replay/replay_format.h"

#include <array>
#include <cstring>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace m1::replay {

namespace {

constexpr size_t kMetaHeaderBytes = 10;

#if !defined(__SSE4_2__)
std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
#endif

void put_u16(std::string& s, uint16_t v) {
  s.push_back(char(v & 0xff));
  s.push_back(char(v >> 8));
}
void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put_f32(std::string& s, float f) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  put_u32(s, v);
}
uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}

// Bounds-checked little-endian reader over a meta body; the first failure sticks.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  uint64_t u(int bytes, const char* what) {
    if (!need(size_t(bytes), what)) return 0;
    const uint64_t v = get_le(s_.data() + pos_, bytes);
    pos_ += size_t(bytes);
    return v;
  }
  float f32(const char* what) {
    const uint32_t v = uint32_t(u(4, what));
    float f;
    std::memcpy(&f, &v, 4);
    return f;
  }
  std::string str(const char* what) {
    const size_t n = size_t(u(2, what));
    if (!need(n, what)) return {};
    std::string out(s_.substr(pos_, n));
    pos_ += n;
    return out;
  }
  bool ok() const { return err_.empty(); }
  bool at_end() const { return pos_ == s_.size(); }
  size_t pos() const { return pos_; }
  const std::string& error() const { return err_; }

 private:
  bool need(size_t n, const char* what) {
    if (!err_.empty()) return false;
    if (s_.size() - pos_ < n) {
      err_ = fmt::format("truncated at byte {} reading {}", pos_, what);
      return false;
    }
    return true;
  }
  std::string_view s_;
  size_t pos_ = 0;
  std::string err_;
};

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
#if defined(__SSE4_2__)
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c64 = _mm_crc32_u64(c64, w);
    p += 8;
    n -= 8;
  }
  c = uint32_t(c64);
  while (n--) c = _mm_crc32_u8(c, *p++);
#else
  static const std::array<uint32_t, 256> table = make_crc_table();
  while (n--) c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
#endif
  return c ^ 0xFFFFFFFFu;
}

std::string u64_key(uint64_t v) {
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) k[size_t(i)] = char((v >> (8 * (7 - i))) & 0xff);
  return k;
}

Result<uint64_t> decode_u64_key(std::string_view key) {
  if (key.size() != 8)
    return Status::errorf("key {} is {} bytes, expected 8", hex(key), key.size());
  uint64_t v = 0;
  for (char c : key) v = (v << 8) | uint8_t(c);
  return v;
}

std::string step_seq_key(uint64_t step, uint64_t seq) { return u64_key(step) + u64_key(seq); }

std::string hex(std::string_view bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    out.push_back(kDigits[uint8_t(c) >> 4]);
    out.push_back(kDigits[uint8_t(c) & 15]);
  }
  return out;
}

std::string encode_group_record(const uint8_t* payload, size_t n) {
  std::string r;
  r.reserve(kGroupHeaderBytes + n);
  r.append(kGroupMagic, 4);
  put_u16(r, kRecordVersion);
  put_u16(r, 0);
  put_u32(r, crc32c(payload, n));
  put_u64(r, n);
  r.append(reinterpret_cast<const char*>(payload), n);
  return r;
}

Result<std::string_view> decode_group_record(std::string_view r) {
  if (r.size() < kGroupHeaderBytes)
    return Status::errorf("truncated record: {} bytes, header needs {}", r.size(), kGroupHeaderBytes);
  if (std::memcmp(r.data(), kGroupMagic, 4) != 0)
    return Status::errorf("bad magic: {} (expected M1RG)", hex(r.substr(0, 4)));
  const uint64_t version = get_le(r.data() + 4, 2);
  if (version != kRecordVersion)
    return Status::errorf("unsupported record version: {} (this build reads {})", version, kRecordVersion);
  const uint64_t n = get_le(r.data() + 12, 8);
  if (n != r.size() - kGroupHeaderBytes)
    return Status::errorf("length mismatch: header says {} payload bytes, record holds {}", n,
                          r.size() - kGroupHeaderBytes);
  const uint32_t want = uint32_t(get_le(r.data() + 8, 4));
  const uint32_t got = crc32c(r.data() + kGroupHeaderBytes, n);
  if (want != got)
    return Status::errorf("checksum mismatch: stored crc32c {:08x}, computed {:08x}", want, got);
  return r.substr(kGroupHeaderBytes);
}

// Body fields, in order (little-endian): u64 group_id · u8 status · u64 min_version ·
// u64 max_version · f32 reward_mean · f32 reward_std · u32 size · u64 response_tokens ·
// u32 max_response_len · u64 created_unix_ms · u64 payload_bytes · u64 staleness_at_use ·
// str task · str reason · u32 step count · u64 steps[count]   (str = u16 length + bytes)
std::string encode_meta(const GroupMeta& m) {
  std::string body;
  body.reserve(96 + m.task.size() + m.reason.size() + 8 * m.steps.size());
  put_u64(body, m.group_id);
  body.push_back(char(uint8_t(m.status)));
  put_u64(body, m.min_version);
  put_u64(body, m.max_version);
  put_f32(body, m.reward_mean);
  put_f32(body, m.reward_std);
  put_u32(body, m.size);
  put_u64(body, m.response_tokens);
  put_u32(body, m.max_response_len);
  put_u64(body, m.created_unix_ms);
  put_u64(body, m.payload_bytes);
  put_u64(body, m.staleness_at_use);
  const std::string_view task = std::string_view(m.task).substr(0, 0xffff);
  put_u16(body, uint16_t(task.size()));
  body.append(task);
  const std::string_view reason = std::string_view(m.reason).substr(0, kMaxReasonBytes);
  put_u16(body, uint16_t(reason.size()));
  body.append(reason);
  put_u32(body, uint32_t(m.steps.size()));
  for (uint64_t s : m.steps) put_u64(body, s);

  std::string out;
  out.reserve(kMetaHeaderBytes + body.size());
  out.append(kMetaMagic, 4);
  put_u16(out, kMetaVersion);
  put_u32(out, crc32c(body.data(), body.size()));
  out += body;
  return out;
}

Result<GroupMeta> decode_meta(uint64_t seq, std::string_view v) {
  if (v.size() < kMetaHeaderBytes)
    return Status::errorf("truncated meta: {} bytes, header needs {}", v.size(), kMetaHeaderBytes);
  if (std::memcmp(v.data(), kMetaMagic, 4) != 0)
    return Status::errorf("bad meta magic: {} (expected M1RM)", hex(v.substr(0, 4)));
  const uint64_t version = get_le(v.data() + 4, 2);
  if (version != kMetaVersion)
    return Status::errorf("unsupported meta version: {} (this build reads {})", version, kMetaVersion);
  const std::string_view body = v.substr(kMetaHeaderBytes);
  const uint32_t want = uint32_t(get_le(v.data() + 6, 4));
  const uint32_t got = crc32c(body.data(), body.size());
  if (want != got)
    return Status::errorf("meta checksum mismatch: stored crc32c {:08x}, computed {:08x}", want, got);

  Reader r(body);
  GroupMeta m;
  m.seq = seq;
  m.group_id = r.u(8, "group_id");
  const uint64_t status = r.u(1, "status");
  m.min_version = r.u(8, "min_version");
  m.max_version = r.u(8, "max_version");
  m.reward_mean = r.f32("reward_mean");
  m.reward_std = r.f32("reward_std");
  m.size = uint32_t(r.u(4, "size"));
  m.response_tokens = r.u(8, "response_tokens");
  m.max_response_len = uint32_t(r.u(4, "max_response_len"));
  m.created_unix_ms = r.u(8, "created_unix_ms");
  m.payload_bytes = r.u(8, "payload_bytes");
  m.staleness_at_use = r.u(8, "staleness_at_use");
  m.task = r.str("task");
  m.reason = r.str("reason");
  const uint64_t nsteps = r.u(4, "step count");
  if (r.ok() && nsteps > (body.size() - r.pos()) / 8)
    return Status::errorf("meta step count {} exceeds the {} bytes left", nsteps, body.size() - r.pos());
  m.steps.reserve(size_t(nsteps));
  for (uint64_t i = 0; i < nsteps && r.ok(); ++i) m.steps.push_back(r.u(8, "steps"));
  if (!r.ok()) return Status::error("meta " + r.error());
  if (!r.at_end()) return Status::errorf("meta has {} trailing bytes", body.size() - r.pos());
  if (status > uint64_t(msg::GroupStatus::Quarantined))
    return Status::errorf("meta status {} out of range [0, 3]", status);
  m.status = msg::GroupStatus(status);
  if (m.group_id == 0) return Status::error("meta group_id is 0");
  if (m.min_version > m.max_version)
    return Status::errorf("meta min_version {} > max_version {}", m.min_version, m.max_version);
  return m;
}

std::string reason_class(std::string_view reason) {
  const size_t colon = reason.find(':');
  return std::string(reason.substr(0, colon));
}

const char* status_name(msg::GroupStatus s) {
  switch (s) {
    case msg::GroupStatus::Pending: return "Pending";
    case msg::GroupStatus::Consumed: return "Consumed";
    case msg::GroupStatus::Dropped: return "Dropped";
    case msg::GroupStatus::Quarantined: return "Quarantined";
  }
  return "?";
}

std::string u64_value(uint64_t v) {
  std::string s;
  put_u64(s, v);
  return s;
}

Result<uint64_t> decode_u64_value(std::string_view v) {
  if (v.size() != 8) return Status::errorf("value is {} bytes, expected 8", v.size());
  return get_le(v.data(), 8);
}

std::string find_wal_damage(std::string_view log) {
  constexpr size_t kBlock = 32768, kHeader = 7;
  constexpr uint32_t kMaskDelta = 0xa282ead8u;
  std::string buf;
  size_t off = 0;
  while (off < log.size()) {
    const size_t left = kBlock - off % kBlock;        // bytes to the end of this block
    if (left < kHeader) {                             // block trailer: padding
      off += left;
      continue;
    }
    if (log.size() - off < kHeader) return "";       // a header cut by the end of the file
    const char* p = log.data() + off;
    const uint32_t stored = uint32_t(get_le(p, 4));
    const size_t len = size_t(get_le(p + 4, 2));
    const uint8_t type = uint8_t(p[6]);
    if (type == 0 && len == 0) {                      // preallocated zeros: RocksDB skips the block rest
      off += left;
      continue;
    }
    const bool last_block = log.size() - off <= left;
    if (kHeader + len > left) {
      if (last_block) return "";                      // the record the writer was cut off in
      return fmt::format("offset {}: bad record length {} (the record would cross its 32 KiB block)", off, len);
    }
    if (kHeader + len > log.size() - off) return "";  // cut by the end of the file
    buf.assign(1, char(type));
    buf.append(p + kHeader, len);
    const uint32_t c = crc32c(buf.data(), buf.size());
    const uint32_t masked = ((c >> 15) | (c << 17)) + kMaskDelta;
    if (masked != stored)
      return fmt::format("offset {}: checksum mismatch (record type {}, {} bytes)", off, unsigned(type), len);
    off += kHeader + len;
  }
  return "";
}

}  // namespace m1::replay
