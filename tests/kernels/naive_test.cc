// Tests of the naive reference kernels (kernels/cpu/naive.cc), the oracle of every other backend.
// Every backward is checked against central finite differences of L = Σ r ⊙ output (fixed random r)
// in double precision on tiny shapes; forward values are checked against direct formulas, and
// the decode forms against the training forms. Seeds are fixed and reported on failure.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "base/rng.h"
#include "kernels/cpu/naive.h"
#include "kernels/kernels.h"

namespace m1 {
namespace {

using Vec = std::vector<double>;

Vec randn(Rng& rng, size_t n, double scale = 1.0) {
  Vec v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<size_t> all_indices(size_t n) {
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t(0));
  return idx;
}

// Compares analytic[i] with the central difference (L(x+h) − L(x−h))/2h at every i in idx:
// |analytic − numeric| ≤ tol·max(1, |numeric|). Reports the worst element.
void check_grad(const std::string& what, const std::function<double()>& loss, double* x, const double* analytic,
                const std::vector<size_t>& idx, double tol = 1e-6, double h = 1e-6) {
  double worst = 0;
  size_t worst_i = 0;
  double worst_a = 0, worst_n = 0;
  for (size_t i : idx) {
    const double xi = x[i];
    x[i] = xi + h;
    const double lp = loss();
    x[i] = xi - h;
    const double lm = loss();
    x[i] = xi;
    const double num = (lp - lm) / (2 * h);
    const double err = std::abs(analytic[i] - num) / std::max(1.0, std::abs(num));
    if (err > worst || !std::isfinite(err)) {
      worst = std::isfinite(err) ? err : std::numeric_limits<double>::infinity();
      worst_i = i;
      worst_a = analytic[i];
      worst_n = num;
    }
  }
  INFO(what, ": worst element ", worst_i, " analytic ", worst_a, " numeric ", worst_n);
  CHECK(worst <= tol);
}

void check_grad(const std::string& what, const std::function<double()>& loss, Vec& x, const Vec& analytic,
                double tol = 1e-6) {
  REQUIRE(x.size() == analytic.size());
  check_grad(what, loss, x.data(), analytic.data(), all_indices(x.size()), tol);
}

double max_abs_diff(const Vec& a, const Vec& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// ---- GEMM ----

TEST_CASE("naive gemm: all transpose combinations and beta match the direct formula") {
  const uint64_t seed = 11;
  CAPTURE(seed);
  Rng rng(seed);
  const int M = 3, N = 4, K = 5;
  const Vec Aop = randn(rng, M * K), Bop = randn(rng, K * N);  // logical op(A) [M,K], op(B) [K,N]
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      CAPTURE(ta);
      CAPTURE(tb);
      const int lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 3, ldc = N + 1;
      Vec A((ta ? K : M) * size_t(lda), 99.0), B((tb ? N : K) * size_t(ldb), 99.0);
      for (int i = 0; i < M; ++i)
        for (int p = 0; p < K; ++p) (ta ? A[size_t(p) * lda + i] : A[size_t(i) * lda + p]) = Aop[i * K + p];
      for (int p = 0; p < K; ++p)
        for (int j = 0; j < N; ++j) (tb ? B[size_t(j) * ldb + p] : B[size_t(p) * ldb + j]) = Bop[p * N + j];
      const Vec C0 = randn(rng, size_t(M) * ldc);
      for (double beta : {0.0, 0.5}) {
        CAPTURE(beta);
        const double alpha = 1.5;
        Vec C = C0;
        if (beta == 0.0)  // beta = 0 must not read C
          for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) C[size_t(i) * ldc + j] = std::numeric_limits<double>::quiet_NaN();
        naive::gemm<double>(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        for (int i = 0; i < M; ++i) {
          for (int j = 0; j < N; ++j) {
            double s = 0;
            for (int p = 0; p < K; ++p) s += Aop[i * K + p] * Bop[p * N + j];
            const double want = alpha * s + beta * C0[size_t(i) * ldc + j];
            CHECK(C[size_t(i) * ldc + j] == doctest::Approx(want).epsilon(1e-12));
          }
          CHECK(C[size_t(i) * ldc + N] == C0[size_t(i) * ldc + N]);  // padding untouched
        }
      }
    }
  }
}

// ---- RMSNorm ----

TEST_CASE("naive rmsnorm: value, dx and dw (accumulated) match finite differences") {
  const uint64_t seed = 21;
  CAPTURE(seed);
  Rng rng(seed);
  const int N = 3, D = 5;
  const double eps = 0.05;
  Vec x = randn(rng, N * D), w = randn(rng, D), r = randn(rng, N * D);
  Vec y(N * D), rstd(N);
  auto loss = [&] {
    naive::rmsnorm_forward<double>(y.data(), rstd.data(), x.data(), w.data(), N, D, eps);
    return dot(r, y);
  };
  loss();
  for (int n = 0; n < N; ++n) {
    double ss = 0;
    for (int i = 0; i < D; ++i) ss += x[n * D + i] * x[n * D + i];
    CHECK(rstd[n] == doctest::Approx(1 / std::sqrt(ss / D + eps)).epsilon(1e-14));
    CHECK(y[n * D + 2] == doctest::Approx(x[n * D + 2] * rstd[n] * w[2]).epsilon(1e-14));
  }
  Vec dx(N * D, 123.0), dw0 = randn(rng, D), dw = dw0;
  naive::rmsnorm_backward<double>(dx.data(), dw.data(), r.data(), x.data(), w.data(), rstd.data(), N, D);
  for (int i = 0; i < D; ++i) dw[i] -= dw0[i];  // dw accumulates onto its previous contents
  check_grad("rmsnorm dx", loss, x, dx);
  check_grad("rmsnorm dw", loss, w, dw);
}

// ---- elementwise ----

TEST_CASE("naive silu, swiglu, sigmoid_mul: backward matches finite differences") {
  const uint64_t seed = 31;
  CAPTURE(seed);
  Rng rng(seed);
  const size_t n = 9;
  Vec a = randn(rng, n, 3.0), b = randn(rng, n), r = randn(rng, n), y(n);
  SUBCASE("silu") {
    auto loss = [&] {
      naive::silu_forward<double>(y.data(), a.data(), n);
      return dot(r, y);
    };
    loss();
    CHECK(y[0] == doctest::Approx(a[0] / (1 + std::exp(-a[0]))).epsilon(1e-14));
    Vec da(n);
    naive::silu_backward<double>(da.data(), r.data(), a.data(), n);
    check_grad("silu dx", loss, a, da);
  }
  SUBCASE("swiglu") {
    auto loss = [&] {
      naive::swiglu_forward<double>(y.data(), a.data(), b.data(), n);
      return dot(r, y);
    };
    loss();
    CHECK(y[1] == doctest::Approx(a[1] / (1 + std::exp(-a[1])) * b[1]).epsilon(1e-14));
    Vec da(n), db(n);
    naive::swiglu_backward<double>(da.data(), db.data(), r.data(), a.data(), b.data(), n);
    check_grad("swiglu da", loss, a, da);
    check_grad("swiglu db", loss, b, db);
  }
  SUBCASE("sigmoid_mul") {
    auto loss = [&] {
      naive::sigmoid_mul_forward<double>(y.data(), a.data(), b.data(), n);
      return dot(r, y);
    };
    loss();
    CHECK(y[2] == doctest::Approx(b[2] / (1 + std::exp(-a[2]))).epsilon(1e-14));
    Vec dg(n), dy(n);
    naive::sigmoid_mul_backward<double>(dg.data(), dy.data(), r.data(), a.data(), b.data(), n);
    check_grad("sigmoid_mul dg", loss, a, dg);
    check_grad("sigmoid_mul dy", loss, b, dy);
  }
}

// ---- RoPE ----

TEST_CASE("naive rope: value, pass-through dims, padding, and backward is the transpose") {
  const uint64_t seed = 41;
  CAPTURE(seed);
  Rng rng(seed);
  const int T = 3, nh = 2, d = 6, r = 4, ld = nh * d + 3;
  const int pos[T] = {0, 3, 7};
  const float theta = 100.0f;
  const Vec x0 = randn(rng, size_t(T) * ld), rr = randn(rng, size_t(T) * ld);
  Vec x = x0;
  naive::rope_forward<double>(x.data(), T, nh, d, ld, r, pos, theta);
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < nh; ++h) {
      const size_t o = size_t(t) * ld + size_t(h) * d;
      for (int i = 0; i < r / 2; ++i) {
        const double phi = pos[t] * std::pow(double(theta), -2.0 * i / r);
        const double a = x0[o + i], b = x0[o + i + r / 2];
        CHECK(x[o + i] == doctest::Approx(a * std::cos(phi) - b * std::sin(phi)).epsilon(1e-13));
        CHECK(x[o + i + r / 2] == doctest::Approx(b * std::cos(phi) + a * std::sin(phi)).epsilon(1e-13));
      }
      for (int i = r; i < d; ++i) CHECK(x[o + i] == x0[o + i]);
    }
    for (int c = nh * d; c < ld; ++c) CHECK(x[size_t(t) * ld + c] == x0[size_t(t) * ld + c]);
  }
  // Backward undoes forward (rotation by −φ).
  Vec back = x;
  naive::rope_backward<double>(back.data(), T, nh, d, ld, r, pos, theta);
  CHECK(max_abs_diff(back, x0) < 1e-13);
  // Gradient: ∂(Σ rr ⊙ rope(x))/∂x = rope_backward(rr).
  Vec xv = x0, y(xv.size());
  auto loss = [&] {
    y = xv;
    naive::rope_forward<double>(y.data(), T, nh, d, ld, r, pos, theta);
    return dot(rr, y);
  };
  Vec g = rr;
  naive::rope_backward<double>(g.data(), T, nh, d, ld, r, pos, theta);
  check_grad("rope dx", loss, xv, g);
}

