// The kernels of performer on the GPU (attention_impls/cuda/performer.cu, which describes them), written
// in the kernel dialect (nn/cuda/kernel_dialect.cuh) so that the tests also run them, unchanged, on an
// emulated thread block (tests/test_performer_emulated.cpp). Included inside a namespace after the
// dialect; <cmath> and <cstdint> come before that namespace.

constexpr int kThreads = 256;

// Sum or maximum over the block (kThreads threads); every thread gets the result.
template <bool kMax>
LSB_DEVICE_FN float block_reduce(float v, float* shared /* kThreads / 32 */) {
  for (int o = 16; o > 0; o >>= 1) {
    const float other = lane_xor(v, o);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  block_sync();
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
  block_sync();
  float r = shared[0];
  for (int i = 1; i < kThreads / 32; ++i) r = kMax ? fmaxf(r, shared[i]) : r + shared[i];
  return r;
}

// Row r = (bh, t) of X (b, n, D) restricted to head h: its (d) elements.
template <typename T>
LSB_DEVICE_FN T* head_row(T* X, std::int64_t r, std::int64_t n, std::int64_t heads, std::int64_t d) {
  const std::int64_t bh = r / n, t = r % n, bi = bh / heads, hi = bh % heads;
  return X + (bi * n + t) * heads * d + hi * d;
}

// s^2 |x|^2 / 2 for the head row of X, block-wide.
LSB_DEVICE_FN float half_norm(const float* x, std::int64_t d, float s, float* shared) {
  float q2 = 0;
  for (std::int64_t c = threadIdx.x; c < d; c += blockDim.x) q2 += x[c] * x[c];
  return 0.5f * s * s * block_reduce<false>(q2, shared);
}

// Keys, pass 1: for each real row, max_j s P[j] - s^2 |k|^2 / 2 (padded rows: -inf). One block per row.
LSB_KERNEL(kThreads)
key_row_max_kernel(const float* P, const float* K, const std::uint8_t* mask, std::int64_t n, std::int64_t heads,
                   std::int64_t d, std::int64_t m, float s, float* row_max) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  const std::int64_t r = blockIdx.x, bi = r / n / heads, t = r % n;
  const float hn = half_norm(head_row(K, r, n, heads, d), d, s, shared);
  float mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) mx = fmaxf(mx, P[r * m + j]);
  mx = block_reduce<true>(mx, shared);
  if (threadIdx.x == 0) row_max[r] = mask[bi * n + t] ? s * mx - hn : -INFINITY;
}

// Keys, pass 2: the maximum over the rows of each (batch, head), in row order.
LSB_KERNEL(kThreads) group_max_kernel(const float* row_max, std::int64_t n, float* group_max) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  const std::int64_t g = blockIdx.x;
  float mx = -INFINITY;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) mx = fmaxf(mx, row_max[g * n + t]);
  mx = block_reduce<true>(mx, shared);
  if (threadIdx.x == 0) group_max[g] = mx;
}

// P (rows, m) holds w . x; makes it exp(s w.x - s^2|x|^2/2 - c) / sqrt(m), c the row's own maximum
// exponent (queries: group_max null) or its group's (keys, padded rows 0). One block per row.
LSB_KERNEL(kThreads)
features_kernel(float* P, const float* X, const std::uint8_t* mask, const float* group_max, std::int64_t n,
                std::int64_t heads, std::int64_t d, std::int64_t m, float s, float inv_sqrt_m) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  const std::int64_t r = blockIdx.x, bi = r / n / heads, t = r % n;
  float* row = P + r * m;
  if (group_max && !mask[bi * n + t]) {
    for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = 0.0f;
    return;
  }
  const float hn = half_norm(head_row(X, r, n, heads, d), d, s, shared);
  float c;
  if (group_max) {
    c = group_max[r / n];
  } else {
    float mx = -INFINITY;
    for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) mx = fmaxf(mx, row[j]);
    c = s * block_reduce<true>(mx, shared) - hn;
  }
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = expf(s * row[j] - hn - c) * inv_sqrt_m;
}

// out[g, j] = sum_t P[g, t, j] * (w ? w[g, t] : 1), rows in order; one thread per (group, feature).
LSB_KERNEL(kThreads)
weighted_column_sums_kernel(const float* P, const float* w, std::int64_t groups, std::int64_t n, std::int64_t m,
                            float* out) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= groups * m) return;
  const std::int64_t g = i / m, j = i % m;
  float s = 0;
  for (std::int64_t t = 0; t < n; ++t) s += P[(g * n + t) * m + j] * (w ? w[g * n + t] : 1.0f);
  out[i] = s;
}

