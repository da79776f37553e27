#include "nn/ops.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lsb {

namespace {

// Sums over rows (bias and LayerNorm parameter gradients) in parallel and deterministically for any
// thread count: the rows are cut into a number of chunks that depends on `rows` only, each chunk sums
// into its own slot of `slots` partial rows, and the chunks' sums are then added in chunk order.
struct RowChunks {
  std::int64_t count;
  explicit RowChunks(std::int64_t rows) : count(std::clamp<std::int64_t>(rows / 512, 1, 64)) {}
  std::int64_t begin(std::int64_t rows, std::int64_t c) const { return rows * c / count; }
};

// The partial sums' buffer: count * width floats, zeroed; kept by the calling thread, so a step
// allocates nothing once the largest width has been seen.
float* zeroed_partials(std::int64_t floats) {
  thread_local std::vector<float> partial;
  partial.assign(static_cast<std::size_t>(floats), 0.0f);
  return partial.data();
}

// sum[j] += the chunks' partial rows, in chunk order.
void add_partials(const float* partial, std::int64_t count, std::int64_t width, float* sum) {
  for (std::int64_t c = 0; c < count; ++c) {
    const float* pc = partial + c * width;
#pragma omp simd
    for (std::int64_t j = 0; j < width; ++j) sum[j] += pc[j];
  }
}

}  // namespace

void linear_forward(const float* x, std::int64_t rows, std::int64_t in, const float* W, const float* b,
                    std::int64_t out, float* y) {
  matmul(MatRef::rowmajor(x, rows, in, in), MatRef::rowmajor(W, out, in, in).t(), MatRef::rowmajor(y, rows, out, out),
         1.0f, 0.0f, b);
}

void linear_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t in, const float* W,
                     std::int64_t out, float* dW, float* db, float* dx, bool accumulate_dx) {
  const auto dY = MatRef::rowmajor(dy, rows, out, out);
  if (dW) matmul(dY.t(), MatRef::rowmajor(x, rows, in, in), MatRef::rowmajor(dW, out, in, in), 1.0f, 1.0f);
  if (db) {
    const RowChunks chunks(rows);
    float* partial = zeroed_partials(chunks.count * out);
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < chunks.count; ++c) {
      float* pc = partial + c * out;
      for (std::int64_t r = chunks.begin(rows, c); r < chunks.begin(rows, c + 1); ++r) {
        const float* row = dy + r * out;
#pragma omp simd
        for (std::int64_t j = 0; j < out; ++j) pc[j] += row[j];
      }
    }
    add_partials(partial, chunks.count, out, db);
  }
  if (dx)
    matmul(dY, MatRef::rowmajor(W, out, in, in), MatRef::rowmajor(dx, rows, in, in), 1.0f,
           accumulate_dx ? 1.0f : 0.0f);
}

void layernorm_forward(const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                       const float* beta, float* y, float* mean, float* rstd) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    float* yr = y + r * width;
    // Sums in double, vectorised (lanes summed at the end: the order is fixed for a given build).
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = 0; j < width; ++j) s += xr[j];
    const float mu = static_cast<float>(s / width);
    double v = 0;
#pragma omp simd reduction(+ : v)
    for (std::int64_t j = 0; j < width; ++j) v += double(xr[j] - mu) * double(xr[j] - mu);
    const float rs = static_cast<float>(1.0 / std::sqrt(v / width + kLayerNormEps));
#pragma omp simd
    for (std::int64_t j = 0; j < width; ++j) yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

void layernorm_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                        const float* mean, const float* rstd, float* dx, float* dgamma, float* dbeta,
                        bool accumulate_dx) {
  // xhat = (x - mu) * rstd; y = xhat * gamma + beta
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), with g = dy * gamma.
  // dgamma += sum over rows of dy * xhat, dbeta += sum of dy: in the same pass over the rows, per chunk.
  const RowChunks chunks(rows);
  float* partial = zeroed_partials(chunks.count * 2 * width);  // per chunk: dgamma's row, then dbeta's
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks.count; ++c) {
    float* pg = partial + c * 2 * width;
    float* pb = pg + width;
    for (std::int64_t r = chunks.begin(rows, c); r < chunks.begin(rows, c + 1); ++r) {
      const float* xr = x + r * width;
      const float* dyr = dy + r * width;
      float* dxr = dx + r * width;
      const float mu = mean[r], rs = rstd[r];
      float sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
      for (std::int64_t j = 0; j < width; ++j) {
        const float g = dyr[j] * gamma[j];
        sg += g;
        sgx += g * (xr[j] - mu) * rs;
      }
      sg /= static_cast<float>(width);
      sgx /= static_cast<float>(width);
#pragma omp simd
      for (std::int64_t j = 0; j < width; ++j) {
        const float xhat = (xr[j] - mu) * rs;
        // (a select, not a product with 0: dx may hold anything, NaN included, when not accumulated)
        dxr[j] = (accumulate_dx ? dxr[j] : 0.0f) + rs * (dyr[j] * gamma[j] - sg - xhat * sgx);
        pg[j] += dyr[j] * xhat;
        pb[j] += dyr[j];
      }
    }
  }
  for (std::int64_t c = 0; c < chunks.count; ++c) {
    const float* pg = partial + c * 2 * width;
#pragma omp simd
    for (std::int64_t j = 0; j < width; ++j) {
      dgamma[j] += pg[j];
      dbeta[j] += pg[width + j];
    }
  }
}

}  // namespace lsb
