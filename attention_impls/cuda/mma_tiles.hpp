// The tile geometry of flash's tensor-core kernels (flash_bf16.cu), host and device: the packed bf16
// layout of a head, which lane of a warp holds which element of an `mma.sync.m16n8k16` fragment, which
// shared-memory row each lane hands to `ldmatrix.x4`, the causal tile bounds and the online-softmax
// step. No CUDA header: the CPU tests (tests/test_attention.cpp, "[mma]") check every map here against an
// emulation of the PTX instructions, so the kernels' index logic is tested where no GPU is.
//
// Fragments of m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), lane = 4 g + t:
//   A (16 x 16 bf16, row-major), 4 registers of 2: (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)
//   B (16 x 8 bf16, k x n),      2 registers of 2: (k = 2t..2t+1, n = g), (k = 2t+8.., n = g)
//   C (16 x 8 fp32),             4 floats:         (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)
// ldmatrix.x4 loads four 8 x 8 bf16 matrices; lanes 8 i .. 8 i + 7 give the addresses of matrix i's
// rows, and register i of lane 4 g + t receives row g, columns 2t, 2t+1 of matrix i (with .trans:
// rows 2t, 2t+1 of column g). So one ldmatrix.x4 is a whole A fragment, or the B fragments of two
// 8-column tiles.
#pragma once
#include <cmath>
#include <cstdint>

#include "nn/host_device.hpp"

namespace lsb::mma {

// ---- The packed operands: bf16 copies of a head, (b*h, rows, dp) row-major, zero past n and past d.
constexpr int kPackRows = 128;  // rows are n rounded up to this: no block's rows or tiles reach past them
LSB_HOST_DEVICE constexpr std::int64_t packed_rows(std::int64_t n) {
  return (n + kPackRows - 1) / kPackRows * kPackRows;
}
LSB_HOST_DEVICE constexpr int packed_dim(int d) { return (d + 15) / 16 * 16; }  // whole k-steps of 16
// Shared-memory row stride of a tile of dp dims: 8 elements (16 bytes) of pad keep every row 16-byte
// aligned (cp.async, ldmatrix) and put the 8 rows one ldmatrix reads in 8 different bank quads.
LSB_HOST_DEVICE constexpr int smem_stride(int dp) { return dp + 8; }

// ---- Fragment coordinates.
// Element i (0..3) of a lane's C fragment.
LSB_HOST_DEVICE constexpr int c_row(int lane, int i) { return lane / 4 + (i >= 2 ? 8 : 0); }
LSB_HOST_DEVICE constexpr int c_col(int lane, int i) { return 2 * (lane % 4) + (i & 1); }
// The A fragment of a 16 x 16 block kk of a row of 16 x 8 C tiles is made of C tiles 2 kk and 2 kk + 1:
// register r of A holds C tile (2 kk + r / 2), elements (2 (r % 2), 2 (r % 2) + 1). (a P or dS block
// becomes the left operand of the next product without leaving registers.)
LSB_HOST_DEVICE constexpr int a_from_c_tile(int kk, int r) { return 2 * kk + r / 2; }
LSB_HOST_DEVICE constexpr int a_from_c_elem(int r) { return 2 * (r % 2); }

// ---- ldmatrix.x4 addresses: the (row, column) of the 16 x 16 block, relative to its corner, whose
// 8 consecutive elements lane l points at.
// A fragment of a row-major [m][k] block: matrices (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15),
// (m 8-15, k 8-15) are a0..a3. The same map loads, with .trans, the B fragments of two 8-column tiles
// of a [k][n] block (V of P V, K of dS K, Q and dO of the dK/dV products): registers 0, 1 are
// (b0, b1) of columns 0-7, registers 2, 3 of columns 8-15.
LSB_HOST_DEVICE constexpr int ld_a_row(int lane) { return lane % 8 + 8 * (lane / 8 % 2); }
LSB_HOST_DEVICE constexpr int ld_a_col(int lane) { return 8 * (lane / 16); }
// B fragments of two 8-column tiles of an [n][k] block (K of Q K^T, V of dO V^T, no .trans):
// matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15): registers 0, 1 are
// (b0, b1) of n 0-7, registers 2, 3 of n 8-15.
LSB_HOST_DEVICE constexpr int ld_bt_row(int lane) { return lane % 8 + 8 * (lane / 16); }
LSB_HOST_DEVICE constexpr int ld_bt_col(int lane) { return 8 * (lane / 8 % 2); }

// ---- Causal tile bounds (key u is seen by query t iff u <= t).
// End of the keys a block of query rows [q0, q0 + rows) loads: through its last row, in whole tiles
// (the tiles after it are never loaded), at most n.
LSB_HOST_DEVICE constexpr std::int64_t causal_key_end(std::int64_t q0, int rows, std::int64_t n) {
  return q0 + rows < n ? q0 + rows : n;
}
// Whether a key tile [u0, u0 + tile) holds a key after some query of [q0, q0 + rows): only those
// tiles pay the per-element mask.
LSB_HOST_DEVICE constexpr bool crosses_diagonal(std::int64_t u0, int tile, std::int64_t q0) {
  return u0 + tile - 1 > q0;
}
// First query tile a block of keys [k0, ...) loads: the queries before its first key see none of them
// (k0 is a multiple of the query tile).
LSB_HOST_DEVICE constexpr std::int64_t causal_query_begin(std::int64_t k0) { return k0; }

// ---- The online softmax, in base 2 (scores pre-multiplied by log2 e: exp2 is one instruction).
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
// One row's running maximum m (-inf before any valid key) meets a tile whose maximum is tile_max:
// returns the factor the running sum and output are multiplied by, sets m to the new maximum and
// `base` to what the tile's scores are reduced by before exp2 (0 while no key is valid, so that
// exp2(-inf - base) = 0 and never NaN).
LSB_HOST_DEVICE inline float online_softmax_step(float& m, float tile_max, float& base) {
  const float mx = m > tile_max ? m : tile_max;
  base = mx == -INFINITY ? 0.0f : mx;
  const float corr = exp2f(m - base);  // 0 while m is -inf
  m = mx;
  return corr;
}
// The natural log-sum-exp of a finished row (running maximum m in base 2, sum of exp2(s - m)).
LSB_HOST_DEVICE inline float row_lse(float m, float sum) { return sum > 0 ? (m + log2f(sum)) * kLn2 : -INFINITY; }

}  // namespace lsb::mma
