#include "bench/demo.hpp"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "bench/attention_bench.hpp"
#include "bench/train.hpp"
#include "nn/errors.hpp"
#include "nn/memory.hpp"
#include "reports/report.hpp"
#include "tasks/listops.hpp"

namespace lsb {

int run_demo(const DemoOptions& opt) {
  AttentionBenchOptions d;
  d.variants = VariantSpec::parse_all(default_sweep_variants());
  d.lengths = {512, 1024, 2048};
  d.batch = 4;
  d.mode = "fwdbwd";
  d.timing.min_time_s = 0.2;
  d.timing.min_reps = 3;
  d.json_path = opt.json_path;
  d.command_line = opt.command_line;
  const int bench_code = run_attention_bench(d);
  if (bench_code != kOk) return bench_code;

  // Short ListOps runs: trees of 10..250 tokens so that the smoke preset's length 256 holds them.
  const std::string data = (std::filesystem::path(opt.data_dir) / "listops").string();
  if (!std::filesystem::exists(std::filesystem::path(data) / "basic_test.tsv")) {
    const auto st = listops::generate({.seed = 1, .train = 5000, .val = 500, .test = 2000, .min_length = 10,
                                       .max_length = 250},
                                      data);
    fmt::print("\ndemo: generated ListOps (5000/500/2000, 10..250 tokens) into {} in {:.1f} s\n", data, st.seconds);
  }
  fmt::print("\ndemo: training the smoke preset on ListOps (chance is the majority class)\n");
  nlohmann::json report = nlohmann::json::parse(std::ifstream(opt.json_path));
  struct Row {
    std::string variant;
    nlohmann::json r;
  };
  std::vector<Row> rows;
  for (const std::string& variant : {baseline_variant().spec(), headline_variant().spec()}) {
    TrainOptions o;
    o.task = "listops", o.data_dir = data, o.variant = VariantSpec::parse(variant), o.preset = "smoke", o.progress = false;
    apply_train_preset(o);
    const TaskData task = load_task(o.task, task_options(o));
    rows.push_back({variant, train_run(o, task)});
    report["results"].push_back(rows.back().r);
    write_report(opt.json_path, report);
  }
  fmt::print("\n{:<14} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12}\n", "variant", "val best", "test", "majority", "steps/s",
             "tokens/s", "peak memory");
  for (const auto& [variant, r] : rows) {
    const auto& a = r["accuracy"];
    fmt::print("{:<14} {:>8.1f}% {:>8.1f}% {:>8.1f}% {:>9.1f} {:>10.0f} {:>12}\n", variant,
               100 * a["val_best"].get<double>(), 100 * a["test_at_best_val"].get<double>(),
               100 * a["test_majority_class"].get<double>(), r["throughput"]["steps_per_s"].get<double>(),
               r["throughput"]["tokens_per_s"].get<double>(), format_bytes(r["memory"]["peak_tracked_bytes"]));
  }
  fmt::print("\ndemo: report with the sweep and the training runs: {}\n", opt.json_path);
  for (const auto& row : rows)
    if (row.r["status"] != "ok") return kDiverged;
  return kOk;
}

}  // namespace lsb
