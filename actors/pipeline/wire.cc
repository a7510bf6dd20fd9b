#include "actors/pipeline/wire.h"

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "base/check.h"

namespace m1::wire {

using flatbuffers::FlatBufferBuilder;

// Finishes ROOT, then verifies it as a receiver would; a failure is a bug in the sender.
template <class T>
static msg::Bytes finish_or_die(FlatBufferBuilder& b, flatbuffers::Offset<T> root) {
  msg::Bytes out = msg::finish_message(b, root);
  auto r = msg::decode<T>(out);
  M1_CHECK_MSG(r.is_ok(), r.status().message().c_str());
  return out;
}

uint64_t checksum64(const void* data, size_t n) {
  // FNV-1a over little-endian 64-bit words in four interleaved lanes (word i feeds lane i % 4),
  // so the four multiply chains overlap: ~8 bytes per cycle instead of FNV-1a's one byte. The
  // tail (< 32 bytes) goes byte by byte into lane 0; the lanes are folded in order at the end.
  constexpr uint64_t kBasis = 1469598103934665603ull, kPrime = 1099511628211ull;
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h[4] = {kBasis, kBasis ^ 1, kBasis ^ 2, kBasis ^ 3};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * l, 8);
      h[l] = (h[l] ^ w) * kPrime;
    }
  }
  for (; i < n; ++i) h[0] = (h[0] ^ p[i]) * kPrime;
  uint64_t out = kBasis;
  for (uint64_t x : h) out = (out ^ x) * kPrime;
  return (out ^ uint64_t(n)) * kPrime;
}

const char* finish_name(msg::FinishReason f) {
  switch (f) {
    case msg::FinishReason::Eos: return "eos";
    case msg::FinishReason::Length: return "length";
    case msg::FinishReason::Repetition: return "repetition";
    case msg::FinishReason::Aborted: return "aborted";
  }
  return "?";
}

msg::FinishReason finish_from_name(const std::string& s) {
  if (s == "eos") return msg::FinishReason::Eos;
  if (s == "length") return msg::FinishReason::Length;
  if (s == "repetition") return msg::FinishReason::Repetition;
  return msg::FinishReason::Aborted;
}

msg::Bytes generation_request(Sender& s, const PromptInfo& p, uint64_t request_id, uint32_t index, int max_new,
                              float temperature, float top_p, uint64_t seed, uint64_t min_version,
                              uint64_t generator_id) {
  FlatBufferBuilder b(1024);
  auto env = s.envelope(b);
  auto prov = msg::CreateProvenanceDirect(b, p.prompt_id, p.task.c_str(), p.dataset.c_str(), generator_id, nullptr,
                                          seed);
  auto root = msg::CreateGenerationRequestDirect(b, env, request_id, p.group_id, index, uint32_t(p.group_size),
                                                 &p.prompt_tokens, uint32_t(max_new), temperature, top_p, 0, seed,
                                                 min_version, prov);
  return finish_or_die(b, root);
}

msg::Bytes rollout(Sender& s, const msg::GenerationRequest& rq, const GenOutput& out, uint64_t generator_id) {
  FlatBufferBuilder b(1024);
  auto env = s.envelope(b);
  const msg::Provenance* pv = rq.provenance();
  auto prov = msg::CreateProvenanceDirect(b, pv->prompt_id(), pv->task()->c_str(),
                                          pv->dataset() ? pv->dataset()->c_str() : "", generator_id, nullptr,
                                          pv->seed());
  std::vector<int32_t> prompt(rq.prompt_tokens()->begin(), rq.prompt_tokens()->end());
  std::vector<int32_t> toks(out.tokens.begin(), out.tokens.end());
  auto data = msg::CreateRolloutDataDirect(b, rq.request_id(), rq.group_id(), rq.index(), &prompt, &toks,
                                           &out.logprobs, &out.versions, finish_from_name(out.finish), prov);
  return finish_or_die(b, msg::CreateRollout(b, env, rq.request_id(), data));
}

// Copies a verified RolloutData into builder B, overriding the judged fields.
static flatbuffers::Offset<msg::RolloutData> copy_rollout(FlatBufferBuilder& b, const msg::RolloutData& r,
                                                          float reward, float format_reward, float advantage,
                                                          const std::string& reason, uint64_t judge_id) {
  const msg::Provenance* pv = r.provenance();
  std::vector<uint64_t> judges;
  if (pv->judge_ids()) judges.assign(pv->judge_ids()->begin(), pv->judge_ids()->end());
  if (judge_id) judges.push_back(judge_id);
  auto prov = msg::CreateProvenanceDirect(b, pv->prompt_id(), pv->task()->c_str(),
                                          pv->dataset() ? pv->dataset()->c_str() : "", pv->generator_id(), &judges,
                                          pv->seed());
  std::vector<int32_t> prompt(r.prompt_tokens()->begin(), r.prompt_tokens()->end());
  std::vector<int32_t> toks;
  std::vector<float> lps;
  std::vector<uint64_t> vers;
  if (r.tokens()) toks.assign(r.tokens()->begin(), r.tokens()->end());
  if (r.behavior_logprobs()) lps.assign(r.behavior_logprobs()->begin(), r.behavior_logprobs()->end());
  if (r.versions()) vers.assign(r.versions()->begin(), r.versions()->end());
  return msg::CreateRolloutDataDirect(b, r.rollout_id(), r.group_id(), r.index(), &prompt, &toks, &lps, &vers,
                                      r.finish(), prov, reward, format_reward, advantage, reason.c_str());
}

