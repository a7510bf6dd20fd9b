// actors/pipeline/run_fingerprint: a run directory knows the model and data it was started with.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>

#include "actors/pipeline/run_fingerprint.h"
#include "base/file.h"

using namespace m1;

namespace {

std::string fresh_dir(const std::string& name) {
  auto d = (std::filesystem::temp_directory_path() / ("m1-fp-" + std::to_string(getpid()) + "-" + name)).string();
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// A config in D/run.toml over a copy of tiny.json, run dir D/run.
RunConfig config_in(const std::string& d, const std::string& extra) {
  const std::string tiny = std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json";
  if (!path_exists(d + "/tiny.json")) std::filesystem::copy_file(tiny, d + "/tiny.json");
  REQUIRE(write_file(d + "/run.toml", "[run]\ndir = \"run\"\n[model]\nconfig = \"tiny.json\"\n" + extra).is_ok());
  auto c = load_run_config(d + "/run.toml", "");
  REQUIRE_MESSAGE(c.is_ok(), c.status().message());
  return c.value();
}

}  // namespace

TEST_CASE("run fingerprint: first start, unchanged resume, changed keys, changed model and tasks") {
  const std::string d = fresh_dir("a");
  RunConfig c = config_in(d, "[learner]\nlr = 1e-3\n");
  auto f = fingerprint_of(c);
  REQUIRE(f.is_ok());
  auto first = compare_with_run(c, f.value());
  REQUIRE(first.is_ok());
  CHECK(first->first_start);
  CHECK(first->empty());
  REQUIRE(make_dirs(c.run_dir).is_ok());
  REQUIRE(record_run_config(c, f.value()).is_ok());

  auto same = compare_with_run(c, f.value());
  REQUIRE(same.is_ok());
  CHECK_FALSE(same->first_start);
  CHECK(same->empty());

  // another learning rate: listed, not an identity change
  RunConfig lr = config_in(d, "[learner]\nlr = 2e-3\n");
  auto lr_ch = compare_with_run(lr, fingerprint_of(lr).value());
  REQUIRE(lr_ch.is_ok());
  CHECK(lr_ch->identity.empty());
  REQUIRE(lr_ch->keys.size() == 1);
  CHECK(lr_ch->keys[0] == "learner.lr: 0.001 -> 0.002");

  // another task set: an identity change
  RunConfig tasks = config_in(d, "[learner]\nlr = 1e-3\n[sampler]\ntasks = [\"sort\"]\n");
  auto t_ch = compare_with_run(tasks, fingerprint_of(tasks).value());
  REQUIRE(t_ch.is_ok());
  REQUIRE(t_ch->identity.size() == 1);
  CHECK(t_ch->identity[0].find("sampler.tasks") != std::string::npos);

  // the same file name with another model inside: an identity change (by content, not path)
  auto text = read_file(d + "/tiny.json");
  REQUIRE(text.is_ok());
  std::string t = text.value();
  const size_t at = t.find("\"rope_theta\"");
  REQUIRE(at != std::string::npos);
  const size_t colon = t.find(':', at);
  t.replace(colon + 1, t.find_first_of(",}", colon) - colon - 1, " 15000");
  REQUIRE(write_file(d + "/tiny.json", t).is_ok());
  RunConfig model = config_in(d, "[learner]\nlr = 1e-3\n");
  auto fm = fingerprint_of(model);
  REQUIRE_MESSAGE(fm.is_ok(), fm.status().message());
  auto m_ch = compare_with_run(model, fm.value());
  REQUIRE(m_ch.is_ok());
  REQUIRE(m_ch->identity.size() == 1);
  CHECK(m_ch->identity[0].find("model") == 0);
}
