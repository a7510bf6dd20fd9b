// The sampler actor on CAF's deterministic test scheduler: refills after a failed replay write,
// judge retries and dead letters, duplicate rollouts dropped and counted, ack lines only for acked groups,
// stats, and that every actor is destroyed at shutdown.
#include <doctest/doctest.h>

#include <caf/scheduler/test_coordinator.hpp>

#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "tests/actors/caf_test_system.h"
#include "base/file.h"
#include "model/tokenizer.h"

using namespace m1;

namespace {

using test::TestSystem;

struct Log {
  std::vector<std::tuple<uint64_t, uint32_t, int, uint64_t, uint64_t>> gen;  // group, index, max_new, seed, min_version
  std::map<uint64_t, int> judge_calls;  // rollout id → calls
  std::vector<uint64_t> replay_groups;
  std::vector<std::vector<float>> replay_rewards;
  int replay_calls = 0;
  std::set<uint64_t> dead_groups;       // groups whose rollout 1 always fails judging
};

}  // namespace

TEST_CASE("sampler actor: issues, judges with retries, persists, refills") {
  TestSystem ts;
  auto log = std::make_shared<Log>();
  wire::Sender gs{77, 1, 0};
  auto gen = ts.sys->spawn([log, &gs](caf::event_based_actor* self) -> caf::behavior {
    return {[=, &gs](pipe::gen_atom, const msg::Bytes& b) {
      auto rq = msg::decode<msg::GenerationRequest>(b);
      REQUIRE(rq.is_ok());
      const msg::GenerationRequest& r = *rq.value();
      log->gen.emplace_back(r.group_id(), r.index(), int(r.max_new()), r.seed(), r.min_version());
      GenOutput o;
      o.request_id = r.request_id();
      o.tokens = std::vector<int>(3 + r.index(), 65);
      o.logprobs.assign(o.tokens.size(), -0.1f);
      o.versions.assign(o.tokens.size(), 0);
      o.finish = r.index() == 0 ? "eos" : "length";
      auto out = wire::rollout(gs, r, o, 5);
      auto sampler = caf::actor_cast<caf::actor>(self->current_sender());
      self->send(sampler, pipe::rollout_atom::value, out);
      if (r.index() == 0) self->send(sampler, pipe::rollout_atom::value, out);  // duplicate
    }};
  });
  wire::Sender js{88, 1, 0};
  auto judge = ts.sys->spawn([log, &js](caf::event_based_actor*) -> caf::behavior {
    return {[=, &js](pipe::judge_atom, const msg::Bytes& b) -> msg::Bytes {
      auto rq = msg::decode<msg::JudgeRequest>(b);
      REQUIRE(rq.is_ok());
      const msg::RolloutData* d = rq.value()->rollout();
      const int calls = ++log->judge_calls[d->rollout_id()];
      // group ordinal 3 (the third issued) is dead: rollout 1 always fails.
      if (d->index() == 1 && log->dead_groups.count(d->group_id()))
        return wire::verdict(js, d->rollout_id(), 9, false, 0, 0, "boom");
      // first attempt of every rollout 0 fails, the retry succeeds
      if (d->index() == 0 && calls == 1) return wire::verdict(js, d->rollout_id(), 9, false, 0, 0, "flaky");
      return wire::verdict(js, d->rollout_id(), 9, true, float(d->index() % 2), 1, "ok");
    }};
  });
  wire::Sender rs{pipe::kReplayId, 1, 0};
  auto replay = ts.sys->spawn([log, &rs](caf::event_based_actor*) -> caf::behavior {
    return {[=, &rs](pipe::group_atom, const msg::Bytes& b) -> msg::Bytes {
      auto g = msg::decode<msg::JudgedGroup>(b);
      REQUIRE(g.is_ok());
      ++log->replay_calls;
      std::vector<float> rw;
      for (auto* r : *g.value()->rollouts()) rw.push_back(r->reward());
      log->replay_rewards.push_back(rw);
      const uint64_t id = g.value()->group_id();
      if (log->replay_calls == 1) return wire::replay_ack(rs, id, false, "disk full");  // the first write fails
      log->replay_groups.push_back(id);
      return wire::replay_ack(rs, id, true, "");
    }};
  });
  const std::string dir = (std::filesystem::temp_directory_path() / ("m1-g4-probe-" + std::to_string(getpid()))).string();
  remove_all(dir);
  REQUIRE(make_dirs(dir).is_ok());
  auto events = std::make_shared<EventLog>();
  REQUIRE(events->open(dir + "/events.log").is_ok());
  auto rejects = std::make_shared<pipe::RejectCounters>();
  pipe::SamplerArgs sa;
  sa.cfg.tasks = {"add"};
  sa.cfg.group_size = 2;
  sa.cfg.batch_groups = 2;
  sa.cfg.max_staleness = 0;
  sa.cfg.max_new = 12;
  sa.cfg.judge_retries = 1;
  sa.cfg.overlong_cache = 4;  // L_max 12: lengths 3, 4 → no penalty
  sa.cfg.min_difficulty = 1;
  sa.cfg.max_difficulty = 1;
  sa.cfg.start_max_difficulty = 1;
  sa.generators = {gen};
  sa.judges = {judge};
  sa.replay = replay;
  sa.incarnation = 3;
  sa.start_version = 5;
  sa.rejects = rejects;
  sa.events = events;
  const uint64_t base = (uint64_t(3) << 40);
  log->dead_groups.insert(base + 3);
  auto sampler = ts.sys->spawn(pipe::sampler_actor, sa);
  caf::anon_send(sampler, pipe::start_atom::value);
  ts.sched->run();
  // groups base+1, base+2 issued; base+1's write failed → base+3 issued (dead) → base+4.
  std::set<uint64_t> groups;
  for (auto& g : log->gen) {
    groups.insert(std::get<0>(g));
    CHECK(std::get<2>(g) == 12);
    CHECK(std::get<4>(g) == 5);
  }
  CHECK(groups == std::set<uint64_t>{base + 1, base + 2, base + 3, base + 4});
  CHECK(log->replay_calls == 3);
  CHECK(log->replay_groups == std::vector<uint64_t>{base + 2, base + 4});
  CHECK(rejects->sampler.load() == 0);  // duplicates are not malformed: counted apart (below)
  int total = 0;
  for (auto& [rid, calls] : log->judge_calls) total += calls;
  CHECK(total == 4 * 2 + 3 + 2);  // index 0: flaky first try; index 1: once, dead: twice
  auto ev = read_file(dir + "/events.log");
  REQUIRE(ev.is_ok());
  CHECK(ev.value() == "ack " + std::to_string(base + 2) + "\nack " + std::to_string(base + 4) + "\n");
  msg::Bytes stats;
  auto client = ts.sys->spawn([&](caf::event_based_actor* self) {
    self->request(sampler, caf::infinite, pipe::stats_atom::value).then([&](const msg::Bytes& s) { stats = s; });
  });
  ts.sched->run();
  REQUIRE(msg::decode<msg::Metrics>(stats).is_ok());
  CHECK(msg::decode<msg::Metrics>(stats).value()->source()->str() == "sampler");
  auto j = wire::metrics_json(*msg::decode<msg::Metrics>(stats).value());
  MESSAGE(j.dump());
  CHECK(j["accepted_total"] == 2);
  CHECK(j["in_flight"] == 0);
  CHECK(j["groups"] == 4);
  CHECK(j["dead_lettered"] == 1);
  CHECK(j["dropped_total"] == 1);
  CHECK(j["dropped_zero_variance"] == 0);
  CHECK(j["finish_reasons"]["eos"] == 3);
  CHECK(j["finish_reasons"]["length"] == 3);
  CHECK(j["length_p99"] == 4);
  CHECK(j["reward_mean"] == 0.5);
  CHECK(j["rollouts_duplicate_dropped"] == 4);  // one duplicate per group
  CHECK(j["requests_reissued"] == 0);
  // Learner consumes batch: version 6 → 2 more groups.
  wire::Sender ls{99, 1, 0};
  caf::anon_send(sampler, pipe::step_atom::value, wire::step_report(ls, 1, 6, 0.f, {}, 0));
  ts.sched->run();
  CHECK(log->replay_groups.size() == 4);
  CHECK(std::get<4>(log->gen.back()) == 6);
  msg::Bytes stats2;
  auto client2 = ts.sys->spawn([&](caf::event_based_actor* self) {
    self->request(sampler, caf::infinite, pipe::stats_atom::value).then([&](const msg::Bytes& s) { stats2 = s; });
  });
  ts.sched->run();
  REQUIRE(msg::decode<msg::Metrics>(stats2).is_ok());
  auto j2 = wire::metrics_json(*msg::decode<msg::Metrics>(stats2).value());
  MESSAGE(j2.dump());
  CHECK(j2["groups"] == 2);
  CHECK(j2["accepted_total"] == 4);
  CHECK(j2["dead_lettered"] == 0);
  CHECK(j2["rollouts_duplicate_dropped"] == 2);
  caf::weak_actor_ptr wg = caf::actor_cast<caf::weak_actor_ptr>(gen);
  caf::weak_actor_ptr ws = caf::actor_cast<caf::weak_actor_ptr>(sampler);
  for (auto& a : {sampler, gen, judge, replay, client, client2}) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  ts.sched->run();
  sa = pipe::SamplerArgs{};
  sampler = nullptr; gen = nullptr; judge = nullptr; replay = nullptr; client = nullptr; client2 = nullptr;
  ts.sched->run();
  // Timers still pending (the sampler's lease check, request timeouts) hold their receivers until
  // they fire; fire them.
  while (ts.sched->trigger_timeouts() > 0) ts.sched->run();
  CHECK(wg.lock() == nullptr);
  CHECK(ws.lock() == nullptr);
  remove_all(dir);
}

