// cudnn on CUDA: scaled dot-product attention, forward and backward, as cuDNN's fused flash-attention
// engines run it, built as operation graphs with the backend API (cudnn_graph.h; cuDNN is opened at first
// use, nn/cuda/cudnn.hpp). The graphs are the ones cuDNN's own frontend builds for SDPA (its
// "CompositeSDPANode" and backward node), written out here node by node since the frontend is not part of
// the toolkit:
//
//   forward   S = Q K^T (b, h, n, n), S *= scale, padding mask, [causal mask], softmax with its statistics
//             (max, exp(S - max), sum, stats = max + log sum, P = exp / sum), O = P V
//   backward  Di = rowsum(dO * O), P = exp(S - stats) recomputed with the same masks, dV = P^T dO,
//             dS = P * (dO V^T - Di) * scale, dK = dS^T Q, dQ = dS K (fp32 accumulator, then bf16)
//
// The engines run in bf16 with fp32 accumulation (there is no fp32 form), so the variant asks for
// --precision bf16. lsbench's fp32 (b, n, D) buffers are converted to bf16 copies around each call (head hi
// is the column slice hi*d.. of a row: strides (n D, d, D, 1) describe that layout without a copy). The
// key mask becomes per-sequence key counts (cuDNN's padding mask): it must be a prefix of valid keys, as
// every lsbench input is (padding at the end); any other mask is refused. Q arrives scaled by 1/sqrt(d),
// so the graph's scale is 1.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "attention_impls/cuda/cudnn_sdpa.hpp"
#include "attention_impls/cuda/projected.cuh"
#include "nn/cuda/check.cuh"
#include "nn/cuda/cudnn.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"

namespace lsb {

#if LSBENCH_HAVE_CUDNN_HEADERS
namespace {

using cuda::check_cudnn;
using cuda::cudnn;
using Dims = std::vector<std::int64_t>;

// The handle attributes of the graph and the plan (deprecated in cuDNN 9.19's header in favour of
// device properties, still what its frontend sets); named by value to keep the build free of warnings.
constexpr auto kGraphHandle = static_cast<cudnnBackendAttributeName_t>(800);  // CUDNN_ATTR_OPERATIONGRAPH_HANDLE
constexpr auto kPlanHandle = static_cast<cudnnBackendAttributeName_t>(400);   // CUDNN_ATTR_EXECUTION_PLAN_HANDLE

// One backend descriptor, destroyed with its owner.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) {
    check_cudnn(cudnn().create_descriptor(type, &d_), "cudnnBackendCreateDescriptor");
  }
  Desc(Desc&& o) noexcept : d_(std::exchange(o.d_, nullptr)) {}
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  ~Desc() {
    if (d_ != nullptr) cudnn().destroy_descriptor(d_);
  }
  cudnnBackendDescriptor_t get() const { return d_; }

  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t count,
            const void* values) {
    const cudnnStatus_t s = cudnn().set_attribute(d_, name, type, count, values);
    if (s != CUDNN_STATUS_SUCCESS)
      check_cudnn(s, fmt::format("cudnnBackendSetAttribute (attribute {})", static_cast<int>(name)).c_str());
    return *this;
  }
  Desc& set(cudnnBackendAttributeName_t name, const Desc& d) {
    cudnnBackendDescriptor_t raw = d.get();
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
  }
  Desc& set(cudnnBackendAttributeName_t name, std::int64_t v) { return set(name, CUDNN_TYPE_INT64, 1, &v); }
  Desc& set(cudnnBackendAttributeName_t name, const Dims& v) {
    return set(name, CUDNN_TYPE_INT64, static_cast<std::int64_t>(v.size()), v.data());
  }
  Desc& set_type(cudnnBackendAttributeName_t name, cudnnDataType_t t) { return set(name, CUDNN_TYPE_DATA_TYPE, 1, &t); }
  Desc& set_bool(cudnnBackendAttributeName_t name, bool v) { return set(name, CUDNN_TYPE_BOOLEAN, 1, &v); }
  Desc& finalize(const char* what) {
    check_cudnn(cudnn().finalize(d_), what);
    return *this;
  }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

