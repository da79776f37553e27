#include "bench/train.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "bench/machine.hpp"
#include "bench/progress.hpp"
#include "bench/result_fields.hpp"
#include "nn/checkpoint.hpp"
#include "nn/cuda/device.hpp"
#include "model/encoder.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/matmul.hpp"
#include "nn/memory.hpp"
#include "model/model_weights.hpp"
#include "nn/npy.hpp"
#include "nn/optim.hpp"
#include "nn/threads.hpp"
#include "bench/context.hpp"
#include "reports/report.hpp"
#include "tasks/lm.hpp"

namespace lsb {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The attention dropout a run applies: --attention-dropout when given (the encoder refuses it where the
// variant cannot drop its probabilities), else --dropout where the variant can, else 0.
double attention_dropout(const TrainOptions& o, const Attention& a) {
  if (o.attention_dropout >= 0) return o.attention_dropout;
  return a.supports_prob_dropout() ? o.dropout : 0.0;
}

// The config block of the result: everything that decides the numbers, not where files go. The
// thread count is part of it because CPU results are bit-identical only for the same count. Its id
// is the key `compare` pairs on, and what a resumed run must match.
nlohmann::json run_config(const TrainOptions& o, const TaskData& t, const Attention& a, std::int64_t padded_n) {
  nlohmann::json c = {{"task", t.name},
          {"variant", a.name()},
          {"variant_params", variant_params_json(a.resolved_params())},
          {"preset", o.preset},
          {"n", t.length},
          {"padded_n", padded_n},
          {"batch", o.batch},
          {"heads", o.heads},
          {"dim", o.dim},
          {"layers", o.layers},
          {"mlp_dim", o.mlp_dim},
          {"pooling", o.pooling},
          {"dropout", o.dropout},
          {"attention_dropout", attention_dropout(o, a)},
          {"mode", "train"},
          {"device", device_name(o.device)},
          {"precision", precision_name(o.precision)},
          {"threads", current_threads().granted},
          {"steps", o.steps},
          {"warmup", o.warmup},
          {"lr", o.lr},
          {"weight_decay", o.weight_decay},
          {"clip_norm", o.clip_norm},
          {"eval_every", o.eval_every},
          {"seed", o.seed},
          {"split_seed", o.split_seed},
          {"max_train", o.max_train},
          {"max_val", o.max_val},
          {"max_test", o.max_test}};
  if (a.causal()) c["causal"] = true;
  if (task_info(t.name).language_model()) {  // a decoder: no pooling; its own output layer and evaluation
    c["pooling"] = "none";
    c["tie_embeddings"] = o.tie_embeddings;
    c["eval_stride"] = o.eval_stride > 0 ? o.eval_stride : t.length;
  }
  return c;
}

// The keys that only runs using the interop options have, so that every other run keeps its id.
void add_interop_config(nlohmann::json& config, const TrainOptions& o, const std::string& init_digest,
                        const std::string& batches_digest) {
  if (o.schedule != "linear") config["schedule"] = o.schedule;
  if (!init_digest.empty()) config["init_weights_digest"] = init_digest;
  if (!batches_digest.empty()) config["batches_digest"] = batches_digest;
}

// Training batches replayed from a folder (--batches): step s reads ids/mask/labels_{s-1:06d}.npy.
// Every file is checked (present, shaped (b, n) or (2b, n) for two towers, labels (b)) and digested
// before the first step, so a run never stops half-way on a missing batch.
class BatchFolder {
 public:
  BatchFolder(const std::string& dir, std::int64_t steps, std::int64_t b, std::int64_t seqs, std::int64_t n,
              std::int64_t vocab, int classes)
      : dir_(dir), b_(b), seqs_(seqs), n_(n), vocab_(vocab), classes_(classes) {
    if (!fs::is_directory(dir)) throw InputError(fmt::format("{}: --batches is not a directory", dir));
    std::uint64_t h = 1469598103934665603ULL;  // FNV-1a over every batch's ids, mask and labels
    auto mix = [&](const void* p, std::size_t bytes) {
      const auto* c = static_cast<const unsigned char*>(p);
      for (std::size_t i = 0; i < bytes; ++i) h = (h ^ c[i]) * 1099511628211ULL;
    };
    Batch scratch;
    for (std::int64_t s = 1; s <= steps; ++s) {
      load(s, scratch);
      mix(scratch.tokens.data(), scratch.tokens.size() * 4);
      mix(scratch.mask.data(), scratch.mask.size());
      mix(scratch.labels.data(), scratch.labels.size() * sizeof(int));
    }
    digest_ = fmt::format("{:016x}", h);
  }
  const std::string& digest() const { return digest_; }

  void load(std::int64_t step, Batch& out) const {
    auto path = [&](const char* what) { return (fs::path(dir_) / fmt::format("{}_{:06d}.npy", what, step - 1)).string(); };
    Shape shape;
    const auto ids = load_npy_ints(path("ids"), shape, "token ids");
    if (shape != Shape{seqs_, n_})
      throw InputError(fmt::format("{}: token ids must have shape ({}, {}) (the batch and the task's length), found {}",
                                   path("ids"), seqs_, n_, shape_str(shape)));
    out.b = b_, out.n = n_, out.real_tokens = 0;
    out.tokens.resize(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= vocab_)
        throw InputError(fmt::format("{}: token id {} at element {} is outside the vocabulary 0..{}", path("ids"), ids[i],
                                     i, vocab_ - 1));
      out.tokens[i] = static_cast<std::int32_t>(ids[i]);
    }
    out.mask = load_npy_mask(path("mask"), {seqs_, n_});
    for (const auto m : out.mask) out.real_tokens += m;
    const auto labels = load_npy_ints(path("labels"), shape, "labels");
    if (shape != Shape{b_})
      throw InputError(fmt::format("{}: labels must have shape ({},), found {}", path("labels"), b_, shape_str(shape)));
    out.labels.resize(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] < 0 || labels[i] >= classes_)
        throw InputError(fmt::format("{}: label {} of example {} is outside 0..{}", path("labels"), labels[i], i, classes_ - 1));
      out.labels[i] = static_cast<int>(labels[i]);
    }
  }

 private:
  std::string dir_, digest_;
  std::int64_t b_, seqs_, n_, vocab_;
  int classes_;
};

