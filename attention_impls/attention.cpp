#include "attention_impls/attention.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <omp.h>

#include "attention_impls/projected.hpp"
#include "attention_impls/registry.hpp"
#include "nn/errors.hpp"
#include "nn/ops.hpp"
#include "nn/random.hpp"

namespace lsb {

// ---- spec strings ----------------------------------------------------------------------------

VariantSpec VariantSpec::parse(const std::string& text) {
  VariantSpec s;
  const auto colon = text.find(':');
  s.name = text.substr(0, colon);
  if (s.name.empty())
    throw UsageError(fmt::format("--variant '{}': missing variant name; valid: {}", text,
                                 fmt::join(variant_names(), ", ")));
  if (colon == std::string::npos) return s;
  std::string rest = text.substr(colon + 1);
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    const auto comma = rest.find(',', pos);
    const std::string item = rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw UsageError(fmt::format("--variant '{}': '{}' is not key=value (form: NAME[:key=value,...])", text, item));
    const std::string key = item.substr(0, eq);
    if (s.params.count(key)) throw UsageError(fmt::format("--variant '{}': key '{}' given twice", text, key));
    s.params[key] = item.substr(eq + 1);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return s;
}

std::string VariantSpec::str() const {
  std::string out = name;
  char sep = ':';
  for (const auto& [k, v] : params) {
    out += fmt::format("{}{}={}", sep, k, v);
    sep = ',';
  }
  return out;
}

// ---- Attention -----------------------------------------------------------------------------

Attention::Attention(std::string name, std::map<std::string, std::string> resolved, std::int64_t dim,
                     std::int64_t heads, Device device)
    : name_(std::move(name)), resolved_(std::move(resolved)), dim_(dim), heads_(heads), device_(device) {}

void copy_param_values(Attention& from, Attention& to) {
  for (auto& p : from.params()) copy_elements(p.value, to.param(p.name).value);
}

std::string Attention::spec_string() const {
  VariantSpec s{name_, resolved_};
  return s.str();
}

Param& Attention::add_param(const std::string& name, Shape shape) {
  Param p;
  p.name = name;
  const std::string what = "parameter " + name;
  p.value = Tensor::zeros(shape, MemCategory::parameters, what.c_str(), device_);
  p.grad = Tensor::zeros(shape, MemCategory::gradients, what.c_str(), device_);
  params_.push_back(std::move(p));
  return params_.back();
}

Param& Attention::param(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return p;
  throw std::out_of_range("no parameter " + name + " in " + name_);
}

std::int64_t Attention::parameter_count() const {
  std::int64_t n = 0;
  for (const auto& p : params_) n += p.value.numel();
  return n;
}

bool Attention::supports_prob_dropout() const {
  const VariantInfo* v = find_variant(name_);
  return device_ == Device::cpu && v && v->prob_dropout;
}

void Attention::set_prob_dropout(const ProbDropout& drop) {
  if (!(drop.p >= 0.0f && drop.p < 1.0f))
    throw UsageError(fmt::format("attention dropout {}: expected a value in [0, 1)", drop.p));
  if (drop.active() && !supports_prob_dropout()) {
    std::vector<std::string> with;
    for (const auto& v : variants())
      if (v.prob_dropout) with.push_back(v.name);
    throw UsageError(fmt::format("attention dropout {}: {} on {} does not drop attention probabilities (on the "
                                 "CPU: {} do)",
                                 drop.p, spec_string(), device_name(device_), fmt::join(with, ", ")));
  }
  drop_ = drop;
}

void Attention::zero_grad() {
  for (auto& p : params_) p.grad.zero();
}

void Attention::init_params(std::uint64_t seed) {
  Rng rng(seed);
  for (auto& p : params_) {
    Tensor& v = p.value;
    if (p.name.rfind("ln_", 0) == 0) {
      v.fill(p.name.find("weight") != std::string::npos ? 1.0f : 0.0f);
      continue;
    }
    // Weights (out, in) and their biases: U(-1/sqrt(in), 1/sqrt(in)) as torch.nn.Linear.
    const std::int64_t fan_in = v.rank() == 2 ? v.dim(1) : dim_;
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = static_cast<float>(rng.uniform(-bound, bound));
  }
}

// ---- ProjectedAttention --------------------------------------------------------------------

int max_threads() { return omp_get_max_threads(); }
int thread_id() { return omp_get_thread_num(); }

ProjectedAttention::ProjectedAttention(std::string name, std::map<std::string, std::string> resolved,
                                       std::int64_t dim, std::int64_t heads)
    : Attention(std::move(name), std::move(resolved), dim, heads) {
  for (const char* p : {"q", "k", "v", "o"}) {
    add_param(std::string("w") + p, {dim, dim});
    add_param(std::string("b") + p, {dim});
  }
}

void ProjectedAttention::forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n, float* y,
                                 bool keep_for_backward) {
  if (n != padded_length(n))
    throw UsageError(fmt::format("{}: sequence length {} must be padded to {} first", spec_string(), n,
                                 padded_length(n)));
  check_length(n);
  b_ = b;
  n_ = n;
  x_ = x;
  if (!mask) {
    // A (b*n)-byte all-ones mask, kept in a tracked float buffer (a quarter of it is used).
    ensure(ones_mask_, {(b * n + 3) / 4}, MemCategory::workspace, "all-real mask");
    std::memset(ones_mask_.data(), 1, static_cast<std::size_t>(b * n));
    mask = reinterpret_cast<const std::uint8_t*>(ones_mask_.data());
  }
  mask_ = mask;
  const std::int64_t D = dim_, rows = b * n;
  const Shape shape{b, n, D};
  ensure(Q_, shape, MemCategory::activations, "attention Q");
  ensure(K_, shape, MemCategory::activations, "attention K");
  ensure(V_, shape, MemCategory::activations, "attention V");
  ensure(C_, shape, MemCategory::activations, "attention context C");
  linear_forward(x, rows, D, param("wq").value.data(), param("bq").value.data(), D, Q_.data());
  linear_forward(x, rows, D, param("wk").value.data(), param("bk").value.data(), D, K_.data());
  linear_forward(x, rows, D, param("wv").value.data(), param("bv").value.data(), D, V_.data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim()));
  float* q = Q_.data();
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < rows * D; ++i) q[i] *= scale;

  core_forward(keep_for_backward);

  zero_padded_rows(C_);  // padded queries: context rows exactly 0, so y there equals bo
  linear_forward(C_.data(), rows, D, param("wo").value.data(), param("bo").value.data(), D, y);
}

