// flash on the GPU: exact softmax attention in key tiles with an online softmax, keeping only the
// log-sum-exp of each row (b, h, n) for the backward, which recomputes the tile scores.
//
// Layout of every kernel: a block of 256 threads owns 64 rows (queries, or keys in the dK/dV
// kernel); the 4 consecutive threads of a row each own the head dims k = 4*i + sub (sub = thread % 4),
// so a dot product is 4 partial sums and two shuffles, and the other side's tile (32 rows of d
// floats) is staged in shared memory, read without bank conflicts. fp32 on the CUDA cores.
// Deterministic: dQ and dK/dV come from two kernels (query- and key-centric), with no atomics.
// Under --precision bf16 the module runs the tensor-core kernels of flash_bf16.cu instead.
// Causal (--causal; both kernel families): a block's query rows never load the key tiles after its
// last row, nor a key block the query tiles before its first key; the tiles the diagonal crosses mask
// key u > query t.
#include <string>

#include "attention_impls/cuda/flash.hpp"
#include "attention_impls/cuda/projected.cuh"
#include "nn/cuda/check.cuh"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"

namespace lsb {
namespace {

constexpr int kRows = 64, kTile = 32, kThreads = 256;
static_assert(kRows % kTile == 0, "causal: a block of query rows starts on a key tile");

// Sum of the 4 partial sums of a row's threads (lanes 4r .. 4r+3).
__device__ float row_sum4(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

// Loads this thread's dims of row t of one head (0 past the end).
template <int KPT>
__device__ void load_row(const float* src, const HeadLayout& L, int bh, std::int64_t t, int sub, float (&r)[KPT]) {
#pragma unroll
  for (int i = 0; i < KPT; ++i) {
    const int k = 4 * i + sub;
    r[i] = (t < L.n && k < L.d) ? src[L.at(bh, t, k)] : 0.0f;
  }
}

// Stages rows [t0, t0 + kTile) of one head of `a` (and of `b`) into shared tiles of stride 4*KPT.
template <int KPT>
__device__ void stage_tile(const float* a, const float* b, const HeadLayout& L, int bh, std::int64_t t0, float* sa,
                           float* sb) {
  constexpr int W = 4 * KPT;
  const std::int64_t base = L.at(bh, t0, 0);  // rows of one head are D apart
  for (int idx = threadIdx.x; idx < kTile * W; idx += blockDim.x) {
    const int j = idx / W, k = idx % W;
    const bool in = t0 + j < L.n && k < L.d;
    sa[idx] = in ? a[base + j * L.D + k] : 0.0f;
    sb[idx] = in ? b[base + j * L.D + k] : 0.0f;
  }
}

template <int KPT>
__device__ float dot_part(const float (&r)[KPT], const float* tile_row, int sub) {
  float s = 0;
#pragma unroll
  for (int i = 0; i < KPT; ++i) s += r[i] * tile_row[4 * i + sub];
  return s;
}

// O = softmax(Q K^T + mask) V per head; lse[bh, t] = log-sum-exp of the row (-inf: no valid key).
template <int KPT>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(const float* Q, const float* K, const float* V,
                                                                 const std::uint8_t* mask, HeadLayout L, float* O,
                                                                 float* lse, bool causal) {
  __shared__ float Ks[kTile * 4 * KPT], Vs[kTile * 4 * KPT];
  __shared__ bool valid[kTile];
  const int bh = blockIdx.y, sub = threadIdx.x % 4;
  const std::int64_t t = std::int64_t(blockIdx.x) * kRows + threadIdx.x / 4;
  const std::uint8_t* m = mask + (bh / L.h) * L.n;
  float q[KPT], o[KPT];
  load_row<KPT>(Q, L, bh, t, sub, q);
#pragma unroll
  for (int i = 0; i < KPT; ++i) o[i] = 0;
  float mx = -INFINITY, l = 0;
  const std::int64_t u_end = causal ? min(L.n, (std::int64_t(blockIdx.x) + 1) * kRows) : L.n;
  for (std::int64_t u0 = 0; u0 < u_end; u0 += kTile) {
    __syncthreads();
    stage_tile<KPT>(K, V, L, bh, u0, Ks, Vs);
    if (threadIdx.x < kTile) valid[threadIdx.x] = u0 + threadIdx.x < L.n && m[u0 + threadIdx.x];
    __syncthreads();
    float s[kTile];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kTile; ++j) {
      s[j] = row_sum4(dot_part<KPT>(q, Ks + j * 4 * KPT, sub));
      s[j] = valid[j] && !(causal && u0 + j > t) ? s[j] : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    const float mx_new = fmaxf(mx, tile_max);
    if (mx_new == -INFINITY) continue;  // no valid key yet
    const float corr = expf(mx - mx_new);  // 0 when mx was -inf
    l *= corr;
#pragma unroll
    for (int i = 0; i < KPT; ++i) o[i] *= corr;
#pragma unroll
    for (int j = 0; j < kTile; ++j) {
      const float pj = expf(s[j] - mx_new);  // 0 for masked keys
      l += pj;
#pragma unroll
      for (int i = 0; i < KPT; ++i) o[i] += pj * Vs[j * 4 * KPT + 4 * i + sub];
    }
    mx = mx_new;
  }
  if (t >= L.n) return;
  const float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
  for (int i = 0; i < KPT; ++i)
    if (4 * i + sub < L.d) O[L.at(bh, t, 4 * i + sub)] = o[i] * inv;
  if (sub == 0) lse[bh * L.n + t] = l > 0 ? mx + logf(l) : -INFINITY;
}

// delta[bh, t] = sum_k dO[t, k] O[t, k]: one warp per row.
__global__ void flash_delta_kernel(const float* O, const float* dO, HeadLayout L, std::int64_t rows, float* delta) {
  const std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;
  const int bh = static_cast<int>(r / L.n);
  const std::int64_t t = r % L.n;
  float s = 0;
  for (int k = threadIdx.x % 32; k < L.d; k += 32) s += O[L.at(bh, t, k)] * dO[L.at(bh, t, k)];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (threadIdx.x % 32 == 0) delta[r] = s;
}

// dQ[t] = sum_u dS[t, u] K[u], dS = P (dP - delta), P = exp(S - lse), dP = dO V^T.
template <int KPT>
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(const float* Q, const float* K, const float* V,
                                                            const float* dO, const std::uint8_t* mask, HeadLayout L,
                                                            const float* lse, const float* delta, float* dQ,
                                                            bool causal) {
  __shared__ float Ks[kTile * 4 * KPT], Vs[kTile * 4 * KPT];
  __shared__ bool valid[kTile];
  const int bh = blockIdx.y, sub = threadIdx.x % 4;
  const std::int64_t t = std::int64_t(blockIdx.x) * kRows + threadIdx.x / 4;
  const std::uint8_t* m = mask + (bh / L.h) * L.n;
  float q[KPT], dout[KPT], dq[KPT];
  load_row<KPT>(Q, L, bh, t, sub, q);
  load_row<KPT>(dO, L, bh, t, sub, dout);
#pragma unroll
  for (int i = 0; i < KPT; ++i) dq[i] = 0;
  const float row_lse = t < L.n ? lse[bh * L.n + t] : -INFINITY;
  const float row_delta = t < L.n ? delta[bh * L.n + t] : 0.0f;
  const std::int64_t u_end = causal ? min(L.n, (std::int64_t(blockIdx.x) + 1) * kRows) : L.n;
  for (std::int64_t u0 = 0; u0 < u_end; u0 += kTile) {
    __syncthreads();
    stage_tile<KPT>(K, V, L, bh, u0, Ks, Vs);
    if (threadIdx.x < kTile) valid[threadIdx.x] = u0 + threadIdx.x < L.n && m[u0 + threadIdx.x];
    __syncthreads();
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      const float sj = row_sum4(dot_part<KPT>(q, Ks + j * 4 * KPT, sub));
      const float dpj = row_sum4(dot_part<KPT>(dout, Vs + j * 4 * KPT, sub));
      const float pj = (valid[j] && row_lse != -INFINITY && !(causal && u0 + j > t)) ? expf(sj - row_lse) : 0.0f;
      const float ds = pj * (dpj - row_delta);
#pragma unroll
      for (int i = 0; i < KPT; ++i) dq[i] += ds * Ks[j * 4 * KPT + 4 * i + sub];
    }
  }
  if (t >= L.n) return;
#pragma unroll
  for (int i = 0; i < KPT; ++i)
    if (4 * i + sub < L.d) dQ[L.at(bh, t, 4 * i + sub)] = dq[i];
}

// For key u: dV[u] = sum_t P[t, u] dO[t], dK[u] = sum_t dS[t, u] Q[t].
template <int KPT>
__global__ void __launch_bounds__(kThreads) flash_dkdv_kernel(const float* Q, const float* K, const float* V,
                                                              const float* dO, const std::uint8_t* mask, HeadLayout L,
                                                              const float* lse, const float* delta, float* dK,
                                                              float* dV, bool causal) {
  __shared__ float Qs[kTile * 4 * KPT], dOs[kTile * 4 * KPT];
  __shared__ float lse_s[kTile], delta_s[kTile];
  const int bh = blockIdx.y, sub = threadIdx.x % 4;
  const std::int64_t u = std::int64_t(blockIdx.x) * kRows + threadIdx.x / 4;
  const bool key_valid = u < L.n && mask[(bh / L.h) * L.n + u];
  float kr[KPT], vr[KPT], dk[KPT], dv[KPT];
  load_row<KPT>(K, L, bh, u, sub, kr);
  load_row<KPT>(V, L, bh, u, sub, vr);
#pragma unroll
  for (int i = 0; i < KPT; ++i) dk[i] = dv[i] = 0;
  // Causal: from the query tile that holds the block's first key (kRows is a multiple of kTile).
  for (std::int64_t t0 = causal ? std::int64_t(blockIdx.x) * kRows : 0; t0 < L.n; t0 += kTile) {
    __syncthreads();
    stage_tile<KPT>(Q, dO, L, bh, t0, Qs, dOs);
    if (threadIdx.x < kTile) {
      const std::int64_t t = t0 + threadIdx.x;
      lse_s[threadIdx.x] = t < L.n ? lse[bh * L.n + t] : -INFINITY;
      delta_s[threadIdx.x] = t < L.n ? delta[bh * L.n + t] : 0.0f;
    }
    __syncthreads();
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      const float sj = row_sum4(dot_part<KPT>(kr, Qs + j * 4 * KPT, sub));
      const float dpj = row_sum4(dot_part<KPT>(vr, dOs + j * 4 * KPT, sub));
      const float pj = (key_valid && lse_s[j] != -INFINITY && !(causal && t0 + j < u)) ? expf(sj - lse_s[j]) : 0.0f;
      const float ds = pj * (dpj - delta_s[j]);
#pragma unroll
      for (int i = 0; i < KPT; ++i) {
        dv[i] += pj * dOs[j * 4 * KPT + 4 * i + sub];
        dk[i] += ds * Qs[j * 4 * KPT + 4 * i + sub];
      }
    }
  }
  if (u >= L.n) return;
#pragma unroll
  for (int i = 0; i < KPT; ++i)
    if (4 * i + sub < L.d) {
      dK[L.at(bh, u, 4 * i + sub)] = dk[i];
      dV[L.at(bh, u, 4 * i + sub)] = dv[i];
    }
}

// Calls f with the smallest supported dims-per-thread count for head dim d (d <= kFlashMaxHeadDim).
template <typename F>
void with_kpt(int d, F&& f) {
  if (d <= 8) return f(std::integral_constant<int, 2>{});
  if (d <= 16) return f(std::integral_constant<int, 4>{});
  if (d <= 32) return f(std::integral_constant<int, 8>{});
  if (d <= 64) return f(std::integral_constant<int, 16>{});
  static_assert(kFlashMaxHeadDim == 4 * 32, "the largest dims-per-thread count covers the limit");
  if (d <= kFlashMaxHeadDim) return f(std::integral_constant<int, 32>{});
  throw std::logic_error("flash on CUDA: head dim over kFlashMaxHeadDim");  // the constructor refuses these
}

class CudaFlash final : public CudaProjectedAttention {
 public:
  explicit CudaFlash(std::unique_ptr<Attention> twin) : CudaProjectedAttention(std::move(twin)) {
    if (head_dim() > kFlashMaxHeadDim)
      throw UsageError(spec_string() + " on CUDA: head dim " + std::to_string(head_dim()) +
                       " is over the kernel's limit of " + std::to_string(kFlashMaxHeadDim));
  }

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    ensure_here(lse_, {b_, heads_, n_}, MemCategory::activations, "flash log-sum-exp (b, h, n)");
    const HeadLayout L = layout();
    // bf16 runs on tensor cores (require_precision has checked compute capability 8.0); the choice is
    // kept for the backward, which must match the forward's lse and reads the forward's packed copies.
    tensor_cores_ = matmul_precision() == Precision::bf16;
    if (tensor_cores_) {
      const auto* q = packed(q16_, Q_, MemCategory::activations, "flash bf16 Q (b*h, rows, dp)");
      const auto* k = packed(k16_, K_, MemCategory::activations, "flash bf16 K (b*h, rows, dp)");
      const auto* v = packed(v16_, V_, MemCategory::activations, "flash bf16 V (b*h, rows, dp)");
      return flash_bf16_forward(q, k, v, mask_, L, batch_heads(), C_.data(), lse_.data(), causal_);
    }
    const dim3 grid(LSB_BLOCKS(n_, kRows), static_cast<unsigned>(b_ * heads_));
    with_kpt(L.d, [&](auto kpt) {
      flash_forward_kernel<decltype(kpt)::value>
          <<<grid, kThreads>>>(Q_.data(), K_.data(), V_.data(), mask_, L, C_.data(), lse_.data(), causal_);
    });
    LSB_CUDA_LAUNCHED();
  }
  void core_backward() override {
    ensure_here(delta_, {b_, heads_, n_}, MemCategory::workspace, "flash rowsum(dO * O) (b, h, n)");
    const HeadLayout L = layout();
    const std::int64_t rows = b_ * heads_ * n_;
    flash_delta_kernel<<<LSB_BLOCKS(rows, kThreads / 32), kThreads>>>(C_.data(), dC_.data(), L, rows, delta_.data());
    LSB_CUDA_LAUNCHED();
    if (tensor_cores_) {
      const auto* d_o = packed(do16_, dC_, MemCategory::workspace, "flash bf16 dO (b*h, rows, dp)");
      return flash_bf16_backward(bits(q16_), bits(k16_), bits(v16_), d_o, mask_, L, batch_heads(), lse_.data(),
                                 delta_.data(), dQ_.data(), dK_.data(), dV_.data(), causal_);
    }
    const dim3 grid(LSB_BLOCKS(n_, kRows), static_cast<unsigned>(b_ * heads_));
    with_kpt(L.d, [&](auto kpt) {
      constexpr int K = decltype(kpt)::value;
      flash_dq_kernel<K><<<grid, kThreads>>>(Q_.data(), K_.data(), V_.data(), dC_.data(), mask_, L, lse_.data(),
                                             delta_.data(), dQ_.data(), causal_);
      LSB_CUDA_LAUNCHED();
      flash_dkdv_kernel<K><<<grid, kThreads>>>(Q_.data(), K_.data(), V_.data(), dC_.data(), mask_, L, lse_.data(),
                                               delta_.data(), dK_.data(), dV_.data(), causal_);
    });
    LSB_CUDA_LAUNCHED();
  }
  // lse (b, h, n) and, in the backward, delta; in bf16 the packed copies of Q, K, V (kept for the
  // backward) and of dO.
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    std::int64_t floats = b * heads_ * n * (with_backward ? 2 : 1);
    if (matmul_precision() == Precision::bf16) floats += packed_floats(b, n) * (with_backward ? 4 : 3);
    return floats;
  }

 private:
  HeadLayout layout() const {
    return {n_, dim_, static_cast<int>(heads_), static_cast<int>(head_dim())};
  }
  int batch_heads() const { return static_cast<int>(b_ * heads_); }
  // Floats that hold one packed bf16 copy of a (b, n, D) buffer.
  std::int64_t packed_floats(std::int64_t b, std::int64_t n) const {
    const HeadLayout L{n, dim_, static_cast<int>(heads_), static_cast<int>(head_dim())};
    return (flash_bf16_packed_elements(L, static_cast<int>(b * heads_)) + 1) / 2;
  }
  static const std::uint16_t* bits(const Tensor& t) { return reinterpret_cast<const std::uint16_t*>(t.data()); }
  // dst = the packed bf16 copy of src (b, n, D), allocated on first use.
  const std::uint16_t* packed(Tensor& dst, const Tensor& src, MemCategory category, const char* what) {
    ensure_here(dst, {packed_floats(b_, n_)}, category, what);
    auto* out = reinterpret_cast<std::uint16_t*>(dst.data());
    flash_bf16_pack(src.data(), layout(), batch_heads(), out);
    return out;
  }
  Tensor lse_, delta_, q16_, k16_, v16_, do16_;
  bool tensor_cores_ = false;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_flash(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaFlash>(std::move(twin));
}

}  // namespace lsb
