// The kernels of flash on tensor cores (flash_bf16.cu), written once for two machines: included by
// flash_bf16.cu, where the dialect's primitives are PTX, and by the CPU emulation of a thread block
// (tests/test_flash_emulated.cpp), where they are emulated, so that the very code the GPU runs
// (index maps, pipeline, masks, online softmax) is tested where no GPU is.
//
// Written in the kernel dialect (nn/cuda/kernel_dialect.cuh on the GPU, tests/simt_dialect.hpp on the
// emulated block) and included inside a namespace after it; <cmath>, <cstdint>, <stdexcept>,
// <type_traits>, attention_impls/cuda/flash.hpp and attention_impls/cuda/mma_tiles.hpp come before that
// namespace. bf16 values are their bit patterns (std::uint16_t): the kernels never compute on them but through
// ldmatrix and mma.
//
// Operands. Q, K, V and dO arrive as bf16 copies packed head by head (flash_bf16_pack: (b*h, rows, DP),
// zero past n and d; attention_impls/cuda/mma_tiles.hpp), so a tile is whole 16-byte rows: each is
// copied to shared memory with `cp.async` (row stride DP + 8: conflict-free ldmatrix), the next tile's
// copy in flight while the warps compute on the current one (two buffers), and every fragment comes
// from one `ldmatrix.x4` (with .trans where a product contracts over a tile's rows: V in P V, K in dS K,
// Q and dO in dK and dV), so nothing is ever transposed in memory.
//
// Blocks of 4 warps. Forward: 128 query rows (32 per warp, two 16-row fragments sharing every K and V
// fragment load) for DP <= 64, 64 rows for wider heads (register budget); key tiles of 64. dQ kernel: 64
// query rows, key tiles of 64. dK/dV kernel: 64 key rows, query tiles of 64. The forward reads its
// queries' A fragments from shared memory at each k-step (as FlashAttention-2 does: the registers go to
// the scores and the output); the backward kernels keep their own rows (Q, dO; K, V) in registers.
// P and dS are rounded to bf16 A fragments as soon as their row sums are taken.
// Causal: a query block stops after the key tile holding its last row, a key block starts at its own
// first row (the query blocks with the most tiles run first: query_block); only tiles crossing the
// diagonal pay the per-element mask. Rows past n are zero operands and count as masked keys.

using bf16 = std::uint16_t;
constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr int kTile = 64;       // rows of the other side per step
constexpr int kNT = kTile / 8;  // 8-column score tiles per step
static_assert(mma::kPackRows % kTile == 0 && mma::kPackRows % (32 * kWarps) == 0,
              "packed rows hold every block's rows and every tile whole");

// The max and the sum over the 4 lanes of a row group (a C fragment row is spread over them).
LSB_DEVICE_FN float group_max(float v) {
  v = fmaxf(v, lane_xor(v, 1));
  return fmaxf(v, lane_xor(v, 2));
}
LSB_DEVICE_FN float group_sum(float v) {
  v += lane_xor(v, 1);
  return v + lane_xor(v, 2);
}

// ---- Tiles and fragments.

// Starts copying Rows packed rows (DP bf16 each, contiguous) into a shared tile of stride DP + 8.
template <int DP, int Rows>
LSB_DEVICE_FN void copy_rows(bf16* dst, const bf16* src) {
  constexpr int kChunks = DP / 8;  // 16-byte pieces of a row
  static_assert(Rows * kChunks % kThreads == 0, "every thread copies the same number of pieces");
#pragma unroll
  for (int i = 0; i < Rows * kChunks / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads, r = c / kChunks, k = c % kChunks * 8;
    cp_async16(dst + r * mma::smem_stride(DP) + k, src + r * DP + k);
  }
}