// ---- softmax attention ----

TEST_CASE("naive attention: GQA values, strided gradients, lse and decode") {
  const uint64_t seed = 51;
  CAPTURE(seed);
  Rng rng(seed);
  const int T = 5, H = 4, Hkv = 2, d = 4;
  const int ldq = H * d + 3, ldkv = Hkv * d + 2;
  Vec q = randn(rng, size_t(T) * ldq), k = randn(rng, size_t(T) * ldkv), v = randn(rng, size_t(T) * ldkv);
  const Vec r = randn(rng, size_t(T) * H * d);
  Vec o(size_t(T) * H * d), lse(size_t(H) * T);
  auto loss = [&] {
    naive::attention_forward<double>(o.data(), lse.data(), q.data(), ldq, k.data(), v.data(), ldkv, T, H, Hkv, d);
    return dot(r, o);
  };
  loss();

  // Direct formula; query head h reads KV head h·Hkv/H.
  const double scale = 1 / std::sqrt(double(d));
  for (int h = 0; h < H; ++h) {
    const int g = h * Hkv / H;
    for (int t = 0; t < T; ++t) {
      std::vector<double> s(t + 1);
      double z = 0;
      for (int j = 0; j <= t; ++j) {
        double a = 0;
        for (int c = 0; c < d; ++c) a += q[size_t(t) * ldq + h * d + c] * k[size_t(j) * ldkv + g * d + c];
        s[j] = std::exp(a * scale);
        z += s[j];
      }
      CHECK(lse[size_t(h) * T + t] == doctest::Approx(std::log(z)).epsilon(1e-13));
      for (int c = 0; c < d; ++c) {
        double want = 0;
        for (int j = 0; j <= t; ++j) want += s[j] / z * v[size_t(j) * ldkv + g * d + c];
        CHECK(o[size_t(t) * H * d + h * d + c] == doctest::Approx(want).epsilon(1e-12));
      }
    }
  }

  // Gradients; padding columns of dq/dk/dv are never written.
  const double kSentinel = 777.0;
  Vec dq(q.size(), kSentinel), dk(k.size(), kSentinel), dv(v.size(), kSentinel);
  naive::attention_backward<double>(dq.data(), dk.data(), dv.data(), r.data(), o.data(), lse.data(), q.data(), ldq,
                                    k.data(), v.data(), ldkv, T, H, Hkv, d);
  std::vector<size_t> qi, kvi;
  for (int t = 0; t < T; ++t) {
    for (int c = 0; c < ldq; ++c) {
      if (c < H * d) qi.push_back(size_t(t) * ldq + c);
      else CHECK(dq[size_t(t) * ldq + c] == kSentinel);
    }
    for (int c = 0; c < ldkv; ++c) {
      if (c < Hkv * d) {
        kvi.push_back(size_t(t) * ldkv + c);
      } else {
        CHECK(dk[size_t(t) * ldkv + c] == kSentinel);
        CHECK(dv[size_t(t) * ldkv + c] == kSentinel);
      }
    }
  }
  check_grad("attention dq", loss, q.data(), dq.data(), qi);
  check_grad("attention dk", loss, k.data(), dk.data(), kvi);
  check_grad("attention dv", loss, v.data(), dv.data(), kvi);

  // Decode: sequence b holds the first b+1 rows; its one query is row b. Equals forward row b.
  loss();  // o at the unperturbed inputs again (check_grad leaves the last perturbed forward in o)
  Vec kc(size_t(T) * Hkv * d), vc(size_t(T) * Hkv * d), qd(size_t(T) * H * d);
  for (int t = 0; t < T; ++t) {
    for (int c = 0; c < Hkv * d; ++c) {
      kc[size_t(t) * Hkv * d + c] = k[size_t(t) * ldkv + c];
      vc[size_t(t) * Hkv * d + c] = v[size_t(t) * ldkv + c];
    }
    for (int c = 0; c < H * d; ++c) qd[size_t(t) * H * d + c] = q[size_t(t) * ldq + c];
  }
  std::vector<const double*> kp(T, kc.data()), vp(T, vc.data());
  std::vector<int> len(T);
  for (int b = 0; b < T; ++b) len[b] = b + 1;
  Vec od(size_t(T) * H * d);
  naive::attention_decode<double>(od.data(), qd.data(), kp.data(), vp.data(), len.data(), T, H, Hkv, d);
  CHECK(max_abs_diff(od, o) < 1e-13);
}