// den[r] = A[r] . z[group]; the head row of C divided by it (0 when it is 0). One block per row.
LSB_KERNEL(kThreads)
normalise_kernel(const float* A, const float* z, std::int64_t n, std::int64_t heads, std::int64_t d, std::int64_t m,
                 float* den, float* C) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  const std::int64_t r = blockIdx.x;
  float s = 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) s += A[r * m + j] * z[(r / n) * m + j];
  s = block_reduce<false>(s, shared);
  if (threadIdx.x == 0) den[r] = s;
  float* c = head_row(C, r, n, heads, d);
  const float inv = s > 0 ? 1.0f / s : 0.0f;
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) c[e] *= inv;
}

// d num = dC / den (rows of (b, h, n, d)), d den = -(dC . C) / den. One block per row.
LSB_KERNEL(kThreads)
normaliser_backward_kernel(const float* dC, const float* C, const float* den, std::int64_t n, std::int64_t heads,
                           std::int64_t d, float* dnum, float* dden) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  const std::int64_t r = blockIdx.x;
  const float *dc = head_row(dC, r, n, heads, d), *c = head_row(C, r, n, heads, d);
  const float inv = den[r] > 0 ? 1.0f / den[r] : 0.0f;
  float dot = 0;
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) {
    dnum[r * d + e] = dc[e] * inv;
    dot += dc[e] * c[e];
  }
  dot = block_reduce<false>(dot, shared);
  if (threadIdx.x == 0) dden[r] = -dot * inv;
}

// dA += dden z^T; one thread per element of dA.
LSB_KERNEL(kThreads)
add_outer_kernel(float* dA, const float* dden, const float* z, std::int64_t n, std::int64_t m, std::int64_t total) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t r = i / m, j = i % m;
  dA[i] += dden[r] * z[(r / n) * m + j];
}

// dB = mask ? dB + dz[group] : 0; one thread per element.
LSB_KERNEL(kThreads)
key_grad_kernel(float* dB, const float* dz, const std::uint8_t* mask, std::int64_t n, std::int64_t heads,
                std::int64_t m, std::int64_t total) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const std::int64_t r = i / m, j = i % m, g = r / n, bi = g / heads, t = r % n;
  dB[i] = mask[bi * n + t] ? dB[i] + dz[g * m + j] : 0.0f;
}

// G = dP * P in place, rowsum[r] = sum_j G[r, j]. One block per row.
LSB_KERNEL(kThreads) feature_grad_kernel(float* dP, const float* P, std::int64_t m, float* rowsum) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  const std::int64_t r = blockIdx.x;
  float s = 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) s += (dP[r * m + j] *= P[r * m + j]);
  s = block_reduce<false>(s, shared);
  if (threadIdx.x == 0) rowsum[r] = s;
}

// dX = s dX - s^2 rowsum x on the head rows; one thread per element of the (b, n, D) buffer.
LSB_KERNEL(kThreads)
feature_input_grad_kernel(float* dX, const float* X, const float* rowsum, std::int64_t b, std::int64_t n,
                          std::int64_t heads, std::int64_t d, float s) {
  const std::int64_t D = heads * d, i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= b * n * D) return;
  const std::int64_t c = i % D, t = (i / D) % n, bi = i / (n * D), hi = c / d;
  const std::int64_t r = (bi * heads + hi) * n + t;
  dX[i] = s * dX[i] - s * s * rowsum[r] * X[i];
}

// ---- Causal (--causal), as attention_impls/performer.cpp: prefix sums in chunks of kChunk rows. The state
// before chunk c (S_c = sum of B_u^T v_u and z_c = sum of B_u over the earlier chunks) comes from one
// product per chunk and an exclusive prefix over the chunks; each row then adds its own chunk's
// lower-triangular part. The backward mirrors it: the gradient of the state after chunk c (G_c, g_c) is a
// reverse exclusive prefix of the chunks' A_c^T dnum_c, A_c^T dden_c.
constexpr std::int64_t kChunk = 64;
static_assert(kChunk <= kThreads, "a chunk's rows fit one block's score row");

// Rows of one head of a buffer: row t of group bh = bi * heads + hi at (bi sb + hi sh + t st).
struct HeadRowsOf {
  const float* p;
  std::int64_t heads, sb, sh, st;
  LSB_DEVICE_FN const float* row(std::int64_t bh, std::int64_t t) const {
    return p + (bh / heads) * sb + (bh % heads) * sh + t * st;
  }
};

