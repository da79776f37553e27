#include "nn/matmul.hpp"

#include <array>
#include <bit>
#include <unordered_map>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/tensor.hpp"
#if LSBENCH_HAVE_CUDA
#endif

namespace lsb {
namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& cpu_stream() {
  static dnnl::stream s(cpu_engine());
  return s;
}

using Key = std::array<std::int64_t, 26>;  // 3 views x 8 values, alpha, beta+bias+precision

Precision g_precision = Precision::fp32;

struct Cached {
  dnnl::matmul prim;
  dnnl::memory::desc a, b, c, bias;
  std::int64_t scratch_bytes = 0;
};

// One scratchpad for all primitives (they run one at a time), owned by us so that it is tracked:
// grown to the largest request, never per call.
Tensor& shared_scratch() {
  static Tensor t;
  return t;
}

std::map<Key, Cached>& cache() {
  static std::map<Key, Cached> c;
  return c;
}
std::mutex cache_mu;

// Plain 2-D descriptors when there is no batch (oneDNN picks its fast kernels for those, and falls
// back to the reference one for 4-D with a bias), else 4-D with the batch strides.
dnnl::memory::desc desc_of(const MatRef& m, bool batched, dnnl::memory::data_type type) {
  if (!batched) return dnnl::memory::desc({m.rows, m.cols}, type, {m.rs, m.cs});
  return dnnl::memory::desc({m.batch[0], m.batch[1], m.rows, m.cols}, type, {m.bstride[0], m.bstride[1], m.rs, m.cs});
}

void put(Key& k, int& i, const MatRef& m) {
  for (std::int64_t v : {m.rows, m.cols, m.rs, m.cs, m.batch[0], m.batch[1], m.bstride[0], m.bstride[1]}) k[i++] = v;
}

// The primitive for c = alpha a b + beta c (+ bias); a and b are bf16 when bf16_operands, c is always f32.
Cached& get(const MatRef& a, const MatRef& b, const MatRef& c, float alpha, float beta, bool bias,
            bool bf16_operands) {
  auto batch_ok = [&](const MatRef& m) { return m.batch[0] == c.batch[0] && m.batch[1] == c.batch[1]; };
  if (a.cols != b.rows || a.rows != c.rows || b.cols != c.cols || !batch_ok(a) || !batch_ok(b))
    throw std::logic_error(fmt::format("matmul shape mismatch: ({}x{}) @ ({}x{}) -> ({}x{}), batch {}x{}", a.rows,
                                       a.cols, b.rows, b.cols, c.rows, c.cols, c.batch[0], c.batch[1]));
  if (bias && (c.batch[0] != 1 || c.batch[1] != 1)) throw std::logic_error("matmul: bias only without batch");
  Key k{};
  int i = 0;
  put(k, i, a);
  put(k, i, b);
  put(k, i, c);
  // Reinterpret the float bits so that alpha/beta are part of the key exactly.
  k[i++] = static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(alpha));
  k[i] = static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(beta)) * 4 + (bias ? 2 : 0) + (bf16_operands ? 1 : 0);

  std::lock_guard<std::mutex> lock(cache_mu);
  auto it = cache().find(k);
  if (it != cache().end()) return it->second;

  Cached e;
  const bool batched = c.batch[0] * c.batch[1] > 1;
  using dt = dnnl::memory::data_type;
  const dt operands = bf16_operands ? dt::bf16 : dt::f32;
  e.a = desc_of(a, batched, operands);
  e.b = desc_of(b, batched, operands);
  e.c = desc_of(c, batched, dt::f32);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  if (beta != 0.0f) {
    dnnl::post_ops po;
    po.append_sum(beta);
    attr.set_post_ops(po);
  }
  if (bias) e.bias = dnnl::memory::desc({1, c.cols}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab);
  auto md = bias ? dnnl::matmul::desc(e.a, e.b, e.bias, e.c) : dnnl::matmul::desc(e.a, e.b, e.c);
  dnnl::matmul::primitive_desc pd(md, attr, cpu_engine());
  e.scratch_bytes = static_cast<std::int64_t>(pd.scratchpad_desc().get_size());
  Tensor& scratch = shared_scratch();
  if (e.scratch_bytes > scratch.bytes()) {
    scratch = Tensor();
    scratch = Tensor({(e.scratch_bytes + 3) / 4}, MemCategory::workspace, "oneDNN matmul scratchpad");
  }
  e.prim = dnnl::matmul(pd);
  return cache().emplace(k, std::move(e)).first->second;
}

}  // namespace

