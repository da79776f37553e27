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

// O = softmax(Q K^T + mask) V and lse (b*h, n) as the fp32 kernel computes them, with bf16 operands
// (Q, K, V and the probabilities rounded to nearest even) and fp32 accumulation on tensor cores.
// Causal: query t sees keys u <= t; the key tiles after a block's last query are never loaded.
void flash_bf16_forward(const float* Q, const float* K, const float* V, const std::uint8_t* mask, const HeadLayout& L,
                        int batch_heads, float* O, float* lse, bool causal);
// dQ, dK, dV from dO, the forward's lse and delta = rowsum(dO * O); the same roundings (dO and dS
// too). Written whole (not accumulated).
void flash_bf16_backward(const float* Q, const float* K, const float* V, const float* dO, const std::uint8_t* mask,
                         const HeadLayout& L, int batch_heads, const float* lse, const float* delta, float* dQ,
                         float* dK, float* dV, bool causal);

}  // namespace lsb
