// performer on the GPU: FAVOR+ as attention_impls/performer.cpp computes it (definition in
// docs/VARIANTS.md), every (batch, head) at once: cuBLAS for the feature projections (the random
// features W shared through a zero batch stride), B^T V, A S and their gradients; one block per row for
// the feature maps and normalisers. Deterministic: fixed-order reductions, no atomics. Causal: see the
// kernels' section below.
#include <cmath>
#include <vector>

#include "attention_impls/cuda/projected.cuh"
#include "attention_impls/random_features.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/device.hpp"
#include "nn/cuda/warp.cuh"

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

// ---- Causal (--causal), as attention_impls/performer.cpp: prefix sums in chunks of kChunk rows. The state
// before chunk c (S_c = sum of B_u^T v_u and z_c = sum of B_u over the earlier chunks) comes from one
// product per chunk and an exclusive prefix over the chunks; each row then adds its own chunk's
// lower-triangular part. The backward mirrors it: the gradient of the state after chunk c (G_c, g_c) is a
// reverse exclusive prefix of the chunks' A_c^T dnum_c, A_c^T dden_c.
constexpr std::int64_t kChunk = 64;
static_assert(kChunk <= kThreads, "a chunk's rows fit one block's score row");

// Rows of one head of a buffer: row t of group bh = bi * heads + hi at (bi sb + hi sh + t st).
struct HeadRowsOf {
  const float* p;
  std::int64_t heads, sb, sh, st;
  __device__ const float* row(std::int64_t bh, std::int64_t t) const {
    return p + (bh / heads) * sb + (bh % heads) * sh + t * st;
  }
};

// The causal feature maps (P holds w . x): queries exp(s w_j.x - s^2|x|^2/2 + |w_j|^2/2 - row max), keys
// exp(s w_j.x - s^2|x|^2/2 - |w_j|^2/2) (at most 1; padded rows 0), each / sqrt(m). One block per row.
__global__ void causal_features_kernel(float* P, const float* X, const std::uint8_t* mask, const float* half_w2,
                                       bool query, std::int64_t n, std::int64_t heads, std::int64_t d, std::int64_t m,
                                       float s, float inv_sqrt_m) {
  __shared__ float shared[kThreads / 32];
  const std::int64_t r = blockIdx.x, bi = r / n / heads, t = r % n;
  float* row = P + r * m;
  if (!query && !mask[bi * n + t]) {
    for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = 0.0f;
    return;
  }
  const float hn = half_norm(head_row(X, r, n, heads, d), d, s, shared);
  const float sign = query ? 1.0f : -1.0f;
  float mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    row[j] = s * row[j] - hn + sign * half_w2[j];
    mx = fmaxf(mx, row[j]);
  }
  const float c = query ? block_reduce<true>(mx, shared) : 0.0f;  // keys: the exponent is never above 0
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = expf(row[j] - c) * inv_sqrt_m;
}

// Per chunk c of group g: out[g, c] = (sum_t F_t^T X_t (m x d), sum_t F_t w_t (m)) over the chunk's rows t < n,
// F (groups, n, m), w (groups, n) or null for 1. One block per (group, chunk).
__global__ void chunk_products_kernel(const float* F, HeadRowsOf X, const float* w, std::int64_t n, std::int64_t m,
                                      std::int64_t d, float* out) {
  const std::int64_t nc = (n + kChunk - 1) / kChunk, g = blockIdx.x / nc, c = blockIdx.x % nc, width = m * d + m;
  const std::int64_t t0 = c * kChunk, t1 = min(n, t0 + kChunk);
  for (std::int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    float s = 0;
    if (i < m * d) {
      const std::int64_t j = i / d, e = i % d;
      for (std::int64_t t = t0; t < t1; ++t) s += F[(g * n + t) * m + j] * X.row(g, t)[e];
    } else {
      const std::int64_t j = i - m * d;
      for (std::int64_t t = t0; t < t1; ++t) s += F[(g * n + t) * m + j] * (w ? w[g * n + t] : 1.0f);
    }
    out[blockIdx.x * width + i] = s;
  }
}

// Exclusive prefix over the chunks of each group, in place (states (groups, nc, width)): forward, each chunk
// gets the sum of the chunks before it; reverse, of the chunks after it. One thread per (group, element).
__global__ void chunk_prefix_kernel(float* states, std::int64_t groups, std::int64_t nc, std::int64_t width,
                                    bool reverse) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= groups * width) return;
  const std::int64_t g = i / width, k = i % width;
  float running = 0;
  for (std::int64_t step = 0; step < nc; ++step) {
    float& v = states[(g * nc + (reverse ? nc - 1 - step : step)) * width + k];
    const float own = v;
    v = running;
    running += own;
  }
}

// Dot products of row a with rows b_u, u in [u0, u1) (at most kChunk), into out[u - u0]: one warp per u.
__device__ void chunk_dots(const float* a, HeadRowsOf b, std::int64_t bh, std::int64_t u0, std::int64_t u1,
                           std::int64_t len, const float* add, float* out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (std::int64_t u = u0 + warp; u < u1; u += blockDim.x / 32) {
    const float* br = b.row(bh, u);
    float s = 0;
    for (std::int64_t k = lane; k < len; k += 32) s += a[k] * br[k];
    s = cuda::warp_sum(s);
    if (lane == 0) out[u - u0] = s + (add ? *add : 0.0f);
  }
}

