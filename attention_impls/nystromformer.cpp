// nystromformer: the Nystrom approximation of softmax attention (Xiong et al., AAAI 2021), defined
// exactly in docs/VARIANTS.md. Per (batch, head), with me = min(m, n) landmarks:
//   landmarks   Ql_j, Kl_j = means of the real rows of Q and K in segment j of an even split of the
//               sequence (a segment with no real token is a padded landmark)
//   kernels     K1 = softmax(Q Kl^T) (n x me), K2 = softmax(Ql Kl^T) (me x me, padded landmark rows 0),
//               K3 = softmax(Ql K^T) (me x n), keys masked in all three
//   Z           ~ pinv(K2) by `iters` Newton-Schulz steps from Z0 = K2^T / max column sum of K2:
//               Z <- Z (13 I - K2 Z (15 I - K2 Z (7 I - K2 Z))) / 4
//   C           = K1 (Z (K3 V))  [+ a depthwise convolution of the masked V along the sequence]
// The backward pass goes through every Newton-Schulz step (the iterates are kept; the products inside
// a step are recomputed), so it is exact for the function computed.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "attention_impls/variants.hpp"
#include "nn/matmul.hpp"
#include "nn/ops.hpp"

namespace lsb {
namespace {

// The pinv scratch: slots of (b, h, me, me) matrices. The forward uses T, U and X; the backward all,
// with explicit transposes (kAt, kZt, kTt): oneDNN runs a batched product whose first operand is a
// transposed view as one product per matrix, several times slower at these sizes.
enum PinvSlot : std::int64_t { kT, kU1, kU2, kU3, kX, kdX, kdT, kG, kGnext, kdA, kAt, kZt, kTt, kPinvSlots };

class NystromformerAttention final : public ProjectedAttention {
 public:
  NystromformerAttention(std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads,
                         std::int64_t landmarks, std::int64_t iters, std::int64_t conv)
      : ProjectedAttention("nystromformer", std::move(resolved), dim, heads), m_(landmarks), iters_(iters),
        conv_(conv) {
    if (conv_ > 0) add_param("conv_w", {heads, conv_});  // torch: Conv2d(h, h, (K, 1), groups=h).weight
  }

 protected:
  void core_forward(bool) override {
    const std::int64_t D = dim_, n = n_, me = std::min(m_, n), bh = b_ * heads_;
    me_ = me;
    ensure(Ql_, {b_, me, D}, MemCategory::activations, "nystromformer query landmarks (b, m, D)");
    ensure(Kl_, {b_, me, D}, MemCategory::activations, "nystromformer key landmarks (b, m, D)");
    ensure(count_, {b_, me}, MemCategory::activations, "nystromformer real tokens per landmark (b, m)");
    ensure(lmask_, {(b_ * me + 3) / 4}, MemCategory::activations, "nystromformer landmark mask (b*m bytes)");
    ensure(P1_, {b_, heads_, n, me}, MemCategory::activations, "nystromformer kernel 1 (b, h, n, m)");
    ensure(P2_, {b_, heads_, me, me}, MemCategory::activations, "nystromformer kernel 2 (b, h, m, m)");
    ensure(P3_, {b_, heads_, me, n}, MemCategory::activations, "nystromformer kernel 3 (b, h, m, n)");
    ensure(Z_, {iters_ + 1, b_, heads_, me, me}, MemCategory::activations, "nystromformer pinv iterates");
    ensure(colmax_, {2, bh}, MemCategory::activations, "nystromformer pinv scale and its column (2, b, h)");
    ensure(W_, {b_, me, D}, MemCategory::activations, "nystromformer K3 V (b, m, D)");
    ensure(Y_, {b_, me, D}, MemCategory::activations, "nystromformer Z K3 V (b, m, D)");
    ensure(pinv_, {kPinvSlots, b_, heads_, me, me}, MemCategory::workspace, "nystromformer pinv scratch");

    landmark_means(Q_, Ql_);
    landmark_means(K_, Kl_);
    const std::uint8_t* lm = landmark_mask();

    // K2 = softmax(Ql Kl^T) over real landmarks; padded landmarks' rows 0.
    matmul(heads_of(Ql_, me), heads_of(Kl_, me).t(), square(P2_.data()));
#pragma omp parallel for schedule(static)
    for (std::int64_t row = 0; row < bh * me; ++row) {
      const std::int64_t bi = row / (heads_ * me), j = row % me;
      masked_softmax_row(P2_.data() + row * me, lm + bi * me, me, lm[bi * me + j] != 0);
    }
    pinv_forward();

    // C = K1 (Z (K3 V)): W = K3 V and K1 as dense attention, Y = Z W in between.
    dense_attention_forward(heads_of(Ql_, me), heads_of(K_, n), heads_of(V_, n), mask_, P3_.data(), heads_of(W_, me));
    matmul(square(iterate(iters_)), heads_of(W_, me), heads_of(Y_, me));
    dense_attention_forward(heads_of(Q_, n), heads_of(Kl_, me), heads_of(Y_, me), lm, P1_.data(), heads_of(C_, n));
    if (conv_ > 0) conv_forward();
  }

