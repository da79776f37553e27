#include "attention_impls/projected.hpp"

#include <omp.h>

#include <fmt/format.h>

#include "nn/device_ops.hpp"
#include "nn/profile.hpp"
#include "nn/errors.hpp"

namespace lsb {

int max_threads() { return omp_get_max_threads(); }
int thread_id() { return omp_get_thread_num(); }

ProjectedAttention::ProjectedAttention(std::string name, std::map<std::string, std::string> resolved,
                                       std::int64_t dim, std::int64_t heads, bool causal)
    : Attention(std::move(name), std::move(resolved), dim, heads, Device::cpu, causal) {
  for (const char* p : {"q", "k", "v", "o"}) {
    add_param(std::string("w") + p, {dim, dim});
    add_param(std::string("b") + p, {dim});
  }
}

ProjectedAttention::ProjectedAttention(Attention& twin, Device device)
    : Attention(twin.name(), twin.resolved_params(), twin.dim(), twin.heads(), device, twin.causal()) {
  for (auto& tp : twin.params()) add_param(tp.name, tp.value.shape());
  copy_param_values(twin, *this);
}

void ProjectedAttention::forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n, float* y,
                                 bool keep_for_backward) {
  if (n != padded_length(n))
    throw UsageError(fmt::format("{}: sequence length {} must be padded to {} first", spec_string(), n,
                                 padded_length(n)));
  check_length(n);
  b_ = b;
  n_ = n;
  x_ = x;
  if (!mask) {
    // A (b*n)-byte all-ones mask, kept in a tracked float buffer (a quarter of it is used).
    ensure_here(ones_mask_, {(b * n + 3) / 4}, MemCategory::workspace, "all-real mask");
    device_ops::set_bytes(device_, ones_mask_.data(), 1, static_cast<std::size_t>(b * n));
    mask = reinterpret_cast<const std::uint8_t*>(ones_mask_.data());
  }
  mask_ = mask;
  const std::int64_t D = dim_, rows = b * n;
  const Shape shape{b, n, D};
  ensure_here(Q_, shape, MemCategory::activations, "attention Q");
  ensure_here(K_, shape, MemCategory::activations, "attention K");
  ensure_here(V_, shape, MemCategory::activations, "attention V");
  ensure_here(C_, shape, MemCategory::activations, "attention context C");
  device_ops::linear_forward(device_, x, rows, D, value_of("wq"), value_of("bq"), D, Q_.data());
  device_ops::linear_forward(device_, x, rows, D, value_of("wk"), value_of("bk"), D, K_.data());
  device_ops::linear_forward(device_, x, rows, D, value_of("wv"), value_of("bv"), D, V_.data());
  device_ops::scale(device_, Q_.data(), rows * D, 1.0f / std::sqrt(static_cast<float>(head_dim())));

  {
    LSB_PROFILE("attention core forward");
    core_forward(keep_for_backward);
  }

  zero_padded_rows(C_);  // padded queries: context rows exactly 0, so y there equals bo
  device_ops::linear_forward(device_, C_.data(), rows, D, value_of("wo"), value_of("bo"), D, y);
}

void ProjectedAttention::backward(const float* dy, float* dx) {
  const std::int64_t D = dim_, rows = b_ * n_;
  const Shape shape{b_, n_, D};
  ensure_here(dQ_, shape, MemCategory::workspace, "attention dQ");
  ensure_here(dK_, shape, MemCategory::workspace, "attention dK");
  ensure_here(dV_, shape, MemCategory::workspace, "attention dV");
  ensure_here(dC_, shape, MemCategory::workspace, "attention dC");
  device_ops::linear_backward(device_, dy, C_.data(), rows, D, value_of("wo"), D, grad_of("wo"), grad_of("bo"), dC_.data(),
                              false);
  zero_padded_rows(dC_);

  {
    LSB_PROFILE("attention core backward");
    core_backward();
  }

  device_ops::scale(device_, dQ_.data(), rows * D, 1.0f / std::sqrt(static_cast<float>(head_dim())));
  device_ops::linear_backward(device_, dQ_.data(), x_, rows, D, value_of("wq"), D, grad_of("wq"), grad_of("bq"), dx, false);
  device_ops::linear_backward(device_, dK_.data(), x_, rows, D, value_of("wk"), D, grad_of("wk"), grad_of("bk"), dx, true);
  device_ops::linear_backward(device_, dV_.data(), x_, rows, D, value_of("wv"), D, grad_of("wv"), grad_of("bv"), dx, true);
  add_input_grad(dx);
}

void ProjectedAttention::zero_padded_rows(Tensor& t) const {
  device_ops::zero_masked_rows(device_, t.data(), mask_, b_ * n_, dim_);
}

std::int64_t ProjectedAttention::analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const {
  const std::int64_t bnD = b * n * dim_;
  const std::int64_t floats = 4 * bnD + (with_backward ? 4 * bnD : 0) + core_floats(b, n, with_backward);
  return floats * static_cast<std::int64_t>(sizeof(float));
}

}  // namespace lsb
