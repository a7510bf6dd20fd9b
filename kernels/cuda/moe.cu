// MoE routing on the GPU (kernels/kernels.h; math and summation order of kernels/cpu/naive.cc).
//   router_forward/backward: one thread per token, sequential over E (E and k are small), so the
//       fp32 softmax, the top-k tie rule and the sums follow naive.cc exactly.
//   moe_aux_loss: per-expert block reductions, then a one-thread finish; synchronises to return.
//   moe_dispatch: stable cub radix sort of (expert id → t·k + slot), offsets by binary search.
//   gather_rows / moe_combine / moe_combine_backward: plain element-wise kernels; combine sums
//       each token's slots in slot order through the inverse permutation.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"
#include "kernels/cuda/ops.h"

namespace m1::cuda {

namespace {

// probs = softmax(logits) per token; top-k by repeated selection in the order (p desc, index
// asc): step s takes the largest p among the experts strictly after the previous pick in that
// order, which is the not-yet-taken set of naive.cc's selection (strict '>' keeps the lower index).
__global__ void router_forward_kernel(float* probs, int* top_idx, float* top_w, const float* logits, int T, int E,
                                      int k) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= T) return;
  const float* lt = logits + size_t(t) * E;
  float* pt = probs + size_t(t) * E;
  float mx = -INFINITY;
  for (int e = 0; e < E; ++e) mx = fmaxf(mx, lt[e]);
  float sum = 0.f;
  for (int e = 0; e < E; ++e) {
    const float p = expf(lt[e] - mx);
    pt[e] = p;
    sum += p;
  }
  for (int e = 0; e < E; ++e) pt[e] /= sum;
  int* it = top_idx + size_t(t) * k;
  int prev = -1;
  float pprev = 0.f, S = 0.f;
  for (int s = 0; s < k; ++s) {
    int best = -1;
    float bp = 0.f;
    for (int e = 0; e < E; ++e) {
      const float pe = pt[e];
      const bool after_prev = prev < 0 || pe < pprev || (pe == pprev && e > prev);
      if (after_prev && (best < 0 || pe > bp)) {
        best = e;
        bp = pe;
      }
    }
    it[s] = best;
    S += bp;
    prev = best;
    pprev = bp;
  }
  for (int s = 0; s < k; ++s) top_w[size_t(t) * k + s] = pt[it[s]] / S;
}

// dp = dprobs + (dw_s − Σ dw·w)/S on the top slots; dlogit = p ⊙ (dp − Σ p·dp). One thread per token.
__global__ void router_backward_kernel(float* dlogits, const float* dtop_w, const float* dprobs, const float* probs,
                                       const int* top_idx, int T, int E, int k) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= T) return;
  const float* pt = probs + size_t(t) * E;
  const int* it = top_idx + size_t(t) * k;
  const float* dwt = dtop_w + size_t(t) * k;
  float S = 0.f;
  for (int s = 0; s < k; ++s) S += pt[it[s]];
  float dot = 0.f;
  for (int s = 0; s < k; ++s) dot += dwt[s] * (pt[it[s]] / S);
  auto dp = [&](int e) {
    float v = dprobs ? dprobs[size_t(t) * E + e] : 0.f;
    for (int s = 0; s < k; ++s)
      if (it[s] == e) v += (dwt[s] - dot) / S;
    return v;
  };
  float pdp = 0.f;
  for (int e = 0; e < E; ++e) pdp += pt[e] * dp(e);
  for (int e = 0; e < E; ++e) dlogits[size_t(t) * E + e] = pt[e] * (dp(e) - pdp);
}

// Block e: f[e] = (#slots on e)/(T·k), P[e] = Σ_t probs[t, e].  grid E, block kThreads.
__global__ void aux_stats_kernel(float* f, float* P, const float* probs, const int* top_idx, int T, int E, int k) {
  const int e = blockIdx.x;
  const size_t n = size_t(T) * k;
  float cnt = 0.f, psum = 0.f;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) cnt += top_idx[i] == e ? 1.f : 0.f;
  for (int t = threadIdx.x; t < T; t += blockDim.x) psum += probs[size_t(t) * E + e];
  cnt = block_sum(cnt);
  psum = block_sum(psum);
  if (threadIdx.x == 0) {
    f[e] = cnt / (float(T) * float(k));
    P[e] = psum;
  }
}

