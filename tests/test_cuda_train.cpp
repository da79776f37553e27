// The GPU pieces of a training step (nn/cuda/train_kernels.hpp) against the CPU encoder's and AdamW's
// formulas on the same inputs. Compiled whenever nvcc exists; they run where a GPU is present and say why
// they skip where none is. The host-side grouping of rows by token id is checked everywhere.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/cuda/device.hpp"
#include "nn/cuda/train_kernels.hpp"
#include "nn/device_ops.hpp"
#include "nn/memory.hpp"
#include "nn/optim.hpp"
#include "nn/random.hpp"
#include "nn/tensor.hpp"

using namespace lsb;

TEST_CASE("rows grouped by token id: cls rows first, then each id in row order", "[cuda][train]") {
  const std::vector<std::int32_t> ids = {2, -1, 0, 2, 3, -1, 0, 2};
  std::vector<std::int32_t> rows;
  std::vector<std::int64_t> starts;
  device_ops::make_rows_by_id(ids.data(), 8, 4, rows, starts);
  CHECK(starts == std::vector<std::int64_t>{0, 2, 4, 4, 7, 8});  // groups: cls, 0, 1, 2, 3
  CHECK(rows == std::vector<std::int32_t>{1, 5, 2, 6, 0, 3, 7, 4});
}

#if LSBENCH_HAVE_CUDA
namespace {

std::vector<float> randv(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * r.normal());
  return v;
}

// A device copy of a host vector (freed with the tensor).
template <typename T>
Tensor on_device(const std::vector<T>& host) {
  const std::size_t bytes = host.size() * sizeof(T);
  Tensor t({static_cast<std::int64_t>((bytes + 3) / 4)}, MemCategory::data, "test input", Device::cuda);
  cuda::copy(t.data(), host.data(), bytes);
  return t;
}
template <typename T>
T* ptr(Tensor& t) {
  return reinterpret_cast<T*>(t.data());
}
std::vector<float> to_host(const Tensor& t, std::size_t count) {
  std::vector<float> v(count);
  cuda::copy(v.data(), t.data(), count * sizeof(float));
  return v;
}
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

}  // namespace

TEST_CASE("embedding forward and backward on the GPU equal the encoder's loops", "[cuda][train]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  const std::int64_t seqs = 3, N = 7, D = 5, V = 4, rows = seqs * N;
  std::vector<std::int32_t> ids(rows);
  Rng rng(3);
  for (std::int64_t r = 0; r < rows; ++r) ids[r] = r % N == 0 ? -1 : static_cast<std::int32_t>(rng.uniform() * V);
  const auto tok = randv(V * D, 1), pos = randv(N * D, 2), cls = randv(D, 4), dx = randv(rows * D, 5);
  std::vector<float> x(rows * D), dtok(V * D, 0.5f), dpos(N * D, 0.25f), dcls(D, 1.0f);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < D; ++c) {
      x[r * D + c] = (ids[r] < 0 ? cls[c] : tok[ids[r] * D + c]) + pos[(r % N) * D + c];
    }
  auto gdtok = dtok, gdpos = dpos, gdcls = dcls;  // accumulated onto, as the CPU does
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < D; ++c) {
      (ids[r] < 0 ? dcls[c] : dtok[ids[r] * D + c]) += dx[r * D + c];
      dpos[(r % N) * D + c] += dx[r * D + c];
    }
  std::vector<std::int32_t> by_id;
  std::vector<std::int64_t> starts;
  device_ops::make_rows_by_id(ids.data(), rows, V, by_id, starts);
  Tensor d_ids = on_device(ids), d_tok = on_device(tok), d_pos = on_device(pos), d_cls = on_device(cls),
         d_dx = on_device(dx), d_by = on_device(by_id), d_starts = on_device(starts), d_dtok = on_device(gdtok),
         d_dpos = on_device(gdpos), d_dcls = on_device(gdcls);
  Tensor d_x({rows * D}, MemCategory::data, "x", Device::cuda);
  cuda::embedding_forward(ptr<std::int32_t>(d_ids), d_tok.data(), d_pos.data(), d_cls.data(), rows, N, D, d_x.data());
  CHECK(to_host(d_x, x.size()) == x);  // one addition per element: exact
  cuda::embedding_backward(d_dx.data(), ptr<std::int32_t>(d_by), ptr<std::int64_t>(d_starts), V, rows, N, D,
                           d_dtok.data(), d_dpos.data(), d_dcls.data());
  CHECK(max_abs_diff(to_host(d_dtok, dtok.size()), dtok) < 1e-5);
  CHECK(max_abs_diff(to_host(d_dpos, dpos.size()), dpos) < 1e-5);
  CHECK(max_abs_diff(to_host(d_dcls, dcls.size()), dcls) < 1e-5);
}

