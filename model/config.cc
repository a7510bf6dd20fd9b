// ModelConfig parsing, validation, serialisation and size/cost accounting (see config.h).
// Symbols (V, D, L, H, Hkv, d, I, E, k, r) are docs/model.md's.
#include "model/config.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <variant>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"

namespace m1 {
namespace {

using json = nlohmann::json;

// One config key and the ModelConfig member it fills.
using Member = std::variant<int ModelConfig::*, double ModelConfig::*, bool ModelConfig::*,
                            std::vector<int> ModelConfig::*>;
struct Field {
  const char* key;
  Member member;
  bool required;
};

const Field kFields[] = {
    {"vocab_size", &ModelConfig::vocab_size, true},
    {"hidden_size", &ModelConfig::hidden_size, true},
    {"num_hidden_layers", &ModelConfig::num_hidden_layers, true},
    {"num_attention_heads", &ModelConfig::num_attention_heads, true},
    {"num_key_value_heads", &ModelConfig::num_key_value_heads, true},
    {"head_dim", &ModelConfig::head_dim, true},
    {"intermediate_size", &ModelConfig::intermediate_size, true},
    {"num_local_experts", &ModelConfig::num_local_experts, true},
    {"num_experts_per_tok", &ModelConfig::num_experts_per_tok, true},
    {"attn_type_list", &ModelConfig::attn_type_list, true},
    {"rotary_dim", &ModelConfig::rotary_dim, true},
    {"rope_theta", &ModelConfig::rope_theta, true},
    {"rms_norm_eps", &ModelConfig::rms_norm_eps, true},
    {"postnorm", &ModelConfig::postnorm, true},
    {"layernorm_linear_attention_alpha", &ModelConfig::layernorm_linear_attention_alpha, true},
    {"layernorm_linear_attention_beta", &ModelConfig::layernorm_linear_attention_beta, true},
    {"layernorm_full_attention_alpha", &ModelConfig::layernorm_full_attention_alpha, true},
    {"layernorm_full_attention_beta", &ModelConfig::layernorm_full_attention_beta, true},
    {"layernorm_mlp_alpha", &ModelConfig::layernorm_mlp_alpha, true},
    {"layernorm_mlp_beta", &ModelConfig::layernorm_mlp_beta, true},
    {"block_size", &ModelConfig::block_size, false},
    {"router_aux_loss_coef", &ModelConfig::router_aux_loss_coef, false},
    {"tie_word_embeddings", &ModelConfig::tie_word_embeddings, false},
    {"initializer_range", &ModelConfig::initializer_range, false},
};

// Keys of the MiniMax-M1 release config that m1rl reads past without a warning. hidden_act and
// shared_intermediate_size are checked (m1rl implements only silu and no shared expert).
const std::set<std::string>& ignored_keys() {
  static const std::set<std::string> kKeys = {
      "architectures",     "attention_dropout",        "auto_map",          "bos_token_id",
      "eos_token_id",      "hidden_act",               "max_position_embeddings",
      "model_type",        "output_router_logits",     "pad_token_id",      "router_jitter_noise",
      "shared_intermediate_size", "shared_moe_mode",   "sliding_window",    "transformers_version",
      "use_cache",         "torch_dtype"};
  return kKeys;
}

// transformers' MiniMax keys (models/minimax/configuration_minimax.py) that map one to one onto a
// ModelConfig member. The sizes are required here although transformers has defaults for them
// (save_pretrained always writes them; a guessed vocab_size would be silently wrong).
const Field kHfFields[] = {
    {"vocab_size", &ModelConfig::vocab_size, true},
    {"hidden_size", &ModelConfig::hidden_size, true},
    {"num_hidden_layers", &ModelConfig::num_hidden_layers, true},
    {"num_attention_heads", &ModelConfig::num_attention_heads, true},
    {"intermediate_size", &ModelConfig::intermediate_size, true},
    {"num_local_experts", &ModelConfig::num_local_experts, true},
    {"num_experts_per_tok", &ModelConfig::num_experts_per_tok, true},
    {"rms_norm_eps", &ModelConfig::rms_norm_eps, false},
    {"linear_attn_alpha_factor", &ModelConfig::layernorm_linear_attention_alpha, false},
    {"linear_attn_beta_factor", &ModelConfig::layernorm_linear_attention_beta, false},
    {"full_attn_alpha_factor", &ModelConfig::layernorm_full_attention_alpha, false},
    {"full_attn_beta_factor", &ModelConfig::layernorm_full_attention_beta, false},
    {"mlp_alpha_factor", &ModelConfig::layernorm_mlp_alpha, false},
    {"mlp_beta_factor", &ModelConfig::layernorm_mlp_beta, false},
    {"block_size", &ModelConfig::block_size, false},
    {"router_aux_loss_coef", &ModelConfig::router_aux_loss_coef, false},
    {"tie_word_embeddings", &ModelConfig::tie_word_embeddings, false},
    {"initializer_range", &ModelConfig::initializer_range, false},
};

// Release key → transformers key, where they differ (validate_model_config's errors name the
// release's).
const std::pair<const char*, const char*> kHfNames[] = {
    {"attn_type_list", "layer_types"},
    {"layernorm_linear_attention_alpha", "linear_attn_alpha_factor"},
    {"layernorm_linear_attention_beta", "linear_attn_beta_factor"},
    {"layernorm_full_attention_alpha", "full_attn_alpha_factor"},
    {"layernorm_full_attention_beta", "full_attn_beta_factor"},
    {"layernorm_mlp_alpha", "mlp_alpha_factor"},
    {"layernorm_mlp_beta", "mlp_beta_factor"},
    {"rope_theta", "rope_parameters.rope_theta"}};

// transformers keys read specially (parse_hf) or skipped quietly; the checked ones must hold the
// value under which transformers computes what m1rl computes.
const std::set<std::string>& hf_special_keys() {
  static const std::set<std::string> kKeys = {
      "num_key_value_heads", "head_dim", "layer_types", "rope_parameters", "rope_theta",
      "partial_rotary_factor", "rotary_dim", "postnorm", "sliding_window", "rope_scaling"};
  return kKeys;
}
const std::set<std::string>& hf_ignored_keys() {
  static const std::set<std::string> kKeys = {
      "_name_or_path",     "architectures",     "attention_dropout", "auto_map",
      "bos_token_id",      "dtype",             "eos_token_id",      "hidden_act",
      "max_position_embeddings", "model_type",  "output_router_logits", "pad_token_id",
      "router_jitter_noise", "shared_intermediate_size", "torch_dtype", "transformers_version",
      "use_cache"};
  return kKeys;
}

Status type_error(const std::string& source, const char* key, const char* expected, const json& v) {
  return Status::errorf("{}: key '{}': expected {}, got {} {}", source, key, expected, v.type_name(),
                        v.dump());
}

Status read_int(const json& v, const std::string& source, const char* key, int* out) {
  if (!v.is_number_integer()) return type_error(source, key, "an integer", v);
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int>::max()))
      return Status::errorf("{}: key '{}': {} is out of range", source, key, u);
    *out = int(u);
    return Status::ok();
  }
  int64_t i = v.get<int64_t>();
  if (i > std::numeric_limits<int>::max() || i < std::numeric_limits<int>::min())
    return Status::errorf("{}: key '{}': {} is out of range", source, key, i);
  *out = int(i);
  return Status::ok();
}

