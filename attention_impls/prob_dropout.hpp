// Dropout on attention probabilities (../shared/spec/lra.md: "Dropout on attention probabilities and on
// block outputs"): C = (P * M) V with M = 0 or 1/keep per probability, P the softmax itself.
//
// The mask is never stored: M(row, key) is a pure function of (seed, row, key), drawn again in backward,
// so it costs no memory and tiled kernels draw it tile by tile. row = (batch * heads + head) * n_q + query;
// key is the key's place in the variant's key space, chosen so that variants that compute the same
// attention draw the same mask (full, flash, sliding, lsra: the key's position, key space n; linformer:
// the projected key, space k; ls: landmark j -> j, window key at position u -> r + u, space r + n). That
// makes "flash equals full" and "sliding with R >= n equals full" hold with dropout too.
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
  float p = 0.0f;          // drop probability, in [0, 1) (both set by the constructor only)
  std::uint64_t seed = 0;  // a new one per training step and layer

  LSB_HOST_DEVICE ProbDropout(float drop = 0.0f, std::uint64_t stream = 0) : p(drop), seed(stream) {
    const std::uint64_t k = counter_random(stream, 0);
    key_lo_ = static_cast<std::uint32_t>(k);
    key_hi_ = static_cast<std::uint32_t>(k >> 32);
    const double t = (1.0 - static_cast<double>(drop)) * 4294967296.0;  // keep when hash < t
    threshold_ = t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(t);
    scale_ = 1.0f / (1.0f - drop);
  }
  LSB_HOST_DEVICE bool active() const { return p > 0.0f; }
  // The factor of probability (row, key) in a key space of `keys` keys: 0 or 1/(1 - p). A 32-bit
  // hash (murmur3's finaliser, twice) of the element's index under the seed's keys: 2.5 times cheaper
  // than nn/random.hpp's 64-bit stream here, which matters at one draw per probability.
  LSB_HOST_DEVICE float factor(std::int64_t row, std::int64_t keys, std::int64_t key) const {
    const auto i = static_cast<std::uint64_t>(row * keys + key);
    const auto lo = static_cast<std::uint32_t>(i), hi = static_cast<std::uint32_t>(i >> 32);
    const std::uint32_t h = fmix32(lo ^ fmix32(hi ^ key_hi_) ^ key_lo_);
    return h < threshold_ ? scale_ : 0.0f;
  }

 private:
  LSB_HOST_DEVICE static std::uint32_t fmix32(std::uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    return h ^ (h >> 16);
  }
  std::uint32_t key_lo_ = 0, key_hi_ = 0, threshold_ = 0;
  float scale_ = 1.0f;
};

// C's side of the forward, in place: p (one row of P, column u being key key_of(u)) becomes P * M.
template <class KeyOf>
inline void drop_probabilities_row(const ProbDropout& drop, std::int64_t row, std::int64_t keys, float* p,
                                   std::int64_t cols, KeyOf key_of) {
  // A local copy: through the reference, every store to p might change the mask's fields (both are float),
  // which stops vectorisation (measured: 4.0 ns per element instead of 0.36).
  const ProbDropout m = drop;
  for (std::int64_t u = 0; u < cols; ++u) p[u] *= m.factor(row, keys, key_of(u));
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
