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
#include "base/event_log.h"
#include "messages/codec.h"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(m1::msg::Bytes)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<m1::msg::Bytes>)

namespace m1::pipe {

using gen_atom = caf::atom_constant<caf::atom("gen")>;          // GenerationRequest → generator
using tick_atom = caf::atom_constant<caf::atom("tick")>;        // generator: one decode round
using rollout_atom = caf::atom_constant<caf::atom("rollout")>;  // Rollout → sampler
using judge_atom = caf::atom_constant<caf::atom("judge")>;      // JudgeRequest → judge (replies Verdict)
using group_atom = caf::atom_constant<caf::atom("group")>;      // JudgedGroup → replay (replies ack)
using take_atom = caf::atom_constant<caf::atom("take")>;        // learner → replay: a batch
using commit_atom = caf::atom_constant<caf::atom("commit")>;    // learner → replay: consumption
using weights_atom = caf::atom_constant<caf::atom("weights")>;  // learner → generators
using step_atom = caf::atom_constant<caf::atom("step")>;        // StepReport → sampler / driver
using train_atom = caf::atom_constant<caf::atom("train")>;      // learner: next batch
using stats_atom = caf::atom_constant<caf::atom("stats")>;      // ask for a JSON stats string
using halt_atom = caf::atom_constant<caf::atom("halt")>;        // stop with a checkpoint
using done_atom = caf::atom_constant<caf::atom("done")>;        // learner → driver: finished
using start_atom = caf::atom_constant<caf::atom("start")>;      // sampler: begin issuing

// Actor ids (non-zero, stable within a run): role prefix + index + 1.
inline uint64_t generator_id(size_t i) { return 0x6e0000ull + i + 1; }
inline uint64_t judge_id(size_t i) { return 0x3d0000ull + i + 1; }

// Shared counters of malformed messages, by receiving role (read by the driver for metrics).
struct RejectCounters {
  std::atomic<uint64_t> generator{0}, sampler{0}, judge{0}, replay{0}, learner{0};
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
};
caf::behavior replay_actor(caf::event_based_actor* self, ReplayArgs a);

struct SamplerArgs {
  RunConfig cfg;
  std::vector<caf::actor> generators, judges;
  caf::actor replay;
  uint64_t incarnation = 1;
  uint64_t start_version = 0;
  std::shared_ptr<RejectCounters> rejects;
  std::shared_ptr<EventLog> events;  // "ack <group_id>" after each durable acknowledgement
};
caf::behavior sampler_actor(caf::event_based_actor* self, SamplerArgs a);

struct LearnerArgs {
  RunConfig cfg;
  std::shared_ptr<LearnerLogic> logic;
  caf::actor replay, sampler, driver;
  std::vector<caf::actor> generators;
  uint64_t incarnation = 1;
  double start_seconds = 0;  // wall time already spent by earlier incarnations
  std::shared_ptr<RejectCounters> rejects;
  std::shared_ptr<EventLog> events;  // "publish <version> step <step> incarnation <i>"
};
caf::behavior learner_actor(caf::event_based_actor* self, LearnerArgs a);

}  // namespace m1::pipe
