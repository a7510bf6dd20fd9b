// TensorBoard event files: DIR/events.out.tfevents.<unix seconds>.<host>, one tensorflow Event per
// metrics record, so `tensorboard --logdir runs/` shows every scalar of a run by step, live.
// MetricsLog writes RUN/tb/ next to RUN/metrics.jsonl; `m1rl sft` writes OUT/tb/.
//
// File format (tensorflow/core/lib/io/record_writer.cc): a sequence of TFRecords,
//   u64 length (LE) | u32 mask(crc32c(the 8 length bytes)) (LE) | data[length] | u32 mask(crc32c(data)) (LE)
// with mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and CRC32C the Castagnoli CRC (reflected
// polynomial 0x82F63B78, init and final xor 0xFFFFFFFF). Each record's data is one protobuf Event
// (tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto), hand-encoded here
// since these are the only messages we write:
//   Event   { double wall_time = 1 (unix seconds); int64 step = 2; string file_version = 3;
//             Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// The first record of a file is Event{wall_time, file_version: "brain.Event:2"}; each later one is
// Event{wall_time, step, summary} for one metrics record (scalars_of() says which values).
//
// Durability: every record is fflush()ed, so it is in the page cache and a live TensorBoard sees it;
// it is never fsynced. metrics.jsonl is the durable record; this file is a view of it.
//
// Errors are Status values; callers keep training when TensorBoard output fails (they warn once and
// drop the writer).
//
// Header-only: model/sft.cc (library m1_model, which m1_actors links, not the reverse) writes event
// files too, and a symbol defined in m1_actors would not resolve from m1_model. Depends on base/ only.
//
// Ownership and threads: TbWriter owns its FILE*; movable, not copyable; not thread-safe (MetricsLog
// calls it under its own mutex). The free functions are pure.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/status.h"

namespace m1 {
namespace tb {

// ---- CRC32C and TFRecord framing ----

inline constexpr std::array<uint32_t, 256> kCrc32cTable = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}();

// CRC32C of DATA[0, N) continuing CRC (the CRC32C of the bytes before; 0 for none).
inline uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrc32cTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}
inline uint32_t crc32c(const void* data, size_t n) { return crc32c_extend(0, data, n); }
inline uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }

inline constexpr uint32_t kCrcMaskDelta = 0xa282ead8u;
inline uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }
inline uint32_t unmask_crc(uint32_t masked) {
  const uint32_t rot = masked - kCrcMaskDelta;
  return (rot >> 17) | (rot << 15);
}

inline void put_le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(char((v >> (8 * i)) & 0xFF));
}

// DATA framed as one TFRecord (layout at the top of this file).
inline std::string frame_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(&out, data.size(), 8);
  put_le(&out, mask_crc(crc32c(out.data(), 8)), 4);
  out.append(data);
  put_le(&out, mask_crc(crc32c(data)), 4);
  return out;
}

// ---- protobuf encoding (wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) ----

inline void put_varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(char((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(char(v));
}
inline void put_key(std::string* out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }
inline void put_bytes_field(std::string* out, uint32_t field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out->append(bytes);
}
inline void put_double_field(std::string* out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_key(out, field, 1);
  put_le(out, bits, 8);
}
inline void put_float_field(std::string* out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_key(out, field, 5);
  put_le(out, bits, 4);
}

inline constexpr const char* kFileVersion = "brain.Event:2";

// One scalar of a Summary: TAG as TensorBoard shows it ("reward_by_task/add"), VALUE finite.
struct Scalar {
  std::string tag;
  float value = 0;
};

// Event{wall_time, file_version: "brain.Event:2"}: the first record of every events file.
inline std::string encode_file_version_event(double wall_time) {
  std::string out;
  put_double_field(&out, 1, wall_time);
  put_bytes_field(&out, 3, kFileVersion);
  return out;
}

// Event{wall_time, step, summary: Summary{value: [Value{tag, simple_value}...]}}. The step is always
// written (also 0, which proto3 would omit; decoders accept both).
inline std::string encode_scalars_event(double wall_time, int64_t step, const std::vector<Scalar>& values) {
  std::string summary;
  for (const Scalar& s : values) {
    std::string value;
    put_bytes_field(&value, 1, s.tag);
    put_float_field(&value, 2, s.value);
    put_bytes_field(&summary, 1, value);
  }
  std::string out;
  put_double_field(&out, 1, wall_time);
  put_key(&out, 2, 0);
  put_varint(&out, uint64_t(step));  // int64: two's complement, as protobuf does
  put_bytes_field(&out, 5, summary);
  return out;
}

// ---- metrics records as scalars ----

inline void collect_scalars(const nlohmann::json& j, const std::string& prefix, std::vector<Scalar>* out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string tag = prefix.empty() ? it.key() : prefix + "/" + it.key();
    if (it->is_object()) {
      collect_scalars(*it, tag, out);
    } else if (it->is_number()) {
      const float v = float(it->get<double>());
      if (std::isfinite(v)) out->push_back({tag, v});
    }
  }
}

// The scalars of metrics record RECORD, in key order: every number, nested objects flattened with
// "/" ({"reward_by_task": {"add": 0.5}} -> "reward_by_task/add"). Left out: the top-level "step"
// (it is the event's step), values that are not numbers (strings, booleans, null, arrays such as
// staleness_hist) and numbers that are not finite as a float. Empty unless RECORD is an object.
inline std::vector<Scalar> scalars_of(const nlohmann::json& record) {
  std::vector<Scalar> out;
  if (!record.is_object()) return out;
  nlohmann::json rest = record;
  rest.erase("step");
  collect_scalars(rest, "", &out);
  return out;
}

// "events.out.tfevents.<UNIX_S>.<HOST>" ('/' in HOST becomes '_'; an empty HOST is "localhost"):
// the name TensorBoard looks for (it reads every file whose name contains "tfevents").
inline std::string events_file_name(int64_t unix_s, std::string host) {
  if (host.empty()) host = "localhost";
  for (char& ch : host)
    if (ch == '/') ch = '_';
  return "events.out.tfevents." + std::to_string(unix_s) + "." + host;
}

inline double unix_now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

}  // namespace tb

