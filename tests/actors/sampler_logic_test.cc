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

std::string temp_path(const std::string& name) {
  return "/tmp/m1_sampler_test_" + std::to_string(::getpid()) + "_" + name;
}

// ---------------------------------------------------------------------------------------------
// Prompt sources

TEST_CASE("sampler: prompt ids are stable, non-zero and content-derived") {
  const uint64_t a = prompt_id_for("add", "1+2=", "3");
  CHECK(a != 0);
  CHECK(a == prompt_id_for("add", "1+2=", "3"));
  CHECK(a != prompt_id_for("add", "1+2=", "4"));
  CHECK(a != prompt_id_for("sort", "1+2=", "3"));
  // Field boundaries matter: ("ab", "c") differs from ("a", "bc").
  CHECK(prompt_id_for("t", "ab", "c") != prompt_id_for("t", "a", "bc"));
}

TEST_CASE("sampler: difficulty schedules") {
  const DifficultySchedule fixed = DifficultySchedule::fixed(3);
  for (int64_t s : {0, 5, 1000}) CHECK(fixed.max_at(s) == 3);
  const DifficultySchedule ramp = DifficultySchedule::linear(1, 1, 9, 80);
  CHECK(ramp.max_at(0) == 1);
  CHECK(ramp.max_at(9) == 1);    // 1 + floor(9/80·8) = 1
  CHECK(ramp.max_at(10) == 2);   // 1 + floor(10/80·8) = 2
  CHECK(ramp.max_at(40) == 5);
  CHECK(ramp.max_at(79) == 8);
  CHECK(ramp.max_at(80) == 9);
  CHECK(ramp.max_at(100000) == 9);
  CHECK(ramp.validate(9).is_ok());
  CHECK_FALSE(ramp.validate(8).is_ok());  // end_max above the family's max
  CHECK_FALSE(DifficultySchedule::fixed(0).validate(9).is_ok());
  CHECK_FALSE(DifficultySchedule::linear(3, 2, 5, 10).validate(9).is_ok());  // min > start_max
  CHECK_FALSE(DifficultySchedule::linear(1, 1, 5, -1).validate(9).is_ok());
}

TEST_CASE("sampler: built-in source draws within the schedule, deterministically") {
  Result<std::unique_ptr<BuiltinPromptSource>> src =
      BuiltinPromptSource::create("add", DifficultySchedule::linear(2, 2, 6, 100));
  REQUIRE(src.is_ok());
  CHECK((*src)->name() == "builtin:add");
  for (uint64_t seed : {1u, 2u, 3u}) {
    INFO("seed " << seed);
    Rng r1(seed), r2(seed);
    std::set<int> seen;
    for (int i = 0; i < 200; ++i) {
      const int64_t step = i;
      SampledPrompt a = (*src)->next(r1, step);
      SampledPrompt b = (*src)->next(r2, step);
      CHECK(a.text == b.text);
      CHECK(a.prompt_id == b.prompt_id);
      CHECK(a.task == "add");
      CHECK(a.dataset == "builtin");
      CHECK(a.prompt_id == prompt_id_for(a.task, a.text, a.reference));
      CHECK(a.difficulty >= 2);
      CHECK(a.difficulty <= DifficultySchedule::linear(2, 2, 6, 100).max_at(step));
      // The reference is the real answer.
      CHECK(make_task("add")->verify("<answer>" + a.reference + "</answer>", a.reference).reward ==
            1);
      seen.insert(a.difficulty);
    }
    CHECK(seen.size() >= 4);  // the ramp covers 2..6 over the 200 steps
  }
  Result<std::unique_ptr<BuiltinPromptSource>> bad =
      BuiltinPromptSource::create("nope", DifficultySchedule::fixed(1));
  CHECK_FALSE(bad.is_ok());
  CHECK(contains(bad.status().message(), "unknown built-in task family 'nope' (known: add, sort)"));
  bad = BuiltinPromptSource::create("sort", DifficultySchedule::fixed(11));
  CHECK_FALSE(bad.is_ok());
  CHECK(contains(bad.status().message(), "builtin:sort"));
}

