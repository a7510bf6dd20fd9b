// sim/: the deterministic simulation — passes on the real code, replays a seed byte for byte, and
// catches planted bugs (base/planted.h) through its invariants.
#include <doctest/doctest.h>

#include <string>

#include "sim/sim.h"

using namespace m1;
using namespace m1::sim;

namespace {

SimResult run(uint64_t seed, PlantedBug planted = PlantedBug::kNone, const std::string& faults = "default") {
  SimOptions o;
  o.seed = seed;
  o.faults_spec = faults;
  auto f = parse_faults(faults);
  REQUIRE(f.is_ok());
  o.faults = f.value();
  o.planted = planted;
  auto r = run_simulation(o);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  return r.value();
}

bool violates(const SimResult& r, const std::string& invariant) {
  for (const std::string& v : r.violations)
    if (v.rfind(invariant + ":", 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("sim: the pipeline reaches its steps under faults, and a seed replays to the same trace") {
  for (uint64_t seed : {1, 2, 3}) {
    CAPTURE(seed);
    const SimResult a = run(seed);
    CHECK_MESSAGE(a.ok, a.line);
    CHECK(a.learner_step == 6);
    CHECK(a.frames > 50);
    CHECK(a.crashes + a.partitions > 0);
    const SimResult b = run(seed);
    CHECK(a.trace_hash == b.trace_hash);
    CHECK(a.line == b.line);
  }
  CHECK(run(1).trace_hash != run(2).trace_hash);
}

TEST_CASE("sim: learner crashes, refused commits and superseded learners are survived") {
  // Seeds whose schedule holds each learner fault (found by running them; see docs/architecture.md).
  const SimResult r = run(14);
  CHECK_MESSAGE(r.ok, r.line);
  CHECK(r.learner_restarts > 0);
  CHECK(r.commit_failures > 0);
}

TEST_CASE("sim: the invariants catch a learner that ignores a refused commit, and replay without fencing") {
  const SimResult c = run(6, PlantedBug::kCommitFailureIgnored);
  CHECK_FALSE(c.ok);
  CHECK_MESSAGE(violates(c, "trained"), c.line);
  CHECK(c.line.find("replay: m1rl sim --seed 6 --nodes 3 --steps 6 --faults default --plant commit") != std::string::npos);
  const SimResult f = run(13, PlantedBug::kFencingOff);
  CHECK_FALSE(f.ok);
  CHECK_MESSAGE(!f.violations.empty(), f.line);
  // The same seeds pass on the real code.
  CHECK(run(6).ok);
  CHECK(run(13).ok);
}

TEST_CASE("sim: --faults and --plant are parsed strictly, naming the bad part") {
  CHECK(parse_faults("none").value().drop == 0.0);
  auto f = parse_faults("drop=0.1,dup=0,delay=1..5ms,crashes=2,partitions=0,commit_failure=0.5,learner_crash=0,slow=0");
  REQUIRE(f.is_ok());
  CHECK(f->max_delay_us == 5000);
  CHECK(f->crashes == 2);
  CHECK(parse_faults("drop=2").status().message().find("drop=2: expected a probability") != std::string::npos);
  CHECK(parse_faults("delay=5..1").status().message().find("delay=5..1") != std::string::npos);
  CHECK(parse_faults("loss=0.1").status().message().find("unknown key 'loss'") != std::string::npos);
  CHECK(parse_faults("crashes").status().message().find("expected key=value") != std::string::npos);
  CHECK(parse_planted("fencing").value() == PlantedBug::kFencingOff);
  CHECK_FALSE(parse_planted("everything").is_ok());
  SimOptions o;
  o.nodes = 1;
  CHECK(run_simulation(o).status().message().find("--nodes 1") != std::string::npos);
}
