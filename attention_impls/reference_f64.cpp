#include "attention_impls/reference_f64.hpp"

#include "attention_impls/random_features.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace lsb {
namespace {

using Mat = std::vector<double>;  // row-major

// y (rows, out) = x (rows, in) W^T + b, W (out, in)
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

// Softmax over the listed scores; entries with valid = false get 0. All invalid: all 0.
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

std::int64_t key_int(const std::map<std::string, std::string>& keys, const char* k) { return std::stoll(keys.at(k)); }

}  // namespace

RefParams params_f64(Attention& a) {
  RefParams out;
  for (auto& p : a.params()) out[p.name] = Mat(p.value.data(), p.value.data() + p.value.numel());
  return out;
}

namespace {

// lsra: full attention on the first D/2 channels (its own projections, max(h/2, 1) heads), dynamic
// convolution on the other D/2 (../shared/spec/attention.md), written out on its own.
std::vector<double> reference_lsra(const std::map<std::string, std::string>& keys, std::int64_t D, std::int64_t h,
                                   std::int64_t b, std::int64_t n, const RefParams& P, const std::vector<double>& x,
                                   const std::vector<std::uint8_t>& mask, const ProbDropout& drop) {
  const std::int64_t H = D / 2, ha = std::max<std::int64_t>(h / 2, 1), K = key_int(keys, "K"), Hc = key_int(keys, "Hc");
  // The attention half is `full` on width D/2 with the a_ parameters.
  RefParams Pa;
  for (const char* p : {"wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"}) Pa[p] = P.at(std::string("a_") + p);
  std::vector<double> xa(b * n * H), xc(b * n * H);
  for (std::int64_t r = 0; r < b * n; ++r)
    for (std::int64_t c = 0; c < H; ++c) {
      xa[r * H + c] = x[r * D + c];
      xc[r * H + c] = mask[r] ? x[r * D + H + c] : 0.0;
    }
  const std::vector<double> ya = reference_attention("full", {}, H, ha, b, n, Pa, xa, mask, drop);
  const Mat h1 = linear(xc, b * n, H, P.at("c_w1"), P.at("c_b1"), D);
  Mat u(b * n * H);
  for (std::int64_t r = 0; r < b * n; ++r)
    for (std::int64_t c = 0; c < H; ++c)
      u[r * H + c] = mask[r] ? h1[r * D + c] / (1.0 + std::exp(-h1[r * D + H + c])) : 0.0;
  const Mat z = linear(u, b * n, H, P.at("c_ww"), Mat(Hc * K, 0.0), Hc * K);
  Mat o(b * n * H, 0.0);
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t g = 0; g < Hc; ++g) {
        std::vector<double> logits(z.begin() + (bi * n + t) * Hc * K + g * K, z.begin() + (bi * n + t) * Hc * K + (g + 1) * K);
        const auto alpha = softmax(logits, std::vector<bool>(K, true));
        for (std::int64_t k = 0; k < K; ++k) {
          const std::int64_t s = t + k - K / 2;
          if (s < 0 || s >= n) continue;
          for (std::int64_t c = g * (H / Hc); c < (g + 1) * (H / Hc); ++c)
            o[(bi * n + t) * H + c] += alpha[k] * u[(bi * n + s) * H + c];
        }
      }
  const Mat yc = linear(o, b * n, H, P.at("c_w2"), P.at("c_b2"), H);
  std::vector<double> y(b * n * D);
  for (std::int64_t r = 0; r < b * n; ++r)
    for (std::int64_t c = 0; c < H; ++c) {
      y[r * D + c] = ya[r * H + c];
      y[r * D + H + c] = yc[r * H + c];
    }
  return y;
}

}  // namespace

