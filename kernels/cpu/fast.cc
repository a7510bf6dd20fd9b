// Fast CPU kernels: OpenBLAS for the large products, pool-parallel vectorised loops for the rest.
// Same contracts as m1::Kernels (kernels/kernels.h); tested against the naive oracle.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "base/parallel.h"
#include "kernels/cpu/fast.h"
#include "kernels/cpu/naive.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/kernels.h"

namespace m1 {
namespace {

// A part of a parallel loop must carry enough work to pay for waking a pool thread (tens of µs
// on these VMs): elementwise ops do not split below kElemChunk values, row-wise ops below
// rows_for(width) rows. Below that the whole loop runs on the caller (decode-sized calls).
constexpr size_t kElemChunk = 1 << 16;
inline size_t rows_for(size_t width, size_t at_least) {
  return std::max(at_least, kElemChunk / std::max<size_t>(1, width));
}

// OpenBLAS runs single-threaded (kernels.cc); large products are split over the pool by rows of
// C (or by columns when C is short and wide), one single-threaded sgemm per part. One pool owns
// every core: no second pool spins while the first works.
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[size_t(i) * ldc + j] = beta == 0 ? 0.0f : beta * C[size_t(i) * ldc + j];
    return;
  }
  const auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  const double flops = 2.0 * M * N * double(K);
  const int parts = pool_threads();
  if (parts <= 1 || flops < 4e6) {
    cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (M >= N || M >= 64 * parts) {
    parallel_for(size_t(M), [&](size_t i0, size_t i1) {
      const float* Ai = ta ? A + i0 : A + i0 * size_t(lda);
      cblas_sgemm(CblasRowMajor, TA, TB, int(i1 - i0), N, K, alpha, Ai, lda, B, ldb, beta, C + i0 * size_t(ldc), ldc);
    }, 16);
  } else {
    parallel_for(size_t(N), [&](size_t j0, size_t j1) {
      const float* Bj = tb ? B + j0 * size_t(ldb) : B + j0;
      cblas_sgemm(CblasRowMajor, TA, TB, M, int(j1 - j0), K, alpha, A, lda, Bj, ldb, beta, C + j0, ldc);
    }, 16);
  }
}

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int D, float eps) {
  parallel_for(size_t(N), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float* xr = x + r * D;
      float* yr = y + r * D;
      float ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int i = 0; i < D; ++i) ss += xr[i] * xr[i];
      const float s = 1.0f / std::sqrt(ss / float(D) + eps);
      rstd[r] = s;
#pragma omp simd
      for (int i = 0; i < D; ++i) yr[i] = xr[i] * s * w[i];
    }
  }, rows_for(size_t(D), 16));
}

// dx = rstd·(w⊙dy) − x·rstd³·mean(x⊙w⊙dy);  dw += Σ_rows dy⊙x·rstd.
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd, int N,
                      int D) {
  parallel_for(size_t(N), [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      const float *xr = x + r * D, *dyr = dy + r * D;
      float* dxr = dx + r * D;
      const float s = rstd[r];
      float dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
      const float c = dot * s * s * s / float(D);
#pragma omp simd
      for (int i = 0; i < D; ++i) dxr[i] = s * w[i] * dyr[i] - c * xr[i];
    }
  }, rows_for(size_t(D), 16));
  // dw: parallel over columns so that no two threads write the same dw[i].
  parallel_for(size_t(D), [&](size_t c0, size_t c1) {
    for (int r = 0; r < N; ++r) {
      const float s = rstd[r];
      const float *xr = x + size_t(r) * D, *dyr = dy + size_t(r) * D;
      for (size_t i = c0; i < c1; ++i) dw[i] += dyr[i] * xr[i] * s;
    }
  }, 64);
}

inline float sigm(float x) { return vsigmoid(x); }

