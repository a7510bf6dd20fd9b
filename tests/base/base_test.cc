#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/file.h"
#include "base/parallel.h"
#include "base/rng.h"
#include "base/status.h"

using namespace m1;

TEST_CASE("Rng is deterministic and its state round-trips") {
  Rng a(42), b(42);
  for (int i = 0; i < 10; ++i) CHECK(a.next_u64() == b.next_u64());
  auto st = a.state();
  const uint64_t x = a.next_u64();
  b.set_state(st);
  CHECK(b.next_u64() == x);
  double s = 0, s2 = 0;
  for (int i = 0; i < 20000; ++i) {
    const double z = a.normal();
    s += z;
    s2 += z * z;
  }
  CHECK(std::fabs(s / 20000) < 0.05);
  CHECK(std::fabs(s2 / 20000 - 1.0) < 0.05);
}

TEST_CASE("parallel_for covers the range exactly once with any pool size") {
  for (int threads : {1, 2, 3}) {
    set_pool_threads(threads);
    std::vector<std::atomic<int>> hits(1000);
    parallel_for(1000, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) hits[i]++;
    });
    for (auto& h : hits) CHECK(h.load() == 1);
  }
  set_pool_threads(1);
}

TEST_CASE("parallel_for runs inline on a thread marked inline-only") {
  set_pool_threads(2);
  std::vector<std::pair<size_t, size_t>> ranges;
  std::mutex mu;
  auto record = [&](size_t b, size_t e) {
    std::lock_guard<std::mutex> lk(mu);
    ranges.emplace_back(b, e);
  };
  parallel_for(1000, record);
  CHECK(ranges.size() == 2);  // split over both pool threads
  ranges.clear();
  std::thread t([&] {
    set_thread_inline_only(true);
    parallel_for(1000, record);
  });
  t.join();
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0] == std::pair<size_t, size_t>(0, 1000));
  ranges.clear();
  parallel_for(1000, record);  // the mark is per thread: this one still splits
  CHECK(ranges.size() == 2);
  set_pool_threads(1);
}

TEST_CASE("files: atomic write, read back, errors name the path") {
  auto dir = (std::filesystem::temp_directory_path() / "m1-base-test").string();
  REQUIRE(remove_all(dir).is_ok());
  REQUIRE(make_dirs(dir).is_ok());
  const std::string p = path_join(dir, "a.txt");
  REQUIRE(write_file_atomic(p, "hello").is_ok());
  auto r = read_file(p);
  REQUIRE(r.is_ok());
  CHECK(r.value() == "hello");
  auto missing = read_file(path_join(dir, "nope"));
  CHECK(!missing.is_ok());
  CHECK(missing.status().message().find("nope") != std::string::npos);
  remove_all(dir);
}
