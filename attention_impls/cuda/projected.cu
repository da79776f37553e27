#include "attention_impls/cuda/projected.cuh"

#include <string>

#include "attention_impls/cuda/factory.hpp"
#include "attention_impls/registry.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/device.hpp"
#include "nn/cuda/kernels.hpp"
#include "nn/errors.hpp"

namespace lsb {

CudaProjectedAttention::CudaProjectedAttention(std::unique_ptr<Attention> twin)
    : Attention(twin->name(), twin->resolved_params(), twin->dim(), twin->heads(), Device::cuda),
      twin_(std::move(twin)) {
  for (auto& tp : twin_->params()) add_param(tp.name, tp.value.shape());
  copy_param_values(*twin_, *this);
}

void CudaProjectedAttention::init_params(std::uint64_t seed) {
  twin_->init_params(seed);
  copy_param_values(*twin_, *this);
}

void CudaProjectedAttention::forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n,
                                     float* y, bool /*keep_for_backward*/) {
  if (n != padded_length(n))
    throw UsageError(spec_string() + ": sequence length " + std::to_string(n) + " must be padded to " +
                     std::to_string(padded_length(n)) + " first");
  check_length(n);
  b_ = b;
  n_ = n;
  x_ = x;
  if (!mask) {
    dev_ensure(ones_mask_, {(b * n + 3) / 4}, MemCategory::workspace, "all-real mask");
    cuda::device_memset(ones_mask_.data(), 1, static_cast<std::size_t>(b * n));
    mask = reinterpret_cast<const std::uint8_t*>(ones_mask_.data());
  }
  mask_ = mask;
  const std::int64_t D = dim_, rows = b * n;
  const Shape shape{b, n, D};
  dev_ensure(Q_, shape, MemCategory::activations, "attention Q");
  dev_ensure(K_, shape, MemCategory::activations, "attention K");
  dev_ensure(V_, shape, MemCategory::activations, "attention V");
  dev_ensure(C_, shape, MemCategory::activations, "attention context C");
  cuda::linear_forward(x, rows, D, p("wq"), p("bq"), D, Q_.data());
  cuda::linear_forward(x, rows, D, p("wk"), p("bk"), D, K_.data());
  cuda::linear_forward(x, rows, D, p("wv"), p("bv"), D, V_.data());
  cuda::scale(Q_.data(), rows * D, 1.0f / std::sqrt(static_cast<float>(head_dim())));
  core_forward();
  cuda::zero_masked_rows(C_.data(), mask_, rows, D);
  cuda::linear_forward(C_.data(), rows, D, p("wo"), p("bo"), D, y);
}

void CudaProjectedAttention::backward(const float* dy, float* dx) {
  const std::int64_t D = dim_, rows = b_ * n_;
  const Shape shape{b_, n_, D};
  dev_ensure(dQ_, shape, MemCategory::workspace, "attention dQ");
  dev_ensure(dK_, shape, MemCategory::workspace, "attention dK");
  dev_ensure(dV_, shape, MemCategory::workspace, "attention dV");
  dev_ensure(dC_, shape, MemCategory::workspace, "attention dC");
  cuda::linear_backward(dy, C_.data(), rows, D, p("wo"), D, g("wo"), g("bo"), dC_.data(), false);
  cuda::zero_masked_rows(dC_.data(), mask_, rows, D);
  core_backward();
  cuda::scale(dQ_.data(), rows * D, 1.0f / std::sqrt(static_cast<float>(head_dim())));
  cuda::linear_backward(dQ_.data(), x_, rows, D, p("wq"), D, g("wq"), g("bq"), dx, false);
  cuda::linear_backward(dK_.data(), x_, rows, D, p("wk"), D, g("wk"), g("bk"), dx, true);
  cuda::linear_backward(dV_.data(), x_, rows, D, p("wv"), D, g("wv"), g("bv"), dx, true);
  add_input_grad(dx);
}

std::int64_t CudaProjectedAttention::analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const {
  const std::int64_t bnD = b * n * dim_;
  const std::int64_t floats = 4 * bnD + (with_backward ? 4 * bnD : 0) + core_floats(b, n, with_backward);
  return floats * static_cast<std::int64_t>(sizeof(float));
}

std::unique_ptr<Attention> make_cuda_attention(std::unique_ptr<Attention> twin) {
  cuda::require_device();
  const VariantInfo& v = variant_info(twin->name());
  if (!v.make_cuda) throw UsageError("--device cuda: variant '" + v.name + "' has no CUDA implementation yet");
  return v.make_cuda(std::move(twin));
}

}  // namespace lsb