TEST_CASE("sampler: JSONL records parse, with blank lines, default and explicit tasks") {
  const std::string text =
      "{\"prompt\": \"What is 1/2 + 1/2?\", \"answer\": \"1\"}\n"
      "\n"
      "   \n"
      "{\"prompt\": \"Capital of France?\", \"answer\": \"Paris\", \"task\": \"trivia\", "
      "\"extra\": 5}\r\n"
      "{\"prompt\": \"2+2=\", \"answer\": \"4\", \"task\": \"add\"}";
  Result<std::unique_ptr<JsonlPromptSource>> src = JsonlPromptSource::parse("p.jsonl", text);
  REQUIRE(src.is_ok());
  const auto& recs = (*src)->records();
  REQUIRE(recs.size() == 3);
  CHECK(recs[0].task == "math");
  CHECK(recs[0].text == "What is 1/2 + 1/2?");
  CHECK(recs[0].reference == "1");
  CHECK(recs[0].dataset == "p.jsonl");
  CHECK(recs[0].difficulty == 0);
  CHECK(recs[1].task == "trivia");
  CHECK(recs[2].task == "add");
  for (const SampledPrompt& p : recs) {
    CHECK(p.prompt_id != 0);
    CHECK(p.prompt_id == prompt_id_for(p.task, p.text, p.reference));
  }
  // A different default task.
  Result<std::unique_ptr<JsonlPromptSource>> other =
      JsonlPromptSource::parse("q.jsonl", "{\"prompt\": \"x\", \"answer\": \"y\"}", "qa");
  REQUIRE(other.is_ok());
  CHECK((*other)->records()[0].task == "qa");
}

TEST_CASE("sampler: JSONL errors name the file and the line") {
  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> cases = {
      {"{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\", \"answer\": \"2\"}\n"
       "{\"prompt\": \"c\", \"answer\": }\n",
       "bad.jsonl:3: malformed JSON"},
      {"\n\n{not json\n", "bad.jsonl:3: malformed JSON"},
      {"{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\"}\n",
       "bad.jsonl:2: missing string field \"answer\""},
      {"{\"answer\": \"1\"}\n", "bad.jsonl:1: missing string field \"prompt\""},
      {"{\"prompt\": \"a\", \"answer\": 1}\n", "bad.jsonl:1: field \"answer\" must be a string"},
      {"{\"prompt\": \"a\", \"answer\": \"1\", \"task\": 7}\n",
       "bad.jsonl:1: field \"task\" must be a string"},
      {"[1, 2]\n", "bad.jsonl:1: expected a JSON object"},
      {"{\"prompt\": \"\", \"answer\": \"1\"}\n", "bad.jsonl:1: \"prompt\" must be non-empty"},
      {"{\"prompt\": \"a\", \"answer\": \"  \"}\n", "bad.jsonl:1: \"answer\" must be non-blank"},
      {"{\"prompt\": \"a\", \"answer\": \"1\", \"task\": \"\"}\n",
       "bad.jsonl:1: \"task\" must be non-empty"},
      {"{\"prompt\": \"a\", \"answer\": \"1\"} trailing\n", "bad.jsonl:1: malformed JSON"},
      {"", "bad.jsonl: no prompt records"},
      {"\n  \n", "bad.jsonl: no prompt records"},
  };
  for (const Case& c : cases) {
    INFO("text: " << c.text);
    Result<std::unique_ptr<JsonlPromptSource>> src = JsonlPromptSource::parse("bad.jsonl", c.text);
    REQUIRE_FALSE(src.is_ok());
    INFO("message: " << src.status().message());
    CHECK(src.status().message().rfind(c.expected, 0) == 0);
  }
  const std::string long_task(65, 't');
  Result<std::unique_ptr<JsonlPromptSource>> src = JsonlPromptSource::parse(
      "bad.jsonl", "{\"prompt\": \"a\", \"answer\": \"1\", \"task\": \"" + long_task + "\"}");
  CHECK_FALSE(src.is_ok());
}

