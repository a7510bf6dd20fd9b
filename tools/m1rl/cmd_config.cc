// m1rl config show: the resolved configuration of a config file, as TOML with every default filled in.
// A run config (actors/pipeline/run_config.h) is tried first; a file the run loader refuses but
// load_sft_config accepts is shown as an SFT config ([model], [data], [train], [output]).
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "actors/pipeline/run_config.h"
#include "model/sft.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {
namespace {

std::string quoted(const std::string& v) {
  std::string out = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (ch == '\n') out += "\\n";
    else if (ch == '\t') out += "\\t";
    else if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) out += fmt::format("\\u{:04X}", int(ch));
    else out += ch;
  }
  return out + "\"";
}
std::string abs_quoted(const std::string& p) {
  return quoted(p.empty() ? p : std::filesystem::absolute(p).lexically_normal().string());
}
std::string dbl(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEni") == std::string::npos) s += ".0";
  return s;
}

// The keys load_sft_config reads (model/sft.h), with the values the SFT run uses.
std::string sft_config_to_toml(const SftConfig& c) {
  std::string tasks = "[";
  for (size_t i = 0; i < c.tasks.size(); ++i) tasks += (i ? ", " : "") + quoted(c.tasks[i]);
  tasks += "]";
  return fmt::format(
      "# The resolved SFT configuration of {}: every key, defaults filled in, paths absolute.\n"
      "[model]\nconfig = {}\ninit_from = {}\nseed = {}\ntokenizer = {}\nchat_template = {}\n\n"
      "[data]\ntasks = {}\nmin_difficulty = {}\nmax_difficulty = {}\n\n"
      "[train]\nsteps = {}\nbatch = {}\nlr = {}\nwarmup = {}\nweight_decay = {}\nclip = {}\nthreads = {}\n"
      "checkpoint_every = {}\neval_every = {}\neval_examples = {}\nmax_new = {}\n\n"
      "[output]\ndir = {}\n",
      c.source, abs_quoted(c.model_config), abs_quoted(c.init_from), c.seed, abs_quoted(c.tokenizer),
      quoted(c.chat_template), tasks, c.min_difficulty,
      c.max_difficulty, c.steps, c.batch, dbl(c.lr), dbl(c.warmup), dbl(c.weight_decay), dbl(c.clip), c.threads,
      c.checkpoint_every, c.eval_every, c.eval_examples, c.max_new, abs_quoted(c.out_dir));
}

}  // namespace

int config_show(const std::string& config, const std::string& run_dir) {
  auto c = load_run_config(config, run_dir);
  if (c.is_ok()) {
    std::fputs(run_config_to_toml(c.value()).c_str(), stdout);
    return 0;
  }
  if (run_dir.empty()) {
    auto s = load_sft_config(config);
    if (s.is_ok()) {
      std::fputs(sft_config_to_toml(s.value()).c_str(), stdout);
      return 0;
    }
  }
  std::fprintf(stderr, "m1rl: error: %s\n", c.status().message().c_str());
  return 1;
}

}  // namespace m1::cli
