// Causal GQA softmax attention on the GPU: the fp32 forward, backward and decode of the Kernels
// table (contracts and layouts in kernels/kernels.h) and the bf16 tensor-core forward (ops.h).
//
// Forward (flash-attention-2): a block owns a tile of query rows of one head and streams the
// causal key tiles of its KV head (h·Hkv/H) through shared memory, keeping an online softmax per
// row: running max m, running sum l = Σ exp(s − m) and the unnormalised output Σ exp(s − m)·v.
// No T×T matrix exists anywhere; lse = m + log l is written for the backward.
// Backward: D = rowsum(dO ∘ O) first (scratch [H,T]); then dK, dV from one block per (KV head,
// key tile) that loops over the query heads of its GQA group and the query tiles at or after its
// keys, and dQ from one block per (head, query tile). Both recompute P = exp(S − lse) tile by
// tile. Every gradient row has exactly one owner, so the result is deterministic (no atomics).
// Decode (flash-decoding): the cache of every (sequence, head) is cut into splits; a block per
// split writes a partial (m, l, Σ exp(s − m)·v) to scratch and a second kernel merges them.
// Head dims d ≤ 128 (templated on ⌈d/32⌉, zero-padded to a multiple of 32); any T ≥ 1; row
// strides ldq, ldkv as in kernels.h. Accumulation is fp32 everywhere; scratch is stream-ordered
// (cudaMallocAsync) and freed before the op returns to the host.
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"  // warp_sum, warp_max (butterfly: every lane gets the same bits), warp_tile_mma
#include "kernels/cuda/ops.h"

namespace m1::cuda {
namespace {

constexpr int kThreads = 128;  // every kernel here runs 4 warps per block
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;  // key (or query) tile of the fp32 kernels: one key per lane
constexpr unsigned kFull = 0xffffffffu;

// dst[r, c] (row stride lds) = src[(r0 + r)·ld + c] for r0 + r < rmax and c < d, else 0; rows in
// [0, rows), columns in [0, DP). All threads of the block take part.
template <int DP>
__device__ __forceinline__ void load_tile(float* dst, int lds, int rows, const float* src, long long ld, int r0,
                                          int rmax, int d) {
  for (int i = threadIdx.x; i < rows * DP; i += blockDim.x) {
    const int r = i / DP, c = i % DP;
    dst[r * lds + c] = (r0 + r < rmax && c < d) ? src[(long long)(r0 + r) * ld + c] : 0.0f;
  }
}

// s[r] += Σ_c a[r·DP + c]·b[c] for R rows of a (16-byte aligned rows, read as broadcasts) and
// one row b per lane. Sequential in c, like the oracle's dot product.
template <int DP, int R>
__device__ __forceinline__ void dot_rows(float (&s)[R], const float* a, const float* b) {
#pragma unroll 2
  for (int c = 0; c < DP; c += 4) {
    const float b0 = b[c], b1 = b[c + 1], b2 = b[c + 2], b3 = b[c + 3];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float4 av = *reinterpret_cast<const float4*>(a + r * DP + c);
      s[r] = fmaf(av.x, b0, s[r]);
      s[r] = fmaf(av.y, b1, s[r]);
      s[r] = fmaf(av.z, b2, s[r]);
      s[r] = fmaf(av.w, b3, s[r]);
    }
  }
}

// Calls f(std::integral_constant<int, ⌈d/32⌉>) for d in [1, 128]; aborts otherwise (the kernels
// here hold d/32 columns per lane in registers).
template <class F>
void with_head_dim(int d, const char* op, F&& f) {
  switch ((d + 31) / 32) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    default:
      std::fprintf(stderr, "m1::cuda::%s: head dim d=%d is not supported (1 ≤ d ≤ 128)\n", op, d);
      std::abort();
  }
}