struct EvalResult {
  double accuracy = 0, loss = 0;
};

// Accuracy and mean cross-entropy over the whole split, in batches of the training batch size
// (the last batch is filled up with repeats of example 0 whose predictions are ignored, so that
// every forward has the training shape and nothing is reallocated).
// The predicted class of one row of logits (the first of equals).
int predicted_class(const float* z, int classes) {
  int best = 0;
  for (int c = 1; c < classes; ++c)
    if (z[c] > z[best]) best = c;
  return best;
}

EvalResult evaluate(Encoder& enc, const Split& s, std::int64_t batch, std::int64_t n, int classes, Batch& buf) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(batch));
  std::int64_t correct = 0;
  double loss = 0;
  for (std::int64_t start = 0; start < s.size(); start += batch) {
    const std::int64_t real = std::min(batch, s.size() - start);
    for (std::int64_t i = 0; i < batch; ++i) idx[i] = i < real ? start + i : 0;
    make_batch(s, idx.data(), batch, n, buf);
    enc.forward(buf.tokens.data(), buf.mask.data(), buf.labels.data(), batch, n, false, 0);
    const float* logits = enc.logits();
    for (std::int64_t i = 0; i < real; ++i) {
      const float* z = logits + i * classes;
      const int best = predicted_class(z, classes);
      const double mx = z[best];
      double sum = 0;
      for (int c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(z[c]) - mx);
      const int label = buf.labels[i];
      loss += std::log(sum) + mx - z[label];
      correct += best == label;
    }
  }
  return {static_cast<double>(correct) / static_cast<double>(s.size()), loss / static_cast<double>(s.size())};
}

}  // namespace

LmEval evaluate_lm(Encoder& enc, const TokenStream& s, std::int64_t batch, std::int64_t tps, std::int64_t stride,
                   Batch& buf) {
  const auto windows = lm::eval_windows(s.size(), tps, stride);
  double nats = 0;
  std::int64_t scored = 0;
  for (std::size_t w0 = 0; w0 < windows.size();) {
    const std::int64_t len = windows[w0].length;
    std::size_t w1 = w0;
    while (w1 < windows.size() && static_cast<std::int64_t>(w1 - w0) < batch && windows[w1].length == len) ++w1;
    const std::int64_t b = static_cast<std::int64_t>(w1 - w0);
    buf.tokens.resize(static_cast<std::size_t>(b * len));
    buf.mask.assign(static_cast<std::size_t>(b * len), 1);
    buf.labels.resize(static_cast<std::size_t>(b * len));
    for (std::int64_t i = 0; i < b; ++i) {
      const lm::EvalWindow& w = windows[w0 + static_cast<std::size_t>(i)];
      for (std::int64_t t = 0; t < len; ++t) {
        const std::int64_t target = w.start + t + 1;
        buf.tokens[i * len + t] = s.tokens[w.start + t];
        buf.labels[i * len + t] = target >= w.first_scored ? s.tokens[target] : -1;
      }
    }
    const double mean = enc.forward(buf.tokens.data(), buf.mask.data(), buf.labels.data(), b, len, false, 0);
    nats += mean * static_cast<double>(enc.scored_tokens());
    scored += enc.scored_tokens();
    w0 = w1;
  }
  const double loss = nats / static_cast<double>(scored);
  return {loss / std::log(2.0), loss, scored};
}