// ---- lightning attention ----

struct LightningCase {
  static constexpr int T = 7, H = 2, d = 3;
  Vec qkv;
  std::vector<float> lambda = {0.9f, 0.6f};
  explicit LightningCase(Rng& rng) : qkv(randn(rng, size_t(T) * H * 3 * d, 0.7)) {}
};

TEST_CASE("naive lightning_forward equals the closed form, and carries state across a split") {
  const uint64_t seed = 61;
  CAPTURE(seed);
  Rng rng(seed);
  LightningCase c(rng);
  const int T = c.T, H = c.H, d = c.d;
  const int row = H * 3 * d;
  Vec o(size_t(T) * H * d), state(size_t(H) * d * d);
  naive::lightning_forward<double>(o.data(), state.data(), c.qkv.data(), nullptr, c.lambda.data(), T, H, d, 2);
  // o_t = Σ_{s≤t} λ^{t−s} (q_t·k_s) v_s;  kv_T = Σ_s λ^{T−1−s} k_sᵀ v_s.
  auto at = [&](int t, int h, int part, int i) { return c.qkv[size_t(t) * row + h * 3 * d + part * d + i]; };
  for (int h = 0; h < H; ++h) {
    const double lam = c.lambda[h];
    for (int t = 0; t < T; ++t) {
      for (int j = 0; j < d; ++j) {
        double want = 0;
        for (int s = 0; s <= t; ++s) {
          double qk = 0;
          for (int i = 0; i < d; ++i) qk += at(t, h, 0, i) * at(s, h, 1, i);
          want += std::pow(lam, t - s) * qk * at(s, h, 2, j);
        }
        CHECK(o[size_t(t) * H * d + h * d + j] == doctest::Approx(want).epsilon(1e-12));
      }
    }
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j < d; ++j) {
        double want = 0;
        for (int s = 0; s < T; ++s) want += std::pow(lam, T - 1 - s) * at(s, h, 1, i) * at(s, h, 2, j);
        CHECK(state[size_t(h) * d * d + i * d + j] == doctest::Approx(want).epsilon(1e-12));
      }
    }
  }
  // Split at T1: the second part started from the first part's state gives the same rows/state.
  const int T1 = 3;
  Vec o1(size_t(T1) * H * d), s1(state.size()), o2(size_t(T - T1) * H * d), s2(state.size());
  naive::lightning_forward<double>(o1.data(), s1.data(), c.qkv.data(), nullptr, c.lambda.data(), T1, H, d, 1);
  naive::lightning_forward<double>(o2.data(), s2.data(), c.qkv.data() + size_t(T1) * row, s1.data(),
                                   c.lambda.data(), T - T1, H, d, 64);
  Vec cat = o1;
  cat.insert(cat.end(), o2.begin(), o2.end());
  CHECK(max_abs_diff(cat, o) < 1e-13);
  CHECK(max_abs_diff(s2, state) < 1e-13);
  // state_out may be null.
  Vec o3(o.size());
  naive::lightning_forward<double>(o3.data(), nullptr, c.qkv.data(), nullptr, c.lambda.data(), T, H, d, 1);
  CHECK(max_abs_diff(o3, o) == 0.0);
}

