// performer: FAVOR+ (Choromanski et al. 2021), softmax attention estimated with m positive
// orthogonal random features, linear in n. Per (batch, head), with Q already scaled by 1/sqrt(d):
//   u = Q d^(1/4) (queries), u = K d^(-1/4) (keys), so that u_q . u_k = Q . K,
//   phi(u)_j = exp(w_j . u - |u|^2 / 2 - c) / sqrt(m), j = 1..m   (w: m x d, drawn from `seed`)
//   A = phi(queries) (n x m), B = phi(keys) (n x m, padded keys' rows 0)
//   C = (A (B^T V)) / (A (B^T 1))   row by row.
// The stabilisers c (per query row; one per (batch, head) for the keys) cancel in C exactly, so the
// backward treats them as constants and is exact. Memory: A, B and their gradients, (b, h, n, m).
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "attention_impls/projected.hpp"
#include "attention_impls/random_features.hpp"
#include "attention_impls/variants.hpp"

namespace lsb {
namespace {

class PerformerAttention final : public ProjectedAttention {
 public:
  PerformerAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads,
                     std::int64_t features, std::uint64_t seed)
      : ProjectedAttention("performer", std::move(resolved), dim, heads), m_(features), seed_(seed) {}

 protected:
  void core_forward(bool) override {
    const std::int64_t d = head_dim(), m = m_, n = n_;
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
    ensure(rowtmp_, {n}, MemCategory::workspace, "performer per-row scratch (n)");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq, inv_sqrt_m = 1.0f / std::sqrt(float(m));
    for (std::int64_t bi = 0; bi < b_; ++bi)
      for (std::int64_t hi = 0; hi < heads_; ++hi) {
        const std::int64_t bh = bi * heads_ + hi;
        const std::uint8_t* mask = mask_ + bi * n;
        float* A = A_.data() + bh * n * m;
        float* B = B_.data() + bh * n * m;
        float* S = S_.data() + bh * m * d;
        float* z = z_.data() + bh * m;
        float* den = den_.data() + bh * n;
        matmul(head(Q_, bi, hi), omega().t(), mat(A, n, m));
        matmul(head(K_, bi, hi), omega().t(), mat(B, n, m));
        // Query features: exponent s w.q - s^2 |q|^2 / 2, minus its row maximum.
        features(A, head(Q_, bi, hi), sq, nullptr, inv_sqrt_m, true);
        features(B, head(K_, bi, hi), sk, mask, inv_sqrt_m, false);
        matmul(mat(B, n, m).t(), head(V_, bi, hi), mat(S, m, d));
        for (std::int64_t j = 0; j < m; ++j) z[j] = 0;
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t j = 0; j < m; ++j) z[j] += B[t * m + j];
        const MatRef C = head(C_, bi, hi);
        matmul(mat(A, n, m), mat(S, m, d), C);
#pragma omp parallel for schedule(static)
        for (std::int64_t t = 0; t < n; ++t) {
          float s = 0;
          for (std::int64_t j = 0; j < m; ++j) s += A[t * m + j] * z[j];
          den[t] = s;
          const float inv = s > 0 ? 1.0f / s : 0.0f;  // no real key: C = 0
          for (std::int64_t c = 0; c < d; ++c) C.data[t * C.rs + c] *= inv;
        }
      }
  }