namespace {

// On --resume: the best-validation parameters of step best_step (0: no validation yet) from best.ckpt. Its
// step must be that one, or later than last.ckpt's (a run stopped between writing the two: that step is run
// again and saved again). A missing or other best.ckpt is an input error: the test accuracy (or BPC) "at the
// best validation" would be of parameters that were never validated.
void restore_best(const std::string& best_path, const std::string& last_path, std::int64_t best_step,
                  std::int64_t last_step, const std::vector<CheckpointEntry>& best_entries) {
  if (best_step == 0) return;
  if (!fs::exists(best_path))
    throw InputError(fmt::format("{}: missing, but {} records the best validation at step {}; restore it, or start "
                                 "again in another --checkpoint-dir",
                                 best_path, last_path, best_step));
  const auto meta = nlohmann::json::parse(read_checkpoint_metadata(best_path), nullptr, false);
  const std::int64_t step = meta.is_object() && meta.contains("step") && meta["step"].is_number_integer() ? meta["step"].get<std::int64_t>() : -1;
  if (step > last_step) return;
  if (step != best_step)
    throw InputError(fmt::format("{}: holds the parameters of step {}, but {} records the best validation at step {}; "
                                 "restore the matching best.ckpt, or start again in another --checkpoint-dir",
                                 best_path, step, last_path, best_step));
  load_checkpoint(best_path, best_entries);
}

// Everything a resumed run needs besides tensors, kept in the checkpoint's metadata.
struct RunState {
  std::int64_t step = 0;
  double train_seconds = 0, wall_seconds = 0;
  std::int64_t tokens = 0;
  double best_val = -1;
  std::int64_t best_step = 0;
  nlohmann::json curves;

  // metric: the task's ("accuracy" or "bpc"), curves "<metric>" and "val_<metric>" beside the losses.
  explicit RunState(const std::string& metric) {
    for (const std::string& k : {std::string("step"), std::string("loss"), metric, std::string("lr"),
                                 std::string("grad_norm"), std::string("tokens_per_s"), std::string("val_step"),
                                 "val_" + metric, std::string("val_loss")})
      curves[k] = nlohmann::json::array();
  }

  // wall: the run's wall time so far (the clock of this process added to what earlier ones ran).
  nlohmann::json to_json(const std::string& id, double wall) const {
    return {{"config_id", id},       {"step", step},     {"train_seconds", train_seconds},
            {"wall_seconds", wall},  {"tokens", tokens}, {"best_val", best_val},
            {"best_step", best_step}, {"curves", curves}};
  }
  void from_json(const nlohmann::json& j) {
    step = j.at("step");
    train_seconds = j.at("train_seconds");
    wall_seconds = j.at("wall_seconds");
    tokens = j.at("tokens");
    best_val = j.at("best_val");
    best_step = j.at("best_step");
    curves = j.at("curves");
  }
};

std::vector<CheckpointEntry> param_entries(const std::vector<std::pair<std::string, Param*>>& params) {
  std::vector<CheckpointEntry> out;
  for (const auto& [name, p] : params) out.push_back({name, &p->value});
  return out;
}

// A path as a shell word: quoted where it holds anything but letters, digits and / . _ - + , :
std::string quoted_if_needed(const std::string& s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("/._-+,:").find(c) != std::string_view::npos;
  });
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

const std::vector<std::string>& train_preset_names() {
  static const std::vector<std::string> names = {"lra-small", "smoke", "lm-small", "enwik8-base"};
  return names;
}

void apply_train_preset(TrainOptions& o) {
  const TaskInfo& task = task_info(o.task);
  if (o.preset == "lm-small" || o.preset == "enwik8-base") {
    // ../shared/spec/lm.md "Presets": the model is the task recipe's (below).
    o.pooling = "mean", o.log_every = 10;
  } else if (o.preset == "lra-small") {
    // ../shared/spec/lra.md "Models": the Transformer-LS / Nystromformer PyTorch LRA recipe.
    o.dim = 64, o.heads = 2, o.layers = 2, o.mlp_dim = 128, o.pooling = "mean", o.log_every = 10;
  } else if (o.preset == "smoke") {
    // Seconds per run on two CPU cores, still clearly above chance: a narrow one-layer model, a short
    // sequence where the task allows it, a high learning rate, and evaluation on subsets. Test subsets
    // are large enough that chance stays 5 binomial standard deviations below what the runs reach
    // (tests/test_train.cpp checks exactly that).
    o.dim = 32, o.heads = 2, o.layers = 1, o.mlp_dim = 64, o.pooling = "mean", o.log_every = 5;
  } else {
    throw UsageError(fmt::format("--preset {}: unknown; expected one of {}", o.preset,
                                 fmt::join(train_preset_names(), ", ")));
  }
  // The task's own recipe for the preset (its file, tasks/*.cpp).
  const TaskRecipe& r = task.recipe(o.preset);
  o.length = r.length, o.batch = r.batch, o.steps = r.steps, o.warmup = r.warmup;
  o.eval_every = r.eval_every > 0 ? r.eval_every : std::max<std::int64_t>(r.steps / 20, 1);
  o.lr = r.lr, o.weight_decay = r.weight_decay, o.dropout = r.dropout, o.clip_norm = r.clip_norm;
  o.max_train = 0, o.max_val = r.max_val, o.max_test = r.max_test;
  if (r.dim > 0) o.dim = r.dim;
  if (r.heads > 0) o.heads = r.heads;
  if (r.layers > 0) o.layers = r.layers;
  if (r.mlp_dim > 0) o.mlp_dim = r.mlp_dim;
}

