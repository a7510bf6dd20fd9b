// Helpers for the CUDA-vs-CPU-oracle tests (tests/gpu). The tolerance rule (docs/gpu.md, from
// flash-attention): the CUDA result's max error against the double-precision naive kernel may be
// at most 2× the error of the float naive kernel against the same reference, plus a small
// absolute floor for values that both compute exactly.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/rng.h"
#include "kernels/cuda/cuda.h"

namespace m1::gpu_test {

// A device buffer of n values of T, freed on destruction.
template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : p(static_cast<T*>(cuda_alloc(count * sizeof(T)))), n(count) {}
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cuda_free(p); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p(o.p), n(o.n) {  // so poisoned() can return one
    o.p = nullptr;
    o.n = 0;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) { cuda_copy_to_device(p, host.data(), host.size() * sizeof(T)); }
  std::vector<T> download() const {
    std::vector<T> host(n);
    cuda_synchronize();
    cuda_copy_to_host(host.data(), p, n * sizeof(T));
    return host;
  }
};

// Poisoned output buffer (NaN), so a kernel that skips an element fails the comparison.
inline DeviceBuffer<float> poisoned(size_t n) {
  DeviceBuffer<float> b(n);
  cuda_fill_nan(b.p, n);
  return b;
}

// n uniform values in [lo, hi), never all zero.
inline std::vector<float> random_vec(Rng& rng, size_t n, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = lo + (hi - lo) * float(rng.uniform());
  return v;
}

// bf16 round-to-nearest-even on the host (finite inputs), and back: what the GPU's bf16 inputs
// hold, so the oracle can run on the same rounded values.
inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float bf16_value(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

inline double max_abs_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double e = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double d = std::fabs(double(got[i]) - ref[i]);
    if (!(d == d)) return INFINITY;  // NaN: an element was not written or is broken
    e = std::max(e, d);
  }
  return e;
}

// Checks the tolerance rule for one output tensor and prints the errors on failure.
inline void check_rule(const char* what, const std::vector<float>& gpu, const std::vector<float>& cpu_f32,
                       const std::vector<double>& ref_f64, double abs_floor = 1e-6) {
  REQUIRE(gpu.size() == ref_f64.size());
  double eg = max_abs_err(gpu, ref_f64);
  double ec = max_abs_err(cpu_f32, ref_f64);
  INFO(what << ": cuda err " << eg << ", naive fp32 err " << ec << ", allowed " << 2 * ec + abs_floor);
  CHECK(eg <= 2 * ec + abs_floor);
}

}  // namespace m1::gpu_test
