// RMSNorm, the element-wise activations (SiLU, SwiGLU, sigmoid gate) and partial NeoX RoPE on the
// GPU; contracts of kernels/kernels.h, math of kernels/cpu/naive.cc (same formulas, same order
// of operations per element, fp32 statistics).
//   rmsnorm: one block per row; dw (+=) is a deterministic two-stage column sum (partials over
//            fixed row chunks, then each column sums its partials in chunk order): no atomics.
//   rope:    one thread per (t, i) pair; the angle and its cos/sin in double (as naive.cc), since
//            pos·θ^(−2i/r) reaches thousands of radians where fp32 would lose ~1e-4.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"
#include "kernels/cuda/ops.h"

namespace m1::cuda {

namespace {

// y = x·r ⊙ w per row; rstd[row] = r.  grid N, block kThreads.
__global__ void rmsnorm_forward_kernel(float* y, float* rstd, const float* x, const float* w, int D, float eps) {
  const size_t row = blockIdx.x;
  const float* xr = x + row * D;
  float ss = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss);
  const float r = 1.0f / sqrtf(ss / float(D) + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int i = threadIdx.x; i < D; i += blockDim.x) y[row * D + i] = xr[i] * r * w[i];
}

// dx_j = r·(dy_j w_j − x_j·c), c = r²·Σ_i dy_i w_i x_i / D.  grid N, block kThreads.
__global__ void rmsnorm_backward_dx_kernel(float* dx, const float* dy, const float* x, const float* w,
                                           const float* rstd, int D) {
  const size_t row = blockIdx.x;
  const float* xr = x + row * D;
  const float* dyr = dy + row * D;
  const float r = rstd[row];
  float dot = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) dot += dyr[i] * w[i] * xr[i];
  dot = block_sum(dot);
  const float c = r * r * dot / float(D);
  for (int i = threadIdx.x; i < D; i += blockDim.x) dx[row * D + i] = r * (dyr[i] * w[i] - xr[i] * c);
}

// partial[p, i] = Σ_{n in chunk p} dy[n,i]·x[n,i]·r[n], chunk p = rows [p·R, min(N, (p+1)·R)).
// grid (ceil(D / kThreads), P).
__global__ void rmsnorm_dw_partial_kernel(float* partial, const float* dy, const float* x, const float* rstd, int N,
                                          int D, int R) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= D) return;
  const int p = blockIdx.y;
  const int n0 = p * R, n1 = min(N, n0 + R);
  float acc = 0.f;
  for (int n = n0; n < n1; ++n) acc += dy[size_t(n) * D + i] * x[size_t(n) * D + i] * rstd[n];
  partial[size_t(p) * D + i] = acc;
}

// dw[i] += Σ_p partial[p, i], in chunk order.
__global__ void rmsnorm_dw_finish_kernel(float* dw, const float* partial, int P, int D) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= D) return;
  float acc = 0.f;
  for (int p = 0; p < P; ++p) acc += partial[size_t(p) * D + i];
  dw[i] += acc;
}

#define M1_GRID_STRIDE(i, n) \
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += size_t(gridDim.x) * blockDim.x)

__global__ void silu_forward_kernel(float* y, const float* x, size_t n) {
  M1_GRID_STRIDE(i, n) y[i] = x[i] * sigmoidf_(x[i]);
}

__global__ void silu_backward_kernel(float* dx, const float* dy, const float* x, size_t n) {
  M1_GRID_STRIDE(i, n) {
    const float s = sigmoidf_(x[i]);
    dx[i] = dy[i] * s * (1.f + x[i] * (1.f - s));
  }
}

__global__ void swiglu_forward_kernel(float* y, const float* a, const float* b, size_t n) {
  M1_GRID_STRIDE(i, n) y[i] = a[i] * sigmoidf_(a[i]) * b[i];
}

__global__ void swiglu_backward_kernel(float* da, float* db, const float* dy, const float* a, const float* b,
                                       size_t n) {
  M1_GRID_STRIDE(i, n) {
    const float s = sigmoidf_(a[i]);
    const float g = dy[i];
    da[i] = g * b[i] * s * (1.f + a[i] * (1.f - s));
    db[i] = g * a[i] * s;
  }
}

__global__ void sigmoid_mul_forward_kernel(float* out, const float* g, const float* y, size_t n) {
  M1_GRID_STRIDE(i, n) out[i] = sigmoidf_(g[i]) * y[i];
}

__global__ void sigmoid_mul_backward_kernel(float* dg, float* dy, const float* dout, const float* g, const float* y,
                                            size_t n) {
  M1_GRID_STRIDE(i, n) {
    const float s = sigmoidf_(g[i]);
    dg[i] = dout[i] * y[i] * s * (1.f - s);
    dy[i] = dout[i] * s;
  }
}

