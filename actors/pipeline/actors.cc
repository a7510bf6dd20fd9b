// The pipeline's thin actors: decode, call the logic, send. Policy lives in the logic classes.
#include "actors/pipeline/actors.h"

#include <chrono>
#include <cmath>
#include <map>
#include <unordered_map>

#include "actors/judge/judge_logic.h"
#include "actors/pipeline/wire.h"
#include "actors/sampler/prompt_source.h"
#include "actors/sampler/shaping.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/planted.h"
#include "model/tokenizer.h"

namespace m1::pipe {

// ------------------------------------------------------------------------------------ generator

caf::behavior generator_actor(caf::event_based_actor* self, GeneratorArgs a) {
  struct State {
    wire::Sender sender;
    bool ticking = false;
    std::unordered_map<uint64_t, msg::Bytes> requests;  // request id → the verified request
    uint64_t tokens_reported = 0;
    std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
    double busy_s = 0, busy_reported = 0;  // seconds in step(): all, and at the last report
    uint64_t steps_reported = 0, rows_reported = 0;
    msg::Bytes last_report;  // Metrics, answered again to a request within kMinWindow of it
    // Requests whose min_version is newer than the weights held: started when such weights arrive
    // (GenerationRequest.min_version: no token of the request comes from older weights).
    std::vector<std::pair<uint64_t, GenJob>> parked;  // (min_version, job)
  };
  // A window's rates need a window: requests can arrive back to back (the learner asks once per
  // step without waiting, and several may queue behind a weights swap).
  constexpr double kMinWindow = 0.05;
  auto st = std::make_shared<State>();
  st->sender = {a.id, a.incarnation, 0};
  const int V = a.logic->model().config().vocab_size;
  auto start_ticking = [=] {
    if (st->ticking) return;
    st->ticking = true;
    self->send(self, tick_atom::value);
  };
  return {
      [=](gen_atom, const msg::Bytes& b) {
        auto r = msg::decode<msg::GenerationRequest>(b);
        if (!r.is_ok()) {
          a.rejects->generator++;
          log_warn("generator {}: rejected a message: {}", a.id, r.status().message());
          return;
        }
        const msg::GenerationRequest* q = r.value();
        GenJob j;
        j.request_id = q->request_id();
        j.prompt.assign(q->prompt_tokens()->begin(), q->prompt_tokens()->end());
        for (int t : j.prompt)
          if (t >= V) {
            a.rejects->generator++;
            log_warn("generator {}: GenerationRequest.prompt_tokens: id {} >= vocab {}", a.id, t, V);
            return;
          }
        j.max_new = int(q->max_new());
        j.sampling.temperature = q->temperature();
        j.sampling.top_p = q->top_p();
        j.sampling.top_k = int(q->top_k());
        j.seed = q->seed();
        st->requests[j.request_id] = b;
        if (q->min_version() > a.logic->version()) {
          st->parked.emplace_back(q->min_version(), std::move(j));
          return;
        }
        a.logic->submit(std::move(j));
        start_ticking();
      },
      [=](tick_atom) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<GenOutput> outs = a.logic->step();
        st->busy_s += seconds_since(t0);
        for (GenOutput& o : outs) {
          auto it = st->requests.find(o.request_id);
          if (it == st->requests.end()) continue;
          const msg::GenerationRequest* q = msg::decode<msg::GenerationRequest>(it->second).value();
          self->send(a.sampler, rollout_atom::value, wire::rollout(st->sender, *q, o, a.id));
          st->requests.erase(it);
        }
        if (!a.logic->idle())
          self->send(self, tick_atom::value);  // queued behind other mail: weights swap between steps
        else
          st->ticking = false;
      },
      [=](weights_atom, const std::vector<msg::Bytes>& parts) {
        std::vector<float> w;
        uint64_t version = 0;
        Status s = wire::assemble_weights(parts, a.logic->model().num_params(), &w, &version);
        if (!s.is_ok()) {
          a.rejects->generator++;
          log_warn("generator {}: rejected weights: {}", a.id, s.message());
          return;
        }
        if (version > a.logic->version()) a.logic->set_weights(w.data(), w.size(), version);
        bool started = false;
        for (auto it = st->parked.begin(); it != st->parked.end();) {
          if (it->first <= a.logic->version()) {
            a.logic->submit(std::move(it->second));
            it = st->parked.erase(it);
            started = true;
          } else {
            ++it;
          }
        }
        if (started) start_ticking();
      },
      // Metrics (source "generator"): tokens, tokens_per_s, tokens_per_busy_s and decode_rows_mean
      // over the window since the previous request; the rest cumulative or current.
      [=](stats_atom) -> msg::Bytes {
        const double secs = seconds_since(st->since);
        if (secs < kMinWindow && !st->last_report.empty()) return st->last_report;
        const double busy = st->busy_s - st->busy_reported;
        const uint64_t toks = a.logic->tokens_generated() - st->tokens_reported;
        const uint64_t steps = a.logic->decode_steps() - st->steps_reported;
        const uint64_t rows = a.logic->decode_rows() - st->rows_reported;
        auto count = [](const char* name, uint64_t v) { return wire::MetricValue{name, double(v), true}; };
        std::vector<wire::MetricValue> v = {count("tokens", toks),
                                            {"tokens_per_s", toks / std::max(secs, 1e-9)},
                                            {"tokens_per_busy_s", toks / std::max(busy, 1e-9)},
                                            count("prompt_tokens_fed", a.logic->prompt_tokens_fed()),
                                            count("decode_steps", a.logic->decode_steps()),
                                            count("decode_rows", a.logic->decode_rows()),
                                            {"decode_seconds", a.logic->decode_seconds()},
                                            {"decode_rows_mean", steps ? double(rows) / double(steps) : 0.0},
                                            {"busy_seconds", st->busy_s},
                                            count("prompt_tokens_shared", a.logic->prompt_tokens_shared()),
                                            count("live", a.logic->live()),
                                            count("queued", a.logic->queued()),
                                            count("parked", st->parked.size()),
                                            count("version", a.logic->version())};
        st->tokens_reported = a.logic->tokens_generated();
        st->steps_reported = a.logic->decode_steps();
        st->rows_reported = a.logic->decode_rows();
        st->since = std::chrono::steady_clock::now();
        st->busy_reported = st->busy_s;
        st->last_report = wire::metrics(st->sender, "generator", 0, wall_unix_ms(), v);
        return st->last_report;
      },
  };
}

