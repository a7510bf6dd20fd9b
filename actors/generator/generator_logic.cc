#include "actors/generator/generator_logic.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "base/check.h"
#include "base/clock.h"

namespace m1 {

GeneratorLogic::GeneratorLogic(Model model, uint64_t version, int max_batch, int eos_id, RepetitionStop rep,
                               int prefill_cap)
    : model_(std::move(model)),
      version_(version),
      max_batch_(std::max(1, max_batch)),
      eos_(eos_id),
      prefill_cap_(prefill_cap > 0 ? prefill_cap : std::max(1, max_batch_ / 2)),
      rep_(rep) {}

bool GeneratorLogic::submit(GenJob job) {
  M1_CHECK(!job.prompt.empty());
  if (!active_.insert(job.request_id).second) return false;
  queue_.push_back(std::move(job));
  return true;
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
  active_.clear();
  return out;
}

std::vector<GenOutput> GeneratorLogic::step() {
  const int V = model_.config().vocab_size;
  // 1. Sequences whose prompt is fed take free sampling slots (max_batch_), in arrival order; then
  //    queued requests start feeding their prompts while fewer than prefill_cap_ sequences wait
  //    (feeding, or fed and waiting for a sampling slot).
  int sampling = 0, waiting = 0;
  for (const Slot& s : live_)
    if (s.sampling) ++sampling;
    else if (!s.follower) ++waiting;
  for (Slot& s : live_) {
    if (s.sampling || sampling >= max_batch_) continue;
    if (s.follower) {
      if (!s.share->ready) continue;
      if (s.share.use_count() == 1) {  // the last follower takes the snapshot
        s.state = std::move(s.share->state);
        s.row = std::move(s.share->row);
      } else {
        s.state = s.share->state;
        s.row = s.share->row;
      }
      s.row_version = s.share->version;
      s.fed = s.job.prompt.size();
      s.share.reset();
    } else if (s.fed == s.job.prompt.size()) {
      --waiting;
    } else {
      continue;
    }
    s.sampling = true;
    ++sampling;
  }
  while (!queue_.empty()) {
    std::shared_ptr<SharedPrompt> lead;
    for (const Slot& s : live_)
      if (s.share && s.share->version == version_ && s.share->prompt == queue_.front().prompt) {
        lead = s.share;
        break;
      }
    if (!lead && waiting >= prefill_cap_) break;
    Slot s;
    s.job = std::move(queue_.front());
    queue_.pop_front();
    s.rng.reseed(s.job.seed);
    s.out.request_id = s.job.request_id;
    if (lead) {
      s.share = std::move(lead);
      s.follower = true;
      shared_ += s.job.prompt.size();
    } else {
      s.state = model_.new_state();
      s.share = std::make_shared<SharedPrompt>();
      s.share->prompt = s.job.prompt;
      s.share->version = version_;
      ++waiting;
    }
    live_.push_back(std::move(s));
  }
  // 2. Sample one token per sampling sequence; finished ones leave.
  std::vector<GenOutput> done;
  std::vector<Slot> keep;
  std::vector<int> next;
  keep.reserve(live_.size());
  for (auto& s : live_) {
    if (!s.sampling) {
      keep.push_back(std::move(s));
      continue;
    }
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
      active_.erase(s.out.request_id);
      done.push_back(std::move(s.out));
    } else {
      s.next = t.id;
      keep.push_back(std::move(s));
    }
  }
  live_ = std::move(keep);
  // 3. One batched decode step: every sampling sequence's new token and every feeding sequence's
  //    next prompt token (prompt processing shares the weight pass instead of taking its own).
  std::vector<DecodeState*> states;
  std::vector<size_t> rows_of;
  for (size_t i = 0; i < live_.size(); ++i) {
    Slot& s = live_[i];
    if (s.sampling) {
      next.push_back(s.next);
    } else if (!s.follower && s.fed < s.job.prompt.size()) {
      next.push_back(s.job.prompt[s.fed]);
    } else {
      continue;  // ready: its row waits for a sampling slot
    }
    states.push_back(&s.state);
    rows_of.push_back(i);
  }
  if (!rows_of.empty()) {
    std::vector<float> rows(rows_of.size() * size_t(V));
    const auto t0 = std::chrono::steady_clock::now();
    model_.decode_step(next.data(), states.data(), int(rows_of.size()), rows.data());
    decode_s_ += seconds_since(t0);
    ++steps_;
    rows_ += rows_of.size();
    for (size_t r = 0; r < rows_of.size(); ++r) {
      Slot& s = live_[rows_of[r]];
      if (!s.sampling) {
        if (s.fed == 0) s.feed_version = version_;
        ++s.fed;
        ++fed_;
      }
      if (s.sampling || s.fed == s.job.prompt.size()) {
        s.row.assign(rows.begin() + r * V, rows.begin() + (r + 1) * V);
        // The first token's distribution depends on every weights version that fed the prompt:
        // it carries the oldest (a swap during feeding makes the rollout mixed-version, which
        // the learner's same-version Pearson and the staleness rule must see).
        s.row_version = s.sampling ? version_ : s.feed_version;
      }
      if (!s.sampling && s.fed == s.job.prompt.size() && s.share) {
        // The leader is fed: its followers start from here (with no followers the share dies).
        if (s.share.use_count() > 1) {
          s.share->state = s.state;
          s.share->row = s.row;
          s.share->version = s.row_version;
          s.share->ready = true;
        }
        s.share.reset();
      }
    }
  }
  return done;
}

}  // namespace m1
