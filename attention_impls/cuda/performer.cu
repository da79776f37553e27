// performer on the GPU: FAVOR+ as attention_impls/performer.cpp computes it (definition in
// docs/VARIANTS.md), every (batch, head) at once: cuBLAS for the feature projections (the random
// features W shared through a zero batch stride), B^T V, A S and their gradients; one block per row for
// the feature maps and normalisers. Deterministic: fixed-order reductions, no atomics.
#include <cmath>
#include <vector>

#include "attention_impls/cuda/projected.cuh"
#include "attention_impls/random_features.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/device.hpp"

namespace lsb {
namespace {

constexpr int kThreads = 256;

// Sum or maximum over the block (kThreads threads); every thread gets the result.
template <bool kMax>
__device__ float block_reduce(float v, float* shared /* kThreads / 32 */) {
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  __syncthreads();
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
  __syncthreads();
  float r = shared[0];
  for (int i = 1; i < kThreads / 32; ++i) r = kMax ? fmaxf(r, shared[i]) : r + shared[i];
  return r;
}

// Row r = (bh, t) of X (b, n, D) restricted to head h: its (d) elements.
template <typename T>
__device__ __forceinline__ T* head_row(T* X, std::int64_t r, std::int64_t n, std::int64_t heads, std::int64_t d) {
  const std::int64_t bh = r / n, t = r % n, bi = bh / heads, hi = bh % heads;
  return X + (bi * n + t) * heads * d + hi * d;
}

// s^2 |x|^2 / 2 for the head row of X, block-wide.
__device__ float half_norm(const float* x, std::int64_t d, float s, float* shared) {
  float q2 = 0;
  for (std::int64_t c = threadIdx.x; c < d; c += blockDim.x) q2 += x[c] * x[c];
  return 0.5f * s * s * block_reduce<false>(q2, shared);
}

// Keys, pass 1: for each real row, max_j s P[j] - s^2 |k|^2 / 2 (padded rows: -inf). One block per row.
__global__ void key_row_max_kernel(const float* P, const float* K, const std::uint8_t* mask, std::int64_t n,
                                   std::int64_t heads, std::int64_t d, std::int64_t m, float s, float* row_max) {
  __shared__ float shared[kThreads / 32];
  const std::int64_t r = blockIdx.x, bi = r / n / heads, t = r % n;
  const float hn = half_norm(head_row(K, r, n, heads, d), d, s, shared);
  float mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) mx = fmaxf(mx, P[r * m + j]);
  mx = block_reduce<true>(mx, shared);
  if (threadIdx.x == 0) row_max[r] = mask[bi * n + t] ? s * mx - hn : -INFINITY;
}

// Keys, pass 2: the maximum over the rows of each (batch, head), in row order.
__global__ void group_max_kernel(const float* row_max, std::int64_t n, float* group_max) {
  __shared__ float shared[kThreads / 32];
  const std::int64_t g = blockIdx.x;
  float mx = -INFINITY;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) mx = fmaxf(mx, row_max[g * n + t]);
  mx = block_reduce<true>(mx, shared);
  if (threadIdx.x == 0) group_max[g] = mx;
}

// P (rows, m) holds w . x; makes it exp(s w.x - s^2|x|^2/2 - c) / sqrt(m), c the row's own maximum
// exponent (queries: group_max null) or its group's (keys, padded rows 0). One block per row.
__global__ void features_kernel(float* P, const float* X, const std::uint8_t* mask, const float* group_max,
                                std::int64_t n, std::int64_t heads, std::int64_t d, std::int64_t m, float s,
                                float inv_sqrt_m) {
  __shared__ float shared[kThreads / 32];
  const std::int64_t r = blockIdx.x, bi = r / n / heads, t = r % n;
  float* row = P + r * m;
  if (group_max && !mask[bi * n + t]) {
    for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = 0.0f;
    return;
  }
  const float hn = half_norm(head_row(X, r, n, heads, d), d, s, shared);
  float c;
  if (group_max) {
    c = group_max[r / n];
  } else {
    float mx = -INFINITY;
    for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) mx = fmaxf(mx, row[j]);
    c = s * block_reduce<true>(mx, shared) - hn;
  }
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = expf(s * row[j] - hn - c) * inv_sqrt_m;
}

