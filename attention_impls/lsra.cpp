// lsra: Long-Short Range Attention (Lite Transformer, Wu et al. 2020), as ../shared/spec/attention.md
// defines it. The channels are split in half without a projection, x = [xa | xc] (each D/2 wide):
//   ya = full attention on xa with its own Q/K/V/O (width D/2, max(h/2, 1) heads)
//   yc = dynamic convolution on xc: u = GLU(xc W1^T + b1) (padded rows of xc and of u zeroed),
//        alpha_t = softmax over K of u_t Ww^T per conv head (Hc heads of K logits),
//        o_t[c] = sum_k alpha_t[head(c), k] u_{t + k - K/2}[c] (0 outside [0, n)), yc = o W2^T + b2
//   y = [ya | yc]
// Causal (Lite Transformer's decoder): causal full attention, and taps u_{t-K+1} .. u_t (left-padded).
// Parameter names (the .npy interop): a_wq a_bq a_wk a_bk a_wv a_bv a_wo a_bo, c_w1 c_b1 c_ww c_w2 c_b2.
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"
#include "nn/errors.hpp"
#include "nn/ops.hpp"
#include "nn/random.hpp"

namespace lsb {
namespace {

class LsraAttention final : public Attention {
 public:
  LsraAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads, std::int64_t K,
                std::int64_t Hc, bool causal)
      : Attention("lsra", std::move(resolved), dim, heads, Device::cpu, causal), half_(dim / 2),
        ha_(std::max<std::int64_t>(heads / 2, 1)), K_(K), Hc_(Hc), shift_(causal ? K - 1 : K / 2) {
    for (const char* p : {"q", "k", "v", "o"}) {
      add_param(fmt::format("a_w{}", p), {half_, half_});
      add_param(fmt::format("a_b{}", p), {half_});
    }
    add_param("c_w1", {dim, half_});
    add_param("c_b1", {dim});
    add_param("c_ww", {Hc * K, half_});
    add_param("c_w2", {half_, half_});
    add_param("c_b2", {half_});
  }

  // As torch.nn.Linear: every weight and its bias U(-1/sqrt(in), 1/sqrt(in)), `in` the weight's width.
  void init_params(std::uint64_t seed) override {
    Rng rng(seed);
    for (auto& p : params_) {
      const std::int64_t fan_in = p.value.rank() == 2 ? p.value.dim(1) : half_;  // every layer's input is D/2 wide
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
      for (std::int64_t i = 0; i < p.value.numel(); ++i) p.value[i] = static_cast<float>(rng.uniform(-bound, bound));
    }
  }

  const Tensor* saved_probabilities() const override { return &P_; }
  // On the attention branch's probabilities (key = position, as full).

