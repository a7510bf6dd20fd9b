// A Hugging Face tokenizer.json byte-level BPE (the kind MiniMax-M1 ships) behind the Tokenizer
// interface, encoding and decoding as the Hugging Face `tokenizers` library does:
//   added tokens matched first (leftmost-longest; non-normalized ones, then normalized ones in the
//   gaps; single_word, lstrip, rstrip honoured), then the pre-tokenizer (Split with a regex or a
//   string, ByteLevel, or a Sequence of those; ByteLevel last), then BPE merges by rank on the
//   GPT-2 byte-to-unicode alphabet (byte_fallback <0xNN> tokens and unk_token where configured),
//   and the decoder (ByteLevel, ByteFallback, Fuse, or a Sequence of those; none = tokens joined
//   with spaces, as Hugging Face does). Regexes run on PCRE2 (UTF + UCP, JIT when available).
// What is refused with an error naming the construct and the file: a model other than BPE,
// dropout, continuing_subword_prefix, end_of_word_suffix, a normalizer, other pre-tokenizer and
// decoder types. The post_processor is ignored: encode() never adds bos/eos (as Hugging Face's
// encode(text, add_special_tokens=False)).
// Departures, all documented in docs/tokenizer.md: text that is not valid UTF-8 (Hugging Face
// cannot take it) is encoded with each invalid byte as a piece of its own; decode() drops only
// bos/eos/pad unless keep_special (decode_hf() has Hugging Face's skip_special_tokens).
// Thread safety: after load, every const method may be called concurrently (the BPE cache is a
// per-thread one in front of a sharded, mutex-protected one; PCRE2 match state is per thread).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "model/tokenizer.h"

namespace m1 {

// Which added tokens are bos, eos and pad. Empty = taken from tokenizer_config.json beside the
// tokenizer.json (its bos_token, eos_token, pad_token), else detected: the first added token
// whose content is in the lists of bpe_tokenizer.cc (docs/tokenizer.md has them; M1's
// <begin_of_document> and <end_of_sentence> come first); pad = eos and bos = eos when none is
// found. No eos at all is an error.
struct TokenizerSpecials {
  std::string bos, eos, pad;
};

class BpeTokenizer final : public Tokenizer {
 public:
  // Reads PATH (a tokenizer.json). Errors name the file and the JSON path that is wrong.
  static Result<std::shared_ptr<BpeTokenizer>> load(const std::string& path, const TokenizerSpecials& names = {});
  // The same from text; SOURCE names it in errors. No tokenizer_config.json is read.
  static Result<std::shared_ptr<BpeTokenizer>> parse(const std::string& json_text, const std::string& source,
                                                     const TokenizerSpecials& names = {});
  ~BpeTokenizer() override;

  // Largest id (model vocab or added token) + 1.
  int vocab_size() const override;
  int bos_id() const override;
  int eos_id() const override;
  int pad_id() const override;
  std::vector<int> encode(const std::string& text) const override;
  // Hugging Face's decode(ids, skip_special_tokens=false), except that bos/eos/pad are dropped
  // unless keep_special, and an id that no token has renders as "<?id>".
  std::string decode(const std::vector<int>& ids, bool keep_special = false) const override;
  // The id of an added token (special or not) by its content, or -1.
  int special_id(const std::string& markup) const override;

  // Hugging Face's decode exactly: unknown ids skipped; skip_special_tokens drops every added
  // token marked special.
  std::string decode_hf(const std::vector<int>& ids, bool skip_special_tokens) const;
  // The token string of an id (added tokens first), or "" when no token has it.
  std::string id_to_token(int id) const;
  // The id of a token string (added tokens first, then the model vocab), or -1.
  int token_to_id(const std::string& token) const;
  // True when id is an id of some token.
  bool valid_id(int id) const;
  // The file it came from.
  const std::string& source() const;

  struct Impl;

 private:
  BpeTokenizer();
  std::unique_ptr<Impl> impl_;
};

// PATH empty: the built-in ByteTokenizer; else BpeTokenizer::load(PATH).
Result<std::shared_ptr<Tokenizer>> load_tokenizer(const std::string& path_or_empty);

// The tokenizer of a model directory: OVERRIDE when given, else DIR/tokenizer.json when it
// exists (Hugging Face's layout; SFT checkpoints carry their tokenizer so), else "" (ByteTokenizer).
std::string model_dir_tokenizer(const std::string& dir, const std::string& override_path);

// Copies the tokenizer file at PATH to DIR/tokenizer.json, and the tokenizer_config.json beside
// it (when there is one) to DIR/tokenizer_config.json; each written with write_file (fsynced).
Status copy_tokenizer_files(const std::string& path, const std::string& dir);

// The GPT-2 byte-to-unicode alphabet: the UTF-8 of the code point byte b stands for.
std::string byte_level_char(unsigned char b);

// Whether s is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace m1
