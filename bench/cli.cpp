// lsbench: the command line. Subcommands map onto drivers in bench/; errors map onto exit codes:
//   0 ok, 1 regression found by compare, 2 usage error, 3 bad input data, 4 out of memory, 5 internal.
#include "bench/cli.hpp"
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "bench/attention_bench.hpp"
#include "bench/data_cli.hpp"
#include "bench/demo.hpp"
#include "bench/lra.hpp"
#include "bench/model_run.hpp"
#include "bench/model_sample.hpp"
#include "bench/machine.hpp"
#include "bench/sweep.hpp"
#include "bench/train.hpp"
#include "reports/compare.hpp"
#include "reports/render.hpp"
#include "reports/report.hpp"
#include "reports/version.hpp"
#include "tasks/registry.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/matmul.hpp"
#include "nn/parse.hpp"
#include "nn/threads.hpp"

namespace {

using namespace lsb;

// `lsbench train` options: the preset fills every setting, and an option given on the command line
// overrides it. Each override is bound to a field of `given`; `apply` copies the given ones.
struct TrainCli {
  TrainOptions given;
  std::vector<std::function<void(TrainOptions&)>> overrides;

  template <typename T>
  CLI::Option* add(CLI::App* cmd, const char* flag, T TrainOptions::*field, const char* help) {
    CLI::Option* opt = cmd->add_option(flag, given.*field, help);
    overrides.push_back([this, opt, field](TrainOptions& o) {
      if (opt->count() > 0) o.*field = given.*field;
    });
    return opt;
  }
  TrainOptions resolve() const {
    TrainOptions o = given;  // task, variant, paths and execution fields as given
    apply_train_preset(o);
    for (const auto& f : overrides) f(o);
    return o;
  }
};

// A finite number >= 0 (> 0 when `positive`): CLI11's NonNegativeNumber lets "nan" through.
CLI::Validator finite_number(bool positive) {
  return CLI::Validator(
      [positive](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || !std::isfinite(v) || v < 0 || (positive && v == 0))
          return fmt::format("'{}' is not a finite number {} 0", s, positive ? ">" : ">=");
        return "";
      },
      positive ? "POSITIVE" : "NONNEGATIVE");
}

// --threads: 0 (OpenMP's default) up to the machine's logical CPUs. More threads than CPUs only spin
// against each other in libgomp's wait loops (a millisecond kernel then takes minutes), so they are refused.
std::string check_thread_count(long long v) {
  if (v < 0 || v > usable_cpus())
    return fmt::format("{} threads: expected 0 (OpenMP's default) to {}, the CPUs this process may use (more only "
                       "spin against each other)",
                       v, usable_cpus());
  return "";
}
CLI::Validator thread_count() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const std::optional<std::int64_t> v = parse_int(s);
        if (!v) return fmt::format("'{}' is not a thread count", s);
        return check_thread_count(*v);
      },
      "0..CPUS");
}

// A finite probability p with 0 <= p < 1 (dropout rates).
CLI::Validator unit_interval() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() || *end != '\0' || !(v >= 0 && v < 1)) return fmt::format("'{}' is not in [0, 1)", s);
        return "";
      },
      "[0,1)");
}

// A registered task's name (tasks/registry.hpp), for --task and --tasks.
CLI::Validator known_task() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return find_task(s) ? "" : fmt::format("'{}' is not a task; expected {}", s, task_names_text());
      },
      "TASK");
}
std::string task_help(const std::string& what) { return fmt::format("{} ({})", what, fmt::join(task_names(), ", ")); }

// --causal: every variant of the command in its causal form (../shared/spec/attention.md).
void add_causal(CLI::App* cmd, bool& causal) {
  cmd->add_flag("--causal", causal, "Causal attention: query t sees keys u <= t (variants without a causal form refuse)");
}

void add_timing_options(CLI::App* cmd, TimingPolicy& t) {
  cmd->add_option("--warmup", t.warmup, "Warm-up iterations, never counted")->capture_default_str()->check(
      CLI::NonNegativeNumber);
  cmd->add_option("--min-reps", t.min_reps, "Minimum timed repetitions")->capture_default_str()->check(
      CLI::PositiveNumber);
  cmd->add_option("--min-time", t.min_time_s, "Minimum total timed seconds per point")->capture_default_str()->check(
      finite_number(false));
  cmd->add_option("--max-time", t.max_time_s, "Per-point time cap in seconds")->capture_default_str()->check(
      finite_number(true));
}

