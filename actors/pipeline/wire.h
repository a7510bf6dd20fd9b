// Building and reading the pipeline's FlatBuffers messages (messages/*.fbs). Builders return
// Bytes that already passed decode<T>() (a sender never ships what a receiver would reject);
// readers convert verified roots into the plain structs the pure logic uses.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

// The training rollouts of a verified JudgedGroup.
void to_train_rollouts(const msg::JudgedGroup& g, std::vector<TrainRollout>* out);

// The weights checksum (WeightsAnnouncement.checksum): FNV-1a 64 over 64-bit words in 4 lanes.
uint64_t checksum64(const void* data, size_t n);
const char* finish_name(msg::FinishReason f);
msg::FinishReason finish_from_name(const std::string& s);

}  // namespace m1::wire
