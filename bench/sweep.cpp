#include "bench/sweep.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "attention_impls/attention.hpp"
#include "bench/attention_bench.hpp"
#include "bench/machine.hpp"
#include "bench/progress.hpp"
#include "bench/result_fields.hpp"
#include "nn/cuda/device.hpp"
#include "nn/encoder.hpp"
#include "nn/errors.hpp"
#include "nn/optim.hpp"
#include "nn/random.hpp"
#include "reports/render.hpp"
#include "reports/report.hpp"
#include "tasks/task.hpp"

namespace lsb {

// ---- parsing -----------------------------------------------------------------------------------

std::vector<std::string> split_variant_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const auto comma = text.find(',', pos);
    const std::string piece = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const bool continues = !out.empty() && piece.find('=') != std::string::npos &&
                           piece.find(':') == std::string::npos && out.back().find(':') != std::string::npos;
    if (continues)
      out.back() += "," + piece;
    else if (!piece.empty())
      out.push_back(piece);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

namespace {

std::int64_t parse_positive(const std::string& text, const std::string& option) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || v <= 0)
    throw UsageError(fmt::format("{} {}: '{}' is not a positive integer", option, text, text));
  return v;
}

}  // namespace

std::vector<std::int64_t> parse_length_list(const std::string& text, const std::string& option) {
  std::vector<std::int64_t> out;
  const auto c1 = text.find(':');
  if (c1 == std::string::npos) {
    for (const auto& piece : split_variant_list(text)) out.push_back(parse_positive(piece, option));
    return out;
  }
  const auto c2 = text.find(':', c1 + 1);
  if (c2 == std::string::npos || c2 + 2 > text.size())
    throw UsageError(fmt::format("{} {}: a range is START:STOP:xFACTOR or START:STOP:+STEP", option, text));
  const std::int64_t start = parse_positive(text.substr(0, c1), option);
  const std::int64_t stop = parse_positive(text.substr(c1 + 1, c2 - c1 - 1), option);
  const char kind = text[c2 + 1];
  const std::int64_t step = parse_positive(text.substr(c2 + 2), option);
  if ((kind != 'x' && kind != '+') || (kind == 'x' && step < 2) || stop < start)
    throw UsageError(fmt::format("{} {}: a range is START:STOP:xFACTOR (factor >= 2) or START:STOP:+STEP with "
                                 "START <= STOP",
                                 option, text));
  for (std::int64_t n = start; n <= stop; n = kind == 'x' ? n * step : n + step) out.push_back(n);
  return out;
}

std::pair<int, int> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  if (slash == std::string::npos) throw UsageError(fmt::format("--shard {}: expected i/N, e.g. 0/4", text));
  const auto count = parse_positive(text.substr(slash + 1), "--shard");
  std::int64_t index = -1;
  try {
    std::size_t used = 0;
    index = std::stoll(text.substr(0, slash), &used);
    if (used != slash) index = -1;
  } catch (const std::exception&) {
  }
  if (index < 0 || index >= count)
    throw UsageError(fmt::format("--shard {}: expected i/N with 0 <= i < N", text));
  return {static_cast<int>(index), static_cast<int>(count)};
}

bool shard_from_slurm(int& index, int& count) {
  const char* id = std::getenv("SLURM_ARRAY_TASK_ID");
  const char* n = std::getenv("SLURM_ARRAY_TASK_COUNT");
  if (!id || !n) return false;
  const char* lo = std::getenv("SLURM_ARRAY_TASK_MIN");
  const auto [i, c] = parse_shard(fmt::format("{}/{}", std::atoll(id) - (lo ? std::atoll(lo) : 0), n));
  index = i;
  count = c;
  return true;
}

// ---- points ------------------------------------------------------------------------------------