  void core_backward() override {
    const std::int64_t D = dim_, n = n_, me = me_, bh = b_ * heads_;
    ensure(dP_, {b_, heads_, n, me}, MemCategory::workspace, "nystromformer dK1 and dK3 (b, h, n, m)");
    ensure(dY_, {b_, me, D}, MemCategory::workspace, "nystromformer dY (b, m, D)");
    ensure(dW_, {b_, me, D}, MemCategory::workspace, "nystromformer dW (b, m, D)");
    ensure(dQl_, {b_, me, D}, MemCategory::workspace, "nystromformer dQl (b, m, D)");
    ensure(dKl_, {b_, me, D}, MemCategory::workspace, "nystromformer dKl (b, m, D)");
    const std::uint8_t* lm = landmark_mask();

    // C = softmax(Q Kl^T) Y: dQ, dKl and dY written.
    dense_attention_backward(heads_of(Q_, n), heads_of(Kl_, me), heads_of(Y_, me), P1_.data(), heads_of(dC_, n),
                             dP_.data(), heads_of(dQ_, n), heads_of(dKl_, me), heads_of(dY_, me));
    // Y = Z W: dZ = dY W^T (into the pinv's incoming gradient), dW = Z^T dY.
    matmul(heads_of(dY_, me), heads_of(W_, me).t(), square(slot(kG)));
    transpose_squares(iterate(iters_), slot(kZt));
    matmul(square(slot(kZt)), heads_of(dY_, me), heads_of(dW_, me));
    // W = softmax(Ql K^T) V: dQl, dK and dV written.
    dense_attention_backward(heads_of(Ql_, me), heads_of(K_, n), heads_of(V_, n), P3_.data(), heads_of(dW_, me),
                             dP_.data(), heads_of(dQl_, me), heads_of(dK_, n), heads_of(dV_, n));
    pinv_backward();  // d K2 into slot kdA

    // K2 = softmax(Ql Kl^T): the constant zero rows of padded landmarks get no gradient.
    float* dS2 = slot(kdA);
#pragma omp parallel for schedule(static)
    for (std::int64_t row = 0; row < bh * me; ++row) {
      const std::int64_t bi = row / (heads_ * me), j = row % me;
      if (lm[bi * me + j])
        softmax_backward_row(P2_.data() + row * me, dS2 + row * me, me);
      else
        std::fill(dS2 + row * me, dS2 + (row + 1) * me, 0.0f);
    }
    matmul(square(dS2), heads_of(Kl_, me), heads_of(dQl_, me), 1.0f, 1.0f);
    transpose_squares(dS2, slot(kTt));
    matmul(square(slot(kTt)), heads_of(Ql_, me), heads_of(dKl_, me), 1.0f, 1.0f);

    landmark_means_backward(dQl_, dQ_);
    landmark_means_backward(dKl_, dK_);
    if (conv_ > 0) conv_backward();
  }