void ProjectedAttention::backward(const float* dy, float* dx) {
  const std::int64_t D = dim_, rows = b_ * n_;
  const Shape shape{b_, n_, D};
  ensure(dQ_, shape, MemCategory::workspace, "attention dQ");
  ensure(dK_, shape, MemCategory::workspace, "attention dK");
  ensure(dV_, shape, MemCategory::workspace, "attention dV");
  ensure(dC_, shape, MemCategory::workspace, "attention dC");
  linear_backward(dy, C_.data(), rows, D, param("wo").value.data(), D, param("wo").grad.data(),
                  param("bo").grad.data(), dC_.data(), false);
  zero_padded_rows(dC_);

  core_backward();

  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim()));
  float* dq = dQ_.data();
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < rows * D; ++i) dq[i] *= scale;
  linear_backward(dQ_.data(), x_, rows, D, param("wq").value.data(), D, param("wq").grad.data(),
                  param("bq").grad.data(), dx, false);
  linear_backward(dK_.data(), x_, rows, D, param("wk").value.data(), D, param("wk").grad.data(),
                  param("bk").grad.data(), dx, true);
  linear_backward(dV_.data(), x_, rows, D, param("wv").value.data(), D, param("wv").grad.data(),
                  param("bv").grad.data(), dx, true);
  add_input_grad(dx);
}

void ProjectedAttention::zero_padded_rows(Tensor& t) const {
  const std::int64_t D = dim_;
  for (std::int64_t r = 0; r < b_ * n_; ++r)
    if (!mask_[r]) std::memset(t.data() + r * D, 0, static_cast<std::size_t>(D) * sizeof(float));
}

std::int64_t ProjectedAttention::analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const {
  const std::int64_t bnD = b * n * dim_;
  const std::int64_t floats = 4 * bnD + (with_backward ? 4 * bnD : 0) + core_floats(b, n, with_backward);
  return floats * static_cast<std::int64_t>(sizeof(float));
}

}  // namespace lsb
