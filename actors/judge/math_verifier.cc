// Math-answer verifier: extraction, normalisation and exact rational comparison (contract in
// math_verifier.h). Arithmetic: natural numbers as base-1e9 limbs; a/b == c/d iff a·d == c·b
// (with equal signs, or both zero), so no reduction (and no big division) is ever needed.
#include "actors/judge/math_verifier.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace m1 {
namespace {

constexpr uint32_t kLimbBase = 1000000000u;
constexpr size_t kLimbDigits = 9;
constexpr size_t kMaxReasonEcho = 80;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string echo(std::string_view s) {
  if (s.size() <= kMaxReasonEcho) return std::string(s);
  return std::string(s.substr(0, kMaxReasonEcho)) + "...";
}

using Nat = MathValue::Nat;

void nat_trim(Nat* a) {
  while (!a->empty() && a->back() == 0) a->pop_back();
}

// digits: ASCII '0'..'9' only.
Nat nat_from_digits(std::string_view digits) {
  Nat out;
  size_t end = digits.size();
  while (end > 0) {
    const size_t begin = end >= kLimbDigits ? end - kLimbDigits : 0;
    uint32_t limb = 0;
    for (size_t i = begin; i < end; ++i) limb = limb * 10 + uint32_t(digits[i] - '0');
    out.push_back(limb);
    end = begin;
  }
  nat_trim(&out);
  return out;
}

Nat nat_mul(const Nat& a, const Nat& b) {
  if (a.empty() || b.empty()) return {};
  std::vector<uint64_t> acc(a.size() + b.size(), 0);
  for (size_t i = 0; i < a.size(); ++i) {
    uint64_t carry = 0;
    for (size_t j = 0; j < b.size(); ++j) {
      const uint64_t cur = acc[i + j] + uint64_t(a[i]) * b[j] + carry;
      acc[i + j] = cur % kLimbBase;
      carry = cur / kLimbBase;
    }
    size_t k = i + b.size();
    while (carry) {
      const uint64_t cur = acc[k] + carry;
      acc[k] = cur % kLimbBase;
      carry = cur / kLimbBase;
      ++k;
    }
  }
  Nat out(acc.begin(), acc.end());
  nat_trim(&out);
  return out;
}

bool starts_with_at(std::string_view s, size_t pos, std::string_view prefix) {
  return s.size() >= pos && s.substr(pos).starts_with(prefix);
}

// Index one past the '}' closing the '{' at s[open]; npos when unbalanced. Escaped characters
// ("\{", "\}", "\\") are skipped.
size_t match_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '{') ++depth;
    if (c == '}' && --depth == 0) return i + 1;
  }
  return std::string_view::npos;
}

// When s is exactly `command` + ws + "{X}", returns true with *inner = X.
bool unwrap_command(std::string_view s, std::string_view command, std::string_view* inner) {
  if (!s.starts_with(command)) return false;
  size_t i = command.size();
  // "\textbf" must not match the command "\text": the next char may not be a letter.
  if (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) return false;
  while (i < s.size() && is_space(s[i])) ++i;
  if (i >= s.size() || s[i] != '{') return false;
  const size_t end = match_brace(s, i);
  if (end != s.size()) return false;
  *inner = s.substr(i + 1, end - i - 2);
  return true;
}