void silu_forward(float* y, const float* x, size_t n) {
  parallel_for(n, [&](size_t a, size_t b) {
#pragma omp simd
    for (size_t i = a; i < b; ++i) y[i] = x[i] * sigm(x[i]);
  }, kElemChunk);
}
void silu_backward(float* dx, const float* dy, const float* x, size_t n) {
  parallel_for(n, [&](size_t a, size_t b) {
#pragma omp simd
    for (size_t i = a; i < b; ++i) {
      const float s = sigm(x[i]);
      dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
  }, kElemChunk);
}
void swiglu_forward(float* y, const float* a, const float* bb, size_t n) {
  parallel_for(n, [&](size_t lo, size_t hi) {
#pragma omp simd
    for (size_t i = lo; i < hi; ++i) y[i] = a[i] * sigm(a[i]) * bb[i];
  }, kElemChunk);
}
void swiglu_backward(float* da, float* db, const float* dy, const float* a, const float* bb, size_t n) {
  parallel_for(n, [&](size_t lo, size_t hi) {
#pragma omp simd
    for (size_t i = lo; i < hi; ++i) {
      const float s = sigm(a[i]);
      db[i] = dy[i] * a[i] * s;
      da[i] = dy[i] * bb[i] * s * (1.0f + a[i] * (1.0f - s));
    }
  }, kElemChunk);
}
void sigmoid_mul_forward(float* out, const float* g, const float* y, size_t n) {
  parallel_for(n, [&](size_t lo, size_t hi) {
#pragma omp simd
    for (size_t i = lo; i < hi; ++i) out[i] = sigm(g[i]) * y[i];
  }, kElemChunk);
}
void sigmoid_mul_backward(float* dg, float* dy, const float* dout, const float* g, const float* y, size_t n) {
  parallel_for(n, [&](size_t lo, size_t hi) {
#pragma omp simd
    for (size_t i = lo; i < hi; ++i) {
      const float s = sigm(g[i]);
      dy[i] = dout[i] * s;
      dg[i] = dout[i] * y[i] * s * (1.0f - s);
    }
  }, kElemChunk);
}

void rope_apply(float* x, int T, int nh, int d, int ld, int r, const int* pos, float theta, float sign) {
  const int half = r / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) inv[i] = float(std::pow(double(theta), -2.0 * i / r));
  parallel_for(size_t(T), [&](size_t t0, size_t t1) {
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (size_t t = t0; t < t1; ++t) {
      for (int i = 0; i < half; ++i) {
        const double phi = double(pos[t]) * double(inv[i]);
        c[i] = float(std::cos(phi));
        s[i] = sign * float(std::sin(phi));
      }
      for (int h = 0; h < nh; ++h) {
        float* xh = x + t * ld + size_t(h) * d;
        for (int i = 0; i < half; ++i) {
          const float a = xh[i], b = xh[i + half];
          xh[i] = a * c[i] - b * s[i];
          xh[i + half] = b * c[i] + a * s[i];
        }
      }
    }
  }, rows_for(size_t(nh) * size_t(r), 8));
}
void rope_forward(float* x, int T, int nh, int d, int ld, int r, const int* pos, float theta) {
  rope_apply(x, T, nh, d, ld, r, pos, theta, 1.0f);
}
void rope_backward(float* dx, int T, int nh, int d, int ld, int r, const int* pos, float theta) {
  rope_apply(dx, T, nh, d, ld, r, pos, theta, -1.0f);
}

void router_forward(float* probs, int* top_idx, float* top_w, const float* logits, int T, int E, int k) {
  parallel_for(size_t(T), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) naive::router_forward<float>(probs + t * E, top_idx + t * k, top_w + t * k,
                                                                   logits + t * E, 1, E, k);
  }, rows_for(size_t(E), 64));
}
void router_backward(float* dlogits, const float* dtop_w, const float* dprobs, const float* probs, const int* top_idx,
                     int T, int E, int k) {
  parallel_for(size_t(T), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t)
      naive::router_backward<float>(dlogits + t * E, dtop_w + t * k, dprobs ? dprobs + t * E : nullptr, probs + t * E,
                                    top_idx + t * k, 1, E, k);
  }, rows_for(size_t(E), 64));
}

void gather_rows(float* dst, const float* src, const int* rows, int n, int D) {
  parallel_for(size_t(n), [&](size_t a, size_t b) {
    for (size_t i = a; i < b; ++i) std::memcpy(dst + i * D, src + size_t(rows[i]) * D, sizeof(float) * D);
  }, rows_for(size_t(D), 64));
}

// out[t] = Σ_slot w·y[row]: build the inverse permutation so each output row is written once.
void moe_combine(float* out, const float* y, const int* perm, const float* top_w, int T, int k, int D) {
  std::vector<int> inv(static_cast<size_t>(T) * k);
  for (int i = 0; i < T * k; ++i) inv[size_t(perm[i])] = i;
  parallel_for(size_t(T), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      float* o = out + t * D;
      std::fill(o, o + D, 0.0f);
      for (int s = 0; s < k; ++s) {
        const float w = top_w[t * k + s];
        const float* yr = y + size_t(inv[t * k + s]) * D;
#pragma omp simd
        for (int i = 0; i < D; ++i) o[i] += w * yr[i];
      }
    }
  }, rows_for(size_t(k) * size_t(D), 32));
}
void moe_combine_backward(float* dy, float* dtop_w, const float* dout, const float* y, const int* perm,
                          const float* top_w, int T, int k, int D) {
  parallel_for(size_t(T) * k, [&](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      const int a = perm[i];
      const size_t t = size_t(a / k);
      const float w = top_w[a];
      const float* go = dout + t * D;
      const float* yr = y + i * D;
      float* dyr = dy + i * D;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int c = 0; c < D; ++c) {
        dyr[c] = w * go[c];
        s += go[c] * yr[c];
      }
      dtop_w[a] = s;
    }
  }, rows_for(size_t(D), 32));
}

