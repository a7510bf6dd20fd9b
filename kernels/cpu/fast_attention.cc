// Fast CPU attention kernels: softmax attention per head as blocked products, lightning attention
// in the chunked form of Lightning Attention-2 (Alg. 1 forward, Alg. 2 backward), and the
// recurrent decode steps. Parallel over heads (and sequences for decode) on the pool; inside a
// head the products are single-threaded OpenBLAS calls (OpenBLAS is pinned to one thread, see
// kernels.cc). Lightning state is fp32 throughout; the backward assumes a zero initial state and
// recomputes the inter-block state instead of storing it.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/parallel.h"
#include "kernels/cpu/fast.h"
#include "kernels/cpu/small_gemm.h"
#include "kernels/cpu/vec_math.h"

namespace m1::fast {
namespace {

// C[M,N] = alpha·op(A)·op(B) + beta·C, row-major, single-threaded.
inline void mm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
               float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
}

// pw[i] = λ^i for i in [0, n].
void powers(float* pw, float lambda, int n) {
  double x = 1.0;
  for (int i = 0; i <= n; ++i) {
    pw[i] = float(x);
    x *= lambda;
  }
}

// S[m,m] ← S ⊙ M with M_ij = λ^{i−j} (i ≥ j), 0 above the diagonal.
void decay_mask(float* S, int m, const float* pw) {
  for (int i = 0; i < m; ++i) {
    float* row = S + size_t(i) * m;
    for (int j = 0; j <= i; ++j) row[j] *= pw[i - j];
    for (int j = i + 1; j < m; ++j) row[j] = 0.0f;
  }
}

// Rows of X[m, d] (row stride ld) scaled: X[i] *= f[i].
void scale_rows(float* X, int m, int d, int ld, const float* f) {
  for (int i = 0; i < m; ++i) {
    float* r = X + size_t(i) * ld;
    const float s = f[i];
#pragma omp simd
    for (int c = 0; c < d; ++c) r[c] *= s;
  }
}

}  // namespace

// ---------------------------------------------------------------- softmax attention

// Per query head h (KV head g = h·Hkv/H): S = scale·Q Kᵀ (causal), P = softmax rows, O = P V.
void attention_forward(float* o, float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv, int T,
                       int H, int Hkv, int d) {
  const float scale = 1.0f / std::sqrt(float(d));
  parallel_for(size_t(H), [&](size_t h0, size_t h1) {
    std::vector<float> S(size_t(T) * T);
    for (size_t h = h0; h < h1; ++h) {
      const size_t g = h * size_t(Hkv) / size_t(H);
      mm(false, true, T, T, d, scale, q + h * d, ldq, k + g * d, ldkv, 0.0f, S.data(), T);
      for (int t = 0; t < T; ++t) {
        float* row = S.data() + size_t(t) * T;
        float mx = -INFINITY;
        for (int u = 0; u <= t; ++u) mx = std::max(mx, row[u]);
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int u = 0; u <= t; ++u) {
          row[u] = vexp(row[u] - mx);
          sum += row[u];
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int u = 0; u <= t; ++u) row[u] *= inv;
        for (int u = t + 1; u < T; ++u) row[u] = 0.0f;
        lse[h * T + t] = mx + std::log(sum);
      }
      mm(false, false, T, d, T, 1.0f, S.data(), T, v + g * d, ldkv, 0.0f, o + h * d, H * d);
    }
  });
}

// dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ O)), dQ = scale·dS K, dK += scale·dSᵀ Q, dV += Pᵀ dO.
// Parallel over KV heads: each owns its dk/dv columns and the dq columns of its query heads.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* o, const float* lse,
                        const float* q, int ldq, const float* k, const float* v, int ldkv, int T, int H, int Hkv,
                        int d) {
  const float scale = 1.0f / std::sqrt(float(d));
  const int group = H / Hkv;
  parallel_for(size_t(Hkv), [&](size_t g0, size_t g1) {
    std::vector<float> P(size_t(T) * T), dP(size_t(T) * T);
    for (size_t g = g0; g < g1; ++g) {
      for (int hh = 0; hh < group; ++hh) {
        const size_t h = g * group + hh;
        const float* Qh = q + h * d;
        const float* Kg = k + g * d;
        const float* Vg = v + g * d;
        const float* dOh = dout + h * d;
        mm(false, true, T, T, d, scale, Qh, ldq, Kg, ldkv, 0.0f, P.data(), T);
        mm(false, true, T, T, d, 1.0f, dOh, H * d, Vg, ldkv, 0.0f, dP.data(), T);
        for (int t = 0; t < T; ++t) {
          float* pr = P.data() + size_t(t) * T;
          float* dr = dP.data() + size_t(t) * T;
          const float l = lse[h * T + t];
          const float Dt = small::dot(dOh + size_t(t) * H * d, o + size_t(t) * H * d + h * d, d);
#pragma omp simd
          for (int u = 0; u <= t; ++u) {
            pr[u] = vexp(pr[u] - l);
            dr[u] = pr[u] * (dr[u] - Dt) * scale;
          }
          for (int u = t + 1; u < T; ++u) pr[u] = dr[u] = 0.0f;
        }
        const float beta = hh == 0 ? 0.0f : 1.0f;
        mm(false, false, T, d, T, 1.0f, dP.data(), T, Kg, ldkv, 0.0f, dq + h * d, ldq);
        mm(true, false, T, d, T, 1.0f, dP.data(), T, Qh, ldq, beta, dk + g * d, ldkv);
        mm(true, false, T, d, T, 1.0f, P.data(), T, dOh, H * d, beta, dv + g * d, ldkv);
      }
    }
  });
}

void attention_decode(float* o, const float* q, const float* const* kcache, const float* const* vcache, const int* len,
                      int B, int H, int Hkv, int d) {
  const float scale = 1.0f / std::sqrt(float(d));
  const int ldkv = Hkv * d;
  // A part must carry enough work to pay for waking a pool thread (see fast.cc): ~2·len·d
  // flops per (sequence, head).
  size_t total_len = 0;
  for (int b = 0; b < B; ++b) total_len += size_t(len[b]);
  const size_t per_item = std::max<size_t>(1, 2 * total_len / std::max(1, B) * size_t(d));
  const size_t grain = std::max<size_t>(1, (size_t(1) << 17) / per_item);
  parallel_for(size_t(B) * H, [&](size_t i0, size_t i1) {
    std::vector<float> s;
    for (size_t i = i0; i < i1; ++i) {
      const size_t b = i / H, h = i % H;
      const int g = int(h) * Hkv / H, n = len[b];
      const float* qh = q + b * H * d + h * d;
      s.resize(size_t(n));
      float mx = -INFINITY;
      for (int u = 0; u < n; ++u) {
        s[u] = scale * small::dot(qh, kcache[b] + size_t(u) * ldkv + size_t(g) * d, d);
        mx = std::max(mx, s[u]);
      }
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int u = 0; u < n; ++u) {
        s[u] = vexp(s[u] - mx);
        sum += s[u];
      }
      float* oh = o + b * H * d + h * d;
      std::fill(oh, oh + d, 0.0f);
      const float inv = 1.0f / sum;
      for (int u = 0; u < n; ++u) {
        const float p = s[u] * inv;
        const float* vu = vcache[b] + size_t(u) * ldkv + size_t(g) * d;
#pragma omp simd
        for (int j = 0; j < d; ++j) oh[j] += p * vu[j];
      }
    }
  }, grain);
}

// ---------------------------------------------------------------- lightning attention

