// m1rl-gpu-bench: the CUDA backend's speed, as fractions of what the device can do.
// Ceilings first: device-to-device copy bandwidth (1 GiB; read + write traffic), dense bf16
// cuBLAS GEMM (8192³, m1::cuda::gemm_bf16) and dense fp32 GEMM (8192³, m1::cuda::gemm, no TF32,
// the ceiling of the fp32 LM head). Then every kernel family, each as GB/s or TFLOP/s and its
// fraction of the matching ceiling, with issue 4's goals marked met / NOT met:
//   lightning chunked forward ≥ 50% of its memory-traffic floor (qkv read + o written + state in
//     and out, at copy bandwidth) at T ≥ 8K;  lightning decode state update ≥ 70% of copy
//     bandwidth;  expert GEMMs ≥ 60% of a dense bf16 GEMM of the same total shape;  softmax
//     attention forward (bf16, tensor cores) ≥ 50% of the bf16 GEMM rate at T = 8K, d = 128.
// Timing: cudaEvents on the thread's stream, two warm-up calls, then the median of several timed
// spans (each ≥ ~1 ms: short ops repeat inside a span). Inputs are random (seeded) and tiled on
// the device. A sampled output with NaN/Inf is flagged (a speed run is not a correctness test:
// test_gpu is). Prints a line per measurement and one markdown table last.
// Exit status: 0 after a run (goals not met do not fail it), 77 with the reason when there is no
// usable CUDA device, 2 on a bad argument.
//
// Usage: m1rl-gpu-bench [--quick] [--only GROUP[,GROUP...]] [--reps N] [--block B]
//   groups: lightning decode expert attention rmsnorm lm_head adamw (ceilings always run).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdarg>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "base/rng.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops.h"
#include "kernels/kernels.h"

