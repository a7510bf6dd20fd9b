// Deterministic random numbers: a seeded xoshiro256** generator with uniform and normal draws.
// The full state is four words, so it can be saved in a checkpoint and restored exactly.
// Not thread safe: one Rng per thread or per stream.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace m1 {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed) {
    uint64_t x = seed;
    for (auto& w : s_) w = splitmix64(x);
  }
  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return (next_u64() >> 11) * 0x1.0p-53; }
  float uniformf(float lo, float hi) { return lo + (hi - lo) * float(uniform()); }
  // Uniform integer in [0, n). REQUIRES: n > 0.
  uint64_t below(uint64_t n) { return next_u64() % n; }
  // Standard normal (Box-Muller, one value per call).
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }
  // The state as four decimal strings (checkpoint JSON: a JSON number cannot hold a 64-bit word)
  // and back; set_state_strings throws std::invalid_argument / std::out_of_range on bad input.
  std::vector<std::string> state_strings() const {
    return {std::to_string(s_[0]), std::to_string(s_[1]), std::to_string(s_[2]), std::to_string(s_[3])};
  }
  void set_state_strings(const std::vector<std::string>& v) {
    if (v.size() != 4) throw std::invalid_argument("rng state: expected 4 words");
    std::array<uint64_t, 4> s{};
    for (size_t i = 0; i < 4; ++i) s[i] = std::stoull(v[i]);
    s_ = s;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::array<uint64_t, 4> s_{};
};

}  // namespace m1
