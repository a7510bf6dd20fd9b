#include "actors/learner/learner_logic.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "base/file.h"

namespace m1 {

namespace {

// Packs rollouts rs into b and records, for each response token in order, the row of b whose
// logp scores it (the position before it) and its behaviour logprob. With sharing, the rollouts
// of one prompt (a group's samples) read one prefix segment, prompt[0, P−1), each going on with
// prompt[P−1] + response (Batch: shared prefixes): the prompt is computed once, not G times.
void pack_rollouts(const std::vector<const TrainRollout*>& rs, bool share, Batch* b, std::vector<int>* rows,
                   std::vector<float>* blp) {
  std::map<std::vector<int>, int> uses, prefix;  // prompt → rollouts; prompt → prefix segment
  if (share)
    for (const TrainRollout* r : rs)
      if (r->prompt.size() >= 2) ++uses[r->prompt];
  for (const TrainRollout* r : rs) {
    const int P = int(r->prompt.size());
    int first;  // the row that scores response token 0
    if (auto u = uses.find(r->prompt); u != uses.end() && u->second >= 2) {
      auto [it, fresh] = prefix.try_emplace(r->prompt, -1);
      if (fresh) it->second = b->add_prefix({r->prompt.begin(), r->prompt.end() - 1});
      std::vector<int> toks{r->prompt.back()};
      toks.insert(toks.end(), r->tokens.begin(), r->tokens.end());
      first = b->size();
      b->add_continuation(it->second, toks);
    } else {
      std::vector<int> toks = r->prompt;
      toks.insert(toks.end(), r->tokens.begin(), r->tokens.end());
      first = b->size() + P - 1;
      b->add_segment(toks);
    }
    for (size_t j = 0; j < r->tokens.size(); ++j) {
      rows->push_back(first + int(j));
      blp->push_back(r->behavior_logprobs[j]);
    }
  }
}

// Σ x² in double, in 8 independent lanes (one chain would serialise on the add's latency: 3% of a
// learner step for the small model's 2M parameters).
double sum_squares(const std::vector<float>& x) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= x.size(); i += 8)
    for (size_t j = 0; j < 8; ++j) lane[j] += double(x[i + j]) * x[i + j];
  for (; i < x.size(); ++i) lane[0] += double(x[i]) * x[i];
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Deals a batch into K minibatches: whole groups (a group's samples then share their prompt's
// computation) when there are at least K groups, else single rollouts; in a shuffled order.
std::vector<std::vector<const TrainRollout*>> deal_minibatches(const std::vector<TrainRollout>& batch, int K,
                                                               Rng& rng) {
  std::vector<std::vector<const TrainRollout*>> units;  // a group, or a rollout
  std::map<uint64_t, size_t> unit_of;
  for (const TrainRollout& r : batch) {
    auto [it, fresh] = unit_of.try_emplace(r.group_id, units.size());
    if (fresh) units.emplace_back();
    units[it->second].push_back(&r);
  }
  if (int(units.size()) < K) {
    units.clear();
    for (const TrainRollout& r : batch) units.push_back({&r});
  }
  for (size_t i = units.size(); i > 1; --i) std::swap(units[i - 1], units[rng.below(i)]);
  std::vector<std::vector<const TrainRollout*>> mbs(static_cast<size_t>(K));
  for (size_t k = 0; k < mbs.size(); ++k)  // units [U·k/K, U·(k+1)/K)
    for (size_t u = units.size() * k / mbs.size(); u < units.size() * (k + 1) / mbs.size(); ++u)
      mbs[k].insert(mbs[k].end(), units[u].begin(), units[u].end());
  return mbs;
}

// True when every token of r was sampled by weights version v.
bool wholly_of(const TrainRollout& r, uint64_t v) {
  if (r.versions.empty()) return false;
  for (uint64_t x : r.versions)
    if (x != v) return false;
  return true;
}

}  // namespace

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 2 || y.size() != n) return NAN;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= double(n);
  my /= double(n);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx <= 0 || syy <= 0) return NAN;
  return sxy / std::sqrt(sxx * syy);
}

