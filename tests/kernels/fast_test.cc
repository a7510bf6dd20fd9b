// The fast CPU backend against the naive oracle, op by op, on random shapes including odd sizes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/rng.h"
#include "kernels/kernels.h"

using namespace m1;

namespace {

std::vector<float> randv(Rng& r, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = scale * float(r.normal());
  return v;
}

// max |a−b| / (1 + max|b|)
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double mx = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(std::isfinite(a[i]));
    mx = std::max(mx, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  return mx / (1.0 + scale);
}

const Kernels& F = cpu_fast_kernels();
const Kernels& N = cpu_naive_kernels();

}  // namespace

TEST_CASE("fast gemm matches naive for every transpose and odd sizes") {
  Rng r(11);
  for (int trial = 0; trial < 8; ++trial) {
    const int M = 1 + int(r.below(37)), Nn = 1 + int(r.below(29)), K = 1 + int(r.below(41));
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        CAPTURE(M);
        CAPTURE(Nn);
        CAPTURE(K);
        auto A = randv(r, size_t(M) * K), B = randv(r, size_t(K) * Nn), C0 = randv(r, size_t(M) * Nn);
        auto C1 = C0, C2 = C0;
        const int lda = ta ? M : K, ldb = tb ? K : Nn;
        F.gemm(ta, tb, M, Nn, K, 0.7f, A.data(), lda, B.data(), ldb, 0.3f, C1.data(), Nn);
        N.gemm(ta, tb, M, Nn, K, 0.7f, A.data(), lda, B.data(), ldb, 0.3f, C2.data(), Nn);
        CHECK(rel_err(C1, C2) < 1e-5);
      }
  }
}

TEST_CASE("fast elementwise, norm and rope match naive") {
  Rng r(12);
  const int Nr = 13, D = 37;
  const size_t n = size_t(Nr) * D;
  auto x = randv(r, n), w = randv(r, size_t(D)), dy = randv(r, n), b = randv(r, n);
  std::vector<float> y1(n), y2(n), s1(Nr), s2(Nr), dx1(n), dx2(n), dw1(D, 0.5f), dw2(D, 0.5f), db1(n), db2(n);
  F.rmsnorm_forward(y1.data(), s1.data(), x.data(), w.data(), Nr, D, 1e-5f);
  N.rmsnorm_forward(y2.data(), s2.data(), x.data(), w.data(), Nr, D, 1e-5f);
  CHECK(rel_err(y1, y2) < 1e-5);
  F.rmsnorm_backward(dx1.data(), dw1.data(), dy.data(), x.data(), w.data(), s1.data(), Nr, D);
  N.rmsnorm_backward(dx2.data(), dw2.data(), dy.data(), x.data(), w.data(), s2.data(), Nr, D);
  CHECK(rel_err(dx1, dx2) < 1e-5);
  CHECK(rel_err(dw1, dw2) < 1e-5);
  F.silu_forward(y1.data(), x.data(), n);
  N.silu_forward(y2.data(), x.data(), n);
  CHECK(rel_err(y1, y2) < 1e-6);
  F.silu_backward(dx1.data(), dy.data(), x.data(), n);
  N.silu_backward(dx2.data(), dy.data(), x.data(), n);
  CHECK(rel_err(dx1, dx2) < 1e-6);
  F.swiglu_forward(y1.data(), x.data(), b.data(), n);
  N.swiglu_forward(y2.data(), x.data(), b.data(), n);
  CHECK(rel_err(y1, y2) < 1e-6);
  F.swiglu_backward(dx1.data(), db1.data(), dy.data(), x.data(), b.data(), n);
  N.swiglu_backward(dx2.data(), db2.data(), dy.data(), x.data(), b.data(), n);
  CHECK(rel_err(dx1, dx2) < 1e-6);
  CHECK(rel_err(db1, db2) < 1e-6);
  F.sigmoid_mul_forward(y1.data(), x.data(), b.data(), n);
  N.sigmoid_mul_forward(y2.data(), x.data(), b.data(), n);
  CHECK(rel_err(y1, y2) < 1e-6);
  F.sigmoid_mul_backward(dx1.data(), db1.data(), dy.data(), x.data(), b.data(), n);
  N.sigmoid_mul_backward(dx2.data(), db2.data(), dy.data(), x.data(), b.data(), n);
  CHECK(rel_err(dx1, dx2) < 1e-6);
  CHECK(rel_err(db1, db2) < 1e-6);
  // RoPE on [T=5, nh=3, d=6] with row stride 20 and r = 4, positions not starting at 0
  std::vector<int> pos = {3, 4, 5, 6, 100};
  auto z = randv(r, 5 * 20), z1 = z, z2 = z;
  F.rope_forward(z1.data(), 5, 3, 6, 20, 4, pos.data(), 10000.f);
  N.rope_forward(z2.data(), 5, 3, 6, 20, 4, pos.data(), 10000.f);
  CHECK(rel_err(z1, z2) < 1e-6);
  F.rope_backward(z1.data(), 5, 3, 6, 20, 4, pos.data(), 10000.f);
  CHECK(rel_err(z1, z) < 1e-5);  // backward is the inverse rotation
}

