// sliding and ls on the GPU: the local softmax core of attention_impls/local_core.hpp (a window of
// keys per query plus `extra` always-visible keys, one joint softmax, band-form probabilities
// (b, h, n, extra + span)), and ls's projection and landmarks (cuBLAS products, column softmax,
// LayerNorm kernels) as in attention_impls/ls.cpp.
//
// Kernels: one warp per query row for the forward and for dQ (scores one key per lane, outputs one
// head dim per lane); one warp per key row for dK and dV, gathering over the queries whose window
// holds the key, so there are no atomics and results are deterministic. Landmark gradients are
// products: dKX = dS_x^T Q, dVX = P_x^T dC.
#include <algorithm>
#include <string>

#include "attention_impls/cuda/projected.cuh"
#include "attention_impls/local_core.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/kernels.hpp"
#include "nn/cuda/warp.cuh"
#include "nn/errors.hpp"

namespace lsb {
namespace {

constexpr int kWarps = 4;

struct Window {  // LocalWindow (attention_impls/local_core.hpp) in a form kernels can take
  std::int64_t span = 0, seg = 1, offset = 0, extra = 0;
  Window() = default;
  explicit Window(const LocalWindow& w) : span(w.span), seg(w.seg), offset(w.offset), extra(w.extra) {}
  __host__ __device__ std::int64_t width() const { return extra + span; }
  __host__ __device__ std::int64_t start(std::int64_t t) const { return (t / seg) * seg - offset; }
};

struct Shape4 {
  std::int64_t b, n, h, d;
  __device__ std::int64_t D() const { return h * d; }
};

using cuda::warp_max;
using cuda::warp_sum;

// A block of kWarps warps owns kQueries consecutive queries of one (example, head); warp i takes
// queries i, i + kWarps, ... With kStaged, the block first copies the key and value rows its
// queries can see (the landmarks, then the key range [lo, hi) of its windows) into shared memory
// with a row stride of d + 1 (lanes reading different rows hit different banks), and every dot
// product reads from there; without it (windows too wide for shared memory) rows are read from
// global memory. Per warp, shared memory also holds a head row and a score row.
constexpr int kQueries = 16;

struct Rows {
  const float *K, *V;        // this example's window keys / values, or the staged tile
  const float *KX, *VX;      // landmarks (row stride D), or null when staged into the tile
  std::int64_t stride;       // row stride of K, V (and of the staged landmarks)
  std::int64_t lo;           // sequence index of row 0 of K, V (staged: the range start; else 0)
  std::int64_t extra;
  // Row j of a query's key list whose window starts at u0 = start(t): landmark j < extra, else
  // window key u0 + j - extra. (u0 is computed once per query: integer division is slow here.)
  __device__ const float* key(std::int64_t u0, std::int64_t j) const { return row(K, KX, u0, j); }
  __device__ const float* value(std::int64_t u0, std::int64_t j) const { return row(V, VX, u0, j); }
  __device__ const float* row(const float* base, const float* landmarks, std::int64_t u0, std::int64_t j) const {
    if (j < extra) return landmarks ? landmarks + j * stride : base + j * stride;
    return base + ((landmarks ? 0 : extra) + u0 + j - extra - lo) * stride;
  }
};

// The key range the windows of queries [t0, t1) can reach, clipped to the sequence.
__host__ __device__ inline void key_range(const Window& w, std::int64_t n, std::int64_t t0, std::int64_t t1,
                                          std::int64_t& lo, std::int64_t& hi) {
  lo = w.start(t0);
  hi = w.start(t1 - 1) + w.span;
  lo = lo < 0 ? 0 : (lo > n ? n : lo);
  hi = hi < 0 ? 0 : (hi > n ? n : hi);
  if (hi < lo) hi = lo;
}

// Sets up this block's rows: stages K and V (or A and B) of the block's range into `tile` when
// kStaged. Returns the row accessor.
template <bool kStaged>
__device__ Rows block_rows(const Window& w, const Shape4& s, std::int64_t bi, std::int64_t hi, std::int64_t t0,
                           std::int64_t t1, const float* K, const float* V, const float* KX, const float* VX,
                           float* tile, std::int64_t tile_rows) {
  const std::int64_t D = s.D(), head = hi * s.d;
  if (!kStaged) return {K + bi * s.n * D + head, V + bi * s.n * D + head, KX ? KX + bi * w.extra * D + head : nullptr,
                        VX ? VX + bi * w.extra * D + head : nullptr, D, 0, w.extra};
  std::int64_t lo, hi_;
  key_range(w, s.n, t0, t1, lo, hi_);
  const std::int64_t stride = s.d + 1, count = w.extra + (hi_ - lo);
  float* Ks = tile;
  float* Vs = tile + tile_rows * stride;
  for (std::int64_t idx = threadIdx.x; idx < count * s.d; idx += blockDim.x) {
    const std::int64_t r = idx / s.d, k = idx % s.d;
    const std::int64_t src = r < w.extra ? (bi * w.extra + r) * D + head + k : (bi * s.n + lo + r - w.extra) * D + head + k;
    Ks[r * stride + k] = r < w.extra ? KX[src] : K[src];
    Vs[r * stride + k] = r < w.extra ? VX[src] : V[src];
  }
  __syncthreads();
  return {Ks, Vs, nullptr, nullptr, stride, lo, w.extra};
}

template <bool kStaged>
__global__ void local_forward_kernel(Window w, Shape4 s, const float* Q, const float* K, const float* V,
                                     const float* KX, const float* VX, const std::uint8_t* mask, float* P, float* C,
                                     std::int64_t tile_rows) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t t0 = std::int64_t(blockIdx.x) * kQueries, t1 = min(s.n, t0 + kQueries);
  const std::int64_t W = w.width();
  float* q = smem + warp * (s.d + W);
  float* sc = q + s.d;
  const Rows rows = block_rows<kStaged>(w, s, bi, hi, t0, t1, K, V, KX, VX, smem + kWarps * (s.d + W), tile_rows);
  const std::uint8_t* m = mask + bi * s.n;
  for (std::int64_t t = t0 + warp; t < t1; t += kWarps) {
    const std::int64_t qoff = (bi * s.n + t) * s.D() + hi * s.d;
    for (std::int64_t k = lane; k < s.d; k += 32) q[k] = Q[qoff + k];
    __syncwarp();
    const std::int64_t u0 = w.start(t);
    float mx = -INFINITY;
    for (std::int64_t j = lane; j < W; j += 32) {
      const std::int64_t u = u0 + j - w.extra;
      float v = -INFINITY;
      if (j < w.extra || (u >= 0 && u < s.n && m[u])) {
        const float* kr = rows.key(u0, j);
        v = 0;
        for (std::int64_t k = 0; k < s.d; ++k) v += q[k] * kr[k];
      }
      sc[j] = v;
      mx = fmaxf(mx, v);
    }
    mx = warp_max(mx);
    float sum = 0;
    for (std::int64_t j = lane; j < W; j += 32) {
      const float e = mx == -INFINITY || sc[j] == -INFINITY ? 0.0f : expf(sc[j] - mx);
      sc[j] = e;
      sum += e;
    }
    sum = warp_sum(sum);
    const float inv = sum > 0 ? 1.0f / sum : 0.0f;
    float* prow = P + (bh * s.n + t) * W;
    for (std::int64_t j = lane; j < W; j += 32) prow[j] = sc[j] = sc[j] * inv;
    __syncwarp();
    for (std::int64_t k = lane; k < s.d; k += 32) {
      float acc = 0;
      for (std::int64_t j = 0; j < W; ++j)
        if (sc[j] != 0.0f) acc += sc[j] * rows.value(u0, j)[k];  // p = 0: invalid (or negligible) key
      C[qoff + k] = acc;
    }
    __syncwarp();  // q and sc are rewritten for the warp's next query
  }
}

// dS (band form, like P) and dQ.
template <bool kStaged>
__global__ void local_backward_query_kernel(Window w, Shape4 s, const float* K, const float* V, const float* KX,
                                            const float* VX, const float* P, const float* dC, float* dS, float* dQ,
                                            std::int64_t tile_rows) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t t0 = std::int64_t(blockIdx.x) * kQueries, t1 = min(s.n, t0 + kQueries);
  const std::int64_t W = w.width();
  float* dc = smem + warp * (s.d + W);
  float* g = dc + s.d;
  const Rows rows = block_rows<kStaged>(w, s, bi, hi, t0, t1, K, V, KX, VX, smem + kWarps * (s.d + W), tile_rows);
  for (std::int64_t t = t0 + warp; t < t1; t += kWarps) {
    const std::int64_t qoff = (bi * s.n + t) * s.D() + hi * s.d;
    for (std::int64_t k = lane; k < s.d; k += 32) dc[k] = dC[qoff + k];
    __syncwarp();
    const float* prow = P + (bh * s.n + t) * W;
    const std::int64_t u0 = w.start(t);
    float dot = 0;
    for (std::int64_t j = lane; j < W; j += 32) {
      const float pj = prow[j];
      float gj = 0;
      if (pj != 0.0f) {  // the mask is implied by P: invalid keys have probability exactly 0
        const float* vr = rows.value(u0, j);
        for (std::int64_t k = 0; k < s.d; ++k) gj += dc[k] * vr[k];
      }
      g[j] = gj;
      dot += pj * gj;
    }
    dot = warp_sum(dot);
    float* dsrow = dS + (bh * s.n + t) * W;
    for (std::int64_t j = lane; j < W; j += 32) dsrow[j] = g[j] = prow[j] * (g[j] - dot);
    __syncwarp();
    for (std::int64_t k = lane; k < s.d; k += 32) {
      float acc = 0;
      for (std::int64_t j = 0; j < W; ++j)
        if (prow[j] != 0.0f) acc += g[j] * rows.key(u0, j)[k];
      dQ[qoff + k] = acc;
    }
    __syncwarp();
  }
}

