#include "nn/device_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "nn/cuda/device.hpp"
#include "nn/ops.hpp"
#include "nn/profile.hpp"
#include "nn/random.hpp"

#if LSBENCH_HAVE_CUDA
#include "nn/cuda/kernels.hpp"
#include "nn/cuda/train_kernels.hpp"
// On the GPU: the kernel of the same name and arguments.
#define LSB_ON_CUDA(dev, call) \
  if ((dev) == Device::cuda) return cuda::call
#else
#define LSB_ON_CUDA(dev, call) \
  if ((dev) == Device::cuda) throw std::logic_error("device_ops: a CUDA step in a build without CUDA")
#endif

namespace lsb::device_ops {
namespace {

// Element loops shorter than this stay on one thread (the fork would cost more than the loop).
constexpr std::int64_t kParallelFrom = 65536;

// GELU (erf form) and its derivative with the vectorisable erf and exp of nn/ops.hpp.
float gelu(float x) { return 0.5f * x * (1.0f + fast_erf(x * 0.70710678f)); }
float gelu_grad(float x) {
  return 0.5f * (1.0f + fast_erf(x * 0.70710678f)) + x * 0.39894228f * fast_exp(-0.5f * x * x);
}

}  // namespace

void make_rows_by_id(const std::int32_t* ids, std::int64_t rows, std::int64_t vocab,
                     std::vector<std::int32_t>& rows_by_id, std::vector<std::int64_t>& starts) {
  starts.assign(static_cast<std::size_t>(vocab + 2), 0);
  for (std::int64_t r = 0; r < rows; ++r) ++starts[static_cast<std::size_t>(ids[r] + 2)];
  for (std::int64_t g = 1; g < vocab + 2; ++g) starts[g] += starts[g - 1];
  std::vector<std::int64_t> next(starts.begin(), starts.end() - 1);
  rows_by_id.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) rows_by_id[next[ids[r] + 1]++] = static_cast<std::int32_t>(r);
}

void linear_forward(Device dev, const float* x, std::int64_t rows, std::int64_t in, const float* W, const float* b,
                    std::int64_t out, float* y) {
  LSB_PROFILE("linear forward");
  LSB_ON_CUDA(dev, linear_forward(x, rows, in, W, b, out, y));
  lsb::linear_forward(x, rows, in, W, b, out, y);
}

void linear_backward(Device dev, const float* dy, const float* x, std::int64_t rows, std::int64_t in, const float* W,
                     std::int64_t out, float* dW, float* db, float* dx, bool accumulate_dx) {
  LSB_PROFILE("linear backward");
  LSB_ON_CUDA(dev, linear_backward(dy, x, rows, in, W, out, dW, db, dx, accumulate_dx));
  lsb::linear_backward(dy, x, rows, in, W, out, dW, db, dx, accumulate_dx);
}

void layernorm_forward(Device dev, const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                       const float* beta, float* y, float* mean, float* rstd) {
  LSB_PROFILE("layernorm forward");
  LSB_ON_CUDA(dev, layernorm_forward(x, rows, width, gamma, beta, y, mean, rstd));
  lsb::layernorm_forward(x, rows, width, gamma, beta, y, mean, rstd);
}

void layernorm_backward(Device dev, const float* dy, const float* x, std::int64_t rows, std::int64_t width,
                        const float* gamma, const float* mean, const float* rstd, float* dx, float* dgamma,
                        float* dbeta, bool accumulate_dx) {
  LSB_PROFILE("layernorm backward");
  LSB_ON_CUDA(dev, layernorm_backward(dy, x, rows, width, gamma, mean, rstd, dx, dgamma, dbeta, accumulate_dx));
  lsb::layernorm_backward(dy, x, rows, width, gamma, mean, rstd, dx, dgamma, dbeta, accumulate_dx);
}

