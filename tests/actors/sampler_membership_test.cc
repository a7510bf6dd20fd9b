// Leases and runtime membership of the sampler actor (and the learner's side of membership), on
// CAF's deterministic test coordinator; time moves only by the test clock (advance_time):
//   a generator that never answers → its group is reissued to the other generator at the deadline
//   (not before) and completes; its late answers are dropped and counted;
//   a removed (or terminated) generator's requests go to the others at once;
//   a generator added at runtime gets requests it starts only with the weights of its join;
//   a late verdict after a judge retry is not counted twice;
//   the learner publishes to the generators the sampler reports and asks a member for stats.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "base/file.h"
#include "model/config.h"
#include "tests/actors/caf_test_system.h"

using namespace m1;
using m1::test::TestSystem;
using namespace std::chrono_literals;

namespace {

constexpr size_t kParams = 4;  // the scripted generators' "model": 4 weights

// A scripted generator: answers each request at once when it may start it (min_version ≤ the
// weights it holds), or holds every request it gets (answer = false: a hung generator).
struct Gen {
  uint64_t id = 0;
  bool answer = true;
  uint64_t version = 0;
  wire::Sender sender{0, 1, 0};
  std::vector<msg::Bytes> held;       // requests received and not answered
  std::vector<uint64_t> request_ids;  // every request received, in order
  std::vector<uint64_t> min_versions;
  int answered = 0, weights = 0, stats = 0;
  caf::actor sampler;
};

msg::Bytes rollout_for(Gen& g, const msg::Bytes& req) {
  const msg::GenerationRequest& r = *msg::decode<msg::GenerationRequest>(req).value();
  GenOutput o;
  o.request_id = r.request_id();
  o.tokens = std::vector<int>(3, 65);
  o.logprobs.assign(3, -0.1f);
  o.versions.assign(3, g.version);
  o.finish = "eos";
  return wire::rollout(g.sender, r, o, g.id);
}

caf::actor spawn_gen(TestSystem& ts, const std::shared_ptr<Gen>& g) {
  g->sender = {g->id, 1, 0};
  return ts.sys->spawn([g](caf::event_based_actor* self) -> caf::behavior {
    auto serve = [g, self] {
      if (!g->answer) return;
      std::vector<msg::Bytes> keep;
      for (const msg::Bytes& b : g->held) {
        if (msg::decode<msg::GenerationRequest>(b).value()->min_version() > g->version) {
          keep.push_back(b);
          continue;
        }
        self->send(g->sampler, pipe::rollout_atom::value, rollout_for(*g, b));
        ++g->answered;
      }
      g->held = keep;
    };
    return {
        [=](pipe::gen_atom, const msg::Bytes& b) {
          auto r = msg::decode<msg::GenerationRequest>(b);
          REQUIRE(r.is_ok());
          g->sampler = caf::actor_cast<caf::actor>(self->current_sender());
          g->request_ids.push_back(r.value()->request_id());
          g->min_versions.push_back(r.value()->min_version());
          g->held.push_back(b);
          serve();
        },
        [=](pipe::weights_atom, const std::vector<msg::Bytes>& parts) {
          std::vector<float> w;
          uint64_t v = 0;
          REQUIRE(wire::assemble_weights(parts, kParams, &w, &v).is_ok());
          ++g->weights;
          g->version = std::max(g->version, v);
          serve();
        },
        [=](pipe::stats_atom) {
          ++g->stats;
          return wire::metrics(g->sender, "generator", 0, 0, {{"tokens_per_s", 12.5}});
        },
    };
  });
}

std::vector<msg::Bytes> weights_of(uint64_t version) {
  static wire::Sender ls{0x1ea001, 1, 0};
  std::vector<float> w(kParams, 0.5f);
  return wire::weights(ls, w.data(), w.size(), version, size_t(1) << 20);
}

struct Peers {
  std::map<uint64_t, int> judge_calls;   // rollout id → judge requests
  std::vector<uint64_t> replay_groups;   // groups replay acknowledged
  std::vector<std::vector<float>> replay_rewards;
  std::vector<std::pair<uint64_t, caf::actor>> added;  // what the sampler told the learner
  std::vector<uint64_t> removed;
  // Judge requests held unanswered (hold_judge(index, attempt) says which), with their rollout index.
  std::function<bool(uint32_t, uint32_t)> hold_judge = [](uint32_t, uint32_t) { return false; };
  std::vector<std::pair<caf::response_promise, msg::Bytes>> held_verdicts;  // promise, the verdict it would give
};

struct Rig {
  TestSystem ts;
  std::shared_ptr<Peers> p = std::make_shared<Peers>();
  wire::Sender js{88, 1, 0}, rs{pipe::kReplayId, 1, 0};
  caf::actor judge, replay, learner, sampler;
  std::vector<caf::actor> others;  // to stop at the end
  pipe::SamplerArgs sa;