// dK[u] = sum_t dS[t, o] Q[t], dV[u] = sum_t P[t, o] dC[t] over the queries t whose window holds u
// at offset o = u - start(t); one warp per key row, one head dim per lane.
__global__ void local_backward_key_kernel(Window w, Shape4 s, const float* Q, const float* P, const float* dS,
                                          const float* dC, float* dK, float* dV) {
  constexpr int kMaxDimsPerLane = 4;  // head dims up to 128 (checked by the caller)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t row = std::int64_t(blockIdx.x) * kWarps + warp;
  if (row >= s.b * s.h * s.n) return;
  const std::int64_t u = row % s.n, hi = row / s.n % s.h, bi = row / (s.n * s.h);
  const std::int64_t W = w.width();
  // start(t) <= u < start(t) + span  =>  u + offset - span < t <= u + offset + seg - 1.
  const std::int64_t t_lo = max(std::int64_t(0), u + w.offset - w.span + 1);
  const std::int64_t t_hi = min(s.n - 1, u + w.offset + w.seg - 1);
  const std::int64_t head_rows = (bi * s.h + hi) * s.n;
  float dk[kMaxDimsPerLane] = {}, dv[kMaxDimsPerLane] = {};
  for (std::int64_t t = t_lo; t <= t_hi; ++t) {
    const std::int64_t o = u - w.start(t);
    if (o < 0 || o >= w.span) continue;
    const std::int64_t band = (head_rows + t) * W + w.extra + o;
    const float ds = dS[band], p = P[band];
    if (ds == 0.0f && p == 0.0f) continue;
    const float* q = Q + (bi * s.n + t) * s.D() + hi * s.d;
    const float* dc = dC + (bi * s.n + t) * s.D() + hi * s.d;
#pragma unroll
    for (int i = 0; i < kMaxDimsPerLane; ++i) {
      const std::int64_t k = lane + 32 * i;
      if (k < s.d) {
        dk[i] += ds * q[k];
        dv[i] += p * dc[k];
      }
    }
  }
  const std::int64_t out = (bi * s.n + u) * s.D() + hi * s.d;
#pragma unroll
  for (int i = 0; i < kMaxDimsPerLane; ++i) {
    const std::int64_t k = lane + 32 * i;
    if (k < s.d) {
      dK[out + k] = dk[i];
      dV[out + k] = dv[i];
    }
  }
}

