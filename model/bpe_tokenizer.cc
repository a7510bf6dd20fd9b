// Loading a Hugging Face tokenizer.json into BpeTokenizer::Impl (bpe_internal.h). Every error
// names the file and the JSON path ("model.merges[12]", "pre_tokenizer.pretokenizers[0].pattern").
#include "model/bpe_tokenizer.h"

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"
#include "model/bpe_internal.h"

namespace m1 {
namespace {

using json = nlohmann::json;

// The pre-tokenizer regex of Hugging Face's ByteLevel (use_regex = true), GPT-2's.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Names tried, in order, when neither the caller nor tokenizer_config.json names bos/eos/pad.
const char* const kBosNames[] = {"<begin_of_document>", "<beginning_of_sentence>", "<|begin_of_text|>", "<s>",
                                 "<|startoftext|>", "<bos>", "<|im_start|>"};
const char* const kEosNames[] = {"<end_of_sentence>", "<|end_of_text|>", "<|eot_id|>", "</s>", "<|endoftext|>",
                                 "<eos>", "<|im_end|>"};
const char* const kPadNames[] = {"<pad>", "<|pad|>", "<|padding|>", "[PAD]", "<|finetune_right_pad_id|>"};

// Reads fields of one JSON object with errors "SOURCE: PATH: what".
class Reader {
 public:
  Reader(const std::string& source) : source_(source) {}
  Status err(const std::string& path, const std::string& what) const {
    return Status::errorf("{}: {}: {}", source_, path.empty() ? "(top level)" : path, what);
  }
  Status unsupported(const std::string& path, const std::string& what) const {
    return err(path, what + " is not supported (m1rl reads byte-level BPE tokenizers; see docs/tokenizer.md)");
  }
  // A field that must be an object (or, when null_ok, null/absent: returns nullptr).
  Result<const json*> object(const json& parent, const std::string& ppath, const char* key, bool null_ok) const {
    const std::string path = join(ppath, key);
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) {
      if (null_ok) return static_cast<const json*>(nullptr);
      return err(path, "missing (expected an object)");
    }
    if (!it->is_object()) return err(path, std::string("expected an object, got ") + it->type_name());
    return &*it;
  }
  Result<bool> boolean(const json& obj, const std::string& ppath, const char* key, bool def) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return def;
    if (!it->is_boolean()) return err(join(ppath, key), std::string("expected true or false, got ") + it->type_name());
    return it->get<bool>();
  }
  // A string field; absent/null gives def (or an error when required).
  Result<std::string> string(const json& obj, const std::string& ppath, const char* key, bool required,
                             const std::string& def = "") const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
      if (required) return err(join(ppath, key), "missing (expected a string)");
      return def;
    }
    if (!it->is_string()) return err(join(ppath, key), std::string("expected a string, got ") + it->type_name());
    return it->get<std::string>();
  }
  const std::string& source() const { return source_; }
  static std::string join(const std::string& p, const std::string& k) { return p.empty() ? k : p + "." + k; }
  static std::string index(const std::string& p, size_t i) { return p + "[" + std::to_string(i) + "]"; }

 private:
  std::string source_;
};

Result<int> token_id(const Reader& r, const json& v, const std::string& path) {
  if (!v.is_number_integer()) return r.err(path, std::string("expected an integer id, got ") + v.type_name());
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id >= (int64_t(1) << 30)) return r.err(path, "id " + std::to_string(id) + " is out of range [0, 2^30)");
  return int(id);
}