// ---------------------------------------------------------------------------------------- judge

caf::behavior judge_actor(caf::event_based_actor* self, JudgeArgs a) {
  RuleJudgeOptions o;
  auto created = RuleJudge::create(o);
  if (!created.is_ok()) {  // a judge that cannot verify stops; the sampler's requests to it fail and are retried
    log_error("judge {}: {}", a.id, created.status().message());
    self->quit(caf::make_error(caf::sec::invalid_argument, created.status().message()));
    return {};
  }
  auto judge = std::make_shared<RuleJudge>(std::move(created).value());
  auto tok = std::make_shared<ByteTokenizer>();
  auto sender = std::make_shared<wire::Sender>(wire::Sender{a.id, a.incarnation, 0});
  return {
      [=](judge_atom, const msg::Bytes& b) -> msg::Bytes {
        auto r = msg::decode<msg::JudgeRequest>(b);
        if (!r.is_ok()) {
          a.rejects->judge++;
          log_warn("judge {}: rejected a message: {}", a.id, r.status().message());
          return msg::Bytes();  // the sampler treats an empty reply as a failed attempt
        }
        const msg::RolloutData* d = r.value()->rollout();
        std::vector<int> ids;
        if (d->tokens()) ids.assign(d->tokens()->begin(), d->tokens()->end());
        const std::string text = tok->decode(ids);
        const std::string ref = r.value()->reference() ? r.value()->reference()->str() : "";
        try {
          auto v = judge->score(d->provenance()->task()->str(), "", text, ref,
                                d->finish() == msg::FinishReason::Repetition);
          if (!v.is_ok()) return wire::verdict(*sender, d->rollout_id(), a.id, false, 0, 0, v.status().message());
          return wire::verdict(*sender, d->rollout_id(), a.id, true, float(v->reward), float(v->format_reward),
                               v->reason);
        } catch (const std::exception& e) {
          return wire::verdict(*sender, d->rollout_id(), a.id, false, 0, 0, std::string("judge threw: ") + e.what());
        }
      },
  };
}

