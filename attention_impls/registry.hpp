// One record per attention variant: everything the rest of lsbench needs to know about it, registered
// from the variant's own file. Nothing else in the tree switches on a variant's name: the CLI's help
// and default lists, the encoder, the float64 reference check, the CUDA dispatch, the PyTorch interop
// names and the reports' published efficiency rows all read these records (published accuracies are
// the tasks', tasks/registry.hpp).
//
// Adding a variant (docs/VARIANTS.md, "Adding a variant"): write its file with a class and its record,
//
//   LSB_VARIANT(mine) {
//     VariantInfo v;
//     v.name = "mine";
//     v.summary = "what it computes, in one line";
//     v.keys = {{"k", "16", "how many of something"}};
//     v.make_cpu = [](const SpecReader& keys, std::int64_t dim, std::int64_t heads) -> std::unique_ptr<Attention> {...};
//     v.reference_core = ...;  // the float64 reference of its core (attention_impls/reference_f64.hpp)
//     return v;
//   }
//
// and add one line to CMakeLists.txt: lsbench_variant(mine attention_impls/mine.cpp). A variant that is
// not built into lsbench (a test's, a plugin's) calls register_variant() with the same record instead.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attention_impls/attention.hpp"
#include "attention_impls/reference_f64.hpp"

namespace lsb {

// A spec key with its default. default_value kLengthDefault: the longest sequence the module is built
// for (make_attention's n_max), as linformer sizes its projection.
inline constexpr const char* kLengthDefault = "<length>";
struct VariantKey {
  std::string name;
  std::string default_value;
  std::string note = {};             // shown after the key in help, e.g. a per-layer schedule
  std::vector<std::string> choices = {};  // non-empty: the only values allowed (get_choice)
  bool causal_only = false;               // a key of the causal form only (ls's chunk length l)
  std::string causal_default = {};        // the default of the causal form where it differs
};

// The keys of one spec with the record's defaults filled in; unknown keys are usage errors listing the
// valid ones, and every accessor's error names the variant and the key.
class SpecReader {
 public:
  // A causal-only key is resolved only for a causal spec, and a usage error in any other.
  SpecReader(const VariantSpec& spec, const std::vector<VariantKey>& keys, std::int64_t n_max);
  bool causal() const { return causal_; }
  std::int64_t get_int(const std::string& key, std::int64_t min_value) const;
  std::string get_choice(const std::string& key) const;  // one of the key's choices
  // Every key with its value, defaults filled in.
  const std::map<std::string, std::string>& resolved() const { return values_; }
  // The spec as the user wrote it, for error messages.
  const std::string& spec_text() const { return spec_text_; }

 private:
  std::string variant_, spec_text_;
  bool causal_ = false;
  std::vector<VariantKey> keys_;
  std::map<std::string, std::string> values_;
};

// A published LRA Table 2 row of this variant's counterpart (byte-level text, batch 32, TPU v3, per
// device) at n = 1K, 2K, 3K, 4K.
struct PublishedEfficiency {
  std::string model;  // "Transformer (LRA Table 2, TPU v3)"
  std::array<double, 4> steps_per_s, gb;
};

// Where a key comes from when `attention run --weights` is given no value for it: the size of axis
// `axis` of the weight array `array` (linformer's n_max from e.npy).
struct KeyFromWeight {
  std::string key, array;
  std::size_t axis = 0;
};

struct VariantInfo {
  std::string name;     // what --variant NAME[:key=value,...] names
  std::string summary;  // one line for --help, `info` and error messages
  std::vector<VariantKey> keys;

  // The module on the CPU, from its resolved keys. Throws UsageError for impossible combinations.
  std::unique_ptr<Attention> (*make_cpu)(const SpecReader& keys, std::int64_t dim, std::int64_t heads) = nullptr;
  // The module on a CUDA device, built from its CPU twin (attention_impls/cuda/factory.hpp); nullptr
  // where there is no CUDA implementation (or no CUDA in this build: use LSB_CUDA_FACTORY).
  std::unique_ptr<Attention> (*make_cuda)(std::unique_ptr<Attention> cpu_twin) = nullptr;
  // Non-empty: the variant runs only with --device cuda, and this says why (a vendor library's kernels);
  // its make_cpu module is then only the twin (keys, cost model, parameter draw) and never runs.
  std::string cuda_only;
  // The float64 reference: the core of a Q/K/V/O module, or, for a module of another shape, the whole of it.
  ref::Core reference_core = nullptr;
  ref::Module reference_module = nullptr;
  // Dropout on the attention probabilities on the CPU (what Attention::supports_prob_dropout answers).
  bool prob_dropout = false;
  // A causal form (--causal; make_cpu reads SpecReader::causal()), on the CPU and on CUDA; where there is
  // none, why not (the usage error says it).
  bool causal = false, causal_cuda = false;
  std::string no_causal_reason;
  // The spec encoder layer `layer` (from 0) uses, where it differs by layer (lsra's kernel-size schedule).
  VariantSpec (*layer_spec)(const VariantSpec& spec, std::int64_t layer) = nullptr;

