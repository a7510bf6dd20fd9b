// decode<T> and check<T> for every root type, and the copy helpers (see codec.h).
//
// Semantic checks follow the schema comments in messages/*.fbs field by field. Checks on shared
// sub-tables (Envelope, Provenance, RolloutData, Metric, GroupSummary) return errors relative to
// the sub-table ("tokens[3]: ..."); the caller prefixes the path from the root ("Rollout.data."),
// so every message reads "<Root>.<path>.<field>: <problem>". Paths are built only on the error
// path. A TrainingBatch's groups are whole JudgedGroup messages, checked by decode<JudgedGroup>
// ("TrainingBatch.groups[1].bytes: JudgedGroup.rollouts[0]...").
//
// Rules the schema implies but does not spell out, enforced here as well:
//   - Provenance.judge_ids are non-zero (judge ids are non-zero everywhere else);
//   - every `task` string is ≤ 64 bytes (the cap stated on Provenance.task);
//   - TrainingBatch.group_ids[i] == the group_id of groups[i]'s JudgedGroup, and each nested
//     message starts 8-byte aligned (relative to the batch's start), so its fields can be read in place;
//   - WeightsChunk.offset + values length does not overflow 64 bits;
//   - ReplayQuery.max_reward is finite, like min_reward (its default 1e30 is);
//   - 8-byte vector elements are 8-byte aligned (the 2.0.8 Verifier does not check it).
#include "messages/codec.h"

#include <cmath>
#include <cstring>
#include <string_view>
#include <unordered_set>

#include <fmt/format.h>

namespace m1::msg {
namespace {

constexpr size_t kMaxTaskBytes = 64;
constexpr size_t kMaxDatasetBytes = 4096;
constexpr size_t kMaxReasonBytes = 1024;
constexpr size_t kMaxReferenceBytes = 65536;
constexpr size_t kMaxPromptBytes = size_t(1) << 20;
constexpr size_t kMaxMetricNameBytes = 128;
constexpr size_t kMaxSourceBytes = 64;
constexpr size_t kMaxDropReasonBytes = 256;
constexpr uint32_t kMaxBatchGroups = 100000;
constexpr uint32_t kMaxMetricValues = 100000;
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

// Returns the error of EXPR prefixed with PREFIX (evaluated only on error).
#define M1_RETURN_UNDER(prefix, expr)                                      \
  do {                                                                     \
    ::m1::Status _st = (expr);                                             \
    if (!_st.is_ok()) return ::m1::Status::error((prefix) + _st.message()); \
  } while (0)

// A field's name for an error message: "name", or "name[index]" for an element. Formatted only
// when an error is built, so per-element checks over large vectors (weights, logprobs) cost no
// string work while the values are valid.
struct Field {
  Field(std::string_view n) : name(n) {}
  Field(const char* n) : name(n) {}
  Field(const std::string& n) : name(n) {}
  Field(std::string_view n, size_t i) : name(n), index(i) {}
  std::string str() const { return index == kNone ? std::string(name) : fmt::format("{}[{}]", name, index); }
  static constexpr size_t kNone = ~size_t(0);
  std::string_view name;
  size_t index = kNone;
};

Status err(const Field& field, std::string_view what) {
  return Status::error(fmt::format("{}: {}", field.str(), what));
}

template <class... Args>
Status errf(const Field& field, fmt::format_string<Args...> f, Args&&... args) {
  return err(field, fmt::format(f, std::forward<Args>(args)...));
}

Field elem(std::string_view field, size_t i) { return Field(field, i); }
std::string at(std::string_view field, size_t i) { return elem(field, i).str(); }  // for prefixes

template <class V>
uint32_t length(const V* v) {
  return v ? v->size() : 0;
}

Status nonzero(const Field& field, uint64_t v) {
  return v == 0 ? err(field, "must be non-zero") : Status::ok();
}

Status finite(const Field& field, double v) {
  return std::isfinite(v) ? Status::ok() : errf(field, "must be finite, got {}", v);
}

// Every element of v finite, else an error naming the first that is not. One branch-free pass
// over the raw bits that the compiler vectorises, then the slow path only on failure: a Status per
// element cost 3.1 ms per million values (~6 ms for each 7.8 MB weights version), this 0.09 ms.
Status finite_elems(std::string_view field, const flatbuffers::Vector<float>* v) {
  const uint32_t n = length(v);
  uint32_t any = 0;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, v->Data() + 4 * size_t(i), 4);
    any |= uint32_t((bits & 0x7f800000u) == 0x7f800000u);  // exponent all ones: inf or NaN
  }
  for (uint32_t i = 0; any && i < n; ++i) M1_RETURN_IF_ERROR(finite(elem(field, i), v->Get(i)));
  return Status::ok();
}