TEST_CASE("sampler actor: every request of a group goes to one generator; groups alternate over generators") {
  TestSystem ts;
  auto seen = std::make_shared<std::map<uint64_t, std::set<int>>>();  // group → generators that got a request
  wire::Sender gs{77, 1, 0};
  auto make_gen = [&](int id) {
    return ts.sys->spawn([seen, id, &gs](caf::event_based_actor* self) -> caf::behavior {
      return {[=, &gs](pipe::gen_atom, const msg::Bytes& b) {
        auto rq = msg::decode<msg::GenerationRequest>(b);
        REQUIRE(rq.is_ok());
        const msg::GenerationRequest& r = *rq.value();
        (*seen)[r.group_id()].insert(id);
        GenOutput o;
        o.request_id = r.request_id();
        o.tokens = std::vector<int>(3, 65);
        o.logprobs.assign(o.tokens.size(), -0.1f);
        o.versions.assign(o.tokens.size(), 0);
        o.finish = "eos";
        self->send(caf::actor_cast<caf::actor>(self->current_sender()), pipe::rollout_atom::value,
                   wire::rollout(gs, r, o, 5));
      }};
    });
  };
  auto g0 = make_gen(0), g1 = make_gen(1);
  wire::Sender js{88, 1, 0};
  auto judge = ts.sys->spawn([&js](caf::event_based_actor*) -> caf::behavior {
    return {[&js](pipe::judge_atom, const msg::Bytes& b) -> msg::Bytes {
      const msg::RolloutData* d = msg::decode<msg::JudgeRequest>(b).value()->rollout();
      return wire::verdict(js, d->rollout_id(), 9, true, float(d->index() % 2), 1, "ok");
    }};
  });
  wire::Sender rs{pipe::kReplayId, 1, 0};
  auto replay = ts.sys->spawn([&rs](caf::event_based_actor*) -> caf::behavior {
    return {[&rs](pipe::group_atom, const msg::Bytes& b) -> msg::Bytes {
      return wire::replay_ack(rs, msg::decode<msg::JudgedGroup>(b).value()->group_id(), true, "");
    }};
  });
  pipe::SamplerArgs sa;
  sa.cfg.tasks = {"add"};
  sa.cfg.group_size = 4;
  sa.cfg.batch_groups = 3;
  sa.cfg.max_staleness = 1;  // two batches: 6 groups
  sa.cfg.max_new = 8;
  sa.cfg.min_difficulty = sa.cfg.max_difficulty = sa.cfg.start_max_difficulty = 1;
  sa.generators = {g0, g1};
  sa.judges = {judge};
  sa.replay = replay;
  sa.incarnation = 1;
  sa.rejects = std::make_shared<pipe::RejectCounters>();
  auto sampler = ts.sys->spawn(pipe::sampler_actor, sa);
  caf::anon_send(sampler, pipe::start_atom::value);
  ts.sched->run();
  REQUIRE(seen->size() == 6);
  int on0 = 0;
  for (auto& [group, gens] : *seen) {
    CHECK(gens.size() == 1);
    on0 += gens.count(0);
  }
  CHECK(on0 == 3);
  for (auto& a : {sampler, g0, g1, judge, replay}) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  ts.sched->run();
}
