// The kernels of causal ls on the GPU (attention_impls/cuda/ls_causal.cu, which describes them), written
// in the kernel dialect (nn/cuda/kernel_dialect.cuh) so that the tests also run them, unchanged, on an
// emulated thread block (tests/test_ls_causal_emulated.cpp). Included inside a namespace after the
// dialect; <cmath>, <cstdint> and nn/host_device.hpp come before that namespace.

constexpr int kWarps = 4;    // warps per block, one row each
constexpr int kPerLane = 4;  // head dims per lane: d <= 128
constexpr int kMaxHeadDim = 32 * kPerLane;
constexpr int kThreads = 32 * kWarps;
constexpr int kChunkThreads = 256;

struct CausalLs {
  std::int64_t b, n, h, d, w, l, r;
  LSB_HOST_DEVICE std::int64_t D() const { return h * d; }
  LSB_HOST_DEVICE std::int64_t nc() const { return n / l; }
  // Query t's key list: compressed vectors 0 .. ncomp(t) - 1 (chunk j / r), then the window positions
  // from window_start(t) to t.
  LSB_HOST_DEVICE std::int64_t ncomp(std::int64_t t) const { return r * (t / l); }
  LSB_HOST_DEVICE std::int64_t window_start(std::int64_t t) const {
    return w > 0 ? (t - w + 1 > 0 ? t - w + 1 : 0) : t + 1;
  }
};

// The rows a (batch, head) reads: (b, n, D) buffers for the window and (b, n/l*r, D) for the compressed
// vectors, both at the head's column offset.
struct HeadRows {
  const float *Kt, *Vt, *Kc, *Vc;
  const std::uint8_t* mask;  // (n) of this example
  const float* chunk_real;   // (n/l) of this example: 1 where the chunk has a real position
  std::int64_t D, ncomp_total, r;
  LSB_HOST_DEVICE bool comp_valid(std::int64_t j) const { return chunk_real[j / r] != 0.0f; }
};

LSB_DEVICE_FN HeadRows head_rows(const CausalLs& s, std::int64_t bi, std::int64_t hi, const float* Kt, const float* Vt,
                                 const float* Kc, const float* Vc, const std::uint8_t* mask, const float* chunk_real) {
  const std::int64_t D = s.D(), off = hi * s.d, nk = s.nc() * s.r;
  return {Kt + bi * s.n * D + off,
          Vt + bi * s.n * D + off,
          Kc ? Kc + bi * nk * D + off : nullptr,
          Vc ? Vc + bi * nk * D + off : nullptr,
          mask + bi * s.n,
          chunk_real + bi * s.nc(),
          D,
          nk,
          s.r};
}

LSB_DEVICE_FN float dot(const float* a, const float* b, std::int64_t d) {
  float s = 0;
  for (std::int64_t k = 0; k < d; ++k) s += a[k] * b[k];
  return s;
}

// Key j of query t (ncomp = s.ncomp(t), u0 = s.window_start(t)): its key and value rows and validity.
struct KeyRef {
  const float *k, *v;
  bool valid;
};
LSB_DEVICE_FN KeyRef key_of(const HeadRows& R, std::int64_t ncomp, std::int64_t u0, std::int64_t j) {
  if (j < ncomp) return {R.Kc + j * R.D, R.Vc + j * R.D, R.comp_valid(j)};
  const std::int64_t u = u0 + j - ncomp;
  return {R.Kt + u * R.D, R.Vt + u * R.D, R.mask[u] != 0};
}

