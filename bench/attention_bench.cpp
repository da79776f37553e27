#include "bench/attention_bench.hpp"

#include <algorithm>
#include <cstdlib>
#include <cmath>

#include <fmt/format.h>

#include "attention_impls/attention.hpp"
#include "attention_impls/reference_f64.hpp"
#include "bench/device_buffers.hpp"
#include "bench/machine.hpp"
#include "bench/result_fields.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/parse.hpp"
#include "nn/random.hpp"
#include "nn/threads.hpp"
#include "bench/context.hpp"
#include "bench/sweep_points.hpp"
#include "reports/report.hpp"

namespace lsb {

ReferenceCheck check_against_reference(const VariantSpec& spec, std::int64_t D, std::int64_t h,
                                       bool with_backward, std::uint64_t seed, Device device, Precision precision) {
  const PrecisionScope scope(precision, device);
  const double tolerance_fwd = precision == Precision::bf16 ? 0x1p-5 : 1e-4;
  const double tolerance_grad = precision == Precision::bf16 ? 0x1p-5 : 1e-3;
  const std::int64_t b = 2;
  auto probe = make_attention(spec, D, h, 64);
  // A short sequence with padding; no longer than a length limit the spec sets (linformer's n_max).
  std::int64_t n = probe->padded_length(40);
  const VariantInfo& info = variant_info(spec.name);
  for (const auto& [key, value] : probe->resolved_params())
    if (info.is_length_key(key)) n = std::min(n, parse_int(value).value_or(n));
  auto host_module = n <= 64 ? std::move(probe) : make_attention(spec, D, h, n);  // built once where it can be
  host_module->init_params(seed);
  auto device_module = device == Device::cpu ? nullptr : make_attention(spec, D, h, std::max<std::int64_t>(n, 64), device);
  if (device_module) copy_param_values(*host_module, *device_module);
  Attention* a = device_module ? device_module.get() : host_module.get();
  Rng rng(seed + 7);
  std::vector<double> x(b * n * D), g(b * n * D);
  for (auto& v : x) v = rng.normal();
  for (auto& v : g) v = rng.normal();
  std::vector<std::uint8_t> mask(b * n, 1);
  for (std::int64_t t = n - 9; t < n; ++t) mask[n + t] = 0;  // second example: 9 padded tokens
  std::vector<float> xf(x.begin(), x.end()), gf(g.begin(), g.end()), y(b * n * D), dx(b * n * D);

  ReferenceCheck r;
  const RefParams P = params_f64(*host_module);
  const auto& keys = a->resolved_params();
  DeviceBuffers dev(device);
  float* y_dev = dev.on_device(y, "check y");
  a->forward(dev.on_device(xf, "check x"), dev.on_device(mask, "check mask"), b, n, y_dev, with_backward);
  dev.to_host(y_dev, y);
  const std::vector<double> yref = reference_attention(a->name(), keys, D, h, b, n, P, x, mask, {}, spec.causal);
  r.forward_rel_error = compare_to_reference(y.data(), yref).max_rel;
  r.ok = r.forward_rel_error <= tolerance_fwd;
  if (with_backward) {
    a->zero_grad();
    float* dx_dev = dev.on_device(dx, "check dx");
    a->backward(dev.on_device(gf, "check dy"), dx_dev);
    dev.to_host(dx_dev, dx);
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
      std::vector<float> grad(dir.size());
      if (device == Device::cpu)
        std::copy(p.grad.data(), p.grad.data() + p.grad.numel(), grad.begin());
      else
        cuda::copy(grad.data(), p.grad.data(), grad.size() * sizeof(float));
      for (std::size_t i = 0; i < dir.size(); ++i) analytic += grad[i] * (dir[i] = rng.normal());
    }
    auto loss_at = [&](double eps) {
      std::vector<double> xs = x;
      for (std::size_t i = 0; i < xs.size(); ++i) xs[i] += eps * vx[i];
      RefParams ps = P;
      for (auto& [name, vals] : ps)
        for (std::size_t i = 0; i < vals.size(); ++i) vals[i] += eps * vp[name][i];
      const auto ys = reference_attention(a->name(), keys, D, h, b, n, ps, xs, mask, {}, spec.causal);
      double L = 0;
      for (std::size_t i = 0; i < ys.size(); ++i) L += ys[i] * g[i];
      return L;
    };
    const double eps = 1e-5;
    const double numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    r.grad_rel_error = std::fabs(numeric - analytic) / std::max(std::fabs(numeric), 1e-6);
    r.ok = r.ok && r.grad_rel_error <= tolerance_grad;
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
  if (opt.device == Device::cuda)
    fmt::print("\nattention {} | batch {} dim {} heads {} | {} | published fp32 peak {:.0f} GFLOP/s\n", opt.mode,
               opt.batch, opt.dim, opt.heads, cuda::query(0).name, peak);
  else
    fmt::print("\nattention {} | {} | batch {} dim {} heads {} | {} threads | measured fp32 peak {:.0f} GFLOP/s{}\n",
               opt.mode, precision_name(opt.precision), opt.batch, opt.dim, opt.heads, current_threads().granted, peak,
               opt.precision == Precision::bf16 ? " (the % of peak is against it at bf16 too)" : "");
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
    // Above 100% the measured peak was too low (a busy machine), not the kernel faster than the CPU.
    const std::string pct = r.peak_pct > 100.0 ? ">100%?" : fmt::format("{:.1f}%", r.peak_pct);
    fmt::print("{:<{}} {:>7} {:>10.2f} {:>6.1f}% {:>10.0f} {:>8.1f} {:>6} {:>10} {:>10}  ok ({})\n", r.variant, w,
               n, r.median_ms, r.spread_pct, r.tokens_per_s, r.gflops, pct, format_bytes(r.peak_bytes),
               format_bytes(r.model_bytes), r.check);
  }
}

}  // namespace