Status read_field(const json& v, const std::string& source, const Field& f, ModelConfig* c) {
  if (auto* m = std::get_if<int ModelConfig::*>(&f.member)) return read_int(v, source, f.key, &(c->**m));
  if (auto* m = std::get_if<double ModelConfig::*>(&f.member)) {
    if (!v.is_number()) return type_error(source, f.key, "a number", v);
    c->**m = v.get<double>();
    return Status::ok();
  }
  if (auto* m = std::get_if<bool ModelConfig::*>(&f.member)) {
    if (!v.is_boolean()) return type_error(source, f.key, "true or false", v);
    c->**m = v.get<bool>();
    return Status::ok();
  }
  auto m = std::get<std::vector<int> ModelConfig::*>(f.member);
  if (!v.is_array()) return type_error(source, f.key, "an array of integers", v);
  std::vector<int> out;
  out.reserve(v.size());
  for (const json& e : v) {
    int x = 0;
    M1_RETURN_IF_ERROR(read_int(e, source, f.key, &x));
    out.push_back(x);
  }
  c->*m = std::move(out);
  return Status::ok();
}

// The checked ignored keys: values m1rl cannot honour are errors, not silent differences.
Status check_ignored(const json& j, const std::string& source) {
  if (auto it = j.find("hidden_act"); it != j.end()) {
    if (!it->is_string() || it->get<std::string>() != "silu")
      return Status::errorf("{}: key 'hidden_act': {} is not supported (m1rl implements \"silu\")",
                            source, it->dump());
  }
  if (auto it = j.find("shared_intermediate_size"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() != 0)
      return Status::errorf(
          "{}: key 'shared_intermediate_size': {} is not supported (m1rl has no shared expert; "
          "must be 0)",
          source, it->dump());
  }
  return Status::ok();
}

