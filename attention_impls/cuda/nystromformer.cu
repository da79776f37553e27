// nystromformer on the GPU: the buffers, products and order of attention_impls/nystromformer.cpp
// (definition in docs/VARIANTS.md), with cuBLAS for every product and small kernels for the landmark
// means, the masked rows, the pseudo-inverse's start and the depthwise convolution. Deterministic:
// every output element is written by one thread, and reductions run in a fixed order.
#include <algorithm>

#include "attention_impls/cuda/projected.cuh"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/device.hpp"
#include "nn/cuda/kernels.hpp"

namespace lsb {
namespace {

constexpr int kThreads = 256;

// First position of segment j of the even split of n positions into me segments.
__device__ __forceinline__ std::int64_t seg_begin(std::int64_t j, std::int64_t n, std::int64_t me) {
  return j * n / me;
}

// L (b, me, D) = mean of the real rows of X (b, n, D) per segment; count (b, me) and the landmark
// mask (b * me bytes) written by the thread of column 0. One thread per (example, landmark, column).
__global__ void landmark_means_kernel(const float* X, const std::uint8_t* mask, std::int64_t b, std::int64_t n,
                                      std::int64_t me, std::int64_t D, float* L, float* count, std::uint8_t* lmask) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * me * D) return;
  const std::int64_t g = i / D, c = i % D, bi = g / me, j = g % me;
  float s = 0;
  std::int64_t real = 0;
  for (std::int64_t t = seg_begin(j, n, me); t < seg_begin(j + 1, n, me); ++t)
    if (mask[bi * n + t]) {
      ++real;
      s += X[(bi * n + t) * D + c];
    }
  L[i] = real > 0 ? s * (1.0f / static_cast<float>(real)) : 0.0f;
  if (c == 0) {
    count[g] = static_cast<float>(real);
    lmask[g] = real > 0;
  }
}

// dX (b, n, D) += dL spread evenly over each segment's real rows (segments are disjoint).
__global__ void landmark_means_backward_kernel(const float* dL, const float* count, const std::uint8_t* mask,
                                               std::int64_t b, std::int64_t n, std::int64_t me, std::int64_t D,
                                               float* dX) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * me * D) return;
  const std::int64_t g = i / D, c = i % D, bi = g / me, j = g % me;
  if (count[g] == 0) return;
  const float v = dL[i] / count[g];
  for (std::int64_t t = seg_begin(j, n, me); t < seg_begin(j + 1, n, me); ++t)
    if (mask[bi * n + t]) dX[(bi * n + t) * D + c] += v;
}

// Rows (example, head, j) of a (b, h, me, cols) buffer set to 0 where landmark j of the example is padded.
__global__ void zero_padded_landmark_rows_kernel(float* P, const std::uint8_t* lmask, std::int64_t b, std::int64_t h,
                                                 std::int64_t me, std::int64_t cols) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * h * me * cols) return;
  const std::int64_t row = i / cols, bi = row / (h * me), j = row % me;
  if (!lmask[bi * me + j]) P[i] = 0.0f;
}

// Column sums of each (me x me) matrix of A: sums (bh, me).
__global__ void column_sums_kernel(const float* A, std::int64_t bh, std::int64_t me, float* sums) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= bh * me) return;
  const std::int64_t g = i / me, l = i % me;
  float s = 0;
  for (std::int64_t j = 0; j < me; ++j) s += A[(g * me + j) * me + l];
  sums[i] = s;
}

// colmax (2, bh): the largest column sum per matrix and its column (the first one that attains it).
__global__ void column_max_kernel(const float* sums, std::int64_t bh, std::int64_t me, float* colmax) {
  const std::int64_t g = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (g >= bh) return;
  float c = 0;
  std::int64_t arg = 0;
  for (std::int64_t l = 0; l < me; ++l)
    if (sums[g * me + l] > c) c = sums[g * me + l], arg = l;
  colmax[g] = c;
  colmax[bh + g] = static_cast<float>(arg);
}

// Z0 = A^T / c per matrix (0 when c = 0).
__global__ void scaled_transpose_kernel(const float* A, const float* colmax, std::int64_t bh, std::int64_t me,
                                        float* Z0) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= bh * me * me) return;
  const std::int64_t g = i / (me * me), j = (i / me) % me, l = i % me;
  const float c = colmax[g];
  Z0[i] = c > 0 ? A[(g * me + l) * me + j] / c : 0.0f;
}

