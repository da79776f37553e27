// Exact attention in float64 (forward, lse, delta = rowsum(dO * O) and every gradient) and the error
// measures the tests of flash's tensor-core kernels share (test_cuda.cpp on a GPU,
// test_flash_emulated.cpp on the emulated thread block); the other emulated kernel tests use the same
// error measure.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/matmul.hpp"
#include "nn/random.hpp"

namespace lsb::test {

// The inputs of the flash kernel tests: kFlashSequences sequences of n positions (the second with its
// last third padding, the third with no valid key at all), h heads of d dims; Q and K of scale d^-1/4
// (scores of order 1, so the softmax is neither flat nor one-hot), V and dO normal; rounded to bf16
// where `bf16` (the tensor-core kernels' inputs, so that only their own roundings remain).
constexpr std::int64_t kFlashSequences = 3;
struct FlashProblem {
  std::vector<float> Q, K, V, dO;
  std::vector<std::uint8_t> mask;
};
inline FlashProblem flash_problem(std::int64_t n, int h, int d, std::uint64_t seed, bool bf16) {
  const std::int64_t b = kFlashSequences, size = b * n * h * d;
  FlashProblem p{std::vector<float>(size), std::vector<float>(size), std::vector<float>(size),
                 std::vector<float>(size), std::vector<std::uint8_t>(b * n, 1)};
  Rng rng(seed);
  const double qk_scale = 1.0 / std::sqrt(std::sqrt(double(d)));
  auto draw = [&](double scale) {
    const float x = static_cast<float>(rng.normal() * scale);
    return bf16 ? round_to_bf16(x) : x;
  };
  for (auto* buf : {&p.Q, &p.K})
    for (auto& v : *buf) v = draw(qk_scale);
  for (auto* buf : {&p.V, &p.dO})
    for (auto& v : *buf) v = draw(1.0);
  for (std::int64_t t = n - n / 3; t < n; ++t) p.mask[n + t] = 0;  // sequence 1: the last third padding
  for (std::int64_t t = 0; t < n; ++t) p.mask[2 * n + t] = 0;      // sequence 2: no valid key
  return p;
}

// Softmax attention per (batch, head) of (b, n, D) buffers in float64, forward and backward (delta =
// rowsum(dO * O) taken from the reference O); a row with no valid key gives O = 0 and lse = -inf.
struct FlashReference {
  std::vector<double> O, lse, delta, dQ, dK, dV;
};
inline FlashReference flash_reference(const std::vector<float>& Q, const std::vector<float>& K, const std::vector<float>& V,
                               const std::vector<float>& dO, const std::vector<std::uint8_t>& mask, std::int64_t b,
                               std::int64_t n, int h, int d, bool causal) {
  const std::int64_t D = std::int64_t(h) * d;
  FlashReference r{std::vector<double>(Q.size()), std::vector<double>(b * h * n), std::vector<double>(b * h * n),
                   std::vector<double>(Q.size()), std::vector<double>(Q.size()), std::vector<double>(Q.size())};
  std::vector<double> P(n * n), dS(n * n);
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (int hi = 0; hi < h; ++hi) {
      auto at = [&](std::int64_t t, int k) { return (bi * n + t) * D + hi * d + k; };
      const std::int64_t row0 = (bi * h + hi) * n;
      for (std::int64_t t = 0; t < n; ++t) {
        double mx = -INFINITY;
        for (std::int64_t u = 0; u < n; ++u) {
          double s = 0;
          for (int k = 0; k < d; ++k) s += double(Q[at(t, k)]) * K[at(u, k)];
          P[t * n + u] = mask[bi * n + u] && !(causal && u > t) ? s : -INFINITY;
          mx = std::max(mx, P[t * n + u]);
        }
        double sum = 0;
        for (std::int64_t u = 0; u < n; ++u) sum += P[t * n + u] = mx == -INFINITY ? 0.0 : std::exp(P[t * n + u] - mx);
        for (std::int64_t u = 0; u < n; ++u) P[t * n + u] = sum > 0 ? P[t * n + u] / sum : 0.0;
        r.lse[row0 + t] = sum > 0 ? mx + std::log(sum) : -INFINITY;
        for (int k = 0; k < d; ++k) {
          double o = 0;
          for (std::int64_t u = 0; u < n; ++u) o += P[t * n + u] * V[at(u, k)];
          r.O[at(t, k)] = o;
          r.delta[row0 + t] += o * dO[at(t, k)];
        }
        for (std::int64_t u = 0; u < n; ++u) {
          double dp = 0;
          for (int k = 0; k < d; ++k) dp += double(dO[at(t, k)]) * V[at(u, k)];
          dS[t * n + u] = P[t * n + u] * (dp - r.delta[row0 + t]);
        }
      }
      for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t u = 0; u < n; ++u)
          for (int k = 0; k < d; ++k) {
            r.dQ[at(t, k)] += dS[t * n + u] * K[at(u, k)];
            r.dK[at(u, k)] += dS[t * n + u] * Q[at(t, k)];
            r.dV[at(u, k)] += P[t * n + u] * dO[at(t, k)];
          }
    }
  return r;
}

// max |got - want| over max |want| (over finite entries of want; an infinite want must be matched).
// The largest error relative to the reference's largest magnitude, or to `floor` when that is larger
// (a gradient that is exactly 0 in exact arithmetic, such as dQ and dK with one key, is held to the
// scale of the problem's other gradients, not to 0).
inline double rel_err(const std::vector<float>& got, const std::vector<double>& want, double floor = 1e-30) {
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i])) {
      if (got[i] != want[i]) return INFINITY;
      continue;
    }
    err = std::max(err, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return err / std::max(scale, floor);
}
inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (const double x : v)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

}  // namespace lsb::test