// A string of at most MAX bytes; non-empty (and so present) when REQUIRED.
Status text(std::string_view field, const flatbuffers::String* s, size_t max, bool required) {
  if (required && length(s) == 0) return err(field, s ? "must be non-empty" : "required but missing");
  if (length(s) > max) return errf(field, "length {} exceeds {} bytes", length(s), max);
  return Status::ok();
}

template <class Sub>
Status present(std::string_view field, const Sub* sub) {
  return sub ? Status::ok() : err(field, "required but missing");
}

// The Verifier (2.0.8) checks a vector's length field for 4-byte alignment but not its elements
// for their own: 8-byte elements can sit at 4 mod 8. Checked here relative to BASE (the buffer
// start, as the Verifier does; nullptr = absolute address) so that no accessor reads a misaligned
// uint64 from a buffer that is itself 8-byte aligned.
template <class E>
Status aligned(std::string_view field, const flatbuffers::Vector<E>* v, const uint8_t* base) {
  // An empty vector has no element to read; 4-byte elements are aligned with the length field.
  if (!v || v->size() == 0 || sizeof(E) <= sizeof(flatbuffers::uoffset_t)) return Status::ok();
  const auto at = reinterpret_cast<uintptr_t>(v->Data()) - reinterpret_cast<uintptr_t>(base);
  if (at % sizeof(E) != 0) return errf(field, "elements at offset {} are not {}-byte aligned", at, sizeof(E));
  return Status::ok();
}

// Fields relative to the envelope ("sender: ...").
Status check_envelope(const Envelope& e) {
  M1_RETURN_IF_ERROR(nonzero("sender", e.sender()));
  M1_RETURN_IF_ERROR(nonzero("incarnation", e.incarnation()));
  if (e.seq() < 1) return err("seq", "must be >= 1");
  return Status::ok();
}

// Every root's envelope is required.
Status check_root_envelope(const Envelope* e) {
  M1_RETURN_IF_ERROR(present("envelope", e));
  M1_RETURN_UNDER(std::string("envelope."), check_envelope(*e));
  return Status::ok();
}

Status check_provenance(const Provenance& p, const uint8_t* base) {
  M1_RETURN_IF_ERROR(nonzero("prompt_id", p.prompt_id()));
  M1_RETURN_IF_ERROR(text("task", p.task(), kMaxTaskBytes, true));
  M1_RETURN_IF_ERROR(text("dataset", p.dataset(), kMaxDatasetBytes, false));
  M1_RETURN_IF_ERROR(nonzero("generator_id", p.generator_id()));
  M1_RETURN_IF_ERROR(aligned("judge_ids", p.judge_ids(), base));
  if (const auto* ids = p.judge_ids()) {
    for (uint32_t i = 0; i < ids->size(); ++i) M1_RETURN_IF_ERROR(nonzero(elem("judge_ids", i), ids->Get(i)));
  }
  return Status::ok();
}

Status token_ids(std::string_view field, const flatbuffers::Vector<int32_t>* v) {
  for (uint32_t i = 0, n = length(v); i < n; ++i) {
    if (v->Get(i) < 0) return errf(elem(field, i), "token id {} < 0", v->Get(i));
  }
  return Status::ok();
}

