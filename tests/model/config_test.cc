// Tests for model/config.cc: the MiniMax-M1 release config loads without warnings and gives the
// paper's 456.1B / 45.9B parameters; every missing, mistyped or inconsistent key is an error that
// names the source and the key; unknown keys warn and are listed; serialisation round-trips.
#include "model/config.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"

namespace m1 {
namespace {

using json = nlohmann::json;

const std::string kM1Path = M1_SOURCE_DIR "/configs/models/minimax-m1.json";
const std::string kTinyPath = M1_SOURCE_DIR "/configs/models/tiny.json";
const std::string kSmallPath = M1_SOURCE_DIR "/configs/models/small.json";

// Redirects fd 2 (where log_warn writes) into a temporary file for its lifetime.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    tmp_ = std::tmpfile();
    REQUIRE(tmp_ != nullptr);
    saved_ = ::dup(2);
    REQUIRE(saved_ >= 0);
    REQUIRE(::dup2(::fileno(tmp_), 2) >= 0);
  }
  ~StderrCapture() { restore(); }
  // Restores stderr and returns what was written while captured.
  std::string finish() {
    restore();
    std::string out;
    std::rewind(tmp_);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, tmp_)) > 0) out.append(buf, n);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  std::FILE* tmp_ = nullptr;
  int saved_ = -1;
};

json load_json(const std::string& path) {
  auto text = read_file(path);
  REQUIRE_MESSAGE(text.is_ok(), text.status().message());
  return json::parse(text.value());
}

// Parses J (as text) under SOURCE and expects an error naming the source and every needle.
void expect_error(const json& j, const std::string& source, const std::vector<std::string>& needles) {
  auto r = parse_model_config(j.dump(), source);
  REQUIRE_FALSE(r.is_ok());
  const std::string msg = r.status().message();
  INFO("message: " << msg);
  CHECK(msg.find(source) != std::string::npos);
  for (const std::string& n : needles) CHECK(msg.find(n) != std::string::npos);
}

void check_same(const ModelConfig& a, const ModelConfig& b) {
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.hidden_size == b.hidden_size);
  CHECK(a.num_hidden_layers == b.num_hidden_layers);
  CHECK(a.num_attention_heads == b.num_attention_heads);
  CHECK(a.num_key_value_heads == b.num_key_value_heads);
  CHECK(a.head_dim == b.head_dim);
  CHECK(a.intermediate_size == b.intermediate_size);
  CHECK(a.num_local_experts == b.num_local_experts);
  CHECK(a.num_experts_per_tok == b.num_experts_per_tok);
  CHECK(a.attn_type_list == b.attn_type_list);
  CHECK(a.rotary_dim == b.rotary_dim);
  CHECK(a.rope_theta == b.rope_theta);
  CHECK(a.rms_norm_eps == b.rms_norm_eps);
  CHECK(a.postnorm == b.postnorm);
  CHECK(a.layernorm_linear_attention_alpha == b.layernorm_linear_attention_alpha);
  CHECK(a.layernorm_linear_attention_beta == b.layernorm_linear_attention_beta);
  CHECK(a.layernorm_full_attention_alpha == b.layernorm_full_attention_alpha);
  CHECK(a.layernorm_full_attention_beta == b.layernorm_full_attention_beta);
  CHECK(a.layernorm_mlp_alpha == b.layernorm_mlp_alpha);
  CHECK(a.layernorm_mlp_beta == b.layernorm_mlp_beta);
  CHECK(a.block_size == b.block_size);
  CHECK(a.router_aux_loss_coef == b.router_aux_loss_coef);
  CHECK(a.tie_word_embeddings == b.tie_word_embeddings);
  CHECK(a.initializer_range == b.initializer_range);
}

const char* kRequired[] = {
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "intermediate_size", "num_local_experts", "num_experts_per_tok", "attn_type_list",
    "rotary_dim", "rope_theta", "rms_norm_eps", "postnorm", "layernorm_linear_attention_alpha",
    "layernorm_linear_attention_beta", "layernorm_full_attention_alpha",
    "layernorm_full_attention_beta", "layernorm_mlp_alpha", "layernorm_mlp_beta"};

}  // namespace

