// The naive reference kernels: plain loops over the math of docs/model.md, the oracle every other
// backend is tested against. Templated on the scalar T (float fills cpu_naive_kernels(); double is
// for finite-difference gradient tests); every sum accumulates in T. Angles (RoPE), decays and
// AdamW bias corrections are computed in double and then rounded to T.
// Outputs are ASSIGNED (=); parameter gradients dw/dW/dtable ACCUMULATE (+=).
// No global mutable state: every function may be called from several threads at once.
#include "kernels/cpu/naive.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/kernels.h"

namespace m1::naive {

namespace {

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

}  // namespace

// ---- GEMM ----

template <class T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
          int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      T acc = 0;
      for (int p = 0; p < K; ++p) {
        const T a = ta ? A[size_t(p) * lda + i] : A[size_t(i) * lda + p];  // op(A)[i,p]
        const T b = tb ? B[size_t(j) * ldb + p] : B[size_t(p) * ldb + j];  // op(B)[p,j]
        acc += a * b;
      }
      T& c = C[size_t(i) * ldc + j];
      c = beta == T(0) ? alpha * acc : alpha * acc + beta * c;  // beta = 0 never reads C
    }
  }
}

// ---- RMSNorm: y = x·r ⊙ w, r = (mean(x²) + eps)^(−1/2) ----

template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int N, int D, T eps) {
  for (int n = 0; n < N; ++n) {
    const T* xr = x + size_t(n) * D;
    T ss = 0;
    for (int i = 0; i < D; ++i) ss += xr[i] * xr[i];
    const T r = T(1) / std::sqrt(ss / T(D) + eps);
    rstd[n] = r;
    for (int i = 0; i < D; ++i) y[size_t(n) * D + i] = xr[i] * r * w[i];
  }
}

// dx_j = r·(dy_j w_j − x_j·r²·Σ_i dy_i w_i x_i / D);  dw_i += dy_i x_i r.
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int N, int D) {
  for (int n = 0; n < N; ++n) {
    const T* xr = x + size_t(n) * D;
    const T* dyr = dy + size_t(n) * D;
    const T r = rstd[n];
    T dot = 0;
    for (int i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
    const T c = r * r * dot / T(D);
    for (int i = 0; i < D; ++i) {
      dx[size_t(n) * D + i] = r * (dyr[i] * w[i] - xr[i] * c);
      dw[i] += dyr[i] * xr[i] * r;
    }
  }
}

// ---- elementwise ----

template <class T>
void silu_forward(T* y, const T* x, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
}

// d silu/dx = s·(1 + x·(1 − s)), s = sigmoid(x).
template <class T>
void silu_backward(T* dx, const T* dy, const T* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const T s = sigmoid(x[i]);
    dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
  }
}

template <class T>
void swiglu_forward(T* y, const T* a, const T* b, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = a[i] * sigmoid(a[i]) * b[i];
}

template <class T>
void swiglu_backward(T* da, T* db, const T* dy, const T* a, const T* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const T s = sigmoid(a[i]);
    const T g = dy[i];
    da[i] = g * b[i] * s * (T(1) + a[i] * (T(1) - s));
    db[i] = g * a[i] * s;
  }
}

template <class T>
void sigmoid_mul_forward(T* out, const T* g, const T* y, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = sigmoid(g[i]) * y[i];
}

template <class T>
void sigmoid_mul_backward(T* dg, T* dy, const T* dout, const T* g, const T* y, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const T s = sigmoid(g[i]);
    dg[i] = dout[i] * y[i] * s * (T(1) - s);
    dy[i] = dout[i] * s;
  }
}

// ---- RoPE (NeoX rotate-half on dims [0, r)) ----

