// messages/codec: every root type decodes its valid samples; every truncation and every bit flip
// of them is handled without a crash (rejected, or accepted with all fields safely readable);
// each semantic rule of the schemas rejects its violation with the field named.
// Set M1_WRITE_CORPUS=<dir> to write the valid samples as a fuzz seed corpus (see
// messages/fuzz/fuzz.cmake); the committed corpus lives in messages/fuzz/corpus/.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "messages/codec.h"
#include "tests/messages/samples.h"
#include "tests/messages/touch.h"

using namespace m1;
using namespace m1::msg;
using namespace m1::msg::testing;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

const RootOps& ops_of(const std::string& stem) {
  const RootOps* o = ops_for_stem(stem);
  REQUIRE_MESSAGE(o != nullptr, "no root type for stem " << stem);
  return *o;
}

Status decode_as(const std::string& stem, const uint8_t* data, size_t n) {
  uint64_t hash = 0;
  return ops_of(stem).decode_and_touch(data, n, &hash);
}

Status decode_as(const std::string& stem, const Bytes& b) { return decode_as(stem, b.data(), b.size()); }

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Copies DATA[0..n) into a heap block of exactly n bytes, so ASan catches any read past the end.
std::unique_ptr<uint8_t[]> exact_copy(const uint8_t* data, size_t n) {
  std::unique_ptr<uint8_t[]> p(new uint8_t[n]);
  if (n) std::memcpy(p.get(), data, n);
  return p;
}

template <class Spec>
Bytes with(const std::function<void(Spec&)>& edit) {
  Spec s;
  edit(s);
  return build(s);
}

}  // namespace

TEST_CASE("every root type has valid samples that decode as it and only as it") {
  const auto samples = valid_samples();
  CHECK(samples.size() == 2 * root_ops().size());
  for (const RootOps& o : root_ops()) {
    size_t n = 0;
    for (const Sample& s : samples) n += s.stem == o.stem;
    CHECK_MESSAGE(n == 2, o.name);
  }
  for (const Sample& s : samples) {
    CAPTURE(s.stem);
    CAPTURE(s.variant);
    const RootOps& mine = ops_of(s.stem);
    Status st = decode_as(s.stem, s.bytes);
    CHECK_MESSAGE(st.is_ok(), st.message());
    CHECK(identifier_of(s.bytes.data(), s.bytes.size()) == mine.identifier());
    for (const RootOps& other : root_ops()) {
      if (&other == &mine) continue;
      uint64_t hash = 0;
      Status wrong = other.decode_and_touch(s.bytes.data(), s.bytes.size(), &hash);
      CHECK_FALSE(wrong.is_ok());
      CHECK_MESSAGE(contains(wrong.message(), std::string(other.name) + ": file identifier \"" + mine.identifier() +
                                                  "\" != \"" + other.identifier() + "\""),
                    wrong.message());
    }
  }
}

TEST_CASE("every truncation of every sample is rejected") {
  for (const Sample& s : valid_samples()) {
    CAPTURE(s.stem);
    CAPTURE(s.variant);
    const size_t n = s.bytes.size();
    size_t accepted = 0;
    for (size_t k = 0; k < n; ++k) {
      auto prefix = exact_copy(s.bytes.data(), k);
      Status st = decode_as(s.stem, prefix.get(), k);
      if (st.is_ok()) {
        ++accepted;
        MESSAGE("prefix of " << k << "/" << n << " bytes accepted");
      } else {
        CHECK(contains(st.message(), ops_of(s.stem).name));
      }
    }
    CHECK(accepted == 0);
  }
}

TEST_CASE("every single-bit flip of every sample is rejected or decodes to readable fields") {
  size_t total_accepted = 0, total_rejected = 0;
  for (const Sample& s : valid_samples()) {
    CAPTURE(s.stem);
    CAPTURE(s.variant);
    const size_t n = s.bytes.size();
    uint64_t original = 0;
    REQUIRE(ops_of(s.stem).decode_and_touch(s.bytes.data(), n, &original).is_ok());
    size_t accepted = 0, rejected = 0;
    for (size_t i = 0; i < n; ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        auto buf = exact_copy(s.bytes.data(), n);
        buf[i] ^= static_cast<uint8_t>(1u << bit);
        uint64_t hash = 0;
        Status st = ops_of(s.stem).decode_and_touch(buf.get(), n, &hash);  // touches every field if ok
        if (st.is_ok()) {
          ++accepted;
          // The identifier is checked byte for byte: a flip there is never accepted.
          CHECK_MESSAGE(!(i >= 4 && i < 8), "flip in the file identifier accepted at byte " << i);
        } else {
          ++rejected;
          CHECK(contains(st.message(), ops_of(s.stem).name));
        }
      }
    }
    total_accepted += accepted;
    total_rejected += rejected;
    CHECK(accepted + rejected == 8 * n);
  }
  MESSAGE("bit flips: " << total_accepted << " accepted (all fields read), " << total_rejected << " rejected");
}