// --------------------------------------------------------------------------------------- replay

caf::behavior replay_actor(caf::event_based_actor* self, ReplayArgs a) {
  // Group commit: groups that arrive while a flush is pending share one synced write.
  struct State {
    std::vector<msg::Bytes> pending;
    std::vector<caf::response_promise> promises;
    bool flush_scheduled = false;
    wire::Sender sender;
    uint64_t batches = 0;  // TrainingBatch.batch_id of the last batch
    uint64_t epoch = 0;    // the newest learner epoch seen (its incarnation)
    caf::actor_clock::time_point last_contact;  // of that learner: a take or a commit
  };
  auto st = std::make_shared<State>();
  st->sender = {kReplayId, a.incarnation, 0};
  using flush_atom = caf::atom_constant<caf::atom("flush")>;
  using lease_check_atom = caf::atom_constant<caf::atom("leasechk")>;
  // Fencing: a learner's requests carry its epoch. A newer epoch supersedes the learner before it
  // (crashed, or paused and still running): that learner's leases go back to the queue, and its
  // later takes and commits are refused, so it cannot consume groups (or publish a version) the
  // new learner does not know of. False for a superseded epoch.
  auto admit = [=](uint64_t epoch, const char* what) {
    if (epoch < st->epoch && !planted_bugs().fencing_off) {
      log_warn("replay: refused a {} from learner epoch {}: superseded by epoch {}", what, epoch, st->epoch);
      return false;
    }
    if (epoch > st->epoch) {
      if (st->epoch != 0 && a.store->counters().leased > 0)
        log_info("replay: learner epoch {} supersedes epoch {}: its {} leased groups are released", epoch, st->epoch,
                 a.store->counters().leased);
      a.store->release_all();
      st->epoch = epoch;
    }
    st->last_contact = self->clock().now();
    return true;
  };
  // Lease expiry: leases of a learner that has neither taken nor committed for kLeaseExpiry (it
  // died and no successor came) go back to the queue. A live learner commits within its commit
  // timeout (3 × 60 s) or gives up and releases them itself.
  constexpr auto kLeaseExpiry = std::chrono::minutes(5);
  constexpr auto kLeaseCheck = std::chrono::minutes(1);
  self->delayed_send(self, kLeaseCheck, lease_check_atom::value);
  return {
      [=](lease_check_atom) {
        if (a.store->counters().leased > 0 && self->clock().now() - st->last_contact > kLeaseExpiry) {
          log_warn("replay: learner epoch {} has not been heard from for {} s: its {} leased groups are released",
                   st->epoch, std::chrono::duration_cast<std::chrono::seconds>(kLeaseExpiry).count(),
                   a.store->counters().leased);
          a.store->release_all();
        }
        self->delayed_send(self, kLeaseCheck, lease_check_atom::value);
      },
      [=](group_atom, const msg::Bytes& b) -> caf::result<msg::Bytes> {
        auto r = msg::decode<msg::JudgedGroup>(b);
        if (!r.is_ok()) {
          a.rejects->replay++;
          log_warn("replay: rejected a group: {}", r.status().message());
          return wire::replay_ack(st->sender, 0, false, "rejected: " + r.status().message());
        }
        st->pending.push_back(b);
        st->promises.push_back(self->make_response_promise());
        if (!st->flush_scheduled) {
          st->flush_scheduled = true;
          self->send(self, flush_atom::value);
        }
        return st->promises.back();
      },
      [=](flush_atom) {
        st->flush_scheduled = false;
        auto groups = std::move(st->pending);
        auto promises = std::move(st->promises);
        st->pending.clear();
        st->promises.clear();
        auto res = a.store->append(groups);
        if (!res.is_ok()) log_error("replay: append failed: {}", res.status().message());
        for (size_t i = 0; i < promises.size(); ++i) {
          const uint64_t id = msg::decode<msg::JudgedGroup>(groups[i]).value()->group_id();
          promises[i].deliver(res.is_ok() ? wire::replay_ack(st->sender, id, true, "")
                                          : wire::replay_ack(st->sender, id, false, res.status().message()));
        }
      },
      // Replies a TrainingBatch of up to n groups (none when the store failed: logged, and the
      // learner asks again).
      [=](take_atom, uint64_t n, uint64_t learner_version, uint64_t epoch) -> caf::result<msg::Bytes> {
        if (!admit(epoch, "take"))
          return caf::make_error(caf::sec::runtime_error,
                                 fmt::format("learner epoch {} is superseded by epoch {}", epoch, st->epoch));
        std::vector<msg::Bytes> groups;
        auto r = a.store->take_batch(size_t(n), learner_version);
        if (!r.is_ok())
          log_error("replay: take_batch failed: {}", r.status().message());
        else
          for (auto& g : r.value()) groups.push_back(g.bytes);
        return wire::training_batch(st->sender, ++st->batches, learner_version, groups);
      },
      // The consumption of STEP and the weights VERSION the learner publishes once it is durable
      // (one synced batch; idempotent, so a learner may retry a commit whose reply it lost);
      // refused from a superseded learner epoch.
      [=](commit_atom, const std::vector<uint64_t>& ids, uint64_t step, uint64_t version,
          uint64_t epoch) -> msg::Bytes {
        if (step == 0) {
          a.rejects->replay++;
          return wire::commit_result(st->sender, 0, false, "rejected: commit of step 0");
        }
        if (!admit(epoch, "commit"))
          return wire::commit_result(st->sender, step, false,
                                     fmt::format("refused: learner epoch {} is superseded by epoch {}", epoch, st->epoch));
        Status s = a.store->commit_consumed(ids, step, version);
        if (!s.is_ok()) log_error("replay: commit_consumed failed: {}", s.message());
        return wire::commit_result(st->sender, step, s.is_ok(), s.message());
      },
      // The learner gave up on a take (its reply timed out) and dropped its partial batch: every
      // lease goes back to the queue, including those of a take answered too late. Leases are
      // only the learner's, and it sends this only while no commit is in flight. Ignored from a
      // superseded epoch (the leases are the newer learner's).
      [=](release_atom, uint64_t epoch) {
        if (epoch >= st->epoch) a.store->release_all();
      },
      // Metrics (source "replay"): groups by status (pending, consumed, dropped, quarantined),
      // leased (in memory), and reasons.<class>: dropped and quarantined groups by reason class.
      [=](stats_atom) -> msg::Bytes {
        ReplayCounters c = a.store->counters();
        std::vector<wire::MetricValue> v = {{"pending", double(c.by_status[0]), true},
                                            {"consumed", double(c.by_status[1]), true},
                                            {"dropped", double(c.by_status[2]), true},
                                            {"quarantined", double(c.by_status[3]), true},
                                            {"leased", double(c.leased), true}};
        for (const auto& [k, n] : c.reasons) v.push_back({"reasons." + k, double(n), true});
        return wire::metrics(st->sender, "replay", 0, wall_unix_ms(), v);
      },
  };
}

}  // namespace m1::pipe
