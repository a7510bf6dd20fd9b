// Tests for model/safetensors.cc: F32 and BF16 round trips (BF16 rounds to nearest even), F16
// reads (subnormals, ±inf), sharded checkpoints, and corrupt files: each fails with an error that
// names the file and the tensor, and random corruption never crashes the reader.
#include "model/safetensors.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"

namespace m1 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_((fs::temp_directory_path() / ("m1-test-" + std::to_string(::getpid()) + "-" + name))
                  .string()) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_join(path_, name); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  return s;
}

// Writes a hand-made safetensors file: length field, HEADER verbatim, DATA.
void craft(const std::string& path, const std::string& header, const std::string& data) {
  REQUIRE(write_file(path, u64le(header.size()) + header + data).is_ok());
}

std::string slurp(const std::string& path) {
  auto r = read_file(path);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  return r.value();
}

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

std::string u16_bytes(const std::vector<uint16_t>& v) {
  std::string s;
  for (uint16_t h : v) {
    s.push_back(char(h & 0xFF));
    s.push_back(char(h >> 8));
  }
  return s;
}

// Expects a failed status whose message holds every needle.
void expect_error(const Status& s, const std::vector<std::string>& needles) {
  REQUIRE_FALSE(s.is_ok());
  INFO("message: " << s.message());
  for (const std::string& n : needles) CHECK(s.message().find(n) != std::string::npos);
}

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Two tensors "alpha" [4] and "beta" [16] in F32 at PATH.
void write_alpha_beta(const std::string& path) {
  static const std::vector<float> a = {1, 2, 3, 4};
  static std::vector<float> b(16);
  for (int i = 0; i < 16; ++i) b[size_t(i)] = 0.5f * float(i) - 3.0f;
  REQUIRE(write_safetensors(path, {{"alpha", {4}, a.data()}, {"beta", {16}, b.data()}}, "F32").is_ok());
}

}  // namespace

TEST_CASE("safetensors: F32 round trip is exact and the layout follows the format") {
  TempDir dir("st-f32");
  const std::string path = dir.file("w.safetensors");
  std::vector<float> a = {1.5f, -0.0f, 3.25e-40f /* subnormal */, std::numeric_limits<float>::infinity(),
                          -1e30f, 7.0f};
  std::vector<float> b = {42.0f};
  std::vector<float> w(3 * 5);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(float(i)) * 100.0f;
  REQUIRE(write_safetensors(path,
                            {{"model.layers.0.w", {3, 5}, w.data()},
                             {"a", {2, 3}, a.data()},
                             {"scalar", {}, b.data()},
                             {"empty", {0, 4}, nullptr}},
                            "F32")
              .is_ok());

  // Layout: u64 N, N % 8 == 0, header with __metadata__, contiguous offsets from 0.
  const std::string bytes = slurp(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  CHECK(n % 8 == 0);
  const json h = json::parse(bytes.substr(8, n));
  CHECK(h["__metadata__"] == json({{"format", "pt"}}));
  CHECK(h["model.layers.0.w"]["dtype"] == "F32");
  CHECK(h["model.layers.0.w"]["shape"] == json({3, 5}));
  CHECK(h["model.layers.0.w"]["data_offsets"] == json({0, 60}));
  CHECK(h["a"]["data_offsets"] == json({60, 84}));
  CHECK(h["scalar"]["data_offsets"] == json({84, 88}));
  CHECK(h["empty"]["data_offsets"] == json({88, 88}));
  CHECK(bytes.size() == 8 + n + 88);

  auto r = SafetensorsReader::open(path);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  std::vector<std::string> names;
  for (const TensorInfo& t : r->tensors()) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"a", "empty", "model.layers.0.w", "scalar"});
  REQUIRE(r->find("a") != nullptr);
  CHECK(r->find("a")->dtype == "F32");
  CHECK(r->find("a")->shape == std::vector<int64_t>{2, 3});
  CHECK(r->find("a")->numel() == 6);
  CHECK(r->find("nope") == nullptr);

  std::vector<float> got(a.size());
  REQUIRE(r->read_f32("a", {2, 3}, got.data()).is_ok());
  CHECK(std::memcmp(got.data(), a.data(), a.size() * 4) == 0);  // bit-exact, -0 and subnormal too
  got.assign(w.size(), 0);
  REQUIRE(r->read_f32("model.layers.0.w", {3, 5}, got.data()).is_ok());
  CHECK(std::memcmp(got.data(), w.data(), w.size() * 4) == 0);
  float s = 0;
  REQUIRE(r->read_f32("scalar", {}, &s).is_ok());
  CHECK(s == 42.0f);
  CHECK(r->read_f32("empty", {0, 4}, nullptr).is_ok());
}

