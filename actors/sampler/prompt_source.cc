// Prompt sources and the curriculum (contracts in prompt_source.h).
#include "actors/sampler/prompt_source.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "base/check.h"
#include "base/file.h"

namespace m1 {
namespace {

constexpr size_t kMaxPromptBytes = size_t(1) << 20;
constexpr size_t kMaxReferenceBytes = 65536;
constexpr size_t kMaxTaskBytes = 64;

uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

bool blank(std::string_view s) {
  return s.find_first_not_of(" \t\n\r\v\f") == std::string_view::npos;
}

std::string joined_task_names() {
  std::string out;
  for (const std::string& n : task_names()) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The string field `key` of record `rec`: error when absent (and required) or not a string.
Status string_field(const nlohmann::json& rec, const char* key, bool required,
                    const std::string& where, std::string* out) {
  const auto it = rec.find(key);
  if (it == rec.end()) {
    if (required) return Status::errorf("{}: missing string field \"{}\"", where, key);
    return Status::ok();
  }
  if (!it->is_string()) return Status::errorf("{}: field \"{}\" must be a string", where, key);
  *out = it->get<std::string>();
  return Status::ok();
}

Result<SampledPrompt> parse_record(std::string_view line, const std::string& where,
                                   const std::string& path, const std::string& default_task) {
  nlohmann::json rec;
  try {
    rec = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    return Status::errorf("{}: malformed JSON: {}", where, e.what());
  }
  if (!rec.is_object()) return Status::errorf("{}: expected a JSON object", where);
  SampledPrompt p;
  p.task = default_task;
  M1_RETURN_IF_ERROR(string_field(rec, "prompt", true, where, &p.text));
  M1_RETURN_IF_ERROR(string_field(rec, "answer", true, where, &p.reference));
  M1_RETURN_IF_ERROR(string_field(rec, "task", false, where, &p.task));
  if (p.text.empty() || p.text.size() > kMaxPromptBytes)
    return Status::errorf("{}: \"prompt\" must be non-empty and at most {} bytes", where,
                          kMaxPromptBytes);
  if (blank(p.reference) || p.reference.size() > kMaxReferenceBytes)
    return Status::errorf("{}: \"answer\" must be non-blank and at most {} bytes", where,
                          kMaxReferenceBytes);
  if (p.task.empty() || p.task.size() > kMaxTaskBytes)
    return Status::errorf("{}: \"task\" must be non-empty and at most {} bytes", where,
                          kMaxTaskBytes);
  p.dataset = path;
  p.prompt_id = prompt_id_for(p.task, p.text, p.reference);
  return p;
}

}  // namespace

uint64_t prompt_id_for(std::string_view task, std::string_view text, std::string_view reference) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, task);
  h = fnv1a(h, std::string_view("\0", 1));
  h = fnv1a(h, text);
  h = fnv1a(h, std::string_view("\0", 1));
  h = fnv1a(h, reference);
  return h == 0 ? 1 : h;
}

int DifficultySchedule::max_at(int64_t step) const {
  if (ramp_steps <= 0 || step >= ramp_steps) return end_max;
  if (step <= 0) return start_max;
  const double t = double(step) / double(ramp_steps);
  return start_max + int(std::floor(t * double(end_max - start_max)));
}

Status DifficultySchedule::validate(int task_max) const {
  if (min_difficulty < 1 || start_max < min_difficulty || end_max < min_difficulty ||
      start_max > task_max || end_max > task_max || ramp_steps < 0)
    return Status::errorf(
        "difficulty schedule min {} start_max {} end_max {} ramp_steps {}: expected "
        "1 <= min <= start_max, end_max <= {} and ramp_steps >= 0",
        min_difficulty, start_max, end_max, ramp_steps, task_max);
  return Status::ok();
}

Result<std::unique_ptr<BuiltinPromptSource>> BuiltinPromptSource::create(
    const std::string& task, DifficultySchedule schedule) {
  std::unique_ptr<Task> t = make_task(task);
  if (!t)
    return Status::errorf("unknown built-in task family '{}' (known: {})", task,
                          joined_task_names());
  M1_RETURN_IF_ERROR(schedule.validate(t->max_difficulty()).with_context("builtin:" + task));
  return std::unique_ptr<BuiltinPromptSource>(new BuiltinPromptSource(std::move(t), schedule));
}

