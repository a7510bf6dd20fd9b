// ByteTokenizer: ids 0..255 are the bytes themselves, ids 256.. are the special tokens in the
// order of kSpecials. Encoding scans left to right; at each position a literal special-token
// markup wins over bytes (no markup is a prefix of another, so the match is unique).
#include "model/tokenizer.h"

namespace m1 {
namespace {

constexpr int kNumBytes = 256;
constexpr const char* kSpecials[] = {"<bos>",    "<eos>",  "<pad>",    "<think>",
                                     "</think>", "<answer>", "</answer>"};

}  // namespace

ByteTokenizer::ByteTokenizer() {
  for (const char* s : kSpecials) specials_.emplace_back(s);
}

int ByteTokenizer::vocab_size() const { return kNumBytes + static_cast<int>(specials_.size()); }

std::vector<int> ByteTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  ids.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    int matched = -1;
    if (text[i] == '<') {
      for (size_t s = 0; s < specials_.size(); ++s) {
        const std::string& m = specials_[s];
        if (text.compare(i, m.size(), m) == 0) {
          matched = static_cast<int>(s);
          break;
        }
      }
    }
    if (matched >= 0) {
      ids.push_back(kNumBytes + matched);
      i += specials_[matched].size();
    } else {
      ids.push_back(static_cast<unsigned char>(text[i]));
      ++i;
    }
  }
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int>& ids, bool keep_special) const {
  std::string out;
  out.reserve(ids.size());
  for (int id : ids) {
    if (id >= 0 && id < kNumBytes) {
      out.push_back(static_cast<char>(static_cast<unsigned char>(id)));
    } else if (id >= kNumBytes && id < vocab_size()) {
      const bool control = id == bos_id() || id == eos_id() || id == pad_id();
      if (!control || keep_special) out += specials_[id - kNumBytes];
    } else {
      out += "<?" + std::to_string(id) + ">";
    }
  }
  return out;
}

int ByteTokenizer::special_id(const std::string& markup) const {
  for (size_t s = 0; s < specials_.size(); ++s)
    if (specials_[s] == markup) return kNumBytes + static_cast<int>(s);
  return -1;
}

std::vector<int> encode_prompt(const Tokenizer& tok, const std::string& text) {
  std::vector<int> t = {tok.bos_id()};
  const std::vector<int> p = tok.encode(text);
  t.insert(t.end(), p.begin(), p.end());
  return t;
}

}  // namespace m1
