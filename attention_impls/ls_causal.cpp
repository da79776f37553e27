// Causal ls: the authors' autoregressive Transformer-LS (NVIDIA/transformer-ls, autoregressive
// ChunkedLSAttention), as ../shared/spec/attention.md "Causal attention" defines it. Keys w (window), l
// (chunk length), r (compressed vectors per chunk):
//   Kt = LN_L(Kp), Vt = LN_L(Vp)                     window keys/values, (b, n, D); Kp = x Wk^T + bk
//   Pp = softmax over each chunk's l positions of (x Wp^T + bp)      (b, n, h*r), padded positions 0
//   Kc = LN_G(Pp_c^T Kp_c), Vc = LN_G(Pp_c^T Vp_c)   r vectors per chunk, (b, n/l * r, D), from the
//                                                      un-normalised projections, LN_G over all heads
//   query t (chunk q = t / l): one joint softmax over the vectors of chunks c < q (a chunk without a real
//   position has none) and the window keys u in [t - w + 1, t] that are real.
// The joint softmax runs as flash does (online, in key tiles; only the row log-sum-exp is kept and the
// backward recomputes the tiles), so memory is linear in n although the compressed part of the work
// grows as n^2 r / l. Query blocks are whole chunks, so a block's rows share their compressed keys up to
// the block's own chunks (masked per row).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "attention_impls/projected.hpp"
#include "attention_impls/reference_f64.hpp"
#include "attention_impls/variants.hpp"
#include "nn/errors.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

constexpr std::int64_t kRowsTarget = 64;  // query rows per block, rounded up to whole chunks
constexpr std::int64_t kBk = 128;         // keys per tile

class CausalLongShortAttention final : public ProjectedAttention {
 public:
  CausalLongShortAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads,
                           std::int64_t w, std::int64_t l, std::int64_t r)
      : ProjectedAttention("ls", std::move(resolved), dim, heads, true), w_(w), l_(l), r_(r),
        bq_((kRowsTarget + l - 1) / l * l) {
    // The bidirectional form's parameter names, so that the same weights load (attention run --causal).
    if (r > 0) {
      add_param("wp", {heads * r, dim});
      add_param("bp", {heads * r});
    }
    add_param("ln_l_weight", {dim});
    add_param("ln_l_bias", {dim});
    if (r > 0) {
      add_param("ln_g_weight", {dim});
      add_param("ln_g_bias", {dim});
    }
  }
  std::int64_t padded_length(std::int64_t n) const override { return (n + l_ - 1) / l_ * l_; }

 protected:
  void check_length(std::int64_t n) const override {
    if (n % l_ != 0)
      throw UsageError(fmt::format("causal ls: n = {} is not a multiple of l = {} (pad to {})", n, l_, padded_length(n)));
  }

  void core_forward(bool) override {
    if (drop_.active()) throw UsageError("causal ls has no dropout on attention probabilities");
    const std::int64_t D = dim_, rows = b_ * n_, hr = heads_ * r_, nc = n_ / l_;
    ensure(Kt_, {b_, n_, D}, MemCategory::activations, "causal ls LN_L(K)");
    ensure(Vt_, {b_, n_, D}, MemCategory::activations, "causal ls LN_L(V)");
    ensure(ln_l_stats_, {4, rows}, MemCategory::activations, "causal ls LN_L mean/rstd");
    float* st = ln_l_stats_.data();
    layernorm_forward(K_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Kt_.data(), st, st + rows);
    layernorm_forward(V_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Vt_.data(), st + 2 * rows,
                      st + 3 * rows);
    // A compressed vector is a key only where its chunk has a real position (1 byte per vector).
    key_real_.resize(static_cast<std::size_t>(b_ * nc * r_));
    for (std::int64_t bc = 0; bc < b_ * nc; ++bc) {
      const std::uint8_t* m = mask_ + bc * l_;
      const bool real = std::any_of(m, m + l_, [](std::uint8_t v) { return v != 0; });
      std::fill_n(key_real_.begin() + bc * r_, r_, std::uint8_t{real});
    }
    if (r_ > 0) {
      const std::int64_t cr = b_ * nc * r_;
      ensure(Pp_, {b_, n_, hr}, MemCategory::activations, "causal ls chunk softmax (b, n, h*r)");
      ensure(comp_, {4, cr, D}, MemCategory::activations, "causal ls Kbar, Vbar, Kc, Vc (b, n/l*r, D)");
      ensure(ln_g_stats_, {4, cr}, MemCategory::activations, "causal ls LN_G mean/rstd");
      linear_forward(x_, rows, D, value_of("wp"), value_of("bp"), hr, Pp_.data());
      chunk_softmax();
      compress(K_.data(), comp(0));
      compress(V_.data(), comp(1));
      float* gs = ln_g_stats_.data();
      layernorm_forward(comp(0), cr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), comp(2), gs, gs + cr);
      layernorm_forward(comp(1), cr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), comp(3), gs + 2 * cr, gs + 3 * cr);
    }
    ensure(lse_, {b_, heads_, n_}, MemCategory::activations, "causal ls row log-sum-exp (b, h, n)");
    const std::int64_t d = head_dim(), per_thread = bq_ * kBk + bq_ * d + 2 * bq_;
    ensure(scratch_, {max_threads(), per_thread}, MemCategory::workspace, "causal ls per-thread tiles");
    const std::int64_t nqb = (n_ + bq_ - 1) / bq_;
