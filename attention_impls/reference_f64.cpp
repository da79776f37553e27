#include "attention_impls/reference_f64.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>


namespace lsb {
namespace ref {

Mat linear(const Mat& x, std::int64_t rows, std::int64_t in, const Mat& W, const Mat& b, std::int64_t out) {
  Mat y(rows * out);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (std::int64_t i = 0; i < in; ++i) s += x[r * in + i] * W[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}

Mat layernorm(const Mat& x, std::int64_t rows, std::int64_t D, const Mat& g, const Mat& b) {
  Mat y(rows * D);
  for (std::int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (std::int64_t j = 0; j < D; ++j) mu += x[r * D + j];
    mu /= D;
    for (std::int64_t j = 0; j < D; ++j) var += (x[r * D + j] - mu) * (x[r * D + j] - mu);
    var /= D;
    const double rs = 1.0 / std::sqrt(var + 1e-5);
    for (std::int64_t j = 0; j < D; ++j) y[r * D + j] = (x[r * D + j] - mu) * rs * g[j] + b[j];
  }
  return y;
}

std::vector<double> softmax(const std::vector<double>& s, const std::vector<bool>& valid) {
  double mx = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < s.size(); ++i)
    if (valid[i]) mx = std::max(mx, s[i]);
  std::vector<double> p(s.size(), 0.0);
  if (std::isinf(mx)) return p;
  double sum = 0;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (valid[i]) sum += (p[i] = std::exp(s[i] - mx));
  for (auto& v : p) v /= sum;
  return p;
}

std::int64_t key_int(const Keys& keys, const char* key) { return std::stoll(keys.at(key)); }

void CoreInput::attend(Mat& C, std::int64_t i, std::int64_t t, const Mat& Kr, const Mat& Vr, std::int64_t nk,
                       const std::vector<bool>& valid, std::int64_t space,
                       const std::function<std::int64_t(std::int64_t)>& key_id) const {
  std::vector<double> s(nk);
  for (std::int64_t u = 0; u < nk; ++u) {
    double acc = 0;
    for (std::int64_t c = 0; c < d; ++c) acc += Q[t * D + i * d + c] * Kr[u * D + i * d + c];
    s[u] = acc;
  }
  auto p = softmax(s, valid);
  if (drop.active())
    for (std::int64_t u = 0; u < nk; ++u) p[u] *= drop.factor((bi * h + i) * n + t, space, key_id(u));
  for (std::int64_t u = 0; u < nk; ++u)
    for (std::int64_t c = 0; c < d; ++c) C[t * D + i * d + c] += p[u] * Vr[u * D + i * d + c];
}

void band_core(const CoreInput& in, Mat& C, std::int64_t R) {
  for (std::int64_t i = 0; i < in.h; ++i)
    for (std::int64_t t = 0; t < in.n; ++t) {
      std::vector<bool> valid(in.n);
      for (std::int64_t u = 0; u < in.n; ++u) valid[u] = in.m[u] && std::llabs(t - u) <= R && !(in.causal && u > t);
      in.attend(C, i, t, in.K, in.V, in.n, valid, in.n, [](std::int64_t u) { return u; });
    }
}

std::vector<double> projected(Core core, const Keys& keys, std::int64_t D, std::int64_t h, std::int64_t b,
                              std::int64_t n, const RefParams& P, const std::vector<double>& x,
                              const std::vector<std::uint8_t>& mask, const ProbDropout& drop, bool causal) {
  const std::int64_t d = D / h;
  std::vector<double> y(b * n * D);
  for (std::int64_t bi = 0; bi < b; ++bi) {
    const Mat X(x.begin() + bi * n * D, x.begin() + (bi + 1) * n * D);
    const std::uint8_t* m = mask.data() + bi * n;
    Mat Q = linear(X, n, D, P.at("wq"), P.at("bq"), D);
    for (auto& v : Q) v /= std::sqrt(static_cast<double>(d));
    const Mat K = linear(X, n, D, P.at("wk"), P.at("bk"), D);
    const Mat V = linear(X, n, D, P.at("wv"), P.at("bv"), D);
    Mat C(n * D, 0.0);
    core(CoreInput{keys, P, D, h, d, n, bi, X, Q, K, V, m, drop, causal}, C);
    for (std::int64_t t = 0; t < n; ++t)
      if (!m[t]) std::fill(C.begin() + t * D, C.begin() + (t + 1) * D, 0.0);
    const Mat Y = linear(C, n, D, P.at("wo"), P.at("bo"), D);
    std::copy(Y.begin(), Y.end(), y.begin() + bi * n * D);
  }
  return y;
}

}  // namespace ref

RefParams params_f64(Attention& a) {
  RefParams out;
  for (auto& p : a.params()) out[p.name] = ref::Mat(p.value.data(), p.value.data() + p.value.numel());
  return out;
}

ErrorStats compare_to_reference(const float* got, const std::vector<double>& ref) {
  double ss = 0;
  for (double v : ref) ss += v * v;
  const double scale = std::sqrt(ss / std::max<std::size_t>(ref.size(), 1)) + 1e-30;
  ErrorStats e;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (!(diff == diff)) return {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
    e.max_abs = std::max(e.max_abs, diff);
    e.max_rel = std::max(e.max_rel, diff / (std::fabs(ref[i]) + scale));
  }
  return e;
}

}  // namespace lsb