TEST_CASE("sampler: JSONL files load through the file seam; a missing file names its path") {
  const std::string path = temp_path("prompts.jsonl");
  REQUIRE(write_file(path, "{\"prompt\": \"p1\", \"answer\": \"a1\"}\n"
                           "{\"prompt\": \"p2\", \"answer\": \"a2\", \"task\": \"add\"}\n")
              .is_ok());
  Result<std::unique_ptr<JsonlPromptSource>> src = JsonlPromptSource::load(path);
  REQUIRE(src.is_ok());
  CHECK((*src)->name() == path);
  CHECK((*src)->records().size() == 2);
  CHECK((*src)->records()[1].dataset == path);
  REQUIRE(write_file(path, "{\"prompt\": \"p1\", \"answer\": \"a1\"}\n{oops}\n").is_ok());
  src = JsonlPromptSource::load(path);
  REQUIRE_FALSE(src.is_ok());
  CHECK(contains(src.status().message(), path + ":2: malformed JSON"));
  CHECK(remove_all(path).is_ok());

  const std::string missing = temp_path("does_not_exist.jsonl");
  src = JsonlPromptSource::load(missing);
  REQUIRE_FALSE(src.is_ok());
  CHECK(contains(src.status().message(), "reading prompt file"));
  CHECK(contains(src.status().message(), missing));
  CHECK(contains(src.status().message(), "cannot open"));
}

TEST_CASE("sampler: JSONL source visits every record once per epoch, deterministically") {
  std::string text;
  for (int i = 0; i < 7; ++i)
    text += "{\"prompt\": \"q" + std::to_string(i) + "\", \"answer\": \"" + std::to_string(i) +
            "\"}\n";
  for (uint64_t seed : {5u, 6u}) {
    INFO("seed " << seed);
    auto a = std::move(JsonlPromptSource::parse("d.jsonl", text)).value();
    auto b = std::move(JsonlPromptSource::parse("d.jsonl", text)).value();
    Rng ra(seed), rb(seed);
    std::vector<std::string> order_a, order_b;
    for (int epoch = 0; epoch < 3; ++epoch) {
      std::multiset<std::string> seen;
      for (int i = 0; i < 7; ++i) {
        SampledPrompt p = a->next(ra, 0);
        seen.insert(p.text);
        order_a.push_back(p.text);
        order_b.push_back(b->next(rb, 0).text);
      }
      CHECK(seen.size() == 7);
      CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 7);
    }
    CHECK(a->epoch() == 2);
    CHECK(order_a == order_b);
    // Epochs are reshuffled (with 7! orders, three equal epochs would be a broken shuffle).
    CHECK(!(std::equal(order_a.begin(), order_a.begin() + 7, order_a.begin() + 7) &&
            std::equal(order_a.begin(), order_a.begin() + 7, order_a.begin() + 14)));
  }
}

TEST_CASE("sampler: weight schedules and the curriculum mix") {
  WeightSchedule w{{{0, 1.0}, {100, 0.0}, {200, 4.0}}};
  CHECK(w.validate().is_ok());
  CHECK(w.at(-5) == 1.0);
  CHECK(w.at(0) == 1.0);
  CHECK(w.at(50) == doctest::Approx(0.5));
  CHECK(w.at(100) == 0.0);
  CHECK(w.at(150) == doctest::Approx(2.0));
  CHECK(w.at(1000) == 4.0);
  CHECK(WeightSchedule::constant(2).at(77) == 2.0);
  CHECK(WeightSchedule::ramp_in(10, 20, 1).at(5) == 0.0);
  CHECK(WeightSchedule::ramp_in(10, 20, 1).at(15) == doctest::Approx(0.5));
  CHECK_FALSE(WeightSchedule{}.validate().is_ok());
  CHECK_FALSE((WeightSchedule{{{0, 1.0}, {0, 2.0}}}).validate().is_ok());
  CHECK_FALSE((WeightSchedule{{{0, -1.0}}}).validate().is_ok());
  CHECK_FALSE((WeightSchedule{{{0, std::nan("")}}}).validate().is_ok());

  Curriculum empty;
  Rng rng(1);
  CHECK_FALSE(empty.next(rng, 0).is_ok());

  // Rule-verified "add" first; "sort" mixed in from step 100 to a 3:1 majority at step 200.
  Curriculum c;
  REQUIRE(c.add(std::move(BuiltinPromptSource::create("add", DifficultySchedule::fixed(1)))
                    .value(),
                WeightSchedule::constant(1))
              .is_ok());
  REQUIRE(c.add(std::move(BuiltinPromptSource::create("sort", DifficultySchedule::fixed(1)))
                    .value(),
                WeightSchedule::ramp_in(100, 200, 3))
              .is_ok());
  CHECK_FALSE(c.add(std::move(BuiltinPromptSource::create("sort", DifficultySchedule::fixed(1)))
                        .value(),
                    WeightSchedule{})
                  .is_ok());
  CHECK(c.size() == 2);
  CHECK(c.weights_at(0) == std::vector<double>{1, 0});
  CHECK(c.weights_at(300) == std::vector<double>{1, 3});
  for (uint64_t seed : {11u, 12u}) {
    INFO("seed " << seed);
    Rng r(seed);
    std::map<std::string, int> early, late;
    for (int i = 0; i < 4000; ++i) {
      Result<SampledPrompt> p = c.next(r, 50);
      REQUIRE(p.is_ok());
      ++early[p->task];
      p = c.next(r, 300);
      REQUIRE(p.is_ok());
      ++late[p->task];
    }
    CHECK(early["sort"] == 0);
    CHECK(early["add"] == 4000);
    CHECK(late["sort"] / 4000.0 == doctest::Approx(0.75).epsilon(0.05));
  }
  Curriculum zero;
  REQUIRE(zero.add(std::move(BuiltinPromptSource::create("add", DifficultySchedule::fixed(1)))
                       .value(),
                   WeightSchedule::ramp_in(10, 20, 1))
              .is_ok());
  Result<SampledPrompt> p = zero.next(rng, 0);
  CHECK_FALSE(p.is_ok());
  CHECK(contains(p.status().message(), "every source has weight 0 at step 0"));
}