struct TensorDesc {
  Desc desc;
  Dims dims, strides;
};
using T = const TensorDesc*;

// The memory a variant pack names: the tensors' unique ids (kVirtual and up for the graph's own).
enum Uid : std::int64_t {
  kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV, kSeqQ, kSeqKV, kScale, kNegInf, kOne, kdQAccum, kRowDot,
  kVirtual = 100
};

// An executable graph: its plan and the workspace it needs.
struct Plan {
  std::deque<Desc> keep;  // every descriptor the plan was built from
  std::unique_ptr<Desc> plan;
  std::int64_t workspace_bytes = 0;
};

// Builds one operation graph node by node, then its execution plan.
class GraphBuilder {
 public:
  // A tensor whose memory the variant pack supplies.
  T io(std::int64_t uid, cudnnDataType_t type, Dims dims, Dims strides) {
    return tensor(uid, type, std::move(dims), std::move(strides), false, false);
  }
  // A scalar passed by value (a host pointer in the variant pack).
  T scalar(std::int64_t uid, cudnnDataType_t type) { return tensor(uid, type, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true); }
  // An intermediate the engine keeps to itself.
  T virt(cudnnDataType_t type, Dims dims, Dims strides) {
    return tensor(next_virtual_++, type, std::move(dims), std::move(strides), true, false);
  }
  T virt_like(cudnnDataType_t type, T like) { return virt(type, like->dims, like->strides); }

