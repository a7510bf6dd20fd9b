// CUDA lightning attention (kernels/cuda/lightning.cu) against the naive recurrence: chunked
// forward (output and carried state, zero and random initial state, block sizes 1..256 and T not
// a multiple of them), chunked backward (dq, dk, dv), the batched recurrent decode, chunked ==
// token-by-token decode, and the bf16 tensor-core forward. fp32 ops: gpu_test::check_rule on
// fresh random inputs and NaN-poisoned outputs; the bf16 forward's bound is derived next to its test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "base/rng.h"
#include "kernels/cpu/naive.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/gpu_test_util.h"

using namespace m1;
using namespace m1::gpu_test;

namespace {

// Per-head decays from fast (0.6: the state forgets within a block) to slow (0.999).
std::vector<float> decays(int H) {
  const float pool[] = {0.6f, 0.9f, 0.99f, 0.999f};
  std::vector<float> lam(static_cast<size_t>(H));
  for (int h = 0; h < H; ++h) lam[h] = pool[h % 4];
  return lam;
}

// Component comp (0 = q, 1 = k, 2 = v) of every head of x [T, H·3d].
template <class T>
std::vector<T> component(const std::vector<T>& x, int rows, int H, int d, int comp) {
  std::vector<T> out;
  out.reserve(size_t(rows) * H * d);
  for (int t = 0; t < rows; ++t)
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < d; ++c) out.push_back(x[(size_t(t) * H + h) * 3 * d + size_t(comp) * d + c]);
  return out;
}


constexpr int kBlocks[] = {1, 16, 64, 256, 100};

}  // namespace

TEST_CASE("cuda lightning_forward = naive: output and state, zero and random state_in, every block size") {
  const int H = 4;
  const auto lam = decays(H);
  DeviceBuffer<float> lamg(lam);
  for (int T : {1, 37, 128, 300})
    for (int d : {32, 64, 128})
      for (bool with_state : {false, true}) {
        const uint64_t seed = 5000ull + 1009ull * T + 17ull * d + with_state;
        INFO("T=" << T << " H=" << H << " d=" << d << " state_in=" << with_state << " seed=" << seed);
        Rng rng(seed);
        const auto qkv = random_vec(rng, size_t(T) * 3 * H * d);
        const auto s0 = random_vec(rng, size_t(H) * d * d, -0.5f, 0.5f);
        const auto qkv_d = to_double(qkv), s0_d = to_double(s0);
        const size_t no = size_t(T) * H * d, ns = size_t(H) * d * d;
        std::vector<double> o_d(no), st_d(ns);
        naive::lightning_forward<double>(o_d.data(), st_d.data(), qkv_d.data(), with_state ? s0_d.data() : nullptr,
                                         lam.data(), T, H, d, 1);
        std::vector<float> o_f(no), st_f(ns);
        naive::lightning_forward<float>(o_f.data(), st_f.data(), qkv.data(), with_state ? s0.data() : nullptr,
                                        lam.data(), T, H, d, 1);
        DeviceBuffer<float> qkvg(qkv), s0g(s0);
        for (int block : kBlocks) {
          CAPTURE(block);
          auto og = poisoned(no), sg = poisoned(ns);
          cuda::lightning_forward(og.p, sg.p, qkvg.p, with_state ? s0g.p : nullptr, lamg.p, T, H, d, block);
          check_rule("lightning_forward o", og.download(), o_f, o_d);
          check_rule("lightning_forward state_out", sg.download(), st_f, st_d);
        }
        // state_out may be null.
        auto og = poisoned(no);
        cuda::lightning_forward(og.p, nullptr, qkvg.p, with_state ? s0g.p : nullptr, lamg.p, T, H, d, 64);
        check_rule("lightning_forward o (no state_out)", og.download(), o_f, o_d);
      }
}

