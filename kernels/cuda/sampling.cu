// Device sampling (kernels/cuda/ops.h, sample): one token per row of logits [B, V].
//   temperature ≤ 0: greedy, the argmax with ties to the lower id; logp = 0 (the tempered
//       distribution is then a point mass, as in model/sampling.cc).
//   otherwise, per row: the logits are sorted descending with a stable segmented radix sort (ids
//       ascending within equal logits: the tie rule of model/sampling.cc), one block computes the
//       inclusive cumulative masses w_j = exp(z_j − z_max), z = logit / temperature, in place of
//       the sorted keys, then
//         L = top_k (top_k ≤ 0 or ≥ V: V), further cut to the ids of positive mass;
//         top_p < 1: n = the shortest prefix of those L with cum ≥ top_p·cum[L−1]; else n = L;
//         u = curand_uniform of Philox (seed, subsequence offset + b, offset 0) ∈ (0, 1];
//         the token is the first j < n with cum[j] ≥ u·cum[n−1]  (probability w_j / cum[n−1]);
//         logp = z_tok − z_max − log cum[n−1]: the log-probability under the distribution the token
//         was drawn from (tempered, top-k/top-p applied, renormalised), as model/sampling.cc records.
// Rows are processed in chunks of ≤ 2^24 logits so the sort scratch stays bounded.
#include <curand_kernel.h>

#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"
#include "kernels/cuda/ops.h"

namespace m1::cuda {

namespace {

constexpr size_t kMaxChunkItems = size_t(1) << 24;

// Row b: tokens[b] = the first index of the maximum logit; logp[b] = 0.  grid B, block kThreads.
__global__ void __launch_bounds__(kThreads) argmax_kernel(int* tokens, float* logp, const float* logits, int V) {
  __shared__ float s_val[kThreads];
  __shared__ int s_idx[kThreads];
  const float* row = logits + size_t(blockIdx.x) * V;
  float best = -INFINITY;
  int bi = -1;
  for (int v = threadIdx.x; v < V; v += kThreads)
    if (bi < 0 || row[v] > best) {
      best = row[v];
      bi = v;
    }
  s_val[threadIdx.x] = best;
  s_idx[threadIdx.x] = bi;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) {
      const float ov = s_val[threadIdx.x + half];
      const int oi = s_idx[threadIdx.x + half];
      const int mi = s_idx[threadIdx.x];
      const bool take = oi >= 0 && (mi < 0 || ov > s_val[threadIdx.x] || (ov == s_val[threadIdx.x] && oi < mi));
      if (take) {
        s_val[threadIdx.x] = ov;
        s_idx[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    tokens[blockIdx.x] = s_idx[0] < 0 ? 0 : s_idx[0];
    logp[blockIdx.x] = 0.f;
  }
}

// The first j < n with cum[j] ≥ thr (n when none), over the whole block.
__device__ int first_at_least(const float* cum, int n, float thr) {
  int first = n;
  for (int j = threadIdx.x; j < n; j += kThreads)
    if (cum[j] >= thr) {
      first = j;
      break;  // j increases along this thread's stride
    }
  return block_min_int(first);
}

using BlockScan = cub::BlockScan<float, kThreads>;

// Row b of the chunk: `sorted` holds its logits in descending order (overwritten by the
// cumulative masses), `ids` the matching token ids; `logits` is the unsorted row.
// grid rows of the chunk, block kThreads.
__global__ void __launch_bounds__(kThreads)
    sample_rows_kernel(int* tokens, float* logp, const float* logits, float* sorted, const int* ids, int V,
                       float temperature, float top_p, int top_k, unsigned long long seed, unsigned long long offset) {
  __shared__ typename BlockScan::TempStorage scan_tmp;
  __shared__ float s_carry;
  __shared__ float s_u;
  const int b = blockIdx.x;
  float* cum = sorted + size_t(b) * V;
  const int* row_ids = ids + size_t(b) * V;
  const float z0 = cum[0] / temperature;
  if (threadIdx.x == 0) {
    curandStatePhilox4_32_10_t st;
    curand_init(seed, offset + b, 0, &st);
    s_u = curand_uniform(&st);  // (0, 1]
  }
  __syncthreads();  // every thread has read cum[0] before it is overwritten

  // In-place inclusive scan of w_j in chunks of kThreads; n_pos = the first j with w_j = 0 (the
  // sorted order puts every zero mass after every positive one).
  float carry = 0.f;
  int n_pos = V;
  for (int base = 0; base < V; base += kThreads) {
    const int j = base + threadIdx.x;
    const float w = j < V ? expf(cum[j] / temperature - z0) : 0.f;
    if (j < V && w == 0.f && j < n_pos) n_pos = j;
    float inc;
    BlockScan(scan_tmp).InclusiveSum(w, inc);
    const float c = carry + inc;  // ≥ carry: the cumulative masses never decrease across chunks
    if (j < V) cum[j] = c;
    if (threadIdx.x == kThreads - 1) s_carry = c;
    __syncthreads();
    carry = s_carry;
    __syncthreads();  // scan_tmp and s_carry are reused by the next chunk
  }

  n_pos = block_min_int(n_pos);  // ≥ 1: w_0 = 1

  int L = (top_k > 0 && top_k < V) ? top_k : V;
  if (L > n_pos) L = n_pos;  // ids of zero mass are never drawn
  int n = L;
  if (top_p < 1.f) {
    const int j = first_at_least(cum, L, top_p * cum[L - 1]);
    n = j < L ? j + 1 : L;
  }
  const float target = s_u * cum[n - 1];
  int j = first_at_least(cum, n, target);
  if (j >= n) j = n - 1;  // unreachable (u ≤ 1), kept as a guard
  if (threadIdx.x == 0) {
    const int tok = row_ids[j];
    tokens[b] = tok;
    logp[b] = (logits[size_t(b) * V + tok] / temperature - z0) - logf(cum[n - 1]);
  }
}

__global__ void fill_ids_kernel(int* ids, int* seg, int rows, int V) {
  const size_t total = size_t(rows) * V;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x)
    ids[i] = int(i % V);
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i <= size_t(rows); i += size_t(gridDim.x) * blockDim.x)
    seg[i] = int(i * V);
}

}  // namespace