  Rig() {
    auto p_ = p;
    wire::Sender* jsp = &js;
    wire::Sender* rsp = &rs;
    // Verdict reward: the rollout's index % 2 + 0.25 · attempt (so a group has variance and the
    // attempt that was counted shows in the stored reward).
    judge = ts.sys->spawn([p_, jsp](caf::event_based_actor* self) -> caf::behavior {
      return {[=](pipe::judge_atom, const msg::Bytes& b) -> caf::result<msg::Bytes> {
        auto rq = msg::decode<msg::JudgeRequest>(b);
        REQUIRE(rq.is_ok());
        const msg::RolloutData* d = rq.value()->rollout();
        ++p_->judge_calls[d->rollout_id()];
        const uint32_t attempt = rq.value()->attempt();
        msg::Bytes v = wire::verdict(*jsp, d->rollout_id(), 9, true, float(d->index() % 2) + 0.25f * float(attempt), 1, "ok");
        if (p_->hold_judge(d->index(), attempt)) {
          p_->held_verdicts.emplace_back(self->make_response_promise(), v);
          return p_->held_verdicts.back().first;
        }
        return v;
      },
      // Delivers held verdict K now (a promise is delivered from its actor's context).
      [=](pipe::tick_atom, uint64_t k) { p_->held_verdicts.at(k).first.deliver(p_->held_verdicts.at(k).second); }};
    });
    replay = ts.sys->spawn([p_, rsp](caf::event_based_actor*) -> caf::behavior {
      return {[=](pipe::group_atom, const msg::Bytes& b) -> msg::Bytes {
        auto g = msg::decode<msg::JudgedGroup>(b);
        REQUIRE(g.is_ok());
        p_->replay_groups.push_back(g.value()->group_id());
        std::vector<float> rw;
        for (auto* r : *g.value()->rollouts()) rw.push_back(r->reward());
        p_->replay_rewards.push_back(rw);
        return wire::replay_ack(*rsp, g.value()->group_id(), true, "");
      }};
    });
    // The learner's side of membership, recorded (weights are sent by the test).
    learner = ts.sys->spawn([p_]() -> caf::behavior {
      return {[=](pipe::add_generator_atom, const caf::actor& g, uint64_t id) { p_->added.emplace_back(id, g); },
              [=](pipe::remove_generator_atom, uint64_t id) { p_->removed.push_back(id); }};
    });
    sa.cfg.tasks = {"add"};
    sa.cfg.group_size = 2;
    sa.cfg.batch_groups = 1;
    sa.cfg.max_staleness = 0;  // one group in flight
    sa.cfg.max_new = 8;
    sa.cfg.judge_retries = 1;
    sa.cfg.min_difficulty = sa.cfg.max_difficulty = sa.cfg.start_max_difficulty = 1;
    sa.judges = {judge};
    sa.replay = replay;
    sa.membership = learner;
    sa.rejects = std::make_shared<pipe::RejectCounters>();
    sa.leases.token_allowance_ms = 10;
    sa.leases.floor_ms = 5000;
  }

  caf::actor start() {
    sampler = ts.sys->spawn(pipe::sampler_actor, sa);
    caf::anon_send(sampler, pipe::start_atom::value);
    ts.sched->run();
    return sampler;
  }