std::string train_command(const TrainOptions& o) {
  TrainOptions preset = o;  // what --preset alone gives: options equal to it are left out
  apply_train_preset(preset);
  std::string cmd = fmt::format("lsbench train --task {} --data-dir {} --preset {} --variant {}", o.task,
                                quoted_if_needed(o.data_dir), o.preset, o.variant.text);
  auto add = [&](const char* flag, const auto& value, const auto& preset_value) {
    if (value != preset_value) cmd += fmt::format(" {} {}", flag, value);
  };
  add("--steps", o.steps, preset.steps), add("--batch", o.batch, preset.batch), add("--lr", o.lr, preset.lr);
  add("--warmup", o.warmup, preset.warmup), add("--schedule", o.schedule, preset.schedule);
  add("--weight-decay", o.weight_decay, preset.weight_decay), add("--dropout", o.dropout, preset.dropout);
  add("--attention-dropout", o.attention_dropout, preset.attention_dropout);
  add("--clip-norm", o.clip_norm, preset.clip_norm), add("--eval-every", o.eval_every, preset.eval_every);
  add("--log-every", o.log_every, preset.log_every), add("--length", o.length, preset.length);
  add("--dim", o.dim, preset.dim), add("--heads", o.heads, preset.heads), add("--layers", o.layers, preset.layers);
  add("--mlp-dim", o.mlp_dim, preset.mlp_dim), add("--pooling", o.pooling, preset.pooling);
  add("--max-train", o.max_train, preset.max_train), add("--max-val", o.max_val, preset.max_val);
  add("--max-test", o.max_test, preset.max_test), add("--eval-stride", o.eval_stride, preset.eval_stride);
  if (o.tie_embeddings) cmd += " --tie-embeddings";
  const TrainOptions defaults;
  add("--difficulty", o.difficulty, defaults.difficulty), add("--val-from", o.val_from, defaults.val_from);
  add("--split-seed", o.split_seed, defaults.split_seed), add("--seed", o.seed, defaults.seed);
  add("--threads", o.threads, defaults.threads);
  if (o.device != defaults.device) cmd += fmt::format(" --device {}", device_name(o.device));
  if (o.precision != defaults.precision) cmd += fmt::format(" --precision {}", precision_name(o.precision));
  if (!o.memory_budget.empty()) cmd += " --memory-budget " + o.memory_budget.text();
  if (!o.init_weights.empty()) cmd += " --init-weights " + quoted_if_needed(o.init_weights);
  if (!o.batches_dir.empty()) cmd += " --batches " + quoted_if_needed(o.batches_dir);
  return cmd;
}

TaskOptions task_options(const TrainOptions& o) {
  return {.data_dir = o.data_dir, .length = o.length, .split_seed = o.split_seed, .val_from = o.val_from,
          .difficulty = o.difficulty,
          .max_train = o.max_train, .max_val = o.max_val, .max_test = o.max_test};
}