int print_info() {
  const CpuInfo c = cpu_info();
  fmt::print("lsbench {} ({}, {})\n", LSBENCH_VERSION, git_commit(), LSBENCH_BUILD_TYPE);
  fmt::print("cpu: {} | {} logical CPUs | OpenMP threads {} | {}\n", c.model, c.cores, current_threads().granted,
             fmt::join(c.flags, " "));
  const PeakMeasurement peak = measure_peak(current_threads().granted);
  fmt::print("measured fp32 peak: {:.1f} GFLOP/s on {} threads (FMA loop, best of {} rounds, median {:.1f}; {}; "
             "other processes took {:.2f} CPUs while it ran, load average {:.2f})\n",
             peak.best_gflops, peak.threads, peak.rounds, peak.median_gflops,
             peak.nominal_gflops > 0 ? fmt::format("{:.0f}% of the {:.0f} GFLOP/s this build's vectors and /proc/cpuinfo's clock imply",
                                                   100 * peak.best_gflops / peak.nominal_gflops, peak.nominal_gflops)
                                     : "no nominal figure (clock unknown)",
             peak.others_cpu, peak.load_average);
  if (!peak.warning.empty()) fmt::print("warning: {}\n", peak.warning);
  fmt::print("oneDNN {}\n", onednn_version());
  if (!cuda::compiled()) {
    fmt::print("cuda: {}\n", cuda::unavailable_reason());
  } else if (cuda::device_count() == 0) {
    fmt::print("cuda: compiled in; {}\n", cuda::unavailable_reason());
  } else {
    const auto g = cuda::query(0);
    fmt::print("cuda: {} | {} | sm_{}{} | driver {} runtime {}\n", g.name, format_bytes(g.memory_bytes), g.sm_major,
               g.sm_minor, g.driver, g.runtime);
    const std::string cudnn_why = cuda::cudnn_problem();  // opened only where a GPU could use it
    fmt::print("cudnn (--variant cudnn): {}\n", cudnn_why.empty() ? "cuDNN " + cuda::cudnn_version() : "no: " + cudnn_why);
  }
  // Where --precision bf16 can run.
  std::string why;
  std::string bf16 = bf16_matmul_available(&why) ? "cpu yes" : "cpu no (" + why + ")";
  if (cuda::device_count() > 0) {
    try {
      require_precision(Precision::bf16, Device::cuda);
      bf16 += "; cuda yes (tensor cores)";
    } catch (const UsageError& e) {
      bf16 += fmt::format("; cuda no ({})", e.what());
    }
  }
  fmt::print("bf16 products: {}\n", bf16);
  fmt::print("variants:\n{}", variants_help());
  return kOk;
}

// ---- one registration function per subcommand ----------------------------------------------------
// Each adds its subcommand and options to the app and returns what runs it; the options live in the
// returned closure, typed where CLI11 reads them (sizes are ByteSize: a bad one is a usage error there).

using CommandLine = std::vector<std::string>;
struct Command {
  CLI::App* app = nullptr;
  std::function<int(const CommandLine&)> run;
};

// The options several subcommands take, with one wording everywhere.
void add_threads(CLI::App* cmd, int& threads, const char* help = "CPU threads (0: OpenMP's default)") {
  cmd->add_option("--threads", threads, help)->check(thread_count());
}
// Device and precision are read as names and kept typed (an unknown name is a usage error naming the option).
void add_device(CLI::App* cmd, Device& device, const char* help = "cpu or cuda") {
  cmd->add_option_function<std::string>(
         "--device", [&device](const std::string& name) { device = parse_device(name, "--device"); }, help)
      ->default_str(device_name(device));
}
void add_precision(CLI::App* cmd, Precision& precision) {
  cmd->add_option_function<std::string>(
         "--precision",
         [&precision](const std::string& name) { precision = parse_precision(name, "--precision"); },
         "fp32, or bf16: products on bf16-rounded operands with fp32 accumulation")
      ->default_str(precision_name(precision));
}
// Variant specs are parsed where they are read (NAME[:key=value,...] naming a registered variant; a
// malformed spec or an unknown name is a usage error). Their keys are checked when the module is made.
VariantSpec read_spec(const std::string& text, const char* option = "--variant") {
  VariantSpec spec = VariantSpec::parse(text, option);
  if (!find_variant(spec.name))
    throw UsageError(fmt::format("{} '{}': unknown variant '{}'; valid: {}", option, text, spec.name,
                                 fmt::join(variant_names(), ", ")));
  return spec;
}
std::vector<VariantSpec> read_spec_list(const std::string& comma_list) {
  std::vector<VariantSpec> specs;
  if (comma_list.empty()) return specs;  // not given
  for (const auto& text : split_variant_list(comma_list, "--variants")) specs.push_back(read_spec(text, "--variants"));
  return specs;
}
CLI::Option* add_variant(CLI::App* cmd, VariantSpec& spec, const char* help = "Attention variant spec NAME[:key=value,...]") {
  return cmd->add_option_function<std::string>("--variant", [&spec](const std::string& text) { spec = read_spec(text); }, help);
}
// --variant repeated (or with several values): the given specs replace the defaults.
CLI::Option* add_variants(CLI::App* cmd, std::vector<VariantSpec>& specs, const char* help) {
  return cmd
      ->add_option_function<std::vector<std::string>>(
          "--variant",
          [&specs](const std::vector<std::string>& texts) {
            specs.clear();
            for (const auto& text : texts) specs.push_back(read_spec(text));
          },
          help)
      ->take_all();
}
void add_memory_budget(CLI::App* cmd, ByteSize& budget,
                       const char* help = "Refuse allocations beyond this (e.g. 8GiB); a point or run above it is oom") {
  cmd->add_option("--memory-budget", budget, help);
}
void add_seed(CLI::App* cmd, std::uint64_t& seed, const char* help = "Seed of parameters and inputs") {
  cmd->add_option("--seed", seed, help)->capture_default_str()->check(CLI::NonNegativeNumber);
}

Command add_info(CLI::App& app) {
  return {app.add_subcommand("info", "Machine, build, CUDA status and the list of attention variants"),
          [](const CommandLine&) { return print_info(); }};
}