  void forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n, float* y,
               bool /*keep_for_backward*/) override {
    b_ = b, n_ = n;
    const std::int64_t rows = b * n, H = half_, D = dim_, G = Hc_ * K_;
    for (Tensor* t : {&xa_, &xc_, &Q_, &Kt_, &V_, &C_, &U_, &O_})
      ensure(*t, {rows, H}, MemCategory::activations, "lsra (rows, D/2) activation");
    ensure(H1_, {rows, D}, MemCategory::activations, "lsra GLU input (rows, D)");
    ensure(Alpha_, {rows, G}, MemCategory::activations, "lsra conv kernels (rows, Hc*K)");
    ensure(P_, {b, ha_, n, n}, MemCategory::activations, "lsra attention probabilities (b, h/2, n, n)");
    ensure(out_, {rows, H}, MemCategory::workspace, "lsra branch output (rows, D/2)");
    keys_.resize(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) {
      keys_[static_cast<std::size_t>(r)] = mask ? mask[r] != 0 : 1;
      std::memcpy(xa_.data() + r * H, x + r * D, sizeof(float) * H);
      if (keys_[static_cast<std::size_t>(r)])
        std::memcpy(xc_.data() + r * H, x + r * D + H, sizeof(float) * H);
      else
        std::memset(xc_.data() + r * H, 0, sizeof(float) * H);
    }
    // Attention branch: full attention of width D/2.
    linear_forward(xa_.data(), rows, H, value_of("a_wq"), value_of("a_bq"), H, Q_.data());
    linear_forward(xa_.data(), rows, H, value_of("a_wk"), value_of("a_bk"), H, Kt_.data());
    linear_forward(xa_.data(), rows, H, value_of("a_wv"), value_of("a_bv"), H, V_.data());
    const float scale = 1.0f / std::sqrt(static_cast<float>(H / ha_));
    for (std::int64_t i = 0; i < rows * H; ++i) Q_[i] *= scale;
    if (drop_.active()) ensure(dP_, P_.shape(), MemCategory::workspace, "lsra attention dP (b, h/2, n, n)");
    dense_attention_forward(view(Q_), view(Kt_), view(V_), keys_.data(), P_.data(), view(C_), drop_, dP_.data(),
                            causal_);
    zero_padded(C_);
    linear_forward(C_.data(), rows, H, value_of("a_wo"), value_of("a_bo"), H, out_.data());
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(y + r * D, out_.data() + r * H, sizeof(float) * H);
    // Convolution branch.
    linear_forward(xc_.data(), rows, H, value_of("c_w1"), value_of("c_b1"), D, H1_.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < H; ++c)
        U_[r * H + c] = keys_[static_cast<std::size_t>(r)] ? H1_[r * D + c] * sigmoid(H1_[r * D + H + c]) : 0.0f;
    linear_forward(U_.data(), rows, H, value_of("c_ww"), nullptr, G, Alpha_.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows * Hc_; ++r) {  // softmax over K per (row, conv head)
      float* z = Alpha_.data() + r * K_;
      float mx = z[0];
      for (std::int64_t k = 1; k < K_; ++k) mx = std::max(mx, z[k]);
      float sum = 0;
      for (std::int64_t k = 0; k < K_; ++k) sum += (z[k] = std::exp(z[k] - mx));
      for (std::int64_t k = 0; k < K_; ++k) z[k] /= sum;
    }
    const std::int64_t width = H / Hc_, half_k = shift_;
#pragma omp parallel for collapse(2) schedule(static)
    for (std::int64_t bi = 0; bi < b; ++bi)
      for (std::int64_t t = 0; t < n; ++t) {
        float* o = O_.data() + (bi * n + t) * H;
        const float* alpha = Alpha_.data() + (bi * n + t) * G;
        for (std::int64_t c = 0; c < H; ++c) o[c] = 0;
        for (std::int64_t k = 0; k < K_; ++k) {
          const std::int64_t s = t + k - half_k;
          if (s < 0 || s >= n) continue;
          const float* u = U_.data() + (bi * n + s) * H;
          for (std::int64_t c = 0; c < H; ++c) o[c] += alpha[(c / width) * K_ + k] * u[c];
        }
      }
    linear_forward(O_.data(), rows, H, value_of("c_w2"), value_of("c_b2"), H, out_.data());
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(y + r * D + H, out_.data() + r * H, sizeof(float) * H);
  }

