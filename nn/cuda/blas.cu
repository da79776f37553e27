#include "nn/cuda/blas.hpp"

#include <stdexcept>
#include <string>

#include "nn/cuda/check.cuh"
#include "nn/tensor.hpp"

namespace lsb::cuda {
namespace {

cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t created = nullptr;
    LSB_CUBLAS_CHECK(cublasCreate(&created));
    // Plain fp32 arithmetic: TF32 tensor cores would change the results the CPU comparison checks.
    LSB_CUBLAS_CHECK(cublasSetMathMode(created, CUBLAS_PEDANTIC_MATH));
    return created;
  }();
  return h;
}

// cuBLAS is column-major: the row-major product C = A B is computed as C^T = B^T A^T, where the
// memory of a row-major view (unit column stride) is its transpose in column-major form.
struct ColMajorOperand {
  cublasOperation_t op;
  long long ld;
};

ColMajorOperand transposed_operand(const MatRef& m) {
  if (m.cs == 1 && m.rs >= m.cols) return {CUBLAS_OP_N, m.rs};
  if (m.rs == 1 && m.cs >= m.rows) return {CUBLAS_OP_T, m.cs};
  if (m.cs == 1 && m.rows == 1) return {CUBLAS_OP_N, m.cols};
  if (m.rs == 1 && m.cols == 1) return {CUBLAS_OP_T, m.rows};
  throw std::logic_error("cuda::gemm: a view needs a unit row or column stride");
}

// Small outputs with a long contraction (ls landmarks: (r x n)(n x d) per head) leave cuBLAS with a
// handful of blocks each walking all of K. Split K instead: block (c, batch) accumulates chunks
// c, c + gridDim.x, ... of T rows into its own partial (M x N) product in shared memory; a second
// kernel adds the partials in a fixed order (deterministic).
constexpr std::int64_t kSplitMaxOutput = 8192;  // M * N floats of the accumulator
constexpr int kSplitThreads = 256;

__global__ void splitk_partial_kernel(MatRef a, MatRef b, std::int64_t M, std::int64_t N, std::int64_t K, int T,
                                      float* partial) {
  extern __shared__ float smem[];
  float* acc = smem;            // (M, N)
  float* As = acc + M * N;      // (T, M): As[t][i] = a(i, k0 + t)
  float* Bs = As + T * M;       // (T, N): Bs[t][j] = b(k0 + t, j)
  const std::int64_t bz = blockIdx.y, b0 = bz / a.batch[1], b1 = bz % a.batch[1];
  const float* pa = a.data + b0 * a.bstride[0] + b1 * a.bstride[1];
  const float* pb = b.data + b0 * b.bstride[0] + b1 * b.bstride[1];
  for (std::int64_t idx = threadIdx.x; idx < M * N; idx += blockDim.x) acc[idx] = 0;
  for (std::int64_t k0 = std::int64_t(blockIdx.x) * T; k0 < K; k0 += std::int64_t(gridDim.x) * T) {
    __syncthreads();
    for (std::int64_t idx = threadIdx.x; idx < T * M; idx += blockDim.x) {
      const std::int64_t t = idx / M, i = idx % M, k = k0 + t;
      As[idx] = k < K ? pa[i * a.rs + k * a.cs] : 0.0f;
    }
    for (std::int64_t idx = threadIdx.x; idx < T * N; idx += blockDim.x) {
      const std::int64_t t = idx / N, j = idx % N, k = k0 + t;
      Bs[idx] = k < K ? pb[k * b.rs + j * b.cs] : 0.0f;
    }
    __syncthreads();
    for (std::int64_t idx = threadIdx.x; idx < M * N; idx += blockDim.x) {  // each thread owns its outputs
      const std::int64_t i = idx / N, j = idx % N;
      float s = 0;
      for (int t = 0; t < T; ++t) s += As[t * M + i] * Bs[t * N + j];
      acc[idx] += s;
    }
  }
  float* out = partial + (bz * gridDim.x + blockIdx.x) * M * N;
  for (std::int64_t idx = threadIdx.x; idx < M * N; idx += blockDim.x) out[idx] = acc[idx];
}