namespace {

// Rotates every (i, i + r/2) pair of every head by sign·φ, φ = pos[t]·θ^(−2i/r) (in double).
template <class T>
void rope_rotate(T* x, int Tn, int nh, int d, int ld, int r, const int* pos, float theta, double sign) {
  const int half = r / 2;
  for (int t = 0; t < Tn; ++t) {
    for (int i = 0; i < half; ++i) {
      const double phi = sign * double(pos[t]) * std::pow(double(theta), -2.0 * i / double(r));
      const T c = T(std::cos(phi)), s = T(std::sin(phi));
      for (int h = 0; h < nh; ++h) {
        T* xh = x + size_t(t) * ld + size_t(h) * d;
        const T a = xh[i], b = xh[i + half];
        xh[i] = a * c - b * s;
        xh[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace

template <class T>
void rope_forward(T* x, int Tn, int nh, int d, int ld, int r, const int* pos, float theta) {
  rope_rotate(x, Tn, nh, d, ld, r, pos, theta, 1.0);
}

template <class T>
void rope_backward(T* dx, int Tn, int nh, int d, int ld, int r, const int* pos, float theta) {
  rope_rotate(dx, Tn, nh, d, ld, r, pos, theta, -1.0);
}

// ---- causal GQA softmax attention ----

// Per (head h, query t): s_j = q_t·k_j / sqrt(d) for j ≤ t; lse = log Σ exp(s_j);
// o_t = Σ_j exp(s_j − lse)·v_j.
template <class T>
void attention_forward(T* o, T* lse, const T* q, int ldq, const T* k, const T* v, int ldkv, int Tn, int H, int Hkv,
                       int d) {
  const T scale = T(1) / std::sqrt(T(d));
  std::vector<T> s(size_t(std::max(Tn, 1)));
  for (int h = 0; h < H; ++h) {
    const int g = h * Hkv / H;
    for (int t = 0; t < Tn; ++t) {
      const T* qt = q + size_t(t) * ldq + size_t(h) * d;
      T mx = -INFINITY;
      for (int j = 0; j <= t; ++j) {
        const T* kj = k + size_t(j) * ldkv + size_t(g) * d;
        T acc = 0;
        for (int c = 0; c < d; ++c) acc += qt[c] * kj[c];
        s[j] = acc * scale;
        mx = std::max(mx, s[j]);
      }
      T sum = 0;
      for (int j = 0; j <= t; ++j) sum += std::exp(s[j] - mx);
      const T l = mx + std::log(sum);
      lse[size_t(h) * Tn + t] = l;
      T* ot = o + size_t(t) * H * d + size_t(h) * d;
      for (int c = 0; c < d; ++c) ot[c] = 0;
      for (int j = 0; j <= t; ++j) {
        const T p = std::exp(s[j] - l);
        const T* vj = v + size_t(j) * ldkv + size_t(g) * d;
        for (int c = 0; c < d; ++c) ot[c] += p * vj[c];
      }
    }
  }
}

// P_tj = exp(s_tj − lse_t); dP_tj = dO_t·v_j; dS_tj = P_tj (dP_tj − dO_t·O_t);
// dq_t = scale Σ_j dS_tj k_j; dk_j = scale Σ_t dS_tj q_t; dv_j = Σ_t P_tj dO_t (summed over the
// query heads that share the KV head).
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* o, const T* lse, const T* q, int ldq, const T* k,
                        const T* v, int ldkv, int Tn, int H, int Hkv, int d) {
  const T scale = T(1) / std::sqrt(T(d));
  for (int t = 0; t < Tn; ++t) {
    for (int c = 0; c < Hkv * d; ++c) {
      dk[size_t(t) * ldkv + c] = 0;
      dv[size_t(t) * ldkv + c] = 0;
    }
  }
  for (int h = 0; h < H; ++h) {
    const int g = h * Hkv / H;
    for (int t = 0; t < Tn; ++t) {
      const T* qt = q + size_t(t) * ldq + size_t(h) * d;
      const T* dot = dout + size_t(t) * H * d + size_t(h) * d;
      const T* ot = o + size_t(t) * H * d + size_t(h) * d;
      T* dqt = dq + size_t(t) * ldq + size_t(h) * d;
      T Dt = 0;
      for (int c = 0; c < d; ++c) Dt += dot[c] * ot[c];
      for (int c = 0; c < d; ++c) dqt[c] = 0;
      const T l = lse[size_t(h) * Tn + t];
      for (int j = 0; j <= t; ++j) {
        const T* kj = k + size_t(j) * ldkv + size_t(g) * d;
        const T* vj = v + size_t(j) * ldkv + size_t(g) * d;
        T sc = 0, dp = 0;
        for (int c = 0; c < d; ++c) {
          sc += qt[c] * kj[c];
          dp += dot[c] * vj[c];
        }
        const T p = std::exp(sc * scale - l);
        const T ds = p * (dp - Dt);
        T* dkj = dk + size_t(j) * ldkv + size_t(g) * d;
        T* dvj = dv + size_t(j) * ldkv + size_t(g) * d;
        for (int c = 0; c < d; ++c) {
          dqt[c] += scale * ds * kj[c];
          dkj[c] += scale * ds * qt[c];
          dvj[c] += p * dot[c];
        }
      }
    }
  }
}

template <class T>
void attention_decode(T* o, const T* q, const T* const* kcache, const T* const* vcache, const int* len, int B, int H,
                      int Hkv, int d) {
  const T scale = T(1) / std::sqrt(T(d));
  const size_t ldkv = size_t(Hkv) * d;
  std::vector<T> s;
  for (int b = 0; b < B; ++b) {
    const int n = len[b];
    s.assign(size_t(std::max(n, 1)), T(0));
    for (int h = 0; h < H; ++h) {
      const int g = h * Hkv / H;
      const T* qh = q + size_t(b) * H * d + size_t(h) * d;
      T mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        const T* kj = kcache[b] + size_t(j) * ldkv + size_t(g) * d;
        T acc = 0;
        for (int c = 0; c < d; ++c) acc += qh[c] * kj[c];
        s[j] = acc * scale;
        mx = std::max(mx, s[j]);
      }
      T sum = 0;
      for (int j = 0; j < n; ++j) sum += std::exp(s[j] - mx);
      const T l = mx + std::log(sum);
      T* oh = o + size_t(b) * H * d + size_t(h) * d;
      for (int c = 0; c < d; ++c) oh[c] = 0;
      for (int j = 0; j < n; ++j) {
        const T p = std::exp(s[j] - l);
        const T* vj = vcache[b] + size_t(j) * ldkv + size_t(g) * d;
        for (int c = 0; c < d; ++c) oh[c] += p * vj[c];
      }
    }
  }
}

// ---- lightning attention: the recurrence kv_t = λ·kv_{t−1} + k_tᵀv_t, o_t = q_t·kv_t ----

namespace {

// One step on one head: kv [d,d] updated in place, o_t[j] = Σ_i q_i kv[i,j].
template <class T>
void lightning_step(T* ot, T* kv, const T* qt, const T* kt, const T* vt, T lam, int d) {
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) kv[size_t(i) * d + j] = lam * kv[size_t(i) * d + j] + kt[i] * vt[j];
  for (int j = 0; j < d; ++j) {
    T acc = 0;
    for (int i = 0; i < d; ++i) acc += qt[i] * kv[size_t(i) * d + j];
    ot[j] = acc;
  }
}

}  // namespace

template <class T>
void lightning_forward(T* o, T* state_out, const T* qkv, const T* state_in, const float* lambda, int Tn, int H, int d,
                       int block) {
  const size_t dd = size_t(d) * d;
  const size_t row = size_t(H) * 3 * d;
  std::vector<T> kv(dd);
  for (int h = 0; h < H; ++h) {
    const T lam = T(lambda[h]);
    for (size_t i = 0; i < dd; ++i) kv[i] = state_in ? state_in[size_t(h) * dd + i] : T(0);
    for (int t = 0; t < Tn; ++t) {
      const T* base = qkv + size_t(t) * row + size_t(h) * 3 * d;
      lightning_step(o + size_t(t) * H * d + size_t(h) * d, kv.data(), base, base + d, base + 2 * d, lam, d);
    }
    if (state_out)
      for (size_t i = 0; i < dd; ++i) state_out[size_t(h) * dd + i] = kv[i];
  }
}

// From kv_0 = 0. Forward sweep: dq_t = do_t·kv_tᵀ. Reverse sweep: dkv_t = λ·dkv_{t+1} + q_tᵀdo_t,
// dk_t = v_t·dkv_tᵀ, dv_t = k_t·dkv_t.
template <class T>
void lightning_backward(T* dqkv, const T* dout, const T* qkv, const float* lambda, int Tn, int H, int d, int block) {
  const size_t dd = size_t(d) * d;
  const size_t row = size_t(H) * 3 * d;
  std::vector<T> kv(dd), dkv(dd);
  for (int h = 0; h < H; ++h) {
    const T lam = T(lambda[h]);
    std::fill(kv.begin(), kv.end(), T(0));
    for (int t = 0; t < Tn; ++t) {
      const T* kt = qkv + size_t(t) * row + size_t(h) * 3 * d + d;
      const T* vt = kt + d;
      const T* dot = dout + size_t(t) * H * d + size_t(h) * d;
      T* dqt = dqkv + size_t(t) * row + size_t(h) * 3 * d;
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) kv[size_t(i) * d + j] = lam * kv[size_t(i) * d + j] + kt[i] * vt[j];
      for (int i = 0; i < d; ++i) {
        T acc = 0;
        for (int j = 0; j < d; ++j) acc += dot[j] * kv[size_t(i) * d + j];
        dqt[i] = acc;
      }
    }
    std::fill(dkv.begin(), dkv.end(), T(0));
    for (int t = Tn - 1; t >= 0; --t) {
      const T* qt = qkv + size_t(t) * row + size_t(h) * 3 * d;
      const T* kt = qt + d;
      const T* vt = qt + 2 * d;
      const T* dot = dout + size_t(t) * H * d + size_t(h) * d;
      T* dkt = dqkv + size_t(t) * row + size_t(h) * 3 * d + d;
      T* dvt = dkt + d;
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) dkv[size_t(i) * d + j] = lam * dkv[size_t(i) * d + j] + qt[i] * dot[j];
      for (int i = 0; i < d; ++i) {
        T acc = 0;
        for (int j = 0; j < d; ++j) acc += vt[j] * dkv[size_t(i) * d + j];
        dkt[i] = acc;
      }
      for (int j = 0; j < d; ++j) {
        T acc = 0;
        for (int i = 0; i < d; ++i) acc += kt[i] * dkv[size_t(i) * d + j];
        dvt[j] = acc;
      }
    }
  }
}

template <class T>
void lightning_decode(T* o, T* const* states, const T* qkv, const float* lambda, int B, int H, int d) {
  const size_t dd = size_t(d) * d;
  const size_t row = size_t(H) * 3 * d;
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      const T* base = qkv + size_t(b) * row + size_t(h) * 3 * d;
      lightning_step(o + size_t(b) * H * d + size_t(h) * d, states[b] + size_t(h) * dd, base, base + d, base + 2 * d,
                     T(lambda[h]), d);
    }
  }
}