// out = s I - in for every (me x me) matrix.
__global__ void shifted_identity_kernel(float s, const float* in, std::int64_t total, std::int64_t me, float* out) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t r = i % (me * me);
  out[i] = (r / me == r % me ? s : 0.0f) - in[i];
}

// Through Z0 = A^T / c, one block per matrix: dA += G^T / c; dA[:, l*] -= sum(G * Z0) / c.
__global__ void scaled_transpose_backward_kernel(const float* G, const float* Z0, const float* colmax,
                                                 std::int64_t bh, std::int64_t me, float* dA) {
  __shared__ float partial[kThreads];
  const std::int64_t g = blockIdx.x;
  const float c = colmax[g];
  if (c <= 0) return;  // uniform across the block
  const float* gz = G + g * me * me;
  const float* z0 = Z0 + g * me * me;
  float* da = dA + g * me * me;
  float s = 0;
  for (std::int64_t i = threadIdx.x; i < me * me; i += blockDim.x) s += gz[i] * z0[i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float dc = -partial[0] / c;
  for (std::int64_t i = threadIdx.x; i < me * me; i += blockDim.x) {
    const std::int64_t j = i / me, l = i % me;
    da[l * me + j] += gz[i] / c;
  }
  __syncthreads();
  const std::int64_t arg = static_cast<std::int64_t>(colmax[bh + g]);
  for (std::int64_t j = threadIdx.x; j < me; j += blockDim.x) da[j * me + arg] += dc;
}

// C[t] += sum_k w[head, k] m[s] V[s], s = t + k - K/2; one thread per element of C (b, n, D).
__global__ void conv_forward_kernel(const float* V, const std::uint8_t* mask, const float* w, std::int64_t b,
                                    std::int64_t n, std::int64_t D, std::int64_t d, std::int64_t K, float* C) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * n * D) return;
  const std::int64_t c = i % D, t = (i / D) % n, bi = i / (n * D), head = c / d;
  float s = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    const std::int64_t src = t + k - K / 2;
    if (src >= 0 && src < n && mask[bi * n + src]) s += w[head * K + k] * V[(bi * n + src) * D + c];
  }
  C[i] += s;
}

// dV[s] += m[s] sum_k w[head, k] dC[s - k + K/2]; one thread per element of dV.
__global__ void conv_backward_input_kernel(const float* dC, const std::uint8_t* mask, const float* w, std::int64_t b,
                                           std::int64_t n, std::int64_t D, std::int64_t d, std::int64_t K, float* dV) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * n * D) return;
  const std::int64_t c = i % D, s = (i / D) % n, bi = i / (n * D), head = c / d;
  if (!mask[bi * n + s]) return;
  float acc = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    const std::int64_t t = s - k + K / 2;
    if (t >= 0 && t < n) acc += w[head * K + k] * dC[(bi * n + t) * D + c];
  }
  dV[i] += acc;
}

// dw[head, k] += sum over examples, positions and the head's channels of dC[t] m[s] V[s]; one block
// per tap, a fixed-order tree reduction.
__global__ void conv_backward_weight_kernel(const float* dC, const float* V, const std::uint8_t* mask,
                                            std::int64_t b, std::int64_t n, std::int64_t D, std::int64_t d,
                                            std::int64_t K, float* dw) {
  __shared__ float partial[kThreads];
  const std::int64_t head = blockIdx.x / K, k = blockIdx.x % K;
  float s = 0;
  for (std::int64_t i = threadIdx.x; i < b * n * d; i += blockDim.x) {
    const std::int64_t c = head * d + i % d, t = (i / d) % n, bi = i / (n * d), src = t + k - K / 2;
    if (src >= 0 && src < n && mask[bi * n + src]) s += dC[(bi * n + t) * D + c] * V[(bi * n + src) * D + c];
  }
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) dw[blockIdx.x] += partial[0];
}

