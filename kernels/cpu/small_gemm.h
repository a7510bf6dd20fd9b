// Small row-major matrix products for the inside of threaded kernels (lightning blocks, attention
// heads), where calling OpenBLAS from several pool threads would oversubscribe the cores.
// All accumulate: C += A·B (nn), C += Aᵀ·B (tn), C += A·Bᵀ (nt). Plain loops the compiler
// vectorises (-fopenmp-simd). Shapes: C [M,N]; nn: A [M,K], B [K,N]; tn: A [K,M], B [K,N];
// nt: A [M,K], B [N,K]. Leading dimensions are row strides.
#pragma once

namespace m1::small {

inline void mm_nn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    float* c = C + size_t(i) * ldc;
    for (int k = 0; k < K; ++k) {
      const float a = A[size_t(i) * lda + k];
      const float* b = B + size_t(k) * ldb;
#pragma omp simd
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}

inline void mm_tn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  for (int k = 0; k < K; ++k) {
    const float* b = B + size_t(k) * ldb;
    for (int i = 0; i < M; ++i) {
      const float a = A[size_t(k) * lda + i];
      float* c = C + size_t(i) * ldc;
#pragma omp simd
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}

inline float dot(const float* a, const float* b, int n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline void mm_nt(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) C[size_t(i) * ldc + j] += dot(A + size_t(i) * lda, B + size_t(j) * ldb, K);
}

}  // namespace m1::small
