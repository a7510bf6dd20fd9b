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
  CHECK(contains(bad.status().message(), "unknown built-in task family 'nope' (known: add, sort, add_steps)"));
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

}  // namespace
}  // namespace m1