// GROUP_SIZE: the size of the enclosing group, or 0 when the message does not know it.
Status check_rollout_data(const RolloutData& r, uint32_t group_size, const uint8_t* base) {
  M1_RETURN_IF_ERROR(nonzero("rollout_id", r.rollout_id()));
  M1_RETURN_IF_ERROR(nonzero("group_id", r.group_id()));
  if (group_size != 0 && r.index() >= group_size) {
    return errf("index", "{} >= group size {}", r.index(), group_size);
  }
  if (length(r.prompt_tokens()) == 0) return err("prompt_tokens", "must be non-empty");
  M1_RETURN_IF_ERROR(token_ids("prompt_tokens", r.prompt_tokens()));
  M1_RETURN_IF_ERROR(token_ids("tokens", r.tokens()));
  const uint32_t n = length(r.tokens());
  if (length(r.behavior_logprobs()) != n) {
    return errf("behavior_logprobs", "length {} != tokens length {}", length(r.behavior_logprobs()), n);
  }
  if (length(r.versions()) != n) return errf("versions", "length {} != tokens length {}", length(r.versions()), n);
  M1_RETURN_IF_ERROR(aligned("versions", r.versions(), base));
  M1_RETURN_IF_ERROR(finite_elems("behavior_logprobs", r.behavior_logprobs()));
  for (uint32_t i = 0; i < n; ++i) {
    const float lp = r.behavior_logprobs()->Get(i);
    if (lp > 0.0f) return errf(elem("behavior_logprobs", i), "log-prob {} > 0", lp);
  }
  for (uint32_t i = 1; i < n; ++i) {
    const uint64_t prev = r.versions()->Get(i - 1), cur = r.versions()->Get(i);
    if (cur < prev) return errf(elem("versions", i), "{} < previous version {} (must be non-decreasing)", cur, prev);
  }
  const auto finish = static_cast<int8_t>(r.finish());  // from untrusted bytes: compare the integer
  if (finish < static_cast<int8_t>(FinishReason::MIN) || finish > static_cast<int8_t>(FinishReason::MAX)) {
    return errf("finish", "{} is not a FinishReason", finish);
  }
  M1_RETURN_IF_ERROR(present("provenance", r.provenance()));
  M1_RETURN_UNDER(std::string("provenance."), check_provenance(*r.provenance(), base));
  M1_RETURN_IF_ERROR(finite("reward", r.reward()));
  if (r.format_reward() != 0.0f && r.format_reward() != 1.0f) {
    return errf("format_reward", "must be 0 or 1, got {}", r.format_reward());
  }
  M1_RETURN_IF_ERROR(finite("advantage", r.advantage()));
  M1_RETURN_IF_ERROR(text("reason", r.reason(), kMaxReasonBytes, false));
  return Status::ok();
}

// Rollouts of one group: G >= 1, each with GROUP_ID and index < G.
Status check_group_rollouts(const flatbuffers::Vector<flatbuffers::Offset<RolloutData>>* rollouts,
                            uint64_t group_id, const uint8_t* base) {
  const uint32_t g = length(rollouts);
  if (g == 0) return err("rollouts", "must hold at least one rollout");
  for (uint32_t i = 0; i < g; ++i) {
    const RolloutData& r = *rollouts->Get(i);
    M1_RETURN_UNDER(at("rollouts", i) + ".", check_rollout_data(r, g, base));
    if (r.group_id() != group_id) {
      return errf(at("rollouts", i) + ".group_id", "{} != the group's group_id {}", r.group_id(), group_id);
    }
  }
  return Status::ok();
}

Status check_metric(const Metric& m) {
  M1_RETURN_IF_ERROR(text("name", m.name(), kMaxMetricNameBytes, true));
  M1_RETURN_IF_ERROR(finite("value", m.value()));
  if (m.integer() && (m.value() != std::trunc(m.value()) || std::fabs(m.value()) > kMaxExactInteger)) {
    return errf("value", "{} is not a whole number in [-2^53, 2^53] (integer is set)", m.value());
  }
  return Status::ok();
}

Status check_metrics(std::string_view field, const flatbuffers::Vector<flatbuffers::Offset<Metric>>* v) {
  for (uint32_t i = 0, n = length(v); i < n; ++i) M1_RETURN_UNDER(at(field, i) + ".", check_metric(*v->Get(i)));
  return Status::ok();
}

