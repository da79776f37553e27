// The CUDA part of the tree: compiled whenever nvcc exists; these checks run for real where a GPU is
// present and say why they skip where none is.
#include <catch2/catch.hpp>

#include <cstring>

#include <algorithm>
#include <cmath>

#include "attention_impls/registry.hpp"
#include "attention_impls/reference_f64.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/memory.hpp"
#include "nn/random.hpp"
#include "nn/tensor.hpp"
#include "tests/helpers.hpp"

using namespace lsb;

TEST_CASE("device query and tracked CUDA allocations", "[cuda]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    CHECK_THROWS(cuda::query(0));
    CHECK_FALSE(cuda::unavailable_reason().empty());
    return;
  }
  const auto info = cuda::query(0);
  CHECK(!info.name.empty());
  CHECK(info.memory_bytes > (1LL << 30));
  CHECK(info.sm_major >= 5);
  auto& mt = MemoryTracker::instance();
  const auto before = mt.stats(Device::cuda).live;
  {
    Tensor t({1 << 20}, MemCategory::activations, "device buffer", Device::cuda);
    CHECK(t.data() != nullptr);
    CHECK(mt.stats(Device::cuda).live - before == 4 << 20);
  }
  CHECK(mt.stats(Device::cuda).live == before);
  mt.set_budget(Device::cuda, before + (1 << 20));
  CHECK_THROWS_AS(Tensor({1 << 20}, MemCategory::activations, "over budget", Device::cuda), OutOfMemory);
  mt.set_budget(Device::cuda, 0);
}

// ---- every variant on the GPU against the CPU --------------------------------------------------

