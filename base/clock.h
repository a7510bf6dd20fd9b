// Wall-clock intervals in seconds on the monotonic clock (metrics and benchmarks; never for logic
// that tests must reproduce).
#pragma once

#include <chrono>
#include <cstdint>

namespace m1 {

using SteadyClock = std::chrono::steady_clock;

inline double seconds_between(SteadyClock::time_point t0, SteadyClock::time_point t1) {
  return std::chrono::duration<double>(t1 - t0).count();
}
inline double seconds_since(SteadyClock::time_point t0) { return seconds_between(t0, SteadyClock::now()); }
// Wall clock: milliseconds since the Unix epoch.
inline uint64_t wall_unix_ms() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

}  // namespace m1
