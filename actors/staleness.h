// docs/rl.md's staleness bound, shared by every role that applies it: a group may be trained on by
// learner version v only if v − (its oldest token's version) ≤ max_staleness (0 = synchronous RL).
// The sampler bounds what it issues ahead, replay drops what is too old at take, the learner keeps
// that many old versions for the train/inference correlation. One value per run (run.max_staleness)
// reaches all of them; this is its one default.
#pragma once

#include <cstdint>

namespace m1 {

inline constexpr uint64_t kDefaultMaxStaleness = 1;

}  // namespace m1