namespace {

const std::vector<std::string> kModes = {"attn-fwd", "attn-fwdbwd", "model-fwd", "train-step"};
bool is_attention_mode(const std::string& m) { return m.rfind("attn-", 0) == 0; }

// What the model modes need of a task: vocabulary, classes and the task's own length.
struct TaskShape {
  std::int64_t vocab = 257, classes = 2, length = 0;  // no task: byte tokens, two classes
  bool pair = false;                                  // retrieval: two towers, 2b sequences per batch
};
TaskShape task_shape(const std::string& task) {
  if (task.empty()) return {};
  if (task == "listops") return {17, 10, 2048};
  if (task == "text") return {257, 2, 4096};
  if (task == "retrieval") return {257, 2, 4096, true};
  if (task == "image") return {256, 10, 1024};
  if (task == "pathfinder") return {256, 2, 1024};
  if (task == "pathx") return {256, 2, 16384};
  throw UsageError(fmt::format("--task {}: expected one of {}", task, fmt::join(task_names(), ", ")));
}

std::vector<std::string> default_variants() { return {"full", "flash", "linformer:k=256", "sliding:R=64", "ls:w=8,r=32"}; }

// The config block of a point, with the variant's parameters resolved (the module is made on the CPU
// at n_max = n for that) and the padded length; a spec that cannot be made gives the raw fields.
nlohmann::json point_config(const SweepPoint& p, std::string* why_not) {
  const VariantSpec spec = VariantSpec::parse(p.variant);
  nlohmann::json c = {{"variant", spec.name},      {"variant_params", spec.params}, {"n", p.n},
                      {"batch", p.batch},          {"heads", p.heads},              {"dim", p.dim},
                      {"layers", is_attention_mode(p.mode) ? 1 : p.layers},
                      {"mode", p.mode},            {"device", p.device},            {"precision", p.precision},
                      {"threads", p.threads}};
  if (!p.task.empty()) c["task"] = p.task;
  if (!is_attention_mode(p.mode)) {
    const TaskShape ts = task_shape(p.task);
    c["mlp_dim"] = p.mlp_dim;
    c["vocab"] = ts.vocab;
    c["classes"] = ts.classes;
  }
  try {
    auto module = make_attention(spec, p.dim, p.heads, p.n);
    c["variant_params"] = variant_params_json(module->resolved_params());
    c["padded_n"] = module->padded_length(p.n);
  } catch (const UsageError& e) {
    if (why_not) *why_not = e.what();
  } catch (const OutOfMemory&) {
    // Even the module's parameters do not fit the budget (linformer's E at a huge n): the config
    // stays unresolved, the same way each time, and running the point records the oom.
  }
  return c;
}

// A point's config made once: the sweep needs its id before running and the runner needs it to run.
struct ResolvedPoint {
  nlohmann::json config;
  std::string why_not;  // non-empty: the point cannot be made (skipped with this reason)
};
ResolvedPoint resolve(const SweepPoint& p) {
  ResolvedPoint r;
  r.config = point_config(p, &r.why_not);
  return r;
}

nlohmann::json with_id(nlohmann::json res) {
  res["id"] = config_id(res["config"]);
  return res;
}

nlohmann::json skipped(const nlohmann::json& config, const std::string& why) {
  return with_id({{"kind", "sweep-point"}, {"config", config}, {"status", "skipped"}, {"message", why}});
}

// One inference step (model-fwd) or optimiser step (train-step) of the LRA encoder, on either device.
// A step is timed from the host and ends with a device synchronisation on CUDA: it includes building
// the batch's host arrays and copying them over, as a training step does.
nlohmann::json measure_model_point(const SweepPoint& p, const nlohmann::json& config, const TimingPolicy& timing,
                                   double peak_gflops, std::uint64_t seed) {
  auto& mt = MemoryTracker::instance();
  const Device dev = parse_device(p.device, "--device");
  nlohmann::json res = with_id({{"kind", "sweep-point"}, {"config", config}});
  mt.release_cached(dev);  // the reserved figure starts without an earlier point's cached blocks
  const TaskShape ts = task_shape(p.task);
  const bool train = p.mode == "train-step";
  try {
    Encoder enc({.vocab = ts.vocab, .classes = ts.classes, .max_len = p.n, .dim = p.dim, .heads = p.heads,
                 .layers = p.layers, .mlp_dim = p.mlp_dim, .pooling = "mean", .dropout = 0.0f,
                 .attention = p.variant, .pair = ts.pair, .device = dev});
    enc.init_params(seed);
    std::unique_ptr<AdamW> opt;
    if (train) opt = std::make_unique<AdamW>(enc.parameters(), AdamWConfig{});
    const std::int64_t b = p.batch, n = p.n, seqs = ts.pair ? 2 * b : b;  // b examples, seqs sequences
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(seqs * n));
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(seqs * n), 1);
    std::vector<int> labels(static_cast<std::size_t>(b));
    Rng rng(seed + 1);
    auto draw = [&](std::int64_t k) { return std::min<std::int64_t>(k - 1, static_cast<std::int64_t>(rng.uniform(0, 1) * k)); };
    for (auto& t : tokens) t = static_cast<std::int32_t>(1 + draw(ts.vocab - 1));  // 0 is padding
    for (auto& l : labels) l = static_cast<int>(draw(ts.classes));
    std::uint64_t dropout_seed = seed;
    auto step = [&] {
      if (!train) {
        enc.forward(tokens.data(), mask.data(), labels.data(), b, n, false, 0);
        return;
      }
      enc.zero_grad();
      enc.forward(tokens.data(), mask.data(), labels.data(), b, n, true, ++dropout_seed);
      enc.backward();
      opt->step(1e-4);
      if (dev == Device::cuda) cuda::synchronize();
    };
    step();  // first call: everything the model keeps is allocated
    const bool rss_reset = reset_peak_rss();
    mt.reset_peak(dev);
    const TimeStats t = time_it(step, timing);
    const MemoryStats ms = mt.stats(dev);
    // Cost model: every layer's attention (its own model) plus the MLP (2 products of D x Dmlp),
    // the head; train-step counted as 3x forward.
    const std::int64_t pn = enc.internal_length(n);
    double flops = 2.0 * b * ((ts.pair ? 4 : 1) * p.dim * p.mlp_dim + p.mlp_dim * ts.classes);
    for (std::int64_t l = 0; l < p.layers; ++l)
      flops += enc.attention(l).forward_flops(seqs, pn) + 4.0 * seqs * pn * p.dim * p.mlp_dim;
    if (train) flops *= 3.0;
    res["status"] = "ok";
    if (t.capped) res["message"] = "stopped by the per-point time cap before the minimum count and time";
    res["time_s"] = {{"min", t.min}, {"median", t.median}, {"mean", t.mean},
                     {"max", t.max}, {"stdev", t.stdev},   {"samples", t.samples}};
    const double gflops = flops / t.median / 1e9;
    res["throughput"] = {{"tokens_per_s", seqs * n / t.median}, {"steps_per_s", 1.0 / t.median},
                         {"flops", flops}, {"gflops", gflops}, {"flop_convention", "cost model; train-step = 3x forward"}};
    if (peak_gflops > 0) {
      res["throughput"]["peak_fraction"] = gflops / peak_gflops;
      res["throughput"]["peak_basis"] = peak_basis(dev == Device::cuda, p.precision == "bf16");
    }
    res["memory"] = tracked_memory_json(ms);
    // The model's buffer plan, plus AdamW's two moments per parameter (oneDNN's shared scratchpad,
    // tracked as workspace, is not in it).
    std::int64_t param_floats = 0;
    for (const auto& [name, prm] : enc.parameters()) param_floats += prm->value.numel();
    res["memory"]["analytic_bytes"] = enc.analytic_bytes(b, n, train) + (train ? 2 * 4 * param_floats : 0);
    res["memory"]["peak_rss_bytes"] = peak_rss_bytes();
    res["memory"]["peak_rss_scope"] = rss_reset ? "this point" : "process so far (clear_refs not allowed)";
    res["memory"]["tracked_allocations_while_timing"] = ms.allocations;
  } catch (const OutOfMemory& e) {
    res["status"] = "oom";
    res["message"] = e.what();
    res["memory"] = {{"requested_bytes", e.requested}};
    if (e.budget > 0) res["memory"]["budget_bytes"] = e.budget;
  }
  return res;
}