void embedding_forward(float* h, const int* tokens, const float* table, int T, int D) {
  gather_rows(h, table, tokens, T, D);
}
void embedding_backward(float* dtable, const float* dh, const int* tokens, int T, int D) {
  parallel_for(size_t(D), [&](size_t c0, size_t c1) {
    for (int t = 0; t < T; ++t) {
      float* row = dtable + size_t(tokens[t]) * D;
      const float* g = dh + size_t(t) * D;
      for (size_t c = c0; c < c1; ++c) row[c] += g[c];
    }
  }, 64);
}

void lm_head_forward(float* logp, float* entropy, float* logsm, const float* x, const float* W, const int* targets,
                     int T, int D, int V) {
  gemm(false, true, T, V, D, 1.0f, x, D, W, D, 0.0f, logsm, V);
  parallel_for(size_t(T), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      float* row = logsm + t * V;
      float mx = -INFINITY;
      for (int v = 0; v < V; ++v) mx = std::max(mx, row[v]);
      double sum = 0;  // fp32 terms (vexp: relative error ≤ 2e-7), summed in fp64
#pragma omp simd reduction(+ : sum)
      for (int v = 0; v < V; ++v) sum += double(vexp(row[v] - mx));
      const float lse = mx + float(std::log(sum));
      double ent = 0;
#pragma omp simd reduction(+ : ent)
      for (int v = 0; v < V; ++v) {
        row[v] -= lse;
        ent -= double(vexp(row[v])) * double(row[v]);
      }
      logp[t] = targets[t] >= 0 ? row[targets[t]] : 0.0f;
      if (entropy) entropy[t] = float(ent);
    }
  }, rows_for(size_t(V), 8));
}

void lm_head_backward(float* dx, float* dW, const float* dlogp, const float* logsm, const float* x, const float* W,
                      const int* targets, int T, int D, int V) {
  std::vector<float> dl(static_cast<size_t>(T) * V);
  parallel_for(size_t(T), [&](size_t t0, size_t t1) {
    for (size_t t = t0; t < t1; ++t) {
      float* g = dl.data() + t * V;
      const float* row = logsm + t * V;
      if (targets[t] < 0 || dlogp[t] == 0.0f) {
        std::fill(g, g + V, 0.0f);
        continue;
      }
      const float c = dlogp[t];
#pragma omp simd
      for (int v = 0; v < V; ++v) g[v] = -c * vexp(row[v]);
      g[targets[t]] += c;
    }
  }, rows_for(size_t(V), 8));
  gemm(false, false, T, D, V, 1.0f, dl.data(), V, W, D, 0.0f, dx, D);
  gemm(true, false, V, D, T, 1.0f, dl.data(), V, x, D, 1.0f, dW, D);
}

void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps, float wd,
           int step, float grad_scale) {
  const float c1 = 1.0f / (1.0f - std::pow(b1, float(step)));
  const float c2 = 1.0f / (1.0f - std::pow(b2, float(step)));
  parallel_for(n, [&](size_t a, size_t b) {
#pragma omp simd
    for (size_t i = a; i < b; ++i) {
      const float gi = g[i] * grad_scale;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      p[i] -= lr * ((m[i] * c1) / (std::sqrt(v[i] * c2) + eps) + wd * p[i]);
    }
  }, kElemChunk);
}

}  // namespace

const Kernels& cpu_fast_kernels() {
  static const Kernels k = {
      "cpu-fast",
      gemm,
      rmsnorm_forward,
      rmsnorm_backward,
      silu_forward,
      silu_backward,
      swiglu_forward,
      swiglu_backward,
      sigmoid_mul_forward,
      sigmoid_mul_backward,
      rope_forward,
      rope_backward,
      fast::attention_forward,
      fast::attention_backward,
      fast::attention_decode,
      fast::lightning_forward,
      fast::lightning_backward,
      fast::lightning_decode,
      router_forward,
      router_backward,
      naive::moe_aux_loss<float>,
      naive::moe_dispatch,
      gather_rows,
      moe_combine,
      moe_combine_backward,
      embedding_forward,
      embedding_backward,
      lm_head_forward,
      lm_head_backward,
      adamw,
  };
  return k;
}

}  // namespace m1
