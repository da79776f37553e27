// The sweep's axes: the comma lists of the command line, shards, and the cartesian product of points
// with the command that reruns each one.
#include "bench/sweep_axes.hpp"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "bench/sweep_points.hpp"
#include "nn/errors.hpp"
#include "nn/parse.hpp"

namespace lsb {

// ---- parsing -----------------------------------------------------------------------------------

std::vector<std::string> split_variant_list(const std::string& text, const std::string& option) {
  if (!option.empty() && text.find_first_not_of(" \t") == std::string::npos)
    throw UsageError(fmt::format("{} '{}': an empty list", option, text));
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
    else if (!option.empty())
      throw UsageError(fmt::format("{} '{}': an empty item (two commas, or one at an end)", option, text));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (!option.empty())
    for (std::size_t i = 0; i < out.size(); ++i)
      if (std::find(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(i), out[i]) != out.begin() + static_cast<std::ptrdiff_t>(i))
        throw UsageError(fmt::format("{} '{}': '{}' is listed twice", option, text, out[i]));
  return out;
}

namespace {

std::int64_t parse_positive(const std::string& text, const std::string& option) {
  const std::optional<std::int64_t> v = parse_int(text);
  if (!v || *v <= 0) throw UsageError(fmt::format("{}: '{}' is not a positive integer", option, text));
  return *v;
}

}  // namespace

std::vector<std::int64_t> parse_length_list(const std::string& text, const std::string& option) {
  std::vector<std::int64_t> out;
  const auto c1 = text.find(':');
  if (c1 == std::string::npos) {
    for (const auto& piece : split_variant_list(text, option)) out.push_back(parse_positive(piece, option));
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
  // A bounded number of points, and no overflow on the way: the next value is made only when it fits.
  constexpr std::size_t kMaxPoints = 4096;
  for (std::int64_t n = start;;) {
    out.push_back(n);
    if (out.size() > kMaxPoints)
      throw UsageError(fmt::format("{} {}: more than {} values", option, text, kMaxPoints));
    if (kind == 'x' ? n > stop / step : n > stop - step) break;  // the next one would pass STOP
    n = kind == 'x' ? n * step : n + step;
  }
  return out;
}

std::pair<int, int> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  if (slash == std::string::npos) throw UsageError(fmt::format("--shard {}: expected i/N, e.g. 0/4", text));
  const auto count = parse_positive(text.substr(slash + 1), "--shard");
  const std::int64_t index = parse_int(text.substr(0, slash)).value_or(-1);
  if (index < 0 || index >= count)
    throw UsageError(fmt::format("--shard {}: expected i/N with 0 <= i < N", text));
  return {static_cast<int>(index), static_cast<int>(count)};
}

bool shard_from_slurm(int& index, int& count) {
  const char* id = std::getenv("SLURM_ARRAY_TASK_ID");
  const char* n = std::getenv("SLURM_ARRAY_TASK_COUNT");
  if (!id || !n) return false;
  const char* lo = std::getenv("SLURM_ARRAY_TASK_MIN");
  // Strict integers, blamed on the variable that holds them (not on --shard).
  auto env_int = [](const char* name, const char* text) {
    const std::optional<std::int64_t> v = parse_int(text);
    if (!v || *v < 0) throw UsageError(fmt::format("{}='{}': not a non-negative integer", name, text));
    return *v;
  };
  const std::int64_t task = env_int("SLURM_ARRAY_TASK_ID", id), tasks = env_int("SLURM_ARRAY_TASK_COUNT", n);
  const std::int64_t first = lo ? env_int("SLURM_ARRAY_TASK_MIN", lo) : 0;
  if (tasks < 1 || task < first || task - first >= tasks)
    throw UsageError(fmt::format("SLURM_ARRAY_TASK_ID={} SLURM_ARRAY_TASK_COUNT={}{}: not a task of the array", id, n,
                                 lo ? fmt::format(" SLURM_ARRAY_TASK_MIN={}", lo) : ""));
  index = static_cast<int>(task - first);
  count = static_cast<int>(tasks);
  return true;
}

// ---- points ------------------------------------------------------------------------------------

namespace sweep_internal {

std::vector<VariantSpec> check_axes(const SweepOptions& o) {
  for (const auto& m : o.modes)
    if (std::find(sweep_modes().begin(), sweep_modes().end(), m) == sweep_modes().end())
      throw UsageError(fmt::format("--mode {}: expected attn-fwd, attn-fwdbwd, model-fwd or train-step", m));
  if (task_shape(o.task).language_model &&
      std::any_of(o.modes.begin(), o.modes.end(), [](const std::string& m) { return !is_attention_mode(m); }) &&
      std::find(o.causal.begin(), o.causal.end(), false) != o.causal.end())
    throw UsageError(fmt::format("--task {}: a language model's attention is causal; give --causal (on)", o.task));
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
  std::vector<VariantSpec> variants = o.variants.empty() ? VariantSpec::parse_all(default_sweep_variants()) : o.variants;
  // A spec no point of the sweep can build (ls:w=0,r=0, an unknown key, lsra at no usable width) is a
  // usage error now, not one skipped point per length: each spec is built once per (dim, heads) at the
  // shortest length. A spec that builds for some widths and not others keeps its skipped points, and
  // length limits (linformer's n_max) are still found per point.
  for (const auto& given : variants) {
    variant_info(given.name);  // unknown: the list of variants
    std::string why;
    bool builds = false;
    for (const bool causal : o.causal)
      for (auto d : o.dims)
        for (auto h : o.heads) try {
          VariantSpec v = given;
          v.causal = causal;
          make_attention(v, d, h, o.lengths.front());
          builds = true;
        } catch (const UsageError& e) {
          if (why.empty()) why = e.what();
        } catch (const OutOfMemory&) {
          builds = true;  // a question of the budget, answered per point
        }
    if (!builds) throw UsageError(fmt::format("{} {}: no point can use it: {}", o.variants_option, given.text, why));
  }
  return variants;
}

}  // namespace sweep_internal

using namespace sweep_internal;

std::string SweepPoint::command() const {
  std::string cmd = fmt::format("lsbench sweep --variants {} --n {} --batch {} --dim {} --heads {}", variant.text, n,
                                batch, dim, heads);
  if (!is_attention_mode(mode)) cmd += fmt::format(" --layers {} --mlp-dim {}", layers, mlp_dim);
  if (!task.empty()) cmd += " --task " + task;
  cmd += fmt::format(" --mode {} --device {}", mode, device_name(device));
  if (variant.causal) cmd += " --causal on";
  if (precision != Precision::fp32) cmd += fmt::format(" --precision {}", precision_name(precision));
  if (threads > 0) cmd += fmt::format(" --threads {}", threads);
  if (seed != SweepOptions{}.seed) cmd += fmt::format(" --seed {}", seed);
  if (!memory_budget.empty()) cmd += " --memory-budget " + memory_budget.text();
  return cmd;
}

std::vector<SweepPoint> sweep_points(const SweepOptions& o) {
  const std::vector<VariantSpec> variants = check_axes(o);
  std::vector<SweepPoint> pts;
  for (const auto& mode : o.modes)
    for (const Device device : o.devices)
      for (const Precision precision : o.precisions)
        for (int threads : o.threads)
          for (const bool causal : o.causal)
            for (VariantSpec v : variants)
            for (auto b : o.batches)
              for (auto d : o.dims)
                for (auto h : o.heads)
                  for (auto l : is_attention_mode(mode) ? std::vector<std::int64_t>{1} : o.layers)
                    for (auto n : o.lengths) {
                      v.causal = causal;
                      pts.push_back({v, n, b, d, h, l, o.mlp_dim > 0 ? o.mlp_dim : 2 * d, mode, o.task, device,
                                     threads, precision, o.seed, o.memory_budget});
                    }
  return pts;
}

}  // namespace lsb