namespace {

using test::Problem;

// Specs covering every variant, the ls switches and more than one flash tile; n = 168 is a
// multiple of every w used.
const std::vector<std::string> kCudaSpecs = {"full",         "flash",      "linformer:k=16", "linformer:k=9,share=separate",
                                             "sliding:R=5",  "sliding:R=0", "ls:w=4,r=6",    "ls:w=8,r=32",
                                             "ls:w=0,r=4",   "ls:w=4,r=0",  "ls:w=3,r=2",
                                             // 168 = 8 x 21 (the last segment all padding); an uneven split
                                             // with the convolution; an even kernel
                                             "nystromformer:m=8", "nystromformer:m=10,conv=5",
                                             "nystromformer:m=32,iters=4,conv=4",
                                             // a partial block of orthogonal features at d = 8
                                             "performer:features=20", "performer:features=64,seed=3",
                                             "lsra:K=3,Hc=2", "lsra:K=4,Hc=4"};

// A host vector's copy on the device (freed with the tensor).
Tensor upload(const void* src, std::size_t bytes, const char* what) {
  Tensor t({static_cast<std::int64_t>((bytes + 3) / 4)}, MemCategory::data, what, Device::cuda);
  cuda::copy(t.data(), src, bytes);
  return t;
}

std::vector<float> download(const Tensor& t) {
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  cuda::copy(v.data(), t.data(), v.size() * sizeof(float));
  return v;
}

std::vector<float> host_copy(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

// Forward and backward of one module on one device; x, mask and dy from the host problem.
struct Pass {
  std::vector<float> y, dx;
  std::vector<std::vector<float>> grads;
};

Pass run_pass(Attention& a, const Problem& p, const std::vector<float>& dy) {
  Pass out;
  a.zero_grad();
  if (a.device() == Device::cpu) {
    out.y.resize(p.x.size());
    out.dx.resize(p.x.size());
    a.forward(p.x.data(), p.mask.data(), p.b, p.n, out.y.data(), true);
    a.backward(dy.data(), out.dx.data());
    for (auto& prm : a.params()) out.grads.push_back(host_copy(prm.grad));
    return out;
  }
  const std::size_t fb = p.x.size() * sizeof(float);
  Tensor x = upload(p.x.data(), fb, "x"), m = upload(p.mask.data(), p.mask.size(), "mask"),
         g = upload(dy.data(), fb, "dy");
  Tensor y({static_cast<std::int64_t>(p.x.size())}, MemCategory::data, "y", Device::cuda);
  Tensor dx({static_cast<std::int64_t>(p.x.size())}, MemCategory::data, "dx", Device::cuda);
  a.forward(x.data(), reinterpret_cast<const std::uint8_t*>(m.data()), p.b, p.n, y.data(), true);
  a.backward(g.data(), dx.data());
  cuda::synchronize();
  out.y = download(y);
  out.dx = download(dx);
  for (auto& prm : a.params()) out.grads.push_back(download(prm.grad));
  return out;
}

// max |a - b| over max |b|, with the scale never below `floor` (gradients that are 0 in exact
// arithmetic, such as those of bk, compare their round-off against the scale of the others).
double rel_diff(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  return test::max_rel_diff(a, b, floor);
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// The GPU module against its CPU twin on one problem: the forward's error against float64 at most twice
// the CPU's (the spec's rule, floor 2e-6 where the CPU is nearly exact), the gradients within 1e-4 of the
// CPU's. Returns the GPU pass.
Pass check_gpu_against_cpu(Attention& cpu, Attention& gpu, const Problem& p, bool causal = false) {
  std::vector<float> dy(p.x.size());
  Rng rng(9);
  for (auto& v : dy) v = static_cast<float>(rng.normal());
  const Pass c = run_pass(cpu, p, dy), g = run_pass(gpu, p, dy);
  const auto ref = reference_attention(cpu.name(), cpu.resolved_params(), p.D, p.h, p.b, p.n, params_f64(cpu),
                                       test::to_f64(p.x), p.mask, {}, causal);
  const double cpu_err = compare_to_reference(c.y.data(), ref).max_rel;
  const double gpu_err = compare_to_reference(g.y.data(), ref).max_rel;
  INFO("forward error against float64: cpu " << cpu_err << ", cuda " << gpu_err);
  CHECK(gpu_err <= std::max(2 * cpu_err, 2e-6));
  // Backward: against the CPU's gradients (no float64 gradient is computed at this size).
  const double scale = max_abs(c.dx);
  CHECK(rel_diff(g.dx, c.dx, 0) <= 1e-4);
  for (std::size_t i = 0; i < c.grads.size(); ++i) {
    INFO("gradient of " << cpu.params()[i].name);
    CHECK(rel_diff(g.grads[i], c.grads[i], scale) <= 1e-4);
  }
  return g;
}

}  // namespace

TEST_CASE("every variant on CUDA matches the CPU forward and backward with padding present", "[cuda][attention]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    CHECK_THROWS_AS(make_attention(VariantSpec::parse("ls"), 32, 4, 64, Device::cuda), UsageError);
    return;
  }
  // d = 8 (the tests' usual size) and d = 64 (the LRA and GPU benchmark size).
  for (const auto& [D, h] : std::vector<std::pair<std::int64_t, std::int64_t>>{{32, 4}, {128, 2}}) {
    for (const auto& spec : kCudaSpecs) {
      INFO(spec << " D=" << D << " h=" << h);
      const Problem p = test::make_problem(2, 168, D, h, 37, 17);
      auto cpu = make_attention(VariantSpec::parse(spec), D, h, p.n);
      test::randomize(*cpu, 5);
      auto gpu = make_attention(VariantSpec::parse(spec), D, h, p.n, Device::cuda);
      REQUIRE(gpu->device() == Device::cuda);
      copy_param_values(*cpu, *gpu);
      check_gpu_against_cpu(*cpu, *gpu, p);
    }
  }
}

TEST_CASE("every causal form on CUDA matches the CPU, and its past outputs ignore the future", "[cuda][attention][causal]") {
  auto causal = [](const std::string& spec) {
    VariantSpec s = VariantSpec::parse(spec);
    s.causal = true;
    return s;
  };
  // The variants whose record has causal_cuda and a CPU form to compare with (cudnn has its own test).
  std::vector<std::string> specs;
  for (const auto& v : variants())
    if (v.causal_cuda && v.cuda_only.empty()) specs.push_back(v.spec());
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  specs.push_back("ls:w=24,l=8,r=2");  // windows shorter than n: both key sources cut
  for (const auto& spec : specs) {
    INFO(spec);
    const std::int64_t D = 128, h = 2;
    const Problem p = test::make_problem(2, 208, D, h, 37, 17);  // several tiles (n: whole chunks of ls); padding at one end
    auto cpu = make_attention(causal(spec), D, h, p.n);
    test::randomize(*cpu, 5);
    auto gpu = make_attention(causal(spec), D, h, p.n, Device::cuda);
    REQUIRE(gpu->causal());
    copy_param_values(*cpu, *gpu);
    const Pass g = check_gpu_against_cpu(*cpu, *gpu, p, true);
    // The future: inputs after t0 changed, outputs up to t0 the same bits.
    const std::int64_t t0 = 70;
    Problem q = p;
    for (std::int64_t bi = 0; bi < p.b; ++bi)
      for (std::int64_t t = t0 + 1; t < p.n; ++t)
        for (std::int64_t e = 0; e < D; ++e) q.x[(bi * p.n + t) * D + e] += 1.5f;
    const Pass g2 = run_pass(*gpu, q, std::vector<float>(p.x.size(), 1.0f));
    bool same = true;
    for (std::int64_t bi = 0; bi < p.b; ++bi)
      for (std::int64_t t = 0; t <= t0; ++t)
        for (std::int64_t e = 0; e < D; ++e) {
          const std::size_t i = static_cast<std::size_t>((bi * p.n + t) * D + e);
          same = same && std::memcmp(&g.y[i], &g2.y[i], sizeof(float)) == 0;
        }
    CHECK(same);
  }
}

TEST_CASE("CUDA variants are deterministic and keep padded outputs at the output bias", "[cuda][attention]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  for (const auto& spec : kCudaSpecs) {
    INFO(spec);
    const Problem p = test::make_problem(2, 168, 64, 4, 40, 23);
    auto gpu = make_attention(VariantSpec::parse(spec), p.D, p.h, p.n, Device::cuda);
    gpu->init_params(3);
    std::vector<float> dy(p.x.size(), 0.5f);
    const Pass a = run_pass(*gpu, p, dy), b = run_pass(*gpu, p, dy);
    CHECK(a.y == b.y);  // bit-identical: no atomics anywhere
    CHECK(a.dx == b.dx);
    CHECK(a.grads == b.grads);
    // Padded queries of the second example output bo (lsra: a_bo on its attention half).
    const bool lsra = gpu->name() == "lsra";
    const auto bo = download(gpu->param(lsra ? "a_bo" : "bo").value);
    for (std::int64_t t = p.n - 40; t < p.n; ++t)
      for (std::int64_t c = 0; c < (lsra ? p.D / 2 : p.D); ++c) REQUIRE(a.y[(p.n + t) * p.D + c] == bo[c]);
  }
}

