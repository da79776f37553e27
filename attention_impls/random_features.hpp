// The random features of `performer`: data drawn from a seed, not math, so the fp32 variant and the
// float64 reference both take them from here (the reference computes everything else on its own).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/random.hpp"

namespace lsb {

// m x d (row-major) FAVOR+ features: blocks of d orthogonal rows (Gram-Schmidt of Gaussian rows),
// each row rescaled to the norm of an independent Gaussian d-vector, so every row is marginally
// N(0, I_d) while rows of one block stay orthogonal; the last block keeps the rows it needs.
inline std::vector<double> performer_features(std::int64_t d, std::int64_t m, std::uint64_t seed) {
  Rng rng(seed * 0x2545F4914F6CDD1DULL + 17);
  std::vector<double> w(static_cast<std::size_t>(m * d));
  for (std::int64_t start = 0; start < m; start += d) {
    std::vector<double> block(static_cast<std::size_t>(d * d));
    for (auto& v : block) v = rng.normal();
    for (std::int64_t i = 0; i < d; ++i) {  // modified Gram-Schmidt on the rows
      double* r = block.data() + i * d;
      for (std::int64_t k = 0; k < i; ++k) {
        const double* q = block.data() + k * d;
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c) dot += r[c] * q[c];
        for (std::int64_t c = 0; c < d; ++c) r[c] -= dot * q[c];
      }
      double norm = 0;
      for (std::int64_t c = 0; c < d; ++c) norm += r[c] * r[c];
      norm = std::sqrt(norm);
      for (std::int64_t c = 0; c < d; ++c) r[c] /= norm;
    }
    for (std::int64_t i = 0; i < d && start + i < m; ++i) {
      double chi = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        const double g = rng.normal();
        chi += g * g;
      }
      chi = std::sqrt(chi);
      for (std::int64_t c = 0; c < d; ++c) w[static_cast<std::size_t>((start + i) * d + c)] = chi * block[i * d + c];
    }
  }
  return w;
}

}  // namespace lsb