  // Interop with the PyTorch LRA code (model/model_weights.hpp): parameter -> its name under the block's
  // `mha.` where it is not the common one (W_q, W_k, W_v, ff for Q/K/V/O; lsbench's own name under
  // `attn.` otherwise), and the shape there where it differs.
  std::map<std::string, std::string> torch_names;
  Shape (*torch_shape)(const std::string& param, const Shape& shape) = nullptr;
  std::vector<KeyFromWeight> keys_from_weights;

  // Its place in the default lists. default_spec: the spec written there (empty: the name alone).
  std::string default_spec;
  bool baseline = false;         // exact softmax attention with n x n memory: the default model and the
                                 // row every ratio ("1.8x full") is taken against
  bool headline = false;         // the suite's subject: `attention bench`'s default, trained in the demo
  bool in_default_sweep = false; // sweep's and the demo's lists when --variants is not given
  bool in_lra_defaults = false;  // lra's list (../shared/spec/lra.md, "Variant defaults in presets")
  std::vector<PublishedEfficiency> published_efficiency;
  std::string results_note;  // a sentence under the reports' table of published results

  std::string spec() const { return default_spec.empty() ? name : default_spec; }
  // A key whose default is the module's length (kLengthDefault): it bounds the sequences the module
  // takes, and a report need not name it where it equals the run's n.
  bool is_length_key(const std::string& key) const;
};

// Defines the function that returns a built-in variant's record (in namespace lsb, in the variant's file):
//   LSB_VARIANT(ls) { VariantInfo v; ...; return v; }
// CMakeLists.txt's lsbench_variant(ls ...) line lists it for the registry.
#define LSB_VARIANT(ident) ::lsb::VariantInfo variant_record_##ident()

// A CUDA factory where this build has CUDA, nullptr where it has not (the symbol is then never named).
#if LSBENCH_HAVE_CUDA
#define LSB_CUDA_FACTORY(factory) (&(factory))
#else
#define LSB_CUDA_FACTORY(factory) nullptr
#endif

// A module of a registered variant. n_max is the longest sequence the module will see (linformer sizes E
// with it when the spec does not say n_max). Throws UsageError for unknown names or keys and impossible
// values, listing what is valid. Device::cuda throws UsageError saying why when CUDA was not built or no
// device is present.
std::unique_ptr<Attention> make_attention(const VariantSpec& spec, std::int64_t dim, std::int64_t heads,
                                          std::int64_t n_max, Device device = Device::cpu);
std::vector<std::string> variant_names();
// y (b, n, D) in float64 of variant `name`'s reference (its record's reference_core or reference_module)
// with resolved spec keys `keys`; mask (b, n), 1 = real; with dropout on the attention probabilities where
// the variant has it (std::invalid_argument where not, or where the variant has no reference).
std::vector<double> reference_attention(const std::string& name, const std::map<std::string, std::string>& keys,
                                        std::int64_t D, std::int64_t h, std::int64_t b, std::int64_t n,
                                        const RefParams& params, const std::vector<double>& x,
                                        const std::vector<std::uint8_t>& mask, const ProbDropout& drop = {},
                                        bool causal = false);
// One line per variant: name, keys with defaults, and what it is (for --help and error messages).
std::string variants_help();

// Every variant: the built-in ones in CMakeLists.txt's order, then those given to register_variant().
// Element addresses stay valid for the life of the process.
const std::deque<VariantInfo>& variants();
// nullptr when no variant has that name.
const VariantInfo* find_variant(const std::string& name);
// The record of `name`, or a UsageError listing the valid variants.
const VariantInfo& variant_info(const std::string& name);
// Adds a variant from outside the built-in list. Throws std::logic_error on a taken name or a record
// without make_cpu. Call it before using the registry from several threads.
void register_variant(VariantInfo info);
// Removes a variant given to register_variant() (a test's, for its own scope); std::logic_error for a
// built-in one. Invalidates references to it and to records registered after it.
void unregister_variant(const std::string& name);

// The records with these roles (there is exactly one baseline and one headline variant).
const VariantInfo& baseline_variant();
const VariantInfo& headline_variant();
std::vector<std::string> default_sweep_variants();  // specs
std::vector<std::string> default_lra_variants();     // specs

}  // namespace lsb
