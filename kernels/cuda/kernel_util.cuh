// Small helpers for the element-wise, norm, MoE, LM-head, sampling and attention kernels (gemm.cu,
// norm.cu, embedding.cu, lm_head.cu, moe.cu, adamw.cu, sampling.cu, attention.cu, lightning.cu): stream-ordered
// scratch, launch sizes, deterministic warp/block reductions, a warp-level bf16 tensor-core tile product, and a
// host-side precondition check. C++17, nvcc only.
// Everything is in an anonymous namespace, so each .cu file has its own copy (no ODR coupling with
// other helpers of the backend).
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include <mma.h>

#include "kernels/cuda/common.cuh"

// A violated REQUIRES of a CUDA op (bad shape, k > E, ...): a broken invariant of the caller, so
// abort with file:line and the message, as the CPU backends' M1_CHECK does.
#define M1_CUDA_REQUIRE(cond, msg)                                                          \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "%s:%d: REQUIRES failed: %s (%s)\n", __FILE__, __LINE__, msg, #cond); \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

namespace m1 {
namespace {

// Device scratch of n values of T, allocated and freed in stream order on the calling thread's
// stream (cudaMallocAsync / cudaFreeAsync): valid for every kernel enqueued on that stream while
// the object lives. Never null (n = 0 allocates one element).
template <class T>
class StreamScratch {
 public:
  explicit StreamScratch(size_t n) : stream_(current_stream()) {
    M1_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p_), (n ? n : 1) * sizeof(T), stream_));
  }
  ~StreamScratch() { M1_CUDA_CHECK(cudaFreeAsync(p_, stream_)); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  T* get() const { return p_; }

 private:
  cudaStream_t stream_;
  T* p_ = nullptr;
};

constexpr int kThreads = 256;  // default block size (a multiple of 32: the reductions need it)

// Blocks for a grid-stride loop over n elements with kThreads threads each (≥ 1, capped).
inline int grid_for(size_t n) {
  const size_t b = (n + kThreads - 1) / kThreads;
  return int(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) of v over the block, returned to every thread. Deterministic: a fixed shuffle tree
// per warp, then every warp reduces the per-warp partials in the same order. REQUIRES: blockDim.x
// a multiple of 32 and ≤ 1024, and every thread of the block calls it (it holds __syncthreads).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // a previous call may still be reading `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_sum(lane < nwarps ? partial[lane] : 0.f);
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_max(lane < nwarps ? partial[lane] : -INFINITY);
}

// Minimum of v over the block, returned to every thread (same REQUIRES as block_sum).
__device__ __forceinline__ int block_min_int(int v) {
  __shared__ int partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < nwarps ? partial[lane] : 0x7fffffff;
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// First index i in [0, n) with a[i] ≥ x (n when none); a non-decreasing.
template <class T>
__device__ __forceinline__ int lower_bound_dev(const T* a, int n, T x) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (a[mid] < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// C = A·B for one warp on tensor cores: C is 16 × 16·NT fp32 (row stride ldc, row-major), A is
// 16 × 16·KT bf16 (row stride lda, row-major), B is 16·KT × 16·NT bf16. LayoutB is
// nvcuda::wmma::row_major (B stored row-major, row stride ldb: tile (kt, nt) at B + kt·16·ldb + nt·16)
// or nvcuda::wmma::col_major (Bᵀ stored row-major, as K in Q·Kᵀ: tile (kt, nt) at B + nt·16·ldb + kt·16).
// Each 16×16 output tile starts from 0 and sums its KT products in kt order (fp32 accumulate),
// then is stored; C is overwritten, not accumulated into. REQUIRES: all 32 lanes of the warp call
// it with the same arguments; the pointer/stride alignment rules of wmma::load/store_matrix_sync.
template <int NT, int KT, class LayoutB>
__device__ __forceinline__ void warp_tile_mma(const __nv_bfloat16* A, int lda, const __nv_bfloat16* B, int ldb,
                                              float* C, int ldc) {
  namespace wmma = nvcuda::wmma;
  static_assert(std::is_same_v<LayoutB, wmma::row_major> || std::is_same_v<LayoutB, wmma::col_major>,
                "LayoutB is wmma::row_major or wmma::col_major");
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kt = 0; kt < KT; ++kt) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LayoutB> fb;
      wmma::load_matrix_sync(fa, A + kt * 16, lda);
      if constexpr (std::is_same_v<LayoutB, wmma::row_major>)
        wmma::load_matrix_sync(fb, B + kt * 16 * ldb + nt * 16, ldb);
      else
        wmma::load_matrix_sync(fb, B + nt * 16 * ldb + kt * 16, ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(C + nt * 16, acc, ldc, wmma::mem_row_major);
  }
}

__global__ void iota_kernel(int* v, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v[i] = i;
}

}  // namespace
}  // namespace m1