TEST_CASE("the same seed initialises the same parameters on CPU and CUDA", "[cuda][attention]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  auto cpu = make_attention(VariantSpec::parse("ls:w=8,r=4"), 32, 2, 64);
  auto gpu = make_attention(VariantSpec::parse("ls:w=8,r=4"), 32, 2, 64, Device::cuda);
  cpu->init_params(42);
  gpu->init_params(42);
  for (auto& prm : cpu->params()) {
    INFO(prm.name);
    CHECK(download(gpu->param(prm.name).value) == host_copy(prm.value));
  }
}

TEST_CASE("CUDA attention allocates on the device tracker within its analytic plan", "[cuda][memory]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  auto& mt = MemoryTracker::instance();
  for (const std::string spec : {"full", "flash", "ls:w=8,r=32", "sliding:R=16", "nystromformer:m=64,conv=3",
                                 "performer:features=128", "lsra:K=7,Hc=4"}) {
    INFO(spec);
    const Problem p = test::make_problem(2, 256, 64, 2, 0, 1);
    auto gpu = make_attention(VariantSpec::parse(spec), p.D, p.h, p.n, Device::cuda);
    const std::vector<float> dy(p.x.size(), 1.0f);
    const auto cpu_before = mt.stats(Device::cpu).live;
    run_pass(*gpu, p, dy);  // warm-up: the module's buffers are allocated once
    mt.reset_peak(Device::cuda);
    const auto live_before = mt.stats(Device::cuda).live;
    const auto driver_before = mt.stats(Device::cuda).driver_allocations;
    run_pass(*gpu, p, dy);
    const auto st = mt.stats(Device::cuda);
    // The pass's inputs and outputs are new tensors, but their blocks come from the cache.
    CHECK(st.driver_allocations == driver_before);
    CHECK(st.reserved >= st.live);
    // Nothing new is kept by the module after warm-up; the peak above it is the pass's inputs and
    // outputs (x, mask, dy, y, dx), never a hidden host copy.
    CHECK(st.live == live_before);
    CHECK(st.peak - live_before <= 5 * p.b * p.n * p.D * 4 + 64);
    CHECK(mt.stats(Device::cpu).live - cpu_before < (1 << 16));
    CHECK(gpu->analytic_bytes(p.b, p.n, true) > 0);
  }
}

