// m1rl tokenize: stdin lines of UTF-8 text to JSON arrays of ids (or back, with --decode).
// m1rl bench tokenizer: encoding MB/s of a tokenizer.json (or of one trained on the spot from
// the English text in /usr/share/common-licenses) on one core, against ByteTokenizer's on the
// same text in the same run.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/file.h"
#include "model/bpe_train.h"
#include "model/bpe_tokenizer.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {
namespace {

using json = nlohmann::json;

int fail(const std::string& msg) {
  std::fprintf(stderr, "m1rl: error: %s\n", msg.c_str());
  return 1;
}

// Line N of stdin as ids, or an error naming what is wrong.
Result<std::vector<int>> parse_ids(const std::string& line, const Tokenizer& tok, const BpeTokenizer* bpe) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return Status::error("expected a JSON array of token ids");
  std::vector<int> ids;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& v = j[i];
    if (!v.is_number_integer()) return Status::errorf("element {}: {} is not an integer id", i, v.dump());
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= tok.vocab_size() || (bpe && !bpe->valid_id(int(id))))
      return Status::errorf("element {}: id {} is out of range (the tokenizer's ids are 0..{}{})", i, id,
                            tok.vocab_size() - 1, bpe ? ", not all of them used" : "");
    ids.push_back(int(id));
  }
  return ids;
}

// The English text the benchmark trains on and encodes: every regular file of DIR, sorted.
Result<std::string> read_corpus(const std::string& file) {
  if (!file.empty()) {
    M1_ASSIGN_OR_RETURN(std::string text, read_file(file));
    if (!is_valid_utf8(text)) return Status::errorf("{}: not valid UTF-8 text", file);
    if (text.empty()) return Status::errorf("{}: empty", file);
    return text;
  }
  const std::string dir = "/usr/share/common-licenses";
  std::string text;
  for (const std::string& name : list_dir(dir)) {
    const std::string p = path_join(dir, name);
    if (std::filesystem::is_symlink(p) || !std::filesystem::is_regular_file(p)) continue;
    M1_ASSIGN_OR_RETURN(std::string t, read_file(p));
    text += t;
  }
  if (text.empty()) return Status::errorf("{}: no text found (give one with --corpus FILE)", dir);
  return text;
}

// Chunks of about 64 KiB ending at a newline, as documents would come.
std::vector<std::string> chunks_of(const std::string& text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t e = std::min(text.size(), i + 65536);
    const size_t nl = text.find('\n', e);
    e = nl == std::string::npos ? text.size() : nl + 1;
    out.push_back(text.substr(i, e - i));
    i = e;
  }
  return out;
}

// MB/s of encoding every chunk once; *tokens gets the ids produced.
template <class Enc>
double encode_rate(const std::vector<std::string>& chunks, size_t bytes, Enc&& enc, size_t* tokens) {
  const auto t0 = SteadyClock::now();
  size_t n = 0;
  for (const std::string& c : chunks) n += enc(c).size();
  const double s = seconds_since(t0);
  *tokens = n;
  return double(bytes) / 1e6 / std::max(s, 1e-9);
}

}  // namespace

int tokenize(const std::string& path, bool decode) {
  auto t = load_tokenizer(path);
  if (!t.is_ok()) return fail(t.status().message());
  const Tokenizer& tok = *t.value();
  const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tok);
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    if (decode) {
      auto ids = parse_ids(line, tok, bpe);
      if (!ids.is_ok()) return fail(fmt::format("stdin line {}: {}", n, ids.status().message()));
      // Hugging Face's decode(ids, skip_special_tokens=False); ByteTokenizer keeps its specials.
      const std::string text = bpe ? bpe->decode_hf(ids.value(), false) : tok.decode(ids.value(), true);
      std::printf("%s\n", json(text).dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    } else {
      if (!is_valid_utf8(line)) return fail(fmt::format("stdin line {}: not valid UTF-8 text", n));
      std::printf("%s\n", json(tok.encode(line)).dump().c_str());
    }
  }
  return 0;
}

