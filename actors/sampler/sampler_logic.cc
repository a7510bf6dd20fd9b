// DynamicSampler: admission, group bookkeeping, dynamic sampling and advantages (contracts in
// sampler_logic.h).
#include "actors/sampler/sampler_logic.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "base/check.h"

namespace m1 {

Status SamplerOptions::validate() const {
  if (group_size < 1 || group_size > 4096)
    return Status::errorf("sampler: group_size {} not in [1, 4096]", group_size);
  if (batch_groups < 1) return Status::error("sampler: batch_groups must be >= 1");
  if (!std::isfinite(oversample) || oversample < 1)
    return Status::errorf("sampler: oversample {} must be finite and >= 1", oversample);
  if (!std::isfinite(advantage.eps) || advantage.eps <= 0)
    return Status::errorf("sampler: advantage eps {} must be finite and > 0", advantage.eps);
  if (first_group_id < 1 || first_request_id < 1)
    return Status::error("sampler: first_group_id and first_request_id must be >= 1");
  M1_RETURN_IF_ERROR(overlong.validate().with_context("sampler"));
  if (!std::isfinite(format_penalty) || format_penalty < 0)
    return Status::errorf("sampler: format_penalty {} must be finite and >= 0", format_penalty);
  return Status::ok();
}

Result<DynamicSampler> DynamicSampler::create(SamplerOptions options, Curriculum curriculum,
                                              LengthWindows windows) {
  M1_RETURN_IF_ERROR(options.validate());
  if (curriculum.size() == 0) return Status::error("sampler: the curriculum has no prompt source");
  if (options.overlong.enabled && options.overlong.l_max == 0 &&
      options.overlong.l_cache > windows.max_new())
    return Status::errorf("sampler: overlong l_cache {} exceeds the first length window {}",
                          options.overlong.l_cache, windows.max_new());
  return DynamicSampler(std::move(options), std::move(curriculum), std::move(windows));
}

DynamicSampler::DynamicSampler(SamplerOptions options, Curriculum curriculum,
                               LengthWindows windows)
    : options_(std::move(options)),
      curriculum_(std::move(curriculum)),
      windows_(std::move(windows)),
      rng_(options_.seed),
      learner_version_(options_.start_learner_version),
      accepted_(options_.accepted_before),
      next_group_id_(options_.first_group_id),
      next_request_id_(options_.first_request_id),
      lengths_(options_.length_history) {}

bool DynamicSampler::set_learner_version(uint64_t version) {
  if (version <= learner_version_) return false;
  learner_version_ = version;
  return true;
}

uint64_t DynamicSampler::issuable() const {
  const uint64_t quota =
      admitted_group_quota(learner_version_ - options_.start_learner_version,
                           std::min(options_.lookahead, options_.max_staleness), options_.batch_groups);
  if (accepted_ >= quota) return 0;
  // in_flight < (quota − accepted) · oversample  ⇔  in_flight < ceil(that), in_flight integer.
  const uint64_t target = uint64_t(std::ceil(double(quota - accepted_) * options_.oversample));
  return target > in_flight_ ? target - in_flight_ : 0;
}

Result<std::vector<IssuedGroup>> DynamicSampler::issue(size_t limit) {
  std::vector<IssuedGroup> out;
  const uint64_t n = std::min<uint64_t>(issuable(), limit);
  for (uint64_t k = 0; k < n; ++k) {
    Result<SampledPrompt> prompt = curriculum_.next(rng_, int64_t(learner_version_));
    if (!prompt.is_ok()) {
      if (out.empty()) return prompt.status().with_context("sampler: drawing a prompt");
      break;
    }
    IssuedGroup g;
    g.group_id = next_group_id_++;
    g.prompt = std::move(prompt).value();
    g.max_new = windows_.max_new();
    g.issue_version = learner_version_;
    g.rollouts.reserve(options_.group_size);
    for (uint32_t i = 0; i < options_.group_size; ++i)
      g.rollouts.push_back(IssuedRollout{next_request_id_++, i, rng_.next_u64()});

    Group state;
    state.issued = g;
    state.issued.rollouts.clear();
    state.judged.resize(options_.group_size);
    state.resolved.assign(options_.group_size, false);
    groups_.emplace(g.group_id, std::move(state));
    ++in_flight_;
    ++counters_.groups_issued;
    out.push_back(std::move(g));
  }
  return out;
}

void DynamicSampler::resolve(std::map<uint64_t, Group>::iterator it, uint32_t index) {
  Group& g = it->second;
  g.resolved[index] = true;
  ++g.resolved_count;
}

Result<GroupUpdate> DynamicSampler::on_judged(uint64_t group_id, const JudgedRollout& r) {
  GroupUpdate u;
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    ++counters_.rollouts_ignored;
    u.fate = GroupFate::kIgnored;
    u.reason = fmt::format("verdict for unknown or finished group {}", group_id);
    return u;
  }
  Group& g = it->second;
  if (r.index >= options_.group_size)
    return Status::errorf("sampler: verdict for group {} index {} >= group size {}", group_id,
                          r.index, options_.group_size);
  if (!std::isfinite(r.reward) || r.tokens < 0)
    return Status::errorf("sampler: verdict for group {} index {}: reward {} must be finite and "
                          "tokens {} >= 0", group_id, r.index, r.reward, r.tokens);
  if (g.resolved[r.index]) {
    ++counters_.rollouts_ignored;
    u.fate = GroupFate::kIgnored;
    u.reason = fmt::format("duplicate verdict for group {} index {}", group_id, r.index);
    return u;
  }
  g.judged[r.index] = r;
  resolve(it, r.index);
  ++counters_.rollouts_judged;
  counters_.tokens_generated += uint64_t(r.tokens);
  if (g.dropped) {
    counters_.tokens_wasted_dead_letter += uint64_t(r.tokens);
    u.fate = GroupFate::kIgnored;
    u.reason = "group already dropped: " + g.drop_reason;
    if (g.resolved_count == options_.group_size) groups_.erase(it);
    return u;
  }
  if (g.resolved_count < options_.group_size) return u;  // kPending
  u = complete(g);
  groups_.erase(it);
  return u;
}

