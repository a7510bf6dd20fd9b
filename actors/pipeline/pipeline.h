// `m1rl run`: the whole RL pipeline in one process. Spawns the actors of docs/architecture.md on one CAF
// actor system — sampler, generators, rule-verifier judges, replay (RocksDB), learner — which
// exchange only FlatBuffers messages (messages/*.fbs, verified by messages/codec.h on receipt),
// so the same actors can later run across processes. Starts from an SFT checkpoint (running the
// SFT stage first when needed), resumes from the newest learner checkpoint after a crash, stops
// cleanly (with a checkpoint) on SIGINT/SIGTERM (base/stop.h; in the SFT stage too), and leaves metrics.jsonl, plots and a summary in
// the run directory.
#pragma once

#include "actors/pipeline/run_config.h"
#include "base/status.h"

namespace m1 {

struct RunReport {
  uint64_t start_step = 0, end_step = 0;
  double eval_start = -1, eval_end = -1;  // held-out accuracy
  double seconds = 0;
  bool interrupted = false;
};

Status run_pipeline(const RunConfig& cfg, RunReport* report);

}  // namespace m1
