// full and linformer on the GPU: the dense softmax core (cuBLAS products, row softmax kernels),
// with the same buffers as attention_impls/full.cpp and linformer.cpp.
#include <string>

#include "attention_impls/cuda/projected.cuh"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/kernels.hpp"
#include "nn/errors.hpp"

namespace lsb {

void cuda_dense_attention_forward(const MatRef& Q, const MatRef& K, const MatRef& V, const std::uint8_t* key_mask,
                                  float* P, const MatRef& C, bool causal) {
  const std::int64_t h = Q.batch[1], nq = Q.rows, nk = K.rows;
  const MatRef Pv = probs_view(P, Q, nk);
  cuda::gemm(Q, K.t(), Pv);
  cuda::softmax_rows(P, key_mask, Q.batch[0] * h * nq, nk, h * nq, causal ? nq : 0);
  cuda::gemm(Pv, V, C);
}

void cuda_dense_attention_backward(const MatRef& Q, const MatRef& K, const MatRef& V, const float* P,
                                   const MatRef& dC, float* dP, const MatRef& dQ, const MatRef& dK, const MatRef& dV) {
  const std::int64_t nk = K.rows;
  const MatRef Pv = probs_view(P, Q, nk), dPv = probs_view(dP, Q, nk);
  cuda::gemm(Pv.t(), dC, dV);
  cuda::gemm(dC, V.t(), dPv);
  cuda::softmax_backward_rows(P, dP, Q.batch[0] * Q.batch[1] * Q.rows, nk);
  cuda::gemm(dPv, K, dQ);
  cuda::gemm(dPv.t(), Q, dK);
}

namespace {

class CudaFull final : public CudaProjectedAttention {
 public:
  explicit CudaFull(std::unique_ptr<Attention> twin) : CudaProjectedAttention(std::move(twin)) {}
  const Tensor* saved_probabilities() const override { return &P_; }

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    ensure_here(P_, {b_, heads_, n_, n_}, MemCategory::activations, "full attention probabilities (b, h, n, n)");
    cuda_dense_attention_forward(heads_of(Q_, n_), heads_of(K_, n_), heads_of(V_, n_), mask_, P_.data(),
                                 heads_of(C_, n_), causal_);
  }
  void core_backward() override {
    ensure_here(dP_, P_.shape(), MemCategory::workspace, "full attention dP (b, h, n, n)");
    cuda_dense_attention_backward(heads_of(Q_, n_), heads_of(K_, n_), heads_of(V_, n_), P_.data(), heads_of(dC_, n_),
                                  dP_.data(), heads_of(dQ_, n_), heads_of(dK_, n_), heads_of(dV_, n_));
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return b * heads_ * n * n * (with_backward ? 2 : 1);
  }

 private:
  Tensor P_, dP_;
};

class CudaLinformer final : public CudaProjectedAttention {
 public:
  explicit CudaLinformer(std::unique_ptr<Attention> twin)
      : CudaProjectedAttention(std::move(twin)),
        k_(int_param("k")),
        n_max_(int_param("n_max")),
        separate_(resolved_.at("share") == "separate") {}
  const Tensor* saved_probabilities() const override { return &P_; }

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    const std::int64_t D = dim_;
    cuda::zero_masked_rows(K_.data(), mask_, b_ * n_, D);
    cuda::zero_masked_rows(V_.data(), mask_, b_ * n_, D);
    ensure_here(Kp_, {b_, k_, D}, MemCategory::activations, "linformer projected keys (b, k, D)");
    ensure_here(Vp_, {b_, k_, D}, MemCategory::activations, "linformer projected values (b, k, D)");
    ensure_here(P_, {b_, heads_, n_, k_}, MemCategory::activations, "linformer probabilities (b, h, n, k)");
    // E (k x n) is shared by the batch: one batched product with batch stride 0 on E.
    cuda::gemm(proj("e").batched(b_, 0), rows(K_, n_), rows(Kp_, k_));
    cuda::gemm(proj(separate_ ? "f" : "e").batched(b_, 0), rows(V_, n_), rows(Vp_, k_));
    cuda_dense_attention_forward(heads_of(Q_, n_), heads_of(Kp_, k_), heads_of(Vp_, k_), nullptr, P_.data(),
                                 heads_of(C_, n_));
  }
  void core_backward() override {
    ensure_here(dKp_, Kp_.shape(), MemCategory::workspace, "linformer dK'");
    ensure_here(dVp_, Vp_.shape(), MemCategory::workspace, "linformer dV'");
    ensure_here(dP_, P_.shape(), MemCategory::workspace, "linformer dP (b, h, n, k)");
    cuda_dense_attention_backward(heads_of(Q_, n_), heads_of(Kp_, k_), heads_of(Vp_, k_), P_.data(),
                                  heads_of(dC_, n_), dP_.data(), heads_of(dQ_, n_), heads_of(dKp_, k_),
                                  heads_of(dVp_, k_));
    const char* vproj = separate_ ? "f" : "e";
    auto grad = [&](const char* name) { return MatRef::rowmajor(grad_of(name), k_, n_, n_max_); };
    for (std::int64_t bi = 0; bi < b_; ++bi) {  // dE[:, :n] += dK'_b (K_b * m)^T, summed over the batch
      cuda::gemm(row_block(dKp_, bi, k_), row_block(K_, bi, n_).t(), grad("e"), 1.0f, 1.0f);
      cuda::gemm(row_block(dVp_, bi, k_), row_block(V_, bi, n_).t(), grad(vproj), 1.0f, 1.0f);
    }
    cuda::gemm(proj("e").t().batched(b_, 0), rows(dKp_, k_), rows(dK_, n_));
    cuda::gemm(proj(vproj).t().batched(b_, 0), rows(dVp_, k_), rows(dV_, n_));
    cuda::zero_masked_rows(dK_.data(), mask_, b_ * n_, dim_);
    cuda::zero_masked_rows(dV_.data(), mask_, b_ * n_, dim_);
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return (2 * b * k_ * dim_ + b * heads_ * n * k_) * (with_backward ? 2 : 1);
  }

 private:
  MatRef proj(const char* name) { return MatRef::rowmajor(value_of(name), k_, n_, n_max_); }
  // A (b, count, D) buffer as a batch of b (count x D) matrices, or example bi of it.
  MatRef rows(const Tensor& t, std::int64_t count) const {
    return MatRef::rowmajor(t.data(), count, dim_, dim_).batched(b_, count * dim_);
  }
  MatRef row_block(const Tensor& t, std::int64_t bi, std::int64_t count) const {
    return MatRef::rowmajor(t.data() + bi * count * dim_, count, dim_, dim_);
  }
  std::int64_t k_, n_max_;
  bool separate_;
  Tensor Kp_, Vp_, P_, dKp_, dVp_, dP_;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_full(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaFull>(std::move(twin));
}
std::unique_ptr<Attention> make_cuda_linformer(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaLinformer>(std::move(twin));
}

}  // namespace lsb
