// CUDA softmax attention (kernels/cuda/attention.cu) against the naive oracle: forward (o, lse),
// backward (dq, dk, dv), decode over ragged KV caches, and the bf16 tensor-core forward.
// fp32 ops: gpu_test::check_rule (error vs naive<double> at most 2× naive<float>'s, plus a
// floor) on fresh random inputs and NaN-poisoned outputs. The bf16 forward gets its own bound,
// derived next to its test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <utility>
#include <vector>

#include "base/rng.h"
#include "kernels/cpu/naive.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/gpu_test_util.h"

using namespace m1;
using namespace m1::gpu_test;

namespace {

struct Shape {
  int T, H, Hkv, d;
};

// One row of the fused projection: [q (H·d) | k (Hkv·d) | v (Hkv·d) | kPad columns], so
// ldq = ldkv = the row width is larger than what the kernels own; the padding must stay untouched.
constexpr int kPad = 3;
int row_width(const Shape& s) { return (s.H + 2 * s.Hkv) * s.d + kPad; }

// Columns [c0, c1) of every row of x [rows, ld].
template <class T>
std::vector<T> columns(const std::vector<T>& x, int rows, int ld, int c0, int c1) {
  std::vector<T> out;
  out.reserve(size_t(rows) * (c1 - c0));
  for (int r = 0; r < rows; ++r)
    for (int c = c0; c < c1; ++c) out.push_back(x[size_t(r) * ld + c]);
  return out;
}


uint64_t seed_of(const Shape& s) { return 1000003ull * s.T + 1009ull * s.H + 101ull * s.Hkv + s.d; }

// q, k, v in [−2, 2]: scale·q·k then has standard deviation 4/3, so softmax rows are far from flat
// and far from one-hot.
constexpr float kQKV = 2.0f;

void check_forward_backward(const Shape& s) {
  const int T = s.T, H = s.H, Hkv = s.Hkv, d = s.d, W = row_width(s);
  const uint64_t seed = seed_of(s);
  INFO("T=" << T << " H=" << H << " Hkv=" << Hkv << " d=" << d << " seed=" << seed);
  Rng rng(seed);
  const auto x = random_vec(rng, size_t(T) * W, -kQKV, kQKV);
  const auto dout = random_vec(rng, size_t(T) * H * d);
  const size_t kofs = size_t(H) * d, vofs = size_t(H + Hkv) * d;
  const size_t no = size_t(T) * H * d, nl = size_t(H) * T;

  // Forward.
  const auto xd = to_double(x);
  std::vector<double> o_d(no), lse_d(nl);
  naive::attention_forward<double>(o_d.data(), lse_d.data(), xd.data(), W, xd.data() + kofs, xd.data() + vofs, W, T,
                                   H, Hkv, d);
  std::vector<float> o_f(no), lse_f(nl);
  naive::attention_forward<float>(o_f.data(), lse_f.data(), x.data(), W, x.data() + kofs, x.data() + vofs, W, T, H,
                                  Hkv, d);
  DeviceBuffer<float> xg(x);
  auto og = poisoned(no), lg = poisoned(nl);
  cuda::attention_forward(og.p, lg.p, xg.p, W, xg.p + kofs, xg.p + vofs, W, T, H, Hkv, d);
  check_rule("attention_forward o", og.download(), o_f, o_d);
  check_rule("attention_forward lse", lg.download(), lse_f, lse_d);

  // Backward: every backend gets the same o and lse (the double forward's, rounded to float).
  const std::vector<float> o_in(o_d.begin(), o_d.end()), lse_in(lse_d.begin(), lse_d.end());
  const auto o_in_d = to_double(o_in), lse_in_d = to_double(lse_in), dout_d = to_double(dout);
  std::vector<double> g_d(x.size(), 0.0);
  naive::attention_backward<double>(g_d.data(), g_d.data() + kofs, g_d.data() + vofs, dout_d.data(), o_in_d.data(),
                                    lse_in_d.data(), xd.data(), W, xd.data() + kofs, xd.data() + vofs, W, T, H, Hkv,
                                    d);
  std::vector<float> g_f(x.size(), 0.0f);
  naive::attention_backward<float>(g_f.data(), g_f.data() + kofs, g_f.data() + vofs, dout.data(), o_in.data(),
                                   lse_in.data(), x.data(), W, x.data() + kofs, x.data() + vofs, W, T, H, Hkv, d);
  DeviceBuffer<float> doutg(dout), oing(o_in), lseing(lse_in);
  auto gg = poisoned(x.size());  // dq | dk | dv | padding, row stride W
  cuda::attention_backward(gg.p, gg.p + kofs, gg.p + vofs, doutg.p, oing.p, lseing.p, xg.p, W, xg.p + kofs,
                           xg.p + vofs, W, T, H, Hkv, d);
  const auto g = gg.download();
  const int c_dq = 0, c_dk = H * d, c_dv = (H + Hkv) * d, c_end = (H + 2 * Hkv) * d;
  check_rule("attention_backward dq", columns(g, T, W, c_dq, c_dk), columns(g_f, T, W, c_dq, c_dk),
             columns(g_d, T, W, c_dq, c_dk));
  check_rule("attention_backward dk", columns(g, T, W, c_dk, c_dv), columns(g_f, T, W, c_dk, c_dv),
             columns(g_d, T, W, c_dk, c_dv));
  check_rule("attention_backward dv", columns(g, T, W, c_dv, c_end), columns(g_f, T, W, c_dv, c_end),
             columns(g_d, T, W, c_dv, c_end));
  const auto pad = columns(g, T, W, c_end, W);
  CHECK_MESSAGE(std::all_of(pad.begin(), pad.end(), [](float v) { return std::isnan(v); }),
                "attention_backward wrote outside dq/dk/dv (row stride padding)");
}

}  // namespace

