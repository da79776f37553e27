// `lsbench train`: one task x one attention variant, trained with the protocol of
// ../shared/spec/lra.md: evaluate on validation every E steps, keep the best-validation
// parameters, report test accuracy of the best-validation and of the final model over the whole
// test split, curves, wall time, train throughput and peak memory as a `train-run` result.
// A language-modelling task (../shared/spec/lm.md) trains the causal decoder on windows of the train
// stream and reports bits per character over whole splits instead of accuracy.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "attention_impls/registry.hpp"
#include "nn/matmul.hpp"
#include "nn/memory.hpp"
#include "tasks/registry.hpp"

namespace lsb {

class Encoder;
struct Batch;
struct TokenStream;

struct TrainOptions {
  std::string task, data_dir, preset = "lra-small";
  VariantSpec variant = VariantSpec::parse(baseline_variant().spec());
  // Model (../shared/spec/lra.md "Models"); the preset fills these, the command line overrides.
  std::int64_t dim = 64, heads = 2, layers = 2, mlp_dim = 128;
  std::string pooling = "mean";
  bool tie_embeddings = false;  // language models: the output layer's weight is the token embedding
  double dropout = 0;            // on block outputs
  double attention_dropout = -1;  // on attention probabilities; < 0: as dropout where the variant has them, else 0
  // Data.
  std::int64_t length = 0;  // 0 = the task's
  std::int64_t max_train = 0, max_val = 0, max_test = 0;  // seeded subsets; 0 = whole split
  std::string val_from = "train";
  std::string difficulty = "14";  // pathfinder, pathx
  std::uint64_t split_seed = 0;
  // Optimisation and protocol.
  std::int64_t batch = 32, steps = 5000, warmup = 1000, eval_every = 250, log_every = 10;
  std::int64_t eval_stride = 0;  // language models: windows slide by this many tokens when evaluating; 0 = length
  std::string schedule = "linear";  // linear | onecycle (nn/optim.hpp)
  double lr = 1e-4, weight_decay = 0, clip_norm = 0;  // clip_norm 0 = no clipping
  std::uint64_t seed = 0;  // parameters, batch order and dropout masks
  // Execution.
  int threads = 0;  // 0 = OpenMP's default
  Device device = Device::cpu;             // where the model and every step live
  Precision precision = Precision::fp32;  // of the products (fp32 accumulation)
  ByteSize memory_budget;  // empty = none
  std::string out, checkpoint_dir;
  // Interop (README "Moving models between lsbench and PyTorch"): start from a weight folder instead of
  // a random draw; write the best-validation and final weights as save_weights/best and /final; train
  // on the batches of a folder (ids_NNNNNN.npy, mask_NNNNNN.npy, labels_NNNNNN.npy for step NNNNNN + 1).
  std::string init_weights, save_weights, batches_dir;
  bool resume = false, progress = true;
  std::vector<std::string> command_line;
};

const std::vector<std::string>& train_preset_names();  // lra-small, smoke, lm-small, enwik8-base
// The preset's settings for `task` (variant, paths and execution fields are left as they are).
// UsageError for an unknown preset or task.
void apply_train_preset(TrainOptions& o);

// The command that reruns this training run (`lsbench train ...`: the preset, and every option that
// differs from what the preset gives), so that its result gets the same id. Every train-run result
// stores it as "repro".
std::string train_command(const TrainOptions& o);

// What to load for these options (length, split seed, validation source, subsets).
TaskOptions task_options(const TrainOptions& o);

// The training run on loaded data. `on_result` is called with the result so far after every
// evaluation (the CLI rewrites the report then, so a killed run keeps what it finished) and once
// at the end. Returns the final result; its "status" is ok or diverged. Throws UsageError /
// InputError (e.g. a checkpoint made with another configuration) and OutOfMemory.
nlohmann::json train_run(const TrainOptions& o, const TaskData& task,
                         const std::function<void(const nlohmann::json&)>& on_result = {});

// The CLI command: loads the task, trains, writes the report. Returns the exit code: 0 ok,
// 6 diverged (the report is kept), or throws for the CLI's error mapping.
int run_train_command(const TrainOptions& o);

// A language model's bits per character over a whole stream: every target scored once in the windows of
// lm::eval_windows(s.size(), tps, stride), batched `batch` windows of one length at a time (buf: scratch).
struct LmEval {
  double bpc = 0, loss = 0;  // loss: mean cross-entropy in nats
  std::int64_t scored = 0;   // targets scored: s.size() - 1
};
LmEval evaluate_lm(Encoder& enc, const TokenStream& s, std::int64_t batch, std::int64_t tps, std::int64_t stride,
                   Batch& buf);

}  // namespace lsb
