// The learner actor performs its step plan (actors/learner/learner_loop.h) in order and stops at
// the first failed effect: a step whose replay commit failed is neither checkpointed nor
// published. Runs on CAF's deterministic test coordinator with scripted peers.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>

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
  int takes = 0, commits = 0, weights_to_generator = 0, steps_to_driver = 0;
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
  auto replay = ts.sys->spawn([p, &next_group, &rs]() -> caf::behavior {
    return {
        [p, &next_group, &rs](pipe::take_atom, uint64_t need, uint64_t version) -> msg::Bytes {
          ++p->takes;
          if (p->takes <= p->malformed_batches) return msg::Bytes(std::vector<uint8_t>(64, 0x5a));
          std::vector<msg::Bytes> out;
          for (uint64_t i = 0; i < need; ++i) out.push_back(make_synthetic_group(next_group++, "add", version, 2, 3));
          return wire::training_batch(rs, uint64_t(p->takes), version, out);
        },
        [p, &rs](pipe::commit_atom, const std::vector<uint64_t>&, uint64_t step) -> msg::Bytes {
          ++p->commits;
          if (p->malformed_commit) return msg::Bytes(std::vector<uint8_t>{1, 2, 3});
          return wire::commit_result(rs, step, p->commit_ok, p->commit_ok ? "" : "disk full");
        },
    };
  });
  auto sampler = ts.sys->spawn([&ss]() -> caf::behavior {
    return {[](pipe::step_atom, const msg::Bytes&) {},
            [&ss](pipe::stats_atom) { return wire::metrics(ss, "sampler", 0, 0, {{"groups", 2, true}}); }};
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
    return {[p](pipe::step_atom, const std::string&) { ++p->steps_to_driver; },
            [p](pipe::done_atom, uint64_t step) { p->done_step = step; },
            [p](pipe::fail_atom, const std::string& why) { p->failure = why; }};
  });
  auto rejects = std::make_shared<pipe::RejectCounters>();
  pipe::LearnerArgs la{c, logic, replay, sampler, driver, evaluator, {generator}, 1, 0, rejects, nullptr};
  auto learner = ts.sys->spawn(pipe::learner_actor, la);
  caf::anon_send(learner, pipe::train_atom::value);
  ts.sched->run();
  // A short or malformed batch is asked for again after a delay (a timeout on this scheduler).
  for (int i = 0; i < 100 && ts.sched->trigger_timeouts() > 0; ++i) ts.sched->run();
  p->rejected = rejects->learner.load();
  for (auto& h : {learner, replay, sampler, generator, evaluator, driver})
    caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
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
