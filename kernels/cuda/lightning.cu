// Lightning attention on the GPU: the fp32 chunked forward and backward and the batched recurrent
// decode of the Kernels table (contracts in kernels/kernels.h), and the bf16 chunked forward with
// its intra-block products on tensor cores (ops.h). Math: docs/model.md and Lightning Attention-2
// (arXiv 2401.04658); the CPU twin is kernels/cpu/fast_attention.cc.
//
// One kernel does every chunked pass. For a head and the chunks [s0, s0 + m) of `block` rows
// (the first chunk may be shorter or longer, see ChunkPass::first), with KV the fp32 state
// before the chunk and i, j indices inside it:
//   o_i = λ^{i+1}·q_i·KV + Σ_{j ≤ i} λ^{i−j}·(q_i·k_j)·v_j        (inter + intra, Alg. 1)
//   KV ← λ^m·KV + Σ_j λ^{m−1−j}·k_jᵀ v_j
// A block owns one head and a slice of 32 columns of v (so of o and of KV: the columns of the
// recurrence are independent), walks the chunks in order and keeps its KV slice [d][32] in
// shared memory. Inside a chunk the rows go in sub-tiles of 64 (4 warps × 16 query rows) against
// key sub-tiles of 64, so any block length works and nothing is T×T.
// The backward (Alg. 2, zero initial state) is three passes of the same kernel, one launch:
//   dq_t = do_t·kv_tᵀ                       = the recurrence with (q, k, v) = (dO, V, K);
//   dk_t = v_t·dkv_tᵀ, dv_t = k_t·dkv_t with dkv_t = Σ_{s≥t} λ^{s−t} q_sᵀ do_s
//        = the recurrence in reversed time with (q, k, v) = (V, dO, Q) and (K, Q, dO),
//          walked with negative row strides over the chunks of Alg. 2 (the ragged block first).
// λ^n is computed as exp(n·log λ) (log λ in double, once per block).
// Decode: one thread per state element column-slice, each element of the fp32 states read and
// written once, coalesced; o reduced across the 8 row groups in a fixed order.
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"  // warp_tile_mma
#include "kernels/cuda/ops.h"

