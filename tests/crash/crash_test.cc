// Nothing lost: `m1rl run` is killed with SIGKILL at seeded random moments (at least 5 times),
// restarted with the same command each time, then allowed to finish. Over the whole history:
//  - every group ever acknowledged (events.log "ack G") is in the buffer as Pending, Consumed,
//    Dropped (with a reason) or Quarantined (with a reason) — nothing acknowledged is lost;
//  - no group is consumed by more learner steps than configured (ReplayStore::check_consistency);
//  - published weights versions only move forward across incarnations (events.log "publish V");
//  - the final run reaches the configured step count.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/replay/replay_store.h"
#include "base/file.h"
#include "base/rng.h"

using namespace m1;

namespace {

pid_t spawn_run(const std::string& config, const std::string& run_dir, const std::string& log) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    std::freopen("/dev/null", "w", stdout);
    // The config's paths (configs/models/...) are relative to the source tree.
    if (chdir(M1_SOURCE_DIR) != 0) _exit(126);
    execl(M1_BINARY, M1_BINARY, "run", config.c_str(), "--run-dir", run_dir.c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

}  // namespace

TEST_CASE("SIGKILL at random moments loses no acknowledged group and never moves versions back") {
  const uint64_t seed = 20261129;
  CAPTURE(seed);
  Rng rng(seed);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-crash-" + std::to_string(getpid()))).string();
  REQUIRE(remove_all(dir).is_ok());
  REQUIRE(make_dirs(dir).is_ok());
  const std::string config = std::string(M1_SOURCE_DIR) + "/configs/test-crash.toml";
  const std::string run_dir = dir + "/run", log = dir + "/run.log";
  int kills = 0;
  for (int attempt = 0; attempt < 12 && kills < 6; ++attempt) {
    pid_t pid = spawn_run(config, run_dir, log);
    const int ms = 300 + int(rng.below(1200));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++kills;
      MESSAGE("killed the run after " << ms << " ms");
    } else {
      MESSAGE("the run finished before the kill at " << ms << " ms");
      break;
    }
  }
  CHECK(kills >= 5);
  // the final, uninterrupted run
  pid_t pid = spawn_run(config, run_dir, log);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE_MESSAGE(WIFEXITED(status), "final run did not exit normally; log: " << log);
  CHECK(WEXITSTATUS(status) == 0);

  // events.log: acknowledgements and published versions over every incarnation
  auto ev = read_file(run_dir + "/events.log");
  REQUIRE(ev.is_ok());
  std::istringstream in(ev.value());
  std::string line;
  std::vector<uint64_t> acked;
  uint64_t last_version = 0, publishes = 0, starts = 0;
  bool backwards = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string kind;
    ls >> kind;
    if (kind == "ack") {
      uint64_t g = 0;
      if (ls >> g) acked.push_back(g);
    } else if (kind == "publish") {
      uint64_t v = 0;
      if (!(ls >> v)) continue;  // a torn last line
      if (v <= last_version) backwards = true;
      last_version = v;
      ++publishes;
    } else if (kind == "start") {
      ++starts;
    }
  }
  CHECK(starts >= 6);
  CHECK(publishes > 0);
  CHECK_FALSE(backwards);
  CHECK(acked.size() > 0);

  ReplayOptions ro;
  ro.read_only = true;
  auto store = ReplayStore::open(run_dir + "/replay", ro);
  REQUIRE_MESSAGE(store.is_ok(), store.status().message());
  Status cons = store.value()->check_consistency();
  CHECK_MESSAGE(cons.is_ok(), cons.message());
  size_t lost = 0, unexplained = 0;
  for (uint64_t g : acked) {
    auto r = store.value()->get(g);
    if (!r.is_ok()) {
      ++lost;
      continue;
    }
    const auto st = r->meta.status;
    if ((st == msg::GroupStatus::Dropped || st == msg::GroupStatus::Quarantined) && r->meta.reason.empty())
      ++unexplained;
  }
  MESSAGE(kills << " kills, " << acked.size() << " acknowledged groups, " << publishes << " versions published");
  CHECK(lost == 0);
  CHECK(unexplained == 0);
  auto stats = store.value()->stats();
  REQUIRE(stats.is_ok());
  CHECK(stats->by_status[int(msg::GroupStatus::Consumed)] > 0);
  store.value().reset();
  remove_all(dir);
}
