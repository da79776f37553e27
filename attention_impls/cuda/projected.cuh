// The GPU mirror of attention_impls/projected.hpp: Q/K/V projections, a variant's core, padded query
// rows zeroed, output projection; every buffer on the device, products through cuBLAS. A variant
// implements the core on (b, n, D) buffers whose heads are column slices, exactly as on the CPU.
#pragma once
#include <cmath>
#include <memory>

#include "attention_impls/attention.hpp"
#include "attention_impls/variants.hpp"

namespace lsb {

class CudaProjectedAttention : public Attention {
 public:
  void forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n, float* y,
               bool keep_for_backward) override;
  void backward(const float* dy, float* dx) override;
  std::int64_t padded_length(std::int64_t n) const override { return twin_->padded_length(n); }
  double forward_flops(std::int64_t b, std::int64_t n) const override { return twin_->forward_flops(b, n); }
  std::int64_t analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const override;
  // The twin draws the values (same seed, same model as on the CPU); they are copied here.
  void init_params(std::uint64_t seed) override;

 protected:
  explicit CudaProjectedAttention(std::unique_ptr<Attention> twin);

  virtual void core_forward() = 0;
  virtual void core_backward() = 0;
  virtual void add_input_grad(float* /*dx*/) {}
  virtual std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const = 0;
  // Called with the call's length before anything runs (linformer: n <= n_max).
  virtual void check_length(std::int64_t /*n*/) const {}
  std::int64_t head_dim() const { return dim_ / heads_; }
  MatRef heads_of(const Tensor& t, std::int64_t rows) const { return head_view(t.data(), b_, rows, heads_, head_dim()); }
  float* p(const char* name) { return param(name).value.data(); }
  float* g(const char* name) { return param(name).grad.data(); }
  std::int64_t int_param(const char* key) const { return std::stoll(resolved_.at(key)); }
  void dev_ensure(Tensor& t, const Shape& shape, MemCategory cat, const char* what) {
    ensure(t, shape, cat, what, Device::cuda);
  }

  std::unique_ptr<Attention> twin_;
  std::int64_t b_ = 0, n_ = 0;
  const float* x_ = nullptr;
  const std::uint8_t* mask_ = nullptr;
  Tensor ones_mask_;
  Tensor Q_, K_, V_, C_;
  Tensor dQ_, dK_, dV_, dC_;
};

// Dense softmax attention per (batch, head) on the GPU, as dense_attention_forward/backward in
// attention_impls/variants.hpp (P contiguous (b, h, nq, nk)).
void cuda_dense_attention_forward(const MatRef& Q, const MatRef& K, const MatRef& V, const std::uint8_t* key_mask,
                                  float* P, const MatRef& C);
void cuda_dense_attention_backward(const MatRef& Q, const MatRef& K, const MatRef& V, const float* P,
                                   const MatRef& dC, float* dP, const MatRef& dQ, const MatRef& dK, const MatRef& dV);

// Each variant's make_cuda_NAME(std::unique_ptr<Attention> twin) is declared in the variant's CPU file,
// whose record (attention_impls/registry.hpp) names it.

}  // namespace lsb