// Query row t of group bh (chunk c): num = A_t S_c + sum_{u in chunk, u <= t} (A_t . B_u) v_u, den = A_t . z_c +
// the same sum of A_t . B_u; C = num / den (0 when den is 0). One block per row.
__global__ void causal_output_kernel(const float* A, const float* B, HeadRowsOf V, const float* states, std::int64_t n,
                                     std::int64_t heads, std::int64_t m, std::int64_t d, float* C, float* den) {
  __shared__ float shared[kThreads / 32], T[kChunk];
  const std::int64_t r = blockIdx.x, bh = r / n, t = r % n, c = t / kChunk, nc = (n + kChunk - 1) / kChunk;
  const float* a = A + r * m;
  const float *S = states + (bh * nc + c) * (m * d + m), *z = S + m * d;
  const HeadRowsOf Bf{B, heads, heads * n * m, n * m, m};
  chunk_dots(a, Bf, bh, c * kChunk, t + 1, m, nullptr, T);
  float part = 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) part += a[j] * z[j];
  float sum = block_reduce<false>(part, shared);  // its barriers also publish T
  for (std::int64_t u = 0; u <= t - c * kChunk; ++u) sum += T[u];
  if (threadIdx.x == 0) den[r] = sum;
  const float inv = sum > 0 ? 1.0f / sum : 0.0f;
  float* out = head_row(C, r, n, heads, d);
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) {
    float num = 0;
    for (std::int64_t j = 0; j < m; ++j) num += a[j] * S[j * d + e];
    for (std::int64_t u = c * kChunk; u <= t; ++u) num += T[u - c * kChunk] * V.row(bh, u)[e];
    out[e] = num * inv;
  }
}

// Query row t: dA_t = dnum_t S_c^T + dden_t z_c + sum_{u in chunk, u <= t} dT_tu B_u, dT_tu = dnum_t . v_u + dden_t.
__global__ void causal_query_grad_kernel(const float* B, HeadRowsOf V, const float* states, const float* dnum,
                                         const float* dden, std::int64_t n, std::int64_t heads, std::int64_t m,
                                         std::int64_t d, float* dA) {
  __shared__ float dT[kChunk];
  const std::int64_t r = blockIdx.x, bh = r / n, t = r % n, c = t / kChunk, nc = (n + kChunk - 1) / kChunk;
  const float *S = states + (bh * nc + c) * (m * d + m), *z = S + m * d, *dn = dnum + r * d;
  chunk_dots(dn, V, bh, c * kChunk, t + 1, d, dden + r, dT);
  __syncthreads();
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    float g = dden[r] * z[j];
    for (std::int64_t e = 0; e < d; ++e) g += dn[e] * S[j * d + e];
    for (std::int64_t u = c * kChunk; u <= t; ++u) g += dT[u - c * kChunk] * B[(bh * n + u) * m + j];
    dA[r * m + j] = g;
  }
}

// Key row u (chunk c, G_c and g_c the gradient of the state after it): with T_tu = A_t . B_u and dT_tu as above
// over the chunk's queries t >= u, dB_u = sum_t dT_tu A_t + G_c v_u + g_c (padded keys 0) and
// dv_u = sum_t T_tu dnum_t + B_u G_c.
__global__ void causal_key_grad_kernel(const float* A, const float* B, HeadRowsOf V, const std::uint8_t* mask,
                                       const float* gstates, const float* dnum, const float* dden, std::int64_t n,
                                       std::int64_t heads, std::int64_t m, std::int64_t d, float* dB, float* dV) {
  __shared__ float T[kChunk], dT[kChunk];
  const std::int64_t r = blockIdx.x, bh = r / n, u = r % n, c = u / kChunk, nc = (n + kChunk - 1) / kChunk;
  const std::int64_t t1 = min(n, (c + 1) * kChunk), D = heads * d;
  const float *G = gstates + (bh * nc + c) * (m * d + m), *gz = G + m * d, *b = B + r * m, *v = V.row(bh, u);
  // A and dnum rows t of this group as rows; the dot products against this key's B_u and v_u.
  const HeadRowsOf Ar{A, heads, heads * n * m, n * m, m}, dN{dnum, heads, heads * n * d, n * d, d};
  for (int pass = 0; pass < 2; ++pass) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (std::int64_t t = u + warp; t < t1; t += blockDim.x / 32) {
      const float* row = pass == 0 ? Ar.row(bh, t) : dN.row(bh, t);
      const float* key = pass == 0 ? b : v;
      const std::int64_t len = pass == 0 ? m : d;
      float s = 0;
      for (std::int64_t k = lane; k < len; k += 32) s += row[k] * key[k];
      s = cuda::warp_sum(s);
      if (lane == 0) (pass == 0 ? T : dT)[t - u] = s + (pass == 0 ? 0.0f : dden[bh * n + t]);
    }
  }
  __syncthreads();
  const bool real = mask[(bh / heads) * n + u] != 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    float g = gz[j];
    for (std::int64_t t = u; t < t1; ++t) g += dT[t - u] * A[(bh * n + t) * m + j];
    for (std::int64_t e = 0; e < d; ++e) g += v[e] * G[j * d + e];
    dB[r * m + j] = real ? g : 0.0f;
  }
  float* dv = dV + ((bh / heads) * n + u) * D + (bh % heads) * d;
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) {
    float g = 0;
    for (std::int64_t t = u; t < t1; ++t) g += T[t - u] * dnum[(bh * n + t) * d + e];
    for (std::int64_t j = 0; j < m; ++j) g += b[j] * G[j * d + e];
    dv[e] = g;
  }
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
                                                       heads_, m, d, dA_.data());
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