Status load_model(const Reader& r, const json& root, BpeTokenizer::Impl* t) {
  M1_ASSIGN_OR_RETURN(const json* m, r.object(root, "", "model", false));
  M1_ASSIGN_OR_RETURN(std::string type, r.string(*m, "model", "type", false, "BPE"));
  if (type != "BPE") return r.unsupported("model.type", "model type '" + type + "'");
  if (auto d = m->find("dropout"); d != m->end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0))
    return r.unsupported("model.dropout", "BPE dropout");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    M1_ASSIGN_OR_RETURN(std::string v, r.string(*m, "model", k, false));
    if (!v.empty()) return r.unsupported(std::string("model.") + k, std::string(k) + " '" + v + "'");
  }
  M1_ASSIGN_OR_RETURN(t->byte_fallback, r.boolean(*m, "model", "byte_fallback", false));
  M1_ASSIGN_OR_RETURN(t->fuse_unk, r.boolean(*m, "model", "fuse_unk", false));
  M1_ASSIGN_OR_RETURN(t->ignore_merges, r.boolean(*m, "model", "ignore_merges", false));
  M1_ASSIGN_OR_RETURN(const json* vocab, r.object(*m, "model", "vocab", false));
  int max_id = -1;
  t->vocab.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    M1_ASSIGN_OR_RETURN(int id, token_id(r, it.value(), "model.vocab[" + json(it.key()).dump() + "]"));
    t->vocab[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  t->model_tokens.assign(size_t(max_id + 1), "");
  t->model_has.assign(size_t(max_id + 1), 0);
  for (const auto& [tok, id] : t->vocab) {
    if (t->model_has[size_t(id)])
      return r.err("model.vocab", "id " + std::to_string(id) + " is given to both " + json(t->model_tokens[size_t(id)]).dump() +
                                      " and " + json(tok).dump());
    t->model_tokens[size_t(id)] = tok;
    t->model_has[size_t(id)] = 1;
  }
  M1_ASSIGN_OR_RETURN(std::string unk, r.string(*m, "model", "unk_token", false));
  if (!unk.empty()) {
    auto u = t->vocab.find(unk);
    if (u == t->vocab.end()) return r.err("model.unk_token", "'" + unk + "' is not in model.vocab");
    t->unk_id = u->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto f = t->vocab.find(std::string(name));
    t->byte_fallback_id[b] = t->byte_fallback && f != t->vocab.end() ? f->second : -1;
    auto c = t->vocab.find(byte_level_char(static_cast<unsigned char>(b)));
    t->byte_id[b] = c != t->vocab.end() ? c->second : -1;
  }
  // Merges: "a b" strings (exactly one space) or ["a", "b"] pairs; rank = position (a later
  // duplicate overrides an earlier one, as in Hugging Face's map).
  auto mit = m->find("merges");
  if (mit == m->end() || mit->is_null()) return r.err("model.merges", "missing (expected an array)");
  if (!mit->is_array()) return r.err("model.merges", std::string("expected an array, got ") + mit->type_name());
  t->merges.reserve(mit->size());
  for (size_t i = 0; i < mit->size(); ++i) {
    const json& e = (*mit)[i];
    const std::string path = Reader::index("model.merges", i);
    std::string a, b;
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return r.err(path, json(s).dump() + ": expected two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return r.err(path, "expected \"a b\" or [\"a\", \"b\"], got " + e.dump());
    }
    auto ia = t->vocab.find(a), ib = t->vocab.find(b), inew = t->vocab.find(a + b);
    if (ia == t->vocab.end()) return r.err(path, "token " + json(a).dump() + " is not in model.vocab");
    if (ib == t->vocab.end()) return r.err(path, "token " + json(b).dump() + " is not in model.vocab");
    if (inew == t->vocab.end()) return r.err(path, "the merged token " + json(a + b).dump() + " is not in model.vocab");
    t->merges.set(uint64_t(uint32_t(ia->second)) << 32 | uint32_t(ib->second), uint64_t(i) << 32 | uint32_t(inew->second));
  }
  return Status::ok();
}

