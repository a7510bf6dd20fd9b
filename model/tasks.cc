// Built-in task families ("add", "sort", "add_steps") and the shared answer-markup rules.
//
// Verification of a response against a reference answer:
//   extracted = the text between the first "<answer>" and the next "</answer>", ASCII
//               whitespace trimmed at both ends; no such pair → reward 0, "no answer block".
//   add, add_steps: extracted and reference are integers with an optional sign and leading zeros
//         ("+007" == "7", "-0" == "0"); a non-integer is "unparsable answer 'X'".
//   sort: both are compared as sequences of whitespace-separated tokens.
//   format_reward = check_format(response), independent of correctness.
#include "model/tasks.h"

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "base/check.h"

namespace m1 {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kAnswerOpen = "<answer>";
constexpr std::string_view kAnswerClose = "</answer>";
// Longest echo of a response's answer kept in a Verdict reason (bytes); longer ones end in "...".
constexpr size_t kMaxReasonEcho = 80;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool all_space(std::string_view s) { return std::all_of(s.begin(), s.end(), is_space); }

size_t count_of(std::string_view s, std::string_view needle) {
  size_t n = 0;
  for (size_t pos = s.find(needle); pos != std::string_view::npos;
       pos = s.find(needle, pos + needle.size()))
    ++n;
  return n;
}

std::string echo(const std::string& s) {
  if (s.size() <= kMaxReasonEcho) return s;
  return s.substr(0, kMaxReasonEcho) + "...";
}

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ' ';
    out += v[i];
  }
  return out;
}

// Canonical decimal form of an integer literal: optional '+'/'-', then ≥ 1 digits; leading zeros
// dropped, "-0" → "0". False when s is not such a literal. Any length (no overflow).
bool canonical_integer(std::string_view s, std::string* out) {
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  while (s.size() > 1 && s[0] == '0') s.remove_prefix(1);
  if (s == "0") negative = false;
  out->clear();
  if (negative) out->push_back('-');
  out->append(s.data(), s.size());
  return true;
}

Verdict wrong(Verdict v, const std::string& expected) {
  v.reward = 0;
  v.reason = "wrong answer: got '" + echo(v.extracted) + "', expected '" + expected + "'";
  return v;
}

// Fills extracted and format_reward; false (with reason set) when there is no answer block.
bool start_verdict(const std::string& response, Verdict* v) {
  v->format_reward = check_format(response) ? 1.0 : 0.0;
  if (!extract_answer(response, &v->extracted)) {
    v->reason = "no answer block";
    return false;
  }
  return true;
}

// "add", and "add_steps": the same problems with a worked solution, whose demonstration thinks
// column by column from the ones up, "<think>7+5+0=12 4+8+1=13</think><answer>132</answer>" for
// 47+85 (digit of a + digit of b + carry in = column sum; a missing digit is 0), so responses are
// several times longer than the prompt, as in reasoning RL.
class AddTask final : public Task {
 public:
  explicit AddTask(bool steps) : steps_(steps) {}
  std::string name() const override { return steps_ ? "add_steps" : "add"; }
  int max_difficulty() const override { return 9; }

  TaskExample sample(Rng& rng, int difficulty) const override {
    M1_CHECK_MSG(difficulty >= 1 && difficulty <= max_difficulty(), (name() + ": difficulty out of range").c_str());
    uint64_t limit = 1;
    for (int i = 0; i < difficulty; ++i) limit *= 10;
    const uint64_t a = rng.below(limit), b = rng.below(limit);
    TaskExample ex;
    ex.task = name();
    ex.difficulty = difficulty;
    ex.prompt = std::to_string(a) + "+" + std::to_string(b) + "=";
    ex.answer = std::to_string(a + b);
    ex.demonstration = std::string(kAnswerOpen) + ex.answer + std::string(kAnswerClose);
    if (steps_) ex.demonstration = std::string(kThinkOpen) + columns(a, b) + std::string(kThinkClose) + ex.demonstration;
    return ex;
  }