std::string replace_unicode_minus(std::string_view s) {
  static constexpr std::string_view kMinus = "\xE2\x88\x92";  // U+2212
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i).starts_with(kMinus)) {
      out.push_back('-');
      i += kMinus.size();
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// One pass of the wrapper rules; returns the (possibly) shorter view.
std::string_view strip_once(std::string_view s) {
  s = trim(s);
  std::string_view inner;
  for (std::string_view cmd : {"\\boxed", "\\textbf", "\\text", "\\mathrm"}) {
    if (unwrap_command(s, cmd, &inner)) return inner;
  }
  if (s.size() >= 4 && ((s.starts_with("\\(") && s.ends_with("\\)")) ||
                        (s.starts_with("\\[") && s.ends_with("\\]"))))
    return s.substr(2, s.size() - 4);
  if (s.starts_with("\\$")) return s.substr(2);
  while (!s.empty() && s.front() == '$') s.remove_prefix(1);
  while (!s.empty() && s.back() == '$') s.remove_suffix(1);
  while (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return trim(s);
}

}  // namespace

// Recursive-descent parser of the number grammar in math_verifier.h over a stripped string.
class MathValueParser {
 public:
  explicit MathValueParser(std::string_view s) : s_(s) {}

  std::optional<MathValue> parse_all() {
    std::optional<MathValue> v = value();
    skip_ws();
    if (!v || pos_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  void skip_ws() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }
  bool eat(char c) {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  static MathValue divide(const MathValue& a, const MathValue& b) {
    MathValue out;
    out.num_ = nat_mul(a.num_, b.den_);
    out.den_ = nat_mul(a.den_, b.num_);
    out.negative_ = !out.num_.empty() && (a.negative_ != b.negative_);
    return out;
  }

  std::optional<MathValue> value() {
    std::optional<MathValue> a = operand();
    if (!a) return std::nullopt;
    if (!eat('/')) return a;
    std::optional<MathValue> b = operand();
    if (!b || b->is_zero()) return std::nullopt;
    return divide(*a, *b);
  }

  std::optional<MathValue> operand() {
    bool negative = false;
    if (eat('-')) {
      negative = true;
    } else {
      eat('+');
    }
    std::optional<MathValue> v = atom();
    if (v && negative && !v->is_zero()) v->negative_ = !v->negative_;
    return v;
  }

  // "{ value }" at the cursor (REQUIRES: s_[pos_] == '{').
  std::optional<MathValue> braced() {
    ++pos_;
    std::optional<MathValue> v = value();
    if (!v || !eat('}')) return std::nullopt;
    return v;
  }

  std::optional<MathValue> atom() {
    skip_ws();
    if (pos_ >= s_.size()) return std::nullopt;
    if (s_[pos_] == '{') return braced();
    for (std::string_view cmd : {"\\frac", "\\dfrac", "\\tfrac"}) {
      if (starts_with_at(s_, pos_, cmd)) {
        pos_ += cmd.size();
        std::optional<MathValue> num = frac_arg();
        if (!num) return std::nullopt;
        std::optional<MathValue> den = frac_arg();
        if (!den || den->is_zero()) return std::nullopt;
        return divide(*num, *den);
      }
    }
    return literal();
  }

  std::optional<MathValue> frac_arg() {
    skip_ws();
    if (pos_ >= s_.size()) return std::nullopt;
    if (s_[pos_] == '{') return braced();
    if (!is_digit(s_[pos_])) return std::nullopt;
    MathValue v;
    v.num_ = nat_from_digits(s_.substr(pos_++, 1));
    return v;
  }

  // int [ '.' digits* ] | '.' digits+ ; commas only in groups of three after 1..3 leading digits.
  std::optional<MathValue> literal() {
    std::string digits;
    size_t frac_digits = 0;
    const size_t start = pos_;
    while (pos_ < s_.size() && is_digit(s_[pos_])) digits.push_back(s_[pos_++]);
    if (pos_ < s_.size() && s_[pos_] == ',' && !digits.empty()) {
      if (digits.size() > 3) return std::nullopt;
      while (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        size_t n = 0;
        while (pos_ < s_.size() && is_digit(s_[pos_]) && n < 4) {
          digits.push_back(s_[pos_++]);
          ++n;
        }
        if (n != 3) return std::nullopt;
      }
      if (pos_ < s_.size() && is_digit(s_[pos_])) return std::nullopt;
    }
    const bool had_int = !digits.empty();
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      while (pos_ < s_.size() && is_digit(s_[pos_])) {
        digits.push_back(s_[pos_++]);
        ++frac_digits;
      }
      if (!had_int && frac_digits == 0) return std::nullopt;
    }
    if (digits.empty() || pos_ == start) return std::nullopt;
    MathValue v;
    v.num_ = nat_from_digits(digits);
    v.den_ = nat_from_digits("1" + std::string(frac_digits, '0'));
    return v;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

std::optional<MathValue> MathValue::parse(std::string_view text) {
  const std::string s = strip_math_wrappers(text);
  if (static_cast<size_t>(std::count_if(s.begin(), s.end(), is_digit)) > kMaxValueDigits)
    return std::nullopt;
  return MathValueParser(s).parse_all();
}

bool MathValue::operator==(const MathValue& other) const {
  if (is_zero() || other.is_zero()) return is_zero() && other.is_zero();
  if (negative_ != other.negative_) return false;
  return nat_mul(num_, other.den_) == nat_mul(other.num_, den_);
}

bool last_boxed(std::string_view s, std::string* content) {
  static constexpr std::string_view kBoxed = "\\boxed";
  size_t search_end = s.size();
  while (search_end > 0) {
    const size_t at = s.rfind(kBoxed, search_end - 1);
    if (at == std::string_view::npos) break;
    size_t i = at + kBoxed.size();
    while (i < s.size() && is_space(s[i])) ++i;
    if (i < s.size() && s[i] == '{') {
      const size_t end = match_brace(s, i);
      if (end != std::string_view::npos) {
        *content = std::string(s.substr(i + 1, end - i - 2));
        return true;
      }
    }
    search_end = at;
  }
  content->clear();
  return false;
}

MathAnswerSource extract_math_answer(const std::string& response, std::string* answer) {
  if (extract_answer(response, answer)) {
    std::string boxed;
    if (last_boxed(*answer, &boxed)) *answer = std::string(trim(boxed));
    return MathAnswerSource::kAnswerBlock;
  }
  if (last_boxed(response, answer)) {
    *answer = std::string(trim(*answer));
    return MathAnswerSource::kBoxed;
  }
  answer->clear();
  return MathAnswerSource::kNone;
}

std::string strip_math_wrappers(std::string_view s) {
  const std::string text = replace_unicode_minus(s);
  std::string_view cur = text;
  for (;;) {
    const std::string_view next = strip_once(cur);
    if (next == cur) break;
    cur = next;
  }
  return std::string(cur);
}

std::string normalize_math_string(std::string_view s) {
  const std::string stripped = strip_math_wrappers(s);
  std::string out;
  bool pending_space = false;
  for (char c : stripped) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

bool math_equivalent(std::string_view answer, std::string_view reference) {
  const std::optional<MathValue> a = MathValue::parse(answer);
  if (a) {
    const std::optional<MathValue> r = MathValue::parse(reference);
    if (r) return *a == *r;
  }
  return normalize_math_string(answer) == normalize_math_string(reference);
}

Verdict verify_math(const std::string& response, const std::string& reference) {
  Verdict v;
  v.format_reward = check_format(response) ? 1.0 : 0.0;
  if (trim(reference).empty()) {
    v.reason = "empty reference";
    return v;
  }
  if (extract_math_answer(response, &v.extracted) == MathAnswerSource::kNone) {
    v.reason = "no answer: neither an <answer> block nor a \\boxed{}";
    return v;
  }
  if (!math_equivalent(v.extracted, reference)) {
    v.reason = "wrong answer: got '" + echo(v.extracted) + "', expected '" +
               echo(trim(reference)) + "'";
    return v;
  }
  v.reward = 1;
  v.reason = "correct";
  return v;
}

}  // namespace m1
