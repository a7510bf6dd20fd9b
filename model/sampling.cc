// sample_token: the sampling distribution q is built from the log-softmax row in four steps,
// all in double precision:
//   1. temperature T > 0:  q_i ∝ exp(logsm_i / T)            (T = 0 is greedy, handled apart)
//   2. top-k (k > 0):      keep the k largest q_i (ties: lower id first), renormalise
//   3. top-p (p < 1):      keep the shortest prefix of the descending order whose mass ≥ p
//                          (always ≥ 1 id), renormalise
//   4. draw u = rng.uniform() ∈ [0,1) once and pick the first kept id whose cumulative mass > u·Z.
// The reported prob / logprob are q of the drawn id after step 3; logprob is computed as
// z_i − z_max − log Z rather than log(prob), so it stays accurate for tiny probabilities.
// Ids with logsm = −∞ get q = 0 and are never drawn. Exactly one rng draw per non-greedy call.
#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "base/check.h"

namespace m1 {
namespace {

int argmax(const float* x, int V) {
  int best = 0;
  for (int i = 1; i < V; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

}  // namespace

Status check_sampling_params(const SamplingParams& p) {
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature))
    return Status::errorf("sampling: temperature must be finite and >= 0, got {}", p.temperature);
  if (!(p.top_p > 0 && p.top_p <= 1))
    return Status::errorf("sampling: top_p must be in (0, 1], got {}", p.top_p);
  if (p.top_k < 0) return Status::errorf("sampling: top_k must be >= 0 (0 = off), got {}", p.top_k);
  return Status::ok();
}

SampledToken sample_token(const float* logsm, int V, const SamplingParams& p, Rng& rng) {
  M1_CHECK(V >= 1);
  M1_CHECK_MSG(check_sampling_params(p).is_ok(), check_sampling_params(p).message().c_str());
  for (int i = 0; i < V; ++i)
    M1_CHECK_MSG(!std::isnan(logsm[i]) && logsm[i] != std::numeric_limits<float>::infinity(),
                 "sample_token: log-softmax row holds NaN or +inf");

  if (p.temperature == 0) return SampledToken{argmax(logsm, V), 1.0f, 0.0f};

  // Scratch reused per thread: (V) ids in sampling order and (V) unnormalised masses.
  thread_local std::vector<int> order;
  thread_local std::vector<double> mass;
  order.resize(V);
  mass.resize(V);

  const double inv_t = 1.0 / p.temperature;
  const double zmax = double(logsm[argmax(logsm, V)]) * inv_t;
  M1_CHECK_MSG(std::isfinite(zmax), "sample_token: every logit is -inf");
  for (int i = 0; i < V; ++i) {
    order[i] = i;
    mass[i] = std::exp(double(logsm[i]) * inv_t - zmax);  // ∈ [0, 1], 1 at the argmax
  }

  // Descending mass, ties to the lower id. Only the first n entries of `order` are kept.
  auto before = [&](int a, int b) { return mass[a] > mass[b] || (mass[a] == mass[b] && a < b); };
  int n = V;
  const bool use_k = p.top_k > 0 && p.top_k < V;
  const bool use_p = p.top_p < 1;
  if (use_k && !use_p) {
    std::partial_sort(order.begin(), order.begin() + p.top_k, order.end(), before);
    n = p.top_k;
  } else if (use_p) {
    std::sort(order.begin(), order.end(), before);
    if (use_k) n = p.top_k;
  }
  if (use_p) {
    double z = 0;
    for (int j = 0; j < n; ++j) z += mass[order[j]];
    const double target = double(p.top_p) * z;
    double cum = 0;
    int keep = 0;
    while (keep < n) {
      cum += mass[order[keep++]];
      if (cum >= target) break;
    }
    n = keep;
  }

  double z = 0;
  for (int j = 0; j < n; ++j) z += mass[order[j]];
  const double u = rng.uniform() * z;
  double cum = 0;
  int pick = order[0];  // overwritten: the argmax (mass 1) is always among the kept ids
  for (int j = 0; j < n; ++j) {
    const int id = order[j];
    if (mass[id] == 0) continue;
    pick = id;  // rounding guard: if u·Z ≥ the summed mass, the last positive id is taken
    cum += mass[id];
    if (u < cum) break;
  }
  const double logq = (double(logsm[pick]) * inv_t - zmax) - std::log(z);
  return SampledToken{pick, float(std::exp(logq)), float(logq)};
}

}  // namespace m1