TEST_CASE("framing: size cap, then identifier, then verifier") {
  const Bytes roll = build(RolloutSpec{});
  SUBCASE("oversize is rejected before anything is read") {
    // The cap is checked before the first byte is read, so the length may exceed the allocation.
    auto r = decode<Rollout>(roll.data(), kMaxMessageBytes + 1);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().message() ==
          fmt::format("Rollout: buffer of {} bytes exceeds the {}-byte message cap", kMaxMessageBytes + 1,
                      kMaxMessageBytes));
    auto v = decode<Verdict>(roll.data(), kMaxMessageBytes + 1);  // wrong identifier too: size wins
    CHECK(contains(v.status().message(), "message cap"));
  }
  SUBCASE("empty and short buffers") {
    CHECK(decode<Rollout>(nullptr, 0).status().message() ==
          "Rollout: buffer of 0 bytes is too short for a root offset and file identifier");
    CHECK(decode<Rollout>(Bytes()).status().message() ==
          "Rollout: buffer of 0 bytes is too short for a root offset and file identifier");
    auto seven = exact_copy(roll.data(), 7);
    CHECK(contains(decode<Rollout>(seven.get(), 7).status().message(), "7 bytes is too short"));
    CHECK(identifier_of(seven.get(), 7).empty());
    CHECK(identifier_of(roll.data(), roll.size()) == "ROLL");
  }
  SUBCASE("plain Finish writes no identifier and is rejected") {
    flatbuffers::FlatBufferBuilder b;
    auto env = CreateEnvelope(b, 1, 1, 1);
    auto data = build(b, RolloutDataSpec{});
    b.Finish(CreateRollout(b, env, 5, data));  // not FinishRolloutBuffer: no identifier
    auto r = decode<Rollout>(b.GetBufferPointer(), b.GetSize());
    REQUIRE_FALSE(r.is_ok());
    CHECK(contains(r.status().message(), "Rollout: file identifier"));
    CHECK(contains(r.status().message(), "!= \"ROLL\""));
  }
  SUBCASE("a non-printable identifier is escaped") {
    std::vector<uint8_t> v = roll.vec();
    v[4] = 0x01;
    v[7] = '\\';
    CHECK(contains(decode<Rollout>(v.data(), v.size()).status().message(), "\"\\x01OL\\x5c\" != \"ROLL\""));
  }
  SUBCASE("the verifier rejects a corrupt root offset") {
    std::vector<uint8_t> v = roll.vec();
    v[0] = 0xf0;
    v[1] = 0xff;
    auto r = decode<Rollout>(v.data(), v.size());
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().message() ==
          fmt::format("Rollout: malformed FlatBuffer ({} bytes) rejected by the verifier", v.size()));
  }
  SUBCASE("a copy at another address decodes the same (alignment is relative to the buffer start)") {
    std::vector<uint8_t> v(roll.size() + 16);
    std::memcpy(v.data() + 8, roll.data(), roll.size());
    CHECK(decode<Rollout>(v.data() + 8, roll.size()).is_ok());
#if !defined(__SANITIZE_ADDRESS__)  // M1_SANITIZE: reading a misaligned uint64 is UB, reported by UBSan
    std::memcpy(v.data() + 1, roll.data(), roll.size());
    CHECK(decode<Rollout>(v.data() + 1, roll.size()).is_ok());
    // check<T> alone aligns against absolute addresses: versions/judge_ids are now misaligned.
    CHECK(contains(check<Rollout>(*flatbuffers::GetRoot<Rollout>(v.data() + 1)).message(), "8-byte aligned"));
#endif
  }
  SUBCASE("has_identifier dispatches without decoding") {
    CHECK(has_identifier<Rollout>(roll));
    CHECK_FALSE(has_identifier<Verdict>(roll));
    CHECK_FALSE(has_identifier<Rollout>(roll.data(), 7));
    CHECK_FALSE(has_identifier<Rollout>(Bytes()));
  }
}

