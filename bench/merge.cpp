// `lsbench merge`: reports (the shards of one sweep, say) joined into one.
#include <filesystem>

#include <fmt/format.h>

#include "bench/sweep.hpp"
#include "nn/errors.hpp"
#include "reports/render.hpp"
#include "reports/report.hpp"

namespace lsb {

int run_merge(const std::vector<std::string>& inputs, const std::string& out) {
  if (inputs.empty()) throw UsageError("merge: give the reports to join");
  for (std::size_t i = 0; i < inputs.size(); ++i)
    for (std::size_t j = 0; j < i; ++j) {
      std::error_code ec;
      if (inputs[i] == inputs[j] || std::filesystem::equivalent(inputs[i], inputs[j], ec))
        throw UsageError(fmt::format("merge: {} is given twice", inputs[i]));
    }
  std::vector<nlohmann::json> reports;
  std::size_t total = 0;
  for (const auto& path : inputs) {
    reports.push_back(read_report(path));
    total += reports.back()["results"].size();
  }
  const nlohmann::json merged = merge_reports(reports, inputs);
  write_report(out, merged);
  const std::size_t kept = merged["results"].size();
  fmt::print("merge: {} results from {} reports{} -> {}\n", kept, inputs.size(),
             total > kept ? fmt::format(" ({} duplicates dropped)", total - kept) : "", out);
  return kOk;
}

}  // namespace lsb
