// The m1rl subcommands. main.cc parses the command line (CLI11, in that one TU only) and calls
// one of these; each returns the process exit code (0 ok, 1 failure, 2 bad usage) and prints
// errors to stderr naming the bad input.
#pragma once

#include <cstdint>
#include <string>

namespace m1::cli {

int model_init(const std::string& config, uint64_t seed, const std::string& out, bool force);
int model_info(const std::string& path, bool json);
int model_logprobs(const std::string& dir, const std::string& input, const std::string& out);
int model_grad(const std::string& dir, const std::string& input, const std::string& out, const std::string& objective,
               double eps_high, bool eps_high_set);
int generate(const std::string& dir, const std::string& prompt, int max_new, double temperature, double top_p,
             int top_k, uint64_t seed);
int bench_replay(int groups, bool json);
int bench_model(const std::string& config, bool json, int threads);
int bench_generator(const std::string& config, int batch, int threads, int group, double seconds, bool json);
int bench_learner(const std::string& config, int groups, int group, int prompt_len, int response_len,
                  int minibatches, int threads, int rounds, bool json);
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
int eval(const std::string& dir, const std::string& tasks, int min_d, int max_d, int n, uint64_t seed, int max_new);

}  // namespace m1::cli
