// The kernel interface: every numeric op the model needs, as one table of function pointers
// (a backend is a filled table, after ggml). Backends:
//   cpu_naive_kernels()  plain loops, the oracle every other backend is tested against;
//   cpu_fast_kernels()   OpenBLAS GEMMs, chunked lightning attention, blocked loops, threads;
//   cuda_kernels()       (kernels/cuda/cuda.h, builds with M1_HAVE_CUDA) the same table on
//                        DEVICE pointers, tested against the naive oracle by tests/gpu.
//
// Conventions (docs/model.md letters): T tokens of one segment or N rows, D hidden, H heads, Hkv KV
// heads, d head dim, E experts, k top-k, V vocab. All tensors are fp32, row-major, contiguous
// unless a leading dimension (ld*) is given. Weights W are stored [out, in] (y = x·Wᵀ).
// Outputs are ASSIGNED (=), except parameter gradients named dW/dw/dtable, which ACCUMULATE (+=).
// No kernel allocates persistent state; scratch is internal. Kernels never read past the
// shapes they are given. Thread safety: a kernel may run on the pool (base/parallel.h); calls
// from several threads at once are allowed for the naive backend only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace m1 {

struct Kernels {
  const char* name;

  // C[M,N] = alpha·op(A)·op(B) + beta·C. op(A) is [M,K]: A is [M,K] (lda ≥ K) or, transposed,
  // [K,M] (lda ≥ M). op(B) is [K,N]: B is [K,N] or, transposed, [N,K]. beta = 0 ignores C's contents.
  void (*gemm)(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc);

  // y[N,D] = x / sqrt(mean(x²) + eps) ⊙ w;  rstd[N] = 1/sqrt(mean(x²) + eps) (saved for backward).
  void (*rmsnorm_forward)(float* y, float* rstd, const float* x, const float* w, int N, int D, float eps);
  // dx[N,D] (assigned) and dw[D] (+=) from dy; rstd from the forward.
  void (*rmsnorm_backward)(float* dx, float* dw, const float* dy, const float* x, const float* w,
                           const float* rstd, int N, int D);

  // Elementwise over n values. silu(x) = x·sigmoid(x).  swiglu(a, b) = silu(a)·b.
  // sigmoid_mul(g, y) = sigmoid(g)·y (the lightning output gate).
  void (*silu_forward)(float* y, const float* x, size_t n);
  void (*silu_backward)(float* dx, const float* dy, const float* x, size_t n);
  void (*swiglu_forward)(float* y, const float* a, const float* b, size_t n);
  void (*swiglu_backward)(float* da, float* db, const float* dy, const float* a, const float* b, size_t n);
  void (*sigmoid_mul_forward)(float* out, const float* g, const float* y, size_t n);
  void (*sigmoid_mul_backward)(float* dg, float* dy, const float* dout, const float* g, const float* y, size_t n);

  // Partial NeoX RoPE, in place, on x viewed as [T, nh, d] with row stride ld (≥ nh·d): for every
  // row t and head, dims i in [0, r/2) pair with i + r/2, angle φ = pos[t]·θ^(−2i/r), rotated by
  // +φ (forward) or −φ (backward: the transpose, applied to gradients). Dims [r, d) untouched.
  void (*rope_forward)(float* x, int T, int nh, int d, int ld, int r, const int* pos, float theta);
  void (*rope_backward)(float* dx, int T, int nh, int d, int ld, int r, const int* pos, float theta);

  // Causal GQA softmax attention over ONE segment. q [T, H·d] (row stride ldq), k and v [T, Hkv·d]
  // (row stride ldkv), o [T, H·d] (contiguous). Query head h reads KV head h·Hkv/H. Scale 1/sqrt(d).
  // lse [H, T] = log Σ_{s≤t} exp(score), saved for backward.
  void (*attention_forward)(float* o, float* lse, const float* q, int ldq, const float* k, const float* v,
                            int ldkv, int T, int H, int Hkv, int d);
  // dq (row stride ldq), dk and dv (row stride ldkv): assigned.
  void (*attention_backward)(float* dq, float* dk, float* dv, const float* dout, const float* o,
                             const float* lse, const float* q, int ldq, const float* k, const float* v,
                             int ldkv, int T, int H, int Hkv, int d);
  // One new query per sequence against its KV cache: q [B, H·d]; kcache[b], vcache[b] are
  // [len[b], Hkv·d] (the new token's k, v already appended); o [B, H·d].
  void (*attention_decode)(float* o, const float* q, const float* const* kcache, const float* const* vcache,
                           const int* len, int B, int H, int Hkv, int d);

