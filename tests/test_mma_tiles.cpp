// The tile logic of flash's tensor-core kernels (attention_impls/cuda/mma_tiles.hpp) on the CPU: the
// ldmatrix address maps and fragment coordinates against an emulation of the PTX instructions, the
// products the kernels build from them, shared-memory bank conflicts, the packed layout's bounds, the
// causal tile bounds and the online-softmax step. Runs everywhere; the GPU test of the kernels
// themselves is in test_cuda.cpp.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "attention_impls/cuda/mma_tiles.hpp"
#include "nn/matmul.hpp"
#include "nn/random.hpp"

namespace lsb {
namespace {

// ---- PTX, emulated from the PTX ISA's text (independently of the maps under test).

using Lanes4 = std::array<std::array<std::uint32_t, 4>, 32>;  // 4 registers of each of 32 lanes

std::uint16_t bf16_bits(float x) {
  const float r = round_to_bf16(x);
  std::uint32_t u;
  std::memcpy(&u, &r, 4);
  return static_cast<std::uint16_t>(u >> 16);
}
double bf16_value(std::uint16_t b) {
  const std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
double lo_half(std::uint32_t r) { return bf16_value(static_cast<std::uint16_t>(r & 0xffff)); }
double hi_half(std::uint32_t r) { return bf16_value(static_cast<std::uint16_t>(r >> 16)); }

// A shared-memory tile of bf16, row stride `stride` elements.
struct Tile {
  int rows, stride;
  std::vector<std::uint16_t> bits;
  Tile(int rows_, int stride_) : rows(rows_), stride(stride_), bits(std::size_t(rows_) * stride_, 0) {}
  std::uint16_t at(int r, int c) const { return bits.at(std::size_t(r) * stride + c); }
  double value(int r, int c) const { return bf16_value(at(r, c)); }
};

Tile random_tile(int rows, int cols, int stride, Rng& rng) {
  Tile t(rows, stride);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t.bits[std::size_t(r) * stride + c] = bf16_bits(static_cast<float>(rng.normal()));
  return t;
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane 8 i + j gives the address (row[l], col[l])
// of row j of matrix i; register i of lane 4 g + t receives elements (g, 2t), (g, 2t + 1) of matrix i,
// or with .trans (2t, g), (2t + 1, g); the lower index in the low half.
Lanes4 ldmatrix_x4(const Tile& tile, const std::array<int, 32>& row, const std::array<int, 32>& col, bool trans) {
  Lanes4 out{};
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const int g = lane / 4, t = lane % 4;
      std::uint16_t e0, e1;
      if (!trans) {
        const int src = 8 * i + g;
        e0 = tile.at(row[src], col[src] + 2 * t);
        e1 = tile.at(row[src], col[src] + 2 * t + 1);
      } else {
        const int s0 = 8 * i + 2 * t, s1 = s0 + 1;
        e0 = tile.at(row[s0], col[s0] + g);
        e1 = tile.at(row[s1], col[s1] + g);
      }
      out[lane][i] = std::uint32_t(e0) | std::uint32_t(e1) << 16;
    }
  return out;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, d += a b. Fragment layouts (lane = 4 g + t):
// a registers: (g, 2t..), (g + 8, 2t..), (g, 2t + 8..), (g + 8, 2t + 8..); b registers: (k = 2t.., n = g),
// (k = 2t + 8.., n = g); c floats: (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). In double here.
using Acc = std::array<std::array<double, 4>, 32>;
void mma16816(Acc& d, const std::array<std::array<std::uint32_t, 4>, 32>& a,
              const std::array<std::array<std::uint32_t, 2>, 32>& b) {
  double A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    const int arow[4] = {g, g + 8, g, g + 8}, acol[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int r = 0; r < 4; ++r) {
      A[arow[r]][acol[r]] = lo_half(a[lane][r]);
      A[arow[r]][acol[r] + 1] = hi_half(a[lane][r]);
    }
    for (int r = 0; r < 2; ++r) {
      B[2 * t + 8 * r][g] = lo_half(b[lane][r]);
      B[2 * t + 8 * r + 1][g] = hi_half(b[lane][r]);
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    const int crow[4] = {g, g, g + 8, g + 8}, ccol[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 16; ++k) d[lane][i] += A[crow[i]][k] * B[k][ccol[i]];
  }
}

// The lane maps under test, as the address arrays ldmatrix receives.
template <typename RowMap, typename ColMap>
void addresses(std::array<int, 32>& row, std::array<int, 32>& col, int r0, int c0, RowMap rm, ColMap cm) {
  for (int lane = 0; lane < 32; ++lane) row[lane] = r0 + rm(lane), col[lane] = c0 + cm(lane);
}

std::array<std::array<std::uint32_t, 2>, 32> b_pair(const Lanes4& r, int which) {
  std::array<std::array<std::uint32_t, 2>, 32> b{};
  for (int lane = 0; lane < 32; ++lane) b[lane] = {r[lane][2 * which], r[lane][2 * which + 1]};
  return b;
}

}  // namespace

TEST_CASE("ldmatrix maps and C fragments give the kernels' score product Q K^T", "[mma]") {
  Rng rng(5);
  for (const int dp : {16, 48, 64, 128}) {
    INFO("dp = " << dp);
    const int rs = mma::smem_stride(dp), tile_rows = 64, kc = dp / 16;
    const Tile q = random_tile(32, dp, rs, rng), k = random_tile(tile_rows, dp, rs, rng);
    for (const int r0 : {0, 16}) {
      // The warp's A fragments of rows r0 .. r0 + 15, one per k-step (load_a_rows).
      std::vector<Lanes4> qa(kc);
      for (int c = 0; c < kc; ++c) {
        std::array<int, 32> row, col;
        addresses(row, col, r0, 16 * c, mma::ld_a_row, mma::ld_a_col);
        qa[c] = ldmatrix_x4(q, row, col, false);
      }
      // scores(): B fragments of key tiles 2 j2 and 2 j2 + 1 from the [key][dim] tile.
      std::vector<Acc> s(tile_rows / 8, Acc{});
      for (int j2 = 0; j2 < tile_rows / 16; ++j2)
        for (int c = 0; c < kc; ++c) {
          std::array<int, 32> row, col;
          addresses(row, col, 16 * j2, 16 * c, mma::ld_bt_row, mma::ld_bt_col);
          const Lanes4 b = ldmatrix_x4(k, row, col, false);
          mma16816(s[2 * j2], qa[c], b_pair(b, 0));
          mma16816(s[2 * j2 + 1], qa[c], b_pair(b, 1));
        }
      for (int j = 0; j < tile_rows / 8; ++j)
        for (int lane = 0; lane < 32; ++lane)
          for (int i = 0; i < 4; ++i) {
            const int qr = r0 + mma::c_row(lane, i), kr = 8 * j + mma::c_col(lane, i);
            double want = 0;
            for (int x = 0; x < dp; ++x) want += q.value(qr, x) * k.value(kr, x);
            REQUIRE(s[j][lane][i] == Approx(want).margin(1e-12));
          }
    }
  }
}

TEST_CASE("C fragments become A fragments and ldmatrix.trans gives the kernels' P V product", "[mma]") {
  Rng rng(6);
  for (const int dp : {16, 64, 128}) {
    INFO("dp = " << dp);
    const int rs = mma::smem_stride(dp), tile_rows = 64, nt = tile_rows / 8;
    const Tile v = random_tile(tile_rows, dp, rs, rng);
    // P: a warp's 16 x 64 fp32 C fragments; P(row, key) at lane l, element i of tile j.
    std::vector<std::array<std::array<float, 4>, 32>> p(nt);
    double P[16][64];
    for (int j = 0; j < nt; ++j)
      for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < 4; ++i) {
          p[j][lane][i] = static_cast<float>(rng.uniform());
          P[mma::c_row(lane, i)][8 * j + mma::c_col(lane, i)] = round_to_bf16(p[j][lane][i]);
        }
    std::vector<Acc> acc(dp / 8, Acc{});
    for (int kk = 0; kk < tile_rows / 16; ++kk) {
      std::array<std::array<std::uint32_t, 4>, 32> a{};  // c_to_a
      for (int lane = 0; lane < 32; ++lane)
        for (int r = 0; r < 4; ++r) {
          const float* e = p[mma::a_from_c_tile(kk, r)][lane].data() + mma::a_from_c_elem(r);
          a[lane][r] = std::uint32_t(bf16_bits(e[0])) | std::uint32_t(bf16_bits(e[1])) << 16;
        }
      for (int jd2 = 0; jd2 < dp / 16; ++jd2) {
        std::array<int, 32> row, col;
        addresses(row, col, 16 * kk, 16 * jd2, mma::ld_a_row, mma::ld_a_col);
        const Lanes4 b = ldmatrix_x4(v, row, col, true);
        mma16816(acc[2 * jd2], a, b_pair(b, 0));
        mma16816(acc[2 * jd2 + 1], a, b_pair(b, 1));
      }
    }
    for (int jd = 0; jd < dp / 8; ++jd)
      for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < 4; ++i) {
          const int r = mma::c_row(lane, i), dim = 8 * jd + mma::c_col(lane, i);
          double want = 0;
          for (int key = 0; key < tile_rows; ++key) want += P[r][key] * v.value(key, dim);
          REQUIRE(acc[jd][lane][i] == Approx(want).margin(1e-12));
        }
  }
}

// ldmatrix reads a matrix's 8 rows (16 bytes each) in one shared-memory wavefront only if they fall in
// 8 different groups of 4 banks.
TEST_CASE("every ldmatrix of the padded tiles is free of bank conflicts", "[mma]") {
  for (int dp = 16; dp <= 128; dp += 16) {
    const int rs = mma::smem_stride(dp);
    CHECK(rs * 2 % 16 == 0);  // rows stay 16-byte aligned for cp.async and ldmatrix
    for (const bool bt : {false, true})
      for (int r0 = 0; r0 < 64; r0 += 16)
        for (int c0 = 0; c0 < dp; c0 += 16)
          for (int matrix = 0; matrix < 4; ++matrix) {
            std::set<int> quads;
            for (int j = 0; j < 8; ++j) {
              const int lane = 8 * matrix + j;
              const int row = r0 + (bt ? mma::ld_bt_row(lane) : mma::ld_a_row(lane));
              const int col = c0 + (bt ? mma::ld_bt_col(lane) : mma::ld_a_col(lane));
              const int byte = (row * rs + col) * 2;
              REQUIRE(byte % 16 == 0);
              quads.insert(byte / 16 % 8);
            }
            INFO("dp = " << dp << ", matrix " << matrix);
            CHECK(quads.size() == 8);
          }
  }
}

TEST_CASE("packed rows hold every block's rows and tiles and the causal bounds load every seen key", "[mma]") {
  for (std::int64_t n = 1; n <= 700; n += 7) {
    const std::int64_t rows = mma::packed_rows(n);
    REQUIRE(rows >= n);
    REQUIRE(rows % mma::kPackRows == 0);
    for (const int block : {64, 128}) {
      REQUIRE((n + block - 1) / block * block <= rows);  // the last block's rows
      for (std::int64_t q0 = 0; q0 < n; q0 += block) {
        const std::int64_t end = mma::causal_key_end(q0, block, n);
        const std::int64_t last_query = std::min(q0 + block, n) - 1;
        REQUIRE(end == last_query + 1);  // every key a query of the block sees, and none after
        for (std::int64_t u0 = 0; u0 < end; u0 += 64) {
          REQUIRE(u0 + 64 <= rows);                                        // the tile is whole packed rows
          if (!mma::crosses_diagonal(u0, 64, q0)) REQUIRE(u0 + 63 <= q0);  // unmasked: no key after any query
        }
      }
    }
    // The dK/dV kernel: queries before a key block see none of its keys.
    for (std::int64_t k0 = 0; k0 < n; k0 += 64) REQUIRE(mma::causal_query_begin(k0) <= k0);
  }
  CHECK(mma::packed_dim(1) == 16);
  CHECK(mma::packed_dim(64) == 64);
  CHECK(mma::packed_dim(65) == 80);
}

// The kernels' running softmax (base 2, tile by tile, rows that begin or stay without a valid key)
// against the direct log-sum-exp and softmax-weighted sum in double.
TEST_CASE("the online softmax step over tiles equals the direct softmax", "[mma]") {
  Rng rng(8);
  const double inf = std::numeric_limits<double>::infinity();
  for (int trial = 0; trial < 200; ++trial) {
    const int tiles = 1 + static_cast<int>(rng.below(6)), tile = 8;
    std::vector<double> s(tiles * tile), v(tiles * tile);
    for (std::size_t i = 0; i < s.size(); ++i) {
      s[i] = rng.normal() * 4;
      v[i] = rng.normal();
    }
    // Masks: a leading run of masked tiles, scattered masked keys, or every key masked.
    const int kind = trial % 3;
    const int lead = kind == 0 ? static_cast<int>(rng.below(tiles)) : 0;
    for (std::size_t i = 0; i < s.size(); ++i)
      if ((kind == 0 && int(i) < lead * tile) || (kind == 1 && rng.uniform() < 0.3) || kind == 2) s[i] = -inf;
    float m = -INFINITY, sum = 0, out = 0;
    for (int tt = 0; tt < tiles; ++tt) {
      float tile_max = -INFINITY, base;
      for (int j = 0; j < tile; ++j) tile_max = std::max(tile_max, static_cast<float>(s[tt * tile + j] * mma::kLog2e));
      const float corr = mma::online_softmax_step(m, tile_max, base);
      REQUIRE(std::isfinite(corr));
      float tile_sum = 0, tile_out = 0;
      for (int j = 0; j < tile; ++j) {
        const float p = exp2f(static_cast<float>(s[tt * tile + j] * mma::kLog2e) - base);
        tile_sum += p;
        tile_out += p * static_cast<float>(v[tt * tile + j]);
      }
      sum = sum * corr + tile_sum;
      out = out * corr + tile_out;
    }
    double mx = -inf, total = 0, weighted = 0;
    for (const double x : s) mx = std::max(mx, x);
    for (std::size_t i = 0; i < s.size(); ++i)
      if (s[i] != -inf) total += std::exp(s[i] - mx), weighted += std::exp(s[i] - mx) * v[i];
    const float lse = mma::row_lse(m, sum);
    if (total == 0) {
      CHECK(lse == -INFINITY);
      CHECK(out == 0.0f);
    } else {
      CHECK(lse == Approx(mx + std::log(total)).epsilon(1e-6).margin(1e-5));
      CHECK(out / sum == Approx(weighted / total).epsilon(1e-5).margin(1e-6));
    }
  }
}

}  // namespace lsb