Status check_group_summary(const GroupSummary& g) {
  M1_RETURN_IF_ERROR(nonzero("group_id", g.group_id()));
  M1_RETURN_IF_ERROR(text("task", g.task(), kMaxTaskBytes, true));
  const auto status = static_cast<int8_t>(g.status());
  if (status < static_cast<int8_t>(GroupStatus::MIN) || status > static_cast<int8_t>(GroupStatus::MAX)) {
    return errf("status", "{} is not a GroupStatus", status);
  }
  M1_RETURN_IF_ERROR(text("drop_reason", g.drop_reason(), kMaxDropReasonBytes, false));
  const bool dropped = status == static_cast<int8_t>(GroupStatus::Dropped) ||
                       status == static_cast<int8_t>(GroupStatus::Quarantined);
  if (!dropped && length(g.drop_reason()) != 0) {
    return errf("drop_reason", "must be empty for status {}", EnumNameGroupStatus(g.status()));
  }
  if (g.max_version() < g.min_version()) {
    return errf("max_version", "{} < min_version {}", g.max_version(), g.min_version());
  }
  M1_RETURN_IF_ERROR(finite("reward_mean", g.reward_mean()));
  if (g.size() < 1) return err("size", "must be >= 1");
  return Status::ok();
}

}  // namespace

std::string identifier_of(const uint8_t* data, size_t n) {
  if (data == nullptr || n < sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength) return "";
  return std::string(reinterpret_cast<const char*>(data) + sizeof(flatbuffers::uoffset_t),
                     flatbuffers::kFileIdentifierLength);
}