TEST_CASE("GELU, ReLU, residual and dropout products on the GPU equal the CPU formulas", "[cuda][train]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  const std::int64_t n = 1000;
  const auto m = randv(n, 1, 2.0), d = randv(n, 2), mask0 = randv(n, 3);
  std::vector<float> mask(n);
  for (std::int64_t i = 0; i < n; ++i) mask[i] = mask0[i] > 0 ? 1.0f / 0.9f : 0.0f;
  Tensor dm = on_device(m), dd = on_device(d), dmask = on_device(mask), out({n}, MemCategory::data, "out", Device::cuda);
  std::vector<float> g(n), dg(n), sum(n), prod(n), relu(n), drelu(n);
  for (std::int64_t i = 0; i < n; ++i) {
    const float x = m[i];
    g[i] = 0.5f * x * (1.0f + std::erf(x * 0.70710678f));
    dg[i] = d[i] * (0.5f * (1.0f + std::erf(x * 0.70710678f)) + x * 0.39894228f * std::exp(-0.5f * x * x));
    sum[i] = m[i] + d[i];
    prod[i] = d[i] * mask[i];
    relu[i] = std::max(m[i], 0.0f);
    drelu[i] = m[i] <= 0.0f ? 0.0f : d[i];
  }
  // erff on the GPU and std::erf may differ in the last bits (values reach about 8: an ulp is 1e-6).
  cuda::gelu_forward(dm.data(), n, out.data());
  CHECK(max_abs_diff(to_host(out, n), g) < 1e-5);
  cuda::copy(out.data(), d.data(), n * sizeof(float));
  cuda::gelu_backward(dm.data(), n, out.data());
  CHECK(max_abs_diff(to_host(out, n), dg) < 1e-5);
  cuda::add(dm.data(), dd.data(), n, out.data());
  CHECK(to_host(out, n) == sum);
  cuda::multiply_into(dd.data(), dmask.data(), n, out.data());
  CHECK(to_host(out, n) == prod);
  cuda::copy(out.data(), d.data(), n * sizeof(float));
  cuda::multiply(out.data(), dmask.data(), n);
  CHECK(to_host(out, n) == prod);
  cuda::relu_forward(dm.data(), n, out.data());
  CHECK(to_host(out, n) == relu);
  cuda::copy(out.data(), d.data(), n * sizeof(float));
  cuda::relu_backward(dm.data(), n, out.data());
  CHECK(to_host(out, n) == drelu);
  // Dropout masks drawn on the device: the CPU's, bit for bit (the counter-based stream of nn/random.hpp).
  std::vector<float> v_cpu = d, mask_cpu(n);
  device_ops::dropout_forward(Device::cpu, 77, 0.9f, v_cpu.data(), mask_cpu.data(), n);
  cuda::copy(out.data(), d.data(), n * sizeof(float));
  cuda::dropout_forward(77, 0.9f, out.data(), dmask.data(), n);
  CHECK(to_host(out, n) == v_cpu);
  CHECK(to_host(dmask, n) == mask_cpu);
}