// The CPU module's slots (attention_impls/nystromformer.cpp). kAt, kZt and kTt hold explicit transposes
// there; cuBLAS transposes operands itself, so here they stay unused, kept so that both devices have
// one buffer plan (nystromformer_core_floats).
enum PinvSlot : std::int64_t { kT, kU1, kU2, kU3, kX, kdX, kdT, kG, kGnext, kdA, kAt, kZt, kTt, kPinvSlots };

class CudaNystromformer final : public CudaProjectedAttention {
 public:
  explicit CudaNystromformer(std::unique_ptr<Attention> twin)
      : CudaProjectedAttention(std::move(twin)), m_(int_param("m")), iters_(int_param("iters")),
        conv_(int_param("conv")) {}

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    const std::int64_t D = dim_, n = n_, me = std::min(m_, n), bh = b_ * heads_;
    me_ = me;
    ensure_here(Ql_, {b_, me, D}, MemCategory::activations, "nystromformer query landmarks (b, m, D)");
    ensure_here(Kl_, {b_, me, D}, MemCategory::activations, "nystromformer key landmarks (b, m, D)");
    ensure_here(count_, {b_, me}, MemCategory::activations, "nystromformer real tokens per landmark (b, m)");
    ensure_here(lmask_, {(b_ * me + 3) / 4}, MemCategory::activations, "nystromformer landmark mask (b*m bytes)");
    ensure_here(P1_, {b_, heads_, n, me}, MemCategory::activations, "nystromformer kernel 1 (b, h, n, m)");
    ensure_here(P2_, {b_, heads_, me, me}, MemCategory::activations, "nystromformer kernel 2 (b, h, m, m)");
    ensure_here(P3_, {b_, heads_, me, n}, MemCategory::activations, "nystromformer kernel 3 (b, h, m, n)");
    ensure_here(Z_, {iters_ + 1, b_, heads_, me, me}, MemCategory::activations, "nystromformer pinv iterates");
    ensure_here(colmax_, {2, bh}, MemCategory::activations, "nystromformer pinv scale and its column (2, b, h)");
    ensure_here(W_, {b_, me, D}, MemCategory::activations, "nystromformer K3 V (b, m, D)");
    ensure_here(Y_, {b_, me, D}, MemCategory::activations, "nystromformer Z K3 V (b, m, D)");
    ensure_here(pinv_, {kPinvSlots, b_, heads_, me, me}, MemCategory::workspace, "nystromformer pinv scratch");

    const std::int64_t lm_elems = b_ * me * D;
    landmark_means_kernel<<<LSB_BLOCKS(lm_elems, kThreads), kThreads>>>(Q_.data(), mask_, b_, n, me, D, Ql_.data(),
                                                                        count_.data(), lmask());
    LSB_CUDA_LAUNCHED();
    landmark_means_kernel<<<LSB_BLOCKS(lm_elems, kThreads), kThreads>>>(K_.data(), mask_, b_, n, me, D, Kl_.data(),
                                                                        count_.data(), lmask());
    LSB_CUDA_LAUNCHED();

    cuda::gemm(heads_of(Ql_, me), heads_of(Kl_, me).t(), square(P2_.data()));
    cuda::softmax_rows(P2_.data(), lmask(), bh * me, me, heads_ * me);
    zero_padded_landmark_rows(P2_.data(), me);
    pinv_forward();

