// Token sampling from a log-softmax row: temperature, top-k, top-p (nucleus), seeded.
// Reports the probability of the sampled token under the distribution actually sampled from
// (after temperature, top-k and top-p): that is the behaviour probability of docs/rl.md.
// Thread safety: pure functions of their arguments and the Rng.
#pragma once

#include "base/rng.h"
#include "base/status.h"

namespace m1 {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy (argmax, ties to the lower id)
  float top_p = 1.0f;        // (0, 1]
  int top_k = 0;             // 0 = off
};

struct SampledToken {
  int id = -1;
  float prob = 0;     // probability of id under the sampling distribution (temperature/top-k/top-p applied)
  float logprob = 0;  // log of that same probability (the behaviour logprob b of docs/rl.md)
};

// Validates parameters read from configs or requests: temperature finite and ≥ 0,
// top_p ∈ (0, 1], top_k ≥ 0. The error names the field and the value.
Status check_sampling_params(const SamplingParams& p);

// logsm: the model's log-softmax over V ids (fp32 head), no NaN or +inf; −inf marks an id that
// must never be drawn (at least one entry finite). Order of filters: temperature, then top-k
// (ties to the lower id), then top-p on the renormalised top-k distribution (the shortest prefix
// of the descending order with mass ≥ top_p, at least one id). T = 0: argmax, prob 1, logprob 0.
// Consumes exactly one rng.uniform() when T > 0 and none when T = 0.
// REQUIRES: V ≥ 1, check_sampling_params(p).is_ok(); violations abort (M1_CHECK).
SampledToken sample_token(const float* logsm, int V, const SamplingParams& p, Rng& rng);

}  // namespace m1