msg::Bytes judge_request(Sender& s, const msg::RolloutData& r, const std::string& reference, uint32_t attempt) {
  FlatBufferBuilder b(1024);
  auto env = s.envelope(b);
  auto data = copy_rollout(b, r, 0, 0, 0, "", 0);
  return finish_or_die(b, msg::CreateJudgeRequestDirect(b, env, data, reference.c_str(), attempt));
}

msg::Bytes verdict(Sender& s, uint64_t rollout_id, uint64_t judge_id, bool ok, float reward, float format_reward,
                   const std::string& reason) {
  FlatBufferBuilder b(256);
  auto env = s.envelope(b);
  return finish_or_die(b, msg::CreateVerdictDirect(b, env, rollout_id, judge_id, ok, reward, format_reward,
                                                    reason.substr(0, 1024).c_str()));
}

msg::Bytes judged_group(Sender& s, const PromptInfo& p, const std::vector<JudgedRollout>& rs, float mean, float stdev,
                        uint64_t unix_ms) {
  FlatBufferBuilder b(4096);
  auto env = s.envelope(b);
  std::vector<flatbuffers::Offset<msg::RolloutData>> rolls;
  for (const JudgedRollout& r : rs)
    rolls.push_back(copy_rollout(b, *r.data, r.reward, r.format_reward, r.advantage, r.reason.substr(0, 1024),
                                 r.judge_id));
  return finish_or_die(b, msg::CreateJudgedGroupDirect(b, env, p.group_id, p.prompt_id, p.task.c_str(),
                                                        p.prompt.c_str(), p.reference.c_str(), &rolls, mean, stdev,
                                                        unix_ms));
}

std::vector<msg::Bytes> weights(Sender& s, const float* params, size_t n, uint64_t version, size_t chunk) {
  std::vector<msg::Bytes> out;
  const uint32_t nchunks = uint32_t((n + chunk - 1) / chunk);
  {
    FlatBufferBuilder b(128);
    auto env = s.envelope(b);
    out.push_back(finish_or_die(
        b, msg::CreateWeightsAnnouncement(b, env, version, n, nchunks, checksum64(params, n * sizeof(float)))));
  }
  for (uint32_t i = 0; i < nchunks; ++i) {
    const size_t off = size_t(i) * chunk, len = std::min(chunk, n - off);
    FlatBufferBuilder b(len * 4 + 256);
    auto env = s.envelope(b);
    auto vals = b.CreateVector(params + off, len);
    out.push_back(finish_or_die(b, msg::CreateWeightsChunk(b, env, version, i, off, vals)));
  }
  return out;
}

Status assemble_weights(const std::vector<msg::Bytes>& parts, size_t n, std::vector<float>* out, uint64_t* version) {
  if (parts.empty()) return Status::error("weights: empty message");
  M1_ASSIGN_OR_RETURN(const msg::WeightsAnnouncement* a, msg::decode<msg::WeightsAnnouncement>(parts[0]));
  if (a->num_params() != n)
    return Status::errorf("WeightsAnnouncement.num_params: {} != model's {}", a->num_params(), n);
  if (parts.size() != size_t(a->num_chunks()) + 1)
    return Status::errorf("weights: {} chunks received, announcement says {}", parts.size() - 1, a->num_chunks());
  out->assign(n, 0.f);
  size_t filled = 0;
  for (size_t i = 1; i < parts.size(); ++i) {
    M1_ASSIGN_OR_RETURN(const msg::WeightsChunk* c, msg::decode<msg::WeightsChunk>(parts[i]));
    if (c->version() != a->version()) return Status::errorf("WeightsChunk.version: {} != {}", c->version(), a->version());
    const size_t off = c->offset(), len = c->values()->size();
    if (off > n || len > n - off) return Status::errorf("WeightsChunk.offset: [{}, {}) outside [0, {})", off, off + len, n);
    std::memcpy(out->data() + off, c->values()->data(), len * sizeof(float));
    filled += len;
  }
  if (filled != n) return Status::errorf("weights: {} values received, {} expected", filled, n);
  if (checksum64(out->data(), n * sizeof(float)) != a->checksum())
    return Status::error("WeightsAnnouncement.checksum: mismatch");
  *version = a->version();
  return Status::ok();
}

msg::Bytes step_report(Sender& s, uint64_t step, uint64_t version, float loss, const std::vector<uint64_t>& consumed,
                       uint64_t checkpoint_step) {
  FlatBufferBuilder b(512);
  auto env = s.envelope(b);
  return finish_or_die(b, msg::CreateStepReportDirect(b, env, step, version, loss, &consumed, checkpoint_step));
}

