#include "attention_impls/local_core.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "attention_impls/projected.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {
inline float dot(const float* a, const float* b, std::int64_t d) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (std::int64_t j = 0; j < d; ++j) s += a[j] * b[j];
  return s;
}
inline void axpy(float alpha, const float* x, float* y, std::int64_t d) {
#pragma omp simd
  for (std::int64_t j = 0; j < d; ++j) y[j] += alpha * x[j];
}
}  // namespace

void local_attention_forward(const LocalWindow& w, std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d,
                             const float* Q, const float* K, const float* V, const float* KX, const float* VX,
                             const std::uint8_t* mask, float* P, float* C) {
  const std::int64_t D = h * d, W = w.width();
  const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t hi = 0; hi < h; ++hi) {
      const std::int64_t off = bi * n * D + hi * d;
      const float *q = Q + off, *k = K + off, *v = V + off;
      const float* kx = KX ? KX + bi * w.extra * D + hi * d : nullptr;
      const float* vx = VX ? VX + bi * w.extra * D + hi * d : nullptr;
      const std::uint8_t* m = mask + bi * n;
      float* c = C + off;
      for (std::int64_t t = 0; t < n; ++t) {
        float* p = P + ((bi * h + hi) * n + t) * W;
        const float* qt = q + t * D;
        const std::int64_t u0 = w.start(t);
        float mx = neg_inf;
        for (std::int64_t j = 0; j < w.extra; ++j) mx = std::max(mx, p[j] = dot(qt, kx + j * D, d));
        for (std::int64_t o = 0; o < w.span; ++o) {
          const std::int64_t u = u0 + o;
          const bool ok = u >= 0 && u < n && m[u];
          p[w.extra + o] = ok ? dot(qt, k + u * D, d) : neg_inf;
          if (ok) mx = std::max(mx, p[w.extra + o]);
        }
        float* ct = c + t * D;
        std::memset(ct, 0, sizeof(float) * d);
        if (mx == neg_inf) {  // nothing visible: no probability anywhere
          std::fill(p, p + W, 0.0f);
          continue;
        }
        float sum = 0;
        for (std::int64_t j = 0; j < W; ++j) sum += (p[j] = fast_exp(p[j] - mx));
        const float inv = 1.0f / sum;
        for (std::int64_t j = 0; j < w.extra; ++j) axpy(p[j] *= inv, vx + j * D, ct, d);
        for (std::int64_t o = 0; o < w.span; ++o) {
          float& po = p[w.extra + o];
          po *= inv;
          if (po != 0.0f) axpy(po, v + (u0 + o) * D, ct, d);
        }
      }
    }
}

void local_attention_backward(const LocalWindow& w, std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d,
                              const float* Q, const float* K, const float* V, const float* KX, const float* VX,
                              const float* P, const float* dC, float* dQ, float* dK, float* dV, float* dKX,
                              float* dVX, float* scratch) {
  const std::int64_t D = h * d, W = w.width();
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t hi = 0; hi < h; ++hi) {
      const std::int64_t off = bi * n * D + hi * d, xoff = bi * w.extra * D + hi * d;
      const float *q = Q + off, *k = K + off, *v = V + off, *dc = dC + off;
      float *dq = dQ + off, *dk = dK + off, *dv = dV + off;
      for (std::int64_t t = 0; t < n; ++t) {
        std::memset(dk + t * D, 0, sizeof(float) * d);
        std::memset(dv + t * D, 0, sizeof(float) * d);
      }
      for (std::int64_t j = 0; j < w.extra; ++j) {
        std::memset(dKX + xoff + j * D, 0, sizeof(float) * d);
        std::memset(dVX + xoff + j * D, 0, sizeof(float) * d);
      }
      for (std::int64_t t = 0; t < n; ++t) {
        const float* p = P + ((bi * h + hi) * n + t) * W;
        const float *qt = q + t * D, *dct = dc + t * D;
        float* dqt = dq + t * D;
        std::memset(dqt, 0, sizeof(float) * d);
        const std::int64_t u0 = w.start(t);
        // dp = dC_t . [vx | v window]; ds = p * (dp - sum(p * dp)).
        float* dp = scratch + thread_id() * W;
        float total = 0;
        for (std::int64_t j = 0; j < w.extra; ++j) total += p[j] * (dp[j] = dot(dct, VX + xoff + j * D, d));
        for (std::int64_t o = 0; o < w.span; ++o) {
          const float po = p[w.extra + o];  // 0 for invalid keys (and for underflow: no gradient either)
          dp[w.extra + o] = po != 0.0f ? dot(dct, v + (u0 + o) * D, d) : 0.0f;
          total += po * dp[w.extra + o];
        }
        for (std::int64_t j = 0; j < w.extra; ++j) {
          const float ds = p[j] * (dp[j] - total);
          axpy(ds, KX + xoff + j * D, dqt, d);
          axpy(ds, qt, dKX + xoff + j * D, d);
          axpy(p[j], dct, dVX + xoff + j * D, d);
        }
        for (std::int64_t o = 0; o < w.span; ++o) {
          const float po = p[w.extra + o];
          if (po == 0.0f) continue;
          const std::int64_t u = u0 + o;
          const float ds = po * (dp[w.extra + o] - total);
          axpy(ds, k + u * D, dqt, d);
          axpy(ds, qt, dk + u * D, d);
          axpy(po, dct, dv + u * D, d);
        }
      }
    }
}

}  // namespace lsb