LearnerLogic::LearnerLogic(Model model, LearnerConfig cfg)
    : model_(std::move(model)), cfg_(cfg), rng_(cfg.seed), ws_(new_workspace()) {
  m_.assign(model_.num_params(), 0.f);
  v_.assign(model_.num_params(), 0.f);
  grads_.assign(model_.num_params(), 0.f);
}

LearnerStats LearnerLogic::train(const std::vector<TrainRollout>& batch) {
  const auto t0 = std::chrono::steady_clock::now();
  LearnerStats st;
  st.rollouts = int(batch.size());
  const int K = std::max(1, std::min<int>(cfg_.minibatches, int(batch.size())));
  const std::vector<std::vector<const TrainRollout*>> minibatches = deal_minibatches(batch, K, rng_);
  std::vector<double> pb, pl;  // probabilities for the correlation
  uint64_t oldest = UINT64_MAX;
  for (const auto& r : batch)
    for (uint64_t v : r.versions) oldest = std::min(oldest, v);
  st.max_staleness = oldest == UINT64_MAX ? 0 : double(version_ - std::min(version_, oldest));
  double ent_sum = 0, ratio_sum = 0, clip_sum = 0;
  score_old_versions(batch, &pb, &pl);
  std::vector<float> before;  // this version's weights, kept for later stale rollouts
  if (cfg_.pearson_history > 0) {
    if (history_.size() >= size_t(cfg_.pearson_history)) {  // reuse the oldest snapshot's buffer
      before = std::move(history_.front().second);
      history_.pop_front();
    }
    before.assign(model_.params(), model_.params() + model_.num_params());
  }
  for (int k = 0; k < K; ++k) {
    Batch b;
    std::vector<int> rows, seq;
    std::vector<float> blp, adv;
    std::vector<bool> same_version;
    const std::vector<const TrainRollout*>& mb = minibatches[size_t(k)];
    pack_rollouts(mb, cfg_.share_prompts, &b, &rows, &blp);
    const int S = int(mb.size());
    for (int i = 0; i < S; ++i) {
      // The correlation compares like with like: only rollouts generated entirely by this
      // version (a hot-swapped sequence carries state computed by older weights).
      const size_t n = mb[size_t(i)]->tokens.size();
      seq.insert(seq.end(), n, i);
      adv.insert(adv.end(), n, mb[size_t(i)]->advantage);
      same_version.insert(same_version.end(), n, wholly_of(*mb[size_t(i)], version_));
    }
    ForwardOut out;
    model_.forward(b, *ws_, out);
    const int N = int(rows.size());
    std::vector<float> lp(static_cast<size_t>(N)), dJ(static_cast<size_t>(N));
    for (int i = 0; i < N; ++i) {
      lp[i] = out.logp[size_t(rows[i])];
      ent_sum += out.entropy[size_t(rows[i])];
    }
    // Only before the first optimizer step do the learner's weights equal version_.
    if (k == 0)
      for (int i = 0; i < N; ++i)
        if (same_version[i]) {
          pb.push_back(std::exp(double(blp[i])));
          pl.push_back(std::exp(double(lp[i])));
        }
    ObjectiveStats os = objective_grad(cfg_.objective, lp.data(), blp.data(), adv.data(), seq.data(), N, S, dJ.data());
    std::vector<float> dlogp(static_cast<size_t>(b.size()), 0.f);
    for (int i = 0; i < N; ++i) dlogp[size_t(rows[i])] = -dJ[i];
    std::fill(grads_.begin(), grads_.end(), 0.f);
    model_.backward(b, *ws_, dlogp.data(), 1.0f, grads_.data());
    const double gnorm = std::sqrt(sum_squares(grads_));
    const float scale = (cfg_.clip > 0 && gnorm > cfg_.clip) ? float(cfg_.clip / gnorm) : 1.0f;
    ++adam_step_;
    model_.kernels().adamw(model_.params(), grads_.data(), m_.data(), v_.data(), model_.num_params(), float(cfg_.lr),
                           float(cfg_.beta1), float(cfg_.beta2), float(cfg_.eps), float(cfg_.weight_decay),
                           int(adam_step_), scale);
    st.loss += (-os.J + out.aux_loss) / K;
    st.objective += os.J / K;
    st.aux_loss += out.aux_loss / K;
    st.grad_norm += gnorm / K;
    st.ratio_max = std::max(st.ratio_max, os.ratio_max);
    ratio_sum += os.ratio_mean * N;
    clip_sum += os.clip_fraction * N;
    st.tokens += N;
    st.computed_tokens += b.size();
  }
  if (cfg_.pearson_history > 0) {
    history_.emplace_back(version_, std::move(before));
    while (history_.size() > size_t(cfg_.pearson_history)) history_.pop_front();
  }
  ++step_;
  ++version_;
  st.version = version_;
  st.ratio_mean = st.tokens ? ratio_sum / st.tokens : 0;
  st.clip_fraction = st.tokens ? clip_sum / st.tokens : 0;
  st.entropy_mean = st.tokens ? ent_sum / st.tokens : 0;
  st.pearson = pearson(pb, pl);
  st.pearson_tokens = int(pb.size());
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

void LearnerLogic::score_old_versions(const std::vector<TrainRollout>& batch, std::vector<double>* pb,
                                      std::vector<double>* pl) {
  if (history_.empty() || cfg_.pearson_max_rollouts <= 0) return;
  int budget = cfg_.pearson_max_rollouts;
  for (const auto& [v, params] : history_) {
    Batch b;
    std::vector<int> rows;
    std::vector<float> blp;
    std::vector<const TrainRollout*> chosen;
    for (const TrainRollout& r : batch) {
      if (int(chosen.size()) == budget) break;
      if (wholly_of(r, v)) chosen.push_back(&r);
    }
    budget -= int(chosen.size());
    pack_rollouts(chosen, cfg_.share_prompts, &b, &rows, &blp);
    if (rows.empty()) continue;
    if (!eval_) eval_ = std::make_unique<Model>(model_);
    std::copy(params.begin(), params.end(), eval_->params());
    ForwardOut out;
    eval_->forward(b, *ws_, out);
    for (size_t i = 0; i < rows.size(); ++i) {
      pb->push_back(std::exp(double(blp[i])));
      pl->push_back(std::exp(double(out.logp[size_t(rows[i])])));
    }
  }
}

Status LearnerLogic::save(const std::string& dir) const {
  M1_RETURN_IF_ERROR(save_model(model_, dir, "F32"));
  M1_RETURN_IF_ERROR(save_adam_moments(model_, m_, v_, dir));
  nlohmann::json j;
  j["format"] = "m1rl-learner-checkpoint";
  j["version"] = 1;
  j["weights_version"] = version_;
  j["step"] = step_;
  j["adam_step"] = adam_step_;
  j["rng"] = rng_.state_strings();
  return write_file(path_join(dir, "learner.json"), j.dump(2));
}

Status LearnerLogic::load(const std::string& dir) {
  M1_ASSIGN_OR_RETURN(Model m, load_model(dir));
  if (m.num_params() != model_.num_params())
    return Status::errorf("{}: checkpoint has {} parameters, the run's model {}", dir, m.num_params(),
                          model_.num_params());
  model_ = std::move(m);
  M1_RETURN_IF_ERROR(load_adam_moments(model_, dir, &m_, &v_));
  const std::string p = path_join(dir, "learner.json");
  M1_ASSIGN_OR_RETURN(std::string text, read_file(p));
  try {
    auto j = nlohmann::json::parse(text);
    version_ = j.at("weights_version").get<uint64_t>();
    step_ = j.at("step").get<uint64_t>();
    adam_step_ = j.at("adam_step").get<uint64_t>();
    rng_.set_state_strings(j.at("rng").get<std::vector<std::string>>());
  } catch (const std::exception& e) {
    return Status::errorf("{}: invalid learner state: {}", p, e.what());
  }
  return Status::ok();
}

}  // namespace m1
