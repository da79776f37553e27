// The steps of an encoder training step outside attention, on either device: the encoder
// (model/encoder.cpp) and AdamW (nn/optim.cpp) are written once against these, and `dev` picks the CPU
// loop here or its CUDA kernel (nn/cuda/kernels.hpp, nn/cuda/train_kernels.hpp, same formulas and
// shapes). Every pointer lives on `dev`. Row-major; D the model width, N the internal sequence length.
// Device::cuda in a build without CUDA throws std::logic_error (the tensors could not exist).
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "nn/memory.hpp"

namespace lsb::device_ops {

// Host side of embedding_backward: the rows grouped by token id (cls rows, id -1, first; then ids 0..
// vocab-1, each group in row order) and where each group starts (vocab + 2 entries: group g holds id
// g - 1, starts[0] = 0, starts[vocab + 1] = rows). Counting sort.
void make_rows_by_id(const std::int32_t* ids, std::int64_t rows, std::int64_t vocab,
                     std::vector<std::int32_t>& rows_by_id, std::vector<std::int64_t>& starts);

// y (rows, out) = x (rows, in) W^T + b; W (out, in) as torch.nn.Linear.
void linear_forward(Device dev, const float* x, std::int64_t rows, std::int64_t in, const float* W, const float* b,
                    std::int64_t out, float* y);
// dW += dy^T x; db += column sums of dy; dx = (or += when accumulate_dx) dy W.
void linear_backward(Device dev, const float* dy, const float* x, std::int64_t rows, std::int64_t in, const float* W,
                     std::int64_t out, float* dW, float* db, float* dx, bool accumulate_dx);
// LayerNorm over `width`, saving mean and 1/std per row; backward: dx = (or +=), dgamma, dbeta +=.
void layernorm_forward(Device dev, const float* x, std::int64_t rows, std::int64_t width, const float* gamma,
                       const float* beta, float* y, float* mean, float* rstd);
void layernorm_backward(Device dev, const float* dy, const float* x, std::int64_t rows, std::int64_t width,
                        const float* gamma, const float* mean, const float* rstd, float* dx, float* dgamma,
                        float* dbeta, bool accumulate_dx);

// x (rows, D) = (id >= 0 ? tok_emb[id] : cls) + pos_emb[r % N]; ids (rows), -1 marks the cls token.
void embedding_forward(Device dev, const std::int32_t* ids, const float* tok_emb, const float* pos_emb,
                       const float* cls, std::int64_t rows, std::int64_t N, std::int64_t D, float* x);
// dtok[v] += dx summed over the rows with id v (in row order), dcls likewise for id -1 (when not null),
// dpos[t] += dx summed over sequences at position t; rows_by_id and starts from make_rows_by_id.
void embedding_backward(Device dev, const float* dx, const std::int32_t* rows_by_id, const std::int64_t* starts,
                        std::int64_t vocab, std::int64_t rows, std::int64_t N, std::int64_t D, float* dtok,
                        float* dpos, float* dcls);

// g = GELU(m) (erf form); backward d <- d * GELU'(m) in place.
void gelu_forward(Device dev, const float* m, std::int64_t count, float* g);
void gelu_backward(Device dev, const float* m, std::int64_t count, float* d);
// out = a + b (out may be a or b).
void add(Device dev, const float* a, const float* b, std::int64_t count, float* out);
// v <- v * mask; out = d * mask (dropout forward and backward; mask holds 0 or 1/keep).
void multiply(Device dev, float* v, const float* mask, std::int64_t count);
void multiply_into(Device dev, const float* d, const float* mask, std::int64_t count, float* out);
void scale(Device dev, float* p, std::int64_t count, float factor);
// Inverted dropout: mask[i] = dropout_factor(seed, i, keep) (nn/random.hpp: the same mask on every
// device), v[i] *= mask[i].
void dropout_forward(Device dev, std::uint64_t seed, float keep, float* v, float* mask, std::int64_t count);
void copy(Device dev, const float* from, std::int64_t count, float* to);
// `bytes` bytes at p set to `byte` (memset on either device).
void set_bytes(Device dev, void* p, int byte, std::size_t bytes);
// t (rows, cols): the rows whose mask byte is 0 set to 0.
void zero_masked_rows(Device dev, float* t, const std::uint8_t* mask, std::int64_t rows, std::int64_t cols);

// pooled (seqs, D) = sum of xf (seqs, N, D) over the rows with mask 1, divided by counts (seqs): how
// many such rows, or `divisor` when it is positive (mean-all pooling). The caller refuses a sequence
// without a real row first. Backward: dxf = dpooled / counts at real rows, else 0.
void mean_pool_forward(Device dev, const float* xf, const std::uint8_t* mask, std::int64_t seqs, std::int64_t N,
                       std::int64_t D, float* pooled, float* counts, float divisor = 0.0f);
void mean_pool_backward(Device dev, const float* dpooled, const std::uint8_t* mask, const float* counts,
                        std::int64_t seqs, std::int64_t N, std::int64_t D, float* dxf);
// cls pooling: pooled[s] = xf[s, 0]; backward: dxf = 0 except dxf[s, 0] = dpooled[s].
void cls_pool_forward(Device dev, const float* xf, std::int64_t seqs, std::int64_t N, std::int64_t D, float* pooled);
void cls_pool_backward(Device dev, const float* dpooled, std::int64_t seqs, std::int64_t N, std::int64_t D,
                       float* dxf);
// Two towers: features[i] = [u, v, u*v, u-v], u = pooled[i], v = pooled[b + i]; and its backward
// (du = dA + v dC + dD, dv = dB + u dC - dD), written into dpooled (2b, D).
void pair_features_forward(Device dev, const float* pooled, std::int64_t b, std::int64_t D, float* features);
void pair_features_backward(Device dev, const float* pooled, const float* dfeatures, std::int64_t b, std::int64_t D,
                            float* dpooled);
// h = max(pre, 0); backward d <- 0 where pre <= 0.
void relu_forward(Device dev, const float* pre, std::int64_t count, float* h);
void relu_backward(Device dev, const float* pre, std::int64_t count, float* d);

// Per row of logits (b, C): probs = softmax (sums in double), loss[i] = log sum exp - z[label] (double);
// a row whose label is negative is not scored (a language model's padding): loss 0.
void softmax_cross_entropy(Device dev, const float* logits, const int* labels, std::int64_t b, std::int64_t C,
                           float* probs, double* loss);
// dlogits = (probs - onehot(label)) / divisor (the number of scored rows), 0 on rows with a negative label.
void cross_entropy_backward(Device dev, const float* probs, const int* labels, std::int64_t b, std::int64_t C,
                            float divisor, float* dlogits);

// One AdamW update of one tensor (see AdamW::step): m, v updated; p -= decay p + step_size m /
// (sqrt(v) inv_sqrt_c2 + eps).
void adamw_update(Device dev, float* p, const float* g, float* m, float* v, std::int64_t count, float beta1,
                  float beta2, float decay, float step_size, float inv_sqrt_c2, float eps);
// The sum of squares of every element of the tensors (pointer, count) in double, in a fixed order on each
// device (on the GPU one copy back for all of them).
double sum_of_squares(Device dev, const std::vector<std::pair<const float*, std::int64_t>>& tensors);

}  // namespace lsb::device_ops
