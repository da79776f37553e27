// cudnn: NVIDIA's fused scaled dot-product attention (cuDNN's flash-attention engines through its graph
// API, attention_impls/cuda/cudnn_sdpa.cu), exact softmax attention as `flash` computes it, beside it so
// that every variant is compared with the fastest exact attention the GPU has, in the same harness and
// with the same memory accounting. GPU only: the module here is the twin the CUDA module is built from
// (keys, cost model, parameter draw) and never runs its core.
#include <stdexcept>

#include "attention_impls/cuda/cudnn_sdpa.hpp"
#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"

namespace lsb {
namespace {

class CudnnTwin final : public ProjectedAttention {
 public:
  CudnnTwin(std::int64_t dim, std::int64_t heads, bool causal) : ProjectedAttention("cudnn", {}, dim, heads, causal) {}

 protected:
  void core_forward(bool) override { throw std::logic_error("cudnn: the CPU twin's core never runs"); }
  void core_backward() override { throw std::logic_error("cudnn: the CPU twin's core never runs"); }
  double core_flops(std::int64_t b, std::int64_t n) const override {  // (cuDNN skips the masked tiles)
    return exact_attention_flops(b, heads_, n, head_dim(), causal_);
  }
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return cudnn_core_floats(b, n, dim_, heads_, with_backward);
  }
};

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_cudnn(std::unique_ptr<Attention> twin);  // attention_impls/cuda/cudnn_sdpa.cu
#endif

LSB_VARIANT(cudnn) {
  VariantInfo v;
  v.name = "cudnn";
  v.summary = "cuDNN's fused flash attention (graph API, bf16, GPU only): the vendor's exact attention";
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<CudnnTwin>(dim, heads, keys.causal());
  };
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_cudnn);
  v.cuda_only = "cuDNN's attention kernels exist only for NVIDIA GPUs";
  v.causal = v.causal_cuda = true;
  v.reference_core = [](const ref::CoreInput& in, ref::Mat& C) { ref::band_core(in, C, in.n); };
  return v;
}

}  // namespace lsb
