#include <algorithm>
#include <cmath>
#include <limits>

#include "attention_impls/variants.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

// out = P * M for `rows` rows of nk keys (key = column).
void drop_rows(const ProbDropout& drop, const float* P, float* out, std::int64_t rows, std::int64_t nk) {
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < rows; ++row) {
    std::copy(P + row * nk, P + (row + 1) * nk, out + row * nk);
    drop_probabilities_row(drop, row, nk, out + row * nk, nk, [](std::int64_t u) { return u; });
  }
}

}  // namespace

void dense_attention_forward(const MatRef& Q, const MatRef& K, const MatRef& V, const std::uint8_t* key_mask,
                             float* P, const MatRef& C, const ProbDropout& drop, float* dropped, bool causal) {
  const std::int64_t b = Q.batch[0], h = Q.batch[1], nq = Q.rows, nk = K.rows;
  const MatRef Pv = probs_view(P, Q, nk);
  matmul(Q, K.t(), Pv);  // scores, (b, h, nq, nk)
  const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < b * h * nq; ++row) {
    float* s = P + row * nk;
    const std::uint8_t* m = key_mask ? key_mask + (row / (h * nq)) * nk : nullptr;
    // Causal: query t's row ends at key t (the keys after it get exactly 0 and take no part below).
    const std::int64_t nk_all = nk, nk = causal ? std::min(row % nq + 1, nk_all) : nk_all;
    std::fill(s + nk, s + nk_all, 0.0f);
    // Branch-free, vectorised loops; masked keys become -inf, then exactly 0.
    float mx = neg_inf;
    if (m) {
#pragma omp simd reduction(max : mx)
      for (std::int64_t u = 0; u < nk; ++u) mx = std::max(mx, m[u] ? s[u] : neg_inf);
    } else {
#pragma omp simd reduction(max : mx)
      for (std::int64_t u = 0; u < nk; ++u) mx = std::max(mx, s[u]);
    }
    if (mx == neg_inf) {  // no valid key: the row gets no probability at all
      std::fill(s, s + nk_all, 0.0f);
      continue;
    }
    float sum = 0;
    if (m) {
#pragma omp simd reduction(+ : sum)
      for (std::int64_t u = 0; u < nk; ++u) sum += (s[u] = exp_where(m[u], s[u] - mx));
    } else {
#pragma omp simd reduction(+ : sum)
      for (std::int64_t u = 0; u < nk; ++u) sum += (s[u] = fast_exp(s[u] - mx));
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (std::int64_t u = 0; u < nk; ++u) s[u] *= inv;
  }
  if (!drop.active()) {
    matmul(Pv, V, C);
    return;
  }
  drop_rows(drop, P, dropped, b * h * nq, nk);
  matmul(probs_view(dropped, Q, nk), V, C);
}

void dense_attention_backward(const MatRef& Q, const MatRef& K, const MatRef& V, const float* P, const MatRef& dC,
                              float* dP, const MatRef& dQ, const MatRef& dK, const MatRef& dV, const ProbDropout& drop) {
  const std::int64_t b = Q.batch[0], h = Q.batch[1], nq = Q.rows, nk = K.rows, rows = b * h * nq;
  const MatRef Pv = probs_view(P, Q, nk), dPv = probs_view(dP, Q, nk);
  if (drop.active()) {
    drop_rows(drop, P, dP, rows, nk);  // dP holds P * M until dV is made
    matmul(dPv.t(), dC, dV);
  } else {
    matmul(Pv.t(), dC, dV);
  }
  matmul(dC, V.t(), dPv);
  if (drop.active()) {
#pragma omp parallel for schedule(static)
    for (std::int64_t row = 0; row < rows; ++row)
      dropped_softmax_backward_row(drop, row, nk, P + row * nk, dP + row * nk, nk, [](std::int64_t u) { return u; });
  } else {
#pragma omp parallel for schedule(static)
    for (std::int64_t row = 0; row < rows; ++row) softmax_backward_row(P + row * nk, dP + row * nk, nk);
  }
  matmul(dPv, K, dQ);
  matmul(dPv.t(), Q, dK);
}

}  // namespace lsb