// An integer key that transformers allows to be null (or absent): DEFAULT then.
Status read_int_or_default(const json& j, const std::string& source, const char* key, int dflt, int* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    *out = dflt;
    return Status::ok();
  }
  return read_int(*it, source, key, out);
}

// A partial RoPE factor in a transformers config: transformers' MiniMax rotates whole heads and
// does not read it, so any value but 1 leaves two readings of the file.
Status check_partial_factor(const json& v, const std::string& source, const char* key) {
  if (v.is_null() || (v.is_number() && v.get<double>() == 1.0)) return Status::ok();
  return Status::errorf(
      "{}: key '{}': {} is not supported: transformers' MiniMax applies RoPE to the whole head and "
      "ignores it, so the file does not say which function it means",
      source, key, v.dump());
}

// RoPE base of a transformers config: rope_parameters.rope_theta (transformers 5), else the
// top-level rope_theta (transformers 4), else transformers' default 1e6.
Status read_hf_rope(const json& j, const std::string& source, ModelConfig* c) {
  c->rope_theta = 1e6;
  if (auto it = j.find("rope_theta"); it != j.end()) {
    if (!it->is_number()) return type_error(source, "rope_theta", "a number", *it);
    c->rope_theta = it->get<double>();
  }
  if (auto it = j.find("partial_rotary_factor"); it != j.end())
    M1_RETURN_IF_ERROR(check_partial_factor(*it, source, "partial_rotary_factor"));
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null())
    return Status::errorf("{}: key 'rope_scaling': {} is not supported (m1rl implements plain RoPE)", source,
                          it->dump());
  auto it = j.find("rope_parameters");
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_object()) return type_error(source, "rope_parameters", "an object", *it);
  const json* rp = &*it;
  // transformers 5 may key the parameters by layer type; the softmax layers' are the ones used.
  if (rp->contains("full_attention") && (*rp)["full_attention"].is_object()) rp = &(*rp)["full_attention"];
  for (const auto& item : rp->items()) {
    const std::string& k = item.key();
    const json& v = item.value();
    if (k == "rope_theta") {
      if (!v.is_number()) return type_error(source, "rope_parameters.rope_theta", "a number", v);
      c->rope_theta = v.get<double>();
    } else if (k == "rope_type" || k == "type") {
      if (!v.is_string() || v.get<std::string>() != "default")
        return Status::errorf("{}: key 'rope_parameters.{}': {} is not supported (m1rl implements \"default\")",
                              source, k, v.dump());
    } else if (k == "partial_rotary_factor") {
      M1_RETURN_IF_ERROR(check_partial_factor(v, source, "rope_parameters.partial_rotary_factor"));
    } else if (k != "linear_attention" && k != "full_attention") {
      return Status::errorf("{}: key 'rope_parameters.{}': {} is not supported (m1rl implements plain RoPE)",
                            source, k, v.dump());
    }
  }
  return Status::ok();
}

