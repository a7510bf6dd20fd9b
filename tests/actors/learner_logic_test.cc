// The learner's pure logic: one CISPO batch raises the logprob of a positive-advantage response
// and lowers a negative one; versions advance per batch; the Pearson metric; checkpoints restore.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "actors/learner/learner_logic.h"
#include "base/file.h"
#include "base/rng.h"
#include "model/model.h"

using namespace m1;

namespace {

Model tiny() {
  auto c = load_model_config(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json");
  REQUIRE(c.is_ok());
  Model m(c.value());
  m.init_random(3);
  return m;
}

double seq_logprob(const Model& m, const std::vector<int>& prompt, const std::vector<int>& resp) {
  Batch b;
  std::vector<int> t = prompt;
  t.insert(t.end(), resp.begin(), resp.end());
  b.add_segment(t);
  Workspace* ws = new_workspace();
  ForwardOut o;
  m.forward(b, *ws, o);
  delete_workspace(ws);
  double s = 0;
  for (size_t j = 0; j < resp.size(); ++j) s += o.logp[prompt.size() - 1 + j];
  return s;
}

}  // namespace

TEST_CASE("learner: a CISPO batch moves logprobs in the direction of the advantage") {
  for (const char* obj : {"cispo", "cispo-mask", "grpo", "dapo"}) {
    CAPTURE(obj);
    Model m = tiny();
    const std::vector<int> prompt = {256, 49, 43, 50, 61}, good = {51, 257}, bad = {52, 257};
    const double g0 = seq_logprob(m, prompt, good), b0 = seq_logprob(m, prompt, bad);
    LearnerConfig lc;
    lc.objective = objective_from_name(obj).value();
    lc.lr = 1e-2;
    LearnerLogic L(m, lc);
    std::vector<TrainRollout> batch(2);
    batch[0] = {1, prompt, good, {}, {0, 0}, 1.0f};
    batch[1] = {1, prompt, bad, {}, {0, 0}, -1.0f};
    // behaviour logprobs = the current policy's (on-policy)
    Batch bb;
    for (auto* r : {&batch[0], &batch[1]}) {
      std::vector<int> t = prompt;
      t.insert(t.end(), r->tokens.begin(), r->tokens.end());
      bb.add_segment(t);
    }
    Workspace* ws = new_workspace();
    ForwardOut o;
    m.forward(bb, *ws, o);
    delete_workspace(ws);
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) batch[i].behavior_logprobs.push_back(o.logp[size_t(bb.seg[i]) + prompt.size() - 1 + j]);
    LearnerStats st = L.train(batch);
    CHECK(st.version == 1);
    CHECK(L.version() == 1);
    CHECK(st.ratio_mean == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(st.pearson_tokens == 4);
    CHECK(st.pearson == doctest::Approx(1.0).epsilon(1e-4));
    const double g1 = seq_logprob(L.model(), prompt, good), b1 = seq_logprob(L.model(), prompt, bad);
    MESSAGE(std::string(obj) << ": good " << g0 << " -> " << g1 << ", bad " << b0 << " -> " << b1);
    CHECK(g1 > g0);
    CHECK(b1 < b0);
  }
}

TEST_CASE("learner: checkpoint save and load restore weights, optimizer and version") {
  Model m = tiny();
  LearnerConfig lc;
  LearnerLogic a(m, lc);
  std::vector<TrainRollout> batch = {{1, {256, 49}, {50, 257}, {-1.f, -1.f}, {0, 0}, 1.0f},
                                     {1, {256, 49}, {51, 257}, {-1.f, -1.f}, {0, 0}, -1.0f}};
  a.train(batch);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-learner-" + std::to_string(getpid()))).string();
  remove_all(dir);
  REQUIRE(make_dirs(dir).is_ok());
  REQUIRE(a.save(dir).is_ok());
  LearnerLogic b(m, lc);
  REQUIRE(b.load(dir).is_ok());
  CHECK(b.version() == 1);
  CHECK(b.step() == 1);
  a.train(batch);
  b.train(batch);
  double maxdiff = 0;
  for (size_t i = 0; i < m.num_params(); ++i)
    maxdiff = std::max(maxdiff, double(std::fabs(a.model().params()[i] - b.model().params()[i])));
  CHECK(maxdiff == 0.0);
  remove_all(dir);
}

TEST_CASE("learner: with a version history, rollouts of an older version enter the correlation") {
  Model m = tiny();
  const std::vector<int> prompt = {256, 49, 43, 50, 61};
  // Rollouts sampled by version 0: behaviour logprobs = version 0's own.
  std::vector<TrainRollout> batch;
  Batch bb;
  const std::vector<std::vector<int>> resps = {{51, 257}, {52, 257}, {53, 54, 257}};
  for (size_t i = 0; i < resps.size(); ++i) {
    batch.push_back({1, prompt, resps[i], {}, std::vector<uint64_t>(resps[i].size(), 0), i % 2 ? -1.0f : 1.0f});
    std::vector<int> t = prompt;
    t.insert(t.end(), resps[i].begin(), resps[i].end());
    bb.add_segment(t);
  }
  Workspace* ws = new_workspace();
  ForwardOut o;
  m.forward(bb, *ws, o);
  delete_workspace(ws);
  for (size_t i = 0; i < batch.size(); ++i)
    for (size_t j = 0; j < resps[i].size(); ++j)
      batch[i].behavior_logprobs.push_back(o.logp[size_t(bb.seg[int(i)]) + prompt.size() - 1 + j]);
  for (int history : {0, 2}) {
    CAPTURE(history);
    LearnerConfig lc;
    lc.lr = 1e-2;
    lc.pearson_history = history;
    lc.pearson_max_rollouts = 2;
    LearnerLogic L(m, lc);
    LearnerStats s0 = L.train(batch);  // version 0: on-version
    CHECK(s0.pearson_tokens == 7);
    LearnerStats s1 = L.train(batch);  // version 1 now; the rollouts are one version old
    LearnerStats s2 = L.train(batch);  // two versions old
    if (history == 0) {
      CHECK(s1.pearson_tokens == 0);
      CHECK(std::isnan(s1.pearson));
    } else {
      // scored with version 0's kept weights: the same probabilities the "generator" recorded
      CHECK(s1.pearson_tokens == 4);  // the first pearson_max_rollouts = 2 rollouts: 2 + 2 tokens
      CHECK(s1.pearson == doctest::Approx(1.0).epsilon(1e-5));
      CHECK(s2.pearson_tokens == 4);
      CHECK(s2.pearson == doctest::Approx(1.0).epsilon(1e-5));
    }
  }
}

TEST_CASE("pearson: perfect, anti and undefined correlation") {
  CHECK(pearson({1, 2, 3}, {2, 4, 6}) == doctest::Approx(1.0));
  CHECK(pearson({1, 2, 3}, {3, 2, 1}) == doctest::Approx(-1.0));
  CHECK(std::isnan(pearson({1, 1, 1}, {1, 2, 3})));
  CHECK(std::isnan(pearson({1}, {1})));
}

TEST_CASE("learner: sharing a group's prompt changes the work, not the update") {
  // Three prompts × four samples, two minibatches; random behaviour logprobs near the policy's;
  // with and without the load-balancing loss. Both learners take the same steps (up to rounding,
  // which AdamW with eps 1e-15 magnifies for parameters whose gradient is near zero).
  for (double aux_coef : {0.0, 0.01}) {
    CAPTURE(aux_coef);
    auto c = load_model_config(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json");
    REQUIRE(c.is_ok());
    c.value().router_aux_loss_coef = aux_coef;
    Model m(c.value());
    m.init_random(5);
    Rng r(7);
    std::vector<TrainRollout> batch;
    for (int g = 0; g < 3; ++g) {
      std::vector<int> prompt = {256};
      for (int i = 0; i < 4 + 3 * g; ++i) prompt.push_back(40 + int(r.below(20)));
      for (int i = 0; i < 4; ++i) {
        TrainRollout t{uint64_t(g + 1), prompt, {}, {}, {}, i % 2 ? 1.0f : -0.5f};
        for (int j = 0, n = 1 + int(r.below(6)); j < n; ++j) {
          t.tokens.push_back(40 + int(r.below(20)));
          t.behavior_logprobs.push_back(float(-5.5 + 0.2 * r.normal()));
          t.versions.push_back(0);
        }
        batch.push_back(t);
      }
    }
    LearnerStats st[2];
    std::vector<float> params[2];
    for (bool share : {false, true}) {
      LearnerConfig lc;
      lc.lr = 1e-2;
      lc.minibatches = 2;
      lc.share_prompts = share;
      LearnerLogic L(m, lc);
      L.train(batch);
      st[share] = L.train(batch);  // a second step: the moments and the weights differ by now
      params[share].assign(L.model().params(), L.model().params() + m.num_params());
    }
    MESSAGE("computed tokens: " << st[0].computed_tokens << " unshared, " << st[1].computed_tokens << " shared");
    CHECK(st[1].tokens == st[0].tokens);
    CHECK(st[1].computed_tokens < st[0].computed_tokens);
    // Minibatches hold whole groups: each prompt (less its last token) is computed once per step,
    // and each sample from the prompt's last token on.
    int whole = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      const bool group_start = i == 0 || batch[i].group_id != batch[i - 1].group_id;
      whole += int(batch[i].tokens.size()) + 1 + (group_start ? int(batch[i].prompt.size()) - 1 : 0);
    }
    CHECK(st[1].computed_tokens == whole);
    CHECK(st[1].objective == doctest::Approx(st[0].objective).epsilon(1e-5));
    CHECK(st[1].ratio_mean == doctest::Approx(st[0].ratio_mean).epsilon(1e-5));
    CHECK(st[1].entropy_mean == doctest::Approx(st[0].entropy_mean).epsilon(1e-5));
    double mx = 0, moved = 0;
    for (size_t i = 0; i < m.num_params(); ++i) {
      mx = std::max(mx, double(std::fabs(params[1][i] - params[0][i])));
      moved = std::max(moved, double(std::fabs(params[0][i] - m.params()[i])));
    }
    MESSAGE("max parameter difference " << mx << " after moving up to " << moved);
    CHECK(moved > 1e-3);
    CHECK(mx < 1e-4 * moved);
  }
}