namespace {

struct Violation {
  const char* stem;
  Bytes bytes;
  std::string expect;  // a substring of the error: "<Root>.<path>: <problem>"
};

std::vector<Violation> violations() {
  std::vector<Violation> v;
  auto roll = [&](std::function<void(RolloutSpec&)> f, std::string e) {
    v.push_back({"rollout", with<RolloutSpec>(f), std::move(e)});
  };
  // Rollout and its RolloutData / Provenance / Envelope.
  roll([](RolloutSpec& s) {
         s.data.tokens = std::vector<int32_t>{5, 6, 7, 8};
         s.data.behavior_logprobs = std::vector<float>{-1, -1, -1};
         s.data.versions = std::vector<uint64_t>{1, 1, 1, 1};
       },
       "Rollout.data.behavior_logprobs: length 3 != tokens length 4");
  roll([](RolloutSpec& s) { s.data.behavior_logprobs.reset(); },
       "Rollout.data.behavior_logprobs: length 0 != tokens length 5");
  roll([](RolloutSpec& s) { s.data.versions = std::vector<uint64_t>{1, 2}; },
       "Rollout.data.versions: length 2 != tokens length 5");
  roll([](RolloutSpec& s) { s.data.versions = std::vector<uint64_t>{11, 12, 11, 12, 12}; },
       "Rollout.data.versions[2]: 11 < previous version 12 (must be non-decreasing)");
  roll([](RolloutSpec& s) { s.data.reward = kNaN; }, "Rollout.data.reward: must be finite, got nan");
  roll([](RolloutSpec& s) { s.data.advantage = -kInf; }, "Rollout.data.advantage: must be finite, got -inf");
  roll([](RolloutSpec& s) { s.data.behavior_logprobs = std::vector<float>{-0.1f, 0.5f, -1, -1, -1}; },
       "Rollout.data.behavior_logprobs[1]: log-prob 0.5 > 0");
  roll([](RolloutSpec& s) { s.data.behavior_logprobs = std::vector<float>{kNaN, -1, -1, -1, -1}; },
       "Rollout.data.behavior_logprobs[0]: must be finite, got nan");
  roll([](RolloutSpec& s) { s.data.behavior_logprobs = std::vector<float>{-1, -1, -1, -kInf, -1}; },
       "Rollout.data.behavior_logprobs[3]: must be finite, got -inf");
  roll([](RolloutSpec& s) { s.data.format_reward = 0.5f; }, "Rollout.data.format_reward: must be 0 or 1, got 0.5");
  roll([](RolloutSpec& s) { s.data.finish = 4; }, "Rollout.data.finish: 4 is not a FinishReason");
  roll([](RolloutSpec& s) { s.data.finish = -1; }, "Rollout.data.finish: -1 is not a FinishReason");
  roll([](RolloutSpec& s) { s.data.finish = -128; }, "Rollout.data.finish: -128 is not a FinishReason");
  roll([](RolloutSpec& s) { s.data.rollout_id = 0; }, "Rollout.data.rollout_id: must be non-zero");
  roll([](RolloutSpec& s) { s.data.group_id = 0; }, "Rollout.data.group_id: must be non-zero");
  roll([](RolloutSpec& s) { s.request_id = 0; }, "Rollout.request_id: must be non-zero");
  roll([](RolloutSpec& s) { s.has_data = false; }, "Rollout.data: required but missing");
  roll([](RolloutSpec& s) { s.envelope.present = false; }, "Rollout.envelope: required but missing");
  roll([](RolloutSpec& s) { s.envelope.sender = 0; }, "Rollout.envelope.sender: must be non-zero");
  roll([](RolloutSpec& s) { s.envelope.incarnation = 0; }, "Rollout.envelope.incarnation: must be non-zero");
  roll([](RolloutSpec& s) { s.envelope.seq = 0; }, "Rollout.envelope.seq: must be >= 1");
  roll([](RolloutSpec& s) { s.data.has_provenance = false; }, "Rollout.data.provenance: required but missing");
  roll([](RolloutSpec& s) { s.data.provenance.task = ""; }, "Rollout.data.provenance.task: must be non-empty");
  roll([](RolloutSpec& s) { s.data.provenance.task.reset(); },
       "Rollout.data.provenance.task: required but missing");
  roll([](RolloutSpec& s) { s.data.provenance.task = std::string(65, 'a'); },
       "Rollout.data.provenance.task: length 65 exceeds 64 bytes");
  roll([](RolloutSpec& s) { s.data.provenance.dataset = std::string(4097, 'd'); },
       "Rollout.data.provenance.dataset: length 4097 exceeds 4096 bytes");
  roll([](RolloutSpec& s) { s.data.provenance.prompt_id = 0; }, "Rollout.data.provenance.prompt_id: must be non-zero");
  roll([](RolloutSpec& s) { s.data.provenance.generator_id = 0; },
       "Rollout.data.provenance.generator_id: must be non-zero");
  roll([](RolloutSpec& s) { s.data.provenance.judge_ids = std::vector<uint64_t>{7, 0}; },
       "Rollout.data.provenance.judge_ids[1]: must be non-zero");
  roll([](RolloutSpec& s) { s.data.reason = std::string(1025, 'r'); },
       "Rollout.data.reason: length 1025 exceeds 1024 bytes");
  roll([](RolloutSpec& s) { s.data.tokens = std::vector<int32_t>{5, -3, 7, 8, 9}; },
       "Rollout.data.tokens[1]: token id -3 < 0");
  roll([](RolloutSpec& s) { s.data.prompt_tokens = std::vector<int32_t>{}; },
       "Rollout.data.prompt_tokens: must be non-empty");
  roll([](RolloutSpec& s) { s.data.prompt_tokens.reset(); }, "Rollout.data.prompt_tokens: must be non-empty");
  roll([](RolloutSpec& s) { s.data.prompt_tokens = std::vector<int32_t>{1, 2, INT32_MIN}; },
       "Rollout.data.prompt_tokens[2]: token id -2147483648 < 0");

  auto greq = [&](std::function<void(GenerationRequestSpec&)> f, std::string e) {
    v.push_back({"generation_request", with<GenerationRequestSpec>(f), std::move(e)});
  };
  greq([](GenerationRequestSpec& s) { s.index = 4; }, "GenerationRequest.index: 4 >= group_size 4");
  greq([](GenerationRequestSpec& s) { s.group_size = 0; }, "GenerationRequest.group_size: 0 not in [1, 4096]");
  greq([](GenerationRequestSpec& s) { s.group_size = 4097; }, "GenerationRequest.group_size: 4097 not in [1, 4096]");
  greq([](GenerationRequestSpec& s) { s.max_new = 0; }, "GenerationRequest.max_new: 0 not in [1, 1048576]");
  greq([](GenerationRequestSpec& s) { s.max_new = 1048577; },
       "GenerationRequest.max_new: 1048577 not in [1, 1048576]");
  greq([](GenerationRequestSpec& s) { s.temperature = kNaN; },
       "GenerationRequest.temperature: must be finite, got nan");
  greq([](GenerationRequestSpec& s) { s.temperature = -0.5f; }, "GenerationRequest.temperature: -0.5 < 0");
  greq([](GenerationRequestSpec& s) { s.top_p = 0.0f; }, "GenerationRequest.top_p: 0 not in (0, 1]");
  greq([](GenerationRequestSpec& s) { s.top_p = 1.5f; }, "GenerationRequest.top_p: 1.5 not in (0, 1]");
  greq([](GenerationRequestSpec& s) { s.top_p = kNaN; }, "GenerationRequest.top_p: nan not in (0, 1]");
  greq([](GenerationRequestSpec& s) { s.has_provenance = false; },
       "GenerationRequest.provenance: required but missing");
  greq([](GenerationRequestSpec& s) { s.provenance.task = ""; },
       "GenerationRequest.provenance.task: must be non-empty");
  greq([](GenerationRequestSpec& s) { s.prompt_tokens.reset(); },
       "GenerationRequest.prompt_tokens: must be non-empty");
  greq([](GenerationRequestSpec& s) { s.prompt_tokens = std::vector<int32_t>{3, -1}; },
       "GenerationRequest.prompt_tokens[1]: token id -1 < 0");
  greq([](GenerationRequestSpec& s) { s.request_id = 0; }, "GenerationRequest.request_id: must be non-zero");
  greq([](GenerationRequestSpec& s) { s.group_id = 0; }, "GenerationRequest.group_id: must be non-zero");
  greq([](GenerationRequestSpec& s) { s.envelope.seq = 0; }, "GenerationRequest.envelope.seq: must be >= 1");

  auto jreq = [&](std::function<void(JudgeRequestSpec&)> f, std::string e) {
    v.push_back({"judge_request", with<JudgeRequestSpec>(f), std::move(e)});
  };
  jreq([](JudgeRequestSpec& s) { s.attempt = 100; }, "JudgeRequest.attempt: 100 >= 100");
  jreq([](JudgeRequestSpec& s) { s.reference = std::string(65537, 'x'); },
       "JudgeRequest.reference: length 65537 exceeds 65536 bytes");
  jreq([](JudgeRequestSpec& s) { s.has_rollout = false; }, "JudgeRequest.rollout: required but missing");
  jreq([](JudgeRequestSpec& s) { s.rollout.versions = std::vector<uint64_t>{1}; },
       "JudgeRequest.rollout.versions: length 1 != tokens length 5");
  jreq([](JudgeRequestSpec& s) { s.envelope.present = false; }, "JudgeRequest.envelope: required but missing");

  auto verd = [&](std::function<void(VerdictSpec&)> f, std::string e) {
    v.push_back({"verdict", with<VerdictSpec>(f), std::move(e)});
  };
  verd([](VerdictSpec& s) { s.reward = 101.0f; }, "Verdict.reward: 101 not in [-100, 100]");
  verd([](VerdictSpec& s) { s.reward = -100.5f; }, "Verdict.reward: -100.5 not in [-100, 100]");
  verd([](VerdictSpec& s) { s.reward = kNaN; }, "Verdict.reward: must be finite, got nan");
  verd([](VerdictSpec& s) { s.format_reward = 2.0f; }, "Verdict.format_reward: 2 not in [0, 1]");
  verd([](VerdictSpec& s) { s.format_reward = kNaN; }, "Verdict.format_reward: nan not in [0, 1]");
  verd([](VerdictSpec& s) { s.judge_id = 0; }, "Verdict.judge_id: must be non-zero");
  verd([](VerdictSpec& s) { s.rollout_id = 0; }, "Verdict.rollout_id: must be non-zero");
  verd([](VerdictSpec& s) { s.reason = std::string(1025, 'r'); }, "Verdict.reason: length 1025 exceeds 1024 bytes");

  auto grup = [&](std::function<void(JudgedGroupSpec&)> f, std::string e) {
    v.push_back({"judged_group", with<JudgedGroupSpec>(f), std::move(e)});
  };
  grup([](JudgedGroupSpec& s) { s.rollouts = std::vector<RolloutDataSpec>{}; },
       "JudgedGroup.rollouts: must hold at least one rollout");
  grup([](JudgedGroupSpec& s) { s.rollouts.reset(); }, "JudgedGroup.rollouts: must hold at least one rollout");
  grup([](JudgedGroupSpec& s) { (*s.rollouts)[2].group_id = 99; },
       "JudgedGroup.rollouts[2].group_id: 99 != the group's group_id 4242");
  grup([](JudgedGroupSpec& s) { (*s.rollouts)[3].index = 4; }, "JudgedGroup.rollouts[3].index: 4 >= group size 4");
  grup([](JudgedGroupSpec& s) { (*s.rollouts)[1].versions = std::vector<uint64_t>{}; },
       "JudgedGroup.rollouts[1].versions: length 0 != tokens length 5");
  grup([](JudgedGroupSpec& s) { (*s.rollouts)[0].reward = kInf; },
       "JudgedGroup.rollouts[0].reward: must be finite, got inf");
  grup([](JudgedGroupSpec& s) { s.reward_std = -0.25f; }, "JudgedGroup.reward_std: -0.25 < 0");
  grup([](JudgedGroupSpec& s) { s.reward_std = kNaN; }, "JudgedGroup.reward_std: must be finite, got nan");
  grup([](JudgedGroupSpec& s) { s.reward_mean = kNaN; }, "JudgedGroup.reward_mean: must be finite, got nan");
  grup([](JudgedGroupSpec& s) { s.task = ""; }, "JudgedGroup.task: must be non-empty");
  grup([](JudgedGroupSpec& s) { s.task = std::string(65, 't'); }, "JudgedGroup.task: length 65 exceeds 64 bytes");
  grup([](JudgedGroupSpec& s) { s.prompt = std::string((1 << 20) + 1, 'p'); },
       "JudgedGroup.prompt: length 1048577 exceeds 1048576 bytes");
  grup([](JudgedGroupSpec& s) { s.reference = std::string(65537, 'x'); },
       "JudgedGroup.reference: length 65537 exceeds 65536 bytes");
  grup([](JudgedGroupSpec& s) { s.prompt_id = 0; }, "JudgedGroup.prompt_id: must be non-zero");
  grup([](JudgedGroupSpec& s) { s.group_id = 0; }, "JudgedGroup.group_id: must be non-zero");

  auto tbat = [&](std::function<void(TrainingBatchSpec&)> f, std::string e) {
    v.push_back({"training_batch", with<TrainingBatchSpec>(f), std::move(e)});
  };
  tbat([](TrainingBatchSpec& s) { s.group_ids = std::vector<uint64_t>{4242}; },
       "TrainingBatch.group_ids: length 1 != groups length 2");
  tbat([](TrainingBatchSpec& s) { s.group_ids.reset(); }, "TrainingBatch.group_ids: length 0 != groups length 2");
  tbat([](TrainingBatchSpec& s) { s.group_ids = std::vector<uint64_t>{4242, 0}; },
       "TrainingBatch.group_ids[1]: must be non-zero");
  tbat([](TrainingBatchSpec& s) { s.group_ids = std::vector<uint64_t>{4243, 4242}; },
       "TrainingBatch.group_ids[0]: 4243 != groups[0].group_id 4242");
  tbat([](TrainingBatchSpec& s) { s.group_ids = std::vector<uint64_t>{4242, 4242}; },
       "TrainingBatch.group_ids[1]: 4242 appears twice");
  tbat([](TrainingBatchSpec& s) { (*s.groups)[1].rollouts = std::vector<RolloutDataSpec>{}; },
       "TrainingBatch.groups[1].bytes: JudgedGroup.rollouts: must hold at least one rollout");
  tbat([](TrainingBatchSpec& s) { (*s.groups)[0].task.reset(); },
       "TrainingBatch.groups[0].bytes: JudgedGroup.task: required but missing");
  tbat([](TrainingBatchSpec& s) { (*s.groups)[0].envelope.present = false; },
       "TrainingBatch.groups[0].bytes: JudgedGroup.envelope: required but missing");
  tbat([](TrainingBatchSpec& s) { (*(*s.groups)[1].rollouts)[0].reward = kNaN; },
       "TrainingBatch.groups[1].bytes: JudgedGroup.rollouts[0].reward: must be finite, got nan");
  tbat([](TrainingBatchSpec& s) { (*(*s.groups)[1].rollouts)[2].group_id = 4242; },
       "TrainingBatch.groups[1].bytes: JudgedGroup.rollouts[2].group_id: 4242 != the group's group_id 4243");
  tbat([](TrainingBatchSpec& s) { s.misalign = true; }, "TrainingBatch.groups[0].bytes: not 8-byte aligned");
  tbat([](TrainingBatchSpec& s) { s.batch_id = 0; }, "TrainingBatch.batch_id: must be non-zero");

  auto wann = [&](std::function<void(WeightsAnnouncementSpec&)> f, std::string e) {
    v.push_back({"weights_announcement", with<WeightsAnnouncementSpec>(f), std::move(e)});
  };
  wann([](WeightsAnnouncementSpec& s) { s.version = 0; }, "WeightsAnnouncement.version: must be >= 1");
  wann([](WeightsAnnouncementSpec& s) { s.num_params = 0; }, "WeightsAnnouncement.num_params: must be >= 1");
  wann([](WeightsAnnouncementSpec& s) { s.num_chunks = 0; }, "WeightsAnnouncement.num_chunks: must be >= 1");
  wann([](WeightsAnnouncementSpec& s) { s.envelope.present = false; },
       "WeightsAnnouncement.envelope: required but missing");

  auto wchk = [&](std::function<void(WeightsChunkSpec&)> f, std::string e) {
    v.push_back({"weights_chunk", with<WeightsChunkSpec>(f), std::move(e)});
  };
  wchk([](WeightsChunkSpec& s) { s.values = std::vector<float>{}; }, "WeightsChunk.values: must be non-empty");
  wchk([](WeightsChunkSpec& s) { s.values.reset(); }, "WeightsChunk.values: must be non-empty");
  wchk([](WeightsChunkSpec& s) { (*s.values)[5] = kNaN; }, "WeightsChunk.values[5]: must be finite, got nan");
  wchk([](WeightsChunkSpec& s) { (*s.values)[47] = kInf; }, "WeightsChunk.values[47]: must be finite, got inf");
  wchk(  // a long vector with two bad values far apart: the first is named
      [](WeightsChunkSpec& s) {
        s.values = std::vector<float>(9000, 0.5f);
        (*s.values)[8191] = -kInf;
        (*s.values)[8500] = kNaN;
      },
      "WeightsChunk.values[8191]: must be finite, got -inf");
  wchk([](WeightsChunkSpec& s) { s.version = 0; }, "WeightsChunk.version: must be >= 1");
  wchk([](WeightsChunkSpec& s) { s.offset = UINT64_MAX - 10; }, "WeightsChunk.offset: 18446744073709551605 + 48");

  auto step = [&](std::function<void(StepReportSpec&)> f, std::string e) {
    v.push_back({"step_report", with<StepReportSpec>(f), std::move(e)});
  };
  step([](StepReportSpec& s) { s.step = 0; }, "StepReport.step: must be >= 1 when groups were consumed");
  step([](StepReportSpec& s) { s.version = 0; }, "StepReport.version: must be >= 1");
  step([](StepReportSpec& s) { s.loss = kInf; }, "StepReport.loss: must be finite, got inf");
  step([](StepReportSpec& s) { s.consumed_group_ids = std::vector<uint64_t>{4242, 0}; },
       "StepReport.consumed_group_ids[1]: must be non-zero");
  step([](StepReportSpec& s) { (*s.metrics)[1].name = ""; }, "StepReport.metrics[1].name: must be non-empty");
  step([](StepReportSpec& s) { (*s.metrics)[2].name.reset(); },
       "StepReport.metrics[2].name: required but missing");
  step([](StepReportSpec& s) { (*s.metrics)[0].name = std::string(129, 'm'); },
       "StepReport.metrics[0].name: length 129 exceeds 128 bytes");
  step([](StepReportSpec& s) { (*s.metrics)[0].value = std::nan(""); },
       "StepReport.metrics[0].value: must be finite, got nan");

  auto rqry = [&](std::function<void(ReplayQuerySpec&)> f, std::string e) {
    v.push_back({"replay_query", with<ReplayQuerySpec>(f), std::move(e)});
  };
  rqry([](ReplayQuerySpec& s) { s.status = 4; }, "ReplayQuery.status: 4 is neither -1 nor a GroupStatus");
  rqry([](ReplayQuerySpec& s) { s.status = -2; }, "ReplayQuery.status: -2 is neither -1 nor a GroupStatus");
  rqry([](ReplayQuerySpec& s) { s.max_version = 4; }, "ReplayQuery.max_version: 4 < min_version 5");
  rqry([](ReplayQuerySpec& s) { s.limit = 0; }, "ReplayQuery.limit: 0 not in [1, 100000]");
  rqry([](ReplayQuerySpec& s) { s.limit = 100001; }, "ReplayQuery.limit: 100001 not in [1, 100000]");
  rqry([](ReplayQuerySpec& s) { s.min_reward = kNaN; }, "ReplayQuery.min_reward: must be finite, got nan");
  rqry([](ReplayQuerySpec& s) { s.max_reward = kInf; }, "ReplayQuery.max_reward: must be finite, got inf");
  rqry([](ReplayQuerySpec& s) { s.max_reward = -2.0f; }, "ReplayQuery.max_reward: -2 < min_reward -1");
  rqry([](ReplayQuerySpec& s) { s.task = std::string(65, 't'); }, "ReplayQuery.task: length 65 exceeds 64 bytes");

  auto rres = [&](std::function<void(ReplayResultSpec&)> f, std::string e) {
    v.push_back({"replay_result", with<ReplayResultSpec>(f), std::move(e)});
  };
  rres([](ReplayResultSpec& s) { s.total_matched = 1; }, "ReplayResult.total_matched: 1 < groups length 2");
  rres([](ReplayResultSpec& s) { (*s.groups)[0].status = 9; }, "ReplayResult.groups[0].status: 9 is not a GroupStatus");
  rres([](ReplayResultSpec& s) { (*s.groups)[0].status = -1; },
       "ReplayResult.groups[0].status: -1 is not a GroupStatus");
  // std::string(1, 'x'), not "x": GCC 12 gives a false -Wrestrict on the literal (PR 105329).
  rres([](ReplayResultSpec& s) { (*s.groups)[0].drop_reason = std::string(1, 'x'); },
       "ReplayResult.groups[0].drop_reason: must be empty for status Pending");
  rres([](ReplayResultSpec& s) { (*s.groups)[1].drop_reason = std::string(257, 'd'); },
       "ReplayResult.groups[1].drop_reason: length 257 exceeds 256 bytes");
  rres([](ReplayResultSpec& s) { (*s.groups)[1].max_version = 2; },
       "ReplayResult.groups[1].max_version: 2 < min_version 3");
  rres([](ReplayResultSpec& s) { (*s.groups)[0].size = 0; }, "ReplayResult.groups[0].size: must be >= 1");
  rres([](ReplayResultSpec& s) { (*s.groups)[1].group_id = 0; }, "ReplayResult.groups[1].group_id: must be non-zero");
  rres([](ReplayResultSpec& s) { (*s.groups)[0].task = ""; }, "ReplayResult.groups[0].task: must be non-empty");
  rres([](ReplayResultSpec& s) { (*s.groups)[0].reward_mean = kNaN; },
       "ReplayResult.groups[0].reward_mean: must be finite, got nan");

  auto metr = [&](std::function<void(MetricsSpec&)> f, std::string e) {
    v.push_back({"metrics", with<MetricsSpec>(f), std::move(e)});
  };
  metr([](MetricsSpec& s) { s.source = ""; }, "Metrics.source: must be non-empty");
  metr([](MetricsSpec& s) { s.source.reset(); }, "Metrics.source: required but missing");
  metr([](MetricsSpec& s) { s.source = std::string(65, 's'); }, "Metrics.source: length 65 exceeds 64 bytes");
  metr([](MetricsSpec& s) { (*s.values)[2].value = -std::numeric_limits<double>::infinity(); },
       "Metrics.values[2].value: must be finite, got -inf");
  metr([](MetricsSpec& s) { s.envelope.sender = 0; }, "Metrics.envelope.sender: must be non-zero");
  metr([](MetricsSpec& s) { (*s.values)[3].name = "tokens_per_s"; },
       "Metrics.values[3].name: \"tokens_per_s\" appears twice");
  metr([](MetricsSpec& s) { (*s.values)[1].value = 2.5; },
       "Metrics.values[1].value: 2.5 is not a whole number in [-2^53, 2^53] (integer is set)");
  metr([](MetricsSpec& s) { (*s.values)[1].value = 1e17; }, "Metrics.values[1].value: 1e+17 is not a whole number");

  auto rack = [&](std::function<void(ReplayAckSpec&)> f, std::string e) {
    v.push_back({"replay_ack", with<ReplayAckSpec>(f), std::move(e)});
  };
  rack([](ReplayAckSpec& s) { s.group_id = 0; }, "ReplayAck.group_id: must be non-zero");
  // (a std::string, not a literal: assigning a literal to the optional trips a GCC 12 -Wrestrict false positive)
  rack([](ReplayAckSpec& s) { s.reason = std::string("x"); }, "ReplayAck.reason: must be empty when ok");
  rack([](ReplayAckSpec& s) { s.ok = false; }, "ReplayAck.reason: must be non-empty when not ok");
  rack([](ReplayAckSpec& s) { s.ok = false, s.reason = std::string(1025, 'r'); },
       "ReplayAck.reason: length 1025 exceeds 1024 bytes");
  rack([](ReplayAckSpec& s) { s.envelope.present = false; }, "ReplayAck.envelope: required but missing");

  auto cres = [&](std::function<void(CommitResultSpec&)> f, std::string e) {
    v.push_back({"commit_result", with<CommitResultSpec>(f), std::move(e)});
  };
  cres([](CommitResultSpec& s) { s.step = 0; }, "CommitResult.step: must be >= 1 when ok");
  cres([](CommitResultSpec& s) { s.reason = std::string("x"); }, "CommitResult.reason: must be empty when ok");
  cres([](CommitResultSpec& s) { s.ok = false; }, "CommitResult.reason: must be non-empty when not ok");
  cres([](CommitResultSpec& s) { s.envelope.seq = 0; }, "CommitResult.envelope.seq: must be >= 1");

  auto eres = [&](std::function<void(EvalResultSpec&)> f, std::string e) {
    v.push_back({"eval_result", with<EvalResultSpec>(f), std::move(e)});
  };
  eres([](EvalResultSpec& s) { s.accuracy = kNaN; }, "EvalResult.accuracy: must be finite, got nan");
  eres([](EvalResultSpec& s) { s.accuracy = 1.5; }, "EvalResult.accuracy: 1.5 not in [0, 1]");
  eres([](EvalResultSpec& s) { s.accuracy = -0.25; }, "EvalResult.accuracy: -0.25 not in [0, 1]");
  eres([](EvalResultSpec& s) { s.seconds = -1; }, "EvalResult.seconds: -1 < 0");
  eres([](EvalResultSpec& s) { s.seconds = kInf; }, "EvalResult.seconds: must be finite, got inf");
  eres([](EvalResultSpec& s) { s.held = false; }, "must be 0 when the version is not held");
  eres([](EvalResultSpec& s) { s.envelope.incarnation = 0; }, "EvalResult.envelope.incarnation: must be non-zero");

  auto fr = [&](std::function<void(FrameSpec&)> f, std::string e) {
    v.push_back({"frame", with<FrameSpec>(f), std::move(e)});
  };
  fr([](FrameSpec& s) { s.source = 0; }, "Frame.source: must be non-zero");
  fr([](FrameSpec& s) { s.destination = 0; }, "Frame.destination: must be non-zero");
  fr([](FrameSpec& s) { s.source_node = 0; }, "Frame.source_node: must be non-zero");
  fr([](FrameSpec& s) { s.incarnation = 0; }, "Frame.incarnation: must be non-zero");
  fr([](FrameSpec& s) { s.seq = 0; }, "Frame.seq: must be >= 1");
  fr([](FrameSpec& s) { s.kind = 4; }, "Frame.kind: 4 is not a FrameKind");
  fr([](FrameSpec& s) { s.request_id = 0; }, "Frame.request_id: must be non-zero");
  fr([](FrameSpec& s) { s.kind = 0; }, "Frame.request_id: must be 0 for a Oneway frame");
  fr([](FrameSpec& s) { s.tag.reset(); }, "Frame.tag: required but missing");
  fr([](FrameSpec& s) { s.tag = "verylongtag"; }, "Frame.tag: length 11 exceeds 10 bytes");
  fr([](FrameSpec& s) { s.tag = "Gen"; }, "Frame.tag: character 0x47 is not one of [a-z0-9_]");
  fr([](FrameSpec& s) { s.shape = 3; }, "Frame.shape: 3 is not a PayloadShape");
  fr([](FrameSpec& s) { s.shape = 0; }, "Frame.payloads: 2 given for shape Empty");
  fr([](FrameSpec& s) { s.shape = 1; }, "Frame.payloads: 2 given for shape One");
  fr([](FrameSpec& s) { s.reason = "why"; }, "Frame.reason: must be empty unless the frame is a Failure");
  fr([](FrameSpec& s) { s.kind = 3; }, "Frame.shape: must be Empty for a Failure frame");
  fr([](FrameSpec& s) {
    s.kind = 3;
    s.shape = 0;
    s.payloads.reset();
  }, "Frame.reason: required but missing");
  return v;
}

}  // namespace

