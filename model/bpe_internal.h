// BpeTokenizer's state, shared by bpe_tokenizer.cc (loading tokenizer.json) and bpe_encode.cc
// (encoding and decoding). Not part of the public interface.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/bpe_regex.h"
#include "model/bpe_tokenizer.h"

namespace m1 {
namespace bpe {

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

struct AddedToken {
  std::string content;
  int id = -1;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = false;
};

// A byte trie of added-token contents for leftmost-longest matching.
struct Trie {
  struct Node {
    std::vector<std::pair<unsigned char, int>> next;  // sorted by byte
    int token = -1;                                    // index into Impl::added, or -1
  };
  std::vector<Node> nodes{1};
  bool first[256] = {};
  bool empty() const { return nodes.size() == 1; }
  void insert(const std::string& s, int token);
  // The longest token matching at s[i..] (its index), or -1; *len its length.
  int longest_at(std::string_view s, size_t i, size_t* len) const;
};

// (a << 32 | b) -> (rank << 32 | new id) for the merges: open addressing, linear probing. Keys
// are pairs of ids below 2^30, so all-ones marks an empty slot.
class PairMap {
 public:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  void reserve(size_t n);
  // Sets or overwrites.
  void set(uint64_t key, uint64_t value);
  // The value, or kEmpty.
  uint64_t find(uint64_t key) const {
    if (keys_.empty()) return kEmpty;
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == key) return vals_[i];
      if (keys_[i] == kEmpty) return kEmpty;
    }
  }
  size_t size() const { return n_; }

 private:
  static size_t mix(uint64_t k) { return size_t((k * 0x9E3779B97F4A7C15ull) >> 20); }
  std::vector<uint64_t> keys_, vals_;
  size_t mask_ = 0, n_ = 0;
};

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
  std::unique_ptr<Regex> re;
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
};

enum class DecodeStep { kByteLevel, kByteFallback, kFuse };

// Word -> ids cache for BPE results: a small direct-mapped cache per thread in front of a shared
// one sharded so that concurrent encoders rarely meet. Entries of a per-thread cache belong to one
// WordCache (its id, never reused), so a tokenizer never sees another's.
class WordCache {
 public:
  static constexpr size_t kShards = 32, kMaxPerShard = 4096, kMaxKey = 256, kThreadSlots = 8192;
  WordCache();
  bool get(std::string_view key, size_t hash, std::vector<int>* out) const;
  void put(std::string_view key, size_t hash, const int* ids, size_t n) const;

 private:
  uint64_t id_;
  struct Shard {
    mutable std::mutex mu;
    StrMap<std::vector<int>> map;
  };
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace bpe

struct BpeTokenizer::Impl {
  std::string source;
  // Model.
  bpe::StrMap<int> vocab;                 // token -> id (model vocab)
  std::vector<std::string> model_tokens;  // id -> token; model_has[id] says whether it is one
  std::vector<char> model_has;
  bpe::PairMap merges;  // (a << 32 | b) -> (rank << 32 | new id)
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  int unk_id = -1;
  int byte_fallback_id[256];  // "<0xNN>" ids (byte_fallback), or -1
  // Pre-tokenizer: split steps, then (when byte_level) the ByteLevel mapping. ByteLevel's own
  // prefix space and regex are at steps[byte_level_step] (its regex is the last step).
  std::vector<bpe::SplitStep> steps;
  bool byte_level = false, prefix_space = false;
  size_t byte_level_step = SIZE_MAX;
  int byte_id[256];  // byte-level: the id of each byte's character, or -1 when the vocab lacks it
  // Added tokens.
  std::vector<bpe::AddedToken> added;
  bpe::StrMap<int> added_by_content;  // content -> index into added
  std::unordered_map<int, int> added_by_id;  // id -> index into added
  bpe::Trie trie_raw, trie_normalized;
  std::unique_ptr<bpe::Regex> word_re, space_re;  // \w and \s, for single_word, lstrip, rstrip
  // Decoder.
  bool has_decoder = false;
  std::vector<bpe::DecodeStep> decoder;
  bool fast_decode = false;            // decoder is exactly ByteLevel
  std::vector<std::string> id_bytes;   // fast_decode: each id's bytes
  int vocab_size = 0, bos = -1, eos = -1, pad = -1;
  bpe::WordCache cache;

  // Encoding (bpe_encode.cc).
  void encode_text(std::string_view text, std::vector<int>* out) const;
  void encode_gap(std::string_view gap, std::vector<int>* out) const;
  void pretokenize(size_t step, std::string_view s, std::vector<int>* out) const;
  void split_and_continue(size_t step, std::string_view s, std::vector<int>* out) const;
  void bpe_piece(std::string_view piece, std::vector<int>* out) const;
  void initial_symbols(std::string_view piece, std::vector<int>* syms) const;
  std::string token_of(int id) const;  // "" when none
  std::string decode_tokens(const std::vector<int>& ids, bool skip_special, bool skip_control,
                            bool mark_unknown) const;
};

namespace bpe {
// Hugging Face's BPE merge loop: repeatedly the pair of lowest rank (leftmost on ties) merges.
void merge_symbols(const PairMap& merges, std::vector<int>* syms);
// Its two implementations (merge_symbols picks by length; the tests check they agree).
void merge_symbols_quadratic(const PairMap& merges, std::vector<int>* syms);
void merge_symbols_heap(const PairMap& merges, std::vector<int>* syms);
// UTF-8 with every maximal invalid subsequence replaced by U+FFFD (Rust's from_utf8_lossy).
std::string utf8_lossy(std::string_view s);
// Length of the valid UTF-8 prefix of s.
size_t utf8_valid_prefix(std::string_view s);
}  // namespace bpe

}  // namespace m1
