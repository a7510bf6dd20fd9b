#include "kernels/kernels.h"

#include <cblas.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "base/parallel.h"

extern "C" void openblas_set_num_threads(int);

namespace m1 {

#ifdef M1_HAVE_CUDA
int cuda_device_count(char* why, int n);  // kernels/cuda/device.cu
#endif

const Kernels& default_kernels() {
  static const Kernels* k = [] {
    const char* e = std::getenv("M1_KERNELS");
    if (e && std::strcmp(e, "naive") == 0) return &cpu_naive_kernels();
#ifdef M1_HAVE_CUDA
    // The CUDA table (issue 4) is not filled yet: with or without a device the CPU path runs.
    char why[256] = "";
    const int n = cuda_device_count(why, sizeof why);
    if (n == 0)
      log_info("no usable GPU ({}): using the CPU kernels", why);
    else
      log_info("{} GPU(s) found, but this build has no CUDA kernel table yet: using the CPU kernels", n);
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
