// `m1rl run` configs: every shipped config loads; bad values name the file and the key.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>

#include "actors/pipeline/run_config.h"
#include "base/file.h"

using namespace m1;

namespace {
std::string write_tmp(const std::string& name, const std::string& text) {
  auto p = (std::filesystem::temp_directory_path() / ("m1-runcfg-" + std::to_string(getpid()) + "-" + name)).string();
  REQUIRE(write_file(p, text).is_ok());
  return p;
}
const std::string kTiny = std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json";
const std::string kOk = "[run]\ndir = \"x\"\n[model]\nconfig = \"" + kTiny + "\"\n";
std::string tmp_dir(const std::string& name) {
  auto d = (std::filesystem::temp_directory_path() / ("m1-runcfg-" + std::to_string(getpid()) + "-" + name)).string();
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}
}  // namespace

TEST_CASE("shipped run configs load") {
  for (const char* f : {"demo.toml", "test-run.toml", "test-crash.toml"}) {
    auto c = load_run_config(std::string(M1_SOURCE_DIR) + "/configs/" + f, "");
    CHECK_MESSAGE(c.is_ok(), f << ": " << c.status().message());
  }
}

TEST_CASE("bad run configs give an error naming the file and the key") {
  struct Case {
    std::string text, key;
  };
  const std::vector<Case> cases = {
      {"[model]\nconfig = \"" + kTiny + "\"\n", "run.dir"},
      {kOk + "[learner]\nobjective = \"ppo2\"\n", "learner.objective"},
      {kOk + "[sampler]\ngroup_size = 1\n", "sampler.group_size"},
      {kOk + "[sampler]\ntemperature = \"hot\"\n", "sampler.temperature"},
      {kOk + "[sampler]\ntasks = [\"nope\"]\n", "sampler.tasks"},
      {kOk + "[run]\nmax_staleness = -1\n", "run"},
      {"[run]\ndir = \"x\"\n", "model.config"},
      {kOk + "[sampler]\nmax_new = 8\noverlong_cache = 8\n", "sampler.overlong_cache"},
      {kOk + "[sampler]\nformat_penalty = -1\n", "sampler.format_penalty"},
      {kOk + "[sampler]\nmax_difficulty = 3\nstart_max_difficulty = 4\n", "sampler.start_max_difficulty"},
      {kOk + "[sampler]\ndifficulty_ramp_steps = -5\n", "sampler.difficulty_ramp_steps"},
      {kOk + "[sampler]\noversample = 0.5\n", "sampler.oversample"},
      {kOk + "[sampler]\noversample = 17.0\n", "sampler.oversample"},
      {kOk + "[sampler]\nlookahead = -1\n", "sampler.lookahead"},
      {"[run]\ndir = \"x\"\nkernel_threads = 0\n[model]\nconfig = \"" + kTiny + "\"\n", "run.kernel_threads"},
      {kOk + "[sampler]\nlookahead = 1.5\n", "sampler.lookahead"},
      {"[run]\ndir = \"x\"\nmax_seconds = -1\n[model]\nconfig = \"" + kTiny + "\"\n", "run.max_seconds"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string p = write_tmp("bad" + std::to_string(i++), c.text);
    auto r = load_run_config(p, "");
    CAPTURE(c.text);
    REQUIRE(!r.is_ok());
    CHECK(r.status().message().find(p) != std::string::npos);
    CHECK(r.status().message().find(c.key) != std::string::npos);
  }
  const std::string p = write_tmp("syntax", "[run\n");
  auto r = load_run_config(p, "");
  CHECK(!r.is_ok());
  CHECK(r.status().message().find(p) != std::string::npos);
}

TEST_CASE("difficulty schedule and time budget keys") {
  auto d = load_run_config(write_tmp("sched0", kOk + "[sampler]\nmax_difficulty = 4\n"), "");
  REQUIRE(d.is_ok());
  CHECK(d->start_max_difficulty == 4);  // no ramp: always the maximum
  CHECK(d->difficulty_ramp_steps == 0);
  CHECK(d->max_seconds == 0);
  CHECK(d->oversample == 1.0);
  CHECK(d->kernel_threads == 1);
  CHECK(d->lookahead >= d->max_staleness);  // default: the staleness bound alone limits issuing
  auto r = load_run_config(write_tmp("sched1", "[run]\ndir = \"x\"\nmax_seconds = 900\n[model]\nconfig = \"" + kTiny + "\"\n"
                                                "[sampler]\nmin_difficulty = 1\n"
                                                     "max_difficulty = 4\nstart_max_difficulty = 2\n"
                                                     "difficulty_ramp_steps = 100\noversample = 2.5\n"
                                                     "lookahead = 1\n"),
                           "");
  REQUIRE(r.is_ok());
  CHECK(r->start_max_difficulty == 2);
  CHECK(r->difficulty_ramp_steps == 100);
  CHECK(r->max_seconds == 900);
  CHECK(r->oversample == 2.5);
  CHECK(r->lookahead == 1);
}

TEST_CASE("--run-dir overrides run.dir") {
  const std::string p = write_tmp("override", kOk);
  auto r = load_run_config(p, "/tmp/elsewhere");
  REQUIRE(r.is_ok());
  CHECK(r->run_dir == "/tmp/elsewhere");
}

TEST_CASE("unknown keys and sections are errors, with the nearest known name") {
  auto k = load_run_config(write_tmp("unknown-key", kOk + "[sampler]\ntemprature = 1.0\n"), "");
  REQUIRE(!k.is_ok());
  CHECK_MESSAGE(k.status().message().find("unknown key 'sampler.temprature' (did you mean 'sampler.temperature'?)") !=
                    std::string::npos,
                k.status().message());
  auto s = load_run_config(write_tmp("unknown-section", kOk + "[samplr]\ntemperature = 1.0\n"), "");
  REQUIRE(!s.is_ok());
  CHECK_MESSAGE(s.status().message().find("unknown section '[samplr]' (did you mean '[sampler]'?)") != std::string::npos,
                s.status().message());
  auto far = load_run_config(write_tmp("unknown-far", kOk + "[zzzzzzzzzz]\nq = 1\n"), "");
  REQUIRE(!far.is_ok());
  CHECK(far.status().message().find("did you mean") == std::string::npos);
}

TEST_CASE("NaN and infinities are refused where numbers enter a config") {
  for (const char* v : {"nan", "inf", "-inf"}) {
    auto r = load_run_config(write_tmp(std::string("nan-") + v, kOk + "[learner]\nlr = " + v + "\n"), "");
    REQUIRE(!r.is_ok());
    CHECK(r.status().message().find("learner.lr") != std::string::npos);
  }
}

TEST_CASE("paths in a config resolve against the config file's folder") {
  const std::string d = tmp_dir("relative");
  std::filesystem::create_directories(d + "/cfg/models");
  std::filesystem::copy_file(kTiny, d + "/cfg/models/tiny.json");
  REQUIRE(write_file(d + "/cfg/data.jsonl", "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n").is_ok());
  REQUIRE(write_file(d + "/cfg/run.toml", "[run]\ndir = \"../runs/x\"\n[model]\nconfig = \"models/tiny.json\"\n"
                                          "[sampler]\nprompts = \"data.jsonl\"\n")
              .is_ok());
  auto r = load_run_config(d + "/cfg/run.toml", "");
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  CHECK(r->model_config == d + "/cfg/models/tiny.json");
  CHECK(r->prompts_jsonl == d + "/cfg/data.jsonl");
  CHECK(r->run_dir == d + "/runs/x");  // normalised
  // absolute paths stay as written; --run-dir stays as given
  auto o = load_run_config(d + "/cfg/run.toml", "rel/dir");
  REQUIRE(o.is_ok());
  CHECK(o->run_dir == "rel/dir");
}

TEST_CASE("an empty task set needs prompts and an SFT checkpoint; bad prompt files are named with their line") {
  const std::string d = tmp_dir("tasks");
  auto none = load_run_config(write_tmp("tasks-none", kOk + "[sampler]\ntasks = []\n"), "");
  REQUIRE(!none.is_ok());
  CHECK(none.status().message().find("sampler.tasks") != std::string::npos);
  REQUIRE(write_file(d + "/ok.jsonl", "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n").is_ok());
  auto no_sft = load_run_config(write_tmp("tasks-nosft", kOk + "[sampler]\ntasks = []\nprompts = \"" + d + "/ok.jsonl\"\n"), "");
  REQUIRE(!no_sft.is_ok());
  CHECK(no_sft.status().message().find("sft.checkpoint") != std::string::npos);
  REQUIRE(write_file(d + "/bad.jsonl", "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n{\"prompt\": \"2+2=\"}\n").is_ok());
  auto bad = load_run_config(write_tmp("prompts-bad", kOk + "[sampler]\nprompts = \"" + d + "/bad.jsonl\"\n"), "");
  REQUIRE(!bad.is_ok());
  CHECK_MESSAGE(bad.status().message().find(d + "/bad.jsonl:2") != std::string::npos, bad.status().message());
  auto missing = load_run_config(write_tmp("prompts-missing", kOk + "[sampler]\nprompts = \"" + d + "/nope.jsonl\"\n"), "");
  REQUIRE(!missing.is_ok());
  CHECK(missing.status().message().find(d + "/nope.jsonl") != std::string::npos);
  auto model = load_run_config(write_tmp("model-missing", "[run]\ndir = \"x\"\n[model]\nconfig = \"" + d + "/no.json\"\n"), "");
  REQUIRE(!model.is_ok());
  CHECK(model.status().message().find("model.config") != std::string::npos);
}

#include <set>

namespace {
std::string abs_path(const std::string& p) {
  return p.empty() ? p : std::filesystem::absolute(p).lexically_normal().string();
}
// Every field a run uses (source and the non-config flags quiet, allow_config_change aside).
// The dotted keys of TOML written as "[section]" lines and "key = value" lines.
std::set<std::string> shown_keys(const std::string& text) {
  std::set<std::string> keys;
  std::string section;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') section = line.substr(1, line.find(']') - 1);
    else if (size_t eq = line.find(" = "); eq != std::string::npos) keys.insert(section + "." + line.substr(0, eq));
  }
  return keys;
}
void check_same_run_config(const RunConfig& a, const RunConfig& b) {
  CHECK(abs_path(a.run_dir) == abs_path(b.run_dir));
  CHECK(a.seed == b.seed);
  CHECK(a.steps == b.steps);
  CHECK(a.max_seconds == b.max_seconds);
  CHECK(a.max_staleness == b.max_staleness);
  CHECK(a.checkpoint_every == b.checkpoint_every);
  CHECK(a.eval_every == b.eval_every);
  CHECK(a.eval_examples == b.eval_examples);
  CHECK(a.threads == b.threads);
  CHECK(a.kernel_threads == b.kernel_threads);
  CHECK(abs_path(a.model_config) == abs_path(b.model_config));
  CHECK(abs_path(a.sft_checkpoint) == abs_path(b.sft_checkpoint));
  CHECK(abs_path(a.sft.model_config) == abs_path(b.sft.model_config));
  CHECK(a.sft.init_from == b.sft.init_from);
  CHECK(a.sft.seed == b.sft.seed);
  CHECK(a.sft.tasks == b.sft.tasks);
  CHECK(a.sft.min_difficulty == b.sft.min_difficulty);
  CHECK(a.sft.max_difficulty == b.sft.max_difficulty);
  CHECK(a.sft.steps == b.sft.steps);
  CHECK(a.sft.batch == b.sft.batch);
  CHECK(a.sft.lr == b.sft.lr);
  CHECK(a.sft.min_lr_frac == b.sft.min_lr_frac);
  CHECK(a.sft.warmup == b.sft.warmup);
  CHECK(a.sft.weight_decay == b.sft.weight_decay);
  CHECK(a.sft.clip == b.sft.clip);
  CHECK(a.sft.threads == b.sft.threads);
  CHECK(a.sft.checkpoint_every == b.sft.checkpoint_every);
  CHECK(a.sft.keep_checkpoints == b.sft.keep_checkpoints);
  CHECK(a.sft.eval_every == b.sft.eval_every);
  CHECK(a.sft.eval_examples == b.sft.eval_examples);
  CHECK(a.sft.max_new == b.sft.max_new);
  CHECK(abs_path(a.sft.out_dir) == abs_path(b.sft.out_dir));
  CHECK(a.tasks == b.tasks);
  CHECK(abs_path(a.prompts_jsonl) == abs_path(b.prompts_jsonl));
  CHECK(a.min_difficulty == b.min_difficulty);
  CHECK(a.max_difficulty == b.max_difficulty);
  CHECK(a.start_max_difficulty == b.start_max_difficulty);
  CHECK(a.difficulty_ramp_steps == b.difficulty_ramp_steps);
  CHECK(a.group_size == b.group_size);
  CHECK(a.batch_groups == b.batch_groups);
  CHECK(a.temperature == b.temperature);
  CHECK(a.top_p == b.top_p);
  CHECK(a.max_new == b.max_new);
  CHECK(a.overlong_cache == b.overlong_cache);
  CHECK(a.format_penalty == b.format_penalty);
  CHECK(a.std_normalize == b.std_normalize);
  CHECK(a.oversample == b.oversample);
  CHECK(a.lookahead == b.lookahead);
  CHECK(a.generators == b.generators);
  CHECK(a.generator_batch == b.generator_batch);
  CHECK(a.repetition_n == b.repetition_n);
  CHECK(a.repetition_p == b.repetition_p);
  CHECK(a.judges == b.judges);
  CHECK(a.judge_retries == b.judge_retries);
  CHECK(a.objective_name == b.objective_name);
  CHECK(a.objective.kind == b.objective.kind);
  CHECK(a.objective.eps_low_is == b.objective.eps_low_is);
  CHECK(a.objective.eps_high_is == b.objective.eps_high_is);
  CHECK(a.objective.clip_low == b.objective.clip_low);
  CHECK(a.objective.clip_high == b.objective.clip_high);
  CHECK(a.objective.token_level == b.objective.token_level);
  CHECK(a.minibatches == b.minibatches);
  CHECK(a.lr == b.lr);
  CHECK(a.clip == b.clip);
  CHECK(a.weight_decay == b.weight_decay);
  CHECK(a.share_prompts == b.share_prompts);
}
}  // namespace

