// The learner's pure logic: docs/rl.md's objectives with token-level normalisation, K minibatch steps
// per batch, AdamW(β1, β2, ε) with global-norm clipping, one published weights version per batch,
// the train/inference probability correlation (Pearson, M1 Fig. 3) on every batch, and atomic
// checkpoints (weights, optimizer moments, version, step, RNG).
// Ownership: owns the trainable Model and the optimizer state. Not thread safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/rng.h"
#include "base/status.h"
#include "model/model.h"
#include "model/objectives.h"

namespace m1 {

struct TrainRollout {
  uint64_t group_id = 0;
  std::vector<int> prompt;             // non-empty
  std::vector<int> tokens;             // response, non-empty
  std::vector<float> behavior_logprobs;  // one per response token
  std::vector<uint64_t> versions;      // one per response token
  float advantage = 0;
};

struct LearnerConfig {
  ObjectiveParams objective;
  int minibatches = 1;        // K optimizer steps per batch
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-15;
  double weight_decay = 0.0;
  double clip = 1.0;          // global-norm clip (0 = off)
  uint64_t seed = 1;          // minibatch shuffling
  // Train/inference correlation for stale rollouts: the weights of the last pearson_history
  // versions are kept (one parameter copy each), and up to pearson_max_rollouts rollouts per
  // batch that were generated wholly by one of them are scored with those weights (a forward
  // pass per version). 0 = only rollouts of the learner's current version count. The history
  // is not checkpointed: after a restart it refills as versions are trained.
  int pearson_history = 0;
  int pearson_max_rollouts = 16;
  // Rollouts of one prompt in a minibatch share the prompt's forward and backward (Batch's shared
  // prefixes): the same logprobs, losses and gradients, less work.
  bool share_prompts = true;
};

struct LearnerStats {
  uint64_t version = 0;       // after this batch
  double loss = 0, objective = 0, aux_loss = 0;
  double ratio_mean = 0, ratio_max = 0, clip_fraction = 0;
  double entropy_mean = 0, grad_norm = 0;
  double pearson = 0;         // behaviour vs learner token probabilities at the same version (NaN: no such tokens)
  int pearson_tokens = 0;
  int tokens = 0, rollouts = 0;  // tokens: scored response tokens
  int computed_tokens = 0;    // token positions run through forward and backward (prompts shared)
  double max_staleness = 0;   // learner version − oldest token version in the batch
  double seconds = 0;
};

class LearnerLogic {
 public:
  LearnerLogic(Model model, LearnerConfig cfg);
  ~LearnerLogic() { delete_workspace(ws_); }
  LearnerLogic(const LearnerLogic&) = delete;
  LearnerLogic& operator=(const LearnerLogic&) = delete;
  LearnerStats train(const std::vector<TrainRollout>& batch);
  uint64_t version() const { return version_; }
  // Moves the version forward (never back): after a crash the learner resumes past every version
  // an earlier incarnation may have published, so versions only move forward. REQUIRES: v ≥ version().
  void advance_version_to(uint64_t v) {
    if (v > version_) version_ = v;
  }
  uint64_t step() const { return step_; }
  const Model& model() const { return model_; }

  // Checkpoint files into DIR (an existing temp dir; see model/checkpoint.h for the atomic commit).
  Status save(const std::string& dir) const;
  Status load(const std::string& dir);

 private:
  Model model_;
  LearnerConfig cfg_;
  std::vector<float> m_, v_, grads_;
  // Adds rollouts generated wholly by a kept older version to the correlation series.
  void score_old_versions(const std::vector<TrainRollout>& batch, std::vector<double>* pb, std::vector<double>* pl);

  uint64_t version_ = 0, step_ = 0, adam_step_ = 0;
  std::deque<std::pair<uint64_t, std::vector<float>>> history_;  // (version, parameters), oldest first
  std::unique_ptr<Model> eval_;                                  // scores old versions
  Rng rng_;
  Workspace* ws_;
};

// Pearson correlation of two equally long series (NaN when fewer than 2 points or no variance).
double pearson(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace m1