void check_problem_size(std::int64_t batch, std::int64_t n, std::int64_t dim, std::int64_t heads) {
  const double activations = static_cast<double>(batch) * static_cast<double>(n) * static_cast<double>(dim);
  const double scores = static_cast<double>(batch) * static_cast<double>(heads) * static_cast<double>(n) * static_cast<double>(n);
  if (activations > 0x1p50 || scores > 0x1p60)
    throw UsageError(fmt::format("--batch {} --n {} --dim {} --heads {}: {:.3g} activations and {:.3g} attention scores "
                                 "per layer, beyond any machine's memory and the 64-bit sizes lsbench computes with",
                                 batch, n, dim, heads, activations, scores));
}

nlohmann::json attention_point_config(const AttentionPoint& pt, const Attention* module) {
  nlohmann::json c = {{"variant", pt.spec.name},
                      {"variant_params", module ? variant_params_json(module->resolved_params())
                                                : nlohmann::json(pt.spec.params)},
                      {"n", pt.n},
                      {"batch", pt.batch},
                      {"heads", pt.heads},
                      {"dim", pt.dim},
                      {"layers", 1},
                      {"mode", pt.backward ? "attn-fwdbwd" : "attn-fwd"},
                      {"device", device_name(pt.device)},
                      {"precision", precision_name(pt.precision)},
                      {"threads", pt.threads}};
  if (pt.spec.causal) c["causal"] = true;  // only when on, so that every bidirectional id stays as it was
  if (module) c["padded_n"] = module->padded_length(pt.n);
  return c;
}