// ---- MoE router ----

template <class T>
void router_forward(T* probs, int* top_idx, T* top_w, const T* logits, int Tn, int E, int k) {
  std::vector<char> taken(size_t(std::max(E, 1)));
  for (int t = 0; t < Tn; ++t) {
    const T* lt = logits + size_t(t) * E;
    T* pt = probs + size_t(t) * E;
    T mx = -INFINITY;
    for (int e = 0; e < E; ++e) mx = std::max(mx, lt[e]);
    T sum = 0;
    for (int e = 0; e < E; ++e) {
      pt[e] = std::exp(lt[e] - mx);
      sum += pt[e];
    }
    for (int e = 0; e < E; ++e) pt[e] /= sum;
    // Top-k by repeated selection: strict '>' keeps the lower index on ties.
    std::fill(taken.begin(), taken.end(), char(0));
    T S = 0;
    for (int s = 0; s < k; ++s) {
      int best = -1;
      for (int e = 0; e < E; ++e)
        if (!taken[e] && (best < 0 || pt[e] > pt[best])) best = e;
      taken[best] = 1;
      top_idx[size_t(t) * k + s] = best;
      S += pt[best];
    }
    for (int s = 0; s < k; ++s) top_w[size_t(t) * k + s] = pt[top_idx[size_t(t) * k + s]] / S;
  }
}