// Per head h, block [s, s+m): Q_b, K_b, V_b are rows of qkv at columns h·3d + {0, d, 2d}.
// Forward (Alg. 1):  O = [(Q Kᵀ) ⊙ M] V + diag(λ^{i+1}) Q·KV;   KV ← λ^m KV + (diag(λ^{m−1−j}) K)ᵀ V.
void lightning_forward(float* o, float* state_out, const float* qkv, const float* state_in, const float* lambda, int T,
                       int H, int d, int block) {
  const int B = std::max(1, std::min(block, std::max(T, 1)));
  const int ld = 3 * H * d, ldo = H * d;
  parallel_for(size_t(H), [&](size_t h0, size_t h1) {
    std::vector<float> kv(size_t(d) * d), S(size_t(B) * B), pw(size_t(B) + 1), kd(size_t(B) * d);
    for (size_t h = h0; h < h1; ++h) {
      powers(pw.data(), lambda[h], B);
      if (state_in)
        std::copy(state_in + h * d * d, state_in + (h + 1) * d * d, kv.begin());
      else
        std::fill(kv.begin(), kv.end(), 0.0f);
      const float* Q = qkv + h * 3 * d;
      const float* K = Q + d;
      const float* V = Q + 2 * d;
      for (int s0 = 0; s0 < T; s0 += B) {
        const int m = std::min(B, T - s0);
        const float* Qb = Q + size_t(s0) * ld;
        const float* Kb = K + size_t(s0) * ld;
        const float* Vb = V + size_t(s0) * ld;
        float* Ob = o + size_t(s0) * ldo + h * d;
        mm(false, false, m, d, d, 1.0f, Qb, ld, kv.data(), d, 0.0f, Ob, ldo);  // inter: Q·KV ...
        scale_rows(Ob, m, d, ldo, pw.data() + 1);                               // ... · λ^{i+1}
        mm(false, true, m, m, d, 1.0f, Qb, ld, Kb, ld, 0.0f, S.data(), m);      // intra: (Q Kᵀ) ⊙ M
        decay_mask(S.data(), m, pw.data());
        mm(false, false, m, d, m, 1.0f, S.data(), m, Vb, ld, 1.0f, Ob, ldo);
        for (int j = 0; j < m; ++j)
          for (int c = 0; c < d; ++c) kd[size_t(j) * d + c] = pw[m - 1 - j] * Kb[size_t(j) * ld + c];
        mm(true, false, d, d, m, 1.0f, kd.data(), d, Vb, ld, pw[m], kv.data(), d);  // KV = λ^m KV + kdᵀ V
      }
      if (state_out) std::copy(kv.begin(), kv.end(), state_out + h * d * d);
    }
  });
}

