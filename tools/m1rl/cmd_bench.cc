// m1rl bench model: this machine's ceilings (sgemm GFLOP/s, memory GB/s) measured in the same run,
// then training tokens/s and MFU at 1..N threads, decode tokens/s at batch 1 and 32, and decode
// time per token by context length for lightning-only, hybrid and all-softmax variants of CONFIG.
// Ratios, not absolute numbers, are what to read: the machines are shared and noisy.
// m1rl bench generator: the generator actor of `m1rl run` (continuous batching, prefill of new
// prompts, sampling, behaviour logprobs, FlatBuffers requests and rollouts through CAF) against
// the bare Model::decode_step at the same batch and thread count, measured in the same process.
// m1rl bench learner: one learner step (LearnerLogic::train: forward, backward, AdamW per
// minibatch) on an RL batch of G samples per prompt, with the prompt shared by a group's samples
// and without, alternated in the same process.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/learner/learner_logic.h"
#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "base/clock.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "model/tokenizer.h"
#include "model/model.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {
namespace {

using json = nlohmann::json;
using Clock = SteadyClock;

// The median of v (the mean of the middle two for an even count).
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}


// Best of `reps` timings of fn().
template <class F>
double best_time(int reps, F&& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    fn();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

double sgemm_gflops(int n) {
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
  const Kernels& K = cpu_fast_kernels();
  K.gemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  const double t = best_time(5, [&] { K.gemm(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); });
  return 2.0 * n * n * double(n) / t / 1e9;
}

// Copy bandwidth (read + write bytes) of a 256 MiB buffer, single stream.
double mem_gbps() {
  const size_t n = size_t(64) << 20;  // floats
  std::vector<float> a(n, 1.f), b(n, 0.f);
  const double t = best_time(3, [&] { std::memcpy(b.data(), a.data(), n * sizeof(float)); });
  return 2.0 * n * sizeof(float) / t / 1e9;
}

// Model FLOPs per trained token (forward + backward = 3× forward): matmuls over active params and
// the LM head, plus attention at the batch's average causal context.
double train_flops_per_token(const ModelConfig& c, double avg_ctx) {
  const ModelStats st = compute_model_stats(c);
  const double H = c.num_attention_heads, d = c.head_dim;
  double fwd = 2.0 * (st.active_params + double(c.vocab_size) * c.hidden_size);
  fwd += c.num_softmax_layers() * 4.0 * H * d * avg_ctx;
  fwd += c.num_lightning_layers() * 4.0 * H * d * d;
  return 3.0 * fwd;
}

Batch random_batch(const ModelConfig& c, int segs, int len, uint64_t seed) {
  Rng r(seed);
  Batch b;
  for (int s = 0; s < segs; ++s) {
    std::vector<int> t(static_cast<size_t>(len));
    for (auto& x : t) x = int(r.below(uint64_t(c.vocab_size)));
    b.add_segment(t);
  }
  return b;
}

double train_tokens_per_s(const Model& m, const Batch& b) {
  Workspace* ws = new_workspace();
  std::vector<float> g(m.num_params(), 0.f), dl(static_cast<size_t>(b.size()), -1e-3f);
  ForwardOut o;
  auto step = [&] {
    m.forward(b, *ws, o);
    m.backward(b, *ws, dl.data(), 1.0f, g.data());
  };
  step();  // warm-up
  const double t = best_time(3, step);
  delete_workspace(ws);
  return b.size() / t;
}

// Seconds of `steps` decode steps at batch B after a 16-token prefill (untimed).
double decode_seconds(const Model& m, int B, int steps) {
  Rng r(5);
  std::vector<std::vector<int>> prompts(static_cast<size_t>(B));
  for (auto& p : prompts)
    for (int i = 0; i < 16; ++i) p.push_back(int(r.below(uint64_t(m.config().vocab_size))));
  std::vector<DecodeState> st(static_cast<size_t>(B));
  std::vector<DecodeState*> sp;
  for (auto& s : st) sp.push_back(&s);
  const int V = m.config().vocab_size;
  std::vector<float> lsm(size_t(B) * V);
  m.prefill(prompts, sp.data(), lsm.data());
  // Every row feeds its own random token each step, as sampling does: the same token in every row
  // makes the rows alike (one embedding row, similar expert routing) and flatters the step.
  std::vector<int> toks(size_t(B) * (steps + 1));
  for (int& t : toks) t = int(r.below(uint64_t(V)));
  m.decode_step(toks.data(), sp.data(), B, lsm.data());  // warm-up
  auto t0 = Clock::now();
  for (int s = 1; s <= steps; ++s) m.decode_step(toks.data() + size_t(s) * B, sp.data(), B, lsm.data());
  return seconds_since(t0);
}

double decode_tokens_per_s(const Model& m, int B, int steps) { return double(B) * steps / decode_seconds(m, B, steps); }

// decode_tokens_per_s(m, B, 16) repeated (fresh 16-token prompts each time, prefill untimed) until
// `secs` of decoding are timed: contexts of 16-32 tokens, as in `m1rl bench model` at batch 32.
double decode_tokens_per_s_for(const Model& m, int B, double secs) {
  double timed = 0, tokens = 0;
  for (; timed < secs; tokens += double(B) * 16) timed += decode_seconds(m, B, 16);
  return tokens / timed;
}

// ms per decoded token (batch 1) with a context of `ctx` tokens already in the decode state. The
// state is synthetic (random lightning state and KV cache of the right size): the cost of a
// decode step depends on the sizes, not on how the state was produced.
double decode_ms_at_context(const Model& m, int ctx) {
  DecodeState s = m.new_state();
  const ModelConfig& c = m.config();
  const size_t Kd = size_t(c.num_key_value_heads) * c.head_dim;
  Rng r(9);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (auto& x : s.lstate[l]) x = 0.01f * float(r.normal());
    if (c.is_softmax(l)) {
      s.kcache[l].resize(size_t(ctx) * Kd);
      s.vcache[l].resize(size_t(ctx) * Kd);
      for (auto& x : s.kcache[l]) x = 0.1f * float(r.normal());
      for (auto& x : s.vcache[l]) x = 0.1f * float(r.normal());
    }
  }
  s.len = ctx;
  DecodeState* sp = &s;
  std::vector<float> lsm(static_cast<size_t>(c.vocab_size));
  int tok = 1;
  m.decode_step(&tok, &sp, 1, lsm.data());
  const int steps = 32;
  double best = 1e30;
  for (int i = 0; i < steps; ++i) {
    auto t0 = Clock::now();
    m.decode_step(&tok, &sp, 1, lsm.data());
    best = std::min(best, seconds_since(t0));
  }
  return best * 1e3;
}

}  // namespace

