// RuleJudge (verifier routing + repetition penalty) and RetryPolicy (per-rollout retry state
// machine); contracts in judge_logic.h.
#include "actors/judge/judge_logic.h"

#include <cmath>

#include <fmt/format.h>

#include "base/check.h"

namespace m1 {
namespace {

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\n\r\v\f") == std::string::npos;
}

}  // namespace

Status RuleJudgeOptions::validate() const {
  if (!std::isfinite(repetition_penalty) || std::fabs(repetition_penalty) > 99)
    return Status::errorf("judge: repetition_penalty must be finite and in [-99, 99], got {}",
                          repetition_penalty);
  return Status::ok();
}

Result<RuleJudge> RuleJudge::create(RuleJudgeOptions options) {
  M1_RETURN_IF_ERROR(options.validate());
  return RuleJudge(options);
}

RuleJudge::RuleJudge(RuleJudgeOptions options) : options_(options) {
  for (const std::string& name : task_names()) builtin_[name] = make_task(name);
}

std::string RuleJudge::verifier_for(const std::string& task) const {
  return builtin_.count(task) ? task : std::string("math");
}

Result<Verdict> RuleJudge::score(const std::string& task, const std::string& prompt,
                                 const std::string& response, const std::string& reference,
                                 bool truncated_by_repetition) const {
  if (task.empty()) return Status::error("judge: empty task name");
  if (blank(reference))
    return Status::errorf("judge: task '{}' has no reference answer (rule verifiers need one)",
                          task);
  const auto it = builtin_.find(task);
  Verdict v = it != builtin_.end() ? it->second->verify(response, reference)
                                   : verify_math(response, reference);
  if (truncated_by_repetition) {
    v.reward += options_.repetition_penalty;
    v.reason += fmt::format(" (truncated by repetition: penalty {})", options_.repetition_penalty);
  }
  return v;
}

RetryPolicy::RetryPolicy(uint32_t max_retries, int64_t timeout_ms)
    : max_retries_(max_retries), timeout_ms_(timeout_ms) {
  M1_CHECK_MSG(max_retries <= kMaxRetries, "RetryPolicy: max_retries > 99");
  M1_CHECK_MSG(timeout_ms > 0, "RetryPolicy: timeout_ms must be positive");
}

uint32_t RetryPolicy::start(uint64_t rollout_id, int64_t now_ms) {
  M1_CHECK_MSG(!tracking(rollout_id), "RetryPolicy::start: rollout already tracked");
  pending_[rollout_id] = Pending{0, now_ms + timeout_ms_};
  return 0;
}

RetryDecision RetryPolicy::failed(uint64_t rollout_id, uint32_t attempt, std::string_view reason,
                                  int64_t now_ms, bool retryable) {
  RetryDecision d;
  const auto it = pending_.find(rollout_id);
  if (it == pending_.end()) {
    d.reason = fmt::format("rollout {} is not awaiting a verdict", rollout_id);
    return d;
  }
  Pending& p = it->second;
  if (attempt != p.attempt) {
    d.attempt = p.attempt;
    d.reason = fmt::format("stale failure of attempt {} (current attempt {})", attempt, p.attempt);
    return d;
  }
  if (retryable && p.attempt < max_retries_) {
    ++p.attempt;
    p.deadline_ms = now_ms + timeout_ms_;
    ++retries_;
    d.action = RetryAction::kRetry;
    d.attempt = p.attempt;
    return d;
  }
  d.action = RetryAction::kDeadLetter;
  d.attempt = p.attempt;
  d.reason = retryable ? fmt::format("judge failed after {} attempt(s): {}", p.attempt + 1, reason)
                       : fmt::format("judge failed (not retryable): {}", reason);
  pending_.erase(it);
  ++dead_letters_;
  return d;
}

std::vector<std::pair<uint64_t, RetryDecision>> RetryPolicy::expire(int64_t now_ms) {
  std::vector<std::pair<uint64_t, uint32_t>> due;
  for (const auto& [id, p] : pending_)
    if (p.deadline_ms <= now_ms) due.emplace_back(id, p.attempt);
  std::vector<std::pair<uint64_t, RetryDecision>> out;
  out.reserve(due.size());
  const std::string reason = fmt::format("timeout after {} ms", timeout_ms_);
  for (const auto& [id, attempt] : due) out.emplace_back(id, failed(id, attempt, reason, now_ms));
  return out;
}

bool RetryPolicy::succeeded(uint64_t rollout_id) { return pending_.erase(rollout_id) != 0; }

uint32_t RetryPolicy::attempt(uint64_t rollout_id) const {
  const auto it = pending_.find(rollout_id);
  M1_CHECK_MSG(it != pending_.end(), "RetryPolicy::attempt: rollout not tracked");
  return it->second.attempt;
}

}  // namespace m1