Command add_attention_bench(CLI::App* attention) {
  auto o = std::make_shared<AttentionBenchOptions>();
  auto* cmd = attention->add_subcommand(
      "bench", "Check a variant against the float64 reference on a small copy, then time it and measure memory");
  add_variants(cmd, o->variants, "Variant spec NAME[:key=value,...]; repeatable")->required();
  cmd->add_option("--n", o->lengths, "Sequence length(s)")->required()->take_all();
  cmd->add_option("--batch", o->batch, "Batch size")->capture_default_str();
  cmd->add_option("--dim", o->dim, "Model width D")->capture_default_str();
  cmd->add_option("--heads", o->heads, "Heads h (D must be a multiple)")->capture_default_str();
  cmd->add_option("--mode", o->mode, "fwd or fwdbwd")->capture_default_str();
  add_causal(cmd, o->causal);
  add_threads(cmd, o->threads);
  add_memory_budget(cmd, o->memory_budget);
  cmd->add_option("--json", o->json_path, "Write the report here (atomically, after every point)");
  add_device(cmd, o->device);
  add_precision(cmd, o->precision);
  add_seed(cmd, o->seed);
  add_timing_options(cmd, o->timing);
  return {cmd, [o](const CommandLine& cmdline) {
            o->command_line = cmdline;
            return run_attention_bench(*o);
          }};
}

Command add_attention_run(CLI::App* attention) {
  auto o = std::make_shared<AttentionRunOptions>();
  auto* cmd = attention->add_subcommand("run", "Forward (and backward) of one variant on .npy arrays");
  add_variant(cmd, o->variant, "Variant spec NAME[:key=value,...]")->required();
  add_causal(cmd, o->variant.causal);
  cmd->add_option("--heads", o->heads, "Heads h")->required();
  cmd->add_option("--weights", o->weights_dir, "Directory with one .npy per parameter")->required();
  cmd->add_option("--input", o->input, "x.npy, float32 (b, n, D)")->required();
  cmd->add_option("--mask", o->mask, "mask.npy (b, n), 1 = real token; bool/uint8/int32/int64/float");
  add_device(cmd, o->device);
  add_precision(cmd, o->precision);
  cmd->add_option("--output", o->output, "Write y.npy here")->required();
  auto* go = cmd->add_option("--grad-output", o->grad_output, "dy.npy (b, n, D): also run the backward");
  cmd->add_option("--grads", o->grads_dir, "Directory for dx.npy and d<name>.npy")->needs(go);
  go->needs(cmd->get_option("--grads"));
  add_threads(cmd, o->threads);
  return {cmd, [o](const CommandLine&) { return run_attention_interop(*o); }};
}

Command add_model_run(CLI::App* model) {
  auto o = std::make_shared<ModelRunOptions>();
  auto* cmd = model->add_subcommand(
      "run", "Logits of the encoder on token ids (.npy); with --labels the loss, with --grads every gradient");
  cmd->add_option("--weights", o->weights_dir, "Folder with one NAME.npy per state_dict tensor")->required();
  add_variant(cmd, o->variant)->required();
  cmd->add_option("--heads", o->heads, "Heads h")->required();
  cmd->add_option("--input", o->input, "ids.npy (b, n), integer token ids")->required();
  cmd->add_option("--mask", o->mask, "mask.npy (b, n), 1 = real token (default: all real)");
  cmd->add_option("--labels", o->labels, "labels.npy (b): also print the mean cross-entropy");
  cmd->add_option("--grads", o->grads_dir, "Write loss.npy and every parameter's gradient here");
  cmd->add_option("--output", o->output, "Write the logits (b, classes) here")->required();
  cmd->add_option("--pooling", o->pooling,
                  "mean (real tokens), mean-all (the reference code's: every position, pads as 0) or cls")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "mean-all", "cls"}));
  add_device(cmd, o->device);
  add_precision(cmd, o->precision);
  add_threads(cmd, o->threads);
  return {cmd, [o](const CommandLine&) { return run_model_command(*o); }};
}

Command add_model_sample(CLI::App* model) {
  auto o = std::make_shared<ModelSampleOptions>();
  auto* cmd = model->add_subcommand(
      "sample", "Generate bytes from a trained language model (a train checkpoint or a weights folder) after a prompt");
  auto* ck = cmd->add_option("--checkpoint", o->checkpoint, "best.ckpt or last.ckpt of `train --checkpoint-dir`");
  auto* wd = cmd->add_option("--weights", o->weights_dir, "A weights folder (`train --save-weights`, or PyTorch's)");
  ck->excludes(wd);
  cmd->add_option("--task", o->task, task_help("With --weights: the task whose alphabet the model reads"))
      ->capture_default_str()
      ->check(known_task());
  add_variant(cmd, o->variant)->excludes(ck);
  cmd->add_option("--heads", o->heads, "With --weights: heads h")->excludes(ck);
  cmd->add_option("--prompt", o->prompt, "The text to continue")->capture_default_str();
  cmd->add_option("--bytes", o->bytes, "How many bytes to generate")->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "Logits are divided by it; 0: always the most likely byte")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the draws")->capture_default_str();
  cmd->add_option("--out", o->output, "Also write the prompt and the generated bytes to this file");
  add_device(cmd, o->device);
  add_threads(cmd, o->threads);
  return {cmd, [o](const CommandLine&) { return run_model_sample(*o); }};
}