TEST_CASE("safetensors: bf16 conversion rounds to nearest even") {
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  CHECK(f32_to_bf16(from_bits(0x3F808000)) == 0x3F80);  // 1 + 2^-8: tie, 0x3F80 is even
  CHECK(f32_to_bf16(from_bits(0x3F818000)) == 0x3F82);  // 1 + 3·2^-8: tie, rounds up to even
  CHECK(f32_to_bf16(from_bits(0x3F808001)) == 0x3F81);  // above the tie
  CHECK(f32_to_bf16(from_bits(0x3F807FFF)) == 0x3F80);  // below the tie
  CHECK(f32_to_bf16(from_bits(0xBF808000)) == 0xBF80);  // sign does not change the rule
  CHECK(f32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // past bf16 max + ½ulp
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7F800001)))));  // signalling NaN stays NaN
  CHECK(bf16_to_f32(0x3F81) == 1.0078125f);
}

TEST_CASE("safetensors: BF16 round trip is within bf16 rounding") {
  TempDir dir("st-bf16");
  const std::string path = dir.file("w.safetensors");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> v(1000);
  for (float& x : v) x = nd(rng);
  v[0] = from_bits(0x3F808000);  // 1 + 2^-8 → 1
  v[1] = from_bits(0x3F818000);  // 1 + 3·2^-8 → 1 + 2^-6
  v[2] = -0.0f;
  REQUIRE(write_safetensors(path, {{"v", {10, 100}, v.data()}}, "BF16").is_ok());

  auto r = SafetensorsReader::open(path);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  CHECK(r->find("v")->dtype == "BF16");
  CHECK(r->find("v")->nbytes == 2000);
  std::vector<float> got(v.size());
  REQUIRE(r->read_f32("v", {10, 100}, got.data()).is_ok());
  CHECK(got[0] == 1.0f);
  CHECK(got[1] == 1.015625f);
  CHECK(bits_of(got[2]) == 0x80000000u);
  for (size_t i = 0; i < v.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == bf16_to_f32(f32_to_bf16(v[i])));
    CHECK(std::fabs(got[i] - v[i]) <= std::ldexp(std::fabs(v[i]), -8));  // half an ulp of 8 bits
  }
}

