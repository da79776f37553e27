// Row, column and element kernels. Reductions run in float like the CPU code except where the CPU
// code uses double (LayerNorm statistics), so both sides round alike. Deterministic: no atomics.
#include "nn/cuda/kernels.hpp"

#include <cmath>

#include "nn/cuda/blas.hpp"
#include "nn/cuda/check.cuh"
#include "nn/cuda/warp.cuh"
#include "nn/tensor.hpp"

namespace lsb::cuda {
namespace {

constexpr int kThreads = 256;

__device__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Block-wide reductions for blocks of kThreads threads; every thread gets the result.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* shared /* kThreads / 32 */) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();  // `shared` may still be read from a previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = shared[0];
  for (int i = 1; i < kThreads / 32; ++i) r = op(r, shared[i]);
  return r;
}
struct Add {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

__global__ void add_bias_kernel(float* y, const float* b, std::int64_t rows, std::int64_t cols) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i < rows * cols) y[i] += b[i % cols];
}

// Column sums in two passes, deterministic and parallel over rows: pass 1 sums chunks of kChunk
// rows per column into partial (chunks, cols); pass 2 adds the chunks in order to out[c].
constexpr std::int64_t kChunk = 64;

__global__ void column_sums_partial_kernel(const float* x, std::int64_t rows, std::int64_t cols, float* partial) {
  const std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x, chunk = blockIdx.y;
  if (c >= cols) return;
  const std::int64_t r1 = min(rows, (chunk + 1) * kChunk);
  float s = 0;
  for (std::int64_t r = chunk * kChunk; r < r1; ++r) s += x[r * cols + c];
  partial[chunk * cols + c] = s;
}

// LayerNorm's parameter gradients: partial sums of dy * xhat and of dy, (2, chunks, cols).
__global__ void layernorm_params_partial_kernel(const float* dy, const float* x, std::int64_t rows,
                                                std::int64_t width, const float* mean, const float* rstd,
                                                float* partial) {
  const std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x, chunk = blockIdx.y;
  if (c >= width) return;
  const std::int64_t r1 = min(rows, (chunk + 1) * kChunk);
  float sg = 0, sb = 0;
  for (std::int64_t r = chunk * kChunk; r < r1; ++r) {
    const float g = dy[r * width + c];
    sg += g * (x[r * width + c] - mean[r]) * rstd[r];
    sb += g;
  }
  partial[chunk * width + c] = sg;
  partial[(gridDim.y + chunk) * width + c] = sb;
}

__global__ void add_chunk_sums_kernel(const float* partial, std::int64_t chunks, std::int64_t cols, float* out) {
  const std::int64_t c = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  float s = 0;
  for (std::int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
  out[c] += s;
}

__global__ void scale_kernel(float* p, std::int64_t count, float f) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i < count) p[i] *= f;
}

__global__ void zero_masked_rows_kernel(float* t, const std::uint8_t* mask, std::int64_t rows, std::int64_t cols) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i < rows * cols && !mask[i / cols]) t[i] = 0.0f;
}

// One block per row.
__global__ void softmax_rows_kernel(float* s, const std::uint8_t* key_mask, std::int64_t nk,
                                    std::int64_t rows_per_example, std::int64_t causal_rows) {
  __shared__ float red[kThreads / 32];
  const std::int64_t row = blockIdx.x;
  float* x = s + row * nk;
  const std::uint8_t* m = key_mask ? key_mask + (row / rows_per_example) * nk : nullptr;
  // Causal: the row's query is row % causal_rows, and the keys after it get 0.
  const std::int64_t last = causal_rows > 0 ? row % causal_rows : nk - 1;
  float mx = -INFINITY;
  for (std::int64_t u = threadIdx.x; u < nk; u += blockDim.x)
    if ((!m || m[u]) && u <= last) mx = fmaxf(mx, x[u]);
  mx = block_reduce(mx, Max{}, red);
  if (mx == -INFINITY) {
    for (std::int64_t u = threadIdx.x; u < nk; u += blockDim.x) x[u] = 0.0f;
    return;
  }
  float sum = 0;
  for (std::int64_t u = threadIdx.x; u < nk; u += blockDim.x) {
    const float e = (!m || m[u]) && u <= last ? expf(x[u] - mx) : 0.0f;
    x[u] = e;
    sum += e;
  }
  sum = block_reduce(sum, Add{}, red);
  const float inv = 1.0f / sum;
  for (std::int64_t u = threadIdx.x; u < nk; u += blockDim.x) x[u] *= inv;
}

