// DynamicSampler: group bookkeeping, advantages, dynamic sampling, admission (split from
// sampler_logic_test.cc).
#include "actors/sampler/sampler_logic.h"

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/file.h"
#include "base/rng.h"

namespace m1 {
namespace {

bool contains(const std::string& s, const std::string& needle) {
  return s.find(needle) != std::string::npos;
}

Curriculum add_curriculum(int difficulty = 1) {
  Curriculum c;
  auto src = BuiltinPromptSource::create("add", DifficultySchedule::fixed(difficulty));
  REQUIRE(src.is_ok());
  REQUIRE(c.add(std::move(src).value(), WeightSchedule::constant(1)).is_ok());
  return c;
}

DynamicSampler make_sampler(SamplerOptions o, LengthWindows w = LengthWindows::fixed(64)) {
  Result<DynamicSampler> s = DynamicSampler::create(o, add_curriculum(), std::move(w));
  REQUIRE(s.is_ok());
  return std::move(s).value();
}

JudgedRollout judged(uint32_t index, double reward, int64_t tokens = 10, double format_reward = 1) {
  JudgedRollout r;
  r.index = index;
  r.rollout_id = 1000 + index;
  r.reward = reward;
  r.format_reward = format_reward;
  r.tokens = tokens;
  r.reason = reward > 0 ? "correct" : "wrong";
  return r;
}

// Judges every rollout of g with rewards[i] (and format rewards formats[i], default 1); returns the
// last update.
GroupUpdate judge_all(DynamicSampler& s, const IssuedGroup& g, const std::vector<double>& rewards,
                      int64_t tokens = 10, const std::vector<double>& formats = {}) {
  GroupUpdate last;
  for (uint32_t i = 0; i < g.rollouts.size(); ++i) {
    Result<GroupUpdate> u = s.on_judged(g.group_id, judged(i, rewards[i], tokens, formats.empty() ? 1 : formats[i]));
    REQUIRE(u.is_ok());
    if (i + 1 < g.rollouts.size()) CHECK(u->fate == GroupFate::kPending);
    last = std::move(u).value();
  }
  return last;
}

// A group of a simulated run: its rollouts are judged one by one, in index order.
struct Pending {
  IssuedGroup g;
  uint32_t next = 0;  // the next rollout index to judge
};

TEST_CASE("sampler: options are validated") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  CHECK(o.validate().is_ok());
  o.group_size = 0;
  CHECK_FALSE(DynamicSampler::create(o, add_curriculum(), LengthWindows::fixed(8)).is_ok());
  o = SamplerOptions{};
  o.group_size = 4097;
  CHECK_FALSE(o.validate().is_ok());
  o = SamplerOptions{};
  o.batch_groups = 0;
  CHECK_FALSE(o.validate().is_ok());
  o = SamplerOptions{};
  o.oversample = 0.5;
  CHECK_FALSE(o.validate().is_ok());
  o = SamplerOptions{};
  o.first_group_id = 0;
  CHECK_FALSE(o.validate().is_ok());
  o = SamplerOptions{};
  o.overlong.enabled = true;
  o.overlong.l_cache = 100;
  CHECK_FALSE(DynamicSampler::create(o, add_curriculum(), LengthWindows::fixed(8)).is_ok());
  CHECK_FALSE(DynamicSampler::create(SamplerOptions{}, Curriculum{}, LengthWindows::fixed(8))
                  .is_ok());
}


TEST_CASE("sampler: groups of G requests with unique ids and deterministic seeds") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 4;
  o.batch_groups = 3;
  o.seed = 42;
  DynamicSampler a = make_sampler(o);
  DynamicSampler b = make_sampler(o);
  CHECK(a.issuable() == 3);
  Result<std::vector<IssuedGroup>> ga = a.issue();
  Result<std::vector<IssuedGroup>> gb = b.issue();
  REQUIRE(ga.is_ok());
  REQUIRE(gb.is_ok());
  REQUIRE(ga->size() == 3);
  std::set<uint64_t> request_ids, group_ids;
  for (size_t k = 0; k < 3; ++k) {
    const IssuedGroup& g = (*ga)[k];
    CHECK(g.group_id != 0);
    CHECK(group_ids.insert(g.group_id).second);
    CHECK(g.max_new == 64);
    CHECK(g.issue_version == 0);
    CHECK(g.prompt.prompt_id != 0);
    REQUIRE(g.rollouts.size() == 4);
    for (uint32_t i = 0; i < 4; ++i) {
      CHECK(g.rollouts[i].index == i);
      CHECK(g.rollouts[i].request_id != 0);
      CHECK(request_ids.insert(g.rollouts[i].request_id).second);
      CHECK(g.rollouts[i].seed == (*gb)[k].rollouts[i].seed);
    }
    CHECK(g.prompt.text == (*gb)[k].prompt.text);
  }
  CHECK(a.issuable() == 0);
  CHECK(a.issue()->empty());
  CHECK(a.in_flight() == 3);
  CHECK(a.counters().groups_issued == 3);
  CHECK(a.next_group_id() == 4);
  CHECK(a.next_request_id() == 13);
  // limit caps a call.
  DynamicSampler c = make_sampler(o);
  CHECK(c.issue(2)->size() == 2);
  CHECK(c.issuable() == 1);
}