int bench_model(const std::string& config, bool as_json, int threads) {
  auto cfg = load_model_config(config);
  if (!cfg.is_ok()) {
    std::fprintf(stderr, "m1rl: error: %s\n", cfg.status().message().c_str());
    return 1;
  }
  const ModelConfig& c = cfg.value();
  Model m(c);
  m.init_random(1);
  json j;
  json sg = json::object(), tps = json::object(), mfu = json::object();
  const int segs = 8, len = 256;
  const Batch b = random_batch(c, segs, len, 3);
  const double fpt = train_flops_per_token(c, (len + 1) / 2.0);
  for (int t = 1; t <= threads; ++t) {
    set_num_threads(t);
    const double g = sgemm_gflops(1024);
    const double tp = train_tokens_per_s(m, b);
    sg[std::to_string(t)] = g;
    tps[std::to_string(t)] = tp;
    mfu[std::to_string(t)] = tp * fpt / (g * 1e9);
    if (!as_json)
      std::fprintf(stderr, "threads %d: sgemm %.1f GFLOP/s, train %.0f tok/s, MFU %.1f%%\n", t, g, tp,
                   100.0 * tp * fpt / (g * 1e9));
  }
  set_num_threads(threads);
  j["sgemm_gflops"] = sg[std::to_string(threads)];
  j["sgemm_gflops_by_threads"] = sg;
  j["mem_gbps"] = mem_gbps();
  j["train_tokens_per_s"] = tps;
  j["mfu"] = mfu;
  j["train_flops_per_token"] = fpt;
  j["threads"] = threads;
  j["decode_tokens_per_s"] = {{"1", decode_tokens_per_s(m, 1, 64)}, {"32", decode_tokens_per_s(m, 32, 16)}};
  // Decode at batch 1 and 32 with 1 and 2 pool threads in 12 alternating rounds of 0.1 s, so
  // that drift in this machine's speed hits both: 2 threads must never be slower than 1. The
  // ratio is the median over rounds of (2 threads / 1 thread) within the round (one slow moment
  // moves one round's ratio, not the result); best of each is reported beside it.
  json dthr = json::object();
  if (threads >= 2) {
    for (int B : {1, 32}) {
      double best[3] = {0, 0, 0};
      std::vector<double> ratios;
      for (int round = 0; round < 12; ++round) {
        double tps_round[3] = {0, 0, 0};
        for (int k = 0; k < 2; ++k) {
          const int t = (round % 2 == 0) ? 1 + k : 2 - k;  // 1,2 then 2,1: neither always goes first
          set_num_threads(t);
          tps_round[t] = decode_tokens_per_s_for(m, B, 0.1);
          best[t] = std::max(best[t], tps_round[t]);
        }
        ratios.push_back(tps_round[2] / tps_round[1]);
      }
      const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
      dthr[std::to_string(B)] = {{"1", best[1]},
                                 {"2", best[2]},
                                 {"ratio_2_over_1", median(ratios)},
                                 {"ratio_min", *lo},
                                 {"ratio_max", *hi}};
    }
    set_num_threads(threads);
  }
  j["decode_tokens_per_s_by_threads"] = dthr;
  // Three variants of CONFIG: every layer lightning, as given, every layer softmax.
  json ms = json::object();
  const std::vector<int> ctxs = {1024, 4096, 16384, 65536};
  const std::pair<const char*, int> variants[] = {{"lightning", 0}, {"hybrid", -1}, {"softmax", 1}};
  for (const auto& [name, type] : variants) {
    ModelConfig vc = c;
    if (type >= 0) vc.attn_type_list.assign(size_t(c.num_hidden_layers), type);
    Model vm(vc);
    vm.init_random(2);
    json row = json::object();
    for (int ctx : ctxs) row[std::to_string(ctx)] = decode_ms_at_context(vm, ctx);
    ms[name] = row;
  }
  j["decode_ms_per_token"] = ms;
  const double lflat = ms["lightning"]["65536"].get<double>() / ms["lightning"]["1024"].get<double>();
  const double hyb = ms["hybrid"]["65536"].get<double>() / ms["softmax"]["65536"].get<double>();
  j["ratios"] = {{"lightning_64k_over_1k", lflat}, {"hybrid_over_softmax_64k", hyb},
                 {"train_2_over_1_threads", threads >= 2 ? tps["2"].get<double>() / tps["1"].get<double>() : 1.0}};
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("machine: sgemm %.1f GFLOP/s (%d threads), copy bandwidth %.1f GB/s\n", j["sgemm_gflops"].get<double>(),
              threads, j["mem_gbps"].get<double>());
  for (auto& [k, v] : tps.items())
    std::printf("train   %s thread(s): %8.0f tokens/s   MFU %.1f%% of measured sgemm\n", k.c_str(), v.get<double>(),
                100 * mfu[k].get<double>());
  std::printf("decode  batch 1: %.0f tokens/s   batch 32: %.0f tokens/s\n", j["decode_tokens_per_s"]["1"].get<double>(),
              j["decode_tokens_per_s"]["32"].get<double>());
  for (auto& [B, v] : dthr.items())
    std::printf("decode  batch %s: best 1 thread %.0f, 2 threads %.0f tokens/s (2/1 median of 12 rounds %.2f, "
                "range %.2f-%.2f; goal >= 1)\n",
                B.c_str(), v["1"].get<double>(), v["2"].get<double>(), v["ratio_2_over_1"].get<double>(),
                v["ratio_min"].get<double>(), v["ratio_max"].get<double>());
  std::printf("decode ms/token  %10s %10s %10s %10s\n", "1K", "4K", "16K", "64K");
  for (const auto& [name, type] : variants) {
    std::printf("  %-14s", name);
    for (int ctx : ctxs) std::printf(" %10.3f", ms[name][std::to_string(ctx)].get<double>());
    std::printf("\n");
  }
  std::printf("ratios: lightning 64K/1K = %.3f (goal <= 1.1), hybrid/softmax at 64K = %.3f (goal <= 0.5), "
              "train 2/1 threads = %.2f (goal >= 1)\n", lflat, hyb, j["ratios"]["train_2_over_1_threads"].get<double>());
  return 0;
}

