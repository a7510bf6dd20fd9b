// The pipeline's thin CAF actors (CAF 0.17). Each behaviour decodes a FlatBuffers message with
// messages/codec.h, calls pure logic (actors/*/…_logic.h, ReplayStore) and sends the result.
// Messages travel as (atom, msg::Bytes) — immutable shared bytes, never a pointer into another
// actor's state — so the same actors can run across processes once the Bytes type is serialised.
#pragma once

#include <caf/all.hpp>

#include <memory>
#include <string>
#include <vector>

#include "actors/generator/generator_logic.h"
#include "actors/learner/learner_logic.h"
#include "actors/pipeline/run_config.h"
#include "actors/replay/replay_store.h"
#include "actors/sampler/request_tracker.h"
#include "base/event_log.h"
#include "messages/caf_inspect.h"
#include "messages/codec.h"

namespace m1::pipe {

using gen_atom = caf::atom_constant<caf::atom("gen")>;          // GenerationRequest → generator
using tick_atom = caf::atom_constant<caf::atom("tick")>;        // generator: one decode round
using rollout_atom = caf::atom_constant<caf::atom("rollout")>;  // Rollout → sampler
using judge_atom = caf::atom_constant<caf::atom("judge")>;      // JudgeRequest → judge (replies Verdict)
using group_atom = caf::atom_constant<caf::atom("group")>;      // JudgedGroup → replay (replies ReplayAck)
using take_atom = caf::atom_constant<caf::atom("take")>;        // learner → replay: (n, version, epoch), replies TrainingBatch
using commit_atom = caf::atom_constant<caf::atom("commit")>;    // learner → replay: (ids, step, version to publish, epoch), replies CommitResult
using release_atom = caf::atom_constant<caf::atom("release")>;  // learner → replay: (epoch) release every lease (a take timed out)
using weights_atom = caf::atom_constant<caf::atom("weights")>;  // learner → generators
using step_atom = caf::atom_constant<caf::atom("step")>;        // StepReport → sampler / driver
using train_atom = caf::atom_constant<caf::atom("train")>;      // learner: next batch
using stats_atom = caf::atom_constant<caf::atom("stats")>;      // ask for stats, replies Metrics
using halt_atom = caf::atom_constant<caf::atom("halt")>;        // stop with a checkpoint
using done_atom = caf::atom_constant<caf::atom("done")>;        // learner → driver: finished
using fail_atom = caf::atom_constant<caf::atom("fail")>;        // learner → driver: stopped by a failed effect
using start_atom = caf::atom_constant<caf::atom("start")>;      // sampler: begin issuing
using eval_atom = caf::atom_constant<caf::atom("eval")>;        // learner → evaluator: version, replies EvalResult
// Membership at runtime. To the sampler: (add_generator_atom, actor, member id) and
// (remove_generator_atom, member id), the same for judges; to the learner (from the sampler):
// the same generator messages, so it publishes weights to the generators that are members.
using add_generator_atom = caf::atom_constant<caf::atom("addgen")>;
using remove_generator_atom = caf::atom_constant<caf::atom("rmgen")>;
using add_judge_atom = caf::atom_constant<caf::atom("addjudge")>;
using remove_judge_atom = caf::atom_constant<caf::atom("rmjudge")>;
// To the sampler: (membership_atom, actor): tell that actor (the learner) of every generator that
// joins or leaves from now on (SamplerArgs::membership at spawn does the same).
using membership_atom = caf::atom_constant<caf::atom("members")>;

// Registers the types the pipeline's messages carry, for actor systems that talk to other
// processes (both ends must register; local actors do not need it).
inline void register_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<msg::Bytes>("m1.bytes");
  cfg.add_message_type<std::vector<msg::Bytes>>("m1.bytes_vector");
}