  // y = mode(x[, b][, t]) elementwise with broadcasting; y created (virtual, x's shape) unless given.
  T pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t math, T x, T b = nullptr, T t = nullptr, T y = nullptr,
              std::int64_t axis = -1, cudnnDataType_t y_type = CUDNN_DATA_FLOAT) {
    if (y == nullptr) y = virt_like(y_type, x);
    Desc& pw = keep(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode).set_type(CUDNN_ATTR_POINTWISE_MATH_PREC, math);
    if (axis >= 0) pw.set(CUDNN_ATTR_POINTWISE_AXIS, axis);
    pw.finalize("pointwise descriptor");
    Desc& op = keep(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x->desc)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y->desc);
    if (b != nullptr) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b->desc);
    if (t != nullptr) op.set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t->desc);
    const float one = 1.0f;
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
    return add_op(op, "pointwise operation"), y;
  }
  // y (x's shape with its last dim 1) = max or sum of x over its last dim; y created unless given.
  T reduce_rows(cudnnReduceTensorOp_t how, T x, T y = nullptr) {
    if (y == nullptr) {
      Dims dims = x->dims;
      dims[3] = 1;
      y = virt(CUDNN_DATA_FLOAT, dims, {dims[1] * dims[2], dims[2], 1, 1});
    }
    Desc& red = keep(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    red.set_type(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
        .set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &how)
        .finalize("reduction descriptor");
    Desc& op = keep(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, red)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x->desc)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y->desc);
    return add_op(op, "reduction operation"), y;
  }
  // c = a b over the last two dims, batched over the first two; the overrides bound the rows (m), columns
  // (n) or the contraction (k) per sequence (the padding mask's counts).
  void matmul(T a, T b, T c, T m_override, T n_override, T k_override) {
    Desc& mm = keep(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    mm.set_type(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize("matmul descriptor");
    Desc& op = keep(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a->desc)
        .set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b->desc)
        .set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c->desc)
        .set(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm);
    if (m_override != nullptr) op.set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, m_override->desc);
    if (n_override != nullptr) op.set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, n_override->desc);
    if (k_override != nullptr) op.set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, k_override->desc);
    add_op(op, "matmul operation");
  }
  // y: the same elements as x under y's dims and strides (a transposed view).
  void reshape(T x, T y) {
    Desc& op = keep(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x->desc).set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y->desc);
    add_op(op, "reshape operation");
  }

  // The graph of every node added, and the first plan cuDNN's heuristics can finalize: mode A's list (what
  // cuDNN's frontend asks for), then mode B's.
  Plan build(const std::string& what) {
    const cudnnHandle_t handle = cuda::cudnn_handle();
    Desc& graph = keep(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<std::int64_t>(ops_.size()),
              ops_.data())
        .set(kGraphHandle, CUDNN_TYPE_HANDLE, 1, &handle);
    if (cudnn().finalize(graph.get()) != CUDNN_STATUS_SUCCESS) refuse(what, "the operation graph was not accepted");
    std::int64_t tried = 0;
    for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_B}) {
      Desc& heur = keep(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
      heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph).set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
      if (cudnn().finalize(heur.get()) != CUDNN_STATUS_SUCCESS) continue;
      std::int64_t count = 0;
      check_cudnn(cudnn().get_attribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                        &count, nullptr),
                  "engine heuristics: count");
      std::deque<Desc>& configs = keep_;  // the configurations live as long as the plan
      std::vector<cudnnBackendDescriptor_t> raw;
      for (std::int64_t i = 0; i < count; ++i) raw.push_back(configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR).get());
      std::int64_t got = 0;
      check_cudnn(cudnn().get_attribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                        &got, raw.data()),
                  "engine heuristics: results");
      tried += got;
      for (std::int64_t i = 0; i < got; ++i) {
        auto plan = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        plan->set(kPlanHandle, CUDNN_TYPE_HANDLE, 1, &handle)
            .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw[i]);
        if (cudnn().finalize(plan->get()) != CUDNN_STATUS_SUCCESS) continue;  // this engine cannot run it here
        Plan p;
        std::int64_t values = 0;
        check_cudnn(cudnn().get_attribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                          &values, &p.workspace_bytes),
                    "execution plan: workspace size");
        p.keep = std::move(keep_);
        for (auto& t : tensors_) p.keep.push_back(std::move(t.desc));
        p.plan = std::move(plan);
        return p;
      }
    }
    refuse(what, fmt::format("none of the {} engines its heuristics (modes A and B) proposed could build a plan", tried));
  }

 private:
  T tensor(std::int64_t uid, cudnnDataType_t type, Dims dims, Dims strides, bool is_virtual, bool by_value) {
    TensorDesc& t = tensors_.emplace_back(TensorDesc{Desc(CUDNN_BACKEND_TENSOR_DESCRIPTOR), std::move(dims),
                                                     std::move(strides)});
    t.desc.set_type(CUDNN_ATTR_TENSOR_DATA_TYPE, type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, t.dims)
        .set(CUDNN_ATTR_TENSOR_STRIDES, t.strides)
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, std::int64_t{16})
        .set_bool(CUDNN_ATTR_TENSOR_IS_VIRTUAL, is_virtual);
    if (by_value) t.desc.set_bool(CUDNN_ATTR_TENSOR_IS_BY_VALUE, true);
    t.desc.finalize("tensor descriptor");
    return &t;
  }
  Desc& keep(cudnnBackendDescriptorType_t type) { return keep_.emplace_back(type); }
  void add_op(Desc& op, const char* what) {
    op.finalize(what);
    ops_.push_back(op.get());
  }
  [[noreturn]] static void refuse(const std::string& what, const std::string& why) {
    char last[512] = {};
    cudnn().get_last_error_string(last, sizeof last);
    throw UsageError(fmt::format("cudnn: cuDNN {} cannot run {}: {}{}", cuda::cudnn_version(), what, why,
                                 last[0] != '\0' ? std::string(" (") + last + ")" : std::string()));
  }

  std::deque<TensorDesc> tensors_;  // deques: descriptors never move once referenced
  std::deque<Desc> keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  std::int64_t next_virtual_ = kVirtual;
};