TEST_CASE("config: the MiniMax-M1 release config loads without warnings") {
  StderrCapture cap;
  auto r = load_model_config(kM1Path);
  const std::string err = cap.finish();
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  const ModelConfig& c = r.value();
  CHECK(c.unknown_keys.empty());
  CHECK_MESSAGE(err.find("warn") == std::string::npos, err);
  CHECK(c.vocab_size == 200064);
  CHECK(c.hidden_size == 6144);
  CHECK(c.num_hidden_layers == 80);
  CHECK(c.num_attention_heads == 64);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.head_dim == 128);
  CHECK(c.intermediate_size == 9216);
  CHECK(c.num_local_experts == 32);
  CHECK(c.num_experts_per_tok == 2);
  CHECK(c.rotary_dim == 64);
  CHECK(c.rope_theta == 1e7);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.postnorm);
  CHECK(c.layernorm_mlp_alpha == doctest::Approx(3.5565588200778455));
  CHECK(c.num_softmax_layers() == 10);
  CHECK(c.num_lightning_layers() == 70);
  for (int l = 0; l < 80; ++l) CHECK(c.is_softmax(l) == (l % 8 == 7));
  CHECK(c.block_size == 256);  // absent from the release config: the default
  CHECK_FALSE(c.tie_word_embeddings);
}

TEST_CASE("config: M1 stats are the paper's 456.1B total and 45.9B active") {
  auto r = load_model_config(kM1Path);
  REQUIRE(r.is_ok());
  const ModelStats s = compute_model_stats(r.value());
  INFO("total " << s.total_params << " active " << s.active_params);
  CHECK(s.total_params == doctest::Approx(456.1e9).epsilon(0.005));
  CHECK(s.active_params == doctest::Approx(45.9e9).epsilon(0.005));
  CHECK(s.weights_bytes == 2 * s.total_params);
  // Counted from M1's shapes (docs/model.md's weight table): 456.09B and 45.94B.
  CHECK(s.total_params == doctest::Approx(456.09e9).epsilon(0.0005));
  CHECK(s.active_params == doctest::Approx(45.94e9).epsilon(0.0005));
  std::vector<int64_t> keys;
  for (const auto& [ctx, f] : s.flops_per_token) keys.push_back(ctx);
  CHECK(keys == info_context_lengths());
  CHECK(s.state_bytes_per_sequence.size() == info_context_lengths().size());
  // The lightning state is constant in c; the softmax KV cache grows linearly.
  const double lightning_state = 70.0 * 64 * 128 * 128 * 4;
  CHECK(s.state_bytes_per_sequence.at(4096) == lightning_state + 10.0 * 2 * 8 * 128 * 4096 * 2);
}

TEST_CASE("config: tiny stats match the hand count") {
  auto r = load_model_config(kTinyPath);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  const ModelStats s = compute_model_stats(r.value());
  // V=263 D=32 H=4 Hkv=2 d=8 I=32 E=4 k=2, layers [lightning, softmax].
  // lightning attn 3·32·32 + 32·32 + 32 + 32·32 = 5152; softmax attn 32·32 + 2·2·8·32 + 32·32 = 3072;
  // per layer norms 64, router 128, experts 4·3·32·32 = 12288 (active 2 of 4: 6144).
  CHECK(s.total_params == 2 * 263 * 32 + 32 + 5152 + 3072 + 2 * (64 + 128 + 12288));  // 50048
  CHECK(s.active_params == 5152 + 3072 + 2 * (64 + 128 + 6144) + 32);                 // 20928
  CHECK(s.weights_bytes == 2 * 50048);
  CHECK(s.flops_per_token.at(4096) == 2.0 * 20928 + 2 * 32 * 263 + 4 * 4 * 8 * 8 + 4.0 * 4 * 8 * 4096);
  CHECK(s.state_bytes_per_sequence.at(4096) == 4 * 8 * 8 * 4 + 2.0 * 2 * 8 * 4096 * 2);
  CHECK(s.state_bytes_per_sequence.at(1048576) == 4 * 8 * 8 * 4 + 2.0 * 2 * 8 * 1048576 * 2);

  ModelConfig tied = r.value();
  tied.tie_word_embeddings = true;
  CHECK(compute_model_stats(tied).total_params == 50048 - 263 * 32);
  CHECK(compute_model_stats(tied).active_params == 20928);
}