// Writes one events file. State: closed -> open() -> open (write()...) -> close() -> closed.
class TbWriter {
 public:
  TbWriter() = default;
  ~TbWriter() { (void)close(); }
  TbWriter(TbWriter&& o) noexcept { *this = std::move(o); }
  TbWriter& operator=(TbWriter&& o) noexcept {
    if (this == &o) return *this;
    (void)close();
    f_ = std::exchange(o.f_, nullptr);
    path_ = std::move(o.path_);
    offset_ = o.offset_;
    step_ = o.step_;
    events_ = o.events_;
    return *this;
  }
  TbWriter(const TbWriter&) = delete;
  TbWriter& operator=(const TbWriter&) = delete;

  // Creates DIR (and its parents) and a new events file in it named events_file_name(now, host) —
  // a new file per process start, as TensorBoard expects; when that name is taken (a second writer
  // within the same second) ".1", ".2", ... is appended. Writes the file_version record. Closes a
  // file already open.
  Status open(const std::string& dir) {
    M1_RETURN_IF_ERROR(close());
    M1_RETURN_IF_ERROR(make_dirs(dir));
    const double now = tb::unix_now_s();
    const std::string base = path_join(dir, tb::events_file_name(int64_t(now), tb::host_name()));
    for (int i = 0; i < 1000; ++i) {
      const std::string path = i == 0 ? base : base + "." + std::to_string(i);
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0 && errno == EEXIST) continue;
      if (fd < 0) return Status::errorf("{}: cannot create TensorBoard events file: {}", path, std::strerror(errno));
      f_ = ::fdopen(fd, "wb");
      if (!f_) {
        Status s = Status::errorf("{}: fdopen failed: {}", path, std::strerror(errno));
        ::close(fd);
        return s;
      }
      path_ = path;
      offset_ = 0;
      step_ = 0;
      events_ = 0;
      return write_record(tb::encode_file_version_event(now));
    }
    return Status::errorf("{}: 1000 events files with this name already exist", base);
  }

  // Appends one Event for metrics record RECORD (REQUIRES: a JSON object): its step is RECORD's
  // "step" (when absent or not a number, the step of the previous event), its values scalars_of(RECORD).
  // A record without scalars still gets its event. Flushed before returning.
  Status write(const nlohmann::json& record) {
    if (!record.is_object())
      return Status::errorf("TensorBoard record must be a JSON object, got {}", record.type_name());
    auto it = record.find("step");
    if (it != record.end() && it->is_number()) {
      const double s = it->get<double>();
      if (it->is_number_integer()) step_ = it->get<int64_t>();
      else if (std::fabs(s) < 9e18) step_ = int64_t(s);  // finite and in range
    }
    return write_scalars(step_, tb::scalars_of(record));
  }

  // Appends Event{now, STEP, VALUES}, flushed.
  Status write_scalars(int64_t step, const std::vector<tb::Scalar>& values) {
    step_ = step;
    M1_RETURN_IF_ERROR(write_record(tb::encode_scalars_event(tb::unix_now_s(), step, values)));
    ++events_;
    return Status::ok();
  }

  // Flushes and closes; a no-op when not open.
  Status close() {
    if (!f_) return Status::ok();
    const int rc = std::fclose(std::exchange(f_, nullptr));
    if (rc != 0) return Status::errorf("{}: close failed: {}", path_, std::strerror(errno));
    return Status::ok();
  }

  bool is_open() const { return f_ != nullptr; }
  const std::string& path() const { return path_; }
  uint64_t events_written() const { return events_; }  // scalar events since open(), not the version record

 private:
  Status write_record(std::string_view data) {
    if (!f_) return Status::error("TensorBoard writer: write before open()");
    const std::string rec = tb::frame_record(data);
    if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size() || std::fflush(f_) != 0)
      return Status::errorf("{}: write failed at offset {}: {}", path_, offset_, std::strerror(errno));
    offset_ += rec.size();
    return Status::ok();
  }

  std::FILE* f_ = nullptr;
  std::string path_;
  uint64_t offset_ = 0;  // bytes written to path_
  int64_t step_ = 0;     // step of the last event
  uint64_t events_ = 0;
};

}  // namespace m1
