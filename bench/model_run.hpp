// `lsbench model run`: the whole LRA encoder on a weight folder saved under the PyTorch LRA code's
// state_dict names (model/model_weights.hpp) and token ids from .npy: its logits and, with labels, the mean
// cross-entropy and every parameter's gradient under the same names. How a PyTorch user checks lsbench
// against their model: README "Moving models between lsbench and PyTorch", docs/interop/.
#pragma once
#include <cstdint>
#include <string>

#include "attention_impls/attention.hpp"
#include "nn/matmul.hpp"
#include "nn/memory.hpp"

namespace lsb {

struct ModelRunOptions {
  VariantSpec variant;
  std::string weights_dir, input, mask, labels, grads_dir, output;
  std::string pooling = "mean";  // mean | mean-all (the reference code's) | cls
  Device device = Device::cpu;
  Precision precision = Precision::fp32;
  std::int64_t heads = 0;
  int threads = 0;
};

// Returns the exit code (0), or throws UsageError / InputError (exit 2 / 3) naming the option or file.
int run_model_command(const ModelRunOptions& opt);

}  // namespace lsb