// Through w_j = p_j/S: dp_j = (dw_j − Σ_i dw_i w_i)/S on the top slots; + dprobs; then the softmax:
// dlogit = p ⊙ (dp − Σ p·dp).
template <class T>
void router_backward(T* dlogits, const T* dtop_w, const T* dprobs, const T* probs, const int* top_idx, int Tn, int E,
                     int k) {
  std::vector<T> dp(size_t(std::max(E, 1)));
  for (int t = 0; t < Tn; ++t) {
    const T* pt = probs + size_t(t) * E;
    const int* it = top_idx + size_t(t) * k;
    const T* dwt = dtop_w + size_t(t) * k;
    for (int e = 0; e < E; ++e) dp[e] = dprobs ? dprobs[size_t(t) * E + e] : T(0);
    T S = 0;
    for (int s = 0; s < k; ++s) S += pt[it[s]];
    T dot = 0;  // Σ_i dw_i w_i
    for (int s = 0; s < k; ++s) dot += dwt[s] * (pt[it[s]] / S);
    for (int s = 0; s < k; ++s) dp[it[s]] += (dwt[s] - dot) / S;
    T pdp = 0;
    for (int e = 0; e < E; ++e) pdp += pt[e] * dp[e];
    for (int e = 0; e < E; ++e) dlogits[size_t(t) * E + e] = pt[e] * (dp[e] - pdp);
  }
}

