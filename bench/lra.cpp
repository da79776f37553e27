#include "bench/lra.hpp"

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "bench/machine.hpp"
#include "bench/result_fields.hpp"
#include "bench/sweep.hpp"
#include "bench/train.hpp"
#include "nn/cuda/device.hpp"
#include "nn/errors.hpp"
#include "nn/matmul.hpp"
#include "nn/files.hpp"
#include "nn/memory.hpp"
#include "nn/threads.hpp"
#include "reports/render.hpp"
#include "bench/context.hpp"
#include "reports/report.hpp"
#include "reports/text.hpp"
#include "tasks/registry.hpp"

namespace lsb {
namespace {
namespace fs = std::filesystem;

// A finished run of the same task, preset and variant (every parameter the spec names equal).
bool same_run(const nlohmann::json& c, const std::string& task, const std::string& preset, const LraOptions& o,
              const VariantSpec& spec) {
  if (c.value("task", "") != task || c.value("preset", "") != preset || c.value("variant", "") != spec.name ||
      c.value("device", "cpu") != device_name(o.device) || c.value("precision", "fp32") != precision_name(o.precision))
    return false;
  const auto params = c.value("variant_params", nlohmann::json::object());
  for (const auto& [k, v] : spec.params)
    if (!params.contains(k) || (params[k].is_string() ? params[k].get<std::string>() : params[k].dump()) != v)
      return false;
  return true;
}

// The result of a run that produced none (data missing, out of memory before the first evaluation).
nlohmann::json stub_result(const std::string& task, const std::string& preset, const LraOptions& o,
                           const VariantSpec& spec, const std::map<std::string, std::string>& resolved,
                           const std::string& status, const std::string& message) {
  nlohmann::json r = {{"kind", "train-run"},
                      {"config", {{"task", task}, {"preset", preset}, {"variant", spec.name},
                                  {"variant_params", variant_params_json(resolved)}, {"mode", "train"},
                                  {"device", device_name(o.device)}, {"precision", precision_name(o.precision)}}},
                      {"status", status},
                      {"message", message}};
  r["id"] = config_id(r["config"]);
  return r;
}

// The suite's preset as a task has it: a language model's hours-long recipe is lm-small
// (../shared/spec/lm.md "Presets"), its smoke recipe smoke.
std::string task_preset(const TaskInfo& info, const std::string& suite_preset) {
  return info.language_model() && suite_preset == "lra-small" ? "lm-small" : suite_preset;
}

}  // namespace

std::vector<VariantSpec> lra_default_variants(const std::string&) {
  return VariantSpec::parse_all(default_lra_variants());  // ../shared/spec/lra.md, "Variant defaults in presets" (every preset)
}

int run_lra(const LraOptions& given) {
  LraOptions o = given;
  if (o.preset != "smoke" && o.preset != "lra-small")
    throw UsageError(fmt::format("--preset {}: expected smoke or lra-small", o.preset));
  if (o.data_dir.empty()) throw UsageError("--data-dir: required (data is generated or extracted there)");
  if (o.out.empty()) throw UsageError("--out: required (the suite's report)");
  const OutputLock report_lock(o.out);
  if (o.tasks.empty()) o.tasks = lra_task_names();
  for (const auto& t : o.tasks) task_info(t, "--tasks");  // names the unknown task
  const Device dev = o.device;
  require_precision(o.precision, dev);
  if (dev == Device::cuda) cuda::require_device();
  if (o.variants.empty()) o.variants = lra_default_variants(o.preset);
  const std::vector<VariantSpec>& specs = o.variants;
  std::vector<std::map<std::string, std::string>> resolved;  // defaults filled in, for runs that produce no result
  // Bad specs fail here. With language models only, a variant's causal form (whose keys include ls's l).
  const bool decoders_only = std::all_of(o.tasks.begin(), o.tasks.end(),
                                         [](const std::string& t) { return task_info(t).language_model(); });
  for (VariantSpec spec : specs) {
    spec.causal = decoders_only && find_variant(spec.name)->causal;
    resolved.push_back(make_attention(spec, 32, 2, 1024)->resolved_params());
  }
  const bool smoke = o.preset == "smoke";
  // Default budgets: smoke 4 GiB (so full attention on Path-X is an oom, as in CI); lra-small on the CPU
  // 80% of the machine's memory, so a point that cannot fit is recorded as oom instead of the process
  // being killed (on the GPU the driver's refusal is recorded as oom without one).
  if (o.memory_budget.empty() && (smoke || dev == Device::cpu))
    o.memory_budget = smoke ? ByteSize("4GiB")
                            : ByteSize::of_bytes(static_cast<std::int64_t>(0.8 * static_cast<double>(physical_memory_bytes())));
  const ThreadGrant threads = use_threads(o.threads);
  fs::create_directories(o.data_dir);
  const std::string summary_path = o.summary.empty() ? o.out + ".md" : o.summary;
  const nlohmann::json context = make_context({.command_line = o.command_line, .threads = threads});

  // Finished results of an earlier run of this command.
  std::vector<nlohmann::json> earlier;
  if (o.resume && fs::exists(o.out)) {
    const nlohmann::json old = read_report(o.out);
    require_result_kinds(old, o.out, {"train-run", "sweep-point"}, "lra --resume");
    earlier.assign(old["results"].begin(), old["results"].end());
  }
  nlohmann::json efficiency = nlohmann::json::array();
  std::vector<nlohmann::json> runs;  // one per task x variant, in plan order (null: not yet run)
  nlohmann::json report;  // as last written
  auto save = [&] {
    nlohmann::json all = efficiency;
    for (const auto& r : runs)
      if (!r.is_null()) all.push_back(r);
    report = make_report(context, all);
    write_report(o.out, report);
  };

  // 1. Efficiency in the shape of LRA Table 2: train steps/s and peak memory of the preset's model on
  // byte-level text over lengths (its own resumable sweep report beside the suite's).
  int code = kOk;
  if (o.efficiency) {
    SweepOptions s;
    s.variants = o.variants;
    s.lengths = !o.efficiency_lengths.empty() ? o.efficiency_lengths
                : smoke                       ? std::vector<std::int64_t>{1024, 2048}
                                              : std::vector<std::int64_t>{1024, 2048, 3072, 4096, 8192};
    s.batches = {o.efficiency_batch > 0 ? o.efficiency_batch : smoke ? 4 : 32};
    TrainOptions model;
    model.task = lra_efficiency_task().name, model.preset = o.preset;
    apply_train_preset(model);
    s.dims = {model.dim}, s.heads = {model.heads}, s.layers = {model.layers}, s.mlp_dim = model.mlp_dim;
    s.modes = {"train-step"};
    s.devices = {o.device};
    s.precisions = {o.precision};
    s.task = model.task;
    s.memory_budget = o.memory_budget;
    if (smoke) s.timing.warmup = 1, s.timing.min_reps = 2, s.timing.min_time_s = 0;
    s.out = o.out + ".efficiency.json";
    s.resume = o.resume;
    s.progress = o.progress;
    s.command_line = o.command_line;
    fmt::print("lra: efficiency (LRA Table 2 shape): train-step on the {} task, batch {}, n = {}\n", s.task,
               s.batches.front(), fmt::join(s.lengths, ", "));
    std::fflush(stdout);
    const int sc = run_sweep(s);
    if (sc == kInternal) code = kInternal;
    efficiency = read_report(s.out)["results"];
  }
  // The sweep set the budget for its points; the training runs get the same one.
  MemoryTracker::instance().set_budget(dev, o.memory_budget.bytes());

  // 2. Training runs, task by task (each task's data loaded once for all its variants).
  int oom = 0, failed = 0, diverged = 0, skipped = 0;
  for (const auto& task : o.tasks) {
    const TaskInfo& info = task_info(task);
    const bool lm = info.language_model();
    const std::string preset = task_preset(info, o.preset);
    std::optional<Prepared> prepared;
    std::optional<TaskData> data;
    std::string data_error;
    for (std::size_t vi = 0; vi < specs.size(); ++vi) {
      const VariantSpec& spec = specs[vi];
      runs.emplace_back();
      nlohmann::json& slot = runs.back();
      for (const auto& r : earlier)
        if (r.value("kind", "") == "train-run" && same_run(r["config"], task, preset, o, spec) &&
            (r["status"] == "ok" || r["status"] == "diverged" || r["status"] == "oom"))
          slot = r;
      const std::string label = spec.str();
      if (!slot.is_null()) {
        fmt::print("lra: {} {}: finished earlier ({}), kept\n", task, label, slot["status"].get<std::string>());
        oom += slot["status"] == "oom";
        diverged += slot["status"] == "diverged";
        continue;
      }
      if (lm && !find_variant(spec.name)->causal) {  // a decoder needs the variant's causal form
        slot = stub_result(task, preset, o, spec, resolved[vi], "skipped",
                           fmt::format("{} has no causal form: {}", spec.name, find_variant(spec.name)->no_causal_reason));
        ++skipped;
        save();
        fmt::print("lra: {} {}: skipped: {}\n", task, label, slot["message"].get<std::string>());
        continue;
      }
      if (!prepared) {
        try {
          if (!info.prepare) throw InputError(fmt::format("the {} task has no data preparation", task));
          prepared = info.prepare({.data_dir = o.data_dir, .archives = o.archives, .small = o.preset == "smoke"});
        } catch (const InputError& e) {
          prepared = Prepared{"", ""};
          data_error = e.what();
        }
      }
      if (!prepared->skip.empty()) {
        slot = stub_result(task, preset, o, spec, resolved[vi], "skipped", prepared->skip);
        ++skipped;
        save();
        fmt::print("lra: {} {}: skipped: {}\n", task, label, prepared->skip);
        continue;
      }
      TrainOptions t;
      t.task = task, t.data_dir = prepared->dir, t.variant = VariantSpec::parse(label), t.preset = preset;
      apply_train_preset(t);
      t.seed = o.seed, t.progress = o.progress, t.device = o.device, t.precision = o.precision;
      // The device and precision name the folder too where they are not the defaults.
      const std::string device = o.device == Device::cpu ? "" : fmt::format("-{}", device_name(o.device));
      const std::string precision = o.precision == Precision::fp32 ? "" : fmt::format("-{}", precision_name(o.precision));
      t.checkpoint_dir = (fs::path(o.data_dir) / "checkpoints" /
                          fmt::format("{}-{}-{}{}{}", o.preset, task, slugify(label), device, precision))
                             .string();
      t.resume = o.resume && fs::exists(fs::path(t.checkpoint_dir) / "last.ckpt");
      if (!t.resume) fs::remove_all(t.checkpoint_dir);
      if (!data && data_error.empty()) {
        try {
          data = load_task(task, task_options(t));
        } catch (const InputError& e) {
          data_error = e.what();
        }
      }
      if (!data_error.empty()) {
        slot = stub_result(task, preset, o, spec, resolved[vi], "error", data_error);
        ++failed;
        save();
        fmt::print("lra: {} {}: error: {}\n", task, label, data_error);
        continue;
      }
      if (lm)
        fmt::print("lra: {} {} ({} preset{}): {} train / {} val / {} test tokens, windows of {}\n", task, label, preset,
                   t.resume ? ", resumed from its checkpoint" : "", data->train_stream.size(), data->val_stream.size(),
                   data->test_stream.size(), data->length);
      else
        fmt::print("lra: {} {} ({} preset{}): {} train / {} val / {} test examples, length {}\n", task, label, preset,
                   t.resume ? ", resumed from its checkpoint" : "", data->train.size(), data->val.size(),
                   data->test.size(), data->length);
      std::fflush(stdout);
      try {
        slot = train_run(t, *data, [&](const nlohmann::json& r) {
          slot = r;
          save();
        });
        if (slot["status"] == "diverged") ++diverged;
      } catch (const OutOfMemory& e) {
        if (slot.is_null()) slot = stub_result(task, preset, o, spec, resolved[vi], "oom", e.what());
        slot["status"] = "oom";
        slot["message"] = e.what();
        slot["memory"]["requested_bytes"] = e.requested;
        if (e.budget > 0) slot["memory"]["budget_bytes"] = e.budget;
        ++oom;
      } catch (const InputError& e) {
        slot = stub_result(task, preset, o, spec, resolved[vi], "error", e.what());
        ++failed;
      }
      save();
      const auto acc = slot.value("accuracy", nlohmann::json::object());
      const auto bpc = slot.value("bpc", nlohmann::json::object());
      if (slot["status"] == "ok" && lm)
        fmt::print("lra: {} {}: test {:.4f} bpc at the best validation (unigram entropy {:.4f}), {:.0f} tokens/s\n", task,
                   label, bpc.value("test_at_best_val", 0.0), bpc.value("test_unigram", 0.0),
                   slot["throughput"].value("tokens_per_s", 0.0));
      else if (slot["status"] == "ok")
        fmt::print("lra: {} {}: test {:.2f}% at the best validation (majority class {:.2f}%), {:.2f} steps/s\n", task,
                   label, 100 * acc.value("test_at_best_val", 0.0), 100 * acc.value("test_majority_class", 0.0),
                   slot["throughput"].value("steps_per_s", 0.0));
      else
        fmt::print("lra: {} {}: {}: {}\n", task, label, slot["status"].get<std::string>(), slot.value("message", ""));
    }
  }
  save();
  const std::string md = render_markdown(report);
  write_file_atomic(summary_path, md);
  fmt::print("\n{}", md);
  fmt::print("lra: {} runs ({} out of memory, {} failed, {} diverged, {} skipped for missing data or no causal form); "
             "report {}, summary {}\n",
             runs.size(), oom, failed, diverged, skipped, o.out, summary_path);
  if (failed || code == kInternal) return kInternal;
  if (oom) return kOutOfMemory;
  if (diverged) return kDiverged;
  return kOk;
}

}  // namespace lsb
