// A CUDA thread block emulated on the CPU, for testing kernels written against primitives (as
// attention_impls/cuda/flash_bf16_kernels.cuh is) where no GPU is: each thread of a block is a fiber
// (ucontext), run one after another until it reaches its next collective operation. A warp collective
// (a shuffle, __syncwarp, ldmatrix, mma) waits for the 32 lanes of its warp, which must all arrive at
// the same kind of operation, none of them exited; __syncthreads waits for every thread of the block
// that has not exited. A kernel whose lanes diverge at a collective, or that deadlocks, fails where the
// GPU would hang or compute garbage. What a warp collective exchanges goes through per-lane slots.
//
// Checked as it runs: every shared-memory access of a primitive lies inside the block's dynamic shared
// memory and is aligned as the instruction requires, every cp.async source lies inside a registered
// global buffer, and a cp.async lands only when its group is waited for (so a tile read before its wait
// reads the stale bytes, or the 0xff fill of fresh shared memory, a NaN as bf16 and fp32).
// Not emulated: timing, and races between threads (each runs to its next collective alone, so
// shared-memory races go unseen); compute-sanitizer's racecheck covers those on a GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace lsb::simt {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
// The running thread's indices (set by the scheduler before it resumes a fiber).
extern Dim3 threadIdx, blockIdx, blockDim, gridDim;

// Runs body once per thread of every block of a (grid_x, grid_y) grid of `threads` threads with
// `shared_bytes` of dynamic shared memory. Throws std::runtime_error naming the first failed check.
void launch(unsigned grid_x, unsigned grid_y, unsigned threads, std::size_t shared_bytes,
            const std::function<void()>& body);

// A global buffer cp.async may read (for the duration of the next launches).
void register_global(const void* p, std::size_t bytes);
void clear_globals();

unsigned char* shared_memory();
// A `__shared__` array of the running block: one per declaration (any address unique to it), `bytes`
// long, filled with 0xff when the block first reaches it.
void* block_static(const void* declaration, std::size_t bytes);
// Fails the launch (the running thread's message names `what`).
[[noreturn]] void fail(const std::string& what);

// ---- The primitives.
void block_sync();
void warp_sync();
float lane_xor(float v, int lane_mask);
float lane_shfl(float v, int src_lane);
void cp_async16(void* shared_dst, const void* global_src);
void cp_async_commit();
void cp_async_wait_group(int n);
template <int N>
void cp_async_wait() {
  cp_async_wait_group(N);
}
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 from this lane's row address p.
void ldsm_x4(std::uint32_t (&r)[4], const std::uint16_t* p);
void ldsm_x4_trans(std::uint32_t (&r)[4], const std::uint16_t* p);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: d += a b (products and sums in double, the
// result rounded to fp32 once per instruction).
void mma16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1);
std::uint32_t pack_bf16(float lo, float hi);

// A float rounded to bf16 (nearest even) as its bit pattern, and a bit pattern's value.
std::uint16_t bf16_bits(float x);
float bf16_value(std::uint16_t bits);

}  // namespace lsb::simt
