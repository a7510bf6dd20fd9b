#include "model/tasks.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "base/rng.h"

namespace m1 {
namespace {

TEST_CASE("tasks: registry") {
  CHECK(task_names() == std::vector<std::string>{"add", "sort", "add_steps"});
  for (const std::string& name : task_names()) {
    auto t = make_task(name);
    REQUIRE(t != nullptr);
    CHECK(t->name() == name);
  }
  CHECK(make_task("nope") == nullptr);
  CHECK(make_task("add")->max_difficulty() == 9);
  CHECK(make_task("sort")->max_difficulty() == 10);
  CHECK(make_task("add_steps")->max_difficulty() == 9);
}

TEST_CASE("tasks: add_steps thinks one column per step, carries included") {
  auto t = make_task("add_steps");
  bool saw_carry_out = false, saw_uneven = false;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Rng rng(seed), same(seed);
    const int d = 1 + int(seed % 4);
    TaskExample ex = t->sample(rng, d);
    TaskExample plain = make_task("add")->sample(same, d);
    INFO("seed " << seed << " " << ex.prompt << " " << ex.demonstration);
    CHECK(ex.prompt == plain.prompt);  // the same problems as "add"
    CHECK(ex.answer == plain.answer);
    // Recompute every column from the think block: a_i + b_i + carry_i = s_i, carry_{i+1} = s_i / 10,
    // and the answer's digits are the columns' ones digits (and the final carry) read backwards.
    const size_t open = ex.demonstration.find("<think>") + 7, close = ex.demonstration.find("</think>");
    std::string think = ex.demonstration.substr(open, close - open), digits;
    int carry = 0, da, db, c, sum, used = 0;
    const char* p = think.c_str();
    while (std::sscanf(p, "%d+%d+%d=%d%n", &da, &db, &c, &sum, &used) == 4) {
      CHECK(c == carry);
      CHECK(sum == da + db + c);
      digits.insert(digits.begin(), char('0' + sum % 10));
      carry = sum / 10;
      p += used;
      if (*p == ' ') ++p;
    }
    CHECK(*p == '\0');
    if (carry) digits.insert(digits.begin(), '1');
    saw_carry_out |= carry != 0;
    saw_uneven |= ex.prompt.find('+') != ex.prompt.size() - ex.prompt.find('+') - 2;
    CHECK(digits == ex.answer);
  }
  CHECK(saw_carry_out);
  CHECK(saw_uneven);
  CHECK(t->verify("<think>7+5+0=12 4+8+1=13</think><answer>132</answer>", "132").reward == 1);
  CHECK(t->verify("<think>7+5+0=12</think><answer>131</answer>", "132").reason == "wrong answer: got '131', expected '132'");
}

TEST_CASE("tasks: demonstrations verify correct with format 1 at every difficulty") {
  for (const std::string& name : task_names()) {
    auto t = make_task(name);
    for (int d = 1; d <= t->max_difficulty(); ++d) {
      for (uint64_t seed = 0; seed < 50; ++seed) {
        Rng rng(seed);
        TaskExample ex = t->sample(rng, d);
        INFO(name << " difficulty " << d << " seed " << seed << " prompt " << ex.prompt);
        CHECK(ex.task == name);
        CHECK(ex.difficulty == d);
        if (name == "add_steps")
          CHECK(ex.demonstration.ends_with("</think><answer>" + ex.answer + "</answer>"));
        else
          CHECK(ex.demonstration == "<answer>" + ex.answer + "</answer>");
        Verdict v = t->verify(ex.demonstration, ex.answer);
        CHECK(v.reward == 1);
        CHECK(v.format_reward == 1);
        CHECK(v.reason == "correct");
        CHECK(v.extracted == ex.answer);
        Verdict vt = t->verify("<think>easy</think>\n" + ex.demonstration, ex.answer);
        CHECK(vt.reward == 1);
        CHECK(vt.format_reward == (ex.demonstration.starts_with("<think>") ? 0 : 1));  // one think block at most
      }
    }
  }
}

TEST_CASE("tasks: add examples are well formed") {
  auto t = make_task("add");
  for (int d = 1; d <= 9; ++d) {
    uint64_t limit = 1;
    for (int i = 0; i < d; ++i) limit *= 10;
    bool saw_long = false;
    for (uint64_t seed = 0; seed < 200; ++seed) {
      Rng rng(seed);
      TaskExample ex = t->sample(rng, d);
      INFO("difficulty " << d << " seed " << seed << " prompt " << ex.prompt);
      const size_t plus = ex.prompt.find('+');
      REQUIRE(plus != std::string::npos);
      REQUIRE(ex.prompt.back() == '=');
      const uint64_t a = std::stoull(ex.prompt.substr(0, plus));
      const uint64_t b = std::stoull(ex.prompt.substr(plus + 1, ex.prompt.size() - plus - 2));
      CHECK(a < limit);
      CHECK(b < limit);
      CHECK(ex.answer == std::to_string(a + b));
      CHECK(ex.prompt == std::to_string(a) + "+" + std::to_string(b) + "=");
      if (std::to_string(a).size() == size_t(d)) saw_long = true;
    }
    CHECK(saw_long);
  }
}

TEST_CASE("tasks: sort examples are well formed") {
  auto t = make_task("sort");
  for (int d = 1; d <= 10; ++d) {
    for (uint64_t seed = 0; seed < 100; ++seed) {
      Rng rng(seed);
      TaskExample ex = t->sample(rng, d);
      INFO("difficulty " << d << " seed " << seed << " prompt " << ex.prompt);
      REQUIRE(ex.prompt.rfind("sort ", 0) == 0);
      REQUIRE(ex.prompt.back() == ':');
      std::string digits, sorted;
      const std::string body = ex.prompt.substr(5, ex.prompt.size() - 6);
      for (size_t i = 0; i < body.size(); ++i) {
        if (i % 2 == 0) {
          REQUIRE(body[i] >= '0');
          REQUIRE(body[i] <= '9');
          digits += body[i];
        } else {
          REQUIRE(body[i] == ' ');
        }
      }
      CHECK(digits.size() == size_t(d + 2));
      std::sort(digits.begin(), digits.end());
      for (size_t i = 0; i < digits.size(); ++i) {
        if (i) sorted += ' ';
        sorted += digits[i];
      }
      CHECK(ex.answer == sorted);
    }
  }
}

TEST_CASE("tasks: same seed, same examples; different seeds differ") {
  for (const std::string& name : task_names()) {
    auto t = make_task(name);
    Rng r1(7), r2(7), r3(8);
    bool any_diff = false;
    for (int i = 0; i < 20; ++i) {
      const int d = 1 + i % t->max_difficulty();
      TaskExample a = t->sample(r1, d), b = t->sample(r2, d), c = t->sample(r3, d);
      CHECK(a.prompt == b.prompt);
      CHECK(a.answer == b.answer);
      CHECK(a.demonstration == b.demonstration);
      any_diff |= a.prompt != c.prompt;
    }
    CHECK(any_diff);
  }
}

TEST_CASE("tasks: add verifier") {
  auto t = make_task("add");
  Verdict v = t->verify("<answer>358</answer>", "357");
  CHECK(v.reward == 0);
  CHECK(v.format_reward == 1);
  CHECK(v.extracted == "358");
  CHECK(v.reason == "wrong answer: got '358', expected '357'");

  for (const char* ok : {"<answer>357</answer>", "<answer> 357 </answer>", "<answer>0357</answer>",
                         "<answer>+357</answer>", "<answer>\n357\n</answer>"}) {
    INFO(ok);
    Verdict w = t->verify(ok, "357");
    CHECK(w.reward == 1);
    CHECK(w.format_reward == 1);
  }
  CHECK(t->verify("<answer>-0</answer>", "0").reward == 1);
  CHECK(t->verify("<answer>000</answer>", "0").reward == 1);
  CHECK(t->verify("<answer>-357</answer>", "357").reward == 0);
  // Far beyond 64 bits: compared as digit strings, no overflow.
  CHECK(t->verify("<answer>123456789012345678901234567890</answer>", "357").reward == 0);

  Verdict u = t->verify("<answer>three</answer>", "3");
  CHECK(u.reward == 0);
  CHECK(u.format_reward == 1);
  CHECK(u.reason == "unparsable answer 'three'");
  for (const char* bad : {"<answer></answer>", "<answer>3 5 7</answer>", "<answer>35.7</answer>",
                          "<answer>+</answer>", "<answer>1e3</answer>"}) {
    INFO(bad);
    Verdict w = t->verify(bad, "357");
    CHECK(w.reward == 0);
    CHECK(w.reason.rfind("unparsable answer '", 0) == 0);
  }

  Verdict n = t->verify("357", "357");
  CHECK(n.reward == 0);
  CHECK(n.format_reward == 0);
  CHECK(n.extracted.empty());
  CHECK(n.reason == "no answer block");

  // A long wrong answer is echoed cut to 80 bytes.
  Verdict l = t->verify("<answer>" + std::string(200, '9') + "</answer>", "1");
  CHECK(l.reason == "wrong answer: got '" + std::string(80, '9') + "...', expected '1'");
}

TEST_CASE("tasks: sort verifier") {
  auto t = make_task("sort");
  CHECK(t->verify("<answer>1 2 3</answer>", "1 2 3").reward == 1);
  CHECK(t->verify("<answer>  1   2\t3 </answer>", "1 2 3").reward == 1);
  Verdict v = t->verify("<answer>3 2 1</answer>", "1 2 3");
  CHECK(v.reward == 0);
  CHECK(v.format_reward == 1);
  CHECK(v.reason == "wrong answer: got '3 2 1', expected '1 2 3'");
  CHECK(t->verify("<answer>123</answer>", "1 2 3").reward == 0);
  CHECK(t->verify("<answer>1 2</answer>", "1 2 3").reward == 0);
  CHECK(t->verify("<answer>1 2 3 3</answer>", "1 2 3").reward == 0);
  CHECK(t->verify("<answer></answer>", "1 2 3").reward == 0);
  CHECK(t->verify("1 2 3", "1 2 3").reason == "no answer block");
}

TEST_CASE("tasks: extract_answer takes the first block") {
  std::string a = "junk";
  CHECK_FALSE(extract_answer("no block", &a));
  CHECK(a.empty());
  CHECK_FALSE(extract_answer("<answer>open only", &a));
  CHECK_FALSE(extract_answer("</answer>5<answer>", &a));
  CHECK(extract_answer("<answer> 5 </answer><answer>6</answer>", &a));
  CHECK(a == "5");
  CHECK(extract_answer("x </answer> <answer>7</answer>", &a));
  CHECK(a == "7");
}

TEST_CASE("tasks: format check") {
  for (const char* ok : {"<answer>5</answer>", "  <answer>5</answer>\n", "<answer></answer>",
                         "<think>5 = 2 + 3</think><answer>5</answer>",
                         "\n<think>\nhmm\n</think>\n\n<answer>5</answer>\n",
                         "<think></think><answer>5</answer>"}) {
    INFO(ok);
    CHECK(check_format(ok));
  }
  for (const char* bad : {
           "",                                                   // nothing
           "5",                                                  // no block
           "<answer>5",                                          // unclosed
           "5</answer>",                                         // unopened
           "</answer>5<answer>",                                 // reversed
           "<answer>5</answer> thanks",                          // text after
           "so: <answer>5</answer>",                             // text before
           "<answer>5</answer><answer>6</answer>",               // two answers
           "<answer>5<answer>6</answer>",                        // nested open
           "<think>a</think><think>b</think><answer>5</answer>", // two thinks
           "<answer>5</answer><think>a</think>",                 // think after
           "<think>a<answer>5</answer></think>",                 // answer inside think
           "<answer><think>a</think>5</answer>",                 // think inside answer
           "<think>a<answer>5</answer>",                         // think unclosed
           "<think>a</think>x<answer>5</answer>",                // text between
           "</think><answer>5</answer>",                         // stray close
           "<think>a</think>",                                   // think only
       }) {
    INFO(bad);
    CHECK_FALSE(check_format(bad));
  }
  // Verdicts carry the format reward independently of correctness.
  auto t = make_task("add");
  Verdict v = t->verify("The answer is <answer>5</answer> I think.", "5");
  CHECK(v.reward == 1);
  CHECK(v.format_reward == 0);
  Verdict w = t->verify("<think>2+3</think><answer>6</answer>", "5");
  CHECK(w.reward == 0);
  CHECK(w.format_reward == 1);
}

}  // namespace
}  // namespace m1