// The transformers layout (see config.h): what transformers' MiniMax computes from this file.
Status parse_hf(const json& j, const std::string& source, ModelConfig* c) {
  c->layout = CheckpointLayout::kHf;
  std::set<std::string> known = hf_special_keys();
  for (const Field& f : kHfFields) {
    known.insert(f.key);
    auto it = j.find(f.key);
    if (it == j.end()) {
      if (f.required) return Status::errorf("{}: missing required key '{}'", source, f.key);
      continue;
    }
    M1_RETURN_IF_ERROR(read_field(*it, source, f, c));
  }
  M1_RETURN_IF_ERROR(read_int_or_default(j, source, "num_key_value_heads", c->num_attention_heads,
                                         &c->num_key_value_heads));
  const int H = c->num_attention_heads;
  int dflt_head_dim = H > 0 && c->hidden_size % H == 0 ? c->hidden_size / H : 0;
  M1_RETURN_IF_ERROR(read_int_or_default(j, source, "head_dim", dflt_head_dim, &c->head_dim));
  auto lt = j.find("layer_types");
  if (lt == j.end()) return Status::errorf("{}: missing required key 'layer_types'", source);
  if (!lt->is_array()) return type_error(source, "layer_types", "an array of strings", *lt);
  c->attn_type_list.clear();
  for (const json& e : *lt) {
    if (e == "linear_attention") {
      c->attn_type_list.push_back(0);
    } else if (e == "full_attention") {
      c->attn_type_list.push_back(1);
    } else {
      return Status::errorf("{}: key 'layer_types': entry {} is {} (expected \"linear_attention\" or "
                            "\"full_attention\")", source, c->attn_type_list.size(), e.dump());
    }
  }
  M1_RETURN_IF_ERROR(read_hf_rope(j, source, c));
  c->rotary_dim = c->head_dim;  // transformers rotates the whole head
  if (auto it = j.find("rotary_dim"); it != j.end() && !(it->is_number_integer() && it->get<int64_t>() == c->head_dim))
    return Status::errorf("{}: key 'rotary_dim': {} is not supported in a transformers config: transformers' "
                          "MiniMax applies RoPE to the whole head (head_dim {}) and ignores it",
                          source, it->dump(), c->head_dim);
  if (auto it = j.find("postnorm"); it != j.end() && *it != json(true))
    return Status::errorf("{}: key 'postnorm': {} is not supported in a transformers config (transformers' "
                          "MiniMax is always post-norm)", source, it->dump());
  c->postnorm = true;
  if (auto it = j.find("sliding_window"); it != j.end() && !it->is_null())
    return Status::errorf("{}: key 'sliding_window': {} is not supported (m1rl's softmax layers see the whole "
                          "context; must be null)", source, it->dump());
  M1_RETURN_IF_ERROR(check_ignored(j, source));
  for (const auto& item : j.items()) {
    if (known.count(item.key()) || hf_ignored_keys().count(item.key())) continue;
    c->unknown_keys.push_back(item.key());
    log_warn("{}: unknown key '{}' ignored", source, item.key());
  }
  if (H > 0 && (H & (H - 1)) != 0)
    log_warn("{}: num_attention_heads {} is not a power of two: transformers' MiniMax gives these heads other "
             "decay slopes than the MiniMax-M1 release's ALiBi table, which m1rl computes (docs/model.md)",
             source, H);
  return Status::ok();
}

}  // namespace

int ModelConfig::num_softmax_layers() const {
  int n = 0;
  for (int t : attn_type_list) n += (t == 1);
  return n;
}

int ModelConfig::num_lightning_layers() const {
  int n = 0;
  for (int t : attn_type_list) n += (t == 0);
  return n;
}

