// Health metrics the sampler reports (docs/rl.md §Health metrics): counts of groups accepted and
// dropped (dynamic sampling, dead letters) with the compute they wasted, reward mean/std by
// task, and response length mean/p99 over a recent window. Plain values; one owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace m1 {

struct SamplerCounters {
  uint64_t groups_issued = 0;
  uint64_t groups_accepted = 0;               // complete, non-degenerate: sent on with advantages
  uint64_t groups_dropped_zero_variance = 0;  // dynamic sampling (all rewards equal)
  uint64_t groups_dropped_dead_letter = 0;    // a rollout's judging was dead-lettered
  uint64_t rollouts_judged = 0;               // verdicts recorded (including later-dropped groups)
  uint64_t rollouts_ignored = 0;              // duplicate, late or unknown verdicts / dead letters
  uint64_t tokens_generated = 0;              // response tokens of every recorded rollout
  uint64_t tokens_wasted_zero_variance = 0;   // response tokens of zero-variance groups
  uint64_t tokens_wasted_dead_letter = 0;     // response tokens of dead-lettered groups
  uint64_t windows_advanced = 0;              // length-window stage changes

  uint64_t groups_dropped() const {
    return groups_dropped_zero_variance + groups_dropped_dead_letter;
  }
  uint64_t tokens_wasted() const { return tokens_wasted_zero_variance + tokens_wasted_dead_letter; }
  // dropped / (accepted + dropped), every drop reason; 0 before any group finished.
  double fraction_dropped() const;
  // docs/rl.md's "fraction of groups dropped by dynamic sampling": zero-variance / (accepted +
  // zero-variance); 0 before any group finished.
  double fraction_dropped_zero_variance() const;
  // tokens_wasted / tokens_generated; 0 before any token.
  double fraction_tokens_wasted() const;
};

// Count, mean and population std of a stream (Welford; numerically stable).
class RunningStats {
 public:
  void add(double x);
  uint64_t count() const { return n_; }
  double mean() const { return mean_; }
  double std() const;  // population (divisor count); 0 when count < 2

 private:
  uint64_t n_ = 0;
  double mean_ = 0, m2_ = 0;
};

// Reward mean/std per task family (ordered by task name).
class TaskRewardStats {
 public:
  void add(const std::string& task, double reward) { by_task_[task].add(reward); }
  const std::map<std::string, RunningStats>& by_task() const { return by_task_; }
  void reset() { by_task_.clear(); }  // e.g. after each report, for per-interval statistics

 private:
  std::map<std::string, RunningStats> by_task_;
};

// Response lengths over the last `capacity` responses: mean and nearest-rank p99.
class RecentLengths {
 public:
  explicit RecentLengths(size_t capacity = 4096) : capacity_(capacity == 0 ? 1 : capacity) {}
  void add(int64_t tokens);
  size_t size() const { return lengths_.size(); }
  double mean() const;   // 0 when empty
  int64_t p99() const;   // 0 when empty

 private:
  size_t capacity_;
  std::deque<int64_t> lengths_;  // newest last
};

}  // namespace m1
