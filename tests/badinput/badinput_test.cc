// The bad-input suite: tables of bad inputs (tests/badinput/cases_*.cc) run against the real
// m1rl binary (harness.h states the rules every row is held to). One TEST_CASE per kind of
// input, so failures are grouped; each failing row prints its command line and output.
//
// Run one group:  build/test_badinput -tc='config*'     (ctest -L badinput runs them all)
// The last case prints the suite's size by kind without running anything.
#include <doctest/doctest.h>

#include "tests/badinput/cases.h"

using namespace m1::badinput;

namespace {

void run_table(const std::vector<Case>& cases, const std::string& shared = "") {
  const size_t failed = run_cases(cases, shared);
  CHECK_MESSAGE(failed == 0, failed << " of " << cases.size() << " rows failed (each is reported above)");
}

}  // namespace

TEST_CASE("config: every key of m1rl run with a wrong type or out of range") { run_table(run_key_cases()); }

TEST_CASE("config: every key of m1rl sft with a wrong type or out of range") { run_table(sft_key_cases()); }

TEST_CASE("config: unknown keys and sections - syntax - cross-key rules - missing files") {
  run_table(config_cases());
}

TEST_CASE("config: relative paths resolve against the config folder from any cwd") {
  run_table(config_path_cases());
}

TEST_CASE("config: resuming a run directory with a changed config") { run_table(resume_cases(), run_fixture()); }

TEST_CASE("cli: flags and arguments") { run_table(cli_cases(), model_fixture()); }

TEST_CASE("model-dir: config.json and the model folder") { run_table(model_dir_cases(), model_fixture()); }

TEST_CASE("safetensors: damaged weight files") { run_table(safetensors_cases(), model_fixture()); }

TEST_CASE("prompts-jsonl: sampler.prompts files") { run_table(prompts_cases()); }

TEST_CASE("tokens-jsonl: model logprobs and model grad inputs") { run_table(tokens_cases(), model_fixture()); }

TEST_CASE("replay-dir: inspecting replay buffers") { run_table(replay_dir_cases(), run_fixture()); }

TEST_CASE("checkpoint-dir: damaged checkpoints on resume") { run_table(checkpoint_cases(), run_fixture()); }

TEST_CASE("signal: SIGINT and SIGTERM during SFT and RL") { run_table(signal_cases()); }

TEST_CASE("corruption: damaged replay databases and run files") { run_table(corruption_cases(), run_fixture()); }

TEST_CASE("summary: the suite size by kind") {
  std::vector<Case> all;
  for (auto* table : {run_key_cases, sft_key_cases, config_cases, config_path_cases, resume_cases, cli_cases,
                      model_dir_cases, safetensors_cases, prompts_cases, tokens_cases, replay_dir_cases,
                      checkpoint_cases, signal_cases, corruption_cases}) {
    auto t = table();
    all.insert(all.end(), t.begin(), t.end());
  }
  std::printf("badinput suite: %s\n", count_by_kind(all).c_str());
  CHECK(all.size() > 0);
}
