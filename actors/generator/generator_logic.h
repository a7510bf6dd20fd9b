// The generator's pure logic: continuous batching over the model's incremental decoder.
// Requests queue up. A queued request starts as soon as fewer than prefill_cap sequences wait
// (feed their prompts, or wait for a sampling slot); its prompt goes through the batched decode step one token per step,
// next to the sequences that are sampling, so prompt processing shares their weight pass instead
// of costing a pass of its own. A sequence whose prompt is fed takes one of the max_batch sampling
// slots as soon as one is free (in arrival order): a finished sequence is replaced without waiting
// for the batch. Every step samples one token for every sampling sequence (temperature / top-p /
// top-k, seeded per request), stops a sequence on eos, on its thinking budget, or on repetition
// (docs/rl.md: the last N sampled tokens each had probability > p), and runs one batched decode step.
// Every sampled token records its behaviour logprob and the weights version that computed its
// distribution (the first token: the oldest version that fed the prompt); set_weights() between steps hot-swaps the weights (sequences in flight continue
// with their decode state; their later tokens carry the new version).
// Shared prompts: a request whose prompt equals that of a sequence still feeding (the G samples
// of a group arrive together) does not feed it again: it follows that leader and, once the leader
// has fed the prompt, starts from a copy of the leader's decode state and first distribution
// (same weights, same tokens: the same numbers a feed of its own would give, without the rows).
// A follower holds no rows and no state until it samples; it does not count against prefill_cap.
// Request ids: a request whose id is queued or live already is not started again (the sampler
// sends an overdue request again with the same id; when it comes back to the generator that is
// still working on it, that work goes on and the copy is dropped).
// Ownership: owns its Model copy. Not thread safe: one caller (the generator actor).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/rng.h"
#include "model/model.h"
#include "model/sampling.h"

namespace m1 {

struct GenJob {
  uint64_t request_id = 0;
  std::vector<int> prompt;     // non-empty
  int max_new = 64;
  SamplingParams sampling;
  uint64_t seed = 0;
};

struct GenOutput {
  uint64_t request_id = 0;
  std::vector<int> tokens;
  std::vector<float> logprobs;    // behaviour logprob per token
  std::vector<uint64_t> versions; // weights version per token
  std::string finish;             // "eos", "length", "repetition", "aborted"
};

struct RepetitionStop {
  int n = 0;          // 0 = off; else stop when the last n tokens each had probability > p
  double p = 0.99;
};

class GeneratorLogic {
 public:
  // max_batch: sequences sampling at once (≥ 1). prefill_cap: sequences feeding their prompts or
  // waiting for a sampling slot (≥ 1; 0 = max(1, max_batch / 2)). So a decode step has at most
  // max_batch + prefill_cap rows (followers of a shared prompt wait without rows).
  GeneratorLogic(Model model, uint64_t version, int max_batch, int eos_id, RepetitionStop rep, int prefill_cap = 0);
  // false (nothing queued) when a request with job.request_id is queued or live.
  bool submit(GenJob job);
  // One scheduling round; returns the sequences that finished in it.
  std::vector<GenOutput> step();
  // REQUIRES: n == model's num_params(); version > current version.
  void set_weights(const float* params, size_t n, uint64_t version);
  // Ends every queued and live sequence with finish "aborted" (tokens so far kept).
  std::vector<GenOutput> abort_all();
  bool idle() const { return queue_.empty() && live_.empty(); }
  size_t live() const { return live_.size(); }
  size_t queued() const { return queue_.size(); }
  uint64_t version() const { return version_; }
  const Model& model() const { return model_; }
  uint64_t tokens_generated() const { return tokens_; }
  uint64_t prompt_tokens_fed() const { return fed_; }        // prompt rows through the decoder
  uint64_t prompt_tokens_shared() const { return shared_; }  // prompt tokens followers did not feed
  uint64_t decode_steps() const { return steps_; }          // batched decode steps run
  uint64_t decode_rows() const { return rows_; }            // rows over those steps
  double decode_seconds() const { return decode_s_; }       // wall time inside Model::decode_step

 private:
  // A leader's prompt, shared with its followers. A request may follow it only while the weights
  // are those the leader started feeding with (so a follower's first token is never older than a
  // feed of its own would give); `ready` once the leader is fed and the snapshot taken.
  struct SharedPrompt {
    std::vector<int> prompt;
    bool ready = false;
    DecodeState state;       // after the whole prompt
    std::vector<float> row;  // the first token's log-softmax
    uint64_t version = 0;    // weights version at the leader's start; at the snapshot, the oldest that fed it
  };
  struct Slot {
    GenJob job;
    std::shared_ptr<SharedPrompt> share;  // leader or follower of a shared prompt; null: neither
    bool follower = false;
    Rng rng;
    DecodeState state;
    GenOutput out;
    size_t fed = 0;          // prompt tokens through the decoder so far
    uint64_t feed_version = 0;  // weights version that fed the first prompt token
    bool sampling = false;   // holds a sampling slot (its prompt is fed)
    int next = 0;            // the token sampled this step (input of the decode step)
    std::vector<float> row;  // log-softmax to sample the next token from
    uint64_t row_version = 0;  // weights version that computed `row` (the next token's version)
    int high_prob_run = 0;   // consecutive tokens with probability > rep_.p
  };
  Model model_;
  uint64_t version_;
  int max_batch_, eos_, prefill_cap_;
  RepetitionStop rep_;
  std::deque<GenJob> queue_;
  std::unordered_set<uint64_t> active_;  // request ids queued or live
  std::vector<Slot> live_;
  uint64_t tokens_ = 0, fed_ = 0, shared_ = 0, steps_ = 0, rows_ = 0;
  double decode_s_ = 0;
};

}  // namespace m1
