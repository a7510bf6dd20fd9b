// TensorBoard event files (actors/metrics/tb_writer.h): CRC32C against the standard vectors, files
// read back by an independent TFRecord reader and protobuf decoder written here from the spec, the
// payload checked against protobuf's own decoder (protoc) when it is installed, and MetricsLog's
// RUN/tb/ output.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/metrics/metrics_log.h"
#include "actors/metrics/tb_writer.h"
#include "base/file.h"

using namespace m1;
using nlohmann::json;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-tb-test-" + std::to_string(getpid()) + "-" + name)).string();
  REQUIRE(remove_all(dir).is_ok());
  REQUIRE(make_dirs(dir).is_ok());
  return dir;
}

uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(s[at + size_t(i)])) << (8 * i);
  return v;
}

// The records of TFRecord file contents BYTES, or an error naming the offset where the framing or
// either masked CRC is wrong.
Result<std::vector<std::string>> read_tfrecords(const std::string& bytes) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) return Status::errorf("offset {}: truncated header", at);
    const uint64_t n = le(bytes, at, 8);
    const uint32_t len_crc = uint32_t(le(bytes, at + 8, 4));
    if (tb::unmask_crc(len_crc) != tb::crc32c(bytes.data() + at, 8))
      return Status::errorf("offset {}: length CRC mismatch", at);
    if (bytes.size() - at - 12 < n + 4) return Status::errorf("offset {}: truncated data", at);
    std::string data = bytes.substr(at + 12, size_t(n));
    if (tb::unmask_crc(uint32_t(le(bytes, at + 12 + n, 4))) != tb::crc32c(data))
      return Status::errorf("offset {}: data CRC mismatch", at);
    out.push_back(std::move(data));
    at += 12 + size_t(n) + 4;
  }
  return out;
}

// A protobuf decoder for exactly the fields of Event, Summary and Value; any other field or wire
// type is an error (so a mis-encoded field cannot go unnoticed).
struct Decoded {
  std::optional<double> wall_time;
  std::optional<int64_t> step;
  std::optional<std::string> file_version;
  bool has_summary = false;
  std::vector<std::pair<std::string, float>> values;
};

struct Cursor {
  const std::string& s;
  size_t at, end;
  bool done() const { return at >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      REQUIRE(at < end);
      const uint8_t b = uint8_t(s[at++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    FAIL("varint longer than 10 bytes");
    return 0;
  }
  std::string bytes() {
    const uint64_t n = varint();
    REQUIRE(n <= end - at);
    std::string out = s.substr(at, size_t(n));
    at += size_t(n);
    return out;
  }
  uint64_t fixed(int n) {
    REQUIRE(size_t(n) <= end - at);
    const uint64_t v = le(s, at, n);
    at += size_t(n);
    return v;
  }
};

Decoded decode_event(const std::string& e) {
  Decoded d;
  Cursor c{e, 0, e.size()};
  while (!c.done()) {
    const uint64_t key = c.varint();
    if (key == ((1 << 3) | 1)) {
      const uint64_t bits = c.fixed(8);
      double v;
      std::memcpy(&v, &bits, 8);
      d.wall_time = v;
    } else if (key == ((2 << 3) | 0)) {
      d.step = int64_t(c.varint());
    } else if (key == ((3 << 3) | 2)) {
      d.file_version = c.bytes();
    } else if (key == ((5 << 3) | 2)) {
      d.has_summary = true;
      const std::string summary = c.bytes();
      Cursor sc{summary, 0, summary.size()};
      while (!sc.done()) {
        REQUIRE(sc.varint() == ((1 << 3) | 2));  // Summary.value
        const std::string value = sc.bytes();
        Cursor vc{value, 0, value.size()};
        std::string tag;
        std::optional<float> simple;
        while (!vc.done()) {
          const uint64_t vk = vc.varint();
          if (vk == ((1 << 3) | 2)) {
            tag = vc.bytes();
          } else {
            REQUIRE(vk == ((2 << 3) | 5));  // Value.simple_value, fixed32
            const uint32_t bits = uint32_t(vc.fixed(4));
            float f;
            std::memcpy(&f, &bits, 4);
            simple = f;
          }
        }
        REQUIRE(simple.has_value());
        d.values.emplace_back(tag, *simple);
      }
    } else {
      FAIL("unexpected Event field key " << key);
    }
  }
  return d;
}

std::vector<std::string> events_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const std::string& n : list_dir(dir))
    if (n.rfind("events.out.tfevents.", 0) == 0) out.push_back(path_join(dir, n));
  return out;
}

