// The M1 hybrid model (docs/model.md): parameters, forward over packed batches, backward to every
// parameter, and batched incremental decoding. Letters: T tokens in a packed batch, D hidden,
// H heads, Hkv KV heads, d head dim, I expert width, E experts, k top-k, V vocab, L layers.
//
// Ownership: a Model owns its parameters (one fp32 buffer, tensors carved from it in a fixed
// order, MiniMax-M1 names). Gradients use the same layout (a buffer of num_params() floats), so
// the optimizer runs over flat arrays. Activations live in a Workspace owned by the caller; a
// Workspace is reused across steps and holds what backward needs from the last forward.
// Thread safety: forward/backward/decode on one Model may run concurrently only with different
// Workspaces / DecodeStates and when nobody writes the parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "kernels/kernels.h"
#include "model/config.h"

namespace m1 {

struct ParamSpec {
  std::string name;            // MiniMax-M1 tensor name
  std::vector<int64_t> shape;  // [out, in] for matrices
  size_t offset = 0;           // in floats, into the parameter buffer
  size_t numel = 0;
};

// Pointers into a parameter-layout buffer (weights or gradients).
struct LayerView {
  float* input_norm = nullptr;  // (D)
  float* post_norm = nullptr;   // (D)
  // lightning
  float* qkv = nullptr;         // (3·H·d, D)
  float* gate = nullptr;        // (H·d, D)
  float* attn_norm = nullptr;   // (H·d)
  float* out = nullptr;         // (D, H·d)
  // softmax
  float* q = nullptr;           // (H·d, D)
  float* k = nullptr;           // (Hkv·d, D)
  float* v = nullptr;           // (Hkv·d, D)
  float* o = nullptr;           // (D, H·d)
  // MoE
  float* router = nullptr;      // (E, D)
  std::vector<float*> w1, w3;   // E × (I, D)
  std::vector<float*> w2;       // E × (D, I)
};
struct ModelView {
  float* embed = nullptr;       // (V, D)
  std::vector<LayerView> layers;
  float* final_norm = nullptr;  // (D)
  float* lm_head = nullptr;     // (V, D); == embed when tied
};

// A packed batch: segments laid end to end. Segment s is tokens[seg[s] .. seg[s+1]).
// targets[t] = the token whose logprob row t predicts (usually tokens[t+1] of the same segment),
// or −1 for no prediction (last token of a segment, padding).
//
// Shared prefixes: a segment may continue a PREFIX segment (parent[s] = p): its tokens are then
// read after p's, as if the sequence were p's tokens followed by s's (RoPE positions go on from
// p's length; lightning layers start from p's final state; softmax layers attend to p's keys),
// while p's activations are computed once however many segments continue it. The math is that
// of the unshared sequences, the MoE load-balancing loss included (p's tokens count once per
// continuation); only the work is shared (G samples of one prompt in an RL batch).
// REQUIRES: p < s, p has no parent itself, p and s are non-empty; no decode-state capture.
struct Batch {
  std::vector<int> tokens;
  std::vector<int> seg;      // size = segments + 1, seg[0] = 0, seg.back() = tokens.size()
  std::vector<int> targets;  // same size as tokens
  std::vector<int> parent;   // per segment: the prefix it continues, or −1; empty = none at all
  int size() const { return int(tokens.size()); }
  int segments() const { return int(seg.size()) - 1; }
  int parent_of(int s) const { return size_t(s) < parent.size() ? parent[size_t(s)] : -1; }
  bool has_prefixes() const;
  // Appends one segment whose targets are its own next tokens (the last has none).
  void add_segment(const std::vector<int>& toks);
  // Appends a prefix: a context-only segment (no targets) for later segments to continue.
  // Returns its segment index.
  int add_prefix(const std::vector<int>& toks);
  // Appends a segment continuing prefix p; its targets are its own next tokens (so its first
  // token is the last token of the context whose next-token prediction is wanted).
  void add_continuation(int p, const std::vector<int>& toks);
};

struct ForwardOut {
  std::vector<float> logp;     // (T) log p(targets[t] | tokens ≤ t of its segment); 0 where no target
  std::vector<float> entropy;  // (T) entropy of the predictive distribution at t
  float aux_loss = 0;          // MoE load-balancing loss, averaged over layers (coef included)
};

struct Workspace;  // activations of the last forward (model/model.cc)
Workspace* new_workspace();
void delete_workspace(Workspace* ws);

// Per-sequence decode state: lightning fp32 state per lightning layer (H·d·d, constant in
// context length) and a KV cache per softmax layer (grows with the context).
struct DecodeState {
  int len = 0;                              // tokens consumed so far (= next RoPE position)
  std::vector<std::vector<float>> lstate;   // per layer: (H, d, d) for lightning layers, empty otherwise
  std::vector<std::vector<float>> kcache;   // per layer: (len, Hkv·d) for softmax layers
  std::vector<std::vector<float>> vcache;
  size_t bytes() const;                     // fp32 bytes currently held
};

class Model {
 public:
  explicit Model(ModelConfig cfg);  // REQUIRES: validate_model_config(cfg) ok. Parameters zeroed.
  const ModelConfig& config() const { return cfg_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  size_t num_params() const { return params_.size(); }
  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }
  const ParamSpec* find(const std::string& name) const;
  ModelView view(float* buffer) const;  // buffer: num_params() floats in this model's layout
  ModelView view() { return view(params_.data()); }

