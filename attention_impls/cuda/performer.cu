// performer on the GPU: FAVOR+ as attention_impls/performer.cpp computes it (definition in
// docs/VARIANTS.md), every (batch, head) at once: cuBLAS for the feature projections (the random
// features W shared through a zero batch stride), B^T V, A S and their gradients; one block per row for
// the feature maps and normalisers. Deterministic: fixed-order reductions, no atomics. Causal: see the
// kernels' section (attention_impls/cuda/performer_kernels.cuh, in the kernel dialect: the CPU tests run
// them on an emulated thread block).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "attention_impls/cuda/projected.cuh"
#include "attention_impls/random_features.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/device.hpp"

namespace lsb {
namespace {

#include "nn/cuda/kernel_dialect.cuh"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/performer_kernels.cuh"

class CudaPerformer final : public CudaProjectedAttention {
 public:
  explicit CudaPerformer(std::unique_ptr<Attention> twin)
      : CudaProjectedAttention(std::move(twin)), m_(int_param("features")),
        seed_(static_cast<std::uint64_t>(int_param("seed"))) {}

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    const std::int64_t d = head_dim(), m = m_, n = n_, bh = b_ * heads_, rows = bh * n;
    if (!omega_.defined()) {  // the CPU module's features, drawn from the same seed
      ensure_here(omega_, {m, d}, MemCategory::activations, "performer random features (m, d)");
      const auto w = performer_features(d, m, seed_);
      std::vector<float> host(w.begin(), w.end());
      cuda::copy(omega_.data(), host.data(), host.size() * sizeof(float));
      if (causal_) {  // |w_j|^2 / 2, summed as the CPU module does
        ensure_here(half_w2_, {m}, MemCategory::activations, "performer |w_j|^2 / 2 (m)");
        std::vector<float> h2(static_cast<std::size_t>(m));
        for (std::int64_t j = 0; j < m; ++j) {
          float sq2 = 0;
          for (std::int64_t c = 0; c < d; ++c) sq2 += host[j * d + c] * host[j * d + c];
          h2[j] = 0.5f * sq2;
        }
        cuda::copy(half_w2_.data(), h2.data(), h2.size() * sizeof(float));
      }
    }
    ensure_here(A_, {b_, heads_, n, m}, MemCategory::activations, "performer query features (b, h, n, m)");
    ensure_here(B_, {b_, heads_, n, m}, MemCategory::activations, "performer key features (b, h, n, m)");
    if (causal_) return causal_forward();
    ensure_here(S_, {b_, heads_, m, d}, MemCategory::activations, "performer B^T V (b, h, m, d)");
    ensure_here(z_, {b_, heads_, m}, MemCategory::activations, "performer B^T 1 (b, h, m)");
    ensure_here(den_, {b_, heads_, n}, MemCategory::activations, "performer normalisers (b, h, n)");
    ensure_here(keymax_, {bh * n + bh}, MemCategory::workspace, "performer key exponent maxima (b*h*n + b*h)");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq, inv_sqrt_m = 1.0f / std::sqrt(float(m));
    const unsigned row_blocks = static_cast<unsigned>(rows);

    cuda::gemm(heads_of(Q_, n), omega_all(), features_of(A_.data()));
    cuda::gemm(heads_of(K_, n), omega_all(), features_of(B_.data()));
    features_kernel<<<row_blocks, kThreads>>>(A_.data(), Q_.data(), mask_, nullptr, n, heads_, d, m, sq, inv_sqrt_m);
    LSB_CUDA_LAUNCHED();
    float *row_max = keymax_.data(), *group_max = row_max + rows;
    key_row_max_kernel<<<row_blocks, kThreads>>>(B_.data(), K_.data(), mask_, n, heads_, d, m, sk, row_max);
    LSB_CUDA_LAUNCHED();
    group_max_kernel<<<static_cast<unsigned>(bh), kThreads>>>(row_max, n, group_max);
    LSB_CUDA_LAUNCHED();
    features_kernel<<<row_blocks, kThreads>>>(B_.data(), K_.data(), mask_, group_max, n, heads_, d, m, sk,
                                              inv_sqrt_m);
    LSB_CUDA_LAUNCHED();

    cuda::gemm(features_of(B_.data()).t(), heads_of(V_, n), per_feature(S_.data()));  // S = B^T V
    weighted_column_sums_kernel<<<LSB_BLOCKS(bh * m, kThreads), kThreads>>>(B_.data(), nullptr, bh, n, m, z_.data());
    LSB_CUDA_LAUNCHED();
    cuda::gemm(features_of(A_.data()), per_feature(S_.data()), heads_of(C_, n));  // numerator A S
    normalise_kernel<<<row_blocks, kThreads>>>(A_.data(), z_.data(), n, heads_, d, m, den_.data(), C_.data());
    LSB_CUDA_LAUNCHED();
  }