// The scheduler of every pipeline actor system: `threads` workers, work sharing (idle workers
// sleep on a condition variable; work stealing's idle workers poll with 50 µs sleeps, which cost
// ~7% of the CPU in context switches on 2 cores while the detached generator and learner threads
// need both).
inline void configure_scheduler(caf::actor_system_config& cfg, size_t threads) {
  cfg.set("scheduler.max-threads", threads);
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

// Actor ids (non-zero, stable within a run): role prefix + index + 1.
inline uint64_t generator_id(size_t i) { return 0x6e0000ull + i + 1; }
inline uint64_t judge_id(size_t i) { return 0x3d0000ull + i + 1; }
constexpr uint64_t kReplayId = 0x7e0000ull + 1;
constexpr uint64_t kEvaluatorId = 0xe40000ull + 1;

// Shared counters of malformed messages, by receiving role (read by the driver for metrics).
struct RejectCounters {
  std::atomic<uint64_t> generator{0}, sampler{0}, judge{0}, replay{0}, learner{0}, evaluator{0};
  uint64_t total() const { return generator + sampler + judge + replay + learner + evaluator; }
};

struct GeneratorArgs {
  std::shared_ptr<GeneratorLogic> logic;
  caf::actor sampler;
  uint64_t id = 0, incarnation = 1;
  std::shared_ptr<RejectCounters> rejects;
};
caf::behavior generator_actor(caf::event_based_actor* self, GeneratorArgs a);

struct JudgeArgs {
  uint64_t id = 0, incarnation = 1;
  int repetition_penalty_on = 0;
  std::shared_ptr<RejectCounters> rejects;
};
caf::behavior judge_actor(caf::event_based_actor* self, JudgeArgs a);

struct ReplayArgs {
  std::shared_ptr<ReplayStore> store;
  std::shared_ptr<RejectCounters> rejects;
  uint64_t incarnation = 1;
};
caf::behavior replay_actor(caf::event_based_actor* self, ReplayArgs a);

struct SamplerArgs {
  RunConfig cfg;
  // The members at spawn, ids generator_id(i) and judge_id(i); more join with add_generator_atom /
  // add_judge_atom. Generators given here must hold the weights of start_version.
  std::vector<caf::actor> generators, judges;
  caf::actor membership;  // told of generators that join or leave after spawn (the learner); may be null
  RequestTrackerOptions leases;  // deadlines of generation requests (request_tracker.h); must validate()
  caf::actor replay;
  uint64_t incarnation = 1;
  uint64_t start_version = 0;
  std::shared_ptr<RejectCounters> rejects;
  std::shared_ptr<EventLog> events;  // "ack <group_id>" after each durable acknowledgement
};
caf::behavior sampler_actor(caf::event_based_actor* self, SamplerArgs a);
// The sampler's sources and options of C (prompt files read and parsed): the error the sampler
// would meet at spawn, found before the run starts.
Status validate_sampler_config(const RunConfig& c);

// Held-out evaluation (evaluator_actor.cc): owns a model copy, takes weights like a generator.
struct EvaluatorArgs {
  RunConfig cfg;
  std::shared_ptr<Model> model;  // starts as the learner's weights at spawn
  uint64_t version = 0;          // ... of this version
  std::shared_ptr<RejectCounters> rejects;
  int nice = 10;                 // added to its thread's nice value (0 = unchanged)
  uint64_t incarnation = 1;
};
caf::behavior evaluator_actor(caf::event_based_actor* self, EvaluatorArgs a);

struct LearnerArgs {
  RunConfig cfg;
  std::shared_ptr<LearnerLogic> logic;
  caf::actor replay, sampler, driver, evaluator;
  std::vector<caf::actor> generators;
  uint64_t incarnation = 1;  // also its epoch at replay: a newer one fences this learner out
  double start_seconds = 0;  // wall time already spent by earlier incarnations
  std::shared_ptr<RejectCounters> rejects;
  std::shared_ptr<EventLog> events;  // "publish <version> step <step> incarnation <i>"
};
caf::behavior learner_actor(caf::event_based_actor* self, LearnerArgs a);

}  // namespace m1::pipe
