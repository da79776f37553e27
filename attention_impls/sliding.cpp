// sliding: query t attends to the keys u with |t - u| <= R (truncated at the ends, padded keys
// masked); causal: u in [t - R, t]. Probabilities kept for backward in band form, (b, h, n, 2R+1), or
// (b, h, n, R+1) causal.
#include "attention_impls/local_core.hpp"
#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"

namespace lsb {
namespace {

class SlidingAttention final : public ProjectedAttention {
 public:
  SlidingAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads, std::int64_t R,
                   bool causal)
      : ProjectedAttention("sliding", std::move(resolved), dim, heads, causal), R_(R) {
    win_ = causal ? causal_sliding_window(R) : sliding_window(R);
  }

 public:
  const Tensor* saved_probabilities() const override { return &P_; }

 protected:
  void core_forward(bool) override {
    ensure(P_, {b_, heads_, n_, win_.width()}, MemCategory::activations, "sliding band probabilities (b, h, n, 2R+1)");
    ensure(scratch_, {win_.scratch_floats(max_threads())}, MemCategory::workspace, "sliding per-thread tiles");
    local_attention_forward(win_, b_, n_, heads_, head_dim(), Q_.data(), K_.data(), V_.data(), nullptr, nullptr,
                            mask_, P_.data(), C_.data(), scratch_.data(), drop_);
  }
  void core_backward() override {
    local_attention_backward(win_, b_, n_, heads_, head_dim(), Q_.data(), K_.data(), V_.data(), nullptr, nullptr,
                             P_.data(), dC_.data(), dQ_.data(), dK_.data(), dV_.data(), nullptr, nullptr,
                             scratch_.data(), drop_);
  }
  // Causal: the keys each query has, 4 b h d sum_t min(R + 1, t + 1).
  double core_flops(std::int64_t b, std::int64_t n) const override {
    if (!causal_) return 4.0 * b * heads_ * n * win_.span * head_dim();
    const double full_rows = static_cast<double>(std::max<std::int64_t>(n - (R_ + 1), 0));
    const double ramp = static_cast<double>(std::min(n, R_ + 1));  // rows t < R + 1 see t + 1 keys
    const double keys = full_rows * static_cast<double>(R_ + 1) + ramp * (ramp + 1) / 2;
    return 4.0 * b * heads_ * keys * head_dim();
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    (void)with_backward;  // the tiles are shared by forward and backward
    return b * heads_ * n * win_.width() + win_.scratch_floats(max_threads());
  }

 private:
  std::int64_t R_;
  LocalWindow win_;
  Tensor P_, scratch_;
};

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_sliding(std::unique_ptr<Attention> twin);  // attention_impls/cuda/local.cu
#endif

LSB_VARIANT(sliding) {
  VariantInfo v;
  v.name = "sliding";
  v.summary = "each query sees the keys within R positions on each side";
  v.keys = {{"R", "64"}};
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<SlidingAttention>(keys.resolved(), dim, heads, keys.get_int("R", 0), keys.causal());
  };
  v.causal = v.causal_cuda = true;
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_sliding);
  v.reference_core = [](const ref::CoreInput& in, ref::Mat& C) { ref::band_core(in, C, ref::key_int(in.keys, "R")); };
  v.prob_dropout = true;
  v.default_spec = "sliding:R=64";
  v.results_note = "`sliding` is not LRA's \"Local Attention\" (non-overlapping blocks) and has no published row.";
  v.in_default_sweep = true;
  v.in_lra_defaults = true;
  return v;
}

}  // namespace lsb