msg::Bytes training_batch(Sender& s, uint64_t batch_id, uint64_t learner_version,
                          const std::vector<msg::Bytes>& groups) {
  FlatBufferBuilder b(1024);
  std::vector<uint64_t> ids;
  std::vector<flatbuffers::Offset<msg::GroupMessage>> msgs;
  for (const msg::Bytes& g : groups) {
    auto d = msg::decode<msg::JudgedGroup>(g);
    M1_CHECK_MSG(d.is_ok(), d.status().message().c_str());
    ids.push_back(d.value()->group_id());
    // 8-aligned in the batch, so the nested message's 8-byte fields are aligned in place.
    b.ForceVectorAlignment(g.size(), 1, 8);
    auto bytes = b.CreateVector(g.data(), g.size());
    msgs.push_back(msg::CreateGroupMessage(b, bytes));
  }
  auto env = s.envelope(b);
  return finish_or_die(b, msg::CreateTrainingBatchDirect(b, env, batch_id, learner_version, &ids, &msgs));
}

std::vector<msg::Bytes> batch_groups(const msg::TrainingBatch& batch) {
  std::vector<msg::Bytes> out;
  if (!batch.groups()) return out;
  for (const msg::GroupMessage* g : *batch.groups())
    out.emplace_back(std::vector<uint8_t>(g->bytes()->begin(), g->bytes()->end()));
  return out;
}

static std::string outcome_reason(bool ok, const std::string& reason) {
  if (ok) return "";
  return reason.empty() ? "failed" : reason.substr(0, 1024);
}

msg::Bytes replay_ack(Sender& s, uint64_t group_id, bool ok, const std::string& reason) {
  FlatBufferBuilder b(256);
  auto env = s.envelope(b);
  return finish_or_die(b, msg::CreateReplayAckDirect(b, env, group_id, ok, outcome_reason(ok, reason).c_str()));
}

msg::Bytes commit_result(Sender& s, uint64_t step, bool ok, const std::string& reason) {
  FlatBufferBuilder b(256);
  auto env = s.envelope(b);
  return finish_or_die(b, msg::CreateCommitResultDirect(b, env, step, ok, outcome_reason(ok, reason).c_str()));
}

msg::Bytes eval_result(Sender& s, uint64_t version, bool held, double accuracy, double seconds) {
  FlatBufferBuilder b(128);
  auto env = s.envelope(b);
  return finish_or_die(b, msg::CreateEvalResult(b, env, version, held, held ? accuracy : 0.0, held ? seconds : 0.0));
}

msg::Bytes metrics(Sender& s, const std::string& source, uint64_t step, uint64_t unix_ms,
                   const std::vector<MetricValue>& values) {
  FlatBufferBuilder b(1024);
  std::vector<flatbuffers::Offset<msg::Metric>> out;
  std::unordered_set<std::string> seen;
  for (const MetricValue& v : values) {
    if (!std::isfinite(v.value) || v.name.empty() || v.name.size() > 128 || !seen.insert(v.name).second) continue;
    const double value = v.integer ? std::trunc(v.value) : v.value;
    if (v.integer && std::fabs(value) > 9007199254740992.0) continue;
    out.push_back(msg::CreateMetricDirect(b, v.name.c_str(), value, v.integer));
  }
  auto env = s.envelope(b);
  return finish_or_die(b, msg::CreateMetricsDirect(b, env, step, unix_ms, source.c_str(), &out));
}

nlohmann::json metrics_json(const msg::Metrics& m) {
  nlohmann::json j = nlohmann::json::object();
  if (!m.values()) return j;
  for (const msg::Metric* v : *m.values()) {
    nlohmann::json value;
    if (!v->integer())
      value = v->value();
    else if (v->value() >= 0)
      value = uint64_t(v->value());
    else
      value = int64_t(v->value());
    const std::string name = v->name()->str();
    const size_t dot = name.find('.');
    if (dot == std::string::npos) {
      j[name] = std::move(value);
    } else {
      nlohmann::json& obj = j[name.substr(0, dot)];
      if (!obj.is_object()) obj = nlohmann::json::object();
      obj[name.substr(dot + 1)] = std::move(value);
    }
  }
  return j;
}

void to_train_rollouts(const msg::JudgedGroup& g, std::vector<TrainRollout>* out) {
  for (const msg::RolloutData* r : *g.rollouts()) {
    if (!r->tokens() || r->tokens()->size() == 0) continue;
    TrainRollout t;
    t.group_id = g.group_id();
    t.prompt.assign(r->prompt_tokens()->begin(), r->prompt_tokens()->end());
    t.tokens.assign(r->tokens()->begin(), r->tokens()->end());
    t.behavior_logprobs.assign(r->behavior_logprobs()->begin(), r->behavior_logprobs()->end());
    t.versions.assign(r->versions()->begin(), r->versions()->end());
    t.advantage = r->advantage();
    out->push_back(std::move(t));
  }
}

}  // namespace m1::wire