  double core_flops(std::int64_t b, std::int64_t n) const override {
    const double me = static_cast<double>(std::min(m_, n)), d = static_cast<double>(head_dim());
    // Q Kl^T and K1 Y, Ql K^T and K3 V (2 n me d each); Ql Kl^T and Z W (2 me^2 d each); four me^3
    // products per Newton-Schulz step; the convolution.
    return b * heads_ * (8.0 * n * me * d + 4.0 * me * me * d + 8.0 * iters_ * me * me * me + 2.0 * n * d * conv_);
  }

  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return nystromformer_core_floats(b, n, dim_, heads_, m_, iters_, with_backward);
  }

 private:
  // Segment j of the even split of n positions into me segments: [j n / me, (j + 1) n / me).
  std::int64_t seg_begin(std::int64_t j) const { return j * n_ / me_; }

  const std::uint8_t* landmark_mask() const { return reinterpret_cast<const std::uint8_t*>(lmask_.data()); }

  // L (b, me, D): mean of the real rows of X (b, n, D) per segment; also fills count_ and the landmark mask.
  void landmark_means(const Tensor& X, Tensor& L) {
    const std::int64_t D = dim_, n = n_, me = me_;
    auto* lm = reinterpret_cast<std::uint8_t*>(lmask_.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t g = 0; g < b_ * me; ++g) {
      const std::int64_t bi = g / me, j = g % me;
      float* out = L.data() + g * D;
      std::fill(out, out + D, 0.0f);
      std::int64_t count = 0;
      for (std::int64_t t = seg_begin(j); t < seg_begin(j + 1); ++t) {
        if (!mask_[bi * n + t]) continue;
        ++count;
        const float* row = X.data() + (bi * n + t) * D;
        for (std::int64_t c = 0; c < D; ++c) out[c] += row[c];
      }
      const float inv = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
      for (std::int64_t c = 0; c < D; ++c) out[c] *= inv;
      count_[g] = static_cast<float>(count);
      lm[g] = count > 0;
    }
  }

  // dX (b, n, D) += the landmark gradient dL (b, me, D) spread evenly over each segment's real rows.
  void landmark_means_backward(const Tensor& dL, Tensor& dX) const {
    const std::int64_t D = dim_, n = n_, me = me_;
#pragma omp parallel for schedule(static)
    for (std::int64_t g = 0; g < b_ * me; ++g) {
      const std::int64_t bi = g / me, j = g % me;
      if (count_[g] == 0) continue;
      const float inv = 1.0f / count_[g];
      const float* src = dL.data() + g * D;
      for (std::int64_t t = seg_begin(j); t < seg_begin(j + 1); ++t) {
        if (!mask_[bi * n + t]) continue;
        float* row = dX.data() + (bi * n + t) * D;
        for (std::int64_t c = 0; c < D; ++c) row[c] += src[c] * inv;
      }
    }
  }

  // Softmax of one row of scores over the keys with key_mask 1; the whole row 0 when !real_row or no key.
  static void masked_softmax_row(float* s, const std::uint8_t* key_mask, std::int64_t nk, bool real_row) {
    float mx = -std::numeric_limits<float>::infinity();
    for (std::int64_t u = 0; u < nk; ++u)
      if (key_mask[u]) mx = std::max(mx, s[u]);
    if (!real_row || mx == -std::numeric_limits<float>::infinity()) {
      std::fill(s, s + nk, 0.0f);
      return;
    }
    float sum = 0;
    for (std::int64_t u = 0; u < nk; ++u) sum += (s[u] = exp_where(key_mask[u], s[u] - mx));
    for (std::int64_t u = 0; u < nk; ++u) s[u] /= sum;
  }

