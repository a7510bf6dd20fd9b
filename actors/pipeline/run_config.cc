#include "actors/pipeline/run_config.h"

#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "actors/pipeline/actors.h"
#include "actors/staleness.h"
#include "base/check.h"
#include "base/file.h"
#include "base/log.h"
#include "model/bpe_tokenizer.h"
#include "model/chat_template.h"
#include "model/config.h"
#include "model/tasks.h"
#include "model/toml_config.h"

namespace m1 {
namespace {

// The pure part of load_run_config: every key of T, with its range and the relations between
// keys, then check_unknown(); no file is read. PATH names the config in errors. Every key is
// asked for unconditionally (a key whose default depends on another one is read with that
// default), so a config with only run.dir and model.config asks for all of them: run_config_keys()
// relies on it.
Result<RunConfig> read_run_config(TomlConfig& t, const std::string& path, const std::string& run_dir_override) {
  RunConfig c;
  c.source = path;
  M1_ASSIGN_OR_RETURN(c.run_dir, t.get_path("run.dir"));
  if (!run_dir_override.empty()) c.run_dir = run_dir_override;
  if (c.run_dir.empty()) return Status::errorf("{}: key 'run.dir': missing (or pass --run-dir)", path);
  M1_ASSIGN_OR_RETURN(int64_t seed, t.get_int("run.seed", 1, 0, INT64_MAX));
  c.seed = uint64_t(seed);
  M1_ASSIGN_OR_RETURN(int64_t steps, t.get_int("run.steps", 50, 1, 100000000));
  M1_ASSIGN_OR_RETURN(int64_t ms, t.get_int("run.max_staleness", int64_t(kDefaultMaxStaleness), 0, 1000));
  M1_ASSIGN_OR_RETURN(c.max_seconds, t.get_double("run.max_seconds", 0, 0, 1e9));
  M1_ASSIGN_OR_RETURN(int64_t ck, t.get_int("run.checkpoint_every", 5, 1, 100000000));
  M1_ASSIGN_OR_RETURN(int64_t ev, t.get_int("run.eval_every", 10, 0, 100000000));
  M1_ASSIGN_OR_RETURN(int64_t evn, t.get_int("run.eval_examples", 100, 1, 1000000));
  M1_ASSIGN_OR_RETURN(int64_t th, t.get_int("run.threads", 2, 1, 256));
  M1_ASSIGN_OR_RETURN(int64_t kth, t.get_int("run.kernel_threads", 1, 1, 256));
  c.kernel_threads = int(kth);
  c.steps = int(steps);
  c.max_staleness = int(ms);
  c.checkpoint_every = int(ck);
  c.eval_every = int(ev);
  c.eval_examples = int(evn);
  c.threads = int(th);
  M1_ASSIGN_OR_RETURN(c.model_config, t.get_path("model.config"));
  M1_ASSIGN_OR_RETURN(c.sft.tokenizer, t.get_path("model.tokenizer"));
  M1_ASSIGN_OR_RETURN(c.sft.chat_template, t.get_string("model.chat_template", ""));
  M1_RETURN_IF_ERROR(resolve_chat_template(c.sft.chat_template, path + ": key 'model.chat_template'").status());
  M1_ASSIGN_OR_RETURN(c.sft_checkpoint, t.get_path("sft.checkpoint"));
  if (c.model_config.empty() && c.sft_checkpoint.empty())
    return Status::errorf("{}: key 'model.config': required unless 'sft.checkpoint' names a model", path);
  // sampler
  M1_ASSIGN_OR_RETURN(c.tasks, t.get_strings("sampler.tasks", {"add"}));
  for (auto& n : c.tasks)
    if (!make_task(n)) return Status::errorf("{}: key 'sampler.tasks': unknown task '{}'", path, n);
  M1_ASSIGN_OR_RETURN(c.prompts_jsonl, t.get_path("sampler.prompts"));
  if (c.tasks.empty() && c.prompts_jsonl.empty())
    return Status::errorf("{}: key 'sampler.tasks': empty, and no 'sampler.prompts' file: nothing to train on "
                          "(name built-in tasks, e.g. [\"add\"], or a JSONL prompts file)", path);
  if (c.tasks.empty() && c.sft_checkpoint.empty())
    return Status::errorf("{}: key 'sampler.tasks': empty, so the SFT stage has no built-in task to train on: "
                          "give 'sft.checkpoint' (a model directory to start RL from)", path);
  M1_ASSIGN_OR_RETURN(int64_t mind, t.get_int("sampler.min_difficulty", 1, 1, 100));
  M1_ASSIGN_OR_RETURN(int64_t maxd, t.get_int("sampler.max_difficulty", 2, 1, 100));
  if (maxd < mind) return Status::errorf("{}: key 'sampler.max_difficulty': must be >= sampler.min_difficulty", path);
  c.min_difficulty = int(mind);
  c.max_difficulty = int(maxd);
  M1_ASSIGN_OR_RETURN(int64_t smd, t.get_int("sampler.start_max_difficulty", maxd, 1, 100));
  if (smd < mind || smd > maxd)
    return Status::errorf("{}: key 'sampler.start_max_difficulty': must be in [sampler.min_difficulty, "
                          "sampler.max_difficulty] = [{}, {}]", path, mind, maxd);
  M1_ASSIGN_OR_RETURN(int64_t ramp, t.get_int("sampler.difficulty_ramp_steps", 0, 0, 100000000));
  c.start_max_difficulty = int(smd);
  c.difficulty_ramp_steps = int(ramp);
  M1_ASSIGN_OR_RETURN(int64_t G, t.get_int("sampler.group_size", 8, 2, 4096));
  M1_ASSIGN_OR_RETURN(int64_t B, t.get_int("sampler.batch_groups", 8, 1, 100000));
  M1_ASSIGN_OR_RETURN(c.temperature, t.get_double("sampler.temperature", 1.0, 0, 100));
  M1_ASSIGN_OR_RETURN(c.top_p, t.get_double("sampler.top_p", 1.0, 1e-6, 1.0));
  M1_ASSIGN_OR_RETURN(int64_t mx, t.get_int("sampler.max_new", 16, 1, 1 << 20));
  M1_ASSIGN_OR_RETURN(int64_t oc, t.get_int("sampler.overlong_cache", 0, 0, 1 << 20));
  M1_ASSIGN_OR_RETURN(c.format_penalty, t.get_double("sampler.format_penalty", 0, 0, 100));
  M1_ASSIGN_OR_RETURN(c.std_normalize, t.get_bool("sampler.std_normalize", true));
  M1_ASSIGN_OR_RETURN(c.dynamic_sampling, t.get_bool("sampler.dynamic_sampling", true));
  M1_ASSIGN_OR_RETURN(c.oversample, t.get_double("sampler.oversample", 1.0, 1.0, 16.0));
  M1_ASSIGN_OR_RETURN(int64_t la, t.get_int("sampler.lookahead", 1000, 0, 1000));
  c.lookahead = int(la);
  c.group_size = int(G);
  c.batch_groups = int(B);
  c.max_new = int(mx);
  c.overlong_cache = int(oc);
  if (c.overlong_cache >= c.max_new && c.overlong_cache > 0)
    return Status::errorf("{}: key 'sampler.overlong_cache': must be < sampler.max_new", path);
  // generators, judges
  M1_ASSIGN_OR_RETURN(int64_t ng, t.get_int("generator.count", 1, 1, 1024));
  M1_ASSIGN_OR_RETURN(int64_t gb, t.get_int("generator.max_batch", 64, 1, 4096));
  M1_ASSIGN_OR_RETURN(int64_t rn, t.get_int("generator.repetition_n", 0, 0, 1 << 20));
  M1_ASSIGN_OR_RETURN(c.repetition_p, t.get_double("generator.repetition_p", 0.99, 0, 1));
  M1_ASSIGN_OR_RETURN(int64_t nj, t.get_int("judge.count", 1, 1, 1024));
  M1_ASSIGN_OR_RETURN(int64_t jr, t.get_int("judge.retries", 2, 0, 99));
  c.generators = int(ng);
  c.generator_batch = int(gb);
  c.repetition_n = int(rn);
  c.judges = int(nj);
  c.judge_retries = int(jr);
  // learner
  M1_ASSIGN_OR_RETURN(c.objective_name, t.get_string("learner.objective", "cispo"));
  auto op = objective_from_name(c.objective_name);
  if (!op.is_ok()) return op.status().with_context(path + ": key 'learner.objective'");
  c.objective = op.value();
  {
    // cispo, cispo-mask: the IS-weight clip ε_high^IS; grpo, dapo: the upper PPO clip. Absent: the
    // objective's default stays.
    const bool is_cispo = c.objective.kind == Objective::kCispo || c.objective.kind == Objective::kCispoMask;
    double& target = is_cispo ? c.objective.eps_high_is : c.objective.clip_high;
    M1_ASSIGN_OR_RETURN(double eh, t.get_double("learner.eps_high", target, 1e-6, 1e6));
    target = eh;
  }
  M1_ASSIGN_OR_RETURN(int64_t K, t.get_int("learner.minibatches", 1, 1, 1024));
  c.minibatches = int(K);
  M1_ASSIGN_OR_RETURN(c.lr, t.get_double("learner.lr", 2e-4, 0, 10));
  M1_ASSIGN_OR_RETURN(c.clip, t.get_double("learner.clip", 1.0, 0, 1e9));
  M1_ASSIGN_OR_RETURN(c.weight_decay, t.get_double("learner.weight_decay", 0.0, 0, 10));
  M1_ASSIGN_OR_RETURN(c.share_prompts, t.get_bool("learner.share_prompts", true));
  // SFT stage (used when no sft.checkpoint is given and none exists in the run dir)
  SftConfig& s = c.sft;
  s.source = path;
  s.model_config = c.model_config;
  s.seed = c.seed;
  s.tasks = c.tasks;
  s.min_difficulty = c.min_difficulty;
  s.max_difficulty = c.max_difficulty;
  M1_ASSIGN_OR_RETURN(int64_t ss, t.get_int("sft.steps", 300, 1, 100000000));
  M1_ASSIGN_OR_RETURN(int64_t sb, t.get_int("sft.batch", 32, 1, 1 << 20));
  M1_ASSIGN_OR_RETURN(s.lr, t.get_double("sft.lr", 3e-3, 0, 10));
  M1_ASSIGN_OR_RETURN(s.warmup, t.get_double("sft.warmup", 20, 0, 1e9));
  M1_ASSIGN_OR_RETURN(int64_t sth, t.get_int("sft.threads", 2, 1, 256));
  s.steps = int(ss);
  s.batch = int(sb);
  s.threads = int(sth);
  s.checkpoint_every = std::max(1, s.steps / 2);
  s.eval_every = 0;
  s.eval_examples = c.eval_examples;
  s.max_new = c.max_new;
  s.out_dir = path_join(c.run_dir, "sft");
  M1_RETURN_IF_ERROR(t.check_unknown());
  return c;
}

}  // namespace

Result<RunConfig> load_run_config(const std::string& path, const std::string& run_dir_override) {
  M1_ASSIGN_OR_RETURN(TomlConfig t, TomlConfig::load(path));
  M1_ASSIGN_OR_RETURN(RunConfig c, read_run_config(t, path, run_dir_override));
  // The files the run reads, checked now: before the run directory is created.
  if (c.sft_checkpoint.empty()) {
    auto mc = load_model_config(c.model_config);
    if (!mc.is_ok()) return mc.status().with_context(path + ": key 'model.config'");
    M1_RETURN_IF_ERROR(validate_model_config(mc.value(), c.model_config));
  } else {
    const std::string cj = path_join(c.sft_checkpoint, "config.json");
    if (!path_exists(cj))
      return Status::errorf("{}: key 'sft.checkpoint': {} is not a model directory (no config.json)", path,
                            c.sft_checkpoint);
  }
  M1_RETURN_IF_ERROR(pipe::validate_sampler_config(c).with_context(path));
  // model.tokenizer must name a tokenizer that loads. The RL actors (sampler, generators, judges,
  // evaluator) still build the byte-level tokenizer themselves, so until they take this one a run
  // with another tokenizer or a chat template is refused rather than trained inconsistently.
  if (!c.sft.tokenizer.empty()) {
    auto tok = load_tokenizer(c.sft.tokenizer);
    if (!tok.is_ok()) return tok.status().with_context(path + ": key 'model.tokenizer'");
  }
  if (!c.sft.tokenizer.empty() || !c.sft.chat_template.empty())
    return Status::errorf("{}: key '{}': m1rl run's RL stage uses the byte-level tokenizer and raw prompts so far; "
                          "a tokenizer.json and chat templates work with m1rl sft, generate, eval and tokenize "
                          "(docs/tokenizer.md)", path, c.sft.tokenizer.empty() ? "model.chat_template" : "model.tokenizer");
  return c;
}

std::vector<std::string> run_config_keys() {
  const std::string source = "run_config_keys";
  Result<TomlConfig> t = TomlConfig::parse("[run]\ndir = \"run\"\n[model]\nconfig = \"model.json\"\n", source);
  M1_CHECK(t.is_ok());
  Result<RunConfig> c = read_run_config(t.value(), source, "");
  M1_CHECK_MSG(c.is_ok(), c.status().message().c_str());  // the minimal config must stay valid
  const std::set<std::string>& keys = t.value().asked_keys();
  return std::vector<std::string>(keys.begin(), keys.end());
}

namespace {

// TOML scalars for run_config_to_toml.
std::string toml_string(const std::string& v) {
  std::string out = "\"";
  for (unsigned char ch : v) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (ch < 0x20 || ch == 0x7f) out += fmt::format("\\u{:04X}", unsigned(ch));
        else out += char(ch);
    }
  }
  return out + "\"";
}
// A path as the run uses it, absolute; "" stays "" (unset).
std::string toml_path(const std::string& p) {
  if (p.empty()) return toml_string(p);
  return toml_string(std::filesystem::absolute(p).lexically_normal().string());
}
// Shortest text that reads back to the same double, always a TOML float ("1.0", not "1").
std::string toml_double(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEni") == std::string::npos) s += ".0";
  return s;
}
std::string toml_bool(bool v) { return v ? "true" : "false"; }

}  // namespace