int bench_tokenizer(const std::string& path, double mb, int merges, const std::string& corpus_file,
                    const std::string& save, bool as_json) {
  auto corpus = read_corpus(corpus_file);
  if (!corpus.is_ok()) return fail(corpus.status().message());
  double train_s = 0;
  std::string trained;
  if (path.empty()) {
    BpeTrainOptions o;
    o.merges = merges;
    const auto t0 = SteadyClock::now();
    auto text = train_bpe_tokenizer_json(corpus.value(), o);
    if (!text.is_ok()) return fail(text.status().message());
    train_s = seconds_since(t0);
    trained = std::move(text).value();
    if (!save.empty())
      if (Status s = write_file_atomic(save, trained); !s.is_ok()) return fail(s.message());
  }
  auto fresh = [&]() -> Result<std::shared_ptr<Tokenizer>> {  // a new instance: an empty BPE cache
    if (path.empty()) {
      M1_ASSIGN_OR_RETURN(std::shared_ptr<BpeTokenizer> b, BpeTokenizer::parse(trained, "trained tokenizer"));
      return std::shared_ptr<Tokenizer>(b);
    }
    return load_tokenizer(path);
  };
  auto loaded = fresh();
  if (!loaded.is_ok()) return fail(loaded.status().message());
  std::shared_ptr<Tokenizer> tok = loaded.value();
  // Cold: one pass over the corpus (each text once) with an empty cache, best of 3 fresh instances.
  const std::vector<std::string> corpus_chunks = chunks_of(corpus.value());
  double cold = 0;
  size_t ncold = 0;
  for (int round = 0; round < 3; ++round) {
    auto t = fresh();
    if (!t.is_ok()) return fail(t.status().message());
    cold = std::max(cold, encode_rate(corpus_chunks, corpus.value().size(),
                                      [&](const std::string& c) { return t.value()->encode(c); }, &ncold));
  }
  // The corpus repeated to MB megabytes (whole copies, then cut at a line end).
  const size_t want = size_t(mb * 1e6);
  std::string text;
  while (text.size() < want) text += corpus.value();
  text.resize(std::min(text.size(), text.find('\n', want) == std::string::npos ? text.size() : text.find('\n', want) + 1));
  const std::vector<std::string> chunks = chunks_of(text);
  // Check the round trip on every chunk first (this also warms the BPE cache once).
  for (const std::string& c : chunks)
    if (tok->decode(tok->encode(c), true) != c) return fail("round trip failed: decode(encode(text)) != text");
  ByteTokenizer bytes;
  size_t ntok = 0, nbyte_tok = 0;
  double best = 0, best_bytes = 0;
  for (int round = 0; round < 3; ++round) {  // alternated, best of 3: noise hits both
    best = std::max(best, encode_rate(chunks, text.size(), [&](const std::string& c) { return tok->encode(c); }, &ntok));
    best_bytes = std::max(best_bytes, encode_rate(chunks, text.size(), [&](const std::string& c) { return bytes.encode(c); },
                                                  &nbyte_tok));
  }
  json j = {{"tokenizer", path.empty() ? "trained" : path},
            {"merges", path.empty() ? merges : -1},
            {"train_seconds", train_s},
            {"vocab_size", tok->vocab_size()},
            {"mb", double(text.size()) / 1e6},
            {"tokens", ntok},
            {"bytes_per_token", double(text.size()) / double(std::max<size_t>(ntok, 1))},
            {"encode_mb_per_s", best},
            {"encode_cold_mb_per_s", cold},
            {"corpus_mb", double(corpus.value().size()) / 1e6},
            {"byte_tokenizer_mb_per_s", best_bytes},
            {"goal_mb_per_s", 20}};
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  if (path.empty())
    std::printf("tokenizer: trained on the spot, %d merges in %.2f s, vocab %d\n", merges, train_s, tok->vocab_size());
  else std::printf("tokenizer: %s, vocab %d\n", path.c_str(), tok->vocab_size());
  std::printf("text: %.1f MB of English (%zu chunks of ~64 KiB), %.2f bytes/token\n", double(text.size()) / 1e6,
              chunks.size(), double(text.size()) / double(std::max<size_t>(ntok, 1)));
  std::printf("encode, 1 thread, best of 3: %.1f MB/s (goal >= 20: %s); ByteTokenizer on the same text: %.1f MB/s\n",
              best, best >= 20 ? "met" : "NOT met", best_bytes);
  std::printf("cold (a fresh tokenizer, empty BPE cache, one pass over the %.2f MB corpus): %.1f MB/s\n",
              double(corpus.value().size()) / 1e6, cold);
  return 0;
}

}  // namespace m1::cli
