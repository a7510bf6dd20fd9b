// Config rows: every key of `m1rl run` (actors/pipeline/run_config.cc) and `m1rl sft`
// (model/sft.cc load_sft_config) with a wrong type and out of range, generated from a table of
// (key, type, lo, hi) copied from the loaders; then unknown keys and sections, TOML syntax,
// cross-key rules, relative paths from another working directory, and resuming a run directory
// with a changed config.
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/badinput/cases.h"

namespace m1::badinput {

// ---- Toml ----

Toml& Toml::set(const std::string& dotted, const std::string& value) {
  const size_t dot = dotted.find('.');
  const std::string sec = dotted.substr(0, dot), key = dotted.substr(dot + 1);
  for (auto& [s, kv] : sections_) {
    if (s != sec) continue;
    for (auto& [k, v] : kv)
      if (k == key) {
        v = value;
        return *this;
      }
    kv.emplace_back(key, value);
    return *this;
  }
  sections_.push_back({sec, {{key, value}}});
  return *this;
}

Toml& Toml::erase(const std::string& dotted) {
  const size_t dot = dotted.find('.');
  const std::string sec = dotted.substr(0, dot), key = dotted.substr(dot + 1);
  for (auto& [s, kv] : sections_)
    if (s == sec) std::erase_if(kv, [&](const auto& p) { return p.first == key; });
  return *this;
}

std::string Toml::text() const {
  std::string out;
  for (const auto& [s, kv] : sections_) {
    out += "[" + s + "]\n";
    for (const auto& [k, v] : kv) out += k + " = " + v + "\n";
    out += "\n";
  }
  return out;
}

Toml base_run() {
  Toml t;
  t.set("run.dir", "\"r\"").set("run.seed", "3").set("run.steps", "2").set("run.checkpoint_every", "1");
  t.set("run.eval_every", "0").set("run.eval_examples", "8").set("run.threads", "2");
  t.set("model.config", "\"tiny.json\"");
  t.set("sft.steps", "150").set("sft.batch", "32").set("sft.lr", "1e-2").set("sft.warmup", "5").set("sft.threads", "1");
  t.set("sampler.tasks", "[\"add\"]").set("sampler.min_difficulty", "1").set("sampler.max_difficulty", "1");
  t.set("sampler.group_size", "4").set("sampler.batch_groups", "4").set("sampler.max_new", "8");
  t.set("generator.count", "1").set("generator.max_batch", "8");
  t.set("learner.lr", "1e-3");
  return t;
}

Toml base_sft() {
  Toml t;
  t.set("model.config", "\"tiny.json\"").set("model.seed", "1");
  t.set("data.tasks", "[\"add\"]").set("data.min_difficulty", "1").set("data.max_difficulty", "1");
  t.set("train.steps", "2").set("train.batch", "4").set("train.lr", "1e-2").set("train.warmup", "1");
  t.set("train.threads", "1").set("train.checkpoint_every", "1").set("train.eval_every", "0");
  t.set("train.eval_examples", "4").set("train.max_new", "8");
  t.set("output.dir", "\"out\"");
  return t;
}

std::vector<File> run_files(const Toml& t) {
  return {{"run.toml", t.text()}, {"tiny.json", "@copy:{src}/configs/models/tiny.json"}};
}

std::vector<File> sft_files(const Toml& t) {
  return {{"sft.toml", t.text()}, {"tiny.json", "@copy:{src}/configs/models/tiny.json"}};
}

std::vector<File> finished_run_files(const Toml& t, const std::string& from) {
  return {{"run.toml", t.text()}, {"tiny.json", "@copy:{shared}/tiny.json"}, {"r", "@copy:{shared}/" + from}};
}

namespace {

enum class Type { kInt, kDouble, kBool, kString, kStrings, kPath };

struct Key {
  const char* key;
  Type type;
  double lo = 0, hi = 0;  // numbers: the accepted range; hi = inf: no upper bound
};

constexpr double kInf = std::numeric_limits<double>::infinity();

// m1rl run: actors/pipeline/run_config.cc, in the order it reads them.
const Key kRunKeys[] = {
    {"run.dir", Type::kPath},
    {"run.seed", Type::kInt, 0, kInf},
    {"run.steps", Type::kInt, 1, 1e8},
    {"run.max_staleness", Type::kInt, 0, 1000},
    {"run.max_seconds", Type::kDouble, 0, 1e9},
    {"run.checkpoint_every", Type::kInt, 1, 1e8},
    {"run.eval_every", Type::kInt, 0, 1e8},
    {"run.eval_examples", Type::kInt, 1, 1e6},
    {"run.threads", Type::kInt, 1, 256},
    {"run.kernel_threads", Type::kInt, 1, 256},
    {"model.config", Type::kPath},
    {"sft.checkpoint", Type::kPath},
    {"sampler.tasks", Type::kStrings},
    {"sampler.prompts", Type::kPath},
    {"sampler.min_difficulty", Type::kInt, 1, 100},
    {"sampler.max_difficulty", Type::kInt, 1, 100},
    {"sampler.start_max_difficulty", Type::kInt, 1, 100},
    {"sampler.difficulty_ramp_steps", Type::kInt, 0, 1e8},
    {"sampler.group_size", Type::kInt, 2, 4096},
    {"sampler.batch_groups", Type::kInt, 1, 100000},
    {"sampler.temperature", Type::kDouble, 0, 100},
    {"sampler.top_p", Type::kDouble, 1e-6, 1},
    {"sampler.max_new", Type::kInt, 1, 1 << 20},
    {"sampler.overlong_cache", Type::kInt, 0, 1 << 20},
    {"sampler.format_penalty", Type::kDouble, 0, 100},
    {"sampler.std_normalize", Type::kBool},
    {"sampler.dynamic_sampling", Type::kBool},
    {"sampler.oversample", Type::kDouble, 1, 16},
    {"sampler.lookahead", Type::kInt, 0, 1000},
    {"generator.count", Type::kInt, 1, 1024},
    {"generator.max_batch", Type::kInt, 1, 4096},
    {"generator.repetition_n", Type::kInt, 0, 1 << 20},
    {"generator.repetition_p", Type::kDouble, 0, 1},
    {"judge.count", Type::kInt, 1, 1024},
    {"judge.retries", Type::kInt, 0, 99},
    {"learner.objective", Type::kString},
    {"learner.eps_high", Type::kDouble, 1e-6, 1e6},
    {"learner.minibatches", Type::kInt, 1, 1024},
    {"learner.lr", Type::kDouble, 0, 10},
    {"learner.clip", Type::kDouble, 0, 1e9},
    {"learner.weight_decay", Type::kDouble, 0, 10},
    {"learner.share_prompts", Type::kBool},
    {"sft.steps", Type::kInt, 1, 1e8},
    {"sft.batch", Type::kInt, 1, 1 << 20},
    {"sft.lr", Type::kDouble, 0, 10},
    {"sft.warmup", Type::kDouble, 0, 1e9},
    {"sft.threads", Type::kInt, 1, 256},
};

// m1rl sft: model/sft.cc load_sft_config.
const Key kSftKeys[] = {
    {"model.config", Type::kPath},
    {"model.init_from", Type::kPath},
    {"model.seed", Type::kInt, 0, kInf},
    {"data.tasks", Type::kStrings},
    {"data.min_difficulty", Type::kInt, 1, 100},
    {"data.max_difficulty", Type::kInt, 1, 100},
    {"train.steps", Type::kInt, 1, 1e8},
    {"train.batch", Type::kInt, 1, 1 << 20},
    {"train.lr", Type::kDouble, 0, 10},
    {"train.warmup", Type::kDouble, 0, 1e9},
    {"train.weight_decay", Type::kDouble, 0, 10},
    {"train.clip", Type::kDouble, 0, 1e9},
    {"train.threads", Type::kInt, 1, 256},
    {"train.checkpoint_every", Type::kInt, 1, 1e8},
    {"train.eval_every", Type::kInt, 0, 1e8},
    {"train.eval_examples", Type::kInt, 1, 1e6},
    {"train.max_new", Type::kInt, 1, 1e6},
    {"output.dir", Type::kPath},
};

// A double as a TOML float (always with a '.' or an exponent).
std::string toml_float(double x) {
  std::string s = fmt::format("{}", x);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// (value, why) pairs that must be refused for KEY.
std::vector<std::pair<std::string, std::string>> bad_values(const Key& k) {
  std::vector<std::pair<std::string, std::string>> v;
  switch (k.type) {
    case Type::kInt:
      v = {{"\"7\"", "wrong type: a string"}, {"2.5", "wrong type: a float"}};
      v.push_back({fmt::format("{}", int64_t(k.lo) - 1), "below the minimum"});
      if (!std::isinf(k.hi)) {
        v.push_back({fmt::format("{}", int64_t(k.hi) + 1), "above the maximum"});
        v.push_back({"9223372036854775807", "INT64_MAX, above the maximum"});
      }
      break;
    case Type::kDouble:
      v = {{"\"0.5\"", "wrong type: a string"}, {"true", "wrong type: a bool"}};
      v.push_back({toml_float(k.lo - 1), "below the minimum"});
      v.push_back({toml_float(k.hi + 1), "above the maximum"});
      v.push_back({"nan", "NaN"});
      v.push_back({"inf", "infinity"});
      v.push_back({"-inf", "minus infinity"});
      break;
    case Type::kBool: v = {{"\"yes\"", "wrong type: a string"}, {"1", "wrong type: an integer"}}; break;
    case Type::kString: v = {{"5", "wrong type: an integer"}, {"[\"cispo\"]", "wrong type: an array"}}; break;
    case Type::kStrings: v = {{"\"add\"", "wrong type: a string"}, {"[1]", "wrong type: an array of integers"}}; break;
    case Type::kPath: v = {{"5", "wrong type: an integer"}, {"[\"x\"]", "wrong type: an array"}}; break;
  }
  return v;
}

std::vector<Case> key_cases(const char* cmd, const Key* keys, size_t n, const Toml& base, bool run) {
  std::vector<Case> out;
  for (size_t i = 0; i < n; ++i) {
    const Key& k = keys[i];
    for (const auto& [value, why] : bad_values(k)) {
      Toml t = base;
      t.set(k.key, value);
      Case c;
      c.name = fmt::format("{}: {} = {} ({})", cmd, k.key, value, why);
      c.kind = Kind::kConfig;
      c.files = run ? run_files(t) : sft_files(t);
      c.args = run ? "run {dir}/run.toml" : "sft {dir}/sft.toml";
      c.expect = Expect::kError;
      c.words = {k.key};
      c.post = {absent(run ? "{dir}/r" : "{dir}/out")};
      out.push_back(std::move(c));
    }
  }
  return out;
}

Case run_row(std::string name, const Toml& t, std::vector<std::string> words, Expect e = Expect::kError) {
  Case c;
  c.name = std::move(name);
  c.kind = Kind::kConfig;
  c.files = run_files(t);
  c.args = "run {dir}/run.toml";
  c.expect = e;
  c.words = std::move(words);
  c.post = {absent("{dir}/r")};
  return c;
}

Case sft_row(std::string name, const Toml& t, std::vector<std::string> words) {
  Case c;
  c.name = std::move(name);
  c.kind = Kind::kConfig;
  c.files = sft_files(t);
  c.args = "sft {dir}/sft.toml";
  c.words = std::move(words);
  c.post = {absent("{dir}/out")};
  return c;
}

// The tiny model's config.json with one change.
std::string tiny_with(const std::string& key, const nlohmann::json& value) {
  nlohmann::json j = nlohmann::json::parse(src_file("configs/models/tiny.json"));
  j[key] = value;
  return j.dump(2);
}

}  // namespace

std::vector<Case> run_key_cases() {
  return key_cases("run", kRunKeys, std::size(kRunKeys), base_run(), true);
}

std::vector<Case> sft_key_cases() {
  return key_cases("sft", kSftKeys, std::size(kSftKeys), base_sft(), false);
}

std::vector<Case> config_cases() {
  std::vector<Case> v;
  const Toml b = base_run();
  v.push_back(run_row("unknown key in a known section", Toml(b).set("sampler.temprature", "1.0"),
                      {"temprature", "did you mean", "sampler.temperature"}));
  v.push_back(run_row("misspelled section", Toml(b).set("samplr.temperature", "1.0"),
                      {"samplr", "did you mean", "sampler"}));
  v.push_back(run_row("a key outside every section", b, {"steps"}));
  v.back().files[0].content = "steps = 3\n" + b.text();
  v.push_back(run_row("a section given as a value", b, {"judge"}));
  v.back().files[0].content = "judge = 5\n" + b.text();
  {
    Case c = run_row("TOML syntax error names file:line:col", b, {"{dir}/run.toml:3:"});
    c.files[0].content = "[run]\ndir = \"r\"\nsteps = = 2\n";
    c.post.push_back(output_matches(R"(run\.toml:3:\d+)", "FILE:3:COL"));
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("TOML unclosed section header", b, {"{dir}/run.toml:4:"});
    c.files[0].content = "[run]\ndir = \"r\"\n\n[sampler\ntasks = [\"add\"]\n";
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("TOML duplicate key", b, {"{dir}/run.toml:3:"});
    c.files[0].content = "[run]\nsteps = 2\nsteps = 3\n";
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("config file is binary garbage", b, {"{dir}/run.toml"});
    c.files[0].content = std::string("\x00\xff\xfe[run\x01\n", 9);
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("empty config file: run.dir missing", b, {"run.dir"});
    c.files[0].content = "";
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("config file does not exist", b, {"{dir}/nope.toml"});
    c.args = "run {dir}/nope.toml";
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("config path is a folder", b, {"{dir}/cfgdir"});
    c.files.push_back({"cfgdir/x", "x"});
    c.args = "run {dir}/cfgdir";
    v.push_back(std::move(c));
  }
  v.push_back(run_row("min_difficulty > max_difficulty",
                      Toml(b).set("sampler.min_difficulty", "3").set("sampler.max_difficulty", "2"),
                      {"sampler.min_difficulty", "sampler.max_difficulty"}));
  v.push_back(run_row("start_max_difficulty above max_difficulty",
                      Toml(b).set("sampler.max_difficulty", "2").set("sampler.start_max_difficulty", "3"),
                      {"sampler.start_max_difficulty"}));
  v.push_back(run_row("overlong_cache >= max_new", Toml(b).set("sampler.overlong_cache", "8"),
                      {"sampler.overlong_cache"}));
  v.push_back(run_row("sampler.tasks = [] and no prompts", Toml(b).set("sampler.tasks", "[]"), {"sampler.tasks"}));
  {
    Case c = run_row("sampler.tasks = [] with prompts but no sft.checkpoint",
                     Toml(b).set("sampler.tasks", "[]").set("sampler.prompts", "\"prompts.jsonl\""),
                     {"sampler.tasks"});
    c.files.push_back({"prompts.jsonl", "{\"prompt\":\"1+1=\",\"answer\":\"2\"}\n"});
    v.push_back(std::move(c));
  }
  v.push_back(run_row("unknown task", Toml(b).set("sampler.tasks", "[\"add\", \"mul\"]"), {"sampler.tasks", "mul"}));
  v.push_back(run_row("empty task name", Toml(b).set("sampler.tasks", "[\"\"]"), {"sampler.tasks"}));
  v.push_back(run_row("unknown objective", Toml(b).set("learner.objective", "\"ppo\""), {"learner.objective", "ppo"}));
  v.push_back(run_row("model.config missing", Toml(b).erase("model.config"), {"model.config"}));
  v.push_back(run_row("run.dir empty", Toml(b).set("run.dir", "\"\""), {"run.dir"}));
  v.push_back(run_row("model.config does not exist", Toml(b).set("model.config", "\"nope.json\""),
                      {"{dir}/nope.json"}));
  {
    Case c = run_row("model.config not JSON", Toml(b).set("model.config", "\"bad.json\""), {"{dir}/bad.json"});
    c.files.push_back({"bad.json", "{\"hidden_size\": 32,"});
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("model.config with hidden_size 0", Toml(b).set("model.config", "\"zero.json\""),
                     {"hidden_size", "{dir}/zero.json"});
    c.files.push_back({"zero.json", tiny_with("hidden_size", 0)});
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("model.config is a folder", Toml(b).set("model.config", "\"cfgdir\""), {"{dir}/cfgdir"});
    c.files.push_back({"cfgdir/x", "x"});
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("sft.checkpoint is not a model folder", Toml(b).set("sft.checkpoint", "\"ck\""),
                     {"sft.checkpoint", "{dir}/ck"});
    c.files.push_back({"ck/readme", "x"});
    v.push_back(std::move(c));
  }
  v.push_back(run_row("sft.checkpoint does not exist", Toml(b).set("sft.checkpoint", "\"nock\""),
                      {"sft.checkpoint", "{dir}/nock"}));
  {
    Case c = run_row("run.dir below a file", Toml(b).set("run.dir", "\"tiny.json/r\""), {"{dir}/tiny.json"});
    c.post.clear();
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("--run-dir where nothing can be written", b, {"/proc/m1rl-badinput"});
    c.args = "run {dir}/run.toml --run-dir /proc/m1rl-badinput/r";
    v.push_back(std::move(c));
  }
  {
    Case c = run_row("--run-dir without a value", b, {"--run-dir"}, Expect::kUsage);
    c.args = "run {dir}/run.toml --run-dir";
    v.push_back(std::move(c));
  }
  // m1rl sft
  const Toml s = base_sft();
  v.push_back(sft_row("sft: model.config and model.init_from both", Toml(s).set("model.init_from", "\"m\""),
                      {"model.init_from", "model.config"}));
  v.push_back(sft_row("sft: neither model.config nor model.init_from", Toml(s).erase("model.config"),
                      {"model.config"}));
  v.push_back(sft_row("sft: data.tasks = []", Toml(s).set("data.tasks", "[]"), {"data.tasks"}));
  v.push_back(sft_row("sft: unknown task", Toml(s).set("data.tasks", "[\"mul\"]"), {"data.tasks", "mul"}));
  v.push_back(sft_row("sft: min_difficulty > max_difficulty",
                      Toml(s).set("data.min_difficulty", "3").set("data.max_difficulty", "2"),
                      {"data.min_difficulty", "data.max_difficulty"}));
  v.push_back(sft_row("sft: output.dir missing", Toml(s).erase("output.dir"), {"output.dir"}));
  v.push_back(sft_row("sft: unknown key", Toml(s).set("train.stpes", "3"), {"stpes", "did you mean", "train.steps"}));
  v.push_back(sft_row("sft: misspelled section", Toml(s).set("trian.steps", "3"), {"trian", "did you mean", "train"}));
  v.push_back(sft_row("sft: model.init_from is not a model", Toml(s).erase("model.config").set("model.init_from", "\"m\""),
                      {"{dir}/m"}));
  v.push_back(sft_row("sft: output.dir where nothing can be written", Toml(s).set("output.dir", "\"/proc/m1rl-badinput/out\""),
                      {"/proc/m1rl-badinput"}));
  v.push_back(sft_row("sft: model.config does not exist", Toml(s).set("model.config", "\"nope.json\""),
                      {"{dir}/nope.json"}));
  {
    Case c = sft_row("sft: TOML syntax error", s, {"{dir}/sft.toml:2:"});
    c.files[0].content = "[train]\nsteps 2\n";
    v.push_back(std::move(c));
  }
  {
    Case c = sft_row("sft: the held-out set covers every prompt", Toml(s).set("train.eval_examples", "1000000"),
                     {"train.eval_examples"});
    c.post.clear();
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> config_path_cases() {
  std::vector<Case> v;
  const Toml b = base_run();
  auto in_cfg = [](const Toml& t, const char* name) {
    return std::vector<File>{{std::string("cfg/") + name, t.text()},
                             {"cfg/tiny.json", "@copy:{src}/configs/models/tiny.json"}};
  };
  {
    Case c;
    c.name = "run: paths resolve against the config's folder (cwd /)";
    c.kind = Kind::kConfig;
    c.files = in_cfg(b, "run.toml");
    c.args = "run {dir}/cfg/run.toml";
    c.cwd = "/";
    c.expect = Expect::kOk;
    c.post = {present("{dir}/cfg/r/checkpoints"), present("{dir}/cfg/r/sft")};
    c.timeout_s = 180;
    v.push_back(std::move(c));
  }
  {
    Case c;
    c.name = "run: a relative config path from another cwd";
    c.kind = Kind::kConfig;
    c.files = in_cfg(b, "run.toml");
    c.files.push_back({"elsewhere/.keep", ""});
    c.args = "run ../cfg/run.toml";
    c.cwd = "{dir}/elsewhere";
    c.expect = Expect::kOk;
    c.post = {present("{dir}/cfg/r/checkpoints"), absent("{dir}/elsewhere/r")};
    c.timeout_s = 180;
    v.push_back(std::move(c));
  }
  {
    Case c;
    c.name = "run: model.config missing names the resolved path; no run dir";
    c.kind = Kind::kConfig;
    c.files = in_cfg(Toml(b).set("model.config", "\"nope.json\""), "run.toml");
    c.args = "run {dir}/cfg/run.toml";
    c.cwd = "/";
    c.words = {"{dir}/cfg/nope.json"};
    c.post = {absent("{dir}/cfg/r")};
    v.push_back(std::move(c));
  }
  {
    Case c;
    c.name = "sft: paths resolve against the config's folder (cwd /)";
    c.kind = Kind::kConfig;
    c.files = in_cfg(base_sft(), "sft.toml");
    c.args = "sft {dir}/cfg/sft.toml";
    c.cwd = "/";
    c.expect = Expect::kOk;
    c.post = {present("{dir}/cfg/out/checkpoints")};
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> resume_cases() {
  std::vector<Case> v;
  const Toml b = base_run();
  auto row = [&](std::string name, const Toml& t, std::string extra, Expect e) {
    Case c;
    c.name = std::move(name);
    c.kind = Kind::kConfig;
    c.files = finished_run_files(t);
    c.args = "run {dir}/run.toml" + extra;
    c.expect = e;
    c.timeout_s = 120;
    return c;
  };
  {
    Case c = row("resume with another model is refused", b, "", Expect::kError);
    c.files.push_back({"tiny.json", tiny_with("intermediate_size", 64)});
    c.words = {"--allow-config-change"};
    c.post = {unchanged("{dir}/r/config.toml"), unchanged("{dir}/r/fingerprint.json"), unchanged("{dir}/r/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = row("resume with other sampler.tasks is refused", Toml(b).set("sampler.tasks", "[\"add\", \"sort\"]"), "",
                 Expect::kError);
    c.words = {"--allow-config-change", "sampler.tasks"};
    c.post = {unchanged("{dir}/r/config.toml"), unchanged("{dir}/r/fingerprint.json")};
    v.push_back(std::move(c));
  }
  {
    Case c = row("resume with a prompts file added is refused", Toml(b).set("sampler.prompts", "\"p.jsonl\""), "",
                 Expect::kError);
    c.files.push_back({"p.jsonl", "{\"prompt\":\"1+1=\",\"answer\":\"2\"}\n"});
    c.words = {"--allow-config-change"};
    c.post = {unchanged("{dir}/r/config.toml")};
    v.push_back(std::move(c));
  }
  {
    Case c = row("resume with the model file renamed (same content) goes on",
                 Toml(b).set("model.config", "\"tiny2.json\""), "", Expect::kOk);
    c.files.push_back({"tiny2.json", "@copy:{src}/configs/models/tiny.json"});
    v.push_back(std::move(c));
  }
  {
    Case c = row("--allow-config-change with another learner.lr records the change", Toml(b).set("learner.lr", "2e-3"),
                 " --allow-config-change", Expect::kOk);
    c.post = {file_contains("{dir}/r/events.log", "config change"), file_contains("{dir}/r/events.log", "learner.lr")};
    v.push_back(std::move(c));
  }
  {
    Case c = row("another learner.lr resumes and records the change", Toml(b).set("learner.lr", "2e-3"), "",
                 Expect::kOk);
    c.post = {file_contains("{dir}/r/events.log", "config change")};
    v.push_back(std::move(c));
  }
  {
    Case c = row("--allow-config-change with other tasks records the change",
                 Toml(b).set("sampler.tasks", "[\"add\", \"sort\"]"), " --allow-config-change", Expect::kOk);
    c.post = {file_contains("{dir}/r/events.log", "config change")};
    v.push_back(std::move(c));
  }
  {
    Case c = row("--allow-config-change with another model: resumes or refuses, never crashes", b,
                 " --allow-config-change", Expect::kOkOrError);
    c.files.push_back({"tiny.json", tiny_with("intermediate_size", 64)});
    v.push_back(std::move(c));
  }
  return v;
}

}  // namespace m1::badinput
