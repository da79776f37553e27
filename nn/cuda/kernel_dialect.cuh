// The kernel dialect on the GPU: the primitives and qualifiers that kernels written once for two machines
// use (attention_impls/cuda/*_kernels.cuh: flash's fp32 and tensor-core kernels, causal ls's, performer's),
// here as CUDA and PTX; tests/simt_dialect.hpp defines the same names on an emulated thread block (tests/simt.hpp),
// so that the tests run those kernels, unchanged, where no GPU is.
//
// Included inside a namespace (an unnamed one: every definition stays in its translation unit), after
// <cuda_bf16.h> and <cstdint>, then the kernels' header. Defines:
//   LSB_DEVICE_FN                  a device function's qualifiers
//   LSB_KERNEL(threads)            a kernel's qualifiers and return type, launched with `threads` threads
//   LSB_DYNAMIC_SHARED(name)       declares `name` (unsigned char*), the block's dynamic shared memory
//   LSB_SHARED_ARRAY(T, name, dims) declares the __shared__ array `T name dims`
//   threadIdx, blockIdx, blockDim, gridDim (CUDA's own here)
//   block_sync(), warp_sync()      __syncthreads(), __syncwarp()
//   lane_xor(v, m), lane_shfl(v, src)   a float from lane (this ^ m), from lane src, of the warp
//   warp_sum(v), warp_max(v)       over the 32 lanes, every lane gets the result
//   cp_async16(dst, src), cp_async_commit(), cp_async_wait<N>()   16-byte copies to shared (sm_80)
//   ldsm_x4(r, p), ldsm_x4_trans(r, p)  ldmatrix.x4 (p: this lane's row address in shared memory)
//   mma16816(d, a, b0, b1)         mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32: d += a b
//   pack_bf16(lo, hi)              two floats rounded to bf16 in one register, lo in the low half
#pragma once
#ifndef __CUDA_BF16_H__
#error "include <cuda_bf16.h> before nn/cuda/kernel_dialect.cuh (which is included inside a namespace)"
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define LSB_BEFORE_SM80 1  // the host checks compute capability 8.0 before launching what uses these
#endif

#define LSB_DEVICE_FN __device__ __forceinline__
#define LSB_KERNEL(threads) __global__ void __launch_bounds__(threads)
#define LSB_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#define LSB_SHARED_ARRAY(T, name, dims) __shared__ T name dims

[[maybe_unused]] __device__ __forceinline__ void block_sync() { __syncthreads(); }
[[maybe_unused]] __device__ __forceinline__ void warp_sync() { __syncwarp(); }
[[maybe_unused]] __device__ __forceinline__ float lane_xor(float v, int m) {
  return __shfl_xor_sync(0xffffffffu, v, m);
}
[[maybe_unused]] __device__ __forceinline__ float lane_shfl(float v, int src) {
  return __shfl_sync(0xffffffffu, v, src);
}
#include "nn/cuda/dialect_common.hpp"

// ---- PTX (PTX ISA: cp.async, ldmatrix, mma.m16n8k16).

[[maybe_unused]] __device__ __forceinline__ std::uint32_t smem_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

[[maybe_unused]] __device__ __forceinline__ void cp_async16(void* shared_dst, const void* global_src) {
#ifdef LSB_BEFORE_SM80
  __trap();
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_address(shared_dst)), "l"(global_src));
#endif
}
[[maybe_unused]] __device__ __forceinline__ void cp_async_commit() {
#ifndef LSB_BEFORE_SM80
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
[[maybe_unused]] __device__ __forceinline__ void cp_async_wait() {
#ifndef LSB_BEFORE_SM80
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

[[maybe_unused]] __device__ __forceinline__ void ldsm_x4(std::uint32_t (&r)[4], const std::uint16_t* p) {
#ifdef LSB_BEFORE_SM80
  __trap();
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
#endif
}
[[maybe_unused]] __device__ __forceinline__ void ldsm_x4_trans(std::uint32_t (&r)[4], const std::uint16_t* p) {
#ifdef LSB_BEFORE_SM80
  __trap();
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
#endif
}

// d += a b on one 16 x 8 tile.
[[maybe_unused]] __device__ __forceinline__ void mma16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
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
[[maybe_unused]] __device__ __forceinline__ std::uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&v);
}
