// flash on the GPU: exact softmax attention in key tiles with an online softmax, keeping only the
// log-sum-exp of each row (b, h, n) for the backward, which recomputes the tile scores.
//
// Layout of every kernel: a block of 256 threads owns 64 rows (queries, or keys in the dK/dV
// kernel); the 4 consecutive threads of a row each own the head dims k = 4*i + sub (sub = thread % 4),
// so a dot product is 4 partial sums and two shuffles, and the other side's tile (32 rows of d
// floats) is staged in shared memory, read without bank conflicts. fp32 on the CUDA cores.
// Deterministic: dQ and dK/dV come from two kernels (query- and key-centric), with no atomics.
// Under --precision bf16 the module runs the tensor-core kernels of flash_bf16.cu instead.
// Causal (--causal; both kernel families): a block's query rows never load the key tiles after its
// last row, nor a key block the query tiles before its first key; the tiles the diagonal crosses mask
// key u > query t. The fp32 kernels are in flash_fp32_kernels.cuh (the kernel dialect: the CPU tests run
// them on an emulated thread block).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "attention_impls/cuda/flash.hpp"
#include "attention_impls/cuda/projected.cuh"
#include "nn/cuda/check.cuh"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"

namespace lsb {
namespace {

#include "nn/cuda/kernel_dialect.cuh"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/flash_fp32_kernels.cuh"

class CudaFlash final : public CudaProjectedAttention {
 public:
  explicit CudaFlash(std::unique_ptr<Attention> twin) : CudaProjectedAttention(std::move(twin)) {
    if (head_dim() > kFlashMaxHeadDim)
      throw UsageError(spec_string() + " on CUDA: head dim " + std::to_string(head_dim()) +
                       " is over the kernel's limit of " + std::to_string(kFlashMaxHeadDim));
  }

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    ensure_here(lse_, {b_, heads_, n_}, MemCategory::activations, "flash log-sum-exp (b, h, n)");
    const HeadLayout L = layout();
    // bf16 runs on tensor cores (require_precision has checked compute capability 8.0); the choice is
    // kept for the backward, which must match the forward's lse and reads the forward's packed copies.
    tensor_cores_ = matmul_precision() == Precision::bf16;
    if (tensor_cores_) {
      const auto* q = packed(q16_, Q_, MemCategory::activations, "flash bf16 Q (b*h, rows, dp)");
      const auto* k = packed(k16_, K_, MemCategory::activations, "flash bf16 K (b*h, rows, dp)");
      const auto* v = packed(v16_, V_, MemCategory::activations, "flash bf16 V (b*h, rows, dp)");
      return flash_bf16_forward(q, k, v, mask_, L, batch_heads(), C_.data(), lse_.data(), causal_);
    }
    const dim3 grid(LSB_BLOCKS(n_, kRows), static_cast<unsigned>(b_ * heads_));
    with_kpt(L.d, [&](auto kpt) {
      flash_forward_kernel<decltype(kpt)::value>
          <<<grid, kThreads>>>(Q_.data(), K_.data(), V_.data(), mask_, L, C_.data(), lse_.data(), causal_);
    });
    LSB_CUDA_LAUNCHED();
  }
  void core_backward() override {
    ensure_here(delta_, {b_, heads_, n_}, MemCategory::workspace, "flash rowsum(dO * O) (b, h, n)");
    const HeadLayout L = layout();
    const std::int64_t rows = b_ * heads_ * n_;
    flash_delta_kernel<<<LSB_BLOCKS(rows, kThreads / 32), kThreads>>>(C_.data(), dC_.data(), L, rows, delta_.data());
    LSB_CUDA_LAUNCHED();
    if (tensor_cores_) {
      const auto* d_o = packed(do16_, dC_, MemCategory::workspace, "flash bf16 dO (b*h, rows, dp)");
      return flash_bf16_backward(bits(q16_), bits(k16_), bits(v16_), d_o, mask_, L, batch_heads(), lse_.data(),
                                 delta_.data(), dQ_.data(), dK_.data(), dV_.data(), causal_);
    }
    const dim3 grid(LSB_BLOCKS(n_, kRows), static_cast<unsigned>(b_ * heads_));
    with_kpt(L.d, [&](auto kpt) {
      constexpr int K = decltype(kpt)::value;
      flash_dq_kernel<K><<<grid, kThreads>>>(Q_.data(), K_.data(), V_.data(), dC_.data(), mask_, L, lse_.data(),
                                             delta_.data(), dQ_.data(), causal_);
      LSB_CUDA_LAUNCHED();
      flash_dkdv_kernel<K><<<grid, kThreads>>>(Q_.data(), K_.data(), V_.data(), dC_.data(), mask_, L, lse_.data(),
                                               delta_.data(), dK_.data(), dV_.data(), causal_);
    });
    LSB_CUDA_LAUNCHED();
  }
  // lse (b, h, n) and, in the backward, delta; in bf16 the packed copies of Q, K, V (kept for the
  // backward) and of dO.
  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    std::int64_t floats = b * heads_ * n * (with_backward ? 2 : 1);
    if (matmul_precision() == Precision::bf16) floats += packed_floats(b, n) * (with_backward ? 4 : 3);
    return floats;
  }

 private:
  HeadLayout layout() const {
    return {n_, dim_, static_cast<int>(heads_), static_cast<int>(head_dim())};
  }
  int batch_heads() const { return static_cast<int>(b_ * heads_); }
  // Floats that hold one packed bf16 copy of a (b, n, D) buffer.
  std::int64_t packed_floats(std::int64_t b, std::int64_t n) const {
    const HeadLayout L{n, dim_, static_cast<int>(heads_), static_cast<int>(head_dim())};
    return (flash_bf16_packed_elements(L, static_cast<int>(b * heads_)) + 1) / 2;
  }
  static const std::uint16_t* bits(const Tensor& t) { return reinterpret_cast<const std::uint16_t*>(t.data()); }
  // dst = the packed bf16 copy of src (b, n, D), allocated on first use.
  const std::uint16_t* packed(Tensor& dst, const Tensor& src, MemCategory category, const char* what) {
    ensure_here(dst, {packed_floats(b_, n_)}, category, what);
    auto* out = reinterpret_cast<std::uint16_t*>(dst.data());
    flash_bf16_pack(src.data(), layout(), batch_heads(), out);
    return out;
  }
  Tensor lse_, delta_, q16_, k16_, v16_, do16_;
  bool tensor_cores_ = false;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_flash(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaFlash>(std::move(twin));
}

}  // namespace lsb