// One warp per query row: C (b, n, D) and lse (b, h, n) (-inf: no key, C = 0).
LSB_KERNEL(kThreads)
causal_ls_forward_kernel(CausalLs s, const float* Q, const float* Kt, const float* Vt, const float* Kc, const float* Vc,
                         const std::uint8_t* mask, const float* chunk_real, float* C, float* lse) {
  LSB_SHARED_ARRAY(float, qs, [kWarps][kMaxHeadDim]);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t t = std::int64_t(blockIdx.x) * kWarps + warp;
  if (t >= s.n) return;  // whole warps leave together
  const HeadRows R = head_rows(s, bi, hi, Kt, Vt, Kc, Vc, mask, chunk_real);
  const std::int64_t row = (bi * s.n + t) * s.D() + hi * s.d;
  for (std::int64_t k = lane; k < s.d; k += 32) qs[warp][k] = Q[row + k];
  warp_sync();
  const std::int64_t ncomp = s.ncomp(t), u0 = s.window_start(t), nk = ncomp + (t + 1 - u0);
  float o[kPerLane] = {};
  float mx = -INFINITY, l = 0;
  for (std::int64_t j0 = 0; j0 < nk; j0 += 32) {
    float sc = -INFINITY;
    if (j0 + lane < nk) {
      const KeyRef key = key_of(R, ncomp, u0, j0 + lane);
      if (key.valid) sc = dot(qs[warp], key.k, s.d);
    }
    const float mx_new = fmaxf(mx, warp_max(sc));
    if (mx_new == -INFINITY) continue;                            // no valid key yet (warp-uniform)
    const float corr = expf(mx - mx_new), p = expf(sc - mx_new);  // 0 for masked keys and when mx was -inf
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) o[i] *= corr;
    const int count = static_cast<int>(nk - j0 < 32 ? nk - j0 : 32);
    for (int jj = 0; jj < count; ++jj) {
      const float pj = lane_shfl(p, jj);
      if (pj == 0.0f) continue;  // the same on every lane
      const float* v = key_of(R, ncomp, u0, j0 + jj).v;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i)
        if (lane + 32 * i < s.d) o[i] += pj * v[lane + 32 * i];
    }
    mx = mx_new;
  }
  const float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i)
    if (lane + 32 * i < s.d) C[row + lane + 32 * i] = o[i] * inv;
  if (lane == 0) lse[bh * s.n + t] = l > 0 ? mx + logf(l) : -INFINITY;
}

// One warp per query row: delta = dC . C (b, h, n), and dQ = sum_j dS_j K_j with dS = P (dC . V_j - delta).
LSB_KERNEL(kThreads)
causal_ls_dq_kernel(CausalLs s, const float* Q, const float* Kt, const float* Vt, const float* Kc, const float* Vc,
                    const std::uint8_t* mask, const float* chunk_real, const float* C, const float* dC,
                    const float* lse, float* delta, float* dQ) {
  LSB_SHARED_ARRAY(float, qs, [kWarps][kMaxHeadDim]);
  LSB_SHARED_ARRAY(float, dcs, [kWarps][kMaxHeadDim]);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t t = std::int64_t(blockIdx.x) * kWarps + warp;
  if (t >= s.n) return;
  const HeadRows R = head_rows(s, bi, hi, Kt, Vt, Kc, Vc, mask, chunk_real);
  const std::int64_t row = (bi * s.n + t) * s.D() + hi * s.d;
  float part = 0;
  for (std::int64_t k = lane; k < s.d; k += 32) {
    qs[warp][k] = Q[row + k];
    dcs[warp][k] = dC[row + k];
    part += dC[row + k] * C[row + k];
  }
  warp_sync();
  const float row_delta = warp_sum(part), row_lse = lse[bh * s.n + t];
  if (lane == 0) delta[bh * s.n + t] = row_delta;
  const std::int64_t ncomp = s.ncomp(t), u0 = s.window_start(t), nk = ncomp + (t + 1 - u0);
  float dq[kPerLane] = {};
  for (std::int64_t j0 = 0; j0 < nk && row_lse != -INFINITY; j0 += 32) {
    float ds = 0;
    if (j0 + lane < nk) {
      const KeyRef key = key_of(R, ncomp, u0, j0 + lane);
      if (key.valid) ds = expf(dot(qs[warp], key.k, s.d) - row_lse) * (dot(dcs[warp], key.v, s.d) - row_delta);
    }
    const int count = static_cast<int>(nk - j0 < 32 ? nk - j0 : 32);
    for (int jj = 0; jj < count; ++jj) {
      const float g = lane_shfl(ds, jj);
      if (g == 0.0f) continue;
      const float* k = key_of(R, ncomp, u0, j0 + jj).k;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i)
        if (lane + 32 * i < s.d) dq[i] += g * k[lane + 32 * i];
    }
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i)
    if (lane + 32 * i < s.d) dQ[row + lane + 32 * i] = dq[i];
}