TEST_CASE("long sequences on CUDA: split-K landmark products and windows too wide to stage", "[cuda][attention]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  // n = 2048 takes ls's landmark products (r x n)(n x d) to the split-K path of cuda::gemm;
  // sliding:R=1500 at d = 64 needs more shared memory than a block has, so rows come from global memory.
  for (const std::string spec : {"ls:w=16,r=16", "sliding:R=1500", "linformer:k=32"}) {
    INFO(spec);
    const Problem p = test::make_problem(2, 2048, 64, 1, 300, 29);
    auto cpu = make_attention(VariantSpec::parse(spec), p.D, p.h, p.n);
    test::randomize(*cpu, 7);
    auto gpu = make_attention(VariantSpec::parse(spec), p.D, p.h, p.n, Device::cuda);
    copy_param_values(*cpu, *gpu);
    std::vector<float> dy(p.x.size());
    Rng rng(4);
    for (auto& v : dy) v = static_cast<float>(rng.normal());
    const Pass c = run_pass(*cpu, p, dy), g = run_pass(*gpu, p, dy);
    CHECK(rel_diff(g.y, c.y, 0) <= 1e-5);
    const double scale = max_abs(c.dx);
    CHECK(rel_diff(g.dx, c.dx, 0) <= 1e-4);
    for (std::size_t i = 0; i < c.grads.size(); ++i) {
      INFO("gradient of " << cpu->params()[i].name);
      CHECK(rel_diff(g.grads[i], c.grads[i], scale) <= 1e-4);
    }
  }
}

#if LSBENCH_HAVE_CUDA
#include "attention_impls/cuda/cudnn_sdpa.hpp"
#include "attention_impls/cuda/flash.hpp"
#include "nn/cuda/blas.hpp"
#include "nn/cuda/cudnn.hpp"
#include "nn/matmul.hpp"
#include "tests/flash_reference.hpp"

namespace {
// One product c (M x N) = a (M x K) b (K x N), with a and b given transposed where ta / tb.
struct GemmCase {
  std::int64_t M, N, K;
  bool ta, tb;
};
std::ostream& operator<<(std::ostream& o, const GemmCase& c) {
  return o << "M=" << c.M << " N=" << c.N << " K=" << c.K << " ta=" << c.ta << " tb=" << c.tb;
}
}  // namespace

using test::flash_reference;
using test::max_abs;
using test::rel_err;

