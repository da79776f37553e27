// `lsbench report`: one or more reports (merged by id) rendered for people. Markdown: the context
// block, then the sweep points grouped the way a reader asks (per mode and shape: rows = n, columns =
// variants, each cell the median time with its spread, tokens/s and peak memory, or the status), the
// maxlen results with their ratio to full, and the training runs as the LRA accuracy table next to the
// published reference numbers of ../shared/spec/lra.md. CSV: one row per result, every column a reader
// filters on.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lsb {

// Results of several reports in one (the first occurrence of an id kept; the first report's context,
// with every input's path and context under merged_from). `names` are the inputs' paths.
nlohmann::json merge_reports(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names);

std::string render_markdown(const nlohmann::json& report);
std::string render_csv(const nlohmann::json& report);

}  // namespace lsb