namespace {

// ---- check_root: one per root type, errors prefixed with the root's name ----

Status check_root(const GenerationRequest& m, const uint8_t* base) {
  const std::string p = "GenerationRequest.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, nonzero("request_id", m.request_id()));
  M1_RETURN_UNDER(p, nonzero("group_id", m.group_id()));
  if (m.group_size() < 1 || m.group_size() > 4096) {
    return Status::errorf("{}group_size: {} not in [1, 4096]", p, m.group_size());
  }
  if (m.index() >= m.group_size()) return Status::errorf("{}index: {} >= group_size {}", p, m.index(), m.group_size());
  if (length(m.prompt_tokens()) == 0) return Status::errorf("{}prompt_tokens: must be non-empty", p);
  M1_RETURN_UNDER(p, token_ids("prompt_tokens", m.prompt_tokens()));
  if (m.max_new() < 1 || m.max_new() > 1048576) {
    return Status::errorf("{}max_new: {} not in [1, 1048576]", p, m.max_new());
  }
  M1_RETURN_UNDER(p, finite("temperature", m.temperature()));
  if (m.temperature() < 0.0f) return Status::errorf("{}temperature: {} < 0", p, m.temperature());
  if (!(m.top_p() > 0.0f && m.top_p() <= 1.0f)) return Status::errorf("{}top_p: {} not in (0, 1]", p, m.top_p());
  M1_RETURN_UNDER(p, present("provenance", m.provenance()));
  M1_RETURN_UNDER(p + "provenance.", check_provenance(*m.provenance(), base));
  return Status::ok();
}

Status check_root(const Rollout& m, const uint8_t* base) {
  const std::string p = "Rollout.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, nonzero("request_id", m.request_id()));
  M1_RETURN_UNDER(p, present("data", m.data()));
  M1_RETURN_UNDER(p + "data.", check_rollout_data(*m.data(), 0, base));
  return Status::ok();
}

Status check_root(const JudgeRequest& m, const uint8_t* base) {
  const std::string p = "JudgeRequest.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, present("rollout", m.rollout()));
  M1_RETURN_UNDER(p + "rollout.", check_rollout_data(*m.rollout(), 0, base));
  M1_RETURN_UNDER(p, text("reference", m.reference(), kMaxReferenceBytes, false));
  if (m.attempt() >= 100) return Status::errorf("{}attempt: {} >= 100", p, m.attempt());
  return Status::ok();
}

Status check_root(const Verdict& m, const uint8_t* base) {
  const std::string p = "Verdict.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, nonzero("rollout_id", m.rollout_id()));
  M1_RETURN_UNDER(p, nonzero("judge_id", m.judge_id()));
  M1_RETURN_UNDER(p, finite("reward", m.reward()));
  if (m.reward() < -100.0f || m.reward() > 100.0f) {
    return Status::errorf("{}reward: {} not in [-100, 100]", p, m.reward());
  }
  if (!(m.format_reward() >= 0.0f && m.format_reward() <= 1.0f)) {
    return Status::errorf("{}format_reward: {} not in [0, 1]", p, m.format_reward());
  }
  M1_RETURN_UNDER(p, text("reason", m.reason(), kMaxReasonBytes, false));
  return Status::ok();
}

Status check_root(const JudgedGroup& m, const uint8_t* base) {
  const std::string p = "JudgedGroup.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, nonzero("group_id", m.group_id()));
  M1_RETURN_UNDER(p, nonzero("prompt_id", m.prompt_id()));
  M1_RETURN_UNDER(p, text("task", m.task(), kMaxTaskBytes, true));
  M1_RETURN_UNDER(p, text("prompt", m.prompt(), kMaxPromptBytes, false));
  M1_RETURN_UNDER(p, text("reference", m.reference(), kMaxReferenceBytes, false));
  M1_RETURN_UNDER(p, check_group_rollouts(m.rollouts(), m.group_id(), base));
  M1_RETURN_UNDER(p, finite("reward_mean", m.reward_mean()));
  M1_RETURN_UNDER(p, finite("reward_std", m.reward_std()));
  if (m.reward_std() < 0.0f) return Status::errorf("{}reward_std: {} < 0", p, m.reward_std());
  return Status::ok();
}

Status check_root(const TrainingBatch& m, const uint8_t* base) {
  const std::string p = "TrainingBatch.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, nonzero("batch_id", m.batch_id()));
  const uint32_t n = length(m.groups());
  if (n > kMaxBatchGroups) return Status::errorf("{}groups: length {} exceeds {}", p, n, kMaxBatchGroups);
  if (length(m.group_ids()) != n) {
    return Status::errorf("{}group_ids: length {} != groups length {}", p, length(m.group_ids()), n);
  }
  M1_RETURN_UNDER(p, aligned("group_ids", m.group_ids(), base));
  std::unordered_set<uint64_t> seen;
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t id = m.group_ids()->Get(i);
    M1_RETURN_UNDER(p, nonzero(elem("group_ids", i), id));
    if (!seen.insert(id).second) return Status::errorf("{}{}: {} appears twice", p, at("group_ids", i), id);
    const flatbuffers::Vector<uint8_t>* bytes = m.groups()->Get(i)->bytes();
    // The nested message's 8-byte fields are aligned relative to its start: it must start 8-aligned.
    if (bytes && (reinterpret_cast<uintptr_t>(bytes->data()) - reinterpret_cast<uintptr_t>(base)) % 8 != 0) {
      return Status::errorf("{}{}.bytes: not 8-byte aligned", p, at("groups", i));
    }
    auto g = decode<JudgedGroup>(bytes ? bytes->data() : nullptr, length(bytes));
    if (!g.is_ok()) return Status::errorf("{}{}.bytes: {}", p, at("groups", i), g.status().message());
    if (g.value()->group_id() != id) {
      return Status::errorf("{}{}: {} != groups[{}].group_id {}", p, at("group_ids", i), id, i,
                            g.value()->group_id());
    }
  }
  return Status::ok();
}

Status check_root(const WeightsAnnouncement& m, const uint8_t* base) {
  const std::string p = "WeightsAnnouncement.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  if (m.version() < 1) return Status::errorf("{}version: must be >= 1", p);
  if (m.num_params() < 1) return Status::errorf("{}num_params: must be >= 1", p);
  if (m.num_chunks() < 1) return Status::errorf("{}num_chunks: must be >= 1", p);
  return Status::ok();
}

Status check_root(const WeightsChunk& m, const uint8_t* base) {
  const std::string p = "WeightsChunk.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  if (m.version() < 1) return Status::errorf("{}version: must be >= 1", p);
  const uint32_t n = length(m.values());
  if (n == 0) return Status::errorf("{}values: must be non-empty", p);
  if (m.offset() > UINT64_MAX - n) return Status::errorf("{}offset: {} + {} values overflows", p, m.offset(), n);
  M1_RETURN_UNDER(p, finite_elems("values", m.values()));
  return Status::ok();
}

