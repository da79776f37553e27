// The causal kernels of performer on the GPU (attention_impls/cuda/performer_kernels.cuh), the very code the
// GPU runs, on an emulated thread block (tests/simt.hpp), against causal linear attention computed in
// float64 from its definition: C_t = sum_{u <= t} (A_t . B_u) v_u / sum_{u <= t} A_t . B_u, and its
// gradients. The feature projections around them are cuBLAS products (tested on a GPU).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/host_device.hpp"
#include "nn/random.hpp"
#include "tests/flash_reference.hpp"
#include "tests/simt.hpp"

namespace lsb {
namespace {
namespace emulated {
#include "tests/simt_dialect.hpp"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/performer_kernels.cuh"
}  // namespace emulated


}  // namespace

// b = 2 sequences (the second with its last 40 positions padding, whose key features are 0), one head
// of d = 8 dims, m = 16 features, n = 130 (chunks of 64: two whole, one of 2 rows); each kernel of the
// causal forward and backward in the module's order, from given features A, B.
TEST_CASE("performer's causal CUDA kernels on an emulated thread block equal the float64 definition",
          "[mma][emulated][causal]") {
  using emulated::kChunk;
  using emulated::kThreads;
  const std::int64_t b = 2, heads = 1, d = 8, m = 16, n = 130, D = heads * d, bh = b * heads, rows = bh * n;
  const std::int64_t nc = (n + kChunk - 1) / kChunk, width = m * d + m;
  Rng rng(23);
  std::vector<std::uint8_t> mask(b * n, 1);
  for (std::int64_t t = n - 40; t < n; ++t) mask[n + t] = 0;
  std::vector<float> A(rows * m), B(rows * m), V(b * n * D), dC(b * n * D);
  for (auto& x : A) x = static_cast<float>(rng.uniform(0.05, 1.0));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < m; ++j)
      B[r * m + j] = mask[(r / n / heads) * n + r % n] ? static_cast<float>(rng.uniform(0.05, 1.0)) : 0.0f;
  for (auto& x : V) x = static_cast<float>(rng.normal());
  for (auto& x : dC) x = static_cast<float>(rng.normal());
  const emulated::HeadRowsOf Vrows{V.data(), heads, n * D, d, D};
  auto v_at = [&](std::int64_t g, std::int64_t u, std::int64_t e) { return double(Vrows.row(g, u)[e]); };
  auto dot_ab = [&](std::int64_t g, std::int64_t t, std::int64_t u) {
    double s = 0;
    for (std::int64_t j = 0; j < m; ++j) s += double(A[(g * n + t) * m + j]) * B[(g * n + u) * m + j];
    return s;
  };

  // Forward: chunk states, their exclusive prefix, each row's output.
  std::vector<float> states(bh * nc * width, NAN), C(b * n * D, NAN), den(rows, NAN);
  simt::launch(static_cast<unsigned>(bh * nc), 1, kThreads, 0,
               [&] { emulated::chunk_products_kernel(B.data(), Vrows, nullptr, n, m, d, states.data()); });
  simt::launch(static_cast<unsigned>((bh * width + kThreads - 1) / kThreads), 1, kThreads, 0,
               [&] { emulated::chunk_prefix_kernel(states.data(), bh, nc, width, false); });
  simt::launch(static_cast<unsigned>(rows), 1, kThreads, 0, [&] {
    emulated::causal_output_kernel(A.data(), B.data(), Vrows, states.data(), n, heads, m, d, C.data(), den.data());
  });
  std::vector<double> C_ref(C.size()), den_ref(rows);
  for (std::int64_t g = 0; g < bh; ++g)
    for (std::int64_t t = 0; t < n; ++t) {
      std::vector<double> num(d);
      double dn = 0;
      for (std::int64_t u = 0; u <= t; ++u) {
        const double w = dot_ab(g, t, u);
        dn += w;
        for (std::int64_t e = 0; e < d; ++e) num[e] += w * v_at(g, u, e);
      }
      den_ref[g * n + t] = dn;
      for (std::int64_t e = 0; e < d; ++e)
        C_ref[((g / heads) * n + t) * D + (g % heads) * d + e] = dn > 0 ? num[e] / dn : 0.0;
    }
  CHECK(test::rel_err(den, den_ref) <= 1e-5);
  CHECK(test::rel_err(C, C_ref) <= 1e-5);