  void core_backward() override {
    const std::int64_t d = head_dim(), m = m_, n = n_;
    ensure(dA_, A_.shape(), MemCategory::workspace, "performer dA (b, h, n, m)");
    ensure(dB_, B_.shape(), MemCategory::workspace, "performer dB (b, h, n, m)");
    ensure(dnum_, {n, d}, MemCategory::workspace, "performer d numerator (n, d)");
    ensure(dS_, {m, d}, MemCategory::workspace, "performer dS (m, d)");
    ensure(dden_, {n}, MemCategory::workspace, "performer d normaliser (n)");
    ensure(dz_, {m}, MemCategory::workspace, "performer dz (m)");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq;
    for (std::int64_t bi = 0; bi < b_; ++bi)
      for (std::int64_t hi = 0; hi < heads_; ++hi) {
        const std::int64_t bh = bi * heads_ + hi;
        const std::uint8_t* mask = mask_ + bi * n;
        const float* A = A_.data() + bh * n * m;
        const float* B = B_.data() + bh * n * m;
        const float* z = z_.data() + bh * m;
        const float* den = den_.data() + bh * n;
        float* dA = dA_.data() + bh * n * m;
        float* dB = dB_.data() + bh * n * m;
        const MatRef C = head(C_, bi, hi), dC = head(dC_, bi, hi);
        // C = num / den: d num = dC / den, d den = -(dC . C) / den (padded queries: dC = 0).
        for (std::int64_t t = 0; t < n; ++t) {
          const float inv = den[t] > 0 ? 1.0f / den[t] : 0.0f;
          float dot = 0;
          for (std::int64_t c = 0; c < d; ++c) {
            dnum_[t * d + c] = dC.data[t * dC.rs + c] * inv;
            dot += dC.data[t * dC.rs + c] * C.data[t * C.rs + c];
          }
          dden_[t] = -dot * inv;
        }
        // num = A S, den = A z: dA = dnum S^T + dden z^T, dS = A^T dnum, dz = A^T dden.
        matmul(mat(dnum_.data(), n, d), mat(S_.data() + bh * m * d, m, d).t(), mat(dA, n, m));
        matmul(mat(A, n, m).t(), mat(dnum_.data(), n, d), mat(dS_.data(), m, d));
        for (std::int64_t j = 0; j < m; ++j) dz_[j] = 0;
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t j = 0; j < m; ++j) {
            dA[t * m + j] += dden_[t] * z[j];
            dz_[j] += A[t * m + j] * dden_[t];
          }
        // S = B^T V, z = B^T 1: dB = V dS^T + 1 dz^T (padded keys: 0), dV = B dS.
        matmul(head(V_, bi, hi), mat(dS_.data(), m, d).t(), mat(dB, n, m));
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t j = 0; j < m; ++j) dB[t * m + j] = mask[t] ? dB[t * m + j] + dz_[j] : 0.0f;
        matmul(mat(B, n, m), mat(dS_.data(), m, d), head(dV_, bi, hi));
        feature_backward(dA, A, head(Q_, bi, hi), sq, head(dQ_, bi, hi));
        feature_backward(dB, B, head(K_, bi, hi), sk, head(dK_, bi, hi));
      }
  }

  double core_flops(std::int64_t b, std::int64_t n) const override {
    return 8.0 * b * heads_ * n * m_ * head_dim();  // two feature projections, B^T V, A S
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t d = head_dim(), bh = b * heads_;
    std::int64_t f = m_ * d + 2 * bh * n * m_ + bh * m_ * d + bh * m_ + bh * n + n;
    if (with_backward) f += 2 * bh * n * m_ + n * d + m_ * d + n + m_;
    return f;
  }

 private:
  // P (n x m) holds w . x for the rows x of X (n x d); makes it phi(s x), rows with mask 0 set to 0.
  // Queries (per_row): each row minus its own maximum exponent; keys: minus the maximum over all real rows.
  void features(float* P, const MatRef& X, float s, const std::uint8_t* mask, float inv_sqrt_m, bool per_row) {
    const std::int64_t n = X.rows, d = X.cols, m = m_;
    float* half_norm = rowtmp_.data();
    for (std::int64_t t = 0; t < n; ++t) {
      float q2 = 0;
      for (std::int64_t c = 0; c < d; ++c) q2 += X.data[t * X.rs + c] * X.data[t * X.rs + c];
      half_norm[t] = 0.5f * s * s * q2;
    }
    float global = -std::numeric_limits<float>::infinity();
    if (!per_row)
      for (std::int64_t t = 0; t < n; ++t)
        if (!mask || mask[t])
          for (std::int64_t j = 0; j < m; ++j) global = std::max(global, s * P[t * m + j] - half_norm[t]);
#pragma omp parallel for schedule(static)
    for (std::int64_t t = 0; t < n; ++t) {
      float* row = P + t * m;
      if (mask && !mask[t]) {
        for (std::int64_t j = 0; j < m; ++j) row[j] = 0;
        continue;
      }
      float c = global;
      if (per_row) {
        c = -std::numeric_limits<float>::infinity();
        for (std::int64_t j = 0; j < m; ++j) c = std::max(c, s * row[j]);
        c -= half_norm[t];
      }
      for (std::int64_t j = 0; j < m; ++j) row[j] = std::exp(s * row[j] - half_norm[t] - c) * inv_sqrt_m;
    }
  }

  // phi(u), u = s x: d x = s (G w) - s^2 rowsum(G) x with G = dP * P (dP overwritten by G).
  void feature_backward(float* dP, const float* P, const MatRef& X, float s, const MatRef& dX) {
    const std::int64_t n = X.rows, d = X.cols, m = m_;
    float* rowsum = rowtmp_.data();
#pragma omp parallel for schedule(static)
    for (std::int64_t t = 0; t < n; ++t) {
      float r = 0;
      for (std::int64_t j = 0; j < m; ++j) r += (dP[t * m + j] *= P[t * m + j]);
      rowsum[t] = r;
    }
    matmul(mat(dP, n, m), omega(), dX);
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t c = 0; c < d; ++c)
        dX.data[t * dX.rs + c] = s * dX.data[t * dX.rs + c] - s * s * rowsum[t] * X.data[t * X.rs + c];
  }

  MatRef omega() const { return MatRef::rowmajor(omega_.data(), m_, head_dim(), head_dim()); }
  static MatRef mat(const float* p, std::int64_t rows, std::int64_t cols) { return MatRef::rowmajor(p, rows, cols, cols); }
  // Head hi of example bi of a (b, n, D) buffer as an (n x d) matrix.
  MatRef head(const Tensor& t, std::int64_t bi, std::int64_t hi) const {
    return MatRef::rowmajor(t.data() + bi * n_ * dim_ + hi * head_dim(), n_, head_dim(), dim_);
  }

  std::int64_t m_;
  std::uint64_t seed_;
  bool omega_drawn_ = false;
  Tensor omega_, A_, B_, S_, z_, den_, rowtmp_, dA_, dB_, dnum_, dS_, dden_, dz_;
};

}  // namespace

std::unique_ptr<Attention> make_performer(const VariantSpec& spec, std::int64_t dim, std::int64_t heads,
                                          std::int64_t) {
  SpecReader r(spec, {{"features", "256"}, {"seed", "0"}});
  const auto m = r.get_int("features", 1);
  const auto seed = static_cast<std::uint64_t>(r.get_int("seed", 0));
  return std::make_unique<PerformerAttention>(r.resolved(), dim, heads, m, seed);
}

}  // namespace lsb
