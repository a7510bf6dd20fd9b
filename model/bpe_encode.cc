// BpeTokenizer's encoding and decoding, step for step as Hugging Face `tokenizers` does them
// (tokenizer/added_vocabulary.rs, normalizer.rs's split behaviours, models/bpe, decoders); see
// bpe_tokenizer.h for the pipeline and the departures.
#include <algorithm>
#include <string>
#include <vector>

#include "model/bpe_internal.h"

namespace m1 {
namespace {

// The code point at s[i] (valid UTF-8) and its length.
uint32_t decode_cp(std::string_view s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char c = p[i];
  if (c < 0x80 || i + 1 >= s.size()) return *len = 1, c;
  if (c < 0xE0) return *len = 2, uint32_t(c & 0x1F) << 6 | (p[i + 1] & 0x3F);
  if (c < 0xF0) return *len = 3, uint32_t(c & 0x0F) << 12 | uint32_t(p[i + 1] & 0x3F) << 6 | (p[i + 2] & 0x3F);
  return *len = 4, uint32_t(c & 0x07) << 18 | uint32_t(p[i + 1] & 0x3F) << 12 | uint32_t(p[i + 2] & 0x3F) << 6 |
                       (p[i + 3] & 0x3F);
}

// The start of the last UTF-8 character of s (s non-empty, valid).
size_t last_char_start(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

bool whole_match(const bpe::Regex& re, std::string_view ch) {
  size_t b, e;
  return re.search(ch, 0, &b, &e) && b == 0 && e == ch.size();
}

// GPT-2's byte-to-unicode alphabet reversed: code point -> byte, or -1.
const std::vector<int>& byte_of_cp() {
  static const std::vector<int> t = [] {
    std::vector<int> v(0x144, -1);
    for (int b = 0; b < 256; ++b) {
      const std::string c = byte_level_char(static_cast<unsigned char>(b));
      size_t n;
      v[decode_cp(c, 0, &n)] = b;
    }
    return v;
  }();
  return t;
}

// Hugging Face's ByteLevel decoder for one token: its characters' bytes when every character is
// in the alphabet, else the token's own UTF-8.
void byte_level_bytes(const std::string& tok, std::string* out) {
  const std::vector<int>& rev = byte_of_cp();
  std::string b;
  for (size_t i = 0; i < tok.size();) {
    size_t n;
    const uint32_t cp = decode_cp(tok, i, &n);
    if (cp >= rev.size() || rev[cp] < 0) {
      *out += tok;
      return;
    }
    b.push_back(char(rev[cp]));
    i += n;
  }
  *out += b;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<0xNN>" -> NN (Rust's u8::from_str_radix also takes "+N"), else -1.
int fallback_byte(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  if (t[3] == '+') return hex_digit(t[4]);
  const int h = hex_digit(t[3]), l = hex_digit(t[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

// Splits s on the added tokens of `trie` (added_vocabulary.rs find_matches): leftmost-longest
// matches, single_word ones dropped when a word character touches them, lstrip/rstrip taking the
// whitespace beside them. Calls gap(view) and token(id) in order.
template <class Gap, class Tok>
void split_added(const BpeTokenizer::Impl& t, const bpe::Trie& trie, std::string_view s, Gap&& gap, Tok&& token) {
  size_t i = 0, pos = 0;
  const size_t n = s.size();
  while (pos < n) {
    if (!trie.first[static_cast<unsigned char>(s[pos])]) {
      ++pos;
      continue;
    }
    size_t len = 0;
    const int k = trie.longest_at(s, pos, &len);
    if (k < 0) {
      ++pos;
      continue;
    }
    const bpe::AddedToken& a = t.added[size_t(k)];
    size_t start = pos, stop = pos + len;
    pos = stop;
    if (a.single_word) {
      const size_t lc = start == 0 ? 0 : last_char_start(s.substr(0, start));
      const bool left_ok = start == 0 || !whole_match(*t.word_re, s.substr(lc, start - lc));
      size_t cl = 0;
      if (stop < n) decode_cp(s, stop, &cl);
      const bool right_ok = stop == n || !whole_match(*t.word_re, s.substr(stop, cl));
      if (!left_ok || !right_ok) continue;
    }
    if (a.lstrip) {
      size_t ns = start;
      while (ns > 0) {
        const size_t c = last_char_start(s.substr(0, ns));
        if (!whole_match(*t.space_re, s.substr(c, ns - c))) break;
        ns = c;
      }
      start = std::max(ns, i);
    }
    if (a.rstrip) {
      while (stop < n) {
        size_t cl;
        decode_cp(s, stop, &cl);
        if (!whole_match(*t.space_re, s.substr(stop, cl))) break;
        stop += cl;
      }
      pos = stop;
    }
    if (i < start) gap(s.substr(i, start - i));
    token(a.id);
    i = stop;
  }
  if (i < n) gap(s.substr(i));
}

}  // namespace

void BpeTokenizer::Impl::encode_text(std::string_view text, std::vector<int>* out) const {
  if (trie_raw.empty() && trie_normalized.empty()) return encode_gap(text, out);
  auto tok = [out](int id) { out->push_back(id); };
  auto normalized_pass = [&](std::string_view g) {
    if (trie_normalized.empty()) return encode_gap(g, out);
    split_added(*this, trie_normalized, g, [&](std::string_view g2) { encode_gap(g2, out); }, tok);
  };
  if (trie_raw.empty()) return normalized_pass(text);
  split_added(*this, trie_raw, text, normalized_pass, tok);
}

void BpeTokenizer::Impl::encode_gap(std::string_view gap, std::vector<int>* out) const {
  size_t pos = 0;
  while (pos < gap.size()) {
    const size_t v = bpe::utf8_valid_prefix(gap.substr(pos));
    if (v > 0) pretokenize(0, gap.substr(pos, v), out);
    pos += v;
    if (pos < gap.size()) bpe_piece(gap.substr(pos++, 1), out);  // an invalid byte: a piece of its own
  }
}

void BpeTokenizer::Impl::pretokenize(size_t step, std::string_view s, std::vector<int>* out) const {
  if (step == byte_level_step && prefix_space && (s.empty() || s[0] != ' ')) {
    std::string t;
    t.reserve(s.size() + 1);
    t += ' ';
    t += s;
    split_and_continue(step, t, out);
    return;
  }
  split_and_continue(step, s, out);
}

void BpeTokenizer::Impl::split_and_continue(size_t step, std::string_view s, std::vector<int>* out) const {
  if (step == steps.size()) return bpe_piece(s, out);
  const bpe::SplitStep& st = steps[step];
  if (!st.re) return pretokenize(step + 1, s, out);
  if (st.behavior == bpe::Behavior::kIsolated && !st.invert) {
    size_t prev = 0;
    st.re->for_each_match(s, [&](size_t b, size_t e) {
      if (b > prev) pretokenize(step + 1, s.substr(prev, b - prev), out);
      if (e > b) pretokenize(step + 1, s.substr(b, e - b), out);
      prev = e;
    });
    if (prev < s.size()) pretokenize(step + 1, s.substr(prev), out);
    return;
  }
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> m;
  size_t prev = 0;
  st.re->for_each_match(s, [&](size_t b, size_t e) {
    if (prev != b) m.push_back({prev, b, false});
    m.push_back({b, e, true});
    prev = e;
  });
  if (prev != s.size()) m.push_back({prev, s.size(), false});
  if (st.invert)
    for (Span& x : m) x.match = !x.match;
  std::vector<Span> keep;  // .match here means "removed"
  bool prev_match = false;
  switch (st.behavior) {
    case bpe::Behavior::kRemoved:
      keep = m;
      break;
    case bpe::Behavior::kIsolated:
      for (const Span& x : m) keep.push_back({x.b, x.e, false});
      break;
    case bpe::Behavior::kMergedWithPrevious:
      for (const Span& x : m) {
        if (x.match && !prev_match && !keep.empty()) keep.back().e = x.e;
        else keep.push_back({x.b, x.e, false});
        prev_match = x.match;
      }
      break;
    case bpe::Behavior::kMergedWithNext:
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        if (it->match && !prev_match && !keep.empty()) keep.back().b = it->b;
        else keep.push_back({it->b, it->e, false});
        prev_match = it->match;
      }
      std::reverse(keep.begin(), keep.end());
      break;
    case bpe::Behavior::kContiguous:
      for (const Span& x : m) {
        if (x.match == prev_match && !keep.empty()) keep.back().e = x.e;
        else keep.push_back({x.b, x.e, false});
        prev_match = x.match;
      }
      break;
  }
  for (const Span& x : keep)
    if (!x.match && x.e > x.b) pretokenize(step + 1, s.substr(x.b, x.e - x.b), out);
}

// The BPE model's symbols for a piece before merging (models/bpe/model.rs merge_word): one per
// character (per byte under ByteLevel, as its alphabet character); a character missing from the
// vocab becomes its <0xNN> bytes (byte_fallback), else unk (fused when fuse_unk), else nothing.
void BpeTokenizer::Impl::initial_symbols(std::string_view piece, std::vector<int>* syms) const {
  bool unk_pending = false;
  auto unit = [&](int id, std::string_view chars) {
    if (id >= 0) {
      if (unk_pending) syms->push_back(unk_id), unk_pending = false;
      syms->push_back(id);
      return;
    }
    if (byte_fallback) {
      bool all = true;
      for (char c : chars) all = all && byte_fallback_id[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : chars) syms->push_back(byte_fallback_id[static_cast<unsigned char>(c)]);
        return;
      }
    }
    if (unk_id >= 0) {
      if (unk_pending && !fuse_unk) syms->push_back(unk_id);
      unk_pending = true;
    }
  };
  if (byte_level) {
    for (char c : piece) {
      const unsigned char b = static_cast<unsigned char>(c);
      if (byte_id[b] >= 0) {
        unit(byte_id[b], {});
      } else {
        const std::string ch = byte_level_char(b);
        unit(-1, ch);
      }
    }
  } else {
    for (size_t i = 0; i < piece.size();) {
      size_t n = 1;
      if (bpe::utf8_valid_prefix(piece.substr(i, std::min<size_t>(4, piece.size() - i))) > 0) decode_cp(piece, i, &n);
      const std::string_view ch = piece.substr(i, n);
      auto it = vocab.find(ch);
      unit(it == vocab.end() ? -1 : it->second, ch);
      i += n;
    }
  }
  if (unk_pending) syms->push_back(unk_id);
}

void BpeTokenizer::Impl::bpe_piece(std::string_view piece, std::vector<int>* out) const {
  if (piece.empty()) return;
  if (ignore_merges) {
    std::string key;
    if (byte_level)
      for (char c : piece) key += byte_level_char(static_cast<unsigned char>(c));
    auto it = vocab.find(byte_level ? std::string_view(key) : piece);
    if (it != vocab.end()) return out->push_back(it->second);
  }
  if (byte_level && piece.size() == 1 && byte_id[static_cast<unsigned char>(piece[0])] >= 0)
    return out->push_back(byte_id[static_cast<unsigned char>(piece[0])]);
  const bool cacheable = piece.size() <= bpe::WordCache::kMaxKey;
  const size_t h = cacheable ? bpe::StrHash{}(piece) : 0;
  if (cacheable && cache.get(piece, h, out)) return;
  thread_local std::vector<int> syms;
  syms.clear();
  initial_symbols(piece, &syms);
  bpe::merge_symbols(merges, &syms);
  out->insert(out->end(), syms.begin(), syms.end());
  if (cacheable) cache.put(piece, h, syms.data(), syms.size());
}

std::string BpeTokenizer::Impl::token_of(int id) const {
  if (auto it = added_by_id.find(id); it != added_by_id.end()) return added[size_t(it->second)].content;
  if (id >= 0 && size_t(id) < model_tokens.size() && model_has[size_t(id)]) return model_tokens[size_t(id)];
  return "";
}

std::string BpeTokenizer::Impl::decode_tokens(const std::vector<int>& ids, bool skip_special, bool skip_control,
                                              bool mark_unknown) const {
  auto skipped = [&](int id) {
    if (skip_control && (id == bos || id == eos || id == pad)) return true;
    if (skip_special)
      if (auto it = added_by_id.find(id); it != added_by_id.end() && added[size_t(it->second)].special) return true;
    return false;
  };
  auto known = [&](int id) {
    return added_by_id.count(id) || (id >= 0 && size_t(id) < model_has.size() && model_has[size_t(id)]);
  };
  if (fast_decode) {
    std::string bytes;
    for (int id : ids) {
      if (skipped(id)) continue;
      if (known(id)) bytes += id_bytes[size_t(id)];
      else if (mark_unknown) bytes += "<?" + std::to_string(id) + ">";
    }
    return bpe::utf8_lossy(bytes);
  }
  std::vector<std::string> toks;
  for (int id : ids) {
    if (skipped(id)) continue;
    if (known(id)) toks.push_back(token_of(id));
    else if (mark_unknown) toks.push_back("<?" + std::to_string(id) + ">");
  }
  for (bpe::DecodeStep step : decoder) {
    std::vector<std::string> next;
    if (step == bpe::DecodeStep::kByteLevel) {
      std::string bytes;
      for (const std::string& t : toks) byte_level_bytes(t, &bytes);
      next.push_back(bpe::utf8_lossy(bytes));
    } else if (step == bpe::DecodeStep::kFuse) {
      std::string all;
      for (const std::string& t : toks) all += t;
      next.push_back(all);
    } else {  // ByteFallback: runs of <0xNN> become their UTF-8 text, or one U+FFFD per byte
      std::string run;
      size_t run_n = 0;
      auto flush = [&] {
        if (run_n == 0) return;
        if (bpe::utf8_valid_prefix(run) == run.size()) next.push_back(run);
        else
          for (size_t k = 0; k < run_n; ++k) next.push_back("\xEF\xBF\xBD");
        run.clear();
        run_n = 0;
      };
      for (const std::string& t : toks) {
        const int b = fallback_byte(t);
        if (b >= 0) {
          run.push_back(char(b));
          ++run_n;
        } else {
          flush();
          next.push_back(t);
        }
      }
      flush();
    }
    toks = std::move(next);
  }
  std::string out;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (i > 0 && !has_decoder) out += ' ';
    out += toks[i];
  }
  return out;
}

bool is_valid_utf8(std::string_view s) { return bpe::utf8_valid_prefix(s) == s.size(); }

int BpeTokenizer::vocab_size() const { return impl_->vocab_size; }
int BpeTokenizer::bos_id() const { return impl_->bos; }
int BpeTokenizer::eos_id() const { return impl_->eos; }
int BpeTokenizer::pad_id() const { return impl_->pad; }
const std::string& BpeTokenizer::source() const { return impl_->source; }

std::vector<int> BpeTokenizer::encode(const std::string& text) const {
  std::vector<int> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode_text(text, &out);
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int>& ids, bool keep_special) const {
  return impl_->decode_tokens(ids, false, !keep_special, true);
}

std::string BpeTokenizer::decode_hf(const std::vector<int>& ids, bool skip_special_tokens) const {
  return impl_->decode_tokens(ids, skip_special_tokens, false, false);
}

int BpeTokenizer::special_id(const std::string& markup) const {
  auto it = impl_->added_by_content.find(markup);
  return it == impl_->added_by_content.end() ? -1 : impl_->added[size_t(it->second)].id;
}

std::string BpeTokenizer::id_to_token(int id) const { return impl_->token_of(id); }

int BpeTokenizer::token_to_id(const std::string& token) const {
  const int a = special_id(token);
  if (a >= 0) return a;
  auto it = impl_->vocab.find(token);
  return it == impl_->vocab.end() ? -1 : it->second;
}

bool BpeTokenizer::valid_id(int id) const {
  return impl_->added_by_id.count(id) ||
         (id >= 0 && size_t(id) < impl_->model_has.size() && impl_->model_has[size_t(id)]);
}

}  // namespace m1