TEST_CASE("sampler: a complete group gets GRPO advantages of R") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 4;
  o.batch_groups = 1;
  DynamicSampler s = make_sampler(o);
  const IssuedGroup g = s.issue()->at(0);
  // Out-of-order verdicts are fine.
  CHECK(s.on_judged(g.group_id, judged(2, 1))->fate == GroupFate::kPending);
  CHECK(s.on_judged(g.group_id, judged(0, 1))->fate == GroupFate::kPending);
  CHECK(s.on_judged(g.group_id, judged(3, 0))->fate == GroupFate::kPending);
  Result<GroupUpdate> u = s.on_judged(g.group_id, judged(1, 0));
  REQUIRE(u.is_ok());
  CHECK(u->fate == GroupFate::kAccepted);
  REQUIRE(u->group.has_value());
  const CompletedGroup& c = *u->group;
  CHECK(c.group_id == g.group_id);
  CHECK(c.prompt.prompt_id == g.prompt.prompt_id);
  CHECK(c.stats.mean == 0.5);
  CHECK(c.stats.std == 0.5);
  REQUIRE(c.rollouts.size() == 4);
  const std::vector<double> expected = grpo_advantages({1, 0, 1, 0}, AdvantageOptions{});
  for (uint32_t i = 0; i < 4; ++i) {
    CHECK(c.rollouts[i].judged.index == i);
    CHECK(c.rollouts[i].overlong == 0);
    CHECK(c.rollouts[i].advantage == expected[i]);
  }
  CHECK(s.accepted() == 1);
  CHECK(s.in_flight() == 0);
  CHECK(s.open_groups() == 0);
  CHECK(s.counters().groups_accepted == 1);
  CHECK(s.counters().rollouts_judged == 4);
  CHECK(s.counters().tokens_generated == 40);
  // Late duplicate after completion: ignored and counted.
  u = s.on_judged(g.group_id, judged(1, 0));
  REQUIRE(u.is_ok());
  CHECK(u->fate == GroupFate::kIgnored);
  CHECK(s.counters().rollouts_ignored == 1);
}

TEST_CASE("sampler: bad verdicts are errors, duplicates are ignored") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  DynamicSampler s = make_sampler(o);
  const IssuedGroup g = s.issue()->at(0);
  CHECK_FALSE(s.on_judged(g.group_id, judged(2, 1)).is_ok());
  CHECK_FALSE(s.on_judged(g.group_id, judged(0, std::nan(""))).is_ok());
  CHECK_FALSE(s.on_judged(g.group_id, judged(0, 1, -1)).is_ok());
  CHECK_FALSE(s.on_dead_letter(g.group_id, 5, 0, "x").is_ok());
  CHECK(s.counters().rollouts_judged == 0);
  CHECK(s.on_judged(g.group_id, judged(0, 1))->fate == GroupFate::kPending);
  Result<GroupUpdate> u = s.on_judged(g.group_id, judged(0, 0));
  CHECK(u->fate == GroupFate::kIgnored);
  CHECK(u->reason == "duplicate verdict for group " + std::to_string(g.group_id) + " index 0");
  CHECK(s.on_judged(999999, judged(0, 1))->fate == GroupFate::kIgnored);
  CHECK(s.on_dead_letter(999999, 0, 5, "x")->fate == GroupFate::kIgnored);
  CHECK(s.counters().rollouts_ignored == 3);
  CHECK(s.on_judged(g.group_id, judged(1, 0))->fate == GroupFate::kAccepted);
}

