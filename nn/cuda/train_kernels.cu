#include "nn/cuda/train_kernels.hpp"

#include <cmath>
#include <vector>

#include "nn/cuda/check.cuh"
#include "nn/cuda/device.hpp"
#include "nn/memory.hpp"
#include "nn/random.hpp"
#include "nn/tensor.hpp"

namespace lsb::cuda {
namespace {

constexpr int kThreads = 256;

// One thread per element i < count.
#define LSB_ELEMENT_INDEX(count)                                              \
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; \
  if (i >= (count)) return

__global__ void embedding_forward_kernel(const std::int32_t* ids, const float* tok, const float* pos,
                                         const float* cls, std::int64_t rows, std::int64_t N, std::int64_t D,
                                         float* x) {
  LSB_ELEMENT_INDEX(rows * D);
  const std::int64_t r = i / D, c = i % D;
  const std::int32_t id = ids[r];
  x[i] = (id < 0 ? cls[c] : tok[std::int64_t(id) * D + c]) + pos[(r % N) * D + c];
}

// One thread per (group, column): the group's rows in the host's order.
__global__ void embedding_token_grad_kernel(const float* dx, const std::int32_t* rows_by_id,
                                            const std::int64_t* starts, std::int64_t groups, std::int64_t D,
                                            float* dtok, float* dcls) {
  LSB_ELEMENT_INDEX(groups * D);
  const std::int64_t g = i / D, c = i % D;
  float s = 0;
  for (std::int64_t k = starts[g]; k < starts[g + 1]; ++k) s += dx[std::int64_t(rows_by_id[k]) * D + c];
  if (g == 0) {
    if (dcls) dcls[c] += s;
  } else {
    dtok[(g - 1) * D + c] += s;
  }
}

// One thread per (position, column): the sum over sequences in order.
__global__ void embedding_position_grad_kernel(const float* dx, std::int64_t seqs, std::int64_t N, std::int64_t D,
                                               float* dpos) {
  LSB_ELEMENT_INDEX(N * D);
  const std::int64_t t = i / D, c = i % D;
  float s = 0;
  for (std::int64_t q = 0; q < seqs; ++q) s += dx[(q * N + t) * D + c];
  dpos[i] += s;
}

__global__ void dropout_forward_kernel(std::uint64_t seed, float keep, float* v, float* mask, std::int64_t count) {
  LSB_ELEMENT_INDEX(count);
  mask[i] = dropout_factor(seed, static_cast<std::uint64_t>(i), keep);
  v[i] *= mask[i];
}

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678f)); }
__device__ __forceinline__ float gelu_grad(float x) {
  return 0.5f * (1.0f + erff(x * 0.70710678f)) + x * 0.39894228f * expf(-0.5f * x * x);
}

__global__ void gelu_forward_kernel(const float* m, std::int64_t count, float* g) {
  LSB_ELEMENT_INDEX(count);
  g[i] = gelu(m[i]);
}
__global__ void gelu_backward_kernel(const float* m, std::int64_t count, float* d) {
  LSB_ELEMENT_INDEX(count);
  d[i] *= gelu_grad(m[i]);
}
__global__ void add_kernel(const float* a, const float* b, std::int64_t count, float* out) {
  LSB_ELEMENT_INDEX(count);
  out[i] = a[i] + b[i];
}
__global__ void multiply_into_kernel(const float* d, const float* mask, std::int64_t count, float* out) {
  LSB_ELEMENT_INDEX(count);
  out[i] = d[i] * mask[i];
}
__global__ void relu_forward_kernel(const float* pre, std::int64_t count, float* h) {
  LSB_ELEMENT_INDEX(count);
  h[i] = fmaxf(pre[i], 0.0f);
}
__global__ void relu_backward_kernel(const float* pre, std::int64_t count, float* d) {
  LSB_ELEMENT_INDEX(count);
  if (pre[i] <= 0.0f) d[i] = 0.0f;
}

