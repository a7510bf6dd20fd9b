// Checkpoint layouts (model/hf_convert.h): a tiny random model saved in the release layout,
// converted to transformers' MiniMax layout and back, loads with bit-identical weights and
// logprobs from both; the hf tensors have transformers' names and shapes (gate_up_proj
// [E, 2I, D] = per expert w1 rows then w3 rows, down_proj [E, D, I], as in transformers 5's
// models/minimax/modeling_minimax.py MiniMaxExperts and the "mixtral"/"minimax" entry of
// conversion_mapping.py); function-changing conversions are refused without force; sharding
// writes an index; BF16 output is the round-to-nearest-even of every weight; bad input fails
// before anything is written and leaves no output directory.
#include "model/hf_convert.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/rng.h"
#include "model/model.h"

namespace m1 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A fresh directory under the system temp dir, removed on destruction.
class Scratch {
 public:
  explicit Scratch(const std::string& name)
      : path_((fs::temp_directory_path() / ("m1-hfconv-" + std::to_string(::getpid()) + "-" + name)).string()) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& n) const { return path_join(path_, n); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// model_test.cc's tiny model, with RoPE over the whole head so that transformers computes the same.
ModelConfig tiny(bool tie = false) {
  ModelConfig c;
  c.vocab_size = 23;
  c.hidden_size = 16;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 6;
  c.intermediate_size = 12;
  c.num_local_experts = 4;
  c.num_experts_per_tok = 2;
  c.attn_type_list = {0, 1, 0};
  c.rotary_dim = 6;
  c.rope_theta = 10000;
  c.rms_norm_eps = 1e-5;
  c.postnorm = true;
  c.layernorm_linear_attention_alpha = 1.5;
  c.layernorm_full_attention_alpha = 1.25;
  c.layernorm_mlp_alpha = 1.75;
  c.layernorm_mlp_beta = 0.5;
  c.block_size = 4;
  c.router_aux_loss_coef = 0.01;
  c.tie_word_embeddings = tie;
  c.initializer_range = 0.3;
  return c;
}

struct WsDel {
  void operator()(Workspace* w) const { delete_workspace(w); }
};

// Logprobs of two fixed segments (packed), the function the checkpoints must preserve.
std::vector<float> logprobs(const Model& m) {
  Rng r(11);
  Batch b;
  for (int n : {13, 9}) {
    std::vector<int> t(static_cast<size_t>(n));
    for (auto& x : t) x = int(r.below(uint64_t(m.config().vocab_size)));
    b.add_segment(t);
  }
  std::unique_ptr<Workspace, WsDel> ws(new_workspace());
  ForwardOut o;
  m.forward(b, *ws, o);
  return o.logp;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

Model saved_model(const ModelConfig& c, const std::string& dir, uint64_t seed = 5, const std::string& dtype = "F32") {
  Model m(c);
  m.init_random(seed);
  REQUIRE(make_dirs(dir).is_ok());
  REQUIRE(save_model(m, dir, dtype).is_ok());
  return m;
}

Model load(const std::string& dir) {
  auto r = load_model(dir);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  return std::move(r).value();
}

ConvertReport convert(const std::string& in, const std::string& out, CheckpointLayout to, const std::string& dtype = "",
                      uint64_t shard = 5000000000ull, bool force = false) {
  ConvertOptions o;
  o.to = to;
  o.dtype = dtype;
  o.max_shard_bytes = shard;
  o.force = force;
  auto r = convert_checkpoint(in, out, o);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  return r.value();
}

json read_json(const std::string& path) {
  auto t = read_file(path);
  REQUIRE_MESSAGE(t.is_ok(), t.status().message());
  return json::parse(t.value());
}

// The error of a conversion that must fail; OUT must not exist afterwards, nor any temp dir.
std::string convert_error(const std::string& in, const std::string& out, const ConvertOptions& o) {
  auto r = convert_checkpoint(in, out, o);
  REQUIRE_FALSE(r.is_ok());
  for (const auto& e : fs::directory_iterator(fs::path(out).parent_path()))
    CHECK_MESSAGE(e.path().filename().string().find(".tmp-") == std::string::npos, e.path().string());
  return r.status().message();
}

}  // namespace

TEST_CASE("hf_convert: release_param_decls lists Model::specs() names and shapes in order") {
  for (bool tie : {false, true}) {
    const ModelConfig c = tiny(tie);
    Model m(c);
    const auto decls = release_param_decls(c);
    REQUIRE(decls.size() == m.specs().size());
    for (size_t i = 0; i < decls.size(); ++i) {
      CHECK(decls[i].name == m.specs()[i].name);
      CHECK(decls[i].shape == m.specs()[i].shape);
    }
  }
}

TEST_CASE("hf_convert: release -> hf -> release keeps every weight and logprob bit for bit (f32)") {
  for (bool tie : {false, true}) {
    CAPTURE(tie);
    Scratch s(tie ? "rt-tied" : "rt");
    const Model orig = saved_model(tiny(tie), s / "release");
    const std::vector<float> lp = logprobs(orig);

    ConvertReport to_hf = convert(s / "release", s / "hf", CheckpointLayout::kHf);
    CHECK(to_hf.from == CheckpointLayout::kRelease);
    CHECK(to_hf.dtype == "F32");
    CHECK(to_hf.shards == 1);
    CHECK(to_hf.changes.empty());
    ConvertReport back = convert(s / "hf", s / "back", CheckpointLayout::kRelease);
    CHECK(back.from == CheckpointLayout::kHf);

    const Model from_hf = load(s / "hf");
    CHECK(from_hf.config().layout == CheckpointLayout::kHf);
    const Model round = load(s / "back");
    CHECK(round.config().layout == CheckpointLayout::kRelease);
    for (const Model* m : {&from_hf, &round}) {
      REQUIRE(m->num_params() == orig.num_params());
      CHECK(std::memcmp(m->params(), orig.params(), orig.num_params() * sizeof(float)) == 0);
      CHECK(m->config().rotary_dim == orig.config().rotary_dim);
      CHECK(m->config().layernorm_mlp_beta == orig.config().layernorm_mlp_beta);
      CHECK(m->config().layernorm_full_attention_alpha == orig.config().layernorm_full_attention_alpha);
      CHECK(bit_equal(logprobs(*m), lp));
    }
    // The round trip writes release names and m1rl's own config keys again.
    auto rd = SafetensorsReader::open(s / "back");
    REQUIRE(rd.is_ok());
    CHECK(rd->contains("model.layers.0.block_sparse_moe.experts.3.w2.weight"));
    CHECK(read_json(s / "back/config.json").contains("attn_type_list"));
    CHECK(path_exists(s / "back/generation_config.json"));
  }
}

TEST_CASE("hf_convert: the hf layout has transformers' MiniMax names, shapes and config keys") {
  Scratch s("names");
  const ModelConfig c = tiny();
  const Model orig = saved_model(c, s / "release");
  convert(s / "release", s / "hf", CheckpointLayout::kHf);
  auto rd = SafetensorsReader::open(s / "hf");
  REQUIRE(rd.is_ok());
  const int64_t E = c.num_local_experts, I = c.intermediate_size, D = c.hidden_size;
  std::vector<std::string> names;
  for (const TensorInfo& t : rd->tensors()) {
    names.push_back(t.name);
    CHECK(t.dtype == "F32");
    CHECK_MESSAGE(t.name.find("block_sparse_moe") == std::string::npos, t.name);
  }
  // 1 embed + per layer (2 norms + 4 attention + gate + gate_up + down) + final norm + head
  CHECK(names.size() == 1 + 3 * 9 + 2);
  for (int l = 0; l < 3; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const TensorInfo* gate = rd->find(p + "mlp.gate.weight");
    const TensorInfo* gu = rd->find(p + "mlp.experts.gate_up_proj");
    const TensorInfo* dn = rd->find(p + "mlp.experts.down_proj");
    REQUIRE(gate != nullptr);
    REQUIRE(gu != nullptr);
    REQUIRE(dn != nullptr);
    CHECK(gate->shape == std::vector<int64_t>{E, D});
    CHECK(gu->shape == std::vector<int64_t>{E, 2 * I, D});
    CHECK(dn->shape == std::vector<int64_t>{E, D, I});
    CHECK(rd->contains(p + (c.is_softmax(l) ? "self_attn.q_proj.weight" : "self_attn.qkv_proj.weight")));
    // gate_up_proj[e] = concat(w1_e, w3_e) along its rows; down_proj[e] = w2_e.
    std::vector<float> packed(size_t(E * 2 * I * D)), down(size_t(E * D * I));
    REQUIRE(rd->read_f32(gu->name, gu->shape, packed.data()).is_ok());
    REQUIRE(rd->read_f32(dn->name, dn->shape, down.data()).is_ok());
    for (int e = 0; e < E; ++e) {
      const std::string q = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      const float* w1 = orig.params() + orig.find(q + "w1.weight")->offset;
      const float* w3 = orig.params() + orig.find(q + "w3.weight")->offset;
      const float* w2 = orig.params() + orig.find(q + "w2.weight")->offset;
      CHECK(std::memcmp(packed.data() + e * 2 * I * D, w1, size_t(I * D) * 4) == 0);
      CHECK(std::memcmp(packed.data() + e * 2 * I * D + I * D, w3, size_t(I * D) * 4) == 0);
      CHECK(std::memcmp(down.data() + e * D * I, w2, size_t(D * I) * 4) == 0);
    }
  }
  const json j = read_json(s / "hf/config.json");
  CHECK(j["model_type"] == "minimax");
  CHECK(j["architectures"] == json::array({"MiniMaxForCausalLM"}));
  CHECK(j["layer_types"] == json::array({"linear_attention", "full_attention", "linear_attention"}));
  CHECK(j["rope_parameters"]["rope_theta"] == 10000.0);
  CHECK(j["rope_parameters"]["rope_type"] == "default");
  CHECK(j["full_attn_alpha_factor"] == 1.25);
  CHECK(j["linear_attn_alpha_factor"] == 1.5);
  CHECK(j["mlp_alpha_factor"] == 1.75);
  CHECK(j["mlp_beta_factor"] == 0.5);
  CHECK(j["dtype"] == "float32");
  for (const char* k : {"attn_type_list", "rotary_dim", "postnorm", "layernorm_mlp_alpha"}) CHECK_FALSE(j.contains(k));
  CHECK(read_json(s / "hf/generation_config.json").is_object());
}

TEST_CASE("hf_convert: partial RoPE is refused without force, and forced writes transformers' whole-head RoPE") {
  Scratch s("rope");
  ModelConfig c = tiny();
  c.rotary_dim = 4;  // of head_dim 6
  saved_model(c, s / "release");
  ConvertOptions o;
  o.to = CheckpointLayout::kHf;
  const std::string msg = convert_error(s / "release", s / "hf", o);
  INFO(msg);
  CHECK(msg.find(s / "release") != std::string::npos);
  CHECK(msg.find("RoPE rotates 4 of 6") != std::string::npos);
  CHECK(msg.find("--force") != std::string::npos);
  CHECK_FALSE(path_exists(s / "hf"));

  ConvertReport r = convert(s / "release", s / "hf", CheckpointLayout::kHf, "", 5000000000ull, /*force=*/true);
  REQUIRE(r.changes.size() == 1);
  const Model m = load(s / "hf");
  CHECK(m.config().rotary_dim == 6);  // what transformers computes from the written config
  // Back to release is not refused: the hf model's function (whole-head RoPE) is kept.
  convert(s / "hf", s / "back", CheckpointLayout::kRelease);
  CHECK(load(s / "back").config().rotary_dim == 6);
}

TEST_CASE("hf_convert: conversion_changes names each function change, both ways") {
  ModelConfig c = tiny();
  CHECK(conversion_changes(c, CheckpointLayout::kHf).empty());
  CHECK(conversion_changes(c, CheckpointLayout::kRelease).empty());  // same layout
  c.num_attention_heads = 6;
  c.num_key_value_heads = 3;
  c.postnorm = false;
  c.rotary_dim = 2;
  const auto why = conversion_changes(c, CheckpointLayout::kHf);
  REQUIRE(why.size() == 3);
  CHECK(why[1].find("not a power of two") != std::string::npos);
  CHECK(why[2].find("post-norm") != std::string::npos);
  c.layout = CheckpointLayout::kHf;
  CHECK(conversion_changes(c, CheckpointLayout::kRelease).size() == 1);
  CHECK(conversion_changes(c, CheckpointLayout::kHf).empty());
}

TEST_CASE("hf_convert: a small shard limit writes >= 2 shards with transformers' index") {
  Scratch s("shards");
  const Model orig = saved_model(tiny(), s / "release");
  ConvertReport r = convert(s / "release", s / "hf", CheckpointLayout::kHf, "", /*shard=*/16000);
  CHECK(r.shards >= 2);
  CHECK_FALSE(path_exists(s / "hf/model.safetensors"));
  const json idx = read_json(s / "hf/model.safetensors.index.json");
  CHECK(idx["metadata"]["total_size"] == r.bytes);
  CHECK(idx["weight_map"].size() == r.tensors);
  std::set<std::string> files;
  for (const auto& item : idx["weight_map"].items()) files.insert(item.value().get<std::string>());
  CHECK(int(files.size()) == r.shards);
  const std::string last = fmt::format("model-{:05d}-of-{:05d}.safetensors", r.shards, r.shards);
  CHECK(files.count(last) == 1);
  CHECK(files.count(fmt::format("model-00001-of-{:05d}.safetensors", r.shards)) == 1);
  uint64_t sum = 0;
  for (const std::string& f : files) {
    auto rd = SafetensorsReader::open(s / ("hf/" + f));
    REQUIRE(rd.is_ok());
    for (const TensorInfo& t : rd->tensors()) sum += t.nbytes;
  }
  CHECK(sum == r.bytes);
  const Model m = load(s / "hf");
  CHECK(std::memcmp(m.params(), orig.params(), orig.num_params() * sizeof(float)) == 0);
  CHECK(bit_equal(logprobs(m), logprobs(orig)));
}

TEST_CASE("hf_convert: --dtype BF16 rounds every weight to nearest even, and the default keeps the input dtype") {
  Scratch s("bf16");
  const Model orig = saved_model(tiny(), s / "release");
  ConvertReport r = convert(s / "release", s / "hf16", CheckpointLayout::kHf, "BF16");
  CHECK(r.dtype == "BF16");
  auto rd = SafetensorsReader::open(s / "hf16");
  REQUIRE(rd.is_ok());
  for (const TensorInfo& t : rd->tensors()) CHECK(t.dtype == "BF16");
  const Model m = load(s / "hf16");
  size_t changed = 0;
  for (size_t i = 0; i < orig.num_params(); ++i) {
    const float x = orig.params()[i], y = m.params()[i];
    REQUIRE(y == bf16_to_f32(f32_to_bf16(x)));
    REQUIRE(std::fabs(y - x) <= std::ldexp(std::fabs(x), -8));  // half an ulp of an 8-bit significand
    changed += (x != y);
  }
  CHECK(changed > orig.num_params() / 2);
  // A BF16 input converts to BF16 by default, and back without a further change.
  ConvertReport back = convert(s / "hf16", s / "rel16", CheckpointLayout::kRelease);
  CHECK(back.dtype == "BF16");
  const Model m2 = load(s / "rel16");
  CHECK(std::memcmp(m2.params(), m.params(), m.num_params() * sizeof(float)) == 0);
  // --dtype F32 widens exactly.
  convert(s / "hf16", s / "rel32", CheckpointLayout::kRelease, "F32");
  CHECK(std::memcmp(load(s / "rel32").params(), m.params(), m.num_params() * sizeof(float)) == 0);
}

TEST_CASE("hf_convert: an hf config over per-expert tensors (transformers 5's save_pretrained default) loads") {
  Scratch s("legacy");
  const Model orig = saved_model(tiny(), s / "m");
  REQUIRE(write_file(s / "m/config.json", model_config_to_hf_json(orig.config())).is_ok());
  const Model m = load(s / "m");
  CHECK(m.config().layout == CheckpointLayout::kHf);
  CHECK(bit_equal(logprobs(m), logprobs(orig)));
  // Buffers transformers may store are skipped quietly; other extra tensors are reported.
  std::vector<float> extra(4, 0.5f);
  auto rd = SafetensorsReader::open(s / "m");
  REQUIRE(rd.is_ok());
  std::vector<TensorToWrite> ts;
  std::vector<std::vector<float>> keep;
  for (const TensorInfo& t : rd->tensors()) {
    keep.emplace_back(size_t(t.numel()));
    REQUIRE(rd->read_f32(t.name, t.shape, keep.back().data()).is_ok());
    ts.push_back({t.name, t.shape, keep.back().data()});
  }
  ts.push_back({"model.layers.0.self_attn.slope_rate", {4, 1, 1}, extra.data()});
  ts.push_back({"model.extra.weight", {4}, extra.data()});
  REQUIRE(write_safetensors(s / "m/model.safetensors", ts, "F32").is_ok());
  ConvertReport r = convert(s / "m", s / "hf", CheckpointLayout::kHf);
  CHECK(r.dropped == std::vector<std::string>{"model.extra.weight"});
  CHECK(bit_equal(logprobs(load(s / "hf")), logprobs(orig)));
  CHECK(is_hf_buffer("model.layers.0.self_attn.slope_rate"));
  CHECK(is_hf_buffer("model.layers.12.self_attn.diagonal_decay"));
  CHECK_FALSE(is_hf_buffer("model.layers.0.self_attn.norm.weight"));
}

TEST_CASE("hf_convert: transformers config keys are read as transformers reads them") {
  const ModelConfig c = tiny();
  json j = json::parse(model_config_to_hf_json(c));
  auto r = parse_model_config(j.dump(), "hf.json");
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  CHECK(r->layout == CheckpointLayout::kHf);
  CHECK(r->attn_type_list == c.attn_type_list);
  CHECK(r->rotary_dim == c.head_dim);
  CHECK(r->unknown_keys.empty());
  CHECK(model_config_to_hf_json(r.value()) == model_config_to_hf_json(c));
  SUBCASE("transformers 4: top-level rope_theta; defaults for optional keys") {
    json k = j;
    k.erase("rope_parameters");
    k["rope_theta"] = 5e5;
    k.erase("head_dim");
    k.erase("num_key_value_heads");
    k.erase("mlp_beta_factor");
    auto q = parse_model_config(k.dump(), "hf4.json");
    REQUIRE_MESSAGE(q.is_ok(), q.status().message());
    CHECK(q->rope_theta == 5e5);
    CHECK(q->head_dim == 4);  // hidden_size / num_attention_heads
    CHECK(q->num_key_value_heads == 4);
    CHECK(q->layernorm_mlp_beta == 1.0);
  }
  SUBCASE("values transformers' MiniMax would not honour are errors naming the key") {
    const std::vector<std::pair<std::string, json>> bad = {
        {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1e4}, {"partial_rotary_factor", 0.5}}},
        {"rope_parameters", {{"rope_type", "yarn"}, {"rope_theta", 1e4}}},
        {"rotary_dim", 2},
        {"postnorm", false},
        {"sliding_window", 4096},
        {"layer_types", {"linear_attention", "sliding_attention", "linear_attention"}},
        {"layer_types", {"linear_attention"}}};
    for (const auto& [key, value] : bad) {
      CAPTURE(key);
      json k = j;
      k[key] = value;
      auto q = parse_model_config(k.dump(), "hfbad.json");
      REQUIRE_FALSE(q.is_ok());
      CHECK(q.status().message().find("hfbad.json") != std::string::npos);
      CHECK(q.status().message().find("'" + key) != std::string::npos);
    }
    json k = j;
    k.erase("layer_types");
    auto q = parse_model_config(k.dump(), "hfmissing.json");
    REQUIRE_FALSE(q.is_ok());
    CHECK(q.status().message().find("'layer_types'") != std::string::npos);
  }
}

