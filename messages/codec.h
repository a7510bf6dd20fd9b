// The one codec for actor messages. Every message is a FlatBuffers root defined in messages/*.fbs
// with its own file identifier. decode<T>() checks, in this order: the size cap, the file
// identifier, flatbuffers::Verifier (structure), then the semantic rules written in the schema
// comments (lengths agree, floats finite, enums in range, ids non-zero, ranges). Nothing reads a
// field of a buffer that has not passed all four. Errors name the message type and the field.
//
// Bytes is how a message travels between actors: an immutable, shared buffer (in one process the
// same bytes are handed along without copying). Thread safety: Bytes is immutable; decode is pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "base/status.h"
#include "messages/commit_result_generated.h"
#include "messages/eval_result_generated.h"
#include "messages/frame_generated.h"
#include "messages/generation_request_generated.h"
#include "messages/judge_request_generated.h"
#include "messages/judged_group_generated.h"
#include "messages/metrics_generated.h"
#include "messages/replay_ack_generated.h"
#include "messages/replay_query_generated.h"
#include "messages/replay_result_generated.h"
#include "messages/rollout_generated.h"
#include "messages/step_report_generated.h"
#include "messages/training_batch_generated.h"
#include "messages/verdict_generated.h"
#include "messages/weights_announcement_generated.h"
#include "messages/weights_chunk_generated.h"

namespace m1::msg {

constexpr size_t kMaxMessageBytes = size_t(512) << 20;  // checked before anything else

// An immutable message buffer. Empty when default-constructed.
class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(std::vector<uint8_t> v) : buf_(std::make_shared<const std::vector<uint8_t>>(std::move(v))) {}
  // Copies a finished builder's buffer.
  static Bytes from_builder(const flatbuffers::FlatBufferBuilder& b) {
    return Bytes(std::vector<uint8_t>(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()));
  }
  const uint8_t* data() const { return buf_ ? buf_->data() : nullptr; }
  size_t size() const { return buf_ ? buf_->size() : 0; }
  bool empty() const { return size() == 0; }
  const std::vector<uint8_t>& vec() const {
    static const std::vector<uint8_t> kEmpty;
    return buf_ ? *buf_ : kEmpty;
  }

 private:
  std::shared_ptr<const std::vector<uint8_t>> buf_;
};

// Verifies DATA[0..n) as message T and returns its root, or an error naming T and the problem.
// Specialised for every root type in messages/*.fbs.
// Alignment: like the Verifier, decode checks alignment relative to DATA, so a buffer decodes the
// same at any address (it also checks that 8-byte vector elements are 8-aligned, which the 2.0.8
// Verifier omits). Reading fields of a buffer whose start is not 8-byte aligned in memory is
// undefined behaviour by the letter (harmless on x86, reported by UBSan): keep messages in Bytes
// (always aligned) or copy them into one before reading.
template <class T>
Result<const T*> decode(const uint8_t* data, size_t n);
template <class T>
Result<const T*> decode(const Bytes& b) {
  return decode<T>(b.data(), b.size());
}

// The semantic checks alone (for roots that passed the Verifier), per root type. Vector element
// alignment is checked against absolute addresses here (decode checks it relative to the buffer).
template <class T>
Status check(const T& root);

// The four-letter identifier of a buffer ("ROLL"), or "" when it is too short to hold one.
std::string identifier_of(const uint8_t* data, size_t n);

// ---- Root types ----------------------------------------------------------------------------
// Every root type with the stem of its schema file: X(Type, stem). Adding a message means adding
// it here (and its checks in codec.cc); the tests, fuzz targets and corpus follow this list.
#define M1_MSG_ROOT_TYPES(X)                  \
  X(GenerationRequest, generation_request)    \
  X(Rollout, rollout)                         \
  X(JudgeRequest, judge_request)              \
  X(Verdict, verdict)                         \
  X(JudgedGroup, judged_group)                \
  X(TrainingBatch, training_batch)            \
  X(WeightsAnnouncement, weights_announcement) \
  X(WeightsChunk, weights_chunk)              \
  X(StepReport, step_report)                  \
  X(ReplayQuery, replay_query)                \
  X(ReplayResult, replay_result)              \
  X(Metrics, metrics)                         \
  X(ReplayAck, replay_ack)                    \
  X(CommitResult, commit_result)              \
  X(EvalResult, eval_result)                  \
  X(Frame, frame)