__global__ void aux_loss_kernel(float* loss, const float* f, const float* P, int T, int E, float coef) {
  float l = 0.f;
  for (int e = 0; e < E; ++e) l += f[e] * (P[e] / float(T));
  *loss = l * (coef * float(E));
}

__global__ void aux_dprobs_kernel(float* dprobs, const float* f, int T, int E, float coef, float grad_scale) {
  const size_t total = size_t(T) * E;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x)
    dprobs[i] = grad_scale * coef * float(E) * f[i % E] / float(T);
}

// offsets[e] = first position of expert e in the sorted ids (n when none), e ∈ [0, E].
__global__ void offsets_kernel(int* offsets, const unsigned* sorted, int n, int E) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e <= E) offsets[e] = lower_bound_dev(sorted, n, unsigned(e));
}

__global__ void gather_rows_kernel(float* dst, const float* src, const int* rows, int n, int D) {
  const size_t total = size_t(n) * D;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = src[size_t(rows[i / D]) * D + i % D];
}

// inv[perm[i]] = i: the row of y that holds assignment a = t·k + slot.
__global__ void inverse_perm_kernel(int* inv, const int* perm, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) inv[perm[i]] = i;
}

__global__ void combine_kernel(float* out, const float* y, const int* inv, const float* top_w, int T, int k, int D) {
  const size_t total = size_t(T) * D;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / D, c = i % D;
    float acc = 0.f;
    for (int s = 0; s < k; ++s) {
      const size_t a = t * k + s;
      acc += top_w[a] * y[size_t(inv[a]) * D + c];
    }
    out[i] = acc;
  }
}

// Row i of y (assignment a = perm[i], token t = a / k): dy[i] = top_w[a]·dout[t];
// dtop_w[a] = dout[t]·y[i].  grid T·k, block kThreads.
__global__ void combine_backward_kernel(float* dy, float* dtop_w, const float* dout, const float* y, const int* perm,
                                        const float* top_w, int k, int D) {
  const size_t i = blockIdx.x;
  const int a = perm[i];
  const float w = top_w[a];
  const float* go = dout + size_t(a / k) * D;
  const float* yr = y + i * D;
  float acc = 0.f;
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    dy[i * D + c] = w * go[c];
    acc += go[c] * yr[c];
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) dtop_w[a] = acc;
}

}  // namespace

void router_forward(float* probs, int* top_idx, float* top_w, const float* logits, int T, int E, int k) {
  if (T <= 0) return;
  M1_CUDA_REQUIRE(E >= 1 && k >= 1 && k <= E, "router_forward: need 1 ≤ k ≤ E");
  router_forward_kernel<<<ceil_div(T, 128), 128, 0, current_stream()>>>(probs, top_idx, top_w, logits, T, E, k);
  M1_CUDA_LAUNCH_CHECK();
}

void router_backward(float* dlogits, const float* dtop_w, const float* dprobs, const float* probs,
                     const int* top_idx, int T, int E, int k) {
  if (T <= 0) return;
  M1_CUDA_REQUIRE(E >= 1 && k >= 1 && k <= E, "router_backward: need 1 ≤ k ≤ E");
  router_backward_kernel<<<ceil_div(T, 128), 128, 0, current_stream()>>>(dlogits, dtop_w, dprobs, probs, top_idx, T,
                                                                         E, k);
  M1_CUDA_LAUNCH_CHECK();
}