TEST_CASE("each semantic rule rejects its violation and names the field") {
  const auto cases = violations();
  for (const Violation& c : cases) {
    CAPTURE(c.expect);
    Status st = decode_as(c.stem, c.bytes);
    REQUIRE_FALSE(st.is_ok());
    CHECK_MESSAGE(contains(st.message(), c.expect), st.message());
  }
  // Every root type has at least one semantic violation in the table.
  for (const RootOps& o : root_ops()) {
    bool any = false;
    for (const Violation& c : cases) any |= std::string(c.stem) == o.stem;
    CHECK_MESSAGE(any, o.name);
  }
}

TEST_CASE("boundary values of the stated ranges are accepted") {
  CHECK(decode<Verdict>(with<VerdictSpec>([](VerdictSpec& s) { s.reward = -100.0f; })).is_ok());
  CHECK(decode<Verdict>(with<VerdictSpec>([](VerdictSpec& s) { s.reward = 100.0f; })).is_ok());
  CHECK(decode<Verdict>(with<VerdictSpec>([](VerdictSpec& s) { s.format_reward = 0.25f; })).is_ok());
  CHECK(decode<GenerationRequest>(with<GenerationRequestSpec>([](GenerationRequestSpec& s) {
          s.group_size = 4096;
          s.index = 4095;
          s.max_new = 1048576;
          s.top_p = 1.0f;
          s.temperature = 0.0f;
        })).is_ok());
  CHECK(decode<JudgeRequest>(with<JudgeRequestSpec>([](JudgeRequestSpec& s) {
          s.attempt = 99;
          s.reference = std::string(65536, 'x');
        })).is_ok());
  CHECK(decode<ReplayQuery>(with<ReplayQuerySpec>([](ReplayQuerySpec& s) {
          s.status = static_cast<int8_t>(GroupStatus::Quarantined);
          s.limit = 100000;
          s.min_version = s.max_version = 7;
          s.min_reward = s.max_reward = 0.5f;
        })).is_ok());
  CHECK(decode<ReplayResult>(with<ReplayResultSpec>([](ReplayResultSpec& s) {
          (*s.groups)[1].status = static_cast<int8_t>(GroupStatus::Quarantined);
          (*s.groups)[1].drop_reason = std::string(256, 'q');
        })).is_ok());
  CHECK(decode<Rollout>(with<RolloutSpec>([](RolloutSpec& s) {
          s.data.finish = static_cast<int8_t>(FinishReason::Aborted);
          s.data.behavior_logprobs = std::vector<float>{0.0f, -0.0f, -1e30f, -1, -1};
          s.data.versions = std::vector<uint64_t>{3, 3, 3, 3, 3};
          s.data.provenance.task = std::string(64, 't');
          s.data.reason = std::string(1024, 'r');
          s.data.provenance.dataset = std::string(4096, 'd');
        })).is_ok());
  CHECK(decode<WeightsChunk>(with<WeightsChunkSpec>([](WeightsChunkSpec& s) { s.offset = UINT64_MAX - 48; })).is_ok());
}