Command add_train(CLI::App& app) {
  auto train = std::make_shared<TrainCli>();
  auto* cmd = app.add_subcommand(
      "train", "Train the LRA encoder (or, on enwik8, text8 and corpus, the causal decoder) on a task with one attention "
               "variant; validation every E steps, test accuracy (language models: bits per character) of the "
               "best-validation and final models, curves, throughput and memory in the report");
  TrainOptions& tg = train->given;
  cmd->add_option("--task", tg.task, task_help("The task"))->required()->check(known_task());
  cmd->add_option("--data-dir", tg.data_dir, "The task's data in its official layout")->required();
  add_variant(cmd, tg.variant)->default_str(tg.variant.text);
  cmd->add_option("--preset", tg.preset, "lra-small (the LRA recipe), smoke (seconds, for CI); language models: lm-small (hours on a CPU), "
                  "enwik8-base (the authors' 12-layer model, for GPUs)")->capture_default_str();
  cmd->add_option("--out", tg.out, "Write the report here (atomically, after every evaluation)");
  cmd->add_option("--checkpoint-dir", tg.checkpoint_dir, "Keep last.ckpt and best.ckpt here");
  cmd->add_flag("--resume", tg.resume, "Continue from --checkpoint-dir/last.ckpt when it exists");
  add_threads(cmd, tg.threads);
  add_device(cmd, tg.device, "cpu or cuda (the whole training step)");
  add_precision(cmd, tg.precision);
  add_memory_budget(cmd, tg.memory_budget);
  cmd->add_option("--difficulty", tg.difficulty, "pathfinder, pathx: baseline, 9 or 14 (LRA's)")->capture_default_str();
  cmd->add_option("--val-from", tg.val_from, "text: train (10% hold-out) or test (LRA convention)")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "test"}));
  cmd->add_option("--split-seed", tg.split_seed, "Seed of hold-outs and subsets")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_seed(cmd, tg.seed, "Seed of parameters, batch order and dropout");
  cmd->add_flag("!--no-progress", tg.progress, "No progress display");
  cmd->add_option("--init-weights", tg.init_weights,
                  "Start from this folder of .npy arrays (PyTorch state_dict names) instead of a random draw");
  cmd->add_option("--save-weights", tg.save_weights,
                  "Write the best-validation and final weights as DIR/best and DIR/final (same layout)");
  cmd->add_option("--batches", tg.batches_dir,
                  "Train on the batches of this folder (ids_000000.npy, mask_..., labels_..., one per step) "
                  "instead of the task's sampler");
  // Overrides of the preset.
  train->add(cmd, "--steps", &TrainOptions::steps, "Training steps")->check(CLI::PositiveNumber);
  train->add(cmd, "--batch", &TrainOptions::batch, "Batch size")->check(CLI::PositiveNumber);
  train->add(cmd, "--lr", &TrainOptions::lr, "Peak learning rate")->check(finite_number(true));
  train->add(cmd, "--warmup", &TrainOptions::warmup, "Linear warm-up steps")->check(CLI::NonNegativeNumber);
  train->add(cmd, "--schedule", &TrainOptions::schedule,
             "linear (warm-up, then linear decay to 0) or onecycle (torch's OneCycleLR as the reference PyTorch LRA "
             "code runs it: from lr/25, beta1 cycled 0.95-0.85-0.95)");
  train->add(cmd, "--weight-decay", &TrainOptions::weight_decay, "AdamW decoupled weight decay")
      ->check(finite_number(false));
  train->add(cmd, "--dropout", &TrainOptions::dropout,
             "Dropout on block outputs, and on attention probabilities unless --attention-dropout is given")->check(unit_interval());
  train->add(cmd, "--attention-dropout", &TrainOptions::attention_dropout,
             "Dropout on attention probabilities (default: --dropout where the variant has them, else 0)")->check(unit_interval());
  train->add(cmd, "--clip-norm", &TrainOptions::clip_norm, "Clip the global gradient norm (0: off)")
      ->check(finite_number(false));
  train->add(cmd, "--eval-every", &TrainOptions::eval_every, "Validate every E steps")->check(CLI::PositiveNumber);
  train->add(cmd, "--log-every", &TrainOptions::log_every, "Curve point every K steps")->check(CLI::PositiveNumber);
  train->add(cmd, "--length", &TrainOptions::length, "Model sequence length (text: truncation)")->check(CLI::PositiveNumber);
  train->add(cmd, "--dim", &TrainOptions::dim, "Model width D")->check(CLI::PositiveNumber);
  train->add(cmd, "--heads", &TrainOptions::heads, "Attention heads")->check(CLI::PositiveNumber);
  train->add(cmd, "--layers", &TrainOptions::layers, "Encoder blocks")->check(CLI::PositiveNumber);
  train->add(cmd, "--mlp-dim", &TrainOptions::mlp_dim, "MLP width")->check(CLI::PositiveNumber);
  train->add(cmd, "--pooling", &TrainOptions::pooling, "mean, mean-all (the reference code's) or cls");
  train->add(cmd, "--max-train", &TrainOptions::max_train,
             "Train on a seeded subset of this size (language models: the first so many tokens; 0: all)")
      ->check(CLI::NonNegativeNumber);
  train->add(cmd, "--max-val", &TrainOptions::max_val, "Validate on a seeded subset (language models: a prefix; 0: all)")
      ->check(CLI::NonNegativeNumber);
  train->add(cmd, "--max-test", &TrainOptions::max_test, "Test on a seeded subset (language models: a prefix; 0: all)")
      ->check(CLI::NonNegativeNumber);
  train->add(cmd, "--eval-stride", &TrainOptions::eval_stride,
             "Language models: evaluation windows slide by S tokens and score their last S (S < --length gives every "
             "token at least length - S of context; default: --length, non-overlapping)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--tie-embeddings", tg.tie_embeddings, "Language models: the output layer's weight is the token embedding");
  return {cmd, [train](const CommandLine& cmdline) {
            TrainOptions o = train->resolve();
            o.command_line = cmdline;
            return run_train_command(o);
          }};
}

