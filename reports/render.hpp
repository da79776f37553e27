// `lsbench report`: one or more reports (merged by id) rendered for people. Markdown: the context
// block, then the sweep points grouped the way a reader asks (per mode and shape: rows = n, columns =
// variants, each cell the median time with its spread, tokens/s and peak memory, or the status), the
// maxlen results with their ratio to full, and the training runs as the LRA accuracy table next to the
// published reference numbers of ../shared/spec/lra.md, and the training curves. HTML: the same with the
// plots (reports/plot.hpp) inline. CSV: one row per result, every column a reader
// filters on.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lsb {

// Results of several reports in one (the first occurrence of an id kept; the first report's context,
// with every input's path and context under merged_from). `names` are the inputs' paths.
nlohmann::json merge_reports(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names);

// `plot_links` (plot slug -> path, as report_plots names them) adds image links after the tables.
std::string render_markdown(const nlohmann::json& report, const std::map<std::string, std::string>& plot_links = {});
// One self-contained file: the Markdown's tables and every plot of report_plots as inline SVG.
std::string render_html(const nlohmann::json& report);
std::string render_csv(const nlohmann::json& report);

struct RenderOptions {
  std::vector<std::string> inputs;
  std::string format = "md";  // md, html, csv
  std::string out;            // empty: standard output
  std::string plots_dir;      // empty: no SVG files
};
// `lsbench report`: reads and validates every input first (InputError naming the file), then writes
// the render and the plots, each file atomically. Returns the exit code.
int run_report(const RenderOptions& options);

}  // namespace lsb