void sample(int* tokens, float* logp, const float* logits, int B, int V, float temperature, float top_p, int top_k,
            uint64_t seed, uint64_t offset) {
  if (B <= 0) return;
  M1_CUDA_REQUIRE(V >= 1, "sample: need V ≥ 1");
  cudaStream_t s = current_stream();
  if (!(temperature > 0.f)) {
    argmax_kernel<<<B, kThreads, 0, s>>>(tokens, logp, logits, V);
    M1_CUDA_LAUNCH_CHECK();
    return;
  }
  const size_t cap = kMaxChunkItems / size_t(V);
  const int chunk = int(cap < 1 ? 1 : (cap < size_t(B) ? cap : size_t(B)));
  const int last = B - (B - 1) / chunk * chunk;  // rows of the last chunk
  StreamScratch<float> sorted(size_t(chunk) * V);
  StreamScratch<int> ids_in(size_t(chunk) * V), ids_out(size_t(chunk) * V), seg(size_t(chunk) + 1);
  fill_ids_kernel<<<grid_for(size_t(chunk) * V), kThreads, 0, s>>>(ids_in.get(), seg.get(), chunk, V);
  M1_CUDA_LAUNCH_CHECK();

  size_t temp_bytes = 0;
  for (int rows : {chunk, last}) {
    size_t bytes = 0;
    M1_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, bytes, logits, sorted.get(), ids_in.get(), ids_out.get(), rows * V, rows, seg.get(), seg.get() + 1,
        0, 32, s));
    if (bytes > temp_bytes) temp_bytes = bytes;
  }
  StreamScratch<unsigned char> temp(temp_bytes);
  for (int b0 = 0; b0 < B; b0 += chunk) {
    const int rows = B - b0 < chunk ? B - b0 : chunk;
    const float* chunk_logits = logits + size_t(b0) * V;
    size_t bytes = temp_bytes;
    M1_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(temp.get(), bytes, chunk_logits, sorted.get(),
                                                                     ids_in.get(), ids_out.get(), rows * V, rows,
                                                                     seg.get(), seg.get() + 1, 0, 32, s));
    sample_rows_kernel<<<rows, kThreads, 0, s>>>(tokens + b0, logp + b0, chunk_logits, sorted.get(), ids_out.get(), V,
                                                 temperature, top_p, top_k, seed, offset + uint64_t(b0));
    M1_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace m1::cuda