#pragma omp parallel for collapse(3) schedule(dynamic)
    for (std::int64_t bi = 0; bi < b_; ++bi)
      for (std::int64_t hi = 0; hi < heads_; ++hi)
        for (std::int64_t qb = 0; qb < nqb; ++qb) forward_block(bi, hi, qb * bq_, scratch_.data() + thread_id() * per_thread);
  }

  void core_backward() override {
    const std::int64_t D = dim_, rows = b_ * n_, d = head_dim(), nc = n_ / l_, cr = b_ * nc * r_;
    ensure(dKt_, {b_, n_, D}, MemCategory::workspace, "causal ls dKt");
    ensure(dVt_, {b_, n_, D}, MemCategory::workspace, "causal ls dVt");
    if (r_ > 0) {
      ensure(dcomp_, {4, cr, D}, MemCategory::workspace, "causal ls compressed-vector gradients");
      ensure(dPp_, Pp_.shape(), MemCategory::workspace, "causal ls chunk softmax gradient (b, n, h*r)");
    }
    const std::int64_t per_thread = 2 * bq_ * kBk + n_;
    ensure(bscratch_, {max_threads(), per_thread}, MemCategory::workspace, "causal ls per-thread backward tiles");
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (std::int64_t bi = 0; bi < b_; ++bi)
      for (std::int64_t hi = 0; hi < heads_; ++hi) backward_head(bi, hi, bscratch_.data() + thread_id() * per_thread);
    // The window path: Kt = LN_L(Kp), Vt = LN_L(Vp) (dK_, dV_ written here).
    const float* st = ln_l_stats_.data();
    layernorm_backward(dKt_.data(), K_.data(), rows, D, value_of("ln_l_weight"), st, st + rows, dK_.data(),
                       grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
    layernorm_backward(dVt_.data(), V_.data(), rows, D, value_of("ln_l_weight"), st + 2 * rows, st + 3 * rows, dV_.data(),
                       grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
    if (r_ > 0) {
      // Kc = LN_G(Kbar), Kbar = Pp_c^T Kp_c per chunk (and V): into dK_, dV_ (+=) and the projection.
      const float* gs = ln_g_stats_.data();
      layernorm_backward(dcomp(2), comp(0), cr, D, value_of("ln_g_weight"), gs, gs + cr, dcomp(0), grad_of("ln_g_weight"),
                         grad_of("ln_g_bias"), false);
      layernorm_backward(dcomp(3), comp(1), cr, D, value_of("ln_g_weight"), gs + 2 * cr, gs + 3 * cr, dcomp(1),
                         grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
      compress_backward();
      chunk_softmax_backward();
      linear_backward(dPp_.data(), x_, rows, D, value_of("wp"), heads_ * r_, grad_of("wp"), grad_of("bp"), nullptr, false);
    }
    (void)d;
  }

  void add_input_grad(float* dx) override {
    if (r_ > 0) linear_backward(dPp_.data(), x_, b_ * n_, dim_, value_of("wp"), heads_ * r_, nullptr, nullptr, dx, true);
  }

  // ../shared/spec/attention.md: 2 b n D h r + 4 b h n r d + 4 b h d sum_t (r floor(t/l) + min(w, t+1)).
  double core_flops(std::int64_t b, std::int64_t n) const override {
    double keys = 0;
    for (std::int64_t t = 0; t < n; ++t) keys += static_cast<double>(r_ * (t / l_) + std::min(w_, t + 1));
    return 2.0 * b * n * dim_ * heads_ * r_ + 4.0 * b * heads_ * n * r_ * head_dim() + 4.0 * b * heads_ * head_dim() * keys;
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t D = dim_, hr = heads_ * r_, cr = b * (n / l_) * r_, T = max_threads(), d = head_dim();
    std::int64_t f = 2 * b * n * D + 4 * b * n + b * heads_ * n +
                     T * (bq_ * kBk + bq_ * d + 2 * bq_);
    if (r_ > 0) f += b * n * hr + 4 * cr * D + 4 * cr;
    if (with_backward) {
      f += 2 * b * n * D + T * (2 * bq_ * kBk + n);
      if (r_ > 0) f += 4 * cr * D + b * n * hr;
    }
    return f;
  }

 private:
  float* comp(int i) { return comp_.data() + i * b_ * (n_ / l_) * r_ * dim_; }
  float* dcomp(int i) { return dcomp_.data() + i * b_ * (n_ / l_) * r_ * dim_; }

  // The key tiles of query block [q0, q0 + rows): first the compressed vectors of the chunks before the
  // block's last chunk (key index k: chunk k / r), then the window positions [q0 - w + 1, q0 + rows).
  // Calls f(compressed, first key, count) per tile.
  template <typename F>
  void for_each_tile(std::int64_t q0, std::int64_t rows, F&& f) const {
    const std::int64_t n_comp = r_ * ((q0 + rows - 1) / l_);
    for (std::int64_t k0 = 0; k0 < n_comp; k0 += kBk) f(true, k0, std::min(kBk, n_comp - k0));
    if (w_ == 0) return;
    const std::int64_t u_begin = std::max<std::int64_t>(0, q0 - w_ + 1), u_end = q0 + rows;
    for (std::int64_t u0 = u_begin; u0 < u_end; u0 += kBk) f(false, u0, std::min(kBk, u_end - u0));
  }
  // The keys query t may see in a tile of `cols` keys from k0: tile columns [lo, hi), each one only where
  // its byte in the returned validity row (key-indexed from k0) is 1.
  const std::uint8_t* seen_range(std::int64_t bi, std::int64_t t, bool compressed, std::int64_t k0, std::int64_t cols,
                                 std::int64_t& lo, std::int64_t& hi) const {
    if (compressed) {  // the vectors of the chunks before t's own
      lo = 0, hi = std::clamp<std::int64_t>(r_ * (t / l_) - k0, 0, cols);
      return key_real_.data() + bi * (n_ / l_) * r_ + k0;
    }
    lo = std::clamp<std::int64_t>(t - w_ + 1 - k0, 0, cols), hi = std::clamp<std::int64_t>(t + 1 - k0, 0, cols);
    return mask_ + bi * n_ + k0;
  }
  // The tile's keys and values (rows of stride D) for head hi.
  const float* tile_keys(std::int64_t bi, std::int64_t hi, bool compressed, std::int64_t k0) {
    return compressed ? comp(2) + ((bi * (n_ / l_)) * r_ + k0) * dim_ + hi * head_dim()
                      : Kt_.data() + (bi * n_ + k0) * dim_ + hi * head_dim();
  }
  const float* tile_values(std::int64_t bi, std::int64_t hi, bool compressed, std::int64_t k0) {
    return compressed ? comp(3) + ((bi * (n_ / l_)) * r_ + k0) * dim_ + hi * head_dim()
                      : Vt_.data() + (bi * n_ + k0) * dim_ + hi * head_dim();
  }

  void forward_block(std::int64_t bi, std::int64_t hi, std::int64_t q0, float* scratch) {
    const std::int64_t D = dim_, d = head_dim(), rows = std::min(bq_, n_ - q0);
    const float neg_inf = -std::numeric_limits<float>::infinity();
    float *S = scratch, *O = S + bq_ * kBk, *mrow = O + bq_ * d, *lrow = mrow + bq_;
    const float* q = Q_.data() + (bi * n_ + q0) * D + hi * d;
    std::fill(O, O + rows * d, 0.0f);
    std::fill(mrow, mrow + rows, neg_inf);
    std::fill(lrow, lrow + rows, 0.0f);
    for_each_tile(q0, rows, [&](bool compressed, std::int64_t k0, std::int64_t cols) {
      gemm_tile(false, true, rows, cols, d, 1.0f, q, D, tile_keys(bi, hi, compressed, k0), D, 0.0f, S, kBk);
      for (std::int64_t i = 0; i < rows; ++i) {
        float* s = S + i * kBk;
        std::int64_t lo, hi;
        const std::uint8_t* valid = seen_range(bi, q0 + i, compressed, k0, cols, lo, hi);
        float mx = mrow[i], sum = 0;
        for (std::int64_t u = lo; u < hi; ++u)
          if (valid[u]) mx = std::max(mx, s[u]);
        std::fill(s, s + lo, 0.0f);
        for (std::int64_t u = lo; u < hi; ++u) sum += (s[u] = exp_where(valid[u], s[u] - mx));
        std::fill(s + hi, s + cols, 0.0f);
        const float alpha = mx == neg_inf ? 0.0f : fast_exp(mrow[i] - mx);
        lrow[i] = lrow[i] * alpha + sum;
        mrow[i] = mx;
        for (std::int64_t c = 0; c < d; ++c) O[i * d + c] *= alpha;
      }
      gemm_tile(false, false, rows, d, cols, 1.0f, S, kBk, tile_values(bi, hi, compressed, k0), D, 1.0f, O, d);
    });
    float* lse = lse_.data() + (bi * heads_ + hi) * n_ + q0;
    for (std::int64_t i = 0; i < rows; ++i) {
      float* c = C_.data() + (bi * n_ + q0 + i) * D + hi * d;
      const float inv = lrow[i] > 0 ? 1.0f / lrow[i] : 0.0f;  // no key at all (a padded start): C = 0
      for (std::int64_t j = 0; j < d; ++j) c[j] = O[i * d + j] * inv;
      lse[i] = lrow[i] > 0 ? mrow[i] + std::log(lrow[i]) : neg_inf;
    }
  }

  // One (batch, head): every query block's tiles recomputed from the log-sum-exp; this thread owns the
  // head's column slices of dQ, dKt, dVt and of the compressed-vector gradients.
  void backward_head(std::int64_t bi, std::int64_t hi, float* scratch) {
    const std::int64_t D = dim_, d = head_dim(), n = n_, nc = n / l_;
    float *P = scratch, *dS = P + bq_ * kBk, *delta = dS + bq_ * kBk;
    const std::int64_t off = bi * n * D + hi * d;
    const float *q = Q_.data() + off, *c = C_.data() + off, *dc = dC_.data() + off;
    float* dq = dQ_.data() + off;
    const float* lse = lse_.data() + (bi * heads_ + hi) * n;
    for (std::int64_t t = 0; t < n; ++t) {
      float s = 0;
      for (std::int64_t j = 0; j < d; ++j) s += dc[t * D + j] * c[t * D + j];
      delta[t] = s;
      std::memset(dq + t * D, 0, sizeof(float) * d);
      std::memset(dKt_.data() + off + t * D, 0, sizeof(float) * d);
      std::memset(dVt_.data() + off + t * D, 0, sizeof(float) * d);
    }
    if (r_ > 0)
      for (std::int64_t k = 0; k < nc * r_; ++k) {
        std::memset(dcomp(2) + (bi * nc * r_ + k) * D + hi * d, 0, sizeof(float) * d);
        std::memset(dcomp(3) + (bi * nc * r_ + k) * D + hi * d, 0, sizeof(float) * d);
      }
    for (std::int64_t q0 = 0; q0 < n; q0 += bq_) {
      const std::int64_t rows = std::min(bq_, n - q0);
      for_each_tile(q0, rows, [&](bool compressed, std::int64_t k0, std::int64_t cols) {
        const float *k = tile_keys(bi, hi, compressed, k0), *v = tile_values(bi, hi, compressed, k0);
        float* dk = compressed ? dcomp(2) + (bi * nc * r_ + k0) * D + hi * d : dKt_.data() + (bi * n + k0) * D + hi * d;
        float* dv = compressed ? dcomp(3) + (bi * nc * r_ + k0) * D + hi * d : dVt_.data() + (bi * n + k0) * D + hi * d;
        gemm_tile(false, true, rows, cols, d, 1.0f, q + q0 * D, D, k, D, 0.0f, P, kBk);
        gemm_tile(false, true, rows, cols, d, 1.0f, dc + q0 * D, D, v, D, 0.0f, dS, kBk);
        for (std::int64_t i = 0; i < rows; ++i) {
          const std::int64_t t = q0 + i;
          float *p = P + i * kBk, *g = dS + i * kBk;
          std::int64_t lo, hi;
          const std::uint8_t* valid = seen_range(bi, t, compressed, k0, cols, lo, hi);
          for (std::int64_t u = 0; u < cols; ++u) {
            p[u] = exp_where(u >= lo && u < hi ? valid[u] : std::uint8_t{0}, p[u] - lse[t]);
            g[u] = p[u] * (g[u] - delta[t]);
          }
        }
        gemm_tile(true, false, cols, d, rows, 1.0f, P, kBk, dc + q0 * D, D, 1.0f, dv, D);
        gemm_tile(true, false, cols, d, rows, 1.0f, dS, kBk, q + q0 * D, D, 1.0f, dk, D);
        gemm_tile(false, false, rows, d, cols, 1.0f, dS, kBk, k, D, 1.0f, dq + q0 * D, D);
      });
    }
  }

  // Each column of each chunk of Pp becomes a distribution over the chunk's real positions (none: 0).
  void chunk_softmax() {
    const std::int64_t hr = heads_ * r_, chunks = b_ * (n_ / l_);
    const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
    for (std::int64_t bc = 0; bc < chunks; ++bc) {
      float* P = Pp_.data() + bc * l_ * hr;
      const std::uint8_t* m = mask_ + bc * l_;
      for (std::int64_t c = 0; c < hr; ++c) {
        float mx = neg_inf, sum = 0;
        for (std::int64_t t = 0; t < l_; ++t)
          if (m[t]) mx = std::max(mx, P[t * hr + c]);
        for (std::int64_t t = 0; t < l_; ++t) sum += (P[t * hr + c] = exp_where(m[t], P[t * hr + c] - mx));
        const float inv = sum > 0 ? 1.0f / sum : 0.0f;
        for (std::int64_t t = 0; t < l_; ++t) P[t * hr + c] *= inv;
      }
    }
  }
  void chunk_softmax_backward() {
    const std::int64_t hr = heads_ * r_, chunks = b_ * (n_ / l_);
#pragma omp parallel for schedule(static)
    for (std::int64_t bc = 0; bc < chunks; ++bc) {
      const float* P = Pp_.data() + bc * l_ * hr;
      float* G = dPp_.data() + bc * l_ * hr;
      for (std::int64_t c = 0; c < hr; ++c) {
        float dot = 0;
        for (std::int64_t t = 0; t < l_; ++t) dot += P[t * hr + c] * G[t * hr + c];
        for (std::int64_t t = 0; t < l_; ++t) G[t * hr + c] = P[t * hr + c] * (G[t * hr + c] - dot);
      }
    }
  }
  // out (b, n/l*r, D): row (chunk c, vector j), head i's columns = sum over the chunk's t of
  // Pp[t, i*r + j] * X[t, head i's columns].
  void compress(const float* X, float* out) {
    const std::int64_t D = dim_, d = head_dim(), hr = heads_ * r_, chunks = b_ * (n_ / l_);
#pragma omp parallel for schedule(static)
    for (std::int64_t bc = 0; bc < chunks; ++bc)
      for (std::int64_t j = 0; j < r_; ++j) {
        float* o = out + (bc * r_ + j) * D;
        std::fill(o, o + D, 0.0f);
        for (std::int64_t t = 0; t < l_; ++t) {
          const float* p = Pp_.data() + (bc * l_ + t) * hr;
          const float* x = X + (bc * l_ + t) * D;
          for (std::int64_t i = 0; i < heads_; ++i) {
            const float w = p[i * r_ + j];
            for (std::int64_t e = 0; e < d; ++e) o[i * d + e] += w * x[i * d + e];
          }
        }
      }
  }
  // From dKbar, dVbar (dcomp 0, 1): dPp (written) and dK_, dV_ (+=).
  void compress_backward() {
    const std::int64_t D = dim_, d = head_dim(), hr = heads_ * r_, chunks = b_ * (n_ / l_);
    const float *dKb = dcomp(0), *dVb = dcomp(1);
#pragma omp parallel for schedule(static)
    for (std::int64_t bc = 0; bc < chunks; ++bc)
      for (std::int64_t t = 0; t < l_; ++t) {
        const std::int64_t row = bc * l_ + t;
        const float *kp = K_.data() + row * D, *vp = V_.data() + row * D, *p = Pp_.data() + row * hr;
        float *dp = dPp_.data() + row * hr, *dk = dK_.data() + row * D, *dv = dV_.data() + row * D;
        for (std::int64_t i = 0; i < heads_; ++i)
          for (std::int64_t j = 0; j < r_; ++j) {
            const float* gk = dKb + (bc * r_ + j) * D + i * d;
            const float* gv = dVb + (bc * r_ + j) * D + i * d;
            const float w = p[i * r_ + j];
            float s = 0;
            for (std::int64_t e = 0; e < d; ++e) {
              s += gk[e] * kp[i * d + e] + gv[e] * vp[i * d + e];
              dk[i * d + e] += w * gk[e];
              dv[i * d + e] += w * gv[e];
            }
            dp[i * r_ + j] = s;
          }
      }
  }

  std::int64_t w_, l_, r_, bq_;
  std::vector<std::uint8_t> key_real_;  // (b, n/l*r), outside the tracked plan as the padding mask is
  Tensor Kt_, Vt_, ln_l_stats_, Pp_, comp_, ln_g_stats_, lse_, scratch_;
  Tensor dKt_, dVt_, dcomp_, dPp_, bscratch_;
};

}  // namespace

std::unique_ptr<Attention> make_causal_ls(std::map<std::string, std::string> resolved, std::int64_t dim,
                                          std::int64_t heads, std::int64_t w, std::int64_t l, std::int64_t r) {
  return std::make_unique<CausalLongShortAttention>(std::move(resolved), dim, heads, w, l, r);
}

// float64 reference, straight from the spec's five steps.
void reference_causal_ls(const ref::CoreInput& in, ref::Mat& C) {
  const std::int64_t w = ref::key_int(in.keys, "w"), l = ref::key_int(in.keys, "l"), r = ref::key_int(in.keys, "r");
  const std::int64_t n = in.n, D = in.D, d = in.d, h = in.h, nc = n / l;
  const RefParams& P = in.P;
  const ref::Mat Kt = ref::layernorm(in.K, n, D, P.at("ln_l_weight"), P.at("ln_l_bias"));
  const ref::Mat Vt = ref::layernorm(in.V, n, D, P.at("ln_l_weight"), P.at("ln_l_bias"));
  ref::Mat Kc, Vc;  // (nc * r, D)
  std::vector<bool> chunk_real(nc, false);
  for (std::int64_t c = 0; c < nc; ++c)
    for (std::int64_t t = c * l; t < (c + 1) * l; ++t) chunk_real[c] = chunk_real[c] || in.m[t];
  if (r > 0) {
    const ref::Mat S = ref::linear(in.X, n, D, P.at("wp"), P.at("bp"), h * r);
    ref::Mat Kbar(nc * r * D, 0.0), Vbar(nc * r * D, 0.0);
    for (std::int64_t c = 0; c < nc; ++c)
      for (std::int64_t i = 0; i < h; ++i)
        for (std::int64_t j = 0; j < r; ++j) {
          std::vector<double> col(l);
          std::vector<bool> valid(l);
          for (std::int64_t t = 0; t < l; ++t) {
            col[t] = S[(c * l + t) * h * r + i * r + j];
            valid[t] = in.m[c * l + t] != 0;
          }
          const auto pr = ref::softmax(col, valid);  // over the chunk
          for (std::int64_t t = 0; t < l; ++t)
            for (std::int64_t e = 0; e < d; ++e) {
              Kbar[(c * r + j) * D + i * d + e] += pr[t] * in.K[(c * l + t) * D + i * d + e];
              Vbar[(c * r + j) * D + i * d + e] += pr[t] * in.V[(c * l + t) * D + i * d + e];
            }
        }
    Kc = ref::layernorm(Kbar, nc * r, D, P.at("ln_g_weight"), P.at("ln_g_bias"));
    Vc = ref::layernorm(Vbar, nc * r, D, P.at("ln_g_weight"), P.at("ln_g_bias"));
  }
  for (std::int64_t i = 0; i < h; ++i)
    for (std::int64_t t = 0; t < n; ++t) {
      ref::Mat Kr, Vr;
      std::vector<bool> valid;
      std::vector<std::int64_t> ids;  // key ids for the dropout space (unused: no dropout here)
      for (std::int64_t c = 0; c < t / l; ++c)
        for (std::int64_t j = 0; j < r; ++j) {
          valid.push_back(chunk_real[c]);
          Kr.insert(Kr.end(), Kc.begin() + (c * r + j) * D, Kc.begin() + (c * r + j + 1) * D);
          Vr.insert(Vr.end(), Vc.begin() + (c * r + j) * D, Vc.begin() + (c * r + j + 1) * D);
        }
      for (std::int64_t u = std::max<std::int64_t>(0, t - w + 1); u <= t && w > 0; ++u) {
        valid.push_back(in.m[u] != 0);
        Kr.insert(Kr.end(), Kt.begin() + u * D, Kt.begin() + (u + 1) * D);
        Vr.insert(Vr.end(), Vt.begin() + u * D, Vt.begin() + (u + 1) * D);
      }
      const auto nk = static_cast<std::int64_t>(valid.size());
      if (nk == 0) continue;
      in.attend(C, i, t, Kr, Vr, nk, valid, nk, [](std::int64_t u) { return u; });
    }
}

}  // namespace lsb
