#include "actors/judge/judge_logic.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>

#include "base/rng.h"

namespace m1 {
namespace {

RuleJudge make_judge(double penalty = 0) {
  RuleJudgeOptions o;
  o.repetition_penalty = penalty;
  Result<RuleJudge> j = RuleJudge::create(o);
  REQUIRE(j.is_ok());
  return std::move(j).value();
}

TEST_CASE("judge: built-in families use their own verifiers") {
  const RuleJudge judge = make_judge();
  CHECK(judge.verifier_for("add") == "add");
  CHECK(judge.verifier_for("sort") == "sort");
  CHECK(judge.verifier_for("math") == "math");
  CHECK(judge.verifier_for("gsm8k") == "math");
  for (const std::string& name : task_names()) {
    auto task = make_task(name);
    for (uint64_t seed = 0; seed < 20; ++seed) {
      Rng rng(seed);
      const TaskExample ex = task->sample(rng, 1 + int(seed % uint64_t(task->max_difficulty())));
      INFO(name << " seed " << seed << " prompt " << ex.prompt);
      Result<Verdict> v = judge.score(name, ex.prompt, ex.demonstration, ex.answer);
      REQUIRE(v.is_ok());
      CHECK(v->reward == 1);
      CHECK(v->format_reward == 1);
      CHECK(v->reason == "correct");
      // Same verdict as the family's verifier, also for a wrong response.
      const std::string wrong = "<answer>x</answer>";
      Result<Verdict> w = judge.score(name, ex.prompt, wrong, ex.answer);
      REQUIRE(w.is_ok());
      const Verdict direct = task->verify(wrong, ex.answer);
      CHECK(w->reward == direct.reward);
      CHECK(w->reason == direct.reason);
    }
  }
  // "add" compares integers (its rule), not rationals: "6/2" is unparsable there.
  Result<Verdict> v = judge.score("add", "1+2=", "<answer>6/2</answer>", "3");
  REQUIRE(v.is_ok());
  CHECK(v->reward == 0);
  CHECK(v->reason == "unparsable answer '6/2'");
}

TEST_CASE("judge: math and unknown families with a reference use the math verifier") {
  const RuleJudge judge = make_judge();
  Result<Verdict> v = judge.score("math", "Half of one?", "<answer>\\frac{1}{2}</answer>", "0.5");
  REQUIRE(v.is_ok());
  CHECK(v->reward == 1);
  CHECK(v->format_reward == 1);
  v = judge.score("geometry", "Angles of a triangle sum to?", "It is \\boxed{180}.", "180");
  REQUIRE(v.is_ok());
  CHECK(v->reward == 1);
  CHECK(v->format_reward == 0);
  CHECK(v->extracted == "180");
  v = judge.score("trivia", "Capital of France?", "<answer>PARIS</answer>", "Paris");
  REQUIRE(v.is_ok());
  CHECK(v->reward == 1);
}

TEST_CASE("judge: missing reference or task name is an error, not a verdict") {
  const RuleJudge judge = make_judge();
  Result<Verdict> v = judge.score("math", "q", "<answer>1</answer>", "");
  CHECK_FALSE(v.is_ok());
  CHECK(v.status().message().find("task 'math' has no reference answer") != std::string::npos);
  v = judge.score("unknown_family", "q", "<answer>1</answer>", " \n");
  CHECK_FALSE(v.is_ok());
  CHECK(v.status().message().find("unknown_family") != std::string::npos);
  v = judge.score("", "q", "<answer>1</answer>", "1");
  CHECK_FALSE(v.is_ok());
}

TEST_CASE("judge: repetition truncation adds the configured penalty") {
  const RuleJudge judge = make_judge(-0.5);
  // Truncated but still holding a correct answer: 1 − 0.5.
  Result<Verdict> v = judge.score("add", "1+2=", "<answer>3</answer>", "3", true);
  REQUIRE(v.is_ok());
  CHECK(v->reward == doctest::Approx(0.5));
  CHECK(v->format_reward == 1);
  CHECK(v->reason == "correct (truncated by repetition: penalty -0.5)");
  // The usual case: the truncated text has no answer.
  v = judge.score("math", "q", "<think>loop loop loop", "7", true);
  REQUIRE(v.is_ok());
  CHECK(v->reward == doctest::Approx(-0.5));
  CHECK(v->format_reward == 0);
  // Not truncated: no penalty, no annotation.
  v = judge.score("add", "1+2=", "<answer>3</answer>", "3", false);
  REQUIRE(v.is_ok());
  CHECK(v->reward == 1);
  CHECK(v->reason == "correct");
  // Penalty 0: judged as is, still annotated.
  const RuleJudge plain = make_judge(0);
  v = plain.score("add", "1+2=", "<answer>4</answer>", "3", true);
  REQUIRE(v.is_ok());
  CHECK(v->reward == 0);
  CHECK(v->reason.find("truncated by repetition") != std::string::npos);
}

TEST_CASE("judge: options are validated") {
  RuleJudgeOptions o;
  o.repetition_penalty = std::numeric_limits<double>::quiet_NaN();
  CHECK_FALSE(RuleJudge::create(o).is_ok());
  o.repetition_penalty = -100;
  CHECK_FALSE(RuleJudge::create(o).is_ok());
  o.repetition_penalty = -99;
  CHECK(RuleJudge::create(o).is_ok());
}

TEST_CASE("retry: retries up to N times, then dead-letters with the reason") {
  RetryPolicy p(2, 1000);
  CHECK(p.start(7, 0) == 0);
  CHECK(p.tracking(7));
  RetryDecision d = p.failed(7, 0, "judge threw: boom", 10);
  CHECK(d.action == RetryAction::kRetry);
  CHECK(d.attempt == 1);
  d = p.failed(7, 1, "judge threw: boom", 20);
  CHECK(d.action == RetryAction::kRetry);
  CHECK(d.attempt == 2);
  CHECK(p.attempt(7) == 2);
  d = p.failed(7, 2, "judge threw: bang", 30);
  CHECK(d.action == RetryAction::kDeadLetter);
  CHECK(d.attempt == 2);
  CHECK(d.reason == "judge failed after 3 attempt(s): judge threw: bang");
  CHECK_FALSE(p.tracking(7));
  CHECK(p.retries() == 2);
  CHECK(p.dead_letters() == 1);
  // Anything later about rollout 7 is ignored.
  CHECK(p.failed(7, 2, "late", 40).action == RetryAction::kIgnore);
  CHECK_FALSE(p.succeeded(7));
  CHECK(p.dead_letters() == 1);
}

TEST_CASE("retry: zero retries dead-letters at the first failure; non-retryable at once") {
  RetryPolicy none(0, 50);
  none.start(1, 0);
  RetryDecision d = none.failed(1, 0, "timeout", 0);
  CHECK(d.action == RetryAction::kDeadLetter);
  CHECK(d.reason == "judge failed after 1 attempt(s): timeout");

  RetryPolicy p(5, 50);
  p.start(2, 0);
  d = p.failed(2, 0, "no reference answer", 0, /*retryable=*/false);
  CHECK(d.action == RetryAction::kDeadLetter);
  CHECK(d.reason == "judge failed (not retryable): no reference answer");
  CHECK(p.retries() == 0);
}

TEST_CASE("retry: stale failures and late successes") {
  RetryPolicy p(3, 100);
  p.start(9, 0);
  CHECK(p.failed(9, 0, "timeout", 100).action == RetryAction::kRetry);  // now attempt 1
  // Attempt 0's own failure arrives late: not a second failure.
  RetryDecision d = p.failed(9, 0, "judge threw", 110);
  CHECK(d.action == RetryAction::kIgnore);
  CHECK(d.reason == "stale failure of attempt 0 (current attempt 1)");
  CHECK(p.attempt(9) == 1);
  // A success from any attempt completes the rollout exactly once.
  CHECK(p.succeeded(9));
  CHECK_FALSE(p.succeeded(9));
  CHECK(p.pending() == 0);
  CHECK(p.failed(12345, 0, "x", 0).action == RetryAction::kIgnore);
}

TEST_CASE("retry: deadlines expire into timeouts, in rollout-id order") {
  RetryPolicy p(1, 100);
  p.start(30, 0);
  p.start(10, 50);
  p.start(20, 0);
  CHECK(p.expire(99).empty());
  auto out = p.expire(100);  // 20 and 30 are due (deadline 100), 10 is not (150)
  REQUIRE(out.size() == 2);
  CHECK(out[0].first == 20);
  CHECK(out[1].first == 30);
  CHECK(out[0].second.action == RetryAction::kRetry);
  CHECK(out[0].second.attempt == 1);
  out = p.expire(150);  // 10 due at 150; 20 and 30 re-armed to 200
  REQUIRE(out.size() == 1);
  CHECK(out[0].first == 10);
  out = p.expire(200);
  REQUIRE(out.size() == 2);
  CHECK(out[0].second.action == RetryAction::kDeadLetter);
  CHECK(out[0].second.reason == "judge failed after 2 attempt(s): timeout after 100 ms");
  CHECK(p.pending() == 1);  // rollout 10, attempt 1, deadline 250
  CHECK(p.tracking(10));
}

TEST_CASE("retry: random histories end every rollout exactly once within N retries") {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    INFO("seed " << seed);
    Rng rng(seed);
    const uint32_t max_retries = uint32_t(rng.below(4));
    RetryPolicy p(max_retries, 10);
    std::map<uint64_t, uint32_t> failures;  // per rollout: failures that counted
    std::set<uint64_t> done;
    uint64_t next_id = 1;
    int64_t now = 0;
    for (int step = 0; step < 2000; ++step) {
      now += int64_t(rng.below(4));
      const uint64_t r = rng.below(10);
      if (r < 3) {
        p.start(next_id++, now);
      } else if (r < 6 && p.pending() > 0) {
        const uint64_t id = 1 + rng.below(next_id - 1);
        if (!p.tracking(id)) continue;
        RetryDecision d = p.failed(id, p.attempt(id), "boom", now);
        ++failures[id];
        CHECK(d.action != RetryAction::kIgnore);
        if (d.action == RetryAction::kDeadLetter) CHECK(done.insert(id).second);
      } else if (r < 8) {
        const uint64_t id = next_id > 1 ? 1 + rng.below(next_id - 1) : 0;
        if (p.succeeded(id)) CHECK(done.insert(id).second);
      } else {
        for (const auto& [id, d] : p.expire(now)) {
          CHECK(d.action != RetryAction::kIgnore);
          ++failures[id];
          if (d.action == RetryAction::kDeadLetter) CHECK(done.insert(id).second);
        }
      }
    }
    for (const auto& [id, n] : failures) CHECK(n <= max_retries + 1);
    CHECK(done.size() + p.pending() == next_id - 1);
  }
}

}  // namespace
}  // namespace m1
