// touch(): reads every field of a decoded message (every scalar, every string byte, every vector
// element, every sub-table) and folds it into a hash, so that a test or a fuzzer exercises all
// accessors on any buffer decode<T> accepted. Under ASan/UBSan a bad read in there is a codec bug.
// root_ops(): a type-erased table over M1_MSG_ROOT_TYPES for table-driven tests.
// Header-only: tests/messages/*_test.cc and messages/fuzz/fuzz_main.cc include it.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "messages/codec.h"

namespace m1::msg::testing {

inline uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }
inline uint64_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline uint64_t bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, 8);
  return u;
}
inline uint64_t bits(uint64_t v) { return v; }
inline uint64_t bits(int64_t v) { return static_cast<uint64_t>(v); }
inline uint64_t bits(uint32_t v) { return v; }
inline uint64_t bits(int32_t v) { return static_cast<uint32_t>(v); }

inline uint64_t touch(const flatbuffers::String* s) {
  if (!s) return 1;
  uint64_t h = s->size();
  for (char c : std::string_view(s->c_str(), s->size())) h = mix(h, static_cast<uint8_t>(c));
  return h;
}
template <class E>
uint64_t touch(const flatbuffers::Vector<E>* v) {
  if (!v) return 2;
  uint64_t h = v->size();
  for (uint32_t i = 0; i < v->size(); ++i) h = mix(h, bits(v->Get(i)));
  return h;
}
// Sub-table overloads, declared before touch_tables so that its (non-ADL) lookup finds them.
inline uint64_t touch(const RolloutData* r);
inline uint64_t touch(const Metric* m);
inline uint64_t touch(const GroupSummary* g);
inline uint64_t touch(const GroupMessage* g);

template <class Table>
uint64_t touch_tables(const flatbuffers::Vector<flatbuffers::Offset<Table>>* v) {
  if (!v) return 3;
  uint64_t h = v->size();
  for (uint32_t i = 0; i < v->size(); ++i) h = mix(h, touch(v->Get(i)));
  return h;
}

inline uint64_t touch(const Envelope* e) {
  if (!e) return 4;
  return mix(mix(e->sender(), e->incarnation()), e->seq());
}
inline uint64_t touch(const Provenance* p) {
  if (!p) return 5;
  uint64_t h = mix(p->prompt_id(), touch(p->task()));
  h = mix(h, touch(p->dataset()));
  h = mix(h, p->generator_id());
  h = mix(h, touch(p->judge_ids()));
  return mix(h, p->seed());
}
inline uint64_t touch(const RolloutData* r) {
  if (!r) return 6;
  uint64_t h = mix(r->rollout_id(), r->group_id());
  h = mix(h, r->index());
  h = mix(h, touch(r->prompt_tokens()));
  h = mix(h, touch(r->tokens()));
  h = mix(h, touch(r->behavior_logprobs()));
  h = mix(h, touch(r->versions()));
  h = mix(h, static_cast<uint8_t>(r->finish()));
  h = mix(h, std::string_view(EnumNameFinishReason(r->finish())).size());
  h = mix(h, touch(r->provenance()));
  h = mix(h, bits(r->reward()));
  h = mix(h, bits(r->format_reward()));
  h = mix(h, bits(r->advantage()));
  return mix(h, touch(r->reason()));
}
inline uint64_t touch(const Metric* m) {
  if (!m) return 7;
  return mix(mix(touch(m->name()), bits(m->value())), uint64_t(m->integer()));
}
inline uint64_t touch(const GroupSummary* g) {
  if (!g) return 8;
  uint64_t h = mix(g->group_id(), touch(g->task()));
  h = mix(h, static_cast<uint8_t>(g->status()));
  h = mix(h, std::string_view(EnumNameGroupStatus(g->status())).size());
  h = mix(h, touch(g->drop_reason()));
  h = mix(h, g->min_version());
  h = mix(h, g->max_version());
  h = mix(h, bits(g->reward_mean()));
  return mix(h, g->size());
}
inline uint64_t touch(const JudgedGroup& m);
// The bytes, and every field of the nested JudgedGroup read in place (decode checked it).
inline uint64_t touch(const GroupMessage* g) {
  if (!g) return 9;
  uint64_t h = touch(g->bytes());
  if (g->bytes()) h = mix(h, touch(*flatbuffers::GetRoot<JudgedGroup>(g->bytes()->data())));
  return h;
}

// ---- roots ----