// Opts a kernel into more than the default 48 KB of dynamic shared memory.
template <class K>
void allow_smem(K* kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    M1_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// Stream-ordered scratch of n floats on the calling thread's stream.
float* scratch_alloc(size_t n) {
  void* p = nullptr;
  M1_CUDA_CHECK(cudaMallocAsync(&p, (n ? n : 1) * sizeof(float), current_stream()));
  return static_cast<float*>(p);
}
void scratch_free(float* p) { M1_CUDA_CHECK(cudaFreeAsync(p, current_stream())); }

// ------------------------------------------------------------------ fp32 forward

// Block: kRows query rows per warp (BQ = 32 rows of head blockIdx.y), lanes own output columns
// lane + 32·i. Per key tile of 32: lane j scores key j against the warp's rows, the online
// softmax is warp-reduced, then P·V is accumulated with p broadcast by shuffles.
// Shared: Q [BQ][DP], K [32][DP+1] (padded: lane j reads row j conflict-free), V [32][DP].
constexpr int kFwdRows = 8;
constexpr int kFwdBQ = kWarps * kFwdRows;

template <int DC>
constexpr size_t fwd_smem() {
  return sizeof(float) * (kFwdBQ * 32 * DC + kTile * (32 * DC + 1) + kTile * 32 * DC);
}

template <int DC>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(float* __restrict__ o, float* __restrict__ lse, const float* __restrict__ q, int ldq,
                             const float* __restrict__ k, const float* __restrict__ v, int ldkv, int T, int H, int Hkv,
                             int d, float scale) {
  constexpr int DP = 32 * DC, R = kFwdRows, BQ = kFwdBQ;
  extern __shared__ float4 smem4[];
  float* Qs = reinterpret_cast<float*>(smem4);  // [BQ][DP]
  float* Ks = Qs + BQ * DP;                     // [32][DP + 1]
  float* Vs = Ks + kTile * (DP + 1);            // [32][DP]
  const int h = blockIdx.y, g = h * Hkv / H;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ;  // the longest (latest) rows start first
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* kg = k + size_t(g) * d;
  const float* vg = v + size_t(g) * d;

  load_tile<DP>(Qs, DP, BQ, q + size_t(h) * d, ldq, q0, T, d);
  float m[R], l[R], acc[R][DC];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < DC; ++i) acc[r][i] = 0.0f;
  }
  const int kend = min(T, q0 + BQ);
  for (int k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();  // the previous tile is consumed (first pass: nothing)
    load_tile<DP>(Ks, DP + 1, kTile, kg, ldkv, k0, T, d);
    load_tile<DP>(Vs, DP, kTile, vg, ldkv, k0, T, d);
    __syncthreads();
    float s[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = 0.0f;
    dot_rows<DP, R>(s, Qs + warp * R * DP, Ks + lane * (DP + 1));
    const int j = k0 + lane;
    float p[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int t = q0 + warp * R + r;
      const float sr = (j <= t && j < T) ? s[r] * scale : -INFINITY;
      const float mn = fmaxf(m[r], warp_max(sr));
      const float base = mn == -INFINITY ? 0.0f : mn;  // a row with no key yet stays empty
      const float alpha = expf(m[r] - base);
      p[r] = expf(sr - base);
      l[r] = l[r] * alpha + warp_sum(p[r]);
      m[r] = mn;
#pragma unroll
      for (int i = 0; i < DC; ++i) acc[r][i] *= alpha;
    }
#pragma unroll 4
    for (int jj = 0; jj < kTile; ++jj) {
      float vv[DC];
#pragma unroll
      for (int i = 0; i < DC; ++i) vv[i] = Vs[jj * DP + lane + 32 * i];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float pj = __shfl_sync(kFull, p[r], jj);
#pragma unroll
        for (int i = 0; i < DC; ++i) acc[r][i] = fmaf(pj, vv[i], acc[r][i]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int t = q0 + warp * R + r;
    if (t >= T) continue;
    const float inv = 1.0f / l[r];
    float* ot = o + (size_t(t) * H + h) * d;
#pragma unroll
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) ot[c] = acc[r][i] * inv;
    }
    if (lane == 0) lse[size_t(h) * T + t] = m[r] + logf(l[r]);
  }
}

// ------------------------------------------------------------------ fp32 backward

// D[h·T + t] = Σ_c dout[t, h, c]·o[t, h, c]: one thread per (t, h), a sequential fmaf chain in
// the order the backward kernels compute dP = dO·v, so that a row whose only key is its own
// (o_t = v_t) gets dS = dP − D = 0 exactly, as in the oracle.
__global__ void __launch_bounds__(kThreads)
    attention_rowdot_kernel(float* __restrict__ D, const float* __restrict__ dout, const float* __restrict__ o,
                            int T, int H, int d) {
  const long long idx = (long long)blockIdx.x * kThreads + threadIdx.x;
  if (idx >= (long long)T * H) return;
  const int t = int(idx / H), h = int(idx % H);
  const float* a = dout + (size_t(t) * H + h) * d;
  const float* b = o + (size_t(t) * H + h) * d;
  float s = 0.0f;
  for (int c = 0; c < d; ++c) s = fmaf(a[c], b[c], s);
  D[size_t(h) * T + t] = s;
}

