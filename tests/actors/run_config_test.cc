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