void embedding_forward(Device dev, const std::int32_t* ids, const float* tok_emb, const float* pos_emb,
                       const float* cls, std::int64_t rows, std::int64_t N, std::int64_t D, float* x) {
  LSB_PROFILE("embedding forward");
  LSB_ON_CUDA(dev, embedding_forward(ids, tok_emb, pos_emb, cls, rows, N, D, x));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* e = ids[r] < 0 ? cls : tok_emb + ids[r] * D;
    const float* pe = pos_emb + (r % N) * D;
    for (std::int64_t c = 0; c < D; ++c) x[r * D + c] = e[c] + pe[c];
  }
}

void embedding_backward(Device dev, const float* dx, const std::int32_t* rows_by_id, const std::int64_t* starts,
                        std::int64_t vocab, std::int64_t rows, std::int64_t N, std::int64_t D, float* dtok,
                        float* dpos, float* dcls) {
  LSB_PROFILE("embedding backward");
  LSB_ON_CUDA(dev, embedding_backward(dx, rows_by_id, starts, vocab, rows, N, D, dtok, dpos, dcls));
  for (std::int64_t g = 0; g < vocab + 1; ++g) {  // group 0: the cls rows; group g: id g - 1
    float* de = g == 0 ? dcls : dtok + (g - 1) * D;
    if (!de) continue;
    for (std::int64_t k = starts[g]; k < starts[g + 1]; ++k)
      for (std::int64_t c = 0; c < D; ++c) de[c] += dx[rows_by_id[k] * D + c];
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < D; ++c) dpos[(r % N) * D + c] += dx[r * D + c];
}

void gelu_forward(Device dev, const float* m, std::int64_t count, float* g) {
  LSB_PROFILE("gelu forward");
  LSB_ON_CUDA(dev, gelu_forward(m, count, g));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) g[i] = gelu(m[i]);
}

void gelu_backward(Device dev, const float* m, std::int64_t count, float* d) {
  LSB_PROFILE("gelu backward");
  LSB_ON_CUDA(dev, gelu_backward(m, count, d));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) d[i] *= gelu_grad(m[i]);
}

void add(Device dev, const float* a, const float* b, std::int64_t count, float* out) {
  LSB_PROFILE("add");
  LSB_ON_CUDA(dev, add(a, b, count, out));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
}

void multiply(Device dev, float* v, const float* mask, std::int64_t count) {
  LSB_PROFILE("multiply");
  LSB_ON_CUDA(dev, multiply(v, mask, count));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) v[i] *= mask[i];
}

void multiply_into(Device dev, const float* d, const float* mask, std::int64_t count, float* out) {
  LSB_PROFILE("multiply into");
  LSB_ON_CUDA(dev, multiply_into(d, mask, count, out));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) out[i] = d[i] * mask[i];
}

void scale(Device dev, float* p, std::int64_t count, float factor) {
  LSB_PROFILE("scale");
  LSB_ON_CUDA(dev, scale(p, count, factor));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) p[i] *= factor;
}

void dropout_forward(Device dev, std::uint64_t seed, float keep, float* v, float* mask, std::int64_t count) {
  LSB_PROFILE("dropout forward");
  LSB_ON_CUDA(dev, dropout_forward(seed, keep, v, mask, count));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) {
    mask[i] = dropout_factor(seed, static_cast<std::uint64_t>(i), keep);
    v[i] *= mask[i];
  }
}

void copy(Device dev, const float* from, std::int64_t count, float* to) {
  LSB_PROFILE("copy");
  if (dev == Device::cuda) return cuda::copy(to, from, sizeof(float) * static_cast<std::size_t>(count));
  std::memcpy(to, from, sizeof(float) * static_cast<std::size_t>(count));
}

void set_bytes(Device dev, void* p, int byte, std::size_t bytes) {
  LSB_PROFILE("set bytes");
  if (dev == Device::cuda) return cuda::device_memset(p, byte, bytes);
  std::memset(p, byte, bytes);
}

