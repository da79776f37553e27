// Standalone SVG line charts written by the project (no plotting runtime): the time and memory curves
// of a sweep (log-log, one line per variant, oom points marked on the budget line) and the training
// curves of LRA runs (loss and validation accuracy per task, one line per variant).
//
// The SVG is plain and machine-checkable: every series is a <g class="series" data-name="..."> holding
// one <polyline> and a <circle> per point (oom points: a <path class="oom">), every axis a
// <g class="axis" data-axis="x|y" data-label="..."> with one <text class="tick"> per tick.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace lsb {

enum class AxisUnit { count, seconds, bytes, percent, plain };

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in order of x
  std::vector<double> oom_x;                      // x of points that ran out of memory
};

struct Plot {
  std::string slug;  // file name without .svg: "train-step-cpu-b8-d64-h2-time"
  std::string title;
  std::string x_label, y_label;
  AxisUnit x_unit = AxisUnit::count, y_unit = AxisUnit::plain;
  bool log_x = false, log_y = false;
  std::vector<PlotSeries> series;
  double budget_y = 0;  // > 0: a dashed horizontal line (the memory budget), where oom points sit;
                        // otherwise oom points sit on the top edge
};

std::string render_svg(const Plot& plot);

// Every plot a report holds: per sweep group (mode, device, shape) a time plot and a memory plot;
// per training task a loss plot and a validation-accuracy plot.
std::vector<Plot> report_plots(const nlohmann::json& report);

// The group a sweep point belongs to ("train-step, cpu, b=8, D=64, h=2, L=2, Dmlp=128") and its slug
// ("train-step-cpu-b8-d64-h2-l2"): the Markdown tables and the plots group points alike.
std::string sweep_group(const nlohmann::json& config);
std::string sweep_group_slug(const nlohmann::json& config);

// The slugs of a training task's plots: "train-listops-loss", "train-listops-val-accuracy".
std::string train_curve_slug(const std::string& task, const std::string& curve);

// "ls:r=32,w=8": a result's variant as a spec (a length key, VariantInfo::is_length_key, left out where it equals n).
std::string variant_label(const nlohmann::json& config);
// A training run's label: the variant, its device where not cpu, its precision where not fp32
// ("ls:r=32,w=8 cuda", "full bf16").
std::string run_label(const nlohmann::json& config);

}  // namespace lsb