template <class T>
T moe_aux_loss(T* dprobs, const T* probs, const int* top_idx, int Tn, int E, int k, T coef, T grad_scale) {
  std::vector<T> f(size_t(std::max(E, 1)), T(0)), P(size_t(std::max(E, 1)), T(0));
  for (size_t i = 0; i < size_t(Tn) * k; ++i) f[top_idx[i]] += T(1);
  for (int e = 0; e < E; ++e) f[e] /= T(Tn) * T(k);
  for (int t = 0; t < Tn; ++t)
    for (int e = 0; e < E; ++e) P[e] += probs[size_t(t) * E + e];
  T loss = 0;
  for (int e = 0; e < E; ++e) loss += f[e] * (P[e] / T(Tn));
  loss *= coef * T(E);
  if (dprobs) {
    for (int t = 0; t < Tn; ++t)
      for (int e = 0; e < E; ++e) dprobs[size_t(t) * E + e] = grad_scale * coef * T(E) * f[e] / T(Tn);
  }
  return loss;
}

void moe_dispatch(int* offsets, int* perm, const int* top_idx, int Tn, int E, int k) {
  const int n = Tn * k;
  for (int e = 0; e <= E; ++e) offsets[e] = 0;
  for (int i = 0; i < n; ++i) offsets[top_idx[i] + 1]++;
  for (int e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  std::vector<int> next(offsets, offsets + std::max(E, 1));
  for (int i = 0; i < n; ++i) perm[next[top_idx[i]]++] = i;  // i = t·k + slot, in token order
}

template <class T>
void gather_rows(T* dst, const T* src, const int* rows, int n, int D) {
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < D; ++c) dst[size_t(i) * D + c] = src[size_t(rows[i]) * D + c];
}

namespace {

// inv[a] = the row of y holding assignment a = t·k + slot.
std::vector<int> inverse_perm(const int* perm, int n) {
  std::vector<int> inv(size_t(std::max(n, 0)));
  for (int i = 0; i < n; ++i) inv[perm[i]] = i;
  return inv;
}

}  // namespace

// Sums each token's slots in slot order (independent of the grouping).
template <class T>
void moe_combine(T* out, const T* y, const int* perm, const T* top_w, int Tn, int k, int D) {
  const std::vector<int> inv = inverse_perm(perm, Tn * k);
  for (int t = 0; t < Tn; ++t) {
    T* ot = out + size_t(t) * D;
    for (int c = 0; c < D; ++c) ot[c] = 0;
    for (int s = 0; s < k; ++s) {
      const size_t a = size_t(t) * k + s;
      const T w = top_w[a];
      const T* yr = y + size_t(inv[a]) * D;
      for (int c = 0; c < D; ++c) ot[c] += w * yr[c];
    }
  }
}

template <class T>
void moe_combine_backward(T* dy, T* dtop_w, const T* dout, const T* y, const int* perm, const T* top_w, int Tn, int k,
                          int D) {
  for (int i = 0; i < Tn * k; ++i) {
    const int a = perm[i];
    const int t = a / k;
    const T* go = dout + size_t(t) * D;
    const T* yr = y + size_t(i) * D;
    T acc = 0;
    for (int c = 0; c < D; ++c) {
      dy[size_t(i) * D + c] = top_w[a] * go[c];
      acc += go[c] * yr[c];
    }
    dtop_w[a] = acc;
  }
}

// ---- embedding ----

template <class T>
void embedding_forward(T* h, const int* tokens, const T* table, int Tn, int D) {
  for (int t = 0; t < Tn; ++t)
    for (int c = 0; c < D; ++c) h[size_t(t) * D + c] = table[size_t(tokens[t]) * D + c];
}

template <class T>
void embedding_backward(T* dtable, const T* dh, const int* tokens, int Tn, int D) {
  for (int t = 0; t < Tn; ++t)
    for (int c = 0; c < D; ++c) dtable[size_t(tokens[t]) * D + c] += dh[size_t(t) * D + c];
}

// ---- LM head with log-softmax ----

