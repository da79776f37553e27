// Optimisation (../shared/spec/lra.md "Models"): AdamW with decoupled weight decay (beta1 0.9,
// beta2 0.999, eps 1e-6 by default), the linear warm-up then linear decay schedule, and clipping
// of the global gradient norm. The moment buffers are tracked as optimizer memory.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/checkpoint.hpp"
#include "nn/param.hpp"

namespace lsb {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-6, weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, Param*>> params, AdamWConfig cfg);
  // One update with learning rate lr from the gradients now in each Param's grad:
  //   m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p)
  // with bias-corrected m_hat, v_hat (decoupled weight decay, as torch.optim.AdamW).
  void step(double lr);
  // The same with this step's beta1 (a schedule that cycles it: onecycle). Bias correction uses
  // 1 - beta1^t with this step's beta1, as torch.optim.AdamW does.
  void step(double lr, double beta1);
  std::int64_t steps() const { return t_; }

  // What a checkpoint must hold to resume exactly: the moments ("adam.m.<param>", "adam.v.<param>")
  // and the step count (restore it with set_steps).
  std::vector<CheckpointEntry> state();
  void set_steps(std::int64_t t) { t_ = t; }

 private:
  std::vector<std::pair<std::string, Param*>> params_;
  std::vector<Tensor> m_, v_;
  AdamWConfig cfg_;
  std::int64_t t_ = 0;
};

// Learning rate at 1-based step s: peak * s / warmup during warm-up, then linear decay reaching 0
// at total_steps.
double warmup_linear_lr(double peak, std::int64_t step, std::int64_t warmup, std::int64_t total_steps);

// The learning-rate schedules of `train --schedule`:
//   linear    warmup_linear_lr above, beta1 left as configured (../shared/spec/lra.md "Models");
//   onecycle  torch.optim.lr_scheduler.OneCycleLR(max_lr = peak, pct_start = warmup / total_steps,
//             anneal_strategy = "linear", total_steps) with its defaults, as the reference PyTorch LRA
//             code runs it: lr from peak / 25 up to peak over the warm-up, then down to peak / 25e4;
//             beta1 from 0.95 down to 0.85, then back up. Optimiser step s (1-based) runs with the
//             scheduler's index s - 1, as in that code's loop (step, then scheduler.step()).
struct ScheduleStep {
  double lr, beta1;
};
const std::vector<std::string>& schedule_names();  // linear, onecycle
// UsageError for an unknown name, or for onecycle with warmup < 2 or warmup >= total_steps (torch
// divides by zero there).
void check_schedule(const std::string& name, std::int64_t warmup, std::int64_t total_steps);
ScheduleStep schedule_at(const std::string& name, double peak, std::int64_t step, std::int64_t warmup,
                         std::int64_t total_steps, double beta1);

// Global L2 norm of all gradients; scales them down to max_norm when larger (max_norm <= 0: no
// clipping). Returns the norm before clipping.
double clip_grad_norm(const std::vector<std::pair<std::string, Param*>>& params, double max_norm);

}  // namespace lsb