TEST_CASE("sampler: zero-variance groups are dropped, counted, and replaced (oversampling)") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 3;
  o.batch_groups = 2;
  DynamicSampler s = make_sampler(o);
  std::vector<IssuedGroup> gs = s.issue().value();
  REQUIRE(gs.size() == 2);
  // All correct: no signal.
  GroupUpdate u = judge_all(s, gs[0], {1, 1, 1}, 7);
  CHECK(u.fate == GroupFate::kDroppedZeroVariance);
  CHECK(u.reason == "zero variance: all 3 rewards equal 1");
  REQUIRE(u.group.has_value());
  CHECK(u.group->stats.std == 0);
  CHECK(s.counters().groups_dropped_zero_variance == 1);
  CHECK(s.counters().tokens_wasted_zero_variance == 21);
  CHECK(s.accepted() == 0);
  // The dropped group's slot is refilled.
  CHECK(s.issuable() == 1);
  std::vector<IssuedGroup> more = s.issue().value();
  REQUIRE(more.size() == 1);
  // All wrong: also dropped.
  CHECK(judge_all(s, more[0], {0, 0, 0}).fate == GroupFate::kDroppedZeroVariance);
  CHECK(judge_all(s, gs[1], {1, 0, 0}).fate == GroupFate::kAccepted);
  CHECK(s.issuable() == 1);
  more = s.issue().value();
  CHECK(judge_all(s, more[0], {0, 1, 0}).fate == GroupFate::kAccepted);
  // Batch 0 is full; synchronous: nothing more until the learner consumes it.
  CHECK(s.accepted() == 2);
  CHECK(s.issuable() == 0);
  const SamplerCounters& c = s.counters();
  CHECK(c.groups_issued == 4);
  CHECK(c.groups_dropped() == 2);
  CHECK(c.fraction_dropped() == 0.5);
  CHECK(c.fraction_dropped_zero_variance() == 0.5);
  CHECK(c.tokens_generated == 21 + 30 + 30 + 30);
  CHECK(c.tokens_wasted() == 51);
  CHECK(c.fraction_tokens_wasted() == doctest::Approx(51.0 / 111.0));
}

TEST_CASE("sampler: a dead-lettered rollout drops its group with the reason") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 3;
  o.batch_groups = 1;
  DynamicSampler s = make_sampler(o);
  const IssuedGroup g = s.issue()->at(0);
  CHECK(s.on_judged(g.group_id, judged(0, 1, 5))->fate == GroupFate::kPending);
  Result<GroupUpdate> u =
      s.on_dead_letter(g.group_id, 1, 8, "judge failed after 3 attempt(s): timeout after 100 ms");
  REQUIRE(u.is_ok());
  CHECK(u->fate == GroupFate::kDroppedDeadLetter);
  CHECK(u->reason == "rollout 1 dead-lettered: judge failed after 3 attempt(s): timeout after 100 ms");
  CHECK_FALSE(u->group.has_value());
  CHECK(s.counters().groups_dropped_dead_letter == 1);
  CHECK(s.in_flight() == 0);
  CHECK(s.open_groups() == 1);  // waits for the straggler
  CHECK(s.issuable() == 1);     // the batch still needs a group: refill
  // The straggler's verdict is absorbed: counted as judged and wasted, no group emitted.
  u = s.on_judged(g.group_id, judged(2, 0, 6));
  CHECK(u->fate == GroupFate::kIgnored);
  CHECK(contains(u->reason, "group already dropped: rollout 1 dead-lettered"));
  CHECK(s.open_groups() == 0);
  CHECK(s.counters().tokens_wasted_dead_letter == 5 + 8 + 6);
  CHECK(s.counters().tokens_generated == 19);
  CHECK(s.counters().fraction_dropped() == 1.0);
  CHECK(s.counters().fraction_dropped_zero_variance() == 0.0);
  CHECK(s.accepted() == 0);
  // Two dead letters in one group: one drop.
  const IssuedGroup h = s.issue()->at(0);
  CHECK(s.on_dead_letter(h.group_id, 0, 1, "a")->fate == GroupFate::kDroppedDeadLetter);
  CHECK(s.on_dead_letter(h.group_id, 1, 1, "b")->fate == GroupFate::kIgnored);
  CHECK(s.on_dead_letter(h.group_id, 1, 1, "b")->fate == GroupFate::kIgnored);  // duplicate
  CHECK(s.counters().groups_dropped_dead_letter == 2);
}

