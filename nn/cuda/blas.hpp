// Dense products on the GPU: the MatRef views of nn/matmul.hpp mapped onto cuBLAS (fp32, no TF32),
// so CUDA code writes the same products as the CPU code (heads as column slices, transposes as views).
// Only in builds with CUDA; pointers are device pointers.
#pragma once
#include "nn/matmul.hpp"

namespace lsb::cuda {

// c = alpha * a @ b + beta * c on the default stream. Every view needs a unit row or column stride.
// Under --precision bf16 (matmul_precision()) both operands are rounded to bfloat16 (nearest even) into
// compact staging buffers and multiplied on tensor cores with fp32 accumulation into the fp32 c, as the
// CPU does with oneDNN; the split-K kernel rounds its operands as it loads them.
void gemm(const MatRef& a, const MatRef& b, const MatRef& c, float alpha = 1.0f, float beta = 0.0f);
// (Its bf16 staging buffers are freed by release_bf16_staging, nn/cuda/device.hpp.)

}  // namespace lsb::cuda