// Measures one point (any mode, either device) under the current budget. Reference checks of the
// attention modes are done once per (variant, dim, heads, mode, device) and cached by the caller.
class PointRunner {
 public:
  PointRunner(const TimingPolicy& timing, std::uint64_t seed) : timing_(timing), seed_(seed) {}

  nlohmann::json run(const SweepPoint& p) { return run(p, resolve(p)); }
  nlohmann::json run(const SweepPoint& p, const ResolvedPoint& resolved) {
    const nlohmann::json& config = resolved.config;
    if (!resolved.why_not.empty()) return skipped(config, resolved.why_not);
    const Device dev = p.device == "cuda" ? Device::cuda : Device::cpu;
    const Precision precision = parse_precision(p.precision, "--precision");
    try {
      require_precision(precision, dev);
    } catch (const UsageError& e) {
      return skipped(config, e.what());
    }
    if (dev == Device::cuda && cuda::device_count() == 0)
      return skipped(config, cuda::unavailable_reason());
    omp_set_num_threads(p.threads > 0 ? p.threads : default_threads_);
    try {
      if (!is_attention_mode(p.mode)) {
        const PrecisionScope scope(precision, dev);
        return measure_model_point(p, config, timing_, peak(dev, precision), seed_);
      }
      const bool bwd = p.mode == "attn-fwdbwd";
      const std::string key = fmt::format("{}|{}|{}|{}|{}|{}", p.variant, p.dim, p.heads, bwd, p.device, p.precision);
      if (!checks_.count(key))
        checks_[key] = check_against_reference(p.variant, p.dim, p.heads, bwd, seed_, dev, precision);
      const AttentionPoint pt{VariantSpec::parse(p.variant), p.n, p.batch, p.dim, p.heads, bwd, dev, p.threads,
                              seed_, precision};
      nlohmann::json res = measure_attention_point(pt, checks_[key], timing_, peak(dev, precision));
      res["config"] = config;  // the sweep's config (threads as asked, task) names the point
      return with_id(res);
    } catch (const UsageError& e) {  // e.g. linformer past its n_max
      return skipped(config, e.what());
    }
  }