TEST_CASE("safetensors: F16 data reads with subnormals and infinities") {
  TempDir dir("st-f16");
  const std::string path = dir.file("half.safetensors");
  const std::vector<uint16_t> h = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400,
                                   0x7C00, 0xFC00, 0x8000, 0x3555, 0x7E00, 0x3800};
  const std::vector<float> want = {1.0f,
                                   -2.0f,
                                   65504.0f,
                                   std::ldexp(1.0f, -24),     // smallest subnormal
                                   std::ldexp(1023.0f, -24),  // largest subnormal
                                   std::ldexp(1.0f, -14),     // smallest normal
                                   std::numeric_limits<float>::infinity(),
                                   -std::numeric_limits<float>::infinity(),
                                   -0.0f,
                                   0.333251953125f,
                                   std::numeric_limits<float>::quiet_NaN(),
                                   0.5f};
  // A mixed file: the F16 tensor after an F32 and a BF16 one.
  const json header = {
      {"f32", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
      {"bf16", {{"dtype", "BF16"}, {"shape", {2}}, {"data_offsets", {8, 12}}}},
      {"half", {{"dtype", "F16"}, {"shape", {3, 4}}, {"data_offsets", {12, 36}}}}};
  craft(path, header.dump(), f32_bytes({0.25f, -8.0f}) + u16_bytes({0x3F80, 0xC0A0}) + u16_bytes(h));

  auto r = SafetensorsReader::open(path);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  std::vector<float> got(12);
  REQUIRE(r->read_f32("half", {3, 4}, got.data()).is_ok());
  for (size_t i = 0; i < want.size(); ++i) {
    CAPTURE(i);
    if (std::isnan(want[i])) {
      CHECK(std::isnan(got[i]));
    } else {
      CHECK(bits_of(got[i]) == bits_of(want[i]));
    }
  }
  float two[2];
  REQUIRE(r->read_f32("f32", {2}, two).is_ok());
  CHECK(two[0] == 0.25f);
  CHECK(two[1] == -8.0f);
  REQUIRE(r->read_f32("bf16", {2}, two).is_ok());
  CHECK(two[0] == 1.0f);
  CHECK(two[1] == -5.0f);
  // f16_to_f32 agrees with the IEEE value for every finite half.
  for (uint32_t x = 0; x < 0x10000; ++x) {
    const uint32_t e = (x >> 10) & 0x1F, m = x & 0x3FF;
    if (e == 31) continue;
    const double mag = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, int(e) - 15);
    const double v = (x & 0x8000) ? -mag : mag;
    if (f16_to_f32(uint16_t(x)) != float(v)) {
      FAIL_CHECK("f16 " << x << " -> " << f16_to_f32(uint16_t(x)) << " want " << v);
      break;
    }
  }
}

TEST_CASE("safetensors: a sharded checkpoint loads through its index") {
  TempDir dir("st-shard");
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7}, c = {8, 9, 10, 11};
  const std::string s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
  REQUIRE(write_safetensors(dir.file(s1), {{"a", {2, 2}, a.data()}, {"b", {3}, b.data()}}, "F32").is_ok());
  REQUIRE(write_safetensors(dir.file(s2), {{"c", {4}, c.data()}}, "BF16").is_ok());
  const json index = {{"metadata", {{"total_size", 36}}},
                      {"weight_map", {{"a", s1}, {"b", s1}, {"c", s2}}}};
  REQUIRE(write_file(dir.file("model.safetensors.index.json"), index.dump(2)).is_ok());

  for (const std::string& open_path : {dir.path(), dir.file("model.safetensors.index.json")}) {
    CAPTURE(open_path);
    auto r = SafetensorsReader::open(open_path);
    REQUIRE_MESSAGE(r.is_ok(), r.status().message());
    REQUIRE(r->tensors().size() == 3);
    CHECK(r->find("c")->file == dir.file(s2));
    CHECK(r->find("a")->file == dir.file(s1));
    std::vector<float> got(4);
    REQUIRE(r->read_f32("a", {2, 2}, got.data()).is_ok());
    CHECK(got == a);
    REQUIRE(r->read_f32("c", {4}, got.data()).is_ok());
    CHECK(got == c);  // small integers are exact in bf16
    REQUIRE(r->read_f32("b", {3}, got.data()).is_ok());
    CHECK(std::vector<float>(got.begin(), got.begin() + 3) == b);
  }

  // A directory with model.safetensors prefers it over the index.
  const std::vector<float> z = {3};
  REQUIRE(write_safetensors(dir.file("model.safetensors"), {{"z", {1}, z.data()}}, "F32").is_ok());
  auto r = SafetensorsReader::open(dir.path());
  REQUIRE(r.is_ok());
  REQUIRE(r->tensors().size() == 1);
  CHECK(r->tensors()[0].name == "z");
}