// dQ: block per (query tile of 32 rows, head). Warps own kBwdRows query rows, lanes own dq
// columns. Per key tile: lane j computes s and dP = dO·v_j for each of its warp's rows,
// dS = P (dP − D), then dq += dS·K with dS broadcast by shuffles.
// Shared: Q, dO [32][DP] (broadcast reads), K, V [32][DP+1] (lane j reads row j, and the
// accumulation reads K[jj][lane + 32 i]: both conflict-free with the padding).
constexpr int kBwdRows = 8;
constexpr int kBwdTile = kWarps * kBwdRows;  // 32 rows per block in both backward kernels
static_assert(kBwdTile == kTile, "the backward kernels pair 32-row tiles with 32-key tiles");

template <int DC>
constexpr size_t bwd_smem() {
  return sizeof(float) * (2 * kBwdTile * 32 * DC + 2 * kTile * (32 * DC + 1) + 2 * kTile);
}

template <int DC>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_kernel(float* __restrict__ dq, const float* __restrict__ dout, const float* __restrict__ lse,
                                 const float* __restrict__ D, const float* __restrict__ q, int ldq,
                                 const float* __restrict__ k, const float* __restrict__ v, int ldkv, int T, int H,
                                 int Hkv, int d, float scale) {
  constexpr int DP = 32 * DC, R = kBwdRows, BQ = kBwdTile;
  extern __shared__ float4 smem4[];
  float* Qs = reinterpret_cast<float*>(smem4);  // [BQ][DP]
  float* dOs = Qs + BQ * DP;                    // [BQ][DP]
  float* Ks = dOs + BQ * DP;                    // [32][DP + 1]
  float* Vs = Ks + kTile * (DP + 1);            // [32][DP + 1]
  const int h = blockIdx.y, g = h * Hkv / H;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float* kg = k + size_t(g) * d;
  const float* vg = v + size_t(g) * d;

  load_tile<DP>(Qs, DP, BQ, q + size_t(h) * d, ldq, q0, T, d);
  load_tile<DP>(dOs, DP, BQ, dout + size_t(h) * d, (long long)H * d, q0, T, d);
  float lrow[R], Drow[R], acc[R][DC];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int t = q0 + warp * R + r;
    lrow[r] = t < T ? lse[size_t(h) * T + t] : 0.0f;
    Drow[r] = t < T ? D[size_t(h) * T + t] : 0.0f;
#pragma unroll
    for (int i = 0; i < DC; ++i) acc[r][i] = 0.0f;
  }
  const int kend = min(T, q0 + BQ);
  for (int k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();
    load_tile<DP>(Ks, DP + 1, kTile, kg, ldkv, k0, T, d);
    load_tile<DP>(Vs, DP + 1, kTile, vg, ldkv, k0, T, d);
    __syncthreads();
    float s[R], dp[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.0f;
    dot_rows<DP, R>(s, Qs + warp * R * DP, Ks + lane * (DP + 1));
    dot_rows<DP, R>(dp, dOs + warp * R * DP, Vs + lane * (DP + 1));
    const int j = k0 + lane;
    float ds[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int t = q0 + warp * R + r;
      const float p = (j <= t && t < T) ? expf(s[r] * scale - lrow[r]) : 0.0f;
      ds[r] = p * (dp[r] - Drow[r]);
    }
#pragma unroll 4
    for (int jj = 0; jj < kTile; ++jj) {
      float kk[DC];
#pragma unroll
      for (int i = 0; i < DC; ++i) kk[i] = Ks[jj * (DP + 1) + lane + 32 * i];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float dsj = __shfl_sync(kFull, ds[r], jj);
#pragma unroll
        for (int i = 0; i < DC; ++i) acc[r][i] = fmaf(dsj, kk[i], acc[r][i]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int t = q0 + warp * R + r;
    if (t >= T) continue;
    float* dqt = dq + size_t(t) * ldq + size_t(h) * d;
#pragma unroll
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) dqt[c] = scale * acc[r][i];
    }
  }
}