TEST_CASE("config: tiny and small load as specified") {
  StderrCapture cap;
  auto tiny = load_model_config(kTinyPath);
  auto small = load_model_config(kSmallPath);
  const std::string err = cap.finish();
  REQUIRE_MESSAGE(tiny.is_ok(), tiny.status().message());
  REQUIRE_MESSAGE(small.is_ok(), small.status().message());
  CHECK_MESSAGE(err.empty(), err);
  const ModelConfig& t = tiny.value();
  CHECK(t.vocab_size == 263);
  CHECK(t.hidden_size == 32);
  CHECK(t.attn_type_list == std::vector<int>{0, 1});
  CHECK(t.block_size == 16);
  CHECK(t.rotary_dim == 4);
  CHECK(t.router_aux_loss_coef == 0.01);
  CHECK(t.layernorm_mlp_alpha == doctest::Approx(std::pow(2.0 * 2, 0.25)).epsilon(1e-15));
  const ModelConfig& s = small.value();
  CHECK(s.hidden_size == 128);
  CHECK(s.attn_type_list == std::vector<int>{0, 0, 0, 1});
  CHECK(s.head_dim == 32);
  CHECK(s.intermediate_size == 256);
  CHECK(s.block_size == 64);
  CHECK(s.rotary_dim == 16);
  CHECK(s.layernorm_linear_attention_alpha == doctest::Approx(std::pow(2.0 * 4, 0.25)).epsilon(1e-15));
}

TEST_CASE("config: each missing required key is an error naming it") {
  const json m1 = load_json(kM1Path);
  for (const char* key : kRequired) {
    CAPTURE(key);
    json j = m1;
    REQUIRE(j.erase(key) == 1);
    expect_error(j, "m1-missing.json", {std::string("'") + key + "'", "missing"});
  }
}

TEST_CASE("config: optional keys take their defaults") {
  json j = load_json(kTinyPath);
  for (const char* key : {"block_size", "router_aux_loss_coef", "tie_word_embeddings", "initializer_range"})
    j.erase(key);
  auto r = parse_model_config(j.dump(), "tiny-defaults.json");
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  CHECK(r->block_size == 256);
  CHECK(r->router_aux_loss_coef == 0.001);
  CHECK_FALSE(r->tie_word_embeddings);
  CHECK(r->initializer_range == 0.02);
}

TEST_CASE("config: a wrong JSON type is an error naming the key") {
  const json tiny = load_json(kTinyPath);
  const std::vector<std::pair<std::string, json>> cases = {
      {"hidden_size", "32"},         {"hidden_size", 32.5},       {"hidden_size", nullptr},
      {"postnorm", 1},               {"rope_theta", "1e4"},       {"attn_type_list", 0},
      {"attn_type_list", {0, 0.5}},  {"tie_word_embeddings", "false"},
      {"block_size", 16.0},          {"vocab_size", 10000000000LL}};
  for (const auto& [key, value] : cases) {
    CAPTURE(key);
    CAPTURE(value.dump());
    json j = tiny;
    j[key] = value;
    expect_error(j, "typed.json", {"'" + key + "'"});
  }
}

TEST_CASE("config: inconsistent values are errors naming the key") {
  const json tiny = load_json(kTinyPath);
  SUBCASE("the documented message") {
    json j = tiny;
    j["num_attention_heads"] = 8;
    j["num_key_value_heads"] = 3;
    auto r = parse_model_config(j.dump(), "configs/models/tiny.json");
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().message() ==
          "configs/models/tiny.json: key 'num_key_value_heads': 3 does not divide num_attention_heads 8");
  }
  const std::vector<std::pair<std::string, json>> cases = {
      {"vocab_size", 0},          {"hidden_size", -32},       {"num_hidden_layers", 0},
      {"num_attention_heads", 0}, {"num_key_value_heads", 0}, {"head_dim", 0},
      {"intermediate_size", -1},  {"num_local_experts", 0},   {"num_experts_per_tok", 0},
      {"num_experts_per_tok", 5}, {"rotary_dim", 3},          {"rotary_dim", 10},
      {"rotary_dim", -2},         {"attn_type_list", {0}},    {"attn_type_list", {0, 1, 1}},
      {"attn_type_list", {0, 2}}, {"attn_type_list", {-1, 0}}, {"block_size", 0},
      {"rms_norm_eps", 0.0},      {"rope_theta", -1.0},       {"router_aux_loss_coef", -0.1},
      {"initializer_range", -1.0}};
  for (const auto& [key, value] : cases) {
    CAPTURE(key);
    CAPTURE(value.dump());
    json j = tiny;
    j[key] = value;
    expect_error(j, "configs/models/bad.json", {"'" + key + "'"});
  }
}

