// What tests see of attention_impls/cuda/cudnn_sdpa.cu beyond the variant itself.
#pragma once
#include <cstdint>

namespace lsb {

// Builds every node of the forward and the backward graph of one shape (b sequences of n positions,
// h heads of d dims), each finalized, so that cuDNN checks each descriptor (attribute types, shapes,
// broadcasts) as it will on a GPU; the operation graph and its plan, which need a GPU, are not built.
// Throws std::runtime_error naming what cuDNN refused; needs cuDNN (cuda::cudnn_problem() empty).
void cudnn_check_graph_nodes(std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d, bool causal);

}  // namespace lsb
