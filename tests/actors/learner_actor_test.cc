// The learner actor performs its step plan (actors/learner/learner_loop.h) in order and stops at
// the first failed effect: a step whose replay commit failed is neither checkpointed nor
// published. Runs on CAF's deterministic test coordinator with scripted peers.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/learner/learner_loop.h"
#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "base/file.h"
#include "model/config.h"
#include "tests/actors/caf_test_system.h"

using namespace m1;
using m1::test::TestSystem;

TEST_CASE("learner loop: commit, checkpoint when due, publish, report, evaluate when due and free") {
  LearnerLoop loop({10, 3, 4});
  using E = LearnerEffect;
  CHECK(loop.after_train(1, false).effects == std::vector<E>{E::kCommit, E::kPublish, E::kReport});
  CHECK(loop.after_train(3, false).effects == std::vector<E>{E::kCommit, E::kCheckpoint, E::kPublish, E::kReport});
  CHECK(loop.after_train(4, false).effects == std::vector<E>{E::kCommit, E::kPublish, E::kReport, E::kEvaluate});
  auto busy = loop.after_train(4, true);
  CHECK(busy.effects == std::vector<E>{E::kCommit, E::kPublish, E::kReport});
  CHECK(busy.eval_skipped);
  // the last step checkpoints and evaluates whatever the periods say
  CHECK(loop.after_train(10, false).effects ==
        std::vector<E>{E::kCommit, E::kCheckpoint, E::kPublish, E::kReport, E::kEvaluate});
  CHECK(loop.done(10, false));
  CHECK(loop.done(2, true));
  CHECK_FALSE(loop.done(9, false));
}