  // Z_0 = K2^T / c (c: K2's largest column sum, per (b, h); c = 0 gives Z_0 = 0), then iters_ steps
  //   T = K2 Z, Z' = Z (13 I - T (15 I - T (7 I - T))) / 4.
  // Padded landmarks' rows and columns of K2 are 0 and stay 0 in every iterate, so Z is the iteration
  // on the real landmarks alone.
  // The iteration's products stay fp32 under --precision bf16: each step feeds its rounding into the
  // next (at bf16 the output's error grew 2.5x and the gradients' 15x), and they are (me x me) per head,
  // a small part of the cost.
  void pinv_forward() {
    const PrecisionScope fp32(Precision::fp32);
    const std::int64_t me = me_, bh = b_ * heads_;
    const float* A = P2_.data();
    float* Z0 = iterate(0);
    for (std::int64_t g = 0; g < bh; ++g) {
      const float* a = A + g * me * me;
      float c = 0;
      std::int64_t arg = 0;
      for (std::int64_t l = 0; l < me; ++l) {
        float s = 0;
        for (std::int64_t j = 0; j < me; ++j) s += a[j * me + l];
        if (s > c) c = s, arg = l;
      }
      colmax_[g] = c;
      colmax_[bh + g] = static_cast<float>(arg);
      const float inv = c > 0 ? 1.0f / c : 0.0f;
      float* z = Z0 + g * me * me;
      for (std::int64_t j = 0; j < me; ++j)
        for (std::int64_t l = 0; l < me; ++l) z[j * me + l] = a[l * me + j] * inv;
    }
    for (std::int64_t k = 0; k < iters_; ++k) {
      matmul(square(A), square(iterate(k)), square(slot(kT)));
      shifted_identity(7.0f, slot(kT), slot(kU1));
      matmul(square(slot(kT)), square(slot(kU1)), square(slot(kX)));
      shifted_identity(15.0f, slot(kX), slot(kU1));
      matmul(square(slot(kT)), square(slot(kU1)), square(slot(kX)));
      shifted_identity(13.0f, slot(kX), slot(kU1));
      matmul(square(iterate(k)), square(slot(kU1)), square(iterate(k + 1)), 0.25f);
    }
  }

  // From dZ (slot kG) to dK2 (slot kdA), through every step in reverse and the starting point. With
  // T = A Z, U1 = 7I - T, U2 = 15I - T U1, U3 = 13I - T U2, Z' = Z U3 / 4 and G = dZ':
  //   dZ = G U3^T / 4;  dX = d(T U2) = -Z^T G / 4;  dT = dX U2^T;  dX' = d(T U1) = -T^T dX;
  //   dT += dX' U1^T - T^T dX';  dA += dT Z^T;  dZ += A^T dT.
  void pinv_backward() {
    const PrecisionScope fp32(Precision::fp32);  // as in pinv_forward
    const std::int64_t me = me_, bh = b_ * heads_;
    const float* A = P2_.data();
    float* dA = slot(kdA);
    std::fill(dA, dA + bh * me * me, 0.0f);
    float *G = slot(kG), *Gn = slot(kGnext);
    transpose_squares(A, slot(kAt));
    const MatRef At = square(slot(kAt)), Zt = square(slot(kZt)), Tt = square(slot(kTt));
    for (std::int64_t k = iters_ - 1; k >= 0; --k) {
      const MatRef Zk = square(iterate(k)), T = square(slot(kT)), X = square(slot(kX));
      matmul(square(A), Zk, T);  // recompute the step's products
      shifted_identity(7.0f, slot(kT), slot(kU1));
      matmul(T, square(slot(kU1)), X);
      shifted_identity(15.0f, slot(kX), slot(kU2));
      matmul(T, square(slot(kU2)), X);
      shifted_identity(13.0f, slot(kX), slot(kU3));
      transpose_squares(iterate(k), slot(kZt));
      transpose_squares(slot(kT), slot(kTt));

      matmul(square(G), square(slot(kU3)).t(), square(Gn), 0.25f);
      matmul(Zt, square(G), square(slot(kdX)), -0.25f);
      matmul(square(slot(kdX)), square(slot(kU2)).t(), square(slot(kdT)));
      matmul(Tt, square(slot(kdX)), X, -1.0f);
      matmul(X, square(slot(kU1)).t(), square(slot(kdT)), 1.0f, 1.0f);
      matmul(Tt, X, square(slot(kdT)), -1.0f, 1.0f);
      matmul(square(slot(kdT)), Zt, square(dA), 1.0f, 1.0f);
      matmul(At, square(slot(kdT)), square(Gn), 1.0f, 1.0f);
      std::swap(G, Gn);
    }
    // Z_0 = A^T / c with c = sum_j A[j, l*]: dA += G^T / c, and dc = -sum(G * Z_0) / c on column l*.
    const float* Z0 = iterate(0);
    for (std::int64_t g = 0; g < bh; ++g) {
      const float c = colmax_[g];
      if (c <= 0) continue;
      const std::int64_t arg = static_cast<std::int64_t>(colmax_[bh + g]);
      const float* gz = G + g * me * me;
      const float* z0 = Z0 + g * me * me;
      float* da = dA + g * me * me;
      float dc = 0;
      for (std::int64_t j = 0; j < me; ++j)
        for (std::int64_t l = 0; l < me; ++l) {
          da[l * me + j] += gz[j * me + l] / c;
          dc -= gz[j * me + l] * z0[j * me + l];
        }
      dc /= c;
      for (std::int64_t j = 0; j < me; ++j) da[j * me + arg] += dc;
    }
  }