Command add_demo(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand("demo", "The main job on embedded defaults: a short attention sweep of every "
                                         "variant and short ListOps training runs, printed as tables, one report");
  cmd->add_option("--json", o->json_path, "Report path")->capture_default_str();
  cmd->add_option("--data-dir", o->data_dir, "Where the demo's ListOps data is generated (once)")->capture_default_str();
  return {cmd, [o](const CommandLine& cmdline) {
            o->command_line = cmdline;
            return run_demo(*o);
          }};
}

Command add_sweep(CLI::App& app) {
  // The axes are comma lists, read into the options after parsing (parse_length_list, split_variant_list).
  struct Sweep {
    SweepOptions o;
    std::string variants, lengths = "1024:4096:x2", batches = "8", dims = "64", heads = "2", layers = "2",
                          modes = "attn-fwdbwd", devices = "cpu", threads = "0", shard, precisions = "fp32",
                          causal = "off";
  };
  auto s = std::make_shared<Sweep>();
  auto* cmd = app.add_subcommand(
      "sweep", "Measure time and memory over the cartesian product of the axes (comma lists); one report, written "
               "after every point, resumable, shardable across machines");
  cmd->add_option("--variants", s->variants,
                  fmt::format("Comma list of variant specs (default: {})", fmt::join(default_sweep_variants(), ",")));
  cmd->add_option("--n", s->lengths, "Lengths: START:STOP:xF, START:STOP:+S or a list")->capture_default_str();
  cmd->add_option("--batch", s->batches, "Batch sizes")->capture_default_str();
  cmd->add_option("--dim", s->dims, "Model widths D")->capture_default_str();
  cmd->add_option("--heads", s->heads, "Head counts")->capture_default_str();
  cmd->add_option("--layers", s->layers, "Encoder layers (model modes)")->capture_default_str();
  cmd->add_option("--mlp-dim", s->o.mlp_dim, "MLP width (model modes; default 2 D)")->check(CLI::PositiveNumber);
  cmd->add_option("--mode", s->modes, "attn-fwd, attn-fwdbwd, model-fwd, train-step (a list)")->capture_default_str();
  cmd->add_option("--task", s->o.task, task_help("The task whose vocabulary, classes (and two towers) the model modes take"))
      ->check(known_task());
  cmd->add_option("--device", s->devices, "cpu, cuda (a list)")->capture_default_str();
  cmd->add_option("--precision", s->precisions, "fp32, bf16 (a list; bf16: the products)")->capture_default_str();
  cmd->add_option("--threads", s->threads, "CPU thread counts (0: OpenMP's default)")->capture_default_str();
  cmd->add_option("--causal", s->causal, "off, on (a list): bidirectional and/or causal attention")->capture_default_str();
  add_memory_budget(cmd, s->o.memory_budget, "Points above it are recorded as oom (e.g. 16GiB)");
  cmd->add_option("--out", s->o.out, "Report path (journal beside it while running)");
  cmd->add_flag("--resume", s->o.resume, "Skip the points --out (and its journal) already holds");
  cmd->add_option("--shard", s->shard, "Run every N-th point: i/N (default: SLURM_ARRAY_TASK_ID/COUNT)");
  cmd->add_flag("--list", s->o.list, "Print the points, one command each, and exit");
  add_seed(cmd, s->o.seed);
  cmd->add_flag("!--no-progress", s->o.progress, "No progress display");
  add_timing_options(cmd, s->o.timing);
  cmd->add_option("--profile", s->o.timing.profile_steps,
                  "Model modes: after the timed steps, this many more under a per-op profile (the report's "
                  "`profile`: time and calls per step of each op)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  return {cmd, [s](const CommandLine& cmdline) {
            SweepOptions& sw = s->o;
            auto ints = [](const std::string& text, const char* option) { return parse_length_list(text, option); };
            sw.variants = read_spec_list(s->variants);
            sw.lengths = ints(s->lengths, "--n");
            sw.batches = ints(s->batches, "--batch");
            sw.dims = ints(s->dims, "--dim");
            sw.heads = ints(s->heads, "--heads");
            sw.layers = ints(s->layers, "--layers");
            sw.modes = split_variant_list(s->modes, "--mode");
            sw.devices.clear();
            for (const auto& d : split_variant_list(s->devices, "--device")) sw.devices.push_back(parse_device(d, "--device"));
            sw.precisions.clear();
            for (const auto& p : split_variant_list(s->precisions, "--precision"))
              sw.precisions.push_back(parse_precision(p, "--precision"));
            sw.causal.clear();
            for (const auto& c : split_variant_list(s->causal, "--causal")) {
              if (c != "off" && c != "on") throw UsageError("--causal " + c + ": expected off, on or both (off,on)");
              sw.causal.push_back(c == "on");
            }
            sw.threads.clear();
            for (const auto& t : split_variant_list(s->threads, "--threads")) {
              if (t == "0") sw.threads.push_back(0);
              else sw.threads.push_back(static_cast<int>(parse_length_list(t, "--threads").front()));
              if (const std::string why = check_thread_count(sw.threads.back()); !why.empty())
                throw UsageError("--threads " + t + ": " + why);
            }
            if (!s->shard.empty()) {
              std::tie(sw.shard_index, sw.shard_count) = parse_shard(s->shard);
            } else {
              shard_from_slurm(sw.shard_index, sw.shard_count);
            }
            sw.command_line = cmdline;
            return run_sweep(sw);
          }};
}

