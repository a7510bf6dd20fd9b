// Nothing lost: `m1rl run` is killed with SIGKILL 6 times, restarted with the same command each
// time, then allowed to finish. Every kill is scheduled by the run's durable progress, never by
// wall time, so the verdict does not depend on the machine's speed: kill 1 once the SFT stage has
// written a checkpoint, the others (in a seeded order) once the restarted incarnation has written
// its start line, or k more acknowledged groups, or k more learner steps than the run had reached
// before it (k seeded). The plan's targets sum to under half of run.steps, so every kill lands
// before the run can finish; a run that exits before its target, or shows no progress for
// kStuck, fails the test with its log. Over the whole history:
//  - every group ever acknowledged (events.log "ack G") is in the buffer as Pending, Consumed,
//    Dropped (with a reason) or Quarantined (with a reason) — nothing acknowledged is lost;
//  - no group is consumed by more learner steps than configured (ReplayStore::check_consistency);
//  - published weights versions only move forward across incarnations (events.log "publish V");
//  - the final run reaches the configured step count.
// M1_CRASH_SEED=N replaces the seed (to try others); the seed is printed on failure.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "actors/pipeline/run_config.h"
#include "actors/replay/replay_store.h"
#include "base/file.h"
#include "base/rng.h"
#include "model/checkpoint.h"

using namespace m1;

namespace {

// A run that writes nothing (events.log, its log, SFT checkpoints) for this long is stuck: the test
// fails instead of hanging. Only a guard: a healthy run writes every learner step.
constexpr auto kStuck = std::chrono::seconds(120);
// How often the run directory is read. Affects how soon a kill follows its target, not the verdict.
constexpr auto kPoll = std::chrono::milliseconds(2);

// What the run directory durably records, read while the run goes on.
struct Progress {
  uint64_t starts = 0;    // "start incarnation I step S version V" lines
  uint64_t acks = 0;      // "ack G" lines: groups durably in the buffer
  uint64_t max_step = 0;  // the highest learner step of any "publish V step S incarnation I" line
  int64_t sft_step = -1;  // the newest complete SFT checkpoint (-1: none)
};

// Folds one events.log line into P (a line that does not parse, e.g. a torn last one, is skipped).
void count_line(const std::string& line, Progress* p) {
  std::istringstream ls(line);
  std::string kind, word;
  ls >> kind;
  uint64_t a = 0, b = 0;
  if (kind == "start") {
    ++p->starts;
  } else if (kind == "ack") {
    if (ls >> a) ++p->acks;
  } else if (kind == "publish") {
    if (ls >> a >> word >> b && word == "step") p->max_step = std::max(p->max_step, b);
  }
}

uint64_t file_size(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_size) : 0;
}

// Reads RUN/events.log (complete lines only) and RUN/sft's checkpoints as the run writes them.
class RunWatch {
 public:
  RunWatch(std::string run_dir, std::string sft_dir, std::string log)
      : events_(run_dir + "/events.log"), sft_(sft_dir + "/checkpoints"), log_(std::move(log)) {}
  const Progress& progress() const { return p_; }
  // Reads what was appended since the last poll. Returns whether anything the run writes grew
  // (events.log, the run's log, the SFT checkpoints): the stuck guard's notion of progress.
  bool poll() {
    bool grew = false;
    std::ifstream in(events_, std::ios::binary);
    if (in) {
      in.seekg(std::streamoff(offset_));
      std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      offset_ += chunk.size();
      grew = !chunk.empty();
      partial_ += chunk;
      size_t start = 0, nl;
      while ((nl = partial_.find('\n', start)) != std::string::npos) {
        count_line(partial_.substr(start, nl - start), &p_);
        start = nl + 1;
      }
      partial_.erase(0, start);
    }
    const int64_t sft = latest_checkpoint(sft_).step;
    const uint64_t log = file_size(log_);
    grew = grew || sft != p_.sft_step || log != log_size_;
    p_.sft_step = sft;
    log_size_ = log;
    return grew;
  }