#define M1_BENCH_CUDA(expr)                                                                              \
  do {                                                                                                   \
    cudaError_t m1_e_ = (expr);                                                                          \
    if (m1_e_ != cudaSuccess) {                                                                          \
      std::fprintf(stderr, "%s:%d: CUDA error %s (%s)\n", __FILE__, __LINE__, cudaGetErrorString(m1_e_), \
                   #expr);                                                                               \
      std::abort();                                                                                      \
    }                                                                                                    \
  } while (0)

namespace m1 {
namespace {

struct Options {
  bool quick = false;
  std::vector<std::string> only;  // empty: every group
  int reps = 7;
  int block = 64;  // lightning chunk length
  bool wants(const std::string& group) const {
    return only.empty() || std::find(only.begin(), only.end(), group) != only.end();
  }
};

Options g_opt;
const std::string kGroups[] = {"lightning", "decode", "expert", "attention", "rmsnorm", "lm_head", "adamw"};

// ---- device buffers and inputs ----

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : p(static_cast<T*>(cuda_alloc(count * sizeof(T)))), n(count) {}
  ~Dev() { cuda_free(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  size_t bytes() const { return n * sizeof(T); }
};

cudaStream_t stream() { return static_cast<cudaStream_t>(cuda_stream()); }

// Fills [filled, total) by repeatedly copying the already-filled prefix after itself.
void tile(void* dst, size_t total, size_t filled) {
  while (filled < total) {
    size_t n = std::min(filled, total - filled);
    cuda_copy_device(static_cast<char*>(dst) + filled, dst, n);
    filled += n;
  }
}

constexpr size_t kTileValues = size_t(1) << 22;  // random values generated on the host per buffer

void fill_f32(float* p, size_t n, uint64_t seed, float lo, float hi) {
  if (n == 0) return;
  size_t m = std::min(n, kTileValues);
  Rng rng(seed);
  std::vector<float> h(m);
  for (auto& x : h) x = rng.uniformf(lo, hi);
  cuda_copy_to_device(p, h.data(), m * sizeof(float));
  tile(p, n * sizeof(float), m * sizeof(float));
}

void fill_bf16(uint16_t* p, size_t n, uint64_t seed, float lo, float hi) {
  if (n == 0) return;
  size_t m = std::min(n, kTileValues);
  Dev<float> tmp(m);
  fill_f32(tmp.p, m, seed, lo, hi);
  cuda::to_bf16(p, tmp.p, m);
  tile(p, n * sizeof(uint16_t), m * sizeof(uint16_t));
  cuda_synchronize();
}

template <class T>
void upload(Dev<T>& d, const std::vector<T>& h) {
  cuda_copy_to_device(d.p, h.data(), h.size() * sizeof(T));
}

// True when the first and last 2048 values of a device output are finite.
bool finite_sample(const float* p, size_t n) {
  cuda_synchronize();
  size_t m = std::min(n, size_t(2048));
  std::vector<float> h(m);
  cuda_copy_to_host(h.data(), p, m * sizeof(float));
  bool ok = std::all_of(h.begin(), h.end(), [](float x) { return std::isfinite(x); });
  cuda_copy_to_host(h.data(), p + (n - m), m * sizeof(float));
  return ok && std::all_of(h.begin(), h.end(), [](float x) { return std::isfinite(x); });
}

// ---- timing ----

// Median milliseconds of one call of f. `inner` calls run per timed span (0: enough for ≥ ~1 ms).
double time_ms(const std::function<void()>& f, int inner = 0) {
  cudaEvent_t a, b;
  M1_BENCH_CUDA(cudaEventCreate(&a));
  M1_BENCH_CUDA(cudaEventCreate(&b));
  cudaStream_t s = stream();
  auto span = [&](int k) {
    M1_BENCH_CUDA(cudaEventRecord(a, s));
    for (int i = 0; i < k; ++i) f();
    M1_BENCH_CUDA(cudaEventRecord(b, s));
    M1_BENCH_CUDA(cudaEventSynchronize(b));
    M1_BENCH_CUDA(cudaGetLastError());
    float ms = 0;
    M1_BENCH_CUDA(cudaEventElapsedTime(&ms, a, b));
    return double(ms);
  };
  span(1);  // first call: lazy set-up (cuBLASLt heuristics, module loading)
  double w = span(1);
  if (inner <= 0) inner = std::clamp(int(std::ceil(1.0 / std::max(w, 1e-3))), 1, 256);
  int reps = w * inner > 200 ? 3 : g_opt.reps;
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) v.push_back(span(inner) / inner);
  std::sort(v.begin(), v.end());
  M1_BENCH_CUDA(cudaEventDestroy(a));
  M1_BENCH_CUDA(cudaEventDestroy(b));
  return v[v.size() / 2];
}

// ---- results ----

struct Row {
  std::string group, name, shape;
  double ms = 0, rate = 0;
  std::string unit;       // "GB/s" or "TFLOP/s"
  std::string ceil_name;  // empty: this row is a ceiling
  double ceil = 0;        // in the row's unit
  double goal = -1;       // fraction of the ceiling; < 0: none
  std::string note;
  double fraction() const { return ceil > 0 ? rate / ceil : 0; }
  std::string verdict() const { return goal < 0 ? "" : fraction() >= goal ? "met" : "NOT met"; }
};

std::vector<Row> g_rows;

std::string fmt_rate(double rate, const std::string& unit) {
  char buf[64];
  std::snprintf(buf, sizeof buf, unit == "GB/s" ? "%.0f %s" : "%.1f %s", rate, unit.c_str());
  return buf;
}

void report(Row r) {
  std::printf("[%s] %-32s %-34s %9.3f ms  %14s", r.group.c_str(), r.name.c_str(), r.shape.c_str(), r.ms,
              fmt_rate(r.rate, r.unit).c_str());
  if (!r.ceil_name.empty()) std::printf("  = %5.1f%% of %s", 100 * r.fraction(), r.ceil_name.c_str());
  if (r.goal >= 0) std::printf("  goal ≥ %.0f%%: %s", 100 * r.goal, r.verdict().c_str());
  if (!r.note.empty()) std::printf("  (%s)", r.note.c_str());
  std::printf("\n");
  std::fflush(stdout);
  g_rows.push_back(std::move(r));
}

void print_table() {
  std::printf("\n| group | kernel | shape | ms | rate | ceiling | fraction | goal | result | note |\n");
  std::printf("|---|---|---|---:|---:|---|---:|---:|---|---|\n");
  for (const Row& r : g_rows) {
    char frac[32] = "", goal[32] = "";
    if (!r.ceil_name.empty()) std::snprintf(frac, sizeof frac, "%.1f%%", 100 * r.fraction());
    if (r.goal >= 0) std::snprintf(goal, sizeof goal, "≥ %.0f%%", 100 * r.goal);
    std::printf("| %s | %s | %s | %.3f | %s | %s | %s | %s | %s | %s |\n", r.group.c_str(), r.name.c_str(),
                r.shape.c_str(), r.ms, fmt_rate(r.rate, r.unit).c_str(),
                r.ceil_name.empty() ? "(ceiling)" : r.ceil_name.c_str(), frac, goal, r.verdict().c_str(),
                r.note.c_str());
  }
}

__attribute__((format(printf, 1, 2))) std::string strf(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

double gbps(double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; }
double tflops(double flops, double ms) { return flops / (ms * 1e-3) / 1e12; }

// ---- ceilings ----

struct Ceilings {
  double copy_gbps = 0;    // read + write traffic of a device-to-device copy
  double bf16_tflops = 0;  // dense bf16 GEMM, fp32 accumulation
  double f32_tflops = 0;   // dense fp32 GEMM (no TF32)
};

Ceilings bench_ceilings() {
  Ceilings c;
  {
    const size_t bytes = size_t(1) << 30;
    Dev<uint8_t> src(bytes), dst(bytes);
    M1_BENCH_CUDA(cudaMemsetAsync(src.p, 1, bytes, stream()));
    double ms = time_ms([&] { cuda_copy_device(dst.p, src.p, bytes); });
    c.copy_gbps = gbps(2.0 * double(bytes), ms);
    report({"ceiling", "device copy (read+write)", "1 GiB", ms, c.copy_gbps, "GB/s", "", 0, -1,
            strf("%.0f GB/s one-way", gbps(double(bytes), ms))});
  }
  const int n = g_opt.quick ? 4096 : 8192;
  {
    Dev<uint16_t> a(size_t(n) * n), b(size_t(n) * n);
    Dev<float> out(size_t(n) * n);
    fill_bf16(a.p, a.n, 1, -1, 1);
    fill_bf16(b.p, b.n, 2, -1, 1);
    double ms = time_ms([&] { cuda::gemm_bf16(false, true, n, n, n, 1.f, a.p, n, b.p, n, 0.f, out.p, n); });
    c.bf16_tflops = tflops(2.0 * n * n * double(n), ms);
    report({"ceiling", "dense GEMM bf16 (cuBLASLt)", strf("%d³", n), ms, c.bf16_tflops, "TFLOP/s", "", 0, -1,
            finite_sample(out.p, out.n) ? "" : "NaN/Inf in output"});
  }
  {
    Dev<float> a(size_t(n) * n), b(size_t(n) * n), out(size_t(n) * n);
    fill_f32(a.p, a.n, 3, -1, 1);
    fill_f32(b.p, b.n, 4, -1, 1);
    double ms = time_ms([&] { cuda::gemm(false, true, n, n, n, 1.f, a.p, n, b.p, n, 0.f, out.p, n); });
    c.f32_tflops = tflops(2.0 * n * n * double(n), ms);
    report({"ceiling", "dense GEMM fp32 (no TF32)", strf("%d³", n), ms, c.f32_tflops, "TFLOP/s", "", 0, -1,
            finite_sample(out.p, out.n) ? "" : "NaN/Inf in output"});
  }
  return c;
}

std::string copy_name(const Ceilings& c) { return strf("copy %.0f GB/s", c.copy_gbps); }
std::string bf16_name(const Ceilings& c) { return strf("bf16 GEMM %.0f TFLOP/s", c.bf16_tflops); }

// ---- lightning attention ----

constexpr int kH = 64, kHd = 128;  // heads and head dim of the lightning and softmax benchmarks

void bench_lightning(const Ceilings& c) {
  const int H = kH, d = kHd, B = g_opt.block;
  std::vector<float> lam(H);
  lightning_decay(lam.data(), H, 0, 80);
  Dev<float> lambda(H), s_in(size_t(H) * d * d), s_out(size_t(H) * d * d);
  upload(lambda, lam);
  fill_f32(s_in.p, s_in.n, 10, -0.01f, 0.01f);
  std::vector<int> Ts = g_opt.quick ? std::vector<int>{8192} : std::vector<int>{8192, 16384, 32768, 65536};
  for (int T : Ts) {
    const size_t nqkv = size_t(T) * H * 3 * d, no = size_t(T) * H * d, nstate = size_t(H) * d * d;
    const double flops = double(T) * H * (4.0 * B * d + 4.0 * d * d);  // intra-chunk QKᵀ, PV; Q·S, KᵀV
    Dev<float> qkv(nqkv), o(no);
    fill_f32(qkv.p, nqkv, 11 + T, -0.25f, 0.75f);
    {
      const double bytes = 4.0 * nqkv + 4.0 * no + 2 * 4.0 * nstate;
      double ms = time_ms([&] { cuda::lightning_forward(o.p, s_out.p, qkv.p, s_in.p, lambda.p, T, H, d, B); });
      std::string note = strf("%.1f TFLOP/s", tflops(flops, ms));
      if (!finite_sample(o.p, no)) note += "; NaN/Inf in output";
      report({"lightning", "chunked forward fp32", strf("T=%d H=%d d=%d B=%d", T, H, d, B), ms,
              gbps(bytes, ms), "GB/s", copy_name(c), c.copy_gbps, 0.5, note});
    }
    {
      Dev<uint16_t> qkv16(nqkv);
      cuda::to_bf16(qkv16.p, qkv.p, nqkv);
      const double bytes = 2.0 * nqkv + 4.0 * no + 2 * 4.0 * nstate;
      double ms =
          time_ms([&] { cuda::lightning_forward_bf16(o.p, s_out.p, qkv16.p, s_in.p, lambda.p, T, H, d, B); });
      std::string note = strf("%.1f TFLOP/s", tflops(flops, ms));
      if (!finite_sample(o.p, no)) note += "; NaN/Inf in output";
      report({"lightning", "chunked forward bf16", strf("T=%d H=%d d=%d B=%d", T, H, d, B), ms,
              gbps(bytes, ms), "GB/s", copy_name(c), c.copy_gbps, 0.5, note});
    }
  }
}

void bench_decode(const Ceilings& c) {
  const int H = kH, d = kHd;
  std::vector<float> lam(H);
  lightning_decay(lam.data(), H, 0, 80);
  Dev<float> lambda(H);
  upload(lambda, lam);
  const size_t state = size_t(H) * d * d;  // floats per sequence
  for (int B : {1, 8, 32, 128, 256}) {
    // Enough distinct state sets that one timed span streams ≥ 256 MiB: no set stays in L2.
    const int sets = int(std::max<size_t>(1, ((size_t(256) << 20) + B * state * 4 - 1) / (B * state * 4)));
    Dev<float> states(size_t(sets) * B * state), qkv(size_t(B) * H * 3 * d), o(size_t(B) * H * d);
    fill_f32(states.p, states.n, 20 + B, -0.01f, 0.01f);
    fill_f32(qkv.p, qkv.n, 30 + B, -0.25f, 0.75f);
    std::vector<float*> hp(size_t(sets) * B);
    for (size_t i = 0; i < hp.size(); ++i) hp[i] = states.p + i * state;
    Dev<float*> ptrs(hp.size());
    upload(ptrs, hp);
    int it = 0;
    double ms = time_ms(
        [&] {
          int s = it++ % sets;
          cuda::lightning_decode(o.p, ptrs.p + size_t(s) * B, qkv.p, lambda.p, B, H, d);
        },
        sets);
    const double bytes = double(B) * (2.0 * 4 * state + 4.0 * H * 3 * d + 4.0 * H * d);
    report({"decode", "lightning decode step", strf("B=%d H=%d d=%d", B, H, d), ms, gbps(bytes, ms), "GB/s",
            copy_name(c), c.copy_gbps, 0.7, finite_sample(o.p, o.n) ? "" : "NaN/Inf in output"});
  }
}

// ---- MoE expert GEMMs ----

void bench_expert(const Ceilings& c) {
  const int E = 32, k = 2;
  const int D = g_opt.quick ? 2048 : 6144, F = g_opt.quick ? 3072 : 9216, T = g_opt.quick ? 2048 : 8192;
  const int R = T * k;
  std::vector<int> balanced(E + 1), skewed(E + 1);
  for (int e = 0; e <= E; ++e) balanced[e] = int((long long)e * R / E);
  {
    // Expert e gets a share ∝ 1/(e+1) (a hot head and a long tail); the remainder goes to expert 0.
    double z = 0;
    for (int e = 0; e < E; ++e) z += 1.0 / (e + 1);
    std::vector<int> cnt(E);
    int sum = 0;
    for (int e = 0; e < E; ++e) sum += cnt[e] = int(R / z / (e + 1));
    cnt[0] += R - sum;
    skewed[0] = 0;
    for (int e = 0; e < E; ++e) skewed[e + 1] = skewed[e] + cnt[e];
  }
  struct Proj {
    const char* name;
    int N, K;
  };
  for (Proj pr : {Proj{"up/gate", F, D}, Proj{"down", D, F}}) {
    const int N = pr.N, K = pr.K;
    const double flops = 2.0 * R * N * double(K);
    Dev<uint16_t> x(size_t(R) * K), W(size_t(E) * N * K);
    Dev<float> y(size_t(R) * N);
    fill_bf16(x.p, x.n, 40 + N, -1, 1);
    fill_bf16(W.p, W.n, 50 + N, -0.05f, 0.05f);
    const std::string sh = strf("R=%d N=%d K=%d E=%d", R, N, K, E);
    double dense_ms =
        time_ms([&] { cuda::gemm_bf16(false, true, R, N, K, 1.f, x.p, K, W.p, K, 0.f, y.p, N); });
    const double dense = tflops(flops, dense_ms);
    report({"expert", std::string("dense bf16 GEMM, ") + pr.name, sh, dense_ms, dense, "TFLOP/s", bf16_name(c),
            c.bf16_tflops, -1, "the same total shape as one GEMM"});
    const std::string dense_name = strf("dense same shape %.0f TFLOP/s", dense);
    double ms = time_ms([&] { cuda::expert_gemm_bf16(y.p, x.p, W.p, balanced.data(), E, N, K); });
    report({"expert", std::string("expert_gemm_bf16 ") + pr.name + ", balanced", sh, ms, tflops(flops, ms),
            "TFLOP/s", dense_name, dense, 0.6, finite_sample(y.p, y.n) ? "" : "NaN/Inf in output"});
    ms = time_ms([&] { cuda::expert_gemm_bf16(y.p, x.p, W.p, skewed.data(), E, N, K); });
    report({"expert", std::string("expert_gemm_bf16 ") + pr.name + ", skewed 1/(e+1)", sh, ms, tflops(flops, ms),
            "TFLOP/s", dense_name, dense, -1, "no goal: load imbalance"});
  }
}

// ---- softmax attention ----

void bench_attention(const Ceilings& c) {
  const int T = g_opt.quick ? 2048 : 8192, H = kH, Hkv = 8, d = kHd;
  const size_t nq = size_t(T) * H * d, nkv = size_t(T) * Hkv * d;
  const int ldq = H * d, ldkv = Hkv * d;
  const double fwd_flops = 4.0 * T * double(T) * d * H / 2;  // causal: QKᵀ and PV over half the square
  Dev<float> q(nq), k(nkv), v(nkv), o(nq), lse(size_t(H) * T), o2(nq), lse2(size_t(H) * T);
  fill_f32(q.p, nq, 60, -1, 1);
  fill_f32(k.p, nkv, 61, -1, 1);
  fill_f32(v.p, nkv, 62, -1, 1);
  const std::string sh = strf("T=%d H=%d Hkv=%d d=%d", T, H, Hkv, d);
  double ms = time_ms([&] { cuda::attention_forward(o.p, lse.p, q.p, ldq, k.p, v.p, ldkv, T, H, Hkv, d); });
  report({"attention", "softmax forward fp32", sh, ms, tflops(fwd_flops, ms), "TFLOP/s", bf16_name(c),
          c.bf16_tflops, -1,
          std::string("fp32 CUDA cores: the goal is the bf16 kernel's") +
              (finite_sample(o.p, nq) ? "" : "; NaN/Inf in output")});
  {
    Dev<uint16_t> q16(nq), k16(nkv), v16(nkv);
    cuda::to_bf16(q16.p, q.p, nq);
    cuda::to_bf16(k16.p, k.p, nkv);
    cuda::to_bf16(v16.p, v.p, nkv);
    ms = time_ms(
        [&] { cuda::attention_forward_bf16(o2.p, lse2.p, q16.p, ldq, k16.p, v16.p, ldkv, T, H, Hkv, d); });
    report({"attention", "softmax forward bf16", sh, ms, tflops(fwd_flops, ms), "TFLOP/s", bf16_name(c),
            c.bf16_tflops, 0.5, finite_sample(o2.p, nq) ? "" : "NaN/Inf in output"});
  }
  {
    Dev<float> dout(nq), dq(nq), dk(nkv), dv(nkv);
    fill_f32(dout.p, nq, 63, -1, 1);
    ms = time_ms([&] {
      cuda::attention_backward(dq.p, dk.p, dv.p, dout.p, o.p, lse.p, q.p, ldq, k.p, v.p, ldkv, T, H, Hkv, d);
    });
    report({"attention", "softmax backward fp32", sh, ms, tflops(2.5 * fwd_flops, ms), "TFLOP/s", bf16_name(c),
            c.bf16_tflops, -1, finite_sample(dq.p, nq) && finite_sample(dk.p, nkv) ? "" : "NaN/Inf in output"});
  }
}

// ---- rmsnorm, LM head, AdamW ----

void bench_rmsnorm(const Ceilings& c) {
  const int N = g_opt.quick ? 4096 : 32768, D = 6144;
  const size_t nx = size_t(N) * D;
  Dev<float> x(nx), y(nx), w(D), rstd(N), dy(nx), dw(D);
  fill_f32(x.p, nx, 70, -1, 1);
  fill_f32(w.p, D, 71, 0.5f, 1.5f);
  fill_f32(dy.p, nx, 72, -1, 1);
  fill_f32(dw.p, D, 73, 0, 0);
  const std::string sh = strf("N=%d D=%d", N, D);
  double ms = time_ms([&] { cuda::rmsnorm_forward(y.p, rstd.p, x.p, w.p, N, D, 1e-6f); });
  report({"rmsnorm", "rmsnorm forward", sh, ms, gbps(2.0 * 4 * nx + 4.0 * (N + D), ms), "GB/s", copy_name(c),
          c.copy_gbps, -1, finite_sample(y.p, nx) ? "" : "NaN/Inf in output"});
  ms = time_ms([&] { cuda::rmsnorm_backward(y.p, dw.p, dy.p, x.p, w.p, rstd.p, N, D); });
  report({"rmsnorm", "rmsnorm backward", sh, ms, gbps(3.0 * 4 * nx + 4.0 * (N + 3 * D), ms), "GB/s",
          copy_name(c), c.copy_gbps, -1, finite_sample(y.p, nx) ? "" : "NaN/Inf in output"});
}

void bench_lm_head(const Ceilings& c) {
  const int T = g_opt.quick ? 512 : 4096, D = g_opt.quick ? 2048 : 6144, V = g_opt.quick ? 32000 : 200064;
  Dev<float> x(size_t(T) * D), W(size_t(V) * D), logp(T), entropy(T), logsm(size_t(T) * V);
  Dev<int> targets(T);
  fill_f32(x.p, x.n, 80, -1, 1);
  fill_f32(W.p, W.n, 81, -0.02f, 0.02f);
  std::vector<int> tg(T);
  Rng rng(82);
  for (auto& t : tg) t = int(rng.below(uint64_t(V)));
  upload(targets, tg);
  double ms = time_ms(
      [&] { cuda::lm_head_forward(logp.p, entropy.p, logsm.p, x.p, W.p, targets.p, T, D, V); });
  const std::string name = strf("fp32 GEMM %.0f TFLOP/s", c.f32_tflops);
  report({"lm_head", "lm_head forward (logits+log-softmax)", strf("T=%d D=%d V=%d", T, D, V), ms,
          tflops(2.0 * T * double(V) * D, ms), "TFLOP/s", name, c.f32_tflops, -1,
          finite_sample(logp.p, T) ? "" : "NaN/Inf in output"});
}

void bench_adamw(const Ceilings& c) {
  const size_t n = g_opt.quick ? size_t(1) << 24 : size_t(1) << 28;
  Dev<float> p(n), g(n), m(n), v(n);
  fill_f32(p.p, n, 90, -0.1f, 0.1f);
  fill_f32(g.p, n, 91, -1e-3f, 1e-3f);
  fill_f32(m.p, n, 92, -1e-4f, 1e-4f);
  fill_f32(v.p, n, 93, 0, 1e-6f);
  double ms = time_ms([&] { cuda::adamw(p.p, g.p, m.p, v.p, n, 1e-5f, 0.9f, 0.95f, 1e-8f, 0.1f, 10, 1.f); });
  report({"adamw", "adamw (p,g,m,v read; p,m,v written)", strf("n=%zu", n), ms,
          gbps(28.0 * double(n), ms), "GB/s", copy_name(c), c.copy_gbps, -1,
          finite_sample(p.p, n) ? "" : "NaN/Inf in output"});
}

bool parse_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--quick") {
      g_opt.quick = true;
    } else if (a == "--only" || a == "--reps" || a == "--block") {
      const char* v = value();
      if (!v) {
        std::fprintf(stderr, "m1rl-gpu-bench: %s needs a value\n", a.c_str());
        return false;
      }
      if (a == "--only") {
        std::string s = v;
        for (size_t p = 0; p <= s.size();) {
          size_t q = s.find(',', p);
          if (q == std::string::npos) q = s.size();
          if (q > p) g_opt.only.push_back(s.substr(p, q - p));
          if (q > p && std::find(std::begin(kGroups), std::end(kGroups), g_opt.only.back()) == std::end(kGroups)) {
            std::fprintf(stderr, "m1rl-gpu-bench: unknown group '%s'\n", g_opt.only.back().c_str());
            return false;
          }
          p = q + 1;
        }
      } else {
        int x = std::atoi(v);
        if (x < 1) {
          std::fprintf(stderr, "m1rl-gpu-bench: %s expects a positive integer, got '%s'\n", a.c_str(), v);
          return false;
        }
        (a == "--reps" ? g_opt.reps : g_opt.block) = x;
      }
    } else {
      std::fprintf(stderr,
                   "usage: m1rl-gpu-bench [--quick] [--only GROUP[,GROUP...]] [--reps N] [--block B]\n"
                   "  groups: lightning decode expert attention rmsnorm lm_head adamw\n");
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace m1

int main(int argc, char** argv) {
  using namespace m1;
  if (!parse_args(argc, argv)) return 2;
  char why[256] = "";
  if (cuda_device_count(why, sizeof why) == 0) {
    std::printf("SKIP: no usable CUDA device (%s); m1rl-gpu-bench needs one (tools/gpu-check)\n", why);
    return 77;
  }
  std::printf("device: %s%s\n\n", cuda_device_description().c_str(), g_opt.quick ? " (quick shapes)" : "");
  const Ceilings c = bench_ceilings();
  if (g_opt.wants("lightning")) bench_lightning(c);
  if (g_opt.wants("decode")) bench_decode(c);
  if (g_opt.wants("expert")) bench_expert(c);
  if (g_opt.wants("attention")) bench_attention(c);
  if (g_opt.wants("rmsnorm")) bench_rmsnorm(c);
  if (g_opt.wants("lm_head")) bench_lm_head(c);
  if (g_opt.wants("adamw")) bench_adamw(c);
  int met = 0, missed = 0;
  for (const Row& r : g_rows) {
    if (r.verdict() == "met") ++met;
    if (r.verdict() == "NOT met") ++missed;
  }
  print_table();
  std::printf("\ngoals: %d met, %d NOT met\n", met, missed);
  return 0;
}
