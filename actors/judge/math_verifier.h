// Math-answer verifier for user prompt sets (JSONL records with a free-form reference answer).
//
// Extraction (extract_math_answer):
//   1. the first "<answer>…</answer>" block (model/tasks.h extract_answer); when that block holds a
//      "\boxed{…}", the content of the last balanced one inside it;
//   2. else the content of the last "\boxed{…}" in the response whose braces balance (a truncated
//      "\boxed{12" is skipped in favour of an earlier complete one);
//   3. else none: reward 0, reason "no answer: neither an <answer> block nor a \boxed{}".
//   Brace matching skips escaped characters ("\{", "\}").
//
// Normalisation (strip_math_wrappers), applied to the answer and to the reference, repeated until
// nothing changes: ASCII whitespace trimmed; a whole-string "\boxed{X}", "\text{X}",
// "\textbf{X}", "\mathrm{X}", "\(X\)" or "\[X\]" unwrapped; leading "$" / "\$" and trailing "$"
// stripped; trailing periods stripped; the Unicode minus U+2212 read as '-'.
//
// Comparison (math_equivalent): when both sides parse as numbers (parse_math_value), they are equal
// iff their exact rational values are equal; otherwise their normalised strings
// (normalize_math_string: wrappers stripped, runs of whitespace collapsed to one space,
// ASCII lower-cased) are compared. Number grammar (whitespace allowed between tokens, not inside a
// literal):
//   value   := operand [ '/' operand ]
//   operand := [ '+' | '-' ] atom
//   atom    := literal | '{' value '}' | frac
//   frac    := ( "\frac" | "\dfrac" | "\tfrac" ) arg arg      arg := '{' value '}' | one digit
//   literal := int [ '.' digits* ] | '.' digits+
//   int     := digits+ | d{1,3} ( ',' ddd )+                  (commas only as thousands separators)
// so "0.5", ".5", "1/2", "\frac{1}{2}", "\dfrac12", "-\frac{-1}{-2}"… are all the value 1/2, and
// "1,234" == "1234". A zero denominator, a malformed comma group ("1,23"), or more than
// kMaxValueDigits digits in all makes the text a non-number (compared as a string). Integers are of
// arbitrary length (exact arithmetic, no overflow) up to that bound.
//
// Thread safety: pure functions, no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/tasks.h"

namespace m1 {

// Bound on the digits of a number (all literals together) parsed by value; keeps exact
// multiplication cheap (schoolbook, at most ~(kMaxValueDigits/9)^2 limb products).
constexpr size_t kMaxValueDigits = 10000;

// An exact rational p/q, q > 0, with arbitrary-length p and q (not reduced). Compared by value.
class MathValue {
 public:
  // The value of `text` after strip_math_wrappers; nullopt when it is not a number by the grammar
  // above.
  static std::optional<MathValue> parse(std::string_view text);
  bool operator==(const MathValue& other) const;
  bool is_zero() const { return num_.empty(); }
  bool negative() const { return negative_; }

  // Little-endian limbs in base 1e9, no leading zero limb; zero is the empty vector.
  using Nat = std::vector<uint32_t>;

 private:
  friend class MathValueParser;
  bool negative_ = false;  // never set for zero
  Nat num_;
  Nat den_{1};
};

enum class MathAnswerSource { kNone, kAnswerBlock, kBoxed };

// Applies the extraction rules above; *answer is whitespace-trimmed ("" and kNone when there is
// none). Returns the source.
MathAnswerSource extract_math_answer(const std::string& response, std::string* answer);
// The content of the last balanced "\boxed{…}" in s; false (and *content cleared) when none.
bool last_boxed(std::string_view s, std::string* content);
std::string strip_math_wrappers(std::string_view s);
std::string normalize_math_string(std::string_view s);
inline std::optional<MathValue> parse_math_value(std::string_view s) { return MathValue::parse(s); }
// Value equality when both sides are numbers, else normalised-string equality.
bool math_equivalent(std::string_view answer, std::string_view reference);

// reward = 1 when the extracted answer is math_equivalent to the reference, else 0;
// format_reward = check_format(response) (model/tasks.h: a boxed-only response scores 0 there);
// extracted = the extracted answer (trimmed, before normalisation);
// reason: "correct", "wrong answer: got 'X', expected 'Y'" (X cut to 80 bytes + "..."),
// "no answer: neither an <answer> block nor a \boxed{}", or "empty reference".
Verdict verify_math(const std::string& response, const std::string& reference);

}  // namespace m1