std::vector<double> reference_attention(const std::string& name, const std::map<std::string, std::string>& keys,
                                        std::int64_t D, std::int64_t h, std::int64_t b, std::int64_t n,
                                        const RefParams& P, const std::vector<double>& x,
                                        const std::vector<std::uint8_t>& mask, const ProbDropout& drop) {
  if (name == "lsra") return reference_lsra(keys, D, h, b, n, P, x, mask, drop);
  if (drop.active() && (name == "performer" || name == "nystromformer"))
    throw std::invalid_argument(name + " has no attention dropout");
  const std::int64_t d = D / h;
  std::vector<double> y(b * n * D);
  for (std::int64_t bi = 0; bi < b; ++bi) {
    const Mat X(x.begin() + bi * n * D, x.begin() + (bi + 1) * n * D);
    const std::uint8_t* m = mask.data() + bi * n;
    Mat Q = linear(X, n, D, P.at("wq"), P.at("bq"), D);
    for (auto& v : Q) v /= std::sqrt(static_cast<double>(d));
    Mat K = linear(X, n, D, P.at("wk"), P.at("bk"), D);
    Mat V = linear(X, n, D, P.at("wv"), P.at("bv"), D);
    Mat C(n * D, 0.0);
    // Query t of head i attends to the nk rows of Kr, Vr (valid ones only); with dropout, probability u is
    // multiplied by the factor of key key_id(u) in a key space of `space` keys (prob_dropout.hpp).
    auto attend = [&](std::int64_t i, std::int64_t t, const Mat& Kr, const Mat& Vr, std::int64_t nk,
                      const std::vector<bool>& valid, std::int64_t space, auto key_id) {
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
    };
    if (name == "full" || name == "flash" || name == "sliding") {
      const std::int64_t R = name == "sliding" ? key_int(keys, "R") : n;
      for (std::int64_t i = 0; i < h; ++i)
        for (std::int64_t t = 0; t < n; ++t) {
          std::vector<bool> valid(n);
          for (std::int64_t u = 0; u < n; ++u) valid[u] = m[u] && std::llabs(t - u) <= R;
          attend(i, t, K, V, n, valid, n, [](std::int64_t u) { return u; });
        }
    } else if (name == "linformer") {
      const std::int64_t k = key_int(keys, "k"), n_max = key_int(keys, "n_max");
      const Mat& E = P.at("e");
      const Mat& F = keys.at("share") == "separate" ? P.at("f") : E;
      Mat Kp(k * D, 0.0), Vp(k * D, 0.0);
      for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t t = 0; t < n; ++t)
          if (m[t])
            for (std::int64_t c = 0; c < D; ++c) {
              Kp[j * D + c] += E[j * n_max + t] * K[t * D + c];
              Vp[j * D + c] += F[j * n_max + t] * V[t * D + c];
            }
      for (std::int64_t i = 0; i < h; ++i)
        for (std::int64_t t = 0; t < n; ++t)
          attend(i, t, Kp, Vp, k, std::vector<bool>(k, true), k, [](std::int64_t j) { return j; });
    } else if (name == "ls") {
      const std::int64_t w = key_int(keys, "w"), r = key_int(keys, "r");
      const Mat Kt = layernorm(K, n, D, P.at("ln_l_weight"), P.at("ln_l_bias"));
      const Mat Vt = layernorm(V, n, D, P.at("ln_l_weight"), P.at("ln_l_bias"));
      Mat Khat, Vhat;
      if (r > 0) {
        const Mat S = linear(X, n, D, P.at("wp"), P.at("bp"), h * r);
        Mat Kbar(r * D, 0.0), Vbar(r * D, 0.0);
        for (std::int64_t i = 0; i < h; ++i)
          for (std::int64_t j = 0; j < r; ++j) {
            std::vector<double> col(n);
            std::vector<bool> valid(n);
            for (std::int64_t t = 0; t < n; ++t) {
              col[t] = S[t * h * r + i * r + j];
              valid[t] = m[t] != 0;
            }
            const auto pr = softmax(col, valid);  // over the sequence axis
            for (std::int64_t t = 0; t < n; ++t)
              for (std::int64_t c = 0; c < d; ++c) {
                Kbar[j * D + i * d + c] += pr[t] * Kt[t * D + i * d + c];
                Vbar[j * D + i * d + c] += pr[t] * Vt[t * D + i * d + c];
              }
          }
        Khat = layernorm(Kbar, r, D, P.at("ln_g_weight"), P.at("ln_g_bias"));
        Vhat = layernorm(Vbar, r, D, P.at("ln_g_weight"), P.at("ln_g_bias"));
      }
      const std::int64_t e = std::max<std::int64_t>(w / 2, 1);
      for (std::int64_t i = 0; i < h; ++i)
        for (std::int64_t t = 0; t < n; ++t) {
          // Joint key list: r landmarks (always valid), then the segment window [s*w - e, (s+1)*w + e).
          Mat Kr = Khat, Vr = Vhat;
          Kr.resize(r * D);
          Vr.resize(r * D);
          std::vector<bool> valid(r, true);
          if (w > 0) {
            const std::int64_t s = t / w;
            for (std::int64_t u = s * w - e; u < (s + 1) * w + e; ++u) {
              const bool ok = u >= 0 && u < n && m[u];
              valid.push_back(ok);
              for (std::int64_t c = 0; c < D; ++c) {
                Kr.push_back(ok ? Kt[u * D + c] : 0.0);
                Vr.push_back(ok ? Vt[u * D + c] : 0.0);
              }
            }
          }
          // Landmark j is key j; window entry o (position s*w - e + o) is key r + position.
          const std::int64_t first = w > 0 ? (t / w) * w - e : 0;
          attend(i, t, Kr, Vr, static_cast<std::int64_t>(valid.size()), valid, r + n,
                 [&](std::int64_t u) { return u < r ? u : r + first + (u - r); });
        }
    } else if (name == "performer") {
      // phi(u)_j = exp(w_j . u - |u|^2 / 2) / sqrt(nf); queries u = q d^(1/4) (Q is q / sqrt(d) here), keys
      // u = k d^(-1/4); C_t = sum_u phi(q_t).phi(k_u) v_u / sum_u phi(q_t).phi(k_u) over real keys.
      const std::int64_t nf = key_int(keys, "features");
      const std::vector<double> w = performer_features(d, nf, static_cast<std::uint64_t>(key_int(keys, "seed")));
      auto phi = [&](const Mat& X, std::int64_t t, std::int64_t i, double s) {
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
      for (std::int64_t i = 0; i < h; ++i) {
        std::vector<std::vector<double>> fk(n);
        for (std::int64_t u = 0; u < n; ++u) fk[u] = phi(K, u, i, 1 / s);
        for (std::int64_t t = 0; t < n; ++t) {
          const auto fq = phi(Q, t, i, s);
          double den = 0;
          std::vector<double> num(d, 0.0);
          for (std::int64_t u = 0; u < n; ++u) {
            if (!m[u]) continue;
            double kernel = 0;
            for (std::int64_t j = 0; j < nf; ++j) kernel += fq[j] * fk[u][j];
            den += kernel;
            for (std::int64_t c = 0; c < d; ++c) num[c] += kernel * V[u * D + i * d + c];
          }
          for (std::int64_t c = 0; c < d; ++c) C[t * D + i * d + c] = den > 0 ? num[c] / den : 0.0;
        }
      }
    } else if (name == "nystromformer") {
      // docs/VARIANTS.md: me = min(m, n) landmarks, the means of the real rows of Q and K in segment
      // [j n / me, (j+1) n / me); kernels K1 = softmax(Q Kl^T), K2 = softmax(Ql Kl^T) (rows of empty
      // segments 0), K3 = softmax(Ql K^T), keys masked; Z from `iters` Newton-Schulz steps on K2;
      // C = K1 Z K3 V, plus the depthwise convolution of the masked V when conv = K > 0.
      const std::int64_t me = std::min(key_int(keys, "m"), n), iters = key_int(keys, "iters");
      const std::int64_t cK = key_int(keys, "conv");
      auto mul = [](const Mat& a, const Mat& b, std::int64_t r, std::int64_t k, std::int64_t c) {
        Mat out(r * c, 0.0);
        for (std::int64_t i = 0; i < r; ++i)
          for (std::int64_t l = 0; l < k; ++l)
            for (std::int64_t j = 0; j < c; ++j) out[i * c + j] += a[i * k + l] * b[l * c + j];
        return out;
      };
      for (std::int64_t i = 0; i < h; ++i) {
        Mat q(n * d), k(n * d), v(n * d), ql(me * d, 0.0), kl(me * d, 0.0);
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t c = 0; c < d; ++c) {
            q[t * d + c] = Q[t * D + i * d + c];
            k[t * d + c] = K[t * D + i * d + c];
            v[t * d + c] = V[t * D + i * d + c];
          }
        std::vector<bool> real_landmark(me), real_key(n);
        for (std::int64_t t = 0; t < n; ++t) real_key[t] = m[t] != 0;
        for (std::int64_t j = 0; j < me; ++j) {
          double count = 0;
          for (std::int64_t t = j * n / me; t < (j + 1) * n / me; ++t)
            if (m[t]) {
              count += 1;
              for (std::int64_t c = 0; c < d; ++c) {
                ql[j * d + c] += q[t * d + c];
                kl[j * d + c] += k[t * d + c];
              }
            }
          real_landmark[j] = count > 0;
          for (std::int64_t c = 0; c < d; ++c) {
            ql[j * d + c] = count > 0 ? ql[j * d + c] / count : 0.0;
            kl[j * d + c] = count > 0 ? kl[j * d + c] / count : 0.0;
          }
        }
        // Row t of softmax(a b^T) over the valid rows of b.
        auto kernel = [&](const Mat& a, std::int64_t ra, const Mat& b, std::int64_t rb, const std::vector<bool>& valid) {
          Mat out(ra * rb);
          for (std::int64_t t = 0; t < ra; ++t) {
            std::vector<double> s(rb);
            for (std::int64_t u = 0; u < rb; ++u)
              for (std::int64_t c = 0; c < d; ++c) s[u] += a[t * d + c] * b[u * d + c];
            const auto p = softmax(s, valid);
            std::copy(p.begin(), p.end(), out.begin() + t * rb);
          }
          return out;
        };
        const Mat k1 = kernel(q, n, kl, me, real_landmark);
        Mat k2 = kernel(ql, me, kl, me, real_landmark);
        for (std::int64_t j = 0; j < me; ++j)
          if (!real_landmark[j]) std::fill(k2.begin() + j * me, k2.begin() + (j + 1) * me, 0.0);
        const Mat k3 = kernel(ql, me, k, n, real_key);
        double colmax = 0;
        for (std::int64_t l = 0; l < me; ++l) {
          double s = 0;
          for (std::int64_t j = 0; j < me; ++j) s += k2[j * me + l];
          colmax = std::max(colmax, s);
        }
        Mat z(me * me);
        for (std::int64_t j = 0; j < me; ++j)
          for (std::int64_t l = 0; l < me; ++l) z[j * me + l] = colmax > 0 ? k2[l * me + j] / colmax : 0.0;
        auto shifted_identity = [&](double s, const Mat& a) {
          Mat out(me * me);
          for (std::int64_t j = 0; j < me * me; ++j) out[j] = (j / me == j % me ? s : 0.0) - a[j];
          return out;
        };
        for (std::int64_t it = 0; it < iters; ++it) {
          const Mat t = mul(k2, z, me, me, me);
          const Mat inner = shifted_identity(15.0, mul(t, shifted_identity(7.0, t), me, me, me));
          Mat next = mul(z, shifted_identity(13.0, mul(t, inner, me, me, me)), me, me, me);
          for (auto& e : next) e *= 0.25;
          z = next;
        }
        const Mat ctx = mul(k1, mul(z, mul(k3, v, me, n, d), me, me, d), n, me, d);
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t c = 0; c < d; ++c) {
            double conv = 0;
            for (std::int64_t j = 0; j < cK; ++j) {
              const std::int64_t s = t + j - cK / 2;
              if (s >= 0 && s < n && m[s]) conv += P.at("conv_w")[i * cK + j] * v[s * d + c];
            }
            C[t * D + i * d + c] = ctx[t * d + c] + conv;
          }
      }
    } else {
      throw std::invalid_argument("reference_attention: no reference for variant " + name);
    }
    for (std::int64_t t = 0; t < n; ++t)
      if (!m[t]) std::fill(C.begin() + t * D, C.begin() + (t + 1) * D, 0.0);
    const Mat Y = linear(C, n, D, P.at("wo"), P.at("bo"), D);
    std::copy(Y.begin(), Y.end(), y.begin() + bi * n * D);
  }
  return y;
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
