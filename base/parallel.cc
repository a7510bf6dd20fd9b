#include "base/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace m1 {
namespace {

thread_local bool t_inline_only = false;

class Pool {
 public:
  ~Pool() { resize(1); }
  void resize(int n) {
    std::lock_guard<std::mutex> owner(run_mu_);  // never while a parallel_for uses the workers
    n = std::max(1, n);
    {
      std::unique_lock<std::mutex> lk(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    threads_ = n;
    // Workers start from the current generation, so work posted before they first wait is seen.
    const uint64_t gen = generation_;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { loop(i, gen); });
  }
  int threads() const { return threads_; }
  void run(size_t n, const std::function<void(size_t, size_t)>& fn, size_t min_chunk) {
    size_t parts = std::min<size_t>(size_t(threads_), (n + min_chunk - 1) / std::max<size_t>(1, min_chunk));
    thread_local bool inside = false;
    // One caller at a time owns the workers; a concurrent caller (another actor's thread) runs
    // its loop inline instead of waiting.
    std::unique_lock<std::mutex> owner(run_mu_, std::try_to_lock);
    if (parts <= 1 || inside || t_inline_only || workers_.empty() || !owner.owns_lock()) {
      fn(0, n);
      return;
    }
    {
      std::unique_lock<std::mutex> lk(mu_);
      fn_ = &fn;
      n_ = n;
      parts_ = parts;
      pending_ = int(parts) - 1;
      ++generation_;
    }
    cv_.notify_all();
    inside = true;
    fn(0, n / parts);
    inside = false;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void loop(int idx, uint64_t seen) {
    for (;;) {
      const std::function<void(size_t, size_t)>* fn;
      size_t n, parts;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (fn_ == nullptr || size_t(idx) >= parts_) continue;
        fn = fn_;
        n = n_;
        parts = parts_;
      }
      size_t b = n * size_t(idx) / parts, e = n * size_t(idx + 1) / parts;
      (*fn)(b, e);
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }
  std::mutex mu_;
  std::mutex run_mu_;  // held by the thread whose parallel_for is using the workers
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t n_ = 0, parts_ = 0;
  int pending_ = 0;
  int threads_ = 1;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void set_pool_threads(int n) { pool().resize(n); }
void set_thread_inline_only(bool inline_only) { t_inline_only = inline_only; }
int pool_threads() { return pool().threads(); }
void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn, size_t min_chunk) {
  if (n == 0) return;
  pool().run(n, fn, min_chunk);
}

}  // namespace m1
