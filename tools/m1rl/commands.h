// The m1rl subcommands. main.cc parses the command line (CLI11, in that one TU only) and calls
// one of these; each returns the process exit code (0 ok, 1 failure, 2 bad usage) and prints
// errors to stderr naming the bad input.
#pragma once

#include <cstdint>
#include <string>

namespace m1::cli {

int model_init(const std::string& config, uint64_t seed, const std::string& out, bool force);
int model_info(const std::string& path, bool json);
// IN → OUT in layout TO ("hf" or "release"), DTYPE "bf16", "f32" or "" (the input's); exit 1 on
// bad input, a refused function-changing conversion (unless FORCE), or a non-empty OUT.
int model_convert(const std::string& in, const std::string& out, const std::string& to, const std::string& dtype,
                  bool force, uint64_t max_shard_bytes);
int model_logprobs(const std::string& dir, const std::string& input, const std::string& out);
int model_grad(const std::string& dir, const std::string& input, const std::string& out, const std::string& objective,
               double eps_high, bool eps_high_set);
// TOKENIZER "" = DIR/tokenizer.json when it exists, else the byte-level tokenizer; CHAT_TEMPLATE
// as model/chat_template.h's resolve_chat_template takes it ("" = the prompt as it is).
int generate(const std::string& dir, const std::string& prompt, int max_new, double temperature, double top_p,
             int top_k, uint64_t seed, const std::string& tokenizer, const std::string& chat_template);
// The deterministic simulation (sim/sim.h) for SEED, or every seed of SEEDS ("A..B"): one line per
// seed; exit 1 when any seed violates an invariant, 2 on bad usage.
int sim(uint64_t seed, const std::string& seeds, int nodes, int steps, const std::string& faults,
        const std::string& plant, const std::string& work_dir);
int bench_replay(int groups, bool json);
int bench_model(const std::string& config, bool json, int threads);
int bench_generator(const std::string& config, int batch, int threads, int group, double seconds, bool json);
int bench_learner(const std::string& config, int groups, int group, int prompt_len, int response_len,
                  int minibatches, int threads, int rounds, bool json);
// Stdin lines of UTF-8 text -> one JSON array of ids per line; with DECODE, JSON arrays -> the
// text as a JSON string per line. TOKENIZER "" = ByteTokenizer. Exit 1 names the bad line.
int tokenize(const std::string& tokenizer, bool decode);
int bench_tokenizer(const std::string& tokenizer, double mb, int merges, const std::string& corpus,
                    const std::string& save, bool json);
int sft(const std::string& config);
struct ReplayLsArgs {
  std::string status, task;
  uint64_t min_version = 0, max_version = UINT64_MAX;
  double min_reward = -1e30, max_reward = 1e30;
  int limit = 100;
};
int replay_stats(const std::string& run, bool json);
int replay_ls(const std::string& run, const ReplayLsArgs& a, bool json);
int replay_show(const std::string& run, uint64_t group_id, bool json);
int replay_tail(const std::string& run, bool json, bool follow, int limit);
// Without SKIP_DAMAGED an export that meets damage fails (exit 1) and writes nothing; with it, the
// intact groups are written and the damaged ones counted and named on stderr (exit 0).
int replay_export(const std::string& run, const std::string& out, bool skip_damaged);
// RocksDB's own checks, then every record decoded; exit 0 all intact, 1 damage (named).
int replay_check(const std::string& run, bool json);
int run(const std::string& config, const std::string& run_dir, bool allow_config_change);
// Prints CONFIG resolved (every default filled in, paths absolute) as TOML: a run config, or else
// an SFT config (RUN_DIR empty only); exit 1 with the run loader's error when neither loads.
int config_show(const std::string& config, const std::string& run_dir);
int eval(const std::string& dir, const std::string& tasks, int min_d, int max_d, int n, uint64_t seed, int max_new,
         const std::string& tokenizer, const std::string& chat_template);

}  // namespace m1::cli
