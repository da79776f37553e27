// Causal ls on the GPU: the authors' autoregressive Transformer-LS exactly as attention_impls/ls_causal.cpp
// computes it (definition there and in ../shared/spec/attention.md "Causal attention"):
//   Kt, Vt = LN_L(K), LN_L(V)                          window keys and values (b, n, D)
//   Pp = per-chunk column softmax of x Wp^T + bp        (b, n, h*r): cuda::column_softmax over (b*n/l, l, h*r)
//   Kc, Vc = LN_G(Pp_c^T K_c), LN_G(Pp_c^T V_c)         r vectors per chunk (b, n/l*r, D), batched cuBLAS
//   query t: one joint softmax over the vectors of the chunks before its own (of chunks with a real
//   position) and the real window keys u in [t - w + 1, t].
// The joint softmax runs online (flash style): only the row log-sum-exp (b, h, n) is kept, the backward
// recomputes the scores, so memory is linear in n.
//
// Kernels (warp-per-row, fp32 on the CUDA cores, as local.cu): the forward and dQ take one warp per query,
// scoring 32 keys at a time (one per lane) and accumulating outputs one head dim per lane; the key gradients
// take one warp per key, gathering over the queries that see it (window key u: queries u .. u + w - 1;
// compressed vector of chunk c: every query from chunk c + 1 on), so there are no atomics and the results
// are deterministic.
#include <string>

#include "attention_impls/cuda/projected.cuh"
#include "attention_impls/variants.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/kernels.hpp"
#include "nn/cuda/warp.cuh"
#include "nn/errors.hpp"

