// performer: FAVOR+ (Choromanski et al. 2021), softmax attention estimated with m positive
// orthogonal random features, linear in n. Per (batch, head), with Q already scaled by 1/sqrt(d):
//   u = Q d^(1/4) (queries), u = K d^(-1/4) (keys), so that u_q . u_k = Q . K,
//   phi(u)_j = exp(w_j . u - |u|^2 / 2 - c) / sqrt(m), j = 1..m   (w: m x d, drawn from `seed`)
//   A = phi(queries) (n x m), B = phi(keys) (n x m, padded keys' rows 0)
//   C = (A (B^T V)) / (A (B^T 1))   row by row.
// The stabilisers c (per query row; one per (batch, head) for the keys) cancel in C exactly, so the
// backward treats them as constants and is exact. Memory: A, B and their gradients, (b, h, n, m).
//
// Causal (--causal): C_t = phi(q_t)^T sum_{u<=t} phi(k_u) v_u^T / phi(q_t)^T sum_{u<=t} phi(k_u), as prefix
// sums in chunks of kChunk rows: the state (B^T V, B^T 1) of the earlier chunks, plus the chunk's own
// lower-triangular part. A stabiliser over all keys would carry the future into the past (in rounding), so
// the keys' is per feature and fixed: phi_j(k) exp(-|w_j|^2/2) = exp(-|w_j - u|^2/2) / sqrt(m) <= 1/sqrt(m),
// with the queries' phi_j(q) exp(+|w_j|^2/2) (then their own row maximum): the products are unchanged.
// The states before each chunk are kept for the backward, which sweeps the chunks in reverse.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/random_features.hpp"
#include "attention_impls/variants.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

