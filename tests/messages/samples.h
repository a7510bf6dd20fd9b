// Valid sample messages for every root type, built from plain spec structs so that a test can
// break exactly one field. The specs' default values form the "full" sample (every field set with
// realistic values); minimal_*() specs set only what the schema requires. write_samples() writes
// every valid sample to <dir>/<stem>/seed_<variant>.bin (the fuzz seed corpus).
// Header-only: tests/messages/*_test.cc and messages/fuzz/ include it.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "messages/codec.h"

namespace m1::msg::testing {

namespace fb = flatbuffers;

struct EnvelopeSpec {
  bool present = true;
  uint64_t sender = 0x0102;  // actor id
  uint64_t incarnation = 3;
  uint64_t seq = 57;
};

struct ProvenanceSpec {
  uint64_t prompt_id = 100042;
  std::optional<std::string> task = "add";
  std::optional<std::string> dataset = "builtin";
  uint64_t generator_id = 2;
  std::optional<std::vector<uint64_t>> judge_ids = std::vector<uint64_t>{7, 8};
  uint64_t seed = 0x9e3779b97f4a7c15ull;
};

struct RolloutDataSpec {
  uint64_t rollout_id = 500001;
  uint64_t group_id = 4242;
  uint32_t index = 1;
  std::optional<std::vector<int32_t>> prompt_tokens = std::vector<int32_t>{1, 517, 88, 43, 12, 2049, 7, 99};
  std::optional<std::vector<int32_t>> tokens = std::vector<int32_t>{1201, 33, 7, 400, 2};
  std::optional<std::vector<float>> behavior_logprobs = std::vector<float>{-0.125f, -1.5f, -0.003f, -2.25f, -0.5f};
  std::optional<std::vector<uint64_t>> versions = std::vector<uint64_t>{11, 11, 12, 12, 12};
  int8_t finish = static_cast<int8_t>(FinishReason::Eos);
  bool has_provenance = true;
  ProvenanceSpec provenance;
  float reward = 1.0f;
  float format_reward = 1.0f;
  float advantage = 0.87f;
  std::optional<std::string> reason = "correct: 42 == 42";
};

struct GenerationRequestSpec {
  EnvelopeSpec envelope;
  uint64_t request_id = 900001;
  uint64_t group_id = 4242;
  uint32_t index = 1;
  uint32_t group_size = 4;
  std::optional<std::vector<int32_t>> prompt_tokens = std::vector<int32_t>{1, 517, 88, 43, 12, 2049, 7, 99};
  uint32_t max_new = 2048;
  float temperature = 1.0f;
  float top_p = 0.95f;
  uint32_t top_k = 50;
  uint64_t seed = 0x5eed0001ull;
  uint64_t min_version = 9;
  bool has_provenance = true;
  ProvenanceSpec provenance;
};

struct RolloutSpec {
  EnvelopeSpec envelope;
  uint64_t request_id = 900001;
  bool has_data = true;
  RolloutDataSpec data;
};

struct JudgeRequestSpec {
  EnvelopeSpec envelope;
  bool has_rollout = true;
  RolloutDataSpec rollout;
  std::optional<std::string> reference = "42";
  uint32_t attempt = 1;
};

struct VerdictSpec {
  EnvelopeSpec envelope;
  uint64_t rollout_id = 500001;
  uint64_t judge_id = 7;
  bool ok = true;
  float reward = 1.0f;
  float format_reward = 1.0f;
  std::optional<std::string> reason = "answer 42 matches the reference";
};

// G rollouts of group GROUP_ID with mixed rewards and GRPO advantages.
inline std::vector<RolloutDataSpec> group_rollouts(uint64_t group_id, uint32_t g, const char* task = "add") {
  std::vector<RolloutDataSpec> out(g);
  for (uint32_t i = 0; i < g; ++i) {
    RolloutDataSpec& r = out[i];
    r.rollout_id = group_id * 100 + i + 1;
    r.group_id = group_id;
    r.index = i;
    r.reward = (i % 2 == 0) ? 1.0f : 0.0f;
    r.format_reward = (i == g - 1) ? 0.0f : 1.0f;
    r.advantage = (i % 2 == 0) ? 0.9f : -0.9f;
    r.finish = static_cast<int8_t>(i == 3 ? FinishReason::Length : FinishReason::Eos);
    r.reason = (i % 2 == 0) ? "correct" : "wrong answer: 41 != 42";
    r.provenance.seed = 0x1000 + i;
    r.provenance.task = task;
  }
  return out;
}

struct JudgedGroupSpec {
  EnvelopeSpec envelope;
  uint64_t group_id = 4242;
  uint64_t prompt_id = 100042;
  std::optional<std::string> task = "add";
  std::optional<std::string> prompt = "What is 17 + 25? Think step by step, then answer in <answer></answer>.";
  std::optional<std::string> reference = "42";
  std::optional<std::vector<RolloutDataSpec>> rollouts = group_rollouts(4242, 4);
  float reward_mean = 0.5f;
  float reward_std = 0.5f;
  uint64_t created_unix_ms = 1718000000123ull;
};

// The full JudgedGroupSpec with another id, task and G.
inline JudgedGroupSpec group_spec(uint64_t group_id, const char* task, uint32_t g) {
  JudgedGroupSpec s;
  s.group_id = group_id;
  s.task = task;
  s.rollouts = group_rollouts(group_id, g, task);
  return s;
}

struct TrainingBatchSpec {
  EnvelopeSpec envelope;
  uint64_t batch_id = 77;
  uint64_t learner_version = 12;
  std::optional<std::vector<uint64_t>> group_ids = std::vector<uint64_t>{4242, 4243};
  // Each built as a whole JudgedGroup message and nested as GroupMessage.bytes.
  std::optional<std::vector<JudgedGroupSpec>> groups =
      std::vector<JudgedGroupSpec>{group_spec(4242, "add", 2), group_spec(4243, "sort", 3)};
  bool misalign = false;  // nest the groups 4-aligned only (no ForceVectorAlignment)
};

struct ReplayAckSpec {
  EnvelopeSpec envelope;
  uint64_t group_id = 4242;
  bool ok = true;
  std::optional<std::string> reason;
};

struct CommitResultSpec {
  EnvelopeSpec envelope;
  uint64_t step = 12;
  bool ok = true;
  std::optional<std::string> reason;
};

struct FrameSpec {
  uint64_t source = 0x6e0001;
  uint64_t destination = 0x7e0001;
  uint64_t source_node = 2;
  uint64_t incarnation = 3;
  uint64_t seq = 41;
  uint64_t request_id = 77;
  int8_t kind = static_cast<int8_t>(FrameKind::Request);
  std::optional<std::string> tag = "gen";
  int8_t shape = static_cast<int8_t>(PayloadShape::Many);
  std::optional<std::vector<std::vector<uint8_t>>> payloads =
      std::vector<std::vector<uint8_t>>{{8, 0, 0, 0, 'G', 'R', 'E', 'Q'}, {}};
  std::optional<std::string> reason;
};

struct EvalResultSpec {
  EnvelopeSpec envelope;
  uint64_t version = 12;
  bool held = true;
  double accuracy = 0.625;
  double seconds = 3.25;
};

struct WeightsAnnouncementSpec {
  EnvelopeSpec envelope;
  uint64_t version = 12;
  uint64_t num_params = 1234567;
  uint32_t num_chunks = 5;
  uint64_t checksum = 0xcbf29ce484222325ull;
};

inline std::vector<float> some_weights(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.02f * static_cast<float>(std::sin(0.37 * static_cast<double>(i) + 0.1));
  return v;
}

struct WeightsChunkSpec {
  EnvelopeSpec envelope;
  uint64_t version = 12;
  uint32_t index = 3;
  uint64_t offset = 3 * 262144;
  std::optional<std::vector<float>> values = some_weights(48);
};

struct MetricSpec {
  std::optional<std::string> name;
  double value = 0.0;
  bool integer = false;
};

struct StepReportSpec {
  EnvelopeSpec envelope;
  uint64_t step = 12;
  uint64_t version = 12;
  float loss = 0.4375f;
  std::optional<std::vector<uint64_t>> consumed_group_ids = std::vector<uint64_t>{4242, 4243};
  uint64_t checkpoint_step = 10;
  std::optional<std::vector<MetricSpec>> metrics =
      std::vector<MetricSpec>{{"grad_norm", 1.25}, {"kl", 0.0031}, {"lr", 1e-6}};
};

struct ReplayQuerySpec {
  EnvelopeSpec envelope;
  int8_t status = static_cast<int8_t>(GroupStatus::Pending);
  std::optional<std::string> task = "add";
  uint64_t min_version = 5;
  uint64_t max_version = 12;
  float min_reward = -1.0f;
  float max_reward = 1.0f;
  uint32_t limit = 50;
  uint64_t group_id = 4242;
};

struct GroupSummarySpec {
  uint64_t group_id = 4242;
  std::optional<std::string> task = "add";
  int8_t status = static_cast<int8_t>(GroupStatus::Pending);
  std::optional<std::string> drop_reason;
  uint64_t min_version = 11;
  uint64_t max_version = 12;
  float reward_mean = 0.5f;
  uint32_t size = 4;
};

struct ReplayResultSpec {
  EnvelopeSpec envelope;
  std::optional<std::vector<GroupSummarySpec>> groups = std::vector<GroupSummarySpec>{
      {4242, "add", static_cast<int8_t>(GroupStatus::Pending), std::nullopt, 11, 12, 0.5f, 4},
      {4101, "sort", static_cast<int8_t>(GroupStatus::Dropped), "stale: version 3 < 12 - 8", 3, 3, -0.25f, 4}};
  uint64_t total_matched = 17;
};

struct MetricsSpec {
  EnvelopeSpec envelope;
  uint64_t step = 12;
  uint64_t unix_ms = 1718000004567ull;
  std::optional<std::string> source = "generator";
  std::optional<std::vector<MetricSpec>> values =
      std::vector<MetricSpec>{{"tokens_per_s", 1834.5}, {"queue_depth", 3.0, true}, {"stale_fraction", 0.0625},
                              {"finish_reasons.eos", 12.0, true}};
};

// ---- building ----

inline fb::Offset<fb::String> build(fb::FlatBufferBuilder& b, const std::optional<std::string>& s) {
  return s ? b.CreateString(*s) : fb::Offset<fb::String>();
}
template <class E>
fb::Offset<fb::Vector<E>> build(fb::FlatBufferBuilder& b, const std::optional<std::vector<E>>& v) {
  return v ? b.CreateVector(*v) : fb::Offset<fb::Vector<E>>();
}
inline fb::Offset<Envelope> build(fb::FlatBufferBuilder& b, const EnvelopeSpec& s) {
  return s.present ? CreateEnvelope(b, s.sender, s.incarnation, s.seq) : fb::Offset<Envelope>();
}
inline fb::Offset<Provenance> build(fb::FlatBufferBuilder& b, const ProvenanceSpec& s) {
  auto task = build(b, s.task);
  auto dataset = build(b, s.dataset);
  auto judges = build(b, s.judge_ids);
  return CreateProvenance(b, s.prompt_id, task, dataset, s.generator_id, judges, s.seed);
}
inline fb::Offset<RolloutData> build(fb::FlatBufferBuilder& b, const RolloutDataSpec& s) {
  auto prompt = build(b, s.prompt_tokens);
  auto tokens = build(b, s.tokens);
  auto lp = build(b, s.behavior_logprobs);
  auto versions = build(b, s.versions);
  auto prov = s.has_provenance ? build(b, s.provenance) : fb::Offset<Provenance>();
  auto reason = build(b, s.reason);
  return CreateRolloutData(b, s.rollout_id, s.group_id, s.index, prompt, tokens, lp, versions,
                           static_cast<FinishReason>(s.finish), prov, s.reward, s.format_reward, s.advantage, reason);
}
inline fb::Offset<fb::Vector<fb::Offset<RolloutData>>> build(fb::FlatBufferBuilder& b,
                                                             const std::optional<std::vector<RolloutDataSpec>>& v) {
  if (!v) return {};
  std::vector<fb::Offset<RolloutData>> offs;
  for (const auto& r : *v) offs.push_back(build(b, r));
  return b.CreateVector(offs);
}
inline fb::Offset<fb::Vector<fb::Offset<Metric>>> build(fb::FlatBufferBuilder& b,
                                                        const std::optional<std::vector<MetricSpec>>& v) {
  if (!v) return {};
  std::vector<fb::Offset<Metric>> offs;
  for (const auto& m : *v) {
    auto name = build(b, m.name);
    offs.push_back(CreateMetric(b, name, m.value, m.integer));
  }
  return b.CreateVector(offs);
}

inline Bytes build(const GenerationRequestSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto prompt = build(b, s.prompt_tokens);
  auto prov = s.has_provenance ? build(b, s.provenance) : fb::Offset<Provenance>();
  return finish_message(b, CreateGenerationRequest(b, env, s.request_id, s.group_id, s.index, s.group_size, prompt,
                                                   s.max_new, s.temperature, s.top_p, s.top_k, s.seed,
                                                   s.min_version, prov));
}
inline Bytes build(const RolloutSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto data = s.has_data ? build(b, s.data) : fb::Offset<RolloutData>();
  return finish_message(b, CreateRollout(b, env, s.request_id, data));
}
inline Bytes build(const JudgeRequestSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto rollout = s.has_rollout ? build(b, s.rollout) : fb::Offset<RolloutData>();
  auto ref = build(b, s.reference);
  return finish_message(b, CreateJudgeRequest(b, env, rollout, ref, s.attempt));
}
inline Bytes build(const VerdictSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto reason = build(b, s.reason);
  return finish_message(
      b, CreateVerdict(b, env, s.rollout_id, s.judge_id, s.ok, s.reward, s.format_reward, reason));
}
inline Bytes build(const JudgedGroupSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto task = build(b, s.task);
  auto prompt = build(b, s.prompt);
  auto ref = build(b, s.reference);
  auto rollouts = build(b, s.rollouts);
  return finish_message(b, CreateJudgedGroup(b, env, s.group_id, s.prompt_id, task, prompt, ref, rollouts,
                                             s.reward_mean, s.reward_std, s.created_unix_ms));
}
inline Bytes build(const TrainingBatchSpec& s) {
  fb::FlatBufferBuilder b;
  fb::Offset<fb::Vector<fb::Offset<GroupMessage>>> groups;
  if (s.groups) {
    std::vector<fb::Offset<GroupMessage>> offs;
    for (const auto& g : *s.groups) {
      const Bytes nested = build(g);
      // misalign: 8-aligned at data + 4, so the data starts at 4 mod 8 (the vector's own padding to
      // 4 adds nothing: nested sizes are multiples of 8).
      b.ForceVectorAlignment(nested.size() + (s.misalign ? 4 : 0), 1, 8);
      auto bytes = b.CreateVector(nested.data(), nested.size());
      offs.push_back(CreateGroupMessage(b, bytes));
    }
    groups = b.CreateVector(offs);
  }
  auto env = build(b, s.envelope);
  auto ids = build(b, s.group_ids);
  return finish_message(b, CreateTrainingBatch(b, env, s.batch_id, s.learner_version, ids, groups));
}
inline Bytes build(const WeightsAnnouncementSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  return finish_message(b, CreateWeightsAnnouncement(b, env, s.version, s.num_params, s.num_chunks, s.checksum));
}
inline Bytes build(const WeightsChunkSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto values = build(b, s.values);
  return finish_message(b, CreateWeightsChunk(b, env, s.version, s.index, s.offset, values));
}
inline Bytes build(const StepReportSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto consumed = build(b, s.consumed_group_ids);
  auto metrics = build(b, s.metrics);
  return finish_message(
      b, CreateStepReport(b, env, s.step, s.version, s.loss, consumed, s.checkpoint_step, metrics));
}
inline Bytes build(const ReplayQuerySpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto task = build(b, s.task);
  return finish_message(b, CreateReplayQuery(b, env, s.status, task, s.min_version, s.max_version, s.min_reward,
                                             s.max_reward, s.limit, s.group_id));
}
inline Bytes build(const ReplayResultSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  fb::Offset<fb::Vector<fb::Offset<GroupSummary>>> groups;
  if (s.groups) {
    std::vector<fb::Offset<GroupSummary>> offs;
    for (const auto& g : *s.groups) {
      auto task = build(b, g.task);
      auto reason = build(b, g.drop_reason);
      offs.push_back(CreateGroupSummary(b, g.group_id, task, static_cast<GroupStatus>(g.status), reason,
                                        g.min_version, g.max_version, g.reward_mean, g.size));
    }
    groups = b.CreateVector(offs);
  }
  return finish_message(b, CreateReplayResult(b, env, groups, s.total_matched));
}
inline Bytes build(const MetricsSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto source = build(b, s.source);
  auto values = build(b, s.values);
  return finish_message(b, CreateMetrics(b, env, s.step, s.unix_ms, source, values));
}

inline Bytes build(const ReplayAckSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto reason = build(b, s.reason);
  return finish_message(b, CreateReplayAck(b, env, s.group_id, s.ok, reason));
}
inline Bytes build(const CommitResultSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  auto reason = build(b, s.reason);
  return finish_message(b, CreateCommitResult(b, env, s.step, s.ok, reason));
}
inline Bytes build(const EvalResultSpec& s) {
  fb::FlatBufferBuilder b;
  auto env = build(b, s.envelope);
  return finish_message(b, CreateEvalResult(b, env, s.version, s.held, s.accuracy, s.seconds));
}

inline Bytes build(const FrameSpec& s) {
  fb::FlatBufferBuilder b;
  auto tag = build(b, s.tag);
  fb::Offset<fb::Vector<fb::Offset<Payload>>> payloads;
  if (s.payloads) {
    std::vector<fb::Offset<Payload>> v;
    for (const auto& p : *s.payloads) v.push_back(CreatePayload(b, b.CreateVector(p)));
    payloads = b.CreateVector(v);
  }
  auto reason = build(b, s.reason);
  return finish_message(b, CreateFrame(b, s.source, s.destination, s.source_node, s.incarnation, s.seq, s.request_id,
                                       static_cast<FrameKind>(s.kind), tag, static_cast<PayloadShape>(s.shape),
                                       payloads, reason));
}

// ---- minimal specs: only what the schema requires, every optional field absent or default ----

inline ProvenanceSpec minimal_provenance() {
  ProvenanceSpec p;
  p.prompt_id = 1;
  p.task = "sort";
  p.dataset.reset();
  p.generator_id = 1;
  p.judge_ids.reset();
  p.seed = 0;
  return p;
}
inline RolloutDataSpec minimal_rollout_data(uint64_t group_id = 1, uint32_t index = 0) {
  RolloutDataSpec r;
  r.rollout_id = 1;
  r.group_id = group_id;
  r.index = index;
  r.prompt_tokens = std::vector<int32_t>{0};
  r.tokens.reset();
  r.behavior_logprobs.reset();
  r.versions.reset();
  r.provenance = minimal_provenance();
  r.reward = r.format_reward = r.advantage = 0.0f;
  r.reason.reset();
  return r;
}
inline EnvelopeSpec minimal_envelope() { return EnvelopeSpec{true, 1, 1, 1}; }

// ---- the sample table ----

struct Sample {
  std::string stem;     // schema stem of the root type ("rollout")
  std::string variant;  // "full" or "minimal"
  Bytes bytes;
};

inline std::vector<Sample> valid_samples() {
  std::vector<Sample> out;
  auto add = [&](const char* stem, const auto& full, const auto& minimal) {
    out.push_back({stem, "full", build(full)});
    out.push_back({stem, "minimal", build(minimal)});
  };
  {
    GenerationRequestSpec m{minimal_envelope(), 1, 1, 0, 1, std::vector<int32_t>{0}, 1, 0.0f, 1.0f, 0, 0, 0,
                            true, minimal_provenance()};
    add("generation_request", GenerationRequestSpec{}, m);
  }
  add("rollout", RolloutSpec{}, RolloutSpec{minimal_envelope(), 1, true, minimal_rollout_data()});
  add("judge_request", JudgeRequestSpec{},
      JudgeRequestSpec{minimal_envelope(), true, minimal_rollout_data(), std::nullopt, 0});
  add("verdict", VerdictSpec{}, VerdictSpec{minimal_envelope(), 1, 1, false, 0.0f, 0.0f, std::nullopt});
  add("judged_group", JudgedGroupSpec{},
      JudgedGroupSpec{minimal_envelope(), 1, 1, "sort", std::nullopt, std::nullopt,
                      std::vector<RolloutDataSpec>{minimal_rollout_data()}, 0.0f, 0.0f, 0});
  add("training_batch", TrainingBatchSpec{},
      TrainingBatchSpec{minimal_envelope(), 1, 0, std::nullopt, std::nullopt});
  add("weights_announcement", WeightsAnnouncementSpec{}, WeightsAnnouncementSpec{minimal_envelope(), 1, 1, 1, 0});
  add("weights_chunk", WeightsChunkSpec{},
      WeightsChunkSpec{minimal_envelope(), 1, 0, 0, std::vector<float>{0.0f}});
  add("step_report", StepReportSpec{},
      StepReportSpec{minimal_envelope(), 1, 1, 0.0f, std::nullopt, 0, std::nullopt});
  {
    ReplayQuerySpec m;  // schema defaults: any status, any version, any reward, limit 100
    m.envelope = minimal_envelope();
    m.status = -1;
    m.task.reset();
    m.min_version = 0;
    m.max_version = UINT64_MAX;
    m.min_reward = -1e30f;
    m.max_reward = 1e30f;
    m.limit = 100;
    m.group_id = 0;
    add("replay_query", ReplayQuerySpec{}, m);
  }
  add("replay_result", ReplayResultSpec{}, ReplayResultSpec{minimal_envelope(), std::nullopt, 0});
  add("metrics", MetricsSpec{}, MetricsSpec{minimal_envelope(), 0, 0, "judge", std::nullopt});
  add("replay_ack", ReplayAckSpec{}, ReplayAckSpec{minimal_envelope(), 0, false, "rejected"});
  add("commit_result", CommitResultSpec{}, CommitResultSpec{minimal_envelope(), 0, false, "refused"});
  add("eval_result", EvalResultSpec{}, EvalResultSpec{minimal_envelope(), 0, false, 0.0, 0.0});
  add("frame", FrameSpec{},
      FrameSpec{1, 1, 1, 1, 1, 0, static_cast<int8_t>(FrameKind::Oneway), "gen", 0, std::nullopt, std::nullopt});
  return out;
}

// Writes every valid sample to DIR/<stem>/seed_<variant>.bin; returns the number of files.
inline size_t write_samples(const std::filesystem::path& dir) {
  size_t n = 0;
  for (const Sample& s : valid_samples()) {
    std::filesystem::create_directories(dir / s.stem);
    std::ofstream f(dir / s.stem / ("seed_" + s.variant + ".bin"), std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(s.bytes.data()), static_cast<std::streamsize>(s.bytes.size()));
    n += f.good() ? 1 : 0;
  }
  return n;
}

}  // namespace m1::msg::testing
