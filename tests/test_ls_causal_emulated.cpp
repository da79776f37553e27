// The kernels of causal ls on the GPU (attention_impls/cuda/ls_causal_kernels.cuh), the very code the GPU
// runs, on an emulated thread block (tests/simt.hpp), against the joint softmax computed in float64 from
// its definition: query t attends to the compressed vectors of the chunks before its own (those of chunks
// with a real position) and to the real window keys u in [t - w + 1, t]. The layer around the kernels
// (LN_L, the chunk projection and LN_G, cuBLAS products) is the CUDA module's and is tested on a GPU.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/host_device.hpp"
#include "nn/random.hpp"
#include "tests/flash_reference.hpp"
#include "tests/simt.hpp"

namespace lsb {
namespace {
namespace emulated {
#include "tests/simt_dialect.hpp"  // first: the dialect the kernels are written in

#include "attention_impls/cuda/ls_causal_kernels.cuh"
}  // namespace emulated

// Float64 outputs of the causal ls core for one problem.
struct Reference {
  std::vector<double> C, lse, delta, dQ, dKt, dVt, dKc, dVc;
};

struct Problem {
  std::int64_t b, n, h, d, w, l, r;
  std::int64_t D() const { return h * d; }
  std::int64_t nc() const { return n / l; }
  std::vector<float> Q{}, Kt{}, Vt{}, Kc{}, Vc{}, dC{};  // (b, n, D) and (b, n/l*r, D)
  std::vector<std::uint8_t> mask{};                      // (b, n)
  std::vector<float> chunk_real{};                       // (b, n/l)
};

Reference reference(const Problem& p, const std::vector<float>& C_in) {
  const std::int64_t D = p.D(), nk = p.nc() * p.r;
  Reference r{std::vector<double>(p.Q.size()),      std::vector<double>(p.b * p.h * p.n),
              std::vector<double>(p.b * p.h * p.n), std::vector<double>(p.Q.size()),
              std::vector<double>(p.Q.size()),      std::vector<double>(p.Q.size()),
              std::vector<double>(p.Kc.size()),     std::vector<double>(p.Kc.size())};
  for (std::int64_t bi = 0; bi < p.b; ++bi)
    for (std::int64_t hi = 0; hi < p.h; ++hi)
      for (std::int64_t t = 0; t < p.n; ++t) {
        // The keys t sees: (is compressed, row index).
        std::vector<std::pair<bool, std::int64_t>> keys;
        for (std::int64_t j = 0; j < p.r * (t / p.l); ++j)
          if (p.chunk_real[bi * p.nc() + j / p.r] != 0.0f) keys.emplace_back(true, j);
        for (std::int64_t u = std::max<std::int64_t>(0, t - p.w + 1); u <= t && p.w > 0; ++u)
          if (p.mask[bi * p.n + u]) keys.emplace_back(false, u);
        auto at = [&](bool comp, std::int64_t row, std::int64_t k) {
          return ((comp ? bi * nk : bi * p.n) + row) * D + hi * p.d + k;
        };
        const std::int64_t q = (bi * p.n + t) * D + hi * p.d, stat = (bi * p.h + hi) * p.n + t;
        std::vector<double> s(keys.size());
        double mx = -INFINITY;
        for (std::size_t j = 0; j < keys.size(); ++j) {
          const auto& K = keys[j].first ? p.Kc : p.Kt;
          for (std::int64_t k = 0; k < p.d; ++k) s[j] += double(p.Q[q + k]) * K[at(keys[j].first, keys[j].second, k)];
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double& x : s) sum += x = std::exp(x - mx);
        r.lse[stat] = keys.empty() ? -INFINITY : mx + std::log(sum);
        for (double& x : s) x /= sum;  // P
        for (std::int64_t k = 0; k < p.d; ++k) {
          for (std::size_t j = 0; j < keys.size(); ++j) {
            const auto& V = keys[j].first ? p.Vc : p.Vt;
            r.C[q + k] += s[j] * V[at(keys[j].first, keys[j].second, k)];
          }
          r.delta[stat] += double(p.dC[q + k]) * C_in[q + k];  // from the C the kernel is given
        }
        for (std::size_t j = 0; j < keys.size(); ++j) {
          const bool comp = keys[j].first;
          const auto& K = comp ? p.Kc : p.Kt;
          const auto& V = comp ? p.Vc : p.Vt;
          double dp = 0;
          for (std::int64_t k = 0; k < p.d; ++k) dp += double(p.dC[q + k]) * V[at(comp, keys[j].second, k)];
          const double ds = s[j] * (dp - r.delta[stat]);
          auto& dK = comp ? r.dKc : r.dKt;
          auto& dV = comp ? r.dVc : r.dVt;
          for (std::int64_t k = 0; k < p.d; ++k) {
            r.dQ[q + k] += ds * K[at(comp, keys[j].second, k)];
            dK[at(comp, keys[j].second, k)] += ds * p.Q[q + k];
            dV[at(comp, keys[j].second, k)] += s[j] * p.dC[q + k];
          }
        }
      }
  return r;
}


}  // namespace

// b = 2 (the second example's last 9 positions padding: its last chunk has no real position, the one
// before is cut), h = 2 heads of d = 40 (two dims on some lanes); window w = 5 with r = 2 vectors per
// chunk of l = 8, then no compression (r = 0), then compression only (w = 0: the first chunk's queries
// see nothing, lse = -inf, C = 0); n = 72 (more than 32 keys for the late queries: the 32-key loop runs
// twice).
TEST_CASE("causal ls's CUDA kernels on an emulated thread block equal the float64 definition",
          "[mma][emulated][causal]") {
  struct Shape {
    std::int64_t w, r;
  };
  for (const Shape shape : {Shape{5, 2}, Shape{5, 0}, Shape{0, 3}}) {
    Problem p{2, 72, 2, 40, shape.w, 8, shape.r};
    INFO("w = " << p.w << ", r = " << p.r);
    const std::int64_t D = p.D(), size = p.b * p.n * D, csize = p.b * p.nc() * p.r * D;
    Rng rng(11 + p.w + p.r);
    auto fill = [&](std::vector<float>& v, std::int64_t count, double scale) {
      v.resize(count);
      for (auto& x : v) x = static_cast<float>(rng.normal() * scale);
    };
    fill(p.Q, size, 0.4);
    fill(p.Kt, size, 0.4);
    fill(p.Vt, size, 1.0);
    fill(p.dC, size, 1.0);
    fill(p.Kc, csize, 0.4);
    fill(p.Vc, csize, 1.0);
    p.mask.assign(p.b * p.n, 1);
    for (std::int64_t t = p.n - 9; t < p.n; ++t) p.mask[p.n + t] = 0;

    const emulated::CausalLs s{p.b, p.n, p.h, p.d, p.w, p.l, p.r};
    const std::int64_t chunks = p.b * p.nc();
    p.chunk_real.assign(chunks, -1.0f);
    simt::launch(static_cast<unsigned>((chunks + emulated::kChunkThreads - 1) / emulated::kChunkThreads), 1,
                 emulated::kChunkThreads, 0,
                 [&] { emulated::chunk_real_kernel(p.mask.data(), chunks, p.l, p.chunk_real.data()); });
    for (std::int64_t c = 0; c < chunks; ++c) CHECK(p.chunk_real[c] == (c == chunks - 1 ? 0.0f : 1.0f));

    const unsigned row_blocks = static_cast<unsigned>((p.n + emulated::kWarps - 1) / emulated::kWarps);
    const unsigned bh = static_cast<unsigned>(p.b * p.h);
    const float* Kc = p.r > 0 ? p.Kc.data() : nullptr;
    const float* Vc = p.r > 0 ? p.Vc.data() : nullptr;
    std::vector<float> C(size, NAN), lse(p.b * p.h * p.n, NAN);
    simt::launch(row_blocks, bh, emulated::kThreads, 0, [&] {
      emulated::causal_ls_forward_kernel(s, p.Q.data(), p.Kt.data(), p.Vt.data(), Kc, Vc, p.mask.data(),
                                         p.chunk_real.data(), C.data(), lse.data());
    });
    const Reference ref = reference(p, C);
    CHECK(test::rel_err(C, ref.C) <= 1e-5);
    CHECK(test::rel_err(lse, ref.lse) <= 1e-6);

    std::vector<float> delta(p.b * p.h * p.n, NAN), dQ(size, NAN), dKt(size, NAN), dVt(size, NAN);
    simt::launch(row_blocks, bh, emulated::kThreads, 0, [&] {
      emulated::causal_ls_dq_kernel(s, p.Q.data(), p.Kt.data(), p.Vt.data(), Kc, Vc, p.mask.data(), p.chunk_real.data(),
                                    C.data(), p.dC.data(), lse.data(), delta.data(), dQ.data());
    });
    CHECK(test::rel_err(delta, ref.delta) <= 1e-5);
    CHECK(test::rel_err(dQ, ref.dQ) <= 1e-5);
    simt::launch(row_blocks, bh, emulated::kThreads, 0, [&] {
      emulated::causal_ls_dkdv_kernel<false>(s, p.Q.data(), p.Kt.data(), p.Vt.data(), p.mask.data(),
                                             p.chunk_real.data(), p.dC.data(), lse.data(), delta.data(), dKt.data(),
                                             dVt.data());
    });
    CHECK(test::rel_err(dKt, ref.dKt) <= 1e-5);
    CHECK(test::rel_err(dVt, ref.dVt) <= 1e-5);
    if (p.r > 0) {
      std::vector<float> dKc(csize, NAN), dVc(csize, NAN);
      const unsigned comp_blocks = static_cast<unsigned>((p.nc() * p.r + emulated::kWarps - 1) / emulated::kWarps);
      simt::launch(comp_blocks, bh, emulated::kThreads, 0, [&] {
        emulated::causal_ls_dkdv_kernel<true>(s, p.Q.data(), p.Kc.data(), p.Vc.data(), p.mask.data(),
                                              p.chunk_real.data(), p.dC.data(), lse.data(), delta.data(), dKc.data(),
                                              dVc.data());
      });
      CHECK(test::rel_err(dKc, ref.dKc) <= 1e-5);
      CHECK(test::rel_err(dVc, ref.dVc) <= 1e-5);
    }
  }
}

}  // namespace lsb
