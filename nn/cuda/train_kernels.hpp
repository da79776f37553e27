// The GPU counterparts of the encoder's steps outside attention, linear layers and LayerNorm
// (model/encoder.cpp) and of AdamW (nn/optim.cpp): the pieces a training step on the GPU is made of.
// Same formulas and shapes as the CPU loops; device pointers; the default stream. Deterministic: every
// output element is written by one thread, sums run in a fixed order (the embedding gradient takes the
// rows grouped by token id, an order the host computes: see embedding_backward).
// nn/device_ops.hpp dispatches to these; tests/test_cuda_train.cpp checks each against the CPU
// formulas where a GPU is present.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace lsb::cuda {

// x (rows, D) = (id >= 0 ? tok_emb[id] : cls) + pos_emb[r % N]; ids (rows), -1 marks the cls token.
void embedding_forward(const std::int32_t* ids, const float* tok_emb, const float* pos_emb, const float* cls,
                       std::int64_t rows, std::int64_t N, std::int64_t D, float* x);
// dtok[v] += sum of dx over the rows with id v, dcls += sum over the rows with id -1 (when dcls is not
// null), dpos[t] += sum over sequences of dx at position t. `rows_by_id` lists the rows grouped by id
// (the cls rows first, then id 0, 1, ...), `starts` (vocab + 2) where each group begins: group g holds
// id g - 1, so starts[0] = 0 and starts[vocab + 1] = rows (device_ops::make_rows_by_id, nn/device_ops.hpp, builds both on the host).
void embedding_backward(const float* dx, const std::int32_t* rows_by_id, const std::int64_t* starts,
                        std::int64_t vocab, std::int64_t rows, std::int64_t N, std::int64_t D, float* dtok,
                        float* dpos, float* dcls);

// g = GELU(m) (erf form), elementwise.
void gelu_forward(const float* m, std::int64_t count, float* g);
// d <- d * GELU'(m), in place.
void gelu_backward(const float* m, std::int64_t count, float* d);
// out = a + b.
void add(const float* a, const float* b, std::int64_t count, float* out);
// v <- v * mask (the mask holds 0 or 1 / keep).
void multiply(float* v, const float* mask, std::int64_t count);
// Inverted dropout: mask[i] = dropout_factor(seed, i, keep) (nn/random.hpp, as the CPU draws it), v[i] *= mask[i].
void dropout_forward(std::uint64_t seed, float keep, float* v, float* mask, std::int64_t count);
// out = d * mask (dropout backward into another buffer).
void multiply_into(const float* d, const float* mask, std::int64_t count, float* out);

// pooled (seqs, D) = sum over the rows t with mask 1 of xf (seqs, N, D), divided by counts (seqs): how
// many, or `divisor` when positive (an example with no real row gets 0 and a zero row: the host
// refuses it first, as the CPU does).
void mean_pool_forward(const float* xf, const std::uint8_t* mask, std::int64_t seqs, std::int64_t N, std::int64_t D,
                       float* pooled, float* counts, float divisor = 0.0f);
// dxf (seqs, N, D) = dpooled / count at real rows, 0 elsewhere.
void mean_pool_backward(const float* dpooled, const std::uint8_t* mask, const float* counts, std::int64_t seqs,
                        std::int64_t N, std::int64_t D, float* dxf);
// cls pooling: pooled[s] = xf[s, 0]; backward: dxf = 0 except dxf[s, 0] = dpooled[s].
void cls_pool_forward(const float* xf, std::int64_t seqs, std::int64_t N, std::int64_t D, float* pooled);
void cls_pool_backward(const float* dpooled, std::int64_t seqs, std::int64_t N, std::int64_t D, float* dxf);
// Two towers: f[i] = [u, v, u*v, u-v] with u = pooled[i], v = pooled[b + i]; and its backward.
void pair_features_forward(const float* pooled, std::int64_t b, std::int64_t D, float* features);
void pair_features_backward(const float* pooled, const float* dfeatures, std::int64_t b, std::int64_t D,
                            float* dpooled);

// h = max(pre, 0); backward: d <- 0 where pre <= 0.
void relu_forward(const float* pre, std::int64_t count, float* h);
void relu_backward(const float* pre, std::int64_t count, float* d);

// Per row (b, C): probs = softmax(logits) (sums in double, as the CPU), loss[i] = log sum exp - z[label]
// (0 for a negative label: not scored).
void softmax_cross_entropy(const float* logits, const int* labels, std::int64_t b, std::int64_t C, float* probs,
                           double* loss);
// dlogits = (probs - onehot(label)) / divisor; 0 on rows with a negative label.
void cross_entropy_backward(const float* probs, const int* labels, std::int64_t b, std::int64_t C, float divisor,
                            float* dlogits);

// One AdamW step on one tensor, as AdamW::step: m, v updated, p -= decay p + step_size m / (sqrt(v) /
// sqrt(c2) + eps) with step_size = lr / c1, decay = lr * weight_decay.
void adamw_update(float* p, const float* g, float* m, float* v, std::int64_t count, float beta1, float beta2,
                  float decay, float step_size, float inv_sqrt_c2, float eps);
// The sum of squares of every element of the tensors (pointer, count) in double, in a fixed order (for
// gradient-norm clipping): one launch per tensor into one buffer, one copy back.
double sum_of_squares(const std::vector<std::pair<const float*, std::int64_t>>& tensors);

}  // namespace lsb::cuda