// out[g, j] = sum_t P[g, t, j] * (w ? w[g, t] : 1), rows in order; one thread per (group, feature).
__global__ void weighted_column_sums_kernel(const float* P, const float* w, std::int64_t groups, std::int64_t n,
                                            std::int64_t m, float* out) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= groups * m) return;
  const std::int64_t g = i / m, j = i % m;
  float s = 0;
  for (std::int64_t t = 0; t < n; ++t) s += P[(g * n + t) * m + j] * (w ? w[g * n + t] : 1.0f);
  out[i] = s;
}

// den[r] = A[r] . z[group]; the head row of C divided by it (0 when it is 0). One block per row.
__global__ void normalise_kernel(const float* A, const float* z, std::int64_t n, std::int64_t heads, std::int64_t d,
                                 std::int64_t m, float* den, float* C) {
  __shared__ float shared[kThreads / 32];
  const std::int64_t r = blockIdx.x;
  float s = 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) s += A[r * m + j] * z[(r / n) * m + j];
  s = block_reduce<false>(s, shared);
  if (threadIdx.x == 0) den[r] = s;
  float* c = head_row(C, r, n, heads, d);
  const float inv = s > 0 ? 1.0f / s : 0.0f;
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) c[e] *= inv;
}

// d num = dC / den (rows of (b, h, n, d)), d den = -(dC . C) / den. One block per row.
__global__ void normaliser_backward_kernel(const float* dC, const float* C, const float* den, std::int64_t n,
                                           std::int64_t heads, std::int64_t d, float* dnum, float* dden) {
  __shared__ float shared[kThreads / 32];
  const std::int64_t r = blockIdx.x;
  const float *dc = head_row(dC, r, n, heads, d), *c = head_row(C, r, n, heads, d);
  const float inv = den[r] > 0 ? 1.0f / den[r] : 0.0f;
  float dot = 0;
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) {
    dnum[r * d + e] = dc[e] * inv;
    dot += dc[e] * c[e];
  }
  dot = block_reduce<false>(dot, shared);
  if (threadIdx.x == 0) dden[r] = -dot * inv;
}

// dA += dden z^T; one thread per element of dA.
__global__ void add_outer_kernel(float* dA, const float* dden, const float* z, std::int64_t n, std::int64_t m,
                                 std::int64_t total) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t r = i / m, j = i % m;
  dA[i] += dden[r] * z[(r / n) * m + j];
}

// dB = mask ? dB + dz[group] : 0; one thread per element.
__global__ void key_grad_kernel(float* dB, const float* dz, const std::uint8_t* mask, std::int64_t n,
                                std::int64_t heads, std::int64_t m, std::int64_t total) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t r = i / m, j = i % m, g = r / n, bi = g / heads, t = r % n;
  dB[i] = mask[bi * n + t] ? dB[i] + dz[g * m + j] : 0.0f;
}

// G = dP * P in place, rowsum[r] = sum_j G[r, j]. One block per row.
__global__ void feature_grad_kernel(float* dP, const float* P, std::int64_t m, float* rowsum) {
  __shared__ float shared[kThreads / 32];
  const std::int64_t r = blockIdx.x;
  float s = 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) s += (dP[r * m + j] *= P[r * m + j]);
  s = block_reduce<false>(s, shared);
  if (threadIdx.x == 0) rowsum[r] = s;
}

// dX = s dX - s^2 rowsum x on the head rows; one thread per element of the (b, n, D) buffer.
__global__ void feature_input_grad_kernel(float* dX, const float* X, const float* rowsum, std::int64_t b,
                                          std::int64_t n, std::int64_t heads, std::int64_t d, float s) {
  const std::int64_t D = heads * d, i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * n * D) return;
  const std::int64_t c = i % D, t = (i / D) % n, bi = i / (n * D), hi = c / d;
  const std::int64_t r = (bi * heads + hi) * n + t;
  dX[i] = s * dX[i] - s * s * rowsum[r] * X[i];
}

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
    }
    ensure_here(A_, {b_, heads_, n, m}, MemCategory::activations, "performer query features (b, h, n, m)");
    ensure_here(B_, {b_, heads_, n, m}, MemCategory::activations, "performer key features (b, h, n, m)");
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
    return f;
  }

 private:
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
};

}  // namespace

std::unique_ptr<Attention> make_cuda_performer(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaPerformer>(std::move(twin));
}

}  // namespace lsb
