// Local softmax attention with optional always-visible extra keys, shared by sliding and ls.
//
// Query t sees the `span` keys u = start(t) + o, o in [0, span), with
//   start(t) = floor(t / seg) * seg - offset
// (sliding: seg 1, offset R, span 2R+1; ls: seg w, offset e, span w+2e), a key being valid only if
// 0 <= u < n and mask[u] = 1; plus `extra` keys (ls landmarks) that are never masked. One joint
// softmax over [extra | window]; invalid window keys get probability exactly 0.
//
// Shapes: Q, K, V, C: (b, n, D) with heads as column slices; KX, VX: (b, extra, D);
// P: (b, h, n, extra + span), kept for the backward (without the dropout mask, which both functions draw:
// the key space is extra + n, extra key j being key j and the key at position u key extra + u).
#pragma once
#include <algorithm>
#include <cstdint>

#include "attention_impls/prob_dropout.hpp"

namespace lsb {

struct LocalWindow {
  std::int64_t span = 0, seg = 1, offset = 0, extra = 0;
  std::int64_t start(std::int64_t t) const { return (t / seg) * seg - offset; }
  std::int64_t width() const { return extra + span; }
  std::int64_t block_rows() const;   // queries per tile (a whole number of segments)
  std::int64_t tile_floats() const;  // floats of one (block_rows x key range) tile
  // Scratch the two functions need: per thread, two tiles.
  std::int64_t scratch_floats(int threads) const { return threads * 2 * tile_floats(); }
};

// The windows of the variants built on this core (the CUDA kernels take the same four numbers).
inline LocalWindow sliding_window(std::int64_t R) { return {2 * R + 1, 1, R, 0}; }
// Causal sliding: the R keys before the query and itself.
inline LocalWindow causal_sliding_window(std::int64_t R) { return {R + 1, 1, R, 0}; }
// ls: e = max(floor(w/2), 1); segments of w (w = 0: no window keys, landmarks only).
inline LocalWindow ls_window(std::int64_t w, std::int64_t r) {
  const std::int64_t e = std::max<std::int64_t>(w / 2, 1);
  return {w > 0 ? w + 2 * e : 0, std::max<std::int64_t>(w, 1), e, r};
}

void local_attention_forward(const LocalWindow& w, std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d,
                             const float* Q, const float* K, const float* V, const float* KX, const float* VX,
                             const std::uint8_t* mask, float* P, float* C, float* scratch,
                             const ProbDropout& drop = {});
// dQ, dK, dV, dKX, dVX written (not accumulated). The mask is implied by P (invalid keys have
// probability 0). scratch: scratch_floats(max_threads()) floats, for both functions.
void local_attention_backward(const LocalWindow& w, std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d,
                              const float* Q, const float* K, const float* V, const float* KX, const float* VX,
                              const float* P, const float* dC, float* dQ, float* dK, float* dV, float* dKX,
                              float* dVX, float* scratch, const ProbDropout& drop = {});

}  // namespace lsb