Result<bpe::Behavior> behavior(const Reader& r, const std::string& path, const std::string& s) {
  if (s == "Removed") return bpe::Behavior::kRemoved;
  if (s == "Isolated") return bpe::Behavior::kIsolated;
  if (s == "MergedWithPrevious") return bpe::Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return bpe::Behavior::kMergedWithNext;
  if (s == "Contiguous") return bpe::Behavior::kContiguous;
  return r.err(path, "unknown split behavior '" + s +
                         "' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

Status load_pre_tokenizer(const Reader& r, const json& p, const std::string& path, BpeTokenizer::Impl* t) {
  if (!p.is_object()) return r.err(path, std::string("expected an object, got ") + p.type_name());
  M1_ASSIGN_OR_RETURN(std::string type, r.string(p, path, "type", true));
  if (t->byte_level) return r.unsupported(path, "a pre-tokenizer after ByteLevel ('" + type + "')");
  if (type == "Sequence") {
    auto it = p.find("pretokenizers");
    if (it == p.end() || !it->is_array()) return r.err(Reader::join(path, "pretokenizers"), "expected an array");
    for (size_t i = 0; i < it->size(); ++i)
      M1_RETURN_IF_ERROR(load_pre_tokenizer(r, (*it)[i], Reader::index(Reader::join(path, "pretokenizers"), i), t));
    return Status::ok();
  }
  if (type == "ByteLevel") {
    M1_ASSIGN_OR_RETURN(t->prefix_space, r.boolean(p, path, "add_prefix_space", true));
    M1_ASSIGN_OR_RETURN(bool use_regex, r.boolean(p, path, "use_regex", true));
    t->byte_level = true;
    t->byte_level_step = t->steps.size();
    if (use_regex) {
      auto re = bpe::Regex::compile(kGpt2Pattern, false);
      if (!re.is_ok()) return r.err(path, re.status().message());
      t->steps.push_back({std::move(re).value(), bpe::Behavior::kIsolated, false});
    }
    return Status::ok();
  }
  if (type == "Split") {
    const std::string ppath = Reader::join(path, "pattern");
    M1_ASSIGN_OR_RETURN(const json* pat, r.object(p, path, "pattern", false));
    bpe::SplitStep st;
    std::string text;
    bool literal;
    if (pat->contains("Regex") && (*pat)["Regex"].is_string()) {
      text = (*pat)["Regex"].get<std::string>();
      literal = false;
    } else if (pat->contains("String") && (*pat)["String"].is_string()) {
      text = (*pat)["String"].get<std::string>();
      literal = true;
    } else {
      return r.err(ppath, "expected {\"Regex\": \"...\"} or {\"String\": \"...\"}, got " + pat->dump());
    }
    if (!text.empty() || !literal) {  // an empty String pattern matches nothing (Hugging Face)
      auto re = bpe::Regex::compile(text, literal);
      if (!re.is_ok()) return r.err(ppath + (literal ? ".String" : ".Regex"), re.status().message());
      st.re = std::move(re).value();
    }
    M1_ASSIGN_OR_RETURN(std::string beh, r.string(p, path, "behavior", true));
    M1_ASSIGN_OR_RETURN(st.behavior, behavior(r, Reader::join(path, "behavior"), beh));
    M1_ASSIGN_OR_RETURN(st.invert, r.boolean(p, path, "invert", false));
    t->steps.push_back(std::move(st));
    return Status::ok();
  }
  return r.unsupported(Reader::join(path, "type"), "pre-tokenizer type '" + type + "'");
}

Status load_decoder(const Reader& r, const json& d, const std::string& path, BpeTokenizer::Impl* t) {
  if (!d.is_object()) return r.err(path, std::string("expected an object, got ") + d.type_name());
  M1_ASSIGN_OR_RETURN(std::string type, r.string(d, path, "type", true));
  if (type == "Sequence") {
    auto it = d.find("decoders");
    if (it == d.end() || !it->is_array()) return r.err(Reader::join(path, "decoders"), "expected an array");
    for (size_t i = 0; i < it->size(); ++i)
      M1_RETURN_IF_ERROR(load_decoder(r, (*it)[i], Reader::index(Reader::join(path, "decoders"), i), t));
  } else if (type == "ByteLevel") {
    t->decoder.push_back(bpe::DecodeStep::kByteLevel);
  } else if (type == "ByteFallback") {
    t->decoder.push_back(bpe::DecodeStep::kByteFallback);
  } else if (type == "Fuse") {
    t->decoder.push_back(bpe::DecodeStep::kFuse);
  } else {
    return r.unsupported(Reader::join(path, "type"), "decoder type '" + type + "'");
  }
  return Status::ok();
}

// Added tokens get ids as Hugging Face assigns them: the model vocab's id when the content is in
// it, else the next id after the model vocab (and after the added ids so far).
Status load_added(const Reader& r, const json& root, BpeTokenizer::Impl* t) {
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return Status::ok();
  if (!it->is_array()) return r.err("added_tokens", std::string("expected an array, got ") + it->type_name());
  const int model_size = int(t->vocab.size());
  int max_added = -1;
  for (size_t i = 0; i < it->size(); ++i) {
    const std::string path = Reader::index("added_tokens", i);
    const json& a = (*it)[i];
    if (!a.is_object()) return r.err(path, std::string("expected an object, got ") + a.type_name());
    bpe::AddedToken tok;
    M1_ASSIGN_OR_RETURN(tok.content, r.string(a, path, "content", true));
    if (tok.content.empty()) return r.err(Reader::join(path, "content"), "empty");
    if (!a.contains("id")) return r.err(Reader::join(path, "id"), "missing (expected an integer)");
    M1_ASSIGN_OR_RETURN(int file_id, token_id(r, a["id"], Reader::join(path, "id")));
    M1_ASSIGN_OR_RETURN(tok.special, r.boolean(a, path, "special", false));
    M1_ASSIGN_OR_RETURN(tok.single_word, r.boolean(a, path, "single_word", false));
    M1_ASSIGN_OR_RETURN(tok.lstrip, r.boolean(a, path, "lstrip", false));
    M1_ASSIGN_OR_RETURN(tok.rstrip, r.boolean(a, path, "rstrip", false));
    M1_ASSIGN_OR_RETURN(tok.normalized, r.boolean(a, path, "normalized", !tok.special));
    if (auto prev = t->added_by_content.find(tok.content); prev != t->added_by_content.end()) {
      bpe::AddedToken& p = t->added[size_t(prev->second)];  // a repeat updates the flags (Hugging Face)
      tok.id = p.id;
      p = tok;
      continue;
    }
    if (auto v = t->vocab.find(tok.content); v != t->vocab.end()) {
      tok.id = v->second;
    } else {
      tok.id = max_added < 0 ? model_size : (max_added >= model_size || model_size == 0 ? max_added + 1 : model_size);
    }
    max_added = std::max(max_added, tok.id);
    if (tok.id != file_id)
      log_warn("{}: {}: {} has id {} in the file; Hugging Face tokenizers gives it {}, and so does m1rl", r.source(),
               path, json(tok.content).dump(), file_id, tok.id);
    t->added_by_content[tok.content] = int(t->added.size());
    t->added.push_back(tok);
  }
  for (size_t i = 0; i < t->added.size(); ++i) {
    const bpe::AddedToken& a = t->added[i];
    t->added_by_id[a.id] = int(i);
    (a.normalized ? t->trie_normalized : t->trie_raw).insert(a.content, int(i));
  }
  return Status::ok();
}

// tokenizer_config.json's bos_token etc.: a string or {"content": ...}; "" when absent.
std::string config_token(const json& c, const char* key) {
  auto it = c.find(key);
  if (it == c.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return "";
}

}  // namespace

namespace bpe {

void Trie::insert(const std::string& s, int token) {
  int n = 0;
  for (unsigned char c : s) {
    auto& nx = nodes[size_t(n)].next;
    auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(c, 0),
                               [](const auto& x, const auto& y) { return x.first < y.first; });
    if (it != nx.end() && it->first == c) {
      n = it->second;
    } else {
      const int child = int(nodes.size());
      nx.insert(it, {c, child});
      nodes.emplace_back();
      n = child;
    }
  }
  nodes[size_t(n)].token = token;
  first[static_cast<unsigned char>(s[0])] = true;
}

int Trie::longest_at(std::string_view s, size_t i, size_t* len) const {
  int n = 0, best = -1;
  for (size_t j = i; j < s.size(); ++j) {
    const auto& nx = nodes[size_t(n)].next;
    const unsigned char c = static_cast<unsigned char>(s[j]);
    auto it = std::lower_bound(nx.begin(), nx.end(), std::make_pair(c, 0),
                               [](const auto& x, const auto& y) { return x.first < y.first; });
    if (it == nx.end() || it->first != c) break;
    n = it->second;
    if (nodes[size_t(n)].token >= 0) {
      best = nodes[size_t(n)].token;
      *len = j + 1 - i;
    }
  }
  return best;
}

}  // namespace bpe

std::string byte_level_char(unsigned char b) {
  // GPT-2: printable Latin-1 bytes stand for themselves, the other 68 for 256, 257, ... in order.
  auto printable = [](int c) { return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255); };
  int cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int c = 0; c < b; ++c) cp += !printable(c);
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(char(cp));
  } else {
    s.push_back(char(0xC0 | (cp >> 6)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  }
  return s;
}

BpeTokenizer::BpeTokenizer() : impl_(std::make_unique<Impl>()) {}
BpeTokenizer::~BpeTokenizer() = default;

Result<std::shared_ptr<BpeTokenizer>> BpeTokenizer::parse(const std::string& text, const std::string& source,
                                                          const TokenizerSpecials& names) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    return Status::errorf("{}: not valid JSON: {}", source, e.what());
  }
  Reader r(source);
  if (!root.is_object()) return r.err("", std::string("expected a JSON object, got ") + root.type_name());
  std::shared_ptr<BpeTokenizer> tok(new BpeTokenizer());
  Impl* t = tok->impl_.get();
  t->source = source;
  M1_RETURN_IF_ERROR(load_model(r, root, t));
  if (auto it = root.find("truncation"); it != root.end() && !it->is_null())
    return r.unsupported("truncation", "truncation");
  if (auto it = root.find("padding"); it != root.end() && !it->is_null()) {
    if (!it->is_object() || it->value("strategy", json()) != json("BatchLongest"))
      return r.unsupported("padding", "padding other than BatchLongest");
  }
  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    const bool empty_seq = it->is_object() && it->value("type", "") == "Sequence" && it->contains("normalizers") &&
                           (*it)["normalizers"].is_array() && (*it)["normalizers"].empty();
    if (!empty_seq)
      return r.unsupported("normalizer",
                           "normalizer '" + (it->is_object() ? it->value("type", std::string("?")) : it->dump()) + "'");
  }
  if (auto it = root.find("pre_tokenizer"); it != root.end() && !it->is_null())
    M1_RETURN_IF_ERROR(load_pre_tokenizer(r, *it, "pre_tokenizer", t));
  if (auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
    t->has_decoder = true;
    M1_RETURN_IF_ERROR(load_decoder(r, *it, "decoder", t));
  }
  M1_RETURN_IF_ERROR(load_added(r, root, t));
  for (const char* re : {"\\w", "\\s"}) {
    auto c = bpe::Regex::compile(re, false);
    if (!c.is_ok()) return c.status();
    (re[1] == 'w' ? t->word_re : t->space_re) = std::move(c).value();
  }
  t->vocab_size = int(t->model_tokens.size());
  for (const auto& a : t->added) t->vocab_size = std::max(t->vocab_size, a.id + 1);
  // Decoding by precomputed bytes when the decoder is exactly ByteLevel.
  t->fast_decode = t->decoder.size() == 1 && t->decoder[0] == bpe::DecodeStep::kByteLevel;
  if (t->fast_decode) {
    t->id_bytes.assign(size_t(t->vocab_size), "");
    std::unordered_map<std::string, unsigned char> rev;
    for (int b = 0; b < 256; ++b) rev[byte_level_char(static_cast<unsigned char>(b))] = static_cast<unsigned char>(b);
    for (int id = 0; id < t->vocab_size; ++id) {
      const std::string tok_s = t->token_of(id);
      std::string bytes;
      bool all = true;
      for (size_t i = 0; i < tok_s.size() && all;) {
        const size_t n = bpe::Regex::utf8_len(static_cast<unsigned char>(tok_s[i]));
        auto f = rev.find(tok_s.substr(i, n));
        if (f == rev.end()) all = false;
        else bytes.push_back(char(f->second));
        i += n;
      }
      t->id_bytes[size_t(id)] = all ? bytes : tok_s;
    }
  }
  // bos/eos/pad: as named, else detected.
  auto pick = [&](const std::string& named, const char* const* list, size_t n, const char* what, int* out) -> Status {
    if (!named.empty()) {
      *out = tok->token_to_id(named);
      if (*out < 0) return Status::errorf("{}: {} token '{}' is not a token of this tokenizer", source, what, named);
      return Status::ok();
    }
    for (size_t i = 0; i < n && *out < 0; ++i)
      if (auto f = t->added_by_content.find(list[i]); f != t->added_by_content.end()) *out = t->added[size_t(f->second)].id;
    return Status::ok();
  };
  M1_RETURN_IF_ERROR(pick(names.bos, kBosNames, std::size(kBosNames), "bos", &t->bos));
  M1_RETURN_IF_ERROR(pick(names.eos, kEosNames, std::size(kEosNames), "eos", &t->eos));
  M1_RETURN_IF_ERROR(pick(names.pad, kPadNames, std::size(kPadNames), "pad", &t->pad));
  if (t->eos < 0)
    return Status::errorf("{}: no eos token: none of the added tokens is a known end-of-sequence token ({}, ...); "
                          "name one in tokenizer_config.json's eos_token", source, kEosNames[0]);
  if (t->bos < 0) t->bos = t->eos;
  if (t->pad < 0) t->pad = t->eos;
  return tok;
}

