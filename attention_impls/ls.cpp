// ls: Transformer-LS long-short attention (bidirectional, as in the authors' LRA code).
//   Kt = LN_L(K), Vt = LN_L(V)                       short-term keys/values, (b, n, D)
//   Pp = softmax over t of (x Wp^T + bp), padded -inf  dynamic projection, (b, n, h*r)
//   Khat_i = LN_G(Pp_i^T Kt_i), Vhat_i likewise       landmarks, (b, r, D), LN over all heads
//   C_i = joint softmax over [Q_i Khat_i^T | Q_i Kt_i[window]^T] times [Vhat_i | Vt_i[window]]
// The window of query t is segment-relative: keys [s*w - e, (s+1)*w + e), s = t / w, e = max(w/2, 1).
// r = 0: window only (LN_L kept, no wp/bp/LN_G parameters); w = 0: landmarks only.
// The causal form (--causal: window, chunks of l compressed to r vectors) is ls_causal.cpp.
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "attention_impls/local_core.hpp"
#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"
#include "nn/errors.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

class LongShortAttention final : public ProjectedAttention {
 public:
  LongShortAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads,
                     std::int64_t w, std::int64_t r)
      : ProjectedAttention("ls", std::move(resolved), dim, heads), w_(w), r_(r) {
    if (r > 0) {
      add_param("wp", {heads * r, dim});
      add_param("bp", {heads * r});
    }
    add_param("ln_l_weight", {dim});
    add_param("ln_l_bias", {dim});
    if (r > 0) {
      add_param("ln_g_weight", {dim});
      add_param("ln_g_bias", {dim});
    }
    win_ = ls_window(w, r);
  }
  const Tensor* saved_probabilities() const override { return &P_; }
  std::int64_t padded_length(std::int64_t n) const override { return w_ > 0 ? (n + w_ - 1) / w_ * w_ : n; }

 protected:
  void core_forward(bool) override {
    const std::int64_t D = dim_, rows = b_ * n_, hr = heads_ * r_, d = head_dim();
    ensure(Kt_, {b_, n_, D}, MemCategory::activations, "ls LN_L(K)");
    ensure(Vt_, {b_, n_, D}, MemCategory::activations, "ls LN_L(V)");
    ensure(ln_l_stats_, {4, rows}, MemCategory::activations, "ls LN_L mean/rstd");
    float* st = ln_l_stats_.data();
    layernorm_forward(K_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Kt_.data(), st, st + rows);
    layernorm_forward(V_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Vt_.data(), st + 2 * rows, st + 3 * rows);
    if (r_ > 0) {
      ensure(Pp_, {b_, n_, hr}, MemCategory::activations, "ls projection softmax (b, n, h*r)");
      ensure(land_, {4, b_, r_, D}, MemCategory::activations, "ls landmarks Kbar, Vbar, Khat, Vhat (b, r, D)");
      ensure(ln_g_stats_, {4, b_ * r_}, MemCategory::activations, "ls LN_G mean/rstd");
      linear_forward(x_, rows, D, value_of("wp"), value_of("bp"), hr, Pp_.data());
      column_softmax();
      matmul(proj_view().t(), heads(Kt_.data(), n_), heads(landmark(0), r_));
      matmul(proj_view().t(), heads(Vt_.data(), n_), heads(landmark(1), r_));
      float* gs = ln_g_stats_.data();
      const std::int64_t lr = b_ * r_;
      layernorm_forward(landmark(0), lr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), landmark(2), gs, gs + lr);
      layernorm_forward(landmark(1), lr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), landmark(3), gs + 2 * lr, gs + 3 * lr);
    }
    ensure(P_, {b_, heads_, n_, win_.width()}, MemCategory::activations, "ls probabilities (b, h, n, r + w + 2e)");
    ensure(scratch_, {win_.scratch_floats(max_threads())}, MemCategory::workspace, "ls per-thread tiles");
    local_attention_forward(win_, b_, n_, heads_, d, Q_.data(), Kt_.data(), Vt_.data(), r_ ? landmark(2) : nullptr,
                            r_ ? landmark(3) : nullptr, mask_, P_.data(), C_.data(), scratch_.data(), drop_);
  }

  void core_backward() override {
    const std::int64_t D = dim_, rows = b_ * n_, d = head_dim();
    ensure(dKt_, {b_, n_, D}, MemCategory::workspace, "ls dKt");
    ensure(dVt_, {b_, n_, D}, MemCategory::workspace, "ls dVt");
    if (r_ > 0) {
      ensure(dland_, {4, b_, r_, D}, MemCategory::workspace, "ls landmark gradients");
      ensure(dPp_, Pp_.shape(), MemCategory::workspace, "ls projection gradient (b, n, h*r)");
    }
    local_attention_backward(win_, b_, n_, heads_, d, Q_.data(), Kt_.data(), Vt_.data(), r_ ? landmark(2) : nullptr,
                             r_ ? landmark(3) : nullptr, P_.data(), dC_.data(), dQ_.data(), dKt_.data(), dVt_.data(),
                             r_ ? dlandmark(2) : nullptr, r_ ? dlandmark(3) : nullptr, scratch_.data(), drop_);
    if (r_ > 0) {
      const std::int64_t lr = b_ * r_;
      const float* gs = ln_g_stats_.data();
      layernorm_backward(dlandmark(2), landmark(0), lr, D, value_of("ln_g_weight"), gs, gs + lr, dlandmark(0),
                         grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
      layernorm_backward(dlandmark(3), landmark(1), lr, D, value_of("ln_g_weight"), gs + 2 * lr, gs + 3 * lr, dlandmark(1),
                         grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
      // Kbar_i = Pp_i^T Kt_i: dPp_i = Kt_i dKbar_i^T (+ Vt_i dVbar_i^T); dKt_i += Pp_i dKbar_i.
      const MatRef dPp = proj_view(dPp_.data());
      matmul(heads(Kt_.data(), n_), heads(dlandmark(0), r_).t(), dPp);
      matmul(heads(Vt_.data(), n_), heads(dlandmark(1), r_).t(), dPp, 1.0f, 1.0f);
      matmul(proj_view(), heads(dlandmark(0), r_), heads(dKt_.data(), n_), 1.0f, 1.0f);
      matmul(proj_view(), heads(dlandmark(1), r_), heads(dVt_.data(), n_), 1.0f, 1.0f);
      column_softmax_backward();
      linear_backward(dPp_.data(), x_, rows, D, value_of("wp"), heads_ * r_, grad_of("wp"), grad_of("bp"), nullptr, false);
    }
    const float* st = ln_l_stats_.data();
    layernorm_backward(dKt_.data(), K_.data(), rows, D, value_of("ln_l_weight"), st, st + rows, dK_.data(), grad_of("ln_l_weight"),
                       grad_of("ln_l_bias"), false);
    layernorm_backward(dVt_.data(), V_.data(), rows, D, value_of("ln_l_weight"), st + 2 * rows, st + 3 * rows, dV_.data(),
                       grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
  }

  void add_input_grad(float* dx) override {
    if (r_ > 0) linear_backward(dPp_.data(), x_, b_ * n_, dim_, value_of("wp"), heads_ * r_, nullptr, nullptr, dx, true);
  }

  double core_flops(std::int64_t b, std::int64_t n) const override {
    const double landmarks = r_ > 0 ? 2.0 * b * n * dim_ * heads_ * r_ + 4.0 * b * heads_ * r_ * n * head_dim() : 0.0;
    return landmarks + 4.0 * b * heads_ * n * win_.width() * head_dim();
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t D = dim_, hr = heads_ * r_;
    std::int64_t f = 2 * b * n * D + 4 * b * n + b * heads_ * n * win_.width() + win_.scratch_floats(max_threads());
    if (r_ > 0) f += b * n * hr + 4 * b * r_ * D + 4 * b * r_ + 2 * b * hr;
    if (with_backward) {
      f += 2 * b * n * D;
      if (r_ > 0) f += 4 * b * r_ * D + b * n * hr;
    }
    return f;
  }

 private:
  float* landmark(int i) { return land_.data() + i * b_ * r_ * dim_; }
  float* dlandmark(int i) { return dland_.data() + i * b_ * r_ * dim_; }
  MatRef heads(const float* t, std::int64_t rows) const { return head_view(t, b_, rows, heads_, head_dim()); }
  // The (b, n, h*r) projection as a (b, h) batch of (n x r) matrices (head i: columns i*r ..).
  MatRef proj_view(const float* t = nullptr) const {
    const std::int64_t hr = heads_ * r_;
    return MatRef::rowmajor(t ? t : Pp_.data(), n_, r_, hr).batched(b_, n_ * hr, heads_, r_);
  }

  // Each of the h*r columns of Pp becomes a distribution over the real positions of its example.
  // Row sweeps, vectorised across the columns, with per-example column statistics (b, 2, h*r):
  // walking each column down the sequence would touch one cache line per element.
  void column_softmax() {
    const std::int64_t hr = heads_ * r_, n = n_;
    ensure(col_stats_, {b_, 2, hr}, MemCategory::workspace, "ls column max/sum (b, 2, h*r)");
    const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for schedule(static)
    for (std::int64_t bi = 0; bi < b_; ++bi) {
      float* P = Pp_.data() + bi * n * hr;
      float* mx = col_stats_.data() + bi * 2 * hr;
      float* sum = mx + hr;
      const std::uint8_t* m = mask_ + bi * n;
      std::fill(mx, mx + hr, neg_inf);
      std::fill(sum, sum + hr, 0.0f);
      for (std::int64_t t = 0; t < n; ++t)
        if (m[t]) {
#pragma omp simd
          for (std::int64_t c = 0; c < hr; ++c) mx[c] = std::max(mx[c], P[t * hr + c]);
        }
      for (std::int64_t t = 0; t < n; ++t) {
        float* row = P + t * hr;
        if (!m[t]) {
          std::fill(row, row + hr, 0.0f);
          continue;
        }
#pragma omp simd
        for (std::int64_t c = 0; c < hr; ++c) sum[c] += (row[c] = fast_exp(row[c] - mx[c]));
      }
      for (std::int64_t c = 0; c < hr; ++c) sum[c] = sum[c] > 0 ? 1.0f / sum[c] : 0.0f;  // no real token: 0
      for (std::int64_t t = 0; t < n; ++t) {
#pragma omp simd
        for (std::int64_t c = 0; c < hr; ++c) P[t * hr + c] *= sum[c];
      }
    }
  }
  // dS[t, c] = P[t, c] (dP[t, c] - sum_t' P[t', c] dP[t', c]), in place on dPp_.
  void column_softmax_backward() {
    const std::int64_t hr = heads_ * r_, n = n_;
#pragma omp parallel for schedule(static)
    for (std::int64_t bi = 0; bi < b_; ++bi) {
      const float* P = Pp_.data() + bi * n * hr;
      float* G = dPp_.data() + bi * n * hr;
      float* dot = col_stats_.data() + bi * 2 * hr;
      std::fill(dot, dot + hr, 0.0f);
      for (std::int64_t t = 0; t < n; ++t) {
#pragma omp simd
        for (std::int64_t c = 0; c < hr; ++c) dot[c] += P[t * hr + c] * G[t * hr + c];
      }
      for (std::int64_t t = 0; t < n; ++t) {
#pragma omp simd
        for (std::int64_t c = 0; c < hr; ++c) G[t * hr + c] = P[t * hr + c] * (G[t * hr + c] - dot[c]);
      }
    }
  }

  std::int64_t w_, r_;
  LocalWindow win_;
  Tensor Kt_, Vt_, ln_l_stats_, Pp_, land_, ln_g_stats_, P_;
  Tensor dKt_, dVt_, dland_, dPp_, scratch_, col_stats_;
};

}  // namespace

namespace {

// float64 reference (../shared/spec/attention.md): K, V normalised by LN_L; r landmarks, each a softmax
// over the real positions of the dynamic projection of X, normalised by LN_G; query t attends jointly to
// the landmarks and to its segment's window [s*w - e, (s+1)*w + e), e = max(w/2, 1).
void reference_ls(const ref::CoreInput& in, ref::Mat& C) {
  const std::int64_t w = ref::key_int(in.keys, "w"), r = ref::key_int(in.keys, "r");
  const std::int64_t n = in.n, D = in.D, d = in.d, h = in.h;
  const RefParams& P = in.P;
  const ref::Mat Kt = ref::layernorm(in.K, n, D, P.at("ln_l_weight"), P.at("ln_l_bias"));
  const ref::Mat Vt = ref::layernorm(in.V, n, D, P.at("ln_l_weight"), P.at("ln_l_bias"));
  ref::Mat Khat, Vhat;
  if (r > 0) {
    const ref::Mat S = ref::linear(in.X, n, D, P.at("wp"), P.at("bp"), h * r);
    ref::Mat Kbar(r * D, 0.0), Vbar(r * D, 0.0);
    for (std::int64_t i = 0; i < h; ++i)
      for (std::int64_t j = 0; j < r; ++j) {
        std::vector<double> col(n);
        std::vector<bool> valid(n);
        for (std::int64_t t = 0; t < n; ++t) {
          col[t] = S[t * h * r + i * r + j];
          valid[t] = in.m[t] != 0;
        }
        const auto pr = ref::softmax(col, valid);  // over the sequence axis
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t c = 0; c < d; ++c) {
            Kbar[j * D + i * d + c] += pr[t] * Kt[t * D + i * d + c];
            Vbar[j * D + i * d + c] += pr[t] * Vt[t * D + i * d + c];
          }
      }
    Khat = ref::layernorm(Kbar, r, D, P.at("ln_g_weight"), P.at("ln_g_bias"));
    Vhat = ref::layernorm(Vbar, r, D, P.at("ln_g_weight"), P.at("ln_g_bias"));
  }
  const std::int64_t e = std::max<std::int64_t>(w / 2, 1);
  for (std::int64_t i = 0; i < h; ++i)
    for (std::int64_t t = 0; t < n; ++t) {
      // Joint key list: r landmarks (always valid), then the segment window [s*w - e, (s+1)*w + e).
      ref::Mat Kr = Khat, Vr = Vhat;
      Kr.resize(r * D);
      Vr.resize(r * D);
      std::vector<bool> valid(r, true);
      if (w > 0) {
        const std::int64_t s = t / w;
        for (std::int64_t u = s * w - e; u < (s + 1) * w + e; ++u) {
          const bool ok = u >= 0 && u < n && in.m[u];
          valid.push_back(ok);
          for (std::int64_t c = 0; c < D; ++c) {
            Kr.push_back(ok ? Kt[u * D + c] : 0.0);
            Vr.push_back(ok ? Vt[u * D + c] : 0.0);
          }
        }
      }
      // Landmark j is key j; window entry o (position s*w - e + o) is key r + position.
      const std::int64_t first = w > 0 ? (t / w) * w - e : 0;
      in.attend(C, i, t, Kr, Vr, static_cast<std::int64_t>(valid.size()), valid, r + n,
                [&](std::int64_t u) { return u < r ? u : r + first + (u - r); });
    }
}

}  // namespace

