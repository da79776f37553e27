// Causal ls on the GPU: the authors' autoregressive Transformer-LS exactly as attention_impls/ls_causal.cpp
// computes it (definition there and in ../shared/spec/attention.md "Causal attention"):
//   Kt, Vt = LN_L(K), LN_L(V)                          window keys and values (b, n, D)
//   Pp = per-chunk column softmax of x Wp^T + bp        (b, n, h*r): cuda::column_softmax over (b*n/l, l, h*r)
//   Kc, Vc = LN_G(Pp_c^T K_c), LN_G(Pp_c^T V_c)         r vectors per chunk (b, n/l*r, D), batched cuBLAS
//   query t: one joint softmax over the vectors of the chunks before its own (of chunks with a real
//   position) and the real window keys u in [t - w + 1, t].
// The joint softmax runs online (flash style): only the row log-sum-exp (b, h, n) is kept, the backward
// recomputes the scores, so memory is linear in n.
//
// Kernels (warp-per-row, fp32 on the CUDA cores, as local.cu): the forward and dQ take one warp per query,
// scoring 32 keys at a time (one per lane) and accumulating outputs one head dim per lane; the key gradients
// take one warp per key, gathering over the queries that see it (window key u: queries u .. u + w - 1;
// compressed vector of chunk c: every query from chunk c + 1 on), so there are no atomics and the results
// are deterministic. The kernels are in ls_causal_kernels.cuh (the kernel dialect: the CPU tests run them
// on an emulated thread block).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "attention_impls/cuda/projected.cuh"
#include "attention_impls/variants.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/kernels.hpp"
#include "nn/errors.hpp"
#include "nn/host_device.hpp"

namespace lsb {
namespace {

#include "nn/cuda/kernel_dialect.cuh"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/ls_causal_kernels.cuh"

class CudaCausalLongShort final : public CudaProjectedAttention {
 public:
  explicit CudaCausalLongShort(std::unique_ptr<Attention> twin)
      : CudaProjectedAttention(std::move(twin)), w_(int_param("w")), l_(int_param("l")), r_(int_param("r")) {
    if (head_dim() > kMaxHeadDim)
      throw UsageError(spec_string() + " on CUDA: head dim " + std::to_string(head_dim()) +
                       " is over the causal kernels' limit of " + std::to_string(kMaxHeadDim));
  }

 protected:
  void core_forward(bool) override {
    if (drop_.active()) throw UsageError("causal ls has no dropout on attention probabilities");
    const std::int64_t D = dim_, rows = b_ * n_, hr = heads_ * r_, chunks = b_ * (n_ / l_), cr = chunks * r_;
    ensure_here(Kt_, {b_, n_, D}, MemCategory::activations, "causal ls LN_L(K)");
    ensure_here(Vt_, {b_, n_, D}, MemCategory::activations, "causal ls LN_L(V)");
    ensure_here(ln_l_stats_, {4, rows}, MemCategory::activations, "causal ls LN_L mean/rstd");
    float* st = ln_l_stats_.data();
    cuda::layernorm_forward(K_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Kt_.data(), st, st + rows);
    cuda::layernorm_forward(V_.data(), rows, D, value_of("ln_l_weight"), value_of("ln_l_bias"), Vt_.data(), st + 2 * rows,
                            st + 3 * rows);
    ensure_here(chunk_real_, {chunks}, MemCategory::activations, "causal ls chunk has a real position (b, n/l)");
    chunk_real_kernel<<<LSB_BLOCKS(chunks, kChunkThreads), kChunkThreads>>>(mask_, chunks, l_, chunk_real_.data());
    LSB_CUDA_LAUNCHED();
    if (r_ > 0) {
      ensure_here(Pp_, {b_, n_, hr}, MemCategory::activations, "causal ls chunk softmax (b, n, h*r)");
      ensure_here(comp_, {4, cr, D}, MemCategory::activations, "causal ls Kbar, Vbar, Kc, Vc (b, n/l*r, D)");
      ensure_here(ln_g_stats_, {4, cr}, MemCategory::activations, "causal ls LN_G mean/rstd");
      cuda::linear_forward(x_, rows, D, value_of("wp"), value_of("bp"), hr, Pp_.data());
      cuda::column_softmax(Pp_.data(), mask_, chunks, l_, hr);  // (b, n, h*r) as (b*n/l, l, h*r)
      cuda::gemm(chunk_proj(Pp_.data()).t(), chunk_heads(K_.data()), comp_heads(comp(0)));
      cuda::gemm(chunk_proj(Pp_.data()).t(), chunk_heads(V_.data()), comp_heads(comp(1)));
      float* gs = ln_g_stats_.data();
      cuda::layernorm_forward(comp(0), cr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), comp(2), gs, gs + cr);
      cuda::layernorm_forward(comp(1), cr, D, value_of("ln_g_weight"), value_of("ln_g_bias"), comp(3), gs + 2 * cr,
                              gs + 3 * cr);
    }
    ensure_here(lse_, {b_, heads_, n_}, MemCategory::activations, "causal ls row log-sum-exp (b, h, n)");
    causal_ls_forward_kernel<<<grid(n_), kThreads>>>(shape(), Q_.data(), Kt_.data(), Vt_.data(), comp_or_null(2),
                                                        comp_or_null(3), mask_, chunk_real_.data(), C_.data(),
                                                        lse_.data());
    LSB_CUDA_LAUNCHED();
  }