// dK, dV: block per (key tile of 32 rows, KV head g). Warps own kBwdRows key rows, lanes own
// dk/dv columns. For every query head h of the group (h·Hkv/H = g) and every query tile at or
// after the keys: lane i scores query i against the warp's keys (P, dS as in the dQ kernel),
// then dv += P·dO and dk += dS·Q with P, dS broadcast by shuffles.
// Shared: K, V [32][DP] (broadcast reads), Q, dO [32][DP+1], lse and D of the query tile.
template <int DC>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkv_kernel(float* __restrict__ dk, float* __restrict__ dv, const float* __restrict__ dout,
                                  const float* __restrict__ lse, const float* __restrict__ D,
                                  const float* __restrict__ q, int ldq, const float* __restrict__ k,
                                  const float* __restrict__ v, int ldkv, int T, int H, int Hkv, int d, float scale) {
  constexpr int DP = 32 * DC, R = kBwdRows, BK = kBwdTile;
  extern __shared__ float4 smem4[];
  float* Ks = reinterpret_cast<float*>(smem4);  // [BK][DP]
  float* Vs = Ks + BK * DP;                     // [BK][DP]
  float* Qs = Vs + BK * DP;                     // [32][DP + 1]
  float* dOs = Qs + kTile * (DP + 1);           // [32][DP + 1]
  float* ls = dOs + kTile * (DP + 1);           // [32]
  float* Ds = ls + kTile;                       // [32]
  const int g = blockIdx.y;
  const int j0 = blockIdx.x * BK;  // the earliest keys (most queries) start first
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Query heads h with h·Hkv/H = g, i.e. g·H ≤ h·Hkv < (g+1)·H.
  const int h_begin = (g * H + Hkv - 1) / Hkv, h_end = ((g + 1) * H + Hkv - 1) / Hkv;

  load_tile<DP>(Ks, DP, BK, k + size_t(g) * d, ldkv, j0, T, d);
  load_tile<DP>(Vs, DP, BK, v + size_t(g) * d, ldkv, j0, T, d);
  float dka[R][DC], dva[R][DC];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int i = 0; i < DC; ++i) dka[r][i] = dva[r][i] = 0.0f;

  for (int h = h_begin; h < h_end; ++h) {
    for (int t0 = j0; t0 < T; t0 += kTile) {
      __syncthreads();
      load_tile<DP>(Qs, DP + 1, kTile, q + size_t(h) * d, ldq, t0, T, d);
      load_tile<DP>(dOs, DP + 1, kTile, dout + size_t(h) * d, (long long)H * d, t0, T, d);
      if (threadIdx.x < kTile) {
        const int t = t0 + threadIdx.x;
        ls[threadIdx.x] = t < T ? lse[size_t(h) * T + t] : 0.0f;
        Ds[threadIdx.x] = t < T ? D[size_t(h) * T + t] : 0.0f;
      }
      __syncthreads();
      float s[R], dp[R];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.0f;
      dot_rows<DP, R>(s, Ks + warp * R * DP, Qs + lane * (DP + 1));
      dot_rows<DP, R>(dp, Vs + warp * R * DP, dOs + lane * (DP + 1));
      const int t = t0 + lane;
      const float lt = ls[lane], Dt = Ds[lane];
      float p[R], ds[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int j = j0 + warp * R + r;
        p[r] = (j <= t && t < T) ? expf(s[r] * scale - lt) : 0.0f;
        ds[r] = p[r] * (dp[r] - Dt);
      }
#pragma unroll 4
      for (int ii = 0; ii < kTile; ++ii) {
        float qv[DC], dov[DC];
#pragma unroll
        for (int i = 0; i < DC; ++i) {
          qv[i] = Qs[ii * (DP + 1) + lane + 32 * i];
          dov[i] = dOs[ii * (DP + 1) + lane + 32 * i];
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float pi = __shfl_sync(kFull, p[r], ii);
          const float dsi = __shfl_sync(kFull, ds[r], ii);
#pragma unroll
          for (int i = 0; i < DC; ++i) {
            dva[r][i] = fmaf(pi, dov[i], dva[r][i]);
            dka[r][i] = fmaf(dsi, qv[i], dka[r][i]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int j = j0 + warp * R + r;
    if (j >= T) continue;
    float* dkj = dk + size_t(j) * ldkv + size_t(g) * d;
    float* dvj = dv + size_t(j) * ldkv + size_t(g) * d;
#pragma unroll
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) {
        dkj[c] = scale * dka[r][i];
        dvj[c] = dva[r][i];
      }
    }
  }
}

// ------------------------------------------------------------------ fp32 decode (split-K)

// Block per (split, head, sequence). Split s of sequence b covers keys [s·per, min(n, (s+1)·per))
// with per = ⌈n/S⌉ rounded up to 128 (empty splits write an empty partial). Each warp takes
// every 4th tile of 32 keys: the tile of K goes through the warp's own shared buffer (lane j
// scores key j), V is read straight from global memory (row jj by the whole warp, coalesced).
// The four warps' (m, l, acc) are merged into the split's partial [m, l, acc[DP]].
constexpr int kDecodeSplitAlign = kWarps * kTile;

template <int DC>
constexpr size_t decode_smem() {
  return sizeof(float) * (32 * DC + kWarps * kTile * (32 * DC + 1) + kWarps * (32 * DC + 2));
}

template <int DC>
__global__ void __launch_bounds__(kThreads)
    attention_decode_split_kernel(float* __restrict__ part, const float* __restrict__ q,
                                  const float* const* __restrict__ kcache, const float* const* __restrict__ vcache,
                                  const int* __restrict__ len, int H, int Hkv, int d, float scale) {
  constexpr int DP = 32 * DC;
  extern __shared__ float4 smem4[];
  float* qs = reinterpret_cast<float*>(smem4);  // [DP]
  float* Kw = qs + DP;                          // [kWarps][32][DP + 1]
  float* red = Kw + kWarps * kTile * (DP + 1);  // [kWarps][DP + 2]: m, l, acc
  const int S = gridDim.x, s = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int g = h * Hkv / H, ldkv = Hkv * d;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = max(len[b], 0);
  const int per = ((n + S - 1) / S + kDecodeSplitAlign - 1) / kDecodeSplitAlign * kDecodeSplitAlign;
  const int begin = min(n, s * per), end = min(n, begin + per);
  for (int c = threadIdx.x; c < DP; c += kThreads) qs[c] = c < d ? q[(size_t(b) * H + h) * d + c] : 0.0f;
  __syncthreads();

  const float* kb = kcache[b] + size_t(g) * d;
  const float* vb = vcache[b] + size_t(g) * d;
  float* Kt = Kw + warp * kTile * (DP + 1);
  float m = -INFINITY, l = 0.0f, acc[DC];
#pragma unroll
  for (int i = 0; i < DC; ++i) acc[i] = 0.0f;
  for (int j0 = begin + warp * kTile; j0 < end; j0 += kWarps * kTile) {
    const int rows = min(kTile, end - j0);
    for (int r = 0; r < kTile; ++r) {
#pragma unroll
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        Kt[r * (DP + 1) + c] = (r < rows && c < d) ? kb[size_t(j0 + r) * ldkv + c] : 0.0f;
      }
    }
    __syncwarp();
    float sc[1] = {0.0f};
    dot_rows<DP, 1>(sc, qs, Kt + lane * (DP + 1));
    const float sj = lane < rows ? sc[0] * scale : -INFINITY;
    const float mn = fmaxf(m, warp_max(sj));  // finite: the tile has at least one key
    const float alpha = expf(m - mn);
    const float p = expf(sj - mn);
    l = l * alpha + warp_sum(p);
    m = mn;
#pragma unroll
    for (int i = 0; i < DC; ++i) acc[i] *= alpha;
    for (int jj = 0; jj < rows; ++jj) {
      const float pj = __shfl_sync(kFull, p, jj);
      const float* vr = vb + size_t(j0 + jj) * ldkv;
#pragma unroll
      for (int i = 0; i < DC; ++i) {
        const int c = lane + 32 * i;
        if (c < d) acc[i] = fmaf(pj, vr[c], acc[i]);
      }
    }
    __syncwarp();  // Kt is rewritten by the next tile
  }
  float* rw = red + warp * (DP + 2);
  if (lane == 0) {
    rw[0] = m;
    rw[1] = l;
  }
#pragma unroll
  for (int i = 0; i < DC; ++i) rw[2 + lane + 32 * i] = acc[i];
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, red[w * (DP + 2)]);
  float wgt[kWarps], L = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    const float mw = red[w * (DP + 2)];
    wgt[w] = mw == -INFINITY ? 0.0f : expf(mw - M);
    L += wgt[w] * red[w * (DP + 2) + 1];
  }
  float* out = part + ((size_t(b) * H + h) * S + s) * (DP + 2);
  if (threadIdx.x == 0) {
    out[0] = M;
    out[1] = L;
  }
  for (int c = threadIdx.x; c < DP; c += kThreads) {
    float a = 0.0f;
    for (int w = 0; w < kWarps; ++w) a += wgt[w] * red[w * (DP + 2) + 2 + c];
    out[2 + c] = a;
  }
}

