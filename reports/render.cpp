#include "reports/render.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <optional>
#include <map>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "attention_impls/registry.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "reports/plot.hpp"
#include "reports/report.hpp"
#include "reports/text.hpp"
#include "tasks/registry.hpp"

namespace lsb {
namespace fs = std::filesystem;
namespace {

// A training run scored in bits per character (a language-model task), not accuracy.
bool is_language_model_run(const nlohmann::json& r) {
  if (r.contains("bpc")) return true;
  const TaskInfo* t = r.contains("config") ? find_task(field_text(r["config"], "task")) : nullptr;
  return t && t->language_model();
}

// The cell of one sweep point: median (spread), tokens/s, share of the peak, peak memory; or its status.
std::string point_cell(const nlohmann::json& r) {
  const std::string st = field_text(r, "status");
  if (st == "oom") {
    const auto m = r.value("memory", nlohmann::json::object());
    return m.contains("requested_bytes") ? "oom (asked " + bytes_text(m["requested_bytes"].get<double>()) + ")" : "oom";
  }
  if (st != "ok") return st;
  const auto& t = r["time_s"];
  const double med = t["median"].get<double>(), sd = t["stdev"].get<double>();
  std::string cell = fmt::format("{} ±{:.0f}%", time_text(med), med > 0 ? 100 * sd / med : 0.0);
  if (r.contains("throughput") && r["throughput"].contains("tokens_per_s"))
    cell += " · " + rate_text(r["throughput"]["tokens_per_s"].get<double>()) + " tok/s";
  if (r.contains("throughput") && r["throughput"].contains("peak_fraction")) {
    const double f = r["throughput"]["peak_fraction"].get<double>();
    // Above 100% the measured peak was too low (a busy machine), not the code faster than the CPU.
    cell += f <= 1.0 ? fmt::format(" · {:.0f}% of peak", 100 * f) : " · above the measured peak (not trustworthy)";
  }
  if (r.contains("memory") && r["memory"].contains("peak_tracked_bytes"))
    cell += " · " + bytes_text(r["memory"]["peak_tracked_bytes"].get<double>());
  return cell;
}

// The columns of the accuracy table: the suite's tasks in the registry's order, then any other task the
// report has runs of (a registered one in the registry's order, then unknown names as they come).
std::vector<std::string> accuracy_columns(const std::vector<std::string>& tasks_run) {
  std::vector<std::string> cols;
  for (const auto& t : tasks())
    if (t.lra_suite || std::find(tasks_run.begin(), tasks_run.end(), t.name) != tasks_run.end()) cols.push_back(t.name);
  for (const auto& t : tasks_run)
    if (std::find(cols.begin(), cols.end(), t) == cols.end()) cols.push_back(t);
  return cols;
}

// A published row: one (source, model) across the tasks that give it a number (../shared/spec/lra.md,
// "Published reference points"), grouped by source.
struct PublishedRow {
  std::string source, model;
  std::map<std::string, double> by_task;  // NAN: FAIL
};
std::vector<PublishedRow> published_rows() {
  std::vector<PublishedRow> rows;
  for (const auto& t : tasks())
    for (const auto& p : t.published) {
      if (t.metric != "accuracy") continue;  // the language models' have their own table
      auto it = std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.source == p.source && r.model == p.model; });
      if (it == rows.end()) it = rows.insert(rows.end(), {p.source, p.model, {}});
      it->by_task[t.name] = p.value;
    }
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.source < b.source; });
  return rows;
}

}  // namespace

nlohmann::json merge_reports(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names) {
  nlohmann::json context, merged_from = nlohmann::json::array(), results = nlohmann::json::array();
  std::set<std::string> seen;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const auto& r = reports[i];
    if (context.is_null()) context = r["context"];
    merged_from.push_back({{"path", i < names.size() ? names[i] : fmt::format("report {}", i)}, {"context", r["context"]}});
    for (const auto& x : r["results"])
      if (seen.insert(x["id"].get<std::string>()).second) results.push_back(x);
  }
  context["merged_from"] = merged_from;
  context["shard"] = {{"index", 0}, {"count", 1}};
  return {{"schema", "lsbench-report"}, {"schema_version", 1}, {"context", context}, {"results", results}};
}