  // The peak in GFLOP/s: on the CPU the fp32 FMA peak measured for the current thread count (once per
  // count), on the GPU its published figure for the precision.
  double peak(Device dev, Precision precision) {
    return dev == Device::cpu ? cpu_peak() : gpu_peak_gflops(cuda::query(0).name, precision == Precision::bf16);
  }
  double cpu_peak() { return cpu_peak_measurement().best_gflops; }
  // Measured once per thread count; a measurement the machine's load makes doubtful is said once.
  const PeakMeasurement& cpu_peak_measurement() {
    const int t = omp_get_max_threads();
    if (!peaks_.count(t)) {
      peaks_[t] = measure_peak(t);
      if (!peaks_[t].warning.empty()) fmt::print(stderr, "lsbench: warning: {}\n", peaks_[t].warning);
    }
    return peaks_[t];
  }

 private:
  TimingPolicy timing_;
  std::uint64_t seed_;
  int default_threads_ = omp_get_max_threads();
  std::map<std::string, ReferenceCheck> checks_;
  std::map<int, PeakMeasurement> peaks_;
};

std::vector<std::string> check_axes(const SweepOptions& o) {
  for (const auto& m : o.modes)
    if (std::find(kModes.begin(), kModes.end(), m) == kModes.end())
      throw UsageError(fmt::format("--mode {}: expected attn-fwd, attn-fwdbwd, model-fwd or train-step", m));
  for (const auto& d : o.devices) parse_device(d, "--device");
  for (const auto& p : o.precisions) parse_precision(p, "--precision");
  task_shape(o.task);
  auto positive = [](const std::vector<std::int64_t>& v, const char* opt) {
    for (auto x : v)
      if (x <= 0) throw UsageError(fmt::format("{} {}: must be positive", opt, x));
  };
  positive(o.batches, "--batch");
  positive(o.dims, "--dim");
  positive(o.heads, "--heads");
  positive(o.layers, "--layers");
  positive(o.lengths, "--n");
  for (auto b : o.batches)
    for (auto d : o.dims)
      for (auto h : o.heads)
        for (auto n : o.lengths) check_problem_size(b * (task_shape(o.task).pair ? 2 : 1), n, d, h);
  std::vector<std::string> variants = o.variants.empty() ? default_variants() : o.variants;
  for (const auto& v : variants) {
    const auto spec = VariantSpec::parse(v);
    const auto names = variant_names();
    if (std::find(names.begin(), names.end(), spec.name) == names.end())
      make_attention(spec, 64, 2, 64);  // throws the registry's usage error listing the variants
  }
  return variants;
}

