// Prompt sources for the dynamic sampler: built-in task families under a difficulty schedule,
// JSONL prompt files, and a curriculum that mixes sources with weights scheduled by learner step.
//
// Prompt ids: every prompt gets prompt_id_for(task, text, reference), a 64-bit FNV-1a hash of
// the three fields (separated by NUL bytes), mapped 0 → 1. It is stable across runs, restarts and
// file moves, non-zero, and the same for the same prompt drawn twice (a built-in "2+3=" or a
// duplicated JSONL record).
//
// JSONL files: one JSON object per line, {"prompt": string, "answer": string, "task": string};
// "prompt" and "answer" are required, "task" is optional (default: the source's default task,
// "math" unless given), other keys are ignored, blank lines are skipped. Limits (the messages'
// ranges): prompt non-empty and ≤ 1 MiB, answer non-blank and ≤ 65536 bytes, task non-empty and
// ≤ 64 bytes. Every error names the file and the 1-based line: "PATH:N: malformed JSON: …",
// "PATH:N: missing string field \"answer\"", "PATH:N: field \"task\" must be a string"…; a file
// that cannot be read names the path; a file with no record is an error.
//
// Draw order: a built-in source draws difficulty uniformly in [min_difficulty, max_at(step)]
// and then the task's own sample(); a JSONL source walks a permutation of its records, reshuffled
// (Fisher-Yates with the caller's Rng) at the start of every epoch. Both are deterministic in the
// Rng state and the step.
//
// Ownership: a Curriculum owns its sources. Thread safety: none (one owner, the sampler).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/rng.h"
#include "base/status.h"
#include "model/tasks.h"

namespace m1 {

struct SampledPrompt {
  uint64_t prompt_id = 0;  // non-zero: prompt_id_for(task, text, reference)
  std::string task;        // family name ("add", "sort", "math", …)
  std::string dataset;     // "builtin" or the JSONL path it came from
  std::string text;        // the prompt text given to the model
  std::string reference;   // the reference answer the judges compare with
  int difficulty = 0;      // built-in: the drawn difficulty; JSONL: 0
};

uint64_t prompt_id_for(std::string_view task, std::string_view text, std::string_view reference);

// Maximum difficulty as a function of the learner step: fixed (ramp_steps = 0: always end_max)
// or a linear ramp from start_max at step 0 to end_max at step ramp_steps, constant after
// (floor of the interpolation). The drawn difficulty is uniform in [min_difficulty, max_at(step)].
struct DifficultySchedule {
  int min_difficulty = 1;
  int start_max = 1;
  int end_max = 1;
  int64_t ramp_steps = 0;

  static DifficultySchedule fixed(int difficulty) { return {difficulty, difficulty, difficulty, 0}; }
  static DifficultySchedule linear(int min_difficulty, int from_max, int to_max, int64_t steps) {
    return {min_difficulty, from_max, to_max, steps};
  }
  int max_at(int64_t step) const;
  // 1 ≤ min_difficulty ≤ start_max, end_max ≤ task_max; ramp_steps ≥ 0.
  Status validate(int task_max) const;
};

class PromptSource {
 public:
  virtual ~PromptSource() = default;
  virtual std::string name() const = 0;  // "builtin:add", or the JSONL path
  virtual SampledPrompt next(Rng& rng, int64_t step) = 0;
};

class BuiltinPromptSource final : public PromptSource {
 public:
  // Error: unknown family (names the known ones) or a schedule outside the family's range.
  static Result<std::unique_ptr<BuiltinPromptSource>> create(const std::string& task,
                                                             DifficultySchedule schedule);
  std::string name() const override { return "builtin:" + task_->name(); }
  SampledPrompt next(Rng& rng, int64_t step) override;
  const DifficultySchedule& schedule() const { return schedule_; }

 private:
  BuiltinPromptSource(std::unique_ptr<Task> task, DifficultySchedule schedule)
      : task_(std::move(task)), schedule_(schedule) {}
  std::unique_ptr<Task> task_;
  DifficultySchedule schedule_;
};

class JsonlPromptSource final : public PromptSource {
 public:
  // Reads PATH through base/file.h (the test seam) and parses it.
  static Result<std::unique_ptr<JsonlPromptSource>> load(const std::string& path,
                                                         const std::string& default_task = "math");
  // Parses `text` as the content of a file named `path` (errors and dataset name use `path`).
  static Result<std::unique_ptr<JsonlPromptSource>> parse(const std::string& path,
                                                          std::string_view text,
                                                          const std::string& default_task = "math");
  std::string name() const override { return path_; }
  SampledPrompt next(Rng& rng, int64_t step) override;
  const std::vector<SampledPrompt>& records() const { return records_; }
  uint64_t epoch() const { return epoch_; }  // completed passes over the records

 private:
  JsonlPromptSource(std::string path, std::vector<SampledPrompt> records)
      : path_(std::move(path)), records_(std::move(records)) {}
  std::string path_;
  std::vector<SampledPrompt> records_;
  std::vector<size_t> order_;  // the current epoch's permutation
  size_t cursor_ = 0;          // next position in order_ (order_.size() = start a new epoch)
  uint64_t epoch_ = 0;
};

// A piecewise-linear weight over learner steps through (step, weight) points sorted by step:
// constant before the first and after the last point. Weights finite and ≥ 0.
struct WeightSchedule {
  std::vector<std::pair<int64_t, double>> points;

  static WeightSchedule constant(double w) { return {{{0, w}}}; }
  // 0 until `from`, rising linearly to `w` at `to` (mixing a source in), constant after.
  static WeightSchedule ramp_in(int64_t from, int64_t to, double w) {
    return {{{from, 0.0}, {to, w}}};
  }
  double at(int64_t step) const;
  // Non-empty, steps strictly increasing, weights finite and ≥ 0.
  Status validate() const;
};

class Curriculum {
 public:
  Curriculum() = default;
  Curriculum(Curriculum&&) = default;
  Curriculum& operator=(Curriculum&&) = default;

  // Error (naming the source) when the schedule is invalid.
  Status add(std::unique_ptr<PromptSource> source, WeightSchedule weights);
  size_t size() const { return sources_.size(); }
  const PromptSource& source(size_t i) const { return *sources_[i].source; }
  std::vector<double> weights_at(int64_t step) const;  // raw (unnormalised), in add() order
  // Picks source i with probability weights_at(step)[i] / Σ weights (one uniform draw), then
  // draws from it. Error when there are no sources or every weight is 0 at `step`.
  Result<SampledPrompt> next(Rng& rng, int64_t step);

 private:
  struct Entry {
    std::unique_ptr<PromptSource> source;
    WeightSchedule weights;
  };
  std::vector<Entry> sources_;
};

}  // namespace m1