template <class T>
void lm_head_forward(T* logp, T* entropy, T* logsm, const T* x, const T* W, const int* targets, int Tn, int D, int V) {
  for (int t = 0; t < Tn; ++t) {
    const T* xt = x + size_t(t) * D;
    T* lt = logsm + size_t(t) * V;
    T mx = -INFINITY;
    for (int v = 0; v < V; ++v) {
      const T* wv = W + size_t(v) * D;
      T acc = 0;
      for (int c = 0; c < D; ++c) acc += xt[c] * wv[c];
      lt[v] = acc;
      mx = std::max(mx, acc);
    }
    T sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(lt[v] - mx);
    const T lse = mx + std::log(sum);
    for (int v = 0; v < V; ++v) lt[v] -= lse;
    logp[t] = targets[t] >= 0 ? lt[targets[t]] : T(0);
    if (entropy) {
      T h = 0;
      for (int v = 0; v < V; ++v) h -= std::exp(lt[v]) * lt[v];
      entropy[t] = h;
    }
  }
}

// dlogits[t,v] = dlogp[t]·(onehot(target) − p) (a zero row where target < 0);
// dx = dlogits·W (assigned), dW += dlogitsᵀ·x.
template <class T>
void lm_head_backward(T* dx, T* dW, const T* dlogp, const T* logsm, const T* x, const T* W, const int* targets, int Tn,
                      int D, int V) {
  for (int t = 0; t < Tn; ++t) {
    T* dxt = dx + size_t(t) * D;
    for (int c = 0; c < D; ++c) dxt[c] = 0;
    if (targets[t] < 0) continue;
    const T* xt = x + size_t(t) * D;
    const T* lt = logsm + size_t(t) * V;
    for (int v = 0; v < V; ++v) {
      const T g = dlogp[t] * ((v == targets[t] ? T(1) : T(0)) - std::exp(lt[v]));
      const T* wv = W + size_t(v) * D;
      T* dwv = dW + size_t(v) * D;
      for (int c = 0; c < D; ++c) {
        dxt[c] += g * wv[c];
        dwv[c] += g * xt[c];
      }
    }
  }
}

// ---- AdamW ----

template <class T>
void adamw(T* p, const T* g, T* m, T* v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
           int step, float grad_scale) {
  const T b1 = T(beta1), b2 = T(beta2);
  const T bc1 = T(1.0 - std::pow(double(beta1), double(step)));
  const T bc2 = T(1.0 - std::pow(double(beta2), double(step)));
  for (size_t i = 0; i < n; ++i) {
    const T gi = g[i] * T(grad_scale);
    m[i] = b1 * m[i] + (T(1) - b1) * gi;
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    const T mhat = m[i] / bc1, vhat = v[i] / bc2;
    p[i] -= T(lr) * (mhat / (std::sqrt(vhat) + T(eps)) + T(weight_decay) * p[i]);
  }
}

// ---- explicit instantiations ----

#define M1_NAIVE_INSTANTIATE(T)                                                                                       \
  template void gemm<T>(bool, bool, int, int, int, T, const T*, int, const T*, int, T, T*, int);                      \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int, int, T);                                          \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int, int);                        \
  template void silu_forward<T>(T*, const T*, size_t);                                                                \
  template void silu_backward<T>(T*, const T*, const T*, size_t);                                                     \
  template void swiglu_forward<T>(T*, const T*, const T*, size_t);                                                    \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, size_t);                                     \
  template void sigmoid_mul_forward<T>(T*, const T*, const T*, size_t);                                               \
  template void sigmoid_mul_backward<T>(T*, T*, const T*, const T*, const T*, size_t);                                \
  template void rope_forward<T>(T*, int, int, int, int, int, const int*, float);                                      \
  template void rope_backward<T>(T*, int, int, int, int, int, const int*, float);                                     \
  template void attention_forward<T>(T*, T*, const T*, int, const T*, const T*, int, int, int, int, int);             \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int, const T*, const T*,    \
                                      int, int, int, int, int);                                                       \
  template void attention_decode<T>(T*, const T*, const T* const*, const T* const*, const int*, int, int, int, int);  \
  template void lightning_forward<T>(T*, T*, const T*, const T*, const float*, int, int, int, int);                   \
  template void lightning_backward<T>(T*, const T*, const T*, const float*, int, int, int, int);                      \
  template void lightning_decode<T>(T*, T* const*, const T*, const float*, int, int, int);                            \
  template void router_forward<T>(T*, int*, T*, const T*, int, int, int);                                             \
  template void router_backward<T>(T*, const T*, const T*, const T*, const int*, int, int, int);                      \
  template T moe_aux_loss<T>(T*, const T*, const int*, int, int, int, T, T);                                          \
  template void gather_rows<T>(T*, const T*, const int*, int, int);                                                   \
  template void moe_combine<T>(T*, const T*, const int*, const T*, int, int, int);                                    \
  template void moe_combine_backward<T>(T*, T*, const T*, const T*, const int*, const T*, int, int, int);             \
  template void embedding_forward<T>(T*, const int*, const T*, int, int);                                             \
  template void embedding_backward<T>(T*, const T*, const int*, int, int);                                            \
  template void lm_head_forward<T>(T*, T*, T*, const T*, const T*, const int*, int, int, int);                        \
  template void lm_head_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const int*, int, int, int);       \
  template void adamw<T>(T*, const T*, T*, T*, size_t, float, float, float, float, float, int, float);

