// lsra on the GPU: Lite Transformer's long-short range attention as attention_impls/lsra.cpp computes
// it (../shared/spec/attention.md), with the same buffers: the attention half through cuBLAS and the
// dense softmax core, the convolution half (GLU, per-position kernels, dynamic convolution) in element
// kernels. Every output element is written by one thread (the convolution's input gradient is a
// gather), so repeated runs are bit-identical.
#include <algorithm>
#include <cmath>

#include "attention_impls/cuda/projected.cuh"
#include "nn/cuda/check.cuh"
#include "nn/cuda/device.hpp"
#include "nn/cuda/kernels.hpp"
#include "nn/errors.hpp"

namespace lsb {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// xa = x[:, :H]; xc = x[:, H:] with padded rows 0. x (rows, 2H).
__global__ void split_halves_kernel(const float* x, const std::uint8_t* mask, std::int64_t rows, std::int64_t H,
                                    float* xa, float* xc) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  const std::int64_t r = i / H, c = i % H;
  xa[i] = x[r * 2 * H + c];
  xc[i] = mask[r] ? x[r * 2 * H + H + c] : 0.0f;
}

// dst[:, offset : offset + H] = src (rows, H), rows with mask 0 set to 0 when zero_padded.
__global__ void write_half_kernel(const float* src, const std::uint8_t* mask, bool zero_padded, std::int64_t rows,
                                  std::int64_t H, std::int64_t offset, float* dst) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  const std::int64_t r = i / H, c = i % H;
  dst[r * 2 * H + offset + c] = zero_padded && !mask[r] ? 0.0f : src[i];
}

// dst (rows, H) = src[:, offset : offset + H].
__global__ void read_half_kernel(const float* src, std::int64_t rows, std::int64_t H, std::int64_t offset,
                                 float* dst) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  dst[i] = src[(i / H) * 2 * H + offset + i % H];
}

// u = a * sigmoid(g) with [a | g] = H1 (rows, 2H); padded rows 0.
__global__ void glu_kernel(const float* H1, const std::uint8_t* mask, std::int64_t rows, std::int64_t H, float* U) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  const std::int64_t r = i / H, c = i % H;
  U[i] = mask[r] ? H1[r * 2 * H + c] * sigmoid(H1[r * 2 * H + H + c]) : 0.0f;
}

__global__ void glu_backward_kernel(const float* dU, const float* H1, const std::uint8_t* mask, std::int64_t rows,
                                    std::int64_t H, float* dH1) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  const std::int64_t r = i / H, c = i % H;
  const float du = mask[r] ? dU[i] : 0.0f, a = H1[r * 2 * H + c], sg = sigmoid(H1[r * 2 * H + H + c]);
  dH1[r * 2 * H + c] = du * sg;
  dH1[r * 2 * H + H + c] = du * a * sg * (1.0f - sg);
}

// o_t[c] = sum_k alpha_t[c / width, k] u_{t + k - shift}[c] (0 outside [0, n)); one thread per element.
// shift: K/2 (centred), K-1 (causal: taps t-K+1 .. t).
__global__ void dynconv_forward_kernel(const float* U, const float* alpha, std::int64_t b, std::int64_t n,
                                       std::int64_t H, std::int64_t Hc, std::int64_t K, std::int64_t shift, float* O) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * n * H) return;
  const std::int64_t r = i / H, c = i % H, t = r % n, row0 = r - t, group = c / (H / Hc);
  const float* a = alpha + r * Hc * K + group * K;
  float s = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    const std::int64_t src = t + k - shift;
    if (src >= 0 && src < n) s += a[k] * U[(row0 + src) * H + c];
  }
  O[i] = s;
}

// du_s[c] = sum_k dO_t[c] alpha_t[c / width, k] over t = s - k + shift in [0, n) (a gather, no atomics).
__global__ void dynconv_input_grad_kernel(const float* dO, const float* alpha, std::int64_t b, std::int64_t n,
                                          std::int64_t H, std::int64_t Hc, std::int64_t K, std::int64_t shift,
                                          float* dU) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * n * H) return;
  const std::int64_t r = i / H, c = i % H, s = r % n, row0 = r - s, group = c / (H / Hc);
  float acc = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    const std::int64_t t = s - k + shift;
    if (t >= 0 && t < n) acc += dO[(row0 + t) * H + c] * alpha[(row0 + t) * Hc * K + group * K + k];
  }
  dU[i] = acc;
}

// d alpha_t[g, k] = sum over the channels c of conv head g of dO_t[c] u_{t + k - shift}[c].
__global__ void dynconv_kernel_grad_kernel(const float* dO, const float* U, std::int64_t b, std::int64_t n,
                                           std::int64_t H, std::int64_t Hc, std::int64_t K, std::int64_t shift,
                                           float* dalpha) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * n * Hc * K) return;
  const std::int64_t r = i / (Hc * K), group = (i / K) % Hc, k = i % K, t = r % n, row0 = r - t;
  const std::int64_t src = t + k - shift, width = H / Hc;
  float acc = 0;
  if (src >= 0 && src < n)
    for (std::int64_t c = group * width; c < (group + 1) * width; ++c) acc += dO[r * H + c] * U[(row0 + src) * H + c];
  dalpha[i] = acc;
}