Status check_root(const StepReport& m, const uint8_t* base) {
  const std::string p = "StepReport.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  if (m.step() < 1 && length(m.consumed_group_ids()) != 0)
    return Status::errorf("{}step: must be >= 1 when groups were consumed", p);
  if (m.version() < 1) return Status::errorf("{}version: must be >= 1", p);
  M1_RETURN_UNDER(p, finite("loss", m.loss()));
  M1_RETURN_UNDER(p, aligned("consumed_group_ids", m.consumed_group_ids(), base));
  for (uint32_t i = 0, n = length(m.consumed_group_ids()); i < n; ++i) {
    M1_RETURN_UNDER(p, nonzero(elem("consumed_group_ids", i), m.consumed_group_ids()->Get(i)));
  }
  M1_RETURN_UNDER(p, check_metrics("metrics", m.metrics()));
  return Status::ok();
}

Status check_root(const ReplayQuery& m, const uint8_t* base) {
  const std::string p = "ReplayQuery.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  const int8_t status = m.status();
  if (status < -1 || status > static_cast<int8_t>(GroupStatus::MAX)) {
    return Status::errorf("{}status: {} is neither -1 nor a GroupStatus", p, status);
  }
  M1_RETURN_UNDER(p, text("task", m.task(), kMaxTaskBytes, false));
  if (m.max_version() < m.min_version()) {
    return Status::errorf("{}max_version: {} < min_version {}", p, m.max_version(), m.min_version());
  }
  M1_RETURN_UNDER(p, finite("min_reward", m.min_reward()));
  M1_RETURN_UNDER(p, finite("max_reward", m.max_reward()));
  if (m.max_reward() < m.min_reward()) {
    return Status::errorf("{}max_reward: {} < min_reward {}", p, m.max_reward(), m.min_reward());
  }
  if (m.limit() < 1 || m.limit() > 100000) return Status::errorf("{}limit: {} not in [1, 100000]", p, m.limit());
  return Status::ok();
}

Status check_root(const ReplayResult& m, const uint8_t* base) {
  const std::string p = "ReplayResult.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  const uint32_t n = length(m.groups());
  for (uint32_t i = 0; i < n; ++i) M1_RETURN_UNDER(p + at("groups", i) + ".", check_group_summary(*m.groups()->Get(i)));
  if (m.total_matched() < n) return Status::errorf("{}total_matched: {} < groups length {}", p, m.total_matched(), n);
  return Status::ok();
}

Status check_root(const Metrics& m, const uint8_t* base) {
  const std::string p = "Metrics.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, text("source", m.source(), kMaxSourceBytes, true));
  const uint32_t n = length(m.values());
  if (n > kMaxMetricValues) return Status::errorf("{}values: length {} exceeds {}", p, n, kMaxMetricValues);
  M1_RETURN_UNDER(p, check_metrics("values", m.values()));
  std::unordered_set<std::string_view> names;
  for (uint32_t i = 0; i < n; ++i) {
    const flatbuffers::String* name = m.values()->Get(i)->name();
    if (!names.insert(name->string_view()).second) {
      return Status::errorf("{}{}.name: \"{}\" appears twice", p, at("values", i), name->string_view());
    }
  }
  return Status::ok();
}

// OK and REASON of a reply: the reason is empty exactly when ok.
Status check_outcome(bool ok, const flatbuffers::String* reason) {
  M1_RETURN_IF_ERROR(text("reason", reason, kMaxReasonBytes, false));
  if (ok && length(reason) != 0) return err("reason", "must be empty when ok");
  if (!ok && length(reason) == 0) return err("reason", "must be non-empty when not ok");
  return Status::ok();
}

Status check_root(const ReplayAck& m, const uint8_t* base) {
  const std::string p = "ReplayAck.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  if (m.ok()) M1_RETURN_UNDER(p, nonzero("group_id", m.group_id()));
  M1_RETURN_UNDER(p, check_outcome(m.ok(), m.reason()));
  return Status::ok();
}

Status check_root(const CommitResult& m, const uint8_t* base) {
  const std::string p = "CommitResult.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  if (m.ok() && m.step() < 1) return Status::errorf("{}step: must be >= 1 when ok", p);
  M1_RETURN_UNDER(p, check_outcome(m.ok(), m.reason()));
  return Status::ok();
}

