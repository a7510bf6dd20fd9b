#include "kernels/kernels.h"

#include <cblas.h>

#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "base/parallel.h"

extern "C" void openblas_set_num_threads(int);

namespace m1 {

const Kernels& default_kernels() {
  static const Kernels* k = [] {
    const char* e = std::getenv("M1_KERNELS");
    if (e && std::strcmp(e, "naive") == 0) return &cpu_naive_kernels();
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
  openblas_set_num_threads(n);
  set_pool_threads(n);
}
int num_threads() { return g_threads; }

}  // namespace m1
