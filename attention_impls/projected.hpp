// The part every variant shares: Q = (x Wq^T + bq)/sqrt(d), K = x Wk^T + bk, V = x Wv^T + bv,
// a variant-specific core C = core(Q, K, V, mask), padded query rows of C set to 0,
// y = C Wo^T + bo. A variant implements core_forward/core_backward on (b, n, D) buffers whose
// heads are column slices. Written once for both devices: every step outside the core goes through
// nn/device_ops on the module's device (the CPU cores derive from this directly; the CUDA cores from
// CudaProjectedAttention, attention_impls/cuda/projected.cuh, which adds their CPU twin).
#pragma once
#include <cmath>

#include "attention_impls/attention.hpp"
#include "attention_impls/variants.hpp"

namespace lsb {

class ProjectedAttention : public Attention {
 public:
  void forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n, float* y,
               bool keep_for_backward) override;
  void backward(const float* dy, float* dx) override;
  double forward_flops(std::int64_t b, std::int64_t n) const override {
    return projection_flops(b, n) + core_flops(b, n);
  }
  // Throws UsageError when the module cannot take sequences of length n (linformer's n_max, causal ls's
  // whole chunks); forward calls it first. Public so that a CUDA module asks its CPU twin.
  virtual void check_length(std::int64_t /*n*/) const {}
  std::int64_t analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const override;

 protected:
  // A CPU module with the four projections' parameters (wq, bq, ..., wo, bo); the variant adds its own.
  ProjectedAttention(std::string name, std::map<std::string, std::string> resolved, std::int64_t dim,
                     std::int64_t heads, bool causal = false);
  // A module on `device` with the same name, parameters (every one of `twin`'s, values copied) and shapes
  // as `twin` (the CUDA modules mirror their CPU twin).
  ProjectedAttention(Attention& twin, Device device);

  // C (b, n, D) from Q, K, V (b, n, D); Q is already scaled by 1/sqrt(d). mask_ is never null here.
  virtual void core_forward(bool keep_for_backward) = 0;
  // dQ, dK, dV (b, n, D) from dC (b, n, D), written (not accumulated); parameter grads +=.
  virtual void core_backward() = 0;
  // Extra contributions to dx beyond the Q/K/V projections (ls: through the landmark projection).
  virtual void add_input_grad(float* /*dx*/) {}
  virtual double core_flops(std::int64_t b, std::int64_t n) const = 0;
  // Floats the core allocates beyond Q, K, V, C (forward) and dQ, dK, dV, dC (backward).
  virtual std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const = 0;

  // The four (rows, D) x (D, D) projections, forward: 2 * 4 * b * n * D * D.
  double projection_flops(std::int64_t b, std::int64_t n) const { return 8.0 * b * n * dim_ * dim_; }
  std::int64_t head_dim() const { return dim_ / heads_; }
  // The (b, h) batch of (rows, d) head slices of a (b, rows, D) buffer.
  MatRef heads_of(const Tensor& t, std::int64_t rows) const {
    return head_view(t.data(), b_, rows, heads_, head_dim());
  }
  // Sets the rows of padded positions of a (b, n, D) buffer to 0.
  void zero_padded_rows(Tensor& t) const;
  // Sizes a buffer of this call on the module's device.
  void ensure_here(Tensor& t, const Shape& shape, MemCategory cat, const char* what) const {
    ensure(t, shape, cat, what, device_);
  }

  // State of the current call.
  std::int64_t b_ = 0, n_ = 0;
  const float* x_ = nullptr;
  const std::uint8_t* mask_ = nullptr;
  Tensor ones_mask_;  // used when the caller passes no mask (bytes stored in a float buffer)
  Tensor Q_, K_, V_, C_;      // (b, n, D) activations
  Tensor dQ_, dK_, dV_, dC_;  // (b, n, D) backward workspace
};

// Per-thread scratch that is sized once and reused (no allocation per call after warm-up).
int max_threads();
int thread_id();

}  // namespace lsb
