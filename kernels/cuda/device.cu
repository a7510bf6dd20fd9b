// CUDA device discovery for the backend selection in kernels/kernels.cc. Built only when nvcc is
// found (M1_HAVE_CUDA). No static initializer touches CUDA: the probe runs on first use.
#include <cuda_runtime.h>

#include <cstdio>

namespace m1 {

// Number of usable CUDA devices; 0 with the reason in `why` (at most n bytes) when none.
int cuda_device_count(char* why, int n) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    std::snprintf(why, size_t(n), "%s", cudaGetErrorString(e));
    cudaGetLastError();  // clear the sticky error (DEPS.md pitfall 15)
    return 0;
  }
  if (count == 0) std::snprintf(why, size_t(n), "no CUDA device");
  return count;
}

}  // namespace m1
