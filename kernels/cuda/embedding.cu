// Token embedding on the GPU (kernels/kernels.h): h[t] = table[tokens[t]] and dtable += scatter(dh).
// The backward is deterministic (no float atomics): the (token, t) pairs are sorted by token with a
// stable radix sort, then for each distinct token one thread per column sums its rows in token
// order and adds the sum to dtable once. REQUIRES (unchecked on the device): 0 ≤ tokens[t] < rows.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"
#include "kernels/cuda/ops.h"

namespace m1::cuda {

namespace {

__global__ void embedding_forward_kernel(float* h, const int* tokens, const float* table, int T, int D) {
  const size_t total = size_t(T) * D;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / D, c = i % D;
    h[i] = table[size_t(tokens[t]) * D + c];
  }
}

// grid (T, ceil(D / kThreads)). Block x = position i of the sorted order; only the first position
// of each run of equal tokens works: it sums dh over the run (rows t in increasing order).
__global__ void embedding_backward_kernel(float* dtable, const float* dh, const unsigned* sorted_tok,
                                          const int* sorted_t, int T, int D) {
  const int i = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= D) return;
  const unsigned tok = sorted_tok[i];
  if (i > 0 && sorted_tok[i - 1] == tok) return;
  float acc = 0.f;
  for (int j = i; j < T && sorted_tok[j] == tok; ++j) acc += dh[size_t(sorted_t[j]) * D + c];
  dtable[size_t(tok) * D + c] += acc;
}

}  // namespace

void embedding_forward(float* h, const int* tokens, const float* table, int T, int D) {
  if (T <= 0 || D <= 0) return;
  const size_t total = size_t(T) * D;
  embedding_forward_kernel<<<grid_for(total), kThreads, 0, current_stream()>>>(h, tokens, table, T, D);
  M1_CUDA_LAUNCH_CHECK();
}

void embedding_backward(float* dtable, const float* dh, const int* tokens, int T, int D) {
  if (T <= 0 || D <= 0) return;
  cudaStream_t s = current_stream();
  StreamScratch<unsigned> sorted_tok{size_t(T)};
  StreamScratch<int> t_in{size_t(T)}, sorted_t{size_t(T)};
  iota_kernel<<<grid_for(size_t(T)), kThreads, 0, s>>>(t_in.get(), T);
  M1_CUDA_LAUNCH_CHECK();
  // Token ids are non-negative, so their bits as unsigned sort in the same order.
  const unsigned* keys_in = reinterpret_cast<const unsigned*>(tokens);
  size_t temp_bytes = 0;
  M1_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, sorted_tok.get(), t_in.get(),
                                                sorted_t.get(), T, 0, 32, s));
  StreamScratch<unsigned char> temp(temp_bytes);
  M1_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys_in, sorted_tok.get(), t_in.get(),
                                                sorted_t.get(), T, 0, 32, s));
  embedding_backward_kernel<<<dim3(T, ceil_div(D, kThreads)), kThreads, 0, s>>>(dtable, dh, sorted_tok.get(),
                                                                                 sorted_t.get(), T, D);
  M1_CUDA_LAUNCH_CHECK();
}

}  // namespace m1::cuda
