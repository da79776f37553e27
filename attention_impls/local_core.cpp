// Blocked local attention. Queries are taken in blocks of `block` rows; since start(t) never
// decreases, the block's windows lie inside one key range [start(t0), start(t1 - 1) + span), so
// scores and products are GEMMs on (block x range) tiles, with the keys outside a row's own window
// masked. That computes more scores than the band needs (sliding: 64 x 192 for 64 x 129) but at
// GEMM speed: see docs/PERFORMANCE.md for before and after.
//
// Work is parallel over (batch, head); one thread owns the head's column slice of every output, so
// the overlapping key ranges of consecutive blocks accumulate without races.
#include "attention_impls/local_core.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "attention_impls/projected.hpp"
#include "nn/matmul.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

// The key range of a block of rows [t0, t1), clipped to the sequence.
struct Range {
  std::int64_t lo, hi;
};
Range key_range(const LocalWindow& w, std::int64_t t0, std::int64_t t1, std::int64_t n) {
  if (w.span == 0) return {0, 0};
  return {std::clamp<std::int64_t>(w.start(t0), 0, n), std::clamp<std::int64_t>(w.start(t1 - 1) + w.span, 0, n)};
}

// The key of tile column j (prob_dropout.hpp): extra key j is j, the key at position u is extra + u.
auto key_of(const LocalWindow& w, const Range& r) {
  return [extra = w.extra, lo = r.lo](std::int64_t j) { return j < extra ? j : j + lo; };
}

// The tile columns that query t's window reaches: [a, e), window keys u in [max(start, lo), min(start +
// span, hi)) at column extra + u - lo; and where they start in the row's band (offset o0 = u - start).
struct Visible {
  std::int64_t a, e, o0;
};
Visible visible(const LocalWindow& w, const Range& r, std::int64_t t) {
  const std::int64_t u0 = w.start(t);
  const std::int64_t lo = std::clamp(u0, r.lo, r.hi), hi = std::clamp(u0 + w.span, lo, r.hi);
  return {w.extra + lo - r.lo, w.extra + hi - r.lo, lo - u0};
}

// A tile row s (its columns outside [0, extra) and [a, e) zero) in band form p: [extra | offsets 0 ..
// span), the offsets outside the sequence 0; and back.
void store_band(const LocalWindow& w, const Visible& v, const float* s, float* p) {
  std::copy(s, s + w.extra, p);
  float* band = p + w.extra;
  std::fill(band, band + w.span, 0.0f);
  std::copy(s + v.a, s + v.e, band + v.o0);
}
void load_band(const LocalWindow& w, const Visible& v, const float* p, float* s, std::int64_t cols) {
  std::copy(p, p + w.extra, s);
  std::fill(s + w.extra, s + v.a, 0.0f);
  std::copy(p + w.extra + v.o0, p + w.extra + v.o0 + (v.e - v.a), s + v.a);
  std::fill(s + v.e, s + cols, 0.0f);
}

}  // namespace

std::int64_t LocalWindow::block_rows() const {
  // About 64 rows, a whole number of segments.
  return std::max<std::int64_t>(seg, (64 / seg) * seg);
}

std::int64_t LocalWindow::tile_floats() const {
  const std::int64_t rows = block_rows();
  return rows * (extra + rows + span);  // a tile covers at most extra + (rows - 1 + span) columns
}

void local_attention_forward(const LocalWindow& w, std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d,
                             const float* Q, const float* K, const float* V, const float* KX, const float* VX,
                             const std::uint8_t* mask, float* P, float* C, float* scratch, const ProbDropout& drop) {
  const std::int64_t D = h * d, W = w.width(), B = w.block_rows();
  const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t hi = 0; hi < h; ++hi) {
      float* T = scratch + thread_id() * 2 * w.tile_floats();
      const std::int64_t off = bi * n * D + hi * d, xoff = bi * w.extra * D + hi * d;
      const float* kx = KX ? KX + xoff : nullptr;
      const float* vx = VX ? VX + xoff : nullptr;
      const std::uint8_t* m = mask + bi * n;
      const bool all_real = std::all_of(m, m + n, [](std::uint8_t v) { return v != 0; });
      for (std::int64_t t0 = 0; t0 < n; t0 += B) {
        const std::int64_t rows = std::min(B, n - t0);
        const Range r = key_range(w, t0, t0 + rows, n);
        const std::int64_t cols = w.extra + (r.hi - r.lo);  // tile: [extra | keys lo..hi)
        const float* q = Q + off + t0 * D;
        // T = Q_blk [KX | K[lo:hi]]^T
        gemm_tile(false, true, rows, w.extra, d, 1.0f, q, D, kx, D, 0.0f, T, cols);
        gemm_tile(false, true, rows, r.hi - r.lo, d, 1.0f, q, D, K + off + r.lo * D, D, 0.0f, T + w.extra, cols);
        for (std::int64_t i = 0; i < rows; ++i) {
          const std::int64_t t = t0 + i;
          const Visible vis = visible(w, r, t);
          float* s = T + i * cols;
          float* p = P + ((bi * h + hi) * n + t) * W;
          // Padded keys inside the window get -inf; columns outside [0, extra) and [a, e) are never read.
          if (!all_real)
            for (std::int64_t c = vis.a; c < vis.e; ++c)
              if (!m[r.lo + c - w.extra]) s[c] = neg_inf;
          // The row's visible columns are two ranges: the landmarks [0, extra) and the window [a, e).
          auto each_range = [&](auto&& f) { f(std::int64_t(0), w.extra), f(vis.a, vis.e); };
          float mx = neg_inf;
          each_range([&](std::int64_t lo, std::int64_t hi) {
#pragma omp simd reduction(max : mx)
            for (std::int64_t c = lo; c < hi; ++c) mx = std::max(mx, s[c]);
          });
          if (mx == neg_inf) {  // nothing visible: no probability anywhere
            std::fill(s, s + cols, 0.0f);
          } else {
            float sum = 0;
            each_range([&](std::int64_t lo, std::int64_t hi) {
#pragma omp simd reduction(+ : sum)
              for (std::int64_t c = lo; c < hi; ++c) sum += (s[c] = fast_exp(s[c] - mx));
            });
            const float inv = 1.0f / sum;
            each_range([&](std::int64_t lo, std::int64_t hi) {
#pragma omp simd
              for (std::int64_t c = lo; c < hi; ++c) s[c] *= inv;
            });
            // The tile columns outside the row's window: probability exactly 0 (the tile's products read them).
            std::fill(s + w.extra, s + vis.a, 0.0f);
            std::fill(s + vis.e, s + cols, 0.0f);
          }
          store_band(w, vis, s, p);
          if (drop.active()) drop_probabilities_row(drop, (bi * h + hi) * n + t, w.extra + n, s, cols, key_of(w, r));
        }
        // C_blk = T [VX ; V[lo:hi]]
        float* c = C + off + t0 * D;
        gemm_tile(false, false, rows, d, w.extra, 1.0f, T, cols, vx, D, 0.0f, c, D);
        gemm_tile(false, false, rows, d, r.hi - r.lo, 1.0f, T + w.extra, cols, V + off + r.lo * D, D,
                  w.extra > 0 ? 1.0f : 0.0f, c, D);
      }
    }
}

