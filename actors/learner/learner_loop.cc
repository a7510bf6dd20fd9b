#include "actors/learner/learner_loop.h"

namespace m1 {

const char* learner_effect_name(LearnerEffect e) {
  switch (e) {
    case LearnerEffect::kCommit: return "commit";
    case LearnerEffect::kCheckpoint: return "checkpoint";
    case LearnerEffect::kPublish: return "publish";
    case LearnerEffect::kReport: return "report";
    case LearnerEffect::kEvaluate: return "evaluate";
  }
  return "?";
}

StepEffects LearnerLoop::after_train(uint64_t step, bool eval_in_flight) const {
  StepEffects out;
  const bool last = step >= c_.steps;
  out.effects.push_back(LearnerEffect::kCommit);
  if (step % c_.checkpoint_every == 0 || last) out.effects.push_back(LearnerEffect::kCheckpoint);
  out.effects.push_back(LearnerEffect::kPublish);
  out.effects.push_back(LearnerEffect::kReport);
  const bool eval_due = (c_.eval_every > 0 && step % c_.eval_every == 0) || last;
  if (eval_due && !eval_in_flight) out.effects.push_back(LearnerEffect::kEvaluate);
  out.eval_skipped = eval_due && eval_in_flight;
  return out;
}

}  // namespace m1