TEST_CASE("pooling, two-tower features and the loss on the GPU equal the encoder's loops", "[cuda][train]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  const std::int64_t b = 3, seqs = 2 * b, N = 9, D = 6, C = 5;
  const auto xf = randv(seqs * N * D, 1), dpooled = randv(seqs * D, 2), df = randv(b * 4 * D, 3),
             logits = randv(b * C, 4, 3.0);
  std::vector<std::uint8_t> mask(seqs * N, 1);
  for (std::int64_t q = 0; q < seqs; ++q)
    for (std::int64_t t = N - q; t < N; ++t) mask[q * N + t] = 0;  // sequence q has q padded rows
  const std::vector<int> labels = {4, 0, 2};
  // CPU: the loops of Encoder::forward / backward.
  std::vector<float> pooled(seqs * D, 0.0f), counts(seqs), dxf(seqs * N * D, 0.0f), cls(seqs * D), dcls(seqs * N * D, 0.0f);
  for (std::int64_t q = 0; q < seqs; ++q) {
    std::int64_t count = 0;
    for (std::int64_t t = 0; t < N; ++t)
      if (mask[q * N + t]) {
        ++count;
        for (std::int64_t c = 0; c < D; ++c) pooled[q * D + c] += xf[(q * N + t) * D + c];
      }
    counts[q] = static_cast<float>(count);
    for (std::int64_t c = 0; c < D; ++c) {
      pooled[q * D + c] /= static_cast<float>(count);
      cls[q * D + c] = xf[q * N * D + c];
      dcls[q * N * D + c] = dpooled[q * D + c];
    }
    for (std::int64_t t = 0; t < N; ++t)
      if (mask[q * N + t])
        for (std::int64_t c = 0; c < D; ++c) dxf[(q * N + t) * D + c] = dpooled[q * D + c] / static_cast<float>(count);
  }
  std::vector<float> feats(b * 4 * D), dpair(seqs * D);
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t c = 0; c < D; ++c) {
      const float u = pooled[i * D + c], v = pooled[(b + i) * D + c];
      const float* d = df.data() + i * 4 * D;
      feats[i * 4 * D + c] = u, feats[i * 4 * D + D + c] = v;
      feats[i * 4 * D + 2 * D + c] = u * v, feats[i * 4 * D + 3 * D + c] = u - v;
      dpair[i * D + c] = d[c] + v * d[2 * D + c] + d[3 * D + c];
      dpair[(b + i) * D + c] = d[D + c] + u * d[2 * D + c] - d[3 * D + c];
    }
  std::vector<float> probs(b * C), dlogits(b * C);
  std::vector<double> loss(b);
  for (std::int64_t i = 0; i < b; ++i) {
    const float* z = logits.data() + i * C;
    const float mx = *std::max_element(z, z + C);
    double sum = 0;
    for (std::int64_t k = 0; k < C; ++k) sum += std::exp(static_cast<double>(z[k] - mx));
    for (std::int64_t k = 0; k < C; ++k) probs[i * C + k] = static_cast<float>(std::exp(double(z[k] - mx)) / sum);
    loss[i] = std::log(sum) + mx - z[labels[i]];
    for (std::int64_t k = 0; k < C; ++k)
      dlogits[i * C + k] = (probs[i * C + k] - (k == labels[i] ? 1.0f : 0.0f)) / static_cast<float>(b);
  }

  Tensor d_xf = on_device(xf), d_mask = on_device(mask), d_dpooled = on_device(dpooled), d_df = on_device(df),
         d_logits = on_device(logits), d_labels = on_device(labels);
  Tensor d_pooled({seqs * D}, MemCategory::data, "pooled", Device::cuda), d_counts({seqs}, MemCategory::data, "counts", Device::cuda),
         d_dxf({seqs * N * D}, MemCategory::data, "dxf", Device::cuda), d_out({b * 4 * D}, MemCategory::data, "out", Device::cuda),
         d_probs({b * C}, MemCategory::data, "probs", Device::cuda), d_loss({2 * b}, MemCategory::data, "loss", Device::cuda);
  const auto* m8 = reinterpret_cast<const std::uint8_t*>(d_mask.data());
  cuda::mean_pool_forward(d_xf.data(), m8, seqs, N, D, d_pooled.data(), d_counts.data());
  CHECK(max_abs_diff(to_host(d_pooled, pooled.size()), pooled) < 1e-6);
  CHECK(to_host(d_counts, counts.size()) == counts);
  cuda::mean_pool_backward(d_dpooled.data(), m8, d_counts.data(), seqs, N, D, d_dxf.data());
  CHECK(to_host(d_dxf, dxf.size()) == dxf);
  cuda::cls_pool_forward(d_xf.data(), seqs, N, D, d_out.data());
  CHECK(to_host(d_out, cls.size()) == cls);
  cuda::cls_pool_backward(d_dpooled.data(), seqs, N, D, d_dxf.data());
  CHECK(to_host(d_dxf, dcls.size()) == dcls);
  cuda::pair_features_forward(d_pooled.data(), b, D, d_out.data());
  CHECK(max_abs_diff(to_host(d_out, feats.size()), feats) < 1e-6);
  Tensor d_pooled_cpu = on_device(pooled);  // the backward from the CPU's pooled, to compare exactly
  cuda::pair_features_backward(d_pooled_cpu.data(), d_df.data(), b, D, d_dpooled.data());
  CHECK(max_abs_diff(to_host(d_dpooled, dpair.size()), dpair) < 1e-6);
  cuda::softmax_cross_entropy(d_logits.data(), reinterpret_cast<const int*>(d_labels.data()), b, C, d_probs.data(),
                              reinterpret_cast<double*>(d_loss.data()));
  CHECK(max_abs_diff(to_host(d_probs, probs.size()), probs) < 1e-7);
  std::vector<double> gl(b);
  cuda::copy(gl.data(), d_loss.data(), b * sizeof(double));
  for (std::int64_t i = 0; i < b; ++i) CHECK(gl[i] == Approx(loss[i]).epsilon(1e-12));
  cuda::cross_entropy_backward(d_probs.data(), reinterpret_cast<const int*>(d_labels.data()), b, C,
                               static_cast<float>(b), d_out.data());
  CHECK(max_abs_diff(to_host(d_out, dlogits.size()), dlogits) < 1e-7);
}

