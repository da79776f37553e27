// The tile logic of flash's tensor-core kernels (attention_impls/cuda/mma_tiles.hpp) on the CPU: the
// ldmatrix address maps and fragment coordinates on one emulated warp (tests/simt.hpp), the
// products the kernels build from them, shared-memory bank conflicts, the packed layout's bounds, the
// causal tile bounds and the online-softmax step. Runs everywhere; the GPU test of the kernels
// themselves is in test_cuda.cpp.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <vector>

#include "attention_impls/cuda/mma_tiles.hpp"
#include "nn/matmul.hpp"
#include "nn/random.hpp"
#include "tests/simt.hpp"

namespace lsb {
namespace {

// A bf16 tile (bit patterns), row stride `stride` elements, as it lies in shared memory.
struct Tile {
  int rows, stride;
  std::vector<std::uint16_t> bits;
  double value(int r, int c) const { return simt::bf16_value(bits.at(std::size_t(r) * stride + c)); }
};

Tile random_tile(int rows, int cols, int stride, Rng& rng) {
  Tile t{rows, stride, std::vector<std::uint16_t>(std::size_t(rows) * stride, 0)};
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      t.bits[std::size_t(r) * stride + c] = simt::bf16_bits(static_cast<float>(rng.normal()));
  return t;
}

// Runs body(lane, tiles in shared memory) on one emulated warp (tests/simt.hpp: ldmatrix and mma.sync
// emulated from the PTX ISA, independently of the maps under test) whose shared memory holds `tiles`.
void on_one_warp(const std::vector<const Tile*>& tiles,
                 const std::function<void(int, const std::vector<const std::uint16_t*>&)>& body) {
  std::vector<std::size_t> offsets;
  std::size_t bytes = 0;
  for (const Tile* t : tiles) {
    offsets.push_back(bytes);
    bytes += (t->bits.size() * 2 + 15) / 16 * 16;
  }
  simt::launch(1, 1, 32, bytes, [&] {
    unsigned char* smem = simt::shared_memory();
    if (simt::threadIdx.x == 0)
      for (std::size_t i = 0; i < tiles.size(); ++i)
        std::memcpy(smem + offsets[i], tiles[i]->bits.data(), tiles[i]->bits.size() * 2);
    simt::block_sync();
    std::vector<const std::uint16_t*> at;
    for (const std::size_t o : offsets) at.push_back(reinterpret_cast<const std::uint16_t*>(smem + o));
    body(static_cast<int>(simt::threadIdx.x), at);
  });
}

}  // namespace

// The products are the emulated instructions' fp32 results, so they match float64 to fp32 rounding; a
// wrong map gives errors of the order of the products themselves.
TEST_CASE("ldmatrix maps and C fragments give the kernels' score product Q K^T", "[mma]") {
  Rng rng(5);
  for (const int dp : {16, 48, 64, 128}) {
    INFO("dp = " << dp);
    const int rs = mma::smem_stride(dp), tile_rows = 64, kc = dp / 16;
    const Tile q = random_tile(32, dp, rs, rng), k = random_tile(tile_rows, dp, rs, rng);
    for (const int r0 : {0, 16}) {
      float s[32][tile_rows / 8][4];  // per lane, as scores() leaves them
      on_one_warp({&q, &k}, [&](int lane, const std::vector<const std::uint16_t*>& at) {
        // The warp's A fragments of rows r0 .. r0 + 15, one per k-step (load_a_rows).
        std::uint32_t qa[8][4];
        for (int c = 0; c < kc; ++c)
          simt::ldsm_x4(qa[c], at[0] + (r0 + mma::ld_a_row(lane)) * rs + 16 * c + mma::ld_a_col(lane));
        // scores(): B fragments of key tiles 2 j2 and 2 j2 + 1 from the [key][dim] tile.
        float(&out)[tile_rows / 8][4] = s[lane];
        for (auto& tile : out) tile[0] = tile[1] = tile[2] = tile[3] = 0.0f;
        for (int j2 = 0; j2 < tile_rows / 16; ++j2)
          for (int c = 0; c < kc; ++c) {
            std::uint32_t b[4];
            simt::ldsm_x4(b, at[1] + (16 * j2 + mma::ld_bt_row(lane)) * rs + 16 * c + mma::ld_bt_col(lane));
            simt::mma16816(out[2 * j2], qa[c], b[0], b[1]);
            simt::mma16816(out[2 * j2 + 1], qa[c], b[2], b[3]);
          }
      });
      for (int j = 0; j < tile_rows / 8; ++j)
        for (int lane = 0; lane < 32; ++lane)
          for (int i = 0; i < 4; ++i) {
            const int qr = r0 + mma::c_row(lane, i), kr = 8 * j + mma::c_col(lane, i);
            double want = 0;
            for (int x = 0; x < dp; ++x) want += q.value(qr, x) * k.value(kr, x);
            REQUIRE(s[lane][j][i] == Approx(want).epsilon(1e-5).margin(1e-5));
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
    float acc[32][16][4] = {};  // per lane, dp / 8 output tiles
    on_one_warp({&v}, [&](int lane, const std::vector<const std::uint16_t*>& at) {
      for (int kk = 0; kk < tile_rows / 16; ++kk) {
        std::uint32_t a[4];  // to_a_fragments
        for (int r = 0; r < 4; ++r) {
          const float* e = p[mma::a_from_c_tile(kk, r)][lane].data() + mma::a_from_c_elem(r);
          a[r] = simt::pack_bf16(e[0], e[1]);
        }
        for (int jd2 = 0; jd2 < dp / 16; ++jd2) {
          std::uint32_t b[4];
          simt::ldsm_x4_trans(b, at[0] + (16 * kk + mma::ld_a_row(lane)) * rs + 16 * jd2 + mma::ld_a_col(lane));
          simt::mma16816(acc[lane][2 * jd2], a, b[0], b[1]);
          simt::mma16816(acc[lane][2 * jd2 + 1], a, b[2], b[3]);
        }
      }
    });
    for (int jd = 0; jd < dp / 8; ++jd)
      for (int lane = 0; lane < 32; ++lane)
        for (int i = 0; i < 4; ++i) {
          const int r = mma::c_row(lane, i), dim = 8 * jd + mma::c_col(lane, i);
          double want = 0;
          for (int key = 0; key < tile_rows; ++key) want += P[r][key] * v.value(key, dim);
          REQUIRE(acc[lane][jd][i] == Approx(want).epsilon(1e-5).margin(1e-5));
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
