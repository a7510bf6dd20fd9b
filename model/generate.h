// Batched generation with the model's incremental decoder: prefill every prompt, then decode one
// token per live sequence per step until eos or the token budget. Used by `m1rl generate`, SFT
// evaluation and (issue 3) the generator actor's logic.
// Thread safety: one call at a time per Model unless the kernels are reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/sampling.h"

namespace m1 {

struct GenRequest {
  std::vector<int> prompt;  // REQUIRES: non-empty
  int max_new = 64;
  SamplingParams sampling;
  uint64_t seed = 0;
};

struct GenResult {
  std::vector<int> tokens;      // generated ids (eos included when it was sampled)
  std::vector<float> logprobs;  // behaviour logprob of each generated token
  std::string finish;           // "eos" or "length"
};

// Runs the requests in batches of at most max_batch sequences.
std::vector<GenResult> generate(const Model& m, const std::vector<GenRequest>& reqs, int eos_id, int max_batch = 64);

}  // namespace m1
