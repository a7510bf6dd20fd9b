// Vectorisable float exp for the CPU fast path (glibc's expf does not vectorise without
// -ffast-math). Cody-Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, then a degree-6
// polynomial for e^r and 2^n through the exponent bits. Relative error ≤ 2e-7 over
// [−87, 88]; inputs below −87 give 0 (within 1e-38), above 88 saturate at e^88.
// Loops over vexp vectorise only with -fno-trapping-math (set for m1_kernels in CMakeLists.txt):
// otherwise GCC keeps the clamp below as a branch.
#pragma once

#include <cstdint>
#include <cstring>

namespace m1 {

inline float vexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float vsigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }

}  // namespace m1