M1_NAIVE_INSTANTIATE(float)
M1_NAIVE_INSTANTIATE(double)
#undef M1_NAIVE_INSTANTIATE

}  // namespace m1::naive

namespace m1 {

const Kernels& cpu_naive_kernels() {
  static const Kernels k = {
      .name = "cpu-naive",
      .gemm = naive::gemm<float>,
      .rmsnorm_forward = naive::rmsnorm_forward<float>,
      .rmsnorm_backward = naive::rmsnorm_backward<float>,
      .silu_forward = naive::silu_forward<float>,
      .silu_backward = naive::silu_backward<float>,
      .swiglu_forward = naive::swiglu_forward<float>,
      .swiglu_backward = naive::swiglu_backward<float>,
      .sigmoid_mul_forward = naive::sigmoid_mul_forward<float>,
      .sigmoid_mul_backward = naive::sigmoid_mul_backward<float>,
      .rope_forward = naive::rope_forward<float>,
      .rope_backward = naive::rope_backward<float>,
      .attention_forward = naive::attention_forward<float>,
      .attention_backward = naive::attention_backward<float>,
      .attention_decode = naive::attention_decode<float>,
      .lightning_forward = naive::lightning_forward<float>,
      .lightning_backward = naive::lightning_backward<float>,
      .lightning_decode = naive::lightning_decode<float>,
      .router_forward = naive::router_forward<float>,
      .router_backward = naive::router_backward<float>,
      .moe_aux_loss = naive::moe_aux_loss<float>,
      .moe_dispatch = naive::moe_dispatch,
      .gather_rows = naive::gather_rows<float>,
      .moe_combine = naive::moe_combine<float>,
      .moe_combine_backward = naive::moe_combine_backward<float>,
      .embedding_forward = naive::embedding_forward<float>,
      .embedding_backward = naive::embedding_backward<float>,
      .lm_head_forward = naive::lm_head_forward<float>,
      .lm_head_backward = naive::lm_head_backward<float>,
      .adamw = naive::adamw<float>,
  };
  return k;
}

// docs/model.md: for a power of two n, s_h = 2^(−8(h+1)/n); otherwise with c = 2^floor(log2 H):
// slopes(c) followed by slopes(2c)[0::2][:H−c].
void alibi_slopes(double* s, int H) {
  if (H <= 0) return;
  int c = 1;
  while (c * 2 <= H) c *= 2;
  for (int h = 0; h < c; ++h) s[h] = std::exp2(-8.0 * (h + 1) / c);
  for (int j = 0; j < H - c; ++j) s[c + j] = std::exp2(-8.0 * (2 * j + 1) / (2.0 * c));
}

// λ_h = exp(−s_h·(1 − l/(L−1) + 1e−5)); L == 1: exp(−s_h·(1 + 1e−5)). In double, then rounded.
void lightning_decay(float* lambda, int H, int layer, int num_layers) {
  std::vector<double> s(size_t(std::max(H, 1)));
  alibi_slopes(s.data(), H);
  const double f = num_layers > 1 ? 1.0 - double(layer) / double(num_layers - 1) + 1e-5 : 1.0 + 1e-5;
  for (int h = 0; h < H; ++h) lambda[h] = float(std::exp(-s[h] * f));
}

}  // namespace m1
