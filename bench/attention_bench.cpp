#include "bench/attention_bench.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "attention_impls/attention.hpp"
#include "attention_impls/reference_f64.hpp"
#include "bench/machine.hpp"
#include "bench/result_fields.hpp"
#include "nn/errors.hpp"
#include "nn/random.hpp"
#include "reports/report.hpp"

namespace lsb {

ReferenceCheck check_against_reference(const std::string& spec_text, std::int64_t D, std::int64_t h,
                                       bool with_backward, std::uint64_t seed) {
  const VariantSpec spec = VariantSpec::parse(spec_text);
  const std::int64_t b = 2;
  auto probe = make_attention(spec, D, h, 64);
  const std::int64_t n = probe->padded_length(40);
  auto a = make_attention(spec, D, h, std::max<std::int64_t>(n, 64));
  a->init_params(seed);
  Rng rng(seed + 7);
  std::vector<double> x(b * n * D), g(b * n * D);
  for (auto& v : x) v = rng.normal();
  for (auto& v : g) v = rng.normal();
  std::vector<std::uint8_t> mask(b * n, 1);
  for (std::int64_t t = n - 9; t < n; ++t) mask[n + t] = 0;  // second example: 9 padded tokens
  std::vector<float> xf(x.begin(), x.end()), gf(g.begin(), g.end()), y(b * n * D), dx(b * n * D);

  ReferenceCheck r;
  const RefParams P = params_f64(*a);
  const auto& keys = a->resolved_params();
  a->forward(xf.data(), mask.data(), b, n, y.data(), with_backward);
  const std::vector<double> yref = reference_attention(a->name(), keys, D, h, b, n, P, x, mask);
  r.forward_rel_error = compare_to_reference(y.data(), yref).max_rel;
  r.ok = r.forward_rel_error <= 1e-4;
  if (with_backward) {
    a->zero_grad();
    a->backward(gf.data(), dx.data());
    // Directional derivative along random directions of the input and of every parameter at once,
    // against central differences of the float64 reference.
    std::vector<double> vx(x.size());
    for (auto& v : vx) v = rng.normal();
    RefParams vp;
    double analytic = 0;
    for (std::size_t i = 0; i < x.size(); ++i) analytic += dx[i] * vx[i];
    for (auto& p : a->params()) {
      auto& dir = vp[p.name];
      dir.resize(p.value.numel());
      for (std::size_t i = 0; i < dir.size(); ++i) analytic += p.grad[i] * (dir[i] = rng.normal());
    }
    auto loss_at = [&](double eps) {
      std::vector<double> xs = x;
      for (std::size_t i = 0; i < xs.size(); ++i) xs[i] += eps * vx[i];
      RefParams ps = P;
      for (auto& [name, vals] : ps)
        for (std::size_t i = 0; i < vals.size(); ++i) vals[i] += eps * vp[name][i];
      const auto ys = reference_attention(a->name(), keys, D, h, b, n, ps, xs, mask);
      double L = 0;
      for (std::size_t i = 0; i < ys.size(); ++i) L += ys[i] * g[i];
      return L;
    };
    const double eps = 1e-5;
    const double numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    r.grad_rel_error = std::fabs(numeric - analytic) / std::max(std::fabs(numeric), 1e-6);
    r.ok = r.ok && r.grad_rel_error <= 1e-3;
  }
  r.message = fmt::format("vs float64: output {:.1e}{}", r.forward_rel_error,
                          with_backward ? fmt::format(", gradient {:.1e}", r.grad_rel_error) : "");
  return r;
}

namespace {

struct Row {
  std::string variant, status, check, message;
  std::int64_t n = 0, padded_n = 0;
  double median_ms = 0, spread_pct = 0, tokens_per_s = 0, gflops = 0, peak_pct = 0;
  std::int64_t peak_bytes = 0, model_bytes = 0;
};

void print_table(const std::vector<Row>& rows, const AttentionBenchOptions& opt, double peak) {
  fmt::print("\nattention {} | batch {} dim {} heads {} | {} threads | measured fp32 peak {:.0f} GFLOP/s\n", opt.mode,
             opt.batch, opt.dim, opt.heads, omp_get_max_threads(), peak);
  fmt::print("GFLOP/s from the cost model (fwd+bwd counted as 3x forward); spread = stdev / median;\n"
             "model mem = analytic bytes of parameters, inputs and the variant's buffer plan.\n\n");
  std::size_t w = 7;
  for (const auto& r : rows) w = std::max(w, r.variant.size());
  fmt::print("{:<{}} {:>7} {:>10} {:>7} {:>10} {:>8} {:>6} {:>10} {:>10}  {}\n", "variant", w, "n", "median ms",
             "spread", "tokens/s", "GFLOP/s", "%peak", "peak mem", "model mem", "status");
  for (const auto& r : rows) {
    const std::string n = r.padded_n != r.n ? fmt::format("{}>{}", r.n, r.padded_n) : std::to_string(r.n);
    if (r.status != "ok") {
      fmt::print("{:<{}} {:>7} {:>10} {:>7} {:>10} {:>8} {:>6} {:>10} {:>10}  {}\n", r.variant, w, n, "-", "-", "-",
                 "-", "-", "-", format_bytes(r.model_bytes), r.status + ": " + r.message);
      continue;
    }
    fmt::print("{:<{}} {:>7} {:>10.2f} {:>6.1f}% {:>10.0f} {:>8.1f} {:>5.1f}% {:>10} {:>10}  ok ({})\n", r.variant, w,
               n, r.median_ms, r.spread_pct, r.tokens_per_s, r.gflops, r.peak_pct, format_bytes(r.peak_bytes),
               format_bytes(r.model_bytes), r.check);
  }
}

}  // namespace

int run_attention_bench(const AttentionBenchOptions& opt) {
  if (opt.mode != "fwd" && opt.mode != "fwdbwd")
    throw UsageError(fmt::format("--mode {}: expected fwd or fwdbwd", opt.mode));
  if (opt.batch <= 0) throw UsageError(fmt::format("--batch {}: must be positive", opt.batch));
  for (auto n : opt.lengths)
    if (n <= 0) throw UsageError(fmt::format("--n {}: must be positive", n));
  if (opt.threads > 0) omp_set_num_threads(opt.threads);
  // Validate every spec before measuring anything.
  for (const auto& v : opt.variants) make_attention(VariantSpec::parse(v), opt.dim, opt.heads, opt.lengths.front());
  auto& mt = MemoryTracker::instance();
  if (!opt.memory_budget.empty()) mt.set_budget(Device::cpu, parse_size(opt.memory_budget, "--memory-budget"));

  const bool bwd = opt.mode == "fwdbwd";
  const double peak = measure_peak_gflops(omp_get_max_threads());
  nlohmann::json results = nlohmann::json::array();
  std::vector<Row> rows;
  int exit_code = kOk;
  auto context = make_context({opt.command_line, omp_get_max_threads(), peak});
  auto save = [&] {
    if (!opt.json_path.empty()) write_report(opt.json_path, make_report(context, results));
  };

  for (const auto& vtext : opt.variants) {
    const VariantSpec spec = VariantSpec::parse(vtext);
    const ReferenceCheck check = check_against_reference(vtext, opt.dim, opt.heads, bwd, opt.seed);
    for (const std::int64_t n : opt.lengths) {
      Row row;
      row.n = n;
      nlohmann::json res;
      nlohmann::json config;
      try {
        auto a = make_attention(spec, opt.dim, opt.heads, n);
        row.variant = a->spec_string();
        const std::int64_t pn = a->padded_length(n);
        row.padded_n = pn;
        config = {{"variant", a->name()}, {"variant_params", variant_params_json(a->resolved_params())},
                  {"n", n},               {"padded_n", pn},
                  {"batch", opt.batch},   {"heads", opt.heads},        {"dim", opt.dim}, {"layers", 1},
                  {"mode", bwd ? "attn-fwdbwd" : "attn-fwd"},          {"device", "cpu"}, {"precision", "fp32"},
                  {"threads", omp_get_max_threads()}};
        res = {{"id", config_id(config)}, {"kind", "sweep-point"}, {"config", config}};
        const double flops = a->forward_flops(opt.batch, pn) * (bwd ? 3.0 : 1.0);
        const std::int64_t elems = opt.batch * pn * opt.dim;
        const std::int64_t param_bytes = a->parameter_count() * 4;
        row.model_bytes = param_bytes * 2 /* values and gradients, allocated with the module */ +
                          elems * 4 * (bwd ? 4 : 2) /* x, y (+ dy, dx) */ + a->analytic_bytes(opt.batch, pn, bwd);
        res["memory"] = {{"analytic_bytes", row.model_bytes}};
        res["check"] = {{"forward_rel_error", check.forward_rel_error}};
        if (bwd) res["check"]["grad_rel_error"] = check.grad_rel_error;
        if (!check.ok) {
          row.status = "error";
          res["status"] = "error";
          row.message = "refused to time: failed the float64 reference check (" + check.message + ")";
          res["message"] = row.message;
          exit_code = kInternal;
        } else {
          a->init_params(opt.seed);
          Tensor x({opt.batch, pn, opt.dim}, MemCategory::data, "input x");
          Tensor y({opt.batch, pn, opt.dim}, MemCategory::data, "output y");
          Tensor dy, dx;
          Rng rng(opt.seed + 1);
          for (std::int64_t i = 0; i < elems; ++i) x[i] = static_cast<float>(rng.normal());
          std::vector<std::uint8_t> mask(opt.batch * pn, 1);
          for (std::int64_t bi = 0; bi < opt.batch; ++bi)
            for (std::int64_t t = n; t < pn; ++t) mask[bi * pn + t] = 0;  // harness padding
          if (bwd) {
            dy = Tensor({opt.batch, pn, opt.dim}, MemCategory::data, "output gradient dy");
            dx = Tensor({opt.batch, pn, opt.dim}, MemCategory::data, "input gradient dx");
            for (std::int64_t i = 0; i < elems; ++i) dy[i] = static_cast<float>(rng.normal());
          }
          auto step = [&] {
            a->forward(x.data(), mask.data(), opt.batch, pn, y.data(), bwd);
            if (bwd) a->backward(dy.data(), dx.data());
          };
          step();  // first call: the module allocates what it keeps; nothing after this may allocate
          const bool rss_reset = reset_peak_rss();
          mt.reset_peak(Device::cpu);
          const TimeStats ts = time_it(step, opt.timing);
          const MemoryStats ms = mt.stats(Device::cpu);
          row.status = "ok";
          row.check = check.message;
          row.median_ms = ts.median * 1e3;
          row.spread_pct = ts.median > 0 ? 100.0 * ts.stdev / ts.median : 0;
          row.tokens_per_s = opt.batch * n / ts.median;
          row.gflops = flops / ts.median / 1e9;
          row.peak_pct = peak > 0 ? 100.0 * row.gflops / peak : 0;
          row.peak_bytes = ms.peak;
          res["status"] = "ok";
          if (ts.capped) res["message"] = "stopped by the per-point time cap before the minimum count and time";
          res["time_s"] = {{"min", ts.min},   {"median", ts.median}, {"mean", ts.mean},
                           {"max", ts.max},   {"stdev", ts.stdev},   {"samples", ts.samples}};
          res["throughput"] = {{"tokens_per_s", row.tokens_per_s}, {"gflops", row.gflops},
                               {"flop_convention", "cost model; fwd+bwd = 3x forward"}};
          if (peak > 0) res["throughput"]["peak_fraction"] = row.gflops / peak;
          res["memory"] = tracked_memory_json(ms);
          res["memory"]["peak_rss_bytes"] = peak_rss_bytes();
          res["memory"]["peak_rss_scope"] = rss_reset ? "this point" : "process so far (clear_refs not allowed)";
          // Tracked allocations during warm-up and timing (after a first call): 0 means nothing
          // is allocated per call on the hot path.
          res["memory"]["tracked_allocations_while_timing"] = ms.allocations;
        }
      } catch (const OutOfMemory& e) {
        row.status = "oom";
        res["status"] = "oom";
        res["message"] = row.message = e.what();
        res["memory"]["requested_bytes"] = e.requested;
        if (row.variant.empty()) row.variant = vtext;
        if (config.is_null()) {  // ran out while creating the module: record what was asked for
          config = {{"variant", spec.name}, {"variant_params", spec.params}, {"n", n}, {"batch", opt.batch},
                    {"heads", opt.heads}, {"dim", opt.dim}, {"mode", bwd ? "attn-fwdbwd" : "attn-fwd"},
                    {"device", "cpu"}, {"precision", "fp32"}, {"threads", omp_get_max_threads()}};
          res["id"] = config_id(config);
          res["kind"] = "sweep-point";
          res["config"] = config;
        }
      }
      if (res.contains("config")) results.push_back(res);
      rows.push_back(row);
      save();  // after every point: an interrupted command keeps what it finished
    }
  }
  print_table(rows, opt, peak);
  if (!opt.json_path.empty()) fmt::print("\nreport: {}\n", opt.json_path);
  const auto oom = std::count_if(rows.begin(), rows.end(), [](const Row& r) { return r.status == "oom"; });
  if (oom > 0 && exit_code == kOk) {
    fmt::print(stderr, "lsbench: {} of {} points did not fit the memory budget (status oom in the report)\n", oom,
               rows.size());
    exit_code = kOutOfMemory;
  }
  return exit_code;
}

}  // namespace lsb