TEST_CASE("fast softmax attention matches naive (GQA, strides, odd T)") {
  Rng r(13);
  for (int T : {1, 7, 33}) {
    const int H = 4, Hkv = 2, d = 5, ldq = H * d + 3, ldkv = Hkv * d + 1;
    auto q = randv(r, size_t(T) * ldq), k = randv(r, size_t(T) * ldkv), v = randv(r, size_t(T) * ldkv);
    auto dout = randv(r, size_t(T) * H * d);
    std::vector<float> o1(static_cast<size_t>(T) * H * d), o2 = o1, l1(static_cast<size_t>(H) * T), l2 = l1;
    F.attention_forward(o1.data(), l1.data(), q.data(), ldq, k.data(), v.data(), ldkv, T, H, Hkv, d);
    N.attention_forward(o2.data(), l2.data(), q.data(), ldq, k.data(), v.data(), ldkv, T, H, Hkv, d);
    CHECK(rel_err(o1, o2) < 1e-5);
    CHECK(rel_err(l1, l2) < 1e-5);
    std::vector<float> dq1(q.size(), 0.f), dk1(k.size(), 0.f), dv1(v.size(), 0.f), dq2 = dq1, dk2 = dk1, dv2 = dv1;
    F.attention_backward(dq1.data(), dk1.data(), dv1.data(), dout.data(), o1.data(), l1.data(), q.data(), ldq,
                         k.data(), v.data(), ldkv, T, H, Hkv, d);
    N.attention_backward(dq2.data(), dk2.data(), dv2.data(), dout.data(), o2.data(), l2.data(), q.data(), ldq,
                         k.data(), v.data(), ldkv, T, H, Hkv, d);
    CHECK(rel_err(dq1, dq2) < 1e-5);
    CHECK(rel_err(dk1, dk2) < 1e-5);
    CHECK(rel_err(dv1, dv2) < 1e-5);
    // decode of the last query against the whole cache = the last row of the forward
    std::vector<float> kc(static_cast<size_t>(T) * Hkv * d), vc(kc.size()), ql(static_cast<size_t>(H) * d), od(static_cast<size_t>(H) * d);
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < Hkv * d; ++c) {
        kc[size_t(t) * Hkv * d + c] = k[size_t(t) * ldkv + c];
        vc[size_t(t) * Hkv * d + c] = v[size_t(t) * ldkv + c];
      }
    for (int c = 0; c < H * d; ++c) ql[c] = q[size_t(T - 1) * ldq + c];
    const float* kp = kc.data();
    const float* vp = vc.data();
    F.attention_decode(od.data(), ql.data(), &kp, &vp, &T, 1, H, Hkv, d);
    std::vector<float> last(o2.end() - H * d, o2.end());
    CHECK(rel_err(od, last) < 1e-5);
  }
}

