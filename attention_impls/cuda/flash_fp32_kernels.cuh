// The fp32 kernels of flash on the GPU (attention_impls/cuda/flash.cu, which describes their layout),
// written in the kernel dialect (nn/cuda/kernel_dialect.cuh) so that the tests also run them, unchanged,
// on an emulated thread block (tests/test_flash_emulated.cpp). Included inside a namespace after the
// dialect; <cmath>, <cstdint>, <stdexcept>, <type_traits> and attention_impls/cuda/flash.hpp come before
// that namespace.

constexpr int kRows = 64, kTile = 32, kThreads = 256;
static_assert(kRows % kTile == 0, "causal: a block of query rows starts on a key tile");

// Sum of the 4 partial sums of a row's threads (lanes 4r .. 4r+3).
LSB_DEVICE_FN float row_sum4(float v) {
  v += lane_xor(v, 1);
  v += lane_xor(v, 2);
  return v;
}

// Loads this thread's dims of row t of one head (0 past the end).
template <int KPT>
LSB_DEVICE_FN void load_row(const float* src, const HeadLayout& L, int bh, std::int64_t t, int sub, float (&r)[KPT]) {
#pragma unroll
  for (int i = 0; i < KPT; ++i) {
    const int k = 4 * i + sub;
    r[i] = (t < L.n && k < L.d) ? src[L.at(bh, t, k)] : 0.0f;
  }
}

// Stages rows [t0, t0 + kTile) of one head of `a` (and of `b`) into shared tiles of stride 4*KPT.
template <int KPT>
LSB_DEVICE_FN void stage_tile(const float* a, const float* b, const HeadLayout& L, int bh, std::int64_t t0, float* sa,
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
LSB_DEVICE_FN float dot_part(const float (&r)[KPT], const float* tile_row, int sub) {
  float s = 0;
#pragma unroll
  for (int i = 0; i < KPT; ++i) s += r[i] * tile_row[4 * i + sub];
  return s;
}

// O = softmax(Q K^T + mask) V per head; lse[bh, t] = log-sum-exp of the row (-inf: no valid key).
template <int KPT>
LSB_KERNEL(kThreads)
flash_forward_kernel(const float* Q, const float* K, const float* V, const std::uint8_t* mask, HeadLayout L, float* O,
                     float* lse, bool causal) {
  LSB_SHARED_ARRAY(float, Ks, [kTile * 4 * KPT]);
  LSB_SHARED_ARRAY(float, Vs, [kTile * 4 * KPT]);
  LSB_SHARED_ARRAY(bool, valid, [kTile]);
  const int bh = blockIdx.y, sub = threadIdx.x % 4;
  const std::int64_t block = query_block(causal);
  const std::int64_t t = block * kRows + threadIdx.x / 4;
  const std::uint8_t* m = mask + (bh / L.h) * L.n;
  float q[KPT], o[KPT];
  load_row<KPT>(Q, L, bh, t, sub, q);
#pragma unroll
  for (int i = 0; i < KPT; ++i) o[i] = 0;
  float mx = -INFINITY, l = 0;
  const std::int64_t block_end = (block + 1) * kRows;
  const std::int64_t u_end = causal && block_end < L.n ? block_end : L.n;
  for (std::int64_t u0 = 0; u0 < u_end; u0 += kTile) {
    block_sync();
    stage_tile<KPT>(K, V, L, bh, u0, Ks, Vs);
    if (threadIdx.x < kTile) valid[threadIdx.x] = u0 + threadIdx.x < L.n && m[u0 + threadIdx.x];
    block_sync();
    float s[kTile];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kTile; ++j) {
      s[j] = row_sum4(dot_part<KPT>(q, Ks + j * 4 * KPT, sub));
      s[j] = valid[j] && !(causal && u0 + j > t) ? s[j] : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    const float mx_new = fmaxf(mx, tile_max);
    if (mx_new == -INFINITY) continue;     // no valid key yet
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
LSB_KERNEL(kThreads)
flash_delta_kernel(const float* O, const float* dO, HeadLayout L, std::int64_t rows, float* delta) {
  const std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;
  const int bh = static_cast<int>(r / L.n);
  const std::int64_t t = r % L.n;
  float s = 0;
  for (int k = threadIdx.x % 32; k < L.d; k += 32) s += O[L.at(bh, t, k)] * dO[L.at(bh, t, k)];
  s = warp_sum(s);
  if (threadIdx.x % 32 == 0) delta[r] = s;
}

// dQ[t] = sum_u dS[t, u] K[u], dS = P (dP - delta), P = exp(S - lse), dP = dO V^T.
template <int KPT>
LSB_KERNEL(kThreads)
flash_dq_kernel(const float* Q, const float* K, const float* V, const float* dO, const std::uint8_t* mask, HeadLayout L,
                const float* lse, const float* delta, float* dQ, bool causal) {
  LSB_SHARED_ARRAY(float, Ks, [kTile * 4 * KPT]);
  LSB_SHARED_ARRAY(float, Vs, [kTile * 4 * KPT]);
  LSB_SHARED_ARRAY(bool, valid, [kTile]);
  const int bh = blockIdx.y, sub = threadIdx.x % 4;
  const std::int64_t block = query_block(causal);
  const std::int64_t t = block * kRows + threadIdx.x / 4;
  const std::uint8_t* m = mask + (bh / L.h) * L.n;
  float q[KPT], dout[KPT], dq[KPT];
  load_row<KPT>(Q, L, bh, t, sub, q);
  load_row<KPT>(dO, L, bh, t, sub, dout);
#pragma unroll
  for (int i = 0; i < KPT; ++i) dq[i] = 0;
  const float row_lse = t < L.n ? lse[bh * L.n + t] : -INFINITY;
  const float row_delta = t < L.n ? delta[bh * L.n + t] : 0.0f;
  const std::int64_t block_end = (block + 1) * kRows;
  const std::int64_t u_end = causal && block_end < L.n ? block_end : L.n;
  for (std::int64_t u0 = 0; u0 < u_end; u0 += kTile) {
    block_sync();
    stage_tile<KPT>(K, V, L, bh, u0, Ks, Vs);
    if (threadIdx.x < kTile) valid[threadIdx.x] = u0 + threadIdx.x < L.n && m[u0 + threadIdx.x];
    block_sync();
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
LSB_KERNEL(kThreads)
flash_dkdv_kernel(const float* Q, const float* K, const float* V, const float* dO, const std::uint8_t* mask,
                  HeadLayout L, const float* lse, const float* delta, float* dK, float* dV, bool causal) {
  LSB_SHARED_ARRAY(float, Qs, [kTile * 4 * KPT]);
  LSB_SHARED_ARRAY(float, dOs, [kTile * 4 * KPT]);
  LSB_SHARED_ARRAY(float, lse_s, [kTile]);
  LSB_SHARED_ARRAY(float, delta_s, [kTile]);
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
    block_sync();
    stage_tile<KPT>(Q, dO, L, bh, t0, Qs, dOs);
    if (threadIdx.x < kTile) {
      const std::int64_t t = t0 + threadIdx.x;
      lse_s[threadIdx.x] = t < L.n ? lse[bh * L.n + t] : -INFINITY;
      delta_s[threadIdx.x] = t < L.n ? delta[bh * L.n + t] : 0.0f;
    }
    block_sync();
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