class PerformerAttention final : public ProjectedAttention {
 public:
  PerformerAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads,
                     std::int64_t features, std::uint64_t seed, bool causal)
      : ProjectedAttention("performer", std::move(resolved), dim, heads, causal), m_(features), seed_(seed) {}

 protected:
  static constexpr std::int64_t kChunk = 64;  // causal: rows per chunk of the prefix sums

  // Every (batch, head) is independent: one thread takes a whole group, with single-threaded products
  // (gemm_tile) on its own scratch. At LRA's short lengths a product per group per call costs more in
  // dispatch than in arithmetic, and the feature loops need no barrier per row.
  void core_forward(bool) override {
    const std::int64_t d = head_dim(), m = m_, n = n_, D = dim_;
    if (!omega_drawn_) {  // drawn on first use, so the analytic model sees it with the call's buffers
      omega_drawn_ = true;
      ensure(omega_, {m, d}, MemCategory::activations, "performer random features (m, d)");
      const auto w = performer_features(d, m, seed_);
      for (std::int64_t i = 0; i < m * d; ++i) omega_[i] = static_cast<float>(w[static_cast<std::size_t>(i)]);
    }
    ensure(A_, {b_, heads_, n, m}, MemCategory::activations, "performer query features (b, h, n, m)");
    ensure(B_, {b_, heads_, n, m}, MemCategory::activations, "performer key features (b, h, n, m)");
    ensure(S_, {b_, heads_, m, d}, MemCategory::activations, "performer B^T V (b, h, m, d)");
    ensure(z_, {b_, heads_, m}, MemCategory::activations, "performer B^T 1 (b, h, m)");
    ensure(den_, {b_, heads_, n}, MemCategory::activations, "performer normalisers (b, h, n)");
    ensure(rowtmp_, {max_threads(), n}, MemCategory::workspace, "performer per-thread row scratch (threads, n)");
    if (causal_) return causal_forward();
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq, inv_sqrt_m = 1.0f / std::sqrt(float(m));
    const float* W = omega_.data();
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t bh = 0; bh < b_ * heads_; ++bh) {
      // Plain names, not a structured binding: clang 14 refuses those inside OpenMP simd loops (the fuzz build).
      const Group g = group(bh);
      const std::uint8_t* mask = g.mask;
      const float *q = g.q, *k = g.k, *v = g.v;
      float *A = g.A, *B = g.B, *S = g.S, *z = g.z, *den = g.den, *c = g.c;
      float* tmp = rowtmp_.data() + thread_id() * n;
      gemm_tile(false, true, n, m, d, 1.0f, q, D, W, d, 0.0f, A, m);  // w . u before scaling
      gemm_tile(false, true, n, m, d, 1.0f, k, D, W, d, 0.0f, B, m);
      features(A, q, n, sq, nullptr, inv_sqrt_m, true, tmp);
      features(B, k, n, sk, mask, inv_sqrt_m, false, tmp);
      gemm_tile(true, false, m, d, n, 1.0f, B, m, v, D, 0.0f, S, d);  // S = B^T V
      std::fill(z, z + m, 0.0f);
      for (std::int64_t t = 0; t < n; ++t) {
        const float* row = B + t * m;
#pragma omp simd
        for (std::int64_t j = 0; j < m; ++j) z[j] += row[j];
      }
      gemm_tile(false, false, n, d, m, 1.0f, A, m, S, d, 0.0f, c, D);  // numerator A S
      for (std::int64_t t = 0; t < n; ++t) {
        const float* row = A + t * m;
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (std::int64_t j = 0; j < m; ++j) sum += row[j] * z[j];
        den[t] = sum;
        const float inv = sum > 0 ? 1.0f / sum : 0.0f;  // no real key: C = 0
        for (std::int64_t e = 0; e < d; ++e) c[t * D + e] *= inv;
      }
    }
  }

  void core_backward() override {
    if (causal_) return causal_backward();
    const std::int64_t d = head_dim(), m = m_, n = n_, D = dim_;
    const std::int64_t per_thread = n * d + m * d + 2 * n + m;  // d num, dS, d den, row sums, dz
    ensure(dA_, A_.shape(), MemCategory::workspace, "performer dA (b, h, n, m)");
    ensure(dB_, B_.shape(), MemCategory::workspace, "performer dB (b, h, n, m)");
    ensure(bscratch_, {max_threads(), per_thread}, MemCategory::workspace, "performer per-thread backward scratch");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq;
    const float* W = omega_.data();
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t bh = 0; bh < b_ * heads_; ++bh) {
      const std::int64_t bi = bh / heads_, hi = bh % heads_;
      const std::uint8_t* mask = mask_ + bi * n;
      const float* A = A_.data() + bh * n * m;
      const float* B = B_.data() + bh * n * m;
      const float* S = S_.data() + bh * m * d;
      const float* z = z_.data() + bh * m;
      const float* den = den_.data() + bh * n;
      float* dA = dA_.data() + bh * n * m;
      float* dB = dB_.data() + bh * n * m;
      const float *c = head(C_, bi, hi), *dc = head(dC_, bi, hi), *v = head(V_, bi, hi);
      float* scratch = bscratch_.data() + thread_id() * per_thread;
      float *dnum = scratch, *dS = dnum + n * d, *dden = dS + m * d, *rowsum = dden + n, *dz = rowsum + n;
      quotient_backward(c, dc, den, dnum, dden);
      // num = A S, den = A z: dA = dnum S^T + dden z^T, dS = A^T dnum, dz = A^T dden.
      gemm_tile(false, true, n, m, d, 1.0f, dnum, d, S, d, 0.0f, dA, m);
      gemm_tile(true, false, m, d, n, 1.0f, A, m, dnum, d, 0.0f, dS, d);
      std::fill(dz, dz + m, 0.0f);
      for (std::int64_t t = 0; t < n; ++t) {
        const float g = dden[t];
        float* da = dA + t * m;
        const float* a = A + t * m;
#pragma omp simd
        for (std::int64_t j = 0; j < m; ++j) {
          da[j] += g * z[j];
          dz[j] += a[j] * g;
        }
      }
      // S = B^T V, z = B^T 1: dB = V dS^T + 1 dz^T (padded keys: 0), dV = B dS.
      gemm_tile(false, true, n, m, d, 1.0f, v, D, dS, d, 0.0f, dB, m);
      for (std::int64_t t = 0; t < n; ++t) {
        float* db = dB + t * m;
        if (!mask[t]) {
          std::fill(db, db + m, 0.0f);
          continue;
        }
#pragma omp simd
        for (std::int64_t j = 0; j < m; ++j) db[j] += dz[j];
      }
      gemm_tile(false, false, n, d, m, 1.0f, B, m, dS, d, 0.0f, dV_.data() + bi * n * D + hi * d, D);
      feature_backward(dA, A, head(Q_, bi, hi), n, sq, W, dQ_.data() + bi * n * D + hi * d, rowsum);
      feature_backward(dB, B, head(K_, bi, hi), n, sk, W, dK_.data() + bi * n * D + hi * d, rowsum);
    }
  }

  // Two feature projections, B^T V, A S; causal adds each chunk's own lower-triangular part,
  // 2 b h n L (m + d) with L = kChunk.
  double core_flops(std::int64_t b, std::int64_t n) const override {
    const double chunks = causal_ ? 2.0 * b * heads_ * n * std::min(kChunk, n) * (m_ + head_dim()) : 0.0;
    return 8.0 * b * heads_ * n * m_ * head_dim() + chunks;
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t d = head_dim(), bh = b * heads_;
    const std::int64_t T = max_threads();
    std::int64_t f = m_ * d + 2 * bh * n * m_ + bh * m_ * d + bh * m_ + bh * n + T * n;
    if (with_backward) f += 2 * bh * n * m_ + T * (n * d + m_ * d + 2 * n + m_);
    if (causal_) {
      const std::int64_t nc = (n + kChunk - 1) / kChunk;
      f += m_ + bh * nc * (m_ * d + m_) + T * kChunk * kChunk;  // |w|^2/2, the states, the chunk tile
      if (with_backward) f += T * (2 * kChunk * kChunk + m_ * d + m_);
    }
    return f;
  }

  void causal_forward() {
    const std::int64_t d = head_dim(), m = m_, n = n_, D = dim_, L = kChunk, nc = (n + L - 1) / L;
    ensure(half_w2_, {m}, MemCategory::activations, "performer |w_j|^2 / 2 (m)");
    for (std::int64_t j = 0; j < m; ++j) {
      float s = 0;
      for (std::int64_t c = 0; c < d; ++c) s += omega_[j * d + c] * omega_[j * d + c];
      half_w2_[j] = 0.5f * s;
    }
    ensure(states_, {b_, heads_, nc, m * d + m}, MemCategory::activations, "performer causal states (b, h, n/L, m*d + m)");
    ensure(ctile_, {max_threads(), L * L}, MemCategory::workspace, "performer causal chunk tile");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq, inv_sqrt_m = 1.0f / std::sqrt(float(m));
    const float* W = omega_.data();
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t bh = 0; bh < b_ * heads_; ++bh) {
      // S, z: the running state, B^T V and B^T 1 of the chunks so far.
      // Plain names, not a structured binding: clang 14 refuses those inside OpenMP simd loops (the fuzz build).
      const Group g = group(bh);
      const std::uint8_t* mask = g.mask;
      const float *q = g.q, *k = g.k, *v = g.v;
      float *A = g.A, *B = g.B, *S = g.S, *z = g.z, *den = g.den, *c = g.c;
      float* tmp = rowtmp_.data() + thread_id() * n;
      float* T = ctile_.data() + thread_id() * L * L;
      gemm_tile(false, true, n, m, d, 1.0f, q, D, W, d, 0.0f, A, m);
      gemm_tile(false, true, n, m, d, 1.0f, k, D, W, d, 0.0f, B, m);
      causal_features(A, q, n, sq, nullptr, inv_sqrt_m, true, tmp);
      causal_features(B, k, n, sk, mask, inv_sqrt_m, false, tmp);
      std::fill(S, S + m * d, 0.0f);
      std::fill(z, z + m, 0.0f);
      for (std::int64_t ci = 0; ci < nc; ++ci) {
        const std::int64_t t0 = ci * L, rows = std::min(L, n - t0);
        float* saved = states_.data() + (bh * nc + ci) * (m * d + m);
        std::memcpy(saved, S, sizeof(float) * m * d);
        std::memcpy(saved + m * d, z, sizeof(float) * m);
        const float *Ac = A + t0 * m, *Bc = B + t0 * m;
        lower_tile(Ac, Bc, rows, T);
        gemm_tile(false, false, rows, d, m, 1.0f, Ac, m, S, d, 0.0f, c + t0 * D, D);           // earlier chunks
        gemm_tile(false, false, rows, d, rows, 1.0f, T, L, v + t0 * D, D, 1.0f, c + t0 * D, D);  // this chunk
        for (std::int64_t i = 0; i < rows; ++i) {
          float sum = 0;
          for (std::int64_t j = 0; j < m; ++j) sum += Ac[i * m + j] * z[j];
          for (std::int64_t u = 0; u <= i; ++u) sum += T[i * L + u];
          den[t0 + i] = sum;
          const float inv = sum > 0 ? 1.0f / sum : 0.0f;  // no real key yet: C = 0
          for (std::int64_t e = 0; e < d; ++e) c[(t0 + i) * D + e] *= inv;
        }
        gemm_tile(true, false, m, d, rows, 1.0f, Bc, m, v + t0 * D, D, 1.0f, S, d);  // S += B_c^T V_c
        for (std::int64_t i = 0; i < rows; ++i)
          for (std::int64_t j = 0; j < m; ++j) z[j] += Bc[i * m + j];
      }
    }
  }

  // The reverse sweep: G, g are the gradients of the state after the current chunk (used by the later ones).
  void causal_backward() {
    const std::int64_t d = head_dim(), m = m_, n = n_, D = dim_, L = kChunk, nc = (n + L - 1) / L;
    const std::int64_t per_thread = n * d + 2 * n + 2 * L * L + m * d + m;
    ensure(dA_, A_.shape(), MemCategory::workspace, "performer dA (b, h, n, m)");
    ensure(dB_, B_.shape(), MemCategory::workspace, "performer dB (b, h, n, m)");
    ensure(bscratch_, {max_threads(), per_thread}, MemCategory::workspace, "performer per-thread backward scratch");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq;
    const float* W = omega_.data();
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t bh = 0; bh < b_ * heads_; ++bh) {
      const std::int64_t bi = bh / heads_, hi = bh % heads_;
      const std::uint8_t* mask = mask_ + bi * n;
      const float *A = A_.data() + bh * n * m, *B = B_.data() + bh * n * m, *den = den_.data() + bh * n;
      float *dA = dA_.data() + bh * n * m, *dB = dB_.data() + bh * n * m;
      const float *c = head(C_, bi, hi), *dc = head(dC_, bi, hi), *v = head(V_, bi, hi);
      float* dv = dV_.data() + bi * n * D + hi * d;
      float* scratch = bscratch_.data() + thread_id() * per_thread;
      float *dnum = scratch, *dden = dnum + n * d, *rowsum = dden + n, *T = rowsum + n, *dT = T + L * L;
      float *G = dT + L * L, *g = G + m * d;
      quotient_backward(c, dc, den, dnum, dden);
      std::fill(G, G + m * d, 0.0f);
      std::fill(g, g + m, 0.0f);
      for (std::int64_t ci = nc - 1; ci >= 0; --ci) {
        const std::int64_t t0 = ci * L, rows = std::min(L, n - t0);
        const float* saved = states_.data() + (bh * nc + ci) * (m * d + m);  // S, z before this chunk
        const float *Ac = A + t0 * m, *Bc = B + t0 * m, *Vc = v + t0 * D, *dn = dnum + t0 * d, *dd = dden + t0;
        float *dAc = dA + t0 * m, *dBc = dB + t0 * m, *dVc = dv + t0 * D;
        lower_tile(Ac, Bc, rows, T);
        // dT = tril(dnum V^T + dden 1^T)
        gemm_tile(false, true, rows, rows, d, 1.0f, dn, d, Vc, D, 0.0f, dT, L);
        for (std::int64_t i = 0; i < rows; ++i)
          for (std::int64_t u = 0; u < rows; ++u) dT[i * L + u] = u <= i ? dT[i * L + u] + dd[i] : 0.0f;
        // dA = dnum S^T + dden z^T + dT B
        gemm_tile(false, true, rows, m, d, 1.0f, dn, d, saved, d, 0.0f, dAc, m);
        for (std::int64_t i = 0; i < rows; ++i)
          for (std::int64_t j = 0; j < m; ++j) dAc[i * m + j] += dd[i] * saved[m * d + j];
        gemm_tile(false, false, rows, m, rows, 1.0f, dT, L, Bc, m, 1.0f, dAc, m);
        // dB = dT^T A + V G^T + 1 g^T; dV = T^T dnum + B G
        gemm_tile(true, false, rows, m, rows, 1.0f, dT, L, Ac, m, 0.0f, dBc, m);
        gemm_tile(false, true, rows, m, d, 1.0f, Vc, D, G, d, 1.0f, dBc, m);
        for (std::int64_t i = 0; i < rows; ++i) {
          if (!mask[t0 + i]) {  // padded keys carry no gradient
            std::fill(dBc + i * m, dBc + (i + 1) * m, 0.0f);
            continue;
          }
          for (std::int64_t j = 0; j < m; ++j) dBc[i * m + j] += g[j];
        }
        gemm_tile(true, false, rows, d, rows, 1.0f, T, L, dn, d, 0.0f, dVc, D);
        gemm_tile(false, false, rows, d, m, 1.0f, Bc, m, G, d, 1.0f, dVc, D);
        // The state before this chunk is used by it: G += A^T dnum, g += A^T dden.
        gemm_tile(true, false, m, d, rows, 1.0f, Ac, m, dn, d, 1.0f, G, d);
        for (std::int64_t i = 0; i < rows; ++i)
          for (std::int64_t j = 0; j < m; ++j) g[j] += Ac[i * m + j] * dd[i];
      }
      feature_backward(dA, A, head(Q_, bi, hi), n, sq, W, dQ_.data() + bi * n * D + hi * d, rowsum);
      feature_backward(dB, B, head(K_, bi, hi), n, sk, W, dK_.data() + bi * n * D + hi * d, rowsum);
    }
  }

 private:
  // P (n x m) holds w . x for the rows x of X (n x d, row stride D); makes it phi(s x), rows with mask 0
  // set to 0. Queries (per_row): each row minus its own maximum exponent; keys: minus the maximum over
  // all real rows. half_norm: n floats of scratch.
  void features(float* P, const float* X, std::int64_t n, float s, const std::uint8_t* mask, float inv_sqrt_m,
                bool per_row, float* half_norm) const {
    const std::int64_t d = head_dim(), m = m_, D = dim_;
    for (std::int64_t t = 0; t < n; ++t) {
      float q2 = 0;
      for (std::int64_t c = 0; c < d; ++c) q2 += X[t * D + c] * X[t * D + c];
      half_norm[t] = 0.5f * s * s * q2;
    }
    float global = -std::numeric_limits<float>::infinity();
    if (!per_row)
      for (std::int64_t t = 0; t < n; ++t)
        if (!mask || mask[t]) {
          const float* row = P + t * m;
          float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
          for (std::int64_t j = 0; j < m; ++j) mx = std::max(mx, row[j]);
          global = std::max(global, s * mx - half_norm[t]);
        }
    for (std::int64_t t = 0; t < n; ++t) {
      float* row = P + t * m;
      if (mask && !mask[t]) {
        std::fill(row, row + m, 0.0f);
        continue;
      }
      float c = global;
      if (per_row) {
        float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
        for (std::int64_t j = 0; j < m; ++j) mx = std::max(mx, row[j]);
        c = s * mx - half_norm[t];
      }
      const float shift = half_norm[t] + c;
#pragma omp simd
      for (std::int64_t j = 0; j < m; ++j) row[j] = fast_exp(s * row[j] - shift) * inv_sqrt_m;
    }
  }

  // The causal features (P holds w . x as in features()): queries exp(s w_j.x - s^2|x|^2/2 + |w_j|^2/2 - row
  // max), keys exp(s w_j.x - s^2|x|^2/2 - |w_j|^2/2) = exp(-|w_j - s x|^2/2) (at most 1), each / sqrt(m);
  // rows with mask 0 are 0. half_norm: n floats of scratch.
  void causal_features(float* P, const float* X, std::int64_t n, float s, const std::uint8_t* mask,
                       float inv_sqrt_m, bool query, float* half_norm) const {
    const std::int64_t d = head_dim(), m = m_, D = dim_;
    const float sign = query ? 1.0f : -1.0f;
    for (std::int64_t t = 0; t < n; ++t) {
      float q2 = 0;
      for (std::int64_t c = 0; c < d; ++c) q2 += X[t * D + c] * X[t * D + c];
      half_norm[t] = 0.5f * s * s * q2;
      float* row = P + t * m;
      if (mask && !mask[t]) {
        std::fill(row, row + m, 0.0f);
        continue;
      }
      for (std::int64_t j = 0; j < m; ++j) row[j] = s * row[j] - half_norm[t] + sign * half_w2_[j];
      float mx = 0;  // keys: the exponent is never above 0
      if (query) {
        mx = -std::numeric_limits<float>::infinity();
        for (std::int64_t j = 0; j < m; ++j) mx = std::max(mx, row[j]);
      }
      for (std::int64_t j = 0; j < m; ++j) row[j] = fast_exp(row[j] - mx) * inv_sqrt_m;
    }
  }
  // T (rows x rows, row stride kChunk) = the lower triangle (u <= t) of Ac Bc^T; the rest exactly 0.
  void lower_tile(const float* Ac, const float* Bc, std::int64_t rows, float* T) const {
    gemm_tile(false, true, rows, rows, m_, 1.0f, Ac, m_, Bc, m_, 0.0f, T, kChunk);
    for (std::int64_t i = 0; i < rows; ++i) std::fill(T + i * kChunk + i + 1, T + i * kChunk + rows, 0.0f);
  }

  // C = num / den row by row (C, dC: n x d, row stride D): d num = dC / den (n x d, packed), d den =
  // -(dC . C) / den; padded queries have dC = 0.
  void quotient_backward(const float* c, const float* dc, const float* den, float* dnum, float* dden) const {
    const std::int64_t d = head_dim(), D = dim_;
    for (std::int64_t t = 0; t < n_; ++t) {
      const float inv = den[t] > 0 ? 1.0f / den[t] : 0.0f;
      float dot = 0;
      for (std::int64_t e = 0; e < d; ++e) {
        dnum[t * d + e] = dc[t * D + e] * inv;
        dot += dc[t * D + e] * c[t * D + e];
      }
      dden[t] = -dot * inv;
    }
  }

  // phi(u), u = s x: d x = s (G w) - s^2 rowsum(G) x with G = dP * P (dP overwritten by G).
  // X and dX: n x d with row stride D; rowsum: n floats of scratch.
  void feature_backward(float* dP, const float* P, const float* X, std::int64_t n, float s, const float* W,
                        float* dX, float* rowsum) const {
    const std::int64_t d = head_dim(), m = m_, D = dim_;
    for (std::int64_t t = 0; t < n; ++t) {
      float r = 0;
      float* g = dP + t * m;
      const float* p = P + t * m;
#pragma omp simd reduction(+ : r)
      for (std::int64_t j = 0; j < m; ++j) r += (g[j] *= p[j]);
      rowsum[t] = r;
    }
    gemm_tile(false, false, n, d, m, 1.0f, dP, m, W, d, 0.0f, dX, D);
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t c = 0; c < d; ++c) dX[t * D + c] = s * dX[t * D + c] - s * s * rowsum[t] * X[t * D + c];
  }

  // The forward's buffers of one (batch, head) group bh.
  struct Group {
    const std::uint8_t* mask;
    const float *q, *k, *v;  // (n x d), row stride D
    float *A, *B, *S, *z, *den, *c;
  };
  Group group(std::int64_t bh) {
    const std::int64_t bi = bh / heads_, hi = bh % heads_, n = n_, m = m_, d = head_dim();
    return {mask_ + bi * n,          head(Q_, bi, hi),        head(K_, bi, hi),  head(V_, bi, hi),
            A_.data() + bh * n * m,  B_.data() + bh * n * m,  S_.data() + bh * m * d, z_.data() + bh * m,
            den_.data() + bh * n,    C_.data() + bi * n * dim_ + hi * d};
  }

  // Head hi of example bi of a (b, n, D) buffer: its (n x d) block, row stride D.
  const float* head(const Tensor& t, std::int64_t bi, std::int64_t hi) const {
    return t.data() + bi * n_ * dim_ + hi * head_dim();
  }

  std::int64_t m_;
  std::uint64_t seed_;
  bool omega_drawn_ = false;
  Tensor omega_, A_, B_, S_, z_, den_, rowtmp_, dA_, dB_, bscratch_;
  Tensor half_w2_, states_, ctile_;  // causal only
};

}  // namespace