  // Backward: dnum, dden; the state gradients as a reverse prefix; dA, dB, dV.
  std::vector<float> dnum(rows * d, NAN), dden(rows, NAN), gstates(states.size(), NAN);
  std::vector<float> dA(rows * m, NAN), dB(rows * m, NAN), dV(b * n * D, NAN);
  simt::launch(static_cast<unsigned>(rows), 1, kThreads, 0, [&] {
    emulated::normaliser_backward_kernel(dC.data(), C.data(), den.data(), n, heads, d, dnum.data(), dden.data());
  });
  const emulated::HeadRowsOf dnum_rows{dnum.data(), heads, heads * n * d, n * d, d};
  simt::launch(static_cast<unsigned>(bh * nc), 1, kThreads, 0,
               [&] { emulated::chunk_products_kernel(A.data(), dnum_rows, dden.data(), n, m, d, gstates.data()); });
  simt::launch(static_cast<unsigned>((bh * width + kThreads - 1) / kThreads), 1, kThreads, 0,
               [&] { emulated::chunk_prefix_kernel(gstates.data(), bh, nc, width, true); });
  simt::launch(static_cast<unsigned>(rows), 1, kThreads, 0, [&] {
    emulated::causal_query_grad_kernel(B.data(), Vrows, states.data(), dnum.data(), dden.data(), n, m, d, dA.data());
  });
  simt::launch(static_cast<unsigned>(rows), 1, kThreads, 0, [&] {
    emulated::causal_key_grad_kernel(A.data(), B.data(), Vrows, mask.data(), gstates.data(), dnum.data(), dden.data(),
                                     n, heads, m, d, dB.data(), dV.data());
  });
  // In float64 from the reference forward: dnum_t = dC_t / den_t, dden_t = -(dC_t . C_t) / den_t, and with
  // dT_tu = dnum_t . v_u + dden_t: dA_t = sum_{u <= t} dT_tu B_u, dB_u = sum_{t >= u} dT_tu A_t (0 for a
  // padded key), dv_u = sum_{t >= u} (A_t . B_u) dnum_t.
  std::vector<double> dnum_ref(rows * d), dden_ref(rows), dA_ref(rows * m), dB_ref(rows * m), dV_ref(b * n * D);
  for (std::int64_t g = 0; g < bh; ++g)
    for (std::int64_t t = 0; t < n; ++t) {
      const std::int64_t r = g * n + t, row = ((g / heads) * n + t) * D + (g % heads) * d;
      const double inv = den_ref[r] > 0 ? 1.0 / den_ref[r] : 0.0;
      double dot = 0;
      for (std::int64_t e = 0; e < d; ++e) {
        dnum_ref[r * d + e] = dC[row + e] * inv;
        dot += double(dC[row + e]) * C_ref[row + e];
      }
      dden_ref[r] = -dot * inv;
    }
  for (std::int64_t g = 0; g < bh; ++g)
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t u = 0; u <= t; ++u) {
        const std::int64_t rt = g * n + t, ru = g * n + u;
        double dT = dden_ref[rt];
        for (std::int64_t e = 0; e < d; ++e) dT += dnum_ref[rt * d + e] * v_at(g, u, e);
        const bool real = mask[(g / heads) * n + u] != 0;
        for (std::int64_t j = 0; j < m; ++j) {
          dA_ref[rt * m + j] += dT * B[ru * m + j];
          if (real) dB_ref[ru * m + j] += dT * A[rt * m + j];
        }
        const double w = dot_ab(g, t, u);
        for (std::int64_t e = 0; e < d; ++e)
          dV_ref[((g / heads) * n + u) * D + (g % heads) * d + e] += w * dnum_ref[rt * d + e];
      }
  CHECK(test::rel_err(dnum, dnum_ref) <= 1e-5);
  CHECK(test::rel_err(dden, dden_ref) <= 1e-5);
  CHECK(test::rel_err(dA, dA_ref) <= 1e-5);
  CHECK(test::rel_err(dB, dB_ref) <= 1e-5);
  CHECK(test::rel_err(dV, dV_ref) <= 1e-5);
}

// The causal feature maps from P = w . x: queries exp(s P_j - s^2 |x|^2 / 2 + |w_j|^2 / 2 - their row
// maximum) / sqrt(m), keys exp(s P_j - s^2 |x|^2 / 2 - |w_j|^2 / 2) / sqrt(m), padded keys 0.
TEST_CASE("performer's causal feature kernel on an emulated thread block equals its formula",
          "[mma][emulated][causal]") {
  using emulated::kThreads;
  const std::int64_t b = 2, heads = 2, d = 8, m = 300, n = 5, D = heads * d, rows = b * heads * n;
  const float s = 0.7f, inv_sqrt_m = 1.0f / std::sqrt(float(m));
  Rng rng(29);
  std::vector<float> X(b * n * D), P0(rows * m), half_w2(m);
  for (auto& x : X) x = static_cast<float>(rng.normal());
  for (auto& x : P0) x = static_cast<float>(rng.normal() * 2);
  for (auto& x : half_w2) x = static_cast<float>(rng.uniform(0.0, 4.0));
  std::vector<std::uint8_t> mask(b * n, 1);
  mask[n + n - 1] = 0;
  for (const bool query : {true, false}) {
    INFO((query ? "queries" : "keys"));
    std::vector<float> P = P0;
    simt::launch(static_cast<unsigned>(rows), 1, kThreads, 0, [&] {
      emulated::causal_features_kernel(P.data(), X.data(), mask.data(), half_w2.data(), query, n, heads, d, m, s,
                                       inv_sqrt_m);
    });
    std::vector<double> want(P.size());
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t g = r / n, t = r % n, bi = g / heads, hi = g % heads;
      double x2 = 0;
      for (std::int64_t k = 0; k < d; ++k)
        x2 += double(X[(bi * n + t) * D + hi * d + k]) * X[(bi * n + t) * D + hi * d + k];
      std::vector<double> e(m);
      double mx = -INFINITY;
      for (std::int64_t j = 0; j < m; ++j) {
        e[j] = s * double(P0[r * m + j]) - 0.5 * s * s * x2 + (query ? 1.0 : -1.0) * half_w2[j];
        mx = std::max(mx, e[j]);
      }
      for (std::int64_t j = 0; j < m; ++j)
        want[r * m + j] = !query && !mask[bi * n + t] ? 0.0 : std::exp(e[j] - (query ? mx : 0.0)) * inv_sqrt_m;
    }
    CHECK(test::rel_err(P, want) <= 1e-5);
  }
}

}  // namespace lsb