// The A fragments of rows [r0, r0 + 16) of a [row][dim] shared tile, one per k-step of 16 dims.
template <int KC>
LSB_DEVICE_FN void load_a_rows(std::uint32_t (&a)[KC][4], const bf16* tile, int r0, int lane) {
  const bf16* p = tile + (r0 + mma::ld_a_row(lane)) * mma::smem_stride(16 * KC) + mma::ld_a_col(lane);
#pragma unroll
  for (int c = 0; c < KC; ++c) ldsm_x4(a[c], p + 16 * c);
}

// Where scores() takes a warp's MT A fragments (16 rows each) of k-step c from. The backward's own rows,
// loaded once and held in registers:
template <int KC, int MT>
struct RegisterA {
  const std::uint32_t (&f)[MT][KC][4];
  LSB_DEVICE_FN void operator()(std::uint32_t (&a)[MT][4], int c) const {
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int r = 0; r < 4; ++r) a[m][r] = f[m][c][r];
  }
};
// The forward's queries, read from a shared [m][k] tile (MT fragments from row r0) at each k-step, as
// FlashAttention-2 does: the registers go to the 2 x 16 x 64 scores and the output.
template <int KC, int MT>
struct SharedA {
  const bf16* p;  // this lane's row address for k-step 0 of the first fragment
  LSB_DEVICE_FN SharedA(const bf16* tile, int r0, int lane)
      : p(tile + (r0 + mma::ld_a_row(lane)) * mma::smem_stride(16 * KC) + mma::ld_a_col(lane)) {}
  LSB_DEVICE_FN void operator()(std::uint32_t (&a)[MT][4], int c) const {
#pragma unroll
    for (int m = 0; m < MT; ++m) ldsm_x4(a[m], p + 16 * m * mma::smem_stride(16 * KC) + 16 * c);
  }
};

template <int N, int M>
LSB_DEVICE_FN void zero(float (&x)[N][M][4]) {
#pragma unroll
  for (int a = 0; a < N; ++a)
#pragma unroll
    for (int b = 0; b < M; ++b) x[a][b][0] = x[a][b][1] = x[a][b][2] = x[a][b][3] = 0.0f;
}

// s[m] = A_m B^T: the 16 x kTile scores of each of a warp's MT row fragments, A's fragments from load_a
// (RegisterA or SharedA), B's rows (keys, or the queries of the transposed scores) from an [n][k] shared
// tile of kTile rows.
template <int KC, int MT, typename LoadA>
LSB_DEVICE_FN void scores(float (&s)[MT][kNT][4], const LoadA& load_a, const bf16* tile, int lane) {
  constexpr int RS = mma::smem_stride(16 * KC);
  zero(s);
  const bf16* pb = tile + mma::ld_bt_row(lane) * RS + mma::ld_bt_col(lane);
#pragma unroll
  for (int c = 0; c < KC; ++c) {
    std::uint32_t a[MT][4];
    load_a(a, c);
#pragma unroll
    for (int j2 = 0; j2 < kNT / 2; ++j2) {
      std::uint32_t b[4];
      ldsm_x4(b, pb + 16 * j2 * RS + 16 * c);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        mma16816(s[m][2 * j2], a[m], b[0], b[1]);
        mma16816(s[m][2 * j2 + 1], a[m], b[2], b[3]);
      }
    }
  }
}

// A warp's (16 x kTile) fp32 C fragments (P or dS) rounded to bf16, as the A fragments of the next
// product's kTile / 16 k-steps: half the registers of the floats, so the conversion comes as soon as
// the row sums are taken.
LSB_DEVICE_FN void to_a_fragments(std::uint32_t (&a)[kTile / 16][4], const float (&c)[kNT][4]) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float* e = c[mma::a_from_c_tile(kk, r)] + mma::a_from_c_elem(r);
      a[kk][r] = pack_bf16(e[0], e[1]);
    }
}

