// Atomic checkpoint directories: ROOT/step_N. A checkpoint is written into ROOT/.tmp-step_N, its
// files fsynced, the directory renamed to ROOT/step_N (parent fsynced), and only then a DONE
// marker is written and fsynced inside it. A directory without DONE is incomplete and ignored
// (and removed by prune_incomplete). Resume takes the newest complete one.
// Thread safety: one writer per ROOT.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"

namespace m1 {

// fill(tmp_dir) writes the checkpoint's files (each fsynced, e.g. with write_file).
Status commit_checkpoint(const std::string& root, int64_t step, const std::function<Status(const std::string&)>& fill);
// The newest complete checkpoint's directory and step, or step = −1 when there is none.
struct CheckpointRef {
  std::string dir;
  int64_t step = -1;
};
CheckpointRef latest_checkpoint(const std::string& root);
// Removes temp and incomplete checkpoint directories; keeps the newest `keep` complete ones.
Status prune_checkpoints(const std::string& root, int keep);

}  // namespace m1