// Rows of the staged tile: landmarks plus the widest key range of a block of kQueries queries.
std::int64_t tile_rows(const Window& w) { return w.extra + (kQueries - 1) + (w.seg - 1) + w.span; }

// Shared memory of one block, staged or not (per-warp head and score rows, plus the K and V tile).
std::size_t local_smem_bytes(const Window& w, std::int64_t d, bool staged) {
  const std::int64_t per_warp = kWarps * (d + w.width());
  return static_cast<std::size_t>(per_warp + (staged ? 2 * tile_rows(w) * (d + 1) : 0)) * sizeof(float);
}

// Stages the tile when it fits in shared memory (the usual case: ls and sliding windows up to a few
// hundred keys); falls back to global-memory rows beyond that.
template <typename Launch>
void launch_local(const void* staged_kernel, const void* global_kernel, const Window& w, const Shape4& s,
                  const char* what, Launch&& launch) {
  if (s.d > 128)
    throw UsageError(std::string(what) + " on CUDA: head dim " + std::to_string(s.d) +
                     " is over the kernels' limit of 128");
  int dev = 0, limit = 0;
  LSB_CUDA_CHECK(cudaGetDevice(&dev));
  LSB_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const bool staged = local_smem_bytes(w, s.d, true) <= static_cast<std::size_t>(limit);
  const std::size_t smem = local_smem_bytes(w, s.d, staged);
  if (smem > static_cast<std::size_t>(limit))
    throw UsageError(std::string(what) + " on CUDA: the window needs " + std::to_string(smem) +
                     " bytes of shared memory per block, over the device's " + std::to_string(limit));
  const void* kernel = staged ? staged_kernel : global_kernel;
  if (smem > 48 * 1024)
    LSB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  const dim3 grid(LSB_BLOCKS(s.n, kQueries), static_cast<unsigned>(s.b * s.h));
  launch(staged, grid, smem);
  LSB_CUDA_LAUNCHED();
}

