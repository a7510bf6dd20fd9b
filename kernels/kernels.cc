#include "kernels/kernels.h"

#include <cblas.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "base/parallel.h"

extern "C" void openblas_set_num_threads(int);

namespace m1 {

#ifdef M1_HAVE_CUDA
int cuda_device_count(char* why, int n);  // kernels/cuda/runtime.cu (cuda.h)
#endif

const Kernels& default_kernels() {
  static const Kernels* k = [] {
    const char* e = std::getenv("M1_KERNELS");
    if (e && std::strcmp(e, "naive") == 0) return &cpu_naive_kernels();
#ifdef M1_HAVE_CUDA
    // The CUDA table (kernels/cuda/cuda.h, cuda_kernels()) works on device buffers; the model
    // keeps its tensors in host memory, so it runs on the CPU table until it allocates through a
    // backend. With or without a device the CPU path runs, and says so once.
    char why[256] = "";
    const int n = cuda_device_count(why, sizeof why);
    if (n == 0)
      log_info("no usable GPU ({}): using the CPU kernels", why);
    else
      log_info("{} GPU(s) found; the model runs on the CPU kernels (it is not yet wired to the CUDA table)", n);
#endif
    return &cpu_fast_kernels();
  }();
  return *k;
}

namespace {
int g_threads = 1;
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  g_threads = n;
  openblas_set_num_threads(1);  // the pool splits large GEMMs itself (kernels/cpu/fast.cc)
  set_pool_threads(n);
}
int num_threads() { return g_threads; }

}  // namespace m1
