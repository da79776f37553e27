// Built when nvcc is not found.
#include "attention_impls/cuda/factory.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"

namespace lsb {

std::unique_ptr<Attention> make_cuda_attention(std::unique_ptr<Attention>) {
  throw UsageError("--device cuda: " + cuda::unavailable_reason());
}

}  // namespace lsb
