// lsbench: the command line. Subcommands map onto drivers in bench/; errors map onto exit codes:
//   0 ok, 1 regression found by compare, 2 usage error, 3 bad input data, 4 out of memory, 5 internal.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "attention_impls/attention.hpp"
#include "bench/attention_bench.hpp"
#include "bench/data_cli.hpp"
#include "bench/demo.hpp"
#include "bench/lra.hpp"
#include "bench/model_run.hpp"
#include "bench/machine.hpp"
#include "bench/sweep.hpp"
#include "bench/train.hpp"
#include "reports/compare.hpp"
#include "reports/render.hpp"
#include "reports/report.hpp"
#include "reports/version.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"

namespace {

using namespace lsb;

// `lsbench train` options: the preset fills every setting, and an option given on the command line
// overrides it. Each override is bound to a field of `given`; `apply` copies the given ones.
struct TrainCli {
  TrainOptions given;
  std::vector<std::function<void(TrainOptions&)>> overrides;

  template <typename T>
  void add(CLI::App* cmd, const char* flag, T TrainOptions::*field, const char* help) {
    CLI::Option* opt = cmd->add_option(flag, given.*field, help);
    overrides.push_back([this, opt, field](TrainOptions& o) {
      if (opt->count() > 0) o.*field = given.*field;
    });
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
int logical_cpus() { return std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))); }
std::string check_thread_count(long long v) {
  if (v < 0 || v > logical_cpus())
    return fmt::format("{} threads: expected 0 (OpenMP's default) to {}, this machine's logical CPUs (more only spin "
                       "against each other)",
                       v, logical_cpus());
  return "";
}
CLI::Validator thread_count() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (end == s.c_str() || *end != '\0') return fmt::format("'{}' is not a thread count", s);
        return check_thread_count(v);
      },
      "0..CPUS");
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
  fmt::print("cpu: {} | {} logical CPUs | OpenMP threads {} | {}\n", c.model, c.cores, omp_get_max_threads(),
             fmt::join(c.flags, " "));
  const PeakMeasurement peak = measure_peak(omp_get_max_threads());
  fmt::print("measured fp32 peak: {:.1f} GFLOP/s on {} threads (FMA loop, best of {} rounds, median {:.1f}; {}; "
             "other processes took {:.2f} CPUs while it ran, load average {:.2f})\n",
             peak.best_gflops, peak.threads, peak.rounds, peak.median_gflops,
             peak.nominal_gflops > 0 ? fmt::format("{:.0f}% of the {:.0f} GFLOP/s the vector width and /proc/cpuinfo's clock imply",
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lsbench: long-sequence attention benchmarks (Transformer-LS and baselines) on Long Range Arena"};
  app.require_subcommand(1);
  app.footer("Exit codes: 0 ok, 1 regression (compare), 2 usage error, 3 bad input data, 4 out of memory, "
             "5 internal error.");

  auto* info = app.add_subcommand("info", "Machine, build, CUDA status and the list of attention variants");

  auto* attention = app.add_subcommand("attention", "One attention layer: benchmark, or run on your arrays");
  attention->require_subcommand(1);

  AttentionBenchOptions bench;
  auto* cmd_bench = attention->add_subcommand(
      "bench", "Check a variant against the float64 reference on a small copy, then time it and measure memory");
  cmd_bench->add_option("--variant", bench.variants, "Variant spec NAME[:key=value,...]; repeatable")
      ->required()
      ->take_all();
  cmd_bench->add_option("--n", bench.lengths, "Sequence length(s)")->required()->take_all();
  cmd_bench->add_option("--batch", bench.batch, "Batch size")->capture_default_str();
  cmd_bench->add_option("--dim", bench.dim, "Model width D")->capture_default_str();
  cmd_bench->add_option("--heads", bench.heads, "Heads h (D must be a multiple)")->capture_default_str();
  cmd_bench->add_option("--mode", bench.mode, "fwd or fwdbwd")->capture_default_str();
  cmd_bench->add_option("--threads", bench.threads, "CPU threads (default: OpenMP's)")->check(thread_count());
  cmd_bench->add_option("--memory-budget", bench.memory_budget, "Refuse allocations beyond this (e.g. 8GiB)");
  cmd_bench->add_option("--json", bench.json_path, "Write the report here (atomically, after every point)");
  cmd_bench->add_option("--device", bench.device, "cpu or cuda")->capture_default_str();
  cmd_bench->add_option("--precision", bench.precision,
                        "fp32, or bf16: products on bf16-rounded operands with fp32 accumulation")
      ->capture_default_str();
  cmd_bench->add_option("--seed", bench.seed, "Seed of parameters and inputs")->capture_default_str();
  add_timing_options(cmd_bench, bench.timing);

  AttentionRunOptions run;
  auto* cmd_run = attention->add_subcommand("run", "Forward (and backward) of one variant on .npy arrays");
  cmd_run->add_option("--variant", run.variant, "Variant spec NAME[:key=value,...]")->required();
  cmd_run->add_option("--heads", run.heads, "Heads h")->required();
  cmd_run->add_option("--weights", run.weights_dir, "Directory with one .npy per parameter")->required();
  cmd_run->add_option("--input", run.input, "x.npy, float32 (b, n, D)")->required();
  cmd_run->add_option("--mask", run.mask, "mask.npy (b, n), 1 = real token; bool/uint8/int32/int64/float");
  cmd_run->add_option("--device", run.device, "cpu or cuda")->capture_default_str();
  cmd_run->add_option("--precision", run.precision, "fp32, or bf16 products with fp32 accumulation")
      ->capture_default_str();
  cmd_run->add_option("--output", run.output, "Write y.npy here")->required();
  auto* go = cmd_run->add_option("--grad-output", run.grad_output, "dy.npy (b, n, D): also run the backward");
  cmd_run->add_option("--grads", run.grads_dir, "Directory for dx.npy and d<name>.npy")->needs(go);
  go->needs(cmd_run->get_option("--grads"));
  cmd_run->add_option("--threads", run.threads, "CPU threads")->check(thread_count());

  ModelRunOptions model_run;
  auto* model = app.add_subcommand("model", "The whole LRA encoder on weights saved under the PyTorch LRA code's names");
  model->require_subcommand(1);
  auto* cmd_model_run = model->add_subcommand(
      "run", "Logits of the encoder on token ids (.npy); with --labels the loss, with --grads every gradient");
  cmd_model_run->add_option("--weights", model_run.weights_dir, "Folder with one NAME.npy per state_dict tensor")
      ->required();
  cmd_model_run->add_option("--variant", model_run.variant, "Attention variant spec NAME[:key=value,...]")->required();
  cmd_model_run->add_option("--heads", model_run.heads, "Heads h")->required();
  cmd_model_run->add_option("--input", model_run.input, "ids.npy (b, n), integer token ids")->required();
  cmd_model_run->add_option("--mask", model_run.mask, "mask.npy (b, n), 1 = real token (default: all real)");
  cmd_model_run->add_option("--labels", model_run.labels, "labels.npy (b): also print the mean cross-entropy");
  cmd_model_run->add_option("--grads", model_run.grads_dir, "Write loss.npy and every parameter's gradient here");
  cmd_model_run->add_option("--output", model_run.output, "Write the logits (b, classes) here")->required();
  cmd_model_run->add_option("--pooling", model_run.pooling,
                            "mean (real tokens), mean-all (the reference code's: every position, pads as 0) or cls")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "mean-all", "cls"}));
  cmd_model_run->add_option("--device", model_run.device, "cpu or cuda")->capture_default_str();
  cmd_model_run->add_option("--precision", model_run.precision, "fp32, or bf16 products with fp32 accumulation")
      ->capture_default_str();
  cmd_model_run->add_option("--threads", model_run.threads, "CPU threads")->check(thread_count());

  DataCli data_cli(app);

  TrainCli train;
  auto* cmd_train = app.add_subcommand(
      "train", "Train the LRA encoder on a task with one attention variant; validation every E steps, test "
               "accuracy of the best-validation and final models, curves, throughput and memory in the report");
  TrainOptions& tg = train.given;
  cmd_train->add_option("--task", tg.task, "listops, text, retrieval, image, pathfinder or pathx")->required();
  cmd_train->add_option("--data-dir", tg.data_dir, "The task's data in its official layout")->required();
  cmd_train->add_option("--variant", tg.variant, "Attention variant spec NAME[:key=value,...]")->capture_default_str();
  cmd_train->add_option("--preset", tg.preset, "lra-small (the LRA recipe) or smoke (seconds, for CI)")
      ->capture_default_str();
  cmd_train->add_option("--out", tg.out, "Write the report here (atomically, after every evaluation)");
  cmd_train->add_option("--checkpoint-dir", tg.checkpoint_dir, "Keep last.ckpt and best.ckpt here");
  cmd_train->add_flag("--resume", tg.resume, "Continue from --checkpoint-dir/last.ckpt when it exists");
  cmd_train->add_option("--threads", tg.threads, "CPU threads (default: OpenMP's)")->check(thread_count());
  cmd_train->add_option("--device", tg.device, "cpu or cuda (the whole training step)")->capture_default_str();
  cmd_train->add_option("--precision", tg.precision, "fp32, or bf16 products with fp32 accumulation")
      ->capture_default_str();
  cmd_train->add_option("--memory-budget", tg.memory_budget, "Refuse allocations beyond this (e.g. 8GiB)");
  cmd_train->add_option("--difficulty", tg.difficulty, "pathfinder, pathx: baseline, 9 or 14 (LRA's)")
      ->capture_default_str();
  cmd_train->add_option("--val-from", tg.val_from, "text: train (10% hold-out) or test (LRA convention)")
      ->capture_default_str();
  cmd_train->add_option("--split-seed", tg.split_seed, "Seed of hold-outs and subsets")->capture_default_str();
  cmd_train->add_option("--seed", tg.seed, "Seed of parameters, batch order and dropout")->capture_default_str();
  cmd_train->add_flag("!--no-progress", tg.progress, "No progress display");
  cmd_train->add_option("--init-weights", tg.init_weights,
                        "Start from this folder of .npy arrays (PyTorch state_dict names) instead of a random draw");
  cmd_train->add_option("--save-weights", tg.save_weights,
                        "Write the best-validation and final weights as DIR/best and DIR/final (same layout)");
  cmd_train->add_option("--batches", tg.batches_dir,
                        "Train on the batches of this folder (ids_000000.npy, mask_..., labels_..., one per step) "
                        "instead of the task's sampler");
  // Overrides of the preset.
  train.add(cmd_train, "--steps", &TrainOptions::steps, "Training steps");
  train.add(cmd_train, "--batch", &TrainOptions::batch, "Batch size");
  train.add(cmd_train, "--lr", &TrainOptions::lr, "Peak learning rate");
  train.add(cmd_train, "--warmup", &TrainOptions::warmup, "Linear warm-up steps");
  train.add(cmd_train, "--schedule", &TrainOptions::schedule,
            "linear (warm-up, then linear decay to 0) or onecycle (torch's OneCycleLR as the reference PyTorch LRA "
            "code runs it: from lr/25, beta1 cycled 0.95-0.85-0.95)");
  train.add(cmd_train, "--weight-decay", &TrainOptions::weight_decay, "AdamW decoupled weight decay");
  train.add(cmd_train, "--dropout", &TrainOptions::dropout,
            "Dropout on block outputs, and on attention probabilities unless --attention-dropout is given");
  train.add(cmd_train, "--attention-dropout", &TrainOptions::attention_dropout,
            "Dropout on attention probabilities (default: --dropout where the variant has them, else 0)");
  train.add(cmd_train, "--clip-norm", &TrainOptions::clip_norm, "Clip the global gradient norm (0: off)");
  train.add(cmd_train, "--eval-every", &TrainOptions::eval_every, "Validate every E steps");
  train.add(cmd_train, "--log-every", &TrainOptions::log_every, "Curve point every K steps");
  train.add(cmd_train, "--length", &TrainOptions::length, "Model sequence length (text: truncation)");
  train.add(cmd_train, "--dim", &TrainOptions::dim, "Model width D");
  train.add(cmd_train, "--heads", &TrainOptions::heads, "Attention heads");
  train.add(cmd_train, "--layers", &TrainOptions::layers, "Encoder blocks");
  train.add(cmd_train, "--mlp-dim", &TrainOptions::mlp_dim, "MLP width");
  train.add(cmd_train, "--pooling", &TrainOptions::pooling, "mean, mean-all (the reference code's) or cls");
  train.add(cmd_train, "--max-train", &TrainOptions::max_train, "Train on a seeded subset of this size (0: all)");
  train.add(cmd_train, "--max-val", &TrainOptions::max_val, "Validate on a seeded subset (0: all)");
  train.add(cmd_train, "--max-test", &TrainOptions::max_test, "Test on a seeded subset (0: all)");

  auto* demo = app.add_subcommand("demo", "The main job on embedded defaults: a short attention sweep of every "
                                          "variant and short ListOps training runs, printed as tables, one report");
  DemoOptions demo_opt;
  demo->add_option("--json", demo_opt.json_path, "Report path")->capture_default_str();
  demo->add_option("--data-dir", demo_opt.data_dir, "Where the demo's ListOps data is generated (once)")
      ->capture_default_str();

  // ---- sweep, maxlen, merge ----
  SweepOptions sw;
  std::string sw_variants, sw_lengths = "1024:4096:x2", sw_batches = "8", sw_dims = "64", sw_heads = "2",
                           sw_layers = "2", sw_modes = "attn-fwdbwd", sw_devices = "cpu", sw_threads = "0", sw_shard,
              sw_precisions = "fp32";
  auto* cmd_sweep = app.add_subcommand(
      "sweep", "Measure time and memory over the cartesian product of the axes (comma lists); one report, written "
               "after every point, resumable, shardable across machines");
  cmd_sweep->add_option("--variants", sw_variants, "Variant specs, e.g. full,flash,ls:w=8,r=32 (default: all five)");
  cmd_sweep->add_option("--n", sw_lengths, "Lengths: START:STOP:xF, START:STOP:+S or a list")->capture_default_str();
  cmd_sweep->add_option("--batch", sw_batches, "Batch sizes")->capture_default_str();
  cmd_sweep->add_option("--dim", sw_dims, "Model widths D")->capture_default_str();
  cmd_sweep->add_option("--heads", sw_heads, "Head counts")->capture_default_str();
  cmd_sweep->add_option("--layers", sw_layers, "Encoder layers (model modes)")->capture_default_str();
  cmd_sweep->add_option("--mlp-dim", sw.mlp_dim, "MLP width (model modes; default 2 D)");
  cmd_sweep->add_option("--mode", sw_modes, "attn-fwd, attn-fwdbwd, model-fwd, train-step (a list)")
      ->capture_default_str();
  cmd_sweep->add_option("--task", sw.task, "listops, text, retrieval, image, pathfinder or pathx: vocabulary, classes (and two towers) of the model modes");
  cmd_sweep->add_option("--device", sw_devices, "cpu, cuda (a list)")->capture_default_str();
  cmd_sweep->add_option("--precision", sw_precisions, "fp32, bf16 (a list; bf16: the products)")->capture_default_str();
  cmd_sweep->add_option("--threads", sw_threads, "CPU thread counts (0: OpenMP's default)")->capture_default_str();
  cmd_sweep->add_option("--memory-budget", sw.memory_budget, "Points above it are recorded as oom (e.g. 16GiB)");
  cmd_sweep->add_option("--out", sw.out, "Report path (journal beside it while running)");
  cmd_sweep->add_flag("--resume", sw.resume, "Skip the points --out (and its journal) already holds");
  cmd_sweep->add_option("--shard", sw_shard, "Run every N-th point: i/N (default: SLURM_ARRAY_TASK_ID/COUNT)");
  cmd_sweep->add_flag("--list", sw.list, "Print the points, one command each, and exit");
  cmd_sweep->add_option("--seed", sw.seed, "Seed of parameters and inputs")->capture_default_str();
  cmd_sweep->add_flag("!--no-progress", sw.progress, "No progress display");
  add_timing_options(cmd_sweep, sw.timing);

  MaxlenOptions ml;
  std::string ml_variants;
  auto* cmd_maxlen = app.add_subcommand(
      "maxlen", "The longest sequence (a multiple of the granule) that fits a memory budget, per variant");
  cmd_maxlen->add_option("--variant", ml.variants, "Variant spec; repeatable")->take_all();
  cmd_maxlen->add_option("--variants", ml_variants, "Several specs, comma-separated; prints each one's ratio to full");
  cmd_maxlen->add_option("--mode", ml.mode, "attn-fwd, attn-fwdbwd, model-fwd or train-step")->capture_default_str();
  cmd_maxlen->add_option("--memory-budget", ml.memory_budget, "The memory to fit in (e.g. 16GiB)")->required();
  cmd_maxlen->add_option("--granule", ml.granule, "n is a multiple of this")->capture_default_str();
  cmd_maxlen->add_option("--batch", ml.batch, "Batch size")->capture_default_str();
  cmd_maxlen->add_option("--dim", ml.dim, "Model width D")->capture_default_str();
  cmd_maxlen->add_option("--heads", ml.heads, "Heads")->capture_default_str();
  cmd_maxlen->add_option("--layers", ml.layers, "Encoder layers (model modes)")->capture_default_str();
  cmd_maxlen->add_option("--task", ml.task, "a task's vocabulary and classes (model modes)");
  cmd_maxlen->add_option("--device", ml.device, "cpu or cuda")->capture_default_str();
  cmd_maxlen->add_option("--precision", ml.precision, "fp32 or bf16 (the products)")->capture_default_str();
  cmd_maxlen->add_option("--threads", ml.threads, "CPU threads (0: OpenMP's default)")->check(thread_count());
  cmd_maxlen->add_option("--limit", ml.n_limit, "Stop doubling at this n")->capture_default_str();
  cmd_maxlen->add_option("--out", ml.out, "Report path");

  std::vector<std::string> merge_inputs;
  std::string merge_out;
  auto* cmd_merge = app.add_subcommand("merge", "Join reports (e.g. the shards of one sweep) into one");
  cmd_merge->add_option("reports", merge_inputs, "Reports to join")->required();
  cmd_merge->add_option("-o,--out", merge_out, "Joined report")->required();

  LraOptions lra;
  std::string lra_variants, lra_lengths;
  auto* cmd_lra = app.add_subcommand(
      "lra", "The LRA suite: every task x variant trained with a preset (data generated or extracted where missing), "
             "an efficiency sweep in the shape of LRA Table 2, one report and a Markdown summary beside the published "
             "numbers; --resume continues after a kill");
  cmd_lra->add_option("--preset", lra.preset, "smoke (minutes on 2 cores) or lra-small (the LRA recipe)")
      ->capture_default_str()
      ->check(CLI::IsMember({"smoke", "lra-small"}));
  cmd_lra->add_option("--tasks", lra.tasks, "Comma list (default: listops,text,retrieval,image,pathfinder,pathx)")
      ->delimiter(',');
  cmd_lra->add_option("--variants", lra_variants,
                      "Comma list of specs (default: full,linformer:k=256,sliding:R=64,ls:w=8,r=32)");
  cmd_lra->add_option("--data-dir", lra.data_dir, "Data is generated or extracted here, official layouts read from here")
      ->required();
  cmd_lra->add_option("--archives", lra.archives,
                      "Folder with aclImdb_v1-labeled.tar.xz and cifar-10-binary-from-jpeg-q75.tar.xz (e.g. ../shared/data)");
  cmd_lra->add_option("--out", lra.out, "The suite's report (rewritten after every run)")->required();
  cmd_lra->add_option("--summary", lra.summary, "The Markdown summary (default: OUT.md)");
  cmd_lra->add_flag("--resume", lra.resume, "Keep the finished runs of OUT, continue an interrupted one from its checkpoint");
  cmd_lra->add_flag("!--no-efficiency", lra.efficiency, "Skip the efficiency sweep");
  cmd_lra->add_option("--efficiency-lengths", lra_lengths, "Lengths of the efficiency sweep (default smoke 1024,2048; "
                                                           "lra-small 1024:4096:+1024 and 8192)");
  cmd_lra->add_option("--efficiency-batch", lra.efficiency_batch, "Batch of the efficiency sweep (default smoke 4, lra-small 32)");
  cmd_lra->add_option("--memory-budget", lra.memory_budget, "Runs and points above it are oom (default: smoke 4GiB, lra-small 80% of the memory)");
  cmd_lra->add_option("--threads", lra.threads, "CPU threads (0: OpenMP's default)")->check(thread_count());
  cmd_lra->add_option("--device", lra.device, "cpu or cuda (every run and the efficiency sweep)")->capture_default_str();
  cmd_lra->add_option("--precision", lra.precision, "fp32, or bf16 products with fp32 accumulation")
      ->capture_default_str();
  cmd_lra->add_option("--seed", lra.seed, "Parameters, batch order and dropout of every run")->capture_default_str();
  cmd_lra->add_flag("!--no-progress", lra.progress, "No live progress line");

  RenderOptions rep;
  auto* cmd_report = app.add_subcommand(
      "report", "Render reports (merged by id) for people: Markdown tables per mode and shape, the LRA accuracy "
                "table beside the published numbers, maxlen, training curves; HTML with SVG plots inline; or CSV, one row "
                "per result");
  cmd_report->add_option("reports", rep.inputs, "Reports to render")->required();
  cmd_report->add_option("--format", rep.format, "md, html or csv")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "html", "csv"}));
  cmd_report->add_option("-o,--out", rep.out, "Write here instead of standard output");
  cmd_report->add_option("--plots", rep.plots_dir,
                         "Also write every plot as DIR/NAME.svg (time and memory vs n per mode, training curves); "
                         "Markdown then links them");

  std::string cmp_base, cmp_next, cmp_out, thr_time = "10%", thr_abs = "1ms", thr_mem = "5%", thr_acc = "1pt";
  auto* cmd_compare = app.add_subcommand(
      "compare", "Compare two reports point by point (paired by id): a Markdown table; exit 1 on a regression, "
                 "0 otherwise, 2 on unusable input");
  cmd_compare->add_option("base", cmp_base, "The baseline report")->required();
  cmd_compare->add_option("new", cmp_next, "The report to judge")->required();
  cmd_compare->add_option("--time-threshold", thr_time, "Slower by more than this (and --abs-threshold) regresses")
      ->capture_default_str();
  cmd_compare->add_option("--abs-threshold", thr_abs, "... and by more than this much time")->capture_default_str();
  cmd_compare->add_option("--memory-threshold", thr_mem, "Peak memory grown by more than this regresses")
      ->capture_default_str();
  cmd_compare->add_option("--accuracy-threshold", thr_acc, "Accuracy fallen by more than this regresses")
      ->capture_default_str();
  cmd_compare->add_option("-o,--out", cmp_out, "Also write the Markdown table here (e.g. a CI job summary)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }

  std::vector<std::string> cmdline(argv, argv + argc);
  try {
    if (*info) return print_info();
    if (*cmd_bench) {
      bench.command_line = cmdline;
      return run_attention_bench(bench);
    }
    if (*cmd_run) return run_attention_interop(run);
    if (*cmd_model_run) return run_model_command(model_run);
    if (*cmd_train) {
      TrainOptions o = train.resolve();
      o.command_line = cmdline;
      return run_train_command(o);
    }
    if (data_cli.parsed()) return data_cli.run();
    if (*cmd_lra) {
      if (!lra_variants.empty()) lra.variants = split_variant_list(lra_variants);
      if (!lra_lengths.empty()) lra.efficiency_lengths = parse_length_list(lra_lengths, "--efficiency-lengths");
      lra.command_line = cmdline;
      return run_lra(lra);
    }
    if (*demo) {
      demo_opt.command_line = cmdline;
      return run_demo(demo_opt);
    }
    if (*cmd_sweep) {
      auto ints = [](const std::string& text, const char* option) { return parse_length_list(text, option); };
      sw.variants = split_variant_list(sw_variants);
      sw.lengths = ints(sw_lengths, "--n");
      sw.batches = ints(sw_batches, "--batch");
      sw.dims = ints(sw_dims, "--dim");
      sw.heads = ints(sw_heads, "--heads");
      sw.layers = ints(sw_layers, "--layers");
      sw.modes = split_variant_list(sw_modes);
      sw.devices = split_variant_list(sw_devices);
      sw.precisions = split_variant_list(sw_precisions);
      sw.threads.clear();
      for (const auto& t : split_variant_list(sw_threads)) {
        if (t == "0") sw.threads.push_back(0);
        else sw.threads.push_back(static_cast<int>(parse_length_list(t, "--threads").front()));
        if (const std::string why = check_thread_count(sw.threads.back()); !why.empty())
          throw UsageError("--threads " + t + ": " + why);
      }
      if (!sw_shard.empty()) {
        std::tie(sw.shard_index, sw.shard_count) = parse_shard(sw_shard);
      } else {
        shard_from_slurm(sw.shard_index, sw.shard_count);
      }
      sw.command_line = cmdline;
      return run_sweep(sw);
    }
    if (*cmd_maxlen) {
      for (const auto& v : split_variant_list(ml_variants)) ml.variants.push_back(v);
      ml.command_line = cmdline;
      return run_maxlen(ml);
    }
    if (*cmd_merge) return run_merge(merge_inputs, merge_out);
    if (*cmd_report) {
      return run_report(rep);
    }
    if (*cmd_compare) {
      const CompareThresholds t{parse_fraction(thr_time, "--time-threshold"), parse_duration_s(thr_abs, "--abs-threshold"),
                                parse_fraction(thr_mem, "--memory-threshold"),
                                parse_points(thr_acc, "--accuracy-threshold")};
      std::error_code same_ec;
      if (cmp_base == cmp_next || std::filesystem::equivalent(cmp_base, cmp_next, same_ec)) {
        fmt::print(stderr, "lsbench: usage error: compare: {} is both the base and the new report\n", cmp_base);
        return kUsage;
      }
      nlohmann::json base, next;
      try {
        base = read_report(cmp_base);
        next = read_report(cmp_next);
      } catch (const InputError& e) {  // compare's contract: 2 for unusable input (CI tells it from a regression)
        fmt::print(stderr, "lsbench: unusable input: {}\n", e.what());
        return kUsage;
      }
      const Comparison c = compare_reports(base, next, cmp_base, cmp_next, t);
      fmt::print("{}", c.markdown);
      if (!cmp_out.empty()) {
        std::ofstream f(cmp_out);
        f << c.markdown;
        if (!f) throw InputError(fmt::format("{}: cannot write the comparison", cmp_out));
      }
      return c.regressed > 0 ? kRegression : kOk;
    }
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
  } catch (const std::exception& e) {
    fmt::print(stderr, "lsbench: internal error: {}\n", e.what());
    return kInternal;
  }
  return kInternal;
}
