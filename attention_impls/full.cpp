// full: naive softmax attention. Materialises the (b, h, n, n) probabilities (kept for backward)
// and, in backward, their gradient: memory grows as b*h*n^2 on purpose (the baseline).
#include <cmath>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"

namespace lsb {
namespace {

class FullAttention final : public ProjectedAttention {
 public:
  FullAttention(std::int64_t dim, std::int64_t heads, bool causal)
      : ProjectedAttention("full", {}, dim, heads, causal) {}

 public:
  const Tensor* saved_probabilities() const override { return &P_; }

 protected:
  void core_forward(bool) override {
    ensure(P_, {b_, heads_, n_, n_}, MemCategory::activations, "full attention probabilities (b, h, n, n)");
    // With dropout, P * M goes to dP's buffer (the backward's workspace, so training's peak is unchanged).
    if (drop_.active()) ensure(dP_, P_.shape(), MemCategory::workspace, "full attention dP (b, h, n, n)");
    dense_attention_forward(heads_of(Q_, n_), heads_of(K_, n_), heads_of(V_, n_), mask_, P_.data(), heads_of(C_, n_),
                            drop_, dP_.data(), causal_);
  }
  void core_backward() override {
    ensure(dP_, P_.shape(), MemCategory::workspace, "full attention dP (b, h, n, n)");
    dense_attention_backward(heads_of(Q_, n_), heads_of(K_, n_), heads_of(V_, n_), P_.data(), heads_of(dC_, n_),
                             dP_.data(), heads_of(dQ_, n_), heads_of(dK_, n_), heads_of(dV_, n_), drop_);
  }
  double core_flops(std::int64_t b, std::int64_t n) const override {
    return exact_attention_flops(b, heads_, n, head_dim(), causal_);
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return b * heads_ * n * n * (with_backward ? 2 : 1);
  }

 private:
  Tensor P_, dP_;
};

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_full(std::unique_ptr<Attention> twin);  // attention_impls/cuda/dense.cu
#endif

LSB_VARIANT(full) {
  VariantInfo v;
  v.name = "full";
  v.summary = "naive softmax attention, materialises n x n scores (quadratic memory)";
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<FullAttention>(dim, heads, keys.causal());
  };
  v.causal = v.causal_cuda = true;
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_full);
  v.reference_core = [](const ref::CoreInput& in, ref::Mat& C) { ref::band_core(in, C, in.n); };
  v.prob_dropout = true;
  v.baseline = true;
  v.in_default_sweep = true;
  v.in_lra_defaults = true;
  v.published_efficiency = {{"Transformer (LRA Table 2, TPU v3)", {8.1, 4.9, 2.3, 1.4}, {0.85, 2.65, 5.51, 9.48}}};
  return v;
}

}  // namespace lsb