  nlohmann::json stats() {
    msg::Bytes out;
    auto c = ts.sys->spawn([&](caf::event_based_actor* self) {
      self->request(sampler, caf::infinite, pipe::stats_atom::value).then([&](const msg::Bytes& s) { out = s; });
    });
    ts.sched->run();
    auto m = msg::decode<msg::Metrics>(out);
    REQUIRE(m.is_ok());
    return wire::metrics_json(*m.value());
  }

  uint64_t rejects() const { return sa.rejects->sampler.load(); }

  ~Rig() {
    for (auto& a : others) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    for (auto& a : {sampler, judge, replay, learner})
      if (a) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    ts.sched->run();
    p->held_verdicts.clear();
    while (ts.sched->trigger_timeouts() > 0) ts.sched->run();
  }
};

// prompt + max_new tokens of a request: its share of a lease's work.
int64_t work_of(const msg::Bytes& req) {
  const msg::GenerationRequest* r = msg::decode<msg::GenerationRequest>(req).value();
  return int64_t(r->prompt_tokens()->size()) + int64_t(r->max_new());
}

int judge_total(const Peers& p) {
  int n = 0;
  for (auto& [id, c] : p.judge_calls) n += c;
  return n;
}

}  // namespace

TEST_CASE("sampler leases: a generator that never answers → reissued to the other at the deadline; late answers dropped") {
  Rig r;
  auto g0 = std::make_shared<Gen>(), g1 = std::make_shared<Gen>();
  g0->id = pipe::generator_id(0);
  g1->id = pipe::generator_id(1);
  g0->answer = false;
  r.others = {spawn_gen(r.ts, g0), spawn_gen(r.ts, g1)};
  r.sa.generators = r.others;
  r.start();
  REQUIRE(g0->held.size() == 2);  // the first group goes to the first generator
  CHECK(g1->request_ids.empty());
  CHECK(r.p->replay_groups.empty());
  // The lease: floor + 10 ms per token of work at g0 (this group's two requests).
  const auto deadline = std::chrono::milliseconds(5000 + 10 * (work_of(g0->held[0]) + work_of(g0->held[1])));
  r.ts.sched->advance_time(deadline - 500ms);
  r.ts.sched->run();
  CHECK(g1->request_ids.empty());  // not overdue yet: nothing reissued
  r.ts.sched->advance_time(1s);
  r.ts.sched->run();
  CHECK(g1->request_ids == g0->request_ids);  // the same request ids, to the other generator
  CHECK(g1->answered == 2);
  REQUIRE(r.p->replay_groups.size() == 1);
  CHECK(judge_total(*r.p) == 2);
  auto j = r.stats();
  CHECK(j["requests_reissued"] == 2);
  CHECK(j["rollouts_duplicate_dropped"] == 0);
  CHECK(j["accepted_total"] == 1);
  // g0 answers at last: both answers are duplicates, dropped by request id and counted, never
  // judged, never stored, and not rejects.
  for (const msg::Bytes& b : g0->held) caf::anon_send(r.sampler, pipe::rollout_atom::value, rollout_for(*g0, b));
  // ... also a second copy of the reissue's answer.
  caf::anon_send(r.sampler, pipe::rollout_atom::value, rollout_for(*g1, g0->held[0]));
  r.ts.sched->run();
  auto j2 = r.stats();
  CHECK(j2["rollouts_duplicate_dropped"] == 3);
  CHECK(j2["requests_reissued"] == 0);
  CHECK(j2["groups"] == 0);
  CHECK(j2["accepted_total"] == 1);
  CHECK(r.rejects() == 0);
  CHECK(judge_total(*r.p) == 2);
  CHECK(r.p->replay_groups.size() == 1);
}