// o[b, h, :] = Σ_s e^{m_s − M} acc_s / Σ_s e^{m_s − M} l_s over the splits; block per (h, b).
__global__ void __launch_bounds__(kThreads)
    attention_decode_merge_kernel(float* __restrict__ o, const float* __restrict__ part, int H, int d, int S,
                                  int stride) {
  const int h = blockIdx.x, b = blockIdx.y;
  const float* pp = part + (size_t(b) * H + h) * S * stride;
  float M = -INFINITY;
  for (int s = 0; s < S; ++s) M = fmaxf(M, pp[size_t(s) * stride]);
  float L = 0.0f;
  for (int s = 0; s < S; ++s) {
    const float ms = pp[size_t(s) * stride];
    if (ms != -INFINITY) L += expf(ms - M) * pp[size_t(s) * stride + 1];
  }
  const float inv = L > 0.0f ? 1.0f / L : 0.0f;  // an empty cache gives 0, as the oracle does
  for (int c = threadIdx.x; c < d; c += kThreads) {
    float a = 0.0f;
    for (int s = 0; s < S; ++s) {
      const float ms = pp[size_t(s) * stride];
      if (ms != -INFINITY) a += expf(ms - M) * pp[size_t(s) * stride + 2 + c];
    }
    o[(size_t(b) * H + h) * d + c] = a * inv;
  }
}