namespace {
std::uint16_t bf16_bits(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // NaN stays quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                                           // nearest, ties to even
  return static_cast<std::uint16_t>(u >> 16);
}

// The bf16 staging buffers of the two operands (tracked, grown to the largest request, kept).
Tensor& staging(int which) {
  static Tensor t[2];
  return t[which];
}

// m's elements rounded to bf16 into staging buffer `which`, packed in m's own order (row-major when
// its columns are contiguous, column-major when its rows are, else row-major by gathering), so that the
// copy is a streaming pass. Returns the packed view: its data points at the bf16 copy (as float*, only
// oneDNN reads it), its strides are the packed ones.
MatRef stage_bf16(const MatRef& m, int which) {
  const std::int64_t per = m.rows * m.cols, count = per * m.batch[0] * m.batch[1];
  Tensor& buf = staging(which);
  if ((count + 1) / 2 > buf.numel()) {
    buf = Tensor();
    buf = Tensor({(count + 1) / 2}, MemCategory::workspace, which == 0 ? "bf16 copy of a matmul's left operand"
                                                                      : "bf16 copy of a matmul's right operand");
  }
  auto* dst = reinterpret_cast<std::uint16_t*>(buf.data());
  const bool col_major = m.cs != 1 && m.rs == 1;
  const std::int64_t lines = col_major ? m.cols : m.rows, len = col_major ? m.rows : m.cols;
  const std::int64_t line_stride = col_major ? m.cs : m.rs, elem_stride = col_major ? m.rs : m.cs;
  const std::int64_t mats = m.batch[0] * m.batch[1];
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t mi = 0; mi < mats; ++mi)
    for (std::int64_t l = 0; l < lines; ++l) {
      const float* src = m.data + (mi / m.batch[1]) * m.bstride[0] + (mi % m.batch[1]) * m.bstride[1] + l * line_stride;
      std::uint16_t* out = dst + mi * per + l * len;
      if (elem_stride == 1)
        for (std::int64_t j = 0; j < len; ++j) out[j] = bf16_bits(src[j]);
      else
        for (std::int64_t j = 0; j < len; ++j) out[j] = bf16_bits(src[j * elem_stride]);
    }
  MatRef p = m;
  p.data = buf.data();
  p.rs = col_major ? 1 : m.cols;
  p.cs = col_major ? m.rows : 1;
  p.bstride[1] = per;
  p.bstride[0] = per * m.batch[1];
  return p;
}

// Matrix (i0, i1) of a batched view, as an unbatched one.
MatRef slice(const MatRef& m, std::int64_t i0, std::int64_t i1) {
  MatRef s = m;
  s.data += i0 * m.bstride[0] + i1 * m.bstride[1];
  s.batch[0] = s.batch[1] = 1;
  s.bstride[0] = s.bstride[1] = 0;
  return s;
}
}  // namespace

void matmul(const MatRef& a, const MatRef& b, const MatRef& c, float alpha, float beta, const float* bias) {
  if (a.rows == 0 || b.cols == 0 || c.batch[0] * c.batch[1] == 0) return;
  // oneDNN 2.6's batched brgemm matmul gives wrong, thread-count-dependent results when A is a
  // transposed view (source layout abdc) and the contraction is long (seen with K = 2048 on 3 or
  // more threads, on AMD Zen 4 and Intel Sapphire Rapids; tests/test_matmul.cpp holds the case).
  // Its 2-D products are right, so such a product runs as one 2-D product per batch matrix.
  if (c.batch[0] * c.batch[1] > 1 && a.cs != 1) {
    if (bias) throw std::logic_error("matmul: bias only without batch");
    for (std::int64_t i0 = 0; i0 < c.batch[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < c.batch[1]; ++i1)
        matmul(slice(a, i0, i1), slice(b, i0, i1), slice(c, i0, i1), alpha, beta, nullptr);
    return;
  }
  const bool bf16 = g_precision == Precision::bf16;
  const MatRef sa = bf16 ? stage_bf16(a, 0) : a, sb = bf16 ? stage_bf16(b, 1) : b;
  Cached& e = get(sa, sb, c, alpha, beta, bias != nullptr, bf16);
  auto& eng = cpu_engine();
  std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, dnnl::memory(e.a, eng, sa.data)},
      {DNNL_ARG_WEIGHTS, dnnl::memory(e.b, eng, sb.data)},
      {DNNL_ARG_DST, dnnl::memory(e.c, eng, c.data)},
  };
  if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(e.bias, eng, const_cast<float*>(bias)));
  if (e.scratch_bytes > 0)
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 dnnl::memory({{e.scratch_bytes}, dnnl::memory::data_type::u8, dnnl::memory::format_tag::a}, eng,
                              shared_scratch().data()));
  e.prim.execute(cpu_stream(), args);
  cpu_stream().wait();
}