Status check_root(const EvalResult& m, const uint8_t* base) {
  const std::string p = "EvalResult.";
  M1_RETURN_UNDER(p, check_root_envelope(m.envelope()));
  M1_RETURN_UNDER(p, finite("accuracy", m.accuracy()));
  M1_RETURN_UNDER(p, finite("seconds", m.seconds()));
  if (m.held()) {
    if (m.accuracy() < 0.0 || m.accuracy() > 1.0) return Status::errorf("{}accuracy: {} not in [0, 1]", p, m.accuracy());
    if (m.seconds() < 0.0) return Status::errorf("{}seconds: {} < 0", p, m.seconds());
  } else if (m.accuracy() != 0.0 || m.seconds() != 0.0) {
    return Status::errorf("{}accuracy: {} and seconds {} must be 0 when the version is not held", p, m.accuracy(),
                          m.seconds());
  }
  return Status::ok();
}

constexpr size_t kMaxFramePayloads = 65536;
constexpr size_t kMaxTagBytes = 10;  // a CAF 0.17 atom

Status check_root(const Frame& m, const uint8_t* base) {
  const std::string p = "Frame.";
  M1_RETURN_UNDER(p, nonzero("source", m.source()));
  M1_RETURN_UNDER(p, nonzero("destination", m.destination()));
  M1_RETURN_UNDER(p, nonzero("source_node", m.source_node()));
  M1_RETURN_UNDER(p, nonzero("incarnation", m.incarnation()));
  if (m.seq() < 1) return Status::errorf("{}seq: must be >= 1", p);
  const auto kind = m.kind();
  if (kind < FrameKind::MIN || kind > FrameKind::MAX)
    return Status::errorf("{}kind: {} is not a FrameKind", p, int(kind));
  if (kind == FrameKind::Oneway && m.request_id() != 0)
    return Status::errorf("{}request_id: must be 0 for a Oneway frame", p);
  if (kind != FrameKind::Oneway) M1_RETURN_UNDER(p, nonzero("request_id", m.request_id()));
  M1_RETURN_UNDER(p, text("tag", m.tag(), kMaxTagBytes, true));
  for (char c : m.tag()->string_view()) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return Status::errorf("{}tag: character 0x{:02x} is not one of [a-z0-9_]", p, uint8_t(c));
  }
  const auto shape = m.shape();
  if (shape < PayloadShape::MIN || shape > PayloadShape::MAX)
    return Status::errorf("{}shape: {} is not a PayloadShape", p, int(shape));
  const uint32_t n = length(m.payloads());
  if (n > kMaxFramePayloads) return Status::errorf("{}payloads: {} exceed {}", p, n, kMaxFramePayloads);
  if (shape == PayloadShape::Empty && n != 0) return Status::errorf("{}payloads: {} given for shape Empty", p, n);
  if (shape == PayloadShape::One && n != 1) return Status::errorf("{}payloads: {} given for shape One", p, n);
  for (uint32_t i = 0; i < n; ++i) {
    const Payload* pl = m.payloads()->Get(i);
    if (pl == nullptr || pl->bytes() == nullptr) return Status::errorf("{}{}.bytes: required but missing", p, at("payloads", i));
  }
  if (kind == FrameKind::Failure) {
    if (shape != PayloadShape::Empty) return Status::errorf("{}shape: must be Empty for a Failure frame", p);
    M1_RETURN_UNDER(p, text("reason", m.reason(), kMaxReasonBytes, true));
  } else if (length(m.reason()) != 0) {
    return Status::errorf("{}reason: must be empty unless the frame is a Failure", p);
  }
  return Status::ok();
}

// Printable form of a 4-byte identifier for error messages.
std::string printable(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
      s += static_cast<char>(p[i]);
    } else {
      s += fmt::format("\\x{:02x}", p[i]);
    }
  }
  return s;
}