  // out = s I - in, for every (b, h) matrix of the pinv scratch.
  void shifted_identity(float s, const float* in, float* out) const {
    const std::int64_t me = me_, total = b_ * heads_ * me * me;
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < total; ++i) out[i] = -in[i];
    for (std::int64_t start = 0; start < total; start += me * me)  // each matrix's diagonal
      for (std::int64_t j = 0; j < me; ++j) out[start + j * (me + 1)] += s;
  }

  // out = in^T for every (b, h) matrix.
  void transpose_squares(const float* in, float* out) const {
    const std::int64_t me = me_;
#pragma omp parallel for schedule(static)
    for (std::int64_t g = 0; g < b_ * heads_; ++g)
      for (std::int64_t j = 0; j < me; ++j)
        for (std::int64_t l = 0; l < me; ++l) out[(g * me + l) * me + j] = in[(g * me + j) * me + l];
  }

  // C[t] += sum_k w[head, k] * m[s] V[s], s = t + k - K/2 inside the sequence, per head's channels.
  void conv_forward() {
    const std::int64_t D = dim_, d = head_dim(), n = n_, K = conv_;
    const float* w = value_of("conv_w");
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < b_ * n; ++r) {
      const std::int64_t bi = r / n, t = r % n;
      float* out = C_.data() + r * D;
      for (std::int64_t k = 0; k < K; ++k) {
        const std::int64_t s = t + k - K / 2;
        if (s < 0 || s >= n || !mask_[bi * n + s]) continue;
        const float* v = V_.data() + (bi * n + s) * D;
        for (std::int64_t i = 0; i < heads_; ++i)
          for (std::int64_t c = i * d; c < (i + 1) * d; ++c) out[c] += w[i * K + k] * v[c];
      }
    }
  }

  // dV[s] += m[s] sum_k w[head, k] dC[s - k + K/2]; dw[head, k] += sum over t, channels of dC[t] m[s] V[s].
  void conv_backward() {
    const std::int64_t D = dim_, d = head_dim(), n = n_, K = conv_;
    const float* w = value_of("conv_w");
    float* dw = grad_of("conv_w");
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < b_ * n; ++r) {
      const std::int64_t bi = r / n, s = r % n;
      if (!mask_[r]) continue;
      float* dv = dV_.data() + r * D;
      for (std::int64_t k = 0; k < K; ++k) {
        const std::int64_t t = s - k + K / 2;
        if (t < 0 || t >= n) continue;
        const float* dc = dC_.data() + (bi * n + t) * D;
        for (std::int64_t i = 0; i < heads_; ++i)
          for (std::int64_t c = i * d; c < (i + 1) * d; ++c) dv[c] += w[i * K + k] * dc[c];
      }
    }
#pragma omp parallel for schedule(static)
    for (std::int64_t ik = 0; ik < heads_ * K; ++ik) {
        const std::int64_t i = ik / K, k = ik % K;
        double acc = 0;
        for (std::int64_t bi = 0; bi < b_; ++bi)
          for (std::int64_t t = 0; t < n; ++t) {
            const std::int64_t s = t + k - K / 2;
            if (s < 0 || s >= n || !mask_[bi * n + s]) continue;
            const float* dc = dC_.data() + (bi * n + t) * D;
            const float* v = V_.data() + (bi * n + s) * D;
            for (std::int64_t c = i * d; c < (i + 1) * d; ++c) acc += dc[c] * v[c];
          }
        dw[ik] += static_cast<float>(acc);
    }
  }

  float* iterate(std::int64_t k) { return Z_.data() + k * b_ * heads_ * me_ * me_; }
  float* slot(PinvSlot s) { return pinv_.data() + s * b_ * heads_ * me_ * me_; }
  // A (b, h) batch of contiguous (me x me) matrices.
  MatRef square(const float* p) const {
    return MatRef::rowmajor(p, me_, me_, me_).batched(b_, heads_ * me_ * me_, heads_, me_ * me_);
  }

  std::int64_t m_, iters_, conv_;
  std::int64_t me_ = 0;  // landmarks of the current call, min(m, n)
  Tensor Ql_, Kl_, count_, lmask_, P1_, P2_, P3_, Z_, colmax_, W_, Y_, pinv_, dP_, dY_, dW_, dQl_, dKl_;
};

}  // namespace