std::string run_config_to_toml(const RunConfig& c) {
  const bool is_cispo = c.objective.kind == Objective::kCispo || c.objective.kind == Objective::kCispoMask;
  std::string tasks = "[";
  for (size_t i = 0; i < c.tasks.size(); ++i) tasks += (i ? ", " : "") + toml_string(c.tasks[i]);
  tasks += "]";
  std::string o;
  auto kv = [&o](const char* key, const std::string& value) { o += fmt::format("{} = {}\n", key, value); };
  o += fmt::format("# The resolved run configuration of {}: every key, defaults filled in, paths absolute.\n",
                   c.source);
  o += "[run]\n";
  kv("dir", toml_path(c.run_dir));
  kv("seed", std::to_string(c.seed));
  kv("steps", std::to_string(c.steps));
  kv("max_seconds", toml_double(c.max_seconds));
  kv("max_staleness", std::to_string(c.max_staleness));
  kv("checkpoint_every", std::to_string(c.checkpoint_every));
  kv("eval_every", std::to_string(c.eval_every));
  kv("eval_examples", std::to_string(c.eval_examples));
  kv("threads", std::to_string(c.threads));
  kv("kernel_threads", std::to_string(c.kernel_threads));
  o += "\n[model]\n";
  kv("config", toml_path(c.model_config));
  kv("tokenizer", toml_path(c.sft.tokenizer));
  kv("chat_template", toml_string(c.sft.chat_template));
  o += "\n[sft]\n";
  kv("checkpoint", toml_path(c.sft_checkpoint));
  kv("steps", std::to_string(c.sft.steps));
  kv("batch", std::to_string(c.sft.batch));
  kv("lr", toml_double(c.sft.lr));
  kv("warmup", toml_double(c.sft.warmup));
  kv("threads", std::to_string(c.sft.threads));
  o += "\n[sampler]\n";
  kv("tasks", tasks);
  kv("prompts", toml_path(c.prompts_jsonl));
  kv("min_difficulty", std::to_string(c.min_difficulty));
  kv("max_difficulty", std::to_string(c.max_difficulty));
  kv("start_max_difficulty", std::to_string(c.start_max_difficulty));
  kv("difficulty_ramp_steps", std::to_string(c.difficulty_ramp_steps));
  kv("group_size", std::to_string(c.group_size));
  kv("batch_groups", std::to_string(c.batch_groups));
  kv("temperature", toml_double(c.temperature));
  kv("top_p", toml_double(c.top_p));
  kv("max_new", std::to_string(c.max_new));
  kv("overlong_cache", std::to_string(c.overlong_cache));
  kv("format_penalty", toml_double(c.format_penalty));
  kv("std_normalize", toml_bool(c.std_normalize));
  kv("dynamic_sampling", toml_bool(c.dynamic_sampling));
  kv("oversample", toml_double(c.oversample));
  kv("lookahead", std::to_string(c.lookahead));
  o += "\n[generator]\n";
  kv("count", std::to_string(c.generators));
  kv("max_batch", std::to_string(c.generator_batch));
  kv("repetition_n", std::to_string(c.repetition_n));
  kv("repetition_p", toml_double(c.repetition_p));
  o += "\n[judge]\n";
  kv("count", std::to_string(c.judges));
  kv("retries", std::to_string(c.judge_retries));
  o += "\n[learner]\n";
  kv("objective", toml_string(c.objective_name));
  kv("eps_high", toml_double(is_cispo ? c.objective.eps_high_is : c.objective.clip_high));
  kv("minibatches", std::to_string(c.minibatches));
  kv("lr", toml_double(c.lr));
  kv("clip", toml_double(c.clip));
  kv("weight_decay", toml_double(c.weight_decay));
  kv("share_prompts", toml_bool(c.share_prompts));
  return o;
}

}  // namespace m1