nlohmann::json measure_attention_point(const AttentionPoint& pt, const ReferenceCheck& check,
                                       const TimingPolicy& timing, double peak_gflops) {
  auto& mt = MemoryTracker::instance();
  const Device dev = pt.device;
  const PrecisionScope precision(pt.precision, pt.device);
  nlohmann::json res = {{"kind", "sweep-point"}};
  auto set_config = [&](const Attention* a) {
    res["config"] = attention_point_config(pt, a);
    res["id"] = config_id(res["config"]);
  };
  try {
    mt.release_cached(dev);  // the driver's view starts without an earlier point's cached blocks
    const cuda::DriverMemory driver_before = dev == Device::cuda ? cuda::driver_memory() : cuda::DriverMemory{};
    auto a = make_attention(pt.spec, pt.dim, pt.heads, pt.n, dev);
    set_config(a.get());
    const std::int64_t pn = a->padded_length(pt.n), b = pt.batch, D = pt.dim;
    const bool bwd = pt.backward;
    const double flops = a->forward_flops(b, pn) * (bwd ? 3.0 : 1.0);
    const std::int64_t elems = b * pn * D;
    res["memory"] = {{"analytic_bytes", a->parameter_count() * 4 * 2 /* values and gradients */ +
                                            elems * 4 * (bwd ? 4 : 2) /* x, y (+ dy, dx) */ +
                                            a->analytic_bytes(b, pn, bwd)}};
    res["check"] = {{"forward_rel_error", check.forward_rel_error}};
    if (bwd) res["check"]["grad_rel_error"] = check.grad_rel_error;
    if (!check.ok) {
      res["status"] = "error";
      res["message"] = "refused to time: failed the float64 reference check (" + check.message + ")";
      return res;
    }
    a->init_params(pt.seed);
    // Inputs drawn on the host, then placed on the module's device (tracked there).
    const Shape shape{b, pn, D};
    Tensor x(shape, MemCategory::data, "input x", dev), y(shape, MemCategory::data, "output y", dev);
    Tensor mask_t({(b * pn + 3) / 4}, MemCategory::data, "padding mask", dev);
    Tensor dy, dx;
    Rng rng(pt.seed + 1);
    Tensor host({elems}, MemCategory::data, "input (host copy)");
    for (std::int64_t i = 0; i < elems; ++i) host[i] = static_cast<float>(rng.normal());
    copy_elements(host, x);
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(mask_t.numel() * 4), 1);
    for (std::int64_t bi = 0; bi < b; ++bi)
      for (std::int64_t t = pt.n; t < pn; ++t) mask[bi * pn + t] = 0;  // harness padding
    if (dev == Device::cpu)
      std::copy(mask.begin(), mask.end(), reinterpret_cast<std::uint8_t*>(mask_t.data()));
    else
      cuda::copy(mask_t.data(), mask.data(), mask.size());
    if (bwd) {
      dy = Tensor(shape, MemCategory::data, "output gradient dy", dev);
      dx = Tensor(shape, MemCategory::data, "input gradient dx", dev);
      for (std::int64_t i = 0; i < elems; ++i) host[i] = static_cast<float>(rng.normal());
      copy_elements(host, dy);
    }
    host = Tensor();
    const auto* mask_ptr = reinterpret_cast<const std::uint8_t*>(mask_t.data());
    auto step = [&] {
      a->forward(x.data(), mask_ptr, b, pn, y.data(), bwd);
      if (bwd) a->backward(dy.data(), dx.data());
    };
    step();  // first call: the module allocates what it keeps; nothing after this may allocate
    if (dev == Device::cuda) cuda::synchronize();
    const bool rss_reset = reset_peak_rss();
    mt.reset_peak(dev);
    TimeStats ts;
    if (dev == Device::cpu) {
      ts = time_it(step, timing);
    } else {
      cuda::EventTimer timer;
      ts = time_samples(
          [&] {
            timer.start();
            step();
            return timer.stop_ms() / 1e3;
          },
          timing);
    }
    const MemoryStats ms = mt.stats(dev);
    res["status"] = "ok";
    if (ts.capped) res["message"] = "stopped by the per-point time cap before the minimum count and time";
    res["time_s"] = {{"min", ts.min},   {"median", ts.median}, {"mean", ts.mean},
                     {"max", ts.max},   {"stdev", ts.stdev},   {"samples", ts.samples}};
    const double gflops = flops / ts.median / 1e9;
    res["throughput"] = {{"tokens_per_s", b * pt.n / ts.median}, {"steps_per_s", 1.0 / ts.median},
                         {"flops", flops}, {"gflops", gflops}, {"flop_convention", "cost model; fwd+bwd = 3x forward"}};
    if (peak_gflops > 0) {
      res["throughput"]["peak_fraction"] = gflops / peak_gflops;
      res["throughput"]["peak_basis"] = peak_basis(pt.device == Device::cuda, pt.precision == Precision::bf16);
    }
    const auto analytic = res["memory"]["analytic_bytes"];
    res["memory"] = tracked_memory_json(ms);
    res["memory"]["analytic_bytes"] = analytic;
    res["memory"]["peak_rss_bytes"] = peak_rss_bytes();
    res["memory"]["peak_rss_scope"] = rss_reset ? "this point" : "process so far (clear_refs not allowed)";
    // Tracked allocations during warm-up and timing (after a first call): 0 means nothing is
    // allocated per call on the hot path.
    res["memory"]["tracked_allocations_while_timing"] = ms.allocations;
    if (dev == Device::cuda) {
      // The driver's view beside the tracker's: device memory in use before the module was made
      // and after timing (cuBLAS workspaces and the CUDA context show up here only).
      const cuda::DriverMemory after = cuda::driver_memory();
      res["memory"]["driver_used_bytes_before"] = driver_before.total - driver_before.free;
      res["memory"]["driver_used_bytes_after"] = after.total - after.free;
    }
  } catch (const OutOfMemory& e) {
    if (!res.contains("config")) set_config(nullptr);  // ran out while creating the module
    res["status"] = "oom";
    res["message"] = e.what();
    res["memory"]["requested_bytes"] = e.requested;
    if (e.budget > 0) res["memory"]["budget_bytes"] = e.budget;
  }
  return res;
}