float moe_aux_loss(float* dprobs, const float* probs, const int* top_idx, int T, int E, int k, float coef,
                   float grad_scale) {
  if (T <= 0 || E <= 0) return 0.f;
  M1_CUDA_REQUIRE(k >= 1, "moe_aux_loss: need k ≥ 1");
  cudaStream_t s = current_stream();
  StreamScratch<float> stats(size_t(2) * E + 1);  // f[E] | P[E] | loss
  float* f = stats.get();
  float* P = f + E;
  float* loss_dev = P + E;
  aux_stats_kernel<<<E, kThreads, 0, s>>>(f, P, probs, top_idx, T, E, k);
  M1_CUDA_LAUNCH_CHECK();
  aux_loss_kernel<<<1, 1, 0, s>>>(loss_dev, f, P, T, E, coef);
  M1_CUDA_LAUNCH_CHECK();
  if (dprobs) {
    aux_dprobs_kernel<<<grid_for(size_t(T) * E), kThreads, 0, s>>>(dprobs, f, T, E, coef, grad_scale);
    M1_CUDA_LAUNCH_CHECK();
  }
  float loss = 0.f;
  M1_CUDA_CHECK(cudaMemcpyAsync(&loss, loss_dev, sizeof loss, cudaMemcpyDeviceToHost, s));
  M1_CUDA_CHECK(cudaStreamSynchronize(s));
  return loss;
}

void moe_dispatch(int* offsets, int* perm, const int* top_idx, int T, int E, int k) {
  M1_CUDA_REQUIRE(E >= 1 && T >= 0 && k >= 0, "moe_dispatch: need E ≥ 1, T ≥ 0, k ≥ 0");
  cudaStream_t s = current_stream();
  const int n = T * k;
  StreamScratch<unsigned> sorted{size_t(n)};
  if (n > 0) {
    StreamScratch<int> ids{size_t(n)};
    iota_kernel<<<grid_for(size_t(n)), kThreads, 0, s>>>(ids.get(), n);
    M1_CUDA_LAUNCH_CHECK();
    int end_bit = 1;  // enough bits for every id < E
    while (end_bit < 31 && (1u << end_bit) < unsigned(E)) ++end_bit;
    const unsigned* keys_in = reinterpret_cast<const unsigned*>(top_idx);  // ids are in [0, E)
    size_t temp_bytes = 0;
    M1_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, sorted.get(), ids.get(), perm, n, 0,
                                                  end_bit, s));
    StreamScratch<unsigned char> temp(temp_bytes);
    M1_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, keys_in, sorted.get(), ids.get(), perm, n,
                                                  0, end_bit, s));
  }
  offsets_kernel<<<ceil_div(E + 1, kThreads), kThreads, 0, s>>>(offsets, sorted.get(), n, E);
  M1_CUDA_LAUNCH_CHECK();
}

void gather_rows(float* dst, const float* src, const int* rows, int n, int D) {
  if (n <= 0 || D <= 0) return;
  gather_rows_kernel<<<grid_for(size_t(n) * D), kThreads, 0, current_stream()>>>(dst, src, rows, n, D);
  M1_CUDA_LAUNCH_CHECK();
}

void moe_combine(float* out, const float* y, const int* perm, const float* top_w, int T, int k, int D) {
  if (T <= 0 || D <= 0) return;
  cudaStream_t s = current_stream();
  const int n = T * k;
  StreamScratch<int> inv{size_t(n)};
  if (n > 0) {
    inverse_perm_kernel<<<grid_for(size_t(n)), kThreads, 0, s>>>(inv.get(), perm, n);
    M1_CUDA_LAUNCH_CHECK();
  }
  combine_kernel<<<grid_for(size_t(T) * D), kThreads, 0, s>>>(out, y, inv.get(), top_w, T, k, D);
  M1_CUDA_LAUNCH_CHECK();
}

void moe_combine_backward(float* dy, float* dtop_w, const float* dout, const float* y, const int* perm,
                          const float* top_w, int T, int k, int D) {
  const int n = T * k;
  if (n <= 0) return;
  combine_backward_kernel<<<n, kThreads, 0, current_stream()>>>(dy, dtop_w, dout, y, perm, top_w, k, D);
  M1_CUDA_LAUNCH_CHECK();
}

}  // namespace m1::cuda
