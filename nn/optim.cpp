#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>

#include "nn/device_ops.hpp"

namespace lsb {

AdamW::AdamW(std::vector<std::pair<std::string, Param*>> params, AdamWConfig cfg)
    : params_(std::move(params)), cfg_(cfg) {
  for (auto& [name, p] : params_) {
    const std::string what = "AdamW moments of " + name;
    m_.push_back(Tensor::zeros(p->value.shape(), MemCategory::optimizer, what.c_str(), p->value.device()));
    v_.push_back(Tensor::zeros(p->value.shape(), MemCategory::optimizer, what.c_str(), p->value.device()));
  }
}

void AdamW::step(double lr) {
  ++t_;
  const double b1 = cfg_.beta1, b2 = cfg_.beta2;
  const double c1 = 1.0 - std::pow(b1, static_cast<double>(t_)), c2 = 1.0 - std::pow(b2, static_cast<double>(t_));
  const float decay = static_cast<float>(lr * cfg_.weight_decay);
  const float step_size = static_cast<float>(lr / c1), inv_sqrt_c2 = static_cast<float>(1.0 / std::sqrt(c2));
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2), eps = static_cast<float>(cfg_.eps);
  for (std::size_t k = 0; k < params_.size(); ++k) {
    Param& p = *params_[k].second;
    device_ops::adamw_update(p.value.device(), p.value.data(), p.grad.data(), m_[k].data(), v_[k].data(),
                             p.value.numel(), fb1, fb2, decay, step_size, inv_sqrt_c2, eps);
  }
}

std::vector<CheckpointEntry> AdamW::state() {
  std::vector<CheckpointEntry> out;
  for (std::size_t k = 0; k < params_.size(); ++k) {
    out.push_back({"adam.m." + params_[k].first, &m_[k]});
    out.push_back({"adam.v." + params_[k].first, &v_[k]});
  }
  return out;
}

double warmup_linear_lr(double peak, std::int64_t step, std::int64_t warmup, std::int64_t total_steps) {
  if (step <= warmup && warmup > 0) return peak * static_cast<double>(step) / static_cast<double>(warmup);
  if (total_steps <= warmup) return peak;
  return peak * std::max(0.0, static_cast<double>(total_steps - step) / static_cast<double>(total_steps - warmup));
}

double clip_grad_norm(const std::vector<std::pair<std::string, Param*>>& params, double max_norm) {
  // One sum per device the gradients are on (in practice one), in parameter order.
  double ss = 0;
  for (const Device dev : {Device::cpu, Device::cuda}) {
    std::vector<std::pair<const float*, std::int64_t>> grads;
    for (const auto& [name, p] : params)
      if (p->grad.device() == dev) grads.emplace_back(p->grad.data(), p->grad.numel());
    if (!grads.empty()) ss += device_ops::sum_of_squares(dev, grads);
  }
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (const auto& [name, p] : params) device_ops::scale(p->grad.device(), p->grad.data(), p->grad.numel(), scale);
  }
  return norm;
}

}  // namespace lsb