// The generator actor kept full: a feeder keeps about 2·B requests outstanding in groups of `group`
// samples of one prompt (prompts like the demo's "ab+cd="), counts the tokens of every rollout that
// arrives before the deadline, and issues a new group each time `group` rollouts have come back.
int bench_generator(const std::string& config, int batch, int threads, int group, double seconds, bool as_json) {
  auto cfg = load_model_config(config);
  if (!cfg.is_ok()) {
    std::fprintf(stderr, "m1rl: error: %s\n", cfg.status().message().c_str());
    return 1;
  }
  Model m(cfg.value());
  m.init_random(1);
  set_num_threads(threads);
  const int max_new = 16;

  caf::actor_system_config sc;
  pipe::configure_scheduler(sc, 1);  // as in m1rl run
  caf::actor_system sys{sc};
  ByteTokenizer tok;
  auto rejects = std::make_shared<pipe::RejectCounters>();
  struct Feed {
    caf::actor gen;
    wire::Sender sender{0xbe0001, 1, 0};
    Rng rng{7};
    uint64_t next_id = 1, next_group = 1, tokens = 0, rollouts = 0, outstanding = 0;
    Clock::time_point t0, deadline, last;
    caf::actor reply_to;
  };
  auto f = std::make_shared<Feed>();
  auto feeder = sys.spawn([f, &tok, max_new, group](caf::event_based_actor* self) -> caf::behavior {
    auto issue = [=, &tok] {  // one group: `group` requests for one prompt
      wire::PromptInfo p;
      p.prompt_id = p.group_id = f->next_group++;
      p.task = "add";
      p.dataset = "bench";
      p.prompt = std::to_string(f->rng.below(100)) + "+" + std::to_string(f->rng.below(100)) + "=";
      p.group_size = uint32_t(group);
      p.prompt_tokens = encode_prompt(tok, p.prompt);
      for (int i = 0; i < group; ++i) {
        self->send(f->gen, pipe::gen_atom::value,
                   wire::generation_request(f->sender, p, f->next_id++, uint32_t(i), max_new, 1.0f, 1.0f,
                                            f->rng.next_u64(), 0, pipe::generator_id(0)));
        f->outstanding++;
      }
    };
    return {
        [=](const caf::actor& gen, int64_t n, double secs, const caf::actor& reply_to) {
          f->gen = gen;
          f->reply_to = reply_to;
          f->t0 = f->last = Clock::now();
          f->tokens = f->rollouts = 0;
          f->deadline = f->t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
          for (int64_t i = 0; i < n; i += group) issue();
        },
        [=](pipe::rollout_atom, const msg::Bytes& b) {
          f->outstanding--;
          auto r = msg::decode<msg::Rollout>(b);
          const auto now = Clock::now();
          if (r.is_ok() && now <= f->deadline) {
            f->tokens += r.value()->data()->tokens() ? r.value()->data()->tokens()->size() : 0;
            f->rollouts++;
            f->last = now;
            if (f->rollouts % uint64_t(group) == 0) issue();
          }
          if (now > f->deadline && f->outstanding == 0) self->send(f->reply_to, pipe::done_atom::value);
        },
    };
  });
  auto logic = std::make_shared<GeneratorLogic>(m, 0, batch, tok.eos_id(), RepetitionStop{});
  auto gen = sys.spawn<caf::detached>(pipe::generator_actor,
                                      pipe::GeneratorArgs{logic, feeder, pipe::generator_id(0), 1, rejects});
  // Rounds: decode_step alone, then the generator (drained before the next round), so that drift
  // in this shared machine's speed hits both sides; the ratio reported is the median round's.
  const int rounds = 3;
  std::vector<double> bases, gens, ratios;
  double busy_tps = 0, prompt_fed = 0, prompt_shared = 0, steps = 0, rows = 0, decode_s = 0, busy_s = 0;
  uint64_t rollouts = 0;
  {
    caf::scoped_actor self{sys};
    for (int r = 0; r < rounds; ++r) {
      bases.push_back(decode_tokens_per_s_for(m, batch, seconds / rounds));

      self->send(feeder, gen, int64_t(2 * batch), seconds / rounds, caf::actor(self));
      self->receive([&](pipe::done_atom) {});
      const double window = seconds_between(f->t0, f->last);
      gens.push_back(f->tokens > 0 && window > 0 ? double(f->tokens) / window : 0.0);
      ratios.push_back(gens.back() / bases.back());
      rollouts += f->rollouts;
    }
    self->request(gen, caf::infinite, pipe::stats_atom::value).receive(
        [&](const msg::Bytes& s) {
          auto m = msg::decode<msg::Metrics>(s);
          if (!m.is_ok()) return;
          const json g = wire::metrics_json(*m.value());
          busy_tps = g.value("tokens_per_busy_s", 0.0);
          prompt_fed = g.value("prompt_tokens_fed", 0.0);
          prompt_shared = g.value("prompt_tokens_shared", 0.0);
          steps = g.value("decode_steps", 0.0);
          rows = g.value("decode_rows", 0.0);
          decode_s = g.value("decode_seconds", 0.0);
          busy_s = g.value("busy_seconds", 0.0);
        },
        [&](caf::error&) {});
    self->send_exit(gen, caf::exit_reason::user_shutdown);
    self->send_exit(feeder, caf::exit_reason::user_shutdown);
  }
  const double ratio = median(ratios);
  json j = {{"config", config},
            {"batch", batch},
            {"threads", threads},
            {"max_new", max_new},
            {"group", group},
            {"prompt_tokens_fed", prompt_fed},
            {"prompt_tokens_shared", prompt_shared},
            {"mean_decode_rows", rows / std::max(steps, 1.0)},
            {"decode_step_seconds", decode_s},
            {"generator_step_seconds", busy_s},
            {"seconds", seconds},
            {"rounds", rounds},
            {"rollouts", rollouts},
            {"model_decode_tokens_per_s", bases},
            {"generator_tokens_per_s", gens},
            {"generator_tokens_per_busy_s", busy_tps},
            {"ratios", ratios},
            {"ratio", ratio},
            {"goal", 0.8},
            {"rejected", rejects->generator.load()}};
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    for (int r = 0; r < rounds; ++r)
      std::printf("round %d: decode_step %8.0f tokens/s, generator actor %8.0f tokens/s, ratio %.2f\n", r + 1,
                  bases[size_t(r)], gens[size_t(r)], ratios[size_t(r)]);
    std::printf("batch %d, %d thread(s), groups of %d, %llu rollouts of <= %d tokens in %.0f s of generation\n", batch,
                threads, group, (unsigned long long)rollouts, max_new, seconds);
    std::printf("prompt tokens: %.0f fed through the decoder, %.0f shared within groups\n", prompt_fed, prompt_shared);
    std::printf("decode steps: %.0f, mean rows %.1f; %.2f s in decode_step of %.2f s in the generator's steps\n",
                steps, rows / std::max(steps, 1.0), decode_s, busy_s);
    std::printf("ratio generator / decode_step (median round) = %.2f (goal >= 0.80: %s)\n", ratio,
                ratio >= 0.8 ? "met" : "NOT met");
  }
  return 0;
}