inline uint64_t touch(const GenerationRequest& m) {
  uint64_t h = mix(touch(m.envelope()), m.request_id());
  for (uint64_t v : {uint64_t(m.group_id()), uint64_t(m.index()), uint64_t(m.group_size()), touch(m.prompt_tokens()),
                     uint64_t(m.max_new()), bits(m.temperature()), bits(m.top_p()), uint64_t(m.top_k()), m.seed(),
                     m.min_version(), touch(m.provenance())}) {
    h = mix(h, v);
  }
  return h;
}
inline uint64_t touch(const Rollout& m) { return mix(mix(touch(m.envelope()), m.request_id()), touch(m.data())); }
inline uint64_t touch(const JudgeRequest& m) {
  return mix(mix(mix(touch(m.envelope()), touch(m.rollout())), touch(m.reference())), m.attempt());
}
inline uint64_t touch(const Verdict& m) {
  uint64_t h = mix(touch(m.envelope()), m.rollout_id());
  for (uint64_t v : {m.judge_id(), uint64_t(m.ok()), bits(m.reward()), bits(m.format_reward()), touch(m.reason())}) {
    h = mix(h, v);
  }
  return h;
}
inline uint64_t touch(const JudgedGroup& m) {
  uint64_t h = mix(touch(m.envelope()), m.group_id());
  for (uint64_t v : {m.prompt_id(), touch(m.task()), touch(m.prompt()), touch(m.reference()),
                     touch_tables(m.rollouts()), bits(m.reward_mean()), bits(m.reward_std()), m.created_unix_ms()}) {
    h = mix(h, v);
  }
  return h;
}
inline uint64_t touch(const TrainingBatch& m) {
  uint64_t h = mix(touch(m.envelope()), m.batch_id());
  for (uint64_t v : {m.learner_version(), touch(m.group_ids()), touch_tables(m.groups())}) h = mix(h, v);
  return h;
}
inline uint64_t touch(const WeightsAnnouncement& m) {
  uint64_t h = mix(touch(m.envelope()), m.version());
  for (uint64_t v : {m.num_params(), uint64_t(m.num_chunks()), m.checksum()}) h = mix(h, v);
  return h;
}
inline uint64_t touch(const WeightsChunk& m) {
  uint64_t h = mix(touch(m.envelope()), m.version());
  for (uint64_t v : {uint64_t(m.index()), m.offset(), touch(m.values())}) h = mix(h, v);
  return h;
}
inline uint64_t touch(const StepReport& m) {
  uint64_t h = mix(touch(m.envelope()), m.step());
  for (uint64_t v : {m.version(), bits(m.loss()), touch(m.consumed_group_ids()), m.checkpoint_step(),
                     touch_tables(m.metrics())}) {
    h = mix(h, v);
  }
  return h;
}
inline uint64_t touch(const ReplayQuery& m) {
  uint64_t h = mix(touch(m.envelope()), static_cast<uint8_t>(m.status()));
  for (uint64_t v : {touch(m.task()), m.min_version(), m.max_version(), bits(m.min_reward()), bits(m.max_reward()),
                     uint64_t(m.limit()), m.group_id()}) {
    h = mix(h, v);
  }
  return h;
}
inline uint64_t touch(const ReplayResult& m) {
  return mix(mix(touch(m.envelope()), touch_tables(m.groups())), m.total_matched());
}
inline uint64_t touch(const ReplayAck& m) {
  return mix(mix(mix(touch(m.envelope()), m.group_id()), uint64_t(m.ok())), touch(m.reason()));
}
inline uint64_t touch(const CommitResult& m) {
  return mix(mix(mix(touch(m.envelope()), m.step()), uint64_t(m.ok())), touch(m.reason()));
}
inline uint64_t touch(const EvalResult& m) {
  uint64_t h = mix(touch(m.envelope()), m.version());
  for (uint64_t v : {uint64_t(m.held()), bits(m.accuracy()), bits(m.seconds())}) h = mix(h, v);
  return h;
}
inline uint64_t touch(const Frame& m) {
  uint64_t h = mix(m.source(), m.destination());
  for (uint64_t v : {m.source_node(), m.incarnation(), m.seq(), m.request_id(), uint64_t(m.kind()), touch(m.tag()),
                     uint64_t(m.shape()), touch(m.reason())})
    h = mix(h, v);
  if (const auto* ps = m.payloads())
    for (const Payload* p : *ps) h = mix(h, touch(p->bytes()));
  return h;
}
inline uint64_t touch(const Metrics& m) {
  uint64_t h = mix(touch(m.envelope()), m.step());
  for (uint64_t v : {m.unix_ms(), touch(m.source()), touch_tables(m.values())}) h = mix(h, v);
  return h;
}

// decode<T>, then (on success) touch every field; *HASH receives the fold.
template <class T>
Status decode_and_touch(const uint8_t* data, size_t n, uint64_t* hash) {
  auto r = decode<T>(data, n);
  if (!r.is_ok()) return r.status();
  *hash = touch(*r.value());
  return Status::ok();
}

struct RootOps {
  const char* name;  // "Rollout"
  const char* stem;  // "rollout"
  const char* (*identifier)();  // "ROLL"
  Status (*decode_and_touch)(const uint8_t* data, size_t n, uint64_t* hash);
};

inline const std::vector<RootOps>& root_ops() {
#define M1_MSG_OPS_(T, stem) RootOps{#T, #stem, &MessageTraits<T>::identifier, &decode_and_touch<T>},
  static const std::vector<RootOps> kOps = {M1_MSG_ROOT_TYPES(M1_MSG_OPS_)};
#undef M1_MSG_OPS_
  return kOps;
}

inline const RootOps* ops_for_stem(std::string_view stem) {
  for (const RootOps& o : root_ops()) {
    if (stem == o.stem) return &o;
  }
  return nullptr;
}

}  // namespace m1::msg::testing