// The tensor-core kernels behind flash under --precision bf16, against float64 on the bf16-rounded
// inputs: what is left is the rounding of P and dS to bf16 and fp32 accumulation. Every head-dim
// padding class (d = 8, 24, 64, 128: 1, 2, 4, 8 blocks of 16), one row, one whole tile, a tile cut
// short, a padded sequence and a sequence with no valid key; bidirectional and causal (n = 130: two
// query blocks, three key tiles, the diagonal ones masked, the ones after skipped; n = 300: the
// double-buffered tiles refilled twice over).
TEST_CASE("flash's tensor-core kernels equal float64 attention on bf16-rounded inputs", "[cuda][attention][bf16]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  if (cuda::query(0).sm_major < 8) {
    WARN("skipped: bf16 tensor cores need compute capability 8.0");
    return;
  }
  const std::int64_t b = test::kFlashSequences;
  const int h = 2;
  for (const bool causal : {false, true})
  for (const int d : {8, 24, 64, 128})
    for (const std::int64_t n : {std::int64_t(1), std::int64_t(64), std::int64_t(130), std::int64_t(300)}) {
      INFO("d = " << d << ", n = " << n << (causal ? ", causal" : ""));
      const std::int64_t D = h * d, size = b * n * D;
      const auto [Q, K, V, dO, mask] = test::flash_problem(n, h, d, 17 + d + n, true);
      const auto ref = flash_reference(Q, K, V, dO, mask, b, n, h, d, causal);

      const HeadLayout L{n, D, h, d};
      const int bh = static_cast<int>(b * h);
      Tensor dQin = upload(Q.data(), size * 4, "Q"), dKin = upload(K.data(), size * 4, "K"),
             dVin = upload(V.data(), size * 4, "V"), ddO = upload(dO.data(), size * 4, "dO"),
             dmask = upload(mask.data(), mask.size(), "mask");
      std::vector<float> delta(ref.delta.begin(), ref.delta.end());
      Tensor ddelta = upload(delta.data(), delta.size() * 4, "delta");
      Tensor O({size}, MemCategory::data, "O", Device::cuda), lse({b * h * n}, MemCategory::data, "lse", Device::cuda),
          dQ({size}, MemCategory::data, "dQ", Device::cuda), dK({size}, MemCategory::data, "dK", Device::cuda),
          dV({size}, MemCategory::data, "dV", Device::cuda);
      const auto* m = reinterpret_cast<const std::uint8_t*>(dmask.data());
      const std::int64_t packed_floats = (flash_bf16_packed_elements(L, bh) + 1) / 2;
      std::vector<Tensor> packs;
      for (const Tensor* src : {&dQin, &dKin, &dVin, &ddO}) {
        packs.emplace_back(Shape{packed_floats}, MemCategory::data, "packed", Device::cuda);
        flash_bf16_pack(src->data(), L, bh, reinterpret_cast<std::uint16_t*>(packs.back().data()));
      }
      const auto bits = [&](int i) { return reinterpret_cast<const std::uint16_t*>(packs[i].data()); };
      auto run = [&] {
        flash_bf16_forward(bits(0), bits(1), bits(2), m, L, bh, O.data(), lse.data(), causal);
        // The backward gets the reference's lse, so that its check does not inherit the forward's.
        std::vector<float> ref_lse(ref.lse.begin(), ref.lse.end());
        Tensor dlse = upload(ref_lse.data(), ref_lse.size() * 4, "reference lse");
        flash_bf16_backward(bits(0), bits(1), bits(2), bits(3), m, L, bh, dlse.data(), ddelta.data(), dQ.data(),
                            dK.data(), dV.data(), causal);
        cuda::synchronize();
        return std::vector<std::vector<float>>{download(O), download(lse), download(dQ), download(dK), download(dV)};
      };
      const auto got = run();
      CHECK(rel_err(got[0], ref.O) <= 0x1p-7);
      CHECK(rel_err(got[1], ref.lse) <= 1e-5);
      // With n = 1 every row's softmax is one key: dS, so dQ and dK, are 0 but for rounding.
      CHECK(rel_err(got[2], ref.dQ, max_abs(ref.dV)) <= 0x1p-7);
      CHECK(rel_err(got[3], ref.dK, max_abs(ref.dV)) <= 0x1p-7);
      CHECK(rel_err(got[4], ref.dV) <= 0x1p-7);
      for (std::int64_t t = 0; t < n * D; ++t) REQUIRE(got[0][2 * n * D + t] == 0.0f);  // no valid key: O = 0
      CHECK(got == run());  // no atomics: a repeat is bit-identical
    }
}