Status validate_model_config(const ModelConfig& c, const std::string& source) {
  auto bad = [&](const char* key, const std::string& what) {
    return Status::errorf("{}: key '{}': {}", source, key, what);
  };
  const std::pair<const char*, int> sizes[] = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"intermediate_size", c.intermediate_size},
      {"num_local_experts", c.num_local_experts},
      {"num_experts_per_tok", c.num_experts_per_tok},
      {"block_size", c.block_size},
  };
  for (const auto& [key, v] : sizes)
    if (v <= 0) return bad(key, fmt::format("{} must be positive", v));
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return bad("num_key_value_heads", fmt::format("{} does not divide num_attention_heads {}",
                                                  c.num_key_value_heads, c.num_attention_heads));
  if (c.num_experts_per_tok > c.num_local_experts)
    return bad("num_experts_per_tok", fmt::format("{} exceeds num_local_experts {}",
                                                  c.num_experts_per_tok, c.num_local_experts));
  if (c.rotary_dim < 0 || c.rotary_dim % 2 != 0)
    return bad("rotary_dim", fmt::format("{} must be even and non-negative", c.rotary_dim));
  if (c.rotary_dim > c.head_dim)
    return bad("rotary_dim", fmt::format("{} exceeds head_dim {}", c.rotary_dim, c.head_dim));
  if (c.attn_type_list.size() != size_t(c.num_hidden_layers))
    return bad("attn_type_list", fmt::format("has {} entries, num_hidden_layers is {}",
                                             c.attn_type_list.size(), c.num_hidden_layers));
  for (size_t l = 0; l < c.attn_type_list.size(); ++l)
    if (c.attn_type_list[l] != 0 && c.attn_type_list[l] != 1)
      return bad("attn_type_list",
                 fmt::format("entry {} is {} (0 = lightning, 1 = softmax)", l, c.attn_type_list[l]));
  if (!(std::isfinite(c.rope_theta) && c.rope_theta > 0))
    return bad("rope_theta", fmt::format("{} must be positive", c.rope_theta));
  if (!(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0))
    return bad("rms_norm_eps", fmt::format("{} must be positive", c.rms_norm_eps));
  const std::pair<const char*, double> scales[] = {
      {"layernorm_linear_attention_alpha", c.layernorm_linear_attention_alpha},
      {"layernorm_linear_attention_beta", c.layernorm_linear_attention_beta},
      {"layernorm_full_attention_alpha", c.layernorm_full_attention_alpha},
      {"layernorm_full_attention_beta", c.layernorm_full_attention_beta},
      {"layernorm_mlp_alpha", c.layernorm_mlp_alpha},
      {"layernorm_mlp_beta", c.layernorm_mlp_beta},
  };
  for (const auto& [key, v] : scales)
    if (!std::isfinite(v)) return bad(key, fmt::format("{} must be finite", v));
  if (!(std::isfinite(c.router_aux_loss_coef) && c.router_aux_loss_coef >= 0))
    return bad("router_aux_loss_coef", fmt::format("{} must be non-negative", c.router_aux_loss_coef));
  if (!(std::isfinite(c.initializer_range) && c.initializer_range >= 0))
    return bad("initializer_range", fmt::format("{} must be non-negative", c.initializer_range));
  return Status::ok();
}

Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    // e.what() carries "parse error at line N, column M: ...".
    return Status::errorf("{}: malformed JSON: {}", source, e.what());
  }
  if (!j.is_object())
    return Status::errorf("{}: expected a JSON object at the top level, got {}", source, j.type_name());

  ModelConfig c;
  const bool hf = (j.contains("model_type") && j["model_type"] == "minimax") ||
                  (j.contains("layer_types") && !j.contains("attn_type_list"));
  if (hf) {
    M1_RETURN_IF_ERROR(parse_hf(j, source, &c));
    if (Status s = validate_model_config(c, source); !s.is_ok()) {
      // Name the key as this file spells it.
      std::string msg = s.message();
      for (const auto& [release, hf_key] : kHfNames) {
        const std::string from = std::string("key '") + release + "'";
        if (auto at = msg.find(from); at != std::string::npos) msg.replace(at, from.size(), std::string("key '") + hf_key + "'");
      }
      return Status::error(msg);
    }
    return c;
  }
  std::set<std::string> known;
  for (const Field& f : kFields) {
    known.insert(f.key);
    auto it = j.find(f.key);
    if (it == j.end()) {
      if (f.required) return Status::errorf("{}: missing required key '{}'", source, f.key);
      continue;
    }
    M1_RETURN_IF_ERROR(read_field(*it, source, f, &c));
  }
  M1_RETURN_IF_ERROR(check_ignored(j, source));
  for (const auto& item : j.items()) {
    if (known.count(item.key()) || ignored_keys().count(item.key())) continue;
    c.unknown_keys.push_back(item.key());
    log_warn("{}: unknown key '{}' ignored", source, item.key());
  }
  M1_RETURN_IF_ERROR(validate_model_config(c, source));
  return c;
}