// The shapes of one call: b sequences of n positions, h heads of d dims (D = h d).
struct SdpaShape {
  std::int64_t b, n, h, d;
  bool causal;
  std::int64_t D() const { return h * d; }
  bool operator==(const SdpaShape& o) const {  // (nvcc compiles C++17 here: no defaulted ==)
    return b == o.b && n == o.n && h == o.h && d == o.d && causal == o.causal;
  }
  // A (b, n, D) buffer as (b, h, n, d): head hi is the column slice [hi d, (hi + 1) d) of each row.
  Dims heads() const { return {b, h, n, d}; }
  Dims heads_strides() const { return {n * D(), d, D(), 1}; }
  // The same buffer as (b, h, d, n): the transposed operand of Q K^T and dO V^T.
  Dims heads_t() const { return {b, h, d, n}; }
  Dims heads_t_strides() const { return {n * D(), d, 1, D()}; }
  Dims scores() const { return {b, h, n, n}; }
  Dims scores_strides() const { return {h * n * n, n * n, n, 1}; }
  Dims scores_t_strides() const { return {h * n * n, n * n, 1, n}; }  // (b, h, n, n) transposed
  Dims rows() const { return {b, h, n, 1}; }
  Dims rows_strides() const { return {h * n, n, 1, 1}; }
};

constexpr cudnnDataType_t kBf16 = CUDNN_DATA_BFLOAT16, kF32 = CUDNN_DATA_FLOAT;

// The masks both graphs apply to the scaled scores s: positions past each sequence's key count (and query
// count) to -inf, then, causal, keys after the query. Returns the masked scores.
T padding_mask(GraphBuilder& g, T s, T seq_q, T seq_kv, T neg_inf) {
  T row = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, nullptr, nullptr, nullptr, 2, CUDNN_DATA_INT32);
  T col = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, nullptr, nullptr, nullptr, 3, CUDNN_DATA_INT32);
  T row_in = g.pointwise(CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, row, seq_q, nullptr, nullptr, -1, CUDNN_DATA_BOOLEAN);
  T col_in = g.pointwise(CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, col, seq_kv, nullptr, nullptr, -1, CUDNN_DATA_BOOLEAN);
  T keep = g.pointwise(CUDNN_POINTWISE_LOGICAL_AND, CUDNN_DATA_BOOLEAN, row_in, col_in, nullptr, nullptr, -1,
                       CUDNN_DATA_BOOLEAN);
  return g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, kF32, s, neg_inf, keep);  // keep ? s : -inf
}

T causal_mask(GraphBuilder& g, T s, T neg_inf) {
  T row = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, nullptr, nullptr, nullptr, 2, CUDNN_DATA_INT32);
  T col = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, nullptr, nullptr, nullptr, 3, CUDNN_DATA_INT32);
  T seen = g.pointwise(CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, nullptr, nullptr, -1, CUDNN_DATA_BOOLEAN);
  return g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, kF32, s, neg_inf, seen);  // key u <= query t ? s : -inf
}

struct Common {
  T seq_q, seq_kv, scale, neg_inf;
};
Common common_inputs(GraphBuilder& g, const SdpaShape& s) {
  const Dims per_seq{s.b, 1, 1, 1};
  return {g.io(kSeqQ, CUDNN_DATA_INT32, per_seq, {1, 1, 1, 1}), g.io(kSeqKV, CUDNN_DATA_INT32, per_seq, {1, 1, 1, 1}),
          g.scalar(kScale, kF32), g.scalar(kNegInf, kF32)};
}

std::string graph_name(const char* pass, const SdpaShape& s) {
  return fmt::format("attention {} (b {}, h {}, n {}, d {}{})", pass, s.b, s.h, s.n, s.d, s.causal ? ", causal" : "");
}