class CudaLsra final : public Attention {
 public:
  explicit CudaLsra(std::unique_ptr<Attention> twin)
      : Attention(twin->name(), twin->resolved_params(), twin->dim(), twin->heads(), Device::cuda, twin->causal()),
        twin_(std::move(twin)), half_(dim_ / 2), ha_(std::max<std::int64_t>(heads_ / 2, 1)),
        K_(std::stoll(resolved_.at("K"))), Hc_(std::stoll(resolved_.at("Hc"))) {
    for (auto& tp : twin_->params()) add_param(tp.name, tp.value.shape());
    copy_param_values(*twin_, *this);
  }

  void init_params(std::uint64_t seed) override {
    twin_->init_params(seed);
    copy_param_values(*twin_, *this);
  }
  double forward_flops(std::int64_t b, std::int64_t n) const override { return twin_->forward_flops(b, n); }
  // The same buffers as the CPU module.
  std::int64_t analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return twin_->analytic_bytes(b, n, with_backward);
  }
  const Tensor* saved_probabilities() const override { return &P_; }

  void forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n, float* y,
               bool /*keep_for_backward*/) override {
    b_ = b, n_ = n;
    const std::int64_t rows = b * n, H = half_, D = dim_, G = Hc_ * K_;
    if (!mask) {
      ensure(ones_mask_, {(rows + 3) / 4}, MemCategory::workspace, "all-real mask", Device::cuda);
      cuda::device_memset(ones_mask_.data(), 1, static_cast<std::size_t>(rows));
      mask = reinterpret_cast<const std::uint8_t*>(ones_mask_.data());
    }
    mask_ = mask;
    for (Tensor* t : {&xa_, &xc_, &Q_, &Kt_, &V_, &C_, &U_, &O_})
      ensure(*t, {rows, H}, MemCategory::activations, "lsra (rows, D/2) activation", Device::cuda);
    ensure(H1_, {rows, D}, MemCategory::activations, "lsra GLU input (rows, D)", Device::cuda);
    ensure(Alpha_, {rows, G}, MemCategory::activations, "lsra conv kernels (rows, Hc*K)", Device::cuda);
    ensure(P_, {b, ha_, n, n}, MemCategory::activations, "lsra attention probabilities (b, h/2, n, n)", Device::cuda);
    ensure(out_, {rows, H}, MemCategory::workspace, "lsra branch output (rows, D/2)", Device::cuda);
    const unsigned blocks = LSB_BLOCKS(rows * H, kThreads);
    split_halves_kernel<<<blocks, kThreads>>>(x, mask, rows, H, xa_.data(), xc_.data());
    LSB_CUDA_LAUNCHED();
    // Attention half: full attention of width D/2.
    cuda::linear_forward(xa_.data(), rows, H, value_of("a_wq"), value_of("a_bq"), H, Q_.data());
    cuda::linear_forward(xa_.data(), rows, H, value_of("a_wk"), value_of("a_bk"), H, Kt_.data());
    cuda::linear_forward(xa_.data(), rows, H, value_of("a_wv"), value_of("a_bv"), H, V_.data());
    cuda::scale(Q_.data(), rows * H, 1.0f / std::sqrt(static_cast<float>(H / ha_)));
    cuda_dense_attention_forward(view(Q_), view(Kt_), view(V_), mask, P_.data(), view(C_), causal_);
    cuda::zero_masked_rows(C_.data(), mask, rows, H);
    cuda::linear_forward(C_.data(), rows, H, value_of("a_wo"), value_of("a_bo"), H, out_.data());
    write_half_kernel<<<blocks, kThreads>>>(out_.data(), mask, false, rows, H, 0, y);
    LSB_CUDA_LAUNCHED();
    // Convolution half.
    cuda::linear_forward(xc_.data(), rows, H, value_of("c_w1"), value_of("c_b1"), D, H1_.data());
    glu_kernel<<<blocks, kThreads>>>(H1_.data(), mask, rows, H, U_.data());
    LSB_CUDA_LAUNCHED();
    cuda::linear_forward(U_.data(), rows, H, value_of("c_ww"), nullptr, G, Alpha_.data());
    cuda::softmax_rows(Alpha_.data(), nullptr, rows * Hc_, K_, 1);  // over K per (row, conv head)
    dynconv_forward_kernel<<<blocks, kThreads>>>(U_.data(), Alpha_.data(), b, n, H, Hc_, K_, shift(), O_.data());
    LSB_CUDA_LAUNCHED();
    cuda::linear_forward(O_.data(), rows, H, value_of("c_w2"), value_of("c_b2"), H, out_.data());
    write_half_kernel<<<blocks, kThreads>>>(out_.data(), mask, false, rows, H, H, y);
    LSB_CUDA_LAUNCHED();
  }

  void backward(const float* dy, float* dx) override {
    const std::int64_t b = b_, n = n_, rows = b * n, H = half_, D = dim_, G = Hc_ * K_;
    for (Tensor* t : {&dQ_, &dK_, &dV_, &dC_, &dO_, &dU_, &dxh_})
      ensure(*t, {rows, H}, MemCategory::workspace, "lsra (rows, D/2) gradient", Device::cuda);
    ensure(dH1_, {rows, D}, MemCategory::workspace, "lsra GLU input gradient (rows, D)", Device::cuda);
    ensure(dAlpha_, {rows, G}, MemCategory::workspace, "lsra conv kernel gradient (rows, Hc*K)", Device::cuda);
    ensure(dP_, P_.shape(), MemCategory::workspace, "lsra attention dP (b, h/2, n, n)", Device::cuda);
    const unsigned blocks = LSB_BLOCKS(rows * H, kThreads);
    // Attention half (out_ holds the half's dy).
    read_half_kernel<<<blocks, kThreads>>>(dy, rows, H, 0, out_.data());
    LSB_CUDA_LAUNCHED();
    cuda::linear_backward(out_.data(), C_.data(), rows, H, value_of("a_wo"), H, grad_of("a_wo"), grad_of("a_bo"), dC_.data(), false);
    cuda::zero_masked_rows(dC_.data(), mask_, rows, H);
    cuda_dense_attention_backward(view(Q_), view(Kt_), view(V_), P_.data(), view(dC_), dP_.data(), view(dQ_),
                                  view(dK_), view(dV_));
    cuda::scale(dQ_.data(), rows * H, 1.0f / std::sqrt(static_cast<float>(H / ha_)));
    cuda::linear_backward(dQ_.data(), xa_.data(), rows, H, value_of("a_wq"), H, grad_of("a_wq"), grad_of("a_bq"), dxh_.data(), false);
    cuda::linear_backward(dK_.data(), xa_.data(), rows, H, value_of("a_wk"), H, grad_of("a_wk"), grad_of("a_bk"), dxh_.data(), true);
    cuda::linear_backward(dV_.data(), xa_.data(), rows, H, value_of("a_wv"), H, grad_of("a_wv"), grad_of("a_bv"), dxh_.data(), true);
    write_half_kernel<<<blocks, kThreads>>>(dxh_.data(), mask_, false, rows, H, 0, dx);
    LSB_CUDA_LAUNCHED();
    // Convolution half, backwards.
    read_half_kernel<<<blocks, kThreads>>>(dy, rows, H, H, out_.data());
    LSB_CUDA_LAUNCHED();
    cuda::linear_backward(out_.data(), O_.data(), rows, H, value_of("c_w2"), H, grad_of("c_w2"), grad_of("c_b2"), dO_.data(), false);
    dynconv_input_grad_kernel<<<blocks, kThreads>>>(dO_.data(), Alpha_.data(), b, n, H, Hc_, K_, shift(), dU_.data());
    LSB_CUDA_LAUNCHED();
    dynconv_kernel_grad_kernel<<<LSB_BLOCKS(rows * G, kThreads), kThreads>>>(dO_.data(), U_.data(), b, n, H, Hc_, K_, shift(),
                                                                            dAlpha_.data());
    LSB_CUDA_LAUNCHED();
    cuda::softmax_backward_rows(Alpha_.data(), dAlpha_.data(), rows * Hc_, K_);
    // z = u Ww^T: dWw += dz^T u, du += dz Ww (u is 0 at padded rows, so nothing flows there).
    cuda::linear_backward(dAlpha_.data(), U_.data(), rows, H, value_of("c_ww"), G, grad_of("c_ww"), nullptr, dU_.data(), true);
    glu_backward_kernel<<<blocks, kThreads>>>(dU_.data(), H1_.data(), mask_, rows, H, dH1_.data());
    LSB_CUDA_LAUNCHED();
    cuda::linear_backward(dH1_.data(), xc_.data(), rows, H, value_of("c_w1"), D, grad_of("c_w1"), grad_of("c_b1"), dxh_.data(), false);
    write_half_kernel<<<blocks, kThreads>>>(dxh_.data(), mask_, true, rows, H, H, dx);
    LSB_CUDA_LAUNCHED();
  }

 private:
  // Tap k of position t reads t + k - shift(): centred, or (causal) the K most recent positions.
  std::int64_t shift() const { return causal_ ? K_ - 1 : K_ / 2; }
  MatRef view(const Tensor& t) const { return head_view(t.data(), b_, n_, ha_, half_ / ha_); }

  std::unique_ptr<Attention> twin_;
  std::int64_t half_, ha_, K_, Hc_;
  std::int64_t b_ = 0, n_ = 0;
  const std::uint8_t* mask_ = nullptr;
  Tensor ones_mask_;
  Tensor xa_, xc_, Q_, Kt_, V_, C_, P_, H1_, U_, Alpha_, O_, out_;
  Tensor dQ_, dK_, dV_, dC_, dP_, dO_, dU_, dAlpha_, dH1_, dxh_;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_lsra(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaLsra>(std::move(twin));
}

}  // namespace lsb
