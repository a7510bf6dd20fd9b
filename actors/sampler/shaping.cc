// Reward/length shaping, the repetition detector and the staleness rule (contracts in shaping.h).
#include "actors/sampler/shaping.h"

#include <algorithm>
#include <cmath>

#include "base/check.h"

namespace m1 {

GroupStats group_stats(const std::vector<double>& rewards) {
  M1_CHECK(!rewards.empty());
  // Shifted by the first reward: an all-equal group gets mean = R exactly and std = 0 exactly.
  GroupStats s;
  const double r0 = rewards.front();
  double shifted = 0;
  for (double r : rewards) shifted += r - r0;
  s.mean = r0 + shifted / double(rewards.size());
  double var = 0;
  for (double r : rewards) var += (r - s.mean) * (r - s.mean);
  s.std = std::sqrt(var / double(rewards.size()));
  return s;
}

std::vector<double> grpo_advantages(const std::vector<double>& rewards,
                                    const AdvantageOptions& options, GroupStats* stats) {
  const GroupStats s = group_stats(rewards);
  if (stats) *stats = s;
  std::vector<double> a(rewards.size());
  const double scale = options.divide_by_std ? 1.0 / (s.std + options.eps) : 1.0;
  for (size_t i = 0; i < rewards.size(); ++i) a[i] = (rewards[i] - s.mean) * scale;
  return a;
}

bool zero_variance(const std::vector<double>& rewards) {
  return std::all_of(rewards.begin(), rewards.end(),
                     [&](double r) { return r == rewards.front(); });
}

double overlong_penalty(int64_t n, int64_t l_max, int64_t l_cache) {
  M1_CHECK(l_cache >= 0 && l_cache <= l_max);
  if (n > l_max) return -1.0;
  if (n <= l_max - l_cache) return 0.0;
  return double(l_max - l_cache - n) / double(l_cache);  // l_cache > 0 here
}

Status OverlongOptions::validate() const {
  if (l_max < 0 || l_cache < 0)
    return Status::errorf("overlong: l_max {} and l_cache {} must be >= 0", l_max, l_cache);
  if (l_max > 0 && l_cache > l_max)
    return Status::errorf("overlong: l_cache {} exceeds l_max {}", l_cache, l_max);
  return Status::ok();
}

double overlong_penalty(const OverlongOptions& options, int64_t n, int64_t max_new) {
  if (!options.enabled) return 0.0;
  const int64_t l_max = options.l_max > 0 ? options.l_max : max_new;
  return overlong_penalty(n, l_max, std::min(options.l_cache, l_max));
}

int64_t nearest_rank_percentile(std::vector<int64_t> values, double q) {
  if (values.empty()) return 0;
  M1_CHECK(q > 0 && q <= 1);
  size_t rank = size_t(std::ceil(q * double(values.size())));
  rank = std::clamp<size_t>(rank, 1, values.size());
  std::nth_element(values.begin(), values.begin() + (rank - 1), values.end());
  return values[rank - 1];
}

Status LengthWindowOptions::validate() const {
  if (windows.empty()) return Status::error("length windows: empty list");
  for (size_t i = 0; i < windows.size(); ++i) {
    if (windows[i] < 1) return Status::errorf("length windows: window {} < 1", windows[i]);
    if (i > 0 && windows[i] <= windows[i - 1])
      return Status::errorf("length windows: must increase ({} after {})", windows[i],
                            windows[i - 1]);
  }
  if (!(threshold > 0 && threshold <= 1))
    return Status::errorf("length windows: threshold {} not in (0, 1]", threshold);
  if (history_groups < 1 || min_groups < 1 || min_groups > history_groups)
    return Status::errorf("length windows: need 1 <= min_groups ({}) <= history_groups ({})",
                          min_groups, history_groups);
  return Status::ok();
}

std::vector<int64_t> LengthWindowOptions::ramp(int64_t from, int64_t to, int64_t step) {
  M1_CHECK(from >= 1 && from <= to && step >= 1);
  std::vector<int64_t> out;
  for (int64_t w = from; w < to; w += step) out.push_back(w);
  out.push_back(to);
  return out;
}

Result<LengthWindows> LengthWindows::create(LengthWindowOptions options) {
  M1_RETURN_IF_ERROR(options.validate());
  return LengthWindows(std::move(options));
}

LengthWindows LengthWindows::fixed(int64_t max_new) {
  LengthWindowOptions o;
  o.windows = {max_new};
  o.min_groups = 1;
  M1_CHECK(o.validate().is_ok());
  return LengthWindows(std::move(o));
}

int64_t LengthWindows::recent_p99() const {
  std::vector<int64_t> all;
  for (const auto& g : history_) all.insert(all.end(), g.begin(), g.end());
  return nearest_rank_percentile(std::move(all), 0.99);
}

bool LengthWindows::observe(int64_t max_new, const std::vector<int64_t>& lengths) {
  if (final_stage() || max_new != this->max_new() || lengths.empty()) return false;
  history_.push_back(lengths);
  while (history_.size() > options_.history_groups) history_.pop_front();
  if (history_.size() < options_.min_groups) return false;
  if (double(recent_p99()) < options_.threshold * double(this->max_new())) return false;
  ++stage_;
  history_.clear();
  return true;
}

RepetitionDetector::RepetitionDetector(int n, double p) : n_(n), p_(p) {
  M1_CHECK_MSG(n >= 0 && p >= 0 && p < 1, "RepetitionDetector: need n >= 0 and p in [0, 1)");
}

bool RepetitionDetector::push(double prob) {
  if (n_ == 0) return false;
  run_ = prob > p_ ? run_ + 1 : 0;
  return run_ >= n_;
}

bool RepetitionDetector::push_logprob(double logprob) { return push(std::exp(logprob)); }

bool admit_batch(uint64_t batch, uint64_t learner_version, uint64_t max_staleness) {
  return batch <= learner_version + max_staleness;
}

uint64_t admitted_group_quota(uint64_t learner_version, uint64_t max_staleness,
                              uint64_t batch_groups) {
  return (learner_version + max_staleness + 1) * batch_groups;
}

}  // namespace m1