// ---------------------------------------------------------------------------------------------
// Shaping

TEST_CASE("sampler: GRPO advantages with the population std") {
  const std::vector<double> r = {1, 0, 0, 1};
  GroupStats s;
  std::vector<double> a = grpo_advantages(r, AdvantageOptions{}, &s);
  CHECK(s.mean == 0.5);
  CHECK(s.std == 0.5);  // population: sqrt(Σ 0.25 / 4); the sample std would be 0.577
  REQUIRE(a.size() == 4);
  CHECK(a[0] == doctest::Approx(0.5 / (0.5 + 1e-6)).epsilon(1e-12));
  CHECK(a[1] == doctest::Approx(-0.5 / (0.5 + 1e-6)).epsilon(1e-12));
  AdvantageOptions no_std;
  no_std.divide_by_std = false;
  a = grpo_advantages({3, 1, 2}, no_std, &s);
  CHECK(s.mean == 2);
  CHECK(s.std == doctest::Approx(std::sqrt(2.0 / 3.0)));
  CHECK(a == std::vector<double>{1, -1, 0});
  // Advantages sum to zero; a zero-variance group has std exactly 0 and advantages exactly 0.
  a = grpo_advantages({0.7, 0.7, 0.7}, AdvantageOptions{}, &s);
  CHECK(s.std == 0);
  for (double x : a) CHECK(x == 0);
  Rng rng(3);
  for (int t = 0; t < 50; ++t) {
    std::vector<double> rr(1 + rng.below(16));
    for (double& x : rr) x = rng.normal();
    double sum = 0;
    for (double x : grpo_advantages(rr, AdvantageOptions{})) sum += x;
    CHECK(std::fabs(sum) < 1e-9);
  }
}

TEST_CASE("sampler: zero-variance test") {
  CHECK(zero_variance({1, 1, 1}));
  CHECK(zero_variance({0, 0}));
  CHECK(zero_variance({0.25}));
  CHECK_FALSE(zero_variance({1, 1, 0}));
  CHECK_FALSE(zero_variance({1, 1, 1 - 1e-12}));
}

TEST_CASE("sampler: soft overlong punishment") {
  // L_max = 100, L_cache = 20: free up to 80, linear to −1 at 100, −1 beyond.
  CHECK(overlong_penalty(0, 100, 20) == 0);
  CHECK(overlong_penalty(80, 100, 20) == 0);
  CHECK(overlong_penalty(81, 100, 20) == doctest::Approx(-0.05));
  CHECK(overlong_penalty(90, 100, 20) == doctest::Approx(-0.5));
  CHECK(overlong_penalty(100, 100, 20) == doctest::Approx(-1));
  CHECK(overlong_penalty(101, 100, 20) == -1);
  CHECK(overlong_penalty(100000, 100, 20) == -1);
  CHECK(overlong_penalty(100, 100, 0) == 0);
  CHECK(overlong_penalty(101, 100, 0) == -1);
  // Monotone non-increasing in length.
  double prev = 1;
  for (int64_t n = 0; n <= 130; ++n) {
    const double p = overlong_penalty(n, 100, 20);
    CHECK(p <= prev);
    CHECK(p >= -1);
    prev = p;
  }
  OverlongOptions o;
  CHECK(overlong_penalty(o, 1000, 10) == 0);  // disabled
  o.enabled = true;
  o.l_cache = 4;
  CHECK(overlong_penalty(o, 8, 10) == doctest::Approx(-0.5));  // L_max = the group's max_new
  o.l_max = 20;
  CHECK(overlong_penalty(o, 8, 10) == 0);
  CHECK(overlong_penalty(o, 18, 10) == doctest::Approx(-0.5));
  o.l_cache = 30;
  CHECK_FALSE(o.validate().is_ok());
}