nlohmann::json train_run(const TrainOptions& o, const TaskData& task,
                         const std::function<void(const nlohmann::json&)>& on_result) {
  if (o.batch <= 0 || o.steps <= 0 || o.warmup < 0 || o.eval_every <= 0 || o.log_every <= 0)
    throw UsageError(fmt::format("--batch {}, --steps {}, --eval-every {}, --log-every {} must be positive and "
                                 "--warmup {} not negative",
                                 o.batch, o.steps, o.eval_every, o.log_every, o.warmup));
  if (!(o.lr > 0) || o.weight_decay < 0 || o.clip_norm < 0)
    throw UsageError(fmt::format("--lr {} must be positive, --weight-decay {} and --clip-norm {} not negative", o.lr,
                                 o.weight_decay, o.clip_norm));
  check_schedule(o.schedule, o.warmup, o.steps);
  if (!(o.attention_dropout < 1) || (o.attention_dropout < 0 && o.attention_dropout != -1))
    throw UsageError(fmt::format("--attention-dropout {}: expected a value in [0, 1)", o.attention_dropout));
  const TaskInfo& info = task_info(task.name);
  const bool lm = info.language_model();
  VariantSpec spec = o.variant;
  if (lm) spec.causal = true;  // a decoder: the variant's causal form (one without refuses, exit 2)
  if (lm && !o.batches_dir.empty())
    throw UsageError("--batches: replayed batches are for classification tasks, not language models");
  if (!lm && (o.tie_embeddings || o.eval_stride != 0))
    throw UsageError(fmt::format("--tie-embeddings and --eval-stride are for language-model tasks; {} is {}", task.name,
                                 task_kind_name(info.kind)));
  const std::int64_t stride = o.eval_stride > 0 ? o.eval_stride : task.length;
  if (o.eval_stride < 0 || stride > task.length)
    throw UsageError(fmt::format("--eval-stride {}: expected 1 .. the tokens per sample ({})", o.eval_stride, task.length));
  const Device dev = o.device;
  const PrecisionScope precision_scope(o.precision, dev);  // refuses a precision this device cannot run
  auto& tracker = MemoryTracker::instance();
  tracker.release_cached(dev);
  tracker.reset_peak(dev);
  const auto wall0 = Clock::now();

  Encoder enc({.vocab = task.vocab, .classes = task.classes, .max_len = task.length, .dim = o.dim,
               .heads = o.heads, .layers = o.layers, .mlp_dim = o.mlp_dim, .pooling = o.pooling,
               .dropout = static_cast<float>(o.dropout), .attention = spec, .pair = task.train.pairs(),
               .language_model = lm, .tie_embeddings = o.tie_embeddings, .device = dev});
  enc.set_attention_dropout(static_cast<float>(attention_dropout(o, enc.attention(0))));
  enc.init_params(o.seed);
  std::string init_digest;
  if (!o.init_weights.empty()) {
    load_weights(enc, o.init_weights);
    init_digest = parameter_digest(enc);
  }
  const std::int64_t n = task.length;
  std::unique_ptr<BatchFolder> batch_folder;
  if (!o.batches_dir.empty())
    batch_folder = std::make_unique<BatchFolder>(o.batches_dir, o.steps, o.batch,
                                                 task.train.pairs() ? 2 * o.batch : o.batch, n, task.vocab, task.classes);
  const auto params = enc.parameters();
  AdamW opt(params, {.weight_decay = o.weight_decay});
  // The best-validation parameters, kept in memory (and in best.ckpt when checkpointing).
  std::vector<Tensor> best;
  for (const auto& [name, p] : params)
    best.emplace_back(p->value.shape(), MemCategory::parameters, "best-validation copy", dev);
  std::vector<CheckpointEntry> best_entries;
  for (std::size_t k = 0; k < params.size(); ++k) best_entries.push_back({params[k].first, &best[k]});
  auto keep_best = [&] {
    for (std::size_t k = 0; k < params.size(); ++k) copy_elements(params[k].second->value, best[k]);
  };
  keep_best();

  nlohmann::json result = {{"kind", "train-run"},
                           {"config", run_config(o, task, enc.attention(0), enc.internal_length(n))},
                           {"data", task.provenance}};
  add_interop_config(result["config"], o, init_digest, batch_folder ? batch_folder->digest() : "");
  const std::string id = config_id(result["config"]);
  result["id"] = id;
  result["repro"] = train_command(o);

  if (lm)
    result["model_notes"] = "decoder-only pre-LN Transformer with learned absolute positions; no Transformer-XL "
                            "relative positions or segment cache (../shared/spec/lm.md: optional, not built)";

  // Checkpoints: last.ckpt (parameters, AdamW state, run state) and best.ckpt (parameters), both with the
  // model's shape, so `model sample --checkpoint` can rebuild it (bench/model_sample.cpp).
  const nlohmann::json model_meta = {{"task", o.task},
                                     {"variant", spec.text},
                                     {"causal", spec.causal},
                                     {"vocab", task.vocab},
                                     {"classes", task.classes},
                                     {"max_len", task.length},
                                     {"dim", o.dim},
                                     {"heads", o.heads},
                                     {"layers", o.layers},
                                     {"mlp_dim", o.mlp_dim},
                                     {"pooling", o.pooling},
                                     {"pair", task.train.pairs()},
                                     {"tie_embeddings", o.tie_embeddings}};
  RunState st(info.metric);
  std::vector<CheckpointEntry> last_entries = param_entries(params);
  for (const auto& e : opt.state()) last_entries.push_back(e);
  const fs::path ckdir = o.checkpoint_dir;
  const std::string last_path = o.checkpoint_dir.empty() ? "" : (ckdir / "last.ckpt").string();
  const std::string best_path = o.checkpoint_dir.empty() ? "" : (ckdir / "best.ckpt").string();
  if (!o.checkpoint_dir.empty()) {
    std::error_code ec;
    fs::create_directories(ckdir, ec);
    if (ec) throw InputError(fmt::format("{}: cannot create the checkpoint directory: {}", o.checkpoint_dir, ec.message()));
  }
  if (o.resume) {
    if (o.checkpoint_dir.empty()) throw UsageError("--resume needs --checkpoint-dir");
    if (fs::exists(last_path)) {
      const auto meta = nlohmann::json::parse(read_checkpoint_metadata(last_path), nullptr, false);
      if (meta.is_discarded() || !meta.contains("config_id"))
        throw InputError(fmt::format("{}: the checkpoint's metadata is not an lsbench training state", last_path));
      if (meta["config_id"] != id)
        throw UsageError(fmt::format("--resume: {} was written by another configuration (config id {}, this run {}); "
                                     "use the same options or another --checkpoint-dir",
                                     last_path, meta["config_id"].get<std::string>(), id));
      load_checkpoint(last_path, last_entries);
      st.from_json(meta);
      opt.set_steps(st.step);
      restore_best(best_path, last_path, st.best_step, st.step, best_entries);
      result["resumed_from_step"] = st.step;
    }
  }
  const double wall_before = st.wall_seconds;  // of the runs this one resumes
  auto wall = [&] { return wall_before + seconds_since(wall0); };

  Batch batch, eval_buf;
  auto fill = [&](const std::string& status) {
    result["status"] = status;
    if (status == "running")  // the report of a run that was stopped here says how far it got
      result["message"] = fmt::format("in progress: {} of {} steps done", st.step, o.steps);
    else if (status == "ok")
      result.erase("message");
    result["steps_done"] = st.step;
    result["wall_s"] = wall();
    result["train_s"] = st.train_seconds;
    if (st.train_seconds > 0)
      result["throughput"] = {{"tokens_per_s", static_cast<double>(st.tokens) / st.train_seconds},
                              {"steps_per_s", static_cast<double>(st.step) / st.train_seconds},
                              {"scope", "training steps only (evaluation and checkpoints excluded); real tokens"}};
    result["memory"] = tracked_memory_json(tracker.stats(dev));
    result["memory"]["peak_rss_bytes"] = peak_rss_bytes();
    result["curves"] = st.curves;
    if (st.best_step > 0) result[info.metric] = {{"val_best", st.best_val}, {"val_best_step", st.best_step}};
  };

  // The validation or test split in the task's metric (accuracy, or a language model's bits per character).
  struct Score {
    double metric = 0, loss = 0;
    std::int64_t scored = 0;  // examples, or a language model's tokens
  };
  auto score = [&](bool test) -> Score {
    if (lm) {
      const LmEval e = evaluate_lm(enc, test ? task.test_stream : task.val_stream, o.batch, n, stride, eval_buf);
      return {e.bpc, e.loss, e.scored};
    }
    const Split& s = test ? task.test : task.val;
    const EvalResult e = evaluate(enc, s, o.batch, n, task.classes, eval_buf);
    return {e.accuracy, e.loss, s.size()};
  };
  auto better = [&](double a, double b) { return lm ? a < b : a > b; };
  std::int64_t val_scored = 0;

  const std::uint64_t sample_seed = o.seed ^ 0x5851F42D4C957F2DULL;
  std::unique_ptr<BatchSampler> sampler;
  if (!lm) sampler = std::make_unique<BatchSampler>(task.train.size(), o.batch, sample_seed);
  Progress progress(o.steps);
  double interval_loss = 0, interval_seconds = 0;
  std::int64_t interval_steps = 0, interval_tokens = 0, interval_correct = 0;
  std::string status = "ok";
  while (st.step < o.steps) {
    const std::int64_t step = st.step + 1;
    if (batch_folder) {
      batch_folder->load(step, batch);
    } else if (lm) {
      lm::window_batch(task.train_stream, step, o.batch, n, sample_seed, batch);
    } else {
      const auto& idx = sampler->indices(step);
      make_batch(task.train, idx.data(), o.batch, n, batch);
    }
    const ScheduleStep schedule = schedule_at(o.schedule, o.lr, step, o.warmup, o.steps, AdamWConfig{}.beta1);
    const double lr = schedule.lr;
    const auto t0 = Clock::now();
    enc.zero_grad();
    const double loss = enc.forward(batch.tokens.data(), batch.mask.data(), batch.labels.data(), o.batch, n, true,
                                    o.seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(step));
    if (!std::isfinite(loss)) {
      status = "diverged";
      result["message"] = fmt::format("the training loss became {} at step {} (lr {:.3g})", loss, step, lr);
      progress.message(fmt::format("diverged: {}", result["message"].get<std::string>()));
      break;
    }
    if (!lm) {
      const float* logits = enc.logits();  // the training batch's, before the update
      for (std::int64_t i = 0; i < o.batch; ++i)
        interval_correct += predicted_class(logits + i * task.classes, task.classes) == batch.labels[i];
    }
    enc.backward();
    const double gnorm = clip_grad_norm(params, o.clip_norm);
    opt.step(lr, schedule.beta1);
    if (dev == Device::cuda) cuda::synchronize();  // the step's time is its work's, not its queueing's
    const double dt = seconds_since(t0);
    st.step = step;
    st.train_seconds += dt;
    st.tokens += batch.real_tokens;
    interval_loss += loss, interval_seconds += dt, interval_steps += 1, interval_tokens += batch.real_tokens;
    if (step % o.log_every == 0 || step == o.steps) {
      auto& c = st.curves;
      c["step"].push_back(step);
      c["loss"].push_back(interval_loss / static_cast<double>(interval_steps));
      const double mean_loss = interval_loss / static_cast<double>(interval_steps);
      // The training metric of the interval: accuracy on its batches, or bits per character.
      c[info.metric].push_back(lm ? mean_loss / std::log(2.0)
                                  : static_cast<double>(interval_correct) / static_cast<double>(interval_steps * o.batch));
      c["lr"].push_back(lr);
      c["grad_norm"].push_back(gnorm);
      c["tokens_per_s"].push_back(static_cast<double>(interval_tokens) / interval_seconds);
      if (o.progress)
        progress.update(step,
                        fmt::format("loss {:.4f} {} lr {:.2e} {:.0f} tok/s", mean_loss,
                                    lm ? fmt::format("bpc {:.3f}", c["bpc"].back().get<double>())
                                       : fmt::format("acc {:.1f}%", 100.0 * c["accuracy"].back().get<double>()),
                                    lr, static_cast<double>(interval_tokens) / interval_seconds),
                        interval_seconds / static_cast<double>(interval_steps));
      interval_loss = interval_seconds = 0, interval_steps = interval_tokens = interval_correct = 0;
    }
    if (step % o.eval_every == 0 || step == o.steps) {
      const Score v = score(false);
      val_scored = v.scored;
      st.curves["val_step"].push_back(step);
      st.curves["val_" + info.metric].push_back(v.metric);
      st.curves["val_loss"].push_back(v.loss);
      const bool improved = st.best_step == 0 || better(v.metric, st.best_val);
      if (improved) {
        st.best_val = v.metric, st.best_step = step;
        keep_best();
        if (!best_path.empty())
          save_checkpoint(best_path,
                          nlohmann::json{{"step", step}, {"val_" + info.metric, v.metric}, {"model", model_meta}}.dump(),
                          best_entries);
      }
      if (!last_path.empty()) {
        nlohmann::json meta = st.to_json(id, wall());
        meta["model"] = model_meta;
        save_checkpoint(last_path, meta.dump(), last_entries);
      }
      if (o.progress)
        progress.message(fmt::format("step {}: validation {} loss {:.4f}{}", step,
                                     lm ? fmt::format("bpc {:.4f}", v.metric) : fmt::format("accuracy {:.2f}%", 100 * v.metric),
                                     v.loss, improved ? " (best so far)" : ""));
      fill("running");
      if (on_result) on_result(result);
    }
  }
  progress.finish();
  if (status == "ok") {
    // The test metric of the final model, then of the best-validation parameters.
    const Score final_test = score(true);
    if (!o.save_weights.empty()) save_weights(enc, (fs::path(o.save_weights) / "final").string());
    Score best_test = final_test;
    if (st.best_step != st.step) {  // otherwise the best-validation parameters are the final ones
      for (std::size_t k = 0; k < params.size(); ++k) copy_elements(best[k], params[k].second->value);
      best_test = score(true);
    }
    if (!o.save_weights.empty()) {
      save_weights(enc, (fs::path(o.save_weights) / "best").string());
      result["weights_saved"] = {{"best", (fs::path(o.save_weights) / "best").string()},
                                 {"final", (fs::path(o.save_weights) / "final").string()}};
    }
    fill("ok");
    result[info.metric]["test_final"] = final_test.metric;
    result[info.metric]["test_at_best_val"] = best_test.metric;
    if (lm) {
      // The context-free baseline, as majority_class is for a classifier; and which tokens were scored.
      result["bpc"]["test_unigram"] = lm::unigram_entropy_bits(task.test_stream.tokens, static_cast<int>(task.vocab));
      result["evaluation"] = {{"tokens_per_sample", n},
                              {"stride", stride},
                              {"val_tokens_scored", val_scored},
                              {"test_tokens_scored", final_test.scored},
                              {"scored", "every token of the split after its first, exactly once; after the first "
                                         "window each window slides by the stride and scores its last stride tokens"}};
    } else {
      result["accuracy"]["test_majority_class"] = majority_rate(task.test, task.classes);
    }
  } else {
    fill(status);
  }
  if (on_result) on_result(result);
  return result;
}

