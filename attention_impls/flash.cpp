// flash: exact softmax attention in tiles of keys with an online softmax (FlashAttention-2 order on
// CPU). Forward keeps only the log-sum-exp of each row, (b, h, n); backward recomputes the tile
// scores. Memory is linear in n: per thread a few (Bq x Bk) tiles, nothing n x n.
//
// Parallel work: forward over (batch, head, query block); backward over (batch, head), each thread
// owning the head's column slice of dQ, dK, dV so that no two threads write the same element.
//
// Causal: key tiles wholly above the diagonal (every key after every query of the block) are skipped,
// not masked; only the tiles the diagonal crosses mask, row by row, the keys after the query.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

// Tile sizes, measured on the 2-core AVX-512 machine of docs/PERFORMANCE.md (n = 4K, D = 64 and 256):
// forward 128 x 256 was among the fastest of {64, 128} x {128, 256, 512}; backward 128 x 128 was
// within noise of the fastest of {128, 256} x {64, 128, 256} with half the scratch.
constexpr std::int64_t kBq = 128;      // forward: query rows per tile
constexpr std::int64_t kBk = 256;      // forward: keys per tile
constexpr std::int64_t kBqBwd = 128;   // backward: query rows per tile
constexpr std::int64_t kBkBwd = 128;   // backward: keys per tile

class FlashAttention final : public ProjectedAttention {
 public:
  FlashAttention(std::int64_t dim, std::int64_t heads, bool causal)
      : ProjectedAttention("flash", {}, dim, heads, causal) {}

 protected:
  void core_forward(bool) override {
    const std::int64_t h = heads_, d = head_dim(), D = dim_, n = n_;
    const std::int64_t nqb = (n + kBq - 1) / kBq;
    ensure(lse_, {b_, h, n}, MemCategory::activations, "flash row log-sum-exp (b, h, n)");
    const std::int64_t per_thread = kBq * kBk + kBq * d + 2 * kBq;
    ensure(scratch_, {max_threads(), per_thread}, MemCategory::workspace, "flash per-thread tiles");
    const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for collapse(3) schedule(dynamic)
    for (std::int64_t bi = 0; bi < b_; ++bi)
      for (std::int64_t hi = 0; hi < h; ++hi)
        for (std::int64_t qb = 0; qb < nqb; ++qb) {
          float* S = scratch_.data() + thread_id() * per_thread;  // (Bq, Bk) scores, then probabilities
          float* O = S + kBq * kBk;                               // (Bq, d) unnormalised output
          float* mrow = O + kBq * d;                              // running row max
          float* lrow = mrow + kBq;                               // running row sum
          const std::int64_t q0 = qb * kBq, rows = std::min(kBq, n - q0);
          const float* q = Q_.data() + (bi * n + q0) * D + hi * d;
          std::fill(O, O + rows * d, 0.0f);
          std::fill(mrow, mrow + rows, neg_inf);
          std::fill(lrow, lrow + rows, 0.0f);
          const std::uint8_t* m = mask_ + bi * n;
          const std::int64_t k_end = causal_ ? q0 + rows : n;  // causal: no tile after the block's last query
          for (std::int64_t k0 = 0; k0 < k_end; k0 += kBk) {
            const std::int64_t cols = std::min(kBk, n - k0);
            if (std::none_of(m + k0, m + k0 + cols, [](std::uint8_t v) { return v != 0; })) continue;
            const float* k = K_.data() + (bi * n + k0) * D + hi * d;
            const float* v = V_.data() + (bi * n + k0) * D + hi * d;
            gemm_tile(false, true, rows, cols, d, 1.0f, q, D, k, D, 0.0f, S, kBk);
            const bool all_valid = std::all_of(m + k0, m + k0 + cols, [](std::uint8_t x) { return x != 0; });
            for (std::int64_t i = 0; i < rows; ++i) {
              float* s = S + i * kBk;
              float mx = mrow[i];
              float sum = 0;
              // Causal: row i sees the tile's first `seen` keys (those up to its own position).
              const std::int64_t seen = causal_ ? std::clamp<std::int64_t>(q0 + i - k0 + 1, 0, cols) : cols;
              if (seen < cols) {  // a tile the diagonal crosses
                for (std::int64_t u = 0; u < seen; ++u)
                  if (m[k0 + u]) mx = std::max(mx, s[u]);
                for (std::int64_t u = 0; u < cols; ++u)
                  sum += (s[u] = exp_where(u < seen ? m[k0 + u] : std::uint8_t{0}, s[u] - mx));
              } else if (all_valid) {  // the common case, branch-free and vectorised
#pragma omp simd reduction(max : mx)
                for (std::int64_t u = 0; u < cols; ++u) mx = std::max(mx, s[u]);
#pragma omp simd reduction(+ : sum)
                for (std::int64_t u = 0; u < cols; ++u) sum += (s[u] = fast_exp(s[u] - mx));
              } else {
                for (std::int64_t u = 0; u < cols; ++u)
                  if (m[k0 + u]) mx = std::max(mx, s[u]);
#pragma omp simd reduction(+ : sum)
                for (std::int64_t u = 0; u < cols; ++u) sum += (s[u] = exp_where(m[k0 + u], s[u] - mx));
              }
              // 0 on the first valid tile; a row that has seen no valid key yet keeps O = 0 and l = 0.
              const float alpha = mx == neg_inf ? 0.0f : fast_exp(mrow[i] - mx);
              lrow[i] = lrow[i] * alpha + sum;
              mrow[i] = mx;
              float* o = O + i * d;
#pragma omp simd
              for (std::int64_t c = 0; c < d; ++c) o[c] *= alpha;
              // The row sum above is of P itself; only the product with V sees the mask.
              if (drop_.active())
                drop_probabilities_row(drop_, (bi * h + hi) * n + q0 + i, n, s, cols,
                                       [k0](std::int64_t u) { return k0 + u; });
            }
            gemm_tile(false, false, rows, d, cols, 1.0f, S, kBk, v, D, 1.0f, O, d);
          }
          float* lse = lse_.data() + (bi * h + hi) * n + q0;
          for (std::int64_t i = 0; i < rows; ++i) {
            float* c = C_.data() + (bi * n + q0 + i) * D + hi * d;
            const float inv = lrow[i] > 0 ? 1.0f / lrow[i] : 0.0f;  // no valid key: the row is 0
#pragma omp simd
            for (std::int64_t j = 0; j < d; ++j) c[j] = O[i * d + j] * inv;
            lse[i] = lrow[i] > 0 ? mrow[i] + std::log(lrow[i]) : neg_inf;
          }
        }
  }

