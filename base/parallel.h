// A fixed-size thread pool for the CPU kernels' own loops (OpenBLAS has its own pool; both are
// sized together by m1::set_num_threads in kernels/kernels.h). parallel_for splits [0, n) into
// one contiguous range per thread, deterministically, and blocks until all ranges are done.
// Workers sleep on a condition variable between calls (no spinning: on 2 cores a spinning pool
// steals the CPU from OpenBLAS and from CAF's scheduler).
// Thread safety: parallel_for may be called from any thread; while one caller uses the workers,
// other (concurrent or nested) calls run their whole range inline on the calling thread.
#pragma once

#include <cstddef>
#include <functional>

namespace m1 {

// Sets the pool size (>= 1). The calling thread counts as one of them.
void set_pool_threads(int n);
int pool_threads();
// parallel_for calls from the calling thread run inline and never take the workers (a
// low-priority thread must not hold them while it waits for a core).
void set_thread_inline_only(bool inline_only);
// fn(begin, end) over a partition of [0, n). Ranges smaller than min_chunk are not split.
void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn, size_t min_chunk = 1);

}  // namespace m1
