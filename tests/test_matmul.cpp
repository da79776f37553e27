#include <catch2/catch.hpp>

#include <omp.h>

#include <bit>
#include <cmath>
#include <vector>

#include "attention_impls/variants.hpp"
#include "nn/errors.hpp"
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

TEST_CASE("batch dimensions merge where every operand's strides allow it, and the product is the same", "[matmul]") {
  const std::int64_t b = 3, h = 2, m = 5, n = 7, D = h * m;
  auto x = randv(b * h * m * m, 3), y = randv(b * h * m * m, 4), q = randv(b * n * D, 5);
  // (b, h) batches of consecutive m x m matrices (nystromformer's landmark products): one batch of b h.
  auto square = [&](float* p) { return MatRef::rowmajor(p, m, m, m).batched(b, h * m * m, h, m * m); };
  std::vector<float> z0(x.size(), 0.0f), z1(x.size(), 0.0f);
  MatRef A = square(x.data()), B = square(y.data()).t(), C = square(z1.data());
  matmul(square(x.data()), square(y.data()).t(), square(z0.data()));
  REQUIRE(merge_batch_dims(A, B, C));
  for (const MatRef* v : {&A, &B, &C}) {
    CHECK(v->batch[0] == 1);
    CHECK(v->batch[1] == b * h);
    CHECK(v->bstride[1] == m * m);
  }
  matmul(A, B, C);  // the same products (oneDNN may pick another kernel: equal within rounding)
  for (std::size_t i = 0; i < z0.size(); ++i) CHECK(z1[i] == Approx(z0[i]).epsilon(1e-6).margin(1e-6));
  // A broadcast operand (strides 0, 0) merges too.
  MatRef shared = MatRef::rowmajor(y.data(), m, m, m).batched(b, 0, h, 0);
  MatRef A2 = square(x.data()), C2 = square(z1.data());
  CHECK(merge_batch_dims(A2, shared, C2));
  CHECK(shared.batch[1] == b * h);
  CHECK(shared.bstride[1] == 0);
  // Head views of a (b, n, D) buffer (batch strides n D and d) and an operand shared across heads only
  // (strides m m, 0) stay as they are.
  MatRef Q = head_view(q.data(), b, n, h, m), Kt = head_view(q.data(), b, n, h, m).t();
  std::vector<float> s(b * h * n * n);
  MatRef S = MatRef::rowmajor(s.data(), n, n, n).batched(b, h * n * n, h, n * n);
  CHECK_FALSE(merge_batch_dims(Q, Kt, S));
  CHECK(Q.batch[0] == b);
  CHECK(S.batch[0] == b);
  MatRef per_example = MatRef::rowmajor(y.data(), m, m, m).batched(b, m * m, h, 0), A3 = square(x.data()),
         C3 = square(z1.data());
  CHECK_FALSE(merge_batch_dims(A3, per_example, C3));
  CHECK(per_example.batch[0] == b);
  // One batch dimension: nothing to merge.
  MatRef one = MatRef::rowmajor(x.data(), m, m, m).batched(b * h, m * m), one_b = one, one_c = one;
  CHECK_FALSE(merge_batch_dims(one, one_b, one_c));
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

TEST_CASE("round_to_bf16 rounds to nearest, ties to even, and keeps NaN and infinities", "[matmul][bf16]") {
  CHECK(round_to_bf16(1.0f) == 1.0f);
  CHECK(round_to_bf16(1.0f + 0x1p-8f) == 1.0f);               // halfway: down to the even neighbour
  CHECK(round_to_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);  // halfway: up to the even neighbour
  CHECK(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);
  CHECK(round_to_bf16(-3.0f) == -3.0f);
  CHECK(round_to_bf16(3.4e38f) == INFINITY);  // above the largest bf16 (3.3895e38)
  CHECK(round_to_bf16(-INFINITY) == -INFINITY);
  CHECK(std::isnan(round_to_bf16(NAN)));
  CHECK(std::isnan(round_to_bf16(std::bit_cast<float>(0x7f800001u))));  // a NaN whose payload would carry into inf
}

TEST_CASE("bf16 products equal the float64 product of the bf16-rounded operands on every view", "[matmul][bf16]") {
  std::string why;
  if (!bf16_matmul_available(&why)) {
    WARN("skipped: " << why);
    CHECK_THROWS_AS(PrecisionScope(Precision::bf16), UsageError);
    return;
  }
  const std::int64_t b = 2, n = 37, h = 3, d = 24, D = h * d;
  auto q = randv(b * n * D, 1), k = randv(b * n * D, 2), w = randv(D * D, 3), bias = randv(D, 4);
  // c = f(a, b) on views; the expected value accumulates round_to_bf16 of both operands in float64.
  auto check = [&](const MatRef& A, const MatRef& B, const MatRef& C, float alpha, float beta, const float* bia,
                   const std::vector<float>& c_before) {
    double worst = 0, rounding_seen = 0;
    for (std::int64_t b0 = 0; b0 < C.batch[0]; ++b0)
      for (std::int64_t b1 = 0; b1 < C.batch[1]; ++b1)
        for (std::int64_t i = 0; i < C.rows; ++i)
          for (std::int64_t j = 0; j < C.cols; ++j) {
            double e = 0, exact = 0, mag = 0;
            for (std::int64_t c = 0; c < A.cols; ++c) {
              const double av = naive(A, b0, b1, i, c), bv = naive(B, b0, b1, c, j);
              e += double(round_to_bf16(float(av))) * round_to_bf16(float(bv));
              exact += av * bv;
              mag += std::fabs(av * bv);
            }
            const std::int64_t at = b0 * C.bstride[0] + b1 * C.bstride[1] + i * C.rs + j * C.cs;
            const double want = alpha * e + beta * c_before[at] + (bia ? bia[j] : 0.0);
            worst = std::max(worst, std::fabs(C.data[at] - want) / (1 + mag));
            rounding_seen = std::max(rounding_seen, std::fabs(e - exact) / (1 + mag));
          }
    CHECK(worst < 1e-5);          // fp32 accumulation of exactly the rounded operands
    CHECK(rounding_seen > 1e-4);  // and the rounding is real (fp32 operands would not differ so much)
  };
  PrecisionScope bf16(Precision::bf16);
  REQUIRE(matmul_precision() == Precision::bf16);
  SECTION("heads: S = 0.5 Q K^T + 2 S, batched with a transposed B") {
    std::vector<float> s(b * h * n * n, 1.5f);
    const MatRef Q = head_view(q.data(), b, n, h, d), K = head_view(k.data(), b, n, h, d);
    const MatRef S = MatRef::rowmajor(s.data(), n, n, n).batched(b, h * n * n, h, n * n);
    const auto before = s;
    matmul(Q, K.t(), S, 0.5f, 2.0f);
    check(Q, K.t(), S, 0.5f, 2.0f, nullptr, before);
  }
  SECTION("linear: y = x W^T + bias") {
    std::vector<float> y(b * n * D, 0.0f);
    const MatRef X = MatRef::rowmajor(q.data(), b * n, D, D), W = MatRef::rowmajor(w.data(), D, D, D);
    const MatRef Y = MatRef::rowmajor(y.data(), b * n, D, D);
    matmul(X, W.t(), Y, 1.0f, 0.0f, bias.data());
    check(X, W.t(), Y, 1.0f, 0.0f, bias.data(), std::vector<float>(y.size(), 0.0f));
  }
  SECTION("a transposed A, batched (the per-matrix path) and unbatched") {
    std::vector<float> o(b * h * d * d, 0.0f);
    const MatRef Q = head_view(q.data(), b, n, h, d), K = head_view(k.data(), b, n, h, d);
    const MatRef O = MatRef::rowmajor(o.data(), d, d, d).batched(b, h * d * d, h, d * d);
    matmul(Q.t(), K, O);
    check(Q.t(), K, O, 1.0f, 0.0f, nullptr, std::vector<float>(o.size(), 0.0f));
    std::vector<float> o2(D * D, 0.0f);
    const MatRef X = MatRef::rowmajor(q.data(), b * n, D, D), Y = MatRef::rowmajor(k.data(), b * n, D, D);
    const MatRef O2 = MatRef::rowmajor(o2.data(), D, D, D);
    matmul(X.t(), Y, O2);
    check(X.t(), Y, O2, 1.0f, 0.0f, nullptr, std::vector<float>(o2.size(), 0.0f));
  }
}

TEST_CASE("precision names parse, and a scope restores the previous precision", "[matmul][bf16]") {
  CHECK(parse_precision("fp32", "--precision") == Precision::fp32);
  CHECK_THROWS_WITH(parse_precision("fp16", "--precision"),
                    Catch::Contains("--precision") && Catch::Contains("fp16") && Catch::Contains("bf16"));
  REQUIRE(matmul_precision() == Precision::fp32);
  if (bf16_matmul_available()) {
    {
      PrecisionScope s(Precision::bf16);
      CHECK(std::string(precision_name(matmul_precision())) == "bf16");
    }
    CHECK(matmul_precision() == Precision::fp32);
  }
}

TEST_CASE("fast_exp is accurate to fp32 rounding and exact at the ends", "[ops]") {
  for (double x = -80; x <= 80; x += 0.37) {
    const float xf = static_cast<float>(x);  // compare against exp of the input as rounded to fp32
    CHECK(fast_exp(xf) == Approx(std::exp(static_cast<double>(xf))).epsilon(3e-7));
  }
  CHECK(fast_exp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(fast_exp(-100.0f) == 0.0f);
  CHECK(fast_exp(0.0f) == 1.0f);
  CHECK(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));  // NaN is not hidden
  CHECK(std::isfinite(fast_exp(1000.0f)));                                 // clamped at exp(88.3)
  CHECK(fast_exp(1000.0f) == fast_exp(88.3f));
  // The masked form: exactly 0 where the key is masked (whatever the score), fast_exp elsewhere.
  for (const float x : {-3.5f, 0.0f, 2.25f, 120.0f, -std::numeric_limits<float>::infinity()}) {
    CHECK(exp_where(0, x) == 0.0f);
    CHECK(std::signbit(exp_where(0, x)) == false);
    CHECK(exp_where(1, x) == fast_exp(x));
    CHECK(exp_where(7, x) == fast_exp(x));
  }
  CHECK(exp_where(0, std::numeric_limits<float>::quiet_NaN()) == 0.0f);
  CHECK(select_float(true, -0.0f, 1.0f) == 0.0f);
  CHECK(std::signbit(select_float(true, -0.0f, 1.0f)));
  CHECK(select_float(false, -0.0f, 1.5f) == 1.5f);
}

TEST_CASE("fast_erf is within 4e-7 of erf everywhere and odd", "[ops]") {
  double worst = 0;
  for (double x = -9; x <= 9; x += 1.3e-4) {
    const float xf = static_cast<float>(x);
    worst = std::max(worst, std::fabs(fast_erf(xf) - std::erf(static_cast<double>(xf))));
    REQUIRE(fast_erf(-xf) == -fast_erf(xf));
  }
  CHECK(worst <= 4e-7);
  CHECK(fast_erf(0.0f) == 0.0f);
  CHECK(fast_erf(100.0f) == Approx(1.0).epsilon(1e-7));
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