// One thread per (sequence, column); counts written by column 0's thread.
__global__ void mean_pool_forward_kernel(const float* xf, const std::uint8_t* mask, std::int64_t seqs, std::int64_t N,
                                         std::int64_t D, float* pooled, float* counts, float divisor) {
  LSB_ELEMENT_INDEX(seqs * D);
  const std::int64_t q = i / D, c = i % D;
  float s = 0;
  std::int64_t count = 0;
  for (std::int64_t t = 0; t < N; ++t)
    if (mask[q * N + t]) {
      ++count;
      s += xf[(q * N + t) * D + c];
    }
  const float by = divisor > 0.0f ? divisor : static_cast<float>(count);
  pooled[i] = count > 0 ? s / by : 0.0f;
  if (c == 0) counts[q] = by;
}

__global__ void mean_pool_backward_kernel(const float* dpooled, const std::uint8_t* mask, const float* counts,
                                          std::int64_t seqs, std::int64_t N, std::int64_t D, float* dxf) {
  LSB_ELEMENT_INDEX(seqs * N * D);
  const std::int64_t row = i / D, c = i % D, q = row / N;
  dxf[i] = mask[row] ? dpooled[q * D + c] / counts[q] : 0.0f;
}

__global__ void cls_pool_forward_kernel(const float* xf, std::int64_t seqs, std::int64_t N, std::int64_t D,
                                        float* pooled) {
  LSB_ELEMENT_INDEX(seqs * D);
  pooled[i] = xf[(i / D) * N * D + i % D];
}
__global__ void cls_pool_backward_kernel(const float* dpooled, std::int64_t seqs, std::int64_t N, std::int64_t D,
                                         float* dxf) {
  LSB_ELEMENT_INDEX(seqs * N * D);
  const std::int64_t row = i / D, c = i % D;
  dxf[i] = row % N == 0 ? dpooled[(row / N) * D + c] : 0.0f;
}

__global__ void pair_features_forward_kernel(const float* pooled, std::int64_t b, std::int64_t D, float* f) {
  LSB_ELEMENT_INDEX(b * D);
  const std::int64_t e = i / D, c = i % D;
  const float u = pooled[e * D + c], v = pooled[(b + e) * D + c];
  float* row = f + e * 4 * D;
  row[c] = u;
  row[D + c] = v;
  row[2 * D + c] = u * v;
  row[3 * D + c] = u - v;
}
__global__ void pair_features_backward_kernel(const float* pooled, const float* df, std::int64_t b, std::int64_t D,
                                              float* dpooled) {
  LSB_ELEMENT_INDEX(b * D);
  const std::int64_t e = i / D, c = i % D;
  const float u = pooled[e * D + c], v = pooled[(b + e) * D + c];
  const float* d = df + e * 4 * D;
  dpooled[e * D + c] = d[c] + v * d[2 * D + c] + d[3 * D + c];
  dpooled[(b + e) * D + c] = d[D + c] + u * d[2 * D + c] - d[3 * D + c];
}

// One thread per example (C is a handful of classes).
__global__ void softmax_cross_entropy_kernel(const float* logits, const int* labels, std::int64_t b, std::int64_t C,
                                             float* probs, double* loss) {
  LSB_ELEMENT_INDEX(b);
  const float* z = logits + i * C;
  float mx = z[0];
  for (std::int64_t k = 1; k < C; ++k) mx = fmaxf(mx, z[k]);
  double sum = 0;
  for (std::int64_t k = 0; k < C; ++k) sum += exp(static_cast<double>(z[k] - mx));
  for (std::int64_t k = 0; k < C; ++k) probs[i * C + k] = static_cast<float>(exp(static_cast<double>(z[k] - mx)) / sum);
  loss[i] = labels[i] < 0 ? 0.0 : log(sum) + mx - z[labels[i]];
}
__global__ void cross_entropy_backward_kernel(const float* probs, const int* labels, std::int64_t b, std::int64_t C,
                                              float divisor, float* dlogits) {
  LSB_ELEMENT_INDEX(b * C);
  const std::int64_t e = i / C, k = i % C;
  float d = probs[i];
  if (k == labels[e]) d -= 1.0f;
  dlogits[i] = labels[e] < 0 ? 0.0f : d / divisor;
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, std::int64_t count, float b1, float b2,
                             float decay, float step_size, float inv_sqrt_c2, float eps) {
  LSB_ELEMENT_INDEX(count);
  const float gi = g[i];
  const float mi = b1 * m[i] + (1.0f - b1) * gi, vi = b2 * v[i] + (1.0f - b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] -= decay * p[i] + step_size * mi / (sqrtf(vi) * inv_sqrt_c2 + eps);
}