namespace m1::cuda {
namespace {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

constexpr int kThreads = 128;  // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 64;     // rows of a query or key sub-tile
constexpr int kWarpRows = 16; // query rows per warp
constexpr int kBV = 32;       // columns of v (and o, KV) per block
static_assert(kWarps * kWarpRows == kRows, "4 warps of 16 rows cover a sub-tile");

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
template <class Tin>
__device__ __forceinline__ Tin from_f(float x) {
  if constexpr (std::is_same_v<Tin, bf16>)
    return __float2bfloat16(x);
  else
    return x;
}

// λ^n for n ≥ 0 from log λ (λ = 0 gives log λ = −inf and λ^n = 0 for n > 0).
__device__ __forceinline__ float lam_pow(float loglam, int n) { return n == 0 ? 1.0f : expf(float(n) * loglam); }

// One pass of the chunked recurrence for all heads. Pointers are row 0 of head 0; head h's
// columns start h·h* further; row t is at t·ld* (ld* may be negative: time reversed).
template <class Tin>
struct ChunkPass {
  const Tin* q;
  const Tin* k;
  const Tin* v;
  long long ldq, ldk, ldv;
  long long hq, hk, hv;
  float* o;
  long long ldo, ho;
  const float* state_in;  // [H, d, d] or null (zero)
  float* state_out;       // [H, d, d] or null
  int first;              // rows of the first chunk (≥ 1); the others have `block` rows
};

template <class Tin>
struct ChunkLaunch {
  ChunkPass<Tin> pass[3];  // blockIdx.z selects the pass
  const float* lambda;     // [H], device
  int T, d, block;
};

constexpr size_t align128(size_t x) { return (x + 127) / 128 * 128; }

// Shared memory of the chunk kernel. fp32 inputs (SIMT products): Q/K rows padded by one float
// so lane j reading key row j is conflict-free. bf16 inputs (wmma): rows padded by 8 (ldm a
// multiple of 8, fragment pointers 32-byte aligned), plus an fp32 scratch per warp for the
// fragment stores.
template <class Tin, int DC>
struct ChunkCfg {
  static constexpr bool kTC = std::is_same_v<Tin, bf16>;
  static constexpr int DP = 32 * DC;
  static constexpr int LDQK = kTC ? DP + 8 : DP + 1;
  static constexpr int LDV = kTC ? kBV + 8 : kBV;
  static constexpr int LDP = kTC ? kRows + 8 : kRows;
  static constexpr int LDS = kRows + 4;
  static constexpr size_t st_off = 0;  // KV slice [DP][32] fp32
  static constexpr size_t q_off = align128(st_off + sizeof(float) * DP * kBV);
  static constexpr size_t k_off = align128(q_off + sizeof(Tin) * kRows * LDQK);
  static constexpr size_t v_off = align128(k_off + sizeof(Tin) * kRows * LDQK);
  static constexpr size_t p_off = align128(v_off + sizeof(Tin) * kRows * LDV);
  static constexpr size_t s_off = align128(p_off + sizeof(Tin) * kWarps * kWarpRows * LDP);
  static constexpr size_t dec_off = align128(s_off + (kTC ? sizeof(float) * kWarps * kWarpRows * LDS : 0));
  static constexpr size_t smem = align128(dec_off + sizeof(float) * kRows);
};

// dst[r, c] (row stride lds) = src[(r0 + r)·ld + c] for r < rows and c < cols, else 0;
// r in [0, kRows), c in [0, W).
template <class Tin, int W>
__device__ __forceinline__ void load_rows(Tin* dst, int lds, const Tin* src, long long ld, int r0, int rows,
                                          int cols) {
  for (int i = threadIdx.x; i < kRows * W; i += kThreads) {
    const int r = i / W, c = i % W;
    dst[r * lds + c] = (r < rows && c < cols) ? src[(long long)(r0 + r) * ld + c] : from_f<Tin>(0.0f);
  }
}

// acc[r] += Σ_jj w[r][jj]·V[jj][lane] over one key sub-tile, for the warp's 16 query rows
// (local indices i = iq0 + r) and the keys j = jk0 + jj, with w = λ^{i−j}·(q_i·k_j) for j ≤ i < m
// and 0 otherwise. fp32: scores by lanes (keys lane, lane + 32); bf16: 16×16×16 wmma.
template <class Tin, int DC>
__device__ __forceinline__ void intra_tile(float (&acc)[kWarpRows], const Tin* Qw, const Tin* Ks, const Tin* Vs,
                                           Tin* Pw, float* Sw, int iq0, int jk0, int m, int nkeys, float loglam) {
  using C = ChunkCfg<Tin, DC>;
  constexpr int DP = C::DP, LDQK = C::LDQK, LDV = C::LDV, LDP = C::LDP, LDS = C::LDS;
  const int lane = threadIdx.x % 32;
  if constexpr (!C::kTC) {
    float s0[kWarpRows], s1[kWarpRows];
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) s0[r] = s1[r] = 0.0f;
#pragma unroll 4
    for (int c = 0; c < DP; ++c) {
      const float k0 = Ks[lane * LDQK + c], k1 = Ks[(lane + 32) * LDQK + c];
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) {
        const float qv = Qw[r * LDQK + c];
        s0[r] = fmaf(qv, k0, s0[r]);
        s1[r] = fmaf(qv, k1, s1[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) {
      const int i = iq0 + r, j0 = jk0 + lane, j1 = j0 + 32;
      Pw[r * LDP + lane] = (j0 <= i && i < m) ? lam_pow(loglam, i - j0) * s0[r] : 0.0f;
      Pw[r * LDP + lane + 32] = (j1 <= i && i < m) ? lam_pow(loglam, i - j1) * s1[r] : 0.0f;
    }
    __syncwarp();
    for (int jj = 0; jj < nkeys; ++jj) {
      const float vv = Vs[jj * LDV + lane];
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) acc[r] = fmaf(Pw[r * LDP + jj], vv, acc[r]);
    }
    __syncwarp();  // Pw is rewritten by the next sub-tile
  } else {
    // S = Q_w Kᵀ (16 × 64) into the scratch.
    warp_tile_mma<kRows / 16, DP / 16, wmma::col_major>(Qw, LDQK, Ks, LDQK, Sw, LDS);
    __syncwarp();
    // Decay mask, two lanes per row, into P (bf16).
    const int rr = lane / 2, half = lane % 2, i = iq0 + rr;
#pragma unroll 8
    for (int e = 0; e < kRows / 2; ++e) {
      const int jj = 2 * e + half, j = jk0 + jj;
      const float w = (j <= i && i < m) ? lam_pow(loglam, i - j) * Sw[rr * LDS + jj] : 0.0f;
      Pw[rr * LDP + jj] = __float2bfloat16(w);
    }
    __syncwarp();
    // P V (16 × 32) into the scratch, then into the lane's column.
    warp_tile_mma<kBV / 16, kRows / 16, wmma::row_major>(Pw, LDP, Vs, LDV, Sw, LDS);
    __syncwarp();
#pragma unroll
    for (int r = 0; r < kWarpRows; ++r) acc[r] += Sw[r * LDS + lane];
    __syncwarp();  // Sw and Pw are rewritten by the next sub-tile
  }
}

// Grid (⌈d/32⌉ column slices, H, passes); 128 threads. See the file comment.
template <class Tin, int DC>
__global__ void __launch_bounds__(kThreads) lightning_chunk_kernel(const ChunkLaunch<Tin> L) {
  using C = ChunkCfg<Tin, DC>;
  constexpr int DP = C::DP, LDQK = C::LDQK, LDV = C::LDV, LDP = C::LDP, LDS = C::LDS;
  const ChunkPass<Tin>& P = L.pass[blockIdx.z];
  extern __shared__ __align__(128) unsigned char smem_raw[];
  float* St = reinterpret_cast<float*>(smem_raw + C::st_off);  // [DP][32]: KV[r][c0 + c]
  Tin* Qs = reinterpret_cast<Tin*>(smem_raw + C::q_off);       // [64][LDQK]
  Tin* Ks = reinterpret_cast<Tin*>(smem_raw + C::k_off);       // [64][LDQK]
  Tin* Vs = reinterpret_cast<Tin*>(smem_raw + C::v_off);       // [64][LDV], this block's columns
  float* dec = reinterpret_cast<float*>(smem_raw + C::dec_off);  // [64] state-update decays
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  Tin* Pw = reinterpret_cast<Tin*>(smem_raw + C::p_off) + warp * kWarpRows * LDP;       // [16][LDP]
  float* Sw = reinterpret_cast<float*>(smem_raw + C::s_off) + warp * kWarpRows * LDS;  // [16][LDS] (bf16)
  const int T = L.T, d = L.d, h = blockIdx.y, c0 = blockIdx.x * kBV;
  const int vcols = min(kBV, d - c0);
  const float loglam = float(log(double(L.lambda[h])));
  const Tin* qh = P.q + h * P.hq;
  const Tin* kh = P.k + h * P.hk;
  const Tin* vh = P.v + h * P.hv + c0;
  float* oh = P.o + h * P.ho + c0;

  for (int i = threadIdx.x; i < DP * kBV; i += kThreads) {
    const int r = i / kBV, c = i % kBV;
    St[i] = (P.state_in && r < d && c < vcols) ? P.state_in[(size_t(h) * d + r) * d + c0 + c] : 0.0f;
  }
  for (int s0 = 0; s0 < T;) {
    const int m = min(s0 == 0 ? P.first : L.block, T - s0);
    // 1. The chunk's outputs, from the state before it.
    for (int u0 = 0; u0 < m; u0 += kRows) {
      __syncthreads();  // St written, Qs free
      load_rows<Tin, DP>(Qs, LDQK, qh, P.ldq, s0 + u0, min(kRows, m - u0), d);
      __syncthreads();
      const Tin* Qw = Qs + warp * kWarpRows * LDQK;
      float acc[kWarpRows];
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) acc[r] = 0.0f;
#pragma unroll 4
      for (int c = 0; c < DP; ++c) {
        const float sv = St[c * kBV + lane];
#pragma unroll
        for (int r = 0; r < kWarpRows; ++r) acc[r] = fmaf(to_f(Qw[r * LDQK + c]), sv, acc[r]);
      }
      const int iq0 = u0 + warp * kWarpRows;
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r) acc[r] *= lam_pow(loglam, iq0 + r + 1);
      for (int v0 = 0; v0 <= u0; v0 += kRows) {
        const int nkeys = min(kRows, m - v0);
        __syncthreads();  // Ks, Vs free
        load_rows<Tin, DP>(Ks, LDQK, kh, P.ldk, s0 + v0, nkeys, d);
        load_rows<Tin, kBV>(Vs, LDV, vh, P.ldv, s0 + v0, nkeys, vcols);
        __syncthreads();
        intra_tile<Tin, DC>(acc, Qw, Ks, Vs, Pw, Sw, iq0, v0, m, nkeys, loglam);
      }
#pragma unroll
      for (int r = 0; r < kWarpRows; ++r)
        if (iq0 + r < m && lane < vcols) oh[(long long)(s0 + iq0 + r) * P.ldo + lane] = acc[r];
    }
    // 2. KV ← λ^m KV + Σ_j λ^{m−1−j} k_jᵀ v_j. Thread owns rows warp + 4e of column lane.
    float st[DP / kWarps];
    const float decay_m = lam_pow(loglam, m);
    __syncthreads();  // every read of St by step 1 is done
#pragma unroll
    for (int e = 0; e < DP / kWarps; ++e) st[e] = St[(warp + kWarps * e) * kBV + lane] * decay_m;
    for (int v0 = 0; v0 < m; v0 += kRows) {
      const int nkeys = min(kRows, m - v0);
      __syncthreads();
      load_rows<Tin, DP>(Ks, LDQK, kh, P.ldk, s0 + v0, nkeys, d);
      load_rows<Tin, kBV>(Vs, LDV, vh, P.ldv, s0 + v0, nkeys, vcols);
      const int tid = threadIdx.x;
      if (tid < kRows) dec[tid] = tid < nkeys ? lam_pow(loglam, m - 1 - v0 - tid) : 0.0f;
      __syncthreads();
      for (int jj = 0; jj < nkeys; ++jj) {
        const float vj = to_f(Vs[jj * LDV + lane]) * dec[jj];
#pragma unroll
        for (int e = 0; e < DP / kWarps; ++e) st[e] = fmaf(to_f(Ks[jj * LDQK + warp + kWarps * e]), vj, st[e]);
      }
    }
#pragma unroll
    for (int e = 0; e < DP / kWarps; ++e) St[(warp + kWarps * e) * kBV + lane] = st[e];
    s0 += m;
  }
  if (P.state_out) {
    __syncthreads();
    for (int i = threadIdx.x; i < DP * kBV; i += kThreads) {
      const int r = i / kBV, c = i % kBV;
      if (r < d && c < vcols) P.state_out[(size_t(h) * d + r) * d + c0 + c] = St[i];
    }
  }
}

