// Deliberate bugs for the deterministic simulation's self-test (`m1rl sim --plant`, the sim
// tests): each flag switches off one safety mechanism, so that a test can show the simulation's
// invariants catch its absence. They are false in every real run; only sim/ sets them, for the
// length of one simulation.
#pragma once

#include <atomic>

namespace m1 {

struct PlantedBugs {
  std::atomic<bool> dedupe_off{false};              // duplicate frames and rollouts are taken as new
  std::atomic<bool> fencing_off{false};             // replay accepts a superseded learner's commits
  std::atomic<bool> commit_failure_ignored{false};  // the learner checkpoints and publishes after a refused commit
};

inline PlantedBugs& planted_bugs() {
  static PlantedBugs p;
  return p;
}

}  // namespace m1