TEST_CASE("check<T> alone agrees with decode on a verified root") {
  const Bytes b = build(RolloutSpec{});
  const Rollout* r = flatbuffers::GetRoot<Rollout>(b.data());
  CHECK(check<Rollout>(*r).is_ok());
  const Bytes bad = with<RolloutSpec>([](RolloutSpec& s) { s.data.reward = kNaN; });
  CHECK(check<Rollout>(*flatbuffers::GetRoot<Rollout>(bad.data())).message() ==
        "Rollout.data.reward: must be finite, got nan");
}

TEST_CASE("finish_checked returns the receiver's verdict at the source") {
  flatbuffers::FlatBufferBuilder b;
  auto env = CreateEnvelope(b, 9, 1, 1);
  auto ok = finish_checked(b, CreateVerdict(b, env, 1, 2, true, 0.5f, 1.0f));
  REQUIRE(ok.is_ok());
  CHECK(decode<Verdict>(ok.value()).value()->reward() == 0.5f);

  b.Clear();
  env = CreateEnvelope(b, 9, 1, 1);
  auto bad = finish_checked(b, CreateVerdict(b, env, 1, 0, true, 0.5f, 1.0f));
  REQUIRE_FALSE(bad.is_ok());
  CHECK(bad.status().message() == "Verdict.judge_id: must be non-zero");
}

