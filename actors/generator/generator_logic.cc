#include "actors/generator/generator_logic.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/check.h"

namespace m1 {

GeneratorLogic::GeneratorLogic(Model model, uint64_t version, int max_batch, int eos_id, RepetitionStop rep)
    : model_(std::move(model)), version_(version), max_batch_(std::max(1, max_batch)), eos_(eos_id), rep_(rep) {}

void GeneratorLogic::submit(GenJob job) {
  M1_CHECK(!job.prompt.empty());
  queue_.push_back(std::move(job));
}

void GeneratorLogic::set_weights(const float* params, size_t n, uint64_t version) {
  M1_CHECK(n == model_.num_params());
  std::memcpy(model_.params(), params, n * sizeof(float));
  version_ = version;
}

std::vector<GenOutput> GeneratorLogic::abort_all() {
  std::vector<GenOutput> out;
  for (auto& s : live_) {
    s.out.finish = "aborted";
    out.push_back(std::move(s.out));
  }
  live_.clear();
  for (auto& j : queue_) {
    GenOutput o;
    o.request_id = j.request_id;
    o.finish = "aborted";
    out.push_back(std::move(o));
  }
  queue_.clear();
  return out;
}

std::vector<GenOutput> GeneratorLogic::step() {
  const int V = model_.config().vocab_size;
  // 1. Admit queued requests into free slots and prefill them together.
  const size_t first_new = live_.size();
  while (!queue_.empty() && int(live_.size()) < max_batch_) {
    Slot s;
    s.job = std::move(queue_.front());
    queue_.pop_front();
    s.rng.reseed(s.job.seed);
    s.out.request_id = s.job.request_id;
    live_.push_back(std::move(s));
  }
  if (live_.size() > first_new) {
    std::vector<std::vector<int>> prompts;
    std::vector<DecodeState*> states;
    for (size_t i = first_new; i < live_.size(); ++i) {
      prompts.push_back(live_[i].job.prompt);
      states.push_back(&live_[i].state);
    }
    std::vector<float> rows(prompts.size() * size_t(V));
    model_.prefill(prompts, states.data(), rows.data());
    for (size_t i = first_new; i < live_.size(); ++i) {
      live_[i].row.assign(rows.begin() + (i - first_new) * V, rows.begin() + (i - first_new + 1) * V);
      live_[i].row_version = version_;
    }
  }
  // 2. Sample one token per live sequence; finished ones leave.
  std::vector<GenOutput> done;
  std::vector<Slot> keep;
  std::vector<int> next;
  for (auto& s : live_) {
    const SampledToken t = sample_token(s.row.data(), V, s.job.sampling, s.rng);
    s.out.tokens.push_back(t.id);
    s.out.logprobs.push_back(t.logprob);
    s.out.versions.push_back(s.row_version);  // the weights that computed this token's distribution
    ++tokens_;
    s.high_prob_run = t.prob > rep_.p ? s.high_prob_run + 1 : 0;
    if (t.id == eos_) {
      s.out.finish = "eos";
    } else if (rep_.n > 0 && s.high_prob_run >= rep_.n) {
      s.out.finish = "repetition";
    } else if (int(s.out.tokens.size()) >= s.job.max_new) {
      s.out.finish = "length";
    }
    if (!s.out.finish.empty()) {
      done.push_back(std::move(s.out));
    } else {
      next.push_back(t.id);
      keep.push_back(std::move(s));
    }
  }
  live_ = std::move(keep);
  // 3. One batched decode step for the rest.
  if (!live_.empty()) {
    std::vector<DecodeState*> states;
    for (auto& s : live_) states.push_back(&s.state);
    std::vector<float> rows(live_.size() * size_t(V));
    model_.decode_step(next.data(), states.data(), int(live_.size()), rows.data());
    for (size_t i = 0; i < live_.size(); ++i) {
      live_[i].row.assign(rows.begin() + i * V, rows.begin() + (i + 1) * V);
      live_[i].row_version = version_;
    }
  }
  return done;
}

}  // namespace m1