// Forward: P (b, h, n, width) and C. KX, VX: (b, extra, D) or null when extra = 0.
void local_forward(const Window& w, const Shape4& s, const float* Q, const float* K, const float* V, const float* KX,
                   const float* VX, const std::uint8_t* mask, float* P, float* C, const char* what) {
  launch_local(reinterpret_cast<const void*>(local_forward_kernel<true>),
               reinterpret_cast<const void*>(local_forward_kernel<false>), w, s, what,
               [&](bool staged, dim3 grid, std::size_t smem) {
                 if (staged)
                   local_forward_kernel<true><<<grid, kWarps * 32, smem>>>(w, s, Q, K, V, KX, VX, mask, P, C,
                                                                           tile_rows(w));
                 else
                   local_forward_kernel<false><<<grid, kWarps * 32, smem>>>(w, s, Q, K, V, KX, VX, mask, P, C, 0);
               });
}

// Backward: dQ, dK, dV, and (extra > 0) dKX, dVX, all written. dS: workspace of P's size.
void local_backward(const Window& w, const Shape4& s, const float* Q, const float* K, const float* V, const float* KX,
                    const float* VX, const float* P, const float* dC, float* dS, float* dQ, float* dK, float* dV,
                    float* dKX, float* dVX, const char* what) {
  launch_local(reinterpret_cast<const void*>(local_backward_query_kernel<true>),
               reinterpret_cast<const void*>(local_backward_query_kernel<false>), w, s, what,
               [&](bool staged, dim3 grid, std::size_t smem) {
                 if (staged)
                   local_backward_query_kernel<true><<<grid, kWarps * 32, smem>>>(w, s, K, V, KX, VX, P, dC, dS, dQ,
                                                                                  tile_rows(w));
                 else
                   local_backward_query_kernel<false><<<grid, kWarps * 32, smem>>>(w, s, K, V, KX, VX, P, dC, dS, dQ,
                                                                                   0);
               });
  const std::int64_t rows = s.b * s.h * s.n;
  local_backward_key_kernel<<<LSB_BLOCKS(rows, kWarps), kWarps * 32>>>(w, s, Q, P, dS, dC, dK, dV);
  LSB_CUDA_LAUNCHED();
  if (w.extra == 0) return;
  // The landmark columns of the band, per (b, h): (n x extra) with row stride width.
  const std::int64_t W = w.width();
  auto landmark_cols = [&](const float* band) {
    return MatRef::rowmajor(band, s.n, w.extra, W).batched(s.b, s.h * s.n * W, s.h, s.n * W);
  };
  cuda::gemm(landmark_cols(dS).t(), head_view(Q, s.b, s.n, s.h, s.d), head_view(dKX, s.b, w.extra, s.h, s.d));
  cuda::gemm(landmark_cols(P).t(), head_view(dC, s.b, s.n, s.h, s.d), head_view(dVX, s.b, w.extra, s.h, s.d));
}

