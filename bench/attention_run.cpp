// `lsbench attention run`: one forward (and optionally backward) of a variant on user arrays, so a
// user can check lsbench against their own PyTorch or NumPy implementation (README "Interop").

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "bench/attention_bench.hpp"
#include "bench/device_buffers.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"
#include "nn/npy.hpp"
#include "nn/threads.hpp"

namespace lsb {

int run_attention_interop(const AttentionRunOptions& opt) {
  namespace fs = std::filesystem;
  use_threads(opt.threads);
  const Device dev = opt.device;
  const Precision precision = opt.precision;
  require_precision(precision, dev);
  VariantSpec spec = opt.variant;  // with keys read from the weights added below
  // Every input is read and every output place checked before anything is computed or written.
  if (!opt.grads_dir.empty() && fs::exists(opt.grads_dir) && !fs::is_directory(opt.grads_dir))
    throw InputError(fmt::format("{}: --grads names a file; give a directory for dx.npy and the gradients", opt.grads_dir));
  const NpyArray xa = read_npy(opt.input);
  if (xa.shape.size() != 3)
    throw InputError(fmt::format("{}: input x must have shape (b, n, D), found {}", opt.input, shape_str(xa.shape)));
  const std::int64_t b = xa.shape[0], n = xa.shape[1], D = xa.shape[2];
  const std::vector<float> x = load_npy_f32(opt.input, xa.shape, "input x");
  const bool bwd = !opt.grad_output.empty();
  const std::vector<float> dy = bwd ? load_npy_f32(opt.grad_output, {b, n, D}, "output gradient dy") : std::vector<float>{};
  if (!fs::is_directory(opt.weights_dir))
    throw InputError(fmt::format("{}: --weights is not a directory", opt.weights_dir));
  auto weight_path = [&](const std::string& name) { return (fs::path(opt.weights_dir) / (name + ".npy")).string(); };
  // Sizes the spec leaves out are read from the weights where the variant says so (linformer: n_max
  // from the second axis of e.npy).
  for (const auto& k : variant_info(spec.name).keys_from_weights) {
    if (spec.params.count(k.key) || !fs::exists(weight_path(k.array))) continue;
    const NpyArray a = read_npy(weight_path(k.array));
    if (a.shape.size() <= k.axis)
      throw InputError(fmt::format("{}: {} has shape {}, which has no axis {} to take {} from", weight_path(k.array),
                                   k.array, shape_str(a.shape), k.axis, k.key));
    spec.params[k.key] = std::to_string(a.shape[k.axis]);
  }
  auto host = make_attention(spec, D, opt.heads, n);  // the weights are read into this one
  for (auto& p : host->params()) {
    const std::string path = weight_path(p.name);
    if (!fs::exists(path))
      throw InputError(fmt::format("{}: missing weight '{}' of shape {} for {}", path, p.name,
                                   shape_str(p.value.shape()), host->spec_string()));
    const auto w = load_npy_f32(path, p.value.shape(), "weight " + p.name);
    std::copy(w.begin(), w.end(), p.value.data());
  }
  auto on_gpu = dev == Device::cpu ? nullptr : make_attention(spec, D, opt.heads, n, dev);
  if (on_gpu) copy_param_values(*host, *on_gpu);
  Attention* a = on_gpu ? on_gpu.get() : host.get();
  const PrecisionScope scope(precision, dev);
  DeviceBuffers buffers(dev);
  std::vector<std::uint8_t> mask(b * n, 1);
  if (!opt.mask.empty()) mask = load_npy_mask(opt.mask, {b, n});

  // The harness pads to the variant's multiple (ls: w) with masked tokens, then crops the outputs.
  const std::int64_t pn = a->padded_length(n);
  auto pad = [&](const float* src) {
    std::vector<float> out(b * pn * D, 0.0f);
    for (std::int64_t bi = 0; bi < b; ++bi) std::copy(src + bi * n * D, src + (bi + 1) * n * D, out.data() + bi * pn * D);
    return out;
  };
  auto crop = [&](const std::vector<float>& src) {
    std::vector<float> out(b * n * D);
    for (std::int64_t bi = 0; bi < b; ++bi)
      std::copy(src.data() + bi * pn * D, src.data() + bi * pn * D + n * D, out.data() + bi * n * D);
    return out;
  };
  std::vector<std::uint8_t> pmask(b * pn, 0);
  for (std::int64_t bi = 0; bi < b; ++bi) std::copy(&mask[bi * n], &mask[bi * n] + n, &pmask[bi * pn]);
  std::vector<float> px = pad(x.data());
  std::vector<float> y(b * pn * D);
  float* y_on = buffers.on_device(y, "attention run y");
  a->forward(buffers.on_device(px, "attention run x"), buffers.on_device(pmask, "attention run mask"), b, pn, y_on,
             bwd);
  buffers.to_host(y_on, y);
  write_npy_f32(opt.output, {b, n, D}, crop(y).data());
  if (pn != n) fmt::print("padded n {} -> {} (multiple required by {})\n", n, pn, a->spec_string());
  fmt::print("wrote {} {}\n", opt.output, shape_str({b, n, D}));
  if (!bwd) return kOk;
  std::vector<float> pdy = pad(dy.data());
  std::vector<float> dx(b * pn * D);
  a->zero_grad();
  float* dx_on = buffers.on_device(dx, "attention run dx");
  a->backward(buffers.on_device(pdy, "attention run dy"), dx_on);
  buffers.to_host(dx_on, dx);
  fs::create_directories(opt.grads_dir);
  write_npy_f32((fs::path(opt.grads_dir) / "dx.npy").string(), {b, n, D}, crop(dx).data());
  for (auto& p : a->params()) {
    Tensor grad(p.grad.shape(), MemCategory::workspace, "attention run gradient copy");  // on the host
    copy_elements(p.grad, grad);
    write_npy_f32((fs::path(opt.grads_dir) / ("d" + p.name + ".npy")).string(), grad.shape(), grad.data());
  }
  fmt::print("wrote dx and {} parameter gradients to {}\n", a->params().size(), opt.grads_dir);
  return kOk;
}

}  // namespace lsb
