// `lsbench maxlen`: the longest sequence that fits a memory budget, per variant.

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "bench/context.hpp"
#include "bench/sweep.hpp"
#include "bench/sweep_points.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/threads.hpp"
#include "reports/report.hpp"

namespace lsb {

using namespace sweep_internal;

int run_maxlen(const MaxlenOptions& o) {
  const OutputLock report_lock(o.out);
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
  so.causal = {o.causal};
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
  nlohmann::json context = make_context({o.command_line, current_threads(), 0.0});
  nlohmann::json results = nlohmann::json::array();
  std::map<std::string, std::int64_t> best;
  for (const auto& v : o.variants) {
    SweepPoint p{v, o.granule, o.batch, o.dim, o.heads, o.layers, o.mlp_dim > 0 ? o.mlp_dim : 2 * o.dim,
                 o.mode, o.task, o.device, o.threads, o.precision, o.seed, o.memory_budget};
    nlohmann::json attempts = nlohmann::json::array();
    std::string stop_reason;
    auto fits = [&](std::int64_t n) {
      p.n = n;
      const nlohmann::json r = runner.run(p);
      const std::string st = r["status"].get<std::string>();
      attempts.push_back({{"n", n}, {"status", st}, {"repro", r["repro"]}});
      fmt::print("maxlen {} n={}: {}\n", v.text, n, st == "ok" ? "fits" : st + ": " + r.value("message", ""));
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
    config["memory_budget_bytes"] = o.memory_budget.bytes();
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
    // The maxlen command for this variant alone (its result's id), beside the sweep command of each attempt.
    r["repro"] = fmt::format("lsbench maxlen --variant {} --mode {}{} --device {}{} --batch {} --dim {} --heads {}{}{}{} "
                             "--granule {} --limit {}{}{} --memory-budget {}",
                             v.text, o.mode, o.causal ? " --causal" : "", device_name(o.device),
                             o.precision == Precision::fp32 ? "" : " --precision " + std::string(precision_name(o.precision)),
                             o.batch, o.dim, o.heads, is_attention_mode(o.mode) ? "" : fmt::format(" --layers {}", o.layers),
                             is_attention_mode(o.mode) || o.mlp_dim <= 0 ? "" : fmt::format(" --mlp-dim {}", o.mlp_dim),
                             o.task.empty() ? "" : " --task " + o.task, o.granule, o.n_limit,
                             o.threads > 0 ? fmt::format(" --threads {}", o.threads) : "",
                             o.seed != MaxlenOptions{}.seed ? fmt::format(" --seed {}", o.seed) : "",
                             o.memory_budget.text());
    results.push_back(with_id(r));
    best[v.name] = lo;
    if (!o.out.empty()) write_report(o.out, make_report(context, results));
  }
  fmt::print("\nlongest n that fits {} ({} {}, batch {}, D {}, h {}{}):\n", o.memory_budget.text(), o.mode,
             device_name(o.device), o.batch, o.dim, o.heads,
             is_attention_mode(o.mode) ? "" : fmt::format(", L {}, MLP {}", o.layers, o.mlp_dim > 0 ? o.mlp_dim : 2 * o.dim));
  for (const auto& v : o.variants) {
    const std::int64_t n = best[v.name];
    const std::string& base = baseline_variant().name;
    const std::string ratio = best.count(base) && best[base] > 0 && v.name != base
                                  ? fmt::format("  ({:.2f}x {})", static_cast<double>(n) / best[base], base)
                                  : "";
    fmt::print("  {:<24} {:>9}{}\n", v.text, n, ratio);
  }
  return kOk;
}

}  // namespace lsb