// A one-line summary of a finished point.
std::string point_line(const nlohmann::json& r) {
  const auto& c = r["config"];
  std::string what = fmt::format("{} {} n={} b={} D={} h={}{} {}", c["mode"].get<std::string>(),
                                 c["variant"].get<std::string>(), c["n"].get<std::int64_t>(),
                                 c["batch"].get<std::int64_t>(), c["dim"].get<std::int64_t>(),
                                 c["heads"].get<std::int64_t>(),
                                 c["mode"].get<std::string>().rfind("attn-", 0) == 0
                                     ? ""
                                     : fmt::format(" L={}", c["layers"].get<std::int64_t>()),
                                 c["device"].get<std::string>()) +
                     (c.value("precision", "fp32") == "fp32" ? "" : " " + c["precision"].get<std::string>());
  const std::string st = r["status"].get<std::string>();
  if (st != "ok") return fmt::format("{}: {}: {}", what, st, r.value("message", ""));
  return fmt::format("{}: {:.3f} ms, {:.0f} tok/s, {:.1f} GFLOP/s, peak {}", what,
                     r["time_s"]["median"].get<double>() * 1e3, r["throughput"]["tokens_per_s"].get<double>(),
                     r["throughput"]["gflops"].get<double>(),
                     format_bytes(r["memory"]["peak_tracked_bytes"].get<std::int64_t>()));
}

// Results of an earlier run of the same report (the report itself and the journal beside it).
std::map<std::string, nlohmann::json> finished_results(const std::string& out) {
  std::map<std::string, nlohmann::json> done;
  if (std::filesystem::exists(out)) {
    const nlohmann::json old = read_report(out);
    for (const auto& r : old["results"]) done[r["id"].get<std::string>()] = r;
  }
  std::ifstream j(out + ".journal");
  std::string line;
  while (std::getline(j, line)) {
    try {
      const auto r = nlohmann::json::parse(line);
      done[r.at("id").get<std::string>()] = r;
    } catch (const std::exception&) {  // a line cut short by the kill: that point runs again
    }
  }
  return done;
}

void set_budgets(const std::string& budget) {
  const std::int64_t bytes = budget.empty() ? 0 : parse_size(budget, "--memory-budget");
  MemoryTracker::instance().set_budget(Device::cpu, bytes);
  MemoryTracker::instance().set_budget(Device::cuda, bytes);
}

}  // namespace

std::string SweepPoint::command() const {
  std::string cmd = fmt::format("lsbench sweep --variants {} --n {} --batch {} --dim {} --heads {}", variant, n,
                                batch, dim, heads);
  if (!is_attention_mode(mode)) cmd += fmt::format(" --layers {} --mlp-dim {}", layers, mlp_dim);
  if (!task.empty()) cmd += " --task " + task;
  cmd += fmt::format(" --mode {} --device {}", mode, device);
  if (precision != "fp32") cmd += " --precision " + precision;
  if (threads > 0) cmd += fmt::format(" --threads {}", threads);
  return cmd;
}

std::vector<SweepPoint> sweep_points(const SweepOptions& o) {
  const std::vector<std::string> variants = check_axes(o);
  std::vector<SweepPoint> pts;
  for (const auto& mode : o.modes)
    for (const auto& device : o.devices)
      for (const auto& precision : o.precisions)
        for (int threads : o.threads)
          for (const auto& v : variants)
            for (auto b : o.batches)
              for (auto d : o.dims)
                for (auto h : o.heads)
                  for (auto l : is_attention_mode(mode) ? std::vector<std::int64_t>{1} : o.layers)
                    for (auto n : o.lengths)
                      pts.push_back({v, n, b, d, h, l, o.mlp_dim > 0 ? o.mlp_dim : 2 * d, mode, o.task, device,
                                     threads, precision});
  return pts;
}