__global__ void softmax_backward_rows_kernel(const float* p, float* g, std::int64_t nk) {
  __shared__ float red[kThreads / 32];
  const std::int64_t row = blockIdx.x;
  const float* pr = p + row * nk;
  float* gr = g + row * nk;
  float dot = 0;
  for (std::int64_t u = threadIdx.x; u < nk; u += blockDim.x) dot += pr[u] * gr[u];
  dot = block_reduce(dot, Add{}, red);
  for (std::int64_t u = threadIdx.x; u < nk; u += blockDim.x) gr[u] = pr[u] * (gr[u] - dot);
}

// One warp per row; statistics in double as on the CPU.
__global__ void layernorm_forward_kernel(const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                                         const float* beta, float* y, float* mean, float* rstd) {
  const std::int64_t row = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * width;
  double s = 0;
  for (std::int64_t j = lane; j < width; j += 32) s += xr[j];
  const float mu = static_cast<float>(warp_sum_d(s) / width);
  double v = 0;
  for (std::int64_t j = lane; j < width; j += 32) v += double(xr[j] - mu) * double(xr[j] - mu);
  const float rs = static_cast<float>(1.0 / sqrt(warp_sum_d(v) / width + 1e-5f));
  float* yr = y + row * width;
  for (std::int64_t j = lane; j < width; j += 32) yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

__global__ void layernorm_backward_dx_kernel(const float* dy, const float* x, std::int64_t rows, std::int64_t width,
                                             const float* gamma, const float* mean, const float* rstd, float* dx,
                                             bool accumulate) {
  const std::int64_t row = blockIdx.x * std::int64_t(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * width;
  const float* dyr = dy + row * width;
  const float mu = mean[row], rs = rstd[row];
  float sg = 0, sgx = 0;
  for (std::int64_t j = lane; j < width; j += 32) {
    const float g = dyr[j] * gamma[j];
    sg += g;
    sgx += g * (xr[j] - mu) * rs;
  }
  sg = warp_sum(sg) / static_cast<float>(width);
  sgx = warp_sum(sgx) / static_cast<float>(width);
  float* dxr = dx + row * width;
  for (std::int64_t j = lane; j < width; j += 32) {
    const float v = rs * (dyr[j] * gamma[j] - sg - (xr[j] - mu) * rs * sgx);
    dxr[j] = accumulate ? dxr[j] + v : v;
  }
}

// One block per (example, column); threads stride down the rows.
__global__ void column_softmax_kernel(float* P, const std::uint8_t* mask, std::int64_t n, std::int64_t cols) {
  __shared__ float red[kThreads / 32];
  const std::int64_t bi = blockIdx.x / cols, c = blockIdx.x % cols;
  float* p = P + bi * n * cols + c;
  const std::uint8_t* m = mask + bi * n;
  float mx = -INFINITY;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x)
    if (m[t]) mx = fmaxf(mx, p[t * cols]);
  mx = block_reduce(mx, Max{}, red);
  float sum = 0;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    const float e = m[t] ? expf(p[t * cols] - mx) : 0.0f;
    p[t * cols] = e;
    sum += e;
  }
  sum = block_reduce(sum, Add{}, red);
  const float inv = sum > 0 ? 1.0f / sum : 0.0f;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) p[t * cols] *= inv;
}

__global__ void column_softmax_backward_kernel(const float* P, float* G, std::int64_t n, std::int64_t cols) {
  __shared__ float red[kThreads / 32];
  const std::int64_t bi = blockIdx.x / cols, c = blockIdx.x % cols;
  const float* p = P + bi * n * cols + c;
  float* g = G + bi * n * cols + c;
  float dot = 0;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) dot += p[t * cols] * g[t * cols];
  dot = block_reduce(dot, Add{}, red);
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) g[t * cols] = p[t * cols] * (g[t * cols] - dot);
}

// Device scratch for the partial sums, grown on demand and kept (tracked as workspace).
float* partial_sums(std::int64_t floats) {
  static Tensor scratch;
  if (scratch.numel() < floats) {
    scratch = Tensor();
    scratch = Tensor({floats}, MemCategory::workspace, "column-sum partials", Device::cuda);
  }
  return scratch.data();
}

std::int64_t chunks_of(std::int64_t rows) { return (rows + kChunk - 1) / kChunk; }

void column_sums(const float* x, std::int64_t rows, std::int64_t cols, float* out) {
  const std::int64_t chunks = chunks_of(rows);
  float* partial = partial_sums(chunks * cols);
  column_sums_partial_kernel<<<dim3(LSB_BLOCKS(cols, kThreads), static_cast<unsigned>(chunks)), kThreads>>>(
      x, rows, cols, partial);
  LSB_CUDA_LAUNCHED();
  add_chunk_sums_kernel<<<LSB_BLOCKS(cols, kThreads), kThreads>>>(partial, chunks, cols, out);
  LSB_CUDA_LAUNCHED();
}

}  // namespace