std::vector<Decoded> read_events(const std::string& path) {
  auto bytes = read_file(path);
  REQUIRE(bytes.is_ok());
  auto recs = read_tfrecords(*bytes);
  REQUIRE_MESSAGE(recs.is_ok(), path << ": " << recs.status().message());
  std::vector<Decoded> out;
  for (const std::string& r : *recs) out.push_back(decode_event(r));
  return out;
}

std::optional<float> value_of(const Decoded& d, const std::string& tag) {
  for (const auto& [t, v] : d.values)
    if (t == tag) return v;
  return std::nullopt;
}

// stdout of shell command CMD (stderr too), and its exit status.
std::pair<int, std::string> shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace

TEST_CASE("crc32c: the standard check value and the iSCSI (RFC 3720 B.4) vectors") {
  CHECK(tb::crc32c(std::string_view("123456789")) == 0xE3069283u);
  CHECK(tb::crc32c(std::string_view("")) == 0u);
  std::string zeros(32, '\0'), ones(32, '\xFF'), up(32, 0), down(32, 0);
  for (int i = 0; i < 32; ++i) {
    up[size_t(i)] = char(i);
    down[size_t(i)] = char(31 - i);
  }
  CHECK(tb::crc32c(zeros) == 0x8A9136AAu);
  CHECK(tb::crc32c(ones) == 0x62A8AB43u);
  CHECK(tb::crc32c(up) == 0x46DD794Eu);
  CHECK(tb::crc32c(down) == 0x113FDB5Cu);
  // extending in pieces equals one pass
  CHECK(tb::crc32c_extend(tb::crc32c("1234", 4), "56789", 5) == 0xE3069283u);
}

TEST_CASE("masked crc: tensorflow's mask, and unmask inverts it") {
  for (uint32_t c : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x80000000u}) {
    CHECK(tb::mask_crc(c) == ((c >> 15) | (c << 17)) + 0xa282ead8u);
    CHECK(tb::unmask_crc(tb::mask_crc(c)) == c);
  }
  CHECK(tb::mask_crc(0xE3069283u) != 0xE3069283u);
}

TEST_CASE("frame_record: length, masked CRCs, data; the reader rejects a flipped byte") {
  const std::string data = "hello, tensorboard";
  const std::string f = tb::frame_record(data);
  REQUIRE(f.size() == data.size() + 16);
  CHECK(le(f, 0, 8) == data.size());
  CHECK(le(f, 8, 4) == tb::mask_crc(tb::crc32c(f.data(), 8)));
  CHECK(f.substr(12, data.size()) == data);
  CHECK(le(f, 12 + data.size(), 4) == tb::mask_crc(tb::crc32c(data)));
  auto back = read_tfrecords(f + tb::frame_record(""));
  REQUIRE(back.is_ok());
  CHECK(*back == std::vector<std::string>{data, ""});
  for (size_t at : {size_t(0), size_t(9), size_t(12), f.size() - 1}) {
    std::string bad = f;
    bad[at] ^= 0x01;
    CHECK_MESSAGE(!read_tfrecords(bad).is_ok(), "flipped byte " << at);
  }
}

TEST_CASE("scalars_of: numbers by tag, nested objects as a/b, step and non-numbers left out") {
  const json r = {{"step", 7},          {"loss", 0.5},
                  {"count", 3},         {"flag", true},
                  {"name", "x"},        {"missing", nullptr},
                  {"hist", {1, 2, 3}},  {"huge", 1e300},
                  {"reward_by_task", {{"add", 0.25}, {"mul", {{"mean", 1.5}, {"std", 0.1}}}, {"note", "s"}}}};
  const auto s = tb::scalars_of(r);
  std::vector<std::string> tags;
  for (const auto& v : s) tags.push_back(v.tag);
  CHECK(tags == std::vector<std::string>{"count", "loss", "reward_by_task/add", "reward_by_task/mul/mean",
                                         "reward_by_task/mul/std"});
  CHECK(s[0].value == 3.0f);
  CHECK(s[1].value == 0.5f);
  CHECK(tb::scalars_of(json::array({1, 2})).empty());
  CHECK(tb::events_file_name(1700000000, "a/b") == "events.out.tfevents.1700000000.a_b");
  CHECK(tb::events_file_name(5, "") == "events.out.tfevents.5.localhost");
}

