// The fp32 LM head with log-softmax on the GPU (kernels/kernels.h, docs/model.md: always fp32).
//   forward:  logits = x·Wᵀ (fp32 cuBLASLt GEMM) written into logsm, then one block per row turns
//             the row into log_softmax in place and writes logp[t] (0 where target < 0) and the
//             entropy −Σ p·log p.
//   backward: dlogits[t,v] = dlogp[t]·(onehot(target) − p) (0 rows where target < 0) in a
//             stream-ordered scratch, then dx = dlogits·W (assigned) and dW += dlogitsᵀ·x (beta 1).
//             Rows go in chunks so the scratch stays ≤ kMaxScratchFloats whatever T·V is.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernel_util.cuh"
#include "kernels/cuda/ops.h"

namespace m1::cuda {

namespace {

constexpr size_t kMaxScratchFloats = size_t(64) << 20;  // 256 MiB of dlogits per chunk
constexpr int kRowThreads = 512;

// Row t of logsm holds the logits; becomes log_softmax. grid T, block kRowThreads.
__global__ void log_softmax_rows_kernel(float* logp, float* entropy, float* logsm, const int* targets, int V) {
  const size_t t = blockIdx.x;
  float* row = logsm + t * V;
  float mx = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, row[v]);
  mx = block_max(mx);
  float sum = 0.f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) sum += expf(row[v] - mx);
  sum = block_sum(sum);
  const float lse = mx + logf(sum);
  float h = 0.f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float l = row[v] - lse;
    row[v] = l;
    h += expf(l) * l;
  }
  if (entropy) {
    h = block_sum(h);
    if (threadIdx.x == 0) entropy[t] = -h;
  }
  __syncthreads();  // the target's entry was written by another thread
  if (threadIdx.x == 0) {
    const int tgt = targets[t];
    logp[t] = tgt >= 0 ? row[tgt] : 0.f;
  }
}

// dl[i, v] = dlogp[t]·((v == target) − exp(logsm[t, v])), t = t0 + i, for i < rows.
__global__ void dlogits_kernel(float* dl, const float* dlogp, const float* logsm, const int* targets, int t0,
                               int rows, int V) {
  const size_t total = size_t(rows) * V;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = size_t(t0) + i / V;
    const int v = int(i % V);
    const int tgt = targets[t];
    dl[i] = tgt < 0 ? 0.f : dlogp[t] * ((v == tgt ? 1.f : 0.f) - expf(logsm[t * V + v]));
  }
}

}  // namespace

void lm_head_forward(float* logp, float* entropy, float* logsm, const float* x, const float* W, const int* targets,
                     int T, int D, int V) {
  if (T <= 0) return;
  M1_CUDA_REQUIRE(V >= 1 && D >= 0, "lm_head_forward: need V ≥ 1, D ≥ 0");
  gemm(false, true, T, V, D, 1.f, x, D, W, D, 0.f, logsm, V);
  log_softmax_rows_kernel<<<T, kRowThreads, 0, current_stream()>>>(logp, entropy, logsm, targets, V);
  M1_CUDA_LAUNCH_CHECK();
}

void lm_head_backward(float* dx, float* dW, const float* dlogp, const float* logsm, const float* x, const float* W,
                      const int* targets, int T, int D, int V) {
  if (T <= 0 || D <= 0) return;
  M1_CUDA_REQUIRE(V >= 1, "lm_head_backward: need V ≥ 1");
  const size_t cap = kMaxScratchFloats / size_t(V);
  const int chunk = int(cap < 1 ? 1 : (cap < size_t(T) ? cap : size_t(T)));
  StreamScratch<float> dl(size_t(chunk) * V);
  for (int t0 = 0; t0 < T; t0 += chunk) {
    const int rows = T - t0 < chunk ? T - t0 : chunk;
    dlogits_kernel<<<grid_for(size_t(rows) * V), kThreads, 0, current_stream()>>>(dl.get(), dlogp, logsm, targets,
                                                                                    t0, rows, V);
    M1_CUDA_LAUNCH_CHECK();
    gemm(false, false, rows, D, V, 1.f, dl.get(), V, W, D, 0.f, dx + size_t(t0) * D, D);  // dx rows =
    gemm(true, false, V, D, rows, 1.f, dl.get(), V, x + size_t(t0) * D, D, 1.f, dW, D);   // dW +=
  }
}

}  // namespace m1::cuda