TEST_CASE("sampler: nearest-rank percentiles") {
  CHECK(nearest_rank_percentile({}, 0.99) == 0);
  CHECK(nearest_rank_percentile({5}, 0.99) == 5);
  std::vector<int64_t> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  CHECK(nearest_rank_percentile(v, 0.99) == 99);
  CHECK(nearest_rank_percentile(v, 0.5) == 50);
  CHECK(nearest_rank_percentile(v, 1.0) == 100);
  v.push_back(101);
  CHECK(nearest_rank_percentile(v, 0.99) == 100);  // ceil(0.99·101) = 100
}

TEST_CASE("sampler: staged length windows advance on the p99 of recent groups") {
  CHECK(LengthWindowOptions::ramp(40, 56, 8) == std::vector<int64_t>{40, 48, 56});
  CHECK(LengthWindowOptions::ramp(40, 60, 8) == std::vector<int64_t>{40, 48, 56, 60});
  LengthWindowOptions o;
  o.windows = LengthWindowOptions::ramp(40, 56, 8);
  o.threshold = 0.9;
  o.history_groups = 4;
  o.min_groups = 2;
  Result<LengthWindows> w = LengthWindows::create(o);
  REQUIRE(w.is_ok());
  CHECK(w->max_new() == 40);
  // Short responses: never advances.
  for (int i = 0; i < 10; ++i) CHECK_FALSE(w->observe(40, {10, 20, 30}));
  // Groups of another window are ignored.
  CHECK_FALSE(w->observe(48, {48, 48}));
  // p99 ≥ 36 = 0.9·40 needs two groups in the history (min_groups): the first long one is not
  // enough on its own, the history holds older short groups though, so p99 of 4 groups decides.
  LengthWindows fresh = std::move(LengthWindows::create(o)).value();
  CHECK_FALSE(fresh.observe(40, {36, 10}));
  CHECK(fresh.recent_p99() == 36);
  CHECK(fresh.observe(40, {12, 40}));  // two groups, p99 = 40 ≥ 36
  CHECK(fresh.max_new() == 48);
  CHECK(fresh.stage() == 1);
  CHECK(fresh.recent_p99() == 0);  // history cleared
  CHECK_FALSE(fresh.observe(40, {40, 40}));  // old-window stragglers do not count
  CHECK_FALSE(fresh.observe(48, {43}));      // 43 < 43.2
  CHECK(fresh.observe(48, {44}));
  CHECK(fresh.max_new() == 56);
  CHECK(fresh.final_stage());
  CHECK_FALSE(fresh.observe(56, {56, 56}));
  CHECK_FALSE(fresh.observe(56, {56, 56}));
  CHECK(fresh.max_new() == 56);
  // A mostly-short history holds the window even with one long response among many.
  LengthWindows held = std::move(LengthWindows::create(o)).value();
  std::vector<int64_t> many(199, 10);
  many.push_back(40);  // 1 of 200: p99 = the 198th smallest = 10
  CHECK_FALSE(held.observe(40, many));
  CHECK_FALSE(held.observe(40, many));
  CHECK(held.max_new() == 40);

  LengthWindowOptions bad = o;
  bad.windows = {40, 40};
  CHECK_FALSE(LengthWindows::create(bad).is_ok());
  bad = o;
  bad.windows = {};
  CHECK_FALSE(LengthWindows::create(bad).is_ok());
  bad = o;
  bad.threshold = 0;
  CHECK_FALSE(LengthWindows::create(bad).is_ok());
  bad = o;
  bad.min_groups = 5;
  CHECK_FALSE(LengthWindows::create(bad).is_ok());
  CHECK(LengthWindows::fixed(64).max_new() == 64);
  CHECK(LengthWindows::fixed(64).final_stage());
}

