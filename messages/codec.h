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
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "base/status.h"
#include "messages/generation_request_generated.h"
#include "messages/judge_request_generated.h"
#include "messages/judged_group_generated.h"
#include "messages/metrics_generated.h"
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
template <class T>
Result<const T*> decode(const uint8_t* data, size_t n);
template <class T>
Result<const T*> decode(const Bytes& b) {
  return decode<T>(b.data(), b.size());
}

// The semantic checks alone (for roots that passed the Verifier), per root type.
template <class T>
Status check(const T& root);

// The four-letter identifier of a buffer ("ROLL"), or "" when it is too short to hold one.
std::string identifier_of(const uint8_t* data, size_t n);

}  // namespace m1::msg