void local_attention_backward(const LocalWindow& w, std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d,
                              const float* Q, const float* K, const float* V, const float* KX, const float* VX,
                              const float* P, const float* dC, float* dQ, float* dK, float* dV, float* dKX,
                              float* dVX, float* scratch, const ProbDropout& drop) {
  const std::int64_t D = h * d, W = w.width(), B = w.block_rows();
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t hi = 0; hi < h; ++hi) {
      float* T = scratch + thread_id() * 2 * w.tile_floats();  // probabilities
      float* G = T + w.tile_floats();                            // their gradient, then dS
      const std::int64_t off = bi * n * D + hi * d, xoff = bi * w.extra * D + hi * d;
      const float* kx = KX ? KX + xoff : nullptr;
      const float* vx = VX ? VX + xoff : nullptr;
      float* dkx = dKX ? dKX + xoff : nullptr;
      float* dvx = dVX ? dVX + xoff : nullptr;
      for (std::int64_t t = 0; t < n; ++t) {
        std::memset(dK + off + t * D, 0, sizeof(float) * d);
        std::memset(dV + off + t * D, 0, sizeof(float) * d);
      }
      for (std::int64_t j = 0; j < w.extra; ++j) {
        std::memset(dkx + j * D, 0, sizeof(float) * d);
        std::memset(dvx + j * D, 0, sizeof(float) * d);
      }
      for (std::int64_t t0 = 0; t0 < n; t0 += B) {
        const std::int64_t rows = std::min(B, n - t0);
        const Range r = key_range(w, t0, t0 + rows, n);
        const std::int64_t nk = r.hi - r.lo, cols = w.extra + nk;
        // Rebuild the probability tile from the band (zero outside each row's window).
        for (std::int64_t i = 0; i < rows; ++i)
          load_band(w, visible(w, r, t0 + i), P + ((bi * h + hi) * n + t0 + i) * W, T + i * cols, cols);
        const float* q = Q + off + t0 * D;
        const float* dc = dC + off + t0 * D;
        // G = dC [VX ; V[lo:hi]]^T, then dS = T * (M G - rowsum(T * M G)) (M = 1 without dropout)
        gemm_tile(false, true, rows, w.extra, d, 1.0f, dc, D, vx, D, 0.0f, G, cols);
        gemm_tile(false, true, rows, nk, d, 1.0f, dc, D, V + off + r.lo * D, D, 0.0f, G + w.extra, cols);
        for (std::int64_t i = 0; i < rows; ++i) {
          if (!drop.active()) {
            softmax_backward_row(T + i * cols, G + i * cols, cols);
            continue;
          }
          const std::int64_t row = (bi * h + hi) * n + t0 + i;
          dropped_softmax_backward_row(drop, row, w.extra + n, T + i * cols, G + i * cols, cols, key_of(w, r));
          drop_probabilities_row(drop, row, w.extra + n, T + i * cols, cols, key_of(w, r));  // T * M for dV
        }
        // dVX += T_x^T dC, dV[lo:hi] += T_k^T dC
        gemm_tile(true, false, w.extra, d, rows, 1.0f, T, cols, dc, D, 1.0f, dvx, D);
        gemm_tile(true, false, nk, d, rows, 1.0f, T + w.extra, cols, dc, D, 1.0f, dV + off + r.lo * D, D);
        // dQ_blk = dS [KX ; K[lo:hi]]; dKX += dS_x^T Q_blk; dK[lo:hi] += dS_k^T Q_blk
        float* dq = dQ + off + t0 * D;
        gemm_tile(false, false, rows, d, w.extra, 1.0f, G, cols, kx, D, 0.0f, dq, D);
        gemm_tile(false, false, rows, d, nk, 1.0f, G + w.extra, cols, K + off + r.lo * D, D,
                  w.extra > 0 ? 1.0f : 0.0f, dq, D);
        gemm_tile(true, false, w.extra, d, rows, 1.0f, G, cols, q, D, 1.0f, dkx, D);
        gemm_tile(true, false, nk, d, rows, 1.0f, G + w.extra, cols, q, D, 1.0f, dK + off + r.lo * D, D);
      }
    }
}

}  // namespace lsb
