// Parsing of `m1rl sim --faults SPEC` and `--plant NAME`, and the replay command of a run.
#include <fmt/format.h>

#include <cstdlib>
#include <sstream>

#include "sim/sim.h"

namespace m1::sim {

namespace {

Result<double> probability(const std::string& key, const std::string& v) {
  char* end = nullptr;
  const double p = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(p >= 0.0 && p <= 1.0))
    return Status::errorf("--faults: {}={}: expected a probability in [0, 1]", key, v);
  return p;
}

Result<int> count(const std::string& key, const std::string& v) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 0 || n > 100)
    return Status::errorf("--faults: {}={}: expected a whole number in [0, 100]", key, v);
  return int(n);
}

// "MIN..MAX" with a unit suffix on MAX (us or ms; default us).
Status delay(const std::string& v, SimFaults* f) {
  const auto dots = v.find("..");
  std::string lo = dots == std::string::npos ? v : v.substr(0, dots);
  std::string hi = dots == std::string::npos ? v : v.substr(dots + 2);
  int64_t scale = 1;
  for (const char* unit : {"us", "ms"}) {
    if (hi.size() > 2 && hi.compare(hi.size() - 2, 2, unit) == 0) {
      scale = unit[0] == 'm' ? 1000 : 1;
      hi.resize(hi.size() - 2);
      if (lo.size() > 2 && lo.compare(lo.size() - 2, 2, unit) == 0) lo.resize(lo.size() - 2);
    }
  }
  char *e1 = nullptr, *e2 = nullptr;
  const long long a = std::strtoll(lo.c_str(), &e1, 10), b = std::strtoll(hi.c_str(), &e2, 10);
  if (lo.empty() || hi.empty() || *e1 || *e2 || a < 0 || b < a || b * scale > 60'000'000)
    return Status::errorf("--faults: delay={}: expected MIN..MAX with 0 <= MIN <= MAX <= 60 s, in us or ms "
                          "(e.g. delay=0..20ms)", v);
  f->min_delay_us = a * scale;
  f->max_delay_us = b * scale;
  return Status::ok();
}

}  // namespace

Result<SimFaults> parse_faults(const std::string& spec) {
  SimFaults f;
  if (spec == "default" || spec.empty()) return f;
  if (spec == "none") return SimFaults{0, 0, 0, 0, 0, 0, 0, 0, false};
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos)
      return Status::errorf("--faults: '{}': expected key=value (keys: drop, dup, delay, crashes, partitions, "
                            "commit_failure, learner_crash, slow), or 'none' or 'default'", item);
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    if (k == "drop") {
      M1_ASSIGN_OR_RETURN(f.drop, probability(k, v));
    } else if (k == "dup") {
      M1_ASSIGN_OR_RETURN(f.duplicate, probability(k, v));
    } else if (k == "delay") {
      M1_RETURN_IF_ERROR(delay(v, &f));
    } else if (k == "crashes") {
      M1_ASSIGN_OR_RETURN(f.crashes, count(k, v));
    } else if (k == "partitions") {
      M1_ASSIGN_OR_RETURN(f.partitions, count(k, v));
    } else if (k == "commit_failure") {
      M1_ASSIGN_OR_RETURN(f.commit_failure, probability(k, v));
    } else if (k == "learner_crash") {
      M1_ASSIGN_OR_RETURN(f.learner_crash, probability(k, v));
    } else if (k == "slow") {
      if (v != "0" && v != "1") return Status::errorf("--faults: slow={}: expected 0 or 1", v);
      f.slow_generator = v == "1";
    } else {
      return Status::errorf("--faults: unknown key '{}' (keys: drop, dup, delay, crashes, partitions, "
                            "commit_failure, learner_crash, slow)", k);
    }
  }
  return f;
}

std::string describe(const SimFaults& f) {
  return fmt::format("drop={},dup={},delay={}..{}us,crashes={},partitions={},commit_failure={},learner_crash={},slow={}",
                     f.drop, f.duplicate, f.min_delay_us, f.max_delay_us, f.crashes, f.partitions, f.commit_failure,
                     f.learner_crash, f.slow_generator ? 1 : 0);
}

Result<PlantedBug> parse_planted(const std::string& name) {
  if (name == "none" || name.empty()) return PlantedBug::kNone;
  if (name == "dedupe") return PlantedBug::kDedupeOff;
  if (name == "fencing") return PlantedBug::kFencingOff;
  if (name == "commit") return PlantedBug::kCommitFailureIgnored;
  return Status::errorf("--plant {}: expected none, dedupe, fencing or commit", name);
}

std::string replay_command(const SimOptions& o) {
  std::string cmd = fmt::format("m1rl sim --seed {} --nodes {} --steps {} --faults {}", o.seed, o.nodes, o.steps,
                                o.faults_spec.empty() ? "default" : o.faults_spec);
  switch (o.planted) {
    case PlantedBug::kNone: break;
    case PlantedBug::kDedupeOff: cmd += " --plant dedupe"; break;
    case PlantedBug::kFencingOff: cmd += " --plant fencing"; break;
    case PlantedBug::kCommitFailureIgnored: cmd += " --plant commit"; break;
  }
  return cmd;
}

}  // namespace m1::sim