 private:
  std::string events_, sft_, log_;
  uint64_t offset_ = 0, log_size_ = 0;
  std::string partial_;  // an incomplete last line, kept until its '\n' arrives
  Progress p_;
};

// When one incarnation is killed, relative to the progress BASE the run had when it was started.
struct Kill {
  enum Kind { SftCheckpoint, Start, Acks, Steps } kind;
  uint64_t more = 0;  // Acks: groups acknowledged beyond base.acks; Steps: learner steps beyond base.max_step
  bool reached(const Progress& base, const Progress& now) const {
    switch (kind) {
      case SftCheckpoint: return now.sft_step > base.sft_step;
      case Start: return now.starts > base.starts;
      case Acks: return now.acks >= base.acks + more;
      case Steps: return now.max_step >= base.max_step + more;
    }
    return false;
  }
  std::string describe() const {
    switch (kind) {
      case SftCheckpoint: return "an SFT checkpoint";
      case Start: return "the incarnation's start line";
      case Acks: return std::to_string(more) + " more acknowledged groups";
      case Steps: return std::to_string(more) + " more learner steps";
    }
    return "?";
  }
};

// 6 kills: kill 1 in the SFT stage, then the start line, 2 × acks and 2 × steps in a seeded order, with
// seeded counts: acks in [1, 12·B] (about 12 learner steps), steps in [1, 3·checkpoint_every].
std::vector<Kill> plan_kills(Rng& rng, const RunConfig& c) {
  std::vector<Kill> rest = {{Kill::Start, 0}, {Kill::Acks, 0}, {Kill::Acks, 0}, {Kill::Steps, 0}, {Kill::Steps, 0}};
  for (size_t i = rest.size(); i > 1; --i) std::swap(rest[i - 1], rest[rng.below(i)]);
  for (Kill& k : rest) {
    if (k.kind == Kill::Acks) k.more = 1 + rng.below(uint64_t(12 * c.batch_groups));
    if (k.kind == Kill::Steps) k.more = 1 + rng.below(uint64_t(3 * c.checkpoint_every));
  }
  std::vector<Kill> plan = {{Kill::SftCheckpoint, 0}};
  plan.insert(plan.end(), rest.begin(), rest.end());
  return plan;
}

// An upper bound on the learner steps the run takes before the plan's last kill: beyond what the
// run had reached, an incarnation needs new groups for every step past its lookahead (≤
// max_staleness + 1 batches of B groups in flight), and a kill follows its target within one poll
// (counted as 2 steps: a learner step is far slower than reading events.log).
uint64_t plan_steps(const std::vector<Kill>& plan, const RunConfig& c) {
  uint64_t n = 0;
  for (const Kill& k : plan) {
    n += 2;
    if (k.kind == Kill::Steps) n += k.more;
    if (k.kind == Kill::Acks) n += k.more / uint64_t(c.batch_groups) + uint64_t(c.max_staleness) + 2;
  }
  return n;
}