TEST_CASE("run_config_to_toml: every key, and it loads back to an equal config") {
  const std::string d = tmp_dir("show");
  // An SFT checkpoint to start from: a folder with a config.json.
  const std::string ck = d + "/ck";
  std::filesystem::create_directories(ck);
  std::filesystem::copy_file(kTiny, ck + "/config.json");
  // Shipped configs, a minimal one (all defaults), and one far from the defaults.
  std::vector<std::string> configs;
  for (const char* f : {"demo.toml", "test-run.toml", "test-crash.toml"})
    configs.push_back(std::string(M1_SOURCE_DIR) + "/configs/" + f);
  configs.push_back(write_tmp("show-min.toml", kOk));
  configs.push_back(write_tmp("show-far.toml",
                              "[run]\ndir = \"runs/a b\\\"q\"\nseed = 9223372036854775807\nmax_seconds = 0.1\n"
                              "kernel_threads = 3\n[sft]\ncheckpoint = \"" + ck + "\"\nlr = 1e-7\n"
                              "[sampler]\ntasks = [\"add\", \"sort\", \"add_steps\"]\nmax_difficulty = 4\n"
                              "start_max_difficulty = 2\ndifficulty_ramp_steps = 7\ntemperature = 0.7\n"
                              "top_p = 0.3\nmax_new = 20\noverlong_cache = 4\nstd_normalize = false\n"
                              "oversample = 1.5\nlookahead = 0\n[generator]\nrepetition_n = 5\n"
                              "repetition_p = 0.3\n[learner]\nobjective = \"dapo\"\neps_high = 0.33\n"
                              "weight_decay = 0.01\nshare_prompts = false\n"));
  const std::vector<std::string> keys = run_config_keys();
  REQUIRE(!keys.empty());
  int i = 0;
  for (const std::string& path : configs) {
    CAPTURE(path);
    auto a = load_run_config(path, "");
    REQUIRE_MESSAGE(a.is_ok(), a.status().message());
    const std::string text = run_config_to_toml(a.value());
    CAPTURE(text);
    const std::set<std::string> shown = shown_keys(text);
    for (const std::string& k : keys) CHECK_MESSAGE(shown.count(k) == 1, "missing key " << k);
    CHECK(shown.size() == keys.size());
    // Loaded back from another folder: the absolute paths keep their meaning.
    const std::string back_path = d + "/back-" + std::to_string(i++) + ".toml";
    REQUIRE(write_file(back_path, text).is_ok());
    auto b = load_run_config(back_path, "");
    REQUIRE_MESSAGE(b.is_ok(), b.status().message());
    check_same_run_config(a.value(), b.value());
    // The same text again, but for the first line (a comment naming the source file).
    const std::string again = run_config_to_toml(b.value());
    CHECK(again.substr(again.find('\n')) == text.substr(text.find('\n')));
  }
  // --run-dir replaces run.dir in what is shown.
  auto o = load_run_config(configs[0], d + "/elsewhere");
  REQUIRE(o.is_ok());
  CHECK(run_config_to_toml(o.value()).find("dir = \"" + d + "/elsewhere\"") != std::string::npos);
}
