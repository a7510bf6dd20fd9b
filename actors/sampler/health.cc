// Sampler health metrics (contracts in health.h).
#include "actors/sampler/health.h"

#include <cmath>
#include <vector>

#include "actors/sampler/shaping.h"

namespace m1 {
namespace {

double ratio(uint64_t num, uint64_t den) { return den == 0 ? 0.0 : double(num) / double(den); }

}  // namespace

double SamplerCounters::fraction_dropped() const {
  return ratio(groups_dropped(), groups_accepted + groups_dropped());
}

double SamplerCounters::fraction_dropped_zero_variance() const {
  return ratio(groups_dropped_zero_variance, groups_accepted + groups_dropped_zero_variance);
}

double SamplerCounters::fraction_tokens_wasted() const {
  return ratio(tokens_wasted(), tokens_generated);
}

void RunningStats::add(double x) {
  ++n_;
  const double delta = x - mean_;
  mean_ += delta / double(n_);
  m2_ += delta * (x - mean_);
}

double RunningStats::std() const { return n_ < 2 ? 0.0 : std::sqrt(m2_ / double(n_)); }

void RecentLengths::add(int64_t tokens) {
  lengths_.push_back(tokens);
  while (lengths_.size() > capacity_) lengths_.pop_front();
}

double RecentLengths::mean() const {
  if (lengths_.empty()) return 0;
  double sum = 0;
  for (int64_t n : lengths_) sum += double(n);
  return sum / double(lengths_.size());
}

int64_t RecentLengths::p99() const {
  return nearest_rank_percentile(std::vector<int64_t>(lengths_.begin(), lengths_.end()), 0.99);
}

}  // namespace m1