  Verdict verify(const std::string& response, const std::string& answer) const override {
    Verdict v;
    if (!start_verdict(response, &v)) return v;
    std::string got, expected;
    if (!canonical_integer(v.extracted, &got)) {
      v.reason = "unparsable answer '" + echo(v.extracted) + "'";
      return v;
    }
    if (!canonical_integer(trim(answer), &expected)) {
      v.reason = "unparsable reference '" + echo(answer) + "'";
      return v;
    }
    if (got != expected) return wrong(std::move(v), answer);
    v.reward = 1;
    v.reason = "correct";
    return v;
  }

 private:
  static std::string columns(uint64_t a, uint64_t b) {
    std::string out;
    int carry = 0;
    do {
      const int da = int(a % 10), db = int(b % 10), sum = da + db + carry;
      if (!out.empty()) out += ' ';
      out += std::to_string(da) + "+" + std::to_string(db) + "+" + std::to_string(carry) + "=" + std::to_string(sum);
      carry = sum / 10;
      a /= 10;
      b /= 10;
    } while (a > 0 || b > 0);
    return out;
  }
  bool steps_;
};

class SortTask final : public Task {
 public:
  std::string name() const override { return "sort"; }
  int max_difficulty() const override { return 10; }

  TaskExample sample(Rng& rng, int difficulty) const override {
    M1_CHECK_MSG(difficulty >= 1 && difficulty <= max_difficulty(),
                 "sort: difficulty out of range");
    std::vector<int> xs(difficulty + 2);
    for (int& x : xs) x = static_cast<int>(rng.below(10));
    TaskExample ex;
    ex.task = name();
    ex.difficulty = difficulty;
    ex.prompt = "sort";
    for (int x : xs) {
      ex.prompt += ' ';
      ex.prompt += std::to_string(x);
    }
    ex.prompt += ":";
    std::sort(xs.begin(), xs.end());
    for (size_t i = 0; i < xs.size(); ++i) {
      if (i) ex.answer += ' ';
      ex.answer += std::to_string(xs[i]);
    }
    ex.demonstration = std::string(kAnswerOpen) + ex.answer + std::string(kAnswerClose);
    return ex;
  }

  Verdict verify(const std::string& response, const std::string& answer) const override {
    Verdict v;
    if (!start_verdict(response, &v)) return v;
    if (split_ws(v.extracted) != split_ws(answer)) return wrong(std::move(v), join(split_ws(answer)));
    v.reward = 1;
    v.reason = "correct";
    return v;
  }
};

}  // namespace

std::unique_ptr<Task> make_task(const std::string& name) {
  if (name == "add") return std::make_unique<AddTask>(false);
  if (name == "sort") return std::make_unique<SortTask>();
  if (name == "add_steps") return std::make_unique<AddTask>(true);
  return nullptr;
}

std::vector<std::string> task_names() { return {"add", "sort", "add_steps"}; }

bool extract_answer(const std::string& response, std::string* answer) {
  const std::string_view r = response;
  const size_t open = r.find(kAnswerOpen);
  if (open == std::string_view::npos) {
    answer->clear();
    return false;
  }
  const size_t body = open + kAnswerOpen.size();
  const size_t close = r.find(kAnswerClose, body);
  if (close == std::string_view::npos) {
    answer->clear();
    return false;
  }
  *answer = std::string(trim(r.substr(body, close - body)));
  return true;
}

bool check_format(const std::string& response) {
  std::string_view r = response;
  // Exactly one answer block, at most one think block, and no stray tags inside either block.
  if (count_of(r, kAnswerOpen) != 1 || count_of(r, kAnswerClose) != 1) return false;
  const size_t thinks = count_of(r, kThinkOpen);
  if (thinks > 1 || count_of(r, kThinkClose) != thinks) return false;
  r = trim(r);
  if (thinks == 1) {
    if (!r.starts_with(kThinkOpen)) return false;  // think block not first (or inside the answer)
    const size_t close = r.find(kThinkClose);
    r = trim(r.substr(close + kThinkClose.size()));
  }
  if (!r.starts_with(kAnswerOpen)) return false;  // text before the block, or answer inside think
  const size_t close = r.find(kAnswerClose);
  if (close == std::string_view::npos || close < kAnswerOpen.size()) return false;
  return all_space(r.substr(close + kAnswerClose.size()));
}

}  // namespace m1
