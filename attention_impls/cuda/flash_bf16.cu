// flash on tensor cores (--precision bf16 on a GPU of compute capability 8.0 or newer): the same
// algorithm as the fp32 kernels of flash.cu (online softmax over key tiles, lse kept for the
// backward, a query-centric dQ kernel and a key-centric dK/dV kernel, no atomics, so runs repeat
// bit for bit), with every product on `mma.sync.m16n8k16` (bf16 operands, fp32 accumulation) and
// the softmax in fp32 registers, in the manner of FlashAttention-2.
//
// Layout. A block of 4 warps owns 64 rows (queries; keys in the dK/dV kernel), 16 per warp; the
// other side comes in tiles of 64 rows, converted from the fp32 (b, n, D) buffers to bf16 in shared
// memory, once row-major ([row][dim], stride DP + 8) and, where a product contracts over rows,
// transposed ([dim][row], stride 64 + 8); the 8-element pad makes the fragment loads conflict-free.
// Head dims are padded with zeros to DP = 16 * KC. Rows past n are zeros and count as masked keys.
// Causal: as a block's rows and a tile both span 64 rows, a query block stops at the tile that holds its
// own rows (the diagonal tile, where key u > query t is masked) and a key block starts there.
//
// Fragments of m16n8k16 (PTX ISA, "mma.m16n8k16" fragment layouts), lane = 4 g + t:
//   A (16 x 16, row-major), 4 registers of 2 bf16: (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)
//   B (16 x 8, "col"), 2 registers: (k = 2t..2t+1, n = g), (k = 2t+8.., n = g)
//   C (16 x 8, fp32), 4 floats: (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)
// so a warp's row of scores is spread over the 4 lanes of its group (reduced with two shuffles), and
// the C fragments of two adjacent 8-column tiles are the A fragment of the next product (P V, dS K).
#include <cuda_bf16.h>

#include <cmath>
#include <type_traits>

#include "attention_impls/cuda/flash.hpp"
#include "nn/cuda/check.cuh"