namespace {

// A rendered report before it becomes Markdown or HTML: headings, paragraphs (with `code` spans),
// tables of plain-text cells, and plots (by slug, from report_plots).
struct Table {
  std::vector<std::string> header;
  std::string align;  // per column: 'l' or 'r'
  std::vector<std::vector<std::string>> rows;
};
struct Block {
  enum class Kind { heading, text, table, plot } kind;
  int level = 0;
  std::string text;  // heading or paragraph text; a plot's slug
  Table table;
  bool heads_plots_only = false;  // a heading over plots alone: left out where the plots are
};

Block heading(int level, std::string text) { return {Block::Kind::heading, level, std::move(text), {}}; }
Block paragraph(std::string text) { return {Block::Kind::text, 0, std::move(text), {}}; }
Block table(Table t) { return {Block::Kind::table, 0, "", std::move(t)}; }
Block plot(std::string slug) { return {Block::Kind::plot, 0, std::move(slug), {}}; }

Table context_table(const nlohmann::json& c) {
  Table t{{"", ""}, "ll", {}};
  const auto cpu = c.value("cpu", nlohmann::json::object());
  t.rows.push_back({"lsbench", fmt::format("{} (commit {}, {})", field_text(c, "tool_version"), field_text(c, "git_commit"),
                                           field_text(c, "build_type"))});
  t.rows.push_back({"machine", fmt::format("{} · {}", field_text(c, "host"), field_text(c, "os"))});
  t.rows.push_back({"CPU", fmt::format("{} · {} threads used of {}{}", field_text(cpu, "model"), field_text(cpu, "threads_used"),
                                       field_text(cpu, "cores"),
                                       cpu.contains("peak_gflops_fp32")
                                           ? fmt::format(" · measured fp32 peak {:.0f} GFLOP/s",
                                                         cpu["peak_gflops_fp32"].get<double>())
                                           : "")});
  if (cpu.contains("peak_measurement") && cpu["peak_measurement"].is_object() &&
      cpu["peak_measurement"].contains("warning") && cpu["peak_measurement"]["warning"].is_string())
    t.rows.push_back({"warning", cpu["peak_measurement"]["warning"].get<std::string>()});
  if (c.contains("gpu") && c["gpu"].is_object())
    t.rows.push_back({"GPU", fmt::format("{} · {} · driver {} · CUDA runtime {}", field_text(c["gpu"], "name"),
                                         bytes_text(c["gpu"].value("memory_bytes", 0.0)), field_text(c["gpu"], "driver"),
                                         field_text(c["gpu"], "cuda_runtime"))});
  std::string libs;
  const nlohmann::json libraries = c.value("libraries", nlohmann::json::object());
  for (const auto& [k, v] : libraries.items())
    libs += fmt::format("{}{} {}", libs.empty() ? "" : ", ", k, v.get<std::string>());
  t.rows.push_back({"libraries", fmt::format("{} · {}", libs, field_text(c, "compiler"))});
  t.rows.push_back({"started", field_text(c, "started_at")});
  std::string cmd;
  for (const auto& a : c.value("command_line", nlohmann::json::array())) {
    if (!cmd.empty()) cmd += ' ';
    cmd += a.get<std::string>();
  }
  t.rows.push_back({"command", "`" + cmd + "`"});
  if (c.contains("merged_from") && c["merged_from"].size() > 1)
    t.rows.push_back({"merged from", fmt::format("{} reports", c["merged_from"].size())});
  return t;
}

// Sweep points as a grid: variants in order of first appearance, lengths sorted, the point at each.
struct PointGrid {
  std::vector<std::string> variants;
  std::set<std::int64_t> ns;
  std::map<std::pair<std::string, std::int64_t>, const nlohmann::json*> at;
  const nlohmann::json* find(const std::string& v, std::int64_t n) const {
    const auto it = at.find({v, n});
    return it == at.end() ? nullptr : it->second;
  }
};
PointGrid point_grid(const std::vector<const nlohmann::json*>& points) {
  PointGrid g;
  for (const auto* r : points) {
    const std::string v = variant_label((*r)["config"]);
    if (std::find(g.variants.begin(), g.variants.end(), v) == g.variants.end()) g.variants.push_back(v);
    const std::int64_t n = (*r)["config"].value("n", std::int64_t{0});
    g.ns.insert(n);
    g.at[{v, n}] = r;
  }
  return g;
}

// Sweep points per group (mode, device, shape): rows n, columns variants; each group's plots after it.
void sweep_sections(const nlohmann::json& report, std::vector<Block>& doc) {
  std::map<std::string, std::vector<const nlohmann::json*>> groups;
  std::vector<std::string> group_order;
  for (const auto& r : report["results"]) {
    if (field_text(r, "kind") != "sweep-point") continue;
    const std::string key = sweep_group(r["config"]);
    if (!groups.count(key)) group_order.push_back(key);
    groups[key].push_back(&r);
  }
  if (group_order.empty()) return;
  doc.push_back(heading(2, "Time and memory"));
  doc.push_back(paragraph("Each cell: median time ± spread (stdev / median) · tokens/s · share of the peak (GFLOP/s of "
                          "the cost model against the measured fp32 peak, or the GPU's published one) · peak tracked memory; or the "
                          "point's status."));
  for (const auto& key : group_order) {
    const PointGrid grid = point_grid(groups[key]);
    Table t{{"n"}, "r", {}};
    for (const auto& v : grid.variants) t.header.push_back(v), t.align += 'l';
    for (const auto n : grid.ns) {
      std::vector<std::string> row = {std::to_string(n)};
      for (const auto& v : grid.variants) row.push_back(grid.find(v, n) ? point_cell(*grid.find(v, n)) : "");
      t.rows.push_back(std::move(row));
    }
    doc.push_back(heading(3, key));
    doc.push_back(table(std::move(t)));
    const std::string slug = sweep_group_slug((*groups[key].front())["config"]);
    doc.push_back(plot(slug + "-time"));
    doc.push_back(plot(slug + "-memory"));
  }
}

// Train-step points on byte-level text, in the shape of LRA Table 2: steps/s and peak memory per
// variant and length, relative to full attention, beside the published TPU figures.
void efficiency_section(const nlohmann::json& report, std::vector<Block>& doc) {
  std::vector<const nlohmann::json*> pts;
  for (const auto& r : report["results"])
    if (field_text(r, "kind") == "sweep-point" && field_text(r["config"], "mode") == "train-step" &&
        field_text(r["config"], "task") == lra_efficiency_task().name)
      pts.push_back(&r);
  if (pts.empty()) return;
  const PointGrid grid = point_grid(pts);
  const auto& variants = grid.variants;
  const auto& ns = grid.ns;
  auto steps = [&](const std::string& v, std::int64_t n) -> double {
    const nlohmann::json* r = grid.find(v, n);
    return r && field_text(*r, "status") == "ok" ? (*r)["throughput"].value("steps_per_s", 0.0) : 0.0;
  };
  Table t{{"model"}, "l", {}};
  for (const auto n : ns) t.header.push_back(fmt::format("steps/s n={}", n)), t.align += 'r';
  for (const auto n : ns) t.header.push_back(fmt::format("peak memory n={}", n)), t.align += 'r';
  const std::string& base = baseline_variant().name;  // ratios are to it
  const std::string full = std::find(variants.begin(), variants.end(), base) != variants.end() ? base : "";
  for (const auto& v : variants) {
    std::vector<std::string> row = {"lsbench " + v};
    for (const auto n : ns) {
      const double s = steps(v, n), f = full.empty() ? 0 : steps(full, n);
      const nlohmann::json* r = grid.find(v, n);
      row.push_back(s > 0 ? fmt::format("{:.2f}{}", s, f > 0 ? fmt::format(" ({:.2f}x)", s / f) : "")
                    : r   ? field_text(*r, "status")
                          : "");
    }
    for (const auto n : ns) {
      const nlohmann::json* r = grid.find(v, n);
      row.push_back(!r                                  ? ""
                    : field_text(*r, "status") == "ok" ? bytes_text((*r)["memory"].value("peak_tracked_bytes", 0.0))
                                                       : field_text(*r, "status"));
    }
    t.rows.push_back(std::move(row));
  }
  // LRA Table 2 (byte-level text, batch 32, TPU v3, per device) at 1K / 2K / 3K / 4K, the baseline's
  // row first: the others' ratios are to it.
  std::vector<PublishedEfficiency> published;
  for (const auto& v : lsb::variants())
    for (const auto& p : v.published_efficiency)
      published.insert(v.baseline ? published.begin() : published.end(), p);
  for (const auto& p : published) {
    std::vector<std::string> row = {p.model};
    for (int pass = 0; pass < 2; ++pass)
      for (const auto n : ns) {
        const int k = n % 1024 == 0 && n / 1024 >= 1 && n / 1024 <= 4 ? static_cast<int>(n / 1024) - 1 : -1;
        row.push_back(k < 0 ? "" : pass == 0 ? fmt::format("{:.1f} ({:.2f}x)", p.steps_per_s[k], p.steps_per_s[k] / published[0].steps_per_s[k])
                                             : fmt::format("{:.2f} GB", p.gb[k]));
      }
    t.rows.push_back(std::move(row));
  }
  const auto& c = (*pts.front())["config"];
  doc.push_back(heading(2, "Efficiency (LRA Table 2 shape)"));
  doc.push_back(paragraph(fmt::format(
      "One training step of the model (D={}, h={}, L={}, Dmlp={}) on byte-level text, batch {}: steps per second "
      "(in brackets: relative to full attention at the same length) and peak tracked memory. The published rows were "
      "measured on a TPU v3 with LRA's base model and batch 32: compare the ratios, not the absolute numbers.",
      field_text(c, "dim"), field_text(c, "heads"), field_text(c, "layers"), field_text(c, "mlp_dim"), field_text(c, "batch"))));
  doc.push_back(table(std::move(t)));
}

void maxlen_section(const nlohmann::json& report, std::vector<Block>& doc) {
  std::vector<const nlohmann::json*> maxlens;
  std::int64_t full_n = 0;
  for (const auto& r : report["results"])
    if (field_text(r, "kind") == "maxlen") {
      maxlens.push_back(&r);
      if (field_text(r["config"], "variant") == baseline_variant().name) full_n = r.value("max_n", std::int64_t{0});
    }
  if (maxlens.empty()) return;
  Table t{{"variant", "mode", "budget", "longest n", "ratio to " + baseline_variant().name, "note"}, "llrrrl", {}};
  for (const auto* r : maxlens) {
    const auto& c = (*r)["config"];
    const std::int64_t n = r->value("max_n", std::int64_t{0});
    t.rows.push_back({variant_label(c), field_text(c, "mode"), bytes_text(c.value("memory_budget_bytes", 0.0)),
                      std::to_string(n), full_n > 0 ? fmt::format("{:.2f}x", static_cast<double>(n) / full_n) : "",
                      field_text(*r, "message")});
  }
  doc.push_back(heading(2, "Longest sequence that fits"));
  doc.push_back(table(std::move(t)));
}

// Training runs: the LRA accuracy table (Table 1 shape) with the published rows, then the curves.
void accuracy_section(const nlohmann::json& report, std::vector<Block>& doc) {
  std::map<std::string, std::map<std::string, std::string>> acc;  // variant -> task -> cell
  std::vector<std::string> run_variants, tasks_with_curves;
  for (const auto& r : report["results"]) {
    if (field_text(r, "kind") != "train-run" || is_language_model_run(r)) continue;
    const auto& c = r["config"];
    const std::string v = run_label(c), task = field_text(c, "task");
    if (std::find(run_variants.begin(), run_variants.end(), v) == run_variants.end()) run_variants.push_back(v);
    if (r.contains("curves") && std::find(tasks_with_curves.begin(), tasks_with_curves.end(), task) == tasks_with_curves.end())
      tasks_with_curves.push_back(task);
    const auto a = r.value("accuracy", nlohmann::json::object());
    std::string text = field_text(r, "status");
    if (a.contains("test_at_best_val"))
      text = fmt::format("{:.2f}", 100 * a["test_at_best_val"].get<double>());
    else if (a.contains("val_best"))
      text = fmt::format("({} val {:.2f})", field_text(r, "status"), 100 * a["val_best"].get<double>());
    acc[v][task] = text + (field_text(c, "preset").empty() ? "" : " [" + field_text(c, "preset") + "]");
  }
  if (run_variants.empty()) return;
  std::vector<std::string> tasks_run;
  for (const auto& [v, cells] : acc)
    for (const auto& [task, cell] : cells)
      if (std::find(tasks_run.begin(), tasks_run.end(), task) == tasks_run.end()) tasks_run.push_back(task);
  const std::vector<std::string> cols = accuracy_columns(tasks_run);
  // The average of LRA Table 1: over the tasks it averages (all but Path-X), where a row has every one.
  std::vector<std::string> averaged;
  for (const auto& c : cols)
    if (const TaskInfo* t = find_task(c); t && t->lra_average) averaged.push_back(c);
  Table t{{"model"}, "l", {}};
  for (const auto& c : cols) t.header.push_back(c), t.align += 'r';
  t.header.push_back(fmt::format("average of {}", averaged.size()));
  t.align += 'r';
  auto average = [&](const std::function<std::optional<double>(const std::string&)>& value) -> std::string {
    double sum = 0;
    for (const auto& c : averaged) {
      const auto x = value(c);
      if (!x) return "";
      sum += *x;
    }
    return averaged.empty() ? "" : fmt::format("{:.2f}", sum / static_cast<double>(averaged.size()));
  };
  for (const auto& v : run_variants) {
    std::vector<std::string> row = {"lsbench " + v};
    for (const auto& c : cols) row.push_back(acc[v].count(c) ? acc[v][c] : "");
    row.push_back(average([&](const std::string& c) -> std::optional<double> {
      const std::string cell = acc[v].count(c) ? acc[v][c] : "";
      char* end = nullptr;
      const double x = std::strtod(cell.c_str(), &end);
      return end != cell.c_str() ? std::optional<double>(x) : std::nullopt;
    }));
    t.rows.push_back(std::move(row));
  }
  for (const auto& ref : published_rows()) {
    std::vector<std::string> row = {fmt::format("{} ({})", ref.model, ref.source)};
    for (const auto& c : cols) {
      const auto it = ref.by_task.find(c);
      row.push_back(it == ref.by_task.end() ? "" : std::isnan(it->second) ? "FAIL" : fmt::format("{:.2f}", it->second));
    }
    row.push_back(average([&](const std::string& c) -> std::optional<double> {
      const auto it = ref.by_task.find(c);
      return it == ref.by_task.end() || std::isnan(it->second) ? std::nullopt : std::optional<double>(it->second);
    }));
    t.rows.push_back(std::move(row));
  }
  doc.push_back(heading(2, "Accuracy (test, %, at the best validation step)"));
  doc.push_back(table(std::move(t)));
  std::string notes;
  for (const auto& v : variants())
    if (!v.results_note.empty()) notes += " " + v.results_note;
  doc.push_back(paragraph(
      fmt::format("Published rows: ../shared/spec/lra.md (test accuracy). The average is over {}, as in LRA's Table 1, "
                  "which leaves out Path-X, where every model failed.",
                  fmt::join(averaged, ", ")) + notes));
  if (tasks_with_curves.empty()) return;
  doc.push_back(heading(2, "Training curves"));
  doc.back().heads_plots_only = true;
  for (const auto& task : tasks_with_curves) {
    doc.push_back(plot(train_curve_slug(task, "loss")));
    doc.push_back(plot(train_curve_slug(task, "val-accuracy")));
  }
}

// Language-model runs: bits per character per task and variant beside throughput and memory, the
// context-free baseline (unigram entropy), which tokens were scored, then the published numbers with the
// size of their models, and the curves.
void language_model_section(const nlohmann::json& report, std::vector<Block>& doc) {
  Table t{{"task", "model", "preset", "test BPC (best val)", "final", "val BPC", "unigram", "tokens scored (stride)",
           "train tok/s", "peak memory", "status"},
          "lllrrrrrrrl",
          {}};
  std::vector<std::string> tasks_run, sources;  // each task's data, said once under the table
  for (const auto& r : report["results"]) {
    if (field_text(r, "kind") != "train-run" || !is_language_model_run(r)) continue;
    const auto& c = r["config"];
    const std::string task = field_text(c, "task");
    const std::string source = field_text(r.value("data", nlohmann::json::object()), "source");
    if (std::find(tasks_run.begin(), tasks_run.end(), task) == tasks_run.end()) tasks_run.push_back(task);
    const std::string said = fmt::format("{}: {}", task, source);
    if (!source.empty() && std::find(sources.begin(), sources.end(), said) == sources.end()) sources.push_back(said);
    const auto b = r.value("bpc", nlohmann::json::object());
    const auto e = r.value("evaluation", nlohmann::json::object());
    auto num = [](const nlohmann::json& o, const char* k, const char* f) {
      return o.contains(k) && o[k].is_number() ? fmt::format(fmt::runtime(f), o[k].get<double>()) : std::string();
    };
    t.rows.push_back(
        {task,
         c.contains("dim") ? fmt::format("{} · D {} · L {}", run_label(c), field_text(c, "dim"), field_text(c, "layers"))
                           : run_label(c),
         field_text(c, "preset"), num(b, "test_at_best_val", "{:.4f}"), num(b, "test_final", "{:.4f}"),
         num(b, "val_best", "{:.4f}"), num(b, "test_unigram", "{:.3f}"),
         e.contains("test_tokens_scored") ? fmt::format("{} ({})", field_text(e, "test_tokens_scored"), field_text(e, "stride")) : "",
         r.contains("throughput") ? rate_text(r["throughput"].value("tokens_per_s", 0.0)) : "",
         r.contains("memory") && r["memory"].contains("peak_tracked_bytes") ? bytes_text(r["memory"]["peak_tracked_bytes"].get<double>()) : "",
         r.value("status", "") == "ok" || !r.contains("message")
             ? field_text(r, "status")
             : fmt::format("{}: {}", field_text(r, "status"), field_text(r, "message"))});
  }
  if (t.rows.empty()) return;
  doc.push_back(heading(2, "Language modelling (bits per character, lower is better)"));
  doc.push_back(table(std::move(t)));
  Table pub{{"task", "published model", "source", "test BPC"}, "lllr", {}};
  for (const auto& task : tasks_run)
    if (const TaskInfo* info = find_task(task))
      for (const auto& p : info->published) pub.rows.push_back({task, p.model, p.source, fmt::format("{:.2f}", p.value)});
  doc.push_back(paragraph(
      "Data: " + fmt::format("{}", fmt::join(sources, "; ")) + ". "
      "BPC over whole splits (or the prefixes the preset names), every token after the first scored once; unigram: the "
      "BPC of a model that sees no context. The decoder uses learned absolute positions, without Transformer-XL's "
      "relative positions and segment cache that the published models have."));
  if (!pub.rows.empty()) {
    doc.push_back(paragraph("Published numbers, for scale: their models are far larger and trained far longer than a "
                            "CPU preset's."));
    doc.push_back(table(std::move(pub)));
  }
  doc.push_back(heading(2, "Language-model training curves"));
  doc.back().heads_plots_only = true;
  for (const auto& task : tasks_run) {
    doc.push_back(plot(train_curve_slug(task, "loss")));
    doc.push_back(plot(train_curve_slug(task, "val-bpc")));
  }
}

std::vector<Block> build_document(const nlohmann::json& report) {
  std::vector<Block> doc = {heading(1, "lsbench report"), table(context_table(report["context"]))};
  sweep_sections(report, doc);
  maxlen_section(report, doc);
  accuracy_section(report, doc);
  language_model_section(report, doc);
  efficiency_section(report, doc);
  return doc;
}

// Escaped text with `code` spans as <code>.
std::string html_inline(const std::string& s) {
  std::string out;
  bool code = false;
  std::size_t from = 0;
  for (std::size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '`') {
      out += xml_escape(s.substr(from, i - from));
      if (i < s.size()) out += code ? "</code>" : "<code>";
      code = !code;
      from = i + 1;
    }
  return out;
}

}  // namespace