TEST_CASE("sampler: repetition detector stops after N consecutive tokens above p") {
  RepetitionDetector d(3, 0.99);
  CHECK(d.enabled());
  CHECK_FALSE(d.push(0.995));
  CHECK_FALSE(d.push(0.999));
  CHECK_FALSE(d.push(0.5));  // resets the run
  CHECK(d.run() == 0);
  CHECK_FALSE(d.push(0.995));
  CHECK_FALSE(d.push(0.99));  // not strictly above p: resets
  CHECK_FALSE(d.push(0.991));
  CHECK_FALSE(d.push(0.992));
  CHECK(d.push(0.993));
  CHECK(d.run() == 3);
  d.reset();
  CHECK(d.run() == 0);
  CHECK_FALSE(d.push_logprob(std::log(0.999)));
  CHECK_FALSE(d.push_logprob(-1e-4));  // p = 0.9999
  CHECK(d.push_logprob(0.0));
  RepetitionDetector off(0, 0.99);
  CHECK_FALSE(off.enabled());
  for (int i = 0; i < 100; ++i) CHECK_FALSE(off.push(1.0));
  // N = 1 stops on the first confident token.
  RepetitionDetector one(1, 0.5);
  CHECK_FALSE(one.push(0.4));
  CHECK(one.push(0.6));
}

TEST_CASE("sampler: staleness admission rule") {
  // Synchronous: batch b only once the learner consumed b − 1 (learner_version = b).
  CHECK(admit_batch(0, 0, 0));
  CHECK_FALSE(admit_batch(1, 0, 0));
  CHECK(admit_batch(1, 1, 0));
  // max_staleness = 2: up to two batches ahead of the learner.
  CHECK(admit_batch(2, 0, 2));
  CHECK_FALSE(admit_batch(3, 0, 2));
  CHECK(admit_batch(7, 5, 2));
  CHECK(admitted_group_quota(0, 0, 4) == 4);
  CHECK(admitted_group_quota(3, 2, 4) == 24);
}

// ---------------------------------------------------------------------------------------------
// DynamicSampler

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

JudgedRollout judged(uint32_t index, double reward, int64_t tokens = 10) {
  JudgedRollout r;
  r.index = index;
  r.rollout_id = 1000 + index;
  r.reward = reward;
  r.format_reward = 1;
  r.tokens = tokens;
  r.reason = reward > 0 ? "correct" : "wrong";
  return r;
}

// Judges every rollout of g with rewards[i]; returns the last update.
GroupUpdate judge_all(DynamicSampler& s, const IssuedGroup& g, const std::vector<double>& rewards,
                      int64_t tokens = 10) {
  GroupUpdate last;
  for (uint32_t i = 0; i < g.rollouts.size(); ++i) {
    Result<GroupUpdate> u = s.on_judged(g.group_id, judged(i, rewards[i], tokens));
    REQUIRE(u.is_ok());
    if (i + 1 < g.rollouts.size()) CHECK(u->fate == GroupFate::kPending);
    last = std::move(u).value();
  }
  return last;
}

TEST_CASE("sampler: options are validated") {
  SamplerOptions o;
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

TEST_CASE("sampler: staleness admission paces issue by learner version") {
  for (uint64_t staleness : {0u, 1u, 3u}) {
    INFO("max_staleness " << staleness);
    SamplerOptions o;
    o.group_size = 2;
    o.batch_groups = 2;
    o.max_staleness = staleness;
    DynamicSampler s = make_sampler(o);
    CHECK(s.issuable() == (staleness + 1) * 2);
    std::vector<IssuedGroup> gs = s.issue().value();
    CHECK(gs.size() == (staleness + 1) * 2);
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

TEST_CASE("sampler: length windows advance from completed groups") {
  LengthWindowOptions w;
  w.windows = {16, 24, 32};
  w.threshold = 0.75;
  w.history_groups = 2;
  w.min_groups = 2;
  SamplerOptions o;
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
      o.group_size = 1 + uint32_t(seed % 4) + 1;
      o.batch_groups = 3;
      o.max_staleness = staleness;
      o.seed = seed;
      DynamicSampler s = make_sampler(o);
      Rng env(seed * 7919);
      struct Pending {
        IssuedGroup g;
        uint32_t next = 0;
      };
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
