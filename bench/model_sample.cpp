#include "bench/model_sample.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/encoder.hpp"
#include "model/model_weights.hpp"
#include "nn/checkpoint.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/matmul.hpp"
#include "nn/random.hpp"
#include "nn/threads.hpp"
#include "tasks/registry.hpp"

namespace lsb {

namespace fs = std::filesystem;

std::vector<double> next_token_distribution(Encoder& enc, const std::vector<std::int32_t>& context, double temperature) {
  const auto n = static_cast<std::int64_t>(context.size());
  if (n == 0) throw UsageError("model sample: the context is empty; give a --prompt of at least one byte");
  const std::vector<std::uint8_t> mask(context.size(), 1);
  // Labels only decide which positions the loss scores; the logits of every position are computed.
  const std::vector<int> labels(context.size(), 0);
  enc.forward(context.data(), mask.data(), labels.data(), 1, n, false, 0);
  const std::int64_t vocab = enc.config().vocab;
  const float* last = enc.logits() + (n - 1) * vocab;  // (1, N, vocab): row n-1 is the last real token
  std::vector<double> p(static_cast<std::size_t>(vocab), 0.0);
  const auto argmax = static_cast<std::size_t>(std::max_element(last, last + vocab) - last);
  if (temperature <= 0) {
    p[argmax] = 1.0;
    return p;
  }
  double total = 0;
  for (std::int64_t v = 0; v < vocab; ++v) {
    p[v] = std::exp((static_cast<double>(last[v]) - last[argmax]) / temperature);
    total += p[v];
  }
  for (double& x : p) x /= total;
  return p;
}

int draw_token(const std::vector<double>& p, double u) {
  double cumulative = 0;
  int last_with_mass = 0;
  for (std::size_t v = 0; v < p.size(); ++v) {
    if (p[v] <= 0) continue;
    cumulative += p[v];
    last_with_mass = static_cast<int>(v);
    if (u < cumulative) return last_with_mass;
  }
  return last_with_mass;
}

namespace {

// The model a checkpoint's metadata describes ("model" block, bench/train.cpp), with its parameters.
struct LoadedModel {
  EncoderConfig cfg;
  std::string task, source;
};

template <class T>
T model_field(const nlohmann::json& m, const char* key, const std::string& path) {
  if (!m.contains(key)) throw InputError(fmt::format("{}: the checkpoint's model block has no '{}'", path, key));
  try {
    return m.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InputError(fmt::format("{}: the checkpoint's model field '{}' has the wrong type", path, key));
  }
}

LoadedModel model_of_checkpoint(const ModelSampleOptions& opt) {
  const auto meta = nlohmann::json::parse(read_checkpoint_metadata(opt.checkpoint), nullptr, false);
  if (meta.is_discarded() || !meta.is_object() || !meta.contains("model") || !meta["model"].is_object())
    throw InputError(fmt::format("{}: no model description in the checkpoint's metadata (written by an older lsbench, "
                                 "or not a train checkpoint); use --weights with --task, --variant and --heads",
                                 opt.checkpoint));
  const nlohmann::json& m = meta["model"];
  LoadedModel out;
  out.task = model_field<std::string>(m, "task", opt.checkpoint);
  if (!task_info(out.task).language_model())
    throw InputError(fmt::format("{}: a classifier of the {} task; model sample takes language models", opt.checkpoint,
                                 out.task));
  VariantSpec spec = VariantSpec::parse(model_field<std::string>(m, "variant", opt.checkpoint), opt.checkpoint);
  spec.causal = true;
  out.cfg = {.vocab = model_field<std::int64_t>(m, "vocab", opt.checkpoint),
             .classes = 0,
             .max_len = model_field<std::int64_t>(m, "max_len", opt.checkpoint),
             .dim = model_field<std::int64_t>(m, "dim", opt.checkpoint),
             .heads = model_field<std::int64_t>(m, "heads", opt.checkpoint),
             .layers = model_field<std::int64_t>(m, "layers", opt.checkpoint),
             .mlp_dim = model_field<std::int64_t>(m, "mlp_dim", opt.checkpoint),
             .pooling = "none",
             .attention = spec,
             .language_model = true,
             .tie_embeddings = model_field<bool>(m, "tie_embeddings", opt.checkpoint),
             .device = opt.device};
  out.source = fmt::format("{} (step {})", opt.checkpoint, meta.value("step", std::int64_t{0}));
  return out;
}

LoadedModel model_of_weight_folder(const ModelSampleOptions& opt) {
  if (opt.heads <= 0) throw UsageError("--weights needs --heads (the folder's arrays do not say how D is split)");
  if (opt.variant.name.empty()) throw UsageError("--weights needs --variant (the attention the weights were trained with)");
  const WeightFolderShape w = read_weight_folder_shape(opt.weights_dir);
  if (!w.language_model)
    throw InputError(fmt::format("{}: no {} in the folder: a classifier; model sample takes language models",
                                 opt.weights_dir, torch_name("out.bias", "")));
  const TaskInfo& info = task_info(opt.task, "--task");
  if (!info.language_model()) throw UsageError(fmt::format("--task {}: not a language-modelling task", opt.task));
  if (w.vocab != info.vocab)
    throw InputError(fmt::format("{}: a vocabulary of {} tokens, the {} task has {}", opt.weights_dir, w.vocab, opt.task,
                                 info.vocab));
  LoadedModel out;
  out.task = opt.task;
  VariantSpec spec = opt.variant;
  spec.causal = true;
  out.cfg = {.vocab = w.vocab, .classes = 0, .max_len = w.positions, .dim = w.dim, .heads = opt.heads,
             .layers = w.layers, .mlp_dim = w.mlp_dim, .pooling = "none", .attention = spec,
             .language_model = true, .tie_embeddings = w.tied, .device = opt.device};
  out.source = opt.weights_dir;
  return out;
}

}  // namespace

int run_model_sample(const ModelSampleOptions& opt) {
  use_threads(opt.threads);
  if (opt.checkpoint.empty() == opt.weights_dir.empty())
    throw UsageError("model sample: give exactly one of --checkpoint and --weights");
  if (opt.bytes < 0) throw UsageError(fmt::format("--bytes {}: expected a count >= 0", opt.bytes));
  if (!(opt.temperature >= 0) || !std::isfinite(opt.temperature))
    throw UsageError(fmt::format("--temperature {}: expected a finite number >= 0 (0: greedy)", opt.temperature));
  require_precision(Precision::fp32, opt.device);
  const PrecisionScope scope(Precision::fp32, opt.device);

  const LoadedModel m = opt.checkpoint.empty() ? model_of_weight_folder(opt) : model_of_checkpoint(opt);
  const TaskInfo& info = task_info(m.task);
  Encoder enc(m.cfg);
  if (opt.checkpoint.empty()) {
    load_weights(enc, opt.weights_dir);
  } else {
    std::vector<CheckpointEntry> entries;
    for (const auto& [name, p] : enc.parameters()) entries.push_back({name, &p->value});
    load_checkpoint(opt.checkpoint, entries);
  }

  std::vector<std::int32_t> context;
  for (std::size_t i = 0; i < opt.prompt.size(); ++i) {
    const int t = info.token_of_byte(static_cast<unsigned char>(opt.prompt[i]));
    if (t < 0)
      throw UsageError(fmt::format("--prompt: byte {} ('{}') at offset {} is outside the {} alphabet",
                                   static_cast<int>(static_cast<unsigned char>(opt.prompt[i])), opt.prompt[i], i, m.task));
    context.push_back(t);
  }
  if (context.empty()) throw UsageError("--prompt: empty; the model needs at least one byte to continue");

  std::fprintf(stderr, "%s", fmt::format("model sample: {} with {} ({} layers, D {}, {} heads, context {}), {} bytes at "
                                         "temperature {}, seed {}\n",
                                         m.source, enc.attention(0).spec_string(), m.cfg.layers, m.cfg.dim, m.cfg.heads,
                                         m.cfg.max_len, opt.bytes, opt.temperature, opt.seed)
                                 .c_str());
  std::string text = opt.prompt;
  std::fwrite(text.data(), 1, text.size(), stdout);
  Rng rng(opt.seed);
  for (std::int64_t i = 0; i < opt.bytes; ++i) {
    // The most recent max_len tokens: a causal model's positions hold no later token's information.
    const std::size_t keep = std::min<std::size_t>(context.size(), static_cast<std::size_t>(m.cfg.max_len));
    const std::vector<std::int32_t> window(context.end() - static_cast<std::ptrdiff_t>(keep), context.end());
    const int token = draw_token(next_token_distribution(enc, window, opt.temperature), rng.uniform());
    context.push_back(token);
    const char c = static_cast<char>(info.byte_of_token(token));
    text += c;
    std::fputc(c, stdout);
    std::fflush(stdout);
  }
  std::fputc('\n', stdout);
  if (!opt.output.empty()) write_file_atomic(opt.output, text);
  return kOk;
}

}  // namespace lsb