  void backward(const float* dy, float* dx) override {
    const std::int64_t b = b_, n = n_, rows = b * n, H = half_, D = dim_, G = Hc_ * K_;
    for (Tensor* t : {&dQ_, &dK_, &dV_, &dC_, &dO_, &dU_, &dxh_})
      ensure(*t, {rows, H}, MemCategory::workspace, "lsra (rows, D/2) gradient");
    ensure(dH1_, {rows, D}, MemCategory::workspace, "lsra GLU input gradient (rows, D)");
    ensure(dAlpha_, {rows, G}, MemCategory::workspace, "lsra conv kernel gradient (rows, Hc*K)");
    ensure(dP_, P_.shape(), MemCategory::workspace, "lsra attention dP (b, h/2, n, n)");
    // Attention branch (out_ holds the branch's dy, contiguous).
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(out_.data() + r * H, dy + r * D, sizeof(float) * H);
    linear_backward(out_.data(), C_.data(), rows, H, value_of("a_wo"), H, grad_of("a_wo"), grad_of("a_bo"), dC_.data(), false);
    zero_padded(dC_);
    dense_attention_backward(view(Q_), view(Kt_), view(V_), P_.data(), view(dC_), dP_.data(), view(dQ_), view(dK_),
                             view(dV_), drop_);
    const float scale = 1.0f / std::sqrt(static_cast<float>(H / ha_));
    for (std::int64_t i = 0; i < rows * H; ++i) dQ_[i] *= scale;
    linear_backward(dQ_.data(), xa_.data(), rows, H, value_of("a_wq"), H, grad_of("a_wq"), grad_of("a_bq"), dxh_.data(), false);
    linear_backward(dK_.data(), xa_.data(), rows, H, value_of("a_wk"), H, grad_of("a_wk"), grad_of("a_bk"), dxh_.data(), true);
    linear_backward(dV_.data(), xa_.data(), rows, H, value_of("a_wv"), H, grad_of("a_wv"), grad_of("a_bv"), dxh_.data(), true);
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(dx + r * D, dxh_.data() + r * H, sizeof(float) * H);
    // Convolution branch, backwards.
    for (std::int64_t r = 0; r < rows; ++r) std::memcpy(out_.data() + r * H, dy + r * D + H, sizeof(float) * H);
    linear_backward(out_.data(), O_.data(), rows, H, value_of("c_w2"), H, grad_of("c_w2"), grad_of("c_b2"), dO_.data(), false);
    // o_t[c] = sum_k alpha_t[head(c), k] u_{t+k-K/2}[c]: d alpha and d u (one example per thread).
    const std::int64_t width = H / Hc_, half_k = shift_;
#pragma omp parallel for schedule(static)
    for (std::int64_t bi = 0; bi < b; ++bi) {
      std::memset(dU_.data() + bi * n * H, 0, sizeof(float) * n * H);
      for (std::int64_t t = 0; t < n; ++t) {
        const float* dO = dO_.data() + (bi * n + t) * H;
        const float* alpha = Alpha_.data() + (bi * n + t) * G;
        float* dalpha = dAlpha_.data() + (bi * n + t) * G;
        for (std::int64_t j = 0; j < G; ++j) dalpha[j] = 0;
        for (std::int64_t k = 0; k < K_; ++k) {
          const std::int64_t s = t + k - half_k;
          if (s < 0 || s >= n) continue;
          const float* u = U_.data() + (bi * n + s) * H;
          float* du = dU_.data() + (bi * n + s) * H;
          for (std::int64_t c = 0; c < H; ++c) {
            dalpha[(c / width) * K_ + k] += dO[c] * u[c];
            du[c] += dO[c] * alpha[(c / width) * K_ + k];
          }
        }
        for (std::int64_t h = 0; h < Hc_; ++h) {  // softmax backward over K, in place: dz
          const float* a = alpha + h * K_;
          float* da = dalpha + h * K_;
          float dot = 0;
          for (std::int64_t k = 0; k < K_; ++k) dot += a[k] * da[k];
          for (std::int64_t k = 0; k < K_; ++k) da[k] = a[k] * (da[k] - dot);
        }
      }
    }
    // z = u Ww^T: dWw += dz^T u, du += dz Ww; u was zeroed at padded rows, so no gradient flows there.
    linear_backward(dAlpha_.data(), U_.data(), rows, H, value_of("c_ww"), G, grad_of("c_ww"), nullptr, dU_.data(), true);
    // u = a * sigmoid(g') with [a | g'] = xc W1^T + b1.
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < H; ++c) {
        const float du = keys_[static_cast<std::size_t>(r)] ? dU_[r * H + c] : 0.0f;
        const float a = H1_[r * D + c], sg = sigmoid(H1_[r * D + H + c]);
        dH1_[r * D + c] = du * sg;
        dH1_[r * D + H + c] = du * a * sg * (1.0f - sg);
      }
    linear_backward(dH1_.data(), xc_.data(), rows, H, value_of("c_w1"), D, grad_of("c_w1"), grad_of("c_b1"), dxh_.data(), false);
    for (std::int64_t r = 0; r < rows; ++r)
      if (keys_[static_cast<std::size_t>(r)])
        std::memcpy(dx + r * D + H, dxh_.data() + r * H, sizeof(float) * H);
      else
        std::memset(dx + r * D + H, 0, sizeof(float) * H);
  }

  double forward_flops(std::int64_t b, std::int64_t n) const override {
    const double H = static_cast<double>(half_);
    const double attention = causal_ ? 2.0 * b * n * (n + 1) * H : 4.0 * b * n * n * H;  // the full formula
    return attention + 2.0 * b * n * H * dim_ + 2.0 * b * n * H * (Hc_ * K_) + 2.0 * b * n * H * K_ +
           2.0 * b * n * H * H + 8.0 * b * n * H * H;
  }

  std::int64_t analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t rows = b * n, H = half_, G = Hc_ * K_;
    // xa, xc, Q, K, V, C, u, o, the branch output (rows, D/2); the GLU input (rows, D); kernels; P.
    std::int64_t floats = 9 * rows * H + rows * dim_ + rows * G + b * ha_ * n * n;
    if (with_backward) floats += 7 * rows * H + rows * dim_ + rows * G + b * ha_ * n * n;
    return floats * static_cast<std::int64_t>(sizeof(float));
  }

 private:
  static float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
  MatRef view(const Tensor& t) const { return head_view(t.data(), b_, n_, ha_, half_ / ha_); }
  void zero_padded(Tensor& t) const {
    for (std::int64_t r = 0; r < b_ * n_; ++r)
      if (!keys_[static_cast<std::size_t>(r)]) std::memset(t.data() + r * half_, 0, sizeof(float) * half_);
  }

  std::int64_t half_, ha_, K_, Hc_;
  std::int64_t shift_;  // tap k reads position t + k - shift_: K/2 (centred), or K-1 causal
  std::int64_t b_ = 0, n_ = 0;
  std::vector<std::uint8_t> keys_;  // the mask as bytes (1 = real; b*n bytes, outside the tracked plan)
  Tensor xa_, xc_, Q_, Kt_, V_, C_, P_, H1_, U_, Alpha_, O_, out_;
  Tensor dQ_, dK_, dV_, dC_, dP_, dO_, dU_, dAlpha_, dH1_, dxh_;
};

}  // namespace

