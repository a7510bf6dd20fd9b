#include "actors/pipeline/pipeline.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "actors/metrics/metrics_log.h"
#include "actors/metrics/plots.h"
#include "actors/pipeline/actors.h"
#include "actors/pipeline/run_fingerprint.h"
#include "base/clock.h"
#include "base/file.h"
#include "base/log.h"
#include "base/stop.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"

namespace m1 {

using json = nlohmann::json;

namespace {

// The run's incarnation: 1 + the previous one, durable before any actor starts.
Result<uint64_t> next_incarnation(const std::string& run_dir) {
  const std::string p = path_join(run_dir, "incarnation");
  uint64_t inc = 0;
  if (path_exists(p)) {
    M1_ASSIGN_OR_RETURN(std::string s, read_file(p));
    try {
      inc = std::stoull(s);
    } catch (...) {
      return Status::errorf("{}: expected a number", p);
    }
  }
  ++inc;
  M1_RETURN_IF_ERROR(write_file_atomic(p, std::to_string(inc) + "\n"));
  return inc;
}

// The SFT model the RL stage starts from: sft.checkpoint, else RUN/sft's newest checkpoint,
// else the SFT stage is run now. "" when a stop signal ended the SFT stage (after its checkpoint).
Result<std::string> sft_model(const RunConfig& c) {
  if (!c.sft_checkpoint.empty()) return c.sft_checkpoint;
  SftConfig s = c.sft;
  CheckpointRef ck = latest_checkpoint(path_join(s.out_dir, "checkpoints"));
  if (ck.step >= s.steps) return ck.dir;
  log_info("run: SFT stage ({} steps) into {}", s.steps, s.out_dir);
  s.quiet = c.quiet;
  SftReport rep;
  M1_RETURN_IF_ERROR(run_sft(s, &rep));
  if (rep.interrupted) return std::string();
  ck = latest_checkpoint(path_join(s.out_dir, "checkpoints"));
  if (ck.step < 0) return Status::errorf("{}: the SFT stage left no checkpoint", s.out_dir);
  return ck.dir;
}

}  // namespace

Status run_pipeline(const RunConfig& c, RunReport* report) {
  const auto t_start = std::chrono::steady_clock::now();
  // A run directory is resumed only with the model and data it was started with.
  M1_ASSIGN_OR_RETURN(RunFingerprint fingerprint, fingerprint_of(c));
  M1_ASSIGN_OR_RETURN(ConfigChange change, compare_with_run(c, fingerprint));
  if (!change.identity.empty() && !c.allow_config_change)
    return Status::errorf("{}: the run directory was started with another config: {}. Resume with the original "
                          "config, use another run.dir (or --run-dir), or pass --allow-config-change to go on "
                          "(the change is recorded in events.log)",
                          c.run_dir, change.describe());
  if (!change.empty()) log_warn("run: config changed since the last start of {}: {}", c.run_dir, change.describe());
  M1_RETURN_IF_ERROR(make_dirs(c.run_dir));
  M1_RETURN_IF_ERROR(record_run_config(c, fingerprint));
  M1_ASSIGN_OR_RETURN(uint64_t incarnation, next_incarnation(c.run_dir));
  M1_ASSIGN_OR_RETURN(std::string sft_dir, sft_model(c));
  if (sft_dir.empty()) {  // stopped during the SFT stage, which checkpointed
    report->interrupted = true;
    report->seconds = seconds_since(t_start);
    return Status::ok();
  }
  set_num_threads(c.kernel_threads);  // after the SFT stage, which sizes its own pool

  // Learner: from the newest RL checkpoint, else the SFT model.
  M1_ASSIGN_OR_RETURN(Model base, load_model(sft_dir));
  LearnerConfig lc;
  lc.objective = c.objective;
  lc.minibatches = c.minibatches;
  lc.share_prompts = c.share_prompts;
  lc.lr = c.lr;
  lc.clip = c.clip;
  lc.weight_decay = c.weight_decay;
  lc.seed = c.seed;
  lc.pearson_history = c.max_staleness;  // every admitted stale version can be scored
  auto learner = std::make_shared<LearnerLogic>(base, lc);
  const std::string ckroot = path_join(c.run_dir, "checkpoints");
  M1_RETURN_IF_ERROR(make_dirs(ckroot));
  M1_RETURN_IF_ERROR(prune_checkpoints(ckroot, 2));
  CheckpointRef ck = latest_checkpoint(ckroot);
  double start_seconds = 0;
  if (ck.step >= 0) {
    M1_RETURN_IF_ERROR(learner->load(ck.dir).with_context(
        "resuming from " + ck.dir + " (if this checkpoint is damaged, move it out of " + ckroot +
        " to resume from the one before; the replay rolls back to that step)"));
    log_info("run: resumed from {} (step {}, version {}, incarnation {})", ck.dir, learner->step(),
             learner->version(), incarnation);
    auto recs = MetricsLog::read_all(path_join(c.run_dir, "metrics.jsonl"));
    if (recs.is_ok())
      for (auto& r : recs.value())
        if (r.is_object() && r.contains("time_s") && r["time_s"].is_number() && r.contains("step") &&
            r["step"].is_number_unsigned() && r["step"].get<uint64_t>() <= learner->step())
          start_seconds = std::max(start_seconds, r["time_s"].get<double>());
  }
  report->start_step = learner->step();

  // Replay: undo consumptions the newest checkpoint does not cover.
  ReplayOptions ro;
  ro.max_staleness = uint64_t(c.max_staleness);
  M1_RETURN_IF_ERROR(verify_replay_db(path_join(c.run_dir, "replay")));
  M1_ASSIGN_OR_RETURN(std::unique_ptr<ReplayStore> store_u, ReplayStore::open(path_join(c.run_dir, "replay"), ro));
  std::shared_ptr<ReplayStore> store(std::move(store_u));
  M1_ASSIGN_OR_RETURN(uint64_t undone, store->rollback_after(learner->step()));
  if (undone) log_info("run: {} consumptions after step {} rolled back for redelivery", undone, learner->step());
  // Versions only move forward: skip past every version an earlier incarnation published (its
  // rollouts may be in the buffer). Both records are durable in the replay store: the learner
  // commits the version it is about to publish with each step's consumption (ReplayCounters::
  // published_version, a high-water mark), and every buffered group records its versions.
  auto events = std::make_shared<EventLog>();
  {
    const std::string ep = path_join(c.run_dir, "events.log");
    bool previous = incarnation > 1;  // an earlier incarnation ran (maybe before any checkpoint)
    ReplayCounters rc = store->counters();
    uint64_t max_seen = rc.published_version;
    if (rc.published_version > 0) previous = true;
    if (rc.last_seq > 0) {
      previous = true;
      auto st = store->stats();
      if (st.is_ok()) max_seen = std::max(max_seen, st->max_version);
    }
    if (previous && max_seen >= learner->version()) learner->advance_version_to(max_seen + 1);
    M1_RETURN_IF_ERROR(events->open(ep));
    if (!change.empty())
      M1_RETURN_IF_ERROR(events->append(fmt::format("config change incarnation {}{}: {}", incarnation,
                                                    change.identity.empty() ? "" : " (--allow-config-change)",
                                                    change.describe())));
    M1_RETURN_IF_ERROR(events->append(fmt::format("start incarnation {} step {} version {}", incarnation,
                                                  learner->step(), learner->version())));
  }

  caf::actor_system_config cfg;
  pipe::configure_scheduler(cfg, size_t(c.threads));
  caf::actor_system sys{cfg};
  auto rejects = std::make_shared<pipe::RejectCounters>();
  std::string failure;  // the learner stopped at a failed effect (its message)
  {
    caf::scoped_actor driver{sys};
    auto replay = sys.spawn<caf::detached>(pipe::replay_actor, pipe::ReplayArgs{store, rejects, incarnation});
    std::vector<caf::actor> judges, gens;
    for (int i = 0; i < c.judges; ++i)
      judges.push_back(sys.spawn(pipe::judge_actor, pipe::JudgeArgs{pipe::judge_id(size_t(i)), incarnation, 0, rejects}));
    // The sampler needs the generators and the generators the sampler: spawn the sampler with
    // lazy init? Simpler: generators get the sampler through a forwarding handle set after spawn.
    pipe::SamplerArgs sa;
    sa.cfg = c;
    sa.judges = judges;
    sa.replay = replay;
    sa.incarnation = incarnation;
    sa.start_version = learner->version();
    sa.rejects = rejects;
    sa.events = events;
    // Generators first, talking to a sampler proxy actor that forwards to the real sampler.
    auto proxy = sys.spawn([](caf::event_based_actor* self) -> caf::behavior {
      auto target = std::make_shared<caf::actor>();
      return {[=](const caf::actor& t) { *target = t; },
              [=](pipe::rollout_atom a, const msg::Bytes& b) { self->send(*target, a, b); }};
    });
    ByteTokenizer tok;
    for (int i = 0; i < c.generators; ++i) {
      auto logic = std::make_shared<GeneratorLogic>(learner->model(), learner->version(), c.generator_batch,
                                                    tok.eos_id(), RepetitionStop{c.repetition_n, c.repetition_p});
      gens.push_back(sys.spawn<caf::detached>(pipe::generator_actor,
                                              pipe::GeneratorArgs{logic, proxy, pipe::generator_id(size_t(i)),
                                                                  incarnation, rejects}));
    }
    sa.generators = gens;
    auto sampler = sys.spawn(pipe::sampler_actor, sa);
    driver->send(proxy, sampler);
    auto evaluator = sys.spawn<caf::detached>(
        pipe::evaluator_actor,
        pipe::EvaluatorArgs{c, std::make_shared<Model>(learner->model()), learner->version(), rejects, 10,
                            incarnation});
    pipe::LearnerArgs la{c,    learner,     replay,        sampler, driver, evaluator,
                         gens, incarnation, start_seconds, rejects, events};
    auto learner_a = sys.spawn<caf::detached>(pipe::learner_actor, la);
    driver->send(sampler, pipe::membership_atom::value, learner_a);  // generators joining later get weights
    driver->send(sampler, pipe::start_atom::value);
    driver->send(learner_a, pipe::train_atom::value);

    ProgressLine progress;
    const bool tty = isatty(STDERR_FILENO);
    bool done = false, halted = false;
    // Ctrl-C is seen on every message and every 200 ms without one (a busy run never idles).
    auto check_stop = [&] {
      if (stop_requested() && !halted) {
        halted = true;
        report->interrupted = true;
        log_info("run: stopping: checkpoint, then exit");
        driver->send(learner_a, pipe::halt_atom::value);
      }
    };
    while (!done) {
      driver->receive(
          [&](pipe::step_atom, const std::string& rec) {
            check_stop();
            json j = json::parse(rec, nullptr, false);
            if (!j.is_object()) return;
            if (j.contains("eval_accuracy") && j["eval_accuracy"].is_number()) {
              if (report->eval_start < 0) report->eval_start = j["eval_accuracy"].get<double>();
              report->eval_end = j["eval_accuracy"].get<double>();
            }
            if (c.quiet) return;
            const std::string line = progress.update(j);
            if (tty)
              std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
            else
              std::fprintf(stderr, "%s\n", line.c_str());
          },
          [&](pipe::done_atom, uint64_t step) {
            done = true;
            report->end_step = step;
          },
          [&](pipe::fail_atom, const std::string& why) {
            done = true;
            failure = why;
          },
          caf::after(std::chrono::milliseconds(200)) >> [&] { check_stop(); });
    }
    if (!c.quiet && tty) std::fprintf(stderr, "\n");
    for (auto& h : std::vector<caf::actor>{learner_a, evaluator, sampler, proxy, replay})
      driver->send_exit(h, caf::exit_reason::user_shutdown);
    for (auto& h : gens) driver->send_exit(h, caf::exit_reason::user_shutdown);
    for (auto& h : judges) driver->send_exit(h, caf::exit_reason::user_shutdown);
  }
  sys.await_all_actors_done();
  if (!failure.empty()) return Status::error(failure);
  // Plots and a summary from the whole history (all incarnations).
  auto recs = MetricsLog::read_all(path_join(c.run_dir, "metrics.jsonl"));
  if (recs.is_ok()) {
    Status ps = render_plots(recs.value(), path_join(c.run_dir, "plots"));
    if (!ps.is_ok()) log_warn("run: plots: {}", ps.message());
    Status ss = write_summary(recs.value(), c.run_dir);
    if (!ss.is_ok()) log_warn("run: summary: {}", ss.message());
  }
  report->seconds = seconds_since(t_start);
  return Status::ok();
}

}  // namespace m1