// Sum of squares in two passes: fixed chunks per thread into partial (blocks * kThreads), then the
// host adds the partials in order.
constexpr std::int64_t kChunk = 4096;
__global__ void sum_of_squares_partial_kernel(const float* x, std::int64_t count, std::int64_t parts,
                                              double* partial) {
  const std::int64_t t = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (t >= parts) return;
  double s = 0;
  for (std::int64_t i = t * kChunk; i < min(count, (t + 1) * kChunk); ++i) s += static_cast<double>(x[i]) * x[i];
  partial[t] = s;
}

#undef LSB_ELEMENT_INDEX

unsigned blocks(std::int64_t count) { return LSB_BLOCKS(count, kThreads); }

}  // namespace

void embedding_forward(const std::int32_t* ids, const float* tok_emb, const float* pos_emb, const float* cls,
                       std::int64_t rows, std::int64_t N, std::int64_t D, float* x) {
  if (rows * D == 0) return;
  embedding_forward_kernel<<<blocks(rows * D), kThreads>>>(ids, tok_emb, pos_emb, cls, rows, N, D, x);
  LSB_CUDA_LAUNCHED();
}

void embedding_backward(const float* dx, const std::int32_t* rows_by_id, const std::int64_t* starts,
                        std::int64_t vocab, std::int64_t rows, std::int64_t N, std::int64_t D, float* dtok,
                        float* dpos, float* dcls) {
  if (rows * D == 0) return;
  embedding_token_grad_kernel<<<blocks((vocab + 1) * D), kThreads>>>(dx, rows_by_id, starts, vocab + 1, D, dtok,
                                                                      dcls);
  LSB_CUDA_LAUNCHED();
  embedding_position_grad_kernel<<<blocks(N * D), kThreads>>>(dx, rows / N, N, D, dpos);
  LSB_CUDA_LAUNCHED();
}

void gelu_forward(const float* m, std::int64_t count, float* g) {
  if (count == 0) return;
  gelu_forward_kernel<<<blocks(count), kThreads>>>(m, count, g);
  LSB_CUDA_LAUNCHED();
}
void gelu_backward(const float* m, std::int64_t count, float* d) {
  if (count == 0) return;
  gelu_backward_kernel<<<blocks(count), kThreads>>>(m, count, d);
  LSB_CUDA_LAUNCHED();
}
void add(const float* a, const float* b, std::int64_t count, float* out) {
  if (count == 0) return;
  add_kernel<<<blocks(count), kThreads>>>(a, b, count, out);
  LSB_CUDA_LAUNCHED();
}
void multiply(float* v, const float* mask, std::int64_t count) { multiply_into(v, mask, count, v); }
void dropout_forward(std::uint64_t seed, float keep, float* v, float* mask, std::int64_t count) {
  if (count == 0) return;
  dropout_forward_kernel<<<blocks(count), kThreads>>>(seed, keep, v, mask, count);
  LSB_CUDA_LAUNCHED();
}
void multiply_into(const float* d, const float* mask, std::int64_t count, float* out) {
  if (count == 0) return;
  multiply_into_kernel<<<blocks(count), kThreads>>>(d, mask, count, out);
  LSB_CUDA_LAUNCHED();
}