TEST_CASE("hf_convert: the MiniMax-M1 config in transformers' keys, and why M1 is refused") {
  auto m1 = load_model_config(M1_SOURCE_DIR "/configs/models/minimax-m1.json");
  REQUIRE_MESSAGE(m1.is_ok(), m1.status().message());
  auto hf = parse_model_config(model_config_to_hf_json(m1.value()), "m1-hf.json");
  REQUIRE_MESSAGE(hf.is_ok(), hf.status().message());
  CHECK(hf->attn_type_list == m1->attn_type_list);
  CHECK(hf->rope_theta == 1e7);
  CHECK(hf->layernorm_mlp_alpha == m1->layernorm_mlp_alpha);
  CHECK(hf->rotary_dim == 128);
  CHECK(compute_model_stats(hf.value()).total_params == compute_model_stats(m1.value()).total_params);
  const auto why = conversion_changes(m1.value(), CheckpointLayout::kHf);
  REQUIRE(why.size() == 1);
  CHECK(why[0].find("RoPE rotates 64 of 128") != std::string::npos);
}

TEST_CASE("hf_convert: bad input fails before anything is written, naming the input") {
  Scratch s("bad");
  const ModelConfig c = tiny();
  saved_model(c, s / "release");
  ConvertOptions o;
  o.to = CheckpointLayout::kHf;
  SUBCASE("missing input directory") {
    const std::string msg = convert_error(s / "nope", s / "out", o);
    CHECK(msg.find(s / "nope") != std::string::npos);
    CHECK_FALSE(path_exists(s / "out"));
  }
  SUBCASE("output exists and is not empty") {
    REQUIRE(make_dirs(s / "out").is_ok());
    REQUIRE(write_file(s / "out/keep.txt", std::string("x")).is_ok());
    const std::string msg = convert_error(s / "release", s / "out", o);
    CHECK(msg.find(s / "out") != std::string::npos);
    CHECK(msg.find("not empty") != std::string::npos);
    CHECK(list_dir(s / "out") == std::vector<std::string>{"keep.txt"});
  }
  SUBCASE("an empty output directory is used") {
    REQUIRE(make_dirs(s / "out").is_ok());
    convert(s / "release", s / "out", CheckpointLayout::kHf);
    CHECK(path_exists(s / "out/model.safetensors"));
  }
  SUBCASE("missing tensor") {
    Model m(c);
    m.init_random(1);
    std::vector<TensorToWrite> ts;
    for (const ParamSpec& p : m.specs())
      if (p.name != "model.layers.1.block_sparse_moe.experts.2.w3.weight")
        ts.push_back({p.name, p.shape, m.params() + p.offset});
    REQUIRE(write_safetensors(s / "release/model.safetensors", ts, "F32").is_ok());
    const std::string msg = convert_error(s / "release", s / "out", o);
    CHECK(msg.find("'model.layers.1.block_sparse_moe.experts.2.w3.weight'") != std::string::npos);
    CHECK(msg.find("mlp.experts.gate_up_proj") != std::string::npos);
    CHECK_FALSE(path_exists(s / "out"));
  }
  SUBCASE("shape mismatch") {
    ModelConfig wide = c;
    wide.intermediate_size = 10;
    Model m(wide);
    std::vector<TensorToWrite> ts;
    for (const ParamSpec& p : m.specs()) ts.push_back({p.name, p.shape, m.params() + p.offset});
    REQUIRE(write_safetensors(s / "release/model.safetensors", ts, "F32").is_ok());
    const std::string msg = convert_error(s / "release", s / "out", o);
    CHECK(msg.find("model.safetensors") != std::string::npos);
    CHECK(msg.find("w1.weight") != std::string::npos);
    CHECK(msg.find("[10, 16] does not match the expected [12, 16]") != std::string::npos);
    CHECK_FALSE(path_exists(s / "out"));
  }
  SUBCASE("bad config") {
    REQUIRE(write_file(s / "release/config.json", std::string("{\"vocab_size\": 23}")).is_ok());
    const std::string msg = convert_error(s / "release", s / "out", o);
    CHECK(msg.find(s / "release/config.json") != std::string::npos);
    CHECK_FALSE(path_exists(s / "out"));
  }
}

}  // namespace m1