  // Normal(0, initializer_range) matrices, ones for norm weights. Deterministic in seed.
  void init_random(uint64_t seed);

  // Forward over a packed batch; keeps activations in ws for backward. When capture is non-null,
  // capture[s] (one per segment, made by new_state()) receives segment s's decode state.
  void forward(const Batch& b, Workspace& ws, ForwardOut& out, DecodeState* const* capture = nullptr) const;
  // Backward of L = Σ_t dlogp[t]·logp[t] + aux_weight·aux_loss (dlogp = ∂L/∂logp) from the last
  // forward on ws; ACCUMULATES into grads (num_params() floats).
  void backward(const Batch& b, Workspace& ws, const float* dlogp, float aux_weight, float* grads) const;

  // Runs one prompt per state (a packed prefill), leaving each state positioned after its
  // prompt; writes the log-softmax of each prompt's last position into logsm (B·V).
  void prefill(const std::vector<std::vector<int>>& prompts, DecodeState* const* states, float* logsm) const;
  // One token per sequence: appends tokens[b] to states[b]; logsm (B·V) = next-token log-softmax.
  void decode_step(const int* tokens, DecodeState* const* states, int B, float* logsm) const;
  // A fresh decode state (lightning states zero, caches empty).
  DecodeState new_state() const;

  const Kernels& kernels() const { return *kern_; }
  void set_kernels(const Kernels& k) { kern_ = &k; }

 private:
  ModelConfig cfg_;
  std::vector<ParamSpec> specs_;
  std::vector<float> params_;
  std::vector<std::vector<float>> lambda_;  // per layer: (H) lightning decay
  const Kernels* kern_;
};

// Model directory IO: DIR/config.json + DIR/model.safetensors (or shards).
Result<Model> load_model(const std::string& dir);
// Writes DIR/config.json and DIR/model.safetensors (dtype "F32" or "BF16"); DIR must exist.
Status save_model(const Model& m, const std::string& dir, const std::string& dtype = "F32");

// AdamW moments in a checkpoint: DIR/optimizer.safetensors holds "m.<name>" and "v.<name>" (F32)
// for every parameter of M. load resizes mom/var to M's layout.
Status save_adam_moments(const Model& m, const std::vector<float>& mom, const std::vector<float>& var,
                         const std::string& dir);
Status load_adam_moments(const Model& m, const std::string& dir, std::vector<float>* mom, std::vector<float>* var);

}  // namespace m1