// acc[m] += P_m B: P_m's bf16 A fragments (to_a_fragments), B (kTile x DP) from a [k][n] shared tile of
// kTile rows, through ldmatrix .trans.
template <int KC, int MT>
LSB_DEVICE_FN void accumulate(float (&acc)[MT][2 * KC][4], const std::uint32_t (&p)[MT][kTile / 16][4],
                              const bf16* tile, int lane) {
  constexpr int RS = mma::smem_stride(16 * KC);
  const bf16* ptr = tile + mma::ld_a_row(lane) * RS + mma::ld_a_col(lane);
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk)
#pragma unroll
    for (int jd2 = 0; jd2 < KC; ++jd2) {
      std::uint32_t b[4];
      ldsm_x4_trans(b, ptr + 16 * kk * RS + 16 * jd2);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        mma16816(acc[m][2 * jd2], p[m][kk], b[0], b[1]);
        mma16816(acc[m][2 * jd2 + 1], p[m][kk], b[2], b[3]);
      }
    }
}

// Writes a warp's 16 x DP fp32 C fragments (times each row's factor) to rows r0 .. r0 + 15 of head bh.
template <int KC>
LSB_DEVICE_FN void store_rows(float* dst, const float (&acc)[2 * KC][4], const HeadLayout& L, int bh, std::int64_t r0,
                              int lane, float scale_lo = 1.0f, float scale_hi = 1.0f) {
#pragma unroll
  for (int jd = 0; jd < 2 * KC; ++jd)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const std::int64_t r = r0 + mma::c_row(lane, i);
      const int k = 8 * jd + mma::c_col(lane, i);
      if (r < L.n && k < L.d) dst[L.at(bh, r, k)] = acc[jd][i] * (i >= 2 ? scale_hi : scale_lo);
    }
}

// Rows of a packed head.
LSB_DEVICE_FN const bf16* head_rows(const bf16* packed, int bh, std::int64_t n, int dp) {
  return packed + std::int64_t(bh) * mma::packed_rows(n) * dp;
}

// Starts loading key tile `it` (rows it * kTile on) of a head's packed K and V into buffer it % 2 of Ks
// and Vs (each 2 x (kTile, DP + 8)), and sets its keys' bias (key_bias, 2 x kTile): 0, or -inf for a
// masked key or one past n. The forward's and the dQ kernel's prefetch.
template <int DP>
LSB_DEVICE_FN void prefetch_key_tile(int it, bf16* Ks, bf16* Vs, float* key_bias, const bf16* Kh, const bf16* Vh,
                                     const std::uint8_t* m, std::int64_t n) {
  constexpr int RS = mma::smem_stride(DP);
  const std::int64_t u0 = std::int64_t(it) * kTile;
  const int buf = it % 2;
  copy_rows<DP, kTile>(Ks + buf * kTile * RS, Kh + u0 * DP);
  copy_rows<DP, kTile>(Vs + buf * kTile * RS, Vh + u0 * DP);
  if (threadIdx.x < kTile)
    key_bias[buf * kTile + threadIdx.x] = u0 + threadIdx.x < n && m[u0 + threadIdx.x] ? 0.0f : -INFINITY;
}

// ---- Packing.

LSB_KERNEL(kThreads) pack_kernel(const float* src, HeadLayout L, int dp, std::int64_t pairs, std::uint32_t* dst) {
  const std::int64_t rows = mma::packed_rows(L.n);
  for (std::int64_t p = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; p < pairs;
       p += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t e = 2 * p, r = e / dp % rows;
    const int k = static_cast<int>(e % dp), bh = static_cast<int>(e / dp / rows);
    const bool row_in = r < L.n;
    const float lo = row_in && k < L.d ? src[L.at(bh, r, k)] : 0.0f;
    const float hi = row_in && k + 1 < L.d ? src[L.at(bh, r, k + 1)] : 0.0f;
    dst[p] = pack_bf16(lo, hi);
  }
}

// ---- Forward.

