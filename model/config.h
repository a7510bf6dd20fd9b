// The model configuration: the table of docs/model.md, read from a config.json with the MiniMax-M1
// key names, or with the key names of Hugging Face transformers' MiniMax (`model_type: "minimax"`,
// `layer_types`, `*_alpha_factor`, `rope_parameters`; docs/model.md, "Checkpoint layouts").
// Unknown keys warn (listed in ModelConfig::unknown_keys); a missing required key or an
// inconsistent value is an error naming the key. The MiniMax-M1 release's config.json
// (configs/models/minimax-m1.json) loads as is. Plain value type.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace m1 {

// The two checkpoint layouts m1rl reads and writes (model/hf_convert.h converts between them):
// kRelease = the MiniMax-M1 release's config keys and per-expert tensor names (m1rl's own),
// kHf = transformers' MiniMax config keys and packed expert tensors.
enum class CheckpointLayout { kRelease, kHf };
const char* layout_name(CheckpointLayout l);  // "release", "hf"

struct ModelConfig {
  int vocab_size = 0;           // V
  int hidden_size = 0;          // D
  int num_hidden_layers = 0;    // L
  int num_attention_heads = 0;  // H
  int num_key_value_heads = 0;  // Hkv (softmax layers), H % Hkv == 0
  int head_dim = 0;             // d
  int intermediate_size = 0;    // I, per expert
  int num_local_experts = 0;    // E
  int num_experts_per_tok = 0;  // k ≤ E
  std::vector<int> attn_type_list;  // L entries: 0 = lightning, 1 = softmax
  int rotary_dim = 0;           // r, even, ≤ d
  double rope_theta = 10000.0;  // θ
  double rms_norm_eps = 1e-5;   // ε
  bool postnorm = true;
  double layernorm_linear_attention_alpha = 1.0, layernorm_linear_attention_beta = 1.0;
  double layernorm_full_attention_alpha = 1.0, layernorm_full_attention_beta = 1.0;
  double layernorm_mlp_alpha = 1.0, layernorm_mlp_beta = 1.0;
  int block_size = 256;         // B, lightning chunk length (never changes the result)
  double router_aux_loss_coef = 0.001;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;

  std::vector<std::string> unknown_keys;  // present in the file, not used by m1rl (warned)
  // The key names the file used. A kHf config is read as transformers computes it: post-norm,
  // RoPE over the whole head (rotary_dim = head_dim); its defaults are transformers' where the
  // key is optional there (num_key_value_heads = H, head_dim = D/H, rope_theta 1e6, factors 1).
  CheckpointLayout layout = CheckpointLayout::kRelease;

  int num_softmax_layers() const;
  int num_lightning_layers() const;
  bool is_softmax(int layer) const { return attn_type_list[size_t(layer)] == 1; }
};

// Parses config.json text in either layout: transformers' when `model_type` is "minimax", or when
// `layer_types` is present and `attn_type_list` is not; the release's otherwise.
// `source` names the input in errors ("configs/models/tiny.json").
Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source);
Result<ModelConfig> load_model_config(const std::string& path);
// Serialises with the MiniMax-M1 key names (round-trips through parse_model_config).
std::string model_config_to_json(const ModelConfig& c);
// Serialises with transformers' MiniMax key names (round-trips through parse_model_config as a kHf
// config). Writes rotary_dim nowhere: transformers rotates whole heads (hf_convert.h refuses a
// conversion where that changes the function).
std::string model_config_to_hf_json(const ModelConfig& c);
// Checks consistency (positive sizes, H % Hkv, k ≤ E, r even ≤ d, attn_type_list length L ...);
// the error names the key.
Status validate_model_config(const ModelConfig& c, const std::string& source);

// Sizes and costs for `m1rl model info` (see docs/model.md and the conventions).
struct ModelStats {
  double total_params = 0;   // every weight tensor, embedding and head included
  double active_params = 0;  // per token: attention + router + k of E experts in every layer; norms
                             // included; embedding and LM head excluded (M1 paper's 45.9B)
  double weights_bytes = 0;  // total_params in bf16
  // keyed by context length c: FLOPs to generate one token at context c (2·active matmul FLOPs
  // + LM head 2·D·V + lightning state update/readout 4·H·d² per layer + softmax 4·H·d·c per layer)
  std::map<int64_t, double> flops_per_token;
  // keyed by context length c: decode state bytes per sequence (lightning fp32 H·d·d per layer,
  // constant in c; softmax bf16 KV cache 2·Hkv·d·c·2 per layer)
  std::map<int64_t, double> state_bytes_per_sequence;
};
// The context lengths model info reports.
const std::vector<int64_t>& info_context_lengths();
ModelStats compute_model_stats(const ModelConfig& c);

}  // namespace m1
