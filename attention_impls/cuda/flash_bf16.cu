// flash on tensor cores (--precision bf16 on a GPU of compute capability 8.0 or newer), in the manner of
// FlashAttention-2: the same algorithm as the fp32 kernels of flash.cu (online softmax over key tiles,
// lse kept for the backward, a query-centric dQ kernel and a key-centric dK/dV kernel, no atomics, so
// runs repeat bit for bit), with every product on `mma.sync.m16n8k16` (bf16 operands, fp32
// accumulation) and the softmax in fp32 registers, in base 2 (one exp2 per score).
//
// The kernels are in flash_bf16_kernels.cuh (with their layout), written in the kernel dialect
// (nn/cuda/kernel_dialect.cuh: CUDA and PTX here); the CPU tests run the same kernels on an emulated
// thread block (tests/simt_dialect.hpp).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "attention_impls/cuda/flash.hpp"
#include "attention_impls/cuda/mma_tiles.hpp"
#include "nn/cuda/check.cuh"

namespace lsb {
namespace {

#include "nn/cuda/kernel_dialect.cuh"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/flash_bf16_kernels.cuh"

// ---- Launchers.

// Launches Kernel over blocks of `rows` rows of every head with Smem bytes of dynamic shared memory; the
// opt-in that sizes over 48 KiB need is made once per kernel, not on every launch.
template <auto Kernel, int Smem, typename... Args>
void launch(int rows, const HeadLayout& L, int batch_heads, Args... args) {
  static const bool opted_in = [] {
    LSB_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Smem));
    return true;
  }();
  (void)opted_in;
  if (L.n == 0 || batch_heads == 0) return;
  const dim3 grid(LSB_BLOCKS(L.n, rows), static_cast<unsigned>(batch_heads));
  Kernel<<<grid, kThreads, Smem>>>(args...);
  LSB_CUDA_LAUNCHED();
}

}  // namespace

std::int64_t flash_bf16_packed_elements(const HeadLayout& L, int batch_heads) {
  return batch_heads * mma::packed_rows(L.n) * mma::packed_dim(L.d);
}

void flash_bf16_pack(const float* src, const HeadLayout& L, int batch_heads, std::uint16_t* dst) {
  const std::int64_t pairs = flash_bf16_packed_elements(L, batch_heads) / 2;  // packed_dim is even
  if (pairs == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>((pairs + kThreads - 1) / kThreads, 65536));
  pack_kernel<<<blocks, kThreads>>>(src, L, mma::packed_dim(L.d), pairs, reinterpret_cast<std::uint32_t*>(dst));
  LSB_CUDA_LAUNCHED();
}

void flash_bf16_forward(const std::uint16_t* Q, const std::uint16_t* K, const std::uint16_t* V,
                        const std::uint8_t* mask, const HeadLayout& L, int batch_heads, float* O, float* lse,
                        bool causal) {
  with_kc(L.d, [&](auto kc) {
    constexpr int KC = decltype(kc)::value, MT = forward_fragments<KC>();
    launch<flash_bf16_forward_kernel<KC, MT>, forward_smem<KC, MT>()>(
        forward_rows<MT>(), L, batch_heads, (Q), (K), (V), mask, L, O, lse, causal);
  });
}

void flash_bf16_backward(const std::uint16_t* Q, const std::uint16_t* K, const std::uint16_t* V,
                         const std::uint16_t* dO, const std::uint8_t* mask, const HeadLayout& L, int batch_heads,
                         const float* lse, const float* delta, float* dQ, float* dK, float* dV, bool causal) {
  with_kc(L.d, [&](auto kc) {
    constexpr int KC = decltype(kc)::value;
    launch<flash_bf16_dq_kernel<KC>, backward_smem<KC>()>(kTile, L, batch_heads, (Q), (K), (V),
                                                          (dO), mask, L, lse, delta, dQ, causal);
    launch<flash_bf16_dkdv_kernel<KC>, backward_smem<KC>()>(kTile, L, batch_heads, (Q), (K),
                                                            (V), (dO), mask, L, lse, delta, dK, dV,
                                                            causal);
  });
}

}  // namespace lsb