TEST_CASE("cuda lightning_backward = naive gradient: dq, dk, dv for every block size and a ragged tail") {
  const int H = 4;
  const auto lam = decays(H);
  DeviceBuffer<float> lamg(lam);
  for (int T : {1, 37, 128, 300})
    for (int d : {32, 64, 128}) {
      const uint64_t seed = 6000ull + 1009ull * T + 17ull * d;
      INFO("T=" << T << " H=" << H << " d=" << d << " seed=" << seed);
      Rng rng(seed);
      const auto qkv = random_vec(rng, size_t(T) * 3 * H * d);
      const auto dout = random_vec(rng, size_t(T) * H * d);
      const auto qkv_d = to_double(qkv), dout_d = to_double(dout);
      std::vector<double> g_d(qkv.size());
      naive::lightning_backward<double>(g_d.data(), dout_d.data(), qkv_d.data(), lam.data(), T, H, d, 1);
      std::vector<float> g_f(qkv.size());
      naive::lightning_backward<float>(g_f.data(), dout.data(), qkv.data(), lam.data(), T, H, d, 1);
      DeviceBuffer<float> qkvg(qkv), doutg(dout);
      for (int block : kBlocks) {
        CAPTURE(block);
        auto gg = poisoned(qkv.size());
        cuda::lightning_backward(gg.p, doutg.p, qkvg.p, lamg.p, T, H, d, block);
        const auto g = gg.download();
        const char* names[] = {"lightning_backward dq", "lightning_backward dk", "lightning_backward dv"};
        for (int comp = 0; comp < 3; ++comp)
          check_rule(names[comp], component(g, T, H, d, comp), component(g_f, T, H, d, comp),
                     component(g_d, T, H, d, comp));
      }
    }
}

TEST_CASE("cuda lightning_decode = naive decode step: B sequences, states updated in place") {
  const int H = 4, B = 5;
  const auto lam = decays(H);
  DeviceBuffer<float> lamg(lam);
  for (int d : {32, 64, 80, 128}) {
    const uint64_t seed = 7000ull + d;
    INFO("B=" << B << " H=" << H << " d=" << d << " seed=" << seed);
    Rng rng(seed);
    const size_t ns = size_t(H) * d * d;
    const auto qkv = random_vec(rng, size_t(B) * 3 * H * d);
    std::vector<std::vector<float>> st_f;
    std::vector<std::vector<double>> st_d;
    for (int b = 0; b < B; ++b) {
      st_f.push_back(random_vec(rng, ns));
      st_d.push_back(to_double(st_f.back()));
    }
    std::deque<DeviceBuffer<float>> sg;  // one allocation per sequence, like a real cache
    std::vector<float*> sp_g, sp_f;
    std::vector<double*> sp_d;
    for (int b = 0; b < B; ++b) {
      sg.emplace_back(st_f[b]);
      sp_g.push_back(sg.back().p);
      sp_f.push_back(st_f[b].data());
      sp_d.push_back(st_d[b].data());
    }
    const auto qkv_d = to_double(qkv);
    std::vector<double> o_d(size_t(B) * H * d);
    naive::lightning_decode<double>(o_d.data(), sp_d.data(), qkv_d.data(), lam.data(), B, H, d);
    std::vector<float> o_f(o_d.size());
    naive::lightning_decode<float>(o_f.data(), sp_f.data(), qkv.data(), lam.data(), B, H, d);
    DeviceBuffer<float> qkvg(qkv);
    DeviceBuffer<float*> spg(sp_g);
    auto og = poisoned(o_d.size());
    cuda::lightning_decode(og.p, spg.p, qkvg.p, lamg.p, B, H, d);
    check_rule("lightning_decode o", og.download(), o_f, o_d);
    std::vector<float> all_g, all_f;
    std::vector<double> all_d;
    for (int b = 0; b < B; ++b) {
      const auto s = sg[b].download();
      all_g.insert(all_g.end(), s.begin(), s.end());
      all_f.insert(all_f.end(), st_f[b].begin(), st_f[b].end());
      all_d.insert(all_d.end(), st_d[b].begin(), st_d[b].end());
    }
    check_rule("lightning_decode states", all_g, all_f, all_d);
  }
}

