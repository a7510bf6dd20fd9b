// m1rl sim: the deterministic simulation (sim/sim.h), one seed or a range.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "base/log.h"
#include "sim/sim.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {

int sim(uint64_t seed, const std::string& seeds, int nodes, int steps, const std::string& faults,
        const std::string& plant, const std::string& work_dir) {
  auto f = sim::parse_faults(faults);
  if (!f.is_ok()) {
    std::fprintf(stderr, "m1rl sim: %s\n", f.status().message().c_str());
    return 2;
  }
  auto p = sim::parse_planted(plant);
  if (!p.is_ok()) {
    std::fprintf(stderr, "m1rl sim: %s\n", p.status().message().c_str());
    return 2;
  }
  uint64_t first = seed, last = seed;
  if (!seeds.empty()) {
    const auto dots = seeds.find("..");
    char *e1 = nullptr, *e2 = nullptr;
    const std::string a = dots == std::string::npos ? "" : seeds.substr(0, dots);
    const std::string b = dots == std::string::npos ? "" : seeds.substr(dots + 2);
    first = std::strtoull(a.c_str(), &e1, 10);
    last = std::strtoull(b.c_str(), &e2, 10);
    if (a.empty() || b.empty() || a[0] == '-' || b[0] == '-' || *e1 || *e2 || last < first ||
        last - first >= 1000000) {
      std::fprintf(stderr, "m1rl sim: --seeds %s: expected A..B with A <= B (e.g. --seeds 1..200)\n", seeds.c_str());
      return 2;
    }
  }
  if (!std::getenv("M1_SIM_DEBUG")) set_log_level(LogLevel::kError);  // the faults make the actors warn on every seed; the line says it all
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t failed = 0, n = 0, first_failed = 0;
  for (uint64_t s = first; s <= last; ++s) {
    sim::SimOptions o;
    o.seed = s;
    o.nodes = nodes;
    o.steps = steps;
    o.faults_spec = faults;
    o.faults = f.value();
    o.planted = p.value();
    o.work_dir = work_dir;
    auto r = sim::run_simulation(o);
    ++n;
    if (!r.is_ok()) {
      std::fprintf(stderr, "m1rl sim: %s\n", r.status().message().c_str());
      return 1;
    }
    std::printf("%s\n", r->line.c_str());
    std::fflush(stdout);
    if (!r->ok && failed++ == 0) first_failed = s;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (n > 1)
    std::printf("sim: %llu seeds, %llu failed%s, %.1f s, %.1f seeds/min\n", (unsigned long long)n,
                (unsigned long long)failed,
                failed ? (" (first: seed " + std::to_string(first_failed) + ")").c_str() : "", secs, n * 60.0 / secs);
  return failed ? 1 : 0;
}

}  // namespace m1::cli