TEST_CASE("sampler: with await_persistence a group is accepted only once replay acknowledges it") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  o.batch_groups = 2;
  o.await_persistence = true;
  DynamicSampler s = make_sampler(o);
  std::vector<IssuedGroup> gs = s.issue().value();
  REQUIRE(gs.size() == 2);
  GroupUpdate u = judge_all(s, gs[0], {1, 0});
  CHECK(u.fate == GroupFate::kAccepted);
  REQUIRE(u.group.has_value());
  CHECK(u.group->rollouts[0].advantage > 0);
  // Awaiting the durable write: not accepted yet, still holding its in-flight slot.
  CHECK(s.accepted() == 0);
  CHECK(s.counters().groups_accepted == 0);
  CHECK(s.in_flight() == 2);
  CHECK(s.awaiting_persistence() == 1);
  CHECK_FALSE(s.tracking(gs[0].group_id));  // no verdicts expected any more
  CHECK(s.tracking(gs[1].group_id));
  CHECK(s.issuable() == 0);
  // Acknowledged: accepted, slot released (no refill: the batch's quota is taken).
  REQUIRE(s.on_persisted(gs[0].group_id, true).is_ok());
  CHECK(s.accepted() == 1);
  CHECK(s.counters().groups_accepted == 1);
  CHECK(s.in_flight() == 1);
  CHECK(s.awaiting_persistence() == 0);
  CHECK(s.issuable() == 0);
  // A second answer for the same group, or one for a group never accepted, is an error.
  CHECK_FALSE(s.on_persisted(gs[0].group_id, true).is_ok());
  CHECK_FALSE(s.on_persisted(gs[1].group_id, true).is_ok());
  CHECK_FALSE(s.on_persisted(999999, false).is_ok());
  CHECK(s.accepted() == 1);
  CHECK(s.in_flight() == 1);
  // Replay failed: the slot is freed and a replacement group can be issued.
  CHECK(judge_all(s, gs[1], {0, 1}).fate == GroupFate::kAccepted);
  CHECK(s.issuable() == 0);
  REQUIRE(s.on_persisted(gs[1].group_id, false).is_ok());
  CHECK(s.accepted() == 1);
  CHECK(s.persist_failures() == 1);
  CHECK(s.in_flight() == 0);
  CHECK(s.issuable() == 1);
  std::vector<IssuedGroup> more = s.issue().value();
  REQUIRE(more.size() == 1);
  CHECK(more[0].group_id != gs[1].group_id);
  CHECK(judge_all(s, more[0], {1, 0}).fate == GroupFate::kAccepted);
  REQUIRE(s.on_persisted(more[0].group_id, true).is_ok());
  CHECK(s.accepted() == 2);
  const SamplerCounters& c = s.counters();
  CHECK(c.groups_issued == c.groups_accepted + c.groups_dropped() + s.in_flight() +
                               s.persist_failures());
}

