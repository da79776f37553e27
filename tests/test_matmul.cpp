#include <catch2/catch.hpp>

#include <omp.h>

#include <cmath>
#include <vector>

#include "attention_impls/variants.hpp"
#include "nn/matmul.hpp"
#include "nn/ops.hpp"
#include "nn/random.hpp"

using namespace lsb;

namespace {
double naive(const MatRef& m, std::int64_t b0, std::int64_t b1, std::int64_t i, std::int64_t j) {
  return m.data[b0 * m.bstride[0] + b1 * m.bstride[1] + i * m.rs + j * m.cs];
}
std::vector<float> randv(std::size_t n, std::uint64_t seed) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(r.normal());
  return v;
}
}  // namespace

TEST_CASE("matmul on transposed strided head views matches naive loops", "[matmul]") {
  const std::int64_t b = 2, n = 7, h = 3, d = 4, D = h * d;
  auto q = randv(b * n * D, 1), k = randv(b * n * D, 2);
  std::vector<float> s(b * h * n * n, 5.0f);
  const MatRef Q = head_view(q.data(), b, n, h, d), K = head_view(k.data(), b, n, h, d);
  const MatRef S = MatRef::rowmajor(s.data(), n, n, n).batched(b, h * n * n, h, n * n);
  std::vector<float> keep = s;
  matmul(Q, K.t(), S, 0.5f, 2.0f);  // S = 0.5 Q K^T + 2 S
  for (std::int64_t b0 = 0; b0 < b; ++b0)
    for (std::int64_t b1 = 0; b1 < h; ++b1)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (std::int64_t c = 0; c < d; ++c) acc += naive(Q, b0, b1, i, c) * naive(K, b0, b1, j, c);
          CHECK(naive(S, b0, b1, i, j) == Approx(0.5 * acc + 2.0 * 5.0).epsilon(1e-5));
        }
}

TEST_CASE("batched products with a transposed A and a long contraction are right on many threads",
          "[matmul]") {
  // dV = P^T dC of attention at n = 2048: oneDNN 2.6's batched kernel got this wrong on 3+ threads.
  const std::int64_t b = 2, n = 2048, d = 16;
  const auto p = randv(b * n * n, 3), g = randv(b * n * d, 4);
  std::vector<float> out(b * n * d);
  const MatRef Pt = MatRef::rowmajor(p.data(), n, n, n).batched(b, n * n, 1, n * n).t();
  const MatRef G = MatRef::rowmajor(g.data(), n, d, d).batched(b, n * d, 1, d);
  const MatRef O = MatRef::rowmajor(out.data(), n, d, d).batched(b, n * d, 1, d);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(4);
  matmul(Pt, G, O);
  omp_set_num_threads(threads);
  double worst = 0;
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t i = 0; i < n; i += 7)  // every 7th row keeps the float64 check quick
      for (std::int64_t j = 0; j < d; ++j) {
        double e = 0;
        for (std::int64_t k = 0; k < n; ++k) e += naive(Pt, bi, 0, i, k) * naive(G, bi, 0, k, j);
        worst = std::max(worst, std::fabs(naive(O, bi, 0, i, j) - e) / (1 + std::fabs(e)));
      }
  CHECK(worst < 1e-4);
}

TEST_CASE("linear layers follow nn.Linear (y = x W^T + b) and so do their gradients", "[matmul]") {
  const std::int64_t rows = 5, in = 3, out = 4;
  auto x = randv(rows * in, 3), W = randv(out * in, 4), bias = randv(out, 5), dy = randv(rows * out, 6);
  std::vector<float> y(rows * out), dW(out * in, 1.0f), db(out, 1.0f), dx(rows * in, 0.5f);
  linear_forward(x.data(), rows, in, W.data(), bias.data(), out, y.data());
  linear_backward(dy.data(), x.data(), rows, in, W.data(), out, dW.data(), db.data(), dx.data(), true);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t o = 0; o < out; ++o) {
      double s = bias[o];
      for (std::int64_t i = 0; i < in; ++i) s += x[r * in + i] * W[o * in + i];
      CHECK(y[r * out + o] == Approx(s).epsilon(1e-5));
    }
  for (std::int64_t o = 0; o < out; ++o) {
    double sb = 1.0;  // accumulated onto the initial 1
    for (std::int64_t r = 0; r < rows; ++r) sb += dy[r * out + o];
    CHECK(db[o] == Approx(sb).epsilon(1e-5));
    for (std::int64_t i = 0; i < in; ++i) {
      double s = 1.0;
      for (std::int64_t r = 0; r < rows; ++r) s += dy[r * out + o] * x[r * in + i];
      CHECK(dW[o * in + i] == Approx(s).epsilon(1e-5));
    }
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < in; ++i) {
      double s = 0.5;
      for (std::int64_t o = 0; o < out; ++o) s += dy[r * out + o] * W[o * in + i];
      CHECK(dx[r * in + i] == Approx(s).epsilon(1e-5));
    }
}

TEST_CASE("matmul reuses its primitives and rejects mismatched shapes", "[matmul]") {
  std::vector<float> a(6, 1.0f), b(6, 1.0f), c(4);
  const auto A = MatRef::rowmajor(a.data(), 2, 3, 3), B = MatRef::rowmajor(b.data(), 3, 2, 2);
  const auto C = MatRef::rowmajor(c.data(), 2, 2, 2);
  matmul(A, B, C);
  const auto created = matmul_primitives_created();
  matmul(A, B, C);
  CHECK(matmul_primitives_created() == created);
  CHECK(c[0] == 3.0f);
  CHECK_THROWS_WITH(matmul(A, A, C), Catch::Contains("shape mismatch"));
}

TEST_CASE("fast_exp is accurate to fp32 rounding and exact at the ends", "[ops]") {
  for (double x = -80; x <= 80; x += 0.37) {
    const float xf = static_cast<float>(x);  // compare against exp of the input as rounded to fp32
    CHECK(fast_exp(xf) == Approx(std::exp(static_cast<double>(xf))).epsilon(3e-7));
  }
  CHECK(fast_exp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(fast_exp(-100.0f) == 0.0f);
  CHECK(fast_exp(0.0f) == 1.0f);
}

TEST_CASE("layernorm backward matches finite differences", "[ops]") {
  const std::int64_t rows = 3, D = 6;
  auto x = randv(rows * D, 7), g = randv(D, 8), be = randv(D, 9), dy = randv(rows * D, 10);
  std::vector<float> y(rows * D), mean(rows), rstd(rows), dx(rows * D), dg(D, 0.0f), db(D, 0.0f);
  layernorm_forward(x.data(), rows, D, g.data(), be.data(), y.data(), mean.data(), rstd.data());
  layernorm_backward(dy.data(), x.data(), rows, D, g.data(), mean.data(), rstd.data(), dx.data(), dg.data(), db.data(),
                     false);
  auto loss = [&](const std::vector<float>& xs) {
    std::vector<float> ys(rows * D), m(rows), r(rows);
    layernorm_forward(xs.data(), rows, D, g.data(), be.data(), ys.data(), m.data(), r.data());
    double L = 0;
    for (std::size_t i = 0; i < ys.size(); ++i) L += double(ys[i]) * dy[i];
    return L;
  };
  for (std::size_t i = 0; i < x.size(); ++i) {
    auto xp = x, xm = x;
    xp[i] += 1e-2f;
    xm[i] -= 1e-2f;
    CHECK(dx[i] == Approx((loss(xp) - loss(xm)) / 2e-2).margin(2e-3));
  }
}
