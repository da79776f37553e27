#include "attention_impls/registry.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "attention_impls/cuda/factory.hpp"
#include "nn/errors.hpp"
#include "nn/parse.hpp"

namespace lsb {

// The built-in variants' record functions, one per lsbench_variant() line of CMakeLists.txt.
#define LSB_LISTED_VARIANT(ident) VariantInfo variant_record_##ident();
#include "lsbench_variant_list.inc"
#undef LSB_LISTED_VARIANT

namespace {

void check_record(const VariantInfo& v, const std::deque<VariantInfo>& known) {
  if (v.name.empty() || !v.make_cpu) throw std::logic_error("variant record '" + v.name + "' without a name or make_cpu");
  for (const auto& k : known)
    if (k.name == v.name) throw std::logic_error("variant '" + v.name + "' registered twice");
}

// The registry, its first builtin_count() records built in.
std::size_t& builtin_count() {
  static std::size_t count = 0;
  return count;
}

std::deque<VariantInfo>& registry() {
  static std::deque<VariantInfo> r = [] {
    std::deque<VariantInfo> list;
    auto add = [&list](VariantInfo v) {
      check_record(v, list);
      list.push_back(std::move(v));
    };
#define LSB_LISTED_VARIANT(ident) add(variant_record_##ident());
#include "lsbench_variant_list.inc"
#undef LSB_LISTED_VARIANT
    builtin_count() = list.size();
    return list;
  }();
  return r;
}

std::string key_text(const VariantKey& k) {
  std::string out = k.name + "=" + (k.choices.empty() ? k.default_value : fmt::format("{}", fmt::join(k.choices, "|")));
  if (!k.note.empty()) out += " (" + k.note + ")";
  return out;
}

const VariantInfo& the_one(bool VariantInfo::*role, const char* what) {
  const VariantInfo* found = nullptr;
  for (const auto& v : registry())
    if (v.*role) {
      if (found) throw std::logic_error(fmt::format("two {} variants: {} and {}", what, found->name, v.name));
      found = &v;
    }
  if (!found) throw std::logic_error(fmt::format("no {} variant registered", what));
  return *found;
}

std::vector<std::string> specs_with(bool VariantInfo::*role) {
  std::vector<std::string> out;
  for (const auto& v : registry())
    if (v.*role) out.push_back(v.spec());
  return out;
}

}  // namespace

// ---- SpecReader ------------------------------------------------------------------------------

SpecReader::SpecReader(const VariantSpec& spec, const std::vector<VariantKey>& keys, std::int64_t n_max)
    : variant_(spec.name), spec_text_(spec.str()), causal_(spec.causal), keys_(keys) {
  for (const auto& k : keys) {
    if (k.causal_only && !causal_) continue;
    const std::string& def = causal_ && !k.causal_default.empty() ? k.causal_default : k.default_value;
    values_[k.name] = def == kLengthDefault ? std::to_string(n_max) : def;
  }
  for (const auto& [k, v] : spec.params) {
    const std::string& name = k;  // a structured binding is not captured by clang 14's lambdas (the fuzz build)
    const auto key = std::find_if(keys.begin(), keys.end(), [&](const VariantKey& x) { return x.name == name; });
    if (key != keys.end() && key->causal_only && !causal_)
      throw UsageError(fmt::format("--variant {}: key '{}' belongs to the causal form (add --causal)", spec_text_, k));
    if (!values_.count(k)) {
      std::vector<std::string> valid;
      for (const auto& key : keys) valid.push_back(key.name);
      throw UsageError(fmt::format("--variant {}: unknown key '{}'; valid keys: {}", spec_text_, k,
                                   valid.empty() ? "none" : fmt::format("{}", fmt::join(valid, ", "))));
    }
    values_[k] = v;
  }
}

std::int64_t SpecReader::get_int(const std::string& key, std::int64_t min_value) const {
  const std::string& text = values_.at(key);
  const std::optional<std::int64_t> v = parse_int(text);
  if (!v) throw UsageError(fmt::format("--variant {}: {}={} is not an integer", variant_, key, text));
  if (*v < min_value)
    throw UsageError(fmt::format("--variant {}: {}={} must be >= {}", variant_, key, text, min_value));
  return *v;
}

std::string SpecReader::get_choice(const std::string& key) const {
  const std::string& v = values_.at(key);
  const auto k = std::find_if(keys_.begin(), keys_.end(), [&](const VariantKey& x) { return x.name == key; });
  if (k == keys_.end() || k->choices.empty()) throw std::logic_error("get_choice: key '" + key + "' has no choices");
  if (std::find(k->choices.begin(), k->choices.end(), v) == k->choices.end())
    throw UsageError(fmt::format("--variant {}: {}={} is not one of {}", variant_, key, v, fmt::join(k->choices, ", ")));
  return v;
}

bool VariantInfo::is_length_key(const std::string& key) const {
  return std::any_of(keys.begin(), keys.end(), [&](const VariantKey& k) { return k.name == key && k.default_value == kLengthDefault; });
}

// ---- the registry ----------------------------------------------------------------------------

const std::deque<VariantInfo>& variants() { return registry(); }

const VariantInfo* find_variant(const std::string& name) {
  for (const auto& v : registry())
    if (v.name == name) return &v;
  return nullptr;
}

const VariantInfo& variant_info(const std::string& name) {
  if (const VariantInfo* v = find_variant(name)) return *v;
  throw UsageError(fmt::format("--variant: unknown variant '{}'; valid: {} (`lsbench info` describes them)", name,
                               fmt::join(variant_names(), ", ")));
}

void register_variant(VariantInfo info) {
  check_record(info, registry());
  registry().push_back(std::move(info));
}

void unregister_variant(const std::string& name) {
  auto& r = registry();
  const auto it = std::find_if(r.begin(), r.end(), [&](const VariantInfo& v) { return v.name == name; });
  if (it == r.end()) return;
  if (static_cast<std::size_t>(it - r.begin()) < builtin_count())
    throw std::logic_error("variant '" + name + "' is built in and cannot be unregistered");
  r.erase(it);
}

const VariantInfo& baseline_variant() { return the_one(&VariantInfo::baseline, "baseline"); }
const VariantInfo& headline_variant() { return the_one(&VariantInfo::headline, "headline"); }
std::vector<std::string> default_sweep_variants() { return specs_with(&VariantInfo::in_default_sweep); }
std::vector<std::string> default_lra_variants() { return specs_with(&VariantInfo::in_lra_defaults); }

std::vector<std::string> variant_names() {
  std::vector<std::string> names;
  for (const auto& v : registry()) names.push_back(v.name);
  return names;
}

std::string variants_help() {
  std::string out;
  for (const auto& v : registry()) {
    std::vector<std::string> keys;
    for (const auto& k : v.keys) keys.push_back(key_text(k));
    const std::string key_list = keys.empty() ? "(no keys)" : fmt::format("{}", fmt::join(keys, ", "));
    const std::string causal = v.causal ? (!v.cuda_only.empty() ? "causal: cuda"
                                           : v.causal_cuda       ? "causal: cpu, cuda"
                                                                 : "causal: cpu")
                                        : "no causal form: " + v.no_causal_reason;
    out += fmt::format("  {:<14} {:<40} {} [{}]\n", v.name, key_list, v.summary, causal);
  }
  return out;
}

std::unique_ptr<Attention> make_attention(const VariantSpec& spec, std::int64_t dim, std::int64_t heads,
                                          std::int64_t n_max, Device device) {
  if (heads <= 0 || dim <= 0 || dim % heads != 0)
    throw UsageError(fmt::format("--dim {} must be a positive multiple of --heads {}", dim, heads));
  const VariantInfo& v = variant_info(spec.name);
  if (spec.causal && !v.causal)
    throw UsageError(fmt::format("--causal: {} has no causal form ({})", v.name,
                                 v.no_causal_reason.empty() ? "not built" : v.no_causal_reason));
  if (spec.causal && device == Device::cuda && !v.causal_cuda)
    throw UsageError(fmt::format("--causal --device cuda: the causal form of {} has no CUDA kernels yet (it runs on "
                                 "--device cpu)",
                                 v.name));
  if (device != Device::cuda && !v.cuda_only.empty())
    throw UsageError(fmt::format("--variant {}: {}; it runs only with --device cuda", v.name, v.cuda_only));
  auto cpu = v.make_cpu(SpecReader(spec, v.keys, n_max), dim, heads);
  if (cpu->causal() != spec.causal) throw std::logic_error(v.name + ": make_cpu ignored --causal");
  if (device == Device::cuda) return make_cuda_attention(std::move(cpu));
  return cpu;
}

std::vector<double> reference_attention(const std::string& name, const std::map<std::string, std::string>& keys,
                                        std::int64_t D, std::int64_t h, std::int64_t b, std::int64_t n,
                                        const RefParams& P, const std::vector<double>& x,
                                        const std::vector<std::uint8_t>& mask, const ProbDropout& drop,
                                        bool causal) {
  const VariantInfo* v = find_variant(name);
  if (!v || !(v->reference_core || v->reference_module))
    throw std::invalid_argument("reference_attention: no reference for variant " + name);
  if (drop.active() && !v->prob_dropout) throw std::invalid_argument(name + " has no attention dropout");
  if (causal && !v->causal) throw std::invalid_argument(name + " has no causal form");
  if (v->reference_module) return v->reference_module(keys, D, h, b, n, P, x, mask, drop, causal);
  return ref::projected(v->reference_core, keys, D, h, b, n, P, x, mask, drop, causal);
}

}  // namespace lsb