TEST_CASE("safetensors: truncated and short files name the file and the tensor") {
  TempDir dir("st-trunc");
  const std::string good = dir.file("good.safetensors");
  write_alpha_beta(good);
  const std::string bytes = slurp(good);

  const std::string cut = dir.file("cut.safetensors");
  REQUIRE(write_file(cut, bytes.substr(0, bytes.size() - 4)).is_ok());
  auto r = SafetensorsReader::open(cut);
  REQUIRE_FALSE(r.is_ok());
  expect_error(r.status(), {cut, "'beta'", "truncated"});

  const std::string tiny = dir.file("tiny.safetensors");
  REQUIRE(write_file(tiny, bytes.substr(0, 5)).is_ok());
  expect_error(SafetensorsReader::open(tiny).status(), {tiny, "shorter than"});

  const std::string headless = dir.file("headless.safetensors");
  REQUIRE(write_file(headless, bytes.substr(0, 20)).is_ok());
  expect_error(SafetensorsReader::open(headless).status(), {headless, "header length"});
}

TEST_CASE("safetensors: bad header lengths and headers name the file") {
  TempDir dir("st-header");
  const std::string beyond = dir.file("beyond.safetensors");
  REQUIRE(write_file(beyond, u64le(4096) + "{}").is_ok());
  expect_error(SafetensorsReader::open(beyond).status(), {beyond, "header length 4096", "file size"});

  const std::string huge = dir.file("huge.safetensors");
  REQUIRE(write_file(huge, u64le(200ull << 20) + "{}").is_ok());
  expect_error(SafetensorsReader::open(huge).status(), {huge, "limit"});

  const std::string all_ones = dir.file("ones.safetensors");
  REQUIRE(write_file(all_ones, std::string(16, '\xff')).is_ok());
  expect_error(SafetensorsReader::open(all_ones).status(), {all_ones, "header length"});

  const std::string bad_json = dir.file("badjson.safetensors");
  craft(bad_json, "{\"a\": {\"dtype\": ", "");
  expect_error(SafetensorsReader::open(bad_json).status(), {bad_json, "not valid JSON"});

  const std::string not_object = dir.file("array.safetensors");
  craft(not_object, "[1, 2, 3]       ", "");
  expect_error(SafetensorsReader::open(not_object).status(), {not_object, "not a JSON object"});
}

TEST_CASE("safetensors: bad header entries name the file and the tensor") {
  TempDir dir("st-entries");
  struct Case {
    const char* what;
    json entry;
    std::string data;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"unknown dtype", {{"dtype", "Q4"}, {"shape", {2}}, {"data_offsets", {0, 1}}}, "x", {"'Q4'"}},
      {"size mismatch", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 8}}}, std::string(8, 'x'),
       {"[3]", "12 bytes"}},
      {"past the end", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}, std::string(8, 'x'),
       {"truncated"}},
      {"negative dim", {{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 0}}}, "", {"shape"}},
      {"float dim", {{"dtype", "F32"}, {"shape", {1.5}}, {"data_offsets", {0, 4}}}, "xxxx", {"shape"}},
      {"reversed offsets", {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {4, 0}}}, "xxxx", {"reversed"}},
      {"one offset", {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {0}}}, "", {"data_offsets"}},
      {"no dtype", {{"shape", {0}}, {"data_offsets", {0, 0}}}, "", {"dtype"}},
      {"not an object", json::array({1, 2}), "", {"not an object"}},
      {"overflowing shape",
       {{"dtype", "F32"}, {"shape", {1ll << 40, 1ll << 40}}, {"data_offsets", {0, 0}}}, "", {"overflow"}},
  };
  int i = 0;
  for (const Case& c : cases) {
    CAPTURE(c.what);
    const std::string path = dir.file("entry" + std::to_string(i++) + ".safetensors");
    craft(path, json({{"bad.tensor", c.entry}}).dump(), c.data);
    std::vector<std::string> needles = c.needles;
    needles.push_back(path);
    needles.push_back("'bad.tensor'");
    expect_error(SafetensorsReader::open(path).status(), needles);
  }

  const std::string overlap = dir.file("overlap.safetensors");
  craft(overlap,
        json({{"first", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
              {"second", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}}})
            .dump(),
        std::string(12, 'x'));
  expect_error(SafetensorsReader::open(overlap).status(), {overlap, "overlaps", "'first'", "'second'"});
}

