// flash's CUDA kernels, the very code the GPU runs, on an emulated thread block (tests/simt.hpp: ldmatrix,
// mma.sync, cp.async groups and shuffles emulated from the PTX ISA), against float64 attention: the
// tensor-core kernels (attention_impls/cuda/flash_bf16_kernels.cuh) on bf16-rounded inputs (the packing,
// the pipeline of double-buffered tiles, the fragment maps, the masks, the causal tile bounds and the
// online softmax) and the fp32 kernels (flash_fp32_kernels.cuh), tested on every machine. The same
// comparisons run on a GPU in test_cuda.cpp.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "attention_impls/cuda/flash.hpp"
#include "attention_impls/cuda/mma_tiles.hpp"
#include "nn/matmul.hpp"
#include "nn/random.hpp"
#include "tests/flash_reference.hpp"
#include "tests/simt.hpp"

namespace lsb {
namespace {
namespace emulated {

#include "tests/simt_dialect.hpp"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/flash_bf16_kernels.cuh"
}  // namespace emulated
namespace emulated_fp32 {
#include "tests/simt_dialect.hpp"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/flash_fp32_kernels.cuh"
}  // namespace emulated_fp32
namespace emulated {

unsigned blocks(std::int64_t n, int rows) { return static_cast<unsigned>((n + rows - 1) / rows); }

// The launchers of flash_bf16.cu, on the emulated block.
std::vector<std::uint16_t> pack(const std::vector<float>& src, const HeadLayout& L, int batch_heads) {
  const std::int64_t elements = batch_heads * mma::packed_rows(L.n) * mma::packed_dim(L.d);
  std::vector<std::uint16_t> dst(elements, 0xffff);  // every element must be written
  auto* out = reinterpret_cast<std::uint32_t*>(dst.data());
  // Two blocks: the grid-stride loop covers the rest.
  simt::launch(2, 1, kThreads, 0, [&] { pack_kernel(src.data(), L, mma::packed_dim(L.d), elements / 2, out); });
  return dst;
}

void forward(const std::uint16_t* Q, const std::uint16_t* K, const std::uint16_t* V, const std::uint8_t* mask,
             const HeadLayout& L, int batch_heads, float* O, float* lse, bool causal) {
  with_kc(L.d, [&](auto kc) {
    constexpr int KC = decltype(kc)::value, MT = forward_fragments<KC>();
    simt::launch(blocks(L.n, forward_rows<MT>()), batch_heads, kThreads, forward_smem<KC, MT>(),
                 [&] { flash_bf16_forward_kernel<KC, MT>(Q, K, V, mask, L, O, lse, causal); });
  });
}

void backward(const std::uint16_t* Q, const std::uint16_t* K, const std::uint16_t* V, const std::uint16_t* dO,
              const std::uint8_t* mask, const HeadLayout& L, int batch_heads, const float* lse, const float* delta,
              float* dQ, float* dK, float* dV, bool causal) {
  with_kc(L.d, [&](auto kc) {
    constexpr int KC = decltype(kc)::value;
    simt::launch(blocks(L.n, kTile), batch_heads, kThreads, backward_smem<KC>(),
                 [&] { flash_bf16_dq_kernel<KC>(Q, K, V, dO, mask, L, lse, delta, dQ, causal); });
    simt::launch(blocks(L.n, kTile), batch_heads, kThreads, backward_smem<KC>(),
                 [&] { flash_bf16_dkdv_kernel<KC>(Q, K, V, dO, mask, L, lse, delta, dK, dV, causal); });
  });
}

}  // namespace emulated
}  // namespace

// As the GPU test: b = 3 sequences (the second with its last third padding, the third with no valid
// key), against float64 on the rounded inputs. Head dims of each code path: 24 (two 16-dim steps,
// 128-row blocks), 64 (the benchmarks' head, 128-row blocks) and 80 (64-row blocks); n = 130 (two
// blocks, a cut tile, the causal diagonal crossing two key tiles) and n = 200 (double buffers reused).
TEST_CASE("flash's tensor-core kernels on an emulated thread block equal float64 attention", "[mma][emulated]") {
  const std::int64_t b = test::kFlashSequences;
  const int h = 1;
  for (const bool causal : {false, true})
    for (const int d : {24, 64, 80})
      for (const std::int64_t n : {std::int64_t(130), std::int64_t(200)}) {
        if (d == 80 && n == 200) continue;  // the 64-row blocks' loop is the dq kernel's, covered
        INFO("d = " << d << ", n = " << n << (causal ? ", causal" : ""));
        const std::int64_t D = h * d, size = b * n * D;
        const auto [Q, K, V, dO, mask] = test::flash_problem(n, h, d, 31 + d + n, true);
        const auto ref = test::flash_reference(Q, K, V, dO, mask, b, n, h, d, causal);

        const HeadLayout L{n, D, h, d};
        const int bh = static_cast<int>(b * h);
        simt::clear_globals();
        const std::vector<const std::vector<float>*> inputs = {&Q, &K, &V, &dO};
        std::vector<std::vector<std::uint16_t>> packed;
        for (const auto* src : inputs) {
          packed.push_back(emulated::pack(*src, L, bh));
          for (const std::uint16_t e : packed.back()) REQUIRE(e != 0xffff);  // written whole (0xffff: NaN)
          simt::register_global(packed.back().data(), packed.back().size() * 2);
        }
        // The packed layout: (bh, rows, dp), the element, then zeros past n and d.
        const std::int64_t rows = mma::packed_rows(n);
        const int dp = mma::packed_dim(d);
        for (int head = 0; head < bh; ++head)
          for (std::int64_t t = 0; t < rows; ++t)
            for (int k = 0; k < dp; ++k) {
              const std::uint16_t e = packed[0][(head * rows + t) * dp + k];
              const float want = t < n && k < d ? Q[L.at(head, t, k)] : 0.0f;  // Q is bf16 already
              REQUIRE(e == simt::bf16_bits(want));
            }

        std::vector<float> O(size, NAN), lse(b * h * n, NAN);
        emulated::forward(packed[0].data(), packed[1].data(), packed[2].data(), mask.data(), L, bh, O.data(),
                          lse.data(), causal);
        CHECK(test::rel_err(O, ref.O) <= 0x1p-7);
        CHECK(test::rel_err(lse, ref.lse) <= 1e-5);
        for (std::int64_t i = 2 * n * D; i < 3 * n * D; ++i) REQUIRE(O[i] == 0.0f);  // no valid key: O = 0

        // The backward from the reference's lse and delta, so that its check does not inherit the forward's.
        const std::vector<float> ref_lse(ref.lse.begin(), ref.lse.end()), delta(ref.delta.begin(), ref.delta.end());
        std::vector<float> dQ(size, NAN), dK(size, NAN), dV(size, NAN);
        emulated::backward(packed[0].data(), packed[1].data(), packed[2].data(), packed[3].data(), mask.data(), L, bh,
                           ref_lse.data(), delta.data(), dQ.data(), dK.data(), dV.data(), causal);
        CHECK(test::rel_err(dQ, ref.dQ, test::max_abs(ref.dV)) <= 0x1p-7);
        CHECK(test::rel_err(dK, ref.dK, test::max_abs(ref.dV)) <= 0x1p-7);
        CHECK(test::rel_err(dV, ref.dV) <= 0x1p-7);
      }
  simt::clear_globals();
}

// The emulator's own checks fail loudly: a kernel whose cp.async reads outside the registered buffers,
// and one whose warps reach different collectives.
TEST_CASE("the emulated thread block refuses stray copies and divergent collectives", "[mma][emulated]") {
  std::vector<std::uint16_t> buffer(64);
  simt::clear_globals();
  simt::register_global(buffer.data(), buffer.size() * 2);
  CHECK_THROWS_WITH(
      simt::launch(1, 1, 32, 64, [&] { emulated::cp_async16(simt::shared_memory(), buffer.data() + 64); }),
      Catch::Contains("outside every registered global buffer"));
  // Lanes of one warp at different collectives, a shuffle some lanes have left, and a warp split
  // between __syncthreads and a shuffle (a deadlock on the GPU).
  CHECK_THROWS_WITH(simt::launch(1, 1, 64, 0,
                                 [&] {
                                   if (simt::threadIdx.x % 32 < 16)
                                     emulated::lane_xor(1.0f, 1);
                                   else
                                     simt::warp_sync();
                                 }),
                    Catch::Contains("waits at"));
  CHECK_THROWS_WITH(simt::launch(1, 1, 32, 0,
                                 [&] {
                                   if (simt::threadIdx.x < 8) return;
                                   emulated::lane_xor(1.0f, 1);
                                 }),
                    Catch::Contains("exited"));
  CHECK_THROWS_WITH(simt::launch(1, 1, 64, 0,
                                 [&] {
                                   if (simt::threadIdx.x % 32 < 16)
                                     emulated::block_sync();
                                   else
                                     emulated::lane_xor(1.0f, 1);
                                 }),
                    Catch::Contains("deadlock"));
  // Warps that leave early do not hold up __syncthreads of the others, as on the GPU.
  CHECK_NOTHROW(simt::launch(1, 1, 64, 0, [&] {
    if (simt::threadIdx.x >= 32) return;
    emulated::block_sync();
  }));
  // A tile read before its group is waited for reads the fill of fresh shared memory, not the data.
  std::uint32_t seen = 0;
  simt::launch(1, 1, 32, 64, [&] {
    auto* smem = reinterpret_cast<std::uint16_t*>(simt::shared_memory());
    emulated::cp_async16(smem, buffer.data());
    emulated::cp_async_commit();
    if (simt::threadIdx.x == 0) seen = smem[0];
    emulated::cp_async_wait<0>();
  });
  CHECK(seen == 0xffff);
  simt::clear_globals();
}

// The fp32 kernels (the module's under --precision fp32): forward, delta, dQ and dK/dV against float64,
// bidirectional and causal, with padding and a sequence with no valid key; d = 24 (8 dims per thread
// group of 4), n = 70 (two blocks of 64 rows, key tiles of 32, the last cut).
TEST_CASE("flash's fp32 CUDA kernels on an emulated thread block equal float64 attention", "[mma][emulated]") {
  namespace k = emulated_fp32;
  const std::int64_t b = test::kFlashSequences, n = 70;
  const int h = 1, d = 24;
  for (const bool causal : {false, true}) {
    INFO((causal ? "causal" : "bidirectional"));
    const std::int64_t D = h * d, size = b * n * D;
    const auto [Q, K, V, dO, mask] = test::flash_problem(n, h, d, 41, false);
    const auto ref = test::flash_reference(Q, K, V, dO, mask, b, n, h, d, causal);
    const HeadLayout L{n, D, h, d};
    const unsigned bh = static_cast<unsigned>(b * h), row_blocks = static_cast<unsigned>((n + k::kRows - 1) / k::kRows);
    std::vector<float> O(size, NAN), lse(b * h * n, NAN), delta(b * h * n, NAN), dQ(size, NAN), dK(size, NAN),
        dV(size, NAN);
    k::with_kpt(d, [&](auto kpt) {
      constexpr int KPT = decltype(kpt)::value;
      simt::launch(row_blocks, bh, k::kThreads, 0, [&] {
        k::flash_forward_kernel<KPT>(Q.data(), K.data(), V.data(), mask.data(), L, O.data(), lse.data(), causal);
      });
      const std::int64_t rows = b * h * n, per_block = k::kThreads / 32;
      simt::launch(static_cast<unsigned>((rows + per_block - 1) / per_block), 1, k::kThreads, 0,
                   [&] { k::flash_delta_kernel(O.data(), dO.data(), L, rows, delta.data()); });
      simt::launch(row_blocks, bh, k::kThreads, 0, [&] {
        k::flash_dq_kernel<KPT>(Q.data(), K.data(), V.data(), dO.data(), mask.data(), L, lse.data(), delta.data(),
                                dQ.data(), causal);
      });
      simt::launch(row_blocks, bh, k::kThreads, 0, [&] {
        k::flash_dkdv_kernel<KPT>(Q.data(), K.data(), V.data(), dO.data(), mask.data(), L, lse.data(), delta.data(),
                                  dK.data(), dV.data(), causal);
      });
    });
    CHECK(test::rel_err(O, ref.O) <= 1e-5);
    CHECK(test::rel_err(lse, ref.lse) <= 1e-6);
    CHECK(test::rel_err(delta, ref.delta) <= 1e-5);
    CHECK(test::rel_err(dQ, ref.dQ, test::max_abs(ref.dV)) <= 1e-5);
    CHECK(test::rel_err(dK, ref.dK, test::max_abs(ref.dV)) <= 1e-5);
    CHECK(test::rel_err(dV, ref.dV) <= 1e-5);
  }
}

}  // namespace lsb