namespace {

// The parameters alone (one block's attention as the variant counts it, its MLP and LayerNorms, per block),
// with their gradients and AdamW's two moments, against the memory budget, or the machine's memory when
// none is set: a model that cannot fit is refused at once (exit 4) instead of allocating until the system
// stops the run (--layers 1000000). A lower bound: the embeddings and activations come on top.
void require_parameters_fit(const TrainOptions& o, std::int64_t attention_parameters) {
  const double D = static_cast<double>(o.dim), F = static_cast<double>(o.mlp_dim);
  const double per_block = static_cast<double>(attention_parameters) + 2 * D * F + F + D + 4 * D;
  const double bytes = static_cast<double>(o.layers) * per_block * sizeof(float) * 4;
  const bool budgeted = !o.memory_budget.empty();
  const double limit = budgeted                   ? static_cast<double>(o.memory_budget.bytes())
                       : o.device == Device::cuda ? static_cast<double>(cuda::query(0).memory_bytes)
                                                  : static_cast<double>(physical_memory_bytes());
  if (bytes <= limit) return;
  const auto whole = [](double b) { return format_bytes(static_cast<std::int64_t>(std::min(b, 9.0e18))); };
  throw OutOfMemory(fmt::format("--layers {} --dim {} --mlp-dim {}: the parameters with their gradients and AdamW's "
                                "moments take at least {}, more than {}",
                                o.layers, o.dim, o.mlp_dim, whole(bytes),
                                budgeted ? fmt::format("--memory-budget {}", o.memory_budget.text())
                                         : fmt::format("the {}'s memory ({})", o.device == Device::cuda ? "GPU" : "machine", whole(limit))),
                    static_cast<std::int64_t>(std::min(bytes, 9.0e18)), static_cast<std::int64_t>(limit));
}

}  // namespace