TEST_CASE("sampler leases: a late answer of the superseded issue counts once, the reissue's answer is the duplicate") {
  Rig r;
  auto g0 = std::make_shared<Gen>(), g1 = std::make_shared<Gen>();
  g0->id = pipe::generator_id(0);
  g1->id = pipe::generator_id(1);
  g0->answer = false;
  g1->answer = false;  // both slow: the lease expires, and then the first issue answers first
  r.others = {spawn_gen(r.ts, g0), spawn_gen(r.ts, g1)};
  r.sa.generators = r.others;
  r.start();
  r.ts.sched->advance_time(60s);
  r.ts.sched->run();
  REQUIRE(g1->held.size() == 2);
  caf::anon_send(r.sampler, pipe::rollout_atom::value, rollout_for(*g0, g0->held[0]));  // first issue, index 0
  caf::anon_send(r.sampler, pipe::rollout_atom::value, rollout_for(*g1, g1->held[0]));  // reissue, index 0: duplicate
  caf::anon_send(r.sampler, pipe::rollout_atom::value, rollout_for(*g1, g1->held[1]));  // reissue, index 1
  caf::anon_send(r.sampler, pipe::rollout_atom::value, rollout_for(*g0, g0->held[1]));  // first issue, index 1: duplicate
  r.ts.sched->run();
  REQUIRE(r.p->replay_groups.size() == 1);
  CHECK(judge_total(*r.p) == 2);
  auto j = r.stats();
  CHECK(j["rollouts_duplicate_dropped"] == 2);
  CHECK(j["accepted_total"] == 1);
  CHECK(r.rejects() == 0);
}

TEST_CASE("sampler membership: a removed generator's requests go to the others at once") {
  Rig r;
  auto g0 = std::make_shared<Gen>(), g1 = std::make_shared<Gen>();
  g0->id = pipe::generator_id(0);
  g1->id = pipe::generator_id(1);
  g0->answer = false;
  r.others = {spawn_gen(r.ts, g0), spawn_gen(r.ts, g1)};
  r.sa.generators = r.others;
  r.start();
  REQUIRE(g0->held.size() == 2);
  caf::anon_send(r.sampler, pipe::remove_generator_atom::value, pipe::generator_id(0));
  r.ts.sched->run();  // no time passes
  CHECK(g1->request_ids == g0->request_ids);
  CHECK(r.p->replay_groups.size() == 1);
  CHECK(r.p->removed == std::vector<uint64_t>{pipe::generator_id(0)});  // the learner is told
  auto j = r.stats();
  CHECK(j["requests_reissued"] == 2);
  CHECK(j["generators"] == 1);
  // The next group goes to the generator that is left (once it holds the version it admits).
  wire::Sender ls{0x1ea001, 1, 0};
  caf::anon_send(r.others[1], pipe::weights_atom::value, weights_of(1));
  caf::anon_send(r.sampler, pipe::step_atom::value, wire::step_report(ls, 1, 1, 0.f, {}, 0));
  r.ts.sched->run();
  CHECK(g0->request_ids.size() == 2);
  CHECK(g1->request_ids.size() == 4);
  CHECK(r.p->replay_groups.size() == 2);
}

TEST_CASE("sampler membership: a generator that terminates leaves; its requests go to the others") {
  Rig r;
  auto g0 = std::make_shared<Gen>(), g1 = std::make_shared<Gen>();
  g0->id = pipe::generator_id(0);
  g1->id = pipe::generator_id(1);
  g0->answer = false;
  caf::actor a0 = spawn_gen(r.ts, g0), a1 = spawn_gen(r.ts, g1);
  r.others = {a1};
  r.sa.generators = {a0, a1};
  r.start();
  REQUIRE(g0->held.size() == 2);
  caf::anon_send_exit(a0, caf::exit_reason::kill);
  a0 = nullptr;
  r.sa.generators.clear();
  r.ts.sched->run();
  CHECK(g1->request_ids == g0->request_ids);
  CHECK(r.p->replay_groups.size() == 1);
  CHECK(r.p->removed == std::vector<uint64_t>{pipe::generator_id(0)});
}