TEST_CASE("sampler: simulated run with persistence failures keeps the admission invariant") {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    INFO("seed " << seed);
    SamplerOptions o;
    o.max_staleness = 0;  // synchronous unless the test says otherwise
    o.group_size = 3;
    o.batch_groups = 2;
    o.max_staleness = 1;
    o.seed = seed;
    o.await_persistence = true;
    DynamicSampler s = make_sampler(o);
    Rng env(seed * 104729);
    std::vector<Pending> pending;
    std::vector<uint64_t> awaiting;  // accepted, replay not answered yet
    uint64_t consumed_batches = 0, failures = 0;
    for (int tick = 0; tick < 2000; ++tick) {
      std::vector<IssuedGroup> issued = s.issue().value();
      for (IssuedGroup& g : issued) pending.push_back(Pending{std::move(g)});
      CHECK(s.accepted() + s.in_flight() <= admitted_group_quota(s.learner_version(), 1, 2));
      CHECK(s.in_flight() == pending.size() + awaiting.size());
      CHECK(s.awaiting_persistence() == awaiting.size());
      if (s.accepted() >= (consumed_batches + 1) * 2 && env.below(3) == 0)
        s.set_learner_version(++consumed_batches);
      if (!awaiting.empty() && env.below(2) == 0) {  // replay answers one group
        const size_t k = env.below(awaiting.size());
        const bool ok = env.below(5) != 0;
        failures += ok ? 0 : 1;
        REQUIRE(s.on_persisted(awaiting[k], ok).is_ok());
        awaiting.erase(awaiting.begin() + std::ptrdiff_t(k));
        continue;
      }
      if (pending.empty()) continue;
      const size_t k = env.below(pending.size());
      Pending& p = pending[k];
      Result<GroupUpdate> u = s.on_judged(p.g.group_id, judged(p.next++, double(env.below(2))));
      REQUIRE(u.is_ok());
      if (u->fate == GroupFate::kPending) continue;
      if (u->fate == GroupFate::kAccepted) awaiting.push_back(p.g.group_id);
      pending.erase(pending.begin() + std::ptrdiff_t(k));
    }
    const SamplerCounters& c = s.counters();
    CHECK(s.persist_failures() == failures);
    CHECK(failures > 0);
    CHECK(c.groups_accepted > 10);
    CHECK(c.groups_issued ==
          c.groups_accepted + c.groups_dropped() + s.in_flight() + s.persist_failures());
  }
}

TEST_CASE("sampler: without await_persistence on_persisted is an error and changes nothing") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  o.batch_groups = 1;
  DynamicSampler s = make_sampler(o);
  const IssuedGroup g = s.issue()->at(0);
  CHECK(judge_all(s, g, {1, 0}).fate == GroupFate::kAccepted);
  CHECK(s.accepted() == 1);
  CHECK(s.in_flight() == 0);
  CHECK_FALSE(s.on_persisted(g.group_id, true).is_ok());
  CHECK_FALSE(s.on_persisted(g.group_id, false).is_ok());
  CHECK(s.accepted() == 1);
  CHECK(s.in_flight() == 0);
  CHECK(s.persist_failures() == 0);
}

TEST_CASE("sampler: judge id and finish reason are carried into the completed group") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  o.batch_groups = 1;
  DynamicSampler s = make_sampler(o);
  const IssuedGroup g = s.issue()->at(0);
  JudgedRollout a = judged(0, 1), b = judged(1, 0);
  a.judge_id = 7;
  a.finish = "eos";
  b.judge_id = 8;
  b.finish = "length";
  CHECK(s.on_judged(g.group_id, a)->fate == GroupFate::kPending);
  Result<GroupUpdate> u = s.on_judged(g.group_id, b);
  REQUIRE(u.is_ok());
  REQUIRE(u->group.has_value());
  CHECK(u->group->rollouts[0].judged.judge_id == 7);
  CHECK(u->group->rollouts[0].judged.finish == "eos");
  CHECK(u->group->rollouts[1].judged.judge_id == 8);
  CHECK(u->group->rollouts[1].judged.finish == "length");
}

