// The thin oneDNN 2.6 wrapper: every matrix product of the project goes through here.
//
// A MatRef is a strided view of a batch of matrices: element (b0, b1, i, j) lives at
//   data[b0*bs0 + b1*bs1 + i*rs + j*cs].
// Transposition is a view (t() swaps rows/cols and their strides) and heads are views of a
// (b, n, D) activation (batch strides n*D and d, row stride D), so attention never copies to
// split or transpose heads.
#pragma once
#include <cstdint>
#include <string>
#include <utility>

#include "nn/memory.hpp"

namespace lsb {

struct MatRef {
  float* data = nullptr;
  std::int64_t rows = 0, cols = 0;
  std::int64_t rs = 0, cs = 1;             // row and column strides, in elements
  std::int64_t batch[2] = {1, 1};          // up to two batch dimensions
  std::int64_t bstride[2] = {0, 0};

  // A single row-major matrix with leading dimension ld.
  static MatRef rowmajor(const float* p, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
    MatRef m;
    m.data = const_cast<float*>(p);
    m.rows = rows;
    m.cols = cols;
    m.rs = ld;
    m.cs = 1;
    return m;
  }
  MatRef t() const {
    MatRef m = *this;
    std::swap(m.rows, m.cols);
    std::swap(m.rs, m.cs);
    return m;
  }
  MatRef batched(std::int64_t n0, std::int64_t s0, std::int64_t n1 = 1, std::int64_t s1 = 0) const {
    MatRef m = *this;
    m.batch[0] = n0;
    m.bstride[0] = s0;
    m.batch[1] = n1;
    m.bstride[1] = s1;
    return m;
  }
};

// The precision of the products matmul() (and, on the GPU, cuda::gemm) computes. fp32: fp32 operands.
// bf16: both operands rounded to bfloat16 (round to nearest even) into tracked staging buffers, products
// accumulated in fp32 by oneDNN's bf16 kernels (cuBLAS on tensor cores on the GPU), c stays fp32 (so
// does everything outside the products). gemm_tile and the GPU's window kernels are always fp32; flash
// on the GPU runs its tensor-core kernels in bf16 (attention_impls/cuda/flash_bf16.cu). The setting is
// process-wide; the drivers set it per run with PrecisionScope.
enum class Precision { fp32, bf16 };
Precision parse_precision(const std::string& name, const char* option);  // UsageError naming the option
const char* precision_name(Precision p);
Precision matmul_precision();
// UsageError naming --precision when `p` cannot run on `device` here (bf16: on the CPU where
// bf16_matmul_available(), on a GPU of compute capability 8.0 or newer; a missing GPU is left to the
// device's own error).
void require_precision(Precision p, Device device);
// Whether this CPU and oneDNN build have bf16 matmul kernels (AVX-512 or newer); the reason when not.
bool bf16_matmul_available(std::string* why = nullptr);
// Sets the precision for its lifetime (require_precision(p, device) first). Leaving bf16 frees the
// staging buffers of both devices.
class PrecisionScope {
 public:
  explicit PrecisionScope(Precision p, Device device = Device::cpu);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  Precision saved_;
};
// x rounded to the nearest bfloat16 (ties to even; NaN stays NaN), as the bf16 products round operands.
float round_to_bf16(float x);

// c = alpha * a @ b + beta * c (+ bias broadcast over rows, only without batch dims).
// Shapes: a (B, M, K), b (B, K, N), c (B, M, N) with the same two batch dims B for all three.
// Runs with the OpenMP threads of the caller; do not call from inside a parallel region.
void matmul(const MatRef& a, const MatRef& b, const MatRef& c, float alpha = 1.0f, float beta = 0.0f,
            const float* bias = nullptr);

// The product's two batch dimensions as one (batch {1, n0 n1}) where every operand's memory allows it:
// dimension 0's stride is n1 times dimension 1's (consecutive matrices, or a broadcast operand with both
// strides 0). A batched library call then covers the whole batch: cuda::gemm issues one cuBLAS call
// instead of n0 (nystromformer's (b, h) batches of m x m products made 32 calls each). False, and the
// views unchanged, where a stride does not allow it (head views of (b, n, D) buffers) or there is only
// one dimension to begin with.
bool merge_batch_dims(MatRef& a, MatRef& b, MatRef& c);

// Single-threaded row-major GEMM for tiles inside an OpenMP parallel region (each thread calls it
// on its own tile): c (M x N, ldc) = alpha * op(a) @ op(b) + beta * c.
void gemm_tile(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
               const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
               std::int64_t ldc);

// Number of distinct matmul primitives created so far (tests: no new primitive after warm-up).
std::int64_t matmul_primitives_created();
// Bytes of the one scratchpad all matmul primitives share plus the bf16 staging buffers (all tracked
// as workspace, grown to the largest request and kept).
std::int64_t matmul_scratchpad_bytes();
const char* onednn_version();

}  // namespace lsb