TEST_CASE("cuda attention forward and backward = naive (GQA, row strides, odd T, d 16..128)") {
  for (int T : {1, 37, 128, 300})
    for (auto [H, Hkv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{6, 1}})
      for (int d : {32, 64, 128}) check_forward_backward({T, H, Hkv, d});
  // Head dims that are not a multiple of 32 (zero-padded tiles) and the smallest one.
  check_forward_backward({37, 8, 2, 16});
  check_forward_backward({37, 8, 2, 96});
  check_forward_backward({65, 4, 2, 80});
}

TEST_CASE("cuda attention decode = naive decode over ragged caches (split-K)") {
  struct DecodeCase {
    int H, Hkv, d;
    std::vector<int> len;
  };
  const std::vector<DecodeCase> cases = {
      {8, 2, 64, {1, 37, 300, 2049, 129}},  // ragged batch
      {6, 1, 128, {5000, 2}},               // a long cache cut into many splits
      {4, 4, 32, {128, 127, 1}},
      {8, 2, 128, {3000}},                  // B = 1: the most splits per sequence
  };
  for (const auto& c : cases) {
    const int B = int(c.len.size()), H = c.H, Hkv = c.Hkv, d = c.d;
    const uint64_t seed = 77 + 31ull * H + d + 7ull * B;
    INFO("H=" << H << " Hkv=" << Hkv << " d=" << d << " B=" << B << " seed=" << seed);
    Rng rng(seed);
    const auto q = random_vec(rng, size_t(B) * H * d, -kQKV, kQKV);
    std::vector<std::vector<float>> kc, vc;
    std::vector<std::vector<double>> kc_d, vc_d;
    for (int b = 0; b < B; ++b) {
      kc.push_back(random_vec(rng, size_t(c.len[b]) * Hkv * d, -kQKV, kQKV));
      vc.push_back(random_vec(rng, size_t(c.len[b]) * Hkv * d, -kQKV, kQKV));
      kc_d.push_back(to_double(kc.back()));
      vc_d.push_back(to_double(vc.back()));
    }
    std::vector<const float*> kp_f, vp_f;
    std::vector<const double*> kp_d, vp_d;
    for (int b = 0; b < B; ++b) {
      kp_f.push_back(kc[b].data());
      vp_f.push_back(vc[b].data());
      kp_d.push_back(kc_d[b].data());
      vp_d.push_back(vc_d[b].data());
    }
    const auto q_d = to_double(q);
    std::vector<double> o_d(q.size());
    naive::attention_decode<double>(o_d.data(), q_d.data(), kp_d.data(), vp_d.data(), c.len.data(), B, H, Hkv, d);
    std::vector<float> o_f(q.size());
    naive::attention_decode<float>(o_f.data(), q.data(), kp_f.data(), vp_f.data(), c.len.data(), B, H, Hkv, d);

    std::deque<DeviceBuffer<float>> kg, vg;  // DeviceBuffer does not move
    std::vector<const float*> kp_g, vp_g;
    for (int b = 0; b < B; ++b) {
      kg.emplace_back(kc[b]);
      vg.emplace_back(vc[b]);
      kp_g.push_back(kg.back().p);
      vp_g.push_back(vg.back().p);
    }
    DeviceBuffer<const float*> kpg(kp_g), vpg(vp_g);
    DeviceBuffer<int> leng(c.len);
    DeviceBuffer<float> qg(q);
    auto og = poisoned(q.size());
    cuda::attention_decode(og.p, qg.p, kpg.p, vpg.p, leng.p, B, H, Hkv, d);
    check_rule("attention_decode o", og.download(), o_f, o_d);
  }
}