TEST_CASE("sampler: staleness admission paces issue by learner version; lookahead issues fewer batches ahead") {
  struct Case {
    uint64_t staleness, lookahead;
  };
  for (Case c : {Case{0, UINT64_MAX}, Case{1, UINT64_MAX}, Case{3, UINT64_MAX}, Case{2, 0}, Case{2, 1}, Case{2, 2},
                 Case{2, 5}}) {
    INFO("max_staleness " << c.staleness << ", lookahead " << c.lookahead);
    SamplerOptions o;
    o.max_staleness = 0;  // synchronous unless the test says otherwise
    o.group_size = 2;
    o.batch_groups = 2;
    o.max_staleness = c.staleness;
    o.lookahead = c.lookahead;
    DynamicSampler s = make_sampler(o);
    const uint64_t ahead = std::min(c.lookahead, c.staleness);  // never beyond max_staleness
    CHECK(s.issuable() == (ahead + 1) * 2);
    std::vector<IssuedGroup> gs = s.issue().value();
    CHECK(gs.size() == (ahead + 1) * 2);
    for (const IssuedGroup& g : gs) CHECK(judge_all(s, g, {1, 0}).fate == GroupFate::kAccepted);
    CHECK(s.issuable() == 0);
    // The learner consumes one batch: exactly one more batch is admitted.
    CHECK(s.set_learner_version(1));
    CHECK(s.issuable() == 2);
    gs = s.issue().value();
    REQUIRE(gs.size() == 2);
    CHECK(gs[0].issue_version == 1);
    CHECK_FALSE(s.set_learner_version(0));  // versions only move forward
    CHECK(s.learner_version() == 1);
  }
}

TEST_CASE("sampler: a resumed sampler counts batches from its start version") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  o.batch_groups = 2;
  o.max_staleness = 1;
  o.start_learner_version = 100;
  o.accepted_before = 3;  // pending in replay: batch 100 full, one group of batch 101
  DynamicSampler s = make_sampler(o);
  CHECK(s.learner_version() == 100);
  CHECK(s.issuable() == 1);  // quota (0 + 1 + 1) · 2 = 4, accepted 3
  std::vector<IssuedGroup> gs = s.issue().value();
  REQUIRE(gs.size() == 1);
  CHECK(gs[0].issue_version == 100);
  CHECK(s.set_learner_version(101));
  CHECK(s.issuable() == 2);
}

TEST_CASE("sampler: oversampling keeps extra groups in flight") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  o.batch_groups = 4;
  o.oversample = 1.5;
  DynamicSampler s = make_sampler(o);
  CHECK(s.issuable() == 6);
  std::vector<IssuedGroup> gs = s.issue().value();
  REQUIRE(gs.size() == 6);
  CHECK(judge_all(s, gs[0], {1, 0}).fate == GroupFate::kAccepted);
  CHECK(judge_all(s, gs[1], {0, 1}).fate == GroupFate::kAccepted);
  // accepted 2, in flight 4: 2·1.5 + 4 = 7 < 6? no → nothing more; needed (4−2)·1.5 = 3 in flight.
  CHECK(s.issuable() == 0);
  CHECK(judge_all(s, gs[2], {1, 1}).fate == GroupFate::kDroppedZeroVariance);
  CHECK(judge_all(s, gs[3], {0, 0}).fate == GroupFate::kDroppedZeroVariance);
  CHECK(s.issuable() == 1);  // in flight 2 < 3
}

TEST_CASE("sampler: soft overlong shaping enters R and breaks ties") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 3;
  o.batch_groups = 1;
  o.overlong.enabled = true;
  o.overlong.l_cache = 20;  // L_max = max_new = 100
  DynamicSampler s = make_sampler(o, LengthWindows::fixed(100));
  const IssuedGroup g = s.issue()->at(0);
  CHECK(s.on_judged(g.group_id, judged(0, 1, 50))->fate == GroupFate::kPending);
  CHECK(s.on_judged(g.group_id, judged(1, 1, 90))->fate == GroupFate::kPending);
  Result<GroupUpdate> u = s.on_judged(g.group_id, judged(2, 1, 100));
  REQUIRE(u.is_ok());
  // All correct, but lengths differ: R = {1, 0.5, 0} carries signal.
  CHECK(u->fate == GroupFate::kAccepted);
  const CompletedGroup& c = *u->group;
  CHECK(c.rollouts[0].overlong == 0);
  CHECK(c.rollouts[1].overlong == doctest::Approx(-0.5));
  CHECK(c.rollouts[2].overlong == doctest::Approx(-1));
  CHECK(c.rollouts[1].reward == doctest::Approx(0.5));
  CHECK(c.rollouts[1].judged.reward == 1);
  CHECK(c.stats.mean == doctest::Approx(0.5));
  CHECK(c.rollouts[0].advantage > 0);
  CHECK(c.rollouts[1].advantage == doctest::Approx(0).epsilon(1e-9));
  CHECK(c.rollouts[2].advantage < 0);
}