void forward_nodes(GraphBuilder& g, const SdpaShape& s) {
  const Common c = common_inputs(g, s);
  T q = g.io(kQ, kBf16, s.heads(), s.heads_strides());
  T kt = g.io(kK, kBf16, s.heads_t(), s.heads_t_strides());
  T v = g.io(kV, kBf16, s.heads(), s.heads_strides());
  T o = g.io(kO, kBf16, s.heads(), s.heads_strides());
  T stats = g.io(kStats, kF32, s.rows(), s.rows_strides());

  T scores = g.virt(kF32, s.scores(), s.scores_strides());
  g.matmul(q, kt, scores, c.seq_q, c.seq_kv, nullptr);
  T x = g.pointwise(CUDNN_POINTWISE_MUL, kF32, scores, c.scale);
  x = padding_mask(g, x, c.seq_q, c.seq_kv, c.neg_inf);
  if (s.causal) x = causal_mask(g, x, c.neg_inf);
  T row_max = g.reduce_rows(CUDNN_REDUCE_TENSOR_MAX, x);
  T e = g.pointwise(CUDNN_POINTWISE_EXP, kF32, g.pointwise(CUDNN_POINTWISE_SUB, kF32, x, row_max));
  T row_sum = g.reduce_rows(CUDNN_REDUCE_TENSOR_ADD, e);
  g.pointwise(CUDNN_POINTWISE_ADD, kF32, row_max, g.pointwise(CUDNN_POINTWISE_LOG, kF32, row_sum), nullptr, stats);
  T p = g.pointwise(CUDNN_POINTWISE_DIV, kF32, e, row_sum);
  g.matmul(p, v, o, c.seq_q, nullptr, c.seq_kv);
}

void backward_nodes(GraphBuilder& g, const SdpaShape& s) {
  const Common c = common_inputs(g, s);
  T q = g.io(kQ, kBf16, s.heads(), s.heads_strides());
  T kt = g.io(kK, kBf16, s.heads_t(), s.heads_t_strides());
  T vt = g.io(kV, kBf16, s.heads_t(), s.heads_t_strides());
  T o = g.io(kO, kBf16, s.heads(), s.heads_strides());
  T d_o = g.io(kdO, kBf16, s.heads(), s.heads_strides());
  T stats = g.io(kStats, kF32, s.rows(), s.rows_strides());
  T dq = g.io(kdQ, kBf16, s.heads(), s.heads_strides());
  T dk = g.io(kdK, kBf16, s.heads(), s.heads_strides());
  T dv = g.io(kdV, kBf16, s.heads(), s.heads_strides());
  T one = g.scalar(kOne, kF32);
  // fp32 buffers the caller provides: dQ's accumulator ((b, h, n, d), contiguous) and Di = rowsum(dO * O).
  T dq_accum = g.io(kdQAccum, kF32, s.heads(), {s.h * s.n * s.d, s.n * s.d, s.d, 1});
  T row_dot = g.io(kRowDot, kF32, s.rows(), s.rows_strides());

  // Di = rowsum(dO * O)
  g.pointwise(CUDNN_POINTWISE_MUL, kF32, g.reduce_rows(CUDNN_REDUCE_TENSOR_ADD, g.pointwise(CUDNN_POINTWISE_MUL, kF32,
                                                                                             d_o, o)),
              one, nullptr, row_dot);
  // P = exp(scale * Q K^T (masked) - stats)
  T scores = g.virt(kF32, s.scores(), s.scores_strides());
  g.matmul(q, kt, scores, c.seq_q, c.seq_kv, nullptr);
  T x = g.pointwise(CUDNN_POINTWISE_MUL, kF32, scores, c.scale);
  x = padding_mask(g, x, c.seq_q, c.seq_kv, c.neg_inf);
  x = g.pointwise(CUDNN_POINTWISE_SUB, kF32, x, stats);
  if (s.causal) x = causal_mask(g, x, c.neg_inf);
  T p = g.pointwise(CUDNN_POINTWISE_EXP, kF32, x);
  // dV = P^T dO
  T p_t = g.virt(kBf16, s.scores(), s.scores_t_strides());
  g.reshape(p, p_t);
  g.matmul(p_t, d_o, dv, c.seq_kv, nullptr, c.seq_q);
  // dS = P * (dO V^T - Di) * scale
  T dp = g.virt(kF32, s.scores(), s.scores_strides());
  g.matmul(d_o, vt, dp, c.seq_q, c.seq_kv, nullptr);
  T ds = g.pointwise(CUDNN_POINTWISE_MUL, kF32, g.pointwise(CUDNN_POINTWISE_SUB, kF32, dp, row_dot), p);
  ds = g.pointwise(CUDNN_POINTWISE_MUL, kF32, ds, c.scale);
  // dK = dS^T Q
  T ds_t = g.virt(kBf16, s.scores(), s.scores_t_strides());
  g.reshape(ds, ds_t);
  g.matmul(ds_t, q, dk, c.seq_kv, nullptr, c.seq_q);
  // dQ = dS K, accumulated in fp32, then rounded
  T k = g.virt(kBf16, s.heads(), s.heads_strides());
  g.reshape(kt, k);
  g.matmul(ds, k, dq_accum, c.seq_q, nullptr, c.seq_kv);
  g.pointwise(CUDNN_POINTWISE_IDENTITY, kF32, dq_accum, nullptr, nullptr, dq);
}

