// Fast CPU attention kernels: softmax attention per head with blocked products, lightning
// attention in the chunked form of Lightning Attention-2 (Alg. 1 forward, Alg. 2 backward), and
// the recurrent decode steps. Parallel over heads (and sequences for decode) on the pool.
// Lightning state is fp32 throughout; the backward assumes a zero initial state and recomputes
// the inter-block state instead of storing it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/parallel.h"
#include "kernels/cpu/fast.h"
#include "kernels/cpu/small_gemm.h"

namespace m1::fast {
namespace {

// pw[i] = λ^i for i in [0, n].
void powers(float* pw, float lambda, int n) {
  double x = 1.0;
  for (int i = 0; i <= n; ++i) {
    pw[i] = float(x);
    x *= lambda;
  }
}

}  // namespace

// ---------------------------------------------------------------- softmax attention

void attention_forward(float* o, float* lse, const float* q, int ldq, const float* k, const float* v, int ldkv, int T,
                       int H, int Hkv, int d) {
  const float scale = 1.0f / std::sqrt(float(d));
  parallel_for(size_t(H), [&](size_t h0, size_t h1) {
    std::vector<float> s(static_cast<size_t>(T));
    for (size_t h = h0; h < h1; ++h) {
      const int g = int(h) * Hkv / H;
      for (int t = 0; t < T; ++t) {
        const float* qt = q + size_t(t) * ldq + h * d;
        float mx = -INFINITY;
        for (int u = 0; u <= t; ++u) {
          s[u] = scale * small::dot(qt, k + size_t(u) * ldkv + size_t(g) * d, d);
          mx = std::max(mx, s[u]);
        }
        float sum = 0;
        for (int u = 0; u <= t; ++u) {
          s[u] = std::exp(s[u] - mx);
          sum += s[u];
        }
        const float inv = 1.0f / sum;
        float* ot = o + size_t(t) * H * d + h * d;
        std::fill(ot, ot + d, 0.0f);
        for (int u = 0; u <= t; ++u) {
          const float p = s[u] * inv;
          const float* vu = v + size_t(u) * ldkv + size_t(g) * d;
#pragma omp simd
          for (int i = 0; i < d; ++i) ot[i] += p * vu[i];
        }
        lse[h * T + t] = mx + std::log(sum);
      }
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* o, const float* lse,
                        const float* q, int ldq, const float* k, const float* v, int ldkv, int T, int H, int Hkv,
                        int d) {
  const float scale = 1.0f / std::sqrt(float(d));
  const int group = H / Hkv;
  // Parallel over KV heads: each owns its dk/dv columns and the dq columns of its query heads.
  parallel_for(size_t(Hkv), [&](size_t g0, size_t g1) {
    std::vector<float> p(static_cast<size_t>(T));
    for (size_t g = g0; g < g1; ++g) {
      for (int u = 0; u < T; ++u) {
        std::fill(dk + size_t(u) * ldkv + g * d, dk + size_t(u) * ldkv + g * d + d, 0.0f);
        std::fill(dv + size_t(u) * ldkv + g * d, dv + size_t(u) * ldkv + g * d + d, 0.0f);
      }
      for (int hh = 0; hh < group; ++hh) {
        const size_t h = g * group + hh;
        for (int t = 0; t < T; ++t) {
          const float* qt = q + size_t(t) * ldq + h * d;
          const float* dot_ = dout + size_t(t) * H * d + h * d;
          const float* ot = o + size_t(t) * H * d + h * d;
          float* dqt = dq + size_t(t) * ldq + h * d;
          const float D = small::dot(dot_, ot, d);
          const float l = lse[h * T + t];
          std::fill(dqt, dqt + d, 0.0f);
          for (int u = 0; u <= t; ++u) {
            const float* ku = k + size_t(u) * ldkv + g * d;
            const float* vu = v + size_t(u) * ldkv + g * d;
            const float pu = std::exp(scale * small::dot(qt, ku, d) - l);
            const float dp = small::dot(dot_, vu, d);
            const float ds = pu * (dp - D) * scale;
            float* dku = dk + size_t(u) * ldkv + g * d;
            float* dvu = dv + size_t(u) * ldkv + g * d;
#pragma omp simd
            for (int i = 0; i < d; ++i) {
              dqt[i] += ds * ku[i];
              dku[i] += ds * qt[i];
              dvu[i] += pu * dot_[i];
            }
          }
        }
      }
    }
  });
}

void attention_decode(float* o, const float* q, const float* const* kcache, const float* const* vcache, const int* len,
                      int B, int H, int Hkv, int d) {
  const float scale = 1.0f / std::sqrt(float(d));
  const int ldkv = Hkv * d;
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
      for (int u = 0; u < n; ++u) {
        s[u] = std::exp(s[u] - mx);
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
  });
}

// ---------------------------------------------------------------- lightning attention

// Per head h, block [s, s+m): Q_b, K_b, V_b are rows of qkv at columns h·3d + {0, d, 2d}.
// Forward (Alg. 1):  O = [(Q Kᵀ) ⊙ M] V + diag(λ^{i+1}) Q·KV;   KV ← λ^m KV + (diag(λ^{m−1−j}) K)ᵀ V.
void lightning_forward(float* o, float* state_out, const float* qkv, const float* state_in, const float* lambda, int T,
                       int H, int d, int block) {
  const int B = std::max(1, std::min(block, std::max(T, 1)));
  const int ld = 3 * H * d, ldo = H * d;
  parallel_for(size_t(H), [&](size_t h0, size_t h1) {
    std::vector<float> kv(static_cast<size_t>(d) * d), s(static_cast<size_t>(B) * B), pw(size_t(B) + 1), kd(size_t(B) * d);
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
        // inter: O = diag(λ^{i+1}) Q·KV
        for (int i = 0; i < m; ++i) std::fill(Ob + size_t(i) * ldo, Ob + size_t(i) * ldo + d, 0.0f);
        small::mm_nn(m, d, d, Qb, ld, kv.data(), d, Ob, ldo);
        for (int i = 0; i < m; ++i) {
          float* r = Ob + size_t(i) * ldo;
          const float f = pw[i + 1];
#pragma omp simd
          for (int j = 0; j < d; ++j) r[j] *= f;
        }
        // intra: S = (Q Kᵀ) ⊙ M, O += S V
        std::fill(s.begin(), s.begin() + size_t(m) * m, 0.0f);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j <= i; ++j) s[size_t(i) * m + j] = pw[i - j] * small::dot(Qb + size_t(i) * ld, Kb + size_t(j) * ld, d);
        small::mm_nn(m, d, m, s.data(), m, Vb, ld, Ob, ldo);
        // state: KV = λ^m KV + (diag(λ^{m-1-j}) K)ᵀ V
        const float bd = pw[m];
        for (auto& x : kv) x *= bd;
        for (int j = 0; j < m; ++j) {
          const float f = pw[m - 1 - j];
          for (int c = 0; c < d; ++c) kd[size_t(j) * d + c] = f * Kb[size_t(j) * ld + c];
        }
        small::mm_tn(d, d, m, kd.data(), d, Vb, ld, kv.data(), d);
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
    std::vector<float> kv(static_cast<size_t>(d) * d), s(static_cast<size_t>(B) * B), p(static_cast<size_t>(B) * B), pw(size_t(B) + 1), tmp(size_t(B) * d);
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
        for (int i = 0; i < m; ++i) std::fill(dQb + size_t(i) * ld, dQb + size_t(i) * ld + d, 0.0f);
        small::mm_nt(m, d, d, dOb, ldo, kv.data(), d, dQb, ld);  // dO · KVᵀ
        for (int i = 0; i < m; ++i) {
          const float f = pw[i + 1];
          for (int c = 0; c < d; ++c) dQb[size_t(i) * ld + c] *= f;
        }
        std::fill(s.begin(), s.begin() + size_t(m) * m, 0.0f);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j <= i; ++j) s[size_t(i) * m + j] = pw[i - j] * small::dot(dOb + size_t(i) * ldo, Vb + size_t(j) * ld, d);
        small::mm_nn(m, d, m, s.data(), m, Kb, ld, dQb, ld);
        const float bd = pw[m];
        for (auto& x : kv) x *= bd;
        for (int j = 0; j < m; ++j)
          for (int c = 0; c < d; ++c) tmp[size_t(j) * d + c] = pw[m - 1 - j] * Kb[size_t(j) * ld + c];
        small::mm_tn(d, d, m, tmp.data(), d, Vb, ld, kv.data(), d);
      }
      // pass 2 (kv now holds dKV)
      std::fill(kv.begin(), kv.end(), 0.0f);
      const int nblocks = (T + B - 1) / B;
      for (int bi = nblocks - 1; bi >= 0; --bi) {
        const int s0 = bi * B, m = std::min(B, T - s0);
        const float *Qb = Q + size_t(s0) * ld, *Kb = K + size_t(s0) * ld, *Vb = V + size_t(s0) * ld;
        const float* dOb = dO + size_t(s0) * ldo;
        float *dKb = dK + size_t(s0) * ld, *dVb = dV + size_t(s0) * ld;
        for (int j = 0; j < m; ++j) {
          std::fill(dKb + size_t(j) * ld, dKb + size_t(j) * ld + d, 0.0f);
          std::fill(dVb + size_t(j) * ld, dVb + size_t(j) * ld + d, 0.0f);
        }
        // inter terms: dK = diag(λ^{m-1-j}) V dKVᵀ, dV = diag(λ^{m-1-j}) K dKV
        small::mm_nt(m, d, d, Vb, ld, kv.data(), d, dKb, ld);
        small::mm_nn(m, d, d, Kb, ld, kv.data(), d, dVb, ld);
        for (int j = 0; j < m; ++j) {
          const float f = pw[m - 1 - j];
          for (int c = 0; c < d; ++c) {
            dKb[size_t(j) * ld + c] *= f;
            dVb[size_t(j) * ld + c] *= f;
          }
        }
        // intra: s = (dO Vᵀ) ⊙ M, p = (Q Kᵀ) ⊙ M
        std::fill(s.begin(), s.begin() + size_t(m) * m, 0.0f);
        std::fill(p.begin(), p.begin() + size_t(m) * m, 0.0f);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j <= i; ++j) {
            s[size_t(i) * m + j] = pw[i - j] * small::dot(dOb + size_t(i) * ldo, Vb + size_t(j) * ld, d);
            p[size_t(i) * m + j] = pw[i - j] * small::dot(Qb + size_t(i) * ld, Kb + size_t(j) * ld, d);
          }
        small::mm_tn(m, d, m, s.data(), m, Qb, ld, dKb, ld);
        small::mm_tn(m, d, m, p.data(), m, dOb, ldo, dVb, ld);
        // dKV = λ^m dKV + (diag(λ^{i+1}) Q)ᵀ dO
        const float bd = pw[m];
        for (auto& x : kv) x *= bd;
        for (int i = 0; i < m; ++i)
          for (int c = 0; c < d; ++c) tmp[size_t(i) * d + c] = pw[i + 1] * Qb[size_t(i) * ld + c];
        small::mm_tn(d, d, m, tmp.data(), d, dOb, ldo, kv.data(), d);
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
  }, 4);
}

}  // namespace m1::fast
