// The CUDA backend (issue 4), as seen from host C++20 code. No CUDA type appears here, so any TU
// can include it; it exists only in builds with M1_HAVE_CUDA (kernels/cuda/*.cu, nvcc, C++17).
//
// Memory: every tensor pointer passed to a CUDA kernel (the Kernels table from cuda_kernels() and
// the extra ops in kernels/cuda/ops.h) is a DEVICE pointer from cuda_alloc(), including integer
// index arrays and the pointer arrays of the decode ops (a device array of device pointers).
// Streams: every op is enqueued on one stream per host thread (cuda_stream(), created on first
// use); ops return before the GPU finishes; cuda_synchronize() waits. Results that a host must
// read (moe_aux_loss's return value) synchronise internally.
// Errors: a failing CUDA/cuBLAS call is a broken invariant and aborts with file:line and the
// library's message (docs/gpu.md: every CUDA call is checked). NCCL calls (kernels/cuda/nccl.h)
// return Status instead: a peer that is gone is an expected failure there. Absence of a device is NOT an error:
// cuda_device_count() reports it and nothing else touches the driver before that.
// Thread safety: ops may be called from several host threads; each uses its own stream and its own
// cuBLASLt handle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/kernels.h"

namespace m1 {

// Number of usable CUDA devices; 0 with the reason in `why` (at most n bytes) when none.
int cuda_device_count(char* why, int n);

// The CUDA kernel table, or nullptr when there is no usable device (reason in *why if given).
// Same contracts as kernels.h, on device pointers (see above).
const Kernels* cuda_kernels(std::string* why = nullptr);

// Device memory and transfers (synchronous with respect to the calling thread's stream).
void* cuda_alloc(size_t bytes);  // never null; aborts on out-of-memory with the size
void cuda_free(void* p);         // null is allowed
void cuda_copy_to_device(void* dst, const void* src, size_t bytes);
void cuda_copy_to_host(void* dst, const void* src, size_t bytes);
void cuda_copy_device(void* dst, const void* src, size_t bytes);  // device → device, async
void cuda_fill_nan(float* p, size_t n);                           // poison outputs before a test
void cuda_synchronize();
// The calling thread's stream as an opaque handle (a cudaStream_t).
void* cuda_stream();
// "NVIDIA H200, sm_90, 139 GiB, driver 13.0" style line for logs and docs/gpu.md.
std::string cuda_device_description();

}  // namespace m1