namespace {

// float64 reference: full attention on the first D/2 channels (its own projections a_*, max(h/2, 1)
// heads), dynamic convolution on the other D/2 (../shared/spec/attention.md), written out on its own.
std::vector<double> reference_lsra(const ref::Keys& keys, std::int64_t D, std::int64_t h, std::int64_t b,
                                   std::int64_t n, const RefParams& P, const std::vector<double>& x,
                                   const std::vector<std::uint8_t>& mask, const ProbDropout& drop, bool causal) {
  using ref::Mat;
  const std::int64_t H = D / 2, ha = std::max<std::int64_t>(h / 2, 1);
  const std::int64_t K = ref::key_int(keys, "K"), Hc = ref::key_int(keys, "Hc");
  RefParams Pa;
  for (const char* p : {"wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"}) Pa[p] = P.at(std::string("a_") + p);
  std::vector<double> xa(b * n * H), xc(b * n * H);
  for (std::int64_t r = 0; r < b * n; ++r)
    for (std::int64_t c = 0; c < H; ++c) {
      xa[r * H + c] = x[r * D + c];
      xc[r * H + c] = mask[r] ? x[r * D + H + c] : 0.0;
    }
  const std::vector<double> ya = ref::projected([](const ref::CoreInput& in, Mat& C) { ref::band_core(in, C, in.n); },
                                                {}, H, ha, b, n, Pa, xa, mask, drop, causal);
  const Mat h1 = ref::linear(xc, b * n, H, P.at("c_w1"), P.at("c_b1"), D);
  Mat u(b * n * H);
  for (std::int64_t r = 0; r < b * n; ++r)
    for (std::int64_t c = 0; c < H; ++c)
      u[r * H + c] = mask[r] ? h1[r * D + c] / (1.0 + std::exp(-h1[r * D + H + c])) : 0.0;
  const Mat z = ref::linear(u, b * n, H, P.at("c_ww"), Mat(Hc * K, 0.0), Hc * K);
  Mat o(b * n * H, 0.0);
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t g = 0; g < Hc; ++g) {
        std::vector<double> logits(z.begin() + (bi * n + t) * Hc * K + g * K, z.begin() + (bi * n + t) * Hc * K + (g + 1) * K);
        const auto alpha = ref::softmax(logits, std::vector<bool>(K, true));
        for (std::int64_t k = 0; k < K; ++k) {
          const std::int64_t s = t + k - (causal ? K - 1 : K / 2);
          if (s < 0 || s >= n) continue;
          for (std::int64_t c = g * (H / Hc); c < (g + 1) * (H / Hc); ++c)
            o[(bi * n + t) * H + c] += alpha[k] * u[(bi * n + s) * H + c];
        }
      }
  const Mat yc = ref::linear(o, b * n, H, P.at("c_w2"), P.at("c_b2"), H);
  std::vector<double> y(b * n * D);
  for (std::int64_t r = 0; r < b * n; ++r)
    for (std::int64_t c = 0; c < H; ++c) {
      y[r * D + c] = ya[r * H + c];
      y[r * D + H + c] = yc[r * H + c];
    }
  return y;
}

