// The CUDA "core" ops (kernels/cuda/ops.h: GEMMs, norm, element-wise, RoPE, embedding, LM head,
// MoE routing, AdamW, sampling) against the naive CPU oracle in float and double (tolerance rule
// of gpu_test_util.h), on odd shapes. Outputs are NaN-poisoned before each call, accumulated
// gradients start from random values on both sides, integer outputs must match exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "base/rng.h"
#include "kernels/cpu/naive.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/gpu_test_util.h"

using namespace m1;
using namespace m1::gpu_test;

namespace {

std::vector<int> random_ints(Rng& rng, size_t n, int lo, int hi) {  // uniform in [lo, hi)
  std::vector<int> v(n);
  for (auto& x : v) x = lo + int(rng.below(uint64_t(hi - lo)));
  return v;
}

// A device int buffer filled with a value no op writes, so a skipped element is noticed.
DeviceBuffer<int> poisoned_ints(size_t n) { return DeviceBuffer<int>(std::vector<int>(n, -777)); }


// The [rows, cols] block of a matrix with row stride ld.
template <class T>
std::vector<T> block(const std::vector<T>& m, int rows, int cols, int ld) {
  std::vector<T> out;
  out.reserve(size_t(rows) * cols);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) out.push_back(m[size_t(i) * ld + j]);
  return out;
}

}  // namespace

// ---- GEMM ----