Command add_maxlen(CLI::App& app) {
  struct Maxlen {
    MaxlenOptions o;
    std::string variants;
  };
  auto m = std::make_shared<Maxlen>();
  MaxlenOptions& ml = m->o;
  auto* cmd = app.add_subcommand(
      "maxlen", "The longest sequence (a multiple of the granule) that fits a memory budget, per variant");
  add_variants(cmd, ml.variants, "Variant spec; repeatable");
  cmd->add_option("--variants", m->variants, "Several specs, comma-separated; prints each one's ratio to the baseline");
  cmd->add_option("--mode", ml.mode, "attn-fwd, attn-fwdbwd, model-fwd or train-step")->capture_default_str();
  add_causal(cmd, ml.causal);
  add_memory_budget(cmd, ml.memory_budget, "The memory to fit in (e.g. 16GiB)");
  cmd->get_option("--memory-budget")->required();
  cmd->add_option("--granule", ml.granule, "n is a multiple of this")->capture_default_str();
  cmd->add_option("--batch", ml.batch, "Batch size")->capture_default_str();
  cmd->add_option("--dim", ml.dim, "Model width D")->capture_default_str();
  cmd->add_option("--heads", ml.heads, "Heads")->capture_default_str();
  cmd->add_option("--layers", ml.layers, "Encoder layers (model modes)")->capture_default_str();
  cmd->add_option("--mlp-dim", ml.mlp_dim, "MLP width (model modes; default 2 D)")->check(CLI::PositiveNumber);
  cmd->add_option("--task", ml.task, task_help("a task's vocabulary and classes (model modes)"))->check(known_task());
  add_device(cmd, ml.device);
  add_precision(cmd, ml.precision);
  add_threads(cmd, ml.threads);
  add_seed(cmd, ml.seed);
  cmd->add_option("--limit", ml.n_limit, "Stop doubling at this n")->capture_default_str();
  cmd->add_option("--out", ml.out, "Report path");
  return {cmd, [m](const CommandLine& cmdline) {
            for (auto& spec : read_spec_list(m->variants)) m->o.variants.push_back(std::move(spec));
            for (auto& spec : m->o.variants) spec.causal = m->o.causal;
            m->o.command_line = cmdline;
            return run_maxlen(m->o);
          }};
}

Command add_merge(CLI::App& app) {
  struct Merge {
    std::vector<std::string> inputs;
    std::string out;
  };
  auto m = std::make_shared<Merge>();
  auto* cmd = app.add_subcommand("merge", "Join reports (e.g. the shards of one sweep) into one");
  cmd->add_option("reports", m->inputs, "Reports to join")->required();
  cmd->add_option("-o,--out", m->out, "Joined report")->required();
  return {cmd, [m](const CommandLine&) { return run_merge(m->inputs, m->out); }};
}

Command add_lra(CLI::App& app) {
  struct Lra {
    LraOptions o;
    std::string variants, lengths;
  };
  auto l = std::make_shared<Lra>();
  LraOptions& lra = l->o;
  auto* cmd = app.add_subcommand(
      "lra", "The LRA suite: every task x variant trained with a preset (data generated or extracted where missing), "
             "an efficiency sweep in the shape of LRA Table 2, one report and a Markdown summary beside the published "
             "numbers; --resume continues after a kill");
  cmd->add_option("--preset", lra.preset, "smoke (minutes on 2 cores) or lra-small (the LRA recipe)")
      ->capture_default_str()
      ->check(CLI::IsMember({"smoke", "lra-small"}));
  cmd->add_option("--tasks", lra.tasks, fmt::format("Comma list (default: {}; the language models enwik8, text8 and "
                                                    "corpus run their causal decoder, smoke or lm-small, with a BPC table)",
                                                    fmt::join(lra_task_names(), ",")))
      ->delimiter(',')
      ->check(known_task());
  cmd->add_option("--variants", l->variants,
                  fmt::format("Comma list of specs (default: {})", fmt::join(default_lra_variants(), ",")));
  cmd->add_option("--data-dir", lra.data_dir, "Data is generated or extracted here, official layouts read from here")
      ->required();
  cmd->add_option("--archives", lra.archives,
                  "Folder with aclImdb_v1-labeled.tar.xz and cifar-10-binary-from-jpeg-q75.tar.xz (e.g. ../shared/data)");
  cmd->add_option("--out", lra.out, "The suite's report (rewritten after every run)")->required();
  cmd->add_option("--summary", lra.summary, "The Markdown summary (default: OUT.md)");
  cmd->add_flag("--resume", lra.resume, "Keep the finished runs of OUT, continue an interrupted one from its checkpoint");
  cmd->add_flag("!--no-efficiency", lra.efficiency, "Skip the efficiency sweep");
  cmd->add_option("--efficiency-lengths", l->lengths,
                  "Lengths of the efficiency sweep (default smoke 1024,2048; lra-small 1024:4096:+1024 and 8192)");
  cmd->add_option("--efficiency-batch", lra.efficiency_batch,
                  "Batch of the efficiency sweep (default smoke 4, lra-small 32)");
  add_memory_budget(cmd, lra.memory_budget,
                    "Runs and points above it are oom (default: smoke 4GiB, lra-small 80% of the memory)");
  add_threads(cmd, lra.threads);
  add_device(cmd, lra.device, "cpu or cuda (every run and the efficiency sweep)");
  add_precision(cmd, lra.precision);
  add_seed(cmd, lra.seed, "Parameters, batch order and dropout of every run");
  cmd->add_flag("!--no-progress", lra.progress, "No live progress line");
  return {cmd, [l](const CommandLine& cmdline) {
            if (!l->variants.empty()) l->o.variants = read_spec_list(l->variants);
            if (!l->lengths.empty()) l->o.efficiency_lengths = parse_length_list(l->lengths, "--efficiency-lengths");
            l->o.command_line = cmdline;
            return run_lra(l->o);
          }};
}