std::string render_markdown(const nlohmann::json& report, const std::map<std::string, std::string>& plot_links) {
  std::string md;
  for (const auto& b : build_document(report)) {
    switch (b.kind) {
      case Block::Kind::heading:
        if (!b.heads_plots_only || !plot_links.empty())
          md += fmt::format("{} {}\n\n", std::string(static_cast<std::size_t>(b.level), '#'), b.text);
        break;
      case Block::Kind::text: md += b.text + "\n\n"; break;
      case Block::Kind::plot:
        if (plot_links.count(b.text)) md += fmt::format("![{0}]({1})\n\n", b.text, plot_links.at(b.text));
        break;
      case Block::Kind::table: {
        auto row = [](const std::vector<std::string>& cells) {
          std::string line = "|";
          for (const auto& c : cells) line += c.empty() ? std::string(" |") : fmt::format(" {} |", md_cell(c));
          return line + "\n";
        };
        md += row(b.table.header) + "|";
        for (char a : b.table.align) md += a == 'r' ? "---:|" : "---|";
        md += "\n";
        for (const auto& r : b.table.rows) md += row(r);
        md += "\n";
        break;
      }
    }
  }
  return md;
}

std::string render_html(const nlohmann::json& report) {
  std::map<std::string, std::string> svgs;
  for (const auto& p : report_plots(report)) svgs[p.slug] = render_svg(p);
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>lsbench report</title>\n<style>\n"
      "body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\n"
      "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}\n"
      "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}td.r,th.r{text-align:right}\n"
      "code{background:#f2f2f2;padding:0 3px}figure{margin:0.5em 0;display:inline-block}\n"
      "</style>\n</head>\n<body>\n";
  for (const auto& b : build_document(report)) {
    switch (b.kind) {
      case Block::Kind::heading: html += fmt::format("<h{0}>{1}</h{0}>\n", b.level, html_inline(b.text)); break;
      case Block::Kind::text: html += "<p>" + html_inline(b.text) + "</p>\n"; break;
      case Block::Kind::plot:
        if (svgs.count(b.text)) html += "<figure>\n" + svgs.at(b.text) + "</figure>\n";
        break;
      case Block::Kind::table: {
        auto row = [&](const std::vector<std::string>& cells, const char* tag) {
          std::string line = "<tr>";
          for (std::size_t i = 0; i < cells.size(); ++i)
            line += fmt::format("<{0}{1}>{2}</{0}>", tag, i < b.table.align.size() && b.table.align[i] == 'r' ? " class=\"r\"" : "",
                                html_inline(cells[i]));
          return line + "</tr>\n";
        };
        html += "<table>\n";
        if (std::any_of(b.table.header.begin(), b.table.header.end(), [](const auto& h) { return !h.empty(); }))
          html += row(b.table.header, "th");
        for (const auto& r : b.table.rows) html += row(r, "td");
        html += "</table>\n";
        break;
      }
    }
  }
  return html + "</body>\n</html>\n";
}