TEST_CASE("cuda::gemm equals the CPU matmul on strided, transposed and batched views", "[cuda][matmul]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  // The last two take the split-K path (small output, long contraction), one with beta = 1.
  for (const GemmCase cs : {GemmCase{37, 19, 23, false, false}, GemmCase{8, 33, 65, true, false},
                            GemmCase{16, 16, 40, false, true}, GemmCase{32, 64, 4096, true, false},
                            GemmCase{12, 20, 3000, true, true}}) {
    INFO(cs);
    const std::int64_t b0 = 2, b1 = 3, pad = 5;
    // a: (b0, b1, M, K) stored with padded rows (or as its transpose), likewise b; c row-major padded.
    const std::int64_t lda = (cs.ta ? cs.M : cs.K) + pad, ldb = (cs.tb ? cs.K : cs.N) + pad, ldc = cs.N + pad;
    const std::int64_t sa = (cs.ta ? cs.K : cs.M) * lda, sb = (cs.tb ? cs.N : cs.K) * ldb, sc = cs.M * ldc;
    std::vector<float> A(b0 * b1 * sa), B(b0 * b1 * sb), C(b0 * b1 * sc);
    Rng rng(11);
    for (auto& v : A) v = static_cast<float>(rng.normal());
    for (auto& v : B) v = static_cast<float>(rng.normal());
    for (auto& v : C) v = static_cast<float>(rng.normal());
    auto view = [&](const float* p, std::int64_t rows, std::int64_t cols, std::int64_t ld, bool t, std::int64_t st) {
      const MatRef m = t ? MatRef::rowmajor(p, cols, rows, ld).t() : MatRef::rowmajor(p, rows, cols, ld);
      return m.batched(b0, b1 * st, b1, st);
    };
    const float beta = cs.K == 3000 ? 1.0f : 0.0f;
    std::vector<float> expect = C;
    matmul(view(A.data(), cs.M, cs.K, lda, cs.ta, sa), view(B.data(), cs.K, cs.N, ldb, cs.tb, sb),
           view(expect.data(), cs.M, cs.N, ldc, false, sc), 0.5f, beta);
    Tensor dA = upload(A.data(), A.size() * 4, "A"), dB = upload(B.data(), B.size() * 4, "B"),
           dC = upload(C.data(), C.size() * 4, "C");
    cuda::gemm(view(dA.data(), cs.M, cs.K, lda, cs.ta, sa), view(dB.data(), cs.K, cs.N, ldb, cs.tb, sb),
               view(dC.data(), cs.M, cs.N, ldc, false, sc), 0.5f, beta);
    const auto got = download(dC);
    for (std::int64_t i = 0; i < b0 * b1; ++i)  // the padding between rows is never written
      for (std::int64_t r = 0; r < cs.M; ++r)
        for (std::int64_t c = cs.N; c < ldc; ++c) REQUIRE(got[i * sc + r * ldc + c] == C[i * sc + r * ldc + c]);
    CHECK(rel_diff(std::vector<float>(got.begin(), got.begin() + expect.size()), expect, 0) <= 1e-5);
  }
}

