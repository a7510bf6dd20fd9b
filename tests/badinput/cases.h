// The bad-input suite's tables (harness.h runs them) and the fixtures some of them share.
// Table builders are pure: they only describe rows, so the summary can count every table
// without running any.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tests/badinput/harness.h"

namespace m1::badinput {

// A TOML config as sections of `key = value` lines (values written as TOML), in order.
class Toml {
 public:
  Toml& set(const std::string& dotted, const std::string& value);  // adds the key (and section)
  Toml& erase(const std::string& dotted);
  std::string text() const;

 private:
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> sections_;
};

// `m1rl run` on the tiny model in a few seconds: run.dir = "r", model.config = "tiny.json" (both
// relative to the config's folder), 150 SFT steps, 2 RL steps.
Toml base_run();
// `m1rl sft` on the tiny model: model.config = "tiny.json", output.dir = "out", 2 steps.
Toml base_sft();
// The files of a row that runs base_run(): RUN_TOML at {dir}/run.toml, tiny.json next to it.
std::vector<File> run_files(const Toml& t);
std::vector<File> sft_files(const Toml& t);
// The files of a row that starts from the shared finished run: {dir}/run.toml (T's text, the
// base text when T is the base), tiny.json and {dir}/r (a copy of {shared}/FROM: "r", or "r-sst",
// the same run with its replay flushed to table files).
std::vector<File> finished_run_files(const Toml& t, const std::string& from = "r");

// Tables. "needs" names the fixture whose folder is {shared}.
std::vector<Case> run_key_cases();      // config: every key of `m1rl run`, wrong type and out of range
std::vector<Case> sft_key_cases();      // config: every key of `m1rl sft`
std::vector<Case> config_cases();       // config: unknown keys, sections, syntax, cross-key rules
std::vector<Case> config_path_cases();  // config: relative paths from another cwd (runs)
std::vector<Case> resume_cases();       // config: resume with a changed config; needs run fixture
std::vector<Case> cli_cases();          // needs model fixture
std::vector<Case> model_dir_cases();    // needs model fixture
std::vector<Case> safetensors_cases();  // needs model fixture
std::vector<Case> prompts_cases();
std::vector<Case> tokens_cases();       // needs model fixture
std::vector<Case> replay_dir_cases();   // needs run fixture
std::vector<Case> checkpoint_cases();   // needs run fixture
std::vector<Case> signal_cases();
std::vector<Case> corruption_cases();   // needs run fixture

// Fixtures, made once per process. model_fixture(): {shared}/model (tiny, seed 7), {shared}/wide
// (the tiny config with hidden_size 64), tiny.json, wide.json. run_fixture(): {shared}/run.toml
// (base_run()), tiny.json, {shared}/r (the finished run) and {shared}/r-sst (its copy, flushed).
std::string model_fixture();
std::string run_fixture();

}  // namespace m1::badinput