// ------------------------------------------------------------------ bf16 forward (tensor cores)

// Block: 64 query rows of head blockIdx.y, 4 warps × 16 rows; key tiles of 64. Per tile each warp
// computes S = Q Kᵀ (16×64) with 16×16×16 bf16 wmma fragments and fp32 accumulation into its
// fp32 scratch, runs the online softmax on it (two lanes per row), writes P in bf16, computes
// P·V (16×DP) with wmma into the scratch and folds it into its fp32 output registers
// (lane owns columns lane + 32·i of the warp's 16 rows) after rescaling by e^{m_old − m_new}.
// Shared (bf16 rows padded by 8 to spread banks, fragment pointers 32-byte aligned):
// Q, K, V [64][DP+8] bf16; per warp S/O scratch [16][max(64,DP)+4] fp32, P [16][72] bf16, and
// 16 row factors.
namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

constexpr int kBfRows = 16;                // rows per warp (one wmma tile)
constexpr int kBfBQ = kWarps * kBfRows;    // 64 query rows per block
constexpr int kBfBK = 64;                  // keys per tile
constexpr int kBfLDP = kBfBK + 8;          // P row stride (bf16)

constexpr size_t align128(size_t x) { return (x + 127) / 128 * 128; }

template <int DC>
struct Bf16Fwd {
  static constexpr int DP = 32 * DC;
  static constexpr int LDB = DP + 8;                            // Q/K/V row stride (bf16)
  static constexpr int LDS = (DP > kBfBK ? DP : kBfBK) + 4;     // scratch row stride (fp32)
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = align128(q_off + sizeof(bf16) * kBfBQ * LDB);
  static constexpr size_t v_off = align128(k_off + sizeof(bf16) * kBfBK * LDB);
  static constexpr size_t s_off = align128(v_off + sizeof(bf16) * kBfBK * LDB);
  static constexpr size_t p_off = align128(s_off + sizeof(float) * kWarps * kBfRows * LDS);
  static constexpr size_t a_off = align128(p_off + sizeof(bf16) * kWarps * kBfRows * kBfLDP);
  static constexpr size_t smem = align128(a_off + sizeof(float) * kWarps * kBfRows);
};

// dst[r, c] (row stride lds) = src[(r0 + r)·ld + c] as bf16 for r0 + r < rmax and c < d, else 0.
template <int DP>
__device__ __forceinline__ void load_tile_bf16(bf16* dst, int lds, int rows, const uint16_t* src, long long ld,
                                               int r0, int rmax, int d) {
  for (int i = threadIdx.x; i < rows * DP; i += blockDim.x) {
    const int r = i / DP, c = i % DP;
    const unsigned short bits = (r0 + r < rmax && c < d) ? src[(long long)(r0 + r) * ld + c] : 0;
    dst[r * lds + c] = __ushort_as_bfloat16(bits);
  }
}