// Lite Transformer's kernel-size schedule: encoder layer l uses entry l unless the spec gives K.
VariantSpec lsra_layer_spec(const VariantSpec& spec, std::int64_t layer) {
  static constexpr std::int64_t kSchedule[] = {3, 7, 15, 31, 31, 31};
  VariantSpec s = spec;
  if (!s.params.count("K")) s.params["K"] = std::to_string(kSchedule[std::min<std::int64_t>(layer, 5)]);
  return s;
}

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_lsra(std::unique_ptr<Attention> twin);  // attention_impls/cuda/lsra.cu
#endif

LSB_VARIANT(lsra) {
  VariantInfo v;
  v.name = "lsra";
  v.summary =
      "Lite Transformer's long-short range attention: full attention on half the channels, dynamic convolution on "
      "the other half";
  v.keys = {{"K", "3", "in the encoder: 3, 7, 15, 31, 31, 31 by layer"}, {"Hc", "4"}};
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    const auto K = keys.get_int("K", 1), Hc = keys.get_int("Hc", 1);
    const std::int64_t half = dim / 2, ha = std::max<std::int64_t>(heads / 2, 1);
    if (dim % 2 != 0 || half % ha != 0 || half % Hc != 0)
      throw UsageError(fmt::format("{}: D = {} must be even with D/2 = {} divisible by the attention heads max(h/2, 1) "
                                   "= {} and by Hc = {}",
                                   keys.spec_text(), dim, half, ha, Hc));
    return std::make_unique<LsraAttention>(keys.resolved(), dim, heads, K, Hc, keys.causal());
  };
  v.causal = v.causal_cuda = true;
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_lsra);
  v.reference_module = reference_lsra;
  v.prob_dropout = true;
  v.layer_spec = lsra_layer_spec;
  return v;
}

}  // namespace lsb
