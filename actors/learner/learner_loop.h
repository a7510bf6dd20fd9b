// The learner's step protocol as pure logic: after a batch is trained, which effects the learner
// actor performs, in which order, and when the run is done. The actor (actors/pipeline/
// learner_actor.cc) performs them one after another and stops at the first that fails, so the
// durability order of docs/architecture.md is enforced, not merely logged:
//
//   take → train → commit → [checkpoint] → publish → report → [evaluate]
//
//  - commit: the batch's consumption is durable in replay before anything depends on the step.
//    A step whose commit failed is neither checkpointed nor published: the learner stops, and a
//    resume redelivers the batch (replay rolls back what no checkpoint covers).
//  - checkpoint: every checkpoint_every steps and at the last step; after the commit (replay's
//    protocol: a checkpoint covers only committed consumption).
//  - publish: the new version goes to generators (and the events log) only once it is durable
//    enough to be resumed from or redelivered.
//  - report: the step goes to the sampler (admission) and the metrics record is opened.
//  - evaluate: every eval_every steps and at the last step, when no evaluation is in flight
//    (a busy evaluator skips the step: recorded as eval_skipped, never queued).
// Not thread safe; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace m1 {

enum class LearnerEffect : uint8_t { kCommit, kCheckpoint, kPublish, kReport, kEvaluate };
const char* learner_effect_name(LearnerEffect e);

struct LearnerLoopConfig {
  uint64_t steps = 1;             // run.steps: the run is done at this step
  uint64_t checkpoint_every = 1;  // >= 1
  uint64_t eval_every = 0;        // 0: only at the start and the last step
};

struct StepEffects {
  std::vector<LearnerEffect> effects;  // in order
  bool eval_skipped = false;           // an evaluation was due but one is still in flight
};

class LearnerLoop {
 public:
  explicit LearnerLoop(LearnerLoopConfig c) : c_(c) {}
  // The effects after training the batch that made the learner's step count `step` (>= 1).
  StepEffects after_train(uint64_t step, bool eval_in_flight) const;
  // Whether the run is done at `step` (the last step reached, or a stop was asked for).
  bool done(uint64_t step, bool halting) const { return halting || step >= c_.steps; }
  const LearnerLoopConfig& config() const { return c_; }

 private:
  LearnerLoopConfig c_;
};

}  // namespace m1
