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
#include "attention_impls/registry.hpp"
#include "attention_impls/random_features.hpp"
#include "attention_impls/variants.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

class PerformerAttention final : public ProjectedAttention {
 public:
  PerformerAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads,
                     std::int64_t features, std::uint64_t seed)
      : ProjectedAttention("performer", std::move(resolved), dim, heads), m_(features), seed_(seed) {}

 protected:
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
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq, inv_sqrt_m = 1.0f / std::sqrt(float(m));
    const float* W = omega_.data();
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t bh = 0; bh < b_ * heads_; ++bh) {
      const std::int64_t bi = bh / heads_, hi = bh % heads_;
      const std::uint8_t* mask = mask_ + bi * n;
      const float *q = head(Q_, bi, hi), *k = head(K_, bi, hi), *v = head(V_, bi, hi);
      float* A = A_.data() + bh * n * m;
      float* B = B_.data() + bh * n * m;
      float* S = S_.data() + bh * m * d;
      float* z = z_.data() + bh * m;
      float* den = den_.data() + bh * n;
      float* c = C_.data() + bi * n * D + hi * d;
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
      // C = num / den: d num = dC / den, d den = -(dC . C) / den (padded queries: dC = 0).
      for (std::int64_t t = 0; t < n; ++t) {
        const float inv = den[t] > 0 ? 1.0f / den[t] : 0.0f;
        float dot = 0;
        for (std::int64_t e = 0; e < d; ++e) {
          dnum[t * d + e] = dc[t * D + e] * inv;
          dot += dc[t * D + e] * c[t * D + e];
        }
        dden[t] = -dot * inv;
      }
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

  double core_flops(std::int64_t b, std::int64_t n) const override {
    return 8.0 * b * heads_ * n * m_ * head_dim();  // two feature projections, B^T V, A S
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t d = head_dim(), bh = b * heads_;
    const std::int64_t T = max_threads();
    std::int64_t f = m_ * d + 2 * bh * n * m_ + bh * m_ * d + bh * m_ + bh * n + T * n;
    if (with_backward) f += 2 * bh * n * m_ + T * (n * d + m_ * d + 2 * n + m_);
    return f;
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

  // Head hi of example bi of a (b, n, D) buffer: its (n x d) block, row stride D.
  const float* head(const Tensor& t, std::int64_t bi, std::int64_t hi) const {
    return t.data() + bi * n_ * dim_ + hi * head_dim();
  }

  std::int64_t m_;
  std::uint64_t seed_;
  bool omega_drawn_ = false;
  Tensor omega_, A_, B_, S_, z_, den_, rowtmp_, dA_, dB_, bscratch_;
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
        if (!in.m[u]) continue;
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
                                                static_cast<std::uint64_t>(keys.get_int("seed", 0)));
  };
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_performer);
  v.reference_core = reference_performer;
  return v;
}

}  // namespace lsb