template <int DC>
__global__ void __launch_bounds__(kThreads)
    attention_forward_bf16_kernel(float* __restrict__ o, float* __restrict__ lse, const uint16_t* __restrict__ q,
                                  int ldq, const uint16_t* __restrict__ k, const uint16_t* __restrict__ v, int ldkv,
                                  int T, int H, int Hkv, int d, float scale) {
  using C = Bf16Fwd<DC>;
  constexpr int DP = C::DP, LDB = C::LDB, LDS = C::LDS, BQ = kBfBQ, BK = kBfBK;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw + C::q_off);
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw + C::k_off);
  bf16* Vs = reinterpret_cast<bf16*>(smem_raw + C::v_off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* Sw = reinterpret_cast<float*>(smem_raw + C::s_off) + warp * kBfRows * LDS;  // [16][LDS]
  bf16* Pw = reinterpret_cast<bf16*>(smem_raw + C::p_off) + warp * kBfRows * kBfLDP;  // [16][72]
  float* Aw = reinterpret_cast<float*>(smem_raw + C::a_off) + warp * kBfRows;        // [16]
  const int h = blockIdx.y, g = h * Hkv / H;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ;
  const int rr = lane / 2, half = lane % 2;  // softmax: lanes 2rr, 2rr+1 share row rr
  const int trow = q0 + warp * kBfRows + rr;

  load_tile_bf16<DP>(Qs, LDB, BQ, q + size_t(h) * d, ldq, q0, T, d);
  float m = -INFINITY, l = 0.0f;  // of row rr (same in both lanes of the pair)
  float acc[kBfRows][DC];
#pragma unroll
  for (int r = 0; r < kBfRows; ++r)
#pragma unroll
    for (int i = 0; i < DC; ++i) acc[r][i] = 0.0f;

  const int kend = min(T, q0 + BQ);
  for (int k0 = 0; k0 < kend; k0 += BK) {
    __syncthreads();
    load_tile_bf16<DP>(Ks, LDB, BK, k + size_t(g) * d, ldkv, k0, T, d);
    load_tile_bf16<DP>(Vs, LDB, BK, v + size_t(g) * d, ldkv, k0, T, d);
    __syncthreads();
    // S = Q_w Kᵀ: 16 × 64, one 16×16 output tile at a time.
    warp_tile_mma<BK / 16, DP / 16, wmma::col_major>(Qs + warp * kBfRows * LDB, LDB, Ks, LDB, Sw, LDS);
    __syncwarp();
    // Online softmax of row rr over keys k0 + 2e + half.
    float mx = -INFINITY;
#pragma unroll 8
    for (int e = 0; e < BK / 2; ++e) {
      const int jj = 2 * e + half, j = k0 + jj;
      const float s = (j <= trow && j < T) ? Sw[rr * LDS + jj] * scale : -INFINITY;
      mx = fmaxf(mx, s);
    }
    mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
    const float mn = fmaxf(m, mx);
    const float base = mn == -INFINITY ? 0.0f : mn;
    const float alpha = expf(m - base);
    float sum = 0.0f;
#pragma unroll 8
    for (int e = 0; e < BK / 2; ++e) {
      const int jj = 2 * e + half, j = k0 + jj;
      const float p = (j <= trow && j < T) ? expf(Sw[rr * LDS + jj] * scale - base) : 0.0f;
      sum += p;
      Pw[rr * kBfLDP + jj] = __float2bfloat16(p);
    }
    sum += __shfl_xor_sync(kFull, sum, 1);
    l = l * alpha + sum;
    m = mn;
    if (half == 0) Aw[rr] = alpha;
    __syncwarp();
    // O_tile = P V: 16 × DP into the scratch (S is consumed).
    warp_tile_mma<DP / 16, BK / 16, wmma::row_major>(Pw, kBfLDP, Vs, LDB, Sw, LDS);
    __syncwarp();
#pragma unroll
    for (int r = 0; r < kBfRows; ++r) {
      const float a = Aw[r];
#pragma unroll
      for (int i = 0; i < DC; ++i) acc[r][i] = fmaf(acc[r][i], a, Sw[r * LDS + lane + 32 * i]);
    }
    __syncwarp();  // Aw and Sw are rewritten by the next tile
  }
  if (half == 0) {
    Aw[rr] = 1.0f / l;
    if (trow < T) lse[size_t(h) * T + trow] = m + logf(l);
  }
  __syncwarp();
#pragma unroll
  for (int r = 0; r < kBfRows; ++r) {
    const int t = q0 + warp * kBfRows + r;
    if (t >= T) continue;
    const float inv = Aw[r];
    float* ot = o + (size_t(t) * H + h) * d;
#pragma unroll
    for (int i = 0; i < DC; ++i) {
      const int c = lane + 32 * i;
      if (c < d) ot[c] = acc[r][i] * inv;
    }
  }
}

}  // namespace

