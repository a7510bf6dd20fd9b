#include "model/bpe_train.h"

#include <map>
#include <queue>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "model/bpe_internal.h"

namespace m1 {

const char* const kGpt4SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::vector<std::string> kM1SpecialTokens = {"<end_of_document>", "<beginning_of_sentence>",
                                                   "<end_of_sentence>", "<begin_of_document>",
                                                   "<think>",           "</think>"};

Result<std::string> train_bpe_tokenizer_json(const std::string& corpus, const BpeTrainOptions& opt) {
  M1_ASSIGN_OR_RETURN(auto re, bpe::Regex::compile(opt.pattern, false));
  // Words and their counts (the corpus's valid UTF-8 prefix only).
  const std::string_view text(corpus.data(), bpe::utf8_valid_prefix(corpus));
  std::map<std::string, int64_t> counts;
  size_t prev = 0;
  auto add = [&](size_t b, size_t e) {
    if (e > b) ++counts[std::string(text.substr(b, e - b))];
  };
  re->for_each_match(text, [&](size_t b, size_t e) {
    add(prev, b);
    add(b, e);
    prev = e;
  });
  add(prev, text.size());
  std::vector<std::vector<int>> words;
  std::vector<int64_t> freq;
  for (const auto& [w, c] : counts) {
    words.emplace_back(w.begin(), w.end());
    for (int& x : words.back()) x = x & 0xFF;
    freq.push_back(c);
  }
  std::vector<std::string> tokens;  // id -> bytes
  std::unordered_map<std::string, int> ids;
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(std::string(1, char(b)));
    ids[tokens.back()] = b;
  }
  // Pair counts and the words each pair occurs in.
  auto key = [](int a, int b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); };
  std::unordered_map<uint64_t, int64_t> pc;
  std::unordered_map<uint64_t, std::set<size_t>> where;
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      pc[key(words[w][i], words[w][i + 1])] += freq[w];
      where[key(words[w][i], words[w][i + 1])].insert(w);
    }
  // Max-heap on (count, then smaller pair): entries go stale and are checked when popped.
  auto cmp = [](const std::pair<int64_t, uint64_t>& x, const std::pair<int64_t, uint64_t>& y) {
    return x.first != y.first ? x.first < y.first : x.second > y.second;
  };
  std::priority_queue<std::pair<int64_t, uint64_t>, std::vector<std::pair<int64_t, uint64_t>>, decltype(cmp)> q(cmp);
  for (const auto& [k, c] : pc) q.emplace(c, k);
  std::vector<std::pair<int, int>> merges;
  while (int(merges.size()) < opt.merges && !q.empty()) {
    const auto [c, k] = q.top();
    q.pop();
    auto it = pc.find(k);
    if (it == pc.end() || it->second != c || c < 2) continue;
    const int a = int(k >> 32), b = int(uint32_t(k));
    const std::string merged = tokens[size_t(a)] + tokens[size_t(b)];
    auto [known, fresh] = ids.emplace(merged, int(tokens.size()));  // two merges may make one token
    const int nid = known->second;
    if (fresh) tokens.push_back(merged);
    merges.emplace_back(a, b);
    std::set<size_t> ws = std::move(where[k]);
    std::set<uint64_t> touched;
    for (size_t w : ws) {
      std::vector<int>& s = words[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) {  // take this word's pairs out, merge, put them back
        pc[key(s[i], s[i + 1])] -= freq[w];
        touched.insert(key(s[i], s[i + 1]));
      }
      std::vector<int> t;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          t.push_back(nid);
          ++i;
        } else {
          t.push_back(s[i]);
        }
      }
      s = std::move(t);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        pc[key(s[i], s[i + 1])] += freq[w];
        where[key(s[i], s[i + 1])].insert(w);
        touched.insert(key(s[i], s[i + 1]));
      }
    }
    for (uint64_t t : touched) {
      auto f = pc.find(t);
      if (f->second <= 0) {
        pc.erase(f);
        where.erase(t);
      } else {
        q.emplace(f->second, t);
      }
    }
  }
  // tokenizer.json: vocab in id order, merges as ["a", "b"] pairs, the specials after the vocab.
  auto show = [](const std::string& bytes) {
    std::string s;
    for (char c : bytes) s += byte_level_char(static_cast<unsigned char>(c));
    return s;
  };
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[show(tokens[i])] = i;
  nlohmann::ordered_json mj = nlohmann::ordered_json::array();
  for (const auto& [a, b] : merges) mj.push_back({show(tokens[size_t(a)]), show(tokens[size_t(b)])});
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (size_t i = 0; i < opt.added.size(); ++i)
    added.push_back({{"id", tokens.size() + i}, {"content", opt.added[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  nlohmann::ordered_json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", opt.pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", mj}}}};
  return j.dump(1);
}

}  // namespace m1