void zero_masked_rows(Device dev, float* t, const std::uint8_t* mask, std::int64_t rows, std::int64_t cols) {
  LSB_PROFILE("zero masked rows");
  LSB_ON_CUDA(dev, zero_masked_rows(t, mask, rows, cols));
  for (std::int64_t r = 0; r < rows; ++r)
    if (!mask[r]) std::memset(t + r * cols, 0, static_cast<std::size_t>(cols) * sizeof(float));
}

void mean_pool_forward(Device dev, const float* xf, const std::uint8_t* mask, std::int64_t seqs, std::int64_t N,
                       std::int64_t D, float* pooled, float* counts, float divisor) {
  LSB_PROFILE("mean pool forward");
  LSB_ON_CUDA(dev, mean_pool_forward(xf, mask, seqs, N, D, pooled, counts, divisor));
  for (std::int64_t s = 0; s < seqs; ++s) {
    float* out = pooled + s * D;
    std::fill(out, out + D, 0.0f);
    std::int64_t count = 0;
    for (std::int64_t t = 0; t < N; ++t)
      if (mask[s * N + t]) {
        ++count;
        for (std::int64_t c = 0; c < D; ++c) out[c] += xf[(s * N + t) * D + c];
      }
    counts[s] = divisor > 0.0f ? divisor : static_cast<float>(count);
    if (count > 0)
      for (std::int64_t c = 0; c < D; ++c) out[c] /= counts[s];
  }
}

void mean_pool_backward(Device dev, const float* dpooled, const std::uint8_t* mask, const float* counts,
                        std::int64_t seqs, std::int64_t N, std::int64_t D, float* dxf) {
  LSB_PROFILE("mean pool backward");
  LSB_ON_CUDA(dev, mean_pool_backward(dpooled, mask, counts, seqs, N, D, dxf));
  for (std::int64_t s = 0; s < seqs; ++s)
    for (std::int64_t t = 0; t < N; ++t)
      for (std::int64_t c = 0; c < D; ++c)
        dxf[(s * N + t) * D + c] = mask[s * N + t] ? dpooled[s * D + c] / counts[s] : 0.0f;
}

void cls_pool_forward(Device dev, const float* xf, std::int64_t seqs, std::int64_t N, std::int64_t D, float* pooled) {
  LSB_PROFILE("cls pool forward");
  LSB_ON_CUDA(dev, cls_pool_forward(xf, seqs, N, D, pooled));
  for (std::int64_t s = 0; s < seqs; ++s) std::memcpy(pooled + s * D, xf + s * N * D, sizeof(float) * D);
}

void cls_pool_backward(Device dev, const float* dpooled, std::int64_t seqs, std::int64_t N, std::int64_t D,
                       float* dxf) {
  LSB_PROFILE("cls pool backward");
  LSB_ON_CUDA(dev, cls_pool_backward(dpooled, seqs, N, D, dxf));
  std::fill(dxf, dxf + seqs * N * D, 0.0f);
  for (std::int64_t s = 0; s < seqs; ++s) std::memcpy(dxf + s * N * D, dpooled + s * D, sizeof(float) * D);
}

void pair_features_forward(Device dev, const float* pooled, std::int64_t b, std::int64_t D, float* features) {
  LSB_PROFILE("pair features forward");
  LSB_ON_CUDA(dev, pair_features_forward(pooled, b, D, features));
  for (std::int64_t i = 0; i < b; ++i) {
    const float* u = pooled + i * D;
    const float* v = pooled + (b + i) * D;
    float* f = features + i * 4 * D;
    for (std::int64_t c = 0; c < D; ++c) {
      f[c] = u[c];
      f[D + c] = v[c];
      f[2 * D + c] = u[c] * v[c];
      f[3 * D + c] = u[c] - v[c];
    }
  }
}