namespace lsb {
namespace {

constexpr int kWarps = 4;      // warps per block, one row each
constexpr int kPerLane = 4;    // head dims per lane: d <= 128
constexpr int kMaxHeadDim = 32 * kPerLane;

struct CausalLs {
  std::int64_t b, n, h, d, w, l, r;
  __host__ __device__ std::int64_t D() const { return h * d; }
  __host__ __device__ std::int64_t nc() const { return n / l; }
  // Query t's key list: compressed vectors 0 .. ncomp(t) - 1 (chunk j / r), then the window positions
  // from window_start(t) to t.
  __device__ std::int64_t ncomp(std::int64_t t) const { return r * (t / l); }
  __device__ std::int64_t window_start(std::int64_t t) const { return w > 0 ? max(std::int64_t(0), t - w + 1) : t + 1; }
};

// The rows a (batch, head) reads: (b, n, D) buffers for the window and (b, n/l*r, D) for the compressed
// vectors, both at the head's column offset.
struct HeadRows {
  const float *Kt, *Vt, *Kc, *Vc;
  const std::uint8_t* mask;   // (n) of this example
  const float* chunk_real;    // (n/l) of this example: 1 where the chunk has a real position
  std::int64_t D, ncomp_total, r;
  __device__ bool comp_valid(std::int64_t j) const { return chunk_real[j / r] != 0.0f; }
};

__device__ HeadRows head_rows(const CausalLs& s, std::int64_t bi, std::int64_t hi, const float* Kt, const float* Vt,
                              const float* Kc, const float* Vc, const std::uint8_t* mask, const float* chunk_real) {
  const std::int64_t D = s.D(), off = hi * s.d, nk = s.nc() * s.r;
  return {Kt + bi * s.n * D + off, Vt + bi * s.n * D + off, Kc ? Kc + bi * nk * D + off : nullptr,
          Vc ? Vc + bi * nk * D + off : nullptr, mask + bi * s.n, chunk_real + bi * s.nc(), D, nk, s.r};
}

using cuda::warp_max;
using cuda::warp_sum;

__device__ float dot(const float* a, const float* b, std::int64_t d) {
  float s = 0;
  for (std::int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

// Key j of query t (ncomp = s.ncomp(t), u0 = s.window_start(t)): its key and value rows and validity.
struct KeyRef {
  const float *k, *v;
  bool valid;
};
__device__ KeyRef key_of(const HeadRows& R, std::int64_t ncomp, std::int64_t u0, std::int64_t j) {
  if (j < ncomp) return {R.Kc + j * R.D, R.Vc + j * R.D, R.comp_valid(j)};
  const std::int64_t u = u0 + j - ncomp;
  return {R.Kt + u * R.D, R.Vt + u * R.D, R.mask[u] != 0};
}

// One warp per query row: C (b, n, D) and lse (b, h, n) (-inf: no key, C = 0).
__global__ void causal_ls_forward_kernel(CausalLs s, const float* Q, const float* Kt, const float* Vt, const float* Kc,
                                         const float* Vc, const std::uint8_t* mask, const float* chunk_real, float* C,
                                         float* lse) {
  __shared__ float qs[kWarps][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t t = std::int64_t(blockIdx.x) * kWarps + warp;
  if (t >= s.n) return;  // whole warps leave together
  const HeadRows R = head_rows(s, bi, hi, Kt, Vt, Kc, Vc, mask, chunk_real);
  const std::int64_t row = (bi * s.n + t) * s.D() + hi * s.d;
  for (std::int64_t k = lane; k < s.d; k += 32) qs[warp][k] = Q[row + k];
  __syncwarp();
  const std::int64_t ncomp = s.ncomp(t), u0 = s.window_start(t), nk = ncomp + (t + 1 - u0);
  float o[kPerLane] = {};
  float mx = -INFINITY, l = 0;
  for (std::int64_t j0 = 0; j0 < nk; j0 += 32) {
    float sc = -INFINITY;
    if (j0 + lane < nk) {
      const KeyRef key = key_of(R, ncomp, u0, j0 + lane);
      if (key.valid) sc = dot(qs[warp], key.k, s.d);
    }
    const float mx_new = fmaxf(mx, warp_max(sc));
    if (mx_new == -INFINITY) continue;  // no valid key yet (warp-uniform)
    const float corr = expf(mx - mx_new), p = expf(sc - mx_new);  // 0 for masked keys and when mx was -inf
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) o[i] *= corr;
    const int count = static_cast<int>(min(std::int64_t(32), nk - j0));
    for (int jj = 0; jj < count; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      if (pj == 0.0f) continue;  // the same on every lane
      const float* v = key_of(R, ncomp, u0, j0 + jj).v;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i)
        if (lane + 32 * i < s.d) o[i] += pj * v[lane + 32 * i];
    }
    mx = mx_new;
  }
  const float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i)
    if (lane + 32 * i < s.d) C[row + lane + 32 * i] = o[i] * inv;
  if (lane == 0) lse[bh * s.n + t] = l > 0 ? mx + logf(l) : -INFINITY;
}

// One warp per query row: delta = dC . C (b, h, n), and dQ = sum_j dS_j K_j with dS = P (dC . V_j - delta).
__global__ void causal_ls_dq_kernel(CausalLs s, const float* Q, const float* Kt, const float* Vt, const float* Kc,
                                    const float* Vc, const std::uint8_t* mask, const float* chunk_real, const float* C,
                                    const float* dC, const float* lse, float* delta, float* dQ) {
  __shared__ float qs[kWarps][kMaxHeadDim], dcs[kWarps][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t t = std::int64_t(blockIdx.x) * kWarps + warp;
  if (t >= s.n) return;
  const HeadRows R = head_rows(s, bi, hi, Kt, Vt, Kc, Vc, mask, chunk_real);
  const std::int64_t row = (bi * s.n + t) * s.D() + hi * s.d;
  float part = 0;
  for (std::int64_t k = lane; k < s.d; k += 32) {
    qs[warp][k] = Q[row + k];
    dcs[warp][k] = dC[row + k];
    part += dC[row + k] * C[row + k];
  }
  __syncwarp();
  const float row_delta = warp_sum(part), row_lse = lse[bh * s.n + t];
  if (lane == 0) delta[bh * s.n + t] = row_delta;
  const std::int64_t ncomp = s.ncomp(t), u0 = s.window_start(t), nk = ncomp + (t + 1 - u0);
  float dq[kPerLane] = {};
  for (std::int64_t j0 = 0; j0 < nk && row_lse != -INFINITY; j0 += 32) {
    float ds = 0;
    if (j0 + lane < nk) {
      const KeyRef key = key_of(R, ncomp, u0, j0 + lane);
      if (key.valid) ds = expf(dot(qs[warp], key.k, s.d) - row_lse) * (dot(dcs[warp], key.v, s.d) - row_delta);
    }
    const int count = static_cast<int>(min(std::int64_t(32), nk - j0));
    for (int jj = 0; jj < count; ++jj) {
      const float g = __shfl_sync(0xffffffffu, ds, jj);
      if (g == 0.0f) continue;
      const float* k = key_of(R, ncomp, u0, j0 + jj).k;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i)
        if (lane + 32 * i < s.d) dq[i] += g * k[lane + 32 * i];
    }
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i)
    if (lane + 32 * i < s.d) dQ[row + lane + 32 * i] = dq[i];
}

// One warp per key: kCompressed, key j of (b, n/l*r) = vector j % r of chunk j / r, seen by the queries
// [(chunk + 1) l, n); else window key u of (b, n), seen by the queries [u, u + w) within n. Writes the
// key's dK = sum_t dS_t Q_t and dV = sum_t P_t dC_t (0 for a key no query may see).
template <bool kCompressed>
__global__ void causal_ls_dkdv_kernel(CausalLs s, const float* Q, const float* K, const float* V,
                                      const std::uint8_t* mask, const float* chunk_real, const float* dC,
                                      const float* lse, const float* delta, float* dK, float* dV) {
  __shared__ float ks[kWarps][kMaxHeadDim], vs[kWarps][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t keys = kCompressed ? s.nc() * s.r : s.n;
  const std::int64_t j = std::int64_t(blockIdx.x) * kWarps + warp;
  if (j >= keys) return;
  const std::int64_t row = (bi * keys + j) * s.D() + hi * s.d;
  for (std::int64_t k = lane; k < s.d; k += 32) {
    ks[warp][k] = K[row + k];
    vs[warp][k] = V[row + k];
  }
  __syncwarp();
  const bool valid = kCompressed ? chunk_real[bi * s.nc() + j / s.r] != 0.0f : mask[bi * s.n + j] != 0;
  const std::int64_t t_begin = kCompressed ? (j / s.r + 1) * s.l : j;
  const std::int64_t t_end = kCompressed ? s.n : min(s.n, j + s.w);
  float dk[kPerLane] = {}, dv[kPerLane] = {};
  for (std::int64_t t0 = t_begin; valid && t0 < t_end; t0 += 32) {
    const std::int64_t t = t0 + lane;
    float p = 0, ds = 0;
    if (t < t_end) {
      const float row_lse = lse[bh * s.n + t];
      if (row_lse != -INFINITY) {
        const std::int64_t qrow = (bi * s.n + t) * s.D() + hi * s.d;
        p = expf(dot(Q + qrow, ks[warp], s.d) - row_lse);
        ds = p * (dot(dC + qrow, vs[warp], s.d) - delta[bh * s.n + t]);
      }
    }
    const int count = static_cast<int>(min(std::int64_t(32), t_end - t0));
    for (int jj = 0; jj < count; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj), gj = __shfl_sync(0xffffffffu, ds, jj);
      if (pj == 0.0f) continue;  // then gj is 0 too
      const std::int64_t qrow = (bi * s.n + t0 + jj) * s.D() + hi * s.d;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i)
        if (lane + 32 * i < s.d) {
          dv[i] += pj * dC[qrow + lane + 32 * i];
          dk[i] += gj * Q[qrow + lane + 32 * i];
        }
    }
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i)
    if (lane + 32 * i < s.d) {
      dK[row + lane + 32 * i] = dk[i];
      dV[row + lane + 32 * i] = dv[i];
    }
}

// chunk_real (b * n/l) = 1 where the chunk has a real position.
__global__ void chunk_real_kernel(const std::uint8_t* mask, std::int64_t chunks, std::int64_t l, float* chunk_real) {
  const std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= chunks) return;
  bool real = false;
  for (std::int64_t t = 0; t < l; ++t) real = real || mask[c * l + t] != 0;
  chunk_real[c] = real ? 1.0f : 0.0f;
}

