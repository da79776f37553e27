#include "bench/model_run.hpp"

#include <filesystem>

#include <fmt/format.h>

#include "model/encoder.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"
#include "model/model_weights.hpp"
#include "nn/npy.hpp"
#include "nn/threads.hpp"

namespace lsb {
namespace fs = std::filesystem;

int run_model_command(const ModelRunOptions& opt) {
  use_threads(opt.threads);
  const Device dev = opt.device;
  const Precision precision = opt.precision;
  require_precision(precision, dev);
  if (opt.heads <= 0) throw UsageError(fmt::format("--heads {}: expected a positive count", opt.heads));
  if (!opt.grads_dir.empty() && opt.labels.empty()) throw UsageError("--grads needs --labels (the loss to differentiate)");
  if (!opt.grads_dir.empty() && fs::exists(opt.grads_dir) && !fs::is_directory(opt.grads_dir))
    throw InputError(fmt::format("{}: --grads names a file; give a directory for the gradients", opt.grads_dir));

  // The model's sizes come from the arrays; the heads and the variant from the command line.
  const WeightFolderShape w = read_weight_folder_shape(opt.weights_dir);
  if (w.language_model)
    throw InputError(fmt::format("{}: the folder holds a language model ({}): model run takes classifiers; "
                                 "generate from it with `lsbench model sample --weights`",
                                 opt.weights_dir, torch_name("out.bias", "")));
  const std::string cls_name = torch_name("cls", "");
  if (w.cls != (opt.pooling == "cls"))
    throw InputError(w.cls ? fmt::format("{}: the folder holds {} (a cls-pooled model): use --pooling cls", opt.weights_dir, cls_name)
                           : fmt::format("--pooling cls: the folder {} has no {}", opt.weights_dir, cls_name));
  Shape ids_shape;
  const std::vector<std::int64_t> ids64 = load_npy_ints(opt.input, ids_shape, "--input ids");
  if (ids_shape.size() != 2)
    throw InputError(fmt::format("{}: --input ids must have shape (b, n), found {}", opt.input, shape_str(ids_shape)));
  const std::int64_t seqs = ids_shape[0], n = ids_shape[1], b = w.pair ? seqs / 2 : seqs;
  if (w.pair && seqs % 2 != 0)
    throw InputError(fmt::format("{}: a two-tower model takes 2b sequences (the b first documents, then the b second "
                                 "ones), found {}",
                                 opt.input, seqs));
  std::vector<std::int32_t> ids(ids64.size());
  for (std::size_t i = 0; i < ids64.size(); ++i) {
    if (ids64[i] < 0 || ids64[i] >= w.vocab)
      throw InputError(fmt::format("{}: token id {} at element {} is outside the vocabulary 0..{} of {}", opt.input,
                                   ids64[i], i, w.vocab - 1, torch_name("tok_emb", "")));
    ids[i] = static_cast<std::int32_t>(ids64[i]);
  }
  std::vector<std::uint8_t> mask(ids.size(), 1);
  if (!opt.mask.empty()) mask = load_npy_mask(opt.mask, ids_shape);
  std::vector<int> labels(static_cast<std::size_t>(b), 0);
  if (!opt.labels.empty()) {
    Shape ls;
    const auto l64 = load_npy_ints(opt.labels, ls, "--labels");
    if (ls != Shape{b}) throw InputError(fmt::format("{}: --labels must have shape ({},), found {}", opt.labels, b, shape_str(ls)));
    for (std::int64_t i = 0; i < b; ++i) {
      if (l64[i] < 0 || l64[i] >= w.classes)
        throw InputError(fmt::format("{}: label {} of example {} is outside 0..{}", opt.labels, l64[i], i, w.classes - 1));
      labels[i] = static_cast<int>(l64[i]);
    }
  }

  const PrecisionScope scope(precision, dev);
  EncoderConfig cfg{.vocab = w.vocab, .classes = w.classes, .max_len = w.positions - (w.cls ? 1 : 0), .dim = w.dim,
                    .heads = opt.heads, .layers = w.layers, .mlp_dim = w.mlp_dim, .pooling = opt.pooling,
                    .attention = opt.variant, .pair = w.pair, .device = dev};
  Encoder enc(cfg);
  for (const auto& [name, p] : enc.parameters())
    if (name == "pos_emb" && p->value.dim(0) != w.positions)
      throw InputError(fmt::format("{}: {} has {} rows, but {} pads sequences of up to {} tokens to {} positions",
                                   opt.weights_dir, torch_name("pos_emb", ""), w.positions,
                                   enc.attention(0).spec_string(), cfg.max_len, p->value.dim(0)));
  load_weights(enc, opt.weights_dir);
  if (n > cfg.max_len)
    throw InputError(fmt::format("{}: sequences of {} tokens, longer than the {} positions of {}", opt.input, n,
                                 cfg.max_len, torch_name("pos_emb", "")));
  enc.zero_grad();
  const double loss = enc.forward(ids.data(), mask.data(), labels.data(), b, n, false, 0);
  write_npy_f32(opt.output, {b, w.classes}, enc.logits());
  fmt::print("model run: {} with {} ({} layers, D {}, {} heads, vocabulary {}, {} classes), {} sequences of {} tokens, "
             "{} pooling, {}\n",
             opt.weights_dir, enc.attention(0).spec_string(), w.layers, w.dim, opt.heads, w.vocab, w.classes, seqs, n,
             opt.pooling, dev == Device::cpu ? "cpu" : "cuda");
  fmt::print("wrote {} {}\n", opt.output, shape_str({b, w.classes}));
  if (opt.labels.empty()) return kOk;
  fmt::print("loss {:.9g} (mean cross-entropy over {} examples)\n", loss, b);
  if (opt.grads_dir.empty()) return kOk;
  enc.backward();
  save_gradients(enc, opt.grads_dir);
  const float loss_f = static_cast<float>(loss);
  write_npy_f32((fs::path(opt.grads_dir) / "loss.npy").string(), {1}, &loss_f);
  fmt::print("wrote loss.npy and {} gradients to {}\n", enc.parameters().size(), opt.grads_dir);
  return kOk;
}

}  // namespace lsb