TEST_CASE("config: known M1 keys that m1rl cannot honour are errors") {
  json j = load_json(kM1Path);
  j["hidden_act"] = "gelu";
  expect_error(j, "act.json", {"'hidden_act'", "gelu"});
  j = load_json(kM1Path);
  j["shared_intermediate_size"] = 1024;
  expect_error(j, "shared.json", {"'shared_intermediate_size'", "1024"});
}

TEST_CASE("config: unknown keys warn and are listed") {
  json j = load_json(kTinyPath);
  j["rope_scaling"] = nullptr;
  j["my_custom_key"] = {1, 2};
  StderrCapture cap;
  auto r = parse_model_config(j.dump(), "extra.json");
  const std::string err = cap.finish();
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  CHECK(r->unknown_keys == std::vector<std::string>{"my_custom_key", "rope_scaling"});
  INFO("stderr: " << err);
  CHECK(err.find("extra.json") != std::string::npos);
  CHECK(err.find("'my_custom_key'") != std::string::npos);
  CHECK(err.find("'rope_scaling'") != std::string::npos);
}

TEST_CASE("config: malformed JSON names the source and the position") {
  auto r = parse_model_config("{\n  \"vocab_size\": 263,,\n}", "broken.json");
  REQUIRE_FALSE(r.is_ok());
  INFO(r.status().message());
  CHECK(r.status().message().find("broken.json") != std::string::npos);
  CHECK(r.status().message().find("line 2") != std::string::npos);
  CHECK(r.status().message().find("column") != std::string::npos);

  auto arr = parse_model_config("[1, 2]", "array.json");
  REQUIRE_FALSE(arr.is_ok());
  CHECK(arr.status().message().find("array.json") != std::string::npos);

  auto missing = load_model_config("/nonexistent/m1/config.json");
  REQUIRE_FALSE(missing.is_ok());
  CHECK(missing.status().message().find("/nonexistent/m1/config.json") != std::string::npos);
}

TEST_CASE("config: model_config_to_json writes every key and round-trips") {
  for (const std::string& path : {kM1Path, kTinyPath, kSmallPath}) {
    CAPTURE(path);
    auto r = load_model_config(path);
    REQUIRE_MESSAGE(r.is_ok(), r.status().message());
    ModelConfig c = r.value();
    c.tie_word_embeddings = !c.tie_word_embeddings;  // a non-default optional value survives too
    c.block_size = 48;
    const std::string text = model_config_to_json(c);
    const json j = json::parse(text);
    for (const char* key : kRequired) CHECK(j.contains(key));
    for (const char* key : {"block_size", "router_aux_loss_coef", "tie_word_embeddings", "initializer_range"})
      CHECK(j.contains(key));
    CHECK(j.size() == 24);
    CHECK(text.find("\n  \"vocab_size\": ") != std::string::npos);  // pretty, 2-space indent
    auto back = parse_model_config(text, "roundtrip.json");
    REQUIRE_MESSAGE(back.is_ok(), back.status().message());
    check_same(c, back.value());
    CHECK(back->unknown_keys.empty());
    CHECK(model_config_to_json(back.value()) == text);
  }
}

TEST_CASE("config: validate_model_config checks programmatic configs") {
  auto r = load_model_config(kTinyPath);
  REQUIRE(r.is_ok());
  ModelConfig c = r.value();
  CHECK(validate_model_config(c, "prog").is_ok());
  c.rms_norm_eps = std::nan("");
  Status s = validate_model_config(c, "prog");
  CHECK_FALSE(s.is_ok());
  CHECK(s.message().find("'rms_norm_eps'") != std::string::npos);
  c = r.value();
  c.layernorm_mlp_beta = INFINITY;
  CHECK(validate_model_config(c, "prog").message().find("'layernorm_mlp_beta'") != std::string::npos);
}

}  // namespace m1
