// The one interface every attention variant implements (fp32, on the CPU or, where built, on CUDA),
// with its cost and memory model.
//
// Conventions (see ../shared/spec/attention.md):
//   x, y: (b, n, D) row-major; mask: (b, n) bytes, 1 = real token, 0 = padding (nullptr = all real).
//   Heads are column slices of width d = D/h of the (b, n, D) activations.
//   Parameters use PyTorch names and layouts (nn.Linear weight (out, in)).
//   A module lives on one device(): its parameters, and every pointer passed to it, are there.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attention_impls/prob_dropout.hpp"
#include "nn/param.hpp"
#include "nn/tensor.hpp"

namespace lsb {

// A parsed variant spec string: NAME[:key=value,...], e.g. "ls:w=8,r=32".
struct VariantSpec {
  std::string name;
  std::map<std::string, std::string> params;  // as written; validated by the variant factory
  std::string text;                           // the spec as the user wrote it (what ids and labels use)
  // --causal: query t sees keys u <= t only (../shared/spec/attention.md, "Causal attention"). Not part of
  // the text: reports record it as the config's "causal": true, and only when it is on.
  bool causal = false;

  // Throws UsageError naming `option` (where the spec came from) and the spec.
  static VariantSpec parse(const std::string& text, const std::string& option = "--variant");
  static std::vector<VariantSpec> parse_all(const std::vector<std::string>& texts);
  std::string str() const;                            // canonical: keys sorted
};

class Attention {
 public:
  virtual ~Attention() = default;

  // Variant name and fully resolved parameters (defaults filled in), e.g. {"w": "8", "r": "32"}.
  const std::string& name() const { return name_; }
  const std::map<std::string, std::string>& resolved_params() const { return resolved_; }
  std::string spec_string() const;
  std::int64_t dim() const { return dim_; }
  std::int64_t heads() const { return heads_; }
  Device device() const { return device_; }
  bool causal() const { return causal_; }

  // y = Attn(x, mask). x and mask must stay alive and unchanged until backward() when
  // keep_for_backward is set (the module keeps pointers, not copies).
  virtual void forward(const float* x, const std::uint8_t* mask, std::int64_t b, std::int64_t n, float* y,
                       bool keep_for_backward) = 0;
  // dx = d loss / d x for the last forward (written, not accumulated); parameter gradients +=.
  virtual void backward(const float* dy, float* dx) = 0;

  // The length the harness must pad a sequence of n tokens to (ls: a multiple of w).
  virtual std::int64_t padded_length(std::int64_t n) const { return n; }
  // Forward FLOPs of one call on (b, n), including the Q/K/V/O projections (spec cost model).
  virtual double forward_flops(std::int64_t b, std::int64_t n) const = 0;
  // Bytes this module allocates for one call (saved activations + workspace; parameters and their
  // gradients excluded), from its own buffer plan: the analytic memory model.
  virtual std::int64_t analytic_bytes(std::int64_t b, std::int64_t n, bool with_backward) const = 0;

  // Dropout on the attention probabilities of the following forward calls and their backward
  // (attention_impls/prob_dropout.hpp); p = 0 turns it off, and is the state a module starts in. A variant
  // without a probability matrix (performer, nystromformer) or without the kernels for it (CUDA so far)
  // refuses p > 0 with a UsageError: supports_prob_dropout() says which.
  void set_prob_dropout(const ProbDropout& drop);
  // From the variant's record (registry.hpp: prob_dropout), on the CPU only.
  bool supports_prob_dropout() const;

  // For tests and diagnostics: the probabilities kept for backward, or nullptr where the variant
  // keeps none. Layout: full (b, h, n, n); linformer (b, h, n, k); sliding (b, h, n, 2R+1) band;
  // ls (b, h, n, r + w + 2e), landmarks first, then the window keys start(t) .. start(t)+w+2e-1.
  virtual const Tensor* saved_probabilities() const { return nullptr; }

  std::vector<Param>& params() { return params_; }
  Param& param(const std::string& name);
  std::int64_t parameter_count() const;
  void zero_grad();
  // PyTorch-style defaults: Linear U(-1/sqrt(in), 1/sqrt(in)); LayerNorm weight 1, bias 0. The same
  // seed gives the same values on every device.
  virtual void init_params(std::uint64_t seed);

 protected:
  Attention(std::string name, std::map<std::string, std::string> resolved, std::int64_t dim, std::int64_t heads,
            Device device = Device::cpu, bool causal = false);
  Param& add_param(const std::string& name, Shape shape);
  // A parameter's value and gradient buffers (on the module's device).
  float* value_of(const std::string& name) { return param(name).value.data(); }
  float* grad_of(const std::string& name) { return param(name).grad.data(); }

  std::string name_;
  std::map<std::string, std::string> resolved_;
  std::int64_t dim_, heads_;
  Device device_;
  bool causal_;
  std::vector<Param> params_;
  ProbDropout drop_;
};

// Copies parameter values by name (shapes must match), across devices.
void copy_param_values(Attention& from, Attention& to);

}  // namespace lsb
