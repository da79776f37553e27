#include "attention_impls/attention.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "nn/errors.hpp"
#include "nn/random.hpp"

namespace lsb {

// ---- spec strings ----------------------------------------------------------------------------

VariantSpec VariantSpec::parse(const std::string& text, const std::string& option) {
  VariantSpec s;
  s.text = text;
  const auto colon = text.find(':');
  s.name = text.substr(0, colon);
  if (s.name.empty())
    throw UsageError(fmt::format("{} '{}': missing variant name; valid: {}", option, text,
                                 fmt::join(variant_names(), ", ")));
  if (colon == std::string::npos) return s;
  std::string rest = text.substr(colon + 1);
  std::size_t pos = 0;
  while (pos <= rest.size()) {
    const auto comma = rest.find(',', pos);
    const std::string item = rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw UsageError(fmt::format("{} '{}': '{}' is not key=value (form: NAME[:key=value,...])", option, text, item));
    const std::string key = item.substr(0, eq);
    if (s.params.count(key)) throw UsageError(fmt::format("{} '{}': key '{}' given twice", option, text, key));
    s.params[key] = item.substr(eq + 1);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return s;
}

std::vector<VariantSpec> VariantSpec::parse_all(const std::vector<std::string>& texts) {
  std::vector<VariantSpec> out;
  for (const auto& t : texts) out.push_back(parse(t));
  return out;
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
                     std::int64_t heads, Device device, bool causal)
    : name_(std::move(name)), resolved_(std::move(resolved)), dim_(dim), heads_(heads), device_(device), causal_(causal) {}

void copy_param_values(Attention& from, Attention& to) {
  for (auto& p : from.params()) copy_elements(p.value, to.param(p.name).value);
}

std::string Attention::spec_string() const {
  VariantSpec s{name_, resolved_, {}};
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

}  // namespace lsb
