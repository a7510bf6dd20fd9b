// Generator logic: continuous batching, per-token versions across a weights hot-swap, finish
// reasons, and behaviour logprobs equal to the model's own.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "actors/generator/generator_logic.h"
#include "model/model.h"

using namespace m1;

namespace {
Model tiny(uint64_t seed) {
  auto c = load_model_config(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json");
  REQUIRE(c.is_ok());
  Model m(c.value());
  m.init_random(seed);
  return m;
}
// Request id's prompt: distinct for ids 1..9 (no sharing) unless the test sets it.
std::vector<int> prompt_of(uint64_t id) { return {256, 48 + int(id % 10), 43, 50, 61}; }
GenJob job(uint64_t id, int max_new) {
  GenJob j;
  j.request_id = id;
  j.prompt = prompt_of(id);
  j.max_new = max_new;
  j.seed = id;
  return j;
}
// A request with request 1's prompt: requests made by it share one prompt.
GenJob shared_job(uint64_t id, int max_new) {
  GenJob j = job(id, max_new);
  j.prompt = prompt_of(1);
  return j;
}
// Runs g to idle; outputs in finishing order.
std::vector<GenOutput> drain(GeneratorLogic& g) {
  std::vector<GenOutput> out;
  for (int step = 0; step < 1000 && !g.idle(); ++step)
    for (auto& o : g.step()) out.push_back(std::move(o));
  return out;
}
double max_logprob_error(const Model& m, const std::vector<int>& prompt, const std::vector<GenOutput>& out) {
  double maxdiff = 0;
  for (auto& o : out) {
    Batch b;
    std::vector<int> t = prompt;
    t.insert(t.end(), o.tokens.begin(), o.tokens.end());
    b.add_segment(t);
    Workspace* ws = new_workspace();
    ForwardOut f;
    m.forward(b, *ws, f);
    delete_workspace(ws);
    for (size_t j = 0; j < o.tokens.size(); ++j)
      maxdiff = std::max(maxdiff, std::fabs(double(o.logprobs[j]) - f.logp[prompt.size() - 1 + j]));
  }
  return maxdiff;
}
}  // namespace

TEST_CASE("generator: prompts are fed while other sequences sample; a freed slot is refilled at once") {
  // max_batch 1, prefill_cap 1, prompts of 5 tokens: job 1 feeds its prompt in steps 1-5 and
  // samples in steps 6-7; job 2 starts feeding in step 6, next to job 1's sampling (sequentially
  // it would start in step 8), and samples in steps 11-13.
  GeneratorLogic g(tiny(1), 1, 1, /*eos*/ 100000, {}, 1);
  g.submit(job(1, 2));
  g.submit(job(2, 3));
  std::vector<std::pair<uint64_t, int>> finished;  // request, step
  for (int step = 1; step <= 50 && !g.idle(); ++step) {
    for (auto& o : g.step()) {
      finished.emplace_back(o.request_id, step);
      CHECK(o.finish == "length");
      CHECK(o.tokens.size() == size_t(o.request_id == 1 ? 2 : 3));
      CHECK(o.tokens.size() == o.logprobs.size());
      CHECK(o.tokens.size() == o.versions.size());
    }
    CHECK(g.live() <= 2);  // max_batch + prefill_cap
  }
  CHECK(finished == std::vector<std::pair<uint64_t, int>>{{1, 7}, {2, 13}});
}

TEST_CASE("generator: with more requests than slots, live sequences stay within max_batch + prefill_cap") {
  GeneratorLogic g(tiny(1), 1, 2, /*eos*/ 100000, {}, 1);
  for (uint64_t i = 1; i <= 6; ++i) g.submit(job(i, int(2 + i % 3)));
  std::vector<uint64_t> finished;
  for (int step = 0; step < 200 && !g.idle(); ++step) {
    for (auto& o : g.step()) finished.push_back(o.request_id);
    CHECK(g.live() <= 3);
  }
  std::sort(finished.begin(), finished.end());
  CHECK(finished == std::vector<uint64_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("generator: after a hot swap, tokens carry the version of the weights that computed them") {
  Model a = tiny(1), b = tiny(2);
  GeneratorLogic g(a, 1, 4, 100000, {});
  g.submit(job(1, 4));
  // 5 steps feed the prompt (the last computes token 0's distribution, version 1); the 6th samples
  // token 0 and computes token 1's distribution, still with version 1. Then the swap.
  for (int i = 0; i < 6; ++i) g.step();
  g.set_weights(b.params(), b.num_params(), 2);
  std::vector<GenOutput> out;
  while (!g.idle())
    for (auto& o : g.step()) out.push_back(o);
  REQUIRE(out.size() == 1);
  CHECK(out[0].versions == std::vector<uint64_t>{1, 1, 2, 2});
}

TEST_CASE("generator: a swap while the prompt is fed makes the first token carry the older version") {
  Model a = tiny(1), b = tiny(2);
  GeneratorLogic g(a, 1, 4, 100000, {});
  g.submit(job(1, 3));
  g.step();  // prompt tokens 0 and 1 fed with version 1
  g.step();
  g.set_weights(b.params(), b.num_params(), 2);
  std::vector<GenOutput> out;
  while (!g.idle())
    for (auto& o : g.step()) out.push_back(o);
  REQUIRE(out.size() == 1);
  CHECK(out[0].versions == std::vector<uint64_t>{1, 2, 2});
}

TEST_CASE("generator: behaviour logprobs equal the model's logprobs of the sampled tokens") {
  Model m = tiny(4);
  GeneratorLogic g(m, 1, 8, 100000, {});
  for (uint64_t i = 1; i <= 3; ++i) g.submit(job(i, 6));
  const auto out = drain(g);
  REQUIRE(out.size() == 3);
  for (const auto& o : out) CHECK(max_logprob_error(m, prompt_of(o.request_id), {o}) < 1e-4);
}

TEST_CASE("generator: repetition stop ends a sequence whose last n tokens were all near-certain") {
  Model m = tiny(5);
  RepetitionStop rep{3, 0.0};  // p = 0: every token counts as near-certain
  GeneratorLogic g(m, 1, 2, 100000, rep);
  g.submit(job(1, 50));
  std::vector<GenOutput> out;
  while (!g.idle())
    for (auto& o : g.step()) out.push_back(o);
  REQUIRE(out.size() == 1);
  CHECK(out[0].finish == "repetition");
  CHECK(out[0].tokens.size() == 3);
}

TEST_CASE("generator: a group's shared prompt is fed once; every sample keeps its own seed and exact logprobs") {
  Model m = tiny(4);
  GeneratorLogic g(m, 1, 8, 100000, {}, 1);
  for (uint64_t i = 1; i <= 6; ++i) g.submit(shared_job(i, 6));
  g.submit(job(7, 6));  // a different prompt feeds its own
  const auto out = drain(g);
  REQUIRE(out.size() == 7);
  CHECK(g.prompt_tokens_fed() == 10);    // two prompts of 5, once each
  CHECK(g.prompt_tokens_shared() == 25);  // five followers
  std::vector<GenOutput> group, other;
  for (auto& o : out) (o.request_id <= 6 ? group : other).push_back(o);
  CHECK(max_logprob_error(m, prompt_of(1), group) < 1e-4);
  int distinct = 0;  // different seeds sample different continuations (6 tokens of a 263-id vocab)
  for (size_t a = 0; a < group.size(); ++a)
    for (size_t b = a + 1; b < group.size(); ++b) distinct += group[a].tokens != group[b].tokens;
  CHECK(distinct == 15);
  CHECK(max_logprob_error(m, prompt_of(7), other) < 1e-4);
}

TEST_CASE("generator: followers wait for sampling slots; decode rows stay within max_batch + prefill_cap") {
  // max_batch 2, prefill_cap 1, 5 samples of one prompt: the prompt is fed once (steps 1-5), two
  // samples take the slots, the other three start from the shared state as slots free up.
  GeneratorLogic g(tiny(1), 1, 2, 100000, {}, 1);
  for (uint64_t i = 1; i <= 5; ++i) g.submit(shared_job(i, 3));
  std::vector<std::pair<uint64_t, int>> finished;
  for (int step = 1; step <= 100 && !g.idle(); ++step) {
    const uint64_t rows = g.decode_rows();
    for (auto& o : g.step()) finished.emplace_back(o.request_id, step);
    CHECK(g.decode_rows() - rows <= 3);  // max_batch + prefill_cap
  }
  // 1, 2 sample in steps 6-8; 3, 4 in 9-11; 5 in 12-14.
  CHECK(finished == std::vector<std::pair<uint64_t, int>>{{1, 8}, {2, 8}, {3, 11}, {4, 11}, {5, 14}});
  CHECK(g.prompt_tokens_fed() == 5);
}

TEST_CASE("generator: a swap while the leader feeds reaches its followers' first tokens; later arrivals feed afresh") {
  Model a = tiny(1), b = tiny(2);
  GeneratorLogic g(a, 1, 4, 100000, {}, 1);
  g.submit(job(1, 3));
  g.submit(shared_job(2, 3));
  g.step();  // prompt token 0 fed with version 1
  g.set_weights(b.params(), b.num_params(), 2);
  auto out = drain(g);
  REQUIRE(out.size() == 2);
  for (auto& o : out) CHECK(o.versions == std::vector<uint64_t>{1, 2, 2});
  CHECK(g.prompt_tokens_fed() == 5);
  // The shares are gone with their sequences: the same prompt now feeds again, with version 2.
  g.submit(shared_job(3, 2));
  out = drain(g);
  REQUIRE(out.size() == 1);
  CHECK(out[0].versions == std::vector<uint64_t>{2, 2});
  CHECK(g.prompt_tokens_fed() == 10);
  CHECK(max_logprob_error(b, prompt_of(1), out) < 1e-4);
}

TEST_CASE("generator: a follower arriving after a swap does not take a snapshot of older weights") {
  Model a = tiny(1), b = tiny(2);
  GeneratorLogic g(a, 1, 1, 100000, {}, 1);
  g.submit(job(1, 4));
  g.submit(shared_job(2, 4));
  for (int i = 0; i < 6; ++i) g.step();  // fed (v1), snapshot ready; 1 samples, 2 waits for the slot
  g.set_weights(b.params(), b.num_params(), 2);
  g.submit(shared_job(3, 2));  // the ready snapshot is of version 1: 3 feeds its own prompt with version 2
  auto out = drain(g);
  REQUIRE(out.size() == 3);
  for (auto& o : out) {
    if (o.request_id == 2) CHECK(o.versions.front() == 1);  // the snapshot's version
    if (o.request_id == 3) CHECK(o.versions == std::vector<uint64_t>{2, 2});
  }
  CHECK(g.prompt_tokens_fed() == 10);
}

TEST_CASE("generator: a request arriving while a same-prompt leader feeds under older weights feeds its own") {
  Model a = tiny(1), b = tiny(2);
  GeneratorLogic g(a, 1, 4, 100000, {}, 2);
  g.submit(job(1, 2));
  g.step();  // the leader feeds prompt token 0 with version 1
  g.set_weights(b.params(), b.num_params(), 2);
  g.submit(shared_job(2, 2));  // same prompt, but following would give it a version-1 first token
  auto out = drain(g);
  REQUIRE(out.size() == 2);
  for (auto& o : out) CHECK(o.versions == std::vector<uint64_t>{o.request_id == 1 ? 1u : 2u, 2});
  CHECK(g.prompt_tokens_fed() == 10);
  CHECK(g.prompt_tokens_shared() == 0);
}

TEST_CASE("generator: a request may start from a finished snapshot of the current weights") {
  // max_batch 1: job 1 feeds (steps 1-5) and samples; job 2 follows and waits for the slot with
  // the snapshot; job 3, submitted after step 6 with no swap, starts from the same snapshot.
  Model m = tiny(3);
  GeneratorLogic g(m, 1, 1, 100000, {}, 1);
  g.submit(job(1, 3));
  g.submit(shared_job(2, 3));
  for (int i = 0; i < 6; ++i) g.step();
  g.submit(shared_job(3, 3));
  auto out = drain(g);
  REQUIRE(out.size() == 3);
  CHECK(g.prompt_tokens_fed() == 5);
  CHECK(g.prompt_tokens_shared() == 10);
  CHECK(max_logprob_error(m, prompt_of(1), out) < 1e-4);
}

TEST_CASE("generator: abort_all ends leaders, waiting followers and queued requests") {
  GeneratorLogic g(tiny(1), 1, 1, 100000, {}, 1);
  for (uint64_t i = 1; i <= 3; ++i) g.submit(shared_job(i, 5));
  g.submit(job(4, 5));  // another prompt: queued behind the leader (prefill_cap 1)
  g.step();
  g.step();
  auto out = g.abort_all();
  CHECK(g.idle());
  REQUIRE(out.size() == 4);
  std::vector<uint64_t> ids;
  for (auto& o : out) {
    CHECK(o.finish == "aborted");
    CHECK(o.tokens.empty());
    ids.push_back(o.request_id);
  }
  std::sort(ids.begin(), ids.end());
  CHECK(ids == std::vector<uint64_t>{1, 2, 3, 4});
}

TEST_CASE("generator: a request id already queued or live is not started again (a reissue to the same generator)") {
  GeneratorLogic g(tiny(1), 1, 1, 100000, {}, 1);
  CHECK(g.submit(job(1, 3)));
  CHECK(g.submit(job(2, 3)));
  CHECK_FALSE(g.submit(job(2, 3)));  // queued
  CHECK(g.queued() == 2);
  g.step();
  CHECK(g.live() == 1);
  CHECK_FALSE(g.submit(job(1, 3)));  // live
  auto out = drain(g);
  REQUIRE(out.size() == 2);
  CHECK(out[0].request_id == 1);
  CHECK(out[1].request_id == 2);
  // Once answered, the id may run again (the sampler drops a second answer as a duplicate).
  CHECK(g.submit(job(1, 3)));
  CHECK(drain(g).size() == 1);
  // abort_all forgets every id.
  CHECK(g.submit(job(3, 3)));
  g.abort_all();
  CHECK(g.submit(job(3, 3)));
}