int run_sweep(const SweepOptions& o) {
  const std::vector<SweepPoint> all = sweep_points(o);
  std::vector<SweepPoint> pts;
  for (std::size_t i = 0; i < all.size(); ++i)
    if (static_cast<int>(i % static_cast<std::size_t>(o.shard_count)) == o.shard_index) pts.push_back(all[i]);
  if (o.list) {
    for (const auto& p : pts) fmt::print("{}\n", p.command());
    return kOk;
  }
  if (o.resume && o.out.empty()) throw UsageError("--resume needs --out: the report to continue");
  set_budgets(o.memory_budget);

  PointRunner runner(o.timing, o.seed);
  nlohmann::json context = make_context({o.command_line, omp_get_max_threads(), runner.cpu_peak(),
                                         runner.cpu_peak_measurement().to_json()});
  context["shard"] = {{"index", o.shard_index}, {"count", o.shard_count}};
  std::map<std::string, nlohmann::json> results = o.resume ? finished_results(o.out) : decltype(results){};
  if (!o.resume && !o.out.empty()) std::filesystem::remove(o.out + ".journal");

  // Configs and ids of the points in canonical order (the report lists results in this order).
  std::vector<ResolvedPoint> resolved;
  std::vector<std::string> ids;
  for (const auto& p : pts) {
    resolved.push_back(resolve(p));
    ids.push_back(config_id(resolved.back().config));
  }
  // A resumed report keeps every finished point it held, also those this run's axes do not name: they
  // follow this run's points (never is a report rewritten smaller).
  const std::set<std::string> this_run(ids.begin(), ids.end());
  std::vector<std::string> kept_earlier;
  for (const auto& [id, r] : results)
    if (!this_run.count(id)) kept_earlier.push_back(id);
  auto save = [&] {
    if (o.out.empty()) return;
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& id : ids)
      if (results.count(id)) arr.push_back(results[id]);
    for (const auto& id : kept_earlier) arr.push_back(results[id]);
    write_report(o.out, make_report(context, arr));
  };
  std::ofstream journal;
  if (!o.out.empty()) journal.open(o.out + ".journal", std::ios::app);

  Progress progress(static_cast<std::int64_t>(pts.size()));
  int resumed = 0, exit_code = kOk;
  double run_seconds = 0;
  int measured = 0;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (results.count(ids[i])) {
      ++resumed;
      continue;
    }
    if (o.progress)
      progress.update(static_cast<std::int64_t>(i), fmt::format("point {}/{}: {}", i + 1, pts.size(), pts[i].command()),
                      measured ? run_seconds / measured : 0.0);
    const auto t0 = std::chrono::steady_clock::now();
    nlohmann::json r = runner.run(pts[i], resolved[i]);
    run_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++measured;
    results[ids[i]] = r;
    if (journal.is_open()) journal << r.dump() << "\n" << std::flush;
    save();
    const std::string line = fmt::format("[{}/{}] {}", i + 1, pts.size(), point_line(r));
    if (o.progress)
      progress.message(line);
    else
      fmt::print("{}\n", line);
  }
  if (o.progress) progress.finish();
  save();
  if (journal.is_open()) {
    journal.close();
    std::filesystem::remove(o.out + ".journal");
  }
  std::map<std::string, int> by_status;
  for (const auto& id : ids) by_status[results[id]["status"].get<std::string>()]++;
  std::string summary;
  for (const auto& [st, k] : by_status) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", k, st);
  fmt::print("sweep: {} points ({}){}{}{}\n", pts.size(), summary,
             resumed ? fmt::format(", {} taken from the earlier run", resumed) : "",
             kept_earlier.empty() ? "" : fmt::format(", {} other points of the earlier report kept", kept_earlier.size()),
             o.out.empty() ? "" : ", report " + o.out);
  if (by_status.count("error")) exit_code = kInternal;
  else if (by_status.count("oom")) exit_code = kOutOfMemory;
  return exit_code;
}

// ---- maxlen --------------------------------------------------------------------------------------