// Calls f(std::integral_constant<int, ⌈d/32⌉>) for d in [1, 128]; aborts otherwise.
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

template <class Tin>
void launch_chunks(const ChunkLaunch<Tin>& L, int passes, int H, const char* op) {
  with_head_dim(L.d, op, [&](auto dc) {
    constexpr int DC = decltype(dc)::value;
    auto* kernel = lightning_chunk_kernel<Tin, DC>;
    constexpr size_t smem = ChunkCfg<Tin, DC>::smem;
    if (smem > 48 * 1024)
      M1_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    const dim3 grid(ceil_div(L.d, kBV), H, passes);
    kernel<<<grid, kThreads, smem, current_stream()>>>(L);
    M1_CUDA_LAUNCH_CHECK();
  });
}

// The forward pass over qkv [T, H·3d] (head h: q | k | v at columns h·3d + {0, d, 2d}).
template <class Tin>
ChunkLaunch<Tin> forward_launch(float* o, float* state_out, const Tin* qkv, const float* state_in,
                                const float* lambda, int T, int H, int d, int block) {
  const int B = std::max(1, std::min(block, std::max(T, 1)));
  const long long ld = 3LL * H * d;
  ChunkLaunch<Tin> L{};
  L.pass[0] = ChunkPass<Tin>{qkv, qkv + d, qkv + 2 * d, ld, ld, ld, 3LL * d, 3LL * d, 3LL * d,
                             o, (long long)H * d, d, state_in, state_out, B};
  L.lambda = lambda;
  L.T = T;
  L.d = d;
  L.block = B;
  return L;
}