namespace lsb {
namespace {

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // rows a block owns
constexpr int kTile = 64;           // rows of the other side per step
constexpr int kTS = kTile + 8;      // stride of a transposed tile
constexpr int kNT = kTile / 8;      // 8-column score tiles per step
static_assert(kRows == kTile, "a block stages its own rows in a tile buffer");

// Two floats rounded to bf16 (nearest even) in one register, `lo` in the low half (the lower index).
__device__ __forceinline__ std::uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}

__device__ __forceinline__ std::uint32_t ld32(const __nv_bfloat16* p) {
  return *reinterpret_cast<const std::uint32_t*>(p);
}

// d += a b on one 16 x 8 tile.
__device__ __forceinline__ void mma(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();  // the host checks compute capability 8.0 before choosing these kernels
#endif
}

// The A fragment of rows [r0, r0 + 16) x columns [k0, k0 + 16) of a row-major bf16 tile.
__device__ __forceinline__ void load_a(std::uint32_t (&a)[4], const __nv_bfloat16* tile, int stride, int r0, int k0,
                                       int g, int t) {
  const __nv_bfloat16* p = tile + (r0 + g) * stride + k0 + 2 * t;
  a[0] = ld32(p);
  a[1] = ld32(p + 8 * stride);
  a[2] = ld32(p + 8);
  a[3] = ld32(p + 8 * stride + 8);
}

// The B fragment (k in [k0, k0 + 16), n in [n0, n0 + 8)) of B(k, n) = tile[n][k] (tile row-major by n).
__device__ __forceinline__ void load_b(std::uint32_t& b0, std::uint32_t& b1, const __nv_bfloat16* tile, int stride,
                                       int n0, int k0, int g, int t) {
  const __nv_bfloat16* p = tile + (n0 + g) * stride + k0 + 2 * t;
  b0 = ld32(p);
  b1 = ld32(p + 8);
}

// The A fragment of the 16 x 16 block kk of a warp's (16 x 64) fp32 C fragments c[kNT][4].
__device__ __forceinline__ void c_to_a(std::uint32_t (&a)[4], const float (&c)[kNT][4], int kk) {
  a[0] = pack_bf16(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack_bf16(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack_bf16(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack_bf16(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// Rows [r0, r0 + kTile) of one head of src as bf16, row-major into `rows` (stride DP + 8) and/or
// transposed into `cols` (stride kTS); either may be null. Zero past n and past d.
template <int DP>
__device__ void stage(const float* src, const HeadLayout& L, int bh, std::int64_t r0, __nv_bfloat16* rows,
                      __nv_bfloat16* cols) {
  for (int idx = threadIdx.x; idx < kTile * DP; idx += kThreads) {
    const int j = idx / DP, k = idx % DP;  // consecutive threads read consecutive dims of a row
    const bool in = r0 + j < L.n && k < L.d;
    const __nv_bfloat16 v = __float2bfloat16_rn(in ? src[L.at(bh, r0 + j, k)] : 0.0f);
    if (rows) rows[j * (DP + 8) + k] = v;
    if (cols) cols[k * kTS + j] = v;
  }
}

// The block's own rows [r0, r0 + kRows) of src, staged through `buf` (free again after the caller's
// next __syncthreads), as the A fragments of this warp's 16 rows.
template <int KC>
__device__ void own_rows(const float* src, const HeadLayout& L, int bh, std::int64_t r0, __nv_bfloat16* buf,
                         std::uint32_t (&a)[KC][4]) {
  stage<16 * KC>(src, L, bh, r0, buf, nullptr);
  __syncthreads();
  const int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
  for (int c = 0; c < KC; ++c) load_a(a[c], buf, 16 * KC + 8, 16 * warp, 16 * c, g, t);
}

// bias[j] = 0 for a valid key u0 + j of sequence mask m, -inf for a masked one or one past n.
__device__ void stage_key_bias(float* bias, const std::uint8_t* m, std::int64_t n, std::int64_t u0) {
  if (threadIdx.x < kTile) bias[threadIdx.x] = (u0 + threadIdx.x < n && m[u0 + threadIdx.x]) ? 0.0f : -INFINITY;
}

// Causal: whether score element i of 8-column tile j of a warp's C fragments (query rows r0 + g, r0 + g + 8;
// key columns c0 + 8 j + 2 t, + 1) is a key after its query.
__device__ __forceinline__ bool future(bool causal, std::int64_t c0, int j, int i, std::int64_t r0, int g, int t) {
  return causal && c0 + 8 * j + 2 * t + (i & 1) > r0 + g + (i >= 2 ? 8 : 0);
}

// The max and the sum over the 4 lanes of a row group.
__device__ __forceinline__ float group_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float group_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// s[j] = A B^T over the 16 x 64 scores of this warp: A fragments a[KC][4] (16 rows x DP), B rows from
// a row-major [row][dim] tile of 64 rows.
template <int KC>
__device__ __forceinline__ void scores(float (&s)[kNT][4], const std::uint32_t (&a)[KC][4], const __nv_bfloat16* tile,
                                       int g, int t) {
#pragma unroll
  for (int j = 0; j < kNT; ++j) {
    s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int c = 0; c < KC; ++c) {
      std::uint32_t b0, b1;
      load_b(b0, b1, tile, 16 * KC + 8, 8 * j, 16 * c, g, t);
      mma(s[j], a[c], b0, b1);
    }
  }
}

// acc[jd] += P V over one tile: P the warp's (16 x 64) C fragments, V from a transposed [dim][row] tile.
template <int KC>
__device__ __forceinline__ void accumulate(float (&acc)[2 * KC][4], const float (&p)[kNT][4],
                                           const __nv_bfloat16* tileT, int g, int t) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    std::uint32_t a[4];
    c_to_a(a, p, kk);
#pragma unroll
    for (int jd = 0; jd < 2 * KC; ++jd) {
      std::uint32_t b0, b1;
      load_b(b0, b1, tileT, kTS, 8 * jd, 16 * kk, g, t);
      mma(acc[jd], a, b0, b1);
    }
  }
}

// Writes a warp's 16 x DP fp32 C fragments (times the row's factor) to rows r0 + g, r0 + g + 8.
template <int KC>
__device__ __forceinline__ void store_rows(float* dst, const float (&acc)[2 * KC][4], const HeadLayout& L, int bh,
                                           std::int64_t r0, int g, int t, float scale_lo = 1.0f,
                                           float scale_hi = 1.0f) {
#pragma unroll
  for (int jd = 0; jd < 2 * KC; ++jd)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const std::int64_t r = r0 + g + (i >= 2 ? 8 : 0);
      const int k = 8 * jd + 2 * t + (i & 1);
      if (r < L.n && k < L.d) dst[L.at(bh, r, k)] = acc[jd][i] * (i >= 2 ? scale_hi : scale_lo);
    }
}

template <int KC>
constexpr int forward_smem() {
  return (kTile * (16 * KC + 8) + 16 * KC * kTS) * 2 + kTile * 4;
}

template <int KC>
__global__ void __launch_bounds__(kThreads) flash_bf16_forward_kernel(const float* Q, const float* K, const float* V,
                                                                      const std::uint8_t* mask, HeadLayout L,
                                                                      float* O, float* lse, bool causal) {
  constexpr int DP = 16 * KC, RS = DP + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* Ks = reinterpret_cast<__nv_bfloat16*>(smem);  // (kTile, RS): the key tile; the query rows first
  __nv_bfloat16* Vt = Ks + kTile * RS;                // (DP, kTS): the value tile transposed
  auto* key_bias = reinterpret_cast<float*>(Vt + DP * kTS);  // (kTile): 0, or -inf for a masked key
  const int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const int bh = blockIdx.y;
  const std::int64_t q0 = std::int64_t(blockIdx.x) * kRows;
  const std::uint8_t* m = mask + (bh / L.h) * L.n;

  std::uint32_t qa[KC][4];
  own_rows<KC>(Q, L, bh, q0, Ks, qa);

  float o[2 * KC][4];
#pragma unroll
  for (int jd = 0; jd < 2 * KC; ++jd) o[jd][0] = o[jd][1] = o[jd][2] = o[jd][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.0f, 0.0f};  // rows g, g + 8; sums per lane
  const std::int64_t r0 = q0 + 16 * warp;
  for (std::int64_t u0 = 0; u0 < (causal ? q0 + kRows : L.n); u0 += kTile) {
    __syncthreads();  // the previous tile (or the query rows) is no longer read
    stage<DP>(K, L, bh, u0, Ks, nullptr);
    stage<DP>(V, L, bh, u0, nullptr, Vt);
    stage_key_bias(key_bias, m, L.n, u0);
    __syncthreads();
    float s[kNT][4];
    scores<KC>(s, qa, Ks, g, t);
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[j][i] += future(causal, u0, j, i, r0, g, t) ? -INFINITY : key_bias[8 * j + 2 * t + (i & 1)];
        tile_max[i >> 1] = fmaxf(tile_max[i >> 1], s[j][i]);
      }
    float base[2], corr[2], tile_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float mx = fmaxf(row_max[r], group_max(tile_max[r]));
      base[r] = mx == -INFINITY ? 0.0f : mx;  // no valid key yet: every probability is exp(-inf) = 0
      corr[r] = expf(row_max[r] - base[r]);   // 0 while row_max is -inf
      row_max[r] = mx;
    }
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[j][i] = expf(s[j][i] - base[i >> 1]);
        tile_sum[i >> 1] += s[j][i];
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) row_sum[r] = row_sum[r] * corr[r] + tile_sum[r];
#pragma unroll
    for (int jd = 0; jd < 2 * KC; ++jd)
#pragma unroll
      for (int i = 0; i < 4; ++i) o[jd][i] *= corr[i >> 1];
    accumulate<KC>(o, s, Vt, g, t);
  }
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] = group_sum(row_sum[r]);
    inv[r] = row_sum[r] > 0 ? 1.0f / row_sum[r] : 0.0f;
  }
  store_rows<KC>(O, o, L, bh, r0, g, t, inv[0], inv[1]);
  if (t == 0)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const std::int64_t row = r0 + g + 8 * r;
      if (row < L.n) lse[bh * L.n + row] = row_sum[r] > 0 ? row_max[r] + logf(row_sum[r]) : -INFINITY;
    }
}