TEST_CASE("naive lightning_backward matches finite differences") {
  const uint64_t seed = 62;
  CAPTURE(seed);
  Rng rng(seed);
  LightningCase c(rng);
  const int T = c.T, H = c.H, d = c.d;
  const Vec r = randn(rng, size_t(T) * H * d);
  Vec o(r.size());
  auto loss = [&] {
    naive::lightning_forward<double>(o.data(), nullptr, c.qkv.data(), nullptr, c.lambda.data(), T, H, d, 4);
    return dot(r, o);
  };
  Vec dqkv(c.qkv.size(), 555.0);
  naive::lightning_backward<double>(dqkv.data(), r.data(), c.qkv.data(), c.lambda.data(), T, H, d, 4);
  check_grad("lightning dqkv", loss, c.qkv, dqkv);
}

TEST_CASE("naive lightning_decode over T steps equals lightning_forward, output and state") {
  const uint64_t seed = 63;
  CAPTURE(seed);
  Rng rng(seed);
  LightningCase a(rng), b(rng);  // two independent sequences decoded as a batch of B = 2
  const int T = a.T, H = a.H, d = a.d;
  const int row = H * 3 * d;
  Vec oa(size_t(T) * H * d), ob(oa.size()), sa(size_t(H) * d * d), sb(sa.size());
  naive::lightning_forward<double>(oa.data(), sa.data(), a.qkv.data(), nullptr, a.lambda.data(), T, H, d, 3);
  naive::lightning_forward<double>(ob.data(), sb.data(), b.qkv.data(), nullptr, a.lambda.data(), T, H, d, 3);
  Vec st0(sa.size(), 0.0), st1(sa.size(), 0.0);
  double* states[2] = {st0.data(), st1.data()};
  Vec step_qkv(size_t(2) * row), step_o(size_t(2) * H * d);
  double worst = 0;
  for (int t = 0; t < T; ++t) {
    std::copy_n(a.qkv.begin() + size_t(t) * row, row, step_qkv.begin());
    std::copy_n(b.qkv.begin() + size_t(t) * row, row, step_qkv.begin() + row);
    naive::lightning_decode<double>(step_o.data(), states, step_qkv.data(), a.lambda.data(), 2, H, d);
    for (int c = 0; c < H * d; ++c) {
      worst = std::max(worst, std::abs(step_o[c] - oa[size_t(t) * H * d + c]));
      worst = std::max(worst, std::abs(step_o[H * d + c] - ob[size_t(t) * H * d + c]));
    }
  }
  CHECK(worst < 1e-13);
  CHECK(max_abs_diff(st0, sa) < 1e-13);
  CHECK(max_abs_diff(st1, sb) < 1e-13);
}