bool merge_batch_dims(MatRef& a, MatRef& b, MatRef& c) {
  if (c.batch[0] == 1 || c.batch[1] == 1) return false;
  const auto consecutive = [](const MatRef& m) { return m.bstride[0] == m.batch[1] * m.bstride[1]; };
  if (!consecutive(a) || !consecutive(b) || !consecutive(c)) return false;
  for (MatRef* m : {&a, &b, &c}) {
    m->batch[1] *= m->batch[0];
    m->batch[0] = 1;
    m->bstride[0] = 0;
  }
  return true;
}

void gemm_tile(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
               const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
               std::int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // empty product: c = beta * c, as BLAS defines it
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t j = 0; j < N; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  const auto st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success)
    throw std::runtime_error(fmt::format("dnnl_sgemm({}, {}, M={}, N={}, K={}, lda={}, ldb={}, ldc={}) failed with status {}",
                                         trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, lda, ldb, ldc, int(st)));
}

std::int64_t matmul_primitives_created() {
  std::lock_guard<std::mutex> lock(cache_mu);
  return static_cast<std::int64_t>(cache().size());
}

std::int64_t matmul_scratchpad_bytes() {
  std::lock_guard<std::mutex> lock(cache_mu);
  return shared_scratch().bytes() + staging(0).bytes() + staging(1).bytes();
}

float round_to_bf16(float x) { return std::bit_cast<float>(static_cast<std::uint32_t>(bf16_bits(x)) << 16); }

Precision parse_precision(const std::string& name, const char* option) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  throw UsageError(fmt::format("{}: unknown precision '{}' (fp32 or bf16)", option, name));
}

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }
Precision matmul_precision() { return g_precision; }

bool bf16_matmul_available(std::string* why) {
  static const std::string reason = [] {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    try {
      const dnnl::memory::desc a({64, 64}, dt::bf16, tag::ab), c({64, 64}, dt::f32, tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), cpu_engine());
      const std::string impl = pd.impl_info_str();
      if (impl.find("ref") != std::string::npos)
        return fmt::format("oneDNN {} has only its reference bf16 kernel ({}) on this CPU: bf16 needs AVX-512",
                           onednn_version(), impl);
      return std::string();
    } catch (const dnnl::error& e) {
      return fmt::format("oneDNN {} has no bf16 matmul on this CPU ({})", onednn_version(), e.what());
    }
  }();
  if (why) *why = reason;
  return reason.empty();
}

void require_precision(Precision p, Device device) {
  if (p == Precision::fp32) return;
  if (device == Device::cuda) {
    if (cuda::device_count() == 0) return;  // the device's own error says why
    const cuda::DeviceInfo gpu = cuda::query(0);
    if (gpu.sm_major < 8)
      throw UsageError(fmt::format("--precision bf16: {} (compute capability {}.{}) has no bf16 tensor cores; "
                                   "8.0 or newer is needed",
                                   gpu.name, gpu.sm_major, gpu.sm_minor));
    return;
  }
  std::string why;
  if (!bf16_matmul_available(&why)) throw UsageError("--precision bf16: " + why);
}

PrecisionScope::PrecisionScope(Precision p, Device device) : saved_(g_precision) {
  require_precision(p, device);
  g_precision = p;
}
// Leaving bf16 frees the staging buffers, so that a measurement's peak never holds another's copies.
PrecisionScope::~PrecisionScope() {
  if (g_precision == Precision::bf16 && saved_ == Precision::fp32) {
    std::lock_guard<std::mutex> lock(cache_mu);
    staging(0) = Tensor();
    staging(1) = Tensor();
    cuda::release_bf16_staging();
  }
  g_precision = saved_;
}

const char* onednn_version() {
  static std::string v = [] {
    const dnnl_version_t* ver = dnnl_version();
    return fmt::format("{}.{}.{}", ver->major, ver->minor, ver->patch);
  }();
  return v.c_str();
}

}  // namespace lsb