  void core_backward() override {
    const std::int64_t d = head_dim(), m = m_, n = n_, bh = b_ * heads_, rows = bh * n;
    ensure_here(dA_, A_.shape(), MemCategory::workspace, "performer dA (b, h, n, m)");
    ensure_here(dB_, B_.shape(), MemCategory::workspace, "performer dB (b, h, n, m)");
    ensure_here(dnum_, {b_, heads_, n, d}, MemCategory::workspace, "performer d numerator (b, h, n, d)");
    if (causal_) return causal_backward();
    ensure_here(dS_, {b_, heads_, m, d}, MemCategory::workspace, "performer dS (b, h, m, d)");
    ensure_here(small_, {2 * rows + bh * m}, MemCategory::workspace, "performer d normaliser, row sums, dz");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq;
    const unsigned row_blocks = static_cast<unsigned>(rows);
    float *dden = small_.data(), *rowsum = dden + rows, *dz = rowsum + rows;
    const MatRef dnum = MatRef::rowmajor(dnum_.data(), n, d, d).batched(b_, heads_ * n * d, heads_, n * d);

    normaliser_backward_kernel<<<row_blocks, kThreads>>>(dC_.data(), C_.data(), den_.data(), n, heads_, d,
                                                         dnum_.data(), dden);
    LSB_CUDA_LAUNCHED();
    // num = A S, den = A z: dA = dnum S^T + dden z^T, dS = A^T dnum, dz = A^T dden.
    cuda::gemm(dnum, per_feature(S_.data()).t(), features_of(dA_.data()));
    cuda::gemm(features_of(A_.data()).t(), dnum, per_feature(dS_.data()));
    weighted_column_sums_kernel<<<LSB_BLOCKS(bh * m, kThreads), kThreads>>>(A_.data(), dden, bh, n, m, dz);
    LSB_CUDA_LAUNCHED();
    add_outer_kernel<<<LSB_BLOCKS(rows * m, kThreads), kThreads>>>(dA_.data(), dden, z_.data(), n, m, rows * m);
    LSB_CUDA_LAUNCHED();
    // S = B^T V, z = B^T 1: dB = V dS^T + 1 dz^T (padded keys 0), dV = B dS.
    cuda::gemm(heads_of(V_, n), per_feature(dS_.data()).t(), features_of(dB_.data()));
    key_grad_kernel<<<LSB_BLOCKS(rows * m, kThreads), kThreads>>>(dB_.data(), dz, mask_, n, heads_, m, rows * m);
    LSB_CUDA_LAUNCHED();
    cuda::gemm(features_of(B_.data()), per_feature(dS_.data()), heads_of(dV_, n));
    feature_backward(dA_.data(), A_.data(), Q_, sq, dQ_, rowsum);
    feature_backward(dB_.data(), B_.data(), K_, sk, dK_, rowsum);
  }

  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t d = head_dim(), bh = b * heads_;
    // W; A and B; S, z, the normalisers and the key maxima. Backward: dA, dB, d num, dS and the small ones.
    std::int64_t f = m_ * d + 2 * bh * n * m_ + bh * m_ * d + bh * m_ + bh * n + bh * n + bh;
    if (with_backward) f += 2 * bh * n * m_ + bh * n * d + bh * m_ * d + 2 * bh * n + bh * m_;
    if (causal_) {  // W, |w|^2/2, A, B, the states, den; backward: dA, dB, d num, the gradient states, d den, row sums
      const std::int64_t states = bh * ((n + kChunk - 1) / kChunk) * (m_ * d + m_);
      f = m_ * d + m_ + 2 * bh * n * m_ + states + bh * n;
      if (with_backward) f += 2 * bh * n * m_ + bh * n * d + states + 2 * bh * n;
    }
    return f;
  }

 private:
  void causal_forward() {
    const std::int64_t d = head_dim(), m = m_, n = n_, bh = b_ * heads_, rows = bh * n, nc = (n + kChunk - 1) / kChunk;
    ensure_here(states_, {bh, nc, m * d + m}, MemCategory::activations, "performer causal states (b, h, n/L, m*d + m)");
    ensure_here(den_, {b_, heads_, n}, MemCategory::activations, "performer normalisers (b, h, n)");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq, inv_sqrt_m = 1.0f / std::sqrt(float(m));
    const unsigned row_blocks = static_cast<unsigned>(rows);
    cuda::gemm(heads_of(Q_, n), omega_all(), features_of(A_.data()));
    cuda::gemm(heads_of(K_, n), omega_all(), features_of(B_.data()));
    causal_features_kernel<<<row_blocks, kThreads>>>(A_.data(), Q_.data(), mask_, half_w2_.data(), true, n, heads_, d,
                                                     m, sq, inv_sqrt_m);
    LSB_CUDA_LAUNCHED();
    causal_features_kernel<<<row_blocks, kThreads>>>(B_.data(), K_.data(), mask_, half_w2_.data(), false, n, heads_, d,
                                                     m, sk, inv_sqrt_m);
    LSB_CUDA_LAUNCHED();
    chunk_products_kernel<<<static_cast<unsigned>(bh * nc), kThreads>>>(B_.data(), rows_of(V_), nullptr, n, m, d,
                                                                       states_.data());
    LSB_CUDA_LAUNCHED();
    chunk_prefix_kernel<<<LSB_BLOCKS(bh * (m * d + m), kThreads), kThreads>>>(states_.data(), bh, nc, m * d + m, false);
    LSB_CUDA_LAUNCHED();
    causal_output_kernel<<<row_blocks, kThreads>>>(A_.data(), B_.data(), rows_of(V_), states_.data(), n, heads_, m, d,
                                                   C_.data(), den_.data());
    LSB_CUDA_LAUNCHED();
  }