// ---- MoE router ----

// Logits whose values in each row are a random permutation of 0, 0.4, 0.8, ... plus small noise:
// no near-ties, so the top-k set is constant under finite-difference steps.
Vec distinct_logits(Rng& rng, int T, int E) {
  Vec l(size_t(T) * E);
  for (int t = 0; t < T; ++t) {
    std::vector<int> p(E);
    std::iota(p.begin(), p.end(), 0);
    for (int i = E - 1; i > 0; --i) std::swap(p[i], p[rng.below(i + 1)]);
    for (int e = 0; e < E; ++e) l[size_t(t) * E + e] = 0.4 * p[e] + 0.05 * rng.uniform();
  }
  return l;
}

TEST_CASE("naive router_forward: softmax, descending top-k, renormalised weights") {
  const uint64_t seed = 71;
  CAPTURE(seed);
  Rng rng(seed);
  const int T = 4, E = 6, k = 3;
  const Vec logits = distinct_logits(rng, T, E);
  Vec probs(size_t(T) * E), w(size_t(T) * k);
  std::vector<int> idx(size_t(T) * k);
  naive::router_forward<double>(probs.data(), idx.data(), w.data(), logits.data(), T, E, k);
  for (int t = 0; t < T; ++t) {
    double z = 0, ps = 0, ws = 0;
    for (int e = 0; e < E; ++e) z += std::exp(logits[t * E + e]);
    for (int e = 0; e < E; ++e) {
      CHECK(probs[t * E + e] == doctest::Approx(std::exp(logits[t * E + e]) / z).epsilon(1e-14));
      ps += probs[t * E + e];
    }
    CHECK(ps == doctest::Approx(1.0).epsilon(1e-14));
    // The top k are exactly the k largest, in descending order.
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int i, int j) { return probs[t * E + i] > probs[t * E + j]; });
    for (int s = 0; s < k; ++s) {
      CHECK(idx[t * k + s] == order[s]);
      ws += w[t * k + s];
    }
    CHECK(ws == doctest::Approx(1.0).epsilon(1e-14));
  }
}

TEST_CASE("naive router: ties pick the lower expert index first") {
  const int E = 5, k = 3;
  SUBCASE("all equal") {
    const Vec logits(E, 0.25);
    Vec probs(E), w(k);
    std::vector<int> idx(k);
    naive::router_forward<double>(probs.data(), idx.data(), w.data(), logits.data(), 1, E, k);
    CHECK(idx == std::vector<int>{0, 1, 2});
    for (double x : w) CHECK(x == doctest::Approx(1.0 / 3));
  }
  SUBCASE("partial tie") {
    const std::vector<float> logits = {1.0f, 3.0f, 0.0f, 3.0f, 3.0f};
    std::vector<float> probs(E), w(k);
    std::vector<int> idx(k);
    naive::router_forward<float>(probs.data(), idx.data(), w.data(), logits.data(), 1, E, k);
    CHECK(idx == std::vector<int>{1, 3, 4});
    std::vector<int> idx2(2);
    std::vector<float> w2(2);
    naive::router_forward<float>(probs.data(), idx2.data(), w2.data(), logits.data(), 1, E, 2);
    CHECK(idx2 == std::vector<int>{1, 3});
  }
}

TEST_CASE("naive router_backward matches finite differences through top_w and probs") {
  const uint64_t seed = 72;
  CAPTURE(seed);
  Rng rng(seed);
  const int T = 4, E = 6, k = 2;
  Vec logits = distinct_logits(rng, T, E);
  const Vec rw = randn(rng, size_t(T) * k), rp = randn(rng, size_t(T) * E);
  Vec probs(size_t(T) * E), w(size_t(T) * k);
  std::vector<int> idx(size_t(T) * k);
  naive::router_forward<double>(probs.data(), idx.data(), w.data(), logits.data(), T, E, k);
  const std::vector<int> idx0 = idx;
  for (bool with_dprobs : {true, false}) {
    CAPTURE(with_dprobs);
    auto loss = [&] {
      naive::router_forward<double>(probs.data(), idx.data(), w.data(), logits.data(), T, E, k);
      REQUIRE(idx == idx0);  // the selection must not change under the finite-difference step
      return dot(rw, w) + (with_dprobs ? dot(rp, probs) : 0.0);
    };
    loss();
    Vec dlogits(logits.size(), 9.0);
    naive::router_backward<double>(dlogits.data(), rw.data(), with_dprobs ? rp.data() : nullptr, probs.data(),
                                   idx.data(), T, E, k);
    check_grad(with_dprobs ? "router dlogits (top_w + probs)" : "router dlogits (top_w)", loss, logits, dlogits);
  }
}