// attention_impls/ls_causal.cpp
std::unique_ptr<Attention> make_causal_ls(std::map<std::string, std::string> resolved, std::int64_t dim,
                                          std::int64_t heads, std::int64_t w, std::int64_t l, std::int64_t r);
void reference_causal_ls(const ref::CoreInput& in, ref::Mat& C);

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_ls(std::unique_ptr<Attention> twin);  // attention_impls/cuda/local.cu (causal: cuda/ls_causal.cu)
#endif

LSB_VARIANT(ls) {
  VariantInfo v;
  v.name = "ls";
  v.summary = "Transformer-LS: segment window (w) plus r dynamic-projection landmarks, dual LayerNorm";
  // Causal defaults: the authors' enwik8 runs (w = 512, l = 16, r = 1).
  v.keys = {{"w", "8", "causal: 512", {}, false, "512"},
            {"r", "32", "causal: 1", {}, false, "1"},
            {"l", "16", "causal only: chunk length", {}, true}};
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    const auto w = keys.get_int("w", 0), r = keys.get_int("r", 0);
    if (w == 0 && r == 0)
      throw UsageError(fmt::format("--variant {}: w=0 and r=0 leave nothing to attend to; give w>0 (segment window) "
                                   "or r>0 (landmarks), or both",
                                   keys.spec_text()));
    if (keys.causal()) return make_causal_ls(keys.resolved(), dim, heads, w, keys.get_int("l", 1), r);
    return std::make_unique<LongShortAttention>(keys.resolved(), dim, heads, w, r);
  };
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_ls);
  v.reference_core = [](const ref::CoreInput& in, ref::Mat& C) {
    in.causal ? reference_causal_ls(in, C) : reference_ls(in, C);
  };
  v.causal = v.causal_cuda = true;
  v.prob_dropout = true;
  // AttentionLS of the reference code: W_o for the output, dconv_fc (the dynamic projection),
  // dual_ln_l (K, V), dual_ln_s (landmarks).
  v.torch_names = {{"wo", "W_o.weight"},           {"bo", "W_o.bias"},
                   {"wp", "dconv_fc.weight"},      {"bp", "dconv_fc.bias"},
                   {"ln_l_weight", "dual_ln_l.weight"}, {"ln_l_bias", "dual_ln_l.bias"},
                   {"ln_g_weight", "dual_ln_s.weight"}, {"ln_g_bias", "dual_ln_s.bias"}};
  v.default_spec = "ls:w=8,r=32";
  v.headline = true;
  v.in_default_sweep = true;
  v.in_lra_defaults = true;
  return v;
}

}  // namespace lsb