  void core_backward() override {
    const std::int64_t D = dim_, rows = b_ * n_, cr = b_ * (n_ / l_) * r_;
    ensure_here(dKt_, {b_, n_, D}, MemCategory::workspace, "causal ls dKt");
    ensure_here(dVt_, {b_, n_, D}, MemCategory::workspace, "causal ls dVt");
    ensure_here(delta_, {b_, heads_, n_}, MemCategory::workspace, "causal ls rowsum(dC * C) (b, h, n)");
    if (r_ > 0) {
      ensure_here(dcomp_, {4, cr, D}, MemCategory::workspace, "causal ls compressed-vector gradients");
      ensure_here(dPp_, Pp_.shape(), MemCategory::workspace, "causal ls chunk softmax gradient (b, n, h*r)");
    }
    const CausalLs s = shape();
    causal_ls_dq_kernel<<<grid(n_), kThreads>>>(s, Q_.data(), Kt_.data(), Vt_.data(), comp_or_null(2),
                                                   comp_or_null(3), mask_, chunk_real_.data(), C_.data(), dC_.data(),
                                                   lse_.data(), delta_.data(), dQ_.data());
    LSB_CUDA_LAUNCHED();
    causal_ls_dkdv_kernel<false><<<grid(n_), kThreads>>>(s, Q_.data(), Kt_.data(), Vt_.data(), mask_,
                                                            chunk_real_.data(), dC_.data(), lse_.data(),
                                                            delta_.data(), dKt_.data(), dVt_.data());
    LSB_CUDA_LAUNCHED();
    // The window path: Kt = LN_L(K), Vt = LN_L(V) (dK_, dV_ written here, the compressed path adds).
    const float* st = ln_l_stats_.data();
    cuda::layernorm_backward(dKt_.data(), K_.data(), rows, D, value_of("ln_l_weight"), st, st + rows, dK_.data(),
                             grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
    cuda::layernorm_backward(dVt_.data(), V_.data(), rows, D, value_of("ln_l_weight"), st + 2 * rows, st + 3 * rows,
                             dV_.data(), grad_of("ln_l_weight"), grad_of("ln_l_bias"), false);
    if (r_ == 0) return;
    causal_ls_dkdv_kernel<true><<<grid(cr / b_), kThreads>>>(s, Q_.data(), comp(2), comp(3), mask_,
                                                                chunk_real_.data(), dC_.data(), lse_.data(),
                                                                delta_.data(), dcomp(2), dcomp(3));
    LSB_CUDA_LAUNCHED();
    const float* gs = ln_g_stats_.data();
    cuda::layernorm_backward(dcomp(2), comp(0), cr, D, value_of("ln_g_weight"), gs, gs + cr, dcomp(0),
                             grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
    cuda::layernorm_backward(dcomp(3), comp(1), cr, D, value_of("ln_g_weight"), gs + 2 * cr, gs + 3 * cr, dcomp(1),
                             grad_of("ln_g_weight"), grad_of("ln_g_bias"), false);
    // Kbar_c = Pp_c^T K_c per chunk and head: dPp_c = K_c dKbar_c^T + V_c dVbar_c^T; dK_c += Pp_c dKbar_c.
    const MatRef dPp = chunk_proj(dPp_.data());
    cuda::gemm(chunk_heads(K_.data()), comp_heads(dcomp(0)).t(), dPp);
    cuda::gemm(chunk_heads(V_.data()), comp_heads(dcomp(1)).t(), dPp, 1.0f, 1.0f);
    cuda::gemm(chunk_proj(Pp_.data()), comp_heads(dcomp(0)), chunk_heads(dK_.data()), 1.0f, 1.0f);
    cuda::gemm(chunk_proj(Pp_.data()), comp_heads(dcomp(1)), chunk_heads(dV_.data()), 1.0f, 1.0f);
    cuda::column_softmax_backward(Pp_.data(), dPp_.data(), b_ * (n_ / l_), l_, heads_ * r_);
    cuda::linear_backward(dPp_.data(), x_, rows, D, value_of("wp"), heads_ * r_, grad_of("wp"), grad_of("bp"), nullptr,
                          false);
  }

  void add_input_grad(float* dx) override {
    if (r_ > 0)
      cuda::linear_backward(dPp_.data(), x_, b_ * n_, dim_, value_of("wp"), heads_ * r_, nullptr, nullptr, dx, true);
  }

  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    const std::int64_t D = dim_, hr = heads_ * r_, chunks = b * (n / l_), cr = chunks * r_;
    std::int64_t f = 2 * b * n * D + 4 * b * n + b * heads_ * n + chunks;
    if (r_ > 0) f += b * n * hr + 4 * cr * D + 4 * cr;
    if (with_backward) {
      f += 2 * b * n * D + b * heads_ * n;
      if (r_ > 0) f += 4 * cr * D + b * n * hr;
    }
    return f;
  }

 private:
  CausalLs shape() const { return {b_, n_, heads_, head_dim(), w_, l_, r_}; }
  dim3 grid(std::int64_t rows) const { return dim3(LSB_BLOCKS(rows, kWarps), static_cast<unsigned>(b_ * heads_)); }
  float* comp(int i) { return comp_.data() + i * b_ * (n_ / l_) * r_ * dim_; }
  float* dcomp(int i) { return dcomp_.data() + i * b_ * (n_ / l_) * r_ * dim_; }
  const float* comp_or_null(int i) { return r_ > 0 ? comp(i) : nullptr; }
  // The batched views of the compression, batch (head, chunk) over all examples' chunks (head outermost,
  // so cuBLAS gets b n/l products per call): chunk_proj (l x r) per chunk and head of Pp (b, n, h*r);
  // chunk_heads (l x d) of a (b, n, D) buffer; comp_heads (r x d) of a (b, n/l*r, D) buffer.
  MatRef chunk_proj(const float* P) const {
    const std::int64_t hr = heads_ * r_;
    return MatRef::rowmajor(P, l_, r_, hr).batched(heads_, r_, b_ * (n_ / l_), l_ * hr);
  }
  MatRef chunk_heads(const float* X) const {
    return MatRef::rowmajor(X, l_, head_dim(), dim_).batched(heads_, head_dim(), b_ * (n_ / l_), l_ * dim_);
  }
  MatRef comp_heads(const float* X) const {
    return MatRef::rowmajor(X, r_, head_dim(), dim_).batched(heads_, head_dim(), b_ * (n_ / l_), r_ * dim_);
  }

  std::int64_t w_, l_, r_;
  Tensor Kt_, Vt_, ln_l_stats_, chunk_real_, Pp_, comp_, ln_g_stats_, lse_;
  Tensor dKt_, dVt_, delta_, dcomp_, dPp_;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_causal_ls(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaCausalLongShort>(std::move(twin));
}

}  // namespace lsb