// Size cap, identifier, Verifier, semantic checks: in this order, nothing read before its turn.
template <class T, bool (*Verify)(flatbuffers::Verifier&)>
Result<const T*> decode_impl(const uint8_t* data, size_t n) {
  const char* name = MessageTraits<T>::kName;
  if (n > kMaxMessageBytes) {
    return Status::errorf("{}: buffer of {} bytes exceeds the {}-byte message cap", name, n, kMaxMessageBytes);
  }
  if (data == nullptr || n < 8) {
    return Status::errorf("{}: buffer of {} bytes is too short for a root offset and file identifier", name,
                          data == nullptr ? 0 : n);
  }
  if (!flatbuffers::BufferHasIdentifier(data, MessageTraits<T>::identifier())) {
    return Status::errorf("{}: file identifier \"{}\" != \"{}\"", name,
                          printable(data + sizeof(flatbuffers::uoffset_t), flatbuffers::kFileIdentifierLength),
                          MessageTraits<T>::identifier());
  }
  flatbuffers::Verifier v(data, n, /*max_depth*/ 64, /*max_tables*/ 1000000);
  if (!Verify(v)) return Status::errorf("{}: malformed FlatBuffer ({} bytes) rejected by the verifier", name, n);
  const T* root = flatbuffers::GetRoot<T>(data);
  M1_RETURN_IF_ERROR(check_root(*root, data));
  return root;
}

}  // namespace

#define M1_MSG_DECODE_(T, stem)                                                        \
  template <>                                                                          \
  Result<const T*> decode<T>(const uint8_t* data, size_t n) {                          \
    return decode_impl<T, Verify##T##Buffer>(data, n);                                 \
  }                                                                                    \
  template <>                                                                          \
  Status check<T>(const T& root) {                                                     \
    return check_root(root, nullptr);                                                  \
  }
M1_MSG_ROOT_TYPES(M1_MSG_DECODE_)
#undef M1_MSG_DECODE_

// ---- copies ----

flatbuffers::Offset<Envelope> copy_envelope(flatbuffers::FlatBufferBuilder& b, const Envelope& src) {
  return CreateEnvelope(b, src.sender(), src.incarnation(), src.seq());
}

namespace {
flatbuffers::Offset<flatbuffers::String> copy_string(flatbuffers::FlatBufferBuilder& b, const flatbuffers::String* s) {
  return s ? b.CreateString(s->c_str(), s->size()) : flatbuffers::Offset<flatbuffers::String>();
}

template <class E>
flatbuffers::Offset<flatbuffers::Vector<E>> copy_vector(flatbuffers::FlatBufferBuilder& b,
                                                        const flatbuffers::Vector<E>* v) {
  return v ? b.CreateVector(v->data(), v->size()) : flatbuffers::Offset<flatbuffers::Vector<E>>();
}
}  // namespace

flatbuffers::Offset<Provenance> copy_provenance(flatbuffers::FlatBufferBuilder& b, const Provenance& src,
                                                const std::vector<uint64_t>* judge_ids) {
  auto task = copy_string(b, src.task());
  auto dataset = copy_string(b, src.dataset());
  auto ids = judge_ids ? b.CreateVector(*judge_ids) : copy_vector(b, src.judge_ids());
  return CreateProvenance(b, src.prompt_id(), task, dataset, src.generator_id(), ids, src.seed());
}

flatbuffers::Offset<RolloutData> copy_rollout_data(flatbuffers::FlatBufferBuilder& b, const RolloutData& src,
                                                   const RolloutEdits& edits) {
  auto prompt = copy_vector(b, src.prompt_tokens());
  auto tokens = copy_vector(b, src.tokens());
  auto logprobs = copy_vector(b, src.behavior_logprobs());
  auto versions = copy_vector(b, src.versions());
  flatbuffers::Offset<Provenance> prov;
  if (src.provenance()) prov = copy_provenance(b, *src.provenance(), edits.judge_ids ? &*edits.judge_ids : nullptr);
  auto reason = edits.reason ? b.CreateString(*edits.reason) : copy_string(b, src.reason());
  return CreateRolloutData(b, src.rollout_id(), src.group_id(), src.index(), prompt, tokens, logprobs, versions,
                           src.finish(), prov, edits.reward.value_or(src.reward()),
                           edits.format_reward.value_or(src.format_reward()),
                           edits.advantage.value_or(src.advantage()), reason);
}

}  // namespace m1::msg
