// m1rl run: the whole pipeline in one process (actors/pipeline/pipeline.h).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "actors/pipeline/pipeline.h"
#include "base/stop.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {

int run(const std::string& config, const std::string& run_dir, bool allow_config_change) {
  auto c = load_run_config(config, run_dir);
  if (!c.is_ok()) {
    std::fprintf(stderr, "m1rl: error: %s\n", c.status().message().c_str());
    return 1;
  }
  c->allow_config_change = allow_config_change;
  install_stop_handlers();
  RunReport rep;
  Status s = run_pipeline(c.value(), &rep);
  if (!s.is_ok()) {
    std::fprintf(stderr, "m1rl: error: %s\n", s.message().c_str());
    return 1;
  }
  nlohmann::json j = {{"run_dir", c->run_dir},       {"start_step", rep.start_step}, {"end_step", rep.end_step},
                      {"eval_start", rep.eval_start}, {"eval_end", rep.eval_end},     {"seconds", rep.seconds},
                      {"interrupted", rep.interrupted}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace m1::cli