  // Lightning attention core over ONE segment, all heads. qkv [T, H·3d]: head h owns columns
  // [h·3d, h·3d + 3d) = q | k | v (already through SiLU). lambda[H] = per-head decay of this layer.
  // kv_0 = state_in (or 0 when null), kv_t = λ·kv_{t−1} + k_tᵀv_t, o_t = q_t·kv_t.  o [T, H·d].
  // state_out [H, d, d] (may be null) receives kv_T. block = chunk length B ≥ 1 (any value gives
  // the same result up to rounding; the naive backend ignores it).
  void (*lightning_forward)(float* o, float* state_out, const float* qkv, const float* state_in,
                            const float* lambda, int T, int H, int d, int block);
  // Gradient of the forward with state_in = 0: dqkv [T, H·3d] (assigned) from dout [T, H·d].
  void (*lightning_backward)(float* dqkv, const float* dout, const float* qkv, const float* lambda, int T,
                             int H, int d, int block);
  // One recurrent step for B sequences: qkv [B, H·3d], states[b] → [H, d, d] updated in place,
  // o [B, H·d].
  void (*lightning_decode)(float* o, float* const* states, const float* qkv, const float* lambda, int B, int H,
                           int d);

  // MoE router: probs [T,E] = softmax(logits) (fp32); top_idx [T,k] = the k largest probs in
  // descending order (ties: lower expert index first); top_w [T,k] = probs renormalised over top.
  void (*router_forward)(float* probs, int* top_idx, float* top_w, const float* logits, int T, int E, int k);
  // dlogits [T,E] (assigned) from dtop_w [T,k] (through the renormalisation) plus dprobs [T,E]
  // (a direct gradient on the probabilities, e.g. from the aux loss; may be null).
  void (*router_backward)(float* dlogits, const float* dtop_w, const float* dprobs, const float* probs,
                          const int* top_idx, int T, int E, int k);
  // Load-balancing loss of one layer over the T routed tokens: coef·E·Σ_i f_i·P_i with
  // f_i = (#top-k slots on i)/(T·k), P_i = mean_t probs[t,i]. Returns the loss; dprobs [T,E]
  // (assigned) = grad_scale · ∂loss/∂probs (f is treated as a constant); dprobs may be null.
  float (*moe_aux_loss)(float* dprobs, const float* probs, const int* top_idx, int T, int E, int k,
                        float coef, float grad_scale);
  // Groups the T·k (token, slot) assignments by expert: offsets[E+1] (offsets[e]..offsets[e+1]
  // are expert e's rows), perm[T·k] = t·k + slot, stable (token order within an expert).
  void (*moe_dispatch)(int* offsets, int* perm, const int* top_idx, int T, int E, int k);
  // dst[i, :] = src[rows[i], :] for i < n; rows of width D.
  void (*gather_rows)(float* dst, const float* src, const int* rows, int n, int D);
  // out[t] = Σ_slot top_w[t,slot] · y[row of (t,slot)], y [T·k, D] in perm order (row i holds
  // assignment perm[i]). out [T, D] assigned.
  void (*moe_combine)(float* out, const float* y, const int* perm, const float* top_w, int T, int k, int D);
  // dy [T·k, D] (perm order) and dtop_w [T,k], both assigned.
  void (*moe_combine_backward)(float* dy, float* dtop_w, const float* dout, const float* y, const int* perm,
                               const float* top_w, int T, int k, int D);

  // h[T,D] = table[tokens[t]];  dtable += scatter of dh. REQUIRES: 0 ≤ tokens[t] < rows of table.
  void (*embedding_forward)(float* h, const int* tokens, const float* table, int T, int D);
  void (*embedding_backward)(float* dtable, const float* dh, const int* tokens, int T, int D);

  // fp32 LM head with log-softmax: x [T,D] (final-normed), W [V,D]. logsm [T,V] = log_softmax(x·Wᵀ)
  // (kept for backward); logp[t] = logsm[t, targets[t]] (0 where targets[t] < 0); entropy[t] =
  // −Σ_v p·log p. entropy may be null.
  void (*lm_head_forward)(float* logp, float* entropy, float* logsm, const float* x, const float* W,
                          const int* targets, int T, int D, int V);
  // From dlogp[T] = ∂L/∂logp[t]: dx [T,D] assigned, dW [V,D] +=.
  void (*lm_head_backward)(float* dx, float* dW, const float* dlogp, const float* logsm, const float* x,
                           const float* W, const int* targets, int T, int D, int V);

  // AdamW, decoupled weight decay, bias-corrected, step ≥ 1 (1-based). The gradient is read as
  // g·grad_scale (grad_scale carries global-norm clipping). Updates p, m, v in place.
  void (*adamw)(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int step, float grad_scale);
};

const Kernels& cpu_naive_kernels();
const Kernels& cpu_fast_kernels();

// The backend the model uses: cpu_fast_kernels() unless M1_KERNELS=naive. The model keeps host
// tensors, so the CUDA table is not selected here yet; a CUDA build says once what it found.
const Kernels& default_kernels();

// Sizes the CPU thread pool (base/parallel.h) to n ≥ 1 threads and pins OpenBLAS to one thread:
// large GEMMs are split over the pool, so exactly one pool ever runs (no spinning second pool).
void set_num_threads(int n);
int num_threads();

// ALiBi slopes for H heads (docs/model.md), and the per-layer decay
// λ_h = exp(−s_h·(1 − l/(L−1) + 1e−5)).
void alibi_slopes(double* s, int H);
void lightning_decay(float* lambda, int H, int layer, int num_layers);

}  // namespace m1
