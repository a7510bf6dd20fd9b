// End to end: `m1rl run` leaves RUN/tb/events.out.tfevents.* (and its SFT stage RUN/sft/tb/) with
// one Event per metrics.jsonl record, at the record's step. The TFRecord framing is checked with both
// masked CRCs; the Event fields themselves are checked in tests/actors/tb_writer_test.cc.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/metrics/metrics_log.h"
#include "actors/metrics/tb_writer.h"
#include "base/file.h"

using namespace m1;

namespace {

uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(s[at + size_t(i)])) << (8 * i);
  return v;
}

// The Event payloads of events file PATH; a framing or CRC error fails the test with its offset.
std::vector<std::string> read_records(const std::string& path) {
  auto r = read_file(path);
  REQUIRE(r.is_ok());
  const std::string& b = *r;
  std::vector<std::string> out;
  size_t at = 0;
  while (at < b.size()) {
    INFO(path << " offset " << at);
    REQUIRE(b.size() - at >= 16);
    const uint64_t n = le(b, at, 8);
    REQUIRE(tb::unmask_crc(uint32_t(le(b, at + 8, 4))) == tb::crc32c(b.data() + at, 8));
    REQUIRE(b.size() - at - 16 >= n);
    std::string data = b.substr(at + 12, size_t(n));
    REQUIRE(tb::unmask_crc(uint32_t(le(b, at + 12 + n, 4))) == tb::crc32c(data));
    out.push_back(std::move(data));
    at += 16 + size_t(n);
  }
  return out;
}

// Event.step (field 2, varint) of PAYLOAD, which starts with wall_time (field 1, fixed64), or -1.
int64_t step_of(const std::string& e) {
  if (e.size() < 10 || uint8_t(e[0]) != 0x09 || uint8_t(e[9]) != 0x10) return -1;
  uint64_t v = 0;
  for (size_t i = 10, shift = 0; i < e.size() && shift < 64; ++i, shift += 7) {
    v |= uint64_t(uint8_t(e[i]) & 0x7F) << shift;
    if (!(uint8_t(e[i]) & 0x80)) return int64_t(v);
  }
  return -1;
}

// Checks DIR/tb/ against DIR/metrics.jsonl.
void check_matches_metrics(const std::string& dir) {
  INFO("run directory " << dir);
  std::vector<std::string> files;
  for (const std::string& n : list_dir(path_join(dir, "tb")))
    if (n.rfind("events.out.tfevents.", 0) == 0) files.push_back(path_join(dir, "tb/" + n));
  REQUIRE(files.size() == 1);
  auto recs = MetricsLog::read_all(path_join(dir, "metrics.jsonl"));
  REQUIRE(recs.is_ok());
  REQUIRE(!recs->empty());
  const std::vector<std::string> events = read_records(files[0]);
  REQUIRE(events.size() == recs->size() + 1);  // + the file_version record
  CHECK(events[0].find("brain.Event:2") != std::string::npos);
  for (size_t i = 0; i < recs->size(); ++i)
    CHECK_MESSAGE(step_of(events[i + 1]) == (*recs)[i]["step"].get<int64_t>(), "record " << i);
}

}  // namespace

TEST_CASE("m1rl run writes RUN/tb/ and RUN/sft/tb/ with one event per metrics.jsonl record") {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-tb-run-" + std::to_string(getpid()))).string();
  REQUIRE(remove_all(dir).is_ok());
  const std::string cmd = "timeout -s KILL 300 " + std::string(M1_BINARY) + " run " + M1_SOURCE_DIR +
                          "/configs/test-run.toml --run-dir " + dir + " 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  REQUIRE_MESSAGE((WIFEXITED(st) && WEXITSTATUS(st) == 0), out);
  check_matches_metrics(dir);
  check_matches_metrics(path_join(dir, "sft"));
  REQUIRE(remove_all(dir).is_ok());
}
