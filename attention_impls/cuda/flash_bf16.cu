// flash on tensor cores (--precision bf16 on a GPU of compute capability 8.0 or newer), in the manner of
// FlashAttention-2: the same algorithm as the fp32 kernels of flash.cu (online softmax over key tiles,
// lse kept for the backward, a query-centric dQ kernel and a key-centric dK/dV kernel, no atomics, so
// runs repeat bit for bit), with every product on `mma.sync.m16n8k16` (bf16 operands, fp32
// accumulation) and the softmax in fp32 registers, in base 2 (one exp2 per score).
//
// The kernels are in flash_bf16_kernels.cuh (with their layout), written against the primitives defined
// here as PTX; the CPU tests run the same kernels on an emulated thread block (tests/simt.hpp).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "attention_impls/cuda/flash.hpp"
#include "attention_impls/cuda/mma_tiles.hpp"
#include "nn/cuda/check.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define LSB_BEFORE_SM80 1  // the host checks compute capability 8.0 before choosing these kernels
#endif

namespace lsb {
namespace {

// ---- PTX (PTX ISA: cp.async, ldmatrix, mma.m16n8k16).

[[maybe_unused]] __device__ __forceinline__ std::uint32_t smem_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* shared_dst, const void* global_src) {
#ifdef LSB_BEFORE_SM80
  __trap();
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_address(shared_dst)), "l"(global_src));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifndef LSB_BEFORE_SM80
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifndef LSB_BEFORE_SM80
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

__device__ __forceinline__ void ldsm_x4(std::uint32_t (&r)[4], const std::uint16_t* p) {
#ifdef LSB_BEFORE_SM80
  __trap();
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
#endif
}
__device__ __forceinline__ void ldsm_x4_trans(std::uint32_t (&r)[4], const std::uint16_t* p) {
#ifdef LSB_BEFORE_SM80
  __trap();
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
#endif
}

// d += a b on one 16 x 8 tile.
__device__ __forceinline__ void mma16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                         std::uint32_t b1) {
#ifdef LSB_BEFORE_SM80
  __trap();
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two floats rounded to bf16 (nearest even) in one register, `lo` in the low half (the lower index).
__device__ __forceinline__ std::uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}

#define LSB_TC_FN __device__ __forceinline__
#define LSB_TC_KERNEL __global__ void __launch_bounds__(kThreads)
#define LSB_TC_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
__device__ __forceinline__ void block_sync() { __syncthreads(); }
__device__ __forceinline__ float lane_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
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