  void core_backward() override {
    const std::int64_t h = heads_, d = head_dim(), D = dim_, n = n_;
    const std::int64_t per_thread = 2 * kBqBwd * kBkBwd + n;
    ensure(bscratch_, {max_threads(), per_thread}, MemCategory::workspace, "flash per-thread backward tiles");
    const ProbDropout drop = drop_;  // a local copy, so the mask loop vectorises (prob_dropout.hpp)
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (std::int64_t bi = 0; bi < b_; ++bi)
      for (std::int64_t hi = 0; hi < h; ++hi) {
        float* P = bscratch_.data() + thread_id() * per_thread;  // (Bq, Bk) probabilities
        float* dS = P + kBqBwd * kBkBwd;                                // (Bq, Bk) dP, then dS
        float* delta = dS + kBqBwd * kBkBwd;                            // (n) rowsum(dC * C)
        const std::int64_t off = bi * n * D + hi * d;
        const float *q = Q_.data() + off, *k = K_.data() + off, *v = V_.data() + off;
        const float *c = C_.data() + off, *dc = dC_.data() + off;
        float *dq = dQ_.data() + off, *dk = dK_.data() + off, *dv = dV_.data() + off;
        const float* lse = lse_.data() + (bi * h + hi) * n;
        const std::uint8_t* m = mask_ + bi * n;
        for (std::int64_t t = 0; t < n; ++t) {
          float s = 0;
#pragma omp simd reduction(+ : s)
          for (std::int64_t j = 0; j < d; ++j) s += dc[t * D + j] * c[t * D + j];
          delta[t] = s;
          std::memset(dq + t * D, 0, sizeof(float) * d);
          std::memset(dk + t * D, 0, sizeof(float) * d);
          std::memset(dv + t * D, 0, sizeof(float) * d);
        }
        for (std::int64_t k0 = 0; k0 < n; k0 += kBkBwd) {
          const std::int64_t cols = std::min(kBkBwd, n - k0);
          if (std::none_of(m + k0, m + k0 + cols, [](std::uint8_t x) { return x != 0; })) continue;
          // Causal: from the query tile that holds the key tile's first key (kBqBwd == kBkBwd).
          for (std::int64_t q0 = causal_ ? k0 : 0; q0 < n; q0 += kBqBwd) {
            const std::int64_t rows = std::min(kBqBwd, n - q0);
            gemm_tile(false, true, rows, cols, d, 1.0f, q + q0 * D, D, k + k0 * D, D, 0.0f, P, kBkBwd);
            for (std::int64_t i = 0; i < rows; ++i) {
              float* p = P + i * kBkBwd;
              const float l = lse[q0 + i];
              const std::int64_t seen = causal_ ? std::clamp<std::int64_t>(q0 + i - k0 + 1, 0, cols) : cols;
              if (seen < cols) {
                for (std::int64_t u = 0; u < cols; ++u)
                  p[u] = exp_where(u < seen ? m[k0 + u] : std::uint8_t{0}, p[u] - l);
              } else {
#pragma omp simd
                for (std::int64_t u = 0; u < cols; ++u) p[u] = exp_where(m[k0 + u], p[u] - l);
              }
            }
            gemm_tile(false, true, rows, cols, d, 1.0f, dc + q0 * D, D, v + k0 * D, D, 0.0f, dS, kBkBwd);
            for (std::int64_t i = 0; i < rows; ++i) {
              float* p = P + i * kBkBwd;
              float* g = dS + i * kBkBwd;
              const float dl = delta[q0 + i];
              if (drop.active()) {  // dS = P * (M G - delta); P becomes P * M for dV (one draw of M)
                const std::int64_t row = (bi * h + hi) * n + q0 + i;
                for (std::int64_t u = 0; u < cols; ++u) {
                  const float mk = drop.factor(row, n, k0 + u);
                  g[u] = p[u] * (mk * g[u] - dl);
                  p[u] *= mk;
                }
              } else {
#pragma omp simd
                for (std::int64_t u = 0; u < cols; ++u) g[u] = p[u] * (g[u] - dl);
              }
            }
            gemm_tile(true, false, cols, d, rows, 1.0f, P, kBkBwd, dc + q0 * D, D, 1.0f, dv + k0 * D, D);
            gemm_tile(true, false, cols, d, rows, 1.0f, dS, kBkBwd, q + q0 * D, D, 1.0f, dk + k0 * D, D);
            gemm_tile(false, false, rows, d, cols, 1.0f, dS, kBkBwd, k + k0 * D, D, 1.0f, dq + q0 * D, D);
          }
        }
      }
  }