TEST_CASE("lightning: chunked forward = recurrence = decode, output and state, for every block size") {
  Rng r(14);
  const int H = 3, d = 4;
  std::vector<float> lambda = {0.5f, 0.9f, 0.999f};
  for (int T : {1, 5, 64, 67}) {
    auto qkv = randv(r, size_t(T) * 3 * H * d, 0.5f);
    auto s0 = randv(r, size_t(H) * d * d, 0.3f);
    std::vector<float> o_ref(static_cast<size_t>(T) * H * d), st_ref(static_cast<size_t>(H) * d * d);
    N.lightning_forward(o_ref.data(), st_ref.data(), qkv.data(), s0.data(), lambda.data(), T, H, d, 1);
    for (int B : {1, 3, 4, 64, 256}) {
      CAPTURE(T);
      CAPTURE(B);
      std::vector<float> o(o_ref.size()), st(st_ref.size());
      F.lightning_forward(o.data(), st.data(), qkv.data(), s0.data(), lambda.data(), T, H, d, B);
      CHECK(rel_err(o, o_ref) < 1e-5);
      CHECK(rel_err(st, st_ref) < 1e-5);
    }
    // decode: token by token from the same initial state
    std::vector<float> st = s0, od(static_cast<size_t>(H) * d), o_dec(o_ref.size());
    float* sp = st.data();
    for (int t = 0; t < T; ++t) {
      F.lightning_decode(od.data(), &sp, qkv.data() + size_t(t) * 3 * H * d, lambda.data(), 1, H, d);
      std::copy(od.begin(), od.end(), o_dec.begin() + size_t(t) * H * d);
    }
    CHECK(rel_err(o_dec, o_ref) < 1e-5);
    CHECK(rel_err(st, st_ref) < 1e-5);
  }
}

TEST_CASE("lightning: chunked backward = the reference gradient, every block size and a ragged tail") {
  Rng r(15);
  const int H = 2, d = 5;
  std::vector<float> lambda = {0.7f, 0.98f};
  for (int T : {1, 6, 13, 70}) {
    auto qkv = randv(r, size_t(T) * 3 * H * d, 0.5f);
    auto dout = randv(r, size_t(T) * H * d);
    std::vector<float> ref(qkv.size());
    N.lightning_backward(ref.data(), dout.data(), qkv.data(), lambda.data(), T, H, d, 1);
    for (int B : {1, 3, 4, 64}) {
      CAPTURE(T);
      CAPTURE(B);
      std::vector<float> g(qkv.size(), 123.f);
      F.lightning_backward(g.data(), dout.data(), qkv.data(), lambda.data(), T, H, d, B);
      CHECK(rel_err(g, ref) < 1e-5);
    }
  }
}

