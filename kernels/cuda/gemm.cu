// GEMMs of the CUDA backend: fp32 (cuBLASLt, CUBLAS_COMPUTE_32F: true fp32, never TF32), bf16
// inputs with fp32 accumulation and output, per-expert bf16 GEMMs, and bf16 ↔ fp32 conversion.
//
// Row-major on column-major cuBLAS: a row-major [R, C] matrix with leading dimension ld is, in
// memory, the column-major [C, R] matrix (its transpose) with the same ld. So the row-major
// C[M,N] = op(A)·op(B) is computed as the column-major Cᵀ[N,M] = op(B)ᵀ·op(A)ᵀ: cuBLAS's "A" is our
// B (transposed iff trans_b), its "B" is our A (transposed iff trans_a), m = N, n = M, k = K.
//
// State per host thread (thread_local, created on first use): a cuBLASLt handle, a 32 MiB
// workspace, a cache of heuristic results keyed by shape, leading dimensions and pointer
// alignments, and (only when cuBLASLt offers no algorithm for a shape) a cuBLAS handle whose
// cublasGemmEx serves as the fallback. beta = 0 never reads C (cuBLAS semantics; the K = 0 case
// is handled here by a kernel that writes 0).
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"
#include "kernels/cuda/ops.h"

#define M1_CUBLAS_CHECK(expr)                                                                       \
  do {                                                                                              \
    cublasStatus_t m1_st_ = (expr);                                                                 \
    if (m1_st_ != CUBLAS_STATUS_SUCCESS) {                                                          \
      std::fprintf(stderr, "%s:%d: cuBLAS error %d: %s (%s)\n", __FILE__, __LINE__, int(m1_st_),    \
                   cublasLtGetStatusString(m1_st_), #expr);                                         \
      std::abort();                                                                                 \
    }                                                                                               \
  } while (0)

namespace m1::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr size_t kMaxCachedAlgos = 4096;

// What the heuristic depends on; equal keys may reuse an algorithm.
using AlgoKey = std::tuple<int /*ab type*/, bool, bool, int, int, int, int, int, int, unsigned, unsigned, unsigned>;

struct AlgoChoice {
  bool use_lt = false;  // false: no cuBLASLt algorithm, use cublasGemmEx
  cublasLtMatmulAlgo_t algo{};
};

struct GemmContext {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;  // fallback, created on first need
  void* workspace = nullptr;
  std::map<AlgoKey, AlgoChoice> algos;
  ~GemmContext() {  // unchecked: may run after the driver shut down at exit
    if (blas) cublasDestroy(blas);
    if (lt) cublasLtDestroy(lt);
    if (workspace) cudaFree(workspace);
  }
};

GemmContext& gemm_context() {
  thread_local GemmContext ctx;
  if (!ctx.lt) {
    M1_CUBLAS_CHECK(cublasLtCreate(&ctx.lt));
    M1_CUDA_CHECK(cudaMalloc(&ctx.workspace, kWorkspaceBytes));
  }
  return ctx;
}

// Largest power of two (≤ 256) dividing the address: what cuBLASLt may assume about alignment.
unsigned alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  unsigned align = 256;
  while (align > 1 && (a % align) != 0) align >>= 1;
  return align;
}

// RAII owners of the cuBLASLt descriptors of one call.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc(cublasOperation_t ta, cublasOperation_t tb) {
    M1_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    M1_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    M1_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  }
  ~MatmulDesc() { M1_CUBLAS_CHECK(cublasLtMatmulDescDestroy(d)); }
};

struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType_t type, int rows, int cols, int ld) {
    M1_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, uint64_t(rows), uint64_t(cols), int64_t(ld)));
  }
  ~Layout() { M1_CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(l)); }
};

struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  Preference(unsigned align_a, unsigned align_b, unsigned align_c) {
    M1_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p));
    const uint64_t ws = kWorkspaceBytes;
    M1_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const uint32_t a = align_a, b = align_b, c = align_c;
    M1_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a, sizeof a));
    M1_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b, sizeof b));
    M1_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c, sizeof c));
    M1_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c, sizeof c));
  }
  ~Preference() { M1_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(p)); }
};

// C[M,N] = beta == 0 ? 0 : beta·C (the K = 0 product), row stride ldc.
__global__ void scale_kernel(float* C, int M, int N, int ldc, float beta) {
  const size_t total = size_t(M) * N;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    float& c = C[(i / N) * size_t(ldc) + i % N];
    c = beta == 0.f ? 0.f : beta * c;
  }
}

