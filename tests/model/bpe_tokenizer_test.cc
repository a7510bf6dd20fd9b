// BpeTokenizer (model/bpe_tokenizer.h) against Hugging Face `tokenizers`.
// The expected ids below were produced OFFLINE with the Hugging Face tokenizers Rust library
// itself (the `tokenizers` npm package 0.23.2, its Node binding): this file's tokenizers were
// written out with M1_BPE_TEST_DUMP=DIR build-cpu/test_model -tc='*dump*', then for each text
// `(await Tokenizer.fromFile(f).encode(text, null, {addSpecialTokens: false})).getIds()` and
// `await tok.decode(ids, false)` were recorded here. Nothing here needs the network or node.
#include "model/bpe_tokenizer.h"

#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/rng.h"
#include "model/bpe_internal.h"
#include "model/bpe_train.h"
#include "model/chat_template.h"
#include "model/sft.h"

namespace m1 {
namespace {

using ojson = nlohmann::ordered_json;

// Raw text to its byte-level spelling ("用" -> "ç\x94¨" as GPT-2 characters).
std::string bl(const std::string& raw) {
  std::string s;
  for (char c : raw) s += byte_level_char(static_cast<unsigned char>(c));
  return s;
}

ojson added(int id, const std::string& content, bool special, bool normalized, bool single_word = false,
            bool lstrip = false, bool rstrip = false) {
  return {{"id", id},         {"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
          {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}};
}

ojson byte_level(bool prefix, bool regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", prefix}, {"trim_offsets", true}, {"use_regex", regex}};
}

ojson split(const std::string& kind, const std::string& pattern, const std::string& behavior, bool invert) {
  return {{"type", "Split"}, {"pattern", {{kind, pattern}}}, {"behavior", behavior}, {"invert", invert}};
}

// A byte-level BPE: the 256 byte characters (ids = byte values), then one token per merge (raw
// text pairs), then the added tokens (ids given by the caller, after the vocab).
ojson bpe_file(const std::vector<std::pair<std::string, std::string>>& merges, bool legacy, const ojson& pre,
               const ojson& added_tokens) {
  ojson vocab = ojson::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_char(static_cast<unsigned char>(b))] = b;
  ojson mj = ojson::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(bl(a + b))) vocab[bl(a + b)] = next++;
    if (legacy) mj.push_back(bl(a) + " " + bl(b));
    else mj.push_back({bl(a), bl(b)});
  }
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added_tokens},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre},
          {"post_processor", nullptr},
          {"decoder", byte_level(true, true)},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
            {"vocab", vocab}, {"merges", mj}}}};
}

const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"h", "e"},    {"l", "l"},        {"he", "ll"},   {"hell", "o"},   {" ", "w"},     {"o", "r"},
    {" w", "or"},  {"l", "d"},        {" wor", "ld"}, {"T", "h"},      {"Th", "e"},    {" ", "t"},
    {" t", "h"},   {"i", "n"},        {" th", "in"},  {" thin", "g"},  {"1", "2"},     {"12", "3"},
    {"\xE7", "\x94"}, {"\xE7\x94", "\xA8"}, {"\xE6\x88", "\xB7"}, {"\xE6", "\x88"}, {"用", "户"}, {"\n", "\n"},
    {" ", " "},    {",", " "},        {"a", ","},     {";", ";"},      {"t", "h"},     {"th", "e"}};

// Training text for the trained tokenizer (written for this test).
const char* const kCorpus =
    "The tokenizer turns text into numbers. A byte-level BPE starts from the 256 bytes and merges "
    "the most frequent pair of adjacent tokens, again and again, until the vocabulary is as large as "
    "wanted. The words of the text come first from a regular expression that splits letters, numbers, "
    "punctuation and spaces apart, so that no merge crosses from one word into the next. Then the "
    "merges run on the words one at a time. The more often a pair of tokens occurs in the training "
    "text, the earlier it merges, and the earlier merges have the lower ranks. When the tokenizer "
    "encodes new text, it splits it the same way and applies the merges in the order of their ranks. "
    "Numbers split into groups of at most three digits: 1234567 is 123, 456 and 7. Spaces stay in "
    "front of the words that follow them. New lines and tabs are words of their own.\n\n"
    "Special tokens such as the beginning of a sentence are matched before anything else. They are "
    "never split, and the model sees each of them as one token. The tokenizer of the model must be "
    "the one it was trained with: the same text must give the same numbers, byte for byte.\n";