// bf16 forward bound. The kernel sees exactly the bf16-rounded inputs the oracle sees, so every
// error is the kernel's own arithmetic:
//  - scores: bf16·bf16 products are exact in fp32; the tensor-core fp32 sum of d of them (whose
//    rounding may truncate) is off by at most γ_s = d·2⁻²³·scale·Σ_c|q_c k_c|. lse is 1-Lipschitz
//    in the scores (max norm), and its fp32 running sum adds ≤ T·2⁻²³: |Δlse| ≤ Γ + T·2⁻²³,
//    Γ = max γ_s over the causal pairs.
//  - o = Σ p̃_j v_j / Σ p_j with p̃ = bf16(p) (relative error ≤ 2⁻⁹, the one real loss), p
//    relatively off by ≤ 2Γ through the scores, and fp32 tensor-core sums of ≤ 64 + T terms:
//    |Δo| ≤ (2⁻⁸ + 2Γ + (T + 64)·2⁻²³)·Σ_j p_j|v_j| + 10⁻⁶, with Σ p|v| from the oracle run on |v|.
// About 2⁻⁸ ≈ 0.4 % of Σp|v|: looser than fp32 by the bf16 rounding of P, still far below the
// error of a wrong mask, scale or tile (which moves o by a whole p_j·v_j).
TEST_CASE("cuda attention_forward_bf16 = naive on bf16-rounded inputs, within the bf16 bound") {
  for (int T : {1, 37, 128, 300})
    for (auto [H, Hkv] : {std::pair{4, 4}, std::pair{8, 2}, std::pair{6, 1}})
      for (int d : {32, 64, 128}) {
        const Shape s{T, H, Hkv, d};
        const int W = row_width(s);
        const uint64_t seed = seed_of(s) + 5;
        INFO("T=" << T << " H=" << H << " Hkv=" << Hkv << " d=" << d << " seed=" << seed);
        Rng rng(seed);
        const auto x = random_vec(rng, size_t(T) * W, -kQKV, kQKV);
        std::vector<uint16_t> xb(x.size());
        std::vector<double> xr(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
          xb[i] = bf16_bits(x[i]);
          xr[i] = bf16_value(xb[i]);
        }
        const size_t kofs = size_t(H) * d, vofs = size_t(H + Hkv) * d;
        const size_t no = size_t(T) * H * d, nl = size_t(H) * T;
        std::vector<double> o_d(no), lse_d(nl), oabs_d(no), lse_unused(nl);
        naive::attention_forward<double>(o_d.data(), lse_d.data(), xr.data(), W, xr.data() + kofs, xr.data() + vofs,
                                         W, T, H, Hkv, d);
        std::vector<double> xa = xr;
        for (int t = 0; t < T; ++t)
          for (size_t c = vofs; c < vofs + size_t(Hkv) * d; ++c) xa[size_t(t) * W + c] = std::fabs(xa[size_t(t) * W + c]);
        naive::attention_forward<double>(oabs_d.data(), lse_unused.data(), xa.data(), W, xa.data() + kofs,
                                         xa.data() + vofs, W, T, H, Hkv, d);
        // Γ: the largest score error bound over the causal (h, t, j).
        const double scale = 1.0 / std::sqrt(double(d)), u = std::ldexp(1.0, -23);
        double gamma = 0.0;
        for (int h = 0; h < H; ++h) {
          const int g = h * Hkv / H;
          for (int t = 0; t < T; ++t)
            for (int j = 0; j <= t; ++j) {
              double a = 0.0;
              for (int c = 0; c < d; ++c)
                a += std::fabs(xr[size_t(t) * W + size_t(h) * d + c] * xr[size_t(j) * W + kofs + size_t(g) * d + c]);
              gamma = std::max(gamma, d * u * scale * a);
            }
        }
        DeviceBuffer<uint16_t> xg(xb);
        auto og = poisoned(no), lg = poisoned(nl);
        cuda::attention_forward_bf16(og.p, lg.p, xg.p, W, xg.p + kofs, xg.p + vofs, W, T, H, Hkv, d);
        const auto o = og.download(), lse = lg.download();
        const double orel = std::ldexp(1.0, -8) + 2 * gamma + (T + 64) * u;
        double worst_o = 0.0, worst_l = 0.0;  // error / bound; must be ≤ 1 (NaN fails)
        for (size_t i = 0; i < no; ++i) {
          const double r = std::fabs(o[i] - o_d[i]) / (orel * oabs_d[i] + 1e-6);
          worst_o = (r == r) ? std::max(worst_o, r) : INFINITY;
        }
        for (size_t i = 0; i < nl; ++i) {
          const double r = std::fabs(lse[i] - lse_d[i]) / (gamma + T * u + 1e-6);
          worst_l = (r == r) ? std::max(worst_l, r) : INFINITY;
        }
        INFO("o: worst error / bound " << worst_o << " (relative part " << orel << "); lse: " << worst_l
                                       << " (Γ = " << gamma << ")");
        CHECK(worst_o <= 1.0);
        CHECK(worst_l <= 1.0);
      }
}