SampledPrompt BuiltinPromptSource::next(Rng& rng, int64_t step) {
  const int hi = schedule_.max_at(step);
  const int lo = schedule_.min_difficulty;
  const int d = lo + int(rng.below(uint64_t(hi - lo + 1)));
  TaskExample ex = task_->sample(rng, d);
  SampledPrompt p;
  p.task = ex.task;
  p.dataset = "builtin";
  p.text = std::move(ex.prompt);
  p.reference = std::move(ex.answer);
  p.difficulty = d;
  p.prompt_id = prompt_id_for(p.task, p.text, p.reference);
  return p;
}

Result<std::unique_ptr<JsonlPromptSource>> JsonlPromptSource::load(
    const std::string& path, const std::string& default_task) {
  Result<std::string> text = read_file(path);
  if (!text.is_ok()) return text.status().with_context("reading prompt file");
  return parse(path, *text, default_task);
}

Result<std::unique_ptr<JsonlPromptSource>> JsonlPromptSource::parse(
    const std::string& path, std::string_view text, const std::string& default_task) {
  std::vector<SampledPrompt> records;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (blank(line)) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    M1_ASSIGN_OR_RETURN(SampledPrompt p, parse_record(line, where, path, default_task));
    records.push_back(std::move(p));
  }
  if (records.empty()) return Status::errorf("{}: no prompt records", path);
  return std::unique_ptr<JsonlPromptSource>(new JsonlPromptSource(path, std::move(records)));
}

SampledPrompt JsonlPromptSource::next(Rng& rng, int64_t /*step*/) {
  if (cursor_ >= order_.size()) {
    if (!order_.empty()) ++epoch_;
    order_.resize(records_.size());
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng.below(i)]);
    cursor_ = 0;
  }
  return records_[order_[cursor_++]];
}

double WeightSchedule::at(int64_t step) const {
  M1_CHECK(!points.empty());
  if (step <= points.front().first) return points.front().second;
  if (step >= points.back().first) return points.back().second;
  const auto hi = std::upper_bound(points.begin(), points.end(), step,
                                   [](int64_t s, const auto& p) { return s < p.first; });
  const auto lo = hi - 1;
  const double t = double(step - lo->first) / double(hi->first - lo->first);
  return lo->second + t * (hi->second - lo->second);
}

Status WeightSchedule::validate() const {
  if (points.empty()) return Status::error("weight schedule: no points");
  for (size_t i = 0; i < points.size(); ++i) {
    if (!std::isfinite(points[i].second) || points[i].second < 0)
      return Status::errorf("weight schedule: weight {} at step {} must be finite and >= 0",
                            points[i].second, points[i].first);
    if (i > 0 && points[i].first <= points[i - 1].first)
      return Status::errorf("weight schedule: steps must increase ({} after {})",
                            points[i].first, points[i - 1].first);
  }
  return Status::ok();
}

Status Curriculum::add(std::unique_ptr<PromptSource> source, WeightSchedule weights) {
  M1_CHECK(source != nullptr);
  M1_RETURN_IF_ERROR(weights.validate().with_context("curriculum source " + source->name()));
  sources_.push_back(Entry{std::move(source), std::move(weights)});
  return Status::ok();
}

std::vector<double> Curriculum::weights_at(int64_t step) const {
  std::vector<double> w;
  w.reserve(sources_.size());
  for (const Entry& e : sources_) w.push_back(e.weights.at(step));
  return w;
}

Result<SampledPrompt> Curriculum::next(Rng& rng, int64_t step) {
  if (sources_.empty()) return Status::error("curriculum: no prompt sources");
  const std::vector<double> w = weights_at(step);
  double total = 0;
  for (double x : w) total += x;
  if (!(total > 0)) return Status::errorf("curriculum: every source has weight 0 at step {}", step);
  const double u = rng.uniform() * total;
  double acc = 0;
  size_t pick = sources_.size();
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] <= 0) continue;
    acc += w[i];
    pick = i;  // the last positive-weight source absorbs rounding at the top end
    if (u < acc) break;
  }
  return sources_[pick].source->next(rng, step);
}

}  // namespace m1