// The causal feature maps (P holds w . x): queries exp(s w_j.x - s^2|x|^2/2 + |w_j|^2/2 - row max), keys
// exp(s w_j.x - s^2|x|^2/2 - |w_j|^2/2) (at most 1; padded rows 0), each / sqrt(m). One block per row.
LSB_KERNEL(kThreads)
causal_features_kernel(float* P, const float* X, const std::uint8_t* mask, const float* half_w2, bool query,
                       std::int64_t n, std::int64_t heads, std::int64_t d, std::int64_t m, float s, float inv_sqrt_m) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  const std::int64_t r = blockIdx.x, bi = r / n / heads, t = r % n;
  float* row = P + r * m;
  if (!query && !mask[bi * n + t]) {
    for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = 0.0f;
    return;
  }
  const float hn = half_norm(head_row(X, r, n, heads, d), d, s, shared);
  const float sign = query ? 1.0f : -1.0f;
  float mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    row[j] = s * row[j] - hn + sign * half_w2[j];
    mx = fmaxf(mx, row[j]);
  }
  const float c = query ? block_reduce<true>(mx, shared) : 0.0f;  // keys: the exponent is never above 0
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) row[j] = expf(row[j] - c) * inv_sqrt_m;
}

// Per chunk c of group g: out[g, c] = (sum_t F_t^T X_t (m x d), sum_t F_t w_t (m)) over the chunk's rows t < n,
// F (groups, n, m), w (groups, n) or null for 1. One block per (group, chunk).
LSB_KERNEL(kThreads)
chunk_products_kernel(const float* F, HeadRowsOf X, const float* w, std::int64_t n, std::int64_t m, std::int64_t d,
                      float* out) {
  const std::int64_t nc = (n + kChunk - 1) / kChunk, g = blockIdx.x / nc, c = blockIdx.x % nc, width = m * d + m;
  const std::int64_t t0 = c * kChunk, t1 = t0 + kChunk < n ? t0 + kChunk : n;
  for (std::int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    float s = 0;
    if (i < m * d) {
      const std::int64_t j = i / d, e = i % d;
      for (std::int64_t t = t0; t < t1; ++t) s += F[(g * n + t) * m + j] * X.row(g, t)[e];
    } else {
      const std::int64_t j = i - m * d;
      for (std::int64_t t = t0; t < t1; ++t) s += F[(g * n + t) * m + j] * (w ? w[g * n + t] : 1.0f);
    }
    out[blockIdx.x * width + i] = s;
  }
}

// Exclusive prefix over the chunks of each group, in place (states (groups, nc, width)): forward, each chunk
// gets the sum of the chunks before it; reverse, of the chunks after it. One thread per (group, element).
LSB_KERNEL(kThreads)
chunk_prefix_kernel(float* states, std::int64_t groups, std::int64_t nc, std::int64_t width, bool reverse) {
  const std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (i >= groups * width) return;
  const std::int64_t g = i / width, k = i % width;
  float running = 0;
  for (std::int64_t step = 0; step < nc; ++step) {
    float& v = states[(g * nc + (reverse ? nc - 1 - step : step)) * width + k];
    const float own = v;
    v = running;
    running += own;
  }
}

// Dot products of row a with rows b_u, u in [u0, u1) (at most kChunk), plus add[(u - u0) * add_stride] (none
// when add is null; stride 0: one value for all), into out[u - u0]: one warp per u.
LSB_DEVICE_FN void chunk_dots(const float* a, HeadRowsOf b, std::int64_t bh, std::int64_t u0, std::int64_t u1,
                              std::int64_t len, const float* add, std::int64_t add_stride, float* out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (std::int64_t u = u0 + warp; u < u1; u += blockDim.x / 32) {
    const float* br = b.row(bh, u);
    float s = 0;
    for (std::int64_t k = lane; k < len; k += 32) s += a[k] * br[k];
    s = warp_sum(s);
    if (lane == 0) out[u - u0] = s + (add ? add[(u - u0) * add_stride] : 0.0f);
  }
}