// ---- decode

constexpr int kDecodeRows = 8;  // row groups per block (blockDim = 32 × 8)

// Grid (⌈d/32⌉, H, B): thread (x, y) owns column c = 32·blockIdx.x + x of rows y, y + 8, ... of
// states[b] head h: kv ← λ·kv + k_r·v_c, o_c = Σ_r q_r·kv[r][c].
__global__ void __launch_bounds__(32 * kDecodeRows)
    lightning_decode_kernel(float* __restrict__ o, float* const* __restrict__ states, const float* __restrict__ qkv,
                            const float* __restrict__ lambda, int H, int d) {
  __shared__ float red[kDecodeRows][33];
  const int c = blockIdx.x * 32 + threadIdx.x, h = blockIdx.y, b = blockIdx.z;
  const float* q = qkv + (size_t(b) * H + h) * 3 * d;
  const float* k = q + d;
  const float* v = q + 2 * d;
  float* kv = states[b] + size_t(h) * d * d;
  const float lam = lambda[h];
  float acc = 0.0f;
  if (c < d) {
    const float vc = v[c];
    for (int r = threadIdx.y; r < d; r += kDecodeRows) {
      const float x = fmaf(k[r], vc, lam * kv[size_t(r) * d + c]);
      kv[size_t(r) * d + c] = x;
      acc = fmaf(q[r], x, acc);
    }
  }
  red[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < d) {
    float s = 0.0f;
    for (int y = 0; y < kDecodeRows; ++y) s += red[y][threadIdx.x];
    o[(size_t(b) * H + h) * d + c] = s;
  }
}

}  // namespace

