// Device discovery, memory, transfers and per-thread streams for the CUDA backend (cuda.h).
// No static initializer touches CUDA: everything runs on first use, so a GPU-less
// machine still loads it and takes the CPU path.
#include <cstdio>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda.h"

namespace m1 {

int cuda_device_count(char* why, int n) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    std::snprintf(why, size_t(n), "%s", cudaGetErrorString(e));
    cudaGetLastError();  // no GPU: cudart fails here without aborting; clear the error
    return 0;
  }
  if (count == 0) std::snprintf(why, size_t(n), "no CUDA device");
  return count;
}

namespace {

// One non-blocking stream per host thread, destroyed with the thread.
struct ThreadStream {
  cudaStream_t s = nullptr;
  ~ThreadStream() {
    if (s) cudaStreamDestroy(s);  // unchecked: may run after the driver shut down at exit
  }
};

}  // namespace

cudaStream_t current_stream() {
  thread_local ThreadStream ts;
  if (!ts.s) M1_CUDA_CHECK(cudaStreamCreateWithFlags(&ts.s, cudaStreamNonBlocking));
  return ts.s;
}

void* cuda_stream() { return current_stream(); }

void* cuda_alloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    std::fprintf(stderr, "cuda_alloc(%zu bytes): %s\n", bytes, cudaGetErrorString(e));
    std::abort();
  }
  return p;
}

void cuda_free(void* p) {
  if (p) M1_CUDA_CHECK(cudaFree(p));
}

void cuda_copy_to_device(void* dst, const void* src, size_t bytes) {
  cudaStream_t s = current_stream();
  M1_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  M1_CUDA_CHECK(cudaStreamSynchronize(s));
}

void cuda_copy_to_host(void* dst, const void* src, size_t bytes) {
  cudaStream_t s = current_stream();
  M1_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  M1_CUDA_CHECK(cudaStreamSynchronize(s));
}

void cuda_copy_device(void* dst, const void* src, size_t bytes) {
  M1_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream()));
}

namespace {
__global__ void fill_nan_kernel(float* p, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  size_t stride = size_t(gridDim.x) * blockDim.x;
  for (; i < n; i += stride) p[i] = __int_as_float(0x7fc00000);
}
}  // namespace

void cuda_fill_nan(float* p, size_t n) {
  if (n == 0) return;
  int blocks = int(n / 256 + 1 < 4096 ? n / 256 + 1 : 4096);
  fill_nan_kernel<<<blocks, 256, 0, current_stream()>>>(p, n);
  M1_CUDA_LAUNCH_CHECK();
}

void cuda_synchronize() { M1_CUDA_CHECK(cudaStreamSynchronize(current_stream())); }

std::string cuda_device_description() {
  int dev = 0;
  M1_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p;
  M1_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  int driver = 0;
  M1_CUDA_CHECK(cudaDriverGetVersion(&driver));
  char buf[320];
  std::snprintf(buf, sizeof buf, "%.200s, sm_%d%d, %.0f GiB, %d SMs, driver %d.%d", p.name, p.major, p.minor,
                double(p.totalGlobalMem) / (1u << 30), p.multiProcessorCount, driver / 1000,
                (driver % 1000) / 10);
  return buf;
}

}  // namespace m1