// Backward (Alg. 2) from a zero initial state.
// pass 1 (blocks forward):  dQ = [(dO Vᵀ) ⊙ M] K + diag(λ^{i+1}) dO·KVᵀ; KV as in the forward.
// pass 2 (blocks reversed), dKV = ∂L/∂(state after this block), starting at 0:
//   dK = [(dO Vᵀ) ⊙ M]ᵀ Q + diag(λ^{m−1−j}) V·dKVᵀ
//   dV = [(Q Kᵀ) ⊙ M]ᵀ dO + diag(λ^{m−1−j}) K·dKV
//   dKV ← λ^m dKV + (diag(λ^{i+1}) Q)ᵀ dO
void lightning_backward(float* dqkv, const float* dout, const float* qkv, const float* lambda, int T, int H, int d,
                        int block) {
  const int B = std::max(1, std::min(block, std::max(T, 1)));
  const int ld = 3 * H * d, ldo = H * d;
  parallel_for(size_t(H), [&](size_t h0, size_t h1) {
    std::vector<float> kv(size_t(d) * d), S(size_t(B) * B), P(size_t(B) * B), pw(size_t(B) + 1),
        tmp(static_cast<size_t>(B) * d), rev(static_cast<size_t>(B));
    for (size_t h = h0; h < h1; ++h) {
      powers(pw.data(), lambda[h], B);
      const float* Q = qkv + h * 3 * d;
      const float* K = Q + d;
      const float* V = Q + 2 * d;
      float* dQ = dqkv + h * 3 * d;
      float* dK = dQ + d;
      float* dV = dQ + 2 * d;
      const float* dO = dout + h * d;
      // pass 1
      std::fill(kv.begin(), kv.end(), 0.0f);
      for (int s0 = 0; s0 < T; s0 += B) {
        const int m = std::min(B, T - s0);
        const float *Kb = K + size_t(s0) * ld, *Vb = V + size_t(s0) * ld, *dOb = dO + size_t(s0) * ldo;
        float* dQb = dQ + size_t(s0) * ld;
        mm(false, true, m, d, d, 1.0f, dOb, ldo, kv.data(), d, 0.0f, dQb, ld);  // dO · KVᵀ
        scale_rows(dQb, m, d, ld, pw.data() + 1);
        mm(false, true, m, m, d, 1.0f, dOb, ldo, Vb, ld, 0.0f, S.data(), m);    // (dO Vᵀ) ⊙ M
        decay_mask(S.data(), m, pw.data());
        mm(false, false, m, d, m, 1.0f, S.data(), m, Kb, ld, 1.0f, dQb, ld);
        for (int j = 0; j < m; ++j)
          for (int c = 0; c < d; ++c) tmp[size_t(j) * d + c] = pw[m - 1 - j] * Kb[size_t(j) * ld + c];
        mm(true, false, d, d, m, 1.0f, tmp.data(), d, Vb, ld, pw[m], kv.data(), d);
      }
      // pass 2 (kv now holds dKV)
      std::fill(kv.begin(), kv.end(), 0.0f);
      const int nblocks = (T + B - 1) / B;
      for (int bi = nblocks - 1; bi >= 0; --bi) {
        const int s0 = bi * B, m = std::min(B, T - s0);
        const float *Qb = Q + size_t(s0) * ld, *Kb = K + size_t(s0) * ld, *Vb = V + size_t(s0) * ld;
        const float* dOb = dO + size_t(s0) * ldo;
        float *dKb = dK + size_t(s0) * ld, *dVb = dV + size_t(s0) * ld;
        for (int j = 0; j < m; ++j) rev[j] = pw[m - 1 - j];
        mm(false, true, m, d, d, 1.0f, Vb, ld, kv.data(), d, 0.0f, dKb, ld);   // V dKVᵀ
        mm(false, false, m, d, d, 1.0f, Kb, ld, kv.data(), d, 0.0f, dVb, ld);  // K dKV
        scale_rows(dKb, m, d, ld, rev.data());
        scale_rows(dVb, m, d, ld, rev.data());
        mm(false, true, m, m, d, 1.0f, dOb, ldo, Vb, ld, 0.0f, S.data(), m);  // (dO Vᵀ) ⊙ M
        mm(false, true, m, m, d, 1.0f, Qb, ld, Kb, ld, 0.0f, P.data(), m);    // (Q Kᵀ) ⊙ M
        decay_mask(S.data(), m, pw.data());
        decay_mask(P.data(), m, pw.data());
        mm(true, false, m, d, m, 1.0f, S.data(), m, Qb, ld, 1.0f, dKb, ld);
        mm(true, false, m, d, m, 1.0f, P.data(), m, dOb, ldo, 1.0f, dVb, ld);
        for (int i = 0; i < m; ++i)
          for (int c = 0; c < d; ++c) tmp[size_t(i) * d + c] = pw[i + 1] * Qb[size_t(i) * ld + c];
        mm(true, false, d, d, m, 1.0f, tmp.data(), d, dOb, ldo, pw[m], kv.data(), d);  // dKV = λ^m dKV + (ΛQ)ᵀ dO
      }
    }
  });
}

void lightning_decode(float* o, float* const* states, const float* qkv, const float* lambda, int B, int H, int d) {
  parallel_for(size_t(B) * H, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const size_t b = i / H, h = i % H;
      const float* q = qkv + b * 3 * H * d + h * 3 * d;
      const float* k = q + d;
      const float* v = q + 2 * d;
      float* kv = states[b] + h * d * d;
      float* oh = o + b * H * d + h * d;
      const float lam = lambda[h];
      std::fill(oh, oh + d, 0.0f);
      for (int r = 0; r < d; ++r) {
        float* row = kv + size_t(r) * d;
        const float kr = k[r], qr = q[r];
#pragma omp simd
        for (int c = 0; c < d; ++c) {
          row[c] = lam * row[c] + kr * v[c];
          oh[c] += qr * row[c];
        }
      }
    }
  }, std::max<size_t>(4, (size_t(1) << 20) / (3 * size_t(d) * size_t(d))));
  // A part carries >= 2^20 element-ops (~0.3 ms): waking a pool thread and waiting for it costs
  // tens of µs on these VMs, so decode-sized calls (a few hundred (b, h) rows of a small model) run
  // on the caller; measured by `m1rl bench model` (decode 2/1 threads).
}

}  // namespace m1::fast