__global__ void splitk_reduce_kernel(const float* partial, int blocks, MatRef c, std::int64_t M, std::int64_t N,
                                     float alpha, float beta) {
  const std::int64_t bz = blockIdx.y, b0 = bz / c.batch[1], b1 = bz % c.batch[1];
  const std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= M * N) return;
  float s = 0;
  for (int k = 0; k < blocks; ++k) s += partial[(bz * blocks + k) * M * N + idx];
  float* pc = c.data + b0 * c.bstride[0] + b1 * c.bstride[1] + (idx / N) * c.rs + (idx % N) * c.cs;
  *pc = beta == 0.0f ? alpha * s : alpha * s + beta * *pc;
}

bool use_split_k(std::int64_t M, std::int64_t N, std::int64_t K) {
  return M * N <= kSplitMaxOutput && K >= 1024 && K >= 16 * std::max(M, N);
}

void gemm_split_k(const MatRef& a, const MatRef& b, const MatRef& c, float alpha, float beta) {
  const std::int64_t M = c.rows, N = c.cols, K = a.cols, batch = c.batch[0] * c.batch[1];
  const int T = static_cast<int>(std::min<std::int64_t>(64, std::max<std::int64_t>(8, (12288 - M * N) / (M + N))));
  const int blocks = static_cast<int>(
      std::min<std::int64_t>((K + T - 1) / T, std::max<std::int64_t>(1, 1024 / std::max<std::int64_t>(batch, 1))));
  static Tensor scratch;  // partial products, grown on demand and kept
  const std::int64_t floats = batch * blocks * M * N;
  if (scratch.numel() < floats) {
    scratch = Tensor();
    scratch = Tensor({floats}, MemCategory::workspace, "split-K partial products", Device::cuda);
  }
  const std::size_t smem = static_cast<std::size_t>(M * N + T * (M + N)) * sizeof(float);
  splitk_partial_kernel<<<dim3(blocks, static_cast<unsigned>(batch)), kSplitThreads, smem>>>(a, b, M, N, K, T,
                                                                                            scratch.data());
  LSB_CUDA_LAUNCHED();
  splitk_reduce_kernel<<<dim3(LSB_BLOCKS(M * N, kSplitThreads), static_cast<unsigned>(batch)), kSplitThreads>>>(
      scratch.data(), blocks, c, M, N, alpha, beta);
  LSB_CUDA_LAUNCHED();
}

}  // namespace

void gemm(const MatRef& a_in, const MatRef& b_in, const MatRef& c_in, float alpha, float beta) {
  MatRef a = a_in, b = b_in, c = c_in;
  if (c.cs != 1) {  // a column-major output: C^T = B^T A^T with a row-major C^T
    c = c_in.t();
    a = b_in.t();
    b = a_in.t();
  }
  if (a.rows != c.rows || b.cols != c.cols || a.cols != b.rows)
    throw std::logic_error("cuda::gemm: shapes do not match");
  const long long M = c.rows, N = c.cols, K = a.cols;
  if (M == 0 || N == 0) return;
  if (use_split_k(M, N, K)) return gemm_split_k(a, b, c, alpha, beta);
  const ColMajorOperand A = transposed_operand(a), B = transposed_operand(b);
  const long long ldc = c.rows == 1 ? std::max<long long>(c.rs, N) : c.rs;
  // Batch: strided over the inner batch dimension, a loop over the outer one (b is small).
  const bool inner = c.batch[1] > 1;
  const int count = static_cast<int>(inner ? c.batch[1] : c.batch[0]);
  const int outer = static_cast<int>(inner ? c.batch[0] : 1);
  const int s = inner ? 1 : 0;
  for (int i = 0; i < outer; ++i) {
    const float* pa = a.data + i * a.bstride[0];
    const float* pb = b.data + i * b.bstride[0];
    float* pc = c.data + i * c.bstride[0];
    LSB_CUBLAS_CHECK(cublasSgemmStridedBatched(handle(), B.op, A.op, static_cast<int>(N), static_cast<int>(M),
                                               static_cast<int>(K), &alpha, pb, static_cast<int>(B.ld), b.bstride[s],
                                               pa, static_cast<int>(A.ld), a.bstride[s], &beta, pc,
                                               static_cast<int>(ldc), c.bstride[s], count));
  }
}

std::string cublas_version() {
  int major = 0, minor = 0, patch = 0;
  cublasGetProperty(MAJOR_VERSION, &major);
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace lsb::cuda