// The row-major contract of kernels.h for A, B of type `ab` (fp32 or bf16), C fp32.
void gemm_any(cudaDataType_t ab, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void* A,
              int lda, const void* B, int ldb, float beta, float* C, int ldc) {
  M1_CUDA_REQUIRE(M >= 0 && N >= 0 && K >= 0, "gemm: negative size");
  if (M == 0 || N == 0) return;
  cudaStream_t stream = current_stream();
  if (K == 0) {
    scale_kernel<<<grid_for(size_t(M) * N), kThreads, 0, stream>>>(C, M, N, ldc, beta);
    M1_CUDA_LAUNCH_CHECK();
    return;
  }
  M1_CUDA_REQUIRE(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N, "gemm: leading dimension too small");

  GemmContext& ctx = gemm_context();
  const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's A = our B
  const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's B = our A
  const unsigned al_a = alignment_of(B), al_b = alignment_of(A), al_c = alignment_of(C);
  const AlgoKey key{int(ab), trans_a, trans_b, M, N, K, lda, ldb, ldc, al_a, al_b, al_c};

  MatmulDesc desc(op_a, op_b);
  Layout la(ab, trans_b ? K : N, trans_b ? N : K, ldb);  // our B as stored, column-major view
  Layout lb(ab, trans_a ? M : K, trans_a ? K : M, lda);  // our A as stored, column-major view
  Layout lc(CUDA_R_32F, N, M, ldc);

  auto it = ctx.algos.find(key);
  if (it == ctx.algos.end()) {
    Preference pref(al_a, al_b, al_c);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    M1_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt, desc.d, la.l, lb.l, lc.l, lc.l, pref.p, 1, &result, &found));
    AlgoChoice choice;
    choice.use_lt = found > 0 && result.state == CUBLAS_STATUS_SUCCESS && result.workspaceSize <= kWorkspaceBytes;
    if (choice.use_lt) choice.algo = result.algo;
    if (ctx.algos.size() >= kMaxCachedAlgos) ctx.algos.clear();
    it = ctx.algos.emplace(key, choice).first;
  }

  if (it->second.use_lt) {
    M1_CUBLAS_CHECK(cublasLtMatmul(ctx.lt, desc.d, &alpha, B, la.l, A, lb.l, &beta, C, lc.l, C, lc.l, &it->second.algo,
                                   ctx.workspace, kWorkspaceBytes, stream));
    return;
  }
  // Fallback: cuBLAS GEMM with the same operand mapping, fp32 compute (default math mode: no TF32).
  if (!ctx.blas) M1_CUBLAS_CHECK(cublasCreate(&ctx.blas));
  M1_CUBLAS_CHECK(cublasSetStream(ctx.blas, stream));
  M1_CUBLAS_CHECK(cublasGemmEx(ctx.blas, op_a, op_b, N, M, K, &alpha, B, ab, ldb, A, ab, lda, &beta, C, CUDA_R_32F,
                               ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

__global__ void to_bf16_kernel(uint16_t* dst, const float* src, size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(src[i]));
}

__global__ void to_f32_kernel(float* dst, const uint16_t* src, size_t n) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = __bfloat162float(__ushort_as_bfloat16(src[i]));
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  gemm_any(CUDA_R_32F, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A, int lda,
               const uint16_t* B, int ldb, float beta, float* C, int ldc) {
  gemm_any(CUDA_R_16BF, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// y[off[e]:off[e+1], :] = x[off[e]:off[e+1], :] · W_eᵀ for every non-empty expert e.
void expert_gemm_bf16(float* y, const uint16_t* x, const uint16_t* W, const int* offsets_host, int E, int N, int K) {
  for (int e = 0; e < E; ++e) {
    const int r0 = offsets_host[e], rows = offsets_host[e + 1] - r0;
    M1_CUDA_REQUIRE(r0 >= 0 && rows >= 0, "expert_gemm_bf16: offsets must be non-decreasing from 0");
    if (rows == 0) continue;
    gemm_bf16(false, true, rows, N, K, 1.f, x + size_t(r0) * K, K, W + size_t(e) * N * K, K, 0.f, y + size_t(r0) * N,
              N);
  }
}

void to_bf16(uint16_t* dst, const float* src, size_t n) {
  if (n == 0) return;
  to_bf16_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(dst, src, n);
  M1_CUDA_LAUNCH_CHECK();
}

void to_f32(float* dst, const uint16_t* src, size_t n) {
  if (n == 0) return;
  to_f32_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(dst, src, n);
  M1_CUDA_LAUNCH_CHECK();
}

}  // namespace m1::cuda
