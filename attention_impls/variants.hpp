// What several CPU variants share: head views of the (b, n, D) buffers and the dense softmax core of
// full and linformer. Each variant's own file holds its class and its record (registry.hpp).
#pragma once
#include <memory>

#include "attention_impls/attention.hpp"
#include "nn/matmul.hpp"

namespace lsb {

// nystromformer's buffer plan in floats beyond Q, K, V, C (and dQ, dK, dV, dC): the same on both devices.
std::int64_t nystromformer_core_floats(std::int64_t b, std::int64_t n, std::int64_t dim, std::int64_t heads,
                                       std::int64_t m, std::int64_t iters, bool with_backward);

// The spec's count of exact softmax attention's core (../shared/spec/attention.md): 4 b h n^2 d; causal, the
// work the mask leaves, 2 b h n (n + 1) d. full's (which still computes the whole square) and cudnn's.
inline double exact_attention_flops(std::int64_t b, std::int64_t h, std::int64_t n, std::int64_t d, bool causal) {
  return (causal ? 2.0 * (n + 1) : 4.0 * n) * b * h * n * d;
}

// Heads of a (b, rows, h*d) buffer as a (b, h) batch of (rows x d) matrices, without a copy.
inline MatRef head_view(const float* p, std::int64_t b, std::int64_t rows, std::int64_t h, std::int64_t d) {
  return MatRef::rowmajor(p, rows, d, h * d).batched(b, rows * h * d, h, d);
}

// The (b, h) batch of probabilities P as a view over contiguous (b, h, nq, nk) storage, for the
// queries of Q (a (b, h) batch of (nq x d) views).
inline MatRef probs_view(const float* P, const MatRef& Q, std::int64_t nk) {
  return MatRef::rowmajor(P, Q.rows, nk, nk).batched(Q.batch[0], Q.batch[1] * Q.rows * nk, Q.batch[1], Q.rows * nk);
}

// Dense softmax attention per (batch, head): P = softmax(Q K^T) over keys with key_mask (b, nk)
// (nullptr: all keys valid; a row with no valid key gets P = 0), C = P V; with dropout C = (P * M) V,
// P * M written to `dropped` (P's size; the backward's dP buffer serves), P kept as it is.
// Q: (b, h, nq, d) views, K, V: (b, h, nk, d) views, P: contiguous (b, h, nq, nk); key = column.
// causal (nq = nk): query t's keys are u <= t (the others get P = 0, so the backward needs no flag).
void dense_attention_forward(const MatRef& Q, const MatRef& K, const MatRef& V, const std::uint8_t* key_mask,
                             float* P, const MatRef& C, const ProbDropout& drop = {}, float* dropped = nullptr,
                             bool causal = false);
// dV = (P * M)^T dC; dP = M * dC V^T; dS = P * (dP - rowsum(P * dP)); dQ = dS K; dK = dS^T Q (all
// written; M = 1 without dropout). dP: workspace of P's size.
void dense_attention_backward(const MatRef& Q, const MatRef& K, const MatRef& V, const float* P, const MatRef& dC,
                              float* dP, const MatRef& dQ, const MatRef& dK, const MatRef& dV,
                              const ProbDropout& drop = {});

}  // namespace lsb
