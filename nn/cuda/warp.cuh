// Reductions over the 32 lanes of a warp (every lane gets the result), for the kernels of nn/cuda and of
// the CUDA attention variants (nn/cuda/dialect_common.hpp, on the GPU's shuffle; kernels written in the
// kernel dialect get the same from nn/cuda/kernel_dialect.cuh).
#pragma once

#ifndef LSB_DEVICE_FN
#define LSB_DEVICE_FN __device__ __forceinline__
#endif

namespace lsb::cuda {

LSB_DEVICE_FN float lane_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
#include "nn/cuda/dialect_common.hpp"

}  // namespace lsb::cuda
