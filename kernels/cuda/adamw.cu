// AdamW on the GPU, exactly the update of kernels/cpu/naive.cc: the gradient is read as
// g·grad_scale, m and v are fp32 moments, bias corrections 1 − β^step are computed on the host in
// double and rounded to float, and the weight decay is decoupled (lr·wd·p).
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"
#include "kernels/cuda/ops.h"

namespace m1::cuda {

namespace {

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2,
                             float eps, float wd, float bc1, float bc2, float grad_scale) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * grad_scale;
    const float mi = b1 * m[i] + (1.f - b1) * gi;
    const float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    const float pi = p[i];
    p[i] = pi - lr * (mhat / (sqrtf(vhat) + eps) + wd * pi);
  }
}

}  // namespace

void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2, float eps,
           float weight_decay, int step, float grad_scale) {
  if (n == 0) return;
  M1_CUDA_REQUIRE(step >= 1, "adamw: step is 1-based");
  const float bc1 = float(1.0 - std::pow(double(beta1), double(step)));
  const float bc2 = float(1.0 - std::pow(double(beta2), double(step)));
  adamw_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                                               bc1, bc2, grad_scale);
  M1_CUDA_LAUNCH_CHECK();
}

}  // namespace m1::cuda