pid_t spawn_run(const std::string& config, const std::string& run_dir, const std::string& log,
                const std::string& cwd) {
  std::fflush(nullptr);  // else the child's exit could write the test's buffered output twice
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int out = ::open("/dev/null", O_WRONLY);
    if (err < 0 || out < 0 || dup2(err, STDERR_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0) _exit(125);
    // The config's relative paths resolve against its own folder, not the working directory.
    if (chdir(cwd.c_str()) != 0) _exit(126);
    execl(M1_BINARY, M1_BINARY, "run", config.c_str(), "--run-dir", run_dir.c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

// The last 15 lines of the run's log, for failure messages.
std::string log_tail(const std::string& log) {
  auto text = read_file(log);
  if (!text.is_ok()) return "(no log: " + text.status().message() + ")";
  const std::string& t = text.value();
  size_t from = t.size();
  for (int lines = 0; lines < 16 && from > 0; ++lines) {
    const size_t nl = t.rfind('\n', from - 1);
    from = nl == std::string::npos ? 0 : nl;
  }
  return from == 0 ? t : t.substr(from + 1);
}

std::string describe(const Progress& p) {
  return "step " + std::to_string(p.max_step) + ", " + std::to_string(p.acks) + " acks, " +
         std::to_string(p.starts) + " starts, SFT checkpoint " + std::to_string(p.sft_step);
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "died of signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

enum class Ended { Killed, Exited, Stuck };

// Watches the incarnation PID until KILL's target (relative to BASE) is reached and SIGKILLs it,
// or, with no KILL, until it exits; kills it after kStuck without progress. *STATUS: its wait status.
Ended watch(pid_t pid, RunWatch& w, const Progress& base, const Kill* kill, int* status) {
  auto last_progress = std::chrono::steady_clock::now();
  for (;;) {
    if (w.poll()) last_progress = std::chrono::steady_clock::now();
    if (kill && kill->reached(base, w.progress())) {
      ::kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      // It may have exited on its own between the last poll and the kill.
      return WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL ? Ended::Killed : Ended::Exited;
    }
    if (waitpid(pid, status, WNOHANG) == pid) {
      w.poll();
      return Ended::Exited;
    }
    if (std::chrono::steady_clock::now() - last_progress > kStuck) {
      ::kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      return Ended::Stuck;
    }
    std::this_thread::sleep_for(kPoll);
  }
}

// events.log over every incarnation.
struct History {
  std::vector<uint64_t> acked;
  uint64_t publishes = 0, starts = 0, max_step = 0;
  bool backwards = false;  // a published version not above the one before it
};

History read_history(const std::string& events_log) {
  History h;
  auto ev = read_file(events_log);
  REQUIRE_MESSAGE(ev.is_ok(), ev.status().message());
  std::istringstream in(ev.value());
  std::string line;
  uint64_t last_version = 0;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string kind, word;
    ls >> kind;
    uint64_t a = 0, b = 0;
    if (kind == "ack") {
      if (ls >> a) h.acked.push_back(a);
    } else if (kind == "publish") {
      if (!(ls >> a >> word >> b)) continue;  // a torn last line
      if (a <= last_version) h.backwards = true;
      last_version = a;
      h.max_step = std::max(h.max_step, b);
      ++h.publishes;
    } else if (kind == "start") {
      ++h.starts;
    }
  }
  return h;
}

// The run's incarnations, one per kill in PLAN: each is watched until its kill target. Returns
// the number killed; a run that exits before its target or gets stuck fails the test.
int kill_loop(const std::vector<Kill>& plan, const std::string& config, const std::string& run_dir,
              const std::string& log, const std::string& cwd, RunWatch& w) {
  int kills = 0;
  for (const Kill& k : plan) {
    w.poll();
    const Progress base = w.progress();
    int status = 0;
    const Ended e = watch(spawn_run(config, run_dir, log, cwd), w, base, &k, &status);
    const std::string at = describe(w.progress());
    REQUIRE_MESSAGE(e != Ended::Stuck, "incarnation " << kills + 1 << " made no progress for " << kStuck.count()
                                                      << " s (at " << at << "); log " << log << ":\n"
                                                      << log_tail(log));
    if (e == Ended::Exited) {
      FAIL_CHECK("incarnation " << kills + 1 << " " << describe_exit(status) << " before its kill target ("
                                << k.describe() << " beyond what the run had reached: " << describe(base)
                                << "), at " << at << "; log " << log << ":\n"
                                << log_tail(log));
      break;
    }
    ++kills;
    MESSAGE("kill " << kills << " after " << k.describe() << ": at " << at);
  }
  return kills;
}

// Every acknowledged group of H is in the buffer RUN/replay with a valid status; the buffer is consistent.
void check_nothing_lost(const std::string& run_dir, const History& h) {
  ReplayOptions ro;
  ro.read_only = true;
  auto store = ReplayStore::open(run_dir + "/replay", ro);
  REQUIRE_MESSAGE(store.is_ok(), store.status().message());
  Status cons = store.value()->check_consistency();
  CHECK_MESSAGE(cons.is_ok(), cons.message());
  size_t lost = 0, unexplained = 0;
  for (uint64_t g : h.acked) {
    auto r = store.value()->get(g);
    if (!r.is_ok()) {
      ++lost;
      continue;
    }
    const auto st = r->meta.status;
    if ((st == msg::GroupStatus::Dropped || st == msg::GroupStatus::Quarantined) && r->meta.reason.empty())
      ++unexplained;
  }
  CHECK(lost == 0);
  CHECK(unexplained == 0);
  auto stats = store.value()->stats();
  REQUIRE(stats.is_ok());
  CHECK(stats->by_status[int(msg::GroupStatus::Consumed)] > 0);
}

}  // namespace

TEST_CASE("SIGKILL at seeded points of progress loses no acknowledged group and never moves versions back") {
  uint64_t seed = 20261129;
  if (const char* s = std::getenv("M1_CRASH_SEED")) seed = std::strtoull(s, nullptr, 10);
  CAPTURE(seed);
  Rng rng(seed);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-crash-" + std::to_string(getpid()))).string();
  CAPTURE(dir);
  REQUIRE(remove_all(dir).is_ok());
  REQUIRE(make_dirs(dir).is_ok());
  const std::string config = std::string(M1_SOURCE_DIR) + "/configs/test-crash.toml";
  const std::string run_dir = dir + "/run", log = dir + "/run.log";
  auto c = load_run_config(config, run_dir);
  REQUIRE_MESSAGE(c.is_ok(), c.status().message());
  REQUIRE_MESSAGE(c->max_seconds == 0, config << ": run.max_seconds would make the run's length depend on speed");
  const uint64_t steps = uint64_t(c->steps);

  const std::vector<Kill> plan = plan_kills(rng, c.value());
  REQUIRE_MESSAGE(plan_steps(plan, c.value()) * 2 <= steps, "the kill targets need up to "
                                                                << plan_steps(plan, c.value())
                                                                << " learner steps; run.steps = " << steps
                                                                << " must be at least twice that");
  RunWatch w(run_dir, c->sft.out_dir, log);
  const int kills = kill_loop(plan, config, run_dir, log, dir, w);
  CHECK(kills == int(plan.size()));
  CHECK(w.progress().max_step < steps);
  // the final, uninterrupted run
  int status = 0;
  const Ended e = watch(spawn_run(config, run_dir, log, dir), w, w.progress(), nullptr, &status);
  REQUIRE_MESSAGE(e == Ended::Exited, "the final run made no progress for " << kStuck.count() << " s (at "
                                                                           << describe(w.progress()) << "); log "
                                                                           << log << ":\n"
                                                                           << log_tail(log));
  REQUIRE_MESSAGE(WIFEXITED(status), "the final run " << describe_exit(status) << "; log " << log << ":\n"
                                                      << log_tail(log));
  CHECK_MESSAGE(WEXITSTATUS(status) == 0, "log " << log << ":\n" << log_tail(log));

  const History h = read_history(run_dir + "/events.log");
  MESSAGE(kills << " kills, " << h.starts << " starts, " << h.acked.size() << " acknowledged groups, "
                << h.publishes << " versions published");
  CHECK(h.starts >= plan.size());  // every incarnation but the one killed in the SFT stage wrote one
  CHECK(h.publishes > 0);
  CHECK_FALSE(h.backwards);
  CHECK(h.max_step == steps);
  CHECK(h.acked.size() > 0);
  check_nothing_lost(run_dir, h);
  (void)remove_all(dir);
}