template <int KC>
constexpr int dq_smem() {
  return (2 * kTile * (16 * KC + 8) + 16 * KC * kTS) * 2 + kTile * 4;
}

// dQ[t] = sum_u dS[t, u] K[u], dS = P (dP - delta), P = exp(S - lse), dP = dO V^T; 64 queries a block.
template <int KC>
__global__ void __launch_bounds__(kThreads)
    flash_bf16_dq_kernel(const float* Q, const float* K, const float* V, const float* dO, const std::uint8_t* mask,
                         HeadLayout L, const float* lse, const float* delta, float* dQ, bool causal) {
  constexpr int DP = 16 * KC, RS = DP + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* Ks = reinterpret_cast<__nv_bfloat16*>(smem);  // (kTile, RS): keys; the query rows first
  __nv_bfloat16* Vs = Ks + kTile * RS;                // (kTile, RS): values; the rows of dO first
  __nv_bfloat16* Kt = Vs + kTile * RS;                // (DP, kTS): keys transposed
  auto* key_bias = reinterpret_cast<float*>(Kt + DP * kTS);
  const int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const int bh = blockIdx.y;
  const std::int64_t q0 = std::int64_t(blockIdx.x) * kRows, r0 = q0 + 16 * warp;
  const std::uint8_t* m = mask + (bh / L.h) * L.n;

  std::uint32_t qa[KC][4], da[KC][4];
  own_rows<KC>(Q, L, bh, q0, Ks, qa);
  own_rows<KC>(dO, L, bh, q0, Vs, da);
  float row_lse[2], row_delta[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const std::int64_t row = r0 + g + 8 * r;
    row_lse[r] = row < L.n ? lse[bh * L.n + row] : -INFINITY;
    row_delta[r] = row < L.n ? delta[bh * L.n + row] : 0.0f;
  }
  float dq[2 * KC][4];
#pragma unroll
  for (int jd = 0; jd < 2 * KC; ++jd) dq[jd][0] = dq[jd][1] = dq[jd][2] = dq[jd][3] = 0.0f;
  for (std::int64_t u0 = 0; u0 < (causal ? q0 + kRows : L.n); u0 += kTile) {
    __syncthreads();
    stage<DP>(K, L, bh, u0, Ks, Kt);
    stage<DP>(V, L, bh, u0, Vs, nullptr);
    stage_key_bias(key_bias, m, L.n, u0);
    __syncthreads();
    float s[kNT][4], dp[kNT][4];
    scores<KC>(s, qa, Ks, g, t);
    scores<KC>(dp, da, Vs, g, t);
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1;
        const float pj = row_lse[r] == -INFINITY || future(causal, u0, j, i, r0, g, t)
                             ? 0.0f
                             : expf(s[j][i] + key_bias[8 * j + 2 * t + (i & 1)] - row_lse[r]);
        s[j][i] = pj * (dp[j][i] - row_delta[r]);  // dS
      }
    accumulate<KC>(dq, s, Kt, g, t);
  }
  store_rows<KC>(dQ, dq, L, bh, r0, g, t);
}