  void causal_backward() {
    const std::int64_t d = head_dim(), m = m_, n = n_, bh = b_ * heads_, rows = bh * n, nc = (n + kChunk - 1) / kChunk;
    ensure_here(gstates_, states_.shape(), MemCategory::workspace, "performer causal state gradients (b, h, n/L, m*d + m)");
    ensure_here(small_, {2 * rows}, MemCategory::workspace, "performer d normaliser, row sums");
    const float sq = std::pow(static_cast<float>(d), 0.25f), sk = 1.0f / sq;
    const unsigned row_blocks = static_cast<unsigned>(rows);
    float *dden = small_.data(), *rowsum = dden + rows;
    normaliser_backward_kernel<<<row_blocks, kThreads>>>(dC_.data(), C_.data(), den_.data(), n, heads_, d,
                                                         dnum_.data(), dden);
    LSB_CUDA_LAUNCHED();
    const HeadRowsOf dnum{dnum_.data(), heads_, heads_ * n * d, n * d, d};
    chunk_products_kernel<<<static_cast<unsigned>(bh * nc), kThreads>>>(A_.data(), dnum, dden, n, m, d,
                                                                       gstates_.data());
    LSB_CUDA_LAUNCHED();
    chunk_prefix_kernel<<<LSB_BLOCKS(bh * (m * d + m), kThreads), kThreads>>>(gstates_.data(), bh, nc, m * d + m, true);
    LSB_CUDA_LAUNCHED();
    causal_query_grad_kernel<<<row_blocks, kThreads>>>(B_.data(), rows_of(V_), states_.data(), dnum_.data(), dden, n,
                                                       m, d, dA_.data());
    LSB_CUDA_LAUNCHED();
    causal_key_grad_kernel<<<row_blocks, kThreads>>>(A_.data(), B_.data(), rows_of(V_), mask_, gstates_.data(),
                                                     dnum_.data(), dden, n, heads_, m, d, dB_.data(), dV_.data());
    LSB_CUDA_LAUNCHED();
    feature_backward(dA_.data(), A_.data(), Q_, sq, dQ_, rowsum);
    feature_backward(dB_.data(), B_.data(), K_, sk, dK_, rowsum);
  }
  // The head rows of a (b, n, D) buffer.
  HeadRowsOf rows_of(const Tensor& t) const { return {t.data(), heads_, n_ * dim_, head_dim(), dim_}; }

  // G = dP * P, dX = s (G W) - s^2 rowsum(G) x, for the head rows of X and dX (b, n, D).
  void feature_backward(float* dP, const float* P, const Tensor& X, float s, Tensor& dX, float* rowsum) {
    const std::int64_t rows = b_ * heads_ * n_;
    feature_grad_kernel<<<static_cast<unsigned>(rows), kThreads>>>(dP, P, m_, rowsum);
    LSB_CUDA_LAUNCHED();
    cuda::gemm(features_of(dP), omega_all().t(), heads_of(dX, n_));
    feature_input_grad_kernel<<<LSB_BLOCKS(b_ * n_ * dim_, kThreads), kThreads>>>(dX.data(), X.data(), rowsum, b_, n_,
                                                                                  heads_, head_dim(), s);
    LSB_CUDA_LAUNCHED();
  }

  // W^T (d x m) for every (batch, head): one matrix through zero batch strides.
  MatRef omega_all() const { return MatRef::rowmajor(omega_.data(), m_, head_dim(), head_dim()).t().batched(b_, 0, heads_, 0); }
  // A (b, h, n, m) buffer of features as a (b, h) batch of (n x m) matrices.
  MatRef features_of(const float* p) const {
    return MatRef::rowmajor(p, n_, m_, m_).batched(b_, heads_ * n_ * m_, heads_, n_ * m_);
  }
  // A (b, h, m, d) buffer as a (b, h) batch of (m x d) matrices.
  MatRef per_feature(const float* p) const {
    const std::int64_t d = head_dim();
    return MatRef::rowmajor(p, m_, d, d).batched(b_, heads_ * m_ * d, heads_, m_ * d);
  }

  std::int64_t m_;
  std::uint64_t seed_;
  Tensor omega_, A_, B_, S_, z_, den_, keymax_, dA_, dB_, dnum_, dS_, small_;
  Tensor half_w2_, states_, gstates_;  // causal only
};

}  // namespace

std::unique_ptr<Attention> make_cuda_performer(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaPerformer>(std::move(twin));
}

}  // namespace lsb
