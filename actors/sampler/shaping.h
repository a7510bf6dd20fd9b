// The sampler's reward and length math (docs/rl.md): GRPO advantages, the zero-variance test of dynamic
// sampling, DAPO soft overlong punishment, staged length windows, the repetition detector the
// generator calls per token, and the staleness admission rule. Pure functions and small value
// classes; no clocks, no IO.
// Thread safety: none needed for the functions; the classes have one owner each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "base/status.h"

namespace m1 {

// ---- GRPO advantages (docs/rl.md, M1 Eq. 2) ----
struct AdvantageOptions {
  bool divide_by_std = true;  // false: A_i = R_i − mean (the "no std division" option)
  double eps = 1e-6;
};

struct GroupStats {
  double mean = 0;
  double std = 0;  // population standard deviation: sqrt(Σ (R_i − mean)² / G), divisor G
};

// REQUIRES: rewards non-empty and finite. An all-equal group gets std exactly 0 (the mean is
// computed shifted by the first reward).
GroupStats group_stats(const std::vector<double>& rewards);
// A_i = (R_i − mean) / (std + eps), or R_i − mean without std division; stats as group_stats.
std::vector<double> grpo_advantages(const std::vector<double>& rewards,
                                    const AdvantageOptions& options, GroupStats* stats = nullptr);
// Dynamic sampling's test (DAPO): every reward equal (exact comparison, so std = 0). Such a group
// carries no signal and is dropped. A group of one is always degenerate.
bool zero_variance(const std::vector<double>& rewards);

// ---- Soft overlong punishment (DAPO), added to R ----
// With L = l_max, C = l_cache and n = response tokens:
//   0 if n ≤ L − C;  (L − C − n) / C if L − C < n ≤ L;  −1 if n > L.
// Continuous: −1 at n = L. C = 0: 0 up to L, −1 beyond. REQUIRES 0 ≤ C ≤ L.
double overlong_penalty(int64_t n, int64_t l_max, int64_t l_cache);

struct OverlongOptions {
  bool enabled = false;
  int64_t l_max = 0;    // tokens; 0 = the group's max_new (its thinking budget)
  int64_t l_cache = 0;  // tokens of the punishment interval; clamped to the effective l_max
  Status validate() const;
};
// The penalty for a response of n tokens in a group whose budget was max_new (0 when disabled).
double overlong_penalty(const OverlongOptions& options, int64_t n, int64_t max_new);

// ---- Percentiles ----
// Nearest-rank percentile: the ceil(q·n)-th smallest value (1-based), q in (0, 1]; 0 when empty.
int64_t nearest_rank_percentile(std::vector<int64_t> values, double q);

// ---- Staged length windows (docs/rl.md: thinking budget 40K→48K→…→80K) ----
// max_new starts at windows[0] and advances to the next window when, over the response lengths of
// the last `history_groups` groups generated under the current window (at least `min_groups` of
// them), the nearest-rank p99 reaches threshold × current window. Groups generated under another
// window are ignored; the history is cleared on every advance. The last window is final.
struct LengthWindowOptions {
  std::vector<int64_t> windows;  // tokens, strictly increasing, each ≥ 1
  double threshold = 0.9;        // in (0, 1]
  size_t history_groups = 32;    // ≥ 1
  size_t min_groups = 8;         // in [1, history_groups]
  Status validate() const;
  // from, from + step, …, up to `to` (to itself always last). REQUIRES 1 ≤ from ≤ to, step ≥ 1.
  static std::vector<int64_t> ramp(int64_t from, int64_t to, int64_t step);
};

class LengthWindows {
 public:
  // Error when options.validate() fails.
  static Result<LengthWindows> create(LengthWindowOptions options);
  // One fixed window (never advances).
  static LengthWindows fixed(int64_t max_new);

  int64_t max_new() const { return options_.windows[stage_]; }
  size_t stage() const { return stage_; }
  bool final_stage() const { return stage_ + 1 == options_.windows.size(); }
  // A group generated with budget `max_new` finished with these response lengths; returns true
  // when the window advanced.
  bool observe(int64_t max_new, const std::vector<int64_t>& lengths);
  // p99 (nearest rank) of the lengths in the history; 0 when empty.
  int64_t recent_p99() const;

 private:
  explicit LengthWindows(LengthWindowOptions options) : options_(std::move(options)) {}
  LengthWindowOptions options_;
  size_t stage_ = 0;
  std::deque<std::vector<int64_t>> history_;  // newest last
};

// ---- Early truncation by repetition (docs/rl.md, M1 §3.2) ----
// Feed it the sampling probability of every sampled token of one response, in order; it says stop
// when the last n tokens each had probability > p (strictly). n = 0 disables it. Probabilities are
// those of the distribution actually sampled from (after temperature / top-p / top-k).
class RepetitionDetector {
 public:
  // REQUIRES: n ≥ 0, p in [0, 1).
  RepetitionDetector(int n, double p);
  // Returns true when the response must stop now (finish reason "repetition"): the run of
  // consecutive tokens with probability > p has reached n. A token with probability ≤ p resets
  // the run. Call reset() before a new response.
  bool push(double prob);
  bool push_logprob(double logprob);  // push(exp(logprob))
  void reset() { run_ = 0; }
  int run() const { return run_; }  // current count of consecutive tokens with probability > p
  bool enabled() const { return n_ > 0; }

 private:
  int n_;
  double p_;
  int run_ = 0;
};

// ---- Staleness admission (docs/rl.md §Staleness contract) ----
// Training batches are numbered 0, 1, … in the order the sampler fills them; learner step b
// consumes batch b and publishes weights version b + 1, so learner_version = the number of
// batches the learner has consumed. Rule: work for batch b may be issued iff
//     b ≤ learner_version + max_staleness.
// Work for batch b is then generated by weights of version ≥ b − max_staleness (the version at
// issue time) and consumed at version b: staleness = learner_version − oldest token version
// ≤ max_staleness. max_staleness = 0 is synchronous RL: batch b's prompts are issued only once
// the learner has consumed batch b − 1. Equivalently, in versions: work may be issued at
// learner version v for a batch whose consumption version is ≤ v + max_staleness.
bool admit_batch(uint64_t batch, uint64_t learner_version, uint64_t max_staleness);
// The number of accepted groups the sampler may have produced or have in flight in total:
// (learner_version + max_staleness + 1) · batch_groups (batches 0 … learner_version + max_staleness).
uint64_t admitted_group_quota(uint64_t learner_version, uint64_t max_staleness,
                              uint64_t batch_groups);

}  // namespace m1
