// Tokenizers. The interface is what generators, judges and SFT need; ByteTokenizer is the
// built-in byte-level implementation (ids 0..255 = bytes, then special tokens). A Hugging Face
// tokenizer.json byte-level BPE implements it too (model/bpe_tokenizer.h, load_tokenizer there).
// Thread safety: const methods are safe to call concurrently.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace m1 {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int pad_id() const = 0;
  // Text to ids. Special-token markup written literally in the text ("<answer>") becomes its
  // special id; everything else is encoded as bytes. No bos/eos is added.
  virtual std::vector<int> encode(const std::string& text) const = 0;
  // Ids to text; special ids render as their markup; bos/eos/pad render as "" unless
  // keep_special. Out-of-range ids render as "<?id>". For ByteTokenizer,
  // decode(encode(s), true) == s for every byte string s.
  virtual std::string decode(const std::vector<int>& ids, bool keep_special = false) const = 0;
  // The id of a special token by its markup, or -1.
  virtual int special_id(const std::string& markup) const = 0;
};

// A prompt as the model sees it: <bos> followed by encode(text).
std::vector<int> encode_prompt(const Tokenizer& tok, const std::string& text);

// Byte-level tokenizer: 256 byte ids followed by the specials, in this order:
// <bos> <eos> <pad> <think> </think> <answer> </answer>.  vocab_size() = 263.
class ByteTokenizer final : public Tokenizer {
 public:
  ByteTokenizer();
  int vocab_size() const override;
  int bos_id() const override { return 256; }
  int eos_id() const override { return 257; }
  int pad_id() const override { return 258; }
  std::vector<int> encode(const std::string& text) const override;
  std::string decode(const std::vector<int>& ids, bool keep_special = false) const override;
  int special_id(const std::string& markup) const override;

 private:
  std::vector<std::string> specials_;
};

}  // namespace m1
