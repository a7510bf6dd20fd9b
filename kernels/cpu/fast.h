// The fast CPU kernels (internal to kernels/): same contracts as m1::Kernels (kernels/kernels.h).
// fast.cc holds GEMM, elementwise, MoE, embedding, LM head and AdamW; fast_attention.cc the
// softmax and lightning attention kernels. cpu_fast_kernels() assembles the table.
#pragma once

#include <cstddef>

namespace m1::fast {

void attention_forward(float* o, float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv, int T,
                       int H, int Hkv, int d);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* o, const float* lse,
                        const float* q, int ldq, const float* k, const float* v, int ldkv, int T, int H, int Hkv,
                        int d);
void attention_decode(float* o, const float* q, const float* const* kcache, const float* const* vcache, const int* len,
                      int B, int H, int Hkv, int d);
void lightning_forward(float* o, float* state_out, const float* qkv, const float* state_in, const float* lambda, int T,
                       int H, int d, int block);
void lightning_backward(float* dqkv, const float* dout, const float* qkv, const float* lambda, int T, int H, int d,
                        int block);
void lightning_decode(float* o, float* const* states, const float* qkv, const float* lambda, int B, int H, int d);

}  // namespace m1::fast