void linear_forward(const float* x, std::int64_t rows, std::int64_t in, const float* W, const float* b,
                    std::int64_t out, float* y) {
  gemm(MatRef::rowmajor(x, rows, in, in), MatRef::rowmajor(W, out, in, in).t(), MatRef::rowmajor(y, rows, out, out));
  if (b) {
    add_bias_kernel<<<LSB_BLOCKS(rows * out, kThreads), kThreads>>>(y, b, rows, out);
    LSB_CUDA_LAUNCHED();
  }
}

void linear_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t in, const float* W,
                     std::int64_t out, float* dW, float* db, float* dx, bool accumulate_dx) {
  const MatRef dY = MatRef::rowmajor(dy, rows, out, out);
  if (dW) gemm(dY.t(), MatRef::rowmajor(x, rows, in, in), MatRef::rowmajor(dW, out, in, in), 1.0f, 1.0f);
  if (db) {
    column_sums(dy, rows, out, db);
  }
  if (dx)
    gemm(dY, MatRef::rowmajor(W, out, in, in), MatRef::rowmajor(dx, rows, in, in), 1.0f,
           accumulate_dx ? 1.0f : 0.0f);
}

void scale(float* p, std::int64_t count, float factor) {
  if (count == 0) return;
  scale_kernel<<<LSB_BLOCKS(count, kThreads), kThreads>>>(p, count, factor);
  LSB_CUDA_LAUNCHED();
}

void zero_masked_rows(float* t, const std::uint8_t* mask, std::int64_t rows, std::int64_t cols) {
  if (rows * cols == 0) return;
  zero_masked_rows_kernel<<<LSB_BLOCKS(rows * cols, kThreads), kThreads>>>(t, mask, rows, cols);
  LSB_CUDA_LAUNCHED();
}

void softmax_rows(float* s, const std::uint8_t* key_mask, std::int64_t rows, std::int64_t nk,
                  std::int64_t rows_per_example, std::int64_t causal_rows) {
  if (rows == 0) return;
  softmax_rows_kernel<<<static_cast<unsigned>(rows), kThreads>>>(s, key_mask, nk, rows_per_example, causal_rows);
  LSB_CUDA_LAUNCHED();
}

void softmax_backward_rows(const float* p, float* g, std::int64_t rows, std::int64_t nk) {
  if (rows == 0) return;
  softmax_backward_rows_kernel<<<static_cast<unsigned>(rows), kThreads>>>(p, g, nk);
  LSB_CUDA_LAUNCHED();
}

void layernorm_forward(const float* x, std::int64_t rows, std::int64_t width, const float* gamma, const float* beta,
                       float* y, float* mean, float* rstd) {
  if (rows == 0) return;
  layernorm_forward_kernel<<<LSB_BLOCKS(rows, kThreads / 32), kThreads>>>(x, rows, width, gamma, beta, y, mean, rstd);
  LSB_CUDA_LAUNCHED();
}

void layernorm_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                        const float* mean, const float* rstd, float* dx, float* dgamma, float* dbeta,
                        bool accumulate_dx) {
  if (rows == 0) return;
  layernorm_backward_dx_kernel<<<LSB_BLOCKS(rows, kThreads / 32), kThreads>>>(dy, x, rows, width, gamma, mean, rstd,
                                                                              dx, accumulate_dx);
  LSB_CUDA_LAUNCHED();
  const std::int64_t chunks = chunks_of(rows);
  float* partial = partial_sums(2 * chunks * width);
  layernorm_params_partial_kernel<<<dim3(LSB_BLOCKS(width, kThreads), static_cast<unsigned>(chunks)), kThreads>>>(
      dy, x, rows, width, mean, rstd, partial);
  LSB_CUDA_LAUNCHED();
  add_chunk_sums_kernel<<<LSB_BLOCKS(width, kThreads), kThreads>>>(partial, chunks, width, dgamma);
  LSB_CUDA_LAUNCHED();
  add_chunk_sums_kernel<<<LSB_BLOCKS(width, kThreads), kThreads>>>(partial + chunks * width, chunks, width, dbeta);
  LSB_CUDA_LAUNCHED();
}

void column_softmax(float* P, const std::uint8_t* mask, std::int64_t b, std::int64_t n, std::int64_t cols) {
  if (b * cols == 0) return;
  column_softmax_kernel<<<static_cast<unsigned>(b * cols), kThreads>>>(P, mask, n, cols);
  LSB_CUDA_LAUNCHED();
}

void column_softmax_backward(const float* P, float* G, std::int64_t b, std::int64_t n, std::int64_t cols) {
  if (b * cols == 0) return;
  column_softmax_backward_kernel<<<static_cast<unsigned>(b * cols), kThreads>>>(P, G, n, cols);
  LSB_CUDA_LAUNCHED();
}

}  // namespace lsb::cuda
