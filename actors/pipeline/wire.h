// Building and reading the pipeline's FlatBuffers messages (messages/*.fbs). Builders return
// Bytes that already passed decode<T>() (a sender never ships what a receiver would reject);
// readers convert verified roots into the plain structs the pure logic uses.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/generator/generator_logic.h"
#include "actors/learner/learner_logic.h"
#include "base/status.h"
#include "messages/codec.h"

namespace m1::wire {

struct Sender {
  uint64_t id = 1, incarnation = 1, seq = 0;
  flatbuffers::Offset<msg::Envelope> envelope(flatbuffers::FlatBufferBuilder& b) {
    return msg::CreateEnvelope(b, id, incarnation, ++seq);
  }
};

struct PromptInfo {
  uint64_t prompt_id = 0, group_id = 0;
  std::string task, dataset, prompt, reference;
  std::vector<int> prompt_tokens;
  int group_size = 0;
};

// generator_id: the generator the request is addressed to (recorded in the provenance).
msg::Bytes generation_request(Sender& s, const PromptInfo& p, uint64_t request_id, uint32_t index, int max_new,
                              float temperature, float top_p, uint64_t seed, uint64_t min_version,
                              uint64_t generator_id);

// A finished generation as a Rollout answering REQUEST (a verified GenerationRequest).
msg::Bytes rollout(Sender& s, const msg::GenerationRequest& request, const GenOutput& out, uint64_t generator_id);

msg::Bytes judge_request(Sender& s, const msg::RolloutData& r, const std::string& reference, uint32_t attempt);

msg::Bytes verdict(Sender& s, uint64_t rollout_id, uint64_t judge_id, bool ok, float reward, float format_reward,
                   const std::string& reason);

struct JudgedRollout {
  const msg::RolloutData* data;  // verified
  float reward, format_reward, advantage;
  std::string reason;
  uint64_t judge_id;
};
msg::Bytes judged_group(Sender& s, const PromptInfo& p, const std::vector<JudgedRollout>& rollouts, float mean,
                        float stdev, uint64_t unix_ms);

// Weights as an announcement followed by chunks of at most chunk_values floats.
std::vector<msg::Bytes> weights(Sender& s, const float* params, size_t n, uint64_t version, size_t chunk_values);
// Verifies and assembles; checks the checksum. out receives n values.
Status assemble_weights(const std::vector<msg::Bytes>& parts, size_t n, std::vector<float>* out, uint64_t* version);

msg::Bytes step_report(Sender& s, uint64_t step, uint64_t version, float loss, const std::vector<uint64_t>& consumed,
                       uint64_t checkpoint_step);

// Replay → learner: the reply to a take request. GROUPS: verified JudgedGroup messages (at most
// 100000, distinct group ids), carried byte for byte. REQUIRES: batch_id ≥ 1.
msg::Bytes training_batch(Sender& s, uint64_t batch_id, uint64_t learner_version, const std::vector<msg::Bytes>& groups);
// The JudgedGroup messages of a verified TrainingBatch, each copied into its own (aligned) buffer.
std::vector<msg::Bytes> batch_groups(const msg::TrainingBatch& batch);

// Replay → sampler: the acknowledgement of a JudgedGroup (group_id 0 when it could not be
// decoded). REASON is cut to 1024 bytes; an empty reason on a failure becomes "failed".
msg::Bytes replay_ack(Sender& s, uint64_t group_id, bool ok, const std::string& reason);
// Replay → learner: the outcome of committing STEP's consumption (REQUIRES: step ≥ 1 when ok).
msg::Bytes commit_result(Sender& s, uint64_t step, bool ok, const std::string& reason);
// Evaluator → learner: the accuracy of VERSION; when !held, accuracy and seconds are sent as 0.
// REQUIRES (held): accuracy in [0, 1], seconds finite and ≥ 0.
msg::Bytes eval_result(Sender& s, uint64_t version, bool held, double accuracy, double seconds);

// One named scalar of a stats reply. integer: a count, written to JSON as an integer.
struct MetricValue {
  std::string name;  // "a.b": key b of the JSON object a
  double value = 0;
  bool integer = false;
};
// A Metrics message from SOURCE. Values the schema would refuse are left out, never sent: a
// non-finite value (not measured), an empty or over-long (> 128 bytes) name, a repeated name
// (the first counts).
msg::Bytes metrics(Sender& s, const std::string& source, uint64_t step, uint64_t unix_ms,
                   const std::vector<MetricValue>& values);
// The values of a verified Metrics as a JSON object: a name "a.b" becomes j["a"]["b"] (split at
// the first '.'), integer values JSON integers.
nlohmann::json metrics_json(const msg::Metrics& m);

// The training rollouts of a verified JudgedGroup.
void to_train_rollouts(const msg::JudgedGroup& g, std::vector<TrainRollout>* out);

// The weights checksum (WeightsAnnouncement.checksum): FNV-1a 64 over 64-bit words in 4 lanes.
uint64_t checksum64(const void* data, size_t n);
const char* finish_name(msg::FinishReason f);
msg::FinishReason finish_from_name(const std::string& s);

}  // namespace m1::wire