Result<ModelConfig> load_model_config(const std::string& path) {
  M1_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return parse_model_config(text, path);
}

std::string model_config_to_json(const ModelConfig& c) {
  json j = json::object();
  for (const Field& f : kFields) {
    std::visit([&](auto m) { j[f.key] = c.*m; }, f.member);
  }
  return j.dump(2) + "\n";
}

std::string model_config_to_hf_json(const ModelConfig& c) {
  json j = json::object();
  j["architectures"] = {"MiniMaxForCausalLM"};
  j["model_type"] = "minimax";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["initializer_range"] = c.initializer_range;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["use_cache"] = true;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
  j["sliding_window"] = nullptr;
  j["attention_dropout"] = 0.0;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["num_local_experts"] = c.num_local_experts;
  j["output_router_logits"] = false;
  j["router_aux_loss_coef"] = c.router_aux_loss_coef;
  j["router_jitter_noise"] = 0.0;
  json types = json::array();
  for (int t : c.attn_type_list) types.push_back(t == 1 ? "full_attention" : "linear_attention");
  j["layer_types"] = types;
  j["block_size"] = c.block_size;
  j["linear_attn_alpha_factor"] = c.layernorm_linear_attention_alpha;
  j["linear_attn_beta_factor"] = c.layernorm_linear_attention_beta;
  j["full_attn_alpha_factor"] = c.layernorm_full_attention_alpha;
  j["full_attn_beta_factor"] = c.layernorm_full_attention_beta;
  j["mlp_alpha_factor"] = c.layernorm_mlp_alpha;
  j["mlp_beta_factor"] = c.layernorm_mlp_beta;
  return j.dump(2) + "\n";
}

const char* layout_name(CheckpointLayout l) { return l == CheckpointLayout::kHf ? "hf" : "release"; }

const std::vector<int64_t>& info_context_lengths() {
  static const std::vector<int64_t> kLengths = {4096, 16384, 65536, 131072, 1048576};
  return kLengths;
}

// Parameter counts follow docs/model.md's weight table (for M1: 456.09B total, 45.94B active).
ModelStats compute_model_stats(const ModelConfig& c) {
  const double V = c.vocab_size, D = c.hidden_size, H = c.num_attention_heads,
               Hkv = c.num_key_value_heads, d = c.head_dim, I = c.intermediate_size,
               E = c.num_local_experts, k = c.num_experts_per_tok;
  const double Hd = H * d;
  const double lightning_attn = 3 * Hd * D + Hd * D + Hd + D * Hd;  // qkv, gate, norm, out
  const double softmax_attn = Hd * D + 2 * Hkv * d * D + D * Hd;    // q, k, v, o
  const double norms = 2 * D;                                       // input + post-attention
  const double router = E * D;
  const double expert = 3 * I * D;  // w1, w3 [I, D] and w2 [D, I]
  const double n_lightning = c.num_lightning_layers(), n_softmax = c.num_softmax_layers();
  const double attn = n_lightning * lightning_attn + n_softmax * softmax_attn;
  const double layers = double(c.num_hidden_layers);

  ModelStats s;
  const double embed = V * D, head = c.tie_word_embeddings ? 0.0 : V * D, final_norm = D;
  s.total_params = embed + head + final_norm + attn + layers * (norms + router + E * expert);
  s.active_params = attn + layers * (norms + router + k * expert) + final_norm;
  s.weights_bytes = 2 * s.total_params;
  for (int64_t ctx : info_context_lengths()) {
    const double cd = double(ctx);
    s.flops_per_token[ctx] = 2 * s.active_params + 2 * D * V + n_lightning * 4 * H * d * d +
                             n_softmax * 4 * H * d * cd;
    s.state_bytes_per_sequence[ctx] = n_lightning * H * d * d * 4 + n_softmax * 2 * Hkv * d * cd * 2;
  }
  return s;
}

}  // namespace m1
