#include "nn/cuda/blas.hpp"
#include "nn/cuda/device.hpp"

#include <cuda_bf16.h>

#include <mutex>
#include <stdexcept>
#include <string>

#include "nn/cuda/check.cuh"
#include "nn/cuda/library.hpp"
#include "nn/tensor.hpp"

namespace lsb::cuda {
namespace {

// cuBLAS, opened at the first GPU product (nn/cuda/library.hpp; libcublasLt alone maps more than 500 MB).
struct Cublas {
  ToolkitLibrary lib;  // lib.problem: why it cannot be used; empty when every entry point below is set
  decltype(&::cublasCreate_v2) create = nullptr;
  decltype(&::cublasSetMathMode) set_math_mode = nullptr;
  decltype(&::cublasGetProperty) get_property = nullptr;
  decltype(&::cublasSgemmStridedBatched) sgemm_strided_batched = nullptr;
  // The C entry point (the header's C++ overload taking a cudaDataType compute type is inline, not exported).
  cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                            const void*, const void*, cudaDataType, int, long long, const void*,
                                            cudaDataType, int, long long, const void*, void*, cudaDataType, int,
                                            long long, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
};

Cublas open_cublas() {
  Cublas api;
  api.lib = open_toolkit_library("cublas", CUBLAS_VER_MAJOR, "cuBLAS",
                                 "put the CUDA toolkit's lib64 folder on LD_LIBRARY_PATH");
  if (api.lib.handle == nullptr) return api;
  api.lib.bind(api.create, "cublasCreate_v2");
  api.lib.bind(api.set_math_mode, "cublasSetMathMode");
  api.lib.bind(api.get_property, "cublasGetProperty");
  api.lib.bind(api.sgemm_strided_batched, "cublasSgemmStridedBatched");
  api.lib.bind(api.gemm_strided_batched_ex, "cublasGemmStridedBatchedEx");
  return api;
}

const Cublas& cublas_library() {
  static const Cublas api = open_cublas();  // opened once, by the first caller
  return api;
}

// The library's entry points; a std::runtime_error when it cannot be used (require_device() has turned
// that into a usage error before any command gets here).
const Cublas& cublas() {
  const Cublas& api = cublas_library();
  if (!api.lib.problem.empty()) throw std::runtime_error(api.lib.problem);
  return api;
}

cublasHandle_t make_handle(cublasMath_t mode) {
  cublasHandle_t created = nullptr;
  LSB_CUBLAS_CHECK(cublas().create(&created));
  LSB_CUBLAS_CHECK(cublas().set_math_mode(created, mode));
  return created;
}

// fp32 products: plain fp32 arithmetic (TF32 tensor cores would change the results the CPU comparison
// checks).
cublasHandle_t handle() {
  static const cublasHandle_t h = make_handle(CUBLAS_PEDANTIC_MATH);
  return h;
}

// bf16 products: the default math mode, so that cuBLAS may use tensor cores (bf16 x bf16 products are
// exact in fp32; accumulation stays fp32 with CUBLAS_COMPUTE_32F).
cublasHandle_t bf16_handle() {
  static const cublasHandle_t h = make_handle(CUBLAS_DEFAULT_MATH);
  return h;
}

__device__ __forceinline__ float bf16_rounded(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

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

// How a (possibly batched) product is issued: `count` strided products per cuBLAS call over batch
// dimension `s`, in `outer` calls over the other one, `o`; ldc the output's leading dimension (a single
// row may have any row stride). A strided batch has one stride, so (b, h) head views take one of their
// dimensions per call: the larger (the lra-small model's b = 32, h = 2: 2 calls of 32, not 32 of 2).
struct BatchPlan {
  int count, outer, s, o;
  long long ldc;
};
BatchPlan batch_plan(const MatRef& c) {
  const int s = c.batch[1] >= c.batch[0] ? 1 : 0, o = 1 - s;
  return {static_cast<int>(c.batch[s]), static_cast<int>(c.batch[o]), s, o,
          c.rows == 1 ? std::max<long long>(c.rs, c.cols) : c.rs};
}

// Small outputs with a long contraction (ls landmarks: (r x n)(n x d) per head) leave cuBLAS with a
// handful of blocks each walking all of K. Split K instead: block (c, batch) accumulates chunks
// c, c + gridDim.x, ... of T rows into its own partial (M x N) product in shared memory; a second
// kernel adds the partials in a fixed order (deterministic).
constexpr std::int64_t kSplitMaxOutput = 8192;  // M * N floats of the accumulator
constexpr int kSplitThreads = 256;

__global__ void splitk_partial_kernel(MatRef a, MatRef b, std::int64_t M, std::int64_t N, std::int64_t K, int T,
                                      bool bf16, float* partial) {
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
      const float v = k < K ? pa[i * a.rs + k * a.cs] : 0.0f;
      As[idx] = bf16 ? bf16_rounded(v) : v;
    }
    for (std::int64_t idx = threadIdx.x; idx < T * N; idx += blockDim.x) {
      const std::int64_t t = idx / N, j = idx % N, k = k0 + t;
      const float v = k < K ? pb[k * b.rs + j * b.cs] : 0.0f;
      Bs[idx] = bf16 ? bf16_rounded(v) : v;
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

void gemm_split_k(const MatRef& a, const MatRef& b, const MatRef& c, float alpha, float beta, bool bf16) {
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
                                                                                            bf16, scratch.data());
  LSB_CUDA_LAUNCHED();
  splitk_reduce_kernel<<<dim3(LSB_BLOCKS(M * N, kSplitThreads), static_cast<unsigned>(batch)), kSplitThreads>>>(
      scratch.data(), blocks, c, M, N, alpha, beta);
  LSB_CUDA_LAUNCHED();
}

// The bf16 staging buffers of the two operands (tracked, grown to the largest request, kept until the
// run leaves bf16).
std::mutex staging_mu;
Tensor& staging(int which) {
  static Tensor buffers[2];
  return buffers[which];
}

// One operand rounded to bf16 and packed: its distinct matrices (a batch dimension of stride 0 is
// staged once) one after another, each row-major when the view has a unit column stride, else
// column-major. `view` describes the packed copy as a MatRef over it (strides in elements; data unused),
// `stride[s]` the packed stride of batch dimension s (0 where the view's is 0).
struct StagedOperand {
  const __nv_bfloat16* data = nullptr;
  MatRef view;
  long long stride[2] = {0, 0};
};

__global__ void stage_bf16_kernel(MatRef m, std::int64_t n0, std::int64_t n1, bool row_major, __nv_bfloat16* out) {
  const std::int64_t per = m.rows * m.cols;
  const std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (idx >= n0 * n1 * per) return;
  const std::int64_t e = idx % per, bb = idx / per, b0 = bb / n1, b1 = bb % n1;
  const std::int64_t i = row_major ? e / m.cols : e % m.rows, j = row_major ? e % m.cols : e / m.rows;
  out[idx] = __float2bfloat16_rn(m.data[b0 * m.bstride[0] + b1 * m.bstride[1] + i * m.rs + j * m.cs]);
}

StagedOperand stage_bf16(int which, const MatRef& m) {
  const std::int64_t n0 = m.bstride[0] == 0 ? 1 : m.batch[0], n1 = m.bstride[1] == 0 ? 1 : m.batch[1];
  const std::int64_t per = m.rows * m.cols, count = n0 * n1 * per;
  const bool row_major = m.cs == 1 || m.rs != 1 || m.rows == 1;
  Tensor& buf = staging(which);
  if (buf.numel() * 2 < count) {
    buf = Tensor();
    buf = Tensor({(count + 1) / 2}, MemCategory::workspace, "bf16 staging of a product's operand", Device::cuda);
  }
  auto* out = reinterpret_cast<__nv_bfloat16*>(buf.data());
  stage_bf16_kernel<<<LSB_BLOCKS(count, kSplitThreads), kSplitThreads>>>(m, n0, n1, row_major, out);
  LSB_CUDA_LAUNCHED();
  StagedOperand s;
  s.data = out;
  s.view = m;
  s.view.rs = row_major ? m.cols : 1;
  s.view.cs = row_major ? 1 : m.rows;
  s.stride[1] = n1 > 1 ? per : 0;
  s.stride[0] = n0 > 1 ? n1 * per : 0;
  return s;
}

// As the fp32 path of gemm below, on staged operands: cublasGemmStridedBatchedEx, bf16 in, fp32 out.
void gemm_bf16(const MatRef& a_in, const MatRef& b_in, const MatRef& c, float alpha, float beta) {
  const std::lock_guard<std::mutex> lock(staging_mu);
  const StagedOperand a = stage_bf16(0, a_in), b = stage_bf16(1, b_in);
  const long long M = c.rows, N = c.cols, K = a.view.cols;
  const ColMajorOperand A = transposed_operand(a.view), B = transposed_operand(b.view);
  const BatchPlan plan = batch_plan(c);
  for (int i = 0; i < plan.outer; ++i) {
    const __nv_bfloat16* pa = a.data + i * a.stride[plan.o];
    const __nv_bfloat16* pb = b.data + i * b.stride[plan.o];
    float* pc = c.data + i * c.bstride[plan.o];
    LSB_CUBLAS_CHECK(cublas().gemm_strided_batched_ex(
        bf16_handle(), B.op, A.op, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, pb,
        CUDA_R_16BF, static_cast<int>(B.ld), b.stride[plan.s], pa, CUDA_R_16BF, static_cast<int>(A.ld),
        a.stride[plan.s], &beta, pc, CUDA_R_32F, static_cast<int>(plan.ldc), c.bstride[plan.s], plan.count,
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace

void release_bf16_staging() {
  const std::lock_guard<std::mutex> lock(staging_mu);
  staging(0) = Tensor();
  staging(1) = Tensor();
}

void gemm(const MatRef& a_in, const MatRef& b_in, const MatRef& c_in, float alpha, float beta) {
  MatRef a = a_in, b = b_in, c = c_in;
  if (c.cs != 1) {  // a column-major output: C^T = B^T A^T with a row-major C^T
    c = c_in.t();
    a = b_in.t();
    b = a_in.t();
  }
  if (a.rows != c.rows || b.cols != c.cols || a.cols != b.rows)
    throw std::logic_error("cuda::gemm: shapes do not match");
  merge_batch_dims(a, b, c);  // one call for the whole batch where the strides allow it
  const long long M = c.rows, N = c.cols, K = a.cols;
  if (M == 0 || N == 0) return;
  const bool bf16 = matmul_precision() == Precision::bf16;
  if (use_split_k(M, N, K)) return gemm_split_k(a, b, c, alpha, beta, bf16);
  if (bf16) return gemm_bf16(a, b, c, alpha, beta);
  const ColMajorOperand A = transposed_operand(a), B = transposed_operand(b);
  const BatchPlan plan = batch_plan(c);
  for (int i = 0; i < plan.outer; ++i) {
    const float* pa = a.data + i * a.bstride[plan.o];
    const float* pb = b.data + i * b.bstride[plan.o];
    float* pc = c.data + i * c.bstride[plan.o];
    LSB_CUBLAS_CHECK(cublas().sgemm_strided_batched(
        handle(), B.op, A.op, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &alpha, pb,
        static_cast<int>(B.ld), b.bstride[plan.s], pa, static_cast<int>(A.ld), a.bstride[plan.s], &beta, pc,
        static_cast<int>(plan.ldc), c.bstride[plan.s], plan.count));
  }
}

std::string cublas_problem() { return cublas_library().lib.problem; }

std::string cublas_version() {
  if (device_count() == 0) return "";  // no GPU here: nothing would use it, so it is not opened to be named
  const Cublas& api = cublas_library();
  if (!api.lib.problem.empty()) return "";
  int major = 0, minor = 0, patch = 0;
  api.get_property(MAJOR_VERSION, &major);
  api.get_property(MINOR_VERSION, &minor);
  api.get_property(PATCH_LEVEL, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace lsb::cuda