TEST_CASE("fast MoE routing, dispatch, combine, embedding, LM head and AdamW match naive") {
  Rng r(16);
  const int T = 19, E = 5, k = 2, D = 7, V = 11;
  auto logits = randv(r, size_t(T) * E);
  std::vector<float> p1(static_cast<size_t>(T) * E), p2 = p1, w1(static_cast<size_t>(T) * k), w2 = w1;
  std::vector<int> i1(static_cast<size_t>(T) * k), i2 = i1;
  F.router_forward(p1.data(), i1.data(), w1.data(), logits.data(), T, E, k);
  N.router_forward(p2.data(), i2.data(), w2.data(), logits.data(), T, E, k);
  CHECK(i1 == i2);
  CHECK(rel_err(p1, p2) < 1e-6);
  CHECK(rel_err(w1, w2) < 1e-6);
  auto dtw = randv(r, size_t(T) * k), dpr = randv(r, size_t(T) * E);
  std::vector<float> dl1(static_cast<size_t>(T) * E), dl2 = dl1;
  F.router_backward(dl1.data(), dtw.data(), dpr.data(), p1.data(), i1.data(), T, E, k);
  N.router_backward(dl2.data(), dtw.data(), dpr.data(), p2.data(), i2.data(), T, E, k);
  CHECK(rel_err(dl1, dl2) < 1e-5);
  std::vector<int> off(static_cast<size_t>(E) + 1), perm(static_cast<size_t>(T) * k);
  F.moe_dispatch(off.data(), perm.data(), i1.data(), T, E, k);
  auto y = randv(r, size_t(T) * k * D), dout = randv(r, size_t(T) * D);
  std::vector<float> c1(static_cast<size_t>(T) * D), c2 = c1;
  F.moe_combine(c1.data(), y.data(), perm.data(), w1.data(), T, k, D);
  N.moe_combine(c2.data(), y.data(), perm.data(), w1.data(), T, k, D);
  CHECK(rel_err(c1, c2) < 1e-6);
  std::vector<float> dy1(y.size()), dy2 = dy1, dw1v(static_cast<size_t>(T) * k), dw2v = dw1v;
  F.moe_combine_backward(dy1.data(), dw1v.data(), dout.data(), y.data(), perm.data(), w1.data(), T, k, D);
  N.moe_combine_backward(dy2.data(), dw2v.data(), dout.data(), y.data(), perm.data(), w1.data(), T, k, D);
  CHECK(rel_err(dy1, dy2) < 1e-6);
  CHECK(rel_err(dw1v, dw2v) < 1e-6);

  std::vector<int> toks(static_cast<size_t>(T)), targets(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) {
    toks[t] = int(r.below(V));
    targets[t] = t % 4 == 3 ? -1 : int(r.below(V));
  }
  auto table = randv(r, size_t(V) * D), dh = randv(r, size_t(T) * D);
  std::vector<float> h1(static_cast<size_t>(T) * D), h2 = h1, dt1(table.size(), 0.f), dt2 = dt1;
  F.embedding_forward(h1.data(), toks.data(), table.data(), T, D);
  N.embedding_forward(h2.data(), toks.data(), table.data(), T, D);
  CHECK(h1 == h2);
  F.embedding_backward(dt1.data(), dh.data(), toks.data(), T, D);
  N.embedding_backward(dt2.data(), dh.data(), toks.data(), T, D);
  CHECK(rel_err(dt1, dt2) < 1e-6);

  auto W = randv(r, size_t(V) * D), x = randv(r, size_t(T) * D), dlp = randv(r, size_t(T));
  std::vector<float> lp1(static_cast<size_t>(T)), lp2 = lp1, e1 = lp1, e2 = lp1, ls1(static_cast<size_t>(T) * V), ls2 = ls1;
  F.lm_head_forward(lp1.data(), e1.data(), ls1.data(), x.data(), W.data(), targets.data(), T, D, V);
  N.lm_head_forward(lp2.data(), e2.data(), ls2.data(), x.data(), W.data(), targets.data(), T, D, V);
  CHECK(rel_err(lp1, lp2) < 1e-5);
  CHECK(rel_err(e1, e2) < 1e-5);
  std::vector<float> dx1(x.size()), dx2 = dx1, dW1(W.size(), 0.1f), dW2 = dW1;
  F.lm_head_backward(dx1.data(), dW1.data(), dlp.data(), ls1.data(), x.data(), W.data(), targets.data(), T, D, V);
  N.lm_head_backward(dx2.data(), dW2.data(), dlp.data(), ls2.data(), x.data(), W.data(), targets.data(), T, D, V);
  CHECK(rel_err(dx1, dx2) < 1e-5);
  CHECK(rel_err(dW1, dW2) < 1e-5);

  auto pa = randv(r, 1001), g = randv(r, 1001), m0 = randv(r, 1001, 0.1f), v0 = randv(r, 1001, 0.1f);
  for (auto& vv : v0) vv = std::fabs(vv);
  auto pb = pa, ma = m0, mb = m0, va = v0, vb = v0;
  F.adamw(pa.data(), g.data(), ma.data(), va.data(), 1001, 1e-2f, 0.9f, 0.95f, 1e-15f, 0.1f, 3, 0.5f);
  N.adamw(pb.data(), g.data(), mb.data(), vb.data(), 1001, 1e-2f, 0.9f, 0.95f, 1e-15f, 0.1f, 3, 0.5f);
  CHECK(rel_err(pa, pb) < 1e-6);
  CHECK(rel_err(ma, mb) < 1e-6);
  CHECK(rel_err(va, vb) < 1e-6);
}

TEST_CASE("fast kernels give the same results with 1 and 2 threads") {
  Rng r(17);
  const int T = 40, H = 4, d = 8;
  std::vector<float> lambda = {0.6f, 0.8f, 0.9f, 0.99f};
  auto qkv = randv(r, size_t(T) * 3 * H * d, 0.5f);
  std::vector<float> o1(static_cast<size_t>(T) * H * d), o2 = o1;
  set_num_threads(1);
  F.lightning_forward(o1.data(), nullptr, qkv.data(), nullptr, lambda.data(), T, H, d, 16);
  set_num_threads(2);
  F.lightning_forward(o2.data(), nullptr, qkv.data(), nullptr, lambda.data(), T, H, d, 16);
  set_num_threads(1);
  CHECK(o1 == o2);
}
