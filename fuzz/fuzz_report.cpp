// Report JSON (reports/): read_report validates before anything reads; a report it accepts must then
// render in every format and compare and merge with itself without an error of any kind.
#include <fstream>
#include <map>

#include "fuzz/harness.hpp"
#include "reports/compare.hpp"
#include "reports/render.hpp"
#include "reports/report.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lsb;
  const std::string path = (fuzz::scratch() / "report.json").string();
  fuzz::write_file(path, fuzz::as_text(data, size));
  nlohmann::json report;
  try {
    report = read_report(path);
  } catch (const InputError&) {
    return 0;  // refused, with a message naming the file
  }
  // Accepted: everything downstream must cope (an InputError here would be a validator that let
  // through what a reader then refuses, so it is not caught).
  render_markdown(report);
  render_csv(report);
  render_html(report);
  compare_reports(report, report, "base", "next", CompareThresholds{});
  merge_reports({report, report}, {"a.json", "b.json"});
  return 0;
}
