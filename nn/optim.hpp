// Optimisation (../shared/spec/lra.md "Models"): AdamW with decoupled weight decay (beta1 0.9,
// beta2 0.999, eps 1e-6 by default), the linear warm-up then linear decay schedule, and clipping
// of the global gradient norm. The moment buffers are tracked as optimizer memory.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "attention_impls/attention.hpp"
#include "nn/checkpoint.hpp"

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

// Global L2 norm of all gradients; scales them down to max_norm when larger (max_norm <= 0: no
// clipping). Returns the norm before clipping.
double clip_grad_norm(const std::vector<std::pair<std::string, Param*>>& params, double max_norm);

}  // namespace lsb