TEST_CASE("cuda::gemm in bf16 is the fp32-accumulated product of the rounded operands", "[cuda][matmul][bf16]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  // cuBLAS on staged operands (plain and transposed ones, a single-row output), then the split-K path.
  for (const GemmCase cs : {GemmCase{37, 19, 23, false, false}, GemmCase{8, 33, 65, true, false},
                            GemmCase{16, 16, 40, false, true}, GemmCase{1, 40, 24, false, true},
                            GemmCase{32, 64, 4096, true, false}}) {
    INFO(cs);
    const std::int64_t b0 = 2, b1 = 3;
    std::vector<float> A(b0 * b1 * cs.M * cs.K), B(b0 * b1 * cs.K * cs.N), C(b0 * b1 * cs.M * cs.N);
    Rng rng(12);
    for (auto& v : A) v = static_cast<float>(rng.normal());
    for (auto& v : B) v = static_cast<float>(rng.normal());
    std::vector<float> Ar(A), Br(B);
    for (auto& v : Ar) v = round_to_bf16(v);
    for (auto& v : Br) v = round_to_bf16(v);
    auto view = [&](const float* p, std::int64_t rows, std::int64_t cols, bool t) {
      const MatRef m = t ? MatRef::rowmajor(p, cols, rows, rows).t() : MatRef::rowmajor(p, rows, cols, cols);
      return m.batched(b0, b1 * rows * cols, b1, rows * cols);
    };
    std::vector<float> expect(C.size()), unrounded(C.size());
    matmul(view(Ar.data(), cs.M, cs.K, cs.ta), view(Br.data(), cs.K, cs.N, cs.tb), view(expect.data(), cs.M, cs.N, false));
    matmul(view(A.data(), cs.M, cs.K, cs.ta), view(B.data(), cs.K, cs.N, cs.tb), view(unrounded.data(), cs.M, cs.N, false));
    Tensor dA = upload(A.data(), A.size() * 4, "A"), dB = upload(B.data(), B.size() * 4, "B"),
           dC = upload(C.data(), C.size() * 4, "C");
    {
      const PrecisionScope bf16(Precision::bf16, Device::cuda);
      cuda::gemm(view(dA.data(), cs.M, cs.K, cs.ta), view(dB.data(), cs.K, cs.N, cs.tb),
                 view(dC.data(), cs.M, cs.N, false));
    }
    const auto got = download(dC);
    CHECK(rel_diff(got, expect, 0) <= 1e-5);
    CHECK(rel_diff(got, unrounded, 0) >= 1e-4);  // the operands really were rounded
  }
}

// The bf16 rule of docs/VARIANTS.md on the GPU, as tests/test_attention.cpp checks it on the CPU.
TEST_CASE("every CUDA variant in bf16 stays within the bf16 tolerance of float64", "[cuda][attention][bf16]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    return;
  }
  for (const auto& spec : kCudaSpecs) {
    INFO(spec);
    const Problem p = test::make_problem(2, 48, 32, 4, 13, 11);
    auto cpu = make_attention(VariantSpec::parse(spec), p.D, p.h, p.n);
    test::randomize(*cpu, 3);
    auto gpu = make_attention(VariantSpec::parse(spec), p.D, p.h, p.n, Device::cuda);
    copy_param_values(*cpu, *gpu);
    std::vector<float> dy(p.x.size());
    Rng rng(5);
    for (auto& v : dy) v = static_cast<float>(rng.normal());
    const Pass f32 = run_pass(*gpu, p, dy);  // the module's buffers exist from here on
    const auto live = MemoryTracker::instance().stats(Device::cuda).live;
    Pass b16;
    {
      const PrecisionScope bf16(Precision::bf16, Device::cuda);
      b16 = run_pass(*gpu, p, dy);
    }
    CHECK(MemoryTracker::instance().stats(Device::cuda).live == live);  // leaving bf16 freed the staging
    const auto ref = reference_attention(cpu->name(), cpu->resolved_params(), p.D, p.h, p.b, p.n, params_f64(*cpu),
                                         test::to_f64(p.x), p.mask);
    const double err = compare_to_reference(b16.y.data(), ref).max_rel;
    CHECK(err <= 0x1p-5);
    CHECK(err >= 0x1p-10);
    const double dx_scale = max_abs(f32.dx);
    CHECK(rel_diff(b16.dx, f32.dx, 0) <= 0x1p-5);
    for (std::size_t i = 0; i < f32.grads.size(); ++i) {
      INFO("gradient of " << gpu->params()[i].name);
      CHECK(rel_diff(b16.grads[i], f32.grads[i], dx_scale) <= 0x1p-5);
    }
  }
}