// 16-row fragments per warp in the forward: two (128 rows a block, each K and V fragment feeding two
// products) while the registers allow (DP <= 64), else one.
template <int KC>
constexpr int forward_fragments() {
  return KC <= 4 ? 2 : 1;
}
template <int MT>
LSB_HOST_DEVICE constexpr int forward_rows() {
  return 16 * MT * kWarps;
}
template <int KC, int MT>
constexpr int forward_smem() {
  return (forward_rows<MT>() + 4 * kTile) * mma::smem_stride(16 * KC) * 2 + 2 * kTile * 4;
}

template <int KC, int MT>
LSB_KERNEL(kThreads)
flash_bf16_forward_kernel(const bf16* Q, const bf16* K, const bf16* V, const std::uint8_t* mask, HeadLayout L, float* O,
                          float* lse, bool causal) {
  constexpr int DP = 16 * KC, RS = mma::smem_stride(DP), Rows = forward_rows<MT>();
  LSB_DYNAMIC_SHARED(smem);
  auto* Qs = reinterpret_cast<bf16*>(smem);                        // (Rows, RS): the block's queries
  bf16* Ks = Qs + Rows * RS;                                       // 2 x (kTile, RS): key tiles
  bf16* Vs = Ks + 2 * kTile * RS;                                  // 2 x (kTile, RS): value tiles
  auto* key_bias = reinterpret_cast<float*>(Vs + 2 * kTile * RS);  // 2 x kTile: 0, or -inf for a masked key
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, bh = blockIdx.y;
  const std::int64_t q0 = std::int64_t(query_block(causal)) * Rows;
  const bf16 *Kh = head_rows(K, bh, L.n, DP), *Vh = head_rows(V, bh, L.n, DP);
  const std::uint8_t* m = mask + (bh / L.h) * L.n;
  const std::int64_t key_end = causal ? mma::causal_key_end(q0, Rows, L.n) : L.n;
  const int tiles = static_cast<int>((key_end + kTile - 1) / kTile);
  auto prefetch = [&](int it) { prefetch_key_tile<DP>(it, Ks, Vs, key_bias, Kh, Vh, m, L.n); };

  copy_rows<DP, Rows>(Qs, head_rows(Q, bh, L.n, DP) + q0 * DP);
  if (tiles > 0) prefetch(0);
  cp_async_commit();
  float o[MT][2 * KC][4];
  zero(o);
  float row_max[MT][2], row_sum[MT][2];  // rows g, g + 8 of each fragment; max in base 2, sums per lane
#pragma unroll
  for (int f = 0; f < MT; ++f) row_max[f][0] = row_max[f][1] = -INFINITY, row_sum[f][0] = row_sum[f][1] = 0.0f;

  for (int it = 0; it < tiles; ++it) {
    if (it + 1 < tiles) prefetch(it + 1);
    cp_async_commit();
    cp_async_wait<1>();  // tile it (and, first, the queries) has landed
    block_sync();
    const int buf = it % 2;
    const std::int64_t u0 = std::int64_t(it) * kTile;
    const float* bias = key_bias + buf * kTile;
    float s[MT][kNT][4];
    std::uint32_t pa[MT][kTile / 16][4];  // P in bf16
    scores<KC, MT>(s, SharedA<KC, MT>(Qs, 16 * MT * warp, lane), Ks + buf * kTile * RS, lane);
    const bool diagonal = causal && mma::crosses_diagonal(u0, kTile, q0 + 16 * MT * warp);
#pragma unroll
    for (int f = 0; f < MT; ++f) {
      const std::int64_t r0 = q0 + 16 * (MT * warp + f);
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kNT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int col = 8 * j + mma::c_col(lane, i);
          const bool future = diagonal && u0 + col > r0 + mma::c_row(lane, i);
          s[f][j][i] = future ? -INFINITY : s[f][j][i] * mma::kLog2e + bias[col];
          tile_max[i >> 1] = fmaxf(tile_max[i >> 1], s[f][j][i]);
        }
      float base[2], corr[2], tile_sum[2] = {0.0f, 0.0f};
#pragma unroll
      for (int r = 0; r < 2; ++r) corr[r] = mma::online_softmax_step(row_max[f][r], group_max(tile_max[r]), base[r]);
#pragma unroll
      for (int j = 0; j < kNT; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          s[f][j][i] = exp2f(s[f][j][i] - base[i >> 1]);
          tile_sum[i >> 1] += s[f][j][i];
        }
      to_a_fragments(pa[f], s[f]);
#pragma unroll
      for (int r = 0; r < 2; ++r) row_sum[f][r] = row_sum[f][r] * corr[r] + tile_sum[r];
#pragma unroll
      for (int jd = 0; jd < 2 * KC; ++jd)
#pragma unroll
        for (int i = 0; i < 4; ++i) o[f][jd][i] *= corr[i >> 1];
    }
    accumulate<KC, MT>(o, pa, Vs + buf * kTile * RS, lane);
    block_sync();  // buffer buf is read; the next iteration's prefetch may refill it
  }

