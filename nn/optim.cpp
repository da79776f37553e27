#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "nn/device_ops.hpp"
#include "nn/errors.hpp"

namespace lsb {

AdamW::AdamW(std::vector<std::pair<std::string, Param*>> params, AdamWConfig cfg)
    : params_(std::move(params)), cfg_(cfg) {
  for (auto& [name, p] : params_) {
    const std::string what = "AdamW moments of " + name;
    m_.push_back(Tensor::zeros(p->value.shape(), MemCategory::optimizer, what.c_str(), p->value.device()));
    v_.push_back(Tensor::zeros(p->value.shape(), MemCategory::optimizer, what.c_str(), p->value.device()));
  }
}

void AdamW::step(double lr) { step(lr, cfg_.beta1); }

void AdamW::step(double lr, double beta1) {
  ++t_;
  const double b1 = beta1, b2 = cfg_.beta2;
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

namespace lsb {

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = {"linear", "onecycle"};
  return names;
}

void check_schedule(const std::string& name, std::int64_t warmup, std::int64_t total_steps) {
  if (name == "linear") return;
  if (name != "onecycle")
    throw UsageError(fmt::format("--schedule {}: unknown; expected one of {}", name, fmt::join(schedule_names(), ", ")));
  if (warmup < 2 || warmup >= total_steps)
    throw UsageError(fmt::format("--schedule onecycle needs 2 <= --warmup < --steps (found warm-up {} of {} steps)",
                                 warmup, total_steps));
}

ScheduleStep schedule_at(const std::string& name, double peak, std::int64_t step, std::int64_t warmup,
                         std::int64_t total_steps, double beta1) {
  if (name != "onecycle") return {warmup_linear_lr(peak, step, warmup, total_steps), beta1};
  // torch's OneCycleLR: phase 1 ends at pct_start * total - 1, phase 2 at total - 1; each anneals
  // linearly, (end - start) * pct + start, in doubles as Python computes them.
  const double initial = peak / 25.0, final_lr = initial / 1e4;
  const double end1 = static_cast<double>(warmup) / static_cast<double>(total_steps) * static_cast<double>(total_steps) - 1;
  const double k = static_cast<double>(step - 1);
  auto anneal = [](double a, double b, double pct) { return (b - a) * pct + a; };
  if (k <= end1) {
    const double pct = k / end1;
    return {anneal(initial, peak, pct), anneal(0.95, 0.85, pct)};
  }
  const double pct = (k - end1) / (static_cast<double>(total_steps - 1) - end1);
  return {anneal(peak, final_lr, pct), anneal(0.85, 0.95, pct)};
}

}  // namespace lsb