TEST_CASE("sampler: the format penalty enters R for malformed markup only") {
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 3;
  o.batch_groups = 1;
  o.format_penalty = 1.0;
  DynamicSampler s = make_sampler(o);
  const IssuedGroup g = s.issue()->at(0);
  // All three correct; the second wrote past its answer block (format reward 0), as a policy
  // that stops emitting the end token does: its R falls to 0 and the group carries signal.
  const GroupUpdate u = judge_all(s, g, {1, 1, 1}, 10, {1, 0, 1});
  CHECK(u.fate == GroupFate::kAccepted);
  const CompletedGroup& c = *u.group;
  CHECK(c.rollouts[0].format == 0);
  CHECK(c.rollouts[1].format == doctest::Approx(-1));
  CHECK(c.rollouts[1].reward == doctest::Approx(0));
  CHECK(c.rollouts[1].judged.reward == 1);
  CHECK(c.rollouts[1].advantage < 0);
  CHECK(c.rollouts[0].advantage > 0);
  o.format_penalty = -0.5;
  CHECK_FALSE(o.validate().is_ok());
  o.format_penalty = std::nan("");
  CHECK_FALSE(o.validate().is_ok());
}

TEST_CASE("sampler: length windows advance from completed groups") {
  LengthWindowOptions w;
  w.windows = {16, 24, 32};
  w.threshold = 0.75;
  w.history_groups = 2;
  w.min_groups = 2;
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  o.batch_groups = 1;
  o.max_staleness = 100;
  DynamicSampler s = make_sampler(o, LengthWindows::create(w).value());
  std::vector<IssuedGroup> gs = s.issue(3).value();
  for (const IssuedGroup& g : gs) CHECK(g.max_new == 16);
  CHECK_FALSE(judge_all(s, gs[0], {1, 0}, 12).window_advanced);
  GroupUpdate u = judge_all(s, gs[1], {1, 0}, 12);  // p99 12 ≥ 0.75·16
  CHECK(u.window_advanced);
  CHECK(s.windows().max_new() == 24);
  CHECK(s.counters().windows_advanced == 1);
  // Issued under the old window: ignored by the new window's history.
  CHECK_FALSE(judge_all(s, gs[2], {1, 0}, 16).window_advanced);
  std::vector<IssuedGroup> next = s.issue(1).value();
  CHECK(next[0].max_new == 24);
}

TEST_CASE("sampler: health metrics by task") {
  Curriculum c;
  REQUIRE(c.add(std::move(BuiltinPromptSource::create("add", DifficultySchedule::fixed(1)))
                    .value(),
                WeightSchedule::constant(1))
              .is_ok());
  REQUIRE(c.add(std::move(JsonlPromptSource::parse(
                              "m.jsonl", "{\"prompt\": \"1/2+1/2\", \"answer\": \"1\"}"))
                    .value(),
                WeightSchedule::constant(1))
              .is_ok());
  SamplerOptions o;
  o.max_staleness = 0;  // synchronous unless the test says otherwise
  o.group_size = 2;
  o.batch_groups = 50;
  o.seed = 9;
  DynamicSampler s = std::move(DynamicSampler::create(o, std::move(c), LengthWindows::fixed(64)))
                         .value();
  std::vector<IssuedGroup> gs = s.issue().value();
  REQUIRE(gs.size() == 50);
  std::map<std::string, std::vector<double>> rewards;
  int64_t len = 1;
  for (const IssuedGroup& g : gs) {
    const double a = g.prompt.task == "add" ? 1.0 : 0.0;
    judge_all(s, g, {a, 0.5}, len++);
    rewards[g.prompt.task].push_back(a);
    rewards[g.prompt.task].push_back(0.5);
  }
  const auto& by_task = s.task_rewards().by_task();
  REQUIRE(by_task.count("add"));
  REQUIRE(by_task.count("math"));
  for (const auto& [task, rs] : rewards) {
    INFO(task);
    const GroupStats st = group_stats(rs);
    CHECK(by_task.at(task).count() == rs.size());
    CHECK(by_task.at(task).mean() == doctest::Approx(st.mean));
    CHECK(by_task.at(task).std() == doctest::Approx(st.std));
  }
  CHECK(s.lengths().size() == 100);
  CHECK(s.lengths().p99() == 50);  // lengths 1..50 twice: rank 99 of 100 = 50
  CHECK(s.lengths().mean() == doctest::Approx(25.5));
  RecentLengths small(3);
  for (int64_t n : {100, 1, 2, 3}) small.add(n);
  CHECK(small.size() == 3);
  CHECK(small.p99() == 3);
  s.task_rewards().reset();
  CHECK(s.task_rewards().by_task().empty());
}