std::string render_csv(const nlohmann::json& report) {
  auto q = [](std::string s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string out = "\"";
    for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return out + "\"";
  };
  auto num = [](const nlohmann::json& j, const char* a, const char* b) -> std::string {
    if (j.contains(a) && j[a].is_object() && j[a].contains(b) && j[a][b].is_number()) return j[a][b].dump();
    return "";
  };
  std::string csv = "id,kind,status,variant,mode,device,precision,task,n,padded_n,batch,dim,heads,layers,threads,median_s,"
                    "stdev_s,samples,tokens_per_s,steps_per_s,gflops,peak_tracked_bytes,analytic_bytes,"
                    "test_at_best_val,test_final,max_n,message\n";
  for (const auto& r : report["results"]) {
    const auto& c = r["config"];
    std::vector<std::string> f = {field_text(r, "id"), field_text(r, "kind"), field_text(r, "status"), variant_label(c), field_text(c, "mode"),
                                  field_text(c, "device"), c.value("precision", "fp32"), field_text(c, "task"), field_text(c, "n"), field_text(c, "padded_n"), field_text(c, "batch"),
                                  field_text(c, "dim"), field_text(c, "heads"), field_text(c, "layers"), field_text(c, "threads"),
                                  num(r, "time_s", "median"), num(r, "time_s", "stdev"), num(r, "time_s", "samples"),
                                  num(r, "throughput", "tokens_per_s"), num(r, "throughput", "steps_per_s"),
                                  num(r, "throughput", "gflops"), num(r, "memory", "peak_tracked_bytes"),
                                  num(r, "memory", "analytic_bytes"), num(r, "accuracy", "test_at_best_val"),
                                  num(r, "accuracy", "test_final"), field_text(r, "max_n"), field_text(r, "message")};
    for (std::size_t i = 0; i < f.size(); ++i) {
      if (i) csv += ',';
      csv += q(f[i]);
    }
    csv += "\n";
  }
  return csv;
}

int run_report(const RenderOptions& o) {
  std::vector<nlohmann::json> reports;
  for (const auto& path : o.inputs) reports.push_back(read_report(path));  // all read before anything is written
  const nlohmann::json merged = merge_reports(reports, o.inputs);
  std::map<std::string, std::string> links;
  if (!o.plots_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o.plots_dir, ec);
    if (ec) throw InputError(fmt::format("{}: cannot create the plots folder: {}", o.plots_dir, ec.message()));
    const fs::path base = o.out.empty() ? fs::current_path() : fs::absolute(o.out).parent_path();
    for (const auto& p : report_plots(merged)) {
      const fs::path file = fs::path(o.plots_dir) / (p.slug + ".svg");
      write_file_atomic(file.string(), render_svg(p));
      links[p.slug] = fs::relative(fs::absolute(file), base).generic_string();
    }
  }
  const std::string text = o.format == "csv"    ? render_csv(merged)
                           : o.format == "html" ? render_html(merged)
                                                : render_markdown(merged, links);
  if (o.out.empty())
    fmt::print("{}", text);
  else
    write_file_atomic(o.out, text);
  return kOk;
}

}  // namespace lsb
