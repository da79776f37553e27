// linformer: keys and values projected along the sequence to k rows by a learned E (k x n_max),
// shared by all heads (and by keys and values unless share=separate, which adds F):
//   K' = E[:, :n] (K * m), V' = E[:, :n] (V * m) or F[:, :n] (V * m); C = softmax(Q K'^T) V'.
#include <cmath>

#include <fmt/format.h>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"
#include "nn/errors.hpp"

namespace lsb {
namespace {

class LinformerAttention final : public ProjectedAttention {
 public:
  LinformerAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads, std::int64_t k,
                     std::int64_t n_max, bool separate)
      : ProjectedAttention("linformer", std::move(resolved), dim, heads), k_(k), n_max_(n_max), separate_(separate) {
    add_param("e", {k, n_max});
    if (separate) add_param("f", {k, n_max});
  }

  const Tensor* saved_probabilities() const override { return &P_; }

 protected:
  void check_length(std::int64_t n) const override {
    if (n > n_max_)
      throw UsageError(fmt::format("{}: sequence length {} exceeds n_max {} (E is k x n_max; set n_max= in the spec)",
                                   spec_string(), n, n_max_));
  }

  void core_forward(bool) override {
    const std::int64_t D = dim_;
    zero_padded_rows(K_);  // padded keys and values contribute nothing to the projection
    zero_padded_rows(V_);
    ensure(Kp_, {b_, k_, D}, MemCategory::activations, "linformer projected keys (b, k, D)");
    ensure(Vp_, {b_, k_, D}, MemCategory::activations, "linformer projected values (b, k, D)");
    ensure(P_, {b_, heads_, n_, k_}, MemCategory::activations, "linformer probabilities (b, h, n, k)");
    for (std::int64_t bi = 0; bi < b_; ++bi) {  // E is shared by the batch: one 2-D product each
      matmul(proj("e"), rows(K_, bi, n_), rows(Kp_, bi, k_));
      matmul(proj(separate_ ? "f" : "e"), rows(V_, bi, n_), rows(Vp_, bi, k_));
    }
    if (drop_.active()) ensure(dP_, P_.shape(), MemCategory::workspace, "linformer dP (b, h, n, k)");
    dense_attention_forward(heads_of(Q_, n_), heads_of(Kp_, k_), heads_of(Vp_, k_), nullptr, P_.data(),
                            heads_of(C_, n_), drop_, dP_.data());
  }

  void core_backward() override {
    ensure(dKp_, Kp_.shape(), MemCategory::workspace, "linformer dK'");
    ensure(dVp_, Vp_.shape(), MemCategory::workspace, "linformer dV'");
    ensure(dP_, P_.shape(), MemCategory::workspace, "linformer dP (b, h, n, k)");
    dense_attention_backward(heads_of(Q_, n_), heads_of(Kp_, k_), heads_of(Vp_, k_), P_.data(), heads_of(dC_, n_),
                             dP_.data(), heads_of(dQ_, n_), heads_of(dKp_, k_), heads_of(dVp_, k_), drop_);
    // dE[:, :n] += sum over batch of dK'_b (k x D) @ (K_b * m)^T (D x n); likewise for values.
    // dK_b = m * E^T dK'_b, dV_b = m * E^T dV'_b (or F^T).
    auto grad = [&](const char* name) { return MatRef::rowmajor(grad_of(name), k_, n_, n_max_); };
    const char* vproj = separate_ ? "f" : "e";
    for (std::int64_t bi = 0; bi < b_; ++bi) {
      matmul(rows(dKp_, bi, k_), rows(K_, bi, n_).t(), grad("e"), 1.0f, 1.0f);
      matmul(rows(dVp_, bi, k_), rows(V_, bi, n_).t(), grad(vproj), 1.0f, 1.0f);
      matmul(proj("e").t(), rows(dKp_, bi, k_), rows(dK_, bi, n_));
      matmul(proj(vproj).t(), rows(dVp_, bi, k_), rows(dV_, bi, n_));
    }
    zero_padded_rows(dK_);
    zero_padded_rows(dV_);
  }

  double core_flops(std::int64_t b, std::int64_t n) const override {
    return 4.0 * b * k_ * n * dim_ + 4.0 * b * heads_ * n * k_ * head_dim();
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return (2 * b * k_ * dim_ + b * heads_ * n * k_) * (with_backward ? 2 : 1);
  }

 private:
  // E[:, :n] (or F) as a (k x n) matrix.
  MatRef proj(const char* name) { return MatRef::rowmajor(value_of(name), k_, n_, n_max_); }
  // Example bi of a (b, count, D) buffer as a (count x D) matrix.
  MatRef rows(const Tensor& t, std::int64_t bi, std::int64_t count) const {
    return MatRef::rowmajor(t.data() + bi * count * dim_, count, dim_, dim_);
  }

  std::int64_t k_, n_max_;
  bool separate_;
  Tensor Kp_, Vp_, P_, dKp_, dVp_, dP_;
};

}  // namespace

namespace {

// float64 reference: keys and values projected along the sequence by E (and F, or E again), real
// positions only; every query attends to the k projected rows.
void reference_linformer(const ref::CoreInput& in, ref::Mat& C) {
  const std::int64_t k = ref::key_int(in.keys, "k"), n_max = ref::key_int(in.keys, "n_max"), D = in.D;
  const ref::Mat& E = in.P.at("e");
  const ref::Mat& F = in.keys.at("share") == "separate" ? in.P.at("f") : E;
  ref::Mat Kp(k * D, 0.0), Vp(k * D, 0.0);
  for (std::int64_t j = 0; j < k; ++j)
    for (std::int64_t t = 0; t < in.n; ++t)
      if (in.m[t])
        for (std::int64_t c = 0; c < D; ++c) {
          Kp[j * D + c] += E[j * n_max + t] * in.K[t * D + c];
          Vp[j * D + c] += F[j * n_max + t] * in.V[t * D + c];
        }
  for (std::int64_t i = 0; i < in.h; ++i)
    for (std::int64_t t = 0; t < in.n; ++t)
      in.attend(C, i, t, Kp, Vp, k, std::vector<bool>(k, true), k, [](std::int64_t j) { return j; });
}

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_linformer(std::unique_ptr<Attention> twin);  // attention_impls/cuda/dense.cu
#endif

LSB_VARIANT(linformer) {
  VariantInfo v;
  v.name = "linformer";
  v.summary = "low-rank projection of keys and values along the sequence (E: k x n_max)";
  v.keys = {{"k", "256"}, {"n_max", kLengthDefault}, {"share", "kv", "", {"kv", "separate"}}};
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<LinformerAttention>(keys.resolved(), dim, heads, keys.get_int("k", 1),
                                                keys.get_int("n_max", 1), keys.get_choice("share") == "separate");
  };
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_linformer);
  v.reference_core = reference_linformer;
  v.no_causal_reason = "its projection E mixes every position, the future included";
  v.prob_dropout = true;
  v.keys_from_weights = {{"n_max", "e", 1}};  // E is (k, n_max)
  v.default_spec = "linformer:k=256";
  v.in_default_sweep = true;
  v.in_lra_defaults = true;
  v.published_efficiency = {{"Linformer (LRA Table 2, TPU v3)", {9.3, 9.1, 8.5, 7.7}, {0.37, 0.55, 0.99, 0.99}}};
  return v;
}

}  // namespace lsb