TEST_CASE("sampler: simulated run keeps the admission invariant and the synchronous contract") {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    for (uint64_t staleness : {0u, 2u}) {
      INFO("seed " << seed << " max_staleness " << staleness);
      SamplerOptions o;
      o.max_staleness = 0;  // synchronous unless the test says otherwise
      o.group_size = 1 + uint32_t(seed % 4) + 1;
      o.batch_groups = 3;
      o.max_staleness = staleness;
      o.seed = seed;
      DynamicSampler s = make_sampler(o);
      Rng env(seed * 7919);
      std::vector<Pending> pending;
      std::vector<uint64_t> accepted_issue_versions;  // in acceptance order
      std::set<uint64_t> finished;
      uint64_t consumed_batches = 0;
      for (int tick = 0; tick < 3000; ++tick) {
        std::vector<IssuedGroup> issued = s.issue().value();
        for (IssuedGroup& g : issued) pending.push_back(Pending{std::move(g)});
        const uint64_t quota = admitted_group_quota(s.learner_version(), staleness, 3);
        CHECK(s.accepted() + s.in_flight() <= quota);
        CHECK(s.in_flight() == pending.size());
        // The learner consumes a full batch sometimes.
        if (s.accepted() >= (consumed_batches + 1) * 3 && env.below(3) == 0) {
          ++consumed_batches;
          s.set_learner_version(consumed_batches);
        }
        if (pending.empty()) continue;
        // One verdict (or, rarely, a dead letter) for a random in-flight group.
        const size_t k = env.below(pending.size());
        Pending& p = pending[k];
        Result<GroupUpdate> u = Status::error("unset");
        if (env.below(50) == 0) {
          u = s.on_dead_letter(p.g.group_id, p.next, 3, "timeout");
          REQUIRE(u.is_ok());
          CHECK(u->fate == GroupFate::kDroppedDeadLetter);
        } else {
          const double r = double(env.below(2));
          u = s.on_judged(p.g.group_id, judged(p.next++, r, 1 + int64_t(env.below(64))));
          REQUIRE(u.is_ok());
        }
        if (u->fate == GroupFate::kPending) continue;
        CHECK(finished.insert(p.g.group_id).second);
        if (u->fate == GroupFate::kAccepted) {
          accepted_issue_versions.push_back(p.g.issue_version);
          double sum = 0;
          for (const ScoredRollout& r : u->group->rollouts) sum += r.advantage;
          CHECK(std::fabs(sum) < 1e-9);
        }
        pending.erase(pending.begin() + std::ptrdiff_t(k));
      }
      const SamplerCounters& c = s.counters();
      CHECK(c.groups_issued == c.groups_accepted + c.groups_dropped() + s.in_flight());
      CHECK(c.groups_accepted > 10);
      // Synchronous (S = 0) with a learner in lockstep: every group of batch b (acceptance
      // order) was issued at version b. (With S > 0 a slow group can land in a later batch than
      // its issue version + S: replay drops it at consumption; admission only bounds issue.)
      if (staleness == 0) {
        for (size_t i = 0; i < accepted_issue_versions.size(); ++i)
          CHECK(accepted_issue_versions[i] == i / 3);
      }
    }
  }
}

}  // namespace
}  // namespace m1
