// The naive reference kernels (the oracle): plain loops, templated on the scalar type so tests can
// run them in double precision for finite-difference gradient checks. Semantics are exactly those
// documented on m1::Kernels (kernels/kernels.h); the float instantiations fill cpu_naive_kernels().
#pragma once

#include <cstddef>

namespace m1::naive {

template <class T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
          int ldc);
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int N, int D, T eps);
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int N, int D);
template <class T>
void silu_forward(T* y, const T* x, size_t n);
template <class T>
void silu_backward(T* dx, const T* dy, const T* x, size_t n);
template <class T>
void swiglu_forward(T* y, const T* a, const T* b, size_t n);
template <class T>
void swiglu_backward(T* da, T* db, const T* dy, const T* a, const T* b, size_t n);
template <class T>
void sigmoid_mul_forward(T* out, const T* g, const T* y, size_t n);
template <class T>
void sigmoid_mul_backward(T* dg, T* dy, const T* dout, const T* g, const T* y, size_t n);
template <class T>
void rope_forward(T* x, int Tn, int nh, int d, int ld, int r, const int* pos, float theta);
template <class T>
void rope_backward(T* dx, int Tn, int nh, int d, int ld, int r, const int* pos, float theta);
template <class T>
void attention_forward(T* o, T* lse, const T* q, int ldq, const T* k, const T* v, int ldkv, int Tn, int H, int Hkv,
                       int d);
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* o, const T* lse, const T* q, int ldq, const T* k,
                        const T* v, int ldkv, int Tn, int H, int Hkv, int d);
template <class T>
void attention_decode(T* o, const T* q, const T* const* kcache, const T* const* vcache, const int* len, int B, int H,
                      int Hkv, int d);
template <class T>
void lightning_forward(T* o, T* state_out, const T* qkv, const T* state_in, const float* lambda, int Tn, int H, int d,
                       int block);
template <class T>
void lightning_backward(T* dqkv, const T* dout, const T* qkv, const float* lambda, int Tn, int H, int d, int block);
template <class T>
void lightning_decode(T* o, T* const* states, const T* qkv, const float* lambda, int B, int H, int d);
template <class T>
void router_forward(T* probs, int* top_idx, T* top_w, const T* logits, int Tn, int E, int k);
template <class T>
void router_backward(T* dlogits, const T* dtop_w, const T* dprobs, const T* probs, const int* top_idx, int Tn, int E,
                     int k);
template <class T>
T moe_aux_loss(T* dprobs, const T* probs, const int* top_idx, int Tn, int E, int k, T coef, T grad_scale);
void moe_dispatch(int* offsets, int* perm, const int* top_idx, int Tn, int E, int k);
template <class T>
void gather_rows(T* dst, const T* src, const int* rows, int n, int D);
template <class T>
void moe_combine(T* out, const T* y, const int* perm, const T* top_w, int Tn, int k, int D);
template <class T>
void moe_combine_backward(T* dy, T* dtop_w, const T* dout, const T* y, const int* perm, const T* top_w, int Tn, int k,
                          int D);
template <class T>
void embedding_forward(T* h, const int* tokens, const T* table, int Tn, int D);
template <class T>
void embedding_backward(T* dtable, const T* dh, const int* tokens, int Tn, int D);
template <class T>
void lm_head_forward(T* logp, T* entropy, T* logsm, const T* x, const T* W, const int* targets, int Tn, int D, int V);
template <class T>
void lm_head_backward(T* dx, T* dW, const T* dlogp, const T* logsm, const T* x, const T* W, const int* targets, int Tn,
                      int D, int V);
template <class T>
void adamw(T* p, const T* g, T* m, T* v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
           int step, float grad_scale);

}  // namespace m1::naive