TEST_CASE("AdamW and the gradient norm on the GPU follow the CPU optimiser", "[cuda][train]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  const std::int64_t n = 70000;  // more than one sum-of-squares chunk and one block
  Param prm;
  prm.name = "w";
  prm.value = Tensor({n}, MemCategory::parameters, "w");
  prm.grad = Tensor({n}, MemCategory::gradients, "w grad");
  const auto p0 = randv(n, 1), g = randv(n, 2, 0.1);
  std::copy(p0.begin(), p0.end(), prm.value.data());
  std::copy(g.begin(), g.end(), prm.grad.data());
  const AdamWConfig cfg{.weight_decay = 0.01};
  AdamW cpu({{"w", &prm}}, cfg);
  Tensor dp = on_device(p0), dg = on_device(g), dm = on_device(std::vector<float>(n, 0.0f)),
         dv = on_device(std::vector<float>(n, 0.0f));
  for (int t = 1; t <= 3; ++t) {
    const double lr = 1e-3 * t;
    cpu.step(lr);
    // The scalars exactly as AdamW::step forms them.
    const double c1 = 1.0 - std::pow(cfg.beta1, t), c2 = 1.0 - std::pow(cfg.beta2, t);
    cuda::adamw_update(dp.data(), dg.data(), dm.data(), dv.data(), n, static_cast<float>(cfg.beta1),
                       static_cast<float>(cfg.beta2), static_cast<float>(lr * cfg.weight_decay),
                       static_cast<float>(lr / c1), static_cast<float>(1.0 / std::sqrt(c2)), static_cast<float>(cfg.eps));
  }
  const std::vector<float> cpu_p(prm.value.data(), prm.value.data() + n);
  CHECK(max_abs_diff(to_host(dp, n), cpu_p) < 2e-6);  // nvcc may fuse multiply-adds the CPU rounds twice
  double ss = 0;
  for (float v : g) ss += static_cast<double>(v) * v;
  CHECK(cuda::sum_of_squares({{dg.data(), n}}) == Approx(ss).epsilon(1e-12));
  CHECK(cuda::sum_of_squares({{dg.data(), 0}}) == 0.0);
  // Several tensors (one of them empty, one spanning several partial sums) in one call.
  const auto big = randv(10000, 8);
  Tensor dbig = on_device(big);
  double ss_big = ss;
  for (float v : big) ss_big += static_cast<double>(v) * v;
  CHECK(cuda::sum_of_squares({{dg.data(), n}, {dg.data(), 0}, {dbig.data(), 10000}}) == Approx(ss_big).epsilon(1e-12));
}
#endif
