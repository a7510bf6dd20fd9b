// What a run directory is a run of. `m1rl run` resumes a run directory only with the same model
// and the same data: RUN/fingerprint.json records, at the first start, the model (a hash of its
// canonical config: model.config, or sft.checkpoint's config.json), the built-in task set and the
// prompts file's content hash. On a resume, a changed fingerprint is refused unless the user
// passes --allow-config-change; every change (fingerprint or any other key of the config, run.dir
// aside) is listed so the pipeline can record it in events.log.
// Format: JSON {"format": "m1rl-run-fingerprint", "version": 1, "model", "tasks", "prompts"}.
#pragma once

#include <string>
#include <vector>

#include "actors/pipeline/run_config.h"
#include "base/status.h"

namespace m1 {

struct RunFingerprint {
  std::string model;               // "fnv64:<hex>" of model_config_to_json(the model's config)
  std::vector<std::string> tasks;  // sampler.tasks as given
  std::string prompts;             // "" or "fnv64:<hex>" of the prompts file's bytes
};

Result<RunFingerprint> fingerprint_of(const RunConfig& c);

struct ConfigChange {
  bool first_start = true;              // RUN/config.toml did not exist
  std::vector<std::string> identity;    // "model.config (model …)", "sampler.tasks …", "sampler.prompts …"
  std::vector<std::string> keys;        // other keys: "learner.lr: 0.001 -> 0.002"
  bool empty() const { return identity.empty() && keys.empty(); }
  std::string describe() const;         // "; "-joined, identity first
};

// Compares CONFIG (and its fingerprint) with what RUN records. Reads only.
Result<ConfigChange> compare_with_run(const RunConfig& c, const RunFingerprint& now);

// Writes RUN/config.toml (the config's text) and RUN/fingerprint.json, each atomically.
Status record_run_config(const RunConfig& c, const RunFingerprint& now);

}  // namespace m1