// ---- MoE aux loss, dispatch, combine ----

TEST_CASE("naive moe_aux_loss: uniform routing gives coef; dprobs matches finite differences") {
  SUBCASE("uniform") {
    const int T = 4, E = 4, k = 1;
    const Vec probs(size_t(T) * E, 0.25);
    const std::vector<int> idx = {0, 1, 2, 3};
    Vec dprobs(probs.size());
    const double loss = naive::moe_aux_loss<double>(dprobs.data(), probs.data(), idx.data(), T, E, k, 0.01, 1.0);
    CHECK(loss == doctest::Approx(0.01).epsilon(1e-14));
  }
  SUBCASE("gradient") {
    const uint64_t seed = 81;
    CAPTURE(seed);
    Rng rng(seed);
    const int T = 5, E = 4, k = 2;
    const Vec logits = distinct_logits(rng, T, E);
    Vec probs(size_t(T) * E), w(size_t(T) * k);
    std::vector<int> idx(size_t(T) * k);
    naive::router_forward<double>(probs.data(), idx.data(), w.data(), logits.data(), T, E, k);
    const double coef = 0.3;
    auto loss = [&] { return naive::moe_aux_loss<double>(nullptr, probs.data(), idx.data(), T, E, k, coef, 1.0); };
    Vec dprobs(probs.size(), 4.0), half(probs.size());
    const double l = naive::moe_aux_loss<double>(dprobs.data(), probs.data(), idx.data(), T, E, k, coef, 1.0);
    CHECK(l == doctest::Approx(loss()).epsilon(1e-15));
    check_grad("moe_aux dprobs", loss, probs, dprobs);
    naive::moe_aux_loss<double>(half.data(), probs.data(), idx.data(), T, E, k, coef, 0.5);
    for (size_t i = 0; i < half.size(); ++i) CHECK(half[i] == doctest::Approx(0.5 * dprobs[i]).epsilon(1e-15));
  }
}

TEST_CASE("naive moe_dispatch is a stable counting sort by expert") {
  const int T = 5, E = 3, k = 2;
  const std::vector<int> idx = {2, 0, 0, 1, 2, 1, 0, 2, 1, 0};
  std::vector<int> offsets(E + 1, -1), perm(T * k, -1);
  naive::moe_dispatch(offsets.data(), perm.data(), idx.data(), T, E, k);
  CHECK(offsets == std::vector<int>{0, 4, 7, 10});
  CHECK(perm == std::vector<int>{1, 2, 6, 9, 3, 5, 8, 0, 4, 7});
  // An expert with no assignment gets an empty range.
  const std::vector<int> idx2 = {0, 2, 2, 0};
  std::vector<int> off2(E + 1), perm2(4);
  naive::moe_dispatch(off2.data(), perm2.data(), idx2.data(), 2, E, 2);
  CHECK(off2 == std::vector<int>{0, 2, 2, 4});
  CHECK(perm2 == std::vector<int>{0, 3, 1, 2});
}

TEST_CASE("naive gather_rows copies the listed rows") {
  const int D = 2;
  const Vec src = {0, 1, 10, 11, 20, 21};
  const std::vector<int> rows = {2, 0, 2};
  Vec dst(rows.size() * D);
  naive::gather_rows<double>(dst.data(), src.data(), rows.data(), 3, D);
  CHECK(dst == Vec{20, 21, 0, 1, 20, 21});
}

TEST_CASE("naive moe_combine: value and backward match finite differences") {
  const uint64_t seed = 91;
  CAPTURE(seed);
  Rng rng(seed);
  const int T = 4, E = 3, k = 2, D = 3;
  std::vector<int> idx(size_t(T) * k);
  for (auto& e : idx) e = int(rng.below(E));
  std::vector<int> offsets(E + 1), perm(size_t(T) * k);
  naive::moe_dispatch(offsets.data(), perm.data(), idx.data(), T, E, k);
  Vec y = randn(rng, size_t(T) * k * D), w = randn(rng, size_t(T) * k);
  const Vec r = randn(rng, size_t(T) * D);
  Vec out(size_t(T) * D);
  auto loss = [&] {
    naive::moe_combine<double>(out.data(), y.data(), perm.data(), w.data(), T, k, D);
    return dot(r, out);
  };
  loss();
  // Direct: out[t] = Σ_slot w[t,slot]·y[row of (t,slot)].
  std::vector<int> inv(size_t(T) * k);
  for (int i = 0; i < T * k; ++i) inv[perm[i]] = i;
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < D; ++c) {
      double want = 0;
      for (int s = 0; s < k; ++s) want += w[t * k + s] * y[size_t(inv[t * k + s]) * D + c];
      CHECK(out[t * D + c] == doctest::Approx(want).epsilon(1e-14));
    }
  Vec dy(y.size(), 3.0), dw(w.size(), 3.0);
  naive::moe_combine_backward<double>(dy.data(), dw.data(), r.data(), y.data(), perm.data(), w.data(), T, k, D);
  check_grad("moe_combine dy", loss, y, dy);
  check_grad("moe_combine dtop_w", loss, w, dw);
}