// The chunked form (training) and the recurrent form (decode) are one recurrence: the GPU decode
// run token by token from the same initial state reproduces the GPU chunked forward, output and
// final state. Each is held to check_rule against the oracle, and their difference to the sum of
// the two allowances (4× naive<float>'s error + 2 floors).
TEST_CASE("cuda lightning: chunked forward == token-by-token decode (output and final state), batched") {
  const int H = 4, B = 3, block = 16;
  const auto lam = decays(H);
  DeviceBuffer<float> lamg(lam);
  for (int T : {37, 130})
    for (int d : {32, 64, 128}) {
      const uint64_t seed = 8000ull + 101ull * T + d;
      INFO("T=" << T << " B=" << B << " H=" << H << " d=" << d << " seed=" << seed);
      Rng rng(seed);
      const size_t row = size_t(3) * H * d, no = size_t(T) * H * d, ns = size_t(H) * d * d;
      std::vector<std::vector<float>> qkv, s0;
      for (int b = 0; b < B; ++b) {
        qkv.push_back(random_vec(rng, size_t(T) * row));
        s0.push_back(random_vec(rng, ns, -0.5f, 0.5f));
      }
      // Oracle, chunked and the decode inputs, sequence-major ([b][t][H·d] and [b][H,d,d]).
      std::vector<double> o_d, st_d;
      std::vector<float> o_f, st_f, o_c, st_c;
      for (int b = 0; b < B; ++b) {
        const auto qd = to_double(qkv[b]), sd = to_double(s0[b]);
        std::vector<double> od(no), std_(ns);
        naive::lightning_forward<double>(od.data(), std_.data(), qd.data(), sd.data(), lam.data(), T, H, d, 1);
        std::vector<float> of(no), sf(ns);
        naive::lightning_forward<float>(of.data(), sf.data(), qkv[b].data(), s0[b].data(), lam.data(), T, H, d, 1);
        o_d.insert(o_d.end(), od.begin(), od.end());
        st_d.insert(st_d.end(), std_.begin(), std_.end());
        o_f.insert(o_f.end(), of.begin(), of.end());
        st_f.insert(st_f.end(), sf.begin(), sf.end());
        DeviceBuffer<float> qg(qkv[b]), sg(s0[b]);
        auto og = poisoned(no), so = poisoned(ns);
        cuda::lightning_forward(og.p, so.p, qg.p, sg.p, lamg.p, T, H, d, block);
        const auto oc = og.download(), sc = so.download();
        o_c.insert(o_c.end(), oc.begin(), oc.end());
        st_c.insert(st_c.end(), sc.begin(), sc.end());
      }
      // Decode: step t feeds row t of every sequence; states of sequence b at states[b].
      std::vector<float> steps(size_t(T) * B * row), states0;
      for (int t = 0; t < T; ++t)
        for (int b = 0; b < B; ++b)
          std::copy_n(qkv[b].begin() + size_t(t) * row, row, steps.begin() + (size_t(t) * B + b) * row);
      for (int b = 0; b < B; ++b) states0.insert(states0.end(), s0[b].begin(), s0[b].end());
      DeviceBuffer<float> stepsg(steps), statesg(states0);
      std::vector<float*> sp;
      for (int b = 0; b < B; ++b) sp.push_back(statesg.p + size_t(b) * ns);
      DeviceBuffer<float*> spg(sp);
      auto outg = poisoned(size_t(T) * B * H * d);  // [t][b][H·d]
      for (int t = 0; t < T; ++t)
        cuda::lightning_decode(outg.p + size_t(t) * B * H * d, spg.p, stepsg.p + size_t(t) * B * row, lamg.p, B, H,
                               d);
      const auto out = outg.download();
      std::vector<float> o_dec(size_t(B) * no);
      for (int t = 0; t < T; ++t)
        for (int b = 0; b < B; ++b)
          std::copy_n(out.begin() + (size_t(t) * B + b) * H * d, size_t(H) * d,
                      o_dec.begin() + (size_t(b) * T + t) * H * d);
      const auto st_dec = statesg.download();

      check_rule("chunked o", o_c, o_f, o_d);
      check_rule("chunked state", st_c, st_f, st_d);
      check_rule("decode o", o_dec, o_f, o_d);
      check_rule("decode state", st_dec, st_f, st_d);
      const double eo = max_abs_err(o_f, o_d), es = max_abs_err(st_f, st_d);
      double diff_o = 0, diff_s = 0;
      for (size_t i = 0; i < o_c.size(); ++i) diff_o = std::max(diff_o, double(std::fabs(o_c[i] - o_dec[i])));
      for (size_t i = 0; i < st_c.size(); ++i) diff_s = std::max(diff_s, double(std::fabs(st_c[i] - st_dec[i])));
      INFO("chunked vs decode: o " << diff_o << " (allowed " << 4 * eo + 2e-6 << "), state " << diff_s
                                   << " (allowed " << 4 * es + 2e-6 << ")");
      CHECK(diff_o <= 4 * eo + 2e-6);
      CHECK(diff_s <= 4 * es + 2e-6);
    }
}

