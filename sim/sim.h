// The deterministic simulation (`m1rl sim`): the whole RL pipeline — the real replay actor on a
// RocksDB store in a temporary directory, the real sampler, learner, generator and judge actors
// on a tiny model — spread over simulated nodes that talk through LoopbackTransport
// (cluster/loopback_transport.h) via endpoint and proxy actors (cluster/node.h), all under CAF's
// deterministic test coordinator and its simulated clock. Faults come from the seed: message
// loss, delay, duplication and reordering; generator-node crash and restart (a new incarnation);
// partition and heal; commits refused by replay; the learner killed between a durable commit and
// its checkpoint (it restarts from the checkpoint before, like `m1rl run` after a crash). After
// the run the invariants are checked (docs/architecture.md, "Simulation"):
//   acked        every group the sampler saw acknowledged is in the replay store;
//   max_uses     no group was trained by more surviving learner steps than max_uses (a step
//                survives unless a learner restart rolled it back);
//   versions     the published weights versions strictly increase, across learner incarnations;
//   trained      every group a surviving learner step trained is consumed in replay;
//   groups       every stored group holds group_size rollouts, one per index and request;
//   progress     the learner reached the target step before the simulated-time limit.
// The same options give the same event trace (a hash of every delivery), byte for byte.
//
// Node layout: node 1 holds replay, sampler and learner; nodes 2..K one generator and one judge
// each. Thread safety: run_simulation is self-contained (its own actor system), one at a time per
// process is not required.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace m1::sim {

struct SimFaults {
  double drop = 0.02;         // per frame
  double duplicate = 0.02;    // per frame
  int64_t min_delay_us = 50;  // per frame, uniform: different delays reorder
  int64_t max_delay_us = 20000;
  int crashes = 1;            // generator-node crashes (each followed by a restart)
  int partitions = 1;         // node 1 cut from a generator node, then healed
  double commit_failure = 0.1;  // probability per learner step that replay refuses the commit
  double learner_crash = 0.1;   // ... that the learner dies after its commit, before its checkpoint
  bool slow_generator = true;   // one generator node's links get 20× the delay
};

// "none", "default", or comma-separated key=value over the defaults: drop=P, dup=P,
// delay=MIN..MAXus (or ms), crashes=N, partitions=N, commit_failure=P, learner_crash=P, slow=0|1.
// Errors name the key and what was expected.
Result<SimFaults> parse_faults(const std::string& spec);
std::string describe(const SimFaults& f);

// Deliberate bugs for showing that the invariants catch them (tests and `m1rl sim --plant`):
// never set in a real run.
enum class PlantedBug { kNone, kDedupeOff, kFencingOff, kCommitFailureIgnored };
Result<PlantedBug> parse_planted(const std::string& name);  // "none", "dedupe", "fencing", "commit"

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;   // ≥ 2: node 1 plus one generator+judge node per extra node
  int steps = 6;   // learner steps to reach
  std::string faults_spec = "default";
  SimFaults faults;
  PlantedBug planted = PlantedBug::kNone;
  std::string work_dir;  // "" = a fresh directory under the system temp dir, removed afterwards
};

struct SimResult {
  bool ok = false;
  std::vector<std::string> violations;
  uint64_t trace_hash = 0;
  uint64_t learner_step = 0;
  uint64_t frames = 0, dropped = 0, duplicated = 0, duplicates_filtered = 0;
  int crashes = 0, partitions = 0, commit_failures = 0, learner_restarts = 0;
  double sim_seconds = 0;
  std::string line;  // the one-line report (with the command that replays a failure)
};

// Runs one simulation. An error is a setup failure (the temp dir, the store), not a violation.
Result<SimResult> run_simulation(const SimOptions& o);

// The command that reproduces O exactly.
std::string replay_command(const SimOptions& o);

}  // namespace m1::sim