TEST_CASE("TbWriter: a file version record, then one Event per record, decoded field by field") {
  const std::string dir = path_join(fresh_dir("writer"), "tb");  // created by open()
  const double t0 = tb::unix_now_s();
  TbWriter w;
  REQUIRE(w.open(dir).is_ok());
  CHECK(w.path().find("/events.out.tfevents.") != std::string::npos);
  REQUIRE(w.write({{"step", 3}, {"loss", 0.5}, {"reward_by_task", {{"add", 0.25}}}, {"tag", "x"}}).is_ok());
  REQUIRE(w.write({{"eval_accuracy", 0.75}}).is_ok());  // no step: the previous event's
  REQUIRE(w.write({{"step", 5000000000LL}}).is_ok());   // int64 beyond 32 bits; no scalars
  CHECK(!w.write(json::array()).is_ok());
  CHECK(w.events_written() == 3);
  // flushed at each record: readable before close
  auto ev = read_events(w.path());
  REQUIRE(w.close().is_ok());
  CHECK(read_events(w.path()).size() == ev.size());
  REQUIRE(ev.size() == 4);

  CHECK(ev[0].file_version == std::optional<std::string>("brain.Event:2"));
  CHECK(!ev[0].has_summary);
  for (const Decoded& d : ev) {
    REQUIRE(d.wall_time.has_value());
    CHECK(*d.wall_time >= t0 - 1);
    CHECK(*d.wall_time <= tb::unix_now_s() + 1);
  }
  CHECK(ev[1].step == std::optional<int64_t>(3));
  CHECK(!ev[1].file_version.has_value());
  REQUIRE(ev[1].values.size() == 2);
  CHECK(value_of(ev[1], "loss") == std::optional<float>(0.5f));
  CHECK(value_of(ev[1], "reward_by_task/add") == std::optional<float>(0.25f));
  CHECK(ev[2].step == std::optional<int64_t>(3));
  CHECK(value_of(ev[2], "eval_accuracy") == std::optional<float>(0.75f));
  CHECK(ev[3].step == std::optional<int64_t>(5000000000LL));
  CHECK(ev[3].has_summary);
  CHECK(ev[3].values.empty());
}

TEST_CASE("TbWriter: two writers started in the same second write two files") {
  const std::string dir = fresh_dir("two");
  TbWriter a, b;
  REQUIRE(a.open(dir).is_ok());
  REQUIRE(b.open(dir).is_ok());
  CHECK(a.path() != b.path());
  CHECK(events_files(dir).size() == 2);
  // a regular file where the directory should be: an error naming it, not an abort
  REQUIRE(write_file(path_join(dir, "file"), "x").is_ok());
  TbWriter c;
  Status s = c.open(path_join(dir, "file"));
  CHECK(!s.is_ok());
  CHECK(s.message().find("file") != std::string::npos);
  CHECK(!c.write({{"step", 1}}).is_ok());
}

