// Model parameters: layout, names, views, initialisation; Batch and DecodeState helpers.
#include "model/model.h"

#include <cmath>

#include "base/check.h"
#include "base/rng.h"

namespace m1 {

void Batch::add_segment(const std::vector<int>& toks) {
  if (seg.empty()) seg.push_back(0);
  for (size_t i = 0; i < toks.size(); ++i) {
    tokens.push_back(toks[i]);
    targets.push_back(i + 1 < toks.size() ? toks[i + 1] : -1);
  }
  seg.push_back(int(tokens.size()));
  if (!parent.empty()) parent.push_back(-1);
}

bool Batch::has_prefixes() const {
  for (int p : parent)
    if (p >= 0) return true;
  return false;
}

int Batch::add_prefix(const std::vector<int>& toks) {
  M1_CHECK(!toks.empty());
  add_segment(toks);
  for (size_t i = toks.size(); i > 0; --i) targets[targets.size() - i] = -1;
  return segments() - 1;
}

void Batch::add_continuation(int p, const std::vector<int>& toks) {
  M1_CHECK(p >= 0 && p < segments() && parent_of(p) < 0 && seg[size_t(p) + 1] > seg[size_t(p)] && !toks.empty());
  parent.resize(size_t(segments()), -1);
  add_segment(toks);
  parent.back() = p;
}

size_t DecodeState::bytes() const {
  size_t n = 0;
  for (auto& s : lstate) n += s.size();
  for (auto& s : kcache) n += s.size();
  for (auto& s : vcache) n += s.size();
  return n * sizeof(float);
}

Model::Model(ModelConfig cfg) : cfg_(std::move(cfg)), kern_(&default_kernels()) {
  const int64_t V = cfg_.vocab_size, D = cfg_.hidden_size, H = cfg_.num_attention_heads, d = cfg_.head_dim;
  const int64_t Hkv = cfg_.num_key_value_heads, I = cfg_.intermediate_size, E = cfg_.num_local_experts;
  size_t off = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (auto s : shape) n *= size_t(s);
    specs_.push_back({name, std::move(shape), off, n});
    off += n;
  };
  add("model.embed_tokens.weight", {V, D});
  for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {D});
    if (cfg_.is_softmax(l)) {
      add(p + "self_attn.q_proj.weight", {H * d, D});
      add(p + "self_attn.k_proj.weight", {Hkv * d, D});
      add(p + "self_attn.v_proj.weight", {Hkv * d, D});
      add(p + "self_attn.o_proj.weight", {D, H * d});
    } else {
      add(p + "self_attn.qkv_proj.weight", {3 * H * d, D});
      add(p + "self_attn.output_gate.weight", {H * d, D});
      add(p + "self_attn.norm.weight", {H * d});
      add(p + "self_attn.out_proj.weight", {D, H * d});
    }
    add(p + "post_attention_layernorm.weight", {D});
    add(p + "block_sparse_moe.gate.weight", {E, D});
    for (int e = 0; e < E; ++e) {
      const std::string q = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
      add(q + "w1.weight", {I, D});
      add(q + "w3.weight", {I, D});
      add(q + "w2.weight", {D, I});
    }
  }
  add("model.norm.weight", {D});
  if (!cfg_.tie_word_embeddings) add("lm_head.weight", {V, D});
  params_.assign(off, 0.0f);
  lambda_.resize(size_t(cfg_.num_hidden_layers));
  for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
    lambda_[l].resize(size_t(H));
    lightning_decay(lambda_[l].data(), int(H), l, cfg_.num_hidden_layers);
  }
}

const ParamSpec* Model::find(const std::string& name) const {
  for (auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

ModelView Model::view(float* buf) const {
  ModelView v;
  size_t i = 0;
  auto next = [&]() { return buf + specs_[i++].offset; };
  v.embed = next();
  const int E = cfg_.num_local_experts;
  v.layers.resize(size_t(cfg_.num_hidden_layers));
  for (int l = 0; l < cfg_.num_hidden_layers; ++l) {
    LayerView& lv = v.layers[l];
    lv.input_norm = next();
    if (cfg_.is_softmax(l)) {
      lv.q = next();
      lv.k = next();
      lv.v = next();
      lv.o = next();
    } else {
      lv.qkv = next();
      lv.gate = next();
      lv.attn_norm = next();
      lv.out = next();
    }
    lv.post_norm = next();
    lv.router = next();
    lv.w1.resize(size_t(E));
    lv.w3.resize(size_t(E));
    lv.w2.resize(size_t(E));
    for (int e = 0; e < E; ++e) {
      lv.w1[e] = next();
      lv.w3[e] = next();
      lv.w2[e] = next();
    }
  }
  v.final_norm = next();
  v.lm_head = cfg_.tie_word_embeddings ? v.embed : next();
  M1_CHECK(i == specs_.size());
  return v;
}

void Model::init_random(uint64_t seed) {
  Rng rng(seed);
  const float sd = float(cfg_.initializer_range);
  for (auto& s : specs_) {
    float* p = params_.data() + s.offset;
    if (s.shape.size() == 1) {
      for (size_t i = 0; i < s.numel; ++i) p[i] = 1.0f;
    } else {
      for (size_t i = 0; i < s.numel; ++i) p[i] = sd * float(rng.normal());
    }
  }
}

DecodeState Model::new_state() const {
  DecodeState s;
  const size_t L = size_t(cfg_.num_hidden_layers);
  s.lstate.resize(L);
  s.kcache.resize(L);
  s.vcache.resize(L);
  const size_t hdd = size_t(cfg_.num_attention_heads) * cfg_.head_dim * cfg_.head_dim;
  for (size_t l = 0; l < L; ++l)
    if (!cfg_.is_softmax(int(l))) s.lstate[l].assign(hdd, 0.0f);
  return s;
}

}  // namespace m1
