// Supervised fine-tuning on the built-in tasks' demonstrations (`m1rl sft CONFIG.toml`).
// Trains with AdamW on the response tokens only (mean token cross-entropy + the MoE aux loss),
// writes atomic checkpoints (weights, optimizer moments, RNG, data cursor) under
// OUT/checkpoints/step_N, resumes from the newest complete one, and evaluates held-out accuracy
// by greedy decoding and the rule verifiers. The held-out prompts never appear in training.
// SIGINT/SIGTERM (base/stop.h, when the caller installed the handlers) stop the loop between
// steps after a checkpoint of the steps trained so far.
// Not thread safe (uses the global kernel thread pool).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace m1 {

struct SftConfig {
  std::string source;        // the TOML path, for messages
  std::string model_config;  // model.config: a config.json (fresh init) ...
  std::string init_from;     // ... or model.init_from: a model directory
  std::string tokenizer;     // model.tokenizer: a tokenizer.json ("" = the byte-level tokenizer)
  std::string chat_template; // model.chat_template as written: "" none, "m1", or a template text
  uint64_t seed = 1;         // model.seed (init) and the data stream
  std::vector<std::string> tasks = {"add"};
  int min_difficulty = 1, max_difficulty = 2;
  int steps = 100;           // optimizer steps
  int batch = 32;            // sequences per step
  double lr = 3e-3, min_lr_frac = 0.1, warmup = 10, weight_decay = 0.0, clip = 1.0;
  double beta1 = 0.9, beta2 = 0.95, adam_eps = 1e-8;
  int threads = 1;
  int checkpoint_every = 50, keep_checkpoints = 2;
  int eval_every = 50, eval_examples = 64, max_new = 24;
  std::string out_dir;       // output.dir
  bool quiet = false;
};

// Reads an SFT TOML ([model] config|init_from, seed, tokenizer, chat_template; [data] tasks, min_difficulty,
// max_difficulty; [train] steps, batch, lr, warmup, weight_decay, clip, threads,
// checkpoint_every, eval_every, eval_examples, max_new; [output] dir). Errors name the key.
Result<SftConfig> load_sft_config(const std::string& path);
// Every key load_sft_config reads (dotted, sorted), found by reading a minimal config the way
// load_sft_config does (no file is read). docs/config.md must document exactly these
// (tests/tools/docs_test.cc).
std::vector<std::string> sft_config_keys();

struct SftReport {
  int64_t start_step = 0, end_step = 0;
  double first_loss = 0, last_loss = 0;     // mean over the first / last 10 steps run
  double eval_before = -1, eval_after = -1;  // held-out accuracy (−1: not measured)
  double tokens_per_s = 0;
  std::string final_dir;                     // the last checkpoint's directory
  bool interrupted = false;                  // stopped by SIGINT/SIGTERM (base/stop.h), checkpointed
};

Status run_sft(const SftConfig& cfg, SftReport* report);

// Held-out accuracy of `m` on n examples of the given tasks (greedy decoding), and its examples.
struct EvalResult {
  double accuracy = 0, format = 0;
  std::vector<std::string> prompts, responses, answers;
};
// Prompts are wrapped by CHAT_TEMPLATE (model/chat_template.h; "" = as they are).
EvalResult evaluate_tasks(const Model& m, const Tokenizer& tok, const std::vector<std::string>& tasks, int min_d,
                          int max_d, int n, uint64_t seed, int max_new, const std::string& chat_template = "");

}  // namespace m1