template <int KC>
constexpr int dkdv_smem() {
  return (2 * kTile * (16 * KC + 8) + 2 * 16 * KC * kTS) * 2 + 2 * kTile * 4;
}

// For key u: dV[u] = sum_t P[t, u] dO[t], dK[u] = sum_t dS[t, u] Q[t]; 64 keys a block, whose warps
// compute the transposed scores S^T = K Q^T and dP^T = V dO^T.
template <int KC>
__global__ void __launch_bounds__(kThreads)
    flash_bf16_dkdv_kernel(const float* Q, const float* K, const float* V, const float* dO, const std::uint8_t* mask,
                           HeadLayout L, const float* lse, const float* delta, float* dK, float* dV, bool causal) {
  constexpr int DP = 16 * KC, RS = DP + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* Qs = reinterpret_cast<__nv_bfloat16*>(smem);  // (kTile, RS): queries; the key rows first
  __nv_bfloat16* dOs = Qs + kTile * RS;               // (kTile, RS): rows of dO; the value rows first
  __nv_bfloat16* Qt = dOs + kTile * RS;               // (DP, kTS)
  __nv_bfloat16* dOt = Qt + DP * kTS;                 // (DP, kTS)
  auto* lse_s = reinterpret_cast<float*>(dOt + DP * kTS);  // (kTile)
  float* delta_s = lse_s + kTile;                          // (kTile)
  const int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const int bh = blockIdx.y;
  const std::int64_t k0 = std::int64_t(blockIdx.x) * kRows, r0 = k0 + 16 * warp;
  const std::uint8_t* m = mask + (bh / L.h) * L.n;

  std::uint32_t ka[KC][4], va[KC][4];
  own_rows<KC>(K, L, bh, k0, Qs, ka);
  own_rows<KC>(V, L, bh, k0, dOs, va);
  bool key_valid[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const std::int64_t u = r0 + g + 8 * r;
    key_valid[r] = u < L.n && m[u];
  }
  float dk[2 * KC][4], dv[2 * KC][4];
#pragma unroll
  for (int jd = 0; jd < 2 * KC; ++jd)
#pragma unroll
    for (int i = 0; i < 4; ++i) dk[jd][i] = dv[jd][i] = 0.0f;
  for (std::int64_t t0 = causal ? k0 : 0; t0 < L.n; t0 += kTile) {
    __syncthreads();
    stage<DP>(Q, L, bh, t0, Qs, Qt);
    stage<DP>(dO, L, bh, t0, dOs, dOt);
    if (threadIdx.x < kTile) {
      const std::int64_t q = t0 + threadIdx.x;
      lse_s[threadIdx.x] = q < L.n ? lse[bh * L.n + q] : -INFINITY;
      delta_s[threadIdx.x] = q < L.n ? delta[bh * L.n + q] : 0.0f;
    }
    __syncthreads();
    float p[kNT][4], ds[kNT][4];
    scores<KC>(p, ka, Qs, g, t);    // S^T
    scores<KC>(ds, va, dOs, g, t);  // dP^T
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int q = 8 * j + 2 * t + (i & 1);
        const float l = lse_s[q];
        // Transposed: the fragment's row is the key, the tile's column the query.
        const bool past = !causal || r0 + g + (i >= 2 ? 8 : 0) <= t0 + q;
        const bool seen = key_valid[i >> 1] && l != -INFINITY && past;
        p[j][i] = seen ? expf(p[j][i] - l) : 0.0f;
        ds[j][i] = p[j][i] * (ds[j][i] - delta_s[q]);
      }
    accumulate<KC>(dv, p, dOt, g, t);
    accumulate<KC>(dk, ds, Qt, g, t);
  }
  store_rows<KC>(dK, dk, L, bh, r0, g, t);
  store_rows<KC>(dV, dv, L, bh, r0, g, t);
}