Command add_report(CLI::App& app) {
  auto o = std::make_shared<RenderOptions>();
  auto* cmd = app.add_subcommand(
      "report", "Render reports (merged by id) for people: Markdown tables per mode and shape, the LRA accuracy "
                "table beside the published numbers, maxlen, training curves; HTML with SVG plots inline; or CSV, one "
                "row per result");
  cmd->add_option("reports", o->inputs, "Reports to render")->required();
  cmd->add_option("--format", o->format, "md, html or csv")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "html", "csv"}));
  cmd->add_option("-o,--out", o->out, "Write here instead of standard output");
  cmd->add_option("--plots", o->plots_dir,
                  "Also write every plot as DIR/NAME.svg (time and memory vs n per mode, training curves); "
                  "Markdown then links them");
  return {cmd, [o](const CommandLine&) { return run_report(*o); }};
}

Command add_compare(CLI::App& app) {
  struct Compare {
    std::string base, next, out, time = "10%", abs = "1ms", memory = "5%", accuracy = "1pt", bpc = "0.02";
  };
  auto c = std::make_shared<Compare>();
  auto* cmd = app.add_subcommand(
      "compare", "Compare two reports point by point (paired by id): a Markdown table; exit 1 on a regression, "
                 "0 otherwise, 2 on unusable input");
  cmd->add_option("base", c->base, "The baseline report")->required();
  cmd->add_option("new", c->next, "The report to judge")->required();
  cmd->add_option("--time-threshold", c->time, "Slower by more than this (and --abs-threshold) regresses")
      ->capture_default_str();
  cmd->add_option("--abs-threshold", c->abs, "... and by more than this much time")->capture_default_str();
  cmd->add_option("--memory-threshold", c->memory, "Peak memory grown by more than this regresses")
      ->capture_default_str();
  cmd->add_option("--accuracy-threshold", c->accuracy, "Accuracy fallen by more than this regresses")
      ->capture_default_str();
  cmd->add_option("--bpc-threshold", c->bpc, "Bits per character (language models) risen by more than this regresses")
      ->capture_default_str();
  cmd->add_option("-o,--out", c->out, "Also write the Markdown table here (e.g. a CI job summary)");
  return {cmd, [c](const CommandLine&) {
            const CompareThresholds t{parse_fraction(c->time, "--time-threshold"),
                                      parse_duration_s(c->abs, "--abs-threshold"),
                                      parse_fraction(c->memory, "--memory-threshold"),
                                      parse_points(c->accuracy, "--accuracy-threshold"),
                                      parse_points(c->bpc, "--bpc-threshold")};
            std::error_code same_ec;
            if (c->base == c->next || std::filesystem::equivalent(c->base, c->next, same_ec)) {
              fmt::print(stderr, "lsbench: usage error: compare: {} is both the base and the new report\n", c->base);
              return kUsage;
            }
            nlohmann::json base, next;
            try {
              base = read_report(c->base);
              next = read_report(c->next);
            } catch (const InputError& e) {  // compare's contract: 2 for unusable input (CI tells it from a regression)
              fmt::print(stderr, "lsbench: unusable input: {}\n", e.what());
              return kUsage;
            }
            const Comparison cmp = compare_reports(base, next, c->base, c->next, t);
            fmt::print("{}", cmp.markdown);
            if (!c->out.empty()) write_file_atomic(c->out, cmp.markdown);
            return cmp.regressed > 0 ? kRegression : kOk;
          }};
}

// The CLI's own registry, for the tests that walk it (tests/test_cli.cpp) and the argument fuzzer: one line per
// option of every command that runs, "COMMAND<TAB>NAME<TAB>TYPE<TAB>required|optional<TAB>value|flag|positional".
void list_options(const CLI::App& app, const std::string& path) {
  const auto subs = app.get_subcommands({});
  if (subs.empty() && !path.empty())
    for (const CLI::Option* opt : app.get_options()) {
      if (opt->get_name() == "--help") continue;
      const char* takes = !opt->nonpositional() ? "positional" : opt->get_items_expected_max() == 0 ? "flag" : "value";
      fmt::print("{}\t{}\t{}\t{}\t{}\n", path, opt->get_name(), opt->get_type_name(),
                 opt->get_required() ? "required" : "optional", takes);
    }
  for (const CLI::App* sub : subs) list_options(*sub, path.empty() ? sub->get_name() : path + " " + sub->get_name());
}

