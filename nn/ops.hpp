// Layers shared by attention variants and (later) the encoder. Forward and backward sit together;
// backward accumulates parameter gradients (+=), so gradient buffers are zeroed once per step.
// Weights use PyTorch's layout: Linear weight (out, in), y = x W^T + b.
#pragma once
#include <cstdint>

#include "nn/matmul.hpp"

namespace lsb {

// c ? a : b, chosen with an integer mask. GCC turns a float `c ? a : b` into a loop the vectoriser
// takes only with AVX-512's masked instructions (it may not speculate float compares and operations
// otherwise): on AVX2 every loop over fast_exp or fast_erf ran scalar, 3-4x slower. The bit form
// vectorises on both (a compare and a blend).
inline float select_float(bool c, float a, float b) {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(c);
  return __builtin_bit_cast(float, (__builtin_bit_cast(std::uint32_t, a) & m) | (__builtin_bit_cast(std::uint32_t, b) & ~m));
}

// exp(x) for fp32, vectorisable (no libm call): Cody-Waite reduction and a degree-6 polynomial,
// relative error below 2e-7; returns exactly 0 for x < -87.3 (so exp(-inf) == 0).
inline float fast_exp(float x) {
  const float xc = select_float(x > 88.3f, 88.3f, x);
  const float t = xc * 1.44269504088896341f;
  const float k = (t + 12582912.0f) - 12582912.0f;  // round to nearest for |t| < 2^22
  const float r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int ki = static_cast<int>(k);
  const float scale = __builtin_bit_cast(float, (ki + 127) << 23);
  return select_float(x < -87.3f, 0.0f, p * scale);
}

// fast_exp(x) where `keep` is non-zero, else exactly 0 (a masked softmax numerator), computed for every
// element and then selected, so that the loop vectorises without masked instructions.
inline float exp_where(std::uint8_t keep, float x) { return select_float(keep != 0, fast_exp(x), 0.0f); }

// erf(x) for fp32, vectorisable: a rational approximation on [-4, 4] (odd polynomial of degree 13 over
// an even one of degree 8, the form and coefficients of Eigen's fast float erf), clamped outside (where
// erf is +-1 to fp32 precision). Max absolute error 3.3e-7 against double erf over [-10, 10] in steps
// of 1e-5 (tests/test_matmul.cpp checks 4e-7); libm's erff is about 25x slower per element and not
// vectorised, and GELU's erf took most of a small model's CPU training step.
inline float fast_erf(float x) {
  const float c = select_float(x < -4.0f, -4.0f, select_float(x > 4.0f, 4.0f, x));
  const float x2 = c * c;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return c * p / q;
}

// The gradient of one softmax row, in place: g <- p * (g - sum(p * g)), where p is the row's output
// and g arrives as d loss / d p and leaves as d loss / d scores.
inline void softmax_backward_row(const float* p, float* g, std::int64_t n) {
  float dot = 0;
#pragma omp simd reduction(+ : dot)
  for (std::int64_t u = 0; u < n; ++u) dot += p[u] * g[u];
#pragma omp simd
  for (std::int64_t u = 0; u < n; ++u) g[u] = p[u] * (g[u] - dot);
}

// y (rows, out) = x (rows, in) W^T + b.
void linear_forward(const float* x, std::int64_t rows, std::int64_t in, const float* W, const float* b,
                    std::int64_t out, float* y);
// dW (out, in) += dy^T x; db += column sums of dy; dx (rows, in) = dy W, or += when accumulate_dx.
void linear_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t in, const float* W,
                     std::int64_t out, float* dW, float* db, float* dx, bool accumulate_dx);

// Row-wise LayerNorm over `width` (eps 1e-5). Saves mean and 1/std per row for the backward.
void layernorm_forward(const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                       const float* beta, float* y, float* mean, float* rstd);
// dx = (or +=) d/dx; dgamma, dbeta +=.
void layernorm_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                        const float* mean, const float* rstd, float* dx, float* dgamma, float* dbeta,
                        bool accumulate_dx);

constexpr float kLayerNormEps = 1e-5f;

}  // namespace lsb
