// The CUDA Kernels table (kernels/cuda/cuda.h): every slot of kernels/kernels.h filled with its
// m1::cuda op (kernels/cuda/ops.h). Built on the first call after a device was found, so no static
// initializer touches CUDA (a GPU-less machine still loads it).
#include <string>

#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops.h"

namespace m1 {

namespace {

Kernels make_cuda_kernels() {
  Kernels k{};
  k.name = "cuda";
  k.gemm = cuda::gemm;
  k.rmsnorm_forward = cuda::rmsnorm_forward;
  k.rmsnorm_backward = cuda::rmsnorm_backward;
  k.silu_forward = cuda::silu_forward;
  k.silu_backward = cuda::silu_backward;
  k.swiglu_forward = cuda::swiglu_forward;
  k.swiglu_backward = cuda::swiglu_backward;
  k.sigmoid_mul_forward = cuda::sigmoid_mul_forward;
  k.sigmoid_mul_backward = cuda::sigmoid_mul_backward;
  k.rope_forward = cuda::rope_forward;
  k.rope_backward = cuda::rope_backward;
  k.attention_forward = cuda::attention_forward;
  k.attention_backward = cuda::attention_backward;
  k.attention_decode = cuda::attention_decode;
  k.lightning_forward = cuda::lightning_forward;
  k.lightning_backward = cuda::lightning_backward;
  k.lightning_decode = cuda::lightning_decode;
  k.router_forward = cuda::router_forward;
  k.router_backward = cuda::router_backward;
  k.moe_aux_loss = cuda::moe_aux_loss;
  k.moe_dispatch = cuda::moe_dispatch;
  k.gather_rows = cuda::gather_rows;
  k.moe_combine = cuda::moe_combine;
  k.moe_combine_backward = cuda::moe_combine_backward;
  k.embedding_forward = cuda::embedding_forward;
  k.embedding_backward = cuda::embedding_backward;
  k.lm_head_forward = cuda::lm_head_forward;
  k.lm_head_backward = cuda::lm_head_backward;
  k.adamw = cuda::adamw;
  return k;
}

}  // namespace

const Kernels* cuda_kernels(std::string* why) {
  char reason[256] = "";
  if (cuda_device_count(reason, int(sizeof reason)) == 0) {
    if (why) *why = reason;
    return nullptr;
  }
  static const Kernels table = make_cuda_kernels();
  return &table;
}

}  // namespace m1