TEST_CASE("cuda gemm: fp32, every transpose, ld > width, beta 0 (poisoned C) and 1") {
  Rng rng(101);
  struct Shape {
    int M, N, K;
  };
  for (const Shape s : {Shape{37, 29, 45}, Shape{128, 96, 200}, Shape{1, 263, 96}, Shape{70, 1, 33}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (const float beta : {0.f, 1.f}) {
          CAPTURE(s.M);
          CAPTURE(s.N);
          CAPTURE(s.K);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(beta);
          const int lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 5, ldc = s.N + 7;
          const int arows = ta ? s.K : s.M, brows = tb ? s.N : s.K;
          const float alpha = 0.7f;
          auto A = random_vec(rng, size_t(arows) * lda), B = random_vec(rng, size_t(brows) * ldb);
          auto C0 = random_vec(rng, size_t(s.M) * ldc);
          DeviceBuffer<float> dA(A), dB(B), dC(C0);
          if (beta == 0.f) cuda_fill_nan(dC.p, dC.n);
          cuda::gemm(ta, tb, s.M, s.N, s.K, alpha, dA.p, lda, dB.p, ldb, beta, dC.p, ldc);
          const auto got = dC.download();
          auto cf = C0;
          naive::gemm<float>(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, cf.data(), ldc);
          auto Ad = to_double(A), Bd = to_double(B), cd = to_double(C0);
          naive::gemm<double>(ta, tb, s.M, s.N, s.K, double(alpha), Ad.data(), lda, Bd.data(), ldb, double(beta),
                              cd.data(), ldc);
          check_rule("gemm C", block(got, s.M, s.N, ldc), block(cf, s.M, s.N, ldc), block(cd, s.M, s.N, ldc));
          bool padding_intact = true;  // columns [N, ldc) are never written
          for (int i = 0; i < s.M; ++i)
            for (int j = s.N; j < ldc; ++j) {
              const float g = got[size_t(i) * ldc + j];
              padding_intact &= beta == 0.f ? std::isnan(g) : g == C0[size_t(i) * ldc + j];
            }
          CHECK(padding_intact);
        }
}

TEST_CASE("cuda gemm: K = 0 gives beta·C") {
  std::vector<float> C0 = {1, 2, 3, 4, 5, 6};
  DeviceBuffer<float> dC(C0), dA(std::vector<float>(4, 1.f));
  cuda::gemm(false, false, 2, 3, 0, 1.f, dA.p, 1, dA.p, 3, 1.f, dC.p, 3);
  CHECK(dC.download() == C0);
  cuda_fill_nan(dC.p, dC.n);
  cuda::gemm(false, false, 2, 3, 0, 1.f, dA.p, 1, dA.p, 3, 0.f, dC.p, 3);
  CHECK(dC.download() == std::vector<float>(6, 0.f));
}

TEST_CASE("cuda bf16 conversion rounds to nearest even and converts back exactly") {
  Rng rng(102);
  std::vector<float> x = random_vec(rng, 1000, -3.f, 3.f);
  for (int i = 0; i < 40; ++i) {  // exact ties (low half 0x8000) with even and odd upper halves
    const uint32_t u = (uint32_t(0x3f80u + i) << 16) | 0x8000u;
    std::memcpy(&x[size_t(i)], &u, 4);
  }
  x.push_back(1e-30f);
  x.push_back(-65504.f);
  DeviceBuffer<float> dx(x);
  DeviceBuffer<uint16_t> db(x.size());
  cuda::to_bf16(db.p, dx.p, x.size());
  const auto bits = db.download();
  std::vector<uint16_t> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = bf16_bits(x[i]);
  CHECK(bits == want);
  auto back = poisoned(x.size());
  cuda::to_f32(back.p, db.p, x.size());
  const auto f = back.download();
  bool exact = true;
  for (size_t i = 0; i < x.size(); ++i) exact &= f[i] == bf16_value(want[i]);
  CHECK(exact);
}

TEST_CASE("cuda gemm_bf16: every transpose vs naive on the bf16-rounded inputs") {
  Rng rng(103);
  struct Shape {
    int M, N, K;
  };
  for (const Shape s : {Shape{37, 29, 45}, Shape{64, 48, 80}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (const float beta : {0.f, 1.f}) {
          CAPTURE(s.M);
          CAPTURE(ta);
          CAPTURE(tb);
          CAPTURE(beta);
          const int lda = (ta ? s.M : s.K) + 2, ldb = (tb ? s.K : s.N) + 3, ldc = s.N + 1;
          const int arows = ta ? s.K : s.M, brows = tb ? s.N : s.K;
          auto A = random_vec(rng, size_t(arows) * lda), B = random_vec(rng, size_t(brows) * ldb);
          std::vector<uint16_t> Ab(A.size()), Bb(B.size());
          for (size_t i = 0; i < A.size(); ++i) A[i] = bf16_value(Ab[i] = bf16_bits(A[i]));
          for (size_t i = 0; i < B.size(); ++i) B[i] = bf16_value(Bb[i] = bf16_bits(B[i]));
          auto C0 = random_vec(rng, size_t(s.M) * ldc);
          DeviceBuffer<uint16_t> dA(Ab), dB(Bb);
          DeviceBuffer<float> dC(C0);
          if (beta == 0.f) cuda_fill_nan(dC.p, dC.n);
          cuda::gemm_bf16(ta, tb, s.M, s.N, s.K, 1.3f, dA.p, lda, dB.p, ldb, beta, dC.p, ldc);
          const auto got = dC.download();
          auto cf = C0;
          naive::gemm<float>(ta, tb, s.M, s.N, s.K, 1.3f, A.data(), lda, B.data(), ldb, beta, cf.data(), ldc);
          auto Ad = to_double(A), Bd = to_double(B), cd = to_double(C0);
          naive::gemm<double>(ta, tb, s.M, s.N, s.K, double(1.3f), Ad.data(), lda, Bd.data(), ldb, double(beta),
                              cd.data(), ldc);
          check_rule("gemm_bf16 C", block(got, s.M, s.N, ldc), block(cf, s.M, s.N, ldc), block(cd, s.M, s.N, ldc));
        }
}

TEST_CASE("cuda expert_gemm_bf16: per-expert groups, empty experts skipped") {
  Rng rng(104);
  const int E = 7, N = 29, K = 45;
  const std::vector<int> counts = {5, 0, 12, 1, 0, 9, 0};
  std::vector<int> off(E + 1, 0);
  for (int e = 0; e < E; ++e) off[size_t(e) + 1] = off[size_t(e)] + counts[size_t(e)];
  const int R = off[E];
  auto x = random_vec(rng, size_t(R) * K), W = random_vec(rng, size_t(E) * N * K);
  std::vector<uint16_t> xb(x.size()), Wb(W.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = bf16_value(xb[i] = bf16_bits(x[i]));
  for (size_t i = 0; i < W.size(); ++i) W[i] = bf16_value(Wb[i] = bf16_bits(W[i]));
  DeviceBuffer<uint16_t> dx(xb), dW(Wb);
  auto dy = poisoned(size_t(R) * N);
  cuda::expert_gemm_bf16(dy.p, dx.p, dW.p, off.data(), E, N, K);
  std::vector<float> yf(size_t(R) * N);
  std::vector<double> yd(size_t(R) * N);
  auto xd = to_double(x), Wd = to_double(W);
  for (int e = 0; e < E; ++e) {
    const int rows = counts[size_t(e)];
    if (rows == 0) continue;
    const size_t r0 = size_t(off[size_t(e)]);
    naive::gemm<float>(false, true, rows, N, K, 1.f, x.data() + r0 * K, K, W.data() + size_t(e) * N * K, K, 0.f,
                       yf.data() + r0 * N, N);
    naive::gemm<double>(false, true, rows, N, K, 1.0, xd.data() + r0 * K, K, Wd.data() + size_t(e) * N * K, K, 0.0,
                        yd.data() + r0 * N, N);
  }
  check_rule("expert_gemm_bf16 y", dy.download(), yf, yd);
}

// ---- RMSNorm, element-wise, RoPE ----

TEST_CASE("cuda rmsnorm forward and backward (dw accumulates)") {
  Rng rng(105);
  struct Shape {
    int N, D;
  };
  for (const Shape s : {Shape{37, 96}, Shape{200, 67}, Shape{5, 1000}}) {
    CAPTURE(s.N);
    CAPTURE(s.D);
    const size_t nd = size_t(s.N) * s.D;
    const float eps = 1e-5f;
    auto x = random_vec(rng, nd), w = random_vec(rng, size_t(s.D), 0.5f, 1.5f), dy = random_vec(rng, nd);
    auto dw0 = random_vec(rng, size_t(s.D));
    DeviceBuffer<float> dx_in(x), dw_in(w), ddy(dy);
    auto y = poisoned(nd), rstd = poisoned(size_t(s.N));
    cuda::rmsnorm_forward(y.p, rstd.p, dx_in.p, dw_in.p, s.N, s.D, eps);
    std::vector<float> yf(nd), rf(size_t(s.N));
    naive::rmsnorm_forward<float>(yf.data(), rf.data(), x.data(), w.data(), s.N, s.D, eps);
    auto xd = to_double(x), wd = to_double(w), dyd = to_double(dy);
    std::vector<double> yd(nd), rd(size_t(s.N));
    naive::rmsnorm_forward<double>(yd.data(), rd.data(), xd.data(), wd.data(), s.N, s.D, double(eps));
    check_rule("rmsnorm y", y.download(), yf, yd);
    check_rule("rmsnorm rstd", rstd.download(), rf, rd);

    // Backward from the same (float) rstd on every side.
    DeviceBuffer<float> drstd(rf), ddw(dw0);
    auto dx = poisoned(nd);
    cuda::rmsnorm_backward(dx.p, ddw.p, ddy.p, dx_in.p, dw_in.p, drstd.p, s.N, s.D);
    std::vector<float> dxf(nd), dwf = dw0;
    naive::rmsnorm_backward<float>(dxf.data(), dwf.data(), dy.data(), x.data(), w.data(), rf.data(), s.N, s.D);
    std::vector<double> dxd(nd), dwd = to_double(dw0), rfd = to_double(rf);
    naive::rmsnorm_backward<double>(dxd.data(), dwd.data(), dyd.data(), xd.data(), wd.data(), rfd.data(), s.N, s.D);
    check_rule("rmsnorm dx", dx.download(), dxf, dxd);
    check_rule("rmsnorm dw", ddw.download(), dwf, dwd);
  }
}

TEST_CASE("cuda silu, swiglu, sigmoid_mul forward and backward") {
  Rng rng(106);
  const size_t n = 1001;
  auto a = random_vec(rng, n, -4.f, 4.f), b = random_vec(rng, n, -4.f, 4.f), g = random_vec(rng, n);
  auto ad = to_double(a), bd = to_double(b), gd = to_double(g);
  DeviceBuffer<float> da(a), db(b), dg(g);
  std::vector<float> f1(n), f2(n);
  std::vector<double> d1(n), d2(n);

  auto o1 = poisoned(n), o2 = poisoned(n);
  cuda::silu_forward(o1.p, da.p, n);
  naive::silu_forward<float>(f1.data(), a.data(), n);
  naive::silu_forward<double>(d1.data(), ad.data(), n);
  check_rule("silu y", o1.download(), f1, d1);

  auto s1 = poisoned(n);
  cuda::silu_backward(s1.p, dg.p, da.p, n);
  naive::silu_backward<float>(f1.data(), g.data(), a.data(), n);
  naive::silu_backward<double>(d1.data(), gd.data(), ad.data(), n);
  check_rule("silu dx", s1.download(), f1, d1);

  auto s2 = poisoned(n);
  cuda::swiglu_forward(s2.p, da.p, db.p, n);
  naive::swiglu_forward<float>(f1.data(), a.data(), b.data(), n);
  naive::swiglu_forward<double>(d1.data(), ad.data(), bd.data(), n);
  check_rule("swiglu y", s2.download(), f1, d1);

  auto s3 = poisoned(n), s4 = poisoned(n);
  cuda::swiglu_backward(s3.p, s4.p, dg.p, da.p, db.p, n);
  naive::swiglu_backward<float>(f1.data(), f2.data(), g.data(), a.data(), b.data(), n);
  naive::swiglu_backward<double>(d1.data(), d2.data(), gd.data(), ad.data(), bd.data(), n);
  check_rule("swiglu da", s3.download(), f1, d1);
  check_rule("swiglu db", s4.download(), f2, d2);

  auto s5 = poisoned(n);
  cuda::sigmoid_mul_forward(s5.p, da.p, db.p, n);
  naive::sigmoid_mul_forward<float>(f1.data(), a.data(), b.data(), n);
  naive::sigmoid_mul_forward<double>(d1.data(), ad.data(), bd.data(), n);
  check_rule("sigmoid_mul out", s5.download(), f1, d1);

  auto s6 = poisoned(n), s7 = poisoned(n);
  cuda::sigmoid_mul_backward(s6.p, s7.p, dg.p, da.p, db.p, n);
  naive::sigmoid_mul_backward<float>(f1.data(), f2.data(), g.data(), a.data(), b.data(), n);
  naive::sigmoid_mul_backward<double>(d1.data(), d2.data(), gd.data(), ad.data(), bd.data(), n);
  check_rule("sigmoid_mul dg", s6.download(), f1, d1);
  check_rule("sigmoid_mul dy", s7.download(), f2, d2);
}

TEST_CASE("cuda rope forward and backward: partial, row stride, untouched dims and padding") {
  Rng rng(107);
  struct Cfg {
    int T, nh, d, ld, r;
    float theta;
  };
  for (const Cfg c : {Cfg{13, 3, 32, 103, 24, 10000.f}, Cfg{9, 2, 64, 128, 64, 1e6f}}) {
    CAPTURE(c.r);
    const auto pos = random_ints(rng, size_t(c.T), 0, 5000);
    DeviceBuffer<int> dpos(pos);
    for (int backward = 0; backward < 2; ++backward) {
      CAPTURE(backward);
      auto x = random_vec(rng, size_t(c.T) * c.ld);
      DeviceBuffer<float> dx(x);
      auto xf = x;
      auto xd = to_double(x);
      if (backward) {
        cuda::rope_backward(dx.p, c.T, c.nh, c.d, c.ld, c.r, dpos.p, c.theta);
        naive::rope_backward<float>(xf.data(), c.T, c.nh, c.d, c.ld, c.r, pos.data(), c.theta);
        naive::rope_backward<double>(xd.data(), c.T, c.nh, c.d, c.ld, c.r, pos.data(), c.theta);
      } else {
        cuda::rope_forward(dx.p, c.T, c.nh, c.d, c.ld, c.r, dpos.p, c.theta);
        naive::rope_forward<float>(xf.data(), c.T, c.nh, c.d, c.ld, c.r, pos.data(), c.theta);
        naive::rope_forward<double>(xd.data(), c.T, c.nh, c.d, c.ld, c.r, pos.data(), c.theta);
      }
      const auto got = dx.download();
      check_rule("rope x", got, xf, xd);
      bool untouched = true;  // dims [r, d) of every head and the padding [nh·d, ld) are bit-identical
      for (int t = 0; t < c.T; ++t)
        for (int j = 0; j < c.ld; ++j) {
          const bool rotated = j < c.nh * c.d && j % c.d < c.r;
          if (!rotated) untouched &= got[size_t(t) * c.ld + j] == x[size_t(t) * c.ld + j];
        }
      CHECK(untouched);
    }
  }
}

// ---- embedding, LM head ----

TEST_CASE("cuda embedding forward and backward (dtable accumulates, repeated tokens)") {
  Rng rng(108);
  const int V = 263, D = 96, T = 37;
  auto tokens = random_ints(rng, size_t(T), 0, V);
  for (int t = 0; t < 20; ++t) tokens[size_t(t)] = int(rng.below(6));  // many repeats
  tokens[size_t(T) - 1] = V - 1;
  auto table = random_vec(rng, size_t(V) * D), dh = random_vec(rng, size_t(T) * D);
  auto dtable0 = random_vec(rng, size_t(V) * D);
  DeviceBuffer<int> dtok(tokens);
  DeviceBuffer<float> dtable_w(table), ddh(dh), ddtable(dtable0);
  auto h = poisoned(size_t(T) * D);
  cuda::embedding_forward(h.p, dtok.p, dtable_w.p, T, D);
  std::vector<float> hf(size_t(T) * D);
  std::vector<double> hd(size_t(T) * D);
  auto table_d = to_double(table);
  naive::embedding_forward<float>(hf.data(), tokens.data(), table.data(), T, D);
  naive::embedding_forward<double>(hd.data(), tokens.data(), table_d.data(), T, D);
  check_rule("embedding h", h.download(), hf, hd);

  cuda::embedding_backward(ddtable.p, ddh.p, dtok.p, T, D);
  auto dtf = dtable0;
  auto dtd = to_double(dtable0), dhd = to_double(dh);
  naive::embedding_backward<float>(dtf.data(), dh.data(), tokens.data(), T, D);
  naive::embedding_backward<double>(dtd.data(), dhd.data(), tokens.data(), T, D);
  check_rule("embedding dtable", ddtable.download(), dtf, dtd);
}

TEST_CASE("cuda lm_head forward (logsm, logp, entropy) and backward (dx assigned, dW accumulates)") {
  Rng rng(109);
  const int T = 37, D = 96, V = 263;
  auto x = random_vec(rng, size_t(T) * D), W = random_vec(rng, size_t(V) * D, -0.5f, 0.5f);
  auto targets = random_ints(rng, size_t(T), 0, V);
  for (int t = 3; t < T; t += 5) targets[size_t(t)] = -1;
  auto xd = to_double(x), Wd = to_double(W);
  DeviceBuffer<float> dx_in(x), dW_in(W);
  DeviceBuffer<int> dtg(targets);

  std::vector<float> lf(size_t(T) * V), pf(static_cast<size_t>(T)), ef(static_cast<size_t>(T));
  std::vector<double> ld(size_t(T) * V), pd(static_cast<size_t>(T)), ed(static_cast<size_t>(T));
  naive::lm_head_forward<float>(pf.data(), ef.data(), lf.data(), x.data(), W.data(), targets.data(), T, D, V);
  naive::lm_head_forward<double>(pd.data(), ed.data(), ld.data(), xd.data(), Wd.data(), targets.data(), T, D, V);
  for (int with_entropy = 0; with_entropy < 2; ++with_entropy) {
    CAPTURE(with_entropy);
    auto logsm = poisoned(size_t(T) * V), logp = poisoned(size_t(T)), ent = poisoned(size_t(T));
    cuda::lm_head_forward(logp.p, with_entropy ? ent.p : nullptr, logsm.p, dx_in.p, dW_in.p, dtg.p, T, D, V);
    check_rule("lm_head logsm", logsm.download(), lf, ld);
    check_rule("lm_head logp", logp.download(), pf, pd);
    if (with_entropy) check_rule("lm_head entropy", ent.download(), ef, ed);
  }

  // Backward from the float logsm on every side.
  auto dlogp = random_vec(rng, size_t(T));
  auto dW0 = random_vec(rng, size_t(V) * D);
  DeviceBuffer<float> dlsm(lf), ddlogp(dlogp), ddW(dW0);
  auto dx = poisoned(size_t(T) * D);
  cuda::lm_head_backward(dx.p, ddW.p, ddlogp.p, dlsm.p, dx_in.p, dW_in.p, dtg.p, T, D, V);
  std::vector<float> dxf(size_t(T) * D), dWf = dW0;
  naive::lm_head_backward<float>(dxf.data(), dWf.data(), dlogp.data(), lf.data(), x.data(), W.data(), targets.data(),
                                 T, D, V);
  std::vector<double> dxd(size_t(T) * D), dWd = to_double(dW0), lfd = to_double(lf), dlogpd = to_double(dlogp);
  naive::lm_head_backward<double>(dxd.data(), dWd.data(), dlogpd.data(), lfd.data(), xd.data(), Wd.data(),
                                  targets.data(), T, D, V);
  check_rule("lm_head dx", dx.download(), dxf, dxd);
  check_rule("lm_head dW", ddW.download(), dWf, dWd);
}

// ---- MoE ----

namespace {

struct Routed {
  std::vector<float> logits, probs, top_w;
  std::vector<int> top_idx;
};

// Random router logits (rows 0–2 hold exact ties) through the naive float router.
Routed make_routing(Rng& rng, int T, int E, int k) {
  Routed r;
  r.logits = random_vec(rng, size_t(T) * E, -2.f, 2.f);
  if (T >= 3 && E >= 6) {
    for (int e = 0; e < E; ++e) r.logits[size_t(e)] = 0.5f;  // row 0: all equal
    r.logits[size_t(E) + 2] = r.logits[size_t(E) + 5] = 3.f;  // row 1: tied maximum at 2 and 5
    r.logits[2 * size_t(E) + 0] = 4.f;                         // row 2: tied second place at 1 and 4
    r.logits[2 * size_t(E) + 1] = r.logits[2 * size_t(E) + 4] = 3.f;
  }
  r.probs.resize(size_t(T) * E);
  r.top_w.resize(size_t(T) * k);
  r.top_idx.resize(size_t(T) * k);
  naive::router_forward<float>(r.probs.data(), r.top_idx.data(), r.top_w.data(), r.logits.data(), T, E, k);
  return r;
}

}  // namespace

TEST_CASE("cuda router forward: fp32 softmax, top-k with the tie rule, renormalised weights") {
  Rng rng(110);
  struct Cfg {
    int T, E, k;
  };
  for (const Cfg c : {Cfg{37, 7, 2}, Cfg{50, 16, 4}, Cfg{9, 7, 1}, Cfg{6, 7, 7}}) {
    CAPTURE(c.E);
    CAPTURE(c.k);
    const Routed r = make_routing(rng, c.T, c.E, c.k);
    DeviceBuffer<float> dlog(r.logits);
    auto probs = poisoned(size_t(c.T) * c.E), top_w = poisoned(size_t(c.T) * c.k);
    auto top_idx = poisoned_ints(size_t(c.T) * c.k);
    cuda::router_forward(probs.p, top_idx.p, top_w.p, dlog.p, c.T, c.E, c.k);
    std::vector<double> pd(size_t(c.T) * c.E), wd(size_t(c.T) * c.k);
    std::vector<int> id(size_t(c.T) * c.k);
    auto ld = to_double(r.logits);
    naive::router_forward<double>(pd.data(), id.data(), wd.data(), ld.data(), c.T, c.E, c.k);
    check_rule("router probs", probs.download(), r.probs, pd);
    check_rule("router top_w", top_w.download(), r.top_w, wd);
    const auto gi = top_idx.download();
    CHECK(gi == r.top_idx);
    if (c.E == 7 && c.k >= 2) {
      CHECK(gi[0] == 0);  // all equal: lowest indices first
      CHECK(gi[1] == 1);
      CHECK(gi[size_t(c.k)] == 2);  // tied maximum: 2 before 5
      CHECK(gi[size_t(c.k) + 1] == 5);
      CHECK(gi[2 * size_t(c.k) + 1] == 1);  // tied second place: 1 before 4
    }
  }
}

TEST_CASE("cuda router backward, with and without dprobs") {
  Rng rng(111);
  const int T = 37, E = 7, k = 2;
  const Routed r = make_routing(rng, T, E, k);
  auto dtop_w = random_vec(rng, size_t(T) * k), dprobs = random_vec(rng, size_t(T) * E);
  DeviceBuffer<float> dp(r.probs), ddw(dtop_w), ddp(dprobs);
  DeviceBuffer<int> di(r.top_idx);
  auto pd = to_double(r.probs), dwd = to_double(dtop_w), dpd = to_double(dprobs);
  for (int with_dprobs = 0; with_dprobs < 2; ++with_dprobs) {
    CAPTURE(with_dprobs);
    auto dlogits = poisoned(size_t(T) * E);
    cuda::router_backward(dlogits.p, ddw.p, with_dprobs ? ddp.p : nullptr, dp.p, di.p, T, E, k);
    std::vector<float> f(size_t(T) * E);
    std::vector<double> d(size_t(T) * E);
    naive::router_backward<float>(f.data(), dtop_w.data(), with_dprobs ? dprobs.data() : nullptr, r.probs.data(),
                                  r.top_idx.data(), T, E, k);
    naive::router_backward<double>(d.data(), dwd.data(), with_dprobs ? dpd.data() : nullptr, pd.data(),
                                   r.top_idx.data(), T, E, k);
    check_rule("router dlogits", dlogits.download(), f, d);
  }
}

TEST_CASE("cuda moe_aux_loss: loss and dprobs") {
  Rng rng(112);
  const int T = 37, E = 7, k = 2;
  const Routed r = make_routing(rng, T, E, k);
  DeviceBuffer<float> dp(r.probs);
  DeviceBuffer<int> di(r.top_idx);
  auto dprobs = poisoned(size_t(T) * E);
  const float coef = 0.01f, gs = 0.5f;
  const float loss = cuda::moe_aux_loss(dprobs.p, dp.p, di.p, T, E, k, coef, gs);
  std::vector<float> f(size_t(T) * E);
  std::vector<double> d(size_t(T) * E);
  const float lf = naive::moe_aux_loss<float>(f.data(), r.probs.data(), r.top_idx.data(), T, E, k, coef, gs);
  auto pd = to_double(r.probs);
  const double lref =
      naive::moe_aux_loss<double>(d.data(), pd.data(), r.top_idx.data(), T, E, k, double(coef), double(gs));
  check_rule("aux loss", {loss}, {lf}, {lref}, 1e-8);
  check_rule("aux dprobs", dprobs.download(), f, d, 1e-9);
  CHECK(cuda::moe_aux_loss(nullptr, dp.p, di.p, T, E, k, coef, gs) == loss);
}

TEST_CASE("cuda moe_dispatch: offsets and stable perm equal naive, empty experts") {
  Rng rng(113);
  struct Cfg {
    int T, E, k, used;  // expert ids drawn from [0, used)
  };
  for (const Cfg c : {Cfg{37, 7, 2, 7}, Cfg{37, 9, 2, 6}, Cfg{1000, 16, 4, 16}, Cfg{5, 3, 1, 1}}) {
    CAPTURE(c.T);
    CAPTURE(c.E);
    const auto top_idx = random_ints(rng, size_t(c.T) * c.k, 0, c.used);
    DeviceBuffer<int> di(top_idx);
    auto offsets = poisoned_ints(size_t(c.E) + 1), perm = poisoned_ints(size_t(c.T) * c.k);
    cuda::moe_dispatch(offsets.p, perm.p, di.p, c.T, c.E, c.k);
    std::vector<int> of(size_t(c.E) + 1), pf(size_t(c.T) * c.k);
    naive::moe_dispatch(of.data(), pf.data(), top_idx.data(), c.T, c.E, c.k);
    CHECK(offsets.download() == of);
    CHECK(perm.download() == pf);
  }
}

TEST_CASE("cuda gather_rows, moe_combine and moe_combine_backward") {
  Rng rng(114);
  const int T = 37, E = 7, k = 2, D = 96, n = T * k;
  const auto rows = random_ints(rng, 50, 0, T);
  auto src = random_vec(rng, size_t(T) * D);
  DeviceBuffer<float> dsrc(src);
  DeviceBuffer<int> drows(rows);
  auto dst = poisoned(size_t(50) * D);
  cuda::gather_rows(dst.p, dsrc.p, drows.p, 50, D);
  std::vector<float> gf(size_t(50) * D);
  std::vector<double> gd(size_t(50) * D);
  auto srcd = to_double(src);
  naive::gather_rows<float>(gf.data(), src.data(), rows.data(), 50, D);
  naive::gather_rows<double>(gd.data(), srcd.data(), rows.data(), 50, D);
  check_rule("gather_rows", dst.download(), gf, gd);

  const auto top_idx = random_ints(rng, size_t(n), 0, E);
  std::vector<int> offsets(size_t(E) + 1), perm(static_cast<size_t>(n));
  naive::moe_dispatch(offsets.data(), perm.data(), top_idx.data(), T, E, k);
  auto top_w = random_vec(rng, size_t(n), 0.f, 1.f), y = random_vec(rng, size_t(n) * D);
  auto dout = random_vec(rng, size_t(T) * D);
  DeviceBuffer<int> dperm(perm);
  DeviceBuffer<float> dtw(top_w), dy_in(y), ddout(dout);
  auto twd = to_double(top_w), yd = to_double(y), doutd = to_double(dout);

  auto out = poisoned(size_t(T) * D);
  cuda::moe_combine(out.p, dy_in.p, dperm.p, dtw.p, T, k, D);
  std::vector<float> of(size_t(T) * D);
  std::vector<double> od(size_t(T) * D);
  naive::moe_combine<float>(of.data(), y.data(), perm.data(), top_w.data(), T, k, D);
  naive::moe_combine<double>(od.data(), yd.data(), perm.data(), twd.data(), T, k, D);
  check_rule("moe_combine out", out.download(), of, od);

  auto dy = poisoned(size_t(n) * D), dtop_w = poisoned(size_t(n));
  cuda::moe_combine_backward(dy.p, dtop_w.p, ddout.p, dy_in.p, dperm.p, dtw.p, T, k, D);
  std::vector<float> dyf(size_t(n) * D), dwf(static_cast<size_t>(n));
  std::vector<double> dyd(size_t(n) * D), dwd(static_cast<size_t>(n));
  naive::moe_combine_backward<float>(dyf.data(), dwf.data(), dout.data(), y.data(), perm.data(), top_w.data(), T, k,
                                     D);
  naive::moe_combine_backward<double>(dyd.data(), dwd.data(), doutd.data(), yd.data(), perm.data(), twd.data(), T, k,
                                      D);
  check_rule("moe_combine dy", dy.download(), dyf, dyd);
  check_rule("moe_combine dtop_w", dtop_w.download(), dwf, dwd);
}

// ---- AdamW ----

TEST_CASE("cuda adamw matches naive (bias correction, decoupled decay, grad_scale)") {
  Rng rng(115);
  const size_t n = 1001;
  auto p = random_vec(rng, n), g = random_vec(rng, n), m = random_vec(rng, n, -0.1f, 0.1f);
  auto v = random_vec(rng, n, 1e-4f, 1e-2f);
  DeviceBuffer<float> dp(p), dg(g), dm(m), dv(v);
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.7f;
  const int step = 3;
  cuda::adamw(dp.p, dg.p, dm.p, dv.p, n, lr, b1, b2, eps, wd, step, gs);
  auto pf = p, mf = m, vf = v;
  naive::adamw<float>(pf.data(), g.data(), mf.data(), vf.data(), n, lr, b1, b2, eps, wd, step, gs);
  auto pd = to_double(p), gd = to_double(g), md = to_double(m), vd = to_double(v);
  naive::adamw<double>(pd.data(), gd.data(), md.data(), vd.data(), n, lr, b1, b2, eps, wd, step, gs);
  check_rule("adamw p", dp.download(), pf, pd);
  check_rule("adamw m", dm.download(), mf, md);
  check_rule("adamw v", dv.download(), vf, vd, 1e-9);
}

// ---- sampling ----

namespace {

int host_argmax(const float* x, int V) {
  int best = 0;
  for (int i = 1; i < V; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// Ids in sampling order: logit descending, ties to the lower id.
std::vector<int> host_order(const float* x, int V) {
  std::vector<int> o(static_cast<size_t>(V));
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return x[a] > x[b]; });
  return o;
}

// The sampling distribution of ops.h: temperature, top-k, top-p on the renormalised top-k,
// renormalised. *margin = the smallest distance of a top-k cumulative mass fraction to top_p.
std::vector<double> host_filtered(const std::vector<float>& x, float temperature, float top_p, int top_k,
                                  double* margin) {
  const int V = int(x.size());
  const std::vector<int> o = host_order(x.data(), V);
  std::vector<double> w(static_cast<size_t>(V));
  for (int j = 0; j < V; ++j) w[size_t(j)] = std::exp(double(x[size_t(o[size_t(j)])]) / temperature -
                                                      double(x[size_t(o[0])]) / temperature);
  const int L = top_k > 0 && top_k < V ? top_k : V;
  double zk = 0;
  for (int j = 0; j < L; ++j) zk += w[size_t(j)];
  int n = L;
  *margin = 1;
  if (top_p < 1) {
    double cum = 0;
    for (int j = 0; j < L; ++j) {
      cum += w[size_t(j)];
      *margin = std::min(*margin, std::fabs(cum / zk - double(top_p)));
      if (cum >= double(top_p) * zk) {
        n = j + 1;
        break;
      }
    }
  }
  double z = 0;
  for (int j = 0; j < n; ++j) z += w[size_t(j)];
  std::vector<double> q(size_t(V), 0.0);
  for (int j = 0; j < n; ++j) q[size_t(o[size_t(j)])] = w[size_t(j)] / z;
  return q;
}

}  // namespace

TEST_CASE("cuda sample: greedy and top_k = 1 give the argmax (ties to the lower id)") {
  Rng rng(116);
  const int B = 16, V = 263;
  auto logits = random_vec(rng, size_t(B) * V, -3.f, 3.f);
  for (int v = 0; v < V; ++v) logits[3 * size_t(V) + v] = 1.25f;            // row 3: all equal
  logits[4 * size_t(V) + 10] = logits[4 * size_t(V) + 100] = 9.f;           // row 4: tied maximum
  DeviceBuffer<float> dl(logits);
  for (int mode = 0; mode < 2; ++mode) {
    CAPTURE(mode);
    DeviceBuffer<int> tokens = poisoned_ints(size_t(B));
    auto logp = poisoned(size_t(B));
    const float temperature = mode == 0 ? 0.f : 0.8f;
    cuda::sample(tokens.p, logp.p, dl.p, B, V, temperature, 1.f, mode == 0 ? 0 : 1, 42, 7);
    const auto tok = tokens.download();
    const auto lp = logp.download();
    for (int b = 0; b < B; ++b) {
      CAPTURE(b);
      CHECK(tok[size_t(b)] == host_argmax(logits.data() + size_t(b) * V, V));
      // greedy: logp 0; top_k = 1: the kept distribution is a point mass, logp = log 1 = 0.
      CHECK(std::fabs(lp[size_t(b)]) < 1e-6);
    }
    CHECK(tok[3] == 0);
    CHECK(tok[4] == 10);
  }
}

TEST_CASE("cuda sample: deterministic per (seed, offset), logp of the filtered distribution, kept set") {
  Rng rng(117);
  const int B = 64, V = 263, top_k = 50;
  const float temperature = 0.7f, top_p = 0.9f;
  auto logits = random_vec(rng, size_t(B) * V, -1.f, 1.f);
  DeviceBuffer<float> dl(logits);
  auto run = [&](uint64_t seed, uint64_t offset, std::vector<int>* tok, std::vector<float>* lp) {
    DeviceBuffer<int> tokens = poisoned_ints(size_t(B));
    auto logp = poisoned(size_t(B));
    cuda::sample(tokens.p, logp.p, dl.p, B, V, temperature, top_p, top_k, seed, offset);
    *tok = tokens.download();
    *lp = logp.download();
  };
  std::vector<int> t1, t2, t3;
  std::vector<float> l1, l2, l3;
  run(1234, 0, &t1, &l1);
  run(1234, 0, &t2, &l2);
  run(99, 0, &t3, &l3);
  CHECK(t1 == t2);
  CHECK(l1 == l2);
  CHECK(t1 != t3);
  for (int b = 0; b < B; ++b) {
    CAPTURE(b);
    const float* x = logits.data() + size_t(b) * V;
    const int tok = t1[size_t(b)];
    REQUIRE(tok >= 0);
    REQUIRE(tok < V);
    double margin = 0;
    const auto q = host_filtered(std::vector<float>(x, x + V), temperature, top_p, top_k, &margin);
    if (margin > 1e-4) {
      CHECK(q[size_t(tok)] > 0);  // never outside top-k / top-p
      // the behaviour logprob: under the distribution the token was drawn from (model/sampling.h)
      CHECK(std::fabs(l1[size_t(b)] - std::log(q[size_t(tok)])) < 1e-4);
    }
  }
  // Row b uses the stream (seed, offset + b): rows 5.. alone with offset 5 reproduce them.
  DeviceBuffer<int> tail = poisoned_ints(size_t(B) - 5);
  auto tail_lp = poisoned(size_t(B) - 5);
  cuda::sample(tail.p, tail_lp.p, dl.p + 5 * size_t(V), B - 5, V, temperature, top_p, top_k, 1234, 5);
  CHECK(tail.download() == std::vector<int>(t1.begin() + 5, t1.end()));
}

TEST_CASE("cuda sample: token frequencies follow the tempered, top-k / top-p filtered distribution") {
  const int B = 4096, V = 8;
  const std::vector<float> row = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 3.0f};
  std::vector<float> logits;
  for (int b = 0; b < B; ++b) logits.insert(logits.end(), row.begin(), row.end());
  DeviceBuffer<float> dl(logits);
  struct Cfg {
    float temperature, top_p;
    int top_k;
  };
  for (const Cfg c : {Cfg{1.f, 1.f, 0}, Cfg{0.7f, 1.f, 3}, Cfg{1.3f, 0.8f, 0}, Cfg{1.f, 0.9f, 5}}) {
    CAPTURE(c.temperature);
    CAPTURE(c.top_p);
    CAPTURE(c.top_k);
    double margin = 0;
    const auto q = host_filtered(row, c.temperature, c.top_p, c.top_k, &margin);
    REQUIRE(margin > 1e-3);  // the top-p cut is unambiguous in float
    DeviceBuffer<int> tokens = poisoned_ints(size_t(B));
    auto logp = poisoned(size_t(B));
    cuda::sample(tokens.p, logp.p, dl.p, B, V, c.temperature, c.top_p, c.top_k, 2024, 0);
    const auto tok = tokens.download();
    std::vector<int> count(size_t(V), 0);
    for (int t : tok) {
      REQUIRE(t >= 0);
      REQUIRE(t < V);
      ++count[size_t(t)];
    }
    for (int v = 0; v < V; ++v) {
      CAPTURE(v);
      CAPTURE(count[size_t(v)]);
      CAPTURE(q[size_t(v)]);
      if (q[size_t(v)] == 0) {
        CHECK(count[size_t(v)] == 0);
      } else {
        const double f = double(count[size_t(v)]) / B;
        const double se = std::sqrt(q[size_t(v)] * (1 - q[size_t(v)]) / B);
        CHECK(std::fabs(f - q[size_t(v)]) <= 5 * se);
      }
    }
  }
}

TEST_CASE("cuda sample: large vocabulary and row chunks (B·V > 2^24)") {
  Rng rng(118);
  const int B = 300, V = 60000;
  auto logits = random_vec(rng, size_t(B) * V, -4.f, 4.f);
  DeviceBuffer<float> dl(logits);
  DeviceBuffer<int> tokens = poisoned_ints(size_t(B));
  auto logp = poisoned(size_t(B));
  const float temperature = 1.f, top_p = 0.95f;
  const int top_k = 40;
  cuda::sample(tokens.p, logp.p, dl.p, B, V, temperature, top_p, top_k, 77, 1000);
  const auto tok = tokens.download();
  const auto lp = logp.download();
  for (int b = 0; b < B; b += 13) {
    CAPTURE(b);
    const float* x = logits.data() + size_t(b) * V;
    REQUIRE(tok[size_t(b)] >= 0);
    REQUIRE(tok[size_t(b)] < V);
    const auto o = host_order(x, V);
    const auto rank = std::find(o.begin(), o.end(), tok[size_t(b)]) - o.begin();
    CHECK(rank < top_k);
    double margin = 0;
    const auto q = host_filtered(std::vector<float>(x, x + V), temperature, top_p, top_k, &margin);
    if (margin > 1e-4) CHECK(std::fabs(lp[size_t(b)] - std::log(q[size_t(tok[size_t(b)])])) < 1e-4);
  }
  // The last rows alone (a different chunking) give the same tokens.
  DeviceBuffer<int> tail = poisoned_ints(10);
  auto tail_lp = poisoned(10);
  cuda::sample(tail.p, tail_lp.p, dl.p + size_t(B - 10) * V, 10, V, temperature, top_p, top_k, 77, 1000 + B - 10);
  CHECK(tail.download() == std::vector<int>(tok.end() - 10, tok.end()));
  // Greedy over the large vocabulary.
  cuda::sample(tokens.p, logp.p, dl.p, B, V, 0.f, 1.f, 0, 0, 0);
  const auto g = tokens.download();
  bool all_argmax = true;
  for (int b = 0; b < B; ++b) all_argmax &= g[size_t(b)] == host_argmax(logits.data() + size_t(b) * V, V);
  CHECK(all_argmax);
}
