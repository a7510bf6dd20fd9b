// PCRE2 (8-bit, UTF + UCP, JIT when the library has it) for the tokenizer's pre-tokenizer
// patterns, with the match iteration Hugging Face `tokenizers` uses (its onig find_iter):
// non-overlapping matches left to right; an empty match right where the previous match ended is
// skipped by advancing one character.
// Subjects must be valid UTF-8 (the caller checks; PCRE2 is told not to check again).
// Thread safety: a compiled Regex is immutable; matching uses per-thread match data and JIT stack.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace m1::bpe {

class Regex {
 public:
  // LITERAL: the pattern is a plain string (Split's {"String": ...}).
  static Result<std::unique_ptr<Regex>> compile(const std::string& pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The next match at or after `from` in s: sets [*b, *e) and returns true; false when there is
  // none. A match error (PCRE2 resource limits, after a retry without JIT) is reported as no match.
  bool search(std::string_view s, size_t from, size_t* b, size_t* e) const;

  // Calls fn(b, e) for every match of the find_iter iteration described above.
  template <class F>
  void for_each_match(std::string_view s, F&& fn) const {
    size_t last_end = 0, b = 0, e = 0;
    bool had = false;
    size_t last_match_end = 0;
    while (last_end <= s.size() && search(s, last_end, &b, &e)) {
      if (b == e && had && last_match_end == e) {
        last_end += last_end < s.size() ? utf8_len(static_cast<unsigned char>(s[last_end])) : 1;
        continue;
      }
      last_end = e;
      last_match_end = e;
      had = true;
      fn(b, e);
    }
  }

  static size_t utf8_len(unsigned char lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace m1::bpe
