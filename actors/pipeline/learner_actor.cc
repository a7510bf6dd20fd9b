// The learner actor: takes a batch from replay (within max_staleness), trains K minibatch steps
// (LearnerLogic), commits the batch's consumption durably, writes a checkpoint every
// checkpoint_every steps (after the commit: replay_store.h's protocol), publishes the new weights
// version to every generator, reports the step to the sampler, and appends one metrics record per
// step. Held-out accuracy is measured by the evaluator actor on its own thread: the learner sends
// it the weights of every eval_every-th version and goes on training; the record of that step is
// written when the accuracy (and the sampler's and a generator's stats) are in, records in step
// order.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "actors/learner/learner_loop.h"
#include "actors/metrics/metrics_log.h"
#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "base/clock.h"
#include "base/file.h"
#include "base/log.h"
#include "base/planted.h"
#include "model/checkpoint.h"
#include "model/sft.h"
#include "model/tokenizer.h"

namespace m1::pipe {

using json = nlohmann::json;

namespace {

// Every request the learner makes has a finite timeout, so a peer that hangs or is gone (in this
// process or another) cannot stall the run silently.
//
// take: replay answers from RocksDB, reading at most batch_groups records: milliseconds. 30 s
// means its thread is stuck (a stalled disk) or gone. Taking is harmless to repeat, so a timed-out
// take is retried after kTakeRetryDelay, for as long as it takes; first the learner drops its
// partial batch and has replay release every lease (a late take may still have leased groups
// whose reply the learner will never see).
constexpr auto kTakeTimeout = std::chrono::seconds(30);
constexpr auto kTakeRetryDelay = std::chrono::seconds(1);
// commit: one synced RocksDB write, queued behind the replay's group appends; an fsync on a loaded
// disk can take seconds, so 60 s only expires when replay is stuck or gone.
// ReplayStore::commit_consumed is idempotent per (group, step) (and the published-version mark
// is a max), so a commit whose reply timed out is sent again; after kCommitAttempts timeouts the
// run fails like a refused commit (nothing checkpointed or published; a resume redelivers).
constexpr auto kCommitTimeout = std::chrono::seconds(60);
constexpr int kCommitAttempts = 3;
// A learner that got no full batch for this long sends its weights and version again (announce).
constexpr auto kRepublishAfter = std::chrono::seconds(30);
// stats: the sampler and a generator answer from counters they hold, between decode rounds: well
// under a second. 10 s bounds how long a metrics record can wait for them; on a timeout the record
// is written without those fields (logged once per run).
constexpr auto kStatsTimeout = std::chrono::seconds(10);
// eval: the evaluator decodes eval_examples prompts of up to max_new tokens each on its own
// thread, and a request may queue behind the previous evaluation. kEvalTokenAllowance is a
// pessimistic decode speed (20 tokens/s for one prompt on a busy CPU), with a floor of
// kEvalMinTimeout for start-up and prompt processing; on a timeout the record says eval_failed.
constexpr auto kEvalMinTimeout = std::chrono::minutes(5);
constexpr auto kEvalTokenAllowance = std::chrono::milliseconds(50);

std::chrono::milliseconds eval_timeout(const RunConfig& c) {
  const auto tokens = int64_t(std::max(c.eval_examples, 0)) * (int64_t(std::max(c.max_new, 0)) + 1);
  return std::max<std::chrono::milliseconds>(kEvalMinTimeout, tokens * kEvalTokenAllowance);
}

// Asks REPLAY to commit the consumption of STEP (IDS) together with VERSION, the weights version
// published once it is durable. A timed-out request is sent again (the commit is idempotent), up
// to kCommitAttempts in all. K gets the reply, or the error that ended the attempts.
void request_commit(caf::event_based_actor* self, const caf::actor& replay, const std::vector<uint64_t>& ids,
                    uint64_t step, uint64_t version, uint64_t epoch, int attempt,
                    const std::function<void(const msg::Bytes*, const Status&)>& k) {
  self->request(replay, kCommitTimeout, commit_atom::value, ids, step, version, epoch)
      .await([=](const msg::Bytes& reply) { k(&reply, Status::ok()); },
             [=](caf::error& e) {
               if (e == caf::sec::request_timeout && attempt < kCommitAttempts) {
                 log_warn("learner: the commit of step {} timed out after {} s (attempt {} of {}): sending it again",
                          step, kCommitTimeout.count(), attempt, kCommitAttempts);
                 return request_commit(self, replay, ids, step, version, epoch, attempt + 1, k);
               }
               k(nullptr, Status::errorf("{} (attempt {} of {}, {} s each)", self->system().render(e), attempt,
                                         kCommitAttempts, kCommitTimeout.count()));
             });
}

// The record fields of an evaluator's reply to the request for VERSION: {eval_accuracy, eval_s},
// or {eval_failed: true} when it did not hold that version, or its reply is malformed (counted in
// REJECTS) or answers another version.
json eval_fields(const msg::Bytes& reply, uint64_t version, RejectCounters& rejects) {
  auto r = msg::decode<msg::EvalResult>(reply);
  if (!r.is_ok() || r.value()->version() != version) {
    rejects.learner++;
    log_warn("learner: rejected the evaluation of version {}: {}", version,
             r.is_ok() ? fmt::format("it is of version {}", r.value()->version()) : r.status().message());
    return json{{"eval_failed", true}};
  }
  if (!r.value()->held()) return json{{"eval_failed", true}};
  return json{{"eval_accuracy", r.value()->accuracy()}, {"eval_s", r.value()->seconds()}};
}

// A stats reply (Metrics) as record fields; empty when it is malformed (counted in REJECTS).
json stats_fields(const msg::Bytes& reply, const char* from, RejectCounters& rejects) {
  auto r = msg::decode<msg::Metrics>(reply);
  if (!r.is_ok()) {
    rejects.learner++;
    log_warn("learner: rejected the stats of the {}: {}", from, r.status().message());
    return json::object();
  }
  return wire::metrics_json(*r.value());
}

// The sampler's stats as record fields, under the sampler's names; its per-reason and per-task
// maps are present (possibly empty) whenever its stats are.
json sampler_fields(const msg::Bytes& reply, RejectCounters& rejects) {
  json f = stats_fields(reply, "sampler", rejects);
  if (f.empty()) return f;
  for (const char* k : {metric_keys::kFinishReasons, metric_keys::kRewardByTask})
    if (!f.contains(k)) f[k] = json::object();
  return f;
}

// The generator's stats that go into the record, renamed gen_<name>.
void add_generator_fields(const msg::Bytes& reply, RejectCounters& rejects, json* fields) {
  json g = stats_fields(reply, "generator", rejects);
  for (const char* k : {"tokens_per_s", "tokens_per_busy_s", "decode_rows_mean", "prompt_tokens_shared",
                        "prompt_tokens_fed"})
    if (g.contains(k)) (*fields)[std::string("gen_") + k] = g[k];
}

// The outcome of replay's reply to the commit of STEP: an error when it refused, or when the reply
// is malformed (counted in REJECTS) or answers another step.
Status commit_status(const msg::Bytes& reply, uint64_t step, RejectCounters& rejects) {
  auto r = msg::decode<msg::CommitResult>(reply);
  if (!r.is_ok()) {
    rejects.learner++;
    return Status::errorf("malformed reply from replay: {}", r.status().message());
  }
  if (r.value()->step() != step) {
    rejects.learner++;
    return Status::errorf("replay answered the commit of step {} with step {}", step, r.value()->step());
  }
  if (!r.value()->ok())
    return Status::errorf("replay refused to commit the consumption of step {}: {}", step, r.value()->reason()->str());
  return Status::ok();
}

}  // namespace

caf::behavior learner_actor(caf::event_based_actor* self, LearnerArgs a) {
  struct State {
    std::vector<msg::Bytes> batch;
    wire::Sender sender;
    MetricsLog metrics;
    bool halting = false, finishing = false;
    // Metrics records by step, each waiting for `parts` replies (stats, evaluation); written in
    // step order as soon as the oldest is complete.
    struct Pending {
      json rec;
      int parts = 0;
    };
    std::map<uint64_t, Pending> records;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last_step = std::chrono::steady_clock::now();
    // Where a step's wall time goes: waiting for replay to hold a full batch, training, the
    // durable commit (+ checkpoint); the rest of step_time_s is publishing and bookkeeping.
    std::chrono::steady_clock::time_point wait_start;
    bool waiting = false;
    uint64_t checkpoint_step = 0;
    uint64_t last_eval_step = 0;
    bool eval_in_flight = false;  // at most one: a slow evaluator skips eval steps, never queues them
    bool failed = false;          // an effect failed: the learner does nothing more
    bool announced = false;       // a resumed learner's weights were published (first train)
    caf::actor_clock::time_point last_announce;  // of the last publish (CAF's clock)
    bool stats_failure_logged = false;  // a stats request failed (logged once per run)
    LearnerLoop loop;
    // The generators weights are published to, (member id, handle) in join order: LearnerArgs's
    // (ids generator_id(i)), then those the sampler reports (add_generator_atom / remove_generator_atom).
    std::vector<std::pair<uint64_t, caf::actor>> generators;
    explicit State(LearnerLoop l) : loop(l) {}
  };
  auto st = std::make_shared<State>(LearnerLoop(
      {uint64_t(a.cfg.steps), uint64_t(a.cfg.checkpoint_every), uint64_t(a.cfg.eval_every)}));
  st->sender = {0x1ea000ull + 1, a.incarnation, 0};
  for (size_t i = 0; i < a.generators.size(); ++i) st->generators.emplace_back(generator_id(i), a.generators[i]);
  const RunConfig& c = a.cfg;
  Status ms = st->metrics.open(path_join(c.run_dir, "metrics.jsonl"));
  if (!ms.is_ok()) log_error("learner: {}", ms.message());
  st->checkpoint_step = a.logic->step();
  const size_t B = size_t(c.batch_groups);

  auto checkpoint = [=]() -> Status {
    const std::string root = path_join(c.run_dir, "checkpoints");
    M1_RETURN_IF_ERROR(commit_checkpoint(root, int64_t(a.logic->step()),
                                         [&](const std::string& dir) { return a.logic->save(dir); }));
    st->checkpoint_step = a.logic->step();
    return prune_checkpoints(root, 2);
  };
  // The current version's weights as WeightsAnnouncement + WeightsChunk messages.
  auto weights_parts = [=] {
    return wire::weights(st->sender, a.logic->model().params(), a.logic->model().num_params(), a.logic->version(),
                         size_t(1) << 20);
  };
  auto publish = [=](bool again = false) {
    st->last_announce = self->clock().now();
    if (a.events && !again)
      (void)a.events->append(fmt::format("publish {} step {} incarnation {}", a.logic->version(), a.logic->step(),
                                         a.incarnation));
    auto parts = weights_parts();
    for (auto& g : st->generators) self->send(g.second, weights_atom::value, parts);
    return parts;
  };
  // The current weights to every generator and the current version to the sampler, outside a
  // step (a resumed learner, or one starved of batches).
  auto announce = [=](bool again) {
    publish(again);
    self->send(a.sampler, step_atom::value,
               wire::step_report(st->sender, a.logic->step(), a.logic->version(), 0.0f, {}, st->checkpoint_step));
  };
  auto done = [=] { return st->loop.done(a.logic->step(), st->halting); };
  auto elapsed = [=] {  // RL wall time over every incarnation of this run
    return a.start_seconds + seconds_since(st->t0);
  };
  // Asks the evaluator for the accuracy of the current version (whose weights it was sent, or got
  // at spawn); k gets {eval_accuracy, eval_s}, or {eval_failed: true} when the evaluator could
  // not load that version's weights or did not answer.
  auto evaluate = [=](std::function<void(const json&)> k) {
    st->last_eval_step = a.logic->step();
    if (a.cfg.tasks.empty()) return k(json::object());  // only the user's prompts: no held-out set
    st->eval_in_flight = true;
    const uint64_t version = a.logic->version();
    self->request(a.evaluator, eval_timeout(a.cfg), eval_atom::value, version)
        .then(
            [=](const msg::Bytes& r) {
              st->eval_in_flight = false;
              k(eval_fields(r, version, *a.rejects));
            },
            [=](caf::error& e) {
              log_error("learner: evaluation failed: {}", self->system().render(e));
              st->eval_in_flight = false;
              k(json{{"eval_failed", true}});
            });
  };
  // Written as soon as the run is done, before waiting for outstanding replies (stats, an
  // evaluation), so a stop that is killed while waiting loses nothing trained.
  auto final_checkpoint = [=] {
    if (st->failed || st->checkpoint_step == a.logic->step()) return;
    Status s = checkpoint();
    if (!s.is_ok()) log_error("learner: final checkpoint failed: {}", s.message());
  };
  auto write = [=](const json& rec) {
    Status s = st->metrics.append(rec);
    if (!s.is_ok()) log_error("learner: metrics: {}", s.message());
    self->send(a.driver, step_atom::value, rec.dump());
  };
  // Called when the run is done and no record is pending. (It writes its final record itself:
  // going through `complete` would make the closures own each other and keep the actor alive.)
  auto finish = [=]() {
    if (st->finishing) return;
    st->finishing = true;
    auto rest = [=] {
      final_checkpoint();
      st->metrics.sync();
      self->send(a.driver, done_atom::value, a.logic->step());
    };
    // A stop between evaluations (Ctrl-C, run.max_seconds) still reports where the policy ended.
    if (a.logic->step() == 0 || st->last_eval_step == a.logic->step()) return rest();
    self->send(a.evaluator, weights_atom::value, weights_parts());
    json rec = {{"step", a.logic->step()}, {"version", a.logic->version()}, {"time_s", elapsed()}, {"final_eval", true}};
    evaluate([=](const json& f) mutable {
      rec.update(f);
      write(rec);
      rest();
    });
  };
  // Writes every complete record at the front, in step order; finishes when the run is done and
  // nothing is pending.
  auto flush = [=] {
    while (!st->records.empty() && st->records.begin()->second.parts == 0) {
      write(st->records.begin()->second.rec);
      st->records.erase(st->records.begin());
    }
    if (st->records.empty() && done()) finish();
  };
  // One reply for the record of `step`: merges it and writes what is complete.
  auto complete = [=](uint64_t step, const json& fields) {
    auto it = st->records.find(step);
    if (it == st->records.end()) return;
    for (auto& [k, v] : fields.items()) it->second.rec[k] = v;
    --it->second.parts;
    flush();
  };
  // The run stops at a failed effect: nothing after it in the step's plan is performed, no final
  // checkpoint is written (it would cover a step whose effects did not all happen), and the
  // driver is told why.
  auto fail = [=](uint64_t step, const char* effect, const Status& s) {
    st->failed = true;
    const std::string why = fmt::format("learner: step {}: {} failed: {}; stopped before anything after it "
                                        "(no checkpoint or publish of this step; a resume redelivers its batch)",
                                        step, effect, s.message());
    log_error("{}", why);
    st->metrics.sync();
    self->send(a.driver, fail_atom::value, why);
  };
  // The step goes to the sampler and its metrics record is opened; the record is completed off
  // the critical path by the replies (sampler and generator stats, an evaluation).
  auto report = [=](uint64_t step, uint64_t version_before, const LearnerStats& ls, const std::vector<uint64_t>& ids,
                    double wait_s, double train_s, double commit_s, const StepEffects& plan) {
    self->send(a.sampler, step_atom::value,
               wire::step_report(st->sender, step, a.logic->version(), float(ls.loss), ids, st->checkpoint_step));
    const auto now = std::chrono::steady_clock::now();
    json rec = {{"step", step},
                {"version", a.logic->version()},
                {"version_trained", version_before},
                {"time_s", elapsed()},
                {"step_time_s", seconds_between(st->last_step, now)},
                {"wait_batch_s", wait_s},
                {"train_s", train_s},
                {"commit_s", commit_s},
                {"loss", ls.loss},
                {"objective", ls.objective},
                {"aux_loss", ls.aux_loss},
                {"entropy_mean", ls.entropy_mean},
                {"grad_norm", ls.grad_norm},
                {"is_ratio_mean", ls.ratio_mean},
                {"is_ratio_max", ls.ratio_max},
                {"is_clip_fraction", ls.clip_fraction},
                {"staleness_max", ls.max_staleness},
                {"train_tokens", ls.tokens},
                {"train_computed_tokens", ls.computed_tokens},
                {"train_tokens_per_s", ls.tokens / std::max(ls.seconds, 1e-9)},
                {"groups", ids.size()},
                {"rejected_messages", a.rejects->total()}};
    if (std::isfinite(ls.pearson)) rec["train_infer_pearson"] = ls.pearson;
    rec["pearson_tokens"] = ls.pearson_tokens;
    st->last_step = now;
    if (plan.eval_skipped) rec["eval_skipped"] = true;  // the previous evaluation is still running
    const bool eval = std::find(plan.effects.begin(), plan.effects.end(), LearnerEffect::kEvaluate) != plan.effects.end();
    st->records[step] = {std::move(rec), eval ? 2 : 1};
    // A stats request that fails (timed out, the actor is gone) still completes the record, without
    // those fields.
    auto no_stats = [=](caf::error& e) {
      if (!st->stats_failure_logged)
        log_warn("learner: stats for step {}: {}; records go on without them (further stats failures are "
                 "not logged)", step, self->system().render(e));
      st->stats_failure_logged = true;
      complete(step, json::object());
    };
    self->request(a.sampler, kStatsTimeout, stats_atom::value).then([=](const msg::Bytes& s) {
      json fields = sampler_fields(s, *a.rejects);
      // From the first generator that is a member now (none: the record goes without gen_ fields).
      if (st->generators.empty()) return complete(step, fields);
      self->request(st->generators.front().second, kStatsTimeout, stats_atom::value)
          .then([=](const msg::Bytes& g) mutable {
            add_generator_fields(g, *a.rejects, &fields);
            complete(step, fields);
          },
          no_stats);
    }, no_stats);
  };
  // The generators and the evaluator start from the learner's current weights (given at spawn);
  // evaluate at step 0 before the first step's record can be written.
  if (a.logic->step() == 0) {
    st->records[0] = {json{{"step", 0}, {"version", a.logic->version()}, {"time_s", a.start_seconds}}, 1};
    evaluate([=](const json& f) { complete(0, f); });
  }

  return {
      [=](train_atom) {
        if (st->failed) return;
        // A resumed learner (version > 0) first publishes the weights it loaded and tells the
        // sampler its version: generators and a sampler that outlived the previous learner hold
        // an older version, and would wait for a publish or a step report that needs a batch
        // they cannot make (both found by m1rl sim).
        if (!st->announced) {
          st->announced = true;
          if (a.logic->version() > 0) announce(/*again=*/false);
        }
        if (c.max_seconds > 0 && !st->halting && elapsed() >= c.max_seconds) {
          log_info("run: run.max_seconds = {} reached at step {}: stopping", c.max_seconds, a.logic->step());
          st->halting = true;
        }
        if (done()) {
          final_checkpoint();
          if (st->records.empty()) finish();  // else the last record's last reply does
          return;
        }
        if (!st->waiting) {
          st->waiting = true;
          st->wait_start = std::chrono::steady_clock::now();
        }
        const size_t need = B - std::min(B, st->batch.size());
        self->request(a.replay, kTakeTimeout, take_atom::value, uint64_t(need), a.logic->version(), a.incarnation)
            .await([=](const msg::Bytes& reply) {
              // A malformed batch is counted and asked for again, like a short one.
              auto got = msg::decode<msg::TrainingBatch>(reply);
              if (!got.is_ok()) {
                a.rejects->learner++;
                log_warn("learner: rejected a batch: {}", got.status().message());
              } else {
                for (auto& g : wire::batch_groups(*got.value())) st->batch.push_back(std::move(g));
              }
              if (st->batch.size() < B) {
                // Starved for kRepublishAfter: the last publish or step report may have been lost
                // on the way (another process, a partition), and the generators or the sampler
                // wait for it: send both again.
                if (a.logic->version() > 0 && self->clock().now() - st->last_announce > kRepublishAfter) announce(/*again=*/true);
                self->delayed_send(self, std::chrono::milliseconds(10), train_atom::value);
                return;
              }
              st->waiting = false;
              const auto t_batch = std::chrono::steady_clock::now();
              const double wait_s = seconds_between(st->wait_start, t_batch);
              // decode and train
              std::vector<TrainRollout> rollouts;
              std::vector<uint64_t> ids;
              for (auto& b : st->batch) {
                auto g = msg::decode<msg::JudgedGroup>(b);
                if (!g.is_ok()) {
                  a.rejects->learner++;
                  continue;
                }
                ids.push_back(g.value()->group_id());
                wire::to_train_rollouts(*g.value(), &rollouts);
              }
              st->batch.clear();
              const uint64_t version_before = a.logic->version();
              LearnerStats ls = a.logic->train(rollouts);
              const uint64_t step = a.logic->step();
              const auto t_trained = std::chrono::steady_clock::now();
              const double train_s = seconds_between(t_batch, t_trained);
              const StepEffects plan = st->loop.after_train(step, st->eval_in_flight);
              // The plan's first effect is the commit (asynchronous: replay's reply); the rest run
              // when it succeeded, in order, stopping at the first failure.
              auto after_commit = [=](Status committed) {
                if (!committed.is_ok() && !planted_bugs().commit_failure_ignored) return fail(step, "commit", committed);
                const double commit_s = seconds_since(t_trained);
                std::vector<msg::Bytes> parts;
                for (size_t i = 1; i < plan.effects.size(); ++i) {
                  switch (plan.effects[i]) {
                    case LearnerEffect::kCommit: break;
                    case LearnerEffect::kCheckpoint:
                      if (Status cs = checkpoint(); !cs.is_ok()) return fail(step, "checkpoint", cs);
                      break;
                    case LearnerEffect::kPublish: parts = publish(); break;
                    case LearnerEffect::kReport:
                      report(step, version_before, ls, ids, wait_s, train_s, commit_s, plan);
                      break;
                    case LearnerEffect::kEvaluate:
                      self->send(a.evaluator, weights_atom::value, parts);
                      evaluate([=](const json& f) { complete(step, f); });
                      break;
                  }
                }
                self->send(self, train_atom::value);
              };
              request_commit(self, a.replay, ids, step, a.logic->version(), a.incarnation, 1,
                             [=](const msg::Bytes* reply, const Status& s) {
                               after_commit(reply ? commit_status(*reply, step, *a.rejects) : s);
                             });
            },
            [=](caf::error& e) {
              if (e != caf::sec::request_timeout)
                return fail(a.logic->step() + 1, "take", Status::error(self->system().render(e)));
              log_warn("learner: replay did not answer a take within {} s: dropping the partial batch ({} "
                       "groups), releasing replay's leases, asking again in {} s",
                       kTakeTimeout.count(), st->batch.size(), kTakeRetryDelay.count());
              st->batch.clear();
              self->send(a.replay, release_atom::value, a.incarnation);
              self->delayed_send(self, kTakeRetryDelay, train_atom::value);
            });
      },
      [=](halt_atom) { st->halting = true; },
      // A generator joined (from the sampler): it gets the current weights now and every publish.
      // (Version 0 is the start weights, which no weights message carries: a generator that joins
      // before the first publish must be built with them, like those given at spawn.)
      [=](add_generator_atom, const caf::actor& g, uint64_t id) {
        for (auto& m : st->generators)
          if (m.first == id) return;
        st->generators.emplace_back(id, g);
        if (a.logic->version() > 0) self->send(g, weights_atom::value, weights_parts());
      },
      [=](remove_generator_atom, uint64_t id) {
        st->generators.erase(std::remove_if(st->generators.begin(), st->generators.end(),
                                            [id](const auto& m) { return m.first == id; }),
                             st->generators.end());
      },
  };
}

}  // namespace m1::pipe