int bench_learner(const std::string& config, int groups, int group, int prompt_len, int response_len,
                  int minibatches, int threads, int rounds, bool as_json) {
  auto cfg = load_model_config(config);
  if (!cfg.is_ok()) {
    std::fprintf(stderr, "m1rl: error: %s\n", cfg.status().message().c_str());
    return 1;
  }
  set_num_threads(threads);
  Model m(cfg.value());
  m.init_random(1);
  const int V = m.config().vocab_size;
  // groups × group rollouts: one random prompt per group, random responses of 1..2·response_len
  // tokens (mean ≈ response_len), behaviour logprobs near a uniform policy's, advantages ±1.
  Rng r(5);
  std::vector<TrainRollout> batch;
  for (int g = 0; g < groups; ++g) {
    std::vector<int> prompt(static_cast<size_t>(prompt_len));
    for (auto& x : prompt) x = int(r.below(uint64_t(V)));
    for (int i = 0; i < group; ++i) {
      TrainRollout t{uint64_t(g + 1), prompt, {}, {}, {}, i % 2 ? 1.0f : -1.0f};
      const int n = 1 + int(r.below(uint64_t(2 * response_len)));
      for (int j = 0; j < n; ++j) {
        t.tokens.push_back(int(r.below(uint64_t(V))));
        t.behavior_logprobs.push_back(-std::log(float(V)));
        t.versions.push_back(0);
      }
      batch.push_back(std::move(t));
    }
  }
  std::unique_ptr<LearnerLogic> L[2];
  for (int share = 0; share < 2; ++share) {
    LearnerConfig lc;
    lc.minibatches = minibatches;
    lc.lr = 1e-5;
    lc.share_prompts = share;
    L[share] = std::make_unique<LearnerLogic>(m, lc);
    L[share]->train(batch);  // warm-up (workspace sizes, moments)
  }
  std::vector<double> t[2];
  int computed[2] = {0, 0}, scored = 0;
  for (int i = 0; i < rounds; ++i)
    for (int share = 0; share < 2; ++share) {  // alternated: the machine's noise hits both
      const LearnerStats st = L[share]->train(batch);
      t[share].push_back(st.seconds);
      computed[share] = st.computed_tokens;
      scored = st.tokens;
    }
  const double unshared = median(t[0]), shared = median(t[1]);
  if (as_json) {
    json j;
    j["rollouts"] = groups * group;
    j["scored_tokens"] = scored;
    j["computed_tokens"] = {{"unshared", computed[0]}, {"shared", computed[1]}};
    j["step_s"] = {{"unshared", unshared}, {"shared", shared}};
    j["speedup"] = unshared / shared;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("learner step, %d groups x %d samples, prompt %d, %d minibatches, %d thread(s), median of %d:\n",
                groups, group, prompt_len, minibatches, threads, rounds);
    std::printf("  unshared prompts: %.4f s (%d token positions)\n", unshared, computed[0]);
    std::printf("  shared prompts:   %.4f s (%d token positions)\n", shared, computed[1]);
    std::printf("  speedup %.2fx for %d scored response tokens\n", unshared / shared, scored);
  }
  return 0;
}

}  // namespace m1::cli