  // Bidirectional 4 b h n^2 d. Causal: what the forward computes, the tiles up to and across the diagonal
  // (the spec's 2 b h n (n + 1) d plus what the crossed tiles waste).
  double core_flops(std::int64_t b, std::int64_t n) const override {
    if (!causal_) return 4.0 * b * heads_ * n * n * head_dim();
    double pairs = 0;  // (query, key) pairs of the tiles computed
    for (std::int64_t q0 = 0; q0 < n; q0 += kBq) {
      const std::int64_t rows = std::min(kBq, n - q0), k_end = q0 + rows;
      pairs += static_cast<double>(rows) * static_cast<double>(std::min(n, (k_end + kBk - 1) / kBk * kBk));
    }
    return 4.0 * b * heads_ * pairs * head_dim();
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t T = max_threads(), d = head_dim();
    return b * heads_ * n + T * (kBq * kBk + kBq * d + 2 * kBq) + (with_backward ? T * (2 * kBqBwd * kBkBwd + n) : 0);
  }

 private:
  Tensor lse_, scratch_, bscratch_;
};

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_flash(std::unique_ptr<Attention> twin);  // attention_impls/cuda/flash.cu
#endif

LSB_VARIANT(flash) {
  VariantInfo v;
  v.name = "flash";
  v.summary = "exact softmax attention in key tiles with online softmax (linear memory)";
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<FlashAttention>(dim, heads, keys.causal());
  };
  v.causal = v.causal_cuda = true;
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_flash);
  v.reference_core = [](const ref::CoreInput& in, ref::Mat& C) { ref::band_core(in, C, in.n); };
  v.prob_dropout = true;
  v.in_default_sweep = true;
  return v;
}

}  // namespace lsb