Plan forward_plan(const SdpaShape& s) {
  GraphBuilder g;
  forward_nodes(g, s);
  return g.build(graph_name("forward", s));
}

Plan backward_plan(const SdpaShape& s) {
  GraphBuilder g;
  backward_nodes(g, s);
  return g.build(graph_name("backward", s));
}

// The plan of the last shape asked for, built again when the shape changes.
class CachedPlan {
 public:
  const Plan& for_shape(const SdpaShape& s, Plan (*build)(const SdpaShape&)) {
    if (!plan_ || !(shape_ == s)) {
      plan_ = std::make_unique<Plan>(build(s));
      shape_ = s;
    }
    return *plan_;
  }

 private:
  std::unique_ptr<Plan> plan_;
  SdpaShape shape_{};
};

// Runs a plan on the default stream; `memory` pairs each unique id with its pointer (host pointers for
// the by-value scalars).
void execute(const Plan& plan, const std::vector<std::pair<std::int64_t, void*>>& memory, void* workspace) {
  std::vector<std::int64_t> uids;
  std::vector<void*> pointers;
  for (const auto& [uid, p] : memory) {
    uids.push_back(uid);
    pointers.push_back(p);
  }
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, uids)
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<std::int64_t>(pointers.size()),
           pointers.data())
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace)
      .finalize("variant pack");
  check_cudnn(cudnn().execute(cuda::cudnn_handle(), plan.plan->get(), pack.get()), "cudnnBackendExecute");
}

// ---- the kernels around the graphs ------------------------------------------------------------

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, std::int64_t count) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}

__global__ void from_bf16_kernel(const __nv_bfloat16* x, float* y, std::int64_t count) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}

constexpr int kThreads = 256;
unsigned grid_for(std::int64_t count) { return static_cast<unsigned>(std::min<std::int64_t>(LSB_BLOCKS(count, kThreads), 4096)); }

// One block per sequence: seq_kv = the position of its first padded key (n if none), seq_q = n, and
// bad[0] = 1 where a valid key follows a padded one (a mask cuDNN's counts cannot say).
__global__ void key_counts_kernel(const std::uint8_t* mask, std::int64_t n, std::int32_t* seq_q, std::int32_t* seq_kv,
                                  int* bad) {
  __shared__ int first_pad;
  const std::uint8_t* m = mask + blockIdx.x * n;
  if (threadIdx.x == 0) first_pad = static_cast<int>(n);
  __syncthreads();
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x)
    if (m[t] == 0) atomicMin(&first_pad, static_cast<int>(t));
  __syncthreads();
  for (std::int64_t t = first_pad + 1 + threadIdx.x; t < n; t += blockDim.x)
    if (m[t] != 0) atomicOr(bad, 1);
  if (threadIdx.x == 0) {
    seq_kv[blockIdx.x] = first_pad;
    seq_q[blockIdx.x] = static_cast<std::int32_t>(n);
  }
}