namespace {

// A table row from a point's result.
Row row_of(const nlohmann::json& res, const std::string& spec_text) {
  Row r;
  const auto& c = res.at("config");
  r.variant = spec_text;
  if (c.contains("padded_n")) {
    auto a = VariantSpec{c.at("variant").get<std::string>(), {}, {}};
    for (const auto& [k, v] : c.at("variant_params").items()) a.params[k] = v.is_string() ? v.get<std::string>() : v.dump();
    r.variant = a.str();
  }
  r.n = c.at("n").get<std::int64_t>();
  r.padded_n = c.value("padded_n", r.n);
  r.status = res.at("status").get<std::string>();
  r.message = res.value("message", "");
  const auto& m = res.value("memory", nlohmann::json::object());
  r.model_bytes = m.value("analytic_bytes", std::int64_t{0});
  if (r.status == "ok") {
    r.message = "";
    r.median_ms = res["time_s"]["median"].get<double>() * 1e3;
    const double med = res["time_s"]["median"].get<double>();
    r.spread_pct = med > 0 ? 100.0 * res["time_s"]["stdev"].get<double>() / med : 0;
    r.tokens_per_s = res["throughput"]["tokens_per_s"].get<double>();
    r.gflops = res["throughput"]["gflops"].get<double>();
    r.peak_pct = 100.0 * res["throughput"].value("peak_fraction", 0.0);
    r.peak_bytes = m.value("peak_tracked_bytes", std::int64_t{0});
    const auto& ck = res.at("check");
    r.check = fmt::format("vs float64: output {:.1e}", ck.at("forward_rel_error").get<double>());
    if (ck.contains("grad_rel_error"))
      r.check += fmt::format(", gradient {:.1e}", ck.at("grad_rel_error").get<double>());
  }
  return r;
}

}  // namespace

