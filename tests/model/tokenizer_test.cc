#include "model/tokenizer.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "base/rng.h"

namespace m1 {
namespace {

const char* const kMarkup[] = {"<bos>",    "<eos>",    "<pad>",    "<think>",
                               "</think>", "<answer>", "</answer>"};

TEST_CASE("ByteTokenizer: vocabulary layout") {
  ByteTokenizer tok;
  CHECK(tok.vocab_size() == 263);
  CHECK(tok.bos_id() == 256);
  CHECK(tok.eos_id() == 257);
  CHECK(tok.pad_id() == 258);
  for (int i = 0; i < 7; ++i) CHECK(tok.special_id(kMarkup[i]) == 256 + i);
  CHECK(tok.special_id("<answer") == -1);
  CHECK(tok.special_id("a") == -1);
  CHECK(tok.special_id("") == -1);
}

TEST_CASE("ByteTokenizer: arbitrary bytes round trip, one id per byte") {
  ByteTokenizer tok;
  const std::string utf8 = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";  // é € 😀
  std::vector<int> ids = tok.encode(utf8);
  REQUIRE(ids.size() == utf8.size());
  for (size_t i = 0; i < utf8.size(); ++i) CHECK(ids[i] == static_cast<unsigned char>(utf8[i]));
  CHECK(tok.decode(ids) == utf8);

  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  CHECK(tok.decode(tok.encode(all)) == all);

  const uint64_t seed = 1234;
  Rng rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    std::string s(rng.below(64), '\0');
    for (char& c : s) c = static_cast<char>(rng.below(256));
    // Sprinkle markup pieces so specials and near-misses ("<answer") occur inside random bytes.
    if (trial % 3 == 0) s.insert(rng.below(s.size() + 1), kMarkup[rng.below(7)]);
    if (trial % 5 == 0) s.insert(rng.below(s.size() + 1), "<answe");
    INFO("seed " << seed << " trial " << trial);
    std::vector<int> ids2 = tok.encode(s);
    for (int id : ids2) CHECK((id >= 0 && id < tok.vocab_size()));
    CHECK(tok.decode(ids2, /*keep_special=*/true) == s);
  }
}

TEST_CASE("ByteTokenizer: special markup encodes to its id") {
  ByteTokenizer tok;
  std::vector<int> ids = tok.encode("<think>x</think><answer>42</answer>");
  std::vector<int> want = {259, 'x', 260, 261, '4', '2', 262};
  CHECK(ids == want);
  CHECK(tok.encode("<bos><eos><pad>") == std::vector<int>{256, 257, 258});
  // Near-misses stay bytes.
  CHECK(tok.encode("<answer").size() == 7);
  CHECK(tok.encode("<<answer>") == std::vector<int>{'<', 261});
  CHECK(tok.encode("</answer") == std::vector<int>{'<', '/', 'a', 'n', 's', 'w', 'e', 'r'});
  CHECK(tok.encode("").empty());
}

TEST_CASE("ByteTokenizer: decode keep_special") {
  ByteTokenizer tok;
  std::vector<int> ids = {256, 259, 'a', 260, 261, '7', 262, 257, 258, 258};
  CHECK(tok.decode(ids) == "<think>a</think><answer>7</answer>");
  CHECK(tok.decode(ids, true) == "<bos><think>a</think><answer>7</answer><eos><pad><pad>");
  CHECK(tok.decode({-1, 263, 'z', 1000}) == "<?-1><?263>z<?1000>");
  CHECK(tok.decode({-1, 263}, true) == "<?-1><?263>");
}

}  // namespace
}  // namespace m1