class CudaCudnnAttention final : public CudaProjectedAttention {
 public:
  explicit CudaCudnnAttention(std::unique_ptr<Attention> twin) : CudaProjectedAttention(std::move(twin)) {
    if (const std::string why = cuda::cudnn_problem(); !why.empty()) throw UsageError("--variant cudnn: " + why);
    if (head_dim() % 8 != 0 || head_dim() > 128)
      throw UsageError(fmt::format("--variant cudnn: head dim {} (--dim {} / --heads {}): cuDNN's fused attention "
                                   "takes multiples of 8 up to 128",
                                   head_dim(), dim_, heads_));
  }

 protected:
  void core_forward(bool /*keep_for_backward*/) override {
    if (matmul_precision() != Precision::bf16)
      throw UsageError("--variant cudnn computes in bf16 only (cuDNN's fused attention has no fp32 form): add "
                       "--precision bf16");
    const Plan& plan = forward_.for_shape(shape(), forward_plan);
    const std::int64_t bnD = b_ * n_ * dim_;
    auto* q = bf16(q16_, bnD, MemCategory::activations, "cudnn bf16 Q");
    auto* k = bf16(k16_, bnD, MemCategory::activations, "cudnn bf16 K");
    auto* v = bf16(v16_, bnD, MemCategory::activations, "cudnn bf16 V");
    auto* o = bf16(o16_, bnD, MemCategory::activations, "cudnn bf16 O");
    ensure_here(stats_, {b_, heads_, n_}, MemCategory::activations, "cudnn log-sum-exp (b, h, n)");
    convert(Q_.data(), q, bnD);
    convert(K_.data(), k, bnD);
    convert(V_.data(), v, bnD);
    count_keys();
    execute(plan,
            {{kQ, q}, {kK, k}, {kV, v}, {kO, o}, {kStats, stats_.data()}, {kSeqQ, seq_q_}, {kSeqKV, seq_kv_},
             {kScale, &scale_}, {kNegInf, &neg_inf_}},
            workspace(plan.workspace_bytes));
    from_bf16_kernel<<<grid_for(bnD), kThreads>>>(o, C_.data(), bnD);
    LSB_CUDA_LAUNCHED();
  }

  void core_backward() override {
    const Plan& plan = backward_.for_shape(shape(), backward_plan);
    const std::int64_t bnD = b_ * n_ * dim_;
    auto* d_o = bf16(do16_, bnD, MemCategory::workspace, "cudnn bf16 dO");
    auto* dq = bf16(dq16_, bnD, MemCategory::workspace, "cudnn bf16 dQ");
    auto* dk = bf16(dk16_, bnD, MemCategory::workspace, "cudnn bf16 dK");
    auto* dv = bf16(dv16_, bnD, MemCategory::workspace, "cudnn bf16 dV");
    ensure_here(dq_accum_, {b_, heads_, n_, head_dim()}, MemCategory::workspace, "cudnn fp32 dQ accumulator");
    ensure_here(row_dot_, {b_, heads_, n_}, MemCategory::workspace, "cudnn rowsum(dO * O) (b, h, n)");
    convert(dC_.data(), d_o, bnD);
    execute(plan,
            {{kQ, q16_.data()}, {kK, k16_.data()}, {kV, v16_.data()}, {kO, o16_.data()}, {kdO, d_o},
             {kStats, stats_.data()}, {kdQ, dq}, {kdK, dk}, {kdV, dv}, {kSeqQ, seq_q_}, {kSeqKV, seq_kv_},
             {kScale, &scale_}, {kNegInf, &neg_inf_}, {kOne, &one_}, {kdQAccum, dq_accum_.data()},
             {kRowDot, row_dot_.data()}},
            workspace(plan.workspace_bytes));
    for (auto [from, to] : {std::pair{dq, dQ_.data()}, std::pair{dk, dK_.data()}, std::pair{dv, dV_.data()}}) {
      from_bf16_kernel<<<grid_for(bnD), kThreads>>>(from, to, bnD);
      LSB_CUDA_LAUNCHED();
    }
  }

