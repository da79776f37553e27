#include "nn/ops.hpp"

#include <cmath>

namespace lsb {

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
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* row = dy + r * out;
#pragma omp simd
      for (std::int64_t j = 0; j < out; ++j) db[j] += row[j];
    }
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
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
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
    if (accumulate_dx) {
#pragma omp simd
      for (std::int64_t j = 0; j < width; ++j) dxr[j] += rs * (dyr[j] * gamma[j] - sg - (xr[j] - mu) * rs * sgx);
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < width; ++j) dxr[j] = rs * (dyr[j] * gamma[j] - sg - (xr[j] - mu) * rs * sgx);
    }
  }
  // Parameter gradients: a serial pass over rows, vectorised over the width (O(rows * width)).
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    const float* dyr = dy + r * width;
    const float mu = mean[r], rs = rstd[r];
#pragma omp simd
    for (std::int64_t j = 0; j < width; ++j) {
      dgamma[j] += dyr[j] * (xr[j] - mu) * rs;
      dbeta[j] += dyr[j];
    }
  }
}

}  // namespace lsb