    cuda_dense_attention_forward(heads_of(Ql_, me), heads_of(K_, n), heads_of(V_, n), mask_, P3_.data(),
                                 heads_of(W_, me));
    cuda::gemm(square(iterate(iters_)), heads_of(W_, me), heads_of(Y_, me));
    cuda_dense_attention_forward(heads_of(Q_, n), heads_of(Kl_, me), heads_of(Y_, me), lmask(), P1_.data(),
                                 heads_of(C_, n));
    if (conv_ > 0) {
      conv_forward_kernel<<<LSB_BLOCKS(b_ * n * D, kThreads), kThreads>>>(V_.data(), mask_, value_of("conv_w"), b_, n, D,
                                                                          head_dim(), conv_, C_.data());
      LSB_CUDA_LAUNCHED();
    }
  }

  void core_backward() override {
    const std::int64_t D = dim_, n = n_, me = me_, bh = b_ * heads_;
    ensure_here(dP_, {b_, heads_, n, me}, MemCategory::workspace, "nystromformer dK1 and dK3 (b, h, n, m)");
    ensure_here(dY_, {b_, me, D}, MemCategory::workspace, "nystromformer dY (b, m, D)");
    ensure_here(dW_, {b_, me, D}, MemCategory::workspace, "nystromformer dW (b, m, D)");
    ensure_here(dQl_, {b_, me, D}, MemCategory::workspace, "nystromformer dQl (b, m, D)");
    ensure_here(dKl_, {b_, me, D}, MemCategory::workspace, "nystromformer dKl (b, m, D)");

    cuda_dense_attention_backward(heads_of(Q_, n), heads_of(Kl_, me), heads_of(Y_, me), P1_.data(), heads_of(dC_, n),
                                  dP_.data(), heads_of(dQ_, n), heads_of(dKl_, me), heads_of(dY_, me));
    cuda::gemm(heads_of(dY_, me), heads_of(W_, me).t(), square(slot(kG)));
    cuda::gemm(square(iterate(iters_)).t(), heads_of(dY_, me), heads_of(dW_, me));
    cuda_dense_attention_backward(heads_of(Ql_, me), heads_of(K_, n), heads_of(V_, n), P3_.data(), heads_of(dW_, me),
                                  dP_.data(), heads_of(dQl_, me), heads_of(dK_, n), heads_of(dV_, n));
    pinv_backward();

    float* dS2 = slot(kdA);
    cuda::softmax_backward_rows(P2_.data(), dS2, bh * me, me);
    zero_padded_landmark_rows(dS2, me);  // K2's zero rows are constants
    cuda::gemm(square(dS2), heads_of(Kl_, me), heads_of(dQl_, me), 1.0f, 1.0f);
    cuda::gemm(square(dS2).t(), heads_of(Ql_, me), heads_of(dKl_, me), 1.0f, 1.0f);

    const std::int64_t lm_elems = b_ * me * D;
    landmark_means_backward_kernel<<<LSB_BLOCKS(lm_elems, kThreads), kThreads>>>(dQl_.data(), count_.data(), mask_,
                                                                                 b_, n, me, D, dQ_.data());
    LSB_CUDA_LAUNCHED();
    landmark_means_backward_kernel<<<LSB_BLOCKS(lm_elems, kThreads), kThreads>>>(dKl_.data(), count_.data(), mask_,
                                                                                 b_, n, me, D, dK_.data());
    LSB_CUDA_LAUNCHED();
    if (conv_ > 0) {
      conv_backward_input_kernel<<<LSB_BLOCKS(b_ * n * D, kThreads), kThreads>>>(dC_.data(), mask_, value_of("conv_w"), b_, n,
                                                                                 D, head_dim(), conv_, dV_.data());
      LSB_CUDA_LAUNCHED();
      conv_backward_weight_kernel<<<static_cast<unsigned>(heads_ * conv_), kThreads>>>(
          dC_.data(), V_.data(), mask_, b_, n, D, head_dim(), conv_, grad_of("conv_w"));
      LSB_CUDA_LAUNCHED();
    }
  }

  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return nystromformer_core_floats(b, n, dim_, heads_, m_, iters_, with_backward);
  }

 private:
  // The iteration's products stay fp32 under --precision bf16, as on the CPU (nystromformer.cpp says why).
  void pinv_forward() {
    const PrecisionScope fp32(Precision::fp32);
    const std::int64_t me = me_, bh = b_ * heads_, total = bh * me * me;
    const float* A = P2_.data();
    float* sums = slot(kU1);  // (bh, me) column sums, before the slot is needed
    column_sums_kernel<<<LSB_BLOCKS(bh * me, kThreads), kThreads>>>(A, bh, me, sums);
    LSB_CUDA_LAUNCHED();
    column_max_kernel<<<LSB_BLOCKS(bh, kThreads), kThreads>>>(sums, bh, me, colmax_.data());
    LSB_CUDA_LAUNCHED();
    scaled_transpose_kernel<<<LSB_BLOCKS(total, kThreads), kThreads>>>(A, colmax_.data(), bh, me, iterate(0));
    LSB_CUDA_LAUNCHED();
    for (std::int64_t k = 0; k < iters_; ++k) {
      cuda::gemm(square(A), square(iterate(k)), square(slot(kT)));
      shifted_identity(7.0f, slot(kT), slot(kU1));
      cuda::gemm(square(slot(kT)), square(slot(kU1)), square(slot(kX)));
      shifted_identity(15.0f, slot(kX), slot(kU1));
      cuda::gemm(square(slot(kT)), square(slot(kU1)), square(slot(kX)));
      shifted_identity(13.0f, slot(kX), slot(kU1));
      cuda::gemm(square(iterate(k)), square(slot(kU1)), square(iterate(k + 1)), 0.25f);
    }
  }

  // As NystromformerAttention::pinv_backward: dZ in slot kG, dK2 out in slot kdA.
  void pinv_backward() {
    const PrecisionScope fp32(Precision::fp32);  // as in pinv_forward
    const std::int64_t me = me_, bh = b_ * heads_;
    const float* A = P2_.data();
    float* dA = slot(kdA);
    cuda::device_memset(dA, 0, static_cast<std::size_t>(bh * me * me) * sizeof(float));
    float *G = slot(kG), *Gn = slot(kGnext);
    for (std::int64_t k = iters_ - 1; k >= 0; --k) {
      const MatRef Zk = square(iterate(k)), T = square(slot(kT)), X = square(slot(kX));
      cuda::gemm(square(A), Zk, T);
      shifted_identity(7.0f, slot(kT), slot(kU1));
      cuda::gemm(T, square(slot(kU1)), X);
      shifted_identity(15.0f, slot(kX), slot(kU2));
      cuda::gemm(T, square(slot(kU2)), X);
      shifted_identity(13.0f, slot(kX), slot(kU3));

      cuda::gemm(square(G), square(slot(kU3)).t(), square(Gn), 0.25f);
      cuda::gemm(Zk.t(), square(G), square(slot(kdX)), -0.25f);
      cuda::gemm(square(slot(kdX)), square(slot(kU2)).t(), square(slot(kdT)));
      cuda::gemm(T.t(), square(slot(kdX)), X, -1.0f);
      cuda::gemm(X, square(slot(kU1)).t(), square(slot(kdT)), 1.0f, 1.0f);
      cuda::gemm(T.t(), X, square(slot(kdT)), -1.0f, 1.0f);
      cuda::gemm(square(slot(kdT)), Zk.t(), square(dA), 1.0f, 1.0f);
      cuda::gemm(square(A).t(), square(slot(kdT)), square(Gn), 1.0f, 1.0f);
      std::swap(G, Gn);
    }
    scaled_transpose_backward_kernel<<<static_cast<unsigned>(bh), kThreads>>>(G, iterate(0), colmax_.data(), bh, me,
                                                                              dA);
    LSB_CUDA_LAUNCHED();
  }

  void shifted_identity(float s, const float* in, float* out) {
    const std::int64_t total = b_ * heads_ * me_ * me_;
    shifted_identity_kernel<<<LSB_BLOCKS(total, kThreads), kThreads>>>(s, in, total, me_, out);
    LSB_CUDA_LAUNCHED();
  }
  void zero_padded_landmark_rows(float* P, std::int64_t cols) {
    const std::int64_t total = b_ * heads_ * me_ * cols;
    zero_padded_landmark_rows_kernel<<<LSB_BLOCKS(total, kThreads), kThreads>>>(P, lmask(), b_, heads_, me_, cols);
    LSB_CUDA_LAUNCHED();
  }

  std::uint8_t* lmask() { return reinterpret_cast<std::uint8_t*>(lmask_.data()); }
  float* iterate(std::int64_t k) { return Z_.data() + k * b_ * heads_ * me_ * me_; }
  float* slot(PinvSlot s) { return pinv_.data() + s * b_ * heads_ * me_ * me_; }
  MatRef square(const float* ptr) const {
    return MatRef::rowmajor(ptr, me_, me_, me_).batched(b_, heads_ * me_ * me_, heads_, me_ * me_);
  }

  std::int64_t m_, iters_, conv_;
  std::int64_t me_ = 0;
  Tensor Ql_, Kl_, count_, lmask_, P1_, P2_, P3_, Z_, colmax_, W_, Y_, pinv_, dP_, dY_, dW_, dQl_, dKl_;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_nystromformer(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaNystromformer>(std::move(twin));
}

}  // namespace lsb