class CudaSliding final : public CudaProjectedAttention {
 public:
  explicit CudaSliding(std::unique_ptr<Attention> twin) : CudaProjectedAttention(std::move(twin)) {
    win_ = Window(causal_ ? causal_sliding_window(int_param("R")) : sliding_window(int_param("R")));
  }
  const Tensor* saved_probabilities() const override { return &P_; }

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    ensure_here(P_, {b_, heads_, n_, win_.width()}, MemCategory::activations,
               "sliding band probabilities (b, h, n, 2R+1)");
    local_forward(win_, shape(), Q_.data(), K_.data(), V_.data(), nullptr, nullptr, mask_, P_.data(), C_.data(),
                  "sliding");
  }
  void core_backward() override {
    ensure_here(dS_, P_.shape(), MemCategory::workspace, "sliding band score gradients (b, h, n, 2R+1)");
    local_backward(win_, shape(), Q_.data(), K_.data(), V_.data(), nullptr, nullptr, P_.data(), dC_.data(),
                   dS_.data(), dQ_.data(), dK_.data(), dV_.data(), nullptr, nullptr, "sliding");
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return b * heads_ * n * win_.width() * (with_backward ? 2 : 1);
  }

 private:
  Shape4 shape() const { return {b_, n_, heads_, head_dim()}; }
  Window win_;
  Tensor P_, dS_;
};