// Calls f with KC = ceil(d / 16) (d <= kFlashMaxHeadDim).
template <typename F>
void with_kc(int d, F&& f) {
  switch ((d + 15) / 16) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default: throw std::logic_error("flash_bf16: head dim over kFlashMaxHeadDim");
  }
}

// Launches Kernel with Smem bytes of dynamic shared memory; the opt-in that sizes over 48 KiB need is
// made once per kernel, not on every launch.
template <auto Kernel, int Smem, typename... Args>
void launch(const HeadLayout& L, int batch_heads, Args... args) {
  static const bool opted_in = [] {
    LSB_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Smem));
    return true;
  }();
  (void)opted_in;
  const dim3 grid(LSB_BLOCKS(L.n, kRows), static_cast<unsigned>(batch_heads));
  Kernel<<<grid, kThreads, Smem>>>(args...);
  LSB_CUDA_LAUNCHED();
}

}  // namespace

void flash_bf16_forward(const float* Q, const float* K, const float* V, const std::uint8_t* mask, const HeadLayout& L,
                        int batch_heads, float* O, float* lse, bool causal) {
  with_kc(L.d, [&](auto kc) {
    constexpr int KC = decltype(kc)::value;
    launch<flash_bf16_forward_kernel<KC>, forward_smem<KC>()>(L, batch_heads, Q, K, V, mask, L, O, lse, causal);
  });
}

void flash_bf16_backward(const float* Q, const float* K, const float* V, const float* dO, const std::uint8_t* mask,
                         const HeadLayout& L, int batch_heads, const float* lse, const float* delta, float* dQ,
                         float* dK, float* dV, bool causal) {
  with_kc(L.d, [&](auto kc) {
    constexpr int KC = decltype(kc)::value;
    launch<flash_bf16_dq_kernel<KC>, dq_smem<KC>()>(L, batch_heads, Q, K, V, dO, mask, L, lse, delta, dQ, causal);
    launch<flash_bf16_dkdv_kernel<KC>, dkdv_smem<KC>()>(L, batch_heads, Q, K, V, dO, mask, L, lse, delta, dK, dV,
                                                         causal);
  });
}

}  // namespace lsb