// bf16 forward bound. The kernel sees exactly the bf16-rounded inputs the oracle sees. The
// inter-block product Q·KV and the state update run in fp32 on exact bf16 values, so the state
// keeps the fp32 rule. The intra-block products run on tensor cores: q·k (exact products, fp32
// sums of d terms, possibly truncating: ≤ d·2⁻²³ relative to Σ|q||k|), then w = λ^{i−j}·(q·k)
// rounded to bf16 (≤ 2⁻⁹ relative, the one real loss) and w·V summed in fp32 (≤ 64 terms), and
// the outputs of ≤ T tokens accumulate in fp32. Every term of o_t is bounded by the same term of
// the recurrence run on |q|, |k|, |v| and |state_in| (M_abs), so
//   |Δo| ≤ (2⁻⁸ + (d + 64 + T)·2⁻²³)·M_abs + 10⁻⁶.
// About 0.4 % of M_abs: looser than fp32 by the bf16 rounding of the decayed scores, still far
// below what a wrong mask, decay exponent or chunk boundary moves (whole terms of M_abs).
TEST_CASE("cuda lightning_forward_bf16 = naive on bf16-rounded inputs, within the bf16 bound") {
  const int H = 4;
  const auto lam = decays(H);
  DeviceBuffer<float> lamg(lam);
  for (int T : {1, 37, 128, 300})
    for (int d : {32, 64, 128}) {
      const uint64_t seed = 9000ull + 1009ull * T + 17ull * d;
      INFO("T=" << T << " H=" << H << " d=" << d << " seed=" << seed);
      Rng rng(seed);
      const auto x = random_vec(rng, size_t(T) * 3 * H * d);
      const auto s0 = random_vec(rng, size_t(H) * d * d, -0.5f, 0.5f);
      std::vector<uint16_t> xb(x.size());
      std::vector<float> xr_f(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        xb[i] = bf16_bits(x[i]);
        xr_f[i] = bf16_value(xb[i]);
      }
      const auto xr = to_double(xr_f), s0_d = to_double(s0);
      std::vector<double> xa(xr.size()), s0a(s0_d.size());
      for (size_t i = 0; i < xr.size(); ++i) xa[i] = std::fabs(xr[i]);
      for (size_t i = 0; i < s0_d.size(); ++i) s0a[i] = std::fabs(s0_d[i]);
      const size_t no = size_t(T) * H * d, ns = size_t(H) * d * d;
      std::vector<double> o_d(no), st_d(ns), m_abs(no), st_unused(ns);
      naive::lightning_forward<double>(o_d.data(), st_d.data(), xr.data(), s0_d.data(), lam.data(), T, H, d, 1);
      naive::lightning_forward<double>(m_abs.data(), st_unused.data(), xa.data(), s0a.data(), lam.data(), T, H, d, 1);
      std::vector<float> o_f(no), st_f(ns);
      naive::lightning_forward<float>(o_f.data(), st_f.data(), xr_f.data(), s0.data(), lam.data(), T, H, d, 1);
      DeviceBuffer<uint16_t> xg(xb);
      DeviceBuffer<float> s0g(s0);
      const double u = std::ldexp(1.0, -23), orel = std::ldexp(1.0, -8) + (d + 64 + T) * u;
      for (int block : {16, 64, 256}) {
        CAPTURE(block);
        auto og = poisoned(no), sg = poisoned(ns);
        cuda::lightning_forward_bf16(og.p, sg.p, xg.p, s0g.p, lamg.p, T, H, d, block);
        const auto o = og.download();
        double worst = 0.0;  // error / bound; must be ≤ 1 (NaN fails)
        for (size_t i = 0; i < no; ++i) {
          const double r = std::fabs(o[i] - o_d[i]) / (orel * m_abs[i] + 1e-6);
          worst = (r == r) ? std::max(worst, r) : INFINITY;
        }
        INFO("o: worst error / bound " << worst << " (relative part " << orel << ")");
        CHECK(worst <= 1.0);
        check_rule("lightning_forward_bf16 state_out", sg.download(), st_f, st_d);
      }
    }
}
