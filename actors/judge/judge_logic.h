// The rule-verifier judge's pure logic (no CAF, no FlatBuffers): RuleJudge scores a rollout with
// the verifier of its task family, and RetryPolicy decides what happens when a judge call fails.
//
// RuleJudge verifier selection, by task name:
//   a built-in family (model/tasks.h task_names(): "add", "sort") → that Task's verify();
//   "math", or any other name                                     → verify_math (math_verifier.h).
// Every task needs a non-empty reference answer (an empty one is an error Status, not a verdict:
// the caller dead-letters the rollout, retrying cannot help).
// Repetition (docs/rl.md §Early truncation): a response the generator truncated by repetition is
// judged as the truncated text, then options.repetition_penalty is added to its reward (use a
// negative value to punish; 0 = judged as is) and the reason gains
// " (truncated by repetition: penalty P)". format_reward is never changed.
//
// RetryPolicy: a judge call that fails (the judge threw, answered ok = false, or timed out) is
// retried up to max_retries times; the next failure dead-letters the rollout with a reason naming
// the attempt count and the last failure. State per rollout id: the current attempt number
// (0 = first try, as JudgeRequest.attempt) and its deadline. Replies to an older attempt, or to a
// rollout no longer tracked (done or dead-lettered), are ignored, so a late duplicate can neither
// double-count a failure nor resurrect a dead letter. Time is passed in (milliseconds on any
// monotonic clock): the policy reads no clock.
//
// Thread safety: RuleJudge is immutable after construction (score() is const and may be called
// from several threads); RetryPolicy is not thread safe (one owner, the actor).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/judge/math_verifier.h"
#include "base/status.h"
#include "model/tasks.h"

namespace m1 {

struct RuleJudgeOptions {
  // Added to the reward of a response truncated by repetition. Finite, in [-99, 99] (the Verdict
  // message's reward range is [-100, 100] and a verifier reward is in [0, 1]).
  double repetition_penalty = 0;
  Status validate() const;
};

class RuleJudge {
 public:
  // Error when options.validate() fails.
  static Result<RuleJudge> create(RuleJudgeOptions options = {});

  // The verifier name score() would use for `task`: a built-in family name or "math".
  std::string verifier_for(const std::string& task) const;

  // Scores `response` (decoded completion, no bos/eos) for `prompt` against `reference`.
  // `prompt` is part of the contract (verifiers are functions of it) though the current ones only
  // read the response and the reference. Error Status: empty task name, or blank reference.
  Result<Verdict> score(const std::string& task, const std::string& prompt,
                        const std::string& response, const std::string& reference,
                        bool truncated_by_repetition = false) const;

  const RuleJudgeOptions& options() const { return options_; }

 private:
  explicit RuleJudge(RuleJudgeOptions options);
  RuleJudgeOptions options_;
  std::map<std::string, std::shared_ptr<const Task>> builtin_;  // by family name
};

enum class RetryAction {
  kRetry,       // resend the request with decision.attempt
  kDeadLetter,  // give up: dead-letter the rollout with decision.reason
  kIgnore,      // stale: an older attempt or an untracked rollout; do nothing
};

struct RetryDecision {
  RetryAction action = RetryAction::kIgnore;
  uint32_t attempt = 0;  // kRetry: the attempt number to send; else the last attempt made
  std::string reason;    // kDeadLetter: why; kIgnore: why it was ignored
};

class RetryPolicy {
 public:
  // Largest max_retries: JudgeRequest.attempt must stay < 100.
  static constexpr uint32_t kMaxRetries = 99;
  // REQUIRES: max_retries ≤ kMaxRetries, timeout_ms > 0 (aborts otherwise: configs are
  // validated before this is built).
  RetryPolicy(uint32_t max_retries, int64_t timeout_ms);

  // The first request for rollout_id is sent at now_ms; returns attempt 0.
  // REQUIRES: rollout_id is not tracked.
  uint32_t start(uint64_t rollout_id, int64_t now_ms);
  // Attempt `attempt` failed with `reason`. Retry (and re-arm the deadline from now_ms) while
  // fewer than max_retries retries were made and the failure is retryable; otherwise dead-letter
  // with "judge failed after K attempt(s): REASON" (K = attempts made) or, when not retryable,
  // "judge failed (not retryable): REASON". Ignored when the rollout is untracked or `attempt` is
  // not its current attempt.
  RetryDecision failed(uint64_t rollout_id, uint32_t attempt, std::string_view reason,
                       int64_t now_ms, bool retryable = true);
  // Every tracked rollout whose deadline (send time + timeout_ms) is ≤ now_ms fails with reason
  // "timeout after T ms"; returns the decisions in ascending rollout id.
  std::vector<std::pair<uint64_t, RetryDecision>> expire(int64_t now_ms);
  // A successful verdict arrived (any attempt): true when the rollout was tracked (the caller uses
  // the verdict and the rollout is forgotten), false when it was not (a late duplicate: ignore).
  bool succeeded(uint64_t rollout_id);

  bool tracking(uint64_t rollout_id) const { return pending_.count(rollout_id) != 0; }
  // REQUIRES: tracking(rollout_id).
  uint32_t attempt(uint64_t rollout_id) const;
  size_t pending() const { return pending_.size(); }
  uint64_t retries() const { return retries_; }            // kRetry decisions so far
  uint64_t dead_letters() const { return dead_letters_; }  // kDeadLetter decisions so far
  uint32_t max_retries() const { return max_retries_; }
  int64_t timeout_ms() const { return timeout_ms_; }

 private:
  struct Pending {
    uint32_t attempt = 0;
    int64_t deadline_ms = 0;
  };
  uint32_t max_retries_;
  int64_t timeout_ms_;
  std::map<uint64_t, Pending> pending_;  // ordered: expire() is deterministic
  uint64_t retries_ = 0, dead_letters_ = 0;
};

}  // namespace m1