TEST_CASE("copy_rollout_data carries a rollout into another message, with edits") {
  const Bytes group = build(JudgedGroupSpec{});
  auto g = decode<JudgedGroup>(group);
  REQUIRE(g.is_ok());
  const RolloutData* src = g.value()->rollouts()->Get(1);

  flatbuffers::FlatBufferBuilder b;
  auto env = copy_envelope(b, *g.value()->envelope());
  auto same = copy_rollout_data(b, *src);
  Bytes as_is = finish_message(b, CreateRollout(b, env, 77, same));
  auto r1 = decode<Rollout>(as_is);
  REQUIRE(r1.is_ok());
  CHECK(touch(r1.value()->data()) == touch(src));  // every field equal

  b.Clear();
  env = copy_envelope(b, *g.value()->envelope());
  RolloutEdits edits;
  edits.reward = 1.0f;
  edits.advantage = 0.25f;
  edits.reason = "rejudged";
  edits.judge_ids = std::vector<uint64_t>{11};
  auto edited = copy_rollout_data(b, *src, edits);
  auto r2 = finish_checked(b, CreateJudgeRequest(b, env, edited, b.CreateString("42"), 1));
  REQUIRE_MESSAGE(r2.is_ok(), r2.status().message());
  const RolloutData* out = decode<JudgeRequest>(r2.value()).value()->rollout();
  CHECK(out->reward() == 1.0f);
  CHECK(out->advantage() == 0.25f);
  CHECK(out->format_reward() == src->format_reward());
  CHECK(out->reason()->str() == "rejudged");
  REQUIRE(out->provenance()->judge_ids()->size() == 1);
  CHECK(out->provenance()->judge_ids()->Get(0) == 11);
  CHECK(touch(out->tokens()) == touch(src->tokens()));
  CHECK(touch(out->behavior_logprobs()) == touch(src->behavior_logprobs()));
  CHECK(touch(out->versions()) == touch(src->versions()));
  CHECK(out->provenance()->seed() == src->provenance()->seed());

  // Absent optional fields stay absent.
  const Bytes minimal = build(RolloutSpec{minimal_envelope(), 1, true, minimal_rollout_data()});
  const RolloutData* msrc = decode<Rollout>(minimal).value()->data();
  b.Clear();
  env = CreateEnvelope(b, 1, 1, 1);
  auto m = copy_rollout_data(b, *msrc);
  Bytes mcopy = finish_message(b, CreateRollout(b, env, 1, m));
  const RolloutData* mout = decode<Rollout>(mcopy).value()->data();
  CHECK(mout->tokens() == nullptr);
  CHECK(mout->reason() == nullptr);
  CHECK(mout->provenance()->dataset() == nullptr);
  CHECK(mout->provenance()->judge_ids() == nullptr);
}

