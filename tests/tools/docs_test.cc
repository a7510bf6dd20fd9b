// docs/config.md cannot drift from the code: its tables must list exactly the keys that
// load_run_config (run_config_keys()) and load_sft_config (sft_config_keys()) read. A key is
// documented by a table row whose first cell is the key in backticks, e.g. "| `sampler.temperature` |",
// under a "## " heading that names `m1rl run` or `m1rl sft`.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "actors/pipeline/run_config.h"
#include "base/file.h"
#include "model/sft.h"

using namespace m1;

namespace {

const char* const kConfigDoc = M1_SOURCE_DIR "/docs/config.md";

// The keys each "## " section of TEXT documents (first table cell in backticks), by section:
// "run" for a heading naming `m1rl run`, "sft" for one naming `m1rl sft`, "" for any other.
std::map<std::string, std::set<std::string>> documented_keys(const std::string& text) {
  static const std::regex kRow(R"(^\|\s*`([a-z_]+\.[a-z_]+)`\s*\|)");
  std::map<std::string, std::set<std::string>> out;
  std::string section;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("## ", 0) == 0) {
      section = line.find("m1rl run") != std::string::npos   ? "run"
                : line.find("m1rl sft") != std::string::npos ? "sft"
                                                             : "";
      out[section];
      continue;
    }
    std::smatch m;
    if (std::regex_search(line, m, kRow)) out[section].insert(m[1].str());
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Keys the code reads that the doc does not list, and keys the doc lists that the code no longer reads.
void check_section(const std::string& name, const std::vector<std::string>& code,
                   const std::set<std::string>& doc) {
  std::vector<std::string> undocumented, stale;
  for (const auto& k : code)
    if (!doc.count(k)) undocumented.push_back(k);
  for (const auto& k : doc)
    if (std::find(code.begin(), code.end(), k) == code.end()) stale.push_back(k);
  CHECK_MESSAGE(undocumented.empty(), "docs/config.md, `m1rl " << name << "` section: key(s) the code reads "
                                                               << "but the doc does not list: " << joined(undocumented));
  CHECK_MESSAGE(stale.empty(), "docs/config.md, `m1rl " << name << "` section: documented key(s) the code no "
                                                        << "longer reads: " << joined(stale));
}

}  // namespace

TEST_CASE("docs: run_config_keys and sft_config_keys list every key the loaders read") {
  const std::vector<std::string> run = run_config_keys();
  const std::vector<std::string> sft = sft_config_keys();
  // Spot checks, including keys read with a default that depends on another key.
  for (const char* k : {"run.dir", "model.config", "sft.checkpoint", "sampler.temperature", "learner.eps_high",
                        "sampler.start_max_difficulty", "learner.share_prompts"})
    CHECK_MESSAGE(std::count(run.begin(), run.end(), k) == 1, k);
  for (const char* k : {"model.config", "model.init_from", "data.tasks", "train.max_new", "output.dir"})
    CHECK_MESSAGE(std::count(sft.begin(), sft.end(), k) == 1, k);
  CHECK(std::is_sorted(run.begin(), run.end()));
  CHECK(std::is_sorted(sft.begin(), sft.end()));
}

TEST_CASE("docs: docs/config.md documents exactly the keys of m1rl run and m1rl sft configs") {
  auto text = read_file(kConfigDoc);
  REQUIRE_MESSAGE(text.is_ok(), text.status().message());
  const auto doc = documented_keys(text.value());
  REQUIRE_MESSAGE(doc.count("run"), "docs/config.md: no \"## \" heading naming `m1rl run`");
  REQUIRE_MESSAGE(doc.count("sft"), "docs/config.md: no \"## \" heading naming `m1rl sft`");
  check_section("run", run_config_keys(), doc.at("run"));
  check_section("sft", sft_config_keys(), doc.at("sft"));
}

TEST_CASE("docs: the key table parser") {
  const auto doc = documented_keys(
      "# t\n| `run.dir` | x |\n## The `m1rl run` file\n| key | meaning |\n|---|---|\n| `run.dir` | d |\n"
      "| `run.seed`| s |\ntext `sampler.top_p` in prose\n## `m1rl sft`\n|`model.config` | c |\n## other\n"
      "| `learner.lr` | l |\n");
  CHECK(doc.at("run") == std::set<std::string>{"run.dir", "run.seed"});
  CHECK(doc.at("sft") == std::set<std::string>{"model.config"});
  CHECK(doc.at("") == std::set<std::string>{"run.dir", "learner.lr"});
}
