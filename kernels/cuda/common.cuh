// Internal helpers shared by kernels/cuda/*.cu (C++17, nvcc). Not included by host C++20 code.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

// Aborts with file:line and CUDA's message when a runtime call fails (docs/gpu.md: every CUDA call
// is checked; a failing call here is a broken invariant, not bad input).
#define M1_CUDA_CHECK(expr)                                                                     \
  do {                                                                                          \
    cudaError_t m1_err_ = (expr);                                                               \
    if (m1_err_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d: CUDA error %s: %s (%s)\n", __FILE__, __LINE__,               \
                   cudaGetErrorName(m1_err_), cudaGetErrorString(m1_err_), #expr);              \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

// Checks the launch of the kernel just enqueued (configuration errors surface here).
#define M1_CUDA_LAUNCH_CHECK() M1_CUDA_CHECK(cudaGetLastError())

namespace m1 {

// The calling thread's stream (kernels/cuda/runtime.cu).
cudaStream_t current_stream();

inline int ceil_div(long long a, long long b) { return int((a + b - 1) / b); }

}  // namespace m1
