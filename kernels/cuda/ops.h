// The CUDA kernels one by one (device pointers; conventions of kernels/cuda/cuda.h). Ops that are
// also in the Kernels table keep its exact signature and contract (kernels/kernels.h); the table
// from cuda_kernels() is filled with them (kernels/cuda/table.cu). The extra ops below the table
// ones exist only on the GPU: bf16 GEMMs, expert GEMMs, device sampling, precision conversion.
// bf16 tensors are passed as uint16_t bit patterns so host C++20 code needs no CUDA header.
// Files: runtime.cu, gemm.cu, norm.cu (rmsnorm, elementwise, rope), embedding.cu, lm_head.cu,
// moe.cu, adamw.cu, sampling.cu, attention.cu, lightning.cu, nccl.cu.
#pragma once

#include <cstddef>
#include <cstdint>

namespace m1::cuda {

// ---- the Kernels table ops (same signatures and contracts as kernels.h) ----
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);  // cuBLASLt, fp32 compute (no TF32)
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int D, float eps);
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd,
                      int N, int D);
void silu_forward(float* y, const float* x, size_t n);
void silu_backward(float* dx, const float* dy, const float* x, size_t n);
void swiglu_forward(float* y, const float* a, const float* b, size_t n);
void swiglu_backward(float* da, float* db, const float* dy, const float* a, const float* b, size_t n);
void sigmoid_mul_forward(float* out, const float* g, const float* y, size_t n);
void sigmoid_mul_backward(float* dg, float* dy, const float* dout, const float* g, const float* y, size_t n);
void rope_forward(float* x, int T, int nh, int d, int ld, int r, const int* pos, float theta);
void rope_backward(float* dx, int T, int nh, int d, int ld, int r, const int* pos, float theta);
void attention_forward(float* o, float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,
                       int T, int H, int Hkv, int d);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* o, const float* lse,
                        const float* q, int ldq, const float* k, const float* v, int ldkv, int T, int H, int Hkv,
                        int d);
void attention_decode(float* o, const float* q, const float* const* kcache, const float* const* vcache,
                      const int* len, int B, int H, int Hkv, int d);
void lightning_forward(float* o, float* state_out, const float* qkv, const float* state_in, const float* lambda,
                       int T, int H, int d, int block);
void lightning_backward(float* dqkv, const float* dout, const float* qkv, const float* lambda, int T, int H, int d,
                        int block);
void lightning_decode(float* o, float* const* states, const float* qkv, const float* lambda, int B, int H, int d);
void router_forward(float* probs, int* top_idx, float* top_w, const float* logits, int T, int E, int k);
void router_backward(float* dlogits, const float* dtop_w, const float* dprobs, const float* probs,
                     const int* top_idx, int T, int E, int k);
float moe_aux_loss(float* dprobs, const float* probs, const int* top_idx, int T, int E, int k, float coef,
                   float grad_scale);
void moe_dispatch(int* offsets, int* perm, const int* top_idx, int T, int E, int k);
void gather_rows(float* dst, const float* src, const int* rows, int n, int D);
void moe_combine(float* out, const float* y, const int* perm, const float* top_w, int T, int k, int D);
void moe_combine_backward(float* dy, float* dtop_w, const float* dout, const float* y, const int* perm,
                          const float* top_w, int T, int k, int D);
void embedding_forward(float* h, const int* tokens, const float* table, int T, int D);
void embedding_backward(float* dtable, const float* dh, const int* tokens, int T, int D);
void lm_head_forward(float* logp, float* entropy, float* logsm, const float* x, const float* W, const int* targets,
                     int T, int D, int V);
void lm_head_backward(float* dx, float* dW, const float* dlogp, const float* logsm, const float* x, const float* W,
                      const int* targets, int T, int D, int V);
void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2, float eps,
           float weight_decay, int step, float grad_scale);

// ---- GPU-only ops ----
// bf16 ↔ fp32 (round to nearest even).
void to_bf16(uint16_t* dst, const float* src, size_t n);
void to_f32(float* dst, const uint16_t* src, size_t n);
// C[M,N] (fp32) = alpha·op(A)·op(B) + beta·C with A, B in bf16, fp32 accumulation (cuBLASLt).
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A, int lda,
               const uint16_t* B, int ldb, float beta, float* C, int ldc);
// Expert GEMMs after moe_dispatch: for every expert e, rows [off[e], off[e+1]) of x (bf16 [R, K],
// R = off[E]) times W_e ᵀ (W bf16 [E, N, K], expert e's [N, K] block) into y (fp32 [R, N]).
// offsets_host is the host copy of offsets (E+1 values) so the launch can size each group.
void expert_gemm_bf16(float* y, const uint16_t* x, const uint16_t* W, const int* offsets_host, int E, int N,
                      int K);
// Lightning attention chunked forward with the intra-block products on tensor cores (bf16 inputs,
// fp32 accumulation, fp32 inter-block state); same contract as lightning_forward otherwise.
void lightning_forward_bf16(float* o, float* state_out, const uint16_t* qkv, const float* state_in,
                            const float* lambda, int T, int H, int d, int block);
// Causal GQA attention forward with bf16 q, k, v on tensor cores, fp32 accumulation and lse;
// o fp32. Same layout and contract as attention_forward.
void attention_forward_bf16(float* o, float* lse, const uint16_t* q, int ldq, const uint16_t* k,
                            const uint16_t* v, int ldkv, int T, int H, int Hkv, int d);
// Sampling on the device, one token per row of logits [B, V]: softmax(logits / temperature),
// restricted to the top_k most probable tokens (top_k ≤ 0: all) and then to the smallest prefix
// (by descending probability) whose mass reaches top_p (top_p ≥ 1: all); the kept mass is
// renormalised. tokens[B] and logp[B] (the log-probability of the chosen token under that
// sampling distribution — tempered, filtered, renormalised — the behaviour logprob the generator
// records, as model/sampling.h's sample_token does; 0 when greedy).
// temperature ≤ 0 means greedy. Deterministic for a given (seed, offset): row b uses the
// counter-based stream (seed, offset + b).
void sample(int* tokens, float* logp, const float* logits, int B, int V, float temperature, float top_p,
            int top_k, uint64_t seed, uint64_t offset);

}  // namespace m1::cuda
