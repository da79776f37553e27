// Deterministic, platform-independent random numbers (splitmix64), so a seed means the same
// parameters and data on every machine and compiler.
#pragma once
#include <cmath>
#include <cstdint>

#include "nn/host_device.hpp"

namespace lsb {

// Number i of the stream `seed`, independent of every other i: drawn in any order, in parallel, on
// either device, with the same result. It is Rng(seed)'s (i+1)-th next() (splitmix64 is a Weyl sequence
// through a finaliser), so what was drawn in sequence before is drawn in parallel now, unchanged.
LSB_HOST_DEVICE inline std::uint64_t counter_random(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = (seed ^ 0x9E3779B97F4A7C15ULL) + (i + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Inverted dropout's factor for element i of the stream `seed`: 1/keep with probability keep, else 0
// (a uniform of 24 bits, exact in float, so both devices draw the same mask; for a keep that is a float
// it is the same decision as Rng::uniform() < keep on the same number, so masks equal the sequential ones).
LSB_HOST_DEVICE inline float dropout_factor(std::uint64_t seed, std::uint64_t i, float keep) {
  const float u = static_cast<float>(counter_random(seed, i) >> 40) * 0x1.0p-24f;
  return u < keep ? 1.0f / keep : 0.0f;
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed ^ 0x9E3779B97F4A7C15ULL) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal() {  // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  std::uint64_t s_;
};

}  // namespace lsb