GroupUpdate DynamicSampler::complete(Group& g) {
  GroupUpdate u;
  CompletedGroup c;
  c.group_id = g.issued.group_id;
  c.prompt = std::move(g.issued.prompt);
  c.max_new = g.issued.max_new;
  c.issue_version = g.issued.issue_version;
  std::vector<double> rewards;
  std::vector<int64_t> lengths;
  uint64_t tokens = 0;
  for (std::optional<JudgedRollout>& j : g.judged) {
    ScoredRollout s;
    s.judged = std::move(*j);
    s.overlong = overlong_penalty(options_.overlong, s.judged.tokens, c.max_new);
    s.format = -options_.format_penalty * (1.0 - std::clamp(s.judged.format_reward, 0.0, 1.0));
    s.reward = s.judged.reward + s.overlong + s.format;
    rewards.push_back(s.reward);
    lengths.push_back(s.judged.tokens);
    tokens += uint64_t(s.judged.tokens);
    lengths_.add(s.judged.tokens);
    task_rewards_.add(c.prompt.task, s.reward);
    c.rollouts.push_back(std::move(s));
  }
  u.window_advanced = windows_.observe(c.max_new, lengths);
  if (u.window_advanced) ++counters_.windows_advanced;
  if (options_.dynamic_sampling && zero_variance(rewards)) {
    --in_flight_;
    c.stats = group_stats(rewards);
    ++counters_.groups_dropped_zero_variance;
    counters_.tokens_wasted_zero_variance += tokens;
    u.fate = GroupFate::kDroppedZeroVariance;
    u.reason = fmt::format("zero variance: all {} rewards equal {}", rewards.size(), rewards[0]);
  } else {
    const std::vector<double> adv = grpo_advantages(rewards, options_.advantage, &c.stats);
    for (size_t i = 0; i < adv.size(); ++i) c.rollouts[i].advantage = adv[i];
    if (options_.await_persistence) {
      awaiting_persistence_.insert(c.group_id);  // stays in flight until on_persisted
    } else {
      --in_flight_;
      ++accepted_;
      ++counters_.groups_accepted;
    }
    u.fate = GroupFate::kAccepted;
  }
  u.group = std::move(c);
  return u;
}

Result<GroupUpdate> DynamicSampler::on_dead_letter(uint64_t group_id, uint32_t index,
                                                   int64_t tokens, const std::string& reason) {
  GroupUpdate u;
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    ++counters_.rollouts_ignored;
    u.fate = GroupFate::kIgnored;
    u.reason = fmt::format("dead letter for unknown or finished group {}", group_id);
    return u;
  }
  Group& g = it->second;
  if (index >= options_.group_size)
    return Status::errorf("sampler: dead letter for group {} index {} >= group size {}", group_id,
                          index, options_.group_size);
  if (tokens < 0)
    return Status::errorf("sampler: dead letter for group {} index {}: tokens {} < 0", group_id,
                          index, tokens);
  if (g.resolved[index]) {
    ++counters_.rollouts_ignored;
    u.fate = GroupFate::kIgnored;
    u.reason = fmt::format("dead letter for group {} index {} already resolved", group_id, index);
    return u;
  }
  resolve(it, index);
  counters_.tokens_generated += uint64_t(tokens);
  counters_.tokens_wasted_dead_letter += uint64_t(tokens);
  if (g.dropped) {
    u.fate = GroupFate::kIgnored;
    u.reason = "group already dropped: " + g.drop_reason;
  } else {
    g.dropped = true;
    g.drop_reason = fmt::format("rollout {} dead-lettered: {}", index, reason);
    for (const std::optional<JudgedRollout>& j : g.judged)
      if (j) counters_.tokens_wasted_dead_letter += uint64_t(j->tokens);
    --in_flight_;
    ++counters_.groups_dropped_dead_letter;
    u.fate = GroupFate::kDroppedDeadLetter;
    u.reason = g.drop_reason;
  }
  if (g.resolved_count == options_.group_size) groups_.erase(it);
  return u;
}

Status DynamicSampler::on_persisted(uint64_t group_id, bool ok) {
  if (awaiting_persistence_.erase(group_id) == 0)
    return Status::errorf("sampler: group {} is not awaiting persistence", group_id);
  --in_flight_;
  if (ok) {
    ++accepted_;
    ++counters_.groups_accepted;
  } else {
    ++persist_failures_;
  }
  return Status::ok();
}

}  // namespace m1
