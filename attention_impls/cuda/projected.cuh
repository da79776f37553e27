// The GPU side of attention_impls/projected.hpp: the same projections around the core (ProjectedAttention
// runs them through nn/device_ops on the GPU), a CUDA variant writes only its core on the (b, n, D) device
// buffers, exactly as on the CPU, and keeps its CPU twin for what it shares with it (padding, the cost
// model, the parameter draw).
#pragma once
#include <memory>

#include "attention_impls/projected.hpp"

namespace lsb {

class CudaProjectedAttention : public ProjectedAttention {
 public:
  std::int64_t padded_length(std::int64_t n) const override { return twin_->padded_length(n); }
  // The twin draws the values (same seed, same model as on the CPU); they are copied here.
  void init_params(std::uint64_t seed) override;
  // The twin's limits on n are the module's.
  void check_length(std::int64_t n) const override;

 protected:
  explicit CudaProjectedAttention(std::unique_ptr<Attention> twin);

  // The twin's cost model less the projections, so forward_flops is the twin's.
  double core_flops(std::int64_t b, std::int64_t n) const override {
    return twin_->forward_flops(b, n) - projection_flops(b, n);
  }
  std::int64_t int_param(const char* key) const { return std::stoll(resolved_.at(key)); }

  std::unique_ptr<Attention> twin_;
};

// Dense softmax attention per (batch, head) on the GPU, as dense_attention_forward/backward in
// attention_impls/variants.hpp (P contiguous (b, h, nq, nk)).
void cuda_dense_attention_forward(const MatRef& Q, const MatRef& K, const MatRef& V, const std::uint8_t* key_mask,
                                  float* P, const MatRef& C, bool causal = false);
void cuda_dense_attention_backward(const MatRef& Q, const MatRef& K, const MatRef& V, const float* P,
                                   const MatRef& dC, float* dP, const MatRef& dQ, const MatRef& dK, const MatRef& dV);

// Each variant's make_cuda_NAME(std::unique_ptr<Attention> twin) is declared in the variant's CPU file,
// whose record (attention_impls/registry.hpp) names it.

}  // namespace lsb