TEST_CASE("sampler membership: a generator added at runtime starts its work only with the weights of its join") {
  Rig r;
  r.sa.start_version = 5;
  r.sa.cfg.max_staleness = 2;  // requests admit version 3; the joining generator's admit 5 only
  r.start();                   // no generator: the groups wait
  auto g = std::make_shared<Gen>();
  g->id = 42;
  caf::actor ga = spawn_gen(r.ts, g);
  r.others = {ga};
  CHECK(r.stats()["generators"] == 0);
  caf::anon_send(r.sampler, pipe::add_generator_atom::value, ga, uint64_t(42));
  r.ts.sched->run();
  REQUIRE(r.p->added.size() == 1);  // the learner is told, to send it the weights
  CHECK(r.p->added[0].first == 42);
  CHECK(r.p->added[0].second == ga);
  CHECK(g->request_ids.size() == 6);  // 3 admitted groups of 2 (versions 5..7 at staleness 2)
  for (uint64_t v : g->min_versions) CHECK(v == 5);
  CHECK(g->answered == 0);  // it holds version 0: every request waits for the weights
  CHECK(r.p->replay_groups.empty());
  caf::anon_send(ga, pipe::weights_atom::value, weights_of(5));
  r.ts.sched->run();
  CHECK(g->answered == 6);
  CHECK(r.p->replay_groups.size() == 3);
  auto j = r.stats();
  CHECK(j["generators"] == 1);
  CHECK(j["requests_reissued"] == 0);  // first sends, not reissues
  // A second add of the same id changes nothing.
  caf::anon_send(r.sampler, pipe::add_generator_atom::value, ga, uint64_t(42));
  r.ts.sched->run();
  CHECK(r.p->added.size() == 1);
}

TEST_CASE("sampler judges: a verdict that arrives after its retry succeeded is not counted twice") {
  Rig r;
  auto g0 = std::make_shared<Gen>();
  g0->id = pipe::generator_id(0);
  r.others = {spawn_gen(r.ts, g0)};
  r.sa.generators = r.others;
  // Attempt 0 of both rollouts and attempt 1 of rollout 1 are held: rollout 0's retry answers first.
  r.p->hold_judge = [](uint32_t index, uint32_t attempt) { return attempt == 0 || index == 1; };
  r.start();
  REQUIRE(r.p->held_verdicts.size() == 2);
  r.ts.sched->advance_time(10s);  // the judge timeout (10 s): both are retried
  r.ts.sched->run();
  REQUIRE(r.p->held_verdicts.size() == 3);  // rollout 1's retry, held
  CHECK(judge_total(*r.p) == 4);
  // Rollout 0's first verdict arrives late, while its group still waits for rollout 1.
  caf::anon_send(r.judge, pipe::tick_atom::value, uint64_t(0));
  r.ts.sched->run();
  CHECK(r.p->replay_groups.empty());
  caf::anon_send(r.judge, pipe::tick_atom::value, uint64_t(2));  // rollout 1's retry
  r.ts.sched->run();
  caf::anon_send(r.judge, pipe::tick_atom::value, uint64_t(1));  // rollout 1's first, late
  r.ts.sched->run();
  REQUIRE(r.p->replay_groups.size() == 1);
  CHECK(r.p->replay_rewards[0] == std::vector<float>{0.25f, 1.25f});  // the retries' verdicts, once each
  auto j = r.stats();
  CHECK(j["groups"] == 1);
  CHECK(j["accepted_total"] == 1);
  CHECK(j["dead_lettered"] == 0);
  CHECK(j["reward_mean"] == 0.75);
  CHECK(r.rejects() == 0);
}