void mean_pool_forward(const float* xf, const std::uint8_t* mask, std::int64_t seqs, std::int64_t N, std::int64_t D,
                       float* pooled, float* counts, float divisor) {
  if (seqs * D == 0) return;
  mean_pool_forward_kernel<<<blocks(seqs * D), kThreads>>>(xf, mask, seqs, N, D, pooled, counts, divisor);
  LSB_CUDA_LAUNCHED();
}
void mean_pool_backward(const float* dpooled, const std::uint8_t* mask, const float* counts, std::int64_t seqs,
                        std::int64_t N, std::int64_t D, float* dxf) {
  if (seqs * N * D == 0) return;
  mean_pool_backward_kernel<<<blocks(seqs * N * D), kThreads>>>(dpooled, mask, counts, seqs, N, D, dxf);
  LSB_CUDA_LAUNCHED();
}
void cls_pool_forward(const float* xf, std::int64_t seqs, std::int64_t N, std::int64_t D, float* pooled) {
  if (seqs * D == 0) return;
  cls_pool_forward_kernel<<<blocks(seqs * D), kThreads>>>(xf, seqs, N, D, pooled);
  LSB_CUDA_LAUNCHED();
}
void cls_pool_backward(const float* dpooled, std::int64_t seqs, std::int64_t N, std::int64_t D, float* dxf) {
  if (seqs * N * D == 0) return;
  cls_pool_backward_kernel<<<blocks(seqs * N * D), kThreads>>>(dpooled, seqs, N, D, dxf);
  LSB_CUDA_LAUNCHED();
}
void pair_features_forward(const float* pooled, std::int64_t b, std::int64_t D, float* features) {
  if (b * D == 0) return;
  pair_features_forward_kernel<<<blocks(b * D), kThreads>>>(pooled, b, D, features);
  LSB_CUDA_LAUNCHED();
}
void pair_features_backward(const float* pooled, const float* dfeatures, std::int64_t b, std::int64_t D,
                            float* dpooled) {
  if (b * D == 0) return;
  pair_features_backward_kernel<<<blocks(b * D), kThreads>>>(pooled, dfeatures, b, D, dpooled);
  LSB_CUDA_LAUNCHED();
}

void relu_forward(const float* pre, std::int64_t count, float* h) {
  if (count == 0) return;
  relu_forward_kernel<<<blocks(count), kThreads>>>(pre, count, h);
  LSB_CUDA_LAUNCHED();
}
void relu_backward(const float* pre, std::int64_t count, float* d) {
  if (count == 0) return;
  relu_backward_kernel<<<blocks(count), kThreads>>>(pre, count, d);
  LSB_CUDA_LAUNCHED();
}

void softmax_cross_entropy(const float* logits, const int* labels, std::int64_t b, std::int64_t C, float* probs,
                           double* loss) {
  if (b == 0) return;
  softmax_cross_entropy_kernel<<<blocks(b), kThreads>>>(logits, labels, b, C, probs, loss);
  LSB_CUDA_LAUNCHED();
}
void cross_entropy_backward(const float* probs, const int* labels, std::int64_t b, std::int64_t C, float divisor,
                            float* dlogits) {
  if (b * C == 0) return;
  cross_entropy_backward_kernel<<<blocks(b * C), kThreads>>>(probs, labels, b, C, divisor, dlogits);
  LSB_CUDA_LAUNCHED();
}

void adamw_update(float* p, const float* g, float* m, float* v, std::int64_t count, float beta1, float beta2,
                  float decay, float step_size, float inv_sqrt_c2, float eps) {
  if (count == 0) return;
  adamw_kernel<<<blocks(count), kThreads>>>(p, g, m, v, count, beta1, beta2, decay, step_size, inv_sqrt_c2, eps);
  LSB_CUDA_LAUNCHED();
}

double sum_of_squares(const std::vector<std::pair<const float*, std::int64_t>>& tensors) {
  const std::size_t count = tensors.size();
  std::vector<std::int64_t> first(count + 1, 0);  // where each tensor's partial sums start
  for (std::size_t k = 0; k < count; ++k) first[k + 1] = first[k] + (tensors[k].second + kChunk - 1) / kChunk;
  if (first[count] == 0) return 0.0;
  Tensor partial({2 * first[count]}, MemCategory::workspace, "sum-of-squares partials (double)", Device::cuda);
  auto* dp = reinterpret_cast<double*>(partial.data());
  for (std::size_t k = 0; k < count; ++k) {
    const std::int64_t parts = first[k + 1] - first[k];
    if (parts == 0) continue;
    sum_of_squares_partial_kernel<<<blocks(parts), kThreads>>>(tensors[k].first, tensors[k].second, parts,
                                                               dp + first[k]);
    LSB_CUDA_LAUNCHED();
  }
  std::vector<double> host(static_cast<std::size_t>(first[count]));
  copy(host.data(), dp, host.size() * sizeof(double));
  double s = 0;
  for (double v : host) s += v;
  return s;
}

}  // namespace lsb::cuda
