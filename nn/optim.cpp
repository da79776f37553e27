#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>

namespace lsb {

AdamW::AdamW(std::vector<std::pair<std::string, Param*>> params, AdamWConfig cfg)
    : params_(std::move(params)), cfg_(cfg) {
  for (auto& [name, p] : params_) {
    const std::string what = "AdamW moments of " + name;
    m_.push_back(Tensor::zeros(p->value.shape(), MemCategory::optimizer, what.c_str()));
    v_.push_back(Tensor::zeros(p->value.shape(), MemCategory::optimizer, what.c_str()));
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
    float* p = params_[k].second->value.data();
    const float* g = params_[k].second->grad.data();
    float* m = m_[k].data();
    float* v = v_[k].data();
    const std::int64_t n = params_[k].second->value.numel();
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (std::int64_t i = 0; i < n; ++i) {
      m[i] = fb1 * m[i] + (1.0f - fb1) * g[i];
      v[i] = fb2 * v[i] + (1.0f - fb2) * g[i] * g[i];
      // Decay uses the parameter before this step's update, as torch.optim.AdamW.
      p[i] -= decay * p[i] + step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + eps);
    }
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
  double ss = 0;
  for (const auto& [name, p] : params)
    for (std::int64_t i = 0; i < p->grad.numel(); ++i) ss += static_cast<double>(p->grad[i]) * p->grad[i];
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (const auto& [name, p] : params)
      for (std::int64_t i = 0; i < p->grad.numel(); ++i) p->grad[i] *= scale;
  }
  return norm;
}

}  // namespace lsb