TEST_CASE("safetensors: read errors name the file and the tensor") {
  TempDir dir("st-read");
  const std::string path = dir.file("w.safetensors");
  write_alpha_beta(path);
  auto r = SafetensorsReader::open(path);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  std::vector<float> buf(16);
  expect_error(r->read_f32("beta", {4, 4}, buf.data()), {path, "'beta'", "[16]", "[4, 4]"});
  expect_error(r->read_f32("gamma", {4}, buf.data()), {path, "'gamma'", "not found"});

  const std::string ints = dir.file("ints.safetensors");
  craft(ints, json({{"ids", {{"dtype", "I64"}, {"shape", {2}}, {"data_offsets", {0, 16}}}}}).dump(),
        std::string(16, '\0'));
  auto ri = SafetensorsReader::open(ints);
  REQUIRE_MESSAGE(ri.is_ok(), ri.status().message());
  CHECK(ri->find("ids")->dtype == "I64");
  expect_error(ri->read_f32("ids", {2}, buf.data()), {ints, "'ids'", "I64"});

  // The file shrinking after open is a read error, not a crash.
  const std::string bytes = slurp(path);
  REQUIRE(write_file(path, bytes.substr(0, bytes.size() - 8)).is_ok());
  expect_error(r->read_f32("beta", {16}, buf.data()), {path, "'beta'"});
}

TEST_CASE("safetensors: sharded checkpoint errors name the index, the shard and the tensor") {
  TempDir dir("st-shard-bad");
  const std::vector<float> a = {1, 2};
  const std::string s1 = "model-00001-of-00002.safetensors";
  REQUIRE(write_safetensors(dir.file(s1), {{"a", {2}, a.data()}}, "F32").is_ok());
  const std::string index = dir.file("model.safetensors.index.json");

  SUBCASE("missing shard file") {
    const json j = {{"weight_map", {{"a", s1}, {"w", "model-00002-of-00002.safetensors"}}}};
    REQUIRE(write_file(index, j.dump()).is_ok());
    expect_error(SafetensorsReader::open(dir.path()).status(),
                 {index, "model-00002-of-00002.safetensors", "'w'", "not found"});
  }
  SUBCASE("tensor named in the index but absent from the shard") {
    const json j = {{"weight_map", {{"a", s1}, {"ghost", s1}}}};
    REQUIRE(write_file(index, j.dump()).is_ok());
    expect_error(SafetensorsReader::open(dir.path()).status(), {index, "'ghost'", s1});
  }
  SUBCASE("shard outside the directory") {
    const json j = {{"weight_map", {{"a", "../elsewhere.safetensors"}}}};
    REQUIRE(write_file(index, j.dump()).is_ok());
    expect_error(SafetensorsReader::open(dir.path()).status(), {index, "'a'"});
  }
  SUBCASE("index without weight_map") {
    REQUIRE(write_file(index, "{\"metadata\": {}}").is_ok());
    expect_error(SafetensorsReader::open(dir.path()).status(), {index, "weight_map"});
  }
  SUBCASE("malformed index") {
    REQUIRE(write_file(index, "{\"weight_map\": ").is_ok());
    expect_error(SafetensorsReader::open(dir.path()).status(), {index, "malformed JSON"});
  }
  SUBCASE("a corrupt shard names the shard") {
    const json j = {{"weight_map", {{"a", s1}}}};
    REQUIRE(write_file(index, j.dump()).is_ok());
    const std::string bytes = slurp(dir.file(s1));
    REQUIRE(write_file(dir.file(s1), bytes.substr(0, bytes.size() - 1)).is_ok());
    expect_error(SafetensorsReader::open(dir.path()).status(), {dir.file(s1), "'a'"});
  }
}

