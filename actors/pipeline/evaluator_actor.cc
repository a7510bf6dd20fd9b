// The evaluator actor: held-out accuracy of published weights, off the learner's thread. The
// learner sends it a version's weights (the same WeightsChunk parts the generators get) and then
// asks for that version's accuracy; mail from one sender arrives in order, so the weights are in
// place when the request is read. It runs detached (an evaluation is seconds of model compute) at
// a lower CPU priority: it only observes, so the learner and the generators, whose threads share
// the cores with it, go first, and it runs in their idle time. The records it completes are
// stamped with the time the evaluated weights were published, not when the accuracy arrived.
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "base/clock.h"
#include "base/parallel.h"
#include "base/log.h"
#include "model/sft.h"
#include "model/tokenizer.h"

namespace m1::pipe {

caf::behavior evaluator_actor(caf::event_based_actor*, EvaluatorArgs a) {
  // Runs on the detached actor's own thread: lowers this thread's priority only (Linux per-thread
  // nice; a failure only costs speed), and keeps its kernel loops on this thread, since holding
  // the shared kernel pool while waiting for a core would stall the learner's and generators'
  // loops (priority inversion).
  if (a.nice > 0) {
    if (setpriority(PRIO_PROCESS, id_t(syscall(SYS_gettid)), a.nice) != 0)
      log_warn("evaluator: could not lower its thread's priority (nice {})", a.nice);
    set_thread_inline_only(true);
  }
  auto held = std::make_shared<uint64_t>(a.version);  // the version of a.model's weights
  auto sender = std::make_shared<wire::Sender>(wire::Sender{kEvaluatorId, a.incarnation, 0});
  return {
      [=](weights_atom, const std::vector<msg::Bytes>& parts) {
        std::vector<float> w;
        uint64_t version = 0;
        Status s = wire::assemble_weights(parts, a.model->num_params(), &w, &version);
        if (!s.is_ok()) {
          a.rejects->evaluator++;
          log_warn("evaluator: rejected weights: {}", s.message());
          return;
        }
        std::copy(w.begin(), w.end(), a.model->params());
        *held = version;
      },
      // Replies an EvalResult; held = false when this actor does not hold `version` (its weights
      // message was rejected), so the record says so instead of a wrong number.
      [=](eval_atom, uint64_t version) -> msg::Bytes {
        if (version != *held) {
          log_warn("evaluator: asked for version {}, holding {}", version, *held);
          return wire::eval_result(*sender, version, false, 0.0, 0.0);
        }
        const auto t0 = std::chrono::steady_clock::now();
        ByteTokenizer tok;
        const RunConfig& c = a.cfg;
        const double acc = evaluate_tasks(*a.model, tok, c.tasks, c.min_difficulty, c.max_difficulty,
                                          c.eval_examples, c.seed, c.max_new)
                               .accuracy;
        if (!(acc >= 0.0 && acc <= 1.0)) {  // no examples (0/0) or a broken count: no accuracy to report
          log_warn("evaluator: accuracy {} of version {} is not in [0, 1]", acc, version);
          return wire::eval_result(*sender, version, false, 0.0, 0.0);
        }
        return wire::eval_result(*sender, version, true, acc, std::max(0.0, seconds_since(t0)));
      },
  };
}

}  // namespace m1::pipe