std::int64_t nystromformer_core_floats(std::int64_t b, std::int64_t n, std::int64_t dim, std::int64_t heads,
                                       std::int64_t m, std::int64_t iters, bool with_backward) {
  const std::int64_t me = std::min(m, n), bh = b * heads;
  // Landmarks, W and Y; counts and mask bytes; K1 and K3; K2; the iterates and the pinv scratch; the scale.
  std::int64_t f = 4 * b * me * dim + b * me + (b * me + 3) / 4 + 2 * bh * n * me + bh * me * me +
                   (iters + 1 + kPinvSlots) * bh * me * me + 2 * bh;
  if (with_backward) f += bh * n * me + 4 * b * me * dim;  // dK1/dK3; dY, dW, dQl, dKl
  return f;
}

namespace {

// float64 reference (docs/VARIANTS.md): me = min(m, n) landmarks, the means of the real rows of Q and K
// in segment [j n / me, (j+1) n / me); kernels K1 = softmax(Q Kl^T), K2 = softmax(Ql Kl^T) (rows of
// empty segments 0), K3 = softmax(Ql K^T), keys masked; Z from `iters` Newton-Schulz steps on K2;
// C = K1 Z K3 V, plus the depthwise convolution of the masked V when conv = K > 0.
void reference_nystromformer(const ref::CoreInput& in, ref::Mat& C) {
  using ref::Mat;
  const std::int64_t n = in.n, D = in.D, d = in.d;
  const std::int64_t me = std::min(ref::key_int(in.keys, "m"), n), iters = ref::key_int(in.keys, "iters");
  const std::int64_t cK = ref::key_int(in.keys, "conv");
  const std::uint8_t* m = in.m;
  auto mul = [](const Mat& a, const Mat& b, std::int64_t r, std::int64_t k, std::int64_t c) {
    Mat out(r * c, 0.0);
    for (std::int64_t i = 0; i < r; ++i)
      for (std::int64_t l = 0; l < k; ++l)
        for (std::int64_t j = 0; j < c; ++j) out[i * c + j] += a[i * k + l] * b[l * c + j];
    return out;
  };
  for (std::int64_t i = 0; i < in.h; ++i) {
    Mat q(n * d), k(n * d), v(n * d), ql(me * d, 0.0), kl(me * d, 0.0);
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t c = 0; c < d; ++c) {
        q[t * d + c] = in.Q[t * D + i * d + c];
        k[t * d + c] = in.K[t * D + i * d + c];
        v[t * d + c] = in.V[t * D + i * d + c];
      }
    std::vector<bool> real_landmark(me), real_key(n);
    for (std::int64_t t = 0; t < n; ++t) real_key[t] = m[t] != 0;
    for (std::int64_t j = 0; j < me; ++j) {
      double count = 0;
      for (std::int64_t t = j * n / me; t < (j + 1) * n / me; ++t)
        if (m[t]) {
          count += 1;
          for (std::int64_t c = 0; c < d; ++c) {
            ql[j * d + c] += q[t * d + c];
            kl[j * d + c] += k[t * d + c];
          }
        }
      real_landmark[j] = count > 0;
      for (std::int64_t c = 0; c < d; ++c) {
        ql[j * d + c] = count > 0 ? ql[j * d + c] / count : 0.0;
        kl[j * d + c] = count > 0 ? kl[j * d + c] / count : 0.0;
      }
    }
    // Row t of softmax(a b^T) over the valid rows of b.
    auto kernel = [&](const Mat& a, std::int64_t ra, const Mat& b, std::int64_t rb, const std::vector<bool>& valid) {
      Mat out(ra * rb);
      for (std::int64_t t = 0; t < ra; ++t) {
        std::vector<double> s(rb);
        for (std::int64_t u = 0; u < rb; ++u)
          for (std::int64_t c = 0; c < d; ++c) s[u] += a[t * d + c] * b[u * d + c];
        const auto p = ref::softmax(s, valid);
        std::copy(p.begin(), p.end(), out.begin() + t * rb);
      }
      return out;
    };
    const Mat k1 = kernel(q, n, kl, me, real_landmark);
    Mat k2 = kernel(ql, me, kl, me, real_landmark);
    for (std::int64_t j = 0; j < me; ++j)
      if (!real_landmark[j]) std::fill(k2.begin() + j * me, k2.begin() + (j + 1) * me, 0.0);
    const Mat k3 = kernel(ql, me, k, n, real_key);
    double colmax = 0;
    for (std::int64_t l = 0; l < me; ++l) {
      double s = 0;
      for (std::int64_t j = 0; j < me; ++j) s += k2[j * me + l];
      colmax = std::max(colmax, s);
    }
    Mat z(me * me);
    for (std::int64_t j = 0; j < me; ++j)
      for (std::int64_t l = 0; l < me; ++l) z[j * me + l] = colmax > 0 ? k2[l * me + j] / colmax : 0.0;
    auto shifted_identity = [&](double s, const Mat& a) {
      Mat out(me * me);
      for (std::int64_t j = 0; j < me * me; ++j) out[j] = (j / me == j % me ? s : 0.0) - a[j];
      return out;
    };
    for (std::int64_t it = 0; it < iters; ++it) {
      const Mat t = mul(k2, z, me, me, me);
      const Mat inner = shifted_identity(15.0, mul(t, shifted_identity(7.0, t), me, me, me));
      Mat next = mul(z, shifted_identity(13.0, mul(t, inner, me, me, me)), me, me, me);
      for (auto& e : next) e *= 0.25;
      z = next;
    }
    const Mat ctx = mul(k1, mul(z, mul(k3, v, me, n, d), me, me, d), n, me, d);
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t c = 0; c < d; ++c) {
        double conv = 0;
        for (std::int64_t j = 0; j < cK; ++j) {
          const std::int64_t s = t + j - cK / 2;
          if (s >= 0 && s < n && m[s]) conv += in.P.at("conv_w")[i * cK + j] * v[s * d + c];
        }
        C[t * D + i * d + c] = ctx[t * d + c] + conv;
      }
  }
}

}  // namespace