TEST_CASE("protoc --decode_raw and --decode=tensorflow.Event read our Event") {
  if (shell("command -v protoc").first != 0) {
    MESSAGE("protoc not on PATH (tools/setup installs protobuf-compiler): protobuf decoder check skipped");
    return;
  }
  const std::string dir = fresh_dir("protoc");
  const std::string payload =
      tb::encode_scalars_event(1700000000.25, 42, {{"loss", 0.5f}, {"reward_by_task/add", -2.0f}});
  REQUIRE(write_file(path_join(dir, "event.bin"), payload).is_ok());
  REQUIRE(write_file(path_join(dir, "version.bin"), tb::encode_file_version_event(1.5)).is_ok());

  auto [rc, raw] = shell("protoc --decode_raw < " + path_join(dir, "event.bin"));
  INFO("protoc --decode_raw:\n" << raw);
  REQUIRE(rc == 0);
  CHECK(raw.find("2: 42\n") != std::string::npos);            // step
  CHECK(raw.find("1: \"loss\"") != std::string::npos);        // Value.tag
  CHECK(raw.find("2: 0x3f000000") != std::string::npos);      // Value.simple_value 0.5f (fixed32)
  CHECK(raw.find("1: \"reward_by_task/add\"") != std::string::npos);
  CHECK(raw.find("2: 0xc0000000") != std::string::npos);      // -2.0f
  CHECK(raw.find("5 {") != std::string::npos);                // summary, a message

  // With the schema (field numbers and types of tensorflow's event.proto / summary.proto), protoc
  // must read every field under its proper type, not merely as well-formed wire data.
  REQUIRE(write_file(path_join(dir, "event.proto"),
                     "syntax = \"proto3\";\npackage tensorflow;\n"
                     "message Value { string tag = 1; float simple_value = 2; }\n"
                     "message Summary { repeated Value value = 1; }\n"
                     "message Event { double wall_time = 1; int64 step = 2; string file_version = 3; "
                     "Summary summary = 5; }\n")
              .is_ok());
  const std::string decode = "protoc --proto_path=" + dir + " --decode=tensorflow.Event event.proto < ";
  auto [rc2, typed] = shell(decode + path_join(dir, "event.bin"));
  INFO("protoc --decode=tensorflow.Event:\n" << typed);
  REQUIRE(rc2 == 0);
  CHECK(typed.find("wall_time: 1700000000.25") != std::string::npos);
  CHECK(typed.find("step: 42") != std::string::npos);
  CHECK(typed.find("tag: \"loss\"") != std::string::npos);
  CHECK(typed.find("simple_value: 0.5") != std::string::npos);
  CHECK(typed.find("simple_value: -2") != std::string::npos);
  auto [rc3, version] = shell(decode + path_join(dir, "version.bin"));
  REQUIRE(rc3 == 0);
  CHECK(version.find("file_version: \"brain.Event:2\"") != std::string::npos);
}

TEST_CASE("MetricsLog: RUN/tb/ gets one event per appended record; off, or unwritable, the log goes on") {
  const std::string run = fresh_dir("metrics");
  {
    MetricsLog log(MetricsLogOptions{.fsync_every_lines = 0, .fsync_interval_s = 0});
    REQUIRE(log.open(path_join(run, "metrics.jsonl")).is_ok());
    CHECK(log.tensorboard_path().rfind(path_join(run, "tb") + "/events.out.tfevents.", 0) == 0);
    for (int s = 1; s <= 3; ++s) REQUIRE(log.append({{"step", s}, {"reward_mean", 0.1 * s}}).is_ok());
    MetricsLog moved = std::move(log);  // the events file moves with it
    REQUIRE(moved.append({{"step", 4}, {"reward_mean", 0.4}}).is_ok());
    REQUIRE(moved.close().is_ok());
    CHECK(moved.tensorboard_path().empty());
  }
  auto files = events_files(path_join(run, "tb"));
  REQUIRE(files.size() == 1);
  auto ev = read_events(files[0]);
  REQUIRE(ev.size() == 5);
  for (int s = 1; s <= 4; ++s) {
    CHECK(ev[size_t(s)].step == std::optional<int64_t>(s));
    CHECK(value_of(ev[size_t(s)], "reward_mean") == std::optional<float>(float(0.1 * s)));
  }

  const std::string off = fresh_dir("metrics-off");
  MetricsLog quiet(MetricsLogOptions{.tensorboard = false});
  REQUIRE(quiet.open(path_join(off, "metrics.jsonl")).is_ok());
  REQUIRE(quiet.append({{"step", 1}}).is_ok());
  CHECK(quiet.tensorboard_path().empty());
  CHECK(!path_exists(path_join(off, "tb")));

  // RUN/tb is a regular file: no TensorBoard output, a warning, and metrics.jsonl as always
  const std::string blocked = fresh_dir("metrics-blocked");
  REQUIRE(write_file(path_join(blocked, "tb"), "not a directory").is_ok());
  MetricsLog log;
  REQUIRE(log.open(path_join(blocked, "metrics.jsonl")).is_ok());
  CHECK(log.tensorboard_path().empty());
  REQUIRE(log.append({{"step", 1}, {"reward_mean", 0.5}}).is_ok());
  REQUIRE(log.close().is_ok());
  auto recs = MetricsLog::read_all(path_join(blocked, "metrics.jsonl"));
  REQUIRE(recs.is_ok());
  CHECK(recs->size() == 1);
}