class CudaCausalLongShort final : public CudaProjectedAttention {
 public:
  explicit CudaCausalLongShort(std::unique_ptr<Attention> twin)
      : CudaProjectedAttention(std::move(twin)), w_(int_param("w")), l_(int_param("l")), r_(int_param("r")) {
    if (head_dim() > kMaxHeadDim)
      throw UsageError(spec_string() + " on CUDA: head dim " + std::to_string(head_dim()) +
                       " is over the causal kernels' limit of " + std::to_string(kMaxHeadDim));
  }

 protected:
  void core_forward(bool) override {
    if (drop_.active()) throw UsageError("causal ls has no dropout on attention probabilities");
    const std::int64_t D = dim_, rows = b_ * n_, hr = heads_ * r_, chunks = b_ * (n_ / l_), cr = chunks * r_;
    ensure_here(Kt_, {b_, n_, D}, MemCategory::activations, "causal ls LN_L(K)");
    ensure_here(Vt_, {b_, n_, D}, MemCategory::activations, "causal ls LN_L(V)");
    ensure_here(ln_l_stats_, {4, rows}, MemCategory::activations, "causal ls LN_L mean/rstd");
    float* st = ln_l_stats_.data();
    cuda::layernorm_forward(K_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Kt_.data(), st, st + rows);
    cuda::layernorm_forward(V_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Vt_.data(), st + 2 * rows,
                            st + 3 * rows);
    ensure_here(chunk_real_, {chunks}, MemCategory::activations, "causal ls chunk has a real position (b, n/l)");
    chunk_real_kernel<<<LSB_BLOCKS(chunks, 256), 256>>>(mask_, chunks, l_, chunk_real_.data());
    LSB_CUDA_LAUNCHED();
    if (r_ > 0) {
      ensure_here(Pp_, {b_, n_, hr}, MemCategory::activations, "causal ls chunk softmax (b, n, h*r)");
      ensure_here(comp_, {4, cr, D}, MemCategory::activations, "causal ls Kbar, Vbar, Kc, Vc (b, n/l*r, D)");
      ensure_here(ln_g_stats_, {4, cr}, MemCategory::activations, "causal ls LN_G mean/rstd");
      cuda::linear_forward(x_, rows, D, value_of("wp"), value_of("bp"), hr, Pp_.data());
      cuda::column_softmax(Pp_.data(), mask_, chunks, l_, hr);  // (b, n, h*r) as (b*n/l, l, h*r)
      cuda::gemm(chunk_proj(Pp_.data()).t(), chunk_heads(K_.data()), comp_heads(comp(0)));
      cuda::gemm(chunk_proj(Pp_.data()).t(), chunk_heads(V_.data()), comp_heads(comp(1)));
      float* gs = ln_g_stats_.data();
      cuda::layernorm_forward(comp(0), cr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), comp(2), gs, gs + cr);
      cuda::layernorm_forward(comp(1), cr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), comp(3), gs + 2 * cr,
                              gs + 3 * cr);
    }
    ensure_here(lse_, {b_, heads_, n_}, MemCategory::activations, "causal ls row log-sum-exp (b, h, n)");
    causal_ls_forward_kernel<<<grid(n_), kWarps * 32>>>(shape(), Q_.data(), Kt_.data(), Vt_.data(), comp_or_null(2),
                                                        comp_or_null(3), mask_, chunk_real_.data(), C_.data(),
                                                        lse_.data());
    LSB_CUDA_LAUNCHED();
  }

  void core_backward() override {
    const std::int64_t D = dim_, rows = b_ * n_, cr = b_ * (n_ / l_) * r_;
    ensure_here(dKt_, {b_, n_, D}, MemCategory::workspace, "causal ls dKt");
    ensure_here(dVt_, {b_, n_, D}, MemCategory::workspace, "causal ls dVt");
    ensure_here(delta_, {b_, heads_, n_}, MemCategory::workspace, "causal ls rowsum(dC * C) (b, h, n)");
    if (r_ > 0) {
      ensure_here(dcomp_, {4, cr, D}, MemCategory::workspace, "causal ls compressed-vector gradients");
      ensure_here(dPp_, Pp_.shape(), MemCategory::workspace, "causal ls chunk softmax gradient (b, n, h*r)");
    }
    const CausalLs s = shape();
    causal_ls_dq_kernel<<<grid(n_), kWarps * 32>>>(s, Q_.data(), Kt_.data(), Vt_.data(), comp_or_null(2),
                                                   comp_or_null(3), mask_, chunk_real_.data(), C_.data(), dC_.data(),
                                                   lse_.data(), delta_.data(), dQ_.data());
    LSB_CUDA_LAUNCHED();
    causal_ls_dkdv_kernel<false><<<grid(n_), kWarps * 32>>>(s, Q_.data(), Kt_.data(), Vt_.data(), mask_,
                                                            chunk_real_.data(), dC_.data(), lse_.data(),
                                                            delta_.data(), dKt_.data(), dVt_.data());
    LSB_CUDA_LAUNCHED();
    // The window path: Kt = LN_L(K), Vt = LN_L(V) (dK_, dV_ written here, the compressed path adds).
    const float* st = ln_l_stats_.data();
    cuda::layernorm_backward(dKt_.data(), K_.data(), rows, D, value_of("ln_l_weight"), st, st + rows, dK_.data(),
                             grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
    cuda::layernorm_backward(dVt_.data(), V_.data(), rows, D, value_of("ln_l_weight"), st + 2 * rows, st + 3 * rows,
                             dV_.data(), grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
    if (r_ == 0) return;
    causal_ls_dkdv_kernel<true><<<grid(cr / b_), kWarps * 32>>>(s, Q_.data(), comp(2), comp(3), mask_,
                                                                chunk_real_.data(), dC_.data(), lse_.data(),
                                                                delta_.data(), dcomp(2), dcomp(3));
    LSB_CUDA_LAUNCHED();
    const float* gs = ln_g_stats_.data();
    cuda::layernorm_backward(dcomp(2), comp(0), cr, D, value_of("ln_g_weight"), gs, gs + cr, dcomp(0),
                             grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
    cuda::layernorm_backward(dcomp(3), comp(1), cr, D, value_of("ln_g_weight"), gs + 2 * cr, gs + 3 * cr, dcomp(1),
                             grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
    // Kbar_c = Pp_c^T K_c per chunk and head: dPp_c = K_c dKbar_c^T + V_c dVbar_c^T; dK_c += Pp_c dKbar_c.
    const MatRef dPp = chunk_proj(dPp_.data());
    cuda::gemm(chunk_heads(K_.data()), comp_heads(dcomp(0)).t(), dPp);
    cuda::gemm(chunk_heads(V_.data()), comp_heads(dcomp(1)).t(), dPp, 1.0f, 1.0f);
    cuda::gemm(chunk_proj(Pp_.data()), comp_heads(dcomp(0)), chunk_heads(dK_.data()), 1.0f, 1.0f);
    cuda::gemm(chunk_proj(Pp_.data()), comp_heads(dcomp(1)), chunk_heads(dV_.data()), 1.0f, 1.0f);
    cuda::column_softmax_backward(Pp_.data(), dPp_.data(), b_ * (n_ / l_), l_, heads_ * r_);
    cuda::linear_backward(dPp_.data(), x_, rows, D, value_of("wp"), heads_ * r_, grad_of("wp"), grad_of("bp"), nullptr,
                          false);
  }

  void add_input_grad(float* dx) override {
    if (r_ > 0)
      cuda::linear_backward(dPp_.data(), x_, b_ * n_, dim_, value_of("wp"), heads_ * r_, nullptr, nullptr, dx, true);
  }

  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t D = dim_, hr = heads_ * r_, chunks = b * (n / l_), cr = chunks * r_;
    std::int64_t f = 2 * b * n * D + 4 * b * n + b * heads_ * n + chunks;
    if (r_ > 0) f += b * n * hr + 4 * cr * D + 4 * cr;
    if (with_backward) {
      f += 2 * b * n * D + b * heads_ * n;
      if (r_ > 0) f += 4 * cr * D + b * n * hr;
    }
    return f;
  }

 private:
  CausalLs shape() const { return {b_, n_, heads_, head_dim(), w_, l_, r_}; }
  dim3 grid(std::int64_t rows) const { return dim3(LSB_BLOCKS(rows, kWarps), static_cast<unsigned>(b_ * heads_)); }
  float* comp(int i) { return comp_.data() + i * b_ * (n_ / l_) * r_ * dim_; }
  float* dcomp(int i) { return dcomp_.data() + i * b_ * (n_ / l_) * r_ * dim_; }
  const float* comp_or_null(int i) { return r_ > 0 ? comp(i) : nullptr; }
  // The batched views of the compression, batch (head, chunk) over all examples' chunks (head outermost,
  // so cuBLAS gets b n/l products per call): chunk_proj (l x r) per chunk and head of Pp (b, n, h*r);
  // chunk_heads (l x d) of a (b, n, D) buffer; comp_heads (r x d) of a (b, n/l*r, D) buffer.
  MatRef chunk_proj(const float* P) const {
    const std::int64_t hr = heads_ * r_;
    return MatRef::rowmajor(P, l_, r_, hr).batched(heads_, r_, b_ * (n_ / l_), l_ * hr);
  }
  MatRef chunk_heads(const float* X) const {
    return MatRef::rowmajor(X, l_, head_dim(), dim_).batched(heads_, head_dim(), b_ * (n_ / l_), l_ * dim_);
  }
  MatRef comp_heads(const float* X) const {
    return MatRef::rowmajor(X, r_, head_dim(), dim_).batched(heads_, head_dim(), b_ * (n_ / l_), r_ * dim_);
  }

  std::int64_t w_, l_, r_;
  Tensor Kt_, Vt_, ln_l_stats_, chunk_real_, Pp_, comp_, ln_g_stats_, lse_;
  Tensor dKt_, dVt_, delta_, dcomp_, dPp_;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_causal_ls(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaCausalLongShort>(std::move(twin));
}

}  // namespace lsb