  std::int64_t core_floats(std::int64_t b, std::int64_t n, bool with_backward) const override {
    return cudnn_core_floats(b, n, dim_, heads_, with_backward);
  }

 private:
  SdpaShape shape() const { return {b_, n_, heads_, head_dim(), causal_}; }

  __nv_bfloat16* bf16(Tensor& t, std::int64_t count, MemCategory cat, const char* what) {
    ensure_here(t, {(count + 1) / 2}, cat, what);
    return reinterpret_cast<__nv_bfloat16*>(t.data());
  }
  static void convert(const float* from, __nv_bfloat16* to, std::int64_t count) {
    to_bf16_kernel<<<grid_for(count), kThreads>>>(from, to, count);
    LSB_CUDA_LAUNCHED();
  }

  // seq_q_, seq_kv_ from the call's mask; a mask that is not a prefix of valid keys is refused (this
  // waits for the GPU: one 4-byte copy per forward).
  void count_keys() {
    const std::int64_t stride = (b_ + 3) / 4 * 4;  // each array 16-byte aligned, as the graphs declare
    ensure_here(counts_, {2 * stride + 1}, MemCategory::workspace, "cudnn sequence lengths");
    seq_q_ = reinterpret_cast<std::int32_t*>(counts_.data());
    seq_kv_ = seq_q_ + stride;
    int* bad = reinterpret_cast<int*>(seq_kv_ + stride);
    cuda::device_memset(bad, 0, sizeof(int));
    key_counts_kernel<<<static_cast<unsigned>(b_), kThreads>>>(mask_, n_, seq_q_, seq_kv_, bad);
    LSB_CUDA_LAUNCHED();
    int host_bad = 0;
    cuda::copy(&host_bad, bad, sizeof host_bad);
    if (host_bad != 0)
      throw UsageError("--variant cudnn: a padding mask with a valid key after a padded one; cuDNN's padding takes "
                       "each sequence's valid keys first (pad at the end)");
  }

  void* workspace(std::int64_t bytes) {
    if (bytes == 0) return nullptr;
    ensure_here(workspace_, {(bytes + 3) / 4}, MemCategory::workspace, "cuDNN workspace");
    return workspace_.data();
  }

  CachedPlan forward_, backward_;
  Tensor q16_, k16_, v16_, o16_, stats_;                        // kept for the backward
  Tensor do16_, dq16_, dk16_, dv16_, dq_accum_, row_dot_, counts_, workspace_;
  std::int32_t *seq_q_ = nullptr, *seq_kv_ = nullptr;
  // The by-value scalars (the variant pack holds their addresses): Q is already scaled by 1/sqrt(d).
  float scale_ = 1.0f, neg_inf_ = -INFINITY, one_ = 1.0f;
};

}  // namespace

std::unique_ptr<Attention> make_cuda_cudnn(std::unique_ptr<Attention> twin) {
  return std::make_unique<CudaCudnnAttention>(std::move(twin));
}

void cudnn_check_graph_nodes(std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d, bool causal) {
  const SdpaShape s{b, n, h, d, causal};
  GraphBuilder forward, backward;
  forward_nodes(forward, s);
  backward_nodes(backward, s);
}

#else  // no cuDNN headers in this build

std::unique_ptr<Attention> make_cuda_cudnn(std::unique_ptr<Attention>) {
  throw UsageError("--variant cudnn: " + cuda::cudnn_problem());
}

void cudnn_check_graph_nodes(std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool) {
  throw std::runtime_error(cuda::cudnn_problem());
}

#endif

}  // namespace lsb
