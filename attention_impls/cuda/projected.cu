#include "attention_impls/cuda/projected.cuh"

#include "attention_impls/cuda/factory.hpp"
#include "attention_impls/registry.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"

namespace lsb {

CudaProjectedAttention::CudaProjectedAttention(std::unique_ptr<Attention> twin)
    : ProjectedAttention(*twin, Device::cuda), twin_(std::move(twin)) {}

void CudaProjectedAttention::init_params(std::uint64_t seed) {
  twin_->init_params(seed);
  copy_param_values(*twin_, *this);
}

void CudaProjectedAttention::check_length(std::int64_t n) const {
  if (const auto* projected = dynamic_cast<const ProjectedAttention*>(twin_.get())) projected->check_length(n);
}

std::unique_ptr<Attention> make_cuda_attention(std::unique_ptr<Attention> twin) {
  cuda::require_device();
  const VariantInfo& v = variant_info(twin->name());
  if (!v.make_cuda) throw UsageError("--device cuda: variant '" + v.name + "' has no CUDA implementation yet");
  return v.make_cuda(std::move(twin));
}

}  // namespace lsb
