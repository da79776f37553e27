// The GPU counterparts of the row and element operations of nn/ops.hpp and of the attention cores'
// softmax steps. Host functions that launch on the default stream; pointers are device pointers;
// shapes as on the CPU side (row-major, heads as column slices). Only in builds with CUDA.
#pragma once
#include <cstdint>

namespace lsb::cuda {

// y (rows, out) = x (rows, in) W^T + b; W (out, in) as torch.nn.Linear.
void linear_forward(const float* x, std::int64_t rows, std::int64_t in, const float* W, const float* b,
                    std::int64_t out, float* y);
// dW += dy^T x, db += column sums of dy (each skipped when null); dx = (or +=) dy W (skipped when null).
void linear_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t in, const float* W,
                     std::int64_t out, float* dW, float* db, float* dx, bool accumulate_dx);

void scale(float* p, std::int64_t count, float factor);
// Rows r of a (rows, cols) buffer with mask[r] == 0 set to 0.
void zero_masked_rows(float* t, const std::uint8_t* mask, std::int64_t rows, std::int64_t cols);

// Softmax of each row of s (rows, nk) in place; key u of row r is valid when key_mask is null or
// key_mask[(r / rows_per_example) * nk + u] != 0; a row with no valid key becomes 0. causal_rows > 0:
// row r is query r % causal_rows, whose keys after it get 0 (causal attention).
void softmax_rows(float* s, const std::uint8_t* key_mask, std::int64_t rows, std::int64_t nk,
                  std::int64_t rows_per_example, std::int64_t causal_rows = 0);
// g <- p * (g - rowsum(p * g)) per row (dP to dScores).
void softmax_backward_rows(const float* p, float* g, std::int64_t rows, std::int64_t nk);

// LayerNorm over `width` (eps 1e-5), saving mean and 1/std per row.
void layernorm_forward(const float* x, std::int64_t rows, std::int64_t width, const float* gamma, const float* beta,
                       float* y, float* mean, float* rstd);
// dx = (or +=) d/dx; dgamma, dbeta +=.
void layernorm_backward(const float* dy, const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                        const float* mean, const float* rstd, float* dx, float* dgamma, float* dbeta,
                        bool accumulate_dx);

// For each example and each of the `cols` columns of P (b, n, cols): softmax over the n rows whose
// mask is 1 (masked rows get 0; a column with no real row becomes 0). In place.
void column_softmax(float* P, const std::uint8_t* mask, std::int64_t b, std::int64_t n, std::int64_t cols);
// G <- P * (G - sum over rows of P * G), per example and column.
void column_softmax_backward(const float* P, float* G, std::int64_t b, std::int64_t n, std::int64_t cols);

}  // namespace lsb::cuda