// The hand-made tokenizers and what Hugging Face makes of some texts.
struct Case {
  const char* name;
  ojson file;
  std::vector<std::string> texts;
  std::vector<std::vector<int>> ids;  // Hugging Face's encode(text, add_special_tokens=False)
};

ojson m1_added() {
  return ojson::array({added(286, "<beginning_of_sentence>", true, false), added(287, "<end_of_sentence>", true, false),
                       added(288, "<think>", false, true), added(289, "</think>", true, false)});
}

std::vector<Case> cases() {
  std::vector<Case> c;
  const ojson m1_pre = {{"type", "Sequence"},
                        {"pretokenizers", {split("Regex", kGpt4SplitPattern, "Isolated", false), byte_level(false, false)}}};
  c.push_back({"m1_style_tuple_merges",
               bpe_file(kMerges, false, m1_pre, m1_added()),
               {"Hello world! The thing's 12345 用户 said: hello\n\n  there",
                "<beginning_of_sentence>user name=用户\nhi<end_of_sentence>\n", "<think>hello</think> <think",
                "ÀÉÎõü ΑΒΓ αβγ ﬁ ① ½ ２３ 𝟘 \u00a0x\u3000y", "x\r\n\r\n\ty  \n"},
               {}});
  ojson legacy_added = ojson::array({added(286, "<|endoftext|>", true, false)});
  c.push_back({"gpt2_style_legacy_merges", bpe_file(kMerges, true, byte_level(true, true), legacy_added),
               {"hello world", "Hello  world\n", "it's 2024 the thing", "<|endoftext|>hello<|endoftext|>"},
               {}});
  // Added-token flags: single_word, lstrip, rstrip; normalized and not.
  ojson flags = m1_added();
  flags.push_back(added(285, "the", false, true, true));  // also a vocab token: its vocab id
  flags.push_back(added(290, "<l>", true, false, false, true));
  flags.push_back(added(291, "<r>", false, true, false, false, true));
  flags.push_back(added(292, "<lr>", true, false, false, true, true));
  c.push_back({"added_token_flags", bpe_file(kMerges, false, m1_pre, flags),
               {"the other bathe the", "a  <l>  b <r>  c", "x \t<lr>\n y", "the,the;the"},
               {}});
  // Every split behaviour, plain and inverted, on a pattern of separators.
  for (const char* beh : {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"})
    for (bool inv : {false, true}) {
      const ojson pre = {{"type", "Sequence"},
                         {"pretokenizers", {split("Regex", "[,;]\\s*|\\p{Nd}", beh, inv), byte_level(false, false)}}};
      c.push_back({"", bpe_file(kMerges, false, pre, m1_added()), {"a, b;;c, 123the", ";;a,"}, {}});
      c.back().file["_name"] = std::string("split_") + beh + (inv ? "_inverted" : "");
    }
  c.push_back({"split_string_pattern",
               bpe_file(kMerges, false,
                        {{"type", "Sequence"},
                         {"pretokenizers", {split("String", "the", "MergedWithNext", false), byte_level(false, true)}}},
                        m1_added()),
               {"bathe the other", "thethe"},
               {}});
  // Character-level BPE (no ByteLevel): byte_fallback to <0xNN> tokens (0xE7 has none: unk),
  // ByteFallback + Fuse decoder; and the same without byte_fallback, unk fused or not.
  for (int variant = 0; variant < 3; ++variant) {
    ojson vocab = ojson::object();
    vocab["<unk>"] = 0;
    for (int b = 0; b < 256; ++b)
      if (b != 0xE7) vocab[fmt::format("<0x{:02X}>", b)] = int(vocab.size());
    for (const char* t : {"a", "b", "c", "d", " ", "é", "ab", "abc", " a"}) vocab[t] = int(vocab.size());
    const int n = int(vocab.size());
    ojson f = {{"version", "1.0"},
               {"added_tokens", {added(n, "</s>", true, false)}},
               {"normalizer", nullptr},
               {"pre_tokenizer", split("Regex", " ", "MergedWithNext", false)},
               {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}},
               {"model",
                {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", variant == 2}, {"byte_fallback", variant == 0},
                 {"vocab", vocab}, {"merges", ojson::array({ojson::array({"a", "b"}), ojson::array({"ab", "c"}), ojson::array({" ", "a"})})}}}};
    f["_name"] = variant == 0 ? "char_byte_fallback" : variant == 1 ? "char_unk" : "char_unk_fused";
    c.push_back({"", f, {"abc é 用 ab", "ABC abd", "a</s>b"}, {}});
  }
  // A tokenizer trained by model/bpe_train.cc on a short English text (M1's layout).
  BpeTrainOptions o;
  o.merges = 200;
  auto trained = train_bpe_tokenizer_json(kCorpus, o);
  REQUIRE(trained.is_ok());
  ojson tf = ojson::parse(trained.value());
  tf["_name"] = "trained_200";
  c.push_back({"", tf,
               {"The tokenizer splits text into words, then merges the most frequent pairs.",
                "<beginning_of_sentence>user name=用户\nWhat is 123+4567?<end_of_sentence>\n",
                "  Numbers: 3.14159, 2,718; don't   stop!\n\n"},
               {}});
  return c;
}

// Expected ids of the generated cases (split behaviours, string pattern), by name.

// Hugging Face's output for cases(): ids of each text, and decode(ids, skip_special_tokens=false).
const char* const kReference = R"ref({"name":"added_token_flags","ids":[[285,32,111,116,256,114,32,98,97,116,256,32,285],[97,290,32,32,98,32,291,99],[120,292,121],[285,44,285,59,285]],"decoded":["the other bathe the","a<l>  b <r>c","x<lr>y","the,the;the"]}
{"name":"char_byte_fallback","ids":[[263,260,261,260,0,260,262],[66,67,68,260,262,259],[256,265,257]],"decoded":["abc é <unk> ab","ABC abd","a</s>b"]}
{"name":"char_unk","ids":[[263,260,261,260,0,260,262],[0,0,0,260,262,259],[256,265,257]],"decoded":["abc é <unk> ab","<unk><unk><unk> abd","a</s>b"]}
{"name":"char_unk_fused","ids":[[263,260,261,260,0,260,262],[0,260,262,259],[256,265,257]],"decoded":["abc é <unk> ab","<unk> abd","a</s>b"]}
{"name":"gpt2_style_legacy_merges","ids":[[32,259,264],[32,72,101,257,111,32,264,10],[32,105,116,39,115,32,50,48,50,52,267,256,271],[286,32,259,286]],"decoded":[" hello world"," Hello  world\n"," it's 2024 the thing","<|endoftext|> hello<|endoftext|>"]}
{"name":"m1_style_tuple_merges","ids":[[72,101,257,111,264,33,32,84,256,271,39,115,32,273,52,53,32,278,32,115,97,105,100,58,32,259,279,32,267,256,114,101],[286,117,115,101,114,32,110,97,109,101,61,278,10,104,105,287,10],[288,259,289,32,60,284,269,107],[195,128,195,137,195,142,195,181,195,188,32,206,145,206,146,206,147,32,206,177,206,178,206,179,32,239,172,129,32,226,145,160,32,194,189,32,239,188,146,239,188,147,32,240,157,159,152,32,194,160,120,227,128,128,121],[120,13,10,13,10,9,121,280,10]],"decoded":["Hello world! The thing's 12345 用户 said: hello\n\n  there","<beginning_of_sentence>user name=用户\nhi<end_of_sentence>\n","<think>hello</think> <think","ÀÉÎõü ΑΒΓ αβγ ﬁ ① ½ ２３ 𝟘  x　y","x\r\n\r\n\ty  \n"]}
{"name":"split_Contiguous","ids":[[97,281,98,283,99,281,273,116,256],[283,97,44]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_Contiguous_inverted","ids":[[97,281,98,283,99,281,273,116,256],[283,97,44]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_Isolated","ids":[[97,281,98,59,59,99,281,49,50,51,116,256],[59,59,97,44]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_Isolated_inverted","ids":[[97,281,98,59,59,99,281,49,50,51,116,256],[59,59,97,44]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_MergedWithNext","ids":[[97,281,98,59,59,99,281,49,50,51,116,256],[59,59,97,44]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_MergedWithNext_inverted","ids":[[97,281,98,59,59,99,281,49,50,51,116,256],[59,59,282]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_MergedWithPrevious","ids":[[97,281,98,59,59,99,281,49,50,51,116,256],[59,59,282]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_MergedWithPrevious_inverted","ids":[[97,281,98,59,59,99,281,49,50,51,116,256],[59,59,97,44]],"decoded":["a, b;;c, 123the",";;a,"]}
{"name":"split_Removed","ids":[[97,98,99,116,256],[97]],"decoded":["abcthe","a"]}
{"name":"split_Removed_inverted","ids":[[281,59,59,281,49,50,51],[59,59,44]],"decoded":[", ;;, 123",";;,"]}
{"name":"split_string_pattern","ids":[[98,97,116,256,32,116,256,32,111,116,256,114],[116,256,116,256]],"decoded":["bathe the other","thethe"]}
{"name":"trained_200","ids":[[282,339,383,295,335,316,44,259,110,299,259,381,271,283,113,117,330,384,115,46],[391,117,115,261,275,322,61,231,148,168,230,136,183,10,87,104,289,386,32,387,43,346,55,63,392,10],[32,340,308,58,32,51,46,49,52,49,53,57,44,32,50,44,55,49,56,59,32,100,111,110,39,116,32,32,264,325,112,33,10,10]],"decoded":["The tokenizer splits text into words, then merges the most frequent pairs.","<beginning_of_sentence>user name=用户\nWhat is 123+4567?<end_of_sentence>\n","  Numbers: 3.14159, 2,718; don't   stop!\n\n"]}
)ref";

std::string case_name(const Case& k) { return k.file.contains("_name") ? k.file["_name"].get<std::string>() : k.name; }

std::shared_ptr<BpeTokenizer> load_case(const Case& k) {
  ojson f = k.file;
  f.erase("_name");
  auto t = BpeTokenizer::parse(f.dump(), case_name(k) + ".json");
  REQUIRE_MESSAGE(t.is_ok(), t.status().message());
  return t.value();
}

TEST_CASE("BpeTokenizer: every hand-made tokenizer encodes and decodes as Hugging Face tokenizers does") {
  std::map<std::string, nlohmann::json> ref;
  std::stringstream ss(kReference);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty()) {
      auto j = nlohmann::json::parse(line);
      ref[j["name"].get<std::string>()] = j;
    }
  const std::vector<Case> all = cases();
  CHECK(ref.size() == all.size());
  for (const Case& k : all) {
    const std::string name = case_name(k);
    INFO(name);
    REQUIRE(ref.count(name) == 1);
    auto tok = load_case(k);
    for (size_t i = 0; i < k.texts.size(); ++i) {
      INFO(k.texts[i]);
      const std::vector<int> ids = tok->encode(k.texts[i]);
      CHECK(ids == ref[name]["ids"][i].get<std::vector<int>>());
      CHECK(tok->decode_hf(ids, false) == ref[name]["decoded"][i].get<std::string>());
    }
  }
}

TEST_CASE("BpeTokenizer: dump the hand-made tokenizers (for regenerating the expected ids)") {
  const char* dir = std::getenv("M1_BPE_TEST_DUMP");
  if (!dir) return;
  for (const Case& k : cases()) {
    const std::string name = k.file.contains("_name") ? k.file["_name"].get<std::string>() : k.name;
    ojson f = k.file;
    f.erase("_name");
    REQUIRE(write_file(path_join(dir, name + ".json"), f.dump(1)).is_ok());
    std::string texts;
    for (const std::string& t : k.texts) texts += ojson(t).dump() + "\n";
    REQUIRE(write_file(path_join(dir, name + ".texts.jsonl"), texts).is_ok());
  }
}

// A tokenizer file with one part replaced; errors must name the construct and the file.
std::string error_of(const std::function<void(ojson&)>& edit) {
  ojson f = bpe_file(kMerges, false, byte_level(false, true), m1_added());
  edit(f);
  auto t = BpeTokenizer::parse(f.dump(), "bad/tokenizer.json");
  return t.is_ok() ? "" : t.status().message();
}

TEST_CASE("BpeTokenizer: unsupported constructs and malformed files are errors naming the file and the JSON path") {
  struct Bad {
    std::function<void(ojson&)> edit;
    std::vector<std::string> says;
  };
  const std::vector<Bad> bad = {
      {[](ojson& f) { f["model"]["type"] = "WordPiece"; }, {"model.type", "WordPiece", "not supported"}},
      {[](ojson& f) { f["normalizer"] = {{"type", "NFC"}}; }, {"normalizer", "NFC", "not supported"}},
      {[](ojson& f) { f["pre_tokenizer"] = {{"type", "Metaspace"}}; }, {"pre_tokenizer.type", "Metaspace"}},
      {[](ojson& f) {
         f["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {byte_level(false, false), {{"type", "Digits"}}}}};
       },
       {"pre_tokenizer.pretokenizers[1]", "after ByteLevel"}},
      {[](ojson& f) { f["model"]["continuing_subword_prefix"] = "##"; }, {"model.continuing_subword_prefix", "##"}},
      {[](ojson& f) { f["model"]["end_of_word_suffix"] = "</w>"; }, {"model.end_of_word_suffix", "</w>"}},
      {[](ojson& f) { f["model"]["dropout"] = 0.1; }, {"model.dropout", "dropout"}},
      {[](ojson& f) { f["decoder"] = {{"type", "WordPiece"}}; }, {"decoder.type", "WordPiece"}},
      {[](ojson& f) { f["truncation"] = {{"max_length", 8}}; }, {"truncation"}},
      {[](ojson& f) { f["model"]["merges"][3] = bl("x") + " " + bl("q"); }, {"model.merges[3]", "xq"}},
      {[](ojson& f) { f["model"]["merges"][0] = "a b c"; }, {"model.merges[0]", "one space"}},
      {[](ojson& f) { f["model"]["merges"][1] = 7; }, {"model.merges[1]"}},
      {[](ojson& f) { f["model"]["vocab"]["he"] = "x"; }, {"model.vocab[\"he\"]", "integer"}},
      {[](ojson& f) { f["model"]["vocab"]["he"] = 3; }, {"model.vocab", "id 3"}},
      {[](ojson& f) { f["model"].erase("vocab"); }, {"model.vocab", "missing"}},
      {[](ojson& f) { f["model"]["unk_token"] = "<nope>"; }, {"model.unk_token", "<nope>"}},
      {[](ojson& f) { f["added_tokens"][1].erase("content"); }, {"added_tokens[1].content", "missing"}},
      {[](ojson& f) { f["added_tokens"][2]["special"] = "yes"; }, {"added_tokens[2].special", "true or false"}},
      {[](ojson& f) { f["pre_tokenizer"] = split("Regex", "(unclosed", "Isolated", false); }, {"pre_tokenizer.pattern.Regex", "offset"}},
      {[](ojson& f) { f["pre_tokenizer"] = split("Regex", "a", "Sideways", false); }, {"pre_tokenizer.behavior", "Sideways"}},
      {[](ojson& f) { f["pre_tokenizer"] = split("Glob", "a", "Isolated", false); }, {"pre_tokenizer.pattern"}},
      {[](ojson& f) { f["added_tokens"] = ojson::array(); }, {"no eos token"}},
  };
  for (const Bad& b : bad) {
    const std::string e = error_of(b.edit);
    INFO(e);
    CHECK(e.find("bad/tokenizer.json") != std::string::npos);
    for (const std::string& w : b.says) CHECK(e.find(w) != std::string::npos);
  }
  for (const std::string text : {"{\"model\": ", "[1, 2]", "", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}"}) {
    auto t = BpeTokenizer::parse(text, "bad/tokenizer.json");
    REQUIRE(!t.is_ok());
    INFO(t.status().message());
    CHECK(t.status().message().find("bad/tokenizer.json") != std::string::npos);
  }
  auto missing = BpeTokenizer::load("/nonexistent/tokenizer.json");
  REQUIRE(!missing.is_ok());
  CHECK(missing.status().message().find("/nonexistent/tokenizer.json") != std::string::npos);
}

// A random string of characters from several scripts, whitespace kinds, marks and emoji.
std::string random_text(Rng& r) {
  static const std::vector<std::string> pool = {
      "a", "Z", "e", " ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "1", "42", "007", ".", "!?", "(", "\"", "é", "ß", "Ω",
      "ж", "用", "户", "の", "한", "ع", "\u0301", "\u200d", "\u00a0", "\u3000", "\u2028", "😀", "👍🏽", "𝟘", "½", "²",
      "<think>", "<end_of_sentence>", "<beginning_of_sentence>", "<", ">", "</", "the", " the", "hello"};
  std::string s;
  const int n = int(r.below(40));
  for (int i = 0; i < n; ++i) s += pool[r.below(pool.size())];
  return s;
}

TEST_CASE("BpeTokenizer: decode(encode(x)) == x for random valid UTF-8 and invalid bytes encode as bytes") {
  const std::vector<Case> all = cases();
  Rng r(42);
  for (const Case& k : all) {
    const std::string name = case_name(k);
    if (name.rfind("split_Removed", 0) == 0 || name.rfind("char_", 0) == 0) continue;  // lossy by design
    INFO(name);
    auto tok = load_case(k);
    for (int i = 0; i < 200; ++i) {
      const std::string x = random_text(r);
      INFO(x);
      const std::vector<int> ids = tok->encode(x);
      for (int id : ids) CHECK(tok->valid_id(id));
      if (name.rfind("gpt2", 0) != 0) CHECK(tok->decode_hf(ids, false) == x);  // (add_prefix_space adds spaces)
      CHECK(tok->decode(ids, true) == tok->decode_hf(ids, false));
    }
  }
  // Not UTF-8 (Hugging Face cannot take it): each invalid byte is a piece of its own.
  auto tok = load_case(all[0]);
  const std::string bad = "ab\xff\xc3(cd\xe7\x94";
  const std::vector<int> ids = tok->encode(bad);
  CHECK(ids == std::vector<int>{97, 98, 255, 195, 40, 99, 100, 231, 148});
  CHECK(tok->decode_hf(ids, false) == "ab\xEF\xBF\xBD\xEF\xBF\xBD(cd\xEF\xBF\xBD");  // lossy, as Hugging Face's
}

TEST_CASE("BpeTokenizer: bos/eos/pad and special ids and vocab size and unknown ids") {
  const std::vector<Case> all = cases();
  auto tok = load_case(all[0]);  // M1's specials
  CHECK(tok->bos_id() == tok->special_id("<beginning_of_sentence>"));
  CHECK(tok->eos_id() == tok->special_id("<end_of_sentence>"));
  CHECK(tok->pad_id() == tok->eos_id());  // no pad token: pad = eos
  CHECK(tok->special_id("<think>") == 288);
  CHECK(tok->special_id("hello") == -1);  // a vocab token, not an added one
  CHECK(tok->token_to_id(bl("hello")) >= 256);
  CHECK(tok->vocab_size() == 290);
  const std::vector<int> ids = {tok->bos_id(), 72, tok->eos_id(), 9999};
  CHECK(tok->decode(ids) == "H<?9999>");
  CHECK(tok->decode(ids, true) == "<beginning_of_sentence>H<end_of_sentence><?9999>");
  CHECK(tok->decode_hf(ids, false) == "<beginning_of_sentence>H<end_of_sentence>");
  CHECK(tok->decode_hf({288, 286, 72}, true) == "<think>H");  // skip_special_tokens keeps non-special ones
  // Named explicitly (as tokenizer_config.json would): another added token.
  ojson f = all[0].file;
  auto named = BpeTokenizer::parse(f.dump(), "t.json", {"<think>", "</think>", "<beginning_of_sentence>"});
  REQUIRE(named.is_ok());
  CHECK(named.value()->bos_id() == 288);
  CHECK(named.value()->eos_id() == 289);
  CHECK(named.value()->pad_id() == 286);
  auto unknown = BpeTokenizer::parse(f.dump(), "t.json", {"<nope>", "", ""});
  REQUIRE(!unknown.is_ok());
  CHECK(unknown.status().message().find("<nope>") != std::string::npos);
}

TEST_CASE("load_tokenizer: empty = ByteTokenizer or a file with tokenizer_config.json naming bos/eos/pad") {
  auto b = load_tokenizer("");
  REQUIRE(b.is_ok());
  CHECK(dynamic_cast<const ByteTokenizer*>(b.value().get()) != nullptr);
  const std::string dir = "/tmp/m1-bpe-test-" + std::to_string(::getpid());
  REQUIRE(make_dirs(dir).is_ok());
  REQUIRE(write_file(path_join(dir, "tokenizer.json"), cases()[0].file.dump()).is_ok());
  auto t = load_tokenizer(path_join(dir, "tokenizer.json"));
  REQUIRE(t.is_ok());
  CHECK(t.value()->eos_id() == 287);
  REQUIRE(write_file(path_join(dir, "tokenizer_config.json"),
                     R"({"bos_token": {"content": "<think>"}, "eos_token": "</think>", "pad_token": null})")
              .is_ok());
  t = load_tokenizer(path_join(dir, "tokenizer.json"));
  REQUIRE(t.is_ok());
  CHECK(t.value()->bos_id() == 288);
  CHECK(t.value()->eos_id() == 289);
  CHECK(t.value()->pad_id() == 289);
  CHECK(t.value()->encode("<think>hello") == std::vector<int>{288, 259});
  REQUIRE(remove_all(dir).is_ok());
}

TEST_CASE("BpeTokenizer: concurrent encoders agree with a single one (the sharded cache)") {
  const std::vector<Case> all = cases();
  auto tok = load_case(all.back());  // the trained one
  Rng r(7);
  std::vector<std::string> texts;
  for (int i = 0; i < 300; ++i) texts.push_back(random_text(r) + " " + kCorpus + random_text(r));
  std::vector<std::vector<int>> want;
  for (const std::string& t : texts) want.push_back(tok->encode(t));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> th;
  for (int k = 0; k < 4; ++k)
    th.emplace_back([&, k] {
      for (size_t i = 0; i < texts.size(); ++i) {
        const size_t j = (i * 7 + size_t(k) * 31) % texts.size();
        bad[size_t(k)] += tok->encode(texts[j]) != want[j];
      }
    });
  for (auto& t : th) t.join();
  for (int b : bad) CHECK(b == 0);
}

TEST_CASE("BPE merge loop: the heap version equals the quadratic one on long words") {
  // Random merges over a small alphabet, then long random words: both give Hugging Face's order.
  Rng r(3);
  bpe::PairMap merges;
  int next = 8;
  for (int rank = 0; rank < 300; ++rank) {
    const int a = int(r.below(uint64_t(next))), b = int(r.below(uint64_t(next)));
    const uint64_t key = uint64_t(a) << 32 | uint32_t(b);
    if (merges.find(key) != bpe::PairMap::kEmpty) continue;
    merges.set(key, uint64_t(rank) << 32 | uint32_t(next++));
  }
  CHECK(merges.size() > 250);
  for (int w = 0; w < 200; ++w) {
    std::vector<int> s(1 + r.below(300));
    for (int& x : s) x = int(r.below(8));
    std::vector<int> a = s, b = s;
    bpe::merge_symbols_quadratic(merges, &a);
    bpe::merge_symbols_heap(merges, &b);
    CHECK(a == b);
  }
}

TEST_CASE("chat templates: m1 and custom ones and errors and the prompt ids with M1 special tokens") {
  CHECK(resolve_chat_template("", "k").value().empty());
  CHECK(resolve_chat_template("m1", "k").value() == kM1ChatTemplate);
  CHECK(resolve_chat_template("Q: {user}\nA:", "k").value() == "Q: {user}\nA:");
  auto no_user = resolve_chat_template("hello", "cfg.toml: key 'model.chat_template'");
  REQUIRE(!no_user.is_ok());
  CHECK(no_user.status().message().find("cfg.toml: key 'model.chat_template'") != std::string::npos);
  CHECK(!resolve_chat_template("{user} {assistant}", "k").is_ok());
  CHECK(resolve_chat_template("{\"a\": 1} {user}", "k").is_ok());  // braces that are no placeholder
  CHECK(apply_chat_template("Q: {user} ({system})", "1+1", "sys") == "Q: 1+1 (sys)");
  CHECK(apply_chat_template(kM1ChatTemplate, "23+58=") ==
        std::string("<beginning_of_sentence>system ai_setting=MiniMax AI\n") + kM1SystemPrompt +
            "<end_of_sentence>\n<beginning_of_sentence>user name=用户\n23+58=<end_of_sentence>\n"
            "<beginning_of_sentence>ai name=MiniMax AI\n");
  auto tok = load_case(cases()[0]);  // bos = <beginning_of_sentence> (286), eos = <end_of_sentence> (287)
  const std::vector<int> ids = encode_chat_prompt(*tok, kM1ChatTemplate, "hi");
  REQUIRE(ids.size() > 4);
  CHECK(ids[0] == 286);  // the template starts with the bos token: not doubled
  CHECK(ids[1] != 286);
  CHECK(std::count(ids.begin(), ids.end(), 286) == 3);
  CHECK(std::count(ids.begin(), ids.end(), 287) == 2);
  CHECK(tok->decode(ids, true) == apply_chat_template(kM1ChatTemplate, "hi"));
  const std::vector<int> plain = encode_chat_prompt(*tok, "Q: {user}", "hi");
  CHECK(plain[0] == 286);  // bos put in front
  CHECK(encode_chat_prompt(*tok, "", "hi") == encode_prompt(*tok, "hi"));
}

TEST_CASE("SFT config: model.tokenizer and model.chat_template and checkpoints carry the tokenizer") {
  const std::string dir = "/tmp/m1-bpe-sft-" + std::to_string(::getpid());
  REQUIRE(remove_all(dir).is_ok());
  REQUIRE(make_dirs(dir).is_ok());
  BpeTrainOptions o;
  o.merges = 1;  // 256 + 1 + 6 specials = 263 = tiny's vocab_size
  auto text = train_bpe_tokenizer_json(kCorpus, o);
  REQUIRE(text.is_ok());
  REQUIRE(write_file(path_join(dir, "tok.json"), text.value()).is_ok());
  const std::string cfg = path_join(dir, "sft.toml");
  const std::string body = std::string("[model]\nconfig = \"") + M1_SOURCE_DIR +
                           "/configs/models/tiny.json\"\ntokenizer = \"tok.json\"\nchat_template = \"m1\"\n"
                           "[train]\nsteps = 2\nbatch = 4\ncheckpoint_every = 2\neval_every = 0\n[output]\ndir = \"out\"\n";
  REQUIRE(write_file(cfg, body).is_ok());
  auto c = load_sft_config(cfg);
  REQUIRE_MESSAGE(c.is_ok(), c.status().message());
  CHECK(c.value().tokenizer == path_join(dir, "tok.json"));  // relative to the config's folder
  CHECK(c.value().chat_template == "m1");
  c.value().quiet = true;
  SftReport r;
  const Status s = run_sft(c.value(), &r);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  CHECK(path_exists(path_join(r.final_dir, "tokenizer.json")));
  CHECK(model_dir_tokenizer(r.final_dir, "") == path_join(r.final_dir, "tokenizer.json"));
  CHECK(model_dir_tokenizer(r.final_dir, "x.json") == "x.json");
  CHECK(model_dir_tokenizer(dir, "").empty());
  // A missing tokenizer and a bad template are errors naming the key.
  REQUIRE(write_file(cfg, body.substr(0, body.find("tokenizer")) + "tokenizer = \"nope.json\"\n" +
                              body.substr(body.find("[train]")))
              .is_ok());
  auto missing = load_sft_config(cfg);
  REQUIRE(!missing.is_ok());
  CHECK(missing.status().message().find("model.tokenizer") != std::string::npos);
  CHECK(missing.status().message().find("nope.json") != std::string::npos);
  REQUIRE(write_file(cfg, body.substr(0, body.find("chat_template")) + "chat_template = \"no user\"\n" +
                              body.substr(body.find("[train]")))
              .is_ok());
  auto bad = load_sft_config(cfg);
  REQUIRE(!bad.is_ok());
  CHECK(bad.status().message().find("model.chat_template") != std::string::npos);
  REQUIRE(remove_all(dir).is_ok());
}

}  // namespace
}  // namespace m1
