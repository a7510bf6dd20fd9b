#include "model/objectives.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace m1 {

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::kCispo: return "cispo";
    case Objective::kCispoMask: return "cispo-mask";
    case Objective::kGrpo: return "grpo";
    case Objective::kDapo: return "dapo";
  }
  return "?";
}

Result<ObjectiveParams> objective_from_name(const std::string& name) {
  ObjectiveParams p;
  if (name == "cispo") {
    p.kind = Objective::kCispo;
  } else if (name == "cispo-mask") {
    p.kind = Objective::kCispoMask;
  } else if (name == "grpo") {
    p.kind = Objective::kGrpo;
    p.token_level = false;
  } else if (name == "dapo") {
    p.kind = Objective::kDapo;
    p.clip_high = 0.28;
  } else {
    return Status::errorf("objective '{}': expected one of cispo, cispo-mask, grpo, dapo", name);
  }
  return p;
}

ObjectiveStats objective_grad(const ObjectiveParams& p, const float* logp, const float* blogp, const float* adv,
                              const int* seq, int N, int S, float* dJ) {
  ObjectiveStats st;
  st.tokens = N;
  if (N == 0) return st;
  std::vector<int> len(size_t(std::max(S, 1)), 0);
  for (int n = 0; n < N; ++n) len[size_t(seq[n])]++;
  int nonempty = 0;
  for (int s = 0; s < S; ++s) nonempty += len[s] > 0;
  int clipped = 0;
  double J = 0, rsum = 0, rmax = 0;
  for (int n = 0; n < N; ++n) {
    const double r = std::exp(double(logp[n]) - double(blogp[n]));
    const double A = adv[n];
    // normaliser: 1/N (token level) or 1/(S·|o_i|) (per sequence)
    const double w = p.token_level ? 1.0 / N : 1.0 / (double(nonempty) * len[size_t(seq[n])]);
    rsum += r;
    rmax = std::max(rmax, r);
    double g = 0, j = 0;
    if (p.kind == Objective::kCispo || p.kind == Objective::kCispoMask) {
      const double rhat = std::clamp(r, 1.0 - p.eps_low_is, 1.0 + p.eps_high_is);
      double mask = 1.0;
      if (p.kind == Objective::kCispoMask &&
          ((A > 0 && r > 1.0 + p.eps_high_is) || (A < 0 && r < 1.0 - p.eps_low_is)))
        mask = 0.0;
      if (rhat != r) ++clipped;
      j = mask * rhat * A * logp[n];
      g = mask * rhat * A;  // sg(r̂): the weight carries no gradient
    } else {
      const double rc = std::clamp(r, 1.0 - p.clip_low, 1.0 + p.clip_high);
      const double un = r * A, cl = rc * A;
      j = std::min(un, cl);
      if (un <= cl) {
        g = r * A;  // d(r·A)/dℓ = r·A
      } else {
        ++clipped;
      }
    }
    J += w * j;
    dJ[n] = float(w * g);
  }
  st.J = J;
  st.ratio_mean = rsum / N;
  st.ratio_max = rmax;
  st.clip_fraction = double(clipped) / N;
  return st;
}

}  // namespace m1