int run_attention_bench(const AttentionBenchOptions& opt) {
  if (opt.mode != "fwd" && opt.mode != "fwdbwd")
    throw UsageError(fmt::format("--mode {}: expected fwd or fwdbwd", opt.mode));
  require_precision(opt.precision, opt.device);
  if (opt.device == Device::cuda) cuda::require_device();
  // The points of a sweep with one batch, width and head count: the same ids, checks, measurements and
  // lines as `sweep --mode attn-fwd` (sweep_points checks every axis and spec before anything runs).
  SweepOptions s;
  s.variants = opt.variants, s.variants_option = "--variant", s.lengths = opt.lengths, s.batches = {opt.batch}, s.dims = {opt.dim};
  s.heads = {opt.heads}, s.modes = {opt.mode == "fwd" ? "attn-fwd" : "attn-fwdbwd"}, s.devices = {opt.device};
  s.precisions = {opt.precision}, s.threads = {opt.threads}, s.memory_budget = opt.memory_budget;
  s.timing = opt.timing, s.seed = opt.seed, s.causal = {opt.causal};
  const std::vector<SweepPoint> points = sweep_points(s);
  sweep_internal::set_budgets(opt.memory_budget);

  const ThreadGrant threads = use_threads(opt.threads);
  sweep_internal::PointRunner runner(opt.timing, opt.seed);
  // GFLOP/s against the CPU's measured FMA peak, or the GPU's published peak for the precision. The CPU's
  // measured peak belongs in the context only when it is what GFLOP/s are compared with; the GPU's
  // published peak is in context.gpu.peak_tflops.
  const bool cpu = opt.device == Device::cpu;
  const double peak = runner.peak(opt.device, opt.precision);
  auto context = make_context({opt.command_line, threads, cpu ? peak : 0.0,
                               cpu ? runner.cpu_peak_measurement().to_json() : nlohmann::json()});
  nlohmann::json results = nlohmann::json::array();
  std::vector<Row> rows;
  // Unlike a sweep's, a bench's points are each asked for by name: one that cannot be made (a length past
  // linformer's n_max) is a usage error before anything is measured, not a skipped point.
  std::vector<sweep_internal::ResolvedPoint> resolved;
  for (const auto& p : points) {
    resolved.push_back(sweep_internal::resolve(p));
    if (!resolved.back().why_not.empty())
      throw UsageError(fmt::format("--variant {} --n {}: {}", p.variant.text, p.n, resolved.back().why_not));
  }
  for (std::size_t i = 0; i < points.size(); ++i) {
    const nlohmann::json res = runner.run(points[i], resolved[i]);
    if (res["status"] == "skipped")  // e.g. a length past linformer's n_max; the points before are in the report
      throw UsageError(fmt::format("--variant {} --n {}: {}", points[i].variant.text, points[i].n,
                                   res.value("message", "cannot run")));
    results.push_back(res);
    rows.push_back(row_of(res, points[i].variant.text));
    if (!opt.json_path.empty()) write_report(opt.json_path, make_report(context, results));  // after every point
    fmt::print("[{}/{}] {}\n", i + 1, points.size(), sweep_internal::point_line(res));
  }
  print_table(rows, opt, peak);
  if (!opt.json_path.empty()) fmt::print("\nreport: {}\n", opt.json_path);
  auto count = [&](const char* status) {
    return std::count_if(rows.begin(), rows.end(), [&](const Row& r) { return r.status == status; });
  };
  if (count("error") > 0) return kInternal;  // a variant failed its reference check (it was not timed)
  if (const auto oom = count("oom"); oom > 0) {
    fmt::print(stderr, "lsbench: {} of {} points did not fit the memory budget (status oom in the report)\n", oom,
               rows.size());
    return kOutOfMemory;
  }
  return kOk;
}

}  // namespace lsb