class CudaLongShort final : public CudaProjectedAttention {
 public:
  explicit CudaLongShort(std::unique_ptr<Attention> twin)
      : CudaProjectedAttention(std::move(twin)), w_(int_param("w")), r_(int_param("r")) {
    win_ = Window(ls_window(w_, r_));
  }
  const Tensor* saved_probabilities() const override { return &P_; }

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    const std::int64_t D = dim_, rows = b_ * n_, hr = heads_ * r_;
    ensure_here(Kt_, {b_, n_, D}, MemCategory::activations, "ls LN_L(K)");
    ensure_here(Vt_, {b_, n_, D}, MemCategory::activations, "ls LN_L(V)");
    ensure_here(ln_l_stats_, {4, rows}, MemCategory::activations, "ls LN_L mean/rstd");
    float* st = ln_l_stats_.data();
    cuda::layernorm_forward(K_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Kt_.data(), st, st + rows);
    cuda::layernorm_forward(V_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Vt_.data(), st + 2 * rows,
                            st + 3 * rows);
    if (r_ > 0) {
      ensure_here(Pp_, {b_, n_, hr}, MemCategory::activations, "ls projection softmax (b, n, h*r)");
      ensure_here(land_, {4, b_, r_, D}, MemCategory::activations, "ls landmarks Kbar, Vbar, Khat, Vhat (b, r, D)");
      ensure_here(ln_g_stats_, {4, b_ * r_}, MemCategory::activations, "ls LN_G mean/rstd");
      cuda::linear_forward(x_, rows, D, value_of("wp"), value_of("bp"), hr, Pp_.data());
      cuda::column_softmax(Pp_.data(), mask_, b_, n_, hr);
      cuda::gemm(proj_view().t(), heads_of(Kt_, n_), landmark_heads(0));
      cuda::gemm(proj_view().t(), heads_of(Vt_, n_), landmark_heads(1));
      float* gs = ln_g_stats_.data();
      const std::int64_t lr = b_ * r_;
      cuda::layernorm_forward(landmark(0), lr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), landmark(2), gs, gs + lr);
      cuda::layernorm_forward(landmark(1), lr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), landmark(3), gs + 2 * lr,
                              gs + 3 * lr);
    }
    ensure_here(P_, {b_, heads_, n_, win_.width()}, MemCategory::activations, "ls probabilities (b, h, n, r + w + 2e)");
    local_forward(win_, shape(), Q_.data(), Kt_.data(), Vt_.data(), r_ ? landmark(2) : nullptr,
                  r_ ? landmark(3) : nullptr, mask_, P_.data(), C_.data(), "ls");
  }
  void core_backward() override {
    const std::int64_t D = dim_, rows = b_ * n_;
    ensure_here(dKt_, {b_, n_, D}, MemCategory::workspace, "ls dKt");
    ensure_here(dVt_, {b_, n_, D}, MemCategory::workspace, "ls dVt");
    ensure_here(dS_, P_.shape(), MemCategory::workspace, "ls score gradients (b, h, n, r + w + 2e)");
    if (r_ > 0) {
      ensure_here(dland_, {4, b_, r_, D}, MemCategory::workspace, "ls landmark gradients");
      ensure_here(dPp_, Pp_.shape(), MemCategory::workspace, "ls projection gradient (b, n, h*r)");
    }
    local_backward(win_, shape(), Q_.data(), Kt_.data(), Vt_.data(), r_ ? landmark(2) : nullptr,
                   r_ ? landmark(3) : nullptr, P_.data(), dC_.data(), dS_.data(), dQ_.data(), dKt_.data(),
                   dVt_.data(), r_ ? dlandmark(2) : nullptr, r_ ? dlandmark(3) : nullptr, "ls");
    if (r_ > 0) {
      const std::int64_t lr = b_ * r_;
      const float* gs = ln_g_stats_.data();
      cuda::layernorm_backward(dlandmark(2), landmark(0), lr, D, value_of("ln_g_weight"), gs, gs + lr, dlandmark(0),
                               grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
      cuda::layernorm_backward(dlandmark(3), landmark(1), lr, D, value_of("ln_g_weight"), gs + 2 * lr, gs + 3 * lr,
                               dlandmark(1), grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
      // Kbar_i = Pp_i^T Kt_i: dPp_i = Kt_i dKbar_i^T + Vt_i dVbar_i^T; dKt_i += Pp_i dKbar_i.
      const MatRef dPp = proj_view(dPp_.data());
      cuda::gemm(heads_of(Kt_, n_), dlandmark_heads(0).t(), dPp);
      cuda::gemm(heads_of(Vt_, n_), dlandmark_heads(1).t(), dPp, 1.0f, 1.0f);
      cuda::gemm(proj_view(), dlandmark_heads(0), heads_of(dKt_, n_), 1.0f, 1.0f);
      cuda::gemm(proj_view(), dlandmark_heads(1), heads_of(dVt_, n_), 1.0f, 1.0f);
      cuda::column_softmax_backward(Pp_.data(), dPp_.data(), b_, n_, heads_ * r_);
      cuda::linear_backward(dPp_.data(), x_, rows, D, value_of("wp"), heads_ * r_, grad_of("wp"), grad_of("bp"), nullptr, false);
    }
    const float* st = ln_l_stats_.data();
    cuda::layernorm_backward(dKt_.data(), K_.data(), rows, D, value_of("ln_l_weight"), st, st + rows, dK_.data(),
                             grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
    cuda::layernorm_backward(dVt_.data(), V_.data(), rows, D, value_of("ln_l_weight"), st + 2 * rows, st + 3 * rows,
                             dV_.data(), grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
  }
  void add_input_grad(float* dx) override {
    if (r_ > 0)
      cuda::linear_backward(dPp_.data(), x_, b_ * n_, dim_, value_of("wp"), heads_ * r_, nullptr, nullptr, dx, true);
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t D = dim_, hr = heads_ * r_;
    std::int64_t f = 2 * b * n * D + 4 * b * n + b * heads_ * n * win_.width();
    if (r_ > 0) f += b * n * hr + 4 * b * r_ * D + 4 * b * r_;
    if (with_backward) {
      f += 2 * b * n * D + b * heads_ * n * win_.width();
      if (r_ > 0) f += 4 * b * r_ * D + b * n * hr;
    }
    return f;
  }

 private:
  Shape4 shape() const { return {b_, n_, heads_, head_dim()}; }
  float* landmark(int i) { return land_.data() + i * b_ * r_ * dim_; }
  float* dlandmark(int i) { return dland_.data() + i * b_ * r_ * dim_; }
  MatRef landmark_heads(int i) { return head_view(landmark(i), b_, r_, heads_, head_dim()); }
  MatRef dlandmark_heads(int i) { return head_view(dlandmark(i), b_, r_, heads_, head_dim()); }
  MatRef proj_view(const float* t = nullptr) const {
    const std::int64_t hr = heads_ * r_;
    return MatRef::rowmajor(t ? t : Pp_.data(), n_, r_, hr).batched(b_, n_ * hr, heads_, r_);
  }
  std::int64_t w_, r_;
  Window win_;
  Tensor Kt_, Vt_, ln_l_stats_, Pp_, land_, ln_g_stats_, P_;
  Tensor dKt_, dVt_, dS_, dland_, dPp_;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_sliding(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaSliding>(std::move(twin));
}
std::unique_ptr<Attention> make_cuda_causal_ls(std::unique_ptr<Attention> twin);  // attention_impls/cuda/ls_causal.cu
std::unique_ptr<Attention> make_cuda_ls(std::unique_ptr<Attention> twin) {
  if (twin->causal()) return make_cuda_causal_ls(std::move(twin));
  return std::make_unique<CudaLongShort>(std::move(twin));
}

}  // namespace lsb