// ---- embedding and LM head ----

TEST_CASE("naive embedding: forward gathers, backward scatter-accumulates") {
  const uint64_t seed = 101;
  CAPTURE(seed);
  Rng rng(seed);
  const int V = 5, D = 3, T = 6;
  const std::vector<int> tokens = {4, 1, 4, 0, 1, 4};
  Vec table = randn(rng, size_t(V) * D);
  const Vec r = randn(rng, size_t(T) * D);
  Vec h(size_t(T) * D);
  auto loss = [&] {
    naive::embedding_forward<double>(h.data(), tokens.data(), table.data(), T, D);
    return dot(r, h);
  };
  loss();
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < D; ++c) CHECK(h[t * D + c] == table[tokens[t] * D + c]);
  const Vec d0 = randn(rng, table.size());
  Vec dtable = d0;
  naive::embedding_backward<double>(dtable.data(), r.data(), tokens.data(), T, D);
  for (size_t i = 0; i < dtable.size(); ++i) dtable[i] -= d0[i];
  check_grad("embedding dtable", loss, table, dtable);
}

TEST_CASE("naive lm_head: log-softmax, logp, entropy, and gradients") {
  const uint64_t seed = 111;
  CAPTURE(seed);
  Rng rng(seed);
  const int T = 4, D = 3, V = 6;
  const std::vector<int> targets = {2, -1, 0, 5};
  Vec x = randn(rng, size_t(T) * D), W = randn(rng, size_t(V) * D);
  const Vec r = randn(rng, T);
  Vec logp(T), ent(T), logsm(size_t(T) * V);
  auto loss = [&] {
    naive::lm_head_forward<double>(logp.data(), ent.data(), logsm.data(), x.data(), W.data(), targets.data(), T, D,
                                   V);
    return dot(r, logp);
  };
  loss();
  for (int t = 0; t < T; ++t) {
    Vec logits(V);
    double z = 0;
    for (int v = 0; v < V; ++v) {
      for (int c = 0; c < D; ++c) logits[v] += x[t * D + c] * W[v * D + c];
      z += std::exp(logits[v]);
    }
    double h = 0;
    for (int v = 0; v < V; ++v) {
      const double ls = logits[v] - std::log(z);
      CHECK(logsm[t * V + v] == doctest::Approx(ls).epsilon(1e-13));
      h -= std::exp(ls) * ls;
    }
    CHECK(ent[t] == doctest::Approx(h).epsilon(1e-13));
    CHECK(logp[t] == (targets[t] >= 0 ? logsm[t * V + targets[t]] : 0.0));
  }
  // entropy may be null
  Vec logp2(T);
  naive::lm_head_forward<double>(logp2.data(), nullptr, logsm.data(), x.data(), W.data(), targets.data(), T, D, V);
  CHECK(logp2 == logp);

  loss();
  Vec dx(x.size(), 8.0);
  const Vec dW0 = randn(rng, W.size());
  Vec dW = dW0;
  naive::lm_head_backward<double>(dx.data(), dW.data(), r.data(), logsm.data(), x.data(), W.data(), targets.data(), T,
                                  D, V);
  for (size_t i = 0; i < dW.size(); ++i) dW[i] -= dW0[i];
  for (int c = 0; c < D; ++c) CHECK(dx[1 * D + c] == 0.0);  // target < 0: no gradient
  check_grad("lm_head dx", loss, x, dx);
  check_grad("lm_head dW", loss, W, dW);
}

// ---- AdamW ----

TEST_CASE("naive adamw: steps match hand-computed values") {
  SUBCASE("first step from zero moments") {
    // g' = 0.5·2 = 1; m = 0.1, v = 0.05; mhat = vhat = 1; p = 1 − 0.1·(1/(1 + 1e−8) + 0.01·1).
    Vec p = {1.0}, g = {0.5}, m = {0.0}, v = {0.0};
    naive::adamw<double>(p.data(), g.data(), m.data(), v.data(), 1, 0.1f, 0.9f, 0.95f, 1e-8f, 0.01f, 1, 2.0f);
    CHECK(m[0] == doctest::Approx(0.1).epsilon(1e-7));
    CHECK(v[0] == doctest::Approx(0.05).epsilon(1e-7));
    CHECK(p[0] == doctest::Approx(0.899000001).epsilon(1e-7));
  }
  SUBCASE("third step with moments") {
    // m = 0.9·0.2 + 0.1·(−1) = 0.08; v = 0.95·0.3 + 0.05·1 = 0.335; bias corrections 1 − β^3;
    // p = −0.5 − 0.01·(m̂/(sqrt(v̂) + 1e−6) + 0.1·(−0.5)) = −0.5014261754263329.
    // The float hyperparameters are widened to double, so compare at float precision.
    Vec p = {-0.5}, g = {-1.0}, m = {0.2}, v = {0.3};
    naive::adamw<double>(p.data(), g.data(), m.data(), v.data(), 1, 0.01f, 0.9f, 0.95f, 1e-6f, 0.1f, 3, 1.0f);
    CHECK(m[0] == doctest::Approx(0.08).epsilon(1e-6));
    CHECK(v[0] == doctest::Approx(0.335).epsilon(1e-6));
    CHECK(p[0] == doctest::Approx(-0.5014261754263329).epsilon(1e-7));
    std::vector<float> pf = {-0.5f}, gf = {-1.0f}, mf = {0.2f}, vf = {0.3f};
    naive::adamw<float>(pf.data(), gf.data(), mf.data(), vf.data(), 1, 0.01f, 0.9f, 0.95f, 1e-6f, 0.1f, 3, 1.0f);
    CHECK(pf[0] == doctest::Approx(-0.5014261754263329).epsilon(1e-6));
  }
}