namespace {

// float64 reference: phi(u)_j = exp(w_j . u - |u|^2 / 2) / sqrt(nf); queries u = q d^(1/4) (Q is
// q / sqrt(d) here), keys u = k d^(-1/4); C_t = sum_u phi(q_t).phi(k_u) v_u / sum_u phi(q_t).phi(k_u)
// over real keys.
void reference_performer(const ref::CoreInput& in, ref::Mat& C) {
  const std::int64_t nf = ref::key_int(in.keys, "features"), n = in.n, D = in.D, d = in.d;
  const std::vector<double> w = performer_features(d, nf, static_cast<std::uint64_t>(ref::key_int(in.keys, "seed")));
  auto phi = [&](const ref::Mat& X, std::int64_t t, std::int64_t i, double s) {
    std::vector<double> f(nf);
    double norm2 = 0;
    for (std::int64_t c = 0; c < d; ++c) norm2 += s * X[t * D + i * d + c] * s * X[t * D + i * d + c];
    for (std::int64_t j = 0; j < nf; ++j) {
      double dot = 0;
      for (std::int64_t c = 0; c < d; ++c) dot += w[j * d + c] * s * X[t * D + i * d + c];
      f[j] = std::exp(dot - norm2 / 2) / std::sqrt(static_cast<double>(nf));
    }
    return f;
  };
  const double s = std::pow(static_cast<double>(d), 0.25);
  for (std::int64_t i = 0; i < in.h; ++i) {
    std::vector<std::vector<double>> fk(n);
    for (std::int64_t u = 0; u < n; ++u) fk[u] = phi(in.K, u, i, 1 / s);
    for (std::int64_t t = 0; t < n; ++t) {
      const auto fq = phi(in.Q, t, i, s);
      double den = 0;
      std::vector<double> num(d, 0.0);
      for (std::int64_t u = 0; u < n; ++u) {
        if (!in.m[u] || (in.causal && u > t)) continue;
        double kernel = 0;
        for (std::int64_t j = 0; j < nf; ++j) kernel += fq[j] * fk[u][j];
        den += kernel;
        for (std::int64_t c = 0; c < d; ++c) num[c] += kernel * in.V[u * D + i * d + c];
      }
      for (std::int64_t c = 0; c < d; ++c) C[t * D + i * d + c] = den > 0 ? num[c] / den : 0.0;
    }
  }
}

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_performer(std::unique_ptr<Attention> twin);  // attention_impls/cuda/performer.cu
#endif

LSB_VARIANT(performer) {
  VariantInfo v;
  v.name = "performer";
  v.summary = "FAVOR+: softmax attention estimated with positive orthogonal random features (linear in n)";
  v.keys = {{"features", "256"}, {"seed", "0"}};
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<PerformerAttention>(keys.resolved(), dim, heads, keys.get_int("features", 1),
                                                static_cast<std::uint64_t>(keys.get_int("seed", 0)), keys.causal());
  };
  v.causal = v.causal_cuda = true;
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_performer);
  v.reference_core = reference_performer;
  return v;
}

}  // namespace lsb