TEST_CASE("safetensors: open errors name the path") {
  TempDir dir("st-open");
  const std::string missing = dir.file("nope.safetensors");
  expect_error(SafetensorsReader::open(missing).status(), {missing});
  expect_error(SafetensorsReader::open(dir.path()).status(), {dir.path(), "model.safetensors"});
}

TEST_CASE("safetensors: write rejects bad requests") {
  TempDir dir("st-write");
  const std::string path = dir.file("w.safetensors");
  const std::vector<float> a = {1, 2};
  expect_error(write_safetensors(path, {{"a", {2}, a.data()}}, "F16"), {path, "F16"});
  expect_error(write_safetensors(path, {{"a", {2}, a.data()}, {"a", {2}, a.data()}}, "F32"), {path, "'a'"});
  expect_error(write_safetensors(path, {{"a", {-2}, a.data()}}, "F32"), {path, "'a'"});
  expect_error(write_safetensors(path, {{"a", {2}, nullptr}}, "BF16"), {path, "'a'"});
  expect_error(write_safetensors(path, {{"", {2}, a.data()}}, "F32"), {path});
  expect_error(write_safetensors(path, {{"__metadata__", {2}, a.data()}}, "F32"), {path});
  expect_error(write_safetensors(dir.file("no/such/dir/w.safetensors"), {{"a", {2}, a.data()}}, "F32"),
               {"no/such/dir/w.safetensors"});
}

TEST_CASE("safetensors: random corruption never crashes the reader") {
  TempDir dir("st-fuzz");
  const std::string good = dir.file("good.safetensors");
  std::vector<float> a(24), b(7);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i);
  REQUIRE(write_safetensors(good, {{"a", {4, 6}, a.data()}, {"b", {7}, b.data()}}, "BF16").is_ok());
  const std::string bytes = slurp(good);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | uint8_t(bytes[size_t(i)]);

  const uint32_t seed = 20240611;
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const std::string path = dir.file("fuzz.safetensors");
  int opened = 0;
  for (int iter = 0; iter < 400; ++iter) {
    CAPTURE(iter);
    std::string s = bytes;
    const int kind = iter % 6;
    if (kind == 0) {  // flip bytes inside the length field and header
      for (int k = 0; k < 3; ++k) s[rng() % (8 + header_len)] = char(rng());
    } else if (kind == 1) {  // replace header bytes with JSON-significant characters
      static const char kChars[] = "{}[]\",:0123456789-e.";
      for (int k = 0; k < 2; ++k) s[8 + rng() % header_len] = kChars[rng() % (sizeof kChars - 1)];
    } else if (kind == 2) {  // truncate anywhere
      s.resize(rng() % s.size());
    } else if (kind == 3) {  // random length field
      const std::string len = u64le(uint64_t(rng()) << (rng() % 40));
      s.replace(0, 8, len);
    } else if (kind == 4) {  // data bytes only: opens, reads whatever values
      for (int k = 0; k < 4; ++k) s[8 + header_len + rng() % (s.size() - 8 - header_len)] = char(rng());
    } else {  // a same-size dtype swap, then one header digit changed
      s.replace(s.find("\"BF16\""), 6, rng() % 2 ? " \"F16\"" : " \"I16\"");
      const size_t digit = s.find_first_of("0123456789", 8 + rng() % header_len);
      if (digit < 8 + header_len && rng() % 2) s[digit] = char('0' + rng() % 10);
    }
    REQUIRE(write_file(path, s).is_ok());
    auto r = SafetensorsReader::open(path);
    if (!r.is_ok()) {
      CHECK(r.status().message().find(path) != std::string::npos);
      continue;
    }
    ++opened;
    for (const TensorInfo& t : r->tensors()) {
      std::vector<float> out(size_t(t.numel()));
      Status st = r->read_f32(t.name, t.shape, out.data());
      if (!st.is_ok()) CHECK(st.message().find(t.name) != std::string::npos);
    }
  }
  INFO("fuzz: " << opened << " of 400 corrupted files still opened");
  CHECK(opened > 0);  // the read path was exercised
}

}  // namespace m1