// MessageTraits<T>: the name, schema stem and file identifier of root type T, and the generated
// FinishTBuffer. Only root types have traits, so finish_message on a sub-table does not compile.
template <class T>
struct MessageTraits;

#define M1_MSG_TRAITS_(T, stem)                                                              \
  template <>                                                                                \
  struct MessageTraits<T> {                                                                  \
    static constexpr const char* kName = #T;                                                 \
    static constexpr const char* kStem = #stem;                                              \
    static const char* identifier() { return T##Identifier(); }                              \
    static void finish(flatbuffers::FlatBufferBuilder& b, flatbuffers::Offset<T> root) {     \
      Finish##T##Buffer(b, root);                                                            \
    }                                                                                        \
  };                                                                                         \
  template <>                                                                                \
  Result<const T*> decode<T>(const uint8_t* data, size_t n);                                 \
  template <>                                                                                \
  Status check<T>(const T& root);
M1_MSG_ROOT_TYPES(M1_MSG_TRAITS_)
#undef M1_MSG_TRAITS_

// True when DATA[0..n) is long enough to hold a file identifier and carries T's. Says nothing
// about the rest of the buffer: use it to dispatch, then decode<T>.
template <class T>
bool has_identifier(const uint8_t* data, size_t n) {
  return data != nullptr && n >= 8 && flatbuffers::BufferHasIdentifier(data, MessageTraits<T>::identifier());
}
template <class T>
bool has_identifier(const Bytes& b) {
  return has_identifier<T>(b.data(), b.size());
}

// ---- Building messages ---------------------------------------------------------------------
// Finishes B with ROOT through the generated FinishTBuffer (which writes T's file identifier;
// a plain fbb.Finish() writes none and every decode would reject it) and copies the bytes out.
// B may be Clear()ed and reused afterwards. No semantic check: see finish_checked.
template <class T>
Bytes finish_message(flatbuffers::FlatBufferBuilder& b, flatbuffers::Offset<T> root) {
  MessageTraits<T>::finish(b, root);
  return Bytes::from_builder(b);
}

// finish_message, then decode<T>: returns the bytes only when they pass every check a receiver
// will apply, else the receiver's error. For senders that want to fail at the source.
template <class T>
Result<Bytes> finish_checked(flatbuffers::FlatBufferBuilder& b, flatbuffers::Offset<T> root) {
  Bytes out = finish_message(b, root);
  Status st = decode<T>(out).status();
  if (!st.is_ok()) return st;
  return out;
}

// Changes applied while copying a RolloutData (the sampler fills in what the judge said and the
// GRPO advantage; unset fields are copied as they are).
struct RolloutEdits {
  std::optional<float> reward;
  std::optional<float> format_reward;
  std::optional<float> advantage;
  std::optional<std::string> reason;
  std::optional<std::vector<uint64_t>> judge_ids;  // replaces provenance.judge_ids
};

// Deep copies of verified sub-tables into another builder, for messages that carry a table
// received in an earlier one (Rollout.data -> JudgeRequest.rollout -> JudgedGroup.rollouts). Absent optional fields stay absent.
// REQUIRES: SRC comes from a buffer that passed decode (or was built in this process).
flatbuffers::Offset<Provenance> copy_provenance(flatbuffers::FlatBufferBuilder& b, const Provenance& src,
                                                const std::vector<uint64_t>* judge_ids = nullptr);
flatbuffers::Offset<RolloutData> copy_rollout_data(flatbuffers::FlatBufferBuilder& b, const RolloutData& src,
                                                   const RolloutEdits& edits = {});
flatbuffers::Offset<Envelope> copy_envelope(flatbuffers::FlatBufferBuilder& b, const Envelope& src);

}  // namespace m1::msg
