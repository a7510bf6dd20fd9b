// Checkpoints in both layouts (docs/model.md, "Checkpoint layouts and conversion"):
//
//   release (m1rl's own, the MiniMax-M1 release's): config keys attn_type_list, rotary_dim,
//     layernorm_*_alpha/beta; tensors model.layers.L.block_sparse_moe.gate.weight [E, D] and
//     model.layers.L.block_sparse_moe.experts.N.w1/w3.weight [I, D], .w2.weight [D, I].
//   hf (Hugging Face transformers' MiniMax, model_type "minimax", as in transformers 5's
//     models/minimax/modeling_minimax.py and conversion_mapping.py): config keys layer_types,
//     *_attn_alpha_factor/beta_factor, mlp_*_factor, rope_parameters; tensors
//     model.layers.L.mlp.gate.weight [E, D],
//     model.layers.L.mlp.experts.gate_up_proj [E, 2I, D]  (expert e: rows [0, I) = w1, [I, 2I) = w3),
//     model.layers.L.mlp.experts.down_proj    [E, D, I]   (expert e: w2).
//   Every other tensor has the same name and shape in both.
//
// Loading (load_model) finds each parameter under either name, whatever the config's layout, so
// transformers 5's save_pretrained output (legacy per-expert names by default) loads too.
// Conversion streams: it holds a few MiB of one tensor at a time, never the model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/config.h"
#include "model/safetensors.h"

namespace m1 {

// Where one release-named parameter's data is in a checkpoint: elements [begin, begin + count) of
// the stored tensor NAME, whose whole shape is SHAPE.
struct TensorSlice {
  std::string name;
  std::vector<int64_t> shape;
  int64_t begin = 0, count = 0;
};

// The release-named parameters of a model with config C, in Model::specs() order (names and
// shapes only: nothing is allocated, so it works for the 456B-parameter M1).
std::vector<TensorDecl> release_param_decls(const ModelConfig& c);

// Finds release-named parameter NAME of SHAPE in RD: under its own name, else inside
// transformers' packed tensor (mlp.gate, mlp.experts.gate_up_proj / down_proj). Errors name RD's
// path, the tensor and the name looked for in the other layout; a stored shape that does not
// match is an error naming both shapes.
Result<TensorSlice> locate_param(const SafetensorsReader& rd, const ModelConfig& c, const std::string& name,
                                 const std::vector<int64_t>& shape);

// Tensors a transformers checkpoint may hold that are not weights: the lightning layers'
// registered buffers (self_attn.slope_rate, query_decay, key_decay, diagonal_decay), which
// transformers recomputes from the config. Skipped quietly by load_model, dropped by conversion.
bool is_hf_buffer(const std::string& name);

// Why writing a model with config C (read in layout C.layout) in layout TO changes the function
// it computes; empty when it does not. release → hf: partial RoPE (rotary_dim < head_dim),
// num_attention_heads not a power of two (other decay slopes), postnorm false. hf → release:
// num_attention_heads not a power of two. (The 1e-5 layer-factor difference is below fp32
// rounding and not counted; docs/model.md.)
std::vector<std::string> conversion_changes(const ModelConfig& c, CheckpointLayout to);

struct ConvertOptions {
  CheckpointLayout to = CheckpointLayout::kHf;
  std::string dtype;  // "F32", "BF16", or "" = the input's (F32 when it is F16 or mixed)
  bool force = false;  // convert although conversion_changes() is not empty
  uint64_t max_shard_bytes = 5000000000ull;  // transformers' default "5GB"; one shard = model.safetensors
};

struct ConvertReport {
  CheckpointLayout from = CheckpointLayout::kRelease, to = CheckpointLayout::kHf;
  std::string dtype;                  // what was written
  size_t tensors = 0;                 // written
  int shards = 0;
  uint64_t bytes = 0;                 // tensor data written (the index's total_size)
  std::vector<std::string> changes;   // conversion_changes() (non-empty only with force)
  std::vector<std::string> copied;    // tokenizer / generation files copied from IN_DIR
  std::vector<std::string> dropped;   // IN_DIR tensors that are not model weights (is_hf_buffer excepted)
};

// Converts the model directory IN_DIR into OUT_DIR in layout opts.to: sharded safetensors (one
// shard: model.safetensors; more: model-0000k-of-0000n.safetensors + model.safetensors.index.json),
// config.json and generation_config.json (IN_DIR's, else one from its token ids), and IN_DIR's
// tokenizer files. Everything is checked before anything is written (config, every tensor's
// presence, shape and dtype, the refusal, OUT_DIR absent or empty); the output is written into
// OUT_DIR.tmp-XXXXXX, fsynced and renamed to OUT_DIR, and removed on failure, so OUT_DIR never
// holds a partial conversion. Errors name the input (directory, file, tensor or key).
Result<ConvertReport> convert_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                         const ConvertOptions& opts);

}  // namespace m1
