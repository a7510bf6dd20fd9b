// `m1rl run CONFIG.toml`: the resolved run configuration. Every key is optional except
// model.config (or sft.checkpoint); errors name the file and the key; unknown keys and sections
// are errors ("did you mean"); paths are relative to the config file's folder. The files the run
// reads (model config or SFT checkpoint, prompts JSONL) are checked by load_run_config, before
// anything is created.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "actors/staleness.h"
#include "base/status.h"
#include "model/objectives.h"
#include "model/sft.h"

namespace m1 {

struct RunConfig {
  std::string source;
  std::string run_dir;            // run.dir or --run-dir
  uint64_t seed = 1;              // run.seed
  int steps = 50;                 // run.steps: learner batches (= published versions) to train
  double max_seconds = 0;         // run.max_seconds: RL wall-clock budget over all incarnations
                                  // (0 = none); reaching it stops like Ctrl-C, after a final eval
  int max_staleness = int(kDefaultMaxStaleness);  // run.max_staleness (actors/staleness.h)
  int checkpoint_every = 5;       // run.checkpoint_every (learner steps)
  int eval_every = 10;            // run.eval_every (learner steps; 0 = only at start and end)
  int eval_examples = 100;        // run.eval_examples
  int threads = 2;                // run.threads: CAF scheduler threads
  int kernel_threads = 1;         // run.kernel_threads: the CPU kernel pool, in [1, 256]; one actor's
                                  // loop uses it at a time, a concurrent one runs on its own thread
  // model / SFT stage
  std::string model_config;       // model.config (for the SFT stage)
  std::string sft_checkpoint;     // sft.checkpoint: start from this model dir, skip the SFT stage
  SftConfig sft;                  // [sft] keys as in configs/sft-*.toml [train]/[data]
  // sampler
  std::vector<std::string> tasks = {"add"};  // sampler.tasks
  std::string prompts_jsonl;      // sampler.prompts (optional JSONL of {"prompt","answer","task"})
  int min_difficulty = 1, max_difficulty = 2;  // sampler.{min,max}_difficulty (held-out eval: this range)
  // Curriculum: the sampled difficulty is uniform in [min, max_at(version)], where max_at rises
  // linearly from sampler.start_max_difficulty to max_difficulty over sampler.difficulty_ramp_steps
  // learner versions (0 = no ramp: always max_difficulty). DifficultySchedule::linear.
  int start_max_difficulty = 2;
  int difficulty_ramp_steps = 0;
  int group_size = 8;             // sampler.group_size (G)
  int batch_groups = 8;           // sampler.batch_groups (groups per learner batch)
  double temperature = 1.0, top_p = 1.0;
  int max_new = 16;               // sampler.max_new (thinking budget)
  int overlong_cache = 0;         // sampler.overlong_cache (DAPO L_cache; 0 = off)
  double format_penalty = 0;      // sampler.format_penalty: subtracted from R for malformed markup
  bool std_normalize = true;      // sampler.std_normalize
  bool dynamic_sampling = true;   // sampler.dynamic_sampling: drop groups whose rewards are all equal
  double oversample = 1.0;        // sampler.oversample: groups kept in flight per missing accepted group, in [1, 16]
  int lookahead = 1000;           // sampler.lookahead: batches issued ahead of the learner, in [0, 1000]; the
                                  // sampler uses min(lookahead, run.max_staleness) (default: max_staleness)
  // generators / judges
  int generators = 1, generator_batch = 64;
  int repetition_n = 0;           // generator.repetition_n (0 = off)
  double repetition_p = 0.99;
  int judges = 1, judge_retries = 2;
  // learner
  ObjectiveParams objective;      // learner.objective, learner.eps_high
  std::string objective_name = "cispo";
  int minibatches = 1;            // learner.minibatches (K)
  double lr = 2e-4, clip = 1.0, weight_decay = 0.0;
  bool share_prompts = true;      // learner.share_prompts: a group's prompt computed once per minibatch
  bool quiet = false;
  bool allow_config_change = false;  // --allow-config-change: resume although the model or task set changed
};

// Parses CONFIG; run_dir_override (non-empty) replaces run.dir.
Result<RunConfig> load_run_config(const std::string& path, const std::string& run_dir_override);

// Every key load_run_config reads (dotted, sorted), found by reading a minimal config the way
// load_run_config does (no file is read). docs/config.md must document exactly these
// (tests/tools/docs_test.cc).
std::vector<std::string> run_config_keys();

// `m1rl config show`: C as a run config in TOML, sections [run], [model], [sft], [sampler],
// [generator], [judge], [learner], with every key run_config_keys() lists and the value the run
// uses (defaults filled in; learner.eps_high is the objective's clip it sets). Paths are absolute
// (made so against the current directory), so the text loads back through load_run_config from any
// folder to an equal config; an unset path is "". Doubles are written in their shortest exact form.
std::string run_config_to_toml(const RunConfig& c);

}  // namespace m1