int run_train_command(const TrainOptions& opts) {
  TrainOptions o = opts;
  const OutputLock report_lock(o.out);
  const ThreadGrant threads = use_threads(o.threads);
  const Device dev = o.device;
  if (!o.memory_budget.empty())
    MemoryTracker::instance().set_budget(dev, o.memory_budget.bytes());
  const TaskInfo& info = task_info(o.task);
  VariantSpec spec = o.variant;
  spec.causal = info.language_model();  // a decoder's attention is causal
  // Unknown names, a variant without a causal form for a decoder, a missing GPU, impossible precisions and
  // a model that cannot fit fail before the data is loaded.
  const auto attention = make_attention(spec, o.dim, o.heads, std::max<std::int64_t>(o.length, 1), dev);
  require_precision(o.precision, dev);
  require_parameters_fit(o, attention->parameter_count());
  const TaskData task = load_task(o.task, task_options(o));
  const std::string sizes =
      info.language_model()
          ? fmt::format("{} train / {} val / {} test tokens{}", task.train_stream.size(), task.val_stream.size(),
                        task.test_stream.size(), o.task == "corpus" ? fmt::format(" ({})", task.provenance.value("source", "")) : "")
          : fmt::format("{} train / {} val / {} test examples", task.train.size(), task.val.size(), task.test.size());
  fmt::print("train: {} with {}{} ({} preset): {}, length {}, batch {}, {} steps, {}, {}\n", task.name, o.variant.text,
             spec.causal ? " (causal)" : "", o.preset, sizes, task.length, o.batch, o.steps,
             dev == Device::cpu ? fmt::format("{} threads", threads.granted) : cuda::query(0).name,
             precision_name(o.precision));
  std::fflush(stdout);  // before the progress display on stderr
  const nlohmann::json context = make_context({.command_line = o.command_line, .threads = threads});
  nlohmann::json last;  // the latest result, so that an out-of-memory stop keeps what was finished
  auto write = [&](const nlohmann::json& r) {
    last = r;
    if (!o.out.empty()) write_report(o.out, make_report(context, nlohmann::json::array({r})));
  };
  nlohmann::json r;
  try {
    r = train_run(o, task, write);
  } catch (const OutOfMemory& e) {
    if (!last.is_null()) {
      last["status"] = "oom";
      last["message"] = e.what();
      last["memory"]["requested_bytes"] = e.requested;
      write(last);
    }
    throw;
  }
  const auto& acc = r.value("accuracy", nlohmann::json::object());
  if (r["status"] == "ok" && info.language_model()) {
    const auto& bpc = r["bpc"];
    fmt::print("train: done in {}: best validation {:.4f} bpc (step {}), test {:.4f} bpc at the best validation, "
               "{:.4f} final (unigram entropy {:.3f}; {} test tokens scored, stride {}); {:.2f} steps/s, {:.0f} tokens/s, "
               "peak tracked memory {}\n",
               Progress::format_duration(r["wall_s"]), bpc.value("val_best", 0.0), bpc.value("val_best_step", 0),
               bpc.value("test_at_best_val", 0.0), bpc.value("test_final", 0.0), bpc.value("test_unigram", 0.0),
               r["evaluation"].value("test_tokens_scored", 0), r["evaluation"].value("stride", 0),
               r["throughput"].value("steps_per_s", 0.0), r["throughput"].value("tokens_per_s", 0.0),
               format_bytes(r["memory"]["peak_tracked_bytes"]));
  } else if (r["status"] == "ok") {
    fmt::print("train: done in {}: best validation {:.2f}% (step {}), test {:.2f}% at the best validation, {:.2f}% "
               "final (majority class {:.2f}%); {:.2f} steps/s, {:.0f} tokens/s, peak tracked memory {}\n",
               Progress::format_duration(r["wall_s"]), 100 * acc.value("val_best", 0.0), acc.value("val_best_step", 0),
               100 * acc.value("test_at_best_val", 0.0), 100 * acc.value("test_final", 0.0),
               100 * acc.value("test_majority_class", 0.0), r["throughput"].value("steps_per_s", 0.0),
               r["throughput"].value("tokens_per_s", 0.0), format_bytes(r["memory"]["peak_tracked_bytes"]));
  }
  if (!o.out.empty()) fmt::print("train: report written to {}\n", o.out);
  return r["status"] == "ok" ? kOk : kDiverged;
}

}  // namespace lsb