#if LSBENCH_HAVE_CUDA
std::unique_ptr<Attention> make_cuda_nystromformer(std::unique_ptr<Attention> twin);  // attention_impls/cuda/nystromformer.cu
#endif

LSB_VARIANT(nystromformer) {
  VariantInfo v;
  v.name = "nystromformer";
  v.summary =
      "Nystrom approximation: m segment-mean landmarks, three softmax kernels, iterative pseudo-inverse (linear in "
      "n); conv=K adds a depthwise convolution of V";
  v.keys = {{"m", "64"}, {"iters", "6"}, {"conv", "0"}};
  v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {
    return std::make_unique<NystromformerAttention>(keys.resolved(), dim, heads, keys.get_int("m", 1),
                                                    keys.get_int("iters", 0), keys.get_int("conv", 0));
  };
  v.make_cuda = LSB_CUDA_FACTORY(make_cuda_nystromformer);
  v.reference_core = reference_nystromformer;
  v.no_causal_reason = "its landmarks average segments of the whole sequence, the future included";
  // NystromAttention's Conv2d(h, h, (K, 1), groups=h): weight (h, 1, K, 1) for lsbench's (h, K).
  v.torch_names = {{"conv_w", "attn.conv.weight"}};
  v.torch_shape = [](const std::string& param, const Shape& shape) -> Shape {
    return param == "conv_w" ? Shape{shape.at(0), 1, shape.at(1), 1} : shape;
  };
  return v;
}

}  // namespace lsb