// Without a GPU cuDNN still checks each descriptor as it is finalized: every node of both graphs, so that
// an attribute of the wrong type or a shape that cannot broadcast fails here, not on the next GPU session.
TEST_CASE("cuDNN accepts every node of cudnn's forward and backward graphs", "[cudnn]") {
  if (const std::string why = cuda::cudnn_problem(); !why.empty()) {
    WARN("skipped: " << why);
    return;
  }
  for (const bool causal : {false, true}) {
    INFO((causal ? "causal" : "bidirectional"));
    CHECK_NOTHROW(cudnn_check_graph_nodes(2, 208, 2, 64, causal));
    CHECK_NOTHROW(cudnn_check_graph_nodes(1, 4096, 16, 64, causal));
    CHECK_NOTHROW(cudnn_check_graph_nodes(3, 100, 4, 128, causal));
  }
}

// cudnn (cuDNN's fused attention, bf16 only) against float64 attention and the CPU's exact attention (flash,
// the same parameters): bidirectional and causal, with padded keys; and what it refuses.
TEST_CASE("cudnn equals exact attention within the bf16 tolerance, and refuses what cuDNN cannot say", "[cuda][attention][bf16][cudnn]") {
  if (cuda::device_count() == 0) {
    WARN("skipped: " << cuda::unavailable_reason());
    CHECK_THROWS_AS(make_attention(VariantSpec::parse("cudnn"), 128, 2, 64, Device::cuda), UsageError);
    return;
  }
  if (const std::string why = cuda::cudnn_problem(); !why.empty()) {
    WARN("skipped: " << why);
    CHECK_THROWS_WITH(make_attention(VariantSpec::parse("cudnn"), 128, 2, 64, Device::cuda),
                      Catch::Contains("--variant cudnn"));
    return;
  }
  CHECK_THROWS_WITH(make_attention(VariantSpec::parse("cudnn"), 96, 8, 64, Device::cuda),
                    Catch::Contains("head dim 12"));  // not a multiple of 8
  for (const bool causal : {false, true}) {
    INFO((causal ? "causal" : "bidirectional"));
    VariantSpec flash = VariantSpec::parse("flash"), cudnn = VariantSpec::parse("cudnn");
    flash.causal = cudnn.causal = causal;
    const Problem p = test::make_problem(2, 208, 128, 2, 37, 17);  // d = 64; the second example padded at its end
    auto cpu = make_attention(flash, p.D, p.h, p.n);
    test::randomize(*cpu, 5);
    auto gpu = make_attention(cudnn, p.D, p.h, p.n, Device::cuda);
    copy_param_values(*cpu, *gpu);
    std::vector<float> dy(p.x.size());
    Rng rng(9);
    for (auto& v : dy) v = static_cast<float>(rng.normal());
    CHECK_THROWS_WITH(run_pass(*gpu, p, dy), Catch::Contains("--precision bf16"));
    Pass g;
    {
      const PrecisionScope bf16(Precision::bf16, Device::cuda);
      g = run_pass(*gpu, p, dy);
    }
    const Pass c = run_pass(*cpu, p, dy);
    const auto ref = reference_attention("cudnn", cpu->resolved_params(), p.D, p.h, p.b, p.n, params_f64(*cpu),
                                         test::to_f64(p.x), p.mask, {}, causal);
    const double err = compare_to_reference(g.y.data(), ref).max_rel;
    CHECK(err <= 0x1p-5);
    CHECK(err >= 0x1p-10);  // it really ran in bf16
    const double dx_scale = max_abs(c.dx);
    CHECK(rel_diff(g.dx, c.dx, 0) <= 0x1p-5);
    for (std::size_t i = 0; i < c.grads.size(); ++i) {
      INFO("gradient of " << gpu->params()[i].name);
      CHECK(rel_diff(g.grads[i], c.grads[i], dx_scale) <= 0x1p-5);
    }
    // A valid key after a padded one cannot be said as a key count: refused, not silently wrong.
    Problem holes = p;
    holes.mask[5] = 0;
    const PrecisionScope bf16(Precision::bf16, Device::cuda);
    CHECK_THROWS_WITH(run_pass(*gpu, holes, dy), Catch::Contains("pad at the end"));
  }
}
#endif