#pragma unroll
  for (int f = 0; f < MT; ++f) {
    const std::int64_t r0 = q0 + 16 * (MT * warp + f);
    float sum[2], inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      sum[r] = group_sum(row_sum[f][r]);
      inv[r] = sum[r] > 0 ? 1.0f / sum[r] : 0.0f;
    }
    store_rows<KC>(O, o[f], L, bh, r0, lane, inv[0], inv[1]);
    if (lane % 4 == 0)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const std::int64_t row = r0 + lane / 4 + 8 * r;
        if (row < L.n) lse[bh * L.n + row] = mma::row_lse(row_max[f][r], sum[r]);
      }
  }
}

// ---- Backward.

template <int KC>
constexpr int backward_smem() {  // two own-row tiles, two double-buffered tiles, two rows of floats x2
  return 6 * kTile * mma::smem_stride(16 * KC) * 2 + 4 * kTile * 4;
}

// dQ[t] = sum_u dS[t, u] K[u], dS = P (dP - delta), P = exp(S - lse), dP = dO V^T; 64 queries a block.
template <int KC>
LSB_KERNEL(kThreads)
flash_bf16_dq_kernel(const bf16* Q, const bf16* K, const bf16* V, const bf16* dO, const std::uint8_t* mask,
                     HeadLayout L, const float* lse, const float* delta, float* dQ, bool causal) {
  constexpr int DP = 16 * KC, RS = mma::smem_stride(DP);
  LSB_DYNAMIC_SHARED(smem);
  auto* Qs = reinterpret_cast<bf16*>(smem);                        // (kTile, RS): the block's queries
  bf16* dOs = Qs + kTile * RS;                                     // (kTile, RS): their rows of dO
  bf16* Ks = dOs + kTile * RS;                                     // 2 x (kTile, RS)
  bf16* Vs = Ks + 2 * kTile * RS;                                  // 2 x (kTile, RS)
  auto* key_bias = reinterpret_cast<float*>(Vs + 2 * kTile * RS);  // 2 x kTile
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, bh = blockIdx.y;
  const std::int64_t q0 = std::int64_t(query_block(causal)) * kTile, r0 = q0 + 16 * warp;
  const bf16 *Kh = head_rows(K, bh, L.n, DP), *Vh = head_rows(V, bh, L.n, DP);
  const std::uint8_t* m = mask + (bh / L.h) * L.n;
  const std::int64_t key_end = causal ? mma::causal_key_end(q0, kTile, L.n) : L.n;
  const int tiles = static_cast<int>((key_end + kTile - 1) / kTile);
  auto prefetch = [&](int it) { prefetch_key_tile<DP>(it, Ks, Vs, key_bias, Kh, Vh, m, L.n); };

  copy_rows<DP, kTile>(Qs, head_rows(Q, bh, L.n, DP) + q0 * DP);
  copy_rows<DP, kTile>(dOs, head_rows(dO, bh, L.n, DP) + q0 * DP);
  if (tiles > 0) prefetch(0);
  cp_async_commit();
  float lse2[2], row_delta[2];  // rows g, g + 8; lse in base 2
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const std::int64_t row = r0 + lane / 4 + 8 * r;
    lse2[r] = row < L.n ? lse[bh * L.n + row] * mma::kLog2e : -INFINITY;
    row_delta[r] = row < L.n ? delta[bh * L.n + row] : 0.0f;
  }
  std::uint32_t qa[1][KC][4], da[1][KC][4];
  float dq[1][2 * KC][4];
  zero(dq);
  for (int it = 0; it < tiles; ++it) {
    if (it + 1 < tiles) prefetch(it + 1);
    cp_async_commit();
    cp_async_wait<1>();
    block_sync();
    if (it == 0) {
      load_a_rows<KC>(qa[0], Qs, 16 * warp, lane);
      load_a_rows<KC>(da[0], dOs, 16 * warp, lane);
    }
    const int buf = it % 2;
    const std::int64_t u0 = std::int64_t(it) * kTile;
    const float* bias = key_bias + buf * kTile;
    float s[1][kNT][4], dp[1][kNT][4];
    scores<KC, 1>(s, RegisterA<KC, 1>{qa}, Ks + buf * kTile * RS, lane);
    scores<KC, 1>(dp, RegisterA<KC, 1>{da}, Vs + buf * kTile * RS, lane);
    const bool diagonal = causal && mma::crosses_diagonal(u0, kTile, r0);
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = i >> 1, col = 8 * j + mma::c_col(lane, i);
        const bool future = diagonal && u0 + col > r0 + mma::c_row(lane, i);
        const float p = lse2[r] == -INFINITY || future ? 0.0f : exp2f(s[0][j][i] * mma::kLog2e + bias[col] - lse2[r]);
        s[0][j][i] = p * (dp[0][j][i] - row_delta[r]);  // dS
      }
    std::uint32_t dsa[1][kTile / 16][4];
    to_a_fragments(dsa[0], s[0]);
    accumulate<KC, 1>(dq, dsa, Ks + buf * kTile * RS, lane);
    block_sync();
  }
  store_rows<KC>(dQ, dq[0], L, bh, r0, lane);
}

