// Dropout on attention probabilities (../shared/spec/lra.md: "Dropout on attention probabilities and on
// block outputs"): C = (P * M) V with M = 0 or 1/keep per probability, P the softmax itself.
//
// The mask is never stored: M(row, key) is a pure function of (seed, row, key) (nn/random.hpp), drawn
// again in backward, so it costs no memory and tiled kernels draw it tile by tile. row = (batch * heads +
// head) * n_q + query; key is the key's place in the variant's key space, chosen so that variants that
// compute the same attention draw the same mask (full, flash and sliding: the key's position, key space n;
// linformer: the projected key, space k; ls: landmark j -> j, window key at position u -> r + u, space
// r + n). That makes "flash equals full" and "sliding with R >= n equals full" hold with dropout too.
//
// Backward through C = (P * M) V, with G = dC V^T the gradient of P * M:
//   dV = (P * M)^T dC,  dS = P * (M * G - rowsum(P * M * G))   (the softmax's backward on M * G).
// rowsum(P * M * G) = rowsum(dC * C) still holds, which flash uses.
#pragma once
#include <cstdint>

#include "nn/host_device.hpp"
#include "nn/random.hpp"

namespace lsb {

struct ProbDropout {
  float p = 0.0f;          // drop probability, in [0, 1)
  std::uint64_t seed = 0;  // a new one per training step and layer

  LSB_HOST_DEVICE bool active() const { return p > 0.0f; }
  // The factor of probability (row, key) in a key space of `keys` keys: 0 or 1/(1 - p).
  LSB_HOST_DEVICE float factor(std::int64_t row, std::int64_t keys, std::int64_t key) const {
    return dropout_factor(seed, static_cast<std::uint64_t>(row * keys + key), 1.0f - p);
  }
};

// C's side of the forward, in place: p (one row of P, column u being key key_of(u)) becomes P * M.
template <class KeyOf>
inline void drop_probabilities_row(const ProbDropout& drop, std::int64_t row, std::int64_t keys, float* p,
                                   std::int64_t cols, KeyOf key_of) {
  for (std::int64_t u = 0; u < cols; ++u) p[u] *= drop.factor(row, keys, key_of(u));
}

// One row of the softmax's backward through the mask, in place: g holds G on entry, dS on return.
template <class KeyOf>
inline void dropped_softmax_backward_row(const ProbDropout& drop, std::int64_t row, std::int64_t keys,
                                         const float* p, float* g, std::int64_t cols, KeyOf key_of) {
  drop_probabilities_row(drop, row, keys, g, cols, key_of);  // M * G
  float dot = 0;
#pragma omp simd reduction(+ : dot)
  for (std::int64_t u = 0; u < cols; ++u) dot += p[u] * g[u];
#pragma omp simd
  for (std::int64_t u = 0; u < cols; ++u) g[u] = p[u] * (g[u] - dot);
}

}  // namespace lsb
