// The points of `sweep`, `attention bench` and `maxlen`: a point's config and id, and measuring it in any
// mode on either device under the current budget (the one path every measured point takes).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/attention_bench.hpp"
#include "bench/machine.hpp"
#include "bench/sweep_axes.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"
#include "nn/threads.hpp"
#include "reports/report.hpp"

namespace lsb::sweep_internal {

// attn-fwd, attn-fwdbwd (the attention module alone), model-fwd, train-step (the LRA encoder).
const std::vector<std::string>& sweep_modes();
bool is_attention_mode(const std::string& m);

// What the model modes need of a task: vocabulary, classes and the task's own length.
struct TaskShape {
  std::int64_t vocab = 257, classes = 2, length = 0;  // no task: byte tokens, two classes
  bool pair = false;                                  // retrieval: two towers, 2b sequences per batch
  bool language_model = false;  // enwik8, text8, corpus: the causal decoder, next-token loss at every position
};
TaskShape task_shape(const std::string& task);  // UsageError naming --task

// The config block of a point, with the variant's parameters resolved (the module is made on the CPU
// at n_max = n for that) and the padded length; a spec that cannot be made gives the raw fields and
// the reason in *why_not.
nlohmann::json point_config(const SweepPoint& p, std::string* why_not);

// A point's config made once: the sweep needs its id before running and the runner needs it to run.
struct ResolvedPoint {
  nlohmann::json config;
  std::string why_not;  // non-empty: the point cannot be made (skipped with this reason)
};
ResolvedPoint resolve(const SweepPoint& p);

nlohmann::json with_id(nlohmann::json res);  // res with "id" set from its config
nlohmann::json skipped(const nlohmann::json& config, const std::string& why);

// One inference step (model-fwd) or optimiser step (train-step) of the LRA encoder, on either device.
nlohmann::json measure_model_point(const SweepPoint& p, const nlohmann::json& config, const TimingPolicy& timing,
                                   double peak_gflops, std::uint64_t seed);

// One line for the console: what the point is and its time, or its status, message and repro line.
std::string point_line(const nlohmann::json& result);

// Checks every axis of `o` (UsageError naming the option); returns its variant specs (the defaults
// when it names none).
std::vector<VariantSpec> check_axes(const SweepOptions& o);

// The budget of both devices (empty: none).
void set_budgets(const ByteSize& budget);

// Measures one point (any mode, either device) under the current budget. Reference checks of the
// attention modes are done once per (variant, dim, heads, mode, device) and cached by the caller.
class PointRunner {
 public:
  PointRunner(const TimingPolicy& timing, std::uint64_t seed) : timing_(timing), seed_(seed) {}

  // The point's result, whatever its status, with its repro line (the command that reruns just it).
  nlohmann::json run(const SweepPoint& p) { return run(p, resolve(p)); }
  nlohmann::json run(const SweepPoint& p, const ResolvedPoint& resolved) {
    const ThreadGrant threads = use_threads(p.threads);
    nlohmann::json res = measure(p, resolved);
    if (threads.granted < threads.requested) res["threads_granted"] = threads.granted;
    res["repro"] = p.command();
    return res;
  }

  // The peak in GFLOP/s: on the CPU the fp32 FMA peak measured for the current thread count (once per
  // count), on the GPU its published figure for the precision.
  double peak(Device dev, Precision precision) {
    return dev == Device::cpu ? cpu_peak() : gpu_peak_gflops(cuda::query(0).name, precision == Precision::bf16);
  }
  double cpu_peak() { return cpu_peak_measurement().best_gflops; }
  // Measured once per thread count; a measurement the machine's load makes doubtful is said once.
  const PeakMeasurement& cpu_peak_measurement() {
    const int t = current_threads().granted;
    if (!peaks_.count(t)) {
      peaks_[t] = measure_peak(t);
      if (!peaks_[t].warning.empty()) fmt::print(stderr, "lsbench: warning: {}\n", peaks_[t].warning);
    }
    return peaks_[t];
  }

 private:
  nlohmann::json measure(const SweepPoint& p, const ResolvedPoint& resolved) {
    const nlohmann::json& config = resolved.config;
    if (!resolved.why_not.empty()) return skipped(config, resolved.why_not);
    const Device dev = p.device;
    const Precision precision = p.precision;
    try {
      require_precision(precision, dev);
    } catch (const UsageError& e) {
      return skipped(config, e.what());
    }
    if (dev == Device::cuda && cuda::device_count() == 0)
      return skipped(config, cuda::unavailable_reason());
    try {
      if (!is_attention_mode(p.mode)) {
        const PrecisionScope scope(precision, dev);
        return measure_model_point(p, config, timing_, peak(dev, precision), seed_);
      }
      const bool bwd = p.mode == "attn-fwdbwd";
      const std::string key = fmt::format("{}|{}|{}|{}|{}|{}", p.variant.text, p.dim, p.heads, bwd, device_name(dev),
                                          precision_name(precision));
      if (!checks_.count(key))
        checks_[key] = check_against_reference(p.variant, p.dim, p.heads, bwd, seed_, dev, precision);
      const AttentionPoint pt{p.variant, p.n, p.batch, p.dim, p.heads, bwd, dev, p.threads,
                              seed_, precision};
      nlohmann::json res = measure_attention_point(pt, checks_[key], timing_, peak(dev, precision));
      res["config"] = config;  // the sweep's config (threads as asked, task) names the point
      return with_id(res);
    } catch (const UsageError& e) {  // e.g. linformer past its n_max
      return skipped(config, e.what());
    }
  }

  TimingPolicy timing_;
  std::uint64_t seed_;
  std::map<std::string, ReferenceCheck> checks_;
  std::map<int, PeakMeasurement> peaks_;
};

}  // namespace lsb::sweep_internal
