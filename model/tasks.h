// Built-in verifiable tasks: prompt generators with a difficulty knob and rule verifiers. The
// same families feed SFT (with demonstrations) and the RL pipeline (prompts + verifier).
// Response markup: the answer is the text between "<answer>" and "</answer>"; an optional
// "<think>...</think>" may precede it. The format check passes when the response holds exactly
// one well-formed answer block, optionally preceded by exactly one think block, with only
// whitespace outside the blocks and no markup tags inside them. The response is the decoded
// completion without bos/eos.
// Thread safety: Task objects are immutable after construction; generation takes an Rng.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/rng.h"
#include "base/status.h"

namespace m1 {

struct TaskExample {
  std::string task;          // family name, e.g. "add" or "sort"
  int difficulty = 1;        // the knob the example was drawn at
  std::string prompt;        // text given to the model (no special tokens other than markup)
  std::string answer;        // the reference answer (canonical form)
  std::string demonstration; // a correct full response: "[<think>...</think>]<answer>...</answer>"
};

struct Verdict {
  double reward = 0;          // 1 if the extracted answer equals the reference, else 0
  double format_reward = 0;   // 1 if the markup is well formed, else 0
  std::string extracted;      // the extracted answer text, whitespace-trimmed ("" when none)
  // One of: "correct", "wrong answer: got 'X', expected 'Y'", "no answer block",
  // "unparsable answer 'X'" (add: not an integer), "unparsable reference 'Y'" (add: bad
  // reference). X is cut to 80 bytes followed by "..." when longer.
  std::string reason;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual int max_difficulty() const = 0;
  // Deterministic in the Rng state. REQUIRES: 1 ≤ difficulty ≤ max_difficulty() (else aborts).
  virtual TaskExample sample(Rng& rng, int difficulty) const = 0;
  // Pure function of (response, answer): reward compares the extracted answer with the reference
  // (add, add_steps: as integers, sign and leading zeros tolerated; sort: as whitespace-separated tokens);
  // format_reward = check_format(response), whatever the reward.
  virtual Verdict verify(const std::string& response, const std::string& answer) const = 0;
};

// "add": a + b with each operand uniform in [0, 10^difficulty), difficulty 1..9; prompt
//        "12+345=", answer "357".
// "sort": `difficulty`+2 digits 0..9 (difficulty 1..10, so up to 12) to sort ascending; prompt
//        "sort 3 1 2:", answer "1 2 3".
// "add_steps": "add" (same prompts, answers and verifier) whose demonstrations think first, one
//        column per step from the ones up: 47+85= → "<think>7+5+0=12 4+8+1=13</think>
//        <answer>132</answer>" (digit of a + digit of b + carry in = column sum).
// Other demonstrations are "<answer>" + answer + "</answer>".
std::unique_ptr<Task> make_task(const std::string& name);   // nullptr when unknown
std::vector<std::string> task_names();
// The text between the first "<answer>" and the next "</answer>", ASCII whitespace trimmed;
// returns false (and clears *answer) when there is no such pair.
bool extract_answer(const std::string& response, std::string* answer);
// True when the response is: [ws] ["<think>" t "</think>" ws] "<answer>" a "</answer>" [ws], where
// t and a hold none of the four think/answer tags and ws is ASCII whitespace only.
bool check_format(const std::string& response);

}  // namespace m1