Result<std::shared_ptr<BpeTokenizer>> BpeTokenizer::load(const std::string& path, const TokenizerSpecials& names) {
  M1_ASSIGN_OR_RETURN(std::string text, read_file(path));
  TokenizerSpecials n = names;
  const std::string dir = parent_dir(path);
  const std::string cfg_path = dir.empty() ? "tokenizer_config.json" : path_join(dir, "tokenizer_config.json");
  if (path_exists(cfg_path)) {
    M1_ASSIGN_OR_RETURN(std::string ct, read_file(cfg_path));
    json c = json::parse(ct, nullptr, false);
    if (c.is_discarded() || !c.is_object()) return Status::errorf("{}: not a valid JSON object", cfg_path);
    if (n.bos.empty()) n.bos = config_token(c, "bos_token");
    if (n.eos.empty()) n.eos = config_token(c, "eos_token");
    if (n.pad.empty()) n.pad = config_token(c, "pad_token");
  }
  return parse(text, path, n);
}

Result<std::shared_ptr<Tokenizer>> load_tokenizer(const std::string& path_or_empty) {
  if (path_or_empty.empty()) return std::shared_ptr<Tokenizer>(std::make_shared<ByteTokenizer>());
  M1_ASSIGN_OR_RETURN(std::shared_ptr<BpeTokenizer> t, BpeTokenizer::load(path_or_empty));
  return std::shared_ptr<Tokenizer>(std::move(t));
}

std::string model_dir_tokenizer(const std::string& dir, const std::string& override_path) {
  if (!override_path.empty()) return override_path;
  const std::string p = path_join(dir, "tokenizer.json");
  return path_exists(p) ? p : "";
}

Status copy_tokenizer_files(const std::string& path, const std::string& dir) {
  M1_ASSIGN_OR_RETURN(std::string t, read_file(path));
  M1_RETURN_IF_ERROR(write_file(path_join(dir, "tokenizer.json"), t));
  const std::string cfg = path_join(parent_dir(path), "tokenizer_config.json");
  if (!path_exists(cfg)) return Status::ok();
  M1_ASSIGN_OR_RETURN(std::string c, read_file(cfg));
  return write_file(path_join(dir, "tokenizer_config.json"), c);
}

}  // namespace m1