int run_maxlen(const MaxlenOptions& o) {
  if (o.memory_budget.empty()) throw UsageError("maxlen: --memory-budget is required (the memory to fit in)");
  if (o.granule <= 0) throw UsageError(fmt::format("--granule {}: must be positive", o.granule));
  if (o.variants.empty()) throw UsageError("maxlen: give --variant (or --variants)");
  set_budgets(o.memory_budget);
  SweepOptions so;
  so.modes = {o.mode};
  so.devices = {o.device};
  so.precisions = {o.precision};
  so.task = o.task;
  so.variants = o.variants;
  so.batches = {o.batch};
  so.dims = {o.dim};
  so.heads = {o.heads};
  so.layers = {o.layers};
  check_axes(so);
  // One timed call is enough to know whether a point fits.
  TimingPolicy once;
  once.warmup = 0;
  once.min_reps = 1;
  once.min_time_s = 0;
  PointRunner runner(once, o.seed);
  nlohmann::json context = make_context({o.command_line, omp_get_max_threads(), 0.0});
  nlohmann::json results = nlohmann::json::array();
  std::map<std::string, std::int64_t> best;
  for (const auto& v : o.variants) {
    SweepPoint p{v, o.granule, o.batch, o.dim, o.heads, o.layers, o.mlp_dim > 0 ? o.mlp_dim : 2 * o.dim,
                 o.mode, o.task, o.device, o.threads, o.precision};
    nlohmann::json attempts = nlohmann::json::array();
    std::string stop_reason;
    auto fits = [&](std::int64_t n) {
      p.n = n;
      const nlohmann::json r = runner.run(p);
      const std::string st = r["status"].get<std::string>();
      attempts.push_back({{"n", n}, {"status", st}});
      fmt::print("maxlen {} n={}: {}\n", v, n, st == "ok" ? "fits" : st + ": " + r.value("message", ""));
      if (st != "ok" && st != "oom") stop_reason = r.value("message", st);
      return st == "ok";
    };
    std::int64_t lo = 0, hi = 0;  // lo fits (0 = nothing yet), hi does not (0 = not found yet)
    for (std::int64_t n = o.granule; n <= o.n_limit; n *= 2) {
      if (fits(n)) {
        lo = n;
      } else {
        hi = n;
        break;
      }
    }
    if (lo > 0 && hi > 0)
      while (hi - lo > o.granule) {
        const std::int64_t mid = (lo + hi) / 2 / o.granule * o.granule;
        if (mid <= lo) break;
        (fits(mid) ? lo : hi) = mid;
      }
    nlohmann::json config = point_config(p, nullptr);
    config.erase("n");
    config.erase("padded_n");
    config["memory_budget_bytes"] = parse_size(o.memory_budget, "--memory-budget");
    config["granule"] = o.granule;
    nlohmann::json r = {{"kind", "maxlen"}, {"config", config}, {"max_n", lo}, {"attempts", attempts}};
    if (!stop_reason.empty()) {
      r["status"] = "error";
      r["message"] = stop_reason;
    } else if (hi == 0) {
      r["status"] = "ok";
      r["message"] = fmt::format("still fits at the search limit n = {}", o.n_limit);
    } else {
      r["status"] = lo > 0 ? "ok" : "oom";
      if (lo == 0) r["message"] = fmt::format("even n = {} does not fit", o.granule);
    }
    results.push_back(with_id(r));
    best[VariantSpec::parse(v).name] = lo;
    if (!o.out.empty()) write_report(o.out, make_report(context, results));
  }
  fmt::print("\nlongest n that fits {} ({} {}, batch {}, D {}, h {}{}):\n", o.memory_budget, o.mode, o.device, o.batch,
             o.dim, o.heads, is_attention_mode(o.mode) ? "" : fmt::format(", L {}", o.layers));
  for (const auto& v : o.variants) {
    const std::int64_t n = best[VariantSpec::parse(v).name];
    const std::string ratio = best.count("full") && best["full"] > 0 && VariantSpec::parse(v).name != "full"
                                  ? fmt::format("  ({:.2f}x full)", static_cast<double>(n) / best["full"])
                                  : "";
    fmt::print("  {:<24} {:>9}{}\n", v, n, ratio);
  }
  return kOk;
}

// ---- merge ---------------------------------------------------------------------------------------

int run_merge(const std::vector<std::string>& inputs, const std::string& out) {
  if (inputs.empty()) throw UsageError("merge: give the reports to join");
  for (std::size_t i = 0; i < inputs.size(); ++i)
    for (std::size_t j = 0; j < i; ++j) {
      std::error_code ec;
      if (inputs[i] == inputs[j] || std::filesystem::equivalent(inputs[i], inputs[j], ec))
        throw UsageError(fmt::format("merge: {} is given twice", inputs[i]));
    }
  std::vector<nlohmann::json> reports;
  std::size_t total = 0;
  for (const auto& path : inputs) {
    reports.push_back(read_report(path));
    total += reports.back()["results"].size();
  }
  const nlohmann::json merged = merge_reports(reports, inputs);
  write_report(out, merged);
  const std::size_t kept = merged["results"].size();
  fmt::print("merge: {} results from {} reports{} -> {}\n", kept, inputs.size(),
             total > kept ? fmt::format(" ({} duplicates dropped)", total - kept) : "", out);
  return kOk;
}

}  // namespace lsb