void lightning_forward(float* o, float* state_out, const float* qkv, const float* state_in, const float* lambda,
                       int T, int H, int d, int block) {
  if (H <= 0 || T < 0) return;
  launch_chunks(forward_launch(o, state_out, qkv, state_in, lambda, T, H, d, block), 1, H, "lightning_forward");
}

void lightning_forward_bf16(float* o, float* state_out, const uint16_t* qkv, const float* state_in,
                            const float* lambda, int T, int H, int d, int block) {
  if (H <= 0 || T < 0) return;
  launch_chunks(forward_launch(o, state_out, reinterpret_cast<const bf16*>(qkv), state_in, lambda, T, H, d, block),
                1, H, "lightning_forward_bf16");
}

void lightning_backward(float* dqkv, const float* dout, const float* qkv, const float* lambda, int T, int H, int d,
                        int block) {
  if (H <= 0 || T <= 0) return;
  const int B = std::max(1, std::min(block, T));
  const long long ld = 3LL * H * d, ldo = (long long)H * d, hs = 3LL * d;
  const float* Q = qkv;
  const float* K = qkv + d;
  const float* V = qkv + 2 * d;
  float* dQ = dqkv;
  float* dK = dqkv + d;
  float* dV = dqkv + 2 * d;
  // Reversed time: row T−1 first, stride −ld; Alg. 2's chunks, the ragged last one first.
  const long long rq = (long long)(T - 1) * ld, ro = (long long)(T - 1) * ldo;
  const int first_rev = T - (T - 1) / B * B;
  ChunkLaunch<float> L{};
  L.pass[0] = ChunkPass<float>{dout, V, K, ldo, ld, ld, d, hs, hs, dQ, ld, hs, nullptr, nullptr, B};
  L.pass[1] = ChunkPass<float>{V + rq, dout + ro, Q + rq, -ld, -ldo, -ld, hs, d, hs,
                               dK + rq, -ld, hs, nullptr, nullptr, first_rev};
  L.pass[2] = ChunkPass<float>{K + rq, Q + rq, dout + ro, -ld, -ld, -ldo, hs, hs, d,
                               dV + rq, -ld, hs, nullptr, nullptr, first_rev};
  L.lambda = lambda;
  L.T = T;
  L.d = d;
  L.block = B;
  launch_chunks(L, 3, H, "lightning_backward");
}

void lightning_decode(float* o, float* const* states, const float* qkv, const float* lambda, int B, int H, int d) {
  if (B <= 0 || H <= 0 || d <= 0) return;
  const dim3 grid(ceil_div(d, 32), H, B), block(32, kDecodeRows);
  lightning_decode_kernel<<<grid, block, 0, current_stream()>>>(o, states, qkv, lambda, H, d);
  M1_CUDA_LAUNCH_CHECK();
}

}  // namespace m1::cuda
