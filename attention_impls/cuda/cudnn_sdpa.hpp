// What the CPU twin (attention_impls/cudnn.cpp) and the tests share with attention_impls/cuda/cudnn_sdpa.cu.
// No CUDA or cuDNN header here: every build includes it.
#pragma once
#include <cstdint>

namespace lsb {

// Floats the cudnn core allocates (the CPU twin's bound and the CUDA module's): bf16 copies of Q, K, V,
// O (b, n, D) and the log-sum-exp (b, h, n); the backward's bf16 dO, dQ, dK, dV, its fp32 dQ accumulator
// (b, n, D) and rowsum(dO * O) (b, h, n). cuDNN's own workspace is tracked when allocated, not bounded here.
inline std::int64_t cudnn_core_floats(std::int64_t b, std::int64_t n, std::int64_t D, std::int64_t h,
                                      bool with_backward) {
  const std::int64_t bnD = b * n * D, bhn = b * h * n;
  return 2 * bnD + bhn + (with_backward ? 2 * bnD + bnD + bhn : 0);
}

// Builds every node of the forward and the backward graph of one shape (b sequences of n positions,
// h heads of d dims), each finalized, so that cuDNN checks each descriptor (attribute types, shapes,
// broadcasts) as it will on a GPU; the operation graph and its plan, which need a GPU, are not built.
// Throws std::runtime_error naming what cuDNN refused; needs cuDNN (cuda::cudnn_problem() empty).
void cudnn_check_graph_nodes(std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d, bool causal);

}  // namespace lsb