// Rotates pair (i, i + r/2) of every head of row t by sign·φ, φ = pos[t]·θ^(−2i/r).
// One thread per (t, i), i < r/2 fastest.
__global__ void rope_kernel(float* x, int T, int nh, int d, int ld, int r, const int* pos, float theta, double sign) {
  const int half = r / 2;
  const size_t total = size_t(T) * half;
  M1_GRID_STRIDE(idx, total) {
    const int t = int(idx / half), i = int(idx % half);
    const double phi = sign * double(pos[t]) * pow(double(theta), -2.0 * i / double(r));
    double sd, cd;
    sincos(phi, &sd, &cd);
    const float c = float(cd), s = float(sd);
    for (int h = 0; h < nh; ++h) {
      float* xh = x + size_t(t) * ld + size_t(h) * d;
      const float a = xh[i], b = xh[i + half];
      xh[i] = a * c - b * s;
      xh[i + half] = b * c + a * s;
    }
  }
}

#undef M1_GRID_STRIDE

void rope_launch(float* x, int T, int nh, int d, int ld, int r, const int* pos, float theta, double sign) {
  M1_CUDA_REQUIRE(r >= 0 && r <= d && ld >= nh * d, "rope: need 0 ≤ r ≤ d and ld ≥ nh·d");
  const size_t total = size_t(T > 0 ? T : 0) * size_t(r / 2);
  if (total == 0 || nh <= 0) return;
  rope_kernel<<<grid_for(total), kThreads, 0, current_stream()>>>(x, T, nh, d, ld, r, pos, theta, sign);
  M1_CUDA_LAUNCH_CHECK();
}

}  // namespace

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int N, int D, float eps) {
  if (N <= 0) return;
  M1_CUDA_REQUIRE(D >= 1, "rmsnorm_forward: D must be ≥ 1");
  rmsnorm_forward_kernel<<<N, kThreads, 0, current_stream()>>>(y, rstd, x, w, D, eps);
  M1_CUDA_LAUNCH_CHECK();
}

void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd, int N,
                      int D) {
  if (N <= 0 || D <= 0) return;
  cudaStream_t s = current_stream();
  rmsnorm_backward_dx_kernel<<<N, kThreads, 0, s>>>(dx, dy, x, w, rstd, D);
  M1_CUDA_LAUNCH_CHECK();
  // dw: P fixed row chunks (a function of N only, so the summation order never varies).
  const int P = N < 64 ? N : 64;
  const int R = (N + P - 1) / P;
  StreamScratch<float> partial(size_t(P) * D);
  const int col_blocks = ceil_div(D, kThreads);
  rmsnorm_dw_partial_kernel<<<dim3(col_blocks, P), kThreads, 0, s>>>(partial.get(), dy, x, rstd, N, D, R);
  M1_CUDA_LAUNCH_CHECK();
  rmsnorm_dw_finish_kernel<<<col_blocks, kThreads, 0, s>>>(dw, partial.get(), P, D);
  M1_CUDA_LAUNCH_CHECK();
}

void silu_forward(float* y, const float* x, size_t n) {
  if (n == 0) return;
  silu_forward_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(y, x, n);
  M1_CUDA_LAUNCH_CHECK();
}

void silu_backward(float* dx, const float* dy, const float* x, size_t n) {
  if (n == 0) return;
  silu_backward_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(dx, dy, x, n);
  M1_CUDA_LAUNCH_CHECK();
}

void swiglu_forward(float* y, const float* a, const float* b, size_t n) {
  if (n == 0) return;
  swiglu_forward_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(y, a, b, n);
  M1_CUDA_LAUNCH_CHECK();
}

void swiglu_backward(float* da, float* db, const float* dy, const float* a, const float* b, size_t n) {
  if (n == 0) return;
  swiglu_backward_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(da, db, dy, a, b, n);
  M1_CUDA_LAUNCH_CHECK();
}

void sigmoid_mul_forward(float* out, const float* g, const float* y, size_t n) {
  if (n == 0) return;
  sigmoid_mul_forward_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(out, g, y, n);
  M1_CUDA_LAUNCH_CHECK();
}

void sigmoid_mul_backward(float* dg, float* dy, const float* dout, const float* g, const float* y, size_t n) {
  if (n == 0) return;
  sigmoid_mul_backward_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(dg, dy, dout, g, y, n);
  M1_CUDA_LAUNCH_CHECK();
}

void rope_forward(float* x, int T, int nh, int d, int ld, int r, const int* pos, float theta) {
  rope_launch(x, T, nh, d, ld, r, pos, theta, 1.0);
}

void rope_backward(float* dx, int T, int nh, int d, int ld, int r, const int* pos, float theta) {
  rope_launch(dx, T, nh, d, ld, r, pos, theta, -1.0);
}

}  // namespace m1::cuda
