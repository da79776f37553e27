// The CUDA variants: each is built from its CPU module (the "twin"), which has parsed and validated
// the spec, owns the cost model and initialises parameters, so both devices run the same model.
#pragma once
#include <memory>

#include "attention_impls/attention.hpp"

namespace lsb {

// Throws UsageError saying why when this build has no CUDA or no device is present.
std::unique_ptr<Attention> make_cuda_attention(std::unique_ptr<Attention> cpu_twin);

}  // namespace lsb
