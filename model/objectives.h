// docs/rl.md's policy objectives as per-token gradients. Every objective is a function of the token
// logprobs ℓ (current policy, fp32 head), the behaviour logprobs b and the advantages A; the
// learner (and `m1rl model grad`) needs J and ∂J/∂ℓ per token, then back-propagates
// ∂loss/∂ℓ = −∂J/∂ℓ through the model (loss = −J + L_aux).
// Pure functions; thread safe.
#pragma once

#include <limits>
#include <string>

#include "base/status.h"

namespace m1 {

enum class Objective { kCispo, kCispoMask, kGrpo, kDapo };

struct ObjectiveParams {
  Objective kind = Objective::kCispo;
  // CISPO IS-weight clip r̂ = clip(r, 1 − eps_low_is, 1 + eps_high_is); eps_low_is = ∞ = no lower bound.
  double eps_low_is = std::numeric_limits<double>::infinity();
  double eps_high_is = 3.0;
  // PPO-clip range (grpo: 0.2/0.2; dapo: 0.2/0.28, set by objective_defaults).
  double clip_low = 0.2, clip_high = 0.2;
  // Token-level normalisation 1/N over the minibatch (cispo, dapo); grpo averages per sequence.
  bool token_level = true;
};

// The defaults docs/rl.md gives for an objective name: "cispo", "cispo-mask", "grpo", "dapo".
Result<ObjectiveParams> objective_from_name(const std::string& name);
const char* objective_name(Objective o);

struct ObjectiveStats {
  double J = 0;              // the objective value
  int tokens = 0;            // N
  double ratio_mean = 0, ratio_max = 0;
  double clip_fraction = 0;  // tokens whose ratio was clipped (IS weight) or PPO-clipped
};

// N response tokens of S sequences: logp[n], blogp[n] (behaviour), adv[n] (the advantage of the
// token's sequence) and seq[n] ∈ [0, S). Writes dJ[n] = ∂J/∂logp[n].
ObjectiveStats objective_grad(const ObjectiveParams& p, const float* logp, const float* blogp, const float* adv,
                              const int* seq, int N, int S, float* dJ);

}  // namespace m1