// One warp per key: kCompressed, key j of (b, n/l*r) = vector j % r of chunk j / r, seen by the queries
// [(chunk + 1) l, n); else window key u of (b, n), seen by the queries [u, u + w) within n. Writes the
// key's dK = sum_t dS_t Q_t and dV = sum_t P_t dC_t (0 for a key no query may see).
template <bool kCompressed>
LSB_KERNEL(kThreads)
causal_ls_dkdv_kernel(CausalLs s, const float* Q, const float* K, const float* V, const std::uint8_t* mask,
                      const float* chunk_real, const float* dC, const float* lse, const float* delta, float* dK,
                      float* dV) {
  LSB_SHARED_ARRAY(float, ks, [kWarps][kMaxHeadDim]);
  LSB_SHARED_ARRAY(float, vs, [kWarps][kMaxHeadDim]);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.y, bi = bh / s.h, hi = bh % s.h;
  const std::int64_t keys = kCompressed ? s.nc() * s.r : s.n;
  const std::int64_t j = std::int64_t(blockIdx.x) * kWarps + warp;
  if (j >= keys) return;
  const std::int64_t row = (bi * keys + j) * s.D() + hi * s.d;
  for (std::int64_t k = lane; k < s.d; k += 32) {
    ks[warp][k] = K[row + k];
    vs[warp][k] = V[row + k];
  }
  warp_sync();
  const bool valid = kCompressed ? chunk_real[bi * s.nc() + j / s.r] != 0.0f : mask[bi * s.n + j] != 0;
  const std::int64_t t_begin = kCompressed ? (j / s.r + 1) * s.l : j;
  const std::int64_t t_end = kCompressed ? s.n : (j + s.w < s.n ? j + s.w : s.n);
  float dk[kPerLane] = {}, dv[kPerLane] = {};
  for (std::int64_t t0 = t_begin; valid && t0 < t_end; t0 += 32) {
    const std::int64_t t = t0 + lane;
    float p = 0, ds = 0;
    if (t < t_end) {
      const float row_lse = lse[bh * s.n + t];
      if (row_lse != -INFINITY) {
        const std::int64_t qrow = (bi * s.n + t) * s.D() + hi * s.d;
        p = expf(dot(Q + qrow, ks[warp], s.d) - row_lse);
        ds = p * (dot(dC + qrow, vs[warp], s.d) - delta[bh * s.n + t]);
      }
    }
    const int count = static_cast<int>(t_end - t0 < 32 ? t_end - t0 : 32);
    for (int jj = 0; jj < count; ++jj) {
      const float pj = lane_shfl(p, jj), gj = lane_shfl(ds, jj);
      if (pj == 0.0f) continue;  // then gj is 0 too
      const std::int64_t qrow = (bi * s.n + t0 + jj) * s.D() + hi * s.d;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i)
        if (lane + 32 * i < s.d) {
          dv[i] += pj * dC[qrow + lane + 32 * i];
          dk[i] += gj * Q[qrow + lane + 32 * i];
        }
    }
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i)
    if (lane + 32 * i < s.d) {
      dK[row + lane + 32 * i] = dk[i];
      dV[row + lane + 32 * i] = dv[i];
    }
}

// chunk_real (b * n/l) = 1 where the chunk has a real position.
LSB_KERNEL(kChunkThreads)
chunk_real_kernel(const std::uint8_t* mask, std::int64_t chunks, std::int64_t l, float* chunk_real) {
  const std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= chunks) return;
  bool real = false;
  for (std::int64_t t = 0; t < l; ++t) real = real || mask[c * l + t] != 0;
  chunk_real[c] = real ? 1.0f : 0.0f;
}
