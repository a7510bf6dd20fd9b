// Trains a small byte-level BPE and writes it as a Hugging Face tokenizer.json of the kind
// MiniMax-M1 ships (Sequence[Split(regex, Isolated), ByteLevel(use_regex false)], ByteLevel
// decoder, M1's special tokens as added tokens). For tests and `m1rl bench tokenizer`, where no
// real tokenizer.json is at hand; not a replacement for Hugging Face's trainer.
// Training: the corpus is split with the regex, words counted, then `merges` times the most
// frequent adjacent pair (ties: the pair of smaller ids) is merged everywhere. Deterministic.
// Thread safety: pure function.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace m1 {

// The GPT-4-style split pattern as Hugging Face tokenizer.json files write it (Llama 3's).
extern const char* const kGpt4SplitPattern;
// MiniMax-M1's special tokens as the trainer adds them, in this order after the merged tokens.
extern const std::vector<std::string> kM1SpecialTokens;

struct BpeTrainOptions {
  int merges = 1000;
  std::string pattern = kGpt4SplitPattern;
  std::vector<std::string> added = kM1SpecialTokens;  // special added tokens
};

Result<std::string> train_bpe_tokenizer_json(const std::string& corpus, const BpeTrainOptions& opt);

}  // namespace m1