TEST_CASE("samples are deterministic; M1_WRITE_CORPUS writes them as a seed corpus") {
  const auto a = valid_samples(), b = valid_samples();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].bytes.vec() == b[i].bytes.vec());
  if (const char* dir = std::getenv("M1_WRITE_CORPUS")) {
    const size_t n = write_samples(dir);
    MESSAGE("wrote " << n << " seed files under " << dir);
    CHECK(n == a.size());
  }
}

TEST_CASE("regression: 8-byte vector elements misaligned relative to the buffer are rejected") {
  // Found by fuzz_rollout: a changed offset moved Provenance.judge_ids to 4 mod 8. The 2.0.8
  // Verifier accepts it (it aligns only the length field); reading the ids was a misaligned load.
  const std::string path =
      std::string(M1_SOURCE_DIR) + "/messages/fuzz/corpus/rollout/regress_misaligned_judge_ids.bin";
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), path);
  const std::vector<uint8_t> v((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto buf = exact_copy(v.data(), v.size());
  flatbuffers::Verifier verifier(buf.get(), v.size(), 64, 1000000);
  CHECK(VerifyRolloutBuffer(verifier));  // structurally fine for the 2.0.8 Verifier
  auto r = decode<Rollout>(buf.get(), v.size());
  REQUIRE_FALSE(r.is_ok());
  CHECK_MESSAGE(contains(r.status().message(), "Rollout.data.provenance.judge_ids: elements at offset "),
                r.status().message());
  CHECK(contains(r.status().message(), "are not 8-byte aligned"));
}
