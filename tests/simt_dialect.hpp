// The kernel dialect (nn/cuda/kernel_dialect.cuh names every definition) on the emulated thread block of
// tests/simt.hpp, so that a test runs kernels written in it, unchanged, on the CPU:
//   namespace { namespace emulated {
//   #include "tests/simt_dialect.hpp"
//   #include "attention_impls/cuda/<...>_kernels.cuh"
//   } }
// then simt::launch(grid_x, grid_y, threads, shared_bytes, [&] { kernel(args...); }). Included inside a
// namespace, after tests/simt.hpp and <cmath>.
using ::lsb::simt::block_sync;
using ::lsb::simt::blockDim;
using ::lsb::simt::blockIdx;
using ::lsb::simt::cp_async16;
using ::lsb::simt::cp_async_commit;
using ::lsb::simt::cp_async_wait;
using ::lsb::simt::gridDim;
using ::lsb::simt::lane_shfl;
using ::lsb::simt::lane_xor;
using ::lsb::simt::ldsm_x4;
using ::lsb::simt::ldsm_x4_trans;
using ::lsb::simt::mma16816;
using ::lsb::simt::pack_bf16;
using ::lsb::simt::threadIdx;
using ::lsb::simt::warp_sync;

#ifndef LSB_DEVICE_FN
#define LSB_DEVICE_FN [[maybe_unused]] inline  // a test runs the kernels it checks, not all of a header
#define LSB_KERNEL(threads) [[maybe_unused]] void
#define LSB_DYNAMIC_SHARED(name) unsigned char* name = ::lsb::simt::shared_memory()
// One array per declaration and block: the address of a static tag names the declaration.
#define LSB_SHARED_ARRAY(T, name, dims)                                  \
  static const char name##_declaration = 0;                             \
  using name##_type = T dims;                                           \
  auto& name = *static_cast<name##_type*>(                              \
      ::lsb::simt::block_static(&name##_declaration, sizeof(name##_type)))
#endif

#include "nn/cuda/dialect_common.hpp"