// For key u: dV[u] = sum_t P[t, u] dO[t], dK[u] = sum_t dS[t, u] Q[t]; 64 keys a block, whose warps
// compute the transposed scores S^T = K Q^T and dP^T = V dO^T.
template <int KC>
LSB_KERNEL(kThreads)
flash_bf16_dkdv_kernel(const bf16* Q, const bf16* K, const bf16* V, const bf16* dO, const std::uint8_t* mask,
                       HeadLayout L, const float* lse, const float* delta, float* dK, float* dV, bool causal) {
  constexpr int DP = 16 * KC, RS = mma::smem_stride(DP);
  LSB_DYNAMIC_SHARED(smem);
  auto* Ks = reinterpret_cast<bf16*>(smem);                      // (kTile, RS): the block's keys
  bf16* Vs = Ks + kTile * RS;                                    // (kTile, RS): their values
  bf16* Qs = Vs + kTile * RS;                                    // 2 x (kTile, RS): query tiles
  bf16* dOs = Qs + 2 * kTile * RS;                               // 2 x (kTile, RS): their rows of dO
  auto* lse_s = reinterpret_cast<float*>(dOs + 2 * kTile * RS);  // 2 x kTile, base 2
  float* delta_s = lse_s + 2 * kTile;                            // 2 x kTile
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, bh = blockIdx.y;
  const std::int64_t k0 = std::int64_t(blockIdx.x) * kTile, r0 = k0 + 16 * warp;
  const bf16 *Qh = head_rows(Q, bh, L.n, DP), *dOh = head_rows(dO, bh, L.n, DP);
  const std::uint8_t* m = mask + (bh / L.h) * L.n;
  const std::int64_t t_begin = causal ? mma::causal_query_begin(k0) : 0;
  const int tiles = static_cast<int>((L.n - t_begin + kTile - 1) / kTile);
  auto prefetch = [&](int it) {
    const std::int64_t t0 = t_begin + std::int64_t(it) * kTile;
    const int buf = it % 2;
    copy_rows<DP, kTile>(Qs + buf * kTile * RS, Qh + t0 * DP);
    copy_rows<DP, kTile>(dOs + buf * kTile * RS, dOh + t0 * DP);
    if (threadIdx.x < kTile) {
      const std::int64_t q = t0 + threadIdx.x;
      lse_s[buf * kTile + threadIdx.x] = q < L.n ? lse[bh * L.n + q] * mma::kLog2e : -INFINITY;
      delta_s[buf * kTile + threadIdx.x] = q < L.n ? delta[bh * L.n + q] : 0.0f;
    }
  };

  copy_rows<DP, kTile>(Ks, head_rows(K, bh, L.n, DP) + k0 * DP);
  copy_rows<DP, kTile>(Vs, head_rows(V, bh, L.n, DP) + k0 * DP);
  if (tiles > 0) prefetch(0);
  cp_async_commit();
  bool key_valid[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const std::int64_t u = r0 + lane / 4 + 8 * r;
    key_valid[r] = u < L.n && m[u];
  }
  std::uint32_t ka[1][KC][4], va[1][KC][4];
  float dk[1][2 * KC][4], dv[1][2 * KC][4];
  zero(dk);
  zero(dv);
  for (int it = 0; it < tiles; ++it) {
    if (it + 1 < tiles) prefetch(it + 1);
    cp_async_commit();
    cp_async_wait<1>();
    block_sync();
    if (it == 0) {
      load_a_rows<KC>(ka[0], Ks, 16 * warp, lane);
      load_a_rows<KC>(va[0], Vs, 16 * warp, lane);
    }
    const int buf = it % 2;
    const std::int64_t t0 = t_begin + std::int64_t(it) * kTile;
    const float *l2 = lse_s + buf * kTile, *dl = delta_s + buf * kTile;
    float p[1][kNT][4], ds[1][kNT][4];
    scores<KC, 1>(p, RegisterA<KC, 1>{ka}, Qs + buf * kTile * RS, lane);    // S^T
    scores<KC, 1>(ds, RegisterA<KC, 1>{va}, dOs + buf * kTile * RS, lane);  // dP^T
    // Transposed: a fragment row is a key (r0 + row), a column a query (t0 + col).
    const bool diagonal = causal && mma::crosses_diagonal(r0, 16, t0);
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int q = 8 * j + mma::c_col(lane, i);
        const bool future = diagonal && r0 + mma::c_row(lane, i) > t0 + q;
        const bool seen = key_valid[i >> 1] && l2[q] != -INFINITY && !future;
        p[0][j][i] = seen ? exp2f(p[0][j][i] * mma::kLog2e - l2[q]) : 0.0f;
        ds[0][j][i] = p[0][j][i] * (ds[0][j][i] - dl[q]);
      }
    std::uint32_t pa[1][kTile / 16][4], dsa[1][kTile / 16][4];
    to_a_fragments(pa[0], p[0]);
    to_a_fragments(dsa[0], ds[0]);
    accumulate<KC, 1>(dv, pa, dOs + buf * kTile * RS, lane);
    accumulate<KC, 1>(dk, dsa, Qs + buf * kTile * RS, lane);
    block_sync();
  }
  store_rows<KC>(dK, dk[0], L, bh, r0, lane);
  store_rows<KC>(dV, dv[0], L, bh, r0, lane);
}

// ---- Dispatch (host).

// Calls f with KC = ceil(d / 16) (d <= kFlashMaxHeadDim).
template <typename F>
void with_kc(int d, F&& f) {
  static_assert(kFlashMaxHeadDim == 16 * 8, "the largest case covers the limit");
  switch ((d + 15) / 16) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 7:
      return f(std::integral_constant<int, 7>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
    default:
      throw std::logic_error("flash_bf16: head dim over kFlashMaxHeadDim");
  }
}
