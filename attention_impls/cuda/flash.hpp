// What flash.cu (the fp32 kernels and the module) and flash_bf16.cu (the tensor-core kernels used
// under --precision bf16) share: the head view of the (b, n, D) buffers and the bf16 launchers.
#pragma once
#include <cstdint>

#include "nn/host_device.hpp"

namespace lsb {

// The heads of a (b, n, D) buffer: head hi of batch bi is the column slice [hi * d, (hi + 1) * d).
struct HeadLayout {
  std::int64_t n, D;
  int h, d;
  // Element (t, k) of head bh = bi * h + hi.
  LSB_HOST_DEVICE std::int64_t at(int bh, std::int64_t t, int k) const {
    return (bh / h * n + t) * D + (bh % h) * d + k;
  }
};

// Both kernel families take head dims up to this (the bf16 ones pad d to a multiple of 16).
constexpr int kFlashMaxHeadDim = 128;

// The tensor-core kernels read bf16 copies of Q, K, V (and dO) packed head by head:
// (b*h, mma::packed_rows(n), mma::packed_dim(d)) row-major (attention_impls/cuda/mma_tiles.hpp), zero
// past n and past d, so that every tile is whole 16-byte rows copied with cp.async. Elements are bf16
// bit patterns (std::uint16_t here, so that .cpp files need no CUDA header).
std::int64_t flash_bf16_packed_elements(const HeadLayout& L, int batch_heads);
// dst = the packed bf16 copy (round to nearest even) of the heads of src (b, n, D).
void flash_bf16_pack(const float* src, const HeadLayout& L, int batch_heads, std::uint16_t* dst);

// O = softmax(Q K^T + mask) V (fp32, (b, n, D)) and lse (b*h, n) from the packed Q, K, V, with the
// probabilities rounded to bf16 and fp32 accumulation on tensor cores.
// Causal: query t sees keys u <= t; the key tiles after a block's last query are never loaded.
void flash_bf16_forward(const std::uint16_t* Q, const std::uint16_t* K, const std::uint16_t* V,
                        const std::uint8_t* mask, const HeadLayout& L, int batch_heads, float* O, float* lse,
                        bool causal);
// dQ, dK, dV (fp32, (b, n, D)) from the packed Q, K, V, dO, the forward's lse and delta = rowsum(dO * O);
// dS rounded to bf16 too. Written whole (not accumulated).
void flash_bf16_backward(const std::uint16_t* Q, const std::uint16_t* K, const std::uint16_t* V,
                         const std::uint16_t* dO, const std::uint8_t* mask, const HeadLayout& L, int batch_heads,
                         const float* lse, const float* delta, float* dQ, float* dK, float* dV, bool causal);

}  // namespace lsb