// Numbers as people write them. CLI11 reads integers in any base (0x10 is 16, 010 is 8) and floats as
// strtod does (nan, inf, 0x1p3): an option whose type is a number takes a decimal integer without leading
// zeros, or a finite decimal number, and nothing else (exit 2 naming the option).
void refuse_odd_numbers(const CLI::App* a) {
  static const std::regex integer("[+-]?(0|[1-9][0-9]*)");
  static const std::regex real("[+-]?((0|[1-9][0-9]*)(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?");
  // Within 64 bits (CLI11 saturates beyond them without a word).
  auto fits = [](const std::string& v, bool is_unsigned) {
    const char* b = v.data() + (v[0] == '+' ? 1 : 0);
    const char* e = v.data() + v.size();
    std::uint64_t u = 0;
    std::int64_t i = 0;
    const auto r = is_unsigned ? std::from_chars(b, e, u) : std::from_chars(b, e, i);
    return r.ec == std::errc{} && r.ptr == e;
  };
  for (const CLI::Option* opt : a->get_options()) {
    const std::string type = opt->get_type_name();
    const std::string base = type.substr(0, type.find(':'));
    if (base != "INT" && base != "UINT" && base != "FLOAT") continue;
    for (const std::string& v : opt->results()) {
      const bool ok = base == "FLOAT" ? std::regex_match(v, real) && std::isfinite(std::strtod(v.c_str(), nullptr))
                                      : std::regex_match(v, integer) && fits(v, base == "UINT");
      if (!ok)
        throw UsageError(fmt::format("{} {}: expected a {}", opt->get_name(), v,
                                     base == "FLOAT" ? "finite decimal number" : "decimal integer"));
    }
  }
  for (const CLI::App* sub : a->get_subcommands()) refuse_odd_numbers(sub);
}

// Runs `body`, mapping the error classes onto the documented exit codes with a one-line message.
int with_exit_codes(const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    fmt::print(stderr, "lsbench: usage error: {}\n", e.what());
    return kUsage;
  } catch (const InputError& e) {
    fmt::print(stderr, "lsbench: input error: {}\n", e.what());
    return kBadInput;
  } catch (const OutOfMemory& e) {
    fmt::print(stderr, "lsbench: {}\n", e.what());
    return kOutOfMemory;
  } catch (const std::bad_alloc&) {  // a buffer outside the tracker (a table sized by an option) refused
    fmt::print(stderr, "lsbench: out of memory: the system refused an allocation; a size given on the command line "
                       "(a window, a length, a width) is probably larger than this machine can hold\n");
    return kOutOfMemory;
  } catch (const std::length_error& e) {
    fmt::print(stderr, "lsbench: out of memory: a buffer would exceed what a vector can hold ({})\n", e.what());
    return kOutOfMemory;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user named (or an output folder) that the system refused: a loop of symbolic links, no
    // permission, a read-only folder. Their input, not lsbench's fault.
    fmt::print(stderr, "lsbench: input error: {}: {}\n", e.path1().string(), e.code().message());
    return kBadInput;
  } catch (const std::exception& e) {
    fmt::print(stderr, "lsbench: internal error: {}\n", e.what());
    return kInternal;
  }
}

}  // namespace

int lsb::cli_main(int argc, char** argv) {
  CLI::App app{"lsbench: long-sequence attention benchmarks (Transformer-LS and baselines) on Long Range Arena"};
  app.require_subcommand(1);
  std::vector<std::string> codes;
  for (const auto& [code, meaning] : kExitCodes) codes.push_back(fmt::format("{} {}", code, meaning));
  app.footer(fmt::format("Exit codes: {}.", fmt::join(codes, ", ")));

  std::vector<Command> commands;
  commands.push_back(add_info(app));
  auto* attention = app.add_subcommand("attention", "One attention layer: benchmark, or run on your arrays");
  attention->require_subcommand(1);
  commands.push_back(add_attention_bench(attention));
  commands.push_back(add_attention_run(attention));
  auto* model = app.add_subcommand(
      "model", "A whole model: run the encoder on weights under the PyTorch LRA code's names, or sample a language model");
  model->require_subcommand(1);
  commands.push_back(add_model_run(model));
  commands.push_back(add_model_sample(model));
  DataCli data_cli(app);
  commands.push_back(add_train(app));
  commands.push_back(add_demo(app));
  commands.push_back(add_sweep(app));
  commands.push_back(add_maxlen(app));
  commands.push_back(add_merge(app));
  commands.push_back(add_lra(app));
  commands.push_back(add_report(app));
  commands.push_back(add_compare(app));
  if (const char* list = std::getenv("LSBENCH_LIST_OPTIONS"); list && std::string(list) == "1") {
    list_options(app, "");
    return kOk;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  } catch (const UsageError& e) {  // a typed value refused as CLI11 read it (--memory-budget)
    fmt::print(stderr, "lsbench: usage error: {}\n", e.what());
    return kUsage;
  }

  // No option takes an empty or blank value (an output path "" would silently mean "none").
  const std::function<void(const CLI::App*)> refuse_blank = [&](const CLI::App* a) {
    for (const CLI::Option* opt : a->get_options())
      for (const std::string& v : opt->results())
        if (v.find_first_not_of(" \t\n") == std::string::npos)
          throw UsageError(fmt::format("{}: an empty value", opt->get_name()));
    for (const CLI::App* sub : a->get_subcommands()) refuse_blank(sub);
  };
  // Before any parallel region: OpenMP's default (OMP_NUM_THREADS) capped by the CPUs this process may use
  // and the runtime's limits, so that no region gets fewer threads than oneDNN splits its work into.
  use_threads(0);
  const CommandLine cmdline(argv, argv + argc);
  return with_exit_codes([&]() -> int {
    refuse_blank(&app);
    refuse_odd_numbers(&app);
    // LSBENCH_PARSE_ONLY=1: stop once the command line is read and every value checked (the argument fuzzer
    // and the option walk of tests/test_cli.cpp run commands that way: nothing else runs).
    if (const char* only = std::getenv("LSBENCH_PARSE_ONLY"); only && std::string(only) == "1") return kOk;
    if (data_cli.parsed()) return data_cli.run();
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run(cmdline);
    return kInternal;  // CLI11 requires a subcommand: not reached
  });
}