// ---- ALiBi slopes and lightning decay ----

TEST_CASE("alibi_slopes follows docs/model.md for powers of two and otherwise") {
  SUBCASE("H = 8") {
    double s[8];
    alibi_slopes(s, 8);
    for (int h = 0; h < 8; ++h) CHECK(s[h] == std::ldexp(1.0, -(h + 1)));
  }
  SUBCASE("H = 64") {
    double s[64];
    alibi_slopes(s, 64);
    CHECK(s[0] == doctest::Approx(std::exp2(-1.0 / 8)).epsilon(1e-15));
    CHECK(s[0] == doctest::Approx(0.917004).epsilon(1e-6));
    CHECK(s[63] == std::ldexp(1.0, -8));
  }
  SUBCASE("H = 6") {
    double s[6];
    alibi_slopes(s, 6);
    const double want[6] = {0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125};
    for (int h = 0; h < 6; ++h) CHECK(s[h] == want[h]);
  }
}

TEST_CASE("lightning_decay: exp(−s_h·(1 − l/(L−1) + 1e−5))") {
  const int H = 8;
  double s[H];
  alibi_slopes(s, H);
  float lam[H];
  lightning_decay(lam, H, 0, 4);
  for (int h = 0; h < H; ++h) CHECK(lam[h] == float(std::exp(-s[h] * (1 + 1e-5))));
  lightning_decay(lam, H, 2, 4);
  for (int h = 0; h < H; ++h) CHECK(lam[h] == float(std::exp(-s[h] * (1 - 2.0 / 3 + 1e-5))));
  lightning_decay(lam, H, 3, 4);
  for (int h = 0; h < H; ++h) CHECK(lam[h] == float(std::exp(-s[h] * 1e-5)));
  lightning_decay(lam, H, 0, 1);
  for (int h = 0; h < H; ++h) CHECK(lam[h] == float(std::exp(-s[h] * (1 + 1e-5))));
}

// ---- the float table ----

TEST_CASE("cpu_naive_kernels is the float instantiation, close to the double one") {
  const Kernels& K = cpu_naive_kernels();
  CHECK(std::string(K.name) == "cpu-naive");
  const bool all_set = K.gemm && K.rmsnorm_forward && K.rmsnorm_backward && K.silu_forward && K.silu_backward &&
                       K.swiglu_forward && K.swiglu_backward && K.sigmoid_mul_forward && K.sigmoid_mul_backward &&
                       K.rope_forward && K.rope_backward && K.attention_forward && K.attention_backward &&
                       K.attention_decode && K.lightning_forward && K.lightning_backward && K.lightning_decode &&
                       K.router_forward && K.router_backward && K.moe_aux_loss && K.moe_dispatch && K.gather_rows &&
                       K.moe_combine && K.moe_combine_backward && K.embedding_forward && K.embedding_backward &&
                       K.lm_head_forward && K.lm_head_backward && K.adamw;
  CHECK(all_set);

  const uint64_t seed = 121;
  CAPTURE(seed);
  Rng rng(seed);
  LightningCase c(rng);
  const int T = c.T, H = c.H, d = c.d;
  std::vector<float> qf(c.qkv.begin(), c.qkv.end()), of(size_t(T) * H * d), sf(size_t(H) * d * d);
  Vec od(of.size()), sd(sf.size());
  K.lightning_forward(of.data(), sf.data(), qf.data(), nullptr, c.lambda.data(), T, H, d, 4);
  Vec qd(qf.begin(), qf.end());  // the same (float-rounded) inputs in double
  naive::lightning_forward<double>(od.data(), sd.data(), qd.data(), nullptr, c.lambda.data(), T, H, d, 4);
  for (size_t i = 0; i < od.size(); ++i) CHECK(of[i] == doctest::Approx(od[i]).epsilon(1e-5).scale(1.0));
  for (size_t i = 0; i < sd.size(); ++i) CHECK(sf[i] == doctest::Approx(sd[i]).epsilon(1e-5).scale(1.0));
}

}  // namespace
}  // namespace m1