void pair_features_backward(Device dev, const float* pooled, const float* dfeatures, std::int64_t b, std::int64_t D,
                            float* dpooled) {
  LSB_PROFILE("pair features backward");
  LSB_ON_CUDA(dev, pair_features_backward(pooled, dfeatures, b, D, dpooled));
  for (std::int64_t i = 0; i < b; ++i) {
    const float* u = pooled + i * D;
    const float* v = pooled + (b + i) * D;
    const float* df = dfeatures + i * 4 * D;
    for (std::int64_t c = 0; c < D; ++c) {
      dpooled[i * D + c] = df[c] + v[c] * df[2 * D + c] + df[3 * D + c];
      dpooled[(b + i) * D + c] = df[D + c] + u[c] * df[2 * D + c] - df[3 * D + c];
    }
  }
}

void relu_forward(Device dev, const float* pre, std::int64_t count, float* h) {
  LSB_PROFILE("relu forward");
  LSB_ON_CUDA(dev, relu_forward(pre, count, h));
  for (std::int64_t i = 0; i < count; ++i) h[i] = std::max(pre[i], 0.0f);
}

void relu_backward(Device dev, const float* pre, std::int64_t count, float* d) {
  LSB_PROFILE("relu backward");
  LSB_ON_CUDA(dev, relu_backward(pre, count, d));
  for (std::int64_t i = 0; i < count; ++i)
    if (pre[i] <= 0.0f) d[i] = 0.0f;
}

void softmax_cross_entropy(Device dev, const float* logits, const int* labels, std::int64_t b, std::int64_t C,
                           float* probs, double* loss) {
  LSB_PROFILE("softmax cross entropy");
  LSB_ON_CUDA(dev, softmax_cross_entropy(logits, labels, b, C, probs, loss));
#pragma omp parallel for schedule(static) if (b * C > kParallelFrom)
  for (std::int64_t i = 0; i < b; ++i) {
    const float* z = logits + i * C;
    float mx = z[0];
    for (std::int64_t k = 1; k < C; ++k) mx = std::max(mx, z[k]);
    double sum = 0;
    for (std::int64_t k = 0; k < C; ++k) sum += std::exp(static_cast<double>(z[k] - mx));
    for (std::int64_t k = 0; k < C; ++k) probs[i * C + k] = static_cast<float>(std::exp(double(z[k] - mx)) / sum);
    loss[i] = labels[i] < 0 ? 0.0 : std::log(sum) + mx - z[labels[i]];
  }
}

void cross_entropy_backward(Device dev, const float* probs, const int* labels, std::int64_t b, std::int64_t C,
                            float divisor, float* dlogits) {
  LSB_PROFILE("cross entropy backward");
  LSB_ON_CUDA(dev, cross_entropy_backward(probs, labels, b, C, divisor, dlogits));
#pragma omp parallel for schedule(static) if (b * C > kParallelFrom)
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t k = 0; k < C; ++k)
      dlogits[i * C + k] = labels[i] < 0 ? 0.0f : (probs[i * C + k] - (k == labels[i] ? 1.0f : 0.0f)) / divisor;
}

void adamw_update(Device dev, float* p, const float* g, float* m, float* v, std::int64_t count, float beta1,
                  float beta2, float decay, float step_size, float inv_sqrt_c2, float eps) {
  LSB_PROFILE("adamw update");
  LSB_ON_CUDA(dev, adamw_update(p, g, m, v, count, beta1, beta2, decay, step_size, inv_sqrt_c2, eps));
#pragma omp parallel for simd schedule(static) if (count > kParallelFrom)
  for (std::int64_t i = 0; i < count; ++i) {
    m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
    v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
    // Decay uses the parameter before this step's update, as torch.optim.AdamW.
    p[i] -= decay * p[i] + step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_c2 + eps);
  }
}

double sum_of_squares(Device dev, const std::vector<std::pair<const float*, std::int64_t>>& tensors) {
  LSB_PROFILE("sum of squares");
  LSB_ON_CUDA(dev, sum_of_squares(tensors));
  double ss = 0;
  for (const auto& [x, count] : tensors)
    for (std::int64_t i = 0; i < count; ++i) ss += static_cast<double>(x[i]) * x[i];
  return ss;
}

}  // namespace lsb::device_ops
