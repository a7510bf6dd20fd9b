#include "actors/judge/math_verifier.h"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

namespace m1 {
namespace {

std::string extract(const std::string& response, MathAnswerSource* src = nullptr) {
  std::string out;
  MathAnswerSource s = extract_math_answer(response, &out);
  if (src) *src = s;
  return out;
}

TEST_CASE("math_verifier: extraction prefers the answer block, else the last balanced boxed") {
  MathAnswerSource src;
  CHECK(extract("<think>\\boxed{3}</think><answer> 7 </answer>", &src) == "7");
  CHECK(src == MathAnswerSource::kAnswerBlock);
  CHECK(extract("<answer>so x = \\boxed{12} and \\boxed{13}</answer>", &src) == "13");
  CHECK(src == MathAnswerSource::kAnswerBlock);
  CHECK(extract("first \\boxed{1} then \\boxed{ 2 } end", &src) == "2");
  CHECK(src == MathAnswerSource::kBoxed);
  CHECK(extract("\\boxed{\\frac{1}{2}}", &src) == "\\frac{1}{2}");
  // A truncated last box is skipped in favour of the previous balanced one.
  CHECK(extract("\\boxed{5} then \\boxed{\\frac{1}{2}", &src) == "5");
  CHECK(src == MathAnswerSource::kBoxed);
  // Escaped braces do not count.
  CHECK(extract("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}");
  CHECK(extract("\\boxed {42}") == "42");
  CHECK(extract("no answer here", &src).empty());
  CHECK(src == MathAnswerSource::kNone);
  CHECK(extract("\\boxed{unclosed", &src).empty());
  CHECK(src == MathAnswerSource::kNone);
  // An unterminated answer block falls back to boxed.
  CHECK(extract("<answer>3 \\boxed{4}", &src) == "4");
  CHECK(src == MathAnswerSource::kBoxed);
  std::string s;
  CHECK_FALSE(last_boxed("boxed{1}", &s));
}

TEST_CASE("math_verifier: wrappers, dollars, trailing periods") {
  CHECK(strip_math_wrappers("  $5$. ") == "5");
  CHECK(strip_math_wrappers("\\$12.50") == "12.50");
  CHECK(strip_math_wrappers("\\boxed{\\text{Paris}}.") == "Paris");
  CHECK(strip_math_wrappers("\\(\\frac12\\)") == "\\frac12");
  CHECK(strip_math_wrappers("\\[ 3 \\]") == "3");
  CHECK(strip_math_wrappers("$$x$$") == "x");
  CHECK(strip_math_wrappers("\\textbf{B}") == "B");
  CHECK(strip_math_wrappers("\\mathrm{kg}") == "kg");
  CHECK(strip_math_wrappers("\xE2\x88\x92" "4") == "-4");
  // Not a whole-string wrapper: left alone.
  CHECK(strip_math_wrappers("\\boxed{1} + \\boxed{2}") == "\\boxed{1} + \\boxed{2}");
  CHECK(normalize_math_string("  Hello \t  World\n") == "hello world");
  CHECK(normalize_math_string("$\\text{New  York}$.") == "new york");
}

TEST_CASE("math_verifier: number grammar") {
  const std::vector<std::string> numbers = {
      "0", "-0", "+7", "007", "1,234", "12,345,678", "3.25", ".5", "5.", "-0.125", "1/2",
      "-3 / 4", "\\frac{1}{2}", "\\dfrac{3}{4}", "\\tfrac{1}{3}", "\\frac12", "-\\frac{-1}{2}",
      "\\frac{\\frac{1}{2}}{3}", "{1}/{2}", "\\frac{1.5}{3}", "$\\boxed{-2}$."};
  for (const std::string& s : numbers) {
    INFO("text: " << s);
    CHECK(parse_math_value(s).has_value());
  }
  const std::vector<std::string> non_numbers = {
      "",      "x",      "1,23",     "1234,567", "12,3456", "1 2",       "1/0",    "\\frac{1}{0}",
      "1e3",   "--5",    "1/2/3",    ".",        "1..2",    "\\frac{1}", "(1, 2)", "5 apples",
      "0x10",  "\\frac{a}{b}", "1,000.5.5", "2^3"};
  for (const std::string& s : non_numbers) {
    INFO("text: " << s);
    CHECK_FALSE(parse_math_value(s).has_value());
  }
}

TEST_CASE("math_verifier: equivalence by exact rational value") {
  const std::vector<std::pair<std::string, std::string>> equal = {
      {"0.5", "1/2"},
      {"\\frac{1}{2}", "0.5"},
      {"\\dfrac{2}{4}", ".5"},
      {"\\frac12", "1/2"},
      {"1,000", "1000"},
      {"1,234,567", "1234567.000"},
      {"-0.75", "-\\frac{3}{4}"},
      {"\\frac{-3}{4}", "-3/4"},
      {"\\frac{3}{-4}", "-0.75"},
      {"-\\frac{-3}{4}", "0.75"},
      {"-0", "0"},
      {"0.000", "-0/5"},
      {"+42", "042"},
      {"$42$", "42."},
      {"\\boxed{42}", "42"},
      {"\\$5", "5.00"},
      {"2/6", "\\frac{1}{3}"},
      {"\\frac{1.5}{3}", "\\frac{1}{2}"},
      // Arbitrary length: beyond 64 bits.
      {"123456789012345678901234567890123456789", "123,456,789,012,345,678,901,234,567,890,123,456,789"},
      {"100000000000000000000000000000/200000000000000000000000000000", "0.5"},
      {"0.3333333333333333333333333333", "3333333333333333333333333333/10000000000000000000000000000"},
  };
  for (const auto& [a, b] : equal) {
    INFO(a << " vs " << b);
    CHECK(math_equivalent(a, b));
    CHECK(math_equivalent(b, a));
  }
  const std::vector<std::pair<std::string, std::string>> different = {
      {"0.5", "0.50001"},
      {"1/3", "0.3333333333"},
      {"-1/2", "1/2"},
      {"123456789012345678901234567890123456789", "123456789012345678901234567890123456788"},
      {"1,23", "123"},
      {"2", "\\frac{1}{2}"},
      {"1e3", "1000"},
  };
  for (const auto& [a, b] : different) {
    INFO(a << " vs " << b);
    CHECK_FALSE(math_equivalent(a, b));
    CHECK_FALSE(math_equivalent(b, a));
  }
}

TEST_CASE("math_verifier: non-numeric answers compare as normalised strings") {
  CHECK(math_equivalent("Paris", "paris"));
  CHECK(math_equivalent("  New   York ", "new york."));
  CHECK(math_equivalent("\\text{Yes}", "YES"));
  CHECK(math_equivalent("x + 1", "X  +  1"));
  CHECK_FALSE(math_equivalent("x+1", "x + 1"));  // whitespace collapsed, not removed
  CHECK_FALSE(math_equivalent("paris", "london"));
  CHECK_FALSE(math_equivalent("1/0", "0"));
  CHECK(math_equivalent("1/0", "1/0"));  // not a number: identical strings still match
}

TEST_CASE("math_verifier: digit bound makes huge literals strings, still compared exactly") {
  const std::string huge(kMaxValueDigits + 1, '7');
  CHECK_FALSE(parse_math_value(huge).has_value());
  CHECK(math_equivalent(huge, huge));
  CHECK_FALSE(math_equivalent(huge, huge + "7"));
  const std::string big(kMaxValueDigits / 2, '9');
  CHECK(parse_math_value(big + "/" + big).has_value());
  CHECK(math_equivalent(big + "/" + big, "1"));
}

TEST_CASE("math_verifier: verify_math verdicts") {
  Verdict v = verify_math("<think>half</think><answer>\\frac{1}{2}</answer>", "0.5");
  CHECK(v.reward == 1);
  CHECK(v.format_reward == 1);
  CHECK(v.extracted == "\\frac{1}{2}");
  CHECK(v.reason == "correct");

  // Boxed-only: correct, but the answer markup is missing.
  v = verify_math("The answer is \\boxed{1,000}.", "1000");
  CHECK(v.reward == 1);
  CHECK(v.format_reward == 0);
  CHECK(v.extracted == "1,000");

  v = verify_math("<answer>3</answer>", "4");
  CHECK(v.reward == 0);
  CHECK(v.format_reward == 1);
  CHECK(v.reason == "wrong answer: got '3', expected '4'");

  v = verify_math("I do not know", "4");
  CHECK(v.reward == 0);
  CHECK(v.extracted.empty());
  CHECK(v.reason == "no answer: neither an <answer> block nor a \\boxed{}");

  v = verify_math("<answer>4</answer>", "  ");
  CHECK(v.reward == 0);
  CHECK(v.reason == "empty reference");

  const std::string long_answer(200, 'z');
  v = verify_math("<answer>" + long_answer + "</answer>", "a");
  CHECK(v.reason == "wrong answer: got '" + long_answer.substr(0, 80) + "...', expected 'a'");

  // Deterministic: same input, same verdict.
  for (int i = 0; i < 3; ++i) {
    Verdict w = verify_math("<answer>-\\dfrac{6}{8}</answer>", "-0.75");
    CHECK(w.reward == 1);
    CHECK(w.reason == "correct");
  }
}

}  // namespace
}  // namespace m1