// Query row t of group bh (chunk c): num = A_t S_c + sum_{u in chunk, u <= t} (A_t . B_u) v_u, den = A_t . z_c +
// the same sum of A_t . B_u; C = num / den (0 when den is 0). One block per row.
LSB_KERNEL(kThreads)
causal_output_kernel(const float* A, const float* B, HeadRowsOf V, const float* states, std::int64_t n,
                     std::int64_t heads, std::int64_t m, std::int64_t d, float* C, float* den) {
  LSB_SHARED_ARRAY(float, shared, [kThreads / 32]);
  LSB_SHARED_ARRAY(float, T, [kChunk]);
  const std::int64_t r = blockIdx.x, bh = r / n, t = r % n, c = t / kChunk, nc = (n + kChunk - 1) / kChunk;
  const float* a = A + r * m;
  const float *S = states + (bh * nc + c) * (m * d + m), *z = S + m * d;
  const HeadRowsOf Bf{B, heads, heads * n * m, n * m, m};
  chunk_dots(a, Bf, bh, c * kChunk, t + 1, m, nullptr, 0, T);
  float part = 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) part += a[j] * z[j];
  float sum = block_reduce<false>(part, shared);  // its barriers also publish T
  for (std::int64_t u = 0; u <= t - c * kChunk; ++u) sum += T[u];
  if (threadIdx.x == 0) den[r] = sum;
  const float inv = sum > 0 ? 1.0f / sum : 0.0f;
  float* out = head_row(C, r, n, heads, d);
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) {
    float num = 0;
    for (std::int64_t j = 0; j < m; ++j) num += a[j] * S[j * d + e];
    for (std::int64_t u = c * kChunk; u <= t; ++u) num += T[u - c * kChunk] * V.row(bh, u)[e];
    out[e] = num * inv;
  }
}

// Query row t: dA_t = dnum_t S_c^T + dden_t z_c + sum_{u in chunk, u <= t} dT_tu B_u, dT_tu = dnum_t . v_u + dden_t.
LSB_KERNEL(kThreads)
causal_query_grad_kernel(const float* B, HeadRowsOf V, const float* states, const float* dnum, const float* dden,
                         std::int64_t n, std::int64_t m, std::int64_t d, float* dA) {
  LSB_SHARED_ARRAY(float, dT, [kChunk]);
  const std::int64_t r = blockIdx.x, bh = r / n, t = r % n, c = t / kChunk, nc = (n + kChunk - 1) / kChunk;
  const float *S = states + (bh * nc + c) * (m * d + m), *z = S + m * d, *dn = dnum + r * d;
  chunk_dots(dn, V, bh, c * kChunk, t + 1, d, dden + r, 0, dT);
  block_sync();
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    float g = dden[r] * z[j];
    for (std::int64_t e = 0; e < d; ++e) g += dn[e] * S[j * d + e];
    for (std::int64_t u = c * kChunk; u <= t; ++u) g += dT[u - c * kChunk] * B[(bh * n + u) * m + j];
    dA[r * m + j] = g;
  }
}

// Key row u (chunk c, G_c and g_c the gradient of the state after it): with T_tu = A_t . B_u and dT_tu as above
// over the chunk's queries t >= u, dB_u = sum_t dT_tu A_t + G_c v_u + g_c (padded keys 0) and
// dv_u = sum_t T_tu dnum_t + B_u G_c.
LSB_KERNEL(kThreads)
causal_key_grad_kernel(const float* A, const float* B, HeadRowsOf V, const std::uint8_t* mask, const float* gstates,
                       const float* dnum, const float* dden, std::int64_t n, std::int64_t heads, std::int64_t m,
                       std::int64_t d, float* dB, float* dV) {
  LSB_SHARED_ARRAY(float, T, [kChunk]);
  LSB_SHARED_ARRAY(float, dT, [kChunk]);
  const std::int64_t r = blockIdx.x, bh = r / n, u = r % n, c = u / kChunk, nc = (n + kChunk - 1) / kChunk;
  const std::int64_t t1 = (c + 1) * kChunk < n ? (c + 1) * kChunk : n, D = heads * d;
  const float *G = gstates + (bh * nc + c) * (m * d + m), *gz = G + m * d, *b = B + r * m, *v = V.row(bh, u);
  // T_tu = A_t . B_u and dT_tu = dnum_t . v_u + dden_t over this chunk's queries t >= u.
  const HeadRowsOf Ar{A, heads, heads * n * m, n * m, m}, dN{dnum, heads, heads * n * d, n * d, d};
  chunk_dots(b, Ar, bh, u, t1, m, nullptr, 0, T);
  chunk_dots(v, dN, bh, u, t1, d, dden + bh * n + u, 1, dT);
  block_sync();
  const bool real = mask[(bh / heads) * n + u] != 0;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    float g = gz[j];
    for (std::int64_t t = u; t < t1; ++t) g += dT[t - u] * A[(bh * n + t) * m + j];
    for (std::int64_t e = 0; e < d; ++e) g += v[e] * G[j * d + e];
    dB[r * m + j] = real ? g : 0.0f;
  }
  float* dv = dV + ((bh / heads) * n + u) * D + (bh % heads) * d;
  for (std::int64_t e = threadIdx.x; e < d; e += blockDim.x) {
    float g = 0;
    for (std::int64_t t = u; t < t1; ++t) g += T[t - u] * dnum[(bh * n + t) * d + e];
    for (std::int64_t j = 0; j < m; ++j) g += b[j] * G[j * d + e];
    dv[e] = g;
  }
}