namespace {

struct Peers {
  bool commit_ok = true;
  bool malformed_commit = false;  // replay answers the commit with bytes that do not decode
  int malformed_batches = 0;      // the first N take replies do not decode
  int unanswered_takes = 0;       // replay never answers the first N takes (a hung or lost replay)
  int unanswered_commits = 0;     // ... nor the first N commits
  bool sampler_stats_unanswered = false;  // the sampler never answers a stats request
  int takes = 0, commits = 0, releases = 0, weights_to_generator = 0, steps_to_driver = 0;
  std::string trace;                      // replay's view, in order: t(ake) r(elease) c(ommit)
  std::vector<uint64_t> commit_versions;  // the version each commit carried
  std::vector<std::string> records;       // metrics records the driver got
  uint64_t final_version = 0;             // the learner's version at the end
  uint64_t done_step = 0;
  uint64_t rejected = 0;  // the learner's reject count at the end
  std::string failure;
};

// Runs a learner for run.steps = STEPS (checkpoint every step) against scripted peers.
void run_learner(const std::string& dir, int steps, Peers* p) {
  auto mc = load_model_config(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json");
  REQUIRE(mc.is_ok());
  Model m(mc.value());
  m.init_random(5);
  RunConfig c;
  c.run_dir = dir;
  c.steps = steps;
  c.checkpoint_every = 1;
  c.eval_every = 0;
  c.batch_groups = 2;
  REQUIRE(make_dirs(dir).is_ok());
  LearnerConfig lc;
  auto logic = std::make_shared<LearnerLogic>(m, lc);
  TestSystem ts;
  uint64_t next_group = 1;
  wire::Sender rs{pipe::kReplayId, 1, 0}, ss{0x5a0001, 1, 0}, gs{pipe::generator_id(0), 1, 0},
      es{pipe::kEvaluatorId, 1, 0};
  // Requests a peer never answers: their promises are held (undelivered) until the end.
  std::vector<caf::response_promise> held;
  auto replay = ts.sys->spawn([p, &next_group, &rs, &held](caf::event_based_actor* self) -> caf::behavior {
    return {
        [=, &next_group, &rs, &held](pipe::take_atom, uint64_t need, uint64_t version, uint64_t) -> caf::result<msg::Bytes> {
          ++p->takes;
          p->trace += 't';
          if (p->takes <= p->unanswered_takes) {
            held.push_back(self->make_response_promise());
            return held.back();
          }
          if (p->takes <= p->malformed_batches) return msg::Bytes(std::vector<uint8_t>(64, 0x5a));
          std::vector<msg::Bytes> out;
          for (uint64_t i = 0; i < need; ++i) out.push_back(make_synthetic_group(next_group++, "add", version, 2, 3));
          return wire::training_batch(rs, uint64_t(p->takes), version, out);
        },
        [=, &rs, &held](pipe::commit_atom, const std::vector<uint64_t>&, uint64_t step, uint64_t version,
                        uint64_t) -> caf::result<msg::Bytes> {
          ++p->commits;
          p->trace += 'c';
          p->commit_versions.push_back(version);
          if (p->commits <= p->unanswered_commits) {
            held.push_back(self->make_response_promise());
            return held.back();
          }
          if (p->malformed_commit) return msg::Bytes(std::vector<uint8_t>{1, 2, 3});
          return wire::commit_result(rs, step, p->commit_ok, p->commit_ok ? "" : "disk full");
        },
        [p](pipe::release_atom, uint64_t) {
          ++p->releases;
          p->trace += 'r';
        },
    };
  });
  auto sampler = ts.sys->spawn([p, &ss, &held](caf::event_based_actor* self) -> caf::behavior {
    return {[](pipe::step_atom, const msg::Bytes&) {},
            [=, &ss, &held](pipe::stats_atom) -> caf::result<msg::Bytes> {
              if (p->sampler_stats_unanswered) {
                held.push_back(self->make_response_promise());
                return held.back();
              }
              return wire::metrics(ss, "sampler", 0, 0, {{"groups", 2, true}});
            }};
  });
  auto generator = ts.sys->spawn([p, &gs]() -> caf::behavior {
    return {[p](pipe::weights_atom, const std::vector<msg::Bytes>&) { ++p->weights_to_generator; },
            [&gs](pipe::stats_atom) { return wire::metrics(gs, "generator", 0, 0, {{"tokens_per_s", 12.5}}); }};
  });
  auto evaluator = ts.sys->spawn([&es]() -> caf::behavior {
    return {[](pipe::weights_atom, const std::vector<msg::Bytes>&) {},
            [&es](pipe::eval_atom, uint64_t v) { return wire::eval_result(es, v, true, 0.5, 0.0); }};
  });
  auto driver = ts.sys->spawn([p]() -> caf::behavior {
    return {[p](pipe::step_atom, const std::string& rec) {
              ++p->steps_to_driver;
              p->records.push_back(rec);
            },
            [p](pipe::done_atom, uint64_t step) { p->done_step = step; },
            [p](pipe::fail_atom, const std::string& why) { p->failure = why; }};
  });
  auto rejects = std::make_shared<pipe::RejectCounters>();
  pipe::LearnerArgs la{c, logic, replay, sampler, driver, evaluator, {generator}, 1, 0, rejects, nullptr};
  auto learner = ts.sys->spawn(pipe::learner_actor, la);
  caf::anon_send(learner, pipe::train_atom::value);
  ts.sched->run();
  // A short or malformed batch is asked for again after a delay, and a request that is not
  // answered times out: both are timeouts on this scheduler, fired here without sleeping.
  for (int i = 0; i < 100 && ts.sched->trigger_timeouts() > 0; ++i) ts.sched->run();
  p->rejected = rejects->learner.load();
  p->final_version = logic->version();
  for (auto& h : {learner, replay, sampler, generator, evaluator, driver})
    caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  ts.sched->run();
  held.clear();
  ts.sched->run();
}

std::string fresh(const std::string& name) {
  auto d = (std::filesystem::temp_directory_path() / ("m1-learner-actor-" + std::to_string(getpid()) + "-" + name)).string();
  std::filesystem::remove_all(d);
  return d;
}

}  // namespace

TEST_CASE("learner actor: every step commits, checkpoints, publishes; done at run.steps") {
  const std::string dir = fresh("ok");
  Peers p;
  run_learner(dir, 2, &p);
  CHECK(p.failure.empty());
  CHECK(p.done_step == 2);
  CHECK(p.commits == 2);
  CHECK(p.weights_to_generator == 2);
  CHECK(path_exists(dir + "/checkpoints/step_2"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("learner actor: a step whose replay commit failed is not checkpointed or published; the run stops") {
  const std::string dir = fresh("refused");
  Peers p;
  p.commit_ok = false;
  run_learner(dir, 3, &p);
  CHECK(p.commits == 1);                  // stopped at the first failure: no second batch taken
  CHECK(p.takes == 1);
  CHECK(p.weights_to_generator == 0);     // not published
  CHECK_FALSE(path_exists(dir + "/checkpoints/step_1"));  // not checkpointed, not even as a final one
  CHECK(p.done_step == 0);
  CHECK_MESSAGE(p.failure.find("commit") != std::string::npos, p.failure);
  std::filesystem::remove_all(dir);
}

TEST_CASE("learner actor: a malformed batch is counted and asked for again; a malformed commit reply stops the run") {
  {
    const std::string dir = fresh("bad-batch");
    Peers p;
    p.malformed_batches = 2;
    run_learner(dir, 1, &p);
    CHECK(p.failure.empty());
    CHECK(p.done_step == 1);
    CHECK(p.takes == 3);
    CHECK(p.rejected == 2);
    std::filesystem::remove_all(dir);
  }
  {
    const std::string dir = fresh("bad-commit");
    Peers p;
    p.malformed_commit = true;
    run_learner(dir, 2, &p);
    CHECK(p.commits == 1);
    CHECK(p.weights_to_generator == 0);
    CHECK(p.done_step == 0);
    CHECK(p.rejected == 1);
    CHECK_MESSAGE(p.failure.find("malformed reply") != std::string::npos, p.failure);
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("learner actor: each commit carries the version published after it") {
  const std::string dir = fresh("versions");
  Peers p;
  run_learner(dir, 3, &p);
  CHECK(p.failure.empty());
  REQUIRE(p.commit_versions.size() == 3);
  CHECK(p.commit_versions[0] < p.commit_versions[1]);
  CHECK(p.commit_versions[1] < p.commit_versions[2]);
  CHECK(p.commit_versions.back() == p.final_version);  // the last version published
  std::filesystem::remove_all(dir);
}

TEST_CASE("learner actor: a take replay never answers times out; leases are released and the take retried") {
  const std::string dir = fresh("take-timeout");
  Peers p;
  p.unanswered_takes = 2;
  run_learner(dir, 1, &p);
  CHECK(p.failure.empty());
  CHECK(p.done_step == 1);
  CHECK(p.takes == 3);
  CHECK(p.releases == 2);
  CHECK(p.trace == "trtrtc");  // every retry follows the release of what the lost take leased
  CHECK(p.weights_to_generator == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("learner actor: an unanswered commit is retried (it is idempotent), then fails the run") {
  {
    const std::string dir = fresh("commit-retry");
    Peers p;
    p.unanswered_commits = 2;  // the third attempt is answered
    run_learner(dir, 2, &p);
    CHECK(p.failure.empty());
    CHECK(p.done_step == 2);
    CHECK(p.commits == 4);  // step 1: three attempts, step 2: one
    CHECK(p.takes == 2);
    REQUIRE(p.commit_versions.size() == 4);
    CHECK(p.commit_versions[0] == p.commit_versions[2]);  // the same commit, sent again
    CHECK(p.weights_to_generator == 2);
    CHECK(path_exists(dir + "/checkpoints/step_2"));
    std::filesystem::remove_all(dir);
  }
  {
    const std::string dir = fresh("commit-timeout");
    Peers p;
    p.unanswered_commits = 1000;  // replay is gone for good
    run_learner(dir, 2, &p);
    CHECK(p.commits == 3);  // kCommitAttempts, then the run fails
    CHECK(p.takes == 1);
    CHECK(p.weights_to_generator == 0);
    CHECK_FALSE(path_exists(dir + "/checkpoints/step_1"));
    CHECK(p.done_step == 0);
    CHECK_MESSAGE(p.failure.find("commit") != std::string::npos, p.failure);
    CHECK_MESSAGE(p.failure.find("request_timeout") != std::string::npos, p.failure);
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("learner actor: stats that never come complete the record without those fields") {
  const std::string dir = fresh("stats-timeout");
  Peers p;
  p.sampler_stats_unanswered = true;
  run_learner(dir, 2, &p);
  CHECK(p.failure.empty());
  CHECK(p.done_step == 2);
  // every step's record is written, none with the sampler's fields (present whenever its stats are)
  std::set<uint64_t> steps;
  for (const auto& r : p.records) {
    auto j = nlohmann::json::parse(r);
    steps.insert(j["step"].get<uint64_t>());
    CHECK_MESSAGE(!j.contains("finish_reasons"), r);
  }
  CHECK(steps == std::set<uint64_t>{0, 1, 2});
  std::filesystem::remove_all(dir);
}