TEST_CASE("learner membership: weights at once to a generator that joins, publishes to members, stats from the first") {
  auto mc = load_model_config(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json");
  REQUIRE(mc.is_ok());
  Model m(mc.value());
  m.init_random(5);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-membership-" + std::to_string(getpid()))).string();
  std::filesystem::remove_all(dir);
  REQUIRE(make_dirs(dir).is_ok());
  RunConfig c;
  c.run_dir = dir;
  c.steps = 1;
  c.checkpoint_every = 1;
  c.eval_every = 0;
  c.batch_groups = 1;
  c.tasks = {};  // no held-out evaluation
  auto logic = std::make_shared<LearnerLogic>(m, LearnerConfig{});
  logic->advance_version_to(3);  // a resumed run (version 0's weights are never sent: generators start with them)
  TestSystem ts;
  wire::Sender rs{pipe::kReplayId, 1, 0}, ss{0x5a0001, 1, 0};
  auto replay = ts.sys->spawn([&rs](caf::event_based_actor*) -> caf::behavior {
    return {[&rs](pipe::take_atom, uint64_t need, uint64_t version, uint64_t) {
              std::vector<msg::Bytes> out;
              for (uint64_t i = 0; i < need; ++i) out.push_back(make_synthetic_group(i + 1, "add", version, 2, 3));
              return wire::training_batch(rs, 1, version, out);
            },
            [&rs](pipe::commit_atom, const std::vector<uint64_t>&, uint64_t step, uint64_t, uint64_t) {
              return wire::commit_result(rs, step, true, "");
            }};
  });
  auto sampler = ts.sys->spawn([&ss]() -> caf::behavior {
    return {[](pipe::step_atom, const msg::Bytes&) {},
            [&ss](pipe::stats_atom) { return wire::metrics(ss, "sampler", 0, 0, {{"groups", 1, true}}); }};
  });
  std::vector<std::string> records;
  uint64_t done_step = 0;
  auto driver = ts.sys->spawn([&]() -> caf::behavior {
    return {[&](pipe::step_atom, const std::string& rec) { records.push_back(rec); },
            [&](pipe::done_atom, uint64_t step) { done_step = step; }, [](pipe::fail_atom, const std::string&) {}};
  });
  auto evaluator = ts.sys->spawn([]() -> caf::behavior { return {[](pipe::weights_atom, const std::vector<msg::Bytes>&) {}}; });
  // The scripted generators count weights messages only (a real model's weights do not assemble
  // into 4 values, so they are counted by the handler that fails the size check: no REQUIRE here).
  std::map<int, int> weights, stats;
  auto gen = [&](int k) {
    return ts.sys->spawn([&, k]() -> caf::behavior {
      wire::Sender gs{pipe::generator_id(size_t(k)), 1, 0};
      return {[&, k](pipe::weights_atom, const std::vector<msg::Bytes>&) { ++weights[k]; },
              [&, k, gs](pipe::stats_atom) mutable {
                ++stats[k];
                return wire::metrics(gs, "generator", 0, 0, {{"tokens_per_s", 12.5}});
              }};
    });
  };
  auto g0 = gen(0), g1 = gen(1);
  pipe::LearnerArgs la{c, logic, replay, sampler, driver, evaluator, {g0}, 1, 0, std::make_shared<pipe::RejectCounters>(),
                       nullptr};
  auto learner = ts.sys->spawn(pipe::learner_actor, la);
  ts.sched->run();
  // What the sampler sends when membership changes: g0 leaves, g1 joins (twice: the second is ignored).
  caf::anon_send(learner, pipe::remove_generator_atom::value, pipe::generator_id(0));
  caf::anon_send(learner, pipe::add_generator_atom::value, g1, uint64_t(77));
  caf::anon_send(learner, pipe::add_generator_atom::value, g1, uint64_t(77));
  ts.sched->run();
  CHECK(weights[1] == 1);  // the current weights, at once
  CHECK(weights[0] == 0);
  caf::anon_send(learner, pipe::train_atom::value);
  ts.sched->run();
  for (int i = 0; i < 100 && ts.sched->trigger_timeouts() > 0; ++i) ts.sched->run();
  CHECK(done_step == 1);
  CHECK(weights[1] == 3);  // and, at its first train, the weights it holds (version > 0), then the step's publish
  CHECK(weights[0] == 0);
  CHECK(stats[1] == 1);  // the step's record asks the first member
  CHECK(stats[0] == 0);
  bool gen_fields = false;
  for (const std::string& rec : records) gen_fields |= nlohmann::json::parse(rec).contains("gen_tokens_per_s");
  CHECK(gen_fields);
  for (auto& h : {learner, replay, sampler, driver, evaluator, g0, g1}) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  ts.sched->run();
  std::filesystem::remove_all(dir);
}
