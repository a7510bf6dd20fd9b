// The sampler actor: issues G generation requests per prompt under the staleness rule, sends
// every rollout to a judge (retrying failed judgements, dead-lettering after the configured
// attempts), forms judged groups (overlong shaping, GRPO advantages, dynamic sampling), and hands
// them to replay, counting a group as accepted only once replay acknowledges the durable write.
//
// Admission (RL.md staleness contract): generation batch b (B groups) may start only when the
// learner version ≥ b − max_staleness, i.e. the sampler keeps
//     accepted + in_flight < (learner_version − start_version + max_staleness + 1) · B
// groups issued. max_staleness = 0 is synchronous RL. Dropped groups free their slot, so
// sampling continues until the batch is full (oversampling).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "actors/sampler/prompt_source.h"
#include "actors/sampler/shaping.h"
#include "base/log.h"
#include "model/tokenizer.h"

namespace m1::pipe {

using json = nlohmann::json;

namespace {

struct Group {
  wire::PromptInfo info;
  std::vector<msg::Bytes> rollouts;        // Rollout messages, by index (empty until received)
  std::vector<float> reward, format;
  std::vector<std::string> reason;
  std::vector<uint64_t> judge;
  std::vector<int> attempts;
  int judged = 0;
  bool dead = false;
};

struct Window {  // health metrics since the last stats query
  uint64_t groups_done = 0, dropped_zero_var = 0, dead_lettered = 0, wasted_tokens = 0, tokens = 0;
  uint64_t rollouts = 0;
  std::map<std::string, uint64_t> finish;
  std::map<std::string, std::pair<double, uint64_t>> reward_by_task;  // sum, count
  std::vector<int64_t> lengths;
  double reward_sum = 0, reward_sq = 0;
};

}  // namespace

caf::behavior sampler_actor(caf::event_based_actor* self, SamplerArgs a) {
  struct State {
    Curriculum curriculum;
    Rng rng{1};
    ByteTokenizer tok;
    wire::Sender sender;
    uint64_t learner_version = 0, start_version = 0;
    uint64_t accepted = 0, awaiting_ack = 0, next_group = 1, next_request = 1;
    std::unordered_map<uint64_t, Group> groups;
    size_t rr_gen = 0, rr_judge = 0;
    Window w;
    uint64_t total_dropped = 0, total_groups = 0, total_wasted = 0;
  };
  auto st = std::make_shared<State>();
  const RunConfig& c = a.cfg;
  st->rng.reseed(c.seed * 1000003ull + a.incarnation);
  st->sender = {0x5a0000ull + 1, a.incarnation, 0};
  st->learner_version = st->start_version = a.start_version;
  for (const std::string& t : c.tasks) {
    auto src = BuiltinPromptSource::create(t, DifficultySchedule{c.min_difficulty, c.max_difficulty,
                                                                  c.max_difficulty, 0});
    if (!src.is_ok()) {
      log_error("sampler: {}", src.status().message());
      continue;
    }
    (void)st->curriculum.add(std::move(src.value()), WeightSchedule::constant(1.0));
  }
  if (!c.prompts_jsonl.empty()) {
    auto src = JsonlPromptSource::load(c.prompts_jsonl);
    if (src.is_ok())
      (void)st->curriculum.add(std::move(src.value()), WeightSchedule::constant(1.0));
    else
      log_error("sampler: {}", src.status().message());
  }
  // ids: incarnation in the high bits, so ids never repeat across restarts
  st->next_group = (a.incarnation << 40) + 1;
  st->next_request = (a.incarnation << 40) + 1;

  auto pump = std::make_shared<std::function<void()>>();
  auto judge_one = std::make_shared<std::function<void(uint64_t, uint32_t)>>();
  auto finalize = std::make_shared<std::function<void(uint64_t)>>();

  *pump = [=] {
    const uint64_t target = (st->learner_version - st->start_version + uint64_t(c.max_staleness) + 1) *
                            uint64_t(c.batch_groups);
    while (st->accepted + st->awaiting_ack + st->groups.size() < target && st->curriculum.size() > 0) {
      auto sp = st->curriculum.next(st->rng, int64_t(st->learner_version));
      if (!sp.is_ok()) {
        log_error("sampler: {}", sp.status().message());
        return;
      }
      Group g;
      g.info.prompt_id = sp->prompt_id;
      g.info.group_id = st->next_group++;
      g.info.task = sp->task;
      g.info.dataset = sp->dataset;
      g.info.prompt = sp->text;
      g.info.reference = sp->reference;
      g.info.group_size = c.group_size;
      g.info.prompt_tokens = {st->tok.bos_id()};
      auto enc = st->tok.encode(sp->text);
      g.info.prompt_tokens.insert(g.info.prompt_tokens.end(), enc.begin(), enc.end());
      const size_t G = size_t(c.group_size);
      g.rollouts.resize(G);
      g.reward.assign(G, 0.f);
      g.format.assign(G, 0.f);
      g.reason.assign(G, "");
      g.judge.assign(G, 0);
      g.attempts.assign(G, 0);
      for (uint32_t i = 0; i < G; ++i) {
        const uint64_t rid = st->next_request++;
        const size_t gi = st->rr_gen++ % a.generators.size();
        msg::Bytes rq = wire::generation_request(st->sender, g.info, rid, i, c.max_new, float(c.temperature),
                                                 float(c.top_p), st->rng.next_u64(),
                                                 st->learner_version > uint64_t(c.max_staleness)
                                                     ? st->learner_version - uint64_t(c.max_staleness)
                                                     : 0,
                                                 generator_id(gi));
        self->send(a.generators[gi], gen_atom::value, rq);
      }
      st->groups.emplace(g.info.group_id, std::move(g));
    }
  };

  *judge_one = [=](uint64_t group_id, uint32_t index) {
    auto it = st->groups.find(group_id);
    if (it == st->groups.end()) return;
    Group& g = it->second;
    const msg::RolloutData* d = msg::decode<msg::Rollout>(g.rollouts[index]).value()->data();
    msg::Bytes jr = wire::judge_request(st->sender, *d, g.info.reference, uint32_t(g.attempts[index]));
    caf::actor judge = a.judges[st->rr_judge++ % a.judges.size()];
    auto on_fail = [=](const std::string& why) {
      auto it2 = st->groups.find(group_id);
      if (it2 == st->groups.end()) return;
      Group& g2 = it2->second;
      if (++g2.attempts[index] <= c.judge_retries) {
        (*judge_one)(group_id, index);
        return;
      }
      // dead letter: the rollout cannot be judged; its group is dropped with the reason
      log_warn("sampler: rollout {} of group {} dead-lettered: {}", index, group_id, why);
      st->w.dead_lettered++;
      g2.dead = true;
      g2.reason[index] = "dead-lettered: " + why;
      g2.judged++;
      if (g2.judged == int(g2.rollouts.size())) (*finalize)(group_id);
    };
    self->request(judge, std::chrono::seconds(10), judge_atom::value, jr)
        .then(
            [=](const msg::Bytes& vb) {
              auto v = msg::decode<msg::Verdict>(vb);
              if (!v.is_ok()) {
                if (!vb.empty()) a.rejects->sampler++;
                on_fail(v.status().message());
                return;
              }
              if (!v.value()->ok()) {
                on_fail(v.value()->reason() ? v.value()->reason()->str() : "judge failed");
                return;
              }
              auto it2 = st->groups.find(group_id);
              if (it2 == st->groups.end()) return;
              Group& g2 = it2->second;
              g2.reward[index] = v.value()->reward();
              g2.format[index] = v.value()->format_reward();
              g2.reason[index] = v.value()->reason() ? v.value()->reason()->str() : "";
              g2.judge[index] = v.value()->judge_id();
              g2.judged++;
              if (g2.judged == int(g2.rollouts.size())) (*finalize)(group_id);
            },
            [=](caf::error& e) { on_fail("judge error: " + to_string(e)); });
  };

  *finalize = [=](uint64_t group_id) {
    auto it = st->groups.find(group_id);
    Group g = std::move(it->second);
    st->groups.erase(it);
    uint64_t tokens = 0;
    std::vector<double> R;
    for (size_t i = 0; i < g.rollouts.size(); ++i) {
      const msg::RolloutData* d = msg::decode<msg::Rollout>(g.rollouts[i]).value()->data();
      const int64_t n = d->tokens() ? int64_t(d->tokens()->size()) : 0;
      tokens += uint64_t(n);
      double r = g.reward[i];
      if (c.overlong_cache > 0) r += overlong_penalty(n, c.max_new, c.overlong_cache);
      R.push_back(r);
      st->w.finish[wire::finish_name(d->finish())]++;
      st->w.lengths.push_back(n);
      st->w.rollouts++;
      st->w.reward_sum += g.reward[i];
      st->w.reward_sq += double(g.reward[i]) * g.reward[i];
      auto& rt = st->w.reward_by_task[g.info.task];
      rt.first += g.reward[i];
      rt.second++;
    }
    st->w.tokens += tokens;
    st->w.groups_done++;
    st->total_groups++;
    if (g.dead || zero_variance(R)) {  // dynamic sampling: no signal, drop and count
      if (!g.dead) st->w.dropped_zero_var++;
      st->w.wasted_tokens += tokens;
      st->total_dropped++;
      st->total_wasted += tokens;
      (*pump)();
      return;
    }
    AdvantageOptions ao;
    ao.divide_by_std = c.std_normalize;
    GroupStats gs;
    std::vector<double> adv = grpo_advantages(R, ao, &gs);
    std::vector<wire::JudgedRollout> jr;
    for (size_t i = 0; i < g.rollouts.size(); ++i)
      jr.push_back({msg::decode<msg::Rollout>(g.rollouts[i]).value()->data(), float(R[i]), g.format[i],
                    float(adv[i]), g.reason[i], g.judge[i]});
    msg::Bytes gb = wire::judged_group(st->sender, g.info, jr, float(gs.mean), float(gs.std),
                                       uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    std::chrono::system_clock::now().time_since_epoch())
                                                    .count()));
    st->awaiting_ack++;
    self->request(a.replay, std::chrono::seconds(60), group_atom::value, gb)
        .then(
            [=](uint64_t acked) {
              st->awaiting_ack--;
              if (acked != 0) {
                st->accepted++;
                if (a.events) (void)a.events->append("ack " + std::to_string(acked));
              }
              (*pump)();
            },
            [=](caf::error& e) {
              st->awaiting_ack--;
              log_error("sampler: replay did not acknowledge group {}: {}", group_id, to_string(e));
              (*pump)();
            });
  };

  // pump, judge_one and finalize refer to each other (and hold actor handles): break the cycle
  // when the sampler terminates so every actor can be destroyed.
  self->attach_functor([=] {
    *pump = nullptr;
    *judge_one = nullptr;
    *finalize = nullptr;
  });
  return {
      [=](start_atom) { (*pump)(); },
      [=](rollout_atom, const msg::Bytes& b) {
        auto r = msg::decode<msg::Rollout>(b);
        if (!r.is_ok()) {
          a.rejects->sampler++;
          log_warn("sampler: rejected a rollout: {}", r.status().message());
          return;
        }
        const msg::RolloutData* d = r.value()->data();
        auto it = st->groups.find(d->group_id());
        if (it == st->groups.end() || d->index() >= it->second.rollouts.size() ||
            !it->second.rollouts[d->index()].empty()) {
          a.rejects->sampler++;  // unknown group, bad index or a duplicate
          return;
        }
        it->second.rollouts[d->index()] = b;
        (*judge_one)(d->group_id(), d->index());
      },
      [=](step_atom, const msg::Bytes& b) {
        auto r = msg::decode<msg::StepReport>(b);
        if (!r.is_ok()) {
          a.rejects->sampler++;
          return;
        }
        st->learner_version = std::max(st->learner_version, r.value()->version());
        (*pump)();
      },
      [=](stats_atom) -> std::string {
        Window& w = st->w;
        json j;
        const double n = double(std::max<uint64_t>(w.rollouts, 1));
        j["reward_mean"] = w.rollouts ? w.reward_sum / n : 0.0;
        j["reward_std"] = w.rollouts ? std::sqrt(std::max(0.0, w.reward_sq / n - std::pow(w.reward_sum / n, 2))) : 0.0;
        double lsum = 0;
        for (auto l : w.lengths) lsum += double(l);
        j["length_mean"] = w.lengths.empty() ? 0.0 : lsum / double(w.lengths.size());
        j["length_p99"] = w.lengths.empty() ? 0 : nearest_rank_percentile(w.lengths, 0.99);
        j["finish_reasons"] = w.finish;
        json bt = json::object();
        for (auto& [t, v] : w.reward_by_task) bt[t] = v.first / double(std::max<uint64_t>(v.second, 1));
        j["reward_by_task"] = bt;
        j["groups"] = w.groups_done;
        j["dropped_zero_variance"] = w.dropped_zero_var;
        j["dead_lettered"] = w.dead_lettered;
        j["dropped_fraction"] = w.groups_done ? double(w.dropped_zero_var + w.dead_lettered) / w.groups_done : 0.0;
        j["wasted_tokens"] = w.wasted_tokens;
        j["wasted_fraction"] = w.tokens ? double(w.wasted_tokens) / double(w.tokens) : 0.0;
        j["accepted_total"] = st->accepted;
        j["in_flight"] = st->groups.size() + st->awaiting_ack;
        j["dropped_total"] = st->total_dropped;
        st->w = Window();
        return j.dump();
      },
  };
}

}  // namespace m1::pipe
