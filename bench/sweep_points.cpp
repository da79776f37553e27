#include "bench/sweep_points.hpp"

#include <algorithm>
#include <functional>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "bench/result_fields.hpp"
#include "model/encoder.hpp"
#include "nn/optim.hpp"
#include "nn/profile.hpp"
#include "nn/random.hpp"
#include "tasks/registry.hpp"

namespace lsb::sweep_internal {

const std::vector<std::string>& sweep_modes() {
  static const std::vector<std::string> modes = {"attn-fwd", "attn-fwdbwd", "model-fwd", "train-step"};
  return modes;
}
bool is_attention_mode(const std::string& m) { return m.rfind("attn-", 0) == 0; }

TaskShape task_shape(const std::string& task) {
  if (task.empty()) return {};
  const TaskInfo& t = task_info(task);
  return {t.vocab, t.classes, t.default_length, t.pairs(), t.language_model()};
}

// The config block of a point, with the variant's parameters resolved (the module is made on the CPU
// at n_max = n for that) and the padded length; a spec that cannot be made gives the raw fields.
nlohmann::json point_config(const SweepPoint& p, std::string* why_not) {
  const VariantSpec& spec = p.variant;
  nlohmann::json c = {{"variant", spec.name},
                      {"variant_params", spec.params},
                      {"n", p.n},
                      {"batch", p.batch},
                      {"heads", p.heads},
                      {"dim", p.dim},
                      {"layers", is_attention_mode(p.mode) ? 1 : p.layers},
                      {"mode", p.mode},
                      {"device", device_name(p.device)},
                      {"precision", precision_name(p.precision)},
                      {"threads", p.threads}};
  if (!p.task.empty()) c["task"] = p.task;
  if (spec.causal) c["causal"] = true;  // only when on, so that every bidirectional id stays as it was
  if (!is_attention_mode(p.mode)) {
    const TaskShape ts = task_shape(p.task);
    c["mlp_dim"] = p.mlp_dim;
    c["vocab"] = ts.vocab;
    if (ts.language_model) c["language_model"] = true;
    else c["classes"] = ts.classes;
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

ResolvedPoint resolve(const SweepPoint& p) {
  ResolvedPoint r;
  r.config = point_config(p, &r.why_not);
  return r;
}

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
                     (c.value("precision", "fp32") == "fp32" ? ""
                                                             : fmt::format(" {}", c["precision"].get<std::string>()));
  const std::string st = r["status"].get<std::string>();
  if (st != "ok")
    return fmt::format("{}: {}: {}{}", what, st, r.value("message", ""),
                       r.contains("repro") ? fmt::format(" (rerun: {})", r["repro"].get<std::string>()) : "");
  std::string line = fmt::format("{}: {:.3f} ms, {:.0f} tok/s, {:.1f} GFLOP/s, peak {}", what,
                                 r["time_s"]["median"].get<double>() * 1e3,
                                 r["throughput"]["tokens_per_s"].get<double>(), r["throughput"]["gflops"].get<double>(),
                                 format_bytes(r["memory"]["peak_tracked_bytes"].get<std::int64_t>()));
  if (r.contains("profile")) {  // a second line: the ops by time, the largest first, down to 1%
    const auto& ops = r["profile"]["ops"];
    std::vector<std::pair<double, std::string>> by_time;
    for (const auto& [name, e] : ops.items()) by_time.emplace_back(e["seconds_per_step"].get<double>(), name);
    std::sort(by_time.rbegin(), by_time.rend());
    line += fmt::format("\n  profile, per step ({:.3f} ms over {} steps):",
                        r["profile"]["seconds_per_step"].get<double>() * 1e3, r["profile"]["steps"].get<int>());
    std::vector<std::string> parts;
    for (const auto& [seconds, name] : by_time) {
      const auto& e = ops[name];
      if (e["fraction"].get<double>() < 0.01) break;
      parts.push_back(fmt::format("{} {:.0f}% ({:.3f} ms, {:g} calls)", name, 100 * e["fraction"].get<double>(),
                                  seconds * 1e3, e["calls_per_step"].get<double>()));
    }
    line += " " + fmt::format("{}", fmt::join(parts, "; "));
  }
  return line;
}

nlohmann::json with_id(nlohmann::json res) {
  res["id"] = config_id(res["config"]);
  return res;
}

nlohmann::json skipped(const nlohmann::json& config, const std::string& why) {
  return with_id({{"kind", "sweep-point"}, {"config", config}, {"status", "skipped"}, {"message", why}});
}

// `steps` more calls of `step` under a per-op profile (nn/profile.hpp), after one that prepares it: per
// op, its time and calls per step and its share of the whole.
static nlohmann::json profile_json(const std::function<void()>& step, Device dev, int steps) {
  std::size_t marks_per_step = 0;
  {  // one step, not counted, to learn how many boundaries a step marks (CUDA: events made up front)
    profile::Collection probe(dev);
    step();
    marks_per_step = probe.marks();
    probe.finish();
  }
  profile::Collection collection(dev, marks_per_step * steps);
  for (int i = 0; i < steps; ++i) step();
  const profile::Result result = collection.finish();
  double total = 0;
  for (const auto& [name, e] : result) total += e.seconds;
  nlohmann::json ops = nlohmann::json::object();
  for (const auto& [name, e] : result)
    ops[name] = {{"seconds_per_step", e.seconds / steps},
                 {"calls_per_step", static_cast<double>(e.calls) / steps},
                 {"fraction", total > 0 ? e.seconds / total : 0.0}};
  return {{"steps", steps}, {"seconds_per_step", total / steps}, {"ops", ops}};
}

// One inference step (model-fwd) or optimiser step (train-step) of the LRA encoder, on either device.
// A step is timed from the host and ends with a device synchronisation on CUDA: it includes building
// the batch's host arrays and copying them over, as a training step does.
nlohmann::json measure_model_point(const SweepPoint& p, const nlohmann::json& config, const TimingPolicy& timing,
                                   double peak_gflops, std::uint64_t seed) {
  auto& mt = MemoryTracker::instance();
  const Device dev = p.device;
  nlohmann::json res = with_id({{"kind", "sweep-point"}, {"config", config}});
  mt.release_cached(dev);  // the reserved figure starts without an earlier point's cached blocks
  const TaskShape ts = task_shape(p.task);
  const bool train = p.mode == "train-step";
  try {
    Encoder enc({.vocab = ts.vocab, .classes = ts.classes, .max_len = p.n, .dim = p.dim, .heads = p.heads,
                 .layers = p.layers, .mlp_dim = p.mlp_dim, .pooling = "mean", .dropout = 0.0f,
                 .attention = p.variant, .pair = ts.pair, .language_model = ts.language_model, .device = dev});
    enc.init_params(seed);
    std::unique_ptr<AdamW> opt;
    if (train) opt = std::make_unique<AdamW>(enc.parameters(), AdamWConfig{});
    const std::int64_t b = p.batch, n = p.n, seqs = ts.pair ? 2 * b : b;  // b examples, seqs sequences
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(seqs * n));
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(seqs * n), 1);
    // A classifier's labels (b); a language model's next tokens (b, n).
    std::vector<int> labels(static_cast<std::size_t>(ts.language_model ? b * n : b));
    Rng rng(seed + 1);
    auto draw = [&](std::int64_t k) { return std::min<std::int64_t>(k - 1, static_cast<std::int64_t>(rng.uniform(0, 1) * k)); };
    for (auto& t : tokens) t = static_cast<std::int32_t>(1 + draw(ts.vocab - 1));  // 0 is padding
    for (auto& l : labels) l = static_cast<int>(draw(ts.language_model ? ts.vocab : ts.classes));
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
    // the head (a language model's: the output layer at every position); train-step counted as 3x forward.
    const std::int64_t pn = enc.internal_length(n);
    double flops = ts.language_model ? 2.0 * b * n * p.dim * ts.vocab
                                     : 2.0 * b * ((ts.pair ? 4 : 1) * p.dim * p.mlp_dim + p.mlp_dim * ts.classes);
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
      res["throughput"]["peak_basis"] = peak_basis(dev == Device::cuda, p.precision == Precision::bf16);
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
    if (timing.profile_steps > 0) res["profile"] = profile_json(step, dev, timing.profile_steps);
  } catch (const OutOfMemory& e) {
    res["status"] = "oom";
    res["message"] = e.what();
    res["memory"] = {{"requested_bytes", e.requested}};
    if (e.budget > 0) res["memory"]["budget_bytes"] = e.budget;
  }
  return res;
}

void set_budgets(const ByteSize& budget) {
  MemoryTracker::instance().set_budget(Device::cpu, budget.bytes());
  MemoryTracker::instance().set_budget(Device::cuda, budget.bytes());
}

}  // namespace lsb::sweep_internal