// ------------------------------------------------------------------ entry points

void attention_forward(float* o, float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv,
                       int T, int H, int Hkv, int d) {
  if (T <= 0 || H <= 0) return;
  const float scale = 1.0f / std::sqrt(float(d));
  with_head_dim(d, "attention_forward", [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    auto* kernel = attention_forward_kernel<DC>;
    constexpr size_t smem = fwd_smem<DC>();
    allow_smem(kernel, smem);
    const dim3 grid(ceil_div(T, kFwdBQ), H);
    kernel<<<grid, kThreads, smem, current_stream()>>>(o, lse, q, ldq, k, v, ldkv, T, H, Hkv, d, scale);
    M1_CUDA_LAUNCH_CHECK();
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* o, const float* lse,
                        const float* q, int ldq, const float* k, const float* v, int ldkv, int T, int H, int Hkv,
                        int d) {
  if (T <= 0 || H <= 0) return;
  const float scale = 1.0f / std::sqrt(float(d));
  cudaStream_t stream = current_stream();
  float* D = scratch_alloc(size_t(H) * T);  // [H, T]
  attention_rowdot_kernel<<<ceil_div((long long)T * H, kThreads), kThreads, 0, stream>>>(D, dout, o, T, H, d);
  M1_CUDA_LAUNCH_CHECK();
  with_head_dim(d, "attention_backward", [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    constexpr size_t smem = bwd_smem<DC>();
    auto* dkv_kernel = attention_backward_dkv_kernel<DC>;
    allow_smem(dkv_kernel, smem);
    dkv_kernel<<<dim3(ceil_div(T, kBwdTile), Hkv), kThreads, smem, stream>>>(dk, dv, dout, lse, D, q, ldq, k, v,
                                                                             ldkv, T, H, Hkv, d, scale);
    M1_CUDA_LAUNCH_CHECK();
    auto* dq_kernel = attention_backward_dq_kernel<DC>;
    allow_smem(dq_kernel, smem);
    dq_kernel<<<dim3(ceil_div(T, kBwdTile), H), kThreads, smem, stream>>>(dq, dout, lse, D, q, ldq, k, v, ldkv, T,
                                                                           H, Hkv, d, scale);
    M1_CUDA_LAUNCH_CHECK();
  });
  scratch_free(D);
}

void attention_decode(float* o, const float* q, const float* const* kcache, const float* const* vcache,
                      const int* len, int B, int H, int Hkv, int d) {
  if (B <= 0 || H <= 0) return;
  const float scale = 1.0f / std::sqrt(float(d));
  cudaStream_t stream = current_stream();
  // Enough splits to give every SM about two blocks; lengths live on the device, so short caches
  // simply leave the later splits empty.
  int dev = 0, sms = 0;
  M1_CUDA_CHECK(cudaGetDevice(&dev));
  M1_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int S = std::max(1, std::min(32, ceil_div(2LL * sms, (long long)B * H)));
  with_head_dim(d, "attention_decode", [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    constexpr int stride = 32 * DC + 2;
    float* part = scratch_alloc(size_t(B) * H * S * stride);
    auto* kernel = attention_decode_split_kernel<DC>;
    constexpr size_t smem = decode_smem<DC>();
    allow_smem(kernel, smem);
    kernel<<<dim3(S, H, B), kThreads, smem, stream>>>(part, q, kcache, vcache, len, H, Hkv, d, scale);
    M1_CUDA_LAUNCH_CHECK();
    attention_decode_merge_kernel<<<dim3(H, B), kThreads, 0, stream>>>(o, part, H, d, S, stride);
    M1_CUDA_LAUNCH_CHECK();
    scratch_free(part);
  });
}

void attention_forward_bf16(float* o, float* lse, const uint16_t* q, int ldq, const uint16_t* k, const uint16_t* v,
                            int ldkv, int T, int H, int Hkv, int d) {
  if (T <= 0 || H <= 0) return;
  const float scale = 1.0f / std::sqrt(float(d));
  with_head_dim(d, "attention_forward_bf16", [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    auto* kernel = attention_forward_bf16_kernel<DC>;
    constexpr size_t smem = Bf16Fwd<DC>::smem;
    allow_smem(kernel, smem);
    const dim3 grid(ceil_div(T, kBfBQ), H);
    kernel<<<grid, kThreads, smem, current_stream()>>>(o, lse, q, ldq, k, v, ldkv, T, H, Hkv, d, scale);
    M1_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace m1::cuda
